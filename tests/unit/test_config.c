/* Tests for config.c: a table of config texts with the exact error each
 * must produce or the values it must load into, plus the shipped configs. */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "util.h"

extern char **environ;

/* Two valid sections (lines 1-2) and one valid topic (one line), so that
 * a case adds only what it is about. */
#define BASE                             \
  "kafka = { brokers = \"b:9092\"; };\n" \
  "postgres = { conninfo = \"dbname=kjb\"; };\n"
#define TOPIC                                              \
  "topics = ( { topic = \"orders\"; schema = \"o.avsc\"; " \
  "jobs = ( { kind = \"k\"; } ); } );\n"
/* A topic whose one job is the given text, on one line. */
#define TOPIC_JOB(job) \
  "topics = ( { topic = \"orders\"; schema = \"o.avsc\"; jobs = ( { " job " } ); } );\n"
#define HANDLER(h) "handlers = ( { " h " } );\n"
#define SCHEDULE(sc) "schedules = ( { " sc " } );\n"
/* 64 lines of @include of an empty file, and 64 settings on one line. */
#define INCLUDE_EMPTY_X4 \
  "@include \"e.cfg\"\n@include \"e.cfg\"\n@include \"e.cfg\"\n@include \"e.cfg\"\n"
#define INCLUDE_EMPTY_X16 INCLUDE_EMPTY_X4 INCLUDE_EMPTY_X4 INCLUDE_EMPTY_X4 INCLUDE_EMPTY_X4
#define INCLUDE_EMPTY_X64 INCLUDE_EMPTY_X16 INCLUDE_EMPTY_X16 INCLUDE_EMPTY_X16 INCLUDE_EMPTY_X16
#define SETTINGS_X8 "a=1;b=1;c=1;d=1;e=1;f=1;g=1;h=1;"
/* n entries "{}," of a list, for the limits on list lengths. */
#define ENTRIES_4 "{},{},{},{},"
#define ENTRIES_16 ENTRIES_4 ENTRIES_4 ENTRIES_4 ENTRIES_4
#define ENTRIES_64 ENTRIES_16 ENTRIES_16 ENTRIES_16 ENTRIES_16
#define ENTRIES_256 ENTRIES_64 ENTRIES_64 ENTRIES_64 ENTRIES_64
#define ENTRIES_1024 ENTRIES_256 ENTRIES_256 ENTRIES_256 ENTRIES_256
#define ENTRIES_4096 ENTRIES_1024 ENTRIES_1024 ENTRIES_1024 ENTRIES_1024
/* Strings of 256 and 4096 bytes. */
#define CHARS_16 "abcdefghijklmnop"
#define CHARS_256                                                                           \
  CHARS_16 CHARS_16 CHARS_16 CHARS_16 CHARS_16 CHARS_16 CHARS_16 CHARS_16 CHARS_16 CHARS_16 \
      CHARS_16 CHARS_16 CHARS_16 CHARS_16 CHARS_16 CHARS_16
#define CHARS_4096                                                                          \
  CHARS_256 CHARS_256 CHARS_256 CHARS_256 CHARS_256 CHARS_256 CHARS_256 CHARS_256 CHARS_256 \
      CHARS_256 CHARS_256 CHARS_256 CHARS_256 CHARS_256 CHARS_256 CHARS_256
#define LOG_HANDLER(kind, n) "{ kind = \"" kind "\"; type = \"log\"; concurrency = " n "; }"
#define SETTINGS_X64 \
  SETTINGS_X8 SETTINGS_X8 SETTINGS_X8 SETTINGS_X8 SETTINGS_X8 SETTINGS_X8 SETTINGS_X8 SETTINGS_X8
#define DURATION_HINT "(expected a number with a unit: us, ms, s, m, h, d)"
#define PATH_HINT "(expected dotted Avro names such as \"customer.email\")"

typedef struct {
  const char *name;
  const char *value;
} env_kv;

typedef struct {
  const char *name;     /* also the case's directory */
  const char *text;     /* t.cfg */
  const char *inc_name; /* an optional second file beside t.cfg */
  const char *inc_text;
  bool inc_fifo; /* inc_name is a FIFO instead */
  env_kv env[8];
  const char *want; /* the exact error, temp dir removed; NULL: loads */
  void (*check)(const kjb_config *cfg);
} cfg_case;

#define EQ_STR(a, b) assert_string_equal((a), (b))
#define EQ_INT(a, b) assert_int_equal((a), (b))
#define EQ_NUM(a, b)                            \
  do {                                          \
    double a_ = (a), b_ = (b);                  \
    if (fabs(a_ - b_) > 1e-9)                   \
      fail_msg("%s = %g, want %g", #a, a_, b_); \
  } while (0)

/* ---- Checks for cases that load ----------------------------------------- */

static void check_defaults(const kjb_config *cfg) {
  EQ_STR(cfg->kafka.brokers, "b:9092");
  EQ_STR(cfg->kafka.group, "kjb");
  EQ_INT(cfg->kafka.nproperties, 0);
  assert_null(cfg->kafka.properties);
  EQ_STR(cfg->postgres.conninfo, "dbname=kjb");
  EQ_STR(cfg->postgres.schema, "kjb");
  EQ_INT(cfg->postgres.pool_size, 4);
  EQ_STR(cfg->http.listen, "127.0.0.1:9464");
  EQ_STR(cfg->http.admin_token_env, "KJB_ADMIN_TOKEN");
  assert_null(cfg->schema_registry.url);
  EQ_INT(cfg->schema_registry.timeout_us, 5000000);
  EQ_STR(cfg->schemas.dir, "schemas/avro");
  EQ_INT(cfg->schemas.nids, 0);
  EQ_INT(cfg->ingest.batch_size, 5000);
  EQ_INT(cfg->ingest.batch_timeout_us, 100000);
  EQ_STR(cfg->log.level, "info");
  EQ_STR(cfg->log.format, "text");
  assert_null(cfg->tracing.otlp_endpoint);
  EQ_STR(cfg->tracing.service_name, "kjb");
  assert_true(cfg->tracing.sample_ratio == 1.0);
  EQ_INT(cfg->nhandlers, 0);
  EQ_INT(cfg->ntopics, 1);
  const kjb_topic_cfg *t = &cfg->topics[0];
  EQ_STR(t->topic, "orders");
  EQ_INT(t->format, KJB_FMT_CONFLUENT);
  EQ_STR(t->schema, "o.avsc");
  EQ_STR(t->dlq, "orders.dlq");
  EQ_INT(t->line, 3);
  EQ_INT(t->njobs, 1);
  const kjb_job_cfg *j = &t->jobs[0];
  EQ_STR(j->kind, "k");
  EQ_STR(j->queue, "default");
  EQ_INT(j->priority, 0);
  EQ_INT(j->max_attempts, 20);
  assert_null(j->unique_key);
  assert_null(j->ordering_key);
  assert_null(j->args);
  EQ_INT(j->nargs, 0);
  EQ_INT(j->line, 3);
}

static void check_handler_defaults(const kjb_config *cfg) {
  EQ_INT(cfg->nhandlers, 1);
  const kjb_handler_cfg *h = &cfg->handlers[0];
  EQ_STR(h->kind, "k");
  EQ_STR(h->type, "http");
  EQ_STR(h->url, "https://hooks.example/k");
  assert_null(h->command);
  assert_null(h->plugin);
  EQ_INT(h->timeout_us, 30000000);
  EQ_INT(h->concurrency, 4);
  EQ_INT(h->rate_limit.enabled, 1);
  EQ_NUM(h->rate_limit.rate, 2.5);
  EQ_INT(h->rate_limit.burst, 3);
  EQ_INT(h->rate_limit.scope, KJB_SCOPE_LOCAL);
  EQ_INT(h->retry.max_attempts, 20);
  EQ_INT(h->retry.base_us, 1000000);
  EQ_INT(h->retry.max_us, 3600000000LL);
  EQ_INT(h->retry.jitter, KJB_JITTER_FULL);
  EQ_INT(h->on_discard, KJB_ON_DISCARD_CONTINUE);
  EQ_INT(h->breaker.enabled, 1);
  EQ_NUM(h->breaker.failure_ratio, 0.5);
  EQ_INT(h->breaker.min_calls, 20);
  EQ_INT(h->breaker.open_for_us, 30000000);
  EQ_INT(h->line, 4);
}

/* Every key with a default of its own, and where a config that leaves it
 * out keeps its value: the loaded value must be the one the table's text
 * means, and config/example.cfg must document that text. */
typedef enum { D_STR, D_INT, D_NUM, D_DUR, D_ENUM } dtype;

typedef struct {
  const char *key;
  dtype type;
  const void *value;
  const char *const *names; /* D_ENUM: the spellings, by value */
} dvalue;

static const char *const scope_names[] = {"local", "cluster"};
static const char *const jitter_names[] = {"full", "equal", "none"};
static const char *const on_discard_names[] = {"continue", "hold"};

#define NDEFAULTS 36

static size_t default_values(const kjb_config *cfg, dvalue *out) {
  const kjb_handler_cfg *h = &cfg->handlers[0];
  const kjb_topic_cfg *t = &cfg->topics[0];
  const kjb_schedule_cfg *sc = &cfg->schedules[0];
  static const char *format_names[3];
  for (int f = KJB_FMT_CONFLUENT; f <= KJB_FMT_SINGLE_OBJECT; f++)
    format_names[f] = kjb_format_name((kjb_format)f);
  const dvalue all[NDEFAULTS] = {
      {"kafka.group", D_STR, &cfg->kafka.group, NULL},
      {"postgres.schema", D_STR, &cfg->postgres.schema, NULL},
      {"postgres.pool_size", D_INT, &cfg->postgres.pool_size, NULL},
      {"http.listen", D_STR, &cfg->http.listen, NULL},
      {"http.admin_token_env", D_STR, &cfg->http.admin_token_env, NULL},
      {"schema_registry.timeout", D_DUR, &cfg->schema_registry.timeout_us, NULL},
      {"schemas.dir", D_STR, &cfg->schemas.dir, NULL},
      {"ingest.batch_size", D_INT, &cfg->ingest.batch_size, NULL},
      {"ingest.batch_timeout", D_DUR, &cfg->ingest.batch_timeout_us, NULL},
      {"executor.poll_interval", D_DUR, &cfg->executor.poll_interval_us, NULL},
      {"executor.claim_batch", D_INT, &cfg->executor.claim_batch, NULL},
      {"executor.heartbeat", D_DUR, &cfg->executor.heartbeat_us, NULL},
      {"executor.lease", D_DUR, &cfg->executor.lease_us, NULL},
      {"executor.shutdown_timeout", D_DUR, &cfg->executor.shutdown_timeout_us, NULL},
      {"executor.retention", D_DUR, &cfg->executor.retention_us, NULL},
      {"executor.prune_interval", D_DUR, &cfg->executor.prune_interval_us, NULL},
      {"log.level", D_STR, &cfg->log.level, NULL},
      {"log.format", D_STR, &cfg->log.format, NULL},
      {"tracing.service_name", D_STR, &cfg->tracing.service_name, NULL},
      {"tracing.sample_ratio", D_NUM, &cfg->tracing.sample_ratio, NULL},
      {"topics.format", D_ENUM, &t->format, format_names},
      {"topics.jobs.queue", D_STR, &t->jobs[0].queue, NULL},
      {"handlers.timeout", D_DUR, &h->timeout_us, NULL},
      {"handlers.concurrency", D_INT, &h->concurrency, NULL},
      {"handlers.on_discard", D_ENUM, &h->on_discard, on_discard_names},
      {"handlers.rate_limit.scope", D_ENUM, &h->rate_limit.scope, scope_names},
      {"handlers.retry.max_attempts", D_INT, &h->retry.max_attempts, NULL},
      {"handlers.retry.base", D_DUR, &h->retry.base_us, NULL},
      {"handlers.retry.max", D_DUR, &h->retry.max_us, NULL},
      {"handlers.retry.jitter", D_ENUM, &h->retry.jitter, jitter_names},
      {"handlers.breaker.failure_ratio", D_NUM, &h->breaker.failure_ratio, NULL},
      {"handlers.breaker.min_calls", D_INT, &h->breaker.min_calls, NULL},
      {"handlers.breaker.open_for", D_DUR, &h->breaker.open_for_us, NULL},
      {"schedules.queue", D_STR, &sc->queue, NULL},
      {"schedules.timezone", D_STR, &sc->timezone, NULL},
      {"schedules.args", D_STR, &sc->args, NULL},
  };
  memcpy(out, all, sizeof all);
  return NDEFAULTS;
}

static void check_defaults_table(const kjb_config *cfg) {
  dvalue d[NDEFAULTS];
  size_t n = default_values(cfg, d);
  for (size_t i = 0; i < n; i++) {
    const char *def = kjb_config_default(d[i].key);
    if (!def)
      fail_msg("%s: no default in the table", d[i].key);
    print_message("%s = %s\n", d[i].key, def);
    int64_t us;
    switch (d[i].type) {
    case D_STR: EQ_STR(*(char *const *)d[i].value, def); break;
    case D_INT: EQ_INT(*(const int *)d[i].value, atoi(def)); break;
    case D_NUM: EQ_NUM(*(const double *)d[i].value, atof(def)); break;
    case D_DUR:
      assert_int_equal(kjb_duration_parse(def, &us), 0);
      EQ_INT(*(const int64_t *)d[i].value, us);
      break;
    case D_ENUM: EQ_STR(d[i].names[*(const int *)d[i].value], def); break;
    }
  }
  /* Keys without a default of their own. */
  assert_null(kjb_config_default("kafka.brokers"));
  assert_null(kjb_config_default("topics.dlq"));
  assert_null(kjb_config_default("topics.jobs.max_attempts"));
  assert_null(kjb_config_default("handlers.rate_limit.burst"));
  assert_null(kjb_config_default("schedules.max_attempts"));
  assert_null(kjb_config_default("schedules.misfire_grace"));
  assert_null(kjb_config_default("handlers.nope"));
  assert_null(kjb_config_default("nope"));
}

static void check_schedules(const kjb_config *cfg) {
  EQ_INT(cfg->nschedules, 2);
  const kjb_schedule_cfg *a = kjb_config_schedule(cfg, "nightly");
  assert_non_null(a);
  EQ_STR(a->kind, "report");
  EQ_STR(a->queue, "default");
  EQ_INT(a->priority, 0);
  EQ_INT(a->max_attempts, 3); /* the handler's */
  EQ_STR(a->cron, "0 3 * * *");
  EQ_STR(a->timezone, "Europe/Paris");
  EQ_STR(a->args, "{\"scope\": \"all\"}");
  EQ_INT(a->misfire_grace_us, 0);
  EQ_INT(a->line, 6);
  const kjb_schedule_cfg *b = &cfg->schedules[1];
  EQ_STR(b->name, "every-15.min");
  EQ_STR(b->queue, "cron");
  EQ_INT(b->priority, -1);
  EQ_INT(b->max_attempts, 7);
  EQ_STR(b->timezone, "UTC");
  EQ_STR(b->args, "{}");
  EQ_INT(b->misfire_grace_us, 300000000);
  assert_null(kjb_config_schedule(cfg, "nope"));
  const char *kinds[4];
  EQ_INT(kjb_config_kinds(cfg, kinds, 4), 3);
  EQ_STR(kinds[2], "tick");
}

static void check_no_limits(const kjb_config *cfg) {
  const kjb_handler_cfg *h = &cfg->handlers[0];
  EQ_STR(h->type, "log");
  EQ_INT(h->rate_limit.enabled, 0);
  EQ_INT(h->breaker.enabled, 0);
}

static void check_full(const kjb_config *cfg) {
  EQ_INT(cfg->kafka.nproperties, 2);
  EQ_STR(cfg->kafka.properties[0], "security.protocol=ssl");
  EQ_STR(cfg->kafka.properties[1], "ssl.key.password=");
  EQ_INT(cfg->postgres.pool_size, 8);
  EQ_STR(cfg->postgres.schema, "jobs_2");
  EQ_STR(cfg->schema_registry.url, "https://registry:8081");
  EQ_INT(cfg->schema_registry.timeout_us, 1500000);
  EQ_INT(cfg->schemas.nids, 2);
  EQ_INT(cfg->schemas.ids[0].id, 0);
  EQ_STR(cfg->schemas.ids[0].file, "a.avsc");
  EQ_INT(cfg->schemas.ids[1].id, 7);
  EQ_STR(cfg->schemas.ids[1].file, "b.avsc");
  EQ_INT(cfg->schemas.ids[1].line, 5);
  EQ_INT(cfg->ingest.batch_size, 100);
  EQ_INT(cfg->ingest.batch_timeout_us, 0);
  EQ_STR(cfg->log.level, "error");
  EQ_STR(cfg->log.format, "json");
  const kjb_topic_cfg *t = &cfg->topics[0];
  EQ_INT(t->format, KJB_FMT_SINGLE_OBJECT);
  EQ_STR(t->dlq, "dead.letters");
  EQ_INT(cfg->topics[1].format, KJB_FMT_RAW);
  const kjb_job_cfg *j = &t->jobs[0];
  EQ_STR(j->queue, "q1");
  EQ_INT(j->priority, -32768);
  EQ_INT(j->max_attempts, 3);
  EQ_STR(j->unique_key, "a$$b-${x.y}-${_z}");
  EQ_STR(j->ordering_key, "c-${x.y}");
  EQ_INT(j->nargs, 2);
  EQ_STR(j->args[0], "x.y");
  EQ_STR(j->args[1], "_z");
  EQ_INT(t->jobs[1].priority, 32767);
  EQ_INT(cfg->nhandlers, 3);
  const kjb_handler_cfg *h = &cfg->handlers[0];
  EQ_STR(h->type, "exec");
  EQ_INT(h->ncommand, 3);
  EQ_STR(h->command[0], "/bin/prog");
  EQ_STR(h->command[1], "--flag");
  EQ_STR(h->command[2], "");
  EQ_INT(h->timeout_us, 250000);
  EQ_INT(h->concurrency, 1);
  EQ_NUM(h->rate_limit.rate, 50);
  EQ_INT(h->rate_limit.burst, 1);
  EQ_INT(h->rate_limit.scope, KJB_SCOPE_CLUSTER);
  EQ_INT(h->retry.max_attempts, 5);
  EQ_INT(h->retry.base_us, 10000);
  EQ_INT(h->retry.max_us, 120000000);
  EQ_INT(h->retry.jitter, KJB_JITTER_EQUAL);
  EQ_INT(h->on_discard, KJB_ON_DISCARD_HOLD);
  EQ_INT(cfg->handlers[1].on_discard, KJB_ON_DISCARD_CONTINUE);
  EQ_NUM(h->breaker.failure_ratio, 1);
  EQ_INT(h->breaker.min_calls, 1);
  EQ_INT(h->breaker.open_for_us, 86400000000LL);
  EQ_STR(cfg->handlers[1].type, "plugin");
  EQ_STR(cfg->handlers[1].plugin, "./libmy.so");
  EQ_INT(cfg->handlers[1].retry.jitter, KJB_JITTER_NONE);
  EQ_STR(cfg->handlers[2].type, "log");
}

static void check_properties(const kjb_config *cfg) {
  static const char *const want[] = {"fetch.max.bytes=1048576", "linger.ms=0.5",
                                     "auto.offset.reset=latest", "acks=all", "client.id=a=b"};
  EQ_INT(cfg->kafka.nproperties, 5);
  for (size_t i = 0; i < 5; i++)
    EQ_STR(cfg->kafka.properties[i], want[i]);
}

static void check_max_attempts(const kjb_config *cfg) {
  const kjb_topic_cfg *t = &cfg->topics[0];
  EQ_STR(t->jobs[0].kind, "a");
  EQ_INT(t->jobs[0].max_attempts, 7);
  EQ_INT(t->jobs[1].max_attempts, 20);
  EQ_INT(t->jobs[2].max_attempts, 2);
  EQ_INT(cfg->topics[1].jobs[0].max_attempts, 7);
}

static void check_admin_tokens(const kjb_config *cfg) {
  EQ_STR(cfg->http.admin_token_env, "KJB_ADMIN_TOKEN");
  EQ_INT(cfg->http.nadmin_tokens, 2);
  EQ_STR(cfg->http.admin_tokens[0].name, "ops");
  EQ_STR(cfg->http.admin_tokens[0].env, "KJB_TOKEN_OPS");
  EQ_INT(cfg->http.admin_tokens[0].line, 5);
  EQ_STR(cfg->http.admin_tokens[1].name, "ci d\xc3\xa9ploy");
  EQ_STR(cfg->http.admin_tokens[1].env, "_T2");
}

static void check_env(const kjb_config *cfg) {
  EQ_STR(cfg->kafka.brokers, "env:9092");
  EQ_STR(cfg->kafka.group, "g2");
  EQ_STR(cfg->postgres.conninfo, "host=db password=secret");
  EQ_INT(cfg->postgres.pool_size, 9);
  EQ_STR(cfg->http.listen, "0.0.0.0:9000");
  EQ_STR(cfg->schema_registry.url, "http://registry:8081");
  EQ_INT(cfg->schema_registry.timeout_us, 2000000);
  EQ_STR(cfg->schemas.dir, "/srv/schemas");
}

static void check_env_2(const kjb_config *cfg) {
  EQ_INT(cfg->ingest.batch_size, 42);
  EQ_INT(cfg->ingest.batch_timeout_us, 2500);
  EQ_STR(cfg->log.level, "warn");
  EQ_STR(cfg->log.format, "json");
  EQ_STR(cfg->kafka.brokers, "env:9092");
}

static void check_env_required(const kjb_config *cfg) {
  EQ_STR(cfg->kafka.brokers, "embedded");
  EQ_STR(cfg->postgres.conninfo, "postgresql:///x");
  EQ_STR(cfg->kafka.group, "kjb");
}

static void check_env_empty(const kjb_config *cfg) {
  EQ_STR(cfg->kafka.group, "from-file");
  EQ_STR(cfg->postgres.conninfo, "dbname=kjb");
}

static void check_include(const kjb_config *cfg) {
  EQ_INT(cfg->ntopics, 1);
  EQ_STR(cfg->topics[0].topic, "orders");
  EQ_STR(cfg->log.level, "debug");
}

static void check_addresses(const kjb_config *cfg) {
  EQ_STR(cfg->kafka.brokers, "a:9092, SSL://b:9093,[::1]:9094,c,");
  EQ_STR(cfg->http.listen, "[::]:0");
  EQ_STR(cfg->schema_registry.url, "https://u:p@registry.example:8081/base?x=1#f");
  EQ_STR(cfg->handlers[0].url, "http://[fe80::1%eth0]/h");
}

/* The default burst is the rate rounded up, within burst's own range. */
static void check_burst_default(const kjb_config *cfg) {
  EQ_INT(cfg->handlers[0].rate_limit.burst, 1000000);
  EQ_INT(cfg->handlers[1].rate_limit.burst, 3);
  EQ_INT(cfg->handlers[0].concurrency, 1024);
}

static void check_numbers(const kjb_config *cfg) {
  EQ_INT(cfg->postgres.pool_size, 8);
  EQ_INT(cfg->ingest.batch_size, 1000000);
  EQ_NUM(cfg->handlers[0].rate_limit.rate, 50);
  EQ_INT(cfg->handlers[0].rate_limit.burst, 50);
  EQ_NUM(cfg->handlers[0].breaker.failure_ratio, 1);
  EQ_INT(cfg->topics[0].jobs[0].priority, 0x10);
}

/* ---- The table ---------------------------------------------------------- */

static const cfg_case cases[] = {
    /* Syntax errors, as libconfig finds them. */
    {.name = "syntax", .text = BASE "kafka2 = ;\n", .want = "t.cfg:3: syntax error"},
    {.name = "syntax_array",
     .text = BASE "x = [ \"a\", 1 ];\n",
     .want = "t.cfg:3: syntax error: mismatched element type in array"},
    {.name = "syntax_duplicate",
     .text = "kafka = { brokers = \"a\";\n brokers = \"b\"; };\n",
     .want = "t.cfg:2: syntax error: duplicate setting name"},
    {.name = "include_missing",
     .text = BASE "@include \"nope.cfg\"\n",
     .want = "t.cfg:3: @include \"nope.cfg\": No such file or directory"},
    /* Includes are read like the config file: regular files only. */
    {.name = "include_directory",
     .text = BASE "@include \"/tmp\"\n",
     .want = "t.cfg:3: @include \"/tmp\": Is a directory"},
    {.name = "include_dev_zero",
     .text = BASE "log = { level = \"info\"; };\n  @include\t\"/dev/zero\"\n",
     .want = "t.cfg:4: @include \"/dev/zero\": not a regular file"},
    {.name = "include_fifo",
     .text = BASE "@include \"pipe.cfg\"\n",
     .inc_name = "pipe.cfg",
     .inc_fifo = true,
     .want = "t.cfg:3: @include \"pipe.cfg\": not a regular file"},
    {.name = "include_nested_fifo",
     .text = BASE "@include \"inc.cfg\"\n",
     .inc_name = "inc.cfg",
     .inc_text = "# first\n@include \"/dev/zero\"\n",
     .want = "inc.cfg:2: @include \"/dev/zero\": not a regular file"},
    {.name = "include_itself",
     .text = BASE "@include \"t.cfg\"\n",
     .want = "t.cfg:3: @include \"t.cfg\": nested more than 10 deep"},
    {.name = "include_too_many",
     .text = BASE INCLUDE_EMPTY_X64 "@include \"e.cfg\"\n",
     .inc_name = "e.cfg",
     .inc_text = "",
     .want = "t.cfg:67: @include \"e.cfg\": more than 64 @include directives"},
    {.name = "include_unterminated",
     .text = BASE "@include \"inc.cfg",
     .want = "t.cfg:3: @include: the file name has no closing quote"},
    /* What libconfig would take quadratic time over is refused first. */
    {.name = "group_too_many_settings",
     .text = BASE "x = {\n" SETTINGS_X64 "a = 1; };\n",
     .want = "t.cfg:4: more than 64 settings in one group"},
    {.name = "root_too_many_settings",
     .text = SETTINGS_X64 "\na = 1;\n",
     .want = "t.cfg:2: more than 64 settings in one group"},
    {.name = "nested_too_deep",
     .text =
         BASE "x = ( ((((((((((((((((((((((((((((((\n(( 1 )) ))))))))))))))))))))))))))))))) );\n",
     .want = "t.cfg:4: groups and lists nested more than 32 deep"},
    {.name = "include_syntax",
     .text = BASE "@include \"inc.cfg\"\n",
     .inc_name = "inc.cfg",
     .inc_text = "log = { level = \"info\"; };\nx = ;\n",
     .want = "inc.cfg:2: syntax error"},

    /* Unknown keys. */
    {.name = "unknown_key_suggest",
     .text = "kafka = { brokerz = \"b\"; };\n",
     .want = "t.cfg:1: unknown key \"brokerz\" in kafka (did you mean "
             "\"brokers\"?)"},
    {.name = "unknown_key",
     .text = BASE "http = { port = 80; };\n",
     .want = "t.cfg:3: unknown key \"port\" in http"},
    {.name = "unknown_section",
     .text = BASE "kafak = { };\n",
     .want = "t.cfg:3: unknown section \"kafak\" (did you mean \"kafka\"?)"},
    {.name = "unknown_section_no_hint",
     .text = BASE "metrics = { };\n",
     .want = "t.cfg:3: unknown section \"metrics\""},
    {.name = "unknown_nested",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; retry = { attempts = 3; };"),
     .want = "t.cfg:4: unknown key \"attempts\" in handlers[0].retry"},
    {.name = "unknown_job_key",
     .text = BASE TOPIC_JOB("kind = \"k\"; qeue = \"x\";"),
     .want = "t.cfg:3: unknown key \"qeue\" in topics[0].jobs[0] (did you "
             "mean \"queue\"?)"},
    {.name = "unknown_topic_key",
     .text = BASE "topics = (\n  { topic = \"o\"; schema = \"s\";\n"
                  "    dead_letter = \"x\"; jobs = ( { kind = \"k\"; } ); }\n"
                  ");\n",
     .want = "t.cfg:5: unknown key \"dead_letter\" in topics[0]"},

    /* Missing required keys: reported at the enclosing group. */
    {.name = "missing_brokers",
     .text = "kafka = {\n  group = \"g\";\n};\n"
             "postgres = { conninfo = \"x\"; };\n" TOPIC,
     .want = "t.cfg:1: missing required key \"brokers\" in kafka (or set "
             "KJB_KAFKA_BROKERS)"},
    {.name = "missing_kafka_section",
     .text = "postgres = { conninfo = \"x\"; };\n" TOPIC,
     .want = "t.cfg: missing required key \"brokers\" in kafka (or set "
             "KJB_KAFKA_BROKERS)"},
    {.name = "missing_conninfo",
     .text = "kafka = { brokers = \"b\"; };\npostgres = { pool_size = 2; };\n",
     .want = "t.cfg:2: missing required key \"conninfo\" in postgres (or set "
             "KJB_POSTGRES_CONNINFO)"},
    {.name = "missing_topics", .text = BASE, .want = "t.cfg: missing required section \"topics\""},
    {.name = "empty_topics",
     .text = BASE "topics = ( );\n",
     .want = "t.cfg:3: topics: at least one topic is required"},
    {.name = "missing_topic_name",
     .text = BASE "topics = (\n  { schema = \"s\";\n"
                  "    jobs = ( { kind = \"k\"; } ); }\n);\n",
     .want = "t.cfg:4: missing required key \"topic\" in topics[0]"},
    {.name = "missing_topic_schema",
     .text = BASE "topics = ( { topic = \"o\"; jobs = ( { kind = \"k\"; } ); "
                  "} );\n",
     .want = "t.cfg:3: missing required key \"schema\" in topics[0]"},
    {.name = "missing_jobs",
     .text = BASE "topics = ( { topic = \"o\"; schema = \"s\"; } );\n",
     .want = "t.cfg:3: missing required key \"jobs\" in topics[0]"},
    {.name = "empty_jobs",
     .text = BASE "topics = ( { topic = \"o\"; schema = \"s\";\n"
                  "  jobs = ( ); } );\n",
     .want = "t.cfg:4: topics[0].jobs: at least one job is required"},
    {.name = "missing_job_kind",
     .text = BASE TOPIC_JOB("queue = \"q\";"),
     .want = "t.cfg:3: missing required key \"kind\" in topics[0].jobs[0]"},
    {.name = "missing_handler_kind",
     .text = BASE TOPIC HANDLER("type = \"log\";"),
     .want = "t.cfg:4: missing required key \"kind\" in handlers[0]"},
    {.name = "missing_handler_type",
     .text = BASE TOPIC HANDLER("kind = \"k\";"),
     .want = "t.cfg:4: missing required key \"type\" in handlers[0]"},
    {.name = "missing_http_url",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"http\";"),
     .want = "t.cfg:4: missing required key \"url\" in handlers[0] (required "
             "for type \"http\")"},
    {.name = "missing_exec_command",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"exec\";"),
     .want = "t.cfg:4: missing required key \"command\" in handlers[0] "
             "(required for type \"exec\")"},
    {.name = "missing_plugin_path",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"plugin\";"),
     .want = "t.cfg:4: missing required key \"plugin\" in handlers[0] "
             "(required for type \"plugin\")"},
    {.name = "missing_rate",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { burst = 5; };"),
     .want = "t.cfg:4: missing required key \"rate\" in "
             "handlers[0].rate_limit"},
    {.name = "missing_schema_id",
     .text = BASE "schemas = { ids = ( { file = \"a.avsc\"; } ); };\n",
     .want = "t.cfg:3: missing required key \"id\" in schemas.ids[0]"},
    {.name = "missing_schema_file",
     .text = BASE "schemas = { ids = ( { id = 1; } ); };\n",
     .want = "t.cfg:3: missing required key \"file\" in schemas.ids[0]"},
    {.name = "key_for_other_type",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"exec\"; command = "
                                "[ \"/bin/true\" ];\n  url = \"http://x\";"),
     .want = "t.cfg:5: handlers[0].url: only valid for type \"http\", not "
             "\"exec\""},

    /* Wrong types. */
    {.name = "type_string",
     .text = "kafka = { brokers = \"b\"; group = 5; };\n",
     .want = "t.cfg:1: kafka.group: expected a string, got an integer"},
    {.name = "type_integer_string",
     .text = "kafka = { brokers = \"b\"; };\n"
             "postgres = { conninfo = \"x\"; pool_size = \"4\"; };\n",
     .want = "t.cfg:2: postgres.pool_size: expected an integer, got a string"},
    {.name = "type_integer_float",
     .text = BASE "ingest = { batch_size = 10.0; };\n",
     .want = "t.cfg:3: ingest.batch_size: expected an integer, got a float"},
    {.name = "type_integer_bool",
     .text = BASE "ingest = { batch_size = true; };\n",
     .want = "t.cfg:3: ingest.batch_size: expected an integer, got a boolean"},
    {.name = "type_number",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { rate = \"50\"; };"),
     .want = "t.cfg:4: handlers[0].rate_limit.rate: expected a number, got a "
             "string"},
    {.name = "type_section",
     .text = BASE "log = \"debug\";\n",
     .want = "t.cfg:3: log: expected a group, got a string"},
    {.name = "type_subgroup",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; retry = 3;"),
     .want = "t.cfg:4: handlers[0].retry: expected a group, got an integer"},
    {.name = "type_topics",
     .text = BASE "topics = { topic = \"o\"; };\n",
     .want = "t.cfg:3: topics: expected a list of groups, got a group"},
    {.name = "type_topic_entry",
     .text = BASE "topics = ( \"orders\" );\n",
     .want = "t.cfg:3: topics[0]: expected a group, got a string"},
    {.name = "type_job_entry",
     .text = BASE "topics = ( { topic = \"o\"; schema = \"s\"; jobs = ( "
                  "\"k\" ); } );\n",
     .want = "t.cfg:3: topics[0].jobs[0]: expected a group, got a string"},
    {.name = "type_handler_entry",
     .text = BASE TOPIC "handlers = ( [ \"k\" ] );\n",
     .want = "t.cfg:4: handlers[0]: expected a group, got an array"},
    {.name = "type_string_list_value",
     .text = "kafka = { brokers = \"b\"; properties = \"a=b\"; };\n",
     .want = "t.cfg:1: kafka.properties: expected a list of strings, got a "
             "string"},
    {.name = "type_string_list_entry",
     .text = "kafka = { brokers = \"b\";\n  properties = ( \"a=b\",\n"
             "    5 ); };\n",
     .want = "t.cfg:3: kafka.properties[1]: expected a string, got an "
             "integer"},
    {.name = "type_duration",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; timeout = [ \"5s\" ];"),
     .want = "t.cfg:4: handlers[0].timeout: expected a duration such as "
             "\"30s\", got an array"},

    /* Durations. */
    {.name = "duration_bare_integer",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; timeout = 5;"),
     .want = "t.cfg:4: handlers[0].timeout: invalid duration \"5\" " DURATION_HINT},
    {.name = "duration_bare_string",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\";\n  timeout = \"5\";"),
     .want = "t.cfg:5: handlers[0].timeout: invalid duration \"5\" " DURATION_HINT},
    {.name = "duration_bad_unit",
     .text = BASE "ingest = { batch_timeout = \"5sec\"; };\n",
     .want = "t.cfg:3: ingest.batch_timeout: invalid duration \"5sec\" " DURATION_HINT},
    {.name = "duration_float",
     .text = BASE "schema_registry = { timeout = 1.5; };\n",
     .want = "t.cfg:3: schema_registry.timeout: invalid duration \"1.5\" " DURATION_HINT},
    {.name = "duration_zero",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; retry = { base = \"0s\"; };"),
     .want = "t.cfg:4: handlers[0].retry.base: must be greater than 0, got "
             "\"0s\""},
    {.name = "retry_max_below_base",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\";\n"
                                "  retry = { base = \"10s\"; max = \"5s\"; };"),
     .want = "t.cfg:5: handlers[0].retry.max: must not be less than "
             "retry.base"},
    {.name = "retry_base_above_default_max",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; retry = { base = \"2h\"; };"),
     .want = "t.cfg:4: handlers[0].retry.base: must not be more than "
             "retry.max (default 1h)"},

    /* Enumerations. */
    {.name = "enum_format",
     .text = BASE "topics = ( { topic = \"o\"; schema = \"s\"; format = "
                  "\"avro\"; jobs = ( { kind = \"k\"; } ); } );\n",
     .want = "t.cfg:3: topics[0].format: invalid value \"avro\" (expected "
             "confluent, raw or single-object)"},
    {.name = "enum_scope",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { "
                                "rate = 1; scope = \"global\"; };"),
     .want = "t.cfg:4: handlers[0].rate_limit.scope: invalid value "
             "\"global\" (expected local or cluster)"},
    {.name = "enum_jitter",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; retry = { jitter = \"half\"; };"),
     .want = "t.cfg:4: handlers[0].retry.jitter: invalid value \"half\" "
             "(expected full, equal or none)"},
    {.name = "enum_log_level",
     .text = BASE "log = { level = \"verbose\"; };\n",
     .want = "t.cfg:3: log.level: invalid value \"verbose\" (expected debug, "
             "info, warn or error)"},
    {.name = "enum_log_format",
     .text = BASE "log = { format = \"xml\"; };\n",
     .want = "t.cfg:3: log.format: invalid value \"xml\" (expected text or "
             "json)"},
    {.name = "enum_handler_type",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"smtp\";"),
     .want = "t.cfg:4: handlers[0].type: invalid value \"smtp\" (expected "
             "http, exec, log or plugin)"},
    {.name = "enum_not_string",
     .text = BASE "log = { level = 3; };\n",
     .want = "t.cfg:3: log.level: expected a string, got an integer"},

    /* Ranges. */
    {.name = "range_priority_high",
     .text = BASE TOPIC_JOB("kind = \"k\"; priority = 32768;"),
     .want = "t.cfg:3: topics[0].jobs[0].priority: must be between -32768 "
             "and 32767, got 32768"},
    {.name = "range_priority_low",
     .text = BASE TOPIC_JOB("kind = \"k\"; priority = -32769;"),
     .want = "t.cfg:3: topics[0].jobs[0].priority: must be between -32768 "
             "and 32767, got -32769"},
    {.name = "range_job_max_attempts",
     .text = BASE TOPIC_JOB("kind = \"k\"; max_attempts = 0;"),
     .want = "t.cfg:3: topics[0].jobs[0].max_attempts: must be between 1 and "
             "1000, got 0"},
    {.name = "range_retry_max_attempts",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; retry = { max_attempts = 0; };"),
     .want = "t.cfg:4: handlers[0].retry.max_attempts: must be between 1 and "
             "1000, got 0"},
    {.name = "range_pool_size",
     .text = "kafka = { brokers = \"b\"; };\n"
             "postgres = { conninfo = \"x\"; pool_size = 0; };\n",
     .want = "t.cfg:2: postgres.pool_size: must be between 1 and 256, got 0"},
    {.name = "range_pool_size_int64",
     .text = "kafka = { brokers = \"b\"; };\n"
             "postgres = { conninfo = \"x\"; pool_size = 5000000000L; };\n",
     .want = "t.cfg:2: postgres.pool_size: must be between 1 and 256, got "
             "5000000000"},
    {.name = "range_concurrency",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; concurrency = 0;"),
     .want = "t.cfg:4: handlers[0].concurrency: must be between 1 and 1024, got 0"},
    {.name = "range_batch_size_low",
     .text = BASE "ingest = { batch_size = 0; };\n",
     .want = "t.cfg:3: ingest.batch_size: must be between 1 and 1000000, "
             "got 0"},
    {.name = "range_batch_size_high",
     .text = BASE "ingest = { batch_size = 1000001; };\n",
     .want = "t.cfg:3: ingest.batch_size: must be between 1 and 1000000, "
             "got 1000001"},
    {.name = "range_rate_zero",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { rate = 0; };"),
     .want = "t.cfg:4: handlers[0].rate_limit.rate: must be greater than 0, "
             "got 0"},
    {.name = "range_rate_negative",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { rate = -1.5; };"),
     .want = "t.cfg:4: handlers[0].rate_limit.rate: must be greater than 0, "
             "got -1.5"},
    {.name = "range_rate_infinite",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { rate = 1e999; };"),
     .want = "t.cfg:4: handlers[0].rate_limit.rate: must be a finite number"},
    {.name = "range_burst",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { "
                                "rate = 1; burst = 0; };"),
     .want = "t.cfg:4: handlers[0].rate_limit.burst: must be between 1 and "
             "1000000, got 0"},
    {.name = "range_failure_ratio_zero",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; breaker = { "
                                "failure_ratio = 0; };"),
     .want = "t.cfg:4: handlers[0].breaker.failure_ratio: must be greater "
             "than 0 and at most 1, got 0"},
    {.name = "range_failure_ratio_high",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; breaker = { "
                                "failure_ratio = 1.5; };"),
     .want = "t.cfg:4: handlers[0].breaker.failure_ratio: must be greater "
             "than 0 and at most 1, got 1.5"},
    {.name = "range_min_calls",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; breaker = { "
                                "min_calls = 0; };"),
     .want = "t.cfg:4: handlers[0].breaker.min_calls: must be between 1 and "
             "1024, got 0"},
    /* Upper bounds: what a value can make the process start or allocate. */
    {.name = "range_concurrency_high",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; concurrency = 100000000;"),
     .want = "t.cfg:4: handlers[0].concurrency: must be between 1 and 1024, got 100000000"},
    {.name = "range_workers_total",
     .text = BASE TOPIC
     "handlers = (\n  " LOG_HANDLER("a", "1024") ",\n  " LOG_HANDLER("b", "1024") ",\n  " LOG_HANDLER(
         "c", "1024") ",\n  " LOG_HANDLER("d", "1000") ",\n  " LOG_HANDLER("e", "100") "\n);\n",
     .want = "t.cfg:9: handlers[4].concurrency: the handlers' concurrency adds up to 4172, more "
             "than 4096"},
    {.name = "range_workers_total_default",
     .text = BASE TOPIC
     "handlers = (\n  " LOG_HANDLER("a", "1024") ",\n  " LOG_HANDLER("b", "1024") ",\n  " LOG_HANDLER(
         "c", "1024") ",\n  " LOG_HANDLER("d", "1024") ",\n  "
                                                       "{ kind = \"e\"; type = \"log\"; }\n);\n",
     .want = "t.cfg:9: handlers[4].concurrency: the handlers' concurrency adds up to 4100, more "
             "than 4096"},
    {.name = "range_pool_size_high",
     .text = "kafka = { brokers = \"b\"; };\n"
             "postgres = { conninfo = \"x\"; pool_size = 257; };\n",
     .want = "t.cfg:2: postgres.pool_size: must be between 1 and 256, got 257"},
    {.name = "range_claim_batch_high",
     .text = BASE "executor = { claim_batch = 100001; };\n",
     .want = "t.cfg:3: executor.claim_batch: must be between 1 and 100000, got 100001"},
    {.name = "range_burst_high",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { "
                                "rate = 1; burst = 1000001; };"),
     .want = "t.cfg:4: handlers[0].rate_limit.burst: must be between 1 and 1000000, got "
             "1000001"},
    {.name = "range_job_max_attempts_high",
     .text = BASE TOPIC_JOB("kind = \"k\"; max_attempts = 1001;"),
     .want = "t.cfg:3: topics[0].jobs[0].max_attempts: must be between 1 and 1000, got 1001"},
    {.name = "range_retry_max_attempts_high",
     .text = BASE TOPIC HANDLER(
         "kind = \"k\"; type = \"log\"; retry = { max_attempts = 2147483647; };"),
     .want = "t.cfg:4: handlers[0].retry.max_attempts: must be between 1 and 1000, got "
             "2147483647"},
    {.name = "range_min_calls_high",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; breaker = { "
                                "min_calls = 1025; };"),
     .want = "t.cfg:4: handlers[0].breaker.min_calls: must be between 1 and 1024, got 1025"},
    {.name = "duration_max_timeout",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; timeout = \"25h\";"),
     .want = "t.cfg:4: handlers[0].timeout: must be at most 1d, got \"25h\""},
    {.name = "duration_max_retry",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; retry = { max = \"31d\"; };"),
     .want = "t.cfg:4: handlers[0].retry.max: must be at most 30d, got \"31d\""},
    {.name = "duration_max_retention",
     .text = BASE "executor = { retention = \"3651d\"; };\n",
     .want = "t.cfg:3: executor.retention: must be at most 3650d, got \"3651d\""},
    {.name = "duration_max_batch_timeout",
     .text = BASE "ingest = { batch_timeout = \"3600.5s\"; };\n",
     .want = "t.cfg:3: ingest.batch_timeout: must be at most 1h, got \"3600.5s\""},
    {.name = "duration_max_huge",
     .text = BASE "executor = { poll_interval = \"100000d\"; };\n",
     .want = "t.cfg:3: executor.poll_interval: must be at most 1h, got \"100000d\""},
    {.name = "env_duration_max",
     .text = BASE TOPIC,
     .env = {{"KJB_EXECUTOR_LEASE", "2d"}},
     .want = "environment KJB_EXECUTOR_LEASE: must be at most 1d, got \"2d\""},
    {.name = "string_name_too_long",
     .text = BASE TOPIC_JOB("kind = \"" CHARS_256 "\";"),
     .want = "t.cfg:3: topics[0].jobs[0].kind: must be at most 255 bytes, got 256"},
    {.name = "string_too_long",
     .text = "kafka = { brokers = \"b\"; };\n"
             "postgres = {\n  conninfo = \"" CHARS_4096 "x\"; };\n" TOPIC,
     .want = "t.cfg:3: postgres.conninfo: must be at most 4096 bytes, got 4097"},
    {.name = "string_list_entry_too_long",
     .text = BASE TOPIC_JOB("kind = \"k\"; args = [ \"a\", \"" CHARS_256 "\" ];"),
     .want = "t.cfg:3: topics[0].jobs[0].args[1]: must be at most 255 bytes, got 256"},
    {.name = "env_string_too_long",
     .text = BASE TOPIC,
     .env = {{"KJB_KAFKA_GROUP", CHARS_256}},
     .want = "environment KJB_KAFKA_GROUP: must be at most 255 bytes, got 256"},
    {.name = "list_topics_too_long",
     .text = BASE "topics = (\n" ENTRIES_1024 "{} );\n",
     .want = "t.cfg:3: topics: must have at most 1024 entries, got 1025"},
    {.name = "list_jobs_too_long",
     .text =
         BASE "topics = ( { topic = \"o\"; schema = \"s\";\n  jobs = ( " ENTRIES_64 "{} ); } );\n",
     .want = "t.cfg:4: topics[0].jobs: must have at most 64 entries, got 65"},
    {.name = "list_handlers_too_long",
     .text = BASE TOPIC "handlers = ( " ENTRIES_256 "{} );\n",
     .want = "t.cfg:4: handlers: must have at most 256 entries, got 257"},
    {.name = "list_schema_ids_too_long",
     .text = BASE "schemas = { ids = ( " ENTRIES_4096 "{} ); };\n",
     .want = "t.cfg:3: schemas.ids: must have at most 4096 entries, got 4097"},
    {.name = "list_properties_too_long",
     .text = "kafka = { brokers = \"b\"; properties = ( " ENTRIES_256 "{} ); };\n",
     .want = "t.cfg:1: kafka.properties: must have at most 256 entries, got 257"},
    {.name = "list_command_too_long",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"exec\"; command = ( " ENTRIES_256 "{} );"),
     .want = "t.cfg:4: handlers[0].command: must have at most 256 entries, got 257"},
    {.name = "range_schema_id",
     .text = BASE "schemas = { ids = ( { id = -1; file = \"a.avsc\"; } ); };\n",
     .want = "t.cfg:3: schemas.ids[0].id: must be at least 0, got -1"},

    /* Duplicates. */
    {.name = "duplicate_topic",
     .text = BASE "topics = (\n"
                  "  { topic = \"orders\"; schema = \"s\"; jobs = ( { kind = "
                  "\"k\"; } ); },\n"
                  "  { topic = \"orders\"; schema = \"s\"; jobs = ( { kind = "
                  "\"k\"; } ); }\n);\n",
     .want = "t.cfg:5: topics[1].topic: duplicate topic \"orders\" (first "
             "defined at line 4)"},
    {.name = "duplicate_handler",
     .text = BASE TOPIC "handlers = (\n  { kind = \"k\"; type = \"log\"; },\n"
                        "  { kind = \"k\"; type = \"log\"; }\n);\n",
     .want = "t.cfg:6: handlers[1].kind: duplicate handler for kind \"k\" "
             "(first defined at line 5)"},
    {.name = "duplicate_job_kind",
     .text = BASE "topics = ( { topic = \"o\"; schema = \"s\"; jobs = (\n"
                  "  { kind = \"k\"; },\n  { kind = \"k\"; queue = \"q\"; }\n"
                  "); } );\n",
     .want = "t.cfg:5: topics[0].jobs[1].kind: duplicate job kind \"k\" in "
             "topic \"o\" (first defined at line 4)"},
    {.name = "same_job_kind_other_topic",
     .text = BASE "topics = (\n"
                  "  { topic = \"a\"; schema = \"s\"; jobs = ( { kind = "
                  "\"k\"; } ); },\n"
                  "  { topic = \"b\"; schema = \"s\"; jobs = ( { kind = "
                  "\"k\"; } ); }\n);\n"},
    {.name = "duplicate_schema_id",
     .text = BASE "schemas = { ids = (\n  { id = 1; file = \"a.avsc\"; },\n"
                  "  { id = 1; file = \"b.avsc\"; }\n); };\n",
     .want = "t.cfg:5: schemas.ids[1].id: duplicate schema id 1 (first "
             "defined at line 4)"},
    {.name = "duplicate_args",
     .text = BASE TOPIC_JOB("kind = \"k\"; args = [ \"a\", \"b\", \"a\" ];"),
     .want = "t.cfg:3: topics[0].jobs[0].args[2]: duplicate path \"a\""},

    /* Topic names. */
    {.name = "dlq_is_topic",
     .text = BASE "topics = ( { topic = \"o\"; schema = \"s\"; dlq = \"o\"; "
                  "jobs = ( { kind = \"k\"; } ); } );\n",
     .want = "t.cfg:3: topics[0].dlq: must differ from the topic itself"},
    {.name = "bad_topic_name",
     .text = BASE "topics = ( { topic = \"or ders\"; schema = \"s\"; "
                  "jobs = ( { kind = \"k\"; } ); } );\n",
     .want = "t.cfg:3: topics[0].topic: invalid topic name \"or ders\" "
             "(expected at most 249 letters, digits, \".\", \"_\" and \"-\")"},

    /* unique_key templates. */
    {.name = "template_unclosed",
     .text = BASE TOPIC_JOB("kind = \"k\"; unique_key = \"order-${order_id\";"),
     .want = "t.cfg:3: topics[0].jobs[0].unique_key: invalid template "
             "\"order-${order_id\": \"${\" at byte 6 is not closed by \"}\""},
    {.name = "template_empty_path",
     .text = BASE TOPIC_JOB("kind = \"k\"; unique_key = \"a-${}\";"),
     .want = "t.cfg:3: topics[0].jobs[0].unique_key: invalid template "
             "\"a-${}\": empty path at byte 2"},
    {.name = "template_bad_path",
     .text = BASE TOPIC_JOB("kind = \"k\"; unique_key = \"${id}/${customer.1st}"
                            "\";"),
     .want = "t.cfg:3: topics[0].jobs[0].unique_key: invalid template "
             "\"${id}/${customer.1st}\": invalid path \"customer.1st\" at byte "
             "6 " PATH_HINT},
    {.name = "template_empty",
     .text = BASE TOPIC_JOB("kind = \"k\"; unique_key = \"\";"),
     .want = "t.cfg:3: topics[0].jobs[0].unique_key: must not be empty"},
    /* ordering_key takes the same templates, checked the same way. */
    {.name = "ordering_key_unclosed",
     .text = BASE TOPIC_JOB("kind = \"k\"; ordering_key = \"c-${customer.id\";"),
     .want = "t.cfg:3: topics[0].jobs[0].ordering_key: invalid template "
             "\"c-${customer.id\": \"${\" at byte 2 is not closed by \"}\""},
    {.name = "ordering_key_bad_path",
     .text = BASE TOPIC_JOB("kind = \"k\"; ordering_key = \"${customer.1st}\";"),
     .want = "t.cfg:3: topics[0].jobs[0].ordering_key: invalid template "
             "\"${customer.1st}\": invalid path \"customer.1st\" at byte 0 " PATH_HINT},
    {.name = "ordering_key_empty",
     .text = BASE TOPIC_JOB("kind = \"k\"; ordering_key = \"\";"),
     .want = "t.cfg:3: topics[0].jobs[0].ordering_key: must not be empty"},
    {.name = "ordering_key_not_a_string",
     .text = BASE TOPIC_JOB("kind = \"k\"; ordering_key = 7;"),
     .want = "t.cfg:3: topics[0].jobs[0].ordering_key: expected a string, got an integer"},
    {.name = "on_discard_unknown",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\";\n  on_discard = \"drop\";"),
     .want = "t.cfg:5: handlers[0].on_discard: invalid value \"drop\" "
             "(expected continue or hold)"},
    {.name = "on_discard_case",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; on_discard = \"Hold\";"),
     .want = "t.cfg:4: handlers[0].on_discard: invalid value \"Hold\" "
             "(expected continue or hold)"},

    /* args, properties, command and other strings. */
    {.name = "args_bad_path",
     .text = BASE TOPIC_JOB("kind = \"k\"; args = [ \"customer..email\" ];"),
     .want = "t.cfg:3: topics[0].jobs[0].args[0]: invalid path "
             "\"customer..email\" " PATH_HINT},
    {.name = "args_empty",
     .text = BASE TOPIC_JOB("kind = \"k\"; args = [ ];"),
     .want = "t.cfg:3: topics[0].jobs[0].args: must not be empty (leave args "
             "out to pass the whole record)"},
    {.name = "properties_no_equals",
     .text = "kafka = { brokers = \"b\"; properties = [ \"acks=all\", "
             "\"debug\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[1]: expected \"key=value\", got "
             "no \"=\""},
    {.name = "properties_no_key",
     .text = "kafka = { brokers = \"b\"; properties = [ \"=x\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[0]: expected \"key=value\", got "
             "no key before \"=\""},
    /* librdkafka's verdict on each entry, in its words, at the entry's
     * line; the key first, as the reason may name another (an alias's
     * target). */
    {.name = "properties_unknown_key",
     .text = "kafka = { brokers = \"b\"; properties = [\n  \"client.id=x\",\n"
             "  \"fetch.max.byte=1\" ]; };\n",
     .want = "t.cfg:3: kafka.properties[1]: \"fetch.max.byte\": No such configuration "
             "property: \"fetch.max.byte\""},
    {.name = "properties_bad_enum",
     .text = "kafka = { brokers = \"b\";\n  properties = [ \"auto.offset.reset=soon\" ]; };\n",
     .want = "t.cfg:2: kafka.properties[0]: \"auto.offset.reset\": Invalid value \"soon\" "
             "for configuration property \"auto.offset.reset\""},
    {.name = "properties_out_of_range",
     .text = "kafka = { brokers = \"b\"; properties = [ \"fetch.max.bytes=-1\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[0]: \"fetch.max.bytes\": Configuration property "
             "\"fetch.max.bytes\" value -1 is outside allowed range 0..2147483135"},
    {.name = "properties_not_a_number",
     .text = "kafka = { brokers = \"b\"; properties = [ \"linger.ms=abc\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[0]: \"linger.ms\": Invalid value for configuration "
             "property \"queue.buffering.max.ms\""},
    /* librdkafka would take the leading number of these: kjb does not. */
    {.name = "properties_number_with_unit",
     .text = "kafka = { brokers = \"b\"; properties = [ \"session.timeout.ms=45s\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[0]: \"session.timeout.ms\": expected a number, got "
             "\"45s\""},
    {.name = "properties_number_in_hex",
     .text = "kafka = { brokers = \"b\"; properties = [ \"fetch.max.bytes=0x100000\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[0]: \"fetch.max.bytes\": expected a number, got "
             "\"0x100000\""},
    {.name = "properties_number_blank",
     .text = "kafka = { brokers = \"b\"; properties = [ \"linger.ms= 5\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[0]: \"linger.ms\": expected a number, got \" 5\""},
    {.name = "properties_number_fraction",
     .text = "kafka = { brokers = \"b\"; properties = [ \"acks=1.\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[0]: \"acks\": expected a number, got \"1.\""},
    {.name = "properties_alias",
     .text = "kafka = { brokers = \"b\"; properties = [ \"acks=maybe\" ]; };\n",
     .want = "t.cfg:1: kafka.properties[0]: \"acks\": Invalid value for configuration "
             "property \"request.required.acks\""},
    {.name = "properties_bool",
     .text = "kafka = { brokers = \"b\"; properties = [ \"enable.idempotence=yes please\" ]; "
             "};\n",
     .want = "t.cfg:1: kafka.properties[0]: \"enable.idempotence\": Expected bool value for "
             "\"enable.idempotence\": true or false"},
    /* The first entry refused, in order; in the file that holds it. */
    {.name = "properties_first_bad",
     .text = "@include \"kafka.cfg\"\n",
     .inc_name = "kafka.cfg",
     .inc_text = "# Kafka\nkafka = { brokers = \"b\";\n"
                 "  properties = [ \"linger.ms=10\",\n  \"compression.type=brotli\",\n"
                 "  \"no.such.key=1\" ]; };\n",
     .want = "kafka.cfg:4: kafka.properties[1]: \"compression.type\": Invalid value "
             "\"brotli\" for configuration property \"compression.codec\""},
    {.name = "command_empty",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"exec\"; command = [ ];"),
     .want = "t.cfg:4: handlers[0].command: must not be empty"},
    {.name = "command_empty_program",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"exec\"; command = [ \"\", \"x\" ];"),
     .want = "t.cfg:4: handlers[0].command[0]: must not be empty"},
    {.name = "http_url_scheme",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"http\"; url = \"127.0.0.1:8080/hook\";"),
     .want = "t.cfg:4: handlers[0].url: expected an http:// or https:// URL, "
             "got \"127.0.0.1:8080/hook\""},
    {.name = "registry_url_scheme",
     .text = BASE "schema_registry = { url = \"registry:8081\"; };\n",
     .want = "t.cfg:3: schema_registry.url: expected an http:// or https:// "
             "URL, got \"registry:8081\""},
    /* Named admin tokens: each name is an actor of the audit trail, each
     * variable one token. */
    {.name = "admin_tokens_empty_name",
     .text = BASE TOPIC "http = { admin_tokens = ( { name = \"\"; env = \"T_OPS\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].name: must not be empty"},
    {.name = "admin_tokens_missing_env",
     .text = BASE TOPIC "http = { admin_tokens = ( { name = \"ops\"; } ); };\n",
     .want = "t.cfg:4: missing required key \"env\" in http.admin_tokens[0]"},
    {.name = "admin_tokens_unknown_key",
     .text = BASE TOPIC
     "http = { admin_tokens = ( { name = \"ops\"; env = \"T\"; token = \"x\"; } ); };\n",
     .want = "t.cfg:4: unknown key \"token\" in http.admin_tokens[0]"},
    {.name = "admin_tokens_not_a_group",
     .text = BASE TOPIC "http = { admin_tokens = ( \"ops\" ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0]: expected a group, got a string"},
    {.name = "admin_tokens_not_a_list",
     .text = BASE TOPIC "http = { admin_tokens = \"ops\"; };\n",
     .want = "t.cfg:4: http.admin_tokens: expected a list of groups, got a string"},
    {.name = "admin_tokens_duplicate_name",
     .text = BASE TOPIC "http = { admin_tokens = (\n"
                        "  { name = \"ops\"; env = \"T_OPS\"; },\n"
                        "  { name = \"ops\"; env = \"T_OPS2\"; } ); };\n",
     .want = "t.cfg:6: http.admin_tokens[1].name: duplicate token name \"ops\" (first defined "
             "at line 5)"},
    {.name = "admin_tokens_duplicate_env",
     .text = BASE TOPIC "http = { admin_tokens = (\n"
                        "  { name = \"ops\"; env = \"T_OPS\"; },\n"
                        "  { name = \"dev\"; env = \"T_OPS\"; } ); };\n",
     .want = "t.cfg:6: http.admin_tokens[1].env: duplicate environment variable \"T_OPS\" (first "
             "defined at line 5)"},
    {.name = "admin_tokens_admin_env",
     .text = BASE TOPIC "http = { admin_token_env = \"T_MAIN\";\n"
                        "  admin_tokens = ( { name = \"ops\"; env = \"T_MAIN\"; } ); };\n",
     .want = "t.cfg:5: http.admin_tokens[0].env: \"T_MAIN\" is http.admin_token_env already"},
    {.name = "admin_tokens_admin_env_from_environment",
     .text = BASE TOPIC "http = { admin_tokens = ( { name = \"ops\"; env = \"T_MAIN\"; } ); };\n",
     .env = {{"KJB_HTTP_ADMIN_TOKEN_ENV", "T_MAIN"}},
     .want = "t.cfg:4: http.admin_tokens[0].env: \"T_MAIN\" is http.admin_token_env already"},
    {.name = "admin_tokens_name_admin",
     .text = BASE TOPIC "http = { admin_tokens = ( { name = \"admin\"; env = \"T_OPS\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].name: \"admin\" is the token of http.admin_token_env"},
    {.name = "admin_tokens_name_cli",
     .text =
         BASE TOPIC "http = { admin_tokens = ( { name = \"cli:root\"; env = \"T_OPS\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].name: \"cli:\" starts the names of commands' actors"},
    {.name = "admin_tokens_name_control",
     .text = BASE TOPIC "http = { admin_tokens = ( { name = \"o\\tps\"; env = \"T_OPS\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].name: holds a control character"},
    {.name = "admin_tokens_name_not_utf8",
     .text =
         BASE TOPIC "http = { admin_tokens = ( { name = \"op\\xffs\"; env = \"T_OPS\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].name: not valid UTF-8"},
    {.name = "admin_tokens_name_too_long",
     .text =
         BASE TOPIC "http = { admin_tokens = ( { name = \"" CHARS_256 "\"; env = \"T\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].name: must be at most 128 bytes, got 256"},
    {.name = "admin_tokens_bad_env",
     .text =
         BASE TOPIC "http = { admin_tokens = ( { name = \"ops\"; env = \"KJB-TOKEN\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].env: invalid environment variable name \"KJB-TOKEN\" "
             "(expected letters, digits and underscores, not starting with a digit)"},
    {.name = "admin_tokens_env_digit",
     .text = BASE TOPIC "http = { admin_tokens = ( { name = \"ops\"; env = \"1TOKEN\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].env: invalid environment variable name \"1TOKEN\" "
             "(expected letters, digits and underscores, not starting with a digit)"},
    {.name = "admin_tokens_empty_env",
     .text = BASE TOPIC "http = { admin_tokens = ( { name = \"ops\"; env = \"\"; } ); };\n",
     .want = "t.cfg:4: http.admin_tokens[0].env: must not be empty"},
    {.name = "admin_token_env_bad",
     .text = BASE TOPIC "http = { admin_token_env = \"MY TOKEN\"; };\n",
     .want = "t.cfg:4: http.admin_token_env: invalid environment variable name \"MY TOKEN\" "
             "(expected letters, digits and underscores, not starting with a digit)"},
    {.name = "admin_tokens_too_many",
     .text = BASE TOPIC "http = { admin_tokens = ( " ENTRIES_64 "{} ); };\n",
     .want = "t.cfg:4: http.admin_tokens: must have at most 64 entries, got 65"},
    {.name = "admin_tokens_loaded",
     .text = BASE TOPIC "http = { admin_tokens = (\n"
                        "  { name = \"ops\"; env = \"KJB_TOKEN_OPS\"; },\n"
                        "  { env = \"_T2\"; name = \"ci d\xc3\xa9ploy\"; } ); };\n",
     .check = check_admin_tokens},
    /* Addresses are checked when the file is loaded, not when they are
     * used, so that check-config finds them and says where. */
    {.name = "listen_port_range",
     .text = BASE "http = { listen = \"127.0.0.1:99999\"; };\n",
     .want = "t.cfg:3: http.listen: invalid port in \"127.0.0.1:99999\" (expected 0 to 65535)"},
    {.name = "listen_no_port",
     .text = BASE "http = { listen = \"127.0.0.1\"; };\n",
     .want = "t.cfg:3: http.listen: expected host:port or [ipv6]:port, got \"127.0.0.1\""},
    {.name = "listen_negative_port",
     .text = BASE "http = { listen = \"localhost:-1\"; };\n",
     .want = "t.cfg:3: http.listen: invalid port in \"localhost:-1\" (expected 0 to 65535)"},
    {.name = "listen_bare_ipv6",
     .text = BASE "http = { listen = \"::1:9464\"; };\n",
     .want = "t.cfg:3: http.listen: expected host:port or [ipv6]:port, got \"::1:9464\""},
    {.name = "listen_bad_host",
     .text = BASE "http = { listen = \"0.0.0.0 :80\"; };\n",
     .want = "t.cfg:3: http.listen: invalid host in \"0.0.0.0 :80\""},
    {.name = "env_listen_garbage",
     .text = BASE TOPIC,
     .env = {{"KJB_HTTP_LISTEN", "garbage"}},
     .want = "environment KJB_HTTP_LISTEN: expected host:port or [ipv6]:port, got \"garbage\""},
    {.name = "env_listen_port",
     .text = BASE TOPIC,
     .env = {{"KJB_HTTP_LISTEN", "0.0.0.0:65536"}},
     .want = "environment KJB_HTTP_LISTEN: invalid port in \"0.0.0.0:65536\" (expected 0 to "
             "65535)"},
    {.name = "brokers_port",
     .text = "kafka = { brokers = \"a:9092, SSL://b:90920\"; };\n",
     .want = "t.cfg:1: kafka.brokers: invalid port in \"b:90920\" (expected 0 to 65535)"},
    {.name = "brokers_bare_ipv6",
     .text = "kafka = { brokers = \"a:9092,::1\"; };\n",
     .want = "t.cfg:1: kafka.brokers: expected host[:port] or [ipv6][:port], got \"::1\""},
    {.name = "env_brokers_port",
     .text = BASE TOPIC,
     .env = {{"KJB_KAFKA_BROKERS", "kafka:x"}},
     .want = "environment KJB_KAFKA_BROKERS: invalid port in \"kafka:x\" (expected 0 to 65535)"},
    {.name = "http_url_port",
     .text = BASE TOPIC HANDLER(
         "kind = \"k\"; type = \"http\"; url = \"http://user:pw@hooks:8o8o/x?a=b:c\";"),
     .want = "t.cfg:4: handlers[0].url: invalid port in \"hooks:8o8o\" (expected 0 to 65535)"},
    {.name = "http_url_no_host",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"http\"; url = \"https:///hook\";"),
     .want = "t.cfg:4: handlers[0].url: expected a host after \"https://\", got "
             "\"https:///hook\""},
    {.name = "registry_url_port",
     .text = BASE "schema_registry = { url = \"http://[::1]:65536\"; };\n",
     .want = "t.cfg:3: schema_registry.url: invalid port in \"[::1]:65536\" (expected 0 to "
             "65535)"},
    {.name = "addresses_that_load",
     .text =
         "kafka = { brokers = \"a:9092, SSL://b:9093,[::1]:9094,c,\"; };\n"
         "postgres = { conninfo = \"dbname=kjb\"; };\n"
         "http = { listen = \"[::]:0\"; };\n"
         "schema_registry = { url = \"https://u:p@registry.example:8081/base?x=1#f\"; };\n" TOPIC
             HANDLER("kind = \"k\"; type = \"http\"; url = \"http://[fe80::1%eth0]/h\";"),
     .check = check_addresses},
    {.name = "postgres_schema_name",
     .text = "kafka = { brokers = \"b\"; };\n"
             "postgres = { conninfo = \"x\"; schema = \"kjb-test\"; };\n",
     .want = "t.cfg:2: postgres.schema: invalid name \"kjb-test\" (expected "
             "at most 63 letters, digits and underscores, not starting with a "
             "digit)"},
    {.name = "empty_string",
     .text = "kafka = { brokers = \"\"; };\n",
     .want = "t.cfg:1: kafka.brokers: must not be empty"},

    /* Environment overrides. */
    {.name = "env_values",
     .text = "kafka = { brokers = \"file:9092\"; group = \"file\"; };\n"
             "postgres = { conninfo = \"file\"; pool_size = 2; };\n" TOPIC,
     .env = {{"KJB_KAFKA_BROKERS", "env:9092"},
             {"KJB_KAFKA_GROUP", "g2"},
             {"KJB_POSTGRES_CONNINFO", "host=db password=secret"},
             {"KJB_POSTGRES_POOL_SIZE", "9"},
             {"KJB_HTTP_LISTEN", "0.0.0.0:9000"},
             {"KJB_SCHEMA_REGISTRY_URL", "http://registry:8081"},
             {"KJB_SCHEMA_REGISTRY_TIMEOUT", "2s"},
             {"KJB_SCHEMAS_DIR", "/srv/schemas"}},
     .check = check_env},
    {.name = "env_values_2",
     .text = BASE TOPIC,
     .env = {{"KJB_INGEST_BATCH_SIZE", "42"},
             {"KJB_INGEST_BATCH_TIMEOUT", "2.5ms"},
             {"KJB_LOG_LEVEL", "warn"},
             {"KJB_LOG_FORMAT", "json"},
             {"KJB_KAFKA_BROKERS", "env:9092"},
             {"KJB_KAFKA_GROUP", "g2"},
             {"KJB_POSTGRES_CONNINFO", "host=db password=secret"},
             {"KJB_POSTGRES_POOL_SIZE", "9"}},
     .check = check_env_2},
    {.name = "env_supplies_required",
     .text = TOPIC,
     .env = {{"KJB_KAFKA_BROKERS", "embedded"}, {"KJB_POSTGRES_CONNINFO", "postgresql:///x"}},
     .check = check_env_required},
    {.name = "env_empty_is_unset",
     .text = "kafka = { brokers = \"b:9092\"; group = \"from-file\"; };\n"
             "postgres = { conninfo = \"dbname=kjb\"; };\n" TOPIC,
     .env = {{"KJB_KAFKA_GROUP", ""}},
     .check = check_env_empty},
    {.name = "env_empty_required",
     .text = "postgres = { conninfo = \"x\"; };\n" TOPIC,
     .env = {{"KJB_KAFKA_BROKERS", ""}},
     .want = "t.cfg: missing required key \"brokers\" in kafka (or set "
             "KJB_KAFKA_BROKERS)"},
    {.name = "env_bad_integer",
     .text = BASE TOPIC,
     .env = {{"KJB_INGEST_BATCH_SIZE", "abc"}},
     .want = "environment KJB_INGEST_BATCH_SIZE: expected an integer, got "
             "\"abc\""},
    {.name = "env_integer_suffix",
     .text = BASE TOPIC,
     .env = {{"KJB_POSTGRES_POOL_SIZE", "4x"}},
     .want = "environment KJB_POSTGRES_POOL_SIZE: expected an integer, got "
             "\"4x\""},
    /* Strict, as kjb_parse_i64 is: what strtoll() skipped or stopped at. */
    {.name = "env_integer_space",
     .text = BASE TOPIC,
     .env = {{"KJB_POSTGRES_POOL_SIZE", " 1"}},
     .want = "environment KJB_POSTGRES_POOL_SIZE: expected an integer, got \" 1\""},
    {.name = "env_integer_plus",
     .text = BASE TOPIC,
     .env = {{"KJB_POSTGRES_POOL_SIZE", "+1"}},
     .want = "environment KJB_POSTGRES_POOL_SIZE: expected an integer, got \"+1\""},
    {.name = "env_integer_leading_zero",
     .text = BASE TOPIC,
     .env = {{"KJB_POSTGRES_POOL_SIZE", "01"}},
     .want = "environment KJB_POSTGRES_POOL_SIZE: expected an integer, got \"01\""},
    {.name = "env_integer_junk",
     .text = BASE TOPIC,
     .env = {{"KJB_POSTGRES_POOL_SIZE", "1x"}},
     .want = "environment KJB_POSTGRES_POOL_SIZE: expected an integer, got \"1x\""},
    {.name = "env_integer_trailing_space",
     .text = BASE TOPIC,
     .env = {{"KJB_EXECUTOR_CLAIM_BATCH", "10\n"}},
     .want = "environment KJB_EXECUTOR_CLAIM_BATCH: expected an integer, got \"10\n\""},
    {.name = "env_integer_hex",
     .text = BASE TOPIC,
     .env = {{"KJB_INGEST_BATCH_SIZE", "0x10"}},
     .want = "environment KJB_INGEST_BATCH_SIZE: expected an integer, got \"0x10\""},
    {.name = "env_integer_overflow",
     .text = BASE TOPIC,
     .env = {{"KJB_INGEST_BATCH_SIZE", "99999999999999999999"}},
     .want = "environment KJB_INGEST_BATCH_SIZE: expected an integer, got "
             "\"99999999999999999999\""},
    {.name = "env_integer_high",
     .text = BASE TOPIC,
     .env = {{"KJB_POSTGRES_POOL_SIZE", "100000000"}},
     .want = "environment KJB_POSTGRES_POOL_SIZE: must be between 1 and 256, got 100000000"},
    {.name = "env_integer_negative",
     .text = BASE TOPIC,
     .env = {{"KJB_POSTGRES_POOL_SIZE", "-3"}},
     .want = "environment KJB_POSTGRES_POOL_SIZE: must be between 1 and 256, got -3"},
    {.name = "env_range",
     .text = BASE TOPIC,
     .env = {{"KJB_INGEST_BATCH_SIZE", "0"}},
     .want = "environment KJB_INGEST_BATCH_SIZE: must be between 1 and "
             "1000000, got 0"},
    {.name = "env_bad_duration",
     .text = BASE TOPIC,
     .env = {{"KJB_SCHEMA_REGISTRY_TIMEOUT", "5"}},
     .want = "environment KJB_SCHEMA_REGISTRY_TIMEOUT: invalid duration \"5\" " DURATION_HINT},
    {.name = "env_bad_enum",
     .text = BASE TOPIC,
     .env = {{"KJB_LOG_FORMAT", "xml"}},
     .want = "environment KJB_LOG_FORMAT: invalid value \"xml\" (expected "
             "text or json)"},
    {.name = "env_bad_url",
     .text = BASE TOPIC,
     .env = {{"KJB_SCHEMA_REGISTRY_URL", "ftp://registry"}},
     .want = "environment KJB_SCHEMA_REGISTRY_URL: expected an http:// or "
             "https:// URL, got \"ftp://registry\""},
    {.name = "env_file_error_first",
     .text = "kafka = { brokers = \"b\"; };\n"
             "postgres = { conninfo = \"x\"; pool_size = \"many\"; };\n" TOPIC,
     .env = {{"KJB_POSTGRES_POOL_SIZE", "3"}},
     .want = "t.cfg:2: postgres.pool_size: expected an integer, got a string"},

    /* Includes resolve next to the including file, not in the cwd. */
    {.name = "include",
     .text = BASE "@include \"inc.cfg\"\nlog = { level = \"debug\"; };\n",
     .inc_name = "inc.cfg",
     .inc_text = TOPIC,
     .check = check_include},
    {.name = "include_error_location",
     .text = BASE "@include \"part.cfg\"\n",
     .inc_name = "part.cfg",
     .inc_text = "# topics\n" TOPIC_JOB("kind = \"k\"; priority = 99999;"),
     .want = "part.cfg:2: topics[0].jobs[0].priority: must be between -32768 "
             "and 32767, got 99999"},
    /* Lines after an include are those of the including file. */
    {.name = "include_error_after",
     .text = BASE "@include \"part.cfg\" # topics\nlog = { level = \"loud\"; };\n",
     .inc_name = "part.cfg",
     .inc_text = "# topics\n\n" TOPIC,
     .want = "t.cfg:4: log.level: invalid value \"loud\" (expected debug, info, warn "
             "or error)"},
    {.name = "include_syntax_after",
     .text = BASE "@include \"part.cfg\"\nlog = { level = \"debug\"; }\n;;\n",
     .inc_name = "part.cfg",
     .inc_text = TOPIC "# no newline at the end",
     .want = "t.cfg:5: syntax error"},
    {.name = "include_duplicate_location",
     .text = BASE "@include \"part.cfg\"\nhandlers = ( { kind = \"k\"; type = \"log\"; },\n"
                  "  { kind = \"k\"; type = \"log\"; } );\n",
     .inc_name = "part.cfg",
     .inc_text = TOPIC,
     .want = "t.cfg:5: handlers[1].kind: duplicate handler for kind \"k\" (first defined "
             "at line 4)"},
    /* Only a directive at a line's start, outside strings and comments, is
     * one, as for libconfig. */
    {.name = "include_not_a_directive",
     .text = BASE TOPIC "/* a comment\n@include \"nope.cfg\"\n*/\n"
                        "log = { level = \"debug\"; format = \"a\n@include \\\"nope.cfg\\\"\";\n"
                        "};\n",
     .want = "t.cfg:7: log.format: invalid value \"a\n@include \"nope.cfg\"\" (expected "
             "text or json)"},

    /* Values that load. */
    {.name = "defaults", .text = BASE TOPIC, .check = check_defaults},
    {.name = "handler_defaults",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"http\"; url = \"https://hooks.example/k\"; "
                                "rate_limit = { rate = 2.5; }; breaker = { };"),
     .check = check_handler_defaults},
    {.name = "defaults_from_table",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\"; rate_limit = { rate = 1.0; }; "
                                "breaker = { };")
         SCHEDULE("name = \"n\"; kind = \"k\"; cron = \"@daily\";"),
     .check = check_defaults_table},
    {.name = "handler_burst_default",
     .text = BASE TOPIC "handlers = ( { kind = \"a\"; type = \"log\"; concurrency = 1024;\n"
                        "  rate_limit = { rate = 1e12; }; },\n"
                        "  { kind = \"b\"; type = \"log\"; rate_limit = { rate = 2.5; }; } );\n",
     .check = check_burst_default},
    {.name = "handler_without_limits",
     .text = BASE TOPIC HANDLER("kind = \"k\"; type = \"log\";"),
     .check = check_no_limits},
    {.name = "job_max_attempts",
     .text = BASE "topics = (\n"
                  "  { topic = \"o\"; schema = \"s\"; jobs = ( { kind = "
                  "\"a\"; }, { kind = \"b\"; }, { kind = \"c\"; "
                  "max_attempts = 2; } ); },\n"
                  "  { topic = \"p\"; schema = \"s\"; jobs = ( { kind = "
                  "\"a\"; } ); }\n);\n"
                  "handlers = ( { kind = \"a\"; type = \"log\"; retry = { "
                  "max_attempts = 7; }; },\n"
                  "  { kind = \"c\"; type = \"log\"; } );\n",
     .check = check_max_attempts},
    /* Consumer, producer and topic-level properties in one list; a value
     * may hold "=". */
    {.name = "properties_every_kind",
     .text = "kafka = { brokers = \"b:9092\"; properties = [ \"fetch.max.bytes=1048576\",\n"
             "  \"linger.ms=0.5\", \"auto.offset.reset=latest\", \"acks=all\", "
             "\"client.id=a=b\" ]; };\n"
             "postgres = { conninfo = \"dbname=kjb\"; };\n" TOPIC,
     .check = check_properties},
    {.name = "numbers",
     .text = "kafka = { brokers = \"b:9092\"; };\n"
             "postgres = { conninfo = \"dbname=kjb\"; pool_size = 8L; };\n"
             "ingest = { batch_size = 1000000L; };\n"
             "topics = ( { topic = \"orders\"; schema = \"o.avsc\"; jobs = ( "
             "{ kind = \"k\"; priority = 0x10; } ); } );\n"
             "handlers = ( { kind = \"k\"; type = \"log\"; rate_limit = { "
             "rate = 50; }; breaker = { failure_ratio = 1; }; } );\n",
     .check = check_numbers},
    {.name = "full",
     .text = "kafka = { brokers = \"b\"; properties = ( \"security.protocol=ssl\", "
             "\"ssl.key.password=\" ); };\n"
             "postgres = { conninfo = \"x\"; schema = \"jobs_2\"; pool_size = 8; "
             "};\n"
             "schema_registry = { url = \"https://registry:8081\"; timeout = "
             "\"1500ms\"; };\n"
             "schemas = { ids = ( { id = 0; file = \"a.avsc\"; },\n"
             "  { id = 7; file = \"b.avsc\"; } ); };\n"
             "ingest = { batch_size = 100; batch_timeout = \"0ms\"; };\n"
             "log = { level = \"error\"; format = \"json\"; };\n"
             "topics = (\n"
             "  { topic = \"in.v1\"; format = \"single-object\"; schema = "
             "\"x.avsc\"; dlq = \"dead.letters\";\n"
             "    jobs = ( { kind = \"k\"; queue = \"q1\"; priority = -32768; "
             "max_attempts = 3;\n"
             "               unique_key = \"a$$b-${x.y}-${_z}\"; ordering_key = \"c-${x.y}\";"
             " args = [ "
             "\"x.y\", \"_z\" ]; },\n"
             "             { kind = \"k2\"; priority = 32767; } ); },\n"
             "  { topic = \"raw_in\"; format = \"raw\"; schema = \"r.avsc\"; "
             "jobs = ( { kind = \"k\"; } ); }\n"
             ");\n"
             "handlers = (\n"
             "  { kind = \"k\"; type = \"exec\"; command = [ \"/bin/prog\", "
             "\"--flag\", \"\" ];\n"
             "    timeout = \"250ms\"; concurrency = 1; on_discard = \"hold\";\n"
             "    rate_limit = { rate = 50; burst = 1; scope = \"cluster\"; };\n"
             "    retry = { max_attempts = 5; base = \"10ms\"; max = \"2m\"; "
             "jitter = \"equal\"; };\n"
             "    breaker = { failure_ratio = 1.0; min_calls = 1; open_for = "
             "\"1d\"; }; },\n"
             "  { kind = \"k2\"; type = \"plugin\"; plugin = \"./libmy.so\"; "
             "retry = { jitter = \"none\"; }; },\n"
             "  { kind = \"other\"; type = \"log\"; }\n"
             ");\n",
     .check = check_full},

    /* Schedules. */
    {.name = "schedule",
     .text = BASE TOPIC
     "handlers = ( { kind = \"report\"; type = \"log\"; retry = { max_attempts = 3; }; } );\n"
     "schedules = (\n"
     "  { name = \"nightly\"; kind = \"report\"; cron = \"0 3 * * *\";\n"
     "    timezone = \"Europe/Paris\"; args = \"{\\\"scope\\\": \\\"all\\\"}\"; },\n"
     "  { name = \"every-15.min\"; kind = \"tick\"; queue = \"cron\"; priority = -1;\n"
     "    max_attempts = 7; cron = \"*/15 * * * mon-fri\"; misfire_grace = \"5m\"; }\n"
     ");\n",
     .check = check_schedules},
    {.name = "schedule_bad_cron",
     .text = BASE TOPIC
     "schedules = (\n  { name = \"n\"; kind = \"k\";\n    cron = \"0 24 * * *\"; } );\n",
     .want = "t.cfg:6: schedules[0].cron: field 2 (hour): 24 is out of range 0-23"},
    {.name = "schedule_cron_fields",
     .text = BASE TOPIC SCHEDULE("name = \"n\"; kind = \"k\"; cron = \"0 3 * *\";"),
     .want = "t.cfg:4: schedules[0].cron: expected 5 fields (minute hour day-of-month month "
             "day-of-week), got 4"},
    {.name = "schedule_missing_cron",
     .text = BASE TOPIC SCHEDULE("name = \"n\"; kind = \"k\";"),
     .want = "t.cfg:4: missing required key \"cron\" in schedules[0]"},
    {.name = "schedule_bad_zone",
     .text = BASE TOPIC SCHEDULE("name = \"n\"; kind = \"k\"; cron = \"@daily\"; "
                                 "timezone = \"Europe/Paris; DROP\";"),
     .want = "t.cfg:4: schedules[0].timezone: invalid time zone name \"Europe/Paris; DROP\" "
             "(expected a name such as \"Europe/Paris\" or \"UTC\")"},
    {.name = "schedule_args_not_object",
     .text = BASE TOPIC SCHEDULE("name = \"n\"; kind = \"k\"; cron = \"@daily\"; "
                                 "args = \"[1]\";"),
     .want = "t.cfg:4: schedules[0].args: expected a JSON object such as {\"scope\": \"all\"}"},
    {.name = "schedule_args_bad_json",
     .text = BASE TOPIC SCHEDULE("name = \"n\"; kind = \"k\"; cron = \"@daily\"; "
                                 "args = \"{\\\"a\\\": }\";"),
     .want = "t.cfg:4: schedules[0].args: invalid JSON at byte 7: unexpected token near '}'"},
    {.name = "schedule_duplicate",
     .text = BASE TOPIC "schedules = (\n  { name = \"n\"; kind = \"a\"; cron = \"@daily\"; },\n"
                        "  { name = \"n\"; kind = \"b\"; cron = \"@hourly\"; } );\n",
     .want = "t.cfg:6: schedules[1].name: duplicate schedule \"n\" (first defined at line 5)"},
    {.name = "schedule_bad_name",
     .text = BASE TOPIC SCHEDULE("name = \"a b\"; kind = \"k\"; cron = \"@daily\";"),
     .want = "t.cfg:4: schedules[0].name: invalid name \"a b\" (expected letters, digits, \".\", "
             "\"_\" and \"-\")"},
    {.name = "schedule_unknown_key",
     .text = BASE TOPIC SCHEDULE("name = \"n\"; kind = \"k\"; cron = \"@daily\"; tz = \"UTC\";"),
     .want = "t.cfg:4: unknown key \"tz\" in schedules[0]"},
};

#define NCASES (sizeof cases / sizeof cases[0])

/* ---- Running a case ----------------------------------------------------- */

static char tmp_root[] = "/tmp/kjb-test-config-XXXXXX";

static void write_file(const char *dir, const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
}

/* Removes every "<dir>/" from msg, so that expectations need not know the
 * temporary directory. */
static void strip_dir(char *msg, const char *dir) {
  char prefix[512];
  snprintf(prefix, sizeof prefix, "%s/", dir);
  size_t n = strlen(prefix);
  char *p;
  while ((p = strstr(msg, prefix)) != NULL)
    memmove(p, p + n, strlen(p + n) + 1);
}

static void run_case(void **state) {
  const cfg_case *tc = *state;
  char dir[256], path[512];
  snprintf(dir, sizeof dir, "%s/%s", tmp_root, tc->name);
  assert_int_equal(mkdir(dir, 0700), 0);
  write_file(dir, "t.cfg", tc->text);
  if (tc->inc_fifo) {
    snprintf(path, sizeof path, "%s/%s", dir, tc->inc_name);
    assert_int_equal(mkfifo(path, 0600), 0);
  } else if (tc->inc_name) {
    write_file(dir, tc->inc_name, tc->inc_text);
  }
  snprintf(path, sizeof path, "%s/t.cfg", dir);

  for (size_t i = 0; i < 8 && tc->env[i].name; i++)
    assert_int_equal(setenv(tc->env[i].name, tc->env[i].value, 1), 0);
  kjb_config cfg;
  kjb_err err = {0};
  int rc = kjb_config_load(path, &cfg, &err);
  for (size_t i = 0; i < 8 && tc->env[i].name; i++)
    unsetenv(tc->env[i].name);

  if (tc->want) {
    strip_dir(err.msg, dir);
    if (rc == 0 || strcmp(err.msg, tc->want) != 0) {
      print_error("case %s\n  want: %s\n  got:  %s (rc %d)\n", tc->name, tc->want,
                  rc ? err.msg : "(loaded)", rc);
      if (rc == 0)
        kjb_config_close(&cfg);
      fail();
    }
    assert_int_equal(rc, -KJB_ECONFIG);
    assert_int_equal(err.code, KJB_ECONFIG);
    /* A failed load leaves nothing behind. */
    static const kjb_config zero;
    assert_memory_equal(&cfg, &zero, sizeof cfg);
    return;
  }
  if (rc != 0) {
    strip_dir(err.msg, dir);
    print_error("case %s\n  want: (loaded)\n  got:  %s (rc %d)\n", tc->name, err.msg, rc);
    fail();
  }
  assert_string_equal(cfg.path, path);
  if (tc->check)
    tc->check(&cfg);
  kjb_config_close(&cfg);
}

/* ---- The shipped configs and the small API ------------------------------ */

static void source_path(char *buf, size_t size, const char *rel) {
  const char *src = getenv("KJB_SOURCE_DIR");
  snprintf(buf, size, "%s/%s", src && *src ? src : ".", rel);
}

static void test_example_cfg(void **state) {
  char path[1024];
  source_path(path, sizeof path, "config/example.cfg");
  kjb_config cfg;
  kjb_err err = {0};
  int rc = kjb_config_load(path, &cfg, &err);
  if (rc)
    fail_msg("%s", err.msg);
  EQ_STR(cfg.kafka.brokers, "127.0.0.1:9092");
  EQ_STR(cfg.kafka.group, "kjb");
  EQ_STR(cfg.postgres.conninfo, "postgresql:///kjb");
  EQ_STR(cfg.http.listen, "127.0.0.1:9464");
  assert_null(cfg.schema_registry.url);
  EQ_INT(cfg.schemas.nids, 2);
  EQ_INT(cfg.schemas.ids[0].id, 1);
  EQ_STR(cfg.schemas.ids[0].file, "order_created.avsc");
  EQ_INT(cfg.schemas.ids[1].id, 2);
  EQ_STR(cfg.schemas.ids[1].file, "order_created_v2.avsc");

  const kjb_topic_cfg *t = kjb_config_topic(&cfg, "orders");
  assert_non_null(t);
  EQ_INT(cfg.ntopics, 1);
  EQ_INT(t->format, KJB_FMT_CONFLUENT);
  EQ_STR(t->schema, "order_created.avsc");
  EQ_STR(t->dlq, "orders.dlq");
  EQ_INT(t->njobs, 2);
  EQ_STR(t->jobs[0].kind, "send_confirmation");
  EQ_STR(t->jobs[0].unique_key, "${order_id}");
  EQ_INT(t->jobs[0].nargs, 0);
  EQ_STR(t->jobs[1].kind, "fraud_check");
  EQ_STR(t->jobs[1].queue, "risk");
  EQ_INT(t->jobs[1].priority, 1);
  EQ_INT(t->jobs[1].nargs, 2);
  EQ_STR(t->jobs[1].args[0], "order_id");
  EQ_STR(t->jobs[1].args[1], "customer.email");

  const kjb_handler_cfg *h = kjb_config_handler(&cfg, "send_confirmation");
  assert_non_null(h);
  EQ_STR(h->type, "http");
  EQ_STR(h->url, "http://127.0.0.1:8080/hook");
  EQ_INT(h->timeout_us, 5000000);
  EQ_INT(h->concurrency, 8);
  EQ_INT(h->rate_limit.enabled, 1);
  EQ_NUM(h->rate_limit.rate, 50);
  EQ_INT(h->rate_limit.burst, 10);
  EQ_INT(h->rate_limit.scope, KJB_SCOPE_CLUSTER);
  EQ_INT(h->retry.max_attempts, 20);
  EQ_INT(h->retry.base_us, 1000000);
  EQ_INT(h->retry.max_us, 3600000000LL);
  EQ_INT(h->breaker.enabled, 1);
  EQ_NUM(h->breaker.failure_ratio, 0.5);
  EQ_INT(h->breaker.min_calls, 20);
  EQ_INT(h->breaker.open_for_us, 30000000);
  h = kjb_config_handler(&cfg, "fraud_check");
  assert_non_null(h);
  EQ_STR(h->type, "log");
  EQ_INT(cfg.nschedules, 1);
  EQ_STR(cfg.schedules[0].name, "nightly");
  EQ_STR(cfg.schedules[0].cron, "0 3 * * *");
  EQ_STR(cfg.schedules[0].timezone, "Europe/Paris");
  EQ_STR(cfg.schedules[0].args, "{\"scope\": \"all\"}");
  kjb_config_close(&cfg);
}

/* A line of example.cfg without its comment marks: "# # x" and "# x" are
 * both "x"; *comment tells whether it was one. */
static const char *strip_line(char *line, bool *comment) {
  line[strcspn(line, "\n")] = '\0';
  char *p = line + strspn(line, " \t");
  *comment = false;
  while (*p == '#') {
    *comment = true;
    p++;
    p += strspn(p, " \t");
  }
  return p;
}

/* "name = ..." at p: copies name and returns what follows " = ". */
static const char *key_of(const char *p, char *name, size_t size) {
  size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
  if (n == 0 || n >= size || strncmp(p + n, " = ", 3) != 0)
    return NULL;
  snprintf(name, size, "%.*s", (int)n, p);
  return p + n + 3;
}

/* Whether text says "Default <def>" or "Default \"<def>\"", def ending
 * at a character that cannot continue it. */
static bool documents(const char *text, const char *def) {
  char quoted[256], bare[256];
  snprintf(quoted, sizeof quoted, "Default \"%s\"", def);
  snprintf(bare, sizeof bare, "Default %s", def);
  if (strstr(text, quoted))
    return true;
  for (const char *p = text; (p = strstr(p, bare)); p++) {
    char next = p[strlen(bare)];
    if (!(next >= '0' && next <= '9') && !(next >= 'a' && next <= 'z') && next != '.')
      return true;
    if (next == '.' && !(p[strlen(bare) + 1] >= '0' && p[strlen(bare) + 1] <= '9'))
      return true;
  }
  return false;
}

/* config/example.cfg shows every key with the comment above it; each key
 * with a default in the table says it there, and the tests above check
 * each of those keys. */
static void test_example_documents_defaults(void **state) {
  char path[1024];
  source_path(path, sizeof path, "config/example.cfg");
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char stack[8][64], comment[4096] = "", line[1024];
  size_t depth = 0, found = 0;
  bool seen[NDEFAULTS] = {false};
  kjb_config dummy = {0};
  kjb_handler_cfg h = {0};
  kjb_topic_cfg t = {0};
  kjb_job_cfg j = {0};
  kjb_schedule_cfg sc = {0};
  dummy.schedules = &sc;
  t.jobs = &j;
  dummy.handlers = &h;
  dummy.topics = &t;
  dvalue d[NDEFAULTS];
  size_t nd = default_values(&dummy, d);
  while (fgets(line, sizeof line, f)) {
    bool is_comment;
    const char *p = strip_line(line, &is_comment);
    char name[64], key[256] = "";
    const char *rest = key_of(p, name, sizeof name);
    if (!rest) {
      if (*p == '}' || *p == ')') {
        assert_true(depth > 0);
        depth--;
      } else if (strcmp(p, "{") == 0) {
        assert_true(depth < 8);
        stack[depth++][0] = '\0';
      }
      if (is_comment && *p) {
        strncat(comment, " ", sizeof comment - strlen(comment) - 1);
        strncat(comment, p, sizeof comment - strlen(comment) - 1);
      } else if (!*p) {
        comment[0] = '\0';
      }
      continue;
    }
    for (size_t i = 0; i < depth; i++) {
      if (stack[i][0]) {
        strncat(key, stack[i], sizeof key - strlen(key) - 1);
        strncat(key, ".", sizeof key - strlen(key) - 1);
      }
    }
    strncat(key, name, sizeof key - strlen(key) - 1);
    if (strcmp(rest, "{") == 0 || strcmp(rest, "(") == 0) {
      assert_true(depth < 8);
      snprintf(stack[depth++], sizeof stack[0], "%s", name);
    } else if (depth > 0) {
      const char *def = kjb_config_default(key);
      if (def) {
        size_t i = 0;
        while (i < nd && strcmp(d[i].key, key) != 0)
          i++;
        if (i == nd)
          fail_msg("%s has the default \"%s\" but the tests do not check it", key, def);
        if (!seen[i] && !documents(comment, def))
          fail_msg("example.cfg: %s: the comment above does not say Default \"%s\": %s", key, def,
                   comment);
        found += !seen[i];
        seen[i] = true;
      }
    }
    comment[0] = '\0';
  }
  fclose(f);
  assert_int_equal(depth, 0);
  for (size_t i = 0; i < nd; i++)
    if (!seen[i])
      fail_msg("example.cfg does not show %s", d[i].key);
  assert_int_equal(found, nd);
}

static void test_dev_cfg(void **state) {
  char path[1024];
  source_path(path, sizeof path, "config/dev.cfg");
  kjb_config cfg;
  kjb_err err = {0};
  int rc = kjb_config_load(path, &cfg, &err);
  if (rc)
    fail_msg("%s", err.msg);
  EQ_STR(cfg.kafka.brokers, "embedded");
  assert_true(cfg.ntopics >= 1);
  kjb_config_close(&cfg);
}

static void test_io_errors(void **state) {
  kjb_config cfg;
  kjb_err err = {0};
  char path[512];
  snprintf(path, sizeof path, "%s/does-not-exist.cfg", tmp_root);
  assert_int_equal(kjb_config_load(path, &cfg, &err), -KJB_EIO);
  strip_dir(err.msg, tmp_root);
  EQ_STR(err.msg, "does-not-exist.cfg: No such file or directory");

  assert_int_equal(kjb_config_load(tmp_root, &cfg, &err), -KJB_EIO);
  char want[512];
  snprintf(want, sizeof want, "%s: Is a directory", tmp_root);
  EQ_STR(err.msg, want);
}

/* A file of n bytes: text, then a comment that fills it up (the last byte
 * a newline). */
static void write_padded(const char *path, const char *text, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  size_t len = strlen(text);
  assert_true(len + 2 <= n);
  fputs(text, f);
  fputc('#', f);
  for (size_t i = len + 1; i < n - 1; i++)
    fputc('x', f);
  fputc('\n', f);
  assert_int_equal(fclose(f), 0);
}

static void expect_error(const char *path, kjb_errcode code, const char *want) {
  kjb_config cfg;
  kjb_err err = {0};
  assert_int_equal(kjb_config_load(path, &cfg, &err), -(int)code);
  strip_dir(err.msg, tmp_root);
  assert_string_equal(err.msg, want);
  static const kjb_config zero;
  assert_memory_equal(&cfg, &zero, sizeof cfg);
}

/* What the config file may be: a regular file of at most 1 MiB, with its
 * includes; not a FIFO (which blocked for ever) nor a device (which was
 * read until memory ran out); no NUL byte, which would end libconfig's
 * text early. */
static void test_file_limits(void **state) {
  char path[512], inc[512];
  snprintf(path, sizeof path, "%s/limits.cfg", tmp_root);
  snprintf(inc, sizeof inc, "%s/pad.cfg", tmp_root);

  write_padded(path, BASE TOPIC, 1024 * 1024);
  kjb_config cfg;
  kjb_err err = {0};
  if (kjb_config_load(path, &cfg, &err) != 0)
    fail_msg("a config of exactly 1 MiB: %s", err.msg);
  kjb_config_close(&cfg);
  write_padded(path, BASE TOPIC, 1024 * 1024 + 1);
  expect_error(path, KJB_EIO, "limits.cfg: larger than 1 MiB");

  /* The limit holds for the text with its includes. */
  static const char with_inc[] = BASE TOPIC "@include \"pad.cfg\"\n";
  const size_t main_len = sizeof with_inc + 16;
  write_padded(path, with_inc, main_len);
  write_padded(inc, "", 1024 * 1024 - main_len);
  if (kjb_config_load(path, &cfg, &err) != 0)
    fail_msg("a config of exactly 1 MiB with its include: %s", err.msg);
  kjb_config_close(&cfg);
  write_padded(inc, "", 1024 * 1024 - main_len + 1);
  expect_error(path, KJB_ECONFIG,
               "limits.cfg:4: @include \"pad.cfg\": the configuration "
               "with its includes is larger than 1 MiB");
  unlink(inc);

  /* One string as long as the file allows: libconfig used to take
   * quadratic time over it; now it is parsed, then refused by length. */
  static const char head[] = "kafka = { brokers = \"b\"; group = \"";
  static const char tail[] = "\"; };\npostgres = { conninfo = \"x\"; };\n" TOPIC;
  const size_t group_len = 1024 * 1024 - (sizeof head - 1) - (sizeof tail - 1);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(head, f);
  for (size_t i = 0; i < group_len; i++)
    fputc('g', f);
  fputs(tail, f);
  assert_int_equal(fclose(f), 0);
  char want[128];
  snprintf(want, sizeof want, "limits.cfg:1: kafka.group: must be at most 255 bytes, got %zu",
           group_len);
  expect_error(path, KJB_ECONFIG, want);

  f = fopen(path, "wb");
  assert_non_null(f);
  static const char nul[] = BASE TOPIC "# a NUL: \0 and then\nx = 1;\n";
  assert_int_equal(fwrite(nul, 1, sizeof nul - 1, f), sizeof nul - 1);
  assert_int_equal(fclose(f), 0);
  expect_error(path, KJB_ECONFIG, "limits.cfg:4: syntax error: NUL byte");
  unlink(path);

  assert_int_equal(mkfifo(path, 0600), 0);
  expect_error(path, KJB_EIO, "limits.cfg: not a regular file");
  unlink(path);
  assert_int_equal(symlink("/dev/zero", path), 0);
  expect_error(path, KJB_EIO, "limits.cfg: not a regular file");
  unlink(path);
}

static void test_close(void **state) {
  kjb_config cfg;
  memset(&cfg, 0, sizeof cfg);
  kjb_config_close(&cfg);
  kjb_config_close(&cfg);
  kjb_config_close(NULL);

  char path[1024];
  kjb_err err = {0};
  source_path(path, sizeof path, "config/example.cfg");
  assert_int_equal(kjb_config_load(path, &cfg, &err), 0);
  kjb_config_close(&cfg);
  assert_null(cfg.topics);
  kjb_config_close(&cfg);
}

static void test_default_path(void **state) {
  unsetenv("KJB_CONFIG");
  EQ_STR(kjb_config_default_path(NULL), "config/kjb.cfg");
  EQ_STR(kjb_config_default_path("my.cfg"), "my.cfg");
  setenv("KJB_CONFIG", "/etc/kjb/kjb.cfg", 1);
  EQ_STR(kjb_config_default_path(NULL), "/etc/kjb/kjb.cfg");
  EQ_STR(kjb_config_default_path("my.cfg"), "my.cfg");
  setenv("KJB_CONFIG", "", 1);
  EQ_STR(kjb_config_default_path(NULL), "config/kjb.cfg");
  unsetenv("KJB_CONFIG");
}

static void test_lookups(void **state) {
  char path[1024];
  source_path(path, sizeof path, "config/example.cfg");
  kjb_config cfg;
  kjb_err err = {0};
  assert_int_equal(kjb_config_load(path, &cfg, &err), 0);
  assert_null(kjb_config_topic(&cfg, "orders.dlq"));
  assert_null(kjb_config_handler(&cfg, "nope"));
  assert_ptr_equal(kjb_config_topic(&cfg, "orders"), &cfg.topics[0]);
  assert_ptr_equal(kjb_config_handler(&cfg, "fraud_check"), &cfg.handlers[1]);
  kjb_config_close(&cfg);

  EQ_STR(kjb_format_name(KJB_FMT_CONFLUENT), "confluent");
  EQ_STR(kjb_format_name(KJB_FMT_RAW), "raw");
  EQ_STR(kjb_format_name(KJB_FMT_SINGLE_OBJECT), "single-object");
}

/* ---- Setup -------------------------------------------------------------- */

/* The environment of a CI job may carry KJB_* settings of its own. */
static void clear_kjb_env(void) {
  char names[64][128];
  size_t n = 0;
  for (char **e = environ; *e && n < 64; e++) {
    const char *eq = strchr(*e, '=');
    if (strncmp(*e, "KJB_", 4) != 0 || !eq || (size_t)(eq - *e) >= sizeof names[0])
      continue;
    snprintf(names[n], sizeof names[0], "%.*s", (int)(eq - *e), *e);
    if (strcmp(names[n], "KJB_SOURCE_DIR") != 0)
      n++;
  }
  for (size_t i = 0; i < n; i++)
    unsetenv(names[i]);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

static int setup(void **state) {
  clear_kjb_env();
  return mkdtemp(tmp_root) ? 0 : -1;
}

static int teardown(void **state) { return nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

int main(void) {
  static const struct CMUnitTest fixed[] = {
      cmocka_unit_test(test_example_cfg),
      cmocka_unit_test(test_dev_cfg),
      cmocka_unit_test(test_example_documents_defaults),
      cmocka_unit_test(test_io_errors),
      cmocka_unit_test(test_file_limits),
      cmocka_unit_test(test_close),
      cmocka_unit_test(test_default_path),
      cmocka_unit_test(test_lookups),
  };
  static struct CMUnitTest tests[NCASES + sizeof fixed / sizeof fixed[0]];
  for (size_t i = 0; i < NCASES; i++) {
    tests[i] = (struct CMUnitTest){
        .name = cases[i].name, .test_func = run_case, .initial_state = (void *)&cases[i]};
  }
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    tests[NCASES + i] = fixed[i];
  return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
