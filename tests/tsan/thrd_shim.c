/* Linked into ThreadSanitizer builds of kjb only. Debian 12's librdkafka
 * uses C11 threads (thrd_create, mtx_lock, cnd_wait, ...), which glibc
 * implements by calling its internal pthread functions directly, past
 * TSan's interceptors: a thread started that way has no TSan state and
 * crashes on its first malloc, and locks taken that way are invisible, so
 * every hand-over between librdkafka's threads (and into kjb's callbacks)
 * looks like a race. These definitions in the executable take the place
 * of glibc's for librdkafka and go through the intercepted pthread calls.
 * glibc's own C11 functions are the same casts: thrd_t is a pthread_t,
 * mtx_t and cnd_t wrap pthread_mutex_t and pthread_cond_t. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

static int c11(int rc) {
  switch (rc) {
  case 0: return thrd_success;
  case EBUSY: return thrd_busy;
  case ETIMEDOUT: return thrd_timedout;
  case ENOMEM: return thrd_nomem;
  default: return thrd_error;
  }
}

typedef struct {
  thrd_start_t func;
  void *arg;
} start;

static void *trampoline(void *p) {
  start s = *(start *)p;
  free(p);
  return (void *)(intptr_t)s.func(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg) {
  start *s = malloc(sizeof *s);
  if (!s)
    return thrd_nomem;
  *s = (start){func, arg};
  int rc = pthread_create((pthread_t *)thr, NULL, trampoline, s);
  if (rc != 0)
    free(s);
  return c11(rc);
}

int thrd_join(thrd_t thr, int *res) {
  void *v;
  int rc = pthread_join((pthread_t)thr, &v);
  if (rc == 0 && res)
    *res = (int)(intptr_t)v;
  return c11(rc);
}

int thrd_detach(thrd_t thr) { return c11(pthread_detach((pthread_t)thr)); }

int mtx_init(mtx_t *m, int type) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  if (type & mtx_recursive)
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
  pthread_mutexattr_destroy(&a);
  return c11(rc);
}

int mtx_lock(mtx_t *m) { return c11(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_trylock(mtx_t *m) { return c11(pthread_mutex_trylock((pthread_mutex_t *)m)); }
int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict t) {
  return c11(pthread_mutex_timedlock((pthread_mutex_t *)m, t));
}
int mtx_unlock(mtx_t *m) { return c11(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }

int cnd_init(cnd_t *c) { return c11(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return c11(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return c11(pthread_cond_broadcast((pthread_cond_t *)c)); }
int cnd_wait(cnd_t *c, mtx_t *m) {
  return c11(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict t) {
  return c11(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, t));
}
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }

void call_once(once_flag *flag, void (*func)(void)) { pthread_once((pthread_once_t *)flag, func); }
