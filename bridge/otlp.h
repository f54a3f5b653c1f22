/* Spans over OTLP/HTTP (JSON encoding, POST <endpoint>/v1/traces): one for
 * each record the consumer turns into jobs or a dead letter, one for each
 * attempt of a job, linked by the W3C trace context that travels with the
 * job (trace.h). Spans are queued without blocking and sent in batches by
 * a thread of their own; when the queue is full or the collector does not
 * take them they are dropped and counted, never waited for. Process-wide,
 * like the metrics. */
#ifndef KJB_OTLP_H
#define KJB_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

/* At most this many spans wait to be sent; more are dropped. */
#define KJB_OTLP_QUEUE 8192
/* Spans per request. */
#define KJB_OTLP_BATCH 512

#define KJB_OTLP_MAX_ATTRS 8

typedef struct {
  const char *key;
  const char *str; /* a string attribute, or NULL for the integer */
  int64_t num;
} kjb_span_attr;

/* A finished span. Strings are copied by kjb_otlp_span. */
typedef struct {
  char trace_id[33]; /* lower-case hex */
  char span_id[17];
  char parent_id[17]; /* "" for a root span */
  const char *name;
  int kind;         /* OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer */
  int64_t start_us; /* wall clock, µs since the epoch */
  int64_t end_us;
  const char *error; /* NULL: status OK; else status ERROR with this message */
  kjb_span_attr attrs[KJB_OTLP_MAX_ATTRS];
  size_t nattrs;
} kjb_span;

/* Starts the exporter when cfg->tracing.otlp_endpoint is set (else does
 * nothing and kjb_otlp_enabled stays false). Returns 0, or -KJB_EINTERNAL
 * when its thread cannot start. */
int kjb_otlp_start(const kjb_config *cfg, kjb_err *err);

/* Sends what is queued (waiting at most a few seconds) and stops. */
void kjb_otlp_stop(void);

bool kjb_otlp_enabled(void);

/* Whether a record without a sampled trace context starts a trace of its
 * own: true with probability tracing.sample_ratio. */
bool kjb_otlp_sample_root(void);

/* Queues a copy of s; never blocks. */
void kjb_otlp_span(const kjb_span *s);

#endif
