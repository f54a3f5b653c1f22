/* Error codes and the error value passed up the pipeline.
 * Every failure is classified: permanent (dead letter / discard),
 * transient (retry later) or fatal (stop the process). */
#ifndef KJB_ERR_H
#define KJB_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* X(NAME, class, description). The NAME is also the DLQ error code
 * (`kjb.NAME`) for decoding and mapping failures. */
#define KJB_ERRNO_MAP(X)                                                   \
  X(NOMEM, KJB_FATAL, "out of memory")                                     \
  X(USAGE, KJB_FATAL, "usage error")                                       \
  X(CONFIG, KJB_FATAL, "configuration error")                              \
  X(IO, KJB_FATAL, "i/o error")                                            \
  X(SCHEMA, KJB_FATAL, "invalid schema")                                   \
  X(KAFKA, KJB_TRANSIENT, "kafka error")                                   \
  X(PG, KJB_TRANSIENT, "postgresql error")                                 \
  X(REGISTRY_UNAVAILABLE, KJB_TRANSIENT, "schema registry unavailable")    \
  X(BAD_MAGIC, KJB_PERMANENT, "bad magic byte")                            \
  X(SHORT_HEADER, KJB_PERMANENT, "record shorter than its framing header") \
  X(UNKNOWN_SCHEMA_ID, KJB_PERMANENT, "unknown schema id")                 \
  X(UNKNOWN_FINGERPRINT, KJB_PERMANENT, "unknown schema fingerprint")      \
  X(SCHEMA_MISMATCH, KJB_PERMANENT, "writer schema cannot be resolved")    \
  X(TRUNCATED, KJB_PERMANENT, "truncated record")                          \
  X(TRAILING_BYTES, KJB_PERMANENT, "trailing bytes after record")          \
  X(INVALID_UTF8, KJB_PERMANENT, "invalid utf-8 in string")                \
  X(BAD_LENGTH, KJB_PERMANENT, "bad length")                               \
  X(BAD_VARINT, KJB_PERMANENT, "bad variable-length integer")              \
  X(BAD_UNION_INDEX, KJB_PERMANENT, "bad union branch index")              \
  X(BAD_ENUM_INDEX, KJB_PERMANENT, "bad enum symbol index")                \
  X(BAD_VALUE, KJB_PERMANENT, "value out of range for its logical type")   \
  X(MISSING_FIELD, KJB_PERMANENT, "missing field")                         \
  X(BAD_TEMPLATE, KJB_PERMANENT, "bad unique_key template value")          \
  X(BAD_JSON, KJB_PERMANENT, "bad json")                                   \
  X(INTERNAL, KJB_FATAL, "internal error")

typedef enum { KJB_PERMANENT, KJB_TRANSIENT, KJB_FATAL } kjb_err_class;

typedef enum {
  KJB_OK = 0,
#define KJB_ERR_ENUM(name, cls, desc) KJB_E##name,
  KJB_ERRNO_MAP(KJB_ERR_ENUM)
#undef KJB_ERR_ENUM
      KJB_E__COUNT
} kjb_errcode;

/* An error travels up as a code plus a message that each layer may
 * prefix with context ("field \"a.b\": invalid utf-8 at byte 17"). */
typedef struct {
  kjb_errcode code;
  char msg[512];
} kjb_err;

/* Sets err (if not NULL) and returns -code, so callers can write
 * `return kjb_err_set(err, KJB_ETRUNCATED, "...")`. */
int kjb_err_set(kjb_err *err, kjb_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kjb_err_vset(kjb_err *err, kjb_errcode code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Prepends "<context>: " to err->msg. Returns -err->code. */
int kjb_err_prefix(kjb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void kjb_err_clear(kjb_err *err);

/* "TRUNCATED" for KJB_ETRUNCATED; "OK" for 0. */
const char *kjb_err_name(kjb_errcode code);
kjb_err_class kjb_err_classof(kjb_errcode code);
int kjb_err_is_transient(const kjb_err *err);

#endif
