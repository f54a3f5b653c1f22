/* An example kjb handler plugin: copy this file to write your own.
 *
 * It checks an order job's args: a JSON object with an "order_id" member
 * completes; anything else is discarded at once (PERMANENT), since no
 * retry can fix bad input. To show a retry, args with a member
 * "fail": "transient" fail TRANSIENT.
 *
 * Build it against include/kjb/handler.h only, as a shared object:
 *
 *   cc -std=c11 -O2 -fPIC -shared -I/path/to/kjb/include -o example.so example.c
 *
 * and point a handler at it in kjb.cfg:
 *
 *   handlers = ( { kind = "orders"; type = "plugin"; plugin = "/opt/kjb/example.so"; } );
 *
 * The rules a plugin lives by (include/kjb/handler.h has them in full):
 * - export kjb_handler_entry() returning a static kjb_handler_plugin with
 *   abi_version = KJB_HANDLER_ABI_VERSION;
 * - perform runs on several threads at once: state shared between calls
 *   must be read-only or synchronized;
 * - everything in the job is borrowed for the call only;
 * - honour job->deadline_us and kjb_handler_cancelled(job) in anything
 *   that can take long, and report TRANSIENT when giving up;
 * - write a short reason into res->message for every failure;
 * - fields added by a later minor version of the ABI (the trace context)
 *   are there only when job->abi_minor says so. This one names the trace
 *   in its messages, so that a failure can be found in the tracing
 *   system. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kjb/handler.h"

/* Per-handler state: made by init, freed by free, read-only in between
 * so that concurrent performs need no lock. */
typedef struct {
  char kind[64];
} example_state;

static int example_init(const char *kind, void **state, char *errbuf, size_t errlen) {
  if (strlen(kind) >= sizeof((example_state *)0)->kind) {
    snprintf(errbuf, errlen, "kind \"%.20s...\" is longer than %zu bytes", kind,
             sizeof((example_state *)0)->kind - 1);
    return -1;
  }
  example_state *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(errbuf, errlen, "out of memory");
    return -1;
  }
  snprintf(s->kind, sizeof s->kind, "%s", kind);
  *state = s;
  return 0;
}

/* Whether the JSON object at p (after its '{') has a member named key at
 * its top level. A scanner, not a parser: kjb hands over valid JSON, so it
 * only needs to tell keys from values and nested objects. */
static int has_member(const char *p, const char *end, const char *key) {
  size_t klen = strlen(key);
  int depth = 1;
  int expect_key = 1;
  while (p < end && depth > 0) {
    char c = *p++;
    if (c == '"') {
      const char *start = p;
      while (p < end && *p != '"')
        p += *p == '\\' && p + 1 < end ? 2 : 1;
      if (p >= end)
        return 0;
      size_t len = (size_t)(p - start);
      p++;
      if (depth == 1 && expect_key && len == klen && memcmp(start, key, klen) == 0)
        return 1;
      expect_key = 0;
    } else if (c == '{' || c == '[') {
      depth++;
    } else if (c == '}' || c == ']') {
      depth--;
    } else if (c == ',' && depth == 1) {
      expect_key = 1;
    }
  }
  return 0;
}

/* " (trace <trace id>)" when the job carries a trace context, else "". */
static void trace_note(const kjb_handler_job *job, char *buf, size_t cap) {
  buf[0] = '\0';
  if (job->abi_minor >= 1 && job->traceparent)
    snprintf(buf, cap, " (trace %.32s)", job->traceparent + 3);
}

static void example_perform(void *state, const kjb_handler_job *job, kjb_handler_result *res) {
  const example_state *s = state;
  const char *p = job->args_json, *end = job->args_json + job->args_len;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  if (p == end || *p != '{') {
    res->status = KJB_HANDLER_PERMANENT;
    snprintf(res->message, sizeof res->message, "args are not a JSON object");
    return;
  }
  /* kjb hands args over as PostgreSQL prints jsonb: ", " and ": ". */
  if (strstr(job->args_json, "\"fail\": \"transient\"")) {
    char trace[48];
    trace_note(job, trace, sizeof trace);
    res->status = KJB_HANDLER_TRANSIENT;
    snprintf(res->message, sizeof res->message, "%s: asked to fail (attempt %d of %d)%s", s->kind,
             job->attempt, job->max_attempts, trace);
    res->retry_after_us = 1000000;
    return;
  }
  if (!has_member(p + 1, end, "order_id")) {
    res->status = KJB_HANDLER_PERMANENT;
    snprintf(res->message, sizeof res->message, "args lack order_id");
    return;
  }
  res->status = KJB_HANDLER_OK;
}

static void example_free(void *state) { free(state); }

static const kjb_handler_plugin plugin = {
    .abi_version = KJB_HANDLER_ABI_VERSION,
    .name = "example",
    .init = example_init,
    .perform = example_perform,
    .free = example_free,
};

const kjb_handler_plugin *kjb_handler_entry(void) { return &plugin; }
