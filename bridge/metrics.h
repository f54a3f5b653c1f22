/* Prometheus metrics: a process-wide, thread-safe registry of counters,
 * gauges and histograms, rendered in the text exposition format (the HTTP
 * server serves it at /metrics). */
#ifndef KJB_METRICS_H
#define KJB_METRICS_H

#include <stdint.h>

#include "util.h"

/* Label pairs follow the value as ("topic", "orders", "reason",
 * "TRUNCATED", NULL); label values are escaped. help describes the metric;
 * the first call's help is kept. One name has one type. */

/* Adds v to the counter `name`. */
void kjb_counter_add(const char *name, const char *help, double v, ...) __attribute__((sentinel));

/* Sets the gauge `name` to v. */
void kjb_gauge_set(const char *name, const char *help, double v, ...) __attribute__((sentinel));

/* Forgets every series of `name` (a gauge family about to be rebuilt, such
 * as the lag of partitions this process no longer owns). */
void kjb_metric_clear(const char *name);

/* Counts v (seconds) in the histogram `name`, whose buckets are
 * KJB_LATENCY_BUCKETS. */
void kjb_histogram_observe(const char *name, const char *help, double v, ...)
    __attribute__((sentinel));

/* Upper bounds of the latency histograms' buckets, in seconds: 1 ms to
 * an hour (jobs may wait out backoffs and rate limits). */
#define KJB_LATENCY_BUCKETS                                                                        \
  {                                                                                                \
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, \
        3600                                                                                       \
  }

/* Current value of a counter or gauge, 0 when it was never set. The label
 * pairs are given as for kjb_counter_add. */
double kjb_counter_get(const char *name, ...) __attribute__((sentinel));

/* Estimates the quantiles q[0..n) (each in (0,1)) of a histogram series by
 * linear interpolation within its buckets, as Prometheus's
 * histogram_quantile does; *count receives the number of observations.
 * Returns 0, or -1 when the series has no observation (out untouched). */
int kjb_histogram_quantiles(const char *name, const double *q, int n, double *out, uint64_t *count,
                            ...) __attribute__((sentinel));

/* Appends every metric in the text exposition format, grouped by name with
 * # HELP and # TYPE lines, in the order the names were first seen. */
void kjb_metrics_render(kjb_buf *out);

/* Calls fn once for each series of `name`, in order, with its label values
 * in the order they were given (at most 4) and its value (for a
 * histogram: its count). fn runs under the registry's lock and must not
 * call into it. */
void kjb_metrics_each(const char *name,
                      void (*fn)(void *arg, const char *const *labels, int nlabels, double v),
                      void *arg);

/* Forgets everything (tests). */
void kjb_metrics_reset(void);

#endif
