/* Replay: dead-lettered records run through the current decoder and
 * mapping and become jobs at their original coordinates. Also the
 * offset-reset specs of kafka-consumer-groups --reset-offsets. */
#ifndef KJB_REPLAY_H
#define KJB_REPLAY_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "config.h"
#include "dlqfilter.h"
#include "err.h"

typedef enum {
  KJB_RESET_EARLIEST,
  KJB_RESET_LATEST,
  KJB_RESET_OFFSET,   /* to-offset:N */
  KJB_RESET_DATETIME, /* to-datetime:2026-11-21T10:00:00.000 (UTC) */
  KJB_RESET_SHIFT,    /* shift-by:N (may be negative) */
  KJB_RESET_DURATION  /* by-duration:PT1H (ISO 8601 duration back from now) */
} kjb_reset_kind;

typedef struct {
  kjb_reset_kind kind;
  int64_t value; /* offset, shift, epoch ms or duration ms */
} kjb_reset_spec;

/* Parses a --reset-offsets SPEC strictly: integers through kjb_parse_i64,
 * dates that exist, ISO 8601 durations that fit in 64 bits of
 * milliseconds. Returns 0, or -KJB_EUSAGE with the message
 * `bad reset spec "<spec>": <what is wrong>` and *out untouched. */
int kjb_reset_parse(const char *text, kjb_reset_spec *out, kjb_err *err);

/* The offset a partition resets to, from its watermarks, its committed
 * offset (-1 for none) and, for time-based specs, the offset the broker
 * found for the time (-1 for none after it). Always within [low, high]:
 * a shift past either end stops there, without overflowing. */
int64_t kjb_reset_target(const kjb_reset_spec *spec, int64_t low, int64_t high, int64_t committed,
                         int64_t for_time);

/* For time-based specs, the record timestamp (ms since the epoch) to ask
 * the broker for: to-datetime's time, or now_ms minus by-duration's
 * duration; never before the epoch (Kafka reads negative times as
 * "latest" and "earliest"). -1 for the other specs. */
int64_t kjb_reset_time_ms(const kjb_reset_spec *spec, int64_t now_ms);

/* Whether topic may be replayed: only the dead-letter topic of a mapping
 * in cfg (replaying any other topic would turn arbitrary records into
 * jobs). Returns 0, or -KJB_EUSAGE with a message naming the topic. The
 * API and kjb_replay_run both ask here. */
int kjb_replay_check_topic(const kjb_config *cfg, const char *topic, kjb_err *err);

typedef struct {
  const char *topic;           /* the DLQ topic */
  const char *group;           /* NULL: "<kafka.group>.replay" */
  const kjb_reset_spec *reset; /* NULL: start from the committed offsets */
  int dry_run;                 /* count, write nothing, commit nothing */
  long limit;                  /* stop after this many records; 0 for no limit */
  int follow;                  /* keep consuming past the end offsets */
  FILE *log;                   /* one line per record that still fails; may be NULL */
  /* Who asks: the replay gets an audit row in kjb.audit (not a dry run),
   * written when it starts and given its counts when it ends. NULL: none. */
  const char *actor;
  const char *reset_text; /* the reset spec as given, for the audit row; may be NULL */
  /* Targeted replay: a filter that is not empty selects rows of
   * kjb.dead_letters, and exactly their records are fetched from their
   * DLQ coordinates (topic, group and reset are then unused; a filter
   * without --status or --id leaves ignored rows out). NULL or empty: the
   * offset-reset mode over topic. */
  const kjb_dlq_filter *filter;
  double rate;    /* records per second at most; 0 for no limit */
  FILE *progress; /* done/total, rate and ETA (kjb_progress); may be NULL */
} kjb_replay_opts;

/* What became of the records of one reason (the x-kjb-error-class
 * without "kjb.", as kjb.dead_letters.reason holds it). */
typedef struct {
  char *reason;
  uint64_t records;         /* seen */
  uint64_t replayed;        /* became (dry run: would become) new jobs */
  uint64_t already_present; /* their jobs existed already */
  uint64_t still_failing;   /* still cannot be decoded or mapped, or gone from the DLQ */
  /* The new jobs by kind, in order of first appearance. */
  struct {
    char *kind;
    uint64_t jobs;
  } *kinds;
  size_t nkinds, capkinds;
} kjb_replay_reason;

typedef struct {
  uint64_t selected;        /* targeted: rows the filter selected; else 0 */
  uint64_t replayed;        /* became new jobs */
  uint64_t still_failing;   /* still cannot be decoded or mapped */
  uint64_t already_present; /* their jobs existed already */
  /* Per reason, in order of first appearance. Written by the replay as it
   * runs: another thread may read only the counts above until it ends. */
  kjb_replay_reason *reasons;
  size_t nreasons, capreasons;
} kjb_replay_stats;

/* Frees the per-reason tallies of st (the counts stay). */
void kjb_replay_stats_close(kjb_replay_stats *st);

/* st as JSON: {"selected", "replayed", "still_failing", "already_present",
 * "dry_run", "by_reason": [{"reason", "records", "replayed",
 * "already_present", "still_failing", "jobs": {"<kind>": n, ...}}]}. */
json_t *kjb_replay_stats_json(const kjb_replay_stats *st, int dry_run);

/* Replays opts->topic until its end offsets as of the start (or, with
 * follow, until *stop). Counts go to stats as they happen, so another
 * thread may read them. Returns 0, or a negative code: KJB_EUSAGE when
 * the topic is not a dead-letter topic (kjb_replay_check_topic), else
 * Kafka or the database unavailable, or the topic does not exist. A
 * login the broker refuses or a failed TLS handshake is KJB_EKAFKA as
 * soon as librdkafka reports it (kjb_kafka_note_error). */
int kjb_replay_run(const kjb_config *cfg, const kjb_replay_opts *opts, kjb_replay_stats *stats,
                   volatile sig_atomic_t *stop, kjb_err *err);

#endif
