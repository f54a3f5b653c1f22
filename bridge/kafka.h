/* librdkafka configuration shared by the consumer, the DLQ producer and
 * `kjb produce`. */
#ifndef KJB_KAFKA_H
#define KJB_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "err.h"

/* Builds a configuration from kafka.brokers and kafka.properties, with
 * librdkafka's logs routed to kjb's logger. The pairs in defaults
 * ("key", "value", ..., NULL) are set first so that kafka.properties may
 * override them. Returns NULL with err (KJB_ECONFIG) when librdkafka
 * rejects a property. */
rd_kafka_conf_t *kjb_kafka_conf(const kjb_config *cfg, const char *const *defaults, kjb_err *err);

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
