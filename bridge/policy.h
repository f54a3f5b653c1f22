/* Executor policies, as plain values without locking or I/O: retry
 * backoff, a local token bucket, and a circuit breaker. The executor owns
 * them and serialises access. */
#ifndef KJB_POLICY_H
#define KJB_POLICY_H

#include <stdint.h>

#include "config.h"

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
  int probing;   /* half-open: the probe is running */
  int n;         /* outcomes in the window */
  int head;      /* where the next outcome goes */
  int failures;  /* failures in the window */
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

#endif
