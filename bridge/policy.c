/* Retry backoff, token buckets, circuit breakers and the executor's
 * decisions over them (see policy.h). */
#include "policy.h"

#include <math.h>
#include <string.h>

int64_t kjb_backoff_us(int64_t base_us, int64_t max_us, kjb_jitter jitter, int attempt,
                       double rnd) {
  /* Doubling past 2^62 overflows; the cap is reached long before. */
  int shift = attempt < 1 ? 0 : attempt - 1 > 62 ? 62 : attempt - 1;
  double d = (double)base_us * ldexp(1.0, shift);
  if (d > (double)max_us)
    d = (double)max_us;
  switch (jitter) {
  case KJB_JITTER_FULL: d = d * rnd; break;
  case KJB_JITTER_EQUAL: d = d / 2 + d / 2 * rnd; break;
  case KJB_JITTER_NONE: break;
  }
  return (int64_t)d;
}

static void refill(kjb_bucket *b, int64_t now_us) {
  if (now_us > b->last_us) {
    b->tokens += (double)(now_us - b->last_us) / 1e6 * b->rate;
    if (b->tokens > b->burst)
      b->tokens = b->burst;
    b->last_us = now_us;
  }
}

void kjb_bucket_init(kjb_bucket *b, double rate, int burst, int64_t now_us) {
  b->rate = rate;
  b->burst = burst;
  b->tokens = burst;
  b->last_us = now_us;
}

int kjb_bucket_take(kjb_bucket *b, int want, int64_t now_us) {
  refill(b, now_us);
  double whole = floor(b->tokens);
  int n = whole < want ? (int)whole : want;
  if (n < 0)
    n = 0;
  b->tokens -= n;
  return n;
}

void kjb_bucket_refund(kjb_bucket *b, int n) {
  b->tokens += n;
  if (b->tokens > b->burst)
    b->tokens = b->burst;
}

int64_t kjb_bucket_wait_us(kjb_bucket *b, int64_t now_us) {
  refill(b, now_us);
  if (b->tokens >= 1)
    return 0;
  return (int64_t)ceil((1 - b->tokens) / b->rate * 1e6);
}

void kjb_breaker_init(kjb_breaker *b, double failure_ratio, int min_calls, int64_t open_for_us) {
  memset(b, 0, sizeof *b);
  b->failure_ratio = failure_ratio;
  b->window = min_calls < 1 ? 1 : min_calls > KJB_BREAKER_WINDOW ? KJB_BREAKER_WINDOW : min_calls;
  b->open_for_us = open_for_us;
  b->state = KJB_BREAKER_CLOSED;
}

static void clear_window(kjb_breaker *b) { b->n = b->head = b->failures = 0; }

int kjb_breaker_allow(kjb_breaker *b, int want, int64_t now_us) {
  switch (b->state) {
  case KJB_BREAKER_CLOSED: return want;
  case KJB_BREAKER_OPEN:
    if (now_us - b->opened_at_us < b->open_for_us || want < 1)
      return 0;
    b->state = KJB_BREAKER_HALF_OPEN;
    b->probing = 1;
    return 1;
  case KJB_BREAKER_HALF_OPEN:
    if (b->probing || want < 1)
      return 0;
    b->probing = 1;
    return 1;
  }
  return 0;
}

void kjb_breaker_unclaimed(kjb_breaker *b) {
  if (b->state == KJB_BREAKER_HALF_OPEN)
    b->probing = 0;
}

int kjb_breaker_record(kjb_breaker *b, int failed, int64_t now_us) {
  switch (b->state) {
  case KJB_BREAKER_OPEN:
    /* Stragglers that started before it opened say nothing new. */
    return 0;
  case KJB_BREAKER_HALF_OPEN:
    b->probing = 0;
    clear_window(b);
    if (failed) {
      b->state = KJB_BREAKER_OPEN;
      b->opened_at_us = now_us;
    } else {
      b->state = KJB_BREAKER_CLOSED;
    }
    return 1;
  case KJB_BREAKER_CLOSED: break;
  }
  if (b->n == b->window)
    b->failures -= b->ring[b->head];
  else
    b->n++;
  b->ring[b->head] = failed ? 1 : 0;
  b->failures += b->ring[b->head];
  b->head = (b->head + 1) % b->window;
  if (b->n == b->window && (double)b->failures >= b->failure_ratio * b->window) {
    b->state = KJB_BREAKER_OPEN;
    b->opened_at_us = now_us;
    clear_window(b);
    return 1;
  }
  return 0;
}

int64_t kjb_breaker_wait_us(const kjb_breaker *b, int64_t now_us) {
  if (b->state != KJB_BREAKER_OPEN)
    return 0;
  int64_t left = b->opened_at_us + b->open_for_us - now_us;
  return left > 0 ? left : 0;
}

const char *kjb_breaker_state_name(kjb_breaker_state s) {
  switch (s) {
  case KJB_BREAKER_CLOSED: return "closed";
  case KJB_BREAKER_OPEN: return "open";
  case KJB_BREAKER_HALF_OPEN: return "half-open";
  }
  return "?";
}

/* ---- Decisions ---------------------------------------------------------- */

kjb_verdict kjb_policy_finish(kjb_handler_status status, int attempt, int max_attempts,
                              int64_t retry_after_us, const kjb_retry_cfg *retry, double rnd) {
  switch (status) {
  case KJB_HANDLER_OK: return (kjb_verdict){.kind = KJB_FINISH_COMPLETED};
  case KJB_HANDLER_TRANSIENT:
    if (attempt >= max_attempts)
      return (kjb_verdict){.kind = KJB_FINISH_DISCARD, .transient = 1};
    return (kjb_verdict){
        .kind = KJB_FINISH_RETRY,
        .transient = 1,
        .retry_in_us = retry_after_us >= 0 ? retry_after_us
                                           : kjb_backoff_us(retry->base_us, retry->max_us,
                                                            retry->jitter, attempt, rnd),
    };
  case KJB_HANDLER_PERMANENT: break;
  }
  return (kjb_verdict){.kind = KJB_FINISH_DISCARD};
}

int kjb_gate_admit(const kjb_gate *g, int free_workers, int64_t now_us, int64_t *due_us) {
  int want = free_workers < g->claim_batch ? free_workers : g->claim_batch;
  if (want <= 0)
    return 0;
  if (g->breaker) {
    want = kjb_breaker_allow(g->breaker, want, now_us);
    if (want == 0) {
      int64_t w = kjb_breaker_wait_us(g->breaker, now_us);
      *due_us = now_us + (w > 0 ? w : g->poll_interval_us);
      return 0;
    }
  }
  if (g->bucket) {
    want = kjb_bucket_take(g->bucket, want, now_us);
    if (want == 0) {
      *due_us = now_us + kjb_bucket_wait_us(g->bucket, now_us);
      if (g->breaker)
        kjb_breaker_unclaimed(g->breaker);
      return 0;
    }
  }
  return want;
}

int64_t kjb_gate_claimed(const kjb_gate *g, int asked, int got, double cluster_tokens,
                         int64_t now_us) {
  if (g->bucket && got < asked)
    kjb_bucket_refund(g->bucket, asked - got);
  if (g->breaker && got == 0)
    kjb_breaker_unclaimed(g->breaker); /* nothing to probe with: try again later */
  if (g->cluster_rate > 0 && got < asked && cluster_tokens < 1)
    /* Short of tokens, not of jobs: come back when one has accrued. */
    return now_us + (int64_t)((1 - cluster_tokens) / g->cluster_rate * 1e6) + 1;
  if (got < asked)
    /* The kind is drained: wait for a notification, or poll. */
    return now_us + g->poll_interval_us;
  return now_us; /* there may be more as soon as workers free up */
}

void kjb_gate_failed(const kjb_gate *g, int asked) {
  if (g->bucket)
    kjb_bucket_refund(g->bucket, asked);
  if (g->breaker)
    kjb_breaker_unclaimed(g->breaker);
}
