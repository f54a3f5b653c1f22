/* The JSON API (see api.h and docs/http-api.md). Snapshots come from the
 * metric registry, the stats thread and the executor; /api/jobs, the dead
 * letters, the audit trail and the admin actions use one database
 * connection of their own, one request at a time, and showing a dead
 * letter (which reads Kafka) another. */
#include "api.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "audit.h"
#include "catalog.h"
#include "dlq.h"
#include "dlqindex.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "pause.h"
#include "replay.h"
#include "stats.h"
#include "store.h"

#define JOBS_LIMIT_DEFAULT 50

/* The last replay started through the API. */
typedef struct {
  bool started; /* a replay was ever started */
  bool running;
  bool joinable; /* thread not yet joined */
  pthread_t thread;
  char topic[256]; /* empty for a targeted replay */
  bool dry_run;
  kjb_reset_spec reset;
  bool has_reset;
  char reset_text[72];
  bool targeted;         /* of the dead letters filter selects */
  kjb_dlq_filter filter; /* owned */
  char actor[KJB_AUDIT_ACTOR_MAX + 1];
  kjb_replay_stats counts; /* written by the replay thread */
  json_t *by_reason;       /* once it ended: the tallies per reason */
  char error[512];
  int64_t started_us, finished_us;
} replay_job;

/* An admin token that is set. */
typedef struct {
  char *name; /* the actor of its actions */
  char *value;
} api_token;

struct kjb_api {
  const kjb_config *cfg;
  char node[160];
  char roles[64];
  kjb_executor *ex;
  kjb_stats *stats;
  api_token *tokens; /* none: admin actions disabled */
  size_t ntokens;
  int64_t started_mono_us;

  /* Showing a dead letter: its row, its record read from Kafka (which may
   * take seconds) and decoded. One request at a time, on a connection of
   * its own so that the other requests need not wait for Kafka; all
   * created on first use. */
  pthread_mutex_t dlq_mu;
  kjb_store *dlq_db;
  kjb_dlq_reader *reader;
  kjb_catalog *cat;

  pthread_mutex_t db_mu; /* one request at a time on db */
  kjb_store *db;

  pthread_mutex_t replay_mu;
  replay_job replay;
  volatile sig_atomic_t replay_stop;
};

/* ---- helpers ------------------------------------------------------------ */

static void put_json(kjb_buf *out, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  if (s) {
    kjb_buf_puts(out, s);
    free(s);
  } else {
    kjb_buf_puts(out, "{\"error\":\"could not encode the answer\"}");
  }
  json_decref(j);
}

static unsigned error_reply(kjb_buf *out, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static unsigned error_reply(kjb_buf *out, unsigned status, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Quotes are cut with kjb_utf8_prefix; should a message still end in
   * a cut character (vsnprintf's limit), it loses that end rather than
   * the whole answer. */
  long bad = kjb_utf8_invalid_at(msg, strlen(msg));
  if (bad >= 0)
    msg[bad] = '\0';
  put_json(out, json_pack("{s:s}", "error", msg));
  return status;
}

/* At most 64 bytes of a request value, for quoting it in an error. */
#define QUOTE(s) (int)kjb_utf8_prefix((s), 64), (s)

/* A timestamp, or null for one that is not set. */
static json_t *time_json(int64_t epoch_us) {
  return epoch_us <= 0 ? json_null() : kjb_json_rfc3339(epoch_us);
}

/* The connection in *slot, connected on first use. */
static kjb_store *connected(kjb_api *api, kjb_store **slot, kjb_err *err) {
  if (!*slot)
    *slot = kjb_store_connect(api->cfg->postgres.conninfo, api->cfg->postgres.schema, err);
  return *slot;
}

/* After a failed query: drop the connection in *slot when it is broken. */
static void drop_broken(kjb_store **slot) {
  if (*slot && PQstatus(kjb_store_conn(*slot)) != CONNECTION_OK) {
    kjb_store_free(*slot);
    *slot = NULL;
  }
}

/* The database connection, connected on first use; under db_mu. */
static kjb_store *db(kjb_api *api, kjb_err *err) { return connected(api, &api->db, err); }

static void db_failed(kjb_api *api) { drop_broken(&api->db); }

/* The job id in the n bytes at s: 0, or -1 when it is not an integer from 1
 * to INT64_MAX. */
static int job_id(const char *s, size_t n, int64_t *id) {
  char buf[24];
  if (n >= sizeof buf)
    return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return kjb_parse_i64(buf, 1, INT64_MAX, id);
}

/* ---- /api/stats ---------------------------------------------------------- */

typedef struct {
  json_t *arr;
  double sum;
  const char *match;   /* only series whose first label is this; NULL for all */
  const char *k1, *k2; /* names for the first two labels in arr's objects */
  const char *vname;   /* name of the value; NULL: just sum */
} each_acc;

static void each_cb(void *arg, const char *const *labels, int n, double v) {
  each_acc *a = arg;
  if (a->match && (n < 1 || strcmp(labels[0], a->match) != 0))
    return;
  a->sum += v;
  if (!a->vname || n < 2)
    return;
  json_t *o = json_object();
  json_object_set_new(o, a->k1, json_string(labels[0]));
  if (strcmp(a->k2, "partition") == 0)
    json_object_set_new(o, a->k2, json_integer(strtol(labels[1], NULL, 10)));
  else
    json_object_set_new(o, a->k2, json_string(labels[1]));
  json_object_set_new(o, a->vname, json_integer((json_int_t)v));
  json_array_append_new(a->arr, o);
}

static double metric_sum(const char *name, const char *first_label) {
  each_acc a = {.match = first_label};
  kjb_metrics_each(name, each_cb, &a);
  return a.sum;
}

static json_t *labelled(const char *name, const char *k1, const char *k2, const char *vname) {
  each_acc a = {.arr = json_array(), .k1 = k1, .k2 = k2, .vname = vname};
  kjb_metrics_each(name, each_cb, &a);
  return a.arr;
}

static json_t *quantiles(const char *name, const char *kind) {
  static const double q[] = {0.5, 0.9, 0.99};
  double v[3];
  uint64_t count = 0;
  if (kjb_histogram_quantiles(name, q, 3, v, &count, "kind", kind, NULL) < 0)
    return json_pack("{s:i, s:n, s:n, s:n}", "count", 0, "p50", "p90", "p99");
  return json_pack("{s:I, s:f, s:f, s:f}", "count", (json_int_t)count, "p50", v[0], "p90", v[1],
                   "p99", v[2]);
}

static const kjb_handler_cfg *handler_of(const kjb_config *cfg, const char *kind) {
  for (size_t i = 0; i < cfg->nhandlers; i++)
    if (strcmp(cfg->handlers[i].kind, kind) == 0)
      return &cfg->handlers[i];
  return NULL;
}

static json_t *kind_json(kjb_api *api, const char *kind) {
  const kjb_handler_cfg *h = handler_of(api->cfg, kind);
  const char *breaker = NULL;
  double tokens = 0;
  if (api->ex)
    kjb_executor_kind_status(api->ex, kind, &breaker, &tokens);
  json_t *rate = json_null();
  if (h && h->rate_limit.enabled)
    rate =
        json_pack("{s:f, s:s, s:f}", "rate", h->rate_limit.rate, "scope",
                  h->rate_limit.scope == KJB_SCOPE_CLUSTER ? "cluster" : "local", "tokens", tokens);
  json_t *br = json_null();
  if (breaker)
    br = json_string(strcmp(breaker, "half-open") == 0 ? "half_open" : breaker);
  const char *fin = "kjb_jobs_finished_total";
  return json_pack(
      "{s:s, s:I, s:{s:I, s:I, s:I}, s:o, s:o, s:o, s:o}", "kind", kind, "inserted",
      (json_int_t)kjb_counter_get("kjb_jobs_inserted_total", "kind", kind, NULL), "finished",
      "completed", (json_int_t)kjb_counter_get(fin, "kind", kind, "outcome", "completed", NULL),
      "retried", (json_int_t)kjb_counter_get(fin, "kind", kind, "outcome", "retried", NULL),
      "discarded", (json_int_t)kjb_counter_get(fin, "kind", kind, "outcome", "discarded", NULL),
      "latency", quantiles("kjb_job_queue_latency_seconds", kind), "duration",
      quantiles("kjb_job_duration_seconds", kind), "rate_limit", rate, "breaker", br);
}

static json_t *kinds_json(kjb_api *api) {
  const char *kinds[64];
  size_t n = kjb_config_kinds(api->cfg, kinds, 64);
  json_t *arr = json_array();
  for (size_t i = 0; i < n && i < 64; i++)
    json_array_append_new(arr, kind_json(api, kinds[i]));
  return arr;
}

static json_t *topics_json(const kjb_config *cfg) {
  json_t *arr = json_array();
  for (size_t t = 0; t < cfg->ntopics; t++) {
    const char *topic = cfg->topics[t].topic;
    json_array_append_new(
        arr,
        json_pack("{s:s, s:I, s:I}", "topic", topic, "consumed",
                  (json_int_t)kjb_counter_get("kjb_records_consumed_total", "topic", topic, NULL),
                  "dead_lettered",
                  (json_int_t)metric_sum("kjb_records_dead_lettered_total", topic)));
  }
  return arr;
}

/* A filter as the JSON object kjb_dlq_filter_json writes. */
static json_t *filter_json(const kjb_dlq_filter *f) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_dlq_filter_json(f, &b);
  json_t *j = json_loadb(b.data, b.len, 0, NULL);
  kjb_buf_close(&b);
  return j ? j : json_null();
}

static json_t *replay_json(kjb_api *api) {
  pthread_mutex_lock(&api->replay_mu);
  const replay_job *r = &api->replay;
  json_t *j = json_null();
  /* While the replay runs, only its counts may be read (replay.h). */
  if (r->started)
    j = json_pack("{s:o, s:o, s:s, s:b, s:b, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "topic",
                  r->targeted ? json_null() : json_string(r->topic), "filter",
                  r->targeted ? filter_json(&r->filter) : json_null(), "actor", r->actor, "running",
                  r->running, "dry_run", r->dry_run, "selected", (json_int_t)r->counts.selected,
                  "replayed", (json_int_t)r->counts.replayed, "still_failing",
                  (json_int_t)r->counts.still_failing, "already_present",
                  (json_int_t)r->counts.already_present, "by_reason",
                  r->by_reason ? json_incref(r->by_reason) : json_null(), "error",
                  r->error[0] ? json_string(r->error) : json_null(), "started_at",
                  time_json(r->started_us), "finished_at", time_json(r->finished_us));
  pthread_mutex_unlock(&api->replay_mu);
  return j;
}

static unsigned get_stats(kjb_api *api, const kjb_api_health *h, kjb_buf *out) {
  json_t *counted_at = NULL;
  json_t *jobs = kjb_stats_jobs(api->stats, &counted_at);
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:o, s:f, s:{s:b, s:b, s:b, s:o}, s:b,"
      " s:{s:I, s:I, s:I}, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
      "version", KJB_VERSION, "node", api->node, "roles", api->roles, "now",
      time_json(kjb_now_wall_us()), "uptime_seconds",
      (double)(kjb_now_mono_us() - api->started_mono_us) / 1e6, "health", "live", h->live, "ready",
      h->ready, "started", h->started, "reason", h->reason ? json_string(h->reason) : json_null(),
      "admin_enabled", api->ntokens > 0, "ingest", "records_consumed",
      (json_int_t)metric_sum("kjb_records_consumed_total", NULL), "records_dead_lettered",
      (json_int_t)metric_sum("kjb_records_dead_lettered_total", NULL), "jobs_inserted",
      (json_int_t)metric_sum("kjb_jobs_inserted_total", NULL), "topics", topics_json(api->cfg),
      "dlq_reasons", labelled("kjb_records_dead_lettered_total", "topic", "reason", "count"), "lag",
      labelled("kjb_consumer_lag", "topic", "partition", "lag"), "jobs_by_state", jobs,
      "jobs_counted_at", counted_at, "kinds", kinds_json(api), "nodes", kjb_stats_nodes(api->stats),
      "replay", replay_json(api), "embedded_kafka",
      api->cfg->kafka.embedded ? json_string(api->cfg->kafka.brokers) : json_null());
  if (!j)
    return error_reply(out, 500, "could not build the snapshot");
  json_object_set_new(j, "paused", kjb_stats_paused(api->stats));
  json_object_set_new(j, "held_keys", kjb_stats_held_keys(api->stats));
  put_json(out, j);
  return 200;
}

/* ---- /api/jobs ----------------------------------------------------------- */

/* The columns of a job as JSON, shared by the list and the single job. */
#define JOB_JSON                                                                  \
  "'id', id, 'kind', kind, 'queue', queue, 'state', state, 'priority', priority," \
  " 'attempt', attempt, 'max_attempts', max_attempts, 'created_at', created_at,"  \
  " 'scheduled_at', scheduled_at, 'attempted_at', attempted_at,"                  \
  " 'finished_at', finished_at, 'attempted_by', attempted_by,"                    \
  " 'source', CASE WHEN source_topic IS NULL THEN NULL ELSE json_build_object("   \
  "'topic', source_topic, 'partition', source_partition, 'offset', source_offset) END"

/* Runs a query whose one row and column is JSON text; *status is set on
 * failure. Returns the parsed value (NULL for SQL NULL or on failure). */
static json_t *query_json(kjb_api *api, const char *what, const char *sql, int n,
                          const char *const *params, unsigned *status, kjb_buf *out) {
  kjb_err err;
  kjb_store *s = db(api, &err);
  PGresult *res = s ? kjb_store_query(s, what, sql, n, params, &err) : NULL;
  if (!res) {
    db_failed(api);
    *status = error_reply(out, 503, "%s", err.msg);
    return NULL;
  }
  json_t *j = NULL;
  if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
    const char *text = PQgetvalue(res, 0, 0);
    j = json_loadb(text, strlen(text), JSON_DECODE_ANY, NULL);
    if (!j)
      *status = error_reply(out, 500, "could not read the database's answer");
  }
  PQclear(res);
  return j;
}

unsigned kjb_api_parse_jobs_query(kjb_api_param_fn param, void *cls, kjb_api_jobs_query *q,
                                  kjb_buf *out) {
  const char *limit_s = param(cls, "limit"), *before_s = param(cls, "before");
  *q = (kjb_api_jobs_query){param(cls, "state"), param(cls, "kind"), JOBS_LIMIT_DEFAULT, 0};
  if (q->state && !kjb_jobs_state_valid(q->state))
    return error_reply(out, 400, "unknown state \"%.*s\"", QUOTE(q->state));
  if (limit_s && kjb_parse_i64(limit_s, 1, KJB_API_JOBS_LIMIT_MAX, &q->limit) < 0)
    return error_reply(out, 400, "limit must be a number from 1 to %d", KJB_API_JOBS_LIMIT_MAX);
  if (before_s && kjb_parse_i64(before_s, 1, INT64_MAX, &q->before) < 0)
    return error_reply(out, 400, "before must be a job id");
  return 0;
}

static unsigned get_jobs(kjb_api *api, kjb_api_param_fn param, void *cls, kjb_buf *out) {
  kjb_api_jobs_query q;
  unsigned status = kjb_api_parse_jobs_query(param, cls, &q, out);
  if (status)
    return status;
  kjb_jobs_filter f = {
      .state = q.state, .kind = q.kind, .before = q.before, .limit = (long)q.limit};
  kjb_err err;
  pthread_mutex_lock(&api->db_mu);
  kjb_store *s = db(api, &err);
  PGresult *res =
      s ? kjb_jobs_list(s, "json_build_object(" JOB_JSON ", 'last_error', errors -> -1)", &f,
                        "list jobs", &err)
        : NULL;
  if (!res)
    db_failed(api);
  pthread_mutex_unlock(&api->db_mu);
  if (!res)
    return error_reply(out, 503, "%s", err.msg);
  json_t *jobs = json_array();
  for (int r = 0; r < PQntuples(res); r++) {
    const char *text = PQgetvalue(res, r, 0);
    json_t *job = json_loadb(text, strlen(text), JSON_DECODE_ANY, NULL);
    if (!job) {
      PQclear(res);
      json_decref(jobs);
      return error_reply(out, 500, "could not read the database's answer");
    }
    json_array_append_new(jobs, job);
  }
  PQclear(res);
  size_t n = json_array_size(jobs);
  json_t *next = json_null();
  if (n == (size_t)q.limit)
    next = json_incref(json_object_get(json_array_get(jobs, n - 1), "id"));
  put_json(out, json_pack("{s:o, s:o}", "jobs", jobs, "next_before", next));
  return 200;
}

static unsigned get_job(kjb_api *api, int64_t id, kjb_buf *out) {
  char id_txt[24];
  snprintf(id_txt, sizeof id_txt, "%" PRId64, id);
  const char *params[] = {id_txt};
  unsigned status = 200;
  pthread_mutex_lock(&api->db_mu);
  json_t *job = query_json(api, "show job",
                           "SELECT json_build_object(" JOB_JSON
                           ", 'args', args, 'meta', meta, 'errors', errors,"
                           " 'unique_key', unique_key) FROM jobs WHERE id = $1::bigint",
                           1, params, &status, out);
  pthread_mutex_unlock(&api->db_mu);
  if (!job)
    return status == 200 ? error_reply(out, 404, "no job %" PRId64, id) : status;
  put_json(out, job);
  return 200;
}

unsigned kjb_api_parse_dlq_query(kjb_api_param_fn param, void *cls, int *limit, kjb_buf *out) {
  const char *limit_s = param(cls, "limit");
  int64_t n = JOBS_LIMIT_DEFAULT;
  if (limit_s && kjb_parse_i64(limit_s, 1, KJB_STATS_DEAD_LETTERS, &n) < 0)
    return error_reply(out, 400, "limit must be a number from 1 to %d", KJB_STATS_DEAD_LETTERS);
  *limit = (int)n;
  return 0;
}

static unsigned get_dlq(kjb_api_param_fn param, void *cls, kjb_buf *out) {
  int limit = 0; /* set unless an error reply is made */
  unsigned status = kjb_api_parse_dlq_query(param, cls, &limit, out);
  if (status)
    return status;
  put_json(out, kjb_stats_dead_letters(limit));
  return 200;
}

/* Whether path is prefix, a segment and then exactly suffix (NULL for
 * nothing): 1 with *id when the segment is an id from 1 to INT64_MAX, 0
 * when it is anything else, -1 when the path has another shape. */
static int id_path(const char *path, const char *prefix, const char *suffix, int64_t *id) {
  size_t pl = strlen(prefix);
  if (strncmp(path, prefix, pl) != 0)
    return -1;
  /* The segment, whatever it holds, is the id: a bad one is a bad id
   * (400), not an unknown path (404). */
  const char *seg = path + pl;
  size_t n = strcspn(seg, "/");
  if (n == 0 || strcmp(seg + n, suffix ? suffix : "") != 0)
    return -1;
  return job_id(seg, n, id) == 0;
}

int kjb_api_job_path(const char *path, const char *suffix, int64_t *id) {
  return id_path(path, "/api/jobs/", suffix, id);
}

#define DEAD_LETTERS "/api/dead-letters"
#define DEAD_LETTERS_IGNORE DEAD_LETTERS "/ignore"
#define DEAD_LETTERS_REPLAY DEAD_LETTERS "/replay"

int kjb_api_dead_letter_path(const char *path, int64_t *id) {
  return id_path(path, DEAD_LETTERS "/", NULL, id);
}

/* "/api/kinds/<kind>/pause|resume" or "/api/queues/<queue>/pause|resume":
 * true with the scope, the name (len bytes at *name) and whether to pause. */
static bool pause_path(const char *path, kjb_pause_scope *scope, const char **name, size_t *len,
                       bool *pause) {
  static const char kinds[] = "/api/kinds/", queues[] = "/api/queues/";
  const char *seg;
  if (strncmp(path, kinds, sizeof kinds - 1) == 0) {
    *scope = KJB_PAUSE_KIND;
    seg = path + sizeof kinds - 1;
  } else if (strncmp(path, queues, sizeof queues - 1) == 0) {
    *scope = KJB_PAUSE_QUEUE;
    seg = path + sizeof queues - 1;
  } else {
    return false;
  }
  size_t n = strcspn(seg, "/");
  if (n == 0 || n > 200)
    return false;
  *pause = strcmp(seg + n, "/pause") == 0;
  if (!*pause && strcmp(seg + n, "/resume") != 0)
    return false;
  *name = seg;
  *len = n;
  return true;
}

bool kjb_api_is_post_path(const char *path) {
  int64_t id;
  kjb_pause_scope scope;
  const char *name;
  size_t len;
  bool pause;
  return pause_path(path, &scope, &name, &len, &pause) || strcmp(path, "/api/replay") == 0 ||
         strcmp(path, DEAD_LETTERS_IGNORE) == 0 || strcmp(path, DEAD_LETTERS_REPLAY) == 0 ||
         kjb_api_job_path(path, "/retry", &id) >= 0 || kjb_api_job_path(path, "/cancel", &id) >= 0;
}

bool kjb_api_is_get_path(const char *path) {
  int64_t id;
  if (kjb_api_is_post_path(path))
    return false;
  return strcmp(path, "/api/stats") == 0 || strcmp(path, "/api/jobs") == 0 ||
         strcmp(path, "/api/dlq") == 0 || strcmp(path, DEAD_LETTERS) == 0 ||
         strcmp(path, "/api/audit") == 0 || kjb_api_job_path(path, NULL, &id) >= 0 ||
         kjb_api_dead_letter_path(path, &id) >= 0;
}

/* ---- /api/dead-letters and /api/audit ------------------------------------ */

#define DEAD_LETTERS_LIMIT_DEFAULT 50

/* Adds one filter given as text; 0 or a 400. */
static unsigned add_filter(kjb_dlq_filter *f, const char *name, const char *value, int64_t now_us,
                           kjb_buf *out) {
  kjb_dlq_filter_field field;
  if (kjb_dlq_filter_lookup(name, &field) < 0)
    return error_reply(out, 400, "unknown filter \"%.*s\"", QUOTE(name));
  kjb_err err;
  if (kjb_dlq_filter_set(f, field, value, now_us, "", &err) < 0)
    return error_reply(out, 400, "%s", err.msg);
  return 0;
}

unsigned kjb_api_parse_dead_letters_query(kjb_api_param_at_fn param_at, void *cls, int64_t now_us,
                                          kjb_api_dead_letters_query *q, kjb_buf *out) {
  kjb_dlq_filter_init(&q->filter);
  q->limit = DEAD_LETTERS_LIMIT_DEFAULT;
  q->after_id = 0;
  bool has_limit = false, has_after = false;
  const char *name, *value;
  for (size_t i = 0; (value = param_at(cls, i, &name)); i++) {
    if (strcmp(name, "limit") == 0) {
      if (has_limit)
        return error_reply(out, 400, "limit given twice");
      has_limit = true;
      if (kjb_parse_i64(value, 1, KJB_API_DEAD_LETTERS_LIMIT_MAX, &q->limit) < 0)
        return error_reply(out, 400, "limit must be a number from 1 to %d",
                           KJB_API_DEAD_LETTERS_LIMIT_MAX);
    } else if (strcmp(name, "after_id") == 0) {
      if (has_after)
        return error_reply(out, 400, "after_id given twice");
      has_after = true;
      if (kjb_parse_i64(value, 0, INT64_MAX, &q->after_id) < 0)
        return error_reply(out, 400, "after_id must be a dead letter's id");
    } else {
      kjb_dlq_filter_field field;
      if (kjb_dlq_filter_lookup(name, &field) < 0)
        return error_reply(out, 400, "unknown parameter \"%.*s\"", QUOTE(name));
      unsigned status = add_filter(&q->filter, name, value, now_us, out);
      if (status)
        return status;
    }
  }
  kjb_err err;
  if (kjb_dlq_filter_check(&q->filter, "", &err) < 0)
    return error_reply(out, 400, "%s", err.msg);
  return 0;
}

static unsigned get_dead_letters(kjb_api *api, kjb_api_param_at_fn param_at, void *cls,
                                 kjb_buf *out) {
  kjb_api_dead_letters_query q;
  unsigned status = kjb_api_parse_dead_letters_query(param_at, cls, kjb_now_wall_us(), &q, out);
  if (status) {
    kjb_dlq_filter_close(&q.filter);
    return status;
  }
  kjb_err err;
  json_t *rows = NULL;
  pthread_mutex_lock(&api->db_mu);
  kjb_store *s = db(api, &err);
  /* One more than asked tells whether there is a next page. */
  int rc =
      s ? kjb_dlqindex_list_json(s, &q.filter, q.after_id, (long)q.limit + 1, &rows, &err) : -1;
  if (rc < 0)
    db_failed(api);
  pthread_mutex_unlock(&api->db_mu);
  kjb_dlq_filter_close(&q.filter);
  if (rc < 0)
    return error_reply(out, 503, "%s", err.msg);
  json_t *next = json_null();
  if (json_array_size(rows) > (size_t)q.limit) {
    json_array_remove(rows, (size_t)q.limit);
    next = json_incref(json_object_get(json_array_get(rows, (size_t)q.limit - 1), "id"));
  }
  put_json(out, json_pack("{s:o, s:o}", "dead_letters", rows, "next_after_id", next));
  return 200;
}

/* The reader of DLQ records, created on first use; under dlq_mu. The
 * catalog is a bonus, as for `kjb dlq show`: without it (a registry
 * away) the record is shown undecoded, and the next request tries again. */
static kjb_dlq_reader *reader(kjb_api *api, kjb_err *err) {
  if (!api->reader)
    api->reader = kjb_dlq_reader_new(api->cfg, err);
  if (api->reader && !api->cat) {
    kjb_err cat_err;
    api->cat = kjb_catalog_new(api->cfg, &cat_err);
    if (!api->cat)
      kjb_warn("api: not decoding dead letters: %s", cat_err.msg);
  }
  return api->reader;
}

static unsigned get_dead_letter(kjb_api *api, int64_t id, kjb_buf *out) {
  kjb_err err;
  json_t *o = NULL;
  kjb_dlqindex_shown res;
  int rc = -1;
  pthread_mutex_lock(&api->dlq_mu);
  kjb_dlq_reader *r = reader(api, &err);
  kjb_store *s = r ? connected(api, &api->dlq_db, &err) : NULL;
  if (s && (rc = kjb_dlqindex_show_json(s, r, api->cat, api->cfg, id, &o, &res, &err)) < 0)
    drop_broken(&api->dlq_db);
  pthread_mutex_unlock(&api->dlq_mu);
  if (rc < 0)
    return error_reply(out, 503, "%s", err.msg);
  if (!o)
    return error_reply(out, 404, "no dead letter %" PRId64, id);
  put_json(out, o);
  return 200;
}

#define AUDIT_LIMIT_MAX 1000

static unsigned get_audit(kjb_api *api, kjb_api_param_fn param, void *cls, kjb_buf *out) {
  const char *limit_s = param(cls, "limit");
  int64_t limit = 50;
  if (limit_s && kjb_parse_i64(limit_s, 1, AUDIT_LIMIT_MAX, &limit) < 0)
    return error_reply(out, 400, "limit must be a number from 1 to %d", AUDIT_LIMIT_MAX);
  kjb_err err;
  json_t *rows = NULL;
  pthread_mutex_lock(&api->db_mu);
  kjb_store *s = db(api, &err);
  int rc = s ? kjb_audit_list_json(s, (long)limit, &rows, &err) : -1;
  if (rc < 0)
    db_failed(api);
  pthread_mutex_unlock(&api->db_mu);
  if (rc < 0)
    return error_reply(out, 503, "%s", err.msg);
  put_json(out, json_pack("{s:o}", "audit", rows));
  return 200;
}

unsigned kjb_api_get(kjb_api *api, const char *path, kjb_api_param_fn param,
                     kjb_api_param_at_fn param_at, void *cls, const kjb_api_health *health,
                     kjb_buf *out) {
  int64_t id;
  int m;
  if (strcmp(path, "/api/stats") == 0)
    return get_stats(api, health, out);
  if (strcmp(path, "/api/jobs") == 0)
    return get_jobs(api, param, cls, out);
  if (strcmp(path, "/api/dlq") == 0)
    return get_dlq(param, cls, out);
  if (strcmp(path, DEAD_LETTERS) == 0)
    return get_dead_letters(api, param_at, cls, out);
  if (strcmp(path, "/api/audit") == 0)
    return get_audit(api, param, cls, out);
  if ((m = kjb_api_job_path(path, NULL, &id)) >= 0)
    return m ? get_job(api, id, out) : error_reply(out, 400, "bad job id");
  if ((m = kjb_api_dead_letter_path(path, &id)) >= 0)
    return m ? get_dead_letter(api, id, out) : error_reply(out, 400, "bad dead letter id");
  return error_reply(out, 404, "not found");
}

/* ---- admin actions ------------------------------------------------------- */

bool kjb_api_admin_enabled(const kjb_api *api) { return api->ntokens > 0; }

unsigned kjb_api_match_bearer(const char *const *tokens, size_t n, const char *authorization,
                              size_t len, size_t *which, const char **why) {
  if (n == 0) {
    *why = "admin API disabled: set the environment variable named by http.admin_token_env "
           "or http.admin_tokens";
    return 403;
  }
  static const char bearer[] = "Bearer ";
  size_t bl = sizeof bearer - 1;
  if (!authorization || len < bl || strncasecmp(authorization, bearer, bl) != 0) {
    *why = "missing bearer token";
    return 401;
  }
  /* No early exit and no branch on a comparison's outcome: the first
   * match is kept by masks. */
  size_t found = n;
  for (size_t i = 0; i < n; i++) {
    size_t eq =
        (size_t)kjb_secret_equal(authorization + bl, len - bl, tokens[i], strlen(tokens[i]));
    size_t take = (size_t)0 - (eq & (size_t)(found == n));
    found = (found & ~take) | (i & take);
  }
  if (found == n) {
    *why = "wrong token";
    return 403;
  }
  *which = found;
  return 0;
}

unsigned kjb_api_check_bearer(const char *token, const char *authorization, size_t len,
                              const char **why) {
  size_t which;
  return kjb_api_match_bearer(&token, token ? 1 : 0, authorization, len, &which, why);
}

unsigned kjb_api_authorize(const kjb_api *api, const char *authorization, size_t len,
                           const char **actor, const char **why) {
  const char *values[KJB_CONFIG_ADMIN_TOKENS_MAX + 1]; /* and "admin" */
  size_t n = api->ntokens;
  assert(n <= sizeof values / sizeof values[0]);
  for (size_t i = 0; i < n; i++)
    values[i] = api->tokens[i].value;
  size_t which;
  unsigned status = kjb_api_match_bearer(values, n, authorization, len, &which, why);
  if (!status)
    *actor = api->tokens[which].name;
  return status;
}

static unsigned job_action(kjb_api *api, int64_t id, int retry, const char *actor, kjb_buf *out) {
  kjb_err err;
  kjb_jobs_result res;
  pthread_mutex_lock(&api->db_mu);
  kjb_store *s = db(api, &err);
  int rc = s ? (retry ? kjb_jobs_retry(s, id, actor, &res, &err)
                      : kjb_jobs_cancel(s, id, actor, &res, &err))
             : -1;
  if (rc < 0)
    db_failed(api);
  pthread_mutex_unlock(&api->db_mu);
  if (rc < 0)
    return error_reply(out, 503, "%s", err.msg);
  if (res.outcome == KJB_JOBS_NOT_FOUND)
    return error_reply(out, 404, "no job %" PRId64, id);
  if (res.outcome == KJB_JOBS_WRONG_STATE)
    return error_reply(out, 409, "job %" PRId64 " is %s", id, res.state);
  kjb_info("admin: job %" PRId64 " %s by %s", id, retry ? "retried" : "cancelled", actor);
  put_json(out, json_pack("{s:I, s:s}", "id", (json_int_t)id, "state",
                          retry ? "available" : "cancelled"));
  return 200;
}

static unsigned pause_action(kjb_api *api, kjb_pause_scope scope, const char *seg, size_t len,
                             bool pause, const char *actor, kjb_buf *out) {
  char *name = kjb_xstrndup(seg, len);
  kjb_err err;
  kjb_pause_result res;
  pthread_mutex_lock(&api->db_mu);
  kjb_store *s = db(api, &err);
  int rc = s ? kjb_pause_set(s, scope, name, pause, actor, &res, &err) : -1;
  if (rc < 0)
    db_failed(api);
  pthread_mutex_unlock(&api->db_mu);
  unsigned status = 200;
  if (rc < 0) {
    status = error_reply(out, 503, "%s", err.msg);
  } else {
    if (res.changed)
      kjb_info("admin: %s %s %s by %s", kjb_pause_scope_name(scope), name,
               pause ? "paused" : "resumed", actor);
    put_json(out, json_pack("{s:s, s:b, s:b, s:o, s:o}", kjb_pause_scope_name(scope), name,
                            "paused", pause, "changed", res.changed, "since",
                            res.since[0] ? json_string(res.since) : json_null(), "by",
                            res.by[0] ? json_string(res.by) : json_null()));
  }
  free(name);
  return status;
}

static void *replay_main(void *arg) {
  kjb_api *api = arg;
  replay_job *r = &api->replay;
  /* A targeted replay has no topic of its own; the first mapping's DLQ
   * stands in for the field it does not use. */
  kjb_replay_opts o = {.topic = r->targeted ? api->cfg->topics[0].dlq : r->topic,
                       .reset = r->has_reset ? &r->reset : NULL,
                       .reset_text = r->has_reset ? r->reset_text : NULL,
                       .dry_run = r->dry_run,
                       .actor = r->actor,
                       .filter = r->targeted ? &r->filter : NULL};
  kjb_err err;
  int rc = kjb_replay_run(api->cfg, &o, &r->counts, &api->replay_stop, &err);
  json_t *st = kjb_replay_stats_json(&r->counts, r->dry_run);
  pthread_mutex_lock(&api->replay_mu);
  if (rc < 0)
    snprintf(r->error, sizeof r->error, "%s", err.msg);
  r->by_reason = json_incref(json_object_get(st, "by_reason"));
  r->running = false;
  r->finished_us = kjb_now_wall_us();
  kjb_log(rc < 0 ? KJB_LOG_WARN : KJB_LOG_INFO,
          "admin: replay of %s%s%s by %s %s%s: replayed %llu, still failing %llu, already "
          "present %llu",
          r->targeted ? "" : "\"", r->targeted ? "selected dead letters" : r->topic,
          r->targeted ? "" : "\"", r->actor, rc < 0 ? "failed: " : "finished",
          rc < 0 ? err.msg : "", (unsigned long long)r->counts.replayed,
          (unsigned long long)r->counts.still_failing,
          (unsigned long long)r->counts.already_present);
  kjb_replay_stats_close(&r->counts); /* the status shows the counts only */
  pthread_mutex_unlock(&api->replay_mu);
  json_decref(st);
  return NULL;
}
unsigned kjb_api_parse_replay(const kjb_config *cfg, const char *body, size_t len,
                              kjb_api_replay_req *req, kjb_buf *out) {
  json_t *j = NULL;
  if (len > 0) {
    json_error_t je;
    j = json_loadb(body, len, 0, &je);
    if (!j)
      return error_reply(out, 400, "the body is not valid JSON: %s at byte %d", je.text,
                         je.position);
    if (!json_is_object(j)) {
      json_decref(j);
      return error_reply(out, 400, "the body must be a JSON object");
    }
  }
  const char *topic = cfg->ntopics ? cfg->topics[0].dlq : NULL;
  const char *reset = NULL;
  bool dry_run = false;
  json_t *v;
  unsigned status = 0;
  if ((v = json_object_get(j, "topic")) && !json_is_null(v)) {
    if (!json_is_string(v))
      status = error_reply(out, 400, "topic must be a string");
    else if (json_string_length(v) > 0)
      topic = json_string_value(v);
  }
  if (!status && (v = json_object_get(j, "reset_offsets")) && !json_is_null(v)) {
    if (!json_is_string(v))
      status = error_reply(out, 400, "reset_offsets must be a string");
    else if (json_string_length(v) > 0)
      reset = json_string_value(v);
  }
  if (!status && (v = json_object_get(j, "dry_run")) && !json_is_null(v)) {
    if (!json_is_boolean(v))
      status = error_reply(out, 400, "dry_run must be true or false");
    else
      dry_run = json_is_true(v);
  }
  kjb_reset_spec spec = {0};
  kjb_err err;
  if (!status && !topic)
    status = error_reply(out, 400, "no topic given and none configured");
  if (!status && kjb_replay_check_topic(cfg, topic, &err) < 0)
    status = error_reply(out, 400, "%s", err.msg);
  if (!status && reset && kjb_reset_parse(reset, &spec, &err) < 0)
    status = error_reply(out, 400, "reset_offsets: %s", err.msg);
  if (!status) {
    *req = (kjb_api_replay_req){.dry_run = dry_run, .has_reset = reset != NULL, .reset = spec};
    /* A dead-letter topic of the configuration: a legal topic name, which
     * fits. */
    snprintf(req->topic, sizeof req->topic, "%s", topic);
    if (reset) {
      int shown = (int)kjb_utf8_prefix(reset, 64);
      snprintf(req->reset_text, sizeof req->reset_text, "%.*s%s", shown, reset,
               reset[shown] ? "..." : "");
    }
  }
  json_decref(j);
  return status;
}

/* Starts a replay in the background, one at a time: *job (its topic or
 * filter and options set) becomes the current one, its filter moved in.
 * Returns 202 with {"started": true, "replay": ...}, or 409 while
 * another runs. */
static unsigned start_job(kjb_api *api, replay_job *job, kjb_buf *out) {
  pthread_mutex_lock(&api->replay_mu);
  replay_job *r = &api->replay;
  if (r->running) {
    pthread_mutex_unlock(&api->replay_mu);
    kjb_dlq_filter_close(&job->filter);
    return error_reply(out, 409, "a replay is running (started by %s)", r->actor);
  }
  if (r->joinable)
    pthread_join(r->thread, NULL);
  kjb_replay_stats_close(&r->counts);
  kjb_dlq_filter_close(&r->filter);
  json_decref(r->by_reason);
  *r = *job;
  r->started = r->running = true;
  r->started_us = kjb_now_wall_us();
  api->replay_stop = 0;
  if (pthread_create(&r->thread, NULL, replay_main, api) != 0) {
    r->running = false;
    snprintf(r->error, sizeof r->error, "could not start the replay thread");
    pthread_mutex_unlock(&api->replay_mu);
    return error_reply(out, 500, "could not start the replay thread");
  }
  r->joinable = true;
  if (r->targeted)
    kjb_info("admin: replaying selected dead letters%s (by %s)", r->dry_run ? " (dry run)" : "",
             r->actor);
  else
    kjb_info("admin: replaying \"%s\"%s%s%s (by %s)", r->topic, r->has_reset ? " from " : "",
             r->reset_text, r->dry_run ? " (dry run)" : "", r->actor);
  pthread_mutex_unlock(&api->replay_mu);
  put_json(out, json_pack("{s:b, s:o}", "started", 1, "replay", replay_json(api)));
  return 202;
}

static unsigned start_replay(kjb_api *api, const char *actor, const char *body, size_t len,
                             kjb_buf *out) {
  kjb_api_replay_req req;
  unsigned status = kjb_api_parse_replay(api->cfg, body, len, &req, out);
  if (status)
    return status;
  replay_job job = {.dry_run = req.dry_run, .reset = req.reset, .has_reset = req.has_reset};
  snprintf(job.topic, sizeof job.topic, "%s", req.topic);
  snprintf(job.reset_text, sizeof job.reset_text, "%s", req.reset_text);
  snprintf(job.actor, sizeof job.actor, "%s", actor);
  return start_job(api, &job, out);
}

/* ---- POST /api/dead-letters/ignore and /replay ---------------------------- */

/* One member of the body's filter object (what names it in messages:
 * "filter id", "ids"); 0 or a 400. */
static unsigned filter_member(kjb_dlq_filter *f, const char *what, const char *name, json_t *v,
                              int64_t now_us, kjb_buf *out) {
  kjb_dlq_filter_field field;
  if (kjb_dlq_filter_lookup(name, &field) < 0)
    return error_reply(out, 400, "unknown filter \"%.*s\"", QUOTE(name));
  if (json_is_null(v))
    return 0;
  if (field == KJB_DLQ_F_ID) {
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
      json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
      if (!json_is_integer(e))
        return error_reply(out, 400, "%s must be %s", what,
                           strcmp(what, "ids") == 0 ? "an array of integers"
                                                    : "an integer or an array of them");
      char text[24];
      snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(e));
      unsigned status = add_filter(f, name, text, now_us, out);
      if (status)
        return status;
    }
    return 0;
  }
  if (!json_is_string(v))
    return error_reply(out, 400, "filter %s must be a string", kjb_dlq_filter_name(field));
  return add_filter(f, name, json_string_value(v), now_us, out);
}

unsigned kjb_api_parse_selection(const char *body, size_t len, int64_t now_us, kjb_dlq_filter *f,
                                 bool *dry_run, kjb_buf *out) {
  kjb_dlq_filter_init(f);
  *dry_run = false;
  json_error_t je;
  json_t *j = json_loadb(body ? body : "", len, 0, &je);
  if (!j)
    return error_reply(out, 400, "the body is not valid JSON: %s at byte %d", je.text, je.position);
  unsigned status = 0;
  if (!json_is_object(j))
    status = error_reply(out, 400, "the body must be a JSON object");
  const char *key;
  json_t *v;
  json_object_foreach(j, key, v) {
    if (status)
      break;
    if (strcmp(key, "filter") == 0) {
      if (!json_is_object(v) && !json_is_null(v)) {
        status = error_reply(out, 400, "filter must be an object");
        break;
      }
      const char *name;
      json_t *fv;
      json_object_foreach(v, name, fv) {
        if ((status = filter_member(f, "filter id", name, fv, now_us, out)))
          break;
      }
    } else if (strcmp(key, "ids") == 0) {
      if (!json_is_array(v) && !json_is_null(v))
        status = error_reply(out, 400, "ids must be an array of integers");
      else if (json_array_size(v) > 0)
        status = filter_member(f, "ids", "id", v, now_us, out);
    } else if (strcmp(key, "dry_run") == 0) {
      if (json_is_boolean(v))
        *dry_run = json_is_true(v);
      else if (!json_is_null(v))
        status = error_reply(out, 400, "dry_run must be true or false");
    } else {
      status = error_reply(out, 400, "unknown field \"%.*s\" (expected filter, ids and dry_run)",
                           QUOTE(key));
    }
  }
  json_decref(j);
  kjb_err err;
  if (!status && kjb_dlq_filter_empty(f))
    status = error_reply(out, 400,
                         "no dead letters selected: give a filter or ids (to select every one, "
                         "say so with a filter such as {\"status\": \"dead\"})");
  if (!status && kjb_dlq_filter_check(f, "", &err) < 0)
    status = error_reply(out, 400, "%s", err.msg);
  return status;
}

static unsigned ignore_dead_letters(kjb_api *api, const char *actor, const char *body, size_t len,
                                    kjb_buf *out) {
  kjb_dlq_filter f;
  bool dry_run;
  unsigned status = kjb_api_parse_selection(body, len, kjb_now_wall_us(), &f, &dry_run, out);
  if (status) {
    kjb_dlq_filter_close(&f);
    return status;
  }
  kjb_err err;
  int64_t matched = 0, ignored = 0;
  pthread_mutex_lock(&api->db_mu);
  kjb_store *s = db(api, &err);
  int rc = !s        ? -1
           : dry_run ? kjb_dlqindex_ignore_count(s, &f, &matched, &ignored, &err)
                     : kjb_dlqindex_ignore(s, &f, actor, &matched, &ignored, &err);
  if (rc < 0)
    db_failed(api);
  pthread_mutex_unlock(&api->db_mu);
  kjb_dlq_filter_close(&f);
  if (rc < 0)
    return error_reply(out, 503, "%s", err.msg);
  if (!dry_run)
    kjb_info("admin: %" PRId64 " dead letters ignored (%" PRId64 " matched) by %s", ignored,
             matched, actor);
  put_json(out, json_pack("{s:I, s:I, s:b}", "matched", (json_int_t)matched, "ignored",
                          (json_int_t)ignored, "dry_run", dry_run));
  return 200;
}

static unsigned replay_dead_letters(kjb_api *api, const char *actor, const char *body, size_t len,
                                    kjb_buf *out) {
  replay_job job = {.targeted = true};
  bool dry_run;
  unsigned status =
      kjb_api_parse_selection(body, len, kjb_now_wall_us(), &job.filter, &dry_run, out);
  if (status) {
    kjb_dlq_filter_close(&job.filter);
    return status;
  }
  snprintf(job.actor, sizeof job.actor, "%s", actor);
  if (!dry_run)
    return start_job(api, &job, out);
  /* A dry run writes nothing and answers what it found; it may run beside
   * a real replay. */
  kjb_replay_opts o = {
      .topic = api->cfg->topics[0].dlq, .dry_run = 1, .actor = actor, .filter = &job.filter};
  kjb_replay_stats st = {0};
  kjb_err err;
  int rc = kjb_replay_run(api->cfg, &o, &st, &api->replay_stop, &err);
  kjb_dlq_filter_close(&job.filter);
  if (rc < 0) {
    kjb_replay_stats_close(&st);
    return error_reply(out, err.code == KJB_EUSAGE ? 400 : 503, "%s", err.msg);
  }
  put_json(out, kjb_replay_stats_json(&st, 1));
  kjb_replay_stats_close(&st);
  return 200;
}

unsigned kjb_api_post(kjb_api *api, const char *path, const char *actor, const char *body,
                      size_t len, kjb_buf *out) {
  int64_t id;
  int m;
  if (strcmp(path, "/api/replay") == 0)
    return start_replay(api, actor, body, len, out);
  if (strcmp(path, DEAD_LETTERS_IGNORE) == 0)
    return ignore_dead_letters(api, actor, body, len, out);
  if (strcmp(path, DEAD_LETTERS_REPLAY) == 0)
    return replay_dead_letters(api, actor, body, len, out);
  if ((m = kjb_api_job_path(path, "/retry", &id)) >= 0)
    return m ? job_action(api, id, 1, actor, out) : error_reply(out, 400, "bad job id");
  if ((m = kjb_api_job_path(path, "/cancel", &id)) >= 0)
    return m ? job_action(api, id, 0, actor, out) : error_reply(out, 400, "bad job id");
  kjb_pause_scope scope;
  const char *name;
  size_t nlen;
  bool pause;
  if (pause_path(path, &scope, &name, &nlen, &pause))
    return pause_action(api, scope, name, nlen, pause, actor, out);
  return error_reply(out, 404, "not found");
}

/* ---- lifecycle ------------------------------------------------------------ */

static void add_token(kjb_api *api, const char *name, const char *value) {
  api->tokens = kjb_xrealloc(api->tokens, (api->ntokens + 1) * sizeof *api->tokens);
  api->tokens[api->ntokens++] = (api_token){kjb_xstrdup(name), kjb_xstrdup(value)};
  kjb_log_secret(value);
}

/* The tokens that are set, "admin" first; a named one whose variable is
 * unset or empty is disabled, which the log says (never the value). */
static void read_tokens(kjb_api *api) {
  const kjb_config *cfg = api->cfg;
  const char *tok = cfg->http.admin_token_env ? getenv(cfg->http.admin_token_env) : NULL;
  if (tok && *tok)
    add_token(api, KJB_AUDIT_API_ADMIN, tok);
  for (size_t i = 0; i < cfg->http.nadmin_tokens; i++) {
    const kjb_admin_token_cfg *t = &cfg->http.admin_tokens[i];
    tok = getenv(t->env);
    if (!tok || !*tok) {
      kjb_warn("admin token \"%s\" disabled: the environment variable %s is unset or empty",
               t->name, t->env);
      continue;
    }
    for (size_t k = 0; k < api->ntokens; k++)
      if (strcmp(api->tokens[k].value, tok) == 0)
        kjb_warn("admin tokens \"%s\" and \"%s\" are the same; its actions are recorded as \"%s\"",
                 api->tokens[k].name, t->name, api->tokens[k].name);
    add_token(api, t->name, tok);
  }
}

kjb_api *kjb_api_new(const kjb_config *cfg, const char *node, const char *roles, kjb_executor *ex,
                     kjb_err *err) {
  kjb_api *api = kjb_xcalloc(1, sizeof *api);
  api->cfg = cfg;
  snprintf(api->node, sizeof api->node, "%s", node);
  snprintf(api->roles, sizeof api->roles, "%s", roles);
  api->ex = ex;
  api->started_mono_us = kjb_now_mono_us();
  read_tokens(api);
  pthread_mutex_init(&api->dlq_mu, NULL);
  pthread_mutex_init(&api->db_mu, NULL);
  pthread_mutex_init(&api->replay_mu, NULL);
  api->stats = kjb_stats_new(cfg, err);
  if (!api->stats) {
    kjb_api_free(api);
    return NULL;
  }
  return api;
}

void kjb_api_free(kjb_api *api) {
  if (!api)
    return;
  api->replay_stop = 1;
  if (api->replay.joinable)
    pthread_join(api->replay.thread, NULL);
  kjb_replay_stats_close(&api->replay.counts);
  kjb_dlq_filter_close(&api->replay.filter);
  json_decref(api->replay.by_reason);
  kjb_stats_free(api->stats);
  kjb_dlq_reader_free(api->reader);
  kjb_catalog_free(api->cat);
  kjb_store_free(api->dlq_db);
  kjb_store_free(api->db);
  pthread_mutex_destroy(&api->dlq_mu);
  pthread_mutex_destroy(&api->db_mu);
  pthread_mutex_destroy(&api->replay_mu);
  for (size_t i = 0; i < api->ntokens; i++) {
    free(api->tokens[i].name);
    free(api->tokens[i].value);
  }
  free(api->tokens);
  free(api);
}
