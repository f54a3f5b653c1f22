/* kjb produce: JSON lines to framed Avro records on a topic. */
#include "produce.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "catalog.h"
#include "kafka.h"
#include "progress.h"
#include "util.h"

/* What the callbacks need. */
typedef struct {
  const kjb_produce_opts *o;
  kjb_produce_stats *st;
  kjb_kafka_errors kafka;
  kjb_progress *progress;
  uint64_t delivered;
} run;

static void on_produced(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  run *r = opaque;
  if (m->err && r->kafka.failed) {
    r->st->undelivered++; /* purged: the one error that ends the command says why */
  } else if (m->err) {
    kjb_progress_clear(r->progress);
    fprintf(r->o->errs, "%sline %zu: not delivered: %s\n", r->o->prefix,
            (size_t)(uintptr_t)m->_private, rd_kafka_err2str(m->err));
    r->st->undelivered++;
  } else {
    r->delivered++;
  }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  run *r = opaque;
  kjb_kafka_note_error(&r->kafka, rk, err, reason);
}

/* The key is the field's text: strings as they are, other values as
 * compact JSON ("42"). */
static void key_of(const json_t *doc, const char *key_path, kjb_buf *key) {
  json_t *kv = key_path ? json_object_get(doc, key_path) : NULL;
  if (json_is_string(kv)) {
    kjb_buf_append(key, json_string_value(kv), json_string_length(kv));
  } else if (kv) {
    char *text = json_dumps(kv, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text)
      kjb_buf_puts(key, text);
    free(text);
  }
}

/* Stops reading early when the producer hits an error retrying will not
 * mend: then nothing more could be delivered. */
static void produce_all(rd_kafka_t *rk, const kjb_schema *schema, const kjb_buf *header, run *r) {
  const kjb_produce_opts *o = r->o;
  kjb_produce_stats *st = r->st;
  kjb_buf rec;
  kjb_buf_init(&rec);
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t n;
  kjb_err err;
  while (!r->kafka.failed && (n = getline(&line, &cap, o->in)) >= 0) {
    lineno++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = '\0';
    if (n == 0)
      continue;
    json_error_t jerr;
    json_t *doc = json_loadb(line, (size_t)n, JSON_DECODE_ANY, &jerr);
    if (!doc) {
      kjb_progress_clear(r->progress);
      fprintf(o->errs, "%sline %zu: invalid json at column %d: %s\n", o->prefix, lineno,
              jerr.column, jerr.text);
      st->bad++;
      continue;
    }
    kjb_buf_reset(&rec);
    kjb_buf_append(&rec, header->data, header->len);
    if (kjb_avro_encode(schema, doc, &rec, &err) < 0) {
      kjb_progress_clear(r->progress);
      fprintf(o->errs, "%sline %zu: %s\n", o->prefix, lineno, err.msg);
      st->bad++;
      json_decref(doc);
      continue;
    }
    kjb_buf key;
    kjb_buf_init(&key);
    key_of(doc, o->key_path, &key);
    json_decref(doc);
    rd_kafka_resp_err_t e;
    while (
        (e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_VALUE(rec.data, rec.len),
                               RD_KAFKA_V_KEY(key.len ? key.data : NULL, key.len),
                               RD_KAFKA_V_OPAQUE((void *)(uintptr_t)lineno),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
            RD_KAFKA_RESP_ERR__QUEUE_FULL &&
        !r->kafka.failed)
      rd_kafka_poll(rk, 100);
    kjb_buf_close(&key);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      break; /* r->kafka.failed, which says why */
    if (e) {
      kjb_progress_clear(r->progress);
      fprintf(o->errs, "%sline %zu: %s\n", o->prefix, lineno, rd_kafka_err2str(e));
      st->bad++;
      continue;
    }
    st->produced++;
    rd_kafka_poll(rk, 0);
    kjb_progress_update(r->progress, r->delivered);
  }
  free(line);
  kjb_buf_close(&rec);
}

/* The lines produce_all will produce, when in is a regular file: those
 * with anything but line ends. in is read and put back where it was; 0
 * when it is not a regular file or cannot be put back. */
static uint64_t count_lines(FILE *in) {
  struct stat sb;
  off_t at = ftello(in);
  if (fstat(fileno(in), &sb) < 0 || !S_ISREG(sb.st_mode) || at < 0)
    return 0;
  uint64_t lines = 0;
  bool filled = false;
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, in)) > 0) {
    for (size_t i = 0; i < n; i++) {
      if (chunk[i] == '\n') {
        lines += filled;
        filled = false;
      } else if (chunk[i] != '\r') {
        filled = true;
      }
    }
  }
  lines += filled;
  clearerr(in);
  return fseeko(in, at, SEEK_SET) == 0 ? lines : 0;
}

int kjb_produce_lines(const kjb_config *cfg, const kjb_produce_opts *o, volatile sig_atomic_t *stop,
                      kjb_produce_stats *st, kjb_err *err) {
  *st = (kjb_produce_stats){0};
  const kjb_topic_cfg *t = kjb_config_topic(cfg, o->topic);
  if (!t)
    return kjb_err_set(err, KJB_EUSAGE, "topic \"%s\" is not in the configuration", o->topic);
  int rc = 0;
  rd_kafka_t *rk = NULL;
  kjb_buf header;
  kjb_buf_init(&header);
  kjb_catalog *cat = kjb_catalog_new(cfg, err);
  if (!cat || kjb_frame_header(cat, t, o->schema_id, &header, err) < 0) {
    rc = -(int)err->code;
    goto out;
  }
  static const char *const defaults[] = {"enable.idempotence", "true", "acks", "all",
                                         "linger.ms",          "20",   NULL};
  rd_kafka_conf_t *conf = kjb_kafka_conf(cfg, RD_KAFKA_PRODUCER, defaults, err);
  if (!conf) {
    rc = -(int)err->code;
    goto out;
  }
  run r = {o, st, {0}, NULL, 0};
  rd_kafka_conf_set_dr_msg_cb(conf, on_produced);
  rd_kafka_conf_set_error_cb(conf, on_error);
  rd_kafka_conf_set_opaque(conf, &r);
  char errstr[512];
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    rc = kjb_err_set(err, KJB_EKAFKA, "could not create producer: %s", errstr);
    goto out;
  }
  if (o->progress)
    r.progress = kjb_progress_start(o->progress, "produce", count_lines(o->in));
  produce_all(rk, kjb_catalog_reader(cat, t), &header, &r);
  /* Short waits, so that the progress line keeps moving. */
  while (!r.kafka.failed && rd_kafka_outq_len(rk) > 0 &&
         rd_kafka_flush(rk, 200) == RD_KAFKA_RESP_ERR__TIMED_OUT && !*stop)
    kjb_progress_update(r.progress, r.delivered);
  if (r.kafka.failed) {
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0); /* their delivery reports */
    rc = kjb_err_set(err, KJB_EKAFKA, "%s", r.kafka.reason);
  }
  kjb_progress_end(r.progress, r.delivered);
out:
  if (rk)
    rd_kafka_destroy(rk);
  kjb_buf_close(&header);
  kjb_catalog_free(cat);
  return rc;
}
