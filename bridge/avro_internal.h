/* Internals shared by the Avro core (schema.c, the decoder behind
 * avrodec_int.h, avroenc.c); other modules use schema.h. */
#ifndef KJB_AVRO_INTERNAL_H
#define KJB_AVRO_INTERNAL_H

#include <jansson.h>
#include <stdarg.h>

#include "schema.h"

/* Converts a field default, written in the Avro spec's JSON default
 * encoding for node n (bytes and fixed as strings of code points 0-255,
 * unions as a value of the first branch), into the natural value the
 * decoder would produce for n: formatted logical types, base64 bytes,
 * enum symbols. Allocates from a; the result may point at strings owned
 * by n (enum symbols, field names). Returns 0, or KJB_ESCHEMA with the
 * reason (without a field prefix) and leaves *out unset. */
int kjb_avro_default_value(const kjb_snode *n, const json_t *def, kjb_arena *a, kjb_value **out,
                           kjb_err *err);

/* The name by which a union branch of type n is selected in JSON
 * ("string", "array", or a named type's full name) and in messages. */
const char *kjb_avro_type_name(const kjb_snode *n);

/* What a JSON value is, for messages: "an object", "a string", "null". */
const char *kjb_avro_json_kind(const json_t *j);

/* Where in a schema or a datum a walk is, for messages:
 * "customer.emails[2]". Caller-owned; start zeroed. The text is cut to
 * fit, each segment to 255 bytes. */
typedef struct {
  char text[512];
  size_t len;
} kjb_avro_path;

/* Appends a printf-formatted segment, after a '.' unless the path is empty
 * or the segment starts with '['. Returns the length to give
 * kjb_avro_path_pop to remove it again. */
size_t kjb_avro_path_push(kjb_avro_path *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kjb_avro_path_pop(kjb_avro_path *p, size_t old);

/* Sets err to code with the formatted message, prefixed with
 * `field "<path>": ` when the path is not empty. Returns -code. */
int kjb_avro_path_err(const kjb_avro_path *p, kjb_err *err, kjb_errcode code, const char *fmt,
                      va_list ap) __attribute__((format(printf, 4, 0)));

#endif
