/* Avro decoding, part one: the natural JSON forms of logical types
 * (dates, times, timestamps, decimals, durations, base64 bytes), shared
 * by decoded data and field defaults. See avrodec_int.h. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avrodec_int.h"

/* Decimals longer than this (about 2,400 digits) are rejected: the
 * conversion to base 10 is quadratic. */
#define DECIMAL_MAX_BYTES 1024

/* ---- Formatting of logical types (shared by data and defaults) ---- */

const char *kjb_avrodec_logical_name(kjb_logical l) {
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

int kjb_avrodec_set_str(kjb_arena *a, const char *s, size_t n, kjb_value *out) {
  char *p = kjb_arena_strndup(a, s, n);
  if (!p)
    return KJB_FMT_NOMEM;
  out->type = KJB_V_STRING;
  out->u.s.ptr = p;
  out->u.s.len = n;
  return KJB_FMT_OK;
}

static int put_date(char *p, int64_t days, char **end) {
  int64_t y;
  unsigned m, d;
  kjb_civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999)
    return KJB_FMT_RANGE;
  p = put_digits(p, (uint64_t)y, 4);
  *p++ = '-';
  p = put_digits(p, m, 2);
  *p++ = '-';
  *end = put_digits(p, d, 2);
  return KJB_FMT_OK;
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
int kjb_avrodec_fmt_int(kjb_arena *a, const kjb_snode *r, int64_t v, kjb_value *out) {
  char tmp[40], *p = tmp;
  int64_t per_sec = 1000;
  int digits = 3, zulu = 1;
  switch (r->logical) {
  case KJB_L_DATE:
    if (put_date(tmp, v, &p))
      return KJB_FMT_RANGE;
    return kjb_avrodec_set_str(a, tmp, (size_t)(p - tmp), out);
  case KJB_L_TIME_MICROS:
    per_sec = 1000000, digits = 6;
    /* fall through */
  case KJB_L_TIME_MILLIS:
    if (v < 0 || v >= 86400 * per_sec)
      return KJB_FMT_RANGE;
    p = put_clock(tmp, v, per_sec, digits);
    return kjb_avrodec_set_str(a, tmp, (size_t)(p - tmp), out);
  case KJB_L_LOCAL_TIMESTAMP_MICROS:
    zulu = 0;
    /* fall through */
  case KJB_L_TIMESTAMP_MICROS: per_sec = 1000000, digits = 6; goto timestamp;
  case KJB_L_LOCAL_TIMESTAMP_MILLIS:
    zulu = 0;
    /* fall through */
  case KJB_L_TIMESTAMP_MILLIS:
  timestamp : {
    /* Split without multiplying v back up, which could overflow. */
    int64_t frac = v % per_sec, secs = v / per_sec;
    if (frac < 0)
      frac += per_sec, secs -= 1;
    int64_t days = floor_div(secs, 86400);
    int64_t in_day = (secs - days * 86400) * per_sec + frac;
    if (put_date(tmp, days, &p))
      return KJB_FMT_RANGE;
    *p++ = 'T';
    p = put_clock(p, in_day, per_sec, digits);
    if (zulu)
      *p++ = 'Z';
    return kjb_avrodec_set_str(a, tmp, (size_t)(p - tmp), out);
  }
  default:
    out->type = KJB_V_INT;
    out->u.i = v;
    return KJB_FMT_OK;
  }
}

void kjb_avrodec_set_real(kjb_value *out, double d, int is_float) {
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
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t len = (n + 2) / 3 * 4;
  char *s = kjb_arena_alloc(a, len + 1), *o = s;
  if (!s)
    return KJB_FMT_NOMEM;
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
  return KJB_FMT_OK;
}

/* Places the decimal point: digits (no leading zeros, "0" for zero)
 * scaled by 10^-scale, e.g. "5" at scale 2 is "0.05". */
static int put_decimal(kjb_arena *a, int neg, const char *digits, size_t nd, size_t sc,
                       kjb_value *out) {
  size_t intdigits = nd > sc ? nd - sc : 1;
  size_t len = (size_t)neg + intdigits + (sc ? 1 + sc : 0);
  char *s = kjb_arena_alloc(a, len + 1), *o = s;
  if (!s)
    return KJB_FMT_NOMEM;
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
  return KJB_FMT_OK;
}

/* The exact decimal string of a big-endian two's-complement unscaled
 * integer of any length with the given scale: "-0.05", "123.45", "0.00". */
static int fmt_decimal(kjb_arena *a, const uint8_t *p, size_t n, int scale, kjb_value *out) {
  int neg = n > 0 && (p[0] & 0x80);
  /* Drop sign-extension bytes that carry no value. */
  while (n > 1 && ((p[0] == 0x00 && !(p[1] & 0x80)) || (p[0] == 0xff && (p[1] & 0x80))))
    p++, n--;
  if (n > DECIMAL_MAX_BYTES)
    return KJB_FMT_RANGE;
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
    return KJB_FMT_NOMEM;
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
    return KJB_FMT_NOMEM;
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

/* A duration (fixed 12: little-endian unsigned months, days, millis) as
 * the object {"months": m, "days": d, "millis": ms}. */
static int fmt_duration(kjb_arena *a, const uint8_t *p, kjb_value *out) {
  static const char *const keys[] = {"months", "days", "millis"};
  kjb_member *m = kjb_arena_alloc(a, 3 * sizeof *m);
  kjb_value *vals = kjb_arena_alloc(a, 3 * sizeof *vals);
  if (!m || !vals)
    return KJB_FMT_NOMEM;
  for (int i = 0; i < 3; i++) {
    vals[i].type = KJB_V_INT;
    vals[i].u.i = kjb_avrodec_le32(p + 4 * i);
    m[i].key = keys[i];
    m[i].key_len = strlen(keys[i]);
    m[i].val = &vals[i];
  }
  out->type = KJB_V_OBJECT;
  out->u.obj.members = m;
  out->u.obj.n = 3;
  return KJB_FMT_OK;
}

/* Formats bytes or fixed content according to the reader type. */
int kjb_avrodec_fmt_bytes(kjb_arena *a, const kjb_snode *r, const uint8_t *p, size_t n,
                          kjb_value *out) {
  if (r->logical == KJB_L_DECIMAL)
    return fmt_decimal(a, p, n, r->scale, out);
  if (r->logical == KJB_L_DURATION && n == 12)
    return fmt_duration(a, p, out);
  return fmt_base64(a, p, n, out);
}
