/* Progress of a long command (replay, dlq reindex, produce): records done
 * of the total, the rate and the time left. On a terminal one line is
 * rewritten in place at most five times a second; otherwise a plain line
 * is written every 5 s, so that logs stay readable. Every function takes
 * NULL and then does nothing, so callers need not check. */
#ifndef KJB_PROGRESS_H
#define KJB_PROGRESS_H

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

#endif
