/* Job rows for operators: listing, showing, retrying, cancelling and
 * pruning, all through parameterised statements on the store's connection. */
#include "jobs.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "metrics.h"
#include "util.h"

static const char *const STATES[] = {"available", "scheduled", "running",  "retryable",
                                     "completed", "discarded", "cancelled"};

#define TS(col) KJB_SQL_TS(col)

typedef enum { COL_INT, COL_TEXT, COL_JSON, COL_TS } col_type;

/* Every column of kjb.jobs in table order, as selected by SELECT_JOBS. */
static const struct {
  const char *name;
  col_type type;
} COLS[] = {
    {"id", COL_INT},
    {"kind", COL_TEXT},
    {"queue", COL_TEXT},
    {"priority", COL_INT},
    {"state", COL_TEXT},
    {"args", COL_JSON},
    {"meta", COL_JSON},
    {"attempt", COL_INT},
    {"max_attempts", COL_INT},
    {"scheduled_at", COL_TS},
    {"attempted_at", COL_TS},
    {"finished_at", COL_TS},
    {"created_at", COL_TS},
    {"attempted_by", COL_TEXT},
    {"errors", COL_JSON},
    {"unique_key", COL_TEXT},
    {"source_topic", COL_TEXT},
    {"source_partition", COL_INT},
    {"source_offset", COL_INT},
    {"ordering_key", COL_TEXT},
};
enum { NCOLS = sizeof COLS / sizeof COLS[0] };
/* After the columns: the last attempt's error, for the table. */
enum { COL_LAST_ERROR = NCOLS };

#define JOB_COLUMNS                                                                           \
  "id, kind, queue, priority, state::text, args::text, meta::text, attempt, "                 \
  "max_attempts, " TS("scheduled_at") ", " TS("attempted_at") ", " TS("finished_at") ", " TS( \
      "created_at") ", attempted_by, errors::text, unique_key, source_topic, "                \
                    "source_partition, source_offset, ordering_key, errors->-1->>'error'"
#define SELECT_JOBS "SELECT " JOB_COLUMNS " FROM jobs "

#define RETRY_SET                                                       \
  "SET state = 'available', scheduled_at = now(), finished_at = NULL, " \
  "max_attempts = GREATEST(max_attempts, attempt + 1) "

#define FINAL_STATES "('completed', 'discarded', 'cancelled')"

int kjb_jobs_state_valid(const char *name) {
  for (size_t i = 0; i < sizeof STATES / sizeof STATES[0]; i++)
    if (strcmp(name, STATES[i]) == 0)
      return 1;
  return 0;
}

static int bad_state(const char *state, kjb_err *err) {
  return kjb_err_set(err, KJB_EUSAGE,
                     "unknown state \"%s\" (expected available, scheduled, running, retryable, "
                     "completed, discarded or cancelled)",
                     state);
}

/* ---- rendering ------------------------------------------------------ */

/* A jsonb column's text as a JSON value. jsonb numbers are arbitrary
 * precision; jansson's integers stop at 64 bits, so a document holding a
 * larger one is read with every integer as a double instead, and one it
 * still cannot read is shown as a string. */
static json_t *json_column(const char *text) {
  json_error_t jerr;
  json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
  if (!v)
    v = json_loads(text, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
  return v ? v : json_string(text);
}

static json_t *row_json(const PGresult *res, int r) {
  json_t *obj = json_object();
  for (int c = 0; c < NCOLS; c++) {
    json_t *v;
    const char *text = PQgetvalue(res, r, c);
    if (PQgetisnull(res, r, c))
      v = json_null();
    else if (COLS[c].type == COL_INT)
      v = json_integer(strtoll(text, NULL, 10));
    else if (COLS[c].type == COL_JSON)
      v = json_column(text);
    else
      v = json_string(text);
    json_object_set_new(obj, COLS[c].name, v);
  }
  return obj;
}

enum { T_ID, T_KIND, T_QUEUE, T_STATE, T_ATTEMPT, T_SCHEDULED, T_ERROR, T_NCOLS };
static const char *const TABLE_HEAD[T_NCOLS] = {"ID",      "KIND",         "QUEUE", "STATE",
                                                "ATTEMPT", "SCHEDULED_AT", "ERROR"};

static void print_table(const PGresult *res, FILE *out) {
  int n = PQntuples(res);
  char **cells = kjb_xcalloc((size_t)(n + 1) * T_NCOLS, sizeof *cells);
  for (int c = 0; c < T_NCOLS; c++)
    cells[c] = (char *)TABLE_HEAD[c];
  for (int r = 0; r < n; r++) {
    char **row = cells + (size_t)(r + 1) * T_NCOLS;
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_buf_printf(&b, "%s/%s", PQgetvalue(res, r, 7), PQgetvalue(res, r, 8));
    row[T_ATTEMPT] = b.data;
    /* Whole seconds are enough to scan a list; show has the rest. */
    const char *at = PQgetvalue(res, r, 9);
    kjb_buf_init(&b);
    kjb_buf_printf(&b, "%.19sZ", at);
    row[T_SCHEDULED] = b.data;
    row[T_ID] = kjb_table_cell(PQgetvalue(res, r, 0), 20);
    row[T_KIND] = kjb_table_cell(PQgetvalue(res, r, 1), 40);
    row[T_QUEUE] = kjb_table_cell(PQgetvalue(res, r, 2), 24);
    row[T_STATE] = kjb_table_cell(PQgetvalue(res, r, 4), 12);
    row[T_ERROR] = kjb_table_cell(PQgetvalue(res, r, COL_LAST_ERROR), 60);
  }
  kjb_table_print(out, cells, (size_t)n + 1, T_NCOLS);
  for (size_t i = T_NCOLS; i < (size_t)(n + 1) * T_NCOLS; i++)
    free(cells[i]);
  free(cells);
}

static void print_json_array(const PGresult *res, FILE *out) {
  int n = PQntuples(res);
  if (n == 0) {
    fputs("[]\n", out);
    return;
  }
  /* One object per line: readable, and still one JSON document. */
  fputs("[\n", out);
  for (int r = 0; r < n; r++) {
    json_t *obj = row_json(res, r);
    json_dumpf(obj, out, JSON_PRESERVE_ORDER);
    json_decref(obj);
    fputs(r + 1 < n ? ",\n" : "\n", out);
  }
  fputs("]\n", out);
}

static void print_fields(const PGresult *res, FILE *out) {
  enum { LABEL = 18 };
  for (int c = 0; c < NCOLS; c++) {
    fprintf(out, "%-*s", LABEL, COLS[c].name);
    if (PQgetisnull(res, 0, c)) {
      fputs("-\n", out);
      continue;
    }
    const char *text = PQgetvalue(res, 0, c);
    if (COLS[c].type != COL_JSON) {
      fprintf(out, "%s\n", text);
      continue;
    }
    json_t *v = json_column(text);
    char *pretty = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(v);
    const char *line = pretty ? pretty : text;
    /* Continuation lines line up under the first. */
    for (const char *nl; (nl = strchr(line, '\n')); line = nl + 1)
      fprintf(out, "%.*s\n%*s", (int)(nl - line), line, LABEL, "");
    fprintf(out, "%s\n", line);
    free(pretty);
  }
}

/* ---- queries -------------------------------------------------------- */

PGresult *kjb_jobs_list(kjb_store *s, const char *columns, const kjb_jobs_filter *f,
                        const char *what, kjb_err *err) {
  if (f->state && !kjb_jobs_state_valid(f->state))
    return bad_state(f->state, err), NULL;
  assert(f->limit >= 0 && f->before >= 0);
  char limit[24], before[24];
  snprintf(limit, sizeof limit, "%ld", f->limit ? f->limit : 50);
  snprintf(before, sizeof before, "%" PRId64, f->before);
  const char *params[] = {f->state, f->kind, f->before ? before : NULL, limit};
  kjb_buf sql;
  kjb_buf_init(&sql);
  kjb_buf_printf(&sql,
                 "SELECT %s FROM jobs WHERE ($1::job_state IS NULL OR state = $1::job_state) "
                 "AND ($2::text IS NULL OR kind = $2) AND ($3::bigint IS NULL OR id < $3) "
                 "ORDER BY id DESC LIMIT $4::bigint",
                 columns);
  PGresult *res = kjb_store_query(s, what, sql.data, 4, params, err);
  kjb_buf_close(&sql);
  return res;
}

int kjb_jobs_ls(kjb_store *s, const kjb_jobs_filter *f, FILE *out, long *shown, kjb_err *err) {
  PGresult *res = kjb_jobs_list(s, JOB_COLUMNS, f, "could not list jobs", err);
  if (!res)
    return -err->code;
  (f->json ? print_json_array : print_table)(res, out);
  if (shown)
    *shown = PQntuples(res);
  PQclear(res);
  return 0;
}

int kjb_jobs_show(kjb_store *s, int64_t id, int json, FILE *out, int *found, kjb_err *err) {
  char idtext[24];
  snprintf(idtext, sizeof idtext, "%" PRId64, id);
  const char *params[] = {idtext};
  PGresult *res =
      kjb_store_query(s, "could not read job", SELECT_JOBS "WHERE id = $1::bigint", 1, params, err);
  if (!res)
    return -KJB_EPG;
  *found = PQntuples(res) == 1;
  if (*found && json) {
    json_t *obj = row_json(res, 0);
    json_dumpf(obj, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(obj);
  } else if (*found) {
    print_fields(res, out);
  }
  PQclear(res);
  return 0;
}

/* Runs sql, an UPDATE of job $1 that reports in one row whether it changed
 * the job and the job's state (NULL when there is no such job), and fills
 * *res from it; with an actor, in one transaction with its audit row. */
static int act(kjb_store *s, int64_t id, const char *actor, const char *action, const char *what,
               const char *sql, kjb_jobs_result *res, kjb_err *err) {
  char idtext[24];
  snprintf(idtext, sizeof idtext, "%" PRId64, id);
  const char *params[] = {idtext};
  if (actor && kjb_store_exec(s, "BEGIN", err) < 0)
    return -KJB_EPG;
  PGresult *r = kjb_store_query(s, what, sql, 1, params, err);
  if (!r)
    goto fail;
  assert(PQntuples(r) == 1);
  memset(res, 0, sizeof *res);
  if (strcmp(PQgetvalue(r, 0, 0), "1") == 0) {
    res->outcome = KJB_JOBS_DONE;
  } else if (PQgetisnull(r, 0, 1)) {
    res->outcome = KJB_JOBS_NOT_FOUND;
  } else {
    res->outcome = KJB_JOBS_WRONG_STATE;
    snprintf(res->state, sizeof res->state, "%s", PQgetvalue(r, 0, 1));
  }
  PQclear(r);
  if (!actor)
    return 0;
  char aparams[48], result[96];
  snprintf(aparams, sizeof aparams, "{\"id\":%" PRId64 "}", id);
  if (res->outcome == KJB_JOBS_DONE)
    snprintf(result, sizeof result, "{\"outcome\":\"done\"}");
  else if (res->outcome == KJB_JOBS_NOT_FOUND)
    snprintf(result, sizeof result, "{\"outcome\":\"not_found\"}");
  else
    snprintf(result, sizeof result, "{\"outcome\":\"wrong_state\",\"state\":\"%s\"}", res->state);
  if (kjb_audit_record(s, actor, action, aparams, result, NULL, err) < 0 ||
      kjb_store_exec(s, "COMMIT", err) < 0)
    goto fail;
  return 0;
fail:
  if (actor) {
    kjb_err ignored;
    kjb_store_exec(s, "ROLLBACK", &ignored);
  }
  return -KJB_EPG;
}

/* The outer SELECT reads the statement's snapshot, so it sees the state
 * from before the update: enough to explain why nothing changed. */
int kjb_jobs_retry(kjb_store *s, int64_t id, const char *actor, kjb_jobs_result *res,
                   kjb_err *err) {
  return act(s, id, actor, KJB_AUDIT_JOBS_RETRY, "could not retry job",
             "WITH changed AS (UPDATE jobs " RETRY_SET
             "WHERE id = $1::bigint AND state IN ('discarded', 'cancelled', 'retryable', "
             "'scheduled') RETURNING id) "
             "SELECT (SELECT count(*) FROM changed), "
             "(SELECT state::text FROM jobs WHERE id = $1::bigint)",
             res, err);
}

int kjb_jobs_cancel(kjb_store *s, int64_t id, const char *actor, kjb_jobs_result *res,
                    kjb_err *err) {
  return act(s, id, actor, KJB_AUDIT_JOBS_CANCEL, "could not cancel job",
             "WITH changed AS (UPDATE jobs SET state = 'cancelled', finished_at = now() "
             "WHERE id = $1::bigint AND (state NOT IN " FINAL_STATES
             " OR (state = 'discarded' AND ordering_key IS NOT NULL)) RETURNING id) "
             "SELECT (SELECT count(*) FROM changed), "
             "(SELECT state::text FROM jobs WHERE id = $1::bigint)",
             res, err);
}

/* Retries every job in state (and of kind) as kjb_jobs_retry_state
 * says, without the audit. */
static int retry_state(kjb_store *s, const char *state, const char *kind, int64_t *changed,
                       kjb_err *err);

int kjb_jobs_retry_state(kjb_store *s, const char *state, const char *kind, const char *actor,
                         int64_t *changed, kjb_err *err) {
  *changed = 0;
  if (!kjb_jobs_state_valid(state))
    return bad_state(state, err);
  if (strcmp(state, "discarded") != 0 && strcmp(state, "cancelled") != 0 &&
      strcmp(state, "retryable") != 0)
    return kjb_err_set(err, KJB_EUSAGE,
                       "cannot retry %s jobs (only discarded, cancelled or retryable)", state);
  int64_t audit_id = 0;
  if (actor) {
    json_t *p = kind ? json_pack("{s:s, s:s}", "state", state, "kind", kind)
                     : json_pack("{s:s}", "state", state);
    char *params = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    int rc = kjb_audit_record(s, actor, KJB_AUDIT_JOBS_RETRY, params ? params : "{}", NULL,
                              &audit_id, err);
    free(params);
    if (rc < 0)
      return rc;
  }
  int rc = retry_state(s, state, kind, changed, err);
  if (actor) {
    json_t *r = rc < 0 ? json_pack("{s:I, s:s}", "retried", (json_int_t)*changed, "error", err->msg)
                       : json_pack("{s:I}", "retried", (json_int_t)*changed);
    char *result = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    kjb_err aerr;
    if (kjb_audit_finish(s, audit_id, result ? result : "{}", &aerr) < 0 && rc == 0) {
      *err = aerr;
      rc = -KJB_EPG;
    }
    free(result);
  }
  return rc;
}

static int retry_state(kjb_store *s, const char *state, const char *kind, int64_t *changed,
                       kjb_err *err) {
  /* Walking up the ids visits each job once, even one that fails and is
   * discarded again while the walk goes on. FOR UPDATE re-reads a row
   * another transaction changed and drops it if it no longer matches. */
  char after[24] = "0", batch[16];
  snprintf(batch, sizeof batch, "%d", KJB_JOBS_BATCH);
  for (;;) {
    const char *params[] = {state, kind, after, batch};
    PGresult *r = kjb_store_query(s, "could not retry jobs",
                                  "WITH batch AS (SELECT id FROM jobs WHERE state = $1::job_state "
                                  "AND ($2::text IS NULL OR kind = $2) AND id > $3::bigint "
                                  "ORDER BY id LIMIT $4::int FOR UPDATE), "
                                  "changed AS (UPDATE jobs j " RETRY_SET
                                  "FROM batch b WHERE j.id = b.id RETURNING j.id) "
                                  "SELECT count(*), max(id) FROM changed",
                                  4, params, err);
    if (!r)
      return -KJB_EPG;
    int64_t n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    if (n > 0)
      snprintf(after, sizeof after, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    *changed += n;
    if (n < KJB_JOBS_BATCH)
      return 0;
  }
}

/* One batch of a prune: at most KJB_JOBS_BATCH final jobs finished before
 * the cutoff, the SQL expression CUTOFF of $1. The DELETE repeats the
 * conditions: a row retried since the batch was chosen is re-checked
 * against them and kept. */
#define PRUNE_BATCH(cutoff)                                                                        \
  "WITH batch AS (SELECT id FROM jobs WHERE finished_at < " cutoff " AND state IN " FINAL_STATES   \
  " LIMIT $2::int) DELETE FROM jobs j USING batch b WHERE j.id = b.id AND j.finished_at < " cutoff \
  " AND j.state IN " FINAL_STATES

static int prune_batch(kjb_store *s, const char *sql, const char *arg, int64_t *deleted,
                       kjb_err *err) {
  char batch[16];
  snprintf(batch, sizeof batch, "%d", KJB_JOBS_BATCH);
  const char *params[] = {arg, batch};
  PGresult *r = kjb_store_query(s, "could not prune jobs", sql, 2, params, err);
  if (!r)
    return -KJB_EPG;
  *deleted = strtoll(PQcmdTuples(r), NULL, 10);
  PQclear(r);
  return 0;
}

/* PostgreSQL's timestamps end in 4713 BC: an age of five millennia already
 * covers every job there can be. */
static int64_t clamp_age(int64_t older_than_us) {
  assert(older_than_us >= 0);
  const int64_t max_age = INT64_C(5000) * 366 * 86400 * 1000000;
  return older_than_us > max_age ? max_age : older_than_us;
}

int kjb_jobs_prune(kjb_store *s, int64_t older_than_us, int64_t *deleted, kjb_err *err) {
  *deleted = 0;
  char age[24];
  snprintf(age, sizeof age, "%" PRId64, clamp_age(older_than_us));
  /* One cutoff for all batches, so the loop ends even while executors
   * keep finishing jobs. */
  const char *params[] = {age};
  PGresult *r = kjb_store_query(s, "could not prune jobs",
                                "SELECT (now() - $1::bigint * interval '1 microsecond')::text", 1,
                                params, err);
  if (!r)
    return -KJB_EPG;
  char cutoff[64];
  snprintf(cutoff, sizeof cutoff, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  for (;;) {
    int64_t n;
    if (prune_batch(s, PRUNE_BATCH("$1::timestamptz"), cutoff, &n, err) < 0)
      return -KJB_EPG;
    *deleted += n;
    /* Rows that changed under a batch leave it short; only an empty
     * batch says that nothing is left. */
    if (n == 0)
      return 0;
  }
}

int kjb_jobs_prune_batch(kjb_store *s, int64_t older_than_us, int64_t *deleted, kjb_err *err) {
  char age[24];
  snprintf(age, sizeof age, "%" PRId64, clamp_age(older_than_us));
  return prune_batch(s, PRUNE_BATCH("now() - $1::bigint * interval '1 microsecond'"), age, deleted,
                     err);
}

/* ---- held ordering keys --------------------------------------------- */

/* The head of each key as the claim sees it (queue.c), found by the
 * same skip scan over jobs_ordering_idx, (kind, key) after (kind, key):
 * a probe per key, not a read of every job waiting behind a head. Of
 * those, the held ones: per kind, how many and the oldest. */
/* clang-format off */
#define HEAD_OF(after)                                                                          \
  "(SELECT kind, ordering_key AS k, id, state, attempt,"                                        \
  "   COALESCE(finished_at, (errors->-1->>'at')::timestamptz, attempted_at, scheduled_at)"      \
  "   AS since FROM jobs WHERE ordering_key IS NOT NULL"                                        \
  "   AND state NOT IN ('completed', 'cancelled') AND (state <> 'discarded' OR kind = ANY($1))" \
  after " ORDER BY kind, ordering_key COLLATE \"C\", source_partition, source_offset, id LIMIT 1)"
static const char HELD_SQL[] =
    "WITH RECURSIVE heads AS (" HEAD_OF("")
    " UNION ALL SELECT n.* FROM heads h, LATERAL "
    HEAD_OF(" AND (kind, ordering_key COLLATE \"C\") > (h.kind, h.k)") " n),"
    " held AS (SELECT *, count(*) OVER (PARTITION BY kind) AS n,"
    "   row_number() OVER (PARTITION BY kind ORDER BY since, id) AS r FROM heads"
    "   WHERE state IN ('retryable', 'discarded') OR (state = 'scheduled' AND attempt > 0))"
    " SELECT kind, k, id, state::text, " TS("since") ", n FROM held WHERE r = 1"
    " ORDER BY since, id";
/* clang-format on */

json_t *kjb_jobs_held_keys(kjb_store *s, const kjb_config *cfg, kjb_err *err) {
  /* The kinds whose discarded jobs hold their key, as an array literal. */
  kjb_buf hold;
  kjb_buf_init(&hold);
  kjb_buf_putc(&hold, '{');
  for (size_t i = 0, n = 0; i < cfg->nhandlers; i++) {
    if (cfg->handlers[i].on_discard != KJB_ON_DISCARD_HOLD)
      continue;
    if (n++)
      kjb_buf_putc(&hold, ',');
    /* An array element in double quotes, with \\ and \" escaped. */
    kjb_buf_putc(&hold, '"');
    for (const char *c = cfg->handlers[i].kind; *c; c++) {
      if (*c == '"' || *c == '\\')
        kjb_buf_putc(&hold, '\\');
      kjb_buf_putc(&hold, *c);
    }
    kjb_buf_putc(&hold, '"');
  }
  kjb_buf_putc(&hold, '}');
  const char *params[] = {hold.data};
  PGresult *r = kjb_store_query(s, "could not read held ordering keys", HELD_SQL, 1, params, err);
  kjb_buf_close(&hold);
  if (!r)
    return NULL;
  json_t *kinds = json_object();
  json_int_t total = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    json_int_t n = strtoll(PQgetvalue(r, i, 5), NULL, 10);
    json_object_set_new(kinds, PQgetvalue(r, i, 0), json_integer(n));
    total += n;
  }
  /* Rows come oldest first: the first is the oldest of all. */
  json_t *oldest = PQntuples(r) == 0
                       ? json_null()
                       : json_pack("{s:s, s:s, s:I, s:s, s:s}", "kind", PQgetvalue(r, 0, 0), "key",
                                   PQgetvalue(r, 0, 1), "job",
                                   (json_int_t)strtoll(PQgetvalue(r, 0, 2), NULL, 10), "state",
                                   PQgetvalue(r, 0, 3), "since", PQgetvalue(r, 0, 4));
  PQclear(r);
  return json_pack("{s:I, s:o, s:o}", "count", total, "oldest", oldest, "kinds", kinds);
}

void kjb_jobs_held_print(const json_t *held, FILE *out) {
  const json_t *o = json_object_get(held, "oldest");
  json_int_t n = json_integer_value(json_object_get(held, "count"));
  if (n == 0 || !json_is_object(o))
    return;
  fprintf(out, "held keys: %lld (oldest since %s, kind %s key %s)\n", (long long)n,
          json_string_value(json_object_get(o, "since")),
          json_string_value(json_object_get(o, "kind")),
          json_string_value(json_object_get(o, "key")));
}

void kjb_jobs_held_gauges(const kjb_config *cfg, const json_t *held) {
  const char *kinds[64];
  size_t nk = kjb_config_kinds(cfg, kinds, 64);
  const json_t *by_kind = json_object_get(held, "kinds");
  for (size_t i = 0; i < nk && i < 64; i++)
    kjb_gauge_set("kjb_held_keys",
                  "Ordering keys whose first unfinished job waits for a retry or, with on_discard "
                  "= hold, is discarded; counted every few seconds.",
                  (double)json_integer_value(json_object_get(by_kind, kinds[i])), "kind", kinds[i],
                  NULL);
}
