/* The dead-letter format, written and read here only: the headers a dead
 * letter carries (compatible with Kafka Connect's, so that its tooling
 * reads ours and we read its), and `kjb dlq peek`. */
#ifndef KJB_DLQ_H
#define KJB_DLQ_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "err.h"
#include "util.h"

/* Header names. The __connect.errors.* ones are Kafka Connect's. */
#define KJB_DLQ_CONNECT_PREFIX "__connect.errors."
#define KJB_DLQ_KJB_PREFIX "kjb."
#define KJB_DLQ_TOPIC KJB_DLQ_CONNECT_PREFIX "topic"
#define KJB_DLQ_PARTITION KJB_DLQ_CONNECT_PREFIX "partition"
#define KJB_DLQ_OFFSET KJB_DLQ_CONNECT_PREFIX "offset"
#define KJB_DLQ_STAGE KJB_DLQ_CONNECT_PREFIX "stage"
#define KJB_DLQ_CLASS KJB_DLQ_CONNECT_PREFIX "class.name"
#define KJB_DLQ_EXCEPTION_CLASS KJB_DLQ_CONNECT_PREFIX "exception.class.name"
#define KJB_DLQ_EXCEPTION_MESSAGE KJB_DLQ_CONNECT_PREFIX "exception.message"
#define KJB_DLQ_ORIGINAL_TIMESTAMP KJB_DLQ_KJB_PREFIX "original.timestamp"
#define KJB_DLQ_CONSUMER_GROUP KJB_DLQ_KJB_PREFIX "consumer.group"
#define KJB_DLQ_DEAD_LETTERED_AT KJB_DLQ_KJB_PREFIX "dead_lettered_at"

/* Stages, as Kafka Connect names them: where the record failed. */
#define KJB_DLQ_STAGE_VALUE "VALUE_CONVERTER"  /* decoding the value */
#define KJB_DLQ_STAGE_KEY "KEY_CONVERTER"      /* decoding the key */
#define KJB_DLQ_STAGE_MAPPING "TRANSFORMATION" /* mapping it to jobs */

/* What the headers say about one dead letter. */
typedef struct {
  const char *topic; /* the original record's coordinates */
  int32_t partition;
  int64_t offset;
  const char *stage; /* a KJB_DLQ_STAGE_* */
  /* "kjb.<CODE>" (kjb_dlq_error_class); Kafka Connect's are Java class
   * names. */
  const char *error_class;
  const char *message; /* the reason, for people */
  int64_t timestamp;   /* the original record's, ms since the epoch; -1 unknown */
  const char *group;   /* the consumer group that dead-lettered it */
  const char *at;      /* when, RFC 3339 */
} kjb_dead_letter;

/* The error class of a kjb error code: "kjb.<NAME>" into buf (at least
 * 64 bytes). Returns buf. */
const char *kjb_dlq_error_class(kjb_errcode code, char *buf, size_t cap);

/* Adds d's headers to h (after whatever it holds: the original record's
 * headers stay as they were). Every string field of d must be set except
 * at, which NULL makes the current time with millisecond precision;
 * timestamp -1 is written as "-1". */
void kjb_dlq_headers_add(rd_kafka_headers_t *h, const kjb_dead_letter *d);

/* Reads a dead letter's headers (h may be NULL: none) into *d, the last
 * of each name counting, strings copied into arena. A header that is
 * absent, or holds a NUL byte, reads as NULL. Returns 0, or
 * -KJB_EBAD_VALUE with err when the original coordinates are missing or
 * not integers in range (partition 0 to INT32_MAX, offset 0 to
 * INT64_MAX): then d is filled as far as it could be, with -1 for a
 * coordinate it could not read. A missing or malformed original
 * timestamp reads as -1 and is no error (Kafka Connect writes none). */
int kjb_dlq_headers_parse(const rd_kafka_headers_t *h, kjb_arena *arena, kjb_dead_letter *d,
                          kjb_err *err);

/* True for the headers a dead letter adds to the original record's. */
int kjb_dlq_is_error_header(const char *name);

/* The index's reason for an error class: the code without "kjb."
 * ("kjb.TRUNCATED" is "TRUNCATED"), another class (Kafka Connect's Java
 * exception names) as it is, and "UNKNOWN" for none. */
const char *kjb_dlq_reason(const char *error_class);

/* Where in the record's value a kjb exception message says decoding
 * failed: "byte 0: bad magic ..." is byte 0, and "avro body at byte 5:
 * field \"x\": truncated at byte 21: ..." is byte 26 (the body's offset
 * plus the offset within it). Returns the offset, or -1 when the message
 * names none (a mapping error, another tool's message). The decoder's
 * messages are the only place it is recorded: the headers have no field
 * of their own for it. */
long kjb_dlq_failing_byte(const char *message);

/* Reads single records of DLQ topics at their coordinates, as a
 * read_committed consumer sees them: the index says where a dead letter
 * is, this fetches its bytes. */
typedef struct kjb_dlq_reader kjb_dlq_reader;

kjb_dlq_reader *kjb_dlq_reader_new(const kjb_config *cfg, kjb_err *err);
void kjb_dlq_reader_free(kjb_dlq_reader *r);

/* The committed record at topic [partition] @offset into *out, which the
 * caller destroys (rd_kafka_message_destroy) before freeing r. Returns 0;
 * 1 with err saying why when there is no such committed record (before
 * the log start, past the end, or an aborted transaction's); or
 * -KJB_EKAFKA when the broker could not be asked within timeout_ms. */
int kjb_dlq_reader_get(kjb_dlq_reader *r, const char *topic, int32_t partition, int64_t offset,
                       int timeout_ms, rd_kafka_message_t **out, kjb_err *err);

typedef struct {
  const char *topic;
  long limit; /* at most this many records; 0 for all */
  int json;   /* one JSON object per line instead of text */
  /* Only records with this error code ("kjb.TRUNCATED" or "TRUNCATED");
   * NULL for all. */
  const char *code;
} kjb_dlq_peek_opts;

/* Prints the topic's records from the beginning up to its end offsets as of
 * the call, with their error headers. Commits nothing. Returns 0 or a
 * negative code (KJB_EKAFKA; at once for a login the broker refuses or a
 * failed TLS handshake). *shown receives how many were printed. */
int kjb_dlq_peek(const kjb_config *cfg, const kjb_dlq_peek_opts *o, FILE *out, long *shown,
                 kjb_err *err);

#endif
