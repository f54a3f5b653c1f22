/* What the dashboard and /api/stats show beyond the metric registry: job
 * counts by kind and state, dead letters by topic, reason and status, and
 * the cluster's nodes, refreshed from
 * PostgreSQL by a background thread (never per request), and the dead
 * letters this process produced recently, and held ordering keys. */
#ifndef KJB_STATS_H
#define KJB_STATS_H

#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "err.h"

/* How often the background thread counts jobs and reads kjb.nodes. */
#define KJB_STATS_EVERY_US (5 * 1000000LL)
/* How many recent dead letters are kept. */
#define KJB_STATS_DEAD_LETTERS 200

typedef struct kjb_stats kjb_stats;

/* Starts the background thread; it connects (and reconnects) by itself.
 * Every refresh also sets the kjb_jobs{kind,state} gauges, with a zero for
 * every state of every configured kind, the kjb_paused{kind} gauges, and
 * the kjb_dead_letters{dlq_topic,reason,status} gauges (kjb_dlqindex_gauges;
 * less often when that count takes long: at most 2 % of the time). Returns
 * NULL only when the thread cannot be started. */
kjb_stats *kjb_stats_new(const kjb_config *cfg, kjb_err *err);

/* Stops the thread and frees st. */
void kjb_stats_free(kjb_stats *st);

/* New references: an array of {"kind","state","count"} and the time of
 * that count (a string, or null before the first); an array of nodes as
 * docs/http-api.md shows. */
json_t *kjb_stats_jobs(kjb_stats *st, json_t **counted_at);
json_t *kjb_stats_nodes(kjb_stats *st);
/* The paused kinds and queues as of the last count (kjb_pause_list). */
json_t *kjb_stats_paused(kjb_stats *st);
/* Held ordering keys as of the last count: {"count": n, "oldest":
 * {"kind", "key", "job", "state", "since"} or null} (kjb_jobs_held_keys;
 * every refresh also sets the kjb_held_keys{kind} gauges). */
json_t *kjb_stats_held_keys(kjb_stats *st);

/* Remembers a dead letter the broker acknowledged; thread-safe and
 * process-wide (the consumer calls it without a kjb_stats). */
void kjb_stats_dead_letter(const char *topic, int partition, int64_t offset, const char *dlq_topic,
                           const char *reason, const char *stage, const char *message);

/* Counts n dead letters that are not remembered: the older ones of a
 * batch whose newest KJB_STATS_DEAD_LETTERS are, right after. */
void kjb_stats_dead_letters_skip(uint64_t n);

/* A new reference: {"dead_letters": [newest first, at most limit], "total": n}. */
json_t *kjb_stats_dead_letters(int limit);

/* Forgets the remembered dead letters (tests). */
void kjb_stats_dead_letters_reset(void);

#endif
