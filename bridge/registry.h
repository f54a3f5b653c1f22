/* Confluent-compatible schema registry client (GET /schemas/ids/{id}). */
#ifndef KJB_REGISTRY_H
#define KJB_REGISTRY_H

#include <stdint.h>

#include "err.h"

typedef struct kjb_registry kjb_registry;

/* A client of the Confluent schema registry at url (trailing slashes
 * ignored). Returns NULL only when libcurl cannot make a handle. */
kjb_registry *kjb_registry_new(const char *url, int64_t timeout_us);
void kjb_registry_free(kjb_registry *r);

/* Fetches the schema text registered under id into *json (malloc'd,
 * caller frees). Returns 0; KJB_EUNKNOWN_SCHEMA_ID when the registry
 * says it has no such schema (404); KJB_EREGISTRY_UNAVAILABLE (transient)
 * when it cannot be reached, times out or answers 5xx. */
int kjb_registry_fetch(kjb_registry *r, int32_t id, char **json, kjb_err *err);

#endif
