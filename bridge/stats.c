/* The stats thread and the dead-letter ring (see stats.h). */
#include "stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "dlqindex.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "pause.h"
#include "store.h"
#include "util.h"

static const char *const STATES[] = {"available", "scheduled", "running",  "retryable",
                                     "completed", "discarded", "cancelled"};
#define NSTATES (sizeof STATES / sizeof STATES[0])

struct kjb_stats {
  const kjb_config *cfg;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int quit;     /* under mu */
  json_t *jobs; /* under mu */
  json_t *counted_at;
  json_t *nodes;
  json_t *paused; /* kjb_pause_list */
  json_t *held;   /* kjb_jobs_held_keys */
};

/* ---- the background thread ---------------------------------------------- */

static void set_gauge(const char *kind, const char *state, double n) {
  kjb_gauge_set("kjb_jobs",
                "Jobs by kind and state in the whole jobs table, counted every few seconds "
                "(less often where a count is a long scan).",
                n, "kind", kind, "state", state, NULL);
}

/* When a count that took `took` microseconds, started at `start`, is due
 * again: a count that takes long (a scan of a million rows takes a third
 * of a second) runs that much less often, so that it never costs more than
 * 2 % of the time. */
static int64_t due_after(int64_t start, int64_t took) {
  return start + (took * 50 > KJB_STATS_EVERY_US ? took * 50 : KJB_STATS_EVERY_US) - 100000;
}

/* Appends res's rows (kind, state, count) to arr as objects. */
static void append_counts(json_t *arr, const PGresult *res) {
  for (int i = 0; i < PQntuples(res); i++)
    json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "kind", PQgetvalue(res, i, 0), "state",
                                         PQgetvalue(res, i, 1), "count",
                                         (json_int_t)strtoll(PQgetvalue(res, i, 2), NULL, 10)));
}

/* Runs sql, a count by kind and state, into *counts when *due_us has come
 * or *counts is NULL, and sets when it is due again (due_after). Returns
 * 0, or -KJB_EPG with err. */
static int recount(kjb_store *db, const char *sql, json_t **counts, int64_t *due_us, kjb_err *err) {
  int64_t start = kjb_now_mono_us();
  if (*counts && start < *due_us)
    return 0;
  PGresult *res = kjb_store_query(db, "count jobs", sql, 0, NULL, err);
  if (!res)
    return -KJB_EPG;
  json_decref(*counts);
  *counts = json_array();
  append_counts(*counts, res);
  PQclear(res);
  *due_us = due_after(start, kjb_now_mono_us() - start);
  return 0;
}

/* The last counts of jobs by kind and state, each half refreshed on its
 * own schedule (recount). Jobs that can still run are few and indexed
 * (jobs_claim_idx and jobs_running_idx hold them all): counted every tick
 * unless a backlog makes that a scan. Finished jobs are most of a busy
 * table, tens of millions of rows in a scan: counted that much less
 * often. */
typedef struct {
  json_t *live, *finished;
  int64_t live_due_us, finished_due_us;
} job_counts;

/* Refreshes c when due; returns all its counts, or NULL with err. */
static json_t *count_jobs(kjb_stats *st, kjb_store *db, job_counts *c, kjb_err *err) {
  if (recount(db,
              "SELECT kind, state::text, count(*) FROM jobs"
              " WHERE state IN ('completed', 'discarded', 'cancelled') GROUP BY 1, 2",
              &c->finished, &c->finished_due_us, err) < 0 ||
      recount(db,
              "SELECT kind, state::text, count(*) FROM jobs"
              " WHERE state IN ('available', 'scheduled', 'retryable') GROUP BY 1, 2"
              " UNION ALL SELECT kind, state::text, count(*) FROM jobs WHERE state = 'running'"
              " GROUP BY 1, 2",
              &c->live, &c->live_due_us, err) < 0)
    return NULL;
  json_t *arr = json_deep_copy(c->live);
  json_array_extend(arr, c->finished);

  kjb_metric_clear("kjb_jobs");
  /* Zeros first, so that every configured kind has all its series. */
  const char *kinds[64];
  size_t nk = kjb_config_kinds(st->cfg, kinds, 64);
  for (size_t i = 0; i < nk && i < 64; i++)
    for (size_t j = 0; j < NSTATES; j++)
      set_gauge(kinds[i], STATES[j], 0);
  json_t *row;
  size_t i;
  json_array_foreach(arr, i, row) {
    set_gauge(json_string_value(json_object_get(row, "kind")),
              json_string_value(json_object_get(row, "state")),
              (double)json_integer_value(json_object_get(row, "count")));
  }
  return arr;
}

static json_t *read_nodes(kjb_stats *st, kjb_store *db, kjb_err *err) {
  char lease[32];
  snprintf(lease, sizeof lease, "%lld", (long long)(st->cfg->executor.lease_us / 1000));
  const char *params[] = {lease};
  PGresult *res = kjb_store_query(db, "read nodes",
                                  "SELECT name, host, pid, roles, version,"
                                  " (extract(epoch FROM started_at) * 1000000)::bigint,"
                                  " (extract(epoch FROM heartbeat_at) * 1000000)::bigint,"
                                  " heartbeat_at > now() - $1::bigint * interval '1 millisecond'"
                                  " FROM nodes ORDER BY name",
                                  1, params, err);
  if (!res)
    return NULL;
  json_t *arr = json_array();
  for (int i = 0; i < PQntuples(res); i++)
    json_array_append_new(
        arr, json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:b}", "name", PQgetvalue(res, i, 0),
                       "host", PQgetvalue(res, i, 1), "pid", atoi(PQgetvalue(res, i, 2)), "roles",
                       PQgetvalue(res, i, 3), "version", PQgetvalue(res, i, 4), "started_at",
                       kjb_json_rfc3339(strtoll(PQgetvalue(res, i, 5), NULL, 10)), "heartbeat_at",
                       kjb_json_rfc3339(strtoll(PQgetvalue(res, i, 6), NULL, 10)), "alive",
                       PQgetvalue(res, i, 7)[0] == 't'));
  PQclear(res);
  return arr;
}

/* Counts the dead-letter index for its gauges when due (due_after).
 * Returns 0, or -KJB_EPG. */
static int count_dead_letters(kjb_store *db, int64_t *due_us, kjb_err *err) {
  int64_t start = kjb_now_mono_us();
  if (start < *due_us)
    return 0;
  int rc = kjb_dlqindex_gauges(db, err);
  *due_us = due_after(start, kjb_now_mono_us() - start);
  return rc;
}

static void *stats_main(void *arg) {
  kjb_stats *st = arg;
  kjb_store *db = NULL;
  int warned = 0;
  int64_t dlq_due_us = 0;
  job_counts counts = {0};
  pthread_mutex_lock(&st->mu);
  while (!st->quit) {
    pthread_mutex_unlock(&st->mu);
    kjb_err err;
    json_t *jobs = NULL, *nodes = NULL, *paused = NULL, *held = NULL;
    if (!db)
      db = kjb_store_connect(st->cfg->postgres.conninfo, st->cfg->postgres.schema, &err);
    if (db && (jobs = count_jobs(st, db, &counts, &err)) && (nodes = read_nodes(st, db, &err)) &&
        (paused = kjb_pause_list(db, &err)) && (held = kjb_jobs_held_keys(db, st->cfg, &err)) &&
        count_dead_letters(db, &dlq_due_us, &err) == 0) {
      kjb_pause_gauges(st->cfg, paused);
      kjb_jobs_held_gauges(st->cfg, held);
      warned = 0;
    } else {
      /* Down or not migrated: keep the last figures, say so once. */
      if (!warned)
        kjb_warn("stats: %s", err.msg);
      warned = 1;
      kjb_store_free(db);
      db = NULL;
    }
    pthread_mutex_lock(&st->mu);
    if (jobs && nodes && paused && held) {
      json_decref(st->jobs);
      json_decref(st->nodes);
      json_decref(st->paused);
      json_decref(st->held);
      json_decref(st->counted_at);
      st->jobs = jobs;
      st->nodes = nodes;
      st->paused = paused;
      st->held = held;
      st->counted_at = kjb_json_rfc3339(kjb_now_wall_us());
      jobs = nodes = paused = held = NULL;
    }
    json_decref(jobs);
    json_decref(nodes);
    json_decref(paused);
    json_decref(held);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += KJB_STATS_EVERY_US / 1000000;
    if (!st->quit)
      pthread_cond_timedwait(&st->cv, &st->mu, &until);
  }
  pthread_mutex_unlock(&st->mu);
  json_decref(counts.live);
  json_decref(counts.finished);
  kjb_store_free(db);
  return NULL;
}

kjb_stats *kjb_stats_new(const kjb_config *cfg, kjb_err *err) {
  kjb_stats *st = kjb_xcalloc(1, sizeof *st);
  st->cfg = cfg;
  pthread_mutex_init(&st->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&st->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&st->thread, NULL, stats_main, st) != 0) {
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st);
    kjb_err_set(err, KJB_EINTERNAL, "could not start the stats thread");
    return NULL;
  }
  return st;
}

void kjb_stats_free(kjb_stats *st) {
  if (!st)
    return;
  pthread_mutex_lock(&st->mu);
  st->quit = 1;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
  pthread_join(st->thread, NULL);
  json_decref(st->jobs);
  json_decref(st->nodes);
  json_decref(st->paused);
  json_decref(st->held);
  json_decref(st->counted_at);
  pthread_cond_destroy(&st->cv);
  pthread_mutex_destroy(&st->mu);
  free(st);
}

json_t *kjb_stats_jobs(kjb_stats *st, json_t **counted_at) {
  pthread_mutex_lock(&st->mu);
  json_t *jobs = st->jobs ? json_deep_copy(st->jobs) : json_array();
  *counted_at = st->counted_at ? json_incref(st->counted_at) : json_null();
  pthread_mutex_unlock(&st->mu);
  return jobs;
}

json_t *kjb_stats_nodes(kjb_stats *st) {
  pthread_mutex_lock(&st->mu);
  json_t *nodes = st->nodes ? json_deep_copy(st->nodes) : json_array();
  pthread_mutex_unlock(&st->mu);
  return nodes;
}

json_t *kjb_stats_paused(kjb_stats *st) {
  pthread_mutex_lock(&st->mu);
  json_t *paused = st->paused ? json_deep_copy(st->paused) : json_array();
  pthread_mutex_unlock(&st->mu);
  return paused;
}

json_t *kjb_stats_held_keys(kjb_stats *st) {
  pthread_mutex_lock(&st->mu);
  json_t *held =
      st->held ? json_deep_copy(st->held) : json_pack("{s:i, s:n}", "count", 0, "oldest");
  pthread_mutex_unlock(&st->mu);
  json_object_del(held, "kinds"); /* the gauges show them */
  return held;
}

/* ---- recent dead letters ------------------------------------------------ */

static pthread_mutex_t ring_mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *ring[KJB_STATS_DEAD_LETTERS];
static uint64_t ring_total; /* every dead letter; ring[(total - 1) % N] is the newest */

void kjb_stats_dead_letter(const char *topic, int partition, int64_t offset, const char *dlq_topic,
                           const char *reason, const char *stage, const char *message) {
  /* Messages may quote record bytes: keep the valid UTF-8 prefix. */
  long bad = kjb_utf8_invalid_at(message, strlen(message));
  json_t *d =
      json_pack("{s:o, s:s, s:i, s:I, s:s, s:s, s:s, s:s%}", "at",
                kjb_json_rfc3339(kjb_now_wall_us()), "topic", topic, "partition", partition,
                "offset", (json_int_t)offset, "dlq_topic", dlq_topic, "reason", reason, "stage",
                stage, "message", message, bad < 0 ? strlen(message) : (size_t)bad);
  if (!d)
    return;
  pthread_mutex_lock(&ring_mu);
  size_t i = ring_total++ % KJB_STATS_DEAD_LETTERS;
  json_decref(ring[i]);
  ring[i] = d;
  pthread_mutex_unlock(&ring_mu);
}

void kjb_stats_dead_letters_skip(uint64_t n) {
  pthread_mutex_lock(&ring_mu);
  ring_total += n;
  pthread_mutex_unlock(&ring_mu);
}

json_t *kjb_stats_dead_letters(int limit) {
  json_t *arr = json_array();
  pthread_mutex_lock(&ring_mu);
  uint64_t total = ring_total;
  for (uint64_t k = 0; k < (uint64_t)limit && k < total && k < KJB_STATS_DEAD_LETTERS; k++)
    json_array_append(arr, ring[(total - 1 - k) % KJB_STATS_DEAD_LETTERS]);
  pthread_mutex_unlock(&ring_mu);
  return json_pack("{s:o, s:I}", "dead_letters", arr, "total", (json_int_t)total);
}

void kjb_stats_dead_letters_reset(void) {
  pthread_mutex_lock(&ring_mu);
  for (size_t i = 0; i < KJB_STATS_DEAD_LETTERS; i++) {
    json_decref(ring[i]);
    ring[i] = NULL;
  }
  ring_total = 0;
  pthread_mutex_unlock(&ring_mu);
}
