/* The JSON API under /api/ (docs/http-api.md): the snapshot the dashboard
 * reads, jobs and recent dead letters, and the admin actions. The HTTP
 * server routes requests here; this module knows nothing of HTTP beyond
 * status codes. */
#ifndef KJB_API_H
#define KJB_API_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "dlqfilter.h"
#include "err.h"
#include "executor.h"
#include "replay.h"
#include "util.h"

typedef struct kjb_api kjb_api;

/* The probes' verdicts, for /api/stats. */
typedef struct {
  bool live, ready, started;
  const char *reason; /* the first failing probe's reason, or NULL */
} kjb_api_health;

/* A request's query parameter, or NULL when absent. The HTTP server
 * refuses requests whose parameters are not valid UTF-8 or hold a NUL
 * byte: values are text. */
typedef const char *(*kjb_api_param_fn)(void *cls, const char *name);

/* The i-th query parameter (from 0, in the request's order, repeated
 * names each time): its value, with its name in *name; NULL past the
 * last. For the parameters that may repeat (a dead letter's id). */
typedef const char *(*kjb_api_param_at_fn)(void *cls, size_t i, const char **name);

/* node and roles name this process; ex (may be NULL) is asked for breaker
 * and rate-limit state. The admin tokens are read from the environment
 * now: the one named "admin" (KJB_AUDIT_API_ADMIN) from the variable
 * cfg->http.admin_token_env names, the others from cfg->http.admin_tokens;
 * a variable unset or empty disables its token (with a warning for a
 * named one), and without any token the admin actions are disabled.
 * Starts the stats thread. */
kjb_api *kjb_api_new(const kjb_config *cfg, const char *node, const char *roles, kjb_executor *ex,
                     kjb_err *err);

/* Stops a replay in progress and the stats thread, and frees api. */
void kjb_api_free(kjb_api *api);

/* Whether the admin actions are enabled (a token is set). */
bool kjb_api_admin_enabled(const kjb_api *api);

/* Judges an Authorization header value of len bytes (NULL when absent)
 * for an admin action: 0 when allowed, with the name of the token it
 * carries in *actor (valid while api lives), else 401 or 403 with the
 * reason in *why. See kjb_api_match_bearer. */
unsigned kjb_api_authorize(const kjb_api *api, const char *authorization, size_t len,
                           const char **actor, const char **why);

/* Matches an Authorization value against the n tokens (none: the admin
 * actions are disabled, 403): it must be "Bearer " (any case) and then
 * exactly one of them, every byte. Every token is compared, in constant
 * time, whatever matched, so that the time taken tells neither whether
 * nor which one did. Returns 0 with the first matching token's index in
 * *which, else 401 (no bearer token) or 403 (a wrong one) with *why. */
unsigned kjb_api_match_bearer(const char *const *tokens, size_t n, const char *authorization,
                              size_t len, size_t *which, const char **why);

/* kjb_api_match_bearer against one token, or none when token is NULL. */
unsigned kjb_api_check_bearer(const char *token, const char *authorization, size_t len,
                              const char **why);

/* Answers GET path (starting with "/api/"): returns the status and appends
 * the JSON body to out. */
unsigned kjb_api_get(kjb_api *api, const char *path, kjb_api_param_fn param,
                     kjb_api_param_at_fn param_at, void *cls, const kjb_api_health *health,
                     kjb_buf *out);

/* Answers a POST path that actor (kjb_api_authorize's) is allowed, with
 * the request body (may be empty). */
unsigned kjb_api_post(kjb_api *api, const char *path, const char *actor, const char *body,
                      size_t len, kjb_buf *out);

/* Whether path is an admin action (POST only) or a known GET path. */
bool kjb_api_is_post_path(const char *path);
bool kjb_api_is_get_path(const char *path);

/* The request parsing below runs before any database work; each parser
 * returns 0, or an error status (400) with its {"error": ...} answer
 * appended to out and its result unspecified. */

/* Whether path is "/api/jobs/<id>" followed by suffix ("/retry",
 * "/cancel"; NULL for nothing): 1 with *id set when the segment is an
 * integer from 1 to INT64_MAX, 0 when it is anything else (a 400, "bad job
 * id", rather than an unknown path), -1 when the path has another shape. */
int kjb_api_job_path(const char *path, const char *suffix, int64_t *id);

/* The same for "/api/dead-letters/<id>" (no suffix). */
int kjb_api_dead_letter_path(const char *path, int64_t *id);

#define KJB_API_JOBS_LIMIT_MAX 500

/* GET /api/jobs' query parameters. */
typedef struct {
  const char *state; /* NULL, or a job state */
  const char *kind;  /* NULL for any */
  int64_t limit;     /* 1 to KJB_API_JOBS_LIMIT_MAX; 50 when not given */
  int64_t before;    /* only ids below this one; 0 when not given */
} kjb_api_jobs_query;

/* Reads GET /api/jobs' parameters into *q; its strings are param's. */
unsigned kjb_api_parse_jobs_query(kjb_api_param_fn param, void *cls, kjb_api_jobs_query *q,
                                  kjb_buf *out);

/* Reads GET /api/dlq's limit (1 to KJB_STATS_DEAD_LETTERS, 50 when not
 * given) into *limit. */
unsigned kjb_api_parse_dlq_query(kjb_api_param_fn param, void *cls, int *limit, kjb_buf *out);

#define KJB_API_DEAD_LETTERS_LIMIT_MAX 1000

/* GET /api/dead-letters' query parameters. */
typedef struct {
  kjb_dlq_filter filter; /* caller-owned: kjb_dlq_filter_close, also after a 400 */
  int64_t limit;         /* 1 to KJB_API_DEAD_LETTERS_LIMIT_MAX; 50 when not given */
  int64_t after_id;      /* only ids above this one; 0 when not given */
} kjb_api_dead_letters_query;

/* Reads GET /api/dead-letters' parameters into *q: the filters of
 * dlqfilter.h by their names (id repeatable; "dlq_topic" or "dlq-topic"),
 * durations back from now_us, limit and after_id once each; any other
 * name is a 400, so that a misspelt filter never selects everything. */
unsigned kjb_api_parse_dead_letters_query(kjb_api_param_at_fn param_at, void *cls, int64_t now_us,
                                          kjb_api_dead_letters_query *q, kjb_buf *out);

/* Reads the body of POST /api/dead-letters/ignore and /replay, a JSON
 * object {"filter": {<name>: <value>, ...}, "ids": [n, ...], "dry_run":
 * bool} (every member optional, no others), into f (initialized, the
 * caller closes it) and *dry_run. Filter values are strings, or for id an
 * integer or an array of them; ids join the id filter. The selection must
 * not be empty: selecting every dead letter takes a filter that says so
 * (a status, say). */
unsigned kjb_api_parse_selection(const char *body, size_t len, int64_t now_us, kjb_dlq_filter *f,
                                 bool *dry_run, kjb_buf *out);

/* POST /api/replay's request. */
typedef struct {
  char topic[256]; /* a dead-letter topic of the configuration */
  bool dry_run;
  bool has_reset;
  kjb_reset_spec reset;
  char reset_text[72]; /* the spec as given, for the log: 64 bytes at most and "..." */
} kjb_api_replay_req;

/* Reads POST /api/replay's body of len bytes (none: {}) against cfg into
 * *req: the topic must be a dead-letter topic of cfg (the first mapping's
 * when not given), reset_offsets a spec kjb_reset_parse takes. */
unsigned kjb_api_parse_replay(const kjb_config *cfg, const char *body, size_t len,
                              kjb_api_replay_req *req, kjb_buf *out);

#endif
