/* The job queue's SQL (see queue.h). Every statement is parameterised and
 * names tables unqualified: the store's search_path is the kjb schema. */
#include "queue.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define RUNNABLE "state IN ('available', 'scheduled', 'retryable')"

/* What a claim returns of each job, in kjb_claimed's order. */
#define CLAIMED_COLUMNS                                                      \
  "j.id, j.args::text, j.attempt, j.max_attempts, "                          \
  "(extract(epoch FROM j.created_at) * 1000000)::bigint AS created_us, "     \
  "(extract(epoch FROM j.scheduled_at) * 1000000)::bigint AS scheduled_us, " \
  "(extract(epoch FROM j.attempted_at) * 1000000)::bigint AS claimed_us, "   \
  "j.meta->>'traceparent', j.meta->>'tracestate', "                          \
  "j.source_topic, j.source_partition, j.source_offset, j.ordering_key"
/* How many: the bucket's tokens come after them. */
#define CLAIMED_NCOLUMNS 13

/* The statements are laid out by hand, a clause to a line; clang-format
 * would break the macro calls inside them mid-string. */
/* clang-format off */

/* Neither kind $1 nor the job's queue is paused (kjb.pauses: both
 * subqueries run once per statement). NOT IN over a subquery becomes a
 * hashed subplan that the planner costs right; `queue <> ALL (ARRAY(...))`
 * made it expect one row and sort every runnable job of the kind by
 * priority on each claim (220 ms at 200,000 jobs, against 1.5 ms). */
#define NOT_PAUSED(queue)                                                  \
  "NOT EXISTS (SELECT 1 FROM pauses WHERE kind = $1)"                      \
  " AND " queue " NOT IN (SELECT queue FROM pauses WHERE queue IS NOT NULL)"

/* Runnable jobs of kind $1 without an ordering key, through
 * jobs_kind_claim_idx (which holds no keyed job): the claim of unordered
 * work is what it was before ordering keys, plus one IS NULL. */
#define PICK_FREE(limit)                                                              \
  "free AS (SELECT id, priority, scheduled_at FROM jobs"                              \
  " WHERE kind = $1 AND " RUNNABLE " AND ordering_key IS NULL AND scheduled_at <= now()" \
  " AND " NOT_PAUSED("queue")                                                         \
  " ORDER BY priority, scheduled_at, id LIMIT " limit " FOR UPDATE SKIP LOCKED), "

/* Ordered execution. The head of a key is its first unfinished job of
 * kind $1 in source order (source_partition, source_offset, then id;
 * jobs without coordinates last), a discarded job counting as unfinished
 * only when $4 (the handler's on_discard is hold). Only a head may start,
 * and only while no job of its key runs.
 *
 * `heads` walks jobs_ordering_idx one key at a time (a recursive skip
 * scan, from the key after $5, or the first when $5 is NULL; keys
 * compare bytewise, COLLATE "C", as the index does): each step
 * is one index probe that lands on the next key's head, so a claim costs
 * a probe per key it visits and never one per job waiting behind a head.
 * The walk is lazy: it stops once the LIMIT has its rows. $5 lets each
 * executor go round the keys instead of always serving the first ones.
 *
 * Why two executors never run two jobs of one key at once, and a later
 * job never starts before an earlier unfinished one (READ COMMITTED, one
 * snapshot per statement, FOR UPDATE SKIP LOCKED):
 * - In one statement's snapshot each key has one head, so a statement
 *   claims at most one job per key.
 * - A job J behind the head H is never picked: J is not a head in any
 *   snapshot in which H is unfinished. J becomes the head only in
 *   snapshots in which H's final state has committed, and H turns final
 *   only after its handler returned (kjb_queue_finish) or by an operator.
 * - Two statements picking the same head: one locks it, the other skips
 *   it (SKIP LOCKED) or, if the first committed already, locks the new
 *   version, whose recheck (state runnable, on j itself) fails. Neither
 *   goes on to the next job of that key: the walk took one row per key.
 * - A running job stays in jobs_ordering_idx and is the head, so a key
 *   is busy while it runs. Rescue (node died), reconcile and release at
 *   shutdown put running jobs back to retryable or available: still
 *   unfinished, still the head, still blocking the later jobs; so does a
 *   job waiting for its retry (retryable, scheduled_at in the future).
 * - The running check catches the one case where the head is not the
 *   running job: an operator retried an earlier discarded or cancelled
 *   job while a later one ran.
 * What ordering cannot promise: a job that arrives with earlier
 * coordinates after later ones started (a replayed dead letter) runs
 * after them; cancelling a running job releases its key while the
 * handler, which kjb does not interrupt, may still be running. */
#define HEADS                                                                                  \
  "heads AS ("                                                                                 \
  " (SELECT ordering_key AS k, id, state, scheduled_at, queue FROM jobs"                       \
  "  WHERE kind = $1 AND ordering_key IS NOT NULL AND state NOT IN ('completed', 'cancelled')" \
  "  AND ($4::bool OR state <> 'discarded')"                                                   \
  "  AND ($5::text IS NULL OR ordering_key COLLATE \"C\" > $5::text)"                          \
  "  ORDER BY ordering_key COLLATE \"C\", source_partition, source_offset, id LIMIT 1)"        \
  " UNION ALL"                                                                                 \
  " SELECT n.* FROM heads h, LATERAL (SELECT ordering_key, id, state, scheduled_at, queue"     \
  "  FROM jobs WHERE kind = $1 AND ordering_key COLLATE \"C\" > h.k"                           \
  "  AND state NOT IN ('completed', 'cancelled') AND ($4::bool OR state <> 'discarded')"       \
  "  ORDER BY ordering_key COLLATE \"C\", source_partition, source_offset, id LIMIT 1) n), "

/* The heads that may start: runnable and due (rechecked on the locked
 * row), not paused, and no job of their key running. The last is a
 * scalar subquery, not NOT EXISTS, so that it stays a probe of
 * jobs_ordering_running_idx by kind and key for each head: as an anti
 * join the planner read every running job of the kind for each head. */
#define PICK_KEYED(limit)                                                                     \
  "keyed AS (SELECT j.id, j.priority, j.scheduled_at FROM heads h JOIN jobs j ON j.id = h.id" \
  " WHERE h.state IN ('available', 'scheduled', 'retryable') AND h.scheduled_at <= now()"     \
  " AND j." RUNNABLE " AND j.scheduled_at <= now() AND " NOT_PAUSED("j.queue")                \
  " AND (SELECT true FROM jobs r"                                                             \
  "   WHERE r.kind = $1 AND r.ordering_key = h.k AND r.state = 'running' LIMIT 1) IS NULL"    \
  " LIMIT " limit " FOR UPDATE OF j SKIP LOCKED), "

/* Both pickers lock up to the limit; the best of either by priority and
 * scheduled time are taken, the others unlocked at the end of the
 * statement. */
#define PICK(limit)                                                              \
  PICK_FREE(limit) HEADS PICK_KEYED(limit)                                       \
  "c AS (SELECT id FROM (SELECT * FROM free UNION ALL SELECT * FROM keyed) p"    \
  " ORDER BY priority, scheduled_at, id LIMIT " limit ") "

/* attempted_at is the time of the claim itself, not of its statement's
 * start (now()): the statement's snapshot is taken after it is planned,
 * so with now() a job could be stamped before the finish of the job of
 * its key that it waited for, although it saw that finish committed. */
#define TAKE                                                                      \
  "UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, "                \
  "attempted_at = clock_timestamp(), attempted_by = $2 FROM c WHERE j.id = c.id "

static const char CLAIM_SQL[] =
    "WITH RECURSIVE " PICK("$3") TAKE "RETURNING " CLAIMED_COLUMNS;

/* The same, spending the kind's shared tokens in the same statement: the
 * bucket row is locked, refilled by the time since it was last touched,
 * bounds the claim, and is charged for what was claimed. */
#define BUCKET_LIMIT "LEAST($3::int, COALESCE((SELECT floor(avail)::int FROM b), 0))"
static const char CLAIM_BUCKET_SQL[] =
    "WITH RECURSIVE b AS ("
    "  SELECT kind, clock_timestamp() AS at,"
    "         LEAST($6::float8, tokens + GREATEST(0, extract(epoch FROM clock_timestamp() - updated_at))"
    "                                    * $7::float8) AS avail"
    "  FROM rate_limits WHERE kind = $1 FOR UPDATE), "
    PICK(BUCKET_LIMIT)
    ", claimed AS (" TAKE "RETURNING " CLAIMED_COLUMNS "),"
    " spent AS (UPDATE rate_limits r SET tokens = b.avail - (SELECT count(*) FROM claimed),"
    "           updated_at = b.at FROM b WHERE r.kind = b.kind RETURNING r.tokens)"
    " SELECT claimed.*, spent.tokens FROM spent LEFT JOIN claimed ON true";
/* clang-format on */

static int64_t get_i64(const PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static int run(kjb_store *s, const char *what, const char *sql, int nparams,
               const char *const *params, kjb_err *err) {
  PGresult *res = kjb_store_query(s, what, sql, nparams, params, err);
  if (!res)
    return -err->code;
  PQclear(res);
  return 0;
}

int kjb_queue_heartbeat(kjb_store *s, const char *name, const char *host, int pid,
                        const char *roles, const char *version, kjb_err *err) {
  char pidbuf[16];
  snprintf(pidbuf, sizeof pidbuf, "%d", pid);
  const char *params[] = {name, host, pidbuf, roles, version};
  return run(s, "could not record the node's heartbeat",
             "INSERT INTO nodes (name, host, pid, roles, version) VALUES ($1, $2, $3, $4, $5) "
             "ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()",
             5, params, err);
}

int kjb_queue_leave(kjb_store *s, const char *name, kjb_err *err) {
  const char *params[] = {name};
  return run(s, "could not remove the node", "DELETE FROM nodes WHERE name = $1", 1, params, err);
}

void kjb_queue_claimed_close(kjb_claimed *c) {
  free(c->args);
  free(c->traceparent);
  free(c->tracestate);
  free(c->source_topic);
  free(c->ordering_key);
  c->args = c->traceparent = c->tracestate = c->source_topic = c->ordering_key = NULL;
}

int kjb_queue_bucket_ensure(kjb_store *s, const char *kind, int burst, kjb_err *err) {
  char b[16];
  snprintf(b, sizeof b, "%d", burst);
  const char *params[] = {kind, b};
  return run(s, "could not create the rate-limit bucket",
             "INSERT INTO rate_limits (kind, tokens) VALUES ($1, $2) ON CONFLICT (kind) DO NOTHING",
             2, params, err);
}

int kjb_queue_claim(kjb_store *s, const char *kind, const char *node, int max,
                    const kjb_queue_order *order, const kjb_queue_bucket *bucket, kjb_claimed *out,
                    int *n, double *tokens_left, kjb_err *err) {
  char maxbuf[16], burst[16], rate[32];
  snprintf(maxbuf, sizeof maxbuf, "%d", max);
  const char *params[7] = {kind,  node, maxbuf, order->hold ? "true" : "false", order->after_key,
                           burst, rate};
  *n = 0;
  PGresult *res;
  if (bucket) {
    snprintf(burst, sizeof burst, "%d", bucket->burst);
    snprintf(rate, sizeof rate, "%.17g", bucket->rate);
    res = kjb_store_query_prepared(s, "could not claim jobs", CLAIM_BUCKET_SQL, 7, params, err);
  } else {
    res = kjb_store_query_prepared(s, "could not claim jobs", CLAIM_SQL, 5, params, err);
  }
  if (!res)
    return -err->code;
  int rows = PQntuples(res);
  if (tokens_left)
    *tokens_left = bucket && rows > 0 ? strtod(PQgetvalue(res, 0, CLAIMED_NCOLUMNS), NULL) : 0;
  for (int i = 0; i < rows; i++) {
    /* With a bucket, an empty claim is one row of NULL job columns. */
    if (PQgetisnull(res, i, 0))
      continue;
    kjb_claimed *c = &out[*n];
    c->id = get_i64(res, i, 0);
    c->args = kjb_xstrdup(PQgetvalue(res, i, 1));
    c->attempt = (int)get_i64(res, i, 2);
    c->max_attempts = (int)get_i64(res, i, 3);
    c->created_us = get_i64(res, i, 4);
    c->scheduled_us = get_i64(res, i, 5);
    c->claimed_us = get_i64(res, i, 6);
    c->traceparent = PQgetisnull(res, i, 7) ? NULL : kjb_xstrdup(PQgetvalue(res, i, 7));
    c->tracestate = PQgetisnull(res, i, 8) ? NULL : kjb_xstrdup(PQgetvalue(res, i, 8));
    c->source_topic = PQgetisnull(res, i, 9) ? NULL : kjb_xstrdup(PQgetvalue(res, i, 9));
    c->source_partition = (int32_t)get_i64(res, i, 10);
    c->source_offset = get_i64(res, i, 11);
    c->ordering_key = PQgetisnull(res, i, 12) ? NULL : kjb_xstrdup(PQgetvalue(res, i, 12));
    (*n)++;
  }
  PQclear(res);
  return 0;
}

static const char *const FINISH_STATE[] = {
    [KJB_FINISH_COMPLETED] = "completed",
    [KJB_FINISH_RETRY] = "retryable",
    [KJB_FINISH_DISCARD] = "discarded",
};

static const char FINISH_SQL[] =
    "UPDATE jobs j SET state = u.state::job_state,"
    " finished_at = CASE WHEN u.state = 'retryable' THEN NULL ELSE now() END,"
    " scheduled_at = CASE WHEN u.state = 'retryable'"
    "   THEN now() + u.retry_in * interval '1 microsecond' ELSE j.scheduled_at END,"
    " errors = CASE WHEN u.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array("
    "   jsonb_build_object('attempt', j.attempt, 'at', now(), 'error', u.error,"
    "                      'transient', u.transient)) END"
    " FROM jsonb_to_recordset($1::jsonb)"
    "   AS u(id bigint, state text, retry_in bigint, error text, transient boolean)"
    " WHERE j.id = u.id AND j.state = 'running' AND j.attempted_by = $2";

static const char FINISH_WHAT[] = "could not record job outcomes";

int kjb_queue_finish_send(kjb_store *s, const char *node, const kjb_finish *f, size_t n,
                          kjb_err *err) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_buf_putc(&b, '[');
  for (size_t i = 0; i < n; i++) {
    kjb_buf_printf(
        &b, "%s{\"id\":%" PRId64 ",\"state\":\"%s\",\"retry_in\":%" PRId64 ",\"transient\":%s",
        i ? "," : "", f[i].id, FINISH_STATE[f[i].kind], f[i].retry_in_us,
        f[i].transient ? "true" : "false");
    if (f[i].error) {
      kjb_buf_puts(&b, ",\"error\":");
      kjb_buf_json_str(&b, f[i].error, strlen(f[i].error));
    }
    kjb_buf_putc(&b, '}');
  }
  kjb_buf_putc(&b, ']');
  const char *params[] = {b.data, node};
  int rc = kjb_store_send_prepared(s, FINISH_WHAT, FINISH_SQL, 2, params, err);
  kjb_buf_close(&b);
  return rc;
}

int kjb_queue_finish_result(kjb_store *s, size_t *applied, kjb_err *err) {
  PGresult *res = kjb_store_result(s, FINISH_WHAT, err);
  if (!res)
    return -err->code;
  *applied = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
  PQclear(res);
  return 0;
}

/* Gives running jobs back: to retryable, due now, or to discarded when
 * that was their last attempt, with a transient error entry whose text is
 * the format() expression `why`. `which` selects the rows, among those
 * running. The statement returns how many it changed. */
#define GIVE_BACK(why, which)                                                                          \
  "WITH gone AS ("                                                                                     \
  "  UPDATE jobs j SET"                                                                                \
  "   state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded' ELSE 'retryable' END::job_state," \
  "   finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,"                             \
  "   scheduled_at = now(),"                                                                           \
  "   errors = j.errors || jsonb_build_array(jsonb_build_object('attempt', j.attempt, 'at', now(),"    \
  "     'error', " why ", 'transient', true))"                                                         \
  "  WHERE j.state = 'running' AND " which " RETURNING 1)"                                             \
  " SELECT count(*) FROM gone"

int kjb_queue_rescue(kjb_store *s, int64_t lease_us, int64_t *rescued, kjb_err *err) {
  char lease[24];
  snprintf(lease, sizeof lease, "%" PRId64, lease_us);
  const char *params[] = {lease};
  *rescued = 0;
  PGresult *res = kjb_store_query(
      s, "could not rescue jobs",
      GIVE_BACK("format('node %s stopped heartbeating while the job ran', j.attempted_by)",
                "NOT EXISTS (SELECT 1 FROM nodes n WHERE n.name = j.attempted_by"
                "  AND n.heartbeat_at > now() - $1::bigint * interval '1 microsecond')"),
      1, params, err);
  if (!res)
    return -err->code;
  *rescued = get_i64(res, 0, 0);
  PQclear(res);
  /* Nodes silent for a day are history; their jobs were rescued long ago. */
  return run(s, "could not forget old nodes",
             "DELETE FROM nodes WHERE heartbeat_at < now() - interval '1 day'", 0, NULL, err);
}

/* "{1,2,3}": ids as a PostgreSQL array literal, into b. */
static void id_array(kjb_buf *b, const int64_t *ids, size_t n) {
  kjb_buf_putc(b, '{');
  for (size_t i = 0; i < n; i++)
    kjb_buf_printf(b, "%s%" PRId64, i ? "," : "", ids[i]);
  kjb_buf_putc(b, '}');
}

int kjb_queue_reconcile(kjb_store *s, const char *node, const int64_t *held, size_t n,
                        int64_t *returned, kjb_err *err) {
  *returned = 0;
  kjb_buf b;
  kjb_buf_init(&b);
  id_array(&b, held, n);
  const char *params[] = {node, b.data};
  PGresult *res = kjb_store_query(
      s, "could not reconcile running jobs",
      GIVE_BACK("format('node %s no longer held the job: its claim or its outcome was lost "
                "with the database connection', j.attempted_by)",
                "j.attempted_by = $1 AND NOT (j.id = ANY($2::bigint[]))"),
      2, params, err);
  kjb_buf_close(&b);
  if (!res)
    return -err->code;
  *returned = get_i64(res, 0, 0);
  PQclear(res);
  return 0;
}

int kjb_queue_release(kjb_store *s, const char *node, const int64_t *ids, size_t n,
                      int64_t *released, kjb_err *err) {
  *released = 0;
  kjb_buf b;
  kjb_buf_init(&b);
  if (ids)
    id_array(&b, ids, n);
  const char *params[] = {node, ids ? b.data : NULL};
  PGresult *res = kjb_store_query(
      s, "could not release jobs",
      "UPDATE jobs SET state = 'available', attempt = attempt - 1, scheduled_at = now()"
      " WHERE state = 'running' AND attempted_by = $1"
      " AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))",
      2, params, err);
  kjb_buf_close(&b);
  if (!res)
    return -err->code;
  *released = strtoll(PQcmdTuples(res), NULL, 10);
  PQclear(res);
  return 0;
}
