/* Executor policies: retry backoff, token buckets, circuit breakers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "policy.h"

#define S 1000000LL

static void test_backoff(void **state) {
  static const struct {
    int attempt;
    kjb_jitter jitter;
    double rnd;
    int64_t us;
  } cases[] = {
      {1, KJB_JITTER_NONE, 0.5, 1 * S},     {2, KJB_JITTER_NONE, 0.5, 2 * S},
      {5, KJB_JITTER_NONE, 0.5, 16 * S},    {12, KJB_JITTER_NONE, 0.5, 2048 * S},
      {13, KJB_JITTER_NONE, 0.5, 3600 * S}, {1000, KJB_JITTER_NONE, 0.5, 3600 * S},
      {0, KJB_JITTER_NONE, 0.5, 1 * S},     {3, KJB_JITTER_FULL, 0.0, 0},
      {3, KJB_JITTER_FULL, 0.25, 1 * S},    {3, KJB_JITTER_EQUAL, 0.0, 2 * S},
      {3, KJB_JITTER_EQUAL, 0.5, 3 * S},    {1000, KJB_JITTER_FULL, 0.5, 1800 * S},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("attempt %d jitter %d rnd %.2f\n", cases[i].attempt, (int)cases[i].jitter,
                  cases[i].rnd);
    assert_int_equal(kjb_backoff_us(1 * S, 3600 * S, cases[i].jitter, cases[i].attempt, cases[i].rnd),
                     cases[i].us);
  }
}

static void test_bucket(void **state) {
  kjb_bucket b;
  kjb_bucket_init(&b, 10.0, 5, 0);
  assert_int_equal(kjb_bucket_take(&b, 3, 0), 3);
  assert_int_equal(kjb_bucket_take(&b, 3, 0), 2);
  assert_int_equal(kjb_bucket_take(&b, 3, 0), 0);
  assert_int_equal(kjb_bucket_wait_us(&b, 0), 100000);
  assert_int_equal(kjb_bucket_take(&b, 3, 250000), 2); /* 2.5 tokens refilled */
  assert_int_equal(kjb_bucket_wait_us(&b, 250000), 50000);
  kjb_bucket_refund(&b, 1);
  assert_int_equal(kjb_bucket_take(&b, 9, 250000), 1);
  /* Never more than the burst, however long it idled. */
  assert_int_equal(kjb_bucket_take(&b, 100, 3600 * S), 5);
  /* Over 10 s at 10/s: 5 (burst) + 100. */
  kjb_bucket_init(&b, 10.0, 5, 0);
  int total = 0;
  for (int64_t t = 0; t <= 10 * S; t += 1000)
    total += kjb_bucket_take(&b, 1000, t);
  assert_int_equal(total, 105);
}

static void test_breaker_opens_probes_and_closes(void **state) {
  kjb_breaker b;
  kjb_breaker_init(&b, 0.5, 4, 30 * S);
  assert_int_equal(kjb_breaker_allow(&b, 8, 0), 8);
  /* The window is not full: no verdict yet. */
  assert_int_equal(kjb_breaker_record(&b, 1, 1), 0);
  assert_int_equal(kjb_breaker_record(&b, 0, 2), 0);
  assert_int_equal(kjb_breaker_record(&b, 0, 3), 0);
  assert_int_equal(b.state, KJB_BREAKER_CLOSED);
  /* Full: 1 of 4 failed, then the oldest slides out. */
  assert_int_equal(kjb_breaker_record(&b, 0, 4), 0);
  assert_int_equal(kjb_breaker_record(&b, 1, 4), 0); /* window: 0 0 0 1 */
  assert_int_equal(b.state, KJB_BREAKER_CLOSED);
  /* 2 of the last 4 failed: 0.5 reaches the ratio. */
  assert_int_equal(kjb_breaker_record(&b, 1, 5), 1); /* window: 0 0 1 1 */
  assert_int_equal(b.state, KJB_BREAKER_OPEN);
  assert_int_equal(kjb_breaker_allow(&b, 8, 5 + 29 * S), 0);
  assert_int_equal(kjb_breaker_wait_us(&b, 5 + 29 * S), 1 * S);
  /* A straggler's outcome while open changes nothing. */
  assert_int_equal(kjb_breaker_record(&b, 0, 6), 0);
  /* open_for passed: one probe, and only one. */
  assert_int_equal(kjb_breaker_allow(&b, 8, 5 + 30 * S), 1);
  assert_int_equal(b.state, KJB_BREAKER_HALF_OPEN);
  assert_int_equal(kjb_breaker_allow(&b, 8, 5 + 31 * S), 0);
  /* A probe that found no job to claim may be handed out again. */
  kjb_breaker_unclaimed(&b);
  assert_int_equal(kjb_breaker_allow(&b, 8, 5 + 31 * S), 1);
  /* The probe fails: open again for a full open_for. */
  assert_int_equal(kjb_breaker_record(&b, 1, 40 * S), 1);
  assert_int_equal(b.state, KJB_BREAKER_OPEN);
  assert_int_equal(kjb_breaker_allow(&b, 8, 69 * S), 0);
  assert_int_equal(kjb_breaker_allow(&b, 8, 70 * S), 1);
  /* The next probe succeeds: closed, with a fresh window. */
  assert_int_equal(kjb_breaker_record(&b, 0, 71 * S), 1);
  assert_int_equal(b.state, KJB_BREAKER_CLOSED);
  assert_int_equal(kjb_breaker_allow(&b, 8, 71 * S), 8);
  assert_int_equal(kjb_breaker_record(&b, 1, 72 * S), 0);
  assert_int_equal(kjb_breaker_record(&b, 1, 72 * S), 0);
  assert_int_equal(kjb_breaker_record(&b, 1, 72 * S), 0);
  assert_int_equal(b.state, KJB_BREAKER_CLOSED);
  assert_string_equal(kjb_breaker_state_name(b.state), "closed");
}

static void test_breaker_window_slides(void **state) {
  kjb_breaker b;
  kjb_breaker_init(&b, 0.6, 5, S);
  /* Failures spread thinly over many calls never reach 3 in 5. */
  for (int i = 0; i < 100; i++)
    assert_int_equal(kjb_breaker_record(&b, i % 4 == 0, i), 0);
  assert_int_equal(b.state, KJB_BREAKER_CLOSED);
  /* Three in a row among the last five do. */
  assert_int_equal(kjb_breaker_record(&b, 1, 100), 0);
  assert_int_equal(kjb_breaker_record(&b, 1, 101), 0);
  assert_int_equal(kjb_breaker_record(&b, 1, 102), 1);
  assert_int_equal(b.state, KJB_BREAKER_OPEN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_bucket),
      cmocka_unit_test(test_breaker_opens_probes_and_closes),
      cmocka_unit_test(test_breaker_window_slides),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
