/* A decoded Avro record as natural JSON values: the tree the decoder
 * builds in a per-batch arena and the mapper reads. */
#ifndef KJB_VALUE_H
#define KJB_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum {
  KJB_V_NULL,
  KJB_V_BOOL,
  KJB_V_INT,    /* int, long, and logical types that stay numeric */
  KJB_V_FLOAT,  /* Avro float: printed as the shortest float32 repr */
  KJB_V_DOUBLE, /* Avro double: printed as the shortest double repr */
  /* Strings, enums, base64 bytes/fixed, formatted logical types, and "NaN" /
   * "Infinity" / "-Infinity". */
  KJB_V_STRING,
  KJB_V_ARRAY,
  KJB_V_OBJECT /* records and maps; members in schema / wire order */
} kjb_vtype;

typedef struct kjb_value kjb_value;

typedef struct {
  const char *key;
  size_t key_len;
  kjb_value *val;
} kjb_member;

struct kjb_value {
  kjb_vtype type;
  union {
    bool b;
    int64_t i;
    double d;
    struct {
      const char *ptr; /* valid UTF-8, not NUL-terminated necessarily */
      size_t len;
    } s;
    struct {
      kjb_value **items;
      size_t n;
    } arr;
    struct {
      kjb_member *members;
      size_t n;
    } obj;
  } u;
};

/* Appends v as compact JSON. */
void kjb_value_to_json(const kjb_value *v, kjb_buf *out);

/* Follows a dotted path ("customer.email") through objects. Returns NULL
 * when a segment is absent or a non-object is in the way. */
const kjb_value *kjb_value_path(const kjb_value *v, const char *path);

/* kjb_value_path over the len bytes at path (a template's "${...}"). */
const kjb_value *kjb_value_path_n(const kjb_value *v, const char *path, size_t len);

/* Appends a scalar as template text: strings raw, numbers as in JSON,
 * booleans true/false. Returns -1 (appending nothing) for null, arrays
 * and objects. */
int kjb_value_to_text(const kjb_value *v, kjb_buf *out);

#endif
