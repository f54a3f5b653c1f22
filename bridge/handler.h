/* Handlers: what runs a job of a kind. The built-ins (http, exec, log) and
 * plugins (include/kjb/handler.h, loaded with dlopen) share one interface,
 * the plugin ABI's. */
#ifndef KJB_HANDLER_INTERNAL_H
#define KJB_HANDLER_INTERNAL_H

#include <stddef.h>

#include "config.h"
#include "err.h"
#include "kjb/handler.h"

typedef struct kjb_handler kjb_handler;

/* Opens the handler that cfg describes: for "plugin", loads the shared
 * object (dlopen, RTLD_NOW | RTLD_LOCAL) and checks its ABI version; then
 * calls init. Returns NULL with err (KJB_ECONFIG: an unknown type, a
 * configuration the built-in cannot use, or a plugin that cannot be
 * loaded, has the wrong ABI or whose init failed, as
 * `plugin "<path>": <why>`). cfg is only read during the call. */
kjb_handler *kjb_handler_open(const kjb_handler_cfg *cfg, kjb_err *err);

/* Runs one attempt; thread-safe. res is reset first (status OK, empty
 * message, retry_after_us -1); the message it returns is valid UTF-8.
 * The built-ins give up at job->deadline_us or when *job->cancelled is
 * set and report TRANSIENT saying so; plugins are asked to do the same
 * (kjb cannot interrupt code running in its own process). */
void kjb_handler_perform(kjb_handler *h, const kjb_handler_job *job, kjb_handler_result *res);

/* Calls the handler's free and unloads a plugin. NULL does nothing. */
void kjb_handler_free(kjb_handler *h);

/* A built-in handler (handler_http.c, handler_exec.c, handler_log.c):
 * the plugin ABI's three calls, with init reading the handler's own
 * configuration. init returns 0, or a negative code with err (KJB_ECONFIG
 * for a configuration it cannot use). */
typedef struct {
  const char *type; /* the config's `type` */
  int (*init)(const kjb_handler_cfg *cfg, void **state, kjb_err *err);
  void (*perform)(void *state, const kjb_handler_job *job, kjb_handler_result *res);
  void (*free)(void *state);
} kjb_builtin_handler;

extern const kjb_builtin_handler kjb_handler_http;
extern const kjb_builtin_handler kjb_handler_exec;
extern const kjb_builtin_handler kjb_handler_log;

/* Copies n bytes of foreign text (a response body, a program's stderr)
 * into dst for a message: printable UTF-8 only, each invalid byte as '?',
 * runs of whitespace and control characters as one space, cut to fit cap
 * bytes with the NUL (cap > 0). */
void kjb_handler_sanitize(char *dst, size_t cap, const char *src, size_t n);

/* Sets res->status to status and res->message to the printf-style text,
 * cut to fit the message buffer. For the built-ins; the text is expected
 * to be valid UTF-8 already (foreign text goes through
 * kjb_handler_sanitize first). */
void kjb_handler_set_result(kjb_handler_result *res, kjb_handler_status status, const char *fmt,
                            ...) __attribute__((format(printf, 3, 4)));

#endif
