"""kafka.brokers = "embedded": an in-process development cluster.

Needs only PostgreSQL (no `kafka` fixture, so the session's broker is not
even started when these tests run alone): `kjb run` starts librdkafka's
mock cluster inside itself, and `kjb produce`, `kjb dlq peek` and
`kjb replay` with the same configuration find it through the running
service's /api/stats."""

from __future__ import annotations

import json
import re
import signal

from confluent_kafka import Producer

from kjbtest import REPO, answers, free_port, get, unique_name, wait_for

ORDERS = (REPO / "tests/e2e/data/orders.jsonl").read_text().splitlines()


def write_config(path, port: int, group: str):
    path.write_text(f"""
kafka = {{ brokers = "embedded"; group = "{group}"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{port}"; }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
executor = {{ poll_interval = "200ms"; shutdown_timeout = "5s"; }};
schemas = {{ ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
topics = (
  {{ topic = "orders"; schema = "order_created.avsc";
     jobs = ( {{ kind = "send_confirmation"; unique_key = "${{order_id}}"; }} ); }}
);
handlers = ( {{ kind = "send_confirmation"; type = "log"; }} );
""")
    return path


def env_for(db) -> dict[str, str]:
    # Nothing from the caller's environment may point kjb elsewhere.
    return {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": "", "KJB_KAFKA_BROKERS": ""}


def test_embedded_cluster_runs_a_mapping_with_only_postgres(db, run_kjb, start_kjb, tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port, unique_name("embedded"))
    env = env_for(db)
    orders = "\n".join(ORDERS[:6]) + "\n"

    # Without a running service there is no cluster: a clear error, exit 1.
    res = run_kjb(["produce", "--topic", "orders"], cfg, env=env, input=orders)
    assert res.returncode == 1
    assert res.stderr.startswith(
        f'kjb: produce: kafka.brokers is "embedded": no kjb service answers on '
        f"http://127.0.0.1:{port}/api/stats (")
    assert res.stderr.rstrip().endswith(
        "start `kjb run` with this configuration first, or set KJB_KAFKA_BROKERS to the "
        "address it logged")

    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    kjb = start_kjb(["run"], cfg, env=env)
    wait_for(lambda: answers(port, "/readyz") == (200, {"status": "ok"}), timeout=120,
             message="/readyz 200 (partitions of the embedded cluster assigned)")
    m = re.search(r"embedded development cluster on (127\.0\.0\.1:\d+): records live in this "
                  r"process's memory and are gone when it exits; not for production", kjb.log())
    assert m, kjb.log()
    address = m.group(1)
    status, _, body = get(port, "/api/stats")
    assert status == 200 and json.loads(body)["embedded_kafka"] == address

    res = run_kjb(["produce", "--topic", "orders"], cfg, env=env, input=orders)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines()[-1] == \
        'kjb: produce: 6 records produced to "orders", 0 bad lines, 0 undelivered'

    # Bad records straight to the embedded broker, the way any client would.
    p = Producer({"bootstrap.servers": address})
    p.produce("orders", b"\x07not avro", key=b"bad-magic", partition=0)
    p.produce("orders", b"\x00\x00\x00\x00\x09xx", key=b"unknown-id", partition=3)
    assert p.flush(30) == 0

    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 6,
             timeout=120, message="6 completed jobs")
    rows = db.query("SELECT (args->>'order_id')::bigint, source_topic, source_partition, source_offset "
                    "FROM kjb.jobs ORDER BY 1")
    assert [r[0] for r in rows] == sorted(json.loads(line)["order_id"] for line in ORDERS[:6])
    assert {r[1] for r in rows} == {"orders"}
    assert len({(r[2], r[3]) for r in rows}) == 6

    # The dead letters, read back through the service: 4 partitions, most
    # of them empty, and `peek` still shows both records.
    def dead_letters():
        res = run_kjb(["dlq", "peek", "--topic", "orders.dlq", "--json"], cfg, env=env)
        assert res.returncode == 0, res.stderr
        return [json.loads(line) for line in res.stdout.splitlines()]

    wait_for(lambda: len(dead_letters()) == 2, timeout=60, message="2 dead letters")
    by_key = {}
    for r in dead_letters():
        by_key[r["key"]] = r
    assert sorted(by_key) == ["bad-magic", "unknown-id"], by_key
    headers = {k: r["headers"] for k, r in by_key.items()}
    assert headers["bad-magic"]["__connect.errors.exception.class.name"] == "kjb.BAD_MAGIC"
    assert headers["bad-magic"]["__connect.errors.partition"] == "0"
    assert headers["unknown-id"]["__connect.errors.exception.class.name"] == "kjb.UNKNOWN_SCHEMA_ID"
    assert headers["unknown-id"]["__connect.errors.partition"] == "3"

    # Replay finds the same two still failing, and creates nothing.
    res = run_kjb(["replay", "--topic", "orders.dlq", "--reset-offsets", "to-earliest"], cfg, env=env)
    assert res.returncode == 1
    *per_reason, total = res.stdout.splitlines()
    assert total == "replayed 0, still failing 2, already present 0"
    # One line per reason, in the order the partitions gave them.
    assert sorted(per_reason) == [
        "BAD_MAGIC: 1 record: 0 became jobs, 0 already present, 1 still failing",
        "UNKNOWN_SCHEMA_ID: 1 record: 0 became jobs, 0 already present, 1 still failing"], res.stdout
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == 6

    assert kjb.stop() == 0
    assert "no kjb service" not in kjb.log()


def test_embedded_needs_a_service_with_an_embedded_cluster(db, run_kjb, start_kjb, tmp_path):
    """A service that answers on http.listen but runs against a real
    broker address is not an embedded cluster: the client says so."""
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port, unique_name("embedded"))
    env = env_for(db)
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    kjb = start_kjb(["run", "--role", "executor"], cfg,
                    env={**env, "KJB_KAFKA_BROKERS": "127.0.0.1:1"})
    wait_for(lambda: answers(port, "/healthz") == (200, {"status": "ok"}), timeout=60,
             message="/healthz 200")
    res = run_kjb(["dlq", "peek", "--topic", "orders.dlq"], cfg, env=env)
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f'kjb: dlq peek: kafka.brokers is "embedded": the service on '
        f"http://127.0.0.1:{port}/api/stats (HTTP 200) runs no embedded cluster: start `kjb run` "
        "with this configuration first, or set KJB_KAFKA_BROKERS to the address it logged")
    kjb.signal(signal.SIGTERM)
    assert kjb.wait(timeout=30) == 0
