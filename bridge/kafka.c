/* librdkafka configuration: kafka.properties checked and applied to the
 * clients they are for; the errors that end a command that runs once; and
 * the embedded development cluster. */
#include "kafka.h"

#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
  kjb_log_level l = level <= 3   ? KJB_LOG_ERROR
                    : level == 4 ? KJB_LOG_WARN
                    : level <= 6 ? KJB_LOG_INFO
                                 : KJB_LOG_DEBUG;
  kjb_log(l, "kafka: %s: %s", fac, buf);
}

/* The embedded cluster's owner handle connects nowhere: its warning about
 * that is noise. */
static void on_owner_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  if (strcmp(fac, "CONFWARN") != 0)
    on_log(rk, level, fac, buf);
}

static int set(rd_kafka_conf_t *conf, const char *key, const char *val, const char *where,
               kjb_err *err) {
  char why[256];
  if (rd_kafka_conf_set(conf, key, val, why, sizeof why) == RD_KAFKA_CONF_OK)
    return 0;
  /* Some of librdkafka's reasons end in a newline. */
  size_t n = strlen(why);
  while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
    why[--n] = '\0';
  return kjb_err_set(err, KJB_ECONFIG, "%s: %s", where, why);
}

/* ---- kafka.properties ---------------------------------------------------- */

/* The key of a "key=value" entry into key (cut at size); returns the
 * value, or NULL when there is no '=' (config.c refuses those). */
static const char *split_property(const char *p, char *key, size_t size) {
  const char *eq = strchr(p, '=');
  snprintf(key, size, "%.*s", eq ? (int)(eq - p) : 0, p);
  return eq ? eq + 1 : NULL;
}

/* librdkafka documents each property in a table whose "C/P" column says
 * which kind of client reads it (C consumer, P producer, * both) and whose
 * "Range" column bounds the numeric ones ("0 .. 900000"): CONFIGURATION.md
 * is that table as rd_kafka_conf_properties_show prints it. No call
 * answers for one key, so the linked library's own table is printed once
 * and read here; it matches whatever version kjb runs with, and
 * test_kafka.c checks that it still reads the way this expects. */
static char *prop_table;
static pthread_once_t prop_table_once = PTHREAD_ONCE_INIT;

static void print_prop_table(void) {
  size_t len;
  FILE *f = open_memstream(&prop_table, &len);
  if (!f)
    abort();
  rd_kafka_conf_properties_show(f);
  if (fclose(f) != 0)
    abort();
}

/* What the table says of one key. */
typedef struct {
  char scope;   /* 'C', 'P' or '*'; 0 when the table does not list the key */
  bool numeric; /* its range is "<min> .. <max>" */
} prop_info;

/* The cell of a row that starts at p, blanks trimmed, in *text and *len;
 * returns where the next cell starts, or NULL after the row's last. */
static const char *cell(const char *p, const char **text, size_t *len) {
  size_t n = strcspn(p, "|\n");
  const char *s = p, *e = p + n;
  while (s < e && *s == ' ')
    s++;
  while (e > s && e[-1] == ' ')
    e--;
  *text = s;
  *len = (size_t)(e - s);
  return p[n] == '|' ? p + n + 1 : NULL;
}

/* The row "<key> | <C/P> | <range> | ..." of key; a key the table does
 * not list (a plugin's, or a hidden one) has scope 0. */
static prop_info prop_lookup(const char *key) {
  pthread_once(&prop_table_once, print_prop_table);
  prop_info info = {0};
  size_t n = strlen(key);
  for (const char *line = prop_table; line && *line;) {
    const char *name, *scope, *range, *p;
    size_t name_len, scope_len, range_len;
    if ((p = cell(line, &name, &name_len)) && name_len == n && memcmp(name, key, n) == 0 &&
        (p = cell(p, &scope, &scope_len)) && scope_len == 1 && strchr("CP*", *scope) &&
        cell(p, &range, &range_len)) {
      char text[64], tail;
      long long min, max;
      snprintf(text, sizeof text, "%.*s", (int)range_len, range);
      info.scope = *scope;
      info.numeric = sscanf(text, "%lld .. %lld%c", &min, &max, &tail) == 2;
      return info;
    }
    line = strchr(line, '\n');
    line = line ? line + 1 : NULL;
  }
  return info;
}

bool kjb_kafka_property_applies(const char *key, rd_kafka_type_t type) {
  char scope = prop_lookup(key).scope;
  if (type == RD_KAFKA_PRODUCER)
    return scope != 'C';
  return scope != 'P';
}

/* Digits, maybe a minus and a fraction (linger.ms is a double). */
static bool is_number(const char *s) {
  s += *s == '-';
  if (!isdigit((unsigned char)*s))
    return false;
  while (isdigit((unsigned char)*s))
    s++;
  if (*s == '.' && isdigit((unsigned char)s[1]))
    for (s++; isdigit((unsigned char)*s);)
      s++;
  return *s == '\0';
}

/* Whether librdkafka would read only the start of s as a number and drop
 * the rest, as strtol and strtod do: "45s" is 45, "0x10" 16, " 5" 5.
 * A word ("acks=all") is librdkafka's to judge. */
static bool partly_number(const char *s) {
  const char *p = s + strspn(s, " \t\n\v\f\r+-");
  return (isdigit((unsigned char)*p) || *p == '.') && !is_number(s);
}

/* See kafka.h. One configuration for all entries, in order, as a client's
 * would be: a plugin named in plugin.library.paths can add keys that the
 * entries after it use. A numeric property's value must be all number,
 * not just start with one: kjb's own durations have units, so
 * "session.timeout.ms=45s" is an easy mistake, and librdkafka would take
 * it for 45 ms. */
int kjb_kafka_check_properties(char *const *props, size_t n, size_t *bad, kjb_err *err) {
  if (n == 0)
    return 0;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    char key[256], where[300];
    const char *val = split_property(props[i], key, sizeof key);
    assert(val);
    snprintf(where, sizeof where, "\"%s\"", key);
    if (prop_lookup(key).numeric && partly_number(val))
      rc = kjb_err_set(err, KJB_ECONFIG, "%s: expected a number, got \"%s\"", where, val);
    else
      rc = set(conf, key, val, where, err);
    if (rc < 0)
      *bad = i;
  }
  rd_kafka_conf_destroy(conf);
  return rc;
}

static void on_once_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  kjb_kafka_note_error(opaque, rk, err, reason);
}

rd_kafka_t *kjb_kafka_consumer_connect(const kjb_config *cfg, const char *const *defaults,
                                       kjb_kafka_errors *e, kjb_err *err) {
  rd_kafka_conf_t *conf = kjb_kafka_conf(cfg, RD_KAFKA_CONSUMER, defaults, err);
  if (!conf)
    return NULL;
  *e = (kjb_kafka_errors){0};
  rd_kafka_conf_set_error_cb(conf, on_once_error);
  rd_kafka_conf_set_opaque(conf, e);
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    kjb_err_set(err, KJB_EKAFKA, "could not create consumer: %s", errstr);
    return NULL;
  }
  if (kjb_kafka_wait_connected(rk, e, 10000, err) < 0) {
    rd_kafka_destroy(rk);
    return NULL;
  }
  return rk;
}

/* ---- the embedded cluster, seen from other commands ------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  kjb_buf *b = arg;
  if (b->len + size * n > (4u << 20))
    return 0;
  kjb_buf_append(b, p, size * n);
  return size * n;
}

/* The embedded cluster lives inside `kjb run`; the commands that talk to
 * Kafka from another process (produce, replay, dlq peek) find its address
 * in the running service's /api/stats on http.listen. */
static int embedded_address(const kjb_config *cfg, char *out, size_t n, kjb_err *err) {
  static const char hint[] = "start `kjb run` with this configuration first, or set "
                             "KJB_KAFKA_BROKERS to the address it logged";
  if (!cfg->http.listen || !cfg->http.listen[0])
    return kjb_err_set(err, KJB_ECONFIG,
                       "%s: kafka.brokers is \"embedded\" and http.listen is empty: "
                       "set KJB_KAFKA_BROKERS to the address `kjb run` logged",
                       cfg->path);
  kjb_buf url, body;
  kjb_buf_init(&url);
  kjb_buf_init(&body);
  kjb_buf_printf(&url, "%s://%s/api/stats", cfg->http.tls_cert ? "https" : "http",
                 cfg->http.listen);
  CURL *c = curl_easy_init();
  long status = 0;
  CURLcode cc = CURLE_FAILED_INIT;
  if (c) {
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    if (cfg->http.tls_cert) /* the service's own certificate, self-signed or its chain */
      curl_easy_setopt(c, CURLOPT_CAINFO, cfg->http.tls_cert);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
  }
  int rc = -1;
  json_t *j = NULL;
  const char *addr = NULL;
  if (cc != CURLE_OK) {
    kjb_err_set(err, KJB_EIO,
                "kafka.brokers is \"embedded\": no kjb service answers on %s (%s): %s", url.data,
                curl_easy_strerror(cc), hint);
  } else if (status != 200 || !(j = json_loadb(body.data, body.len, 0, NULL)) ||
             !(addr = json_string_value(json_object_get(j, "embedded_kafka")))) {
    kjb_err_set(err, KJB_EIO,
                "kafka.brokers is \"embedded\": the service on %s (HTTP %ld) runs no embedded "
                "cluster: %s",
                url.data, status, hint);
  } else if ((size_t)snprintf(out, n, "%s", addr) >= n) {
    kjb_err_set(err, KJB_EIO, "kafka.brokers is \"embedded\": address too long");
  } else {
    rc = 0;
  }
  json_decref(j);
  kjb_buf_close(&url);
  kjb_buf_close(&body);
  return rc;
}

/* Memory bounds, so that a client's buffers stay small whatever the
 * topics hold (librdkafka's defaults let a consumer prefetch 64 MiB and a
 * producer queue 1 GiB). A consumer prefetches at most 4 MiB of records
 * (that also caps fetch.max.bytes, which librdkafka derives from it) and
 * asks for 256 KiB per partition, so that a fetch's buffers, pinned while
 * any of their records waits in a batch, are freed sooner; it fetches
 * again 20 ms after its queue drains below the bound, not librdkafka's
 * 1 s, which would stall a consumer this close to its bound. A producer
 * queues at most 16 MiB.
 *
 * No client pushes its metrics to the broker (KIP-714): librdkafka's
 * destroy waits up to 1 s for the last push, and often misses the
 * wake-up, so one command in three (a replay, a DLQ peek) took a second
 * longer to exit. A user whose brokers collect client metrics turns it
 * on in kafka.properties.
 *
 * The callers' defaults and kafka.properties come after, and win. */
static const char *const consumer_bounds[] = {"queued.max.messages.kbytes",
                                              "4096",
                                              "max.partition.fetch.bytes",
                                              "262144",
                                              "fetch.queue.backoff.ms",
                                              "20",
                                              "enable.metrics.push",
                                              "false",
                                              NULL};
static const char *const producer_bounds[] = {"queue.buffering.max.kbytes", "16384",
                                              "enable.metrics.push", "false", NULL};

rd_kafka_conf_t *kjb_kafka_conf(const kjb_config *cfg, rd_kafka_type_t type,
                                const char *const *defaults, kjb_err *err) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, on_log);
  char where[512];
  snprintf(where, sizeof where, "%s: kafka.brokers", cfg->path);
  char found[512];
  const char *brokers = cfg->kafka.brokers;
  if (strcmp(brokers, "embedded") == 0) {
    if (embedded_address(cfg, found, sizeof found, err) < 0)
      goto fail;
    brokers = found;
  }
  if (set(conf, "bootstrap.servers", brokers, where, err) < 0)
    goto fail;
  const char *const *bounds = type == RD_KAFKA_CONSUMER ? consumer_bounds : producer_bounds;
  for (size_t i = 0; bounds[i]; i += 2)
    if (set(conf, bounds[i], bounds[i + 1], "kafka", err) < 0)
      goto fail;
  for (size_t i = 0; defaults && defaults[i]; i += 2)
    if (set(conf, defaults[i], defaults[i + 1], "kafka", err) < 0)
      goto fail;
  for (size_t i = 0; i < cfg->kafka.nproperties; i++) {
    char key[256];
    const char *val = split_property(cfg->kafka.properties[i], key, sizeof key);
    assert(val);
    /* The other kind of client would ignore it, with a warning. */
    if (!kjb_kafka_property_applies(key, type))
      continue;
    snprintf(where, sizeof where, "%s: kafka.properties[%zu]: \"%s\"", cfg->path, i, key);
    if (set(conf, key, val, where, err) < 0)
      goto fail;
  }
  return conf;
fail:
  rd_kafka_conf_destroy(conf);
  return NULL;
}

/* ---- errors that end a command --------------------------------------------- */

int kjb_kafka_note_error(kjb_kafka_errors *e, rd_kafka_t *rk, int err, const char *reason) {
  if (e->failed)
    return 1;
  char fatal[sizeof e->reason - sizeof "fatal Kafka error: "];
  switch (err) {
  case RD_KAFKA_RESP_ERR__AUTHENTICATION: /* SASL: the login, or the mechanism */
  case RD_KAFKA_RESP_ERR__SSL:            /* only the TLS handshake and its verification raise it */
    snprintf(e->reason, sizeof e->reason, "could not connect to Kafka: %s", reason);
    e->failed = 1;
    break;
  case RD_KAFKA_RESP_ERR__FATAL:
    rd_kafka_fatal_error(rk, fatal, sizeof fatal);
    snprintf(e->reason, sizeof e->reason, "fatal Kafka error: %s", fatal);
    e->failed = 1;
    break;
  default:
    kjb_log(KJB_LOG_ERROR, "kafka: %s", reason);
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) /* says less than the error before it */
      snprintf(e->reason, sizeof e->reason, "%s", reason);
  }
  return e->failed;
}

int kjb_kafka_wait_connected(rd_kafka_t *rk, const kjb_kafka_errors *e, int timeout_ms,
                             kjb_err *err) {
  /* A metadata request finds no broker to go to until one is connected
   * and logged in; short ones let the error callback run in between. */
  const int64_t end = kjb_now_mono_us() + (int64_t)timeout_ms * 1000;
  for (;;) {
    rd_kafka_poll(rk, 0);
    if (e->failed)
      return kjb_err_set(err, KJB_EKAFKA, "%s", e->reason);
    int64_t left = (end - kjb_now_mono_us()) / 1000;
    if (left <= 0)
      break;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t r = rd_kafka_metadata(rk, 0, NULL, &md, left < 200 ? (int)left : 200);
    if (md)
      rd_kafka_metadata_destroy(md);
    if (r != RD_KAFKA_RESP_ERR__TRANSPORT)
      return 0; /* a broker took the request, whether it answered in time or not */
  }
  if (e->reason[0])
    return kjb_err_set(err, KJB_EKAFKA, "could not connect to Kafka within %d s: %s",
                       timeout_ms / 1000, e->reason);
  return kjb_err_set(err, KJB_EKAFKA, "could not connect to Kafka within %d s", timeout_ms / 1000);
}

/* ---- the embedded cluster ----------------------------------------------- */

struct kjb_embedded {
  rd_kafka_t *rk; /* owns the mock cluster */
  rd_kafka_mock_cluster_t *mc;
};

enum { EMBEDDED_PARTITIONS = 4 };

kjb_embedded *kjb_embedded_start(const kjb_config *cfg, kjb_err *err) {
  kjb_embedded *e = kjb_xcalloc(1, sizeof *e);
  char why[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, on_owner_log);
  rd_kafka_conf_set(conf, "client.id", "kjb-embedded", why, sizeof why);
  if (!(e->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why))) {
    rd_kafka_conf_destroy(conf);
    kjb_err_set(err, KJB_EIO, "embedded Kafka: %s", why);
    free(e);
    return NULL;
  }
  if (!(e->mc = rd_kafka_mock_cluster_new(e->rk, 1))) {
    kjb_err_set(err, KJB_EIO, "embedded Kafka: could not start the in-process cluster");
    kjb_embedded_stop(e);
    return NULL;
  }
  /* The mapped topics and their dead-letter topics exist from the start,
   * so that the consumer's subscription matches at once. */
  for (size_t i = 0; i < cfg->ntopics; i++) {
    const char *names[] = {cfg->topics[i].topic, cfg->topics[i].dlq};
    for (size_t k = 0; k < 2; k++) {
      rd_kafka_resp_err_t rerr =
          names[k] ? rd_kafka_mock_topic_create(e->mc, names[k], EMBEDDED_PARTITIONS, 1)
                   : RD_KAFKA_RESP_ERR_NO_ERROR;
      if (rerr && rerr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        kjb_err_set(err, KJB_EIO, "embedded Kafka: could not create topic \"%s\": %s", names[k],
                    rd_kafka_err2str(rerr));
        kjb_embedded_stop(e);
        return NULL;
      }
    }
  }
  return e;
}

const char *kjb_embedded_bootstraps(const kjb_embedded *e) {
  return rd_kafka_mock_cluster_bootstraps(e->mc);
}

void kjb_embedded_stop(kjb_embedded *e) {
  if (!e)
    return;
  if (e->mc)
    rd_kafka_mock_cluster_destroy(e->mc);
  if (e->rk)
    rd_kafka_destroy(e->rk);
  free(e);
}
