/* Tests for kafka.c's handling of kafka.properties: which kind of client
 * each property is for, as librdkafka's own property table says, and the
 * configurations that the consumers and the producers get from one list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "kafka.h"

/* Keys and whether a consumer and a producer read them, as librdkafka's
 * CONFIGURATION.md (2.8.0) marks them in its C/P column. */
static void test_property_applies(void **state) {
  (void)state;
  static const struct {
    const char *key;
    bool consumer, producer;
  } cases[] = {
      /* Global consumer properties. */
      {"fetch.max.bytes", true, false},
      {"session.timeout.ms", true, false},
      {"heartbeat.interval.ms", true, false},
      {"group.instance.id", true, false},
      {"isolation.level", true, false},
      {"enable.auto.commit", true, false}, /* listed twice: global and topic */
      /* A topic-level consumer property, set through the global conf. */
      {"auto.offset.reset", true, false},
      /* Producer properties, aliases among them (linger.ms stands for
       * queue.buffering.max.ms, acks for request.required.acks). */
      {"linger.ms", false, true},
      {"queue.buffering.max.ms", false, true},
      {"compression.type", false, true},
      {"transactional.id", false, true},
      {"enable.idempotence", false, true},
      {"acks", false, true},
      {"partitioner", false, true},
      {"message.timeout.ms", false, true},
      /* Both. */
      {"bootstrap.servers", true, true},
      {"client.id", true, true},
      {"debug", true, true},
      {"security.protocol", true, true},
      {"sasl.mechanisms", true, true},
      {"ssl.ca.location", true, true},
      /* Keys the table does not list go to both; only whole keys match. */
      {"no.such.property", true, true},
      {"fetch.max", true, true},
      {"max.bytes", true, true},
      {"fetch.max.bytes.x", true, true},
      {"C", true, true},
      {"", true, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("%s\n", cases[i].key);
    assert_int_equal(kjb_kafka_property_applies(cases[i].key, RD_KAFKA_CONSUMER),
                     cases[i].consumer);
    assert_int_equal(kjb_kafka_property_applies(cases[i].key, RD_KAFKA_PRODUCER),
                     cases[i].producer);
  }
}

/* The value that conf holds for key. */
static const char *get(rd_kafka_conf_t *conf, const char *key, char *buf, size_t size) {
  size_t n = size;
  assert_int_equal(rd_kafka_conf_get(conf, key, buf, &n), RD_KAFKA_CONF_OK);
  return buf;
}

/* One list, two clients: each gets its own properties and the shared
 * ones, nothing of the other's. */
static void test_conf_per_client(void **state) {
  (void)state;
  char *props[] = {"fetch.max.bytes=1000000", "linger.ms=77", "client.id=both",
                   "auto.offset.reset=latest", "acks=1"};
  kjb_config cfg = {.path = "t.cfg"};
  cfg.kafka.brokers = "127.0.0.1:9";
  cfg.kafka.properties = props;
  cfg.kafka.nproperties = sizeof props / sizeof props[0];
  static const char *const defaults[] = {"linger.ms", "5", "auto.offset.reset", "earliest", NULL};
  char buf[256];

  kjb_err err = {0};
  rd_kafka_conf_t *consumer = kjb_kafka_conf(&cfg, RD_KAFKA_CONSUMER, NULL, &err);
  assert_non_null(consumer);
  assert_string_equal(get(consumer, "fetch.max.bytes", buf, sizeof buf), "1000000");
  assert_string_equal(get(consumer, "client.id", buf, sizeof buf), "both");
  assert_string_equal(get(consumer, "auto.offset.reset", buf, sizeof buf), "largest");
  assert_string_equal(get(consumer, "bootstrap.servers", buf, sizeof buf), "127.0.0.1:9");
  /* librdkafka's defaults: kafka.properties did not reach them. */
  assert_string_equal(get(consumer, "linger.ms", buf, sizeof buf), "5");
  assert_string_equal(get(consumer, "acks", buf, sizeof buf), "-1");
  rd_kafka_conf_destroy(consumer);

  rd_kafka_conf_t *producer = kjb_kafka_conf(&cfg, RD_KAFKA_PRODUCER, defaults, &err);
  assert_non_null(producer);
  assert_string_equal(get(producer, "linger.ms", buf, sizeof buf), "77");
  assert_string_equal(get(producer, "acks", buf, sizeof buf), "1");
  assert_string_equal(get(producer, "client.id", buf, sizeof buf), "both");
  assert_string_equal(get(producer, "fetch.max.bytes", buf, sizeof buf), "52428800");
  /* A default of kjb's for the other kind stays as given: only
   * kafka.properties are sorted. */
  assert_string_equal(get(producer, "auto.offset.reset", buf, sizeof buf), "smallest");
  rd_kafka_conf_destroy(producer);
}

/* Without kafka.properties a client's buffers are bounded: a consumer
 * prefetches at most 4 MiB (so fetch.max.bytes is 4 MiB too, as
 * librdkafka derives it) and a producer queues at most 16 MiB. A
 * caller's default and then a property override the bounds. */
static void test_conf_bounds(void **state) {
  (void)state;
  kjb_config cfg = {.path = "t.cfg"};
  cfg.kafka.brokers = "127.0.0.1:9";
  char buf[256];
  kjb_err err = {0};

  rd_kafka_conf_t *consumer = kjb_kafka_conf(&cfg, RD_KAFKA_CONSUMER, NULL, &err);
  assert_non_null(consumer);
  assert_string_equal(get(consumer, "queued.max.messages.kbytes", buf, sizeof buf), "4096");
  assert_string_equal(get(consumer, "max.partition.fetch.bytes", buf, sizeof buf), "262144");
  assert_string_equal(get(consumer, "fetch.queue.backoff.ms", buf, sizeof buf), "20");
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, consumer, errstr, sizeof errstr);
  assert_non_null(rk);
  const rd_kafka_conf_t *used = rd_kafka_conf(rk);
  size_t n = sizeof buf;
  assert_int_equal(rd_kafka_conf_get(used, "fetch.max.bytes", buf, &n), RD_KAFKA_CONF_OK);
  assert_string_equal(buf, "4194304");
  rd_kafka_destroy(rk);

  rd_kafka_conf_t *producer = kjb_kafka_conf(&cfg, RD_KAFKA_PRODUCER, NULL, &err);
  assert_non_null(producer);
  assert_string_equal(get(producer, "queue.buffering.max.kbytes", buf, sizeof buf), "16384");
  rd_kafka_conf_destroy(producer);

  char *props[] = {"queued.max.messages.kbytes=65536"};
  cfg.kafka.properties = props;
  cfg.kafka.nproperties = 1;
  static const char *const defaults[] = {"max.partition.fetch.bytes", "65536", NULL};
  consumer = kjb_kafka_conf(&cfg, RD_KAFKA_CONSUMER, defaults, &err);
  assert_non_null(consumer);
  assert_string_equal(get(consumer, "queued.max.messages.kbytes", buf, sizeof buf), "65536");
  assert_string_equal(get(consumer, "max.partition.fetch.bytes", buf, sizeof buf), "65536");
  rd_kafka_conf_destroy(consumer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_property_applies),
      cmocka_unit_test(test_conf_per_client),
      cmocka_unit_test(test_conf_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
