/* The health thread of `kjb run` and its start-up wait for the database. */
#include "health.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "util.h"

/* How often the health thread pings PostgreSQL, and how long it waits for
 * a broker to answer. */
#define HEALTH_DB_EVERY_US (2 * 1000000LL)
#define HEALTH_KAFKA_TIMEOUT_MS 500

struct kjb_health_poller {
  kjb_http *http;
  const kjb_config *cfg;
  kjb_executor *ex; /* NULL without the executor role; outlives the thread */
  int consume;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int quit;        /* under mu */
  kjb_ingest *ing; /* under mu: set while the consumer exists */
};

/* Pings PostgreSQL once. Returns 0, or -1 with err. */
static int health_db(kjb_health_poller *hp, kjb_store **db, kjb_err *err) {
  if (!*db && !(*db = kjb_store_connect(hp->cfg->postgres.conninfo, hp->cfg->postgres.schema, err)))
    return -1;
  PGresult *res = kjb_store_query(*db, "health check", "SELECT 1", 0, NULL, err);
  if (!res)
    return -1;
  PQclear(res);
  return 0;
}

static void *health_main(void *arg) {
  kjb_health_poller *hp = arg;
  /* The thread starts once the start-up wait found the schema current. */
  kjb_health h = {.consumer = hp->consume, .executor = hp->ex != NULL, .migrations_current = true};
  kjb_store *db = NULL;
  int64_t next_db = 0;
  int db_state = -1; /* last logged: -1 nothing yet, 0 down, 1 up */
  pthread_mutex_lock(&hp->mu);
  while (!hp->quit) {
    pthread_mutex_unlock(&hp->mu);
    int64_t now = kjb_now_mono_us();
    if (now >= next_db) {
      kjb_err err;
      if (health_db(hp, &db, &err) == 0) {
        h.db_connected = true;
        h.db_ok_us = kjb_now_mono_us();
        if (db_state == 0)
          kjb_info("health: postgresql reachable again");
        db_state = 1;
      } else {
        h.db_connected = false;
        kjb_store_free(db);
        db = NULL;
        if (db_state != 0)
          kjb_warn("health: %s", err.msg);
        db_state = 0;
      }
      next_db = now + HEALTH_DB_EVERY_US;
    }
    /* The oldest heartbeat counts; a loop that never ran makes it 0. */
    int64_t loop = INT64_MAX;
    if (hp->ex) {
      int64_t t = kjb_executor_heartbeat(hp->ex);
      loop = t < loop ? t : loop;
    }
    if (hp->consume) {
      kjb_ingest_health_info ih = {0};
      pthread_mutex_lock(&hp->mu);
      if (hp->ing)
        kjb_ingest_health(hp->ing, HEALTH_KAFKA_TIMEOUT_MS, &ih);
      pthread_mutex_unlock(&hp->mu);
      loop = ih.loop_us < loop ? ih.loop_us : loop;
      h.kafka_connected = ih.kafka_connected;
      h.partitions = ih.partitions;
      h.assigned_once = h.assigned_once || ih.partitions > 0;
    }
    h.loop_us = loop == INT64_MAX ? 0 : loop;
    kjb_http_set_health(hp->http, &h);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&hp->mu);
    if (!hp->quit)
      pthread_cond_timedwait(&hp->cv, &hp->mu, &until);
  }
  pthread_mutex_unlock(&hp->mu);
  kjb_store_free(db);
  return NULL;
}

kjb_health_poller *kjb_health_start(kjb_http *http, const kjb_config *cfg, kjb_executor *ex,
                                    int consume) {
  kjb_health_poller *hp = kjb_xcalloc(1, sizeof *hp);
  hp->http = http;
  hp->cfg = cfg;
  hp->ex = ex;
  hp->consume = consume;
  pthread_mutex_init(&hp->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&hp->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&hp->thread, NULL, health_main, hp) != 0) {
    pthread_cond_destroy(&hp->cv);
    pthread_mutex_destroy(&hp->mu);
    free(hp);
    return NULL;
  }
  return hp;
}

void kjb_health_stop(kjb_health_poller *hp) {
  if (!hp)
    return;
  pthread_mutex_lock(&hp->mu);
  hp->quit = 1;
  pthread_cond_signal(&hp->cv);
  pthread_mutex_unlock(&hp->mu);
  pthread_join(hp->thread, NULL);
  pthread_cond_destroy(&hp->cv);
  pthread_mutex_destroy(&hp->mu);
  free(hp);
}

void kjb_health_attach(kjb_health_poller *hp, kjb_ingest *ing) {
  if (!hp)
    return;
  pthread_mutex_lock(&hp->mu);
  hp->ing = ing;
  pthread_mutex_unlock(&hp->mu);
}

/* How often the start-up wait asks PostgreSQL again. */
#define WAIT_RETRY_US (2 * 1000000LL)

/* Sleeps up to us, waking early when *stop becomes non-zero. */
static void nap(int64_t us, volatile sig_atomic_t *stop) {
  int64_t until = kjb_now_mono_us() + us;
  while (!*stop && kjb_now_mono_us() < until)
    nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
}

int kjb_health_wait_for_database(const kjb_config *cfg, kjb_http *http, int consume, int execute,
                                 volatile sig_atomic_t *stop) {
  kjb_store *db = NULL;
  char logged[sizeof((kjb_health *)0)->waiting] = "";
  int logged_pending = -1, rc = 1;
  while (!*stop) {
    kjb_err err;
    int pending = 0;
    if (!db)
      db = kjb_store_connect(cfg->postgres.conninfo, cfg->postgres.schema, &err);
    int64_t now = kjb_now_mono_us();
    kjb_health h = {.loop_us = now, .consumer = consume, .executor = execute};
    if (!db || kjb_store_migrate_status(db, NULL, &pending, &err) < 0) {
      kjb_store_free(db);
      db = NULL;
      snprintf(h.waiting, sizeof h.waiting, "waiting for postgresql: %s", err.msg);
      if (strcmp(h.waiting, logged) != 0)
        kjb_warn("%s", h.waiting);
      memcpy(logged, h.waiting, sizeof logged);
    } else if (pending == 0) {
      rc = 0;
      break;
    } else {
      if (pending != logged_pending)
        kjb_warn("%d migration(s) pending: waiting for `kjb migrate` to apply them", pending);
      logged_pending = pending;
      h.db_ok_us = now;
      h.db_connected = true;
    }
    if (http)
      kjb_http_set_health(http, &h);
    nap(WAIT_RETRY_US, stop);
  }
  if (rc == 0 && (logged_pending >= 0 || logged[0]))
    kjb_info("postgresql reachable and migrations applied: starting");
  kjb_store_free(db);
  return rc;
}
