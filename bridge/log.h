/* One line per event on stderr, as text or JSON, with levels. */
#ifndef KJB_LOG_H
#define KJB_LOG_H

typedef enum { KJB_LOG_DEBUG, KJB_LOG_INFO, KJB_LOG_WARN, KJB_LOG_ERROR } kjb_log_level;

/* Returns 0, or -1 for an unknown name ("debug", "info", "warn", "error"). */
int kjb_log_level_parse(const char *name, kjb_log_level *out);
/* Sets the threshold and the format (json != 0 for JSON lines). */
void kjb_log_setup(kjb_log_level level, int json);
int kjb_log_enabled(kjb_log_level level);
/* Thread-safe; each call writes exactly one line. */
void kjb_log(kjb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kjb_debug(...) kjb_log(KJB_LOG_DEBUG, __VA_ARGS__)
#define kjb_info(...) kjb_log(KJB_LOG_INFO, __VA_ARGS__)
#define kjb_warn(...) kjb_log(KJB_LOG_WARN, __VA_ARGS__)
#define kjb_error(...) kjb_log(KJB_LOG_ERROR, __VA_ARGS__)

#endif
