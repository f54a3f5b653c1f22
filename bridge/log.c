/* The logger: one line per event, text or JSON, with secrets masked in
 * every message whoever wrote it (kjb, librdkafka, libpq). */
#include "log.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static kjb_log_level threshold = KJB_LOG_INFO;
static int as_json;
static FILE *output; /* NULL: stderr */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const names[] = {"debug", "info", "warn", "error"};

int kjb_log_level_parse(const char *name, kjb_log_level *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0) {
      *out = (kjb_log_level)i;
      return 0;
    }
  return -1;
}

void kjb_log_setup(kjb_log_level level, int json) {
  threshold = level;
  as_json = json;
}

int kjb_log_enabled(kjb_log_level level) { return level >= threshold; }

void kjb_log_output(FILE *f) {
  pthread_mutex_lock(&lock);
  output = f;
  pthread_mutex_unlock(&lock);
}

/* ---- masking --------------------------------------------------------- */

#define MAX_SECRETS 16
#define MIN_SECRET 4

static const char MASK[] = "***";

/* Registered values are appended once and never change or go, so readers
 * need no lock: an entry is complete before the count that covers it is
 * published. */
static const char *secrets[MAX_SECRETS];
static size_t secret_lens[MAX_SECRETS];
static atomic_size_t nsecrets;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;

void kjb_log_secret(const char *value) {
  if (!value || strlen(value) < MIN_SECRET)
    return;
  size_t len = strlen(value);
  int full = 0;
  pthread_mutex_lock(&secrets_lock);
  size_t n = atomic_load_explicit(&nsecrets, memory_order_relaxed);
  for (size_t i = 0; i < n; i++)
    if (secret_lens[i] == len && memcmp(secrets[i], value, len) == 0)
      goto out;
  if (n == MAX_SECRETS) {
    full = 1;
    goto out;
  }
  secrets[n] = kjb_xstrdup(value);
  secret_lens[n] = len;
  atomic_store_explicit(&nsecrets, n + 1, memory_order_release);
out:
  pthread_mutex_unlock(&secrets_lock);
  if (full)
    kjb_warn("log: more than %d secrets registered; the others are not masked by value",
             MAX_SECRETS);
}

/* One masking pass over s: spans are masked left to right, and the
 * masked copy in out is only started by the first span that is not "***"
 * already, so that text without secrets costs no allocation. */
typedef struct {
  const char *s;
  size_t n;
  size_t done; /* s[0, done) is accounted for in out */
  int hit;
  kjb_buf out;
} pass;

static void mask(pass *p, size_t from, size_t to) {
  assert(p->done <= from && from <= to && to <= p->n);
  if (from == to || (to - from == 3 && memcmp(p->s + from, MASK, 3) == 0))
    return;
  if (!p->hit) {
    kjb_buf_init(&p->out);
    p->hit = 1;
  }
  kjb_buf_append(&p->out, p->s + p->done, from - p->done);
  kjb_buf_puts(&p->out, MASK);
  p->done = to;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }
static int is_alnum(int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_space(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int is_key_char(int c) { return is_alnum(c) || c == '_' || c == '.' || c == '-'; }

/* Whether s[0, n) equals the lower-case word w in any case. */
static int ieq(const char *s, size_t n, const char *w) {
  if (strlen(w) != n)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)s[i]) != w[i])
      return 0;
  return 1;
}

/* The next offset >= from where the lower-case word w starts, in any case,
 * or n. */
static size_t ifind(const char *s, size_t n, size_t from, const char *w) {
  size_t wn = strlen(w);
  for (size_t i = from; i + wn <= n; i++)
    if (lower((unsigned char)s[i]) == w[0] && ieq(s + i, wn, w))
      return i;
  return n;
}

static size_t skip_blanks(const char *s, size_t n, size_t i) {
  while (i < n && (s[i] == ' ' || s[i] == '\t'))
    i++;
  return i;
}

/* The end of a credential starting at i: the next white space, quote or
 * comma (none of which a token68 or a Basic credential holds). */
static size_t token_end(const char *s, size_t n, size_t i) {
  while (i < n && !is_space((unsigned char)s[i]) && s[i] != '"' && s[i] != '\'' && s[i] != ',')
    i++;
  return i;
}

static void mask_registered(pass *p, const char *secret, size_t len) {
  const char *s = p->s;
  for (size_t i = 0; i + len <= p->n;) {
    const char *at = memmem(s + i, p->n - i, secret, len);
    if (!at)
      break;
    i = (size_t)(at - s);
    mask(p, i, i + len);
    i += len;
  }
}

static int secret_key(const char *k, size_t n) {
  static const char *const suffixes[] = {"password", "passwd", "secret"};
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t sn = strlen(suffixes[i]);
    if (n >= sn && ieq(k + n - sn, sn, suffixes[i]))
      return 1;
  }
  return 0;
}

/* key=value, the value quoted ('…' or "…", backslash escapes) or not;
 * blanks around '=' as conninfo allows. Unquoted values run to white
 * space, as libpq reads them, or in a URI query (?password=) to '&'. */
static void mask_key_values(pass *p) {
  const char *s = p->s;
  size_t n = p->n;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '=')
      continue;
    size_t k1 = i;
    while (k1 > p->done && (s[k1 - 1] == ' ' || s[k1 - 1] == '\t'))
      k1--;
    size_t k0 = k1;
    while (k0 > p->done && is_key_char((unsigned char)s[k0 - 1]))
      k0--;
    if (!secret_key(s + k0, k1 - k0))
      continue;
    int in_query = k0 > 0 && (s[k0 - 1] == '?' || s[k0 - 1] == '&');
    size_t v = skip_blanks(s, n, i + 1), j;
    if (v < n && (s[v] == '\'' || s[v] == '"')) {
      for (j = v + 1; j < n && s[j] != s[v]; j++)
        if (s[j] == '\\' && j + 1 < n)
          j++;
      /* An unterminated quote (a cut message) masks to the end. */
      mask(p, v + 1, j);
      i = j < n ? j : n - 1;
    } else {
      for (j = v; j < n && !is_space((unsigned char)s[j]); j++) {
        if (in_query && (s[j] == '&' || s[j] == '#'))
          break;
        if (s[j] == '\\' && j + 1 < n)
          j++;
      }
      /* "key=value" quoted as a whole keeps its closing quote. */
      size_t end = j;
      if (k0 > 0 && (s[k0 - 1] == '"' || s[k0 - 1] == '\'') && end > v && s[end - 1] == s[k0 - 1])
        end--;
      mask(p, v, end);
      i = j > i ? j - 1 : i;
    }
  }
}

/* scheme://user:password@host: the authority ends at '/', '?', '#' or
 * white space (RFC 3986 wants those percent-encoded in a password); its
 * last '@' ends the user information. */
static void mask_uri_passwords(pass *p) {
  const char *s = p->s;
  size_t n = p->n;
  for (size_t i = 0; i + 3 <= n;) {
    const char *m = memmem(s + i, n - i, "://", 3);
    if (!m)
      break;
    size_t a = (size_t)(m - s) + 3, e = a, at = n;
    for (; e < n && s[e] != '/' && s[e] != '?' && s[e] != '#' && !is_space((unsigned char)s[e]);
         e++)
      if (s[e] == '@')
        at = e;
    if (at < n) {
      const char *colon = memchr(s + a, ':', at - a);
      if (colon)
        mask(p, (size_t)(colon - s) + 1, at);
    }
    i = e > a ? e : a;
  }
}

/* Whether s[0, n) names an HTTP authentication scheme. */
static int auth_scheme(const char *s, size_t n) {
  static const char *const schemes[] = {"basic",     "bearer", "digest",
                                        "negotiate", "token",  "apikey"};
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    if (ieq(s, n, schemes[i]))
      return 1;
  return 0;
}

/* "Authorization: <scheme> <credentials>" masks the credentials;
 * "Authorization: <credentials>" without a known scheme masks them all. */
static void mask_authorization(pass *p) {
  const char *s = p->s;
  size_t n = p->n;
  static const char word[] = "authorization";
  for (size_t i = ifind(s, n, p->done, word); i < n; i = ifind(s, n, i, word)) {
    size_t j = skip_blanks(s, n, i + sizeof word - 1);
    i += sizeof word - 1;
    if (j >= n || (s[j] != ':' && s[j] != '='))
      continue;
    size_t w1 = skip_blanks(s, n, j + 1), e1 = token_end(s, n, w1);
    if (e1 == w1)
      continue;
    if (auth_scheme(s + w1, e1 - w1)) {
      size_t w2 = skip_blanks(s, n, e1);
      if (w2 == e1)
        continue;
      size_t e2 = token_end(s, n, w2);
      mask(p, w2, e2);
      i = e2;
    } else {
      mask(p, w1, e1);
      i = e1;
    }
  }
}

/* "Bearer <token>" anywhere, "bearer" being a word of its own. */
static void mask_bearer(pass *p) {
  const char *s = p->s;
  size_t n = p->n;
  static const char word[] = "bearer";
  for (size_t i = ifind(s, n, p->done, word); i < n; i = ifind(s, n, i, word)) {
    size_t start = i;
    i += sizeof word - 1;
    if ((start > 0 && is_alnum((unsigned char)s[start - 1])) || start < p->done)
      continue;
    size_t t = skip_blanks(s, n, i);
    if (t == i)
      continue;
    size_t e = token_end(s, n, t);
    mask(p, t, e);
    i = e;
  }
}

enum { PASS_KEY_VALUES, PASS_URIS, PASS_AUTHORIZATION, PASS_BEARER, NPASSES };

/* Masks msg[0, n). Returns 1 with the masked text in *out (the caller
 * closes it), or 0 when there is nothing to mask. */
static int redact(const char *msg, size_t n, kjb_buf *out) {
  const char *s = msg;
  int have = 0;
  kjb_buf cur;
  size_t nsec = atomic_load_explicit(&nsecrets, memory_order_acquire);
  for (size_t k = 0; k < nsec + NPASSES; k++) {
    pass p = {.s = s, .n = n};
    if (k < nsec)
      mask_registered(&p, secrets[k], secret_lens[k]);
    else
      switch (k - nsec) {
      case PASS_KEY_VALUES: mask_key_values(&p); break;
      case PASS_URIS: mask_uri_passwords(&p); break;
      case PASS_AUTHORIZATION: mask_authorization(&p); break;
      case PASS_BEARER: mask_bearer(&p); break;
      }
    if (!p.hit)
      continue;
    kjb_buf_append(&p.out, s + p.done, n - p.done);
    if (have)
      kjb_buf_close(&cur);
    cur = p.out;
    have = 1;
    s = cur.data;
    n = cur.len;
  }
  if (have)
    *out = cur;
  return have;
}

char *kjb_log_redact(const char *msg) {
  kjb_buf b;
  if (!redact(msg, strlen(msg), &b))
    return NULL;
  return b.data;
}

/* ---- writing -------------------------------------------------------- */

/* Appends msg as a JSON string, invalid UTF-8 bytes as U+FFFD. */
static void put_json_msg(kjb_buf *line, const char *msg, size_t n) {
  long bad = kjb_utf8_invalid_at(msg, n);
  if (bad < 0) {
    kjb_buf_json_str(line, msg, n);
    return;
  }
  kjb_buf fixed;
  kjb_buf_init(&fixed);
  size_t i = 0;
  while (bad >= 0) {
    kjb_buf_append(&fixed, msg + i, (size_t)bad);
    kjb_buf_puts(&fixed, "\xEF\xBF\xBD");
    i += (size_t)bad + 1;
    bad = kjb_utf8_invalid_at(msg + i, n - i);
  }
  kjb_buf_append(&fixed, msg + i, n - i);
  kjb_buf_json_str(line, fixed.data, fixed.len);
  kjb_buf_close(&fixed);
}

/* Appends msg with control characters (tabs aside) as spaces: one event,
 * one line, whatever libpq or a record put in the message. */
static void put_text_msg(kjb_buf *line, const char *msg, size_t n) {
  size_t from = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)msg[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      kjb_buf_append(line, msg + from, i - from);
      kjb_buf_putc(line, ' ');
      from = i + 1;
    }
  }
  kjb_buf_append(line, msg + from, n - from);
}

void kjb_log(kjb_log_level level, const char *fmt, ...) {
  if (level < threshold)
    return;
  char stack[KJB_LOG_MAX_MSG + 1];
  char *heap = NULL;
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  int len = vsnprintf(stack, sizeof stack, fmt, ap);
  va_end(ap);
  const char *msg = stack;
  if (len < 0) {
    stack[0] = '\0';
    len = 0;
  } else if ((size_t)len >= sizeof stack) {
    /* Mask the whole message before cutting it: half a secret would
     * no longer be recognised. */
    heap = kjb_xmalloc((size_t)len + 1);
    vsnprintf(heap, (size_t)len + 1, fmt, again);
    msg = heap;
  }
  va_end(again);
  size_t n = (size_t)len;
  kjb_buf masked;
  int have_masked = redact(msg, n, &masked);
  if (have_masked) {
    msg = masked.data;
    n = masked.len;
  }
  if (n > KJB_LOG_MAX_MSG) {
    n = KJB_LOG_MAX_MSG;
    while (n > 0 && ((unsigned char)msg[n] & 0xC0) == 0x80)
      n--;
  }
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    n--;

  kjb_buf line;
  kjb_buf_init(&line);
  if (as_json) {
    kjb_buf_puts(&line, "{\"ts\":\"");
    kjb_buf_rfc3339(&line, kjb_now_wall_us(), 3);
    kjb_buf_printf(&line, "\",\"level\":\"%s\",\"msg\":", names[level]);
    put_json_msg(&line, msg, n);
    kjb_buf_puts(&line, "}\n");
  } else {
    kjb_buf_rfc3339(&line, kjb_now_wall_us(), 3);
    kjb_buf_printf(&line, " %-5s ", names[level]);
    put_text_msg(&line, msg, n);
    kjb_buf_putc(&line, '\n');
  }
  if (have_masked)
    kjb_buf_close(&masked);
  free(heap);
  pthread_mutex_lock(&lock);
  FILE *f = output ? output : stderr;
  fwrite(line.data, 1, line.len, f);
  fflush(f);
  pthread_mutex_unlock(&lock);
  kjb_buf_close(&line);
}
