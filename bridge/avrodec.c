/* Avro decoding, part three: runs a resolver's plan (avroresolve.c) over
 * one datum and builds natural JSON values in an arena (or, for a datum
 * that does not decode, the values before the failure). Lifetimes of the
 * values are described in avrodec_int.h. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avrodec_int.h"

/* Arrays of items that take no bytes (null, empty records) could claim
 * any count; this caps what all the arrays of one datum may hold
 * together, so that nesting such arrays cannot multiply it. Fuzzing
 * builds (tests/fuzz) use a smaller cap so that every input stays fast. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define ZERO_SIZE_ITEMS_MAX (1 << 12)
#else
#define ZERO_SIZE_ITEMS_MAX (1 << 20)
#endif

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
  /* kjb_avro_decode_partial only: where the failure is, and the record,
   * array or map value its unwinding kept last (see keep_record). */
  kjb_avro_stop *stop;
  const kjb_value *kept;
  seg segs[KJB_AVRO_MAX_DEPTH + 1];
} dstate;

static size_t off(const dstate *st, const uint8_t *p) { return (size_t)(p - st->buf); }
static size_t left(const dstate *st) { return (size_t)(st->end - st->p); }

/* Sets err with the field path of the value being decoded as context;
 * at is the failing byte the message names (for kjb_avro_stop). */
__attribute__((format(printf, 4, 5), cold, noinline)) static int
derr(dstate *st, kjb_errcode code, const uint8_t *at, const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char path[sizeof st->stop->path];
  size_t n = 0;
  path[0] = '\0';
  for (int i = 0; i < st->nseg && n < sizeof path; i++) {
    const seg *s = &st->segs[i];
    int w = s->name ? snprintf(path + n, sizeof path - n, "%s%s", n ? "." : "", s->name)
                    : snprintf(path + n, sizeof path - n, "[%zu]", s->index);
    if (w < 0)
      break;
    n += (size_t)w;
  }
  if (st->stop) {
    st->stop->byte = off(st, at);
    memcpy(st->stop->path, path, sizeof path);
  }
  if (st->nseg == 0)
    return kjb_err_set(st->err, code, "%s", msg);
  return kjb_err_set(st->err, code, "field \"%s\": %s", path, msg);
}

static int nomem(dstate *st) { return derr(st, KJB_ENOMEM, st->p, "out of memory"); }

static int need(dstate *st, size_t n, const char *what) {
  if (left(st) < n)
    return derr(st, KJB_ETRUNCATED, st->p, "truncated at byte %zu: %s needs %zu bytes, %zu left",
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
      return derr(st, KJB_ETRUNCATED, st->p, "truncated at byte %zu: data ends inside a varint",
                  off(st, st->p));
    uint8_t b = *p++;
    if (i == 9 && (b & 0x80))
      return derr(st, KJB_EBAD_VARINT, st->p, "varint at byte %zu is longer than 10 bytes",
                  off(st, st->p));
    if (i == 9 && b > 1)
      return derr(st, KJB_EBAD_VARINT, st->p, "varint at byte %zu overflows 64 bits",
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
    return derr(st, KJB_EBAD_VARINT, at, "int at byte %zu overflows 32 bits: %lld", off(st, at),
                (long long)*out);
  return 0;
}

/* Reads a byte count and checks that many bytes are there, before
 * anything is allocated for them. */
/* The n bytes at st->p must be text that PostgreSQL can store: valid
 * UTF-8 without NUL characters (U+0000 is valid UTF-8, but neither text
 * nor jsonb can hold it, and a record carrying one would fail its insert
 * forever). what names the place ("" or " in map key"). */
static int check_text(dstate *st, size_t n, const char *what) {
  long bad = kjb_utf8_invalid_at((const char *)st->p, n);
  if (bad >= 0)
    return derr(st, KJB_EINVALID_UTF8, st->p + (size_t)bad, "invalid utf-8%s at byte %zu", what,
                off(st, st->p) + (size_t)bad);
  const uint8_t *nul = memchr(st->p, 0, n);
  if (nul)
    return derr(st, KJB_EINVALID_UTF8, nul,
                "NUL character (U+0000)%s at byte %zu, which postgresql "
                "text cannot hold",
                what, off(st, nul));
  return 0;
}

static int rd_len(dstate *st, size_t *out) {
  const uint8_t *at = st->p;
  int64_t n;
  int rc = rd_long(st, &n);
  if (rc)
    return rc;
  if (n < 0)
    return derr(st, KJB_EBAD_LENGTH, at, "negative length %lld at byte %zu", (long long)n,
                off(st, at));
  if ((uint64_t)n > left(st))
    return derr(st, KJB_EBAD_LENGTH, at, "length %lld at byte %zu exceeds the %zu bytes left",
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
    return derr(st, KJB_EBAD_VALUE, st->p, "invalid boolean %u at byte %zu", b, off(st, st->p));
  st->p++;
  *out = b;
  return 0;
}

static int rd_float(dstate *st, float *out) {
  int rc = need(st, 4, "float");
  if (rc)
    return rc;
  uint32_t u = kjb_avrodec_le32(st->p);
  memcpy(out, &u, 4);
  st->p += 4;
  return 0;
}

static int rd_double(dstate *st, double *out) {
  int rc = need(st, 8, "double");
  if (rc)
    return rc;
  uint64_t u = (uint64_t)kjb_avrodec_le32(st->p) | (uint64_t)kjb_avrodec_le32(st->p + 4) << 32;
  memcpy(out, &u, 8);
  st->p += 8;
  return 0;
}

/* Reads a block header of an array or map: the item count (0 ends the
 * value) and, for negative counts, the block's byte size. Rejects counts
 * the remaining bytes cannot hold, or zero-byte items past the datum's
 * budget, so nothing huge is allocated. */
static int rd_block(dstate *st, size_t item_min, size_t *count, const uint8_t **block_end) {
  const uint8_t *at = st->p;
  int64_t n;
  int rc = rd_long(st, &n);
  if (rc)
    return rc;
  *block_end = NULL;
  if (n < 0) {
    if (n == INT64_MIN)
      return derr(st, KJB_EBAD_LENGTH, at, "block count %lld at byte %zu is out of range",
                  (long long)n, off(st, at));
    n = -n;
    const uint8_t *sat = st->p;
    int64_t size;
    rc = rd_long(st, &size);
    if (rc)
      return rc;
    if (size < 0)
      return derr(st, KJB_EBAD_LENGTH, sat, "negative block size %lld at byte %zu", (long long)size,
                  off(st, sat));
    if ((uint64_t)size > left(st))
      return derr(st, KJB_EBAD_LENGTH, sat,
                  "block size %lld at byte %zu exceeds the %zu bytes left", (long long)size,
                  off(st, sat), left(st));
    *block_end = st->p + size;
  }
  if (item_min && (uint64_t)n > left(st) / item_min)
    return derr(st, KJB_EBAD_LENGTH, at,
                "block of %lld items at byte %zu exceeds the %zu bytes left", (long long)n,
                off(st, at), left(st));
  if (!item_min) {
    if ((uint64_t)n > st->zero_left)
      return derr(st, KJB_EBAD_LENGTH, at,
                  "block of %lld zero-byte items at byte %zu exceeds the limit of %d per record",
                  (long long)n, off(st, at), ZERO_SIZE_ITEMS_MAX);
    st->zero_left -= (size_t)n;
  }
  *count = (size_t)n;
  return 0;
}

static int check_block_end(dstate *st, const uint8_t *block_end, const uint8_t *start) {
  if (block_end && st->p != block_end)
    return derr(st, KJB_EBAD_LENGTH, start, "block at byte %zu declares %zu bytes but holds %zu",
                off(st, start), (size_t)(block_end - start), (size_t)(st->p - start));
  return 0;
}

static int enter(dstate *st) {
  if (++st->depth > KJB_AVRO_MAX_DEPTH)
    return derr(st, KJB_EBAD_VALUE, st->p, "nesting too deep at byte %zu (limit %d)",
                off(st, st->p), KJB_AVRO_MAX_DEPTH);
  return 0;
}

/* Steps over a datum of writer type w that the reader does not want:
 * structure, lengths and indexes are checked, contents are not. */
static int skip(dstate *st, const kjb_snode *w) {
  int rc = 0;
  int64_t v = 0;
  size_t n = 0;
  switch (w->type) {
  case KJB_S_NULL: return 0;
  case KJB_S_BOOLEAN: {
    bool b;
    return rd_bool(st, &b);
  }
  case KJB_S_INT: return rd_int(st, &v);
  case KJB_S_LONG: return rd_long(st, &v);
  case KJB_S_FLOAT: n = 4; goto fixed_bytes;
  case KJB_S_DOUBLE: n = 8; goto fixed_bytes;
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
      return derr(st, KJB_EBAD_ENUM_INDEX, at,
                  "enum index %lld at byte %zu is out of range (%zu symbols)", (long long)v,
                  off(st, at), w->nsymbols);
    return 0;
  }
  case KJB_S_UNION: {
    const uint8_t *at = st->p;
    if ((rc = rd_long(st, &v)))
      return rc;
    if (v < 0 || (uint64_t)v >= w->nbranches)
      return derr(st, KJB_EBAD_UNION_INDEX, at,
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
    size_t item_min = kjb_avrodec_min_size(w->items, 0) + (size_t)is_map;
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
  if (f == KJB_FMT_NOMEM)
    return nomem(st);
  return derr(st, KJB_EBAD_VALUE, at, "%s %s at byte %zu is out of range",
              kjb_avrodec_logical_name(r->logical), val, off(st, at));
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

static int dec(dstate *st, const kjb_plan *p, kjb_value *out);

/* Partial values (kjb_avro_decode_partial, when st->stop is set). As a
 * failure unwinds, each record, array and map it is inside becomes the
 * value of what it decoded so far, and its parent keeps that value as a
 * member; st->kept tells the parent whether its failing member was such
 * a value (a scalar that failed is left out). These run only once
 * decoding has failed, so decoding that succeeds pays nothing for them,
 * and they allocate at most one flag per field of each record. */

/* A record failed at writer step failed: its reader fields decoded by
 * the steps before, and the failing field's if kept, in reader order. */
static COLD int keep_record(dstate *st, int rc, const kjb_plan *p, kjb_member *m, kjb_value *vals,
                            size_t failed, kjb_value *out) {
  if (!st->stop)
    return rc;
  size_t nout = p->r->nfields;
  bool *done = kjb_arena_alloc(st->a, nout + 1);
  if (!done)
    return rc;
  memset(done, 0, nout);
  for (size_t i = 0; i < failed; i++)
    if (p->steps[i].p)
      done[p->steps[i].out] = true;
  const kjb_rstep *step = &p->steps[failed];
  if (step->p && st->kept == &vals[step->out]) {
    m[step->out].val = &vals[step->out];
    done[step->out] = true;
  }
  size_t n = 0;
  for (size_t k = 0; k < nout; k++)
    if (done[k])
      m[n++] = m[k];
  out->type = KJB_V_OBJECT;
  out->u.obj.members = m;
  out->u.obj.n = n;
  st->kept = out;
  return rc;
}

/* An array with n items decoded. When in_item, items[n] is the failing
 * item's value; otherwise the array's own structure failed, and an array
 * that holds nothing yet is left out, as the failing field itself. */
static COLD int keep_array(dstate *st, int rc, kjb_value **items, size_t n, bool in_item,
                           kjb_value *out) {
  if (!st->stop || (!in_item && n == 0))
    return rc;
  if (in_item && st->kept == items[n])
    n++;
  out->type = KJB_V_ARRAY;
  out->u.arr.items = items;
  out->u.arr.n = n;
  st->kept = out;
  return rc;
}

/* The same for a map with n entries decoded. */
static COLD int keep_map(dstate *st, int rc, kjb_member *members, size_t n, bool in_item,
                         kjb_value *out) {
  if (!st->stop || (!in_item && n == 0))
    return rc;
  if (in_item && st->kept == members[n].val)
    n++;
  out->type = KJB_V_OBJECT;
  out->u.obj.members = members;
  out->u.obj.n = n;
  st->kept = out;
  return rc;
}

__attribute__((noinline)) static int dec_array(dstate *st, const kjb_plan *p, kjb_value *out) {
  int rc = enter(st);
  if (rc)
    return rc;
  kjb_value **items = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    const uint8_t *block_end;
    size_t count;
    if ((rc = rd_block(st, p->item_min, &count, &block_end)))
      return keep_array(st, rc, items, n, false, out);
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
      items[n + i] = &vals[i];
      if ((rc = dec(st, p->items, &vals[i])))
        return keep_array(st, rc, items, n + i, true, out);
    }
    st->nseg--;
    n += count;
    if ((rc = check_block_end(st, block_end, block_start)))
      return keep_array(st, rc, items, n, false, out);
  }
  st->depth--;
  out->type = KJB_V_ARRAY;
  out->u.arr.items = items;
  out->u.arr.n = n;
  return 0;
}

__attribute__((noinline)) static int dec_map(dstate *st, const kjb_plan *p, kjb_value *out) {
  int rc = enter(st);
  if (rc)
    return rc;
  kjb_member *members = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    const uint8_t *block_end;
    size_t count;
    if ((rc = rd_block(st, p->item_min, &count, &block_end)))
      return keep_map(st, rc, members, n, false, out);
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
        return keep_map(st, rc, members, n + i, false, out);
      if ((rc = check_text(st, klen, " in map key")))
        return keep_map(st, rc, members, n + i, false, out);
      char *key = kjb_arena_strndup(st->a, (const char *)st->p, klen);
      if (!key)
        return nomem(st);
      st->p += klen;
      members[n + i] = (kjb_member){key, klen, &vals[i]};
      st->segs[st->nseg++].name = key;
      if ((rc = dec(st, p->items, &vals[i])))
        return keep_map(st, rc, members, n + i, true, out);
      st->nseg--;
    }
    n += count;
    if ((rc = check_block_end(st, block_end, block_start)))
      return keep_map(st, rc, members, n, false, out);
  }
  st->depth--;
  out->type = KJB_V_OBJECT;
  out->u.obj.members = members;
  out->u.obj.n = n;
  return 0;
}

__attribute__((noinline)) static int dec_record(dstate *st, const kjb_plan *p, kjb_value *out) {
  if (p->failed)
    return derr(st, KJB_ESCHEMA_MISMATCH, st->p, "%s", p->failed);
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
    const kjb_rstep *step = &p->steps[i];
    s->name = step->wfield->name;
    if (step->p) {
      s->name = m[step->out].key;
      if ((rc = dec(st, step->p, &vals[step->out])))
        return keep_record(st, rc, p, m, vals, i, out);
      m[step->out].val = &vals[step->out];
    } else if ((rc = skip(st, step->wfield->type))) {
      return keep_record(st, rc, p, m, vals, i, out);
    }
  }
  st->nseg--;
  st->depth--;
  out->type = KJB_V_OBJECT;
  out->u.obj.members = m;
  out->u.obj.n = nout;
  return 0;
}

static int dec(dstate *st, const kjb_plan *p, kjb_value *out) {
  const uint8_t *at = st->p;
  int64_t v = 0;
  float f = 0;
  double d = 0;
  size_t n = 0;
  int rc, fr;
  switch (p->op) {
  case KJB_OP_NULL: out->type = KJB_V_NULL; return 0;
  case KJB_OP_BOOL: out->type = KJB_V_BOOL; return rd_bool(st, &out->u.b);
  case KJB_OP_INT:
  case KJB_OP_LONG:
    if ((rc = p->op == KJB_OP_INT ? rd_int(st, &v) : rd_long(st, &v)))
      return rc;
    if (p->r->logical == KJB_L_NONE) {
      out->type = KJB_V_INT;
      out->u.i = v;
      return 0;
    }
    if ((fr = kjb_avrodec_fmt_int(st->a, p->r, v, out)))
      return int_fail(st, fr, p->r, at, v);
    return 0;
  case KJB_OP_INT_FLOAT:
  case KJB_OP_INT_DOUBLE:
    if ((rc = rd_int(st, &v)))
      return rc;
    kjb_avrodec_set_real(out, p->op == KJB_OP_INT_FLOAT ? (double)(float)v : (double)v,
                         p->op == KJB_OP_INT_FLOAT);
    return 0;
  case KJB_OP_LONG_FLOAT:
  case KJB_OP_LONG_DOUBLE:
    if ((rc = rd_long(st, &v)))
      return rc;
    kjb_avrodec_set_real(out, p->op == KJB_OP_LONG_FLOAT ? (double)(float)v : (double)v,
                         p->op == KJB_OP_LONG_FLOAT);
    return 0;
  case KJB_OP_FLOAT:
  case KJB_OP_FLOAT_DOUBLE:
    if ((rc = rd_float(st, &f)))
      return rc;
    kjb_avrodec_set_real(out, (double)f, p->op == KJB_OP_FLOAT);
    return 0;
  case KJB_OP_DOUBLE:
    if ((rc = rd_double(st, &d)))
      return rc;
    kjb_avrodec_set_real(out, d, 0);
    return 0;
  case KJB_OP_BYTES:
    if ((rc = rd_len(st, &n)))
      return rc;
    if ((fr = kjb_avrodec_fmt_bytes(st->a, p->r, st->p, n, out)))
      return bytes_fail(st, fr, p->r, at, n);
    st->p += n;
    return 0;
  case KJB_OP_STRING: {
    if ((rc = rd_len(st, &n)))
      return rc;
    if ((rc = check_text(st, n, "")))
      return rc;
    if (kjb_avrodec_set_str(st->a, (const char *)st->p, n, out))
      return nomem(st);
    st->p += n;
    return 0;
  }
  case KJB_OP_FIXED:
    n = p->w->fixed_size;
    if ((rc = need(st, n, p->w->fullname)))
      return rc;
    if ((fr = kjb_avrodec_fmt_bytes(st->a, p->r, st->p, n, out)))
      return fmt_fail(st, fr, p->r, at, "");
    st->p += n;
    return 0;
  case KJB_OP_ENUM: {
    if ((rc = rd_long(st, &v)))
      return rc;
    if (v < 0 || (uint64_t)v >= p->w->nsymbols)
      return derr(st, KJB_EBAD_ENUM_INDEX, at,
                  "enum index %lld at byte %zu is out of range (%zu symbols)", (long long)v,
                  off(st, at), p->w->nsymbols);
    int k = p->enum_map[v];
    if (k < 0)
      return derr(
          st, KJB_ESCHEMA_MISMATCH, at,
          "enum symbol \"%s\" at byte %zu is not in the reader enum \"%s\", which has no default",
          p->w->symbols[v], off(st, at), p->r->fullname);
    out->type = KJB_V_STRING;
    out->u.s.ptr = p->r->symbols[k];
    out->u.s.len = p->sym_len[k];
    return 0;
  }
  case KJB_OP_ARRAY: return dec_array(st, p, out);
  case KJB_OP_MAP: return dec_map(st, p, out);
  case KJB_OP_RECORD: return dec_record(st, p, out);
  case KJB_OP_WUNION: {
    if ((rc = rd_long(st, &v)))
      return rc;
    if (v < 0 || (uint64_t)v >= p->w->nbranches)
      return derr(st, KJB_EBAD_UNION_INDEX, at,
                  "union index %lld at byte %zu is out of range (%zu branches)", (long long)v,
                  off(st, at), p->w->nbranches);
    if (!p->branches[v])
      return derr(st, KJB_ESCHEMA_MISMATCH, at, "union branch %lld (\"%s\") at byte %zu: %s",
                  (long long)v, kjb_avro_type_name(p->w->branches[v]), off(st, at),
                  p->branch_err[v]);
    return dec(st, p->branches[v], out);
  }
  }
  return derr(st, KJB_EINTERNAL, st->p, "bad plan");
}

static void dstate_init(dstate *st, const uint8_t *buf, size_t len, kjb_arena *arena,
                        kjb_err *err) {
  st->buf = st->p = buf;
  st->end = buf + len;
  st->a = arena;
  st->err = err;
  st->depth = 0;
  st->nseg = 0;
  st->zero_left = ZERO_SIZE_ITEMS_MAX;
  st->stop = NULL; /* kept is only read when stop is set */
}

int kjb_avro_decode(const kjb_resolver *r, const uint8_t *buf, size_t len, kjb_arena *arena,
                    kjb_value **out, kjb_err *err) {
  kjb_err local;
  dstate st;
  dstate_init(&st, buf, len, arena, err ? err : &local);
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

int kjb_avro_decode_partial(const kjb_resolver *r, const uint8_t *buf, size_t len, kjb_arena *arena,
                            kjb_value **partial, kjb_avro_stop *stop, kjb_err *err) {
  kjb_err local;
  dstate st;
  dstate_init(&st, buf, len, arena, err ? err : &local);
  st.stop = stop;
  st.kept = NULL;
  *partial = NULL;
  kjb_value *v = kjb_arena_alloc(arena, sizeof *v);
  if (!v)
    return nomem(&st);
  int rc = dec(&st, r->root, v);
  if (rc) {
    if (st.kept == v)
      *partial = v;
    return rc;
  }
  *partial = v;
  if (st.p != st.end) {
    stop->byte = off(&st, st.p);
    stop->path[0] = '\0';
    return kjb_err_set(st.err, KJB_ETRAILING_BYTES, "%zu trailing bytes at byte %zu", left(&st),
                       off(&st, st.p));
  }
  return 0;
}
