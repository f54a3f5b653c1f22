/* A plugin built for an ABI version kjb does not know, for test_handler:
 * kjb must refuse it without calling anything but kjb_handler_entry. */
#include "kjb/handler.h"

static int bad_init(const char *kind, void **state, char *errbuf, size_t errlen) {
  *state = NULL;
  return 0;
}

static void bad_perform(void *state, const kjb_handler_job *job, kjb_handler_result *res) {}

static const kjb_handler_plugin plugin = {
    .abi_version = 99, .name = "bad_abi", .init = bad_init, .perform = bad_perform};

const kjb_handler_plugin *kjb_handler_entry(void) { return &plugin; }
