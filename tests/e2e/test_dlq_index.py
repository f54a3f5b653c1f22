"""The dead-letter workbench, first part: the index kjb.dead_letters that the
consumer writes as it dead-letters, `kjb dlq ls|show|stats|ignore|reindex`
with their filters, the audit trail kjb.audit (`kjb audit ls`) and the
kjb_dead_letters gauge, against a real Kafka and PostgreSQL.

One `kjb run` (module fixture `world`) dead-letters a known set of bad
records from two topics; the tests then check the rows against the DLQ
records as a read_committed reader sees them, and drive the commands. The
crash test SIGKILLs kjb again and again while it dead-letters a stream
and checks that committed DLQ records and rows match one to one."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import json
import os
import pwd
import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import avrokit
from kjbtest import (Database, Kjb, KjbProcess, Record, caught_up, drop_db, free_port, get, make_db, order, request,
                    stop_checked, unique_name, wait_for, write_ingest_config)

ORDER = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
USER = pwd.getpwuid(os.geteuid()).pw_name
TOKEN = "dlq-index-admin-token"

# A confluent record of order_created (id 1) whose customer.email claims 5
# bytes and holds 2: the length varint is body byte 2, record byte 7.
BAD_LENGTH = b"\x00\x00\x00\x00\x01" + b"\x02" + b"\x0e" + b"\x0a" + b"ab"
BAD_LENGTH_MESSAGE = ('avro body at byte 5: field "customer.email": length 5 at byte 2 '
                      "exceeds the 2 bytes left")


@dataclass
class Bad:
    """A bad record: where it goes, its key, its bytes, and what kjb says."""

    topic: str  # "src" or "other" (the fixture's two mapped topics)
    partition: int
    key: bytes | None
    value: bytes | None
    reason: str
    message: str
    offset: int = -1  # filled in once produced


def bad_records() -> list[Bad]:
    unknown = b"\x00\x00\x00\x00\x09" + avrokit.body(ORDER, order(9))
    return [
        Bad("src", 0, b"k-a", b"\x07junk", "BAD_MAGIC", "byte 0: bad magic byte 0x07, expected 0x00"),
        Bad("src", 0, None, unknown, "UNKNOWN_SCHEMA_ID",
            "schema id 9 is not in schemas.ids and no registry is configured"),
        Bad("src", 0, b"\xff\x00k", BAD_LENGTH, "BAD_LENGTH", BAD_LENGTH_MESSAGE),
        Bad("src", 1, b"k-b", b"\x01\x02\x03\x04\x05", "BAD_MAGIC", "byte 0: bad magic byte 0x01, expected 0x00"),
        Bad("src", 1, b"k-a", b"\x07junk2", "BAD_MAGIC", "byte 0: bad magic byte 0x07, expected 0x00"),
        Bad("other", 0, b"k-c", b"\x07\x00\x00\x00\x01", "BAD_MAGIC", "byte 0: bad magic byte 0x07, expected 0x00"),
        Bad("other", 0, b"", b"", "SHORT_HEADER",
            "record is 0 bytes, shorter than the 5-byte confluent header"),
    ]


def rfc3339_ms(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def table(stdout: str) -> list[list[str]]:
    """A text table's rows (header first), cells split on two or more blanks."""
    return [re.split(r" {2,}", ln) for ln in stdout.splitlines()]


ROW_COLUMNS = ("id, dlq_topic, dlq_partition, dlq_offset, source_topic, source_partition, source_offset, "
               "key, reason, stage, message, consumer_group, original_timestamp, dead_lettered_at, "
               "value_size, status, replays, last_replayed_at, last_error, edited")


def rows(db: Database, where: str = "TRUE", *params) -> list[dict]:
    names = [c.strip() for c in ROW_COLUMNS.split(",")]
    out = []
    for r in db.query(f"SELECT {ROW_COLUMNS} FROM kjb.dead_letters WHERE {where} ORDER BY id", *params):
        d = dict(zip(names, r))
        d["key"] = None if d["key"] is None else bytes(d["key"])
        out.append(d)
    return out


# --------------------------------------------------------------------------
# The world: one run that dead-letters the known records


@dataclass
class World:
    kjb: Kjb
    db: Database
    kafka: object
    group: str
    topics: dict[str, str]  # "src"/"other" -> real topic name
    dlqs: dict[str, str]  # "src"/"other" -> its DLQ topic
    bad: list[Bad]
    good: int
    port: int
    proc: KjbProcess
    ids: dict[tuple[str, int, int], int] = field(default_factory=dict)  # source coords -> row id


@pytest.fixture(scope="module")
def world(kafka, pg, kjb_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dlq_index")
    db = make_db(pg, "dlq_index")
    group = unique_name("dlqidx")
    topics = {k: kafka.create_topic(unique_name(f"dlqidx_{k}"), 2) for k in ("src", "other")}
    dlqs = {k: kafka.create_topic(f"{t}.dlq", 2) for k, t in topics.items()}
    mapping = ",\n".join(
        f'{{ topic = "{t}"; schema = "order_created.avsc"; jobs = ( {{ kind = "job_{k}"; }} ); }}'
        for k, t in topics.items())
    cfg = write_ingest_config(tmp / "kjb.cfg", group, mapping)
    port = free_port()
    env = {"KJB_KAFKA_BROKERS": kafka.bootstrap, "KJB_POSTGRES_CONNINFO": str(db),
           "KJB_HTTP_LISTEN": f"127.0.0.1:{port}", "KJB_ADMIN_TOKEN": TOKEN}
    kjb = Kjb(kjb_bin, cfg, env)
    kjb.ok("migrate")

    # Each bad record between good ones on its partition.
    bad = bad_records()
    good = 0
    producer = kafka.producer(**{"enable.idempotence": True, "acks": "all"})
    delivered: dict[int, tuple[int, int]] = {}

    def on_delivery(i):
        def cb(err, msg):
            assert err is None, err
            delivered[i] = (msg.partition(), msg.offset())
        return cb

    for i, b in enumerate(bad):
        for _ in range(2):
            producer.produce(topics[b.topic], value=avrokit.confluent(ORDER, order(100 + good), 1),
                             partition=b.partition)
            good += 1
        producer.produce(topics[b.topic], value=b.value, key=b.key, partition=b.partition,
                         headers=[("trace", f"t{i}".encode())], on_delivery=on_delivery(i))
    producer.produce(topics["src"], value=avrokit.confluent(ORDER, order(999), 1), partition=0)
    good += 1
    assert producer.flush(30) == 0
    for i, b in enumerate(bad):
        assert delivered[i][0] == b.partition
        b.offset = delivered[i][1]

    proc = kjb.start(tmp / "kjb.log", "--role", "consumer")
    w = World(kjb, db, kafka, group, topics, dlqs, bad, good, port, proc)
    try:
        wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.dead_letters") == len(bad)
                 and db.scalar("SELECT count(*) FROM kjb.jobs") == good
                 and all(caught_up(kafka, group, t) for t in topics.values()),
                 timeout=240, interval=0.5,
                 message=lambda: (f"{len(bad)} rows and {good} jobs, offsets at the end; have "
                                  f"{db.scalar('SELECT count(*) FROM kjb.dead_letters')} rows, "
                                  f"{db.scalar('SELECT count(*) FROM kjb.jobs')} jobs, offsets "
                                  f"{[(kafka.committed(group, t), kafka.end_offsets(t)) for t in topics.values()]}\n"
                                  f"{proc.log()[-4000:]}"))
        for r in rows(db):
            w.ids[(r["source_topic"], r["source_partition"], r["source_offset"])] = r["id"]
        yield w
    finally:
        if proc.alive():
            stop_checked(proc)
        drop_db(pg, db)


def id_of(w: World, b: Bad) -> int:
    return w.ids[(w.topics[b.topic], b.partition, b.offset)]


def ids_where(w: World, pred) -> list[int]:
    return sorted(id_of(w, b) for b in w.bad if pred(b))


# --------------------------------------------------------------------------
# The rows the consumer writes


def test_each_dead_letter_has_exactly_its_row(world):
    w = world
    records: dict[tuple[str, int, int], Record] = {}
    for dlq in w.dlqs.values():
        for r in w.kafka.consume(dlq):
            records[(dlq, r.partition, r.offset)] = r
    assert len(records) == len(w.bad), f"one DLQ record per bad record: {sorted(records)}"
    index = rows(w.db)
    assert len(index) == len(w.bad)
    by_dlq = {(r["dlq_topic"], r["dlq_partition"], r["dlq_offset"]): r for r in index}
    assert set(by_dlq) == set(records), "rows and committed DLQ records match one to one"

    for b in w.bad:
        rid = id_of(w, b)
        row = next(r for r in index if r["id"] == rid)
        rec = records[(row["dlq_topic"], row["dlq_partition"], row["dlq_offset"])]
        # The row's coordinates, reason and key are the record's.
        assert row["dlq_topic"] == w.dlqs[b.topic]
        assert (row["source_topic"], row["source_partition"], row["source_offset"]) == \
            (w.topics[b.topic], b.partition, b.offset)
        assert rec.header("__connect.errors.topic") == w.topics[b.topic]
        assert rec.header("__connect.errors.partition") == str(b.partition)
        assert rec.header("__connect.errors.offset") == str(b.offset)
        assert row["reason"] == b.reason
        assert rec.header("__connect.errors.exception.class.name") == f"kjb.{b.reason}"
        assert row["message"] == b.message == rec.header("__connect.errors.exception.message")
        assert row["stage"] == "VALUE_CONVERTER" == rec.header("__connect.errors.stage")
        assert row["key"] == b.key == rec.key
        assert row["value_size"] == len(b.value or b"") == len(rec.value or b"")
        assert row["consumer_group"] == w.group == rec.header("kjb.consumer.group")
        # The same instant in the header and the row, to the millisecond.
        assert row["dead_lettered_at"] == rfc3339_ms(rec.header("kjb.dead_lettered_at"))
        assert row["original_timestamp"] == dt.datetime.fromtimestamp(
            int(rec.header("kjb.original.timestamp")) / 1000, dt.timezone.utc)
        assert (row["status"], row["replays"], row["last_replayed_at"], row["last_error"], row["edited"]) == \
            ("dead", 0, None, None, False)
    # Good records became jobs, bad ones none.
    bad_coords = {(w.topics[b.topic], b.partition, b.offset) for b in w.bad}
    job_coords = set(w.db.query("SELECT source_topic, source_partition, source_offset FROM kjb.jobs"))
    assert len(job_coords) == w.good and not job_coords & bad_coords


def test_reindex_of_the_consumers_dlq_changes_nothing(world):
    """What the consumer wrote is exactly what the DLQ topic says."""
    w = world
    before = rows(w.db)
    for k in ("src", "other"):
        n = sum(1 for b in w.bad if b.topic == k)
        out = w.kjb.ok("dlq", "reindex", "--topic", w.dlqs[k], "--actor", "reindexer")
        assert out == (f'reindexed "{w.dlqs[k]}": {n} records (0 not dead letters); 0 rows added, 0 updated, '
                       f"{n} unchanged, 0 removed (no committed record), 0 kept before the log start\n")
    assert rows(w.db) == before
    audit = w.db.query("SELECT actor, action, params, result FROM kjb.audit WHERE action = 'dlq.reindex' ORDER BY id")
    assert audit == [("reindexer", "dlq.reindex", {"topic": w.dlqs[k]},
                      {"records": n, "not_dead_letters": 0, "inserted": 0, "updated": 0, "unchanged": n,
                       "removed": 0, "before_start": 0})
                     for k, n in (("src", 5), ("other", 2))]
    w.db.query("DELETE FROM kjb.audit")


# --------------------------------------------------------------------------
# Filters


def ls_ids(w: World, *args: str) -> list[int]:
    return [r["id"] for r in w.kjb.json("dlq", "ls", *args)]


def test_filters(world):
    w = world
    src, other = w.topics["src"], w.topics["other"]
    all_ids = sorted(w.ids.values())
    assert ls_ids(w) == all_ids
    a, b = all_ids[1], all_ids[4]
    assert ls_ids(w, "--id", str(b), "--id", str(a)) == [a, b]
    assert ls_ids(w, "--id", str(max(all_ids) + 1000)) == []
    assert ls_ids(w, "--dlq-topic", w.dlqs["other"]) == ids_where(w, lambda x: x.topic == "other")
    assert ls_ids(w, "--source-topic", src) == ids_where(w, lambda x: x.topic == "src")
    assert ls_ids(w, "--source-topic", f"{src}.dlq") == []
    magic = ids_where(w, lambda x: x.reason == "BAD_MAGIC")
    assert len(magic) == 4
    assert ls_ids(w, "--reason", "BAD_MAGIC") == magic
    assert ls_ids(w, "--reason", "kjb.BAD_MAGIC") == magic
    assert ls_ids(w, "--reason", "bad_magic") == []
    ka = ids_where(w, lambda x: x.key == b"k-a")
    assert len(ka) == 2
    assert ls_ids(w, "--key", "k-a") == ka
    assert ls_ids(w, "--key", "") == ids_where(w, lambda x: x.key == b"")
    assert ls_ids(w, "--key", "k-") == []
    # Combinations: every condition must hold.
    assert ls_ids(w, "--key", "k-a", "--reason", "BAD_MAGIC", "--source-topic", src) == ka
    assert ls_ids(w, "--key", "k-a", "--dlq-topic", w.dlqs["other"]) == []
    assert ls_ids(w, "--reason", "BAD_MAGIC", "--dlq-topic", w.dlqs["other"]) == \
        ids_where(w, lambda x: x.reason == "BAD_MAGIC" and x.topic == "other")
    assert ls_ids(w, "--reason", "BAD_MAGIC", "--id", str(all_ids[0]), "--id", str(all_ids[1])) == \
        [i for i in all_ids[:2] if i in magic]
    assert ls_ids(w, "--status", "dead") == all_ids
    assert ls_ids(w, "--status", "ignored") == []
    assert ls_ids(w, "--limit", "3") == all_ids[:3]
    assert ls_ids(w, "--reason", "BAD_MAGIC", "--limit", "2") == magic[:2]

    # Times: two rows moved into the past; --since is inclusive, --until not.
    x, y = all_ids[0], all_ids[1]
    w.db.query("UPDATE kjb.dead_letters SET dead_lettered_at = %s WHERE id = %s",
               dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), x)
    w.db.query("UPDATE kjb.dead_letters SET dead_lettered_at = %s WHERE id = %s",
               dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc), y)
    assert ls_ids(w, "--until", "2026-01-01T12:00:00Z") == [x]
    assert ls_ids(w, "--since", "2026-01-01T12:00:00Z", "--until", "2026-01-02T12:00:00Z") == [y]
    assert ls_ids(w, "--since", "2026-01-01T00:00:00Z", "--until", "2026-01-01T00:00:00.000001Z") == [x]
    assert ls_ids(w, "--until", "2026-01-01T00:00:00Z") == []
    assert ls_ids(w, "--since", "2026-01-02T01:00:00+01:00", "--until", "2026-01-02T00:00:01Z") == [y]
    assert ls_ids(w, "--since", "1h") == all_ids[2:]
    assert ls_ids(w, "--since", "3650d", "--until", "1h") == [x, y]
    assert ls_ids(w, "--since", "1h", "--reason", "BAD_MAGIC") == [i for i in magic if i not in (x, y)]


# --------------------------------------------------------------------------
# Output


def test_ls_and_stats_output(world):
    w = world
    t = table(w.kjb.ok("dlq", "ls", "--source-topic", w.topics["src"]))
    assert t[0] == ["ID", "DEAD_LETTERED_AT", "STATUS", "REASON", "SOURCE", "DLQ", "KEY", "MESSAGE"]
    src_bad = [b for b in w.bad if b.topic == "src"]
    assert len(t) == 1 + len(src_bad)
    index = {r["id"]: r for r in rows(w.db)}
    keys = {b"k-a": "k-a", b"k-b": "k-b", None: "-", b"\xff\x00k": "0xff006b"}
    for line, b in zip(t[1:], sorted(src_bad, key=lambda b: id_of(w, b))):
        r = index[id_of(w, b)]
        msg = b.message if len(b.message) <= 80 else b.message[:77] + "..."
        assert line == [str(r["id"]), r["dead_lettered_at"].strftime("%Y-%m-%dT%H:%M:%SZ"), r["status"], b.reason,
                        f'{w.topics["src"]} [{b.partition}] @{b.offset}',
                        f'{r["dlq_topic"]} [{r["dlq_partition"]}] @{r["dlq_offset"]}', keys[b.key], msg]

    # JSON: every column; keys as text, or base64 when not UTF-8.
    listed = w.kjb.json("dlq", "ls", "--source-topic", w.topics["src"])
    assert [o["id"] for o in listed] == [id_of(w, b) for b in sorted(src_bad, key=lambda b: id_of(w, b))]
    for o in listed:
        r = index[o["id"]]
        assert list(o) == ["id", "dlq_topic", "dlq_partition", "dlq_offset", "source_topic", "source_partition",
                           "source_offset", "key", "reason", "stage", "message", "consumer_group",
                           "original_timestamp", "dead_lettered_at", "value_size", "status", "replays",
                           "last_replayed_at", "last_error", "edited"]
        want_key = None if r["key"] is None else (
            {"base64": base64.b64encode(r["key"]).decode()} if r["key"] == b"\xff\x00k" else r["key"].decode())
        assert o["key"] == want_key
        assert o["dead_lettered_at"] == r["dead_lettered_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for k in ("dlq_topic", "dlq_partition", "dlq_offset", "source_topic", "source_partition", "source_offset",
                  "reason", "stage", "message", "consumer_group", "value_size", "status", "replays",
                  "last_replayed_at", "last_error", "edited"):
            assert o[k] == r[k], k
    assert w.kjb.ok("dlq", "ls", "--status", "failing", "--json") == "[]\n"

    # stats: by DLQ topic, reason and status, with the total.
    counts: dict[tuple[str, str, str], int] = {}
    for b in w.bad:
        k = (w.dlqs[b.topic], b.reason, "dead")
        counts[k] = counts.get(k, 0) + 1
    want = [{"dlq_topic": d, "reason": r, "status": s, "count": n} for (d, r, s), n in sorted(counts.items())]
    assert w.kjb.json("dlq", "stats") == {"total": len(w.bad), "counts": want}
    t = table(w.kjb.ok("dlq", "stats"))
    assert t == [["DLQ_TOPIC", "REASON", "STATUS", "COUNT"]] + \
        [[c["dlq_topic"], c["reason"], c["status"], str(c["count"])] for c in want] + [["total", str(len(w.bad))]]
    assert w.kjb.json("dlq", "stats", "--reason", "SHORT_HEADER") == {
        "total": 1, "counts": [{"dlq_topic": w.dlqs["other"], "reason": "SHORT_HEADER", "status": "dead", "count": 1}]}


def test_show_marks_the_failing_byte(world):
    w = world
    b = next(x for x in w.bad if x.reason == "BAD_LENGTH")
    rid = id_of(w, b)
    out = w.kjb.ok("dlq", "show", str(rid))
    lines = out.splitlines()
    fields = dict(re.split(r" {2,}", ln, maxsplit=1) for ln in lines[:lines.index("")])
    r = rows(w.db, "id = %s", rid)[0]
    assert fields["id"] == str(rid)
    assert fields["reason"] == "BAD_LENGTH"
    assert fields["message"] == BAD_LENGTH_MESSAGE
    assert fields["key"] == "0xff006b"
    assert fields["source_offset"] == str(b.offset)
    assert fields["dlq_offset"] == str(r["dlq_offset"])
    assert fields["edited"] == "false"
    assert fields["failing_field"] == "customer.email"
    assert fields["failing_byte"] == "7"
    assert "  trace: t2" in lines
    assert f"  __connect.errors.exception.class.name: kjb.BAD_LENGTH" in lines
    i = lines.index("value: 10 bytes, the failing byte marked ^^")
    assert lines[i + 1] == "  00000000  00 00 00 00 01 02 0e 0a  61 62                    |........ab|"
    # The marker stands under the two hex digits of byte 7 ("0a").
    assert lines[i + 2] == " " * lines[i + 1].index("0a") + "^^ byte 7"
    assert f"decoded with the current configuration: fails: kjb.BAD_LENGTH: {BAD_LENGTH_MESSAGE}" in lines

    shown = w.kjb.json("dlq", "show", str(rid))
    assert shown["failing_byte"] == 7 and shown["failing_field"] == "customer.email"
    assert shown["record"]["value"] == {"base64": base64.b64encode(BAD_LENGTH).decode()}
    assert shown["record"]["key"] == {"base64": base64.b64encode(b"\xff\x00k").decode()}
    names = [h["name"] for h in shown["record"]["headers"]]
    assert names[0] == "trace" and "__connect.errors.offset" in names and "kjb.dead_lettered_at" in names
    assert shown["record_error"] is None and shown["decoded"] is None
    assert shown["decode_error"] == f"kjb.BAD_LENGTH: {BAD_LENGTH_MESSAGE}"

    # Byte 0 of a bad magic byte; a message with no byte marks nothing.
    magic = next(x for x in w.bad if x.value == b"\x01\x02\x03\x04\x05")
    lines = w.kjb.ok("dlq", "show", str(id_of(w, magic))).splitlines()
    i = lines.index("value: 5 bytes, the failing byte marked ^^")
    assert lines[i + 1:i + 3] == ["  00000000  01 02 03 04 05" + " " * 34 + "  |.....|", " " * 12 + "^^ byte 0"]
    unknown = next(x for x in w.bad if x.reason == "UNKNOWN_SCHEMA_ID")
    shown = w.kjb.json("dlq", "show", str(id_of(w, unknown)))
    assert shown["failing_byte"] is None and shown["key"] is None and shown["record"]["key"] is None
    lines = w.kjb.ok("dlq", "show", str(id_of(w, unknown))).splitlines()
    assert f"value: {len(unknown.value)} bytes" in lines and not any("^^" in ln for ln in lines)

    res = w.kjb("dlq", "show", "999999")
    assert (res.returncode, res.stdout, res.stderr) == (1, "", "kjb: dlq show: no dead letter 999999\n")

    # A row whose record the topic does not hold: the row, and exit 1.
    gone = w.db.scalar(
        "INSERT INTO kjb.dead_letters (dlq_topic, dlq_partition, dlq_offset, source_topic, source_partition,"
        " source_offset, reason, dead_lettered_at, value_size) VALUES (%s, 0, 999, 'x', 0, 0, 'X', now(), 0)"
        " RETURNING id", w.dlqs["src"])
    try:
        res = w.kjb("dlq", "show", str(gone))
        assert res.returncode == 1
        assert res.stderr.startswith(f'kjb: dlq show: no record at "{w.dlqs["src"]}" [0] @999: the partition ends at')
        assert f"id                  {gone}" in res.stdout.splitlines()
    finally:
        w.db.query("DELETE FROM kjb.dead_letters WHERE id = %s", gone)


def test_show_decodes_up_to_the_failure(world):
    """The fields decoded before the failure, with the writer schema that
    the record's schema id names; nothing when there is no schema."""
    w = world
    rid = id_of(w, next(x for x in w.bad if x.reason == "BAD_LENGTH"))
    lines = w.kjb.ok("dlq", "show", str(rid)).splitlines()
    i = lines.index("decoded before the failure (at customer.email, byte 7):")
    assert json.loads("\n".join(lines[i + 1:])) == {"order_id": 1, "customer": {"id": 7}}
    shown = w.kjb.json("dlq", "show", str(rid))
    assert shown["partial"] == {"order_id": 1, "customer": {"id": 7}}
    assert shown["partial_at"] == {"field": "customer.email", "byte": 7}

    unknown = next(x for x in w.bad if x.reason == "UNKNOWN_SCHEMA_ID")
    lines = w.kjb.ok("dlq", "show", str(id_of(w, unknown))).splitlines()
    assert lines[-1] == ("decoded before the failure: nothing to decode: "
                         "schema id 9 is not in schemas.ids and no registry is configured")
    shown = w.kjb.json("dlq", "show", str(id_of(w, unknown)))
    assert shown["partial"] is None and shown["partial_at"] is None
    magic = next(x for x in w.bad if x.value == b"\x01\x02\x03\x04\x05")
    lines = w.kjb.ok("dlq", "show", str(id_of(w, magic))).splitlines()
    assert lines[-1] == "decoded before the failure: nothing to decode: byte 0: bad magic byte 0x01, expected 0x00"


# --------------------------------------------------------------------------
# ignore and the audit trail


def test_ignore_and_its_audit_rows(world):
    w = world
    res = w.kjb("dlq", "ignore")
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == ("kjb: dlq ignore: refusing to ignore every dead letter without a filter "
                          "(give filters, or --all)\n")
    res = w.kjb("dlq", "ignore", "--all", "--reason", "X")
    assert (res.returncode, res.stderr) == (2, "kjb: dlq ignore: --all and filters exclude each other\n")
    assert w.db.scalar("SELECT count(*) FROM kjb.audit") == 0

    src_magic = ids_where(w, lambda x: x.topic == "src" and x.reason == "BAD_MAGIC")
    assert w.kjb.ok("dlq", "ignore", "--reason", "BAD_MAGIC", "--source-topic", w.topics["src"]) == \
        "ignored 3 dead letters (3 matched; 0 already ignored or replayed)\n"
    assert ls_ids(w, "--status", "ignored") == src_magic
    # Already ignored rows stay as they are and are counted as such.
    assert w.kjb.ok("dlq", "ignore", "--key", "k-a", "--actor", "ops-alice") == \
        "ignored 0 dead letters (2 matched; 2 already ignored or replayed)\n"
    w.db.query("UPDATE kjb.dead_letters SET status = 'replayed' WHERE id = %s",
               id_of(w, next(x for x in w.bad if x.reason == "SHORT_HEADER")))
    rest = [i for i in sorted(w.ids.values()) if i not in src_magic and
            i != id_of(w, next(x for x in w.bad if x.reason == "SHORT_HEADER"))]
    assert w.kjb.ok("dlq", "ignore", "--all", "--actor", "bob") == \
        f"ignored {len(rest)} dead letters (7 matched; {7 - len(rest)} already ignored or replayed)\n"
    assert ls_ids(w, "--status", "replayed") == [id_of(w, next(x for x in w.bad if x.reason == "SHORT_HEADER"))]

    audit = w.db.query("SELECT actor, action, params, result FROM kjb.audit ORDER BY id")
    assert audit == [
        (f"cli:{USER}", "dlq.ignore", {"filter": {"source_topic": w.topics["src"], "reason": "BAD_MAGIC"}},
         {"matched": 3, "ignored": 3, "ids": src_magic}),
        ("ops-alice", "dlq.ignore", {"filter": {"key": "k-a"}}, {"matched": 2, "ignored": 0, "ids": []}),
        ("bob", "dlq.ignore", {"filter": {}}, {"matched": 7, "ignored": len(rest), "ids": rest}),
    ]
    listed = w.kjb.json("audit", "ls")
    assert [(a["actor"], a["action"], a["params"], a["result"]) for a in listed] == \
        [tuple(r) for r in reversed(audit)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", a["at"]) for a in listed)
    assert [a["id"] for a in w.kjb.json("audit", "ls", "--limit", "1")] == [listed[0]["id"]]
    t = table(w.kjb.ok("audit", "ls"))
    assert t[0] == ["ID", "AT", "ACTOR", "ACTION", "PARAMS", "RESULT"]
    assert [(ln[0], ln[2], ln[3]) for ln in t[1:]] == [(str(a["id"]), a["actor"], a["action"]) for a in listed]


def test_gauge_counts_by_topic_reason_and_status(world):
    """After the ignores above: the stats thread's refresh shows them."""
    w = world
    want = {(w.dlqs[b.topic], b.reason, st): 0 for b in w.bad for st in ("dead", "replayed", "failing", "ignored")}
    for row in rows(w.db):
        want[(row["dlq_topic"], row["reason"], row["status"])] += 1

    def gauges():
        status, _, body = get(w.port, "/metrics")
        assert status == 200
        got = {}
        for line in body.splitlines():
            m = re.fullmatch(r'kjb_dead_letters\{dlq_topic="([^"]*)",reason="([^"]*)",status="([^"]*)"\} (\S+)', line)
            if m:
                got[m.group(1, 2, 3)] = float(m.group(4))
        return got

    wait_for(lambda: gauges() == want, timeout=30, interval=1,
             message=lambda: f"the gauges {want}, have {gauges()}")
    body = get(w.port, "/metrics")[2]
    assert "# TYPE kjb_dead_letters gauge" in body
    # The whole exposition stays valid for Prometheus.
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).is_file():
        pytest.fail("promtool not found: install Debian's prometheus package (scripts/deps.sh)", pytrace=False)
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True,
                           timeout=60, check=False)
    assert check.returncode == 0, f"promtool check metrics:\n{check.stdout}{check.stderr}"


def test_job_actions_and_replays_are_audited(world):
    w = world
    w.db.query("DELETE FROM kjb.audit")
    jobs = [r[0] for r in w.db.query("SELECT id FROM kjb.jobs ORDER BY id LIMIT 3")]
    j1, j2, j3 = jobs
    assert w.kjb.ok("jobs", "cancel", str(j1), "--actor", "ops-carol") == f"cancelled job {j1}\n"
    assert w.kjb.ok("jobs", "retry", str(j1)) == "retried 1 job\n"
    res = w.kjb("jobs", "retry", str(j2))
    assert (res.returncode, res.stderr) == (1, f"kjb: jobs retry: cannot retry job {j2}: it is available\n")
    assert w.kjb.ok("jobs", "cancel", str(j3)) == f"cancelled job {j3}\n"
    assert w.kjb.ok("jobs", "retry", "--state", "cancelled", "--actor", "bulk") == "retried 1 job\n"
    # The admin API: actor "admin".
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert request(w.port, f"/api/jobs/{j2}/cancel", "POST", auth)[0] == 200
    assert request(w.port, f"/api/jobs/{j2}/cancel", "POST", auth)[0] == 409
    assert request(w.port, f"/api/jobs/{j2}/retry", "POST", auth)[0] == 200
    assert request(w.port, f"/api/jobs/{j2}/retry", "POST", {"Authorization": "Bearer wrong"})[0] == 403

    # kjb replay from the CLI: one row when it starts, its counts when done.
    src_n = sum(1 for b in w.bad if b.topic == "src")
    res = w.kjb("replay", "--topic", w.dlqs["src"], "--reset-offsets", "to-earliest", "--actor", "replayer")
    assert res.returncode == 1, res.stderr
    *per_reason, total = res.stdout.splitlines()
    assert total == f"replayed 0, still failing {src_n}, already present 0"
    # One line per reason, e.g. "TRUNCATED: 2 records: 0 became jobs, 0
    # already present, 2 still failing".
    counts = {}
    for line in per_reason:
        m = re.fullmatch(r"(\w+): (\d+) records?: 0 became jobs, 0 already present, (\d+) still failing", line)
        assert m and m[2] == m[3], line
        counts[m[1]] = int(m[2])
    assert counts == dict(collections.Counter(b.reason for b in w.bad if b.topic == "src")), res.stdout
    res = w.kjb("replay", "--topic", w.dlqs["src"], "--dry-run")
    assert res.stdout == f"dry run: replayed 0, still failing 0, already present 0\n"
    # Through the API (the first mapping's DLQ), as "admin".
    assert request(w.port, "/api/replay", "POST", auth)[0] == 202

    def api_replay_done():
        st = json.loads(get(w.port, "/api/stats")[2]).get("replay")
        return st and not st["running"] and st

    done = wait_for(api_replay_done, timeout=120, message="the API's replay to finish")
    assert done["error"] is None, done
    audit = w.db.query("SELECT actor, action, params, result FROM kjb.audit ORDER BY id")
    for _, action, _, result in audit:
        if action == "replay":  # by reason: as the command printed it
            assert sum(r["records"] for r in result.pop("by_reason")) == result["still_failing"] + \
                result["replayed"] + result["already_present"], result
    group = f"{w.group}.replay"
    assert audit == [
        ("ops-carol", "jobs.cancel", {"id": j1}, {"outcome": "done"}),
        (f"cli:{USER}", "jobs.retry", {"id": j1}, {"outcome": "done"}),
        (f"cli:{USER}", "jobs.retry", {"id": j2}, {"outcome": "wrong_state", "state": "available"}),
        (f"cli:{USER}", "jobs.cancel", {"id": j3}, {"outcome": "done"}),
        ("bulk", "jobs.retry", {"state": "cancelled"}, {"retried": 1}),
        ("admin", "jobs.cancel", {"id": j2}, {"outcome": "done"}),
        ("admin", "jobs.cancel", {"id": j2}, {"outcome": "wrong_state", "state": "cancelled"}),
        ("admin", "jobs.retry", {"id": j2}, {"outcome": "done"}),
        ("replayer", "replay", {"topic": w.dlqs["src"], "group": group, "reset_offsets": "to-earliest",
                                "limit": 0, "follow": False, "rate": 0},
         {"selected": 0, "replayed": 0, "still_failing": src_n, "already_present": 0}),
        ("admin", "replay", {"topic": w.dlqs["src"], "group": group, "reset_offsets": None, "limit": 0,
                             "follow": False, "rate": 0},
         {"selected": 0, "replayed": done["replayed"], "still_failing": done["still_failing"],
          "already_present": done["already_present"]}),
    ]


# --------------------------------------------------------------------------
# reindex of a DLQ that another producer wrote


def connect_headers(topic: str, partition: int, offset: int, cls: str, message: str) -> list[tuple[str, bytes]]:
    """The headers Kafka Connect's DeadLetterQueueReporter writes."""
    return [("__connect.errors.topic", topic.encode()), ("__connect.errors.partition", str(partition).encode()),
            ("__connect.errors.offset", str(offset).encode()), ("__connect.errors.connector.name", b"sink-1"),
            ("__connect.errors.task.id", b"0"), ("__connect.errors.stage", b"VALUE_CONVERTER"),
            ("__connect.errors.class.name", b"org.apache.kafka.connect.json.JsonConverter"),
            ("__connect.errors.exception.class.name", cls.encode()),
            ("__connect.errors.exception.message", message.encode())]


def test_reindex_of_a_connect_dlq(kafka, db, make_topic, run_kjb, kjb_services_env, tmp_path):
    dlq = make_topic(partitions=2)
    cfg = write_ingest_config(tmp_path / "kjb.cfg", unique_name("reidx"), f"""
  {{ topic = "{unique_name('unused')}"; schema = "order_created.avsc"; jobs = ( {{ kind = "k"; }} ); }}""")
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    data_exc = "org.apache.kafka.connect.errors.DataException"
    # p0: two dead letters, a record without headers, one with a malformed
    # offset, and the first dead letter again (Connect retried): the later
    # one counts. p1: one with kjb's own headers too.
    kafka.produce(dlq, [b"{bad"], key=b"k1", headers=connect_headers("s", 0, 10, data_exc, "no JSON"), partition=0)
    kafka.produce(dlq, [b"{bad2"], key=None, headers=connect_headers("s", 0, 11, data_exc, "no JSON 2"), partition=0)
    kafka.produce(dlq, [b"plain"], key=b"k3", partition=0)
    kafka.produce(dlq, [b"x"], headers=connect_headers("s", 0, 12, data_exc, "m")[:2] +
                  [("__connect.errors.offset", b"junk")], partition=0)
    kafka.produce(dlq, [b"{bad again"], key=b"k1", headers=connect_headers("s", 0, 10, data_exc, "no JSON"), partition=0)
    kafka.produce(dlq, [b"\x07"], key=b"k9",
                  headers=connect_headers("s", 3, 7, "kjb.BAD_MAGIC", "byte 0: bad magic byte 0x07, expected 0x00")
                  + [("kjb.original.timestamp", b"1763719200123"), ("kjb.consumer.group", b"g"),
                     ("kjb.dead_lettered_at", b"2026-11-21T10:00:00.456Z")], partition=1)
    records = {(r.partition, r.offset): r for r in kafka.consume(dlq)}
    assert len(records) == 6
    # A stale row: it points at an offset the topic holds, but another
    # source's record is there (an aborted transaction's leftover).
    stale = db.scalar(
        "INSERT INTO kjb.dead_letters (dlq_topic, dlq_partition, dlq_offset, source_topic, source_partition,"
        " source_offset, reason, dead_lettered_at, value_size) VALUES (%s, 0, 2, 's', 0, 99, 'X', now(), 1)"
        " RETURNING id", dlq)
    # One beyond the end: written after the scan began, it stays.
    later = db.scalar(
        "INSERT INTO kjb.dead_letters (dlq_topic, dlq_partition, dlq_offset, source_topic, source_partition,"
        " source_offset, reason, dead_lettered_at, value_size) VALUES (%s, 1, 500, 's', 0, 98, 'X', now(), 1)"
        " RETURNING id", dlq)

    res = run_kjb(["dlq", "reindex", "--topic", dlq], cfg, env=kjb_services_env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (f'reindexed "{dlq}": 6 records (2 not dead letters); 3 rows added, 0 updated, '
                          "0 unchanged, 1 removed (no committed record), 0 kept before the log start\n")
    got = rows(db, "dlq_topic = %s", dlq)
    assert [r["id"] for r in got if r["id"] in (stale, later)] == [later]
    by_source = {(r["source_topic"], r["source_partition"], r["source_offset"]): r for r in got}
    assert set(by_source) == {("s", 0, 10), ("s", 0, 11), ("s", 3, 7), ("s", 0, 98)}
    k1 = by_source[("s", 0, 10)]
    assert (k1["dlq_partition"], k1["dlq_offset"], k1["key"], k1["value_size"]) == (0, 4, b"k1", 10)
    assert (k1["reason"], k1["stage"], k1["message"], k1["consumer_group"], k1["original_timestamp"]) == \
        (data_exc, "VALUE_CONVERTER", "no JSON", None, None)
    # Without kjb.dead_lettered_at, the DLQ record's own timestamp.
    assert k1["dead_lettered_at"] == dt.datetime.fromtimestamp(records[(0, 4)].timestamp / 1000, dt.timezone.utc)
    k11 = by_source[("s", 0, 11)]
    assert (k11["dlq_partition"], k11["dlq_offset"], k11["key"]) == (0, 1, None)
    k9 = by_source[("s", 3, 7)]
    assert (k9["dlq_partition"], k9["dlq_offset"], k9["reason"], k9["consumer_group"]) == (1, 0, "BAD_MAGIC", "g")
    assert k9["dead_lettered_at"] == dt.datetime(2026, 11, 21, 10, 0, 0, 456000, tzinfo=dt.timezone.utc)
    assert k9["original_timestamp"] == dt.datetime(2025, 11, 21, 10, 0, 0, 123000, tzinfo=dt.timezone.utc)
    assert all(r["status"] == "dead" for r in got)

    # Again: nothing changes, not even the ids.
    res = run_kjb(["dlq", "reindex", "--topic", dlq, "--actor", "again"], cfg, env=kjb_services_env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (f'reindexed "{dlq}": 6 records (2 not dead letters); 0 rows added, 0 updated, '
                          "3 unchanged, 0 removed (no committed record), 0 kept before the log start\n")
    assert rows(db, "dlq_topic = %s", dlq) == got
    # A row someone damaged is repaired; its status is kept.
    db.query("UPDATE kjb.dead_letters SET dlq_offset = 0, reason = 'Y', status = 'ignored' WHERE id = %s", k1["id"])
    res = run_kjb(["dlq", "reindex", "--topic", dlq], cfg, env=kjb_services_env)
    assert "0 rows added, 1 updated, 2 unchanged" in res.stdout, res.stdout
    assert rows(db, "id = %s", k1["id"]) == [dict(k1, status="ignored")]
    audit = db.query("SELECT actor, action, params FROM kjb.audit ORDER BY id")
    assert audit == [(f"cli:{USER}", "dlq.reindex", {"topic": dlq}), ("again", "dlq.reindex", {"topic": dlq}),
                     (f"cli:{USER}", "dlq.reindex", {"topic": dlq})]

    res = run_kjb(["dlq", "reindex", "--topic", f"{dlq}_missing"], cfg, env=kjb_services_env)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == f'kjb: dlq reindex: topic "{dlq}_missing": Broker: Unknown topic or partition\n'


# --------------------------------------------------------------------------
# Command lines


@pytest.mark.parametrize("args, message", [
    (["dlq"], "kjb: dlq: expected a subcommand: peek, ls, show, stats, ignore, reindex or edit"),
    (["dlq", "list"], 'kjb: dlq: unknown subcommand "list" (expected peek, ls, show, stats, ignore, reindex or edit)'),
    (["dlq", "ls", "--id", "0"], 'kjb: dlq ls: bad --id "0" (expected an integer from 1 to 9223372036854775807)'),
    (["dlq", "ls", "--id", "x1"], 'kjb: dlq ls: bad --id "x1" (expected an integer from 1 to 9223372036854775807)'),
    (["dlq", "ls", "--status", "gone"], 'kjb: dlq ls: bad --status "gone" (expected dead, replayed, failing or ignored)'),
    (["dlq", "ls", "--reason", ""], "kjb: dlq ls: --reason must not be empty"),
    (["dlq", "ls", "--reason", "A", "--reason", "B"], "kjb: dlq ls: --reason given twice"),
    (["dlq", "ls", "--since", "yesterday"],
     'kjb: dlq ls: bad --since "yesterday": expected an RFC 3339 time such as 2026-11-21T10:00:00Z '
     "or a duration back from now such as 2h, 30m or 7d"),
    (["dlq", "ls", "--until", "2026-02-30T00:00:00Z"], 'kjb: dlq ls: bad --until "2026-02-30T00:00:00Z": no such date'),
    (["dlq", "ls", "--since", "1h", "--until", "2h"], "kjb: dlq ls: --since must be before --until"),
    (["dlq", "ls", "--limit", "0"], 'kjb: dlq ls: bad --limit "0" (expected an integer from 1 to 9223372036854775807)'),
    (["dlq", "ls", "--dlq-topic"], 'kjb: dlq ls: option "--dlq-topic" needs a value'),
    (["dlq", "ls", "--all"], "kjb: dlq ls: --all does not apply here"),
    (["dlq", "ls", "extra"], 'kjb: dlq ls: unexpected argument "extra"'),
    (["dlq", "show"], "kjb: dlq show: expected a dead letter id"),
    (["dlq", "show", "0"], 'kjb: dlq show: bad dead letter id "0" (expected an integer from 1 to 9223372036854775807)'),
    (["dlq", "show", "1", "--reason", "X"], "kjb: dlq show: --reason does not apply here"),
    (["dlq", "stats", "--limit", "5"], "kjb: dlq stats: --limit does not apply here"),
    (["dlq", "ignore", "--json", "--all"], "kjb: dlq ignore: --json does not apply here"),
    (["dlq", "ignore", "--all", "--actor", ""], 'kjb: dlq ignore: bad --actor "": must not be empty'),
    (["dlq", "ignore", "--all", "--actor", "a\tb"], 'kjb: dlq ignore: bad --actor "a\tb": holds a control character'),
    (["dlq", "reindex"], "kjb: dlq reindex: --topic is required"),
    (["dlq", "reindex", "--topic", "t", "--key", "k"], "kjb: dlq reindex: --key does not apply here"),
    (["dlq", "peek"], "kjb: dlq peek: --topic is required"),
    (["audit"], "kjb: audit: expected a subcommand: ls"),
    (["audit", "rm"], 'kjb: audit: unknown subcommand "rm" (expected ls)'),
    (["audit", "ls", "--limit", "x"], 'kjb: audit ls: bad --limit "x" (expected an integer from 1 to 9223372036854775807)'),
    (["jobs", "ls", "--actor", "a"], "kjb: jobs ls: --actor does not apply here"),
    (["jobs", "cancel", "1", "--actor", "x" * 129], 'kjb: jobs cancel: bad --actor "' + "x" * 64 + '...": longer than 128 bytes'),
    (["replay", "--topic", "t", "--actor", ""], 'kjb: replay: bad --actor "": must not be empty'),
])
def test_usage_errors(run_kjb, tmp_path, args, message):
    """Usage errors: one line, exit code 2, before any service is asked."""
    cfg = tmp_path / "kjb.cfg"
    cfg.write_text('kafka = { brokers = "127.0.0.1:1"; }; postgres = { conninfo = "host=127.0.0.1 port=1"; };\n'
                   "topics = ();\n")
    # A command without its subcommand is refused before -c is read.
    res = run_kjb(args, cfg if len(args) > 1 else None)
    assert (res.returncode, res.stdout, res.stderr) == (2, "", message + "\n")


# --------------------------------------------------------------------------
# Crash consistency


BAD_IN_STREAM = 4500
KILLS = 5


def watermarks(kafka, topic: str, isolation: str) -> dict[int, int]:
    """The end of each partition: its high watermark (read_uncommitted), or
    its last stable offset (read_committed), before which no transaction is
    open."""
    from confluent_kafka import TopicPartition

    consumer = kafka.consumer(**{"isolation.level": isolation})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in kafka.partitions(topic)}
    finally:
        consumer.close()


def committed_dlq(kafka, dlq: str) -> dict[tuple[int, int], Record]:
    """Every committed record of the DLQ as read_committed sees it, once no
    transaction is open any more (a killed kjb's aborts after 10 s,
    transaction.timeout.ms): read earlier, a reader stops at the first open
    one and misses what was committed after it."""
    wait_for(lambda: watermarks(kafka, dlq, "read_committed") == watermarks(kafka, dlq, "read_uncommitted"),
             timeout=90, interval=0.5, message=f"no open transaction in {dlq}")
    return {(r.partition, r.offset): r for r in kafka.consume(dlq, timeout=90)}


def test_sigkill_while_dead_lettering_keeps_index_and_dlq_in_step(kafka, db, make_topic, start_kjb,
                                                                  run_kjb, kjb_services_env, tmp_path):
    topic = make_topic(partitions=2)
    dlq = make_topic(partitions=2, name=f"{topic}.dlq")
    group = unique_name("dlqcrash")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "k"; }} ); }}""")
    # A killed member holds its partitions until its session times out.
    cfg.write_text(cfg.read_text().replace(
        f'group = "{group}";',
        f'group = "{group}"; properties = [ "session.timeout.ms=6000", "heartbeat.interval.ms=500" ];'))
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    # Mostly bad records (each batch of 50 has dead letters), a good one in
    # ten, each bad one with its own key.
    sources: dict[tuple[int, int], bytes] = {}  # (partition, offset) of each bad record -> its key
    for p in range(2):
        values, keys = [], []
        for i in range(BAD_IN_STREAM // 2):
            if i % 9 == 0:
                values.append(avrokit.confluent(ORDER, order(i), 1))
                keys.append(None)
            values.append(b"\x07bad" + str(i).encode())
            keys.append(f"p{p}-{i}".encode())
        producer = kafka.producer(**{"enable.idempotence": True, "acks": "all"})
        for v, k in zip(values, keys):
            producer.produce(topic, value=v, key=k, partition=p)
        assert producer.flush(60) == 0
        sources.update({(p, o): k for o, k in enumerate(keys) if k is not None})
    assert len(sources) == BAD_IN_STREAM
    ends = kafka.end_offsets(topic)

    count = lambda: db.scalar("SELECT count(*) FROM kjb.dead_letters")  # noqa: E731
    rnd = random.Random(11)
    kills_mid_stream = 0
    for k in range(KILLS):
        before = count()
        if before >= BAD_IN_STREAM:
            break
        proc = start_kjb(["run", "--role", "consumer"], cfg, env=kjb_services_env, name=f"killed-{k}")
        wait_for(lambda: count() > before, timeout=180, message=lambda: f"progress after restart {k}\n{proc.log()[-3000:]}")
        time.sleep(rnd.uniform(0.02, 0.2))
        proc.kill()
        kills_mid_stream += count() < BAD_IN_STREAM
        # Never a committed DLQ record without its row (a row may be
        # ahead of its record: that transaction was not committed).
        records = committed_dlq(kafka, dlq)
        index = {(r[0], r[1]): (r[2], r[3]) for r in db.query(
            "SELECT dlq_partition, dlq_offset, source_partition, source_offset FROM kjb.dead_letters")}
        missing = [c for c in records if c not in index]
        assert not missing, f"after kill {k}: committed DLQ records without a row: {missing[:10]}"
        for c, r in records.items():
            assert index[c] == (int(r.header("__connect.errors.partition")), int(r.header("__connect.errors.offset")))
        # Rows ahead of their record: the killed process's last
        # transaction, which the next run moves.
        ahead = len(set(index) - set(records))
        assert ahead <= 50, f"after kill {k}: {ahead} rows without a committed record (one batch at most)"
        print(f"kill {k}: {len(records)} committed, {len(index)} rows, {ahead} ahead")
    assert kills_mid_stream >= 3, f"only {kills_mid_stream} kills landed mid-stream"

    final = start_kjb(["run", "--role", "consumer"], cfg, env=kjb_services_env, name="final")
    # The last kill may have come after everything was committed: wait
    # until this one runs (its signal handlers are in place) before the
    # SIGTERM below.
    wait_for(lambda: " consuming 1 topic(s) " in final.log(), timeout=60, message=lambda: final.log()[-3000:])
    wait_for(lambda: kafka.committed(group, topic) == ends, timeout=300,
             message=lambda: f"offsets committed to the end {ends}\n{final.log()[-3000:]}")
    assert final.stop() == 0

    # One to one: each committed DLQ record has its row and each row its
    # committed record; each bad source record is exactly one of them.
    records = committed_dlq(kafka, dlq)
    index = db.query("SELECT dlq_topic, dlq_partition, dlq_offset, source_topic, source_partition, source_offset,"
                     " key FROM kjb.dead_letters")
    assert len(index) == BAD_IN_STREAM and len(records) == BAD_IN_STREAM
    assert {(r[1], r[2]) for r in index} == set(records)
    assert sorted((r[4], r[5]) for r in index) == sorted(sources)
    for d, dp, do, st, sp, so, key in index:
        rec = records[(dp, do)]
        assert (d, st) == (dlq, topic)
        assert (rec.header("__connect.errors.partition"), rec.header("__connect.errors.offset")) == (str(sp), str(so))
        assert bytes(key) == rec.key == sources[(sp, so)]
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == sum(ends.values()) - BAD_IN_STREAM


FAILED_INDEX_WRITES = 3


def test_a_failed_index_write_takes_back_the_batches_after_it(kafka, db, make_topic, start_kjb, run_kjb,
                                                              kjb_services_env, tmp_path):
    """A batch's rows are written to the index (and then its transaction
    committed) while the next batch is consumed, its dead letters going out
    in a second transaction. When the rows cannot be written, both
    transactions are aborted and both batches consumed again: in the end
    each bad record is one committed DLQ record with its row, and each good
    one its job."""
    topic = make_topic(partitions=2)
    dlq = make_topic(partitions=2, name=f"{topic}.dlq")
    group = unique_name("dlqfail")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "k"; }} ); }}""")
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    # The index refuses a row FAILED_INDEX_WRITES times: a sequence is not
    # rolled back with the statement that failed.
    db.query("CREATE SEQUENCE kjb.refusals")
    db.query("CREATE FUNCTION kjb.refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
             f" IF nextval('kjb.refusals') <= {FAILED_INDEX_WRITES} THEN"
             " RAISE EXCEPTION 'injected: the index refuses a row'; END IF; RETURN NEW; END $$")
    db.query("CREATE TRIGGER refuse_rows BEFORE INSERT ON kjb.dead_letters"
             " FOR EACH ROW EXECUTE FUNCTION kjb.refuse_rows()")
    # Enough records for many batches of 50, each with dead letters.
    sources = {}
    producer = kafka.producer(**{"enable.idempotence": True, "acks": "all"})
    for p in range(2):
        for i in range(600):
            if i % 5 == 0:
                producer.produce(topic, value=avrokit.confluent(ORDER, order(i), 1), partition=p)
            else:
                sources[(p, i)] = f"p{p}-{i}".encode()  # offset i: the partition was empty
                producer.produce(topic, value=b"\x07bad" + str(i).encode(), key=sources[(p, i)], partition=p)
    assert producer.flush(60) == 0
    ends = kafka.end_offsets(topic)

    proc = start_kjb(["run", "--role", "consumer"], cfg, env=kjb_services_env, name="refused")
    wait_for(lambda: kafka.committed(group, topic) == ends, timeout=180,
             message=lambda: f"offsets committed to the end {ends}\n{proc.log()[-3000:]}")
    assert proc.stop() == 0
    refused = re.findall(r"could not commit \d+ dead letter\(s\) with their offsets: .*injected: the index "
                         r"refuses a row", proc.log())
    assert len(refused) == FAILED_INDEX_WRITES, proc.log()[-3000:]
    # The batch consumed meanwhile went back too, with dead letters in the
    # second transaction at least once.
    dropped = [int(n) for n in re.findall(r"dropping the \d+ records \((\d+) dead letters\) consumed since",
                                          proc.log())]
    assert dropped and max(dropped) > 0, proc.log()[-3000:]

    records = committed_dlq(kafka, dlq)
    index = db.query("SELECT dlq_partition, dlq_offset, source_partition, source_offset, key FROM kjb.dead_letters")
    assert len(records) == len(sources) and len(index) == len(sources)
    assert {(r[0], r[1]) for r in index} == set(records)
    for dp, do, sp, so, key in index:
        rec = records[(dp, do)]
        assert (rec.header("__connect.errors.partition"), rec.header("__connect.errors.offset")) == (str(sp), str(so))
        assert bytes(key) == rec.key == sources[(sp, so)]
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == sum(ends.values()) - len(sources)
