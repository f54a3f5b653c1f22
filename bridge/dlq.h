/* Reading dead-letter topics: `kjb dlq peek`. */
#ifndef KJB_DLQ_H
#define KJB_DLQ_H

#include <stdio.h>

#include "config.h"
#include "err.h"

typedef struct {
  const char *topic;
  long limit;       /* at most this many records; 0 for all */
  int json;         /* one JSON object per line instead of text */
  const char *code; /* only records with this error code ("kjb.TRUNCATED" or
                       "TRUNCATED"); NULL for all */
} kjb_dlq_peek_opts;

/* Prints the topic's records from the beginning up to its end offsets as of
 * the call, with their error headers. Commits nothing. Returns 0 or a
 * negative code (KJB_EKAFKA). *shown receives how many were printed. */
int kjb_dlq_peek(const kjb_config *cfg, const kjb_dlq_peek_opts *o, FILE *out, long *shown,
                 kjb_err *err);

#endif
