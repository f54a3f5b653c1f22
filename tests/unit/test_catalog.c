/* Tests for catalog.c and registry.c: record decoding for the three
 * framings (table-driven: topic, input bytes, expected natural JSON or
 * exact error), framing headers, a schema registry served in-process by
 * libmicrohttpd, configuration errors only the catalog can find, and the
 * check-config listing. In the tables single quotes stand for double
 * quotes, "$TMP" for the test's temporary directory, and in hex input
 * "FP1" / "FP2" for the 8-byte little-endian fingerprint of
 * order_created.avsc / order_created_v2.avsc. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>

#include "catalog.h"
#include "config.h"
#include "err.h"
#include "schema.h"
#include "util.h"
#include "value.h"

static char tmp_root[] = "/tmp/kjb-test-catalog-XXXXXX";
static char *avsc_v1, *avsc_v2; /* the repository's schema texts */
static uint64_t fp_v1, fp_v2;

/* ---- Helpers ----------------------------------------------------------- */

static char *read_all(const char *path) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_err err;
  if (kjb_read_file(path, 1 << 20, &b, &err) < 0)
    fail_msg("cannot read %s: %s", path, err.msg);
  return b.data;
}

/* Creates path as a file of size bytes, all zero. */
static int truncate_new(const char *path, off_t size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    return -1;
  int rc = ftruncate(fd, size);
  close(fd);
  return rc;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0)
    fail_msg("cannot write %s", path);
}

/* Replaces every from with to in s; returns a malloc'd string. */
static char *replace(const char *s, const char *from, const char *to) {
  kjb_buf b;
  kjb_buf_init(&b);
  size_t n = strlen(from);
  const char *hit;
  while ((hit = strstr(s, from))) {
    kjb_buf_append(&b, s, (size_t)(hit - s));
    kjb_buf_puts(&b, to);
    s = hit + n;
  }
  kjb_buf_puts(&b, s);
  return b.data;
}

/* Single quotes to double quotes ("\\'" for a real one); malloc'd. */
static char *unquote(const char *s) {
  kjb_buf b;
  kjb_buf_init(&b);
  for (; *s; s++) {
    if (s[0] == '\\' && s[1] == '\'')
      kjb_buf_putc(&b, *++s);
    else
      kjb_buf_putc(&b, *s == '\'' ? '"' : *s);
  }
  return b.data;
}

/* unquote(), and "$TMP" to the temp dir; malloc'd. */
static char *expand(const char *s) {
  char *dq = unquote(s);
  char *out = replace(dq, "$TMP", tmp_root);
  free(dq);
  return out;
}

/* Appends the bytes of a hex string ("00 c3 FP1 ..."). */
static void unhex(const char *s, kjb_buf *out) {
  while (*s) {
    if (*s == ' ') {
      s++;
      continue;
    }
    if (s[0] == 'F' && s[1] == 'P' && (s[2] == '1' || s[2] == '2')) {
      uint64_t fp = s[2] == '1' ? fp_v1 : fp_v2;
      for (int i = 0; i < 8; i++)
        kjb_buf_putc(out, (char)(uint8_t)(fp >> (8 * i)));
      s += 3;
      continue;
    }
    unsigned v;
    if (sscanf(s, "%2x", &v) != 1)
      fail_msg("bad hex in test: %s", s);
    kjb_buf_putc(out, (char)(uint8_t)v);
    s += 2;
  }
}

static void hexdump(const kjb_buf *b, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (size_t i = 0; i < b->len && n + 4 < cap; i++)
    n += (size_t)snprintf(out + n, cap - n, "%s%02x", i ? " " : "", (uint8_t)b->data[i]);
}

/* Compares an actual error with the expected one, the temp dir in the
 * actual message shown as "$TMP". Prints both sides and returns 1 on
 * mismatch. */
static int check_err(const char *name, const kjb_err *err, kjb_errcode code, const char *msg) {
  char *want = unquote(msg);
  char *got = replace(err->msg, tmp_root, "$TMP");
  int bad = err->code != code || strcmp(got, want) != 0;
  if (bad)
    printf("[%s] expected error %s: %s\n  got error      %s: %s\n", name, kjb_err_name(code), want,
           kjb_err_name(err->code), got);
  free(want);
  free(got);
  return bad;
}

/* Loads config text (lines after the two dummy sections below) from
 * $TMP/c.cfg and builds its catalog; fails the test when either fails. */
#define BASE                           \
  "kafka = { brokers = 'b:9092'; };\n" \
  "postgres = { conninfo = 'dbname=kjb'; };\n"

static kjb_catalog *open_catalog(const char *text, kjb_config *cfg) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/c.cfg", tmp_root);
  char *t = expand(text);
  write_file(path, t);
  free(t);
  kjb_err err = {0};
  if (kjb_config_load(path, cfg, &err) < 0)
    fail_msg("config does not load: %s", err.msg);
  kjb_catalog *c = kjb_catalog_new(cfg, &err);
  if (!c) {
    kjb_config_close(cfg);
    fail_msg("catalog does not build: %s", err.msg);
  }
  return c;
}

static const kjb_topic_cfg *topic(const kjb_config *cfg, const char *name) {
  const kjb_topic_cfg *t = kjb_config_topic(cfg, name);
  if (!t)
    fail_msg("no topic %s in the test config", name);
  return t;
}

/* ---- Records ------------------------------------------------------------
 * order_created.avsc, written by hand: order_id 42; customer {7,
 * "a@b.example", "Al"}; amount 19.99 (decimal bytes 07 cf); currency USD
 * (index 1); items [{"X1", 2, 2.5}]; created_at 2026-11-21T10:00:00.123Z;
 * note "hi" (union branch 1); tags {"k": "v"}. Body offsets: customer.email
 * 3..13, items 21..34, created_at 35..40, 51 bytes in all. v2 adds
 * channel "app". */
#define V1_BODY                                                              \
  "54 0e 16 61 40 62 2e 65 78 61 6d 70 6c 65 04 41 6c 04 07 cf 02 "          \
  "02 04 58 31 04 00 00 00 00 00 00 04 40 00 f6 a5 e3 d8 bf 68 02 04 68 69 " \
  "02 02 6b 02 76 00"
#define V2_BODY V1_BODY " 06 61 70 70"
/* Cut inside the created_at varint (body byte 35). */
#define V1_CUT                                                      \
  "54 0e 16 61 40 62 2e 65 78 61 6d 70 6c 65 04 41 6c 04 07 cf 02 " \
  "02 04 58 31 04 00 00 00 00 00 00 04 40 00 f6 a5"
/* items claims one item (at least 10 bytes) with 7 bytes left. */
#define V1_SHORT_ITEMS \
  "54 0e 16 61 40 62 2e 65 78 61 6d 70 6c 65 04 41 6c 04 07 cf 02 02 04 58 31 04 00 00 00"
/* customer.email with 0xff at body byte 4. */
#define V1_BAD_UTF8                                                          \
  "54 0e 16 61 ff 62 2e 65 78 61 6d 70 6c 65 04 41 6c 04 07 cf 02 "          \
  "02 04 58 31 04 00 00 00 00 00 00 04 40 00 f6 a5 e3 d8 bf 68 02 04 68 69 " \
  "02 02 6b 02 76 00"
/* customer.email claims 63 bytes when none are left. */
#define V1_LONG_EMAIL "54 0e 7e"

#define FIELDS                                                           \
  "'order_id':42,'customer':{'id':7,'email':'a@b.example','name':'Al'}," \
  "'amount':'19.99','currency':'USD','items':[{'sku':'X1','quantity':2," \
  "'price':2.5}],'created_at':'2026-11-21T10:00:00.123Z','note':'hi',"   \
  "'tags':{'k':'v'}"
#define V1_JSON "{" FIELDS "}"
#define V1_AS_V2_JSON "{" FIELDS ",'channel':'web'}"
#define V2_JSON "{" FIELDS ",'channel':'app'}"

#define CONFLUENT(id) "00 00 00 00 " id " "
#define SINGLE(fp) "c3 01 " fp " "

/* Writer schema 3 in the local config: an OrderCreated without the
 * fields the reader needs and has no defaults for. */
#define INCOMPATIBLE_AVSC                                             \
  "{'type':'record','name':'OrderCreated','namespace':'kjb.example'," \
  "'fields':[{'name':'order_id','type':'long'}]}"

#define LOCAL_CFG                                                                                   \
  BASE                                                                                              \
      "schemas = { dir = '$TMP/schemas'; ids = ( { id = 1; file = "                                 \
      "'order_created.avsc'; }, { id = 2; file = 'order_created_v2.avsc'; }, "                      \
      "{ id = 3; file = 'incompatible.avsc'; } ); };\n"                                             \
      "topics = (\n"                                                                                \
      "  { topic = 'orders'; schema = 'order_created.avsc'; jobs = ( { kind = 'k'; } ); },\n"       \
      "  { topic = 'orders_v2'; schema = 'order_created_v2.avsc'; jobs = ( { kind = 'k'; } ); },\n" \
      "  { topic = 'so'; format = 'single-object'; schema = 'order_created.avsc'; "                 \
      "jobs = ( { kind = 'k'; } ); },\n"                                                            \
      "  { topic = 'so_v2'; format = 'single-object'; schema = 'order_created_v2.avsc'; "           \
      "jobs = ( { kind = 'k'; } ); },\n"                                                            \
      "  { topic = 'raw'; format = 'raw'; schema = 'order_created.avsc'; "                          \
      "jobs = ( { kind = 'k'; } ); }\n"                                                             \
      ");\n"

/* ---- Decoding ----------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *topic;
  const char *hex;
  const char *expect; /* natural JSON; NULL when an error is expected */
  kjb_errcode code;
  const char *msg;
  /* Registry cases: the request count for the case's schema id after all
   * decodes of it (-1: not checked). Every error: whether it is transient. */
  int requests;
  int transient;
} dcase;

static atomic_int hits[128]; /* registry requests per schema id */

static int decode_once(kjb_catalog *cat, const kjb_config *cfg, const dcase *c) {
  kjb_buf in, out;
  kjb_buf_init(&in);
  kjb_buf_init(&out);
  unhex(c->hex, &in);
  /* Decode from an exact-size heap copy so ASan sees any overread. */
  uint8_t *heap = kjb_xmalloc(in.len);
  memcpy(heap, in.data, in.len);
  kjb_arena *a = kjb_arena_new(0);
  kjb_value *v = NULL;
  kjb_err err = {0};
  int rc = kjb_decode_record(cat, topic(cfg, c->topic), heap, in.len, a, &v, &err);
  int bad = 0;
  if (rc == 0)
    kjb_value_to_json(v, &out);
  if (c->expect) {
    char *want = expand(c->expect);
    if (rc != 0) {
      printf("[%s] expected %s\n  got error %s: %s\n", c->name, want, kjb_err_name(err.code),
             err.msg);
      bad = 1;
    } else if (strcmp(out.data, want) != 0) {
      printf("[%s] expected %s\n  got      %s\n", c->name, want, out.data);
      bad = 1;
    }
    free(want);
  } else if (rc == 0) {
    printf("[%s] expected error %s: %s\n  got %s\n", c->name, kjb_err_name(c->code), c->msg,
           out.data);
    bad = 1;
  } else {
    bad = check_err(c->name, &err, c->code, c->msg);
    if (rc != -(int)err.code) {
      printf("[%s] returned %d with error code %s\n", c->name, rc, kjb_err_name(err.code));
      bad = 1;
    }
    if (kjb_err_is_transient(&err) != c->transient) {
      printf("[%s] expected transient %d, got %d\n", c->name, c->transient,
             kjb_err_is_transient(&err));
      bad = 1;
    }
  }
  free(heap);
  kjb_arena_free(a);
  kjb_buf_close(&in);
  kjb_buf_close(&out);
  return bad;
}

/* Runs each case `times` times against one catalog; fails after all ran. */
static void run_decode(const char *text, const dcase *cases, size_t n, int times) {
  kjb_config cfg;
  kjb_catalog *cat = open_catalog(text, &cfg);
  int failures = 0;
  for (size_t i = 0; i < n; i++) {
    const dcase *c = &cases[i];
    int bad = 0;
    for (int k = 0; k < times && !bad; k++)
      bad = decode_once(cat, &cfg, c);
    if (!bad && c->requests >= 0) {
      kjb_buf in;
      kjb_buf_init(&in);
      unhex(c->hex, &in);
      int id = (int)((uint32_t)(uint8_t)in.data[1] << 24 | (uint32_t)(uint8_t)in.data[2] << 16 |
                     (uint32_t)(uint8_t)in.data[3] << 8 | (uint8_t)in.data[4]);
      kjb_buf_close(&in);
      if (id < 0 || id >= 128 || atomic_load(&hits[id]) != c->requests) {
        printf("[%s] expected %d registry requests for id %d, got %d\n", c->name, c->requests, id,
               id >= 0 && id < 128 ? atomic_load(&hits[id]) : -1);
        bad = 1;
      }
    }
    failures += bad;
  }
  kjb_catalog_free(cat);
  kjb_config_close(&cfg);
  if (failures)
    fail_msg("%d of %zu cases failed", failures, n);
}

#define RUN(text, table, times) run_decode(text, table, sizeof table / sizeof table[0], times)

static const dcase confluent[] = {
    {"ok", "orders", CONFLUENT("01") V1_BODY, V1_JSON, 0, NULL, -1, 0},
    {"empty", "orders", "", NULL, KJB_ESHORT_HEADER,
     "record is 0 bytes, shorter than the 5-byte confluent header", -1, 0},
    {"short", "orders", "00 00 00 01", NULL, KJB_ESHORT_HEADER,
     "record is 4 bytes, shorter than the 5-byte confluent header", -1, 0},
    {"bad magic", "orders", "07 00 00 00 01 " V1_BODY, NULL, KJB_EBAD_MAGIC,
     "byte 0: bad magic byte 0x07, expected 0x00", -1, 0},
    {"single-object record on a confluent topic", "orders", SINGLE("FP1") V1_BODY, NULL,
     KJB_EBAD_MAGIC, "byte 0: bad magic byte 0xc3, expected 0x00", -1, 0},
    {"unknown id", "orders", CONFLUENT("05") V1_BODY, NULL, KJB_EUNKNOWN_SCHEMA_ID,
     "schema id 5 is not in schemas.ids and no registry is configured", -1, 0},
    {"negative id", "orders", "00 ff ff ff ff " V1_BODY, NULL, KJB_EUNKNOWN_SCHEMA_ID,
     "schema id -1 is not in schemas.ids and no registry is configured", -1, 0},
    {"header only", "orders", CONFLUENT("01"), NULL, KJB_ETRUNCATED,
     "avro body at byte 5: field 'order_id': truncated at byte 0: data ends inside a varint", -1,
     0},
    {"truncated body", "orders", CONFLUENT("01") V1_CUT, NULL, KJB_ETRUNCATED,
     "avro body at byte 5: field 'created_at': truncated at byte 35: data ends inside a varint", -1,
     0},
    {"array longer than the record", "orders", CONFLUENT("01") V1_SHORT_ITEMS, NULL,
     KJB_EBAD_LENGTH,
     "avro body at byte 5: field 'items': block of 1 items at byte 21 exceeds the 7 bytes left", -1,
     0},
    {"trailing bytes", "orders", CONFLUENT("01") V1_BODY " 00 00", NULL, KJB_ETRAILING_BYTES,
     "avro body at byte 5: 2 trailing bytes at byte 51", -1, 0},
    {"invalid utf-8", "orders", CONFLUENT("01") V1_BAD_UTF8, NULL, KJB_EINVALID_UTF8,
     "avro body at byte 5: field 'customer.email': invalid utf-8 at byte 4", -1, 0},
    {"length past the end", "orders", CONFLUENT("01") V1_LONG_EMAIL, NULL, KJB_EBAD_LENGTH,
     "avro body at byte 5: field 'customer.email': length 63 at byte 2 exceeds the 0 bytes left",
     -1, 0},
    /* Evolution through the catalog: the id picks the writer schema. */
    {"v2 writer, v1 reader", "orders", CONFLUENT("02") V2_BODY, V1_JSON, 0, NULL, -1, 0},
    {"v1 writer, v2 reader", "orders_v2", CONFLUENT("01") V1_BODY, V1_AS_V2_JSON, 0, NULL, -1, 0},
    {"v2 writer, v2 reader", "orders_v2", CONFLUENT("02") V2_BODY, V2_JSON, 0, NULL, -1, 0},
    {"v1 body under id 2", "orders", CONFLUENT("02") V1_BODY, NULL, KJB_ETRUNCATED,
     "avro body at byte 5: field 'channel': truncated at byte 51: data ends inside a varint", -1,
     0},
    {"incompatible writer", "orders", CONFLUENT("03") "54", NULL, KJB_ESCHEMA_MISMATCH,
     "field 'customer': missing in the writer schema and has no default", -1, 0},
    /* The failed resolution is cached; asking again gives the same answer. */
    {"incompatible writer again", "orders", CONFLUENT("03") "54", NULL, KJB_ESCHEMA_MISMATCH,
     "field 'customer': missing in the writer schema and has no default", -1, 0},
};

static void test_decode_confluent(void **state) { RUN(LOCAL_CFG, confluent, 1); }

static const dcase single_object[] = {
    {"ok", "so", SINGLE("FP1") V1_BODY, V1_JSON, 0, NULL, -1, 0},
    {"empty", "so", "", NULL, KJB_ESHORT_HEADER,
     "record is 0 bytes, shorter than the 10-byte single-object header", -1, 0},
    {"short", "so", "c3 01 00 00 00 00 00 00 00", NULL, KJB_ESHORT_HEADER,
     "record is 9 bytes, shorter than the 10-byte single-object header", -1, 0},
    {"bad magic", "so", "c3 02 FP1 " V1_BODY, NULL, KJB_EBAD_MAGIC,
     "byte 0: bad magic bytes 0xc3 0x02, expected 0xc3 0x01", -1, 0},
    {"confluent record on a single-object topic", "so", CONFLUENT("01") V1_BODY, NULL,
     KJB_EBAD_MAGIC, "byte 0: bad magic bytes 0x00 0x00, expected 0xc3 0x01", -1, 0},
    {"unknown fingerprint", "so", SINGLE("01 02 03 04 05 06 07 08") V1_BODY, NULL,
     KJB_EUNKNOWN_FINGERPRINT, "fingerprint 0x0807060504030201 matches no schema in $TMP/schemas",
     -1, 0},
    {"big-endian fingerprint", "so", "c3 01 00 00 00 00 00 00 00 00 " V1_BODY, NULL,
     KJB_EUNKNOWN_FINGERPRINT, "fingerprint 0x0000000000000000 matches no schema in $TMP/schemas",
     -1, 0},
    {"header only", "so", SINGLE("FP1"), NULL, KJB_ETRUNCATED,
     "avro body at byte 10: field 'order_id': truncated at byte 0: data ends inside a varint", -1,
     0},
    {"truncated body", "so", SINGLE("FP1") V1_CUT, NULL, KJB_ETRUNCATED,
     "avro body at byte 10: field 'created_at': truncated at byte 35: data ends inside a "
     "varint",
     -1, 0},
    {"trailing bytes", "so", SINGLE("FP1") V1_BODY " 00", NULL, KJB_ETRAILING_BYTES,
     "avro body at byte 10: 1 trailing bytes at byte 51", -1, 0},
    {"invalid utf-8", "so", SINGLE("FP1") V1_BAD_UTF8, NULL, KJB_EINVALID_UTF8,
     "avro body at byte 10: field 'customer.email': invalid utf-8 at byte 4", -1, 0},
    /* Every schema in schemas.dir is a candidate writer. */
    {"v2 writer, v1 reader", "so", SINGLE("FP2") V2_BODY, V1_JSON, 0, NULL, -1, 0},
    {"v1 writer, v2 reader", "so_v2", SINGLE("FP1") V1_BODY, V1_AS_V2_JSON, 0, NULL, -1, 0},
    {"v2 writer, v2 reader", "so_v2", SINGLE("FP2") V2_BODY, V2_JSON, 0, NULL, -1, 0},
};

static void test_decode_single_object(void **state) { RUN(LOCAL_CFG, single_object, 1); }

static const dcase raw[] = {
    {"ok", "raw", V1_BODY, V1_JSON, 0, NULL, -1, 0},
    {"empty", "raw", "", NULL, KJB_ETRUNCATED,
     "field 'order_id': truncated at byte 0: data ends inside a varint", -1, 0},
    {"truncated", "raw", V1_CUT, NULL, KJB_ETRUNCATED,
     "field 'created_at': truncated at byte 35: data ends inside a varint", -1, 0},
    {"trailing bytes", "raw", V1_BODY " 00 00 00", NULL, KJB_ETRAILING_BYTES,
     "3 trailing bytes at byte 51", -1, 0},
    {"invalid utf-8", "raw", V1_BAD_UTF8, NULL, KJB_EINVALID_UTF8,
     "field 'customer.email': invalid utf-8 at byte 4", -1, 0},
    /* Raw has no header: a framed record is just bad Avro (order_id 0,
     * customer {0, "", ""}, then amount's length is 01 = -1). */
    {"confluent record on a raw topic", "raw", CONFLUENT("01") V1_BODY, NULL, KJB_EBAD_LENGTH,
     "field 'amount': negative length -1 at byte 4", -1, 0},
};

static void test_decode_raw(void **state) { RUN(LOCAL_CFG, raw, 1); }

/* ---- What a record holds before the failure ----------------------------- */

typedef struct {
  const char *name;
  const char *topic;
  const char *hex;
  int rc;              /* kjb_decode_partial's */
  const char *partial; /* natural JSON; NULL: none */
  const char *path;    /* when rc is 1 */
  size_t byte;
  const char *msg; /* the error; NULL when rc is 0 */
} pcase;

static const pcase partials[] = {
    /* Decoded with the writer (v1), not the reader (v2): no channel. */
    {"truncated, v1 writer, v2 reader", "orders_v2", CONFLUENT("01") V1_CUT, 1,
     "{'order_id':42,'customer':{'id':7,'email':'a@b.example','name':'Al'},'amount':'19.99',"
     "'currency':'USD','items':[{'sku':'X1','quantity':2,'price':2.5}]}",
     "created_at", 40,
     "avro body at byte 5: field 'created_at': truncated at byte 35: data ends inside a varint"},
    {"single-object, invalid utf-8", "so", SINGLE("FP1") V1_BAD_UTF8, 1,
     "{'order_id':42,'customer':{'id':7}}", "customer.email", 14,
     "avro body at byte 10: field 'customer.email': invalid utf-8 at byte 4"},
    {"raw, trailing bytes", "raw", V1_BODY " 00", 1, V1_JSON, "", 51,
     "1 trailing bytes at byte 51"},
    {"raw, nothing before a bad first field", "raw", "80", 1, "{}", "order_id", 0,
     "field 'order_id': truncated at byte 0: data ends inside a varint"},
    /* The bytes are fine; the reader cannot resolve their writer. */
    {"incompatible writer", "orders", CONFLUENT("03") "54", 0, "{'order_id':42}", NULL, 0, NULL},
    {"raw, whole", "raw", V1_BODY, 0, V1_JSON, NULL, 0, NULL},
    {"unknown schema id", "orders", CONFLUENT("09") V1_BODY, -KJB_EUNKNOWN_SCHEMA_ID, NULL, NULL, 0,
     "schema id 9 is not in schemas.ids and no registry is configured"},
    {"bad magic", "orders", "07 00 00 00 01 54", -KJB_EBAD_MAGIC, NULL, NULL, 0,
     "byte 0: bad magic byte 0x07, expected 0x00"},
};

static void test_decode_partial(void **state) {
  kjb_config cfg;
  kjb_catalog *cat = open_catalog(LOCAL_CFG, &cfg);
  int failures = 0;
  for (size_t i = 0; i < sizeof partials / sizeof partials[0]; i++) {
    const pcase *c = &partials[i];
    kjb_buf in;
    kjb_buf_init(&in);
    unhex(c->hex, &in);
    uint8_t *heap = kjb_xmalloc(in.len);
    memcpy(heap, in.data, in.len);
    json_t *partial = (json_t *)1;
    kjb_avro_stop stop = {0};
    kjb_err err = {0};
    int rc = kjb_decode_partial(cat, topic(&cfg, c->topic), heap, in.len, &partial, &stop, &err);
    char *got = partial ? json_dumps(partial, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *want = c->partial ? expand(c->partial) : NULL;
    char *msg = c->msg ? expand(c->msg) : NULL;
    int bad = rc != c->rc || (want == NULL) != (got == NULL) || (want && strcmp(got, want) != 0) ||
              (rc != 0 && strcmp(err.msg, msg) != 0) ||
              (rc == 1 && (strcmp(stop.path, c->path) != 0 || stop.byte != c->byte));
    if (bad) {
      printf("[%s] expected %d %s at \"%s\" byte %zu: %s\n"
             "  got      %d %s at \"%s\" byte %zu: %s\n",
             c->name, c->rc, want ? want : "null", c->path ? c->path : "", c->byte, msg ? msg : "",
             rc, got ? got : "null", stop.path, stop.byte, err.msg);
      failures++;
    }
    free(msg);
    free(want);
    free(got);
    json_decref(partial);
    free(heap);
    kjb_buf_close(&in);
  }
  kjb_catalog_free(cat);
  kjb_config_close(&cfg);
  if (failures)
    fail_msg("%d of %zu cases failed", failures, sizeof partials / sizeof partials[0]);
}

/* ---- Framing headers ---------------------------------------------------- */

typedef struct {
  const char *topic;
  int schema_id;
  const char *header; /* expected header bytes */
  const char *body;   /* appended after the header, then decoded */
  const char *expect;
} fcase;

static const fcase frames[] = {
    {"orders", -1, "00 00 00 00 01", V1_BODY, V1_JSON},
    {"orders", 1, "00 00 00 00 01", V1_BODY, V1_JSON},
    {"orders", 2, "00 00 00 00 02", V2_BODY, V1_JSON},
    {"orders_v2", -1, "00 00 00 00 02", V2_BODY, V2_JSON},
    {"orders_v2", 1, "00 00 00 00 01", V1_BODY, V1_AS_V2_JSON},
    {"so", -1, "c3 01 FP1", V1_BODY, V1_JSON},
    {"so_v2", -1, "c3 01 FP2", V2_BODY, V2_JSON},
    {"raw", -1, "", V1_BODY, V1_JSON},
};

static void test_frame_header(void **state) {
  kjb_config cfg;
  kjb_catalog *cat = open_catalog(LOCAL_CFG, &cfg);
  int failures = 0;
  size_t n = sizeof frames / sizeof frames[0];
  for (size_t i = 0; i < n; i++) {
    const fcase *f = &frames[i];
    char name[64];
    snprintf(name, sizeof name, "%s, schema id %d", f->topic, f->schema_id);
    kjb_buf rec, want;
    kjb_buf_init(&rec);
    kjb_buf_init(&want);
    unhex(f->header, &want);
    kjb_err err = {0};
    int bad = 0;
    if (kjb_frame_header(cat, topic(&cfg, f->topic), f->schema_id, &rec, &err) < 0) {
      printf("[%s] got error %s: %s\n", name, kjb_err_name(err.code), err.msg);
      bad = 1;
    } else if (rec.len != want.len || memcmp(rec.data, want.data, want.len) != 0) {
      char a[128], b[128];
      hexdump(&want, a, sizeof a);
      hexdump(&rec, b, sizeof b);
      printf("[%s] expected header %s\n  got             %s\n", name, a, b);
      bad = 1;
    } else {
      /* The header and a body must decode back. */
      char hex[512];
      hexdump(&rec, hex, sizeof hex);
      kjb_buf_close(&want);
      kjb_buf_init(&want);
      kjb_buf_printf(&want, "%s %s", hex, f->body);
      dcase c = {name, f->topic, want.data, f->expect, 0, NULL, -1, 0};
      bad = decode_once(cat, &cfg, &c);
    }
    failures += bad;
    kjb_buf_close(&rec);
    kjb_buf_close(&want);
  }
  kjb_catalog_free(cat);
  kjb_config_close(&cfg);
  if (failures)
    fail_msg("%d of %zu cases failed", failures, n);
}

static void test_frame_header_needs_an_id(void **state) {
  kjb_config cfg;
  kjb_catalog *cat =
      open_catalog(BASE "schemas = { dir = '$TMP/schemas'; ids = ( { id = 1; "
                        "file = 'order_created.avsc'; } ); };\n"
                        "topics = ( { topic = 't'; schema = "
                        "'order_created_v2.avsc'; jobs = ( { kind = 'k'; } ); } );\n",
                   &cfg);
  const kjb_topic_cfg *t = topic(&cfg, "t");
  kjb_buf out;
  kjb_buf_init(&out);
  kjb_err err = {0};
  int rc = kjb_frame_header(cat, t, -1, &out, &err);
  int bad = check_err("no id", &err, KJB_EUSAGE,
                      "topic 't': schema 'order_created_v2.avsc' has no id in schemas.ids; "
                      "pass --schema-id");
  size_t len = out.len;
  /* An explicit id needs no entry in schemas.ids. */
  int rc2 = kjb_frame_header(cat, t, 7, &out, &err);
  kjb_buf want;
  kjb_buf_init(&want);
  unhex("00 00 00 00 07", &want);
  int same = out.len == want.len && memcmp(out.data, want.data, want.len) == 0;
  kjb_buf_close(&want);
  kjb_buf_close(&out);
  kjb_catalog_free(cat);
  kjb_config_close(&cfg);
  assert_int_equal(rc, -(int)KJB_EUSAGE);
  assert_false(bad);
  assert_int_equal(len, 0);
  assert_int_equal(rc2, 0);
  assert_true(same);
}

/* The fingerprint the tables use is that of the canonical form. */
static void test_fingerprint(void **state) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/schemas/order_created.avsc", tmp_root);
  kjb_err err = {0};
  kjb_schema *s = kjb_schema_load(path, &err);
  if (!s)
    fail_msg("%s", err.msg);
  const char *canon = kjb_schema_canonical(s);
  uint64_t crc = kjb_crc64_avro(canon, strlen(canon));
  kjb_schema_free(s);
  assert_int_equal(crc, fp_v1);
  assert_int_not_equal(fp_v1, fp_v2);
}

/* ---- Schema registry ---------------------------------------------------- */

static char *reply_v1, *reply_v2; /* {"schema": "<avsc text>"} */

/* GET /schemas/ids/{id}: 99 and 94 are order_created v1 and v2, 98 is
 * unknown (404), 97 is a server error, 96 answers garbage, 95 a schema
 * that does not parse, 93 refuses (401). Counts requests per id. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  unsigned status = 404;
  const char *body = "{\"error_code\":40403,\"message\":\"Schema not found\"}";
  int id;
  char tail;
  if (strcmp(method, "GET") == 0 && sscanf(url, "/schemas/ids/%d%c", &id, &tail) == 1 && id >= 0 &&
      id < 128) {
    atomic_fetch_add(&hits[id], 1);
    switch (id) {
    case 99: status = 200, body = reply_v1; break;
    case 94: status = 200, body = reply_v2; break;
    case 97:
      status = 500, body = "{\"error_code\":50001,\"message\":\"Error in the backend\"}";
      break;
    case 96: status = 200, body = "<html>not json"; break;
    case 95: status = 200, body = "{\"schema\":\"{\\\"type\\\":\\\"nope\\\"}\"}"; break;
    case 93: status = 401, body = "{\"error_code\":401,\"message\":\"Unauthorized\"}"; break;
    }
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(r, "Content-Type", "application/vnd.schemaregistry.v1+json");
  enum MHD_Result ok = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ok;
}

static struct MHD_Daemon *registry;
static unsigned registry_port;

static char *reply_for(const char *avsc) {
  json_t *doc = json_pack("{s:s}", "schema", avsc);
  char *text = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  return text;
}

static int registry_setup(void **state) {
  for (size_t i = 0; i < 128; i++)
    atomic_store(&hits[i], 0);
  reply_v1 = reply_for(avsc_v1);
  reply_v2 = reply_for(avsc_v2);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  registry = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                              on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
  if (!registry)
    return -1;
  registry_port = MHD_get_daemon_info(registry, MHD_DAEMON_INFO_BIND_PORT)->port;
  return 0;
}

static int registry_teardown(void **state) {
  MHD_stop_daemon(registry);
  registry = NULL;
  free(reply_v1);
  free(reply_v2);
  return 0;
}

#define REGISTRY_CFG                                                    \
  BASE "schema_registry = { url = '$REG'; timeout = '1s'; };\n"         \
       "schemas = { dir = '$TMP/schemas'; ids = ( { id = 1; file = "    \
       "'order_created.avsc'; } ); };\n"                                \
       "topics = ( { topic = 'orders'; schema = 'order_created.avsc'; " \
       "jobs = ( { kind = 'k'; } ); } );\n"

/* REGISTRY_CFG for a port, in a static buffer (so that a failing test
 * leaks nothing). */
static const char *registry_cfg(unsigned port) {
  static char text[1024];
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%u", port);
  char *t = replace(REGISTRY_CFG, "$REG", url);
  snprintf(text, sizeof text, "%s", t);
  free(t);
  return text;
}

/* Each case is decoded twice; requests counts what reached the server. */
static const dcase registry_cases[] = {
    {"schemas.ids before the registry", "orders", CONFLUENT("01") V1_BODY, V1_JSON, 0, NULL, 0, 0},
    {"fetched, then cached", "orders", CONFLUENT("63") V1_BODY, V1_JSON, 0, NULL, 1, 0},
    {"evolution through the registry", "orders", CONFLUENT("5e") V2_BODY, V1_JSON, 0, NULL, 1, 0},
    {"404, cached negatively", "orders", CONFLUENT("62") V1_BODY, NULL, KJB_EUNKNOWN_SCHEMA_ID,
     "schema id 98 is not in the registry", 1, 0},
    {"500 is transient, not cached", "orders", CONFLUENT("61") V1_BODY, NULL,
     KJB_EREGISTRY_UNAVAILABLE, "could not fetch schema id 97: registry answered HTTP 500", 2, 1},
    {"401 is transient", "orders", CONFLUENT("5d") V1_BODY, NULL, KJB_EREGISTRY_UNAVAILABLE,
     "could not fetch schema id 93: registry answered HTTP 401", 2, 1},
    {"garbage is transient", "orders", CONFLUENT("60") V1_BODY, NULL, KJB_EREGISTRY_UNAVAILABLE,
     "could not fetch schema id 96: response has no 'schema' string", 2, 1},
    {"unparsable schema, cached negatively", "orders", CONFLUENT("5f") V1_BODY, NULL,
     KJB_EUNKNOWN_SCHEMA_ID, "schema id 95 from the registry: unknown type 'nope'", 1, 0},
    /* The body error comes after a successful (cached) fetch. */
    {"truncated body", "orders", CONFLUENT("63") V1_CUT, NULL, KJB_ETRUNCATED,
     "avro body at byte 5: field 'created_at': truncated at byte 35: data ends inside a varint", 1,
     0},
};

static void test_registry(void **state) { RUN(registry_cfg(registry_port), registry_cases, 2); }

/* A port nothing listens on: bound, never listened, closed. */
static unsigned closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {0};
  socklen_t len = sizeof sa;
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
    fail_msg("cannot bind a socket");
  close(fd);
  return ntohs(sa.sin_port);
}

static void test_registry_unavailable(void **state) {
  /* curl's text ("Couldn't connect to server") has a real apostrophe. */
  char *why = replace(curl_easy_strerror(CURLE_COULDNT_CONNECT), "'", "\\'");
  char msg[256];
  snprintf(msg, sizeof msg, "could not fetch schema id 99: %s", why);
  free(why);
  const dcase cases[] = {
      {"connection refused", "orders", CONFLUENT("63") V1_BODY, NULL, KJB_EREGISTRY_UNAVAILABLE,
       msg, -1, 1},
      {"schemas.ids needs no registry", "orders", CONFLUENT("01") V1_BODY, V1_JSON, 0, NULL, -1, 0},
  };
  RUN(registry_cfg(closed_port()), cases, 2);
}

/* ---- Configuration errors ----------------------------------------------- */

typedef struct {
  const char *name;
  const char *text; /* after BASE, from line 3 */
  kjb_errcode code;
  const char *msg; /* config file $TMP/c.cfg */
} ccase;

#define DIR_IDS \
  "schemas = { dir = '$TMP/schemas'; ids = ( { id = 1; file = 'order_created.avsc'; } ); };\n"
#define JOB_TOPIC(job) \
  "topics = ( { topic = 't'; schema = 'order_created.avsc'; jobs = ( { " job " } ); } );\n"

static const ccase config_errors[] = {
    {"reader schema not in schemas.dir",
     DIR_IDS "topics = ( { topic = 't'; schema = 'nope.avsc'; jobs = ( { kind = 'k'; } ); } );\n",
     KJB_ECONFIG, "$TMP/c.cfg:4: topic 't': schema 'nope.avsc' is not in $TMP/schemas"},
    {"args path not in the schema",
     DIR_IDS "topics = ( { topic = 't'; schema = 'order_created.avsc';\n"
             "  jobs = ( { kind = 'x'; args = [ 'order_id', 'customer.phone' ]; } ); } );\n",
     KJB_ECONFIG,
     "$TMP/c.cfg:5: job 'x': args: field 'customer.phone': no such field in the schema"},
    {"args path through a non-record", DIR_IDS JOB_TOPIC("kind = 'x'; args = [ 'order_id.x' ];"),
     KJB_ECONFIG, "$TMP/c.cfg:4: job 'x': args: field 'order_id.x': 'order_id' is not a record"},
    {"args path into an array", DIR_IDS JOB_TOPIC("kind = 'x'; args = [ 'items.sku' ];"),
     KJB_ECONFIG, "$TMP/c.cfg:4: job 'x': args: field 'items.sku': 'items' is not a record"},
    {"unique_key path not in the schema",
     DIR_IDS JOB_TOPIC("kind = 'x'; unique_key = 'order-${order_id}-${customer.phone}';"),
     KJB_ECONFIG,
     "$TMP/c.cfg:4: job 'x': unique_key: field 'customer.phone': no such field in the schema"},
    {"ordering_key path not in the schema",
     DIR_IDS JOB_TOPIC(
         "kind = 'x'; unique_key = '${order_id}'; ordering_key = 'c-${customer.no}';"),
     KJB_ECONFIG,
     "$TMP/c.cfg:4: job 'x': ordering_key: field 'customer.no': no such field in the schema"},
    {"second job is checked too",
     DIR_IDS JOB_TOPIC("kind = 'a'; args = [ 'order_id' ]; }, { kind = 'b'; args = [ 'nope' ];"),
     KJB_ECONFIG, "$TMP/c.cfg:4: job 'b': args: field 'nope': no such field in the schema"},
    {"schemas.ids names a missing file",
     "schemas = { dir = '$TMP/schemas';\n"
     "  ids = ( { id = 1; file = 'order_created.avsc'; },\n"
     "          { id = 3; file = 'gone.avsc'; } ); };\n" JOB_TOPIC("kind = 'k';"),
     KJB_ECONFIG, "$TMP/c.cfg:5: schemas.ids: id 3: 'gone.avsc' is not in $TMP/schemas"},
    {"confluent with neither ids nor registry",
     "schemas = { dir = '$TMP/schemas'; };\n" JOB_TOPIC("kind = 'k';"), KJB_ECONFIG,
     "$TMP/c.cfg:4: topic 't': format 'confluent' needs schemas.ids or schema_registry.url to "
     "find writer schemas"},
    {"schemas.dir missing",
     "schemas = { dir = '$TMP/none'; };\n"
     "topics = ( { topic = 't'; format = 'raw'; schema = 'order_created.avsc'; "
     "jobs = ( { kind = 'k'; } ); } );\n",
     KJB_ECONFIG, "$TMP/c.cfg: schemas.dir '$TMP/none': No such file or directory"},
    {"invalid schema in schemas.dir",
     "schemas = { dir = '$TMP/bad'; };\n"
     "topics = ( { topic = 't'; format = 'raw'; schema = 'broken.avsc'; "
     "jobs = ( { kind = 'k'; } ); } );\n",
     KJB_ESCHEMA, "$TMP/bad/broken.avsc: record 'B': fields must be an array"},
    /* Files that must not be read: they would block or never end. */
    {"FIFO in schemas.dir",
     "schemas = { dir = '$TMP/fifo'; };\n"
     "topics = ( { topic = 't'; format = 'raw'; schema = 'f.avsc'; "
     "jobs = ( { kind = 'k'; } ); } );\n",
     KJB_ESCHEMA, "$TMP/fifo/f.avsc: not a regular file"},
    {"symlink to /dev/zero in schemas.dir",
     "schemas = { dir = '$TMP/zero'; };\n"
     "topics = ( { topic = 't'; format = 'raw'; schema = 'z.avsc'; "
     "jobs = ( { kind = 'k'; } ); } );\n",
     KJB_ESCHEMA, "$TMP/zero/z.avsc: not a regular file"},
    {"schema file over the size limit",
     "schemas = { dir = '$TMP/huge'; };\n"
     "topics = ( { topic = 't'; format = 'raw'; schema = 'h.avsc'; "
     "jobs = ( { kind = 'k'; } ); } );\n",
     KJB_ESCHEMA, "$TMP/huge/h.avsc: larger than 1 MiB"},
    {"too many schema files",
     "schemas = { dir = '$TMP/many'; };\n"
     "topics = ( { topic = 't'; format = 'raw'; schema = 's0.avsc'; "
     "jobs = ( { kind = 'k'; } ); } );\n",
     KJB_ECONFIG, "$TMP/c.cfg: schemas.dir '$TMP/many': more than 1024 .avsc files"},
    /* Not errors: raw needs no ids, and neither does a registry. */
    {"raw with neither ids nor registry",
     "schemas = { dir = '$TMP/schemas'; };\n"
     "topics = ( { topic = 't'; format = 'raw'; schema = 'order_created.avsc'; "
     "jobs = ( { kind = 'k'; args = [ 'customer.email', 'note' ]; "
     "unique_key = '${customer.id}/${order_id}'; } ); } );\n",
     0, NULL},
    {"confluent with a registry only",
     "schema_registry = { url = 'http://127.0.0.1:1'; };\n"
     "schemas = { dir = '$TMP/schemas'; };\n" JOB_TOPIC("kind = 'k';"),
     0, NULL},
};

static void test_catalog_errors(void **state) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/c.cfg", tmp_root);
  int failures = 0;
  size_t n = sizeof config_errors / sizeof config_errors[0];
  for (size_t i = 0; i < n; i++) {
    const ccase *c = &config_errors[i];
    char *text = expand(c->text);
    kjb_buf full;
    kjb_buf_init(&full);
    char *base = expand(BASE);
    kjb_buf_printf(&full, "%s%s", base, text);
    free(base);
    free(text);
    write_file(path, full.data);
    kjb_buf_close(&full);
    kjb_config cfg;
    kjb_err err = {0};
    if (kjb_config_load(path, &cfg, &err) < 0) {
      printf("[%s] config does not load: %s\n", c->name, err.msg);
      failures++;
      continue;
    }
    kjb_catalog *cat = kjb_catalog_new(&cfg, &err);
    if (cat && c->msg) {
      printf("[%s] expected error %s: %s\n  got a catalog\n", c->name, kjb_err_name(c->code),
             c->msg);
      failures++;
    } else if (!cat && !c->msg) {
      printf("[%s] expected a catalog\n  got error %s: %s\n", c->name, kjb_err_name(err.code),
             err.msg);
      failures++;
    } else if (!cat) {
      failures += check_err(c->name, &err, c->code, c->msg);
    }
    kjb_catalog_free(cat);
    kjb_config_close(&cfg);
  }
  if (failures)
    fail_msg("%d of %zu cases failed", failures, n);
}

/* ---- check-config listing ------------------------------------------------ */

static void test_catalog_print(void **state) {
  kjb_config cfg;
  kjb_catalog *cat = open_catalog(
      BASE DIR_IDS
      "topics = (\n"
      "  { topic = 'orders'; schema = 'order_created.avsc'; dlq = 'dead';\n"
      "    jobs = ( { kind = 'send'; unique_key = 'order-${order_id}'; },\n"
      "             { kind = 'fraud'; queue = 'risk'; priority = 1; max_attempts = 5;\n"
      "               args = [ 'order_id', 'customer.email' ]; } ); },\n"
      "  { topic = 'raw_orders'; format = 'raw'; schema = 'order_created_v2.avsc';\n"
      "    jobs = ( { kind = 'log_it'; } ); }\n"
      ");\n"
      "handlers = (\n"
      "  { kind = 'send'; type = 'http'; url = 'http://127.0.0.1:8080/hook';\n"
      "    retry = { max_attempts = 7; }; },\n"
      "  { kind = 'log_it'; type = 'log'; }\n"
      ");\n",
      &cfg);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  kjb_catalog_print(cat, f);
  fclose(f);
  kjb_catalog_free(cat);
  kjb_config_close(&cfg);
  char want[2048];
  snprintf(want, sizeof want,
           "topic orders (format confluent, schema order_created.avsc, fingerprint 0x%016llx, "
           "dlq dead)\n"
           "  -> job send: queue default, priority 0, max_attempts 7, handler http, "
           "unique_key \"order-${order_id}\", args = whole record\n"
           "  -> job fraud: queue risk, priority 1, max_attempts 5, handler (none), "
           "args [order_id, customer.email]\n"
           "topic raw_orders (format raw, schema order_created_v2.avsc, fingerprint 0x%016llx, "
           "dlq raw_orders.dlq)\n"
           "  -> job log_it: queue default, priority 0, max_attempts 20, handler log, "
           "args = whole record\n",
           (unsigned long long)fp_v1, (unsigned long long)fp_v2);
  if (strcmp(text, want) != 0)
    printf("expected:\n%s\ngot:\n%s\n", want, text);
  int same = strcmp(text, want) == 0;
  free(text);
  assert_true(same);
}

/* ---- Fixture -------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(path);
}

static uint64_t fingerprint_of(const char *path) {
  kjb_err err = {0};
  kjb_schema *s = kjb_schema_load(path, &err);
  if (!s) {
    fprintf(stderr, "%s\n", err.msg);
    return 0;
  }
  uint64_t fp = kjb_schema_fingerprint(s);
  kjb_schema_free(s);
  return fp;
}

/* $TMP/schemas holds the repository's two schemas and an incompatible
 * one; $TMP/bad one that does not parse. */
/* Schema directories that must fail: a FIFO, a link to /dev/zero, a file
 * one byte over the limit, one file too many. */
static int unreadable_dirs(void) {
  static const char *const dirs[] = {"fifo", "zero", "huge", "many"};
  char path[PATH_MAX];
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", tmp_root, dirs[i]);
    if (mkdir(path, 0700) != 0)
      return -1;
  }
  snprintf(path, sizeof path, "%s/fifo/f.avsc", tmp_root);
  if (mkfifo(path, 0600) != 0)
    return -1;
  snprintf(path, sizeof path, "%s/zero/z.avsc", tmp_root);
  if (symlink("/dev/zero", path) != 0)
    return -1;
  snprintf(path, sizeof path, "%s/huge/h.avsc", tmp_root);
  if (truncate_new(path, KJB_SCHEMA_MAX_BYTES + 1) != 0)
    return -1;
  for (int i = 0; i <= 1024; i++) {
    snprintf(path, sizeof path, "%s/many/s%d.avsc", tmp_root, i);
    write_file(path, "\"int\"");
  }
  return 0;
}

static int setup(void **state) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !mkdtemp(tmp_root))
    return -1;
  const char *src = getenv("KJB_SOURCE_DIR");
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/schemas/avro/order_created.avsc", src ? src : ".");
  avsc_v1 = read_all(path);
  snprintf(path, sizeof path, "%s/schemas/avro/order_created_v2.avsc", src ? src : ".");
  avsc_v2 = read_all(path);
  snprintf(path, sizeof path, "%s/schemas", tmp_root);
  mkdir(path, 0700);
  snprintf(path, sizeof path, "%s/schemas/order_created.avsc", tmp_root);
  write_file(path, avsc_v1);
  fp_v1 = fingerprint_of(path);
  snprintf(path, sizeof path, "%s/schemas/order_created_v2.avsc", tmp_root);
  write_file(path, avsc_v2);
  fp_v2 = fingerprint_of(path);
  snprintf(path, sizeof path, "%s/schemas/incompatible.avsc", tmp_root);
  char *inc = expand(INCOMPATIBLE_AVSC);
  write_file(path, inc);
  free(inc);
  snprintf(path, sizeof path, "%s/schemas/README.txt", tmp_root); /* not a schema */
  write_file(path, "ignored\n");
  snprintf(path, sizeof path, "%s/bad", tmp_root);
  mkdir(path, 0700);
  snprintf(path, sizeof path, "%s/bad/broken.avsc", tmp_root);
  write_file(path, "{\"type\": \"record\", \"name\": \"B\"}");
  return fp_v1 && fp_v2 && unreadable_dirs() == 0 ? 0 : -1;
}

static int teardown(void **state) {
  free(avsc_v1);
  free(avsc_v2);
  curl_global_cleanup();
  return nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fingerprint),
      cmocka_unit_test(test_decode_confluent),
      cmocka_unit_test(test_decode_single_object),
      cmocka_unit_test(test_decode_raw),
      cmocka_unit_test(test_decode_partial),
      cmocka_unit_test(test_frame_header),
      cmocka_unit_test(test_frame_header_needs_an_id),
      cmocka_unit_test_setup_teardown(test_registry, registry_setup, registry_teardown),
      cmocka_unit_test(test_registry_unavailable),
      cmocka_unit_test(test_catalog_errors),
      cmocka_unit_test(test_catalog_print),
  };
  return cmocka_run_group_tests_name("catalog", tests, setup, teardown);
}
