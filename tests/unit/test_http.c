/* The HTTP server: probes through their state transitions, /metrics,
 * unknown paths and methods, listen addresses, and probes that keep
 * answering under slow clients, bursts and slow API requests, over real
 * sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "api.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "util.h"

typedef struct {
  long status;
  char type[128];
  char allow[64];
  kjb_buf body;
} reply;

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  kjb_buf_append(arg, p, size * n);
  return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg) {
  reply *r = arg;
  size_t len = size * n;
  char line[256];
  snprintf(line, sizeof line, "%.*s", (int)len, p);
  line[strcspn(line, "\r\n")] = '\0';
  if (strncasecmp(line, "content-type: ", 14) == 0)
    snprintf(r->type, sizeof r->type, "%s", line + 14);
  if (strncasecmp(line, "allow: ", 7) == 0)
    snprintf(r->allow, sizeof r->allow, "%s", line + 7);
  return len;
}

/* Requests host:port/path with method (NULL for GET); the caller closes
 * r->body. */
static void request(const char *host, int port, const char *method, const char *path, reply *r) {
  memset(r, 0, sizeof *r);
  kjb_buf_init(&r->body);
  char url[256];
  snprintf(url, sizeof url, "http://%s:%d%s", host, port, path);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (method && strcmp(method, "POST") == 0)
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"x\":1}");
  else if (method)
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  CURLcode rc = curl_easy_perform(c);
  assert_int_equal(rc, CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_cleanup(c);
}

/* GET path: status, content type and the exact body. */
static void expect(kjb_http *h, const char *path, long status, const char *body) {
  reply r;
  request("127.0.0.1", kjb_http_port(h), NULL, path, &r);
  assert_int_equal(r.status, status);
  assert_string_equal(r.type, "application/json");
  assert_string_equal(r.body.data, body);
  kjb_buf_close(&r.body);
}

static kjb_http *start(void) {
  kjb_err err = {0};
  kjb_http *h = kjb_http_new("127.0.0.1:0", NULL, &err);
  if (!h)
    fail_msg("kjb_http_new: %s", err.msg);
  assert_true(kjb_http_port(h) > 0);
  return h;
}

#define OK "{\"status\":\"ok\"}"

static void test_executor_probes(void **state) {
  kjb_http *h = start();
  /* Nothing reported yet. */
  expect(h, "/healthz", 503, "{\"status\":\"unhealthy\",\"reason\":\"starting\"}");
  expect(h, "/readyz", 503, "{\"status\":\"not ready\",\"reason\":\"starting\"}");
  expect(h, "/startupz", 503, "{\"status\":\"starting\",\"reason\":\"starting\"}");

  int64_t now = kjb_now_mono_us();
  kjb_health st = {.db_ok_us = now, .db_connected = true};
  kjb_http_set_health(h, &st);
  expect(h, "/healthz", 503, "{\"status\":\"unhealthy\",\"reason\":\"main loop not running\"}");
  expect(h, "/readyz", 503, "{\"status\":\"not ready\",\"reason\":\"migrations pending\"}");

  st.loop_us = now;
  kjb_http_set_health(h, &st);
  expect(h, "/healthz", 200, OK);
  expect(h, "/startupz", 503, "{\"status\":\"starting\",\"reason\":\"migrations pending\"}");

  st.migrations_current = true;
  kjb_http_set_health(h, &st);
  expect(h, "/healthz", 200, OK);
  expect(h, "/readyz", 200, OK);
  expect(h, "/startupz", 200, OK);

  /* A loop that stopped going round. */
  st.loop_us = now - KJB_HTTP_STALE_US - 1000000;
  kjb_http_set_health(h, &st);
  expect(h, "/healthz", 503, "{\"status\":\"unhealthy\",\"reason\":\"main loop stalled\"}");
  expect(h, "/readyz", 200, OK);

  /* The database: the last query failed, or none succeeded for long. */
  st.loop_us = kjb_now_mono_us();
  st.db_connected = false;
  kjb_http_set_health(h, &st);
  expect(h, "/healthz", 503, "{\"status\":\"unhealthy\",\"reason\":\"database unreachable\"}");
  expect(h, "/readyz", 503, "{\"status\":\"not ready\",\"reason\":\"database unreachable\"}");
  expect(h, "/startupz", 200, OK);
  st.db_connected = true;
  st.db_ok_us = now - KJB_HTTP_STALE_US - 1000000;
  kjb_http_set_health(h, &st);
  expect(h, "/healthz", 503, "{\"status\":\"unhealthy\",\"reason\":\"database unreachable\"}");
  st.db_ok_us = kjb_now_mono_us();
  kjb_http_set_health(h, &st);
  expect(h, "/healthz", 200, OK);
  kjb_http_free(h);
}

static void test_consumer_probes(void **state) {
  kjb_http *h = start();
  int64_t now = kjb_now_mono_us();
  kjb_health st = {.db_ok_us = now,
                   .db_connected = true,
                   .loop_us = now,
                   .consumer = true,
                   .migrations_current = true};
  kjb_http_set_health(h, &st);
  expect(h, "/healthz", 200, OK);
  expect(h, "/readyz", 503, "{\"status\":\"not ready\",\"reason\":\"kafka not connected\"}");
  expect(h, "/startupz", 503,
         "{\"status\":\"starting\",\"reason\":\"waiting for the first partition assignment\"}");
  st.kafka_connected = true;
  kjb_http_set_health(h, &st);
  expect(h, "/readyz", 503, "{\"status\":\"not ready\",\"reason\":\"no partitions assigned\"}");
  st.partitions = 3;
  st.assigned_once = true;
  kjb_http_set_health(h, &st);
  expect(h, "/readyz", 200, OK);
  expect(h, "/startupz", 200, OK);
  /* Losing the partitions or the brokers is not ready, but started. */
  st.partitions = 0;
  kjb_http_set_health(h, &st);
  expect(h, "/readyz", 503, "{\"status\":\"not ready\",\"reason\":\"no partitions assigned\"}");
  expect(h, "/startupz", 200, OK);
  st.partitions = 3;
  st.kafka_connected = false;
  kjb_http_set_health(h, &st);
  expect(h, "/readyz", 503, "{\"status\":\"not ready\",\"reason\":\"kafka not connected\"}");
  expect(h, "/healthz", 200, OK);
  kjb_http_free(h);
}

static void test_not_found_and_methods(void **state) {
  kjb_http *h = start();
  int port = kjb_http_port(h);
  static const char *const missing[] = {"/nope",
                                        "/metrics/",
                                        "/healthz/x",
                                        "/api/nope",
                                        "/api/jobs/1/x",
                                        "/index.html",
                                        "/%3Cscript%3Ealert(1)%3C/script%3E"};
  for (size_t i = 0; i < sizeof missing / sizeof *missing; i++)
    expect(h, missing[i], 404, "{\"error\":\"not found\"}");
  /* A query string does not change the path, and is not echoed. */
  expect(h, "/startupz?x=%3Cb%3E", 503, "{\"status\":\"starting\",\"reason\":\"starting\"}");
  static const char *const methods[] = {"POST", "PUT", "DELETE", "PATCH"};
  static const char *const paths[] = {"/metrics", "/healthz", "/readyz", "/startupz"};
  for (size_t m = 0; m < sizeof methods / sizeof *methods; m++)
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
      reply r;
      request("127.0.0.1", port, methods[m], paths[p], &r);
      assert_int_equal(r.status, 405);
      assert_string_equal(r.type, "application/json");
      assert_string_equal(r.allow, "GET");
      assert_string_equal(r.body.data, "{\"error\":\"method not allowed\"}");
      kjb_buf_close(&r.body);
    }
  reply r;
  request("127.0.0.1", port, "POST", "/nope", &r);
  assert_int_equal(r.status, 404);
  kjb_buf_close(&r.body);
  /* Admin actions are POST only. */
  request("127.0.0.1", port, "GET", "/api/jobs/7/retry", &r);
  assert_int_equal(r.status, 405);
  assert_string_equal(r.allow, "POST");
  kjb_buf_close(&r.body);
  kjb_http_free(h);
}

/* The dashboard is served from the binary; the API answers 503 until the
 * service attaches it. */
static void test_dashboard_and_unattached_api(void **state) {
  kjb_http *h = start();
  int port = kjb_http_port(h);
  reply r;
  request("127.0.0.1", port, "GET", "/", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.type, "text/html; charset=utf-8");
  assert_non_null(strstr(r.body.data, "<html"));
  assert_null(strstr(r.body.data, "<script src"));
  kjb_buf_close(&r.body);
  expect(h, "/api/stats", 503, "{\"error\":\"starting\"}");
  expect(h, "/api/jobs?state=discarded", 503, "{\"error\":\"starting\"}");
  request("127.0.0.1", port, "POST", "/api/jobs/7/retry", &r);
  assert_int_equal(r.status, 503);
  kjb_buf_close(&r.body);
  kjb_http_free(h);
}

static void test_metrics(void **state) {
  kjb_metrics_reset();
  kjb_counter_add("kjb_jobs_finished_total", "Finished attempts.", 2, "kind", "email", "outcome",
                  "completed", NULL);
  kjb_http *h = start();
  reply r;
  request("127.0.0.1", kjb_http_port(h), NULL, "/metrics", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.type, "text/plain; version=0.0.4; charset=utf-8");
  static const char *const want[] = {
      "# TYPE kjb_jobs_finished_total counter\n"
      "kjb_jobs_finished_total{kind=\"email\",outcome=\"completed\"} 2\n",
      "# TYPE kjb_build_info gauge\nkjb_build_info{version=\"" KJB_VERSION "\"} 1\n",
      "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ",
      "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes ",
      "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes ",
      "# TYPE process_open_fds gauge\nprocess_open_fds ",
      "# TYPE process_max_fds gauge\nprocess_max_fds ",
      "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (!strstr(r.body.data, want[i]))
      fail_msg("missing\n%s\nin\n%s", want[i], r.body.data);
  /* The start time is a plausible epoch time (after 2020). */
  const char *st = strstr(r.body.data, "\nprocess_start_time_seconds ");
  assert_non_null(st);
  double t = strtod(st + 28, NULL);
  assert_true(t > 1.5e9);
  assert_int_equal(r.body.data[r.body.len - 1], '\n');
  kjb_buf_close(&r.body);
  kjb_http_free(h);
  kjb_metrics_reset();
}

static void test_listen_addresses(void **state) {
  static const char *const bad[] = {"",
                                    "nope",
                                    "127.0.0.1",
                                    "127.0.0.1:",
                                    "127.0.0.1:x",
                                    ":9464",
                                    "::1:9464",
                                    "127.0.0.1:70000",
                                    "[::1]9464",
                                    "[::1]:",
                                    "[127.0.0.1]:80",
                                    "127.0.0.1:-1"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    kjb_err err = {0};
    kjb_http *h = kjb_http_new(bad[i], NULL, &err);
    if (h)
      fail_msg("\"%s\" was accepted", bad[i]);
    assert_int_equal(err.code, KJB_ECONFIG);
  }

  /* A port already taken. */
  kjb_http *h = start();
  char addr[64], want[128];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", kjb_http_port(h));
  snprintf(want, sizeof want, "could not listen on %s: Address already in use", addr);
  kjb_err err = {0};
  kjb_http *again = kjb_http_new(addr, NULL, &err);
  assert_null(again);
  assert_int_equal(err.code, KJB_EIO);
  assert_string_equal(err.msg, want);
  kjb_http_free(h);
  kjb_http_free(NULL);
  /* Freeing gave the port back. */
  h = kjb_http_new(addr, NULL, &err);
  if (!h)
    fail_msg("%s after free: %s", addr, err.msg);
  kjb_http_free(h);

  /* IPv6 loopback, where the host has it. */
  h = kjb_http_new("[::1]:0", NULL, &err);
  if (h) {
    reply r;
    request("[::1]", kjb_http_port(h), NULL, "/healthz", &r);
    assert_int_equal(r.status, 503);
    kjb_buf_close(&r.body);
    kjb_http_free(h);
  } else {
    assert_int_equal(err.code, KJB_EIO);
  }
}

/* ---- many clients, slow clients, slow API requests --------------------- */

/* A connected socket to the server with a 30 s receive timeout. */
static int dial(kjb_http *h) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)kjb_http_port(h))};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  struct timeval tv = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static void send_text(int fd, const char *text) {
  assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

/* The status of the answer on fd (the request asked to close). */
static int answer_status(int fd) {
  char buf[4096];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof buf - 1 && (r = recv(fd, buf + n, sizeof buf - 1 - n, 0)) > 0)
    n += (size_t)r;
  buf[n] = '\0';
  int status = 0;
  if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
    fail_msg("no HTTP answer: \"%s\"", buf);
  return status;
}

static double seconds_since(int64_t t0) { return (double)(kjb_now_mono_us() - t0) / 1e6; }

/* /healthz answers 200 within a second, n times. */
static void probes_answer(kjb_http *h, int n) {
  for (int i = 0; i < n; i++) {
    int64_t t0 = kjb_now_mono_us();
    expect(h, "/healthz", 200, OK);
    double took = seconds_since(t0);
    if (took > 1.0)
      fail_msg("/healthz took %.2f s", took);
  }
}

static void healthy(kjb_http *h) {
  int64_t now = kjb_now_mono_us();
  kjb_health st = {
      .db_ok_us = now, .db_connected = true, .loop_us = now, .migrations_current = true};
  kjb_http_set_health(h, &st);
}

#define CLIENTS 200

/* Clients that never finish their headers (a slowloris) hold connections,
 * not threads: far more of them than the 64 the server used to take, and
 * the probes still answer at once. */
static void test_slow_clients_leave_the_probes_alone(void **state) {
  kjb_http *h = start();
  healthy(h);
  int fds[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) {
    fds[i] = dial(h);
    send_text(fds[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  }
  probes_answer(h, 5);
  for (int i = 0; i < CLIENTS; i++)
    send_text(fds[i], "X-Dribble: 1\r\n");
  probes_answer(h, 5);
  for (int i = 0; i < CLIENTS; i++)
    close(fds[i]);
  kjb_http_free(h);
}

/* A burst of connections, all open at once, all answered (past 64 they
 * were reset). */
static void test_burst_is_answered(void **state) {
  kjb_http *h = start();
  healthy(h);
  int fds[CLIENTS];
  for (int i = 0; i < CLIENTS; i++)
    fds[i] = dial(h);
  for (int i = 0; i < CLIENTS; i++)
    send_text(fds[i], "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  for (int i = 0; i < CLIENTS; i++) {
    assert_int_equal(answer_status(fds[i]), 200);
    close(fds[i]);
  }
  kjb_http_free(h);
}

/* /api/jobs waiting on a database that never answers (a listening socket
 * nobody accepts from) holds up neither the probes nor the server's poll
 * threads, however many such requests there are; each gets its 503 once
 * the connection attempt times out. */
static void test_slow_api_leaves_the_probes_alone(void **state) {
  int pg = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  assert_int_equal(bind(pg, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(pg, 16), 0);
  assert_int_equal(getsockname(pg, (struct sockaddr *)&sa, &sl), 0);
  char conninfo[128];
  snprintf(conninfo, sizeof conninfo,
           "host=127.0.0.1 port=%d dbname=kjb user=kjb connect_timeout=2", ntohs(sa.sin_port));
  setenv("KJB_POSTGRES_CONNINFO", conninfo, 1);
  kjb_config cfg;
  kjb_err err = {0};
  if (kjb_config_load("config/example.cfg", &cfg, &err) < 0)
    fail_msg("config/example.cfg: %s", err.msg);
  unsetenv("KJB_POSTGRES_CONNINFO");
  kjb_api *api = kjb_api_new(&cfg, "node-1", "executor", NULL, &err);
  assert_non_null(api);
  kjb_http *h = start();
  healthy(h);
  kjb_http_set_api(h, api);

  enum { SLOW = 3 }; /* more than the poll threads */
  int fds[SLOW];
  int64_t t0 = kjb_now_mono_us();
  for (int i = 0; i < SLOW; i++) {
    fds[i] = dial(h);
    send_text(fds[i], "GET /api/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  }
  probes_answer(h, 5);
  expect(h, "/readyz", 200, OK);
  assert_true(seconds_since(t0) < 1.9); /* all while the first still waits */
  for (int i = 0; i < SLOW; i++) {
    assert_int_equal(answer_status(fds[i]), 503);
    close(fds[i]);
  }
  kjb_http_free(h);
  kjb_api_free(api);
  kjb_config_close(&cfg);
  close(pg);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_executor_probes),
      cmocka_unit_test(test_consumer_probes),
      cmocka_unit_test(test_not_found_and_methods),
      cmocka_unit_test(test_dashboard_and_unattached_api),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_listen_addresses),
      cmocka_unit_test(test_slow_clients_leave_the_probes_alone),
      cmocka_unit_test(test_burst_is_answered),
      cmocka_unit_test(test_slow_api_leaves_the_probes_alone),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
