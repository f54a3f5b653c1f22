/* The audit trail's actors: --actor NAME checked strictly, else cli:<user>. */
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"

static void test_given(void **state) {
  static const struct {
    const char *in;
    const char *error; /* NULL: taken as it is */
  } cases[] = {
      {"ops", NULL},
      {"cli:alice", NULL},
      {"Zoë the operator", NULL},
      {"", "bad --actor \"\": must not be empty"},
      {"a\tb", "bad --actor \"a\tb\": holds a control character"},
      {"a\x7f", "bad --actor \"a\x7f\": holds a control character"},
      {"\xff", "bad --actor: not valid UTF-8"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[KJB_AUDIT_ACTOR_MAX + 1] = "";
    kjb_err err = {0};
    print_message("actor \"%s\"\n", cases[i].in);
    int rc = kjb_audit_actor(cases[i].in, out, sizeof out, &err);
    if (cases[i].error) {
      assert_int_equal(rc, -KJB_EUSAGE);
      assert_string_equal(err.msg, cases[i].error);
    } else {
      assert_int_equal(rc, 0);
      assert_string_equal(out, cases[i].in);
    }
  }
  /* 128 bytes is the longest; 129 is quoted in part. */
  char name[KJB_AUDIT_ACTOR_MAX + 2], out[KJB_AUDIT_ACTOR_MAX + 1];
  kjb_err err;
  memset(name, 'x', KJB_AUDIT_ACTOR_MAX);
  name[KJB_AUDIT_ACTOR_MAX] = '\0';
  assert_int_equal(kjb_audit_actor(name, out, sizeof out, &err), 0);
  assert_string_equal(out, name);
  strcat(name, "x");
  assert_int_equal(kjb_audit_actor(name, out, sizeof out, &err), -KJB_EUSAGE);
  assert_string_equal(
      err.msg, "bad --actor \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
               "...\": longer than 128 bytes");
}

static void test_default(void **state) {
  char out[KJB_AUDIT_ACTOR_MAX + 1], want[KJB_AUDIT_ACTOR_MAX + 8];
  kjb_err err;
  assert_int_equal(kjb_audit_actor(NULL, out, sizeof out, &err), 0);
  struct passwd *pw = getpwuid(geteuid());
  if (pw && pw->pw_name[0])
    snprintf(want, sizeof want, "cli:%s", pw->pw_name);
  else
    snprintf(want, sizeof want, "%s", out);
  assert_string_equal(out, want);
  assert_memory_equal(out, "cli:", 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_given), cmocka_unit_test(test_default)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
