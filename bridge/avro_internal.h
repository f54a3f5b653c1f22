/* Internals shared by the Avro core (schema.c, avrodec.c, avroenc.c);
 * other modules use schema.h. */
#ifndef KJB_AVRO_INTERNAL_H
#define KJB_AVRO_INTERNAL_H

#include <jansson.h>

#include "schema.h"

/* Converts a field default, written in the Avro spec's JSON default
 * encoding for node n (bytes and fixed as strings of code points 0-255,
 * unions as a value of the first branch), into the natural value the
 * decoder would produce for n: formatted logical types, base64 bytes,
 * enum symbols. Allocates from a; the result may point at strings owned
 * by n (enum symbols, field names). Returns 0, or KJB_ESCHEMA with the
 * reason (without a field prefix) and leaves *out unset. */
int kjb_avro_default_value(const kjb_snode *n, const json_t *def, kjb_arena *a,
                           kjb_value **out, kjb_err *err);

/* The name by which a union branch of type n is selected in JSON
 * ("string", "array", or a named type's full name) and in messages. */
const char *kjb_avro_type_name(const kjb_snode *n);

#endif
