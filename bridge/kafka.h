/* librdkafka configuration shared by the consumers (ingest, replay, dlq
 * peek) and the producers (the DLQ producer, `kjb produce`); the errors
 * that end the commands that run once. */
#ifndef KJB_KAFKA_H
#define KJB_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "err.h"

/* Builds the configuration of a client of type (RD_KAFKA_CONSUMER or
 * RD_KAFKA_PRODUCER) from kafka.brokers and kafka.properties, with
 * librdkafka's logs routed to kjb's logger. Bounds on the client's
 * buffers come first (a consumer prefetches at most 4 MiB, a producer
 * queues at most 16 MiB), then the pairs in defaults ("key", "value", ...,
 * NULL), then kafka.properties, each overriding the ones before. A property that librdkafka documents as for the other kind of
 * client only is left out (kjb_kafka_property_applies), so that one list
 * serves the consumers and the producers alike. Returns NULL with err
 * (KJB_ECONFIG) when librdkafka rejects a property, or (KJB_EIO) when
 * "embedded" finds no cluster. */
rd_kafka_conf_t *kjb_kafka_conf(const kjb_config *cfg, rd_kafka_type_t type,
                                const char *const *defaults, kjb_err *err);

/* Whether a client of type reads property key: false when librdkafka's
 * property table marks key as for the other kind of client only (such
 * as "fetch.max.bytes", a consumer's, or "linger.ms", a producer's),
 * true otherwise, including for keys the table does not list. */
bool kjb_kafka_property_applies(const char *key, rd_kafka_type_t type);

/* Checks kafka.properties entries, "key=value" each (kjb_config_load
 * has checked that form), as librdkafka will take them: an unknown key or
 * a value librdkafka refuses (type, range, enumeration) is an error, and
 * so is a numeric property's value that only starts with a number ("45s",
 * which librdkafka would read as 45). No client is made and no broker needed;
 * what librdkafka only checks when a client starts (files, combinations
 * of keys) is left to then. Returns 0, or -KJB_ECONFIG with the index of
 * the first entry refused in *bad and err->msg as "\"<key>\": <reason>",
 * the reason in librdkafka's words where it is librdkafka's. */
int kjb_kafka_check_properties(char *const *props, size_t n, size_t *bad, kjb_err *err);

/* kafka.brokers = "embedded" resolves, outside `kjb run`, to the embedded
 * cluster of the service running with the same configuration (found on its
 * http.listen); KJB_EIO when there is none. */

/* What stops a client that runs once (`kjb produce`, `kjb replay`,
 * `kjb dlq peek`): an error that retrying will not mend. `kjb run` keeps
 * retrying instead and reports itself not ready. */
typedef struct {
  int failed;       /* set by the first error retrying will not mend */
  char reason[512]; /* that error, with what failed; before it, the last other one */
} kjb_kafka_errors;

/* For a client's error callback: records err (librdkafka's code, as
 * the callback gets it) in *e. An error retrying will not mend — the
 * broker refused the SASL login (wrong password, a user without
 * credentials for the mechanism, a mechanism it does not offer), the TLS
 * handshake failed (a certificate that does not verify), or librdkafka
 * raised a fatal error — sets e->failed and its reason; only the first
 * is kept. Any other error is logged, as librdkafka would without a
 * callback, and kept as the last one. Returns e->failed. */
int kjb_kafka_note_error(kjb_kafka_errors *e, rd_kafka_t *rk, int err, const char *reason);

/* Waits up to timeout_ms until rk has a broker connection it can send
 * requests on (connected and logged in), serving rk's queue meanwhile
 * with rd_kafka_poll(), so that its error callback feeds *e through
 * kjb_kafka_note_error: call it before a consumer is assigned anything.
 * Returns 0 once there is one; KJB_EKAFKA with err as soon as e->failed,
 * or when the time is up. */
int kjb_kafka_wait_connected(rd_kafka_t *rk, const kjb_kafka_errors *e, int timeout_ms,
                             kjb_err *err);

/* A consumer for a command that runs once (`kjb dlq peek`, `kjb dlq
 * reindex`): kafka.properties and defaults as kjb_kafka_conf applies them,
 * its errors fed into *e (which must outlive it), and connected within
 * 10 s (kjb_kafka_wait_connected), so that a refused login ends the
 * command at once. Returns NULL with err on any failure. */
rd_kafka_t *kjb_kafka_consumer_connect(const kjb_config *cfg, const char *const *defaults,
                                       kjb_kafka_errors *e, kjb_err *err);

/* An in-process Kafka cluster for development (librdkafka's mock cluster):
 * one broker on a free loopback port, records in memory only, the mapped
 * topics and their DLQs created with 4 partitions. */
typedef struct kjb_embedded kjb_embedded;

kjb_embedded *kjb_embedded_start(const kjb_config *cfg, kjb_err *err);
/* "127.0.0.1:PORT", valid until kjb_embedded_stop. */
const char *kjb_embedded_bootstraps(const kjb_embedded *e);
/* Stops the cluster; its clients must be gone. NULL does nothing. */
void kjb_embedded_stop(kjb_embedded *e);

#endif
