/* JSON to Avro binary: walks the compiled schema alongside a jansson
 * value, fills an avro-c generic value and lets avro-c write it. Accepts
 * the natural JSON the decoder prints, so decode ∘ encode round-trips. */
#include <ctype.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_internal.h"
#include "schema.h"

typedef struct {
  kjb_err *err;
  kjb_avro_path path;
} ectx;

__attribute__((format(printf, 2, 3))) static int eerr(ectx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = kjb_avro_path_err(&c->path, c->err, KJB_EBAD_JSON, fmt, ap);
  va_end(ap);
  return rc;
}

static int avro_fail(ectx *c) { return eerr(c, "avro: %s", avro_strerror()); }

static int expected(ectx *c, const kjb_snode *n, const json_t *j) {
  const char *what = kjb_avro_type_name(n);
  if (n->type == KJB_S_RECORD || n->type == KJB_S_ENUM)
    return eerr(c, "expected %s \"%s\", got %s", n->type == KJB_S_RECORD ? "record" : "enum",
                n->fullname, kjb_avro_json_kind(j));
  if (n->logical == KJB_L_DECIMAL)
    what = "a decimal (string or number)";
  else if (n->type == KJB_S_BYTES || n->type == KJB_S_FIXED)
    what = n->logical == KJB_L_DURATION ? "a duration object or base64 string" : "a base64 string";
  return eerr(c, "expected %s, got %s", what, kjb_avro_json_kind(j));
}

/* ---- Parsing the string forms of logical types ---- */

static bool parse_date(const char **s, int64_t *days) {
  int64_t y, m, d;
  if (!kjb_parse_digits(s, 4, &y) || *(*s)++ != '-' || !kjb_parse_digits(s, 2, &m) ||
      *(*s)++ != '-' || !kjb_parse_digits(s, 2, &d))
    return false;
  return kjb_civil_to_days(y, m, d, days) == 0;
}

/* "HH:MM:SS[.frac]" in units of 1/per_sec seconds; digits beyond the
 * unit must be zero. */
static bool parse_clock(const char **s, int64_t per_sec, int64_t *out) {
  int64_t h, m, sec;
  if (!kjb_parse_digits(s, 2, &h) || *(*s)++ != ':' || !kjb_parse_digits(s, 2, &m) ||
      *(*s)++ != ':' || !kjb_parse_digits(s, 2, &sec))
    return false;
  if (h > 23 || m > 59 || sec > 60)
    return false;
  if (sec == 60)
    sec = 59; /* a leap second reads as the last second of its minute */
  int64_t frac = 0, unit = per_sec;
  if (**s == '.') {
    (*s)++;
    if (!isdigit((unsigned char)**s))
      return false;
    for (; isdigit((unsigned char)**s); (*s)++) {
      int dgt = **s - '0';
      if (unit > 1) {
        unit /= 10;
        frac += dgt * unit;
      } else if (dgt != 0) {
        return false;
      }
    }
  }
  *out = ((h * 60 + m) * 60 + sec) * per_sec + frac;
  return true;
}

/* RFC 3339 ("2026-11-21T10:00:00.123Z", offsets allowed); a missing
 * offset means UTC. Local timestamps take no offset other than "Z". */
static bool parse_timestamp(const char *s, int64_t per_sec, bool local, int64_t *out) {
  int64_t days, clock;
  if (!parse_date(&s, &days))
    return false;
  if (*s != 'T' && *s != 't' && *s != ' ')
    return false;
  s++;
  if (!parse_clock(&s, per_sec, &clock))
    return false;
  int64_t offset = 0;
  if (*s == 'Z' || *s == 'z') {
    s++;
  } else if (*s == '+' || *s == '-') {
    int sign = *s++ == '-' ? -1 : 1;
    int64_t oh, om;
    if (local || !kjb_parse_digits(&s, 2, &oh) || *s++ != ':' || !kjb_parse_digits(&s, 2, &om) ||
        oh > 23 || om > 59)
      return false;
    offset = sign * (oh * 60 + om) * 60;
  }
  if (*s)
    return false;
  *out = (days * 86400 - offset) * per_sec + clock;
  return true;
}

static bool is_int_logical_string(kjb_logical l) {
  return l == KJB_L_DATE || l == KJB_L_TIME_MILLIS || l == KJB_L_TIME_MICROS ||
         l == KJB_L_TIMESTAMP_MILLIS || l == KJB_L_TIMESTAMP_MICROS ||
         l == KJB_L_LOCAL_TIMESTAMP_MILLIS || l == KJB_L_LOCAL_TIMESTAMP_MICROS;
}

static int enc_integer(ectx *c, const kjb_snode *n, const json_t *j, int64_t *out) {
  if (json_is_integer(j)) {
    *out = json_integer_value(j);
  } else if (json_is_real(j)) {
    double d = json_real_value(j);
    if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
      return eerr(c, "%.17g is not an integer", d);
    *out = (int64_t)d;
  } else if (json_is_string(j) && is_int_logical_string(n->logical)) {
    const char *s = json_string_value(j);
    bool ok;
    switch (n->logical) {
    case KJB_L_DATE: ok = parse_date(&s, out) && !*s; break;
    case KJB_L_TIME_MILLIS:
    case KJB_L_TIME_MICROS:
      ok = parse_clock(&s, n->logical == KJB_L_TIME_MILLIS ? 1000 : 1000000, out) && !*s;
      break;
    default: {
      bool micros =
          n->logical == KJB_L_TIMESTAMP_MICROS || n->logical == KJB_L_LOCAL_TIMESTAMP_MICROS;
      bool local =
          n->logical == KJB_L_LOCAL_TIMESTAMP_MILLIS || n->logical == KJB_L_LOCAL_TIMESTAMP_MICROS;
      ok = parse_timestamp(s, micros ? 1000000 : 1000, local, out);
    }
    }
    if (!ok)
      return eerr(c, "invalid %s \"%s\"",
                  n->logical == KJB_L_DATE ? "date (YYYY-MM-DD)"
                  : n->logical == KJB_L_TIME_MILLIS || n->logical == KJB_L_TIME_MICROS
                      ? "time (HH:MM:SS.fff)"
                      : "timestamp (RFC 3339)",
                  json_string_value(j));
    return 0;
  } else {
    return expected(c, n, j);
  }
  if (n->type == KJB_S_INT && (*out < INT32_MIN || *out > INT32_MAX))
    return eerr(c, "%lld is out of range for int", (long long)*out);
  return 0;
}

static int enc_real(ectx *c, const kjb_snode *n, const json_t *j, double *out) {
  const char *s = json_string_value(j);
  if (json_is_number(j))
    *out = json_number_value(j);
  else if (s && strcmp(s, "NaN") == 0)
    *out = NAN;
  else if (s && strcmp(s, "Infinity") == 0)
    *out = INFINITY;
  else if (s && strcmp(s, "-Infinity") == 0)
    *out = -INFINITY;
  else
    return expected(c, n, j);
  return 0;
}

/* Decodes standard base64 (padding optional) into a malloc'd buffer. */
static uint8_t *base64_decode(const char *s, size_t len, size_t *out_len) {
  while (len > 0 && s[len - 1] == '=')
    len--;
  if (len % 4 == 1)
    return NULL;
  uint8_t *out = kjb_xmalloc(len * 3 / 4 + 1);
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
            : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
            : ch >= '0' && ch <= '9' ? ch - '0' + 52
            : ch == '+'              ? 62
            : ch == '/'              ? 63
                                     : -1;
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  *out_len = o;
  return out;
}

/* Converts a decimal string ("-123.45", "1e3") to the unscaled integer at
 * the schema's scale as big-endian two's complement: the fewest bytes
 * for bytes (size 0), exactly size bytes for fixed. Returns a malloc'd
 * buffer or NULL with *why set. */
static uint8_t *decimal_bytes(const char *s, int precision, int scale, size_t size, size_t *out_len,
                              const char **why) {
  *why = "not a decimal number";
  bool neg = false;
  if (*s == '-' || *s == '+')
    neg = *s++ == '-';
  size_t slen = strlen(s);
  char *dig = kjb_xmalloc(slen + 1);
  size_t nd = 0;
  long frac = 0;
  bool point = false, any = false;
  for (; *s && *s != 'e' && *s != 'E'; s++) {
    if (*s == '.' && !point) {
      point = true;
    } else if (isdigit((unsigned char)*s)) {
      any = true;
      if (nd || *s != '0')
        dig[nd++] = *s;
      frac += point;
    } else {
      free(dig);
      return NULL;
    }
  }
  long exp = 0;
  if (*s) {
    char *end;
    exp = strtol(s + 1, &end, 10);
    if (end == s + 1 || *end || exp > 100000 || exp < -100000) {
      free(dig);
      return NULL;
    }
  }
  if (!any) {
    free(dig);
    return NULL;
  }
  /* value = dig × 10^(exp - frac); unscaled = dig × 10^shift. */
  long shift = exp - frac + scale;
  if (shift < 0) {
    for (long k = 0; k < -shift; k++) {
      if (nd == 0)
        break;
      if (dig[nd - 1] != '0') {
        *why = "has more fractional digits than the scale allows";
        free(dig);
        return NULL;
      }
      nd--;
    }
  } else if (nd) {
    if ((long)nd + shift > precision) {
      *why = "has more digits than the precision allows";
      free(dig);
      return NULL;
    }
    dig = kjb_xrealloc(dig, nd + (size_t)shift + 1);
    memset(dig + nd, '0', (size_t)shift);
    nd += (size_t)shift;
  }
  if ((long)nd > precision) {
    *why = "has more digits than the precision allows";
    free(dig);
    return NULL;
  }
  /* Magnitude in base 256, least significant first. */
  size_t cap = nd / 2 + 2, nb = 0;
  uint8_t *mag = kjb_xcalloc(cap, 1);
  for (size_t i = 0; i < nd; i++) {
    unsigned carry = (unsigned)(dig[i] - '0');
    for (size_t k = 0; k < nb; k++) {
      unsigned t = mag[k] * 10u + carry;
      mag[k] = (uint8_t)t;
      carry = t >> 8;
    }
    while (carry) {
      mag[nb++] = (uint8_t)carry;
      carry >>= 8;
    }
  }
  free(dig);
  /* One byte more than the magnitude always leaves room for the sign. */
  size_t need = nb + 1;
  uint8_t *out = kjb_xcalloc(need > size ? need : size, 1);
  size_t outlen = size ? size : need;
  for (size_t k = 0; k < nb && k < outlen; k++)
    out[outlen - 1 - k] = mag[k];
  bool overflow = nb > outlen;
  if (neg) {
    unsigned carry = 1;
    for (size_t k = outlen; k-- > 0;) {
      unsigned t = (uint8_t)~out[k] + carry;
      out[k] = (uint8_t)t;
      carry = t >> 8;
    }
    if (nb > 0 && !(out[0] & 0x80))
      overflow = true;
  } else if (out[0] & 0x80) {
    overflow = true;
  }
  free(mag);
  if (overflow) {
    *why = "does not fit the fixed size";
    free(out);
    return NULL;
  }
  /* For bytes, drop sign-extension bytes. */
  size_t start = 0;
  if (!size)
    while (outlen - start > 1 && ((out[start] == 0 && !(out[start + 1] & 0x80)) ||
                                  (out[start] == 0xff && (out[start + 1] & 0x80))))
      start++;
  memmove(out, out + start, outlen - start);
  *out_len = outlen - start;
  return out;
}

static int enc_decimal(ectx *c, const kjb_snode *n, const json_t *j, avro_value_t *v) {
  char num[64];
  const char *s;
  if (json_is_string(j)) {
    s = json_string_value(j);
  } else if (json_is_integer(j)) {
    snprintf(num, sizeof num, "%lld", (long long)json_integer_value(j));
    s = num;
  } else if (json_is_real(j)) {
    kjb_value tmp = {.type = KJB_V_DOUBLE, .u.d = json_real_value(j)};
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_value_to_json(&tmp, &b);
    snprintf(num, sizeof num, "%s", b.data);
    kjb_buf_close(&b);
    s = num;
  } else {
    return expected(c, n, j);
  }
  size_t len;
  const char *why;
  uint8_t *bytes = decimal_bytes(s, n->precision, n->scale,
                                 n->type == KJB_S_FIXED ? n->fixed_size : 0, &len, &why);
  if (!bytes)
    return eerr(c, "decimal \"%s\" %s (precision %d, scale %d)", s, why, n->precision, n->scale);
  int rc = n->type == KJB_S_FIXED ? avro_value_set_fixed(v, bytes, len)
                                  : avro_value_set_bytes(v, bytes, len);
  free(bytes);
  return rc ? avro_fail(c) : 0;
}

static int enc_duration(ectx *c, const kjb_snode *n, const json_t *j, avro_value_t *v) {
  static const char *const keys[] = {"months", "days", "millis"};
  uint8_t b[12];
  for (int i = 0; i < 3; i++) {
    const json_t *x = json_object_get(j, keys[i]);
    json_int_t u = x ? json_integer_value(x) : 0;
    if ((x && !json_is_integer(x)) || u < 0 || u > UINT32_MAX)
      return eerr(c, "duration \"%s\" must be an integer from 0 to 4294967295", keys[i]);
    for (int k = 0; k < 4; k++)
      b[4 * i + k] = (uint8_t)((uint64_t)u >> (8 * k));
  }
  return avro_value_set_fixed(v, b, sizeof b) ? avro_fail(c) : 0;
}

/* ---- Defaults: natural values back to JSON ---- */

static json_t *value_json(const kjb_value *v) {
  switch (v->type) {
  case KJB_V_NULL: return json_null();
  case KJB_V_BOOL: return json_boolean(v->u.b);
  case KJB_V_INT: return json_integer(v->u.i);
  case KJB_V_FLOAT:
  case KJB_V_DOUBLE: return json_real(v->u.d);
  case KJB_V_STRING: return json_stringn_nocheck(v->u.s.ptr, v->u.s.len);
  case KJB_V_ARRAY: {
    json_t *a = json_array();
    for (size_t i = 0; i < v->u.arr.n; i++)
      json_array_append_new(a, value_json(v->u.arr.items[i]));
    return a;
  }
  case KJB_V_OBJECT: {
    json_t *o = json_object();
    for (size_t i = 0; i < v->u.obj.n; i++) {
      const kjb_member *m = &v->u.obj.members[i];
      json_object_setn_new_nocheck(o, m->key, m->key_len, value_json(m->val));
    }
    return o;
  }
  }
  return json_null();
}

/* ---- The walk ---- */

static int enc(ectx *c, const kjb_snode *n, const json_t *j, avro_value_t *v);

/* Whether a JSON value has the right shape for type n at all; a union
 * tries the branches that do, in order. */
static bool accepts(const kjb_snode *n, const json_t *j) {
  switch (n->type) {
  case KJB_S_NULL: return json_is_null(j);
  case KJB_S_BOOLEAN: return json_is_boolean(j);
  case KJB_S_INT:
  case KJB_S_LONG:
    return json_is_integer(j) ||
           (json_is_real(j) && json_real_value(j) == floor(json_real_value(j))) ||
           (json_is_string(j) && is_int_logical_string(n->logical));
  case KJB_S_FLOAT:
  case KJB_S_DOUBLE: {
    const char *s = json_string_value(j);
    return json_is_number(j) ||
           (s && (!strcmp(s, "NaN") || !strcmp(s, "Infinity") || !strcmp(s, "-Infinity")));
  }
  case KJB_S_STRING: return json_is_string(j);
  case KJB_S_BYTES:
  case KJB_S_FIXED:
    return json_is_string(j) || (n->logical == KJB_L_DECIMAL && json_is_number(j)) ||
           (n->logical == KJB_L_DURATION && json_is_object(j));
  case KJB_S_ENUM: {
    const char *s = json_string_value(j);
    for (size_t i = 0; s && i < n->nsymbols; i++)
      if (strcmp(n->symbols[i], s) == 0)
        return true;
    return false;
  }
  case KJB_S_ARRAY: return json_is_array(j);
  case KJB_S_MAP:
  case KJB_S_RECORD: return json_is_object(j);
  case KJB_S_UNION: return false;
  }
  return false;
}

static bool branch_named(const kjb_snode *b, const char *key) {
  const char *name = kjb_avro_type_name(b);
  if (strcmp(name, key) == 0)
    return true;
  if (b->fullname) {
    const char *dot = strrchr(b->fullname, '.');
    return dot && strcmp(dot + 1, key) == 0;
  }
  return false;
}

static int enc_union(ectx *c, const kjb_snode *n, const json_t *j, avro_value_t *v) {
  avro_value_t branch;
  /* {"type name": value} selects a branch explicitly. */
  if (json_is_object(j) && json_object_size(j) == 1) {
    const char *key = json_object_iter_key(json_object_iter((json_t *)j));
    for (size_t i = 0; i < n->nbranches; i++) {
      if (branch_named(n->branches[i], key)) {
        if (avro_value_set_branch(v, (int)i, &branch))
          return avro_fail(c);
        return enc(c, n->branches[i], json_object_get(j, key), &branch);
      }
    }
  }
  kjb_err first;
  bool tried = false;
  for (size_t i = 0; i < n->nbranches; i++) {
    if (!accepts(n->branches[i], j))
      continue;
    if (avro_value_set_branch(v, (int)i, &branch))
      return avro_fail(c);
    if (enc(c, n->branches[i], j, &branch) == 0)
      return 0;
    if (!tried)
      first = *c->err;
    tried = true;
  }
  if (tried) {
    *c->err = first;
    return -(int)first.code;
  }
  return eerr(c, "no branch of the union accepts %s", kjb_avro_json_kind(j));
}

static int enc_record(ectx *c, const kjb_snode *n, const json_t *j, avro_value_t *v) {
  if (!json_is_object(j))
    return expected(c, n, j);
  for (size_t i = 0; i < n->nfields; i++) {
    const kjb_sfield *f = &n->fields[i];
    avro_value_t field;
    if (avro_value_get_by_index(v, i, &field, NULL))
      return avro_fail(c);
    size_t old = kjb_avro_path_push(&c->path, "%s", f->name);
    const json_t *fj = json_object_get(j, f->name);
    json_t *def = NULL;
    int rc;
    if (!fj && f->default_value)
      fj = def = value_json(f->default_value);
    if (!fj)
      rc = eerr(c, "missing");
    else
      rc = enc(c, f->type, fj, &field);
    json_decref(def);
    kjb_avro_path_pop(&c->path, old);
    if (rc)
      return rc;
  }
  return 0;
}

static int enc(ectx *c, const kjb_snode *n, const json_t *j, avro_value_t *v) {
  int rc = 0;
  switch (n->type) {
  case KJB_S_NULL:
    if (!json_is_null(j))
      return expected(c, n, j);
    rc = avro_value_set_null(v);
    break;
  case KJB_S_BOOLEAN:
    if (!json_is_boolean(j))
      return expected(c, n, j);
    rc = avro_value_set_boolean(v, json_is_true(j));
    break;
  case KJB_S_INT:
  case KJB_S_LONG: {
    int64_t x;
    if ((rc = enc_integer(c, n, j, &x)))
      return rc;
    rc = n->type == KJB_S_INT ? avro_value_set_int(v, (int32_t)x) : avro_value_set_long(v, x);
    break;
  }
  case KJB_S_FLOAT:
  case KJB_S_DOUBLE: {
    double d;
    if ((rc = enc_real(c, n, j, &d)))
      return rc;
    if (n->type == KJB_S_FLOAT && isfinite(d) && fabs(d) > FLT_MAX)
      return eerr(c, "%g is out of range for float", d);
    rc = n->type == KJB_S_FLOAT ? avro_value_set_float(v, (float)d) : avro_value_set_double(v, d);
    break;
  }
  case KJB_S_STRING: {
    if (!json_is_string(j))
      return expected(c, n, j);
    /* kjb dead-letters such a record: PostgreSQL text cannot hold it. */
    if (memchr(json_string_value(j), 0, json_string_length(j)))
      return eerr(c, "a string holds U+0000, which postgresql text cannot hold");
    /* avro-c's length counts the terminating NUL that jansson keeps. */
    rc = avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1);
    break;
  }
  case KJB_S_BYTES:
  case KJB_S_FIXED: {
    if (n->logical == KJB_L_DECIMAL)
      return enc_decimal(c, n, j, v);
    if (n->logical == KJB_L_DURATION && json_is_object(j))
      return enc_duration(c, n, j, v);
    if (!json_is_string(j))
      return expected(c, n, j);
    size_t len;
    uint8_t *bytes = base64_decode(json_string_value(j), json_string_length(j), &len);
    if (!bytes)
      return eerr(c, "invalid base64");
    if (n->type == KJB_S_FIXED && len != n->fixed_size) {
      free(bytes);
      return eerr(c, "fixed \"%s\" needs %zu bytes, got %zu", n->fullname, n->fixed_size, len);
    }
    rc = n->type == KJB_S_FIXED ? avro_value_set_fixed(v, bytes, len)
                                : avro_value_set_bytes(v, bytes, len);
    free(bytes);
    break;
  }
  case KJB_S_ENUM: {
    const char *s = json_string_value(j);
    if (!s)
      return expected(c, n, j);
    size_t i = 0;
    while (i < n->nsymbols && strcmp(n->symbols[i], s) != 0)
      i++;
    if (i == n->nsymbols)
      return eerr(c, "\"%s\" is not a symbol of enum \"%s\"", s, n->fullname);
    rc = avro_value_set_enum(v, (int)i);
    break;
  }
  case KJB_S_ARRAY: {
    if (!json_is_array(j))
      return expected(c, n, j);
    for (size_t i = 0; i < json_array_size(j); i++) {
      avro_value_t item;
      if (avro_value_append(v, &item, NULL))
        return avro_fail(c);
      size_t old = kjb_avro_path_push(&c->path, "[%zu]", i);
      rc = enc(c, n->items, json_array_get(j, i), &item);
      kjb_avro_path_pop(&c->path, old);
      if (rc)
        return rc;
    }
    return 0;
  }
  case KJB_S_MAP: {
    if (!json_is_object(j))
      return expected(c, n, j);
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach((json_t *)j, key, klen, val) {
      if (strlen(key) != klen)
        return eerr(c, "map key contains a NUL character");
      avro_value_t item;
      if (avro_value_add(v, key, &item, NULL, NULL))
        return avro_fail(c);
      size_t old = kjb_avro_path_push(&c->path, "%s", key);
      rc = enc(c, n->items, val, &item);
      kjb_avro_path_pop(&c->path, old);
      if (rc)
        return rc;
    }
    return 0;
  }
  case KJB_S_RECORD: return enc_record(c, n, j, v);
  case KJB_S_UNION: return enc_union(c, n, j, v);
  }
  return rc ? avro_fail(c) : 0;
}

int kjb_avro_encode(const kjb_schema *s, const json_t *json, kjb_buf *out, kjb_err *err) {
  kjb_err local;
  ectx c = {.err = err ? err : &local};
  avro_value_iface_t *iface = avro_generic_class_from_schema(kjb_schema_avro(s));
  if (!iface)
    return kjb_err_set(err, KJB_EINTERNAL, "avro: %s", avro_strerror());
  avro_value_t v;
  if (avro_generic_value_new(iface, &v)) {
    avro_value_iface_decref(iface);
    return kjb_err_set(err, KJB_EINTERNAL, "avro: %s", avro_strerror());
  }
  int rc = enc(&c, kjb_schema_root(s), json, &v);
  size_t size = 0;
  if (rc == 0 && avro_value_sizeof(&v, &size))
    rc = avro_fail(&c);
  if (rc == 0) {
    kjb_buf_reserve(out, size);
    avro_writer_t w = avro_writer_memory(out->data + out->len, (int64_t)size);
    if (!w || avro_value_write(w, &v)) {
      rc = avro_fail(&c);
    } else {
      out->len += size;
      out->data[out->len] = '\0';
    }
    if (w)
      avro_writer_free(w);
  }
  avro_value_decref(&v);
  avro_value_iface_decref(iface);
  return rc;
}
