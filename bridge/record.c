/* Source record -> job rows. */
#include "record.h"

#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "trace.h"
#include "map.h"

void kjb_rows_init(kjb_rows *r) {
  memset(r, 0, sizeof *r);
  kjb_buf_init(&r->args);
  kjb_buf_init(&r->key);
  kjb_buf_init(&r->okey);
  kjb_buf_init(&r->meta);
  r->decoded = kjb_arena_new(64 * 1024);
}

void kjb_rows_close(kjb_rows *r) {
  free(r->rows);
  kjb_buf_close(&r->args);
  kjb_buf_close(&r->key);
  kjb_buf_close(&r->okey);
  kjb_buf_close(&r->meta);
  kjb_arena_free(r->decoded);
  memset(r, 0, sizeof *r);
}

/* Bytes as a JSON string when they are UTF-8, else {"base64": "..."}. */
static void json_bytes(kjb_buf *b, const void *p, size_t n) {
  if (kjb_utf8_invalid_at(p, n) < 0) {
    kjb_buf_json_str(b, p, n);
  } else {
    kjb_buf_puts(b, "{\"base64\":\"");
    kjb_buf_base64(b, p, n);
    kjb_buf_puts(b, "\"}");
  }
}

/* The record's W3C trace context, when it has a valid one: its
 * traceparent, and its tracestate beside it. */
static void trace_meta(kjb_buf *b, const rd_kafka_headers_t *h, const char *context) {
  const void *tp, *ts;
  size_t tplen, tslen;
  if (context) {
    tp = context;
    tplen = strlen(context);
  } else if (!h || rd_kafka_header_get_last(h, "traceparent", &tp, &tplen) || !tp ||
             !kjb_traceparent_valid(tp, tplen)) {
    return;
  }
  kjb_buf_puts(b, ",\"traceparent\":");
  kjb_buf_json_str(b, tp, tplen);
  if (h && rd_kafka_header_get_last(h, "tracestate", &ts, &tslen) == RD_KAFKA_RESP_ERR_NO_ERROR &&
      ts && kjb_tracestate_valid(ts, tslen)) {
    kjb_buf_puts(b, ",\"tracestate\":");
    kjb_buf_json_str(b, ts, tslen);
  }
}

static void record_meta(kjb_buf *b, const kjb_record *r) {
  kjb_buf_reset(b);
  kjb_buf_puts(b, "{\"topic\":");
  kjb_buf_json_str(b, r->topic, strlen(r->topic));
  kjb_buf_printf(b, ",\"partition\":%d,\"offset\":%lld,\"timestamp\":", (int)r->partition,
                 (long long)r->offset);
  if (r->timestamp >= 0)
    kjb_buf_printf(b, "%lld", (long long)r->timestamp);
  else
    kjb_buf_puts(b, "null");
  kjb_buf_puts(b, ",\"key\":");
  if (r->key)
    json_bytes(b, r->key, r->key_len);
  else
    kjb_buf_puts(b, "null");
  if (r->headers) {
    kjb_buf_puts(b, ",\"headers\":{");
    const char *name;
    const void *val;
    size_t len;
    int first = 1;
    for (size_t i = 0;
         rd_kafka_header_get_all(r->headers, i, &name, &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
      if (kjb_utf8_invalid_at(name, strlen(name)) >= 0 ||
          (r->skip_error_headers && kjb_dlq_is_error_header(name)))
        continue;
      if (!first)
        kjb_buf_putc(b, ',');
      first = 0;
      kjb_buf_json_str(b, name, strlen(name));
      kjb_buf_putc(b, ':');
      if (val)
        json_bytes(b, val, len);
      else
        kjb_buf_puts(b, "null");
    }
    kjb_buf_putc(b, '}');
  }
  trace_meta(b, r->headers, r->trace_context);
  kjb_buf_putc(b, '}');
}

static char *arena_copy(kjb_arena *a, const kjb_buf *b) {
  char *p = kjb_arena_strndup(a, b->data, b->len);
  if (!p)
    abort();
  return p;
}

int kjb_record_to_jobs(kjb_catalog *c, const kjb_topic_cfg *t, const kjb_record *r,
                       kjb_arena *arena, kjb_rows *rows, const char **stage, kjb_err *err) {
  kjb_value *rec = NULL;
  *stage = KJB_DLQ_STAGE_VALUE;
  kjb_arena_reset(rows->decoded);
  int rc = kjb_decode_record(c, t, r->value, r->value ? r->len : 0, rows->decoded, &rec, err);
  if (rc < 0)
    return rc;
  *stage = KJB_DLQ_STAGE_MAPPING;
  size_t first = rows->n;
  const char *meta = NULL;
  for (size_t j = 0; j < t->njobs; j++) {
    const kjb_job_cfg *job = &t->jobs[j];
    kjb_buf_reset(&rows->args);
    kjb_buf_reset(&rows->key);
    kjb_buf_reset(&rows->okey);
    if (kjb_map_args(job, rec, &rows->args, err) < 0 ||
        (job->unique_key &&
         kjb_map_template(job, "unique_key", job->unique_key, rec, &rows->key, err) < 0) ||
        (job->ordering_key &&
         kjb_map_template(job, "ordering_key", job->ordering_key, rec, &rows->okey, err) < 0)) {
      rows->n = first; /* all of the record's jobs, or none */
      return -(int)err->code;
    }
    if (!meta) {
      record_meta(&rows->meta, r);
      meta = arena_copy(arena, &rows->meta);
    }
    rows->rows = kjb_xgrow(rows->rows, &rows->cap, rows->n + 1, sizeof *rows->rows);
    rows->rows[rows->n++] = (kjb_job_row){
        .kind = job->kind,
        .queue = job->queue,
        .priority = job->priority,
        .max_attempts = job->max_attempts,
        .args_json = arena_copy(arena, &rows->args),
        .meta_json = meta,
        .unique_key = job->unique_key ? arena_copy(arena, &rows->key) : NULL,
        .ordering_key = job->ordering_key ? arena_copy(arena, &rows->okey) : NULL,
        .source_topic = t->topic,
        .source_partition = r->partition,
        .source_offset = r->offset,
    };
  }
  return 0;
}

kjb_record kjb_record_of_dead_letter(const kjb_topic_cfg *t, const kjb_dead_letter *dl,
                                     const rd_kafka_message_t *m, const rd_kafka_headers_t *h) {
  return (kjb_record){
      .topic = t->topic,
      .partition = dl->partition,
      .offset = dl->offset,
      .timestamp = dl->timestamp,
      .key = m->key,
      .key_len = m->key_len,
      .value = m->payload,
      .len = m->len,
      .headers = h,
      .skip_error_headers = 1,
  };
}
