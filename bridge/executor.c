/* The executor (see executor.h). One dispatcher thread owns the database
 * connections: it records finished attempts in one statement on a
 * connection of their own, without waiting for it, and meanwhile claims
 * jobs for kinds with free workers, heartbeats, rescues and prunes on
 * another; it sleeps in poll() on those, its LISTEN connection and a
 * wake-up pipe. Worker threads only run handlers; they take claimed jobs
 * from their kind's queue and hand outcomes back under one mutex. */
#include "executor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "handler.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "policy.h"
#include "queue.h"
#include "store.h"
#include "trace.h"
#include "util.h"

#define RECONNECT_MAX_US (30 * 1000000LL)
/* After asking running handlers to cancel, how long to wait for them. */
#define CANCEL_GRACE_US (5 * 1000000LL)

static const char FINISHED_HELP[] = "Attempts finished, by kind and outcome.";

static const char *outcome_name(kjb_finish_kind f);

typedef struct kind_rt kind_rt;

/* A claimed job on its way through a worker. */
typedef struct slot {
  kjb_claimed c;
  kind_rt *k;
  kjb_handler_result res;
  int64_t started_us, finished_us; /* monotonic */
  int probe;                       /* claimed as the half-open breaker's probe */
  int dropped;                     /* cancelled by shutdown: no outcome to record */
  struct slot *prev, *next;        /* in the executor's held list */
} slot;

struct kind_rt {
  const kjb_handler_cfg *cfg;
  kjb_handler *h;
  pthread_cond_t cv; /* workers of this kind wait here */
  slot **queue;      /* claimed, not yet taken by a worker */
  size_t nqueue;
  int busy;       /* claimed and not yet handed back: queued or running */
  int unrecorded; /* handed back, outcome not yet recorded */
  pthread_t *threads;
  int nthreads;
  kjb_bucket bucket; /* scope local */
  kjb_breaker breaker;
  kjb_gate gate;         /* the above, as claim_kind consults them */
  int64_t due_us;        /* next claim not before this (monotonic) */
  double cluster_tokens; /* scope cluster: tokens left after the last claim */
  char *after_key;       /* ordering keys: the next claim visits keys after this first */
  /* What kjb_executor_kind_status reports, under the executor's mu. */
  kjb_breaker_state pub_breaker;
  double pub_tokens;
};

struct kjb_executor {
  const kjb_config *cfg;
  char node[160];
  char host[96];
  char roles[64];
  kjb_store *db;     /* dispatcher: claims, heartbeats, housekeeping */
  kjb_store *rec;    /* dispatcher: outcomes, recorded while it claims */
  kjb_store *listen; /* LISTEN kjb_jobs */
  kind_rt *kinds;
  size_t nkinds;

  pthread_mutex_t mu;
  slot **done; /* finished attempts not yet recorded */
  size_t ndone, capdone;
  /* Dispatcher only: the attempts being recorded (their statement is in
   * flight on rec when nrecf > 0), still held. */
  slot **recording;
  size_t nrecording, caprecording;
  kjb_finish *recf;
  size_t nrecf;
  int rerecord; /* the first outcomes in done were in flight when the connection failed */
  /* Every claimed job this node has in hand, from its claim until its
   * outcome is recorded: queued, running or done. The database's running
   * rows of this node that are not here are reconciled. */
  slot *held;
  size_t nheld;
  int quit;               /* workers: exit when their queue is empty */
  volatile int cancelled; /* handlers' kjb_handler_job.cancelled; atomic access only */
  int wake[2];            /* workers write a byte when they hand something back */

  uint64_t rng;
  int64_t next_heartbeat, next_rescue, next_reconcile, next_prune, reconnect_at, reconnect_wait;
  int64_t pruned, prune_batches; /* by the retention prune under way */
  _Atomic int64_t alive_us;      /* the loop's last round, for the health probes */
};

/* ---- small helpers ----------------------------------------------------- */

static double uniform(kjb_executor *ex) {
  /* xorshift64*: jitter needs spread, not secrecy. */
  ex->rng ^= ex->rng >> 12;
  ex->rng ^= ex->rng << 25;
  ex->rng ^= ex->rng >> 27;
  return (double)((ex->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static void wake(kjb_executor *ex) {
  char b = 1;
  ssize_t w = write(ex->wake[1], &b, 1);
  (void)w; /* a full pipe already holds a wake-up */
}

static void drain_wake(kjb_executor *ex) {
  char buf[256];
  while (read(ex->wake[0], buf, sizeof buf) > 0) {
  }
}

/* The held list; under mu. */
static void hold(kjb_executor *ex, slot *s) {
  s->prev = NULL;
  s->next = ex->held;
  if (ex->held)
    ex->held->prev = s;
  ex->held = s;
  ex->nheld++;
}

static void unhold(kjb_executor *ex, slot *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    ex->held = s->next;
  if (s->next)
    s->next->prev = s->prev;
  ex->nheld--;
}

/* ---- workers ----------------------------------------------------------- */

typedef struct {
  kjb_executor *ex;
  kind_rt *k;
} worker_arg;

/* Exports the span of one attempt, a child of the span the job's trace
 * context names: traceparent is the attempt's own. */
static void attempt_span(const kind_rt *k, const slot *s, const char *traceparent) {
  static const char *const outcome[] = {[KJB_HANDLER_OK] = "ok",
                                        [KJB_HANDLER_TRANSIENT] = "transient",
                                        [KJB_HANDLER_PERMANENT] = "permanent"};
  int64_t end = kjb_now_wall_us();
  kjb_span sp = {
      .name = "kjb attempt",
      .kind = 1,
      .start_us = end - (s->finished_us - s->started_us),
      .end_us = end,
      .error = s->res.status == KJB_HANDLER_OK ? NULL : s->res.message,
      .attrs = {{"kjb.kind", k->cfg->kind, 0},
                {"kjb.job_id", NULL, s->c.id},
                {"kjb.attempt", NULL, s->c.attempt},
                {"kjb.outcome", outcome[s->res.status], 0}},
      .nattrs = 4,
  };
  if (s->c.source_topic) {
    sp.attrs[sp.nattrs++] = (kjb_span_attr){"kjb.source.topic", s->c.source_topic, 0};
    sp.attrs[sp.nattrs++] = (kjb_span_attr){"kjb.source.partition", NULL, s->c.source_partition};
    sp.attrs[sp.nattrs++] = (kjb_span_attr){"kjb.source.offset", NULL, s->c.source_offset};
  }
  memcpy(sp.trace_id, traceparent + 3, 32);
  memcpy(sp.span_id, traceparent + 36, 16);
  memcpy(sp.parent_id, s->c.traceparent + 36, 16);
  kjb_otlp_span(&sp);
}

static void *worker_main(void *arg) {
  worker_arg wa = *(worker_arg *)arg;
  free(arg);
  kjb_executor *ex = wa.ex;
  kind_rt *k = wa.k;
  pthread_mutex_lock(&ex->mu);
  for (;;) {
    while (k->nqueue == 0 && !ex->quit)
      pthread_cond_wait(&k->cv, &ex->mu);
    if (k->nqueue == 0)
      break;
    slot *s = k->queue[--k->nqueue];
    pthread_mutex_unlock(&ex->mu);

    s->started_us = kjb_now_mono_us();
    /* Each attempt is a span of its own in the source record's trace. */
    char traceparent[KJB_TRACEPARENT_LEN + 1];
    if (s->c.traceparent && kjb_traceparent_valid(s->c.traceparent, strlen(s->c.traceparent)))
      kjb_traceparent_child(s->c.traceparent, traceparent);
    else
      traceparent[0] = '\0';
    kjb_handler_job job = {
        .id = s->c.id,
        .kind = k->cfg->kind,
        .attempt = s->c.attempt,
        .max_attempts = s->c.max_attempts,
        .args_json = s->c.args,
        .args_len = strlen(s->c.args),
        .deadline_us = s->started_us + k->cfg->timeout_us,
        .cancelled = &ex->cancelled,
        .abi_minor = KJB_HANDLER_ABI_MINOR,
        .traceparent = traceparent[0] ? traceparent : NULL,
        .tracestate = traceparent[0] ? s->c.tracestate : NULL,
    };
    kjb_handler_perform(k->h, &job, &s->res);
    s->finished_us = kjb_now_mono_us();
    if (traceparent[0] && kjb_otlp_enabled() && kjb_traceparent_sampled(traceparent))
      attempt_span(k, s, traceparent);

    /* The outcome is handed back and the next job taken under one lock:
     * with hundreds of workers on a few cores, each extra acquisition is
     * a chance to queue behind the others. */
    pthread_mutex_lock(&ex->mu);
    k->busy--;
    k->unrecorded++;
    ex->done = kjb_xgrow(ex->done, &ex->capdone, ex->ndone + 1, sizeof *ex->done);
    ex->done[ex->ndone++] = s;
    /* The dispatcher drains all outcomes at once: one wake-up is enough. */
    if (ex->ndone == 1)
      wake(ex);
  }
  pthread_mutex_unlock(&ex->mu);
  return NULL;
}

/* ---- setup ------------------------------------------------------------- */

static void free_connections(kjb_executor *ex) {
  kjb_store_free(ex->db);
  kjb_store_free(ex->rec);
  kjb_store_free(ex->listen);
  ex->db = ex->rec = ex->listen = NULL;
}

static int connect_db(kjb_executor *ex, kjb_err *err) {
  free_connections(ex);
  ex->db = kjb_store_connect(ex->cfg->postgres.conninfo, ex->cfg->postgres.schema, err);
  if (!ex->db)
    return -1;
  ex->rec = kjb_store_connect(ex->cfg->postgres.conninfo, ex->cfg->postgres.schema, err);
  if (!ex->rec)
    return -1;
  ex->listen = kjb_store_connect(ex->cfg->postgres.conninfo, ex->cfg->postgres.schema, err);
  if (!ex->listen)
    return -1;
  PGresult *res =
      kjb_store_query(ex->listen, "could not listen for new jobs", "LISTEN kjb_jobs", 0, NULL, err);
  if (!res)
    return -1;
  PQclear(res);
  if (kjb_queue_heartbeat(ex->db, ex->node, ex->host, (int)getpid(), ex->roles, KJB_VERSION, err) <
      0)
    return -1;
  for (size_t i = 0; i < ex->nkinds; i++) {
    const kjb_handler_cfg *h = ex->kinds[i].cfg;
    if (h->rate_limit.enabled && h->rate_limit.scope == KJB_SCOPE_CLUSTER &&
        kjb_queue_bucket_ensure(ex->db, h->kind, h->rate_limit.burst, err) < 0)
      return -1;
  }
  return 0;
}

kjb_executor *kjb_executor_new(const kjb_config *cfg, const char *roles, kjb_err *err) {
  if (cfg->nhandlers == 0) {
    kjb_err_set(err, KJB_ECONFIG, "%s: no handlers: an executor needs at least one", cfg->path);
    return NULL;
  }
  kjb_executor *ex = kjb_xcalloc(1, sizeof *ex);
  ex->cfg = cfg;
  ex->wake[0] = ex->wake[1] = -1;
  pthread_mutex_init(&ex->mu, NULL);
  if (gethostname(ex->host, sizeof ex->host) != 0)
    snprintf(ex->host, sizeof ex->host, "localhost");
  ex->host[sizeof ex->host - 1] = '\0';
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ex->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
            (uint64_t)(uintptr_t)ex;
  if (!ex->rng)
    ex->rng = 88172645463325252ULL;
  snprintf(ex->node, sizeof ex->node, "%s-%d-%04x", ex->host, (int)getpid(),
           (unsigned)(uniform(ex) * 65536));
  snprintf(ex->roles, sizeof ex->roles, "%s", roles);
  if (pipe2(ex->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
    kjb_err_set(err, KJB_EIO, "could not create a pipe: %s", strerror(errno));
    kjb_executor_free(ex);
    return NULL;
  }
  ex->kinds = kjb_xcalloc(cfg->nhandlers, sizeof *ex->kinds);
  int64_t now = kjb_now_mono_us();
  for (size_t i = 0; i < cfg->nhandlers; i++) {
    kind_rt *k = &ex->kinds[i];
    k->cfg = &cfg->handlers[i];
    pthread_cond_init(&k->cv, NULL);
    ex->nkinds++;
    k->h = kjb_handler_open(k->cfg, err);
    k->queue = kjb_xcalloc((size_t)k->cfg->concurrency, sizeof *k->queue);
    if (!k->h) {
      kjb_executor_free(ex);
      return NULL;
    }
    /* Every outcome's series exists from the start, so that rate() and
     * increase() see the first event. */
    for (int o = KJB_FINISH_COMPLETED; o <= KJB_FINISH_DISCARD; o++)
      kjb_counter_add("kjb_jobs_finished_total", FINISHED_HELP, 0, "kind", k->cfg->kind, "outcome",
                      outcome_name((kjb_finish_kind)o), NULL);
    if (k->cfg->rate_limit.enabled)
      kjb_bucket_init(&k->bucket, k->cfg->rate_limit.rate, k->cfg->rate_limit.burst, now);
    if (k->cfg->breaker.enabled)
      kjb_breaker_init(&k->breaker, k->cfg->breaker.failure_ratio, k->cfg->breaker.min_calls,
                       k->cfg->breaker.open_for_us);
    const int limited = k->cfg->rate_limit.enabled;
    k->gate = (kjb_gate){
        .breaker = k->cfg->breaker.enabled ? &k->breaker : NULL,
        .bucket = limited && k->cfg->rate_limit.scope == KJB_SCOPE_LOCAL ? &k->bucket : NULL,
        .cluster_rate =
            limited && k->cfg->rate_limit.scope == KJB_SCOPE_CLUSTER ? k->cfg->rate_limit.rate : 0,
        .claim_batch = cfg->executor.claim_batch,
        .poll_interval_us = cfg->executor.poll_interval_us,
    };
  }
  return ex;
}

int kjb_executor_start(kjb_executor *ex, kjb_err *err) {
  if (connect_db(ex, err) < 0)
    return -1;
  for (size_t i = 0; i < ex->nkinds; i++) {
    kind_rt *k = &ex->kinds[i];
    k->threads = kjb_xcalloc((size_t)k->cfg->concurrency, sizeof *k->threads);
    for (int t = 0; t < k->cfg->concurrency; t++) {
      worker_arg *wa = kjb_xmalloc(sizeof *wa);
      wa->ex = ex;
      wa->k = k;
      if (pthread_create(&k->threads[t], NULL, worker_main, wa) != 0) {
        free(wa);
        return kjb_err_set(err, KJB_ENOMEM, "could not start worker threads");
      }
      k->nthreads++;
    }
  }
  return 0;
}

const char *kjb_executor_node(const kjb_executor *ex) { return ex->node; }

void kjb_executor_free(kjb_executor *ex) {
  if (!ex)
    return;
  pthread_mutex_lock(&ex->mu);
  ex->quit = 1;
  for (size_t i = 0; i < ex->nkinds; i++)
    pthread_cond_broadcast(&ex->kinds[i].cv);
  pthread_mutex_unlock(&ex->mu);
  for (size_t i = 0; i < ex->nkinds; i++) {
    kind_rt *k = &ex->kinds[i];
    for (int t = 0; t < k->nthreads; t++)
      pthread_join(k->threads[t], NULL);
    for (size_t q = 0; q < k->nqueue; q++) {
      kjb_queue_claimed_close(&k->queue[q]->c);
      free(k->queue[q]);
    }
    kjb_handler_free(k->h);
    free(k->after_key);
    free(k->queue);
    free(k->threads);
    pthread_cond_destroy(&k->cv);
  }
  for (size_t i = 0; i < ex->ndone; i++) {
    kjb_queue_claimed_close(&ex->done[i]->c);
    free(ex->done[i]);
  }
  free(ex->done);
  for (size_t i = 0; i < ex->nrecording; i++) {
    kjb_queue_claimed_close(&ex->recording[i]->c);
    free(ex->recording[i]);
  }
  free(ex->recording);
  free(ex->recf);
  free(ex->kinds);
  free_connections(ex);
  if (ex->wake[0] >= 0) {
    close(ex->wake[0]);
    close(ex->wake[1]);
  }
  pthread_mutex_destroy(&ex->mu);
  free(ex);
}

/* ---- the database going away ------------------------------------------- */

static void requeue_recording(kjb_executor *ex);

/* A statement failed: drop the connections and reconnect later, with
 * backoff. Outcomes not yet recorded stay in memory meanwhile, those
 * whose statement was in flight too: recording them again after
 * reconnecting changes nothing where the first one took effect. */
static void lost_db(kjb_executor *ex, const kjb_err *err) {
  int64_t now = kjb_now_mono_us();
  ex->reconnect_wait = ex->reconnect_wait ? ex->reconnect_wait * 2 : 500000;
  if (ex->reconnect_wait > RECONNECT_MAX_US)
    ex->reconnect_wait = RECONNECT_MAX_US;
  ex->reconnect_at = now + ex->reconnect_wait;
  kjb_warn("executor: %s (retrying in %.1f s)", err->msg, (double)ex->reconnect_wait / 1e6);
  requeue_recording(ex);
  free_connections(ex);
}

static int db_ready(kjb_executor *ex) {
  if (ex->db)
    return 1;
  if (kjb_now_mono_us() < ex->reconnect_at)
    return 0;
  kjb_err err;
  if (connect_db(ex, &err) < 0) {
    lost_db(ex, &err);
    return 0;
  }
  kjb_info("executor: connected to postgresql again");
  ex->reconnect_wait = 0;
  /* After an outage every node's heartbeat looks stale, the live ones'
   * too: rescue only once they have had a whole lease to beat again, or
   * jobs still running elsewhere would run twice at once. */
  ex->next_rescue = kjb_now_mono_us() + ex->cfg->executor.lease_us;
  /* What the outage took (a claim whose answer never came, an outcome
   * the server forgot) is found now. */
  ex->next_reconcile = 0;
  /* Whatever was notified meanwhile is found by claiming now. */
  for (size_t i = 0; i < ex->nkinds; i++)
    ex->kinds[i].due_us = 0;
  return 1;
}

/* ---- outcomes ---------------------------------------------------------- */

static const char *outcome_name(kjb_finish_kind f) {
  switch (f) {
  case KJB_FINISH_COMPLETED: return "completed";
  case KJB_FINISH_RETRY: return "retried";
  case KJB_FINISH_DISCARD: return "discarded";
  }
  return "?";
}

/* Puts the attempts being recorded back in front of the others handed
 * back, to be recorded again. */
static void requeue_recording(kjb_executor *ex) {
  size_t n = ex->nrecording;
  if (n == 0)
    return;
  pthread_mutex_lock(&ex->mu);
  ex->done = kjb_xgrow(ex->done, &ex->capdone, ex->ndone + n, sizeof *ex->done);
  memmove(ex->done + n, ex->done, ex->ndone * sizeof *ex->done);
  memcpy(ex->done, ex->recording, n * sizeof *ex->done);
  ex->ndone += n;
  pthread_mutex_unlock(&ex->mu);
  for (size_t i = 0; i < n; i++)
    ex->recording[i]->dropped = 0;
  ex->nrecording = ex->nrecf = 0;
  ex->rerecord = 1;
}

/* Once their statement succeeded: counts, logs and frees the attempts
 * recorded, applied of them found running here. */
static void recorded(kjb_executor *ex, size_t applied) {
  size_t n = ex->nrecording, nf = ex->nrecf;
  slot **done = ex->recording;
  const kjb_finish *f = ex->recf;
  if (applied < nf)
    kjb_info("executor: %zu of %zu outcomes found their job no longer running here "
             "(cancelled or rescued meanwhile)",
             nf - applied, nf);

  int64_t now = kjb_now_mono_us();
  pthread_mutex_lock(&ex->mu);
  for (size_t i = 0; i < n; i++) {
    slot *s = done[i];
    kind_rt *k = s->k;
    k->unrecorded--;
    unhold(ex, s);
    /* While half-open only the probe's outcome counts. */
    if (k->cfg->breaker.enabled && !s->dropped &&
        (k->breaker.state != KJB_BREAKER_HALF_OPEN || s->probe) &&
        kjb_breaker_record(&k->breaker, s->res.status == KJB_HANDLER_TRANSIENT, now))
      kjb_warn("executor: breaker of \"%s\" is %s", k->cfg->kind,
               kjb_breaker_state_name(k->breaker.state));
  }
  pthread_mutex_unlock(&ex->mu);

  for (size_t i = 0, j = 0; i < n; i++) {
    slot *s = done[i];
    const char *kind = s->k->cfg->kind;
    if (!s->dropped) {
      const kjb_finish *fi = &f[j++];
      kjb_counter_add("kjb_jobs_finished_total", FINISHED_HELP, 1.0, "kind", kind, "outcome",
                      outcome_name(fi->kind), NULL);
      kjb_histogram_observe("kjb_job_duration_seconds", "Time a handler took per attempt.",
                            (double)(s->finished_us - s->started_us) / 1e6, "kind", kind, NULL);
      /* The key's next job may start now; no notification says so. */
      if (s->c.ordering_key && fi->kind != KJB_FINISH_RETRY)
        s->k->due_us = 0;
      if (fi->kind == KJB_FINISH_DISCARD)
        kjb_warn("job %" PRId64 " (%s) discarded after attempt %d of %d: %s", s->c.id, kind,
                 s->c.attempt, s->c.max_attempts, s->res.message);
      else if (fi->kind == KJB_FINISH_RETRY)
        kjb_debug("job %" PRId64 " (%s) attempt %d failed, retry in %.3f s: %s", s->c.id, kind,
                  s->c.attempt, (double)fi->retry_in_us / 1e6, s->res.message);
    }
    kjb_queue_claimed_close(&s->c);
    free(s);
  }
  ex->nrecording = ex->nrecf = 0;
  ex->rerecord = 0;
}

/* Takes the result of the statement in flight on rec, if any: at once
 * when wait, else only if it has come. */
static void record_result(kjb_executor *ex, bool wait) {
  if (ex->nrecording == 0)
    return;
  kjb_err err;
  int busy = wait ? 0 : kjb_store_busy(ex->rec, "could not record job outcomes", &err);
  size_t applied = 0;
  if (busy == 0 && kjb_queue_finish_result(ex->rec, &applied, &err) == 0)
    recorded(ex, applied);
  else if (busy != 1)
    lost_db(ex, &err);
}

/* Sends every attempt handed back since the last time as one statement
 * on rec, unless one is still in flight there. */
static void record_send(kjb_executor *ex) {
  if (ex->nrecording > 0 || !db_ready(ex))
    return;
  pthread_mutex_lock(&ex->mu);
  size_t n = ex->ndone;
  if (n > 0) {
    ex->recording = kjb_xgrow(ex->recording, &ex->caprecording, n, sizeof *ex->recording);
    memcpy(ex->recording, ex->done, n * sizeof *ex->done);
    ex->ndone = 0;
  }
  pthread_mutex_unlock(&ex->mu);
  if (n == 0)
    return;
  ex->nrecording = n;

  free(ex->recf);
  ex->recf = kjb_xcalloc(n, sizeof *ex->recf);
  size_t nf = 0;
  for (size_t i = 0; i < n; i++) {
    slot *s = ex->recording[i];
    /* Shutdown cancelled it: not an outcome. The row stays running and
     * goes back to available with the others that did not finish. */
    if (__atomic_load_n(&ex->cancelled, __ATOMIC_ACQUIRE) && s->res.status != KJB_HANDLER_OK) {
      s->dropped = 1;
      continue;
    }
    kjb_verdict v = kjb_policy_finish(s->res.status, s->c.attempt, s->c.max_attempts,
                                      s->res.retry_after_us, &s->k->cfg->retry, uniform(ex));
    kjb_finish *fi = &ex->recf[nf++];
    *fi = (kjb_finish){
        .id = s->c.id, .kind = v.kind, .retry_in_us = v.retry_in_us, .transient = v.transient};
    if (s->res.status != KJB_HANDLER_OK) {
      s->res.message[sizeof s->res.message - 1] = '\0';
      if (!s->res.message[0])
        snprintf(s->res.message, sizeof s->res.message, "%s failure without a message",
                 s->res.status == KJB_HANDLER_TRANSIENT ? "transient" : "permanent");
      fi->error = s->res.message;
    }
  }
  ex->nrecf = nf;
  kjb_err err;
  if (nf == 0)
    recorded(ex, 0);
  else if (kjb_queue_finish_send(ex->rec, ex->node, ex->recf, nf, &err) < 0)
    lost_db(ex, &err);
  else if (ex->rerecord)
    /* Their first statement may have taken effect: record them before
     * the next claim, which could otherwise take a job they retried and
     * then see a stale outcome land on that new attempt. */
    record_result(ex, true);
}

/* Records every attempt handed back so far, and waits for that. */
static void flush_done(kjb_executor *ex) {
  record_result(ex, true);
  record_send(ex);
  record_result(ex, true);
}

/* ---- status ------------------------------------------------------------ */

/* Publishes the kind's breaker state and tokens as gauges and for
 * kjb_executor_kind_status. Dispatcher thread only. */
static void publish(kjb_executor *ex, kind_rt *k, int64_t now) {
  const kjb_handler_cfg *h = k->cfg;
  double tokens = 0;
  if (h->rate_limit.enabled) {
    if (h->rate_limit.scope == KJB_SCOPE_LOCAL) {
      kjb_bucket_wait_us(&k->bucket, now); /* refills */
      tokens = k->bucket.tokens;
    } else {
      tokens = k->cluster_tokens;
    }
    kjb_gauge_set("kjb_rate_limit_tokens",
                  "Tokens in the kind's rate-limit bucket (this process's, or the shared one "
                  "after this process's last claim).",
                  tokens, "kind", h->kind, NULL);
  }
  if (h->breaker.enabled)
    kjb_gauge_set("kjb_breaker_open", "1 while the kind's circuit breaker is open or half-open.",
                  k->breaker.state == KJB_BREAKER_CLOSED ? 0 : 1, "kind", h->kind, NULL);
  pthread_mutex_lock(&ex->mu);
  k->pub_breaker = k->breaker.state;
  k->pub_tokens = tokens;
  pthread_mutex_unlock(&ex->mu);
}

int kjb_executor_kind_status(kjb_executor *ex, const char *kind, const char **breaker,
                             double *tokens) {
  for (size_t i = 0; i < ex->nkinds; i++) {
    kind_rt *k = &ex->kinds[i];
    if (strcmp(k->cfg->kind, kind) != 0)
      continue;
    pthread_mutex_lock(&ex->mu);
    *breaker = k->cfg->breaker.enabled ? kjb_breaker_state_name(k->pub_breaker) : NULL;
    *tokens = k->pub_tokens;
    pthread_mutex_unlock(&ex->mu);
    return 0;
  }
  return -1;
}

/* ---- claiming ---------------------------------------------------------- */

/* Moves the kind's walk over ordering keys past the keys just claimed
 * (bytewise, as the claim compares them), so that the next claim serves
 * the keys after them. A short claim that started mid-way has not seen
 * the first keys: the next claim starts from the first key, at once. */
static void next_keys(kind_rt *k, const kjb_claimed *got, int n, int asked, int64_t now) {
  if (n < asked && k->after_key) {
    free(k->after_key);
    k->after_key = NULL;
    k->due_us = now;
    return;
  }
  const char *last = NULL;
  for (int i = 0; i < n; i++)
    if (got[i].ordering_key && (!last || strcmp(got[i].ordering_key, last) > 0))
      last = got[i].ordering_key;
  if (last) {
    free(k->after_key);
    k->after_key = kjb_xstrdup(last);
  }
}

/* The workers of k that may take a job now; under mu. A worker whose
 * outcome is still being recorded is free, unless k has a breaker: the
 * breaker must have counted an outcome before its worker starts another
 * job, or a failing downstream would see more calls than min_calls
 * before the breaker opens. */
static int free_workers(const kind_rt *k) {
  return k->cfg->concurrency - k->busy - (k->cfg->breaker.enabled ? k->unrecorded : 0);
}

static void claim_kind(kjb_executor *ex, kind_rt *k, int64_t now) {
  const kjb_handler_cfg *h = k->cfg;
  pthread_mutex_lock(&ex->mu);
  int nfree = free_workers(k);
  pthread_mutex_unlock(&ex->mu);
  int allowed = kjb_gate_admit(&k->gate, nfree, now, &k->due_us);
  if (allowed == 0)
    return;

  int cluster = k->gate.cluster_rate > 0;
  kjb_claimed *got = kjb_xcalloc((size_t)allowed, sizeof *got);
  kjb_queue_bucket bucket = {h->rate_limit.rate, h->rate_limit.burst};
  kjb_queue_order order = {h->on_discard == KJB_ON_DISCARD_HOLD, k->after_key};
  int n = 0;
  double tokens = 0;
  kjb_err err;
  if (kjb_queue_claim(ex->db, h->kind, ex->node, allowed, &order, cluster ? &bucket : NULL, got, &n,
                      &tokens, &err) < 0) {
    free(got);
    kjb_gate_failed(&k->gate, allowed);
    lost_db(ex, &err);
    return;
  }
  if (cluster)
    k->cluster_tokens = tokens;
  k->due_us = kjb_gate_claimed(&k->gate, allowed, n, tokens, now);
  next_keys(k, got, n, allowed, now);

  if (n > 0) {
    pthread_mutex_lock(&ex->mu);
    int waiting = k->nthreads - (k->busy - (int)k->nqueue); /* workers without a job */
    for (int i = 0; i < n; i++) {
      slot *s = kjb_xcalloc(1, sizeof *s);
      s->c = got[i];
      s->k = k;
      if (s->c.attempt == 1)
        kjb_histogram_observe("kjb_job_queue_latency_seconds",
                              "Time from a job's creation to the start of its first attempt.",
                              (double)(s->c.claimed_us - s->c.created_us) / 1e6, "kind", h->kind,
                              NULL);
      s->probe = h->breaker.enabled && k->breaker.state == KJB_BREAKER_HALF_OPEN;
      k->queue[k->nqueue++] = s;
      k->busy++;
      hold(ex, s);
    }
    pthread_mutex_unlock(&ex->mu);
    /* One worker per job, at most every idle one, woken once the lock is
     * free, so that none wakes only to wait for it. */
    if (n >= waiting)
      pthread_cond_broadcast(&k->cv);
    else
      for (int i = 0; i < n; i++)
        pthread_cond_signal(&k->cv);
  }
  free(got);
}

/* ---- housekeeping ------------------------------------------------------ */

/* Gives back this node's running rows that it does not hold. Dispatcher
 * thread only, which is also the only one that claims, so that no claim
 * can be under way meanwhile. */
static int reconcile(kjb_executor *ex, kjb_err *err) {
  pthread_mutex_lock(&ex->mu);
  size_t n = ex->nheld;
  int64_t *ids = kjb_xcalloc(n, sizeof *ids);
  size_t i = 0;
  for (slot *s = ex->held; s; s = s->next)
    ids[i++] = s->c.id;
  pthread_mutex_unlock(&ex->mu);
  int64_t returned = 0;
  int rc = kjb_queue_reconcile(ex->db, ex->node, ids, n, &returned, err);
  free(ids);
  if (rc == 0 && returned > 0) {
    kjb_warn("executor: gave back %" PRId64 " job(s) left running under this node without it "
             "holding them (a claim or outcome lost with the database)",
             returned);
    for (size_t k = 0; k < ex->nkinds; k++)
      ex->kinds[k].due_us = 0;
  }
  return rc;
}

static void housekeeping(kjb_executor *ex, int64_t now) {
  const kjb_config *cfg = ex->cfg;
  kjb_err err;
  if (now >= ex->next_heartbeat) {
    if (kjb_queue_heartbeat(ex->db, ex->node, ex->host, (int)getpid(), ex->roles, KJB_VERSION,
                            &err) < 0) {
      lost_db(ex, &err);
      return;
    }
    ex->next_heartbeat = now + cfg->executor.heartbeat_us;
  }
  if (now >= ex->next_rescue) {
    int64_t rescued = 0;
    if (kjb_queue_rescue(ex->db, cfg->executor.lease_us, &rescued, &err) < 0) {
      lost_db(ex, &err);
      return;
    }
    if (rescued > 0) {
      kjb_warn("executor: rescued %" PRId64 " running job(s) of nodes that stopped heartbeating",
               rescued);
      for (size_t i = 0; i < ex->nkinds; i++)
        ex->kinds[i].due_us = 0;
    }
    /* A lease is long against the heartbeat; checking at the heartbeat's
     * pace bounds how long a dead node's jobs wait past their lease. */
    ex->next_rescue = now + cfg->executor.heartbeat_us;
  }
  if (now >= ex->next_reconcile) {
    if (reconcile(ex, &err) < 0) {
      lost_db(ex, &err);
      return;
    }
    /* After a reconnect it runs at once; otherwise a lease is soon
     * enough for what only a server that forgets commits can cause. */
    ex->next_reconcile = now + cfg->executor.lease_us;
  }
  if (cfg->executor.retention_us > 0 && now >= ex->next_prune) {
    /* One batch per pass, then a pause three times as long as it took: a
     * backlog of millions (a first start, a shorter retention) takes at
     * most a quarter of this thread's time, between its claims and
     * heartbeats, rather than all of it until the backlog is gone. */
    int64_t t0 = kjb_now_mono_us(), deleted = 0;
    if (kjb_jobs_prune_batch(ex->db, cfg->executor.retention_us, &deleted, &err) < 0) {
      lost_db(ex, &err);
      return;
    }
    int64_t t1 = kjb_now_mono_us();
    if (deleted > 0) {
      ex->pruned += deleted;
      ex->prune_batches++;
      ex->next_prune = t1 + 3 * (t1 - t0);
    } else {
      if (ex->pruned > 0)
        kjb_info("executor: pruned %" PRId64 " finished job(s) older than the retention in %" PRId64
                 " batch(es)",
                 ex->pruned, ex->prune_batches);
      ex->pruned = ex->prune_batches = 0;
      ex->next_prune = t1 + cfg->executor.prune_interval_us;
    }
  }
}

/* Marks the kinds named by notifications as due now. */
static void read_notifications(kjb_executor *ex) {
  PGconn *c = kjb_store_conn(ex->listen);
  if (!PQconsumeInput(c)) {
    kjb_err err;
    kjb_err_set(&err, KJB_EPG, "lost the LISTEN connection: %.*s",
                (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
    lost_db(ex, &err);
    return;
  }
  PGnotify *nt;
  while ((nt = PQnotifies(c))) {
    /* The jobs table's triggers name the kind; a bare NOTIFY kjb_jobs
     * (from a script that inserted jobs itself) wakes every kind. */
    for (size_t i = 0; i < ex->nkinds; i++)
      if (!nt->extra[0] || strcmp(ex->kinds[i].cfg->kind, nt->extra) == 0)
        ex->kinds[i].due_us = 0;
    PQfreemem(nt);
  }
}

/* Sleeps until a worker hands something back, a notification arrives,
 * the outcomes in flight are recorded, or max_us passes. */
static void wait_for_work(kjb_executor *ex, int64_t max_us) {
  struct pollfd fds[3] = {{.fd = ex->wake[0], .events = POLLIN}, {.fd = -1}, {.fd = -1}};
  if (ex->listen) {
    fds[1].fd = PQsocket(kjb_store_conn(ex->listen));
    fds[1].events = POLLIN;
  }
  if (ex->nrecf > 0 && ex->rec) { /* the answer to the outcomes in flight */
    fds[2].fd = PQsocket(kjb_store_conn(ex->rec));
    fds[2].events = POLLIN;
  }
  int ms = max_us <= 0 ? 0 : (int)((max_us + 999) / 1000);
  if (poll(fds, 3, ms) > 0) {
    if (fds[0].revents)
      drain_wake(ex);
    if (fds[1].revents && ex->listen)
      read_notifications(ex);
  }
}

static int64_t next_wakeup(kjb_executor *ex, int64_t now) {
  int64_t until = now + ex->cfg->executor.poll_interval_us;
  if (!ex->db)
    return ex->reconnect_at < until ? ex->reconnect_at : until;
  if (ex->next_heartbeat < until)
    until = ex->next_heartbeat;
  if (ex->next_rescue < until)
    until = ex->next_rescue;
  if (ex->cfg->executor.retention_us > 0 && ex->next_prune < until)
    until = ex->next_prune;
  pthread_mutex_lock(&ex->mu);
  for (size_t i = 0; i < ex->nkinds; i++) {
    kind_rt *k = &ex->kinds[i];
    if (free_workers(k) > 0 && k->due_us < until)
      until = k->due_us;
  }
  if (ex->ndone > 0 && ex->nrecording == 0)
    until = now;
  pthread_mutex_unlock(&ex->mu);
  return until;
}

/* ---- shutdown ---------------------------------------------------------- */

static int busy_total(kjb_executor *ex) {
  pthread_mutex_lock(&ex->mu);
  int n = 0;
  for (size_t i = 0; i < ex->nkinds; i++)
    n += ex->kinds[i].busy;
  pthread_mutex_unlock(&ex->mu);
  return n;
}

/* Takes every job back from the kind queues (none has started) and
 * returns their ids; the caller releases them. */
static size_t unqueue(kjb_executor *ex, int64_t *ids, size_t cap) {
  size_t n = 0;
  pthread_mutex_lock(&ex->mu);
  for (size_t i = 0; i < ex->nkinds; i++) {
    kind_rt *k = &ex->kinds[i];
    while (k->nqueue > 0 && n < cap) {
      slot *s = k->queue[--k->nqueue];
      ids[n++] = s->c.id;
      k->busy--;
      unhold(ex, s);
      kjb_queue_claimed_close(&s->c);
      free(s);
    }
  }
  pthread_mutex_unlock(&ex->mu);
  return n;
}

/* Puts the given claimed jobs back, or with ids NULL all of this node's. */
static void release(kjb_executor *ex, const int64_t *ids, size_t n) {
  if ((ids && n == 0) || !db_ready(ex))
    return;
  int64_t released = 0;
  kjb_err err;
  if (kjb_queue_release(ex->db, ex->node, ids, n, &released, &err) < 0)
    kjb_warn("executor: could not put job(s) back (they are rescued after the lease): %s", err.msg);
  else if (released > 0)
    kjb_info("executor: put %" PRId64 " unfinished job(s) back to available", released);
}

static void shutdown_gracefully(kjb_executor *ex) {
  size_t cap = 0;
  for (size_t i = 0; i < ex->nkinds; i++)
    cap += (size_t)ex->kinds[i].cfg->concurrency;
  int64_t *ids = kjb_xcalloc(cap, sizeof *ids);
  release(ex, ids, unqueue(ex, ids, cap));

  int64_t t0 = kjb_now_mono_us();
  int64_t until = t0 + ex->cfg->executor.shutdown_timeout_us;
  int running = busy_total(ex);
  if (running > 0)
    kjb_info("executor: waiting up to %.0f s for %d running job(s)",
             (double)ex->cfg->executor.shutdown_timeout_us / 1e6, running);
  int cancelled = 0;
  for (;;) {
    flush_done(ex);
    if (busy_total(ex) == 0) {
      flush_done(ex); /* what was handed back since */
      break;
    }
    int64_t now = kjb_now_mono_us();
    if (!cancelled && now >= until) {
      kjb_warn("executor: %d job(s) still running after %.0f s: cancelling them", busy_total(ex),
               (double)ex->cfg->executor.shutdown_timeout_us / 1e6);
      __atomic_store_n(&ex->cancelled, 1, __ATOMIC_RELEASE);
      cancelled = 1;
      until = now + CANCEL_GRACE_US;
    } else if (cancelled && now >= until) {
      break;
    }
    wait_for_work(ex, until - now < 200000 ? until - now : 200000);
  }

  /* Whatever was cancelled or still runs did not finish: back to
   * available. A worker's late outcome then finds the row no longer
   * running here. */
  release(ex, NULL, 0);
  free(ids);
  if (db_ready(ex)) {
    kjb_err err;
    if (kjb_queue_leave(ex->db, ex->node, &err) < 0)
      kjb_warn("executor: %s", err.msg);
  }
}

/* ---- the loop ---------------------------------------------------------- */

int kjb_executor_run(kjb_executor *ex, volatile sig_atomic_t *stop, kjb_err *err) {
  kjb_info("executor: node %s running %zu kind(s)", ex->node, ex->nkinds);
  for (size_t i = 0; i < ex->nkinds; i++) {
    const kjb_handler_cfg *h = ex->kinds[i].cfg;
    kjb_info("executor: kind \"%s\": %s handler, concurrency %d%s", h->kind, h->type,
             h->concurrency,
             !h->rate_limit.enabled                     ? ""
             : h->rate_limit.scope == KJB_SCOPE_CLUSTER ? ", cluster rate limit"
                                                        : ", local rate limit");
  }
  (void)err;
  while (!*stop) {
    /* Outcomes are recorded on their own connection while this one
     * claims: workers freed by a batch of outcomes get jobs without
     * waiting for it. */
    record_result(ex, false);
    record_send(ex);
    int64_t now = kjb_now_mono_us();
    atomic_store(&ex->alive_us, now);
    if (db_ready(ex)) {
      housekeeping(ex, now);
      for (size_t i = 0; i < ex->nkinds && ex->db && !*stop; i++)
        if (ex->kinds[i].due_us <= now)
          claim_kind(ex, &ex->kinds[i], now);
    }
    record_result(ex, false);
    for (size_t i = 0; i < ex->nkinds; i++)
      publish(ex, &ex->kinds[i], now);
    now = kjb_now_mono_us();
    wait_for_work(ex, next_wakeup(ex, now) - now);
  }
  kjb_info("executor: stopping");
  shutdown_gracefully(ex);
  return 0;
}

int64_t kjb_executor_heartbeat(const kjb_executor *ex) { return atomic_load(&ex->alive_us); }
