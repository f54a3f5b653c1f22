/* Small shared tools: a per-batch arena, a growable byte buffer, reading
 * a whole file, duration parsing, JSON string escaping and UTF-8
 * validation. */
#ifndef KJB_UTIL_H
#define KJB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* Allocation that cannot fail: out of memory aborts the process, as
 * there is nothing sane to do per record or per job without memory (the
 * policy of Redis' zmalloc and librdkafka's rd_malloc). Every heap
 * allocation outside libraries goes through these. */
void *kjb_xmalloc(size_t n);
void *kjb_xcalloc(size_t n, size_t size);
void *kjb_xrealloc(void *p, size_t n);
char *kjb_xstrdup(const char *s);
/* Copies the first n bytes of s (fewer when s ends sooner) and a NUL. */
char *kjb_xstrndup(const char *s, size_t n);

/* Grows the array p of *cap elements of elem bytes to hold at least need
 * elements, doubling its capacity (16 elements at first) so that appending
 * one at a time costs amortised constant time, and updates *cap. Returns
 * the array, moved or not; p may be NULL when *cap is 0. A size that
 * overflows size_t aborts as out of memory does. */
void *kjb_xgrow(void *p, size_t *cap, size_t need, size_t elem);

/* Bump allocator for per-record work; reset after each batch so a
 * long-running service cannot leak per message. Not thread-safe. */
typedef struct kjb_arena kjb_arena;

/* Out of memory aborts, as for kjb_xmalloc: arenas are made at startup
 * or per schema. */
kjb_arena *kjb_arena_new(size_t chunk_size);
void kjb_arena_free(kjb_arena *a);
/* Returns 8-byte aligned memory, or NULL when malloc fails: unlike the
 * kjb_x* helpers, so that the decoder can turn a record too large for
 * memory into an error of that record (KJB_ENOMEM). */
void *kjb_arena_alloc(kjb_arena *a, size_t n);
char *kjb_arena_strndup(kjb_arena *a, const char *s, size_t n);
/* Releases everything allocated since creation; keeps one chunk. */
void kjb_arena_reset(kjb_arena *a);
size_t kjb_arena_used(const kjb_arena *a);

/* Growable buffer, always NUL-terminated after its len bytes.
 * Caller-owned: kjb_buf_init / kjb_buf_close. Allocation failure aborts
 * the process (there is nothing sane to do per record without memory). */
typedef struct {
  char *data;
  size_t len;
  size_t cap;
} kjb_buf;

void kjb_buf_init(kjb_buf *b);
void kjb_buf_close(kjb_buf *b);
void kjb_buf_reset(kjb_buf *b);
void kjb_buf_reserve(kjb_buf *b, size_t extra);
void kjb_buf_append(kjb_buf *b, const void *p, size_t n);
void kjb_buf_puts(kjb_buf *b, const char *s);
void kjb_buf_putc(kjb_buf *b, char c);
void kjb_buf_printf(kjb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. s must be valid
 * UTF-8; control characters are escaped. */
void kjb_buf_json_str(kjb_buf *b, const char *s, size_t n);
void kjb_buf_base64(kjb_buf *b, const uint8_t *p, size_t n);

/* Text tables for the command line (`kjb jobs ls`, `kjb dlq ls`, ...). */

/* A table cell made of s: one line (control characters become spaces), at
 * most maxchars characters (>= 4), the last three "..." when shortened;
 * invalid UTF-8 is shown as is. The caller frees it. */
char *kjb_table_cell(const char *s, size_t maxchars);

/* Writes nrows rows of ncols cells (row-major; row 0 is the header) as
 * left-aligned columns two spaces apart, by characters rather than bytes,
 * without trailing blanks. */
void kjb_table_print(FILE *out, char *const *cells, size_t nrows, size_t ncols);

/* Reads the whole file at path into out (replacing what it held; the
 * caller has initialised it), NUL-terminated after its len bytes. Only a
 * regular file of at most max_bytes is read: a FIFO or device could block
 * or never end, so it is refused without being read. The file is opened
 * non-blocking and close-on-exec. Every file kjb reads whole (config,
 * schemas, TLS keys) comes through here.
 * Returns 0, or -KJB_EIO with err->msg holding only the reason, for the
 * caller to prefix with the path or its role: strerror(errno) ("No such
 * file or directory", "Is a directory"), "not a regular file", or
 * "larger than 1 MiB" (the limit, in MiB, KiB or bytes). */
int kjb_read_file(const char *path, size_t max_bytes, kjb_buf *out, kjb_err *err);

/* Returns the byte offset of the first invalid UTF-8 sequence in s, or -1
 * when all n bytes are valid (overlongs, surrogates and code points past
 * U+10FFFF are invalid). */
long kjb_utf8_invalid_at(const char *s, size_t n);

/* The length of the longest prefix of the string s that has at most max
 * bytes and does not end inside a UTF-8 sequence: for quoting part of
 * valid text in a message that must stay valid (JSON answers). */
size_t kjb_utf8_prefix(const char *s, size_t max);

/* Whether given (gl bytes, from a client) equals secret (sl bytes), in a
 * time that depends on gl alone: never on where they differ nor on the
 * secret's contents. Every byte counts, NUL bytes included. */
bool kjb_secret_equal(const char *given, size_t gl, const char *secret, size_t sl);

/* Parses a whole decimal integer in [min, max] into *out. Strict: an
 * optional '-' (only when min < 0), then digits with no leading zero
 * (except "0" itself); no spaces, '+', other trailing text or overflow.
 * Every integer kjb reads from a user (ids, limits, offsets, ports, config
 * values) goes through here. Returns 0, or -1 leaving *out unchanged. */
int kjb_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses an address: "host:port" or "[ipv6]:port", or also "host" and
 * "[ipv6]" when need_port is false. host (of hostcap bytes) receives the
 * host without brackets and *port the port, 0 to 65535 (read with
 * kjb_parse_i64), or -1 when there is none. A host is a DNS name or IPv4
 * address (letters, digits, ".", "-", "_", bytes of UTF-8) or, in
 * brackets, an IPv6 address (hex digits, ":", ".", then maybe "%zone").
 * Every address kjb reads from a user goes through here.
 * Returns 0, or -1 with err (KJB_ECONFIG) saying what is wrong and
 * quoting s: "invalid port in \"localhost:-1\" (expected 0 to 65535)". */
int kjb_hostport_parse(const char *s, bool need_port, char *host, size_t hostcap, int *port,
                       kjb_err *err);

/* Reads exactly n (at most 18) decimal digits at *s into *out and moves
 * *s past them; false, with *s unmoved, when any of them is not a digit
 * (fixed-width fields of dates and times). */
bool kjb_parse_digits(const char **s, int n, int64_t *out);

/* Parses a date and time "2026-11-21T10:00:00", with an optional
 * fraction of 1 to 9 digits (".5", ".123456789"; digits past the sixth
 * are dropped) and an optional zone ("Z", "+01:00", "-04:30"; none is
 * UTC), into microseconds since the epoch (negative before 1970). Only
 * dates and times that exist. Every point in time kjb reads from a user
 * (reset specs, --since and --until) goes through here. Returns 0, or -1
 * with *why saying what is wrong: "no such date", "no such time of day"
 * or "expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]". */
int kjb_datetime_parse(const char *s, int64_t *out_us, const char **why);

/* Parses "250ms", "30s", "5m", "1h", "2d", "10us" (an integer or
 * decimal number and a unit) into microseconds. Returns 0 or -1. */
int kjb_duration_parse(const char *s, int64_t *out_us);

/* Formats microseconds since the epoch as RFC 3339 UTC with the given
 * number of fractional digits (3 or 6): "2026-11-21T10:00:00.123Z". */
void kjb_buf_rfc3339(kjb_buf *b, int64_t epoch_us, int frac_digits);

/* v in decimal, without printf (hot paths): into buf (21 bytes at
 * least; NUL-terminated, returns the length), or appended to b. */
size_t kjb_fmt_i64(char *buf, int64_t v);
void kjb_buf_put_i64(kjb_buf *b, int64_t v);

/* The same with 3 fractional digits as a new jansson string (the caller
 * owns the reference), for timestamps in JSON answers. */
struct json_t *kjb_json_rfc3339(int64_t epoch_us);

/* Prints a JSON array as every --json list is laid out: "[", one element
 * a line (keys in order) separated by ",", "]"; "[]" when empty. */
void kjb_json_print_lines(FILE *out, const struct json_t *arr);

/* Days since 1970-01-01 to a proleptic Gregorian civil date. */
void kjb_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

/* The inverse: days since 1970-01-01 of y-m-d into *days. Returns 0, or -1
 * when there is no such date (month 13, February 30th, February 29th of a
 * common year). */
int kjb_civil_to_days(int64_t y, int64_t m, int64_t d, int64_t *days);

/* Monotonic and wall clocks in microseconds. */
int64_t kjb_now_mono_us(void);
int64_t kjb_now_wall_us(void);

#endif
