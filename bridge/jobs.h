/* Inspecting and acting on job rows: what `kjb jobs` and the admin API do,
 * and the retention pruning executors run periodically. */
#ifndef KJB_JOBS_H
#define KJB_JOBS_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "config.h"
#include "err.h"
#include "store.h"

/* Rows per statement when retrying or pruning many jobs, so that no
 * statement holds row locks on a large part of the table for long. */
#define KJB_JOBS_BATCH 10000

/* The longest state name ("available", "scheduled", ...) plus its NUL. */
#define KJB_JOBS_STATE_MAX 16

/* Which jobs a listing shows (kjb_jobs_list, kjb_jobs_ls). */
typedef struct {
  const char *state; /* only jobs in this state; NULL for any */
  const char *kind;  /* only jobs of this kind; NULL for any */
  long limit;        /* at most this many, newest (highest id) first; 0 for 50 */
  int64_t before;    /* only jobs with a lower id; 0 for any */
  int json;          /* kjb_jobs_ls: one JSON array of objects, not a text table */
} kjb_jobs_filter;

/* How an action on one job went. */
typedef enum {
  KJB_JOBS_DONE,        /* the job was changed */
  KJB_JOBS_NOT_FOUND,   /* no job has that id */
  KJB_JOBS_WRONG_STATE, /* its state does not allow the action */
} kjb_jobs_outcome;

typedef struct {
  kjb_jobs_outcome outcome;
  char state[KJB_JOBS_STATE_MAX]; /* with KJB_JOBS_WRONG_STATE: the job's state */
} kjb_jobs_result;

/* Returns 1 when name is a job state ("available", ..., "cancelled"). */
int kjb_jobs_state_valid(const char *name);

/* The one job listing query, behind both `kjb jobs ls` and GET /api/jobs:
 * selects columns (SQL select-list text, a constant of the caller's) from
 * the jobs that match f, newest first. Returns the result, which the
 * caller clears with PQclear, or NULL with err: KJB_EUSAGE for an unknown
 * f->state, KJB_EPG (prefixed with what) when the database failed. */
PGresult *kjb_jobs_list(kjb_store *s, const char *columns, const kjb_jobs_filter *f,
                        const char *what, kjb_err *err);

/* Writes the jobs that match f to out, newest first: as an aligned table
 * (id, kind, queue, state, attempt/max_attempts, scheduled_at in UTC, the
 * last error shortened to one line) under a header line, or with f->json
 * as one JSON array holding one object per job with every column (args,
 * meta and errors as JSON values, timestamps as RFC 3339 UTC strings or
 * null; a document with an integer beyond 64 bits has its integers shown
 * as doubles). *shown (if not NULL) receives the number of jobs written. An
 * unknown f->state is KJB_EUSAGE; a database failure KJB_EPG. On error
 * nothing is written. */
int kjb_jobs_ls(kjb_store *s, const kjb_jobs_filter *f, FILE *out, long *shown, kjb_err *err);

/* Writes every column of job id to out: "name  value" lines with args,
 * meta and errors indented, or with json one pretty-printed object shaped
 * like kjb_jobs_ls's. *found receives whether the job exists; when it does
 * not, nothing is written and 0 is returned. */
int kjb_jobs_show(kjb_store *s, int64_t id, int json, FILE *out, int *found, kjb_err *err);

/* The actions below take an actor: when it is not NULL, the action is
 * recorded in kjb.audit (action "jobs.retry" or "jobs.cancel", params the
 * job or the state and kind, result what happened), in the action's own
 * transaction for a single job. */

/* Makes job id runnable again now: state available, scheduled_at now(),
 * finished_at NULL and max_attempts raised to attempt + 1 when the job has
 * used up its attempts, so that it gets one more (attempt and errors are
 * kept). Only discarded, cancelled, retryable and scheduled jobs can be
 * retried; any other state leaves the row alone and is reported in *res
 * (KJB_JOBS_WRONG_STATE with the state), as is a missing job. Returns 0
 * unless the database failed (KJB_EPG). */
int kjb_jobs_retry(kjb_store *s, int64_t id, const char *actor, kjb_jobs_result *res, kjb_err *err);

/* Retries, as kjb_jobs_retry does, every job in state (discarded,
 * cancelled or retryable; anything else is KJB_EUSAGE) and, when kind is
 * not NULL, of that kind, KJB_JOBS_BATCH rows per statement. *changed
 * receives the number of jobs retried, also on a failure partway (the
 * batches before it stay committed). Its audit row is written first
 * and given its result at the end, so that an interrupted run shows as
 * one without a result. */
int kjb_jobs_retry_state(kjb_store *s, const char *state, const char *kind, const char *actor,
                         int64_t *changed, kjb_err *err);

/* Cancels job id when it is not final yet (available, scheduled, retryable
 * or running): state cancelled, finished_at now(). A running job is marked
 * too; its executor only records an outcome on rows still running on its
 * node, so the late result is dropped. A discarded job with an
 * ordering_key is cancelled too (it releases the later jobs of its key
 * when its handler's on_discard is hold). Any other final job
 * (completed, discarded, cancelled) is left alone and reported in *res
 * with its state, as is a missing job. Returns 0 unless the database
 * failed (KJB_EPG). */
int kjb_jobs_cancel(kjb_store *s, int64_t id, const char *actor, kjb_jobs_result *res,
                    kjb_err *err);

/* Deletes completed, discarded and cancelled jobs whose finished_at is more
 * than older_than_us (>= 0) microseconds ago, KJB_JOBS_BATCH rows per
 * statement (each its own transaction), so that a large backlog never
 * holds long locks or a long transaction. Jobs retried or otherwise
 * changed meanwhile are kept. *deleted receives the number of rows
 * deleted, also on a failure partway. Safe to run from several processes
 * at once. Returns 0, or KJB_EPG when the database failed. */
int kjb_jobs_prune(kjb_store *s, int64_t older_than_us, int64_t *deleted, kjb_err *err);

/* One statement of kjb_jobs_prune: deletes at most KJB_JOBS_BATCH of those
 * jobs, for a caller that has other work between batches. *deleted
 * receives how many; 0 says that none is left. Returns 0, or KJB_EPG. */
int kjb_jobs_prune_batch(kjb_store *s, int64_t older_than_us, int64_t *deleted, kjb_err *err);

/* Held ordering keys: keys whose first unfinished job in source order
 * waits for a retry (retryable, or scheduled after a failed attempt) or,
 * for kinds whose handler's on_discard is hold (from cfg), is discarded;
 * the key's later jobs wait behind it. A new reference:
 * {"count": n, "oldest": {"kind", "key", "job", "state", "since"} or
 * null, "kinds": {kind: n}}; "since" is when the job failed (RFC 3339).
 * NULL with err. It visits every key with unfinished jobs (one index
 * probe each): for the stats thread and the CLI, not for a request path. */
json_t *kjb_jobs_held_keys(kjb_store *s, const kjb_config *cfg, kjb_err *err);

/* Writes "held keys: N (oldest since T, kind K key X)" to out when any
 * key is held; nothing otherwise. */
void kjb_jobs_held_print(const json_t *held, FILE *out);

/* Sets kjb_held_keys{kind} for every kind cfg names (0 when none). */
void kjb_jobs_held_gauges(const kjb_config *cfg, const json_t *held);

#endif
