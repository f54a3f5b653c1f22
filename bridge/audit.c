/* The audit trail: rows of kjb.audit, written and listed. */
#include "audit.h"

#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "util.h"

const char *kjb_audit_actor_problem(const char *s) {
  size_t n = strlen(s);
  if (kjb_utf8_invalid_at(s, n) >= 0)
    return "not valid UTF-8";
  if (n == 0)
    return "must not be empty";
  if (n > KJB_AUDIT_ACTOR_MAX)
    return "longer than 128 bytes";
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return "holds a control character";
  return NULL;
}

int kjb_audit_actor(const char *given, char *out, size_t cap, kjb_err *err) {
  if (given) {
    if (kjb_utf8_invalid_at(given, strlen(given)) >= 0)
      return kjb_err_set(err, KJB_EUSAGE, "bad --actor: not valid UTF-8");
    const char *why = kjb_audit_actor_problem(given);
    if (why) {
      int shown = (int)kjb_utf8_prefix(given, 64);
      return kjb_err_set(err, KJB_EUSAGE, "bad --actor \"%.*s%s\": %s", shown, given,
                         given[shown] ? "..." : "", why);
    }
    snprintf(out, cap, "%s", given);
    return 0;
  }
  /* The account the process runs as, which $USER may not be (sudo). */
  char buf[4096];
  struct passwd pw, *found = NULL;
  const char *user = NULL;
  if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) == 0 && found && found->pw_name[0])
    user = found->pw_name;
  else if (getenv("USER") && getenv("USER")[0])
    user = getenv("USER");
  if (user)
    snprintf(out, cap, "cli:%.*s", KJB_AUDIT_ACTOR_MAX - 4, user);
  else
    snprintf(out, cap, "cli:uid%u", (unsigned)geteuid());
  return 0;
}

int kjb_audit_record(kjb_store *s, const char *actor, const char *action, const char *params,
                     const char *result, int64_t *id, kjb_err *err) {
  const char *p[] = {actor, action, params, result};
  PGresult *r = kjb_store_query(s, "could not write the audit row",
                                "INSERT INTO audit (actor, action, params, result) "
                                "VALUES ($1::text, $2::text, $3::jsonb, $4::jsonb) RETURNING id",
                                4, p, err);
  if (!r)
    return -KJB_EPG;
  if (id)
    *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return 0;
}

int kjb_audit_finish(kjb_store *s, int64_t id, const char *result, kjb_err *err) {
  char idtext[24];
  snprintf(idtext, sizeof idtext, "%" PRId64, id);
  const char *p[] = {idtext, result};
  PGresult *r =
      kjb_store_query(s, "could not write the audit row",
                      "UPDATE audit SET result = $2::jsonb WHERE id = $1::bigint", 2, p, err);
  if (!r)
    return -KJB_EPG;
  PQclear(r);
  return 0;
}

enum { A_ID, A_AT, A_ACTOR, A_ACTION, A_PARAMS, A_RESULT, A_JSON, A_NCOLS = A_JSON };

/* The newest limit rows, newest first: the table's columns, then the row
 * as JSON text. */
static PGresult *newest(kjb_store *s, long limit, kjb_err *err) {
  char lim[24];
  snprintf(lim, sizeof lim, "%ld", limit > 0 ? limit : 50);
  const char *p[] = {lim};
  return kjb_store_query(
      s, "could not list the audit trail",
      "SELECT id, " KJB_SQL_TS("at") ", actor, action, params::text, result::text, "
                                     "json_build_object('id', id, 'at', " KJB_SQL_TS(
                                         "at") ", 'actor', actor, 'action', action, "
                                               "'params', params, 'result', result)::text "
                                               "FROM audit ORDER BY id DESC LIMIT $1::bigint",
      1, p, err);
}

/* The rows of r as a JSON array. */
static json_t *rows_json(const PGresult *r, kjb_err *err) {
  json_t *arr = json_array();
  for (int i = 0; i < PQntuples(r); i++) {
    json_t *o = json_loads(PQgetvalue(r, i, A_JSON), 0, NULL);
    if (!o) {
      json_decref(arr);
      kjb_err_set(err, KJB_EPG,
                  "could not list the audit trail: the database's JSON does not parse");
      return NULL;
    }
    json_array_append_new(arr, o);
  }
  return arr;
}

int kjb_audit_list_json(kjb_store *s, long limit, json_t **out, kjb_err *err) {
  *out = NULL;
  PGresult *r = newest(s, limit, err);
  if (!r)
    return -KJB_EPG;
  *out = rows_json(r, err);
  PQclear(r);
  return *out ? 0 : -KJB_EPG;
}

int kjb_audit_ls(kjb_store *s, long limit, int json, FILE *out, kjb_err *err) {
  PGresult *r = newest(s, limit, err);
  if (!r)
    return -KJB_EPG;
  int n = PQntuples(r);
  if (json) {
    json_t *arr = rows_json(r, err);
    PQclear(r);
    if (!arr)
      return -KJB_EPG;
    kjb_json_print_lines(out, arr);
    json_decref(arr);
    return 0;
  }
  static const char *const head[A_NCOLS] = {"ID", "AT", "ACTOR", "ACTION", "PARAMS", "RESULT"};
  static const size_t widths[A_NCOLS] = {20, 24, 40, 24, 60, 60};
  char **cells = kjb_xcalloc((size_t)(n + 1) * A_NCOLS, sizeof *cells);
  for (int c = 0; c < A_NCOLS; c++)
    cells[c] = kjb_xstrdup(head[c]);
  for (int i = 0; i < n; i++)
    for (int c = 0; c < A_NCOLS; c++) {
      const char *v = PQgetisnull(r, i, c) ? "-" : PQgetvalue(r, i, c);
      /* Whole seconds are enough to scan a list; --json has the rest. */
      char at[32];
      if (c == A_AT) {
        snprintf(at, sizeof at, "%.19sZ", v);
        v = at;
      }
      cells[(size_t)(i + 1) * A_NCOLS + c] = kjb_table_cell(v, widths[c]);
    }
  kjb_table_print(out, cells, (size_t)n + 1, A_NCOLS);
  for (size_t i = 0; i < (size_t)(n + 1) * A_NCOLS; i++)
    free(cells[i]);
  free(cells);
  PQclear(r);
  return 0;
}
