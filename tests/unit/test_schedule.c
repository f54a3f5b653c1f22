/* The scheduler's decision on the latest tick due: done already, on time,
 * caught up after not watching, or skipped past misfire_grace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "schedule.h"

#define S 1000000LL

static void test_decide(void **state) {
  static const struct {
    const char *what;
    int64_t tick;
    bool settled;
    int64_t settled_at, watched, now, grace;
    kjb_tick_action want;
  } cases[] = {
      {"first check after a start", 100 * S, false, 0, -1, 101 * S, 0, KJB_TICK_CATCH_UP},
      {"came since the last check", 100 * S, true, 90 * S, 99 * S, 100 * S, 0, KJB_TICK_INSERT},
      {"came at the last check's instant, seen then", 100 * S, true, 90 * S, 100 * S, 101 * S, 0,
       KJB_TICK_CATCH_UP},
      {"settled", 100 * S, true, 100 * S, 99 * S, 101 * S, 0, KJB_TICK_DONE},
      {"older than the settled one (a clock step back)", 90 * S, true, 100 * S, -1, 101 * S, 0,
       KJB_TICK_DONE},
      {"missed long ago, no grace", 100 * S, true, 10 * S, -1, 86400 * S, 0, KJB_TICK_CATCH_UP},
      {"missed longer ago than the grace", 100 * S, true, 10 * S, -1, 200 * S, 60 * S,
       KJB_TICK_SKIP},
      {"missed within the grace", 100 * S, true, 10 * S, -1, 160 * S, 60 * S, KJB_TICK_CATCH_UP},
      {"on time but late (a slow check): never skipped", 100 * S, true, 10 * S, 99 * S, 900 * S,
       60 * S, KJB_TICK_INSERT},
      {"after a database error", 100 * S, true, 90 * S, -1, 100 * S + 1, 0, KJB_TICK_CATCH_UP},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("%s\n", cases[i].what);
    assert_int_equal(kjb_schedule_decide(cases[i].tick, cases[i].settled, cases[i].settled_at,
                                         cases[i].watched, cases[i].now, cases[i].grace),
                     cases[i].want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decide),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
