/* librdkafka configuration. */
#include "kafka.h"

#include <string.h>

#include "log.h"

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
  kjb_log_level l = level <= 3   ? KJB_LOG_ERROR
                    : level == 4 ? KJB_LOG_WARN
                    : level <= 6 ? KJB_LOG_INFO
                                 : KJB_LOG_DEBUG;
  kjb_log(l, "kafka: %s: %s", fac, buf);
}

static int set(rd_kafka_conf_t *conf, const char *key, const char *val, const char *where,
               kjb_err *err) {
  char why[256];
  if (rd_kafka_conf_set(conf, key, val, why, sizeof why) != RD_KAFKA_CONF_OK)
    return kjb_err_set(err, KJB_ECONFIG, "%s: %s", where, why);
  return 0;
}

rd_kafka_conf_t *kjb_kafka_conf(const kjb_config *cfg, const char *const *defaults,
                                kjb_err *err) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, on_log);
  char where[512];
  snprintf(where, sizeof where, "%s: kafka.brokers", cfg->path);
  if (strcmp(cfg->kafka.brokers, "embedded") == 0) {
    kjb_err_set(err, KJB_ECONFIG, "%s: \"embedded\" is not available in this build", where);
    goto fail;
  }
  if (set(conf, "bootstrap.servers", cfg->kafka.brokers, where, err) < 0)
    goto fail;
  for (size_t i = 0; defaults && defaults[i]; i += 2)
    if (set(conf, defaults[i], defaults[i + 1], "kafka", err) < 0)
      goto fail;
  for (size_t i = 0; i < cfg->kafka.nproperties; i++) {
    const char *p = cfg->kafka.properties[i], *eq = strchr(p, '=');
    char key[256];
    snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - p) : 0, p);
    snprintf(where, sizeof where, "%s: kafka.properties \"%s\"", cfg->path, key);
    if (!eq || set(conf, key, eq + 1, where, err) < 0) {
      if (!eq)
        kjb_err_set(err, KJB_ECONFIG, "%s: expected key=value", where);
      goto fail;
    }
  }
  return conf;
fail:
  rd_kafka_conf_destroy(conf);
  return NULL;
}
