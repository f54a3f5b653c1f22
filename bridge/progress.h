/* Progress of a long command (replay, dlq reindex, produce): records done
 * of the total, the rate and the time left. On a terminal one line is
 * rewritten in place at most five times a second; otherwise a plain line
 * is written every 5 s, so that logs stay readable. Every function takes
 * NULL and then does nothing, so callers need not check.
 *
 * The line reads "replay: 4,210/10,000 records (42%), 1,830/s, ETA 3s"
 * (without a known total: no percentage and no ETA). The rate is that of
 * the last few seconds, so that the ETA follows a change of pace; the
 * final line gives the average rate and the time taken instead.
 *
 * For the tests only, the environment variable KJB_PROGRESS_INTERVAL_MS
 * (a whole number of milliseconds, 1 to 3600000) replaces the 5 s between
 * plain lines. */
#ifndef KJB_PROGRESS_H
#define KJB_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct kjb_progress kjb_progress;

/* Starts counting for what ("replay", "reindex", "produce"), written to
 * out; total 0 when not known (then no ETA). NULL out gives NULL. */
kjb_progress *kjb_progress_start(FILE *out, const char *what, uint64_t total);

/* Sets the total once it is known. */
void kjb_progress_total(kjb_progress *p, uint64_t total);

/* Records done so far; writes a line when one is due. */
void kjb_progress_update(kjb_progress *p, uint64_t done);

/* Writes the final line (on a terminal, or when a plain line was written
 * before) and frees p. */
void kjb_progress_end(kjb_progress *p, uint64_t done);

/* On a terminal, erases the line being rewritten, so that the caller can
 * write whole lines of its own (an error about one record) to the same
 * terminal; the next update that is due draws it again. Otherwise does
 * nothing. */
void kjb_progress_clear(kjb_progress *p);

/* For the unit tests: p reads the time (monotonic, in µs) from now(ctx)
 * instead of the system's clock, and counts from that clock's present. */
void kjb_progress_set_clock(kjb_progress *p, int64_t (*now)(void *ctx), void *ctx);

/* The pieces of the line, pure so that they can be tested. Each writes a
 * NUL-terminated text into buf (cap bytes, truncated if need be) and
 * returns its length as snprintf does. */

/* n with thousands separators: 0, 999, 1,000, 18,446,744,073,709,551,615. */
size_t kjb_progress_fmt_count(char *buf, size_t cap, uint64_t n);

/* A duration in whole seconds (negative ones as 0): 3s, 59s, 2m05s,
 * 1h02m (seconds dropped from an hour on), 100h00m. */
size_t kjb_progress_fmt_duration(char *buf, size_t cap, int64_t secs);

#endif
