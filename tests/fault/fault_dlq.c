/* Fault test for the dead-letter path: kjb's ingest runs in-process against
 * librdkafka's mock cluster while its DLQ writes fail. It checks, while the
 * faults last, that no source offset is committed past a bad record whose
 * dead letter is not yet in the DLQ, and once they end, that every source
 * record is exactly one outcome: its job row in PostgreSQL or one DLQ
 * record, with the group's committed offsets at the end of each partition
 * and never moving back.
 *
 *   A  Produce errors on the DLQ broker for a while (some that librdkafka
 *      retries, some that kjb must retry itself), 1 broker
 *   B  the DLQ's broker down, then every broker down, 3 brokers
 *   C  kjb's first offset commit answered late with a retriable error, then
 *      a restart (commits must not be overtaken by a retried older one)
 *   H  the health probe asking the consumer all through a stop and after
 *      it (a closed consumer's assignment query used to wait forever)
 *
 *   fault_dlq [CONNINFO [SOURCE_DIR]]
 *
 * CONNINFO defaults to $KJB_POSTGRES_CONNINFO; SOURCE_DIR (the repository,
 * for schemas/avro) to $KJB_SOURCE_DIR, else the tree it was built from.
 * $KJB_FAULT_SCENARIOS picks scenarios ("AC"; default all),
 * $KJB_FAULT_LOG_LEVEL sets kjb's log level (default warn; debug also
 * shows the test's own librdkafka clients), $KJB_FAULT_RDKAFKA_DEBUG sets
 * librdkafka debug contexts for kjb's clients ("msg,cgrp"). Prints one
 * summary line per scenario; exits 0 when every assertion held, 1 when one
 * failed (with lines "fault_dlq: FAIL: ..." saying which), 2 on usage. */
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "ingest.h"
#include "log.h"
#include "store.h"
#include "util.h"

#ifndef KJB_FAULT_SOURCE_DIR
#define KJB_FAULT_SOURCE_DIR "."
#endif

/* The protocol's ApiKeys for ProduceRequest and OffsetCommitRequest;
 * librdkafka keeps its RD_KAFKAP_* in a private header. */
enum { API_PRODUCE = 0, API_OFFSET_COMMIT = 8 };

enum { NPARTS = 2 }; /* source partitions */

#define SOURCE_TOPIC "orders"
#define DLQ_TOPIC "orders.dlq"
#define JOB_KIND "confirm"
#define MAX_FAILURES 20

static const char *conninfo;
static const char *source_dir;
static char tmpdir[PATH_MAX / 2];
static int verbose;
static const char *rdkafka_debug; /* librdkafka debug contexts for kjb's clients */

/* ---- reporting -------------------------------------------------------- */

static int failures;

static void fail(const char *scenario, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records a failed assertion; the scenario goes on to its end so that one
 * run shows everything that is wrong, up to MAX_FAILURES lines. */
static void fail(const char *scenario, const char *fmt, ...) {
  if (++failures > MAX_FAILURES)
    return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fault_dlq: FAIL: scenario %s: ", scenario);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fault_dlq: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static double secs(int64_t us) { return (double)us / 1e6; }

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* librdkafka's own chatter from the test's helper clients (connection
 * refused while a broker is down, ...) is noise unless asked for. */
static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  if (verbose)
    fprintf(stderr, "fault_dlq: rdkafka %s: %s: %s\n", rd_kafka_name(rk), fac, buf);
}

static void conf_set(rd_kafka_conf_t *conf, const char *key, const char *val) {
  char errstr[256];
  if (rd_kafka_conf_set(conf, key, val, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "fault_dlq: %s=%s: %s\n", key, val, errstr);
    abort();
  }
}

static rd_kafka_conf_t *helper_conf(const char *bootstraps) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char errstr[256];
  rd_kafka_conf_set_log_cb(conf, quiet_log);
  conf_set(conf, "reconnect.backoff.max.ms", "1000");
  if (bootstraps &&
      rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof errstr) != 0) {
    fprintf(stderr, "fault_dlq: bootstrap.servers: %s\n", errstr);
    abort();
  }
  return conf;
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf) {
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "fault_dlq: could not create a client: %s\n", errstr);
    abort();
  }
  return rk;
}

/* ---- what was produced, and what the DLQ holds ------------------------- */

typedef struct {
  int32_t partition;
  int64_t offset; /* -1 until the broker acknowledged it */
  int bad;
  int64_t order_id; /* good records: the order_id in the value */
  char key[32];
  char trace[32]; /* the value of the record's "trace" header */
  uint8_t *value;
  size_t len;
} sent_rec;

typedef struct {
  int32_t src_partition;
  int64_t src_offset;
  int64_t dlq_offset;
  char *topic, *stage, *cls, *group, *trace, *when;
  void *key, *value;
  size_t key_len, len;
} dlq_rec;

static char *header_dup(rd_kafka_headers_t *h, const char *name) {
  const void *v;
  size_t n;
  if (!h || rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR || !v)
    return NULL;
  char *s = malloc(n + 1);
  memcpy(s, v, n);
  s[n] = '\0';
  return s;
}

static void *mem_dup(const void *p, size_t n) {
  if (!p)
    return NULL;
  void *q = malloc(n ? n : 1);
  memcpy(q, p, n);
  return q;
}

/* ---- a scenario -------------------------------------------------------- */

typedef struct {
  const char *name; /* "A", "B", "C" */
  char group[64];
  rd_kafka_t *host; /* the handle the mock cluster lives in */
  rd_kafka_mock_cluster_t *mc;
  char bootstraps[512];
  char cfg_path[PATH_MAX];
  kjb_config cfg;
  int cfg_loaded;
  kjb_catalog *cat;
  kjb_buf header; /* confluent framing for the reader schema's id */

  rd_kafka_t *producer; /* source records */
  sent_rec *sent;
  size_t nsent, capsent;

  rd_kafka_t *watch;  /* reads the kjb group's committed offsets */
  rd_kafka_t *reader; /* reads the DLQ from the beginning */
  int64_t dlq_next;   /* next DLQ offset to read */
  dlq_rec *dlq;
  size_t ndlq, capdlq;

  kjb_ingest *ing;
  pthread_t thread;
  int running;
  volatile sig_atomic_t stop;
  int ingest_rc;
  kjb_err ingest_err;

  kjb_ingest_stats stats; /* kjb's, when it stopped */
  char last_error[256];   /* why the last observation failed */

  /* Observations. */
  int64_t high[NPARTS];  /* highest committed offset seen */
  int went_back[NPARTS]; /* reported once */
  long checks, skipped;
  long pending_checks; /* checks that saw a dead letter not yet in the DLQ */
} scenario;

static void on_source_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  scenario *sc = opaque;
  size_t i = (size_t)(uintptr_t)m->_private;
  if (m->err) {
    fail(sc->name, "could not produce source record %zu: %s", i, rd_kafka_err2str(m->err));
    return;
  }
  sc->sent[i].partition = m->partition;
  sc->sent[i].offset = m->offset;
}

static void run_config(scenario *sc, const char *properties) {
  snprintf(sc->cfg_path, sizeof sc->cfg_path, "%s/kjb-%s.cfg", tmpdir, sc->name);
  FILE *f = fopen(sc->cfg_path, "w");
  if (!f) {
    fprintf(stderr, "fault_dlq: %s: %s\n", sc->cfg_path, strerror(errno));
    abort();
  }
  fprintf(f,
          "kafka = { brokers = \"%s\"; group = \"%s\";\n"
          "          properties = [ %s ]; };\n"
          "postgres = { conninfo = \"",
          sc->bootstraps, sc->group, properties);
  for (const char *p = conninfo; *p; p++) {
    if (*p == '"' || *p == '\\')
      fputc('\\', f);
    fputc(*p, f);
  }
  fprintf(f,
          "\"; schema = \"kjb\"; };\n"
          "schemas = { dir = \"%s/schemas/avro\";\n"
          "            ids = ( { id = 1; file = \"order_created.avsc\"; } ); };\n"
          "ingest = { batch_size = 4; batch_timeout = \"50ms\"; };\n"
          "topics = (\n"
          "  { topic = \"" SOURCE_TOPIC "\"; format = \"confluent\";\n"
          "    schema = \"order_created.avsc\"; dlq = \"" DLQ_TOPIC "\";\n"
          "    jobs = ( { kind = \"" JOB_KIND "\"; } ); }\n"
          ");\n"
          "handlers = ( { kind = \"" JOB_KIND "\"; type = \"log\"; } );\n",
          source_dir);
  fclose(f);
}

/* Creates the mock cluster with the source and DLQ topics, kjb's
 * configuration and catalog for it, the source producer and the two
 * observers. leaders[] places the source partitions and the DLQ (last)
 * on brokers; coordinator is the group coordinator's broker. */
static int scenario_open(scenario *sc, const char *name, int nbrokers, const int *leaders,
                         int coordinator, const char *properties) {
  memset(sc, 0, sizeof *sc);
  sc->name = name;
  for (int p = 0; p < NPARTS; p++)
    sc->high[p] = RD_KAFKA_OFFSET_INVALID;
  snprintf(sc->group, sizeof sc->group, "kjb-fault-%s", name);
  kjb_buf_init(&sc->header);

  rd_kafka_conf_t *conf = helper_conf(NULL);
  sc->host = new_client(RD_KAFKA_PRODUCER, conf);
  sc->mc = rd_kafka_mock_cluster_new(sc->host, nbrokers);
  if (!sc->mc) {
    fail(name, "could not create a mock cluster of %d brokers", nbrokers);
    return -1;
  }
  snprintf(sc->bootstraps, sizeof sc->bootstraps, "%s", rd_kafka_mock_cluster_bootstraps(sc->mc));
  int rf = nbrokers < 3 ? nbrokers : 3;
  if (rd_kafka_mock_topic_create(sc->mc, SOURCE_TOPIC, NPARTS, rf) ||
      rd_kafka_mock_topic_create(sc->mc, DLQ_TOPIC, 1, rf)) {
    fail(name, "could not create the mock topics");
    return -1;
  }
  if (leaders) {
    for (int p = 0; p < NPARTS; p++)
      rd_kafka_mock_partition_set_leader(sc->mc, SOURCE_TOPIC, p, leaders[p]);
    rd_kafka_mock_partition_set_leader(sc->mc, DLQ_TOPIC, 0, leaders[NPARTS]);
  }
  if (coordinator > 0)
    rd_kafka_mock_coordinator_set(sc->mc, "group", sc->group, coordinator);

  /* librdkafka's default message timeout (300 s) is kept, so that kjb's
   * own retry of a dead letter is driven by errors librdkafka does not
   * retry, never by a timeout that might hide a delivered record. A broker
   * that comes back is found within a second, not after librdkafka's
   * default backoff of up to 10 s. */
  char props[512];
  snprintf(props, sizeof props, "\"reconnect.backoff.max.ms=1000\"%s%s%s%s%s",
           properties ? ", " : "", properties ? properties : "", rdkafka_debug ? ", \"debug=" : "",
           rdkafka_debug ? rdkafka_debug : "", rdkafka_debug ? "\"" : "");
  run_config(sc, props);
  kjb_err err;
  if (kjb_config_load(sc->cfg_path, &sc->cfg, &err) < 0) {
    fail(name, "config: %s", err.msg);
    return -1;
  }
  sc->cfg_loaded = 1;
  /* The mock cluster, as with kafka.brokers = "embedded": it has no real
   * transactions, so kjb takes its produce-then-commit path, which is
   * what these scenarios check. */
  sc->cfg.kafka.embedded = 1;
  if (!(sc->cat = kjb_catalog_new(&sc->cfg, &err)) ||
      kjb_frame_header(sc->cat, &sc->cfg.topics[0], -1, &sc->header, &err) < 0) {
    fail(name, "catalog: %s", err.msg);
    return -1;
  }

  conf = helper_conf(sc->bootstraps);
  conf_set(conf, "enable.idempotence", "true");
  conf_set(conf, "acks", "all");
  conf_set(conf, "linger.ms", "0");
  rd_kafka_conf_set_dr_msg_cb(conf, on_source_delivery);
  rd_kafka_conf_set_opaque(conf, sc);
  sc->producer = new_client(RD_KAFKA_PRODUCER, conf);

  /* The same group id as kjb, only to fetch its committed offsets: this
   * consumer never subscribes, so it never joins the group. */
  conf = helper_conf(sc->bootstraps);
  conf_set(conf, "group.id", sc->group);
  conf_set(conf, "enable.auto.commit", "false");
  conf_set(conf, "enable.auto.offset.store", "false");
  sc->watch = new_client(RD_KAFKA_CONSUMER, conf);

  conf = helper_conf(sc->bootstraps);
  conf_set(conf, "group.id", "fault-dlq-reader");
  conf_set(conf, "enable.auto.commit", "false");
  conf_set(conf, "auto.offset.reset", "earliest");
  conf_set(conf, "enable.partition.eof", "false");
  sc->reader = new_client(RD_KAFKA_CONSUMER, conf);
  rd_kafka_poll_set_consumer(sc->reader);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, DLQ_TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(sc->reader, l);
  rd_kafka_topic_partition_list_destroy(l);
  return 0;
}

/* Produces source record i: a good order, or (bad) bytes with a bad
 * magic byte, each with a key and a header that the DLQ must keep. */
static void produce_record(scenario *sc, int bad) {
  if (sc->nsent == sc->capsent) {
    sc->capsent = sc->capsent ? sc->capsent * 2 : 64;
    sc->sent = realloc(sc->sent, sc->capsent * sizeof *sc->sent);
  }
  size_t i = sc->nsent++;
  sent_rec *r = &sc->sent[i];
  memset(r, 0, sizeof *r);
  r->partition = (int32_t)(i % NPARTS);
  r->offset = -1;
  r->bad = bad;
  r->order_id = 100000 + (int64_t)i;
  snprintf(r->key, sizeof r->key, "%s-%zu", bad ? "bad" : "order", i);
  snprintf(r->trace, sizeof r->trace, "trace-%zu", i);
  kjb_buf v;
  kjb_buf_init(&v);
  if (bad) {
    /* Magic byte 0x07 where confluent framing has 0x00. */
    kjb_buf_printf(&v, "%cnot avro %zu", 7, i);
  } else {
    json_t *doc = json_pack(
        "{s:I, s:{s:I, s:s, s:s}, s:s, s:s, s:[{s:s, s:i, s:f}], s:I, s:n, s:{}}", "order_id",
        (json_int_t)r->order_id, "customer", "id", (json_int_t)7, "email", "ada@example.com",
        "name", "Ada", "amount", "19.99", "currency", "EUR", "items", "sku", "A-1", "quantity", 2,
        "price", 9.995, "created_at", (json_int_t)1763719200000LL + (json_int_t)i, "note", "tags");
    kjb_err err;
    kjb_buf_append(&v, sc->header.data, sc->header.len);
    if (!doc ||
        kjb_avro_encode(kjb_catalog_reader(sc->cat, &sc->cfg.topics[0]), doc, &v, &err) < 0) {
      fprintf(stderr, "fault_dlq: could not encode order %zu: %s\n", i, doc ? err.msg : "json");
      abort();
    }
    json_decref(doc);
  }
  r->len = v.len;
  r->value = mem_dup(v.data, v.len);
  kjb_buf_close(&v);
  rd_kafka_headers_t *h = rd_kafka_headers_new(1);
  rd_kafka_header_add(h, "trace", -1, r->trace, -1);
  rd_kafka_resp_err_t e = rd_kafka_producev(
      sc->producer, RD_KAFKA_V_TOPIC(SOURCE_TOPIC), RD_KAFKA_V_PARTITION(r->partition),
      RD_KAFKA_V_KEY(r->key, strlen(r->key)), RD_KAFKA_V_VALUE(r->value, r->len),
      RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)i),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (e) {
    rd_kafka_headers_destroy(h);
    fail(sc->name, "could not produce source record %zu: %s", i, rd_kafka_err2str(e));
  }
  rd_kafka_poll(sc->producer, 0);
}

static int flush_source(scenario *sc, int timeout_ms) {
  if (rd_kafka_flush(sc->producer, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fail(sc->name, "source records not acknowledged within %d ms", timeout_ms);
    return -1;
  }
  return 0;
}

/* The end offset of each source partition, from the acknowledgements. */
static void source_ends(const scenario *sc, int64_t end[NPARTS]) {
  for (int p = 0; p < NPARTS; p++)
    end[p] = 0;
  for (size_t i = 0; i < sc->nsent; i++)
    if (sc->sent[i].offset >= end[sc->sent[i].partition])
      end[sc->sent[i].partition] = sc->sent[i].offset + 1;
}

static size_t count_bad(const scenario *sc) {
  size_t n = 0;
  for (size_t i = 0; i < sc->nsent; i++)
    n += sc->sent[i].bad != 0;
  return n;
}

/* ---- observers --------------------------------------------------------- */

/* The kjb group's committed offsets (RD_KAFKA_OFFSET_INVALID, i.e. -1001,
 * where none). Returns -1 when the coordinator cannot be asked. */
static int read_committed(scenario *sc, int64_t committed[NPARTS], int timeout_ms) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NPARTS);
  for (int p = 0; p < NPARTS; p++)
    rd_kafka_topic_partition_list_add(l, SOURCE_TOPIC, p);
  rd_kafka_resp_err_t e = rd_kafka_committed(sc->watch, l, timeout_ms);
  int rc = 0;
  for (int i = 0; !e && i < l->cnt; i++) {
    if (l->elems[i].err)
      e = l->elems[i].err;
    else
      committed[l->elems[i].partition] = l->elems[i].offset;
  }
  if (e) {
    snprintf(sc->last_error, sizeof sc->last_error, "committed offsets: %s", rd_kafka_err2str(e));
    rc = -1;
  }
  /* A committed offset that goes back means records already accounted for
   * will be delivered again: their dead letters a second time. */
  for (int p = 0; rc == 0 && p < NPARTS; p++) {
    if (committed[p] < sc->high[p] && !sc->went_back[p]) {
      sc->went_back[p] = 1;
      fail(sc->name, "the committed offset of %s [%d] went back from %lld to %lld", SOURCE_TOPIC, p,
           (long long)sc->high[p], (long long)committed[p]);
    }
    if (committed[p] > sc->high[p])
      sc->high[p] = committed[p];
  }
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

static void dlq_take(scenario *sc, const rd_kafka_message_t *m) {
  if (sc->ndlq == sc->capdlq) {
    sc->capdlq = sc->capdlq ? sc->capdlq * 2 : 32;
    sc->dlq = realloc(sc->dlq, sc->capdlq * sizeof *sc->dlq);
  }
  dlq_rec *d = &sc->dlq[sc->ndlq++];
  memset(d, 0, sizeof *d);
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
    h = NULL;
  char *part = header_dup(h, "__connect.errors.partition");
  char *off = header_dup(h, "__connect.errors.offset");
  d->src_partition = part ? (int32_t)strtol(part, NULL, 10) : -1;
  d->src_offset = off ? strtoll(off, NULL, 10) : -1;
  free(part);
  free(off);
  d->dlq_offset = m->offset;
  d->topic = header_dup(h, "__connect.errors.topic");
  d->stage = header_dup(h, "__connect.errors.stage");
  d->cls = header_dup(h, "__connect.errors.exception.class.name");
  d->group = header_dup(h, "kjb.consumer.group");
  d->trace = header_dup(h, "trace");
  d->when = header_dup(h, "kjb.dead_lettered_at");
  d->key = mem_dup(m->key, m->key_len);
  d->key_len = m->key ? m->key_len : 0;
  d->value = mem_dup(m->payload, m->len);
  d->len = m->payload ? m->len : 0;
}

/* Reads the DLQ up to its current end offset. Returns -1 when the end
 * cannot be learnt or reached within timeout_ms. */
static int dlq_catch_up(scenario *sc, int timeout_ms) {
  int64_t lo, hi;
  rd_kafka_resp_err_t e =
      rd_kafka_query_watermark_offsets(sc->reader, DLQ_TOPIC, 0, &lo, &hi, timeout_ms);
  if (e) {
    snprintf(sc->last_error, sizeof sc->last_error, "end of %s: %s", DLQ_TOPIC,
             rd_kafka_err2str(e));
    return -1;
  }
  int64_t deadline = kjb_now_mono_us() + (int64_t)timeout_ms * 1000;
  while (sc->dlq_next < hi) {
    if (kjb_now_mono_us() > deadline) {
      snprintf(sc->last_error, sizeof sc->last_error, "%s: could not read up to offset %lld",
               DLQ_TOPIC, (long long)hi);
      return -1;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(sc->reader, 100);
    if (!m)
      continue;
    if (!m->err && m->offset >= sc->dlq_next) {
      dlq_take(sc, m);
      sc->dlq_next = m->offset + 1;
    }
    rd_kafka_message_destroy(m);
  }
  return 0;
}

/* Whether the DLQ records read so far, up to (not including) DLQ offset
 * below, hold the dead letter of source record (p, off). */
static int dlq_has(const scenario *sc, int32_t p, int64_t off, int64_t below) {
  for (size_t i = 0; i < sc->ndlq; i++)
    if (sc->dlq[i].src_partition == p && sc->dlq[i].src_offset == off &&
        sc->dlq[i].dlq_offset < below)
      return 1;
  return 0;
}

/* The property under test, for committed offsets read at some moment and a
 * DLQ read at or after it up to dlq_end: no partition's committed offset
 * is past a bad record whose dead letter was not in the DLQ. Returns the
 * number of violations (each reported). */
static int check_committed(scenario *sc, const int64_t committed[NPARTS], int64_t dlq_end,
                           const char *when) {
  int bad = 0, pending = 0;
  for (size_t i = 0; i < sc->nsent; i++) {
    const sent_rec *r = &sc->sent[i];
    if (!r->bad || r->offset < 0 || dlq_has(sc, r->partition, r->offset, dlq_end))
      continue;
    int64_t c = committed[r->partition];
    if (c > r->offset) {
      fail(sc->name,
           "%s: committed offset %lld of %s [%d] is past bad record @%lld, whose dead letter "
           "is not in %s (DLQ read up to offset %lld)",
           when, (long long)c, SOURCE_TOPIC, (int)r->partition, (long long)r->offset, DLQ_TOPIC,
           (long long)dlq_end);
      bad++;
    } else {
      pending = 1;
    }
  }
  sc->checks++;
  sc->pending_checks += pending;
  return bad;
}

/* One observation: committed offsets first, then the DLQ, so that any
 * dead letter acknowledged before the commit is seen. Returns 1 when the
 * cluster could not be read (skipped), else 0. */
static int observe(scenario *sc, const char *when, int64_t committed[NPARTS]) {
  if (read_committed(sc, committed, 3000) < 0 || dlq_catch_up(sc, 2000) < 0) {
    sc->skipped++;
    return 1;
  }
  check_committed(sc, committed, sc->dlq_next, when);
  return 0;
}

static int at_end(const scenario *sc, const int64_t committed[NPARTS]) {
  int64_t end[NPARTS];
  source_ends(sc, end);
  for (int p = 0; p < NPARTS; p++)
    if (committed[p] != end[p])
      return 0;
  return 1;
}

/* Observes until the committed offsets reach the end of every partition.
 * Returns the moment they did, or -1 after timeout_s. */
static int64_t wait_committed_end(scenario *sc, const char *when, double timeout_s) {
  int64_t deadline = kjb_now_mono_us() + (int64_t)(timeout_s * 1e6);
  int64_t committed[NPARTS] = {-1, -1};
  while (kjb_now_mono_us() < deadline) {
    if (observe(sc, when, committed) == 0 && at_end(sc, committed))
      return kjb_now_mono_us();
    sleep_ms(20);
  }
  int64_t end[NPARTS];
  source_ends(sc, end);
  fail(sc->name,
       "committed offsets did not reach the end within %.0f s: [0] %lld of %lld, "
       "[1] %lld of %lld (last error: %s)",
       timeout_s, (long long)committed[0], (long long)end[0], (long long)committed[1],
       (long long)end[1], sc->last_error[0] ? sc->last_error : "none");
  return -1;
}

/* ---- kjb's ingest in a thread ------------------------------------------ */

static void *ingest_main(void *arg) {
  scenario *sc = arg;
  sc->ingest_rc = kjb_ingest_run(sc->ing, &sc->stop, &sc->ingest_err);
  return NULL;
}

static int start_ingest(scenario *sc) {
  kjb_err err;
  sc->stop = 0;
  sc->ing = kjb_ingest_new(&sc->cfg, sc->cat, &err);
  if (!sc->ing) {
    fail(sc->name, "could not start ingest: %s", err.msg);
    return -1;
  }
  if (pthread_create(&sc->thread, NULL, ingest_main, sc) != 0) {
    fail(sc->name, "could not start the ingest thread");
    return -1;
  }
  sc->running = 1;
  return 0;
}

static void stop_ingest(scenario *sc) {
  if (sc->running) {
    sc->stop = 1;
    pthread_join(sc->thread, NULL);
    sc->running = 0;
    if (sc->ingest_rc < 0)
      fail(sc->name, "ingest stopped with an error: %s", sc->ingest_err.msg);
  }
  if (sc->ing)
    kjb_ingest_get_stats(sc->ing, &sc->stats);
  kjb_ingest_free(sc->ing);
  sc->ing = NULL;
}

/* ---- end state --------------------------------------------------------- */

static int str_is(const char *have, const char *want) { return have && strcmp(have, want) == 0; }

/* Every bad record exactly once in the DLQ, byte for byte with its error
 * headers; nothing else there. */
static void check_dlq(scenario *sc) {
  if (dlq_catch_up(sc, 10000) < 0) {
    fail(sc->name, "could not read %s to its end", DLQ_TOPIC);
    return;
  }
  size_t nbad = 0;
  for (size_t i = 0; i < sc->nsent; i++) {
    const sent_rec *r = &sc->sent[i];
    if (!r->bad)
      continue;
    nbad++;
    size_t copies = 0;
    const dlq_rec *d = NULL;
    for (size_t k = 0; k < sc->ndlq; k++)
      if (sc->dlq[k].src_partition == r->partition && sc->dlq[k].src_offset == r->offset) {
        copies++;
        d = &sc->dlq[k];
      }
    if (copies != 1) {
      fail(sc->name, "bad record %s [%d] @%lld is %zu records in %s, want 1", SOURCE_TOPIC,
           (int)r->partition, (long long)r->offset, copies, DLQ_TOPIC);
      continue;
    }
    if (!str_is(d->topic, SOURCE_TOPIC) || !str_is(d->stage, "VALUE_CONVERTER") ||
        !str_is(d->cls, "kjb.BAD_MAGIC") || !str_is(d->group, sc->group) ||
        !str_is(d->trace, r->trace) || !d->when)
      fail(sc->name,
           "dead letter of [%d] @%lld has wrong headers: topic %s, stage %s, class %s, "
           "group %s, trace %s, dead_lettered_at %s",
           (int)r->partition, (long long)r->offset, d->topic ? d->topic : "-",
           d->stage ? d->stage : "-", d->cls ? d->cls : "-", d->group ? d->group : "-",
           d->trace ? d->trace : "-", d->when ? d->when : "-");
    if (d->key_len != strlen(r->key) || memcmp(d->key, r->key, d->key_len) != 0 ||
        d->len != r->len || memcmp(d->value, r->value, r->len) != 0)
      fail(sc->name, "dead letter of [%d] @%lld does not carry the original key and value",
           (int)r->partition, (long long)r->offset);
  }
  if (sc->ndlq != nbad)
    fail(sc->name, "%s holds %zu records, want %zu (one per bad record)", DLQ_TOPIC, sc->ndlq,
         nbad);
}

static int cmp_pos(const void *a, const void *b) {
  const sent_rec *x = a, *y = b;
  if (x->partition != y->partition)
    return x->partition < y->partition ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every good record exactly once in kjb.jobs, and nothing else. */
static void check_jobs(scenario *sc, PGconn *pg) {
  PGresult *res = PQexec(pg, "SELECT source_topic, source_partition, source_offset, kind, "
                             "(args->>'order_id')::bigint FROM kjb.jobs "
                             "ORDER BY source_partition, source_offset, id");
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    fail(sc->name, "could not read kjb.jobs: %s", PQerrorMessage(pg));
    PQclear(res);
    return;
  }
  size_t ngood = 0;
  sent_rec *good = calloc(sc->nsent + 1, sizeof *good);
  for (size_t i = 0; i < sc->nsent; i++)
    if (!sc->sent[i].bad)
      good[ngood++] = sc->sent[i];
  qsort(good, ngood, sizeof *good, cmp_pos);
  size_t rows = (size_t)PQntuples(res);
  if (rows != ngood)
    fail(sc->name, "kjb.jobs holds %zu rows, want %zu (one per good record)", rows, ngood);
  for (size_t i = 0, k = 0; i < rows || k < ngood;) {
    int32_t p = i < rows ? (int32_t)atoi(PQgetvalue(res, (int)i, 1)) : INT32_MAX;
    int64_t off = i < rows ? strtoll(PQgetvalue(res, (int)i, 2), NULL, 10) : INT64_MAX;
    if (k < ngood && good[k].partition == p && good[k].offset == off) {
      if (!str_is(PQgetvalue(res, (int)i, 0), SOURCE_TOPIC) ||
          !str_is(PQgetvalue(res, (int)i, 3), JOB_KIND) ||
          strtoll(PQgetvalue(res, (int)i, 4), NULL, 10) != good[k].order_id)
        fail(sc->name, "job for [%d] @%lld is wrong: topic %s, kind %s, order_id %s (want %lld)",
             (int)p, (long long)off, PQgetvalue(res, (int)i, 0), PQgetvalue(res, (int)i, 3),
             PQgetvalue(res, (int)i, 4), (long long)good[k].order_id);
      i++;
      k++;
    } else if (k < ngood &&
               (good[k].partition < p || (good[k].partition == p && good[k].offset < off))) {
      fail(sc->name, "good record %s [%d] @%lld has no job", SOURCE_TOPIC, (int)good[k].partition,
           (long long)good[k].offset);
      k++;
    } else {
      fail(sc->name, "unexpected job for %s [%d] @%lld (a bad record, a duplicate or unknown)",
           PQgetvalue(res, (int)i, 0), (int)p, (long long)off);
      i++;
    }
  }
  free(good);
  PQclear(res);
}

static void scenario_close(scenario *sc) {
  if (sc->running || sc->ing)
    stop_ingest(sc);
  if (sc->reader) {
    rd_kafka_consumer_close(sc->reader);
    rd_kafka_destroy(sc->reader);
  }
  if (sc->watch) {
    rd_kafka_consumer_close(sc->watch);
    rd_kafka_destroy(sc->watch);
  }
  if (sc->producer) {
    rd_kafka_flush(sc->producer, 5000);
    rd_kafka_destroy(sc->producer);
  }
  if (sc->mc)
    rd_kafka_mock_cluster_destroy(sc->mc);
  if (sc->host)
    rd_kafka_destroy(sc->host);
  kjb_catalog_free(sc->cat);
  if (sc->cfg_loaded)
    kjb_config_close(&sc->cfg);
  kjb_buf_close(&sc->header);
  for (size_t i = 0; i < sc->nsent; i++)
    free(sc->sent[i].value);
  free(sc->sent);
  for (size_t i = 0; i < sc->ndlq; i++) {
    dlq_rec *d = &sc->dlq[i];
    free(d->topic);
    free(d->stage);
    free(d->cls);
    free(d->group);
    free(d->trace);
    free(d->when);
    free(d->key);
    free(d->value);
  }
  free(sc->dlq);
  unlink(sc->cfg_path);
}

static int truncate_jobs(PGconn *pg) {
  PGresult *res = PQexec(pg, "TRUNCATE kjb.jobs");
  int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!ok)
    fprintf(stderr, "fault_dlq: could not truncate kjb.jobs: %s", PQerrorMessage(pg));
  PQclear(res);
  return ok ? 0 : -1;
}

/* ---- scenario A: the DLQ write keeps failing --------------------------- */

enum { A_RECORDS = 48, A_STACK = 3, A_MAX_ERRORS = 4096 };
#define A_FAULT_US (5 * 1000000LL) /* how long every DLQ write fails */

/* Record i of scenario A is bad when this holds: none among the first ten,
 * then every seventh, on both partitions. */
static int a_is_bad(int i) { return i >= 10 && i % 7 == 3; }

/* The errors, in turn: two that librdkafka retries by itself and one it
 * gives up on at once (the record "failed validation"), which kjb must
 * retry itself. */
static const rd_kafka_resp_err_t A_ERRORS[] = {
    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
    RD_KAFKA_RESP_ERR_INVALID_RECORD,
    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
};
enum { A_NERRORS = sizeof A_ERRORS / sizeof A_ERRORS[0] };

/* Keeps broker 1's Produce error stack from running dry, in a thread of
 * its own so that a slow observation cannot let it: every Produce request
 * takes one error, and from the first taken for A_FAULT_US every one the
 * broker gets (kjb's dead letters are all it gets) fails. Then the stack
 * is left to run out. */
typedef struct {
  scenario *sc;
  pthread_mutex_t lock;
  size_t pushed;   /* errors pushed */
  int64_t t_first; /* when the first was taken; -1 */
  int64_t t_clear; /* when the last was, after the fault; -1 */
  volatile sig_atomic_t quit;
} a_pusher;

static void *a_pusher_main(void *arg) {
  a_pusher *ap = arg;
  while (!ap->quit) {
    size_t left = 0;
    rd_kafka_mock_broker_error_stack_cnt(ap->sc->mc, 1, API_PRODUCE, &left);
    int64_t now = kjb_now_mono_us();
    pthread_mutex_lock(&ap->lock);
    if (ap->t_first < 0 && left < ap->pushed)
      ap->t_first = now;
    int faulting = ap->t_first < 0 || now - ap->t_first < A_FAULT_US;
    if (faulting) {
      for (; left < A_STACK && ap->pushed < A_MAX_ERRORS; left++, ap->pushed++)
        rd_kafka_mock_broker_push_request_error_rtts(ap->sc->mc, 1, API_PRODUCE, 1,
                                                     A_ERRORS[ap->pushed % A_NERRORS], 0);
    } else if (left == 0) {
      ap->t_clear = now;
    }
    int done = ap->t_clear >= 0;
    pthread_mutex_unlock(&ap->lock);
    if (done)
      break;
    sleep_ms(5);
  }
  return NULL;
}

static void scenario_a(PGconn *pg) {
  scenario sc;
  const int before = failures;
  a_pusher ap = {.sc = &sc, .lock = PTHREAD_MUTEX_INITIALIZER, .t_first = -1, .t_clear = -1};
  pthread_t pusher;
  int pusher_running = 0;
  if (scenario_open(&sc, "A", 1, NULL, 0, NULL) < 0 || truncate_jobs(pg) < 0)
    goto out;

  for (int i = 0; i < A_RECORDS; i++)
    produce_record(&sc, a_is_bad(i));
  if (flush_source(&sc, 10000) < 0)
    goto out;
  int64_t first_bad[NPARTS] = {INT64_MAX, INT64_MAX};
  for (size_t i = 0; i < sc.nsent; i++)
    if (sc.sent[i].bad && sc.sent[i].offset < first_bad[sc.sent[i].partition])
      first_bad[sc.sent[i].partition] = sc.sent[i].offset;

  /* From here on the only Produce requests are kjb's dead letters. */
  if (pthread_create(&pusher, NULL, a_pusher_main, &ap) != 0) {
    fail(sc.name, "could not start the error pusher");
    goto out;
  }
  pusher_running = 1;
  const int64_t t_start = kjb_now_mono_us();
  if (start_ingest(&sc) < 0)
    goto out;

  /* While DLQ writes fail, the commits must stay at or before each
   * partition's first bad record (checked as: past it only if its dead
   * letter is in the DLQ, which it cannot be while the stack holds). */
  int64_t committed[NPARTS], held[NPARTS] = {-1, -1};
  long during = 0, pending_during = 0;
  int64_t t_first, t_clear;
  for (;;) {
    pthread_mutex_lock(&ap.lock);
    t_first = ap.t_first;
    t_clear = ap.t_clear;
    pthread_mutex_unlock(&ap.lock);
    if (t_clear >= 0 || failures != before)
      break;
    if (kjb_now_mono_us() - t_start > 90 * 1000000LL) {
      fail(sc.name, "the injected Produce errors were not used up within 90 s (%s)",
           t_first < 0 ? "kjb never tried to write a dead letter" : "kjb stopped trying");
      goto out;
    }
    long pending = sc.pending_checks;
    if (observe(&sc, "while DLQ writes fail", committed) == 0 && t_first >= 0) {
      during++;
      pending_during += sc.pending_checks > pending;
      for (int p = 0; p < NPARTS; p++)
        if (committed[p] > held[p])
          held[p] = committed[p];
    }
    sleep_ms(20);
  }
  ap.quit = 1;
  pthread_join(pusher, NULL);
  pusher_running = 0;
  if (failures != before)
    goto out;
  if (pending_during == 0)
    fail(sc.name,
         "no check saw a commit held back by a failing dead letter (%ld checks while "
         "failing): the fault did not bite",
         during);

  int64_t t_done = wait_committed_end(&sc, "after produce errors", 60);
  size_t left = 0;
  rd_kafka_mock_broker_error_stack_cnt(sc.mc, 1, API_PRODUCE, &left);
  stop_ingest(&sc);
  check_dlq(&sc);
  check_jobs(&sc, pg);
  if (failures == before) {
    size_t nbad = count_bad(&sc), used = ap.pushed - left, per[A_NERRORS] = {0};
    for (size_t k = 0; k < used; k++)
      per[k % A_NERRORS]++;
    printf("scenario A (DLQ Produce errors, 1 broker): %zu records (%zu good, %zu bad) on %d "
           "partitions; %zu Produce errors injected (%zu NOT_ENOUGH_REPLICAS, %zu "
           "INVALID_RECORD retried by kjb, %zu LEADER_NOT_AVAILABLE), DLQ writes failing for "
           "%.1f s; %ld checks meanwhile (%ld with a dead letter pending), committed held at "
           "[0] %lld <= %lld, [1] %lld <= %lld (first bad records); %ld checks in all, %ld "
           "skipped; recovered (committed == end) %.2f s after the last fault; DLQ %zu "
           "records, jobs %zu; kjb: %llu batches, %.1f s settling dead letters: ok\n",
           sc.nsent, sc.nsent - nbad, nbad, NPARTS, used, per[0], per[1], per[2],
           secs(t_clear - t_first), during, pending_during, (long long)held[0],
           (long long)first_bad[0], (long long)held[1], (long long)first_bad[1], sc.checks,
           sc.skipped, secs(t_done - t_clear), sc.ndlq, sc.nsent - nbad,
           (unsigned long long)sc.stats.batches, secs((int64_t)sc.stats.settle_us));
    fflush(stdout);
  }
out:
  if (pusher_running) {
    ap.quit = 1;
    pthread_join(pusher, NULL);
  }
  scenario_close(&sc);
}

/* ---- scenario B: brokers down ------------------------------------------ */

/* Source partitions on brokers 1 and 2, the DLQ on 3, the group's
 * coordinator on 1: with broker 3 down the consumer and its commits work
 * while no dead letter can be written. */
static const int B_LEADERS[NPARTS + 1] = {1, 2, 3};
enum { B_INTERVAL_MS = 150, B_GUARD_ERRORS = 3 };
#define B_DLQ_DOWN_US (3 * 1000000LL)
#define B_ALL_DOWN_US (2 * 1000000LL)

static int b_is_bad(size_t i) { return i % 7 == 4; }

typedef enum {
  B_WARMUP,   /* until kjb has committed something */
  B_DLQ_DOWN, /* broker 3 down */
  B_DLQ_BACK, /* until the dead letters held back are written */
  B_ALL_DOWN, /* every broker down */
  B_ALL_BACK, /* producing a little longer */
} b_phase;

static void scenario_b(PGconn *pg) {
  scenario sc;
  const int before = failures;
  if (scenario_open(&sc, "B", 3, B_LEADERS, 1, NULL) < 0 || truncate_jobs(pg) < 0)
    goto out;
  if (start_ingest(&sc) < 0)
    goto out;

  /* Records are produced throughout, one every B_INTERVAL_MS, while the
   * phases go by. */
  const int64_t t0 = kjb_now_mono_us();
  int64_t t_down1 = -1, t_up1 = -1, t_recovered1 = -1, t_down3 = -1, t_up3 = -1;
  b_phase phase = B_WARMUP;
  int exact = 0;
  int64_t dlq_end_down = 0, held_bad[NPARTS] = {-1, -1}, committed[NPARTS];
  long down1_checks = 0;
  size_t pushed = 0, left_at_down = 0, held_count = 0;
  int64_t next_record = t0;

  while (failures == before) {
    int64_t now = kjb_now_mono_us();
    if (now - t0 > 120 * 1000000LL) {
      fail(sc.name, "the faults did not play out within 120 s (phase %d; last error: %s)",
           (int)phase, sc.last_error[0] ? sc.last_error : "none");
      goto out;
    }
    while (next_record <= now) {
      produce_record(&sc, b_is_bad(sc.nsent));
      next_record += B_INTERVAL_MS * 1000;
    }
    rd_kafka_poll(sc.producer, 0);

    switch (phase) {
    case B_WARMUP:
      if (observe(&sc, "before the faults", committed) == 0 &&
          (committed[0] >= 0 || committed[1] >= 0)) {
        /* No dead letter may be written between reading the DLQ's end
         * and taking its broker down: Produce errors pushed on it first
         * (slow ones, so that a few cover the second or so that taking a
         * broker down can take) make sure of that, as long as some are
         * left once it is down. */
        for (int k = 0; k < B_GUARD_ERRORS; k++)
          rd_kafka_mock_broker_push_request_error_rtts(sc.mc, 3, API_PRODUCE, 1,
                                                       RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 300);
        pushed += B_GUARD_ERRORS;
        if (dlq_catch_up(&sc, 2000) < 0) {
          fail(sc.name, "could not read %s before taking its broker down: %s", DLQ_TOPIC,
               sc.last_error);
          goto out;
        }
        dlq_end_down = sc.dlq_next;
        rd_kafka_mock_broker_set_down(sc.mc, 3);
        t_down1 = kjb_now_mono_us();
        rd_kafka_mock_broker_error_stack_cnt(sc.mc, 3, API_PRODUCE, &left_at_down);
        exact = left_at_down > 0;
        note("scenario B: broker 3 (the DLQ's leader) down after %.1f s, DLQ end %lld%s",
             secs(t_down1 - t0), (long long)dlq_end_down,
             exact ? ""
                   : "; a dead letter may have been written as it went down, so the "
                     "checks while it is down are skipped");
        phase = B_DLQ_DOWN;
      }
      break;
    case B_DLQ_DOWN:
      if (now - t_down1 >= B_DLQ_DOWN_US) {
        rd_kafka_mock_broker_set_up(sc.mc, 3);
        t_up1 = kjb_now_mono_us();
        note("scenario B: broker 3 up after %.1f s", secs(t_up1 - t0));
        /* The bad records produced so far must all be dead-lettered and
         * committed past before the next fault. */
        for (size_t i = 0; i < sc.nsent; i++)
          if (sc.sent[i].bad && sc.sent[i].offset > held_bad[sc.sent[i].partition])
            held_bad[sc.sent[i].partition] = sc.sent[i].offset;
        for (size_t i = 0; i < sc.nsent; i++)
          held_count += sc.sent[i].bad && sc.sent[i].offset >= 0 &&
                        !dlq_has(&sc, sc.sent[i].partition, sc.sent[i].offset, dlq_end_down);
        phase = B_DLQ_BACK;
      } else if (exact && read_committed(&sc, committed, 3000) == 0) {
        /* Nothing can be appended to the DLQ while its broker is down: it
         * holds exactly what it held when it went down. */
        check_committed(&sc, committed, dlq_end_down, "while the DLQ's broker is down");
        down1_checks++;
      } else {
        sc.skipped++;
      }
      break;
    case B_DLQ_BACK:
      if (observe(&sc, "after the DLQ's broker came back", committed) == 0) {
        int done = 1;
        for (int p = 0; p < NPARTS; p++)
          if (held_bad[p] >= 0 && committed[p] <= held_bad[p])
            done = 0;
        if (done) {
          t_recovered1 = kjb_now_mono_us();
          rd_kafka_mock_broker_set_down(sc.mc, -1);
          t_down3 = kjb_now_mono_us();
          note("scenario B: dead letters held back written after %.1f s; every broker down",
               secs(t_recovered1 - t0));
          phase = B_ALL_DOWN;
        }
      }
      if (phase == B_DLQ_BACK && now - t_up1 > 60 * 1000000LL) {
        fail(sc.name,
             "dead letters held while broker 3 was down were not written and "
             "committed past within 60 s of it coming back (last error: %s)",
             sc.last_error[0] ? sc.last_error : "none");
        goto out;
      }
      break;
    case B_ALL_DOWN:
      if (now - t_down3 >= B_ALL_DOWN_US) {
        rd_kafka_mock_broker_set_up(sc.mc, -1);
        t_up3 = kjb_now_mono_us();
        note("scenario B: every broker up after %.1f s", secs(t_up3 - t0));
        phase = B_ALL_BACK;
      }
      break;
    case B_ALL_BACK: observe(&sc, "after the brokers came back", committed); break;
    }
    if (phase == B_ALL_BACK && now - t_up3 > 500000)
      break;
    sleep_ms(20);
  }
  if (failures != before)
    goto out;
  if (flush_source(&sc, 30000) < 0)
    goto out;
  size_t left = 0;
  rd_kafka_mock_broker_error_stack_cnt(sc.mc, 3, API_PRODUCE, &left);
  if (exact && down1_checks == 0)
    fail(sc.name, "no committed offsets could be read while the DLQ's broker was down (%s)",
         sc.last_error[0] ? sc.last_error : "no error");
  if (held_count == 0)
    fail(sc.name, "no dead letter was held back while the DLQ's broker was down: the fault "
                  "did not bite");

  int64_t t_done = wait_committed_end(&sc, "after the brokers came back", 60);
  stop_ingest(&sc);
  check_dlq(&sc);
  check_jobs(&sc, pg);
  if (failures == before) {
    size_t nbad = count_bad(&sc);
    printf("scenario B (brokers down, 3 brokers): %zu records (%zu good, %zu bad) on %d "
           "partitions; DLQ leader (broker 3) down %.1f s holding back %zu dead letters, "
           "%ld checks against the DLQ as of its going down, written and committed past "
           "%.2f s after it came back; all brokers down %.1f s; %zu Produce errors injected "
           "(%zu left unused); %ld checks in all (%ld with a dead letter pending), %ld "
           "skipped; recovered (committed == end) %.2f s after the brokers came back; DLQ "
           "%zu records, jobs %zu; kjb: %llu batches, %.1f s settling dead letters: ok\n",
           sc.nsent, sc.nsent - nbad, nbad, NPARTS, secs(t_up1 - t_down1), held_count, down1_checks,
           secs(t_recovered1 - t_up1), secs(t_up3 - t_down3), pushed, left, sc.checks,
           sc.pending_checks, sc.skipped, secs(t_done - t_up3), sc.ndlq, sc.nsent - nbad,
           (unsigned long long)sc.stats.batches, secs((int64_t)sc.stats.settle_us));
    fflush(stdout);
  }
out:
  scenario_close(&sc);
}

/* ---- scenario C: a commit answered late ------------------------------- */

enum { C_RECORDS = 40, C_LATE_MS = 2500 };
/* The mock coordinator makes a member that joins after another left wait
 * for most of a session timeout; keep it short for the restart. (Consumer
 * properties: the DLQ producer does not get them.) */
#define C_PROPERTIES "\"session.timeout.ms=6000\", \"heartbeat.interval.ms=500\""

/* The group coordinator answers kjb's first offset commit late, with a
 * retriable error, while kjb goes on committing later batches: the retry
 * of that first commit must not leave the group's offsets behind what kjb
 * accounted for, and a restart must not dead-letter anything twice. */
static void scenario_c(PGconn *pg) {
  scenario sc;
  const int before = failures;
  if (scenario_open(&sc, "C", 1, NULL, 0, C_PROPERTIES) < 0 || truncate_jobs(pg) < 0)
    goto out;
  for (int i = 0; i < C_RECORDS; i++)
    produce_record(&sc, i % 7 == 3);
  if (flush_source(&sc, 10000) < 0)
    goto out;
  rd_kafka_mock_broker_push_request_error_rtts(
      sc.mc, 1, API_OFFSET_COMMIT, 1, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, C_LATE_MS);
  if (start_ingest(&sc) < 0)
    goto out;
  int64_t t_done = wait_committed_end(&sc, "with a late commit", 60);
  /* Give the late answer time to arrive and its retry to go through. */
  int64_t committed[NPARTS];
  int64_t settle_until = kjb_now_mono_us() + C_LATE_MS * 1000LL + 2000000;
  while (kjb_now_mono_us() < settle_until) {
    observe(&sc, "after a late commit", committed);
    sleep_ms(100);
  }
  stop_ingest(&sc);
  /* A restart resumes from the committed offsets. */
  if (start_ingest(&sc) < 0)
    goto out;
  int64_t t_restart = kjb_now_mono_us();
  wait_committed_end(&sc, "after a restart", 60);
  stop_ingest(&sc);
  check_dlq(&sc);
  check_jobs(&sc, pg);
  if (failures == before) {
    size_t nbad = count_bad(&sc);
    printf("scenario C (late commit, 1 broker): %zu records (%zu good, %zu bad); first "
           "OffsetCommit answered after %.1f s with COORDINATOR_LOAD_IN_PROGRESS; committed "
           "never went back (%ld checks); restarted %.1f s after committed == end; DLQ %zu "
           "records, jobs %zu: ok\n",
           sc.nsent, sc.nsent - nbad, nbad, C_LATE_MS / 1000.0, sc.checks, secs(t_restart - t_done),
           sc.ndlq, sc.nsent - nbad);
    fflush(stdout);
  }
out:
  scenario_close(&sc);
}

/* ---- H: health against a closing consumer ------------------------------ */

/* Asks kjb_ingest_health over and over, as the health thread does. */
typedef struct {
  kjb_ingest *ing;
  atomic_int quit;
  long calls;
  int64_t slowest_us;
} prober;

static void *probe_main(void *arg) {
  prober *pr = arg;
  while (!atomic_load(&pr->quit)) {
    kjb_ingest_health_info info;
    int64_t t0 = kjb_now_mono_us();
    kjb_ingest_health(pr->ing, 200, &info);
    int64_t took = kjb_now_mono_us() - t0;
    pr->slowest_us = took > pr->slowest_us ? took : pr->slowest_us;
    pr->calls++;
  }
  return NULL;
}

/* Joins t within seconds; 0, or -1 when it did not end (the thread is
 * then left behind: the process must exit without cleaning up). */
static int join_within(pthread_t t, double seconds) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)seconds;
  return pthread_timedjoin_np(t, NULL, &until) == 0 ? 0 : -1;
}

/* After rd_kafka_consumer_close() the group queue is no longer served, and
 * rd_kafka_assignment() then waited forever while holding the lock that
 * shutdown needs: kjb ignored SIGTERM. With a prober asking throughout,
 * the stop must end promptly, and a question asked after it must be
 * answered at once with nothing assigned or connected. */
static void scenario_h(void) {
  scenario sc;
  const int before = failures;
  prober pr = {0};
  pthread_t probe_thread;
  int probing = 0;
  if (scenario_open(&sc, "H", 1, NULL, 0, NULL) < 0 || start_ingest(&sc) < 0)
    goto out;
  pr.ing = sc.ing;
  kjb_ingest_health_info info = {0};
  for (int64_t until = kjb_now_mono_us() + 60000000; info.partitions < NPARTS;) {
    kjb_ingest_health(sc.ing, 500, &info);
    if (kjb_now_mono_us() > until) {
      fail("H", "no assignment within 60 s (%d of %d partitions)", info.partitions, NPARTS);
      goto out;
    }
    sleep_ms(100);
  }
  if (pthread_create(&probe_thread, NULL, probe_main, &pr) != 0) {
    fail("H", "could not start the prober");
    goto out;
  }
  probing = 1;
  sleep_ms(300);
  int64_t t0 = kjb_now_mono_us();
  sc.stop = 1;
  if (join_within(sc.thread, 30) < 0) {
    fail("H", "the consumer did not stop within 30 s while health was asked");
    printf("fault_dlq: FAILED\n");
    fflush(NULL);
    _exit(1);
  }
  sc.running = 0;
  int64_t stopped_us = kjb_now_mono_us() - t0;
  long during = pr.calls;
  atomic_store(&pr.quit, 1);
  if (join_within(probe_thread, 10) < 0) {
    fail("H", "a health question asked while the consumer closed did not return in 10 s");
    fflush(NULL);
    _exit(1);
  }
  probing = 0;
  /* Once closed: answered at once, with nothing to report. */
  int64_t t1 = kjb_now_mono_us();
  info = (kjb_ingest_health_info){.partitions = -1, .kafka_connected = -1};
  kjb_ingest_health(sc.ing, 500, &info);
  int64_t after_us = kjb_now_mono_us() - t1;
  if (info.partitions != 0 || info.kafka_connected != 0)
    fail("H", "a closed consumer reported %d partitions, connected %d", info.partitions,
         info.kafka_connected);
  if (after_us > 100000)
    fail("H", "asking a closed consumer took %.3f s", secs(after_us));
  if (sc.ingest_rc < 0)
    fail("H", "ingest stopped with an error: %s", sc.ingest_err.msg);
  if (failures == before) {
    printf("scenario H (health during and after a stop, 1 broker): stopped in %.2f s with %ld "
           "health questions meanwhile (slowest %.3f s); after it answered in %.6f s: ok\n",
           secs(stopped_us), during, secs(pr.slowest_us), secs(after_us));
    fflush(stdout);
  }
out:
  if (probing) {
    atomic_store(&pr.quit, 1);
    pthread_join(probe_thread, NULL);
  }
  stop_ingest(&sc);
  scenario_close(&sc);
}

/* ---- main -------------------------------------------------------------- */

/* kjb's configuration takes KJB_<SECTION>_<KEY> from the environment; the
 * test's configuration must be what it says, so they go. */
static void clear_kjb_environment(void) {
  extern char **environ;
  for (;;) {
    char name[256] = "";
    for (char **e = environ; *e; e++)
      if (strncmp(*e, "KJB_", 4) == 0) {
        const char *eq = strchr(*e, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - *e) : (int)strlen(*e), *e);
        break;
      }
    if (!name[0])
      return;
    unsetenv(name);
  }
}

int main(int argc, char **argv) {
  if (argc > 3 || (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
    fprintf(stderr, "usage: fault_dlq [CONNINFO [SOURCE_DIR]]\n");
    return 2;
  }
  char *conn = NULL, *src = NULL;
  const char *e;
  if (argc > 1)
    conn = strdup(argv[1]);
  else if ((e = getenv("KJB_POSTGRES_CONNINFO")))
    conn = strdup(e);
  if (argc > 2)
    src = strdup(argv[2]);
  else
    src = strdup((e = getenv("KJB_SOURCE_DIR")) ? e : KJB_FAULT_SOURCE_DIR);
  kjb_log_level level = KJB_LOG_WARN;
  if ((e = getenv("KJB_FAULT_LOG_LEVEL")) && kjb_log_level_parse(e, &level) < 0) {
    fprintf(stderr, "fault_dlq: KJB_FAULT_LOG_LEVEL: expected debug, info, warn or error\n");
    free(conn);
    free(src);
    return 2;
  }
  verbose = level == KJB_LOG_DEBUG;
  char *scenarios = (e = getenv("KJB_FAULT_SCENARIOS")) ? strdup(e) : NULL;
  char *debug = (e = getenv("KJB_FAULT_RDKAFKA_DEBUG")) ? strdup(e) : NULL;
  rdkafka_debug = debug;
  if (!conn) {
    fprintf(stderr, "fault_dlq: no PostgreSQL conninfo: pass it or set KJB_POSTGRES_CONNINFO\n");
    free(src);
    free(debug);
    free(scenarios);
    return 2;
  }
  conninfo = conn;
  source_dir = src;
  clear_kjb_environment();
  kjb_log_setup(level, 0);
  signal(SIGPIPE, SIG_IGN);

  const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  int rc = 1;
  PGconn *pg = NULL;
  if ((size_t)snprintf(tmpdir, sizeof tmpdir, "%s/kjb-fault-XXXXXX", tmp) >= sizeof tmpdir ||
      !mkdtemp(tmpdir)) {
    fprintf(stderr, "fault_dlq: mkdtemp %s: %s\n", tmpdir, strerror(errno));
    goto out;
  }
  kjb_err err;
  kjb_store *store = kjb_store_connect(conninfo, "kjb", &err);
  int applied = 0;
  if (!store || kjb_store_migrate(store, &applied, &err) < 0) {
    fprintf(stderr, "fault_dlq: migrate: %s\n", err.msg);
    kjb_store_free(store);
    goto out;
  }
  kjb_store_free(store);
  pg = PQconnectdb(conninfo);
  if (PQstatus(pg) != CONNECTION_OK) {
    fprintf(stderr, "fault_dlq: could not connect to PostgreSQL: %s", PQerrorMessage(pg));
    goto out;
  }

  int64_t t0 = kjb_now_mono_us();
  const char *only = scenarios;
  if (!only || strchr(only, 'A'))
    scenario_a(pg);
  if (!only || strchr(only, 'B'))
    scenario_b(pg);
  if (!only || strchr(only, 'H'))
    scenario_h();
  if (!only || strchr(only, 'C'))
    scenario_c(pg);
  if (failures > MAX_FAILURES)
    fprintf(stderr, "fault_dlq: ... and %d more failures\n", failures - MAX_FAILURES);
  printf("fault_dlq: %s in %.1f s\n", failures ? "FAILED" : "all scenarios passed",
         secs(kjb_now_mono_us() - t0));
  rc = failures ? 1 : 0;
out:
  PQfinish(pg);
  if (tmpdir[0] && rmdir(tmpdir) != 0 && errno != ENOENT)
    note("could not remove %s: %s", tmpdir, strerror(errno));
  /* Every librdkafka handle is gone by now; its background threads too. */
  if (rd_kafka_wait_destroyed(10000) != 0)
    note("librdkafka handles still alive at exit");
  free(conn);
  free(src);
  free(debug);
  free(scenarios);
  return rc;
}
