/* The scheduler (see schedule.h). One thread checks each schedule when
 * its next tick is due (and at least every MAX_SLEEP), on a connection of
 * its own; the cron arithmetic is cron.c's, on wall-clock times that
 * PostgreSQL converts. */
#include "schedule.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cron.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "util.h"

#define SEC_US 1000000LL
/* The longest sleep between checks: clock steps and time zone rule
 * changes are noticed this late at most. */
#define MAX_SLEEP_US (30 * SEC_US)
/* In the test-only seconds granularity, ticks are seconds apart. */
#define MAX_SLEEP_SECONDS_US (SEC_US / 2)
#define RECONNECT_MAX_US (30 * SEC_US)
/* How far back a tick whose instant lies after now (the first pass of a
 * repeated hour) makes the check look for an earlier one. */
#define MAX_STEPS_BACK 4

static const char TICKS_HELP[] = "Jobs this process inserted for the ticks of a schedule.";
static const char LAST_TICK_HELP[] =
    "Instant (Unix seconds) of the latest tick of a schedule whose job is inserted.";

typedef struct {
  const kjb_schedule_cfg *cfg;
  kjb_cron cron;
  bool settled;       /* settled_at is set */
  int64_t settled_at; /* the latest tick (Unix s) found done: inserted, found inserted, skipped */
  /* The previous successful check (Unix us), or -1: not watching, after
   * a start or a database error. A tick after it came while watching. */
  int64_t watched_us;
  int64_t due_us; /* next check, monotonic */
} sched;

struct kjb_scheduler {
  const kjb_config *cfg;
  char node[160];
  unsigned flags;
  sched *s;
  size_t n;
  kjb_store *db;
  int64_t reconnect_at, reconnect_wait;

  pthread_t thread;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* on the monotonic clock */
  bool quit;
};

kjb_scheduler *kjb_scheduler_new(const kjb_config *cfg, const char *node) {
  if (cfg->nschedules == 0)
    return NULL;
  kjb_scheduler *sch = kjb_xcalloc(1, sizeof *sch);
  sch->cfg = cfg;
  snprintf(sch->node, sizeof sch->node, "%s", node);
  const char *seconds = getenv("KJB_SCHEDULE_SECONDS");
  if (seconds && strcmp(seconds, "1") == 0) {
    sch->flags = KJB_CRON_SECONDS;
    kjb_warn("schedules: KJB_SCHEDULE_SECONDS=1: the cron's first field counts seconds (for "
             "tests only)");
  }
  sch->n = cfg->nschedules;
  sch->s = kjb_xcalloc(sch->n, sizeof *sch->s);
  for (size_t i = 0; i < sch->n; i++) {
    sched *s = &sch->s[i];
    s->cfg = &cfg->schedules[i];
    s->watched_us = -1;
    kjb_err err;
    /* Loading the configuration checked it. */
    int rc = kjb_cron_parse(s->cfg->cron, sch->flags, &s->cron, &err);
    assert(rc == 0);
    (void)rc;
    kjb_counter_add("kjb_schedule_ticks_total", TICKS_HELP, 0, "schedule", s->cfg->name, NULL);
  }
  pthread_mutex_init(&sch->mu, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&sch->cv, &attr);
  pthread_condattr_destroy(&attr);
  return sch;
}

/* ---- time zones -------------------------------------------------------- */

/* Every schedule's zone must be one of pg_timezone_names, which holds the
 * full names ("Europe/Paris"), not abbreviations nor POSIX strings. */
static int check_zones(kjb_scheduler *sch, kjb_err *err) {
  kjb_buf arr;
  kjb_buf_init(&arr);
  kjb_buf_putc(&arr, '{');
  for (size_t i = 0; i < sch->n; i++)
    /* Zone names hold no quote nor backslash (config.c). */
    kjb_buf_printf(&arr, "%s\"%s\"", i ? "," : "", sch->s[i].cfg->timezone);
  kjb_buf_putc(&arr, '}');
  const char *params[1] = {arr.data};
  PGresult *r = kjb_store_query(sch->db, "could not check the schedules' time zones",
                                "SELECT z FROM unnest($1::text[]) AS z WHERE NOT EXISTS "
                                "(SELECT 1 FROM pg_timezone_names WHERE name = z) LIMIT 1",
                                1, params, err);
  kjb_buf_close(&arr);
  if (!r)
    return -KJB_EPG;
  int rc = 0;
  if (PQntuples(r) > 0) {
    const kjb_schedule_cfg *sc = NULL;
    size_t i = 0;
    for (; i < sch->n && !sc; i++)
      if (strcmp(sch->s[i].cfg->timezone, PQgetvalue(r, 0, 0)) == 0)
        sc = sch->s[i].cfg;
    assert(sc);
    rc = kjb_err_set(err, KJB_ECONFIG,
                     "%s:%d: schedules[%zu].timezone: unknown time zone \"%s\" (PostgreSQL's "
                     "pg_timezone_names has no such name)",
                     sch->cfg->path, sc->line, i - 1, sc->timezone);
  }
  PQclear(r);
  return rc;
}

/* The schedule's local wall-clock time now (s) and the instant now (Unix
 * us), both by the server's clock, which every instance shares. */
static int local_now(kjb_scheduler *sch, const sched *s, int64_t *wall, int64_t *now_us,
                     kjb_err *err) {
  const char *params[1] = {s->cfg->timezone};
  PGresult *r = kjb_store_query(sch->db, "could not read the time",
                                "SELECT floor(extract(epoch FROM now() AT TIME ZONE $1))::bigint, "
                                "floor(extract(epoch FROM now()) * 1000000)::bigint",
                                1, params, err);
  if (!r)
    return -KJB_EPG;
  *wall = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  *now_us = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  return 0;
}

/* The instants (Unix s) of the wall-clock times a and b in the schedule's
 * zone, as PostgreSQL resolves gaps and repeated hours. */
static int instants(kjb_scheduler *sch, const sched *s, int64_t a, int64_t b, int64_t *ia,
                    int64_t *ib, kjb_err *err) {
  char sa[24], sb[24];
  snprintf(sa, sizeof sa, "%" PRId64, a);
  snprintf(sb, sizeof sb, "%" PRId64, b);
  const char *params[3] = {s->cfg->timezone, sa, sb};
  PGresult *r = kjb_store_query(
      sch->db, "could not convert a tick",
      "SELECT extract(epoch FROM (to_timestamp($2::bigint) AT TIME ZONE 'UTC') AT TIME ZONE $1)"
      "::bigint, extract(epoch FROM (to_timestamp($3::bigint) AT TIME ZONE 'UTC') AT TIME ZONE "
      "$1)::bigint",
      3, params, err);
  if (!r)
    return -KJB_EPG;
  *ia = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  *ib = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  return 0;
}

/* ---- inserting a tick ---------------------------------------------------- */

static void utc_text(int64_t unix_s, char *buf, size_t size) {
  time_t t = (time_t)unix_s;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Moves the schedule's last tick forward to tick and inserts its job, in
 * one statement, unless another instance did first. A schedule's first
 * row records the tick without a job unless it came while watching (a new
 * schedule does not catch up). *id is the job's id, or 0 when none was
 * inserted. */
static int insert_tick(kjb_scheduler *sch, const sched *s, int64_t tick, int64_t wall,
                       bool catch_up, int64_t *id, bool *first, kjb_err *err) {
  const kjb_schedule_cfg *sc = s->cfg;
  char at[32], local[32], tick_s[24], prio[16], attempts[16], key[KJB_CRON_MAX + 320];
  utc_text(tick, at, sizeof at);
  kjb_cron_format(wall, local, sizeof local);
  snprintf(tick_s, sizeof tick_s, "%" PRId64, tick);
  snprintf(prio, sizeof prio, "%d", sc->priority);
  snprintf(attempts, sizeof attempts, "%d", sc->max_attempts);
  snprintf(key, sizeof key, "schedule:%s:%s", sc->name, at);
  json_t *meta =
      json_pack("{s:s, s:s, s:s, s:s, s:b, s:s}", "schedule", sc->name, "tick", at, "local_tick",
                local, "timezone", sc->timezone, "catch_up", catch_up, "inserted_by", sch->node);
  char *meta_s = json_dumps(meta, JSON_COMPACT);
  json_decref(meta);
  if (!meta_s)
    return kjb_err_set(err, KJB_ENOMEM, "could not encode the meta of a scheduled job");
  const char *params[11] = {sc->name, tick_s,   sch->node, sc->kind, sc->queue,           prio,
                            attempts, sc->args, meta_s,    key,      catch_up ? "f" : "t"};
  PGresult *r = kjb_store_query(
      sch->db, "could not insert a scheduled job",
      "WITH claim AS ("
      " INSERT INTO schedules AS s (name, last_tick, inserted_by)"
      " VALUES ($1, to_timestamp($2::bigint), $3)"
      " ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick,"
      " inserted_by = excluded.inserted_by, updated_at = now()"
      " WHERE s.last_tick < excluded.last_tick"
      " RETURNING (xmax = 0) AS created), "
      "job AS ("
      " INSERT INTO jobs (kind, queue, priority, max_attempts, args, meta, unique_key)"
      " SELECT $4, $5, $6::int, $7::int, $8::jsonb, $9::jsonb, $10 FROM claim"
      " WHERE NOT claim.created OR $11::boolean"
      " ON CONFLICT DO NOTHING RETURNING id) "
      "SELECT coalesce((SELECT bool_or(created) FROM claim), false), "
      "coalesce((SELECT id FROM job), 0)",
      11, params, err);
  free(meta_s);
  if (!r)
    return -KJB_EPG;
  *first = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  *id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  return 0;
}

/* See schedule.h. */
kjb_tick_action kjb_schedule_decide(int64_t tick_us, bool settled, int64_t settled_us,
                                    int64_t watched_us, int64_t now_us, int64_t grace_us) {
  assert(tick_us <= now_us);
  if (settled && tick_us <= settled_us)
    return KJB_TICK_DONE;
  if (watched_us >= 0 && tick_us > watched_us)
    return KJB_TICK_INSERT;
  if (grace_us > 0 && now_us - tick_us > grace_us)
    return KJB_TICK_SKIP;
  return KJB_TICK_CATCH_UP;
}

/* Checks one schedule: inserts its latest tick at or before now unless it
 * is done, and sets when to check next. */
static int check(kjb_scheduler *sch, sched *s, kjb_err *err) {
  const kjb_schedule_cfg *sc = s->cfg;
  int64_t wall, now_us, prev, next, tick = 0, next_at = 0;
  int rc = local_now(sch, s, &wall, &now_us, err);
  if (rc)
    return rc;
  bool have = kjb_cron_prev(&s->cron, wall, &prev) == 0;
  if (kjb_cron_next(&s->cron, wall, &next) != 0)
    next = wall + MAX_SLEEP_US / SEC_US;
  if ((rc = instants(sch, s, have ? prev : next, next, &tick, &next_at, err)))
    return rc;
  /* In the first pass of a repeated hour, PostgreSQL puts the tick at
   * its second occurrence, still to come: the tick before it is the
   * latest one due, and the check after next is at that occurrence. */
  if (have && tick * SEC_US > now_us && tick < next_at)
    next_at = tick;
  for (int i = 0; have && tick * SEC_US > now_us; i++) {
    int64_t ignored;
    have = i < MAX_STEPS_BACK && kjb_cron_prev(&s->cron, prev - 1, &prev) == 0;
    if (have && (rc = instants(sch, s, prev, next, &tick, &ignored, err)))
      return rc;
  }
  kjb_tick_action act = have
                            ? kjb_schedule_decide(tick * SEC_US, s->settled, s->settled_at * SEC_US,
                                                  s->watched_us, now_us, sc->misfire_grace_us)
                            : KJB_TICK_DONE;
  if (act != KJB_TICK_DONE) {
    char at[32];
    utc_text(tick, at, sizeof at);
    if (act == KJB_TICK_SKIP) {
      kjb_warn("schedule \"%s\": tick %s missed by %.0f s, more than misfire_grace: skipped",
               sc->name, at, (double)(now_us - tick * SEC_US) / 1e6);
    } else {
      bool catch_up = act == KJB_TICK_CATCH_UP;
      int64_t id;
      bool first;
      if ((rc = insert_tick(sch, s, tick, prev, catch_up, &id, &first, err)))
        return rc;
      if (id > 0) {
        kjb_counter_add("kjb_schedule_ticks_total", TICKS_HELP, 1, "schedule", sc->name, NULL);
        kjb_counter_add("kjb_jobs_inserted_total", KJB_INSERTED_HELP, 1, "kind", sc->kind, NULL);
        kjb_info("schedule \"%s\": inserted job %" PRId64 " (%s) for tick %s%s", sc->name, id,
                 sc->kind, at, catch_up ? " (catch-up)" : "");
      } else if (first) {
        kjb_info("schedule \"%s\": new; tick %s came before it ran anywhere, so its first job is "
                 "the next tick's",
                 sc->name, at);
      }
    }
    s->settled = true;
    s->settled_at = tick;
    kjb_gauge_set("kjb_schedule_last_tick_seconds", LAST_TICK_HELP, (double)tick, "schedule",
                  sc->name, NULL);
  }
  s->watched_us = now_us;
  int64_t wait = next_at * SEC_US - now_us;
  int64_t most = sch->flags & KJB_CRON_SECONDS ? MAX_SLEEP_SECONDS_US : MAX_SLEEP_US;
  /* A little past the tick, so that the server's now() has reached it. */
  wait = wait < 0 ? 1000 : wait + 1000;
  s->due_us = kjb_now_mono_us() + (wait < most ? wait : most);
  return 0;
}

/* ---- the thread -------------------------------------------------------- */

static void lost_db(kjb_scheduler *sch, const kjb_err *err) {
  sch->reconnect_wait = sch->reconnect_wait ? sch->reconnect_wait * 2 : SEC_US / 2;
  if (sch->reconnect_wait > RECONNECT_MAX_US)
    sch->reconnect_wait = RECONNECT_MAX_US;
  sch->reconnect_at = kjb_now_mono_us() + sch->reconnect_wait;
  kjb_warn("schedules: %s (retrying in %.1f s)", err->msg, (double)sch->reconnect_wait / 1e6);
  kjb_store_free(sch->db);
  sch->db = NULL;
  /* Ticks that come meanwhile are missed: found later, they are
   * catch-ups. */
  for (size_t i = 0; i < sch->n; i++) {
    sch->s[i].watched_us = -1;
    sch->s[i].due_us = 0;
  }
}

static void *scheduler_main(void *arg) {
  kjb_scheduler *sch = arg;
  pthread_mutex_lock(&sch->mu);
  while (!sch->quit) {
    pthread_mutex_unlock(&sch->mu);
    int64_t now = kjb_now_mono_us(), until = now + MAX_SLEEP_US;
    kjb_err err;
    if (!sch->db && now >= sch->reconnect_at) {
      sch->db = kjb_store_connect(sch->cfg->postgres.conninfo, sch->cfg->postgres.schema, &err);
      if (!sch->db)
        lost_db(sch, &err);
      else if (sch->reconnect_wait) {
        kjb_info("schedules: connected to postgresql again");
        sch->reconnect_wait = 0;
      }
    }
    for (size_t i = 0; i < sch->n && sch->db; i++) {
      sched *s = &sch->s[i];
      if (s->due_us <= now && check(sch, s, &err) < 0)
        lost_db(sch, &err);
    }
    if (!sch->db)
      until = sch->reconnect_at;
    for (size_t i = 0; i < sch->n && sch->db; i++)
      if (sch->s[i].due_us < until)
        until = sch->s[i].due_us;
    pthread_mutex_lock(&sch->mu);
    if (!sch->quit && until > kjb_now_mono_us()) {
      struct timespec ts = {.tv_sec = (time_t)(until / SEC_US),
                            .tv_nsec = (long)(until % SEC_US) * 1000};
      pthread_cond_timedwait(&sch->cv, &sch->mu, &ts);
    }
  }
  pthread_mutex_unlock(&sch->mu);
  return NULL;
}

int kjb_scheduler_start(kjb_scheduler *sch, kjb_err *err) {
  sch->db = kjb_store_connect(sch->cfg->postgres.conninfo, sch->cfg->postgres.schema, err);
  if (!sch->db)
    return -KJB_EPG;
  int rc = check_zones(sch, err);
  if (rc)
    return rc;
  if (pthread_create(&sch->thread, NULL, scheduler_main, sch) != 0)
    return kjb_err_set(err, KJB_ENOMEM, "could not start the scheduler thread");
  sch->started = true;
  for (size_t i = 0; i < sch->n; i++) {
    const kjb_schedule_cfg *sc = sch->s[i].cfg;
    kjb_info("schedule \"%s\": kind %s, cron \"%s\" in %s", sc->name, sc->kind, sc->cron,
             sc->timezone);
    /* Allowed, as for topics' job mappings: another deployment's
     * executors may run the kind. */
    if (!kjb_config_handler(sch->cfg, sc->kind))
      kjb_warn("schedule \"%s\": no handler for kind %s here: its jobs wait for an executor "
               "that has one",
               sc->name, sc->kind);
  }
  return 0;
}

void kjb_scheduler_free(kjb_scheduler *sch) {
  if (!sch)
    return;
  if (sch->started) {
    pthread_mutex_lock(&sch->mu);
    sch->quit = true;
    pthread_cond_signal(&sch->cv);
    pthread_mutex_unlock(&sch->mu);
    pthread_join(sch->thread, NULL);
  }
  kjb_store_free(sch->db);
  pthread_cond_destroy(&sch->cv);
  pthread_mutex_destroy(&sch->mu);
  free(sch->s);
  free(sch);
}

/* ---- check-config ------------------------------------------------------ */

/* The wall-clock time now in zone, by the C library (TZ is switched for
 * the call: check-config has one thread). Returns -1 for a zone the C
 * library does not know. */
static int wall_now_in(const char *zone, int64_t *wall) {
  char path[256];
  snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", zone);
  if (strcmp(zone, "UTC") != 0 && access(path, R_OK) != 0)
    return -1;
  const char *old = getenv("TZ");
  char *saved = old ? kjb_xstrdup(old) : NULL;
  char tz[128];
  snprintf(tz, sizeof tz, ":%s", zone);
  setenv("TZ", tz, 1);
  tzset();
  time_t t = time(NULL);
  struct tm tm;
  localtime_r(&t, &tm);
  if (saved)
    setenv("TZ", saved, 1);
  else
    unsetenv("TZ");
  tzset();
  free(saved);
  int64_t days;
  if (kjb_civil_to_days(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, &days) != 0)
    return -1;
  *wall = days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
  return 0;
}

void kjb_schedule_describe(const kjb_config *cfg, FILE *out) {
  for (size_t i = 0; i < cfg->nschedules; i++) {
    const kjb_schedule_cfg *sc = &cfg->schedules[i];
    kjb_cron cron;
    kjb_err err;
    int64_t wall, next;
    char when[48] = "unknown (a time zone this system does not know)";
    if (kjb_cron_parse(sc->cron, 0, &cron, &err) == 0 && wall_now_in(sc->timezone, &wall) == 0 &&
        kjb_cron_next(&cron, wall, &next) == 0)
      kjb_cron_format(next, when, sizeof when);
    fprintf(out, "schedule %s: kind %s, queue %s, cron \"%s\" in %s, next tick %s\n", sc->name,
            sc->kind, sc->queue, sc->cron, sc->timezone, when);
  }
}
