/* The job store: PostgreSQL access for migrations and job inserts. */
#ifndef KJB_STORE_H
#define KJB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "err.h"
#include "util.h"

typedef struct kjb_store kjb_store;

/* A timestamptz column as the text every command and answer shows: RFC
 * 3339 in UTC with microseconds, whatever the session's TimeZone and
 * DateStyle ("2026-11-21T10:00:00.123456Z"; NULL stays NULL). */
#define KJB_SQL_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* Connects and sets search_path to the schema. Returns NULL with err
 * (KJB_EPG, transient) when the server cannot be reached. The password in
 * conninfo never appears in err. */
kjb_store *kjb_store_connect(const char *conninfo, const char *schema, kjb_err *err);
/* The same, for writers whose commit is followed by an act outside
 * PostgreSQL that depends on it (committing Kafka offsets after inserting
 * jobs): the session's synchronous_commit is pinned to a durable level, so
 * that neither a server running with synchronous_commit = off (which
 * forgets acknowledged commits in a crash) nor a later reload that turns
 * it off makes this session's commits forgettable. Executors keep the server's choice: a lost outcome is found and
 * redone (see kjb_queue_reconcile). */
kjb_store *kjb_store_connect_durable(const char *conninfo, const char *schema, kjb_err *err);
void kjb_store_free(kjb_store *s);

/* The connection, for modules with queries of their own (queue.c,
 * jobs.c). It stays owned by s. */
PGconn *kjb_store_conn(kjb_store *s);

/* Runs one parameterised statement (text parameters, NULL for SQL NULL)
 * and returns its result, which the caller PQclear()s; or NULL with err
 * (KJB_EPG) as "<what>: <server message>" when it failed. */
PGresult *kjb_store_query(kjb_store *s, const char *what, const char *sql, int nparams,
                          const char *const *params, kjb_err *err);

/* The same for a statement run often (the executor's claim and finish):
 * sql, a string that lives as long as the process, is prepared on s's
 * connection at its first use, so that later runs skip parsing, and
 * planning too once the server settles on a generic plan. At most
 * KJB_STORE_PREPARED statements per connection; the rest run as
 * kjb_store_query does. */
#define KJB_STORE_PREPARED 8
PGresult *kjb_store_query_prepared(kjb_store *s, const char *what, const char *sql, int nparams,
                                   const char *const *params, kjb_err *err);

/* The same, sent without waiting for the result: at most one statement
 * in flight per connection, and nothing else run on it until
 * kjb_store_result took the result. Returns 0 or -KJB_EPG with err. */
int kjb_store_send_prepared(kjb_store *s, const char *what, const char *sql, int nparams,
                            const char *const *params, kjb_err *err);

/* Reads what the server sent so far: 1 while the result of the statement
 * sent is incomplete, 0 once kjb_store_result would not block, or
 * -KJB_EPG with err when the connection failed. */
int kjb_store_busy(kjb_store *s, const char *what, kjb_err *err);

/* The result of the statement sent, waiting for it, as kjb_store_query
 * returns it. */
PGresult *kjb_store_result(kjb_store *s, const char *what, kjb_err *err);

/* Runs one command without parameters or rows (BEGIN, COMMIT, ROLLBACK).
 * Returns 0, or -KJB_EPG with err. */
int kjb_store_exec(kjb_store *s, const char *sql, kjb_err *err);

/* Applies pending migrations in order, each in its own transaction, under
 * a session advisory lock so concurrent callers wait and then find
 * nothing to do. *applied receives how many ran. */
int kjb_store_migrate(kjb_store *s, int *applied, kjb_err *err);
/* Prints each migration as "applied  NAME  AT" or "pending  NAME" (unless
 * out is NULL) and sets *pending. */
int kjb_store_migrate_status(kjb_store *s, FILE *out, int *pending, kjb_err *err);

/* One job to insert. Strings are borrowed for the duration of the call. */
typedef struct {
  const char *kind;
  const char *queue;
  int priority;
  int max_attempts;
  const char *args_json;    /* NUL-terminated JSON */
  const char *meta_json;    /* NUL-terminated JSON */
  const char *unique_key;   /* NULL for none */
  const char *ordering_key; /* NULL for none */
  const char *source_topic;
  int32_t source_partition;
  int64_t source_offset;
} kjb_job_row;

/* Inserts rows in one transaction. A row whose source coordinates and
 * kind already exist, or whose (kind, unique_key) is taken, inserts
 * nothing; *inserted counts the rows that were new. Either all of the
 * batch is committed or none (err set; KJB_EPG is transient). */
int kjb_store_insert_jobs(kjb_store *s, const kjb_job_row *rows, size_t n, size_t *inserted,
                          kjb_err *err);

/* Inserts rows like kjb_store_insert_jobs and sets is_new[i] to whether
 * rows[i] was new: no stored job had its source coordinates and kind, nor
 * its kind and unique_key. With dry_run nothing is written; is_new tells
 * what an insert would do. */
int kjb_store_insert_marked(kjb_store *s, const kjb_job_row *rows, size_t n, int dry_run,
                            unsigned char *is_new, kjb_err *err);

/* Commits the rows streamed (kjb_store_stream_row) as a batch of
 * kjb_store_insert_marked would be inserted: rows/n must be exactly
 * those rows. When a stored row refuses them, the batch is redone as
 * insert_marked does it for batches with stored rows. Returns 0 or a
 * negative code with err. kjb_store_marked_present tells whether the
 * last batch had stored rows, when streaming the next is likely in vain. */
int kjb_store_stream_finish_marked(kjb_store *s, const kjb_job_row *rows, size_t n,
                                   unsigned char *is_new, kjb_err *err);
bool kjb_store_marked_present(const kjb_store *s);

/* Streaming: rows are sent to the server in an open COPY as they are
 * produced, so PostgreSQL parses and indexes them while the caller decodes
 * the next records; the batch becomes visible only at finish.
 *
 * kjb_store_stream_row appends one row (copied); it never fails, but
 * remembers a failure for finish. kjb_store_stream_finish commits
 * everything streamed since the last finish; rows/n must be exactly those
 * rows, still alive, so that a batch that repeats stored rows (a unique
 * violation) can be redone through the staging path. On error nothing is
 * committed and the caller may retry with kjb_store_insert_jobs. */
void kjb_store_stream_row(kjb_store *s, const kjb_job_row *row);
int kjb_store_stream_finish(kjb_store *s, const kjb_job_row *rows, size_t n, size_t *inserted,
                            kjb_err *err);

/* The same stream for rows of another table, in COPY's binary format:
 * row is one tuple (field count, then each field's length and bytes).
 * kjb_store_stream_commit commits what was streamed when it is exactly
 * expect rows: 0; 1 when there were not that many (nothing streamed
 * included) or a unique constraint refused them, and a negative code on
 * error; then nothing is committed. kjb_store_stream_abort drops an open
 * stream. A store streams into one table at a time: jobs or another, not
 * both in one transaction. */
void kjb_store_stream_binary(kjb_store *s, const char *table, const char *columns,
                             const kjb_buf *row);
int kjb_store_stream_commit(kjb_store *s, size_t expect, kjb_err *err);
void kjb_store_stream_abort(kjb_store *s);

/* The help text of kjb_jobs_inserted_total, which the store counts. */
#define KJB_INSERTED_HELP "Jobs inserted, by kind."

#endif
