/* The executor: claims jobs of every kind that has a handler, runs them on
 * worker threads (the handler's `concurrency` per kind), and records each
 * outcome, with retry backoff, rate limits, circuit breakers, node
 * heartbeats, rescue of dead nodes' jobs and retention. */
#ifndef KJB_EXECUTOR_H
#define KJB_EXECUTOR_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

typedef struct kjb_executor kjb_executor;

/* Opens every configured handler; touches no database. roles names what
 * this process runs ("executor", "consumer,executor") in kjb.nodes.
 * Returns NULL with err: KJB_ECONFIG when there is no handler or one
 * cannot be opened. */
kjb_executor *kjb_executor_new(const kjb_config *cfg, const char *roles, kjb_err *err);

/* Connects to PostgreSQL (the schema must be current), registers the node
 * and starts the worker threads. Returns 0, or a negative value with err
 * (KJB_EPG when the database is unreachable); then only kjb_executor_free
 * remains. */
int kjb_executor_start(kjb_executor *ex, kjb_err *err);

/* Works until *stop becomes non-zero, then shuts down gracefully: stops
 * claiming, waits up to executor.shutdown_timeout for running jobs, asks
 * the rest to cancel, returns what did not finish to available and leaves
 * kjb.nodes. A database outage is waited out, never fatal; returns 0, or
 * -1 with err on a fatal error. */
int kjb_executor_run(kjb_executor *ex, volatile sig_atomic_t *stop, kjb_err *err);

/* This node's name in kjb.nodes and attempted_by: "<host>-<pid>-<hex>". */
const char *kjb_executor_node(const kjb_executor *ex);

void kjb_executor_free(kjb_executor *ex);

/* The state of kind's breaker ("closed", "open", "half-open"; NULL when it
 * has none) and the tokens of its rate-limit bucket (0 without a limit),
 * as of the dispatcher's last round. Safe from any thread while ex is
 * alive. Returns -1 when ex runs no such kind. */
int kjb_executor_kind_status(kjb_executor *ex, const char *kind, const char **breaker,
                             double *tokens);

/* When the dispatcher loop last went round (kjb_now_mono_us()), 0 before
 * kjb_executor_run; safe from any thread while ex is alive. */
int64_t kjb_executor_heartbeat(const kjb_executor *ex);

#endif
