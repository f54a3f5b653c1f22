"""Ingest end to end: Avro records encoded by fastavro in all three framings
become job rows whose columns and args match an independent rendering of
the records, offsets are committed after the rows, and redelivery inserts
nothing twice."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

import avrokit
from kjbtest import everything, free_port, order, unique_name, wait_for, write_ingest_config

N = 40  # records per topic


def everything_topic(topic: str, fmt: str, kind_prefix: str) -> str:
    return f"""
  {{ topic = "{topic}"; format = "{fmt}"; schema = "everything.avsc";
     jobs = ( {{ kind = "{kind_prefix}_all"; }},
              {{ kind = "{kind_prefix}_pick"; queue = "picked"; priority = 3; max_attempts = 5;
                 args = [ "id", "customer.email", "color" ]; unique_key = "ev-${{id}}-${{color}}"; }} ); }}"""


def jobs_by_source(db) -> dict:
    rows = db.query(
        "SELECT source_topic, source_partition, source_offset, kind, queue, priority, max_attempts,"
        " state::text, attempt, args, meta, unique_key FROM kjb.jobs")
    out = {}
    for r in rows:
        key = (r[0], r[1], r[2], r[3])
        assert key not in out, f"duplicate job {key}"
        out[key] = dict(zip(("queue", "priority", "max_attempts", "state", "attempt", "args", "meta",
                             "unique_key"), r[4:]))
    return out


def test_three_framings_become_matching_job_rows(kafka, db, make_topic, run_kjb, start_kjb,
                                                 kjb_services_env, tmp_path):
    schema = avrokit.load(avrokit.E2E_SCHEMAS / "everything.avsc")
    topics = {"confluent": make_topic(), "raw": make_topic(), "single-object": make_topic()}
    base = {"confluent": 0, "raw": 1000, "single-object": 2000}
    group = unique_name("ingest")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, ",".join(
        everything_topic(t, fmt, fmt.replace("-", "_")) for fmt, t in topics.items()))
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0

    sent = {}
    for fmt, topic in topics.items():
        data = [everything(base[fmt] + i) for i in range(N)]
        if fmt == "confluent":
            values = [avrokit.confluent(schema, d, 7) for d in data]
        elif fmt == "raw":
            values = [avrokit.body(schema, d) for d in data]
        else:
            values = [avrokit.single_object(schema, d) for d in data]
        kafka.produce(topic, values, key=b"key-\xff", headers=[("trace-id", b"abc123"), ("bin", b"\xff\x00")])
        sent[fmt] = data

    proc = start_kjb(["run", "--role", "consumer"], cfg, env=kjb_services_env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 3 * N * 2, timeout=240,
             message=lambda: f"{3 * N * 2} jobs, have {db.scalar('SELECT count(*) FROM kjb.jobs')}\n{proc.log()}")
    jobs = jobs_by_source(db)
    for fmt, topic in topics.items():
        k = fmt.replace("-", "_")
        for offset, datum in enumerate(sent[fmt]):
            expected = avrokit.natural(schema, datum)
            whole = jobs[(topic, 0, offset, f"{k}_all")]
            avrokit.assert_same(whole["args"], expected, f"{fmt}@{offset}")
            assert (whole["queue"], whole["priority"], whole["max_attempts"]) == ("default", 0, 20)
            assert (whole["state"], whole["attempt"], whole["unique_key"]) == ("available", 0, None)
            assert whole["meta"]["topic"] == topic and whole["meta"]["partition"] == 0
            assert whole["meta"]["offset"] == offset
            assert whole["meta"]["key"] == {"base64": "a2V5Lf8="}
            assert whole["meta"]["headers"] == {"trace-id": "abc123", "bin": {"base64": "/wA="}}
            assert isinstance(whole["meta"]["timestamp"], int) and whole["meta"]["timestamp"] > 0
            pick = jobs[(topic, 0, offset, f"{k}_pick")]
            assert pick["args"] == {"id": datum["id"], "customer.email": datum["customer"]["email"],
                                    "color": datum["color"]}
            assert (pick["queue"], pick["priority"], pick["max_attempts"]) == ("picked", 3, 5)
            assert pick["unique_key"] == f"ev-{datum['id']}-{datum['color']}"

    # Graceful stop: exit 0, and the group's committed offsets are the ends.
    assert proc.stop() == 0
    for topic in topics.values():
        assert kafka.committed(group, topic) == {0: N}


def test_schema_evolution_between_writer_and_reader(kafka, db, make_topic, run_kjb, start_kjb,
                                                    kjb_services_env, tmp_path):
    v1 = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    v2 = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created_v2.avsc")
    new_reader, old_reader = make_topic(), make_topic()
    cfg = write_ingest_config(tmp_path / "kjb.cfg", unique_name("evolve"), f"""
  {{ topic = "{new_reader}"; schema = "order_created_v2.avsc"; jobs = ( {{ kind = "new_reader"; }} ); }},
  {{ topic = "{old_reader}"; schema = "order_created.avsc"; jobs = ( {{ kind = "old_reader"; }} ); }}""")
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    # Reader v2 gets a v1 record (added field takes its default) and a v2 one;
    # reader v1 gets a v2 record (the field it does not know is dropped).
    kafka.produce(new_reader, [avrokit.confluent(v1, order(1), 1), avrokit.confluent(v2, order(2, "app"), 2)])
    kafka.produce(old_reader, [avrokit.confluent(v2, order(3, "app"), 2)])
    start_kjb(["run"], cfg, env=kjb_services_env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 3, timeout=240, message="3 jobs")
    args = {r[0]: r[1] for r in db.query("SELECT (args->>'order_id')::int, args FROM kjb.jobs")}
    assert args[1]["channel"] == "web"
    assert args[2]["channel"] == "app"
    assert "channel" not in args[3]
    assert args[3]["amount"] == "19.99" and args[3]["created_at"] == "2025-11-21T10:00:00.003Z"


def test_redelivery_inserts_nothing_twice(kafka, db, make_topic, run_kjb, start_kjb,
                                          kjb_services_env, tmp_path):
    v1 = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    topic, group = make_topic(partitions=3), unique_name("redeliver")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc";
     jobs = ( {{ kind = "a"; }}, {{ kind = "b"; args = [ "order_id" ]; }} ); }}""")
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    kafka.produce(topic, [avrokit.confluent(v1, order(i), 1) for i in range(300)])
    proc = start_kjb(["run"], cfg, env=kjb_services_env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 600, timeout=240, message="600 jobs")
    assert proc.stop() == 0
    before = db.scalar("SELECT max(id) FROM kjb.jobs")

    # Rewind the group with Kafka's own tool: every record is delivered again.
    res = kafka.consumer_groups("--group", group, "--topic", topic, "--reset-offsets",
                                "--to-earliest", "--execute")
    assert res.returncode == 0, res.stderr
    assert kafka.committed(group, topic) == {0: 0, 1: 0, 2: 0}
    proc = start_kjb(["run"], cfg, env=kjb_services_env, name="again")
    wait_for(lambda: sum(kafka.committed(group, topic).values()) == 300, timeout=240,
             message="the group to commit all 300 records again")
    assert proc.stop() == 0
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == 600
    assert db.scalar("SELECT max(id) FROM kjb.jobs") == before
    assert db.scalar("SELECT count(DISTINCT (source_partition, source_offset)) FROM kjb.jobs") == 300


class _Registry(http.server.BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and int(parts[2]) in self.schemas:
            body = json.dumps({"schema": self.schemas[int(parts[2])]}).encode()
            self.send_response(200)
        else:
            body = b'{"error_code":40403,"message":"Schema not found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_registry_down_is_retried_not_dead_lettered(kafka, db, make_topic, run_kjb, start_kjb,
                                                    kjb_services_env, tmp_path):
    v1 = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    topic, group = make_topic(), unique_name("registry")
    port = free_port()
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "reg"; }} ); }}""",
                       registry=f"http://127.0.0.1:{port}")
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    # Schema id 99 lives only in the registry; 98 exists nowhere.
    kafka.produce(topic, [avrokit.confluent(v1, order(1), 99), avrokit.confluent(v1, order(2), 98),
                          avrokit.confluent(v1, order(3), 1)])
    proc = start_kjb(["run"], cfg, env=kjb_services_env)
    wait_for(lambda: "schema registry" in proc.log() or "could not fetch schema id 99" in proc.log(),
             timeout=240, message="kjb to report the registry unreachable")
    # While the registry is down nothing is stored, dead-lettered or committed.
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == 0
    assert kafka.committed(group, topic)[0] < 0
    if f"{topic}.dlq" in kafka.admin().list_topics(timeout=10).topics:
        assert kafka.record_counts(f"{topic}.dlq") == {0: 0}

    _Registry.schemas = {99: (avrokit.PRODUCT_SCHEMAS / "order_created.avsc").read_text()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 2, timeout=240,
                 message=lambda: f"2 jobs once the registry is up\n{proc.log()}")
        assert sorted(r[0] for r in db.query("SELECT source_offset FROM kjb.jobs")) == [0, 2]
        # Rows commit before the batch's dead letters are acknowledged (the
        # offset commit waits for both); the DLQ topic may still be new.
        wait_for(lambda: kafka.record_counts(f"{topic}.dlq") == {0: 1}, timeout=30, message="1 dead letter")
        dlq = kafka.consume(f"{topic}.dlq", count=1, timeout=30)
        assert dlq[0].header("__connect.errors.exception.class.name") == "kjb.UNKNOWN_SCHEMA_ID"
        assert dlq[0].header("__connect.errors.offset") == "1"
        wait_for(lambda: kafka.committed(group, topic)[0] == 3, timeout=30, message="offset 3 committed")
    finally:
        server.shutdown()


def test_bad_record_goes_to_dlq_and_neighbours_flow(kafka, db, make_topic, run_kjb, start_kjb,
                                                    kjb_services_env, tmp_path):
    v1 = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    topic, group = make_topic(), unique_name("dlq")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "d"; }} ); }}""")
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    good = avrokit.confluent(v1, order(1), 1)
    bad = b"\x07" + good[1:]
    kafka.produce(topic, [good, bad, avrokit.confluent(v1, order(2), 1)], key=b"k1",
                  headers=[("h", b"v")])
    start_kjb(["run"], cfg, env=kjb_services_env)
    wait_for(lambda: kafka.record_counts(f"{topic}.dlq") == {0: 1}, timeout=240, message="1 dead letter")
    dlq = kafka.consume(f"{topic}.dlq", count=1, timeout=30)[0]
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 2, timeout=30, message="2 jobs")
    assert sorted(r[0] for r in db.query("SELECT source_offset FROM kjb.jobs")) == [0, 2]
    assert dlq.value == bad and dlq.key == b"k1"
    assert dlq.header("h") == "v"
    assert dlq.header("__connect.errors.topic") == topic
    assert dlq.header("__connect.errors.partition") == "0"
    assert dlq.header("__connect.errors.offset") == "1"
    assert dlq.header("__connect.errors.stage") == "VALUE_CONVERTER"
    assert dlq.header("__connect.errors.class.name") == "kjb"
    assert dlq.header("__connect.errors.exception.class.name") == "kjb.BAD_MAGIC"
    assert dlq.header("__connect.errors.exception.message") == "byte 0: bad magic byte 0x07, expected 0x00"
    assert dlq.header("kjb.consumer.group") == group
    assert dlq.header("kjb.original.timestamp").isdigit()
    assert dlq.header("kjb.dead_lettered_at").endswith("Z")
