/* Mapping: args selection and unique_key templates over a hand-built
 * record, so these tests do not depend on the decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "map.h"

static kjb_value v_int(int64_t i) { return (kjb_value){.type = KJB_V_INT, .u.i = i}; }
static kjb_value v_str(const char *s) {
  return (kjb_value){.type = KJB_V_STRING, .u.s = {s, strlen(s)}};
}

/* {"order_id": 42, "customer": {"email": "a@b.example", "note": null,
 *  "tags": []}, "flag": true} */
static kjb_value order_id, email, note, tags, customer, flag, record;
static kjb_member customer_members[3], record_members[3];

static void build_record(void) {
  order_id = v_int(42);
  email = v_str("a@b.example");
  note = (kjb_value){.type = KJB_V_NULL};
  tags = (kjb_value){.type = KJB_V_ARRAY, .u.arr = {NULL, 0}};
  customer_members[0] = (kjb_member){"email", 5, &email};
  customer_members[1] = (kjb_member){"note", 4, &note};
  customer_members[2] = (kjb_member){"tags", 4, &tags};
  customer = (kjb_value){.type = KJB_V_OBJECT, .u.obj = {customer_members, 3}};
  flag = (kjb_value){.type = KJB_V_BOOL, .u.b = true};
  record_members[0] = (kjb_member){"order_id", 8, &order_id};
  record_members[1] = (kjb_member){"customer", 8, &customer};
  record_members[2] = (kjb_member){"flag", 4, &flag};
  record = (kjb_value){.type = KJB_V_OBJECT, .u.obj = {record_members, 3}};
}

static void test_args_whole_record(void **state) {
  build_record();
  kjb_job_cfg job = {.kind = "k"};
  kjb_buf out;
  kjb_buf_init(&out);
  kjb_err err;
  assert_int_equal(kjb_map_args(&job, &record, &out, &err), 0);
  assert_string_equal(out.data, "{\"order_id\":42,\"customer\":{\"email\":\"a@b.example\","
                                "\"note\":null,\"tags\":[]},\"flag\":true}");
  kjb_buf_close(&out);
}

static void test_args_selected_paths(void **state) {
  build_record();
  char *paths[] = {"order_id", "customer.email", "customer.note"};
  kjb_job_cfg job = {.kind = "k", .args = paths, .nargs = 3};
  kjb_buf out;
  kjb_buf_init(&out);
  kjb_err err;
  assert_int_equal(kjb_map_args(&job, &record, &out, &err), 0);
  assert_string_equal(
      out.data, "{\"order_id\":42,\"customer.email\":\"a@b.example\",\"customer.note\":null}");
  kjb_buf_close(&out);
}

static void test_args_missing_path(void **state) {
  build_record();
  char *paths[] = {"order_id", "customer.phone"};
  kjb_job_cfg job = {.kind = "fraud_check", .args = paths, .nargs = 2};
  kjb_buf out;
  kjb_buf_init(&out);
  kjb_err err;
  assert_int_equal(kjb_map_args(&job, &record, &out, &err), -KJB_EMISSING_FIELD);
  assert_int_equal(err.code, KJB_EMISSING_FIELD);
  assert_string_equal(err.msg, "job \"fraud_check\": args: field \"customer.phone\" is missing");
  kjb_buf_close(&out);
}

/* A 300-byte name: longer than the 255 bytes unique_key paths once had. */
#define N10 "nnnnnnnnnn"
#define N100 N10 N10 N10 N10 N10 N10 N10 N10 N10 N10
#define N300 N100 N100 N100

typedef struct {
  const char *tpl;
  int code;             /* 0 for success */
  const char *expected; /* output, or error message */
} template_case;

static const template_case template_cases[] = {
    {"${order_id}", 0, "42"},
    {"order-${order_id}", 0, "order-42"},
    {"${order_id}/${customer.email}", 0, "42/a@b.example"},
    {"${flag}-x", 0, "true-x"},
    {"static", 0, "static"},
    {"${customer.phone}", KJB_EMISSING_FIELD,
     "job \"j\": unique_key: field \"customer.phone\" is missing"},
    {"${customer.note}", KJB_EBAD_TEMPLATE,
     "job \"j\": unique_key: field \"customer.note\" is null, not a scalar"},
    {"${customer.tags}", KJB_EBAD_TEMPLATE,
     "job \"j\": unique_key: field \"customer.tags\" is an array, not a scalar"},
    {"${customer}", KJB_EBAD_TEMPLATE,
     "job \"j\": unique_key: field \"customer\" is an object, not a scalar"},
    {"${order_id", KJB_EBAD_TEMPLATE, "job \"j\": unique_key \"${order_id\" is malformed"},
    {"a${}b", KJB_EBAD_TEMPLATE, "job \"j\": unique_key \"a${}b\" is malformed"},
    /* Long paths are looked up, not refused as malformed (found by
     * fuzz_template). */
    {"${customer." N300 "}", KJB_EMISSING_FIELD,
     "job \"j\": unique_key: field \"customer." N300 "\" is missing"},
    {"${order_id}${customer.email." N300 "}", KJB_EMISSING_FIELD,
     "job \"j\": unique_key: field \"customer.email." N300 "\" is missing"},
};

/* The expected text with every "unique_key" spelled as what. */
static char *respell(const char *text, const char *what) {
  kjb_buf b;
  kjb_buf_init(&b);
  for (const char *p = text, *q; *p; p = q + strlen("unique_key")) {
    q = strstr(p, "unique_key");
    if (!q) {
      kjb_buf_puts(&b, p);
      break;
    }
    kjb_buf_append(&b, p, (size_t)(q - p));
    kjb_buf_puts(&b, what);
  }
  char *out = kjb_xstrdup(b.data ? b.data : "");
  kjb_buf_close(&b);
  return out;
}

/* unique_key and ordering_key expand through the same kjb_map_template;
 * only the key's name in the messages differs. */
static void test_key_templates(void **state) {
  static const char *const whats[] = {"unique_key", "ordering_key"};
  build_record();
  for (size_t w = 0; w < 2; w++) {
    for (size_t i = 0; i < sizeof template_cases / sizeof template_cases[0]; i++) {
      const template_case *c = &template_cases[i];
      kjb_job_cfg job = {.kind = "j"};
      kjb_buf out;
      kjb_buf_init(&out);
      kjb_err err;
      kjb_err_clear(&err);
      int rc = kjb_map_template(&job, whats[w], c->tpl, &record, &out, &err);
      print_message("case %zu (%s): %s\n", i, whats[w], c->tpl);
      assert_int_equal(rc, -c->code);
      char *want = respell(c->expected, whats[w]);
      assert_string_equal(c->code ? err.msg : out.data, want);
      free(want);
      kjb_buf_close(&out);
    }
  }
}

static int count_path(const char *path, size_t len, void *arg) {
  kjb_buf *b = arg;
  kjb_buf_append(b, path, len);
  kjb_buf_putc(b, ';');
  return 0;
}

static void test_template_each(void **state) {
  kjb_buf b;
  kjb_buf_init(&b);
  assert_int_equal(kjb_template_each("a${x}b${y.z}", count_path, &b), 0);
  assert_string_equal(b.data, "x;y.z;");
  assert_int_equal(kjb_template_each("a${x", count_path, &b), -1);
  kjb_buf_close(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_args_whole_record), cmocka_unit_test(test_args_selected_paths),
      cmocka_unit_test(test_args_missing_path), cmocka_unit_test(test_key_templates),
      cmocka_unit_test(test_template_each),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
