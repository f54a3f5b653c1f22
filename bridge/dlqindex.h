/* The dead-letter index, kjb.dead_letters: one row per DLQ record, written
 * by the consumer as it dead-letters (kjb_dlqindex_upsert) and by `kjb dlq
 * reindex` from a DLQ topic; read by `kjb dlq ls|show|stats`, changed by
 * `kjb dlq ignore`, counted for the kjb_dead_letters gauge. The DLQ topic
 * keeps the bytes; rows say where they are and why they are there. */
#ifndef KJB_DLQINDEX_H
#define KJB_DLQINDEX_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "catalog.h"
#include "config.h"
#include "dlq.h"
#include "dlqfilter.h"
#include "err.h"
#include "store.h"

/* One dead letter as the index holds it. Strings are borrowed. */
typedef struct {
  const char *dlq_topic; /* where the DLQ record is */
  int32_t dlq_partition;
  int64_t dlq_offset;
  const char *source_topic; /* where the record came from */
  int32_t source_partition;
  int64_t source_offset;
  const void *key; /* NULL: no key (an empty key is key_len 0) */
  size_t key_len;
  const char *reason;         /* kjb_dlq_reason of the error class */
  const char *stage;          /* may be NULL */
  const char *message;        /* may be NULL */
  const char *consumer_group; /* may be NULL */
  int64_t original_timestamp; /* ms since the epoch; -1 unknown */
  int64_t dead_lettered_at;   /* µs since the epoch */
  size_t value_size;
} kjb_dlq_entry;

/* Writes the n entries in a transaction of its own (none may be open on
 * s): a new row each, or, for a source record that has a row
 * for that DLQ topic already (it was dead-lettered again: delivered again
 * after a crash, or its topic consumed again), that row moved to the new
 * DLQ coordinates with the new reason, message and times. status,
 * replays and the replay columns are kept. Of two entries for the same
 * source and DLQ topic, the later DLQ offset wins. New rows go in by
 * COPY; when one is refused (a row to move) the batch is upserted
 * instead. Returns 0, or -KJB_EPG with err (nothing written). */
int kjb_dlqindex_upsert(kjb_store *s, const kjb_dlq_entry *e, size_t n, kjb_err *err);

/* The same in two steps, so that PostgreSQL writes rows while the caller
 * goes on: kjb_dlqindex_stream sends e's row in a COPY left open on s
 * (kjb_store_stream_binary; it never fails, a failure waits for finish).
 * kjb_dlqindex_stream_finish commits the streamed rows when they are
 * exactly the n entries e (in any order); when a row was refused (its
 * source record has one already), or some are missing, it writes e by
 * kjb_dlqindex_upsert instead. Returns 0, or -KJB_EPG with err (nothing
 * written). */
void kjb_dlqindex_stream(kjb_store *s, const kjb_dlq_entry *e);
int kjb_dlqindex_stream_finish(kjb_store *s, const kjb_dlq_entry *e, size_t n, kjb_err *err);

/* Writes the rows that f selects, oldest first (by id, as the API pages),
 * at most limit (0: 50): an aligned table (id, dead_lettered_at, status,
 * reason, source and DLQ coordinates, key, message) or, with json, one
 * JSON array of objects with every column (key as text when it is UTF-8,
 * else {"base64": ...}; timestamps RFC 3339 UTC or null). *shown (if not
 * NULL) receives the number of rows. Returns 0, or -KJB_EPG (nothing
 * written). */
int kjb_dlqindex_ls(kjb_store *s, const kjb_dlq_filter *f, long limit, int json, FILE *out,
                    long *shown, kjb_err *err);

/* The rows f selects whose id is above after_id (0: from the first),
 * oldest first, at most limit (0: 50), as a JSON array of the objects
 * `kjb dlq ls --json` prints (which calls this): every column, key as
 * text when it is UTF-8, else {"base64": ...}, timestamps RFC 3339 UTC or
 * null. Returns 0 with *out (a new reference), or -KJB_EPG with *out
 * NULL. */
int kjb_dlqindex_list_json(kjb_store *s, const kjb_dlq_filter *f, int64_t after_id, long limit,
                           json_t **out, kjb_err *err);

/* What kjb_dlqindex_show could tell beyond the row. */
typedef struct {
  int found;   /* the row exists */
  int fetched; /* its DLQ record was read */
  kjb_err why; /* when not fetched: why not */
} kjb_dlqindex_shown;

/* Writes dead letter id: its row, the DLQ record's headers and a hex dump
 * of its value that marks the failing byte (kjb_dlq_failing_byte), and,
 * when cat is not NULL, what the value decodes to with the current
 * configuration (or why it still does not, and the fields decoded before
 * the failure: kjb_decode_partial); with json one object of all that. The record is read through r (NULL: not read). Nothing is written
 * when the row does not exist. Returns 0 (see *res), or -KJB_EPG. */
int kjb_dlqindex_show(kjb_store *s, kjb_dlq_reader *r, kjb_catalog *cat, const kjb_config *cfg,
                      int64_t id, int json, FILE *out, kjb_dlqindex_shown *res, kjb_err *err);

/* The object `kjb dlq show ID --json` prints (kjb_dlqindex_show with
 * json), into *out (a new reference); *out NULL when the row does not
 * exist. Returns 0 (see *res), or -KJB_EPG. */
int kjb_dlqindex_show_json(kjb_store *s, kjb_dlq_reader *r, kjb_catalog *cat, const kjb_config *cfg,
                           int64_t id, json_t **out, kjb_dlqindex_shown *res, kjb_err *err);

/* Writes the number of rows by DLQ topic, reason and status among those f
 * selects, and their total: a table, or with json
 * {"total": n, "counts": [{"dlq_topic", "reason", "status", "count"}]}.
 * Returns 0, or -KJB_EPG. */
int kjb_dlqindex_stats(kjb_store *s, const kjb_dlq_filter *f, int json, FILE *out, kjb_err *err);

/* Sets status "ignored" on the rows f selects that are dead or failing
 * (replayed and ignored ones stay as they are) and records an audit row
 * for actor in the same transaction. *matched receives how many rows f
 * selects, *ignored how many changed. Returns 0, or -KJB_EPG (nothing
 * changed). */
int kjb_dlqindex_ignore(kjb_store *s, const kjb_dlq_filter *f, const char *actor, int64_t *matched,
                        int64_t *ignored, kjb_err *err);

/* What kjb_dlqindex_ignore would do, changing nothing: *matched
 * receives how many rows f selects, *ignorable how many of them are dead
 * or failing. Returns 0, or -KJB_EPG. */
int kjb_dlqindex_ignore_count(kjb_store *s, const kjb_dlq_filter *f, int64_t *matched,
                              int64_t *ignorable, kjb_err *err);

typedef struct {
  uint64_t records;      /* committed records read */
  uint64_t not_dead;     /* of them, without dead-letter headers: skipped */
  uint64_t inserted;     /* rows added */
  uint64_t updated;      /* rows moved or corrected */
  uint64_t unchanged;    /* rows that already said what the topic says */
  uint64_t removed;      /* rows whose DLQ record the topic does not hold */
  uint64_t before_start; /* rows of records before the log start, kept */
} kjb_dlqindex_reindex_stats;

/* Builds or repairs the rows of DLQ topic from its committed records (as
 * read_committed sees them, from each partition's start to its end as of
 * the call), whoever wrote them: kjb, Kafka Connect, or any producer
 * that set the __connect.errors.* headers. Per source record and topic the
 * latest dead letter counts. Afterwards every record read has its row,
 * and rows pointing at offsets in the range read that hold no committed
 * dead letter (an aborted transaction's) are removed; rows of records
 * written after the call started, or before the log start, are left
 * alone. Running it again changes nothing. actor (if not NULL) gets an
 * audit row. progress (if not NULL) receives kjb_progress lines of the
 * scan: offsets passed of the partitions' end minus start offsets (records
 * read, and the transaction markers and aborted records read_committed
 * skips). Returns 0, or a negative code (KJB_EKAFKA, KJB_EPG, or
 * KJB_EUSAGE when stopped). */
int kjb_dlqindex_reindex(const kjb_config *cfg, kjb_store *s, const char *topic, const char *actor,
                         FILE *progress, volatile sig_atomic_t *stop,
                         kjb_dlqindex_reindex_stats *st, kjb_err *err);

/* Sets the kjb_dead_letters{dlq_topic,reason,status} gauges from the
 * table: every status of every (dlq_topic, reason) that has rows, zeros
 * included. Returns 0, or -KJB_EPG (the gauges keep their values). */
int kjb_dlqindex_gauges(kjb_store *s, kjb_err *err);

/* What one replay of a dead letter came to, by its DLQ coordinates. */
typedef struct {
  const char *dlq_topic;
  int32_t dlq_partition;
  int64_t dlq_offset;
  const char *error; /* NULL: it became its jobs (or they existed); else why it still fails */
} kjb_dlq_replayed;

/* Records n replays in the rows of those DLQ records, in one statement:
 * status "replayed" or "failing", replays + 1, last_replayed_at now,
 * last_error the error (NULL when it succeeded); edited set when edited.
 * A DLQ record without a row (a topic never indexed) changes nothing.
 * Returns 0, or -KJB_EPG with err. */
int kjb_dlqindex_mark_replayed(kjb_store *s, const kjb_dlq_replayed *v, size_t n, bool edited,
                               kjb_err *err);

/* The same in two steps, so that the caller works on while PostgreSQL
 * updates the rows: the statement is sent (0, or -KJB_EPG with err), and
 * nothing else may run on s until kjb_dlqindex_replayed_result took its
 * result (0, or -KJB_EPG with err). */
int kjb_dlqindex_send_replayed(kjb_store *s, const kjb_dlq_replayed *v, size_t n, bool edited,
                               kjb_err *err);
int kjb_dlqindex_replayed_result(kjb_store *s, kjb_err *err);

#endif
