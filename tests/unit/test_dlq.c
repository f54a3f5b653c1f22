/* The dead-letter headers: what kjb writes reads back the same, headers
 * Kafka Connect wrote read too, and malformed coordinates are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dlq.h"

static void add(rd_kafka_headers_t *h, const char *name, const char *val) {
  rd_kafka_header_add(h, name, -1, val, -1);
}

static void test_round_trip(void **state) {
  kjb_arena *arena = kjb_arena_new(0);
  rd_kafka_headers_t *h = rd_kafka_headers_new(16);
  add(h, "traceparent", "00-abc-def-01"); /* the original's stay */
  char error_class[64];
  kjb_dead_letter in = {
      .topic = "orders",
      .partition = 3,
      .offset = 9007199254740993LL,
      .stage = KJB_DLQ_STAGE_VALUE,
      .error_class = kjb_dlq_error_class(KJB_EBAD_MAGIC, error_class, sizeof error_class),
      .message = "byte 0: bad magic byte 0x07, expected 0x00",
      .timestamp = 1795255200123LL,
      .group = "kjb-orders",
      .at = "2026-11-21T10:00:00.456Z",
  };
  kjb_dlq_headers_add(h, &in);
  kjb_dead_letter out;
  kjb_err err;
  assert_int_equal(kjb_dlq_headers_parse(h, arena, &out, &err), 0);
  assert_string_equal(out.topic, "orders");
  assert_int_equal(out.partition, 3);
  assert_int_equal(out.offset, 9007199254740993LL);
  assert_string_equal(out.stage, "VALUE_CONVERTER");
  assert_string_equal(out.error_class, "kjb.BAD_MAGIC");
  assert_string_equal(out.message, in.message);
  assert_int_equal(out.timestamp, 1795255200123LL);
  assert_string_equal(out.group, "kjb-orders");
  assert_string_equal(out.at, in.at);

  /* The names on the wire are Kafka Connect's and kjb's documented ones. */
  const void *val;
  size_t len;
  assert_int_equal(rd_kafka_header_get_last(h, "__connect.errors.class.name", &val, &len), 0);
  assert_int_equal(len, 3);
  assert_memory_equal(val, "kjb", 3);
  assert_int_equal(rd_kafka_header_get_last(h, "__connect.errors.offset", &val, &len), 0);
  assert_int_equal(len, 16);
  assert_memory_equal(val, "9007199254740993", 16);
  assert_int_equal(rd_kafka_header_get_last(h, "traceparent", &val, &len), 0);

  /* Without a time, the writer stamps now, in UTC with milliseconds. */
  rd_kafka_headers_t *h2 = rd_kafka_headers_new(16);
  in.at = NULL;
  in.timestamp = -1;
  kjb_dlq_headers_add(h2, &in);
  assert_int_equal(kjb_dlq_headers_parse(h2, arena, &out, &err), 0);
  assert_int_equal(out.timestamp, -1);
  assert_int_equal(strlen(out.at), strlen("2026-11-21T10:00:00.456Z"));
  assert_int_equal(out.at[strlen(out.at) - 1], 'Z');

  rd_kafka_headers_destroy(h2);
  rd_kafka_headers_destroy(h);
  kjb_arena_free(arena);
}

/* Kafka Connect writes the same coordinates, a Java exception class and
 * none of kjb's own headers. */
static void test_kafka_connect(void **state) {
  kjb_arena *arena = kjb_arena_new(0);
  rd_kafka_headers_t *h = rd_kafka_headers_new(16);
  add(h, "__connect.errors.topic", "payments");
  add(h, "__connect.errors.partition", "0");
  add(h, "__connect.errors.offset", "41");
  add(h, "__connect.errors.connector.name", "payments-sink");
  add(h, "__connect.errors.task.id", "0");
  add(h, "__connect.errors.stage", "VALUE_CONVERTER");
  add(h, "__connect.errors.class.name", "io.confluent.connect.avro.AvroConverter");
  add(h, "__connect.errors.exception.class.name", "org.apache.kafka.connect.errors.DataException");
  add(h, "__connect.errors.exception.message", "Unknown magic byte!");
  kjb_dead_letter d;
  kjb_err err;
  assert_int_equal(kjb_dlq_headers_parse(h, arena, &d, &err), 0);
  assert_string_equal(d.topic, "payments");
  assert_int_equal(d.partition, 0);
  assert_int_equal(d.offset, 41);
  assert_string_equal(d.stage, "VALUE_CONVERTER");
  assert_string_equal(d.error_class, "org.apache.kafka.connect.errors.DataException");
  assert_string_equal(d.message, "Unknown magic byte!");
  assert_int_equal(d.timestamp, -1);
  assert_null(d.group);
  assert_null(d.at);
  rd_kafka_headers_destroy(h);
  kjb_arena_free(arena);
}

/* Headers (name, value; NULL ends), then whether they parse and the
 * coordinates read. */
static void test_malformed(void **state) {
  static const struct {
    const char *headers[12];
    int ok;
    int32_t partition;
    int64_t offset;
    int64_t timestamp;
  } cases[] = {
      {{NULL}, 0, -1, -1, -1},
      {{"__connect.errors.partition", "1", "__connect.errors.offset", "2", NULL}, 0, 1, 2, -1},
      {{"__connect.errors.topic", "t", "__connect.errors.offset", "2", NULL}, 0, -1, 2, -1},
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "1", NULL}, 0, 1, -1, -1},
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "junk",
        "__connect.errors.offset", "2", NULL},
       0,
       -1,
       2,
       -1},
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "1", "__connect.errors.offset",
        "2x", NULL},
       0,
       1,
       -1,
       -1},
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "-1",
        "__connect.errors.offset", "2", NULL},
       0,
       -1,
       2,
       -1},
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "2147483648",
        "__connect.errors.offset", "2", NULL},
       0,
       -1,
       2,
       -1},
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "1", "__connect.errors.offset",
        "9223372036854775808", NULL},
       0,
       1,
       -1,
       -1},
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "", "__connect.errors.offset",
        "2", NULL},
       0,
       -1,
       2,
       -1},
      /* The last of a name counts. */
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "junk",
        "__connect.errors.partition", "7", "__connect.errors.offset", "2", NULL},
       1,
       7,
       2,
       -1},
      /* A bad original timestamp is unknown, not an error. */
      {{"__connect.errors.topic", "t", "__connect.errors.partition", "1", "__connect.errors.offset",
        "2", "kjb.original.timestamp", "soon", NULL},
       1,
       1,
       2,
       -1},
  };
  kjb_arena *arena = kjb_arena_new(0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    for (size_t j = 0; cases[i].headers[j]; j += 2)
      add(h, cases[i].headers[j], cases[i].headers[j + 1]);
    kjb_dead_letter d;
    kjb_err err = {0};
    int rc = kjb_dlq_headers_parse(h, arena, &d, &err);
    printf("case %zu: rc %d partition %d offset %lld\n", i, rc, (int)d.partition,
           (long long)d.offset);
    if (cases[i].ok) {
      assert_int_equal(rc, 0);
    } else {
      assert_int_equal(rc, -KJB_EBAD_VALUE);
      assert_string_equal(err.msg, "not a dead letter: no valid __connect.errors.topic/partition/"
                                   "offset headers");
    }
    assert_int_equal(d.partition, cases[i].partition);
    assert_int_equal(d.offset, cases[i].offset);
    assert_int_equal(d.timestamp, cases[i].timestamp);
    rd_kafka_headers_destroy(h);
  }
  /* No headers at all. */
  kjb_dead_letter d;
  kjb_err err;
  assert_int_equal(kjb_dlq_headers_parse(NULL, arena, &d, &err), -KJB_EBAD_VALUE);
  assert_null(d.topic);
  /* A value with a NUL byte reads as absent. */
  rd_kafka_headers_t *h = rd_kafka_headers_new(8);
  rd_kafka_header_add(h, "__connect.errors.topic", -1, "t\0u", 3);
  add(h, "__connect.errors.partition", "1");
  add(h, "__connect.errors.offset", "2");
  assert_int_equal(kjb_dlq_headers_parse(h, arena, &d, &err), -KJB_EBAD_VALUE);
  assert_null(d.topic);
  rd_kafka_headers_destroy(h);
  kjb_arena_free(arena);
}

static void test_is_error_header(void **state) {
  assert_true(kjb_dlq_is_error_header("__connect.errors.topic"));
  assert_true(kjb_dlq_is_error_header("__connect.errors.connector.name"));
  assert_true(kjb_dlq_is_error_header("kjb.dead_lettered_at"));
  assert_false(kjb_dlq_is_error_header("traceparent"));
  assert_false(kjb_dlq_is_error_header("__connect.error"));
}

/* The failing byte, from the messages kjb writes (tests/e2e/test_dlq.py
 * holds the corpus they come from), and reasons from error classes. */
static void test_failing_byte(void **state) {
  static const struct {
    const char *message;
    long byte;
  } cases[] = {
      {"byte 0: bad magic byte 0x01, expected 0x00", 0},
      {"byte 0: bad magic bytes 0xc3 0x02, expected 0xc3 0x01", 0},
      {"record is 3 bytes, shorter than the 5-byte confluent header", -1},
      {"schema id 12345 is not in schemas.ids and no registry is configured", -1},
      {"avro body at byte 5: field \"id\": truncated at byte 0: data ends inside a varint", 5},
      {"avro body at byte 5: field \"score\": truncated at byte 21: double needs 8 bytes, 3 left",
       26},
      {"avro body at byte 5: 2 trailing bytes at byte 120", 125},
      {"avro body at byte 10: field \"tags\": block count -3 at byte 5 is out of range", 15},
      {"field \"name\": invalid utf-8 at byte 3", 3},
      {"avro body at byte 5: field \"x\": writer record \"a\" does not match", -1},
      {"missing field \"customer.id\" in the record", -1},
      {"avro body at byte x: truncated at byte 3", -1},
      {"avro body at byte 5 truncated at byte 3", -1},
      {"byte 7 bad", -1},
      {"truncated at byte 99999999999999999999", -1},
      {"", -1},
      {NULL, -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("%s\n", cases[i].message ? cases[i].message : "(null)");
    assert_int_equal(kjb_dlq_failing_byte(cases[i].message), cases[i].byte);
  }
  assert_string_equal(kjb_dlq_reason("kjb.TRUNCATED"), "TRUNCATED");
  assert_string_equal(kjb_dlq_reason("org.apache.kafka.connect.errors.DataException"),
                      "org.apache.kafka.connect.errors.DataException");
  assert_string_equal(kjb_dlq_reason("kjb."), "kjb.");
  assert_string_equal(kjb_dlq_reason(""), "UNKNOWN");
  assert_string_equal(kjb_dlq_reason(NULL), "UNKNOWN");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_kafka_connect),
      cmocka_unit_test(test_malformed),    cmocka_unit_test(test_is_error_header),
      cmocka_unit_test(test_failing_byte),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
