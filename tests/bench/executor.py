#!/usr/bin/env python3
"""Executor benchmark: kjb.jobs rows -> `kjb run --role executor` (log
handler), side by side with River's `river bench` on the same PostgreSQL
server, in the same run.

1. Backlog: N jobs of one kind are inserted (INSERT ... SELECT
   generate_series), then one release kjb executor burns them down. The rate
   is N over min(attempted_at) .. max(finished_at), measured in SQL; the
   wall time from process start is printed too, with kjb's peak RSS and CPU.
2. Latency: with the executor idle on an empty table, a producer inserts
   100 jobs at a time, every 100 ms for 1k jobs/s and every 10 ms for
   10k (--steady-rates), for --steady-seconds; prints the percentiles of
   attempted_at - created_at (insert -> start) over the jobs of the steady
   window (the first --skip-seconds left out), in SQL.
3. River: `river migrate-up` then `river bench --num-total-jobs N` (it
   inserts N jobs, then works them down and prints jobs/s from its client's
   start to the last completion) in a database of its own on the same
   server; its output is printed, its jobs/s parsed, and the same SQL rate
   as kjb's taken from river_job; the ratio sets kjb's against that, with
   River's peak RSS and the CPU of River and PostgreSQL. River's bench
   waits for every job it counted as inserted, so an insert batch or a
   completion batch it gave up on (its own 10 s operation timeouts, on a
   busy machine) hangs it: after --river-stall seconds without a finished
   job it is stopped and counts as failed, as does a run that did not
   complete all N jobs.

The phases never overlap. The River CLI is pinned in tests/bench/river/
(go.mod, go.sum): the proxy serves its module only by version, so it is not
`go install`ed but built once from a copy of that module in a temporary
directory into ~/.cache/kjb/river-<version> ($KJB_CACHE_DIR as for pg.sh),
which later runs reuse. The build comes first, so it overlaps no
measurement; when it or the bench fails the script exits non-zero with the
reason, after the kjb figures. PostgreSQL, kjb and River share the
machine's cores, so compare the ratio, not absolute rates.

Usage: tests/bench/run-executor [--jobs N] [--steady-seconds S] [--concurrency C]
"""
import argparse
import atexit
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GO = shutil.which("go") or "/usr/local/go/bin/go"
RIVER_PKG = "github.com/riverqueue/river/cmd/river"
RIVER_MOD = os.path.join(ROOT, "tests", "bench", "river")
CACHE = os.environ.get("KJB_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "kjb")
KIND = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg(phase):
    one, five, fifteen = os.getloadavg()
    print(f"[{time.strftime('%H:%M:%S')}] load average before {phase}: "
          f"{one:.2f} {five:.2f} {fifteen:.2f}  ({os.cpu_count()} CPUs)", flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_s(pid):
    """user + system CPU seconds of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def server_cpu_s(postmaster):
    """CPU seconds of the postmaster and its live children (backends,
    walwriter, autovacuum ...): what the server spent, as far as /proc can
    still see it."""
    total = proc_cpu_s(postmaster)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if proc_ppid(int(d)) == postmaster:
                    total += proc_cpu_s(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return total


def server_cpu_by_pid(postmaster, seen):
    """Records in seen (pid -> CPU seconds) the postmaster and its live
    children; a backend that has exited keeps its last sample there."""
    seen[postmaster] = proc_cpu_s(postmaster)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if proc_ppid(int(d)) == postmaster:
                    seen[int(d)] = proc_cpu_s(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return seen


def river_pin():
    """The River CLI version that tests/bench/river/go.mod requires."""
    with open(os.path.join(RIVER_MOD, "go.mod")) as f:
        m = re.search(r"^\s*require\s+" + re.escape(RIVER_PKG) + r"\s+(v\S+)", f.read(), re.M)
    if not m:
        sys.exit(f"{RIVER_MOD}/go.mod does not require {RIVER_PKG}")
    return m.group(1)


def river_version_ok(path, version):
    try:
        res = subprocess.run([path, "version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return res.returncode == 0 and f"River version {version}" in res.stdout


def build_river():
    """The pinned River CLI, built once into the cache. Returns (path, None)
    or (None, reason)."""
    version = river_pin()
    path = os.path.join(CACHE, f"river-{version}")
    if os.access(path, os.X_OK) and river_version_ok(path, version):
        print(f"River CLI {version}: {path}", flush=True)
        return path, None
    if not os.access(GO, os.X_OK):
        return None, f"no Go toolchain at {GO} (needed to build {RIVER_PKG} {version})"
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kjb-river-build-") as d:
        for name in ("go.mod", "go.sum", "tools.go"):
            shutil.copy(os.path.join(RIVER_MOD, name), d)
        goflags = subprocess.run([GO, "env", "GOFLAGS"], capture_output=True, text=True).stdout.strip()
        # The proxy serves the pinned version; `direct` would only try
        # github.com. -mod=mod lets go.mod take the indirect requirements.
        env = {**os.environ, "GOPROXY": os.environ.get("GOPROXY", "https://proxy.golang.org"),
               "GOFLAGS": (goflags + " -mod=mod").strip()}
        print(f"building the River CLI {version} (GOPROXY={env['GOPROXY']} go build {RIVER_PKG} in {d}; "
              f"about 15 min on 2 cores when the Go caches are cold) ...", flush=True)
        t = time.monotonic()
        try:
            res = subprocess.run([GO, "build", "-o", os.path.join(d, "river"), RIVER_PKG], cwd=d, env=env,
                                 capture_output=True, text=True, timeout=3600)
        except subprocess.TimeoutExpired:
            return None, f"`go build {RIVER_PKG}` ({version}) did not finish within 3600 s"
        built = os.path.join(d, "river")
        if res.returncode != 0 or not river_version_ok(built, version):
            out = (res.stderr + res.stdout).strip().splitlines()
            return None, (f"`go build {RIVER_PKG}` ({version}, module {RIVER_MOD}, GOPROXY={env['GOPROXY']}) "
                          f"failed with exit status {res.returncode}:\n    " + "\n    ".join(out[-8:]))
        tmp = f"{path}.tmp-{os.getpid()}"
        shutil.copy2(built, tmp)
        os.replace(tmp, path)
    print(f"  built in {time.monotonic() - t:.0f} s: {path}", flush=True)
    return path, None


def write_config(path, conninfo, concurrency, claim_batch, poll_interval, kind=KIND,
                 listen="127.0.0.1:0", retention="7d"):
    with open(path, "w") as f:
        f.write(f"""
kafka = {{ brokers = "127.0.0.1:1"; group = "bench-executor"; }};
postgres = {{ conninfo = "{conninfo}"; }};
log = {{ level = "warn"; }};
# HTTP and its stats thread run as in production, on a free port: the
# default 9464 may be taken by another kjb on the machine.
http = {{ listen = "{listen}"; }};
executor = {{ claim_batch = {claim_batch}; poll_interval = "{poll_interval}"; retention = "{retention}"; }};
topics = ( {{ topic = "unused"; schema = "unused.avsc"; jobs = ( {{ kind = "unused"; }} ); }} );
handlers = ( {{ kind = "{kind}"; type = "log"; concurrency = {concurrency}; }} );
""")


class Executor:
    """One `kjb run --role executor`, its log in a file."""

    def __init__(self, kjb, cfg, logpath):
        self.log = open(logpath, "w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([kjb, "run", "--role", "executor", "-c", cfg],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)  # also when a check fails with sys.exit

    def check(self):
        if self.proc.poll() is not None:
            sys.exit(f"kjb exited early with {self.proc.returncode}; see {self.log.name}")

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_registered(conn, ex, timeout=30):
    """Until the executor has heartbeated (it LISTENs before that)."""
    deadline = time.monotonic() + timeout
    while conn.execute("SELECT count(*) FROM kjb.nodes").fetchone()[0] == 0:
        ex.check()
        if time.monotonic() > deadline:
            sys.exit(f"kjb did not register as a node within {timeout} s; see {ex.log.name}")
        time.sleep(0.05)


def unfinished(conn):
    """Jobs not completed yet; cheap (the claim index) while any is runnable."""
    if conn.execute("SELECT EXISTS (SELECT 1 FROM kjb.jobs WHERE kind = %s"
                    " AND state IN ('available', 'scheduled', 'retryable'))", (KIND,)).fetchone()[0]:
        return None
    return conn.execute("SELECT count(*) FROM kjb.jobs WHERE state <> 'completed'").fetchone()[0]


def sample_activity(conn, db, samples):
    """What kjb's connections are doing right now (state / wait / statement)."""
    for state, wait, query in conn.execute(
            "SELECT state, coalesce(wait_event_type || ':' || wait_event, '-'), left(query, 24)"
            " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND query NOT LIKE 'LISTEN%%'", (db,)):
        key = "idle (waiting for kjb)" if state == "idle" else f"{state} {wait} {query!r}"
        samples[key] = samples.get(key, 0) + 1


def backlog(a, conn, db, cfg, tmp, postmaster):
    loadavg("phase 1 (kjb backlog)")
    conn.execute("TRUNCATE kjb.jobs")
    t = time.monotonic()
    conn.execute("INSERT INTO kjb.jobs (kind, args) SELECT %s, jsonb_build_object('i', g)"
                 " FROM generate_series(1, %s) g", (KIND, a.jobs))
    conn.execute("VACUUM ANALYZE kjb.jobs")
    print(f"  inserted {a.jobs} jobs of kind {KIND!r} in {time.monotonic() - t:.1f} s (then VACUUM ANALYZE)",
          flush=True)

    pg_cpu0 = server_cpu_s(postmaster)
    ex = Executor(a.kjb, cfg, os.path.join(tmp, "kjb-backlog.log"))
    rss = None
    left = a.jobs
    samples = {}
    deadline = ex.t0 + a.timeout
    while True:
        ex.check()
        rss = proc_status_kib(ex.proc.pid, "VmHWM") or rss
        left = unfinished(conn)
        if left == 0:
            break
        if time.monotonic() > deadline:
            sys.exit(f"jobs still unfinished after {a.timeout} s; see {ex.log.name}")
        sample_activity(conn, db, samples)
        time.sleep(0.25)
    wall = time.monotonic() - ex.t0
    rss = proc_status_kib(ex.proc.pid, "VmHWM") or rss
    cpu = proc_cpu_s(ex.proc.pid)
    threads = proc_status_kib(ex.proc.pid, "Threads")
    pg_cpu = server_cpu_s(postmaster) - pg_cpu0
    ex.stop()

    done, span, first_start = conn.execute(
        "SELECT count(*), extract(epoch FROM max(finished_at) - min(attempted_at)),"
        " extract(epoch FROM min(attempted_at) - min(created_at))"
        " FROM kjb.jobs WHERE state = 'completed' AND attempt = 1").fetchone()
    retried = conn.execute("SELECT count(*) FROM kjb.jobs WHERE attempt <> 1").fetchone()[0]
    if done != a.jobs:
        sys.exit(f"{done} of {a.jobs} jobs completed in one attempt ({retried} took more)")
    rate = a.jobs / float(span)
    print(f"  all {a.jobs} completed; first claim {float(first_start):.1f} s after the insert; "
          f"{threads} threads in kjb", flush=True)
    total = sum(samples.values()) or 1
    top = sorted(samples.items(), key=lambda kv: -kv[1])[:4]
    print("  kjb's connections, sampled every 0.25 s: "
          + "; ".join(f"{100 * n / total:.0f}% {k}" for k, n in top), flush=True)
    return {"rate": rate, "span": float(span), "wall": wall, "wall_rate": a.jobs / wall,
            "rss": rss, "cpu": cpu, "pg_cpu": pg_cpu}


def steady(a, conn, cfg, tmp, rate):
    loadavg(f"phase 2 (kjb latency at {rate} jobs/s)")
    conn.execute("TRUNCATE kjb.jobs")
    conn.execute("DELETE FROM kjb.nodes")
    ex = Executor(a.kjb, cfg, os.path.join(tmp, "kjb-steady.log"))
    wait_registered(conn, ex)
    time.sleep(1)
    prod = psycopg.connect(conn.info.dsn, autocommit=True)
    per_tick, period = 100, 100 / rate
    ticks = int(round(a.steady_seconds / period))
    late = 0
    worst_late = 0.0
    t0 = time.monotonic()
    for i in range(ticks):
        target = t0 + i * period
        now = time.monotonic()
        if now < target:
            time.sleep(target - now)
        else:
            lag = now - target
            if lag > period / 2:
                late += 1
            worst_late = max(worst_late, lag)
        prod.execute("INSERT INTO kjb.jobs (kind, args) SELECT %s, jsonb_build_object('i', g)"
                     " FROM generate_series(1, %s) g", (KIND, per_tick))
        if i % 10 == 0:
            ex.check()
    produce_s = time.monotonic() - t0
    t_drain = time.monotonic()
    while unfinished(conn) != 0:
        ex.check()
        if time.monotonic() > t_drain + a.timeout:
            sys.exit(f"steady-state jobs unfinished {a.timeout} s after the producer stopped; see {ex.log.name}")
        time.sleep(0.1)
    drain_s = time.monotonic() - t_drain
    ex.stop()
    prod.close()

    row = conn.execute(
        "WITH w AS (SELECT created_at, attempted_at, finished_at FROM kjb.jobs"
        "           WHERE created_at >= (SELECT min(created_at) FROM kjb.jobs) + make_interval(secs => %s)),"
        " l AS (SELECT extract(epoch FROM attempted_at - created_at) * 1000 AS start_ms,"
        "              extract(epoch FROM finished_at - created_at) * 1000 AS done_ms FROM w)"
        " SELECT count(*),"
        "   percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY start_ms), max(start_ms),"
        "   percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY done_ms), max(done_ms),"
        "   (SELECT count(*) / extract(epoch FROM max(created_at) - min(created_at)) FROM w)"
        " FROM l", (a.skip_seconds,)).fetchone()
    n, (p50, p90, p99), mx, (d50, d99), dmx, rate = row
    print(f"  produced {ticks * per_tick} jobs in {produce_s:.1f} s ({ticks} inserts of {per_tick}); "
          f"{late} inserts started >{period * 500:.0f} ms late (worst {worst_late * 1000:.0f} ms); "
          f"all done {drain_s:.1f} s after the last insert"
          + ("  <- the executor did not keep up: the latencies below are queueing" if drain_s > 2 else ""),
          flush=True)
    return {"n": n, "p50": p50, "p90": p90, "p99": p99, "max": float(mx), "d50": d50, "d99": d99,
            "dmax": float(dmx), "rate": float(rate)}


def river_progress(path):
    """The jobs River worked in each of its 2 s reporting intervals so far."""
    with open(path, errors="replace") as f:
        return [int(n) for n in re.findall(r"bench: jobs worked \[\s*(\d+)\s*\]", f.read())]


def river_states(conn):
    return ", ".join(f"{n} {st}" for st, n in conn.execute(
        "SELECT state::text, count(*) FROM river_job GROUP BY 1 ORDER BY 2 DESC")) or "no rows"


def river_bench(a, river, url, ci, postmaster, tmp):
    loadavg("phase 3 (River)")
    # River cancels its statements after 10 s by default; its TRUNCATE,
    # VACUUM FULL and 5,000-job inserts can take longer on a busy machine.
    # kjb sets no statement timeout either.
    timeout = ["--statement-timeout", f"{a.timeout:g}s"]
    res = subprocess.run([river, "migrate-up", "--database-url", url, *timeout], capture_output=True,
                         text=True, timeout=300)
    if res.returncode != 0:
        return None, f"river migrate-up failed ({res.returncode}): {(res.stderr or res.stdout).strip()}"
    args = ["--num-total-jobs", str(a.jobs), *timeout]
    print(f"  $ {river} bench --database-url {url} {' '.join(args)}", flush=True)
    logpath = os.path.join(tmp, "river-bench.log")
    pg_cpu = server_cpu_by_pid(postmaster, {})
    pg_cpu0 = dict(pg_cpu)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    # Appending: reading the log meanwhile moves no offset River writes at.
    with open(logpath, "a") as out:
        proc = subprocess.Popen([river, "bench", "--database-url", url, *args], stdout=out,
                                stderr=subprocess.STDOUT)
    rss = None
    why = None
    quiet = max(1, int(a.river_stall / 2))  # River reports every 2 s
    next_check = t0 + 5
    while proc.poll() is None:
        rss = proc_status_kib(proc.pid, "VmHWM") or rss
        server_cpu_by_pid(postmaster, pg_cpu)
        now = time.monotonic()
        if now > t0 + a.timeout:
            why = f"river bench did not finish within {a.timeout:g} s"
        elif now >= next_check:
            next_check = now + 5
            worked = river_progress(logpath)
            # River waits for every job it counted as inserted: a batch its
            # completer gave up on stays running for its rescuer (an hour).
            if len(worked) > quiet and not any(worked[-quiet:]):
                why = f"river bench stalled: no job finished in its last {quiet * 2} s"
        if why:
            proc.send_signal(signal.SIGINT)  # river bench prints its summary and stops
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            break
        time.sleep(0.25)
    wall = time.monotonic() - t0
    # River's own CPU is what the waited children gained; its backends are
    # gone by now, their last samples kept.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children.ru_utime - children0.ru_utime) + (children.ru_stime - children0.ru_stime)
    server_cpu_by_pid(postmaster, pg_cpu)
    with open(logpath, errors="replace") as f:
        lines = re.sub(r"\x1b\[[0-9;]*m", "", f.read()).rstrip().splitlines()  # its log colours
    progress = [i for i, line in enumerate(lines) if "bench: jobs worked [" in line]
    hidden = set(progress[5:-5])
    print("  river bench printed:")
    for i, line in enumerate(lines):
        if i not in hidden:
            print("    | " + line)
        elif i == progress[5]:
            print(f"    | ... ({len(hidden)} more progress lines in {logpath})")
    errors = sum(1 for line in lines if " ERR " in line)
    try:
        with psycopg.connect(ci, autocommit=True) as conn:
            states = river_states(conn)
            done, span = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'completed' AND attempt = 1),"
                " extract(epoch FROM max(finalized_at) FILTER (WHERE state = 'completed') - min(attempted_at))"
                " FROM river_job").fetchone()
    except psycopg.Error as e:
        states, done, span = f"could not be read: {str(e).splitlines()[0]}", None, None
    where = f"river_job: {states}; {errors} ERR lines from River above"
    if why:
        return None, f"{why} ({where})"
    if proc.returncode != 0:
        return None, f"river bench exited with {proc.returncode} ({where})"
    if done != a.jobs:
        return None, f"river bench ended with {done} of {a.jobs} jobs completed in one attempt ({where})"
    m = re.findall(r"overall job/sec \[\s*([0-9.]+)\s*\], running (\S+)", "\n".join(lines))
    if not m:
        return None, "could not find 'overall job/sec [ ... ], running ...' in river bench's output"
    return {"rate": float(m[-1][0]), "span": m[-1][1], "sql_rate": a.jobs / float(span),
            "sql_span": float(span), "wall": wall, "rss": rss, "cpu": cpu,
            "pg_cpu": sum(v - pg_cpu0.get(pid, 0.0) for pid, v in pg_cpu.items())}, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--steady-seconds", type=float, default=30)
    ap.add_argument("--steady-rates", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 10000],
                    help="jobs/s, comma-separated, each inserted 100 jobs at a time")
    ap.add_argument("--skip-seconds", type=float, default=2, help="left out of the latency window")
    ap.add_argument("--concurrency", type=int, default=256, help="the log handler's worker threads")
    ap.add_argument("--claim-batch", type=int, default=1000)
    ap.add_argument("--poll-interval", default="100ms")
    ap.add_argument("--no-river", action="store_true", help="kjb phases only")
    ap.add_argument("--river-stall", type=float, default=120,
                    help="seconds without a finished job after which River's bench counts as stalled")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--kjb", default=os.path.join(ROOT, "build", "release", "kjb"))
    ap.add_argument("--pg-conninfo", required=True, help="conninfo of the server (any database)")
    a = ap.parse_args()

    # The build compiles: do it first, so that it overlaps no measurement.
    river, river_err = (None, "skipped (--no-river)") if a.no_river else build_river()
    if river_err and not a.no_river:
        print(f"River CLI unavailable: {river_err}\n(the kjb phases run anyway; the script fails at the end)",
              flush=True)

    admin = psycopg.connect(a.pg_conninfo, autocommit=True)
    postmaster = proc_ppid(admin.info.backend_pid)
    version = admin.execute("SHOW server_version").fetchone()[0]
    settings = ", ".join(f"{k} {admin.execute(f'SHOW {k}').fetchone()[0]}"
                         for k in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers"))
    suffix = uuid.uuid4().hex[:6]
    db_kjb, db_river = f"bench_exec_{suffix}", f"bench_river_{suffix}"
    for db in (db_kjb, db_river):
        admin.execute(f"CREATE DATABASE {db}")
    base = psycopg.conninfo.conninfo_to_dict(a.pg_conninfo)
    ci_kjb = psycopg.conninfo.make_conninfo(**{**base, "dbname": db_kjb})
    ci_river = psycopg.conninfo.make_conninfo(**{**base, "dbname": db_river})
    river_url = (f"postgres://{base.get('user', 'postgres')}@{base.get('host', '127.0.0.1')}:"
                 f"{base.get('port', 5432)}/{db_river}?sslmode=disable")

    tmp = tempfile.mkdtemp(prefix="kjb-bench-")
    cfg = os.path.join(tmp, "executor.cfg")
    write_config(cfg, ci_kjb, a.concurrency, a.claim_batch, a.poll_interval)
    subprocess.run([a.kjb, "migrate", "-c", cfg], check=True, capture_output=True)
    conn = psycopg.connect(ci_kjb, autocommit=True)

    print(f"PostgreSQL {version} ({settings}), one server; kjb and River in separate databases; "
          f"the phases run one after another, never overlapping", flush=True)
    print(f"kjb: one `kjb run --role executor`, handler type log (log.level warn), concurrency "
          f"{a.concurrency}, claim_batch {a.claim_batch}, poll_interval {a.poll_interval}", flush=True)
    b = backlog(a, conn, db_kjb, cfg, tmp, postmaster)
    steadies = [steady(a, conn, cfg, tmp, rate) for rate in a.steady_rates]
    conn.close()
    r = None
    if river:
        r, river_err = river_bench(a, river, river_url, ci_river, postmaster, tmp)

    print()
    print(f"jobs                            {a.jobs}  (one kind, log handler, concurrency {a.concurrency})")
    print(f"kjb backlog, first claim..last  {b['rate']:10.0f} jobs/s  ({b['span']:.1f} s, "
          f"min(attempted_at)..max(finished_at))")
    print(f"kjb backlog, incl. startup      {b['wall_rate']:10.0f} jobs/s  ({b['wall']:.1f} s from process start)")
    print(f"kjb peak RSS                    {b['rss'] / 1024 if b['rss'] else float('nan'):10.1f} MiB")
    print(f"CPU during the backlog          kjb {b['cpu']:.1f} s, PostgreSQL {b['pg_cpu']:.1f} s "
          f"(of {b['wall'] * os.cpu_count():.0f} core-s)")
    for s in steadies:
        print(f"latency insert->start @ {s['rate']:.0f}/s   p50 {s['p50']:.1f} ms  p90 {s['p90']:.1f} ms  "
              f"p99 {s['p99']:.1f} ms  max {s['max']:.1f} ms  ({s['n']} jobs, first {a.skip_seconds:g} s skipped)")
        print(f"latency insert->finished        p50 {s['d50']:.1f} ms  p99 {s['d99']:.1f} ms  max {s['dmax']:.1f} ms")
    if r:
        print(f"{'River ' + river_pin() + ', as it reports':32}{r['rate']:10.0f} jobs/s  ({r['span']}, its client's start.."
              f"last completion event; 2000 workers)")
        print(f"River, first claim..last        {r['sql_rate']:10.0f} jobs/s  ({r['sql_span']:.1f} s, "
              f"min(attempted_at)..max(finalized_at), as kjb's)")
        print(f"River peak RSS                  {r['rss'] / 1024 if r['rss'] else float('nan'):10.1f} MiB")
        print(f"CPU during River's bench        River {r['cpu']:.1f} s, PostgreSQL {r['pg_cpu']:.1f} s "
              f"({r['wall']:.1f} s, its truncate, VACUUM FULL and insert of {a.jobs} jobs included)")
        print(f"ratio kjb/River                 {b['rate'] / r['sql_rate']:10.2f}  (first claim..last finish, "
              f"both in SQL; {b['rate'] / r['rate']:.2f} against River's own figure)")
    for db in (db_kjb, db_river):
        admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
    if river_err and not a.no_river:
        sys.exit(f"River: {river_err}")


if __name__ == "__main__":
    main()
