/* librdkafka configuration shared by the consumers (ingest, replay, dlq
 * peek) and the producers (the DLQ producer, `kjb produce`). */
#ifndef KJB_KAFKA_H
#define KJB_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "err.h"

/* Builds the configuration of a client of type (RD_KAFKA_CONSUMER or
 * RD_KAFKA_PRODUCER) from kafka.brokers and kafka.properties, with
 * librdkafka's logs routed to kjb's logger. The pairs in defaults ("key",
 * "value", ..., NULL) are set first so that kafka.properties may override
 * them. A property that librdkafka documents as for the other kind of
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

/* kafka.brokers = "embedded" resolves, outside `kjb run`, to the embedded
 * cluster of the service running with the same configuration (found on its
 * http.listen); KJB_EIO when there is none. */

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
