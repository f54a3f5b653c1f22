/* Counters and their Prometheus text rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "metrics.h"

static void test_render(void **state) {
  kjb_metrics_reset();
  kjb_counter_add("kjb_records_dead_lettered_total", "Records sent to a dead-letter topic.", 1,
                  "topic", "orders", "reason", "TRUNCATED", NULL);
  kjb_counter_add("kjb_replay_records_total", "Replayed dead letters by outcome.", 3, "topic",
                  "orders.dlq", "outcome", "replayed", NULL);
  kjb_counter_add("kjb_records_dead_lettered_total", "ignored", 2, "topic", "orders", "reason",
                  "TRUNCATED", NULL);
  kjb_counter_add("kjb_records_dead_lettered_total", "ignored", 1, "topic", "we\"ird\\\n",
                  "reason", "BAD_MAGIC", NULL);
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_metrics_render(&b);
  assert_string_equal(
      b.data,
      "# HELP kjb_records_dead_lettered_total Records sent to a dead-letter topic.\n"
      "# TYPE kjb_records_dead_lettered_total counter\n"
      "kjb_records_dead_lettered_total{topic=\"orders\",reason=\"TRUNCATED\"} 3\n"
      "kjb_records_dead_lettered_total{topic=\"we\\\"ird\\\\\\n\",reason=\"BAD_MAGIC\"} 1\n"
      "# HELP kjb_replay_records_total Replayed dead letters by outcome.\n"
      "# TYPE kjb_replay_records_total counter\n"
      "kjb_replay_records_total{topic=\"orders.dlq\",outcome=\"replayed\"} 3\n");
  assert_true(kjb_counter_get("kjb_records_dead_lettered_total", "topic", "orders", "reason",
                              "TRUNCATED", NULL) == 3);
  assert_true(kjb_counter_get("kjb_replay_records_total", "topic", "x", "outcome", "replayed",
                              NULL) == 0);
  kjb_buf_close(&b);
  kjb_metrics_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_render)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
