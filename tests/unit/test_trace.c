/* W3C trace context: which traceparent and tracestate values are passed
 * on, and that a child keeps the trace and flags with a span of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "trace.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void test_traceparent_valid(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int ok;
  } cases[] = {
      {TP, 1},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 1},
      /* A later version may carry more after a '-'. */
      {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", 1},
      {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", 0},
      {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", 0},
      {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0},
      {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", 0},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", 0},
      {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", 0},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", 0},
      {"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0},
      {"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", 0},
      {"", 0},
      {"00", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (kjb_traceparent_valid(cases[i].text, strlen(cases[i].text)) != cases[i].ok)
      fail_msg("%s: expected %s", cases[i].text, cases[i].ok ? "valid" : "invalid");
  /* A NUL inside is no hex digit. */
  char nul[] = TP;
  nul[10] = '\0';
  assert_false(kjb_traceparent_valid(nul, sizeof nul - 1));
}

static void test_tracestate_valid(void **state) {
  (void)state;
  assert_true(kjb_tracestate_valid("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", 39));
  assert_true(kjb_tracestate_valid("", 0));
  assert_false(kjb_tracestate_valid("a=b\nc=d", 7));
  assert_false(kjb_tracestate_valid("a=\x80", 3));
  char big[KJB_TRACESTATE_MAX + 2];
  memset(big, 'a', sizeof big);
  assert_true(kjb_tracestate_valid(big, KJB_TRACESTATE_MAX));
  assert_false(kjb_tracestate_valid(big, KJB_TRACESTATE_MAX + 1));
}

static void test_child(void **state) {
  (void)state;
  char a[KJB_TRACEPARENT_LEN + 1], b[KJB_TRACEPARENT_LEN + 1];
  kjb_traceparent_child(TP, a);
  kjb_traceparent_child(TP, b);
  assert_int_equal(strlen(a), KJB_TRACEPARENT_LEN);
  assert_true(kjb_traceparent_valid(a, strlen(a)));
  /* The same trace and flags; a new span each time. */
  assert_memory_equal(a, TP, 36);
  assert_memory_equal(a + 52, TP + 52, 3);
  assert_memory_not_equal(a + 36, TP + 36, 16);
  assert_memory_not_equal(a + 36, b + 36, 16);
  /* A later version's parent gives a version-00 child. */
  kjb_traceparent_child("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", a);
  assert_memory_equal(a, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
  assert_string_equal(a + 52, "-01");
}

int main(void) {
  kjb_test_clear_kjb_env();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_traceparent_valid),
      cmocka_unit_test(test_tracestate_valid),
      cmocka_unit_test(test_child),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
