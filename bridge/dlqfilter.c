/* Dead-letter filters: strict parsing and their SQL (see dlqfilter.h). */
#include "dlqfilter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[KJB_DLQ_F__COUNT] = {
    "id", "dlq-topic", "source-topic", "reason", "since", "until", "key", "status",
};

static const char *const STATUSES[] = {"dead", "replayed", "failing", "ignored"};

void kjb_dlq_filter_init(kjb_dlq_filter *f) { memset(f, 0, sizeof *f); }

void kjb_dlq_filter_close(kjb_dlq_filter *f) {
  free(f->ids);
  free(f->dlq_topic);
  free(f->source_topic);
  free(f->reason);
  free(f->status);
  free(f->key);
  memset(f, 0, sizeof *f);
}

const char *kjb_dlq_filter_name(kjb_dlq_filter_field field) {
  return field < KJB_DLQ_F__COUNT ? NAMES[field] : "?";
}

int kjb_dlq_filter_lookup(const char *name, kjb_dlq_filter_field *field) {
  for (int i = 0; i < KJB_DLQ_F__COUNT; i++) {
    const char *n = NAMES[i];
    size_t k = 0;
    while (n[k] && (name[k] == n[k] || (n[k] == '-' && name[k] == '_')))
      k++;
    if (!n[k] && !name[k]) {
      *field = (kjb_dlq_filter_field)i;
      return 0;
    }
  }
  return -1;
}

bool kjb_dlq_status_valid(const char *s) {
  for (size_t i = 0; i < sizeof STATUSES / sizeof STATUSES[0]; i++)
    if (strcmp(s, STATUSES[i]) == 0)
      return true;
  return false;
}

int kjb_dlq_time_parse(const char *s, int64_t now_us, int64_t *out_us, const char **why) {
  /* Nothing was dead-lettered before the year 1, and PostgreSQL has no
   * year 0: earlier times are that. */
  const int64_t floor_us = INT64_C(-62135596800) * 1000000;
  int64_t t;
  /* A duration never has a '-' or ':', a date always has both. */
  if (!strpbrk(s, "-:") && kjb_duration_parse(s, &t) == 0) {
    *out_us = now_us - floor_us < t ? floor_us : now_us - t;
    return 0;
  }
  if (kjb_datetime_parse(s, &t, why) == 0) {
    *out_us = t < floor_us ? floor_us : t;
    return 0;
  }
  /* Past the shape ("no such date"), the date's own reason is clearer. */
  if (strncmp(*why, "expected", 8) == 0)
    *why = "expected an RFC 3339 time such as 2026-11-21T10:00:00Z or a duration back from now "
           "such as 2h, 30m or 7d";
  return -1;
}

/* At most 64 bytes of a value, never cutting a character, for quoting it
 * in a message that the API may answer as JSON. */
#define QUOTE(s) (int)kjb_utf8_prefix((s), 64), (s), (s)[kjb_utf8_prefix((s), 64)] ? "..." : ""

static int set_text(char **slot, const char *value, const char *opt, const char *name,
                    kjb_err *err) {
  if (*slot)
    return kjb_err_set(err, KJB_EUSAGE, "%s%s given twice", opt, name);
  if (!*value)
    return kjb_err_set(err, KJB_EUSAGE, "%s%s must not be empty", opt, name);
  *slot = kjb_xstrdup(value);
  return 0;
}

int kjb_dlq_filter_set(kjb_dlq_filter *f, kjb_dlq_filter_field field, const char *value,
                       int64_t now_us, const char *opt, kjb_err *err) {
  const char *name = kjb_dlq_filter_name(field);
  switch (field) {
  case KJB_DLQ_F_ID: {
    int64_t id;
    if (kjb_parse_i64(value, 1, INT64_MAX, &id) < 0)
      return kjb_err_set(err, KJB_EUSAGE,
                         "bad %sid \"%.*s%s\" (expected an integer from 1 to %" PRId64 ")", opt,
                         QUOTE(value), INT64_MAX);
    if (f->nids == KJB_DLQ_FILTER_MAX_IDS)
      return kjb_err_set(err, KJB_EUSAGE, "too many %sid values (at most %d)", opt,
                         KJB_DLQ_FILTER_MAX_IDS);
    f->ids = kjb_xgrow(f->ids, &f->capids, f->nids + 1, sizeof *f->ids);
    f->ids[f->nids++] = id;
    return 0;
  }
  case KJB_DLQ_F_DLQ_TOPIC: return set_text(&f->dlq_topic, value, opt, name, err);
  case KJB_DLQ_F_SOURCE_TOPIC: return set_text(&f->source_topic, value, opt, name, err);
  case KJB_DLQ_F_REASON:
    /* The DLQ header says "kjb.TRUNCATED", the index "TRUNCATED": both
     * mean the same. */
    if (strncmp(value, "kjb.", 4) == 0 && value[4])
      value += 4;
    return set_text(&f->reason, value, opt, name, err);
  case KJB_DLQ_F_STATUS:
    if (*value && !kjb_dlq_status_valid(value))
      return kjb_err_set(err, KJB_EUSAGE,
                         "bad %sstatus \"%.*s%s\" (expected dead, replayed, failing or ignored)",
                         opt, QUOTE(value));
    return set_text(&f->status, value, opt, name, err);
  case KJB_DLQ_F_KEY:
    if (f->key)
      return kjb_err_set(err, KJB_EUSAGE, "%skey given twice", opt);
    /* An empty key is a key (not none), and may be looked for. */
    f->keylen = strlen(value);
    f->key = kjb_xstrdup(value);
    return 0;
  case KJB_DLQ_F_SINCE:
  case KJB_DLQ_F_UNTIL: {
    bool since = field == KJB_DLQ_F_SINCE;
    if (since ? f->has_since : f->has_until)
      return kjb_err_set(err, KJB_EUSAGE, "%s%s given twice", opt, name);
    int64_t t;
    const char *why;
    if (kjb_dlq_time_parse(value, now_us, &t, &why) < 0)
      return kjb_err_set(err, KJB_EUSAGE, "bad %s%s \"%.*s%s\": %s", opt, name, QUOTE(value), why);
    if (since) {
      f->has_since = true;
      f->since_us = t;
    } else {
      f->has_until = true;
      f->until_us = t;
    }
    return 0;
  }
  case KJB_DLQ_F__COUNT: break;
  }
  return kjb_err_set(err, KJB_EINTERNAL, "no such filter");
}

int kjb_dlq_filter_check(const kjb_dlq_filter *f, const char *opt, kjb_err *err) {
  if (f->has_since && f->has_until && f->since_us >= f->until_us)
    return kjb_err_set(err, KJB_EUSAGE, "%ssince must be before %suntil", opt, opt);
  return 0;
}

bool kjb_dlq_filter_empty(const kjb_dlq_filter *f) {
  return f->nids == 0 && !f->dlq_topic && !f->source_topic && !f->reason && !f->status && !f->key &&
         !f->has_since && !f->has_until;
}

/* ---- SQL ------------------------------------------------------------ */

/* Appends " AND <alias.>column<pre>$n<post>" and the parameter. */
static void cond(kjb_dlq_where *w, int first, const char *alias, const char *column,
                 const char *pre, const char *post, const char *param) {
  if (w->nparams > 0)
    kjb_buf_puts(&w->sql, " AND ");
  if (alias)
    kjb_buf_printf(&w->sql, "%s.", alias);
  kjb_buf_printf(&w->sql, "%s%s$%d%s", column, pre, first + w->nparams, post);
  w->params[w->nparams++] = param;
}

void kjb_dlq_where_build(kjb_dlq_where *w, const kjb_dlq_filter *f, int first, const char *alias) {
  memset(w, 0, sizeof *w);
  kjb_buf_init(&w->sql);
  kjb_buf_init(&w->ids);
  kjb_buf_init(&w->key);
  if (f->nids) {
    kjb_buf_putc(&w->ids, '{');
    for (size_t i = 0; i < f->nids; i++)
      kjb_buf_printf(&w->ids, "%s%" PRId64, i ? "," : "", f->ids[i]);
    kjb_buf_putc(&w->ids, '}');
    cond(w, first, alias, "id", " = ANY(", "::bigint[])", w->ids.data);
  }
  if (f->dlq_topic)
    cond(w, first, alias, "dlq_topic", " = ", "::text", f->dlq_topic);
  if (f->source_topic)
    cond(w, first, alias, "source_topic", " = ", "::text", f->source_topic);
  if (f->reason)
    cond(w, first, alias, "reason", " = ", "::text", f->reason);
  if (f->has_since) {
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_buf_rfc3339(&b, f->since_us, 6);
    snprintf(w->since, sizeof w->since, "%s", b.data);
    kjb_buf_close(&b);
    cond(w, first, alias, "dead_lettered_at", " >= ", "::timestamptz", w->since);
  }
  if (f->has_until) {
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_buf_rfc3339(&b, f->until_us, 6);
    snprintf(w->until, sizeof w->until, "%s", b.data);
    kjb_buf_close(&b);
    cond(w, first, alias, "dead_lettered_at", " < ", "::timestamptz", w->until);
  }
  if (f->key) {
    /* As hex: the bytes of an argument need not be text the database's
     * encoding accepts. */
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < f->keylen; i++) {
      unsigned char c = (unsigned char)f->key[i];
      kjb_buf_putc(&w->key, hex[c >> 4]);
      kjb_buf_putc(&w->key, hex[c & 15]);
    }
    cond(w, first, alias, "key", " = decode(", "::text, 'hex')", w->key.data);
  }
  if (f->status)
    cond(w, first, alias, "status", " = ", "::text", f->status);
  if (w->nparams == 0)
    kjb_buf_puts(&w->sql, "TRUE");
}

void kjb_dlq_where_close(kjb_dlq_where *w) {
  kjb_buf_close(&w->sql);
  kjb_buf_close(&w->ids);
  kjb_buf_close(&w->key);
}

static void json_text(kjb_buf *out, const char *name, const char *s, size_t n, bool *first) {
  kjb_buf_puts(out, *first ? "" : ",");
  *first = false;
  kjb_buf_json_str(out, name, strlen(name));
  kjb_buf_putc(out, ':');
  if (kjb_utf8_invalid_at(s, n) < 0) {
    kjb_buf_json_str(out, s, n);
  } else {
    kjb_buf_puts(out, "{\"base64\":\"");
    kjb_buf_base64(out, (const uint8_t *)s, n);
    kjb_buf_puts(out, "\"}");
  }
}

void kjb_dlq_filter_json(const kjb_dlq_filter *f, kjb_buf *out) {
  bool first = true;
  kjb_buf_putc(out, '{');
  if (f->nids) {
    kjb_buf_puts(out, "\"id\":[");
    for (size_t i = 0; i < f->nids; i++)
      kjb_buf_printf(out, "%s%" PRId64, i ? "," : "", f->ids[i]);
    kjb_buf_putc(out, ']');
    first = false;
  }
  if (f->dlq_topic)
    json_text(out, "dlq_topic", f->dlq_topic, strlen(f->dlq_topic), &first);
  if (f->source_topic)
    json_text(out, "source_topic", f->source_topic, strlen(f->source_topic), &first);
  if (f->reason)
    json_text(out, "reason", f->reason, strlen(f->reason), &first);
  for (int k = 0; k < 2; k++) {
    if (!(k ? f->has_until : f->has_since))
      continue;
    kjb_buf t;
    kjb_buf_init(&t);
    kjb_buf_rfc3339(&t, k ? f->until_us : f->since_us, 6);
    json_text(out, k ? "until" : "since", t.data, t.len, &first);
    kjb_buf_close(&t);
  }
  if (f->key)
    json_text(out, "key", f->key, f->keylen, &first);
  if (f->status)
    json_text(out, "status", f->status, strlen(f->status), &first);
  kjb_buf_putc(out, '}');
}
