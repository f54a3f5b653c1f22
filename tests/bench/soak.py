#!/usr/bin/env python3
"""Soak: one `kjb run` (consumer and executor) under a steady stream of
events for a long time, sampling its memory as it goes.

Every record becomes two jobs (one `log`, one `http` to a small sink in
this process); one record in fifty is malformed and dead-lettered. Every
`--sample` seconds it records kjb's RSS, the records produced, the jobs
finished and the dead letters. At the end it prints RSS over time,
throughput, and the latency percentiles of record timestamp -> job
inserted and -> job finished, measured in SQL over the whole run after
warm-up.

`--max-rss-growth-mib N` makes it a check: exit 1 when RSS after the
warm-up grows by more than N MiB (the CI runs two minutes of this).

Usage: tests/bench/run-soak [--seconds 3600] [--rate 100] [--max-rss-growth-mib N]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import avrokit  # noqa: E402
from test_http import free_port  # noqa: E402
from test_ingest import order  # noqa: E402

TOPIC = "soak"
PARTITIONS = 4
BAD_EVERY = 50


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_sink():
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_config(path, sink_port, http_port):
    with open(path, "w") as f:
        f.write(f"""
kafka = {{ brokers = "set-by-env"; group = "soak"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{http_port}"; }};
log = {{ level = "warn"; }};
ingest = {{ batch_size = 500; batch_timeout = "100ms"; }};
executor = {{ poll_interval = "1s"; retention = "1h"; prune_interval = "30s"; }};
schemas = {{ ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
topics = (
  {{ topic = "{TOPIC}"; schema = "order_created.avsc";
     jobs = ( {{ kind = "record"; args = [ "order_id" ]; }}, {{ kind = "notify"; }} ); }}
);
handlers = (
  {{ kind = "record"; type = "log"; concurrency = 8; }},
  {{ kind = "notify"; type = "http"; url = "http://127.0.0.1:{sink_port}/hook"; timeout = "5s";
     concurrency = 16; }}
);
""")


def percentiles(conn, since, column):
    row = conn.execute(
        f"SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY ms), max(ms), count(*) FROM ("
        f" SELECT extract(epoch FROM {column} - to_timestamp((meta->>'timestamp')::bigint / 1000.0)) * 1000 AS ms"
        f" FROM kjb.jobs WHERE {column} IS NOT NULL AND created_at >= %s) t", (since,)).fetchone()
    p, mx, n = row
    return {"p50_ms": round(float(p[0]), 1), "p90_ms": round(float(p[1]), 1),
            "p99_ms": round(float(p[2]), 1), "max_ms": round(float(mx), 1), "jobs": n} if n else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--pg-conninfo", required=True)
    ap.add_argument("--kjb", default=os.path.join(ROOT, "build", "release", "kjb"))
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--rate", type=float, default=100, help="records per second (two jobs each)")
    ap.add_argument("--sample", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default: 25%% of the run, at most 300)")
    ap.add_argument("--max-rss-growth-mib", type=float, default=None)
    a = ap.parse_args()
    warmup = a.warmup if a.warmup is not None else min(a.seconds / 4, 300)

    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        f.result(60)
    sink = start_sink()
    http_port = free_port()
    work = tempfile.mkdtemp(prefix="kjb-soak.")
    cfg = os.path.join(work, "kjb.cfg")
    write_config(cfg, sink.server_address[1], http_port)
    env = {**os.environ, "KJB_KAFKA_BROKERS": a.bootstrap, "KJB_POSTGRES_CONNINFO": a.pg_conninfo}
    subprocess.run([a.kjb, "migrate", "-c", cfg], env=env, check=True, cwd=ROOT)
    log = open(os.path.join(work, "kjb.log"), "w")
    kjb = subprocess.Popen([a.kjb, "run", "-c", cfg], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    good_value = avrokit.confluent(schema, order(1), 1)
    producer = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 20, "enable.idempotence": True})
    samples, produced, bad = [], 0, 0
    t0 = time.monotonic()
    next_sample = t0
    try:
        with psycopg.connect(a.pg_conninfo, autocommit=True) as conn:
            warm_at = None
            while True:
                now = time.monotonic()
                if now - t0 >= a.seconds:
                    break
                due = int((now - t0) * a.rate)
                while produced < due:
                    i = produced
                    if i % BAD_EVERY == BAD_EVERY - 1:
                        value, bad = b"\x07" + good_value[1:], bad + 1
                    else:
                        value = avrokit.confluent(schema, order(i), 1)
                    producer.produce(TOPIC, value, key=str(i).encode())
                    produced += 1
                producer.poll(0)
                if now >= next_sample:
                    if kjb.poll() is not None:
                        raise SystemExit(f"soak: kjb exited {kjb.returncode}; log {log.name}")
                    finished = conn.execute("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'").fetchone()[0]
                    samples.append({"t": round(now - t0, 1), "rss_mib": round(rss_kib(kjb.pid) / 1024, 1),
                                    "produced": produced, "dead_lettered": bad, "jobs_completed": finished})
                    if warm_at is None and now - t0 >= warmup:
                        warm_at = conn.execute("SELECT now()").fetchone()[0]
                    next_sample += a.sample
                time.sleep(0.01)
            producer.flush(60)
            end = time.monotonic()
            ingest = percentiles(conn, warm_at, "created_at") if warm_at else None
            finish = percentiles(conn, warm_at, "finished_at") if warm_at else None
            states = dict(conn.execute("SELECT state, count(*) FROM kjb.jobs GROUP BY 1").fetchall())
    finally:
        kjb.terminate()
        rc = kjb.wait(timeout=60)
        sink.shutdown()

    warm = [s for s in samples if s["t"] >= warmup]
    first, last = samples[0], samples[-1]
    print(f"soak: {a.seconds:.0f} s at {a.rate:.0f} records/s ({produced} records, {bad} malformed), "
          f"kjb exit {rc}, log {log.name}")
    print("  t(s)   RSS(MiB)  produced  jobs completed")
    step = max(1, len(samples) // 24)
    for s in samples[::step] + ([last] if (len(samples) - 1) % step else []):
        print(f"  {s['t']:6.0f}  {s['rss_mib']:8.1f}  {s['produced']:8d}  {s['jobs_completed']:8d}")
    span = last["t"] - first["t"] or 1
    print(f"  throughput: {(last['produced'] - first['produced']) / span:.1f} records/s in, "
          f"{(last['jobs_completed'] - first['jobs_completed']) / span:.1f} jobs/s completed")
    print(f"  latency record -> job inserted (after warm-up): {json.dumps(ingest)}")
    print(f"  latency record -> job finished (after warm-up): {json.dumps(finish)}")
    print(f"  jobs by state at the end: {json.dumps(states)}")
    growth = None
    if warm:
        base = warm[0]["rss_mib"]
        growth = max(s["rss_mib"] for s in warm) - base
        print(f"  RSS after warm-up ({warmup:.0f} s): {base:.1f} MiB, peak {base + growth:.1f} MiB, "
              f"growth {growth:.1f} MiB")
    if rc != 0:
        print(f"soak: FAIL: kjb exited {rc} on SIGTERM")
        return 1
    if a.max_rss_growth_mib is not None:
        if growth is None:
            print("soak: FAIL: the run ended before the warm-up did")
            return 1
        if growth > a.max_rss_growth_mib:
            print(f"soak: FAIL: RSS grew {growth:.1f} MiB after warm-up, bound {a.max_rss_growth_mib:.1f} MiB")
            return 1
        print(f"soak: ok: RSS growth {growth:.1f} MiB within {a.max_rss_growth_mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
