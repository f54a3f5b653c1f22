/* Executor policies: retry backoff, token buckets, circuit breakers, and
 * the decisions over them: verdicts on attempts and admission of claims. */
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
    assert_int_equal(
        kjb_backoff_us(1 * S, 3600 * S, cases[i].jitter, cases[i].attempt, cases[i].rnd),
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

static void test_finish_verdicts(void **state) {
  static const kjb_retry_cfg retry = {
      .max_attempts = 20, .base_us = 1 * S, .max_us = 3600 * S, .jitter = KJB_JITTER_FULL};
  static const kjb_retry_cfg no_jitter = {
      .max_attempts = 20, .base_us = 1 * S, .max_us = 3600 * S, .jitter = KJB_JITTER_NONE};
  static const struct {
    const char *name;
    int status; /* a kjb_handler_status, or one the ABI does not define */
    int attempt, max_attempts;
    int64_t retry_after_us;
    const kjb_retry_cfg *retry;
    double rnd;
    kjb_finish_kind kind;
    int transient;
    int64_t retry_in_us;
  } cases[] = {
      {"ok completes", KJB_HANDLER_OK, 1, 20, -1, &retry, 0.5, KJB_FINISH_COMPLETED, 0, 0},
      {"ok on the last attempt completes", KJB_HANDLER_OK, 20, 20, -1, &retry, 0.5,
       KJB_FINISH_COMPLETED, 0, 0},
      {"ok ignores a hint", KJB_HANDLER_OK, 1, 20, 7 * S, &retry, 0.5, KJB_FINISH_COMPLETED, 0, 0},
      {"transient backs off, jittered", KJB_HANDLER_TRANSIENT, 3, 20, -1, &retry, 0.25,
       KJB_FINISH_RETRY, 1, 1 * S},
      {"transient backs off, no jitter", KJB_HANDLER_TRANSIENT, 3, 20, -1, &no_jitter, 0.25,
       KJB_FINISH_RETRY, 1, 4 * S},
      {"transient backoff is capped", KJB_HANDLER_TRANSIENT, 19, 20, -1, &no_jitter, 0.9,
       KJB_FINISH_RETRY, 1, 3600 * S},
      {"the handler's hint wins", KJB_HANDLER_TRANSIENT, 3, 20, 7 * S, &retry, 0.25,
       KJB_FINISH_RETRY, 1, 7 * S},
      {"a hint of 0 retries at once", KJB_HANDLER_TRANSIENT, 3, 20, 0, &retry, 0.25,
       KJB_FINISH_RETRY, 1, 0},
      {"transient on the last attempt discards", KJB_HANDLER_TRANSIENT, 20, 20, 7 * S, &retry, 0.5,
       KJB_FINISH_DISCARD, 1, 0},
      {"transient past the last attempt discards", KJB_HANDLER_TRANSIENT, 21, 20, -1, &retry, 0.5,
       KJB_FINISH_DISCARD, 1, 0},
      {"one attempt in all", KJB_HANDLER_TRANSIENT, 1, 1, -1, &retry, 0.5, KJB_FINISH_DISCARD, 1,
       0},
      {"permanent discards at once", KJB_HANDLER_PERMANENT, 1, 20, 7 * S, &retry, 0.5,
       KJB_FINISH_DISCARD, 0, 0},
      {"an unknown status discards", 42, 1, 20, -1, &retry, 0.5, KJB_FINISH_DISCARD, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("%s\n", cases[i].name);
    kjb_verdict v = kjb_policy_finish((kjb_handler_status)cases[i].status, cases[i].attempt,
                                      cases[i].max_attempts, cases[i].retry_after_us,
                                      cases[i].retry, cases[i].rnd);
    assert_int_equal(v.kind, cases[i].kind);
    assert_int_equal(v.transient, cases[i].transient);
    assert_int_equal(v.retry_in_us, cases[i].retry_in_us);
  }
}

/* The state a gate case starts from. */
typedef enum {
  B_NONE, /* no breaker */
  B_CLOSED,
  B_OPEN,      /* opened at 0 with open_for 30 s */
  B_HALF_OPEN, /* its probe out */
} breaker_start;

static void start_breaker(kjb_breaker *b, breaker_start st) {
  kjb_breaker_init(b, 0.5, 1, 30 * S);
  if (st == B_OPEN || st == B_HALF_OPEN)
    assert_int_equal(kjb_breaker_record(b, 1, 0), 1);
  if (st == B_HALF_OPEN)
    assert_int_equal(kjb_breaker_allow(b, 1, 30 * S), 1);
}

static void test_gate_admit(void **state) {
  static const struct {
    const char *name;
    breaker_start breaker;
    int tokens; /* in a local bucket of 5 a second, burst 10; -1: no bucket */
    int free_workers, claim_batch;
    int64_t now_us;
    int claim;      /* what kjb_gate_admit returns */
    int64_t due_us; /* what it leaves in *due_us (set to -1 before) */
    int tokens_after;
    kjb_breaker_state state_after;
  } cases[] = {
      {"no worker free: no claim, due untouched", B_CLOSED, 10, 0, 100, 40 * S, 0, -1, 10,
       KJB_BREAKER_CLOSED},
      {"nothing in the way: the free workers", B_NONE, -1, 8, 100, 40 * S, 8, -1, -1,
       KJB_BREAKER_CLOSED},
      {"claim_batch caps it", B_NONE, -1, 8, 3, 40 * S, 3, -1, -1, KJB_BREAKER_CLOSED},
      {"closed breaker lets all through", B_CLOSED, -1, 8, 100, 40 * S, 8, -1, -1,
       KJB_BREAKER_CLOSED},
      {"open breaker: back when it probes", B_OPEN, 10, 8, 100, 10 * S, 0, 30 * S, 10,
       KJB_BREAKER_OPEN},
      {"open for long enough: one probe", B_OPEN, 10, 8, 100, 40 * S, 1, -1, 9,
       KJB_BREAKER_HALF_OPEN},
      {"half-open with the probe out: poll", B_HALF_OPEN, 10, 8, 100, 40 * S, 0, 41 * S, 10,
       KJB_BREAKER_HALF_OPEN},
      {"the bucket limits it", B_CLOSED, 3, 8, 100, 40 * S, 3, -1, 0, KJB_BREAKER_CLOSED},
      {"an empty bucket: back at the next token", B_NONE, 0, 8, 100, 40 * S, 0, 40 * S + 200000, 0,
       KJB_BREAKER_CLOSED},
      {"an empty bucket gives the probe back", B_OPEN, 0, 8, 100, 40 * S, 0, 40 * S + 200000, 0,
       KJB_BREAKER_HALF_OPEN},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("%s\n", cases[i].name);
    kjb_breaker br;
    kjb_bucket bu;
    start_breaker(&br, cases[i].breaker);
    kjb_bucket_init(&bu, 5.0, 10, cases[i].now_us);
    if (cases[i].tokens >= 0)
      assert_int_equal(kjb_bucket_take(&bu, 10 - cases[i].tokens, cases[i].now_us),
                       10 - cases[i].tokens);
    kjb_gate g = {.breaker = cases[i].breaker == B_NONE ? NULL : &br,
                  .bucket = cases[i].tokens < 0 ? NULL : &bu,
                  .claim_batch = cases[i].claim_batch,
                  .poll_interval_us = 1 * S};
    int64_t due = -1;
    assert_int_equal(kjb_gate_admit(&g, cases[i].free_workers, cases[i].now_us, &due),
                     cases[i].claim);
    assert_int_equal(due, cases[i].due_us);
    if (g.bucket)
      assert_int_equal(kjb_bucket_take(&bu, 100, cases[i].now_us), cases[i].tokens_after);
    if (g.breaker) {
      assert_int_equal(br.state, cases[i].state_after);
      /* A probe handed back by admit may go out again. */
      if (cases[i].breaker == B_OPEN && cases[i].claim == 0 && cases[i].tokens == 0)
        assert_int_equal(kjb_breaker_allow(&br, 1, cases[i].now_us), 1);
    }
  }
}

static void test_gate_claimed(void **state) {
  static const struct {
    const char *name;
    int local, half_open;
    double cluster_rate;
    int asked, got;
    double cluster_tokens;
    int64_t due_us;   /* from now = 100 s */
    int tokens_after; /* local: of 10, asked taken before the claim */
    int probe_back;   /* the breaker may hand its probe out again */
  } cases[] = {
      {"got all it asked: again at once", 1, 0, 0, 4, 4, 0, 0, 6, 0},
      {"got fewer: drained, poll", 1, 0, 0, 4, 1, 0, 1 * S, 9, 0},
      {"got none: tokens back", 1, 0, 0, 4, 0, 0, 1 * S, 10, 0},
      {"the probe found a job", 0, 1, 0, 1, 1, 0, 0, -1, 0},
      {"the probe found none: handed back", 0, 1, 0, 1, 0, 0, 1 * S, -1, 1},
      {"cluster short of tokens: when one accrues", 0, 0, 4.0, 4, 2, 0.5, 125001, -1, 0},
      {"cluster with tokens left: drained, poll", 0, 0, 4.0, 4, 2, 1.5, 1 * S, -1, 0},
      {"cluster got all: again at once", 0, 0, 4.0, 4, 4, 0.0, 0, -1, 0},
      {"no cluster limit ignores its tokens", 0, 0, 0, 4, 2, 0.0, 1 * S, -1, 0},
  };
  const int64_t now = 100 * S;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("%s\n", cases[i].name);
    kjb_breaker br;
    kjb_bucket bu;
    start_breaker(&br, cases[i].half_open ? B_HALF_OPEN : B_CLOSED);
    kjb_bucket_init(&bu, 5.0, 10, now);
    kjb_gate g = {.breaker = &br,
                  .bucket = cases[i].local ? &bu : NULL,
                  .cluster_rate = cases[i].cluster_rate,
                  .claim_batch = 100,
                  .poll_interval_us = 1 * S};
    if (g.bucket)
      assert_int_equal(kjb_bucket_take(&bu, cases[i].asked, now), cases[i].asked);
    assert_int_equal(
        kjb_gate_claimed(&g, cases[i].asked, cases[i].got, cases[i].cluster_tokens, now),
        now + cases[i].due_us);
    if (g.bucket)
      assert_int_equal(kjb_bucket_take(&bu, 100, now), cases[i].tokens_after);
    if (cases[i].half_open)
      assert_int_equal(kjb_breaker_allow(&br, 1, now), cases[i].probe_back);
  }

  /* A failed claim gives back everything it took. */
  kjb_breaker br;
  kjb_bucket bu;
  start_breaker(&br, B_OPEN);
  kjb_bucket_init(&bu, 5.0, 10, 40 * S);
  kjb_gate g = {.breaker = &br, .bucket = &bu, .claim_batch = 100, .poll_interval_us = 1 * S};
  int64_t due = -1;
  assert_int_equal(kjb_gate_admit(&g, 8, 40 * S, &due), 1);
  kjb_gate_failed(&g, 1);
  assert_int_equal(kjb_bucket_take(&bu, 100, 40 * S), 10);
  assert_int_equal(kjb_breaker_allow(&br, 1, 40 * S), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_bucket),
      cmocka_unit_test(test_breaker_opens_probes_and_closes),
      cmocka_unit_test(test_breaker_window_slides),
      cmocka_unit_test(test_finish_verdicts),
      cmocka_unit_test(test_gate_admit),
      cmocka_unit_test(test_gate_claimed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
