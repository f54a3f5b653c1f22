/* The logger. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static kjb_log_level threshold = KJB_LOG_INFO;
static int as_json;
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

void kjb_log(kjb_log_level level, const char *fmt, ...) {
  if (level < threshold)
    return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  kjb_buf line;
  kjb_buf_init(&line);
  if (as_json) {
    kjb_buf_puts(&line, "{\"ts\":\"");
    kjb_buf_rfc3339(&line, kjb_now_wall_us(), 3);
    kjb_buf_printf(&line, "\",\"level\":\"%s\",\"msg\":", names[level]);
    /* Messages may quote record bytes; keep the line valid JSON. */
    long bad = kjb_utf8_invalid_at(msg, strlen(msg));
    kjb_buf_json_str(&line, msg, bad < 0 ? strlen(msg) : (size_t)bad);
    kjb_buf_puts(&line, "}\n");
  } else {
    kjb_buf_rfc3339(&line, kjb_now_wall_us(), 3);
    kjb_buf_printf(&line, " %-5s %s\n", names[level], msg);
  }
  pthread_mutex_lock(&lock);
  fwrite(line.data, 1, line.len, stderr);
  fflush(stderr);
  pthread_mutex_unlock(&lock);
  kjb_buf_close(&line);
}
