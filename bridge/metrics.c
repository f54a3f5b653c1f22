/* The metric registry. Few distinct series exist (topics x reasons, kinds
 * x outcomes, partitions), so a list searched linearly under a mutex is
 * enough; callers on hot paths aggregate per batch before adding. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { COUNTER, GAUGE, HISTOGRAM } metric_type;

static const char *const type_names[] = {"counter", "gauge", "histogram"};
static const double bounds[] = KJB_LATENCY_BUCKETS;
#define NBOUNDS (sizeof bounds / sizeof bounds[0])
#define MAX_LABELS 4

typedef struct series {
  struct series *next;
  char *name;
  char *help;
  metric_type type;
  char *labels; /* rendered: topic="orders",reason="TRUNCATED" */
  char *values[MAX_LABELS];
  int nvalues;
  double value;                  /* counter, gauge; a histogram's sum */
  uint64_t buckets[NBOUNDS + 1]; /* histogram: per bucket, the last is +Inf */
  uint64_t count;
} series;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static series *head, **tail = &head;

static void label_value(kjb_buf *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\')
      kjb_buf_puts(b, "\\\\");
    else if (*v == '"')
      kjb_buf_puts(b, "\\\"");
    else if (*v == '\n')
      kjb_buf_puts(b, "\\n");
    else
      kjb_buf_putc(b, *v);
  }
}

/* Renders the label pairs of ap into b; values (may be NULL) receives up
 * to MAX_LABELS of the values. Returns how many pairs there were. */
static int render_labels(kjb_buf *b, va_list ap, const char **values) {
  const char *k;
  int n = 0;
  while ((k = va_arg(ap, const char *))) {
    const char *v = va_arg(ap, const char *);
    if (!v)
      v = "";
    if (n)
      kjb_buf_putc(b, ',');
    if (values && n < MAX_LABELS)
      values[n] = v;
    n++;
    kjb_buf_printf(b, "%s=\"", k);
    label_value(b, v);
    kjb_buf_putc(b, '"');
  }
  return n;
}

static series *find(const char *name, const char *labels) {
  for (series *s = head; s; s = s->next)
    if (strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0)
      return s;
  return NULL;
}

/* The series of name and labels, created when new; under lock. */
static series *get(const char *name, const char *help, metric_type type, const char *labels,
                   const char **values, int nvalues) {
  series *s = find(name, labels);
  if (s)
    return s;
  s = kjb_xcalloc(1, sizeof *s);
  s->name = kjb_xstrdup(name);
  s->help = kjb_xstrdup(help);
  s->type = type;
  s->labels = kjb_xstrdup(labels);
  s->nvalues = nvalues < MAX_LABELS ? nvalues : MAX_LABELS;
  for (int i = 0; i < s->nvalues; i++)
    s->values[i] = kjb_xstrdup(values[i]);
  *tail = s;
  tail = &s->next;
  return s;
}

static void update(const char *name, const char *help, metric_type type, double v, va_list ap) {
  kjb_buf labels;
  kjb_buf_init(&labels);
  const char *values[MAX_LABELS];
  int n = render_labels(&labels, ap, values);
  pthread_mutex_lock(&lock);
  series *s = get(name, help, type, labels.data, values, n);
  if (type == COUNTER) {
    s->value += v;
  } else if (type == GAUGE) {
    s->value = v;
  } else {
    size_t i = 0;
    while (i < NBOUNDS && v > bounds[i])
      i++;
    s->buckets[i]++;
    s->count++;
    s->value += v;
  }
  pthread_mutex_unlock(&lock);
  kjb_buf_close(&labels);
}

void kjb_counter_add(const char *name, const char *help, double v, ...) {
  va_list ap;
  va_start(ap, v);
  update(name, help, COUNTER, v, ap);
  va_end(ap);
}

void kjb_gauge_set(const char *name, const char *help, double v, ...) {
  va_list ap;
  va_start(ap, v);
  update(name, help, GAUGE, v, ap);
  va_end(ap);
}

void kjb_histogram_observe(const char *name, const char *help, double v, ...) {
  va_list ap;
  va_start(ap, v);
  update(name, help, HISTOGRAM, v, ap);
  va_end(ap);
}

static void free_series(series *s) {
  free(s->name);
  free(s->help);
  free(s->labels);
  for (int i = 0; i < s->nvalues; i++)
    free(s->values[i]);
  free(s);
}

void kjb_metric_clear(const char *name) {
  pthread_mutex_lock(&lock);
  series **pp = &head;
  while (*pp) {
    series *s = *pp;
    if (strcmp(s->name, name) == 0) {
      *pp = s->next;
      free_series(s);
    } else {
      pp = &s->next;
    }
  }
  tail = pp;
  pthread_mutex_unlock(&lock);
}

double kjb_counter_get(const char *name, ...) {
  kjb_buf labels;
  kjb_buf_init(&labels);
  va_list ap;
  va_start(ap, name);
  render_labels(&labels, ap, NULL);
  va_end(ap);
  pthread_mutex_lock(&lock);
  series *s = find(name, labels.data);
  double v = s ? s->value : 0;
  pthread_mutex_unlock(&lock);
  kjb_buf_close(&labels);
  return v;
}

int kjb_histogram_quantiles(const char *name, const double *q, int n, double *out, uint64_t *count,
                            ...) {
  kjb_buf labels;
  kjb_buf_init(&labels);
  va_list ap;
  va_start(ap, count);
  render_labels(&labels, ap, NULL);
  va_end(ap);
  int rc = -1;
  pthread_mutex_lock(&lock);
  series *s = find(name, labels.data);
  if (s && s->type == HISTOGRAM && s->count > 0) {
    rc = 0;
    *count = s->count;
    for (int j = 0; j < n; j++) {
      double rank = q[j] * (double)s->count;
      uint64_t cum = 0;
      size_t i = 0;
      while (i < NBOUNDS && (double)(cum + s->buckets[i]) < rank)
        cum += s->buckets[i++];
      if (i == NBOUNDS) {
        out[j] = bounds[NBOUNDS - 1]; /* in +Inf: the highest finite bound */
      } else {
        double lo = i ? bounds[i - 1] : 0, hi = bounds[i];
        double in = (double)s->buckets[i];
        out[j] = in > 0 ? lo + (hi - lo) * (rank - (double)cum) / in : hi;
      }
    }
  }
  pthread_mutex_unlock(&lock);
  kjb_buf_close(&labels);
  return rc;
}

/* name{labels} or name{labels,extra}, without braces when both are empty. */
static void series_name(kjb_buf *out, const char *name, const char *suffix, const char *labels,
                        const char *extra) {
  kjb_buf_printf(out, "%s%s", name, suffix);
  if (!labels[0] && !extra)
    return;
  kjb_buf_printf(out, "{%s%s%s}", labels, labels[0] && extra ? "," : "", extra ? extra : "");
}

static void render_series(kjb_buf *out, const series *s) {
  if (s->type != HISTOGRAM) {
    series_name(out, s->name, "", s->labels, NULL);
    kjb_buf_printf(out, " %.17g\n", s->value);
    return;
  }
  uint64_t cum = 0;
  char le[48];
  for (size_t i = 0; i <= NBOUNDS; i++) {
    cum += s->buckets[i];
    if (i < NBOUNDS)
      snprintf(le, sizeof le, "le=\"%.15g\"", bounds[i]);
    else
      snprintf(le, sizeof le, "le=\"+Inf\"");
    series_name(out, s->name, "_bucket", s->labels, le);
    kjb_buf_printf(out, " %llu\n", (unsigned long long)cum);
  }
  series_name(out, s->name, "_sum", s->labels, NULL);
  kjb_buf_printf(out, " %.17g\n", s->value);
  series_name(out, s->name, "_count", s->labels, NULL);
  kjb_buf_printf(out, " %llu\n", (unsigned long long)s->count);
}

void kjb_metrics_render(kjb_buf *out) {
  pthread_mutex_lock(&lock);
  for (series *s = head; s; s = s->next) {
    /* Each name once: HELP/TYPE, then all its series. */
    int seen = 0;
    for (series *p = head; p != s && !seen; p = p->next)
      seen = strcmp(p->name, s->name) == 0;
    if (seen)
      continue;
    kjb_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name,
                   type_names[s->type]);
    for (series *q = s; q; q = q->next)
      if (strcmp(q->name, s->name) == 0)
        render_series(out, q);
  }
  pthread_mutex_unlock(&lock);
}

void kjb_metrics_each(const char *name,
                      void (*fn)(void *arg, const char *const *labels, int nlabels, double v),
                      void *arg) {
  pthread_mutex_lock(&lock);
  for (series *s = head; s; s = s->next)
    if (strcmp(s->name, name) == 0)
      fn(arg, (const char *const *)s->values, s->nvalues,
         s->type == HISTOGRAM ? (double)s->count : s->value);
  pthread_mutex_unlock(&lock);
}

void kjb_metrics_reset(void) {
  pthread_mutex_lock(&lock);
  for (series *s = head, *n; s; s = n) {
    n = s->next;
    free_series(s);
  }
  head = NULL;
  tail = &head;
  pthread_mutex_unlock(&lock);
}
