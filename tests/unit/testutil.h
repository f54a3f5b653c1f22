/* The helper layer that the cmocka tests (tests/unit) and the fuzz
 * harnesses (tests/fuzz) share: fixtures, scratch files, a clean
 * environment. Failures here are the test setup's, so they print the
 * reason and abort rather than report. */
#ifndef KJB_TESTUTIL_H
#define KJB_TESTUTIL_H

#include <stddef.h>

/* s with every single quote turned into a double quote, so that JSON can
 * be written in C strings as {'a':1}. The result lives in a static buffer
 * per slot (0 to 7; each up to 8191 bytes) until the next call with that
 * slot. NULL gives NULL. */
const char *kjb_test_quote(const char *s, int slot);

/* The contents of rel, a path below the source tree ($KJB_SOURCE_DIR, or
 * the working directory), as a NUL-terminated string, read with
 * kjb_read_file (1 MiB at most). The result stays valid for the next three
 * calls. Aborts when the file cannot be read. */
const char *kjb_test_fixture(const char *rel);

/* Creates or replaces path with n bytes of data; aborts on failure. */
void kjb_test_write_file(const char *path, const void *data, size_t n);

/* Unsets every KJB_* variable except KJB_FUZZ_* and KJB_SOURCE_DIR, so
 * that the environment cannot change what a configuration says. */
void kjb_test_clear_kjb_env(void);

/* Whether n bytes at s are valid UTF-8, by jansson's own check: an
 * oracle independent of kjb_utf8_invalid_at. */
int kjb_test_utf8_ok(const char *s, size_t n);

#endif
