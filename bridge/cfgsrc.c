/* Splicing a config file and its @includes into one text for libconfig.
 * The text is scanned as libconfig's lexer (lib/scanner.l, 1.5) will scan
 * it, to find the directives and to bound what libconfig does with it. */
#include "cfgsrc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* @include directives followed in all, and how deep they may nest
 * (libconfig's own limit). */
#define MAX_INCLUDES 64
#define MAX_INCLUDE_DEPTH 10
/* libconfig finds a duplicate setting by comparing each new one with every
 * one before it in its group: a megabyte of "a1=1;a2=2;..." takes minutes.
 * No group of kjb's has more than 16 keys. */
#define MAX_MEMBERS 64
/* kjb's configuration nests five deep at most. */
#define MAX_NESTING 32

typedef struct {
  unsigned text_line; /* from this line of the text on, the lines are */
  unsigned file_line; /* those of files[file] from this one on */
  size_t file;
} segment;

struct kjb_cfgsrc {
  kjb_buf text;
  char **files; /* as shown in messages; files[0] is the main file */
  size_t nfiles, capfiles;
  segment *segs;
  size_t nsegs, capsegs;
};

/* Where libconfig's lexer is in the text built so far. */
typedef enum { CODE, STRING, BLOCK_COMMENT, LINE_COMMENT } lexstate;

typedef struct {
  kjb_cfgsrc *src;
  const char *dir; /* relative includes are resolved here; NULL: the cwd */
  size_t bytes;    /* read from files so far */
  int includes;    /* directives followed so far */
  lexstate state;
  unsigned line;                /* of the text, where the next byte goes */
  int depth;                    /* groups and lists open */
  int members[MAX_NESTING + 1]; /* settings in each open group; -1: a list */
  kjb_err *err;
} builder;

/* One file being spliced in, read up to p[i], which is on line `line`. */
typedef struct {
  size_t file;
  const char *p;
  size_t n, i;
  unsigned line;
  int level; /* of @include: 0 for the main file */
} input;

static size_t add_file(kjb_cfgsrc *s, const char *dir, const char *name) {
  kjb_buf b;
  kjb_buf_init(&b);
  if (dir && name[0] != '/')
    kjb_buf_printf(&b, "%s/", dir);
  kjb_buf_puts(&b, name);
  s->files = kjb_xgrow(s->files, &s->capfiles, s->nfiles + 1, sizeof *s->files);
  s->files[s->nfiles] = b.data;
  return s->nfiles++;
}

/* From the current line of the text on, lines come from line of file. */
static void mark(builder *b, size_t file, unsigned line) {
  kjb_cfgsrc *s = b->src;
  if (s->nsegs && s->segs[s->nsegs - 1].text_line == b->line)
    s->nsegs--; /* an include that added no line */
  s->segs = kjb_xgrow(s->segs, &s->capsegs, s->nsegs + 1, sizeof *s->segs);
  s->segs[s->nsegs++] = (segment){b->line, line, file};
}

/* Fails with "<file>:<line>: <what>" for line of file. */
__attribute__((format(printf, 4, 5))) static int fail_at(builder *b, size_t file, unsigned line,
                                                         const char *fmt, ...) {
  char msg[sizeof b->err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return kjb_err_set(b->err, KJB_ECONFIG, "%s:%u: %s", b->src->files[file], line, msg);
}

static bool at_line_start(const builder *b) {
  const kjb_buf *t = &b->src->text;
  return t->len == 0 || t->data[t->len - 1] == '\n';
}

static void put(builder *b, char c) {
  kjb_buf_putc(&b->src->text, c);
  if (c == '\n') {
    b->line++;
    if (b->state == LINE_COMMENT)
      b->state = CODE;
  }
}

/* Copies n bytes of in to the text. */
static void take(builder *b, input *in, size_t n) {
  for (size_t k = 0; k < n; k++) {
    char c = in->p[in->i++];
    if (c == '\n')
      in->line++;
    put(b, c);
  }
}

/* Counts a group, list or setting, which libconfig would otherwise parse
 * in time quadratic in the number of settings of a group. */
static int count(builder *b, const input *in, char c) {
  switch (c) {
  case '{':
  case '(':
  case '[':
    if (b->depth == MAX_NESTING)
      return fail_at(b, in->file, in->line, "groups and lists nested more than %d deep",
                     MAX_NESTING);
    b->members[++b->depth] = c == '{' ? 0 : -1;
    return 0;
  case '}':
  case ')':
  case ']':
    if (b->depth > 0) /* else a syntax error that libconfig reports */
      b->depth--;
    return 0;
  case '=':
  case ':':
    if (b->members[b->depth] >= 0 && ++b->members[b->depth] > MAX_MEMBERS)
      return fail_at(b, in->file, in->line, "more than %d settings in one group", MAX_MEMBERS);
    return 0;
  }
  return 0;
}

/* Copies the next token-sized piece of in (one byte, or a two-byte
 * sequence that libconfig's lexer reads as one) and follows the state. */
static int step(builder *b, input *in) {
  const char *p = in->p + in->i;
  char next = in->i + 1 < in->n ? p[1] : '\0';
  size_t n = 1;
  int rc = 0;
  if (*p == '\0')
    return fail_at(b, in->file, in->line, "syntax error: NUL byte");
  switch (b->state) {
  case CODE:
    if (*p == '"') {
      b->state = STRING;
    } else if (*p == '#' || (*p == '/' && next == '/')) {
      b->state = LINE_COMMENT;
    } else if (*p == '/' && next == '*') {
      b->state = BLOCK_COMMENT;
      n = 2;
    } else {
      rc = count(b, in, *p);
    }
    break;
  case STRING:
    if (*p == '\\' && (next == '"' || next == '\\'))
      n = 2;
    else if (*p == '"')
      b->state = CODE;
    break;
  case BLOCK_COMMENT:
    if (*p == '*' && next == '/') {
      b->state = CODE;
      n = 2;
    }
    break;
  case LINE_COMMENT: break; /* put() ends it at the newline */
  }
  if (!rc)
    take(b, in, n);
  return rc;
}

/* The length of `[ \t]*@include[ \t]+"` at p, or 0 when p does not start
 * so (libconfig's include_open, which only matches at a line's start). */
static size_t directive(const char *p, size_t n) {
  static const char word[] = "@include";
  size_t i = strspn(p, " \t"); /* the text of a file ends with a NUL at n */
  if (i > n || n - i < sizeof word || memcmp(p + i, word, sizeof word - 1) != 0)
    return 0;
  i += sizeof word - 1;
  size_t blanks = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t'))
    i++, blanks++;
  return blanks && i < n && p[i] == '"' ? i + 1 : 0;
}

/* Reads an included file's name up to its closing quote, unescaping \\
 * and \" (a backslash before anything else is dropped, as libconfig
 * does). */
static int read_name(builder *b, input *in, kjb_buf *name) {
  unsigned start = in->line;
  for (; in->i < in->n; in->i++) {
    char c = in->p[in->i];
    if (c == '\0')
      return fail_at(b, in->file, in->line, "syntax error: NUL byte");
    if (c == '"') {
      in->i++;
      return 0;
    }
    if (c == '\n')
      in->line++;
    if (c == '\\' && in->i + 1 < in->n && (in->p[in->i + 1] == '\\' || in->p[in->i + 1] == '"'))
      c = in->p[++in->i];
    else if (c == '\\')
      continue;
    kjb_buf_putc(name, c);
  }
  return fail_at(b, in->file, start, "@include: the file name has no closing quote");
}

static int splice(builder *b, input *in);

/* Splices in the file named name by the @include on line `at` of in. */
static int include(builder *b, const input *in, unsigned at, const char *name) {
  if (in->level == MAX_INCLUDE_DEPTH)
    return fail_at(b, in->file, at, "@include \"%s\": nested more than %d deep", name,
                   MAX_INCLUDE_DEPTH);
  if (++b->includes > MAX_INCLUDES)
    return fail_at(b, in->file, at, "@include \"%s\": more than %d @include directives", name,
                   MAX_INCLUDES);
  size_t file = add_file(b->src, b->dir, name);
  kjb_buf content;
  kjb_buf_init(&content);
  kjb_err why;
  int rc = 0;
  if (kjb_read_file(b->src->files[file], KJB_CONFIG_MAX_BYTES, &content, &why) < 0)
    rc = fail_at(b, in->file, at, "@include \"%s\": %s", name, why.msg);
  else if ((b->bytes += content.len) > KJB_CONFIG_MAX_BYTES)
    rc = fail_at(b, in->file, at,
                 "@include \"%s\": the configuration with its includes is "
                 "larger than %d MiB",
                 name, KJB_CONFIG_MAX_BYTES >> 20);
  if (!rc) {
    mark(b, file, 1);
    rc = splice(b, &(input){file, content.data, content.len, 0, 1, in->level + 1});
  }
  kjb_buf_close(&content);
  if (rc)
    return rc;
  /* The rest of the directive's line goes on a line of its own. */
  if (!at_line_start(b))
    put(b, '\n');
  mark(b, in->file, in->line);
  return 0;
}

static int splice(builder *b, input *in) {
  while (in->i < in->n) {
    size_t k = b->state == CODE && at_line_start(b) ? directive(in->p + in->i, in->n - in->i) : 0;
    int rc;
    if (!k) {
      if ((rc = step(b, in)))
        return rc;
      continue;
    }
    unsigned at = in->line;
    in->i += k;
    kjb_buf name;
    kjb_buf_init(&name);
    rc = read_name(b, in, &name);
    if (!rc)
      rc = include(b, in, at, name.data);
    kjb_buf_close(&name);
    if (rc)
      return rc;
  }
  return 0;
}

int kjb_cfgsrc_read(const char *path, kjb_cfgsrc **out, kjb_err *err) {
  kjb_cfgsrc *s = kjb_xcalloc(1, sizeof *s);
  kjb_buf_init(&s->text);
  add_file(s, NULL, path);
  kjb_buf main;
  kjb_buf_init(&main);
  kjb_err why;
  int rc;
  if (kjb_read_file(path, KJB_CONFIG_MAX_BYTES, &main, &why) < 0) {
    rc = kjb_err_set(err, KJB_EIO, "%s: %s", path, why.msg);
  } else {
    /* libconfig resolves includes, nested ones too, against the main
     * file's directory. */
    char *dir = NULL;
    const char *slash = strrchr(path, '/');
    if (slash)
      dir = kjb_xstrndup(path, slash == path ? 1 : (size_t)(slash - path));
    builder b = {.src = s, .dir = dir, .bytes = main.len, .line = 1, .err = err};
    mark(&b, 0, 1);
    rc = splice(&b, &(input){0, main.data, main.len, 0, 1, 0});
    free(dir);
  }
  kjb_buf_close(&main);
  if (rc) {
    kjb_cfgsrc_free(s);
    s = NULL;
  }
  *out = s;
  return rc;
}

void kjb_cfgsrc_free(kjb_cfgsrc *s) {
  if (!s)
    return;
  kjb_buf_close(&s->text);
  for (size_t i = 0; i < s->nfiles; i++)
    free(s->files[i]);
  free(s->files);
  free(s->segs);
  free(s);
}

const char *kjb_cfgsrc_text(const kjb_cfgsrc *s) { return s->text.data; }

const char *kjb_cfgsrc_where(const kjb_cfgsrc *s, unsigned text_line, unsigned *line) {
  if (text_line == 0) {
    *line = 0;
    return s->files[0];
  }
  /* The last segment that starts at or before text_line. */
  size_t lo = 0, hi = s->nsegs;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->segs[mid].text_line <= text_line)
      lo = mid;
    else
      hi = mid;
  }
  const segment *g = &s->segs[lo];
  *line = g->file_line + (text_line - g->text_line);
  return s->files[g->file];
}
