/* Mapping: a decoded record and a job mapping become a job's args,
 * unique_key and ordering_key. */
#ifndef KJB_MAP_H
#define KJB_MAP_H

#include "config.h"
#include "err.h"
#include "util.h"
#include "value.h"

/* Writes the job's args as JSON: the whole record, or with job->args an
 * object keyed by each dotted path. KJB_EMISSING_FIELD names the path. */
int kjb_map_args(const kjb_job_cfg *job, const kjb_value *rec, kjb_buf *out, kjb_err *err);

/* Expands the template tpl of job's key `what` ("unique_key",
 * "ordering_key"; the messages name it), such as "order-${order_id}",
 * into out. A path that is absent is KJB_EMISSING_FIELD; one whose value
 * is null, an array or an object is KJB_EBAD_TEMPLATE, and so are an
 * unterminated "${" and an empty path (the configuration refuses both).
 * Paths have no length limit. */
int kjb_map_template(const kjb_job_cfg *job, const char *what, const char *tpl,
                     const kjb_value *rec, kjb_buf *out, kjb_err *err);

/* Calls fn for each ${path} in a template (path not NUL-terminated).
 * Stops and returns fn's value when it is non-zero. Returns -1 for an
 * unterminated "${". */
int kjb_template_each(const char *tpl, int (*fn)(const char *path, size_t len, void *arg),
                      void *arg);

#endif
