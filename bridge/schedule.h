/* The scheduler: inserts the job of each tick of the configured schedules
 * (config `schedules`), exactly one per tick across every instance of a
 * cluster. Every `kjb run`, whatever its role, runs one on a thread and a
 * connection of its own.
 *
 * Time zones are PostgreSQL's: the server's now() read in the schedule's
 * zone gives the local wall-clock time the cron fields match, and the
 * tick's wall-clock time read back in that zone gives its instant. A tick
 * in a daylight-saving gap (02:30 on a night that skips from 02:00 to
 * 03:00) therefore falls where PostgreSQL puts it, at 03:30; one in a
 * repeated hour falls once, at its second occurrence (standard time).
 * Ticks that fall on the same instant insert one job.
 *
 * Exactly once: kjb.schedules holds each schedule's latest inserted tick,
 * and one statement moves it forward and inserts the job, so that of
 * instances racing for a tick one inserts it and the others find it done;
 * a tick is never inserted twice, not even after its job was pruned.
 *
 * Misfires: each check inserts the latest tick at or before now, if it is
 * not done yet. After an outage (or a restart within a tick) that is one
 * job for the latest missed tick, never one per missed tick, with
 * "catch_up": true in its meta; with misfire_grace set, a tick found later
 * than that after its time is skipped. A new schedule (no row in
 * kjb.schedules yet) does not catch up: its first job is that of the
 * first tick that comes while an instance runs.
 *
 * For tests only: KJB_SCHEDULE_SECONDS=1 in the environment makes the
 * cron's first field count seconds instead of minutes (kjb_cron_parse's
 * KJB_CRON_SECONDS), so that "0-59/2 * * * *" ticks every two seconds. */
#ifndef KJB_SCHEDULE_H
#define KJB_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "err.h"

typedef struct kjb_scheduler kjb_scheduler;

/* Parses every schedule of cfg (which must outlive the scheduler); node
 * names this process in kjb.schedules and the jobs' meta. Touches no
 * database. Returns NULL when cfg has no schedules. */
kjb_scheduler *kjb_scheduler_new(const kjb_config *cfg, const char *node);

/* Connects, checks every schedule's time zone against pg_timezone_names
 * and starts the thread. Returns 0, or a negative code with err:
 * KJB_ECONFIG as "<file>:<line>: schedules[i].timezone: ..." for a zone
 * PostgreSQL does not know, KJB_EPG when the database cannot be reached.
 * After a failure only kjb_scheduler_free remains. */
int kjb_scheduler_start(kjb_scheduler *s, kjb_err *err);

/* Stops the thread (a check under way finishes first) and frees s. NULL
 * does nothing. */
void kjb_scheduler_free(kjb_scheduler *s);

/* What a check does with the latest tick due (tick_us <= now_us, Unix
 * us), the decision alone, carried out by the scheduler: */
typedef enum {
  KJB_TICK_DONE,     /* settled already (settled_us: the latest tick this
                      * scheduler saw done, inserted by whichever instance) */
  KJB_TICK_INSERT,   /* it came after the previous check (watched_us; -1
                      * after a start or a database error): on time */
  KJB_TICK_CATCH_UP, /* it came while this scheduler was not watching */
  KJB_TICK_SKIP      /* that, and more than grace_us ago (0: no grace) */
} kjb_tick_action;

kjb_tick_action kjb_schedule_decide(int64_t tick_us, bool settled, int64_t settled_us,
                                    int64_t watched_us, int64_t now_us, int64_t grace_us);

/* One line per schedule for `kjb check-config`: its kind, cron, time zone
 * and next tick after now (wall clock in its zone, by the C library's
 * time zone database, which PostgreSQL's usually is too), to out. */
void kjb_schedule_describe(const kjb_config *cfg, FILE *out);

#endif
