/* Avro binary decoding. A resolver compiles a (writer, reader) schema pair
 * once into a plan by Avro's schema resolution rules; the decoder runs the
 * plan over one datum and builds natural JSON values in an arena.
 *
 * Lifetimes: decoded values live in the caller's arena, strings copied
 * from the input included, so the input buffer may go away after
 * decoding. They may also point at memory owned by the reader schema
 * (field names, enum symbols, field defaults, which are shared between
 * records and must not be modified), so the reader schema must outlive
 * the values. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_internal.h"
#include "schema.h"

/* Nesting of records, arrays and maps a datum may have; deeper data is
 * rejected rather than risking the stack. */
#define MAX_DEPTH 128
/* Arrays of items that take no bytes (null, empty records) could claim
 * any count; this caps what all the arrays of one datum may hold
 * together, so that nesting such arrays cannot multiply it. Fuzzing
 * builds (tests/fuzz) use a smaller cap so that every input stays fast. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define ZERO_SIZE_ITEMS_MAX (1 << 12)
#else
#define ZERO_SIZE_ITEMS_MAX (1 << 20)
#endif
/* Decimals longer than this (about 2,400 digits) are rejected: the
 * conversion to base 10 is quadratic. */
#define DECIMAL_MAX_BYTES 1024

/* ---- Formatting of logical types (shared by data and defaults) ---- */

enum { FMT_OK = 0, FMT_RANGE = 1, FMT_NOMEM = 2 };

static const char *logical_name(kjb_logical l) {
  static const char *const names[] = {
      [KJB_L_NONE] = "value",
      [KJB_L_DECIMAL] = "decimal",
      [KJB_L_UUID] = "uuid",
      [KJB_L_DATE] = "date",
      [KJB_L_TIME_MILLIS] = "time-millis",
      [KJB_L_TIME_MICROS] = "time-micros",
      [KJB_L_TIMESTAMP_MILLIS] = "timestamp-millis",
      [KJB_L_TIMESTAMP_MICROS] = "timestamp-micros",
      [KJB_L_LOCAL_TIMESTAMP_MILLIS] = "local-timestamp-millis",
      [KJB_L_LOCAL_TIMESTAMP_MICROS] = "local-timestamp-micros",
      [KJB_L_DURATION] = "duration",
  };
  return names[l];
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Writes v as exactly width decimal digits, zero-padded. */
static char *put_digits(char *p, uint64_t v, int width) {
  for (int i = width - 1; i >= 0; i--) {
    p[i] = (char)('0' + v % 10);
    v /= 10;
  }
  return p + width;
}

static int set_str(kjb_arena *a, const char *s, size_t n, kjb_value *out) {
  char *p = kjb_arena_strndup(a, s, n);
  if (!p)
    return FMT_NOMEM;
  out->type = KJB_V_STRING;
  out->u.s.ptr = p;
  out->u.s.len = n;
  return FMT_OK;
}

static int put_date(char *p, int64_t days, char **end) {
  int64_t y;
  unsigned m, d;
  kjb_civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999)
    return FMT_RANGE;
  p = put_digits(p, (uint64_t)y, 4);
  *p++ = '-';
  p = put_digits(p, m, 2);
  *p++ = '-';
  *end = put_digits(p, d, 2);
  return FMT_OK;
}

/* "HH:MM:SS.fff" from units of 1/per_sec seconds since midnight (or a
 * day's remainder); digits is 3 or 6. */
static char *put_clock(char *p, int64_t v, int64_t per_sec, int digits) {
  int64_t secs = v / per_sec, frac = v % per_sec;
  p = put_digits(p, (uint64_t)(secs / 3600), 2);
  *p++ = ':';
  p = put_digits(p, (uint64_t)(secs / 60 % 60), 2);
  *p++ = ':';
  p = put_digits(p, (uint64_t)(secs % 60), 2);
  *p++ = '.';
  return put_digits(p, (uint64_t)frac, digits);
}

/* Formats an int or long according to the reader type's logical type;
 * plain numbers stay numbers. */
static int fmt_int(kjb_arena *a, const kjb_snode *r, int64_t v, kjb_value *out) {
  char tmp[40], *p = tmp;
  int64_t per_sec = 1000;
  int digits = 3, zulu = 1;
  switch (r->logical) {
  case KJB_L_DATE:
    if (put_date(tmp, v, &p))
      return FMT_RANGE;
    return set_str(a, tmp, (size_t)(p - tmp), out);
  case KJB_L_TIME_MICROS:
    per_sec = 1000000, digits = 6;
    /* fall through */
  case KJB_L_TIME_MILLIS:
    if (v < 0 || v >= 86400 * per_sec)
      return FMT_RANGE;
    p = put_clock(tmp, v, per_sec, digits);
    return set_str(a, tmp, (size_t)(p - tmp), out);
  case KJB_L_LOCAL_TIMESTAMP_MICROS:
    zulu = 0;
    /* fall through */
  case KJB_L_TIMESTAMP_MICROS:
    per_sec = 1000000, digits = 6;
    goto timestamp;
  case KJB_L_LOCAL_TIMESTAMP_MILLIS:
    zulu = 0;
    /* fall through */
  case KJB_L_TIMESTAMP_MILLIS:
  timestamp: {
    /* Split without multiplying v back up, which could overflow. */
    int64_t frac = v % per_sec, secs = v / per_sec;
    if (frac < 0)
      frac += per_sec, secs -= 1;
    int64_t days = floor_div(secs, 86400);
    int64_t in_day = (secs - days * 86400) * per_sec + frac;
    if (put_date(tmp, days, &p))
      return FMT_RANGE;
    *p++ = 'T';
    p = put_clock(p, in_day, per_sec, digits);
    if (zulu)
      *p++ = 'Z';
    return set_str(a, tmp, (size_t)(p - tmp), out);
  }
  default:
    out->type = KJB_V_INT;
    out->u.i = v;
    return FMT_OK;
  }
}

static void set_real(kjb_value *out, double d, int is_float) {
  if (isnan(d) || isinf(d)) {
    const char *s = isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity";
    out->type = KJB_V_STRING;
    out->u.s.ptr = s;
    out->u.s.len = strlen(s);
    return;
  }
  out->type = is_float ? KJB_V_FLOAT : KJB_V_DOUBLE;
  out->u.d = d;
}

static int fmt_base64(kjb_arena *a, const uint8_t *p, size_t n, kjb_value *out) {
  static const char tbl[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t len = (n + 2) / 3 * 4;
  char *s = kjb_arena_alloc(a, len + 1), *o = s;
  if (!s)
    return FMT_NOMEM;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = tbl[(v >> 6) & 63];
    *o++ = tbl[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o = '\0';
  out->type = KJB_V_STRING;
  out->u.s.ptr = s;
  out->u.s.len = len;
  return FMT_OK;
}

/* Places the decimal point: digits (no leading zeros, "0" for zero)
 * scaled by 10^-scale, e.g. "5" at scale 2 is "0.05". */
static int put_decimal(kjb_arena *a, int neg, const char *digits, size_t nd, size_t sc,
                       kjb_value *out) {
  size_t intdigits = nd > sc ? nd - sc : 1;
  size_t len = (size_t)neg + intdigits + (sc ? 1 + sc : 0);
  char *s = kjb_arena_alloc(a, len + 1), *o = s;
  if (!s)
    return FMT_NOMEM;
  if (neg)
    *o++ = '-';
  if (nd > sc) {
    memcpy(o, digits, nd - sc);
    o += nd - sc;
  } else {
    *o++ = '0';
  }
  if (sc) {
    *o++ = '.';
    for (size_t k = nd; k < sc; k++)
      *o++ = '0';
    size_t frac = nd < sc ? nd : sc;
    memcpy(o, digits + nd - frac, frac);
    o += frac;
  }
  *o = '\0';
  out->type = KJB_V_STRING;
  out->u.s.ptr = s;
  out->u.s.len = (size_t)(o - s);
  return FMT_OK;
}

/* The exact decimal string of a big-endian two's-complement unscaled
 * integer of any length with the given scale: "-0.05", "123.45", "0.00". */
static int fmt_decimal(kjb_arena *a, const uint8_t *p, size_t n, int scale, kjb_value *out) {
  int neg = n > 0 && (p[0] & 0x80);
  /* Drop sign-extension bytes that carry no value. */
  while (n > 1 && ((p[0] == 0x00 && !(p[1] & 0x80)) || (p[0] == 0xff && (p[1] & 0x80))))
    p++, n--;
  if (n > DECIMAL_MAX_BYTES)
    return FMT_RANGE;
  if (n <= 8) {
    /* The common case: the value fits 64 bits. */
    uint64_t u = neg ? UINT64_MAX : 0;
    for (size_t i = 0; i < n; i++)
      u = u << 8 | p[i];
    uint64_t mag = neg ? ~u + 1 : u;
    char digits[20];
    size_t nd = 0;
    do
      digits[sizeof digits - ++nd] = (char)('0' + mag % 10);
    while (mag /= 10);
    return put_decimal(a, neg, digits + sizeof digits - nd, nd, (size_t)scale, out);
  }
  /* Magnitude in base 1e9, least significant limb first. */
  size_t cap = n * 8 / 29 + 2, nlimbs = 0;
  uint32_t *limbs = kjb_arena_alloc(a, cap * sizeof *limbs);
  if (!limbs)
    return FMT_NOMEM;
  /* Two's-complement negation on the fly: magnitude = ~x + 1, with the
   * +1 carried in from the least significant byte. */
  unsigned carry_in = neg;
  uint8_t lowbytes[DECIMAL_MAX_BYTES];
  for (size_t i = n; i-- > 0;) {
    unsigned b = neg ? (uint8_t)~p[i] + carry_in : p[i];
    carry_in = b >> 8;
    lowbytes[i] = (uint8_t)b;
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t carry = lowbytes[i];
    for (size_t k = 0; k < nlimbs; k++) {
      uint64_t t = (uint64_t)limbs[k] * 256 + carry;
      limbs[k] = (uint32_t)(t % 1000000000);
      carry = t / 1000000000;
    }
    while (carry) {
      limbs[nlimbs++] = (uint32_t)(carry % 1000000000);
      carry /= 1000000000;
    }
  }
  char *digits = kjb_arena_alloc(a, nlimbs * 9 + 1);
  if (!digits)
    return FMT_NOMEM;
  size_t nd = 0;
  for (uint32_t top = nlimbs ? limbs[nlimbs - 1] : 0;; top /= 10) {
    digits[nd++] = (char)('0' + top % 10);
    if (top < 10)
      break;
  }
  for (size_t i = 0; i < nd / 2; i++) {
    char t = digits[i];
    digits[i] = digits[nd - 1 - i];
    digits[nd - 1 - i] = t;
  }
  for (size_t k = nlimbs > 1 ? nlimbs - 1 : 0; k-- > 0;)
    put_digits(digits + nd, limbs[k], 9), nd += 9;
  return put_decimal(a, neg, digits, nd, (size_t)scale, out);
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A duration (fixed 12: little-endian unsigned months, days, millis) as
 * the object {"months": m, "days": d, "millis": ms}. */
static int fmt_duration(kjb_arena *a, const uint8_t *p, kjb_value *out) {
  static const char *const keys[] = {"months", "days", "millis"};
  kjb_member *m = kjb_arena_alloc(a, 3 * sizeof *m);
  kjb_value *vals = kjb_arena_alloc(a, 3 * sizeof *vals);
  if (!m || !vals)
    return FMT_NOMEM;
  for (int i = 0; i < 3; i++) {
    vals[i].type = KJB_V_INT;
    vals[i].u.i = le32(p + 4 * i);
    m[i].key = keys[i];
    m[i].key_len = strlen(keys[i]);
    m[i].val = &vals[i];
  }
  out->type = KJB_V_OBJECT;
  out->u.obj.members = m;
  out->u.obj.n = 3;
  return FMT_OK;
}

/* Formats bytes or fixed content according to the reader type. */
static int fmt_bytes(kjb_arena *a, const kjb_snode *r, const uint8_t *p, size_t n,
                     kjb_value *out) {
  if (r->logical == KJB_L_DECIMAL)
    return fmt_decimal(a, p, n, r->scale, out);
  if (r->logical == KJB_L_DURATION && n == 12)
    return fmt_duration(a, p, out);
  return fmt_base64(a, p, n, out);
}

/* ---- Resolution plans ---- */

typedef enum {
  OP_NULL, OP_BOOL,
  OP_INT, OP_INT_FLOAT, OP_INT_DOUBLE, /* OP_INT also covers int → long */
  OP_LONG, OP_LONG_FLOAT, OP_LONG_DOUBLE,
  OP_FLOAT, OP_FLOAT_DOUBLE, OP_DOUBLE,
  OP_BYTES,  /* writer bytes or string, reader bytes */
  OP_STRING, /* writer string or bytes, reader string */
  OP_FIXED, OP_ENUM, OP_ARRAY, OP_MAP, OP_RECORD,
  OP_WUNION  /* writer union; a reader union is resolved away at build time */
} opcode;

typedef struct plan plan;

typedef struct {
  const kjb_sfield *wfield;
  const plan *p; /* NULL: a writer-only field, skipped */
  size_t out;    /* reader field index */
} rstep;

struct plan {
  opcode op;
  const kjb_snode *w, *r;
  const char *failed;        /* record plans: why resolution failed */
  const plan *items;         /* array items, map values */
  size_t item_min;           /* least bytes one writer item/entry takes */
  const plan **branches;     /* writer union; NULL where unresolvable */
  const char **branch_err;
  rstep *steps;              /* record, in writer field order */
  kjb_member *tmpl;          /* record: reader names and defaults */
  int *enum_map;             /* writer symbol → reader symbol or -1 */
  size_t *sym_len;           /* reader symbol lengths */
};

struct kjb_resolver {
  kjb_arena *arena;
  const plan *root;
};

typedef struct {
  const kjb_snode *w, *r;
  plan *p;
} cached;

typedef struct {
  kjb_arena *a;
  kjb_err *err;
  cached *cache;
  size_t ncache, capcache;
  kjb_avro_path path;
} rctx;

static void *ralloc(rctx *c, size_t n) {
  void *p = kjb_arena_alloc(c->a, n ? n : 1);
  if (!p)
    abort(); /* resolvers are built at startup or per new schema id */
  memset(p, 0, n ? n : 1);
  return p;
}

__attribute__((format(printf, 2, 3))) static int rerr(rctx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = kjb_avro_path_err(&c->path, c->err, KJB_ESCHEMA_MISMATCH, fmt, ap);
  va_end(ap);
  return rc;
}

static const char *unqualified(const char *fullname) {
  const char *dot = strrchr(fullname, '.');
  return dot ? dot + 1 : fullname;
}

/* Named types match when their full or unqualified names agree, or when
 * one of the reader's aliases names the writer's type. */
static bool names_match(const kjb_snode *w, const kjb_snode *r) {
  if (strcmp(w->fullname, r->fullname) == 0 ||
      strcmp(unqualified(w->fullname), unqualified(r->fullname)) == 0)
    return true;
  for (size_t i = 0; i < r->naliases; i++)
    if (strcmp(r->aliases[i], w->fullname) == 0 ||
        strcmp(unqualified(r->aliases[i]), unqualified(w->fullname)) == 0)
      return true;
  return false;
}

static bool is_named(const kjb_snode *n) {
  return n->type == KJB_S_RECORD || n->type == KJB_S_ENUM || n->type == KJB_S_FIXED;
}

static bool same_kind(const kjb_snode *w, const kjb_snode *r) {
  return w->type == r->type && (!is_named(w) || names_match(w, r));
}

static bool promotes(kjb_stype w, kjb_stype r) {
  switch (w) {
  case KJB_S_INT:
    return r == KJB_S_LONG || r == KJB_S_FLOAT || r == KJB_S_DOUBLE;
  case KJB_S_LONG:
    return r == KJB_S_FLOAT || r == KJB_S_DOUBLE;
  case KJB_S_FLOAT:
    return r == KJB_S_DOUBLE;
  case KJB_S_STRING:
    return r == KJB_S_BYTES;
  case KJB_S_BYTES:
    return r == KJB_S_STRING;
  default:
    return false;
  }
}

/* The least number of bytes a datum of writer type n occupies. */
static size_t min_size(const kjb_snode *n, int depth) {
  switch (n->type) {
  case KJB_S_NULL:
    return 0;
  case KJB_S_FLOAT:
    return 4;
  case KJB_S_DOUBLE:
    return 8;
  case KJB_S_FIXED:
    return n->fixed_size;
  case KJB_S_RECORD: {
    /* A record can only contain itself through a union, array or map,
     * which stop the recursion; the depth guard covers nonsense schemas. */
    if (depth > MAX_DEPTH)
      return 0;
    size_t sum = 0;
    for (size_t i = 0; i < n->nfields; i++)
      sum += min_size(n->fields[i].type, depth + 1);
    return sum;
  }
  default:
    return 1;
  }
}

static const plan *resolve(rctx *c, const kjb_snode *w, const kjb_snode *r);

static plan *new_plan(rctx *c, opcode op, const kjb_snode *w, const kjb_snode *r) {
  plan *p = ralloc(c, sizeof *p);
  p->op = op;
  p->w = w;
  p->r = r;
  return p;
}

static const plan *fail_record(rctx *c, plan *p) {
  p->failed = kjb_arena_strndup(c->a, c->err->msg, strlen(c->err->msg));
  if (!p->failed)
    abort();
  return NULL;
}

static const plan *resolve_record(rctx *c, const kjb_snode *w, const kjb_snode *r) {
  for (size_t i = 0; i < c->ncache; i++) {
    if (c->cache[i].w == w && c->cache[i].r == r) {
      plan *p = c->cache[i].p;
      if (p->failed) {
        kjb_err_set(c->err, KJB_ESCHEMA_MISMATCH, "%s", p->failed);
        return NULL;
      }
      return p;
    }
  }
  /* Cached before the fields resolve so that recursive types find it. */
  plan *p = new_plan(c, OP_RECORD, w, r);
  c->cache = kjb_xgrow(c->cache, &c->capcache, c->ncache + 1, sizeof *c->cache);
  c->cache[c->ncache++] = (cached){w, r, p};
  if (!names_match(w, r)) {
    rerr(c, "writer record \"%s\" does not match reader record \"%s\"", w->fullname,
         r->fullname);
    return fail_record(c, p);
  }
  p->tmpl = ralloc(c, r->nfields * sizeof *p->tmpl);
  p->steps = ralloc(c, w->nfields * sizeof *p->steps);
  bool *seen = ralloc(c, r->nfields * sizeof *seen);
  for (size_t j = 0; j < r->nfields; j++) {
    p->tmpl[j].key = r->fields[j].name;
    p->tmpl[j].key_len = strlen(r->fields[j].name);
  }
  for (size_t i = 0; i < w->nfields; i++) {
    const kjb_sfield *wf = &w->fields[i];
    p->steps[i].wfield = wf;
    for (size_t j = 0; j < r->nfields; j++) {
      const kjb_sfield *rf = &r->fields[j];
      bool match = strcmp(rf->name, wf->name) == 0;
      for (size_t k = 0; !match && k < rf->naliases; k++)
        match = strcmp(rf->aliases[k], wf->name) == 0;
      if (!match || seen[j])
        continue;
      size_t old = kjb_avro_path_push(&c->path, "%s", rf->name);
      const plan *fp = resolve(c, wf->type, rf->type);
      kjb_avro_path_pop(&c->path, old);
      if (!fp)
        return fail_record(c, p);
      seen[j] = true;
      p->steps[i].p = fp;
      p->steps[i].out = j;
      break;
    }
  }
  for (size_t j = 0; j < r->nfields; j++) {
    if (seen[j])
      continue;
    if (!r->fields[j].default_value) {
      size_t old = kjb_avro_path_push(&c->path, "%s", r->fields[j].name);
      rerr(c, "missing in the writer schema and has no default");
      kjb_avro_path_pop(&c->path, old);
      return fail_record(c, p);
    }
    p->tmpl[j].val = r->fields[j].default_value;
  }
  return p;
}

static const plan *resolve_enum(rctx *c, const kjb_snode *w, const kjb_snode *r) {
  if (!names_match(w, r)) {
    rerr(c, "writer enum \"%s\" does not match reader enum \"%s\"", w->fullname, r->fullname);
    return NULL;
  }
  plan *p = new_plan(c, OP_ENUM, w, r);
  p->enum_map = ralloc(c, w->nsymbols * sizeof *p->enum_map);
  p->sym_len = ralloc(c, r->nsymbols * sizeof *p->sym_len);
  for (size_t j = 0; j < r->nsymbols; j++)
    p->sym_len[j] = strlen(r->symbols[j]);
  for (size_t i = 0; i < w->nsymbols; i++) {
    p->enum_map[i] = r->enum_default;
    for (size_t j = 0; j < r->nsymbols; j++) {
      if (strcmp(w->symbols[i], r->symbols[j]) == 0) {
        p->enum_map[i] = (int)j;
        break;
      }
    }
  }
  return p;
}

/* The reader union branch a non-union writer type is read as: the first
 * of the same type, else the first the writer type promotes to. */
static const kjb_snode *pick_branch(const kjb_snode *w, const kjb_snode *r) {
  for (size_t i = 0; i < r->nbranches; i++)
    if (same_kind(w, r->branches[i]))
      return r->branches[i];
  for (size_t i = 0; i < r->nbranches; i++)
    if (promotes(w->type, r->branches[i]->type))
      return r->branches[i];
  return NULL;
}

static const plan *resolve(rctx *c, const kjb_snode *w, const kjb_snode *r) {
  if (w->type == KJB_S_UNION) {
    plan *p = new_plan(c, OP_WUNION, w, r);
    p->branches = ralloc(c, w->nbranches * sizeof *p->branches);
    p->branch_err = ralloc(c, w->nbranches * sizeof *p->branch_err);
    /* A branch that cannot be resolved is an error only for data that
     * uses it. */
    for (size_t i = 0; i < w->nbranches; i++) {
      p->branches[i] = resolve(c, w->branches[i], r);
      if (!p->branches[i]) {
        p->branch_err[i] = kjb_arena_strndup(c->a, c->err->msg, strlen(c->err->msg));
        if (!p->branch_err[i])
          abort();
        kjb_err_clear(c->err);
      }
    }
    return p;
  }
  if (r->type == KJB_S_UNION) {
    const kjb_snode *b = pick_branch(w, r);
    if (!b) {
      rerr(c, "writer type \"%s\" matches no branch of the reader union",
           kjb_avro_type_name(w));
      return NULL;
    }
    return resolve(c, w, b);
  }
  static const struct {
    kjb_stype w, r;
    opcode op;
  } prims[] = {
      {KJB_S_NULL, KJB_S_NULL, OP_NULL},         {KJB_S_BOOLEAN, KJB_S_BOOLEAN, OP_BOOL},
      {KJB_S_INT, KJB_S_INT, OP_INT},            {KJB_S_INT, KJB_S_LONG, OP_INT},
      {KJB_S_INT, KJB_S_FLOAT, OP_INT_FLOAT},    {KJB_S_INT, KJB_S_DOUBLE, OP_INT_DOUBLE},
      {KJB_S_LONG, KJB_S_LONG, OP_LONG},         {KJB_S_LONG, KJB_S_FLOAT, OP_LONG_FLOAT},
      {KJB_S_LONG, KJB_S_DOUBLE, OP_LONG_DOUBLE}, {KJB_S_FLOAT, KJB_S_FLOAT, OP_FLOAT},
      {KJB_S_FLOAT, KJB_S_DOUBLE, OP_FLOAT_DOUBLE}, {KJB_S_DOUBLE, KJB_S_DOUBLE, OP_DOUBLE},
      {KJB_S_BYTES, KJB_S_BYTES, OP_BYTES},      {KJB_S_STRING, KJB_S_BYTES, OP_BYTES},
      {KJB_S_STRING, KJB_S_STRING, OP_STRING},   {KJB_S_BYTES, KJB_S_STRING, OP_STRING},
  };
  for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++)
    if (prims[i].w == w->type && prims[i].r == r->type)
      return new_plan(c, prims[i].op, w, r);
  if (w->type != r->type) {
    rerr(c, "writer type \"%s\" cannot be read as \"%s\"", kjb_avro_type_name(w),
         kjb_avro_type_name(r));
    return NULL;
  }
  switch (w->type) {
  case KJB_S_RECORD:
    return resolve_record(c, w, r);
  case KJB_S_ENUM:
    return resolve_enum(c, w, r);
  case KJB_S_FIXED:
    if (!names_match(w, r) || w->fixed_size != r->fixed_size) {
      rerr(c, "writer fixed \"%s\" (size %zu) cannot be read as fixed \"%s\" (size %zu)",
           w->fullname, w->fixed_size, r->fullname, r->fixed_size);
      return NULL;
    }
    return new_plan(c, OP_FIXED, w, r);
  case KJB_S_ARRAY:
  case KJB_S_MAP: {
    plan *p = new_plan(c, w->type == KJB_S_ARRAY ? OP_ARRAY : OP_MAP, w, r);
    size_t old = kjb_avro_path_push(&c->path, "%s", w->type == KJB_S_ARRAY ? "[]" : "*");
    p->items = resolve(c, w->items, r->items);
    kjb_avro_path_pop(&c->path, old);
    if (!p->items)
      return NULL;
    p->item_min = min_size(w->items, 0) + (w->type == KJB_S_MAP);
    return p;
  }
  default:
    rerr(c, "writer type \"%s\" cannot be read as \"%s\"", kjb_avro_type_name(w),
         kjb_avro_type_name(r));
    return NULL;
  }
}

kjb_resolver *kjb_resolver_new(const kjb_schema *writer, const kjb_schema *reader,
                               kjb_err *err) {
  kjb_resolver *res = kjb_xcalloc(1, sizeof *res);
  res->arena = kjb_arena_new(16 * 1024);
  kjb_err local;
  rctx c = {.a = res->arena, .err = err ? err : &local};
  res->root = resolve(&c, kjb_schema_root(writer), kjb_schema_root(reader));
  free(c.cache);
  if (!res->root) {
    kjb_resolver_free(res);
    return NULL;
  }
  return res;
}

void kjb_resolver_free(kjb_resolver *r) {
  if (!r)
    return;
  kjb_arena_free(r->arena);
  free(r);
}

/* ---- Decoding ---- */

/* One step of the path to the value being decoded, kept so that errors
 * can name the field; lengths are only computed for a message. */
typedef struct {
  const char *name; /* NUL-terminated; NULL for an array index */
  size_t index;
} seg;

typedef struct {
  const uint8_t *buf, *p, *end;
  kjb_arena *a;
  kjb_err *err;
  int depth;
  int nseg;
  size_t zero_left; /* zero-byte items the datum may still claim */
  seg segs[MAX_DEPTH + 1];
} dstate;

static size_t off(const dstate *st, const uint8_t *p) { return (size_t)(p - st->buf); }
static size_t left(const dstate *st) { return (size_t)(st->end - st->p); }

/* Sets err with the field path of the value being decoded as context. */
__attribute__((format(printf, 3, 4), cold, noinline)) static int derr(dstate *st,
                                                                     kjb_errcode code,
                                                                     const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (st->nseg == 0)
    return kjb_err_set(st->err, code, "%s", msg);
  char path[256];
  size_t n = 0;
  for (int i = 0; i < st->nseg && n < sizeof path; i++) {
    const seg *s = &st->segs[i];
    int w = s->name ? snprintf(path + n, sizeof path - n, "%s%s", n ? "." : "", s->name)
                    : snprintf(path + n, sizeof path - n, "[%zu]", s->index);
    if (w < 0)
      break;
    n += (size_t)w;
  }
  return kjb_err_set(st->err, code, "field \"%s\": %s", path, msg);
}

static int nomem(dstate *st) { return derr(st, KJB_ENOMEM, "out of memory"); }

static int need(dstate *st, size_t n, const char *what) {
  if (left(st) < n)
    return derr(st, KJB_ETRUNCATED, "truncated at byte %zu: %s needs %zu bytes, %zu left",
                off(st, st->p), what, n, left(st));
  return 0;
}

static int rd_long(dstate *st, int64_t *out) {
  const uint8_t *p = st->p;
  if (p < st->end && !(*p & 0x80)) {
    *out = (int64_t)(*p >> 1) ^ -(int64_t)(*p & 1);
    st->p = p + 1;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0;; i++) {
    if (p == st->end)
      return derr(st, KJB_ETRUNCATED, "truncated at byte %zu: data ends inside a varint",
                  off(st, st->p));
    uint8_t b = *p++;
    if (i == 9 && (b & 0x80))
      return derr(st, KJB_EBAD_VARINT, "varint at byte %zu is longer than 10 bytes",
                  off(st, st->p));
    if (i == 9 && b > 1)
      return derr(st, KJB_EBAD_VARINT, "varint at byte %zu overflows 64 bits",
                  off(st, st->p));
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80))
      break;
  }
  st->p = p;
  *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
  return 0;
}

static int rd_int(dstate *st, int64_t *out) {
  const uint8_t *at = st->p;
  int rc = rd_long(st, out);
  if (rc)
    return rc;
  if (*out < INT32_MIN || *out > INT32_MAX)
    return derr(st, KJB_EBAD_VARINT, "int at byte %zu overflows 32 bits: %lld", off(st, at),
                (long long)*out);
  return 0;
}

/* Reads a byte count and checks that many bytes are there, before
 * anything is allocated for them. */
static int rd_len(dstate *st, size_t *out) {
  const uint8_t *at = st->p;
  int64_t n;
  int rc = rd_long(st, &n);
  if (rc)
    return rc;
  if (n < 0)
    return derr(st, KJB_EBAD_LENGTH, "negative length %lld at byte %zu", (long long)n,
                off(st, at));
  if ((uint64_t)n > left(st))
    return derr(st, KJB_EBAD_LENGTH, "length %lld at byte %zu exceeds the %zu bytes left",
                (long long)n, off(st, at), left(st));
  *out = (size_t)n;
  return 0;
}

static int rd_bool(dstate *st, bool *out) {
  int rc = need(st, 1, "boolean");
  if (rc)
    return rc;
  uint8_t b = *st->p;
  if (b > 1)
    return derr(st, KJB_EBAD_VALUE, "invalid boolean %u at byte %zu", b, off(st, st->p));
  st->p++;
  *out = b;
  return 0;
}

static int rd_float(dstate *st, float *out) {
  int rc = need(st, 4, "float");
  if (rc)
    return rc;
  uint32_t u = le32(st->p);
  memcpy(out, &u, 4);
  st->p += 4;
  return 0;
}

static int rd_double(dstate *st, double *out) {
  int rc = need(st, 8, "double");
  if (rc)
    return rc;
  uint64_t u = (uint64_t)le32(st->p) | (uint64_t)le32(st->p + 4) << 32;
  memcpy(out, &u, 8);
  st->p += 8;
  return 0;
}

/* Reads a block header of an array or map: the item count (0 ends the
 * value) and, for negative counts, the block's byte size. Rejects counts
 * the remaining bytes cannot hold, or zero-byte items past the datum's
 * budget, so nothing huge is allocated. */
static int rd_block(dstate *st, size_t item_min, size_t *count,
                    const uint8_t **block_end) {
  const uint8_t *at = st->p;
  int64_t n;
  int rc = rd_long(st, &n);
  if (rc)
    return rc;
  *block_end = NULL;
  if (n < 0) {
    if (n == INT64_MIN)
      return derr(st, KJB_EBAD_LENGTH, "block count %lld at byte %zu is out of range",
                  (long long)n, off(st, at));
    n = -n;
    const uint8_t *sat = st->p;
    int64_t size;
    rc = rd_long(st, &size);
    if (rc)
      return rc;
    if (size < 0)
      return derr(st, KJB_EBAD_LENGTH, "negative block size %lld at byte %zu", (long long)size,
                  off(st, sat));
    if ((uint64_t)size > left(st))
      return derr(st, KJB_EBAD_LENGTH, "block size %lld at byte %zu exceeds the %zu bytes left",
                  (long long)size, off(st, sat), left(st));
    *block_end = st->p + size;
  }
  if (item_min && (uint64_t)n > left(st) / item_min)
    return derr(st, KJB_EBAD_LENGTH, "block of %lld items at byte %zu exceeds the %zu bytes left",
                (long long)n, off(st, at), left(st));
  if (!item_min) {
    if ((uint64_t)n > st->zero_left)
      return derr(st, KJB_EBAD_LENGTH,
                  "block of %lld zero-byte items at byte %zu exceeds the limit of %d per record",
                  (long long)n, off(st, at), ZERO_SIZE_ITEMS_MAX);
    st->zero_left -= (size_t)n;
  }
  *count = (size_t)n;
  return 0;
}

static int check_block_end(dstate *st, const uint8_t *block_end, const uint8_t *start) {
  if (block_end && st->p != block_end)
    return derr(st, KJB_EBAD_LENGTH, "block at byte %zu declares %zu bytes but holds %zu",
                off(st, start), (size_t)(block_end - start), (size_t)(st->p - start));
  return 0;
}

static int enter(dstate *st) {
  if (++st->depth > MAX_DEPTH)
    return derr(st, KJB_EBAD_VALUE, "nesting too deep at byte %zu (limit %d)", off(st, st->p),
                MAX_DEPTH);
  return 0;
}

/* Steps over a datum of writer type w that the reader does not want:
 * structure, lengths and indexes are checked, contents are not. */
static int skip(dstate *st, const kjb_snode *w) {
  int rc = 0;
  int64_t v = 0;
  size_t n = 0;
  switch (w->type) {
  case KJB_S_NULL:
    return 0;
  case KJB_S_BOOLEAN: {
    bool b;
    return rd_bool(st, &b);
  }
  case KJB_S_INT:
    return rd_int(st, &v);
  case KJB_S_LONG:
    return rd_long(st, &v);
  case KJB_S_FLOAT:
    n = 4;
    goto fixed_bytes;
  case KJB_S_DOUBLE:
    n = 8;
    goto fixed_bytes;
  case KJB_S_FIXED:
    n = w->fixed_size;
  fixed_bytes:
    if ((rc = need(st, n, kjb_avro_type_name(w))))
      return rc;
    st->p += n;
    return 0;
  case KJB_S_BYTES:
  case KJB_S_STRING:
    if ((rc = rd_len(st, &n)))
      return rc;
    st->p += n;
    return 0;
  case KJB_S_ENUM: {
    const uint8_t *at = st->p;
    if ((rc = rd_long(st, &v)))
      return rc;
    if (v < 0 || (uint64_t)v >= w->nsymbols)
      return derr(st, KJB_EBAD_ENUM_INDEX, "enum index %lld at byte %zu is out of range (%zu symbols)",
                  (long long)v, off(st, at), w->nsymbols);
    return 0;
  }
  case KJB_S_UNION: {
    const uint8_t *at = st->p;
    if ((rc = rd_long(st, &v)))
      return rc;
    if (v < 0 || (uint64_t)v >= w->nbranches)
      return derr(st, KJB_EBAD_UNION_INDEX,
                  "union index %lld at byte %zu is out of range (%zu branches)", (long long)v,
                  off(st, at), w->nbranches);
    return skip(st, w->branches[v]);
  }
  case KJB_S_RECORD:
    if ((rc = enter(st)))
      return rc;
    for (size_t i = 0; i < w->nfields; i++)
      if ((rc = skip(st, w->fields[i].type)))
        return rc;
    st->depth--;
    return 0;
  case KJB_S_ARRAY:
  case KJB_S_MAP: {
    if ((rc = enter(st)))
      return rc;
    int is_map = w->type == KJB_S_MAP;
    size_t item_min = min_size(w->items, 0) + (size_t)is_map;
    for (;;) {
      size_t count;
      const uint8_t *block_end;
      if ((rc = rd_block(st, item_min, &count, &block_end)))
        return rc;
      if (count == 0)
        break;
      if (block_end) {
        st->p = block_end;
        continue;
      }
      for (size_t i = 0; i < count; i++) {
        if (is_map && (rc = rd_len(st, &n)) == 0)
          st->p += n;
        if (rc || (rc = skip(st, w->items)))
          return rc;
      }
    }
    st->depth--;
    return 0;
  }
  }
  return 0;
}

/* Error paths are kept out of line so that the decoding loop stays small. */
#define COLD __attribute__((cold, noinline))

static COLD int fmt_fail(dstate *st, int f, const kjb_snode *r, const uint8_t *at,
                         const char *val) {
  if (f == FMT_NOMEM)
    return nomem(st);
  return derr(st, KJB_EBAD_VALUE, "%s %s at byte %zu is out of range", logical_name(r->logical),
              val, off(st, at));
}

static COLD int int_fail(dstate *st, int f, const kjb_snode *r, const uint8_t *at, int64_t v) {
  char num[24];
  snprintf(num, sizeof num, "%lld", (long long)v);
  return fmt_fail(st, f, r, at, num);
}

static COLD int bytes_fail(dstate *st, int f, const kjb_snode *r, const uint8_t *at, size_t n) {
  char what[32];
  snprintf(what, sizeof what, "of %zu bytes", n);
  return fmt_fail(st, f, r, at, what);
}

static int dec(dstate *st, const plan *p, kjb_value *out);

__attribute__((noinline)) static int dec_array(dstate *st, const plan *p, kjb_value *out) {
  int rc = enter(st);
  if (rc)
    return rc;
  kjb_value **items = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    const uint8_t *block_end;
    size_t count;
    if ((rc = rd_block(st, p->item_min, &count, &block_end)))
      return rc;
    if (count == 0)
      break;
    const uint8_t *block_start = st->p;
    if (n + count > cap) {
      size_t ncap = cap * 2 > n + count ? cap * 2 : n + count;
      kjb_value **nitems = kjb_arena_alloc(st->a, ncap * sizeof *nitems);
      if (!nitems)
        return nomem(st);
      if (n)
        memcpy(nitems, items, n * sizeof *items);
      items = nitems;
      cap = ncap;
    }
    kjb_value *vals = kjb_arena_alloc(st->a, count * sizeof *vals);
    if (!vals)
      return nomem(st);
    seg *s = &st->segs[st->nseg++];
    s->name = NULL;
    for (size_t i = 0; i < count; i++) {
      s->index = n + i;
      if ((rc = dec(st, p->items, &vals[i])))
        return rc;
      items[n + i] = &vals[i];
    }
    st->nseg--;
    n += count;
    if ((rc = check_block_end(st, block_end, block_start)))
      return rc;
  }
  st->depth--;
  out->type = KJB_V_ARRAY;
  out->u.arr.items = items;
  out->u.arr.n = n;
  return 0;
}

__attribute__((noinline)) static int dec_map(dstate *st, const plan *p, kjb_value *out) {
  int rc = enter(st);
  if (rc)
    return rc;
  kjb_member *members = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    const uint8_t *block_end;
    size_t count;
    if ((rc = rd_block(st, p->item_min, &count, &block_end)))
      return rc;
    if (count == 0)
      break;
    const uint8_t *block_start = st->p;
    if (n + count > cap) {
      size_t ncap = cap * 2 > n + count ? cap * 2 : n + count;
      kjb_member *nm = kjb_arena_alloc(st->a, ncap * sizeof *nm);
      if (!nm)
        return nomem(st);
      if (n)
        memcpy(nm, members, n * sizeof *members);
      members = nm;
      cap = ncap;
    }
    kjb_value *vals = kjb_arena_alloc(st->a, count * sizeof *vals);
    if (!vals)
      return nomem(st);
    for (size_t i = 0; i < count; i++) {
      size_t klen = 0;
      if ((rc = rd_len(st, &klen)))
        return rc;
      long bad = kjb_utf8_invalid_at((const char *)st->p, klen);
      if (bad >= 0)
        return derr(st, KJB_EINVALID_UTF8, "invalid utf-8 in map key at byte %zu",
                    off(st, st->p) + (size_t)bad);
      char *key = kjb_arena_strndup(st->a, (const char *)st->p, klen);
      if (!key)
        return nomem(st);
      st->p += klen;
      st->segs[st->nseg++].name = key;
      if ((rc = dec(st, p->items, &vals[i])))
        return rc;
      st->nseg--;
      members[n + i] = (kjb_member){key, klen, &vals[i]};
    }
    n += count;
    if ((rc = check_block_end(st, block_end, block_start)))
      return rc;
  }
  st->depth--;
  out->type = KJB_V_OBJECT;
  out->u.obj.members = members;
  out->u.obj.n = n;
  return 0;
}

__attribute__((noinline)) static int dec_record(dstate *st, const plan *p, kjb_value *out) {
  if (p->failed)
    return derr(st, KJB_ESCHEMA_MISMATCH, "%s", p->failed);
  int rc = enter(st);
  if (rc)
    return rc;
  const kjb_snode *w = p->w, *r = p->r;
  size_t nout = r->nfields;
  kjb_member *m = kjb_arena_alloc(st->a, nout * (sizeof *m + sizeof(kjb_value)));
  if (!m)
    return nomem(st);
  kjb_value *vals = (kjb_value *)(m + nout);
  memcpy(m, p->tmpl, nout * sizeof *m);
  seg *s = &st->segs[st->nseg++];
  for (size_t i = 0; i < w->nfields; i++) {
    const rstep *step = &p->steps[i];
    s->name = step->wfield->name;
    if (step->p) {
      s->name = m[step->out].key;
      if ((rc = dec(st, step->p, &vals[step->out])))
        return rc;
      m[step->out].val = &vals[step->out];
    } else if ((rc = skip(st, step->wfield->type))) {
      return rc;
    }
  }
  st->nseg--;
  st->depth--;
  out->type = KJB_V_OBJECT;
  out->u.obj.members = m;
  out->u.obj.n = nout;
  return 0;
}

static int dec(dstate *st, const plan *p, kjb_value *out) {
  const uint8_t *at = st->p;
  int64_t v = 0;
  float f = 0;
  double d = 0;
  size_t n = 0;
  int rc, fr;
  switch (p->op) {
  case OP_NULL:
    out->type = KJB_V_NULL;
    return 0;
  case OP_BOOL:
    out->type = KJB_V_BOOL;
    return rd_bool(st, &out->u.b);
  case OP_INT:
  case OP_LONG:
    if ((rc = p->op == OP_INT ? rd_int(st, &v) : rd_long(st, &v)))
      return rc;
    if (p->r->logical == KJB_L_NONE) {
      out->type = KJB_V_INT;
      out->u.i = v;
      return 0;
    }
    if ((fr = fmt_int(st->a, p->r, v, out)))
      return int_fail(st, fr, p->r, at, v);
    return 0;
  case OP_INT_FLOAT:
  case OP_INT_DOUBLE:
    if ((rc = rd_int(st, &v)))
      return rc;
    set_real(out, p->op == OP_INT_FLOAT ? (double)(float)v : (double)v, p->op == OP_INT_FLOAT);
    return 0;
  case OP_LONG_FLOAT:
  case OP_LONG_DOUBLE:
    if ((rc = rd_long(st, &v)))
      return rc;
    set_real(out, p->op == OP_LONG_FLOAT ? (double)(float)v : (double)v,
             p->op == OP_LONG_FLOAT);
    return 0;
  case OP_FLOAT:
  case OP_FLOAT_DOUBLE:
    if ((rc = rd_float(st, &f)))
      return rc;
    set_real(out, (double)f, p->op == OP_FLOAT);
    return 0;
  case OP_DOUBLE:
    if ((rc = rd_double(st, &d)))
      return rc;
    set_real(out, d, 0);
    return 0;
  case OP_BYTES:
    if ((rc = rd_len(st, &n)))
      return rc;
    if ((fr = fmt_bytes(st->a, p->r, st->p, n, out)))
      return bytes_fail(st, fr, p->r, at, n);
    st->p += n;
    return 0;
  case OP_STRING: {
    if ((rc = rd_len(st, &n)))
      return rc;
    long bad = kjb_utf8_invalid_at((const char *)st->p, n);
    if (bad >= 0)
      return derr(st, KJB_EINVALID_UTF8, "invalid utf-8 at byte %zu",
                  off(st, st->p) + (size_t)bad);
    if (set_str(st->a, (const char *)st->p, n, out))
      return nomem(st);
    st->p += n;
    return 0;
  }
  case OP_FIXED:
    n = p->w->fixed_size;
    if ((rc = need(st, n, p->w->fullname)))
      return rc;
    if ((fr = fmt_bytes(st->a, p->r, st->p, n, out)))
      return fmt_fail(st, fr, p->r, at, "");
    st->p += n;
    return 0;
  case OP_ENUM: {
    if ((rc = rd_long(st, &v)))
      return rc;
    if (v < 0 || (uint64_t)v >= p->w->nsymbols)
      return derr(st, KJB_EBAD_ENUM_INDEX, "enum index %lld at byte %zu is out of range (%zu symbols)",
                  (long long)v, off(st, at), p->w->nsymbols);
    int k = p->enum_map[v];
    if (k < 0)
      return derr(st, KJB_ESCHEMA_MISMATCH,
                  "enum symbol \"%s\" at byte %zu is not in the reader enum \"%s\", which has no default",
                  p->w->symbols[v], off(st, at), p->r->fullname);
    out->type = KJB_V_STRING;
    out->u.s.ptr = p->r->symbols[k];
    out->u.s.len = p->sym_len[k];
    return 0;
  }
  case OP_ARRAY:
    return dec_array(st, p, out);
  case OP_MAP:
    return dec_map(st, p, out);
  case OP_RECORD:
    return dec_record(st, p, out);
  case OP_WUNION: {
    if ((rc = rd_long(st, &v)))
      return rc;
    if (v < 0 || (uint64_t)v >= p->w->nbranches)
      return derr(st, KJB_EBAD_UNION_INDEX,
                  "union index %lld at byte %zu is out of range (%zu branches)", (long long)v,
                  off(st, at), p->w->nbranches);
    if (!p->branches[v])
      return derr(st, KJB_ESCHEMA_MISMATCH, "union branch %lld (\"%s\") at byte %zu: %s",
                  (long long)v, kjb_avro_type_name(p->w->branches[v]), off(st, at),
                  p->branch_err[v]);
    return dec(st, p->branches[v], out);
  }
  }
  return derr(st, KJB_EINTERNAL, "bad plan");
}

int kjb_avro_decode(const kjb_resolver *r, const uint8_t *buf, size_t len, kjb_arena *arena,
                    kjb_value **out, kjb_err *err) {
  kjb_err local;
  dstate st;
  st.buf = st.p = buf;
  st.end = buf + len;
  st.a = arena;
  st.err = err ? err : &local;
  st.depth = 0;
  st.nseg = 0;
  st.zero_left = ZERO_SIZE_ITEMS_MAX;
  kjb_value *v = kjb_arena_alloc(arena, sizeof *v);
  if (!v)
    return nomem(&st);
  int rc = dec(&st, r->root, v);
  if (rc)
    return rc;
  if (st.p != st.end)
    return kjb_err_set(err, KJB_ETRAILING_BYTES, "%zu trailing bytes at byte %zu", left(&st),
                       off(&st, st.p));
  *out = v;
  return 0;
}

/* ---- Field defaults ---- */

__attribute__((format(printf, 2, 3))) static int deferr(kjb_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = kjb_err_vset(err, KJB_ESCHEMA, fmt, ap);
  va_end(ap);
  return rc;
}

static const char *json_kind(const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a real number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

static int expect(kjb_err *err, const kjb_snode *n, const json_t *j) {
  return deferr(err, "expected %s, got %s", kjb_avro_type_name(n), json_kind(j));
}

static int defval(const kjb_snode *n, const json_t *j, kjb_arena *a, kjb_value *out,
                  kjb_err *err);

static int def_fmt(int fr, const kjb_snode *n, kjb_err *err) {
  if (fr == FMT_NOMEM)
    return kjb_err_set(err, KJB_ENOMEM, "out of memory");
  return deferr(err, "%s out of range", logical_name(n->logical));
}

static int def_record(const kjb_snode *n, const json_t *j, kjb_arena *a, kjb_value *out,
                      kjb_err *err) {
  if (!json_is_object(j))
    return expect(err, n, j);
  kjb_member *m = kjb_arena_alloc(a, n->nfields * (sizeof *m + sizeof(kjb_value)));
  if (!m)
    return kjb_err_set(err, KJB_ENOMEM, "out of memory");
  kjb_value *vals = (kjb_value *)(m + n->nfields);
  for (size_t i = 0; i < n->nfields; i++) {
    const kjb_sfield *f = &n->fields[i];
    m[i].key = f->name;
    m[i].key_len = strlen(f->name);
    m[i].val = &vals[i];
    const json_t *fj = json_object_get(j, f->name);
    if (!fj) {
      if (!f->default_value)
        return deferr(err, "field \"%s\" missing", f->name);
      m[i].val = f->default_value;
      continue;
    }
    int rc = defval(f->type, fj, a, &vals[i], err);
    if (rc)
      return kjb_err_prefix(err, "field \"%s\"", f->name);
  }
  out->type = KJB_V_OBJECT;
  out->u.obj.members = m;
  out->u.obj.n = n->nfields;
  return 0;
}

static int defval(const kjb_snode *n, const json_t *j, kjb_arena *a, kjb_value *out,
                  kjb_err *err) {
  int fr;
  switch (n->type) {
  case KJB_S_NULL:
    if (!json_is_null(j))
      return expect(err, n, j);
    out->type = KJB_V_NULL;
    return 0;
  case KJB_S_BOOLEAN:
    if (!json_is_boolean(j))
      return expect(err, n, j);
    out->type = KJB_V_BOOL;
    out->u.b = json_is_true(j);
    return 0;
  case KJB_S_INT:
  case KJB_S_LONG: {
    if (!json_is_integer(j))
      return expect(err, n, j);
    json_int_t v = json_integer_value(j);
    if (n->type == KJB_S_INT && (v < INT32_MIN || v > INT32_MAX))
      return deferr(err, "%lld is out of range for int", (long long)v);
    if ((fr = fmt_int(a, n, v, out)))
      return def_fmt(fr, n, err);
    return 0;
  }
  case KJB_S_FLOAT:
  case KJB_S_DOUBLE: {
    double d;
    const char *s = json_string_value(j);
    if (json_is_number(j))
      d = json_number_value(j);
    else if (s && strcmp(s, "NaN") == 0)
      d = NAN;
    else if (s && strcmp(s, "Infinity") == 0)
      d = INFINITY;
    else if (s && strcmp(s, "-Infinity") == 0)
      d = -INFINITY;
    else
      return expect(err, n, j);
    set_real(out, n->type == KJB_S_FLOAT ? (double)(float)d : d, n->type == KJB_S_FLOAT);
    return 0;
  }
  case KJB_S_STRING: {
    if (!json_is_string(j))
      return expect(err, n, j);
    if (set_str(a, json_string_value(j), json_string_length(j), out))
      return kjb_err_set(err, KJB_ENOMEM, "out of memory");
    return 0;
  }
  case KJB_S_BYTES:
  case KJB_S_FIXED: {
    /* Bytes are written as a string whose code points 0-255 are the
     * byte values. */
    if (!json_is_string(j))
      return expect(err, n, j);
    const unsigned char *s = (const unsigned char *)json_string_value(j);
    size_t slen = json_string_length(j), blen = 0;
    uint8_t *bytes = kjb_arena_alloc(a, slen + 1);
    if (!bytes)
      return kjb_err_set(err, KJB_ENOMEM, "out of memory");
    for (size_t i = 0; i < slen; i++) {
      if (s[i] < 0x80) {
        bytes[blen++] = s[i];
      } else if ((s[i] == 0xC2 || s[i] == 0xC3) && i + 1 < slen) {
        bytes[blen++] = (uint8_t)((s[i] & 0x03) << 6 | (s[i + 1] & 0x3F));
        i++;
      } else {
        return deferr(err, "bytes default has a character above U+00FF");
      }
    }
    if (n->type == KJB_S_FIXED && blen != n->fixed_size)
      return deferr(err, "fixed \"%s\" needs %zu bytes, default has %zu", n->fullname,
                    n->fixed_size, blen);
    if ((fr = fmt_bytes(a, n, bytes, blen, out)))
      return def_fmt(fr, n, err);
    return 0;
  }
  case KJB_S_ENUM: {
    const char *s = json_string_value(j);
    for (size_t i = 0; s && i < n->nsymbols; i++) {
      if (strcmp(n->symbols[i], s) == 0) {
        out->type = KJB_V_STRING;
        out->u.s.ptr = n->symbols[i];
        out->u.s.len = strlen(s);
        return 0;
      }
    }
    return deferr(err, "not a symbol of enum \"%s\"", n->fullname);
  }
  case KJB_S_ARRAY: {
    if (!json_is_array(j))
      return expect(err, n, j);
    size_t cnt = json_array_size(j);
    kjb_value **items = kjb_arena_alloc(a, cnt * sizeof *items);
    kjb_value *vals = kjb_arena_alloc(a, cnt * sizeof *vals);
    if (!items || !vals)
      return kjb_err_set(err, KJB_ENOMEM, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
      items[i] = &vals[i];
      if (defval(n->items, json_array_get(j, i), a, &vals[i], err))
        return kjb_err_prefix(err, "item %zu", i);
    }
    out->type = KJB_V_ARRAY;
    out->u.arr.items = items;
    out->u.arr.n = cnt;
    return 0;
  }
  case KJB_S_MAP: {
    if (!json_is_object(j))
      return expect(err, n, j);
    size_t cnt = json_object_size(j), i = 0;
    kjb_member *m = kjb_arena_alloc(a, cnt * (sizeof *m + sizeof(kjb_value)));
    if (!m)
      return kjb_err_set(err, KJB_ENOMEM, "out of memory");
    kjb_value *vals = (kjb_value *)(m + cnt);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)j, key, val) {
      m[i].key = kjb_arena_strndup(a, key, strlen(key));
      if (!m[i].key)
        return kjb_err_set(err, KJB_ENOMEM, "out of memory");
      m[i].key_len = strlen(key);
      m[i].val = &vals[i];
      if (defval(n->items, val, a, &vals[i], err))
        return kjb_err_prefix(err, "key \"%s\"", key);
      i++;
    }
    out->type = KJB_V_OBJECT;
    out->u.obj.members = m;
    out->u.obj.n = cnt;
    return 0;
  }
  case KJB_S_RECORD:
    return def_record(n, j, a, out, err);
  case KJB_S_UNION:
    /* A union's default belongs to its first branch. */
    if (defval(n->branches[0], j, a, out, err))
      return kjb_err_prefix(err, "union default must match its first branch \"%s\"",
                            kjb_avro_type_name(n->branches[0]));
    return 0;
  }
  return deferr(err, "unknown type");
}

int kjb_avro_default_value(const kjb_snode *n, const json_t *def, kjb_arena *a,
                           kjb_value **out, kjb_err *err) {
  kjb_value *v = kjb_arena_alloc(a, sizeof *v);
  if (!v)
    return kjb_err_set(err, KJB_ENOMEM, "out of memory");
  int rc = defval(n, def, a, v, err);
  if (rc == 0)
    *out = v;
  return rc;
}
