/* Schema compilation: Parsing Canonical Form and CRC-64-AVRO fingerprints
 * (expected values cross-checked with fastavro), names and namespaces,
 * logical types, field defaults, invalid schemas and path checks. In the
 * tables, single quotes stand for double quotes. */
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

static kjb_schema *parse_q(const char *json) {
  const char *j = kjb_test_quote(json, 0);
  kjb_err err = {0};
  kjb_schema *s = kjb_schema_parse(j, strlen(j), &err);
  if (!s)
    fail_msg("schema does not parse: %s\n  %s", err.msg, j);
  return s;
}

static const char *source_path(const char *rel, char *buf, size_t cap) {
  const char *dir = getenv("KJB_SOURCE_DIR");
  snprintf(buf, cap, "%s/%s", dir ? dir : ".", rel);
  return buf;
}

/* Fingerprints are given as fastavro prints them: the 8 bytes
 * little-endian, as they appear in a single-object header. */
static void fp_hex(uint64_t fp, char out[17]) {
  for (int i = 0; i < 8; i++)
    snprintf(out + 2 * i, 3, "%02x", (unsigned)(fp >> (8 * i)) & 0xff);
}

static const struct {
  const char *schema, *canonical, *fp;
} canon[] = {
    {"'int'", "'int'", "8f5c393f1ad57572"},
    {"'null'", "'null'", "8a8f25cce724dd63"},
    {"'string'", "'string'", "c70345637248018f"},
    {"{ 'type' : 'int' }", "'int'", "8f5c393f1ad57572"},
    {"{'type':'long','logicalType':'timestamp-millis'}", "'long'", "b71df49344e154d0"},
    {"{'type':'fixed','name':'F','namespace':'x.y','size':16,'doc':'d'}",
     "{'name':'x.y.F','type':'fixed','size':16}", "8280e8fb8e1af931"},
    {"['null','string',{'type':'array','items':'int'}]",
     "['null','string',{'type':'array','items':'int'}]", "ab8dd69bb97286b3"},
    {"{'type':'map','values':{'type':'enum','name':'E','symbols':['A','B'],'default':'A'}}",
     "{'type':'map','values':{'name':'E','type':'enum','symbols':['A','B']}}", "0c03c19d8d925d43"},
    {"{'type':'record','name':'LL','namespace':'a.b','aliases':['old'],'fields':[{'name':'v',"
     "'type':'int','doc':'x','default':1},{'name':'next','type':['null','LL'],'default':null}]}",
     "{'name':'a.b.LL','type':'record','fields':[{'name':'v','type':'int'},{'name':'next','type':"
     "['null','a.b.LL']}]}",
     "e0d1cb433618cdc0"},
    {"{'type':'record','name':'R','namespace':'a','fields':[{'name':'f','type':{'type':'enum',"
     "'name':'E','namespace':'','symbols':['X']}},{'name':'g','type':{'type':'record','name':"
     "'b.S','fields':[{'name':'h','type':{'type':'fixed','name':'F','size':1}}, {'name':'h2',"
     "'type':'F'}]}},{'name':'i','type':'b.F'},{'name':'k','type':{'type':'map','values':'b.S'}}]}",
     "{'name':'a.R','type':'record','fields':[{'name':'f','type':{'name':'E','type':'enum',"
     "'symbols':['X']}},{'name':'g','type':{'name':'b.S','type':'record','fields':[{'name':'h',"
     "'type':{'name':'b.F','type':'fixed','size':1}},{'name':'h2','type':'b.F'}]}},{'name':'i',"
     "'type':'b.F'},{'name':'k','type':{'type':'map','values':'b.S'}}]}",
     "7e87804011e4d043"},
    {"{'type' : 'record', 'name' : 'x.y.R', 'namespace':'ignored', 'doc':'d\\u00e9', 'fields' : "
     "[ {'name':'s','type':{'type':'string','logicalType':'uuid'},'default':'x','order':"
     "'descending'}, {'name':'r','type':['null','R']}, {'name':'t','type':{'type':'array',"
     "'items':{'type':'record','name':'T','aliases':['q.Old'],'fields':[{'name':'u','type':"
     "'x.y.R'}]}}}]}",
     "{'name':'x.y.R','type':'record','fields':[{'name':'s','type':'string'},{'name':'r','type':"
     "['null','x.y.R']},{'name':'t','type':{'type':'array','items':{'name':'x.y.T','type':"
     "'record','fields':[{'name':'u','type':'x.y.R'}]}}}]}",
     "87801d2b76424ee9"},
};

static void test_canonical_form(void **state) {
  int failures = 0;
  for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
    kjb_schema *s = parse_q(canon[i].schema);
    const char *want = kjb_test_quote(canon[i].canonical, 1);
    char fp[17];
    fp_hex(kjb_schema_fingerprint(s), fp);
    if (strcmp(kjb_schema_canonical(s), want) != 0) {
      printf("[%zu] canonical form\n  expected %s\n  got      %s\n", i, want,
             kjb_schema_canonical(s));
      failures++;
    }
    if (strcmp(fp, canon[i].fp) != 0) {
      printf("[%zu] fingerprint: expected %s, got %s\n", i, canon[i].fp, fp);
      failures++;
    }
    kjb_schema_free(s);
  }
  if (failures)
    fail_msg("%d mismatches", failures);
}

static void test_fingerprint(void **state) {
  /* The empty input leaves the initial value; "int" is the spec's
   * example, 0x7275d51a3f395c8f (bytes 8f 5c 39 3f 1a d5 75 72). */
  assert_true(kjb_crc64_avro("", 0) == UINT64_C(0xc15d213aa4d7a795));
  assert_true(kjb_crc64_avro("\"int\"", 5) == UINT64_C(0x7275d51a3f395c8f));
  kjb_schema *s = parse_q("'int'");
  assert_true(kjb_schema_fingerprint(s) == UINT64_C(0x7275d51a3f395c8f));
  kjb_schema_free(s);

  char path[1024];
  kjb_err err = {0};
  s = kjb_schema_load(source_path("schemas/avro/order_created.avsc", path, sizeof path), &err);
  assert_non_null(s);
  char fp[17];
  fp_hex(kjb_schema_fingerprint(s), fp);
  assert_string_equal(fp, "ec1d87e9a0bcef14");
  kjb_schema_free(s);
  s = kjb_schema_load(source_path("schemas/avro/order_created_v2.avsc", path, sizeof path), &err);
  assert_non_null(s);
  fp_hex(kjb_schema_fingerprint(s), fp);
  assert_string_equal(fp, "67c305a624bfa066");
  kjb_schema_free(s);
}

static const struct {
  const char *schema, *msg;
} invalid[] = {
    {"'foo'", "unknown type 'foo'"},
    {"{'type':'record','name':'R','namespace':'a','fields':[{'name':'b','type':{'type':'record',"
     "'name':'S','namespace':'','fields':[]}},{'name':'c','type':'S'}]}",
     "Unknown Avro 'type': S"},
    {"1", "a type must be a string, an array or an object"},
    {"{'type':", "invalid json at line 1 column 8: unexpected token near end of file"},
    {"{'type':'record','name':'1R','fields':[]}", "Invalid Avro identifier"},
    {"{'type':'record','name':'R','fields':[{'name':'x','type':{'type':'enum','name':'E','symbols':['A']}},"
     "{'name':'y','type':{'type':'enum','name':'E','symbols':['A']}}]}",
     "record 'R' field 'y': type 'E' is defined twice"},
    {"{'type':'record','name':'R','fields':[{'name':'r','type':{'type':'record','name':'R','fields':[]}}]}",
     "record 'R' field 'r': type 'R' is defined twice"},
    {"{'type':'record','name':'R'}", "record 'R': fields must be an array"},
    {"{'type':'fixed','name':'F'}", "fixed 'F': size must be a non-negative integer"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':'int'},{'name':'a','type':'int'}]}",
     "record 'R': field 'a' is defined twice"},
    {"['int','int']", "union contains 'int' twice"},
    {"['null',['int']]", "a union may not directly contain a union"},
    {"{'type':'enum','name':'E','symbols':['A','A']}", "enum 'E': symbol 'A' appears twice"},
    {"{'type':'enum','name':'E','symbols':['A'],'default':'B'}",
     "enum 'E': default is not one of its symbols"},
    {"{'type':'fixed','name':'F','size':-1}", "fixed 'F': size must be a non-negative integer"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':'int','default':'x'}]}",
     "record 'R' field 'a': invalid default: expected int, got a string"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':'int','default':3000000000}]}",
     "record 'R' field 'a': invalid default: 3000000000 is out of range for int"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':['null','string'],'default':'x'}]}",
     "record 'R' field 'a': invalid default: union default must match its first branch 'null': "
     "expected null, got a string"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':{'type':'fixed','name':'F','size':2},"
     "'default':'abc'}]}",
     "record 'R' field 'a': invalid default: fixed 'F' needs 2 bytes, default has 3"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':'bytes','default':'\\u0100'}]}",
     "record 'R' field 'a': invalid default: bytes default has a character above U+00FF"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':{'type':'record','name':'S',"
     "'fields':[{'name':'x','type':'int'}]},'default':{}}]}",
     "record 'R' field 'a': invalid default: field 'x' missing"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':{'type':'array','items':'int'},"
     "'default':[1,'x']}]}",
     "record 'R' field 'a': invalid default: item 1: expected int, got a string"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':{'type':'int','logicalType':'date'},"
     "'default':3000000}]}",
     "record 'R' field 'a': invalid default: date out of range"},
    {"{'type':'record','name':'R','fields':[{'name':'a','type':{'type':'enum','name':'E',"
     "'symbols':['A']},'default':'B'}]}",
     "record 'R' field 'a': invalid default: not a symbol of enum 'E'"},
};

static void test_invalid(void **state) {
  int failures = 0;
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    const char *j = kjb_test_quote(invalid[i].schema, 0), *want = kjb_test_quote(invalid[i].msg, 1);
    kjb_err err = {0};
    kjb_schema *s = kjb_schema_parse(j, strlen(j), &err);
    if (s) {
      printf("[%zu] expected an error: %s\n  schema %s\n", i, want, j);
      kjb_schema_free(s);
      failures++;
    } else if (err.code != KJB_ESCHEMA || strcmp(err.msg, want) != 0) {
      printf("[%zu] expected SCHEMA: %s\n        got %s: %s\n", i, want, kjb_err_name(err.code),
             err.msg);
      failures++;
    }
  }
  if (failures)
    fail_msg("%d mismatches", failures);
}

static void test_load_errors(void **state) {
  kjb_err err = {0};
  assert_null(kjb_schema_load("/nonexistent/x.avsc", &err));
  assert_int_equal(err.code, KJB_ESCHEMA);
  assert_string_equal(err.msg, "/nonexistent/x.avsc: No such file or directory");
  char path[] = "/tmp/kjb_test_schema_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs("{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"A\"]}", f);
  fclose(f);
  assert_null(kjb_schema_load(path, &err));
  char want[256];
  snprintf(want, sizeof want, "%s: enum \"E\": symbol \"A\" appears twice", path);
  assert_string_equal(err.msg, want);
  remove(path);
}

static const struct {
  const char *schema;
  kjb_logical logical;
  int precision, scale;
} logicals[] = {
    {"{'type':'bytes','logicalType':'decimal','precision':12,'scale':2}", KJB_L_DECIMAL, 12, 2},
    {"{'type':'bytes','logicalType':'decimal','precision':5}", KJB_L_DECIMAL, 5, 0},
    {"{'type':'fixed','name':'D','size':8,'logicalType':'decimal','precision':18,'scale':3}",
     KJB_L_DECIMAL, 18, 3},
    {"{'type':'fixed','name':'D','size':8,'logicalType':'decimal','precision':19}", KJB_L_NONE, 0,
     0},
    {"{'type':'bytes','logicalType':'decimal','precision':0}", KJB_L_NONE, 0, 0},
    {"{'type':'bytes','logicalType':'decimal','precision':2,'scale':3}", KJB_L_NONE, 0, 0},
    {"{'type':'bytes','logicalType':'decimal','precision':2,'scale':-1}", KJB_L_NONE, 0, 0},
    {"{'type':'bytes','logicalType':'decimal'}", KJB_L_NONE, 0, 0},
    {"{'type':'string','logicalType':'decimal','precision':4}", KJB_L_NONE, 0, 0},
    {"{'type':'string','logicalType':'uuid'}", KJB_L_UUID, 0, 0},
    {"{'type':'bytes','logicalType':'uuid'}", KJB_L_NONE, 0, 0},
    {"{'type':'int','logicalType':'date'}", KJB_L_DATE, 0, 0},
    {"{'type':'long','logicalType':'date'}", KJB_L_NONE, 0, 0},
    {"{'type':'int','logicalType':'time-millis'}", KJB_L_TIME_MILLIS, 0, 0},
    {"{'type':'long','logicalType':'time-micros'}", KJB_L_TIME_MICROS, 0, 0},
    {"{'type':'int','logicalType':'time-micros'}", KJB_L_NONE, 0, 0},
    {"{'type':'long','logicalType':'timestamp-millis'}", KJB_L_TIMESTAMP_MILLIS, 0, 0},
    {"{'type':'long','logicalType':'timestamp-micros'}", KJB_L_TIMESTAMP_MICROS, 0, 0},
    {"{'type':'long','logicalType':'local-timestamp-millis'}", KJB_L_LOCAL_TIMESTAMP_MILLIS, 0, 0},
    {"{'type':'long','logicalType':'local-timestamp-micros'}", KJB_L_LOCAL_TIMESTAMP_MICROS, 0, 0},
    {"{'type':'int','logicalType':'timestamp-millis'}", KJB_L_NONE, 0, 0},
    {"{'type':'fixed','name':'Dur','size':12,'logicalType':'duration'}", KJB_L_DURATION, 0, 0},
    {"{'type':'fixed','name':'Dur','size':16,'logicalType':'duration'}", KJB_L_NONE, 0, 0},
    {"{'type':'long','logicalType':'no-such-type'}", KJB_L_NONE, 0, 0},
    {"{'type':'long','logicalType':42}", KJB_L_NONE, 0, 0},
};

static void test_logical_types(void **state) {
  for (size_t i = 0; i < sizeof logicals / sizeof logicals[0]; i++) {
    kjb_schema *s = parse_q(logicals[i].schema);
    const kjb_snode *n = kjb_schema_root(s);
    if (n->logical != logicals[i].logical || n->precision != logicals[i].precision ||
        n->scale != logicals[i].scale)
      fail_msg("[%zu] %s: expected logical %d (%d,%d), got %d (%d,%d)", i,
               kjb_test_quote(logicals[i].schema, 0), logicals[i].logical, logicals[i].precision,
               logicals[i].scale, n->logical, n->precision, n->scale);
    kjb_schema_free(s);
  }
  /* A logicalType on the field rather than on its type is not one. */
  kjb_schema *s = parse_q("{'type':'record','name':'R','fields':[{'name':'t','type':'long',"
                          "'logicalType':'timestamp-millis'}]}");
  assert_int_equal(kjb_schema_root(s)->fields[0].type->logical, KJB_L_NONE);
  kjb_schema_free(s);
}

static void test_names(void **state) {
  kjb_schema *s = parse_q(
      "{'type':'record','name':'Outer','namespace':'a.b','aliases':['Old','x.Older'],'fields':["
      "{'name':'in','aliases':['inner','i'],'type':{'type':'record','name':'Inner','fields':[]}},"
      "{'name':'dotted','type':{'type':'enum','name':'c.d.E','symbols':['P']}},"
      "{'name':'nested_ns','type':{'type':'record','name':'N','namespace':'z','fields':["
      "{'name':'f','type':{'type':'fixed','name':'F','size':2}}]}},"
      "{'name':'ref_full','type':'z.F'},{'name':'ref_short','type':'Inner'},"
      "{'name':'null_ns','type':{'type':'fixed','name':'G','namespace':'','size':1}},"
      "{'name':'self','type':['null','Outer']}]}");
  const kjb_snode *r = kjb_schema_root(s);
  assert_string_equal(r->fullname, "a.b.Outer");
  assert_int_equal(r->naliases, 2);
  assert_string_equal(r->aliases[0], "a.b.Old");
  assert_string_equal(r->aliases[1], "x.Older");
  assert_int_equal(r->nfields, 7);
  assert_string_equal(r->fields[0].type->fullname, "a.b.Inner");
  assert_int_equal(r->fields[0].naliases, 2);
  assert_string_equal(r->fields[0].aliases[1], "i");
  assert_string_equal(r->fields[1].type->fullname, "c.d.E");
  assert_int_equal(r->fields[1].type->enum_default, -1);
  const kjb_snode *n = r->fields[2].type;
  assert_string_equal(n->fullname, "z.N");
  assert_string_equal(n->fields[0].type->fullname, "z.F");
  assert_int_equal(n->fields[0].type->fixed_size, 2);
  assert_ptr_equal(r->fields[3].type, n->fields[0].type);
  assert_ptr_equal(r->fields[4].type, r->fields[0].type);
  assert_string_equal(r->fields[5].type->fullname, "G");
  /* Recursion is a pointer back to the record itself. */
  assert_int_equal(r->fields[6].type->type, KJB_S_UNION);
  assert_ptr_equal(r->fields[6].type->branches[1], r);
  assert_null(r->fields[6].default_value);
  kjb_schema_free(s);
}

static const struct {
  const char *type, *def, *expect;
} defaults[] = {
    {"'null'", "null", "null"},
    {"'boolean'", "true", "true"},
    {"'int'", "-7", "-7"},
    {"'long'", "9007199254740993", "9007199254740993"},
    {"'float'", "0.1", "0.1"},
    {"'double'", "1", "1.0"},
    {"'double'", "'NaN'", "'NaN'"},
    {"'string'", "'h\\u00e9'", "'hé'"},
    {"'bytes'", "'\\u0001\\u00ff'", "'Af8='"},
    {"{'type':'fixed','name':'F','size':2}", "'ab'", "'YWI='"},
    {"{'type':'enum','name':'E','symbols':['A','B']}", "'B'", "'B'"},
    {"{'type':'array','items':'int'}", "[1,2]", "[1,2]"},
    {"{'type':'map','values':'int'}", "{'a':1}", "{'a':1}"},
    {"{'type':'map','values':'string'}", "{}", "{}"},
    {"['null','string']", "null", "null"},
    {"['string','null']", "'x'", "'x'"},
    {"{'type':'record','name':'P','fields':[{'name':'x','type':'int'},{'name':'y','type':'int',"
     "'default':2}]}",
     "{'x':1}", "{'x':1,'y':2}"},
    {"{'type':'long','logicalType':'timestamp-millis'}", "0", "'1970-01-01T00:00:00.000Z'"},
    {"{'type':'long','logicalType':'timestamp-micros'}", "-1", "'1969-12-31T23:59:59.999999Z'"},
    {"{'type':'int','logicalType':'date'}", "19000", "'2022-01-08'"},
    {"{'type':'int','logicalType':'time-millis'}", "3723004", "'01:02:03.004'"},
    {"{'type':'bytes','logicalType':'decimal','precision':6,'scale':2}", "'\\u00ff\\u0006'",
     "'-2.50'"},
    {"{'type':'fixed','name':'Dur','size':12,'logicalType':'duration'}",
     "'\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\u0008\\u0009\\u000a\\u000b\\u000c'",
     "{'months':67305985,'days':134678021,'millis':202050057}"},
    {"{'type':'string','logicalType':'uuid'}", "'00000000-0000-0000-0000-000000000000'",
     "'00000000-0000-0000-0000-000000000000'"},
};

static void test_defaults(void **state) {
  int failures = 0;
  for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
    char json[2048];
    snprintf(json, sizeof json,
             "{'type':'record','name':'R','fields':[{'name':'f','type':%s,"
             "'default':%s}]}",
             defaults[i].type, defaults[i].def);
    kjb_schema *s = parse_q(json);
    const kjb_value *v = kjb_schema_root(s)->fields[0].default_value;
    assert_non_null(v);
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_value_to_json(v, &b);
    const char *want = kjb_test_quote(defaults[i].expect, 1);
    if (strcmp(b.data, want) != 0) {
      printf("[%zu] default %s of %s\n  expected %s\n  got      %s\n", i, defaults[i].def,
             defaults[i].type, want, b.data);
      failures++;
    }
    kjb_buf_close(&b);
    kjb_schema_free(s);
  }
  if (failures)
    fail_msg("%d mismatches", failures);
}

static void test_example_schema(void **state) {
  char path[1024];
  kjb_err err = {0};
  kjb_schema *s =
      kjb_schema_load(source_path("schemas/avro/order_created.avsc", path, sizeof path), &err);
  if (!s)
    fail_msg("%s", err.msg);
  const kjb_snode *r = kjb_schema_root(s);
  assert_string_equal(r->fullname, "kjb.example.OrderCreated");
  assert_int_equal(r->nfields, 8);
  assert_string_equal(r->fields[1].type->fullname, "kjb.example.Customer");
  assert_int_equal(r->fields[2].type->logical, KJB_L_DECIMAL);
  assert_int_equal(r->fields[2].type->precision, 12);
  assert_int_equal(r->fields[2].type->scale, 2);
  assert_string_equal(r->fields[3].type->fullname, "kjb.example.Currency");
  assert_string_equal(r->fields[4].type->items->fullname, "kjb.example.Item");
  assert_int_equal(r->fields[5].type->logical, KJB_L_TIMESTAMP_MILLIS);
  assert_int_equal(r->fields[6].default_value->type, KJB_V_NULL);
  assert_int_equal(r->fields[7].default_value->type, KJB_V_OBJECT);
  assert_int_equal(r->fields[7].default_value->u.obj.n, 0);
  assert_non_null(kjb_schema_avro(s));
  kjb_schema_free(s);
}

static const struct {
  const char *path;
  kjb_errcode code;
  const char *msg;
} paths[] = {
    {"order_id", 0, NULL},
    {"customer", 0, NULL},
    {"customer.email", 0, NULL},
    {"note", 0, NULL},
    {"tags.anything", 0, NULL},
    {"maybe.x", 0, NULL},
    {"customer.phone", KJB_EMISSING_FIELD, "field 'customer.phone': no such field in the schema"},
    {"custom", KJB_EMISSING_FIELD, "field 'custom': no such field in the schema"},
    {"order_id.x", KJB_EMISSING_FIELD, "field 'order_id.x': 'order_id' is not a record"},
    {"maybe.y", KJB_EMISSING_FIELD, "field 'maybe.y': no such field in the schema"},
    {"customer.email.x", KJB_EMISSING_FIELD,
     "field 'customer.email.x': 'customer.email' is not a record"},
    {"", KJB_EMISSING_FIELD, "field '': no such field in the schema"},
};

static void test_check_path(void **state) {
  kjb_schema *s = parse_q(
      "{'type':'record','name':'O','fields':[{'name':'order_id','type':'long'},"
      "{'name':'customer','type':{'type':'record','name':'C','fields':[{'name':'email','type':"
      "'string'}]}},{'name':'note','type':['null','string']},{'name':'tags','type':{'type':'map',"
      "'values':'string'}},{'name':'maybe','type':['null',{'type':'record','name':'M','fields':["
      "{'name':'x','type':'int'}]}]}]}");
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    kjb_err err = {0};
    int rc = kjb_schema_check_path(s, paths[i].path, &err);
    if (paths[i].code == 0 && rc != 0)
      fail_msg("path \"%s\": unexpected error %s", paths[i].path, err.msg);
    if (paths[i].code != 0) {
      assert_int_equal(rc, -(int)paths[i].code);
      assert_string_equal(err.msg, kjb_test_quote(paths[i].msg, 1));
    }
  }
  kjb_schema_free(s);
  kjb_err err = {0};
  s = parse_q("'int'");
  assert_int_equal(kjb_schema_check_path(s, "a", &err), -KJB_EMISSING_FIELD);
  assert_string_equal(err.msg, "field \"a\": the schema is not a record");
  kjb_schema_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_canonical_form), cmocka_unit_test(test_fingerprint),
      cmocka_unit_test(test_invalid),        cmocka_unit_test(test_load_errors),
      cmocka_unit_test(test_logical_types),  cmocka_unit_test(test_names),
      cmocka_unit_test(test_defaults),       cmocka_unit_test(test_example_schema),
      cmocka_unit_test(test_check_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
