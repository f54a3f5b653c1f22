#!/usr/bin/env python3
"""Ingest benchmark: a pre-filled topic of realistic Avro events -> job rows.

Beside kjb it runs two baselines on the same PostgreSQL server in the same
run, each into an identically indexed jobs table (a database of its own
migrated by `kjb migrate`):
- COPY of the very rows kjb produced;
- a peer: Kafka Connect with Debezium's JDBC sink, reading the same rows
  from a topic of their own (connect.py says what differs; --no-connect
  skips it).
It prints the rates and ratios, and peak RSS. Kafka, PostgreSQL and kjb
share the machine, so the ratios are the figures to compare, not the
absolute rates.

Usage: tests/bench/run-ingest [--events N] [--partitions P] [--no-connect]
"""
import argparse
import collections
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import fastavro
import psycopg

import connect
from executor import loadavg, proc_cpu_s
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_DIR = os.path.join(ROOT, "tests", "bench", "schemas")
JOB_COLUMNS = ("kind, queue, priority, max_attempts, args, meta, unique_key, "
               "source_topic, source_partition, source_offset")


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout.strip()


def make_event(i, rnd):
    base_ms = 1_763_000_000_000 + i * 37
    n_items = rnd.randint(1, 5)
    items = [{
        "sku": f"SKU-{rnd.randint(10000, 99999)}",
        "title": rnd.choice(["Espresso beans 1kg", "Ceramic mug", "Grinder", "Filter papers", "Kettle"]),
        "quantity": rnd.randint(1, 4),
        "unit_price": round(rnd.uniform(2, 200), 2),
        "weight_grams": rnd.choice([None, rnd.randint(50, 3000)]),
    } for _ in range(n_items)]
    addr = {"line1": f"{rnd.randint(1, 200)} Market Street", "line2": rnd.choice([None, "Flat 2"]),
            "city": rnd.choice(["Berlin", "Lyon", "Leeds", "Porto"]), "postcode": f"{rnd.randint(10000, 99999)}",
            "country": rnd.choice([b"DE", b"FR", b"GB", b"PT"])}
    cents = rnd.randint(500, 90000)
    from decimal import Decimal
    return {
        "event_id": str(uuid.UUID(int=rnd.getrandbits(128))),
        "order_id": 10_000_000 + i,
        "occurred_at": base_ms,
        "received_at": base_ms * 1000 + rnd.randint(0, 999_999),
        "business_date": 20_400 + i % 30,
        "customer": {"id": rnd.randint(1, 10**7), "email": f"customer{i}@example.org",
                     "name": rnd.choice(["Ada Lovelace", "Grace Hopper", "Émile Zola", "Jürgen Köhler"]),
                     "tier": rnd.choice(["BRONZE", "SILVER", "GOLD", "PLATINUM"]),
                     "signup_date": 18_000 + rnd.randint(0, 2000), "marketing_opt_in": rnd.random() < 0.4},
        "shipping": addr,
        "billing": rnd.choice([None, addr]),
        "currency": rnd.choice(["EUR", "USD", "GBP"]),
        "subtotal": Decimal(cents) / 100,
        "tax": Decimal(cents // 5) / 100,
        "shipping_cost": Decimal(495) / 100,
        "total": Decimal(cents + cents // 5 + 495) / 100,
        "discount_rate": rnd.choice([0.0, 0.05, 0.1]),
        "items": items,
        "payment": {"method": rnd.choice(["CARD", "PAYPAL", "BANK_TRANSFER", "GIFT_CARD"]),
                    "authorized_at": base_ms + 900, "reference": f"pay_{rnd.getrandbits(48):012x}",
                    "three_ds": rnd.random() < 0.7},
        "channel": rnd.choice(["web", "ios", "android"]),
        "locale": rnd.choice(["de-DE", "fr-FR", "en-GB"]),
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        "ip": f"203.0.113.{rnd.randint(1, 254)}",
        "session_seconds": rnd.randint(10, 4000),
        "coupon": rnd.choice([None, "WELCOME10", "SPRING"]),
        "gift": rnd.random() < 0.1,
        "delivery_window": rnd.randint(8, 20) * 3_600_000,
        "attributes": {"ab_test": rnd.choice(["a", "b"]), "referrer": "newsletter"},
        "risk_score": rnd.random(),
        "checksum": rnd.getrandbits(64).to_bytes(8, "big"),
    }


def encode_events(n, seed=42):
    """n checkout events in Confluent's framing (schema id 1); the same
    seed gives the same events."""
    schema = fastavro.parse_schema(json.load(open(os.path.join(SCHEMA_DIR, "checkout.avsc"))))
    rnd = random.Random(seed)
    header = b"\x00" + (1).to_bytes(4, "big")
    out = []
    for i in range(n):
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, schema, make_event(i, rnd))
        out.append(buf.getvalue())
    return out


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def produce(bootstrap, topic, values):
    """Produces values (keyed by their index) and waits for all."""
    produce_to(bootstrap, topic, ((v, -1) for v in values))


def produce_to(bootstrap, topic, records):
    """Produces (value, partition) pairs, keyed by their index, and waits
    for all; partition -1 leaves it to the key."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 200000, "compression.type": "lz4"})
    for i, (v, partition) in enumerate(records):
        while True:
            try:
                p.produce(topic, v, key=str(i).encode(), partition=partition)
                break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)


def fill_topic(bootstrap, topic, partitions, n, seed=42):
    """Creates topic and fills it with n events; returns the seconds that
    took and the events' mean size in bytes."""
    create_topic(bootstrap, topic, partitions)
    t0 = time.monotonic()
    values = encode_events(n, seed)
    produce(bootstrap, topic, values)
    return time.monotonic() - t0, sum(map(len, values)) / n


# Compares two jobs tables but for their source_topic, in any order.
ROWS_DIGEST = ("SELECT count(*), sum(hashtextextended(concat_ws('|', kind, queue, priority, max_attempts, "
               "args, meta, unique_key, source_partition, source_offset), 0)::numeric) FROM kjb.jobs")


Timing = collections.namedtuple("Timing", "total_s steady_s steady_rate rss_kib cpu_s")


def time_rows(conn, proc, t0, want, name, see, timeout=600):
    """Polls kjb.jobs until it holds want rows, sampling proc's peak RSS
    and CPU meanwhile; exits, naming name and see(), when proc ends first
    or the rows do not come within timeout. Returns a Timing: seconds from
    t0 (proc's start) to the last row, from the first row to the last,
    the rows/s between those, peak RSS in KiB and CPU seconds."""
    first = None
    count = 0
    rss = cpu = None
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        count = conn.execute("SELECT count(*) FROM kjb.jobs").fetchone()[0]
        now = time.monotonic()
        if count and first is None:
            first = (now, count)
        rss = peak_rss_kib(proc.pid) or rss
        cpu = proc_cpu_s(proc.pid) or cpu
        if count >= want:
            steady_s = now - first[0]
            steady_rate = (want - first[1]) / steady_s if steady_s > 0 else float("nan")
            return Timing(now - t0, steady_s, steady_rate, rss, cpu)
        if proc.poll() is not None:
            sys.exit(f"{name} exited early with {proc.returncode}; see {see()}")
        time.sleep(0.05)
    sys.exit(f"only {count} of {want} rows from {name} after {timeout} s; see {see()}")


def write_config(path, bootstrap, conninfo, topic, batch_size):
    with open(path, "w") as f:
        f.write(f"""
kafka = {{ brokers = "{bootstrap}"; group = "bench-{uuid.uuid4().hex[:8]}"; }};
postgres = {{ conninfo = "{conninfo}"; }};
schemas = {{ dir = "{SCHEMA_DIR}"; ids = ( {{ id = 1; file = "checkout.avsc"; }} ); }};
ingest = {{ batch_size = {batch_size}; batch_timeout = "200ms"; }};
log = {{ level = "warn"; }};
topics = (
  {{ topic = "{topic}"; format = "confluent"; schema = "checkout.avsc";
     jobs = ( {{ kind = "fulfil_order"; queue = "fulfilment"; unique_key = "${{event_id}}"; }} ); }}
);
""")


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def wait_peak_rss(proc, interval=0.05):
    """Waits for proc to exit, reading its peak RSS (VmHWM) meanwhile.
    Returns (exit code, peak RSS in KiB or None). Not getrusage's
    ru_maxrss: Linux carries the RSS of the forked Python parent over the
    exec into it, so a child of a big benchmark process would report the
    benchmark's size."""
    rss = None
    while not os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
        rss = peak_rss_kib(proc.pid) or rss
        time.sleep(interval)
    return proc.wait(), rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--kjb", default=os.path.join(ROOT, "build", "release", "kjb"))
    ap.add_argument("--no-connect", dest="connect", action="store_false",
                    help="skip the Kafka Connect peer")
    ap.add_argument("--connect-tasks", type=int, help="the sink's tasks.max (default: --partitions)")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--pg-conninfo", required=True, help="conninfo of the server (any database)")
    a = ap.parse_args()

    admin = psycopg.connect(a.pg_conninfo, autocommit=True)
    suffix = uuid.uuid4().hex[:6]
    dbs = {name: f"bench_{name}_{suffix}" for name in ("kjb", "copy", "connect")}
    for db in dbs.values():
        admin.execute(f"CREATE DATABASE {db}")
    base = psycopg.conninfo.conninfo_to_dict(a.pg_conninfo)
    ci_kjb, ci_copy, ci_connect = (psycopg.conninfo.make_conninfo(**{**base, "dbname": db})
                                   for db in dbs.values())
    topic = f"bench.checkout.{suffix}"

    print(f"filling {topic}: {a.events} events, {a.partitions} partitions ...", flush=True)
    fill_s, avg_bytes = fill_topic(a.bootstrap, topic, a.partitions, a.events)
    print(f"  produced in {fill_s:.1f} s, {avg_bytes:.0f} bytes/event on average", flush=True)

    tmp = tempfile.mkdtemp(prefix="kjb-bench-")
    cfg = os.path.join(tmp, "bench.cfg")
    write_config(cfg, a.bootstrap, ci_kjb, topic, a.batch_size)
    for ci in (ci_kjb, ci_copy, ci_connect):
        subprocess.run([a.kjb, "migrate", "-c", cfg], check=True, capture_output=True,
                       env={**os.environ, "KJB_POSTGRES_CONNINFO": ci})

    # kjb: from process start until every event is a job row.
    loadavg("kjb")
    log = open(os.path.join(tmp, "kjb.log"), "w")
    conn = psycopg.connect(ci_kjb, autocommit=True)
    t0 = time.monotonic()
    proc = subprocess.Popen([a.kjb, "run", "--role", "consumer", "-c", cfg], stderr=log)
    try:
        kjb = time_rows(conn, proc, t0, a.events, "kjb", lambda: log.name)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    total_s, steady_s, kjb_steady, rss, cpu = kjb
    kjb_rate = a.events / total_s

    # Baseline: COPY the same rows into the identically indexed table.
    buf = io.BytesIO()
    with conn.cursor().copy(f"COPY (SELECT {JOB_COLUMNS} FROM kjb.jobs) TO STDOUT") as cp:
        for chunk in cp:
            buf.write(chunk)
    data = buf.getvalue()
    dst = psycopg.connect(ci_copy)
    loadavg("COPY")
    t1 = time.monotonic()
    with dst.cursor() as cur:
        with cur.copy(f"COPY kjb.jobs ({JOB_COLUMNS}) FROM STDIN") as cp:
            step = 1 << 20
            for i in range(0, len(data), step):
                cp.write(data[i:i + step])
    dst.commit()
    copy_s = time.monotonic() - t1
    copy_rate = a.events / copy_s
    copied = dst.execute("SELECT count(*) FROM kjb.jobs").fetchone()[0]
    assert copied == a.events, (copied, a.events)
    if a.connect:
        peer = run_connect(a, conn, ci_connect, f"{topic}.connect", tmp)

    print()
    print(f"events                      {a.events}  ({a.partitions} partitions, batch {a.batch_size})")
    print(f"kjb ingest, incl. startup   {kjb_rate:10.0f} events/s  ({total_s:.1f} s)")
    print(f"kjb ingest, steady state    {kjb_steady:10.0f} events/s  ({steady_s:.1f} s)")
    print(f"baseline COPY, same rows    {copy_rate:10.0f} rows/s    ({copy_s:.1f} s, {len(data) / 1e6:.0f} MB)")
    print(f"ratio kjb/COPY              {kjb_rate / copy_rate:10.2f}  (steady state {kjb_steady / copy_rate:.2f})")
    if a.connect:
        total_c, steady_c, steady_rate_c, rss_c, cpu_c = peer
        print(f"Kafka Connect, incl. start  {a.events / total_c:10.0f} rows/s    ({total_c:.1f} s)")
        print(f"Kafka Connect, steady state {steady_rate_c:10.0f} rows/s    ({steady_c:.1f} s)")
        print(f"ratio kjb/Kafka Connect     {total_c / total_s:10.2f}  (steady state "
              f"{kjb_steady / steady_rate_c:.2f})")
    print(f"kjb peak RSS                {rss / 1024 if rss else float('nan'):10.1f} MiB")
    print(f"kjb CPU                     {cpu:10.1f} s  (user + system, from its start)")
    if a.connect:
        print(f"Kafka Connect peak RSS      {rss_c / 1024 if rss_c else float('nan'):10.1f} MiB  (JVM, -Xmx512m)")
        print(f"Kafka Connect CPU           {cpu_c:10.1f} s  (user + system, from its start)")
    conn.close()
    dst.close()
    for db in dbs.values():
        admin.execute(f"DROP DATABASE {db}")


def run_connect(a, conn, conninfo, topic, tmp):
    """Sinks kjb's rows, from a topic of their own, with Kafka Connect into
    the database at conninfo; returns its Timing."""
    create_topic(a.bootstrap, topic, a.partitions)
    with conn.transaction():
        rows = conn.cursor("connect_rows").execute(
            "SELECT source_partition, unique_key, args::text, meta::text FROM kjb.jobs "
            "ORDER BY source_partition, source_offset")
        produce_to(a.bootstrap, topic,
                   ((connect.envelope(key, args, meta), partition) for partition, key, args, meta in rows))
    work = os.path.join(tmp, "connect")
    os.makedirs(work)
    dst = psycopg.connect(conninfo, autocommit=True)
    classpath = connect.classpath()  # fetched before the clock starts
    loadavg("Kafka Connect")
    t0 = time.monotonic()
    proc = connect.start(classpath, work, a.bootstrap, conninfo, topic,
                         a.connect_tasks or a.partitions, a.batch_size)
    try:
        timing = time_rows(dst, proc, t0, a.events, "Kafka Connect",
                           lambda: f"{work}/connect.log:\n{connect.log_tail(work)}")
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    mine, theirs = (c.execute(ROWS_DIGEST).fetchone() for c in (conn, dst))
    dst.close()
    if mine != theirs:
        sys.exit(f"Kafka Connect's rows differ from kjb's: (count, digest) {theirs} against {mine}")
    return timing


if __name__ == "__main__":
    main()
