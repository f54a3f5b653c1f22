/* Avro decoding, part four: field defaults, from the Avro spec's JSON
 * default encoding to the natural value the decoder would produce. See
 * avrodec_int.h. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avrodec_int.h"

/* ---- Field defaults ---- */

__attribute__((format(printf, 2, 3))) static int deferr(kjb_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = kjb_err_vset(err, KJB_ESCHEMA, fmt, ap);
  va_end(ap);
  return rc;
}

static int expect(kjb_err *err, const kjb_snode *n, const json_t *j) {
  return deferr(err, "expected %s, got %s", kjb_avro_type_name(n), kjb_avro_json_kind(j));
}

static int defval(const kjb_snode *n, const json_t *j, kjb_arena *a, kjb_value *out, kjb_err *err);

static int def_fmt(int fr, const kjb_snode *n, kjb_err *err) {
  if (fr == KJB_FMT_NOMEM)
    return kjb_err_set(err, KJB_ENOMEM, "out of memory");
  return deferr(err, "%s out of range", kjb_avrodec_logical_name(n->logical));
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

static int defval(const kjb_snode *n, const json_t *j, kjb_arena *a, kjb_value *out, kjb_err *err) {
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
    if ((fr = kjb_avrodec_fmt_int(a, n, v, out)))
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
    kjb_avrodec_set_real(out, n->type == KJB_S_FLOAT ? (double)(float)d : d,
                         n->type == KJB_S_FLOAT);
    return 0;
  }
  case KJB_S_STRING: {
    if (!json_is_string(j))
      return expect(err, n, j);
    if (kjb_avrodec_set_str(a, json_string_value(j), json_string_length(j), out))
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
    if ((fr = kjb_avrodec_fmt_bytes(a, n, bytes, blen, out)))
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
  case KJB_S_RECORD: return def_record(n, j, a, out, err);
  case KJB_S_UNION:
    /* A union's default belongs to its first branch. */
    if (defval(n->branches[0], j, a, out, err))
      return kjb_err_prefix(err, "union default must match its first branch \"%s\"",
                            kjb_avro_type_name(n->branches[0]));
    return 0;
  }
  return deferr(err, "unknown type");
}

int kjb_avro_default_value(const kjb_snode *n, const json_t *def, kjb_arena *a, kjb_value **out,
                           kjb_err *err) {
  kjb_value *v = kjb_arena_alloc(a, sizeof *v);
  if (!v)
    return kjb_err_set(err, KJB_ENOMEM, "out of memory");
  int rc = defval(n, def, a, v, err);
  if (rc == 0)
    *out = v;
  return rc;
}
