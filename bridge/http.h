/* The HTTP server on http.listen: Prometheus metrics, the liveness,
 * readiness and startup probes (answered from a health snapshot that the
 * service keeps up to date), the dashboard at / and the JSON API (api.h). */
#ifndef KJB_HTTP_H
#define KJB_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "util.h"

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
  bool executor;           /* runs executors: the instance works without partitions */
  /* While the process waits at start for what it needs (PostgreSQL), why:
   * it is live meanwhile, neither ready nor started. Empty otherwise. */
  char waiting[576];
} kjb_health;

/* Starts serving on addr, "127.0.0.1:9464" or "[::1]:9464" (port 0
 * picks a free port; see kjb_http_port); HTTPS (TLS 1.2 or newer) when
 * tls is not NULL. Connections are served by a few epoll threads, up to
 * thousands at once (the descriptor limit is raised toward its hard
 * limit for them); the probes are answered from memory there while /api/
 * requests, which may wait on the database, run on worker threads (503
 * when too many wait). Until the first kjb_http_set_health every probe
 * fails with the reason "starting". Returns NULL with err:
 * KJB_ECONFIG when addr is not host:port or a TLS file cannot be read,
 * KJB_EIO ("could not listen on 127.0.0.1:9464: Address already in use")
 * when the address cannot be bound or the server not started. */
typedef struct {
  const char *cert_file; /* PEM: the certificate, then any intermediates */
  const char *key_file;  /* PEM: its private key */
} kjb_http_tls;

kjb_http *kjb_http_new(const char *addr, const kjb_http_tls *tls, kjb_err *err);

/* Serves /api/ from api (NULL: 503 "starting") from now on; api must
 * outlive h or be detached first. */
struct kjb_api;
void kjb_http_set_api(kjb_http *h, struct kjb_api *api);

/* The port actually bound. */
int kjb_http_port(const kjb_http *h);

/* Replaces the health snapshot; safe from any thread. */
void kjb_http_set_health(kjb_http *h, const kjb_health *health);

/* Stops serving (waits for /api/ requests in progress; those still
 * queued are answered 503) and frees h. */
void kjb_http_free(kjb_http *h);

/* Checks one query parameter as the server received it, its name and
 * value percent-decoded: key_size and value_size bytes, each followed by
 * a NUL as libmicrohttpd gives them; value NULL for a name without "=".
 * Both must be valid UTF-8 without NUL bytes (C strings would silently
 * end at one). Returns 0 and appends "name\0value\0" to params (nothing
 * for a NULL value), or -1 with the reason for the 400 answer in why:
 * valid UTF-8, quoting at most 64 bytes of the name, params unchanged. */
int kjb_http_check_param(const char *key, size_t key_size, const char *value, size_t value_size,
                         kjb_buf *params, char *why, size_t why_size);

/* The value of the first parameter called name in params, as
 * kjb_http_check_param appended them, or NULL. */
const char *kjb_http_param(const kjb_buf *params, const char *name);

/* The i-th parameter in params (from 0, in order): its value, with its
 * name in *name; NULL past the last. */
const char *kjb_http_param_at(const kjb_buf *params, size_t i, const char **name);

#endif
