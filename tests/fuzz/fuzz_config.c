/* libFuzzer target for the config file: the input is written to a file
 * and loaded; when it loads, its catalog is built over the repository's
 * schemas/avro (KJB_SCHEMAS_DIR) and printed. Errors are fine; a crash,
 * a leak, undefined behaviour or an error that breaks the contract of
 * kjb_config_load (code, message, cfg zeroed) is a bug.
 *
 * @include is part of the syntax, so it is fuzzed, but only of plain file
 * names in the input's own directory (the input itself and inc.cfg): an
 * input naming any other path (/dev/zero, ../..) is skipped, because the
 * config file is trusted to name files it may read.
 *
 * KJB_FUZZ_DEBUG=1 prints each input's result to stderr. */
#include <errno.h>
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
#include "testutil.h"

#ifndef KJB_FUZZ_SOURCE_DIR
#define KJB_FUZZ_SOURCE_DIR "."
#endif

static char tmp_dir[64];
static char cfg_path[PATH_MAX], inc_path[PATH_MAX];
static FILE *devnull;
static int debug;

/* What inc.cfg holds: sections an input may pull in instead of writing. */
static const char inc_text[] = "kafka = { brokers = \"b:9092\"; };\n"
                               "postgres = { conninfo = \"dbname=kjb\"; };\n";

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_config: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

static void cleanup(void) {
  if (devnull)
    fclose(devnull);
  unlink(cfg_path);
  unlink(inc_path);
  rmdir(tmp_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  kjb_test_clear_kjb_env();
  debug = getenv("KJB_FUZZ_DEBUG") && *getenv("KJB_FUZZ_DEBUG") == '1';
  const char *src = getenv("KJB_SOURCE_DIR");
  if (!src || !*src)
    src = KJB_FUZZ_SOURCE_DIR;
  char schemas[PATH_MAX];
  snprintf(schemas, sizeof schemas, "%s/schemas/avro", src);
  if (access(schemas, R_OK) != 0)
    die("%s: %s", schemas, strerror(errno));
  setenv("KJB_SCHEMAS_DIR", schemas, 1);
  /* Every input is written to a file: on tmpfs when there is one, since
   * truncating a file on a disk can cost more than the load itself. */
  struct stat st;
  snprintf(tmp_dir, sizeof tmp_dir, "%s/kjb-fuzz-config-XXXXXX",
           stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
               ? "/dev/shm"
               : "/tmp");
  if (!mkdtemp(tmp_dir))
    die("could not create %s: %s", tmp_dir, strerror(errno));
  atexit(cleanup);
  snprintf(cfg_path, sizeof cfg_path, "%s/fuzz.cfg", tmp_dir);
  snprintf(inc_path, sizeof inc_path, "%s/inc.cfg", tmp_dir);
  kjb_test_write_file(inc_path, inc_text, sizeof inc_text - 1);
  if (!(devnull = fopen("/dev/null", "w")))
    die("/dev/null: %s", strerror(errno));
  return 0;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 'a' - 'A' : c; }

static int name_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

/* Whether every @include (in any letter case) names a plain file in the
 * input's directory: [ \t]+ then "name" with name of [A-Za-z0-9_.-],
 * not starting with a dot. */
static int includes_are_safe(const uint8_t *d, size_t n) {
  static const char word[] = "include";
  for (size_t i = 0; i < n; i++) {
    if (d[i] != '@')
      continue;
    size_t k = 0;
    while (k < sizeof word - 1 && i + 1 + k < n && lower(d[i + 1 + k]) == word[k])
      k++;
    if (k < sizeof word - 1)
      continue;
    size_t j = i + 1 + k;
    while (j < n && (d[j] == ' ' || d[j] == '\t'))
      j++;
    if (j == n || d[j] != '"')
      continue; /* not an include to libconfig: a syntax error */
    size_t start = ++j;
    while (j < n && name_char(d[j]))
      j++;
    if (j == n || d[j] != '"' || j == start || d[start] == '.')
      return 0;
  }
  return 1;
}

static int all_zero(const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i])
      return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!includes_are_safe(data, size)) {
    if (debug)
      fprintf(stderr, "skipped: @include of a path outside the input's directory\n");
    return 0;
  }
  kjb_test_write_file(cfg_path, data, size);
  kjb_config cfg;
  kjb_err err = {0};
  int rc = kjb_config_load(cfg_path, &cfg, &err);
  if (rc < 0) {
    if (rc != -(int)err.code || (err.code != KJB_ECONFIG && err.code != KJB_EIO) || !err.msg[0] ||
        !memchr(err.msg, '\0', sizeof err.msg))
      die("bad error: rc %d, code %s, message \"%.*s\"", rc, kjb_err_name(err.code),
          (int)sizeof err.msg, err.msg);
    if (!all_zero(&cfg, sizeof cfg))
      die("cfg is not zeroed after a failed load: %s", err.msg);
    if (debug)
      fprintf(stderr, "config: %s: %s\n", kjb_err_name(err.code), err.msg);
    return 0;
  }
  if (rc != 0 || cfg.ntopics == 0 || !cfg.path || !cfg.kafka.brokers || !cfg.postgres.conninfo)
    die("loaded with rc %d but without a required value", rc);
  for (size_t i = 0; i < cfg.ntopics; i++) {
    const kjb_topic_cfg *t = &cfg.topics[i];
    if (kjb_config_topic(&cfg, t->topic) != t || !t->dlq || t->njobs == 0)
      die("topic %zu is not found by its name or lacks a default", i);
    for (size_t k = 0; k < t->njobs; k++)
      if (!t->jobs[k].queue || t->jobs[k].max_attempts < 1)
        die("topic %zu job %zu lacks a default", i, k);
  }
  for (size_t i = 0; i < cfg.nhandlers; i++)
    if (kjb_config_handler(&cfg, cfg.handlers[i].kind) != &cfg.handlers[i])
      die("handler %zu is not found by its kind", i);
  kjb_catalog *cat = kjb_catalog_new(&cfg, &err);
  if (debug)
    fprintf(stderr, "config: loaded; catalog: %s\n", cat ? "built" : err.msg);
  if (cat) {
    kjb_catalog_print(cat, devnull);
    kjb_catalog_free(cat);
  } else if (err.code == KJB_OK || !err.msg[0]) {
    die("catalog failed without an error");
  }
  kjb_config_close(&cfg);
  if (!all_zero(&cfg, sizeof cfg))
    die("cfg is not zeroed after close");
  kjb_config_close(&cfg);
  return 0;
}
