/* The audit trail, kjb.audit: who replayed, ignored, retried or cancelled
 * what, from the command line or the admin API, and `kjb audit ls`. */
#ifndef KJB_AUDIT_H
#define KJB_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "store.h"

/* Actions, as the audit rows name them. */
#define KJB_AUDIT_REPLAY "replay"
#define KJB_AUDIT_DLQ_IGNORE "dlq.ignore"
#define KJB_AUDIT_DLQ_REINDEX "dlq.reindex"
#define KJB_AUDIT_DLQ_EDIT "dlq.edit"
#define KJB_AUDIT_JOBS_RETRY "jobs.retry"
#define KJB_AUDIT_JOBS_CANCEL "jobs.cancel"
#define KJB_AUDIT_JOBS_PAUSE "jobs.pause"
#define KJB_AUDIT_JOBS_RESUME "jobs.resume"

/* The API's actor for the single admin token (http.admin_token_env). */
#define KJB_AUDIT_API_ADMIN "admin"

/* The longest actor name, in bytes. */
#define KJB_AUDIT_ACTOR_MAX 128

/* What keeps s from being an actor's name: NULL when it is one (1 to
 * KJB_AUDIT_ACTOR_MAX bytes of UTF-8 without control characters), else
 * why not ("must not be empty"). The names of API tokens follow the same
 * rule. */
const char *kjb_audit_actor_problem(const char *s);

/* The actor of a command: given (from --actor) when not NULL, else
 * "cli:<user>" with the user the process runs as (its login name, else
 * $USER, else "uid<N>"). Into out (at least KJB_AUDIT_ACTOR_MAX + 1
 * bytes). Returns 0, or -KJB_EUSAGE when given is empty, longer than
 * KJB_AUDIT_ACTOR_MAX bytes, not UTF-8 or holds a control character. */
int kjb_audit_actor(const char *given, char *out, size_t cap, kjb_err *err);

/* Inserts one audit row: params and result are JSON texts (result NULL
 * while the action runs: kjb_audit_finish sets it). *id (if not NULL)
 * receives the row's id. Runs in the caller's transaction if one is open
 * on s. Returns 0, or -KJB_EPG with err. */
int kjb_audit_record(kjb_store *s, const char *actor, const char *action, const char *params,
                     const char *result, int64_t *id, kjb_err *err);

/* Sets the result of audit row id. Returns 0, or -KJB_EPG with err. */
int kjb_audit_finish(kjb_store *s, int64_t id, const char *result, kjb_err *err);

/* The newest limit (0: 50) audit rows, newest first, as a JSON array of
 * objects with every column ({"id", "at", "actor", "action", "params",
 * "result"}): what `kjb audit ls --json` prints and GET /api/audit
 * answers. Returns 0 with *out (a new reference), or -KJB_EPG with err
 * and *out NULL. */
struct json_t;
int kjb_audit_list_json(kjb_store *s, long limit, struct json_t **out, kjb_err *err);

/* Writes the newest limit (0: 50) audit rows to out, newest first: a
 * table (id, at, actor, action, params, result) or, with json, one JSON
 * array of objects with every column. Returns 0, or -KJB_EPG with err
 * (nothing written). */
int kjb_audit_ls(kjb_store *s, long limit, int json, FILE *out, kjb_err *err);

#endif
