/* Schema catalog and record framing. */
#include "catalog.h"

#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "registry.h"

/* How long a registry's "no such id" answer is believed before asking
 * again; a schema registered later must eventually be found. */
#define NEGATIVE_TTL_US (60LL * 1000000)

/* The most *.avsc files schemas.dir may hold: each is parsed and kept in
 * memory (up to KJB_SCHEMA_MAX_BYTES each). */
#define MAX_SCHEMA_FILES 1024

typedef struct {
  char *file;
  kjb_schema *schema;
} file_entry;

typedef struct {
  int32_t id;
  const kjb_schema *schema; /* NULL: known to be missing until expires */
  kjb_schema *owned;        /* fetched from the registry */
  int64_t expires_us;
  kjb_err why; /* why it is missing: repeated while cached */
} id_entry;

typedef struct {
  const kjb_schema *writer, *reader;
  kjb_resolver *resolver; /* NULL: incompatible, and why is in mismatch */
  kjb_err mismatch;
} resolver_entry;

struct kjb_catalog {
  const kjb_config *cfg;
  file_entry *files;
  size_t nfiles;
  id_entry *ids;
  size_t nids, capids;
  resolver_entry *resolvers;
  size_t nresolvers, capresolvers;
  const kjb_schema **readers; /* per topic, indexed like cfg->topics */
  kjb_registry *registry;
};

static const kjb_schema *by_file(const kjb_catalog *c, const char *file) {
  for (size_t i = 0; i < c->nfiles; i++)
    if (strcmp(c->files[i].file, file) == 0)
      return c->files[i].schema;
  return NULL;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(((const file_entry *)a)->file, ((const file_entry *)b)->file);
}

static int load_dir(kjb_catalog *c, kjb_err *err) {
  const char *dir = c->cfg->schemas.dir;
  DIR *d = opendir(dir);
  if (!d)
    return kjb_err_set(err, KJB_ECONFIG, "%s: schemas.dir \"%s\": %m", c->cfg->path, dir);
  struct dirent *e;
  size_t cap = 0;
  int rc = 0;
  while (rc == 0 && (e = readdir(d))) {
    if (!has_suffix(e->d_name, ".avsc"))
      continue;
    if (c->nfiles == MAX_SCHEMA_FILES) {
      rc = kjb_err_set(err, KJB_ECONFIG, "%s: schemas.dir \"%s\": more than %d .avsc files",
                       c->cfg->path, dir, MAX_SCHEMA_FILES);
      break;
    }
    kjb_buf path;
    kjb_buf_init(&path);
    kjb_buf_printf(&path, "%s/%s", dir, e->d_name);
    kjb_schema *s = kjb_schema_load(path.data, err);
    kjb_buf_close(&path);
    if (!s) {
      rc = -(int)err->code;
      break;
    }
    c->files = kjb_xgrow(c->files, &cap, c->nfiles + 1, sizeof *c->files);
    c->files[c->nfiles++] = (file_entry){kjb_xstrdup(e->d_name), s};
  }
  closedir(d);
  if (c->nfiles)
    qsort(c->files, c->nfiles, sizeof *c->files, cmp_names);
  return rc;
}

static void add_id(kjb_catalog *c, id_entry e) {
  c->ids = kjb_xgrow(c->ids, &c->capids, c->nids + 1, sizeof *c->ids);
  c->ids[c->nids++] = e;
}

typedef struct {
  const kjb_schema *reader;
  const kjb_config *cfg;
  const kjb_job_cfg *job;
  const char *what; /* the template's key: "unique_key", "ordering_key" */
  kjb_err *err;
} path_check;

/* A mapped path the reader schema lacks is a mistake in the configuration,
 * reported at the job's line. */
static int path_error(kjb_err *err, const kjb_config *cfg, const kjb_job_cfg *job,
                      const char *what) {
  kjb_err_prefix(err, "%s:%d: job \"%s\": %s", cfg->path, job->line, job->kind, what);
  err->code = KJB_ECONFIG;
  return -(int)KJB_ECONFIG;
}

static int check_template_path(const char *path, size_t len, void *arg) {
  path_check *pc = arg;
  /* The whole path, however long: the mapper looks up all of it. */
  char *buf = kjb_xmalloc(len + 1);
  memcpy(buf, path, len);
  buf[len] = '\0';
  int rc = kjb_schema_check_path(pc->reader, buf, pc->err);
  free(buf);
  if (rc < 0)
    return path_error(pc->err, pc->cfg, pc->job, pc->what);
  return 0;
}

static int check_topic(kjb_catalog *c, size_t ti, kjb_err *err) {
  const kjb_topic_cfg *t = &c->cfg->topics[ti];
  const kjb_schema *reader = by_file(c, t->schema);
  if (!reader)
    return kjb_err_set(err, KJB_ECONFIG, "%s:%d: topic \"%s\": schema \"%s\" is not in %s",
                       c->cfg->path, t->line, t->topic, t->schema, c->cfg->schemas.dir);
  c->readers[ti] = reader;
  for (size_t j = 0; j < t->njobs; j++) {
    const kjb_job_cfg *job = &t->jobs[j];
    for (size_t a = 0; a < job->nargs; a++)
      if (kjb_schema_check_path(reader, job->args[a], err) < 0)
        return path_error(err, c->cfg, job, "args");
    const char *const keys[][2] = {{"unique_key", job->unique_key},
                                   {"ordering_key", job->ordering_key}};
    for (size_t k = 0; k < 2; k++) {
      if (!keys[k][1])
        continue;
      path_check pc = {reader, c->cfg, job, keys[k][0], err};
      int rc = kjb_template_each(keys[k][1], check_template_path, &pc);
      if (rc)
        return rc < 0 ? rc : -rc;
    }
  }
  if (t->format == KJB_FMT_CONFLUENT && c->cfg->schema_registry.url == NULL &&
      c->cfg->schemas.nids == 0)
    return kjb_err_set(err, KJB_ECONFIG,
                       "%s:%d: topic \"%s\": format \"confluent\" needs schemas.ids or "
                       "schema_registry.url to find writer schemas",
                       c->cfg->path, t->line, t->topic);
  return 0;
}

kjb_catalog *kjb_catalog_new(const kjb_config *cfg, kjb_err *err) {
  kjb_catalog *c = kjb_xcalloc(1, sizeof *c);
  c->cfg = cfg;
  c->readers = kjb_xcalloc(cfg->ntopics, sizeof *c->readers);
  if (load_dir(c, err) < 0)
    goto fail;
  for (size_t i = 0; i < cfg->schemas.nids; i++) {
    const kjb_schema_id_cfg *id = &cfg->schemas.ids[i];
    const kjb_schema *s = by_file(c, id->file);
    if (!s) {
      kjb_err_set(err, KJB_ECONFIG, "%s:%d: schemas.ids: id %d: \"%s\" is not in %s", cfg->path,
                  id->line, id->id, id->file, cfg->schemas.dir);
      goto fail;
    }
    add_id(c, (id_entry){id->id, s, NULL, INT64_MAX, {0}});
  }
  for (size_t i = 0; i < cfg->ntopics; i++)
    if (check_topic(c, i, err) < 0)
      goto fail;
  if (cfg->schema_registry.url)
    c->registry = kjb_registry_new(cfg->schema_registry.url, cfg->schema_registry.timeout_us);
  return c;
fail:
  kjb_catalog_free(c);
  return NULL;
}

void kjb_catalog_free(kjb_catalog *c) {
  if (!c)
    return;
  for (size_t i = 0; i < c->nresolvers; i++)
    kjb_resolver_free(c->resolvers[i].resolver);
  free(c->resolvers);
  for (size_t i = 0; i < c->nids; i++)
    kjb_schema_free(c->ids[i].owned);
  free(c->ids);
  for (size_t i = 0; i < c->nfiles; i++) {
    free(c->files[i].file);
    kjb_schema_free(c->files[i].schema);
  }
  free(c->files);
  free(c->readers);
  kjb_registry_free(c->registry);
  free(c);
}

const kjb_schema *kjb_catalog_reader(const kjb_catalog *c, const kjb_topic_cfg *t) {
  return c->readers[t - c->cfg->topics];
}

int kjb_catalog_id_of(const kjb_catalog *c, const kjb_topic_cfg *t) {
  const kjb_schema *reader = kjb_catalog_reader(c, t);
  for (size_t i = 0; i < c->cfg->schemas.nids; i++)
    if (c->ids[i].schema == reader)
      return c->ids[i].id;
  return -1;
}

int kjb_catalog_by_id(kjb_catalog *c, int32_t id, const kjb_schema **out, kjb_err *err) {
  int64_t now = kjb_now_mono_us();
  for (size_t i = 0; i < c->nids; i++) {
    id_entry *e = &c->ids[i];
    if (e->id != id)
      continue;
    if (e->schema) {
      *out = e->schema;
      return 0;
    }
    if (now < e->expires_us) {
      *err = e->why;
      return -(int)err->code;
    }
    /* Expired negative entry: drop it and ask again. */
    c->ids[i] = c->ids[--c->nids];
    break;
  }
  if (!c->registry)
    return kjb_err_set(err, KJB_EUNKNOWN_SCHEMA_ID,
                       "schema id %d is not in schemas.ids and no registry is configured", (int)id);
  char *json;
  int rc = kjb_registry_fetch(c->registry, id, &json, err);
  if (rc < 0) {
    if (err->code == KJB_EUNKNOWN_SCHEMA_ID)
      add_id(c, (id_entry){id, NULL, NULL, now + NEGATIVE_TTL_US, *err});
    return rc;
  }
  kjb_schema *s = kjb_schema_parse(json, strlen(json), err);
  free(json);
  if (!s) {
    /* A registered schema we cannot parse will not get better by asking. */
    kjb_err_prefix(err, "schema id %d from the registry", (int)id);
    err->code = KJB_EUNKNOWN_SCHEMA_ID;
    add_id(c, (id_entry){id, NULL, NULL, now + NEGATIVE_TTL_US, *err});
    return -(int)err->code;
  }
  add_id(c, (id_entry){id, s, s, INT64_MAX, {0}});
  *out = s;
  return 0;
}

static const kjb_resolver *resolver_for(kjb_catalog *c, const kjb_schema *writer,
                                        const kjb_schema *reader, kjb_err *err) {
  resolver_entry *e = NULL;
  for (size_t i = 0; i < c->nresolvers && !e; i++)
    if (c->resolvers[i].writer == writer && c->resolvers[i].reader == reader)
      e = &c->resolvers[i];
  if (!e) {
    /* Incompatible pairs are cached too, so each record fails fast. */
    c->resolvers =
        kjb_xgrow(c->resolvers, &c->capresolvers, c->nresolvers + 1, sizeof *c->resolvers);
    e = &c->resolvers[c->nresolvers++];
    *e = (resolver_entry){writer, reader, NULL, {0}};
    e->resolver = kjb_resolver_new(writer, reader, &e->mismatch);
  }
  if (!e->resolver && err)
    *err = e->mismatch;
  return e->resolver;
}

static const kjb_schema *by_fingerprint(const kjb_catalog *c, uint64_t fp) {
  for (size_t i = 0; i < c->nfiles; i++)
    if (kjb_schema_fingerprint(c->files[i].schema) == fp)
      return c->files[i].schema;
  return NULL;
}

/* Reads the framing of a record value of topic t: the schema it was
 * written with and the size of the header before the Avro body. Inlined
 * so that kjb_decode_record, run for every record, pays no call for it. */
__attribute__((always_inline)) static inline int unframe(kjb_catalog *c, const kjb_topic_cfg *t,
                                                         const uint8_t *buf, size_t len,
                                                         const kjb_schema **writer, size_t *header,
                                                         kjb_err *err) {
  *writer = kjb_catalog_reader(c, t);
  *header = 0;
  switch (t->format) {
  case KJB_FMT_CONFLUENT: {
    if (len < 5)
      return kjb_err_set(err, KJB_ESHORT_HEADER,
                         "record is %zu bytes, shorter than the 5-byte confluent header", len);
    if (buf[0] != 0)
      return kjb_err_set(err, KJB_EBAD_MAGIC, "byte 0: bad magic byte 0x%02x, expected 0x00",
                         buf[0]);
    int32_t id =
        (int32_t)((uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4]);
    int rc = kjb_catalog_by_id(c, id, writer, err);
    if (rc < 0)
      return rc;
    *header = 5;
    break;
  }
  case KJB_FMT_SINGLE_OBJECT: {
    if (len < 10)
      return kjb_err_set(err, KJB_ESHORT_HEADER,
                         "record is %zu bytes, shorter than the 10-byte single-object header", len);
    if (buf[0] != 0xC3 || buf[1] != 0x01)
      return kjb_err_set(err, KJB_EBAD_MAGIC,
                         "byte 0: bad magic bytes 0x%02x 0x%02x, expected 0xc3 0x01", buf[0],
                         buf[1]);
    uint64_t fp = 0;
    for (int i = 9; i >= 2; i--)
      fp = fp << 8 | buf[i];
    *writer = by_fingerprint(c, fp);
    if (!*writer)
      return kjb_err_set(err, KJB_EUNKNOWN_FINGERPRINT,
                         "fingerprint 0x%016llx matches no schema in %s", (unsigned long long)fp,
                         c->cfg->schemas.dir);
    *header = 10;
    break;
  }
  case KJB_FMT_RAW: break;
  }
  return 0;
}

int kjb_decode_record(kjb_catalog *c, const kjb_topic_cfg *t, const uint8_t *buf, size_t len,
                      kjb_arena *arena, kjb_value **out, kjb_err *err) {
  const kjb_schema *writer;
  size_t header;
  int rc = unframe(c, t, buf, len, &writer, &header, err);
  if (rc < 0)
    return rc;
  const kjb_resolver *r = resolver_for(c, writer, kjb_catalog_reader(c, t), err);
  if (!r)
    return -(int)err->code;
  rc = kjb_avro_decode(r, buf + header, len - header, arena, out, err);
  if (rc < 0 && header)
    kjb_err_prefix(err, "avro body at byte %zu", header);
  return rc;
}

int kjb_decode_partial(kjb_catalog *c, const kjb_topic_cfg *t, const uint8_t *buf, size_t len,
                       json_t **partial, kjb_avro_stop *stop, kjb_err *err) {
  *partial = NULL;
  const kjb_schema *writer;
  size_t header;
  int rc = unframe(c, t, buf, len, &writer, &header, err);
  if (rc < 0)
    return rc;
  /* Not cached: this is for one record now and then, and resolver_for
   * stays inlined in kjb_decode_record. */
  kjb_resolver *r = kjb_resolver_new(writer, writer, err);
  if (!r)
    return -(int)err->code; /* not reached: a schema resolves against itself */
  kjb_arena *a = kjb_arena_new(1 << 16);
  kjb_value *v;
  rc = kjb_avro_decode_partial(r, buf + header, len - header, a, &v, stop, err);
  if (rc < 0) {
    stop->byte += header;
    if (header)
      kjb_err_prefix(err, "avro body at byte %zu", header);
  }
  if (v) {
    kjb_buf b;
    kjb_buf_init(&b);
    kjb_value_to_json(v, &b);
    /* jansson's integers stop at 64 bits, an Avro long's do not go past. */
    *partial = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
    kjb_buf_close(&b);
  }
  kjb_arena_free(a);
  kjb_resolver_free(r);
  return rc < 0 ? 1 : 0;
}

int kjb_frame_header(kjb_catalog *c, const kjb_topic_cfg *t, int schema_id, kjb_buf *out,
                     kjb_err *err) {
  const kjb_schema *reader = kjb_catalog_reader(c, t);
  switch (t->format) {
  case KJB_FMT_CONFLUENT: {
    int id = schema_id >= 0 ? schema_id : kjb_catalog_id_of(c, t);
    if (id < 0)
      return kjb_err_set(err, KJB_EUSAGE,
                         "topic \"%s\": schema \"%s\" has no id in schemas.ids; pass --schema-id",
                         t->topic, t->schema);
    uint8_t h[5] = {0, (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    kjb_buf_append(out, h, 5);
    return 0;
  }
  case KJB_FMT_SINGLE_OBJECT: {
    uint64_t fp = kjb_schema_fingerprint(reader);
    uint8_t h[10] = {0xC3, 0x01};
    for (int i = 0; i < 8; i++)
      h[2 + i] = (uint8_t)(fp >> (8 * i));
    kjb_buf_append(out, h, 10);
    return 0;
  }
  case KJB_FMT_RAW: return 0;
  }
  return 0;
}

void kjb_catalog_print(const kjb_catalog *c, FILE *out) {
  const kjb_config *cfg = c->cfg;
  for (size_t i = 0; i < cfg->ntopics; i++) {
    const kjb_topic_cfg *t = &cfg->topics[i];
    fprintf(out, "topic %s (format %s, schema %s, fingerprint 0x%016llx, dlq %s)\n", t->topic,
            kjb_format_name(t->format), t->schema,
            (unsigned long long)kjb_schema_fingerprint(c->readers[i]), t->dlq);
    for (size_t j = 0; j < t->njobs; j++) {
      const kjb_job_cfg *job = &t->jobs[j];
      const kjb_handler_cfg *h = kjb_config_handler(cfg, job->kind);
      fprintf(out, "  -> job %s: queue %s, priority %d, max_attempts %d, handler %s", job->kind,
              job->queue, job->priority, job->max_attempts, h ? h->type : "(none)");
      if (job->unique_key)
        fprintf(out, ", unique_key \"%s\"", job->unique_key);
      if (job->ordering_key)
        fprintf(out, ", ordering_key \"%s\"%s", job->ordering_key,
                h && h->on_discard == KJB_ON_DISCARD_HOLD ? " (on_discard hold)" : "");
      if (job->nargs) {
        fprintf(out, ", args [");
        for (size_t a = 0; a < job->nargs; a++)
          fprintf(out, "%s%s", a ? ", " : "", job->args[a]);
        fprintf(out, "]");
      } else {
        fprintf(out, ", args = whole record");
      }
      fprintf(out, "\n");
    }
  }
}
