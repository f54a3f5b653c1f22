/* kjb dlq peek. */
#include "dlq.h"

#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "util.h"

static const char *hdr(rd_kafka_headers_t *h, const char *name, char *buf, size_t len) {
  const void *val;
  size_t size;
  buf[0] = '\0';
  if (h && rd_kafka_header_get_last(h, name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR && val)
    snprintf(buf, len, "%.*s", (int)size, (const char *)val);
  return buf;
}

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

static void print_text(FILE *out, const rd_kafka_message_t *m, rd_kafka_headers_t *h) {
  char topic[256], part[32], off[32], stage[64], code[128], msg[1024], at[64];
  fprintf(out, "%s [%d] @%lld  from %s [%s] @%s  %s  %s  %s\n  %s\n",
          rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset,
          hdr(h, "__connect.errors.topic", topic, sizeof topic),
          hdr(h, "__connect.errors.partition", part, sizeof part),
          hdr(h, "__connect.errors.offset", off, sizeof off),
          hdr(h, "__connect.errors.exception.class.name", code, sizeof code),
          hdr(h, "__connect.errors.stage", stage, sizeof stage),
          hdr(h, "kjb.dead_lettered_at", at, sizeof at),
          hdr(h, "__connect.errors.exception.message", msg, sizeof msg));
}

static int matches(const kjb_dlq_peek_opts *o, rd_kafka_headers_t *h) {
  if (!o->code)
    return 1;
  char code[128];
  hdr(h, "__connect.errors.exception.class.name", code, sizeof code);
  const char *want = strncmp(o->code, "kjb.", 4) == 0 ? o->code + 4 : o->code;
  return strncmp(code, "kjb.", 4) == 0 && strcmp(code + 4, want) == 0;
}

int kjb_dlq_peek(const kjb_config *cfg, const kjb_dlq_peek_opts *o, FILE *out, long *shown,
                 kjb_err *err) {
  *shown = 0;
  static const char *const defaults[] = {"enable.partition.eof", "true", "group.id", "kjb.peek",
                                         "enable.auto.commit", "false", NULL};
  rd_kafka_conf_t *conf = kjb_kafka_conf(cfg, defaults, err);
  if (!conf)
    return -(int)err->code;
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return kjb_err_set(err, KJB_EKAFKA, "could not create consumer: %s", errstr);
  }
  int rc = 0;
  const rd_kafka_metadata_t *md = NULL;
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
      if (matches(o, h)) {
        (o->json ? print_json : print_text)(out, m, h);
        (*shown)++;
      }
      if (idx >= 0 && ends[idx] >= 0 && m->offset + 1 >= ends[idx]) {
        ends[idx] = -1;
        open--;
      }
    }
    rd_kafka_message_destroy(m);
  }
  free(ends);
out:
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}
