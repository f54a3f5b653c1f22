"""Readiness follows PostgreSQL and Kafka.

PostgreSQL: kjb reaches the test server through a TCP relay that the test
cuts and restores. /readyz (and /healthz, which also needs the database)
drop to 503 within seconds of the cut and come back by themselves once the
relay is restored, with no restart; jobs inserted meanwhile run after the
recovery.

Kafka: the session's broker is frozen (SIGSTOP) under a consumer. /readyz
drops to 503 "kafka not connected" while /healthz stays 200 (the process is
fine; restarting it would not help), and both come back once the broker
runs again (SIGCONT); records produced afterwards become a job and a dead
letter as usual."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import avrokit
from kjbtest import answers, free_port, order, owned_partitions, scrape, unique_name, wait_for

EXECUTOR = 'poll_interval = "200ms"; heartbeat = "500ms"; lease = "8s"; shutdown_timeout = "5s";'


class Relay:
    """Forwards 127.0.0.1:<port> to an upstream address. While cut, every
    relayed connection is closed and new ones are closed at once."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.cut_off = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _reset(s: socket.socket) -> None:
        # shutdown() first: close() alone would not wake a pump thread
        # blocked in recv() on the socket, and the connection would live on.
        for step in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
            try:
                step()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut_off:
                self._reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                self._reset(client)
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.cut_off = True
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            self._reset(s)

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        self._listener.close()


def executor_config(path: Path, http_port: int) -> Path:
    """An executor-only configuration: kind "hello" with the log handler."""
    path.write_text(f"""
kafka = {{ brokers = "127.0.0.1:1"; group = "ready"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{http_port}"; }};
executor = {{ {EXECUTOR} }};
topics = ( {{ topic = "unused"; schema = "order_created.avsc"; jobs = ( {{ kind = "unused"; }} ); }} );
handlers = ( {{ kind = "hello"; type = "log"; concurrency = 2; }} );
""")
    return path


def test_readiness_follows_postgres(db, pg, run_kjb, start_kjb, tmp_path: Path):
    http_port = free_port()
    cfg = executor_config(tmp_path / "kjb.cfg", http_port)
    assert run_kjb(["migrate"], cfg, env={"KJB_POSTGRES_CONNINFO": str(db)}).returncode == 0
    # The same database, reached through the relay.
    port = pg.port
    relay = Relay(("127.0.0.1", port))
    try:
        conninfo = str(db).replace(f"port={port}", f"port={relay.port}")
        assert f"port={relay.port}" in conninfo, conninfo
        proc = start_kjb(["run", "--role", "executor"], cfg,
                         env={"KJB_POSTGRES_CONNINFO": conninfo, "KJB_HTTP_LISTEN": ""})
        ok = (200, {"status": "ok"})
        wait_for(lambda: answers(http_port, "/readyz") == ok, timeout=30, message=lambda: proc.log())

        relay.cut()
        cut_at = time.monotonic()
        down = (503, {"status": "not ready", "reason": "database unreachable"})
        wait_for(lambda: answers(http_port, "/readyz") == down, timeout=15,
                 message=lambda: f"{answers(http_port, '/readyz')}\n{proc.log()[-3000:]}")
        dropped_after = time.monotonic() - cut_at
        assert answers(http_port, "/healthz") == (503, {"status": "unhealthy",
                                                      "reason": "database unreachable"})
        # Work arrives while kjb cannot see the database.
        db.query("INSERT INTO kjb.jobs (kind) SELECT 'hello' FROM generate_series(1, 5) RETURNING id")

        relay.restore()
        restored_at = time.monotonic()
        wait_for(lambda: answers(http_port, "/readyz") == ok, timeout=60,
                 message=lambda: f"{answers(http_port, '/readyz')}\n{proc.log()[-3000:]}")
        recovered_after = time.monotonic() - restored_at
        assert answers(http_port, "/healthz") == ok
        wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 5,
                 timeout=60, message=lambda: proc.log()[-3000:])
        print(f"readiness dropped {dropped_after:.1f} s after the cut, "
              f"recovered {recovered_after:.1f} s after the restore")
        assert "health: postgresql reachable again" in proc.log()
        assert proc.stop() == 0, proc.log()
    finally:
        relay.close()


def test_readiness_follows_kafka(kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env,
                                 tmp_path: Path):
    topic, group = make_topic(), unique_name("ready")
    http_port = free_port()
    schemas = avrokit.schema_dir(tmp_path / "schemas")
    cfg = tmp_path / "kjb.cfg"
    cfg.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{group}"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{http_port}"; }};
schemas = {{ dir = "{schemas}"; ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
topics = ( {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "note"; }} ); }} );
""")
    env = {**kjb_services_env, "KJB_HTTP_LISTEN": ""}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    proc = start_kjb(["run", "--role", "consumer"], cfg, env=env)
    ok = (200, {"status": "ok"})
    wait_for(lambda: answers(http_port, "/readyz") == ok, timeout=180,
             message=lambda: f"{answers(http_port, '/readyz')}\n{proc.log()[-3000:]}")
    assert answers(http_port, "/startupz") == ok

    broker = int((kafka.dir / "kafka.pid").read_text())
    down = (503, {"status": "not ready", "reason": "kafka not connected"})
    os.kill(broker, signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        wait_for(lambda: answers(http_port, "/readyz") == down, timeout=30,
                 message=lambda: f"{answers(http_port, '/readyz')}\n{proc.log()[-3000:]}")
        dropped_after = time.monotonic() - frozen_at
        assert answers(http_port, "/healthz") == ok
        # Startup happened once and for all.
        assert answers(http_port, "/startupz") == ok
    finally:
        os.kill(broker, signal.SIGCONT)
    thawed_at = time.monotonic()
    wait_for(lambda: answers(http_port, "/readyz") == ok, timeout=120,
             message=lambda: f"{answers(http_port, '/readyz')}\n{proc.log()[-3000:]}")
    recovered_after = time.monotonic() - thawed_at

    schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    good = avrokit.confluent(schema, order(1), 1)
    bad = b"\x01" + good[1:]  # not the confluent magic byte
    kafka.produce(topic, [good, bad])
    wait_for(lambda: kafka.record_counts(f"{topic}.dlq") == {0: 1}, timeout=120,
             message=lambda: f"the dead letter\n{proc.log()[-3000:]}")
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE kind = 'note'") == 1, timeout=60,
             message=lambda: proc.log()[-3000:])
    [dead] = kafka.consume(f"{topic}.dlq", count=1)
    assert dead.header("__connect.errors.exception.class.name") == "kjb.BAD_MAGIC"
    print(f"readiness dropped {dropped_after:.1f} s after the broker froze, "
          f"recovered {recovered_after:.1f} s after it resumed")
    assert proc.stop() == 0, proc.log()[-3000:]


def test_run_waits_for_postgres_at_start(db, pg, run_kjb, start_kjb, tmp_path: Path):
    # PostgreSQL is unreachable when kjb starts (a pod scheduled before its
    # database): kjb waits, live and not ready, instead of crash-looping.
    http_port = free_port()
    cfg = executor_config(tmp_path / "kjb.cfg", http_port)
    assert run_kjb(["migrate"], cfg, env={"KJB_POSTGRES_CONNINFO": str(db)}).returncode == 0
    relay = Relay(("127.0.0.1", pg.port))
    relay.cut()
    try:
        conninfo = str(db).replace(f"port={pg.port}", f"port={relay.port}")
        proc = start_kjb(["run", "--role", "executor"], cfg,
                         env={"KJB_POSTGRES_CONNINFO": conninfo, "KJB_HTTP_LISTEN": ""})
        wait_for(lambda: answers(http_port, "/healthz") == (200, {"status": "ok"}), timeout=30,
                 message=lambda: f"{answers(http_port, '/healthz')}\n{proc.log()[-3000:]}")
        # Still waiting some seconds later, not exited.
        time.sleep(5)
        assert proc.alive(), proc.log()
        assert answers(http_port, "/healthz") == (200, {"status": "ok"})
        for path, status in (("/readyz", "not ready"), ("/startupz", "starting")):
            code, body = answers(http_port, path)
            assert (code, body["status"]) == (503, status), body
            assert body["reason"].startswith("waiting for postgresql: could not connect to postgresql:"), body
        db.query("INSERT INTO kjb.jobs (kind) SELECT 'hello' FROM generate_series(1, 3) RETURNING id")

        relay.restore()
        ok = (200, {"status": "ok"})
        for path in ("/startupz", "/readyz"):
            wait_for(lambda: answers(http_port, path) == ok, timeout=60,
                     message=lambda: f"{answers(http_port, path)}\n{proc.log()[-3000:]}")
        wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 3,
                 timeout=60, message=lambda: proc.log()[-3000:])
        assert proc.log().count("waiting for postgresql: could not connect") == 1, proc.log()
        assert proc.stop() == 0, proc.log()
    finally:
        relay.close()


def test_instance_without_partitions_starts_and_is_ready_when_it_executes(
        kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, tmp_path: Path):
    # More instances than partitions: the one without a partition still
    # runs jobs, so it must pass its startup and readiness probes.
    topic, group = make_topic(partitions=1), unique_name("spare")
    schemas = avrokit.schema_dir(tmp_path / "schemas")
    ports = [free_port(), free_port()]
    procs = []
    for i, port in enumerate(ports):
        cfg = tmp_path / f"kjb{i}.cfg"
        cfg.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{group}"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{port}"; }};
schemas = {{ dir = "{schemas}"; ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
executor = {{ {EXECUTOR} }};
topics = ( {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "note"; }} ); }} );
handlers = ( {{ kind = "note"; type = "log"; }} );
""")
        env = {**kjb_services_env, "KJB_HTTP_LISTEN": ""}
        if i == 0:
            assert run_kjb(["migrate"], cfg, env=env).returncode == 0
        procs.append(start_kjb(["run"], cfg, env=env, name=f"n{i}"))
    def owners() -> list[int] | None:
        try:
            return sorted(owned_partitions(scrape(port), topic) for port in ports)
        except OSError:
            return None  # not serving yet

    # Both are members, one of them without the partition.
    wait_for(lambda: owners() == [0, 1], timeout=180,
             message=lambda: f"one owner, have {owners()}\n" + "\n".join(p.log()[-2000:] for p in procs))
    ok = (200, {"status": "ok"})
    for port, proc in zip(ports, procs):
        for path in ("/startupz", "/readyz"):
            wait_for(lambda: answers(port, path) == ok, timeout=30,
                     message=lambda: f"{path}: {answers(port, path)}\n{proc.log()[-3000:]}")
    schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    kafka.produce(topic, [avrokit.confluent(schema, order(i), 1) for i in range(4)])
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 4,
             timeout=120, message=lambda: procs[0].log()[-2000:] + procs[1].log()[-2000:])
    for proc in procs:
        assert proc.stop() == 0, proc.log()[-3000:]
