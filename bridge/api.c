/* The JSON API (see api.h and docs/http-api.md). Snapshots come from the
 * metric registry, the stats thread and the executor; /api/jobs and the
 * admin actions use one database connection of their own, one request at
 * a time. */
#include "api.h"

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
#include "jobs.h"
#include "log.h"
#include "metrics.h"
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
  char topic[256];
  bool dry_run;
  kjb_reset_spec reset;
  bool has_reset;
  char reset_text[72];
  kjb_replay_stats counts; /* written by the replay thread */
  char error[512];
  int64_t started_us, finished_us;
} replay_job;

struct kjb_api {
  const kjb_config *cfg;
  char node[160];
  char roles[64];
  kjb_executor *ex;
  kjb_stats *stats;
  char *token; /* NULL: admin actions disabled */
  int64_t started_mono_us;

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

/* The database connection, connected on first use; under db_mu. */
static kjb_store *db(kjb_api *api, kjb_err *err) {
  if (!api->db)
    api->db = kjb_store_connect(api->cfg->postgres.conninfo, api->cfg->postgres.schema, err);
  return api->db;
}

/* After a failed query: drop the connection when it is broken. */
static void db_failed(kjb_api *api) {
  if (api->db && PQstatus(kjb_store_conn(api->db)) != CONNECTION_OK) {
    kjb_store_free(api->db);
    api->db = NULL;
  }
}

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

static json_t *replay_json(kjb_api *api) {
  pthread_mutex_lock(&api->replay_mu);
  const replay_job *r = &api->replay;
  json_t *j = json_null();
  if (r->started)
    j = json_pack("{s:s, s:b, s:b, s:I, s:I, s:I, s:o, s:o, s:o}", "topic", r->topic, "running",
                  r->running, "dry_run", r->dry_run, "replayed", (json_int_t)r->counts.replayed,
                  "still_failing", (json_int_t)r->counts.still_failing, "already_present",
                  (json_int_t)r->counts.already_present, "error",
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
      "admin_enabled", api->token != NULL, "ingest", "records_consumed",
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
  int limit;
  unsigned status = kjb_api_parse_dlq_query(param, cls, &limit, out);
  if (status)
    return status;
  put_json(out, kjb_stats_dead_letters(limit));
  return 200;
}

int kjb_api_job_path(const char *path, const char *suffix, int64_t *id) {
  static const char prefix[] = "/api/jobs/";
  if (strncmp(path, prefix, sizeof prefix - 1) != 0)
    return -1;
  /* The segment, whatever it holds, is the job id: a bad one is a bad id
   * (400), not an unknown path (404). */
  const char *seg = path + sizeof prefix - 1;
  size_t n = strcspn(seg, "/");
  if (n == 0 || strcmp(seg + n, suffix ? suffix : "") != 0)
    return -1;
  return job_id(seg, n, id) == 0;
}

bool kjb_api_is_get_path(const char *path) {
  int64_t id;
  return strcmp(path, "/api/stats") == 0 || strcmp(path, "/api/jobs") == 0 ||
         strcmp(path, "/api/dlq") == 0 || kjb_api_job_path(path, NULL, &id) >= 0;
}

bool kjb_api_is_post_path(const char *path) {
  int64_t id;
  return strcmp(path, "/api/replay") == 0 || kjb_api_job_path(path, "/retry", &id) >= 0 ||
         kjb_api_job_path(path, "/cancel", &id) >= 0;
}

unsigned kjb_api_get(kjb_api *api, const char *path, kjb_api_param_fn param, void *cls,
                     const kjb_api_health *health, kjb_buf *out) {
  int64_t id;
  int m;
  if (strcmp(path, "/api/stats") == 0)
    return get_stats(api, health, out);
  if (strcmp(path, "/api/jobs") == 0)
    return get_jobs(api, param, cls, out);
  if (strcmp(path, "/api/dlq") == 0)
    return get_dlq(param, cls, out);
  if ((m = kjb_api_job_path(path, NULL, &id)) >= 0)
    return m ? get_job(api, id, out) : error_reply(out, 400, "bad job id");
  return error_reply(out, 404, "not found");
}

/* ---- admin actions ------------------------------------------------------- */

bool kjb_api_admin_enabled(const kjb_api *api) { return api->token != NULL; }

unsigned kjb_api_check_bearer(const char *token, const char *authorization, size_t len,
                              const char **why) {
  if (!token) {
    *why = "admin API disabled: set the environment variable named by http.admin_token_env";
    return 403;
  }
  static const char bearer[] = "Bearer ";
  size_t bl = sizeof bearer - 1;
  if (!authorization || len < bl || strncasecmp(authorization, bearer, bl) != 0) {
    *why = "missing bearer token";
    return 401;
  }
  if (!kjb_secret_equal(authorization + bl, len - bl, token, strlen(token))) {
    *why = "wrong token";
    return 403;
  }
  return 0;
}

unsigned kjb_api_authorize(const kjb_api *api, const char *authorization, size_t len,
                           const char **why) {
  return kjb_api_check_bearer(api->token, authorization, len, why);
}

static unsigned job_action(kjb_api *api, int64_t id, int retry, kjb_buf *out) {
  kjb_err err;
  kjb_jobs_result res;
  pthread_mutex_lock(&api->db_mu);
  kjb_store *s = db(api, &err);
  int rc = s ? (retry ? kjb_jobs_retry(s, id, KJB_AUDIT_API_ADMIN, &res, &err)
                      : kjb_jobs_cancel(s, id, KJB_AUDIT_API_ADMIN, &res, &err))
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
  kjb_info("admin: job %" PRId64 " %s", id, retry ? "retried" : "cancelled");
  put_json(out, json_pack("{s:I, s:s}", "id", (json_int_t)id, "state",
                          retry ? "available" : "cancelled"));
  return 200;
}

static void *replay_main(void *arg) {
  kjb_api *api = arg;
  replay_job *r = &api->replay;
  kjb_replay_opts o = {.topic = r->topic,
                       .reset = r->has_reset ? &r->reset : NULL,
                       .reset_text = r->has_reset ? r->reset_text : NULL,
                       .dry_run = r->dry_run,
                       .actor = KJB_AUDIT_API_ADMIN};
  kjb_err err;
  int rc = kjb_replay_run(api->cfg, &o, &r->counts, &api->replay_stop, &err);
  pthread_mutex_lock(&api->replay_mu);
  if (rc < 0)
    snprintf(r->error, sizeof r->error, "%s", err.msg);
  r->running = false;
  r->finished_us = kjb_now_wall_us();
  kjb_log(rc < 0 ? KJB_LOG_WARN : KJB_LOG_INFO,
          "admin: replay of \"%s\" %s%s: replayed %llu, still failing %llu, already present %llu",
          r->topic, rc < 0 ? "failed: " : "finished", rc < 0 ? err.msg : "",
          (unsigned long long)r->counts.replayed, (unsigned long long)r->counts.still_failing,
          (unsigned long long)r->counts.already_present);
  kjb_replay_stats_close(&r->counts); /* the status shows the counts only */
  pthread_mutex_unlock(&api->replay_mu);
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

static unsigned start_replay(kjb_api *api, const char *body, size_t len, kjb_buf *out) {
  kjb_api_replay_req req;
  unsigned status = kjb_api_parse_replay(api->cfg, body, len, &req, out);
  if (status)
    return status;
  pthread_mutex_lock(&api->replay_mu);
  replay_job *r = &api->replay;
  if (r->running) {
    pthread_mutex_unlock(&api->replay_mu);
    return error_reply(out, 409, "a replay of \"%s\" is running", r->topic);
  }
  if (r->joinable)
    pthread_join(r->thread, NULL);
  *r = (replay_job){.started = true,
                    .running = true,
                    .dry_run = req.dry_run,
                    .reset = req.reset,
                    .has_reset = req.has_reset,
                    .started_us = kjb_now_wall_us()};
  snprintf(r->topic, sizeof r->topic, "%s", req.topic);
  snprintf(r->reset_text, sizeof r->reset_text, "%s", req.reset_text);
  api->replay_stop = 0;
  if (pthread_create(&r->thread, NULL, replay_main, api) != 0) {
    r->running = false;
    snprintf(r->error, sizeof r->error, "could not start the replay thread");
    pthread_mutex_unlock(&api->replay_mu);
    return error_reply(out, 500, "could not start the replay thread");
  }
  r->joinable = true;
  kjb_info("admin: replaying \"%s\"%s%s%s", r->topic, req.has_reset ? " from " : "", req.reset_text,
           req.dry_run ? " (dry run)" : "");
  pthread_mutex_unlock(&api->replay_mu);
  put_json(out, json_pack("{s:o}", "replay", replay_json(api)));
  return 202;
}

unsigned kjb_api_post(kjb_api *api, const char *path, const char *body, size_t len, kjb_buf *out) {
  int64_t id;
  int m;
  if (strcmp(path, "/api/replay") == 0)
    return start_replay(api, body, len, out);
  if ((m = kjb_api_job_path(path, "/retry", &id)) >= 0)
    return m ? job_action(api, id, 1, out) : error_reply(out, 400, "bad job id");
  if ((m = kjb_api_job_path(path, "/cancel", &id)) >= 0)
    return m ? job_action(api, id, 0, out) : error_reply(out, 400, "bad job id");
  return error_reply(out, 404, "not found");
}

/* ---- lifecycle ------------------------------------------------------------ */

kjb_api *kjb_api_new(const kjb_config *cfg, const char *node, const char *roles, kjb_executor *ex,
                     kjb_err *err) {
  kjb_api *api = kjb_xcalloc(1, sizeof *api);
  api->cfg = cfg;
  snprintf(api->node, sizeof api->node, "%s", node);
  snprintf(api->roles, sizeof api->roles, "%s", roles);
  api->ex = ex;
  api->started_mono_us = kjb_now_mono_us();
  const char *tok = cfg->http.admin_token_env ? getenv(cfg->http.admin_token_env) : NULL;
  if (tok && *tok) {
    api->token = kjb_xstrdup(tok);
    kjb_log_secret(api->token);
  }
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
  kjb_stats_free(api->stats);
  kjb_store_free(api->db);
  pthread_mutex_destroy(&api->db_mu);
  pthread_mutex_destroy(&api->replay_mu);
  free(api->token);
  free(api);
}
