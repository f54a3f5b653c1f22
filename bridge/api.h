/* The JSON API under /api/ (docs/http-api.md): the snapshot the dashboard
 * reads, jobs and recent dead letters, and the admin actions. The HTTP
 * server routes requests here; this module knows nothing of HTTP beyond
 * status codes. */
#ifndef KJB_API_H
#define KJB_API_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
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

/* node and roles name this process; ex (may be NULL) is asked for breaker
 * and rate-limit state. The admin token is read from the environment
 * variable cfg->http.admin_token_env now; unset or empty disables the
 * admin actions. Starts the stats thread. */
kjb_api *kjb_api_new(const kjb_config *cfg, const char *node, const char *roles, kjb_executor *ex,
                     kjb_err *err);

/* Stops a replay in progress and the stats thread, and frees api. */
void kjb_api_free(kjb_api *api);

/* Whether the admin actions are enabled (a token is set). */
bool kjb_api_admin_enabled(const kjb_api *api);

/* Judges an Authorization header value of len bytes (NULL when absent)
 * for an admin action: 0 when allowed, else 401 or 403 with the reason in
 * *why. The token is compared over the whole value, in constant time. */
unsigned kjb_api_authorize(const kjb_api *api, const char *authorization, size_t len,
                           const char **why);

/* kjb_api_authorize against token (NULL: the admin actions are disabled,
 * 403): the value must be "Bearer " (any case) and then exactly token. */
unsigned kjb_api_check_bearer(const char *token, const char *authorization, size_t len,
                              const char **why);

/* Answers GET path (starting with "/api/"): returns the status and appends
 * the JSON body to out. */
unsigned kjb_api_get(kjb_api *api, const char *path, kjb_api_param_fn param, void *cls,
                     const kjb_api_health *health, kjb_buf *out);

/* Answers an authorized POST path with the request body (may be empty). */
unsigned kjb_api_post(kjb_api *api, const char *path, const char *body, size_t len, kjb_buf *out);

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
