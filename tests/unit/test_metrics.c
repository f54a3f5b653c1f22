/* Counters and their Prometheus text rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "metrics.h"

static void test_render(void **state) {
  kjb_metrics_reset();
  kjb_counter_add("kjb_records_dead_lettered_total", "Records sent to a dead-letter topic.", 1,
                  "topic", "orders", "reason", "TRUNCATED", NULL);
  kjb_counter_add("kjb_replay_records_total", "Replayed dead letters by outcome.", 3, "topic",
                  "orders.dlq", "outcome", "replayed", NULL);
  kjb_counter_add("kjb_records_dead_lettered_total", "ignored", 2, "topic", "orders", "reason",
                  "TRUNCATED", NULL);
  kjb_counter_add("kjb_records_dead_lettered_total", "ignored", 1, "topic", "we\"ird\\\n", "reason",
                  "BAD_MAGIC", NULL);
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_metrics_render(&b);
  assert_string_equal(
      b.data, "# HELP kjb_records_dead_lettered_total Records sent to a dead-letter topic.\n"
              "# TYPE kjb_records_dead_lettered_total counter\n"
              "kjb_records_dead_lettered_total{topic=\"orders\",reason=\"TRUNCATED\"} 3\n"
              "kjb_records_dead_lettered_total{topic=\"we\\\"ird\\\\\\n\",reason=\"BAD_MAGIC\"} 1\n"
              "# HELP kjb_replay_records_total Replayed dead letters by outcome.\n"
              "# TYPE kjb_replay_records_total counter\n"
              "kjb_replay_records_total{topic=\"orders.dlq\",outcome=\"replayed\"} 3\n");
  assert_true(kjb_counter_get("kjb_records_dead_lettered_total", "topic", "orders", "reason",
                              "TRUNCATED", NULL) == 3);
  assert_true(
      kjb_counter_get("kjb_replay_records_total", "topic", "x", "outcome", "replayed", NULL) == 0);
  kjb_buf_close(&b);
  kjb_metrics_reset();
}

static void test_gauge_and_clear(void **state) {
  kjb_metrics_reset();
  kjb_gauge_set("kjb_consumer_lag", "Lag.", 5, "topic", "orders", "partition", "0", NULL);
  kjb_gauge_set("kjb_consumer_lag", "Lag.", 7, "topic", "orders", "partition", "0", NULL);
  kjb_gauge_set("kjb_breaker_open", "Open.", 1, NULL);
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_metrics_render(&b);
  assert_string_equal(b.data, "# HELP kjb_consumer_lag Lag.\n"
                              "# TYPE kjb_consumer_lag gauge\n"
                              "kjb_consumer_lag{topic=\"orders\",partition=\"0\"} 7\n"
                              "# HELP kjb_breaker_open Open.\n"
                              "# TYPE kjb_breaker_open gauge\n"
                              "kjb_breaker_open 1\n");
  kjb_metric_clear("kjb_consumer_lag");
  kjb_gauge_set("kjb_jobs", "Jobs.", 2, "kind", "k", "state", "available", NULL);
  kjb_buf_reset(&b);
  kjb_metrics_render(&b);
  assert_string_equal(b.data, "# HELP kjb_breaker_open Open.\n"
                              "# TYPE kjb_breaker_open gauge\n"
                              "kjb_breaker_open 1\n"
                              "# HELP kjb_jobs Jobs.\n"
                              "# TYPE kjb_jobs gauge\n"
                              "kjb_jobs{kind=\"k\",state=\"available\"} 2\n");
  kjb_buf_close(&b);
  kjb_metrics_reset();
}

static void each_sum(void *arg, const char *const *labels, int n, double v) {
  assert_int_equal(n, 2);
  assert_string_equal(labels[0], "k");
  *(double *)arg += v;
}

static void test_histogram(void **state) {
  kjb_metrics_reset();
  double q[] = {0.5, 0.9, 0.99}, out[3];
  uint64_t count = 0;
  assert_int_equal(kjb_histogram_quantiles("h", q, 3, out, &count, "kind", "k", NULL), -1);
  /* 100 observations: 50 at 3 ms (bucket 2.5-5 ms), 50 at 40 ms (25-50 ms). */
  for (int i = 0; i < 50; i++) {
    kjb_histogram_observe("h", "A histogram.", 0.003, "kind", "k", NULL);
    kjb_histogram_observe("h", "A histogram.", 0.04, "kind", "k", NULL);
  }
  kjb_histogram_observe("h", "A histogram.", 7200, "kind", "x", NULL);
  assert_int_equal(kjb_histogram_quantiles("h", q, 3, out, &count, "kind", "k", NULL), 0);
  assert_int_equal(count, 100);
  assert_true(out[0] > 0.0025 && out[0] <= 0.005);
  assert_true(out[1] > 0.025 && out[1] <= 0.05);
  assert_true(out[2] > out[1] && out[2] <= 0.05);
  /* Beyond the last bound: the highest finite bound, as Prometheus does. */
  assert_int_equal(kjb_histogram_quantiles("h", q, 1, out, &count, "kind", "x", NULL), 0);
  assert_true(out[0] == 3600);
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_metrics_render(&b);
  assert_non_null(strstr(b.data, "# TYPE h histogram\n"));
  assert_non_null(strstr(b.data, "h_bucket{kind=\"k\",le=\"0.001\"} 0\n"));
  assert_non_null(strstr(b.data, "h_bucket{kind=\"k\",le=\"0.005\"} 50\n"));
  assert_non_null(strstr(b.data, "h_bucket{kind=\"k\",le=\"0.05\"} 100\n"));
  assert_non_null(strstr(b.data, "h_bucket{kind=\"k\",le=\"+Inf\"} 100\n"));
  assert_non_null(strstr(b.data, "h_count{kind=\"k\"} 100\n"));
  assert_non_null(strstr(b.data, "h_bucket{kind=\"x\",le=\"3600\"} 0\n"));
  assert_non_null(strstr(b.data, "h_bucket{kind=\"x\",le=\"+Inf\"} 1\n"));
  assert_non_null(strstr(b.data, "h_sum{kind=\"x\"} 7200\n"));
  kjb_buf_close(&b);
  kjb_counter_add("c", "C.", 2, "kind", "k", "outcome", "completed", NULL);
  kjb_counter_add("c", "C.", 3, "kind", "k", "outcome", "discarded", NULL);
  double sum = 0;
  kjb_metrics_each("c", each_sum, &sum);
  assert_true(sum == 5);
  kjb_metrics_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_render),
                                     cmocka_unit_test(test_gauge_and_clear),
                                     cmocka_unit_test(test_histogram)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
