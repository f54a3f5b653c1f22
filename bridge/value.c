/* Natural JSON values: printing as JSON or template text, and dotted
 * path lookup. */
#include "value.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_int(kjb_buf *out, int64_t v) {
  char tmp[24], *p = tmp + sizeof tmp;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do
    *--p = (char)('0' + u % 10);
  while (u /= 10);
  if (v < 0)
    *--p = '-';
  kjb_buf_append(out, p, (size_t)(tmp + sizeof tmp - p));
}

/* Prints a finite number with the fewest significant digits that read
 * back as the same float32 (is_float) or double. Integral values keep a
 * ".0" so that they stay recognisably floating point, as Avro's own JSON
 * encoder and most JSON libraries print them. */
static void put_real(kjb_buf *out, double d, int is_float) {
  if (isnan(d)) {
    kjb_buf_puts(out, "\"NaN\"");
    return;
  }
  if (isinf(d)) {
    kjb_buf_puts(out, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    return;
  }
  if (fabs(d) < 1e15 && d == (double)(int64_t)d && !(d == 0 && signbit(d))) {
    /* Integral values print exactly without the round-trip search. */
    put_int(out, (int64_t)d);
    kjb_buf_append(out, ".0", 2);
    return;
  }
  char tmp[40];
  /* A normal value needs at least 15 digits (6 for a float) to read back
   * unless fewer print the same; a subnormal has fewer significant digits
   * than that, and may read back with as few as one ("5e-324"). */
  int subnormal = is_float ? fabsf((float)d) < FLT_MIN : fabs(d) < DBL_MIN;
  int lo = subnormal ? 1 : is_float ? 6 : 15, hi = is_float ? 9 : 17;
  for (int prec = lo; prec <= hi; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (is_float ? strtof(tmp, NULL) == (float)d : strtod(tmp, NULL) == d)
      break;
  }
  kjb_buf_puts(out, tmp);
  if (strspn(tmp, "-0123456789") == strlen(tmp))
    kjb_buf_puts(out, ".0");
}

void kjb_value_to_json(const kjb_value *v, kjb_buf *out) {
  switch (v->type) {
  case KJB_V_NULL: kjb_buf_puts(out, "null"); break;
  case KJB_V_BOOL: kjb_buf_puts(out, v->u.b ? "true" : "false"); break;
  case KJB_V_INT: put_int(out, v->u.i); break;
  case KJB_V_FLOAT:
  case KJB_V_DOUBLE: put_real(out, v->u.d, v->type == KJB_V_FLOAT); break;
  case KJB_V_STRING: kjb_buf_json_str(out, v->u.s.ptr, v->u.s.len); break;
  case KJB_V_ARRAY:
    kjb_buf_putc(out, '[');
    for (size_t i = 0; i < v->u.arr.n; i++) {
      if (i)
        kjb_buf_putc(out, ',');
      kjb_value_to_json(v->u.arr.items[i], out);
    }
    kjb_buf_putc(out, ']');
    break;
  case KJB_V_OBJECT:
    kjb_buf_putc(out, '{');
    for (size_t i = 0; i < v->u.obj.n; i++) {
      const kjb_member *m = &v->u.obj.members[i];
      if (i)
        kjb_buf_putc(out, ',');
      kjb_buf_json_str(out, m->key, m->key_len);
      kjb_buf_putc(out, ':');
      kjb_value_to_json(m->val, out);
    }
    kjb_buf_putc(out, '}');
    break;
  }
}

const kjb_value *kjb_value_path(const kjb_value *v, const char *path) {
  return kjb_value_path_n(v, path, strlen(path));
}

const kjb_value *kjb_value_path_n(const kjb_value *v, const char *path, size_t len) {
  const char *seg = path, *end = path + len;
  for (;;) {
    const char *dot = memchr(seg, '.', (size_t)(end - seg));
    size_t n = (size_t)((dot ? dot : end) - seg);
    if (!v || v->type != KJB_V_OBJECT)
      return NULL;
    const kjb_value *next = NULL;
    for (size_t i = 0; i < v->u.obj.n; i++) {
      const kjb_member *m = &v->u.obj.members[i];
      if (m->key_len == n && memcmp(m->key, seg, n) == 0) {
        next = m->val;
        break;
      }
    }
    v = next;
    if (!dot || !v)
      return v;
    seg = dot + 1;
  }
}

int kjb_value_to_text(const kjb_value *v, kjb_buf *out) {
  switch (v->type) {
  case KJB_V_STRING: kjb_buf_append(out, v->u.s.ptr, v->u.s.len); return 0;
  case KJB_V_BOOL:
  case KJB_V_INT:
  case KJB_V_FLOAT:
  case KJB_V_DOUBLE:
    if ((v->type == KJB_V_FLOAT || v->type == KJB_V_DOUBLE) && !isfinite(v->u.d)) {
      /* Not produced by the decoder (it makes these strings), but keep
       * the text form free of JSON quotes all the same. */
      kjb_buf_puts(out, isnan(v->u.d) ? "NaN" : v->u.d > 0 ? "Infinity" : "-Infinity");
      return 0;
    }
    kjb_value_to_json(v, out);
    return 0;
  default: return -1;
  }
}
