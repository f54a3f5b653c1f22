/* One line per event on stderr, as text or JSON, with levels; secrets are
 * masked before anything is written. */
#ifndef KJB_LOG_H
#define KJB_LOG_H

#include <stdio.h>

typedef enum { KJB_LOG_DEBUG, KJB_LOG_INFO, KJB_LOG_WARN, KJB_LOG_ERROR } kjb_log_level;

/* Longest message written, in bytes; longer ones are cut (after masking,
 * at a UTF-8 character boundary). */
#define KJB_LOG_MAX_MSG 2047

/* Returns 0, or -1 for an unknown name ("debug", "info", "warn", "error"). */
int kjb_log_level_parse(const char *name, kjb_log_level *out);
/* Sets the threshold and the format (json != 0 for JSON lines). */
void kjb_log_setup(kjb_log_level level, int json);
int kjb_log_enabled(kjb_log_level level);
/* Sends lines to f instead of stderr; NULL restores stderr. For tests. */
void kjb_log_output(FILE *f);

/* Thread-safe; each call writes exactly one line: control characters
 * become spaces in text lines (JSON escapes them) and trailing newlines
 * go. JSON lines are {"ts":…,"level":…,"msg":…}. The message is masked
 * as kjb_log_redact does. */
void kjb_log(kjb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Registers a value that later messages show as "***" wherever it
 * appears (an admin token, a password read from the environment). The
 * value is copied. NULL and values shorter than 4 bytes are ignored (too
 * likely to occur by chance); so are registrations past the 16th, which
 * log a warning. Thread-safe. */
void kjb_log_secret(const char *value);

/* Masks the secrets in msg with "***": registered values; the value of
 * any key=value whose key ends in "password", "passwd" or "secret"
 * (conninfo password=, quoted or not; sasl.password=, ssl.key.password=,
 * sasl.oauthbearer.client.secret=; ?password= in a URI); the password of
 * a URI's user:password@; the credentials after "Authorization:" and after
 * "Bearer ". Keys and schemes match in any case.
 * Returns a malloc'd masked copy, or NULL when there is nothing to mask,
 * in which case msg may be used as is (no allocation happens then). For
 * writers that bypass kjb_log, such as messages printed on exit. */
char *kjb_log_redact(const char *msg);

#define kjb_debug(...) kjb_log(KJB_LOG_DEBUG, __VA_ARGS__)
#define kjb_info(...) kjb_log(KJB_LOG_INFO, __VA_ARGS__)
#define kjb_warn(...) kjb_log(KJB_LOG_WARN, __VA_ARGS__)
#define kjb_error(...) kjb_log(KJB_LOG_ERROR, __VA_ARGS__)

#endif
