#!/usr/bin/env python3
"""Ordered-execution benchmark: what ordering_key costs executors.

For each scenario, N jobs of one kind are inserted (INSERT ... SELECT
generate_series, source coordinates partition 0, offset = the row number),
then --executors release `kjb run --role executor` processes (log handler)
burn them down together:

  unordered   no ordering_key: the claim as it always was
  10k keys    ordering_key over 10,000 keys, interleaved (row g has key g % K)
  10 keys     the same over 10 keys: at most 10 jobs can run at once

Printed per scenario: jobs/s (N over min(attempted_at) .. max(finished_at),
in SQL), the wall time from the executors' start, the peak RSS of the
largest executor (VmHWM) and their CPU, PostgreSQL's CPU, and for keyed
scenarios a check from the rows that no job of a key was claimed
(attempted_at, the claim's own clock) before the previous job of its key in
source order had finished (finished_at, the start of the statement that
recorded it, which committed before the claim could see it).

Usage: tests/bench/run-ordering [--jobs N] [--executors E] [--concurrency C]
"""
import argparse
import atexit
import os
import signal
import subprocess
import sys
import tempfile
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KIND = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_cpu_s(postmaster):
    total = proc_cpu_s(postmaster)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        total += proc_cpu_s(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return total


def write_config(path, conninfo, concurrency, claim_batch):
    with open(path, "w") as f:
        f.write(f"""
kafka = {{ brokers = "127.0.0.1:1"; group = "bench-ordering"; }};
postgres = {{ conninfo = "{conninfo}"; }};
log = {{ level = "warn"; }};
http = {{ listen = "127.0.0.1:0"; }};
executor = {{ claim_batch = {claim_batch}; poll_interval = "200ms"; }};
topics = ( {{ topic = "unused"; schema = "unused.avsc"; jobs = ( {{ kind = "unused"; }} ); }} );
handlers = ( {{ kind = "{KIND}"; type = "log"; concurrency = {concurrency}; }} );
""")


class Executor:
    def __init__(self, kjb, cfg, logpath):
        self.log = open(logpath, "w")
        self.proc = subprocess.Popen([kjb, "run", "--role", "executor", "-c", cfg],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)

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


def scenario(a, conn, cfg, tmp, postmaster, name, keys):
    # The phase before loads the machine too: let that pass first.
    waited = time.monotonic()
    while os.getloadavg()[0] >= 2 and time.monotonic() - waited < 240:
        time.sleep(5)
    one, five, _ = os.getloadavg()
    print(f"[{time.strftime('%H:%M:%S')}] {name}: load average {one:.2f} {five:.2f}", flush=True)
    conn.execute("TRUNCATE kjb.jobs")
    key = "NULL" if keys is None else f"'k' || (g %% {keys})"
    conn.execute(f"INSERT INTO kjb.jobs (kind, args, ordering_key, source_topic, source_partition,"
                 f" source_offset) SELECT %s, jsonb_build_object('i', g), {key}, 't', 0, g"
                 f" FROM generate_series(1, %s) g", (KIND, a.jobs))
    conn.execute("VACUUM ANALYZE kjb.jobs")
    pg0 = server_cpu_s(postmaster)
    t0 = time.monotonic()
    exs = [Executor(a.kjb, cfg, os.path.join(tmp, f"kjb-{name.replace(' ', '-')}-{i}.log"))
           for i in range(a.executors)]
    rss, cpu = {}, {}
    deadline = t0 + a.timeout
    while True:
        for ex in exs:
            ex.check()
            rss[ex.proc.pid] = proc_status_kib(ex.proc.pid, "VmHWM") or rss.get(ex.proc.pid, 0)
            cpu[ex.proc.pid] = proc_cpu_s(ex.proc.pid)
        left = conn.execute("SELECT count(*) FROM kjb.jobs WHERE state <> 'completed'").fetchone()[0]
        if left == 0:
            break
        if time.monotonic() > deadline:
            sys.exit(f"{name}: {left} jobs left after {a.timeout} s")
        time.sleep(0.2)
    wall = time.monotonic() - t0
    pg_cpu = server_cpu_s(postmaster) - pg0
    for ex in exs:
        ex.stop()
    rate = conn.execute("SELECT count(*) / extract(epoch FROM max(finished_at) - min(attempted_at))"
                        " FROM kjb.jobs").fetchone()[0]
    bad = None
    if keys is not None:
        bad = conn.execute(
            "SELECT count(*) FROM (SELECT attempted_at < lag(finished_at) OVER w AS early"
            " FROM kjb.jobs WINDOW w AS (PARTITION BY ordering_key ORDER BY source_partition,"
            " source_offset, id)) x WHERE early").fetchone()[0]
    print(f"  {name:<10} {float(rate):>9.0f} jobs/s  wall {wall:6.1f} s  peak RSS {max(rss.values()) / 1024:6.1f} MiB"
          f"  kjb CPU {sum(cpu.values()):6.1f} s  PostgreSQL CPU {pg_cpu:6.1f} s"
          + ("" if bad is None else f"  out of order: {bad}"), flush=True)
    if bad:
        sys.exit(f"{name}: {bad} jobs started before the previous job of their key finished")
    return float(rate)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-conninfo", required=True)
    p.add_argument("--kjb", default=os.path.join(ROOT, "build", "release", "kjb"))
    p.add_argument("--jobs", type=int, default=200000)
    p.add_argument("--executors", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16, help="worker threads per executor")
    p.add_argument("--claim-batch", type=int, default=100)
    p.add_argument("--timeout", type=float, default=3600)
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="kjb-bench-ordering-")
    cfg = os.path.join(tmp, "kjb.cfg")
    write_config(cfg, a.pg_conninfo, a.concurrency, a.claim_batch)
    res = subprocess.run([a.kjb, "migrate", "-c", cfg], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"kjb migrate failed: {res.stderr}")
    with psycopg.connect(a.pg_conninfo, autocommit=True) as conn:
        postmaster = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
                                  ).fetchone()[0]
        with open(f"/proc/{postmaster}/stat") as f:
            postmaster = int(f.read().rsplit(")", 1)[1].split()[1])
        print(f"{a.jobs} jobs, {a.executors} executors x {a.concurrency} workers, claim_batch {a.claim_batch}"
              f" ({os.cpu_count()} CPUs); logs in {tmp}", flush=True)
        rates = {}
        for name, keys in (("unordered", None), ("10k keys", 10000), ("10 keys", 10)):
            rates[name] = scenario(a, conn, cfg, tmp, postmaster, name, keys)
        base = rates["unordered"]
        print("relative to unordered: " + ", ".join(f"{n} {r / base:.2f}x" for n, r in rates.items()))


if __name__ == "__main__":
    main()
