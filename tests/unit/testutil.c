/* Shared helpers of the unit tests and the fuzz harnesses; see
 * testutil.h. */
#include "testutil.h"

#include <jansson.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

extern char **environ;

const char *kjb_test_quote(const char *s, int slot) {
  static char bufs[8][8192];
  if (!s)
    return NULL;
  char *b = bufs[slot];
  size_t i = 0;
  for (; s[i] && i < sizeof bufs[0] - 1; i++)
    b[i] = s[i] == '\'' ? '"' : s[i];
  b[i] = '\0';
  return b;
}

const char *kjb_test_fixture(const char *rel) {
  static kjb_buf bufs[4];
  static int next;
  const char *dir = getenv("KJB_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", rel);
  kjb_buf *b = &bufs[next++ % 4];
  kjb_buf_close(b);
  kjb_buf_init(b);
  kjb_err err;
  if (kjb_read_file(path, 1 << 20, b, &err) < 0) {
    fprintf(stderr, "could not read fixture %s: %s\n", path, err.msg);
    abort();
  }
  kjb_buf_putc(b, '\0');
  return b->data;
}

void kjb_test_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
    fprintf(stderr, "could not write %s: %s\n", path, strerror(errno));
    abort();
  }
}

void kjb_test_clear_kjb_env(void) {
  for (;;) {
    char name[256] = "";
    for (char **e = environ; *e; e++) {
      const char *eq = strchr(*e, '=');
      if (strncmp(*e, "KJB_", 4) == 0 && eq && (size_t)(eq - *e) < sizeof name &&
          strncmp(*e, "KJB_FUZZ_", 9) != 0 && strncmp(*e, "KJB_SOURCE_DIR=", 15) != 0) {
        memcpy(name, *e, (size_t)(eq - *e));
        name[eq - *e] = '\0';
        break;
      }
    }
    if (!*name)
      return;
    unsetenv(name);
  }
}

int kjb_test_utf8_ok(const char *s, size_t n) {
  json_t *j = json_stringn(s, n);
  json_decref(j);
  return j != NULL;
}
