/* Mapping of decoded records to job args and unique keys. */
#include "map.h"

#include <string.h>

int kjb_map_args(const kjb_job_cfg *job, const kjb_value *rec, kjb_buf *out, kjb_err *err) {
  if (job->nargs == 0) {
    kjb_value_to_json(rec, out);
    return 0;
  }
  kjb_buf_putc(out, '{');
  for (size_t i = 0; i < job->nargs; i++) {
    const kjb_value *v = kjb_value_path(rec, job->args[i]);
    if (!v)
      return kjb_err_set(err, KJB_EMISSING_FIELD, "job \"%s\": args: field \"%s\" is missing",
                         job->kind, job->args[i]);
    if (i)
      kjb_buf_putc(out, ',');
    kjb_buf_json_str(out, job->args[i], strlen(job->args[i]));
    kjb_buf_putc(out, ':');
    kjb_value_to_json(v, out);
  }
  kjb_buf_putc(out, '}');
  return 0;
}

int kjb_template_each(const char *tpl, int (*fn)(const char *path, size_t len, void *arg),
                      void *arg) {
  for (const char *p = tpl; (p = strstr(p, "${"));) {
    const char *end = strchr(p + 2, '}');
    if (!end)
      return -1;
    int rc = fn(p + 2, (size_t)(end - p - 2), arg);
    if (rc)
      return rc;
    p = end + 1;
  }
  return 0;
}

int kjb_map_template(const kjb_job_cfg *job, const char *what, const char *tpl,
                     const kjb_value *rec, kjb_buf *out, kjb_err *err) {
  const char *p = tpl;
  while (*p) {
    const char *open = strstr(p, "${");
    if (!open) {
      kjb_buf_puts(out, p);
      break;
    }
    kjb_buf_append(out, p, (size_t)(open - p));
    const char *path = open + 2, *close = strchr(path, '}');
    int n = close ? (int)(close - path) : 0;
    if (!close || n == 0)
      return kjb_err_set(err, KJB_EBAD_TEMPLATE, "job \"%s\": %s \"%s\" is malformed", job->kind,
                         what, tpl);
    const kjb_value *v = kjb_value_path_n(rec, path, (size_t)n);
    if (!v)
      return kjb_err_set(err, KJB_EMISSING_FIELD, "job \"%s\": %s: field \"%.*s\" is missing",
                         job->kind, what, n, path);
    if (kjb_value_to_text(v, out) < 0)
      return kjb_err_set(err, KJB_EBAD_TEMPLATE,
                         "job \"%s\": %s: field \"%.*s\" is %s, not a scalar", job->kind, what, n,
                         path,
                         v->type == KJB_V_NULL    ? "null"
                         : v->type == KJB_V_ARRAY ? "an array"
                                                  : "an object");
    p = close + 1;
  }
  return 0;
}
