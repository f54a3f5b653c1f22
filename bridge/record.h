/* A source record on its way to jobs: decoding and mapping, shared by
 * ingest and replay so that a replayed dead letter becomes exactly the
 * jobs it would have become on its original topic. */
#ifndef KJB_RECORD_H
#define KJB_RECORD_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "config.h"
#include "dlq.h"
#include "err.h"
#include "store.h"
#include "util.h"

typedef struct {
  const char *topic; /* the original topic */
  int32_t partition;
  int64_t offset;
  int64_t timestamp; /* ms since the epoch; -1 when unknown */
  const void *key;
  size_t key_len;
  const void *value;
  size_t len;
  const rd_kafka_headers_t *headers; /* NULL for none */
  /* Leave the dead-letter headers (kjb_dlq_is_error_header) out of the
   * job's meta: set when the record comes back from a DLQ. */
  int skip_error_headers;
  /* The traceparent the jobs continue (the consumer's span for this
   * record, when spans are exported); NULL: the record's own. */
  const char *trace_context;
} kjb_record;

/* The record a dead letter stands for: the original topic t and
 * coordinates from its headers dl, the key and headers of the DLQ record
 * m (headers h, the dead-letter ones left out of the meta), and m's value
 * (which a caller may replace, as kjb dlq edit does). */
kjb_record kjb_record_of_dead_letter(const kjb_topic_cfg *t, const kjb_dead_letter *dl,
                                     const rd_kafka_message_t *m, const rd_kafka_headers_t *h);

/* Job rows accumulated for a batch, with scratch space for mapping (one
 * buffer per mapped column, and an arena for the decoded record, reset
 * for each record so that a batch holds its rows, not its records'
 * decoded values). Caller-owned: kjb_rows_init / kjb_rows_close. */
typedef struct {
  kjb_job_row *rows;
  size_t n, cap;
  kjb_buf args, key, okey, meta;
  kjb_arena *decoded;
} kjb_rows;

void kjb_rows_init(kjb_rows *r);
void kjb_rows_close(kjb_rows *r);

/* Decodes r with topic t's framing and maps it through every job of t,
 * appending the record's rows to rows (strings in arena): all of its
 * jobs or none. Returns 0, or a negative code with err and *stage set to
 * KJB_DLQ_STAGE_VALUE (decoding) or KJB_DLQ_STAGE_MAPPING (mapping). A transient
 * error (kjb_err_is_transient) must be retried, never dead-lettered. */
int kjb_record_to_jobs(kjb_catalog *c, const kjb_topic_cfg *t, const kjb_record *r,
                       kjb_arena *arena, kjb_rows *rows, const char **stage, kjb_err *err);

#endif
