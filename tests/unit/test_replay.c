/* Offset-reset specs: strict parsing, and the offset and time each
 * resolves to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "replay.h"

static const char GENERIC[] =
    "expected to-earliest, to-latest, to-offset:N, to-datetime:YYYY-MM-DDTHH:MM:SS.sss, "
    "shift-by:N or by-duration:PnDTnHnMnS";
static const char OFFSET[] = "the offset must be an integer from 0 to 9223372036854775807";
static const char SHIFT[] =
    "the shift must be an integer from -9223372036854775808 to 9223372036854775807";
static const char DATETIME[] = "expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]";
static const char DURATION[] = "expected an ISO 8601 duration PnDTnHnMn.nS";

/* Spec, then either its kind and value or the reason it is refused (the
 * message is then exactly `bad reset spec "<spec>": <why>`). */
static void test_parse(void **state) {
  static const struct {
    const char *in;
    const char *why; /* NULL: accepted */
    kjb_reset_kind kind;
    int64_t value;
  } cases[] = {
      {"to-earliest", NULL, KJB_RESET_EARLIEST, 0},
      {"to-latest", NULL, KJB_RESET_LATEST, 0},
      {"to-offset:42", NULL, KJB_RESET_OFFSET, 42},
      {"to-offset:0", NULL, KJB_RESET_OFFSET, 0},
      {"to-offset:9223372036854775807", NULL, KJB_RESET_OFFSET, INT64_MAX},
      {"shift-by:-5", NULL, KJB_RESET_SHIFT, -5},
      {"shift-by:7", NULL, KJB_RESET_SHIFT, 7},
      {"shift-by:9223372036854775807", NULL, KJB_RESET_SHIFT, INT64_MAX},
      {"shift-by:-9223372036854775808", NULL, KJB_RESET_SHIFT, INT64_MIN},
      {"to-datetime:2026-11-21T10:00:00.000", NULL, KJB_RESET_DATETIME, 1795255200000LL},
      {"to-datetime:2026-11-21T10:00:00", NULL, KJB_RESET_DATETIME, 1795255200000LL},
      {"to-datetime:2026-11-21T10:00:00.5Z", NULL, KJB_RESET_DATETIME, 1795255200500LL},
      {"to-datetime:2026-11-21T10:00:00.123456789Z", NULL, KJB_RESET_DATETIME, 1795255200123LL},
      {"to-datetime:2026-11-21T11:00:00.000+01:00", NULL, KJB_RESET_DATETIME, 1795255200000LL},
      {"to-datetime:2026-11-21T05:30:00-04:30", NULL, KJB_RESET_DATETIME, 1795255200000LL},
      {"to-datetime:2024-02-29T00:00:00", NULL, KJB_RESET_DATETIME, 1709164800000LL},
      {"to-datetime:1969-12-31T23:59:59.000", NULL, KJB_RESET_DATETIME, -1000},
      {"by-duration:PT1H", NULL, KJB_RESET_DURATION, 3600000},
      {"by-duration:P1DT2H3M4.5S", NULL, KJB_RESET_DURATION, 93784500},
      {"by-duration:PT30M", NULL, KJB_RESET_DURATION, 1800000},
      {"by-duration:P2D", NULL, KJB_RESET_DURATION, 172800000},
      {"by-duration:PT0S", NULL, KJB_RESET_DURATION, 0},
      {"by-duration:PT0.001S", NULL, KJB_RESET_DURATION, 1},
      {"by-duration:PT1.0S", NULL, KJB_RESET_DURATION, 1000},
      {"by-duration:PT9223372036854775.807S", NULL, KJB_RESET_DURATION, INT64_MAX},
      {"by-duration:P106751991167DT7H12M55.807S", NULL, KJB_RESET_DURATION, INT64_MAX},

      {"to-offset:-1", OFFSET, 0, 0},
      {"to-offset:", OFFSET, 0, 0},
      {"to-offset:12x", OFFSET, 0, 0},
      {"to-offset:+1", OFFSET, 0, 0},
      {"to-offset: 1", OFFSET, 0, 0},
      {"to-offset:01", OFFSET, 0, 0},
      {"to-offset:9223372036854775808", OFFSET, 0, 0},
      {"to-offset:99999999999999999999999", OFFSET, 0, 0},
      {"shift-by:", SHIFT, 0, 0},
      {"shift-by:+5", SHIFT, 0, 0},
      {"shift-by:-0", SHIFT, 0, 0},
      {"shift-by:99999999999999999999999", SHIFT, 0, 0},
      {"shift-by:-9223372036854775809", SHIFT, 0, 0},
      {"shift-by:1e3", SHIFT, 0, 0},
      {"to-datetime:yesterday", DATETIME, 0, 0},
      {"to-datetime:2026-11-21", DATETIME, 0, 0},
      {"to-datetime:2026-11-21 10:00:00", DATETIME, 0, 0},
      {"to-datetime:+2026-11-21T10:00:00", DATETIME, 0, 0},
      {"to-datetime:2026-1-21T10:00:00", DATETIME, 0, 0},
      {"to-datetime:2026-11-21T 1:00:00", DATETIME, 0, 0},
      {"to-datetime:2026-11-21T10:00:00.", DATETIME, 0, 0},
      {"to-datetime:2026-11-21T10:00:00.1234567890", DATETIME, 0, 0},
      {"to-datetime:2026-11-21T10:00:00+1:00", DATETIME, 0, 0},
      {"to-datetime:2026-11-21T10:00:00+24:00", DATETIME, 0, 0},
      {"to-datetime:2026-11-21T10:00:00Zjunk", DATETIME, 0, 0},
      {"to-datetime:2026-13-01T00:00:00.000", "no such date", 0, 0},
      {"to-datetime:2026-02-31T00:00:00", "no such date", 0, 0},
      {"to-datetime:2026-02-29T00:00:00", "no such date", 0, 0},
      {"to-datetime:2026-04-31T00:00:00", "no such date", 0, 0},
      {"to-datetime:2026-00-10T00:00:00", "no such date", 0, 0},
      {"to-datetime:2026-11-21T24:00:00", "no such time of day", 0, 0},
      {"to-datetime:2026-11-21T10:60:00", "no such time of day", 0, 0},
      {"to-datetime:2026-11-21T10:00:60", "no such time of day", 0, 0},
      {"by-duration:1H", DURATION, 0, 0},
      {"by-duration:P", DURATION, 0, 0},
      {"by-duration:PT", DURATION, 0, 0},
      {"by-duration:P1DT", DURATION, 0, 0},
      {"by-duration:PT1D", DURATION, 0, 0},
      {"by-duration:P1H", DURATION, 0, 0},
      {"by-duration:PT1M1H", DURATION, 0, 0},
      {"by-duration:PT1H1H", DURATION, 0, 0},
      {"by-duration:PTT1H", DURATION, 0, 0},
      {"by-duration:P1.5D", DURATION, 0, 0},
      /* A zero fraction is a fraction too (found by fuzz_reset). */
      {"by-duration:P0533.00D", DURATION, 0, 0},
      {"by-duration:PT1.0H", DURATION, 0, 0},
      {"by-duration:PT2.000M", DURATION, 0, 0},
      {"by-duration:PT-1H", DURATION, 0, 0},
      {"by-duration:PT+1H", DURATION, 0, 0},
      {"by-duration:P1e300D", DURATION, 0, 0},
      {"by-duration:PnanD", DURATION, 0, 0},
      {"by-duration:PinfD", DURATION, 0, 0},
      {"by-duration:PT1H ", DURATION, 0, 0},
      {"by-duration:P106751991167DT7H12M55.808S", "the duration is too long", 0, 0},
      {"by-duration:P999999999999D", "the duration is too long", 0, 0},
      {"by-duration:PT99999999999999999999999S", "the duration is too long", 0, 0},
      {"to-earliest:1", GENERIC, 0, 0},
      {"to-latest:", GENERIC, 0, 0},
      {"to-offset", GENERIC, 0, 0},
      {"earliest", GENERIC, 0, 0},
      {"TO-EARLIEST", GENERIC, 0, 0},
      {"", GENERIC, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kjb_reset_spec spec = {KJB_RESET_LATEST, 12345};
    kjb_err err;
    print_message("spec \"%s\"\n", cases[i].in);
    int rc = kjb_reset_parse(cases[i].in, &spec, &err);
    if (cases[i].why) {
      char want[512];
      snprintf(want, sizeof want, "bad reset spec \"%s\": %s", cases[i].in, cases[i].why);
      assert_int_equal(rc, -KJB_EUSAGE);
      assert_int_equal(err.code, KJB_EUSAGE);
      assert_string_equal(err.msg, want);
      assert_int_equal(spec.kind, KJB_RESET_LATEST);
      assert_int_equal(spec.value, 12345);
      continue;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(spec.kind, cases[i].kind);
    assert_int_equal(spec.value, cases[i].value);
  }
}

/* A long bad spec is quoted in part, never cutting a UTF-8 character. */
static void test_parse_quotes_long_specs(void **state) {
  char in[200] = "to-offset:x";
  while (strlen(in) < 100)
    strcat(in, "\xc3\xa9"); /* é, two bytes, from byte 11 on: byte 64 is its second */
  kjb_reset_spec spec;
  kjb_err err;
  assert_int_equal(kjb_reset_parse(in, &spec, &err), -KJB_EUSAGE);
  char want[512];
  snprintf(want, sizeof want, "bad reset spec \"%.63s...\": %s", in, OFFSET);
  assert_string_equal(err.msg, want);
}

static void test_target(void **state) {
  static const struct {
    kjb_reset_spec spec;
    int64_t low, high, committed, for_time, expected;
  } cases[] = {
      {{KJB_RESET_EARLIEST, 0}, 10, 50, 30, -1, 10},
      {{KJB_RESET_LATEST, 0}, 10, 50, 30, -1, 50},
      {{KJB_RESET_OFFSET, 20}, 10, 50, 30, -1, 20},
      {{KJB_RESET_OFFSET, 5}, 10, 50, 30, -1, 10},  /* clamped to low */
      {{KJB_RESET_OFFSET, 99}, 10, 50, 30, -1, 50}, /* clamped to high */
      {{KJB_RESET_SHIFT, -5}, 10, 50, 30, -1, 25},
      {{KJB_RESET_SHIFT, -50}, 10, 50, 30, -1, 10},
      {{KJB_RESET_SHIFT, 3}, 10, 50, -1, -1, 13}, /* no commit: from low */
      {{KJB_RESET_DATETIME, 0}, 10, 50, 30, 40, 40},
      {{KJB_RESET_DATETIME, 0}, 10, 50, 30, -1, 50}, /* nothing after: the end */
      {{KJB_RESET_DURATION, 0}, 10, 50, 30, 12, 12},
      /* Shifts that would overflow stop at the ends. */
      {{KJB_RESET_SHIFT, INT64_MAX}, 10, 50, 30, -1, 50},
      {{KJB_RESET_SHIFT, INT64_MIN}, 10, 50, 30, -1, 10},
      {{KJB_RESET_SHIFT, INT64_MAX}, 0, INT64_MAX, INT64_MAX - 1, -1, INT64_MAX},
      {{KJB_RESET_SHIFT, INT64_MIN}, 0, INT64_MAX, 0, -1, 0},
      {{KJB_RESET_OFFSET, INT64_MAX}, 10, 50, 30, -1, 50},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("target case %zu\n", i);
    assert_int_equal(kjb_reset_target(&cases[i].spec, cases[i].low, cases[i].high,
                                      cases[i].committed, cases[i].for_time),
                     cases[i].expected);
  }
}

/* The time asked of the broker: never before the epoch, never an
 * overflow, -1 for specs that are not about time. */
static void test_time(void **state) {
  static const struct {
    kjb_reset_spec spec;
    int64_t now, expected;
  } cases[] = {
      {{KJB_RESET_DATETIME, 1795255200000LL}, 1800000000000LL, 1795255200000LL},
      {{KJB_RESET_DATETIME, -1000}, 1800000000000LL, 0},
      {{KJB_RESET_DURATION, 3600000}, 1800000000000LL, 1799996400000LL},
      {{KJB_RESET_DURATION, INT64_MAX}, 1800000000000LL, 0},
      {{KJB_RESET_DURATION, 0}, 1800000000000LL, 1800000000000LL},
      {{KJB_RESET_EARLIEST, 0}, 1800000000000LL, -1},
      {{KJB_RESET_SHIFT, -3}, 1800000000000LL, -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("time case %zu\n", i);
    assert_int_equal(kjb_reset_time_ms(&cases[i].spec, cases[i].now), cases[i].expected);
  }
}

/* Only a mapping's dead-letter topic may be replayed, from the CLI and
 * the API alike. */
static void test_check_topic(void **state) {
  kjb_topic_cfg topics[2] = {{.topic = "orders", .dlq = "orders.dlq"},
                             {.topic = "payments", .dlq = "payments.failed"}};
  kjb_config cfg = {.topics = topics, .ntopics = 2};
  kjb_err err;
  assert_int_equal(kjb_replay_check_topic(&cfg, "orders.dlq", &err), 0);
  assert_int_equal(kjb_replay_check_topic(&cfg, "payments.failed", &err), 0);
  static const struct {
    const char *topic, *msg;
  } refused[] = {
      {"orders", "\"orders\" is not the dead-letter topic of a mapping"},
      {"nope.dlq", "\"nope.dlq\" is not the dead-letter topic of a mapping"},
      {"payments.dlq", "\"payments.dlq\" is not the dead-letter topic of a mapping"},
      {"", "\"\" is not the dead-letter topic of a mapping"},
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    assert_int_equal(kjb_replay_check_topic(&cfg, refused[i].topic, &err), -KJB_EUSAGE);
    assert_string_equal(err.msg, refused[i].msg);
  }
  /* The replay itself refuses it before connecting anywhere. */
  kjb_replay_opts o = {.topic = "orders"};
  kjb_replay_stats st = {0};
  assert_int_equal(kjb_replay_run(&cfg, &o, &st, NULL, &err), -KJB_EUSAGE);
  assert_string_equal(err.msg, "\"orders\" is not the dead-letter topic of a mapping");
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse),
                                     cmocka_unit_test(test_parse_quotes_long_specs),
                                     cmocka_unit_test(test_target), cmocka_unit_test(test_time),
                                     cmocka_unit_test(test_check_topic)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
