/* kjb dlq edit (see dlqedit.h). */
#include "dlqedit.h"

#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "catalog.h"
#include "dlq.h"
#include "dlqindex.h"
#include "record.h"
#include "schema.h"
#include "util.h"

/* Where the dead letter lies, from its row. */
typedef struct {
  char *dlq_topic;
  int32_t dlq_partition;
  int64_t dlq_offset;
} where;

static int find(kjb_store *s, int64_t id, where *w, kjb_err *err) {
  char idtext[24];
  snprintf(idtext, sizeof idtext, "%" PRId64, id);
  const char *params[] = {idtext};
  PGresult *res = kjb_store_query(
      s, "could not read dead letter",
      "SELECT dlq_topic, dlq_partition, dlq_offset FROM dead_letters WHERE id = $1::bigint", 1,
      params, err);
  if (!res)
    return -KJB_EPG;
  int rc = 0;
  if (PQntuples(res) != 1)
    rc = kjb_err_set(err, KJB_EUSAGE, "no dead letter %" PRId64, id);
  else
    *w = (where){kjb_xstrdup(PQgetvalue(res, 0, 0)),
                 (int32_t)strtol(PQgetvalue(res, 0, 1), NULL, 10),
                 strtoll(PQgetvalue(res, 0, 2), NULL, 10)};
  PQclear(res);
  return rc;
}

/* The corrected value, framed for topic t. */
static int encode(kjb_catalog *cat, const kjb_topic_cfg *t, const kjb_dlq_edit_opts *o,
                  kjb_buf *out, json_t **doc, kjb_err *err) {
  json_error_t je;
  *doc = json_loadb(o->value, o->value_len, 0, &je);
  if (!*doc)
    return kjb_err_set(err, KJB_EUSAGE, "%s: not JSON: %s (line %d, column %d)", o->source, je.text,
                       je.line, je.column);
  int rc = kjb_frame_header(cat, t, -1, out, err);
  if (rc < 0)
    return rc;
  kjb_err why;
  if (kjb_avro_encode(kjb_catalog_reader(cat, t), *doc, out, &why) < 0)
    return kjb_err_set(err, KJB_EUSAGE, "%s: does not fit the reader schema of \"%s\": %s",
                       o->source, t->topic, why.msg);
  return 0;
}

static int audit(kjb_store *s, const kjb_dlq_edit_opts *o, const json_t *doc,
                 const kjb_dlq_edit_result *res, kjb_err *err) {
  json_t *params = json_pack("{s:I, s:O}", "id", (json_int_t)o->id, "value", doc);
  json_t *result =
      json_pack("{s:I, s:I}", "jobs", (json_int_t)res->jobs, "inserted", (json_int_t)res->inserted);
  char *p = json_dumps(params, JSON_COMPACT), *r = json_dumps(result, JSON_COMPACT);
  int rc = kjb_audit_record(s, o->actor, KJB_AUDIT_DLQ_EDIT, p ? p : "{}", r ? r : "{}", NULL, err);
  free(p);
  free(r);
  json_decref(params);
  json_decref(result);
  return rc;
}

int kjb_dlq_edit(const kjb_config *cfg, kjb_store *s, const kjb_dlq_edit_opts *o,
                 kjb_dlq_edit_result *res, kjb_err *err) {
  *res = (kjb_dlq_edit_result){0};
  where w = {0};
  kjb_dlq_reader *reader = NULL;
  rd_kafka_message_t *m = NULL;
  kjb_catalog *cat = NULL;
  json_t *doc = NULL;
  kjb_arena *arena = kjb_arena_new(1 << 16);
  kjb_rows rows;
  kjb_rows_init(&rows);
  kjb_buf value;
  kjb_buf_init(&value);
  unsigned char *is_new = NULL;
  int rc = find(s, o->id, &w, err);
  if (rc < 0)
    goto out;
  if (!(reader = kjb_dlq_reader_new(cfg, err))) {
    rc = -(int)err->code;
    goto out;
  }
  rc = kjb_dlq_reader_get(reader, w.dlq_topic, w.dlq_partition, w.dlq_offset, 15000, &m, err);
  if (rc != 0) {
    rc = -KJB_EKAFKA;
    goto out;
  }
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
    h = NULL;
  kjb_dead_letter dl;
  if ((rc = kjb_dlq_headers_parse(h, arena, &dl, err)) < 0)
    goto out;
  const kjb_topic_cfg *t = kjb_config_topic(cfg, dl.topic);
  if (!t) {
    rc = kjb_err_set(err, KJB_EUSAGE,
                     "dead letter %" PRId64 " comes from \"%s\", which is not in "
                     "the configuration",
                     o->id, dl.topic);
    goto out;
  }
  if (!(cat = kjb_catalog_new(cfg, err))) {
    rc = -(int)err->code;
    goto out;
  }
  if ((rc = encode(cat, t, o, &value, &doc, err)) < 0)
    goto out;
  kjb_record rec = kjb_record_of_dead_letter(t, &dl, m, h);
  rec.value = value.data;
  rec.len = value.len;
  const char *stage;
  if ((rc = kjb_record_to_jobs(cat, t, &rec, arena, &rows, &stage, err)) < 0)
    goto out;
  is_new = kjb_xcalloc(rows.n + 1, 1);
  if ((rc = kjb_store_insert_marked(s, rows.rows, rows.n, o->dry_run, is_new, err)) < 0)
    goto out;
  res->jobs = rows.n;
  for (size_t i = 0; i < rows.n; i++) {
    res->inserted += is_new[i];
    if (o->out)
      fprintf(o->out, "%s%s %s%s\n", o->dry_run ? "dry run: " : "", rows.rows[i].kind,
              rows.rows[i].args_json, is_new[i] ? "" : " (exists already)");
  }
  if (o->dry_run)
    goto out;
  kjb_dlq_replayed done = {w.dlq_topic, w.dlq_partition, w.dlq_offset, NULL};
  if ((rc = kjb_store_exec(s, "BEGIN", err)) < 0)
    goto out;
  if ((rc = kjb_dlqindex_mark_replayed(s, &done, 1, true, err)) < 0 ||
      (rc = audit(s, o, doc, res, err)) < 0 || (rc = kjb_store_exec(s, "COMMIT", err)) < 0) {
    kjb_err ignored;
    kjb_store_exec(s, "ROLLBACK", &ignored);
  }
out:
  free(is_new);
  json_decref(doc);
  kjb_buf_close(&value);
  kjb_rows_close(&rows);
  kjb_arena_free(arena);
  kjb_catalog_free(cat);
  if (m)
    rd_kafka_message_destroy(m);
  kjb_dlq_reader_free(reader);
  free(w.dlq_topic);
  return rc;
}
