/* The dead-letter headers, written and read, and kjb dlq peek. */
#include "dlq.h"

#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

/* ---- the headers ---------------------------------------------------- */

const char *kjb_dlq_error_class(kjb_errcode code, char *buf, size_t cap) {
  snprintf(buf, cap, KJB_DLQ_KJB_PREFIX "%s", kjb_err_name(code));
  return buf;
}

static void add(rd_kafka_headers_t *h, const char *name, const char *val) {
  rd_kafka_header_add(h, name, -1, val, -1);
}

void kjb_dlq_headers_add(rd_kafka_headers_t *h, const kjb_dead_letter *d) {
  char num[32];
  add(h, KJB_DLQ_TOPIC, d->topic);
  kjb_fmt_i64(num, d->partition);
  add(h, KJB_DLQ_PARTITION, num);
  kjb_fmt_i64(num, d->offset);
  add(h, KJB_DLQ_OFFSET, num);
  add(h, KJB_DLQ_STAGE, d->stage);
  add(h, KJB_DLQ_CLASS, "kjb");
  add(h, KJB_DLQ_EXCEPTION_CLASS, d->error_class);
  add(h, KJB_DLQ_EXCEPTION_MESSAGE, d->message);
  kjb_fmt_i64(num, d->timestamp);
  add(h, KJB_DLQ_ORIGINAL_TIMESTAMP, num);
  add(h, KJB_DLQ_CONSUMER_GROUP, d->group);
  if (d->at) {
    add(h, KJB_DLQ_DEAD_LETTERED_AT, d->at);
  } else {
    kjb_buf now;
    kjb_buf_init(&now);
    kjb_buf_rfc3339(&now, kjb_now_wall_us(), 3);
    add(h, KJB_DLQ_DEAD_LETTERED_AT, now.data);
    kjb_buf_close(&now);
  }
}

/* The last header called name, copied into the arena, or NULL when there
 * is none or it holds a NUL byte. */
static const char *text(const rd_kafka_headers_t *h, const char *name, kjb_arena *arena) {
  const void *val;
  size_t size;
  /* librdkafka's getter takes a non-const list but only reads it. */
  if (!h ||
      rd_kafka_header_get_last((rd_kafka_headers_t *)h, name, &val, &size) !=
          RD_KAFKA_RESP_ERR_NO_ERROR ||
      !val || memchr(val, '\0', size))
    return NULL;
  char *s = kjb_arena_strndup(arena, val, size);
  if (!s)
    abort();
  return s;
}

/* The header as an integer in [min, max], else -1. */
static int64_t number(const rd_kafka_headers_t *h, const char *name, int64_t min, int64_t max,
                      kjb_arena *arena) {
  const char *s = text(h, name, arena);
  int64_t v;
  return s && kjb_parse_i64(s, min, max, &v) == 0 ? v : -1;
}

int kjb_dlq_headers_parse(const rd_kafka_headers_t *h, kjb_arena *arena, kjb_dead_letter *d,
                          kjb_err *err) {
  /* A malformed coordinate must not become another record's (0 from
   * "junk"): the jobs' unique source coordinates would swallow it. */
  *d = (kjb_dead_letter){
      .topic = text(h, KJB_DLQ_TOPIC, arena),
      .partition = (int32_t)number(h, KJB_DLQ_PARTITION, 0, INT32_MAX, arena),
      .offset = number(h, KJB_DLQ_OFFSET, 0, INT64_MAX, arena),
      .stage = text(h, KJB_DLQ_STAGE, arena),
      .error_class = text(h, KJB_DLQ_EXCEPTION_CLASS, arena),
      .message = text(h, KJB_DLQ_EXCEPTION_MESSAGE, arena),
      .timestamp = number(h, KJB_DLQ_ORIGINAL_TIMESTAMP, -1, INT64_MAX, arena),
      .group = text(h, KJB_DLQ_CONSUMER_GROUP, arena),
      .at = text(h, KJB_DLQ_DEAD_LETTERED_AT, arena),
  };
  if (!d->topic || d->partition < 0 || d->offset < 0)
    return kjb_err_set(err, KJB_EBAD_VALUE,
                       "not a dead letter: no valid " KJB_DLQ_TOPIC "/partition/offset headers");
  return 0;
}

int kjb_dlq_is_error_header(const char *name) {
  return strncmp(name, KJB_DLQ_CONNECT_PREFIX, strlen(KJB_DLQ_CONNECT_PREFIX)) == 0 ||
         strncmp(name, KJB_DLQ_KJB_PREFIX, strlen(KJB_DLQ_KJB_PREFIX)) == 0;
}

const char *kjb_dlq_reason(const char *error_class) {
  if (!error_class || !*error_class)
    return "UNKNOWN";
  const size_t n = strlen(KJB_DLQ_KJB_PREFIX);
  if (strncmp(error_class, KJB_DLQ_KJB_PREFIX, n) == 0 && error_class[n])
    return error_class + n;
  return error_class;
}

/* The decimal number at s (at most 18 digits, then no digit) into *out and
 * the text after it into *end; -1 when there is none. */
static int leading_number(const char *s, long *out, const char **end) {
  size_t n = strspn(s, "0123456789");
  if (n == 0 || n > 18)
    return -1;
  *out = strtol(s, NULL, 10);
  *end = s + n;
  return 0;
}

/* The wording of the decoder's messages (avrodec.c) and of the framing
 * checks (catalog.c): "byte N: ..." for the framing, "avro body at byte
 * H: " before anything the body's decoder says, and "at byte N" where the
 * decoder stopped. */
long kjb_dlq_failing_byte(const char *message) {
  static const char body[] = "avro body at byte ", framing[] = "byte ", at[] = "at byte ";
  long base = 0, n;
  const char *p = message, *end;
  if (!p)
    return -1;
  if (strncmp(p, body, sizeof body - 1) == 0) {
    if (leading_number(p + sizeof body - 1, &base, &end) < 0 || *end != ':')
      return -1;
    p = end;
  } else if (strncmp(p, framing, sizeof framing - 1) == 0) {
    return leading_number(p + sizeof framing - 1, &n, &end) == 0 && *end == ':' ? n : -1;
  }
  for (const char *q = strstr(p, at); q; q = strstr(q + 1, at))
    if (leading_number(q + sizeof at - 1, &n, &end) == 0)
      return base + n;
  return -1;
}

/* ---- reading single records ----------------------------------------- */

struct kjb_dlq_reader {
  rd_kafka_t *rk;
};

kjb_dlq_reader *kjb_dlq_reader_new(const kjb_config *cfg, kjb_err *err) {
  /* auto.offset.reset=error: an offset before the log start is an error
   * to report, not a jump to another record. */
  static const char *const defaults[] = {"group.id",
                                         "kjb.dlq-reader",
                                         "enable.auto.commit",
                                         "false",
                                         "enable.partition.eof",
                                         "true",
                                         "auto.offset.reset",
                                         "error",
                                         "isolation.level",
                                         "read_committed",
                                         NULL};
  rd_kafka_conf_t *conf = kjb_kafka_conf(cfg, RD_KAFKA_CONSUMER, defaults, err);
  if (!conf)
    return NULL;
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    kjb_err_set(err, KJB_EKAFKA, "could not create consumer: %s", errstr);
    return NULL;
  }
  rd_kafka_poll_set_consumer(rk);
  kjb_dlq_reader *r = kjb_xcalloc(1, sizeof *r);
  r->rk = rk;
  return r;
}

void kjb_dlq_reader_free(kjb_dlq_reader *r) {
  if (!r)
    return;
  rd_kafka_assign(r->rk, NULL);
  rd_kafka_consumer_close(r->rk);
  rd_kafka_destroy(r->rk);
  free(r);
}

int kjb_dlq_reader_get(kjb_dlq_reader *r, const char *topic, int32_t partition, int64_t offset,
                       int timeout_ms, rd_kafka_message_t **out, kjb_err *err) {
  *out = NULL;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
  rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e)
    return kjb_err_set(err, KJB_EKAFKA, "could not read \"%s\" [%d]: %s", topic, (int)partition,
                       rd_kafka_err2str(e));
  int rc = kjb_err_set(err, KJB_EKAFKA, "could not read \"%s\" [%d] @%lld: no answer in %d ms",
                       topic, (int)partition, (long long)offset, timeout_ms);
  int64_t deadline = kjb_now_mono_us() + (int64_t)timeout_ms * 1000;
  while (kjb_now_mono_us() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->partition == partition) {
      rc = kjb_err_set(err, KJB_EKAFKA,
                       "no record at \"%s\" [%d] @%lld: the partition ends at offset %lld", topic,
                       (int)partition, (long long)offset, (long long)m->offset);
      rc = 1;
    } else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
               m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
      int64_t low = -1, high = -1;
      rd_kafka_query_watermark_offsets(r->rk, topic, partition, &low, &high, 5000);
      if (high >= 0 && offset >= high)
        kjb_err_set(err, KJB_EKAFKA,
                    "no record at \"%s\" [%d] @%lld: the partition ends at offset %lld", topic,
                    (int)partition, (long long)offset, (long long)high);
      else
        kjb_err_set(err, KJB_EKAFKA,
                    "no record at \"%s\" [%d] @%lld: the log starts at offset %lld (deleted by "
                    "retention)",
                    topic, (int)partition, (long long)offset, (long long)low);
      rc = 1;
    } else if (m->err) {
      /* Transient (a broker away): keep polling until the deadline. */
      kjb_err_set(err, KJB_EKAFKA, "could not read \"%s\" [%d] @%lld: %s", topic, (int)partition,
                  (long long)offset, rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      continue;
    } else if (m->offset == offset) {
      *out = m;
      rc = 0;
      break;
    } else {
      /* The next committed record lies past it: an aborted transaction's
       * record, or one compacted away. */
      kjb_err_set(err, KJB_EKAFKA,
                  "no committed record at \"%s\" [%d] @%lld (the next one is @%lld)", topic,
                  (int)partition, (long long)offset, (long long)m->offset);
      rc = 1;
    }
    rd_kafka_message_destroy(m);
    break;
  }
  rd_kafka_assign(r->rk, NULL);
  return rc;
}

/* ---- peek ----------------------------------------------------------- */

static void json_bytes(kjb_buf *b, const void *p, size_t n) {
  if (!p) {
    kjb_buf_puts(b, "null");
  } else if (kjb_utf8_invalid_at(p, n) < 0) {
    kjb_buf_json_str(b, p, n);
  } else {
    kjb_buf_puts(b, "{\"base64\":\"");
    kjb_buf_base64(b, p, n);
    kjb_buf_puts(b, "\"}");
  }
}

static void print_json(FILE *out, const rd_kafka_message_t *m, rd_kafka_headers_t *h) {
  kjb_buf b;
  kjb_buf_init(&b);
  const char *topic = rd_kafka_topic_name(m->rkt);
  kjb_buf_puts(&b, "{\"topic\":");
  kjb_buf_json_str(&b, topic, strlen(topic));
  kjb_buf_printf(&b, ",\"partition\":%d,\"offset\":%lld,\"key\":", (int)m->partition,
                 (long long)m->offset);
  json_bytes(&b, m->key, m->key_len);
  kjb_buf_puts(&b, ",\"value\":{\"base64\":\"");
  kjb_buf_base64(&b, m->payload, m->payload ? m->len : 0);
  kjb_buf_puts(&b, "\"},\"headers\":{");
  const char *name;
  const void *val;
  size_t len;
  for (size_t i = 0; h && rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; i++) {
    if (i)
      kjb_buf_putc(&b, ',');
    json_bytes(&b, name, strlen(name));
    kjb_buf_putc(&b, ':');
    json_bytes(&b, val, len);
  }
  kjb_buf_puts(&b, "}}\n");
  fwrite(b.data, 1, b.len, out);
  kjb_buf_close(&b);
}

static const char *or_empty(const char *s) { return s ? s : ""; }

/* One record in two lines. The widths are those peek always printed. */
static void print_text(FILE *out, const rd_kafka_message_t *m, const kjb_dead_letter *d) {
  char part[32] = "", off[32] = "";
  if (d->partition >= 0)
    snprintf(part, sizeof part, "%d", (int)d->partition);
  if (d->offset >= 0)
    snprintf(off, sizeof off, "%lld", (long long)d->offset);
  fprintf(out, "%s [%d] @%lld  from %.255s [%s] @%s  %.127s  %.63s  %.63s\n  %.1023s\n",
          rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset, or_empty(d->topic),
          part, off, or_empty(d->error_class), or_empty(d->stage), or_empty(d->at),
          or_empty(d->message));
}

static int matches(const kjb_dlq_peek_opts *o, const kjb_dead_letter *d) {
  if (!o->code)
    return 1;
  const size_t n = strlen(KJB_DLQ_KJB_PREFIX);
  const char *want = strncmp(o->code, KJB_DLQ_KJB_PREFIX, n) == 0 ? o->code + n : o->code;
  return d->error_class && strncmp(d->error_class, KJB_DLQ_KJB_PREFIX, n) == 0 &&
         strcmp(d->error_class + n, want) == 0;
}

int kjb_dlq_peek(const kjb_config *cfg, const kjb_dlq_peek_opts *o, FILE *out, long *shown,
                 kjb_err *err) {
  *shown = 0;
  static const char *const defaults[] = {"enable.partition.eof", "true",  "group.id", "kjb.peek",
                                         "enable.auto.commit",   "false", NULL};
  kjb_kafka_errors errors;
  rd_kafka_t *rk = kjb_kafka_consumer_connect(cfg, defaults, &errors, err);
  if (!rk)
    return -(int)err->code;
  kjb_arena *arena = kjb_arena_new(4096);
  if (!arena)
    abort();
  const rd_kafka_metadata_t *md = NULL;
  int rc = 0;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  rd_kafka_topic_destroy(rkt);
  if (e || md->topic_cnt != 1 || md->topics[0].err) {
    rc = kjb_err_set(err, KJB_EKAFKA, "topic \"%s\": %s", o->topic,
                     rd_kafka_err2str(e ? e : md->topics[0].err));
    goto out;
  }
  int n = md->topics[0].partition_cnt, open = 0;
  int64_t *ends = kjb_xcalloc((size_t)n + 1, sizeof *ends);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
  for (int i = 0; i < n; i++) {
    int32_t p = md->topics[0].partitions[i].id;
    int64_t low;
    if ((e = rd_kafka_query_watermark_offsets(rk, o->topic, p, &low, &ends[i], 10000)))
      break;
    rd_kafka_topic_partition_list_add(l, o->topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if (ends[i] > low)
      open++;
    else
      ends[i] = -1; /* empty: nothing to wait for, and its EOF must not count */
  }
  if (!e)
    e = rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    rc = kjb_err_set(err, KJB_EKAFKA, "could not read \"%s\": %s", o->topic, rd_kafka_err2str(e));
    free(ends);
    goto out;
  }
  while (open > 0 && (o->limit <= 0 || *shown < o->limit)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
    if (!m)
      continue;
    int idx = -1;
    for (int i = 0; i < n; i++)
      if (md->topics[0].partitions[i].id == m->partition)
        idx = i;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (idx >= 0 && ends[idx] >= 0 && m->offset >= ends[idx]) {
        ends[idx] = -1;
        open--;
      }
    } else if (!m->err) {
      rd_kafka_headers_t *h = NULL;
      if (rd_kafka_message_headers(m, &h))
        h = NULL;
      kjb_dead_letter d;
      kjb_err ignored; /* any record is shown, a dead letter or not */
      kjb_dlq_headers_parse(h, arena, &d, &ignored);
      if (matches(o, &d)) {
        if (o->json)
          print_json(out, m, h);
        else
          print_text(out, m, &d);
        (*shown)++;
      }
      kjb_arena_reset(arena);
      if (idx >= 0 && ends[idx] >= 0 && m->offset + 1 >= ends[idx]) {
        ends[idx] = -1;
        open--;
      }
    }
    rd_kafka_message_destroy(m);
  }
  free(ends);
out:
  kjb_arena_free(arena);
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}
