#!/usr/bin/env python3
"""Scale benchmark: ingest and executor rates with kjb.jobs pre-filled with
millions of finished jobs, against the same phases on an empty table in
the same run, and both while the executors' retention deletes --prune of
them.

1. Empty table: ingest (`kjb run --role consumer`, the run-ingest config;
   once it runs, --events checkout events are produced to its topic) and
   executor (one `kjb run --role executor`, log handler; once it runs,
   --jobs jobs are inserted). Each kjb starts first and the work comes
   once its stats have counted the jobs (/api/stats): at 10M rows the
   first count of finished jobs is a scan of seconds, which a service
   that runs for days has behind it.
2. For each of --sizes: the table grows to that many finished jobs
   (INSERT ... SELECT, 1M rows per statement, then VACUUM ANALYZE), rows shaped
   like ingested ones: kind fulfil_order, a source topic, partition and
   offset, a random unique_key, finished within the last 6 days (inside
   the default 7-day retention, so executors prune none of them) and the
   oldest --prune of them more than 5 days ago. Then the same two phases.
3. Pruning: the two phases again, while the executors' retention prune
   (retention 5d) deletes the oldest --prune rows, KJB_JOBS_BATCH per
   statement: beside the ingest phase an executor of a kind without jobs
   prunes; in the executor phase the executor that works the jobs prunes
   too, between its claims. For each it prints how many rows were pruned
   while the pruning kjb ran, and at what rate.

Every phase reads a topic of its own (its events encoded before the first
phase) and runs jobs of a kind of its own; ingested jobs are marked completed after
their phase, so the table only grows. Rates, in SQL: ingest, the rows of
all batches but the last over the time from the first batch's start to the
last one's (created_at); executor, jobs over min(attempted_at) ..
max(finished_at). Each phase starts right after a CHECKPOINT. Ratios are
against the empty table in this run.

Usage: tests/bench/run-scale [--sizes 10000000,50000000] [--prune N]
"""
import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import executor  # noqa: E402  (tests/bench/executor.py)
import ingest  # noqa: E402  (tests/bench/ingest.py)

ROOT = executor.ROOT
FILL_STEP = 1_000_000


def grow(conn, have, size, prune, final):
    """Adds finished jobs until the table holds size of them, in id order
    oldest first: rows 1..prune finished between 6 and 5.5 days ago, the
    rest up to row `final` between 4.5 and 0.5 days ago."""
    t = time.monotonic()
    for lo in range(have + 1, size + 1, FILL_STEP):
        hi = min(lo + FILL_STEP - 1, size)
        conn.execute(
            "INSERT INTO kjb.jobs (kind, queue, state, args, attempt, scheduled_at, attempted_at,"
            " finished_at, created_at, attempted_by, unique_key, source_topic, source_partition,"
            " source_offset)"
            " SELECT 'fulfil_order', 'fulfilment', 'completed',"
            "   jsonb_build_object('order_id', 10000000 + g, 'email', 'customer' || g || '@example.org',"
            "     'currency', 'EUR', 'total', (g %% 90000) / 100.0, 'channel', 'web'),"
            "   1, f - interval '2 s', f - interval '1 s', f, f - interval '2 s', 'history',"
            "   md5(g::text), 'bench.history', g %% 4, g / 4"
            " FROM generate_series(%s::bigint, %s::bigint) g,"
            " LATERAL (SELECT now() - CASE WHEN g <= %s"
            "   THEN interval '6 days' - (g::float8 / greatest(%s, 1)) * interval '12 hours'"
            "   ELSE interval '4.5 days' - ((g - %s)::float8 / greatest(%s, 1)) * interval '96 hours'"
            "   END AS f) t",
            (lo, hi, prune, prune, prune, final - prune))
    fill_s = time.monotonic() - t
    # What autovacuum would have done over the days these rows took to
    # accumulate: without it, its insert-triggered run would set the
    # visibility map of every new page during the phases, in full-page
    # images, a WAL storm no steady state has.
    t = time.monotonic()
    conn.execute("VACUUM ANALYZE kjb.jobs")
    rows = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('kjb.jobs'))").fetchone()[0]
    print(f"  grew kjb.jobs from {have} to {size} finished jobs in {fill_s:.0f} s, then VACUUM ANALYZE "
          f"in {time.monotonic() - t:.0f} s; table and indexes now {rows}", flush=True)


def settle(conn, label, quiet):
    """Starts a phase the same way each time: right after a checkpoint
    (each page's first change then costs a full-page image in every
    phase alike), with quiet, on a machine whose 1-minute load has fallen
    below 1."""
    conn.execute("CHECKPOINT")
    deadline = time.monotonic() + 120
    while quiet and os.getloadavg()[0] >= 1 and time.monotonic() < deadline:
        time.sleep(2)
    executor.loadavg(label)


def wait_counted(port, proc, log):
    """Until kjb's stats have counted the jobs once (/api/stats says when):
    its first count of finished jobs is a scan of the table, seconds at
    10M rows, that a long-running service has behind it."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"kjb exited early with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=5) as r:
                if json.load(r).get("jobs_counted_at"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"kjb did not count the jobs within 600 s; see {log}")


def wal_mark(conn):
    return conn.execute("SELECT pg_current_wal_lsn(), wal_fpi FROM pg_stat_wal").fetchone()


def wal_since(conn, mark):
    """The WAL the server wrote since mark, and its full-page images (as
    counted by backends that have reported; kjb's have exited by then)."""
    lsn, fpi = mark
    size, now_fpi = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s), wal_fpi"
                                 " FROM pg_stat_wal", (lsn,)).fetchone()
    return f"WAL {float(size) / 2**20:.0f} MiB, {now_fpi - fpi} full-page images"


def expired(conn):
    return conn.execute("SELECT count(*) FROM kjb.jobs WHERE finished_at < now() - interval '5 days'"
                        " AND state = 'completed'").fetchone()[0]


@contextlib.contextmanager
def pruning(a, conn, tmp, out, pruner=False):
    """Appends to out how many expired rows were deleted while it was open,
    and in how many seconds; with pruner, an executor of a kind without
    jobs, its retention 5d, runs meanwhile."""
    before, t0 = expired(conn), time.monotonic()
    ex = None
    if pruner:
        cfg, port = os.path.join(tmp, "pruner.cfg"), executor.free_port()
        executor.write_config(cfg, a.conninfo, 1, 1, "1s", "bench_pruner", listen=f"127.0.0.1:{port}",
                              retention="5d")
        ex = executor.Executor(a.kjb, cfg, os.path.join(tmp, "pruner.log"))
        # As for the phase's own kjb: a pruner that runs for days has its
        # first count of the table behind it.
        wait_counted(port, ex.proc, ex.log.name)
    try:
        yield
    finally:
        if ex:
            ex.stop()
        out.append((before - expired(conn), time.monotonic() - t0))


def ingest_phase(a, conn, topic, values, tmp, label, quiet=True, beside=contextlib.nullcontext):
    cfg = os.path.join(tmp, f"ingest-{label}.cfg")
    ingest.write_config(cfg, a.bootstrap, a.conninfo, topic, a.batch_size)
    port = executor.free_port()
    with open(cfg, "a") as f:
        f.write(f'http = {{ listen = "127.0.0.1:{port}"; }};\n')
    settle(conn, f"ingest ({label})", quiet)
    mark = wal_mark(conn)
    log = open(os.path.join(tmp, f"ingest-{label}.log"), "w")
    t0 = time.monotonic()
    proc = subprocess.Popen([a.kjb, "run", "--role", "consumer", "-c", cfg], stderr=log)
    count, rss = 0, None
    try:
        with beside():
            wait_counted(port, proc, log.name)
            produce_t = time.monotonic()
            ingest.produce(a.bootstrap, topic, values)
            produce_s = time.monotonic() - produce_t
            while time.monotonic() - t0 < a.timeout:
                # The source index answers this, a few ms every 0.25 s.
                count = conn.execute("SELECT count(*) FROM kjb.jobs WHERE source_topic = %s",
                                     (topic,)).fetchone()[0]
                rss = ingest.peak_rss_kib(proc.pid) or rss
                if count >= a.events:
                    break
                if proc.poll() is not None:
                    sys.exit(f"kjb exited early with {proc.returncode}; see {log.name}")
                time.sleep(0.25)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        log.close()
    if count < a.events:
        sys.exit(f"only {count} of {a.events} jobs after {a.timeout} s; see {log.name}")
    wal = wal_since(conn, mark)
    # A batch's rows share their transaction's created_at: the rows of all
    # batches but the last, over the time from the first batch's start to
    # the last one's.
    rows, span = conn.execute(
        "WITH b AS (SELECT created_at FROM kjb.jobs WHERE source_topic = %s)"
        " SELECT count(*) FILTER (WHERE created_at < (SELECT max(created_at) FROM b)),"
        " extract(epoch FROM max(created_at) - min(created_at)) FROM b", (topic,)).fetchone()
    rate = rows / float(span)
    conn.execute("UPDATE kjb.jobs SET state = 'completed', attempt = 1, attempted_at = now(),"
                 " finished_at = now() WHERE source_topic = %s", (topic,))
    print(f"  ingest: {a.events} events, {rate:.0f} events/s from the first batch's start to the last's "
          f"(kjb ready {produce_t - t0:.1f} s after its start; the events produced in {produce_s:.1f} s); "
          f"peak RSS {rss / 1024 if rss else float('nan'):.1f} MiB; {wal}", flush=True)
    return rate


def executor_phase(a, conn, tmp, label, quiet=True, retention="7d", beside=contextlib.nullcontext):
    kind = f"bench_{label.replace(' ', '_')}"
    cfg = os.path.join(tmp, f"executor-{label}.cfg")
    port = executor.free_port()
    executor.write_config(cfg, a.conninfo, a.concurrency, a.claim_batch, "100ms", kind,
                          listen=f"127.0.0.1:{port}", retention=retention)
    settle(conn, f"executor ({label})", quiet)
    mark = wal_mark(conn)
    with beside():
        rss = run_executor(a, conn, cfg, kind, port, tmp, label)
    wal = wal_since(conn, mark)
    done, span = conn.execute(
        "SELECT count(*) FILTER (WHERE state = 'completed' AND attempt = 1),"
        " extract(epoch FROM max(finished_at) - min(attempted_at)) FROM kjb.jobs WHERE kind = %s",
        (kind,)).fetchone()
    if done != a.jobs:
        sys.exit(f"{done} of {a.jobs} {kind} jobs completed in one attempt; see {tmp}/executor-{label}.log")
    rate = a.jobs / float(span)
    print(f"  executor: {a.jobs} jobs in {float(span):.1f} s, {rate:.0f} jobs/s, "
          f"peak RSS {rss / 1024 if rss else float('nan'):.1f} MiB; {wal}", flush=True)
    return rate


def run_executor(a, conn, cfg, kind, port, tmp, label):
    """Starts an executor, inserts --jobs jobs of kind once it has counted
    the table, and stops it when they are done; returns its peak RSS."""
    ex = executor.Executor(a.kjb, cfg, os.path.join(tmp, f"executor-{label}.log"))
    wait_counted(port, ex.proc, ex.log.name)
    conn.execute("INSERT INTO kjb.jobs (kind, args) SELECT %s, jsonb_build_object('i', g)"
                 " FROM generate_series(1, %s) g", (kind, a.jobs))
    try:
        # Each through a partial index (jobs_kind_claim_idx, jobs_running_idx).
        while conn.execute("SELECT EXISTS (SELECT 1 FROM kjb.jobs WHERE kind = %s AND state = 'available'"
                           " AND ordering_key IS NULL)"
                           " OR EXISTS (SELECT 1 FROM kjb.jobs WHERE kind = %s AND state = 'running')",
                           (kind, kind)).fetchone()[0]:
            ex.check()
            if time.monotonic() - ex.t0 > a.timeout:
                sys.exit(f"{kind} jobs unfinished after {a.timeout} s; see {ex.log.name}")
            time.sleep(0.25)
        return executor.proc_status_kib(ex.proc.pid, "VmHWM")
    finally:
        ex.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")],
                    default=[10_000_000, 50_000_000], help="finished jobs in the table, comma-separated")
    ap.add_argument("--prune", type=int, default=10_000_000, help="finished jobs pruned in the last phase")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--claim-batch", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--kjb", default=os.path.join(ROOT, "build", "release", "kjb"))
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--pg-conninfo", required=True, help="conninfo of the server (any database)")
    a = ap.parse_args()
    if sorted(a.sizes) != a.sizes or a.prune > a.sizes[0]:
        sys.exit("--sizes must grow, and --prune must not exceed the first size")

    admin = psycopg.connect(a.pg_conninfo, autocommit=True)
    version = admin.execute("SHOW server_version").fetchone()[0]
    settings = ", ".join(f"{k} {admin.execute(f'SHOW {k}').fetchone()[0]}"
                         for k in ("fsync", "shared_buffers", "max_wal_size"))
    suffix = uuid.uuid4().hex[:6]
    db = f"bench_scale_{suffix}"
    admin.execute(f"CREATE DATABASE {db}")
    base = psycopg.conninfo.conninfo_to_dict(a.pg_conninfo)
    a.conninfo = psycopg.conninfo.make_conninfo(**{**base, "dbname": db})
    tmp = tempfile.mkdtemp(prefix="kjb-bench-")
    cfg = os.path.join(tmp, "migrate.cfg")
    executor.write_config(cfg, a.conninfo, 1, 1, "1s")
    subprocess.run([a.kjb, "migrate", "-c", cfg], check=True, capture_output=True)
    conn = psycopg.connect(a.conninfo, autocommit=True)
    print(f"PostgreSQL {version} ({settings}); phases one after another, never overlapping, "
          f"except the pruning phases with the prune", flush=True)

    labels = ["empty"] + [f"{n / 1e6:g}M" for n in a.sizes] + ["pruning"]
    topics, values = {}, {}
    for seed, label in enumerate(labels):
        topics[label] = f"bench.scale.{suffix}.{label}"
        ingest.create_topic(a.bootstrap, topics[label], a.partitions)
        # Seeds of their own: events of one seed share their event_id, the
        # jobs' unique_key.
        values[label] = ingest.encode_events(a.events, seed)
    print(f"encoded {len(labels)} x {a.events} events, {sum(map(len, values['empty'])) / a.events:.0f} bytes each",
          flush=True)

    results = {}
    have = 0
    for label, size in zip(labels[:-1], [0] + a.sizes):
        print(f"table with {size} finished jobs", flush=True)
        if size > have:
            grow(conn, have, size, a.prune, a.sizes[-1])
            have = size
        results[label] = (ingest_phase(a, conn, topics[label], values[label], tmp, label),
                          executor_phase(a, conn, tmp, label))

    print(f"pruning {a.prune} jobs beside the phases (the executors' retention, 5d)", flush=True)
    pruned = []
    results["pruning"] = (
        ingest_phase(a, conn, topics["pruning"], values["pruning"], tmp, "pruning",
                     beside=lambda: pruning(a, conn, tmp, pruned, pruner=True)),
        executor_phase(a, conn, tmp, "pruning", retention="5d",
                       beside=lambda: pruning(a, conn, tmp, pruned)))
    left = expired(conn)

    print()
    e_i, e_e = results["empty"]
    print(f"{'finished jobs in the table':28} {'ingest events/s':>16} {'ratio':>6} "
          f"{'executor jobs/s':>16} {'ratio':>6}")
    for label in labels:
        i, e = results[label]
        name = {"empty": "0", "pruning": f"{have} while pruning"}.get(label, label)
        print(f"{name:28} {i:16.0f} {i / e_i:6.2f} {e:16.0f} {e / e_e:6.2f}")
    for name, (rows, seconds) in zip(("ingest, by an idle executor", "executor, by itself"), pruned):
        print(f"retention prune beside the {name}: {rows} rows in {seconds:.1f} s ({rows / seconds:.0f} rows/s)")
    print(f"expired rows left after both: {left} of {a.prune}")
    conn.close()
    admin.execute(f"DROP DATABASE {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
