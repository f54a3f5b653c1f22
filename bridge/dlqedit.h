/* `kjb dlq edit`: one dead letter replayed with a corrected value. The
 * JSON the operator wrote is encoded with the topic's reader schema and
 * framed as the topic expects, then mapped to jobs at the record's
 * original coordinates, with its key and headers, exactly as a replay of
 * the original would be; the original bytes stay in the DLQ. */
#ifndef KJB_DLQEDIT_H
#define KJB_DLQEDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "err.h"
#include "store.h"

typedef struct {
  int64_t id;        /* the dead letter, kjb.dead_letters.id */
  const char *value; /* the corrected value as JSON (as kjb produce reads it) */
  size_t value_len;
  const char *source; /* where value came from, for messages ("fixed.json") */
  int dry_run;        /* show the jobs, write nothing */
  const char *actor;  /* for the audit row */
  FILE *out;          /* one line per job: its kind and args */
} kjb_dlq_edit_opts;

typedef struct {
  size_t jobs;     /* the jobs the value maps to */
  size_t inserted; /* of them, new (dry run: would be) */
} kjb_dlq_edit_result;

/* Edits dead letter o->id. Not in a dry run: inserts the jobs, marks the
 * row replayed and edited (kjb_dlqindex_mark_replayed) and writes an
 * audit row "dlq.edit" with the value. Returns 0, or a negative code:
 * KJB_EUSAGE when there is no such dead letter, the value is no JSON, does
 * not fit the reader schema, or its topic is not in the configuration
 * (messages name o->source); KJB_EKAFKA when its DLQ record cannot be read;
 * KJB_EPG; or the mapping's error when the value maps to no jobs. */
int kjb_dlq_edit(const kjb_config *cfg, kjb_store *s, const kjb_dlq_edit_opts *o,
                 kjb_dlq_edit_result *res, kjb_err *err);

#endif
