/* Ingest: consume, decode, map, insert, dead-letter, commit.
 *
 * A batch is a run of records from any assigned partitions. Its jobs are
 * inserted in one PostgreSQL transaction; only then are the batch's
 * offsets committed. A crash at any point leaves the offsets behind the
 * work, and redelivery inserts nothing twice because jobs are unique by
 * their source coordinates.
 *
 * Dead letters cannot be deduplicated that way, so a batch that has any
 * goes out in one Kafka transaction together with the batch's offsets:
 * either the group's offsets move and the dead letters become visible to
 * read_committed readers, or neither happens and the records come again
 * (after a crash, to whichever member owns the partition then). Batches
 * without dead letters commit their offsets the plain way, except with
 * the cooperative protocol on librdkafka before 2.10 (see txn_commits).
 * Each dead letter's row in kjb.dead_letters is written inside that
 * transaction, before its commit (see offsets_txn for how the two stay in
 * step). Those last steps run in a thread while the next batch is
 * consumed, its dead letters going into a transaction of a second
 * producer (see committing); transactions still commit one at a time and
 * in batch order.
 *
 * Rebalances: offsets are committed only for partitions this member owns,
 * before it gives them up, and never once its assignment is lost; an
 * offset whose commit failed stays pending with its partition and is
 * committed again. With the cooperative protocol the partitions that stay
 * keep flowing, and keep their state, through other members' joins and
 * leaves.
 *
 * librdkafka's mock cluster (kafka.brokers = "embedded") accepts
 * transactions but neither stores their offsets nor hides aborted records,
 * so there dead letters are produced, awaited, indexed, and then the
 * offsets committed: a crash in between can write a dead letter twice
 * (its row then points at the second). */
#include "ingest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dlq.h"
#include "dlqindex.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "stats.h"
#include "record.h"
#include "store.h"
#include "trace.h"

static const char CONSUMED_HELP[] = "Source records consumed and accounted for.";

#define BACKOFF_MIN_US (250 * 1000LL)
#define BACKOFF_MAX_US (30 * 1000000LL)
#define COMMIT_RETRY_US (1000 * 1000LL)

typedef struct {
  const kjb_topic_cfg *topic;
  int32_t partition;
  int64_t first_offset; /* the batch's first record here: where a redo starts */
  int64_t next_offset;  /* to commit: last accounted offset + 1; -1 none */
  int blocked;          /* a transient failure stopped this partition */
  int64_t retry_offset; /* where to resume after the backoff */
  uint64_t records;     /* accounted for in this batch */
} part_state;

typedef struct {
  rd_kafka_message_t *msg; /* the source record, kept until acknowledged */
  const kjb_topic_cfg *topic;
  const char *stage;
  kjb_err reason;
  int state;             /* 0 in flight, 1 delivered, -1 failed */
  int64_t at_us;         /* when it was dead-lettered, whole milliseconds: header and row */
  int32_t dlq_partition; /* where the delivery report put it */
  int64_t dlq_offset;
  int produced; /* in the open transaction */
} dead_letter;

/* A partition this member owns, from its assignment to its revocation.
 * Unlike part_state it outlives batches: an offset commit that failed
 * (with the cooperative protocol a member keeps consuming while others
 * rebalance, and a commit in the middle of that is refused) stays
 * pending here and is made again, even when no more records come. */
typedef struct {
  const kjb_topic_cfg *topic;
  int32_t partition;
  int64_t durable;   /* every record before it is stored or dead-lettered; -1 none yet */
  int64_t committed; /* the last offset this member committed; -1 none */
  int paused;        /* after a transient failure, until resume_at_us */
  int64_t resume_at_us;
  int64_t backoff_us;
} owned_part;

/* A record of the batch that gets a span when the batch is committed. */
typedef struct {
  char trace_id[33], span_id[17], parent_id[17];
  const kjb_topic_cfg *topic;
  int32_t partition;
  int64_t offset;
  int64_t start_us; /* wall clock, when it was consumed */
  size_t jobs;
  int dead_lettered;
} traced;

/* A batch whose dead letters are acknowledged and whose offsets are in
 * their transaction: a thread commits the index rows and then the
 * transaction (offsets_txn's last two steps) while the loop consumes the
 * next batch. Dead letters go out in two lanes, each a transactional
 * producer and an index connection: the committing batch has one, and
 * the next batch's dead letters go into a transaction of the other as
 * they are made, so that their acknowledgements come while PostgreSQL
 * writes the rows of the batch before. Every commit waits for the
 * committing batch's (finish_commit), so transactions commit in batch
 * order; when one fails, the batches after it are consumed again too. */
typedef struct {
  pthread_t thread;
  bool threaded;    /* thread was started (else its work was done in place) */
  bool running;     /* handed over and not yet settled (finish_commit) */
  atomic_bool done; /* the thread has returned */
  dead_letter *dls;
  size_t ndls, capdls;
  part_state *parts;
  size_t nparts, capparts;
  traced *traced;
  size_t ntraced, captraced;
  size_t nrecords, inserted;
  rd_kafka_topic_partition_list_t *offsets;
  kjb_dlq_entry *entries;
  size_t capentries;
  /* The committing batch's lane, or, while none commits, the lane not in
   * use (NULL until first needed). */
  kjb_store *dlstore;
  rd_kafka_t *producer;
  int txn_ready;
  /* What the thread did: the index failed (err), or the commit (error). */
  bool index_failed;
  kjb_err err;
  rd_kafka_error_t *error;
} committing;

struct kjb_ingest {
  const kjb_config *cfg;
  kjb_catalog *catalog;
  rd_kafka_t *consumer;
  rd_kafka_t *producer; /* transactional: dead letters with their offsets */
  int txn_ready;        /* init_transactions done on this producer */
  int txn_open;         /* a transaction is begun: the batch's dead letters go into it */
  unsigned producers;   /* made so far, for unique transactional ids */
  kjb_store *store;     /* jobs */
  kjb_store *dlstore;   /* the dead-letter index, streamed while jobs are */
  kjb_arena *arena;
  volatile sig_atomic_t *stop;

  kjb_rows rows;
  part_state *parts;
  size_t nparts, capparts;
  dead_letter *dls;
  size_t ndls, capdls;
  uint32_t batch_gen; /* tells a late delivery report from an earlier batch's */
  size_t nrecords;    /* records in the current batch */
  traced *traced;     /* the batch's records with a span to export */
  size_t ntraced, captraced;

  owned_part *owned; /* the current assignment */
  size_t nowned, capowned;
  int64_t commit_retry_us; /* when to commit pending offsets again; 0 none pending */
  int cooperative;         /* the configured assignor's protocol, should librdkafka not say */
  int txn_commits;         /* every offset commit goes through the producer's transactions */

  committing cm;

  kjb_ingest_stats stats;
  _Atomic int64_t alive_us; /* the loop's last round, for the health probes */
  /* Once the consumer is closed its group queue is no longer served and
   * rd_kafka_assignment() would wait forever: the health thread asks under
   * this lock, and only while `closed` is 0. */
  pthread_mutex_t close_mu;
  int closed;
};

static void sleep_us(int64_t us) {
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

/* Sleeps *backoff_us, then doubles it, up to BACKOFF_MAX_US. */
static void back_off(int64_t *backoff_us) {
  sleep_us(*backoff_us);
  *backoff_us = *backoff_us * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : *backoff_us * 2;
}

/* After a failed write to PostgreSQL: drops the connection and, unless a
 * stop is requested (-1), backs off and connects again (0; ing->store is
 * NULL, with err, when that failed too). */
static int reconnect(kjb_ingest *ing, int64_t *backoff_us, kjb_err *err) {
  kjb_store_free(ing->store);
  ing->store = NULL;
  if (*ing->stop)
    return -1;
  back_off(backoff_us);
  ing->store =
      kjb_store_connect_durable(ing->cfg->postgres.conninfo, ing->cfg->postgres.schema, err);
  return 0;
}

static part_state *part_for(kjb_ingest *ing, const kjb_topic_cfg *t, int32_t partition) {
  for (size_t i = 0; i < ing->nparts; i++)
    if (ing->parts[i].topic == t && ing->parts[i].partition == partition)
      return &ing->parts[i];
  ing->parts = kjb_xgrow(ing->parts, &ing->capparts, ing->nparts + 1, sizeof *ing->parts);
  part_state *p = &ing->parts[ing->nparts++];
  *p = (part_state){t, partition, -1, -1, 0, -1, 0};
  return p;
}

static const kjb_topic_cfg *topic_for(kjb_ingest *ing, const rd_kafka_message_t *m) {
  const char *name = rd_kafka_topic_name(m->rkt);
  return kjb_config_topic(ing->cfg, name);
}

static owned_part *owned_find(kjb_ingest *ing, const kjb_topic_cfg *t, int32_t partition) {
  for (size_t i = 0; i < ing->nowned; i++)
    if (ing->owned[i].topic == t && ing->owned[i].partition == partition)
      return &ing->owned[i];
  return NULL;
}

/* The entry of an assigned partition, made when new. */
static owned_part *owned_get(kjb_ingest *ing, const kjb_topic_cfg *t, int32_t partition) {
  owned_part *op = owned_find(ing, t, partition);
  if (op)
    return op;
  ing->owned = kjb_xgrow(ing->owned, &ing->capowned, ing->nowned + 1, sizeof *ing->owned);
  op = &ing->owned[ing->nowned++];
  *op = (owned_part){t, partition, -1, -1, 0, 0, 0};
  return op;
}

/* ---- dead letters --------------------------------------------------- */

/* A dead letter's delivery-report opaque: its batch and index. */
_Static_assert(sizeof(uintptr_t) >= 8, "a delivery opaque holds 32 + 32 bits");
#define DL_OPAQUE(gen, i) ((void *)(((uintptr_t)(gen) << 32) | (uintptr_t)(uint32_t)(i)))

/* The index row of dead letter i, delivered. */
static kjb_dlq_entry entry_of(const kjb_ingest *ing, size_t i) {
  const dead_letter *d = &ing->dls[i];
  const rd_kafka_message_t *m = d->msg;
  rd_kafka_timestamp_type_t tstype;
  return (kjb_dlq_entry){
      .dlq_topic = d->topic->dlq,
      .dlq_partition = d->dlq_partition,
      .dlq_offset = d->dlq_offset,
      .source_topic = d->topic->topic,
      .source_partition = m->partition,
      .source_offset = m->offset,
      .key = m->key,
      .key_len = m->key_len,
      .reason = kjb_err_name(d->reason.code),
      .stage = d->stage,
      .message = d->reason.msg,
      .consumer_group = ing->cfg->kafka.group,
      .original_timestamp = rd_kafka_message_timestamp(m, &tstype),
      .dead_lettered_at = d->at_us,
      .value_size = m->payload ? m->len : 0,
  };
}

/* In a transaction, a dead letter's row is streamed to PostgreSQL as
 * soon as its DLQ coordinates are known, so that the index is written
 * while the batch goes on (offsets_txn commits it). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  kjb_ingest *ing = opaque;
  uintptr_t tag = (uintptr_t)m->_private;
  size_t i = (size_t)(uint32_t)tag;
  if ((uint32_t)(tag >> 32) != ing->batch_gen || i >= ing->ndls)
    return;
  ing->dls[i].state = m->err ? -1 : 1;
  ing->dls[i].dlq_partition = m->partition;
  ing->dls[i].dlq_offset = m->offset;
  if (m->err)
    kjb_warn("dead letter for %s [%d] @%lld not delivered: %s", ing->dls[i].topic->topic,
             (int)ing->dls[i].msg->partition, (long long)ing->dls[i].msg->offset,
             rd_kafka_err2str(m->err));
  else if (ing->txn_open && ing->dlstore) {
    kjb_dlq_entry e = entry_of(ing, i);
    kjb_dlqindex_stream(ing->dlstore, &e);
  }
}

static rd_kafka_resp_err_t produce_dead_letter(kjb_ingest *ing, size_t i) {
  dead_letter *d = &ing->dls[i];
  const rd_kafka_message_t *m = d->msg;
  rd_kafka_headers_t *orig = NULL, *h;
  if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR)
    h = rd_kafka_headers_copy(orig);
  else
    h = rd_kafka_headers_new(12);
  char error_class[64];
  rd_kafka_timestamp_type_t tstype;
  kjb_buf at;
  kjb_buf_init(&at);
  kjb_buf_rfc3339(&at, d->at_us, 3);
  kjb_dlq_headers_add(
      h, &(kjb_dead_letter){
             .topic = d->topic->topic,
             .partition = m->partition,
             .offset = m->offset,
             .stage = d->stage,
             .error_class = kjb_dlq_error_class(d->reason.code, error_class, sizeof error_class),
             .message = d->reason.msg,
             .timestamp = rd_kafka_message_timestamp(m, &tstype),
             .group = ing->cfg->kafka.group,
             .at = at.data,
         });
  kjb_buf_close(&at);
  d->state = 0;
  rd_kafka_resp_err_t e;
  do {
    e = rd_kafka_producev(ing->producer, RD_KAFKA_V_TOPIC(d->topic->dlq),
                          RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
                          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(DL_OPAQUE(ing->batch_gen, i)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && (rd_kafka_poll(ing->producer, 100), 1));
  if (e) {
    rd_kafka_headers_destroy(h);
    d->state = -1;
  }
  return e;
}

static int make_producer(kjb_ingest *ing, kjb_err *err);

/* Without transactions: produces the batch's dead letters and waits until
 * every one is acknowledged, producing failed ones again with backoff.
 * Returns 0, or -1 when asked to stop first. */
static int settle_dead_letters(kjb_ingest *ing) {
  for (size_t i = 0; i < ing->ndls; i++)
    if (produce_dead_letter(ing, i))
      kjb_warn("could not produce dead letter to \"%s\"", ing->dls[i].topic->dlq);
  int64_t backoff = BACKOFF_MIN_US;
  for (;;) {
    rd_kafka_flush(ing->producer, 1000);
    size_t inflight = 0, failed = 0;
    for (size_t i = 0; i < ing->ndls; i++) {
      inflight += ing->dls[i].state == 0;
      failed += ing->dls[i].state < 0;
    }
    if (inflight == 0 && failed == 0)
      return 0;
    if (*ing->stop && inflight == 0)
      return -1;
    if (failed) {
      back_off(&backoff);
      for (size_t i = 0; i < ing->ndls; i++)
        if (ing->dls[i].state < 0)
          produce_dead_letter(ing, i);
    }
  }
}

/* The connection the index is written on, made when missing. */
static kjb_store *dlstore(kjb_ingest *ing, kjb_err *err) {
  if (!ing->dlstore)
    ing->dlstore =
        kjb_store_connect_durable(ing->cfg->postgres.conninfo, ing->cfg->postgres.schema, err);
  return ing->dlstore;
}

/* After the index could not be written: PostgreSQL is likely away, and
 * the next batch's store_batch reconnects with backoff. */
static void drop_connections(kjb_ingest *ing) {
  kjb_store_free(ing->dlstore);
  ing->dlstore = NULL;
  kjb_store_free(ing->store);
  ing->store = NULL;
}

/* Writes the rows of the batch's dead letters, all delivered, at the DLQ
 * coordinates their delivery reports gave: in a transaction, commits
 * those streamed as the reports came (see on_delivery). Returns 0, or -1
 * with err; then both connections are dropped: PostgreSQL is likely
 * away, and the next batch's store_batch reconnects with backoff. */
static int index_dead_letters(kjb_ingest *ing, kjb_err *err) {
  kjb_dlq_entry *e = kjb_xcalloc(ing->ndls, sizeof *e);
  for (size_t i = 0; i < ing->ndls; i++)
    e[i] = entry_of(ing, i);
  int streamed = ing->txn_open && ing->dlstore;
  kjb_store *s = dlstore(ing, err);
  int rc = !s         ? -1
           : streamed ? kjb_dlqindex_stream_finish(s, e, ing->ndls, err)
                      : kjb_dlqindex_upsert(s, e, ing->ndls, err);
  free(e);
  if (rc < 0) {
    drop_connections(ing);
    return -1;
  }
  return 0;
}

/* Begins the transaction that the batch's dead letters and offsets go
 * into, when none is open (initialising the producer's transactions the
 * first time). */
static rd_kafka_error_t *open_txn(kjb_ingest *ing) {
  rd_kafka_error_t *e;
  if (ing->txn_open)
    return NULL;
  if (!ing->txn_ready) {
    if ((e = rd_kafka_init_transactions(ing->producer, 30000)))
      return e;
    ing->txn_ready = 1;
  }
  if ((e = rd_kafka_begin_transaction(ing->producer)))
    return e;
  ing->txn_open = 1;
  return NULL;
}

/* Produces dead letter i as soon as it is made, in the batch's
 * transaction, so that the broker stores it, and PostgreSQL its row,
 * while the batch goes on. When that cannot be done now, offsets_txn
 * does it. */
static void produce_early(kjb_ingest *ing, size_t i) {
  if (ing->cfg->kafka.embedded)
    return;
  rd_kafka_error_t *e = open_txn(ing);
  if (e) {
    rd_kafka_error_destroy(e);
    return;
  }
  kjb_err err;
  if (!ing->dlstore && !dlstore(ing, &err))
    kjb_debug("dead-letter index: %s (written when the batch commits)", err.msg);
  if (produce_dead_letter(ing, i) == RD_KAFKA_RESP_ERR_NO_ERROR)
    ing->dls[i].produced = 1;
}

/* One attempt at a Kafka transaction of offsets and, when ndls is not 0,
 * the batch's dead letters and their rows in kjb.dead_letters. NULL when
 * committed.
 *
 * How the index and the DLQ stay consistent. The dead letters are
 * produced in the transaction (most of them as they are made, see
 * produce_early) and awaited, so that their delivery reports give each
 * one's DLQ partition and offset; the offsets are sent to the
 * transaction (the group coordinator checks here that this member still
 * owns the partitions); then the rows (streamed to PostgreSQL as the
 * reports came, in a transaction of their own) are committed in
 * PostgreSQL (durably: the store's session pins synchronous_commit);
 * only then is the Kafka transaction committed. Hence:
 * - a committed DLQ record always has its row: the row committed before
 *   the record could (a source record dead-lettered twice, its group's
 *   offsets reset by hand, has one row, for its latest DLQ record);
 * - a row can point at a record that never commits only between the
 *   PostgreSQL commit and the Kafka commit, or if the process dies or the
 *   Kafka commit fails there. The source offsets were in the same
 *   transaction and did not move either, so the source records are
 *   consumed again (here after the rewind, or by the partition's next
 *   owner, who waits for the transaction to abort first), dead-lettered
 *   again, and the upsert, unique on source coordinates and DLQ topic,
 *   moves the row to the new record. Readers with read_committed never
 *   see the aborted one.
 * The window stays open only if the record is not dead-lettered again:
 * when the configuration changed meanwhile so that it now becomes jobs,
 * or goes to another DLQ topic, or when a member stalled past
 * transaction.timeout.ms between the offsets and its upsert while another
 * took over. `kjb dlq reindex` removes such rows. */
static rd_kafka_error_t *
offsets_txn_send(kjb_ingest *ing, const rd_kafka_topic_partition_list_t *offsets, size_t ndls);

static rd_kafka_error_t *offsets_txn(kjb_ingest *ing,
                                     const rd_kafka_topic_partition_list_t *offsets, size_t ndls) {
  rd_kafka_error_t *e = offsets_txn_send(ing, offsets, ndls);
  if (e)
    return e;
  kjb_err err;
  if (ndls && index_dead_letters(ing, &err) < 0)
    return rd_kafka_error_new(RD_KAFKA_RESP_ERR__FAIL, "%s", err.msg);
  e = rd_kafka_commit_transaction(ing->producer, 30000);
  if (e)
    return e;
  ing->txn_open = 0;
  return NULL;
}

/* offsets_txn up to and with sending the offsets. */
static rd_kafka_error_t *
offsets_txn_send(kjb_ingest *ing, const rd_kafka_topic_partition_list_t *offsets, size_t ndls) {
  rd_kafka_error_t *e = open_txn(ing);
  if (e)
    return e;
  for (size_t i = 0; i < ndls; i++) {
    if (ing->dls[i].produced)
      continue;
    rd_kafka_resp_err_t pe = produce_dead_letter(ing, i);
    if (pe)
      return rd_kafka_error_new(pe, "could not produce dead letter to \"%s\": %s",
                                ing->dls[i].topic->dlq, rd_kafka_err2str(pe));
    ing->dls[i].produced = 1;
  }
  rd_kafka_flush(ing->producer, 30000);
  for (size_t i = 0; i < ndls; i++)
    if (ing->dls[i].state != 1)
      return rd_kafka_error_new(RD_KAFKA_RESP_ERR__FAIL, "dead letter to \"%s\" %s",
                                ing->dls[i].topic->dlq,
                                ing->dls[i].state ? "not delivered" : "not acknowledged in 30 s");
  rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(ing->consumer);
  e = rd_kafka_send_offsets_to_transaction(ing->producer, offsets, cgmd, 30000);
  rd_kafka_consumer_group_metadata_destroy(cgmd);
  return e;
}

/* Without transactions: writes the rows of the settled dead letters,
 * again with backoff until done (0) or asked to stop (-1). */
static int index_settled(kjb_ingest *ing) {
  kjb_err err;
  int64_t backoff = BACKOFF_MIN_US;
  while (index_dead_letters(ing, &err) < 0) {
    kjb_warn("could not index %zu dead letter(s): %s; retrying in %lld ms", ing->ndls, err.msg,
             (long long)(backoff / 1000));
    if (reconnect(ing, &backoff, &err) < 0)
      return -1;
  }
  return 0;
}

/* Aborts the open transaction, until the coordinator confirms, and the
 * index rows streamed for it; a producer in a fatal state (fatal, or
 * found so) is replaced instead. Returns 1, or -1 when asked to stop
 * first. */
static int abort_txn(kjb_ingest *ing, int fatal) {
  if (ing->dlstore)
    kjb_store_stream_abort(ing->dlstore);
  ing->txn_open = 0;
  rd_kafka_error_t *e;
  int64_t backoff = BACKOFF_MIN_US;
  while (!fatal && ing->txn_ready && (e = rd_kafka_abort_transaction(ing->producer, 30000))) {
    fatal = rd_kafka_error_is_fatal(e);
    if (!fatal && rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__STATE) {
      rd_kafka_error_destroy(e); /* no transaction was begun */
      break;
    }
    kjb_warn("could not abort the offsets' transaction: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    if (!fatal) {
      if (*ing->stop)
        return -1;
      back_off(&backoff);
    }
  }
  if (fatal) {
    kjb_err err;
    rd_kafka_destroy(ing->producer);
    ing->producer = NULL;
    while (make_producer(ing, &err) < 0) {
      kjb_warn("%s", err.msg);
      if (*ing->stop)
        return -1;
      sleep_us(BACKOFF_MAX_US);
    }
  }
  return *ing->stop ? -1 : 1;
}

/* Commits offsets in one Kafka transaction, with the batch's dead letters
 * when ndls is not 0. Returns 0 when committed, 1 when the transaction was
 * aborted (nothing of it is visible: the batch's records with dead letters
 * must be consumed again), -1 when asked to stop after a failure (nothing
 * committed either). */
static int txn_failed(kjb_ingest *ing, rd_kafka_error_t *e, size_t ndls);

static int commit_in_txn(kjb_ingest *ing, const rd_kafka_topic_partition_list_t *offsets,
                         size_t ndls) {
  rd_kafka_error_t *e = offsets_txn(ing, offsets, ndls);
  return e ? txn_failed(ing, e, ndls) : 0;
}

/* Reports e, the failure of the transaction of a batch with ndls dead
 * letters, destroys it and aborts the transaction; commit_in_txn's
 * returns. */
static int txn_failed(kjb_ingest *ing, rd_kafka_error_t *e, size_t ndls) {
  if (ndls)
    kjb_warn("could not commit %zu dead letter(s) with their offsets: %s; the batch's records "
             "will be consumed again",
             ndls, rd_kafka_error_string(e));
  else
    kjb_warn("could not commit offsets in a transaction: %s; they are committed again later",
             rd_kafka_error_string(e));
  int fatal = rd_kafka_error_is_fatal(e);
  rd_kafka_error_destroy(e);
  return abort_txn(ing, fatal);
}

/* Moves the batch's partitions back to its first records, so that an
 * aborted batch is consumed again; jobs already stored are skipped then. */
static void rewind_parts(kjb_ingest *ing, const part_state *parts, size_t nparts) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)nparts);
  for (size_t i = 0; i < nparts; i++) {
    const part_state *ps = &parts[i];
    int64_t at = ps->first_offset >= 0 ? ps->first_offset : ps->retry_offset;
    if (at >= 0)
      rd_kafka_topic_partition_list_add(l, ps->topic->topic, ps->partition)->offset = at;
  }
  rd_kafka_error_t *e = l->cnt ? rd_kafka_seek_partitions(ing->consumer, l, 5000) : NULL;
  if (e) {
    kjb_warn("could not rewind the batch: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  for (int i = 0; i < l->cnt; i++)
    if (l->elems[i].err)
      kjb_warn("could not rewind %s [%d]: %s (no longer assigned: its new owner consumes it)",
               l->elems[i].topic, (int)l->elems[i].partition, rd_kafka_err2str(l->elems[i].err));
  rd_kafka_topic_partition_list_destroy(l);
}

static void rewind_batch(kjb_ingest *ing) { rewind_parts(ing, ing->parts, ing->nparts); }

/* ---- one record ----------------------------------------------------- */

static void dead_letter_record(kjb_ingest *ing, rd_kafka_message_t *m, const kjb_topic_cfg *t,
                               const char *stage, const kjb_err *why) {
  ing->dls = kjb_xgrow(ing->dls, &ing->capdls, ing->ndls + 1, sizeof *ing->dls);
  size_t i = ing->ndls++;
  ing->dls[i] = (dead_letter){m, t, stage, *why, 0, kjb_now_wall_us() / 1000 * 1000, -1, -1, 0};
  kjb_info("dead-lettering %s [%d] @%lld to \"%s\": kjb.%s: %s", t->topic, (int)m->partition,
           (long long)m->offset, t->dlq, kjb_err_name(why->code), why->msg);
}

/* Decodes and maps one record into the batch. Returns 1 when the record
 * must be kept (its message is owned by a dead letter), 0 when the caller
 * may destroy the message, -1 on a transient failure (the partition is
 * blocked and the record will be consumed again). */
/* With spans exported: the consumer's span for m, when m's trace is
 * sampled (its traceparent says so) or m starts one (no trace context,
 * and tracing.sample_ratio picks it). Returns the traceparent the jobs
 * continue, in buf, or NULL for none. */
static const char *trace_record(kjb_ingest *ing, const rd_kafka_message_t *m,
                                const rd_kafka_headers_t *h, const kjb_topic_cfg *t, char *buf) {
  if (!kjb_otlp_enabled())
    return NULL;
  const void *tp;
  size_t len;
  bool has = h && rd_kafka_header_get_last(h, "traceparent", &tp, &len) == 0 && tp &&
             kjb_traceparent_valid(tp, len);
  if (has ? !kjb_traceparent_sampled(tp) : !kjb_otlp_sample_root())
    return NULL;
  ing->traced = kjb_xgrow(ing->traced, &ing->captraced, ing->ntraced + 1, sizeof *ing->traced);
  traced *x = &ing->traced[ing->ntraced++];
  *x = (traced){
      .topic = t, .partition = m->partition, .offset = m->offset, .start_us = kjb_now_wall_us()};
  if (has) {
    memcpy(x->trace_id, (const char *)tp + 3, 32);
    memcpy(x->parent_id, (const char *)tp + 36, 16);
  } else {
    kjb_trace_new_id(x->trace_id, 16);
  }
  kjb_trace_new_id(x->span_id, 8);
  snprintf(buf, KJB_TRACEPARENT_LEN + 1, "00-%s-%s-01", x->trace_id, x->span_id);
  return buf;
}

/* Exports the spans of the batch just committed. */
static void export_spans(const traced *t, size_t n) {
  int64_t now = kjb_now_wall_us();
  for (size_t i = 0; i < n; i++) {
    const traced *x = &t[i];
    kjb_span s = {.name = "kjb ingest",
                  .kind = 5,
                  .start_us = x->start_us,
                  .end_us = now,
                  .error = x->dead_lettered ? "dead-lettered" : NULL,
                  .attrs = {{"messaging.system", "kafka", 0},
                            {"messaging.destination.name", x->topic->topic, 0},
                            {"messaging.destination.partition.id", NULL, x->partition},
                            {"messaging.kafka.offset", NULL, x->offset},
                            {"kjb.jobs", NULL, (int64_t)x->jobs},
                            {"kjb.outcome", x->dead_lettered ? "dead_letter" : "jobs", 0}},
                  .nattrs = 6};
    memcpy(s.trace_id, x->trace_id, sizeof s.trace_id);
    memcpy(s.span_id, x->span_id, sizeof s.span_id);
    memcpy(s.parent_id, x->parent_id, sizeof s.parent_id);
    kjb_otlp_span(&s);
  }
}

static int process(kjb_ingest *ing, rd_kafka_message_t *m, const kjb_topic_cfg *t, part_state *ps) {
  rd_kafka_timestamp_type_t tstype;
  rd_kafka_headers_t *hdrs = NULL;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
    hdrs = NULL;
  kjb_record r = {
      .topic = t->topic,
      .partition = m->partition,
      .offset = m->offset,
      .timestamp = rd_kafka_message_timestamp(m, &tstype),
      .key = m->key,
      .key_len = m->key_len,
      .value = m->payload,
      .len = m->len,
      .headers = hdrs,
  };
  size_t ntraced = ing->ntraced;
  char context[KJB_TRACEPARENT_LEN + 1];
  r.trace_context = trace_record(ing, m, hdrs, t, context);
  size_t first = ing->rows.n;
  const char *stage;
  kjb_err err;
  int rc = kjb_record_to_jobs(ing->catalog, t, &r, ing->arena, &ing->rows, &stage, &err);
  if (rc < 0 && kjb_err_is_transient(&err)) {
    kjb_warn("%s [%d] @%lld: %s; will retry", t->topic, (int)m->partition, (long long)m->offset,
             err.msg);
    ps->blocked = 1;
    ps->retry_offset = m->offset;
    ing->ntraced = ntraced; /* consumed again later, with a span then */
    return -1;
  }
  if (ing->ntraced > ntraced) {
    ing->traced[ntraced].jobs = ing->rows.n - first;
    ing->traced[ntraced].dead_lettered = rc < 0;
  }
  if (ps->first_offset < 0)
    ps->first_offset = m->offset;
  ps->next_offset = m->offset + 1;
  ps->records++;
  ing->nrecords++;
  if (rc < 0) {
    dead_letter_record(ing, m, t, stage, &err);
    produce_early(ing, ing->ndls - 1);
    return 1;
  }
  /* Only whole records go to the server: all of their jobs, or none. */
  if (ing->store)
    for (size_t i = first; i < ing->rows.n; i++)
      kjb_store_stream_row(ing->store, &ing->rows.rows[i]);
  return 0;
}

/* Reports failed commits, which librdkafka hands here as well as to the
 * synchronous caller. */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque) {
  if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
    kjb_warn("could not commit offsets: %s (they are committed again later, or the records "
             "delivered again and skipped)",
             rd_kafka_err2str(e));
}

/* ---- batch completion ----------------------------------------------- */

static void pause_blocked(kjb_ingest *ing, part_state *ps) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_t *tp =
      rd_kafka_topic_partition_list_add(l, ps->topic->topic, ps->partition);
  tp->offset = ps->retry_offset;
  rd_kafka_pause_partitions(ing->consumer, l);
  rd_kafka_error_t *e = rd_kafka_seek_partitions(ing->consumer, l, 5000);
  if (e) {
    kjb_warn("could not rewind %s [%d]: %s", ps->topic->topic, (int)ps->partition,
             rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(l);
  owned_part *op = owned_get(ing, ps->topic, ps->partition);
  op->backoff_us = !op->paused                           ? BACKOFF_MIN_US
                   : op->backoff_us * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US
                                                         : op->backoff_us * 2;
  op->paused = 1;
  op->resume_at_us = kjb_now_mono_us() + op->backoff_us;
}

/* Resumes the paused partitions that match: with `only` those in that
 * list, else those due (all of them when `all`). */
static void resume_paused(kjb_ingest *ing, int all, const rd_kafka_topic_partition_list_t *only) {
  int64_t now = kjb_now_mono_us();
  rd_kafka_topic_partition_list_t *l = NULL;
  for (size_t i = 0; i < ing->nowned; i++) {
    owned_part *op = &ing->owned[i];
    if (!op->paused)
      continue;
    if (only ? !rd_kafka_topic_partition_list_find(only, op->topic->topic, op->partition)
             : !all && now < op->resume_at_us)
      continue;
    if (!l)
      l = rd_kafka_topic_partition_list_new(4);
    rd_kafka_topic_partition_list_add(l, op->topic->topic, op->partition);
    op->paused = 0;
  }
  if (l) {
    rd_kafka_resume_partitions(ing->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
  }
}

static void resume_due(kjb_ingest *ing, int all) { resume_paused(ing, all, NULL); }

/* Ends the batch, committed or not: a transaction still open holds dead
 * letters of records that are consumed again, and is aborted. */
static void reset_batch(kjb_ingest *ing) {
  if (ing->txn_open)
    abort_txn(ing, 0);
  ing->batch_gen++;
  for (size_t i = 0; i < ing->ndls; i++)
    rd_kafka_message_destroy(ing->dls[i].msg);
  ing->ndls = 0;
  ing->ntraced = 0;
  ing->rows.n = 0;
  ing->nparts = 0;
  ing->nrecords = 0;
  kjb_arena_reset(ing->arena);
}

static void add_dead_lettered(const char *topic, kjb_errcode code, size_t n) {
  kjb_counter_add("kjb_records_dead_lettered_total",
                  "Source records sent to a dead-letter topic, by error code.", (double)n, "topic",
                  topic, "reason", kjb_err_name(code), NULL);
}

/* Counts the committed batch's dead letters by topic and reason, and
 * remembers the newest of them for /api/dlq. */
static void count_dead_letters(const dead_letter *dls, size_t ndls) {
  enum { MAX_GROUPS = 16 };
  struct group {
    const char *topic;
    kjb_errcode code;
    size_t n;
  } g[MAX_GROUPS];
  size_t ng = 0;
  for (size_t i = 0; i < ndls; i++) {
    const dead_letter *d = &dls[i];
    size_t j = 0;
    while (j < ng && !(g[j].topic == d->topic->topic && g[j].code == d->reason.code))
      j++;
    if (j == ng) {
      if (ng == MAX_GROUPS) {
        add_dead_lettered(d->topic->topic, d->reason.code, 1);
        continue;
      }
      g[ng++] = (struct group){d->topic->topic, d->reason.code, 0};
    }
    g[j].n++;
  }
  for (size_t j = 0; j < ng; j++)
    add_dead_lettered(g[j].topic, g[j].code, g[j].n);
  size_t first = ndls > KJB_STATS_DEAD_LETTERS ? ndls - KJB_STATS_DEAD_LETTERS : 0;
  kjb_stats_dead_letters_skip(first);
  for (size_t i = first; i < ndls; i++) {
    const dead_letter *d = &dls[i];
    kjb_stats_dead_letter(d->topic->topic, (int)d->msg->partition, d->msg->offset, d->topic->dlq,
                          kjb_err_name(d->reason.code), d->stage, d->reason.msg);
  }
}

/* Stores the batch's jobs: the streamed COPY first; when that fails, the
 * whole batch again on a fresh connection, with backoff, until it is
 * stored (0) or a stop is requested (-1). */
static int store_batch(kjb_ingest *ing, size_t *inserted) {
  kjb_err err;
  int64_t backoff = BACKOFF_MIN_US;
  int rc = ing->store
               ? kjb_store_stream_finish(ing->store, ing->rows.rows, ing->rows.n, inserted, &err)
               : kjb_err_set(&err, KJB_EPG, "not connected");
  while (rc < 0) {
    kjb_warn("could not store %zu jobs: %s; retrying in %lld ms", ing->rows.n, err.msg,
             (long long)(backoff / 1000));
    if (reconnect(ing, &backoff, &err) < 0)
      return -1;
    rc = ing->store ? kjb_store_insert_jobs(ing->store, ing->rows.rows, ing->rows.n, inserted, &err)
                    : -1;
  }
  return 0;
}

/* Notes that this member committed the offsets in l. */
static void mark_committed(kjb_ingest *ing, const rd_kafka_topic_partition_list_t *l) {
  for (int i = 0; i < l->cnt; i++) {
    owned_part *op =
        owned_find(ing, kjb_config_topic(ing->cfg, l->elems[i].topic), l->elems[i].partition);
    if (op) {
      op->committed = l->elems[i].offset;
      if (op->durable < op->committed)
        op->durable = op->committed;
    }
  }
}

/* Commits the durable offsets in l the plain way. The commit is
 * synchronous: librdkafka retries a failed asynchronous commit after
 * later ones went through, which would move the group's offset back.
 * When it fails, the offsets stay pending and are committed again later
 * (commit_pending); should the partitions move first, their next owner
 * consumes those records again and stores nothing twice. */
static void commit_offsets(kjb_ingest *ing, const rd_kafka_topic_partition_list_t *l) {
  if (l->cnt == 0)
    return;
  int ok;
  if (ing->txn_commits) {
    ok = commit_in_txn(ing, l, 0) == 0;
  } else {
    rd_kafka_resp_err_t e = rd_kafka_commit(ing->consumer, l, 0);
    ok = !e || e == RD_KAFKA_RESP_ERR__NO_OFFSET; /* on_commit reports the others */
  }
  if (ok)
    mark_committed(ing, l);
  else
    ing->commit_retry_us = kjb_now_mono_us() + COMMIT_RETRY_US;
}

/* Adds the owned partitions whose durable offset is not committed yet to
 * l, except those already in it. */
static void add_pending(kjb_ingest *ing, rd_kafka_topic_partition_list_t *l) {
  for (size_t i = 0; i < ing->nowned; i++) {
    const owned_part *op = &ing->owned[i];
    if (op->durable >= 0 && op->durable > op->committed &&
        !rd_kafka_topic_partition_list_find(l, op->topic->topic, op->partition))
      rd_kafka_topic_partition_list_add(l, op->topic->topic, op->partition)->offset = op->durable;
  }
}

/* Commits the offsets that an earlier commit failed to, unless the
 * assignment is lost (then they are not ours to commit). */
static void commit_pending(kjb_ingest *ing) {
  ing->commit_retry_us = 0;
  if (rd_kafka_assignment_lost(ing->consumer))
    return;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
  add_pending(ing, l);
  commit_offsets(ing, l);
  rd_kafka_topic_partition_list_destroy(l);
}

/* Counts a committed batch: its records by topic, its dead letters, its
 * spans and the totals. */
static void count_batch(kjb_ingest *ing, const part_state *parts, size_t nparts,
                        const dead_letter *dls, size_t ndls, const traced *spans, size_t nspans,
                        size_t nrecords, size_t inserted) {
  for (size_t i = 0; i < nparts; i++)
    if (parts[i].records)
      kjb_counter_add("kjb_records_consumed_total", CONSUMED_HELP, (double)parts[i].records,
                      "topic", parts[i].topic->topic, NULL);
  count_dead_letters(dls, ndls);
  export_spans(spans, nspans);
  ing->stats.records += nrecords;
  ing->stats.jobs_inserted += inserted;
  ing->stats.dead_lettered += ndls;
  ing->stats.batches++;
}

/* ---- committing while the next batch is consumed -------------------- */

/* Swaps the lane in use (with its open transaction) and cm's. */
static void swap_lanes(kjb_ingest *ing) {
  committing *c = &ing->cm;
  rd_kafka_t *producer = c->producer;
  kjb_store *dls = c->dlstore;
  int ready = c->txn_ready;
  c->producer = ing->producer, c->dlstore = ing->dlstore, c->txn_ready = ing->txn_ready;
  ing->producer = producer, ing->dlstore = dls, ing->txn_ready = ready;
}

/* Makes the second lane's producer when there is none yet: 0, or -1
 * with err. */
static int spare_lane(kjb_ingest *ing, kjb_err *err) {
  if (ing->cm.producer)
    return 0;
  swap_lanes(ing);
  int rc = make_producer(ing, err);
  swap_lanes(ing);
  return rc;
}

/* The thread of a committing batch: its index rows, then its transaction. */
static void *commit_rest(void *arg) {
  committing *c = arg;
  c->index_failed = kjb_dlqindex_stream_finish(c->dlstore, c->entries, c->ndls, &c->err) < 0;
  if (!c->index_failed)
    c->error = rd_kafka_commit_transaction(c->producer, 30000);
  atomic_store(&c->done, true);
  return NULL;
}

/* The end of flush for a batch with dead letters whose rows were
 * streamed, when the loop may consume on meanwhile: offsets_txn as far
 * as the offsets, then the batch is handed to a thread that does the
 * rest (see committing), and a new batch begins. PostgreSQL's part is
 * the longest: on two cores it wrote 200k rows for 1.4-2.0 s after the
 * last of their records was acknowledged, while the loop waited; with
 * the next batch's dead letters acknowledged meanwhile, dead-lettering
 * with the index went from 0.82 to 0.93-0.95 of the rate without it.
 * Returns as commit_in_txn; on 0 the batch and offsets are the thread's. */
static int commit_later(kjb_ingest *ing, rd_kafka_topic_partition_list_t *offsets,
                        size_t inserted) {
  rd_kafka_error_t *e = offsets_txn_send(ing, offsets, ing->ndls);
  if (e)
    return txn_failed(ing, e, ing->ndls);
  committing *c = &ing->cm;
  swap_lanes(ing); /* the transaction is c's now; the next one begins in the other lane */
  ing->txn_open = 0;
  c->entries = kjb_xgrow(c->entries, &c->capentries, ing->ndls, sizeof *c->entries);
  for (size_t i = 0; i < ing->ndls; i++)
    c->entries[i] = entry_of(ing, i);
  for (size_t i = 0; i < ing->nparts; i++)
    if (ing->parts[i].blocked)
      pause_blocked(ing, &ing->parts[i]);
  /* The batch's arrays go to c, c's spare ones to the next batch. */
  dead_letter *dls = c->dls;
  size_t capdls = c->capdls;
  c->dls = ing->dls, c->capdls = ing->capdls, c->ndls = ing->ndls;
  ing->dls = dls, ing->capdls = capdls, ing->ndls = 0;
  part_state *parts = c->parts;
  size_t capparts = c->capparts;
  c->parts = ing->parts, c->capparts = ing->capparts, c->nparts = ing->nparts;
  ing->parts = parts, ing->capparts = capparts, ing->nparts = 0;
  traced *spans = c->traced;
  size_t capspans = c->captraced;
  c->traced = ing->traced, c->captraced = ing->captraced, c->ntraced = ing->ntraced;
  ing->traced = spans, ing->captraced = capspans, ing->ntraced = 0;
  c->nrecords = ing->nrecords;
  c->inserted = inserted;
  c->offsets = offsets;
  c->index_failed = false;
  c->error = NULL;
  atomic_store(&c->done, false);
  c->running = true;
  c->threaded = pthread_create(&c->thread, NULL, commit_rest, c) == 0;
  if (!c->threaded) {
    kjb_debug("could not start a thread to commit a batch: committing it now");
    commit_rest(c);
  }
  ing->batch_gen++;
  ing->rows.n = 0;
  ing->nrecords = 0;
  kjb_arena_reset(ing->arena);
  return 0;
}

/* Waits for the batch being committed, when there is one, and settles
 * it. Returns 0 when it is committed, -1 when not: then its records are
 * consumed again, and so are those of the batch begun since, which is
 * dropped (they come after). */
static int finish_commit(kjb_ingest *ing) {
  committing *c = &ing->cm;
  if (!c->running)
    return 0;
  if (c->threaded)
    pthread_join(c->thread, NULL);
  c->running = false;
  int rc = 0;
  if (!c->index_failed && !c->error) {
    mark_committed(ing, c->offsets);
    count_batch(ing, c->parts, c->nparts, c->dls, c->ndls, c->traced, c->ntraced, c->nrecords,
                c->inserted);
  } else {
    /* The batch begun since is dropped, its transaction aborted... */
    if (ing->nrecords)
      kjb_warn("dropping the %zu records (%zu dead letters) consumed since: they are consumed "
               "again after the batch before them",
               ing->nrecords, ing->ndls);
    if (ing->store)
      kjb_store_stream_abort(ing->store);
    rewind_batch(ing);
    reset_batch(ing);
    /* ...and so is the failed one's, in its own lane. */
    swap_lanes(ing);
    ing->txn_open = 1;
    rd_kafka_error_t *e = c->error;
    c->error = NULL;
    if (c->index_failed) {
      e = rd_kafka_error_new(RD_KAFKA_RESP_ERR__FAIL, "%s", c->err.msg);
      drop_connections(ing);
    }
    txn_failed(ing, e, c->ndls);
    rewind_parts(ing, c->parts, c->nparts);
    rc = -1;
  }
  for (size_t i = 0; i < c->ndls; i++)
    rd_kafka_message_destroy(c->dls[i].msg);
  c->ndls = c->nparts = c->ntraced = 0;
  rd_kafka_topic_partition_list_destroy(c->offsets);
  c->offsets = NULL;
  return rc;
}

/* Makes the batch durable and commits its offsets (and any still pending
 * from earlier batches), with its dead letters when it has any; with
 * `overlap`, such a batch may be committed by a thread while the loop
 * consumes on (see commit_later). A batch still being committed is
 * settled first. Returns 0, or -1 when the batch was not committed: asked
 * to stop, its dead-letter transaction aborted (the records will be
 * delivered again), or the assignment was lost meanwhile (the
 * partitions' next owners consume the records again; this member must
 * neither commit for them nor produce their dead letters, which the next
 * owners produce). */
static int flush(kjb_ingest *ing, bool overlap) {
  if (finish_commit(ing) < 0)
    return -1;
  if (ing->nparts == 0)
    return 0;
  int64_t t0 = kjb_now_mono_us();
  size_t inserted = 0;
  if (store_batch(ing, &inserted) < 0) {
    reset_batch(ing);
    return -1;
  }
  int64_t t1 = kjb_now_mono_us();
  /* After a session timeout or a fencing the group's member id and
   * generation may both be reset, and a transactional offset commit
   * without them is not fenced by the broker: the check must come first.
   * The jobs just stored are harmless: redelivery inserts nothing twice. */
  if (rd_kafka_assignment_lost(ing->consumer)) {
    kjb_warn("partition assignment lost: not committing a batch of %zu records (%zu dead "
             "letters); their partitions' next owners consume them again",
             ing->nrecords, ing->ndls);
    reset_batch(ing);
    return -1;
  }
  rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new((int)ing->nparts);
  for (size_t i = 0; i < ing->nparts; i++) {
    part_state *ps = &ing->parts[i];
    if (ps->next_offset >= 0)
      rd_kafka_topic_partition_list_add(offsets, ps->topic->topic, ps->partition)->offset =
          ps->next_offset;
  }
  add_pending(ing, offsets);
  int committed = 0;
  kjb_err lane_err;
  bool lane =
      ing->ndls > 0 && !ing->cfg->kafka.embedded && overlap && ing->txn_open && ing->dlstore;
  if (lane && spare_lane(ing, &lane_err) < 0) {
    kjb_warn("%s; committing the batch in place", lane_err.msg);
    lane = false;
  }
  if (lane) {
    size_t ndls = ing->ndls, nrecords = ing->nrecords;
    if ((committed = commit_later(ing, offsets, inserted)) == 0) {
      ing->stats.store_us += (uint64_t)(t1 - t0);
      ing->stats.settle_us += (uint64_t)(kjb_now_mono_us() - t1);
      kjb_debug("batch: %zu records, %zu new jobs, %zu dead letters, committing; store %lld ms",
                nrecords, inserted, ndls, (long long)(t1 - t0) / 1000);
      return 0;
    }
  } else if (ing->ndls > 0 && !ing->cfg->kafka.embedded) {
    committed = commit_in_txn(ing, offsets, ing->ndls);
    if (committed == 0)
      mark_committed(ing, offsets);
  } else if (ing->ndls > 0 && (settle_dead_letters(ing) < 0 || index_settled(ing) < 0)) {
    committed = -1;
  } else {
    for (size_t i = 0; i < ing->nparts; i++)
      if (ing->parts[i].next_offset >= 0)
        owned_get(ing, ing->parts[i].topic, ing->parts[i].partition)->durable =
            ing->parts[i].next_offset;
    commit_offsets(ing, offsets);
  }
  rd_kafka_topic_partition_list_destroy(offsets);
  int64_t t2 = kjb_now_mono_us();
  if (committed != 0) {
    if (committed > 0)
      rewind_batch(ing);
    reset_batch(ing);
    return -1;
  }
  for (size_t i = 0; i < ing->nparts; i++)
    if (ing->parts[i].blocked)
      pause_blocked(ing, &ing->parts[i]);
  int64_t t3 = kjb_now_mono_us();
  count_batch(ing, ing->parts, ing->nparts, ing->dls, ing->ndls, ing->traced, ing->ntraced,
              ing->nrecords, inserted);
  ing->stats.store_us += (uint64_t)(t1 - t0);
  /* With dead letters, the commit is their transaction. */
  *(ing->ndls ? &ing->stats.settle_us : &ing->stats.commit_us) += (uint64_t)(t2 - t1);
  ing->stats.commit_us += (uint64_t)(t3 - t2);
  kjb_debug("batch: %zu records, %zu jobs (%zu new), %zu dead letters; store %lld ms",
            ing->nrecords, ing->rows.n, inserted, ing->ndls, (long long)(t1 - t0) / 1000);
  reset_batch(ing);
  return 0;
}

/* ---- rebalancing ---------------------------------------------------- */

static const char ASSIGNED_HELP[] = "Partitions assigned to this process by group rebalances.";
static const char REVOKED_HELP[] =
    "Partitions this process gave up in group rebalances, the lost ones included.";
static const char LOST_HELP[] = "Partitions taken from this process without a chance to commit "
                                "(session timeout, fenced): their records are consumed again.";

/* Adds each topic's number of partitions in l (sorted) to the counter
 * `name` and, when b is given, writes them to it as "orders [0,3,5],
 * payments [1]". */
static void tally(const rd_kafka_topic_partition_list_t *l, const char *name, const char *help,
                  kjb_buf *b) {
  for (int i = 0; i < l->cnt;) {
    const char *topic = l->elems[i].topic;
    int n = 0;
    if (b)
      kjb_buf_printf(b, "%s%s [", i ? ", " : "", topic);
    for (; i < l->cnt && strcmp(l->elems[i].topic, topic) == 0; i++, n++)
      if (b)
        kjb_buf_printf(b, "%s%d", n ? "," : "", (int)l->elems[i].partition);
    if (b)
      kjb_buf_putc(b, ']');
    kjb_counter_add(name, help, n, "topic", topic, NULL);
  }
}

/* Gives up the partitions in parts: whatever the batch holds of them (and
 * of the others: the batch is one unit) is made durable and committed
 * while they are still ours, unless the assignment is lost; their pauses
 * are lifted, since librdkafka would keep a partition paused should it
 * come back to this process; then they are forgotten. */
static void give_up(kjb_ingest *ing, const rd_kafka_topic_partition_list_t *parts) {
  flush(ing, false);
  commit_pending(ing);
  resume_paused(ing, 0, parts);
  for (size_t i = 0; i < ing->nowned;) {
    if (rd_kafka_topic_partition_list_find(parts, ing->owned[i].topic->topic,
                                           ing->owned[i].partition))
      ing->owned[i] = ing->owned[--ing->nowned];
    else
      i++;
  }
}

/* Serves a rebalance. With the cooperative protocol parts holds only the
 * partitions that come or go, and the others keep flowing (and keep their
 * state here); with the eager one every revocation is of everything. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  kjb_ingest *ing = opaque;
  const char *protocol = rd_kafka_rebalance_protocol(rk);
  if (!protocol || strcmp(protocol, "NONE") == 0)
    protocol = ing->cooperative ? "COOPERATIVE" : "EAGER";
  int cooperative = strcmp(protocol, "COOPERATIVE") == 0;
  int assign = e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
  int lost = !assign && rd_kafka_assignment_lost(rk);
  rd_kafka_topic_partition_list_t *sorted = rd_kafka_topic_partition_list_copy(parts);
  rd_kafka_topic_partition_list_sort(sorted, NULL, NULL);
  kjb_buf list;
  kjb_buf_init(&list);

  rd_kafka_error_t *err = NULL;
  rd_kafka_resp_err_t re;
  if (assign) {
    if (cooperative)
      err = rd_kafka_incremental_assign(rk, parts);
    else if ((re = rd_kafka_assign(rk, parts)))
      err = rd_kafka_error_new(re, "%s", rd_kafka_err2str(re));
    if (!cooperative)
      ing->nowned = 0;
    for (int i = 0; !err && i < parts->cnt; i++) {
      const kjb_topic_cfg *t = kjb_config_topic(ing->cfg, parts->elems[i].topic);
      if (t)
        owned_get(ing, t, parts->elems[i].partition);
    }
    tally(sorted, "kjb_partitions_assigned_total", ASSIGNED_HELP, &list);
    kjb_counter_add("kjb_rebalances_total",
                    "Group rebalances this process took part in, by protocol (EAGER, COOPERATIVE).",
                    1, "protocol", protocol, NULL);
  } else {
    give_up(ing, parts);
    if (cooperative)
      err = rd_kafka_incremental_unassign(rk, parts);
    else if ((re = rd_kafka_assign(rk, NULL)))
      err = rd_kafka_error_new(re, "%s", rd_kafka_err2str(re));
    tally(sorted, "kjb_partitions_revoked_total", REVOKED_HELP, &list);
    if (lost)
      tally(sorted, "kjb_partitions_lost_total", LOST_HELP, NULL);
  }
  const char *what = assign ? "assigned" : lost ? "lost" : "revoked";
  kjb_log(lost ? KJB_LOG_WARN : KJB_LOG_INFO, "rebalance (%s): %s %d partition(s)%s%s; %zu owned",
          protocol, what, parts->cnt, parts->cnt ? ": " : "", list.data ? list.data : "",
          ing->nowned);
  if (err) {
    kjb_error("could not %s partitions: %s", assign ? "assign" : "unassign",
              rd_kafka_error_string(err));
    rd_kafka_error_destroy(err);
  }
  kjb_buf_close(&list);
  rd_kafka_topic_partition_list_destroy(sorted);
}

/* ---- lifecycle ------------------------------------------------------ */

/* The dead-letter producer. Its transactional id is unique to this
 * process and producer: zombie fencing comes from the consumer group's
 * generation (the offsets go through send_offsets_to_transaction), not
 * from a shared id. A short transaction timeout bounds how long a crash
 * in mid-transaction holds back the DLQ's readers and the partition's
 * next owner. */
static int make_producer(kjb_ingest *ing, kjb_err *err) {
  char host[64], txid[256], errstr[512];
  if (gethostname(host, sizeof host) != 0)
    snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  snprintf(txid, sizeof txid, "kjb-%s-%s-%d-%lld-%u", ing->cfg->kafka.group, host, (int)getpid(),
           (long long)(kjb_now_wall_us() / 1000), ++ing->producers);
  const char *const producer_defaults[] = {"enable.idempotence",
                                           "true",
                                           "acks",
                                           "all",
                                           "linger.ms",
                                           "5",
                                           "transaction.timeout.ms",
                                           "10000",
                                           ing->cfg->kafka.embedded ? NULL : "transactional.id",
                                           txid,
                                           NULL};
  rd_kafka_conf_t *conf = kjb_kafka_conf(ing->cfg, RD_KAFKA_PRODUCER, producer_defaults, err);
  if (!conf)
    return -1;
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_opaque(conf, ing);
  ing->txn_ready = 0;
  ing->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!ing->producer) {
    rd_kafka_conf_destroy(conf);
    return kjb_err_set(err, KJB_EKAFKA, "could not create dead-letter producer: %s", errstr);
  }
  return 0;
}

kjb_ingest *kjb_ingest_new(const kjb_config *cfg, kjb_catalog *catalog, kjb_err *err) {
  /* Callbacks may run before kjb_ingest_run (or after it, in free): until
   * then nothing asks to stop. */
  static volatile sig_atomic_t never;
  kjb_ingest *ing = kjb_xcalloc(1, sizeof *ing);
  pthread_mutex_init(&ing->close_mu, NULL);
  ing->stop = &never;
  ing->cfg = cfg;
  /* The series exist from the start, so that rate() sees the first
   * records and jobs. */
  for (size_t t = 0; t < cfg->ntopics; t++) {
    kjb_counter_add("kjb_records_consumed_total", CONSUMED_HELP, 0, "topic", cfg->topics[t].topic,
                    NULL);
    for (size_t j = 0; j < cfg->topics[t].njobs; j++)
      kjb_counter_add("kjb_jobs_inserted_total", KJB_INSERTED_HELP, 0, "kind",
                      cfg->topics[t].jobs[j].kind, NULL);
    kjb_counter_add("kjb_partitions_assigned_total", ASSIGNED_HELP, 0, "topic",
                    cfg->topics[t].topic, NULL);
    kjb_counter_add("kjb_partitions_revoked_total", REVOKED_HELP, 0, "topic", cfg->topics[t].topic,
                    NULL);
    kjb_counter_add("kjb_partitions_lost_total", LOST_HELP, 0, "topic", cfg->topics[t].topic, NULL);
  }
  ing->catalog = catalog;
  ing->arena = kjb_arena_new(1 << 20);
  kjb_rows_init(&ing->rows);
  char errstr[512];

  /* Cooperative rebalancing keeps the other members consuming while one
   * joins or leaves: only the partitions that move are revoked. It needs
   * librdkafka 2.3.0 or newer (librdkafka#4312: before, destroying a member
   * that joined but never got an assignment aborts the process), and kjb
   * requires 2.6 (DESIGN.md, Platform). */
  const char *const consumer_defaults[] = {"partition.assignment.strategy",
                                           "cooperative-sticky",
                                           "enable.auto.commit",
                                           "false",
                                           "enable.auto.offset.store",
                                           "false",
                                           "auto.offset.reset",
                                           "earliest",
                                           "enable.partition.eof",
                                           "false",
                                           NULL};
  rd_kafka_conf_t *conf = kjb_kafka_conf(cfg, RD_KAFKA_CONSUMER, consumer_defaults, err);
  if (!conf)
    goto fail;
  if (rd_kafka_conf_set(conf, "group.id", cfg->kafka.group, errstr, sizeof errstr)) {
    kjb_err_set(err, KJB_ECONFIG, "kafka.group: %s", errstr);
    rd_kafka_conf_destroy(conf);
    goto fail;
  }
  char strategy[256];
  size_t strategy_len = sizeof strategy;
  ing->cooperative = rd_kafka_conf_get(conf, "partition.assignment.strategy", strategy,
                                       &strategy_len) == RD_KAFKA_CONF_OK &&
                     strstr(strategy, "cooperative") != NULL;
  /* Before 2.10.0, librdkafka takes an offset commit refused with
   * ILLEGAL_GENERATION during a cooperative rebalance for a lost
   * assignment (librdkafka#4059): it resets the generation, and the
   * member loses every partition, uncommitted, and rejoins, which starts
   * the next rebalance. The broker serves a connection's requests in
   * order, so any commit made while this member's JoinGroup waits for the
   * others is refused that way: with the cooperative protocol, which keeps
   * consuming meanwhile, nearly every rebalance. There the offsets go
   * through the dead-letter producer's transactions instead (fenced by the
   * same generation, KIP-447), where such a refusal only aborts the
   * transaction and the offsets are committed again later. */
  ing->txn_commits = ing->cooperative && !cfg->kafka.embedded && rd_kafka_version() < 0x020a0000;
  rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
  rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
  rd_kafka_conf_set_opaque(conf, ing);
  ing->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!ing->consumer) {
    rd_kafka_conf_destroy(conf);
    kjb_err_set(err, KJB_EKAFKA, "could not create consumer: %s", errstr);
    goto fail;
  }
  rd_kafka_poll_set_consumer(ing->consumer);

  if (make_producer(ing, err) < 0)
    goto fail;

  ing->store = kjb_store_connect_durable(cfg->postgres.conninfo, cfg->postgres.schema, err);
  if (!ing->store)
    goto fail;
  return ing;
fail:
  kjb_ingest_free(ing);
  return NULL;
}

int kjb_ingest_run(kjb_ingest *ing, volatile sig_atomic_t *stop, kjb_err *err) {
  ing->stop = stop;
  rd_kafka_topic_partition_list_t *topics =
      rd_kafka_topic_partition_list_new((int)ing->cfg->ntopics);
  for (size_t i = 0; i < ing->cfg->ntopics; i++)
    rd_kafka_topic_partition_list_add(topics, ing->cfg->topics[i].topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(ing->consumer, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (e)
    return kjb_err_set(err, KJB_EKAFKA, "could not subscribe: %s", rd_kafka_err2str(e));

  const size_t batch_size = (size_t)ing->cfg->ingest.batch_size;
  const int64_t batch_timeout = ing->cfg->ingest.batch_timeout_us;
  int64_t batch_start = 0;
  while (!*stop) {
    int timeout_ms = 100;
    if (ing->nrecords > 0) {
      int64_t left = batch_start + batch_timeout - kjb_now_mono_us();
      timeout_ms = left > 0 ? (int)(left / 1000) : 0;
    }
    int64_t t0 = kjb_now_mono_us();
    atomic_store(&ing->alive_us, t0);
    rd_kafka_message_t *m = rd_kafka_consumer_poll(ing->consumer, timeout_ms);
    rd_kafka_poll(ing->producer, 0);
    int64_t t1 = kjb_now_mono_us();
    ing->stats.poll_us += (uint64_t)(t1 - t0);
    if (m) {
      int keep = 0;
      if (m->err) {
        kjb_warn("consumer: %s", rd_kafka_message_errstr(m));
      } else {
        const kjb_topic_cfg *t = topic_for(ing, m);
        part_state *ps = t ? part_for(ing, t, m->partition) : NULL;
        if (ps && !ps->blocked) {
          if (ing->nrecords == 0)
            batch_start = kjb_now_mono_us();
          keep = process(ing, m, t, ps) == 1;
        }
      }
      if (!keep)
        rd_kafka_message_destroy(m);
      ing->stats.process_us += (uint64_t)(kjb_now_mono_us() - t1);
    }
    /* Idle, there is nothing to do meanwhile. */
    if (ing->cm.running && (!m || atomic_load(&ing->cm.done)))
      finish_commit(ing);
    int full = ing->nrecords >= batch_size;
    int due = ing->nparts > 0 && kjb_now_mono_us() - batch_start >= batch_timeout;
    if (full || due || (!m && ing->nparts > 0))
      flush(ing, true);
    if (ing->nrecords == 0 && ing->commit_retry_us && !ing->cm.running &&
        kjb_now_mono_us() >= ing->commit_retry_us)
      commit_pending(ing);
    resume_due(ing, 0);
  }
  /* Drain: make what we hold durable, then leave the group (which revokes
   * and commits through on_rebalance). */
  flush(ing, false);
  resume_due(ing, 1);
  pthread_mutex_lock(&ing->close_mu);
  ing->closed = 1;
  pthread_mutex_unlock(&ing->close_mu);
  rd_kafka_consumer_close(ing->consumer);
  return 0;
}

void kjb_ingest_get_stats(const kjb_ingest *ing, kjb_ingest_stats *out) { *out = ing->stats; }

void kjb_ingest_free(kjb_ingest *ing) {
  if (!ing)
    return;
  committing *c = &ing->cm;
  if (c->running) { /* kjb_ingest_run settles it before it returns: not reached so far */
    if (c->threaded)
      pthread_join(c->thread, NULL);
    if (c->error)
      rd_kafka_error_destroy(c->error);
    for (size_t i = 0; i < c->ndls; i++)
      rd_kafka_message_destroy(c->dls[i].msg);
    rd_kafka_topic_partition_list_destroy(c->offsets);
  }
  free(c->dls);
  free(c->parts);
  free(c->traced);
  free(c->entries);
  if (c->producer) {
    rd_kafka_flush(c->producer, 5000);
    rd_kafka_destroy(c->producer);
  }
  kjb_store_free(c->dlstore);
  reset_batch(ing);
  if (ing->consumer)
    rd_kafka_destroy(ing->consumer);
  if (ing->producer) {
    rd_kafka_flush(ing->producer, 5000);
    rd_kafka_destroy(ing->producer);
  }
  kjb_store_free(ing->store);
  kjb_store_free(ing->dlstore);
  kjb_arena_free(ing->arena);
  kjb_rows_close(&ing->rows);
  free(ing->parts);
  free(ing->dls);
  free(ing->traced);
  free(ing->owned);
  pthread_mutex_destroy(&ing->close_mu);
  free(ing);
}

/* Sets kjb_consumer_lag for the assigned partitions, and only them: the
 * high watermark (as of the last fetch) minus the position, or the
 * committed offset before anything was consumed. */
static void publish_lag(kjb_ingest *ing, rd_kafka_topic_partition_list_t *parts, int timeout_ms) {
  kjb_metric_clear("kjb_consumer_lag");
  if (!parts || parts->cnt == 0)
    return;
  rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_copy(parts);
  int need_committed = 0;
  if (rd_kafka_position(ing->consumer, pos) == RD_KAFKA_RESP_ERR_NO_ERROR)
    for (int i = 0; i < pos->cnt; i++)
      need_committed |= pos->elems[i].offset < 0;
  rd_kafka_topic_partition_list_t *committed = NULL;
  if (need_committed) {
    committed = rd_kafka_topic_partition_list_copy(parts);
    if (rd_kafka_committed(ing->consumer, committed, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_topic_partition_list_destroy(committed);
      committed = NULL;
    }
  }
  for (int i = 0; i < pos->cnt; i++) {
    const rd_kafka_topic_partition_t *p = &pos->elems[i];
    int64_t at = p->offset, lo = -1, hi = -1;
    if (at < 0 && committed)
      at = committed->elems[i].offset;
    if (rd_kafka_get_watermark_offsets(ing->consumer, p->topic, p->partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0)
      if (rd_kafka_query_watermark_offsets(ing->consumer, p->topic, p->partition, &lo, &hi,
                                           timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        continue;
    if (at < 0)
      at = lo; /* nothing committed: consumption starts at the beginning */
    char part[16];
    snprintf(part, sizeof part, "%d", (int)p->partition);
    kjb_gauge_set("kjb_consumer_lag",
                  "Records between this consumer's position and the partition's end.",
                  (double)(hi > at ? hi - at : 0), "topic", p->topic, "partition", part, NULL);
  }
  if (committed)
    rd_kafka_topic_partition_list_destroy(committed);
  rd_kafka_topic_partition_list_destroy(pos);
}

void kjb_ingest_health(kjb_ingest *ing, int timeout_ms, kjb_ingest_health_info *out) {
  out->loop_us = atomic_load(&ing->alive_us);
  out->kafka_connected = 0;
  out->partitions = 0;
  pthread_mutex_lock(&ing->close_mu);
  if (ing->closed) {
    pthread_mutex_unlock(&ing->close_mu);
    return;
  }
  /* Both calls are safe from any thread. A metadata request is the one
   * way to ask whether some broker answers right now. */
  const struct rd_kafka_metadata *md = NULL;
  out->kafka_connected =
      rd_kafka_metadata(ing->consumer, 0, NULL, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR;
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_partition_list_t *parts = NULL;
  if (rd_kafka_assignment(ing->consumer, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR && parts)
    out->partitions = parts->cnt;
  publish_lag(ing, parts, timeout_ms);
  if (parts)
    rd_kafka_topic_partition_list_destroy(parts);
  pthread_mutex_unlock(&ing->close_mu);
}
