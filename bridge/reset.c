/* The offset-reset specs of kjb replay (declared in replay.h). */
#include "replay.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* A spec's argument parser: 0 with *out set, or -1 with *why saying
 * what is wrong. */
typedef int (*arg_parser)(const char *s, int64_t *out, const char **why);

static int parse_offset(const char *s, int64_t *out, const char **why) {
  if (kjb_parse_i64(s, 0, INT64_MAX, out) == 0)
    return 0;
  *why = "the offset must be an integer from 0 to 9223372036854775807";
  return -1;
}

static int parse_shift(const char *s, int64_t *out, const char **why) {
  if (kjb_parse_i64(s, INT64_MIN, INT64_MAX, out) == 0)
    return 0;
  *why = "the shift must be an integer from -9223372036854775808 to 9223372036854775807";
  return -1;
}

/* ".5", ".123456789": a fraction of 1 to 9 digits as milliseconds (digits
 * past the third are dropped). No '.' is no fraction. */
static bool fraction_ms(const char **s, int64_t *ms) {
  *ms = 0;
  if (**s != '.')
    return true;
  int n = 0;
  for ((*s)++; isdigit((unsigned char)**s); (*s)++, n++)
    if (n < 3)
      *ms = *ms * 10 + (**s - '0');
  for (int k = n; k < 3; k++)
    *ms *= 10;
  return n >= 1 && n <= 9;
}

/* "2026-11-21T10:00:00.000", optionally with "Z" or "+01:00"; UTC when no
 * zone is given, as kafka-consumer-groups does with its default zone.
 * Milliseconds since the epoch, rounded down (negative before 1970). */
static int parse_datetime(const char *s, int64_t *out, const char **why) {
  int64_t us;
  if (kjb_datetime_parse(s, &us, why) < 0)
    return -1;
  *out = us / 1000 - (us % 1000 < 0);
  return 0;
}

/* ISO 8601 duration as kafka-consumer-groups takes it (Java's
 * Duration.parse): PnDTnHnMn.nS, each part at most once and in this
 * order, a fraction only on seconds. Milliseconds, at most INT64_MAX. */
static int parse_duration(const char *s, int64_t *out, const char **why) {
  static const struct {
    char unit;
    bool in_time;
    int64_t ms;
  } parts[] = {{'D', false, 86400000}, {'H', true, 3600000}, {'M', true, 60000}, {'S', true, 1000}};
  *why = "expected an ISO 8601 duration PnDTnHnMn.nS";
  if (*s++ != 'P' || !*s)
    return -1;
  bool in_time = false;
  size_t next = 0;
  int64_t total = 0;
  while (*s) {
    if (*s == 'T') {
      if (in_time || !*++s)
        return -1;
      in_time = true;
      continue;
    }
    int64_t v = 0, frac = 0;
    if (!isdigit((unsigned char)*s))
      return -1;
    bool overflow = false;
    for (; isdigit((unsigned char)*s); s++)
      overflow |= __builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v);
    const char *dot = s;
    if (!fraction_ms(&s, &frac))
      return -1;
    size_t i = next;
    while (i < 4 && (parts[i].unit != *s || parts[i].in_time != in_time))
      i++;
    /* Any fraction, ".0" too: Java refuses "P1.0D" and "PT1.0H". */
    if (i == 4 || (s != dot && parts[i].unit != 'S'))
      return -1;
    s++;
    next = i + 1;
    if (overflow || __builtin_mul_overflow(v, parts[i].ms, &v) ||
        __builtin_add_overflow(v, frac, &v) || __builtin_add_overflow(total, v, &total)) {
      *why = "the duration is too long";
      return -1;
    }
  }
  *out = total;
  return 0;
}

int kjb_reset_parse(const char *text, kjb_reset_spec *out, kjb_err *err) {
  static const struct {
    const char *name;
    kjb_reset_kind kind;
    arg_parser parse; /* NULL: the spec takes no argument */
  } specs[] = {
      {"to-earliest", KJB_RESET_EARLIEST, NULL},
      {"to-latest", KJB_RESET_LATEST, NULL},
      {"to-offset", KJB_RESET_OFFSET, parse_offset},
      {"to-datetime", KJB_RESET_DATETIME, parse_datetime},
      {"shift-by", KJB_RESET_SHIFT, parse_shift},
      {"by-duration", KJB_RESET_DURATION, parse_duration},
  };
  const char *colon = strchr(text, ':');
  size_t n = colon ? (size_t)(colon - text) : strlen(text);
  const char *why = "expected to-earliest, to-latest, to-offset:N, "
                    "to-datetime:YYYY-MM-DDTHH:MM:SS.sss, shift-by:N or by-duration:PnDTnHnMnS";
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    if (strlen(specs[i].name) != n || strncmp(text, specs[i].name, n) != 0 ||
        !colon != !specs[i].parse)
      continue;
    kjb_reset_spec spec = {specs[i].kind, 0};
    if (!specs[i].parse || specs[i].parse(colon + 1, &spec.value, &why) == 0) {
      *out = spec;
      return 0;
    }
    break;
  }
  /* Quoted in part when long, never cutting a character (the API answers
   * the message as JSON). */
  int shown = (int)kjb_utf8_prefix(text, 64);
  return kjb_err_set(err, KJB_EUSAGE, "bad reset spec \"%.*s%s\": %s", shown, text,
                     text[shown] ? "..." : "", why);
}

int64_t kjb_reset_target(const kjb_reset_spec *spec, int64_t low, int64_t high, int64_t committed,
                         int64_t for_time) {
  int64_t t;
  switch (spec->kind) {
  case KJB_RESET_EARLIEST: t = low; break;
  case KJB_RESET_LATEST: t = high; break;
  case KJB_RESET_OFFSET: t = spec->value; break;
  case KJB_RESET_SHIFT:
    /* Past either end is the end, like kafka-consumer-groups. */
    if (__builtin_add_overflow(committed >= 0 ? committed : low, spec->value, &t))
      t = spec->value < 0 ? INT64_MIN : INT64_MAX;
    break;
  default: t = for_time >= 0 ? for_time : high; break;
  }
  return t < low ? low : t > high ? high : t;
}

int64_t kjb_reset_time_ms(const kjb_reset_spec *spec, int64_t now_ms) {
  int64_t at;
  if (spec->kind == KJB_RESET_DATETIME)
    at = spec->value;
  else if (spec->kind == KJB_RESET_DURATION)
    at = now_ms - spec->value; /* both >= 0: cannot overflow */
  else
    return -1;
  return at < 0 ? 0 : at;
}
