"""Chaos: three `kjb run` nodes in one consumer group ingest and execute
while good and malformed records keep arriving, and the test keeps
breaking things: nodes are SIGKILLed and restarted, all nodes get a
rolling restart, the Kafka broker and PostgreSQL are killed and
restarted, PostgreSQL is made to forget commits it acknowledged
(asynchronous commit, then a crash), and the HTTP downstream of one job
kind flaps (503s). PostgreSQL otherwise runs with durable commits, as a
database under a fault test must.

At the end the books must balance:
  - every source offset is exactly its two jobs or exactly one dead letter
    (read_committed), nothing else;
  - every job is completed (the downstream is back, attempts are ample);
  - no job ran twice at the same time (the downstream's own log of
    request intervals, by X-Kjb-Job-Id).

It prints a report (records, faults, recovery time after each fault) and
writes it to build/artifacts/chaos-report.json. The bounded CI run lasts
120 s of production; `--chaos-seconds N` runs longer, repeating the fault
cycle every 110 s. When the books do not balance it prints the jobs that
did not complete and the nodes table, and keeps the data directories."""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import avrokit
from kjbtest import KjbProcess, REPO, SCRIPTS, Service, free_port, kjb_argv, kjb_env, order

NODES = 3
PARTITIONS = 6
RATE = 20.0          # records per second
BAD_EVERY = 10       # every tenth record is malformed
CYCLE = 110.0        # seconds; the fault schedule below repeats
TOPIC, GROUP = "events", "chaos"
SETTLE_TIMEOUT = 420.0   # for one fault's recovery
STALL_TIMEOUT = 180.0    # the final settling fails after this long without progress


def kjb_binary() -> Path:
    for candidate in ([os.environ["KJB_BIN"]] if os.environ.get("KJB_BIN") else
                      ["build/asan/kjb", "build/release/kjb"]):
        path = Path(candidate) if Path(candidate).is_absolute() else REPO / candidate
        if path.is_file() and os.access(path, os.X_OK):
            return path
    pytest.fail("kjb binary not found; build it or set KJB_BIN", pytrace=False)


class Sink:
    """The `notify` kind's HTTP downstream. While `down` it answers 503;
    otherwise it works 10-50 ms and answers 200. Every request's interval
    is logged by job id."""

    def __init__(self) -> None:
        self.down = False
        self.lock = threading.Lock()
        self.calls: list[tuple[int, int, float, float, int]] = []  # id, attempt, start, end, status
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                start = time.monotonic()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 503 if sink.down else 200
                # A request that waited in the accept queue past kjb's
                # timeout was given up (and retried) before it got here:
                # kjb no longer runs it, whatever this server does now.
                if self.client_gone():
                    status = 0
                if status == 200:
                    time.sleep(random.uniform(0.01, 0.05))
                end = time.monotonic()
                with sink.lock:
                    sink.calls.append((int(self.headers["X-Kjb-Job-Id"]),
                                       int(self.headers["X-Kjb-Attempt"]), start, end, status))
                if status == 0:
                    self.close_connection = True
                    return
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the caller died mid-request: a killed node

            def client_gone(self) -> bool:
                self.connection.setblocking(False)
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except (BlockingIOError, InterruptedError):
                    return False
                except OSError:
                    return True
                finally:
                    self.connection.setblocking(True)

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # three nodes x 16 connections at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def overlaps(self) -> list[tuple[int, tuple, tuple]]:
        """Pairs of calls for the same job whose intervals overlap (calls
        their client had already given up are not kjb running the job)."""
        by_job = collections.defaultdict(list)
        with self.lock:
            for c in self.calls:
                if c[4] != 0:
                    by_job[c[0]].append(c)
        found = []
        for job, calls in by_job.items():
            calls.sort(key=lambda c: c[2])
            for a, b in zip(calls, calls[1:]):
                if b[2] < a[3]:
                    found.append((job, a, b))
        return found


class Feed:
    """Produces good and malformed records at RATE; the ledger maps each
    acknowledged (partition, offset) to ("good", order_id) or ("bad", code)."""

    def __init__(self, bootstrap: str) -> None:
        self.schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 20, "message.timeout.ms": 900000})
        self.ledger: dict[tuple[int, int], tuple[str, object]] = {}
        self.failed: list[str] = []
        self.produced = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def record(self, i: int) -> tuple[bytes, tuple[str, object]]:
        if i % BAD_EVERY != BAD_EVERY - 1:
            return avrokit.confluent(self.schema, order(i), 1), ("good", i)
        good = avrokit.confluent(self.schema, order(i), 1)
        kind = (i // BAD_EVERY) % 3
        if kind == 0:
            return b"\x07" + good[1:], ("bad", "kjb.BAD_MAGIC")
        if kind == 1:  # the header and one byte of the first varint
            return good[:6], ("bad", "kjb.TRUNCATED")
        return b"\x00\x00\x00\x00\x09" + good[5:], ("bad", "kjb.UNKNOWN_SCHEMA_ID")

    def _run(self) -> None:
        t0, i = time.monotonic(), 0
        while not self.stop.is_set():
            due = t0 + i / RATE
            now = time.monotonic()
            if now < due:
                self.producer.poll(min(due - now, 0.1))
                continue
            value, what = self.record(i)

            def delivered(err, msg, what=what):
                with self.lock:
                    if err:
                        self.failed.append(str(err))
                    else:
                        self.ledger[(msg.partition(), msg.offset())] = what

            self.producer.produce(TOPIC, value, key=str(i).encode(), on_delivery=delivered)
            self.produced = i = i + 1
            self.producer.poll(0)

    def delivered_ends(self) -> dict[int, int]:
        """Per partition: one past the highest acknowledged offset."""
        with self.lock:
            ends = {p: 0 for p in range(PARTITIONS)}
            for p, o in self.ledger:
                ends[p] = max(ends[p], o + 1)
            return ends

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()
        left = self.producer.flush(300)
        assert left == 0, f"{left} records not acknowledged by the broker"
        assert not self.failed, f"deliveries failed: {self.failed[:5]}"


class Cluster:
    def __init__(self, binary: Path, cfg: Path, conninfo: str, bootstrap: str, logs: Path) -> None:
        self.binary, self.cfg, self.logs = binary, cfg, logs
        self.env = {"KJB_POSTGRES_CONNINFO": conninfo, "KJB_KAFKA_BROKERS": bootstrap}
        self.ports = [free_port() for _ in range(NODES)]
        self.nodes: list[KjbProcess | None] = [None] * NODES
        self.retired: list[KjbProcess] = []
        self.starts = [0] * NODES

    def start(self, i: int) -> None:
        self.starts[i] += 1
        env = kjb_env({**self.env, "KJB_HTTP_LISTEN": f"127.0.0.1:{self.ports[i]}"})
        self.nodes[i] = KjbProcess(kjb_argv(self.binary, ["run"], self.cfg), env,
                                   self.logs / f"node{i}-{self.starts[i]}.log", REPO)

    def ready(self, i: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[i]}/readyz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, i: int, timeout: float = 180.0) -> float:
        t0 = time.monotonic()
        while not self.ready(i):
            node = self.nodes[i]
            assert node is not None and node.alive(), f"node {i} exited:\n{node.log()[-3000:] if node else ''}"
            assert time.monotonic() - t0 < timeout, f"node {i} not ready in {timeout:.0f}s"
            time.sleep(0.3)
        return time.monotonic() - t0

    def kill(self, i: int) -> None:
        node = self.nodes[i]
        assert node is not None
        node.kill()
        self.retired.append(node)
        self.nodes[i] = None

    def stop(self, i: int) -> int:
        node = self.nodes[i]
        assert node is not None
        rc = node.stop(timeout=60)
        self.retired.append(node)
        self.nodes[i] = None
        return rc

    def problems(self) -> list[str]:
        out = []
        for node in self.retired + [n for n in self.nodes if n]:
            out += node.problems()
        return out


def committed(bootstrap: str) -> dict[int, int] | None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    try:
        parts = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=5)
        return {tp.partition: tp.offset for tp in parts}
    except Exception:  # noqa: BLE001 - the broker may be down: not recovered yet
        return None
    finally:
        c.close()


def dead_letters(bootstrap: str) -> list:
    """Every dead letter a read_committed reader sees, with its headers."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-audit", "enable.auto.commit": False,
                  "enable.partition.eof": True, "isolation.level": "read_committed"})
    md = c.list_topics(f"{TOPIC}.dlq", timeout=10).topics[f"{TOPIC}.dlq"]
    parts = sorted(md.partitions)
    c.assign([TopicPartition(f"{TOPIC}.dlq", p, OFFSET_BEGINNING) for p in parts])
    records, done, deadline = [], set(), time.monotonic() + 120
    while done != set(parts) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                done.add(m.partition())
                continue
            raise RuntimeError(f"reading the DLQ: {m.error()}")
        records.append({k: v.decode() for k, v in m.headers() or []})
    c.close()
    assert done == set(parts), "the DLQ was not read to its end"
    return records


@pytest.fixture
def services(tmp_path: Path):
    kafka = Service("kafka", SCRIPTS / "kafka.sh", tmp_path / "kafka")
    # Durable commits: the faults below decide when commits are lost.
    pg = Service("pg", SCRIPTS / "pg.sh", tmp_path / "pg", env={"KJB_PG_FAST": "0"})
    try:
        kafka.launch()
        pg.launch()
        try:
            kafka.wait()
            pg.wait()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield kafka, pg
    finally:
        pg.stop()
        kafka.stop()
        if pg.keep_data:
            # pytest deletes old temporary directories: keep the evidence
            # (Kafka's data, the nodes' logs) where the report is.
            kept = REPO / "build" / "artifacts" / f"chaos-{time.strftime('%Y%m%dT%H%M%S')}"
            shutil.copytree(tmp_path, kept, symlinks=True, ignore_dangling_symlinks=True)
            print(f"\nchaos: data and logs kept in {kept}")


def postmaster_pid(pg: Service) -> int:
    """The PostgreSQL server's pid (its cluster may live under /tmp)."""
    rundir = pg.dir / "rundir"
    run = Path(rundir.read_text().strip()) if rundir.is_file() else pg.dir / "cluster"
    return int((run / "data" / "postmaster.pid").read_text().split()[0])


def unfinished(conninfo: str) -> dict:
    """What a failed run leaves to look at: the jobs that did not complete
    and the nodes table."""
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            jobs = conn.execute(
                "SELECT id, kind, state::text, attempt, attempted_by, attempted_at::text,"
                " scheduled_at::text, errors FROM kjb.jobs WHERE state <> 'completed'"
                " ORDER BY id LIMIT 100").fetchall()
            nodes = conn.execute("SELECT name, pid, started_at::text, heartbeat_at::text,"
                                 " now()::text FROM kjb.nodes ORDER BY name").fetchall()
    except psycopg.Error as exc:
        return {"error": str(exc)}
    return {"jobs": [dict(zip(("id", "kind", "state", "attempt", "attempted_by", "attempted_at",
                                "scheduled_at", "errors"), r)) for r in jobs],
            "nodes": [dict(zip(("name", "pid", "started_at", "heartbeat_at", "now"), r)) for r in nodes]}


def write_config(path: Path, sink_port: int) -> Path:
    path.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{GROUP}";
  properties = [ "session.timeout.ms=6000", "heartbeat.interval.ms=500" ]; }};
postgres = {{ conninfo = "set-by-env"; }};
ingest = {{ batch_size = 200; batch_timeout = "100ms"; }};
executor = {{ poll_interval = "500ms"; heartbeat = "1s"; lease = "15s"; shutdown_timeout = "5s"; }};
schemas = {{ ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
topics = (
  {{ topic = "{TOPIC}"; schema = "order_created.avsc";
     jobs = ( {{ kind = "notify"; }}, {{ kind = "audit"; args = [ "order_id" ]; }} ); }}
);
handlers = (
  {{ kind = "notify"; type = "http"; url = "http://127.0.0.1:{sink_port}/hook"; timeout = "2s";
     concurrency = 16; retry = {{ max_attempts = 100; base = "200ms"; max = "2s"; }}; }},
  {{ kind = "audit"; type = "log"; concurrency = 4; }}
);
""")
    return path


def test_chaos_accounting(services, chaos_seconds, tmp_path):
    kafka_svc, pg_svc = services
    bootstrap = (kafka_svc.dir / "bootstrap").read_text().strip()
    conninfo = (pg_svc.dir / "conninfo").read_text().strip()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1), NewTopic(f"{TOPIC}.dlq", 3, 1)]).values():
        f.result(60)
    sink = Sink()
    cfg = write_config(tmp_path / "kjb.cfg", sink.port)
    binary = kjb_binary()
    res = subprocess.run(kjb_argv(binary, ["migrate"], cfg), env=kjb_env({"KJB_POSTGRES_CONNINFO": conninfo}),
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE chaos_marker (id serial PRIMARY KEY)")

    cluster = Cluster(binary, cfg, conninfo, bootstrap, tmp_path / "logs")
    feed = Feed(bootstrap)
    faults: list[dict] = []
    recoveries: list[threading.Thread] = []
    t_start = time.monotonic()

    def recovery(fault: dict) -> None:
        """Seconds from the fault until the group has committed every
        record acknowledged before it (its outcome is durable)."""
        want = feed.delivered_ends()
        while time.monotonic() - fault["t"] < SETTLE_TIMEOUT:
            have = committed(bootstrap)
            if have and all(have.get(p, -1) >= end for p, end in want.items() if end > 0):
                fault["recovered_s"] = round(time.monotonic() - fault["t"], 1)
                return
            time.sleep(0.5)

    def fault(kind: str, **detail) -> dict:
        f = {"kind": kind, "at_s": round(time.monotonic() - t_start, 1), "t": time.monotonic(), **detail}
        faults.append(f)
        th = threading.Thread(target=recovery, args=(f,), daemon=True)
        th.start()
        recoveries.append(th)
        return f

    def kill_and_restart(*idx: int) -> None:
        fault("sigkill", nodes=list(idx))
        for i in idx:
            cluster.kill(i)
        time.sleep(2)
        for i in idx:
            cluster.start(i)

    def flap(seconds: float) -> None:
        # In the background: the schedule goes on meanwhile.
        threading.Thread(target=flap_for, args=(seconds,), daemon=True).start()

    def flap_for(seconds: float) -> None:
        f = fault("downstream_503", seconds=seconds)
        sink.down = True
        time.sleep(seconds)
        sink.down = False
        # How long the retries take to drain once it is back.
        back = time.monotonic()
        while time.monotonic() - back < SETTLE_TIMEOUT:
            try:  # PostgreSQL may be restarting meanwhile
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    left = conn.execute("SELECT count(*) FROM kjb.jobs WHERE kind = 'notify' "
                                        "AND state = 'retryable'").fetchone()[0]
            except psycopg.OperationalError:
                left = -1
            if left == 0:
                f["retries_drained_s"] = round(time.monotonic() - back, 1)
                break
            time.sleep(0.5)

    def restart_service(script: str, svc: Service, kind: str) -> dict:
        f = fault(kind)
        out = subprocess.run([str(SCRIPTS / script), "restart", str(svc.dir), "--kill"],
                             capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stdout + out.stderr
        f["down_s"] = round(time.monotonic() - f["t"], 1)
        return f

    def pg_settings(sql: str) -> None:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=30) as conn:
            for stmt in sql.split(";"):
                conn.execute(stmt)
            conn.execute("SELECT pg_reload_conf()")

    def lose_commits() -> None:
        """PostgreSQL acknowledges commits it has not written (asynchronous
        commit, the WAL writer held back), then crashes: the newest
        acknowledged commits are gone, as after a failover to an
        asynchronous replica. kjb's ingest forces its own commits durable;
        executors must find the outcomes and claims the server forgot."""
        pg_settings("ALTER SYSTEM SET synchronous_commit = off;"
                    "ALTER SYSTEM SET wal_writer_delay = '10s';"
                    "ALTER SYSTEM SET wal_writer_flush_after = '1GB'")
        time.sleep(4)
        # Crash it the moment a commit is acknowledged (the marker, to show
        # that it is lost): any durable commit after it would flush it.
        postmaster = postmaster_pid(pg_svc)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            marker = conn.execute("INSERT INTO chaos_marker DEFAULT VALUES RETURNING id").fetchone()[0]
            os.kill(postmaster, signal.SIGQUIT)  # an immediate shutdown
        f = restart_service("pg.sh", pg_svc, "postgres_lost_commits")
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=30) as conn:
            f["acknowledged_commit_lost"] = conn.execute(
                "SELECT count(*) FROM chaos_marker WHERE id = %s", (marker,)).fetchone()[0] == 0
        pg_settings("ALTER SYSTEM RESET synchronous_commit;"
                    "ALTER SYSTEM RESET wal_writer_delay;"
                    "ALTER SYSTEM RESET wal_writer_flush_after")

    def rolling_restart() -> None:
        f = fault("rolling_restart")
        for i in range(NODES):
            assert cluster.stop(i) == 0, f"node {i} did not drain cleanly"
            cluster.start(i)
            cluster.wait_ready(i)
        f["took_s"] = round(time.monotonic() - f["t"], 1)

    schedule = [
        (10, lambda: kill_and_restart(0)),
        (14, lambda: flap(7)),
        (30, lambda: restart_service("kafka.sh", kafka_svc, "kafka_broker_killed")),
        (55, lambda: restart_service("pg.sh", pg_svc, "postgres_killed")),
        (62, lose_commits),
        (66, lambda: kill_and_restart(2)),
        (70, rolling_restart),
        (95, lambda: flap(5)),
        (97, lambda: kill_and_restart(1, 2)),
    ]

    try:
        for i in range(NODES):
            cluster.start(i)
        for i in range(NODES):
            cluster.wait_ready(i)
        t_start = time.monotonic()
        feed.thread.start()
        cycle = 0.0
        while cycle < chaos_seconds:
            for at, action in schedule:
                if cycle + at >= chaos_seconds - 5:
                    break
                delay = t_start + cycle + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                action()
            cycle += CYCLE
        time.sleep(max(0.0, t_start + chaos_seconds - time.monotonic()))
        feed.finish()
        produced_for = time.monotonic() - t_start

        # Settle: every record committed, every job completed.
        ends = feed.delivered_ends()
        good = sum(1 for what in feed.ledger.values() if what[0] == "good")
        bad = len(feed.ledger) - good
        assert len(feed.ledger) == feed.produced
        with psycopg.connect(conninfo, autocommit=True) as conn:
            progress, last = time.monotonic(), None
            while True:
                have = committed(bootstrap) or {}
                done = conn.execute("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'").fetchone()[0]
                if all(have.get(p, -1) >= e for p, e in ends.items() if e > 0) and done == 2 * good:
                    break
                if (have, done) != last:
                    progress, last = time.monotonic(), (have, done)
                assert time.monotonic() - progress < STALL_TIMEOUT, (
                    f"no progress for {STALL_TIMEOUT:.0f}s: committed {have}, want {ends}; "
                    f"{done} of {2 * good} jobs completed")
                time.sleep(1)
            settled_after = time.monotonic() - t_start - produced_for
            for th in recoveries:
                th.join(timeout=5)
            for i in range(NODES):
                assert cluster.stop(i) == 0, f"node {i} did not stop cleanly"

            # The books.
            jobs = collections.defaultdict(list)
            for p, o, kind, state in conn.execute(
                    "SELECT source_partition, source_offset, kind, state FROM kjb.jobs "
                    "WHERE source_topic = %s", (TOPIC,)):
                jobs[(p, o)].append((kind, state))
            total_jobs = conn.execute("SELECT count(*) FROM kjb.jobs").fetchone()[0]
            states = dict(conn.execute("SELECT state, count(*) FROM kjb.jobs GROUP BY 1").fetchall())
            attempts = dict(conn.execute("SELECT attempt, count(*) FROM kjb.jobs GROUP BY 1").fetchall())
            rescued = conn.execute("SELECT count(*) FROM kjb.jobs WHERE errors::text LIKE "
                                   "'%%stopped heartbeating%%'").fetchone()[0]

        letters = dead_letters(bootstrap)
        dl_count = collections.Counter(
            (int(h["__connect.errors.partition"]), int(h["__connect.errors.offset"])) for h in letters)
        dl_codes = {(int(h["__connect.errors.partition"]), int(h["__connect.errors.offset"])):
                    h["__connect.errors.exception.class.name"] for h in letters}

        wrong = []
        for coords, (what, detail) in sorted(feed.ledger.items()):
            got = sorted(jobs.get(coords, []))
            if what == "good":
                if got != [("audit", "completed"), ("notify", "completed")] or dl_count[coords]:
                    wrong.append((coords, what, detail, got, dl_count[coords]))
            elif got or dl_count[coords] != 1 or dl_codes.get(coords) != detail:
                wrong.append((coords, what, detail, got, dl_count[coords], dl_codes.get(coords)))
        strays = sorted(set(jobs) - set(feed.ledger)) + sorted(set(dl_count) - set(feed.ledger))
        overlaps = sink.overlaps()
        successes = collections.Counter(c[0] for c in sink.calls if c[4] == 200)

        report = {
            "produced_for_s": round(produced_for, 1),
            "records": len(feed.ledger), "good": good, "malformed": bad,
            "jobs": total_jobs, "dead_letters": len(letters),
            "job_states": states, "attempts": {str(k): v for k, v in sorted(attempts.items())},
            "jobs_rescued_from_dead_nodes": rescued,
            "notify_calls": len(sink.calls),
            "notify_calls_abandoned_by_client": sum(1 for c in sink.calls if c[4] == 0),
            "notify_jobs_completed_twice": sum(1 for n in successes.values() if n > 1),
            "jobs_given_back_by_their_live_node": sum(
                int(n) for p in cluster.logs.glob("node*.log")
                for n in re.findall(r"gave back (\d+) job", p.read_text(errors="replace"))),
            "sigkills": sum(len(f.get("nodes", [])) for f in faults if f["kind"] == "sigkill"),
            "node_starts": sum(cluster.starts),
            "settled_after_production_s": round(settled_after, 1),
            "faults": [{k: v for k, v in f.items() if k != "t"} for f in faults],
            "mismatches": len(wrong), "strays": len(strays), "overlapping_runs": len(overlaps),
            "overlap_examples": [
                {"job": job, "first": {"attempt": a[1], "start": round(a[2] - t_start, 3), "end": round(a[3] - t_start, 3)},
                 "second": {"attempt": b[1], "start": round(b[2] - t_start, 3), "end": round(b[3] - t_start, 3)}}
                for job, a, b in overlaps[:5]],
        }
        text = json.dumps(report, indent=2)
        print("\nchaos report:\n" + text)
        out = REPO / "build" / "artifacts"
        out.mkdir(parents=True, exist_ok=True)
        (out / "chaos-report.json").write_text(text + "\n")

        assert not wrong, f"{len(wrong)} source records without exactly their outcome, e.g. {wrong[:5]}"
        assert not strays, f"outcomes for offsets never produced: {strays[:5]}"
        assert len(letters) == bad
        assert total_jobs == 2 * good and states == {"completed": 2 * good}
        assert not overlaps, f"jobs that ran twice at the same time: {overlaps[:5]}"
        assert all("recovered_s" in f for f in faults), \
            f"faults without recovery: {[f for f in faults if 'recovered_s' not in f]}"
        problems = cluster.problems()
        assert not problems, "\n\n".join(problems)
    except BaseException:
        left = unfinished(conninfo)
        print("\nchaos failed; jobs not completed and the nodes table:\n"
              + json.dumps(left, indent=2, default=str))
        out = REPO / "build" / "artifacts"
        out.mkdir(parents=True, exist_ok=True)
        (out / "chaos-unfinished.json").write_text(json.dumps(left, indent=2, default=str) + "\n")
        kafka_svc.keep_data = pg_svc.keep_data = True
        raise
    finally:
        feed.stop.set()
        for i in range(NODES):
            node = cluster.nodes[i]
            if node is not None:
                node.stop(timeout=30)
        sink.server.shutdown()
