/* The admin API's request checks that run before any database work: bearer
 * tokens matched among several, the dead-letter query parameters and the
 * selection body of POST /api/dead-letters/ignore and /replay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api.h"
#include "dlqfilter.h"
#include "util.h"

/* 2026-11-21T10:00:00Z: durations count back from here. */
#define NOW INT64_C(1795255200000000)
#define HOUR INT64_C(3600000000)

/* Whether out is {"error": <text starting with want>}. */
static bool error_starts(const kjb_buf *out, const char *want) {
  json_t *j = out->data ? json_loadb(out->data, out->len, 0, NULL) : NULL;
  const char *e = json_string_value(json_object_get(j, "error"));
  bool ok = e && strncmp(e, want, strlen(want)) == 0;
  if (!ok)
    print_error("answer %s, want an error starting %s\n", out->data ? out->data : "", want);
  json_decref(j);
  return ok;
}

static void test_match_bearer(void **state) {
  static const char *const tokens[] = {"tok-admin", "tok-ops", "tok-ops", "t"};
  static const struct {
    const char *auth; /* NULL: no header */
    size_t n;         /* tokens configured, from the first */
    unsigned status;
    size_t which;
    const char *why;
  } cases[] = {
      {"Bearer tok-admin", 4, 0, 0, NULL},
      {"Bearer tok-ops", 4, 0, 1, NULL}, /* the first of two equal ones */
      {"bearer t", 4, 0, 3, NULL},
      {"BEARER tok-ops", 2, 0, 1, NULL},
      {"Bearer tok-ops", 1, 403, 0, "wrong token"},
      {"Bearer tok-op", 4, 403, 0, "wrong token"},
      {"Bearer tok-opsx", 4, 403, 0, "wrong token"},
      {"Bearer  tok-ops", 4, 403, 0, "wrong token"},
      {"Bearer ", 4, 403, 0, "wrong token"},
      {"Basic tok-ops", 4, 401, 0, "missing bearer token"},
      {"tok-ops", 4, 401, 0, "missing bearer token"},
      {NULL, 4, 401, 0, "missing bearer token"},
      {"Bearer tok-ops", 0, 403, 0, "admin API disabled"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *why = NULL;
    size_t which = 99;
    const char *auth = cases[i].auth;
    unsigned got =
        kjb_api_match_bearer(tokens, cases[i].n, auth, auth ? strlen(auth) : 0, &which, &why);
    if (got != cases[i].status)
      fail_msg("case %zu (%s): status %u, want %u", i, auth ? auth : "none", got, cases[i].status);
    if (got == 0)
      assert_int_equal(which, cases[i].which);
    else
      assert_true(strncmp(why, cases[i].why, strlen(cases[i].why)) == 0);
  }
  /* A NUL inside the value is part of it. */
  const char *why;
  size_t which;
  assert_int_equal(kjb_api_match_bearer(tokens, 4, "Bearer t\0", 9, &which, &why), 403);
  assert_int_equal(kjb_api_check_bearer(NULL, "Bearer x", 8, &why), 403);
  assert_int_equal(kjb_api_check_bearer("x", "Bearer x", 8, &why), 0);
}

/* Query parameters as "name=value" strings, for kjb_api_param_at_fn. */
typedef struct {
  const char *const *pairs;
  char name[64];
} query;

static const char *param_at(void *cls, size_t i, const char **name) {
  query *q = cls;
  for (size_t k = 0; q->pairs[k]; k++) {
    if (k != i)
      continue;
    const char *eq = strchr(q->pairs[k], '=');
    snprintf(q->name, sizeof q->name, "%.*s", (int)(eq - q->pairs[k]), q->pairs[k]);
    *name = q->name;
    return eq + 1;
  }
  return NULL;
}

static void test_dead_letters_query(void **state) {
  static const struct {
    const char *pairs[6];
    const char *error; /* NULL: accepted */
    int64_t limit, after_id;
    const char *filter; /* kjb_dlq_filter_json */
  } cases[] = {
      {{NULL}, NULL, 50, 0, "{}"},
      {{"limit=1000", "after_id=0", NULL}, NULL, 1000, 0, "{}"},
      {{"id=3", "id=1", "after_id=2", NULL}, NULL, 50, 2, "{\"id\":[3,1]}"},
      {{"dlq_topic=a.dlq", "source-topic=a", "reason=kjb.BAD_MAGIC", NULL},
       NULL,
       50,
       0,
       "{\"dlq_topic\":\"a.dlq\",\"source_topic\":\"a\",\"reason\":\"BAD_MAGIC\"}"},
      {{"since=2h", "status=dead", "key=", NULL},
       NULL,
       50,
       0,
       "{\"since\":\"2026-11-21T08:00:00.000000Z\",\"key\":\"\",\"status\":\"dead\"}"},
      {.pairs = {"limit=0", NULL}, .error = "limit must be a number from 1 to 1000"},
      {.pairs = {"limit=1001", NULL}, .error = "limit must be a number from 1 to 1000"},
      {.pairs = {"limit= 5", NULL}, .error = "limit must be a number from 1 to 1000"},
      {.pairs = {"limit=5", "limit=6", NULL}, .error = "limit given twice"},
      {.pairs = {"after_id=-1", NULL}, .error = "after_id must be a dead letter's id"},
      {.pairs = {"after_id=x", NULL}, .error = "after_id must be a dead letter's id"},
      {.pairs = {"after_id=1", "after_id=2", NULL}, .error = "after_id given twice"},
      {.pairs = {"reasons=X", NULL}, .error = "unknown parameter \"reasons\""},
      {.pairs = {"id=0", NULL},
       .error = "bad id \"0\" (expected an integer from 1 to 9223372036854775807)"},
      {.pairs = {"status=gone", NULL},
       .error = "bad status \"gone\" (expected dead, replayed, failing or ignored)"},
      {.pairs = {"reason=A", "reason=B", NULL}, .error = "reason given twice"},
      {.pairs = {"reason=", NULL}, .error = "reason must not be empty"},
      {.pairs = {"since=1h", "until=2h", NULL}, .error = "since must be before until"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    query qs = {.pairs = cases[i].pairs};
    kjb_api_dead_letters_query q;
    kjb_buf out, f;
    kjb_buf_init(&out);
    kjb_buf_init(&f);
    unsigned status = kjb_api_parse_dead_letters_query(param_at, &qs, NOW, &q, &out);
    if (cases[i].error) {
      if (status != 400 || !error_starts(&out, cases[i].error))
        fail_msg("case %zu: status %u, want 400 %s", i, status, cases[i].error);
    } else {
      if (status != 0)
        fail_msg("case %zu: status %u: %s", i, status, out.data);
      assert_int_equal(q.limit, cases[i].limit);
      assert_int_equal(q.after_id, cases[i].after_id);
      kjb_dlq_filter_json(&q.filter, &f);
      assert_string_equal(f.data, cases[i].filter);
    }
    kjb_dlq_filter_close(&q.filter);
    kjb_buf_close(&out);
    kjb_buf_close(&f);
  }
}

static void test_selection(void **state) {
  static const struct {
    const char *body;
    const char *error; /* NULL: accepted; else the start of the message */
    bool dry_run;
    const char *filter;
  } cases[] = {
      {"{\"ids\": [4, 2]}", NULL, false, "{\"id\":[4,2]}"},
      {"{\"filter\": {\"id\": 7}, \"ids\": [8], \"dry_run\": true}", NULL, true, "{\"id\":[7,8]}"},
      {"{\"filter\": {\"id\": [7, 9], \"reason\": \"kjb.X\", \"dlq-topic\": \"d\"}, "
       "\"dry_run\": false}",
       NULL, false, "{\"id\":[7,9],\"dlq_topic\":\"d\",\"reason\":\"X\"}"},
      {"{\"filter\": {\"status\": \"dead\", \"since\": \"1h\"}, \"ids\": [], \"dry_run\": null}",
       NULL, false, "{\"since\":\"2026-11-21T09:00:00.000000Z\",\"status\":\"dead\"}"},
      {"{\"filter\": {\"key\": \"\"}}", NULL, false, "{\"key\":\"\"}"},
      {.body = "", .error = "the body is not valid JSON: "},
      {.body = "{\"ids\": [1]", .error = "the body is not valid JSON: "},
      {.body = "[1]", .error = "the body must be a JSON object"},
      {.body = "{}", .error = "no dead letters selected: give a filter or ids"},
      {.body = "{\"filter\": {}, \"ids\": [], \"dry_run\": true}",
       .error = "no dead letters selected: give a filter or ids"},
      {.body = "{\"filter\": {\"reason\": null}}", .error = "no dead letters selected"},
      {.body = "{\"filter\": []}", .error = "filter must be an object"},
      {.body = "{\"ids\": 5}", .error = "ids must be an array of integers"},
      {.body = "{\"ids\": [\"5\"]}", .error = "ids must be an array of integers"},
      {.body = "{\"ids\": [1.5]}", .error = "ids must be an array of integers"},
      {.body = "{\"ids\": [0]}", .error = "bad id \"0\" (expected an integer from 1 to"},
      {.body = "{\"ids\": [-3]}", .error = "bad id \"-3\""},
      {.body = "{\"filter\": {\"id\": \"5\"}}",
       .error = "filter id must be an integer or an array of them"},
      {.body = "{\"filter\": {\"reason\": 5}}", .error = "filter reason must be a string"},
      {.body = "{\"filter\": {\"source_topic\": true}}",
       .error = "filter source-topic must be a string"},
      {.body = "{\"filter\": {\"reasons\": \"X\"}}", .error = "unknown filter \"reasons\""},
      {.body = "{\"filter\": {\"status\": \"gone\"}}", .error = "bad status \"gone\""},
      {.body = "{\"filter\": {\"since\": \"yesterday\"}}",
       .error = "bad since \"yesterday\": expected"},
      {.body = "{\"filter\": {\"since\": \"1h\", \"until\": \"2h\"}}",
       .error = "since must be before until"},
      {.body = "{\"filter\": {\"reason\": \"X\"}, \"dry_run\": \"yes\"}",
       .error = "dry_run must be true or false"},
      {.body = "{\"filter\": {\"reason\": \"X\"}, \"dryrun\": true}",
       .error = "unknown field \"dryrun\" (expected filter, ids and dry_run)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kjb_dlq_filter f;
    bool dry_run = !cases[i].dry_run;
    kjb_buf out, fj;
    kjb_buf_init(&out);
    kjb_buf_init(&fj);
    const char *body = cases[i].body;
    unsigned status = kjb_api_parse_selection(body, strlen(body), NOW, &f, &dry_run, &out);
    if (cases[i].error) {
      if (status != 400 || !error_starts(&out, cases[i].error))
        fail_msg("case %zu (%s): status %u, want 400", i, body, status);
    } else {
      if (status != 0)
        fail_msg("case %zu (%s): %u %s", i, body, status, out.data);
      assert_int_equal(dry_run, cases[i].dry_run);
      kjb_dlq_filter_json(&f, &fj);
      assert_string_equal(fj.data, cases[i].filter);
    }
    kjb_dlq_filter_close(&f);
    kjb_buf_close(&out);
    kjb_buf_close(&fj);
  }
}

static void test_paths(void **state) {
  int64_t id = 0;
  assert_int_equal(kjb_api_dead_letter_path("/api/dead-letters/42", &id), 1);
  assert_int_equal(id, 42);
  assert_int_equal(kjb_api_dead_letter_path("/api/dead-letters/042", &id), 0);
  assert_int_equal(kjb_api_dead_letter_path("/api/dead-letters/x", &id), 0);
  assert_int_equal(kjb_api_dead_letter_path("/api/dead-letters/1/x", &id), -1);
  assert_int_equal(kjb_api_dead_letter_path("/api/dead-letters", &id), -1);
  static const char *const get[] = {"/api/dead-letters", "/api/dead-letters/1",
                                    "/api/dead-letters/x", "/api/audit"};
  static const char *const post[] = {"/api/dead-letters/ignore", "/api/dead-letters/replay",
                                     "/api/replay", "/api/jobs/1/retry"};
  for (size_t i = 0; i < 4; i++) {
    assert_true(kjb_api_is_get_path(get[i]) && !kjb_api_is_post_path(get[i]));
    assert_true(kjb_api_is_post_path(post[i]) && !kjb_api_is_get_path(post[i]));
  }
  assert_false(kjb_api_is_get_path("/api/dead-letters/"));
  assert_false(kjb_api_is_get_path("/api/audits"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_match_bearer),
      cmocka_unit_test(test_dead_letters_query),
      cmocka_unit_test(test_selection),
      cmocka_unit_test(test_paths),
  };
  return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
