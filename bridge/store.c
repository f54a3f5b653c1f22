/* The job store: migrations and batched job inserts over libpq. */
#include "store.h"

#include <assert.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "migrations.h"
#include "util.h"

/* An arbitrary but fixed key: every kjb process migrating the same
 * database serialises on it. */
#define MIGRATE_LOCK_KEY 0x6b6a626d6967LL

/* How much COPY text to gather before sending it on. */
#define STREAM_CHUNK (256 * 1024)

struct kjb_store {
  PGconn *conn;
  char *schema;
  kjb_buf copybuf;
  int have_incoming; /* the session's staging tables exist */
  int have_marked;
  int marked_present; /* the last marked batch had rows already stored */
  enum { STREAM_IDLE, STREAM_OPEN, STREAM_BROKEN } stream;
  size_t streamed; /* rows sent in the open stream */
  bool binary;     /* the open stream is in COPY's binary format */
  kjb_err stream_err;
  const char *prepared[KJB_STORE_PREPARED]; /* statement "kjb_<i>" is prepared[i] */
};

static const char JOB_COLUMNS[] = "kind, queue, priority, max_attempts, args, meta, unique_key, "
                                  "ordering_key, source_topic, source_partition, source_offset";

/* libpq's messages end with a newline and may span lines; keep the first
 * line, which carries the reason. */
static int pg_error(kjb_err *err, kjb_errcode code, const char *what, const char *msg) {
  size_t n = strcspn(msg, "\n");
  while (n > 0 && (msg[n - 1] == ' ' || msg[n - 1] == '.'))
    n--;
  return kjb_err_set(err, code, "%s: %.*s", what, (int)n, msg);
}

static int result_error(kjb_store *s, PGresult *res, const char *what, kjb_err *err) {
  const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn);
  int rc = pg_error(err, PQstatus(s->conn) == CONNECTION_OK ? KJB_EPG : KJB_EPG, what, msg);
  PQclear(res);
  return rc;
}

/* Runs a command that returns no rows. */
static int exec(kjb_store *s, const char *sql, kjb_err *err) {
  PGresult *res = PQexec(s->conn, sql);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return result_error(s, res, "could not execute query", err);
  PQclear(res);
  return 0;
}

PGconn *kjb_store_conn(kjb_store *s) { return s->conn; }

int kjb_store_exec(kjb_store *s, const char *sql, kjb_err *err) { return exec(s, sql, err); }

/* res, or NULL with err when it is not a success. */
static PGresult *checked(kjb_store *s, PGresult *res, const char *what, kjb_err *err) {
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    result_error(s, res, what, err);
    return NULL;
  }
  return res;
}

PGresult *kjb_store_query(kjb_store *s, const char *what, const char *sql, int nparams,
                          const char *const *params, kjb_err *err) {
  return checked(s, PQexecParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0), what, err);
}

/* The name of sql's prepared statement on s's connection, prepared now
 * if it is not yet; NULL when all KJB_STORE_PREPARED are taken (name
 * empty) or with err when preparing failed. */
static const char *prepared_name(kjb_store *s, const char *what, const char *sql, int nparams,
                                 char name[16], kjb_err *err) {
  size_t i = 0;
  while (i < KJB_STORE_PREPARED && s->prepared[i] && s->prepared[i] != sql)
    i++;
  name[0] = '\0';
  if (i == KJB_STORE_PREPARED)
    return NULL;
  snprintf(name, 16, "kjb_%zu", i);
  if (!s->prepared[i]) {
    PGresult *res = PQprepare(s->conn, name, sql, nparams, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      result_error(s, res, what, err);
      return NULL;
    }
    PQclear(res);
    s->prepared[i] = sql;
  }
  return name;
}

PGresult *kjb_store_query_prepared(kjb_store *s, const char *what, const char *sql, int nparams,
                                   const char *const *params, kjb_err *err) {
  char buf[16];
  const char *name = prepared_name(s, what, sql, nparams, buf, err);
  if (!name)
    return buf[0] ? NULL : kjb_store_query(s, what, sql, nparams, params, err);
  return checked(s, PQexecPrepared(s->conn, name, nparams, params, NULL, NULL, 0), what, err);
}

int kjb_store_send_prepared(kjb_store *s, const char *what, const char *sql, int nparams,
                            const char *const *params, kjb_err *err) {
  char buf[16];
  const char *name = prepared_name(s, what, sql, nparams, buf, err);
  if (!name && buf[0])
    return -KJB_EPG;
  int sent = name ? PQsendQueryPrepared(s->conn, name, nparams, params, NULL, NULL, 0)
                  : PQsendQueryParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0);
  if (!sent)
    return pg_error(err, KJB_EPG, what, PQerrorMessage(s->conn));
  return 0;
}

int kjb_store_busy(kjb_store *s, const char *what, kjb_err *err) {
  if (!PQconsumeInput(s->conn))
    return pg_error(err, KJB_EPG, what, PQerrorMessage(s->conn));
  return PQisBusy(s->conn);
}

PGresult *kjb_store_result(kjb_store *s, const char *what, kjb_err *err) {
  PGresult *res = PQgetResult(s->conn), *more;
  while ((more = PQgetResult(s->conn)))
    PQclear(more);
  if (!res) {
    pg_error(err, KJB_EPG, what, "no statement was sent");
    return NULL;
  }
  return checked(s, res, what, err);
}

/* Notices and warnings the server sends (RAISE in a trigger, a deprecated
 * setting) go to the log on one line; the "already exists, skipping" of
 * kjb's own CREATE ... IF NOT EXISTS are expected and only shown at debug. */
static void log_notice(void *arg, const PGresult *res) {
  const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
  kjb_log_level level = KJB_LOG_INFO;
  if (sev && strcmp(sev, "WARNING") == 0)
    level = KJB_LOG_WARN;
  else if ((sev && strcmp(sev, "DEBUG") == 0) ||
           (code && (strcmp(code, "42P06") == 0 || strcmp(code, "42P07") == 0)))
    level = KJB_LOG_DEBUG;
  if (!kjb_log_enabled(level))
    return;
  if (!msg) {
    /* No fields (a protocol-level notice): the whole text, which ends
     * with a newline that kjb_log drops. */
    kjb_log(level, "postgres: %s", PQresultErrorMessage(res));
    return;
  }
  kjb_log(level, "postgres: %s%s%s", msg, detail ? ": " : "", detail ? detail : "");
}

kjb_store *kjb_store_connect(const char *conninfo, const char *schema, kjb_err *err) {
  /* A server that vanishes from the network (no FIN, no RST) must not
   * hang a connection for the kernel's two hours: TCP keepalives and a
   * user timeout notice within about half a minute. They come first, so
   * that the conninfo's own settings win. */
  static const char *const keys[] = {
      "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
      "keepalives_count", "tcp_user_timeout", "dbname",          NULL};
  const char *const values[] = {"10", "1", "10", "5", "3", "30000", conninfo, NULL};
  PGconn *conn = PQconnectdbParams(keys, values, 1);
  if (PQstatus(conn) != CONNECTION_OK) {
    /* libpq's message names host and port but never the password. */
    pg_error(err, KJB_EPG, "could not connect to postgresql", PQerrorMessage(conn));
    PQfinish(conn);
    return NULL;
  }
  PQsetNoticeReceiver(conn, log_notice, NULL);
  kjb_store *s = kjb_xcalloc(1, sizeof *s);
  s->conn = conn;
  s->schema = kjb_xstrdup(schema);
  kjb_buf_init(&s->copybuf);
  char *ident = PQescapeIdentifier(conn, schema, strlen(schema));
  kjb_buf q;
  kjb_buf_init(&q);
  kjb_buf_printf(&q, "SET search_path TO %s", ident);
  PQfreemem(ident);
  int rc = exec(s, q.data, err);
  kjb_buf_close(&q);
  if (rc < 0) {
    kjb_store_free(s);
    return NULL;
  }
  return s;
}

kjb_store *kjb_store_connect_durable(const char *conninfo, const char *schema, kjb_err *err) {
  kjb_store *s = kjb_store_connect(conninfo, schema, err);
  /* Set in the session, never left to the server's default: a reload
   * that turns the default off later must not reach this session. */
  if (s && exec(s,
                "SELECT set_config('synchronous_commit', CASE current_setting('synchronous_commit')"
                " WHEN 'off' THEN 'on' ELSE current_setting('synchronous_commit') END, false)",
                err) < 0) {
    kjb_store_free(s);
    return NULL;
  }
  return s;
}

void kjb_store_free(kjb_store *s) {
  if (!s)
    return;
  PQfinish(s->conn);
  free(s->schema);
  kjb_buf_close(&s->copybuf);
  free(s);
}

/* Creates the schema and the migrations ledger. Called under the lock. */
static int bootstrap(kjb_store *s, kjb_err *err) {
  char *ident = PQescapeIdentifier(s->conn, s->schema, strlen(s->schema));
  kjb_buf q;
  kjb_buf_init(&q);
  kjb_buf_printf(&q,
                 "CREATE SCHEMA IF NOT EXISTS %s;"
                 "CREATE TABLE IF NOT EXISTS %s.schema_migrations ("
                 " version text PRIMARY KEY,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 ident, ident);
  PQfreemem(ident);
  int rc = exec(s, q.data, err);
  kjb_buf_close(&q);
  return rc;
}

static int is_applied(kjb_store *s, const char *name, char *at, size_t atlen, kjb_err *err) {
  const char *params[1] = {name};
  PGresult *res = PQexecParams(s->conn,
                               "SELECT to_char(applied_at AT TIME ZONE 'UTC',"
                               " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                               " FROM schema_migrations WHERE version = $1",
                               1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(s, res, "could not read schema_migrations", err);
  int found = PQntuples(res) > 0;
  if (found && at)
    snprintf(at, atlen, "%s", PQgetvalue(res, 0, 0));
  PQclear(res);
  return found;
}

static int lock_migrations(kjb_store *s, int lock, kjb_err *err) {
  char q[96];
  snprintf(q, sizeof q, "SELECT pg_advisory_%s(%lld)", lock ? "lock" : "unlock",
           (long long)MIGRATE_LOCK_KEY);
  return exec(s, q, err);
}

int kjb_store_migrate(kjb_store *s, int *applied, kjb_err *err) {
  *applied = 0;
  int rc = lock_migrations(s, 1, err);
  if (rc < 0)
    return rc;
  rc = bootstrap(s, err);
  for (size_t i = 0; rc == 0 && i < kjb_migrations_count; i++) {
    const kjb_migration *m = &kjb_migrations[i];
    int done = is_applied(s, m->name, NULL, 0, err);
    if (done < 0) {
      rc = done;
      break;
    }
    if (done)
      continue;
    if ((rc = exec(s, "BEGIN", err)) < 0)
      break;
    rc = exec(s, m->sql, err);
    if (rc == 0) {
      const char *params[1] = {m->name};
      PGresult *res = PQexecParams(s->conn, "INSERT INTO schema_migrations (version) VALUES ($1)",
                                   1, NULL, params, NULL, NULL, 0);
      if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = result_error(s, res, "could not record migration", err);
      else
        PQclear(res);
    }
    if (rc == 0)
      rc = exec(s, "COMMIT", err);
    if (rc < 0) {
      kjb_err_prefix(err, "migration %s", m->name);
      kjb_err tmp;
      exec(s, "ROLLBACK", &tmp);
      break;
    }
    (*applied)++;
  }
  kjb_err tmp;
  lock_migrations(s, 0, rc < 0 ? &tmp : err);
  return rc;
}

int kjb_store_migrate_status(kjb_store *s, FILE *out, int *pending, kjb_err *err) {
  *pending = 0;
  /* Reading must not create anything: a missing ledger means all pending. */
  const char *params[1] = {s->schema};
  PGresult *res = PQexecParams(s->conn,
                               "SELECT 1 FROM pg_tables WHERE schemaname = $1"
                               " AND tablename = 'schema_migrations'",
                               1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK)
    return result_error(s, res, "could not read catalog", err);
  int ledger = PQntuples(res) > 0;
  PQclear(res);
  for (size_t i = 0; i < kjb_migrations_count; i++) {
    char at[64] = "";
    int done = ledger ? is_applied(s, kjb_migrations[i].name, at, sizeof at, err) : 0;
    if (done < 0)
      return done;
    if (done) {
      if (out)
        fprintf(out, "applied  %s  %s\n", kjb_migrations[i].name, at);
    } else {
      if (out)
        fprintf(out, "pending  %s\n", kjb_migrations[i].name);
      (*pending)++;
    }
  }
  return 0;
}

/* Appends s to the COPY text stream, escaping what COPY's text format
 * treats specially. */
static void copy_field(kjb_buf *b, const char *s) {
  if (!s) {
    kjb_buf_append(b, "\\N", 2);
    return;
  }
  size_t start = 0, i = 0;
  for (; s[i]; i++) {
    char c = s[i];
    const char *esc = NULL;
    switch (c) {
    case '\\': esc = "\\\\"; break;
    case '\t': esc = "\\t"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    default: continue;
    }
    kjb_buf_append(b, s + start, i - start);
    kjb_buf_append(b, esc, 2);
    start = i + 1;
  }
  kjb_buf_append(b, s + start, i - start);
}

/* Appends one row in COPY text format, ending with idx as an extra
 * column when idx >= 0. */
static void copy_row_idx(kjb_buf *b, const kjb_job_row *r, long idx);

static void copy_row(kjb_buf *b, const kjb_job_row *r) { copy_row_idx(b, r, -1); }

static void copy_row_idx(kjb_buf *b, const kjb_job_row *r, long idx) {
  copy_field(b, r->kind);
  kjb_buf_putc(b, '\t');
  copy_field(b, r->queue);
  kjb_buf_printf(b, "\t%d\t%d\t", r->priority, r->max_attempts);
  copy_field(b, r->args_json);
  kjb_buf_putc(b, '\t');
  copy_field(b, r->meta_json);
  kjb_buf_putc(b, '\t');
  copy_field(b, r->unique_key);
  kjb_buf_putc(b, '\t');
  copy_field(b, r->ordering_key);
  kjb_buf_putc(b, '\t');
  copy_field(b, r->source_topic);
  kjb_buf_printf(b, "\t%d\t%lld", (int)r->source_partition, (long long)r->source_offset);
  if (idx >= 0)
    kjb_buf_printf(b, "\t%ld", idx);
  kjb_buf_putc(b, '\n');
}

static void copy_rows(kjb_buf *b, const kjb_job_row *rows, size_t n) {
  kjb_buf_reset(b);
  for (size_t i = 0; i < n; i++)
    copy_row(b, &rows[i]);
}

/* Runs q, a COPY ... FROM STDIN. Returns 0 when the server waits for
 * rows, or -KJB_EPG with err. */
static int copy_begin(kjb_store *s, const char *q, kjb_err *err) {
  PGresult *res = PQexec(s->conn, q);
  if (PQresultStatus(res) != PGRES_COPY_IN)
    return result_error(s, res, "could not start copy", err);
  PQclear(res);
  return 0;
}

static int copy_start_cols(kjb_store *s, const char *table, const char *extra, kjb_err *err) {
  char q[512];
  snprintf(q, sizeof q, "COPY %s (%s%s) FROM STDIN", table, JOB_COLUMNS, extra);
  return copy_begin(s, q, err);
}

static int copy_start(kjb_store *s, const char *table, kjb_err *err) {
  return copy_start_cols(s, table, "", err);
}

static int copy_send(kjb_store *s, kjb_err *err) {
  if (s->copybuf.len && PQputCopyData(s->conn, s->copybuf.data, (int)s->copybuf.len) != 1)
    return pg_error(err, KJB_EPG, "could not send copy data", PQerrorMessage(s->conn));
  kjb_buf_reset(&s->copybuf);
  return 0;
}

/* Ends a COPY. Returns 0, 1 when a unique constraint rejected the rows
 * (the transaction is then aborted), or a negative code. */
static int copy_end(kjb_store *s, kjb_err *err) {
  if (PQputCopyEnd(s->conn, NULL) != 1)
    return pg_error(err, KJB_EPG, "could not end copy", PQerrorMessage(s->conn));
  int rc = 0;
  PGresult *res;
  while ((res = PQgetResult(s->conn))) {
    if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == 0) {
      const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      if (state && strcmp(state, "23505") == 0) {
        rc = 1;
        PQclear(res);
      } else {
        rc = result_error(s, res, "could not copy rows", err);
      }
      continue;
    }
    PQclear(res);
  }
  return rc;
}

/* Copies the rows prepared in copybuf into table; copy_end's returns. */
static int copy_into(kjb_store *s, const char *table, kjb_err *err) {
  int rc = copy_start(s, table, err);
  if (rc == 0)
    rc = copy_send(s, err);
  return rc < 0 ? rc : copy_end(s, err);
}

static void count_inserted(const char *kind, double n) {
  kjb_counter_add("kjb_jobs_inserted_total", KJB_INSERTED_HELP, n, "kind", kind, NULL);
}

/* Counts rows by kind into kjb_jobs_inserted_total; is_new (may be NULL)
 * selects the rows that count. Batches hold few kinds, often one. */
static void count_rows(const kjb_job_row *rows, size_t n, const unsigned char *is_new) {
  enum { MAX_KINDS = 16 };
  const char *kinds[MAX_KINDS];
  size_t counts[MAX_KINDS], nk = 0;
  for (size_t i = 0; i < n; i++) {
    if (is_new && !is_new[i])
      continue;
    size_t j = 0;
    while (j < nk && strcmp(kinds[j], rows[i].kind) != 0)
      j++;
    if (j == nk) {
      if (nk == MAX_KINDS) {
        count_inserted(rows[i].kind, 1);
        continue;
      }
      kinds[nk] = rows[i].kind;
      counts[nk++] = 0;
    }
    counts[j]++;
  }
  for (size_t j = 0; j < nk; j++)
    count_inserted(kinds[j], (double)counts[j]);
}

/* The fallback for batches that overlap rows already stored (redelivery
 * after a crash or a rebalance): stage the rows, then insert what is new. */
static int insert_skipping_existing(kjb_store *s, size_t *inserted, kjb_err *err) {
  int rc;
  PGresult *res = NULL;
  if (!s->have_incoming) {
    /* Only the copied columns, with their types and no constraints. */
    char q[512];
    snprintf(q, sizeof q,
             "CREATE TEMP TABLE IF NOT EXISTS kjb_incoming ON COMMIT DELETE ROWS"
             " AS SELECT %s FROM jobs WITH NO DATA",
             JOB_COLUMNS);
    rc = exec(s, q, err);
    if (rc < 0)
      return rc;
    s->have_incoming = 1;
  }
  if ((rc = exec(s, "BEGIN", err)) < 0)
    return rc;
  rc = copy_into(s, "pg_temp.kjb_incoming", err);
  if (rc == 1)
    rc = kjb_err_set(err, KJB_EINTERNAL, "unique violation in staging table");
  if (rc == 0) {
    char q[1024];
    snprintf(q, sizeof q,
             "WITH ins AS (INSERT INTO jobs (%s) SELECT %s FROM pg_temp.kjb_incoming"
             " ORDER BY source_topic, source_partition, source_offset"
             " ON CONFLICT DO NOTHING RETURNING kind)"
             " SELECT kind, count(*) FROM ins GROUP BY kind",
             JOB_COLUMNS, JOB_COLUMNS);
    res = PQexec(s->conn, q);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      rc = result_error(s, res, "could not insert jobs", err);
      res = NULL;
    } else {
      for (int i = 0; i < PQntuples(res); i++)
        *inserted += strtoull(PQgetvalue(res, i, 1), NULL, 10);
    }
  }
  if (rc == 0)
    rc = exec(s, "COMMIT", err);
  if (res) {
    /* Counted once committed. */
    for (int i = 0; rc == 0 && i < PQntuples(res); i++)
      count_inserted(PQgetvalue(res, i, 0), strtod(PQgetvalue(res, i, 1), NULL));
    PQclear(res);
  }
  if (rc == 0)
    return 0;
  kjb_err tmp;
  exec(s, "ROLLBACK", &tmp);
  return rc;
}

/* Ends the transaction of a COPY into jobs that ended in rc (copy_end's:
 * 0, 1 for a unique violation, or < 0): commits it after a 0, else rolls
 * it back. Returns 0 once committed, 1 after a unique violation, or < 0. */
static int end_copy(kjb_store *s, int rc, kjb_err *err) {
  if (rc == 0)
    return exec(s, "COMMIT", err);
  kjb_err tmp;
  exec(s, "ROLLBACK", &tmp);
  return rc;
}

/* Copies rows straight into jobs in a transaction of their own; returns
 * as end_copy. */
static int copy_straight(kjb_store *s, const kjb_job_row *rows, size_t n, kjb_err *err) {
  copy_rows(&s->copybuf, rows, n);
  int rc = exec(s, "BEGIN", err);
  return rc < 0 ? rc : end_copy(s, copy_into(s, "jobs", err), err);
}

/* Completes a straight COPY of rows that ended in rc (end_copy's). Only a
 * batch that repeats stored rows fails it, and then the batch is redone
 * through the staging table. */
static int finish_fast_path(kjb_store *s, int rc, const kjb_job_row *rows, size_t n,
                            size_t *inserted, kjb_err *err) {
  if (rc == 0) {
    *inserted = n;
    count_rows(rows, n, NULL);
    return 0;
  }
  if (rc < 0)
    return rc;
  copy_rows(&s->copybuf, rows, n);
  return insert_skipping_existing(s, inserted, err);
}

static int insert_marked_staged(kjb_store *s, const kjb_job_row *rows, size_t n, int dry_run,
                                unsigned char *is_new, kjb_err *err);

int kjb_store_insert_marked(kjb_store *s, const kjb_job_row *rows, size_t n, int dry_run,
                            unsigned char *is_new, kjb_err *err) {
  memset(is_new, 0, n);
  if (n == 0)
    return 0;
  if (!dry_run && !s->marked_present) {
    /* As a rule every row is new (a first replay): copied straight in,
     * as ingest does, they all are, or a unique violation sends the
     * batch the way below, which finds the new ones (and the next
     * batches too, until one is all new: a replay done before). */
    int rc = copy_straight(s, rows, n, err);
    if (rc == 0) {
      memset(is_new, 1, n);
      count_rows(rows, n, is_new);
      return 0;
    }
    if (rc < 0)
      return rc;
  }
  return insert_marked_staged(s, rows, n, dry_run, is_new, err);
}

int kjb_store_stream_finish_marked(kjb_store *s, const kjb_job_row *rows, size_t n,
                                   unsigned char *is_new, kjb_err *err) {
  memset(is_new, 0, n);
  int rc = kjb_store_stream_commit(s, n, err);
  if (rc == 0) {
    memset(is_new, 1, n);
    count_rows(rows, n, is_new);
    s->marked_present = 0;
    return 0;
  }
  return rc < 0 ? rc : insert_marked_staged(s, rows, n, 0, is_new, err);
}

bool kjb_store_marked_present(const kjb_store *s) { return s->marked_present; }

/* The way for batches with stored rows: staged in a temporary table, the
 * new rows found, then inserted. */
static int insert_marked_staged(kjb_store *s, const kjb_job_row *rows, size_t n, int dry_run,
                                unsigned char *is_new, kjb_err *err) {
  char q[1024];
  int rc = 0;
  if (!s->have_marked) {
    snprintf(q, sizeof q,
             "CREATE TEMP TABLE IF NOT EXISTS kjb_marked ON COMMIT DELETE ROWS"
             " AS SELECT %s, 0::int AS row_idx FROM jobs WITH NO DATA",
             JOB_COLUMNS);
    if ((rc = exec(s, q, err)) < 0)
      return rc;
    s->have_marked = 1;
  }
  kjb_buf_reset(&s->copybuf);
  for (size_t i = 0; i < n; i++)
    copy_row_idx(&s->copybuf, &rows[i], (long)i);
  if ((rc = exec(s, "BEGIN", err)) < 0)
    return rc;
  rc = copy_start_cols(s, "pg_temp.kjb_marked", ", row_idx", err);
  if (rc == 0 && (rc = copy_send(s, err)) == 0 && (rc = copy_end(s, err)) == 1)
    rc = kjb_err_set(err, KJB_EINTERNAL, "unique violation in staging table");
  /* Without statistics the planner takes the staging table for empty and
   * anti-joins it against a scan of all jobs, which made every batch of a
   * long replay slower than the last. */
  if (rc == 0)
    rc = exec(s, "ANALYZE pg_temp.kjb_marked", err);
  if (rc == 0) {
    PGresult *res = PQexec(s->conn, "SELECT m.row_idx FROM pg_temp.kjb_marked m"
                                    " WHERE NOT EXISTS (SELECT 1 FROM jobs j"
                                    "   WHERE j.source_topic = m.source_topic"
                                    "   AND j.source_partition = m.source_partition"
                                    "   AND j.source_offset = m.source_offset AND j.kind = m.kind)"
                                    " AND (m.unique_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs j"
                                    "   WHERE j.kind = m.kind AND j.unique_key = m.unique_key))");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      rc = result_error(s, res, "could not check stored jobs", err);
    } else {
      for (int i = 0; i < PQntuples(res); i++) {
        long idx = strtol(PQgetvalue(res, i, 0), NULL, 10);
        if (idx >= 0 && (size_t)idx < n)
          is_new[idx] = 1;
      }
      if (!dry_run)
        s->marked_present = (size_t)PQntuples(res) < n;
      PQclear(res);
    }
  }
  if (rc == 0 && !dry_run) {
    snprintf(q, sizeof q,
             "INSERT INTO jobs (%s) SELECT %s FROM pg_temp.kjb_marked ORDER BY row_idx"
             " ON CONFLICT DO NOTHING",
             JOB_COLUMNS, JOB_COLUMNS);
    rc = exec(s, q, err);
  }
  if (rc == 0 && !dry_run) {
    rc = exec(s, "COMMIT", err);
    if (rc == 0)
      count_rows(rows, n, is_new);
    return rc;
  }
  kjb_err tmp;
  exec(s, "ROLLBACK", &tmp);
  return rc;
}

static void stream_fail(kjb_store *s, kjb_err *err) {
  s->stream_err = *err;
  s->stream = STREAM_BROKEN;
}

/* Opens the stream, when idle, as a COPY into table's columns in a
 * transaction, in the binary format or text. Returns false when the
 * stream is broken (now or before). */
static bool stream_open(kjb_store *s, const char *table, const char *columns, bool binary) {
  if (s->stream == STREAM_BROKEN)
    return false;
  if (s->stream == STREAM_IDLE) {
    kjb_err err;
    char q[512];
    snprintf(q, sizeof q, "COPY %s (%s) FROM STDIN%s", table, columns,
             binary ? " (FORMAT binary)" : "");
    kjb_buf_reset(&s->copybuf);
    s->streamed = 0;
    if (exec(s, "BEGIN", &err) < 0 || copy_begin(s, q, &err) < 0) {
      stream_fail(s, &err);
      return false;
    }
    s->stream = STREAM_OPEN;
    s->binary = binary;
    if (binary) /* signature, flags, header extension length */
      kjb_buf_append(&s->copybuf, "PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0", 19);
  }
  return true;
}

/* Counts the row just added to copybuf, and sends the gathered rows on
 * once there are enough. */
static void stream_added(kjb_store *s) {
  kjb_err err;
  s->streamed++;
  if (s->copybuf.len >= STREAM_CHUNK && copy_send(s, &err) < 0)
    stream_fail(s, &err);
}

void kjb_store_stream_row(kjb_store *s, const kjb_job_row *row) {
  if (!stream_open(s, "jobs", JOB_COLUMNS, false))
    return;
  copy_row(&s->copybuf, row);
  stream_added(s);
}

void kjb_store_stream_binary(kjb_store *s, const char *table, const char *columns,
                             const kjb_buf *row) {
  if (!stream_open(s, table, columns, true))
    return;
  kjb_buf_append(&s->copybuf, row->data, row->len);
  stream_added(s);
}

/* Ends a broken or open stream's transaction without committing it. */
static void stream_rollback(kjb_store *s) {
  kjb_err tmp;
  if (s->stream == STREAM_OPEN)
    PQputCopyEnd(s->conn, "abandoned");
  PGresult *res;
  while ((res = PQgetResult(s->conn)))
    PQclear(res);
  if (PQtransactionStatus(s->conn) != PQTRANS_IDLE)
    exec(s, "ROLLBACK", &tmp);
  s->stream = STREAM_IDLE;
}

void kjb_store_stream_abort(kjb_store *s) {
  if (s->stream != STREAM_IDLE)
    stream_rollback(s);
}

int kjb_store_stream_commit(kjb_store *s, size_t expect, kjb_err *err) {
  if (s->stream == STREAM_IDLE)
    return expect ? 1 : 0;
  if (s->stream == STREAM_BROKEN) {
    *err = s->stream_err;
    stream_rollback(s);
    return -(int)err->code;
  }
  if (s->streamed != expect) {
    stream_rollback(s);
    return 1;
  }
  s->stream = STREAM_IDLE;
  if (s->binary)
    kjb_buf_append(&s->copybuf, "\xff\xff", 2); /* the trailer: a tuple of -1 fields */
  int rc = copy_send(s, err);
  if (rc == 0)
    rc = copy_end(s, err);
  return end_copy(s, rc, err);
}

int kjb_store_stream_finish(kjb_store *s, const kjb_job_row *rows, size_t n, size_t *inserted,
                            kjb_err *err) {
  *inserted = 0;
  int state = s->stream;
  s->stream = STREAM_IDLE;
  if (state == STREAM_BROKEN) {
    *err = s->stream_err;
    if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
      kjb_err tmp;
      exec(s, "ROLLBACK", &tmp);
    }
    return -(int)err->code;
  }
  if (state == STREAM_IDLE)
    return n ? kjb_store_insert_jobs(s, rows, n, inserted, err) : 0;
  assert(s->streamed == n);
  int rc = copy_send(s, err);
  if (rc == 0)
    rc = copy_end(s, err);
  return finish_fast_path(s, end_copy(s, rc, err), rows, n, inserted, err);
}

int kjb_store_insert_jobs(kjb_store *s, const kjb_job_row *rows, size_t n, size_t *inserted,
                          kjb_err *err) {
  *inserted = 0;
  if (n == 0)
    return 0;
  return finish_fast_path(s, copy_straight(s, rows, n, err), rows, n, inserted, err);
}
