/* Cron expressions: the parser (what each field allows, and the errors),
 * and the ticks before and after a wall-clock time across the ends of
 * months and years, leap days and the day-of-month / day-of-week rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cron.h"
#include "util.h"

/* "YYYY-MM-DD HH:MM[:SS]" as wall-clock seconds. */
static int64_t wall(const char *s) {
  int y, mo, d, h, mi, sec = 0;
  int n = sscanf(s, "%d-%d-%d %d:%d:%d", &y, &mo, &d, &h, &mi, &sec);
  assert_true(n >= 5);
  int64_t days;
  assert_int_equal(kjb_civil_to_days(y, mo, d, &days), 0);
  return days * 86400 + h * 3600 + mi * 60 + sec;
}

static const char *fmt(int64_t w) {
  static char buf[4][32];
  static int i;
  i = (i + 1) % 4;
  kjb_cron_format(w, buf[i], sizeof buf[i]);
  return buf[i];
}

static uint64_t bits(const int *v, size_t n) {
  uint64_t b = 0;
  for (size_t i = 0; i < n; i++)
    b |= 1ULL << v[i];
  return b;
}

#define BITS(...) bits((const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))
#define ALL(lo, hi) ((((hi) >= 63 ? 0 : (1ULL << ((hi) + 1))) - 1) & ~((1ULL << (lo)) - 1))

static void test_parse_fields(void **state) {
  const struct {
    const char *text;
    uint64_t minute, hour, dom, month, dow;
    int dom_star, dow_star;
  } cases[] = {
      {"* * * * *", ALL(0, 59), ALL(0, 23), ALL(1, 31), ALL(1, 12), ALL(0, 6), 1, 1},
      {"0 3 * * *", 1, 1 << 3, ALL(1, 31), ALL(1, 12), ALL(0, 6), 1, 1},
      {"*/15 * * * *", 1 | 1ULL << 15 | 1ULL << 30 | 1ULL << 45, ALL(0, 23), ALL(1, 31), ALL(1, 12),
       ALL(0, 6), 1, 1},
      {"1-5/2 0,12 1,15 jan-mar mon-fri", BITS(1, 3, 5), BITS(0, 12), BITS(1, 15), BITS(1, 2, 3),
       BITS(1, 2, 3, 4, 5), 0, 0},
      {"0 0 * DEC SUN", 1, 1, ALL(1, 31), BITS(12), BITS(0), 1, 0},
      /* 7 is Sunday as 0 is. */
      {"0 0 * * 7", 1, 1, ALL(1, 31), ALL(1, 12), BITS(0), 1, 0},
      {"0 0 * * 5-7", 1, 1, ALL(1, 31), ALL(1, 12), BITS(0, 5, 6), 1, 0},
      {"0 0 * * */2", 1, 1, ALL(1, 31), ALL(1, 12), BITS(0, 2, 4, 6), 1, 1},
      {"  5\t4  1 *  * ", 1ULL << 5, 1 << 4, BITS(1), ALL(1, 12), ALL(0, 6), 0, 1},
      {"59 23 31 12 6", 1ULL << 59, 1 << 23, BITS(31), BITS(12), BITS(6), 0, 0},
      {"0-59/30 */6 */10 */5 *", BITS(0, 30), BITS(0, 6, 12, 18), BITS(1, 11, 21, 31),
       BITS(1, 6, 11), ALL(0, 6), 1, 1},
      {"@daily", 1, 1, ALL(1, 31), ALL(1, 12), ALL(0, 6), 1, 1},
      {"@hourly", 1, ALL(0, 23), ALL(1, 31), ALL(1, 12), ALL(0, 6), 1, 1},
      {"@weekly", 1, 1, ALL(1, 31), ALL(1, 12), BITS(0), 1, 0},
      {"@yearly", 1, 1, BITS(1), BITS(1), ALL(0, 6), 0, 1},
      {"0 0 31 * *", 1, 1, BITS(31), ALL(1, 12), ALL(0, 6), 0, 1},
      {"0 0 29 2 *", 1, 1, BITS(29), BITS(2), ALL(0, 6), 0, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("%s\n", cases[i].text);
    kjb_cron c;
    kjb_err err = {0};
    assert_int_equal(kjb_cron_parse(cases[i].text, 0, &c, &err), 0);
    assert_int_equal(c.second, 1);
    assert_int_equal(c.minute, cases[i].minute);
    assert_int_equal(c.hour, cases[i].hour);
    assert_int_equal(c.dom, cases[i].dom);
    assert_int_equal(c.month, cases[i].month);
    assert_int_equal(c.dow, cases[i].dow);
    assert_int_equal(c.dom_star, cases[i].dom_star);
    assert_int_equal(c.dow_star, cases[i].dow_star);
  }
}

static void test_parse_errors(void **state) {
  static const struct {
    const char *text, *msg;
  } cases[] = {
      {"", "expected 5 fields (minute hour day-of-month month day-of-week), got 0"},
      {"* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"},
      {"0 * * * * *",
       "expected 5 fields (minute hour day-of-month month day-of-week), got 6 (seconds or years "
       "are not supported)"},
      {"0 * * * * * *",
       "expected 5 fields (minute hour day-of-month month day-of-week), got more than 6"},
      {"60 * * * *", "field 1 (minute): 60 is out of range 0-59"},
      {"0 24 * * *", "field 2 (hour): 24 is out of range 0-23"},
      {"0 0 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"},
      {"0 0 32 * *", "field 3 (day-of-month): 32 is out of range 1-31"},
      {"0 0 * 13 *", "field 4 (month): 13 is out of range 1-12"},
      {"0 0 * * 8", "field 5 (day-of-week): 8 is out of range 0-7"},
      {"99999999999999999999 * * * *",
       "field 1 (minute): 99999999999999999999 is out of range 0-59"},
      {"5-1 * * * *", "field 1 (minute): range 5-1 goes backwards (ranges do not wrap)"},
      {"0 0 * * fri-mon", "field 5 (day-of-week): range 5-1 goes backwards (ranges do not wrap)"},
      {"*/0 * * * *", "field 1 (minute): step 0 is out of range 1-60"},
      {"*/61 * * * *", "field 1 (minute): step 61 is out of range 1-60"},
      {"5/10 * * * *", "field 1 (minute): a step needs \"*\" or a range before it (\"5-59/...\")"},
      {"*/ * * * *", "field 1 (minute): expected a step after \"/\""},
      {"1, * * * *", "field 1 (minute): a value is missing at the end"},
      {"1-,2 * * * *", "field 1 (minute): unexpected \",\""},
      {"** * * * *", "field 1 (minute): unexpected \"*\""},
      {"1-5-7 * * * *", "field 1 (minute): unexpected \"-\""},
      {"0 0 * foo *", "field 4 (month): unknown name \"foo\" (expected jan-dec)"},
      {"0 0 * * monday", "field 5 (day-of-week): unknown name \"monday\" (expected sun-sat)"},
      {"jan * * * *", "field 1 (minute): names such as \"jan\" are only for months and weekdays"},
      {"0 0 * * -1", "field 5 (day-of-week): unexpected \"-\""},
      {"@reboot", "unknown macro \"@reboot\" (expected @yearly, @annually, @monthly, @weekly, "
                  "@daily, @midnight or @hourly)"},
      {"0 0 30 2 *", "never matches: no selected month has any of the selected days of the month"},
      {"0 0 31 4,6,9,11 *",
       "never matches: no selected month has any of the selected days of the month"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("\"%s\"\n", cases[i].text);
    kjb_cron c;
    kjb_err err = {0};
    assert_int_equal(kjb_cron_parse(cases[i].text, 0, &c, &err), -KJB_ECONFIG);
    assert_string_equal(err.msg, cases[i].msg);
  }
  char longer[KJB_CRON_MAX + 2];
  memset(longer, ' ', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  kjb_cron c;
  kjb_err err;
  assert_int_equal(kjb_cron_parse(longer, 0, &c, &err), -KJB_ECONFIG);
  assert_string_equal(err.msg, "must be at most 256 bytes, got 257");
  /* Day 30 of February never comes, but with a weekday either may match. */
  assert_int_equal(kjb_cron_parse("0 0 30 2 mon", 0, &c, &err), 0);
}

static void test_ticks(void **state) {
  static const struct {
    const char *expr, *at, *prev, *next;
  } cases[] = {
      {"0 3 * * *", "2026-12-07 05:41", "2026-12-07 03:00:00", "2026-12-08 03:00:00"},
      /* A tick at exactly "at" is the previous one, not the next. */
      {"0 3 * * *", "2026-12-07 03:00", "2026-12-07 03:00:00", "2026-12-08 03:00:00"},
      {"0 3 * * *", "2026-12-07 02:59:59", "2026-12-06 03:00:00", "2026-12-07 03:00:00"},
      {"*/15 * * * *", "2026-12-31 23:59:59", "2026-12-31 23:45:00", "2027-01-01 00:00:00"},
      {"* * * * *", "2026-12-07 05:41:30", "2026-12-07 05:41:00", "2026-12-07 05:42:00"},
      /* Month ends: the 31st skips the months without one. */
      {"0 0 31 * *", "2026-04-15 00:00", "2026-03-31 00:00:00", "2026-05-31 00:00:00"},
      /* Leap days: every four years, but not in 2100. */
      {"0 0 29 2 *", "2026-12-07 00:00", "2024-02-29 00:00:00", "2028-02-29 00:00:00"},
      {"0 0 29 2 *", "2097-01-01 00:00", "2096-02-29 00:00:00", "2104-02-29 00:00:00"},
      {"0 0 29 2 *", "2000-03-01 00:00", "2000-02-29 00:00:00", "2004-02-29 00:00:00"},
      /* Year ends. */
      {"30 23 31 12 *", "2027-01-01 00:00", "2026-12-31 23:30:00", "2027-12-31 23:30:00"},
      {"0 0 1 1 *", "2026-12-31 23:59:59", "2026-01-01 00:00:00", "2027-01-01 00:00:00"},
      /* Both day fields restricted: either matches (the 13th, or a
       * Friday). 2026-02-13 is a Friday; 2026-02-06 and 02-20 too. */
      {"0 0 13 * 5", "2026-02-14 00:00", "2026-02-13 00:00:00", "2026-02-20 00:00:00"},
      {"0 0 13 * 5", "2026-02-12 00:00", "2026-02-06 00:00:00", "2026-02-13 00:00:00"},
      /* Day-of-month "*": only the weekday decides. */
      {"0 9 * * mon-fri", "2026-12-05 12:00", "2026-12-04 09:00:00", "2026-12-07 09:00:00"},
      {"0 9 * * sun", "2026-12-07 00:00", "2026-12-06 09:00:00", "2026-12-13 09:00:00"},
      {"0 9 * * 7", "2026-12-07 00:00", "2026-12-06 09:00:00", "2026-12-13 09:00:00"},
      /* Day-of-month "*" with a step is unrestricted too, as in Vixie
       * cron: odd days that are Mondays. 2026-12-07 is a Monday. */
      {"0 0 */2 * 1", "2026-12-01 00:00", "2026-11-23 00:00:00", "2026-12-07 00:00:00"},
      /* February 3rd when it is a Sunday (the step makes day-of-week
       * count as "*"): eleven years apart. */
      {"1 0 3 2 */7", "2000-01-01 00:00", "1991-02-03 00:01:00", "2002-02-03 00:01:00"},
      {"0 0 1 jan,jul *", "2026-07-01 00:00:01", "2026-07-01 00:00:00", "2027-01-01 00:00:00"},
      {"15,45 1-2 * * *", "2026-03-29 02:50", "2026-03-29 02:45:00", "2026-03-30 01:15:00"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("%s at %s\n", cases[i].expr, cases[i].at);
    kjb_cron c;
    kjb_err err = {0};
    assert_int_equal(kjb_cron_parse(cases[i].expr, 0, &c, &err), 0);
    int64_t at = wall(cases[i].at), prev, next;
    assert_int_equal(kjb_cron_prev(&c, at, &prev), 0);
    assert_int_equal(kjb_cron_next(&c, at, &next), 0);
    assert_string_equal(fmt(prev), cases[i].prev);
    assert_string_equal(fmt(next), cases[i].next);
    /* next and prev agree: the tick after prev is next when at is a tick
     * or before the next one. */
    int64_t again;
    assert_int_equal(kjb_cron_next(&c, prev, &again), 0);
    assert_string_equal(fmt(again), cases[i].next);
  }
}

static void test_seconds_granularity(void **state) {
  kjb_cron c;
  kjb_err err;
  assert_int_equal(kjb_cron_parse("*/2 * * * *", KJB_CRON_SECONDS, &c, &err), 0);
  int64_t t;
  assert_int_equal(kjb_cron_prev(&c, wall("2026-12-07 05:41:31"), &t), 0);
  assert_string_equal(fmt(t), "2026-12-07 05:41:30");
  assert_int_equal(kjb_cron_next(&c, wall("2026-12-07 05:41:58"), &t), 0);
  assert_string_equal(fmt(t), "2026-12-07 05:42:00");
  assert_int_equal(kjb_cron_next(&c, wall("2026-12-31 23:59:59"), &t), 0);
  assert_string_equal(fmt(t), "2027-01-01 00:00:00");
  /* The other fields keep their meaning. */
  assert_int_equal(kjb_cron_parse("10 3 * * *", KJB_CRON_SECONDS, &c, &err), 0);
  assert_int_equal(kjb_cron_next(&c, wall("2026-12-07 03:00:10"), &t), 0);
  assert_string_equal(fmt(t), "2026-12-07 03:01:10");
  assert_int_equal(kjb_cron_prev(&c, wall("2026-12-07 02:59:59"), &t), 0);
  assert_string_equal(fmt(t), "2026-12-06 03:59:10");
}

/* Whether the expression matches the minute at, by the C library's
 * calendar (gmtime_r of the wall-clock seconds): an oracle independent of
 * cron.c's own day arithmetic. */
static int matches(const kjb_cron *c, int64_t at) {
  time_t t = (time_t)at;
  struct tm tm;
  gmtime_r(&t, &tm);
  int dom = (c->dom >> tm.tm_mday) & 1, dow = (c->dow >> tm.tm_wday) & 1;
  int day = c->dom_star || c->dow_star ? dom && dow : dom || dow;
  return tm.tm_sec == 0 && ((c->minute >> tm.tm_min) & 1) && ((c->hour >> tm.tm_hour) & 1) &&
         ((c->month >> (tm.tm_mon + 1)) & 1) && day;
}

/* Over a leap February and the months around it, minute by minute, prev and next name exactly the
 * minutes the oracle matches. */
static void test_ticks_against_brute_force(void **state) {
  const char *exprs[] = {"*/7 1-3,22 1,15,31 */2 mon,fri", "0 0 * * 0", "13 13 13 * 5",
                         "0 */5 29-31 feb,mar *"};
  const int64_t from = wall("2027-12-20 00:00"), to = wall("2028-04-10 00:00");
  for (size_t e = 0; e < sizeof exprs / sizeof exprs[0]; e++) {
    print_message("%s\n", exprs[e]);
    kjb_cron c;
    kjb_err err;
    assert_int_equal(kjb_cron_parse(exprs[e], 0, &c, &err), 0);
    int64_t last = -1, next = -1;
    assert_int_equal(kjb_cron_prev(&c, from, &last), 0);
    assert_true(last <= from);
    assert_int_equal(kjb_cron_next(&c, from, &next), 0);
    assert_true(matches(&c, last) && matches(&c, next));
    int ticks = 0;
    for (int64_t t = from + 60; t < to; t += 60) {
      int64_t p, n;
      assert_int_equal(kjb_cron_prev(&c, t, &p), 0);
      assert_int_equal(kjb_cron_next(&c, t, &n), 0);
      if (matches(&c, t)) {
        assert_int_equal(t, next); /* next skipped nothing */
        last = t;
        ticks++;
        next = n;
      }
      assert_int_equal(p, last);
      assert_int_equal(n, next);
    }
    assert_true(ticks > 10);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_fields),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_ticks),
      cmocka_unit_test(test_seconds_granularity),
      cmocka_unit_test(test_ticks_against_brute_force),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
