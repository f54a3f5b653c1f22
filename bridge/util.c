/* Arena, buffer, file, duration, JSON and UTF-8 helpers. */
#include "util.h"

#include <assert.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void out_of_memory(size_t n) {
  fprintf(stderr, "kjb: out of memory (allocating %zu bytes)\n", n);
  abort();
}

void *kjb_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    out_of_memory(n);
  return p;
}

void *kjb_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    out_of_memory(size && n > SIZE_MAX / size ? SIZE_MAX : n * size);
  return p;
}

void *kjb_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q)
    out_of_memory(n);
  return q;
}

char *kjb_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(kjb_xmalloc(n), s, n);
}

char *kjb_xstrndup(const char *s, size_t n) {
  n = strnlen(s, n);
  char *p = memcpy(kjb_xmalloc(n + 1), s, n);
  p[n] = '\0';
  return p;
}

void *kjb_xgrow(void *p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return p;
  size_t n = *cap ? *cap : 16;
  while (n < need) {
    if (n > SIZE_MAX / 2)
      out_of_memory(SIZE_MAX);
    n *= 2;
  }
  if (elem && n > SIZE_MAX / elem)
    out_of_memory(SIZE_MAX);
  p = kjb_xrealloc(p, n * elem);
  *cap = n;
  return p;
}

struct chunk {
  struct chunk *next;
  size_t size;
  size_t used;
  max_align_t data[];
};

/* Chunks form a list in allocation order; cur is the one being filled.
 * A reset keeps the standard-size chunks for the next batch, so a steady
 * stream of batches allocates nothing, and frees the oversize ones so one
 * huge record does not pin its memory. */
struct kjb_arena {
  struct chunk *first, *cur;
  size_t chunk_size;
  size_t total;
};

static struct chunk *chunk_new(size_t size) {
  struct chunk *c = malloc(sizeof *c + size);
  if (!c)
    return NULL;
  c->next = NULL;
  c->size = size;
  c->used = 0;
  return c;
}

kjb_arena *kjb_arena_new(size_t chunk_size) {
  kjb_arena *a = kjb_xcalloc(1, sizeof *a);
  a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
  a->first = a->cur = chunk_new(a->chunk_size);
  if (!a->first)
    out_of_memory(sizeof *a->first + a->chunk_size);
  return a;
}

void kjb_arena_free(kjb_arena *a) {
  if (!a)
    return;
  for (struct chunk *c = a->first, *n; c; c = n) {
    n = c->next;
    free(c);
  }
  free(a);
}

void *kjb_arena_alloc(kjb_arena *a, size_t n) {
  n = (n + 7) & ~(size_t)7;
  struct chunk *c = a->cur;
  while (c->size - c->used < n) {
    if (c->next && c->next->size >= n) {
      c = c->next; /* kept from an earlier batch; empty since the reset */
      continue;
    }
    struct chunk *nc = chunk_new(n > a->chunk_size ? n : a->chunk_size);
    if (!nc)
      return NULL;
    nc->next = c->next;
    c->next = nc;
    c = nc;
  }
  a->cur = c;
  void *p = (char *)c->data + c->used;
  c->used += n;
  a->total += n;
  return p;
}

char *kjb_arena_strndup(kjb_arena *a, const char *s, size_t n) {
  char *p = kjb_arena_alloc(a, n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

void kjb_arena_reset(kjb_arena *a) {
  struct chunk **link = &a->first;
  while (*link) {
    struct chunk *c = *link;
    if (c->size > a->chunk_size && c != a->first) {
      *link = c->next;
      free(c);
      continue;
    }
    c->used = 0;
    link = &c->next;
  }
  a->cur = a->first;
  a->total = 0;
}

size_t kjb_arena_used(const kjb_arena *a) { return a->total; }

void kjb_buf_init(kjb_buf *b) {
  b->data = NULL;
  b->len = b->cap = 0;
  kjb_buf_reserve(b, 64);
}

void kjb_buf_close(kjb_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void kjb_buf_reset(kjb_buf *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

void kjb_buf_reserve(kjb_buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1)
    cap *= 2;
  b->data = kjb_xrealloc(b->data, cap);
  b->cap = cap;
  b->data[b->len] = '\0';
}

void kjb_buf_append(kjb_buf *b, const void *p, size_t n) {
  kjb_buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void kjb_buf_puts(kjb_buf *b, const char *s) { kjb_buf_append(b, s, strlen(s)); }

void kjb_buf_putc(kjb_buf *b, char c) {
  kjb_buf_reserve(b, 1);
  b->data[b->len++] = c;
  b->data[b->len] = '\0';
}

void kjb_buf_printf(kjb_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof tmp) {
    kjb_buf_append(b, tmp, (size_t)n);
    return;
  }
  kjb_buf_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void kjb_buf_json_str(kjb_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  kjb_buf_reserve(b, n + 2);
  b->data[b->len++] = '"';
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    kjb_buf_append(b, s + start, i - start);
    start = i + 1;
    switch (c) {
    case '"': kjb_buf_append(b, "\\\"", 2); break;
    case '\\': kjb_buf_append(b, "\\\\", 2); break;
    case '\n': kjb_buf_append(b, "\\n", 2); break;
    case '\r': kjb_buf_append(b, "\\r", 2); break;
    case '\t': kjb_buf_append(b, "\\t", 2); break;
    case '\b': kjb_buf_append(b, "\\b", 2); break;
    case '\f': kjb_buf_append(b, "\\f", 2); break;
    default: {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      kjb_buf_append(b, u, 6);
    }
    }
  }
  kjb_buf_append(b, s + start, n - start);
  kjb_buf_putc(b, '"');
}

void kjb_buf_base64(kjb_buf *b, const uint8_t *p, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  kjb_buf_reserve(b, (n + 2) / 3 * 4);
  char *o = b->data + b->len;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = tbl[(v >> 6) & 63];
    *o++ = tbl[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
}

static int too_large(kjb_err *err, size_t max) {
  if (max >= 1024 * 1024 && max % (1024 * 1024) == 0)
    return kjb_err_set(err, KJB_EIO, "larger than %zu MiB", max / (1024 * 1024));
  if (max >= 1024 && max % 1024 == 0)
    return kjb_err_set(err, KJB_EIO, "larger than %zu KiB", max / 1024);
  return kjb_err_set(err, KJB_EIO, "larger than %zu bytes", max);
}

/* Reads fd to its end into out, failing once more than max bytes came:
 * the size fstat() saw may have grown since. */
static int read_fd(int fd, size_t max, kjb_buf *out, kjb_err *err) {
  for (;;) {
    size_t want = max + 1 - out->len < 65536 ? max + 1 - out->len : 65536;
    kjb_buf_reserve(out, want);
    ssize_t n = read(fd, out->data + out->len, want);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return kjb_err_set(err, KJB_EIO, "%s", strerror(errno));
    if (n == 0)
      break;
    out->len += (size_t)n;
    if (out->len > max)
      return too_large(err, max);
  }
  out->data[out->len] = '\0';
  return 0;
}

int kjb_read_file(const char *path, size_t max_bytes, kjb_buf *out, kjb_err *err) {
  assert(max_bytes < SIZE_MAX);
  kjb_buf_reset(out);
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return kjb_err_set(err, KJB_EIO, "%s", strerror(errno));
  struct stat st;
  int rc;
  if (fstat(fd, &st) != 0)
    rc = kjb_err_set(err, KJB_EIO, "%s", strerror(errno));
  else if (S_ISDIR(st.st_mode))
    rc = kjb_err_set(err, KJB_EIO, "%s", strerror(EISDIR));
  else if (!S_ISREG(st.st_mode))
    rc = kjb_err_set(err, KJB_EIO, "not a regular file");
  else if ((uintmax_t)st.st_size > max_bytes)
    rc = too_large(err, max_bytes);
  else
    rc = read_fd(fd, max_bytes, out, err);
  close(fd);
  if (rc)
    kjb_buf_reset(out);
  return rc;
}

long kjb_utf8_invalid_at(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return (long)i;
    }
    if (n - i < len)
      return (long)i;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return (long)i;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return (long)i;
    i += len;
  }
  return -1;
}

size_t kjb_utf8_prefix(const char *s, size_t max) {
  size_t n = strnlen(s, max + 1);
  if (n <= max)
    return n;
  n = max;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  return n;
}

bool kjb_secret_equal(const char *given, size_t gl, const char *secret, size_t sl) {
  unsigned char diff = gl != sl;
  for (size_t i = 0; i < gl; i++)
    diff |= (unsigned char)given[i] ^ (sl ? (unsigned char)secret[i % sl] : 0u);
  return diff == 0;
}

int kjb_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
  assert(min <= max);
  if (!s)
    return -1;
  const char *p = s;
  int neg = *p == '-';
  if (neg) {
    if (min >= 0)
      return -1;
    p++;
  }
  if (!isdigit((unsigned char)*p) || (p[0] == '0' && p[1] != '\0') || (neg && p[0] == '0'))
    return -1;
  /* Accumulate negatively: INT64_MIN has no positive twin. */
  int64_t v = 0;
  for (; *p; p++) {
    if (!isdigit((unsigned char)*p))
      return -1;
    int d = *p - '0';
    if (v < (INT64_MIN + d) / 10)
      return -1;
    v = v * 10 - d;
  }
  if (!neg) {
    if (v == INT64_MIN)
      return -1;
    v = -v;
  }
  if (v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

static bool is_host(const char *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c >= 0x80))
      return false;
  }
  return n > 0;
}

/* An IPv6 address as it stands between brackets, zone included. */
static bool is_ipv6(const char *h, size_t n) {
  size_t i = 0;
  while (i < n && (isxdigit((unsigned char)h[i]) || h[i] == ':' || h[i] == '.'))
    i++;
  if (!memchr(h, ':', i))
    return false;
  return i == n || (h[i] == '%' && i + 1 < n && is_host(h + i + 1, n - i - 1));
}

int kjb_hostport_parse(const char *s, bool need_port, char *host, size_t hostcap, int *port,
                       kjb_err *err) {
  const char *h = s, *end, *p = NULL;
  bool v6 = s[0] == '[';
  if (v6) {
    h = s + 1;
    end = strchr(h, ']');
    if (end && end[1] == ':')
      p = end + 2;
    else if (end && end[1] != '\0')
      end = NULL;
  } else {
    end = strchr(s, ':');
    if (end && strchr(end + 1, ':'))
      end = NULL; /* a bare IPv6 address needs its brackets */
    else if (end)
      p = end + 1;
    else
      end = s + strlen(s);
  }
  if (!end || (need_port && !p))
    return kjb_err_set(err, KJB_ECONFIG, "expected %s, got \"%s\"",
                       need_port ? "host:port or [ipv6]:port" : "host[:port] or [ipv6][:port]", s),
           -1;
  size_t n = (size_t)(end - h);
  if (n >= hostcap || !(v6 ? is_ipv6(h, n) : is_host(h, n)))
    return kjb_err_set(err, KJB_ECONFIG, "invalid host in \"%s\"", s), -1;
  int64_t v = -1;
  if (p && kjb_parse_i64(p, 0, 65535, &v) != 0)
    return kjb_err_set(err, KJB_ECONFIG, "invalid port in \"%s\" (expected 0 to 65535)", s), -1;
  memcpy(host, h, n);
  host[n] = '\0';
  *port = (int)v;
  return 0;
}

bool kjb_parse_digits(const char **s, int n, int64_t *out) {
  assert(n <= 18);
  int64_t v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*s)[i]))
      return false;
    v = v * 10 + ((*s)[i] - '0');
  }
  *s += n;
  *out = v;
  return true;
}

/* ".5", ".123456789": a fraction of 1 to 9 digits as microseconds
 * (digits past the sixth are dropped). No '.' is no fraction. */
static bool fraction_us(const char **s, int64_t *us) {
  *us = 0;
  if (**s != '.')
    return true;
  int n = 0;
  for ((*s)++; isdigit((unsigned char)**s); (*s)++, n++)
    if (n < 6)
      *us = *us * 10 + (**s - '0');
  for (int k = n; k < 6; k++)
    *us *= 10;
  return n >= 1 && n <= 9;
}

/* "Z", "+01:00", "-05:30" or nothing (UTC) as seconds east of UTC. */
static bool zone_offset(const char **s, int64_t *secs) {
  *secs = 0;
  if (**s == 'Z') {
    (*s)++;
    return true;
  }
  if (**s != '+' && **s != '-')
    return true;
  int64_t sign = **s == '-' ? -1 : 1, h, m;
  (*s)++;
  if (!kjb_parse_digits(s, 2, &h) || *(*s)++ != ':' || !kjb_parse_digits(s, 2, &m) || h > 23 ||
      m > 59)
    return false;
  *secs = sign * (h * 3600 + m * 60);
  return true;
}

int kjb_datetime_parse(const char *s, int64_t *out_us, const char **why) {
  int64_t y, mo, d, h, mi, sec, us, zone, days;
  *why = "expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]";
  if (!kjb_parse_digits(&s, 4, &y) || *s++ != '-' || !kjb_parse_digits(&s, 2, &mo) || *s++ != '-' ||
      !kjb_parse_digits(&s, 2, &d) || *s++ != 'T' || !kjb_parse_digits(&s, 2, &h) || *s++ != ':' ||
      !kjb_parse_digits(&s, 2, &mi) || *s++ != ':' || !kjb_parse_digits(&s, 2, &sec) ||
      !fraction_us(&s, &us) || !zone_offset(&s, &zone) || *s)
    return -1;
  if (kjb_civil_to_days(y, mo, d, &days) < 0) {
    *why = "no such date";
    return -1;
  }
  if (h > 23 || mi > 59 || sec > 59) {
    *why = "no such time of day";
    return -1;
  }
  *out_us = ((days * 86400 + h * 3600 + mi * 60 + sec) - zone) * 1000000 + us;
  return 0;
}

int kjb_duration_parse(const char *s, int64_t *out_us) {
  static const struct {
    const char *unit;
    double us;
  } units[] = {{"us", 1}, {"ms", 1e3}, {"s", 1e6}, {"m", 60e6}, {"h", 3600e6}, {"d", 86400e6}};
  /* Digits, an optional fraction, a unit: what strtod alone would also
   * take (hex, exponents, "inf", leading zeros) is refused first. */
  if (!s || !isdigit((unsigned char)*s) || (s[0] == '0' && isdigit((unsigned char)s[1])))
    return -1;
  size_t n = strspn(s, "0123456789");
  if (s[n] == '.') {
    size_t f = strspn(s + n + 1, "0123456789");
    if (f == 0)
      return -1;
    n += 1 + f;
  }
  char *end;
  double v = strtod(s, &end);
  if (end != s + n)
    return -1;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcmp(end, units[i].unit) == 0) {
      double us = v * units[i].us;
      if (!isfinite(us) || us > 9.2e18)
        return -1;
      *out_us = (int64_t)llround(us);
      return 0;
    }
  }
  return -1;
}

/* Days since 1970-01-01 to civil date (Howard Hinnant's algorithm). */
void kjb_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t yy = (int64_t)yoe + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = yy + (*m <= 2);
}

int kjb_civil_to_days(int64_t y, int64_t m, int64_t d, int64_t *days) {
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
    return -1;
  if (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
    return -1;
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (unsigned)((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1);
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  *days = era * 146097 + (int64_t)doe - 719468;
  return 0;
}

/* Writes v's last width decimal digits, zero-padded, ending before end. */
static void put_fixed(char *end, uint64_t v, int width) {
  while (width-- > 0) {
    *--end = (char)('0' + v % 10);
    v /= 10;
  }
}

size_t kjb_fmt_i64(char *buf, int64_t v) {
  char tmp[20];
  size_t n = 0;
  uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  size_t len = 0;
  if (v < 0)
    buf[len++] = '-';
  while (n)
    buf[len++] = tmp[--n];
  buf[len] = '\0';
  return len;
}

void kjb_buf_put_i64(kjb_buf *b, int64_t v) {
  char tmp[21];
  kjb_buf_append(b, tmp, kjb_fmt_i64(tmp, v));
}

/* Without printf: the dead-letter path formats two per record. */
void kjb_buf_rfc3339(kjb_buf *b, int64_t epoch_us, int frac_digits) {
  int64_t secs = epoch_us / 1000000, frac = epoch_us % 1000000;
  if (frac < 0) {
    frac += 1000000;
    secs -= 1;
  }
  int64_t days = secs / 86400, rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days -= 1;
  }
  int64_t y;
  unsigned m, d;
  kjb_civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999) {
    kjb_buf_printf(b, "%04lld-%02u-%02uT%02d:%02d:%02d", (long long)y, m, d, (int)(rem / 3600),
                   (int)(rem / 60 % 60), (int)(rem % 60));
  } else {
    char t[19] = "0000-00-00T00:00:00";
    put_fixed(t + 4, (uint64_t)y, 4);
    put_fixed(t + 7, m, 2);
    put_fixed(t + 10, d, 2);
    put_fixed(t + 13, (uint64_t)(rem / 3600), 2);
    put_fixed(t + 16, (uint64_t)(rem / 60 % 60), 2);
    put_fixed(t + 19, (uint64_t)(rem % 60), 2);
    kjb_buf_append(b, t, sizeof t);
  }
  char f[9] = ".000000Z";
  if (frac_digits == 6) {
    put_fixed(f + 7, (uint64_t)frac, 6);
    kjb_buf_append(b, f, 8);
  } else {
    put_fixed(f + 4, (uint64_t)(frac / 1000), 3);
    f[4] = 'Z';
    kjb_buf_append(b, f, 5);
  }
}

void kjb_json_print_lines(FILE *out, const json_t *arr) {
  size_t n = json_array_size(arr);
  fputs(n ? "[\n" : "[]\n", out);
  for (size_t i = 0; i < n; i++) {
    json_dumpf(json_array_get(arr, i), out, JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    fputs(i + 1 < n ? ",\n" : "\n", out);
  }
  if (n)
    fputs("]\n", out);
}

json_t *kjb_json_rfc3339(int64_t epoch_us) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_buf_rfc3339(&b, epoch_us, 3);
  json_t *j = json_string(b.data);
  kjb_buf_close(&b);
  return j;
}

int64_t kjb_now_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t kjb_now_wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- text tables ---------------------------------------------------- */

static size_t display_width(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

char *kjb_table_cell(const char *s, size_t maxchars) {
  assert(maxchars >= 4);
  size_t len = strlen(s);
  char *out = kjb_xmalloc(len + 4);
  size_t chars = 0, i = 0, o = 0, cut = 0;
  for (; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch & 0xC0) != 0x80) {
      if (chars == maxchars - 3)
        cut = o;
      if (chars++ == maxchars) {
        o = cut;
        memcpy(out + o, "...", 3);
        o += 3;
        break;
      }
    }
    out[o++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
  }
  out[o] = '\0';
  return out;
}

void kjb_table_print(FILE *out, char *const *cells, size_t nrows, size_t ncols) {
  size_t *width = kjb_xcalloc(ncols ? ncols : 1, sizeof *width);
  for (size_t r = 0; r < nrows; r++)
    for (size_t c = 0; c < ncols; c++) {
      size_t w = display_width(cells[r * ncols + c]);
      if (w > width[c])
        width[c] = w;
    }
  kjb_buf line;
  kjb_buf_init(&line);
  for (size_t r = 0; r < nrows; r++) {
    kjb_buf_reset(&line);
    for (size_t c = 0; c < ncols; c++) {
      const char *s = cells[r * ncols + c];
      kjb_buf_puts(&line, s);
      if (c + 1 < ncols)
        for (size_t w = display_width(s); w < width[c] + 2; w++)
          kjb_buf_putc(&line, ' ');
    }
    /* No trailing blanks when the last columns are empty. */
    while (line.len > 0 && line.data[line.len - 1] == ' ')
      line.len--;
    fprintf(out, "%.*s\n", (int)line.len, line.data);
  }
  kjb_buf_close(&line);
  free(width);
}
