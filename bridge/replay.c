/* Replay of dead letters: the offset-reset mode over a whole DLQ topic,
 * and the targeted mode that fetches exactly the records the index
 * selects. Both record their outcomes in kjb.dead_letters. */
#include "replay.h"

#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "catalog.h"
#include "dlq.h"
#include "dlqindex.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "progress.h"
#include "record.h"
#include "store.h"
#include "util.h"

/* A batch is stored once it has this many records or jobs, or is this
 * old (a paced replay). As many as ingest's default batch: at 2,000 a
 * replay of 100k records ran at 0.76-0.99 of ingest, at 5,000 at 0.88-1.08
 * (peak RSS 43 MiB, 57 when every job is present already). */
#define REPLAY_BATCH 5000
#define REPLAY_BATCH_US 1000000

/* ---- replay --------------------------------------------------------- */

int kjb_replay_check_topic(const kjb_config *cfg, const char *topic, kjb_err *err) {
  for (size_t i = 0; i < cfg->ntopics; i++)
    if (strcmp(cfg->topics[i].dlq, topic) == 0)
      return 0;
  int shown = (int)kjb_utf8_prefix(topic, 200);
  return kjb_err_set(err, KJB_EUSAGE, "\"%.*s%s\" is not the dead-letter topic of a mapping", shown,
                     topic, topic[shown] ? "..." : "");
}

/* ---- tallies --------------------------------------------------------- */

void kjb_replay_stats_close(kjb_replay_stats *st) {
  for (size_t i = 0; i < st->nreasons; i++) {
    kjb_replay_reason *rr = &st->reasons[i];
    for (size_t k = 0; k < rr->nkinds; k++)
      free(rr->kinds[k].kind);
    free(rr->kinds);
    free(rr->reason);
  }
  free(st->reasons);
  st->reasons = NULL;
  st->nreasons = st->capreasons = 0;
}

json_t *kjb_replay_stats_json(const kjb_replay_stats *st, int dry_run) {
  json_t *by = json_array();
  for (size_t i = 0; i < st->nreasons; i++) {
    const kjb_replay_reason *rr = &st->reasons[i];
    json_t *jobs = json_object();
    for (size_t k = 0; k < rr->nkinds; k++)
      json_object_set_new(jobs, rr->kinds[k].kind, json_integer((json_int_t)rr->kinds[k].jobs));
    json_array_append_new(by, json_pack("{s:s, s:I, s:I, s:I, s:I, s:o}", "reason", rr->reason,
                                        "records", (json_int_t)rr->records, "replayed",
                                        (json_int_t)rr->replayed, "already_present",
                                        (json_int_t)rr->already_present, "still_failing",
                                        (json_int_t)rr->still_failing, "jobs", jobs));
  }
  return json_pack("{s:I, s:I, s:I, s:I, s:b, s:o}", "selected", (json_int_t)st->selected,
                   "replayed", (json_int_t)st->replayed, "still_failing",
                   (json_int_t)st->still_failing, "already_present",
                   (json_int_t)st->already_present, "dry_run", dry_run, "by_reason", by);
}

/* The tally of reason in st, added when new. */
static kjb_replay_reason *reason_of(kjb_replay_stats *st, const char *reason) {
  for (size_t i = 0; i < st->nreasons; i++)
    if (strcmp(st->reasons[i].reason, reason) == 0)
      return &st->reasons[i];
  st->reasons = kjb_xgrow(st->reasons, &st->capreasons, st->nreasons + 1, sizeof *st->reasons);
  kjb_replay_reason *rr = &st->reasons[st->nreasons++];
  *rr = (kjb_replay_reason){.reason = kjb_xstrdup(reason)};
  return rr;
}

/* Drops the tallies of reasons no record was handled for: a targeted
 * replay registers a page's reasons before it reads the page, and may
 * stop before it does. */
static void drop_unhandled(kjb_replay_stats *st) {
  size_t kept = 0;
  for (size_t i = 0; i < st->nreasons; i++) {
    kjb_replay_reason *rr = &st->reasons[i];
    if (rr->records == 0) {
      free(rr->kinds);
      free(rr->reason);
    } else {
      st->reasons[kept++] = *rr;
    }
  }
  st->nreasons = kept;
}

static void add_kind(kjb_replay_reason *rr, const char *kind) {
  for (size_t k = 0; k < rr->nkinds; k++)
    if (strcmp(rr->kinds[k].kind, kind) == 0) {
      rr->kinds[k].jobs++;
      return;
    }
  rr->kinds = kjb_xgrow(rr->kinds, &rr->capkinds, rr->nkinds + 1, sizeof *rr->kinds);
  rr->kinds[rr->nkinds].kind = kjb_xstrdup(kind);
  rr->kinds[rr->nkinds++].jobs = 1;
}

/* ---- the replay -------------------------------------------------------- */

typedef struct {
  int32_t partition;
  int64_t start, end; /* end: the high watermark at start */
  int64_t next;       /* next offset to consume */
  int64_t stored;     /* next when the batch last stored was read: committed once it is marked */
  int done;
} part;

/* One dead letter of the batch being stored: where it lies in the DLQ,
 * its reason, and its job rows or why it still fails. */
typedef struct {
  const char *dlq_topic;
  int32_t dlq_partition;
  int64_t dlq_offset;
  const char *reason;
  size_t first_row, nrows;
  const char *error; /* NULL: mapped; else why it still fails (in the arena) */
} rec_out;

/* A dead letter the filter selected, from kjb.dead_letters. */
typedef struct {
  char *topic;
  int32_t partition;
  int64_t offset;
  char *reason;
} target;

typedef struct {
  const kjb_config *cfg;
  const kjb_replay_opts *o;
  kjb_replay_stats *st;
  kjb_catalog *catalog;
  kjb_store *store;
  /* Not in a dry run: the batch's jobs, streamed into a COPY as records
   * are mapped (while the batch before had no stored rows), so that
   * PostgreSQL stores them while the next ones are decoded. */
  kjb_store *jobs;
  bool streaming;
  rd_kafka_t *rk;
  kjb_arena *arena;
  kjb_rows rows;
  rec_out *recs;
  size_t nrecs, caprecs;
  unsigned char *is_new;
  size_t capnew;
  kjb_dlq_replayed *marks;
  size_t capmarks;
  bool marking; /* the rows of the batch last stored are being marked, on store */
  part *parts;
  int nparts;
  int64_t pace_us;  /* --rate: when the next record may go */
  int64_t batch_us; /* when the batch's first record came (monotonic) */
  uint64_t done;    /* records handled */
  kjb_progress *progress;
  kjb_kafka_errors kafka; /* what the consumer's error callback saw */
  int64_t moved_us;       /* targeted mode: when a target last came or was sought */
} replay;

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  replay *r = opaque;
  kjb_kafka_note_error(&r->kafka, rk, err, reason);
}

static void count(replay *r, uint64_t *stat, uint64_t *per_reason, const char *topic,
                  const char *outcome) {
  (*stat)++;
  (*per_reason)++;
  kjb_counter_add("kjb_replay_records_total", "Replayed dead letters, by outcome.", 1, "topic",
                  topic, "outcome", outcome, NULL);
}

/* Waits until --rate lets the next record go (or stop is set). */
static void pace(replay *r, volatile sig_atomic_t *stop) {
  if (r->o->rate <= 0)
    return;
  int64_t now = kjb_now_mono_us();
  if (r->pace_us == 0 || r->pace_us < now - 1000000)
    r->pace_us = now; /* no bursts after a slow stretch */
  while (now < r->pace_us && !(stop && *stop)) {
    int64_t wait = r->pace_us - now;
    if (wait > 100000)
      wait = 100000;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait * 1000};
    nanosleep(&ts, NULL);
    now = kjb_now_mono_us();
  }
  r->pace_us += (int64_t)(1e6 / r->o->rate);
}

static rec_out *add_rec(replay *r, const char *dlq_topic, int32_t partition, int64_t offset,
                        const char *reason) {
  r->recs = kjb_xgrow(r->recs, &r->caprecs, r->nrecs + 1, sizeof *r->recs);
  if (r->nrecs == 0)
    r->batch_us = kjb_now_mono_us();
  rec_out *x = &r->recs[r->nrecs++];
  *x = (rec_out){.dlq_topic = dlq_topic,
                 .dlq_partition = partition,
                 .dlq_offset = offset,
                 .reason = kjb_arena_strndup(r->arena, reason, strlen(reason)),
                 .first_row = r->rows.n};
  return x;
}

static bool batch_full(const replay *r) {
  return r->rows.n >= REPLAY_BATCH || r->nrecs >= REPLAY_BATCH ||
         (r->nrecs > 0 && kjb_now_mono_us() - r->batch_us >= REPLAY_BATCH_US);
}

static void fails(replay *r, rec_out *x, const char *why) {
  x->error = kjb_arena_strndup(r->arena, why, strlen(why));
  if (r->o->log && r->o->log == r->o->progress)
    kjb_progress_clear(r->progress);
  if (r->o->log)
    fprintf(r->o->log, "still failing: %s [%d] @%" PRId64 ": %s\n", x->dlq_topic,
            (int)x->dlq_partition, x->dlq_offset, why);
}

/* Decodes and maps one dead letter of dlq_topic; reason NULL takes it
 * from the headers. Returns 0, or a negative code when a transient error
 * (the registry) stops the replay. */
static int replay_one(replay *r, const char *dlq_topic, const rd_kafka_message_t *m,
                      const char *reason, kjb_err *err) {
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
    h = NULL;
  kjb_dead_letter dl;
  kjb_err bad;
  int parsed = kjb_dlq_headers_parse(h, r->arena, &dl, &bad);
  rec_out *x = add_rec(r, dlq_topic, m->partition, m->offset,
                       reason ? reason : kjb_dlq_reason(dl.error_class));
  if (parsed < 0) {
    fails(r, x, bad.msg);
    return 0;
  }
  const kjb_topic_cfg *t = kjb_config_topic(r->cfg, dl.topic);
  if (!t) {
    char why[320];
    snprintf(why, sizeof why, "topic \"%s\" is not in the configuration", dl.topic);
    fails(r, x, why);
    return 0;
  }
  kjb_record rec = kjb_record_of_dead_letter(t, &dl, m, h);
  const char *stage;
  if (kjb_record_to_jobs(r->catalog, t, &rec, r->arena, &r->rows, &stage, err) < 0) {
    if (kjb_err_is_transient(err)) {
      r->nrecs--;
      return -(int)err->code;
    }
    char why[600], error_class[64];
    snprintf(why, sizeof why, "%s: %s",
             kjb_dlq_error_class(err->code, error_class, sizeof error_class), err->msg);
    fails(r, x, why);
    return 0;
  }
  x->nrows = r->rows.n - x->first_row;
  if (r->streaming)
    for (size_t i = x->first_row; i < r->rows.n; i++)
      kjb_store_stream_row(r->jobs, &r->rows.rows[i]);
  return 0;
}

/* Waits until the rows of the batch stored last are marked, when they
 * are being marked. Nothing else runs on r->store before. */
static int marked(replay *r, kjb_err *err) {
  if (!r->marking)
    return 0;
  r->marking = false;
  return kjb_dlqindex_replayed_result(r->store, err);
}

/* Stores the batch's jobs, tallies what became of each record and has
 * the index mark it (see marked). Not in a dry run: nothing is written
 * then. */
static int store_batch(replay *r, kjb_err *err) {
  if (r->rows.n) {
    r->is_new = kjb_xgrow(r->is_new, &r->capnew, r->rows.n, sizeof *r->is_new);
    int rc = r->streaming
                 ? kjb_store_stream_finish_marked(r->jobs, r->rows.rows, r->rows.n, r->is_new, err)
             : r->jobs
                 ? kjb_store_insert_marked(r->jobs, r->rows.rows, r->rows.n, 0, r->is_new, err)
                 : kjb_store_insert_marked(r->store, r->rows.rows, r->rows.n, 1, r->is_new, err);
    if (rc < 0)
      return rc;
  }
  r->streaming = r->jobs && !kjb_store_marked_present(r->jobs);
  r->marks = kjb_xgrow(r->marks, &r->capmarks, r->nrecs + 1, sizeof *r->marks);
  for (size_t i = 0; i < r->nrecs; i++) {
    const rec_out *x = &r->recs[i];
    kjb_replay_reason *rr = reason_of(r->st, x->reason);
    rr->records++;
    r->marks[i] = (kjb_dlq_replayed){x->dlq_topic, x->dlq_partition, x->dlq_offset, x->error};
    if (x->error) {
      count(r, &r->st->still_failing, &rr->still_failing, x->dlq_topic, "still_failing");
      continue;
    }
    int any = 0;
    for (size_t k = 0; k < x->nrows; k++)
      if (r->is_new[x->first_row + k]) {
        any = 1;
        add_kind(rr, r->rows.rows[x->first_row + k].kind);
      }
    if (any)
      count(r, &r->st->replayed, &rr->replayed, x->dlq_topic, "replayed");
    else
      count(r, &r->st->already_present, &rr->already_present, x->dlq_topic, "already_present");
  }
  /* After the jobs are committed: a crash in between leaves rows that
   * say dead, and the next replay finds the jobs present. PostgreSQL
   * marks them while the next batch is read and its jobs stored (on the
   * other connection): a quarter of a replay's time when it waited. */
  int rc = marked(r, err);
  if (rc == 0 && !r->o->dry_run && r->nrecs) {
    rc = kjb_dlqindex_send_replayed(r->store, r->marks, r->nrecs, false, err);
    r->marking = rc == 0;
  }
  r->rows.n = 0;
  r->nrecs = 0;
  kjb_arena_reset(r->arena);
  return rc;
}

/* ---- the offset-reset mode ---------------------------------------------- */

/* Stores the batch and commits the replay group's offsets as far as the
 * batches whose rows are marked: those before it. Called with no batch,
 * it waits for the last one's rows and commits its offsets. */
static int flush(replay *r, kjb_err *err) {
  int rc = store_batch(r, err);
  if (rc < 0 || r->o->dry_run)
    return rc;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
  for (int i = 0; i < r->nparts; i++) {
    rd_kafka_topic_partition_list_add(l, r->o->topic, r->parts[i].partition)->offset =
        r->parts[i].stored;
    r->parts[i].stored = r->parts[i].next;
  }
  rd_kafka_resp_err_t e = rd_kafka_commit(r->rk, l, 0);
  rd_kafka_topic_partition_list_destroy(l);
  if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
    return kjb_err_set(err, KJB_EKAFKA, "could not commit replay offsets: %s", rd_kafka_err2str(e));
  return 0;
}
/* Finds the partitions, their watermarks and where to start. */
static int plan(replay *r, kjb_err *err) {
  const rd_kafka_metadata_t *md;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, r->o->topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(r->rk, 0, rkt, &md, 10000);
  rd_kafka_topic_destroy(rkt);
  if (e)
    return kjb_err_set(err, KJB_EKAFKA, "could not read metadata of \"%s\": %s", r->o->topic,
                       rd_kafka_err2str(e));
  int rc = 0;
  if (md->topic_cnt != 1 || md->topics[0].err) {
    rc = kjb_err_set(err, KJB_EKAFKA, "topic \"%s\": %s", r->o->topic,
                     md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
  } else {
    r->nparts = md->topics[0].partition_cnt;
    r->parts = kjb_xcalloc((size_t)r->nparts + 1, sizeof *r->parts);
    for (int i = 0; i < r->nparts; i++)
      r->parts[i].partition = md->topics[0].partitions[i].id;
  }
  rd_kafka_metadata_destroy(md);
  if (rc < 0)
    return rc;

  rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_new(r->nparts);
  rd_kafka_topic_partition_list_t *times = rd_kafka_topic_partition_list_new(r->nparts);
  int64_t at = r->o->reset ? kjb_reset_time_ms(r->o->reset, kjb_now_wall_us() / 1000) : -1;
  for (int i = 0; i < r->nparts; i++) {
    rd_kafka_topic_partition_list_add(committed, r->o->topic, r->parts[i].partition);
    rd_kafka_topic_partition_list_add(times, r->o->topic, r->parts[i].partition)->offset = at;
  }
  e = rd_kafka_committed(r->rk, committed, 10000);
  if (!e && at >= 0)
    e = rd_kafka_offsets_for_times(r->rk, times, 10000);
  for (int i = 0; !e && i < r->nparts; i++) {
    part *p = &r->parts[i];
    int64_t low, high;
    e = rd_kafka_query_watermark_offsets(r->rk, r->o->topic, p->partition, &low, &high, 10000);
    if (e)
      break;
    int64_t c = committed->elems[i].offset;
    p->end = high;
    if (r->o->reset)
      p->start = kjb_reset_target(r->o->reset, low, high, c >= 0 ? c : -1, times->elems[i].offset);
    else
      p->start = c >= 0 ? c : low;
    if (p->start < low)
      p->start = low;
    p->next = p->stored = p->start;
    p->done = !r->o->follow && p->start >= p->end;
  }
  rd_kafka_topic_partition_list_destroy(committed);
  rd_kafka_topic_partition_list_destroy(times);
  if (e)
    return kjb_err_set(err, KJB_EKAFKA, "could not read offsets of \"%s\": %s", r->o->topic,
                       rd_kafka_err2str(e));
  /* Like kafka-consumer-groups --reset-offsets --execute: the reset is
   * committed before anything is consumed. */
  if (r->o->reset && !r->o->dry_run) {
    kjb_err tmp;
    (void)tmp;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
    for (int i = 0; i < r->nparts; i++)
      rd_kafka_topic_partition_list_add(l, r->o->topic, r->parts[i].partition)->offset =
          r->parts[i].start;
    e = rd_kafka_commit(r->rk, l, 0);
    rd_kafka_topic_partition_list_destroy(l);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
      return kjb_err_set(err, KJB_EKAFKA, "could not reset offsets of group: %s",
                         rd_kafka_err2str(e));
  }
  return 0;
}

static int all_done(const replay *r) {
  for (int i = 0; i < r->nparts; i++)
    if (!r->parts[i].done)
      return 0;
  return 1;
}

static part *part_of(replay *r, int32_t partition) {
  for (int i = 0; i < r->nparts; i++)
    if (r->parts[i].partition == partition)
      return &r->parts[i];
  return NULL;
}

/* Offsets passed since the start, over all partitions: the progress of
 * the offset-reset mode (transaction markers take offsets too). */
static uint64_t offsets_passed(const replay *r) {
  uint64_t n = 0;
  for (int i = 0; i < r->nparts; i++)
    n += (uint64_t)(r->parts[i].next - r->parts[i].start);
  return n;
}

static int consume(replay *r, volatile sig_atomic_t *stop, kjb_err *err) {
  uint64_t total = 0;
  for (int i = 0; i < r->nparts && !r->o->follow; i++)
    total += (uint64_t)(r->parts[i].end - r->parts[i].start);
  r->progress = kjb_progress_start(r->o->progress, "replay", total);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
  for (int i = 0; i < r->nparts; i++)
    rd_kafka_topic_partition_list_add(l, r->o->topic, r->parts[i].partition)->offset =
        r->parts[i].start;
  rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e)
    return kjb_err_set(err, KJB_EKAFKA, "could not assign \"%s\": %s", r->o->topic,
                       rd_kafka_err2str(e));
  long seen = 0;
  int rc = 0;
  while (rc == 0 && !(stop && *stop) && !all_done(r) && !(r->o->limit > 0 && seen >= r->o->limit)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 200);
    if (!m) {
      if (r->rows.n || r->nrecs || r->marking)
        rc = flush(r, err);
      continue;
    }
    part *p = part_of(r, m->partition);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (p && !r->o->follow && m->offset >= p->end)
        p->done = 1;
    } else if (m->err) {
      kjb_warn("replay: %s", rd_kafka_message_errstr(m));
    } else if (p && !p->done) {
      pace(r, stop);
      rc = replay_one(r, r->o->topic, m, NULL, err);
      if (rc == 0) {
        seen++;
        r->done++;
        p->next = m->offset + 1;
        if (!r->o->follow && p->next >= p->end)
          p->done = 1;
        kjb_progress_update(r->progress, offsets_passed(r));
      }
    }
    rd_kafka_message_destroy(m);
    if (rc == 0 && batch_full(r))
      rc = flush(r, err);
  }
  if (rc == 0)
    rc = flush(r, err);
  if (rc == 0 && r->marking)
    rc = flush(r, err);
  kjb_progress_end(r->progress, offsets_passed(r));
  r->progress = NULL;
  return rc;
}

/* ---- the targeted mode -------------------------------------------------- */

/* Rows fetched from the index at a time. */
#define TARGET_PAGE 2000
/* A record at most this far past the consumer's position is reached by
 * reading on; a farther one by a seek. */
#define TARGET_READ_ON 200
/* How long a targeted replay waits for any target to come. */
#define TARGET_TIMEOUT_MS 15000

/* The statement that selects the targets, after the filter's
 * parameters: keyset paging by DLQ coordinates. */
static void target_sql(kjb_buf *sql, const kjb_dlq_where *w, const kjb_dlq_filter *f, bool count) {
  kjb_buf_puts(sql, count ? "SELECT count(*) FROM dead_letters WHERE "
                          : "SELECT dlq_topic, dlq_partition, dlq_offset, reason "
                            "FROM dead_letters WHERE ");
  kjb_buf_puts(sql, w->sql.data);
  /* An ignored dead letter is replayed only when asked for by id or
   * status. */
  if (f->nids == 0 && !f->status)
    kjb_buf_puts(sql, " AND status <> 'ignored'");
  if (!count)
    kjb_buf_printf(sql,
                   " AND (dlq_topic, dlq_partition, dlq_offset) > ($%d, $%d::int, $%d::bigint) "
                   "ORDER BY dlq_topic, dlq_partition, dlq_offset LIMIT %d",
                   w->nparams + 1, w->nparams + 2, w->nparams + 3, TARGET_PAGE);
}

/* The next page of targets after (topic, partition, offset) into *out
 * (strings malloc'ed). Returns the number of targets, or -KJB_EPG. */
static long load_targets(replay *r, const kjb_dlq_where *w, const char *topic, int32_t partition,
                         int64_t offset, target **out, kjb_err *err) {
  kjb_buf sql;
  kjb_buf_init(&sql);
  target_sql(&sql, w, r->o->filter, false);
  const char *params[KJB_DLQ_WHERE_MAX_PARAMS + 3];
  int n = w->nparams;
  memcpy(params, w->params, sizeof *params * (size_t)n);
  char ptext[16], otext[24];
  snprintf(ptext, sizeof ptext, "%d", (int)partition);
  snprintf(otext, sizeof otext, "%" PRId64, offset);
  params[n++] = topic;
  params[n++] = ptext;
  params[n++] = otext;
  PGresult *res =
      kjb_store_query(r->store, "could not select dead letters", sql.data, n, params, err);
  kjb_buf_close(&sql);
  if (!res)
    return -KJB_EPG;
  long rows = PQntuples(res);
  *out = kjb_xcalloc((size_t)rows + 1, sizeof **out);
  for (long i = 0; i < rows; i++)
    (*out)[i] = (target){kjb_xstrdup(PQgetvalue(res, (int)i, 0)),
                         (int32_t)strtol(PQgetvalue(res, (int)i, 1), NULL, 10),
                         strtoll(PQgetvalue(res, (int)i, 2), NULL, 10),
                         kjb_xstrdup(PQgetvalue(res, (int)i, 3))};
  PQclear(res);
  return rows;
}

static void free_targets(target *t, long n) {
  for (long i = 0; i < n; i++) {
    free(t[i].topic);
    free(t[i].reason);
  }
  free(t);
}

static int count_targets(replay *r, const kjb_dlq_where *w, uint64_t *n, kjb_err *err) {
  kjb_buf sql;
  kjb_buf_init(&sql);
  target_sql(&sql, w, r->o->filter, true);
  PGresult *res = kjb_store_query(r->store, "could not count dead letters", sql.data, w->nparams,
                                  w->params, err);
  kjb_buf_close(&sql);
  if (!res)
    return -KJB_EPG;
  *n = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
  PQclear(res);
  return 0;
}

/* The targets of one page that lie in one partition. The consumer reads
 * every partition of a page at once, so that the fetches of one target
 * per partition overlap in a round trip (a seek costs one; at a million
 * records, 1,000 targets lie 1,000 apart and each is a seek). */
typedef struct {
  target *t; /* in offset order; the page's */
  long n, next;
  int64_t low, high; /* the watermarks when the page began */
  int64_t pos;       /* the offset the consumer reads next in it */
  bool paused;
} lane;

/* Counts the target just handled; stores the batch when it is full. */
static int settled(replay *r, kjb_err *err) {
  r->moved_us = kjb_now_mono_us();
  r->done++;
  kjb_progress_update(r->progress, r->done);
  return batch_full(r) ? store_batch(r, err) : 0;
}

/* Records l's next target as failing for why: its record is not there. */
static int missing(replay *r, lane *l, const char *why, volatile sig_atomic_t *stop, kjb_err *err) {
  const target *t = &l->t[l->next++];
  pace(r, stop);
  /* The row's topic string lives until the page's batch is stored. */
  fails(r, add_rec(r, t->topic, t->partition, t->offset, t->reason), why);
  return settled(r, err);
}

static int watermarks(replay *r, lane *l, kjb_err *err) {
  const target *t = &l->t[l->next];
  rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(r->rk, t->topic, t->partition, &l->low,
                                                           &l->high, TARGET_TIMEOUT_MS);
  if (e)
    return kjb_err_set(err, KJB_EKAFKA, "could not read offsets of \"%s\" [%d]: %s", t->topic,
                       (int)t->partition, rd_kafka_err2str(e));
  return 0;
}

/* Records the targets at l's head that lie outside the partition's log
 * as failing. */
static int skip_absent(replay *r, lane *l, volatile sig_atomic_t *stop, kjb_err *err) {
  int rc = 0;
  while (rc == 0 && l->next < l->n) {
    int64_t off = l->t[l->next].offset;
    char why[200];
    if (off < l->low)
      snprintf(why, sizeof why,
               "no record at @%" PRId64 ": the log starts at offset %" PRId64
               " (deleted by retention)",
               off, l->low);
    else if (off >= l->high)
      snprintf(why, sizeof why, "no record at @%" PRId64 ": the partition ends at offset %" PRId64,
               off, l->high);
    else
      break;
    rc = missing(r, l, why, stop, err);
  }
  return rc;
}

static rd_kafka_topic_partition_list_t *one_partition(const target *t) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, t->topic, t->partition)->offset = t->offset;
  return l;
}

/* Points the consumer at l's next target: seeks when it lies behind the
 * position or too far ahead to read on; pauses the partition once l has
 * no targets left, so that it fetches nothing more. */
static int aim(replay *r, lane *l, volatile sig_atomic_t *stop, kjb_err *err) {
  int rc = skip_absent(r, l, stop, err);
  if (rc < 0)
    return rc;
  if (l->next >= l->n) {
    rd_kafka_topic_partition_list_t *p = one_partition(&l->t[l->n - 1]);
    l->paused = rd_kafka_pause_partitions(r->rk, p) == RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(p);
    return 0;
  }
  const target *t = &l->t[l->next];
  if (l->pos >= 0 && t->offset >= l->pos && t->offset - l->pos <= TARGET_READ_ON)
    return 0;
  rd_kafka_topic_partition_list_t *p = one_partition(t);
  rd_kafka_error_t *se = rd_kafka_seek_partitions(r->rk, p, TARGET_TIMEOUT_MS);
  rd_kafka_resp_err_t e = se ? rd_kafka_error_code(se) : p->elems[0].err;
  if (se)
    rd_kafka_error_destroy(se);
  rd_kafka_topic_partition_list_destroy(p);
  if (e)
    return kjb_err_set(err, KJB_EKAFKA, "could not read \"%s\" [%d] @%" PRId64 ": %s", t->topic,
                       (int)t->partition, t->offset, rd_kafka_err2str(e));
  l->pos = t->offset;
  r->moved_us = kjb_now_mono_us();
  return 0;
}

/* Gives m, a message or event of l's partition, to l's targets: replays
 * the record a target waits for; records a target as failing when the
 * log passes it by (an aborted transaction's record, one compacted
 * away, the end of the partition); skips records before it. Takes m. */
static int take(replay *r, lane *l, rd_kafka_message_t *m, volatile sig_atomic_t *stop,
                kjb_err *err) {
  int rc = 0;
  char why[400];
  const target *t = &l->t[l->next];
  if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    if (m->offset > t->offset) {
      l->pos = m->offset;
      snprintf(why, sizeof why,
               "no committed record at @%" PRId64 " (the partition ends at %" PRId64 ")", t->offset,
               m->offset);
      rc = missing(r, l, why, stop, err);
    }
  } else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
             m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
    /* Retention deleted it since the page began: learn where the log
     * starts now, and seek afresh. */
    snprintf(why, sizeof why, "no record at @%" PRId64 ": %s", t->offset,
             rd_kafka_message_errstr(m));
    rc = missing(r, l, why, stop, err);
    l->pos = -1;
    if (rc == 0 && l->next < l->n)
      rc = watermarks(r, l, err);
  } else if (m->err) {
    /* Transient (a broker away): the deadline decides. */
    kjb_warn("replay: %s", rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
    return 0;
  } else {
    l->pos = m->offset + 1;
    while (rc == 0 && l->next < l->n && (t = &l->t[l->next])->offset <= m->offset) {
      if (t->offset < m->offset) {
        snprintf(why, sizeof why,
                 "no committed record at @%" PRId64 " (the next one is @%" PRId64 ")", t->offset,
                 m->offset);
        rc = missing(r, l, why, stop, err);
        continue;
      }
      l->next++;
      pace(r, stop);
      rc = replay_one(r, t->topic, m, t->reason, err);
      if (rc == 0)
        rc = settled(r, err);
    }
  }
  rd_kafka_message_destroy(m);
  return rc < 0 ? rc : aim(r, l, stop, err);
}

static lane *lane_of(lane *lanes, int n, const rd_kafka_message_t *m) {
  if (!m->rkt)
    return NULL;
  const char *topic = rd_kafka_topic_name(m->rkt);
  for (int i = 0; i < n; i++)
    if (lanes[i].t->partition == m->partition && strcmp(lanes[i].t->topic, topic) == 0)
      return &lanes[i];
  return NULL;
}

/* Assigns the partitions of the page's lanes, each at its first target
 * in its log. Returns 0, or a negative code. */
static int start_page(replay *r, lane *lanes, int n, volatile sig_atomic_t *stop, kjb_err *err) {
  rd_kafka_topic_partition_list_t *a = rd_kafka_topic_partition_list_new(n);
  int rc = 0;
  for (int i = 0; rc == 0 && i < n; i++) {
    lane *l = &lanes[i];
    if ((rc = watermarks(r, l, err)) == 0 && (rc = skip_absent(r, l, stop, err)) == 0 &&
        l->next < l->n) {
      rd_kafka_topic_partition_list_add(a, l->t->topic, l->t->partition)->offset =
          l->t[l->next].offset;
      l->pos = l->t[l->next].offset;
    }
  }
  rd_kafka_resp_err_t e = rc == 0 ? rd_kafka_assign(r->rk, a) : RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_topic_partition_list_destroy(a);
  if (e)
    return kjb_err_set(err, KJB_EKAFKA, "could not assign the DLQ partitions: %s",
                       rd_kafka_err2str(e));
  r->moved_us = kjb_now_mono_us();
  return rc;
}

/* Resumes the partitions paused for having no targets left, so that the
 * next page's assignment reads them again. */
static void end_page(replay *r, lane *lanes, int n) {
  for (int i = 0; i < n; i++)
    if (lanes[i].paused) {
      rd_kafka_topic_partition_list_t *p = one_partition(lanes[i].t);
      rd_kafka_resume_partitions(r->rk, p);
      rd_kafka_topic_partition_list_destroy(p);
    }
}

/* Fetches and replays the page's n targets. Returns 0, 1 when stopped,
 * or a negative code when Kafka does not answer. */
static int replay_page(replay *r, target *t, long n, volatile sig_atomic_t *stop, kjb_err *err) {
  lane *lanes = kjb_xcalloc((size_t)n, sizeof *lanes);
  int nl = 0;
  for (long i = 0; i < n; i++) {
    /* The tallies in the order of the DLQ coordinates, as one partition
     * after the other would make them: the lanes make them in the order
     * the partitions' records come. */
    reason_of(r->st, t[i].reason);
    if (nl == 0 || t[i].partition != lanes[nl - 1].t->partition ||
        strcmp(t[i].topic, lanes[nl - 1].t->topic) != 0)
      lanes[nl++] = (lane){.t = &t[i], .pos = -1};
    lanes[nl - 1].n++;
  }
  int rc = start_page(r, lanes, nl, stop, err);
  while (rc == 0) {
    if (stop && *stop) {
      rc = 1;
      break;
    }
    lane *waiting = NULL;
    for (int i = 0; i < nl && !waiting; i++)
      if (lanes[i].next < lanes[i].n)
        waiting = &lanes[i];
    if (!waiting)
      break;
    if (kjb_now_mono_us() - r->moved_us > (int64_t)TARGET_TIMEOUT_MS * 1000) {
      const target *w = &waiting->t[waiting->next];
      rc = kjb_err_set(err, KJB_EKAFKA,
                       "could not read \"%s\" [%d] @%" PRId64 ": no answer in %d ms%s%s", w->topic,
                       (int)w->partition, w->offset, TARGET_TIMEOUT_MS, r->kafka.failed ? ": " : "",
                       r->kafka.failed ? r->kafka.reason : "");
      break;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
    if (!m)
      continue;
    lane *l = lane_of(lanes, nl, m);
    if (l && l->next < l->n) {
      rc = take(r, l, m, stop, err);
    } else {
      if (!l && m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        kjb_warn("replay: %s", rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
    }
  }
  end_page(r, lanes, nl);
  free(lanes);
  return rc;
}

static int replay_targets(replay *r, volatile sig_atomic_t *stop, kjb_err *err) {
  kjb_dlq_where w;
  kjb_dlq_where_build(&w, r->o->filter, 1, NULL);
  char *topic = kjb_xstrdup("");
  int32_t partition = -1;
  int64_t offset = -1;
  int rc = 0;
  bool counted = false;
  while (rc == 0) {
    target *t;
    long n = load_targets(r, &w, topic, partition, offset, &t, err);
    if (n < 0) {
      rc = (int)n;
      break;
    }
    if (!counted) {
      /* The total, for the progress and the audit: a first page that is
       * not full holds every target, and counting them would read
       * kjb.dead_letters again (0.17 s at a million rows, unindexed
       * filters). */
      if (n < TARGET_PAGE)
        r->st->selected = (uint64_t)n;
      else if ((rc = count_targets(r, &w, &r->st->selected, err)) < 0) {
        free_targets(t, n);
        break;
      }
      r->progress = kjb_progress_start(r->o->progress, "replay", r->st->selected);
      counted = true;
    }
    rc = replay_page(r, t, n, stop, err);
    if (rc >= 0) {
      /* Stopped too: what was handled is stored. The next page's
       * targets come from r->store. */
      int src = store_batch(r, err);
      if (src == 0)
        src = marked(r, err);
      rc = src < 0 ? src : rc;
    }
    if (n > 0) {
      free(topic);
      topic = kjb_xstrdup(t[n - 1].topic);
      partition = t[n - 1].partition;
      offset = t[n - 1].offset;
    }
    free_targets(t, n);
    if (n < TARGET_PAGE)
      break;
  }
  free(topic);
  kjb_progress_end(r->progress, r->done);
  r->progress = NULL;
  kjb_dlq_where_close(&w);
  return rc > 0 ? 0 : rc;
}

static bool targeted(const kjb_replay_opts *o) {
  return o->filter && !kjb_dlq_filter_empty(o->filter);
}

/* The audit row's params: what was asked. */
static char *audit_params(const kjb_replay_opts *o, const char *group) {
  json_t *p;
  if (targeted(o)) {
    kjb_buf f;
    kjb_buf_init(&f);
    kjb_dlq_filter_json(o->filter, &f);
    p = json_pack("{s:o, s:f}", "filter", json_loads(f.data, 0, NULL), "rate", o->rate);
    kjb_buf_close(&f);
  } else {
    p = json_pack("{s:s, s:s, s:o, s:I, s:b, s:f}", "topic", o->topic, "group", group,
                  "reset_offsets", o->reset_text ? json_string(o->reset_text) : json_null(),
                  "limit", (json_int_t)o->limit, "follow", o->follow, "rate", o->rate);
  }
  char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
  json_decref(p);
  return text;
}

int kjb_replay_run(const kjb_config *cfg, const kjb_replay_opts *o, kjb_replay_stats *st,
                   volatile sig_atomic_t *stop, kjb_err *err) {
  int rc = targeted(o) ? 0 : kjb_replay_check_topic(cfg, o->topic, err);
  if (rc < 0)
    return rc;
  replay r = {.cfg = cfg, .o = o, .st = st};
  kjb_rows_init(&r.rows);
  r.arena = kjb_arena_new(1 << 20);
  char group[512];
  snprintf(group, sizeof group, "%s.replay", cfg->kafka.group);
  /* The targeted mode commits nothing and reads a record here and there:
   * small fetches and a short read-ahead, no waiting for more data after
   * a seek nor for a queue over queued.min.messages (librdkafka's defaults
   * of 500 ms and 1 s would dominate; even 10 ms did: the fetcher looks
   * again at a partition whose queue was full only after that backoff,
   * and a seek empties the queue, so one seek in five waited it out),
   * and no reset past a record retention deleted. */
  const char *const defaults[] = {"group.id",
                                  o->group ? o->group : group,
                                  "enable.auto.commit",
                                  "false",
                                  "enable.auto.offset.store",
                                  "false",
                                  "enable.partition.eof",
                                  "true",
                                  "auto.offset.reset",
                                  targeted(o) ? "error" : "earliest",
                                  targeted(o) ? "max.partition.fetch.bytes" : NULL,
                                  "65536",
                                  "queued.min.messages",
                                  "1000",
                                  "fetch.wait.max.ms",
                                  "10",
                                  "fetch.queue.backoff.ms",
                                  targeted(o) ? "1" : "10",
                                  NULL};
  char errstr[512];
  rd_kafka_conf_t *conf = kjb_kafka_conf(cfg, RD_KAFKA_CONSUMER, defaults, err);
  if (!conf) {
    rc = -(int)err->code;
    goto out;
  }
  rd_kafka_conf_set_error_cb(conf, on_error);
  rd_kafka_conf_set_opaque(conf, &r);
  r.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!r.rk) {
    rd_kafka_conf_destroy(conf);
    rc = kjb_err_set(err, KJB_EKAFKA, "could not create consumer: %s", errstr);
    goto out;
  }
  rd_kafka_poll_set_consumer(r.rk);
  if (!(r.catalog = kjb_catalog_new(cfg, err)) ||
      !(r.store = kjb_store_connect_durable(cfg->postgres.conninfo, cfg->postgres.schema, err)) ||
      (!o->dry_run &&
       !(r.jobs = kjb_store_connect_durable(cfg->postgres.conninfo, cfg->postgres.schema, err)))) {
    rc = -(int)err->code;
    goto out;
  }
  r.streaming = r.jobs != NULL;
  int64_t audit_id = -1;
  if (o->actor && !o->dry_run) {
    char *params = audit_params(o, o->group ? o->group : group);
    rc = kjb_audit_record(r.store, o->actor, KJB_AUDIT_REPLAY, params ? params : "{}", NULL,
                          &audit_id, err);
    free(params);
    if (rc < 0)
      goto out;
  }
  /* A login the broker refuses ends the replay at once, not after the
   * timeouts of the requests below. */
  if ((rc = kjb_kafka_wait_connected(r.rk, &r.kafka, 10000, err)) == 0) {
    if (targeted(o)) {
      rc = replay_targets(&r, stop, err);
      drop_unhandled(st);
    } else if ((rc = plan(&r, err)) == 0)
      rc = consume(&r, stop, err);
  }
  if (r.marking) { /* the replay failed with the last rows being marked */
    kjb_err merr;
    marked(&r, &merr);
  }
  if (audit_id >= 0) {
    json_t *res = kjb_replay_stats_json(st, 0);
    json_object_del(res, "dry_run");
    if (rc < 0)
      json_object_set_new(res, "error", json_string(err->msg));
    char *result = json_dumps(res, JSON_COMPACT);
    json_decref(res);
    kjb_err aerr;
    if (kjb_audit_finish(r.store, audit_id, result ? result : "{}", &aerr) < 0 && rc == 0) {
      *err = aerr;
      rc = -KJB_EPG;
    }
    free(result);
  }
out:
  if (r.rk) {
    rd_kafka_consumer_close(r.rk);
    rd_kafka_destroy(r.rk);
  }
  kjb_store_free(r.jobs);
  kjb_store_free(r.store);
  kjb_catalog_free(r.catalog);
  kjb_arena_free(r.arena);
  kjb_rows_close(&r.rows);
  free(r.recs);
  free(r.is_new);
  free(r.marks);
  free(r.parts);
  return rc;
}
