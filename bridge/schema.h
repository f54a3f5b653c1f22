/* Avro schemas compiled into a model the decoder walks: every type,
 * named types, field defaults, aliases and logical types. The schema is
 * first validated by avro-c's parser, then compiled from its JSON. */
#ifndef KJB_SCHEMA_H
#define KJB_SCHEMA_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "util.h"
#include "value.h"

typedef enum {
  KJB_S_NULL,
  KJB_S_BOOLEAN,
  KJB_S_INT,
  KJB_S_LONG,
  KJB_S_FLOAT,
  KJB_S_DOUBLE,
  KJB_S_BYTES,
  KJB_S_STRING,
  KJB_S_RECORD,
  KJB_S_ENUM,
  KJB_S_ARRAY,
  KJB_S_MAP,
  KJB_S_UNION,
  KJB_S_FIXED
} kjb_stype;

typedef enum {
  KJB_L_NONE,
  KJB_L_DECIMAL,
  KJB_L_UUID,
  KJB_L_DATE,
  KJB_L_TIME_MILLIS,
  KJB_L_TIME_MICROS,
  KJB_L_TIMESTAMP_MILLIS,
  KJB_L_TIMESTAMP_MICROS,
  KJB_L_LOCAL_TIMESTAMP_MILLIS,
  KJB_L_LOCAL_TIMESTAMP_MICROS,
  KJB_L_DURATION
} kjb_logical;

typedef struct kjb_snode kjb_snode;

typedef struct {
  char *name;
  char **aliases;
  size_t naliases;
  kjb_snode *type;
  kjb_value *default_value; /* NULL when the field has no default */
} kjb_sfield;

struct kjb_snode {
  kjb_stype type;
  kjb_logical logical;  /* KJB_L_NONE when absent or not valid here */
  int precision, scale; /* decimal */
  char *fullname;       /* named types: record, enum, fixed */
  char **aliases;       /* named types, full names */
  size_t naliases;
  kjb_sfield *fields; /* record */
  size_t nfields;
  char **symbols; /* enum */
  size_t nsymbols;
  int enum_default;     /* index into symbols, -1 when none */
  size_t fixed_size;    /* fixed */
  kjb_snode *items;     /* array items, map values */
  kjb_snode **branches; /* union */
  size_t nbranches;
};

typedef struct kjb_schema kjb_schema;

/* Parses and compiles a schema from JSON text. Returns NULL and fills err
 * (KJB_ESCHEMA, with avro-c's or our reason) when it is invalid. */
kjb_schema *kjb_schema_parse(const char *json, size_t len, kjb_err *err);
/* The largest schema file kjb_schema_load reads. */
#define KJB_SCHEMA_MAX_BYTES (1024 * 1024)

/* Same, from a regular file of at most KJB_SCHEMA_MAX_BYTES; the error
 * message starts with the path ("x.avsc: not a regular file"). */
kjb_schema *kjb_schema_load(const char *path, kjb_err *err);
void kjb_schema_free(kjb_schema *s);

const kjb_snode *kjb_schema_root(const kjb_schema *s);
/* The avro-c schema the JSON parsed to; owned by s. */
avro_schema_t kjb_schema_avro(const kjb_schema *s);
/* Parsing Canonical Form, owned by s. */
const char *kjb_schema_canonical(const kjb_schema *s);
/* CRC-64-AVRO (Rabin) fingerprint of the canonical form. */
uint64_t kjb_schema_fingerprint(const kjb_schema *s);
uint64_t kjb_crc64_avro(const void *buf, size_t len);

/* Checks that a dotted path names a field reachable through records
 * (descending through unions that contain a record). Returns 0, or
 * KJB_EMISSING_FIELD with the first segment that is absent. */
int kjb_schema_check_path(const kjb_schema *s, const char *path, kjb_err *err);

/* A compiled (writer, reader) resolution. Building it checks the two
 * schemas are compatible by Avro's resolution rules; on mismatch returns
 * NULL with KJB_ESCHEMA_MISMATCH naming the field path. Holds pointers
 * into both schemas: free it before them. */
typedef struct kjb_resolver kjb_resolver;

kjb_resolver *kjb_resolver_new(const kjb_schema *writer, const kjb_schema *reader, kjb_err *err);
void kjb_resolver_free(kjb_resolver *r);

/* Decodes one Avro binary datum written with r's writer schema into
 * natural JSON values shaped by r's reader schema, allocating from the
 * arena. Every byte must be consumed. Errors (permanent): KJB_ETRUNCATED,
 * KJB_ETRAILING_BYTES, KJB_EINVALID_UTF8, KJB_EBAD_LENGTH, KJB_EBAD_VARINT,
 * KJB_EBAD_UNION_INDEX, KJB_EBAD_ENUM_INDEX, KJB_EBAD_VALUE,
 * KJB_ESCHEMA_MISMATCH (a union branch or enum symbol with no reader
 * counterpart); messages name the byte offset (relative to buf) and the
 * field path, e.g. `field "customer.email": invalid utf-8 at byte 17`.
 * A claimed length larger than the bytes left is KJB_EBAD_LENGTH and
 * allocates nothing. */
int kjb_avro_decode(const kjb_resolver *r, const uint8_t *buf, size_t len, kjb_arena *arena,
                    kjb_value **out, kjb_err *err);

/* Where a datum stopped decoding: the failing byte (relative to buf, as
 * in the error message) and the field path ("customer.email",
 * "items[3].sku"; "" at the top level). */
typedef struct {
  size_t byte;
  char path[256];
} kjb_avro_stop;

/* Decodes like kjb_avro_decode (same return value, errors and limits),
 * but when the datum does not decode, keeps what was decoded before the
 * failure: *partial receives the records, arrays and maps the failure is
 * inside, each holding its members up to the failing one, which is
 * absent (reader fields the writer lacks are absent too: they were not
 * decoded); NULL when the failure leaves nothing (a bad top-level scalar).
 * *stop receives where it failed. On success *partial is the whole value
 * and *stop is untouched; trailing bytes keep the whole value, with
 * stop->byte the first trailing byte. Only failures cost more than
 * kjb_avro_decode: this is for inspecting a dead letter, not for the
 * ingest path. */
int kjb_avro_decode_partial(const kjb_resolver *r, const uint8_t *buf, size_t len, kjb_arena *arena,
                            kjb_value **partial, kjb_avro_stop *stop, kjb_err *err);

/* Encodes a JSON value (jansson) with schema s into Avro binary using
 * avro-c, appending to out. Accepts natural JSON: logical types either
 * as their underlying number or in the string form the decoder prints,
 * bytes/fixed as base64 strings, unions as the bare branch value (first
 * branch that accepts it) or as {"type": value}. Missing record fields
 * take their defaults. Errors: KJB_EBAD_JSON with the field path. */
struct json_t;
int kjb_avro_encode(const kjb_schema *s, const struct json_t *json, kjb_buf *out, kjb_err *err);

#endif
