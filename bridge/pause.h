/* Paused kinds and queues, kjb.pauses: `kjb jobs pause|resume` and the
 * admin API write them, executors claim no job of a paused kind or queue
 * (queue.c), and /api/stats, `kjb jobs ls` and the kjb_paused gauge show
 * them. Cluster-wide: every executor reads the same table. */
#ifndef KJB_PAUSE_H
#define KJB_PAUSE_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "audit.h"
#include "config.h"
#include "err.h"
#include "store.h"

/* What a pause applies to. */
typedef enum { KJB_PAUSE_KIND, KJB_PAUSE_QUEUE } kjb_pause_scope;

/* "kind" or "queue". */
const char *kjb_pause_scope_name(kjb_pause_scope scope);

/* How a pause or a resume went. */
typedef struct {
  bool changed;   /* paused (resumed) by this call; false: it was paused (not paused) already */
  char since[40]; /* when it was paused (RFC 3339 UTC); "" when it was not */
  char by[KJB_AUDIT_ACTOR_MAX + 1]; /* who paused it; "" when it was not */
} kjb_pause_result;

/* Pauses (pause true) or resumes the kind or queue name, and records an
 * audit row "jobs.pause" / "jobs.resume" for actor in the same
 * transaction. Pausing what is paused, or resuming what is not, changes
 * nothing and says so in res. Returns 0, or -KJB_EPG with err. */
int kjb_pause_set(kjb_store *s, kjb_pause_scope scope, const char *name, bool pause,
                  const char *actor, kjb_pause_result *res, kjb_err *err);

/* The pauses, oldest first, as a JSON array of {"kind": K} or
 * {"queue": Q} objects with "since" and "by". NULL with err. */
json_t *kjb_pause_list(kjb_store *s, kjb_err *err);

/* Writes one line per pause ("paused: kind K since T by A") to out. */
void kjb_pause_print(const json_t *list, FILE *out);

/* Sets kjb_paused{kind} from list for every kind cfg has a handler for:
 * 1 when the kind is paused, else 0. */
void kjb_pause_gauges(const kjb_config *cfg, const json_t *list);

#endif
