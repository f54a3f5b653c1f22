/* Loading the config file: libconfig syntax, then key names, types, values,
 * defaults and KJB_<SECTION>_<KEY> overrides, each problem as file:line.
 * kafka.properties are librdkafka's to judge (kafka.c). */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cfgsrc.h"
#include "cron.h"
#include "kafka.h"
#include "policy.h"
#include "util.h"

#define KJB_DEFAULT_CONFIG "config/kjb.cfg"
#define DURATION_HINT "expected a number with a unit: us, ms, s, m, h, d"
#define PATH_HINT "expected dotted Avro names such as \"customer.email\""

/* ---- What each group may hold ------------------------------------------ */

typedef enum {
  T_STR,     /* char *, at most maxlen bytes */
  T_INT,     /* int, within [min, max] */
  T_NUM,     /* double; integers are accepted */
  T_DUR,     /* int64_t microseconds, from a string with a unit, at most max */
  T_ENUM,    /* an enum, stored as the index into names */
  T_ENUMSTR, /* char *, one of names */
  T_STRLIST, /* char ** and a size_t count: at most max entries of maxlen */
  T_GROUP,   /* a nested group, handled by the caller */
  T_LIST     /* a list of at most max groups, handled by the caller */
} ftype;

enum {
  F_REQUIRED = 1 << 0,
  F_POSITIVE = 1 << 1, /* T_NUM, T_DUR: greater than 0 */
  F_RATIO = 1 << 2,    /* T_NUM: in (0, 1] */
  F_URL = 1 << 3,      /* T_STR: http:// or https://, a host, maybe a port */
  F_IDENT = 1 << 4,    /* T_STR: an SQL identifier */
  F_TOPIC = 1 << 5,    /* T_STR: a legal Kafka topic name */
  F_TEMPLATE = 1 << 6, /* T_STR: literal text and ${dotted.path} */
  F_PATHS = 1 << 7,    /* T_STRLIST: non-empty, unique dotted paths */
  F_PAIRS = 1 << 8,    /* T_STRLIST: "key=value" entries that librdkafka takes */
  F_ARGV = 1 << 9,     /* T_STRLIST: non-empty, first entry non-empty */
  F_LISTEN = 1 << 10,  /* T_STR: "host:port" or "[ipv6]:port" */
  F_BROKERS = 1 << 11, /* T_STR: "embedded", or [proto://]host[:port],... */
  F_ENV = 1 << 12      /* T_STR: the name of an environment variable */
};

/* One key. The bounds limit what a value can make the process allocate or
 * start (threads, connections, rows, list entries), so every key that has
 * a size sets them here, beside its name; so does its default, written as
 * the file would spell it and parsed like a value from the file, before
 * the file's own (librdkafka's .sdef). A default that depends on other
 * keys (topics.dlq, handlers.rate_limit.burst, topics.jobs.max_attempts)
 * is computed after parsing and noted beside its key. */
typedef struct {
  const char *name;
  ftype type;
  unsigned flags;
  size_t off;  /* where the value goes in the struct being filled */
  size_t noff; /* T_STRLIST: where its count goes */
  /* T_INT: the range; T_DUR: the most, in microseconds; T_STRLIST, T_LIST:
   * the most entries. */
  long long min, max;
  /* T_STR, T_STRLIST: the longest string in bytes; 0 for MAX_STRING. */
  size_t maxlen;
  const char *const *names; /* T_ENUM, T_ENUMSTR: NULL-terminated */
  /* The default, as in the file ("30s", "kjb"); NULL for none (zero, or NULL
   * for strings). */
  const char *def;
} field;

#define MAX_FIELDS 16
#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* A string key without a limit of its own: a path, URL or conninfo. */
#define MAX_STRING 4096
/* Names that end up in every job row and metric label. */
#define MAX_NAME 255
/* Worker threads all handlers start together (each has its concurrency). */
#define MAX_WORKERS 4096

#define SEC (1000 * 1000LL)
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)

static const char *const format_names[] = {"confluent", "raw", "single-object", NULL};
static const char *const scope_names[] = {"local", "cluster", NULL};
static const char *const jitter_names[] = {"full", "equal", "none", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const handler_types[] = {"http", "exec", "log", "plugin", NULL};
static const char *const on_discard_names[] = {"continue", "hold", NULL};

#define CF(m) offsetof(kjb_config, m)
#define TF(m) offsetof(kjb_topic_cfg, m)
#define JF(m) offsetof(kjb_job_cfg, m)
#define HF(m) offsetof(kjb_handler_cfg, m)
#define SF(m) offsetof(kjb_schema_id_cfg, m)
#define AF(m) offsetof(kjb_admin_token_cfg, m)
#define SCF(m) offsetof(kjb_schedule_cfg, m)

/* The tables below are packed by hand, a field to a line or two, so that they
 * read as tables; clang-format would give each initializer its own line. */
/* clang-format off */
/* The scalar sections come first, in the order of sections[] below. */
enum { R_KAFKA, R_POSTGRES, R_HTTP, R_REGISTRY, R_SCHEMAS, R_INGEST, R_EXECUTOR, R_LOG, R_TRACING,
       R_TOPICS, R_HANDLERS, R_SCHEDULES };

static const field root_fields[] = {
    [R_KAFKA] = {.name = "kafka", .type = T_GROUP},
    [R_POSTGRES] = {.name = "postgres", .type = T_GROUP},
    [R_HTTP] = {.name = "http", .type = T_GROUP},
    [R_REGISTRY] = {.name = "schema_registry", .type = T_GROUP},
    [R_SCHEMAS] = {.name = "schemas", .type = T_GROUP},
    [R_INGEST] = {.name = "ingest", .type = T_GROUP},
    [R_EXECUTOR] = {.name = "executor", .type = T_GROUP},
    [R_LOG] = {.name = "log", .type = T_GROUP},
    [R_TRACING] = {.name = "tracing", .type = T_GROUP},
    [R_TOPICS] = {.name = "topics", .type = T_LIST, .flags = F_REQUIRED, .max = 1024},
    [R_HANDLERS] = {.name = "handlers", .type = T_LIST, .max = 256},
    [R_SCHEDULES] = {.name = "schedules", .type = T_LIST, .max = 256},
};

static const field kafka_fields[] = {
    {.name = "brokers", .type = T_STR, .flags = F_REQUIRED | F_BROKERS, .off = CF(kafka.brokers)},
    {.name = "group", .type = T_STR, .off = CF(kafka.group), .maxlen = MAX_NAME, .def = "kjb"},
    /* Values may be inline PEM certificates (ssl.ca.pem). */
    {.name = "properties", .type = T_STRLIST, .flags = F_PAIRS, .off = CF(kafka.properties),
     .noff = CF(kafka.nproperties), .max = 256, .maxlen = 65536},
};

static const field postgres_fields[] = {
    {.name = "conninfo", .type = T_STR, .flags = F_REQUIRED, .off = CF(postgres.conninfo)},
    {.name = "schema", .type = T_STR, .flags = F_IDENT, .off = CF(postgres.schema), .def = "kjb"},
    {.name = "pool_size", .type = T_INT, .off = CF(postgres.pool_size), .min = 1, .max = 256,
     .def = "4"},
};

enum { HT_LISTEN, HT_TOKEN_ENV, HT_TOKENS, HT_TLS_CERT, HT_TLS_KEY };

static const field http_fields[] = {
    [HT_LISTEN] = {.name = "listen", .type = T_STR, .flags = F_LISTEN, .off = CF(http.listen),
                   .def = "127.0.0.1:9464"},
    /* The token named KJB_AUDIT_API_ADMIN. */
    [HT_TOKEN_ENV] = {.name = "admin_token_env", .type = T_STR, .flags = F_ENV,
                      .off = CF(http.admin_token_env), .maxlen = MAX_NAME,
                      .def = "KJB_ADMIN_TOKEN"},
    [HT_TOKENS] = {.name = "admin_tokens", .type = T_LIST, .max = KJB_CONFIG_ADMIN_TOKENS_MAX},
    [HT_TLS_CERT] = {.name = "tls_cert", .type = T_STR, .off = CF(http.tls_cert)},
    [HT_TLS_KEY] = {.name = "tls_key", .type = T_STR, .off = CF(http.tls_key)},
};

/* The first entry is the key that must be unique (found[0]). */
static const field admin_token_fields[] = {
    {.name = "name", .type = T_STR, .flags = F_REQUIRED, .off = AF(name),
     .maxlen = KJB_AUDIT_ACTOR_MAX},
    {.name = "env", .type = T_STR, .flags = F_REQUIRED | F_ENV, .off = AF(env),
     .maxlen = MAX_NAME},
};

static const field registry_fields[] = {
    {.name = "url", .type = T_STR, .flags = F_URL, .off = CF(schema_registry.url)},
    {.name = "timeout", .type = T_DUR, .flags = F_POSITIVE, .off = CF(schema_registry.timeout_us),
     .max = HOUR, .def = "5s"},
};

enum { S_DIR, S_IDS };

static const field schemas_fields[] = {
    [S_DIR] = {.name = "dir", .type = T_STR, .off = CF(schemas.dir), .def = "schemas/avro"},
    [S_IDS] = {.name = "ids", .type = T_LIST, .max = 4096},
};

static const field ingest_fields[] = {
    {.name = "batch_size", .type = T_INT, .off = CF(ingest.batch_size), .min = 1, .max = 1000000,
     .def = "5000"},
    {.name = "batch_timeout", .type = T_DUR, .off = CF(ingest.batch_timeout_us), .max = HOUR,
     .def = "100ms"},
};

static const field executor_fields[] = {
    {.name = "poll_interval", .type = T_DUR, .flags = F_POSITIVE,
     .off = CF(executor.poll_interval_us), .max = HOUR, .def = "1s"},
    {.name = "claim_batch", .type = T_INT, .off = CF(executor.claim_batch), .min = 1,
     .max = 100000, .def = "100"},
    {.name = "heartbeat", .type = T_DUR, .flags = F_POSITIVE, .off = CF(executor.heartbeat_us),
     .max = HOUR, .def = "2s"},
    {.name = "lease", .type = T_DUR, .flags = F_POSITIVE, .off = CF(executor.lease_us),
     .max = DAY, .def = "30s"},
    {.name = "shutdown_timeout", .type = T_DUR, .off = CF(executor.shutdown_timeout_us),
     .max = DAY, .def = "30s"},
    {.name = "retention", .type = T_DUR, .off = CF(executor.retention_us), .max = 3650 * DAY,
     .def = "7d"},
    {.name = "prune_interval", .type = T_DUR, .flags = F_POSITIVE,
     .off = CF(executor.prune_interval_us), .max = DAY, .def = "5m"},
};

static const field log_fields[] = {
    {.name = "level", .type = T_ENUMSTR, .off = CF(log.level), .names = level_names,
     .def = "info"},
    {.name = "format", .type = T_ENUMSTR, .off = CF(log.format), .names = log_format_names,
     .def = "text"},
};

static const field tracing_fields[] = {
    {.name = "otlp_endpoint", .type = T_STR, .flags = F_URL, .off = CF(tracing.otlp_endpoint)},
    {.name = "service_name", .type = T_STR, .off = CF(tracing.service_name), .maxlen = MAX_NAME,
     .def = "kjb"},
    {.name = "sample_ratio", .type = T_NUM, .flags = F_RATIO, .off = CF(tracing.sample_ratio),
     .def = "1.0"},
};

/* In schema_id_fields and job_fields, the first entry is the key that must
 * be unique; the code checks duplicates through found[0]. */
static const field schema_id_fields[] = {
    {.name = "id", .type = T_INT, .flags = F_REQUIRED, .off = SF(id), .min = 0, .max = INT_MAX},
    {.name = "file", .type = T_STR, .flags = F_REQUIRED, .off = SF(file)},
};

enum { TP_TOPIC, TP_FORMAT, TP_SCHEMA, TP_DLQ, TP_JOBS };

static const field topic_fields[] = {
    [TP_TOPIC] = {.name = "topic", .type = T_STR, .flags = F_REQUIRED | F_TOPIC,
                  .off = TF(topic)},
    [TP_FORMAT] = {.name = "format", .type = T_ENUM, .off = TF(format), .names = format_names,
                   .def = "confluent"},
    [TP_SCHEMA] = {.name = "schema", .type = T_STR, .flags = F_REQUIRED, .off = TF(schema)},
    /* Default "<topic>.dlq", set in parse_topics. */
    [TP_DLQ] = {.name = "dlq", .type = T_STR, .flags = F_TOPIC, .off = TF(dlq)},
    /* Each record becomes this many jobs. */
    [TP_JOBS] = {.name = "jobs", .type = T_LIST, .flags = F_REQUIRED, .max = 64},
};

/* Attempts in all: each failed one adds an entry to the job's errors. */
#define MAX_ATTEMPTS 1000

static const field job_fields[] = {
    {.name = "kind", .type = T_STR, .flags = F_REQUIRED, .off = JF(kind), .maxlen = MAX_NAME},
    {.name = "queue", .type = T_STR, .off = JF(queue), .maxlen = MAX_NAME, .def = "default"},
    {.name = "priority", .type = T_INT, .off = JF(priority), .min = -32768, .max = 32767},
    /* Default: the kind's handler's retry.max_attempts, else that key's
     * default; set in parse_root once the handlers are known. */
    {.name = "max_attempts", .type = T_INT, .off = JF(max_attempts), .min = 1,
     .max = MAX_ATTEMPTS},
    {.name = "unique_key", .type = T_STR, .flags = F_TEMPLATE, .off = JF(unique_key)},
    /* Jobs of the kind with the same expanded key run one at a time, in
     * source order (queue.c). */
    {.name = "ordering_key", .type = T_STR, .flags = F_TEMPLATE, .off = JF(ordering_key)},
    {.name = "args", .type = T_STRLIST, .flags = F_PATHS, .off = JF(args), .noff = JF(nargs),
     .max = 256, .maxlen = MAX_NAME},
};

/* The indexes of handler_fields entries that depend on the type. */
enum { H_KIND, H_TYPE, H_URL, H_COMMAND, H_PLUGIN, H_RATE, H_RETRY, H_BREAKER, H_TIMEOUT,
       H_CONCURRENCY, H_ON_DISCARD };

static const field handler_fields[] = {
    [H_KIND] = {.name = "kind", .type = T_STR, .flags = F_REQUIRED, .off = HF(kind),
                .maxlen = MAX_NAME},
    [H_TYPE] = {.name = "type", .type = T_ENUMSTR, .flags = F_REQUIRED, .off = HF(type),
                .names = handler_types},
    [H_URL] = {.name = "url", .type = T_STR, .flags = F_URL, .off = HF(url)},
    [H_COMMAND] = {.name = "command", .type = T_STRLIST, .flags = F_ARGV, .off = HF(command),
                   .noff = HF(ncommand), .max = 256},
    [H_PLUGIN] = {.name = "plugin", .type = T_STR, .off = HF(plugin)},
    [H_RATE] = {.name = "rate_limit", .type = T_GROUP},
    [H_RETRY] = {.name = "retry", .type = T_GROUP},
    [H_BREAKER] = {.name = "breaker", .type = T_GROUP},
    [H_TIMEOUT] = {.name = "timeout", .type = T_DUR, .flags = F_POSITIVE, .off = HF(timeout_us),
                   .max = DAY, .def = "30s"},
    /* Worker threads of this kind. */
    [H_CONCURRENCY] = {.name = "concurrency", .type = T_INT, .off = HF(concurrency), .min = 1,
                       .max = 1024, .def = "4"},
    /* hold: a discarded job keeps blocking the later jobs of its
     * ordering_key until an operator retries or cancels it. */
    [H_ON_DISCARD] = {.name = "on_discard", .type = T_ENUM, .off = HF(on_discard),
                      .names = on_discard_names, .def = "continue"},
};

enum { RL_RATE, RL_BURST, RL_SCOPE };

static const field rate_limit_fields[] = {
    [RL_RATE] = {.name = "rate", .type = T_NUM, .flags = F_REQUIRED | F_POSITIVE,
                 .off = HF(rate_limit.rate)},
    /* Default: rate rounded up, within the bounds; set in parse_handler. */
    [RL_BURST] = {.name = "burst", .type = T_INT, .off = HF(rate_limit.burst), .min = 1,
                  .max = 1000000},
    [RL_SCOPE] = {.name = "scope", .type = T_ENUM, .off = HF(rate_limit.scope),
                  .names = scope_names, .def = "local"},
};

enum { RT_MAX_ATTEMPTS, RT_BASE, RT_MAX, RT_JITTER };

static const field retry_fields[] = {
    [RT_MAX_ATTEMPTS] = {.name = "max_attempts", .type = T_INT, .off = HF(retry.max_attempts),
                         .min = 1, .max = MAX_ATTEMPTS, .def = "20"},
    [RT_BASE] = {.name = "base", .type = T_DUR, .flags = F_POSITIVE, .off = HF(retry.base_us),
                 .max = DAY, .def = "1s"},
    [RT_MAX] = {.name = "max", .type = T_DUR, .flags = F_POSITIVE, .off = HF(retry.max_us),
                .max = 30 * DAY, .def = "1h"},
    [RT_JITTER] = {.name = "jitter", .type = T_ENUM, .off = HF(retry.jitter),
                   .names = jitter_names, .def = "full"},
};

static const field breaker_fields[] = {
    {.name = "failure_ratio", .type = T_NUM, .flags = F_RATIO, .off = HF(breaker.failure_ratio),
     .def = "0.5"},
    /* The breaker keeps the outcomes of the last min_calls calls. */
    {.name = "min_calls", .type = T_INT, .off = HF(breaker.min_calls), .min = 1,
     .max = KJB_BREAKER_WINDOW, .def = "20"},
    {.name = "open_for", .type = T_DUR, .flags = F_POSITIVE, .off = HF(breaker.open_for_us),
     .max = DAY, .def = "30s"},
};

/* Schedules (parse_schedules): the name comes first, as it must be unique. */
enum { SC_NAME, SC_KIND, SC_QUEUE, SC_PRIORITY, SC_MAX_ATTEMPTS, SC_CRON, SC_TIMEZONE, SC_ARGS,
       SC_MISFIRE_GRACE };

static const field schedule_fields[] = {
    [SC_NAME] = {.name = "name", .type = T_STR, .flags = F_REQUIRED, .off = SCF(name),
                 .maxlen = MAX_NAME},
    [SC_KIND] = {.name = "kind", .type = T_STR, .flags = F_REQUIRED, .off = SCF(kind),
                 .maxlen = MAX_NAME},
    [SC_QUEUE] = {.name = "queue", .type = T_STR, .off = SCF(queue), .maxlen = MAX_NAME,
                  .def = "default"},
    [SC_PRIORITY] = {.name = "priority", .type = T_INT, .off = SCF(priority), .min = -32768,
                     .max = 32767},
    /* Default: as for topics.jobs.max_attempts; set in parse_schedules. */
    [SC_MAX_ATTEMPTS] = {.name = "max_attempts", .type = T_INT, .off = SCF(max_attempts),
                         .min = 1, .max = MAX_ATTEMPTS},
    [SC_CRON] = {.name = "cron", .type = T_STR, .flags = F_REQUIRED, .off = SCF(cron),
                 .maxlen = KJB_CRON_MAX},
    /* Checked against pg_timezone_names by `kjb run` (schedule.c). */
    [SC_TIMEZONE] = {.name = "timezone", .type = T_STR, .off = SCF(timezone), .maxlen = 64,
                     .def = "UTC"},
    [SC_ARGS] = {.name = "args", .type = T_STR, .off = SCF(args), .maxlen = 65536, .def = "{}"},
    /* Absent: the latest missed tick is caught up however late. */
    [SC_MISFIRE_GRACE] = {.name = "misfire_grace", .type = T_DUR, .flags = F_POSITIVE,
                          .off = SCF(misfire_grace_us), .max = 3650 * DAY},
};
/* clang-format on */

/* The scalar sections: each scalar key may come from the environment. */
static const struct section {
  const char *name;
  const field *fields;
  size_t nfields;
} sections[] = {
    {"kafka", kafka_fields, NFIELDS(kafka_fields)},
    {"postgres", postgres_fields, NFIELDS(postgres_fields)},
    {"http", http_fields, NFIELDS(http_fields)},
    {"schema_registry", registry_fields, NFIELDS(registry_fields)},
    {"schemas", schemas_fields, NFIELDS(schemas_fields)},
    {"ingest", ingest_fields, NFIELDS(ingest_fields)},
    {"executor", executor_fields, NFIELDS(executor_fields)},
    {"log", log_fields, NFIELDS(log_fields)},
    {"tracing", tracing_fields, NFIELDS(tracing_fields)},
};

/* The groups inside lists, by their dotted path without indexes: with
 * sections[], every key kjb_config_default can name. */
static const struct section nested[] = {
    {"http.admin_tokens", admin_token_fields, NFIELDS(admin_token_fields)},
    {"schemas.ids", schema_id_fields, NFIELDS(schema_id_fields)},
    {"topics", topic_fields, NFIELDS(topic_fields)},
    {"topics.jobs", job_fields, NFIELDS(job_fields)},
    {"handlers", handler_fields, NFIELDS(handler_fields)},
    {"handlers.rate_limit", rate_limit_fields, NFIELDS(rate_limit_fields)},
    {"handlers.retry", retry_fields, NFIELDS(retry_fields)},
    {"handlers.breaker", breaker_fields, NFIELDS(breaker_fields)},
    {"schedules", schedule_fields, NFIELDS(schedule_fields)},
};

/* ---- Loading state and error reporting -------------------------------- */

typedef struct {
  const kjb_cfgsrc *src; /* the text libconfig parsed, and where it came from */
  kjb_config *cfg;
  kjb_err *err;
} ctx;

/* Where one value comes from: a setting in a file, or an environment
 * variable. key is its dotted name ("kafka.group") for messages. */
typedef struct {
  const config_setting_t *s;
  const char *env;
  const char *text;
  const char *key;
} val;

/* The file a setting came from and its line there. libconfig only saw one
 * text, with the included files spliced in. */
static const char *source(const ctx *c, const config_setting_t *s, unsigned *line) {
  return kjb_cfgsrc_where(c->src, config_setting_source_line(s), line);
}

static int line_of(const ctx *c, const config_setting_t *s) {
  unsigned line;
  source(c, s, &line);
  return (int)line;
}

/* "<file>:<line>", or just "<file>" for the root group, which has no line. */
static void location(const ctx *c, const config_setting_t *s, char *buf, size_t size) {
  unsigned line;
  const char *file = source(c, s, &line);
  if (line)
    snprintf(buf, size, "%s:%u", file, line);
  else
    snprintf(buf, size, "%s", file);
}

__attribute__((format(printf, 3, 4))) static int fail_at(ctx *c, const config_setting_t *s,
                                                         const char *fmt, ...) {
  char where[PATH_MAX + 16], msg[sizeof c->err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  location(c, s, where, sizeof where);
  return kjb_err_set(c->err, KJB_ECONFIG, "%s: %s", where, msg);
}

__attribute__((format(printf, 3, 4))) static int vfail(ctx *c, const val *v, const char *fmt, ...) {
  char msg[sizeof c->err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (v->s)
    return fail_at(c, v->s, "%s: %s", v->key, msg);
  return kjb_err_set(c->err, KJB_ECONFIG, "environment %s: %s", v->env, msg);
}

/* "line 7", or "other.cfg:7" when first is in another file than now. */
static void first_defined(const ctx *c, const config_setting_t *first, const config_setting_t *now,
                          char *buf, size_t size) {
  unsigned line, ignored;
  const char *a = source(c, first, &line);
  const char *b = source(c, now, &ignored);
  if (strcmp(a, b) == 0)
    snprintf(buf, size, "line %u", line);
  else
    location(c, first, buf, size);
}

static const char *type_name(const config_setting_t *s) {
  switch (config_setting_type(s)) {
  case CONFIG_TYPE_INT:
  case CONFIG_TYPE_INT64: return "an integer";
  case CONFIG_TYPE_FLOAT: return "a float";
  case CONFIG_TYPE_STRING: return "a string";
  case CONFIG_TYPE_BOOL: return "a boolean";
  case CONFIG_TYPE_GROUP: return "a group";
  case CONFIG_TYPE_ARRAY: return "an array";
  case CONFIG_TYPE_LIST: return "a list";
  default: return "nothing";
  }
}

static bool is_int(const config_setting_t *s) {
  int t = config_setting_type(s);
  return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

static bool is_number(const config_setting_t *s) {
  return is_int(s) || config_setting_type(s) == CONFIG_TYPE_FLOAT;
}

/* Levenshtein distance, for "did you mean" on misspelt keys. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return SIZE_MAX;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

static int unknown_key(ctx *c, const config_setting_t *s, const char *gpath, const field *fs,
                       size_t nf) {
  const char *name = config_setting_name(s);
  const char *best = NULL;
  size_t best_d = 3;
  for (size_t i = 0; i < nf; i++) {
    size_t d = edit_distance(name, fs[i].name);
    if (d < best_d && d < strlen(name)) {
      best = fs[i].name;
      best_d = d;
    }
  }
  char hint[96] = "";
  if (best)
    snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", best);
  if (!gpath)
    return fail_at(c, s, "unknown section \"%s\"%s", name, hint);
  return fail_at(c, s, "unknown key \"%s\" in %s%s", name, gpath, hint);
}

/* ---- Values -------------------------------------------------------------- */

static int get_string(ctx *c, const val *v, const char **out) {
  if (!v->s) {
    *out = v->text;
    return 0;
  }
  if (config_setting_type(v->s) != CONFIG_TYPE_STRING)
    return vfail(c, v, "expected a string, got %s", type_name(v->s));
  *out = config_setting_get_string(v->s);
  return 0;
}

static int get_int(ctx *c, const val *v, long long min, long long max, int *out) {
  long long n;
  if (v->s) {
    if (!is_int(v->s))
      return vfail(c, v, "expected an integer, got %s", type_name(v->s));
    n = config_setting_get_int64(v->s);
  } else {
    int64_t i;
    if (kjb_parse_i64(v->text, INT64_MIN, INT64_MAX, &i) != 0)
      return vfail(c, v, "expected an integer, got \"%s\"", v->text);
    n = i;
  }
  /* Most keys only have a lower bound; INT_MAX is the width of the field. */
  if (max == INT_MAX && n < min)
    return vfail(c, v, "must be at least %lld, got %lld", min, n);
  if (max == INT_MAX && n > max)
    return vfail(c, v, "must be at most %lld, got %lld", max, n);
  if (n < min || n > max)
    return vfail(c, v, "must be between %lld and %lld, got %lld", min, max, n);
  *out = (int)n;
  return 0;
}

static int get_number(ctx *c, const val *v, unsigned flags, double *out) {
  double d;
  if (v->s) {
    if (!is_number(v->s))
      return vfail(c, v, "expected a number, got %s", type_name(v->s));
    d = config_setting_type(v->s) == CONFIG_TYPE_FLOAT ? config_setting_get_float(v->s)
                                                       : (double)config_setting_get_int64(v->s);
  } else {
    char *end;
    errno = 0;
    d = strtod(v->text, &end);
    if (end == v->text || *end || errno)
      return vfail(c, v, "expected a number, got \"%s\"", v->text);
  }
  if (!isfinite(d))
    return vfail(c, v, "must be a finite number");
  if ((flags & F_RATIO) && !(d > 0 && d <= 1))
    return vfail(c, v, "must be greater than 0 and at most 1, got %g", d);
  if ((flags & F_POSITIVE) && !(d > 0))
    return vfail(c, v, "must be greater than 0, got %g", d);
  *out = d;
  return 0;
}

/* us in the largest unit that divides it: "1d", "3650d", "90s". */
static void format_duration(int64_t us, char *buf, size_t size) {
  static const struct {
    const char *unit;
    int64_t us;
  } units[] = {{"d", DAY}, {"h", HOUR}, {"m", 60 * SEC}, {"s", SEC}, {"ms", 1000}, {"us", 1}};
  size_t i = 0;
  while (us % units[i].us != 0)
    i++;
  snprintf(buf, size, "%lld%s", (long long)(us / units[i].us), units[i].unit);
}

static int get_duration(ctx *c, const val *v, const field *f, int64_t *out) {
  char num[64];
  const char *text = v->text;
  if (v->s) {
    /* A bare number is the classic mistake ("timeout = 5"); name the
     * missing unit rather than the type. */
    if (is_int(v->s))
      snprintf(num, sizeof num, "%lld", config_setting_get_int64(v->s));
    else if (config_setting_type(v->s) == CONFIG_TYPE_FLOAT)
      snprintf(num, sizeof num, "%g", config_setting_get_float(v->s));
    else if (config_setting_type(v->s) != CONFIG_TYPE_STRING)
      return vfail(c, v, "expected a duration such as \"30s\", got %s", type_name(v->s));
    text = config_setting_type(v->s) == CONFIG_TYPE_STRING ? config_setting_get_string(v->s) : num;
  }
  if (kjb_duration_parse(text, out) != 0)
    return vfail(c, v, "invalid duration \"%s\" (" DURATION_HINT ")", text);
  if ((f->flags & F_POSITIVE) && *out <= 0)
    return vfail(c, v, "must be greater than 0, got \"%s\"", text);
  assert(f->max > 0);
  if (*out > f->max) {
    char max[32];
    format_duration(f->max, max, sizeof max);
    return vfail(c, v, "must be at most %s, got \"%s\"", max, text);
  }
  return 0;
}

static int get_enum(ctx *c, const val *v, const char *const *names, int *out) {
  const char *s = NULL;
  int rc = get_string(c, v, &s);
  if (rc)
    return rc;
  for (int i = 0; names[i]; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = i;
      return 0;
    }
  }
  char list[128] = "";
  size_t len = 0;
  for (int i = 0; names[i] && len < sizeof list; i++) {
    const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", sep, names[i]);
  }
  return vfail(c, v, "invalid value \"%s\" (expected %s)", s, list);
}

static bool is_avro_name(const char *s, size_t n) {
  if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
    return false;
  for (size_t i = 1; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
      return false;
  return true;
}

/* A dotted path of Avro names: "order_id", "customer.email". */
static bool is_path(const char *s, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || s[i] == '.') {
      if (!is_avro_name(s + start, i - start))
        return false;
      start = i + 1;
    }
  }
  return true;
}

static int check_template(ctx *c, const val *v, const char *t) {
  const char *p = t;
  while ((p = strstr(p, "${")) != NULL) {
    const char *path = p + 2, *close = strchr(path, '}');
    if (!close)
      return vfail(c, v,
                   "invalid template \"%s\": \"${\" at byte %td is not "
                   "closed by \"}\"",
                   t, p - t);
    size_t n = (size_t)(close - path);
    if (n == 0)
      return vfail(c, v, "invalid template \"%s\": empty path at byte %td", t, p - t);
    if (!is_path(path, n))
      return vfail(c, v,
                   "invalid template \"%s\": invalid path \"%.*s\" at byte "
                   "%td (" PATH_HINT ")",
                   t, (int)n, path, p - t);
    p = close + 1;
  }
  return 0;
}

static bool is_topic_name(const char *s) {
  size_t n = strlen(s);
  if (n > 249 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || strchr("._-", s[i])))
      return false;
  return true;
}

/* A name a shell can export: [A-Za-z_][A-Za-z0-9_]*. */
static bool is_env_name(const char *s) {
  if (isdigit((unsigned char)s[0]))
    return false;
  for (; *s; s++)
    if (!(isalnum((unsigned char)*s) || *s == '_'))
      return false;
  return true;
}

/* Strings are measured before anything else looks at them. */
static int check_length(ctx *c, const val *v, const char *s, const field *f) {
  size_t max = f->maxlen ? f->maxlen : MAX_STRING, len = strlen(s);
  if (len > max)
    return vfail(c, v, "must be at most %zu bytes, got %zu", max, len);
  return 0;
}

/* An address as kjb_hostport_parse reads it, the n bytes at s. */
static int check_address(ctx *c, const val *v, const char *s, size_t n, bool need_port) {
  char addr[MAX_STRING + 1], host[256];
  int port;
  kjb_err why;
  snprintf(addr, sizeof addr, "%.*s", (int)n, s);
  if (kjb_hostport_parse(addr, need_port, host, sizeof host, &port, &why) < 0)
    return vfail(c, v, "%s", why.msg);
  return 0;
}

/* The host and port of an http:// or https:// URL; a user name and
 * password before them are neither looked at nor shown. */
static int check_url(ctx *c, const val *v, const char *s) {
  const char *auth = strncmp(s, "http://", 7) == 0    ? s + 7
                     : strncmp(s, "https://", 8) == 0 ? s + 8
                                                      : NULL;
  if (!auth)
    return vfail(c, v, "expected an http:// or https:// URL, got \"%s\"", s);
  size_t n = strcspn(auth, "/?#");
  if (n == 0)
    return vfail(c, v, "expected a host after \"%.*s\", got \"%s\"", (int)(auth - s), s, s);
  const char *at = memrchr(auth, '@', n);
  if (at) {
    n -= (size_t)(at + 1 - auth);
    auth = at + 1;
  }
  return check_address(c, v, auth, n, false);
}

/* librdkafka's bootstrap.servers: comma-separated, blanks around entries
 * and empty entries allowed, each maybe with a protocol ("SSL://"). */
static int check_brokers(ctx *c, const val *v, const char *s) {
  if (strcmp(s, "embedded") == 0)
    return 0;
  for (const char *p = s; *p;) {
    p += strspn(p, " \t");
    size_t n = strcspn(p, ",");
    const char *next = p[n] ? p + n + 1 : p + n;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
      n--;
    const char *proto = memmem(p, n, "://", 3);
    if (proto) {
      n -= (size_t)(proto + 3 - p);
      p = proto + 3;
    }
    int rc = n ? check_address(c, v, p, n, false) : 0;
    if (rc)
      return rc;
    p = next;
  }
  return 0;
}

static int check_string(ctx *c, const val *v, const char *s, const field *f) {
  unsigned flags = f->flags;
  int rc = check_length(c, v, s, f);
  if (rc)
    return rc;
  if (!*s)
    return vfail(c, v, "must not be empty");
  if ((flags & F_URL) && (rc = check_url(c, v, s)))
    return rc;
  if ((flags & F_LISTEN) && (rc = check_address(c, v, s, strlen(s), true)))
    return rc;
  if ((flags & F_BROKERS) && (rc = check_brokers(c, v, s)))
    return rc;
  if ((flags & F_IDENT) && (strlen(s) > 63 || !is_avro_name(s, strlen(s))))
    return vfail(c, v,
                 "invalid name \"%s\" (expected at most 63 letters, digits "
                 "and underscores, not starting with a digit)",
                 s);
  if ((flags & F_ENV) && !is_env_name(s))
    return vfail(c, v,
                 "invalid environment variable name \"%s\" (expected letters, digits and "
                 "underscores, not starting with a digit)",
                 s);
  if ((flags & F_TOPIC) && !is_topic_name(s))
    return vfail(c, v,
                 "invalid topic name \"%s\" (expected at most 249 letters, "
                 "digits, \".\", \"_\" and \"-\")",
                 s);
  if (flags & F_TEMPLATE)
    return check_template(c, v, s);
  return 0;
}

static int check_count(ctx *c, const val *v, const field *f) {
  assert(f->max > 0);
  int n = config_setting_length(v->s);
  if (n > f->max)
    return vfail(c, v, "must have at most %lld entries, got %d", f->max, n);
  return 0;
}

/* librdkafka's verdict on the whole list, in order (a plugin can add keys
 * for the entries after it), reported at the entry it refuses. */
static int check_pairs(ctx *c, const val *v, char **list, size_t n) {
  size_t bad;
  kjb_err why;
  if (kjb_kafka_check_properties(list, n, &bad, &why) == 0)
    return 0;
  char key[256];
  snprintf(key, sizeof key, "%s[%zu]", v->key, bad);
  return vfail(c, &(val){.s = config_setting_get_elem(v->s, (unsigned)bad), .key = key}, "%s",
               why.msg);
}

/* A list of strings: an array or a list, checked per f. */
static int get_strlist(ctx *c, const val *v, const field *f, char ***out, size_t *nout) {
  const config_setting_t *s = v->s;
  unsigned flags = f->flags;
  int t = config_setting_type(s);
  if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
    return vfail(c, v, "expected a list of strings, got %s", type_name(s));
  int rc = check_count(c, v, f);
  if (rc)
    return rc;
  size_t n = (size_t)config_setting_length(s);
  if (n == 0 && (flags & F_PATHS))
    return vfail(c, v, "must not be empty (leave args out to pass the whole record)");
  if (n == 0 && (flags & F_ARGV))
    return vfail(c, v, "must not be empty");
  char **list = kjb_xcalloc(n, sizeof *list);
  /* Owned by the config from here on, so a failure below frees it. */
  *out = list;
  *nout = n;
  for (size_t i = 0; i < n; i++) {
    char key[256];
    snprintf(key, sizeof key, "%s[%zu]", v->key, i);
    const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
    val ev = {.s = e, .key = key};
    if (config_setting_type(e) != CONFIG_TYPE_STRING)
      return vfail(c, &ev, "expected a string, got %s", type_name(e));
    const char *str = config_setting_get_string(e);
    if ((rc = check_length(c, &ev, str, f)))
      return rc;
    if ((flags & F_PATHS) && !is_path(str, strlen(str)))
      return vfail(c, &ev, "invalid path \"%s\" (" PATH_HINT ")", str);
    if ((flags & F_PATHS)) {
      for (size_t k = 0; k < i; k++)
        if (strcmp(list[k], str) == 0)
          return vfail(c, &ev, "duplicate path \"%s\"", str);
    }
    /* Not echoed: an entry that lost its '=' may well be a password. */
    if ((flags & F_PAIRS) && (str[0] == '=' || !strchr(str, '=')))
      return vfail(c, &ev, "expected \"key=value\", got %s",
                   str[0] == '=' ? "no key before \"=\"" : "no \"=\"");
    if ((flags & F_ARGV) && i == 0 && !*str)
      return vfail(c, &ev, "must not be empty");
    list[i] = kjb_xstrdup(str);
  }
  return (flags & F_PAIRS) ? check_pairs(c, v, list, n) : 0;
}

static void set_string(char **slot, const char *s) {
  free(*slot);
  *slot = kjb_xstrdup(s);
}

/* Parses one value into base + f->off. */
static int set_field(ctx *c, const field *f, const val *v, void *base) {
  char *p = (char *)base + f->off;
  const char *s = NULL;
  int rc = 0;
  switch (f->type) {
  case T_STR:
    if (!(rc = get_string(c, v, &s)) && !(rc = check_string(c, v, s, f)))
      set_string((char **)p, s);
    return rc;
  case T_INT: return get_int(c, v, f->min, f->max, (int *)p);
  case T_NUM: return get_number(c, v, f->flags, (double *)p);
  case T_DUR: return get_duration(c, v, f, (int64_t *)p);
  case T_ENUM: return get_enum(c, v, f->names, (int *)p);
  case T_ENUMSTR: {
    int i;
    if (!(rc = get_enum(c, v, f->names, &i)))
      set_string((char **)p, f->names[i]);
    return rc;
  }
  case T_STRLIST: return get_strlist(c, v, f, (char ***)p, (size_t *)((char *)base + f->noff));
  case T_GROUP:
    if (config_setting_type(v->s) != CONFIG_TYPE_GROUP)
      return vfail(c, v, "expected a group, got %s", type_name(v->s));
    return 0;
  case T_LIST:
    if (config_setting_type(v->s) != CONFIG_TYPE_LIST)
      return vfail(c, v, "expected a list of groups, got %s", type_name(v->s));
    return check_count(c, v, f);
  }
  return 0;
}

/* Checks every member of group g against fs and parses it into base.
 * found[i] receives the setting for fs[i] (NULL when absent). gpath names
 * the group in messages; NULL for the root. */
static int parse_group(ctx *c, const config_setting_t *g, const char *gpath, const field *fs,
                       size_t nf, void *base, const config_setting_t **found) {
  assert(nf <= MAX_FIELDS);
  for (size_t i = 0; i < nf; i++)
    found[i] = NULL;
  int n = config_setting_length(g);
  for (int i = 0; i < n; i++) {
    const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
    const char *name = config_setting_name(m);
    size_t k = 0;
    while (k < nf && strcmp(fs[k].name, name) != 0)
      k++;
    if (k == nf)
      return unknown_key(c, m, gpath, fs, nf);
    found[k] = m;
    char key[256];
    if (gpath)
      snprintf(key, sizeof key, "%s.%s", gpath, name);
    else
      snprintf(key, sizeof key, "%s", name);
    int rc = set_field(c, &fs[k], &(val){.s = m, .key = key}, base);
    if (rc)
      return rc;
  }
  return 0;
}

/* Reports the first F_REQUIRED field of fs that is neither in the file
 * (found) nor set from the environment (env_set, may be NULL), at the line
 * of the enclosing group g. */
static int check_required(ctx *c, const config_setting_t *g, const char *gpath, const field *fs,
                          size_t nf, const config_setting_t **found, const bool *env_set) {
  for (size_t i = 0; i < nf; i++) {
    if (!(fs[i].flags & F_REQUIRED) || found[i] || (env_set && env_set[i]))
      continue;
    if (!gpath)
      return fail_at(c, g, "missing required section \"%s\"", fs[i].name);
    if (env_set) {
      char env[128];
      snprintf(env, sizeof env, "KJB_%s_%s", gpath, fs[i].name);
      for (char *p = env; *p; p++)
        *p = (char)toupper((unsigned char)*p);
      return fail_at(c, g, "missing required key \"%s\" in %s (or set %s)", fs[i].name, gpath, env);
    }
    return fail_at(c, g, "missing required key \"%s\" in %s", fs[i].name, gpath);
  }
  return 0;
}

/* ---- Sections ------------------------------------------------------------ */

/* Sets each key of fs that has a default in base, parsed as a value from
 * the file would be; the file and the environment overwrite them later.
 * A default that does not parse is a bug in the table. */
static void set_defaults(ctx *c, const field *fs, size_t nf, void *base) {
  for (size_t i = 0; i < nf; i++) {
    if (!fs[i].def)
      continue;
    int rc =
        set_field(c, &fs[i], &(val){.env = "default", .text = fs[i].def, .key = fs[i].name}, base);
    assert(rc == 0);
    (void)rc;
  }
}

static int parse_schema_ids(ctx *c, const config_setting_t *list) {
  kjb_config *cfg = c->cfg;
  size_t n = (size_t)config_setting_length(list);
  cfg->schemas.ids = kjb_xcalloc(n, sizeof *cfg->schemas.ids);
  cfg->schemas.nids = n;
  for (size_t i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    const config_setting_t *found[MAX_FIELDS];
    kjb_schema_id_cfg *id = &cfg->schemas.ids[i];
    char gpath[64];
    snprintf(gpath, sizeof gpath, "schemas.ids[%zu]", i);
    if (config_setting_type(e) != CONFIG_TYPE_GROUP)
      return fail_at(c, e, "%s: expected a group, got %s", gpath, type_name(e));
    id->line = line_of(c, e);
    set_defaults(c, schema_id_fields, NFIELDS(schema_id_fields), id);
    int rc = parse_group(c, e, gpath, schema_id_fields, NFIELDS(schema_id_fields), id, found);
    if (!rc)
      rc = check_required(c, e, gpath, schema_id_fields, NFIELDS(schema_id_fields), found, NULL);
    if (rc)
      return rc;
    for (size_t k = 0; k < i; k++) {
      if (cfg->schemas.ids[k].id != id->id)
        continue;
      char first[PATH_MAX + 16];
      const config_setting_t *prev =
          config_setting_get_member(config_setting_get_elem(list, (unsigned)k), "id");
      first_defined(c, prev, found[0], first, sizeof first);
      return fail_at(c, found[0],
                     "%s.id: duplicate schema id %d (first "
                     "defined at %s)",
                     gpath, id->id, first);
    }
  }
  return 0;
}

/* The named admin tokens, once http.admin_token_env is final: names are
 * actors (kjb_audit_actor_problem), unique, and neither the admin token's
 * name nor a command's ("cli:..."); each variable names one token. */
static int parse_admin_tokens(ctx *c, const config_setting_t *list) {
  kjb_config *cfg = c->cfg;
  size_t n = (size_t)config_setting_length(list);
  cfg->http.admin_tokens = kjb_xcalloc(n, sizeof *cfg->http.admin_tokens);
  cfg->http.nadmin_tokens = n;
  for (size_t i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    const config_setting_t *found[MAX_FIELDS];
    kjb_admin_token_cfg *t = &cfg->http.admin_tokens[i];
    char gpath[64];
    snprintf(gpath, sizeof gpath, "http.admin_tokens[%zu]", i);
    if (config_setting_type(e) != CONFIG_TYPE_GROUP)
      return fail_at(c, e, "%s: expected a group, got %s", gpath, type_name(e));
    t->line = line_of(c, e);
    int rc = parse_group(c, e, gpath, admin_token_fields, NFIELDS(admin_token_fields), t, found);
    if (!rc)
      rc =
          check_required(c, e, gpath, admin_token_fields, NFIELDS(admin_token_fields), found, NULL);
    if (rc)
      return rc;
    const char *why = kjb_audit_actor_problem(t->name);
    if (why)
      return fail_at(c, found[0], "%s.name: %s", gpath, why);
    if (strncmp(t->name, "cli:", 4) == 0)
      return fail_at(c, found[0], "%s.name: \"cli:\" starts the names of commands' actors", gpath);
    if (strcmp(t->name, KJB_AUDIT_API_ADMIN) == 0)
      return fail_at(c, found[0], "%s.name: \"%s\" is the token of http.admin_token_env", gpath,
                     KJB_AUDIT_API_ADMIN);
    if (strcmp(t->env, cfg->http.admin_token_env) == 0)
      return fail_at(c, found[1], "%s.env: \"%s\" is http.admin_token_env already", gpath, t->env);
    for (size_t k = 0; k < i; k++) {
      const kjb_admin_token_cfg *prev = &cfg->http.admin_tokens[k];
      int same_name = strcmp(prev->name, t->name) == 0;
      if (!same_name && strcmp(prev->env, t->env) != 0)
        continue;
      const char *key = same_name ? "name" : "env";
      char first[PATH_MAX + 16];
      first_defined(c, config_setting_get_member(config_setting_get_elem(list, (unsigned)k), key),
                    found[same_name ? 0 : 1], first, sizeof first);
      return fail_at(c, found[same_name ? 0 : 1],
                     "%s.%s: duplicate %s \"%s\" (first defined at %s)", gpath, key,
                     same_name ? "token name" : "environment variable",
                     same_name ? t->name : t->env, first);
    }
  }
  return 0;
}

/* A scalar section: the file's values, then the environment's. */
static int parse_section(ctx *c, const struct section *sec, const config_setting_t *g,
                         const config_setting_t *root) {
  const config_setting_t *found[MAX_FIELDS] = {NULL};
  bool env_set[MAX_FIELDS] = {false};
  int rc;
  set_defaults(c, sec->fields, sec->nfields, c->cfg);
  if (g && (rc = parse_group(c, g, sec->name, sec->fields, sec->nfields, c->cfg, found)))
    return rc;
  for (size_t i = 0; i < sec->nfields; i++) {
    const field *f = &sec->fields[i];
    if (f->type == T_STRLIST || f->type == T_GROUP || f->type == T_LIST)
      continue;
    char name[128];
    snprintf(name, sizeof name, "KJB_%s_%s", sec->name, f->name);
    for (char *p = name; *p; p++)
      *p = (char)toupper((unsigned char)*p);
    /* An empty variable counts as unset, as with most tools that read
     * their settings from the environment. */
    const char *text = getenv(name);
    if (!text || !*text)
      continue;
    if ((rc = set_field(c, f, &(val){.env = name, .text = text}, c->cfg)))
      return rc;
    env_set[i] = true;
  }
  if ((rc = check_required(c, g ? g : root, sec->name, sec->fields, sec->nfields, found, env_set)))
    return rc;
  if (sec->fields == schemas_fields && found[S_IDS])
    return parse_schema_ids(c, found[S_IDS]);
  if (sec->fields == http_fields && found[HT_TOKENS])
    return parse_admin_tokens(c, found[HT_TOKENS]);
  return 0;
}

static int parse_subgroup(ctx *c, const config_setting_t *g, const char *hpath, const char *name,
                          const field *fs, size_t nf, kjb_handler_cfg *h) {
  const config_setting_t *found[MAX_FIELDS];
  char gpath[96];
  snprintf(gpath, sizeof gpath, "%s.%s", hpath, name);
  int rc = parse_group(c, g, gpath, fs, nf, h, found);
  if (!rc)
    rc = check_required(c, g, gpath, fs, nf, found, NULL);
  return rc;
}

static int parse_handler(ctx *c, const config_setting_t *e, const char *hpath, kjb_handler_cfg *h) {
  const config_setting_t *found[MAX_FIELDS];
  int rc;
  h->line = line_of(c, e);
  /* The groups' defaults hold without the groups too: jobs take their
   * max_attempts from retry either way. */
  set_defaults(c, handler_fields, NFIELDS(handler_fields), h);
  set_defaults(c, rate_limit_fields, NFIELDS(rate_limit_fields), h);
  set_defaults(c, retry_fields, NFIELDS(retry_fields), h);
  set_defaults(c, breaker_fields, NFIELDS(breaker_fields), h);
  if ((rc = parse_group(c, e, hpath, handler_fields, NFIELDS(handler_fields), h, found)) ||
      (rc = check_required(c, e, hpath, handler_fields, NFIELDS(handler_fields), found, NULL)))
    return rc;

  /* Each type has its own target key, and only that one. */
  static const struct {
    const char *type;
    int index;
  } targets[] = {{"http", H_URL}, {"exec", H_COMMAND}, {"plugin", H_PLUGIN}};
  for (size_t i = 0; i < NFIELDS(targets); i++) {
    const char *key = handler_fields[targets[i].index].name;
    const config_setting_t *s = found[targets[i].index];
    if (strcmp(h->type, targets[i].type) == 0 && !s)
      return fail_at(c, e,
                     "missing required key \"%s\" in %s (required "
                     "for type \"%s\")",
                     key, hpath, h->type);
    if (strcmp(h->type, targets[i].type) != 0 && s)
      return fail_at(c, s, "%s.%s: only valid for type \"%s\", not \"%s\"", hpath, key,
                     targets[i].type, h->type);
  }

  if (found[H_RATE]) {
    if ((rc = parse_subgroup(c, found[H_RATE], hpath, "rate_limit", rate_limit_fields,
                             NFIELDS(rate_limit_fields), h)))
      return rc;
    h->rate_limit.enabled = 1;
    if (!config_setting_get_member(found[H_RATE], "burst")) {
      double burst = ceil(h->rate_limit.rate);
      double most = (double)rate_limit_fields[RL_BURST].max;
      h->rate_limit.burst = burst < 1 ? 1 : burst > most ? (int)most : (int)burst;
    }
  }
  if (found[H_RETRY]) {
    if ((rc = parse_subgroup(c, found[H_RETRY], hpath, "retry", retry_fields, NFIELDS(retry_fields),
                             h)))
      return rc;
    if (h->retry.max_us < h->retry.base_us) {
      const config_setting_t *max = config_setting_get_member(found[H_RETRY], "max");
      if (max)
        return fail_at(c, max,
                       "%s.retry.max: must not be less than "
                       "retry.base",
                       hpath);
      return fail_at(c, config_setting_get_member(found[H_RETRY], "base"),
                     "%s.retry.base: must not be more than retry.max "
                     "(default %s)",
                     hpath, retry_fields[RT_MAX].def);
    }
  }
  if (found[H_BREAKER]) {
    if ((rc = parse_subgroup(c, found[H_BREAKER], hpath, "breaker", breaker_fields,
                             NFIELDS(breaker_fields), h)))
      return rc;
    h->breaker.enabled = 1;
  }
  return 0;
}

/* Each handler starts its concurrency in worker threads; all of them
 * together may start MAX_WORKERS. workers counts those before handler i. */
static int check_workers(ctx *c, const config_setting_t *e, size_t i, long *workers) {
  *workers += c->cfg->handlers[i].concurrency;
  if (*workers <= MAX_WORKERS)
    return 0;
  const config_setting_t *at = config_setting_get_member(e, "concurrency");
  return fail_at(c, at ? at : e,
                 "handlers[%zu].concurrency: the handlers' concurrency adds up "
                 "to %ld, more than %d",
                 i, *workers, MAX_WORKERS);
}

static int parse_handlers(ctx *c, const config_setting_t *list) {
  kjb_config *cfg = c->cfg;
  long workers = 0;
  size_t n = (size_t)config_setting_length(list);
  cfg->handlers = kjb_xcalloc(n, sizeof *cfg->handlers);
  cfg->nhandlers = n;
  for (size_t i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    char hpath[64];
    snprintf(hpath, sizeof hpath, "handlers[%zu]", i);
    if (config_setting_type(e) != CONFIG_TYPE_GROUP)
      return fail_at(c, e, "%s: expected a group, got %s", hpath, type_name(e));
    int rc = parse_handler(c, e, hpath, &cfg->handlers[i]);
    if (rc)
      return rc;
    for (size_t k = 0; k < i; k++) {
      if (strcmp(cfg->handlers[k].kind, cfg->handlers[i].kind) != 0)
        continue;
      const config_setting_t *now = config_setting_get_member(e, "kind");
      const config_setting_t *prev =
          config_setting_get_member(config_setting_get_elem(list, (unsigned)k), "kind");
      char first[PATH_MAX + 16];
      first_defined(c, prev, now, first, sizeof first);
      return fail_at(c, now,
                     "%s.kind: duplicate handler for kind \"%s\" "
                     "(first defined at %s)",
                     hpath, cfg->handlers[i].kind, first);
    }
    if ((rc = check_workers(c, e, i, &workers)))
      return rc;
  }
  return 0;
}

static int parse_jobs(ctx *c, const config_setting_t *list, const char *tpath, kjb_topic_cfg *t) {
  size_t n = (size_t)config_setting_length(list);
  if (n == 0)
    return fail_at(c, list, "%s.jobs: at least one job is required", tpath);
  t->jobs = kjb_xcalloc(n, sizeof *t->jobs);
  t->njobs = n;
  for (size_t i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    const config_setting_t *found[MAX_FIELDS];
    kjb_job_cfg *j = &t->jobs[i];
    char jpath[96];
    snprintf(jpath, sizeof jpath, "%s.jobs[%zu]", tpath, i);
    if (config_setting_type(e) != CONFIG_TYPE_GROUP)
      return fail_at(c, e, "%s: expected a group, got %s", jpath, type_name(e));
    j->line = line_of(c, e);
    set_defaults(c, job_fields, NFIELDS(job_fields), j);
    int rc = parse_group(c, e, jpath, job_fields, NFIELDS(job_fields), j, found);
    if (!rc)
      rc = check_required(c, e, jpath, job_fields, NFIELDS(job_fields), found, NULL);
    if (rc)
      return rc;
    for (size_t k = 0; k < i; k++) {
      if (strcmp(t->jobs[k].kind, j->kind) != 0)
        continue;
      char first[PATH_MAX + 16];
      const config_setting_t *prev =
          config_setting_get_member(config_setting_get_elem(list, (unsigned)k), "kind");
      first_defined(c, prev, found[0], first, sizeof first);
      return fail_at(c, found[0],
                     "%s.kind: duplicate job kind \"%s\" in "
                     "topic \"%s\" (first defined at %s)",
                     jpath, j->kind, t->topic, first);
    }
  }
  return 0;
}

static int parse_topics(ctx *c, const config_setting_t *list) {
  kjb_config *cfg = c->cfg;
  size_t n = (size_t)config_setting_length(list);
  if (n == 0)
    return fail_at(c, list, "topics: at least one topic is required");
  cfg->topics = kjb_xcalloc(n, sizeof *cfg->topics);
  cfg->ntopics = n;
  for (size_t i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    const config_setting_t *found[MAX_FIELDS];
    kjb_topic_cfg *t = &cfg->topics[i];
    char tpath[64];
    snprintf(tpath, sizeof tpath, "topics[%zu]", i);
    if (config_setting_type(e) != CONFIG_TYPE_GROUP)
      return fail_at(c, e, "%s: expected a group, got %s", tpath, type_name(e));
    t->line = line_of(c, e);
    set_defaults(c, topic_fields, NFIELDS(topic_fields), t);
    int rc = parse_group(c, e, tpath, topic_fields, NFIELDS(topic_fields), t, found);
    if (!rc)
      rc = check_required(c, e, tpath, topic_fields, NFIELDS(topic_fields), found, NULL);
    if (rc)
      return rc;
    for (size_t k = 0; k < i; k++) {
      if (strcmp(cfg->topics[k].topic, t->topic) != 0)
        continue;
      char first[PATH_MAX + 16];
      const config_setting_t *prev =
          config_setting_get_member(config_setting_get_elem(list, (unsigned)k), "topic");
      first_defined(c, prev, found[TP_TOPIC], first, sizeof first);
      return fail_at(c, found[TP_TOPIC],
                     "%s.topic: duplicate topic \"%s\" (first "
                     "defined at %s)",
                     tpath, t->topic, first);
    }
    if (!t->dlq) {
      size_t len = strlen(t->topic) + sizeof ".dlq";
      t->dlq = kjb_xcalloc(len, 1);
      snprintf(t->dlq, len, "%s.dlq", t->topic);
    } else if (strcmp(t->dlq, t->topic) == 0) {
      return fail_at(c, found[TP_DLQ], "%s.dlq: must differ from the topic itself", tpath);
    }
    if ((rc = parse_jobs(c, found[TP_JOBS], tpath, t)))
      return rc;
  }
  return 0;
}

/* ---- Schedules ------------------------------------------------------------ */

/* Names travel into unique keys, metric labels and log lines. */
static bool is_schedule_name(const char *s) {
  for (; *s; s++)
    if (!(isalnum((unsigned char)*s) || strchr("_.-", *s)))
      return false;
  return true;
}

/* A name as PostgreSQL's time zone names are spelt: "Europe/Paris",
 * "America/Argentina/Buenos_Aires", "Etc/GMT+3", "UTC". Whether the server
 * knows it is for `kjb run` to ask. */
static bool is_zone_name(const char *s) {
  if (!isalpha((unsigned char)*s))
    return false;
  for (; *s; s++)
    if (!(isalnum((unsigned char)*s) || strchr("/_+-", *s)))
      return false;
  return true;
}

static int parse_schedule(ctx *c, const config_setting_t *e, const char *spath,
                          kjb_schedule_cfg *sc) {
  const config_setting_t *found[MAX_FIELDS];
  int rc;
  sc->line = line_of(c, e);
  set_defaults(c, schedule_fields, NFIELDS(schedule_fields), sc);
  if ((rc = parse_group(c, e, spath, schedule_fields, NFIELDS(schedule_fields), sc, found)) ||
      (rc = check_required(c, e, spath, schedule_fields, NFIELDS(schedule_fields), found, NULL)))
    return rc;
  if (!is_schedule_name(sc->name))
    return fail_at(c, found[SC_NAME],
                   "%s.name: invalid name \"%s\" (expected letters, digits, \".\", \"_\" "
                   "and \"-\")",
                   spath, sc->name);
  kjb_cron cron;
  kjb_err why;
  if (kjb_cron_parse(sc->cron, 0, &cron, &why) < 0)
    return fail_at(c, found[SC_CRON], "%s.cron: %s", spath, why.msg);
  if (!is_zone_name(sc->timezone))
    return fail_at(c, found[SC_TIMEZONE] ? found[SC_TIMEZONE] : e,
                   "%s.timezone: invalid time zone name \"%s\" (expected a name such as "
                   "\"Europe/Paris\" or \"UTC\")",
                   spath, sc->timezone);
  json_error_t jerr;
  json_t *args = json_loads(sc->args, JSON_REJECT_DUPLICATES, &jerr);
  bool object = args && json_is_object(args);
  json_decref(args);
  if (!args)
    return fail_at(c, found[SC_ARGS], "%s.args: invalid JSON at byte %d: %s", spath, jerr.position,
                   jerr.text);
  if (!object)
    return fail_at(c, found[SC_ARGS],
                   "%s.args: expected a JSON object such as {\"scope\": \"all\"}", spath);
  return 0;
}

static int parse_schedules(ctx *c, const config_setting_t *list) {
  kjb_config *cfg = c->cfg;
  size_t n = (size_t)config_setting_length(list);
  cfg->schedules = kjb_xcalloc(n, sizeof *cfg->schedules);
  cfg->nschedules = n;
  kjb_handler_cfg none = {0};
  set_defaults(c, retry_fields, NFIELDS(retry_fields), &none);
  for (size_t i = 0; i < n; i++) {
    const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
    kjb_schedule_cfg *sc = &cfg->schedules[i];
    char spath[64];
    snprintf(spath, sizeof spath, "schedules[%zu]", i);
    if (config_setting_type(e) != CONFIG_TYPE_GROUP)
      return fail_at(c, e, "%s: expected a group, got %s", spath, type_name(e));
    int rc = parse_schedule(c, e, spath, sc);
    if (rc)
      return rc;
    for (size_t k = 0; k < i; k++) {
      if (strcmp(cfg->schedules[k].name, sc->name) != 0)
        continue;
      const config_setting_t *now = config_setting_get_member(e, "name");
      const config_setting_t *prev =
          config_setting_get_member(config_setting_get_elem(list, (unsigned)k), "name");
      char first[PATH_MAX + 16];
      first_defined(c, prev, now, first, sizeof first);
      return fail_at(c, now, "%s.name: duplicate schedule \"%s\" (first defined at %s)", spath,
                     sc->name, first);
    }
    if (sc->max_attempts == 0) {
      const kjb_handler_cfg *h = kjb_config_handler(cfg, sc->kind);
      sc->max_attempts = h ? h->retry.max_attempts : none.retry.max_attempts;
    }
  }
  return 0;
}

static void free_schedules(kjb_config *cfg) {
  for (size_t i = 0; i < cfg->nschedules; i++) {
    kjb_schedule_cfg *sc = &cfg->schedules[i];
    free(sc->name);
    free(sc->kind);
    free(sc->queue);
    free(sc->cron);
    free(sc->timezone);
    free(sc->args);
  }
  free(cfg->schedules);
}

/* See config.h. */
const kjb_schedule_cfg *kjb_config_schedule(const kjb_config *cfg, const char *name) {
  for (size_t i = 0; i < cfg->nschedules; i++)
    if (strcmp(cfg->schedules[i].name, name) == 0)
      return &cfg->schedules[i];
  return NULL;
}

/* ---- The root ------------------------------------------------------------- */

static int parse_root(ctx *c, const config_setting_t *root) {
  const config_setting_t *found[MAX_FIELDS];
  int rc;
  if ((rc = parse_group(c, root, NULL, root_fields, NFIELDS(root_fields), c->cfg, found)))
    return rc;
  /* The scalar sections lead root_fields in the order of sections[]. */
  for (size_t i = 0; i < NFIELDS(sections); i++) {
    assert(strcmp(root_fields[i].name, sections[i].name) == 0);
    if ((rc = parse_section(c, &sections[i], found[i], root)))
      return rc;
  }
  /* A node must be able to miss a heartbeat without being declared dead. */
  if (c->cfg->executor.lease_us < 2 * c->cfg->executor.heartbeat_us) {
    const config_setting_t *ex = found[R_EXECUTOR];
    const config_setting_t *at = ex ? config_setting_get_member(ex, "lease") : NULL;
    return fail_at(c,
                   at   ? at
                   : ex ? ex
                        : root,
                   "executor.lease: must be at least twice executor.heartbeat");
  }
  if (!c->cfg->http.tls_cert != !c->cfg->http.tls_key) {
    const config_setting_t *h = found[R_HTTP];
    return fail_at(c, h ? h : root, "http: tls_cert and tls_key go together; %s is missing",
                   c->cfg->http.tls_cert ? "tls_key" : "tls_cert");
  }
  const config_setting_t *topics = found[R_TOPICS];
  const config_setting_t *handlers = found[R_HANDLERS];
  if (handlers && (rc = parse_handlers(c, handlers)))
    return rc;
  if ((rc = check_required(c, root, NULL, root_fields, NFIELDS(root_fields), found, NULL)) ||
      (rc = parse_topics(c, topics)))
    return rc;

  /* A job of a kind without a handler gets what a handler without a
   * retry group would give it. */
  kjb_config *cfg = c->cfg;
  kjb_handler_cfg none = {0};
  set_defaults(c, retry_fields, NFIELDS(retry_fields), &none);
  for (size_t i = 0; i < cfg->ntopics; i++) {
    for (size_t k = 0; k < cfg->topics[i].njobs; k++) {
      kjb_job_cfg *j = &cfg->topics[i].jobs[k];
      if (j->max_attempts == 0) {
        const kjb_handler_cfg *h = kjb_config_handler(cfg, j->kind);
        j->max_attempts = h ? h->retry.max_attempts : none.retry.max_attempts;
      }
    }
  }
  if (found[R_SCHEDULES] && (rc = parse_schedules(c, found[R_SCHEDULES])))
    return rc;
  return 0;
}

/* ---- Public API ---------------------------------------------------------- */

/* A syntax error as "<file>:<line>: syntax error[: <what>]"; libconfig's
 * own words when they are about an include (which the spliced text should
 * never make it open). */
static int syntax_error(const ctx *c, const config_t *lc) {
  unsigned line;
  const char *file = kjb_cfgsrc_where(c->src, (unsigned)config_error_line(lc), &line);
  const char *text = config_error_text(lc) ? config_error_text(lc) : "";
  if (strcmp(text, "syntax error") == 0 || !*text)
    return kjb_err_set(c->err, KJB_ECONFIG, "%s:%u: syntax error", file, line);
  if (strstr(text, "include"))
    return kjb_err_set(c->err, KJB_ECONFIG, "%s:%u: %s", file, line, text);
  return kjb_err_set(c->err, KJB_ECONFIG, "%s:%u: syntax error: %s", file, line, text);
}

/* See config.h. The file and its includes are read and bounded by
 * kjb_cfgsrc_read, then libconfig parses the text; every error after
 * reading path is KJB_ECONFIG and leaves cfg zeroed. */
int kjb_config_load(const char *path, kjb_config *cfg, kjb_err *err) {
  assert(path && cfg);
  memset(cfg, 0, sizeof *cfg);
  kjb_cfgsrc *src;
  int rc = kjb_cfgsrc_read(path, &src, err);
  if (rc)
    return rc;

  ctx c = {.src = src, .cfg = cfg, .err = err};
  config_t lc;
  config_init(&lc);
  config_set_options(&lc, config_get_options(&lc) | CONFIG_OPTION_AUTOCONVERT);
  /* The text holds no @include that libconfig would act on; should one
   * slip through, it resolves under /dev/null/ and cannot be opened. */
  config_set_include_dir(&lc, "/dev/null");

  if (!config_read_string(&lc, kjb_cfgsrc_text(src))) {
    rc = syntax_error(&c, &lc);
  } else {
    cfg->path = kjb_xstrdup(path);
    rc = parse_root(&c, config_root_setting(&lc));
  }
  config_destroy(&lc);
  kjb_cfgsrc_free(src);
  if (rc)
    kjb_config_close(cfg);
  return rc;
}

static void free_strings(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

/* Frees every string and array of cfg and zeroes it, so that closing twice
 * or closing a zeroed cfg is harmless. NULL does nothing. */
static size_t add_kind(const char **out, size_t cap, size_t n, const char *kind) {
  for (size_t i = 0; i < n && i < cap; i++)
    if (strcmp(out[i], kind) == 0)
      return n;
  if (n < cap)
    out[n] = kind;
  return n + 1;
}

size_t kjb_config_kinds(const kjb_config *cfg, const char **out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < cfg->nhandlers; i++)
    n = add_kind(out, cap, n, cfg->handlers[i].kind);
  for (size_t t = 0; t < cfg->ntopics; t++)
    for (size_t j = 0; j < cfg->topics[t].njobs; j++)
      n = add_kind(out, cap, n, cfg->topics[t].jobs[j].kind);
  for (size_t i = 0; i < cfg->nschedules; i++)
    n = add_kind(out, cap, n, cfg->schedules[i].kind);
  return n;
}

void kjb_config_close(kjb_config *cfg) {
  if (!cfg)
    return;
  free(cfg->path);
  free(cfg->kafka.brokers);
  free(cfg->kafka.group);
  free_strings(cfg->kafka.properties, cfg->kafka.nproperties);
  free(cfg->postgres.conninfo);
  free(cfg->postgres.schema);
  free(cfg->http.listen);
  free(cfg->http.admin_token_env);
  for (size_t i = 0; i < cfg->http.nadmin_tokens; i++) {
    free(cfg->http.admin_tokens[i].name);
    free(cfg->http.admin_tokens[i].env);
  }
  free(cfg->http.admin_tokens);
  free(cfg->http.tls_cert);
  free(cfg->http.tls_key);
  free(cfg->schema_registry.url);
  free(cfg->schemas.dir);
  for (size_t i = 0; i < cfg->schemas.nids; i++)
    free(cfg->schemas.ids[i].file);
  free(cfg->schemas.ids);
  free(cfg->log.level);
  free(cfg->log.format);
  free(cfg->tracing.otlp_endpoint);
  free(cfg->tracing.service_name);
  for (size_t i = 0; i < cfg->ntopics; i++) {
    kjb_topic_cfg *t = &cfg->topics[i];
    free(t->topic);
    free(t->schema);
    free(t->dlq);
    for (size_t k = 0; k < t->njobs; k++) {
      kjb_job_cfg *j = &t->jobs[k];
      free(j->kind);
      free(j->queue);
      free(j->unique_key);
      free(j->ordering_key);
      free_strings(j->args, j->nargs);
    }
    free(t->jobs);
  }
  free(cfg->topics);
  for (size_t i = 0; i < cfg->nhandlers; i++) {
    kjb_handler_cfg *h = &cfg->handlers[i];
    free(h->kind);
    free(h->type);
    free(h->url);
    free_strings(h->command, h->ncommand);
    free(h->plugin);
  }
  free(cfg->handlers);
  free_schedules(cfg);
  memset(cfg, 0, sizeof *cfg);
}

/* Returns explicit_path, else $KJB_CONFIG, else "config/kjb.cfg"; an empty
 * string counts as absent. The result is not owned by the caller. */
const char *kjb_config_default_path(const char *explicit_path) {
  if (explicit_path && *explicit_path)
    return explicit_path;
  const char *env = getenv("KJB_CONFIG");
  if (env && *env)
    return env;
  return KJB_DEFAULT_CONFIG;
}

/* The mapping of the source topic named topic, or NULL. Points into cfg. */
const kjb_topic_cfg *kjb_config_topic(const kjb_config *cfg, const char *topic) {
  for (size_t i = 0; i < cfg->ntopics; i++)
    if (strcmp(cfg->topics[i].topic, topic) == 0)
      return &cfg->topics[i];
  return NULL;
}

/* See config.h. The key's group is found by the path before its last dot. */
const char *kjb_config_default(const char *key) {
  const char *dot = strrchr(key, '.');
  if (!dot)
    return NULL;
  size_t glen = (size_t)(dot - key);
  const struct section *groups[] = {sections, nested};
  const size_t ngroups[] = {NFIELDS(sections), NFIELDS(nested)};
  for (size_t t = 0; t < 2; t++) {
    for (size_t i = 0; i < ngroups[t]; i++) {
      const struct section *g = &groups[t][i];
      if (strlen(g->name) != glen || strncmp(g->name, key, glen) != 0)
        continue;
      for (size_t k = 0; k < g->nfields; k++)
        if (strcmp(g->fields[k].name, dot + 1) == 0)
          return g->fields[k].def;
    }
  }
  return NULL;
}

/* The handler for job kind, or NULL. Points into cfg. */
const kjb_handler_cfg *kjb_config_handler(const kjb_config *cfg, const char *kind) {
  for (size_t i = 0; i < cfg->nhandlers; i++)
    if (strcmp(cfg->handlers[i].kind, kind) == 0)
      return &cfg->handlers[i];
  return NULL;
}

/* The config spelling of f ("confluent", "raw", "single-object"). */
const char *kjb_format_name(kjb_format f) {
  switch (f) {
  case KJB_FMT_CONFLUENT: return "confluent";
  case KJB_FMT_RAW: return "raw";
  case KJB_FMT_SINGLE_OBJECT: return "single-object";
  }
  return "unknown";
}
