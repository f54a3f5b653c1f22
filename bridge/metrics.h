/* Prometheus counters: a process-wide, thread-safe registry rendered in
 * the text exposition format (the HTTP server serves it at /metrics). */
#ifndef KJB_METRICS_H
#define KJB_METRICS_H

#include "util.h"

/* Adds v to the counter `name` with the given label pairs ("topic",
 * "orders", "reason", "TRUNCATED", NULL). Label values are escaped. help
 * describes the metric; the first call's help is kept. */
void kjb_counter_add(const char *name, const char *help, double v, ...)
    __attribute__((sentinel));

/* Current value of a counter, 0 when it was never incremented. The label
 * pairs are given as for kjb_counter_add. */
double kjb_counter_get(const char *name, ...) __attribute__((sentinel));

/* Appends every metric in the text exposition format, grouped by name with
 * # HELP and # TYPE lines, in the order the names were first seen. */
void kjb_metrics_render(kjb_buf *out);

/* Forgets everything (tests). */
void kjb_metrics_reset(void);

#endif
