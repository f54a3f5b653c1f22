/* The JSON API under /api/ (docs/http-api.md): the snapshot the dashboard
 * reads, jobs and recent dead letters, and the admin actions. The HTTP
 * server routes requests here; this module knows nothing of HTTP beyond
 * status codes. */
#ifndef KJB_API_H
#define KJB_API_H

#include <stdbool.h>

#include "config.h"
#include "err.h"
#include "executor.h"
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
kjb_api *kjb_api_new(const kjb_config *cfg, const char *node, const char *roles,
                     kjb_executor *ex, kjb_err *err);

/* Stops a replay in progress and the stats thread, and frees api. */
void kjb_api_free(kjb_api *api);

/* Whether the admin actions are enabled (a token is set). */
bool kjb_api_admin_enabled(const kjb_api *api);

/* Judges an Authorization header value of len bytes (NULL when absent)
 * for an admin action: 0 when allowed, else 401 or 403 with the reason in
 * *why. The token is compared over the whole value, in constant time. */
unsigned kjb_api_authorize(const kjb_api *api, const char *authorization, size_t len,
                           const char **why);

/* Answers GET path (starting with "/api/"): returns the status and appends
 * the JSON body to out. */
unsigned kjb_api_get(kjb_api *api, const char *path, kjb_api_param_fn param, void *cls,
                     const kjb_api_health *health, kjb_buf *out);

/* Answers an authorized POST path with the request body (may be empty). */
unsigned kjb_api_post(kjb_api *api, const char *path, const char *body, size_t len,
                      kjb_buf *out);

/* Whether path is an admin action (POST only) or a known GET path. */
bool kjb_api_is_post_path(const char *path);
bool kjb_api_is_get_path(const char *path);

#endif
