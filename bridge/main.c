/* kjb: the command line. Each subcommand parses its own options, loads the
 * configuration and calls into the library. Exit codes: 0 success, 1
 * operational failure, 2 usage or configuration error. */
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

#include "catalog.h"
#include "config.h"
#include "dlq.h"
#include "executor.h"
#include "api.h"
#include "http.h"
#include "ingest.h"
#include "jobs.h"
#include "kafka.h"
#include "log.h"
#include "replay.h"
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
  case KJB_ESCHEMA:
    return EXIT_USAGE;
  default:
    return EXIT_OPERATIONAL;
  }
}

/* One line "kjb: <cmd>: <why>" for a wrong command line; returns 2. */
static int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  say(cmd, msg);
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
  /* The admin token never shows in any command's output. */
  if (cfg->http.admin_token_env)
    kjb_log_secret(getenv(cfg->http.admin_token_env));
  return 0;
}

enum { OPT_LOG_FORMAT = 1000, OPT_LOG_LEVEL, OPT_SCHEMA_ID, OPT_ROLE };

#define COMMON_LONG_OPTS                                                   \
  {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, \
      {"log-format", required_argument, NULL, OPT_LOG_FORMAT},             \
      {"log-level", required_argument, NULL, OPT_LOG_LEVEL}

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

/* ---- run: health for the http server ------------------------------- */

/* How often the health thread pings PostgreSQL, and how long it waits for
 * a broker to answer. */
#define HEALTH_DB_EVERY_US (2 * 1000000LL)
#define HEALTH_KAFKA_TIMEOUT_MS 500

/* Keeps the http server's health snapshot current: every second it reads
 * the loops' heartbeats and the consumer's Kafka state, and every few
 * seconds it queries PostgreSQL on a connection of its own, so that an
 * idle process notices an outage too. */
typedef struct {
  kjb_http *http;
  const kjb_config *cfg;
  kjb_executor *ex; /* NULL without the executor role; outlives the thread */
  int consume;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int quit;        /* under mu */
  kjb_ingest *ing; /* under mu: set while the consumer exists */
} health_poller;

/* Pings PostgreSQL once. Returns 0, or -1 with err. */
static int health_db(health_poller *hp, kjb_store **db, kjb_err *err) {
  if (!*db && !(*db = kjb_store_connect(hp->cfg->postgres.conninfo, hp->cfg->postgres.schema, err)))
    return -1;
  PGresult *res = kjb_store_query(*db, "health check", "SELECT 1", 0, NULL, err);
  if (!res)
    return -1;
  PQclear(res);
  return 0;
}

static void *health_main(void *arg) {
  health_poller *hp = arg;
  /* The thread starts once wait_for_database found the schema current. */
  kjb_health h = {.consumer = hp->consume, .executor = hp->ex != NULL, .migrations_current = true};
  kjb_store *db = NULL;
  int64_t next_db = 0;
  int db_state = -1; /* last logged: -1 nothing yet, 0 down, 1 up */
  pthread_mutex_lock(&hp->mu);
  while (!hp->quit) {
    pthread_mutex_unlock(&hp->mu);
    int64_t now = kjb_now_mono_us();
    if (now >= next_db) {
      kjb_err err;
      if (health_db(hp, &db, &err) == 0) {
        h.db_connected = true;
        h.db_ok_us = kjb_now_mono_us();
        if (db_state == 0)
          kjb_info("health: postgresql reachable again");
        db_state = 1;
      } else {
        h.db_connected = false;
        kjb_store_free(db);
        db = NULL;
        if (db_state != 0)
          kjb_warn("health: %s", err.msg);
        db_state = 0;
      }
      next_db = now + HEALTH_DB_EVERY_US;
    }
    /* The oldest heartbeat counts; a loop that never ran makes it 0. */
    int64_t loop = INT64_MAX;
    if (hp->ex) {
      int64_t t = kjb_executor_heartbeat(hp->ex);
      loop = t < loop ? t : loop;
    }
    if (hp->consume) {
      kjb_ingest_health_info ih = {0};
      pthread_mutex_lock(&hp->mu);
      if (hp->ing)
        kjb_ingest_health(hp->ing, HEALTH_KAFKA_TIMEOUT_MS, &ih);
      pthread_mutex_unlock(&hp->mu);
      loop = ih.loop_us < loop ? ih.loop_us : loop;
      h.kafka_connected = ih.kafka_connected;
      h.partitions = ih.partitions;
      h.assigned_once = h.assigned_once || ih.partitions > 0;
    }
    h.loop_us = loop == INT64_MAX ? 0 : loop;
    kjb_http_set_health(hp->http, &h);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&hp->mu);
    if (!hp->quit)
      pthread_cond_timedwait(&hp->cv, &hp->mu, &until);
  }
  pthread_mutex_unlock(&hp->mu);
  kjb_store_free(db);
  return NULL;
}

/* Starts the health thread. Returns 0 or -1. */
static int health_start(health_poller *hp) {
  pthread_mutex_init(&hp->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&hp->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&hp->thread, NULL, health_main, hp) != 0) {
    pthread_cond_destroy(&hp->cv);
    pthread_mutex_destroy(&hp->mu);
    return -1;
  }
  return 0;
}

static void health_stop(health_poller *hp) {
  pthread_mutex_lock(&hp->mu);
  hp->quit = 1;
  pthread_cond_signal(&hp->cv);
  pthread_mutex_unlock(&hp->mu);
  pthread_join(hp->thread, NULL);
  pthread_cond_destroy(&hp->cv);
  pthread_mutex_destroy(&hp->mu);
}

/* Lets the health thread see the consumer (ing), or forget it (NULL)
 * before it is freed. hp may be NULL. */
static void health_attach(health_poller *hp, kjb_ingest *ing) {
  if (!hp)
    return;
  pthread_mutex_lock(&hp->mu);
  hp->ing = ing;
  pthread_mutex_unlock(&hp->mu);
}

/* How often the start-up wait asks PostgreSQL again. */
#define WAIT_RETRY_US (2 * 1000000LL)

/* Sleeps up to us, waking early on a signal. */
static void nap(int64_t us) {
  int64_t until = kjb_now_mono_us() + us;
  while (!stop_requested && kjb_now_mono_us() < until)
    nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
}

/* Waits until PostgreSQL answers and no migration is pending, so that kjb
 * may start before the database is up or the deployment's `kjb migrate`
 * has run, instead of crash-looping: meanwhile the process is live, and
 * /startupz and /readyz answer 503 with the reason ("waiting for
 * postgresql: ...", "migrations pending"). Returns 0 when the schema is
 * current, 1 when a signal came first. http may be NULL. */
static int wait_for_database(const kjb_config *cfg, kjb_http *http, int consume, int execute) {
  kjb_store *db = NULL;
  char logged[sizeof ((kjb_health *)0)->waiting] = "";
  int logged_pending = -1, rc = 1;
  while (!stop_requested) {
    kjb_err err;
    int pending = 0;
    if (!db)
      db = kjb_store_connect(cfg->postgres.conninfo, cfg->postgres.schema, &err);
    int64_t now = kjb_now_mono_us();
    kjb_health h = {.loop_us = now, .consumer = consume, .executor = execute};
    if (!db || kjb_store_migrate_status(db, NULL, &pending, &err) < 0) {
      kjb_store_free(db);
      db = NULL;
      snprintf(h.waiting, sizeof h.waiting, "waiting for postgresql: %s", err.msg);
      if (strcmp(h.waiting, logged) != 0)
        kjb_warn("%s", h.waiting);
      memcpy(logged, h.waiting, sizeof logged);
    } else if (pending == 0) {
      rc = 0;
      break;
    } else {
      if (pending != logged_pending)
        kjb_warn("%d migration(s) pending: waiting for `kjb migrate` to apply them", pending);
      logged_pending = pending;
      h.db_ok_us = now;
      h.db_connected = true;
    }
    if (http)
      kjb_http_set_health(http, &h);
    nap(WAIT_RETRY_US);
  }
  if (rc == 0 && (logged_pending >= 0 || logged[0]))
    kjb_info("postgresql reachable and migrations applied: starting");
  kjb_store_free(db);
  return rc;
}

/* The consumer until a signal; returns an exit code. */
static int run_consumer(const kjb_config *cfg, kjb_catalog *cat, health_poller *hp) {
  kjb_err err;
  int rc = 0;
  kjb_ingest *ing = kjb_ingest_new(cfg, cat, &err);
  if (!ing) {
    rc = fail("run", &err);
  } else {
    kjb_info("kjb %s consuming %zu topic(s) in group \"%s\"", KJB_VERSION, cfg->ntopics,
             cfg->kafka.group);
    health_attach(hp, ing);
    if (kjb_ingest_run(ing, &stop_requested, &err) < 0)
      rc = fail("run", &err);
    health_attach(hp, NULL);
    kjb_ingest_stats st;
    kjb_ingest_get_stats(ing, &st);
    kjb_info("stopped: %llu records, %llu jobs inserted, %llu dead-lettered in %llu "
             "batches; seconds polling %.1f, decoding %.1f, storing %.1f, dead letters "
             "%.1f, committing %.1f",
             (unsigned long long)st.records, (unsigned long long)st.jobs_inserted,
             (unsigned long long)st.dead_lettered, (unsigned long long)st.batches,
             st.poll_us / 1e6, st.process_us / 1e6, st.store_us / 1e6, st.settle_us / 1e6,
             st.commit_us / 1e6);
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
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"role", required_argument, NULL, OPT_ROLE},
                                       {0}};
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
  if (strcmp(role, "all") != 0 && strcmp(role, "consumer") != 0 &&
      strcmp(role, "executor") != 0)
    return usage_error("run", "unknown role \"%s\" (expected all, consumer or executor)", role);
  kjb_config cfg;
  int rc = load("run", &o, &cfg);
  if (rc)
    return rc;
  int consume = strcmp(role, "executor") != 0;
  /* "all" runs executors when there are handlers to run jobs with. */
  int execute = strcmp(role, "consumer") != 0 && (cfg.nhandlers > 0 || strcmp(role, "executor") == 0);
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
  else if (execute && !(ex = kjb_executor_new(&cfg, consume ? "consumer,executor" : "executor", &err)))
    rc = -1;
  else if (strcmp(cfg.kafka.brokers, "embedded") == 0 && start_embedded(&cfg, &embedded, &err) < 0)
    rc = -1;
  else
    rc = wait_for_database(&cfg, http, consume, execute);
  if (rc == 0 && ex && kjb_executor_start(ex, &err) < 0)
    rc = -1;
  if (rc != 0) {
    rc = rc < 0 ? fail("run", &err) : 0;
    kjb_executor_free(ex);
    kjb_catalog_free(cat);
    kjb_http_free(http);
    kjb_embedded_stop(embedded);
    kjb_config_close(&cfg);
    return rc;
  }
  kjb_api *api = NULL;
  health_poller hp = {.http = http, .cfg = &cfg, .ex = ex, .consume = consume};
  int health = 0;
  if (http) {
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
    if (health_start(&hp) < 0) {
      fprintf(stderr, "kjb: run: could not start the health thread\n");
      rc = EXIT_OPERATIONAL;
      goto out;
    }
    health = 1;
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
      rc = run_consumer(&cfg, cat, health ? &hp : NULL);
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
  /* The health thread reads the executor: it stops first. */
  if (health)
    health_stop(&hp);
  /* Requests in progress use the api, and the api the executor. */
  kjb_http_free(http);
  kjb_api_free(api);
  kjb_executor_free(ex);
  kjb_catalog_free(cat);
  /* Last: every client of the embedded cluster is gone by now. */
  kjb_embedded_stop(embedded);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- migrate -------------------------------------------------------- */

static int cmd_migrate(int argc, char **argv) {
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"status", no_argument, NULL, 's'},
                                       {0}};
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
      printf("applied %d migration%s; schema \"%s\" is current\n", applied,
             applied == 1 ? "" : "s", cfg.postgres.schema);
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
             "the resolved topic -> job mapping.\n\n%s",
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
  }
  kjb_catalog_free(cat);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- produce -------------------------------------------------------- */

static int produce_failed;

static void on_produced(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  if (m->err) {
    fprintf(stderr, "kjb: produce: line %zu: not delivered: %s\n", (size_t)(uintptr_t)m->_private,
            rd_kafka_err2str(m->err));
    produce_failed++;
  }
}

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
             "code is 1 if any line was bad or undelivered.\n\n"
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
  kjb_catalog *cat = NULL;
  rd_kafka_t *rk = NULL;
  const kjb_topic_cfg *t = kjb_config_topic(&cfg, topic);
  kjb_buf header, rec;
  kjb_buf_init(&header);
  kjb_buf_init(&rec);
  if (!t) {
    rc = usage_error("produce", "topic \"%s\" is not in the configuration", topic);
    goto out;
  }
  if (!(cat = kjb_catalog_new(&cfg, &err)) ||
      kjb_frame_header(cat, t, schema_id, &header, &err) < 0) {
    rc = fail("produce", &err);
    goto out;
  }
  static const char *const defaults[] = {"enable.idempotence", "true", "acks", "all",
                                         "linger.ms", "20", NULL};
  rd_kafka_conf_t *conf = kjb_kafka_conf(&cfg, defaults, &err);
  if (!conf) {
    rc = fail("produce", &err);
    goto out;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, on_produced);
  char errstr[512];
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    kjb_err_set(&err, KJB_EKAFKA, "could not create producer: %s", errstr);
    rc = fail("produce", &err);
    goto out;
  }
  const kjb_schema *schema = kjb_catalog_reader(cat, t);
  char *line = NULL;
  size_t cap = 0, lineno = 0, produced = 0, bad = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    lineno++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = '\0';
    if (n == 0)
      continue;
    json_error_t jerr;
    json_t *doc = json_loadb(line, (size_t)n, JSON_DECODE_ANY, &jerr);
    if (!doc) {
      fprintf(stderr, "kjb: produce: line %zu: invalid json at column %d: %s\n", lineno,
              jerr.column, jerr.text);
      bad++;
      continue;
    }
    kjb_buf_reset(&rec);
    kjb_buf_append(&rec, header.data, header.len);
    if (kjb_avro_encode(schema, doc, &rec, &err) < 0) {
      fprintf(stderr, "kjb: produce: line %zu: %s\n", lineno, err.msg);
      bad++;
      json_decref(doc);
      continue;
    }
    /* The key is the field's text: strings as they are, other values as
     * compact JSON ("42"). */
    kjb_buf key;
    kjb_buf_init(&key);
    json_t *kv = key_path ? json_object_get(doc, key_path) : NULL;
    if (json_is_string(kv)) {
      kjb_buf_append(&key, json_string_value(kv), json_string_length(kv));
    } else if (kv) {
      char *text = json_dumps(kv, JSON_ENCODE_ANY | JSON_COMPACT);
      if (text)
        kjb_buf_puts(&key, text);
      free(text);
    }
    json_decref(doc);
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_VALUE(rec.data, rec.len),
                                  RD_KAFKA_V_KEY(key.len ? key.data : NULL, key.len),
                                  RD_KAFKA_V_OPAQUE((void *)(uintptr_t)lineno),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 100);
    kjb_buf_close(&key);
    if (e) {
      fprintf(stderr, "kjb: produce: line %zu: %s\n", lineno, rd_kafka_err2str(e));
      bad++;
      continue;
    }
    produced++;
    rd_kafka_poll(rk, 0);
  }
  free(line);
  while (rd_kafka_outq_len(rk) > 0 && rd_kafka_flush(rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT &&
         !stop_requested)
    ;
  fprintf(stderr, "kjb: produce: %zu record%s produced to \"%s\", %zu bad line%s, %d undelivered\n",
          produced, produced == 1 ? "" : "s", topic, bad, bad == 1 ? "" : "s", produce_failed);
  rc = bad || produce_failed ? EXIT_OPERATIONAL : 0;
out:
  if (rk)
    rd_kafka_destroy(rk);
  kjb_buf_close(&header);
  kjb_buf_close(&rec);
  kjb_catalog_free(cat);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- replay --------------------------------------------------------- */

enum { OPT_RESET = 1100, OPT_DRY_RUN, OPT_LIMIT, OPT_FOLLOW, OPT_GROUP, OPT_JSON, OPT_CODE };

static int parse_limit(const char *cmd, const char *arg, long *out) {
  int64_t v;
  if (int_option(cmd, "--limit", arg, 1, LONG_MAX, &v))
    return EXIT_USAGE;
  *out = (long)v;
  return 0;
}

static int cmd_replay(int argc, char **argv) {
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"topic", required_argument, NULL, 't'},
                                       {"reset-offsets", required_argument, NULL, OPT_RESET},
                                       {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"follow", no_argument, NULL, OPT_FOLLOW},
                                       {"group", required_argument, NULL, OPT_GROUP},
                                       {0}};
  common_opts o = {0};
  kjb_replay_opts ro = {.log = stderr};
  kjb_reset_spec spec;
  kjb_err err;
  int c;
  while ((c = getopt_long(argc, argv, ":c:ht:", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    switch (c) {
    case 't': ro.topic = optarg; break;
    case OPT_RESET:
      if (kjb_reset_parse(optarg, &spec, &err) < 0)
        return usage_error("replay", "--reset-offsets: %s", err.msg);
      ro.reset = &spec;
      break;
    case OPT_DRY_RUN: ro.dry_run = 1; break;
    case OPT_LIMIT:
      if (parse_limit("replay", optarg, &ro.limit))
        return EXIT_USAGE;
      break;
    case OPT_FOLLOW: ro.follow = 1; break;
    case OPT_GROUP: ro.group = optarg; break;
    case 'h':
      printf("usage: kjb replay --topic DLQ [--reset-offsets SPEC] [--dry-run] [--limit N] "
             "[--follow] [--group G] [options]\n\n"
             "Runs dead-lettered records through the current decoder and mapping. Records\n"
             "that now succeed become jobs at their original coordinates (never twice);\n"
             "records that still fail are counted and skipped. Consumes in group\n"
             "<kafka.group>.replay and stops at the end offsets seen at start.\n"
             "Exit code 0 when nothing still fails, 1 otherwise.\n\n"
             "  -t, --topic DLQ         the dead-letter topic\n"
             "      --reset-offsets SPEC  first move the group: to-earliest, to-latest,\n"
             "                          to-offset:N, to-datetime:2026-11-21T10:00:00.000,\n"
             "                          shift-by:N, by-duration:PT1H\n"
             "      --dry-run           count only; write and commit nothing\n"
             "      --limit N           stop after N records\n"
             "      --follow            keep consuming past the end (until SIGINT)\n"
             "      --group G           consumer group (default <kafka.group>.replay)\n%s",
             COMMON_HELP);
      return 0;
    default: return option_error("replay", c, argv);
    }
  }
  if (!ro.topic)
    return usage_error("replay", "--topic is required");
  kjb_config cfg;
  int rc = load("replay", &o, &cfg);
  if (rc)
    return rc;
  install_signals();
  kjb_replay_stats st = {0};
  if (kjb_replay_run(&cfg, &ro, &st, &stop_requested, &err) < 0) {
    rc = fail("replay", &err);
  } else {
    printf("%sreplayed %llu, still failing %llu, already present %llu\n",
           ro.dry_run ? "dry run: " : "", (unsigned long long)st.replayed,
           (unsigned long long)st.still_failing, (unsigned long long)st.already_present);
    rc = st.still_failing ? EXIT_OPERATIONAL : 0;
  }
  kjb_config_close(&cfg);
  return rc;
}

/* ---- dlq peek ------------------------------------------------------- */

static int cmd_dlq(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "peek") != 0) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
      printf("usage: kjb dlq peek --topic DLQ [--limit N] [--json] [--code CODE] [options]\n");
      return 0;
    }
    return usage_error("dlq", "expected a subcommand: peek");
  }
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"topic", required_argument, NULL, 't'},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"code", required_argument, NULL, OPT_CODE},
                                       {0}};
  common_opts o = {0};
  kjb_dlq_peek_opts po = {0};
  int c;
  argc--, argv++;
  while ((c = getopt_long(argc, argv, ":c:ht:", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    switch (c) {
    case 't': po.topic = optarg; break;
    case OPT_LIMIT:
      if (parse_limit("dlq peek", optarg, &po.limit))
        return EXIT_USAGE;
      break;
    case OPT_JSON: po.json = 1; break;
    case OPT_CODE: po.code = optarg; break;
    case 'h':
      printf("usage: kjb dlq peek --topic DLQ [--limit N] [--json] [--code CODE] [options]\n\n"
             "Shows dead-lettered records with their error headers, from the beginning\n"
             "of the topic to its end. Commits nothing.\n\n"
             "  -t, --topic DLQ         the dead-letter topic\n"
             "      --limit N           show at most N records\n"
             "      --json              one JSON object per record (value as base64)\n"
             "      --code CODE         only records with this error code, e.g. "
             "kjb.TRUNCATED\n%s",
             COMMON_HELP);
      return 0;
    default: return option_error("dlq peek", c, argv);
    }
  }
  if (!po.topic)
    return usage_error("dlq peek", "--topic is required");
  kjb_config cfg;
  int rc = load("dlq peek", &o, &cfg);
  if (rc)
    return rc;
  kjb_err err;
  long shown;
  if (kjb_dlq_peek(&cfg, &po, stdout, &shown, &err) < 0)
    rc = fail("dlq peek", &err);
  kjb_config_close(&cfg);
  return rc;
}

/* ---- jobs ----------------------------------------------------------- */

enum { OPT_STATE = 1200, OPT_KIND, OPT_OLDER_THAN };

static const char JOBS_USAGE[] =
    "usage: kjb jobs ls [--state S] [--kind K] [--limit N] [--json] [options]\n"
    "       kjb jobs show ID [--json] [options]\n"
    "       kjb jobs retry ID | --state STATE [--kind K] [options]\n"
    "       kjb jobs cancel ID [options]\n"
    "       kjb jobs prune --older-than DURATION [options]\n";

/* Per subcommand: its name, the options it takes and its help. */
enum { JOBS_STATE = 1, JOBS_KIND = 2, JOBS_OLDER_THAN = 4, JOBS_JSON = 8, JOBS_LIMIT = 16 };
static const struct {
  const char *name;
  unsigned takes;
  const char *help;
} jobs_subs[] = {
    {"ls", JOBS_STATE | JOBS_KIND | JOBS_LIMIT | JOBS_JSON,
     "usage: kjb jobs ls [--state S] [--kind K] [--limit N] [--json] [options]\n\n"
     "Lists jobs, newest first: id, kind, queue, state, attempt/max_attempts,\n"
     "scheduled_at (UTC) and the last attempt's error.\n\n"
     "      --state S           only jobs in state S: available, scheduled, running,\n"
     "                          retryable, completed, discarded or cancelled\n"
     "      --kind K            only jobs of kind K\n"
     "      --limit N           show at most N jobs (default 50)\n"
     "      --json              one JSON array of objects with every column\n"},
    {"show", JOBS_JSON,
     "usage: kjb jobs show ID [--json] [options]\n\n"
     "Shows every column of one job, args, meta and errors pretty-printed.\n"
     "Exit code 1 when there is no such job.\n\n"
     "      --json              one JSON object\n"},
    {"retry", JOBS_STATE | JOBS_KIND,
     "usage: kjb jobs retry ID | --state STATE [--kind K] [options]\n\n"
     "Makes jobs runnable now: state available, and one more attempt for a job that\n"
     "used up its attempts. A single job may be discarded, cancelled, retryable or\n"
     "scheduled; any other state is refused with exit code 1.\n\n"
     "      --state STATE       every job in STATE: discarded, cancelled or retryable\n"
     "      --kind K            with --state: only jobs of kind K\n"},
    {"cancel", 0,
     "usage: kjb jobs cancel ID [options]\n\n"
     "Cancels a job that is not final yet (available, scheduled, retryable or\n"
     "running; a running job's late result is ignored). Exit code 1 when the job\n"
     "is already completed, discarded or cancelled, or does not exist.\n\n"},
    {"prune", JOBS_OLDER_THAN,
     "usage: kjb jobs prune --older-than DURATION [options]\n\n"
     "Deletes completed, discarded and cancelled jobs that finished more than\n"
     "DURATION ago, in batches, and prints how many.\n\n"
     "      --older-than DURATION  e.g. 30s, 12h, 7d\n"},
};

static int parse_job_id(const char *cmd, const char *arg, int64_t *id) {
  if (kjb_parse_i64(arg, 1, INT64_MAX, id) == 0)
    return 0;
  return usage_error(cmd, "bad job id \"%s\" (expected an integer from 1 to %" PRId64 ")", arg,
                     INT64_MAX);
}

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

static int cmd_jobs(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    if (argc < 2)
      return usage_error("jobs", "expected a subcommand: ls, show, retry, cancel or prune");
    printf("%s\nInspects and acts on job records. 'kjb jobs SUBCOMMAND --help' describes one.\n",
           JOBS_USAGE);
    return 0;
  }
  size_t sub = 0;
  while (sub < sizeof jobs_subs / sizeof jobs_subs[0] && strcmp(argv[1], jobs_subs[sub].name))
    sub++;
  if (sub == sizeof jobs_subs / sizeof jobs_subs[0])
    return usage_error("jobs", "unknown subcommand \"%s\" (expected ls, show, retry, cancel or prune)",
                       argv[1]);
  char cmd[16];
  snprintf(cmd, sizeof cmd, "jobs %s", jobs_subs[sub].name);
  static const struct option opts[] = {COMMON_LONG_OPTS,
                                       {"state", required_argument, NULL, OPT_STATE},
                                       {"kind", required_argument, NULL, OPT_KIND},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"older-than", required_argument, NULL, OPT_OLDER_THAN},
                                       {0}};
  common_opts o = {0};
  kjb_jobs_filter f = {0};
  const char *older_than = NULL;
  int64_t older_than_us = 0;
  unsigned given = 0;
  int c;
  argc--, argv++;
  while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    if (common_opt(c, &o))
      continue;
    switch (c) {
    case OPT_STATE: f.state = optarg; given |= JOBS_STATE; break;
    case OPT_KIND: f.kind = optarg; given |= JOBS_KIND; break;
    case OPT_LIMIT:
      if (parse_limit(cmd, optarg, &f.limit))
        return EXIT_USAGE;
      given |= JOBS_LIMIT;
      break;
    case OPT_JSON: f.json = 1; given |= JOBS_JSON; break;
    case OPT_OLDER_THAN: older_than = optarg; given |= JOBS_OLDER_THAN; break;
    case 'h': printf("%s%s", jobs_subs[sub].help, COMMON_HELP); return 0;
    default: return option_error(cmd, c, argv);
    }
  }
  static const char *const names[] = {"--state", "--kind", "--older-than", "--json", "--limit"};
  for (unsigned bit = 0; bit < 5; bit++)
    if (given & ~jobs_subs[sub].takes & (1u << bit))
      return usage_error(cmd, "%s does not apply here", names[bit]);
  int npos = argc - optind;
  const char *name = jobs_subs[sub].name;
  int wants_id = strcmp(name, "show") == 0 || strcmp(name, "cancel") == 0 ||
                 (strcmp(name, "retry") == 0 && !f.state);
  int64_t id = 0;
  if (npos > (wants_id ? 1 : 0))
    return usage_error(cmd, "unexpected argument \"%s\"", argv[optind + (wants_id ? 1 : 0)]);
  if (wants_id && npos == 0)
    return usage_error(cmd, strcmp(name, "retry") == 0 ? "expected a job id or --state"
                                                       : "expected a job id");
  if (wants_id && parse_job_id(cmd, argv[optind], &id))
    return EXIT_USAGE;
  if (strcmp(name, "retry") == 0 && f.kind && !f.state)
    return usage_error(cmd, "--kind needs --state");
  if (strcmp(name, "prune") == 0) {
    if (!older_than)
      return usage_error(cmd, "--older-than is required");
    if (kjb_duration_parse(older_than, &older_than_us) < 0)
      return usage_error(cmd, "bad --older-than \"%s\" (expected a duration such as 30s, 12h or 7d)",
                         older_than);
  }
  kjb_config cfg;
  int rc = load(cmd, &o, &cfg);
  if (rc)
    return rc;
  kjb_err err;
  kjb_store *s = kjb_store_connect(cfg.postgres.conninfo, cfg.postgres.schema, &err);
  long long jid = (long long)id;
  if (!s) {
    rc = fail(cmd, &err);
  } else if (strcmp(name, "ls") == 0) {
    if (kjb_jobs_ls(s, &f, stdout, NULL, &err) < 0)
      rc = fail(cmd, &err);
  } else if (strcmp(name, "show") == 0) {
    int found;
    if (kjb_jobs_show(s, id, f.json, stdout, &found, &err) < 0)
      rc = fail(cmd, &err);
    else if (!found)
      rc = job_error(cmd, "no job %lld", jid);
  } else if (strcmp(name, "retry") == 0 && f.state) {
    int64_t changed;
    if (kjb_jobs_retry_state(s, f.state, f.kind, &changed, &err) < 0)
      rc = fail(cmd, &err);
    /* After a failure partway, the batches before it stay retried. */
    if (rc == 0 || changed > 0)
      printf("retried %lld job%s\n", (long long)changed, changed == 1 ? "" : "s");
  } else if (strcmp(name, "retry") == 0 || strcmp(name, "cancel") == 0) {
    int retry = strcmp(name, "retry") == 0;
    kjb_jobs_result res;
    if ((retry ? kjb_jobs_retry : kjb_jobs_cancel)(s, id, &res, &err) < 0)
      rc = fail(cmd, &err);
    else if (res.outcome == KJB_JOBS_NOT_FOUND)
      rc = job_error(cmd, "no job %lld", jid);
    else if (res.outcome == KJB_JOBS_WRONG_STATE && retry)
      rc = job_error(cmd, "cannot retry job %lld: it is %s", jid, res.state);
    else if (res.outcome == KJB_JOBS_WRONG_STATE)
      rc = job_error(cmd, "cannot cancel job %lld: it is already %s", jid, res.state);
    else if (retry)
      printf("retried 1 job\n");
    else
      printf("cancelled job %lld\n", jid);
  } else {
    int64_t deleted;
    if (kjb_jobs_prune(s, older_than_us, &deleted, &err) < 0)
      rc = fail(cmd, &err);
    if (rc == 0 || deleted > 0)
      printf("pruned %lld job%s\n", (long long)deleted, deleted == 1 ? "" : "s");
  }
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
  printf("libconfig %d.%d.%d\n", LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR,
         LIBCONFIG_VER_REVISION);
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
    {"dlq", cmd_dlq, "dlq peek: show dead-lettered records with their reasons"},
    {"jobs", cmd_jobs, "jobs ls|show|retry|cancel|prune: inspect and act on jobs"},
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
    used += (size_t)snprintf(out + used, cap - used, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ",
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
