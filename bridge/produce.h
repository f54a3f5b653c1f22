/* `kjb produce`: JSON lines encoded with a topic's reader schema and
 * framing, produced to the topic. */
#ifndef KJB_PRODUCE_H
#define KJB_PRODUCE_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "err.h"

typedef struct {
  const char *topic;    /* a topic of the configuration */
  int schema_id;        /* for the confluent header; -1: the reader schema's id */
  const char *key_path; /* top-level field whose value is the key; NULL: no key */
  FILE *in;             /* the JSON lines */
  FILE *errs;           /* one line per bad or undelivered line */
  const char *prefix;   /* put before each of those lines, e.g. "kjb: produce: " */
  /* Records delivered of the non-empty lines (counted first when in is a
   * regular file; else no total), as kjb_progress lines. NULL: none. */
  FILE *progress;
} kjb_produce_opts;

typedef struct {
  size_t produced;    /* handed to the producer */
  size_t bad;         /* not JSON, not encodable, or refused by the producer */
  size_t undelivered; /* produced but not acknowledged */
} kjb_produce_stats;

/* Encodes every non-empty line of o->in and produces it (idempotent,
 * acks=all), then waits until all are delivered or *stop becomes
 * non-zero. A bad line is reported on o->errs as "<prefix>line N: <why>"
 * and skipped. Returns 0 when the lines were read, with the counts in
 * *st, or a negative code with err when it could not start: KJB_EUSAGE
 * when the topic is not in cfg, a schema or Kafka configuration error,
 * or KJB_EKAFKA. Also KJB_EKAFKA, at once, when the producer hits an
 * error retrying will not mend (kjb_kafka_note_error: a refused login, a
 * failed TLS handshake): the rest of o->in is left unread and what was
 * not delivered yet is dropped, counted in st->undelivered. */
int kjb_produce_lines(const kjb_config *cfg, const kjb_produce_opts *o, volatile sig_atomic_t *stop,
                      kjb_produce_stats *st, kjb_err *err);

#endif
