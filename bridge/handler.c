/* Handlers: opens the built-in or plugin handler a kind is configured
 * with and runs attempts through it, whatever its origin. */
#include "handler.h"

#include <assert.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct kjb_handler {
  /* Exactly one of the two is set. */
  const kjb_builtin_handler *builtin;
  const kjb_handler_plugin *plugin;
  void *dl; /* the plugin's dlopen handle */
  void *state;
};

static const kjb_builtin_handler *const builtins[] = {&kjb_handler_http, &kjb_handler_exec,
                                                      &kjb_handler_log};

/* Loads the plugin at cfg->plugin into h. Returns 0, or a negative code
 * with err as `plugin "<path>": <why>`, having unloaded what it loaded. */
static int open_plugin(kjb_handler *h, const kjb_handler_cfg *cfg, kjb_err *err) {
  const char *path = cfg->plugin;
  if (!path || !*path)
    return kjb_err_set(err, KJB_ECONFIG, "plugin: no path to the shared object");
  h->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h->dl)
    return kjb_err_set(err, KJB_ECONFIG, "plugin \"%s\": %s", path, dlerror());
  dlerror();
  /* POSIX blesses this conversion of a dlsym result to a function. */
  const kjb_handler_plugin *(*entry)(void);
  *(void **)&entry = dlsym(h->dl, "kjb_handler_entry");
  const char *why = dlerror();
  int rc = 0;
  if (why || !entry) {
    rc = kjb_err_set(err, KJB_ECONFIG, "plugin \"%s\": %s", path,
                     why ? why : "kjb_handler_entry is NULL");
    goto fail;
  }
  const kjb_handler_plugin *p = entry();
  if (!p) {
    rc = kjb_err_set(err, KJB_ECONFIG, "plugin \"%s\": kjb_handler_entry returned NULL", path);
    goto fail;
  }
  /* abi_version is the first field in every version of the ABI, so it is
   * the only one safe to read before the check. */
  if (p->abi_version != KJB_HANDLER_ABI_VERSION) {
    rc = kjb_err_set(err, KJB_ECONFIG, "plugin \"%s\": ABI version %u, kjb needs %d", path,
                     (unsigned)p->abi_version, KJB_HANDLER_ABI_VERSION);
    goto fail;
  }
  if (!p->init || !p->perform) {
    rc = kjb_err_set(err, KJB_ECONFIG, "plugin \"%s\": init or perform is NULL", path);
    goto fail;
  }
  char errbuf[256] = "";
  if (p->init(cfg->kind, &h->state, errbuf, sizeof errbuf) != 0) {
    errbuf[sizeof errbuf - 1] = '\0';
    rc = kjb_err_set(err, KJB_ECONFIG, "plugin \"%s\": init failed: %s", path,
                     errbuf[0] ? errbuf : "no reason given");
    goto fail;
  }
  h->plugin = p;
  return 0;
fail:
  dlclose(h->dl);
  h->dl = NULL;
  return rc;
}

kjb_handler *kjb_handler_open(const kjb_handler_cfg *cfg, kjb_err *err) {
  kjb_handler *h = kjb_xcalloc(1, sizeof *h);
  const char *type = cfg->type ? cfg->type : "";
  if (strcmp(type, "plugin") == 0) {
    if (open_plugin(h, cfg, err) < 0)
      goto fail;
    return h;
  }
  for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
    if (strcmp(type, builtins[i]->type) == 0) {
      if (builtins[i]->init(cfg, &h->state, err) < 0)
        goto fail;
      h->builtin = builtins[i];
      return h;
    }
  }
  kjb_err_set(err, KJB_ECONFIG, "unknown handler type \"%s\"", type);
fail:
  free(h);
  return NULL;
}

void kjb_handler_perform(kjb_handler *h, const kjb_handler_job *job, kjb_handler_result *res) {
  memset(res, 0, sizeof *res);
  res->status = KJB_HANDLER_OK;
  res->retry_after_us = -1;
  if (h->builtin) {
    h->builtin->perform(h->state, job, res);
    return;
  }
  h->plugin->perform(h->state, job, res);
  /* A plugin is foreign code: keep what it returned usable downstream
   * (the message goes into jsonb, which takes valid UTF-8 only). */
  res->message[sizeof res->message - 1] = '\0';
  char raw[sizeof res->message];
  memcpy(raw, res->message, sizeof raw);
  kjb_handler_sanitize(res->message, sizeof res->message, raw, strlen(raw));
  if ((unsigned)res->status > KJB_HANDLER_PERMANENT) {
    int status = (int)res->status;
    res->status = KJB_HANDLER_TRANSIENT;
    snprintf(res->message, sizeof res->message, "plugin returned unknown status %d", status);
  }
}

void kjb_handler_free(kjb_handler *h) {
  if (!h)
    return;
  if (h->builtin) {
    if (h->builtin->free)
      h->builtin->free(h->state);
  } else {
    if (h->plugin->free)
      h->plugin->free(h->state);
    dlclose(h->dl);
  }
  free(h);
}

void kjb_handler_sanitize(char *dst, size_t cap, const char *src, size_t n) {
  assert(cap > 0);
  size_t o = 0;
  size_t i = 0;
  int space = 0; /* collapse runs of whitespace and control characters */
  while (i < n) {
    long bad = kjb_utf8_invalid_at(src + i, n - i);
    size_t good = bad < 0 ? n - i : (size_t)bad;
    for (size_t j = 0; j < good;) {
      unsigned char c = (unsigned char)src[i + j];
      size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      if (c < 0x20 || c == 0x7F || c == ' ') {
        space = 1;
        j++;
        continue;
      }
      size_t need = len + (space && o > 0);
      if (o + need >= cap)
        goto done;
      if (space && o > 0)
        dst[o++] = ' ';
      space = 0;
      memcpy(dst + o, src + i + j, len);
      o += len;
      j += len;
    }
    i += good;
    if (bad >= 0) {
      size_t need = 1 + (space && o > 0);
      if (o + need >= cap)
        goto done;
      if (space && o > 0)
        dst[o++] = ' ';
      space = 0;
      dst[o++] = '?';
      i++;
    }
  }
done:
  dst[o] = '\0';
}

void kjb_handler_set_result(kjb_handler_result *res, kjb_handler_status status, const char *fmt,
                            ...) {
  va_list ap;
  va_start(ap, fmt);
  res->status = status;
  vsnprintf(res->message, sizeof res->message, fmt, ap);
  va_end(ap);
}
