/* The dead-letter filters, one grammar for every command and API call that
 * selects rows of kjb.dead_letters (`kjb dlq ls|ignore`, replay by filter,
 * the HTTP API): parsing them strictly, and turning them into one SQL
 * WHERE clause. Pure: no database, no clock of its own. */
#ifndef KJB_DLQFILTER_H
#define KJB_DLQFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "util.h"

/* At most this many --id values in one filter. */
#define KJB_DLQ_FILTER_MAX_IDS 10000

/* What each filter selects on. */
typedef enum {
  KJB_DLQ_F_ID,           /* id N, repeatable: any of them */
  KJB_DLQ_F_DLQ_TOPIC,    /* dlq_topic */
  KJB_DLQ_F_SOURCE_TOPIC, /* source_topic */
  KJB_DLQ_F_REASON,       /* reason, "kjb." optional: TRUNCATED, kjb.TRUNCATED */
  KJB_DLQ_F_SINCE,        /* dead_lettered_at at or after */
  KJB_DLQ_F_UNTIL,        /* dead_lettered_at before */
  KJB_DLQ_F_KEY,          /* the key's bytes equal the text's */
  KJB_DLQ_F_STATUS,       /* dead, replayed, failing or ignored */
  KJB_DLQ_F__COUNT
} kjb_dlq_filter_field;

/* A parsed filter: every condition given must hold. Caller-owned:
 * kjb_dlq_filter_init / kjb_dlq_filter_close. Strings are copies. */
typedef struct {
  int64_t *ids;
  size_t nids, capids;
  char *dlq_topic, *source_topic, *reason, *status;
  char *key; /* the bytes to match, keylen of them */
  size_t keylen;
  bool has_since, has_until;
  int64_t since_us, until_us; /* microseconds since the epoch */
} kjb_dlq_filter;

void kjb_dlq_filter_init(kjb_dlq_filter *f);
void kjb_dlq_filter_close(kjb_dlq_filter *f);

/* The filter's name as an option takes it without its dashes: "id",
 * "dlq-topic", "source-topic", "reason", "since", "until", "key",
 * "status". */
const char *kjb_dlq_filter_name(kjb_dlq_filter_field field);

/* The field called name ("dlq-topic"; "dlq_topic" too, as JSON and query
 * strings spell it). Returns 0, or -1 for no filter of that name. */
int kjb_dlq_filter_lookup(const char *name, kjb_dlq_filter_field *field);

/* Whether s is a dead letter's status (dead, replayed, failing, ignored). */
bool kjb_dlq_status_valid(const char *s);

/* Reads a --since/--until value: an RFC 3339 date and time (as
 * kjb_datetime_parse takes it), or a duration (as kjb_duration_parse takes
 * it: "2h", "30m", "7d") back from now_us. Returns 0 with *out_us, or -1
 * with *why. */
int kjb_dlq_time_parse(const char *s, int64_t now_us, int64_t *out_us, const char **why);

/* Adds one condition, given as text, to f; now_us is the time durations
 * count back from. Strict: ids are integers from 1 to INT64_MAX (at most
 * KJB_DLQ_FILTER_MAX_IDS of them), texts are non-empty, a status is one
 * of the four, times parse with kjb_dlq_time_parse, and each filter but
 * id may be given once. opt prefixes the filter's name in messages ("--"
 * on the command line, "" for the API). Returns 0, or -KJB_EUSAGE with
 * one line such as `bad --status "gone" (expected dead, replayed, failing
 * or ignored)`; f keeps what it held. */
int kjb_dlq_filter_set(kjb_dlq_filter *f, kjb_dlq_filter_field field, const char *value,
                       int64_t now_us, const char *opt, kjb_err *err);

/* Checks the filter as a whole once every condition is in: --since must
 * come before --until. Returns 0 or -KJB_EUSAGE. */
int kjb_dlq_filter_check(const kjb_dlq_filter *f, const char *opt, kjb_err *err);

/* Whether f selects every row (no condition given). */
bool kjb_dlq_filter_empty(const kjb_dlq_filter *f);

/* Maximum parameters a WHERE clause takes: one per filter. */
#define KJB_DLQ_WHERE_MAX_PARAMS KJB_DLQ_F__COUNT

/* f as SQL over kjb.dead_letters, for libpq's text parameters. Caller-owned:
 * kjb_dlq_where_build / kjb_dlq_where_close. */
typedef struct {
  kjb_buf sql; /* "TRUE" or conditions joined by " AND " */
  const char *params[KJB_DLQ_WHERE_MAX_PARAMS];
  int nparams;
  /* What params point into. */
  kjb_buf ids, key;
  char since[40], until[40];
} kjb_dlq_where;

/* Builds the WHERE clause of f (not including the word WHERE), numbering
 * its parameters from $first: the caller's statement has first - 1
 * parameters before them. Column names are unqualified, or qualified with
 * alias when it is not NULL ("d" gives d.reason). f must stay unchanged
 * while w is used. */
void kjb_dlq_where_build(kjb_dlq_where *w, const kjb_dlq_filter *f, int first, const char *alias);
void kjb_dlq_where_close(kjb_dlq_where *w);

/* f as a JSON object of the filters given, for audit rows and logs:
 * {"id": [1, 2], "reason": "TRUNCATED", "since": "2026-...Z", "key": "k"}
 * (a key that is not UTF-8 as {"base64": "..."}). Appends to out. */
void kjb_dlq_filter_json(const kjb_dlq_filter *f, kjb_buf *out);

#endif
