/* Shared helpers: durations, RFC 3339, UTF-8, base64, JSON escaping,
 * arena, reading files and error values. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "util.h"

static void test_durations(void **state) {
  static const struct {
    const char *in;
    int rc;
    int64_t us;
  } cases[] = {
      {"250ms", 0, 250000},
      {"30s", 0, 30000000},
      {"5m", 0, 300000000},
      {"1h", 0, 3600000000LL},
      {"2d", 0, 172800000000LL},
      {"10us", 0, 10},
      {"1.5s", 0, 1500000},
      {"0s", 0, 0},
      {"5", -1, 0},
      {"s", -1, 0},
      {"-1s", -1, 0},
      {"1 s", -1, 0},
      {"1sec", -1, 0},
      {"", -1, 0},
      {"1e30d", -1, 0},
      {"0x10s", -1, 0},
      {"01s", -1, 0},
      {"1e3ms", -1, 0},
      {"1.s", -1, 0},
      {".5s", -1, 0},
      {"infs", -1, 0},
      {"0.5s", 0, 500000},
      {"10.25ms", 0, 10250},
      {"+1s", -1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t us = 0;
    print_message("duration \"%s\"\n", cases[i].in);
    assert_int_equal(kjb_duration_parse(cases[i].in, &us), cases[i].rc);
    if (cases[i].rc == 0)
      assert_int_equal(us, cases[i].us);
  }
}

static void test_parse_i64(void **state) {
  static const struct {
    const char *in;
    int64_t min, max;
    int rc;
    int64_t v;
  } cases[] = {
      {"0", 0, 10, 0, 0},
      {"7", 0, 10, 0, 7},
      {"10", 0, 10, 0, 10},
      {"11", 0, 10, -1, 0},
      {"-1", -5, 5, 0, -1},
      {"-1", 0, 5, -1, 0},
      {"9223372036854775807", INT64_MIN, INT64_MAX, 0, INT64_MAX},
      {"-9223372036854775808", INT64_MIN, INT64_MAX, 0, INT64_MIN},
      {"9223372036854775808", INT64_MIN, INT64_MAX, -1, 0},
      {"-9223372036854775809", INT64_MIN, INT64_MAX, -1, 0},
      {"99999999999999999999999", INT64_MIN, INT64_MAX, -1, 0},
      {"", 0, 10, -1, 0},
      {" 1", 0, 10, -1, 0},
      {"1 ", 0, 10, -1, 0},
      {"+1", 0, 10, -1, 0},
      {"01", 0, 10, -1, 0},
      {"-0", -5, 5, -1, 0},
      {"-", -5, 5, -1, 0},
      {"1x", 0, 10, -1, 0},
      {"0x1", 0, 10, -1, 0},
      {"1e3", 0, 10000, -1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t v = 12345;
    print_message("integer \"%s\" in [%lld, %lld]\n", cases[i].in, (long long)cases[i].min,
                  (long long)cases[i].max);
    assert_int_equal(kjb_parse_i64(cases[i].in, cases[i].min, cases[i].max, &v), cases[i].rc);
    assert_int_equal(v, cases[i].rc == 0 ? cases[i].v : 12345);
  }
  /* A NUL inside the text ends it: what follows is not looked at, so
   * callers that have lengths (HTTP) must check for embedded NULs. */
  assert_int_equal(kjb_parse_i64(NULL, 0, 1, &(int64_t){0}), -1);
}

static void test_hostport(void **state) {
  static const struct {
    const char *in;
    bool need_port;
    const char *host; /* NULL: fails with why */
    int port;
    const char *why;
  } cases[] = {
      {"127.0.0.1:9464", true, "127.0.0.1", 9464, NULL},
      {"localhost:0", true, "localhost", 0, NULL},
      {"kafka-0.kafka_svc.example:65535", true, "kafka-0.kafka_svc.example", 65535, NULL},
      {"[::1]:9464", true, "::1", 9464, NULL},
      {"[fe80::1%eth0]:80", true, "fe80::1%eth0", 80, NULL},
      {"[::ffff:10.0.0.1]:1", true, "::ffff:10.0.0.1", 1, NULL},
      {"b\xc3\xbc"
       "cher.example:80",
       true,
       "b\xc3\xbc"
       "cher.example",
       80, NULL},
      {"broker", false, "broker", -1, NULL},
      {"[::1]", false, "::1", -1, NULL},
      {"broker:9092", false, "broker", 9092, NULL},
      {"127.0.0.1", true, NULL, 0, "expected host:port or [ipv6]:port, got \"127.0.0.1\""},
      {"[::1]", true, NULL, 0, "expected host:port or [ipv6]:port, got \"[::1]\""},
      {"::1:80", true, NULL, 0, "expected host:port or [ipv6]:port, got \"::1:80\""},
      {"::1", false, NULL, 0, "expected host[:port] or [ipv6][:port], got \"::1\""},
      {"[::1]80", true, NULL, 0, "expected host:port or [ipv6]:port, got \"[::1]80\""},
      {"[::1:80", true, NULL, 0, "expected host:port or [ipv6]:port, got \"[::1:80\""},
      {"garbage", true, NULL, 0, "expected host:port or [ipv6]:port, got \"garbage\""},
      {"127.0.0.1:99999", true, NULL, 0,
       "invalid port in \"127.0.0.1:99999\" (expected 0 to 65535)"},
      {"localhost:-1", true, NULL, 0, "invalid port in \"localhost:-1\" (expected 0 to 65535)"},
      {"localhost:", true, NULL, 0, "invalid port in \"localhost:\" (expected 0 to 65535)"},
      {"localhost:+80", true, NULL, 0, "invalid port in \"localhost:+80\" (expected 0 to 65535)"},
      {"localhost:080", true, NULL, 0, "invalid port in \"localhost:080\" (expected 0 to 65535)"},
      {"localhost: 80", true, NULL, 0, "invalid port in \"localhost: 80\" (expected 0 to 65535)"},
      {"localhost:80x", true, NULL, 0, "invalid port in \"localhost:80x\" (expected 0 to 65535)"},
      {":9464", true, NULL, 0, "invalid host in \":9464\""},
      {"a b:80", true, NULL, 0, "invalid host in \"a b:80\""},
      {"a/b:80", true, NULL, 0, "invalid host in \"a/b:80\""},
      {"[]:80", true, NULL, 0, "invalid host in \"[]:80\""},
      {"[1.2.3.4]:80", true, NULL, 0, "invalid host in \"[1.2.3.4]:80\""},
      {"[::1%]:80", true, NULL, 0, "invalid host in \"[::1%]:80\""},
      {"[host]:80", true, NULL, 0, "invalid host in \"[host]:80\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char host[64] = "unchanged";
    int port = 12345;
    kjb_err err = {0};
    print_message("address \"%s\"\n", cases[i].in);
    int rc = kjb_hostport_parse(cases[i].in, cases[i].need_port, host, sizeof host, &port, &err);
    if (cases[i].host) {
      assert_int_equal(rc, 0);
      assert_string_equal(host, cases[i].host);
      assert_int_equal(port, cases[i].port);
    } else {
      assert_int_equal(rc, -1);
      assert_int_equal(err.code, KJB_ECONFIG);
      assert_string_equal(err.msg, cases[i].why);
      assert_string_equal(host, "unchanged");
      assert_int_equal(port, 12345);
    }
  }
  /* The host must fit. */
  char small[4];
  int port;
  kjb_err err = {0};
  assert_int_equal(kjb_hostport_parse("abcd:1", true, small, sizeof small, &port, &err), -1);
  assert_string_equal(err.msg, "invalid host in \"abcd:1\"");
  assert_int_equal(kjb_hostport_parse("abc:1", true, small, sizeof small, &port, &err), 0);
}

static void test_rfc3339(void **state) {
  static const struct {
    int64_t us;
    int digits;
    const char *out;
  } cases[] = {
      {0, 3, "1970-01-01T00:00:00.000Z"},
      {1763719200123000LL, 3, "2025-11-21T10:00:00.123Z"},
      {1763719200123456LL, 6, "2025-11-21T10:00:00.123456Z"},
      {-1000, 3, "1969-12-31T23:59:59.999Z"},
      {-1, 6, "1969-12-31T23:59:59.999999Z"},
      {951782400000000LL, 3, "2000-02-29T00:00:00.000Z"},
      {253402300799999000LL, 3, "9999-12-31T23:59:59.999Z"},
      {253402300800000000LL, 3, "10000-01-01T00:00:00.000Z"},
      {-62135596800000000LL, 6, "0001-01-01T00:00:00.000000Z"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_buf_rfc3339(&b, cases[i].us, cases[i].digits);
    assert_string_equal(b.data, cases[i].out);
    kjb_buf_close(&b);
  }
}

static void test_fmt_i64(void **state) {
  static const struct {
    int64_t v;
    const char *out;
  } cases[] = {{0, "0"},
               {7, "7"},
               {-1, "-1"},
               {1234567890, "1234567890"},
               {INT64_MAX, "9223372036854775807"},
               {INT64_MIN, "-9223372036854775808"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[21];
    assert_int_equal(kjb_fmt_i64(buf, cases[i].v), strlen(cases[i].out));
    assert_string_equal(buf, cases[i].out);
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_buf_puts(&b, "x");
    kjb_buf_put_i64(&b, cases[i].v);
    assert_string_equal(b.data + 1, cases[i].out);
    kjb_buf_close(&b);
  }
}

static void test_utf8(void **state) {
  static const struct {
    const char *s;
    size_t n;
    long bad;
  } cases[] = {
      {"plain", 5, -1},
      {"caf\xc3\xa9", 5, -1},
      {"\xf0\x9f\x98\x80", 4, -1}, /* U+1F600 */
      {"ab\xff", 3, 2},            /* never valid */
      {"a\xc3", 2, 1},             /* truncated sequence */
      {"\xc0\xaf", 2, 0},          /* overlong '/' */
      {"\xed\xa0\x80", 3, 0},      /* surrogate U+D800 */
      {"\xf4\x90\x80\x80", 4, 0},  /* U+110000 */
      {"ok\xe2\x82", 4, 2},        /* truncated 3-byte */
      {"x\xe2\x28\xa1", 4, 1},     /* bad continuation */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("utf8 case %zu\n", i);
    assert_int_equal(kjb_utf8_invalid_at(cases[i].s, cases[i].n), cases[i].bad);
  }
}

static void test_base64_and_json(void **state) {
  kjb_buf b;
  kjb_buf_init(&b);
  static const struct {
    const char *in, *out;
  } b64[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}};
  for (size_t i = 0; i < 5; i++) {
    kjb_buf_reset(&b);
    kjb_buf_base64(&b, (const uint8_t *)b64[i].in, strlen(b64[i].in));
    assert_string_equal(b.data, b64[i].out);
  }
  kjb_buf_reset(&b);
  const char s[] = "a\"b\\c\n\t\x01\xc3\xa9";
  kjb_buf_json_str(&b, s, sizeof s - 1);
  assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\xc3\xa9\"");
  kjb_buf_reset(&b);
  char longstr[400];
  memset(longstr, 'y', sizeof longstr - 1);
  longstr[sizeof longstr - 1] = '\0';
  kjb_buf_printf(&b, "%s-%d", longstr, 7); /* past printf's 256-byte fast path */
  assert_int_equal(b.len, 401);
  assert_string_equal(b.data + b.len - 2, "-7");
  kjb_buf_close(&b);
}

static void test_alloc(void **state) {
  char *s = kjb_xstrndup("hello world", 5);
  assert_string_equal(s, "hello");
  free(s);
  s = kjb_xstrndup("hi", 5); /* shorter than n: stops at the NUL */
  assert_string_equal(s, "hi");
  free(s);

  size_t cap = 0;
  int *a = kjb_xgrow(NULL, &cap, 1, sizeof *a);
  assert_non_null(a);
  assert_int_equal(cap, 16);
  a[0] = 7;
  assert_ptr_equal(kjb_xgrow(a, &cap, 16, sizeof *a), a); /* room enough */
  assert_int_equal(cap, 16);
  a = kjb_xgrow(a, &cap, 17, sizeof *a);
  assert_int_equal(cap, 32);
  a = kjb_xgrow(a, &cap, 100, sizeof *a);
  assert_int_equal(cap, 128);
  assert_int_equal(a[0], 7);
  free(a);
}

static void test_arena(void **state) {
  kjb_arena *a = kjb_arena_new(64);
  char *p = kjb_arena_alloc(a, 10);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % 8, 0);
  char *big = kjb_arena_alloc(a, 1000); /* larger than a chunk */
  memset(big, 'x', 1000);
  assert_int_equal(kjb_arena_used(a), 16 + 1000);
  char *s = kjb_arena_strndup(a, "hello world", 5);
  assert_string_equal(s, "hello");
  kjb_arena_reset(a);
  assert_int_equal(kjb_arena_used(a), 0);
  /* A reset keeps standard chunks: the next batch reuses the same memory. */
  assert_ptr_equal(kjb_arena_alloc(a, 8), p);
  char *second[8];
  for (int i = 0; i < 8; i++)
    second[i] = kjb_arena_alloc(a, 40); /* spills into further chunks */
  kjb_arena_reset(a);
  assert_ptr_equal(kjb_arena_alloc(a, 8), p);
  for (int i = 0; i < 8; i++)
    assert_ptr_equal(kjb_arena_alloc(a, 40), second[i]);
  kjb_arena_free(a);
  kjb_arena_free(NULL);
}

/* Calendar dates to days and back; impossible dates are refused. */
static void test_civil_dates(void **state) {
  static const struct {
    int64_t y, m, d;
    int rc;
    int64_t days;
  } cases[] = {
      {1970, 1, 1, 0, 0},       {2026, 11, 21, 0, 20778}, {2000, 2, 29, 0, 11016},
      {1969, 12, 31, 0, -1},    {2024, 2, 29, 0, 19782},  {2026, 2, 29, -1, 0},
      {1900, 2, 29, -1, 0},     {2026, 2, 31, -1, 0},     {2026, 4, 31, -1, 0},
      {2026, 13, 1, -1, 0},     {2026, 0, 1, -1, 0},      {2026, 1, 0, -1, 0},
      {2026, 12, 31, 0, 20818},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t days = 7;
    print_message("date %04lld-%02lld-%02lld\n", (long long)cases[i].y, (long long)cases[i].m,
                  (long long)cases[i].d);
    assert_int_equal(kjb_civil_to_days(cases[i].y, cases[i].m, cases[i].d, &days), cases[i].rc);
    if (cases[i].rc < 0) {
      assert_int_equal(days, 7);
      continue;
    }
    assert_int_equal(days, cases[i].days);
    int64_t y;
    unsigned m, d;
    kjb_civil_from_days(days, &y, &m, &d);
    assert_int_equal(y, cases[i].y);
    assert_int_equal(m, cases[i].m);
    assert_int_equal(d, cases[i].d);
  }
}

static void test_utf8_prefix(void **state) {
  static const struct {
    const char *s;
    size_t max, n;
  } cases[] = {
      {"", 4, 0},
      {"abc", 4, 3},
      {"abcd", 4, 4},
      {"abcde", 4, 4},
      {"ab\xc3\xa9", 4, 4},
      {"abc\xc3\xa9", 4, 3},
      {"a\xe2\x82\xac", 3, 1},
      {"a\xe2\x82\xac", 4, 4},
      {"\xf0\x9f\x98\x80x", 2, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("prefix case %zu\n", i);
    assert_int_equal(kjb_utf8_prefix(cases[i].s, cases[i].max), cases[i].n);
  }
}

static void test_secret_equal(void **state) {
  static const struct {
    const char *given;
    size_t gl;
    bool equal;
  } cases[] = {
      {"tok-1", 5, true},         {"tok-2", 5, false},   {"tok-", 4, false}, {"tok-1x", 6, false},
      {"tok-1\0junk", 10, false}, {"tok-1\0", 6, false}, {"", 0, false},     {"TOK-1", 5, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("secret case %zu\n", i);
    assert_int_equal(kjb_secret_equal(cases[i].given, cases[i].gl, "tok-1", 5), cases[i].equal);
  }
  assert_true(kjb_secret_equal("", 0, "", 0));
  assert_false(kjb_secret_equal("x", 1, "", 0));
}

/* One case of kjb_read_file: path (relative to a temporary directory
 * unless absolute), the limit, and the reason it fails with (NULL: it
 * reads, and the text is want_text). */
typedef struct {
  const char *path;
  size_t max;
  const char *why;
  const char *want_text;
} read_case;

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
}

static void test_read_file(void **state) {
  char dir[] = "/tmp/kjb-test-util-XXXXXX", path[512];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/ten", dir);
  write_text(path, "0123456789");
  snprintf(path, sizeof path, "%s/empty", dir);
  write_text(path, "");
  snprintf(path, sizeof path, "%s/fifo", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  snprintf(path, sizeof path, "%s/zero", dir);
  assert_int_equal(symlink("/dev/zero", path), 0);
  snprintf(path, sizeof path, "%s/link", dir);
  assert_int_equal(symlink("ten", path), 0);
  snprintf(path, sizeof path, "%s/sub", dir);
  assert_int_equal(mkdir(path, 0700), 0);

  static const read_case cases[] = {
      {"ten", 10, NULL, "0123456789"},
      {"link", 10, NULL, "0123456789"}, /* a symlink to a regular file is fine */
      {"empty", 10, NULL, ""},
      {"ten", 9, "larger than 9 bytes", NULL},
      {"ten", 0, "larger than 0 bytes", NULL},
      {"fifo", 1 << 20, "not a regular file", NULL}, /* must not block */
      {"zero", 1 << 20, "not a regular file", NULL}, /* must not read forever */
      {"/dev/null", 10, "not a regular file", NULL},
      {"sub", 10, "Is a directory", NULL},
      {"missing", 10, "No such file or directory", NULL},
  };
  kjb_buf b;
  kjb_buf_init(&b);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const read_case *tc = &cases[i];
    if (tc->path[0] == '/')
      snprintf(path, sizeof path, "%s", tc->path);
    else
      snprintf(path, sizeof path, "%s/%s", dir, tc->path);
    print_message("read \"%s\" at most %zu\n", tc->path, tc->max);
    kjb_buf_puts(&b, "stale");
    kjb_err err = {0};
    int rc = kjb_read_file(path, tc->max, &b, &err);
    if (tc->why) {
      assert_int_equal(rc, -KJB_EIO);
      assert_int_equal(err.code, KJB_EIO);
      assert_string_equal(err.msg, tc->why);
      assert_int_equal(b.len, 0);
    } else {
      assert_int_equal(rc, 0);
      assert_string_equal(b.data, tc->want_text);
      assert_int_equal(b.len, strlen(tc->want_text));
    }
  }
  kjb_buf_close(&b);

  /* The limit is named in the unit it was given in. */
  static const struct {
    size_t max;
    const char *why;
  } units[] = {{1 << 20, "larger than 1 MiB"},
               {3 << 20, "larger than 3 MiB"},
               {64 << 10, "larger than 64 KiB"},
               {1000, "larger than 1000 bytes"},
               {(1 << 20) + 1024, "larger than 1025 KiB"}};
  snprintf(path, sizeof path, "%s/big", dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  for (int i = 0; i < (3 << 20) + 1; i++)
    fputc('x', f);
  assert_int_equal(fclose(f), 0);
  kjb_buf_init(&b);
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    kjb_err err = {0};
    assert_int_equal(kjb_read_file(path, units[i].max, &b, &err), -KJB_EIO);
    assert_string_equal(err.msg, units[i].why);
  }
  kjb_buf_close(&b);

  static const char *const names[] = {"ten", "empty", "fifo", "zero", "link", "big"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    assert_int_equal(unlink(path), 0);
  }
  snprintf(path, sizeof path, "%s/sub", dir);
  assert_int_equal(rmdir(path), 0);
  assert_int_equal(rmdir(dir), 0);
}

static void test_errors(void **state) {
  kjb_err err;
  assert_int_equal(kjb_err_set(&err, KJB_ETRUNCATED, "at byte %d", 17), -KJB_ETRUNCATED);
  kjb_err_prefix(&err, "field \"%s\"", "customer.email");
  assert_string_equal(err.msg, "field \"customer.email\": at byte 17");
  assert_string_equal(kjb_err_name(KJB_ETRUNCATED), "TRUNCATED");
  assert_string_equal(kjb_err_name(KJB_EUNKNOWN_SCHEMA_ID), "UNKNOWN_SCHEMA_ID");
  assert_int_equal(kjb_err_classof(KJB_EBAD_MAGIC), KJB_PERMANENT);
  assert_int_equal(kjb_err_classof(KJB_EREGISTRY_UNAVAILABLE), KJB_TRANSIENT);
  kjb_err_set(&err, KJB_EREGISTRY_UNAVAILABLE, "down");
  assert_true(kjb_err_is_transient(&err));
}

/* Text tables: cells cut to a width by characters, columns aligned by
 * characters, no trailing blanks. */
static void test_tables(void **state) {
  static const struct {
    const char *in;
    size_t max;
    const char *out;
  } cells[] = {
      {"short", 10, "short"},
      {"exactly10!", 10, "exactly10!"},
      {"eleven char", 10, "eleven ..."},
      {"line\nbreak\ttab", 20, "line break tab"},
      {"Zoë Zoë Zoë", 6, "Zoë..."},
      {"", 4, ""},
  };
  for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++) {
    char *c = kjb_table_cell(cells[i].in, cells[i].max);
    assert_string_equal(c, cells[i].out);
    free(c);
  }
  char *t[] = {"ID", "NAME", "NOTE", "1", "Zoë", "", "22", "x", "last"};
  char buf[256] = "";
  FILE *f = fmemopen(buf, sizeof buf, "w");
  kjb_table_print(f, t, 3, 3);
  fclose(f);
  assert_string_equal(buf, "ID  NAME  NOTE\n"
                           "1   Zoë\n"
                           "22  x     last\n");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_parse_i64),
      cmocka_unit_test(test_hostport),
      cmocka_unit_test(test_rfc3339),
      cmocka_unit_test(test_fmt_i64),
      cmocka_unit_test(test_civil_dates),
      cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_utf8_prefix),
      cmocka_unit_test(test_base64_and_json),
      cmocka_unit_test(test_secret_equal),
      cmocka_unit_test(test_arena),
      cmocka_unit_test(test_read_file),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_alloc),
      cmocka_unit_test(test_tables),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
