/* W3C Trace Context: the traceparent and tracestate of a source record go
 * into its jobs' meta, and each attempt of a job gets a child traceparent
 * (same trace, a span id of its own) that the handlers pass on: the http
 * handler as headers, exec as TRACEPARENT/TRACESTATE, plugins through
 * kjb_handler_job. https://www.w3.org/TR/trace-context/ */
#ifndef KJB_TRACE_H
#define KJB_TRACE_H

#include <stdbool.h>
#include <stddef.h>

/* A version-00 traceparent: "00-<32 hex>-<16 hex>-<2 hex>". */
#define KJB_TRACEPARENT_LEN 55
/* The longest tracestate kept (the spec's 32 members of 256 bytes are
 * rarely approached; longer ones are dropped, not cut). */
#define KJB_TRACESTATE_MAX 512

/* Whether the n bytes at s are a traceparent kjb passes on: lower-case
 * hex, a version other than ff (later versions may carry more after a
 * '-', which is ignored), trace id and parent id not all zeros. */
bool kjb_traceparent_valid(const char *s, size_t n);

/* Whether the n bytes at s are a tracestate kjb passes on: at most
 * KJB_TRACESTATE_MAX printable ASCII bytes. */
bool kjb_tracestate_valid(const char *s, size_t n);

/* A random id of nbytes bytes (8 for a span, 16 for a trace; not all
 * zeros) as lower-case hex into out (2 * nbytes + 1 bytes). */
void kjb_trace_new_id(char *out, size_t nbytes);

/* Whether a valid traceparent's sampled flag is set. */
bool kjb_traceparent_sampled(const char *traceparent);

/* The traceparent of a child span of parent (valid): version 00, the
 * same trace id and flags, a new random span id. out holds
 * KJB_TRACEPARENT_LEN + 1 bytes. */
void kjb_traceparent_child(const char *parent, char *out);

#endif
