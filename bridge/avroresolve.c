/* Avro decoding, part two: compiles a (writer, reader) schema pair once
 * into a plan by Avro's schema resolution rules. See avrodec_int.h. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avrodec_int.h"

/* ---- Resolution plans ---- */

typedef struct {
  const kjb_snode *w, *r;
  kjb_plan *p;
} cached;

typedef struct {
  kjb_arena *a;
  kjb_err *err;
  cached *cache;
  size_t ncache, capcache;
  kjb_avro_path path;
} rctx;

static void *ralloc(rctx *c, size_t n) {
  void *p = kjb_arena_alloc(c->a, n ? n : 1);
  if (!p)
    abort(); /* resolvers are built at startup or per new schema id */
  memset(p, 0, n ? n : 1);
  return p;
}

__attribute__((format(printf, 2, 3))) static int rerr(rctx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = kjb_avro_path_err(&c->path, c->err, KJB_ESCHEMA_MISMATCH, fmt, ap);
  va_end(ap);
  return rc;
}

static const char *unqualified(const char *fullname) {
  const char *dot = strrchr(fullname, '.');
  return dot ? dot + 1 : fullname;
}

/* Named types match when their full or unqualified names agree, or when
 * one of the reader's aliases names the writer's type. */
static bool names_match(const kjb_snode *w, const kjb_snode *r) {
  if (strcmp(w->fullname, r->fullname) == 0 ||
      strcmp(unqualified(w->fullname), unqualified(r->fullname)) == 0)
    return true;
  for (size_t i = 0; i < r->naliases; i++)
    if (strcmp(r->aliases[i], w->fullname) == 0 ||
        strcmp(unqualified(r->aliases[i]), unqualified(w->fullname)) == 0)
      return true;
  return false;
}

static bool is_named(const kjb_snode *n) {
  return n->type == KJB_S_RECORD || n->type == KJB_S_ENUM || n->type == KJB_S_FIXED;
}

static bool same_kind(const kjb_snode *w, const kjb_snode *r) {
  return w->type == r->type && (!is_named(w) || names_match(w, r));
}

static bool promotes(kjb_stype w, kjb_stype r) {
  switch (w) {
  case KJB_S_INT: return r == KJB_S_LONG || r == KJB_S_FLOAT || r == KJB_S_DOUBLE;
  case KJB_S_LONG: return r == KJB_S_FLOAT || r == KJB_S_DOUBLE;
  case KJB_S_FLOAT: return r == KJB_S_DOUBLE;
  case KJB_S_STRING: return r == KJB_S_BYTES;
  case KJB_S_BYTES: return r == KJB_S_STRING;
  default: return false;
  }
}

/* The least number of bytes a datum of writer type n occupies. */
size_t kjb_avrodec_min_size(const kjb_snode *n, int depth) {
  switch (n->type) {
  case KJB_S_NULL: return 0;
  case KJB_S_FLOAT: return 4;
  case KJB_S_DOUBLE: return 8;
  case KJB_S_FIXED: return n->fixed_size;
  case KJB_S_RECORD: {
    /* A record can only contain itself through a union, array or map,
     * which stop the recursion; the depth guard covers nonsense schemas. */
    if (depth > KJB_AVRO_MAX_DEPTH)
      return 0;
    size_t sum = 0;
    for (size_t i = 0; i < n->nfields; i++)
      sum += kjb_avrodec_min_size(n->fields[i].type, depth + 1);
    return sum;
  }
  default: return 1;
  }
}

static const kjb_plan *resolve(rctx *c, const kjb_snode *w, const kjb_snode *r);

static kjb_plan *new_plan(rctx *c, kjb_opcode op, const kjb_snode *w, const kjb_snode *r) {
  kjb_plan *p = ralloc(c, sizeof *p);
  p->op = op;
  p->w = w;
  p->r = r;
  return p;
}

static const kjb_plan *fail_record(rctx *c, kjb_plan *p) {
  p->failed = kjb_arena_strndup(c->a, c->err->msg, strlen(c->err->msg));
  if (!p->failed)
    abort();
  return NULL;
}

static const kjb_plan *resolve_record(rctx *c, const kjb_snode *w, const kjb_snode *r) {
  for (size_t i = 0; i < c->ncache; i++) {
    if (c->cache[i].w == w && c->cache[i].r == r) {
      kjb_plan *p = c->cache[i].p;
      if (p->failed) {
        kjb_err_set(c->err, KJB_ESCHEMA_MISMATCH, "%s", p->failed);
        return NULL;
      }
      return p;
    }
  }
  /* Cached before the fields resolve so that recursive types find it. */
  kjb_plan *p = new_plan(c, KJB_OP_RECORD, w, r);
  c->cache = kjb_xgrow(c->cache, &c->capcache, c->ncache + 1, sizeof *c->cache);
  c->cache[c->ncache++] = (cached){w, r, p};
  if (!names_match(w, r)) {
    rerr(c, "writer record \"%s\" does not match reader record \"%s\"", w->fullname, r->fullname);
    return fail_record(c, p);
  }
  p->tmpl = ralloc(c, r->nfields * sizeof *p->tmpl);
  p->steps = ralloc(c, w->nfields * sizeof *p->steps);
  bool *seen = ralloc(c, r->nfields * sizeof *seen);
  for (size_t j = 0; j < r->nfields; j++) {
    p->tmpl[j].key = r->fields[j].name;
    p->tmpl[j].key_len = strlen(r->fields[j].name);
  }
  for (size_t i = 0; i < w->nfields; i++) {
    const kjb_sfield *wf = &w->fields[i];
    p->steps[i].wfield = wf;
    for (size_t j = 0; j < r->nfields; j++) {
      const kjb_sfield *rf = &r->fields[j];
      bool match = strcmp(rf->name, wf->name) == 0;
      for (size_t k = 0; !match && k < rf->naliases; k++)
        match = strcmp(rf->aliases[k], wf->name) == 0;
      if (!match || seen[j])
        continue;
      size_t old = kjb_avro_path_push(&c->path, "%s", rf->name);
      const kjb_plan *fp = resolve(c, wf->type, rf->type);
      kjb_avro_path_pop(&c->path, old);
      if (!fp)
        return fail_record(c, p);
      seen[j] = true;
      p->steps[i].p = fp;
      p->steps[i].out = j;
      break;
    }
  }
  for (size_t j = 0; j < r->nfields; j++) {
    if (seen[j])
      continue;
    if (!r->fields[j].default_value) {
      size_t old = kjb_avro_path_push(&c->path, "%s", r->fields[j].name);
      rerr(c, "missing in the writer schema and has no default");
      kjb_avro_path_pop(&c->path, old);
      return fail_record(c, p);
    }
    p->tmpl[j].val = r->fields[j].default_value;
  }
  return p;
}

static const kjb_plan *resolve_enum(rctx *c, const kjb_snode *w, const kjb_snode *r) {
  if (!names_match(w, r)) {
    rerr(c, "writer enum \"%s\" does not match reader enum \"%s\"", w->fullname, r->fullname);
    return NULL;
  }
  kjb_plan *p = new_plan(c, KJB_OP_ENUM, w, r);
  p->enum_map = ralloc(c, w->nsymbols * sizeof *p->enum_map);
  p->sym_len = ralloc(c, r->nsymbols * sizeof *p->sym_len);
  for (size_t j = 0; j < r->nsymbols; j++)
    p->sym_len[j] = strlen(r->symbols[j]);
  for (size_t i = 0; i < w->nsymbols; i++) {
    p->enum_map[i] = r->enum_default;
    for (size_t j = 0; j < r->nsymbols; j++) {
      if (strcmp(w->symbols[i], r->symbols[j]) == 0) {
        p->enum_map[i] = (int)j;
        break;
      }
    }
  }
  return p;
}

/* The reader union branch a non-union writer type is read as: the first
 * of the same type, else the first the writer type promotes to. */
static const kjb_snode *pick_branch(const kjb_snode *w, const kjb_snode *r) {
  for (size_t i = 0; i < r->nbranches; i++)
    if (same_kind(w, r->branches[i]))
      return r->branches[i];
  for (size_t i = 0; i < r->nbranches; i++)
    if (promotes(w->type, r->branches[i]->type))
      return r->branches[i];
  return NULL;
}

static const kjb_plan *resolve(rctx *c, const kjb_snode *w, const kjb_snode *r) {
  if (w->type == KJB_S_UNION) {
    kjb_plan *p = new_plan(c, KJB_OP_WUNION, w, r);
    p->branches = ralloc(c, w->nbranches * sizeof *p->branches);
    p->branch_err = ralloc(c, w->nbranches * sizeof *p->branch_err);
    /* A branch that cannot be resolved is an error only for data that
     * uses it. */
    for (size_t i = 0; i < w->nbranches; i++) {
      p->branches[i] = resolve(c, w->branches[i], r);
      if (!p->branches[i]) {
        p->branch_err[i] = kjb_arena_strndup(c->a, c->err->msg, strlen(c->err->msg));
        if (!p->branch_err[i])
          abort();
        kjb_err_clear(c->err);
      }
    }
    return p;
  }
  if (r->type == KJB_S_UNION) {
    const kjb_snode *b = pick_branch(w, r);
    if (!b) {
      rerr(c, "writer type \"%s\" matches no branch of the reader union", kjb_avro_type_name(w));
      return NULL;
    }
    return resolve(c, w, b);
  }
  static const struct {
    kjb_stype w, r;
    kjb_opcode op;
  } prims[] = {
      {KJB_S_NULL, KJB_S_NULL, KJB_OP_NULL},
      {KJB_S_BOOLEAN, KJB_S_BOOLEAN, KJB_OP_BOOL},
      {KJB_S_INT, KJB_S_INT, KJB_OP_INT},
      {KJB_S_INT, KJB_S_LONG, KJB_OP_INT},
      {KJB_S_INT, KJB_S_FLOAT, KJB_OP_INT_FLOAT},
      {KJB_S_INT, KJB_S_DOUBLE, KJB_OP_INT_DOUBLE},
      {KJB_S_LONG, KJB_S_LONG, KJB_OP_LONG},
      {KJB_S_LONG, KJB_S_FLOAT, KJB_OP_LONG_FLOAT},
      {KJB_S_LONG, KJB_S_DOUBLE, KJB_OP_LONG_DOUBLE},
      {KJB_S_FLOAT, KJB_S_FLOAT, KJB_OP_FLOAT},
      {KJB_S_FLOAT, KJB_S_DOUBLE, KJB_OP_FLOAT_DOUBLE},
      {KJB_S_DOUBLE, KJB_S_DOUBLE, KJB_OP_DOUBLE},
      {KJB_S_BYTES, KJB_S_BYTES, KJB_OP_BYTES},
      {KJB_S_STRING, KJB_S_BYTES, KJB_OP_BYTES},
      {KJB_S_STRING, KJB_S_STRING, KJB_OP_STRING},
      {KJB_S_BYTES, KJB_S_STRING, KJB_OP_STRING},
  };
  for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++)
    if (prims[i].w == w->type && prims[i].r == r->type)
      return new_plan(c, prims[i].op, w, r);
  if (w->type != r->type) {
    rerr(c, "writer type \"%s\" cannot be read as \"%s\"", kjb_avro_type_name(w),
         kjb_avro_type_name(r));
    return NULL;
  }
  switch (w->type) {
  case KJB_S_RECORD: return resolve_record(c, w, r);
  case KJB_S_ENUM: return resolve_enum(c, w, r);
  case KJB_S_FIXED:
    if (!names_match(w, r) || w->fixed_size != r->fixed_size) {
      rerr(c, "writer fixed \"%s\" (size %zu) cannot be read as fixed \"%s\" (size %zu)",
           w->fullname, w->fixed_size, r->fullname, r->fixed_size);
      return NULL;
    }
    return new_plan(c, KJB_OP_FIXED, w, r);
  case KJB_S_ARRAY:
  case KJB_S_MAP: {
    kjb_plan *p = new_plan(c, w->type == KJB_S_ARRAY ? KJB_OP_ARRAY : KJB_OP_MAP, w, r);
    size_t old = kjb_avro_path_push(&c->path, "%s", w->type == KJB_S_ARRAY ? "[]" : "*");
    p->items = resolve(c, w->items, r->items);
    kjb_avro_path_pop(&c->path, old);
    if (!p->items)
      return NULL;
    p->item_min = kjb_avrodec_min_size(w->items, 0) + (w->type == KJB_S_MAP);
    return p;
  }
  default:
    rerr(c, "writer type \"%s\" cannot be read as \"%s\"", kjb_avro_type_name(w),
         kjb_avro_type_name(r));
    return NULL;
  }
}

kjb_resolver *kjb_resolver_new(const kjb_schema *writer, const kjb_schema *reader, kjb_err *err) {
  kjb_resolver *res = kjb_xcalloc(1, sizeof *res);
  res->arena = kjb_arena_new(16 * 1024);
  kjb_err local;
  rctx c = {.a = res->arena, .err = err ? err : &local};
  res->root = resolve(&c, kjb_schema_root(writer), kjb_schema_root(reader));
  free(c.cache);
  if (!res->root) {
    kjb_resolver_free(res);
    return NULL;
  }
  return res;
}

void kjb_resolver_free(kjb_resolver *r) {
  if (!r)
    return;
  kjb_arena_free(r->arena);
  free(r);
}
