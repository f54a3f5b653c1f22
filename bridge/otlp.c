/* The OTLP/HTTP span exporter (see otlp.h). */
#include "otlp.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

/* A queued span: the caller's strings copied. */
typedef struct {
  kjb_span s;
  char *strings; /* every string of s, one allocation */
} queued;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  bool enabled, quit;
  char *url, *service;
  double ratio;
  queued *q; /* a ring of KJB_OTLP_QUEUE */
  size_t head, n;
  int64_t warned_us; /* when a failed export was last logged */
} ex = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char DROPPED_HELP[] = "Spans not exported, by reason: queue_full or export_failed.";

static void dropped(const char *reason, double n) {
  kjb_counter_add("kjb_otlp_spans_dropped_total", DROPPED_HELP, n, "reason", reason, NULL);
}

bool kjb_otlp_enabled(void) { return ex.enabled; }

bool kjb_otlp_sample_root(void) {
  if (!ex.enabled || ex.ratio <= 0)
    return false;
  if (ex.ratio >= 1)
    return true;
  uint32_t r;
  if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
    return false;
  return (double)r / 4294967296.0 < ex.ratio;
}

/* Copies the strings of s into one allocation that q owns. */
static void copy_in(queued *q, const kjb_span *s) {
  size_t len = strlen(s->name) + 1 + (s->error ? strlen(s->error) + 1 : 0);
  for (size_t i = 0; i < s->nattrs; i++)
    len += strlen(s->attrs[i].key) + 1 + (s->attrs[i].str ? strlen(s->attrs[i].str) + 1 : 0);
  char *p = q->strings = kjb_xmalloc(len);
  q->s = *s;
#define COPY(field)                \
  do {                             \
    size_t n_ = strlen(field) + 1; \
    memcpy(p, field, n_);          \
    field = p;                     \
    p += n_;                       \
  } while (0)
  COPY(q->s.name);
  if (q->s.error)
    COPY(q->s.error);
  for (size_t i = 0; i < q->s.nattrs; i++) {
    COPY(q->s.attrs[i].key);
    if (q->s.attrs[i].str)
      COPY(q->s.attrs[i].str);
  }
#undef COPY
}

void kjb_otlp_span(const kjb_span *s) {
  if (!ex.enabled)
    return;
  pthread_mutex_lock(&ex.mu);
  if (ex.n == KJB_OTLP_QUEUE) {
    pthread_mutex_unlock(&ex.mu);
    dropped("queue_full", 1);
    return;
  }
  copy_in(&ex.q[(ex.head + ex.n) % KJB_OTLP_QUEUE], s);
  if (++ex.n >= KJB_OTLP_BATCH)
    pthread_cond_signal(&ex.cv);
  pthread_mutex_unlock(&ex.mu);
}

static json_t *nanos(int64_t us) {
  /* OTLP/JSON writes 64-bit integers as strings. */
  char buf[32];
  snprintf(buf, sizeof buf, "%lld000", (long long)us);
  return json_string(buf);
}

static json_t *span_json(const kjb_span *s) {
  json_t *attrs = json_array();
  for (size_t i = 0; i < s->nattrs; i++) {
    const kjb_span_attr *a = &s->attrs[i];
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)a->num);
    json_array_append_new(attrs,
                          json_pack("{s:s, s:{s:s}}", "key", a->key, "value",
                                    a->str ? "stringValue" : "intValue", a->str ? a->str : num));
  }
  json_t *o =
      json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:o}", "traceId", s->trace_id, "spanId", s->span_id,
                "name", s->name, "kind", s->kind, "startTimeUnixNano", nanos(s->start_us),
                "endTimeUnixNano", nanos(s->end_us), "attributes", attrs);
  if (s->parent_id[0])
    json_object_set_new(o, "parentSpanId", json_string(s->parent_id));
  json_object_set_new(o, "status",
                      s->error ? json_pack("{s:i, s:s}", "code", 2, "message", s->error)
                               : json_pack("{s:i}", "code", 1));
  return o;
}

/* The request body for spans q[0..n). */
static char *body_of(const queued *q, size_t n) {
  json_t *spans = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(spans, span_json(&q[i].s));
  json_t *req =
      json_pack("{s:[{s:{s:[{s:s, s:{s:s}}]}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceSpans",
                "resource", "attributes", "key", "service.name", "value", "stringValue", ex.service,
                "scopeSpans", "scope", "name", "kjb", "version", KJB_VERSION, "spans", spans);
  char *text = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  return text;
}

static size_t discard(void *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

/* POSTs one batch; returns 0, or -1 after logging why (at most once a
 * minute). */
static int post(CURL *c, const char *body) {
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, ex.url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  if (rc == CURLE_OK && status >= 200 && status < 300)
    return 0;
  int64_t now = kjb_now_mono_us();
  if (ex.warned_us == 0 || now - ex.warned_us > 60 * 1000000LL) {
    ex.warned_us = now;
    if (rc != CURLE_OK)
      kjb_warn("tracing: could not export spans to %s: %s", ex.url, curl_easy_strerror(rc));
    else
      kjb_warn("tracing: %s answered %ld to exported spans", ex.url, status);
  }
  return -1;
}

static void *export_main(void *arg) {
  (void)arg;
  CURL *c = curl_easy_init();
  queued *batch = kjb_xcalloc(KJB_OTLP_BATCH, sizeof *batch);
  pthread_mutex_lock(&ex.mu);
  for (;;) {
    if (ex.n < KJB_OTLP_BATCH && !ex.quit) {
      struct timespec until;
      clock_gettime(CLOCK_MONOTONIC, &until);
      until.tv_sec += 1; /* a batch a second at least */
      pthread_cond_timedwait(&ex.cv, &ex.mu, &until);
    }
    size_t n = ex.n < KJB_OTLP_BATCH ? ex.n : KJB_OTLP_BATCH;
    for (size_t i = 0; i < n; i++)
      batch[i] = ex.q[(ex.head + i) % KJB_OTLP_QUEUE];
    ex.head = (ex.head + n) % KJB_OTLP_QUEUE;
    ex.n -= n;
    bool quit = ex.quit && ex.n == 0;
    pthread_mutex_unlock(&ex.mu);
    bool failed = false;
    if (n) {
      char *body = body_of(batch, n);
      if ((failed = !c || !body || post(c, body) < 0))
        dropped("export_failed", (double)n);
      else
        kjb_counter_add("kjb_otlp_spans_exported_total", "Spans exported over OTLP/HTTP.",
                        (double)n, NULL);
      free(body);
      for (size_t i = 0; i < n; i++)
        free(batch[i].strings);
    }
    pthread_mutex_lock(&ex.mu);
    if (ex.quit && failed && ex.n) {
      /* Stopping with the collector away: no more waiting on it. */
      dropped("export_failed", (double)ex.n);
      for (size_t i = 0; i < ex.n; i++)
        free(ex.q[(ex.head + i) % KJB_OTLP_QUEUE].strings);
      ex.n = 0;
    }
    if (quit || (ex.quit && ex.n == 0))
      break;
  }
  pthread_mutex_unlock(&ex.mu);
  free(batch);
  if (c)
    curl_easy_cleanup(c);
  return NULL;
}

int kjb_otlp_start(const kjb_config *cfg, kjb_err *err) {
  if (!cfg->tracing.otlp_endpoint || ex.enabled)
    return 0;
  kjb_buf url;
  kjb_buf_init(&url);
  const char *base = cfg->tracing.otlp_endpoint;
  size_t len = strlen(base);
  kjb_buf_printf(&url, "%.*s/v1/traces", (int)(len && base[len - 1] == '/' ? len - 1 : len), base);
  ex.url = kjb_xstrdup(url.data);
  kjb_buf_close(&url);
  ex.service = kjb_xstrdup(cfg->tracing.service_name);
  ex.ratio = cfg->tracing.sample_ratio;
  ex.q = kjb_xcalloc(KJB_OTLP_QUEUE, sizeof *ex.q);
  ex.head = ex.n = 0;
  ex.quit = false;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ex.cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&ex.thread, NULL, export_main, NULL) != 0) {
    pthread_cond_destroy(&ex.cv);
    free(ex.q);
    free(ex.url);
    free(ex.service);
    return kjb_err_set(err, KJB_EINTERNAL, "could not start the span exporter");
  }
  ex.enabled = true;
  kjb_info("tracing: exporting spans to %s (sample ratio %.3g)", ex.url, ex.ratio);
  return 0;
}

void kjb_otlp_stop(void) {
  if (!ex.enabled)
    return;
  pthread_mutex_lock(&ex.mu);
  ex.quit = true;
  pthread_cond_signal(&ex.cv);
  pthread_mutex_unlock(&ex.mu);
  pthread_join(ex.thread, NULL);
  ex.enabled = false;
  pthread_cond_destroy(&ex.cv);
  free(ex.q);
  free(ex.url);
  free(ex.service);
  ex.q = NULL;
  ex.url = ex.service = NULL;
}
