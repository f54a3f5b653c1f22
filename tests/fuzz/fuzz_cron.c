/* libFuzzer target for cron expressions (config `schedules.cron`):
 * kjb_cron_parse, then the ticks before and after a wall-clock time.
 *
 * The input is the expression up to its first NUL byte, then a
 * little-endian 64-bit word for the wall-clock time (taken within years
 * 1970-9999) and a byte whose low bit asks for KJB_CRON_SECONDS.
 *
 * Beyond no crash, leak or undefined behaviour, these must hold:
 * - a refused expression is -KJB_ECONFIG with a message, and leaves the
 *   parsed value zeroed;
 * - an accepted one allows only values in each field's range, at least
 *   one in each, and some day of some selected month;
 * - prev <= at < next, both match the expression (checked here on the C
 *   library's calendar), and no tick lies between them: the tick after
 *   prev is next and the tick at or before next - 1 is prev.
 *
 * KJB_FUZZ_DEBUG=1 prints each input's result to stderr. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "fuzz.h"

static int debug;
static const char *expr_text;

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_cron: \"%s\": ", expr_text ? expr_text : "");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *d = getenv("KJB_FUZZ_DEBUG");
  debug = d && strcmp(d, "1") == 0;
  return 0;
}

static int matches(const kjb_cron *c, int64_t at) {
  time_t t = (time_t)at;
  struct tm tm;
  gmtime_r(&t, &tm);
  int dom = (c->dom >> tm.tm_mday) & 1, dow = (c->dow >> tm.tm_wday) & 1;
  int day = c->dom_star || c->dow_star ? dom && dow : dom || dow;
  return ((c->second >> tm.tm_sec) & 1) && ((c->minute >> tm.tm_min) & 1) &&
         ((c->hour >> tm.tm_hour) & 1) && ((c->month >> (tm.tm_mon + 1)) & 1) && day;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t n = strnlen((const char *)data, size);
  char *text = malloc(n + 1);
  memcpy(text, data, n);
  text[n] = '\0';
  expr_text = text;
  uint64_t w = 0;
  uint8_t flags = 0;
  for (size_t k = 0; k < 8 && n + 1 + k < size; k++)
    w |= (uint64_t)data[n + 1 + k] << (8 * k);
  if (n + 9 < size)
    flags = data[n + 9];
  /* 1970-01-01 to 9999-12-31. */
  int64_t at = (int64_t)(w % 253402300800ULL);

  kjb_cron c;
  kjb_err err = {0};
  int rc = kjb_cron_parse(text, flags & 1 ? KJB_CRON_SECONDS : 0, &c, &err);
  if (debug)
    fprintf(stderr, "\"%s\": %s\n", text, rc ? err.msg : "ok");
  if (rc) {
    kjb_cron zero;
    memset(&zero, 0, sizeof zero);
    if (rc != -KJB_ECONFIG || !err.msg[0] || memcmp(&c, &zero, sizeof c) != 0)
      die("refused with rc %d, message \"%s\", or a value left behind", rc, err.msg);
    free(text);
    return 0;
  }
  if (!c.second || c.second >> 60 || !c.minute || c.minute >> 60 || !c.hour || c.hour >> 24 ||
      !c.dom || (c.dom & 1) || !c.month || (c.month & 1) || c.month >> 13 || !c.dow || c.dow >> 7)
    die("a field allows nothing or values out of range");
  int64_t prev, next;
  int have_prev = kjb_cron_prev(&c, at, &prev) == 0;
  int have_next = kjb_cron_next(&c, at, &next) == 0;
  /* None within 400 years happens only near the ends of the range. */
  if (!have_next && at < 253402300800LL - 401LL * 366 * 86400)
    die("no tick after %lld", (long long)at);
  if (!have_prev && at > 401LL * 366 * 86400)
    die("no tick at or before %lld", (long long)at);
  if (have_prev && (prev > at || !matches(&c, prev)))
    die("prev %lld of %lld", (long long)prev, (long long)at);
  if (have_next && (next <= at || !matches(&c, next)))
    die("next %lld of %lld", (long long)next, (long long)at);
  if (have_prev && have_next) {
    int64_t again;
    if (kjb_cron_next(&c, prev, &again) != 0 || again != next)
      die("the tick after prev %lld is not next %lld", (long long)prev, (long long)next);
    if (kjb_cron_prev(&c, next - 1, &again) != 0 || again != prev)
      die("the tick before next %lld is not prev %lld", (long long)next, (long long)prev);
  }
  free(text);
  return 0;
}
