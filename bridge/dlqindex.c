/* The dead-letter index (see dlqindex.h): rows of kjb.dead_letters written,
 * listed, shown, counted, ignored and rebuilt from a DLQ topic. */
#include "dlqindex.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "audit.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "progress.h"
#include "util.h"
#include "value.h"

/* ---- entries as JSON ------------------------------------------------- */

/* Text that jsonb can hold: valid UTF-8 (the valid prefix of anything
 * else; messages may quote a record's bytes), or null. */
static void json_text(kjb_buf *b, const char *s) {
  if (!s) {
    kjb_buf_puts(b, "null");
    return;
  }
  size_t n = strlen(s);
  long bad = kjb_utf8_invalid_at(s, n);
  kjb_buf_json_str(b, s, bad < 0 ? n : (size_t)bad);
}

static void entry_json(kjb_buf *b, const kjb_dlq_entry *e) {
  kjb_buf_puts(b, "{\"dlq_topic\":");
  json_text(b, e->dlq_topic);
  kjb_buf_printf(b, ",\"dlq_partition\":%d,\"dlq_offset\":%" PRId64 ",\"source_topic\":",
                 (int)e->dlq_partition, e->dlq_offset);
  json_text(b, e->source_topic);
  kjb_buf_printf(b, ",\"source_partition\":%d,\"source_offset\":%" PRId64 ",\"key\":",
                 (int)e->source_partition, e->source_offset);
  if (e->key) {
    kjb_buf_putc(b, '"');
    kjb_buf_base64(b, e->key, e->key_len);
    kjb_buf_putc(b, '"');
  } else {
    kjb_buf_puts(b, "null");
  }
  kjb_buf_puts(b, ",\"reason\":");
  json_text(b, e->reason);
  kjb_buf_puts(b, ",\"stage\":");
  json_text(b, e->stage);
  kjb_buf_puts(b, ",\"message\":");
  json_text(b, e->message);
  kjb_buf_puts(b, ",\"consumer_group\":");
  json_text(b, e->consumer_group);
  if (e->original_timestamp >= 0)
    kjb_buf_printf(b, ",\"original_timestamp\":%" PRId64, e->original_timestamp);
  else
    kjb_buf_puts(b, ",\"original_timestamp\":null");
  kjb_buf_printf(b, ",\"dead_lettered_at\":%" PRId64 ",\"value_size\":%zu}", e->dead_lettered_at,
                 e->value_size);
}

/* The columns an entry sets, and the same read back from a JSON array of
 * entry_json objects in $1. */
#define ENTRY_COLUMNS                                                                     \
  "dlq_topic, dlq_partition, dlq_offset, source_topic, source_partition, source_offset, " \
  "key, reason, stage, message, consumer_group, original_timestamp, dead_lettered_at, "   \
  "value_size"
#define ENTRY_SELECT                                                                          \
  "SELECT x.dlq_topic, x.dlq_partition, x.dlq_offset, x.source_topic, x.source_partition, "   \
  "x.source_offset, decode(x.key, 'base64'), x.reason, x.stage, x.message, "                  \
  "x.consumer_group, timestamptz 'epoch' + x.original_timestamp * interval '1 millisecond', " \
  "timestamptz 'epoch' + x.dead_lettered_at * interval '1 microsecond', x.value_size "        \
  "FROM jsonb_to_recordset($1::jsonb) AS x(dlq_topic text, dlq_partition int, "               \
  "dlq_offset bigint, source_topic text, source_partition int, source_offset bigint, "        \
  "key text, reason text, stage text, message text, consumer_group text, "                    \
  "original_timestamp bigint, dead_lettered_at bigint, value_size int) "

/* What a dead letter sent again changes in its row. */
#define ENTRY_UPDATE                                                           \
  "dlq_partition = EXCLUDED.dlq_partition, dlq_offset = EXCLUDED.dlq_offset, " \
  "key = EXCLUDED.key, reason = EXCLUDED.reason, stage = EXCLUDED.stage, "     \
  "message = EXCLUDED.message, consumer_group = EXCLUDED.consumer_group, "     \
  "original_timestamp = EXCLUDED.original_timestamp, "                         \
  "dead_lettered_at = EXCLUDED.dead_lettered_at, value_size = EXCLUDED.value_size"

/* ---- COPY's binary format -------------------------------------------- */

/* PostgreSQL's timestamps count microseconds from 2000-01-01 UTC. */
#define PG_EPOCH_US 946684800000000LL

static void put_be(kjb_buf *b, uint64_t v, int bytes) {
  char t[8];
  for (int i = bytes; i-- > 0; v >>= 8)
    t[i] = (char)(v & 0xff);
  kjb_buf_append(b, t, (size_t)bytes);
}

static void put_field(kjb_buf *b, const void *p, size_t n) {
  put_be(b, n, 4);
  kjb_buf_append(b, p, n);
}

static void put_null(kjb_buf *b) { put_be(b, 0xffffffffu, 4); }

static void put_int4(kjb_buf *b, int32_t v) {
  put_be(b, 4, 4);
  put_be(b, (uint32_t)v, 4);
}

static void put_int8(kjb_buf *b, int64_t v) {
  put_be(b, 8, 4);
  put_be(b, (uint64_t)v, 8);
}

/* Text that a text column can hold: the valid UTF-8 prefix, as
 * json_text keeps it. */
static void put_text(kjb_buf *b, const char *s) {
  if (!s) {
    put_null(b);
    return;
  }
  size_t n = strlen(s);
  long bad = kjb_utf8_invalid_at(s, n);
  put_field(b, s, bad < 0 ? n : (size_t)bad);
}

/* An entry as one tuple of ENTRY_COLUMNS. */
static void put_entry(kjb_buf *b, const kjb_dlq_entry *e) {
  put_be(b, 14, 2);
  put_text(b, e->dlq_topic);
  put_int4(b, e->dlq_partition);
  put_int8(b, e->dlq_offset);
  put_text(b, e->source_topic);
  put_int4(b, e->source_partition);
  put_int8(b, e->source_offset);
  if (e->key)
    put_field(b, e->key, e->key_len);
  else
    put_null(b);
  put_text(b, e->reason);
  put_text(b, e->stage);
  put_text(b, e->message);
  put_text(b, e->consumer_group);
  if (e->original_timestamp >= 0)
    put_int8(b, e->original_timestamp * 1000 - PG_EPOCH_US);
  else
    put_null(b);
  put_int8(b, e->dead_lettered_at - PG_EPOCH_US);
  put_int4(b, e->value_size > INT32_MAX ? INT32_MAX : (int32_t)e->value_size);
}

/* The upsert of kjb_dlqindex_upsert, for every entry. */
static int upsert_entries(kjb_store *s, const kjb_dlq_entry *e, size_t n, kjb_err *err) {
  kjb_buf j;
  kjb_buf_init(&j);
  kjb_buf_putc(&j, '[');
  for (size_t i = 0; i < n; i++) {
    if (i)
      kjb_buf_putc(&j, ',');
    entry_json(&j, &e[i]);
  }
  kjb_buf_putc(&j, ']');
  const char *params[] = {j.data};
  /* DISTINCT ON: one statement may not update a row twice. */
  PGresult *r = kjb_store_query(
      s, "could not index dead letters",
      "INSERT INTO dead_letters (" ENTRY_COLUMNS ") "
      "SELECT DISTINCT ON (source_topic, source_partition, source_offset, dlq_topic) * FROM "
      "(" ENTRY_SELECT ") AS e (" ENTRY_COLUMNS ") "
      "ORDER BY source_topic, source_partition, source_offset, dlq_topic, dlq_partition DESC, "
      "dlq_offset DESC "
      "ON CONFLICT (source_topic, source_partition, source_offset, dlq_topic) DO UPDATE SET " ENTRY_UPDATE,
      1, params, err);
  kjb_buf_close(&j);
  if (!r)
    return -KJB_EPG;
  PQclear(r);
  return 0;
}

void kjb_dlqindex_stream(kjb_store *s, const kjb_dlq_entry *e) {
  kjb_buf row;
  kjb_buf_init(&row);
  put_entry(&row, e);
  kjb_store_stream_binary(s, "dead_letters", ENTRY_COLUMNS, &row);
  kjb_buf_close(&row);
}

int kjb_dlqindex_stream_finish(kjb_store *s, const kjb_dlq_entry *e, size_t n, kjb_err *err) {
  int rc = kjb_store_stream_commit(s, n, err);
  if (rc == 1)
    rc = n ? upsert_entries(s, e, n, err) : 0;
  return rc < 0 ? -KJB_EPG : 0;
}

/* New rows go in by COPY, at a quarter of the upsert's cost per row; a
 * source record with a row already (dead-lettered again after a crash)
 * makes the unique constraint refuse the COPY, and the upsert runs
 * instead. */
int kjb_dlqindex_upsert(kjb_store *s, const kjb_dlq_entry *e, size_t n, kjb_err *err) {
  for (size_t i = 0; i < n; i++)
    kjb_dlqindex_stream(s, &e[i]);
  return kjb_dlqindex_stream_finish(s, e, n, err);
}

/* ---- listing -------------------------------------------------------- */

/* Every column, in this order. */
enum {
  C_ID,
  C_DLQ_TOPIC,
  C_DLQ_PARTITION,
  C_DLQ_OFFSET,
  C_SOURCE_TOPIC,
  C_SOURCE_PARTITION,
  C_SOURCE_OFFSET,
  C_KEY,
  C_REASON,
  C_STAGE,
  C_MESSAGE,
  C_CONSUMER_GROUP,
  C_ORIGINAL_TIMESTAMP,
  C_DEAD_LETTERED_AT,
  C_VALUE_SIZE,
  C_STATUS,
  C_REPLAYS,
  C_LAST_REPLAYED_AT,
  C_LAST_ERROR,
  C_EDITED,
  C_NCOLS
};

static const char *const COL_NAMES[C_NCOLS] = {
    "id",
    "dlq_topic",
    "dlq_partition",
    "dlq_offset",
    "source_topic",
    "source_partition",
    "source_offset",
    "key",
    "reason",
    "stage",
    "message",
    "consumer_group",
    "original_timestamp",
    "dead_lettered_at",
    "value_size",
    "status",
    "replays",
    "last_replayed_at",
    "last_error",
    "edited",
};

#define SELECT_COLUMNS                                                                       \
  "id, dlq_topic, dlq_partition, dlq_offset, source_topic, source_partition, "               \
  "source_offset, encode(key, 'hex'), reason, stage, message, consumer_group, " KJB_SQL_TS(  \
      "original_timestamp") ", " KJB_SQL_TS("dead_lettered_at") ", value_size, status, "     \
                                                                "replays, " KJB_SQL_TS(      \
                                                                    "last_replayed_at") ", " \
                                                                                        "last_error, edited"

static int is_int_col(int c) {
  return c == C_ID || c == C_DLQ_PARTITION || c == C_DLQ_OFFSET || c == C_SOURCE_PARTITION ||
         c == C_SOURCE_OFFSET || c == C_VALUE_SIZE || c == C_REPLAYS;
}

/* The bytes of a hex string (as encode(..., 'hex') gives it) into b. */
static void unhex(kjb_buf *b, const char *hex) {
  for (; hex[0] && hex[1]; hex += 2) {
    char byte[3] = {hex[0], hex[1], 0};
    kjb_buf_putc(b, (char)strtol(byte, NULL, 16));
  }
}

/* Bytes as JSON: a string when they are UTF-8, else {"base64": ...}. */
static json_t *json_bytes(const char *p, size_t n) {
  if (kjb_utf8_invalid_at(p, n) < 0)
    return json_stringn(p, n);
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_buf_base64(&b, (const uint8_t *)p, n);
  json_t *j = json_pack("{s:s}", "base64", b.data);
  kjb_buf_close(&b);
  return j;
}

/* A text column as JSON; text that is somehow not UTF-8 as base64. */
static json_t *json_col(const char *s) { return json_bytes(s, strlen(s)); }

static json_t *row_json(const PGresult *res, int r) {
  json_t *o = json_object();
  for (int c = 0; c < C_NCOLS; c++) {
    const char *v = PQgetvalue(res, r, c);
    json_t *j;
    if (PQgetisnull(res, r, c)) {
      j = json_null();
    } else if (is_int_col(c)) {
      j = json_integer(strtoll(v, NULL, 10));
    } else if (c == C_EDITED) {
      j = json_boolean(v[0] == 't');
    } else if (c == C_KEY) {
      kjb_buf k;
      kjb_buf_init(&k);
      unhex(&k, v);
      j = json_bytes(k.data ? k.data : "", k.len);
      kjb_buf_close(&k);
    } else {
      j = json_col(v);
    }
    json_object_set_new(o, COL_NAMES[c], j);
  }
  return o;
}

/* A key for a table: its text when it is printable UTF-8, else 0x and
 * its hex; "-" for none. The caller frees it. */
static char *key_text(const PGresult *res, int r) {
  if (PQgetisnull(res, r, C_KEY))
    return kjb_xstrdup("-");
  const char *hex = PQgetvalue(res, r, C_KEY);
  kjb_buf k;
  kjb_buf_init(&k);
  unhex(&k, hex);
  int printable = kjb_utf8_invalid_at(k.data ? k.data : "", k.len) < 0;
  for (size_t i = 0; printable && i < k.len; i++)
    printable = (unsigned char)k.data[i] >= 0x20 && k.data[i] != 0x7f;
  char *out;
  if (printable) {
    out = kjb_xstrndup(k.data ? k.data : "", k.len);
  } else {
    out = kjb_xmalloc(strlen(hex) + 3);
    snprintf(out, strlen(hex) + 3, "0x%s", hex);
  }
  kjb_buf_close(&k);
  return out;
}

enum { T_ID, T_AT, T_STATUS, T_REASON, T_SOURCE, T_DLQ, T_KEY, T_MESSAGE, T_NCOLS };

static void print_table(const PGresult *res, FILE *out) {
  static const char *const head[T_NCOLS] = {
      "ID", "DEAD_LETTERED_AT", "STATUS", "REASON", "SOURCE", "DLQ", "KEY", "MESSAGE"};
  int n = PQntuples(res);
  char **cells = kjb_xcalloc((size_t)(n + 1) * T_NCOLS, sizeof *cells);
  for (int c = 0; c < T_NCOLS; c++)
    cells[c] = kjb_xstrdup(head[c]);
  for (int r = 0; r < n; r++) {
    char **row = cells + (size_t)(r + 1) * T_NCOLS;
    char buf[600];
    row[T_ID] = kjb_table_cell(PQgetvalue(res, r, C_ID), 20);
    /* Whole seconds are enough to scan a list; show has the rest. */
    snprintf(buf, sizeof buf, "%.19sZ", PQgetvalue(res, r, C_DEAD_LETTERED_AT));
    row[T_AT] = kjb_xstrdup(buf);
    row[T_STATUS] = kjb_table_cell(PQgetvalue(res, r, C_STATUS), 10);
    row[T_REASON] = kjb_table_cell(PQgetvalue(res, r, C_REASON), 32);
    snprintf(buf, sizeof buf, "%.255s [%s] @%s", PQgetvalue(res, r, C_SOURCE_TOPIC),
             PQgetvalue(res, r, C_SOURCE_PARTITION), PQgetvalue(res, r, C_SOURCE_OFFSET));
    row[T_SOURCE] = kjb_table_cell(buf, 60);
    snprintf(buf, sizeof buf, "%.255s [%s] @%s", PQgetvalue(res, r, C_DLQ_TOPIC),
             PQgetvalue(res, r, C_DLQ_PARTITION), PQgetvalue(res, r, C_DLQ_OFFSET));
    row[T_DLQ] = kjb_table_cell(buf, 60);
    char *key = key_text(res, r);
    row[T_KEY] = kjb_table_cell(key, 24);
    free(key);
    row[T_MESSAGE] =
        kjb_table_cell(PQgetisnull(res, r, C_MESSAGE) ? "-" : PQgetvalue(res, r, C_MESSAGE), 80);
  }
  kjb_table_print(out, cells, (size_t)n + 1, T_NCOLS);
  for (size_t i = 0; i < (size_t)(n + 1) * T_NCOLS; i++)
    free(cells[i]);
  free(cells);
}

/* Runs "SELECT <columns> FROM dead_letters WHERE <f> <tail>". */
static PGresult *select_rows(kjb_store *s, const char *columns, const kjb_dlq_filter *f,
                             const char *tail, const char *what, kjb_err *err) {
  kjb_dlq_where w;
  kjb_dlq_where_build(&w, f, 1, NULL);
  kjb_buf sql;
  kjb_buf_init(&sql);
  kjb_buf_printf(&sql, "SELECT %s FROM dead_letters WHERE %s %s", columns, w.sql.data, tail);
  PGresult *r = kjb_store_query(s, what, sql.data, w.nparams, w.params, err);
  kjb_buf_close(&sql);
  kjb_dlq_where_close(&w);
  return r;
}

int kjb_dlqindex_list_json(kjb_store *s, const kjb_dlq_filter *f, int64_t after_id, long limit,
                           json_t **out, kjb_err *err) {
  *out = NULL;
  char tail[96];
  /* Numbers of ours, not the caller's text: safe to write inline. */
  snprintf(tail, sizeof tail, "AND id > %" PRId64 " ORDER BY id LIMIT %ld", after_id,
           limit > 0 ? limit : 50);
  PGresult *res = select_rows(s, SELECT_COLUMNS, f, tail, "could not list dead letters", err);
  if (!res)
    return -KJB_EPG;
  *out = json_array();
  for (int r = 0; r < PQntuples(res); r++)
    json_array_append_new(*out, row_json(res, r));
  PQclear(res);
  return 0;
}

int kjb_dlqindex_ls(kjb_store *s, const kjb_dlq_filter *f, long limit, int json, FILE *out,
                    long *shown, kjb_err *err) {
  if (json) {
    json_t *arr;
    if (kjb_dlqindex_list_json(s, f, 0, limit, &arr, err) < 0)
      return -KJB_EPG;
    kjb_json_print_lines(out, arr);
    if (shown)
      *shown = (long)json_array_size(arr);
    json_decref(arr);
    return 0;
  }
  char tail[48];
  snprintf(tail, sizeof tail, "ORDER BY id LIMIT %ld", limit > 0 ? limit : 50);
  PGresult *res = select_rows(s, SELECT_COLUMNS, f, tail, "could not list dead letters", err);
  if (!res)
    return -KJB_EPG;
  print_table(res, out);
  if (shown)
    *shown = PQntuples(res);
  PQclear(res);
  return 0;
}

/* ---- show ----------------------------------------------------------- */

/* At most this many bytes of a value are dumped from its start; a failing
 * byte past them gets a window of its own. */
#define DUMP_HEAD 4096
#define DUMP_WINDOW 256

static void dump_line(kjb_buf *b, const uint8_t *p, size_t n, size_t at, long mark) {
  kjb_buf_printf(b, "  %08zx ", at);
  for (size_t i = 0; i < 16; i++) {
    if (i == 8)
      kjb_buf_putc(b, ' ');
    if (at + i < n)
      kjb_buf_printf(b, " %02x", p[at + i]);
    else
      kjb_buf_puts(b, "   ");
  }
  kjb_buf_puts(b, "  |");
  for (size_t i = 0; i < 16 && at + i < n; i++)
    kjb_buf_putc(b, p[at + i] >= 0x20 && p[at + i] < 0x7f ? (char)p[at + i] : '.');
  kjb_buf_puts(b, "|\n");
  if (mark >= 0 && (size_t)mark >= at && (size_t)mark < at + 16 && (size_t)mark < n) {
    /* "  " + 8 hex digits + " ", then " xx" per byte and one more space
     * after the eighth: the marker goes under the byte's two digits. */
    size_t col = 2 + 8 + 1 + ((size_t)mark - at) * 3 + 1 + ((size_t)mark - at >= 8);
    for (size_t i = 0; i < col; i++)
      kjb_buf_putc(b, ' ');
    kjb_buf_printf(b, "^^ byte %ld\n", mark);
  }
}

static void hexdump(kjb_buf *b, const uint8_t *p, size_t n, long mark) {
  size_t head = n < DUMP_HEAD ? n : DUMP_HEAD;
  for (size_t at = 0; at < head; at += 16)
    dump_line(b, p, n, at, mark);
  size_t from = head;
  if (mark >= 0 && (size_t)mark >= head && (size_t)mark < n) {
    size_t start =
        ((size_t)mark >= DUMP_WINDOW / 2 ? (size_t)mark - DUMP_WINDOW / 2 : 0) & ~(size_t)15;
    if (start < head)
      start = head;
    if (start > head)
      kjb_buf_printf(b, "  ... %zu bytes ...\n", start - head);
    size_t end = start + DUMP_WINDOW < n ? start + DUMP_WINDOW : n;
    for (size_t at = start; at < end; at += 16)
      dump_line(b, p, n, at, mark);
    from = end;
  }
  if (from < n)
    kjb_buf_printf(b, "  ... %zu more bytes\n", n - from);
  if (mark >= 0 && (size_t)mark >= n)
    kjb_buf_printf(b, "  (the failing byte %ld is past the end: the value ends at byte %zu)\n",
                   mark, n);
}

/* The failing field the message names ("field \"customer.email\": ..."),
 * or NULL. The caller frees it. */
static char *failing_field(const char *message) {
  const char *p = message ? strstr(message, "field \"") : NULL;
  if (!p)
    return NULL;
  p += 7;
  const char *q = strchr(p, '"');
  return q ? kjb_xstrndup(p, (size_t)(q - p)) : NULL;
}

/* What the value decodes to with the current configuration: a JSON value
 * in *decoded, or the reason it does not in *why (a new reference each;
 * both NULL when the source topic is not configured). */
static void decode_now(kjb_catalog *cat, const kjb_config *cfg, const char *source_topic,
                       const rd_kafka_message_t *m, json_t **decoded, json_t **why) {
  *decoded = *why = NULL;
  const kjb_topic_cfg *t = kjb_config_topic(cfg, source_topic);
  if (!t) {
    *why = json_string("the source topic is not in the configuration");
    return;
  }
  kjb_arena *a = kjb_arena_new(1 << 16);
  kjb_value *v = NULL;
  kjb_err e;
  if (kjb_decode_record(cat, t, m->payload, m->payload ? m->len : 0, a, &v, &e) < 0) {
    char error_class[64];
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_buf_printf(&b, "%s: %s", kjb_dlq_error_class(e.code, error_class, sizeof error_class),
                   e.msg);
    *why = json_col(b.data);
    kjb_buf_close(&b);
  } else {
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_value_to_json(v, &b);
    /* jansson's integers stop at 64 bits, an Avro long's do not go past. */
    *decoded = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
    kjb_buf_close(&b);
  }
  kjb_arena_free(a);
}

/* What the bytes of a value that does not decode with the current
 * configuration hold before the failure (kjb_decode_partial). */
typedef struct {
  int tried;
  int rc; /* kjb_decode_partial's: 1 stops, 0 decodes whole, < 0 nothing to decode */
  json_t *value;
  kjb_avro_stop stop;
  kjb_err why;
} partial_decode;

static void decode_partial(kjb_catalog *cat, const kjb_config *cfg, const char *source_topic,
                           const rd_kafka_message_t *m, partial_decode *p) {
  memset(p, 0, sizeof *p);
  const kjb_topic_cfg *t = kjb_config_topic(cfg, source_topic);
  if (!t || !m->payload)
    return;
  p->tried = 1;
  p->rc = kjb_decode_partial(cat, t, m->payload, m->len, &p->value, &p->stop, &p->why);
}

static json_t *partial_at_json(const partial_decode *p) {
  if (p->rc != 1)
    return json_null();
  return json_pack("{s:o, s:I}", "field", p->stop.path[0] ? json_col(p->stop.path) : json_null(),
                   "byte", (json_int_t)p->stop.byte);
}

static void print_partial(FILE *out, const partial_decode *p) {
  if (!p->tried)
    return;
  if (p->rc < 0) {
    fprintf(out, "\ndecoded before the failure: nothing to decode: %s\n", p->why.msg);
    return;
  }
  char *s = p->value ? json_dumps(p->value, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY)
                     : NULL;
  if (p->rc == 0)
    fprintf(out,
            "\ndecoded before the failure: the bytes decode whole with their writer schema, "
            "so the failure is not in them:\n%s\n",
            s ? s : "?");
  else
    fprintf(out, "\ndecoded before the failure (at %s%sbyte %zu):%s%s\n", p->stop.path,
            p->stop.path[0] ? ", " : "", p->stop.byte, s ? "\n" : " nothing", s ? s : "");
  free(s);
}

static json_t *headers_json(const rd_kafka_message_t *m) {
  json_t *arr = json_array();
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return arr;
  const char *name;
  const void *val;
  size_t len;
  for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; i++)
    json_array_append_new(arr, json_pack("{s:o, s:o}", "name", json_col(name), "value",
                                         val ? json_bytes(val, len) : json_null()));
  return arr;
}

static void print_show_text(FILE *out, const PGresult *res, const rd_kafka_message_t *m,
                            const kjb_err *why, long mark, const char *field, json_t *decoded,
                            json_t *undecodable) {
  enum { LABEL = 20 };
  for (int c = 0; c < C_NCOLS; c++) {
    const char *v = PQgetvalue(res, 0, c);
    if (c == C_KEY) {
      char *k = key_text(res, 0);
      fprintf(out, "%-*s%s\n", LABEL, "key", k);
      free(k);
    } else {
      if (c == C_EDITED)
        v = v[0] == 't' ? "true" : "false";
      char *cell = kjb_table_cell(PQgetisnull(res, 0, c) ? "-" : v, 4096);
      fprintf(out, "%-*s%s\n", LABEL, COL_NAMES[c], cell);
      free(cell);
    }
  }
  fprintf(out, "%-*s%s\n", LABEL, "failing_field", field ? field : "-");
  if (mark >= 0)
    fprintf(out, "%-*s%ld\n", LABEL, "failing_byte", mark);
  else
    fprintf(out, "%-*s-\n", LABEL, "failing_byte");
  if (!m) {
    fprintf(out, "\nrecord: not available: %s\n", why->msg);
    return;
  }
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
    h = NULL;
  fprintf(out, "\nheaders:\n");
  const char *name;
  const void *val;
  size_t len;
  for (size_t i = 0; h && rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; i++) {
    char *cell = val ? kjb_xstrndup(val, len) : kjb_xstrdup("(null)");
    char *shown = kjb_table_cell(cell, 1024);
    fprintf(out, "  %s: %s\n", name, shown);
    free(shown);
    free(cell);
  }
  kjb_buf b;
  kjb_buf_init(&b);
  if (!m->payload)
    kjb_buf_puts(&b, "\nvalue: null (a tombstone)\n");
  else
    kjb_buf_printf(&b, "\nvalue: %zu bytes%s\n", m->len,
                   mark >= 0 ? ", the failing byte marked ^^" : "");
  if (m->payload)
    hexdump(&b, m->payload, m->len, mark);
  fwrite(b.data, 1, b.len, out);
  kjb_buf_close(&b);
  if (decoded) {
    char *s = json_dumps(decoded, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    fprintf(out, "\ndecoded with the current configuration:\n%s\n", s ? s : "?");
    free(s);
  } else if (undecodable) {
    fprintf(out, "\ndecoded with the current configuration: fails: %s\n",
            json_string_value(undecodable));
  }
}

/* Everything show tells about one dead letter, gathered once for the
 * text and the JSON. */
typedef struct {
  PGresult *row;         /* the row; NULL when there is none */
  rd_kafka_message_t *m; /* its DLQ record; NULL when not read */
  long mark;             /* the failing byte, or -1 */
  char *field;           /* the failing field, or NULL */
  json_t *decoded, *undecodable;
  partial_decode partial; /* when it does not decode: what did */
} shown_letter;

static void shown_close(shown_letter *sl) {
  json_decref(sl->partial.value);
  json_decref(sl->decoded);
  json_decref(sl->undecodable);
  free(sl->field);
  if (sl->m)
    rd_kafka_message_destroy(sl->m);
  PQclear(sl->row);
}

/* Fills *sl for dead letter id (sl->row NULL when there is none). Returns
 * 0 (see *res), or -KJB_EPG. */
static int gather(kjb_store *s, kjb_dlq_reader *r, kjb_catalog *cat, const kjb_config *cfg,
                  int64_t id, shown_letter *sl, kjb_dlqindex_shown *res, kjb_err *err) {
  memset(res, 0, sizeof *res);
  memset(sl, 0, sizeof *sl);
  sl->mark = -1;
  char idtext[24];
  snprintf(idtext, sizeof idtext, "%" PRId64, id);
  const char *params[] = {idtext};
  PGresult *row = kjb_store_query(
      s, "could not read dead letter",
      "SELECT " SELECT_COLUMNS " FROM dead_letters WHERE id = $1::bigint", 1, params, err);
  if (!row)
    return -KJB_EPG;
  res->found = PQntuples(row) == 1;
  if (!res->found) {
    PQclear(row);
    return 0;
  }
  sl->row = row;
  if (!r) {
    kjb_err_set(&res->why, KJB_EKAFKA, "not read");
  } else if (kjb_dlq_reader_get(r, PQgetvalue(row, 0, C_DLQ_TOPIC),
                                (int32_t)strtol(PQgetvalue(row, 0, C_DLQ_PARTITION), NULL, 10),
                                strtoll(PQgetvalue(row, 0, C_DLQ_OFFSET), NULL, 10), 15000, &sl->m,
                                &res->why) == 0) {
    res->fetched = 1;
  }
  const char *message = PQgetisnull(row, 0, C_MESSAGE) ? NULL : PQgetvalue(row, 0, C_MESSAGE);
  sl->mark = kjb_dlq_failing_byte(message);
  sl->field = failing_field(message);
  if (sl->m && cat)
    decode_now(cat, cfg, PQgetvalue(row, 0, C_SOURCE_TOPIC), sl->m, &sl->decoded, &sl->undecodable);
  if (sl->undecodable && sl->m && cat)
    decode_partial(cat, cfg, PQgetvalue(row, 0, C_SOURCE_TOPIC), sl->m, &sl->partial);
  return 0;
}

static json_t *shown_json(const shown_letter *sl, const kjb_dlqindex_shown *res) {
  const rd_kafka_message_t *m = sl->m;
  json_t *o = row_json(sl->row, 0);
  json_object_set_new(o, "failing_field", sl->field ? json_col(sl->field) : json_null());
  json_object_set_new(o, "failing_byte", sl->mark >= 0 ? json_integer(sl->mark) : json_null());
  if (m) {
    kjb_buf v;
    kjb_buf_init(&v);
    kjb_buf_base64(&v, m->payload, m->payload ? m->len : 0);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    json_object_set_new(
        o, "record",
        json_pack("{s:I, s:o, s:o, s:o, s:o}", "size", (json_int_t)(m->payload ? m->len : 0),
                  "timestamp", ts >= 0 ? json_integer(ts) : json_null(), "key",
                  m->key ? json_bytes(m->key, m->key_len) : json_null(), "headers", headers_json(m),
                  "value", m->payload ? json_pack("{s:s}", "base64", v.data) : json_null()));
    kjb_buf_close(&v);
    json_object_set_new(o, "record_error", json_null());
  } else {
    json_object_set_new(o, "record", json_null());
    json_object_set_new(o, "record_error", json_col(res->why.msg));
  }
  json_object_set_new(o, "decoded", sl->decoded ? json_incref(sl->decoded) : json_null());
  json_object_set_new(o, "decode_error",
                      sl->undecodable ? json_incref(sl->undecodable) : json_null());
  json_object_set_new(o, "partial",
                      sl->partial.value ? json_incref(sl->partial.value) : json_null());
  json_object_set_new(o, "partial_at", partial_at_json(&sl->partial));
  return o;
}

int kjb_dlqindex_show_json(kjb_store *s, kjb_dlq_reader *r, kjb_catalog *cat, const kjb_config *cfg,
                           int64_t id, json_t **out, kjb_dlqindex_shown *res, kjb_err *err) {
  *out = NULL;
  shown_letter sl;
  if (gather(s, r, cat, cfg, id, &sl, res, err) < 0)
    return -KJB_EPG;
  if (sl.row)
    *out = shown_json(&sl, res);
  shown_close(&sl);
  return 0;
}

int kjb_dlqindex_show(kjb_store *s, kjb_dlq_reader *r, kjb_catalog *cat, const kjb_config *cfg,
                      int64_t id, int json, FILE *out, kjb_dlqindex_shown *res, kjb_err *err) {
  shown_letter sl;
  if (gather(s, r, cat, cfg, id, &sl, res, err) < 0)
    return -KJB_EPG;
  if (sl.row && json) {
    json_t *o = shown_json(&sl, res);
    json_dumpf(o, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(o);
  } else if (sl.row) {
    print_show_text(out, sl.row, sl.m, &res->why, sl.mark, sl.field, sl.decoded, sl.undecodable);
    print_partial(out, &sl.partial);
  }
  shown_close(&sl);
  return 0;
}

/* ---- stats and gauges ----------------------------------------------- */

int kjb_dlqindex_stats(kjb_store *s, const kjb_dlq_filter *f, int json, FILE *out, kjb_err *err) {
  PGresult *res =
      select_rows(s, "dlq_topic, reason, status, count(*)", f, "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                  "could not count dead letters", err);
  if (!res)
    return -KJB_EPG;
  int n = PQntuples(res);
  long long total = 0;
  for (int r = 0; r < n; r++)
    total += strtoll(PQgetvalue(res, r, 3), NULL, 10);
  if (json) {
    json_t *counts = json_array();
    for (int r = 0; r < n; r++)
      json_array_append_new(
          counts,
          json_pack("{s:o, s:o, s:o, s:I}", "dlq_topic", json_col(PQgetvalue(res, r, 0)), "reason",
                    json_col(PQgetvalue(res, r, 1)), "status", json_col(PQgetvalue(res, r, 2)),
                    "count", (json_int_t)strtoll(PQgetvalue(res, r, 3), NULL, 10)));
    json_t *o = json_pack("{s:I, s:o}", "total", (json_int_t)total, "counts", counts);
    json_dumpf(o, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(o);
  } else {
    static const char *const head[] = {"DLQ_TOPIC", "REASON", "STATUS", "COUNT"};
    char **cells = kjb_xcalloc((size_t)(n + 2) * 4, sizeof *cells);
    for (int c = 0; c < 4; c++)
      cells[c] = kjb_xstrdup(head[c]);
    for (int r = 0; r < n; r++)
      for (int c = 0; c < 4; c++)
        cells[(size_t)(r + 1) * 4 + c] = kjb_table_cell(PQgetvalue(res, r, c), 60);
    char num[24];
    snprintf(num, sizeof num, "%lld", total);
    char **last = cells + (size_t)(n + 1) * 4;
    last[0] = kjb_xstrdup("total");
    last[1] = kjb_xstrdup("");
    last[2] = kjb_xstrdup("");
    last[3] = kjb_xstrdup(num);
    kjb_table_print(out, cells, (size_t)n + 2, 4);
    for (size_t i = 0; i < (size_t)(n + 2) * 4; i++)
      free(cells[i]);
    free(cells);
  }
  PQclear(res);
  return 0;
}

#define GAUGE "kjb_dead_letters"
#define GAUGE_HELP                                                               \
  "Rows of kjb.dead_letters by DLQ topic, reason and status, counted every few " \
  "seconds."

int kjb_dlqindex_gauges(kjb_store *s, kjb_err *err) {
  static const char *const statuses[] = {"dead", "replayed", "failing", "ignored"};
  PGresult *res = kjb_store_query(s, "could not count dead letters",
                                  "SELECT dlq_topic, reason, status, count(*) FROM dead_letters "
                                  "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                                  0, NULL, err);
  if (!res)
    return -KJB_EPG;
  kjb_metric_clear(GAUGE);
  /* Zeros first: a status that empties keeps its series at 0. */
  for (int r = 0; r < PQntuples(res); r++)
    for (size_t k = 0; k < sizeof statuses / sizeof statuses[0]; k++)
      kjb_gauge_set(GAUGE, GAUGE_HELP, 0, "dlq_topic", PQgetvalue(res, r, 0), "reason",
                    PQgetvalue(res, r, 1), "status", statuses[k], NULL);
  for (int r = 0; r < PQntuples(res); r++)
    kjb_gauge_set(GAUGE, GAUGE_HELP, (double)strtoll(PQgetvalue(res, r, 3), NULL, 10), "dlq_topic",
                  PQgetvalue(res, r, 0), "reason", PQgetvalue(res, r, 1), "status",
                  PQgetvalue(res, r, 2), NULL);
  PQclear(res);
  return 0;
}

/* ---- ignore --------------------------------------------------------- */

static int run(kjb_store *s, const char *sql, kjb_err *err) {
  PGresult *r = kjb_store_query(s, "could not update dead letters", sql, 0, NULL, err);
  if (!r)
    return -KJB_EPG;
  PQclear(r);
  return 0;
}

/* After a failure inside BEGIN ... COMMIT. */
static void rollback(kjb_store *s) {
  kjb_err ignored;
  run(s, "ROLLBACK", &ignored);
}

/* The statuses that ignoring changes. */
#define IGNORABLE "('dead', 'failing')"

int kjb_dlqindex_ignore_count(kjb_store *s, const kjb_dlq_filter *f, int64_t *matched,
                              int64_t *ignorable, kjb_err *err) {
  *matched = *ignorable = 0;
  PGresult *r = select_rows(s, "count(*), count(*) FILTER (WHERE status IN " IGNORABLE ")", f, "",
                            "could not count dead letters", err);
  if (!r)
    return -KJB_EPG;
  *matched = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  *ignorable = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  return 0;
}

int kjb_dlqindex_ignore(kjb_store *s, const kjb_dlq_filter *f, const char *actor, int64_t *matched,
                        int64_t *ignored, kjb_err *err) {
  *matched = *ignored = 0;
  if (run(s, "BEGIN", err) < 0)
    return -KJB_EPG;
  kjb_dlq_where w;
  kjb_dlq_where_build(&w, f, 1, "d");
  kjb_buf sql;
  kjb_buf_init(&sql);
  /* One statement: the rows it counts are the rows it changes. */
  kjb_buf_printf(&sql,
                 "WITH sel AS (SELECT d.id, d.status FROM dead_letters d WHERE %s FOR UPDATE), "
                 "upd AS (UPDATE dead_letters d SET status = 'ignored' FROM sel "
                 "WHERE d.id = sel.id AND sel.status IN " IGNORABLE " RETURNING d.id) "
                 "SELECT (SELECT count(*) FROM sel), (SELECT count(*) FROM upd), "
                 "(SELECT coalesce(json_agg(id ORDER BY id), '[]')::text FROM "
                 "(SELECT id FROM upd ORDER BY id LIMIT 1000) AS first)",
                 w.sql.data);
  PGresult *r =
      kjb_store_query(s, "could not ignore dead letters", sql.data, w.nparams, w.params, err);
  kjb_buf_close(&sql);
  kjb_dlq_where_close(&w);
  if (!r) {
    rollback(s);
    return -KJB_EPG;
  }
  *matched = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  *ignored = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  kjb_buf params, result;
  kjb_buf_init(&params);
  kjb_buf_init(&result);
  kjb_buf_puts(&params, "{\"filter\":");
  kjb_dlq_filter_json(f, &params);
  kjb_buf_putc(&params, '}');
  /* The ids, up to a thousand: enough to undo a mistake by hand. */
  kjb_buf_printf(&result, "{\"matched\":%" PRId64 ",\"ignored\":%" PRId64 ",\"ids\":%s%s}",
                 *matched, *ignored, PQgetvalue(r, 0, 2),
                 *ignored > 1000 ? ",\"ids_truncated\":true" : "");
  PQclear(r);
  int rc = kjb_audit_record(s, actor, KJB_AUDIT_DLQ_IGNORE, params.data, result.data, NULL, err);
  kjb_buf_close(&params);
  kjb_buf_close(&result);
  if (rc < 0 || run(s, "COMMIT", err) < 0) {
    rollback(s);
    *matched = *ignored = 0;
    return -KJB_EPG;
  }
  return 0;
}

/* ---- reindex -------------------------------------------------------- */

/* Records per statement that loads them into the session's table. */
#define REINDEX_CHUNK 500

typedef struct {
  int32_t partition;
  int64_t low, high; /* the partition's offsets when the scan began */
  int64_t next;      /* the offset the scan has come to, from low to high */
  int done;
} scan_part;

/* Moves p on to offset to, counting the offsets passed into *passed. */
static void pass(scan_part *p, int64_t to, uint64_t *passed) {
  if (to > p->high)
    to = p->high;
  if (to > p->next) {
    *passed += (uint64_t)(to - p->next);
    p->next = to;
  }
}

/* Adds the chunk's entries (a JSON array in j) to reindex_seen. */
static int load_chunk(kjb_store *s, kjb_buf *j, size_t *n, kjb_err *err) {
  if (*n == 0)
    return 0;
  kjb_buf_putc(j, ']');
  const char *params[] = {j->data};
  PGresult *r =
      kjb_store_query(s, "could not load dead letters",
                      "INSERT INTO reindex_seen (" ENTRY_COLUMNS ") " ENTRY_SELECT, 1, params, err);
  kjb_buf_reset(j);
  kjb_buf_putc(j, '[');
  *n = 0;
  if (!r)
    return -KJB_EPG;
  PQclear(r);
  return 0;
}

/* One DLQ record as an entry of the chunk; 0 when it is no dead letter. */
static int add_record(const rd_kafka_message_t *m, const char *topic, kjb_arena *arena, kjb_buf *j,
                      size_t *n) {
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
    h = NULL;
  kjb_dead_letter d;
  kjb_err ignored;
  if (kjb_dlq_headers_parse(h, arena, &d, &ignored) < 0)
    return 0;
  rd_kafka_timestamp_type_t tstype;
  int64_t ts = rd_kafka_message_timestamp(m, &tstype), at_us;
  const char *why;
  /* When kjb.dead_lettered_at is missing (Kafka Connect writes none), the
   * DLQ record's own time is when it was dead-lettered. */
  if (!d.at || kjb_datetime_parse(d.at, &at_us, &why) < 0)
    at_us = ts >= 0 ? ts * 1000 : kjb_now_wall_us();
  kjb_dlq_entry e = {
      .dlq_topic = topic,
      .dlq_partition = m->partition,
      .dlq_offset = m->offset,
      .source_topic = d.topic,
      .source_partition = d.partition,
      .source_offset = d.offset,
      .key = m->key,
      .key_len = m->key_len,
      .reason = kjb_dlq_reason(d.error_class),
      .stage = d.stage,
      .message = d.message,
      .consumer_group = d.group,
      .original_timestamp = d.timestamp,
      .dead_lettered_at = at_us,
      .value_size = m->payload ? m->len : 0,
  };
  if (*n)
    kjb_buf_putc(j, ',');
  entry_json(j, &e);
  (*n)++;
  return 1;
}

/* Reads every committed record of topic up to its end offsets as of now
 * into reindex_seen, and the ranges read into reindex_range; the offsets
 * passed as kjb_progress lines on progress (may be NULL). */
static int scan(const kjb_config *cfg, kjb_store *s, const char *topic, FILE *progress,
                volatile sig_atomic_t *stop, kjb_dlqindex_reindex_stats *st, kjb_err *err) {
  char group[512];
  snprintf(group, sizeof group, "%s.reindex", cfg->kafka.group);
  const char *const defaults[] = {"group.id",
                                  group,
                                  "enable.auto.commit",
                                  "false",
                                  "enable.partition.eof",
                                  "true",
                                  "isolation.level",
                                  "read_committed",
                                  NULL};
  kjb_kafka_errors errors;
  rd_kafka_t *rk = kjb_kafka_consumer_connect(cfg, defaults, &errors, err);
  if (!rk)
    return -(int)err->code;
  rd_kafka_poll_set_consumer(rk);
  int rc = 0;
  scan_part *parts = NULL;
  int nparts = 0;
  kjb_progress *prog = NULL;
  uint64_t passed = 0, total = 0;
  kjb_arena *arena = kjb_arena_new(1 << 16);
  kjb_buf j, ranges;
  kjb_buf_init(&j);
  kjb_buf_init(&ranges);
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  rd_kafka_topic_destroy(rkt);
  if (e || md->topic_cnt != 1 || md->topics[0].err) {
    rc = kjb_err_set(err, KJB_EKAFKA, "topic \"%s\": %s", topic,
                     rd_kafka_err2str(e ? e : md->topics[0].err));
    goto out;
  }
  nparts = md->topics[0].partition_cnt;
  parts = kjb_xcalloc((size_t)nparts + 1, sizeof *parts);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
  int open = 0;
  kjb_buf_putc(&ranges, '[');
  for (int i = 0; i < nparts && !e; i++) {
    scan_part *p = &parts[i];
    p->partition = md->topics[0].partitions[i].id;
    e = rd_kafka_query_watermark_offsets(rk, topic, p->partition, &p->low, &p->high, 10000);
    rd_kafka_topic_partition_list_add(l, topic, p->partition)->offset = p->low;
    p->next = p->low;
    p->done = p->high <= p->low;
    total += p->done ? 0 : (uint64_t)(p->high - p->low);
    open += !p->done;
    kjb_buf_printf(&ranges, "%s{\"p\":%d,\"low\":%" PRId64 ",\"high\":%" PRId64 "}", i ? "," : "",
                   (int)p->partition, p->low, p->high);
  }
  kjb_buf_putc(&ranges, ']');
  if (!e)
    e = rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    rc = kjb_err_set(err, KJB_EKAFKA, "could not read \"%s\": %s", topic, rd_kafka_err2str(e));
    goto out;
  }
  const char *rp[] = {ranges.data};
  PGresult *r =
      kjb_store_query(s, "could not load dead letters",
                      "INSERT INTO reindex_range SELECT x.p, x.low, x.high FROM "
                      "jsonb_to_recordset($1::jsonb) AS x(p int, low bigint, high bigint)",
                      1, rp, err);
  if (!r) {
    rc = -KJB_EPG;
    goto out;
  }
  PQclear(r);
  size_t n = 0;
  kjb_buf_putc(&j, '[');
  prog = kjb_progress_start(progress, "reindex", total);
  int64_t quiet_since = kjb_now_mono_us();
  while (open > 0 && rc == 0) {
    kjb_progress_update(prog, passed);
    if (stop && *stop) {
      rc = kjb_err_set(err, KJB_EKAFKA, "interrupted before the end of \"%s\"", topic);
      break;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) {
      /* A transaction left open holds read_committed readers back until
       * it times out; give up long after any sane timeout. */
      if (kjb_now_mono_us() - quiet_since > 120 * 1000000LL)
        rc = kjb_err_set(err, KJB_EKAFKA, "no progress reading \"%s\" for 120 s", topic);
      continue;
    }
    quiet_since = kjb_now_mono_us();
    scan_part *p = NULL;
    for (int i = 0; i < nparts; i++)
      if (parts[i].partition == m->partition)
        p = &parts[i];
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (p && !p->done && m->offset >= p->high) {
        pass(p, p->high, &passed);
        p->done = 1;
        open--;
      }
    } else if (m->err) {
      kjb_progress_clear(prog);
      kjb_warn("dlq reindex: %s", rd_kafka_message_errstr(m));
    } else if (p && !p->done && m->offset < p->high) {
      st->records++;
      pass(p, m->offset + 1, &passed);
      if (!add_record(m, topic, arena, &j, &n))
        st->not_dead++;
      if (m->offset + 1 >= p->high) {
        p->done = 1;
        open--;
      }
      if (n >= REINDEX_CHUNK) {
        rc = load_chunk(s, &j, &n, err);
        kjb_arena_reset(arena);
      }
    }
    rd_kafka_message_destroy(m);
  }
  if (rc == 0)
    rc = load_chunk(s, &j, &n, err);
out:
  kjb_progress_end(prog, passed);
  kjb_buf_close(&j);
  kjb_buf_close(&ranges);
  kjb_arena_free(arena);
  free(parts);
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}

/* Runs a statement that answers one count. */
static int count_of(kjb_store *s, const char *sql, const char *topic, uint64_t *out, kjb_err *err) {
  const char *params[] = {topic};
  PGresult *r =
      kjb_store_query(s, "could not reindex dead letters", sql, topic ? 1 : 0, params, err);
  if (!r)
    return -KJB_EPG;
  *out = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return 0;
}

/* A row lies where the scan looked: in a partition read, before the
 * offset the scan stopped at (below the log start included). */
#define SCANNED(d)                                                                           \
  "EXISTS (SELECT 1 FROM reindex_range r WHERE r.dlq_partition = " d ".dlq_partition AND " d \
  ".dlq_offset < r.high)"

/* Makes kjb.dead_letters say what reindex_seen holds (see
 * kjb_dlqindex_reindex), in the open transaction. */
static int merge(kjb_store *s, const char *topic, kjb_dlqindex_reindex_stats *st, kjb_err *err) {
  uint64_t winners;
  /* Temporary tables are never analysed by autovacuum: without numbers
   * the planner took reindex_seen for small and ran the delete below as
   * a nested loop over it, 30 times slower at 20,000 records. The index
   * makes that anti-join a probe whatever the plan. */
  if (run(s, "CREATE INDEX ON reindex_seen (dlq_partition, dlq_offset)", err) < 0 ||
      run(s, "ANALYZE reindex_seen, reindex_range", err) < 0 ||
      run(s,
          "CREATE TEMP TABLE reindex_win ON COMMIT DROP AS SELECT DISTINCT ON "
          "(source_topic, source_partition, source_offset) * FROM reindex_seen ORDER BY "
          "source_topic, source_partition, source_offset, dead_lettered_at DESC, "
          "dlq_partition DESC, dlq_offset DESC",
          err) < 0 ||
      run(s, "ANALYZE reindex_win", err) < 0 ||
      count_of(s, "SELECT count(*) FROM reindex_win", NULL, &winners, err) < 0 ||
      count_of(s,
               "WITH ins AS (INSERT INTO dead_letters (" ENTRY_COLUMNS ") SELECT " ENTRY_COLUMNS
               " FROM reindex_win w WHERE NOT EXISTS (SELECT 1 FROM dead_letters d WHERE "
               "d.source_topic = w.source_topic AND d.source_partition = w.source_partition AND "
               "d.source_offset = w.source_offset AND d.dlq_topic = w.dlq_topic) "
               "ON CONFLICT (source_topic, source_partition, source_offset, "
               "dlq_topic) DO NOTHING RETURNING 1) SELECT count(*) FROM ins",
               NULL, &st->inserted, err) < 0 ||
      count_of(s,
               "WITH upd AS (UPDATE dead_letters d SET dlq_partition = w.dlq_partition, "
               "dlq_offset = w.dlq_offset, key = w.key, reason = w.reason, stage = w.stage, "
               "message = w.message, consumer_group = w.consumer_group, "
               "original_timestamp = w.original_timestamp, dead_lettered_at = "
               "w.dead_lettered_at, value_size = w.value_size FROM reindex_win w "
               "WHERE d.dlq_topic = w.dlq_topic AND d.source_topic = w.source_topic AND "
               "d.source_partition = w.source_partition AND d.source_offset = w.source_offset "
               "AND " SCANNED("d") " AND (d.dlq_partition, d.dlq_offset, d.key, d.reason, "
                                   "d.stage, d.message, d.consumer_group, d.original_timestamp, "
                                   "d.dead_lettered_at, d.value_size) IS DISTINCT FROM "
                                   "(w.dlq_partition, w.dlq_offset, w.key, w.reason, w.stage, "
                                   "w.message, w.consumer_group, w.original_timestamp, "
                                   "w.dead_lettered_at, w.value_size) RETURNING 1) "
                                   "SELECT count(*) FROM upd",
               NULL, &st->updated, err) < 0 ||
      count_of(s,
               "WITH del AS (DELETE FROM dead_letters d USING reindex_range r WHERE "
               "d.dlq_topic = $1 AND r.dlq_partition = d.dlq_partition AND d.dlq_offset >= r.low "
               "AND d.dlq_offset < r.high AND NOT EXISTS (SELECT 1 FROM reindex_seen x WHERE "
               "x.dlq_partition = d.dlq_partition AND x.dlq_offset = d.dlq_offset AND "
               "x.source_topic = d.source_topic AND x.source_partition = d.source_partition AND "
               "x.source_offset = d.source_offset) RETURNING 1) SELECT count(*) FROM del",
               topic, &st->removed, err) < 0 ||
      count_of(s,
               "SELECT count(*) FROM dead_letters d JOIN reindex_range r ON "
               "r.dlq_partition = d.dlq_partition WHERE d.dlq_topic = $1 AND d.dlq_offset < r.low",
               topic, &st->before_start, err) < 0)
    return -KJB_EPG;
  st->unchanged = winners - st->inserted - st->updated;
  return 0;
}

int kjb_dlqindex_reindex(const kjb_config *cfg, kjb_store *s, const char *topic, const char *actor,
                         FILE *progress, volatile sig_atomic_t *stop,
                         kjb_dlqindex_reindex_stats *st, kjb_err *err) {
  memset(st, 0, sizeof *st);
  /* One transaction, so that the scratch tables (what the scan read, and
   * where) go with it whatever happens; it holds no lock on the index
   * until the merge. */
  int rc = run(s, "BEGIN", err);
  if (rc == 0)
    rc = run(s,
             "CREATE TEMP TABLE reindex_seen ON COMMIT DROP AS SELECT " ENTRY_COLUMNS
             " FROM dead_letters WITH NO DATA",
             err);
  if (rc == 0)
    rc = run(s,
             "CREATE TEMP TABLE reindex_range (dlq_partition int PRIMARY KEY, low bigint, "
             "high bigint) ON COMMIT DROP",
             err);
  if (rc == 0)
    rc = scan(cfg, s, topic, progress, stop, st, err);
  if (rc == 0)
    rc = merge(s, topic, st, err);
  if (rc == 0 && actor) {
    kjb_buf params, result;
    kjb_buf_init(&params);
    kjb_buf_init(&result);
    kjb_buf_puts(&params, "{\"topic\":");
    json_text(&params, topic);
    kjb_buf_putc(&params, '}');
    kjb_buf_printf(&result,
                   "{\"records\":%" PRIu64 ",\"not_dead_letters\":%" PRIu64 ",\"inserted\":%" PRIu64
                   ",\"updated\":%" PRIu64 ",\"unchanged\":%" PRIu64 ",\"removed\":%" PRIu64
                   ",\"before_start\":%" PRIu64 "}",
                   st->records, st->not_dead, st->inserted, st->updated, st->unchanged, st->removed,
                   st->before_start);
    rc = kjb_audit_record(s, actor, KJB_AUDIT_DLQ_REINDEX, params.data, result.data, NULL, err);
    kjb_buf_close(&params);
    kjb_buf_close(&result);
  }
  if (rc == 0)
    rc = run(s, "COMMIT", err);
  if (rc < 0) {
    rollback(s);
    memset(st, 0, sizeof *st);
    return rc;
  }
  /* The filters scan the table: after a reindex that changed many rows,
   * the planner must know them at once, not when autovacuum comes by
   * (a stale estimate of one row walked the DLQ index over every row
   * of a topic, 0.45 s at a million, where a scan takes 0.17 s). */
  if (st->inserted + st->updated + st->removed > 0)
    rc = run(s, "ANALYZE dead_letters", err);
  return rc;
}

/* ---- replays ---------------------------------------------------------- */

#define REPLAYED_WHAT "could not record replays in the index"
#define REPLAYED_SQL                                                                         \
  "UPDATE dead_letters d SET status = CASE WHEN x.e IS NULL THEN 'replayed' ELSE 'failing' " \
  "END, replays = d.replays + 1, last_replayed_at = now(), last_error = x.e, "               \
  "edited = d.edited OR $2::boolean "                                                        \
  "FROM jsonb_to_recordset($1::jsonb) AS x(t text, p int, o bigint, e text) "                \
  "WHERE d.dlq_topic = x.t AND d.dlq_partition = x.p AND d.dlq_offset = x.o"

int kjb_dlqindex_send_replayed(kjb_store *s, const kjb_dlq_replayed *v, size_t n, bool edited,
                               kjb_err *err) {
  kjb_buf j;
  kjb_buf_init(&j);
  kjb_buf_putc(&j, '[');
  for (size_t i = 0; i < n; i++) {
    kjb_buf_puts(&j, i ? ",{\"t\":" : "{\"t\":");
    json_text(&j, v[i].dlq_topic);
    kjb_buf_printf(&j, ",\"p\":%d,\"o\":%" PRId64 ",\"e\":", (int)v[i].dlq_partition,
                   v[i].dlq_offset);
    json_text(&j, v[i].error);
    kjb_buf_putc(&j, '}');
  }
  kjb_buf_putc(&j, ']');
  const char *params[] = {j.data, edited ? "true" : "false"};
  int rc = kjb_store_send_prepared(s, REPLAYED_WHAT, REPLAYED_SQL, 2, params, err);
  kjb_buf_close(&j);
  return rc;
}

int kjb_dlqindex_replayed_result(kjb_store *s, kjb_err *err) {
  PGresult *r = kjb_store_result(s, REPLAYED_WHAT, err);
  if (!r)
    return -KJB_EPG;
  PQclear(r);
  return 0;
}

int kjb_dlqindex_mark_replayed(kjb_store *s, const kjb_dlq_replayed *v, size_t n, bool edited,
                               kjb_err *err) {
  if (n == 0)
    return 0;
  int rc = kjb_dlqindex_send_replayed(s, v, n, edited, err);
  return rc < 0 ? rc : kjb_dlqindex_replayed_result(s, err);
}
