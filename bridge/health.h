/* The health of `kjb run` for the http server's probes: a thread that
 * keeps the snapshot current while the service runs, and the start-up
 * wait for PostgreSQL and migrations that reports while it waits. */
#ifndef KJB_HEALTH_H
#define KJB_HEALTH_H

#include <signal.h>

#include "config.h"
#include "executor.h"
#include "http.h"
#include "ingest.h"

typedef struct kjb_health_poller kjb_health_poller;

/* Waits until PostgreSQL answers and no migration is pending, so that kjb
 * may start before the database is up or the deployment's `kjb migrate`
 * has run, instead of crash-looping: meanwhile the process is live, and
 * /startupz and /readyz answer 503 with the reason ("waiting for
 * postgresql: ...", "migrations pending"). consume and execute are the
 * roles the snapshot reports. Returns 0 when the schema is current, 1
 * when *stop became non-zero first. http may be NULL. */
int kjb_health_wait_for_database(const kjb_config *cfg, kjb_http *http, int consume, int execute,
                                 volatile sig_atomic_t *stop);

/* Starts the thread that keeps http's health snapshot current: every
 * second it reads the loops' heartbeats and the consumer's Kafka state,
 * and every few seconds it queries PostgreSQL on a connection of its
 * own, so that an idle process notices an outage too. Call it once
 * kjb_health_wait_for_database found the schema current. ex is NULL
 * without the executor role; http, cfg and ex must outlive the poller.
 * Returns NULL when the thread could not be started. */
kjb_health_poller *kjb_health_start(kjb_http *http, const kjb_config *cfg, kjb_executor *ex,
                                    int consume);

/* Lets the poller see the consumer (ing), or forget it (NULL) before it
 * is freed. hp may be NULL. */
void kjb_health_attach(kjb_health_poller *hp, kjb_ingest *ing);

/* Stops the thread and frees the poller; NULL does nothing. */
void kjb_health_stop(kjb_health_poller *hp);

#endif
