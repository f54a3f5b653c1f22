/* SQL migrations compiled in from schemas/sql/NNN_name.sql. */
#ifndef KJB_MIGRATIONS_H
#define KJB_MIGRATIONS_H

#include <stddef.h>

typedef struct {
  const char *name; /* file name, e.g. "001_init.sql" */
  const char *sql;
} kjb_migration;

extern const kjb_migration kjb_migrations[];
extern const size_t kjb_migrations_count;

#endif
