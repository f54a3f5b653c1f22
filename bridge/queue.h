/* The job queue in PostgreSQL, as executors use it: nodes and their
 * heartbeats, claiming, finishing, rescue of a dead node's jobs, release
 * at shutdown, and the shared buckets of cluster rate limits. Times are
 * the database's clock, so nodes need not agree on theirs. */
#ifndef KJB_QUEUE_H
#define KJB_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "policy.h"
#include "store.h"

/* Records (or refreshes) node `name` in kjb.nodes with a fresh heartbeat. */
int kjb_queue_heartbeat(kjb_store *s, const char *name, const char *host, int pid,
                        const char *roles, const char *version, kjb_err *err);
/* Removes the node's row (graceful shutdown). */
int kjb_queue_leave(kjb_store *s, const char *name, kjb_err *err);

/* A claimed job; strings are malloc'ed, freed by kjb_queue_claimed_close. */
typedef struct {
  int64_t id;
  char *args;
  int attempt; /* this attempt, 1-based */
  int max_attempts;
  int64_t created_us; /* epoch microseconds */
  int64_t scheduled_us;
  int64_t claimed_us;
  /* The source record's trace context from the job's meta; NULL for none. */
  char *traceparent, *tracestate;
  /* Where the job came from; source_topic NULL for a job inserted by hand. */
  char *source_topic;
  int32_t source_partition;
  int64_t source_offset;
  char *ordering_key; /* NULL for a job without one */
} kjb_claimed;

void kjb_queue_claimed_close(kjb_claimed *c);

/* A cluster rate limit to take tokens from while claiming. */
typedef struct {
  double rate;
  int burst;
} kjb_queue_bucket;

/* How a claim treats jobs with an ordering_key. */
typedef struct {
  /* The handler's on_discard is hold: a discarded job keeps blocking the
   * later jobs of its key. */
  int hold;
  /* Visit keys after this one first (NULL: from the first key), so that
   * successive claims go round the keys. */
  const char *after_key;
} kjb_queue_order;

/* Claims up to `max` runnable jobs of `kind` (available, scheduled or
 * retryable, due now), best priority then oldest scheduled_at first,
 * skipping rows other executors hold: each becomes running, attempted by
 * `node`, its attempt counted. A job with an ordering_key is claimed only
 * when it is the first unfinished job of its kind and key in source
 * order and no job of that key is running (queue.c explains why this
 * holds across executors); `order` says how discarded jobs count and
 * where the walk over keys starts. Keys are visited in key order from
 * order->after_key to the last, so a claim that returns fewer jobs than
 * asked with after_key set may find more from the first key. With
 * `bucket`, also takes one token per claimed job from the kind's shared
 * bucket in the same statement (never more jobs than whole tokens), and
 * *tokens_left receives what remains (may be NULL). out must hold max
 * entries; *n receives how many. */
int kjb_queue_claim(kjb_store *s, const char *kind, const char *node, int max,
                    const kjb_queue_order *order, const kjb_queue_bucket *bucket, kjb_claimed *out,
                    int *n, double *tokens_left, kjb_err *err);

/* Creates the kind's shared bucket, full, unless it exists. */
int kjb_queue_bucket_ensure(kjb_store *s, const char *kind, int burst, kjb_err *err);

/* The outcome of one attempt. error (valid UTF-8; NULL for success) is
 * appended to the job's errors with the attempt, the time and transient. */
typedef struct {
  int64_t id;
  kjb_finish_kind kind;
  int64_t retry_in_us; /* KJB_FINISH_RETRY: scheduled_at = now + this */
  const char *error;
  int transient;
} kjb_finish;

/* Sends n (> 0) outcomes as one statement, without waiting for it (see
 * kjb_store_send_prepared); kjb_queue_finish_result then waits for it and
 * sets *applied to how many rows changed. Only rows still running by
 * `node` change: a job rescued or cancelled meanwhile keeps its new
 * state. Both return 0 or a negative code with err. */
int kjb_queue_finish_send(kjb_store *s, const char *node, const kjb_finish *f, size_t n,
                          kjb_err *err);
int kjb_queue_finish_result(kjb_store *s, size_t *applied, kjb_err *err);

/* Running jobs whose node has not heartbeated within lease_us go back to
 * retryable, due now (or to discarded when that was their last attempt),
 * with an error entry naming the node. *rescued receives the count. */
int kjb_queue_rescue(kjb_store *s, int64_t lease_us, int64_t *rescued, kjb_err *err);

/* Running jobs attempted by `node` whose ids are not among held (the jobs
 * the node has in hand) go back like rescued ones. They are the node's
 * own rows that it does not know of: a claim committed while its answer
 * was lost with the connection, or a recorded outcome that the server
 * forgot in a crash (synchronous_commit = off, a failover to an
 * asynchronous replica). No other node would ever rescue them, since
 * this node still heartbeats. *returned receives the count. */
int kjb_queue_reconcile(kjb_store *s, const char *node, const int64_t *held, size_t n,
                        int64_t *returned, kjb_err *err);

/* Shutdown: the node's running jobs among ids (ids NULL: all of them) go
 * back to available, their attempt uncounted. *released receives the
 * count. */
int kjb_queue_release(kjb_store *s, const char *node, const int64_t *ids, size_t n,
                      int64_t *released, kjb_err *err);

#endif
