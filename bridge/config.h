/* The configuration file (libconfig): sections kafka, postgres, http,
 * schema_registry, schemas, ingest, executor, log, topics, handlers and
 * schedules, with
 * KJB_<SECTION>_<KEY> environment overrides. Each key's default is in
 * config.c's field tables (kjb_config_default). Loading checks syntax, key
 * names, types and values, kafka.properties included (as librdkafka
 * takes them, without a broker); schema-dependent checks live in
 * catalog.c. */
#ifndef KJB_CONFIG_H
#define KJB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum { KJB_FMT_CONFLUENT, KJB_FMT_RAW, KJB_FMT_SINGLE_OBJECT } kjb_format;
typedef enum { KJB_SCOPE_LOCAL, KJB_SCOPE_CLUSTER } kjb_rate_scope;
typedef enum { KJB_JITTER_FULL, KJB_JITTER_EQUAL, KJB_JITTER_NONE } kjb_jitter;
/* Whether a discarded job releases the later jobs of its ordering key. */
typedef enum { KJB_ON_DISCARD_CONTINUE, KJB_ON_DISCARD_HOLD } kjb_on_discard;

typedef struct {
  char *kind;
  char *queue;
  int priority;     /* smaller runs first */
  int max_attempts; /* by default the handler's retry.max_attempts */
  char *unique_key; /* template with ${dotted.path}; NULL when absent */
  /* Template like unique_key: jobs of the kind with the same key run one
   * at a time, in source order. NULL when absent. */
  char *ordering_key;
  char **args; /* dotted paths; NULL/0 means the whole record */
  size_t nargs;
  int line;
} kjb_job_cfg;

typedef struct {
  char *topic;
  kjb_format format;
  char *schema; /* reader schema file, relative to schemas.dir */
  char *dlq;    /* default "<topic>.dlq" */
  kjb_job_cfg *jobs;
  size_t njobs;
  int line;
} kjb_topic_cfg;

/* A handler's retry group. */
typedef struct {
  int max_attempts;
  int64_t base_us;
  int64_t max_us;
  kjb_jitter jitter;
} kjb_retry_cfg;

typedef struct {
  char *kind;
  char *type;     /* "http" | "exec" | "log" | "plugin" */
  char *url;      /* http */
  char **command; /* exec: argv, no shell */
  size_t ncommand;
  char *plugin; /* plugin: path to the shared object */
  int64_t timeout_us;
  int concurrency;
  kjb_on_discard on_discard; /* what a discarded job does to its key */
  struct {
    int enabled;
    double rate; /* tokens per second */
    int burst;
    kjb_rate_scope scope;
  } rate_limit;
  kjb_retry_cfg retry;
  struct {
    int enabled;
    double failure_ratio;
    int min_calls;
    int64_t open_for_us;
  } breaker;
  int line;
} kjb_handler_cfg;

typedef struct {
  int id;
  char *file;
  int line;
} kjb_schema_id_cfg;

/* A named admin API token: its value is read from the environment
 * variable env when the API starts; name is the actor its actions are
 * recorded under in kjb.audit. */
typedef struct {
  char *name;
  char *env;
  int line;
} kjb_admin_token_cfg;

/* At most this many in http.admin_tokens: each is compared with every
 * admin request's token. */
#define KJB_CONFIG_ADMIN_TOKENS_MAX 64

/* A periodic job (schedule.c inserts one per tick of cron in timezone). */
typedef struct {
  char *name; /* unique; names the schedule in kjb.schedules and metrics */
  char *kind;
  char *queue;
  int priority;
  int max_attempts;         /* by default the handler's retry.max_attempts */
  char *cron;               /* five fields, checked by kjb_cron_parse */
  char *timezone;           /* a PostgreSQL time zone name, checked by `kjb run` */
  char *args;               /* a JSON object */
  int64_t misfire_grace_us; /* a tick found later than this is skipped; 0: never */
  int line;
} kjb_schedule_cfg;

typedef struct {
  char *path; /* the file this came from */
  struct {
    char *brokers; /* required; "embedded" for an in-process cluster */
    char *group;
    char **properties; /* "key=value", each to the clients it is for (kafka.h) */
    size_t nproperties;
    /* Not a key: set by `kjb run` when brokers was "embedded" and now names
     * the in-process (mock) cluster, which has no real transactions. */
    int embedded;
  } kafka;
  struct {
    char *conninfo; /* required */
    char *schema;
    int pool_size;
  } postgres;
  struct {
    char *listen;
    char *admin_token_env; /* the token named "admin" */
    kjb_admin_token_cfg *admin_tokens;
    size_t nadmin_tokens;
    char *tls_cert; /* PEM files: HTTPS when both are set; NULL for plain HTTP */
    char *tls_key;
  } http;
  struct {
    char *url; /* NULL when not configured */
    int64_t timeout_us;
  } schema_registry;
  struct {
    char *dir; /* relative to the cwd */
    kjb_schema_id_cfg *ids;
    size_t nids;
  } schemas;
  struct {
    int batch_size; /* records */
    int64_t batch_timeout_us;
  } ingest;
  struct {
    int64_t poll_interval_us;    /* polling when no NOTIFY came */
    int claim_batch;             /* jobs per claim at most */
    int64_t heartbeat_us;        /* node heartbeat period */
    int64_t lease_us;            /* a node silent this long is dead */
    int64_t shutdown_timeout_us; /* wait for running jobs */
    int64_t retention_us;        /* 0 keeps finished jobs */
    int64_t prune_interval_us;
  } executor;
  struct {
    char *level;  /* debug | info | warn | error */
    char *format; /* text | json */
  } log;
  struct {
    char *otlp_endpoint; /* OTLP/HTTP base URL; NULL: no spans are exported */
    char *service_name;
    double sample_ratio; /* of records without a sampled trace context */
  } tracing;
  kjb_topic_cfg *topics;
  size_t ntopics;
  kjb_handler_cfg *handlers;
  size_t nhandlers;
  kjb_schedule_cfg *schedules;
  size_t nschedules;
} kjb_config;

/* Loads and validates path into cfg (zeroed first): path and the files it
 * @includes are read as cfgsrc.h says (regular files, 1 MiB in all), and
 * every value is checked against its key's type and bounds. Returns 0, or
 * a negative code with err->msg as "<file>:<line>: <what is wrong>"
 * (KJB_ECONFIG; KJB_EIO when path cannot be read, as "<path>: <why>").
 * On failure cfg holds nothing that needs freeing. */
int kjb_config_load(const char *path, kjb_config *cfg, kjb_err *err);
void kjb_config_close(kjb_config *cfg);

/* The config file to use: explicit path, else $KJB_CONFIG, else
 * "config/kjb.cfg". */
const char *kjb_config_default_path(const char *explicit_path);

const kjb_topic_cfg *kjb_config_topic(const kjb_config *cfg, const char *topic);
const kjb_handler_cfg *kjb_config_handler(const kjb_config *cfg, const char *kind);
/* The schedule called name, or NULL. Points into cfg. */
const kjb_schedule_cfg *kjb_config_schedule(const kjb_config *cfg, const char *name);
const char *kjb_format_name(kjb_format f);

/* The default of a key as a config file would spell it ("30s", "kjb",
 * "confluent"), from the table that loading applies: key is its dotted
 * path without list indexes ("executor.lease", "handlers.retry.max",
 * "topics.jobs.queue"). NULL for an unknown key and for one without a
 * default of its own (required, optional, or computed from other keys).
 * The result is static. */
const char *kjb_config_default(const char *key);

/* Every job kind the configuration names, each once: the handlers' kinds
 * in order, then those only mappings and schedules produce. Writes up to cap of them to
 * out and returns how many there are. */
size_t kjb_config_kinds(const kjb_config *cfg, const char **out, size_t cap);

#endif
