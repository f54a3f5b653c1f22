/* The logger: masking of secrets, text and JSON lines, levels, and one
 * whole line per call from many threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>

#include "log.h"
#include "util.h"

/* Secrets registered by value; the tests that use them run in one process,
 * so each is unique to this file. */
#define ADMIN_TOKEN "tok-s3cr3t-admin"
#define OTHER_SECRET "other-secret-value"

/* What kjb_log_redact makes of in: expected NULL means "nothing to mask". */
static void check_redact(const char *in, const char *expected) {
  char *got = kjb_log_redact(in);
  print_message("redact \"%s\"\n", in);
  if (!expected) {
    if (got)
      fail_msg("expected no change, got \"%s\"", got);
  } else {
    if (!got)
      fail_msg("expected \"%s\", got no change", expected);
    assert_string_equal(got, expected);
  }
  free(got);
}

static void test_redact_conninfo(void **state) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"host=db password=hunter2 dbname=kjb", "host=db password=*** dbname=kjb"},
      /* At the end of the string. */
      {"host=db dbname=kjb password=hunter2", "host=db dbname=kjb password=***"},
      {"password=x", "password=***"},
      /* Any case, blanks around '=' as libpq allows. */
      {"PassWord = hunter2 host=db", "PassWord = *** host=db"},
      {"PASSWORD=Hunter2", "PASSWORD=***"},
      /* Quoted, with an escaped quote and a space inside. */
      {"host=db password='it\\'s a secret' port=5432", "host=db password='***' port=5432"},
      {"password='a\\\\' user=u", "password='***' user=u"},
      /* A message cut inside the quotes masks to the end. */
      {"password='abc de", "password='***"},
      /* A backslash-escaped space does not end an unquoted value. */
      {"password=ab\\ cd host=x", "password=*** host=x"},
      /* Inside a quoted conninfo in an error message. */
      {"invalid conninfo \"host=x password=pw\"", "invalid conninfo \"host=x password=***"},
      /* Empty values reveal nothing. */
      {"password= ", NULL},
      {"password=''", NULL},
      {"password=", NULL},
      /* Not a password key. */
      {"passwordless login enabled", NULL},
      {"passwordless=1 passwords are fine", NULL},
      {"the password is required", NULL},
      {"kafka.brokers=127.0.0.1:9092 user=postgres", NULL},
      {"", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_redact(cases[i].in, cases[i].out);
}

static void test_redact_properties(void **state) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"sasl.password=abc", "sasl.password=***"},
      {"kafka.properties \"ssl.key.password=k3y\" ssl.keystore.password=ks",
       "kafka.properties \"ssl.key.password=***\" ssl.keystore.password=***"},
      {"sasl.oauthbearer.client.secret=xyz sasl.username=bob",
       "sasl.oauthbearer.client.secret=*** sasl.username=bob"},
      {"SASL.PASSWORD=\"two words\" x=1", "SASL.PASSWORD=\"***\" x=1"},
      {"db_passwd=pw", "db_passwd=***"},
      {"sasl.username=bob sasl.mechanism=PLAIN", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_redact(cases[i].in, cases[i].out);
}

static void test_redact_uris(void **state) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"postgresql://kjb:s3cret@db:5432/kjb", "postgresql://kjb:***@db:5432/kjb"},
      {"fetch https://bob:pw@registry.example/subjects failed",
       "fetch https://bob:***@registry.example/subjects failed"},
      /* An unencoded '@' in the password: the last '@' ends it. */
      {"amqp://u:p@ss@host", "amqp://u:***@host"},
      {"postgres://u:pw@h/db?sslmode=require&password=other#x",
       "postgres://u:***@h/db?sslmode=require&password=***#x"},
      {"http://user@host/x", NULL},
      {"http://host/path?email=a@b.example", NULL},
      {"see http://host:8080/metrics", NULL},
      {"://", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_redact(cases[i].in, cases[i].out);
}

static void test_redact_authorization(void **state) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"},
      {"authorization: basic dXNlcjpwdw== next", "authorization: basic *** next"},
      {"header Authorization:rawkey123", "header Authorization:***"},
      {"sent Bearer tok123, got 401", "sent Bearer ***, got 401"},
      {"{\"authorization\":\"Bearer abc\"}", "{\"authorization\":\"Bearer ***\"}"},
      {"BEARER  xyz", "BEARER  ***"},
      /* Not the word "bearer", or no token after it. */
      {"unbearer xyz", NULL},
      {"bearerish xyz", NULL},
      {"Authorization: Bearer", NULL},
      {"missing Bearer", NULL},
      {"authorization failed", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_redact(cases[i].in, cases[i].out);
}

static void test_redact_registered(void **state) {
  kjb_log_secret(NULL);
  kjb_log_secret("");
  kjb_log_secret("abc"); /* too short: ignored */
  kjb_log_secret(ADMIN_TOKEN);
  kjb_log_secret(ADMIN_TOKEN); /* twice is once */
  kjb_log_secret(OTHER_SECRET);
  check_redact("token " ADMIN_TOKEN " and again " ADMIN_TOKEN ".", "token *** and again ***.");
  check_redact("x" ADMIN_TOKEN "x", "x***x");
  check_redact(ADMIN_TOKEN OTHER_SECRET, "******");
  check_redact("abc abc", NULL);
  check_redact("tok-s3cr3t-admi", NULL);
  /* Every kind in one line. */
  check_redact("host=db password=pw1 url=postgresql://u:pw2@h/db Authorization: Bearer tok3 "
               "sasl.password=pw4 admin " ADMIN_TOKEN,
               "host=db password=*** url=postgresql://u:***@h/db Authorization: Bearer *** "
               "sasl.password=*** admin ***");
  /* A registered value inside a password is masked once, not twice. */
  check_redact("password=" ADMIN_TOKEN " x", "password=*** x");
}

/* ---- lines ----------------------------------------------------------- */

/* Runs fn with the logger writing to a temporary file; returns what it
 * wrote (the caller frees it). */
static char *capture(kjb_log_level level, int json, void (*fn)(void)) {
  FILE *f = tmpfile();
  assert_non_null(f);
  kjb_log_setup(level, json);
  kjb_log_output(f);
  fn();
  kjb_log_output(NULL);
  kjb_log_setup(KJB_LOG_INFO, 0);
  long size = ftell(f);
  assert_true(size >= 0);
  char *text = kjb_xmalloc((size_t)size + 1);
  rewind(f);
  assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
  text[size] = '\0';
  fclose(f);
  return text;
}

static size_t count_lines(const char *text) {
  size_t n = 0;
  for (const char *p = text; (p = strchr(p, '\n')); p++)
    n++;
  return n;
}

/* Parses one JSON line (without its newline) and checks its shape. */
static json_t *parse_line(const char *line, size_t len, const char *level) {
  json_error_t jerr;
  json_t *obj = json_loadb(line, len, 0, &jerr);
  if (!obj)
    fail_msg("not JSON (%s): %.*s", jerr.text, (int)len, line);
  assert_true(json_is_object(obj));
  assert_int_equal(json_object_size(obj), 3);
  const char *ts = json_string_value(json_object_get(obj, "ts"));
  assert_non_null(ts);
  assert_int_equal(strlen(ts), strlen("2026-11-21T10:00:00.123Z"));
  assert_int_equal(ts[strlen(ts) - 1], 'Z');
  assert_string_equal(json_string_value(json_object_get(obj, "level")), level);
  assert_non_null(json_string_value(json_object_get(obj, "msg")));
  return obj;
}

static void log_text_lines(void) {
  kjb_info("connecting to host=db password=hunter2 dbname=kjb");
  kjb_warn("two\nlines\r\n");
  kjb_error("token %s", ADMIN_TOKEN);
}

static void test_text_lines(void **state) {
  kjb_log_secret(ADMIN_TOKEN);
  char *out = capture(KJB_LOG_INFO, 0, log_text_lines);
  assert_int_equal(count_lines(out), 3);
  char *l1 = out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
  /* "2026-11-21T10:00:00.123Z info  msg" */
  size_t ts = strlen("2026-11-21T10:00:00.123Z");
  assert_int_equal(l1[ts - 1], 'Z');
  assert_memory_equal(l1 + ts, " info  connecting to host=db password=*** dbname=kjb\n",
                      strlen(" info  connecting to host=db password=*** dbname=kjb\n"));
  assert_memory_equal(l2 + ts, " warn  two lines\n", strlen(" warn  two lines\n"));
  assert_string_equal(l3 + ts, " error token ***\n");
  assert_null(strstr(out, "hunter2"));
  assert_null(strstr(out, ADMIN_TOKEN));
  free(out);
}

static void log_json_lines(void) {
  kjb_info("postgresql://kjb:s3cret@db/kjb \"quoted\" \\ back");
  kjb_warn("bad utf-8 \xff\xfe here, then more");
  kjb_error("multi\nline\tmessage\n");
  kjb_debug("not shown at info");
}

static void test_json_lines(void **state) {
  char *out = capture(KJB_LOG_INFO, 1, log_json_lines);
  assert_int_equal(count_lines(out), 3);
  static const char *const levels[] = {"info", "warn", "error"};
  static const char *const msgs[] = {
      "postgresql://kjb:***@db/kjb \"quoted\" \\ back",
      "bad utf-8 \xEF\xBF\xBD\xEF\xBF\xBD here, then more",
      "multi\nline\tmessage",
  };
  const char *line = out;
  for (int i = 0; i < 3; i++) {
    const char *end = strchr(line, '\n');
    json_t *obj = parse_line(line, (size_t)(end - line), levels[i]);
    assert_string_equal(json_string_value(json_object_get(obj, "msg")), msgs[i]);
    json_decref(obj);
    line = end + 1;
  }
  assert_null(strstr(out, "s3cret"));
  free(out);
}

static void log_long(void) {
  char big[3000];
  /* A registered secret straddling the cut: masked before cutting. */
  memset(big, 'x', 2040);
  big[2040] = '\0';
  kjb_error("%s " ADMIN_TOKEN, big);
  /* Two-byte characters: the cut falls on a character boundary. */
  for (int i = 0; i < 1400; i++)
    memcpy(big + 2 * i, "\xC3\xA9", 2);
  big[2800] = '\0';
  kjb_error("%s", big);
}

static void test_long_messages(void **state) {
  kjb_log_secret(ADMIN_TOKEN);
  char *out = capture(KJB_LOG_INFO, 1, log_long);
  assert_int_equal(count_lines(out), 2);
  const char *end = strchr(out, '\n');
  json_t *obj = parse_line(out, (size_t)(end - out), "error");
  const char *msg = json_string_value(json_object_get(obj, "msg"));
  assert_int_equal(strlen(msg), 2040 + strlen(" ***"));
  assert_string_equal(msg + 2040, " ***");
  json_decref(obj);
  assert_null(strstr(out, "tok-"));

  const char *line = end + 1;
  end = strchr(line, '\n');
  obj = parse_line(line, (size_t)(end - line), "error");
  msg = json_string_value(json_object_get(obj, "msg"));
  assert_int_equal(strlen(msg), 2046); /* 1023 whole characters of two bytes */
  assert_int_equal(strlen(msg) % 2, 0);
  json_decref(obj);
  free(out);
}

static void log_all_levels(void) {
  kjb_debug("d");
  kjb_info("i");
  kjb_warn("w");
  kjb_error("e");
}

static void test_levels(void **state) {
  static const struct {
    kjb_log_level level;
    const char *seen;
  } cases[] = {
      {KJB_LOG_DEBUG, "diwe"}, {KJB_LOG_INFO, "iwe"}, {KJB_LOG_WARN, "we"}, {KJB_LOG_ERROR, "e"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *out = capture(cases[i].level, 1, log_all_levels);
    char seen[8] = "";
    for (const char *line = out; *line; line = strchr(line, '\n') + 1) {
      const char *end = strchr(line, '\n');
      json_t *obj = json_loadb(line, (size_t)(end - line), 0, NULL);
      assert_non_null(obj);
      strcat(seen, json_string_value(json_object_get(obj, "msg")));
      json_decref(obj);
    }
    assert_string_equal(seen, cases[i].seen);
    free(out);
  }
  kjb_log_setup(KJB_LOG_WARN, 0);
  assert_false(kjb_log_enabled(KJB_LOG_INFO));
  assert_true(kjb_log_enabled(KJB_LOG_WARN));
  assert_true(kjb_log_enabled(KJB_LOG_ERROR));
  kjb_log_setup(KJB_LOG_INFO, 0);

  static const char *const names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++) {
    kjb_log_level l;
    assert_int_equal(kjb_log_level_parse(names[i], &l), 0);
    assert_int_equal(l, i);
  }
  kjb_log_level l;
  assert_int_equal(kjb_log_level_parse("warning", &l), -1);
  assert_int_equal(kjb_log_level_parse("INFO", &l), -1);
}

/* ---- threads -------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 200

static void *log_from_thread(void *arg) {
  char secret[32];
  snprintf(secret, sizeof secret, "thread-secret-%d", (int)(intptr_t)arg);
  kjb_log_secret(secret);
  for (int i = 0; i < PER_THREAD; i++)
    kjb_info("thread %d line %d password=pw%d secret %s", (int)(intptr_t)arg, i, i, secret);
  return NULL;
}

static void log_threads(void) {
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, log_from_thread, (void *)(intptr_t)i), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
}

static void test_threads(void **state) {
  char *out = capture(KJB_LOG_INFO, 1, log_threads);
  assert_int_equal(count_lines(out), THREADS * PER_THREAD);
  for (const char *line = out; *line; line = strchr(line, '\n') + 1) {
    json_t *obj = parse_line(line, (size_t)(strchr(line, '\n') - line), "info");
    const char *msg = json_string_value(json_object_get(obj, "msg"));
    /* Each thread registered its secret before its first line. */
    const char *tail = strstr(msg, " password=*** secret ***");
    if (!tail)
      fail_msg("not masked: %s", msg);
    assert_string_equal(tail, " password=*** secret ***");
    json_decref(obj);
  }
  assert_null(strstr(out, "thread-secret-"));
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_redact_conninfo),
      cmocka_unit_test(test_redact_properties),
      cmocka_unit_test(test_redact_uris),
      cmocka_unit_test(test_redact_authorization),
      cmocka_unit_test(test_redact_registered),
      cmocka_unit_test(test_text_lines),
      cmocka_unit_test(test_json_lines),
      cmocka_unit_test(test_long_messages),
      cmocka_unit_test(test_levels),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
