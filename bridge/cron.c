/* Cron expressions (see cron.h): a parser into bit sets, and a search for
 * ticks that walks days, then hours, minutes and seconds within a day. */
#include "cron.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define DAY_S 86400
/* The Gregorian calendar repeats itself, weekdays included, every 400
 * years, and every expression that parses matches some day of that cycle
 * (each date falls on each weekday in it), so a search of 400 years finds
 * every tick there is. Most expressions find one within days; a day of the
 * month that must also be a given weekday (day-of-week a step, which
 * counts as unrestricted: "1 0 3 2 *\/7" is February 3rd on a Sunday) can
 * take a decade. */
#define SEARCH_DAYS (400 * 366)

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

typedef struct {
  const char *name;
  int min, max;
  const char *const *names; /* names[i] is min + i; NULL for none */
  int nnames;
} field_spec;

static const field_spec specs[5] = {
    {"minute", 0, 59, NULL, 0},
    {"hour", 0, 23, NULL, 0},
    {"day-of-month", 1, 31, NULL, 0},
    {"month", 1, 12, month_names, 12},
    /* 7 is Sunday too, folded into 0 after parsing. */
    {"day-of-week", 0, 7, dow_names, 7},
};

static const struct {
  const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* One value of field f at *p: a number or (month, weekday) a name. */
static int parse_value(const field_spec *f, int idx, const char **p, int *out, kjb_err *err) {
  const char *s = *p;
  if (isdigit((unsigned char)*s)) {
    long v = 0;
    while (isdigit((unsigned char)*s)) {
      v = v * 10 + (*s++ - '0');
      if (v > 1000)
        break;
    }
    while (isdigit((unsigned char)*s))
      s++;
    if (v < f->min || v > f->max)
      return kjb_err_set(err, KJB_ECONFIG, "field %d (%s): %.*s is out of range %d-%d", idx + 1,
                         f->name, (int)(s - *p), *p, f->min, f->max);
    *p = s;
    *out = (int)v;
    return 0;
  }
  if (isalpha((unsigned char)*s)) {
    size_t n = 0;
    while (isalpha((unsigned char)s[n]))
      n++;
    for (int i = 0; i < f->nnames; i++) {
      if (n == 3 && strncasecmp(s, f->names[i], 3) == 0) {
        *p = s + 3;
        *out = f->min + i;
        return 0;
      }
    }
    if (!f->names)
      return kjb_err_set(err, KJB_ECONFIG,
                         "field %d (%s): names such as \"%.*s\" are only for "
                         "months and weekdays",
                         idx + 1, f->name, (int)(n > 16 ? 16 : n), s);
    return kjb_err_set(err, KJB_ECONFIG, "field %d (%s): unknown name \"%.*s\" (expected %s-%s)",
                       idx + 1, f->name, (int)(n > 16 ? 16 : n), s, f->names[0],
                       f->names[f->nnames - 1]);
  }
  if (!*s)
    return kjb_err_set(err, KJB_ECONFIG, "field %d (%s): a value is missing at the end", idx + 1,
                       f->name);
  return kjb_err_set(err, KJB_ECONFIG, "field %d (%s): unexpected \"%c\"", idx + 1, f->name, *s);
}

/* One field (the text between blanks, NUL-terminated) into *bits. */
static int parse_field(const field_spec *f, int idx, const char *text, uint64_t *bits, bool *star,
                       kjb_err *err) {
  *bits = 0;
  *star = text[0] == '*';
  const char *p = text;
  for (;;) {
    int lo, hi, step = 1, rc;
    bool range = false;
    if (*p == '*') {
      lo = f->min;
      hi = f->max == 7 ? 6 : f->max;
      range = true;
      p++;
    } else {
      if ((rc = parse_value(f, idx, &p, &lo, err)))
        return rc;
      hi = lo;
      if (*p == '-') {
        p++;
        if ((rc = parse_value(f, idx, &p, &hi, err)))
          return rc;
        if (hi < lo)
          return kjb_err_set(err, KJB_ECONFIG,
                             "field %d (%s): range %d-%d goes backwards (ranges do not wrap)",
                             idx + 1, f->name, lo, hi);
        range = true;
      }
    }
    if (*p == '/') {
      if (!range)
        return kjb_err_set(err, KJB_ECONFIG,
                           "field %d (%s): a step needs \"*\" or a range before it "
                           "(\"%d-%d/...\")",
                           idx + 1, f->name, lo, f->max == 7 ? 6 : f->max);
      p++;
      if (!isdigit((unsigned char)*p))
        return kjb_err_set(err, KJB_ECONFIG, "field %d (%s): expected a step after \"/\"", idx + 1,
                           f->name);
      long v = 0;
      const char *s = p;
      while (isdigit((unsigned char)*p)) {
        if (v <= 1000)
          v = v * 10 + (*p - '0');
        p++;
      }
      if (v < 1 || v > f->max - f->min + 1)
        return kjb_err_set(err, KJB_ECONFIG, "field %d (%s): step %.*s is out of range 1-%d",
                           idx + 1, f->name, (int)(p - s), s, f->max - f->min + 1);
      step = (int)v;
    }
    for (int v = lo; v <= hi; v += step)
      *bits |= 1ULL << v;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p)
      return kjb_err_set(err, KJB_ECONFIG, "field %d (%s): unexpected \"%c\"", idx + 1, f->name,
                         *p);
    return 0;
  }
}

static int days_in_month(int64_t y, unsigned m) {
  static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : n[m - 1];
}

/* Day-of-month alone decides (day-of-week is "*") and no selected month
 * has any selected day: February 30th, April 31st. */
static bool never_matches(const kjb_cron *c) {
  if (!c->dow_star)
    return false;
  for (unsigned m = 1; m <= 12; m++) {
    if (!(c->month & (1u << m)))
      continue;
    int most = m == 2 ? 29 : days_in_month(2001, m);
    for (int d = 1; d <= most; d++)
      if (c->dom & (1u << d))
        return false;
  }
  return true;
}

int kjb_cron_parse(const char *text, unsigned flags, kjb_cron *out, kjb_err *err) {
  assert(text && out);
  memset(out, 0, sizeof *out);
  size_t len = strlen(text);
  if (len > KJB_CRON_MAX)
    return kjb_err_set(err, KJB_ECONFIG, "must be at most %d bytes, got %zu", KJB_CRON_MAX, len);
  const char *expr = text;
  if (text[0] == '@') {
    expr = NULL;
    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
      if (strcmp(text, macros[i].name) == 0)
        expr = macros[i].expr;
    if (!expr)
      return kjb_err_set(err, KJB_ECONFIG,
                         "unknown macro \"%.32s\" (expected @yearly, @annually, @monthly, "
                         "@weekly, @daily, @midnight or @hourly)",
                         text);
  }
  char buf[KJB_CRON_MAX + 1];
  snprintf(buf, sizeof buf, "%s", expr);
  char *fields[6];
  int n = 0;
  for (char *p = buf; *p;) {
    p += strspn(p, " \t");
    if (!*p)
      break;
    if (n == 6) {
      n++;
      break;
    }
    fields[n++] = p;
    p += strcspn(p, " \t");
    if (*p)
      *p++ = '\0';
  }
  if (n != 5) {
    if (n > 5)
      return kjb_err_set(err, KJB_ECONFIG,
                         "expected 5 fields (minute hour day-of-month month day-of-week), "
                         "got %s",
                         n > 6 ? "more than 6" : "6 (seconds or years are not supported)");
    return kjb_err_set(err, KJB_ECONFIG,
                       "expected 5 fields (minute hour day-of-month month day-of-week), got %d", n);
  }
  uint64_t bits[5];
  bool star[5];
  for (int i = 0; i < 5; i++) {
    int rc = parse_field(&specs[i], i, fields[i], &bits[i], &star[i], err);
    if (rc)
      return rc;
  }
  if (bits[4] & (1u << 7))
    bits[4] = (bits[4] | 1u) & 0x7f;
  if (flags & KJB_CRON_SECONDS) {
    out->second = bits[0];
    out->minute = (1ULL << 60) - 1;
  } else {
    out->second = 1;
    out->minute = bits[0];
  }
  out->hour = (uint32_t)bits[1];
  out->dom = (uint32_t)bits[2];
  out->month = (uint16_t)bits[3];
  out->dow = (uint8_t)bits[4];
  out->dom_star = star[2];
  out->dow_star = star[4];
  if (never_matches(out)) {
    memset(out, 0, sizeof *out);
    return kjb_err_set(err, KJB_ECONFIG,
                       "never matches: no selected month has any of the selected days of "
                       "the month");
  }
  return 0;
}

/* ---- ticks ------------------------------------------------------------ */

static int64_t floor_div(int64_t a, int64_t b) {
  return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static bool day_matches(const kjb_cron *c, int64_t days) {
  int64_t y;
  unsigned m, d;
  kjb_civil_from_days(days, &y, &m, &d);
  if (!(c->month & (1u << m)))
    return false;
  /* 1970-01-01 was a Thursday. */
  int dow = (int)(((days % 7) + 7 + 4) % 7);
  bool dom_ok = c->dom & (1u << d), dow_ok = c->dow & (1u << dow);
  if (c->dom_star || c->dow_star)
    return dom_ok && dow_ok;
  return dom_ok || dow_ok;
}

/* The first (forward) or last (!forward) time of day at or after (before)
 * from, in seconds since midnight, that the expression allows; -1 when
 * none is left in the day. */
static int time_in_day(const kjb_cron *c, int from, bool forward) {
  int h0 = from / 3600, m0 = from / 60 % 60, s0 = from % 60;
  for (int h = h0; forward ? h < 24 : h >= 0; h += forward ? 1 : -1) {
    if (!(c->hour & (1u << h)))
      continue;
    bool same_h = h == h0;
    for (int m = same_h ? m0 : (forward ? 0 : 59); forward ? m < 60 : m >= 0;
         m += forward ? 1 : -1) {
      if (!(c->minute & (1ULL << m)))
        continue;
      bool same_m = same_h && m == m0;
      for (int s = same_m ? s0 : (forward ? 0 : 59); forward ? s < 60 : s >= 0;
           s += forward ? 1 : -1)
        if (c->second & (1ULL << s))
          return h * 3600 + m * 60 + s;
    }
  }
  return -1;
}

static int search(const kjb_cron *c, int64_t from, bool forward, int64_t *out) {
  int64_t day = floor_div(from, DAY_S);
  int tod = (int)(from - day * DAY_S);
  for (int i = 0; i < SEARCH_DAYS; i++) {
    if (day_matches(c, day)) {
      int t = time_in_day(c, tod, forward);
      if (t >= 0) {
        *out = day * DAY_S + t;
        return 0;
      }
    }
    day += forward ? 1 : -1;
    tod = forward ? 0 : DAY_S - 1;
  }
  return -1;
}

int kjb_cron_prev(const kjb_cron *c, int64_t at, int64_t *out) { return search(c, at, false, out); }

int kjb_cron_next(const kjb_cron *c, int64_t at, int64_t *out) {
  return search(c, at + 1, true, out);
}

void kjb_cron_format(int64_t wall, char *buf, size_t size) {
  int64_t days = floor_div(wall, DAY_S), y;
  int tod = (int)(wall - days * DAY_S);
  unsigned m, d;
  kjb_civil_from_days(days, &y, &m, &d);
  snprintf(buf, size, "%04lld-%02u-%02u %02d:%02d:%02d", (long long)y, m, d, tod / 3600,
           tod / 60 % 60, tod % 60);
}
