/* W3C Trace Context (see trace.h). */
#include "trace.h"

#include <string.h>
#include <sys/random.h>

static bool hex_run(const char *s, size_t n, bool *all_zero) {
  *all_zero = true;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
    *all_zero &= c == '0';
  }
  return true;
}

bool kjb_traceparent_valid(const char *s, size_t n) {
  bool zero;
  if (n < KJB_TRACEPARENT_LEN || !hex_run(s, 2, &zero) || memcmp(s, "ff", 2) == 0)
    return false;
  /* Version 00 is exactly 55 bytes; a later one may go on after a '-'. */
  if (memcmp(s, "00", 2) == 0 ? n != KJB_TRACEPARENT_LEN
                              : n > KJB_TRACEPARENT_LEN && s[KJB_TRACEPARENT_LEN] != '-')
    return false;
  if (s[2] != '-' || s[35] != '-' || s[52] != '-')
    return false;
  if (!hex_run(s + 3, 32, &zero) || zero)
    return false;
  if (!hex_run(s + 36, 16, &zero) || zero)
    return false;
  return hex_run(s + 53, 2, &zero);
}

bool kjb_tracestate_valid(const char *s, size_t n) {
  if (n > KJB_TRACESTATE_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if (s[i] < 0x20 || s[i] > 0x7e)
      return false;
  return true;
}

void kjb_trace_new_id(char *out, size_t nbytes) {
  static const char digits[] = "0123456789abcdef";
  unsigned char id[16];
  bool zero = true;
  while (zero) {
    if (getrandom(id, nbytes, 0) != (ssize_t)nbytes)
      memset(id, 0x5a, nbytes); /* never: up to 256 bytes do not block */
    for (size_t i = 0; i < nbytes; i++)
      zero &= id[i] == 0;
  }
  for (size_t i = 0; i < nbytes; i++) {
    out[2 * i] = digits[id[i] >> 4];
    out[2 * i + 1] = digits[id[i] & 15];
  }
  out[2 * nbytes] = '\0';
}

void kjb_traceparent_child(const char *parent, char *out) {
  char span[17];
  kjb_trace_new_id(span, 8);
  memcpy(out, "00-", 3);
  memcpy(out + 3, parent + 3, 32);
  out[35] = '-';
  memcpy(out + 36, span, 16);
  out[52] = '-';
  memcpy(out + 53, parent + 53, 2);
  out[55] = '\0';
}

bool kjb_traceparent_sampled(const char *traceparent) {
  char c = traceparent[54];
  int low = c >= 'a' ? c - 'a' + 10 : c - '0';
  return low & 1;
}
