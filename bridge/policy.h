/* Executor policies, as plain values without locking or I/O: retry
 * backoff, a local token bucket, a circuit breaker, and the decisions made
 * with them (what a finished attempt becomes, how many jobs to claim and
 * when to come back). The executor owns the state and serialises access;
 * it only carries the decisions out. */
#ifndef KJB_POLICY_H
#define KJB_POLICY_H

#include <stdint.h>

#include "config.h"
#include "kjb/handler.h"

/* The delay before retrying a job whose attempt `attempt` (1-based) failed
 * transiently: base * 2^(attempt-1), capped at max, then jittered: full
 * draws from [0, d], equal from [d/2, d], none keeps d. rnd is a uniform
 * draw from [0, 1). */
int64_t kjb_backoff_us(int64_t base_us, int64_t max_us, kjb_jitter jitter, int attempt, double rnd);

/* A token bucket: `rate` tokens a second up to `burst`, starting full. */
typedef struct {
  double rate;
  double burst;
  double tokens;
  int64_t last_us;
} kjb_bucket;

void kjb_bucket_init(kjb_bucket *b, double rate, int burst, int64_t now_us);
/* Takes up to `want` whole tokens and returns how many it took. */
int kjb_bucket_take(kjb_bucket *b, int want, int64_t now_us);
/* Puts back tokens taken but not used (never above burst). */
void kjb_bucket_refund(kjb_bucket *b, int n);
/* Microseconds until a whole token is available; 0 when one is. */
int64_t kjb_bucket_wait_us(kjb_bucket *b, int64_t now_us);

/* A circuit breaker over the outcomes of the last `min_calls` attempts
 * (at most KJB_BREAKER_WINDOW). Closed: everything may run; it opens when
 * the window is full and its failure ratio reaches failure_ratio. Open:
 * nothing runs for open_for. Half-open: one probe runs; its success
 * closes the breaker (with an empty window), its failure opens it again. */
#define KJB_BREAKER_WINDOW 1024

typedef enum { KJB_BREAKER_CLOSED, KJB_BREAKER_OPEN, KJB_BREAKER_HALF_OPEN } kjb_breaker_state;

typedef struct {
  double failure_ratio;
  int window;
  int64_t open_for_us;
  kjb_breaker_state state;
  int64_t opened_at_us;
  int probing;  /* half-open: the probe is running */
  int n;        /* outcomes in the window */
  int head;     /* where the next outcome goes */
  int failures; /* failures in the window */
  unsigned char ring[KJB_BREAKER_WINDOW];
} kjb_breaker;

void kjb_breaker_init(kjb_breaker *b, double failure_ratio, int min_calls, int64_t open_for_us);
/* How many of `want` jobs may start now: want when closed; 0 while open;
 * 1 (the probe) once open_for has passed, moving to half-open; 0 while
 * the probe runs. */
int kjb_breaker_allow(kjb_breaker *b, int want, int64_t now_us);
/* The jobs kjb_breaker_allow let start did not start after all (none
 * was claimed): a half-open breaker may hand out its probe again. */
void kjb_breaker_unclaimed(kjb_breaker *b);
/* Records an attempt that kjb_breaker_allow let start; failed counts
 * transient failures (the downstream is struggling), not permanent ones.
 * Returns 1 when this outcome changed the state, else 0. */
int kjb_breaker_record(kjb_breaker *b, int failed, int64_t now_us);
/* Microseconds until an open breaker lets a probe through; 0 otherwise. */
int64_t kjb_breaker_wait_us(const kjb_breaker *b, int64_t now_us);
const char *kjb_breaker_state_name(kjb_breaker_state s);

/* ---- Decisions ---------------------------------------------------------- */

/* What a finished attempt becomes. */
typedef enum { KJB_FINISH_COMPLETED, KJB_FINISH_RETRY, KJB_FINISH_DISCARD } kjb_finish_kind;

typedef struct {
  kjb_finish_kind kind;
  int transient;       /* the attempt failed transiently */
  int64_t retry_in_us; /* KJB_FINISH_RETRY: run again this much later */
} kjb_verdict;

/* The verdict on attempt `attempt` (1-based) of max_attempts, which ended
 * with status: OK completes. TRANSIENT retries unless it was the last
 * attempt (attempt >= max_attempts), then discards; the delay is the
 * handler's hint retry_after_us when it gave one (>= 0; -1 for none),
 * else kjb_backoff_us over retry with rnd (uniform in [0, 1)).
 * PERMANENT, and any status the ABI does not define, discards. */
kjb_verdict kjb_policy_finish(kjb_handler_status status, int attempt, int max_attempts,
                              int64_t retry_after_us, const kjb_retry_cfg *retry, double rnd);

/* What holds back claiming for one kind: its breaker and its local
 * bucket (NULL when it has none; the caller owns them, and the functions
 * below change them), or a cluster-wide bucket (cluster_rate > 0, its
 * tokens kept in the database). */
typedef struct {
  kjb_breaker *breaker;
  kjb_bucket *bucket;
  double cluster_rate; /* tokens a second; 0 without a cluster limit */
  int claim_batch;     /* jobs per claim at most */
  int64_t poll_interval_us;
} kjb_gate;

/* How many jobs to claim now with free_workers idle workers: at most
 * claim_batch, as many as the breaker lets start (taking its probe when
 * half-open) and the bucket has whole tokens for (taking them). Returns
 * 0 with *due_us left alone when no worker is free (one handing back
 * wakes the dispatcher); 0 with *due_us set when the breaker or the
 * bucket holds the claim back: when the breaker lets a probe through
 * (else after poll_interval), or when the bucket has a token again.
 * A claim that follows must be reported to kjb_gate_claimed or
 * kjb_gate_failed. */
int kjb_gate_admit(const kjb_gate *g, int free_workers, int64_t now_us, int64_t *due_us);

/* The claim of `asked` jobs that kjb_gate_admit allowed got `got`, and
 * left cluster_tokens in the shared bucket (ignored without a cluster
 * limit). Gives back the local tokens not used and, when nothing was
 * claimed, the breaker's probe. Returns when to claim again: at once when
 * it got all it asked for (there may be more); when a cluster token has
 * accrued when it got fewer for want of tokens; else, the kind being
 * drained, after poll_interval (a notification comes sooner). */
int64_t kjb_gate_claimed(const kjb_gate *g, int asked, int got, double cluster_tokens,
                         int64_t now_us);

/* The claim of `asked` jobs failed outright: gives back their local
 * tokens and the breaker's probe. */
void kjb_gate_failed(const kjb_gate *g, int asked);

#endif
