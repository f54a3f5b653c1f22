/* The exec handler: runs the configured program (argv, never a shell) once
 * per attempt with the job's args JSON on stdin, and maps its exit status
 * to an outcome. stdout goes to /dev/null; the last bytes of stderr become
 * the message of a failed attempt. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handler.h"
#include "util.h"

extern char **environ;

/* How much of stderr the message keeps: its end, where the reason is. */
#define TAIL 400
/* SIGTERM, then this long before SIGKILL. */
#define GRACE_US 1000000
/* Without a pidfd a child that closed stderr is looked at this often; and
 * job->cancelled is polled at least this often. */
#define SLICE_NO_PIDFD_MS 10
#define SLICE_CANCEL_MS 100

typedef struct {
  char **argv; /* NULL-terminated copy of cfg->command */
  int64_t timeout_us;
} exec_state;

typedef struct {
  char data[TAIL];
  size_t len;
  size_t total;
} tail_buf;

static void tail_add(tail_buf *t, const char *p, size_t n) {
  t->total += n;
  if (n >= TAIL) {
    memcpy(t->data, p + n - TAIL, TAIL);
    t->len = TAIL;
    return;
  }
  if (t->len + n > TAIL) {
    size_t drop = t->len + n - TAIL;
    memmove(t->data, t->data + drop, t->len - drop);
    t->len -= drop;
  }
  memcpy(t->data + t->len, p, n);
  t->len += n;
}

static const char *errno_text(int e) {
  const char *s = strerrordesc_np(e);
  return s ? s : "unknown error";
}

static void exec_free(void *state) {
  exec_state *s = state;
  if (!s)
    return;
  for (char **a = s->argv; a && *a; a++)
    free(*a);
  free(s->argv);
  free(s);
}

static int exec_init(const kjb_handler_cfg *cfg, void **state, kjb_err *err) {
  if (cfg->ncommand == 0 || !cfg->command[0] || !cfg->command[0][0])
    return kjb_err_set(err, KJB_ECONFIG, "exec: command is empty");
  exec_state *s = kjb_xcalloc(1, sizeof *s);
  s->argv = kjb_xcalloc(cfg->ncommand + 1, sizeof *s->argv);
  for (size_t i = 0; i < cfg->ncommand; i++)
    s->argv[i] = kjb_xstrdup(cfg->command[i]);
  s->timeout_us = cfg->timeout_us;
  *state = s;
  return 0;
}

/* The parent's environment with KJB_JOB_ID, KJB_JOB_KIND and
 * KJB_JOB_ATTEMPT set for job, and TRACEPARENT/TRACESTATE set to the
 * attempt's trace context or removed; the strings live in vars. */
static char **job_env(const kjb_handler_job *job, kjb_buf *vars) {
  static const char *const names[] = {
      "KJB_JOB_ID=", "KJB_JOB_KIND=", "KJB_JOB_ATTEMPT=", "TRACEPARENT=", "TRACESTATE="};
  enum { NNAMES = sizeof names / sizeof names[0] };
  size_t n = 0;
  for (char **e = environ; e && *e; e++)
    n++;
  char **env = kjb_xcalloc(n + NNAMES + 1, sizeof *env);
  size_t o = 0;
  for (char **e = environ; e && *e; e++) {
    int ours = 0;
    for (size_t i = 0; i < NNAMES; i++)
      ours |= strncmp(*e, names[i], strlen(names[i])) == 0;
    if (!ours)
      env[o++] = *e;
  }
  size_t at[NNAMES], nat = 0;
  at[nat++] = vars->len;
  kjb_buf_printf(vars, "KJB_JOB_ID=%" PRId64, job->id);
  kjb_buf_putc(vars, '\0');
  at[nat++] = vars->len;
  kjb_buf_puts(vars, "KJB_JOB_KIND=");
  kjb_buf_puts(vars, job->kind);
  kjb_buf_putc(vars, '\0');
  at[nat++] = vars->len;
  kjb_buf_printf(vars, "KJB_JOB_ATTEMPT=%d", job->attempt);
  kjb_buf_putc(vars, '\0');
  if (job->abi_minor >= 1 && job->traceparent) {
    at[nat++] = vars->len;
    kjb_buf_printf(vars, "TRACEPARENT=%s", job->traceparent);
    kjb_buf_putc(vars, '\0');
    if (job->tracestate) {
      at[nat++] = vars->len;
      kjb_buf_printf(vars, "TRACESTATE=%s", job->tracestate);
      kjb_buf_putc(vars, '\0');
    }
  }
  /* Pointers only now: the buffer may have moved while it grew. */
  for (size_t i = 0; i < nat; i++)
    env[o++] = vars->data + at[i];
  env[o] = NULL;
  return env;
}

/* Starts the program in its own process group with stdin from in_r,
 * stderr to err_w and stdout to /dev/null. Returns 0 or an errno value. */
static int spawn(const exec_state *s, const kjb_handler_job *job, int in_r, int err_w, pid_t *pid) {
  kjb_buf vars;
  kjb_buf_init(&vars);
  char **env = job_env(job, &vars);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, err_w, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_init(&attr);
  /* A process group of its own, so that a timeout kills whatever it
   * started too; and kjb's signal mask and ignored signals (SIGPIPE) are
   * not the program's business. */
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  int rc = posix_spawnp(pid, s->argv[0], &fa, &attr, s->argv, env);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  free(env);
  kjb_buf_close(&vars);
  return rc;
}

static void drain(int *fd, tail_buf *tail) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) {
      tail_add(tail, buf, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0 || errno != EAGAIN) {
      close(*fd);
      *fd = -1;
    }
    return;
  }
}

/* Whether pid has exited, without reaping it: the zombie keeps its pid and
 * process group reserved, so signalling the group stays safe. */
static int has_exited(pid_t pid) {
  siginfo_t info = {.si_pid = 0};
  return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

/* Ends the program's process group: SIGTERM, SIGKILL after GRACE_US. */
static void stop_group(pid_t pid, int pidfd) {
  kill(-pid, SIGTERM);
  int64_t until = kjb_now_mono_us() + GRACE_US;
  while (!has_exited(pid)) {
    int64_t left = until - kjb_now_mono_us();
    if (left <= 0)
      break;
    int ms = (int)((left + 999) / 1000);
    if (pidfd < 0 && ms > SLICE_NO_PIDFD_MS)
      ms = SLICE_NO_PIDFD_MS;
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    poll(&p, pidfd >= 0, ms);
  }
  /* Also for what it started that outlived it. */
  kill(-pid, SIGKILL);
}

static void exec_perform(void *state, const kjb_handler_job *job, kjb_handler_result *res) {
  exec_state *s = state;
  int64_t limit = job->deadline_us - kjb_now_mono_us();
  if (s->timeout_us > 0 && s->timeout_us < limit)
    limit = s->timeout_us;
  if (limit <= 0) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT,
                           "exec: timed out before the program was started");
    return;
  }
  if (kjb_handler_cancelled(job)) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "exec: cancelled");
    return;
  }
  int64_t deadline = kjb_now_mono_us() + limit;

  /* O_CLOEXEC: programs other threads spawn meanwhile must not inherit
   * this job's pipes, or EOF would never come. */
  int in[2] = {-1, -1}, err[2] = {-1, -1};
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "exec: could not create a pipe: %s",
                           errno_text(errno));
    for (int i = 0; i < 2; i++) {
      if (in[i] >= 0)
        close(in[i]);
      if (err[i] >= 0)
        close(err[i]);
    }
    return;
  }
  pid_t pid = -1;
  int e = spawn(s, job, in[0], err[1], &pid);
  close(in[0]);
  close(err[1]);
  int in_w = in[1], err_r = err[0];
  if (e != 0) {
    close(in_w);
    close(err_r);
    /* A program that is not there or cannot run stays so until someone
     * changes the configuration or the host; resource shortages pass. */
    int lasting = e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR || e == ELOOP ||
                  e == ENAMETOOLONG || e == EPERM;
    kjb_handler_set_result(res, lasting ? KJB_HANDLER_PERMANENT : KJB_HANDLER_TRANSIENT,
                           "exec: could not run \"%s\": %s", s->argv[0], errno_text(e));
    return;
  }
  fcntl(in_w, F_SETFL, O_NONBLOCK);
  fcntl(err_r, F_SETFL, O_NONBLOCK);
  int pidfd = pidfd_open(pid, 0); /* -1 on old kernels: then poll in slices */

  /* A program that exits without reading stdin makes write() raise
   * SIGPIPE, which must not reach kjb: block it on this thread and take
   * back the one the write leaves pending. */
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  int epipe = 0;

  tail_buf tail = {.len = 0};
  size_t off = 0;
  if (job->args_len == 0) {
    close(in_w);
    in_w = -1;
  }
  int stopped = 0; /* 1: timed out, 2: cancelled */
  int wstatus = 0;
  for (;;) {
    pid_t r = waitpid(pid, &wstatus, WNOHANG);
    if (r == pid)
      break;
    int64_t now = kjb_now_mono_us();
    if (kjb_handler_cancelled(job))
      stopped = 2;
    else if (now >= deadline)
      stopped = 1;
    if (stopped) {
      stop_group(pid, pidfd);
      while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
      break;
    }
    struct pollfd p[3];
    nfds_t n = 0;
    int pi = -1, pe = -1;
    if (in_w >= 0) {
      pi = (int)n;
      p[n++] = (struct pollfd){.fd = in_w, .events = POLLOUT};
    }
    if (err_r >= 0) {
      pe = (int)n;
      p[n++] = (struct pollfd){.fd = err_r, .events = POLLIN};
    }
    if (pidfd >= 0)
      p[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
    int64_t left_ms = (deadline - now + 999) / 1000;
    if (job->cancelled && left_ms > SLICE_CANCEL_MS)
      left_ms = SLICE_CANCEL_MS;
    if (pidfd < 0 && err_r < 0 && left_ms > SLICE_NO_PIDFD_MS)
      left_ms = SLICE_NO_PIDFD_MS;
    if (poll(p, n, (int)left_ms) < 0)
      continue; /* EINTR */
    if (pi >= 0 && p[pi].revents) {
      ssize_t w = write(in_w, job->args_json + off, job->args_len - off);
      if (w > 0)
        off += (size_t)w;
      else if (w < 0 && errno == EPIPE)
        epipe = 1;
      /* Done, or the program closed stdin (EPIPE): it reads no more. */
      if (off == job->args_len || (w < 0 && errno != EAGAIN && errno != EINTR)) {
        close(in_w);
        in_w = -1;
      }
    }
    if (pe >= 0 && p[pe].revents)
      drain(&err_r, &tail);
  }
  /* What it wrote just before exiting. A child it left behind may still
   * hold stderr open, so only take what is there. */
  if (err_r >= 0) {
    drain(&err_r, &tail);
    if (err_r >= 0)
      close(err_r);
  }
  if (in_w >= 0)
    close(in_w);
  if (pidfd >= 0)
    close(pidfd);
  if (epipe) {
    struct timespec zero = {0, 0};
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE))
      sigtimedwait(&pipe_set, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

  size_t from = 0;
  if (tail.total > tail.len)
    while (from < tail.len && ((unsigned char)tail.data[from] & 0xC0) == 0x80)
      from++; /* the cut fell inside a character */
  char why[TAIL + 1];
  kjb_handler_sanitize(why, sizeof why, tail.data + from, tail.len - from);
  const char *sep = why[0] ? ": " : "";

  if (stopped == 2) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "exec: cancelled%s%s", sep, why);
  } else if (stopped == 1) {
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "exec: timed out after %.1f s%s%s",
                           limit / 1e6, sep, why);
  } else if (WIFEXITED(wstatus)) {
    int code = WEXITSTATUS(wstatus);
    if (code != 0)
      kjb_handler_set_result(res, code == 75 ? KJB_HANDLER_TRANSIENT : KJB_HANDLER_PERMANENT,
                             "exec: exited %d%s%s", code, sep, why);
  } else if (WIFSIGNALED(wstatus)) {
    const char *name = sigabbrev_np(WTERMSIG(wstatus));
    kjb_handler_set_result(res, KJB_HANDLER_TRANSIENT, "exec: killed by SIG%s%s%s",
                           name ? name : "?", sep, why);
  }
}

const kjb_builtin_handler kjb_handler_exec = {
    .type = "exec", .init = exec_init, .perform = exec_perform, .free = exec_free};
