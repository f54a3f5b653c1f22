/* libFuzzer target for unique_key templates and dotted paths:
 * kjb_map_template, kjb_template_each, kjb_map_args and
 * kjb_value_path, with the scalars' text from kjb_value_to_text, over a
 * small hand-built record (as tests/unit/test_map.c builds them).
 *
 * The input is the template up to its first NUL byte, then the args
 * paths, NUL-separated (at most MAX_ARGS). The record holds fixed values
 * of every type, nested objects, an empty key and a repeated one, plus
 * what the input makes: "raw" is the whole input (any bytes, NULs too),
 * "map" an object keyed by the args paths, and "i", "d" and "f" an
 * integer, double and float made of the input's last 8 bytes.
 *
 * Beyond no crash, leak or undefined behaviour, these must hold:
 * - kjb_map_template expands exactly as a plain reading of its contract
 *   does (reference() below): each ${path} replaced by its value's text;
 *   an unterminated "${" or an empty path is KJB_EBAD_TEMPLATE, an absent
 *   path KJB_EMISSING_FIELD, a null, array or object KJB_EBAD_TEMPLATE,
 *   and the error has the code as rc, a message and names the path;
 * - kjb_template_each visits the same paths and returns -1 exactly for an
 *   unterminated "${";
 * - kjb_value_path finds what a plain walk over the objects finds;
 * - kjb_map_args fails exactly when a path is absent (KJB_EMISSING_FIELD
 *   naming it), else writes JSON with each path as a key;
 * - whenever the input is valid UTF-8 (so the template and every string
 *   of the record are), the unique key is valid UTF-8 and the args are
 *   valid JSON;
 * - numbers print as JSON numbers that read back as the same double or
 *   float, with no more digits than needed; non-finite ones as NaN,
 *   Infinity and -Infinity (quoted in JSON).
 *
 * KJB_FUZZ_DEBUG=1 prints each input's result to stderr. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "testutil.h"
#include "map.h"

#define MAX_ARGS 16

static int debug;
static kjb_buf out, ref, tmp;

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_template: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

/* ---- the record --------------------------------------------------------- */

static kjb_value vals[64];
static kjb_member mems[64];
static kjb_value *items[8];
static size_t nvals, nmems, nitems;

static kjb_value *val(kjb_value v) {
  if (nvals == sizeof vals / sizeof vals[0])
    die("record pool too small");
  vals[nvals] = v;
  return &vals[nvals++];
}

static kjb_value *str(const char *s, size_t n) {
  return val((kjb_value){.type = KJB_V_STRING, .u.s = {s, n}});
}

static kjb_value *cstr(const char *s) { return str(s, strlen(s)); }

/* An object of the members added since first. */
static kjb_value *obj(size_t first) {
  return val((kjb_value){.type = KJB_V_OBJECT, .u.obj = {&mems[first], nmems - first}});
}

static void member(const char *key, size_t key_len, kjb_value *v) {
  if (nmems == sizeof mems / sizeof mems[0])
    die("record pool too small");
  mems[nmems++] = (kjb_member){key, key_len, v};
}

static void cmember(const char *key, kjb_value *v) { member(key, strlen(key), v); }

static const char ctl_text[] = "q\"b\\s\n\t\x01\x7f\0end";

/* Objects' members are contiguous in mems: each nested object is built
 * before the members of the object that holds it. */
static kjb_value *build_record(const uint8_t *data, size_t size, char **paths, size_t npaths) {
  nvals = nmems = nitems = 0;
  uint8_t last[8] = {0};
  memcpy(last + (size < 8 ? 8 - size : 0), data + (size < 8 ? 0 : size - 8), size < 8 ? size : 8);
  int64_t i;
  double d;
  float f;
  memcpy(&i, last, 8);
  memcpy(&d, last, 8);
  memcpy(&f, last + 4, 4);

  size_t m0 = nmems;
  cmember("city", cstr("Paris"));
  cmember("zip", cstr("75001"));
  kjb_value *address = obj(m0);

  items[nitems++] = cstr("a");
  items[nitems++] = cstr("b");
  kjb_value *tags = val((kjb_value){.type = KJB_V_ARRAY, .u.arr = {&items[0], 2}});
  size_t m1 = nmems;
  cmember("email", cstr("a@b.example"));
  cmember("address", address);
  cmember("tags", tags);
  cmember("note", val((kjb_value){.type = KJB_V_NULL}));
  kjb_value *customer = obj(m1);

  size_t m2 = nmems;
  cmember("sku", cstr("X1"));
  items[nitems++] = obj(m2);
  kjb_value *list = val((kjb_value){.type = KJB_V_ARRAY, .u.arr = {&items[2], 1}});

  kjb_value *empty = obj(nmems);

  size_t m3 = nmems;
  for (size_t k = 0; k < npaths; k++)
    cmember(paths[k], val((kjb_value){.type = KJB_V_INT, .u.i = (int64_t)k}));
  kjb_value *map = obj(m3);

  size_t top = nmems;
  cmember("order_id", val((kjb_value){.type = KJB_V_INT, .u.i = 42}));
  cmember("neg", val((kjb_value){.type = KJB_V_INT, .u.i = INT64_MIN}));
  cmember("i", val((kjb_value){.type = KJB_V_INT, .u.i = i}));
  cmember("d", val((kjb_value){.type = KJB_V_DOUBLE, .u.d = d}));
  cmember("f", val((kjb_value){.type = KJB_V_FLOAT, .u.d = f}));
  cmember("flag", val((kjb_value){.type = KJB_V_BOOL, .u.b = true}));
  cmember("off", val((kjb_value){.type = KJB_V_BOOL, .u.b = false}));
  cmember("none", val((kjb_value){.type = KJB_V_NULL}));
  cmember("text", cstr("caf\xc3\xa9 \xe2\x98\x95 \xf0\x9f\x98\x80"));
  cmember("ctl", str(ctl_text, sizeof ctl_text - 1));
  cmember("raw", str((const char *)data, size));
  cmember("customer", customer);
  cmember("items", list);
  cmember("empty", empty);
  cmember("", cstr("empty key"));
  cmember("dup", val((kjb_value){.type = KJB_V_INT, .u.i = 1}));
  cmember("dup", val((kjb_value){.type = KJB_V_INT, .u.i = 2}));
  cmember("map", map);
  return obj(top);
}

/* ---- references ----------------------------------------------------------- */

/* The first member called seg of each object along path (len bytes). */
static const kjb_value *walk(const kjb_value *v, const char *path, size_t len) {
  const char *seg = path, *end = path + len;
  for (;;) {
    const char *dot = memchr(seg, '.', (size_t)(end - seg));
    size_t n = (size_t)((dot ? dot : end) - seg);
    if (v->type != KJB_V_OBJECT)
      return NULL;
    const kjb_value *next = NULL;
    for (size_t k = 0; k < v->u.obj.n && !next; k++)
      if (v->u.obj.members[k].key_len == n && memcmp(v->u.obj.members[k].key, seg, n) == 0)
        next = v->u.obj.members[k].val;
    if (!next || !dot)
      return next;
    v = next;
    seg = dot + 1;
  }
}

typedef struct {
  const char *path[256];
  size_t len[256];
  size_t n;
  int unterminated;
} scan;

/* What the contract says the unique key is: into ref, 0 or an error code,
 * with *bad the path that failed (or NULL). sc gets every path. */
static kjb_errcode reference(const char *tpl, const kjb_value *rec, scan *sc, const char **bad,
                             size_t *bad_len) {
  kjb_errcode code = KJB_OK;
  *bad = NULL;
  sc->n = 0;
  sc->unterminated = 0;
  kjb_buf_reset(&ref);
  for (const char *p = tpl;;) {
    const char *open = strstr(p, "${");
    if (!open) {
      if (!code)
        kjb_buf_puts(&ref, p);
      return code;
    }
    const char *path = open + 2, *close = strchr(path, '}');
    if (!close) {
      sc->unterminated = 1;
      return code ? code : KJB_EBAD_TEMPLATE;
    }
    size_t n = (size_t)(close - path);
    if (sc->n < 256) {
      sc->path[sc->n] = path;
      sc->len[sc->n++] = n;
    }
    if (!code) {
      kjb_buf_append(&ref, p, (size_t)(open - p));
      const kjb_value *v = n ? walk(rec, path, n) : NULL;
      if (n == 0)
        code = KJB_EBAD_TEMPLATE;
      else if (!v)
        code = KJB_EMISSING_FIELD;
      else if (kjb_value_to_text(v, &ref) < 0)
        code = KJB_EBAD_TEMPLATE;
      if (code && n) {
        *bad = path;
        *bad_len = n;
      }
    }
    p = close + 1;
  }
}

static int each_cb(const char *path, size_t len, void *arg) {
  scan *sc = arg;
  if (sc->n < 256) {
    sc->path[sc->n] = path;
    sc->len[sc->n++] = len;
  }
  return 0;
}

static void check_error(int rc, const kjb_err *err, kjb_errcode want, const char *what,
                        const char *path, size_t len) {
  if (rc != -(int)want || err->code != want)
    die("%s: rc %d, code %s; expected %s", what, rc, kjb_err_name(err->code), kjb_err_name(want));
  if (!memchr(err->msg, '\0', sizeof err->msg) || !err->msg[0])
    die("%s: %s without a message", what, kjb_err_name(want));
  /* The message names the path (when it has room for it). */
  if (path && len < 200 && !memchr(path, '\0', len)) {
    char quoted[210];
    snprintf(quoted, sizeof quoted, "\"%.*s\"", (int)len, path);
    if (!strstr(err->msg, quoted))
      die("%s: message \"%s\" does not name %s", what, err->msg, quoted);
  }
}

/* ---- checks ---------------------------------------------------------------- */

static void check_unique_key(const char *tpl, const kjb_value *rec, int input_utf8) {
  kjb_job_cfg job = {.kind = "k"};
  scan sc, each = {.n = 0};
  const char *bad;
  size_t bad_len = 0;
  kjb_errcode want = reference(tpl, rec, &sc, &bad, &bad_len);

  kjb_err err = {0};
  kjb_buf_reset(&out);
  int rc = kjb_map_template(&job, "unique_key", tpl, rec, &out, &err);
  if (want == KJB_OK) {
    if (rc != 0)
      die("unique_key \"%s\": %s (%s); expected \"%s\"", tpl, kjb_err_name(err.code), err.msg,
          ref.data);
    if (out.len != ref.len || memcmp(out.data, ref.data, out.len) != 0)
      die("unique_key \"%s\" is \"%s\"; expected \"%s\"", tpl, out.data, ref.data);
    if (input_utf8 && !kjb_test_utf8_ok(out.data, out.len))
      die("unique_key \"%s\" is not valid UTF-8", tpl);
  } else {
    check_error(rc, &err, want, "unique_key", bad, bad_len);
  }
  if (debug)
    fprintf(stderr, "unique_key: %s\n", rc ? err.msg : out.data);

  rc = kjb_template_each(tpl, each_cb, &each);
  if (rc != (sc.unterminated ? -1 : 0))
    die("template_each returned %d, unterminated: %d", rc, sc.unterminated);
  if (each.n != sc.n)
    die("template_each visited %zu paths, not %zu", each.n, sc.n);
  for (size_t k = 0; k < sc.n; k++)
    if (each.path[k] != sc.path[k] || each.len[k] != sc.len[k])
      die("template_each path %zu differs", k);
}

static void check_args(char **paths, size_t npaths, const kjb_value *rec, int input_utf8) {
  kjb_job_cfg job = {.kind = "k", .args = paths, .nargs = npaths};
  const char *missing = NULL;
  for (size_t k = 0; k < npaths; k++) {
    const kjb_value *v = kjb_value_path(rec, paths[k]), *w = walk(rec, paths[k], strlen(paths[k]));
    if (v != w)
      die("value_path \"%s\" found %p, not %p", paths[k], (const void *)v, (const void *)w);
    if (!v && !missing)
      missing = paths[k];
  }
  kjb_err err = {0};
  kjb_buf_reset(&out);
  int rc = kjb_map_args(&job, rec, &out, &err);
  if (missing) {
    check_error(rc, &err, KJB_EMISSING_FIELD, "args", missing, strlen(missing));
    return;
  }
  if (rc != 0)
    die("args: %s (%s) with every path present", kjb_err_name(err.code), err.msg);
  if (!input_utf8)
    return;
  json_error_t je;
  json_t *j = json_loadb(out.data, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  if (!j || !json_is_object(j))
    die("args are not a JSON object (%s at %d): %s", je.text, je.position, out.data);
  size_t distinct = 0;
  for (size_t k = 0; k < npaths; k++) {
    if (!json_object_get(j, paths[k]))
      die("args lack \"%s\": %s", paths[k], out.data);
    size_t first = 0;
    while (strcmp(paths[first], paths[k]) != 0)
      first++;
    distinct += first == k;
  }
  /* Without paths, the whole record: 18 members, "dup" twice. */
  size_t keys = json_object_size(j);
  if (npaths ? keys != distinct : keys != 17)
    die("args have %zu keys: %s", keys, out.data);
  json_decref(j);
}

/* Significant digits of a printed number ("-1.25e-05" has 3). */
static int sig_digits(const char *s) {
  int n = 0, lead = 1, trailing = 0;
  for (; *s && *s != 'e'; s++) {
    if (*s < '0' || *s > '9')
      continue;
    if (lead && *s == '0')
      continue;
    lead = 0;
    n++;
    trailing = *s == '0' ? trailing + 1 : 0;
  }
  return n - trailing;
}

static void check_number(const kjb_value *v) {
  kjb_buf_reset(&tmp);
  if (kjb_value_to_text(v, &tmp) < 0)
    die("a number has no text");
  int is_float = v->type == KJB_V_FLOAT;
  double d = v->u.d;
  if (!isfinite(d)) {
    const char *want = isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity";
    if (strcmp(tmp.data, want) != 0)
      die("%g prints as \"%s\"", d, tmp.data);
    return;
  }
  json_t *j = json_loads(tmp.data, JSON_DECODE_ANY, NULL);
  if (!j || !json_is_number(j))
    die("%.17g prints as \"%s\", not a JSON number", d, tmp.data);
  json_decref(j);
  char *end;
  int same = is_float ? strtof(tmp.data, &end) == (float)d : strtod(tmp.data, &end) == d;
  if (!same || *end || !signbit(strtod(tmp.data, NULL)) != !signbit(d))
    die("%.17g prints as \"%s\", which reads back as another number", d, tmp.data);
  /* No shorter form reads back (integral values under 1e15 print whole). */
  int sig = sig_digits(tmp.data);
  if (sig > 1 && !(fabs(d) < 1e15 && d == trunc(d))) {
    char shorter[40];
    snprintf(shorter, sizeof shorter, "%.*g", sig - 1, d);
    if (is_float ? strtof(shorter, NULL) == (float)d : strtod(shorter, NULL) == d)
      die("%.17g prints as \"%s\" but \"%s\" is shorter", d, tmp.data, shorter);
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  debug = getenv("KJB_FUZZ_DEBUG") && *getenv("KJB_FUZZ_DEBUG") == '1';
  kjb_buf_init(&out);
  kjb_buf_init(&ref);
  kjb_buf_init(&tmp);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The template and the paths, each NUL-terminated in a copy. */
  char *copy = malloc(size + 1);
  memcpy(copy, data, size);
  copy[size] = '\0';
  char *paths[MAX_ARGS];
  size_t npaths = 0;
  size_t tlen = strlen(copy);
  for (char *p = copy + tlen; p < copy + size && npaths < MAX_ARGS;) {
    p++;
    paths[npaths++] = p;
    p += strlen(p);
  }
  int input_utf8 = kjb_test_utf8_ok((const char *)data, size);

  const kjb_value *rec = build_record(data, size, paths, npaths);
  check_unique_key(copy, rec, input_utf8);
  check_args(paths, npaths, rec, input_utf8);
  check_number(walk(rec, "d", 1));
  check_number(walk(rec, "f", 1));
  kjb_buf_reset(&tmp);
  int64_t i = walk(rec, "i", 1)->u.i;
  char want[24];
  snprintf(want, sizeof want, "%" PRId64, i);
  if (kjb_value_to_text(walk(rec, "i", 1), &tmp) < 0 || strcmp(tmp.data, want) != 0)
    die("%s prints as \"%s\"", want, tmp.data);
  free(copy);
  return 0;
}
