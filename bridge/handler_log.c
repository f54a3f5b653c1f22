/* The log handler: writes each job to the log and succeeds; for trying a
 * pipeline out before its real handler exists. */
#include <inttypes.h>

#include "handler.h"
#include "log.h"

/* Longer args are cut in the log line. */
#define ARGS_SHOWN 1000

static int log_init(const kjb_handler_cfg *cfg, void **state, kjb_err *err) {
  *state = NULL;
  return 0;
}

static void log_perform(void *state, const kjb_handler_job *job, kjb_handler_result *res) {
  size_t n = job->args_len;
  if (n > ARGS_SHOWN) {
    n = ARGS_SHOWN;
    while (n > 0 && ((unsigned char)job->args_json[n] & 0xC0) == 0x80)
      n--; /* do not cut a character in two */
  }
  kjb_info("job %" PRId64 " %s attempt %d: %.*s%s", job->id, job->kind, job->attempt, (int)n,
           job->args_json, n < job->args_len ? "..." : "");
}

static void log_free(void *state) {}

const kjb_builtin_handler kjb_handler_log = {
    .type = "log", .init = log_init, .perform = log_perform, .free = log_free};
