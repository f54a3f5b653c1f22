/* The kjb handler plugin ABI: a shared object that runs jobs of one kind.
 *
 * A plugin exports one function, kjb_handler_entry(), returning a static
 * kjb_handler_plugin whose abi_version is KJB_HANDLER_ABI_VERSION. kjb
 * loads it with dlopen() for every handler with `type = "plugin"`, calls
 * init once per handler, perform for each job (from several threads at
 * once, up to the handler's `concurrency`), and free at shutdown.
 *
 * The ABI only grows at the end of its structs; a change that breaks old
 * plugins bumps KJB_HANDLER_ABI_VERSION, and kjb refuses a plugin built
 * for another version. */
#ifndef KJB_HANDLER_H
#define KJB_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KJB_HANDLER_ABI_VERSION 1
/* Additions that old plugins do not see and need not know: 1 added the
 * trace context to kjb_handler_job. A plugin reads a field added in minor
 * version m only when job->abi_minor >= m. */
#define KJB_HANDLER_ABI_MINOR 1

/* What became of one attempt. */
typedef enum {
  KJB_HANDLER_OK = 0,        /* done: the job is completed */
  KJB_HANDLER_TRANSIENT = 1, /* try again later, with backoff */
  KJB_HANDLER_PERMANENT = 2  /* never retry: the job is discarded */
} kjb_handler_status;

/* One attempt of one job. Everything is borrowed for the duration of
 * perform only. */
typedef struct {
  int64_t id; /* kjb.jobs.id */
  const char *kind;
  int attempt; /* 1 for the first attempt */
  int max_attempts;
  const char *args_json; /* the job's args, a JSON value, NUL-terminated */
  size_t args_len;
  int64_t deadline_us; /* CLOCK_MONOTONIC microseconds: give up by then */
  /* Becomes non-zero when kjb wants the attempt to end early (shutdown);
   * long-running handlers should poll it, with kjb_handler_cancelled(). */
  const volatile int *cancelled;
  /* From here on, minor version 1 (abi_minor >= 1). */
  uint32_t abi_minor; /* KJB_HANDLER_ABI_MINOR of the kjb that runs the plugin */
  /* This attempt's W3C traceparent: a child of the source record's, with
   * a span id of its own; NULL when the record carried none. tracestate
   * is the record's, NULL for none. */
  const char *traceparent;
  const char *tracestate;
} kjb_handler_job;

/* Whether kjb asked this attempt to end early. kjb sets the flag from
 * another thread with an atomic store; read it atomically too. */
static inline int kjb_handler_cancelled(const kjb_handler_job *job) {
  return job->cancelled && __atomic_load_n(job->cancelled, __ATOMIC_ACQUIRE);
}

/* The outcome perform fills in. kjb zeroes it and sets retry_after_us to
 * -1 before the call. */
typedef struct {
  kjb_handler_status status;
  /* Why, for the job's errors (ignored when OK); NUL-terminated. */
  char message[512];
  /* A transient failure's hint: retry no sooner than this many
   * microseconds from now (HTTP Retry-After). -1: no hint. */
  int64_t retry_after_us;
} kjb_handler_result;

typedef struct {
  uint32_t abi_version; /* KJB_HANDLER_ABI_VERSION */
  const char *name;     /* for logs */
  /* Prepares a handler for `kind`. Returns 0 and sets *state (may be
   * NULL), or non-zero with a reason in errbuf (kjb then refuses to
   * start). */
  int (*init)(const char *kind, void **state, char *errbuf, size_t errlen);
  /* Runs one attempt. Called concurrently; must be thread-safe. */
  void (*perform)(void *state, const kjb_handler_job *job, kjb_handler_result *res);
  /* Releases what init made. May be NULL. */
  void (*free)(void *state);
} kjb_handler_plugin;

/* The one symbol a plugin exports. */
const kjb_handler_plugin *kjb_handler_entry(void);

#ifdef __cplusplus
}
#endif

#endif
