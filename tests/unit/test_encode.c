/* JSON to Avro encoding: table-driven cases of (schema, JSON input,
 * expected bytes or error), each decoded back to check the natural JSON
 * round trip. In the tables, single quotes stand for double quotes. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "schema.h"
#include "testutil.h"
#include "util.h"
#include "value.h"

typedef struct {
  const char *name;
  const char *schema;
  const char *input;
  const char *hex;     /* expected encoding; NULL when an error is expected */
  const char *natural; /* what decoding gives back; NULL: the input */
  kjb_errcode code;
  const char *msg;
} ecase;

static void to_hex(const kjb_buf *b, kjb_buf *out) {
  for (size_t i = 0; i < b->len; i++)
    kjb_buf_printf(out, i ? " %02x" : "%02x", (unsigned)(uint8_t)b->data[i]);
}

static int run_case(const ecase *c) {
  const char *sj = kjb_test_quote(c->schema, 0), *in = kjb_test_quote(c->input, 1), *hex = c->hex,
             *msg = kjb_test_quote(c->msg, 3);
  const char *natural = kjb_test_quote(c->natural ? c->natural : c->input, 2);
  kjb_err err = {0};
  kjb_schema *s = kjb_schema_parse(sj, strlen(sj), &err);
  if (!s)
    fail_msg("[%s] schema: %s", c->name, err.msg);
  json_error_t jerr;
  json_t *json = json_loads(in, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!json)
    fail_msg("[%s] input JSON: %s", c->name, jerr.text);
  kjb_buf out, got;
  kjb_buf_init(&out);
  kjb_buf_init(&got);
  int bad = 0;
  int rc = kjb_avro_encode(s, json, &out, &err);
  if (!hex) {
    if (rc == 0) {
      to_hex(&out, &got);
      printf("[%s] expected error %s: %s\n        got bytes %s\n", c->name, kjb_err_name(c->code),
             msg, got.data);
      bad = 1;
    } else if (err.code != c->code || strcmp(err.msg, msg) != 0) {
      printf("[%s] expected error %s: %s\n        got error      %s: %s\n", c->name,
             kjb_err_name(c->code), msg, kjb_err_name(err.code), err.msg);
      bad = 1;
    }
  } else if (rc != 0) {
    printf("[%s] expected bytes %s\n        got error %s: %s\n", c->name, hex,
           kjb_err_name(err.code), err.msg);
    bad = 1;
  } else {
    to_hex(&out, &got);
    if (strcmp(got.data, hex) != 0) {
      printf("[%s] expected bytes %s\n        got bytes      %s\n", c->name, hex, got.data);
      bad = 1;
    }
    /* Decode what was written and compare with the natural JSON. */
    kjb_resolver *r = kjb_resolver_new(s, s, &err);
    assert_non_null(r);
    kjb_arena *a = kjb_arena_new(0);
    kjb_value *v;
    kjb_buf_reset(&got);
    if (kjb_avro_decode(r, (const uint8_t *)out.data, out.len, a, &v, &err) != 0) {
      printf("[%s] decoding back failed: %s\n", c->name, err.msg);
      bad = 1;
    } else {
      kjb_value_to_json(v, &got);
      if (strcmp(got.data, natural) != 0) {
        printf("[%s] round trip\n  expected %s\n  got      %s\n", c->name, natural, got.data);
        bad = 1;
      }
    }
    kjb_arena_free(a);
    kjb_resolver_free(r);
  }
  kjb_buf_close(&got);
  kjb_buf_close(&out);
  json_decref(json);
  kjb_schema_free(s);
  return bad;
}

static void run_table(const ecase *cases, size_t n) {
  int failures = 0;
  for (size_t i = 0; i < n; i++)
    failures += run_case(&cases[i]);
  if (failures)
    fail_msg("%d of %zu cases failed", failures, n);
}

#define RUN(table) run_table(table, sizeof table / sizeof table[0])
#define REC(fields) "{'type':'record','name':'R','namespace':'kjb','fields':[" fields "]}"
#define REC2(fields) "{'type':'record','name':'S','fields':[" fields "]}"
#define F(n, t) "{'name':'" n "','type':" t "}"
#define DEC(p, s) "{'type':'bytes','logicalType':'decimal','precision':" #p ",'scale':" #s "}"
#define TSM "{'type':'long','logicalType':'timestamp-millis'}"

static const ecase basics[] = {
    {"null", "'null'", "null", "", NULL, 0, NULL},
    {"boolean", "'boolean'", "true", "01", NULL, 0, NULL},
    {"int", "'int'", "-64", "7f", NULL, 0, NULL},
    {"int max", "'int'", "2147483647", "fe ff ff ff 0f", NULL, 0, NULL},
    {"int from integral real", "'int'", "3.0", "06", "3", 0, NULL},
    {"long min", "'long'", "-9223372036854775808", "ff ff ff ff ff ff ff ff ff 01", NULL, 0, NULL},
    {"float", "'float'", "1.5", "00 00 c0 3f", NULL, 0, NULL},
    {"float from integer", "'float'", "2", "00 00 00 40", "2.0", 0, NULL},
    {"double", "'double'", "0.1", "9a 99 99 99 99 99 b9 3f", NULL, 0, NULL},
    {"float NaN", "'float'", "'NaN'", "00 00 c0 7f", NULL, 0, NULL},
    {"double Infinity", "'double'", "'Infinity'", "00 00 00 00 00 00 f0 7f", NULL, 0, NULL},
    {"double -Infinity", "'double'", "'-Infinity'", "00 00 00 00 00 00 f0 ff", NULL, 0, NULL},
    {"string", "'string'", "'é'", "04 c3 a9", NULL, 0, NULL},
    {"string with NUL", "'string'", "'a\\u0000b'", NULL, NULL, KJB_EBAD_JSON,
     "a string holds U+0000, which postgresql text cannot hold"},
    {"bytes", "'bytes'", "'AQID'", "06 01 02 03", NULL, 0, NULL},
    {"bytes unpadded", "'bytes'", "'//79/A'", "08 ff fe fd fc", "'//79/A=='", 0, NULL},
    {"fixed", "{'type':'fixed','name':'F','size':3}", "'AQID'", "01 02 03", NULL, 0, NULL},
    {"enum", "{'type':'enum','name':'E','symbols':['A','B','C']}", "'C'", "04", NULL, 0, NULL},
    {"array", "{'type':'array','items':'int'}", "[1,2]", "04 02 04 00", NULL, 0, NULL},
    {"array empty", "{'type':'array','items':'int'}", "[]", "00", NULL, 0, NULL},
    {"map", "{'type':'map','values':'long'}", "{'a':1}", "02 02 61 02 00", NULL, 0, NULL},
    {"record", REC(F("a", "'int'") "," F("b", "'string'")), "{'a':1,'b':'b'}", "02 02 62", NULL, 0,
     NULL},
    {"record field order from schema", REC(F("a", "'int'") "," F("b", "'string'")),
     "{'b':'b','a':1}", "02 02 62", "{'a':1,'b':'b'}", 0, NULL},
    {"record extra keys ignored", REC(F("a", "'int'")), "{'a':1,'zzz':2}", "02", "{'a':1}", 0,
     NULL},
    {"default used", REC(F("a", "'int'") ",{'name':'b','type':'string','default':'d'}"), "{'a':1}",
     "02 02 64", "{'a':1,'b':'d'}", 0, NULL},
    {"default of logical type", REC("{'name':'t','type':" TSM ",'default':-1}"), "{}", "01",
     "{'t':'1969-12-31T23:59:59.999Z'}", 0, NULL},
    {"default of bytes and union",
     REC("{'name':'b','type':'bytes','default':'\\u00ff'},{'name':'u','type':['null','int'],'default':null}"),
     "{}", "02 ff 00", "{'b':'/w==','u':null}", 0, NULL},
    {"recursive",
     "{'type':'record','name':'LL','fields':[" F("v", "'int'") "," F("next", "['null','LL']") "]}",
     "{'v':1,'next':{'v':2,'next':null}}", "02 02 04 00", NULL, 0, NULL},
};

static void test_basics(void **state) { RUN(basics); }

static const ecase logical[] = {
    {"timestamp-millis string", TSM, "'2026-11-21T10:00:00.123Z'", "f6 a5 e3 d8 bf 68", NULL, 0,
     NULL},
    {"timestamp-millis offset", TSM, "'2026-11-21T11:30:00.123+01:30'", "f6 a5 e3 d8 bf 68",
     "'2026-11-21T10:00:00.123Z'", 0, NULL},
    {"timestamp-millis negative offset", TSM, "'2026-11-21T05:00:00.123-05:00'",
     "f6 a5 e3 d8 bf 68", "'2026-11-21T10:00:00.123Z'", 0, NULL},
    {"timestamp-millis number", TSM, "1795255200123", "f6 a5 e3 d8 bf 68",
     "'2026-11-21T10:00:00.123Z'", 0, NULL},
    {"timestamp-millis no fraction", TSM, "'1970-01-01T00:00:01Z'", "d0 0f",
     "'1970-01-01T00:00:01.000Z'", 0, NULL},
    {"timestamp-millis trailing zeros", TSM, "'1970-01-01T00:00:00.001000Z'", "02",
     "'1970-01-01T00:00:00.001Z'", 0, NULL},
    {"timestamp-millis before 1970", TSM, "'1969-12-31T23:59:59.999Z'", "01", NULL, 0, NULL},
    {"timestamp-millis year 9999", TSM, "'9999-12-31T23:59:59.999Z'", "fe ef fe a1 fa 9d 73", NULL,
     0, NULL},
    {"timestamp-millis year 0", TSM, "'0000-01-01T00:00:00.000Z'", "ff ff a2 f0 cd a2 1c", NULL, 0,
     NULL},
    {"timestamp-micros", "{'type':'long','logicalType':'timestamp-micros'}",
     "'1970-01-01T00:00:00.000001Z'", "02", NULL, 0, NULL},
    {"local-timestamp-millis", "{'type':'long','logicalType':'local-timestamp-millis'}",
     "'2026-11-21T10:00:00.123'", "f6 a5 e3 d8 bf 68", NULL, 0, NULL},
    {"date", "{'type':'int','logicalType':'date'}", "'1969-12-31'", "01", NULL, 0, NULL},
    {"date 9999", "{'type':'int','logicalType':'date'}", "'9999-12-31'", "c0 82 e6 02", NULL, 0,
     NULL},
    {"date leap day", "{'type':'int','logicalType':'date'}", "'2024-02-29'", "8c b5 02", NULL, 0,
     NULL},
    {"date number", "{'type':'int','logicalType':'date'}", "0", "00", "'1970-01-01'", 0, NULL},
    {"time-millis", "{'type':'int','logicalType':'time-millis'}", "'23:59:59.999'", "fe ef b2 52",
     NULL, 0, NULL},
    {"time-micros", "{'type':'long','logicalType':'time-micros'}", "'23:59:59.999999'",
     "fe ff ba dd 83 05", NULL, 0, NULL},
    {"decimal string", DEC(10, 2), "'123.45'", "04 30 39", NULL, 0, NULL},
    {"decimal number", DEC(10, 2), "123.45", "04 30 39", "'123.45'", 0, NULL},
    {"decimal integer", DEC(10, 2), "7", "04 02 bc", "'7.00'", 0, NULL},
    {"decimal negative", DEC(10, 2), "'-0.05'", "02 fb", NULL, 0, NULL},
    {"decimal zero", DEC(10, 2), "'0'", "02 00", "'0.00'", 0, NULL},
    {"decimal needs sign byte", DEC(10, 1), "'12.8'", "04 00 80", NULL, 0, NULL},
    {"decimal -128", DEC(10, 0), "'-128'", "02 80", NULL, 0, NULL},
    {"decimal trailing zeros", DEC(10, 2), "'1.230'", "02 7b", "'1.23'", 0, NULL},
    {"decimal exponent", DEC(10, 2), "'1e2'", "04 27 10", "'100.00'", 0, NULL},
    {"decimal 30 digits", DEC(30, 0), "'123456789012345678901234567890'",
     "1a 01 8e e9 0f f6 c3 73 e0 ee 4e 3f 0a d2", NULL, 0, NULL},
    {"decimal -30 digits", DEC(30, 0), "'-123456789012345678901234567890'",
     "1a fe 71 16 f0 09 3c 8c 1f 11 b1 c0 f5 2e", NULL, 0, NULL},
    {"decimal fixed",
     "{'type':'fixed','name':'D','size':8,'logicalType':'decimal','precision':18,'scale':2}",
     "'-0.01'", "ff ff ff ff ff ff ff ff", NULL, 0, NULL},
    {"decimal fixed positive",
     "{'type':'fixed','name':'D','size':4,'logicalType':'decimal','precision':9,'scale':0}", "'99'",
     "00 00 00 63", NULL, 0, NULL},
    {"uuid", "{'type':'string','logicalType':'uuid'}", "'123e4567-e89b-12d3-a456-426614174000'",
     "48 31 32 33 65 34 35 36 37 2d 65 38 39 62 2d 31 32 64 33 2d 61 34 35 36 2d 34 32 36 36 31 34 31 37 34 30 30 30",
     NULL, 0, NULL},
    {"duration", "{'type':'fixed','name':'Dur','size':12,'logicalType':'duration'}",
     "{'months':1,'days':2,'millis':3}", "01 00 00 00 02 00 00 00 03 00 00 00", NULL, 0, NULL},
    {"duration base64", "{'type':'fixed','name':'Dur','size':12,'logicalType':'duration'}",
     "'AQAAAAIAAAADAAAA'", "01 00 00 00 02 00 00 00 03 00 00 00",
     "{'months':1,'days':2,'millis':3}", 0, NULL},
};

static void test_logical(void **state) { RUN(logical); }

#define U3 "['null','long','double']"

static const ecase unions[] = {
    {"bare null", "['null','string']", "null", "00", NULL, 0, NULL},
    {"bare string", "['null','string']", "'x'", "02 02 78", NULL, 0, NULL},
    {"wrapped string", "['null','string']", "{'string':'x'}", "02 02 78", "'x'", 0, NULL},
    {"integer picks long", U3, "2", "02 04", NULL, 0, NULL},
    {"real picks double", U3, "1.5", "04 00 00 00 00 00 00 f8 3f", NULL, 0, NULL},
    {"wrapped double", U3, "{'double':2}", "04 00 00 00 00 00 00 00 40", "2.0", 0, NULL},
    {"not base64 falls to string", "['bytes','string']", "'hello'", "02 0a 68 65 6c 6c 6f", NULL, 0,
     NULL},
    {"base64 picks bytes", "['bytes','string']", "'AQID'", "00 06 01 02 03", NULL, 0, NULL},
    {"enum symbol", "[{'type':'enum','name':'E','symbols':['A']},'string']", "'A'", "00 00", NULL,
     0, NULL},
    {"non-symbol falls to string", "[{'type':'enum','name':'E','symbols':['A']},'string']", "'Z'",
     "02 02 5a", NULL, 0, NULL},
    {"record by full name", "['null'," REC(F("a", "'int'")) "]", "{'kjb.R':{'a':1}}", "02 02",
     "{'a':1}", 0, NULL},
    {"record by short name", "['null'," REC(F("a", "'int'")) "]", "{'R':{'a':1}}", "02 02",
     "{'a':1}", 0, NULL},
    {"bare record", "['null'," REC(F("a", "'int'")) "]", "{'a':1}", "02 02", NULL, 0, NULL},
    {"map or record", "['null',{'type':'map','values':'int'}]", "{'k':1}", "02 02 02 6b 02 00",
     NULL, 0, NULL},
    {"timestamp string in union", "['null'," TSM "]", "'1970-01-01T00:00:00.000Z'", "02 00", NULL,
     0, NULL},
    {"array in union", "['null',{'type':'array','items':'int'}]", "{'array':[1]}", "02 02 02 00",
     "[1]", 0, NULL},
    {"no branch accepts", "['null','int']", "'x'", NULL, NULL, KJB_EBAD_JSON,
     "no branch of the union accepts a string"},
    {"branch error reported", REC(F("u", "['null'," REC2(F("a", "'int'")) "]")), "{'u':{'a':'x'}}",
     NULL, NULL, KJB_EBAD_JSON, "field 'u.a': expected int, got a string"},
};

static void test_unions(void **state) { RUN(unions); }

static const ecase errors[] = {
    {"missing field", REC(F("c", REC2(F("email", "'string'")))), "{'c':{}}", NULL, NULL,
     KJB_EBAD_JSON, "field 'c.email': missing"},
    {"wrong type nested",
     REC(F("customer", "{'type':'record','name':'C','fields':[" F("email", "'string'") "]}")),
     "{'customer':{'email':5}}", NULL, NULL, KJB_EBAD_JSON,
     "field 'customer.email': expected string, got an integer"},
    {"array item path",
     REC(F("items", "{'type':'array','items':{'type':'record','name':'I','fields':[" F(
                        "quantity", "'int'") "]}}")),
     "{'items':[{'quantity':1},{'quantity':'2'}]}", NULL, NULL, KJB_EBAD_JSON,
     "field 'items[1].quantity': expected int, got a string"},
    {"map value path", REC(F("tags", "{'type':'map','values':'string'}")), "{'tags':{'k':null}}",
     NULL, NULL, KJB_EBAD_JSON, "field 'tags.k': expected string, got null"},
    {"not a record", REC(F("a", "'int'")), "[1]", NULL, NULL, KJB_EBAD_JSON,
     "expected record 'kjb.R', got an array"},
    {"int out of range", "'int'", "3000000000", NULL, NULL, KJB_EBAD_JSON,
     "3000000000 is out of range for int"},
    {"int from fraction", "'int'", "1.5", NULL, NULL, KJB_EBAD_JSON, "1.5 is not an integer"},
    {"string for long", "'long'", "'5'", NULL, NULL, KJB_EBAD_JSON, "expected long, got a string"},
    {"bad base64", "'bytes'", "'a*b='", NULL, NULL, KJB_EBAD_JSON, "invalid base64"},
    {"fixed size", "{'type':'fixed','name':'F','size':2}", "'AQID'", NULL, NULL, KJB_EBAD_JSON,
     "fixed 'F' needs 2 bytes, got 3"},
    {"unknown symbol", "{'type':'enum','name':'E','symbols':['A']}", "'B'", NULL, NULL,
     KJB_EBAD_JSON, "'B' is not a symbol of enum 'E'"},
    {"bad timestamp", TSM, "'2026-13-01T00:00:00Z'", NULL, NULL, KJB_EBAD_JSON,
     "invalid timestamp (RFC 3339) '2026-13-01T00:00:00Z'"},
    {"timestamp too precise", TSM, "'1970-01-01T00:00:00.0001Z'", NULL, NULL, KJB_EBAD_JSON,
     "invalid timestamp (RFC 3339) '1970-01-01T00:00:00.0001Z'"},
    {"local timestamp with offset", "{'type':'long','logicalType':'local-timestamp-millis'}",
     "'2026-11-21T10:00:00+01:00'", NULL, NULL, KJB_EBAD_JSON,
     "invalid timestamp (RFC 3339) '2026-11-21T10:00:00+01:00'"},
    {"bad date", "{'type':'int','logicalType':'date'}", "'2023-02-29'", NULL, NULL, KJB_EBAD_JSON,
     "invalid date (YYYY-MM-DD) '2023-02-29'"},
    {"bad time", "{'type':'int','logicalType':'time-millis'}", "'24:00:00'", NULL, NULL,
     KJB_EBAD_JSON, "invalid time (HH:MM:SS.fff) '24:00:00'"},
    {"decimal too precise", DEC(10, 2), "'1.234'", NULL, NULL, KJB_EBAD_JSON,
     "decimal '1.234' has more fractional digits than the scale allows (precision 10, scale 2)"},
    {"decimal too many digits", DEC(4, 2), "'123.4'", NULL, NULL, KJB_EBAD_JSON,
     "decimal '123.4' has more digits than the precision allows (precision 4, scale 2)"},
    {"decimal garbage", DEC(4, 2), "'1.2.3'", NULL, NULL, KJB_EBAD_JSON,
     "decimal '1.2.3' not a decimal number (precision 4, scale 2)"},
    {"decimal wrong type", DEC(4, 2), "true", NULL, NULL, KJB_EBAD_JSON,
     "expected a decimal (string or number), got a boolean"},
    {"duration range", "{'type':'fixed','name':'Dur','size':12,'logicalType':'duration'}",
     "{'months':-1}", NULL, NULL, KJB_EBAD_JSON,
     "duration 'months' must be an integer from 0 to 4294967295"},
    {"float from string", "'float'", "'1.5'", NULL, NULL, KJB_EBAD_JSON,
     "expected float, got a string"},
    {"float overflow", "'float'", "1e39", NULL, NULL, KJB_EBAD_JSON,
     "1e+39 is out of range for float"},
};

static void test_errors(void **state) { RUN(errors); }

#define ORDER_HEX                                                                              \
  "54 0e 16 61 40 62 2e 65 78 61 6d 70 6c 65 06 41 6e 6e 04 30 39 02 02 04 58 31 04 00 00 00 " \
  "00 00 00 23 40 00 f6 a5 e3 d8 bf 68 02 04 68 69 02 02 6b 02 76 00"

/* The example schema: the encoding matches the hand-written bytes the
 * decoder tests use, and decoding gives the input back. */
static void test_order_roundtrip(void **state) {
  char schema[8192];
  snprintf(schema, sizeof schema, "%s", kjb_test_fixture("schemas/avro/order_created.avsc"));
  const ecase cases[] = {
      {"order", schema,
       "{'order_id':42,'customer':{'id':7,'email':'a@b.example','name':'Ann'},'amount':'123.45',"
       "'currency':'USD','items':[{'sku':'X1','quantity':2,'price':9.5}],"
       "'created_at':'2026-11-21T10:00:00.123Z','note':'hi','tags':{'k':'v'}}",
       ORDER_HEX, NULL, 0, NULL},
      {"order with defaults and numbers", schema,
       "{'order_id':1,'customer':{'id':2,'email':'e','name':'n'},'amount':0.5,'currency':'EUR',"
       "'items':[],'created_at':0}",
       "02 04 02 65 02 6e 02 32 00 00 00 00 00",
       "{'order_id':1,'customer':{'id':2,'email':'e','name':'n'},'amount':'0.50','currency':'EUR',"
       "'items':[],'created_at':'1970-01-01T00:00:00.000Z','note':null,'tags':{}}",
       0, NULL},
      {"order missing customer email", schema,
       "{'order_id':1,'customer':{'id':2,'name':'n'},'amount':0.5,'currency':'EUR','items':[],"
       "'created_at':0}",
       NULL, NULL, KJB_EBAD_JSON, "field 'customer.email': missing"},
  };
  RUN(cases);
}

/* Encoding appends to the buffer and leaves earlier content alone. */
static void test_appends(void **state) {
  kjb_err err = {0};
  kjb_schema *s = kjb_schema_parse("\"long\"", 6, &err);
  kjb_buf out;
  kjb_buf_init(&out);
  kjb_buf_puts(&out, "hdr");
  json_t *j = json_integer(1);
  assert_int_equal(kjb_avro_encode(s, j, &out, &err), 0);
  assert_int_equal(kjb_avro_encode(s, j, &out, &err), 0);
  assert_int_equal(out.len, 5);
  assert_memory_equal(out.data, "hdr\x02\x02", 5);
  json_decref(j);
  kjb_buf_close(&out);
  kjb_schema_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basics),          cmocka_unit_test(test_logical),
      cmocka_unit_test(test_unions),          cmocka_unit_test(test_errors),
      cmocka_unit_test(test_order_roundtrip), cmocka_unit_test(test_appends),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
