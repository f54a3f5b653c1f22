/* Paused kinds and queues (see pause.h). */
#include "pause.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

const char *kjb_pause_scope_name(kjb_pause_scope scope) {
  return scope == KJB_PAUSE_KIND ? "kind" : "queue";
}

/* The statements by scope: the column is a name from this file only. */
static const char *const PAUSE_SQL[] = {
    "WITH old AS (SELECT " KJB_SQL_TS(
        "paused_at") " AS since, paused_by FROM pauses WHERE kind = $1), "
                     "new AS (INSERT INTO pauses (kind, paused_by) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM "
                     "old) ON CONFLICT DO NOTHING RETURNING 1) "
                     "SELECT (SELECT count(*) FROM new), (SELECT since FROM old), (SELECT paused_by FROM old)",
    "WITH old AS (SELECT " KJB_SQL_TS(
        "paused_at") " AS since, paused_by FROM pauses WHERE queue = $1), "
                     "new AS (INSERT INTO pauses (queue, paused_by) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM "
                     "old) ON CONFLICT DO NOTHING RETURNING 1) "
                     "SELECT (SELECT count(*) FROM new), (SELECT since FROM old), (SELECT paused_by FROM old)"};
static const char *const RESUME_SQL[] = {
    "WITH gone AS (DELETE FROM pauses WHERE kind = $1 RETURNING " KJB_SQL_TS(
        "paused_at") " AS since, "
                     "paused_by) SELECT (SELECT count(*) FROM gone), (SELECT since FROM gone), "
                     "(SELECT paused_by FROM gone)",
    "WITH gone AS (DELETE FROM pauses WHERE queue = $1 RETURNING " KJB_SQL_TS(
        "paused_at") " AS since, "
                     "paused_by) SELECT (SELECT count(*) FROM gone), (SELECT since FROM gone), "
                     "(SELECT paused_by FROM gone)"};

static void copy_col(char *out, size_t cap, const PGresult *r, int col) {
  snprintf(out, cap, "%s", PQgetisnull(r, 0, col) ? "" : PQgetvalue(r, 0, col));
}

int kjb_pause_set(kjb_store *s, kjb_pause_scope scope, const char *name, bool pause,
                  const char *actor, kjb_pause_result *res, kjb_err *err) {
  memset(res, 0, sizeof *res);
  if (kjb_store_exec(s, "BEGIN", err) < 0)
    return -KJB_EPG;
  const char *params[] = {name, actor};
  PGresult *r =
      kjb_store_query(s, pause ? "could not pause" : "could not resume",
                      pause ? PAUSE_SQL[scope] : RESUME_SQL[scope], pause ? 2 : 1, params, err);
  if (!r)
    goto fail;
  /* A pause counts a new row; a resume the row it removed. */
  res->changed = strcmp(PQgetvalue(r, 0, 0), "0") != 0;
  copy_col(res->since, sizeof res->since, r, 1);
  copy_col(res->by, sizeof res->by, r, 2);
  PQclear(r);
  json_t *p = json_pack("{s:s}", kjb_pause_scope_name(scope), name);
  json_t *o = json_pack("{s:s}", "outcome",
                        res->changed ? "done"
                        : pause      ? "already_paused"
                                     : "not_paused");
  char *ptext = json_dumps(p, JSON_COMPACT), *otext = json_dumps(o, JSON_COMPACT);
  int rc = kjb_audit_record(s, actor, pause ? KJB_AUDIT_JOBS_PAUSE : KJB_AUDIT_JOBS_RESUME,
                            ptext ? ptext : "{}", otext ? otext : "{}", NULL, err);
  free(ptext);
  free(otext);
  json_decref(p);
  json_decref(o);
  if (rc < 0 || kjb_store_exec(s, "COMMIT", err) < 0)
    goto fail;
  return 0;
fail:;
  kjb_err ignored;
  kjb_store_exec(s, "ROLLBACK", &ignored);
  return -KJB_EPG;
}

json_t *kjb_pause_list(kjb_store *s, kjb_err *err) {
  PGresult *r = kjb_store_query(
      s, "could not read the pauses",
      "SELECT kind, queue, " KJB_SQL_TS("paused_at") ", paused_by "
                                                     "FROM pauses ORDER BY paused_at, kind, queue",
      0, NULL, err);
  if (!r)
    return NULL;
  json_t *list = json_array();
  for (int i = 0; i < PQntuples(r); i++) {
    int queue = PQgetisnull(r, i, 0);
    json_array_append_new(list, json_pack("{s:s, s:s, s:s}", queue ? "queue" : "kind",
                                          PQgetvalue(r, i, queue ? 1 : 0), "since",
                                          PQgetvalue(r, i, 2), "by", PQgetvalue(r, i, 3)));
  }
  PQclear(r);
  return list;
}

void kjb_pause_print(const json_t *list, FILE *out) {
  size_t i;
  const json_t *p;
  json_array_foreach(list, i, p) {
    const char *scope = json_object_get(p, "kind") ? "kind" : "queue";
    fprintf(out, "paused: %s %s since %s by %s\n", scope,
            json_string_value(json_object_get(p, scope)),
            json_string_value(json_object_get(p, "since")),
            json_string_value(json_object_get(p, "by")));
  }
}

void kjb_pause_gauges(const kjb_config *cfg, const json_t *list) {
  for (size_t h = 0; h < cfg->nhandlers; h++) {
    const char *kind = cfg->handlers[h].kind;
    int paused = 0;
    size_t i;
    const json_t *p;
    json_array_foreach(list, i, p) {
      const char *k = json_string_value(json_object_get(p, "kind"));
      paused |= k && strcmp(k, kind) == 0;
    }
    kjb_gauge_set("kjb_paused", "Whether the kind is paused (kjb jobs pause), 1 or 0.", paused,
                  "kind", kind, NULL);
  }
}
