/* Replay of dead letters, and offset-reset specs. */
#include "replay.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "catalog.h"
#include "dlq.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "store.h"
#include "util.h"

#define REPLAY_BATCH 500

/* ---- reset specs ---------------------------------------------------- */

/* A spec's argument parser: 0 with *out set, or -1 with *why saying
 * what is wrong. */
typedef int (*arg_parser)(const char *s, int64_t *out, const char **why);

static int parse_offset(const char *s, int64_t *out, const char **why) {
  if (kjb_parse_i64(s, 0, INT64_MAX, out) == 0)
    return 0;
  *why = "the offset must be an integer from 0 to 9223372036854775807";
  return -1;
}

static int parse_shift(const char *s, int64_t *out, const char **why) {
  if (kjb_parse_i64(s, INT64_MIN, INT64_MAX, out) == 0)
    return 0;
  *why = "the shift must be an integer from -9223372036854775808 to 9223372036854775807";
  return -1;
}

/* ".5", ".123456789": a fraction of 1 to 9 digits as milliseconds (digits
 * past the third are dropped). No '.' is no fraction. */
static bool fraction_ms(const char **s, int64_t *ms) {
  *ms = 0;
  if (**s != '.')
    return true;
  int n = 0;
  for ((*s)++; isdigit((unsigned char)**s); (*s)++, n++)
    if (n < 3)
      *ms = *ms * 10 + (**s - '0');
  for (int k = n; k < 3; k++)
    *ms *= 10;
  return n >= 1 && n <= 9;
}

/* "2026-11-21T10:00:00.000", optionally with "Z" or "+01:00"; UTC when no
 * zone is given, as kafka-consumer-groups does with its default zone.
 * Milliseconds since the epoch, rounded down (negative before 1970). */
static int parse_datetime(const char *s, int64_t *out, const char **why) {
  int64_t us;
  if (kjb_datetime_parse(s, &us, why) < 0)
    return -1;
  *out = us / 1000 - (us % 1000 < 0);
  return 0;
}

/* ISO 8601 duration as kafka-consumer-groups takes it (Java's
 * Duration.parse): PnDTnHnMn.nS, each part at most once and in this
 * order, a fraction only on seconds. Milliseconds, at most INT64_MAX. */
static int parse_duration(const char *s, int64_t *out, const char **why) {
  static const struct {
    char unit;
    bool in_time;
    int64_t ms;
  } parts[] = {{'D', false, 86400000}, {'H', true, 3600000}, {'M', true, 60000}, {'S', true, 1000}};
  *why = "expected an ISO 8601 duration PnDTnHnMn.nS";
  if (*s++ != 'P' || !*s)
    return -1;
  bool in_time = false;
  size_t next = 0;
  int64_t total = 0;
  while (*s) {
    if (*s == 'T') {
      if (in_time || !*++s)
        return -1;
      in_time = true;
      continue;
    }
    int64_t v = 0, frac = 0;
    if (!isdigit((unsigned char)*s))
      return -1;
    bool overflow = false;
    for (; isdigit((unsigned char)*s); s++)
      overflow |= __builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v);
    const char *dot = s;
    if (!fraction_ms(&s, &frac))
      return -1;
    size_t i = next;
    while (i < 4 && (parts[i].unit != *s || parts[i].in_time != in_time))
      i++;
    /* Any fraction, ".0" too: Java refuses "P1.0D" and "PT1.0H". */
    if (i == 4 || (s != dot && parts[i].unit != 'S'))
      return -1;
    s++;
    next = i + 1;
    if (overflow || __builtin_mul_overflow(v, parts[i].ms, &v) ||
        __builtin_add_overflow(v, frac, &v) || __builtin_add_overflow(total, v, &total)) {
      *why = "the duration is too long";
      return -1;
    }
  }
  *out = total;
  return 0;
}

int kjb_reset_parse(const char *text, kjb_reset_spec *out, kjb_err *err) {
  static const struct {
    const char *name;
    kjb_reset_kind kind;
    arg_parser parse; /* NULL: the spec takes no argument */
  } specs[] = {
      {"to-earliest", KJB_RESET_EARLIEST, NULL},
      {"to-latest", KJB_RESET_LATEST, NULL},
      {"to-offset", KJB_RESET_OFFSET, parse_offset},
      {"to-datetime", KJB_RESET_DATETIME, parse_datetime},
      {"shift-by", KJB_RESET_SHIFT, parse_shift},
      {"by-duration", KJB_RESET_DURATION, parse_duration},
  };
  const char *colon = strchr(text, ':');
  size_t n = colon ? (size_t)(colon - text) : strlen(text);
  const char *why = "expected to-earliest, to-latest, to-offset:N, "
                    "to-datetime:YYYY-MM-DDTHH:MM:SS.sss, shift-by:N or by-duration:PnDTnHnMnS";
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    if (strlen(specs[i].name) != n || strncmp(text, specs[i].name, n) != 0 ||
        !colon != !specs[i].parse)
      continue;
    kjb_reset_spec spec = {specs[i].kind, 0};
    if (!specs[i].parse || specs[i].parse(colon + 1, &spec.value, &why) == 0) {
      *out = spec;
      return 0;
    }
    break;
  }
  /* Quoted in part when long, never cutting a character (the API answers
   * the message as JSON). */
  int shown = (int)kjb_utf8_prefix(text, 64);
  return kjb_err_set(err, KJB_EUSAGE, "bad reset spec \"%.*s%s\": %s", shown, text,
                     text[shown] ? "..." : "", why);
}

int64_t kjb_reset_target(const kjb_reset_spec *spec, int64_t low, int64_t high, int64_t committed,
                         int64_t for_time) {
  int64_t t;
  switch (spec->kind) {
  case KJB_RESET_EARLIEST: t = low; break;
  case KJB_RESET_LATEST: t = high; break;
  case KJB_RESET_OFFSET: t = spec->value; break;
  case KJB_RESET_SHIFT:
    /* Past either end is the end, like kafka-consumer-groups. */
    if (__builtin_add_overflow(committed >= 0 ? committed : low, spec->value, &t))
      t = spec->value < 0 ? INT64_MIN : INT64_MAX;
    break;
  default: t = for_time >= 0 ? for_time : high; break;
  }
  return t < low ? low : t > high ? high : t;
}

int64_t kjb_reset_time_ms(const kjb_reset_spec *spec, int64_t now_ms) {
  int64_t at;
  if (spec->kind == KJB_RESET_DATETIME)
    at = spec->value;
  else if (spec->kind == KJB_RESET_DURATION)
    at = now_ms - spec->value; /* both >= 0: cannot overflow */
  else
    return -1;
  return at < 0 ? 0 : at;
}

/* ---- replay --------------------------------------------------------- */

int kjb_replay_check_topic(const kjb_config *cfg, const char *topic, kjb_err *err) {
  for (size_t i = 0; i < cfg->ntopics; i++)
    if (strcmp(cfg->topics[i].dlq, topic) == 0)
      return 0;
  int shown = (int)kjb_utf8_prefix(topic, 200);
  return kjb_err_set(err, KJB_EUSAGE, "\"%.*s%s\" is not the dead-letter topic of a mapping", shown,
                     topic, topic[shown] ? "..." : "");
}

typedef struct {
  int32_t partition;
  int64_t start, end; /* end: the high watermark at start */
  int64_t next;       /* next offset to consume */
  int done;
} part;

typedef struct {
  size_t first_row, nrows;
} rec_rows;

typedef struct {
  const kjb_config *cfg;
  const kjb_replay_opts *o;
  kjb_replay_stats *st;
  kjb_catalog *catalog;
  kjb_store *store;
  rd_kafka_t *rk;
  kjb_arena *arena;
  kjb_rows rows;
  rec_rows *recs;
  size_t nrecs, caprecs;
  unsigned char *is_new;
  size_t capnew;
  part *parts;
  int nparts;
  kjb_kafka_errors kafka; /* what the consumer's error callback saw */
} replay;

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  replay *r = opaque;
  kjb_kafka_note_error(&r->kafka, rk, err, reason);
}

static void count(replay *r, uint64_t *stat, const char *outcome) {
  (*stat)++;
  kjb_counter_add("kjb_replay_records_total", "Replayed dead letters, by outcome.", 1, "topic",
                  r->o->topic, "outcome", outcome, NULL);
}

static void still_failing(replay *r, const rd_kafka_message_t *m, const char *why) {
  count(r, &r->st->still_failing, "still_failing");
  if (r->o->log)
    fprintf(r->o->log, "still failing: %s [%d] @%lld: %s\n", r->o->topic, (int)m->partition,
            (long long)m->offset, why);
}

/* Decodes and maps one dead letter. Returns 0, or a negative code when a
 * transient error (the registry) stops the replay. */
static int replay_one(replay *r, const rd_kafka_message_t *m, kjb_err *err) {
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
    h = NULL;
  kjb_dead_letter dl;
  kjb_err bad;
  if (kjb_dlq_headers_parse(h, r->arena, &dl, &bad) < 0) {
    still_failing(r, m, bad.msg);
    return 0;
  }
  const kjb_topic_cfg *t = kjb_config_topic(r->cfg, dl.topic);
  if (!t) {
    char why[320];
    snprintf(why, sizeof why, "topic \"%s\" is not in the configuration", dl.topic);
    still_failing(r, m, why);
    return 0;
  }
  kjb_record rec = {
      .topic = t->topic,
      .partition = dl.partition,
      .offset = dl.offset,
      .timestamp = dl.timestamp,
      .key = m->key,
      .key_len = m->key_len,
      .value = m->payload,
      .len = m->len,
      .headers = h,
      .skip_error_headers = 1,
  };
  size_t first = r->rows.n;
  const char *stage;
  if (kjb_record_to_jobs(r->catalog, t, &rec, r->arena, &r->rows, &stage, err) < 0) {
    if (kjb_err_is_transient(err))
      return -(int)err->code;
    char why[600], error_class[64];
    snprintf(why, sizeof why, "%s: %s",
             kjb_dlq_error_class(err->code, error_class, sizeof error_class), err->msg);
    still_failing(r, m, why);
    return 0;
  }
  r->recs = kjb_xgrow(r->recs, &r->caprecs, r->nrecs + 1, sizeof *r->recs);
  r->recs[r->nrecs++] = (rec_rows){first, r->rows.n - first};
  return 0;
}

/* Stores the batch and commits the replay group's offsets. */
static int flush(replay *r, kjb_err *err) {
  if (r->rows.n) {
    r->is_new = kjb_xgrow(r->is_new, &r->capnew, r->rows.n, sizeof *r->is_new);
    int rc =
        kjb_store_insert_marked(r->store, r->rows.rows, r->rows.n, r->o->dry_run, r->is_new, err);
    if (rc < 0)
      return rc;
    for (size_t i = 0; i < r->nrecs; i++) {
      int any = 0;
      for (size_t k = 0; k < r->recs[i].nrows; k++)
        any |= r->is_new[r->recs[i].first_row + k];
      if (any)
        count(r, &r->st->replayed, "replayed");
      else
        count(r, &r->st->already_present, "already_present");
    }
  }
  r->rows.n = 0;
  r->nrecs = 0;
  kjb_arena_reset(r->arena);
  if (r->o->dry_run)
    return 0;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
  for (int i = 0; i < r->nparts; i++)
    rd_kafka_topic_partition_list_add(l, r->o->topic, r->parts[i].partition)->offset =
        r->parts[i].next;
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
    p->next = p->start;
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

static int consume(replay *r, volatile sig_atomic_t *stop, kjb_err *err) {
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
      if (r->rows.n || r->nrecs)
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
      rc = replay_one(r, m, err);
      if (rc == 0) {
        seen++;
        p->next = m->offset + 1;
        if (!r->o->follow && p->next >= p->end)
          p->done = 1;
      }
    }
    rd_kafka_message_destroy(m);
    if (rc == 0 && r->rows.n >= REPLAY_BATCH)
      rc = flush(r, err);
  }
  if (rc == 0)
    rc = flush(r, err);
  return rc;
}

int kjb_replay_run(const kjb_config *cfg, const kjb_replay_opts *o, kjb_replay_stats *st,
                   volatile sig_atomic_t *stop, kjb_err *err) {
  int rc = kjb_replay_check_topic(cfg, o->topic, err);
  if (rc < 0)
    return rc;
  replay r = {.cfg = cfg, .o = o, .st = st};
  kjb_rows_init(&r.rows);
  r.arena = kjb_arena_new(1 << 20);
  char group[512];
  snprintf(group, sizeof group, "%s.replay", cfg->kafka.group);
  const char *const defaults[] = {"group.id",
                                  o->group ? o->group : group,
                                  "enable.auto.commit",
                                  "false",
                                  "enable.auto.offset.store",
                                  "false",
                                  "enable.partition.eof",
                                  "true",
                                  "auto.offset.reset",
                                  "earliest",
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
      !(r.store = kjb_store_connect_durable(cfg->postgres.conninfo, cfg->postgres.schema, err))) {
    rc = -(int)err->code;
    goto out;
  }
  int64_t audit_id = -1;
  if (o->actor && !o->dry_run) {
    json_t *p = json_pack("{s:s, s:s, s:o, s:I, s:b}", "topic", o->topic, "group",
                          o->group ? o->group : group, "reset_offsets",
                          o->reset_text ? json_string(o->reset_text) : json_null(), "limit",
                          (json_int_t)o->limit, "follow", o->follow);
    char *params = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    rc = kjb_audit_record(r.store, o->actor, KJB_AUDIT_REPLAY, params ? params : "{}", NULL,
                          &audit_id, err);
    free(params);
    if (rc < 0)
      goto out;
  }
  /* A login the broker refuses ends the replay at once, not after the
   * timeouts of the requests below. */
  if ((rc = kjb_kafka_wait_connected(r.rk, &r.kafka, 10000, err)) == 0 && (rc = plan(&r, err)) == 0)
    rc = consume(&r, stop, err);
  if (audit_id >= 0) {
    json_t *res = json_pack("{s:I, s:I, s:I}", "replayed", (json_int_t)st->replayed,
                            "still_failing", (json_int_t)st->still_failing, "already_present",
                            (json_int_t)st->already_present);
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
  kjb_store_free(r.store);
  kjb_catalog_free(r.catalog);
  kjb_arena_free(r.arena);
  kjb_rows_close(&r.rows);
  free(r.recs);
  free(r.is_new);
  free(r.parts);
  return rc;
}
