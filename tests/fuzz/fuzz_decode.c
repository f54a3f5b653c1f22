/* libFuzzer target for record decoding: the bytes a Kafka record value
 * may hold, decoded through a catalog as the consumer does, then mapped
 * to job args and unique keys. The first input byte picks the topic; the
 * rest is the record value. Any decode error is fine; a crash, a leak,
 * undefined behaviour or output that is not JSON is a bug. Each input is
 * also decoded by kjb_decode_partial (what `kjb dlq show` prints before
 * the failure), which must agree with the decode where both use the same
 * schemas.
 *
 * Topics (first byte modulo 4), over a temporary schemas.dir holding
 * schemas/avro/order_created{,_v2}.avsc and the two in tests/fuzz/schemas:
 *   0 orders        confluent      reader order_created_v2.avsc
 *   1 rich          raw            reader fuzz_rich.avsc
 *   2 orders.so     single-object  reader order_created.avsc
 *   3 rich.evolved  confluent      reader fuzz_rich.avsc
 * schemas.ids: 1 order_created, 2 order_created_v2, 3 fuzz_rich,
 * 4 fuzz_rich_old; no registry, so nothing touches the network.
 *
 * KJB_FUZZ_DEBUG=1 prints each input's topic and result to stderr (to
 * check that the seed corpus decodes). */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "fuzz.h"
#include "map.h"
#include "testutil.h"

#ifndef KJB_FUZZ_SOURCE_DIR
#define KJB_FUZZ_SOURCE_DIR "."
#endif

static char tmp_dir[] = "/tmp/kjb-fuzz-decode-XXXXXX";
static char schemas_dir[PATH_MAX];
static kjb_config cfg;
static kjb_catalog *catalog;
static kjb_arena *arena;
static kjb_buf out;
static int debug;

static const struct {
  const char *dir; /* relative to the source tree */
  const char *file;
} schema_files[] = {
    {"schemas/avro", "order_created.avsc"},
    {"schemas/avro", "order_created_v2.avsc"},
    {"tests/fuzz/schemas", "fuzz_rich.avsc"},
    {"tests/fuzz/schemas", "fuzz_rich_old.avsc"},
};

#define RICH_JOBS                                                                     \
  "jobs = ( { kind = \"k\"; unique_key = \"${id}/${customer.email}/${choice}\"; },\n" \
  "         { kind = \"k2\"; args = [ \"customer.address.city\", \"attrs.a\",\n"      \
  "           \"tree.label\", \"added.b\", \"span\" ]; } );"

static const char config_fmt[] =
    "kafka = { brokers = \"embedded\"; };\n"
    "postgres = { conninfo = \"dbname=kjb\"; };\n"
    "schemas = {\n"
    "  dir = \"%s\";\n"
    "  ids = ( { id = 1; file = \"order_created.avsc\"; },\n"
    "          { id = 2; file = \"order_created_v2.avsc\"; },\n"
    "          { id = 3; file = \"fuzz_rich.avsc\"; },\n"
    "          { id = 4; file = \"fuzz_rich_old.avsc\"; } );\n"
    "};\n"
    "topics = (\n"
    "  { topic = \"orders\"; format = \"confluent\"; schema = \"order_created_v2.avsc\";\n"
    "    jobs = ( { kind = \"k\"; unique_key = \"order-${order_id}\";\n"
    "               args = [ \"order_id\", \"customer.email\", \"tags\" ]; } ); },\n"
    "  { topic = \"rich\"; format = \"raw\"; schema = \"fuzz_rich.avsc\";\n"
    "    " RICH_JOBS " },\n"
    "  { topic = \"orders.so\"; format = \"single-object\"; schema = \"order_created.avsc\";\n"
    "    jobs = ( { kind = \"k\"; unique_key = \"${customer.id}:${currency}\"; } ); },\n"
    "  { topic = \"rich.evolved\"; format = \"confluent\"; schema = \"fuzz_rich.avsc\";\n"
    "    " RICH_JOBS " }\n"
    ");\n";

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_decode: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

static void copy_file(const char *from, const char *to) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_err err;
  if (kjb_read_file(from, 1 << 20, &b, &err) < 0)
    die("could not read %s: %s", from, err.msg);
  kjb_test_write_file(to, b.data, b.len);
  kjb_buf_close(&b);
}

static void cleanup(void) {
  kjb_catalog_free(catalog);
  kjb_config_close(&cfg);
  kjb_arena_free(arena);
  kjb_buf_close(&out);
  char path[PATH_MAX];
  for (size_t i = 0; i < sizeof schema_files / sizeof schema_files[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", schemas_dir, schema_files[i].file);
    unlink(path);
  }
  rmdir(schemas_dir);
  snprintf(path, sizeof path, "%s/kjb.cfg", tmp_dir);
  unlink(path);
  rmdir(tmp_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  kjb_test_clear_kjb_env();
  debug = getenv("KJB_FUZZ_DEBUG") && *getenv("KJB_FUZZ_DEBUG") == '1';
  const char *src = getenv("KJB_SOURCE_DIR");
  if (!src || !*src)
    src = KJB_FUZZ_SOURCE_DIR;
  if (!mkdtemp(tmp_dir))
    die("could not create %s: %s", tmp_dir, strerror(errno));
  snprintf(schemas_dir, sizeof schemas_dir, "%s/schemas", tmp_dir);
  if (mkdir(schemas_dir, 0700) != 0)
    die("could not create %s: %s", schemas_dir, strerror(errno));
  atexit(cleanup);
  char from[PATH_MAX], to[PATH_MAX];
  for (size_t i = 0; i < sizeof schema_files / sizeof schema_files[0]; i++) {
    snprintf(from, sizeof from, "%s/%s/%s", src, schema_files[i].dir, schema_files[i].file);
    snprintf(to, sizeof to, "%s/%s", schemas_dir, schema_files[i].file);
    copy_file(from, to);
  }
  kjb_buf text;
  kjb_buf_init(&text);
  kjb_buf_printf(&text, config_fmt, schemas_dir);
  char cfg_path[PATH_MAX];
  snprintf(cfg_path, sizeof cfg_path, "%s/kjb.cfg", tmp_dir);
  kjb_test_write_file(cfg_path, text.data, text.len);
  kjb_buf_close(&text);

  kjb_err err = {0};
  if (kjb_config_load(cfg_path, &cfg, &err) < 0)
    die("config: %s", err.msg);
  if (!(catalog = kjb_catalog_new(&cfg, &err)))
    die("catalog: %s", err.msg);
  if (cfg.ntopics != 4)
    die("expected 4 topics, got %zu", cfg.ntopics);
  if (!(arena = kjb_arena_new(0)))
    die("out of memory");
  kjb_buf_init(&out);
  return 0;
}

/* The decoder's output must be JSON. jansson cannot hold U+0000 in an
 * object key, which a map key may contain; such output is not checked. */
static void check_json(const kjb_buf *b, const char *what) {
  json_error_t jerr;
  json_t *j = json_loadb(b->data, b->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!j && !strstr(b->data, "\\u0000")) {
    fprintf(stderr, "fuzz_decode: %s is not JSON (%s at column %d):\n%s\n", what, jerr.text,
            jerr.column, b->data);
    abort();
  }
  json_decref(j);
}

static void check_error(int rc, const kjb_err *err, const char *what) {
  if (rc >= 0 || rc != -(int)err->code || err->code == KJB_OK || !err->msg[0] ||
      !memchr(err->msg, '\0', sizeof err->msg) || kjb_err_is_transient(err) ||
      err->code == KJB_EINTERNAL || err->code == KJB_ENOMEM) {
    fprintf(stderr, "fuzz_decode: %s: bad error: rc %d, code %s, message \"%.*s\"\n", what, rc,
            kjb_err_name(err->code), (int)sizeof err->msg, err->msg);
    abort();
  }
}

/* kjb_decode_partial on the value that kjb_decode_record returned rc and
 * err for. */
static void check_partial(const kjb_topic_cfg *t, const uint8_t *buf, size_t len, int rc,
                          const kjb_err *err) {
  json_t *partial = NULL;
  kjb_avro_stop stop = {0};
  kjb_err perr = {0};
  int prc = kjb_decode_partial(catalog, t, buf, len, &partial, &stop, &perr);
  if (prc < 0) {
    /* Nothing to decode: the framing failed the decode the same way. */
    check_error(prc, &perr, "partial");
    if (prc != rc || strcmp(perr.msg, err->msg) != 0)
      die("partial: nothing to decode (%s) but the decode said %d: %s", perr.msg, rc, err->msg);
  } else if (prc == 0) {
    if (!partial)
      die("partial: decodes whole without a value");
  } else {
    check_error(-(int)perr.code, &perr, "partial");
    if (stop.byte > len)
      die("partial: stops at byte %zu of %zu: %s", stop.byte, len, perr.msg);
    if (!memchr(stop.path, '\0', sizeof stop.path))
      die("partial: path not terminated");
  }
  /* The raw topic's writer schema is its reader schema: both decoders
   * must say the same. */
  if (t == &cfg.topics[1] && (prc == 1) != (rc < 0))
    die("partial: %d but the decode %d (%s / %s)", prc, rc, perr.msg, err->msg);
  if (t == &cfg.topics[1] && prc == 1 && strcmp(perr.msg, err->msg) != 0)
    die("partial: \"%s\" but the decode \"%s\"", perr.msg, err->msg);
  if (debug) {
    char *s = partial ? json_dumps(partial, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    fprintf(stderr, "%s: partial %d at \"%s\" byte %zu: %s\n", t->topic, prc, stop.path, stop.byte,
            s ? s : "null");
    free(s);
  }
  json_decref(partial);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const kjb_topic_cfg *t = &cfg.topics[data[0] % cfg.ntopics];
  kjb_value *v = NULL;
  kjb_err err = {0};
  int rc = kjb_decode_record(catalog, t, data + 1, size - 1, arena, &v, &err);
  check_partial(t, data + 1, size - 1, rc, &err);
  if (rc < 0) {
    check_error(rc, &err, "decode");
    if (debug)
      fprintf(stderr, "%s: %s: %s\n", t->topic, kjb_err_name(err.code), err.msg);
  } else {
    if (rc != 0 || !v)
      die("decode returned %d without a value", rc);
    kjb_buf_reset(&out);
    kjb_value_to_json(v, &out);
    check_json(&out, "decoded record");
    if (debug)
      fprintf(stderr, "%s: %s\n", t->topic, out.data);
    for (size_t i = 0; i < t->njobs; i++) {
      const kjb_job_cfg *job = &t->jobs[i];
      kjb_buf_reset(&out);
      err = (kjb_err){0};
      rc = kjb_map_args(job, v, &out, &err);
      if (rc < 0)
        check_error(rc, &err, "args");
      else
        check_json(&out, "args");
      const char *const keys[][2] = {{"unique_key", job->unique_key},
                                     {"ordering_key", job->ordering_key}};
      for (size_t k = 0; k < 2; k++) {
        if (!keys[k][1])
          continue;
        kjb_buf_reset(&out);
        err = (kjb_err){0};
        rc = kjb_map_template(job, keys[k][0], keys[k][1], v, &out, &err);
        if (rc < 0)
          check_error(rc, &err, keys[k][0]);
      }
    }
  }
  kjb_arena_reset(arena);
  return 0;
}
