/* Ingest: the consumer side of `kjb run`. Reads the configured topics in
 * one consumer group, decodes and maps records in batches, inserts their
 * jobs in one transaction per batch, dead-letters what cannot be decoded
 * or mapped, and commits offsets only after both are durable. */
#ifndef KJB_INGEST_H
#define KJB_INGEST_H

#include <signal.h>
#include <stdint.h>

#include "catalog.h"
#include "config.h"
#include "err.h"

typedef struct kjb_ingest kjb_ingest;

typedef struct {
  uint64_t records;       /* consumed and accounted for (committed) */
  uint64_t jobs_inserted; /* new rows */
  uint64_t dead_lettered;
  uint64_t batches;
  /* Where the time went, in microseconds: waiting on the consumer, decoding
   * and mapping, storing jobs, settling dead letters, committing offsets. */
  uint64_t poll_us, process_us, store_us, settle_us, commit_us;
} kjb_ingest_stats;

/* Creates the consumer, the DLQ producer and the store connection. cfg
 * and catalog must outlive the ingest. */
kjb_ingest *kjb_ingest_new(const kjb_config *cfg, kjb_catalog *catalog, kjb_err *err);

/* Runs until *stop becomes non-zero, then drains: finishes the batch in
 * hand, commits, and leaves the group. Returns 0, or a negative code for
 * a fatal error. */
int kjb_ingest_run(kjb_ingest *ing, volatile sig_atomic_t *stop, kjb_err *err);

void kjb_ingest_get_stats(const kjb_ingest *ing, kjb_ingest_stats *out);
void kjb_ingest_free(kjb_ingest *ing);

typedef struct {
  int64_t loop_us;     /* the loop's last round (kjb_now_mono_us()), 0 before it ran */
  int kafka_connected; /* a broker answered a metadata request within the timeout */
  int partitions;      /* currently assigned */
} kjb_ingest_health_info;

/* Fills out for the health probes and sets the kjb_consumer_lag gauges of
 * the assigned partitions; asks the brokers, so it may block a few times
 * timeout_ms. Safe from any thread while ing is alive; once kjb_ingest_run
 * has closed the consumer it reports nothing connected or assigned. */
void kjb_ingest_health(kjb_ingest *ing, int timeout_ms, kjb_ingest_health_info *out);

#endif
