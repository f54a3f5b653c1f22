/* Dead-letter filters: strict parsing of every filter, times given as RFC
 * 3339 or as a duration back from now, and the WHERE clause they become. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dlqfilter.h"

/* 2026-11-21T10:00:00Z: durations count back from here. */
#define NOW INT64_C(1795255200000000)
#define HOUR INT64_C(3600000000)

static const char TIME_WHY[] = "expected an RFC 3339 time such as 2026-11-21T10:00:00Z or a "
                               "duration back from now such as 2h, 30m or 7d";

static void test_names(void **state) {
  static const struct {
    const char *name;
    int rc;
    kjb_dlq_filter_field field;
  } cases[] = {
      {"id", 0, KJB_DLQ_F_ID},
      {"dlq-topic", 0, KJB_DLQ_F_DLQ_TOPIC},
      {"dlq_topic", 0, KJB_DLQ_F_DLQ_TOPIC},
      {"source-topic", 0, KJB_DLQ_F_SOURCE_TOPIC},
      {"source_topic", 0, KJB_DLQ_F_SOURCE_TOPIC},
      {"reason", 0, KJB_DLQ_F_REASON},
      {"since", 0, KJB_DLQ_F_SINCE},
      {"until", 0, KJB_DLQ_F_UNTIL},
      {"key", 0, KJB_DLQ_F_KEY},
      {"status", 0, KJB_DLQ_F_STATUS},
      {"dlq", -1, 0},
      {"dlq-topics", -1, 0},
      {"dlq_", -1, 0},
      {"ID", -1, 0},
      {"", -1, 0},
      {"source-topic_", -1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kjb_dlq_filter_field f = KJB_DLQ_F__COUNT;
    print_message("filter name \"%s\"\n", cases[i].name);
    assert_int_equal(kjb_dlq_filter_lookup(cases[i].name, &f), cases[i].rc);
    if (cases[i].rc == 0) {
      assert_int_equal(f, cases[i].field);
      /* The canonical name looks itself up. */
      kjb_dlq_filter_field back;
      assert_int_equal(kjb_dlq_filter_lookup(kjb_dlq_filter_name(f), &back), 0);
      assert_int_equal(back, f);
    }
  }
  assert_true(kjb_dlq_status_valid("dead"));
  assert_true(kjb_dlq_status_valid("replayed"));
  assert_true(kjb_dlq_status_valid("failing"));
  assert_true(kjb_dlq_status_valid("ignored"));
  assert_false(kjb_dlq_status_valid("Dead"));
  assert_false(kjb_dlq_status_valid(""));
}

static void test_times(void **state) {
  static const struct {
    const char *in;
    const char *why; /* NULL: accepted */
    int64_t us;
  } cases[] = {
      {"2h", NULL, NOW - 2 * HOUR},
      {"30m", NULL, NOW - HOUR / 2},
      {"7d", NULL, NOW - 7 * 24 * HOUR},
      {"1.5h", NULL, NOW - 3 * HOUR / 2},
      {"250ms", NULL, NOW - 250000},
      {"0s", NULL, NOW},
      {"2026-11-21T10:00:00Z", NULL, NOW},
      {"2026-11-21T10:00:00", NULL, NOW},
      {"2026-11-21T11:00:00+01:00", NULL, NOW},
      {"2026-11-21T05:30:00-04:30", NULL, NOW},
      {"2026-11-21T10:00:00.5Z", NULL, NOW + 500000},
      {"2026-11-21T10:00:00.000001Z", NULL, NOW + 1},
      {"2026-11-21T10:00:00.123456789Z", NULL, NOW + 123456},
      {"1969-12-31T23:59:59.999999Z", NULL, -1},
      /* Before the year 1 is the year 1; so is a duration reaching there. */
      {"0000-06-01T00:00:00Z", NULL, INT64_C(-62135596800) * 1000000},
      {"100000000000s", NULL, INT64_C(-62135596800) * 1000000},
      {"2h ago", TIME_WHY, 0},
      {"h", TIME_WHY, 0},
      {"2", TIME_WHY, 0},
      {"-2h", TIME_WHY, 0},
      {"+2h", TIME_WHY, 0},
      {"yesterday", TIME_WHY, 0},
      {"", TIME_WHY, 0},
      {"2026-11-21", TIME_WHY, 0},
      {"2026-11-21 10:00:00Z", TIME_WHY, 0},
      {"2026-11-21T10:00:00Zjunk", TIME_WHY, 0},
      {"2026-11-21T10:00", TIME_WHY, 0},
      {"2026-02-30T10:00:00Z", "no such date", 0},
      {"2026-11-21T24:00:00Z", "no such time of day", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t us = 0;
    const char *why = NULL;
    print_message("time \"%s\"\n", cases[i].in);
    int rc = kjb_dlq_time_parse(cases[i].in, NOW, &us, &why);
    if (!cases[i].why) {
      assert_int_equal(rc, 0);
      assert_int_equal(us, cases[i].us);
    } else {
      assert_int_equal(rc, -1);
      assert_string_equal(why, cases[i].why);
    }
  }
}

/* Each case sets one filter on a fresh filter (or, with twice, the same
 * one two times): NULL error means accepted. */
static void test_set(void **state) {
  static const struct {
    kjb_dlq_filter_field field;
    const char *value;
    const char *error; /* the whole message with opt "--"; NULL: accepted */
  } cases[] = {
      {KJB_DLQ_F_ID, "1", NULL},
      {KJB_DLQ_F_ID, "9223372036854775807", NULL},
      {KJB_DLQ_F_ID, "0", "bad --id \"0\" (expected an integer from 1 to 9223372036854775807)"},
      {KJB_DLQ_F_ID, "-1", "bad --id \"-1\" (expected an integer from 1 to 9223372036854775807)"},
      {KJB_DLQ_F_ID, "01", "bad --id \"01\" (expected an integer from 1 to 9223372036854775807)"},
      {KJB_DLQ_F_ID, "1x", "bad --id \"1x\" (expected an integer from 1 to 9223372036854775807)"},
      {KJB_DLQ_F_ID, "", "bad --id \"\" (expected an integer from 1 to 9223372036854775807)"},
      {KJB_DLQ_F_ID, "9223372036854775808",
       "bad --id \"9223372036854775808\" (expected an integer from 1 to 9223372036854775807)"},
      {KJB_DLQ_F_DLQ_TOPIC, "orders.dlq", NULL},
      {KJB_DLQ_F_DLQ_TOPIC, "", "--dlq-topic must not be empty"},
      {KJB_DLQ_F_SOURCE_TOPIC, "orders", NULL},
      {KJB_DLQ_F_SOURCE_TOPIC, "", "--source-topic must not be empty"},
      {KJB_DLQ_F_REASON, "TRUNCATED", NULL},
      {KJB_DLQ_F_REASON, "kjb.TRUNCATED", NULL},
      {KJB_DLQ_F_REASON, "", "--reason must not be empty"},
      {KJB_DLQ_F_STATUS, "ignored", NULL},
      {KJB_DLQ_F_STATUS, "gone",
       "bad --status \"gone\" (expected dead, replayed, failing or ignored)"},
      {KJB_DLQ_F_STATUS, "", "--status must not be empty"},
      {KJB_DLQ_F_KEY, "", NULL},
      {KJB_DLQ_F_KEY, "k-1", NULL},
      {KJB_DLQ_F_SINCE, "2h", NULL},
      {KJB_DLQ_F_SINCE, "soon",
       "bad --since \"soon\": expected an RFC 3339 time such as "
       "2026-11-21T10:00:00Z or a duration back from now such as 2h, "
       "30m or 7d"},
      {KJB_DLQ_F_UNTIL, "2026-02-29T00:00:00Z",
       "bad --until \"2026-02-29T00:00:00Z\": no such date"},
      /* Long values are quoted in part. */
      {KJB_DLQ_F_STATUS, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
       "bad --status \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\" "
       "(expected dead, replayed, failing or ignored)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kjb_dlq_filter f;
    kjb_dlq_filter_init(&f);
    kjb_err err = {0};
    print_message("--%s \"%s\"\n", kjb_dlq_filter_name(cases[i].field), cases[i].value);
    int rc = kjb_dlq_filter_set(&f, cases[i].field, cases[i].value, NOW, "--", &err);
    if (cases[i].error) {
      assert_int_equal(rc, -KJB_EUSAGE);
      assert_string_equal(err.msg, cases[i].error);
      assert_true(kjb_dlq_filter_empty(&f));
    } else {
      assert_int_equal(rc, 0);
      assert_false(kjb_dlq_filter_empty(&f));
    }
    kjb_dlq_filter_close(&f);
  }
}

static void test_twice(void **state) {
  static const struct {
    kjb_dlq_filter_field field;
    const char *value, *error;
  } cases[] = {
      {KJB_DLQ_F_DLQ_TOPIC, "a", "dlq-topic given twice"},
      {KJB_DLQ_F_SOURCE_TOPIC, "a", "source-topic given twice"},
      {KJB_DLQ_F_REASON, "A", "reason given twice"},
      {KJB_DLQ_F_STATUS, "dead", "status given twice"},
      {KJB_DLQ_F_KEY, "k", "key given twice"},
      {KJB_DLQ_F_SINCE, "1h", "since given twice"},
      {KJB_DLQ_F_UNTIL, "1h", "until given twice"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kjb_dlq_filter f;
    kjb_dlq_filter_init(&f);
    kjb_err err;
    /* The API names filters without dashes. */
    assert_int_equal(kjb_dlq_filter_set(&f, cases[i].field, cases[i].value, NOW, "", &err), 0);
    assert_int_equal(kjb_dlq_filter_set(&f, cases[i].field, cases[i].value, NOW, "", &err),
                     -KJB_EUSAGE);
    assert_string_equal(err.msg, cases[i].error);
    kjb_dlq_filter_close(&f);
  }
  /* --id repeats, up to its limit. */
  kjb_dlq_filter f;
  kjb_dlq_filter_init(&f);
  kjb_err err;
  char id[24];
  for (int i = 1; i <= KJB_DLQ_FILTER_MAX_IDS; i++) {
    snprintf(id, sizeof id, "%d", i);
    assert_int_equal(kjb_dlq_filter_set(&f, KJB_DLQ_F_ID, id, NOW, "--", &err), 0);
  }
  assert_int_equal(f.nids, KJB_DLQ_FILTER_MAX_IDS);
  assert_int_equal(kjb_dlq_filter_set(&f, KJB_DLQ_F_ID, "1", NOW, "--", &err), -KJB_EUSAGE);
  assert_string_equal(err.msg, "too many --id values (at most 10000)");
  kjb_dlq_filter_close(&f);
}

static void test_check(void **state) {
  kjb_dlq_filter f;
  kjb_dlq_filter_init(&f);
  kjb_err err;
  assert_true(kjb_dlq_filter_empty(&f));
  assert_int_equal(kjb_dlq_filter_check(&f, "--", &err), 0);
  assert_int_equal(kjb_dlq_filter_set(&f, KJB_DLQ_F_SINCE, "1h", NOW, "--", &err), 0);
  assert_int_equal(kjb_dlq_filter_set(&f, KJB_DLQ_F_UNTIL, "2h", NOW, "--", &err), 0);
  assert_int_equal(kjb_dlq_filter_check(&f, "--", &err), -KJB_EUSAGE);
  assert_string_equal(err.msg, "--since must be before --until");
  kjb_dlq_filter_close(&f);

  kjb_dlq_filter_init(&f);
  assert_int_equal(kjb_dlq_filter_set(&f, KJB_DLQ_F_SINCE, "2h", NOW, "--", &err), 0);
  assert_int_equal(kjb_dlq_filter_set(&f, KJB_DLQ_F_UNTIL, "1h", NOW, "--", &err), 0);
  assert_int_equal(kjb_dlq_filter_check(&f, "--", &err), 0);
  kjb_dlq_filter_close(&f);
}

static kjb_dlq_filter make(const char *const *pairs) {
  kjb_dlq_filter f;
  kjb_dlq_filter_init(&f);
  for (size_t i = 0; pairs[i]; i += 2) {
    kjb_dlq_filter_field field;
    kjb_err err;
    assert_int_equal(kjb_dlq_filter_lookup(pairs[i], &field), 0);
    assert_int_equal(kjb_dlq_filter_set(&f, field, pairs[i + 1], NOW, "--", &err), 0);
  }
  return f;
}

static void test_where(void **state) {
  kjb_dlq_where w;

  static const char *const none[] = {NULL};
  kjb_dlq_filter f = make(none);
  kjb_dlq_where_build(&w, &f, 1, NULL);
  assert_string_equal(w.sql.data, "TRUE");
  assert_int_equal(w.nparams, 0);
  kjb_dlq_where_close(&w);
  kjb_dlq_filter_close(&f);

  /* Every filter, in the builder's order whatever the input's. */
  static const char *const all[] = {"status",
                                    "dead",
                                    "key",
                                    "k\xff",
                                    "until",
                                    "2026-11-21T10:00:00Z",
                                    "since",
                                    "2h",
                                    "reason",
                                    "kjb.TRUNCATED",
                                    "source-topic",
                                    "orders",
                                    "dlq-topic",
                                    "orders.dlq",
                                    "id",
                                    "3",
                                    "id",
                                    "1",
                                    NULL};
  f = make(all);
  kjb_dlq_where_build(&w, &f, 3, "d");
  assert_string_equal(w.sql.data, "d.id = ANY($3::bigint[]) AND d.dlq_topic = $4::text AND "
                                  "d.source_topic = $5::text AND d.reason = $6::text AND "
                                  "d.dead_lettered_at >= $7::timestamptz AND "
                                  "d.dead_lettered_at < $8::timestamptz AND "
                                  "d.key = decode($9::text, 'hex') AND d.status = $10::text");
  assert_int_equal(w.nparams, 8);
  assert_string_equal(w.params[0], "{3,1}");
  assert_string_equal(w.params[1], "orders.dlq");
  assert_string_equal(w.params[2], "orders");
  assert_string_equal(w.params[3], "TRUNCATED");
  assert_string_equal(w.params[4], "2026-11-21T08:00:00.000000Z");
  assert_string_equal(w.params[5], "2026-11-21T10:00:00.000000Z");
  assert_string_equal(w.params[6], "6bff");
  assert_string_equal(w.params[7], "dead");

  kjb_buf j;
  kjb_buf_init(&j);
  kjb_dlq_filter_json(&f, &j);
  assert_string_equal(j.data, "{\"id\":[3,1],\"dlq_topic\":\"orders.dlq\",\"source_topic\":"
                              "\"orders\",\"reason\":\"TRUNCATED\",\"since\":"
                              "\"2026-11-21T08:00:00.000000Z\",\"until\":"
                              "\"2026-11-21T10:00:00.000000Z\",\"key\":{\"base64\":\"a/8=\"},"
                              "\"status\":\"dead\"}");
  kjb_buf_close(&j);
  kjb_dlq_where_close(&w);
  kjb_dlq_filter_close(&f);

  /* An empty key is matched as such; unqualified columns. */
  static const char *const key[] = {"key", "", "reason", "SCHEMA_MISMATCH", NULL};
  f = make(key);
  kjb_dlq_where_build(&w, &f, 1, NULL);
  assert_string_equal(w.sql.data, "reason = $1::text AND key = decode($2::text, 'hex')");
  assert_string_equal(w.params[0], "SCHEMA_MISMATCH");
  assert_string_equal(w.params[1], "");
  kjb_buf_init(&j);
  kjb_dlq_filter_json(&f, &j);
  assert_string_equal(j.data, "{\"reason\":\"SCHEMA_MISMATCH\",\"key\":\"\"}");
  kjb_buf_close(&j);
  kjb_dlq_where_close(&w);
  kjb_dlq_filter_close(&f);

  kjb_dlq_filter_init(&f);
  kjb_buf_init(&j);
  kjb_dlq_filter_json(&f, &j);
  assert_string_equal(j.data, "{}");
  kjb_buf_close(&j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names), cmocka_unit_test(test_times), cmocka_unit_test(test_set),
      cmocka_unit_test(test_twice), cmocka_unit_test(test_check), cmocka_unit_test(test_where),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
