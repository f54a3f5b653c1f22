/* libFuzzer target for offset-reset specs (kjb replay --reset-offsets and
 * POST /api/replay's reset_offsets): kjb_reset_parse, then what a parsed
 * spec does without a broker, kjb_reset_target and kjb_reset_time_ms.
 *
 * The input is the spec up to its first NUL byte (it arrives as a C
 * string), then up to five little-endian 64-bit words for applying it:
 * the low and high watermarks, the committed offset, the offset the broker
 * found for the time and the wall clock in ms (missing bytes are zeros).
 * Watermarks and the clock are made what a broker and a clock give:
 * 0 <= low <= high, now >= 0.
 *
 * Beyond no crash, leak or undefined behaviour, these must hold:
 * - a refused spec is -KJB_EUSAGE with a message `bad reset spec "...":
 *   <why>` quoting at most 64 bytes of it, valid UTF-8 when the spec is
 *   (the API answers it as JSON), and leaves the output untouched;
 * - an accepted spec round-trips: to-offset and shift-by print back to
 *   the very text (integers are strict), a datetime formatted back in UTC
 *   and a duration formatted back as PnDTnHnMn.nnnS parse to the same
 *   value, and each value lies in its documented range (offsets and
 *   durations >= 0, datetimes within years 0000-9999 give or take a zone
 *   offset); a fraction appears only on the seconds of a duration;
 * - applied, the target offset is exactly the spec's offset clamped to
 *   [low, high] (computed here in 128 bits), and the time asked of the
 *   broker is -1 for specs not about time, else never negative.
 *
 * KJB_FUZZ_DEBUG=1 prints each input's result to stderr. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "testutil.h"
#include "replay.h"
#include "util.h"

static int debug;
static const char *spec_text; /* the input being run, for die() */

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_reset: spec \"%s\": ", spec_text ? spec_text : "");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

static int64_t word(const uint8_t *p, size_t n, size_t i) {
  uint64_t w = 0;
  for (size_t k = 0; k < 8 && i * 8 + k < n; k++)
    w |= (uint64_t)p[i * 8 + k] << (8 * k);
  return (int64_t)w;
}

/* Milliseconds since the epoch of a UTC civil time. */
static int64_t civil_ms(int64_t y, int64_t mo, int64_t d, int64_t h, int64_t mi, int64_t s,
                        int64_t ms) {
  int64_t days;
  if (kjb_civil_to_days(y, mo, d, &days) < 0)
    die("civil date %" PRId64 "-%" PRId64 "-%" PRId64 " refused", y, mo, d);
  return ((days * 86400 + h * 3600 + mi * 60 + s) * 1000) + ms;
}

static kjb_reset_spec parse_ok(const char *text) {
  kjb_reset_spec spec;
  kjb_err err;
  if (kjb_reset_parse(text, &spec, &err) != 0)
    die("round trip \"%s\" refused: %s", text, err.msg);
  return spec;
}

static void check_error(const char *text, int rc, const kjb_err *err, const kjb_reset_spec *out) {
  static const char head[] = "bad reset spec \"";
  if (rc != -KJB_EUSAGE || err->code != KJB_EUSAGE)
    die("refused with rc %d, code %s", rc, kjb_err_name(err->code));
  if (!memchr(err->msg, '\0', sizeof err->msg))
    die("message not terminated");
  if (strncmp(err->msg, head, sizeof head - 1) != 0)
    die("message \"%s\" does not start with %s", err->msg, head);
  /* The quote is the whole spec, or its first 61 to 64 bytes (a UTF-8
   * character is not cut; in invalid UTF-8, fewer) and "...", then `": `
   * and a reason. */
  const char *quoted = err->msg + sizeof head - 1;
  size_t n = strlen(text), max = n < 64 ? n : 64, k = max + 1;
  size_t min = kjb_test_utf8_ok(text, n) && max >= 3 ? max - 3 : 0;
  while (k-- > 0 && k >= min) {
    const char *rest = quoted + k;
    if (strncmp(quoted, text, k) != 0)
      continue;
    if (k < n && strncmp(rest, "...", 3) == 0)
      rest += 3;
    else if (k < n)
      continue;
    if (strncmp(rest, "\": ", 3) == 0 && rest[3])
      break;
  }
  if (k < min || k > max)
    die("message \"%s\" does not quote the spec as it should or gives no reason", err->msg);
  if (kjb_test_utf8_ok(text, n) && !kjb_test_utf8_ok(err->msg, strlen(err->msg)))
    die("message \"%s\" is not valid UTF-8 for a valid UTF-8 spec", err->msg);
  if (out->kind != KJB_RESET_LATEST || out->value != 4242)
    die("a refused spec changed the output");
}

/* "PnDTnHnMn.nnnS": every unit, for ms >= 0. */
static void format_duration(char *buf, size_t cap, int64_t ms) {
  snprintf(buf, cap, "by-duration:P%" PRId64 "DT%" PRId64 "H%" PRId64 "M%" PRId64 ".%03" PRId64 "S",
           ms / 86400000, ms / 3600000 % 24, ms / 60000 % 60, ms / 1000 % 60, ms % 1000);
}

static void check_accepted(const char *text, const kjb_reset_spec *spec) {
  char buf[128];
  switch (spec->kind) {
  case KJB_RESET_EARLIEST:
  case KJB_RESET_LATEST: {
    const char *name = spec->kind == KJB_RESET_EARLIEST ? "to-earliest" : "to-latest";
    if (strcmp(text, name) != 0 || spec->value != 0)
      die("accepted as %s with value %" PRId64, name, spec->value);
    break;
  }
  case KJB_RESET_OFFSET:
  case KJB_RESET_SHIFT:
    snprintf(buf, sizeof buf, "%s:%" PRId64,
             spec->kind == KJB_RESET_OFFSET ? "to-offset" : "shift-by", spec->value);
    if (strcmp(buf, text) != 0)
      die("accepted as \"%s\"", buf);
    if (spec->kind == KJB_RESET_OFFSET && spec->value < 0)
      die("negative offset %" PRId64, spec->value);
    break;
  case KJB_RESET_DATETIME: {
    /* 0000-01-01T00:00:00+23:59 to 9999-12-31T23:59:59.999-23:59. */
    int64_t zone = (23 * 3600 + 59 * 60) * 1000;
    int64_t lo = civil_ms(0, 1, 1, 0, 0, 0, 0) - zone;
    int64_t hi = civil_ms(9999, 12, 31, 23, 59, 59, 999) + zone;
    if (spec->value < lo || spec->value > hi)
      die("datetime %" PRId64 " ms out of range", spec->value);
    int64_t days =
        spec->value >= 0 ? spec->value / 86400000 : -((-spec->value + 86399999) / 86400000);
    int64_t in_day = spec->value - days * 86400000, y;
    unsigned mo, d;
    kjb_civil_from_days(days, &y, &mo, &d);
    if (y >= 0 && y <= 9999) {
      snprintf(buf, sizeof buf,
               "to-datetime:%04" PRId64 "-%02u-%02uT%02" PRId64 ":%02" PRId64 ":%02" PRId64
               ".%03" PRId64 "Z",
               y, mo, d, in_day / 3600000, in_day / 60000 % 60, in_day / 1000 % 60, in_day % 1000);
      kjb_reset_spec back = parse_ok(buf);
      if (back.kind != KJB_RESET_DATETIME || back.value != spec->value)
        die("formatted back as \"%s\", which parses to %" PRId64 " ms, not %" PRId64, buf,
            back.value, spec->value);
    }
    break;
  }
  case KJB_RESET_DURATION: {
    if (spec->value < 0)
      die("negative duration %" PRId64, spec->value);
    /* Only seconds take a fraction: after a '.' come digits and "S" at
     * the end. */
    for (const char *dot = strchr(text, '.'); dot; dot = strchr(dot + 1, '.')) {
      size_t digits = strspn(dot + 1, "0123456789");
      if (digits == 0 || strcmp(dot + 1 + digits, "S") != 0)
        die("accepted a fraction on another unit than seconds");
    }
    format_duration(buf, sizeof buf, spec->value);
    kjb_reset_spec back = parse_ok(buf);
    if (back.kind != KJB_RESET_DURATION || back.value != spec->value)
      die("formatted back as \"%s\", which parses to %" PRId64 " ms", buf, back.value);
    break;
  }
  default: die("unknown kind %d", (int)spec->kind);
  }
}

static void check_applied(const kjb_reset_spec *spec, int64_t low, int64_t high, int64_t committed,
                          int64_t for_time, int64_t now) {
  __int128 want;
  switch (spec->kind) {
  case KJB_RESET_EARLIEST: want = low; break;
  case KJB_RESET_LATEST: want = high; break;
  case KJB_RESET_OFFSET: want = spec->value; break;
  case KJB_RESET_SHIFT: want = (__int128)(committed >= 0 ? committed : low) + spec->value; break;
  default: want = for_time >= 0 ? for_time : high; break;
  }
  want = want < low ? low : want > high ? high : want;
  int64_t got = kjb_reset_target(spec, low, high, committed, for_time);
  if (got < low || got > high || got != (int64_t)want)
    die("target %" PRId64 " for low %" PRId64 ", high %" PRId64 ", committed %" PRId64
        ", for_time %" PRId64 "; expected %" PRId64,
        got, low, high, committed, for_time, (int64_t)want);

  int64_t at = kjb_reset_time_ms(spec, now);
  if (spec->kind == KJB_RESET_DATETIME)
    want = spec->value < 0 ? 0 : spec->value;
  else if (spec->kind == KJB_RESET_DURATION)
    want = (__int128)now - spec->value < 0 ? 0 : (__int128)now - spec->value;
  else
    want = -1;
  if (at != (int64_t)want)
    die("time %" PRId64 " for now %" PRId64 "; expected %" PRId64, at, now, (int64_t)want);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  debug = getenv("KJB_FUZZ_DEBUG") && *getenv("KJB_FUZZ_DEBUG") == '1';
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, '\0', size);
  size_t n = nul ? (size_t)(nul - data) : size;
  char *text = malloc(n + 1);
  memcpy(text, data, n);
  text[n] = '\0';
  spec_text = text;
  const uint8_t *tail = nul ? nul + 1 : data + size;
  size_t tn = (size_t)(data + size - tail);

  kjb_reset_spec spec = {KJB_RESET_LATEST, 4242};
  kjb_err err = {0};
  int rc = kjb_reset_parse(text, &spec, &err);
  if (rc != 0) {
    check_error(text, rc, &err, &spec);
    if (debug)
      fprintf(stderr, "%s\n", err.msg);
  } else {
    check_accepted(text, &spec);
    int64_t low = (int64_t)((uint64_t)word(tail, tn, 0) & INT64_MAX);
    int64_t high = (int64_t)((uint64_t)word(tail, tn, 1) & INT64_MAX);
    if (low > high) {
      int64_t t = low;
      low = high;
      high = t;
    }
    int64_t now = (int64_t)((uint64_t)word(tail, tn, 4) & INT64_MAX);
    check_applied(&spec, low, high, word(tail, tn, 2), word(tail, tn, 3), now);
    if (debug)
      fprintf(stderr, "%s: kind %d, value %" PRId64 "\n", text, (int)spec.kind, spec.value);
  }
  spec_text = NULL;
  free(text);
  return 0;
}
