/* The counter registry. Few distinct series exist (topics x reasons,
 * kinds x outcomes), so a list searched linearly under a mutex is enough;
 * callers on hot paths aggregate per batch before adding. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct series {
  struct series *next;
  char *name;
  char *help;
  char *labels; /* rendered: topic="orders",reason="TRUNCATED" */
  double value;
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

static void render_labels(kjb_buf *b, va_list ap) {
  const char *k;
  int first = 1;
  while ((k = va_arg(ap, const char *))) {
    const char *v = va_arg(ap, const char *);
    if (!first)
      kjb_buf_putc(b, ',');
    first = 0;
    kjb_buf_printf(b, "%s=\"", k);
    label_value(b, v ? v : "");
    kjb_buf_putc(b, '"');
  }
}

static series *find(const char *name, const char *labels) {
  for (series *s = head; s; s = s->next)
    if (strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0)
      return s;
  return NULL;
}

void kjb_counter_add(const char *name, const char *help, double v, ...) {
  kjb_buf labels;
  kjb_buf_init(&labels);
  va_list ap;
  va_start(ap, v);
  render_labels(&labels, ap);
  va_end(ap);
  pthread_mutex_lock(&lock);
  series *s = find(name, labels.data);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s)
      abort();
    s->name = strdup(name);
    s->help = strdup(help);
    s->labels = strdup(labels.data);
    *tail = s;
    tail = &s->next;
  }
  s->value += v;
  pthread_mutex_unlock(&lock);
  kjb_buf_close(&labels);
}

double kjb_counter_get(const char *name, ...) {
  kjb_buf labels;
  kjb_buf_init(&labels);
  va_list ap;
  va_start(ap, name);
  render_labels(&labels, ap);
  va_end(ap);
  pthread_mutex_lock(&lock);
  series *s = find(name, labels.data);
  double v = s ? s->value : 0;
  pthread_mutex_unlock(&lock);
  kjb_buf_close(&labels);
  return v;
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
    kjb_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", s->name, s->help, s->name);
    for (series *q = s; q; q = q->next)
      if (strcmp(q->name, s->name) == 0)
        kjb_buf_printf(out, "%s{%s} %.17g\n", q->name, q->labels, q->value);
  }
  pthread_mutex_unlock(&lock);
}

void kjb_metrics_reset(void) {
  pthread_mutex_lock(&lock);
  for (series *s = head, *n; s; s = n) {
    n = s->next;
    free(s->name);
    free(s->help);
    free(s->labels);
    free(s);
  }
  head = NULL;
  tail = &head;
  pthread_mutex_unlock(&lock);
}
