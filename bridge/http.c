/* The HTTP server (see http.h) over libmicrohttpd: a few epoll threads
 * answer the probes, /metrics and the dashboard from memory, and hand
 * /api/ requests to worker threads. Every answer is built from fixed
 * text, the metric registry, the health snapshot and the API: nothing
 * from the request is echoed back but validated values. */
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

/* How the server is sized. Connections cost a file descriptor and a
 * little memory, not a thread: slow clients (a slowloris dribbling header
 * lines) take connections but no thread, and there are many more
 * connections than any such attack on a probe port is likely to hold. */
#define HTTP_POLL_THREADS 2 /* epoll threads: accept, read, answer */
#define HTTP_API_WORKERS 4  /* threads that run /api/ requests */
#define HTTP_API_QUEUED 256 /* /api/ requests waiting before 503 */
#define HTTP_MAX_CONNECTIONS 4096
#define HTTP_FD_RESERVE 256 /* descriptors left for Kafka, PostgreSQL, handlers */
#define HTTP_TIMEOUT_S 10   /* an idle connection is closed after this */

struct request;

struct kjb_http {
  struct MHD_Daemon *daemon;
  int port;
  char *tls_cert, *tls_key; /* PEM text; MHD keeps pointers to them */
  pthread_mutex_t mu;
  kjb_health health; /* under mu */
  bool reported;     /* under mu: health was set at least once */
  kjb_api *api;      /* under mu; NULL until kjb_http_set_api */

  /* /api/ requests waiting for a worker: a FIFO under qmu. */
  pthread_mutex_t qmu;
  pthread_cond_t qcv;
  struct request *head, *tail;
  size_t queued;
  bool stopping; /* kjb_http_free began: queue nothing more */
  pthread_t workers[HTTP_API_WORKERS];
  int nworkers;
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
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
  struct addrinfo *ai = NULL;
  int gai = getaddrinfo(host, port, &hints, &ai);
  if (gai != 0)
    return kjb_err_set(err, KJB_ECONFIG, "http.listen: could not resolve \"%s\": %s", host,
                       gai_strerror(gai)),
           -1;
  /* Exactly the configured address: the first one it resolves to. */
  /* Non-blocking: several poll threads accept from it. */
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int e = errno;
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    /* A full backlog drops connections before MHD sees them. */
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
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
  /* Waiting for the database at start is what the process should do:
   * restarting it would not help. */
  const char *why = st->waiting[0] ? NULL : db_problem(st, now);
  if (why)
    return why;
  if (st->loop_us == 0)
    return "main loop not running";
  if (now - st->loop_us > KJB_HTTP_STALE_US)
    return "main loop stalled";
  return NULL;
}

/* An instance with executors does useful work without partitions (a
 * group with more members than partitions): Kafka's assignment does not
 * hold its startup or readiness back. */
static const char *startup_problem(const kjb_health *st) {
  if (st->waiting[0])
    return st->waiting;
  if (!st->migrations_current)
    return "migrations pending";
  if (st->consumer && !st->executor && !st->assigned_once)
    return "waiting for the first partition assignment";
  return NULL;
}

static const char *ready_problem(const kjb_health *st, int64_t now) {
  if (st->waiting[0])
    return st->waiting;
  const char *why = db_problem(st, now);
  if (why)
    return why;
  if (!st->migrations_current)
    return "migrations pending";
  if (st->consumer && !st->kafka_connected)
    return "kafka not connected";
  if (st->consumer && !st->executor && st->partitions <= 0)
    return "no partitions assigned";
  return NULL;
}

/* What each probe finds wrong (NULL: it passes), from the snapshot
 * copied into *st, which the reasons may point into. Before the first
 * health report every probe answers "starting". */
typedef struct {
  const char *live, *ready, *started;
} problems;

static problems find_problems(kjb_http *h, kjb_health *st) {
  pthread_mutex_lock(&h->mu);
  *st = h->health;
  bool reported = h->reported;
  pthread_mutex_unlock(&h->mu);
  if (!reported)
    return (problems){"starting", "starting", "starting"};
  int64_t now = kjb_now_mono_us();
  return (problems){live_problem(st, now), ready_problem(st, now), startup_problem(st)};
}

/* ---- requests ----------------------------------------------------------- */

/* Per request, from its first line (on_uri) to its end (on_completed). */
typedef struct request {
  bool started;     /* the access handler has seen the request */
  bool nul_in_path; /* the raw path has a %00, which the decoded one hides */
  kjb_buf body;     /* a POST's body as it arrives */
  bool too_large;
  kjb_buf params; /* the query parameters, checked: "name\0value\0"... */

  /* An /api/ request handed to a worker: what the worker needs, copied,
   * for it must not touch the suspended connection. */
  struct request *next; /* in the queue */
  struct MHD_Connection *conn;
  bool post;
  char *url;
  bool has_auth;
  kjb_buf auth; /* the Authorization header, every byte */

  /* The answer, set by the worker before it resumes the connection. */
  bool answered;
  unsigned status;
  kjb_buf reply;
} request;

static request *request_new(void) {
  request *rq = kjb_xcalloc(1, sizeof *rq);
  kjb_buf_init(&rq->body);
  kjb_buf_init(&rq->params);
  kjb_buf_init(&rq->auth);
  kjb_buf_init(&rq->reply);
  return rq;
}

static void request_free(request *rq) {
  kjb_buf_close(&rq->body);
  kjb_buf_close(&rq->params);
  kjb_buf_close(&rq->auth);
  kjb_buf_close(&rq->reply);
  free(rq->url);
  free(rq);
}

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

/* {"error":<why>} into b. */
static void error_json(kjb_buf *b, const char *why) {
  kjb_buf_puts(b, "{\"error\":");
  kjb_buf_json_str(b, why, strlen(why));
  kjb_buf_putc(b, '}');
}

static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status, const char *why,
                                     const char *allow) {
  kjb_buf b;
  kjb_buf_init(&b);
  error_json(&b, why);
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

static kjb_api *current_api(kjb_http *h) {
  pthread_mutex_lock(&h->mu);
  kjb_api *api = h->api;
  pthread_mutex_unlock(&h->mu);
  return api;
}

/* ---- input that no handler takes ------------------------------------------ */

int kjb_http_check_param(const char *key, size_t key_size, const char *value, size_t value_size,
                         kjb_buf *params, char *why, size_t why_size) {
  if (memchr(key, '\0', key_size) || kjb_utf8_invalid_at(key, key_size) >= 0) {
    snprintf(why, why_size, "a parameter name is not valid UTF-8 text");
    return -1;
  }
  const char *wrong = !value                                        ? NULL
                      : memchr(value, '\0', value_size)             ? "contains a NUL byte"
                      : kjb_utf8_invalid_at(value, value_size) >= 0 ? "is not valid UTF-8"
                                                                    : NULL;
  if (wrong) {
    snprintf(why, why_size, "parameter \"%.*s\" %s", (int)kjb_utf8_prefix(key, 64), key, wrong);
    return -1;
  }
  if (value) {
    kjb_buf_append(params, key, key_size);
    kjb_buf_putc(params, '\0');
    kjb_buf_append(params, value, value_size);
    kjb_buf_putc(params, '\0');
  }
  return 0;
}

const char *kjb_http_param(const kjb_buf *params, const char *name) {
  for (const char *p = params->data, *end = p + params->len; p < end;) {
    const char *value = p + strlen(p) + 1;
    if (strcmp(p, name) == 0)
      return value;
    p = value + strlen(value) + 1;
  }
  return NULL;
}

const char *kjb_http_param_at(const kjb_buf *params, size_t i, const char **name) {
  for (const char *p = params->data, *end = p + params->len; p < end; i--) {
    const char *value = p + strlen(p) + 1;
    if (i == 0) {
      *name = p;
      return value;
    }
    p = value + strlen(value) + 1;
  }
  return NULL;
}

/* Every query parameter must be text (kjb_http_check_param). The good
 * ones are copied to the request for the API. */
typedef struct {
  char why[160];
  kjb_buf *copy;
} param_check;

static enum MHD_Result check_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size) {
  param_check *pc = cls;
  return kjb_http_check_param(key, key_size, value, value_size, pc->copy, pc->why,
                              sizeof pc->why) == 0
             ? MHD_YES
             : MHD_NO;
}

/* What is wrong with the request whatever its path, in pc->why; NULL when
 * nothing (its parameters are then in rq->params). */
static const char *bad_input(struct MHD_Connection *c, request *rq, param_check *pc) {
  if (rq->nul_in_path)
    return "the path contains a NUL byte (%00)";
  pc->why[0] = '\0';
  pc->copy = &rq->params;
  kjb_buf_reset(&rq->params);
  MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, check_param, pc);
  return pc->why[0] ? pc->why : NULL;
}

/* kjb_api_param_fn over rq->params; the first of repeated names wins. */
static const char *copied_param(void *cls, const char *name) {
  return kjb_http_param(&((const request *)cls)->params, name);
}

/* kjb_api_param_at_fn over rq->params. */
static const char *copied_param_at(void *cls, size_t i, const char **name) {
  return kjb_http_param_at(&((const request *)cls)->params, i, name);
}

/* ---- /api/ on worker threads ----------------------------------------------- */

/* An /api/ request may wait on PostgreSQL for as long as it is slow or
 * unreachable. The poll threads hand it to a worker and suspend its
 * connection meanwhile, so that they go on answering the probes. */

static void api_get(kjb_http *h, kjb_api *api, request *rq) {
  kjb_health st;
  problems p = find_problems(h, &st);
  kjb_api_health ah = {!p.live, !p.ready, !p.started,
                       p.live    ? p.live
                       : p.ready ? p.ready
                                 : p.started};
  rq->status = kjb_api_get(api, rq->url, copied_param, copied_param_at, rq, &ah, &rq->reply);
}

static void api_post(kjb_api *api, request *rq) {
  const char *why = NULL, *actor = NULL;
  unsigned denied =
      kjb_api_authorize(api, rq->has_auth ? rq->auth.data : NULL, rq->auth.len, &actor, &why);
  if (denied) {
    rq->status = denied;
    error_json(&rq->reply, why);
  } else if (rq->too_large) {
    rq->status = MHD_HTTP_CONTENT_TOO_LARGE;
    error_json(&rq->reply, "request body too large");
  } else {
    rq->status = kjb_api_post(api, rq->url, actor, rq->body.data, rq->body.len, &rq->reply);
  }
}

/* Answers rq into rq->status and rq->reply. */
static void api_answer(kjb_http *h, request *rq, bool stopping) {
  kjb_api *api = current_api(h);
  if (stopping || !api) {
    rq->status = MHD_HTTP_SERVICE_UNAVAILABLE;
    error_json(&rq->reply, stopping ? "shutting down" : "starting");
  } else if (rq->post) {
    api_post(api, rq);
  } else {
    api_get(h, api, rq);
  }
}

/* Takes queued requests until kjb_http_free; once it began, the ones left
 * are answered 503 without running. */
static void *api_worker(void *arg) {
  kjb_http *h = arg;
  pthread_mutex_lock(&h->qmu);
  for (;;) {
    while (!h->head && !h->stopping)
      pthread_cond_wait(&h->qcv, &h->qmu);
    request *rq = h->head;
    if (!rq)
      break;
    h->head = rq->next;
    h->queued--;
    bool stopping = h->stopping;
    pthread_mutex_unlock(&h->qmu);
    api_answer(h, rq, stopping);
    rq->answered = true;
    /* From here the poll thread owns rq again (and may free it). */
    MHD_resume_connection(rq->conn);
    pthread_mutex_lock(&h->qmu);
  }
  pthread_mutex_unlock(&h->qmu);
  return NULL;
}

/* Copies what the worker needs, suspends the connection and queues rq; or
 * answers 503 at once when too many wait or the server is stopping. */
static enum MHD_Result hand_to_api(kjb_http *h, struct MHD_Connection *c, request *rq,
                                   const char *url, bool post) {
  const char *allow = post ? "POST" : "GET";
  if (!current_api(h))
    return respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting", allow);
  rq->url = kjb_xstrdup(url);
  static const char AUTH[] = MHD_HTTP_HEADER_AUTHORIZATION;
  const char *auth;
  size_t auth_len;
  if (post && MHD_lookup_connection_value_n(c, MHD_HEADER_KIND, AUTH, sizeof AUTH - 1, &auth,
                                            &auth_len) == MHD_YES) {
    rq->has_auth = true;
    kjb_buf_append(&rq->auth, auth, auth_len);
  }
  rq->post = post;
  rq->conn = c;
  pthread_mutex_lock(&h->qmu);
  const char *refused = h->stopping                    ? "shutting down"
                        : h->queued >= HTTP_API_QUEUED ? "too many API requests in progress"
                                                       : NULL;
  if (!refused) {
    MHD_suspend_connection(c);
    rq->next = NULL;
    *(h->head ? &h->tail->next : &h->head) = rq;
    h->tail = rq;
    h->queued++;
    pthread_cond_signal(&h->qcv);
  }
  pthread_mutex_unlock(&h->qmu);
  return refused ? respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, refused, allow) : MHD_YES;
}

/* ---- routing ------------------------------------------------------------ */

/* Everything but /api/ is answered right here, from memory. */
static enum MHD_Result route(kjb_http *h, struct MHD_Connection *c, request *rq, const char *url,
                             const char *method) {
  param_check pc;
  const char *bad = bad_input(c, rq, &pc);
  if (bad)
    return respond_error(c, MHD_HTTP_BAD_REQUEST, bad, "GET");
  bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
  bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
  if (kjb_api_is_post_path(url))
    return post ? hand_to_api(h, c, rq, url, true)
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
    return hand_to_api(h, c, rq, url, false);
  if (strcmp(url, "/metrics") == 0) {
    kjb_buf b;
    kjb_buf_init(&b);
    render_metrics(&b);
    enum MHD_Result ret = respond(c, MHD_HTTP_OK, METRICS_TYPE, b.data, b.len, "GET");
    kjb_buf_close(&b);
    return ret;
  }
  kjb_health st;
  problems p = find_problems(h, &st);
  if (strcmp(url, "/healthz") == 0)
    return probe(c, "unhealthy", p.live);
  if (strcmp(url, "/readyz") == 0)
    return probe(c, "not ready", p.ready);
  return probe(c, "starting", p.started);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  /* The first call only announces the request; a body, if any, arrives in
   * the calls after it. */
  request *rq = *con_cls;
  if (!rq)
    rq = *con_cls = request_new();
  if (!rq->started) {
    rq->started = true;
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
  if (rq->answered) /* resumed by its API worker */
    return respond(c, rq->status, JSON_TYPE, rq->reply.data, rq->reply.len,
                   rq->post ? "POST" : "GET");
  return route(cls, c, rq, url, method);
}

/* Called with the raw request target before MHD decodes it: the request
 * object starts here, knowing whether the path hides a NUL. MHD calls
 * on_completed for it whatever happens next. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
  request *rq = request_new();
  size_t path_len = strcspn(uri, "?");
  const char *nul = strstr(uri, "%00");
  rq->nul_in_path = nul && (size_t)(nul - uri) < path_len;
  return rq;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  request *rq = *con_cls;
  if (rq) {
    request_free(rq);
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

/* How many connections the server takes at once: what the descriptor
 * limit leaves beside HTTP_FD_RESERVE, at most HTTP_MAX_CONNECTIONS. A soft
 * limit lower than that needs is raised toward the hard limit first (the
 * default soft limit, 1024, is a relic of select()). */
static unsigned connection_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 64;
  rlim_t want = HTTP_MAX_CONNECTIONS + HTTP_FD_RESERVE;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    struct rlimit raised = {rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want,
                            rl.rlim_max};
    if (raised.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0)
      rl.rlim_cur = raised.rlim_cur;
  }
  rlim_t have = rl.rlim_cur == RLIM_INFINITY ? want : rl.rlim_cur;
  if (have < HTTP_FD_RESERVE + 64)
    return 64;
  have -= HTTP_FD_RESERVE;
  return (unsigned)(have < HTTP_MAX_CONNECTIONS ? have : HTTP_MAX_CONNECTIONS);
}

/* Starts the API workers. Returns 0, or -1 with none left running. */
static int start_workers(kjb_http *h) {
  for (; h->nworkers < HTTP_API_WORKERS; h->nworkers++)
    if (pthread_create(&h->workers[h->nworkers], NULL, api_worker, h) != 0)
      return -1;
  return 0;
}

/* Makes the workers answer what is queued (503) and waits for them; after
 * this no connection is left suspended and none gets suspended. */
static void stop_workers(kjb_http *h) {
  pthread_mutex_lock(&h->qmu);
  h->stopping = true;
  pthread_cond_broadcast(&h->qcv);
  pthread_mutex_unlock(&h->qmu);
  for (int i = 0; i < h->nworkers; i++)
    pthread_join(h->workers[i], NULL);
  h->nworkers = 0;
}

static void http_free(kjb_http *h) {
  stop_workers(h);
  pthread_cond_destroy(&h->qcv);
  pthread_mutex_destroy(&h->qmu);
  pthread_mutex_destroy(&h->mu);
  free(h->tls_cert);
  free(h->tls_key);
  free(h);
}

static struct MHD_Daemon *start_daemon(kjb_http *h, int fd, bool v6, bool tls) {
  /* epoll threads with suspendable connections: see the top of the file. */
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
  if (v6)
    flags |= MHD_USE_IPv6;
  if (tls)
    flags |= MHD_USE_TLS;
  struct MHD_OptionItem tls_opts[] = {
      {MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert},
      {MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key},
      {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
      {MHD_OPTION_END, 0, NULL}};
  struct MHD_OptionItem no_tls[] = {{MHD_OPTION_END, 0, NULL}};
  return MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, fd,
                          MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_POLL_THREADS,
                          MHD_OPTION_CONNECTION_LIMIT, connection_limit(),
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_URI_LOG_CALLBACK,
                          on_uri, h, MHD_OPTION_ARRAY, tls ? tls_opts : no_tls, MHD_OPTION_END);
}

kjb_http *kjb_http_new(const char *addr, const kjb_http_tls *tls, kjb_err *err) {
  kjb_http *h = kjb_xcalloc(1, sizeof *h);
  pthread_mutex_init(&h->mu, NULL);
  pthread_mutex_init(&h->qmu, NULL);
  pthread_cond_init(&h->qcv, NULL);
  if (tls && (!(h->tls_cert = read_pem("tls_cert", tls->cert_file, err)) ||
              !(h->tls_key = read_pem("tls_key", tls->key_file, err)))) {
    http_free(h);
    return NULL;
  }
  if (start_workers(h) < 0) {
    http_free(h);
    kjb_err_set(err, KJB_EIO, "could not start the http server's threads");
    return NULL;
  }
  int v6 = 0, port = 0;
  int fd = open_listener(addr, &v6, &port, err);
  if (fd < 0) {
    http_free(h);
    return NULL;
  }
  h->port = port;
  h->daemon = start_daemon(h, fd, v6, tls != NULL);
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
  /* The workers first: MHD must not stop with a connection suspended. */
  stop_workers(h);
  /* Stopping closes the listening socket too. */
  MHD_stop_daemon(h->daemon);
  http_free(h);
}
