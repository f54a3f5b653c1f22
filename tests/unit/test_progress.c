/* Progress lines: numbers and durations as they are written, and, on a
 * clock the test moves, when lines come, what they say, and how the rate
 * follows a change of pace. */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "progress.h"
#include "testutil.h"

#define SEC INT64_C(1000000)

static void test_count(void **state) {
  static const struct {
    uint64_t n;
    const char *text;
  } cases[] = {
      {0, "0"},
      {7, "7"},
      {999, "999"},
      {1000, "1,000"},
      {4210, "4,210"},
      {10000, "10,000"},
      {999999, "999,999"},
      {1000000, "1,000,000"},
      {123456789, "123,456,789"},
      {UINT64_MAX, "18,446,744,073,709,551,615"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[32];
    size_t len = kjb_progress_fmt_count(buf, sizeof buf, cases[i].n);
    assert_string_equal(buf, cases[i].text);
    assert_int_equal(len, strlen(cases[i].text));
  }
  char small[4];
  assert_int_equal(kjb_progress_fmt_count(small, sizeof small, 12345), 6);
  assert_string_equal(small, "12,");
}

static void test_duration(void **state) {
  static const struct {
    int64_t secs;
    const char *text;
  } cases[] = {
      {-5, "0s"},      {0, "0s"},       {3, "3s"},         {59, "59s"},
      {60, "1m00s"},   {125, "2m05s"},  {3599, "59m59s"},  {3600, "1h00m"},
      {3720, "1h02m"}, {3779, "1h02m"}, {86399, "23h59m"}, {360000, "100h00m"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[32];
    size_t len = kjb_progress_fmt_duration(buf, sizeof buf, cases[i].secs);
    assert_string_equal(buf, cases[i].text);
    assert_int_equal(len, strlen(cases[i].text));
  }
}

/* The clock the tests move. */
static int64_t fake_now;
static int64_t fake_clock(void *ctx) { return fake_now; }

/* What was written to f since the last call, NUL-terminated, in buf. */
static const char *written(FILE *f, char *buf, size_t cap) {
  static long from;
  long end = ftell(f);
  if (end < from)
    from = 0;
  fseek(f, from, SEEK_SET);
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  from = ftell(f);
  return buf;
}

static kjb_progress *fake_start(FILE *out, const char *what, uint64_t total) {
  kjb_progress *p = kjb_progress_start(out, what, total);
  fake_now = 1000 * SEC;
  kjb_progress_set_clock(p, fake_clock, NULL);
  return p;
}

static void test_null(void **state) {
  assert_null(kjb_progress_start(NULL, "replay", 10));
  kjb_progress_total(NULL, 1);
  kjb_progress_update(NULL, 1);
  kjb_progress_clear(NULL);
  kjb_progress_set_clock(NULL, fake_clock, NULL);
  kjb_progress_end(NULL, 1);
}

/* Not a terminal: a plain line every 5 s, a final line only after one. */
static void test_plain(void **state) {
  unsetenv("KJB_PROGRESS_INTERVAL_MS");
  char buf[1024];
  FILE *f = tmpfile();
  assert_non_null(f);
  written(f, buf, sizeof buf);

  /* A short run adds nothing. */
  kjb_progress *p = fake_start(f, "produce", 100);
  for (int i = 1; i <= 49; i++) {
    fake_now += SEC / 10;
    kjb_progress_update(p, (uint64_t)i * 2);
  }
  kjb_progress_end(p, 100);
  assert_string_equal(written(f, buf, sizeof buf), "");

  /* 1,000 records a second for 5 s, then 500 a second. */
  p = fake_start(f, "replay", 10000);
  uint64_t done = 0;
  for (int i = 1; i <= 20; i++) {
    fake_now += SEC / 4;
    done += 250;
    kjb_progress_update(p, done);
    if (i < 20)
      assert_string_equal(written(f, buf, sizeof buf), "");
  }
  assert_string_equal(written(f, buf, sizeof buf),
                      "replay: 5,000/10,000 records (50%), 1,000/s, ETA 5s\n");
  for (int i = 1; i <= 20; i++) {
    fake_now += SEC / 4;
    done += 125;
    kjb_progress_update(p, done);
  }
  /* The rate of the last 5 s, not the average since the start (750/s). */
  assert_string_equal(written(f, buf, sizeof buf),
                      "replay: 7,500/10,000 records (75%), 500/s, ETA 5s\n");
  fake_now += 2 * SEC;
  kjb_progress_end(p, 8000);
  assert_string_equal(written(f, buf, sizeof buf),
                      "replay: 8,000/10,000 records (80%) in 12s, 667/s\n");

  /* Unknown total: no percentage, no ETA; a total set later counts. */
  p = fake_start(f, "reindex", 0);
  fake_now += 5 * SEC;
  kjb_progress_update(p, 20);
  assert_string_equal(written(f, buf, sizeof buf), "reindex: 20 records, 4.0/s\n");
  kjb_progress_total(p, 40);
  fake_now += 5 * SEC;
  kjb_progress_update(p, 30);
  assert_string_equal(written(f, buf, sizeof buf), "reindex: 30/40 records (75%), 2.0/s, ETA 5s\n");
  /* Nothing done lately: a rate of 0 and no ETA. */
  for (int i = 0; i < 20; i++) {
    fake_now += SEC / 4;
    kjb_progress_update(p, 30);
  }
  assert_string_equal(written(f, buf, sizeof buf), "reindex: 30/40 records (75%), 0.0/s\n");
  kjb_progress_end(p, 40);
  assert_string_equal(written(f, buf, sizeof buf), "reindex: 40/40 records (100%) in 15s, 2.7/s\n");

  /* The interval the e2e tests shorten. */
  setenv("KJB_PROGRESS_INTERVAL_MS", "300", 1);
  p = fake_start(f, "produce", 0);
  fake_now += SEC / 4;
  kjb_progress_update(p, 1);
  assert_string_equal(written(f, buf, sizeof buf), "");
  fake_now += SEC / 20;
  kjb_progress_update(p, 3);
  assert_string_equal(written(f, buf, sizeof buf), "produce: 3 records, 10/s\n");
  kjb_progress_end(p, 3);
  assert_string_equal(written(f, buf, sizeof buf), "produce: 3 records in <1s\n");
  setenv("KJB_PROGRESS_INTERVAL_MS", "0", 1); /* out of range: the 5 s */
  p = fake_start(f, "produce", 0);
  fake_now += 4 * SEC;
  kjb_progress_update(p, 1);
  kjb_progress_end(p, 1);
  assert_string_equal(written(f, buf, sizeof buf), "");
  unsetenv("KJB_PROGRESS_INTERVAL_MS");
  fclose(f);
}

/* On a terminal (a pseudo-terminal here): one line rewritten at most five
 * times a second, erased on request, ended with a newline. */
static void test_tty(void **state) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
    skip();
  int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  assert_true(slave >= 0);
  struct termios raw;
  tcgetattr(slave, &raw);
  cfmakeraw(&raw);
  tcsetattr(slave, TCSANOW, &raw);
  FILE *out = fdopen(slave, "w");
  assert_non_null(out);

  kjb_progress *p = fake_start(out, "produce", 1000);
  for (int i = 1; i <= 10; i++) {
    fake_now += SEC / 10;
    kjb_progress_update(p, (uint64_t)i * 50);
  }
  kjb_progress_clear(p);
  kjb_progress_clear(p);
  fake_now += SEC / 5;
  kjb_progress_update(p, 600);
  fake_now += SEC;
  kjb_progress_end(p, 1000);
  fclose(out);

  /* The terminal passes the bytes on in pieces, and not at once: read up
   * to the final line's newline. */
  char buf[2048];
  size_t got = 0;
  struct pollfd pfd = {.fd = master, .events = POLLIN};
  while (got < sizeof buf - 1 && (got == 0 || buf[got - 1] != '\n') && poll(&pfd, 1, 5000) == 1) {
    ssize_t n = read(master, buf + got, sizeof buf - 1 - got);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  buf[got] = '\0';
  assert_string_equal(buf, "\rproduce: 100/1,000 records (10%), 500/s, ETA 2s\033[K"
                           "\rproduce: 200/1,000 records (20%), 500/s, ETA 2s\033[K"
                           "\rproduce: 300/1,000 records (30%), 500/s, ETA 2s\033[K"
                           "\rproduce: 400/1,000 records (40%), 500/s, ETA 2s\033[K"
                           "\rproduce: 500/1,000 records (50%), 500/s, ETA 1s\033[K"
                           "\r\033[K"
                           "\rproduce: 600/1,000 records (60%), 500/s, ETA 1s\033[K"
                           "\rproduce: 1,000/1,000 records (100%) in 2s, 455/s\033[K\n");
  close(master);
}

int main(void) {
  kjb_test_clear_kjb_env();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_count), cmocka_unit_test(test_duration), cmocka_unit_test(test_null),
      cmocka_unit_test(test_plain), cmocka_unit_test(test_tty),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
