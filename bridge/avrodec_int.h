/* Internals of the Avro decoder, one module over four files:
 * avrofmt.c (formatting of logical types), avroresolve.c (resolution
 * plans), avrodec.c (decoding) and avrodefault.c (field defaults).
 * Other modules use schema.h; the Avro core's shared internals are in
 * avro_internal.h.
 *
 * Lifetimes: decoded values live in the caller's arena, strings copied
 * from the input included, so the input buffer may go away after
 * decoding. They may also point at memory owned by the reader schema
 * (field names, enum symbols, field defaults, which are shared between
 * records and must not be modified), so the reader schema must outlive
 * the values. */
#ifndef KJB_AVRODEC_INT_H
#define KJB_AVRODEC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "avro_internal.h"
#include "schema.h"

/* Nesting of records, arrays and maps a datum may have; deeper data is
 * rejected rather than risking the stack. */
#define KJB_AVRO_MAX_DEPTH 128

/* ---- Formatting of logical types (avrofmt.c) ---- */

/* What a formatter returns: done, the value is out of the type's range,
 * or the arena ran out. */
enum { KJB_FMT_OK = 0, KJB_FMT_RANGE = 1, KJB_FMT_NOMEM = 2 };

/* The logical type's name for messages ("timestamp-millis"; "value" for
 * none). */
const char *kjb_avrodec_logical_name(kjb_logical l);

/* Sets out to a string copy of s[0..n) in a. Returns a KJB_FMT_ code. */
int kjb_avrodec_set_str(kjb_arena *a, const char *s, size_t n, kjb_value *out);

/* Sets out to d, as a float's shortest form when is_float. */
void kjb_avrodec_set_real(kjb_value *out, double d, int is_float);

/* Formats an int or long v according to the reader type r (a date, time
 * or timestamp as its RFC 3339 string, else the number). Returns a
 * KJB_FMT_ code. */
int kjb_avrodec_fmt_int(kjb_arena *a, const kjb_snode *r, int64_t v, kjb_value *out);

/* Formats bytes or fixed content according to the reader type (decimal,
 * duration, else base64). Returns a KJB_FMT_ code. */
int kjb_avrodec_fmt_bytes(kjb_arena *a, const kjb_snode *r, const uint8_t *p, size_t n,
                          kjb_value *out);

static inline uint32_t kjb_avrodec_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- Resolution plans (avroresolve.c), run by avrodec.c ---- */

typedef enum {
  KJB_OP_NULL,
  KJB_OP_BOOL,
  KJB_OP_INT,
  KJB_OP_INT_FLOAT,
  KJB_OP_INT_DOUBLE, /* KJB_OP_INT also covers int → long */
  KJB_OP_LONG,
  KJB_OP_LONG_FLOAT,
  KJB_OP_LONG_DOUBLE,
  KJB_OP_FLOAT,
  KJB_OP_FLOAT_DOUBLE,
  KJB_OP_DOUBLE,
  KJB_OP_BYTES,  /* writer bytes or string, reader bytes */
  KJB_OP_STRING, /* writer string or bytes, reader string */
  KJB_OP_FIXED,
  KJB_OP_ENUM,
  KJB_OP_ARRAY,
  KJB_OP_MAP,
  KJB_OP_RECORD,
  KJB_OP_WUNION /* writer union; a reader union is resolved away at build time */
} kjb_opcode;

typedef struct kjb_plan kjb_plan;

typedef struct {
  const kjb_sfield *wfield;
  const kjb_plan *p; /* NULL: a writer-only field, skipped */
  size_t out;        /* reader field index */
} kjb_rstep;

struct kjb_plan {
  kjb_opcode op;
  const kjb_snode *w, *r;
  const char *failed;        /* record plans: why resolution failed */
  const kjb_plan *items;     /* array items, map values */
  size_t item_min;           /* least bytes one writer item/entry takes */
  const kjb_plan **branches; /* writer union; NULL where unresolvable */
  const char **branch_err;
  kjb_rstep *steps; /* record, in writer field order */
  kjb_member *tmpl; /* record: reader names and defaults */
  int *enum_map;    /* writer symbol → reader symbol or -1 */
  size_t *sym_len;  /* reader symbol lengths */
};

struct kjb_resolver {
  kjb_arena *arena;
  const kjb_plan *root;
};

/* The least number of bytes a datum of writer type n occupies. */
size_t kjb_avrodec_min_size(const kjb_snode *n, int depth);

#endif
