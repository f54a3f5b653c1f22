#!/usr/bin/env python3
"""Dead-letter and replay throughput.

Fills a topic with N records written under a schema id the configuration
does not know (each is a dead letter), times kjb dead-lettering all of them
(bad records/s, until the DLQ holds N records and the group committed the
end), then adds the id to the configuration and times `kjb replay` turning
the N dead letters into jobs (records/s). A second replay of the same
records measures the already-present path. Last, the fixed
configuration ingests the very same records from the topic (fresh group
and database) with `kjb run --role consumer`, the rate replay is held to.
Prints the figures and kjb's peak RSS in each phase.

Baseline, in the same run on the same broker: a minimal forwarder written
with confluent-kafka (librdkafka) that reads the same N records in a fresh
group, produces each to another topic with its key, value and headers plus
three error headers (idempotent, acks=all) and commits at the end. It
decodes nothing, so kjb/forwarder is the price of kjb's decoding, full
Connect headers and commit-after-ack.

Usage: tests/bench/run-dlq [--records N]
"""
import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import fastavro
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest import ROOT, SCHEMA_DIR, make_event, peak_rss_kib, wait_peak_rss  # noqa: E402


def end_offset(bootstrap, topic):
    """Records in topic, or None when the broker did not answer in time."""
    from confluent_kafka import KafkaException
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        if md.error:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)
    except KafkaException:
        return None
    finally:
        c.close()


def forward_baseline(bootstrap, topic, out_topic, partitions, n, admin):
    """Seconds the minimal forwarder takes to copy n records of topic into
    out_topic with three added headers, acknowledged and committed."""
    admin.create_topics([NewTopic(out_topic, partitions, 1)])[out_topic].result(30)
    t = time.monotonic()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"baseline-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "queue.buffering.max.messages": 200000})
    c.subscribe([topic])
    done, failed = 0, []

    def acked(err, _msg):
        if err:
            failed.append(err)

    while done < n:
        for m in c.consume(1000, 1.0):
            if m.error():
                continue
            headers = (m.headers() or []) + [
                ("__connect.errors.topic", m.topic().encode()),
                ("__connect.errors.offset", str(m.offset()).encode()),
                ("__connect.errors.exception.class.name", b"baseline")]
            while True:
                try:
                    p.produce(out_topic, m.value(), m.key(), headers=headers, on_delivery=acked)
                    break
                except BufferError:
                    p.poll(0.05)
            done += 1
        p.poll(0)
    p.flush(120)
    c.commit(asynchronous=False)
    c.close()
    if failed:
        sys.exit(f"baseline forwarder: {len(failed)} produce errors, first {failed[0]}")
    return time.monotonic() - t


BAD_SCHEMA_ID = 9  # unknown to broken_config, known to fixed_config


def fill_bad(bootstrap, topic, partitions, n, admin):
    """Creates topic and writes n checkout events framed with BAD_SCHEMA_ID
    (each a dead letter for a configuration without it). Returns the size
    of one record's value in bytes."""
    import random
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    schema = fastavro.parse_schema(json.load(open(os.path.join(SCHEMA_DIR, "checkout.avsc"))))
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "queue.buffering.max.messages": 200000})
    rnd = random.Random(1)
    header = b"\x00" + BAD_SCHEMA_ID.to_bytes(4, "big")
    size = 0
    for i in range(n):
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, schema, make_event(i, rnd))
        size = len(buf.getvalue())
        while True:
            try:
                p.produce(topic, buf.getvalue(), key=str(i).encode())
                break
            except BufferError:
                p.poll(0.1)
    p.flush(120)
    return size


def write_configs(directory, bootstrap, conninfo, group, topic, dlq=None):
    """Writes broken.cfg (schema id 1 only: fill_bad's records are dead
    letters) and fixed.cfg (ids 1 and BAD_SCHEMA_ID: they become jobs) into
    directory for one mapping of topic (DLQ dlq, default <topic>.dlq), and
    returns their paths. Only keys every kjb since the DLQ existed reads,
    so that an older build can run them too."""
    dlq_key = f' dlq = "{dlq}";' if dlq else ""
    common = f"""
kafka = {{ brokers = "{bootstrap}"; group = "{group}"; }};
postgres = {{ conninfo = "{conninfo}"; }};
ingest = {{ batch_size = 5000; batch_timeout = "200ms"; }};
log = {{ level = "warn"; }};
topics = ( {{ topic = "{topic}"; schema = "checkout.avsc";{dlq_key}
    jobs = ( {{ kind = "fulfil_order"; unique_key = "${{event_id}}"; }} ); }} );
"""
    paths = []
    for name, ids in (("broken", (1,)), ("fixed", (1, BAD_SCHEMA_ID))):
        path = os.path.join(directory, f"{name}.cfg")
        entries = ", ".join(f'{{ id = {i}; file = "checkout.avsc"; }}' for i in ids)
        with open(path, "w") as f:
            f.write(common + f'schemas = {{ dir = "{SCHEMA_DIR}"; ids = ( {entries} ); }};\n')
        paths.append(path)
    return tuple(paths)


def group_done(bootstrap, group, topic):
    """A function answering whether group has committed the end of every
    partition of topic (whose records it then has all dead-lettered: the
    offsets go in the same transaction as the DLQ records), and a function
    to close what it holds. The end is read once: nothing writes to topic
    meanwhile."""
    from confluent_kafka import KafkaException
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    parts = [TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
    ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}

    def done():
        try:
            got = c.committed(parts, timeout=10)
        except KafkaException:
            return False
        return all(tp.offset >= ends[tp.partition] for tp in got)
    return done, c.close


def time_dead_lettering(kjb, cfg, bootstrap, topic, dlq, group, n, log_path, timeout=900):
    """Runs `kjb run -c cfg` on topic's n records, all dead letters, until
    the DLQ holds n records and group committed the end of topic. Returns
    (seconds from start to then, kjb's peak RSS in KiB or None); exits
    when kjb stops early or does not finish within timeout seconds."""
    done, close = group_done(bootstrap, group, topic)
    log = open(log_path, "w")
    t0 = time.monotonic()
    proc = subprocess.Popen([kjb, "run", "-c", cfg], stderr=log)
    rss, got, finished = None, 0, False
    try:
        while time.monotonic() - t0 < timeout:
            rss = peak_rss_kib(proc.pid) or rss
            got = end_offset(bootstrap, dlq) or got
            if got >= n and done():
                finished = True
                break
            if proc.poll() is not None:
                sys.exit(f"kjb exited early; see {log_path}")
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        close()
        log.close()
    if not finished:
        sys.exit(f"not all {n} records dead-lettered in {timeout} s (DLQ end offsets {got}); see {log_path}")
    return elapsed, rss


def time_ingest(kjb, cfg, conninfo, n, log_path, timeout=900):
    """Runs `kjb run --role consumer -c cfg` until n jobs are stored.
    Returns (seconds from process start, peak RSS in KiB or None)."""
    conn = psycopg.connect(conninfo, autocommit=True)
    log = open(log_path, "w")
    t0 = time.monotonic()
    proc = subprocess.Popen([kjb, "run", "--role", "consumer", "-c", cfg], stderr=log)
    rss, count = None, 0
    try:
        while time.monotonic() - t0 < timeout:
            rss = peak_rss_kib(proc.pid) or rss
            count = conn.execute("SELECT count(*) FROM kjb.jobs").fetchone()[0]
            if count >= n:
                break
            if proc.poll() is not None:
                sys.exit(f"kjb exited early; see {log_path}")
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        rss = peak_rss_kib(proc.pid) or rss
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        conn.close()
        log.close()
    if count < n:
        sys.exit(f"only {count} of {n} jobs ingested in {timeout} s; see {log_path}")
    return elapsed, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--kjb", default=os.path.join(ROOT, "build", "release", "kjb"))
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--pg-conninfo", required=True)
    a = ap.parse_args()

    suffix = uuid.uuid4().hex[:6]
    topic, dlq, group = f"bench.dlq.{suffix}", f"bench.dlq.{suffix}.dlq", f"bench-dlq-{suffix}"
    admin_pg = psycopg.connect(a.pg_conninfo, autocommit=True)
    db = f"bench_dlq_{suffix}"
    admin_pg.execute(f"CREATE DATABASE {db}")
    base = psycopg.conninfo.conninfo_to_dict(a.pg_conninfo)
    conninfo = psycopg.conninfo.make_conninfo(**{**base, "dbname": db})

    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    admin.create_topics([NewTopic(dlq, a.partitions, 1)])[dlq].result(30)
    print(f"filling {topic}: {a.records} records ...", flush=True)
    size = fill_bad(a.bootstrap, topic, a.partitions, a.records, admin)

    tmp = tempfile.mkdtemp(prefix="kjb-bench-dlq-")
    broken, fixed = write_configs(tmp, a.bootstrap, conninfo, group, topic)
    subprocess.run([a.kjb, "migrate", "-c", broken], check=True, capture_output=True)
    dl_s, rss = time_dead_lettering(a.kjb, broken, a.bootstrap, topic, dlq, group, a.records,
                                    os.path.join(tmp, "kjb.log"))

    base_s = forward_baseline(a.bootstrap, topic, f"{dlq}.baseline", a.partitions, a.records, admin)

    def replay(*extra):
        t = time.monotonic()
        out = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen([a.kjb, "replay", "-c", fixed, "--topic", dlq, *extra],
                                stdout=out, stderr=subprocess.DEVNULL)
        code, rss = wait_peak_rss(proc)
        elapsed = time.monotonic() - t
        out.seek(0)
        text = out.read()
        if code not in (0, 1):
            sys.exit(f"replay failed with {code}: {text[-2000:]}")
        return elapsed, text.strip().splitlines()[-1], rss

    r1_s, r1, r1_rss = replay()
    r2_s, r2, r2_rss = replay("--reset-offsets", "to-earliest")
    jobs = psycopg.connect(conninfo).execute("SELECT count(*) FROM kjb.jobs").fetchone()[0]
    assert re.match(rf"replayed {a.records}, still failing 0, already present 0", r1), r1
    assert jobs == a.records, jobs

    db_ingest = f"{db}_ingest"
    admin_pg.execute(f"CREATE DATABASE {db_ingest}")
    conninfo_ingest = psycopg.conninfo.make_conninfo(**{**base, "dbname": db_ingest})
    tmp_ingest = os.path.join(tmp, "ingest")
    os.mkdir(tmp_ingest)
    _, fixed_ingest = write_configs(tmp_ingest, a.bootstrap, conninfo_ingest, f"{group}-ingest", topic)
    subprocess.run([a.kjb, "migrate", "-c", fixed_ingest], check=True, capture_output=True)
    in_s, in_rss = time_ingest(a.kjb, fixed_ingest, conninfo_ingest, a.records,
                               os.path.join(tmp_ingest, "kjb.log"))

    print()
    print(f"records                         {a.records}  ({a.partitions} partitions, ~{size} bytes each)")
    print(f"dead-lettering, incl. startup   {a.records / dl_s:10.0f} bad records/s  ({dl_s:.1f} s; kjb peak RSS {rss / 1024 if rss else float('nan'):.0f} MiB)")
    print(f"baseline forwarder, same input  {a.records / base_s:10.0f} records/s      ({base_s:.1f} s)")
    print(f"ratio kjb/forwarder             {base_s / dl_s:10.2f}")
    print(f"replay into jobs                {a.records / r1_s:10.0f} records/s      ({r1_s:.1f} s; {r1}; peak RSS {r1_rss / 1024 if r1_rss else float('nan'):.0f} MiB)")
    print(f"replay again (all present)      {a.records / r2_s:10.0f} records/s      ({r2_s:.1f} s; {r2}; peak RSS {r2_rss / 1024 if r2_rss else float('nan'):.0f} MiB)")
    print(f"ingest of the same records      {a.records / in_s:10.0f} records/s      ({in_s:.1f} s; kjb run --role consumer, fixed configuration; peak RSS {in_rss / 1024 if in_rss else float('nan'):.0f} MiB)")
    print(f"ratio replay/ingest             {in_s / r1_s:10.2f}")
    for d in (db, db_ingest):
        admin_pg.execute(f"DROP DATABASE {d} WITH (FORCE)")


if __name__ == "__main__":
    main()
