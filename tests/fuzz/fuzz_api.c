/* libFuzzer target for the HTTP API's request parsing, everything that
 * runs before a request may touch the database: the query-parameter check
 * and lookup of http.c (kjb_http_check_param, kjb_http_param), the job-id
 * paths and the routing predicates, the /api/jobs, /api/dlq and
 * /api/dead-letters parameters, the POST /api/replay body, the dead-letter
 * selection body and the Authorization header of api.c. Listing jobs, retrying and cancelling them and running a replay
 * need PostgreSQL or Kafka and are left to tests/e2e/test_api.py.
 *
 * The first byte of the input picks what the rest is:
 *   'p'  a request path, up to a NUL (the server has decoded it);
 *   'q'  a query string, up to a NUL: split at '&' and '=', '+' made a
 *        space and percent-decoded as libmicrohttpd does
 *        (MHD_http_unescape), each name and value then in an allocation
 *        of its own size so that reading past them is caught;
 *   'b'  the POST /api/replay body and the selection body of POST
 *        /api/dead-letters/ignore|replay, every byte;
 *   'a'  the Authorization header's value, every byte;
 * any other byte picks one of them by its value modulo 4.
 *
 * Beyond no crash, leak or undefined behaviour, these must hold:
 * - a parameter is refused exactly when its name or value is not valid
 *   UTF-8 (by jansson's check) or holds a NUL, with a reason that is valid
 *   UTF-8 and params unchanged; kjb_http_param then finds the first value
 *   given for each name;
 * - the jobs and dlq parameters are accepted exactly when each given one
 *   is valid (a known state; strict decimal integers in range, checked
 *   here without kjb_parse_i64), with the values taken as given and the
 *   documented defaults; a refusal is 400 with {"error": <non-empty>};
 * - a path is never both a GET and a POST path; kjb_api_job_path matches
 *   one suffix at most, and its id prints back to the very segment;
 *   kjb_api_is_get_path and kjb_api_is_post_path agree with it and with
 *   the dead-letter paths;
 * - the dead-letter parameters are accepted or refused with a 400 and an
 *   error answer; accepted, the limit and after_id are in range;
 * - the selection body is accepted only when it selects something (a
 *   filter that is not empty), else refused with a 400 and an error;
 * - the replay body is refused (400, {"error": ...}) exactly when it is
 *   not a JSON object, has a field of the wrong type, an unknown topic or
 *   a spec kjb_reset_parse refuses; accepted, the request holds what the
 *   body says or the defaults;
 * - the Authorization header is accepted exactly when it is "Bearer "
 *   in any case and then the token, every byte; else 401 without the
 *   prefix and 403 with a wrong token or none configured.
 *
 * KJB_FUZZ_DEBUG=1 prints each input's result to stderr. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <microhttpd.h>

#include "fuzz.h"
#include "testutil.h"
#include "api.h"
#include "http.h"
#include "replay.h"
#include "stats.h"
#include "util.h"

static int debug;
static kjb_buf out, params;

static kjb_topic_cfg topics[] = {{.topic = "orders", .dlq = "orders.dlq"},
                                 {.topic = "payments", .dlq = "payments.failed"}};
static const kjb_config cfg = {.topics = topics, .ntopics = 2};
static const kjb_config no_topics = {0};

static const char *const STATES[] = {"available", "scheduled", "running",  "retryable",
                                     "completed", "discarded", "cancelled"};

static const char TOKEN[] = "s3cr3t-t0ken";

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_api: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

/* A strict decimal integer in [min, max] (min >= 0): digits, no leading
 * zero but in "0", nothing else. */
static int strict_int(const char *s, int64_t min, int64_t max, int64_t *v) {
  size_t n = strlen(s);
  if (n == 0 || n > 19 || strspn(s, "0123456789") != n || (s[0] == '0' && n > 1))
    return 0;
  __int128 x = 0;
  for (size_t i = 0; i < n; i++)
    x = x * 10 + (s[i] - '0');
  if (x < min || x > max)
    return 0;
  *v = (int64_t)x;
  return 1;
}

/* out holds {"error": <a non-empty string>} and nothing else. */
static void check_error_answer(const char *what, const char *prefix) {
  json_t *j = json_loadb(out.data, out.len, 0, NULL);
  json_t *e = json_object_get(j, "error");
  if (!json_is_object(j) || json_object_size(j) != 1 || !json_is_string(e) ||
      json_string_length(e) == 0 ||
      strcmp(json_string_value(e), "could not encode the answer") == 0)
    die("%s: bad error answer %s", what, out.data);
  if (prefix && strncmp(json_string_value(e), prefix, strlen(prefix)) != 0)
    die("%s: error \"%s\" does not start with \"%s\"", what, json_string_value(e), prefix);
  if (debug)
    fprintf(stderr, "%s: %s\n", what, out.data);
  json_decref(j);
}

/* ---- paths ------------------------------------------------------------------- */

static void check_path(const char *path) {
  static const char *const suffixes[] = {NULL, "/retry", "/cancel"};
  static const char prefix[] = "/api/jobs/";
  int m[3], matched = 0;
  for (int k = 0; k < 3; k++) {
    int64_t id = -7;
    m[k] = kjb_api_job_path(path, suffixes[k], &id);
    if (m[k] < 0)
      continue;
    matched++;
    /* "/api/jobs/" SEGMENT SUFFIX, the segment non-empty without '/'. */
    const char *seg = path + sizeof prefix - 1;
    size_t n = strcspn(seg, "/"), sl = suffixes[k] ? strlen(suffixes[k]) : 0;
    if (strncmp(path, prefix, sizeof prefix - 1) != 0 || n == 0 || strlen(seg) != n + sl ||
        (sl && strcmp(seg + n, suffixes[k]) != 0))
      die("path \"%s\" matched suffix %d with another shape", path, k);
    char segment[32] = "", printed[32];
    int64_t want;
    if (n < sizeof segment)
      memcpy(segment, seg, n), segment[n] = '\0';
    int valid = n < sizeof segment && strict_int(segment, 1, INT64_MAX, &want);
    if (m[k] != valid)
      die("path \"%s\": id %s, expected %s", path, m[k] ? "taken" : "refused",
          valid ? "taken" : "refused");
    if (m[k]) {
      snprintf(printed, sizeof printed, "%" PRId64, id);
      if (id != want || strcmp(printed, segment) != 0)
        die("path \"%s\": id %" PRId64, path, id);
    }
  }
  if (matched > 1)
    die("path \"%s\" matched %d suffixes", path, matched);
  bool get = kjb_api_is_get_path(path), post = kjb_api_is_post_path(path);
  if (get && post)
    die("path \"%s\" is both a GET and a POST path", path);
  /* "/api/dead-letters/" and one segment: an id, or the two actions. */
  static const char dl[] = "/api/dead-letters/";
  const char *dseg = strncmp(path, dl, sizeof dl - 1) == 0 ? path + sizeof dl - 1 : NULL;
  bool dl_action = dseg && (strcmp(dseg, "ignore") == 0 || strcmp(dseg, "replay") == 0);
  bool dl_one = dseg && *dseg && !strchr(dseg, '/') && !dl_action;
  bool want_get = strcmp(path, "/api/stats") == 0 || strcmp(path, "/api/jobs") == 0 ||
                  strcmp(path, "/api/dlq") == 0 || strcmp(path, "/api/dead-letters") == 0 ||
                  strcmp(path, "/api/audit") == 0 || m[0] >= 0 || dl_one;
  bool want_post = strcmp(path, "/api/replay") == 0 || m[1] >= 0 || m[2] >= 0 || dl_action;
  if (get != want_get || post != want_post)
    die("path \"%s\": get %d post %d, expected %d %d", path, get, post, want_get, want_post);
  if (debug)
    fprintf(stderr, "path %s: get %d post %d job %d/%d/%d\n", path, get, post, m[0], m[1], m[2]);
}

/* ---- query parameters --------------------------------------------------------- */

typedef struct {
  char *key, *value; /* value NULL: a name without '=' */
  size_t key_len, value_len;
} qparam;

/* An exact-size, NUL-terminated copy of n bytes, '+' made a space and
 * percent-decoded; *len its decoded length. */
static char *decode(const char *s, size_t n, size_t *len) {
  char *t = malloc(n + 1);
  memcpy(t, s, n);
  t[n] = '\0';
  for (size_t i = 0; i < n; i++)
    if (t[i] == '+')
      t[i] = ' ';
  *len = MHD_http_unescape(t);
  char *exact = malloc(*len + 1);
  memcpy(exact, t, *len + 1);
  free(t);
  return exact;
}

static const char *param_fn(void *cls, const char *name) { return kjb_http_param(cls, name); }

/* The first value given for name, or NULL. */
static const char *first_value(const qparam *qp, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (qp[i].value && strlen(name) == qp[i].key_len && memcmp(qp[i].key, name, qp[i].key_len) == 0)
      return qp[i].value;
  return NULL;
}

static void check_jobs_query(void) {
  const char *state = kjb_http_param(&params, "state"), *kind = kjb_http_param(&params, "kind");
  const char *limit_s = kjb_http_param(&params, "limit");
  const char *before_s = kjb_http_param(&params, "before");
  int64_t limit = 50, before = 0;
  int state_ok = !state;
  for (size_t i = 0; i < sizeof STATES / sizeof STATES[0]; i++)
    state_ok |= state && strcmp(state, STATES[i]) == 0;
  const char *why =
      !state_ok                                         ? "unknown state \""
      : limit_s && !strict_int(limit_s, 1, 500, &limit) ? "limit must be a number from 1 to 500"
      : before_s && !strict_int(before_s, 1, INT64_MAX, &before) ? "before must be a job id"
                                                                 : NULL;
  kjb_api_jobs_query q;
  kjb_buf_reset(&out);
  unsigned status = kjb_api_parse_jobs_query(param_fn, &params, &q, &out);
  if (why) {
    if (status != 400)
      die("jobs query answered %u, expected 400 %s", status, why);
    check_error_answer("jobs query", why);
    return;
  }
  if (status != 0 || out.len)
    die("jobs query answered %u %s", status, out.data);
  if (q.state != state || q.kind != kind || q.limit != limit || q.before != before)
    die("jobs query read as state %s, kind %s, limit %" PRId64 ", before %" PRId64,
        q.state ? q.state : "-", q.kind ? q.kind : "-", q.limit, q.before);
}

static void check_dlq_query(void) {
  const char *limit_s = kjb_http_param(&params, "limit");
  int64_t want = 50;
  int valid = !limit_s || strict_int(limit_s, 1, KJB_STATS_DEAD_LETTERS, &want);
  int limit = -1;
  kjb_buf_reset(&out);
  unsigned status = kjb_api_parse_dlq_query(param_fn, &params, &limit, &out);
  if (!valid) {
    if (status != 400)
      die("dlq query answered %u, expected 400", status);
    check_error_answer("dlq query", "limit must be a number from 1 to ");
    return;
  }
  if (status != 0 || out.len || limit != want)
    die("dlq query answered %u, limit %d, expected %" PRId64, status, limit, want);
}

static const char *param_at(void *cls, size_t i, const char **name) {
  return kjb_http_param_at(cls, i, name);
}

static void check_dead_letters_query(void) {
  kjb_api_dead_letters_query q;
  kjb_buf_reset(&out);
  unsigned status =
      kjb_api_parse_dead_letters_query(param_at, &params, INT64_C(1795255200000000), &q, &out);
  if (status == 400)
    check_error_answer("dead letters query", NULL);
  else if (status != 0 || out.len || q.limit < 1 || q.limit > KJB_API_DEAD_LETTERS_LIMIT_MAX ||
           q.after_id < 0)
    die("dead letters query answered %u, limit %" PRId64 ", after_id %" PRId64, status, q.limit,
        q.after_id);
  kjb_dlq_filter_close(&q.filter);
}

static void check_query(const char *q) {
  qparam qp[64];
  size_t n = 0;
  for (const char *p = q; n < sizeof qp / sizeof qp[0];) {
    size_t len = strcspn(p, "&");
    const char *eq = memchr(p, '=', len);
    qparam *x = &qp[n++];
    x->key = decode(p, eq ? (size_t)(eq - p) : len, &x->key_len);
    x->value = eq ? decode(eq + 1, len - (size_t)(eq - p) - 1, &x->value_len) : NULL;
    x->value_len = eq ? x->value_len : 0;
    if (!p[len])
      break;
    p += len + 1;
  }
  kjb_buf_reset(&params);
  size_t checked = 0;
  for (; checked < n; checked++) {
    const qparam *x = &qp[checked];
    int good = !memchr(x->key, '\0', x->key_len) && kjb_test_utf8_ok(x->key, x->key_len) &&
               (!x->value || (!memchr(x->value, '\0', x->value_len) &&
                              kjb_test_utf8_ok(x->value, x->value_len)));
    char why[160] = "";
    size_t before = params.len;
    int rc =
        kjb_http_check_param(x->key, x->key_len, x->value, x->value_len, &params, why, sizeof why);
    if (rc != (good ? 0 : -1))
      die("parameter %zu %s, expected %s", checked, rc ? "refused" : "taken",
          good ? "taken" : "refused");
    if (!good) {
      if (!why[0] || !kjb_test_utf8_ok(why, strlen(why)) || params.len != before)
        die("parameter %zu: refused with reason \"%s\"", checked, why);
      if (debug)
        fprintf(stderr, "query: %s\n", why);
      break; /* the server stops at the first bad one */
    }
  }
  if (checked == n) {
    static const char *const names[] = {"state", "kind", "limit", "before", "", "x"};
    size_t nn = sizeof names / sizeof names[0];
    for (size_t i = 0; i < nn + n; i++) {
      const char *name = i < nn ? names[i] : qp[i - nn].key;
      const char *got = kjb_http_param(&params, name), *want = first_value(qp, n, name);
      if (!got != !want || (got && strcmp(got, want) != 0))
        die("parameter \"%s\" is \"%s\", expected \"%s\"", name, got ? got : "(none)",
            want ? want : "(none)");
    }
    check_jobs_query();
    check_dlq_query();
    check_dead_letters_query();
  }
  for (size_t i = 0; i < n; i++) {
    free(qp[i].key);
    free(qp[i].value);
  }
}

/* ---- POST /api/replay --------------------------------------------------------- */

static void check_replay(const kjb_config *c, const char *body, size_t len) {
  /* What the documentation says, read with jansson. */
  json_t *j = len ? json_loadb(body, len, 0, NULL) : json_object();
  const char *why = !json_is_object(j) ? "the body " : NULL;
  const char *topic = c->ntopics ? c->topics[0].dlq : NULL, *reset = NULL;
  bool dry_run = false;
  json_t *v;
  if (!why && (v = json_object_get(j, "topic")) && !json_is_null(v)) {
    if (!json_is_string(v))
      why = "topic must be a string";
    else if (json_string_length(v))
      topic = json_string_value(v);
  }
  if (!why && (v = json_object_get(j, "reset_offsets")) && !json_is_null(v)) {
    if (!json_is_string(v))
      why = "reset_offsets must be a string";
    else if (json_string_length(v))
      reset = json_string_value(v);
  }
  if (!why && (v = json_object_get(j, "dry_run")) && !json_is_null(v)) {
    if (!json_is_boolean(v))
      why = "dry_run must be true or false";
    dry_run = json_is_true(v);
  }
  int known = 0;
  for (size_t i = 0; topic && i < c->ntopics; i++)
    known |= strcmp(topic, c->topics[i].dlq) == 0;
  kjb_reset_spec spec = {0};
  kjb_err err;
  if (!why && !topic)
    why = "no topic given and none configured";
  if (!why && !known)
    why = "\"";
  if (!why && reset && kjb_reset_parse(reset, &spec, &err) < 0)
    why = "reset_offsets: bad reset spec \"";

  kjb_api_replay_req req;
  kjb_buf_reset(&out);
  unsigned status = kjb_api_parse_replay(c, body, len, &req, &out);
  if (why) {
    if (status != 400)
      die("replay body answered %u, expected 400 %s", status, why);
    check_error_answer("replay body", why);
  } else {
    if (status != 0 || out.len)
      die("replay body answered %u %s", status, out.data);
    if (strcmp(req.topic, topic) != 0 || req.dry_run != dry_run || req.has_reset != !!reset ||
        (reset && (req.reset.kind != spec.kind || req.reset.value != spec.value)))
      die("replay body read as topic %s, dry run %d, reset %d", req.topic, req.dry_run,
          req.has_reset);
    /* The spec for the log: all of it, or its first 61 to 64 bytes (no
     * character cut) and "...". */
    size_t rl = reset ? strlen(reset) : 0, tl = strlen(req.reset_text);
    int text_ok = !reset ? tl == 0
                  : rl <= 64
                      ? strcmp(req.reset_text, reset) == 0
                      : tl >= 64 && tl <= 67 && strcmp(req.reset_text + tl - 3, "...") == 0 &&
                            strncmp(req.reset_text, reset, tl - 3) == 0 &&
                            kjb_test_utf8_ok(req.reset_text, tl);
    if (!text_ok)
      die("replay body: reset text \"%s\" for \"%s\"", req.reset_text, reset ? reset : "");
    if (debug)
      fprintf(stderr, "replay: %s%s%s\n", req.topic, reset ? " from " : "", reset ? reset : "");
  }
  json_decref(j);
}

/* ---- POST /api/dead-letters/ignore|replay ------------------------------------- */

static void check_selection(const char *body, size_t len) {
  kjb_dlq_filter f;
  bool dry_run = false;
  kjb_buf_reset(&out);
  unsigned status =
      kjb_api_parse_selection(body, len, INT64_C(1795255200000000), &f, &dry_run, &out);
  if (status == 400)
    check_error_answer("selection", NULL);
  else if (status != 0 || out.len || kjb_dlq_filter_empty(&f))
    die("selection answered %u %s", status, out.data ? out.data : "");
  kjb_dlq_filter_close(&f);
}

/* ---- Authorization ------------------------------------------------------------- */

static void check_auth(const char *token, const char *auth, size_t len) {
  static const char bearer[] = "bearer ";
  int prefix = auth && len >= 7;
  for (size_t i = 0; prefix && i < 7; i++) {
    char c = auth[i];
    prefix = (c >= 'A' && c <= 'Z' ? c + 32 : c) == bearer[i];
  }
  unsigned want = !token                                                              ? 403
                  : !prefix                                                           ? 401
                  : len - 7 == strlen(token) && memcmp(auth + 7, token, len - 7) == 0 ? 0
                                                                                      : 403;
  const char *why = NULL;
  unsigned got = kjb_api_check_bearer(token, auth, len, &why);
  if (got != want || (got && (!why || !*why)))
    die("authorization answered %u (%s), expected %u", got, why ? why : "no reason", want);
}

/* ---- the target ----------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  debug = getenv("KJB_FUZZ_DEBUG") && *getenv("KJB_FUZZ_DEBUG") == '1';
  kjb_buf_init(&out);
  kjb_buf_init(&params);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  static const char modes[] = "pqba";
  const char *m = data[0] ? strchr(modes, data[0]) : NULL;
  char mode = m ? *m : modes[data[0] % 4];
  const char *rest = (const char *)data + 1;
  size_t n = size - 1;
  /* Paths and query strings are C strings in the server. */
  char *text = malloc(n + 1);
  memcpy(text, rest, n);
  text[n] = '\0';
  switch (mode) {
  case 'p': check_path(text); break;
  case 'q': check_query(text); break;
  case 'b':
    check_replay(&cfg, rest, n);
    check_replay(&no_topics, rest, n);
    check_selection(rest, n);
    break;
  default:
    check_auth(TOKEN, rest, n);
    check_auth(NULL, rest, n);
    if (n == 0)
      check_auth(TOKEN, NULL, 0);
    break;
  }
  free(text);
  return 0;
}
