/* Error values: the code table and message helpers. */
#include "err.h"

#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  kjb_err_class cls;
} table[] = {[KJB_OK] = {"OK", KJB_PERMANENT},
#define KJB_ERR_ROW(name, cls, desc) [KJB_E##name] = {#name, cls},
             KJB_ERRNO_MAP(KJB_ERR_ROW)
#undef KJB_ERR_ROW
};

int kjb_err_vset(kjb_err *err, kjb_errcode code, const char *fmt, va_list ap) {
  if (err) {
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  }
  return -(int)code;
}

int kjb_err_set(kjb_err *err, kjb_errcode code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = kjb_err_vset(err, code, fmt, ap);
  va_end(ap);
  return rc;
}

int kjb_err_prefix(kjb_err *err, const char *fmt, ...) {
  if (!err)
    return -(int)KJB_EINTERNAL;
  char ctx[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  if (n < 0)
    return -(int)err->code;
  /* "<ctx>: <old>", cut at the buffer's end: the innermost detail is the
   * least important part once the message is that long. */
  size_t clen = strnlen(ctx, sizeof ctx - 1), olen = strlen(err->msg);
  size_t cap = sizeof err->msg - 1;
  if (clen + 2 > cap)
    clen = cap - 2;
  size_t keep = olen < cap - clen - 2 ? olen : cap - clen - 2;
  memmove(err->msg + clen + 2, err->msg, keep);
  memcpy(err->msg, ctx, clen);
  err->msg[clen] = ':';
  err->msg[clen + 1] = ' ';
  err->msg[clen + 2 + keep] = '\0';
  return -(int)err->code;
}

void kjb_err_clear(kjb_err *err) {
  if (err) {
    err->code = KJB_OK;
    err->msg[0] = '\0';
  }
}

const char *kjb_err_name(kjb_errcode code) {
  if ((unsigned)code >= KJB_E__COUNT)
    return "UNKNOWN";
  return table[code].name;
}

kjb_err_class kjb_err_classof(kjb_errcode code) {
  if ((unsigned)code >= KJB_E__COUNT)
    return KJB_FATAL;
  return table[code].cls;
}

int kjb_err_is_transient(const kjb_err *err) {
  return err && kjb_err_classof(err->code) == KJB_TRANSIENT;
}
