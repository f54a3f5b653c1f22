/* Progress lines of long commands: done/total, the recent rate and the time
 * left, rewritten in place on a terminal and written now and then
 * elsewhere. */
#include "progress.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

#define TTY_EVERY_US INT64_C(200000)    /* five lines a second at most */
#define PLAIN_EVERY_US INT64_C(5000000) /* KJB_PROGRESS_INTERVAL_MS replaces it */
/* The rate is that of the last WINDOW_US or a little more: measured from
 * the newest sample at least that old, or from the oldest one while the
 * run is younger. Samples are taken SAMPLE_EVERY_US apart at least, and
 * SAMPLES of them reach back further than the window. */
#define WINDOW_US INT64_C(5000000)
#define SAMPLE_EVERY_US INT64_C(250000)
#define SAMPLES 24
/* Below this, a rate says more about the clock than about the work. */
#define MIN_SPAN_US INT64_C(100000)

typedef struct {
  int64_t at;
  uint64_t done;
} sample;

struct kjb_progress {
  FILE *out;
  char *what;
  uint64_t total;
  bool tty;
  bool shown;    /* on a terminal: a line is drawn and not ended */
  bool wrote;    /* a line was written */
  int64_t every; /* µs between lines */
  int64_t start, last_line;
  sample ring[SAMPLES]; /* ring[head] is the newest of n */
  int head, n;
  int64_t (*now)(void *ctx);
  void *ctx;
};

static int64_t system_clock(void *ctx) { return kjb_now_mono_us(); }

/* snprintf's return value as a length. */
static size_t length(int n) { return n < 0 ? 0 : (size_t)n; }

size_t kjb_progress_fmt_count(char *buf, size_t cap, uint64_t n) {
  char digits[24], out[32];
  int len = snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
  size_t o = 0;
  for (int i = 0; i < len; i++) {
    if (i > 0 && (len - i) % 3 == 0)
      out[o++] = ',';
    out[o++] = digits[i];
  }
  out[o] = '\0';
  return length(snprintf(buf, cap, "%s", out));
}

size_t kjb_progress_fmt_duration(char *buf, size_t cap, int64_t secs) {
  if (secs < 0)
    secs = 0;
  int n;
  if (secs < 60)
    n = snprintf(buf, cap, "%llds", (long long)secs);
  else if (secs < 3600)
    n = snprintf(buf, cap, "%lldm%02llds", (long long)(secs / 60), (long long)(secs % 60));
  else
    n = snprintf(buf, cap, "%lldh%02lldm", (long long)(secs / 3600), (long long)(secs % 3600 / 60));
  return length(n);
}

/* Records per second as "1,830" or, below ten, "3.5". */
static void fmt_rate(char *buf, size_t cap, double rate) {
  if (rate >= 10)
    kjb_progress_fmt_count(buf, cap, (uint64_t)llround(rate));
  else
    snprintf(buf, cap, "%.1f", rate);
}

static void push_sample(kjb_progress *p, int64_t at, uint64_t done) {
  if (p->n > 0 && at - p->ring[p->head].at < SAMPLE_EVERY_US)
    return;
  p->head = (p->head + 1) % SAMPLES;
  p->ring[p->head] = (sample){at, done};
  if (p->n < SAMPLES)
    p->n++;
}

/* Records per second over the window, or -1 when the run is too young to
 * tell. */
static double recent_rate(const kjb_progress *p, int64_t at, uint64_t done) {
  const sample *from = NULL;
  for (int i = 0; i < p->n; i++) {
    from = &p->ring[(p->head - i + SAMPLES) % SAMPLES];
    if (at - from->at >= WINDOW_US)
      break;
  }
  int64_t span = from ? at - from->at : 0;
  if (span < MIN_SPAN_US)
    return -1;
  return done > from->done ? (double)(done - from->done) * 1e6 / (double)span : 0;
}

/* "what: done[/total] records[ (pct%)]" */
static void fmt_head(kjb_buf *b, const kjb_progress *p, uint64_t done) {
  char d[32], t[32];
  kjb_progress_fmt_count(d, sizeof d, done);
  if (!p->total) {
    kjb_buf_printf(b, "%s: %s records", p->what, d);
    return;
  }
  kjb_progress_fmt_count(t, sizeof t, p->total);
  unsigned pct = done >= p->total ? 100 : (unsigned)((double)done * 100 / (double)p->total);
  kjb_buf_printf(b, "%s: %s/%s records (%u%%)", p->what, d, t, pct);
}

static void emit(kjb_progress *p, const kjb_buf *line, bool final) {
  if (p->tty)
    fprintf(p->out, "\r%s\033[K%s", line->data, final ? "\n" : "");
  else
    fprintf(p->out, "%s\n", line->data);
  fflush(p->out);
  p->shown = p->tty && !final;
  p->wrote = true;
}

/* The line while the work goes on: the head, the recent rate, the ETA. */
static void draw(kjb_progress *p, int64_t at, uint64_t done) {
  char r[32], eta[32];
  kjb_buf line;
  kjb_buf_init(&line);
  fmt_head(&line, p, done);
  double rate = recent_rate(p, at, done);
  if (rate >= 0) {
    fmt_rate(r, sizeof r, rate);
    kjb_buf_printf(&line, ", %s/s", r);
  }
  if (rate > 0 && p->total > done) {
    kjb_progress_fmt_duration(eta, sizeof eta, (int64_t)ceil((double)(p->total - done) / rate));
    kjb_buf_printf(&line, ", ETA %s", eta);
  }
  emit(p, &line, false);
  kjb_buf_close(&line);
  p->last_line = at;
}

kjb_progress *kjb_progress_start(FILE *out, const char *what, uint64_t total) {
  if (!out)
    return NULL;
  kjb_progress *p = kjb_xcalloc(1, sizeof *p);
  p->out = out;
  p->what = kjb_xstrdup(what);
  p->total = total;
  p->tty = isatty(fileno(out));
  p->every = TTY_EVERY_US;
  if (!p->tty) {
    const char *env = getenv("KJB_PROGRESS_INTERVAL_MS");
    int64_t ms;
    p->every = env && kjb_parse_i64(env, 1, 3600000, &ms) == 0 ? ms * 1000 : PLAIN_EVERY_US;
  }
  kjb_progress_set_clock(p, system_clock, NULL);
  return p;
}

void kjb_progress_set_clock(kjb_progress *p, int64_t (*now)(void *ctx), void *ctx) {
  if (!p)
    return;
  p->now = now;
  p->ctx = ctx;
  p->start = p->last_line = now(ctx);
  p->n = 0;
  push_sample(p, p->start, 0);
}

void kjb_progress_total(kjb_progress *p, uint64_t total) {
  if (p)
    p->total = total;
}

void kjb_progress_update(kjb_progress *p, uint64_t done) {
  if (!p)
    return;
  int64_t at = p->now(p->ctx);
  push_sample(p, at, done);
  if (at - p->last_line >= p->every)
    draw(p, at, done);
}

void kjb_progress_clear(kjb_progress *p) {
  if (!p || !p->shown)
    return;
  fputs("\r\033[K", p->out);
  fflush(p->out);
  p->shown = false;
}

/* The last line: the head, the time taken and the average rate. */
void kjb_progress_end(kjb_progress *p, uint64_t done) {
  if (!p)
    return;
  if (p->tty || p->wrote) {
    int64_t took = p->now(p->ctx) - p->start;
    char d[32], r[32];
    kjb_buf line;
    kjb_buf_init(&line);
    fmt_head(&line, p, done);
    if (took < 1000000) {
      kjb_buf_puts(&line, " in <1s");
    } else {
      kjb_progress_fmt_duration(d, sizeof d, (took + 500000) / 1000000);
      fmt_rate(r, sizeof r, (double)done * 1e6 / (double)took);
      kjb_buf_printf(&line, " in %s, %s/s", d, r);
    }
    emit(p, &line, true);
    kjb_buf_close(&line);
  }
  free(p->what);
  free(p);
}
