"""The HTTP server of `kjb run` end to end, with PostgreSQL only: an
executor with a log handler serves /metrics and the three probes on the
configured address; the exposition is checked with the Prometheus client's
own parser. Also what `kjb run` does when the port is taken, the schema is
not migrated, or PostgreSQL cannot be reached, and that the probes keep
answering while hundreds of clients hold connections open."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kjbtest import REPO, answers, free_port, get, wait_for

EXECUTOR = 'poll_interval = "200ms"; heartbeat = "500ms"; lease = "8s"; shutdown_timeout = "5s";'


def write_config(path: Path, port: int, kind: str = "hello") -> Path:
    path.write_text(f"""
kafka = {{ brokers = "127.0.0.1:1"; group = "http"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{port}"; }};
executor = {{ {EXECUTOR} }};
topics = ( {{ topic = "unused"; schema = "order_created.avsc"; jobs = ( {{ kind = "unused"; }} ); }} );
handlers = ( {{ kind = "{kind}"; type = "log"; concurrency = 4; }} );
""")
    return path


def env_for(conninfo: str) -> dict[str, str]:
    # An empty KJB_HTTP_LISTEN counts as unset: the file's address holds
    # whatever the caller's environment says.
    return {"KJB_POSTGRES_CONNINFO": conninfo, "KJB_HTTP_LISTEN": ""}


def test_executor_probes_and_metrics(db, run_kjb, start_kjb, tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port)
    env = env_for(str(db))
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)

    ok = (200, {"status": "ok"})
    wait_for(lambda: answers(port, "/startupz") == ok, timeout=30,
             message=lambda: f"{answers(port, '/startupz')}\n{proc.log()}")
    wait_for(lambda: answers(port, "/healthz") == ok, timeout=30,
             message=lambda: f"{answers(port, '/healthz')}\n{proc.log()}")
    assert answers(port, "/readyz") == ok

    n = 25
    db.query("INSERT INTO kjb.jobs (kind, args) SELECT 'hello', jsonb_build_object('i', g)"
             " FROM generate_series(1, %s) g RETURNING id", n)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE kind = 'hello'"
                               " AND state = 'completed'") == n,
             timeout=60, message=lambda: proc.log()[-3000:])

    def finished() -> float | None:
        status, ctype, body = get(port, "/metrics")
        assert status == 200
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        line = f'kjb_jobs_finished_total{{kind="hello",outcome="completed"}} {n}\n'
        return body if line in body else None

    # The outcomes are counted when recorded, a moment after the rows change.
    body = wait_for(finished, timeout=15, message=lambda: get(port, "/metrics")[2])

    # The whole exposition parses, and carries what DESIGN promises.
    families = {f.name: f for f in text_string_to_metric_families(body)}
    # The parser names counters without their _total suffix.
    jobs = families["kjb_jobs_finished"]
    assert jobs.type == "counter"
    # Every outcome's series exists from the start.
    assert [(s.name, s.labels, s.value) for s in jobs.samples] == [
        ("kjb_jobs_finished_total", {"kind": "hello", "outcome": "completed"}, n),
        ("kjb_jobs_finished_total", {"kind": "hello", "outcome": "retried"}, 0),
        ("kjb_jobs_finished_total", {"kind": "hello", "outcome": "discarded"}, 0)]
    info = families["kjb_build_info"]
    assert info.type == "gauge"
    assert len(info.samples) == 1 and info.samples[0].value == 1
    version = run_kjb(["version"]).stdout
    assert info.samples[0].labels["version"] in version
    for name, kind in [("process_cpu_seconds", "counter"), ("process_resident_memory_bytes", "gauge"),
                       ("process_virtual_memory_bytes", "gauge"), ("process_open_fds", "gauge"),
                       ("process_max_fds", "gauge"), ("process_start_time_seconds", "gauge")]:
        assert families[name].type == kind, name
        assert families[name].samples[0].value > 0, name

    # Unknown paths and other methods, without echoing the request.
    status, ctype, body = get(port, "/%3Cscript%3E?q=%3Cb%3E")
    assert (status, ctype, body) == (404, "application/json", '{"error":"not found"}')
    status, ctype, body = get(port, "/healthz", method="POST")
    assert (status, ctype, body) == (405, "application/json", '{"error":"method not allowed"}')
    assert proc.stop() == 0


def test_port_taken_fails_at_start(db, run_kjb, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = write_config(tmp_path / "kjb.cfg", port)
        res = run_kjb(["run", "--role", "executor"], cfg, env=env_for(str(db)), timeout=30)
    assert res.returncode == 1, res.stderr
    assert f"kjb: run: could not listen on 127.0.0.1:{port}: Address already in use" in res.stderr


def test_unmigrated_database(db, run_kjb, start_kjb, tmp_path):
    """kjb may start before the deployment's `kjb migrate`: it waits, live
    but neither started nor ready ("migrations pending"), and once the
    migrations are applied it starts and runs jobs."""
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port)
    env = env_for(str(db))
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: answers(port, "/startupz") == (503, {"status": "starting", "reason": "migrations pending"}),
             timeout=30, message=lambda: f"{answers(port, '/startupz')}\n{proc.log()}")
    assert answers(port, "/readyz") == (503, {"status": "not ready", "reason": "migrations pending"})
    assert answers(port, "/healthz") == (200, {"status": "ok"})
    pending = len(list((REPO / "schemas" / "sql").glob("*.sql")))
    assert f"{pending} migration(s) pending: waiting for `kjb migrate` to apply them" in proc.log()
    # Waiting is not failing: a few seconds on, it is still there.
    assert proc.alive()
    assert db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'kjb'") == 0

    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    ok = (200, {"status": "ok"})
    wait_for(lambda: answers(port, "/startupz") == ok and answers(port, "/readyz") == ok, timeout=30,
             message=lambda: f"{answers(port, '/startupz')} {answers(port, '/readyz')}\n{proc.log()}")
    assert "migrations applied: starting" in proc.log()
    db.query("INSERT INTO kjb.jobs (kind, args) VALUES ('hello', '{}') RETURNING id")
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 1,
             timeout=30, message=lambda: proc.log()[-3000:])
    assert proc.stop() == 0, proc.log()[-3000:]


def test_signal_while_waiting_for_migrations(db, start_kjb, tmp_path):
    """SIGTERM while waiting for migrations exits 0 without touching the
    schema."""
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port)
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env_for(str(db)))
    wait_for(lambda: "waiting for `kjb migrate`" in proc.log(), timeout=30, message=proc.log)
    assert proc.stop() == 0, proc.log()
    assert db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'kjb'") == 0


def test_postgres_unreachable_at_start(db, start_kjb, tmp_path):
    """PostgreSQL down when kjb starts: kjb run waits instead of exiting
    (a pod would crash-loop), says why in its log and its probes without
    the password, and stops cleanly on SIGTERM meanwhile."""
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port)
    closed = free_port()
    conninfo = f"host=127.0.0.1 port={closed} dbname=kjb user=kjb password=s3cret-pw connect_timeout=5"
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env_for(conninfo))
    waiting = "waiting for postgresql: could not connect to postgresql: "
    wait_for(lambda: (answers(port, "/readyz") or (0, {}))[1].get("reason", "").startswith(waiting),
             timeout=60, message=lambda: f"{answers(port, '/readyz')}\n{proc.log()}")
    status, body = answers(port, "/startupz")
    assert status == 503 and body["reason"].startswith(waiting), body
    assert answers(port, "/healthz") == (200, {"status": "ok"})
    assert "s3cret-pw" not in json.dumps(body)
    assert proc.alive()
    assert proc.stop() == 0, proc.log()
    assert waiting in proc.log() and "s3cret-pw" not in proc.log()


def open_fds(port: int) -> float:
    body = get(port, "/metrics")[2]
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return families["process_open_fds"].samples[0].value


def test_probes_answer_while_500_clients_dribble_headers(db, run_kjb, start_kjb, tmp_path):
    """A slowloris: 500 connections that send one header line every few
    seconds and never finish (the server used to run a thread per
    connection, at most 64, and reset everything past them, probes
    included). The server holds all of them, and /healthz answers within
    a second or two all along; then a burst of 300 requests at once is
    answered too."""
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port)
    env = env_for(str(db))
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    ok = (200, {"status": "ok"})
    wait_for(lambda: answers(port, "/healthz") == ok, timeout=30,
             message=lambda: f"{answers(port, '/healthz')}\n{proc.log()}")
    fds_before = open_fds(port)

    slow = []
    try:
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(s)
        start = time.monotonic()
        next_line, line, took = start, 0, []
        while time.monotonic() - start < 20:
            if time.monotonic() >= next_line:
                for s in slow:
                    s.sendall(f"X-Slow-{line}: 1\r\n".encode())
                line += 1
                next_line += 3
            t0 = time.monotonic()
            status, _, body = get(port, "/healthz", timeout=2)
            took.append(time.monotonic() - t0)
            assert (status, json.loads(body)) == ok
            time.sleep(0.5)
        assert len(took) >= 15 and max(took) < 2, took
        # The server holds every slow connection (a descriptor each), not
        # just the kernel's backlog; kjb's own connections (to PostgreSQL,
        # the health thread's) may have come and gone by a few meanwhile.
        held = open_fds(port) - fds_before
        assert held >= 495, f"{held} more descriptors with 500 slow clients connected"
    finally:
        for s in slow:
            s.close()

    burst = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(300)]
    try:
        for s in burst:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        for s in burst:
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    finally:
        for s in burst:
            s.close()
    assert proc.stop() == 0, proc.log()[-3000:]
