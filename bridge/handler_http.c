/* The http handler: POSTs a job's args as JSON to the configured URL and
 * maps the response status to an outcome. */
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "handler.h"
#include "util.h"

/* How much of a response body goes into the message. */
#define BODY_SNIPPET 200

typedef struct {
  char *url;
  char *shown_url;    /* url without userinfo and query, for messages */
  int64_t timeout_us; /* <= 0: only the job's deadline bounds a request */
  /* Idle easy handles: reusing one reuses its connections (keep-alive). */
  pthread_mutex_t mu;
  CURL **idle;
  size_t nidle, cap;
} http_state;

typedef struct {
  char data[BODY_SNIPPET + 4]; /* a few more bytes to end on a character */
  size_t len;
  size_t total;
} body_snippet;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Returns url without credentials or query (which may carry a token),
 * or NULL when curl cannot parse it or its scheme is not http(s). */
static char *shown_url(const char *url) {
  CURLU *u = curl_url();
  char *scheme = NULL, *out = NULL, *copy = NULL;
  if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
    goto done;
  curl_url_set(u, CURLUPART_USER, NULL, 0);
  curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
  curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
  curl_url_set(u, CURLUPART_QUERY, NULL, 0);
  curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
  if (curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK)
    copy = kjb_xstrdup(out);
done:
  curl_free(out);
  curl_free(scheme);
  curl_url_cleanup(u);
  return copy;
}

static int http_init(const kjb_handler_cfg *cfg, void **state, kjb_err *err) {
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != CURLE_OK)
    return kjb_err_set(err, KJB_ECONFIG, "http: could not initialize libcurl: %s",
                       curl_easy_strerror(curl_init_rc));
  if (!cfg->url || !*cfg->url)
    return kjb_err_set(err, KJB_ECONFIG, "http: url is required");
  char *shown = shown_url(cfg->url);
  if (!shown)
    return kjb_err_set(err, KJB_ECONFIG, "http: url is not a valid http(s) URL");
  http_state *s = kjb_xcalloc(1, sizeof *s);
  s->url = kjb_xstrdup(cfg->url);
  s->shown_url = shown;
  s->timeout_us = cfg->timeout_us;
  pthread_mutex_init(&s->mu, NULL);
  *state = s;
  return 0;
}

static CURL *take_handle(http_state *s) {
  CURL *c = NULL;
  pthread_mutex_lock(&s->mu);
  if (s->nidle > 0)
    c = s->idle[--s->nidle];
  pthread_mutex_unlock(&s->mu);
  if (c)
    curl_easy_reset(c); /* options go, live connections stay */
  else
    c = curl_easy_init();
  return c;
}

static void give_handle(http_state *s, CURL *c) {
  pthread_mutex_lock(&s->mu);
  s->idle = kjb_xgrow(s->idle, &s->cap, s->nidle + 1, sizeof *s->idle);
  s->idle[s->nidle++] = c;
  pthread_mutex_unlock(&s->mu);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  body_snippet *b = ud;
  size_t len = size * n;
  if (b->len < sizeof b->data) {
    size_t take = len < sizeof b->data - b->len ? len : sizeof b->data - b->len;
    memcpy(b->data + b->len, p, take);
    b->len += take;
  }
  b->total += len;
  return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  const kjb_handler_job *job = ud;
  return kjb_handler_cancelled(job) ? 1 : 0;
}

/* Retry-After as microseconds from now: delta-seconds or an HTTP-date
 * (0 when that date has passed). Returns -1 when absent or unreadable. */
static int64_t retry_after(CURL *c) {
  struct curl_header *h = NULL;
  if (curl_easy_header(c, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
    return -1;
  const char *v = h->value;
  while (*v == ' ' || *v == '\t')
    v++;
  if (isdigit((unsigned char)*v)) {
    char *end;
    unsigned long long secs = strtoull(v, &end, 10);
    while (*end == ' ' || *end == '\t')
      end++;
    if (*end == '\0') {
      /* Cap at a year: a larger hint is a broken server, not a plan. */
      const unsigned long long year = 366ULL * 24 * 3600;
      return (int64_t)(secs < year ? secs : year) * 1000000;
    }
  }
  time_t t = curl_getdate(v, NULL);
  if (t == (time_t)-1)
    return -1;
  int64_t delta = (int64_t)t * 1000000 - kjb_now_wall_us();
  return delta > 0 ? delta : 0;
}

static void http_perform(void *state, const kjb_handler_job *job, kjb_handler_result *res) {
  http_state *s = state;
  int64_t timeout = job->deadline_us - kjb_now_mono_us();
  if (s->timeout_us > 0 && s->timeout_us < timeout)
    timeout = s->timeout_us;
  if (timeout <= 0) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT,
                           "http: timed out before the request was sent");
    return;
  }
  CURL *c = take_handle(s);
  if (!c) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "http: could not create a curl handle");
    return;
  }
  char line[3][160];
  snprintf(line[0], sizeof line[0], "Idempotency-Key: kjb-%" PRId64, job->id);
  snprintf(line[1], sizeof line[1], "X-Kjb-Job-Id: %" PRId64, job->id);
  snprintf(line[2], sizeof line[2], "X-Kjb-Attempt: %d", job->attempt);
  kjb_buf kind, traceparent, tracestate;
  kjb_buf_init(&kind);
  kjb_buf_init(&traceparent);
  kjb_buf_init(&tracestate);
  kjb_buf_printf(&kind, "X-Kjb-Kind: %s", job->kind);
  struct curl_slist *headers = NULL, *tmp;
  const char *lines[8] = {"Content-Type: application/json",
                          line[0],
                          line[1],
                          kind.data,
                          line[2],
                          "Expect:" /* no 100-continue round trip for large bodies */};
  size_t nlines = 6;
  /* The attempt's W3C trace context (trace.c let only printable ASCII
   * through). */
  if (job->abi_minor >= 1 && job->traceparent) {
    kjb_buf_printf(&traceparent, "traceparent: %s", job->traceparent);
    lines[nlines++] = traceparent.data;
    if (job->tracestate) {
      kjb_buf_printf(&tracestate, "tracestate: %s", job->tracestate);
      lines[nlines++] = tracestate.data;
    }
  }
  for (size_t i = 0; i < nlines; i++) {
    if (!(tmp = curl_slist_append(headers, lines[i]))) {
      kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "http: out of memory");
      goto done;
    }
    headers = tmp;
  }

  body_snippet body = {.len = 0};
  char errbuf[CURL_ERROR_SIZE] = "";
  /* A timeout of 0 ms would mean none at all. */
  long timeout_ms = (long)((timeout + 999) / 1000);
  curl_easy_setopt(c, CURLOPT_URL, s->url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* several threads perform */
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, job->args_json);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->args_len);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "kjb/" KJB_VERSION);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)job);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);

  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_ABORTED_BY_CALLBACK) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "http: cancelled");
  } else if (rc == CURLE_OPERATION_TIMEDOUT) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "http: timed out after %.1f s",
                           timeout / 1e6);
  } else if (rc == CURLE_COULDNT_CONNECT) {
    long os_errno = 0;
    curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
    const char *why = os_errno ? strerrordesc_np((int)os_errno) : NULL;
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "http: could not connect to %s: %s",
                           s->shown_url,
                           why         ? why
                           : errbuf[0] ? errbuf
                                       : curl_easy_strerror(rc));
  } else if (rc != CURLE_OK) {
    /* Connection failures, resets, TLS trouble: the server may be back
     * later. The URL was checked at init, so nothing here is permanent. */
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "http: %s: %s", curl_easy_strerror(rc),
                           errbuf[0] ? errbuf : "no details");
  } else {
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300)
      goto done;
    if (code == 408 || code == 429 || code >= 500) {
      res->status = KJB_HANDLER_TRANSIENT;
      res->retry_after_us = retry_after(c);
    } else {
      /* Other 4xx, and 3xx: redirects are not followed, since a POST that
       * is redirected is a configuration to fix, not something to retry. */
      res->status = KJB_HANDLER_PERMANENT;
    }
    size_t n = body.len < BODY_SNIPPET ? body.len : BODY_SNIPPET;
    if (body.len > BODY_SNIPPET)
      while (n > 0 && ((unsigned char)body.data[n] & 0xC0) == 0x80)
        n--; /* end before a character that does not fit */
    char snippet[BODY_SNIPPET + 1];
    kjb_handler_sanitize(snippet, sizeof snippet, body.data, n);
    if (snippet[0])
      snprintf(res->message, sizeof res->message, "http %ld from %s: %s%s", code, s->shown_url,
               snippet, body.total > n ? "..." : "");
    else
      snprintf(res->message, sizeof res->message, "http %ld from %s", code, s->shown_url);
  }
done:
  curl_slist_free_all(headers);
  kjb_buf_close(&kind);
  kjb_buf_close(&traceparent);
  kjb_buf_close(&tracestate);
  /* The handle must not point at this call's stack once it is idle. */
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
  give_handle(s, c);
}

static void http_free(void *state) {
  http_state *s = state;
  if (!s)
    return;
  for (size_t i = 0; i < s->nidle; i++)
    curl_easy_cleanup(s->idle[i]);
  free(s->idle);
  pthread_mutex_destroy(&s->mu);
  free(s->url);
  free(s->shown_url);
  free(s);
}

const kjb_builtin_handler kjb_handler_http = {
    .type = "http", .init = http_init, .perform = http_perform, .free = http_free};
