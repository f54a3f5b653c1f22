/* The schema catalog: every schema a topic may be written with (files in
 * schemas.dir, schemas.ids, the registry) and each topic's reader schema;
 * and record decoding for the three framings. */
#ifndef KJB_CATALOG_H
#define KJB_CATALOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "err.h"
#include "schema.h"
#include "util.h"
#include "value.h"

typedef struct kjb_catalog kjb_catalog;

/* Loads and checks every schema the configuration refers to: the files in
 * schemas.dir, schemas.ids, each topic's reader schema, and that every
 * args path and unique_key path exists in the reader schema. cfg must
 * outlive the catalog. Errors are "<config>:<line>: <what>" (KJB_ECONFIG)
 * or "<schema file>: <why>" (KJB_ESCHEMA). */
kjb_catalog *kjb_catalog_new(const kjb_config *cfg, kjb_err *err);
void kjb_catalog_free(kjb_catalog *c);

const kjb_schema *kjb_catalog_reader(const kjb_catalog *c, const kjb_topic_cfg *t);

/* The id under which schemas.ids lists the topic's reader schema, or -1. */
int kjb_catalog_id_of(const kjb_catalog *c, const kjb_topic_cfg *t);

/* Resolves a schema id through schemas.ids, then the registry (cached).
 * KJB_EUNKNOWN_SCHEMA_ID or KJB_EREGISTRY_UNAVAILABLE (transient). */
int kjb_catalog_by_id(kjb_catalog *c, int32_t id, const kjb_schema **out, kjb_err *err);

/* Decodes a record value of topic t according to its framing into natural
 * JSON values in the arena. Errors are permanent (dead letter) unless
 * kjb_err_is_transient(err). Messages say where: "byte 0: bad magic byte
 * 0x07, expected 0x00". */
int kjb_decode_record(kjb_catalog *c, const kjb_topic_cfg *t, const uint8_t *buf, size_t len,
                      kjb_arena *arena, kjb_value **out, kjb_err *err);

/* For a record value of topic t that does not decode, what its bytes
 * hold before the failure (kjb_avro_decode_partial), decoded with the
 * schema they were written with alone (the one the schema id or
 * fingerprint names; the topic's schema for raw records), so that it
 * shows what the bytes say whatever the reader schema. Returns 1 when
 * the bytes stop decoding: *partial is the value before the failure (a
 * new reference, NULL when nothing decoded before it), *stop where it
 * failed (the byte counted from the start of buf, framing included) and
 * err why; 0 when they decode whole (*partial is the whole value); or a
 * negative code when there is nothing to decode (a framing error, an
 * unknown schema id), with err saying why and *partial NULL. */
struct json_t;
int kjb_decode_partial(kjb_catalog *c, const kjb_topic_cfg *t, const uint8_t *buf, size_t len,
                       struct json_t **partial, kjb_avro_stop *stop, kjb_err *err);

/* Writes the framing header for a record of topic t written with the
 * topic's reader schema (confluent: schema_id, or the id from schemas.ids
 * when schema_id < 0). */
int kjb_frame_header(kjb_catalog *c, const kjb_topic_cfg *t, int schema_id, kjb_buf *out,
                     kjb_err *err);

/* Prints the resolved topic -> job mapping (check-config). */
void kjb_catalog_print(const kjb_catalog *c, FILE *out);

#endif
