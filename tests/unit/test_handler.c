/* Handlers: http against an in-process HTTP server, exec with real
 * programs, log, and plugins loaded with dlopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "handler.h"
#include "util.h"

#define SECOND 1000000LL

static const volatile int not_cancelled = 0;

/* ---- the HTTP server the http handler talks to ---- */

static struct MHD_Daemon *server;
static int server_port;

/* The last request the server finished reading. */
static struct {
  pthread_mutex_t mu;
  kjb_buf body;
  char method[16];
  char content_type[64], idempotency_key[64], job_id[64], kind[64], attempt[64];
} seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void copy_header(struct MHD_Connection *conn, const char *name, char *dst, size_t cap) {
  const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
  snprintf(dst, cap, "%s", v ? v : "(none)");
}

static void http_date(char *buf, size_t cap, time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Routes: /status/<code> answers <code> with body "status <code>" (429
 * adds Retry-After: 7, 301 a Location); /retry-future and /retry-past
 * answer 503 with Retry-After as an HTTP-date; /body answers 500 with a
 * body that needs sanitizing; /slow answers after 1.5 s. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  kjb_buf *body = *con_cls;
  if (!body) {
    body = kjb_xmalloc(sizeof *body);
    kjb_buf_init(body);
    *con_cls = body;
    return MHD_YES;
  }
  if (*upload_data_size) {
    kjb_buf_append(body, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  pthread_mutex_lock(&seen.mu);
  kjb_buf_reset(&seen.body);
  kjb_buf_append(&seen.body, body->data, body->len);
  snprintf(seen.method, sizeof seen.method, "%s", method);
  copy_header(conn, "Content-Type", seen.content_type, sizeof seen.content_type);
  copy_header(conn, "Idempotency-Key", seen.idempotency_key, sizeof seen.idempotency_key);
  copy_header(conn, "X-Kjb-Job-Id", seen.job_id, sizeof seen.job_id);
  copy_header(conn, "X-Kjb-Kind", seen.kind, sizeof seen.kind);
  copy_header(conn, "X-Kjb-Attempt", seen.attempt, sizeof seen.attempt);
  pthread_mutex_unlock(&seen.mu);

  unsigned status = 200;
  char text[1024] = "";
  char retry[64] = "";
  if (strncmp(url, "/status/", 8) == 0) {
    status = (unsigned)atoi(url + 8);
    if (status != 204)
      snprintf(text, sizeof text, "status %u", status);
    if (status == 429)
      snprintf(retry, sizeof retry, "7");
  } else if (strcmp(url, "/retry-future") == 0 || strcmp(url, "/retry-past") == 0) {
    status = 503;
    http_date(retry, sizeof retry, time(NULL) + (url[7] == 'f' ? 30 : -30));
  } else if (strcmp(url, "/body") == 0) {
    status = 500;
    size_t n = (size_t)snprintf(text, sizeof text, "oops\n\tline\x01two \xff\xfe");
    for (int i = 0; i < 300; i++, n += 2)
      memcpy(text + n, "\xc3\xa9", 3); /* é */
  } else if (strcmp(url, "/slow") == 0) {
    struct timespec ts = {1, 500000000};
    nanosleep(&ts, NULL);
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_COPY);
  if (retry[0])
    MHD_add_response_header(r, "Retry-After", retry);
  if (status == 301)
    MHD_add_response_header(r, "Location", "/status/200");
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  kjb_buf *body = *con_cls;
  if (body) {
    kjb_buf_close(body);
    free(body);
    *con_cls = NULL;
  }
}

/* TCP connections the server accepted: fewer than requests when the http
 * handler's handles keep theirs alive. */
static atomic_int connections;

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  if (toe == MHD_CONNECTION_NOTIFY_STARTED)
    atomic_fetch_add(&connections, 1);
}

static int start_server(void **state) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  server = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_END);
  if (!server)
    return -1;
  server_port = MHD_get_daemon_info(server, MHD_DAEMON_INFO_BIND_PORT)->port;
  kjb_buf_init(&seen.body);
  return 0;
}

static int stop_server(void **state) {
  MHD_stop_daemon(server);
  kjb_buf_close(&seen.body);
  return 0;
}

/* ---- helpers ---- */

static kjb_handler_job make_job(const char *args, int64_t budget_us) {
  return (kjb_handler_job){.id = 42,
                           .kind = "orders",
                           .attempt = 2,
                           .max_attempts = 5,
                           .args_json = args,
                           .args_len = strlen(args),
                           .deadline_us = kjb_now_mono_us() + budget_us,
                           .cancelled = &not_cancelled};
}

static kjb_handler *open_http(const char *url, int64_t timeout_us) {
  kjb_handler_cfg cfg = {
      .kind = "orders", .type = "http", .timeout_us = timeout_us, .concurrency = 4};
  cfg.url = (char *)url;
  kjb_err err = {0};
  kjb_handler *h = kjb_handler_open(&cfg, &err);
  assert_string_equal(err.msg, "");
  assert_non_null(h);
  return h;
}

static void server_url(char *buf, size_t cap, const char *path) {
  snprintf(buf, cap, "http://127.0.0.1:%d%s", server_port, path);
}

static void check_open_fails(const kjb_handler_cfg *cfg, const char *msg) {
  kjb_err err = {0};
  kjb_handler *h = kjb_handler_open(cfg, &err);
  assert_null(h);
  assert_string_equal(kjb_err_name(err.code), "CONFIG");
  assert_string_equal(err.msg, msg);
}

static const char *status_name(kjb_handler_status s) {
  return s == KJB_HANDLER_OK ? "OK" : s == KJB_HANDLER_TRANSIENT ? "TRANSIENT" : "PERMANENT";
}

/* ---- http ---- */

static void test_http_statuses(void **state) {
  static const struct {
    const char *path;
    kjb_handler_status status;
    int64_t retry_after_us;
  } cases[] = {
      {"/status/200", KJB_HANDLER_OK, -1},
      {"/status/204", KJB_HANDLER_OK, -1},
      {"/status/404", KJB_HANDLER_PERMANENT, -1},
      {"/status/400", KJB_HANDLER_PERMANENT, -1},
      {"/status/301", KJB_HANDLER_PERMANENT, -1}, /* not followed */
      {"/status/408", KJB_HANDLER_TRANSIENT, -1},
      {"/status/429", KJB_HANDLER_TRANSIENT, 7 * SECOND},
      {"/status/500", KJB_HANDLER_TRANSIENT, -1},
      {"/status/503", KJB_HANDLER_TRANSIENT, -1},
      {"/retry-past", KJB_HANDLER_TRANSIENT, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char url[128], want[256] = "";
    server_url(url, sizeof url, cases[i].path);
    print_message("POST %s\n", url);
    kjb_handler *h = open_http(url, 5 * SECOND);
    kjb_handler_job job = make_job("{\"order_id\":1}", 10 * SECOND);
    kjb_handler_result res;
    kjb_handler_perform(h, &job, &res);
    assert_string_equal(status_name(res.status), status_name(cases[i].status));
    int code = atoi(cases[i].path + 8);
    if (cases[i].status != KJB_HANDLER_OK) {
      if (strncmp(cases[i].path, "/status/", 8) == 0)
        snprintf(want, sizeof want, "http %d from %s: status %d", code, url, code);
      else
        snprintf(want, sizeof want, "http 503 from %s", url);
    }
    assert_string_equal(res.message, want);
    assert_int_equal(res.retry_after_us, cases[i].retry_after_us);
    kjb_handler_free(h);
  }
}

static void test_http_retry_after_date(void **state) {
  char url[128];
  server_url(url, sizeof url, "/retry-future");
  kjb_handler *h = open_http(url, 5 * SECOND);
  kjb_handler_job job = make_job("{}", 10 * SECOND);
  kjb_handler_result res;
  kjb_handler_perform(h, &job, &res);
  assert_string_equal(status_name(res.status), "TRANSIENT");
  /* The date has whole seconds: 30 s from the server's now, less the
   * fraction and the time the request took. */
  assert_in_range(res.retry_after_us, 25 * SECOND, 30 * SECOND);
  kjb_handler_free(h);
}

static void test_http_request(void **state) {
  char url[128];
  server_url(url, sizeof url, "/status/200");
  kjb_handler *h = open_http(url, 5 * SECOND);
  /* Large enough for curl to consider "Expect: 100-continue". */
  kjb_buf args;
  kjb_buf_init(&args);
  kjb_buf_puts(&args, "{\"order_id\":\"A-1\",\"note\":\"caf\xc3\xa9 \\u00fc\",\"pad\":\"");
  for (int i = 0; i < 100000; i++)
    kjb_buf_putc(&args, (char)('a' + i % 26));
  kjb_buf_puts(&args, "\"}");
  kjb_handler_job job = make_job(args.data, 10 * SECOND);
  kjb_handler_result res;
  kjb_handler_perform(h, &job, &res);
  assert_string_equal(status_name(res.status), "OK");
  pthread_mutex_lock(&seen.mu);
  assert_string_equal(seen.method, "POST");
  assert_int_equal(seen.body.len, args.len);
  assert_memory_equal(seen.body.data, args.data, args.len);
  assert_string_equal(seen.content_type, "application/json");
  assert_string_equal(seen.idempotency_key, "kjb-42");
  assert_string_equal(seen.job_id, "42");
  assert_string_equal(seen.kind, "orders");
  assert_string_equal(seen.attempt, "2");
  pthread_mutex_unlock(&seen.mu);
  kjb_buf_close(&args);
  kjb_handler_free(h);
}

static void test_http_body_in_message(void **state) {
  char url[128], want[512];
  server_url(url, sizeof url, "/body");
  kjb_handler *h = open_http(url, 5 * SECOND);
  kjb_handler_job job = make_job("{}", 10 * SECOND);
  kjb_handler_result res;
  kjb_handler_perform(h, &job, &res);
  assert_string_equal(status_name(res.status), "TRANSIENT");
  /* 17 bytes, then as many whole "é" as fit in the first 200 bytes. */
  int n = snprintf(want, sizeof want, "http 500 from %s: oops line two ??", url);
  for (int i = 0; i < 91; i++, n += 2)
    memcpy(want + n, "\xc3\xa9", 3);
  strcat(want, "...");
  assert_string_equal(res.message, want);
  kjb_handler_free(h);
}

static void test_http_hides_credentials(void **state) {
  char url[160], shown[128], want[256];
  snprintf(url, sizeof url, "http://user:secret@127.0.0.1:%d/status/503?token=abc", server_port);
  server_url(shown, sizeof shown, "/status/503");
  kjb_handler *h = open_http(url, 5 * SECOND);
  kjb_handler_job job = make_job("{}", 10 * SECOND);
  kjb_handler_result res;
  kjb_handler_perform(h, &job, &res);
  snprintf(want, sizeof want, "http 503 from %s: status 503", shown);
  assert_string_equal(res.message, want);
  kjb_handler_free(h);
}

static void test_http_timeouts(void **state) {
  char url[128];
  server_url(url, sizeof url, "/slow");
  /* The handler's timeout, then the job's deadline, whichever is first. */
  static const struct {
    int64_t timeout_us, budget_us;
  } cases[] = {{300000, 10 * SECOND}, {10 * SECOND, 300000}};
  for (size_t i = 0; i < 2; i++) {
    kjb_handler *h = open_http(url, cases[i].timeout_us);
    kjb_handler_job job = make_job("{}", cases[i].budget_us);
    kjb_handler_result res;
    kjb_handler_perform(h, &job, &res);
    assert_string_equal(status_name(res.status), "TRANSIENT");
    if (i == 0) {
      assert_string_equal(res.message, "http: timed out after 0.3 s");
    } else {
      /* The budget is spent from make_job on: on a loaded machine it may be
       * shorter than 0.3 s by the time the request starts, or already gone. */
      const char *msg = res.message;
      bool spent = strcmp(msg, "http: timed out before the request was sent") == 0;
      bool timed = strncmp(msg, "http: timed out after 0.", 24) == 0 && strlen(msg) == 27;
      if (!spent && !timed)
        fail_msg("unexpected message: %s", msg);
    }
    assert_int_equal(res.retry_after_us, -1);
    kjb_handler_free(h);
  }
}

static void test_http_cancelled(void **state) {
  char url[128];
  server_url(url, sizeof url, "/slow");
  kjb_handler *h = open_http(url, 10 * SECOND);
  static const volatile int cancelled = 1;
  kjb_handler_job job = make_job("{}", 10 * SECOND);
  job.cancelled = &cancelled;
  kjb_handler_result res;
  int64_t t0 = kjb_now_mono_us();
  kjb_handler_perform(h, &job, &res);
  assert_string_equal(status_name(res.status), "TRANSIENT");
  assert_string_equal(res.message, "http: cancelled");
  assert_in_range(kjb_now_mono_us() - t0, 0, 1400000); /* /slow takes 1.5 s */
  kjb_handler_free(h);
}

static void test_http_refused(void **state) {
  /* A port that was free a moment ago: nothing listens there. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  close(fd);
  char url[128], want[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(sa.sin_port));
  kjb_handler *h = open_http(url, 5 * SECOND);
  kjb_handler_job job = make_job("{}", 10 * SECOND);
  kjb_handler_result res;
  kjb_handler_perform(h, &job, &res);
  assert_string_equal(status_name(res.status), "TRANSIENT");
  snprintf(want, sizeof want, "http: could not connect to %s: Connection refused", url);
  assert_string_equal(res.message, want);
  kjb_handler_free(h);
}

typedef struct {
  kjb_handler *h;
  int ok;
} worker_arg;

static void *http_worker(void *p) {
  worker_arg *a = p;
  for (int i = 0; i < 25; i++) {
    kjb_handler_job job = make_job("{\"order_id\":7}", 10 * SECOND);
    kjb_handler_result res;
    kjb_handler_perform(a->h, &job, &res);
    a->ok += res.status == KJB_HANDLER_OK;
  }
  return NULL;
}

static void test_http_concurrent(void **state) {
  char url[128];
  server_url(url, sizeof url, "/status/200");
  kjb_handler *h = open_http(url, 5 * SECOND);
  int before = atomic_load(&connections);
  pthread_t t[4];
  worker_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (worker_arg){.h = h};
    assert_int_equal(pthread_create(&t[i], NULL, http_worker, &a[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(a[i].ok, 25);
  }
  /* 100 requests over at most one connection per thread. */
  assert_in_range(atomic_load(&connections) - before, 1, 4);
  kjb_handler_free(h);
}

static void test_http_config(void **state) {
  kjb_handler_cfg cfg = {.kind = "orders", .type = "http", .timeout_us = SECOND};
  check_open_fails(&cfg, "http: url is required");
  cfg.url = "ftp://example.com/x";
  check_open_fails(&cfg, "http: url is not a valid http(s) URL");
  cfg.url = "not a url";
  check_open_fails(&cfg, "http: url is not a valid http(s) URL");
  cfg.type = "smtp";
  check_open_fails(&cfg, "unknown handler type \"smtp\"");
}

/* ---- exec ---- */

static char script[512];
static char tmpdir[64];

static kjb_handler *open_exec(int64_t timeout_us, size_t n, char **argv) {
  kjb_handler_cfg cfg = {
      .kind = "orders", .type = "exec", .timeout_us = timeout_us, .command = argv, .ncommand = n};
  kjb_err err = {0};
  kjb_handler *h = kjb_handler_open(&cfg, &err);
  assert_string_equal(err.msg, "");
  assert_non_null(h);
  return h;
}

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; d && (e = readdir(d));)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static char *slurp(const char *path, size_t *len) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_err err;
  if (kjb_read_file(path, 64 << 20, &b, &err) < 0)
    fail_msg("cannot read %s: %s", path, err.msg);
  *len = b.len;
  return b.data;
}

static int setup_exec(void **state) {
  const char *src = getenv("KJB_SOURCE_DIR");
  snprintf(script, sizeof script, "%s/tests/unit/data/exec_job.sh", src ? src : ".");
  snprintf(tmpdir, sizeof tmpdir, "/tmp/kjb-test-handler-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_exec(void **state) {
  char path[128];
  static const char *const names[] = {"args", "args.env"};
  for (size_t i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
    unlink(path);
  }
  rmdir(tmpdir);
  return 0;
}

static void test_exec_outcomes(void **state) {
  static const struct {
    const char *argv[4];
    kjb_handler_status status;
    const char *message;
  } cases[] = {
      {{"ok"}, KJB_HANDLER_OK, ""},
      {{"exit", "75", "busy, try later"},
       KJB_HANDLER_TRANSIENT,
       "exec: exited 75: busy, try later"},
      {{"exit", "3", "bad input\nline two"},
       KJB_HANDLER_PERMANENT,
       "exec: exited 3: bad input line two"},
      {{"exit", "1", ""}, KJB_HANDLER_PERMANENT, "exec: exited 1"},
      {{"kill"}, KJB_HANDLER_TRANSIENT, "exec: killed by SIGKILL"},
  };
  int fds = count_fds();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *argv[5] = {script};
    size_t n = 1;
    for (; n < 5 && cases[i].argv[n - 1]; n++)
      argv[n] = (char *)cases[i].argv[n - 1];
    print_message("exec %s %s\n", argv[1], argv[2] ? argv[2] : "");
    kjb_handler *h = open_exec(10 * SECOND, n, argv);
    kjb_handler_job job = make_job("{\"order_id\":1}", 10 * SECOND);
    kjb_handler_result res;
    kjb_handler_perform(h, &job, &res);
    assert_string_equal(status_name(res.status), status_name(cases[i].status));
    assert_string_equal(res.message, cases[i].message);
    assert_int_equal(res.retry_after_us, -1);
    kjb_handler_free(h);
  }
  assert_int_equal(count_fds(), fds);
}

static void test_exec_stdin_and_env(void **state) {
  char out[128], env[160];
  snprintf(out, sizeof out, "%s/args", tmpdir);
  snprintf(env, sizeof env, "%s/args.env", tmpdir);
  char *argv[] = {script, "copy", out};
  kjb_handler *h = open_exec(10 * SECOND, 3, argv);
  /* More than a pipe holds, so that writing has to wait for the reader;
   * and a variable of ours in the parent, which the job's must replace. */
  kjb_buf args;
  kjb_buf_init(&args);
  kjb_buf_puts(&args, "{\"order_id\":\"A-1\",\"note\":\"caf\xc3\xa9\",\"pad\":\"");
  for (int i = 0; i < 300000; i++)
    kjb_buf_putc(&args, (char)('a' + i % 26));
  kjb_buf_puts(&args, "\"}");
  setenv("KJB_JOB_ID", "999", 1);
  kjb_handler_job job = make_job(args.data, 20 * SECOND);
  kjb_handler_result res;
  kjb_handler_perform(h, &job, &res);
  unsetenv("KJB_JOB_ID");
  assert_string_equal(res.message, "");
  assert_string_equal(status_name(res.status), "OK");
  size_t len;
  char *got = slurp(out, &len);
  assert_int_equal(len, args.len);
  assert_memory_equal(got, args.data, len);
  free(got);
  got = slurp(env, &len);
  assert_string_equal(got, "42\norders\n2\n");
  free(got);
  kjb_buf_close(&args);
  kjb_handler_free(h);
}

static void test_exec_ignores_stdin(void **state) {
  char *argv[] = {script, "ignore"};
  kjb_handler *h = open_exec(10 * SECOND, 2, argv);
  kjb_buf args;
  kjb_buf_init(&args);
  kjb_buf_putc(&args, '"');
  for (int i = 0; i < 1000000; i++)
    kjb_buf_putc(&args, 'x');
  kjb_buf_putc(&args, '"');
  kjb_handler_job job = make_job(args.data, 20 * SECOND);
  kjb_handler_result res;
  kjb_handler_perform(h, &job, &res); /* SIGPIPE here would end the test */
  assert_string_equal(res.message, "");
  assert_string_equal(status_name(res.status), "OK");
  kjb_buf_close(&args);
  kjb_handler_free(h);
}

static void test_exec_timeout(void **state) {
  char *argv[] = {script, "sleep"};
  /* The job's deadline, then the handler's timeout, then cancellation. */
  static const struct {
    int64_t timeout_us, budget_us;
    int cancel;
    const char *message;
  } cases[] = {
      {10 * SECOND, 500000, 0, "exec: timed out after 0.5 s"},
      {500000, 10 * SECOND, 0, "exec: timed out after 0.5 s"},
      {10 * SECOND, 10 * SECOND, 1, "exec: cancelled"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kjb_handler *h = open_exec(cases[i].timeout_us, 2, argv);
    static volatile int cancel;
    cancel = cases[i].cancel;
    kjb_handler_job job = make_job("{}", cases[i].budget_us);
    job.cancelled = &cancel;
    kjb_handler_result res;
    int64_t t0 = kjb_now_mono_us();
    kjb_handler_perform(h, &job, &res);
    assert_in_range(kjb_now_mono_us() - t0, 0, 3 * SECOND);
    assert_string_equal(status_name(res.status), "TRANSIENT");
    assert_string_equal(res.message, cases[i].message);
    /* Gone and reaped: this process has no child left, not even a
     * zombie. */
    int wstatus;
    assert_int_equal(waitpid(-1, &wstatus, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    kjb_handler_free(h);
  }
}

static void test_exec_cannot_run(void **state) {
  static const char *const progs[] = {"/nonexistent/kjb-prog", "kjb-no-such-program"};
  for (size_t i = 0; i < 2; i++) {
    char *argv[] = {(char *)progs[i], "x"};
    kjb_handler *h = open_exec(10 * SECOND, 2, argv);
    kjb_handler_job job = make_job("{}", 10 * SECOND);
    kjb_handler_result res;
    kjb_handler_perform(h, &job, &res);
    char want[128];
    snprintf(want, sizeof want, "exec: could not run \"%s\": No such file or directory", progs[i]);
    assert_string_equal(status_name(res.status), "PERMANENT");
    assert_string_equal(res.message, want);
    kjb_handler_free(h);
  }
  kjb_handler_cfg cfg = {.kind = "orders", .type = "exec", .timeout_us = SECOND};
  check_open_fails(&cfg, "exec: command is empty");
}

/* ---- log ---- */

static void test_log(void **state) {
  kjb_handler_cfg cfg = {.kind = "orders", .type = "log", .timeout_us = SECOND};
  kjb_err err = {0};
  kjb_handler *h = kjb_handler_open(&cfg, &err);
  assert_non_null(h);
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  const char *args[] = {"{\"order_id\":1}", big};
  for (size_t i = 0; i < 2; i++) {
    kjb_handler_job job = make_job(args[i], SECOND);
    kjb_handler_result res;
    kjb_handler_perform(h, &job, &res);
    assert_string_equal(status_name(res.status), "OK");
    assert_string_equal(res.message, "");
  }
  kjb_handler_free(h);
  kjb_handler_free(NULL);
}

/* ---- plugins ---- */

static void test_plugin_example(void **state) {
  static const struct {
    const char *args;
    kjb_handler_status status;
    const char *message;
    int64_t retry_after_us;
  } cases[] = {
      {"{\"order_id\":\"A-1\"}", KJB_HANDLER_OK, "", -1},
      {" {\"n\":{\"a\":[1,{\"b\":2}]},\"order_id\":3}", KJB_HANDLER_OK, "", -1},
      {"{\"customer\":\"x\"}", KJB_HANDLER_PERMANENT, "args lack order_id", -1},
      {"{\"note\":\"order_id\"}", KJB_HANDLER_PERMANENT, "args lack order_id", -1},
      {"{\"n\":{\"order_id\":1}}", KJB_HANDLER_PERMANENT, "args lack order_id", -1},
      {"[1,2]", KJB_HANDLER_PERMANENT, "args are not a JSON object", -1},
      {"{\"fail\": \"transient\", \"order_id\": 1}", KJB_HANDLER_TRANSIENT,
       "orders: asked to fail (attempt 2 of 5)", SECOND},
  };
  kjb_handler_cfg cfg = {.kind = "orders", .type = "plugin", .plugin = KJB_EXAMPLE_PLUGIN};
  kjb_err err = {0};
  kjb_handler *h = kjb_handler_open(&cfg, &err);
  assert_string_equal(err.msg, "");
  assert_non_null(h);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("args %s\n", cases[i].args);
    kjb_handler_job job = make_job(cases[i].args, SECOND);
    kjb_handler_result res;
    kjb_handler_perform(h, &job, &res);
    assert_string_equal(status_name(res.status), status_name(cases[i].status));
    assert_string_equal(res.message, cases[i].message);
    assert_int_equal(res.retry_after_us, cases[i].retry_after_us);
  }
  /* ABI minor version 1: the plugin names the job's trace. */
  kjb_handler_job job = make_job("{\"fail\": \"transient\", \"order_id\": 1}", SECOND);
  job.abi_minor = 1;
  job.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  kjb_handler_result res;
  kjb_handler_perform(h, &job, &res);
  assert_string_equal(
      res.message,
      "orders: asked to fail (attempt 2 of 5) (trace 4bf92f3577b34da6a3ce929d0e0e4736)");
  kjb_handler_free(h);
}

static void test_plugin_refused(void **state) {
  kjb_handler_cfg cfg = {.kind = "orders", .type = "plugin"};
  char want[512];

  cfg.plugin = "/nonexistent/x.so";
  check_open_fails(&cfg, "plugin \"/nonexistent/x.so\": /nonexistent/x.so: cannot open shared "
                         "object file: No such file or directory");

  cfg.plugin = KJB_BAD_ABI_PLUGIN;
  snprintf(want, sizeof want, "plugin \"%s\": ABI version 99, kjb needs 1", KJB_BAD_ABI_PLUGIN);
  check_open_fails(&cfg, want);

  cfg.plugin = KJB_EXAMPLE_PLUGIN;
  cfg.kind = "a-kind-name-that-is-far-too-long-for-the-example-plugin-to-keep-x";
  snprintf(want, sizeof want,
           "plugin \"%s\": init failed: kind \"a-kind-name-that-is-...\" is longer than 63 bytes",
           KJB_EXAMPLE_PLUGIN);
  check_open_fails(&cfg, want);

  cfg.kind = "orders";
  cfg.plugin = "";
  check_open_fails(&cfg, "plugin: no path to the shared object");

  /* A shared object that is no plugin: dlerror() names it by its full
   * path, which depends on the system. */
  cfg.plugin = "libm.so.6";
  kjb_err err = {0};
  assert_null(kjb_handler_open(&cfg, &err));
  assert_string_equal(kjb_err_name(err.code), "CONFIG");
  const char *prefix = "plugin \"libm.so.6\": ", *suffix = "undefined symbol: kjb_handler_entry";
  print_message("%s\n", err.msg);
  assert_int_equal(strncmp(err.msg, prefix, strlen(prefix)), 0);
  size_t len = strlen(err.msg);
  assert_true(len > strlen(suffix));
  assert_string_equal(err.msg + len - strlen(suffix), suffix);
}

static void test_sanitize(void **state) {
  static const struct {
    const char *in;
    size_t cap;
    const char *out;
  } cases[] = {
      {"plain text", 64, "plain text"},
      {"  lead\r\n\ttrail \n", 64, "lead trail"},
      {"a\x01\x7f"
       "b",
       64, "a b"},
      {"caf\xc3\xa9 \xe2\x82\xac", 64, "caf\xc3\xa9 \xe2\x82\xac"},
      {"bad \xc3 \xff\xfe end", 64, "bad ? ?? end"},
      {"\xed\xa0\x80", 64, "???"}, /* a surrogate */
      {"abcdef", 4, "abc"},
      {"ab\xc3\xa9", 4, "ab"}, /* never half a character */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[64];
    kjb_handler_sanitize(out, cases[i].cap, cases[i].in, strlen(cases[i].in));
    assert_string_equal(out, cases[i].out);
  }
}

int main(void) {
  /* SIGPIPE stays at its default on purpose: test_exec_ignores_stdin
   * shows the exec handler never lets it through. */
  const struct CMUnitTest http[] = {
      cmocka_unit_test(test_http_statuses),          cmocka_unit_test(test_http_retry_after_date),
      cmocka_unit_test(test_http_request),           cmocka_unit_test(test_http_body_in_message),
      cmocka_unit_test(test_http_hides_credentials), cmocka_unit_test(test_http_timeouts),
      cmocka_unit_test(test_http_cancelled),         cmocka_unit_test(test_http_refused),
      cmocka_unit_test(test_http_concurrent),        cmocka_unit_test(test_http_config),
  };
  const struct CMUnitTest exec[] = {
      cmocka_unit_test(test_exec_outcomes),      cmocka_unit_test(test_exec_stdin_and_env),
      cmocka_unit_test(test_exec_ignores_stdin), cmocka_unit_test(test_exec_timeout),
      cmocka_unit_test(test_exec_cannot_run),
  };
  const struct CMUnitTest other[] = {
      cmocka_unit_test(test_log),
      cmocka_unit_test(test_plugin_example),
      cmocka_unit_test(test_plugin_refused),
      cmocka_unit_test(test_sanitize),
  };
  int failed = cmocka_run_group_tests_name("http", http, start_server, stop_server);
  failed += cmocka_run_group_tests_name("exec", exec, setup_exec, teardown_exec);
  failed += cmocka_run_group_tests_name("other", other, NULL, NULL);
  return failed;
}
