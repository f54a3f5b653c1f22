/* The HTTP server on http.listen: Prometheus metrics and the liveness,
 * readiness and startup probes, answered from a health snapshot that the
 * service keeps up to date. */
#ifndef KJB_HTTP_H
#define KJB_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

typedef struct kjb_http kjb_http;

/* How long the main loops may go without a heartbeat, and the database
 * without a successful query, before /healthz fails. */
#define KJB_HTTP_STALE_US (30 * 1000000LL)

/* What the probes judge by. Times are kjb_now_mono_us() values, 0 for
 * never. */
typedef struct {
  int64_t loop_us;         /* the oldest of the main loops' last heartbeats */
  int64_t db_ok_us;        /* the last successful database query */
  bool db_connected;       /* the last database query succeeded */
  bool consumer;           /* runs the consumer role: Kafka matters */
  bool kafka_connected;    /* a broker answered recently */
  int partitions;          /* currently assigned */
  bool assigned_once;      /* the first assignment happened */
  bool migrations_current; /* no migration is pending */
} kjb_health;

/* Starts serving on addr, "127.0.0.1:9464" or "[::1]:9464" (port 0
 * picks a free port; see kjb_http_port), on a thread of its own. Until the
 * first kjb_http_set_health every probe fails. Returns NULL with err:
 * KJB_ECONFIG when addr is not host:port, KJB_EIO ("could not listen on
 * 127.0.0.1:9464: Address already in use") when the address cannot be
 * bound. */
kjb_http *kjb_http_new(const char *addr, kjb_err *err);

/* The port actually bound. */
int kjb_http_port(const kjb_http *h);

/* Replaces the health snapshot; safe from any thread. */
void kjb_http_set_health(kjb_http *h, const kjb_health *health);

/* Stops serving (waits for requests in progress) and frees h. */
void kjb_http_free(kjb_http *h);

#endif
