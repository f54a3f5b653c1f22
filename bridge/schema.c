/* Avro schemas: validation by avro-c, compilation of the JSON into the
 * kjb_snode model (names, defaults, aliases, logical types), Parsing
 * Canonical Form, CRC-64-AVRO fingerprints and field path checks. */
#include "schema.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_internal.h"

struct kjb_schema {
  kjb_arena *arena; /* every node, string and default value */
  avro_schema_t avro;
  kjb_snode *root;
  char *canonical;
  uint64_t fingerprint;
};

/* A field whose default is converted once the whole tree exists, so that
 * defaults may use types defined later in the schema text. */
typedef struct {
  kjb_sfield *field;
  const char *record; /* the record's full name, for messages */
  json_t *json;
} pending_default;

typedef struct {
  kjb_arena *arena;
  kjb_err *err;
  kjb_snode **named; /* every named type, in definition order */
  size_t nnamed, capnamed;
  pending_default *defaults;
  size_t ndefaults, capdefaults;
} compiler;

static const struct {
  const char *name;
  kjb_stype type;
} primitives[] = {
    {"null", KJB_S_NULL},   {"boolean", KJB_S_BOOLEAN}, {"int", KJB_S_INT},
    {"long", KJB_S_LONG},   {"float", KJB_S_FLOAT},     {"double", KJB_S_DOUBLE},
    {"bytes", KJB_S_BYTES}, {"string", KJB_S_STRING},
};

static const char *const type_names[] = {
    [KJB_S_NULL] = "null",   [KJB_S_BOOLEAN] = "boolean", [KJB_S_INT] = "int",
    [KJB_S_LONG] = "long",   [KJB_S_FLOAT] = "float",     [KJB_S_DOUBLE] = "double",
    [KJB_S_BYTES] = "bytes", [KJB_S_STRING] = "string",   [KJB_S_RECORD] = "record",
    [KJB_S_ENUM] = "enum",   [KJB_S_ARRAY] = "array",     [KJB_S_MAP] = "map",
    [KJB_S_UNION] = "union", [KJB_S_FIXED] = "fixed",
};

const char *kjb_avro_json_kind(const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a real number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

const char *kjb_avro_type_name(const kjb_snode *n) {
  return n->fullname ? n->fullname : type_names[n->type];
}

size_t kjb_avro_path_push(kjb_avro_path *p, const char *fmt, ...) {
  size_t old = p->len;
  char seg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(seg, sizeof seg, fmt, ap);
  va_end(ap);
  int n =
      snprintf(p->text + old, sizeof p->text - old, "%s%s", old && seg[0] != '[' ? "." : "", seg);
  if (n > 0)
    p->len = old + (size_t)n < sizeof p->text ? old + (size_t)n : sizeof p->text - 1;
  return old;
}

void kjb_avro_path_pop(kjb_avro_path *p, size_t old) {
  p->len = old;
  p->text[old] = '\0';
}

int kjb_avro_path_err(const kjb_avro_path *p, kjb_err *err, kjb_errcode code, const char *fmt,
                      va_list ap) {
  char msg[400];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (p->len)
    return kjb_err_set(err, code, "field \"%s\": %s", p->text, msg);
  return kjb_err_set(err, code, "%s", msg);
}

static int is_named(kjb_stype t) {
  return t == KJB_S_RECORD || t == KJB_S_ENUM || t == KJB_S_FIXED;
}

static void *zalloc(compiler *c, size_t n) {
  void *p = kjb_arena_alloc(c->arena, n ? n : 1);
  if (!p)
    abort(); /* schemas are loaded at startup; nothing to recover */
  memset(p, 0, n ? n : 1);
  return p;
}

static char *sdup(compiler *c, const char *s) {
  char *p = kjb_arena_strndup(c->arena, s, strlen(s));
  if (!p)
    abort();
  return p;
}

/* Joins a namespace and a name; a name containing a dot is already full. */
static char *make_fullname(compiler *c, const char *name, const char *ns) {
  if (strchr(name, '.') || !ns || !*ns)
    return sdup(c, name);
  size_t nl = strlen(ns), ml = strlen(name);
  char *p = zalloc(c, nl + ml + 2);
  memcpy(p, ns, nl);
  p[nl] = '.';
  memcpy(p + nl + 1, name, ml + 1);
  return p;
}

/* The namespace part of a full name, or "" (arena copy). */
static char *namespace_of(compiler *c, const char *fullname) {
  const char *dot = strrchr(fullname, '.');
  if (!dot)
    return sdup(c, "");
  char *p = kjb_arena_strndup(c->arena, fullname, (size_t)(dot - fullname));
  if (!p)
    abort();
  return p;
}

static kjb_snode *lookup(compiler *c, const char *fullname) {
  for (size_t i = 0; i < c->nnamed; i++)
    if (strcmp(c->named[i]->fullname, fullname) == 0)
      return c->named[i];
  return NULL;
}

static int register_named(compiler *c, kjb_snode *n) {
  if (lookup(c, n->fullname))
    return kjb_err_set(c->err, KJB_ESCHEMA, "type \"%s\" is defined twice", n->fullname);
  c->named = kjb_xgrow(c->named, &c->capnamed, c->nnamed + 1, sizeof *c->named);
  c->named[c->nnamed++] = n;
  return 0;
}

static int add_default(compiler *c, kjb_sfield *f, const char *record, json_t *json) {
  c->defaults = kjb_xgrow(c->defaults, &c->capdefaults, c->ndefaults + 1, sizeof *c->defaults);
  c->defaults[c->ndefaults++] = (pending_default){f, record, json};
  return 0;
}

static kjb_snode *new_node(compiler *c, kjb_stype t) {
  kjb_snode *n = zalloc(c, sizeof *n);
  n->type = t;
  n->logical = KJB_L_NONE;
  n->enum_default = -1;
  return n;
}

static int primitive_type(const char *name, kjb_stype *out) {
  for (size_t i = 0; i < sizeof primitives / sizeof primitives[0]; i++) {
    if (strcmp(primitives[i].name, name) == 0) {
      *out = primitives[i].type;
      return 1;
    }
  }
  return 0;
}

/* Resolves a reference to a named type: a dotted name is full; otherwise
 * the enclosing namespace is tried first, then the null namespace. */
static kjb_snode *resolve_ref(compiler *c, const char *name, const char *ns) {
  kjb_snode *n = NULL;
  if (!strchr(name, '.') && ns && *ns) {
    size_t nl = strlen(ns), ml = strlen(name);
    char *full = kjb_xmalloc(nl + ml + 2);
    memcpy(full, ns, nl);
    full[nl] = '.';
    memcpy(full + nl + 1, name, ml + 1);
    n = lookup(c, full);
    free(full);
  }
  return n ? n : lookup(c, name);
}

/* Sets n->logical from the schema object's logicalType when it is valid
 * for n; otherwise leaves KJB_L_NONE, as the spec asks readers to do. */
static void apply_logical(kjb_snode *n, json_t *obj) {
  const char *lt = json_string_value(json_object_get(obj, "logicalType"));
  if (!lt)
    return;
  kjb_stype t = n->type;
  if (strcmp(lt, "decimal") == 0) {
    if (t != KJB_S_BYTES && t != KJB_S_FIXED)
      return;
    json_t *p = json_object_get(obj, "precision"), *s = json_object_get(obj, "scale");
    if (!json_is_integer(p) || (s && !json_is_integer(s)))
      return;
    json_int_t prec = json_integer_value(p), scale = s ? json_integer_value(s) : 0;
    if (prec <= 0 || prec > 100000 || scale < 0 || scale > prec)
      return;
    if (t == KJB_S_FIXED) {
      /* The most digits a signed two's-complement integer of size bytes
       * always holds. */
      double maxp = floor(((double)n->fixed_size * 8 - 1) * log10(2.0));
      if ((double)prec > maxp)
        return;
    }
    n->logical = KJB_L_DECIMAL;
    n->precision = (int)prec;
    n->scale = (int)scale;
    return;
  }
  static const struct {
    const char *name;
    kjb_logical logical;
    kjb_stype type;
  } simple[] = {
      {"uuid", KJB_L_UUID, KJB_S_STRING},
      {"date", KJB_L_DATE, KJB_S_INT},
      {"time-millis", KJB_L_TIME_MILLIS, KJB_S_INT},
      {"time-micros", KJB_L_TIME_MICROS, KJB_S_LONG},
      {"timestamp-millis", KJB_L_TIMESTAMP_MILLIS, KJB_S_LONG},
      {"timestamp-micros", KJB_L_TIMESTAMP_MICROS, KJB_S_LONG},
      {"local-timestamp-millis", KJB_L_LOCAL_TIMESTAMP_MILLIS, KJB_S_LONG},
      {"local-timestamp-micros", KJB_L_LOCAL_TIMESTAMP_MICROS, KJB_S_LONG},
      {"duration", KJB_L_DURATION, KJB_S_FIXED},
  };
  for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
    if (strcmp(lt, simple[i].name) == 0) {
      if (t == simple[i].type && (t != KJB_S_FIXED || n->fixed_size == 12))
        n->logical = simple[i].logical;
      return;
    }
  }
}

static int compile(compiler *c, json_t *j, const char *ns, kjb_snode **out);

/* Reads the optional "aliases" of a named type (made full relative to the
 * type's namespace) or of a field (kept as written, ns NULL). */
static int compile_aliases(compiler *c, json_t *obj, const char *ns, char ***out, size_t *nout,
                           const char *what) {
  json_t *a = json_object_get(obj, "aliases");
  *out = NULL;
  *nout = 0;
  if (!a)
    return 0;
  if (!json_is_array(a))
    return kjb_err_set(c->err, KJB_ESCHEMA, "%s: aliases must be an array", what);
  size_t n = json_array_size(a);
  *out = zalloc(c, n * sizeof **out);
  for (size_t i = 0; i < n; i++) {
    const char *s = json_string_value(json_array_get(a, i));
    if (!s)
      return kjb_err_set(c->err, KJB_ESCHEMA, "%s: aliases must be strings", what);
    (*out)[i] = ns ? make_fullname(c, s, ns) : sdup(c, s);
  }
  *nout = n;
  return 0;
}

/* Creates a named node: full name from "name" and "namespace" or the
 * enclosing namespace, registered before its body compiles so that the
 * body may refer to it. *own_ns is the namespace its children inherit. */
static int named_node(compiler *c, json_t *j, kjb_stype t, const char *ns, kjb_snode **out,
                      char **own_ns) {
  const char *name = json_string_value(json_object_get(j, "name"));
  if (!name || !*name)
    return kjb_err_set(c->err, KJB_ESCHEMA, "%s without a name", type_names[t]);
  json_t *jns = json_object_get(j, "namespace");
  const char *space = ns;
  if (jns) {
    if (!json_is_string(jns) && !json_is_null(jns))
      return kjb_err_set(c->err, KJB_ESCHEMA, "%s \"%s\": namespace must be a string",
                         type_names[t], name);
    space = json_is_string(jns) ? json_string_value(jns) : "";
  }
  kjb_snode *n = new_node(c, t);
  n->fullname = make_fullname(c, name, space);
  *own_ns = namespace_of(c, n->fullname);
  int rc = register_named(c, n);
  if (rc)
    return rc;
  rc = compile_aliases(c, j, *own_ns, &n->aliases, &n->naliases, n->fullname);
  if (rc)
    return rc;
  *out = n;
  return 0;
}

static int compile_record(compiler *c, json_t *j, const char *ns, kjb_snode **out) {
  kjb_snode *n;
  char *rns;
  int rc = named_node(c, j, KJB_S_RECORD, ns, &n, &rns);
  if (rc)
    return rc;
  json_t *fields = json_object_get(j, "fields");
  if (!json_is_array(fields))
    return kjb_err_set(c->err, KJB_ESCHEMA, "record \"%s\": fields must be an array", n->fullname);
  n->nfields = json_array_size(fields);
  n->fields = zalloc(c, n->nfields * sizeof *n->fields);
  for (size_t i = 0; i < n->nfields; i++) {
    json_t *jf = json_array_get(fields, i);
    const char *fname = json_string_value(json_object_get(jf, "name"));
    if (!fname)
      return kjb_err_set(c->err, KJB_ESCHEMA, "record \"%s\": field %zu has no name", n->fullname,
                         i);
    for (size_t k = 0; k < i; k++)
      if (strcmp(n->fields[k].name, fname) == 0)
        return kjb_err_set(c->err, KJB_ESCHEMA, "record \"%s\": field \"%s\" is defined twice",
                           n->fullname, fname);
    kjb_sfield *f = &n->fields[i];
    f->name = sdup(c, fname);
    json_t *jt = json_object_get(jf, "type");
    if (!jt)
      return kjb_err_set(c->err, KJB_ESCHEMA, "record \"%s\": field \"%s\" has no type",
                         n->fullname, fname);
    rc = compile(c, jt, rns, &f->type);
    if (rc)
      return kjb_err_prefix(c->err, "record \"%s\" field \"%s\"", n->fullname, fname);
    rc = compile_aliases(c, jf, NULL, &f->aliases, &f->naliases, fname);
    if (rc)
      return rc;
    json_t *def = json_object_get(jf, "default");
    if (def)
      add_default(c, f, n->fullname, def);
  }
  *out = n;
  return 0;
}

static int compile_enum(compiler *c, json_t *j, const char *ns, kjb_snode **out) {
  kjb_snode *n;
  char *ens;
  int rc = named_node(c, j, KJB_S_ENUM, ns, &n, &ens);
  if (rc)
    return rc;
  json_t *syms = json_object_get(j, "symbols");
  if (!json_is_array(syms))
    return kjb_err_set(c->err, KJB_ESCHEMA, "enum \"%s\": symbols must be an array", n->fullname);
  n->nsymbols = json_array_size(syms);
  n->symbols = zalloc(c, n->nsymbols * sizeof *n->symbols);
  for (size_t i = 0; i < n->nsymbols; i++) {
    const char *s = json_string_value(json_array_get(syms, i));
    if (!s)
      return kjb_err_set(c->err, KJB_ESCHEMA, "enum \"%s\": symbols must be strings", n->fullname);
    for (size_t k = 0; k < i; k++)
      if (strcmp(n->symbols[k], s) == 0)
        return kjb_err_set(c->err, KJB_ESCHEMA, "enum \"%s\": symbol \"%s\" appears twice",
                           n->fullname, s);
    n->symbols[i] = sdup(c, s);
  }
  json_t *def = json_object_get(j, "default");
  if (def) {
    const char *s = json_string_value(def);
    for (size_t i = 0; s && i < n->nsymbols; i++)
      if (strcmp(n->symbols[i], s) == 0)
        n->enum_default = (int)i;
    if (n->enum_default < 0)
      return kjb_err_set(c->err, KJB_ESCHEMA, "enum \"%s\": default is not one of its symbols",
                         n->fullname);
  }
  *out = n;
  return 0;
}

static int compile_fixed(compiler *c, json_t *j, const char *ns, kjb_snode **out) {
  kjb_snode *n;
  char *fns;
  int rc = named_node(c, j, KJB_S_FIXED, ns, &n, &fns);
  if (rc)
    return rc;
  json_t *size = json_object_get(j, "size");
  if (!json_is_integer(size) || json_integer_value(size) < 0 ||
      json_integer_value(size) > INT32_MAX)
    return kjb_err_set(c->err, KJB_ESCHEMA, "fixed \"%s\": size must be a non-negative integer",
                       n->fullname);
  n->fixed_size = (size_t)json_integer_value(size);
  apply_logical(n, j);
  *out = n;
  return 0;
}

static int same_branch_kind(const kjb_snode *a, const kjb_snode *b) {
  if (a->type != b->type)
    return 0;
  return is_named(a->type) ? strcmp(a->fullname, b->fullname) == 0 : 1;
}

static int compile_union(compiler *c, json_t *j, const char *ns, kjb_snode **out) {
  kjb_snode *n = new_node(c, KJB_S_UNION);
  n->nbranches = json_array_size(j);
  n->branches = zalloc(c, n->nbranches * sizeof *n->branches);
  for (size_t i = 0; i < n->nbranches; i++) {
    int rc = compile(c, json_array_get(j, i), ns, &n->branches[i]);
    if (rc)
      return rc;
    kjb_snode *b = n->branches[i];
    if (b->type == KJB_S_UNION)
      return kjb_err_set(c->err, KJB_ESCHEMA, "a union may not directly contain a union");
    for (size_t k = 0; k < i; k++)
      if (same_branch_kind(n->branches[k], b))
        return kjb_err_set(c->err, KJB_ESCHEMA, "union contains \"%s\" twice",
                           kjb_avro_type_name(b));
  }
  *out = n;
  return 0;
}

static int compile(compiler *c, json_t *j, const char *ns, kjb_snode **out) {
  if (json_is_string(j)) {
    const char *name = json_string_value(j);
    kjb_stype t;
    if (primitive_type(name, &t)) {
      *out = new_node(c, t);
      return 0;
    }
    kjb_snode *n = resolve_ref(c, name, ns);
    if (!n)
      return kjb_err_set(c->err, KJB_ESCHEMA, "unknown type \"%s\"", name);
    *out = n;
    return 0;
  }
  if (json_is_array(j))
    return compile_union(c, j, ns, out);
  if (!json_is_object(j))
    return kjb_err_set(c->err, KJB_ESCHEMA, "a type must be a string, an array or an object");
  json_t *jt = json_object_get(j, "type");
  const char *t = json_string_value(jt);
  if (!t) {
    if (json_is_object(jt) || json_is_array(jt))
      return compile(c, jt, ns, out);
    return kjb_err_set(c->err, KJB_ESCHEMA, "type object without a \"type\"");
  }
  kjb_stype pt;
  if (primitive_type(t, &pt)) {
    kjb_snode *n = new_node(c, pt);
    apply_logical(n, j);
    *out = n;
    return 0;
  }
  if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0)
    return compile_record(c, j, ns, out);
  if (strcmp(t, "enum") == 0)
    return compile_enum(c, j, ns, out);
  if (strcmp(t, "fixed") == 0)
    return compile_fixed(c, j, ns, out);
  if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
    int is_array = t[0] == 'a';
    json_t *sub = json_object_get(j, is_array ? "items" : "values");
    if (!sub)
      return kjb_err_set(c->err, KJB_ESCHEMA, "%s without %s", t, is_array ? "items" : "values");
    kjb_snode *n = new_node(c, is_array ? KJB_S_ARRAY : KJB_S_MAP);
    int rc = compile(c, sub, ns, &n->items);
    if (rc)
      return rc;
    *out = n;
    return 0;
  }
  kjb_snode *n = resolve_ref(c, t, ns);
  if (!n)
    return kjb_err_set(c->err, KJB_ESCHEMA, "unknown type \"%s\"", t);
  *out = n;
  return 0;
}

/* Parsing Canonical Form: full names, only the attributes that matter
 * for reading, fixed key order, no whitespace; a named type is written
 * in full at its first occurrence and by name afterwards. */
static void canonical(const kjb_snode *n, kjb_buf *b, const kjb_snode ***seen, size_t *nseen,
                      size_t *capseen) {
  if (is_named(n->type)) {
    for (size_t i = 0; i < *nseen; i++) {
      if ((*seen)[i] == n) {
        kjb_buf_json_str(b, n->fullname, strlen(n->fullname));
        return;
      }
    }
    *seen = kjb_xgrow(*seen, capseen, *nseen + 1, sizeof **seen);
    (*seen)[(*nseen)++] = n;
    kjb_buf_puts(b, "{\"name\":");
    kjb_buf_json_str(b, n->fullname, strlen(n->fullname));
    kjb_buf_printf(b, ",\"type\":\"%s\"", type_names[n->type]);
  }
  switch (n->type) {
  case KJB_S_RECORD:
    kjb_buf_puts(b, ",\"fields\":[");
    for (size_t i = 0; i < n->nfields; i++) {
      if (i)
        kjb_buf_putc(b, ',');
      kjb_buf_puts(b, "{\"name\":");
      kjb_buf_json_str(b, n->fields[i].name, strlen(n->fields[i].name));
      kjb_buf_puts(b, ",\"type\":");
      canonical(n->fields[i].type, b, seen, nseen, capseen);
      kjb_buf_putc(b, '}');
    }
    kjb_buf_puts(b, "]}");
    break;
  case KJB_S_ENUM:
    kjb_buf_puts(b, ",\"symbols\":[");
    for (size_t i = 0; i < n->nsymbols; i++) {
      if (i)
        kjb_buf_putc(b, ',');
      kjb_buf_json_str(b, n->symbols[i], strlen(n->symbols[i]));
    }
    kjb_buf_puts(b, "]}");
    break;
  case KJB_S_FIXED: kjb_buf_printf(b, ",\"size\":%zu}", n->fixed_size); break;
  case KJB_S_ARRAY:
  case KJB_S_MAP:
    kjb_buf_puts(b, n->type == KJB_S_ARRAY ? "{\"type\":\"array\",\"items\":"
                                           : "{\"type\":\"map\",\"values\":");
    canonical(n->items, b, seen, nseen, capseen);
    kjb_buf_putc(b, '}');
    break;
  case KJB_S_UNION:
    kjb_buf_putc(b, '[');
    for (size_t i = 0; i < n->nbranches; i++) {
      if (i)
        kjb_buf_putc(b, ',');
      canonical(n->branches[i], b, seen, nseen, capseen);
    }
    kjb_buf_putc(b, ']');
    break;
  default: kjb_buf_printf(b, "\"%s\"", type_names[n->type]);
  }
}

static uint64_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  const uint64_t empty = UINT64_C(0xc15d213aa4d7a795);
  for (int i = 0; i < 256; i++) {
    uint64_t fp = (uint64_t)i;
    for (int k = 0; k < 8; k++)
      fp = (fp >> 1) ^ (empty & (0 - (fp & 1)));
    crc_table[i] = fp;
  }
}

uint64_t kjb_crc64_avro(const void *buf, size_t len) {
  pthread_once(&crc_once, crc_init);
  const uint8_t *p = buf;
  uint64_t fp = UINT64_C(0xc15d213aa4d7a795);
  for (size_t i = 0; i < len; i++)
    fp = (fp >> 8) ^ crc_table[(fp ^ p[i]) & 0xff];
  return fp;
}

/* Our compiler runs before avro-c sees the text: avro-c leaks memory
 * when it rejects a schema that defines a name twice, and the compiler
 * rejects those first. avro-c then validates what the compiler does not
 * (identifiers, for one) and gives the schema the encoder uses. */
kjb_schema *kjb_schema_parse(const char *json, size_t len, kjb_err *err) {
  kjb_err local;
  if (!err)
    err = &local;
  json_error_t jerr;
  json_t *root = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
  if (!root) {
    kjb_err_set(err, KJB_ESCHEMA, "invalid json at line %d column %d: %s", jerr.line, jerr.column,
                jerr.text);
    return NULL;
  }
  kjb_schema *s = kjb_xcalloc(1, sizeof *s);
  s->arena = kjb_arena_new(16 * 1024);
  compiler c = {.arena = s->arena, .err = err};
  int rc = compile(&c, root, "", &s->root);
  for (size_t i = 0; rc == 0 && i < c.ndefaults; i++) {
    pending_default *d = &c.defaults[i];
    rc = kjb_avro_default_value(d->field->type, d->json, s->arena, &d->field->default_value, err);
    if (rc)
      kjb_err_prefix(err, "record \"%s\" field \"%s\": invalid default", d->record, d->field->name);
  }
  free(c.named);
  free(c.defaults);
  json_decref(root);
  if (rc == 0 && avro_schema_from_json_length(json, len, &s->avro) != 0) {
    /* avro-c's messages sometimes end with a newline. */
    char reason[400];
    snprintf(reason, sizeof reason, "%s", avro_strerror());
    reason[strcspn(reason, "\n")] = '\0';
    rc = kjb_err_set(err, KJB_ESCHEMA, "%s", reason);
    s->avro = NULL;
  }
  if (rc) {
    kjb_schema_free(s);
    return NULL;
  }
  kjb_buf b;
  kjb_buf_init(&b);
  const kjb_snode **seen = NULL;
  size_t nseen = 0, capseen = 0;
  canonical(s->root, &b, &seen, &nseen, &capseen);
  free(seen);
  s->canonical = kjb_arena_strndup(s->arena, b.data, b.len);
  if (!s->canonical)
    abort();
  s->fingerprint = kjb_crc64_avro(b.data, b.len);
  kjb_buf_close(&b);
  return s;
}

kjb_schema *kjb_schema_load(const char *path, kjb_err *err) {
  kjb_buf b;
  kjb_buf_init(&b);
  kjb_schema *s = NULL;
  if (kjb_read_file(path, KJB_SCHEMA_MAX_BYTES, &b, err) < 0) {
    if (err)
      err->code = KJB_ESCHEMA;
  } else {
    s = kjb_schema_parse(b.data, b.len, err);
  }
  if (!s)
    kjb_err_prefix(err, "%s", path);
  kjb_buf_close(&b);
  return s;
}

void kjb_schema_free(kjb_schema *s) {
  if (!s)
    return;
  if (s->avro)
    avro_schema_decref(s->avro);
  kjb_arena_free(s->arena);
  free(s);
}

const kjb_snode *kjb_schema_root(const kjb_schema *s) { return s->root; }
avro_schema_t kjb_schema_avro(const kjb_schema *s) { return s->avro; }
const char *kjb_schema_canonical(const kjb_schema *s) { return s->canonical; }
uint64_t kjb_schema_fingerprint(const kjb_schema *s) { return s->fingerprint; }

/* Finds a field among the records reachable from n (n itself or the
 * record branches of a union). Returns the field, or NULL; *saw_record
 * tells whether any record was there to look in. */
static const kjb_sfield *find_field(const kjb_snode *n, const char *name, size_t len,
                                    int *saw_record) {
  const kjb_snode *const *cands = &n;
  size_t ncands = 1;
  if (n->type == KJB_S_UNION) {
    cands = (const kjb_snode *const *)n->branches;
    ncands = n->nbranches;
  }
  for (size_t i = 0; i < ncands; i++) {
    const kjb_snode *r = cands[i];
    if (r->type != KJB_S_RECORD)
      continue;
    *saw_record = 1;
    for (size_t k = 0; k < r->nfields; k++)
      if (strlen(r->fields[k].name) == len && memcmp(r->fields[k].name, name, len) == 0)
        return &r->fields[k];
  }
  return NULL;
}

/* Maps are objects in natural JSON, so a path may continue into a map
 * with any key; it is then checked against the map's values only when
 * data arrives. */
static int union_has_map(const kjb_snode *n) {
  if (n->type == KJB_S_MAP)
    return 1;
  for (size_t i = 0; n->type == KJB_S_UNION && i < n->nbranches; i++)
    if (n->branches[i]->type == KJB_S_MAP)
      return 1;
  return 0;
}

int kjb_schema_check_path(const kjb_schema *s, const char *path, kjb_err *err) {
  const kjb_snode *n = s->root;
  const char *seg = path;
  for (;;) {
    const char *dot = strchr(seg, '.');
    size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
    if (union_has_map(n))
      return 0;
    int saw_record = 0;
    const kjb_sfield *f = find_field(n, seg, len, &saw_record);
    if (!f) {
      int plen = (int)(seg - path + (ptrdiff_t)len);
      if (!saw_record && seg == path)
        return kjb_err_set(err, KJB_EMISSING_FIELD, "field \"%.*s\": the schema is not a record",
                           plen, path);
      if (!saw_record)
        return kjb_err_set(err, KJB_EMISSING_FIELD, "field \"%.*s\": \"%.*s\" is not a record",
                           plen, path, (int)(seg - path - 1), path);
      return kjb_err_set(err, KJB_EMISSING_FIELD, "field \"%.*s\": no such field in the schema",
                         plen, path);
    }
    if (!dot)
      return 0;
    n = f->type;
    seg = dot + 1;
  }
}
