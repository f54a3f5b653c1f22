/* Offset-reset specs: parsing and the offset each resolves to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "replay.h"

static void test_parse(void **state) {
  static const struct {
    const char *in;
    int ok;
    kjb_reset_kind kind;
    int64_t value;
  } cases[] = {
      {"to-earliest", 1, KJB_RESET_EARLIEST, 0},
      {"to-latest", 1, KJB_RESET_LATEST, 0},
      {"to-offset:42", 1, KJB_RESET_OFFSET, 42},
      {"shift-by:-5", 1, KJB_RESET_SHIFT, -5},
      {"shift-by:7", 1, KJB_RESET_SHIFT, 7},
      {"to-datetime:2026-11-21T10:00:00.000", 1, KJB_RESET_DATETIME, 1795255200000LL},
      {"to-datetime:2026-11-21T10:00:00.5Z", 1, KJB_RESET_DATETIME, 1795255200500LL},
      {"to-datetime:2026-11-21T11:00:00.000+01:00", 1, KJB_RESET_DATETIME, 1795255200000LL},
      {"by-duration:PT1H", 1, KJB_RESET_DURATION, 3600000},
      {"by-duration:P1DT2H3M4.5S", 1, KJB_RESET_DURATION, 93784500},
      {"by-duration:PT30M", 1, KJB_RESET_DURATION, 1800000},
      {"to-offset:-1", 0, 0, 0},
      {"to-offset:", 0, 0, 0},
      {"to-offset:12x", 0, 0, 0},
      {"shift-by:", 0, 0, 0},
      {"to-datetime:yesterday", 0, 0, 0},
      {"to-datetime:2026-13-01T00:00:00.000", 0, 0, 0},
      {"by-duration:1H", 0, 0, 0},
      {"by-duration:P", 0, 0, 0},
      {"by-duration:PT1D", 0, 0, 0},
      {"to-earliest:1", 0, 0, 0},
      {"earliest", 0, 0, 0},
      {"", 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kjb_reset_spec spec;
    kjb_err err;
    print_message("spec \"%s\"\n", cases[i].in);
    int rc = kjb_reset_parse(cases[i].in, &spec, &err);
    if (!cases[i].ok) {
      assert_int_equal(rc, -KJB_EUSAGE);
      assert_non_null(strstr(err.msg, cases[i].in));
      continue;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(spec.kind, cases[i].kind);
    assert_int_equal(spec.value, cases[i].value);
  }
}

static void test_target(void **state) {
  static const struct {
    kjb_reset_spec spec;
    int64_t low, high, committed, for_time, expected;
  } cases[] = {
      {{KJB_RESET_EARLIEST, 0}, 10, 50, 30, -1, 10},
      {{KJB_RESET_LATEST, 0}, 10, 50, 30, -1, 50},
      {{KJB_RESET_OFFSET, 20}, 10, 50, 30, -1, 20},
      {{KJB_RESET_OFFSET, 5}, 10, 50, 30, -1, 10},    /* clamped to low */
      {{KJB_RESET_OFFSET, 99}, 10, 50, 30, -1, 50},   /* clamped to high */
      {{KJB_RESET_SHIFT, -5}, 10, 50, 30, -1, 25},
      {{KJB_RESET_SHIFT, -50}, 10, 50, 30, -1, 10},
      {{KJB_RESET_SHIFT, 3}, 10, 50, -1, -1, 13},     /* no commit: from low */
      {{KJB_RESET_DATETIME, 0}, 10, 50, 30, 40, 40},
      {{KJB_RESET_DATETIME, 0}, 10, 50, 30, -1, 50},  /* nothing after: the end */
      {{KJB_RESET_DURATION, 0}, 10, 50, 30, 12, 12},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("target case %zu\n", i);
    assert_int_equal(kjb_reset_target(&cases[i].spec, cases[i].low, cases[i].high,
                                      cases[i].committed, cases[i].for_time),
                     cases[i].expected);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse), cmocka_unit_test(test_target)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
