/* kjb: the command line. Each subcommand parses its own options, loads the
 * configuration and calls into the library. Exit codes: 0 success, 1
 * operational failure, 2 usage or configuration error. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <jansson.h>
#include <libconfig.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "audit.h"
#include "dlq.h"
#include "dlqedit.h"
#include "dlqfilter.h"
#include "dlqindex.h"
#include "executor.h"
#include "health.h"
#include "api.h"
#include "http.h"
#include "ingest.h"
#include "jobs.h"
#include "kafka.h"
#include "log.h"
#include "otlp.h"
#include "pause.h"
#include "produce.h"
#include "replay.h"
#include "schedule.h"
#include "store.h"
#include "util.h"

enum { EXIT_OPERATIONAL = 1, EXIT_USAGE = 2 };

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) { stop_requested = 1; }

static void install_signals(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Writes "kjb: <cmd>: <msg>" to stderr, with secrets masked as in the
 * log (errors may quote a conninfo or a URL). */
static void say(const char *cmd, const char *msg) {
  char *masked = kjb_log_redact(msg);
  fprintf(stderr, "kjb: %s: %s\n", cmd, masked ? masked : msg);
  free(masked);
}

/* "kjb: <cmd>: <why>"; returns the exit code that fits the error: 2 when
 * the configuration, a schema or the command line is wrong, else 1. */
static int fail(const char *cmd, const kjb_err *err) {
  say(cmd, err->msg);
  switch (err->code) {
  case KJB_ECONFIG:
  case KJB_EUSAGE:
  case KJB_ESCHEMA: return EXIT_USAGE;
  default: return EXIT_OPERATIONAL;
  }
}

/* say() with a printf format. */
static void vsay(const char *cmd, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void vsay(const char *cmd, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  say(cmd, msg);
}

/* One line "kjb: <cmd>: <why>" for a wrong command line; returns 2. */
static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsay(cmd, fmt, ap);
  va_end(ap);
  return EXIT_USAGE;
}

/* After getopt_long returned '?' (an unknown option, or a value given to
 * one that takes none) or ':' (a value missing): says which, in one line,
 * instead of getopt's own messages (opterr is 0), and returns 2. Option
 * strings start with ':' so that a missing value is told apart. */
static int option_error(const char *cmd, int c, char **argv) {
  const char *arg = argv[optind - 1];
  char name[64];
  bool is_long = strncmp(arg, "--", 2) == 0;
  if (is_long)
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
  else
    snprintf(name, sizeof name, "-%c", optopt);
  if (c == ':')
    return usage_error(cmd, "option \"%s\" needs a value", name);
  if (is_long && optopt && strchr(arg, '='))
    return usage_error(cmd, "option \"%s\" takes no value", name);
  return usage_error(cmd, "unknown option \"%s\"", name);
}

/* A whole integer option value in [min, max] into *out, or a usage error
 * naming the option (returns 2). */
static int int_option(const char *cmd, const char *opt, const char *arg, int64_t min, int64_t max,
                      int64_t *out) {
  if (kjb_parse_i64(arg, min, max, out) == 0)
    return 0;
  return usage_error(cmd, "bad %s \"%s\" (expected an integer from %" PRId64 " to %" PRId64 ")",
                     opt, arg, min, max);
}

typedef struct {
  const char *config_path;
  const char *log_format;
  const char *log_level;
} common_opts;

/* Loads config and sets up logging; returns 0 or an exit code. */
static int load(const char *cmd, const common_opts *o, kjb_config *cfg) {
  kjb_err err;
  if (kjb_config_load(kjb_config_default_path(o->config_path), cfg, &err) < 0) {
    /* Whatever went wrong (syntax, a key, an unreadable file), the
     * configuration is what the operator has to fix. */
    say(cmd, err.msg);
    return EXIT_USAGE;
  }
  const char *level = o->log_level ? o->log_level : cfg->log.level;
  const char *format = o->log_format ? o->log_format : cfg->log.format;
  kjb_log_level lvl;
  int bad_level = kjb_log_level_parse(level, &lvl) < 0;
  if (bad_level || (strcmp(format, "text") != 0 && strcmp(format, "json") != 0)) {
    /* Reported before the configuration (which may hold the value) goes. */
    int rc = usage_error(cmd, "bad log %s \"%s\"", bad_level ? "level" : "format",
                         bad_level ? level : format);
    kjb_config_close(cfg);
    return rc;
  }
  kjb_log_setup(lvl, strcmp(format, "json") == 0);
  /* The admin tokens never show in any command's output. */
  if (cfg->http.admin_token_env)
    kjb_log_secret(getenv(cfg->http.admin_token_env));
  for (size_t i = 0; i < cfg->http.nadmin_tokens; i++)
    kjb_log_secret(getenv(cfg->http.admin_tokens[i].env));
  return 0;
}

enum { OPT_LOG_FORMAT = 1000, OPT_LOG_LEVEL, OPT_SCHEMA_ID, OPT_ROLE };

#define COMMON_LONG_OPTS                                                      \
  {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, \
      {"log-format", required_argument, NULL, OPT_LOG_FORMAT}, {              \
    "log-level", required_argument, NULL, OPT_LOG_LEVEL                       \
  }

static const char COMMON_HELP[] =
    "  -c, --config FILE     configuration file (default $KJB_CONFIG, else config/kjb.cfg)\n"
    "      --log-format FMT  text or json (default: log.format)\n"
    "      --log-level LVL   debug, info, warn or error (default: log.level)\n"
    "  -h, --help            show this help\n";

/* Handles the options every command shares. Returns -1 when handled,
 * 0 when c is not a common option, or an exit code (help: 0 via *done). */
static int common_opt(int c, common_opts *o) {
  switch (c) {
  case 'c': o->config_path = optarg; return -1;
  case OPT_LOG_FORMAT: o->log_format = optarg; return -1;
  case OPT_LOG_LEVEL: o->log_level = optarg; return -1;
  default: return 0;
  }
}

/* ---- run ------------------------------------------------------------ */

typedef struct {
  kjb_executor *ex;
  int rc;
  kjb_err err;
} executor_thread_arg;

static void *executor_main(void *arg) {
  executor_thread_arg *ta = arg;
  ta->rc = kjb_executor_run(ta->ex, &stop_requested, &ta->err);
  return NULL;
}

/* The consumer until a signal; returns an exit code. */
static int run_consumer(const kjb_config *cfg, kjb_catalog *cat, kjb_health_poller *hp) {
  kjb_err err;
  int rc = 0;
  kjb_ingest *ing = kjb_ingest_new(cfg, cat, &err);
  if (!ing) {
    rc = fail("run", &err);
  } else {
    kjb_info("kjb %s consuming %zu topic(s) in group \"%s\"", KJB_VERSION, cfg->ntopics,
             cfg->kafka.group);
    kjb_health_attach(hp, ing);
    if (kjb_ingest_run(ing, &stop_requested, &err) < 0)
      rc = fail("run", &err);
    kjb_health_attach(hp, NULL);
    kjb_ingest_stats st;
    kjb_ingest_get_stats(ing, &st);
    kjb_info("stopped: %llu records, %llu jobs inserted, %llu dead-lettered in %llu "
             "batches; seconds polling %.1f, decoding %.1f, storing %.1f, dead letters "
             "%.1f, committing %.1f",
             (unsigned long long)st.records, (unsigned long long)st.jobs_inserted,
             (unsigned long long)st.dead_lettered, (unsigned long long)st.batches, st.poll_us / 1e6,
             st.process_us / 1e6, st.store_us / 1e6, st.settle_us / 1e6, st.commit_us / 1e6);
    kjb_ingest_free(ing);
  }
  return rc;
}

/* kafka.brokers = "embedded": starts the in-process cluster and points
 * every client of this process at it. */
static int start_embedded(kjb_config *cfg, kjb_embedded **out, kjb_err *err) {
  kjb_embedded *e = kjb_embedded_start(cfg, err);
  if (!e)
    return -1;
  char *addr = kjb_xstrdup(kjb_embedded_bootstraps(e));
  free(cfg->kafka.brokers);
  cfg->kafka.brokers = addr;
  cfg->kafka.embedded = 1;
  kjb_warn("kafka: embedded development cluster on %s: records live in this process's memory "
           "and are gone when it exits; not for production",
           addr);
  *out = e;
  return 0;
}

static int cmd_run(int argc, char **argv) {
  static const struct option opts[] = {
      COMMON_LONG_OPTS, {"role", required_argument, NULL, OPT_ROLE}, {0}};
  common_opts o = {0};
  const char *role = "all";
  int c;
  while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    if (c == OPT_ROLE) {
      role = optarg;
    } else if (c == 'h') {
      printf("usage: kjb run [--role all|consumer|executor] [options]\n\n"
             "Runs the service: consumers turn records into jobs, executors run them\n"
             "with the configured handlers (role all runs executors when handlers exist).\n"
             "SIGTERM or SIGINT drains gracefully: the consumer commits its batch and\n"
             "leaves the group; executors stop claiming, wait for running jobs up to\n"
             "executor.shutdown_timeout and put unfinished ones back.\n\n"
             "      --role ROLE       all, consumer or executor (default all)\n%s",
             COMMON_HELP);
      return 0;
    } else {
      return option_error("run", c, argv);
    }
  }
  if (strcmp(role, "all") != 0 && strcmp(role, "consumer") != 0 && strcmp(role, "executor") != 0)
    return usage_error("run", "unknown role \"%s\" (expected all, consumer or executor)", role);
  kjb_config cfg;
  int rc = load("run", &o, &cfg);
  if (rc)
    return rc;
  int consume = strcmp(role, "executor") != 0;
  /* "all" runs executors when there are handlers to run jobs with. */
  int execute =
      strcmp(role, "consumer") != 0 && (cfg.nhandlers > 0 || strcmp(role, "executor") == 0);
  if (strcmp(role, "all") == 0 && !execute)
    kjb_info("no handlers configured: running the consumer only");
  install_signals();
  kjb_err err;
  /* The probes answer (503) while everything else starts. */
  kjb_http *http = NULL;
  if (cfg.http.listen && cfg.http.listen[0]) {
    kjb_http_tls tls = {cfg.http.tls_cert, cfg.http.tls_key};
    http = kjb_http_new(cfg.http.listen, cfg.http.tls_cert ? &tls : NULL, &err);
    if (!http) {
      rc = fail("run", &err);
      kjb_config_close(&cfg);
      return rc;
    }
  }
  /* Schemas and handlers first: a configuration error must not wait for
   * migrations. */
  kjb_catalog *cat = NULL;
  kjb_executor *ex = NULL;
  kjb_embedded *embedded = NULL;
  if (consume && !(cat = kjb_catalog_new(&cfg, &err)))
    rc = -1;
  else if (execute &&
           !(ex = kjb_executor_new(&cfg, consume ? "consumer,executor" : "executor", &err)))
    rc = -1;
  else if (strcmp(cfg.kafka.brokers, "embedded") == 0 && start_embedded(&cfg, &embedded, &err) < 0)
    rc = -1;
  else
    rc = kjb_health_wait_for_database(&cfg, http, consume, execute, &stop_requested);
  /* This node's name in kjb.nodes, the API and kjb.schedules. */
  char node[160];
  if (ex)
    snprintf(node, sizeof node, "%s", kjb_executor_node(ex));
  else {
    char host[96];
    if (gethostname(host, sizeof host) != 0)
      snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(node, sizeof node, "%s-%d", host, (int)getpid());
  }
  /* Every role runs the schedules: a tick is inserted while any instance
   * runs. */
  kjb_scheduler *sched = rc == 0 ? kjb_scheduler_new(&cfg, node) : NULL;
  /* Before the executor registers the node: a time zone PostgreSQL does
   * not know is a configuration error. */
  if (sched && kjb_scheduler_start(sched, &err) < 0)
    rc = -1;
  if (rc == 0 && ex && kjb_executor_start(ex, &err) < 0)
    rc = -1;
  if (rc == 0 && kjb_otlp_start(&cfg, &err) < 0)
    rc = -1;
  if (rc != 0) {
    rc = rc < 0 ? fail("run", &err) : 0;
    kjb_scheduler_free(sched);
    kjb_executor_free(ex);
    kjb_catalog_free(cat);
    kjb_http_free(http);
    kjb_embedded_stop(embedded);
    kjb_config_close(&cfg);
    return rc;
  }
  kjb_api *api = NULL;
  kjb_health_poller *hp = NULL;
  if (http) {
    api = kjb_api_new(&cfg, node, consume ? (ex ? "consumer,executor" : "consumer") : "executor",
                      ex, &err);
    if (!api) {
      rc = fail("run", &err);
      goto out;
    }
    kjb_http_set_api(http, api);
    /* Logged only now: a configuration error above stays the only output. */
    kjb_info("http: serving the dashboard, /api, /metrics and probes on %s://%s (port %d)%s",
             cfg.http.tls_cert ? "https" : "http", cfg.http.listen, kjb_http_port(http),
             kjb_api_admin_enabled(api) ? "; admin actions enabled" : "");
    if (!(hp = kjb_health_start(http, &cfg, ex, consume))) {
      fprintf(stderr, "kjb: run: could not start the health thread\n");
      rc = EXIT_OPERATIONAL;
      goto out;
    }
  }
  if (!consume) {
    if (kjb_executor_run(ex, &stop_requested, &err) < 0)
      rc = fail("run", &err);
  } else {
    pthread_t ex_thread;
    executor_thread_arg ta = {ex, 0, {0}};
    if (ex && pthread_create(&ex_thread, NULL, executor_main, &ta) != 0) {
      fprintf(stderr, "kjb: run: could not start the executor thread\n");
      rc = EXIT_OPERATIONAL;
    } else {
      rc = run_consumer(&cfg, cat, hp);
      if (ex) {
        /* The consumer may have stopped on its own (an error): the
         * executor stops with it. */
        stop_requested = 1;
        pthread_join(ex_thread, NULL);
        if (ta.rc < 0 && rc == 0)
          rc = fail("run", &ta.err);
      }
    }
  }
out:
  kjb_scheduler_free(sched);
  /* The health thread reads the executor: it stops first. */
  kjb_health_stop(hp);
  /* Requests in progress use the api, and the api the executor. */
  kjb_http_free(http);
  kjb_api_free(api);
  kjb_executor_free(ex);
  kjb_catalog_free(cat);
  /* After the consumer and the executor: their last spans go out. */
  kjb_otlp_stop();
  /* Last: every client of the embedded cluster is gone by now. */
  kjb_embedded_stop(embedded);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- migrate -------------------------------------------------------- */

static int cmd_migrate(int argc, char **argv) {
  static const struct option opts[] = {COMMON_LONG_OPTS, {"status", no_argument, NULL, 's'}, {0}};
  common_opts o = {0};
  int status = 0, c;
  while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    if (c == 's') {
      status = 1;
    } else if (c == 'h') {
      printf("usage: kjb migrate [--status] [options]\n\n"
             "Creates or upgrades the database schema. Idempotent, and safe to run\n"
             "from several nodes at once.\n\n"
             "      --status          list applied and pending migrations; exit 1 if any "
             "is pending\n%s",
             COMMON_HELP);
      return 0;
    } else {
      return option_error("migrate", c, argv);
    }
  }
  kjb_config cfg;
  int rc = load("migrate", &o, &cfg);
  if (rc)
    return rc;
  kjb_err err;
  kjb_store *s = kjb_store_connect(cfg.postgres.conninfo, cfg.postgres.schema, &err);
  if (!s) {
    rc = fail("migrate", &err);
  } else if (status) {
    int pending;
    if (kjb_store_migrate_status(s, stdout, &pending, &err) < 0)
      rc = fail("migrate", &err);
    else
      rc = pending ? EXIT_OPERATIONAL : 0;
  } else {
    int applied;
    if (kjb_store_migrate(s, &applied, &err) < 0)
      rc = fail("migrate", &err);
    else
      printf("applied %d migration%s; schema \"%s\" is current\n", applied, applied == 1 ? "" : "s",
             cfg.postgres.schema);
  }
  kjb_store_free(s);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- check-config --------------------------------------------------- */

static int cmd_check_config(int argc, char **argv) {
  static const struct option opts[] = {COMMON_LONG_OPTS, {0}};
  common_opts o = {0};
  int c;
  while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    if (c == 'h') {
      printf("usage: kjb check-config [options]\n\n"
             "Validates the configuration and every schema it refers to, then prints\n"
             "the resolved topic -> job mapping and the schedules with their next tick.\n\n%s",
             COMMON_HELP);
      return 0;
    }
    return option_error("check-config", c, argv);
  }
  kjb_config cfg;
  int rc = load("check-config", &o, &cfg);
  if (rc)
    return rc;
  kjb_err err;
  kjb_catalog *cat = kjb_catalog_new(&cfg, &err);
  if (!cat) {
    rc = fail("check-config", &err);
  } else {
    printf("%s: ok\n", cfg.path);
    kjb_catalog_print(cat, stdout);
    kjb_schedule_describe(&cfg, stdout);
  }
  kjb_catalog_free(cat);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- produce -------------------------------------------------------- */

static int cmd_produce(int argc, char **argv) {
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"topic", required_argument, NULL, 't'},
                                       {"schema-id", required_argument, NULL, OPT_SCHEMA_ID},
                                       {"key", required_argument, NULL, 'k'},
                                       {0}};
  common_opts o = {0};
  const char *topic = NULL, *key_path = NULL;
  int schema_id = -1, c;
  while ((c = getopt_long(argc, argv, ":c:ht:k:", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    switch (c) {
    case 't': topic = optarg; break;
    case 'k': key_path = optarg; break;
    case OPT_SCHEMA_ID: {
      int64_t v;
      if (int_option("produce", "--schema-id", optarg, 0, INT32_MAX, &v))
        return EXIT_USAGE;
      schema_id = (int)v;
      break;
    }
    case 'h':
      printf("usage: kjb produce --topic T [--schema-id N] [--key FIELD] [options] < "
             "events.jsonl\n\n"
             "Encodes JSON lines with the topic's reader schema and framing and produces\n"
             "them. Bad lines are reported with their line number and skipped; the exit\n"
             "code is 1 if any line was bad or undelivered. Shows its progress on\n"
             "stderr (with a total when standard input is a regular file).\n\n"
             "  -t, --topic T         a topic from the configuration\n"
             "      --schema-id N     schema id for the confluent header (default: the\n"
             "                        reader schema's id in schemas.ids)\n"
             "  -k, --key FIELD       use this top-level field's value as the record key\n%s",
             COMMON_HELP);
      return 0;
    default: return option_error("produce", c, argv);
    }
  }
  if (!topic)
    return usage_error("produce", "--topic is required");
  kjb_config cfg;
  int rc = load("produce", &o, &cfg);
  if (rc)
    return rc;
  kjb_err err;
  /* No progress line while someone types the lines in. */
  kjb_produce_opts po = {.topic = topic,
                         .schema_id = schema_id,
                         .key_path = key_path,
                         .in = stdin,
                         .errs = stderr,
                         .prefix = "kjb: produce: ",
                         .progress = isatty(STDIN_FILENO) ? NULL : stderr};
  kjb_produce_stats st;
  if (kjb_produce_lines(&cfg, &po, &stop_requested, &st, &err) < 0) {
    rc = fail("produce", &err);
  } else {
    fprintf(stderr,
            "kjb: produce: %zu record%s produced to \"%s\", %zu bad line%s, %zu undelivered\n",
            st.produced, st.produced == 1 ? "" : "s", topic, st.bad, st.bad == 1 ? "" : "s",
            st.undelivered);
    rc = st.bad || st.undelivered ? EXIT_OPERATIONAL : 0;
  }
  kjb_config_close(&cfg);
  return rc;
}

/* ---- dead-letter filters ------------------------------------------- */

/* The filters' options, the same for every command that selects dead
 * letters: OPT_FILTER + the kjb_dlq_filter_field. */
enum { OPT_FILTER = 1300 };
// clang-format off
#define DLQ_FILTER_LONG_OPTS                                                      \
  {"id", required_argument, NULL, OPT_FILTER + KJB_DLQ_F_ID},                     \
  {"dlq-topic", required_argument, NULL, OPT_FILTER + KJB_DLQ_F_DLQ_TOPIC},       \
  {"source-topic", required_argument, NULL, OPT_FILTER + KJB_DLQ_F_SOURCE_TOPIC}, \
  {"reason", required_argument, NULL, OPT_FILTER + KJB_DLQ_F_REASON},             \
  {"since", required_argument, NULL, OPT_FILTER + KJB_DLQ_F_SINCE},               \
  {"until", required_argument, NULL, OPT_FILTER + KJB_DLQ_F_UNTIL},               \
  {"key", required_argument, NULL, OPT_FILTER + KJB_DLQ_F_KEY},                   \
  {"status", required_argument, NULL, OPT_FILTER + KJB_DLQ_F_STATUS}
// clang-format on

#define DLQ_FILTER_HELP                                                                 \
  "      --id N              the dead letter with id N (repeatable: any of them)\n"     \
  "      --dlq-topic T       in DLQ topic T\n"                                          \
  "      --source-topic T    from source topic T\n"                                     \
  "      --reason CODE       with this error code, e.g. TRUNCATED (or kjb.TRUNCATED)\n" \
  "      --since TIME        dead-lettered at or after TIME: RFC 3339\n"                \
  "                          (2026-11-21T10:00:00Z) or a duration back from now (2h)\n" \
  "      --until TIME        dead-lettered before TIME\n"                               \
  "      --key TEXT          whose key is exactly TEXT\n"                               \
  "      --status S          dead, replayed, failing or ignored\n"

/* Whether c is a filter option; if so, adds its value to f, reporting a
 * bad one as a usage error with *rc set to the exit code. */
static bool filter_opt(const char *cmd, int c, kjb_dlq_filter *f, int64_t now, int *rc) {
  if (c < OPT_FILTER || c >= OPT_FILTER + KJB_DLQ_F__COUNT)
    return false;
  kjb_err err;
  if (kjb_dlq_filter_set(f, (kjb_dlq_filter_field)(c - OPT_FILTER), optarg, now, "--", &err) < 0)
    *rc = usage_error(cmd, "%s", err.msg);
  return true;
}

/* ---- replay --------------------------------------------------------- */

enum {
  OPT_RESET = 1100,
  OPT_DRY_RUN,
  OPT_LIMIT,
  OPT_FOLLOW,
  OPT_GROUP,
  OPT_JSON,
  OPT_CODE,
  OPT_ACTOR,
  OPT_RATE
};

static int parse_limit(const char *cmd, const char *arg, long *out) {
  int64_t v;
  if (int_option(cmd, "--limit", arg, 1, LONG_MAX, &v))
    return EXIT_USAGE;
  *out = (long)v;
  return 0;
}

/* What a replay did, per reason then in sum (the last line). */
static void print_replay(const kjb_replay_stats *st, int dry_run) {
  const char *pre = dry_run ? "dry run: " : "";
  for (size_t i = 0; i < st->nreasons; i++) {
    const kjb_replay_reason *rr = &st->reasons[i];
    printf("%s%s: %" PRIu64 " record%s: %" PRIu64 " %s", pre, rr->reason, rr->records,
           rr->records == 1 ? "" : "s", rr->replayed,
           dry_run ? "would become jobs" : "became jobs");
    for (size_t k = 0; k < rr->nkinds; k++)
      printf("%s%" PRIu64 " %s", k ? ", " : " (", rr->kinds[k].jobs, rr->kinds[k].kind);
    printf("%s, %" PRIu64 " already present, %" PRIu64 " %s\n", rr->nkinds ? ")" : "",
           rr->already_present, rr->still_failing, dry_run ? "would still fail" : "still failing");
  }
  printf("%sreplayed %" PRIu64 ", still failing %" PRIu64 ", already present %" PRIu64 "\n", pre,
         st->replayed, st->still_failing, st->already_present);
}

static int cmd_replay(int argc, char **argv) {
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"topic", required_argument, NULL, 't'},
                                       {"reset-offsets", required_argument, NULL, OPT_RESET},
                                       {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"follow", no_argument, NULL, OPT_FOLLOW},
                                       {"group", required_argument, NULL, OPT_GROUP},
                                       {"actor", required_argument, NULL, OPT_ACTOR},
                                       {"rate", required_argument, NULL, OPT_RATE},
                                       DLQ_FILTER_LONG_OPTS,
                                       {0}};
  common_opts o = {0};
  kjb_replay_opts ro = {.log = stderr, .progress = stderr};
  const char *actor_opt = NULL, *offset_mode = NULL;
  char actor[KJB_AUDIT_ACTOR_MAX + 1];
  kjb_reset_spec spec;
  kjb_dlq_filter f;
  kjb_dlq_filter_init(&f);
  int64_t now = kjb_now_wall_us();
  kjb_err err;
  int rc = -1, c;
  while (rc < 0 && (c = getopt_long(argc, argv, ":c:ht:", opts, NULL)) != -1) {
    if (common_opt(c, &o) || filter_opt("replay", c, &f, now, &rc))
      continue;
    switch (c) {
    case 't':
      ro.topic = optarg;
      offset_mode = "--topic";
      break;
    case OPT_RESET:
      if (kjb_reset_parse(optarg, &spec, &err) < 0)
        rc = usage_error("replay", "--reset-offsets: %s", err.msg);
      ro.reset = &spec;
      ro.reset_text = optarg;
      offset_mode = "--reset-offsets";
      break;
    case OPT_DRY_RUN: ro.dry_run = 1; break;
    case OPT_LIMIT:
      if (parse_limit("replay", optarg, &ro.limit))
        rc = EXIT_USAGE;
      offset_mode = "--limit";
      break;
    case OPT_FOLLOW:
      ro.follow = 1;
      offset_mode = "--follow";
      break;
    case OPT_GROUP:
      ro.group = optarg;
      offset_mode = "--group";
      break;
    case OPT_ACTOR: actor_opt = optarg; break;
    case OPT_RATE: {
      char *end;
      errno = 0;
      ro.rate = strtod(optarg, &end);
      if (errno || end == optarg || *end || !(ro.rate > 0) || ro.rate > 1e9)
        rc = usage_error("replay", "bad --rate \"%s\" (expected records per second, more than 0)",
                         optarg);
      break;
    }
    case 'h':
      printf("usage: kjb replay FILTERS [--rate N] [--dry-run] [--actor NAME] [options]\n"
             "       kjb replay --topic DLQ [--reset-offsets SPEC] [--dry-run] [--limit N]\n"
             "                  [--follow] [--group G] [--rate N] [--actor NAME] [options]\n\n"
             "Runs dead-lettered records through the current decoder and mapping. Records\n"
             "that now succeed become jobs at their original coordinates (never twice);\n"
             "records that still fail are counted and skipped. Each replay is recorded in\n"
             "kjb.dead_letters (status, replays, last_replayed_at, last_error) and kjb.audit.\n\n"
             "With filters, exactly the dead letters of the index they select are fetched\n"
             "from their DLQ coordinates (ignored ones only when selected by --id or\n"
             "--status). With --topic, the topic is consumed in group <kafka.group>.replay\n"
             "up to the end offsets seen at start.\n"
             "Exit code 0 when nothing still fails, 1 otherwise.\n\n" DLQ_FILTER_HELP
             "  -t, --topic DLQ         the dead-letter topic (without filters)\n"
             "      --reset-offsets SPEC  first move the group: to-earliest, to-latest,\n"
             "                          to-offset:N, to-datetime:2026-11-21T10:00:00.000,\n"
             "                          shift-by:N, by-duration:PT1H\n"
             "      --dry-run           count per reason what would become jobs (of which\n"
             "                          kinds) and what would still fail; write nothing\n"
             "      --rate N            replay at most N records per second\n"
             "      --limit N           stop after N records\n"
             "      --follow            keep consuming past the end (until SIGINT)\n"
             "      --group G           consumer group (default <kafka.group>.replay)\n"
             "      --actor NAME        who, for the audit trail (default cli:<user>)\n%s",
             COMMON_HELP);
      rc = 0;
      break;
    default: rc = option_error("replay", c, argv); break;
    }
  }
  if (rc < 0 && optind < argc)
    rc = usage_error("replay", "unexpected argument \"%s\"", argv[optind]);
  if (rc < 0 && kjb_dlq_filter_check(&f, "--", &err) < 0)
    rc = usage_error("replay", "%s", err.msg);
  if (rc < 0 && !kjb_dlq_filter_empty(&f)) {
    if (offset_mode)
      rc = usage_error("replay", "%s does not apply to a replay by filter", offset_mode);
    ro.filter = &f;
  } else if (rc < 0 && !ro.topic) {
    rc = usage_error("replay", "--topic or a filter is required");
  }
  if (rc < 0 && kjb_audit_actor(actor_opt, actor, sizeof actor, &err) < 0)
    rc = usage_error("replay", "%s", err.msg);
  ro.actor = actor;
  kjb_config cfg;
  if (rc < 0 && (rc = load("replay", &o, &cfg)) == 0) {
    install_signals();
    kjb_replay_stats st = {0};
    if (kjb_replay_run(&cfg, &ro, &st, &stop_requested, &err) < 0) {
      rc = fail("replay", &err);
    } else {
      print_replay(&st, ro.dry_run);
      rc = st.still_failing ? EXIT_OPERATIONAL : 0;
    }
    kjb_replay_stats_close(&st);
    kjb_config_close(&cfg);
  }
  kjb_dlq_filter_close(&f);
  return rc;
}

/* ---- jobs ----------------------------------------------------------- */

enum { OPT_STATE = 1200, OPT_KIND, OPT_OLDER_THAN, OPT_QUEUE };

static const char JOBS_USAGE[] =
    "usage: kjb jobs ls [--state S] [--kind K] [--limit N] [--json] [options]\n"
    "       kjb jobs show ID [--json] [options]\n"
    "       kjb jobs retry ID | --state STATE [--kind K] [options]\n"
    "       kjb jobs cancel ID [options]\n"
    "       kjb jobs prune --older-than DURATION [options]\n"
    "       kjb jobs pause|resume --kind K | --queue Q [options]\n";

/* What a jobs subcommand acts on, from its command line. */
typedef struct {
  const kjb_config *cfg;
  kjb_jobs_filter f;
  const char *queue;
  int64_t id;
  int64_t older_than_us;
  char actor[KJB_AUDIT_ACTOR_MAX + 1];
} jobs_args;

/* "kjb: <cmd>: <why>" for a job that cannot be acted on; returns 1. */
static int job_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int job_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "kjb: %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return EXIT_OPERATIONAL;
}

/* The subcommands: each returns an exit code. */

static int jobs_ls(const char *cmd, kjb_store *s, const jobs_args *a) {
  kjb_err err;
  if (kjb_jobs_ls(s, &a->f, stdout, NULL, &err) < 0)
    return fail(cmd, &err);
  if (a->f.json)
    return 0;
  /* Below the table: what executors leave alone. */
  json_t *paused = kjb_pause_list(s, &err);
  if (!paused)
    return fail(cmd, &err);
  kjb_pause_print(paused, stdout);
  json_decref(paused);
  json_t *held = kjb_jobs_held_keys(s, a->cfg, &err);
  if (!held)
    return fail(cmd, &err);
  kjb_jobs_held_print(held, stdout);
  json_decref(held);
  return 0;
}

static int jobs_show(const char *cmd, kjb_store *s, const jobs_args *a) {
  kjb_err err;
  int found;
  if (kjb_jobs_show(s, a->id, a->f.json, stdout, &found, &err) < 0)
    return fail(cmd, &err);
  return found ? 0 : job_error(cmd, "no job %lld", (long long)a->id);
}

/* retry and cancel of one job. */
static int jobs_act(const char *cmd, kjb_store *s, const jobs_args *a, int retry) {
  long long jid = (long long)a->id;
  kjb_err err;
  kjb_jobs_result res;
  if ((retry ? kjb_jobs_retry : kjb_jobs_cancel)(s, a->id, a->actor, &res, &err) < 0)
    return fail(cmd, &err);
  if (res.outcome == KJB_JOBS_NOT_FOUND)
    return job_error(cmd, "no job %lld", jid);
  if (res.outcome == KJB_JOBS_WRONG_STATE && retry)
    return job_error(cmd, "cannot retry job %lld: it is %s", jid, res.state);
  if (res.outcome == KJB_JOBS_WRONG_STATE)
    return job_error(cmd, "cannot cancel job %lld: it is already %s", jid, res.state);
  if (retry)
    printf("retried 1 job\n");
  else
    printf("cancelled job %lld\n", jid);
  return 0;
}

static int jobs_retry(const char *cmd, kjb_store *s, const jobs_args *a) {
  if (!a->f.state)
    return jobs_act(cmd, s, a, 1);
  kjb_err err;
  int64_t changed;
  int rc = 0;
  if (kjb_jobs_retry_state(s, a->f.state, a->f.kind, a->actor, &changed, &err) < 0)
    rc = fail(cmd, &err);
  /* After a failure partway, the batches before it stay retried. */
  if (rc == 0 || changed > 0)
    printf("retried %lld job%s\n", (long long)changed, changed == 1 ? "" : "s");
  return rc;
}

static int jobs_cancel(const char *cmd, kjb_store *s, const jobs_args *a) {
  return jobs_act(cmd, s, a, 0);
}

static int jobs_prune(const char *cmd, kjb_store *s, const jobs_args *a) {
  kjb_err err;
  int64_t deleted;
  int rc = 0;
  if (kjb_jobs_prune(s, a->older_than_us, &deleted, &err) < 0)
    rc = fail(cmd, &err);
  if (rc == 0 || deleted > 0)
    printf("pruned %lld job%s\n", (long long)deleted, deleted == 1 ? "" : "s");
  return rc;
}

/* pause and resume of a kind or a queue. */
static int jobs_pause_resume(const char *cmd, kjb_store *s, const jobs_args *a, bool pause) {
  if (!a->f.kind == !a->queue)
    return usage_error(cmd, "give one of --kind and --queue");
  kjb_pause_scope scope = a->f.kind ? KJB_PAUSE_KIND : KJB_PAUSE_QUEUE;
  const char *name = a->f.kind ? a->f.kind : a->queue;
  kjb_err err;
  kjb_pause_result res;
  if (kjb_pause_set(s, scope, name, pause, a->actor, &res, &err) < 0)
    return fail(cmd, &err);
  const char *what = kjb_pause_scope_name(scope);
  if (pause && res.changed)
    printf("paused %s %s\n", what, name);
  else if (pause)
    printf("%s %s is paused already (since %s by %s)\n", what, name, res.since, res.by);
  else if (res.changed)
    printf("resumed %s %s (paused since %s by %s)\n", what, name, res.since, res.by);
  else
    printf("%s %s is not paused\n", what, name);
  return 0;
}

static int jobs_pause(const char *cmd, kjb_store *s, const jobs_args *a) {
  return jobs_pause_resume(cmd, s, a, true);
}

static int jobs_resume(const char *cmd, kjb_store *s, const jobs_args *a) {
  return jobs_pause_resume(cmd, s, a, false);
}

/* Per subcommand: its name, the function that runs it, the options it
 * takes (and needs), whether it takes a job id, and its help. */
enum {
  JOBS_STATE = 1,
  JOBS_KIND = 2,
  JOBS_OLDER_THAN = 4,
  JOBS_JSON = 8,
  JOBS_LIMIT = 16,
  JOBS_ACTOR = 32,
  JOBS_QUEUE = 64
};
enum { NO_ID, ID, ID_OR_STATE /* a job id, or --state (and maybe --kind) */ };
static const struct {
  const char *name;
  int (*fn)(const char *cmd, kjb_store *s, const jobs_args *a);
  unsigned takes, needs;
  int id;
  const char *help;
} jobs_subs[] = {
    {"ls", jobs_ls, JOBS_STATE | JOBS_KIND | JOBS_LIMIT | JOBS_JSON, 0, NO_ID,
     "usage: kjb jobs ls [--state S] [--kind K] [--limit N] [--json] [options]\n\n"
     "Lists jobs, newest first: id, kind, queue, state, attempt/max_attempts,\n"
     "scheduled_at (UTC) and the last attempt's error.\n\n"
     "      --state S           only jobs in state S: available, scheduled, running,\n"
     "                          retryable, completed, discarded or cancelled\n"
     "      --kind K            only jobs of kind K\n"
     "      --limit N           show at most N jobs (default 50)\n"
     "      --json              one JSON array of objects with every column\n"},
    {"show", jobs_show, JOBS_JSON, 0, ID,
     "usage: kjb jobs show ID [--json] [options]\n\n"
     "Shows every column of one job, args, meta and errors pretty-printed.\n"
     "Exit code 1 when there is no such job.\n\n"
     "      --json              one JSON object\n"},
    {"retry", jobs_retry, JOBS_STATE | JOBS_KIND | JOBS_ACTOR, 0, ID_OR_STATE,
     "usage: kjb jobs retry ID | --state STATE [--kind K] [--actor NAME] [options]\n\n"
     "Makes jobs runnable now: state available, and one more attempt for a job that\n"
     "used up its attempts. A single job may be discarded, cancelled, retryable or\n"
     "scheduled; any other state is refused with exit code 1.\n\n"
     "      --state STATE       every job in STATE: discarded, cancelled or retryable\n"
     "      --kind K            with --state: only jobs of kind K\n"
     "      --actor NAME        who, for the audit trail (default cli:<user>)\n"},
    {"cancel", jobs_cancel, JOBS_ACTOR, 0, ID,
     "usage: kjb jobs cancel ID [--actor NAME] [options]\n\n"
     "Cancels a job that is not final yet (available, scheduled, retryable or\n"
     "running; a running job's late result is ignored). Exit code 1 when the job\n"
     "is already completed, discarded or cancelled, or does not exist.\n\n"
     "      --actor NAME        who, for the audit trail (default cli:<user>)\n"},
    {"prune", jobs_prune, JOBS_OLDER_THAN, JOBS_OLDER_THAN, NO_ID,
     "usage: kjb jobs prune --older-than DURATION [options]\n\n"
     "Deletes completed, discarded and cancelled jobs that finished more than\n"
     "DURATION ago, in batches, and prints how many.\n\n"
     "      --older-than DURATION  e.g. 30s, 12h, 7d\n"},
    {"pause", jobs_pause, JOBS_KIND | JOBS_QUEUE | JOBS_ACTOR, 0, NO_ID,
     "usage: kjb jobs pause --kind K | --queue Q [--actor NAME] [options]\n\n"
     "Stops every executor of the cluster from starting jobs of kind K (or of\n"
     "queue Q) until resumed; running jobs finish, new ones stay available, rate\n"
     "limits and breakers are untouched. kjb jobs ls lists the pauses.\n\n"
     "      --kind K            the kind to pause\n"
     "      --queue Q           the queue to pause\n"
     "      --actor NAME        who, for the audit trail (default cli:<user>)\n"},
    {"resume", jobs_resume, JOBS_KIND | JOBS_QUEUE | JOBS_ACTOR, 0, NO_ID,
     "usage: kjb jobs resume --kind K | --queue Q [--actor NAME] [options]\n\n"
     "Lets executors start jobs of a paused kind (or queue) again.\n\n"
     "      --kind K            the kind to resume\n"
     "      --queue Q           the queue to resume\n"
     "      --actor NAME        who, for the audit trail (default cli:<user>)\n"},
};

static int parse_job_id(const char *cmd, const char *arg, int64_t *id) {
  if (kjb_parse_i64(arg, 1, INT64_MAX, id) == 0)
    return 0;
  return usage_error(cmd, "bad job id \"%s\" (expected an integer from 1 to %" PRId64 ")", arg,
                     INT64_MAX);
}

static int cmd_jobs(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    if (argc < 2)
      return usage_error("jobs",
                         "expected a subcommand: ls, show, retry, cancel, prune, pause or resume");
    printf("%s\nInspects and acts on job records. 'kjb jobs SUBCOMMAND --help' describes one.\n",
           JOBS_USAGE);
    return 0;
  }
  size_t sub = 0;
  while (sub < sizeof jobs_subs / sizeof jobs_subs[0] && strcmp(argv[1], jobs_subs[sub].name))
    sub++;
  if (sub == sizeof jobs_subs / sizeof jobs_subs[0])
    return usage_error(
        "jobs",
        "unknown subcommand \"%s\" (expected ls, show, retry, cancel, prune, pause or resume)",
        argv[1]);
  char cmd[16];
  snprintf(cmd, sizeof cmd, "jobs %s", jobs_subs[sub].name);
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"state", required_argument, NULL, OPT_STATE},
                                       {"kind", required_argument, NULL, OPT_KIND},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"older-than", required_argument, NULL, OPT_OLDER_THAN},
                                       {"actor", required_argument, NULL, OPT_ACTOR},
                                       {"queue", required_argument, NULL, OPT_QUEUE},
                                       {0}};
  common_opts o = {0};
  jobs_args a = {0};
  const char *older_than = NULL, *actor = NULL;
  unsigned given = 0;
  int c;
  argc--, argv++;
  while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    switch (c) {
    case OPT_STATE:
      a.f.state = optarg;
      given |= JOBS_STATE;
      break;
    case OPT_KIND:
      a.f.kind = optarg;
      given |= JOBS_KIND;
      break;
    case OPT_LIMIT:
      if (parse_limit(cmd, optarg, &a.f.limit))
        return EXIT_USAGE;
      given |= JOBS_LIMIT;
      break;
    case OPT_JSON:
      a.f.json = 1;
      given |= JOBS_JSON;
      break;
    case OPT_OLDER_THAN:
      older_than = optarg;
      given |= JOBS_OLDER_THAN;
      break;
    case OPT_ACTOR:
      actor = optarg;
      given |= JOBS_ACTOR;
      break;
    case OPT_QUEUE:
      a.queue = optarg;
      given |= JOBS_QUEUE;
      break;
    case 'h': printf("%s%s", jobs_subs[sub].help, COMMON_HELP); return 0;
    default: return option_error(cmd, c, argv);
    }
  }
  static const char *const names[] = {"--state", "--kind",  "--older-than", "--json",
                                      "--limit", "--actor", "--queue"};
  for (unsigned bit = 0; bit < 7; bit++)
    if (given & ~jobs_subs[sub].takes & (1u << bit))
      return usage_error(cmd, "%s does not apply here", names[bit]);
  int npos = argc - optind;
  int id_mode = jobs_subs[sub].id;
  int wants_id = id_mode == ID || (id_mode == ID_OR_STATE && !a.f.state);
  if (npos > (wants_id ? 1 : 0))
    return usage_error(cmd, "unexpected argument \"%s\"", argv[optind + (wants_id ? 1 : 0)]);
  if (wants_id && npos == 0)
    return usage_error(cmd, id_mode == ID_OR_STATE ? "expected a job id or --state"
                                                   : "expected a job id");
  if (wants_id && parse_job_id(cmd, argv[optind], &a.id))
    return EXIT_USAGE;
  if (id_mode == ID_OR_STATE && a.f.kind && !a.f.state)
    return usage_error(cmd, "--kind needs --state");
  for (unsigned bit = 0; bit < 7; bit++)
    if (jobs_subs[sub].needs & ~given & (1u << bit))
      return usage_error(cmd, "%s is required", names[bit]);
  kjb_err aerr;
  if ((jobs_subs[sub].takes & JOBS_ACTOR) &&
      kjb_audit_actor(actor, a.actor, sizeof a.actor, &aerr) < 0)
    return usage_error(cmd, "%s", aerr.msg);
  if (older_than && kjb_duration_parse(older_than, &a.older_than_us) < 0)
    return usage_error(cmd, "bad --older-than \"%s\" (expected a duration such as 30s, 12h or 7d)",
                       older_than);
  kjb_config cfg;
  int rc = load(cmd, &o, &cfg);
  if (rc)
    return rc;
  kjb_err err;
  kjb_store *s = kjb_store_connect(cfg.postgres.conninfo, cfg.postgres.schema, &err);
  a.cfg = &cfg;
  if (!s)
    rc = fail(cmd, &err);
  else
    rc = jobs_subs[sub].fn(cmd, s, &a);
  kjb_store_free(s);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- dlq ------------------------------------------------------------ */

enum { OPT_ALL = OPT_FILTER + KJB_DLQ_F__COUNT };

/* What a dlq subcommand acts on, from its command line. */
typedef struct {
  kjb_dlq_filter f;
  long limit;
  int json, all;
  const char *topic, *code;
  int64_t id;
  char actor[KJB_AUDIT_ACTOR_MAX + 1];
} dlq_args;

/* "kjb: <cmd>: <why>" for an operational failure that is no kjb_err;
 * returns 1. */
static int op_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int op_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsay(cmd, fmt, ap);
  va_end(ap);
  return EXIT_OPERATIONAL;
}

static int dlq_peek(const char *cmd, const kjb_config *cfg, dlq_args *a) {
  kjb_dlq_peek_opts po = {.topic = a->topic, .limit = a->limit, .json = a->json, .code = a->code};
  kjb_err err;
  long shown;
  return kjb_dlq_peek(cfg, &po, stdout, &shown, &err) < 0 ? fail(cmd, &err) : 0;
}

/* Runs fn on a store connection to cfg's database; returns its exit code. */
static int with_store(const char *cmd, const kjb_config *cfg, dlq_args *a,
                      int (*fn)(const char *, const kjb_config *, kjb_store *, dlq_args *)) {
  kjb_err err;
  kjb_store *s = kjb_store_connect(cfg->postgres.conninfo, cfg->postgres.schema, &err);
  if (!s)
    return fail(cmd, &err);
  int rc = fn(cmd, cfg, s, a);
  kjb_store_free(s);
  return rc;
}

static int dlq_ls_db(const char *cmd, const kjb_config *cfg, kjb_store *s, dlq_args *a) {
  kjb_err err;
  return kjb_dlqindex_ls(s, &a->f, a->limit, a->json, stdout, NULL, &err) < 0 ? fail(cmd, &err) : 0;
}

static int dlq_show_db(const char *cmd, const kjb_config *cfg, kjb_store *s, dlq_args *a) {
  kjb_err err;
  kjb_dlq_reader *r = kjb_dlq_reader_new(cfg, &err);
  if (!r)
    return fail(cmd, &err);
  /* Decoding with the current schemas is a bonus: without them (a
   * registry away) the record is still shown. */
  kjb_err cat_err;
  kjb_catalog *cat = kjb_catalog_new(cfg, &cat_err);
  if (!cat)
    kjb_warn("dlq show: not decoding the value: %s", cat_err.msg);
  kjb_dlqindex_shown res;
  int rc = kjb_dlqindex_show(s, r, cat, cfg, a->id, a->json, stdout, &res, &err);
  kjb_catalog_free(cat);
  kjb_dlq_reader_free(r);
  if (rc < 0)
    return fail(cmd, &err);
  if (!res.found)
    return op_error(cmd, "no dead letter %" PRId64, a->id);
  if (!res.fetched)
    return op_error(cmd, "%s", res.why.msg);
  return 0;
}

static int dlq_stats_db(const char *cmd, const kjb_config *cfg, kjb_store *s, dlq_args *a) {
  kjb_err err;
  return kjb_dlqindex_stats(s, &a->f, a->json, stdout, &err) < 0 ? fail(cmd, &err) : 0;
}

static int dlq_ignore_db(const char *cmd, const kjb_config *cfg, kjb_store *s, dlq_args *a) {
  kjb_err err;
  int64_t matched, ignored;
  if (kjb_dlqindex_ignore(s, &a->f, a->actor, &matched, &ignored, &err) < 0)
    return fail(cmd, &err);
  printf("ignored %" PRId64 " dead letter%s (%" PRId64 " matched; %" PRId64
         " already ignored or replayed)\n",
         ignored, ignored == 1 ? "" : "s", matched, matched - ignored);
  return 0;
}

static int dlq_reindex_db(const char *cmd, const kjb_config *cfg, kjb_store *s, dlq_args *a) {
  kjb_err err;
  kjb_dlqindex_reindex_stats st;
  install_signals();
  if (kjb_dlqindex_reindex(cfg, s, a->topic, a->actor, stderr, &stop_requested, &st, &err) < 0)
    return fail(cmd, &err);
  printf("reindexed \"%s\": %" PRIu64 " records (%" PRIu64 " not dead letters); %" PRIu64
         " rows added, %" PRIu64 " updated, %" PRIu64 " unchanged, %" PRIu64
         " removed (no committed record), %" PRIu64 " kept before the log start\n",
         a->topic, st.records, st.not_dead, st.inserted, st.updated, st.unchanged, st.removed,
         st.before_start);
  return 0;
}

static int dlq_ls(const char *cmd, const kjb_config *cfg, dlq_args *a) {
  return with_store(cmd, cfg, a, dlq_ls_db);
}
static int dlq_show(const char *cmd, const kjb_config *cfg, dlq_args *a) {
  return with_store(cmd, cfg, a, dlq_show_db);
}
static int dlq_stats(const char *cmd, const kjb_config *cfg, dlq_args *a) {
  return with_store(cmd, cfg, a, dlq_stats_db);
}
static int dlq_ignore(const char *cmd, const kjb_config *cfg, dlq_args *a) {
  return with_store(cmd, cfg, a, dlq_ignore_db);
}
static int dlq_reindex(const char *cmd, const kjb_config *cfg, dlq_args *a) {
  return with_store(cmd, cfg, a, dlq_reindex_db);
}

/* Per subcommand: its name, the function that runs it, the options it
 * takes (and needs), whether it takes an id, and its help. */
enum {
  DLQ_FILTERS = 1,
  DLQ_LIMIT = 2,
  DLQ_JSON = 4,
  DLQ_TOPIC = 8,
  DLQ_CODE = 16,
  DLQ_ALL = 32,
  DLQ_ACTOR = 64
};
static const struct {
  const char *name;
  int (*fn)(const char *cmd, const kjb_config *cfg, dlq_args *a);
  unsigned takes, needs;
  int id;
  const char *help;
} dlq_subs[] = {
    {"peek", dlq_peek, DLQ_TOPIC | DLQ_LIMIT | DLQ_JSON | DLQ_CODE, DLQ_TOPIC, NO_ID,
     "usage: kjb dlq peek --topic DLQ [--limit N] [--json] [--code CODE] [options]\n\n"
     "Shows dead-lettered records with their error headers, from the beginning\n"
     "of the topic to its end. Commits nothing.\n\n"
     "  -t, --topic DLQ         the dead-letter topic\n"
     "      --limit N           show at most N records\n"
     "      --json              one JSON object per record (value as base64)\n"
     "      --code CODE         only records with this error code, e.g. "
     "kjb.TRUNCATED\n"},
    {"ls", dlq_ls, DLQ_FILTERS | DLQ_LIMIT | DLQ_JSON, 0, NO_ID,
     "usage: kjb dlq ls [FILTERS] [--limit N] [--json] [options]\n\n"
     "Lists indexed dead letters (kjb.dead_letters), oldest first: id, when, status,\n"
     "reason, source and DLQ coordinates, key and message.\n\n" DLQ_FILTER_HELP
     "      --limit N           show at most N (default 50)\n"
     "      --json              one JSON array of objects with every column\n"},
    {"show", dlq_show, DLQ_JSON, 0, ID,
     "usage: kjb dlq show ID [--json] [options]\n\n"
     "Shows one dead letter: its row, the DLQ record's headers, a hex dump of its\n"
     "value with the failing byte marked (when the message names one), and what\n"
     "the value decodes to with the current configuration. Exit code 1 when there\n"
     "is no such dead letter or its record cannot be read.\n\n"
     "      --json              one JSON object\n"},
    {"stats", dlq_stats, DLQ_FILTERS | DLQ_JSON, 0, NO_ID,
     "usage: kjb dlq stats [FILTERS] [--json] [options]\n\n"
     "Counts dead letters by DLQ topic, reason and status.\n\n" DLQ_FILTER_HELP
     "      --json              {\"total\": N, \"counts\": [...]}\n"},
    {"ignore", dlq_ignore, DLQ_FILTERS | DLQ_ALL | DLQ_ACTOR, 0, NO_ID,
     "usage: kjb dlq ignore FILTERS | --all [--actor NAME] [options]\n\n"
     "Marks the selected dead letters that are dead or failing as ignored and\n"
     "records it in kjb.audit. Refuses to run without a filter unless --all.\n\n" DLQ_FILTER_HELP
     "      --all               every dead letter\n"
     "      --actor NAME        who, for the audit trail (default cli:<user>)\n"},
    {"reindex", dlq_reindex, DLQ_TOPIC | DLQ_ACTOR, DLQ_TOPIC, NO_ID,
     "usage: kjb dlq reindex --topic DLQ [--actor NAME] [options]\n\n"
     "Builds or repairs the index of a DLQ topic from its committed records,\n"
     "whoever wrote them (kjb, Kafka Connect, any producer of the\n"
     "__connect.errors.* headers). Running it again changes nothing. Shows\n"
     "its progress on stderr.\n\n"
     "  -t, --topic DLQ         the dead-letter topic\n"
     "      --actor NAME        who, for the audit trail (default cli:<user>)\n"},
};
enum { NDLQ_SUBS = sizeof dlq_subs / sizeof dlq_subs[0] };

static const char DLQ_EDIT_HELP[] =
    "usage: kjb dlq edit ID --json FILE [--dry-run] [--actor NAME] [options]\n\n"
    "Replays one dead letter with a corrected value: FILE's JSON (as kjb produce\n"
    "reads it) is encoded with the topic's reader schema and\n"
    "becomes the jobs at the record's original coordinates, with its key and\n"
    "headers. The original bytes stay in the DLQ; the row is marked replayed and\n"
    "edited, and kjb.audit records the value. Its jobs are made once: when they\n"
    "exist already, nothing is inserted.\n\n"
    "      --json FILE         the corrected value\n"
    "      --dry-run           show the jobs it would become; write nothing\n"
    "      --actor NAME        who, for the audit trail (default cli:<user>)\n";

static int cmd_dlq_edit(int argc, char **argv) {
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"json", required_argument, NULL, OPT_JSON},
                                       {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                       {"actor", required_argument, NULL, OPT_ACTOR},
                                       {0}};
  static const char cmd[] = "dlq edit";
  common_opts o = {0};
  kjb_dlq_edit_opts eo = {.out = stdout};
  const char *file = NULL, *actor_opt = NULL;
  char actor[KJB_AUDIT_ACTOR_MAX + 1];
  kjb_err err;
  int rc = -1, c;
  while (rc < 0 && (c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    switch (c) {
    case OPT_JSON: file = optarg; break;
    case OPT_DRY_RUN: eo.dry_run = 1; break;
    case OPT_ACTOR: actor_opt = optarg; break;
    case 'h':
      printf("%s%s", DLQ_EDIT_HELP, COMMON_HELP);
      rc = 0;
      break;
    default: rc = option_error(cmd, c, argv); break;
    }
  }
  if (rc >= 0)
    return rc;
  if (optind == argc)
    return usage_error(cmd, "expected a dead letter id");
  if (optind + 1 < argc)
    return usage_error(cmd, "unexpected argument \"%s\"", argv[optind + 1]);
  if (kjb_parse_i64(argv[optind], 1, INT64_MAX, &eo.id) < 0)
    return usage_error(cmd, "bad dead letter id \"%s\" (expected an integer from 1 to %" PRId64 ")",
                       argv[optind], INT64_MAX);
  if (!file)
    return usage_error(cmd, "--json is required");
  if (kjb_audit_actor(actor_opt, actor, sizeof actor, &err) < 0)
    return usage_error(cmd, "%s", err.msg);
  eo.actor = actor;
  kjb_buf value;
  kjb_buf_init(&value);
  if (kjb_read_file(file, 16u << 20, &value, &err) < 0) {
    kjb_buf_close(&value);
    return usage_error(cmd, "--json %s: %s", file, err.msg);
  }
  eo.value = value.data;
  eo.value_len = value.len;
  eo.source = file;
  kjb_config cfg;
  if ((rc = load(cmd, &o, &cfg)) == 0) {
    kjb_store *s = kjb_store_connect(cfg.postgres.conninfo, cfg.postgres.schema, &err);
    kjb_dlq_edit_result res;
    if (!s || kjb_dlq_edit(&cfg, s, &eo, &res, &err) < 0) {
      rc = err.code == KJB_EUSAGE ? op_error(cmd, "%s", err.msg) : fail(cmd, &err);
    } else {
      printf("%sdead letter %" PRId64 " %s %zu job%s (%zu new)\n", eo.dry_run ? "dry run: " : "",
             eo.id, eo.dry_run ? "would become" : "became", res.jobs, res.jobs == 1 ? "" : "s",
             res.inserted);
    }
    kjb_store_free(s);
    kjb_config_close(&cfg);
  }
  kjb_buf_close(&value);
  return rc;
}

static int cmd_dlq(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    if (argc < 2)
      return usage_error("dlq",
                         "expected a subcommand: peek, ls, show, stats, ignore, reindex or edit");
    printf("usage: kjb dlq peek|ls|show|stats|ignore|reindex|edit [options]\n\n"
           "Inspects dead letters: their DLQ topics (peek) and their index in PostgreSQL.\n"
           "'kjb dlq SUBCOMMAND --help' describes one.\n");
    return 0;
  }
  if (strcmp(argv[1], "edit") == 0)
    return cmd_dlq_edit(argc - 1, argv + 1);
  size_t sub = 0;
  while (sub < NDLQ_SUBS && strcmp(argv[1], dlq_subs[sub].name))
    sub++;
  if (sub == NDLQ_SUBS)
    return usage_error(
        "dlq",
        "unknown subcommand \"%s\" (expected peek, ls, show, stats, ignore, reindex or edit)",
        argv[1]);
  char cmd[16];
  snprintf(cmd, sizeof cmd, "dlq %s", dlq_subs[sub].name);
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"topic", required_argument, NULL, 't'},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"code", required_argument, NULL, OPT_CODE},
                                       {"all", no_argument, NULL, OPT_ALL},
                                       {"actor", required_argument, NULL, OPT_ACTOR},
                                       DLQ_FILTER_LONG_OPTS,
                                       {0}};
  common_opts o = {0};
  dlq_args a = {0};
  kjb_dlq_filter_init(&a.f);
  const char *actor = NULL, *first_filter = NULL;
  unsigned given = 0;
  int64_t now = kjb_now_wall_us();
  int rc = -1, c;
  kjb_err err;
  argc--, argv++;
  while (rc < 0 && (c = getopt_long(argc, argv, ":c:ht:", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    if (filter_opt(cmd, c, &a.f, now, &rc)) {
      if (!first_filter)
        first_filter = kjb_dlq_filter_name((kjb_dlq_filter_field)(c - OPT_FILTER));
      given |= DLQ_FILTERS;
      continue;
    }
    switch (c) {
    case 't':
      a.topic = optarg;
      given |= DLQ_TOPIC;
      break;
    case OPT_LIMIT:
      if (parse_limit(cmd, optarg, &a.limit))
        rc = EXIT_USAGE;
      given |= DLQ_LIMIT;
      break;
    case OPT_JSON:
      a.json = 1;
      given |= DLQ_JSON;
      break;
    case OPT_CODE:
      a.code = optarg;
      given |= DLQ_CODE;
      break;
    case OPT_ALL:
      a.all = 1;
      given |= DLQ_ALL;
      break;
    case OPT_ACTOR:
      actor = optarg;
      given |= DLQ_ACTOR;
      break;
    case 'h':
      printf("%s%s", dlq_subs[sub].help, COMMON_HELP);
      rc = 0;
      break;
    default: rc = option_error(cmd, c, argv); break;
    }
  }
  static const char *const names[] = {"a filter", "--limit", "--json", "--topic",
                                      "--code",   "--all",   "--actor"};
  for (unsigned bit = 0; rc < 0 && bit < 7; bit++)
    if (given & ~dlq_subs[sub].takes & (1u << bit))
      rc = bit == 0 ? usage_error(cmd, "--%s does not apply here", first_filter)
                    : usage_error(cmd, "%s does not apply here", names[bit]);
  for (unsigned bit = 0; rc < 0 && bit < 7; bit++)
    if (dlq_subs[sub].needs & ~given & (1u << bit))
      rc = usage_error(cmd, "%s is required", names[bit]);
  int npos = argc - optind, wants_id = dlq_subs[sub].id == ID;
  if (rc < 0 && npos > wants_id)
    rc = usage_error(cmd, "unexpected argument \"%s\"", argv[optind + wants_id]);
  if (rc < 0 && wants_id && npos == 0)
    rc = usage_error(cmd, "expected a dead letter id");
  if (rc < 0 && wants_id && kjb_parse_i64(argv[optind], 1, INT64_MAX, &a.id) < 0)
    rc = usage_error(cmd, "bad dead letter id \"%s\" (expected an integer from 1 to %" PRId64 ")",
                     argv[optind], INT64_MAX);
  if (rc < 0 && kjb_dlq_filter_check(&a.f, "--", &err) < 0)
    rc = usage_error(cmd, "%s", err.msg);
  if (rc < 0 && sub < NDLQ_SUBS && strcmp(dlq_subs[sub].name, "ignore") == 0) {
    if (a.all && !kjb_dlq_filter_empty(&a.f))
      rc = usage_error(cmd, "--all and filters exclude each other");
    else if (!a.all && kjb_dlq_filter_empty(&a.f))
      rc = usage_error(cmd, "refusing to ignore every dead letter without a filter "
                            "(give filters, or --all)");
  }
  if (rc < 0 && (dlq_subs[sub].takes & DLQ_ACTOR) &&
      kjb_audit_actor(actor, a.actor, sizeof a.actor, &err) < 0)
    rc = usage_error(cmd, "%s", err.msg);
  kjb_config cfg;
  if (rc < 0 && (rc = load(cmd, &o, &cfg)) == 0) {
    rc = dlq_subs[sub].fn(cmd, &cfg, &a);
    kjb_config_close(&cfg);
  }
  kjb_dlq_filter_close(&a.f);
  return rc;
}

/* ---- audit ---------------------------------------------------------- */

static int cmd_audit(int argc, char **argv) {
  static const char help[] = "usage: kjb audit ls [--limit N] [--json] [options]\n\n"
                             "Lists the audit trail (kjb.audit), newest first: replays, ignored\n"
                             "dead letters, reindexes, job retries and cancellations, with who\n"
                             "did them (cli:<user>, --actor, or the API's token name).\n\n"
                             "      --limit N           show at most N rows (default 50)\n"
                             "      --json              one JSON array of objects\n";
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    if (argc < 2)
      return usage_error("audit", "expected a subcommand: ls");
    printf("%s%s", help, COMMON_HELP);
    return 0;
  }
  if (strcmp(argv[1], "ls") != 0)
    return usage_error("audit", "unknown subcommand \"%s\" (expected ls)", argv[1]);
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {0}};
  common_opts o = {0};
  long limit = 0;
  int json = 0, c;
  argc--, argv++;
  while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    switch (c) {
    case OPT_LIMIT:
      if (parse_limit("audit ls", optarg, &limit))
        return EXIT_USAGE;
      break;
    case OPT_JSON: json = 1; break;
    case 'h': printf("%s%s", help, COMMON_HELP); return 0;
    default: return option_error("audit ls", c, argv);
    }
  }
  if (optind < argc)
    return usage_error("audit ls", "unexpected argument \"%s\"", argv[optind]);
  kjb_config cfg;
  int rc = load("audit ls", &o, &cfg);
  if (rc)
    return rc;
  kjb_err err;
  kjb_store *s = kjb_store_connect(cfg.postgres.conninfo, cfg.postgres.schema, &err);
  if (!s || kjb_audit_ls(s, limit, json, stdout, &err) < 0)
    rc = fail("audit ls", &err);
  kjb_store_free(s);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- version -------------------------------------------------------- */

static int cmd_version(int argc, char **argv) {
  static const struct option opts[] = {COMMON_LONG_OPTS, {0}};
  common_opts o = {0};
  int c;
  while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    if (c != 'h')
      return option_error("version", c, argv);
    printf("usage: kjb version [options]\n\n"
           "Prints the version of kjb and of the libraries it is linked with.\n\n%s",
           COMMON_HELP);
    return 0;
  }
  if (optind < argc)
    return usage_error("version", "unexpected argument \"%s\"", argv[optind]);
  printf("kjb %s\n", KJB_VERSION);
  printf("librdkafka %s\n", rd_kafka_version_str());
  int pq = PQlibVersion();
  printf("libpq %d.%d\n", pq / 10000, pq % 10000);
  printf("libconfig %d.%d.%d\n", LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR, LIBCONFIG_VER_REVISION);
  printf("jansson %s\n", jansson_version_str());
  printf("libcurl %s\n", curl_version_info(CURLVERSION_NOW)->version);
  printf("libmicrohttpd %s\n", MHD_get_version());
  printf("avro-c (linked)\n");
  return 0;
}

/* ---- dispatch ------------------------------------------------------- */

static const struct {
  const char *name;
  int (*fn)(int, char **);
  const char *summary;
} commands[] = {
    {"run", cmd_run, "run the service"},
    {"migrate", cmd_migrate, "create or upgrade the database schema"},
    {"check-config", cmd_check_config, "validate the configuration and print the mapping"},
    {"produce", cmd_produce, "encode JSON lines to Avro and produce them"},
    {"replay", cmd_replay, "re-process dead-lettered records"},
    {"dlq", cmd_dlq, "dlq peek|ls|show|stats|ignore|reindex: inspect dead letters"},
    {"jobs", cmd_jobs, "jobs ls|show|retry|cancel|prune: inspect and act on jobs"},
    {"audit", cmd_audit, "audit ls: who replayed, ignored, retried or cancelled what"},
    {"version", cmd_version, "print versions"},
};

static void usage(FILE *out) {
  fprintf(out, "usage: kjb COMMAND [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\n'kjb COMMAND --help' describes a command.\n");
}

/* "run, migrate, ... or version", for saying what was expected. */
static void command_names(char *out, size_t cap) {
  size_t n = sizeof commands / sizeof commands[0], used = 0;
  out[0] = '\0';
  for (size_t i = 0; i < n && used < cap; i++)
    used += (size_t)snprintf(out + used, cap - used, "%s%s",
                             i == 0       ? ""
                             : i + 1 == n ? " or "
                                          : ", ",
                             commands[i].name);
}

int main(int argc, char **argv) {
  /* Option errors are kjb's one-line messages, not getopt's. */
  opterr = 0;
  char names[256];
  command_names(names, sizeof names);
  if (argc < 2) {
    fprintf(stderr, "kjb: expected a command: %s ('kjb --help' describes them)\n", names);
    return EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0)
    return cmd_version(argc - 1, argv + 1);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) {
      curl_global_init(CURL_GLOBAL_DEFAULT);
      int rc = commands[i].fn(argc - 1, argv + 1);
      curl_global_cleanup();
      return rc;
    }
  fprintf(stderr, "kjb: unknown command \"%s\" (expected %s)\n", argv[1], names);
  return EXIT_USAGE;
}
