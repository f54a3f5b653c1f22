/* Schema registry client over libcurl. Caching is the catalog's job. */
#include "registry.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct kjb_registry {
  char *url;
  long timeout_ms;
  CURL *curl;
};

kjb_registry *kjb_registry_new(const char *url, int64_t timeout_us) {
  kjb_registry *r = kjb_xcalloc(1, sizeof *r);
  r->url = kjb_xstrdup(url);
  size_t n = strlen(r->url);
  while (n > 0 && r->url[n - 1] == '/')
    r->url[--n] = '\0';
  r->timeout_ms = timeout_us > 0 ? (long)(timeout_us / 1000) : 5000;
  r->curl = curl_easy_init();
  if (!r->curl) {
    kjb_registry_free(r);
    return NULL;
  }
  return r;
}

void kjb_registry_free(kjb_registry *r) {
  if (!r)
    return;
  if (r->curl)
    curl_easy_cleanup(r->curl);
  free(r->url);
  free(r);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg) {
  kjb_buf *b = arg;
  if (b->len + size * n > (16u << 20))
    return 0; /* a schema is not 16 MiB; refuse rather than grow */
  kjb_buf_append(b, p, size * n);
  return size * n;
}

int kjb_registry_fetch(kjb_registry *r, int32_t id, char **json, kjb_err *err) {
  *json = NULL;
  kjb_buf url, body;
  kjb_buf_init(&url);
  kjb_buf_init(&body);
  kjb_buf_printf(&url, "%s/schemas/ids/%d", r->url, (int)id);
  CURL *c = r->curl;
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url.data);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode cc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  int rc = 0;
  if (cc != CURLE_OK) {
    rc = kjb_err_set(err, KJB_EREGISTRY_UNAVAILABLE, "could not fetch schema id %d: %s", (int)id,
                     curl_easy_strerror(cc));
  } else if (status == 404) {
    rc = kjb_err_set(err, KJB_EUNKNOWN_SCHEMA_ID, "schema id %d is not in the registry", (int)id);
  } else if (status != 200) {
    /* 4xx other than 404 is a registry misconfiguration (auth, path):
     * retrying beats dead-lettering records that are fine. */
    rc = kjb_err_set(err, KJB_EREGISTRY_UNAVAILABLE,
                     "could not fetch schema id %d: registry answered HTTP %ld", (int)id, status);
  } else {
    json_error_t jerr;
    json_t *doc = json_loadb(body.data, body.len, 0, &jerr);
    json_t *schema = doc ? json_object_get(doc, "schema") : NULL;
    if (!json_is_string(schema))
      rc = kjb_err_set(err, KJB_EREGISTRY_UNAVAILABLE,
                       "could not fetch schema id %d: response has no \"schema\" string", (int)id);
    else
      *json = kjb_xstrdup(json_string_value(schema));
    json_decref(doc);
  }
  kjb_buf_close(&url);
  kjb_buf_close(&body);
  return rc;
}
