/* The HTTP server (see http.h) over libmicrohttpd's internal polling
 * thread. Every answer is built from fixed text, the metric registry and
 * the health snapshot: nothing from the request is echoed back. */
#include "http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api.h"
#include "metrics.h"
#include "util.h"

struct kjb_http {
  struct MHD_Daemon *daemon;
  int port;
  char *tls_cert, *tls_key; /* PEM text; MHD keeps pointers to them */
  pthread_mutex_t mu;
  kjb_health health; /* under mu */
  bool reported;     /* under mu: health was set at least once */
  kjb_api *api;      /* under mu; NULL until kjb_http_set_api */
};

/* The dashboard page (web/dashboard.html, embedded at build time). */
extern const char kjb_dashboard_html[];
extern const size_t kjb_dashboard_html_len;

/* The largest request body accepted (admin actions take small JSON). */
#define MAX_BODY 65536

static const char JSON_TYPE[] = "application/json";
static const char HTML_TYPE[] = "text/html; charset=utf-8";
static const char METRICS_TYPE[] = "text/plain; version=0.0.4; charset=utf-8";

/* ---- listen address ----------------------------------------------------- */

/* A bound, listening socket for addr, or -1 with err. */
static int open_listener(const char *addr, int *v6, int *port_out, kjb_err *err) {
  char host[256], port[8];
  int portnum;
  if (kjb_hostport_parse(addr, true, host, sizeof host, &portnum, err) < 0)
    return kjb_err_prefix(err, "http.listen"), -1;
  snprintf(port, sizeof port, "%d", portnum);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
  struct addrinfo *ai = NULL;
  int gai = getaddrinfo(host, port, &hints, &ai);
  if (gai != 0)
    return kjb_err_set(err, KJB_ECONFIG, "http.listen: could not resolve \"%s\": %s", host,
                       gai_strerror(gai)),
           -1;
  /* Exactly the configured address: the first one it resolves to. */
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int e = errno;
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
      e = errno;
      close(fd);
      fd = -1;
    }
  }
  *v6 = ai->ai_family == AF_INET6;
  freeaddrinfo(ai);
  if (fd < 0)
    return kjb_err_set(err, KJB_EIO, "could not listen on %s: %s", addr, strerror(e)), -1;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    e = errno;
    close(fd);
    return kjb_err_set(err, KJB_EIO, "could not listen on %s: %s", addr, strerror(e)), -1;
  }
  *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}

/* ---- /metrics ----------------------------------------------------------- */

static void gauge(kjb_buf *b, const char *name, const char *type, const char *help, double v) {
  kjb_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", name, help, name, type, name, v);
}

/* The standard process_* metrics, from /proc/self. A value that cannot be
 * read is left out rather than reported as 0. */
static void process_metrics(kjb_buf *b) {
  long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  FILE *f = fopen("/proc/self/stat", "r");
  char line[1024];
  if (f && fgets(line, sizeof line, f)) {
    /* The command name may contain spaces and parentheses: fields are
     * counted from the last ')'. Field 3 (state) comes right after it. */
    char *p = strrchr(line, ')');
    unsigned long utime, stime, vsize;
    unsigned long long start;
    long rss;
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                    "%*d %llu %lu %ld",
                    &utime, &stime, &start, &vsize, &rss) == 5) {
      gauge(b, "process_cpu_seconds_total", "counter",
            "Total user and system CPU time spent in seconds.", (double)(utime + stime) / tick);
      gauge(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
            (double)rss * page);
      gauge(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
            (double)vsize);
      FILE *st = fopen("/proc/stat", "r");
      unsigned long long btime = 0;
      while (st && fgets(line, sizeof line, st))
        if (sscanf(line, "btime %llu", &btime) == 1)
          break;
      if (st)
        fclose(st);
      if (btime)
        gauge(b, "process_start_time_seconds", "gauge",
              "Start time of the process since unix epoch in seconds.",
              (double)btime + (double)start / tick);
    }
  }
  if (f)
    fclose(f);
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
      n += de->d_name[0] != '.';
    closedir(d);
    gauge(b, "process_open_fds", "gauge", "Number of open file descriptors.", (double)(n - 1));
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    gauge(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
          rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
}

static void render_metrics(kjb_buf *b) {
  kjb_metrics_render(b);
  /* The version is a compile-time constant of digits and dots, but it
   * goes out as a label value all the same: keep it escaped. */
  kjb_buf_puts(b, "# HELP kjb_build_info The kjb version, as a label; always 1.\n"
                  "# TYPE kjb_build_info gauge\nkjb_build_info{version=");
  kjb_buf_json_str(b, KJB_VERSION, strlen(KJB_VERSION));
  kjb_buf_puts(b, "} 1\n");
  process_metrics(b);
}

/* ---- probes ------------------------------------------------------------- */

/* Each probe returns the reason it fails, or NULL when it passes. */

static const char *db_problem(const kjb_health *st, int64_t now) {
  if (!st->db_connected || st->db_ok_us == 0 || now - st->db_ok_us > KJB_HTTP_STALE_US)
    return "database unreachable";
  return NULL;
}

static const char *live_problem(const kjb_health *st, int64_t now) {
  const char *why = db_problem(st, now);
  if (why)
    return why;
  if (st->loop_us == 0)
    return "main loop not running";
  if (now - st->loop_us > KJB_HTTP_STALE_US)
    return "main loop stalled";
  return NULL;
}

static const char *startup_problem(const kjb_health *st) {
  if (!st->migrations_current)
    return "migrations pending";
  if (st->consumer && !st->assigned_once)
    return "waiting for the first partition assignment";
  return NULL;
}

static const char *ready_problem(const kjb_health *st, int64_t now) {
  const char *why = db_problem(st, now);
  if (why)
    return why;
  if (!st->migrations_current)
    return "migrations pending";
  if (st->consumer && !st->kafka_connected)
    return "kafka not connected";
  if (st->consumer && st->partitions <= 0)
    return "no partitions assigned";
  return NULL;
}

/* What each probe finds wrong (NULL: it passes). Before the first health
 * report every probe answers "starting". */
typedef struct {
  const char *live, *ready, *started;
} problems;

static problems find_problems(kjb_http *h) {
  pthread_mutex_lock(&h->mu);
  kjb_health st = h->health;
  bool reported = h->reported;
  pthread_mutex_unlock(&h->mu);
  if (!reported)
    return (problems){"starting", "starting", "starting"};
  int64_t now = kjb_now_mono_us();
  return (problems){live_problem(&st, now), ready_problem(&st, now), startup_problem(&st)};
}

/* ---- requests ----------------------------------------------------------- */

/* Per request: the body of a POST as it arrives. */
typedef struct {
  kjb_buf body;
  bool too_large;
} request;

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
                               const char *body, size_t len, const char *allow) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  if (status == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"kjb\"");
  if (strcmp(type, HTML_TYPE) == 0)
    /* Everything the page needs is in it; it talks to its own origin. */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; "
                            "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
                            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *c, unsigned status, const char *body) {
  return respond(c, status, JSON_TYPE, body, strlen(body), "GET");
}

static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status, const char *why,
                                     const char *allow) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_buf_puts(&b, "{\"error\":");
  kjb_buf_json_str(&b, why, strlen(why));
  kjb_buf_putc(&b, '}');
  enum MHD_Result ret = respond(c, status, JSON_TYPE, b.data, b.len, allow);
  kjb_buf_close(&b);
  return ret;
}

/* 200 {"status":"ok"}, or 503 {"status":<bad>,"reason":<why>}. */
static enum MHD_Result probe(struct MHD_Connection *c, const char *bad, const char *why) {
  if (!why)
    return respond_json(c, MHD_HTTP_OK, "{\"status\":\"ok\"}");
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_buf_puts(&b, "{\"status\":");
  kjb_buf_json_str(&b, bad, strlen(bad));
  kjb_buf_puts(&b, ",\"reason\":");
  kjb_buf_json_str(&b, why, strlen(why));
  kjb_buf_putc(&b, '}');
  enum MHD_Result ret = respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, JSON_TYPE, b.data, b.len, "GET");
  kjb_buf_close(&b);
  return ret;
}

static const char *query_param(void *cls, const char *name) {
  return MHD_lookup_connection_value(cls, MHD_GET_ARGUMENT_KIND, name);
}

static kjb_api *current_api(kjb_http *h) {
  pthread_mutex_lock(&h->mu);
  kjb_api *api = h->api;
  pthread_mutex_unlock(&h->mu);
  return api;
}

static enum MHD_Result api_get(kjb_http *h, struct MHD_Connection *c, const char *url) {
  kjb_api *api = current_api(h);
  if (!api)
    return respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting", "GET");
  problems p = find_problems(h);
  kjb_api_health ah = {!p.live, !p.ready, !p.started,
                       p.live ? p.live : p.ready ? p.ready : p.started};
  kjb_buf b;
  kjb_buf_init(&b);
  unsigned status = kjb_api_get(api, url, query_param, c, &ah, &b);
  enum MHD_Result ret = respond(c, status, JSON_TYPE, b.data, b.len, "GET");
  kjb_buf_close(&b);
  return ret;
}

static enum MHD_Result api_post(kjb_http *h, struct MHD_Connection *c, const char *url,
                                const request *rq) {
  kjb_api *api = current_api(h);
  if (!api)
    return respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting", "POST");
  const char *why = NULL;
  unsigned denied = kjb_api_authorize(
      api, MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION), &why);
  if (denied)
    return respond_error(c, denied, why, "POST");
  if (rq->too_large)
    return respond_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large", "POST");
  kjb_buf b;
  kjb_buf_init(&b);
  unsigned status = kjb_api_post(api, url, rq->body.data, rq->body.len, &b);
  enum MHD_Result ret = respond(c, status, JSON_TYPE, b.data, b.len, "POST");
  kjb_buf_close(&b);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  kjb_http *h = cls;
  /* The first call only announces the request; a body, if any, arrives in
   * the calls after it. */
  request *rq = *con_cls;
  if (!rq) {
    rq = calloc(1, sizeof *rq);
    if (!rq)
      return MHD_NO;
    kjb_buf_init(&rq->body);
    *con_cls = rq;
    return MHD_YES;
  }
  if (*upload_data_size) {
    if (rq->body.len + *upload_data_size > MAX_BODY)
      rq->too_large = true;
    else
      kjb_buf_append(&rq->body, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
  bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
  if (kjb_api_is_post_path(url))
    return post ? api_post(h, c, url, rq)
                : respond_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", "POST");
  bool known = strcmp(url, "/") == 0 || strcmp(url, "/metrics") == 0 ||
               strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
               strcmp(url, "/startupz") == 0 || kjb_api_is_get_path(url);
  if (!known)
    return respond_json(c, MHD_HTTP_NOT_FOUND, "{\"error\":\"not found\"}");
  if (!get)
    return respond_json(c, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\":\"method not allowed\"}");
  if (strcmp(url, "/") == 0)
    return respond(c, MHD_HTTP_OK, HTML_TYPE, kjb_dashboard_html, kjb_dashboard_html_len, "GET");
  if (strncmp(url, "/api/", 5) == 0)
    return api_get(h, c, url);
  if (strcmp(url, "/metrics") == 0) {
    kjb_buf b;
    kjb_buf_init(&b);
    render_metrics(&b);
    enum MHD_Result ret = respond(c, MHD_HTTP_OK, METRICS_TYPE, b.data, b.len, "GET");
    kjb_buf_close(&b);
    return ret;
  }
  problems p = find_problems(h);
  if (strcmp(url, "/healthz") == 0)
    return probe(c, "unhealthy", p.live);
  if (strcmp(url, "/readyz") == 0)
    return probe(c, "not ready", p.ready);
  return probe(c, "starting", p.started);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  request *rq = *con_cls;
  if (rq) {
    kjb_buf_close(&rq->body);
    free(rq);
    *con_cls = NULL;
  }
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The largest certificate chain or key file read. */
#define MAX_PEM (1024 * 1024)

/* The whole file at path as a string, or NULL with err. */
static char *read_pem(const char *what, const char *path, kjb_err *err) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_err why;
  if (kjb_read_file(path, MAX_PEM, &b, &why) < 0) {
    kjb_buf_close(&b);
    return kjb_err_set(err, KJB_ECONFIG, "http.%s: cannot read \"%s\": %s", what, path, why.msg),
           NULL;
  }
  if (b.len == 0) {
    kjb_buf_close(&b);
    return kjb_err_set(err, KJB_ECONFIG, "http.%s: \"%s\" is empty", what, path), NULL;
  }
  return b.data; /* kjb_buf keeps its text NUL-terminated */
}

static void http_free(kjb_http *h) {
  pthread_mutex_destroy(&h->mu);
  free(h->tls_cert);
  free(h->tls_key);
  free(h);
}

kjb_http *kjb_http_new(const char *addr, const kjb_http_tls *tls, kjb_err *err) {
  kjb_http *h = calloc(1, sizeof *h);
  if (!h) {
    kjb_err_set(err, KJB_ENOMEM, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&h->mu, NULL);
  if (tls && (!(h->tls_cert = read_pem("tls_cert", tls->cert_file, err)) ||
              !(h->tls_key = read_pem("tls_key", tls->key_file, err)))) {
    http_free(h);
    return NULL;
  }
  int v6 = 0, port = 0;
  int fd = open_listener(addr, &v6, &port, err);
  if (fd < 0) {
    http_free(h);
    return NULL;
  }
  h->port = port;
  /* A thread per connection: an /api request waiting on the database
   * never holds up a probe. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
  if (v6)
    flags |= MHD_USE_IPv6;
  if (tls)
    h->daemon = MHD_start_daemon(
        flags | MHD_USE_TLS, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_HTTPS_MEM_CERT, h->tls_cert,
        MHD_OPTION_HTTPS_MEM_KEY, h->tls_key, MHD_OPTION_HTTPS_PRIORITIES,
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", MHD_OPTION_END);
  else
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET,
                                 fd, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
  if (!h->daemon) {
    /* Whether a failed start closed the socket depends on where it
     * failed. */
    if (fcntl(fd, F_GETFD) != -1)
      close(fd);
    http_free(h);
    kjb_err_set(err, KJB_EIO, "could not listen on %s: could not start the http server%s", addr,
                tls ? " (is the TLS certificate or key invalid?)" : "");
    return NULL;
  }
  return h;
}

void kjb_http_set_api(kjb_http *h, kjb_api *api) {
  pthread_mutex_lock(&h->mu);
  h->api = api;
  pthread_mutex_unlock(&h->mu);
}

int kjb_http_port(const kjb_http *h) { return h->port; }

void kjb_http_set_health(kjb_http *h, const kjb_health *health) {
  pthread_mutex_lock(&h->mu);
  h->health = *health;
  h->reported = true;
  pthread_mutex_unlock(&h->mu);
}

void kjb_http_free(kjb_http *h) {
  if (!h)
    return;
  /* Stopping closes the listening socket too. */
  MHD_stop_daemon(h->daemon);
  http_free(h);
}
