#!/usr/bin/env python3
"""Dead-letter workbench benchmark: what the index costs and what it buys.

a. Targeted replay against DLQ size. Two DLQ topics of --small and --large
   records (default 100,000 and 1,000,000), written straight to Kafka with
   the dead-letter headers kjb writes (a plain producer: filling them
   through kjb would take most of the run). Of each, --selected records
   (default 1,000), every Nth over the whole topic, were dead-lettered for
   UNKNOWN_SCHEMA_ID of a schema id the configuration now has; the others
   for TRUNCATED. `kjb dlq reindex` builds the index (timed: records/s),
   then `kjb replay --reason UNKNOWN_SCHEMA_ID --dlq-topic T` replays the
   selected records from their DLQ coordinates, first with --dry-run, then
   for real (both timed). Afterwards it checks that exactly the selected
   records became jobs and that exactly their index rows are `replayed`:
   the time of a replay that did the wrong thing is no figure.

b. Dead-lettering throughput with the index and without. The same --bad
   records (default 200,000), all dead letters, go through the kjb built
   here (which writes each one's kjb.dead_letters row in its DLQ
   transaction) and through --base-kjb (a build of the commit before
   ingest wrote the index; run-workbench builds it), alternately, each
   run with a fresh database, group and DLQ topic on the same broker and
   PostgreSQL. Prints bad records/s of every run and the ratio new/base.

It prints figures and asserts nothing about timings. Kafka, PostgreSQL
and kjb share the machine, so it refuses to start while the 1-minute load
is 2 or more (--force runs anyway); the load is printed before each phase.

Usage: tests/bench/run-workbench [--base COMMIT] [--small N] [--large N]
       [--selected N] [--bad N] [--rounds N] [--no-warmup] [--timeout S]
       [--only replay|throughput] [--force]
"""
import argparse
import datetime
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import fastavro
import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dlq import BAD_SCHEMA_ID, fill_bad, time_dead_lettering, write_configs  # noqa: E402
from ingest import ROOT, SCHEMA_DIR, make_event  # noqa: E402

MAX_LOAD = 2.0
SELECTED_REASON, OTHER_REASON = "UNKNOWN_SCHEMA_ID", "TRUNCATED"


def load(phase):
    one, five, fifteen = os.getloadavg()
    print(f"\n== {phase}  (load average {one:.2f} {five:.2f} {fifteen:.2f})", flush=True)


def wait_for_quiet(force, patience=120):
    """Returns when the 1-minute load is below MAX_LOAD, waiting up to
    patience seconds for what started this run (the builds, the broker's
    JVM) to fade from it; exits when it does not. --force: at once."""
    if force:
        return
    deadline = time.monotonic() + patience
    while os.getloadavg()[0] >= MAX_LOAD:
        if time.monotonic() >= deadline:
            sys.exit(f"workbench: 1-minute load average {os.getloadavg()[0]:.2f} >= {MAX_LOAD:g}: "
                     "the figures would measure someone else's work; run on a quiet machine "
                     "or pass --force")
        print(f"waiting for the 1-minute load ({os.getloadavg()[0]:.2f}) to fall below {MAX_LOAD:g} ...",
              flush=True)
        time.sleep(10)


def run(*args, timeout=3600):
    """Runs a command; returns (seconds, stdout). Exits with its output
    when it fails or takes longer than timeout seconds (then it is the
    figure: a reindex or replay that slow needs looking at, not waiting
    for)."""
    t = time.monotonic()
    try:
        res = subprocess.run([str(a) for a in args], text=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"{' '.join(map(str, args[:3]))} ... did not finish in {timeout} s")
    elapsed = time.monotonic() - t
    if res.returncode != 0:
        sys.exit(f"{' '.join(map(str, args[:3]))} ... exited {res.returncode}:\n{res.stdout[-2000:]}"
                 f"{res.stderr[-2000:]}")
    return elapsed, res.stdout


def new_database(admin_pg, base_conninfo, name):
    admin_pg.execute(f"CREATE DATABASE {name}")
    parts = psycopg.conninfo.conninfo_to_dict(base_conninfo)
    return psycopg.conninfo.make_conninfo(**{**parts, "dbname": name})


# ---- a. targeted replay against DLQ size -------------------------------

def encoded(schema, schema_id, event):
    buf = io.BytesIO()
    buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, schema, event)
    return buf.getvalue()


def fill_dlq(bootstrap, dlq, source, partitions, size, selected, schema, rnd, group):
    """Writes size dead letters of source to dlq (partitions, created
    here) as kjb's ingest would have: the original value and key, and the
    Connect and kjb headers (names as bridge/dlq.h defines them). Records
    i = 0, step, 2*step, ... (selected of them) are UNKNOWN_SCHEMA_ID
    letters whose value decodes once the id is configured, each a
    distinct event; the rest are TRUNCATED letters, their values taken
    from a small pool. Partition p holds records [p*size/P, (p+1)*size/P),
    so the selected ones are spread evenly over every partition's offsets.
    Returns (seconds, mean value bytes)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(dlq, partitions, 1)])[dlq].result(30)
    step = size // selected
    pool = []
    for i in range(256):
        v = encoded(schema, 1, make_event(i, rnd))
        pool.append(v[: len(v) * 3 // 4])
    now = datetime.datetime.now(datetime.timezone.utc)
    at = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    fixed = [("__connect.errors.stage", b"VALUE_CONVERTER"), ("__connect.errors.class.name", b"kjb"),
             ("kjb.consumer.group", group.encode()), ("kjb.dead_lettered_at", at.encode())]
    # Uncompressed, as kjb's DLQ producer writes them (librdkafka's default
    # batch limits): a compressed batch would cost a targeted read more
    # than kjb's own DLQs do, since the whole batch is decompressed to get
    # one record out of it.
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                  "queue.buffering.max.messages": 500000, "acks": "all"})
    src = source.encode()
    base_ms = int(now.timestamp() * 1000) - 3_600_000
    t0 = time.monotonic()
    total = 0
    for i in range(size):
        if i % step == 0 and i // step < selected:
            value = encoded(schema, BAD_SCHEMA_ID, make_event(1_000_000_000 + i, rnd))
            cls = b"kjb." + SELECTED_REASON.encode()
            msg = f"schema id {BAD_SCHEMA_ID} is not in schemas.ids and no registry is configured"
        else:
            value = pool[i % len(pool)]
            cls = b"kjb." + OTHER_REASON.encode()
            msg = (f"avro body at byte 5: field \"items\": truncated at byte {len(value) - 5}: "
                   "data ends inside a varint")
        total += len(value)
        headers = [("__connect.errors.topic", src),
                   ("__connect.errors.partition", str(i % 4).encode()),
                   ("__connect.errors.offset", str(i // 4).encode()),
                   ("__connect.errors.exception.class.name", cls),
                   ("__connect.errors.exception.message", msg.encode()),
                   ("kjb.original.timestamp", str(base_ms + i).encode()), *fixed]
        while True:
            try:
                p.produce(dlq, value, key=str(i).encode(), partition=i * partitions // size,
                          headers=headers)
                break
            except BufferError:
                p.poll(0.05)
        if i % 5000 == 0:
            p.poll(0)
    if p.flush(300):
        sys.exit(f"could not write every record of {dlq}")
    return time.monotonic() - t0, total / size


def targeted_replay(a, admin_pg):
    suffix = uuid.uuid4().hex[:6]
    conninfo = new_database(admin_pg, a.pg_conninfo, f"bench_wb_replay_{suffix}")
    group = f"bench-wb-{suffix}"
    dlqs = [(f"wb.{suffix}.{name}", f"wb.{suffix}.{name}.dlq", n)
            for name, n in (("small", a.small), ("large", a.large))]
    tmp = tempfile.mkdtemp(prefix="kjb-bench-wb-")
    cfg = os.path.join(tmp, "kjb.cfg")
    ids = ", ".join(f'{{ id = {i}; file = "checkout.avsc"; }}' for i in (1, BAD_SCHEMA_ID))
    mappings = ",\n".join(
        f'  {{ topic = "{src}"; schema = "checkout.avsc"; dlq = "{dlq}";\n'
        '    jobs = ( { kind = "fulfil_order"; unique_key = "${event_id}"; } ); }'
        for src, dlq, _ in dlqs)
    with open(cfg, "w") as f:
        f.write(f"""
kafka = {{ brokers = "{a.bootstrap}"; group = "{group}"; }};
postgres = {{ conninfo = "{conninfo}"; }};
log = {{ level = "warn"; }};
schemas = {{ dir = "{SCHEMA_DIR}"; ids = ( {ids} ); }};
topics = (
{mappings}
);
""")
    run(a.kjb, "migrate", "-c", cfg)
    db = psycopg.connect(conninfo, autocommit=True)
    schema = fastavro.parse_schema(json.load(open(os.path.join(SCHEMA_DIR, "checkout.avsc"))))
    rnd = random.Random(7)
    rows = []
    for src, dlq, n in dlqs:
        load(f"fill {dlq}: {n} dead letters, {a.selected} of them {SELECTED_REASON}")
        fill_s, mean = fill_dlq(a.bootstrap, dlq, src, a.partitions, n, a.selected, schema, rnd, group)
        print(f"filled in {fill_s:.1f} s ({n / fill_s:.0f} records/s, values ~{mean:.0f} bytes)", flush=True)

        load(f"kjb dlq reindex --topic {dlq}")
        reindex_s, out = run(a.kjb, "dlq", "reindex", "-c", cfg, "--topic", dlq, timeout=a.timeout)
        print(out.strip(), flush=True)
        indexed = db.execute("SELECT count(*) FROM kjb.dead_letters WHERE dlq_topic = %s",
                             (dlq,)).fetchone()[0]
        assert indexed == n, f"{dlq}: {indexed} index rows, expected {n}"

        replay = (a.kjb, "replay", "-c", cfg, "--reason", SELECTED_REASON, "--dlq-topic", dlq)
        load(f"kjb replay --reason {SELECTED_REASON} --dlq-topic {dlq} --dry-run")
        dry_s, out = run(*replay, "--dry-run", timeout=a.timeout)
        print(out.strip(), flush=True)
        jobs = db.execute("SELECT count(*) FROM kjb.jobs WHERE source_topic = %s", (src,)).fetchone()[0]
        assert jobs == 0, f"the dry run of {dlq} inserted {jobs} jobs"

        load(f"kjb replay --reason {SELECTED_REASON} --dlq-topic {dlq}")
        replay_s, out = run(*replay, timeout=a.timeout)
        print(out.strip(), flush=True)
        jobs = db.execute("SELECT count(*) FROM kjb.jobs WHERE source_topic = %s", (src,)).fetchone()[0]
        status = dict(db.execute(
            "SELECT status || '/' || reason, count(*) FROM kjb.dead_letters WHERE dlq_topic = %s "
            "GROUP BY 1", (dlq,)).fetchall())
        want = {f"replayed/{SELECTED_REASON}": a.selected, f"dead/{OTHER_REASON}": n - a.selected}
        assert jobs == a.selected, f"{dlq}: replay made {jobs} jobs, expected {a.selected}"
        assert status == want, f"{dlq}: index rows by status/reason {status}, expected {want}"
        rows.append((n, reindex_s, dry_s, replay_s))

    print(f"\ntargeted replay of {a.selected} records ({SELECTED_REASON}) by DLQ size "
          f"({a.partitions} partitions; checked: {a.selected} jobs, {a.selected} rows replayed)")
    print(f"{'DLQ records':>12} {'reindex s':>10} {'reindex rec/s':>14} {'dry run s':>10} "
          f"{'replay s':>9} {'replay rec/s':>13}")
    for n, reindex_s, dry_s, replay_s in rows:
        print(f"{n:>12} {reindex_s:>10.1f} {n / reindex_s:>14.0f} {dry_s:>10.2f} "
              f"{replay_s:>9.2f} {a.selected / replay_s:>13.0f}")
    db.close()
    admin_pg.execute(f"DROP DATABASE bench_wb_replay_{suffix} WITH (FORCE)")
    return rows


# ---- b. dead-lettering with the index and without -----------------------

def dead_letter_run(a, admin_pg, admin, topic, label, kjb, name, suffix, tmp):
    """One timed run of kjb over topic's a.bad records with a database,
    group and DLQ topic of its own; returns (seconds, peak RSS KiB). Exits
    when the index rows are not what the build should write: a row per
    record for "new", none for "base"."""
    db_name = f"bench_wb_{suffix}_{name}"
    conninfo = new_database(admin_pg, a.pg_conninfo, db_name)
    dlq, group = f"{topic}.{name}.dlq", f"bench-wb-{suffix}-{name}"
    admin.create_topics([NewTopic(dlq, a.partitions, 1)])[dlq].result(30)
    d = os.path.join(tmp, name)
    os.mkdir(d)
    broken, _ = write_configs(d, a.bootstrap, conninfo, group, topic, dlq)
    run(kjb, "migrate", "-c", broken)
    load(f"dead-lettering {a.bad} records: {name}")
    secs, rss = time_dead_lettering(kjb, broken, a.bootstrap, topic, dlq, group, a.bad,
                                    os.path.join(d, "kjb.log"))
    with psycopg.connect(conninfo) as db:
        has_index = db.execute("SELECT to_regclass('kjb.dead_letters') IS NOT NULL").fetchone()[0]
        rows = db.execute("SELECT count(*) FROM kjb.dead_letters").fetchone()[0] if has_index else 0
    if label == "new" and rows != a.bad:
        sys.exit(f"{name}: {rows} index rows, expected {a.bad}")
    if label == "base" and rows:
        sys.exit(f"--base-kjb {a.base_kjb} wrote {rows} index rows: it is no baseline")
    admin_pg.execute(f"DROP DATABASE {db_name} WITH (FORCE)")
    print(f"{name}: {a.bad / secs:.0f} bad records/s ({secs:.1f} s; peak RSS "
          f"{rss / 1024 if rss else float('nan'):.0f} MiB)", flush=True)
    return secs, rss


def throughput(a, admin_pg):
    suffix = uuid.uuid4().hex[:6]
    topic = f"wb.{suffix}.bad"
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    load(f"fill {topic}: {a.bad} records under schema id {BAD_SCHEMA_ID}")
    size = fill_bad(a.bootstrap, topic, a.partitions, a.bad, admin)
    tmp = tempfile.mkdtemp(prefix="kjb-bench-wb-")
    # The first reader of a freshly written topic pays for the broker's
    # cold paths (JIT, page cache, the group coordinator): an untimed run
    # takes that, so that it does not fall on the first base round.
    if a.warmup:
        dead_letter_run(a, admin_pg, admin, topic, "new", a.kjb, "warmup", suffix, tmp)
    runs = {"base": [], "new": []}
    for rnd in range(1, a.rounds + 1):
        for label, kjb in (("base", a.base_kjb), ("new", a.kjb)):
            secs, _ = dead_letter_run(a, admin_pg, admin, topic, label, kjb, f"{label}{rnd}", suffix, tmp)
            runs[label].append(secs)

    print(f"\ndead-lettering {a.bad} records ({a.partitions} partitions, ~{size} bytes each), "
          f"incl. startup; base = {a.base_label}")
    print(f"{'':>6} " + " ".join(f"{'round ' + str(r):>10}" for r in range(1, a.rounds + 1))
          + f" {'median':>10}   bad records/s")
    med = {}
    for label in ("base", "new"):
        rates = [a.bad / s for s in runs[label]]
        med[label] = statistics.median(rates)
        print(f"{label:>6} " + " ".join(f"{r:>10.0f}" for r in rates) + f" {med[label]:>10.0f}")
    print(f"ratio new/base (medians) {med['new'] / med['base']:.3f}")
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=100_000, help="records of the smaller DLQ")
    ap.add_argument("--large", type=int, default=1_000_000, help="records of the larger DLQ")
    ap.add_argument("--selected", type=int, default=1_000, help="records of each DLQ the replay selects")
    ap.add_argument("--bad", type=int, default=200_000, help="records dead-lettered per throughput run")
    ap.add_argument("--rounds", type=int, default=2, help="throughput runs of each binary (alternating)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="no untimed throughput run before the rounds")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--timeout", type=int, default=3600,
                    help="seconds one reindex or replay may take before the run gives up")
    ap.add_argument("--only", choices=("replay", "throughput"), help="run one phase only")
    ap.add_argument("--force", action="store_true", help="run even when the machine is busy")
    ap.add_argument("--kjb", default=os.path.join(ROOT, "build", "release", "kjb"))
    ap.add_argument("--base-kjb", help="kjb built from the commit before ingest wrote the index")
    ap.add_argument("--base-label", default="", help="what --base-kjb was built from, for the output")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--pg-conninfo", required=True)
    a = ap.parse_args()
    if a.only != "replay" and not a.base_kjb:
        ap.error("--base-kjb is needed for the throughput phase (or --only replay)")
    for name in ("small", "large"):
        if getattr(a, name) < a.selected or a.selected < 1:
            ap.error(f"--{name} must be at least --selected, which must be at least 1")
    if a.rounds < 2:
        ap.error("--rounds must be at least 2: one run of each says more about the machine than kjb")
    a.base_label = a.base_label or a.base_kjb

    wait_for_quiet(a.force)
    admin_pg = psycopg.connect(a.pg_conninfo, autocommit=True)
    if a.only != "throughput":
        targeted_replay(a, admin_pg)
    if a.only != "replay":
        throughput(a, admin_pg)


if __name__ == "__main__":
    main()
