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
rd_kafka_conf_t *kjb_kafka_conf(const kjb_config *cfg, const char *const *defaults,
                                kjb_err *err);

#endif
