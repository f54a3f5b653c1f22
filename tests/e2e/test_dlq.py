"""Dead letters end to end: a corpus of malformed records, each between two
good ones on the same partition, goes through one `kjb run`. Every bad
record must come out as exactly one DLQ record carrying its original key,
value and headers byte for byte plus the Kafka Connect error headers with
the exact code and message kjb produces; its neighbours must become jobs;
no job may carry a bad record's source offset; the group's committed
offsets must reach the end of each partition.

Bad bytes are made by hand from good fastavro encodings; every case says
which byte was changed and why. Byte offsets in the messages are those of
the Avro body; framed formats prefix the message with where the body
starts ("avro body at byte 5: ...")."""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro

import avrokit
from kjbtest import Record, everything, order, unique_name, wait_for, write_ingest_config

V1 = avrokit.load(avrokit.E2E_SCHEMAS / "dlq_event.avsc")
V2 = avrokit.load(avrokit.E2E_SCHEMAS / "dlq_event_v2.avsc")
EVERYTHING = avrokit.load(avrokit.E2E_SCHEMAS / "everything.avsc")
ORDER_V1 = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")

KJB_HEADERS = (
    "__connect.errors.topic", "__connect.errors.partition", "__connect.errors.offset",
    "__connect.errors.stage", "__connect.errors.class.name",
    "__connect.errors.exception.class.name", "__connect.errors.exception.message",
    "kjb.original.timestamp", "kjb.consumer.group", "kjb.dead_lettered_at",
)
DECODE, MAPPING = "VALUE_CONVERTER", "TRANSFORMATION"
RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# The keys and headers bad records travel with, cycled through so that
# each shape (none, empty, binary, duplicate names, null values) is seen.
KEYS: list[bytes | None] = [b"k-\xff\x00bin", None, b"", b"plain-key"]
HEADERS: list[list[tuple[str, bytes | None]]] = [
    [("trace-id", b"abc123"), ("bin", b"\xff\x00\xfe")],
    [],
    [("dup", b"1"), ("dup", b"2"), ("nul", None), ("empty", b"")],
    [("utf8", "Zoë 👋".encode())],
]


# --------------------------------------------------------------------------
# Good records


def event(i: int, **over: Any) -> dict:
    """Record i of dlq_event.avsc that every mapping accepts."""
    d = {"id": i, "name": "ab", "level": "MID", "tags": ["x", "y", "z"], "attrs": {"region": "eu"},
         "owner": {"email": "o@x"}, "ref": f"r{i}", "count": 300}
    d.update(over)
    return d


HUGE = b"\x80" * 9 + b"\x01"  # varint of zigzag(2^62) = 2^63: a length of 2^62


def field_offset(path: Path, datum: dict, name: str) -> int:
    """Where field `name` of `datum` starts in its body: the length of
    the fields before it, encoded as a record of their own."""
    raw = json.loads(path.read_text())
    names = [f["name"] for f in raw["fields"]]
    before = dict(raw, fields=raw["fields"][: names.index(name)])
    return len(avrokit.body(fastavro.parse_schema(before), {k: datum[k] for k in names[: names.index(name)]}))


def patch(b: bytes, at: int, new: bytes, old_len: int = 1) -> bytes:
    """b with old_len bytes at `at` replaced by `new`."""
    return b[:at] + new + b[at + old_len:]


# The body every raw/single-object corruption starts from, byte by byte:
#   0     12                  id = 9 (zigzag 18)
#   1-3   04 61 62            name: length 2, "ab"
#   4     02                  level: index 1 (MID)
#   5-12  06 02 78 02 79 02 7a 00
#                             tags: block of 3, "x" "y" "z", end of blocks
#   13-24 02 0c "region" 04 "eu" 00
#                             attrs: block of 1, key "region", value "eu", end
#   25-29 02 06 6f 40 78      owner: branch 1 (Owner), email "o@x"
#   30-33 00 04 72 39         ref: branch 0 (string), "r9"
#   34-35 d8 04               count = 300 (zigzag 600, two varint bytes)
BASE = avrokit.body(V1, event(9))
assert BASE.hex() == ("12" "046162" "02" "0602780279027a00" "020c726567696f6e04657500"
                      "02066f4078" "00047239" "d804"), BASE.hex()
assert {f: field_offset(avrokit.E2E_SCHEMAS / "dlq_event.avsc", event(9), f)
        for f in ("id", "name", "level", "tags", "attrs", "owner", "ref", "count")} == \
    {"id": 0, "name": 1, "level": 4, "tags": 5, "attrs": 13, "owner": 25, "ref": 30, "count": 34}

# The everything.avsc body the confluent corruptions start from:
#   0      00                 id = 0
#   1      01                 flag = true
#   2-6    ff ff ff ff 0f     small = -2^31
#   7-16   ff x9 01           big = -2^63
#   17-20  00 00 c0 3f        ratio = 1.5 (float)
#   21-28  18 2d 44 54 fb 21 09 40
#                             score = pi (double)
EBASE = avrokit.body(EVERYTHING, everything(0))
assert EBASE[:29].hex() == ("00" "01" "ffffffff0f" "ffffffffffffffffff01" "0000c03f"
                            "182d4454fb210940"), EBASE[:29].hex()


# --------------------------------------------------------------------------
# The corpus


@dataclass
class Case:
    name: str
    value: bytes | None
    code: str
    message: str
    stage: str = DECODE


def confluent_cases() -> list[Case]:
    """Topic "confluent": format confluent, reader everything.avsc (id 7)."""
    good = b"\x00" + struct.pack(">I", 7) + EBASE
    day_at = field_offset(avrokit.E2E_SCHEMAS / "everything.avsc", everything(0), "day")
    return [
        # Byte 0 of the framing is 0x01 instead of the magic 0x00.
        Case("bad magic", b"\x01" + good[1:], "kjb.BAD_MAGIC",
             "byte 0: bad magic byte 0x01, expected 0x00"),
        # A single-object record (0xC3 0x01 ...) on a confluent topic.
        Case("single-object framing", avrokit.single_object(EVERYTHING, everything(0)),
             "kjb.BAD_MAGIC", "byte 0: bad magic byte 0xc3, expected 0x00"),
        # An empty (not null) value: no room for the 5-byte header.
        Case("empty value", b"", "kjb.SHORT_HEADER",
             "record is 0 bytes, shorter than the 5-byte confluent header"),
        # A tombstone (null value) reads as a 0-byte record.
        Case("tombstone", None, "kjb.SHORT_HEADER",
             "record is 0 bytes, shorter than the 5-byte confluent header"),
        # The first 3 bytes of the header only.
        Case("3 bytes", good[:3], "kjb.SHORT_HEADER",
             "record is 3 bytes, shorter than the 5-byte confluent header"),
        # Bytes 1-4 say schema id 12345, which schemas.ids lacks.
        Case("unknown schema id", b"\x00" + struct.pack(">I", 12345) + EBASE,
             "kjb.UNKNOWN_SCHEMA_ID",
             "schema id 12345 is not in schemas.ids and no registry is configured"),
        # Id 1 is order_created.avsc: a known writer the Everything reader
        # cannot resolve at all.
        Case("writer of another record", avrokit.confluent(ORDER_V1, order(1), 1),
             "kjb.SCHEMA_MISMATCH",
             'writer record "kjb.example.OrderCreated" does not match reader record '
             '"kjb.test.Everything"'),
        # The 5-byte header and nothing else: the body ends before the
        # first field's varint.
        Case("header only", good[:5], "kjb.TRUNCATED",
             'avro body at byte 5: field "id": truncated at byte 0: data ends inside a varint'),
        # Cut 3 bytes into the 8-byte double "score" (body bytes 21-28).
        Case("cut in a double", good[:5 + 24], "kjb.TRUNCATED",
             'avro body at byte 5: field "score": truncated at byte 21: double needs 8 bytes, 3 left'),
        # Two zero bytes after a complete record.
        Case("trailing bytes", good + b"\x00\x00", "kjb.TRAILING_BYTES",
             f"avro body at byte 5: 2 trailing bytes at byte {len(EBASE)}"),
        # Body byte 1, the boolean "flag", is 2: booleans are 0 or 1.
        Case("boolean 2", good[:6] + b"\x02" + good[7:], "kjb.BAD_VALUE",
             'avro body at byte 5: field "flag": invalid boolean 2 at byte 1'),
        # Valid Avro: the date (days since 1970) 2^31-1 lies past year 9999,
        # which an RFC 3339 date cannot write.
        Case("date past year 9999", avrokit.confluent(EVERYTHING, everything(0) | {"day": 2**31 - 1}, 7),
             "kjb.BAD_VALUE",
             f'avro body at byte 5: field "day": date 2147483647 at byte {day_at} is out of range'),
    ]


def single_object_cases(schemas_dir: Path) -> list[Case]:
    """Topic "single-object": reader dlq_event.avsc; writers v1 and v2 by
    fingerprint. Body offsets start after the 10-byte header."""
    good = avrokit.single_object(V1, event(9))
    assert good[10:] == BASE
    wrong_fp = good[:2] + bytes([good[2] ^ 0xFF]) + good[3:]
    fp = int.from_bytes(wrong_fp[2:10], "little")
    return [
        # Byte 1 is 0x02 instead of the second magic byte 0x01.
        Case("bad magic", good[:1] + b"\x02" + good[2:], "kjb.BAD_MAGIC",
             "byte 0: bad magic bytes 0xc3 0x02, expected 0xc3 0x01"),
        # A confluent record (0x00, id 7) on a single-object topic.
        Case("confluent framing", b"\x00" + struct.pack(">I", 7) + BASE, "kjb.BAD_MAGIC",
             "byte 0: bad magic bytes 0x00 0x00, expected 0xc3 0x01"),
        # The magic and 7 of the 8 fingerprint bytes.
        Case("9 bytes", good[:9], "kjb.SHORT_HEADER",
             "record is 9 bytes, shorter than the 10-byte single-object header"),
        Case("tombstone", None, "kjb.SHORT_HEADER",
             "record is 0 bytes, shorter than the 10-byte single-object header"),
        # The fingerprint's low byte (byte 2) inverted: no schema has it.
        Case("unknown fingerprint", wrong_fp, "kjb.UNKNOWN_FINGERPRINT",
             f"fingerprint 0x{fp:016x} matches no schema in {schemas_dir}"),
        # Writer v2 and the symbol v1's enum lacks (no enum default).
        Case("enum symbol the reader lacks", avrokit.single_object(V2, event(9, level="ULTRA")),
             "kjb.SCHEMA_MISMATCH",
             'avro body at byte 10: field "level": enum symbol "ULTRA" at byte 4 is not in the '
             'reader enum "kjb.test.Level", which has no default'),
        # Writer v2 and its union branch 4 (boolean) that v1's union lacks.
        Case("union branch the reader lacks", avrokit.single_object(V2, event(9, ref=True)),
             "kjb.SCHEMA_MISMATCH",
             'avro body at byte 10: field "ref": union branch 4 ("boolean") at byte 30: '
             'field "ref": writer type "boolean" matches no branch of the reader union'),
        # Body byte 15, the "r" of map key "region", is 0xC3, which needs a
        # continuation byte and gets "e".
        Case("invalid utf-8 in a map key", patch(good, 10 + 15, b"\xc3"), "kjb.INVALID_UTF8",
             'avro body at byte 10: field "attrs": invalid utf-8 in map key at byte 15'),
        # Decodes, but the args path owner.email runs through a null union.
        Case("args path through null", avrokit.single_object(V1, event(9, owner=None)),
             "kjb.MISSING_FIELD", 'job "s_pick": args: field "owner.email" is missing', MAPPING),
        # Decodes, but the unique_key's ${ref} is null.
        Case("unique_key value null", avrokit.single_object(V2, event(9, ref=None)),
             "kjb.BAD_TEMPLATE", 'job "s_pick": unique_key: field "ref" is null, not a scalar',
             MAPPING),
    ]


def raw_cases(job: str = "r_pick") -> list[Case]:
    """Topic "raw": reader (and writer) dlq_event.avsc, no framing."""
    return [
        # Cut after body byte 34, the first of the two varint bytes of "count".
        Case("cut in a varint", BASE[:35], "kjb.TRUNCATED",
             'field "count": truncated at byte 34: data ends inside a varint'),
        # Cut after "y" (byte 9): the array's block said 3 items, the data
        # ends where the third item's length should be.
        Case("cut in an array", BASE[:10], "kjb.TRUNCATED",
             'field "tags[2]": truncated at byte 10: data ends inside a varint'),
        # Cut after the map key "region" (byte 20), before its value.
        Case("cut in a map", BASE[:21], "kjb.TRUNCATED",
             'field "attrs.region": truncated at byte 21: data ends inside a varint'),
        Case("empty value", b"", "kjb.TRUNCATED",
             'field "id": truncated at byte 0: data ends inside a varint'),
        Case("tombstone", None, "kjb.TRUNCATED",
             'field "id": truncated at byte 0: data ends inside a varint'),
        # Cut after "a" (byte 2), inside the string "ab" whose length (2, at
        # byte 1) is read first: kjb reports the length that the bytes left
        # cannot hold, as BAD_LENGTH, not as TRUNCATED.
        Case("cut in a string", BASE[:3], "kjb.BAD_LENGTH",
             'field "name": length 2 at byte 1 exceeds the 1 bytes left'),
        # Three zero bytes after a complete record.
        Case("trailing bytes", BASE + b"\x00\x00\x00", "kjb.TRAILING_BYTES",
             "3 trailing bytes at byte 36"),
        # Byte 3, the "b" of "ab", is 0xFF, which UTF-8 never uses.
        Case("invalid utf-8 in a string", patch(BASE, 3, b"\xff"), "kjb.INVALID_UTF8",
             'field "name": invalid utf-8 at byte 3'),
        # Byte 3, the "b" of "ab", is NUL: valid UTF-8, but PostgreSQL text
        # and jsonb cannot hold U+0000, and the insert would fail forever.
        Case("NUL in a string", patch(BASE, 3, b"\x00"), "kjb.INVALID_UTF8",
             'field "name": NUL character (U+0000) at byte 3, which postgresql text cannot hold'),
        # "name" becomes 3 bytes ED A0 80 (length 06 at byte 1): U+D800, a
        # UTF-16 surrogate, which UTF-8 must not encode.
        Case("utf-8 surrogate", patch(BASE, 1, b"\x06\xed\xa0\x80", 3), "kjb.INVALID_UTF8",
             'field "name": invalid utf-8 at byte 2'),
        # Byte 9, the "y" of tags[1], is 0x80: a continuation byte alone.
        Case("invalid utf-8 in an array item", patch(BASE, 9, b"\x80"), "kjb.INVALID_UTF8",
             'field "tags[1]": invalid utf-8 at byte 9'),
        # Byte 1, the length of "name", is 0x01: zigzag for -1.
        Case("negative string length", patch(BASE, 1, b"\x01"), "kjb.BAD_LENGTH",
             'field "name": negative length -1 at byte 1'),
        # Byte 1, the length of "name", becomes the 10-byte varint of 2^62:
        # rejected before anything is allocated.
        Case("string length 2^62", patch(BASE, 1, HUGE), "kjb.BAD_LENGTH",
             'field "name": length 4611686018427387904 at byte 1 exceeds the 34 bytes left'),
        # Byte 13, the item count of the "attrs" block, becomes 2^62.
        Case("map block of 2^62 items", patch(BASE, 13, HUGE), "kjb.BAD_LENGTH",
             'field "attrs": block of 4611686018427387904 items at byte 13 exceeds the 22 bytes left'),
        # Byte 5, the tags block count 3, becomes -3 (05) followed by a byte
        # size of 5 (0a); the three items take 6.
        Case("block size wrong", patch(BASE, 5, b"\x05\x0a"), "kjb.BAD_LENGTH",
             'field "tags": block at byte 7 declares 5 bytes but holds 6'),
        # Byte 0, "id", becomes ten 0xFF (continuation bit set) and 0x01: 11
        # varint bytes, more than a 64-bit value can take.
        Case("11-byte varint", patch(BASE, 0, b"\xff" * 10 + b"\x01"), "kjb.BAD_VARINT",
             'field "id": varint at byte 0 is longer than 10 bytes'),
        # Bytes 34-35, the int "count", become 2^31 (zigzag 2^32).
        Case("int over 32 bits", patch(BASE, 34, b"\x80\x80\x80\x80\x10", 2), "kjb.BAD_VARINT",
             'field "count": int at byte 34 overflows 32 bits: 2147483648'),
        # Byte 25, the union index of "owner", is 5 (0a); it has 2 branches.
        Case("union index 5", patch(BASE, 25, b"\x0a"), "kjb.BAD_UNION_INDEX",
             'field "owner": union index 5 at byte 25 is out of range (2 branches)'),
        # Byte 30, the union index of "ref", is -1 (01).
        Case("union index -1", patch(BASE, 30, b"\x01"), "kjb.BAD_UNION_INDEX",
             'field "ref": union index -1 at byte 30 is out of range (4 branches)'),
        # Byte 4, the enum index of "level", is 7 (0e); Level has 3 symbols.
        Case("enum index 7", patch(BASE, 4, b"\x0e"), "kjb.BAD_ENUM_INDEX",
             'field "level": enum index 7 at byte 4 is out of range (3 symbols)'),
        # Byte 4, the enum index of "level", is -1 (01).
        Case("enum index -1", patch(BASE, 4, b"\x01"), "kjb.BAD_ENUM_INDEX",
             'field "level": enum index -1 at byte 4 is out of range (3 symbols)'),
        # Good Avro that the mapping cannot use:
        Case("args path through null", avrokit.body(V1, event(9, owner=None)),
             "kjb.MISSING_FIELD", f'job "{job}": args: field "owner.email" is missing', MAPPING),
        Case("args path to an absent map key", avrokit.body(V1, event(9, attrs={"zone": "x"})),
             "kjb.MISSING_FIELD", f'job "{job}": args: field "attrs.region" is missing', MAPPING),
        Case("unique_key value null", avrokit.body(V1, event(9, ref=None)),
             "kjb.BAD_TEMPLATE", f'job "{job}": unique_key: field "ref" is null, not a scalar',
             MAPPING),
        Case("unique_key value array", avrokit.body(V1, event(9, ref=[1, 2])),
             "kjb.BAD_TEMPLATE", f'job "{job}": unique_key: field "ref" is an array, not a scalar',
             MAPPING),
        Case("unique_key value object", avrokit.body(V1, event(9, ref={"a": 1})),
             "kjb.BAD_TEMPLATE", f'job "{job}": unique_key: field "ref" is an object, not a scalar',
             MAPPING),
    ]


# --------------------------------------------------------------------------
# Producing and checking


@dataclass
class Src:
    """One produced source record; `offset` is filled in on delivery."""
    value: bytes | None
    partition: int
    timestamp: int
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    case: Case | None = None    # None: a good record
    datum: dict | None = None   # a good record's datum
    offset: int = -1


def produce(kafka, topic: str, records: list[Src]) -> None:
    """Produce in order (idempotent, so order holds per partition) and
    note each record's offset."""
    errors: list[Any] = []

    def delivered(src: Src):
        def cb(err, msg):
            if err:
                errors.append(err)
            else:
                src.offset = msg.offset()
        return cb

    producer = kafka.producer(**{"enable.idempotence": True, "acks": "all"})
    for src in records:
        producer.produce(topic, value=src.value, key=src.key, headers=src.headers or None,
                         partition=src.partition, timestamp=src.timestamp, on_delivery=delivered(src))
    remaining = producer.flush(30)
    assert not remaining and not errors, f"produce to {topic}: {remaining} undelivered, {errors}"


def interleave(cases: list[Case], goods: list[tuple[bytes, dict]], partition: int,
               ts: int) -> list[Src]:
    """good, bad, good, bad, ..., bad, good: every bad record has a good
    neighbour on each side. Bad record n gets KEYS[n % 4], HEADERS[n % 4]."""
    assert len(goods) == len(cases) + 1
    out = []
    for n, (value, datum) in enumerate(goods):
        out.append(Src(value, partition, ts + 2 * n, b"good", [("g", b"1")], datum=datum))
        if n < len(cases):
            out.append(Src(cases[n].value, partition, ts + 2 * n + 1, KEYS[n % 4], HEADERS[n % 4],
                           case=cases[n]))
    return out


def check_dead_letter(dlq: Record, src: Src, topic: str, group: str, t0: float, t1: float) -> None:
    case = src.case
    assert case is not None
    what = f"{topic} [{src.partition}] @{src.offset} ({case.name})"
    assert dlq.value == case.value, f"{what}: value {dlq.value!r} != {case.value!r}"
    assert dlq.key == src.key, f"{what}: key {dlq.key!r} != {src.key!r}"
    n = len(src.headers)
    assert dlq.headers[:n] == src.headers, f"{what}: original headers {dlq.headers[:n]} != {src.headers}"
    added = dlq.headers[n:]
    assert [k for k, _ in added] == list(KJB_HEADERS), f"{what}: kjb headers {added}"
    h = {k: (v.decode() if v is not None else None) for k, v in added}
    expected = {
        "__connect.errors.topic": topic,
        "__connect.errors.partition": str(src.partition),
        "__connect.errors.offset": str(src.offset),
        "__connect.errors.stage": case.stage,
        "__connect.errors.class.name": "kjb",
        "__connect.errors.exception.class.name": case.code,
        "__connect.errors.exception.message": case.message,
        "kjb.original.timestamp": str(src.timestamp),
        "kjb.consumer.group": group,
    }
    for k, v in expected.items():
        assert h[k] == v, f"{what}: header {k} = {h[k]!r}, expected {v!r}"
    at = h["kjb.dead_lettered_at"]
    assert RFC3339_MS_UTC.match(at), f"{what}: kjb.dead_lettered_at {at!r} is not RFC 3339 UTC"
    when = dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    assert t0 - 1 <= when <= t1 + 1, f"{what}: dead-lettered at {at}, not between the run's start and now"


def jobs_of(db) -> dict[tuple, dict]:
    rows = db.query("SELECT source_topic, source_partition, source_offset, kind, args, unique_key,"
                    " meta FROM kjb.jobs")
    out: dict[tuple, dict] = {}
    for topic, part, offset, kind, args, ukey, meta in rows:
        key = (topic, part, offset, kind)
        assert key not in out, f"duplicate job {key}"
        out[key] = {"args": args, "unique_key": ukey, "meta": meta}
    return out


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def dlq_topic_config(topic: str, fmt: str, schema: str, prefix: str, dlq: str | None = None) -> str:
    dlq_cfg = f'dlq = "{dlq}";' if dlq else ""
    if schema == "everything.avsc":
        jobs = f'{{ kind = "{prefix}_all"; }}'
    else:
        # One job takes the whole record and always maps; the other reads
        # args paths and a unique_key that bad records make fail, so a
        # mapping failure must drop the first job's row too.
        jobs = (f'{{ kind = "{prefix}_all"; }}, {{ kind = "{prefix}_pick"; '
                f'args = [ "id", "owner.email", "attrs.region" ]; unique_key = "ev-${{id}}-${{ref}}"; }}')
    return f'{{ topic = "{topic}"; format = "{fmt}"; schema = "{schema}"; {dlq_cfg} jobs = ( {jobs} ); }}'


def check_good_jobs(jobs: dict, topic: str, prefix: str, src: Src, schema: dict) -> None:
    d = src.datum
    assert d is not None
    whole = jobs.get((topic, src.partition, src.offset, f"{prefix}_all"))
    assert whole is not None, f"{topic} [{src.partition}] @{src.offset}: no {prefix}_all job"
    avrokit.assert_same(whole["args"], avrokit.natural(schema, d), f"{topic}@{src.offset}")
    assert whole["meta"]["offset"] == src.offset and whole["meta"]["timestamp"] == src.timestamp
    if schema is EVERYTHING:
        return
    pick = jobs.get((topic, src.partition, src.offset, f"{prefix}_pick"))
    assert pick is not None, f"{topic} [{src.partition}] @{src.offset}: no {prefix}_pick job"
    assert pick["args"] == {"id": d["id"], "owner.email": d["owner"]["email"],
                            "attrs.region": d["attrs"]["region"]}
    assert pick["unique_key"] == f"ev-{d['id']}-{d['ref']}"


class GroupOffsets:
    """The committed offsets of a consumer group, read through one client
    (that never joins the group) for the whole wait."""

    def __init__(self, kafka, group: str, partitions: dict[str, int]):
        from confluent_kafka import TopicPartition

        self.consumer = kafka.consumer(group=group)
        self.tps = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]

    def __call__(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): tp.offset for tp in self.consumer.committed(self.tps, timeout=10)}

    def close(self) -> None:
        self.consumer.close()


# --------------------------------------------------------------------------
# Tests


def test_malformed_corpus_is_dead_lettered_exactly(kafka, db, make_topic, run_kjb, start_kjb,
                                                   kjb_services_env, tmp_path):
    names = {"c": make_topic(), "s": make_topic(), "r": make_topic()}
    dlqs = {"c": f"{names['c']}.dlq", "s": f"{names['s']}.dlq", "r": f"{names['r']}.dead"}
    group = unique_name("dlq_corpus")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, ",".join([
        dlq_topic_config(names["c"], "confluent", "everything.avsc", "c"),
        dlq_topic_config(names["s"], "single-object", "dlq_event.avsc", "s"),
        dlq_topic_config(names["r"], "raw", "dlq_event.avsc", "r", dlq=dlqs["r"]),
    ]))
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0

    cases = {"c": confluent_cases(), "s": single_object_cases(tmp_path / "schemas"), "r": raw_cases()}
    assert sum(len(cs) for cs in cases.values()) >= 22
    ts = int(time.time() * 1000) - 60_000
    sources: dict[str, list[Src]] = {}
    for i, (k, cs) in enumerate(cases.items()):
        ids = [100 * (i + 1) + n for n in range(len(cs) + 1)]
        if k == "c":
            goods = [(avrokit.confluent(EVERYTHING, everything(n), 7), everything(n)) for n in ids]
        elif k == "s":
            # Every other good record is written with v2: resolvable
            # whenever it does not use what v1 lacks.
            goods = [(avrokit.single_object(V2 if n % 2 else V1, event(n)), event(n)) for n in ids]
        else:
            goods = [(avrokit.body(V1, event(n)), event(n)) for n in ids]
        sources[k] = interleave(cs, goods, 0, ts + 1000 * i)
        produce(kafka, names[k], sources[k])

    t0 = time.time()
    proc = start_kjb(["run", "--role", "consumer"], cfg, env=kjb_services_env)
    committed = GroupOffsets(kafka, group, {t: 1 for t in names.values()})
    want = {(names[k], 0): len(sources[k]) for k in names}
    try:
        wait_for(lambda: committed() == want, timeout=120, interval=0.5,
                 message=lambda: f"offsets {want} committed, have {committed()}; "
                                 f"{db.scalar('SELECT count(*) FROM kjb.jobs')} jobs\n{proc.log()[-6000:]}")
    finally:
        committed.close()
    t1 = time.time()
    # Among them a length of 2^62, refused before anything was allocated:
    # kjb is alive and small.
    assert proc.alive(), proc.log()
    rss = peak_rss_mib(proc.pid)
    assert rss < 1024, f"kjb's peak RSS was {rss:.0f} MiB"

    # One DLQ record per bad record, in source order, and nothing else.
    for k, t in names.items():
        bad = [s for s in sources[k] if s.case]
        assert kafka.record_counts(dlqs[k]) == {0: len(bad)}, f"{dlqs[k]}\n{proc.log()[-6000:]}"
        dead = kafka.consume(dlqs[k], count=len(bad), timeout=30)
        assert [d.header("__connect.errors.offset") for d in dead] == [str(s.offset) for s in bad]
        for d, s in zip(dead, bad):
            check_dead_letter(d, s, t, group, t0, t1)

    # The good ones, and only they, became jobs: all of a record's or none.
    jobs = jobs_of(db)
    per_good = {"c": 1, "s": 2, "r": 2}
    assert len(jobs) == sum(per_good[k] * sum(1 for s in sources[k] if not s.case) for k in names)
    schema = {"c": EVERYTHING, "s": V1, "r": V1}
    for k, t in names.items():
        bad_offsets = {s.offset for s in sources[k] if s.case}
        assert not [j for j in jobs if j[0] == t and j[2] in bad_offsets], f"{t}: a bad record became a job"
        for s in sources[k]:
            if not s.case:
                check_good_jobs(jobs, t, k, s, schema[k])

    assert proc.stop() == 0
    for k, t in names.items():
        assert kafka.end_offsets(t) == {0: len(sources[k])}


def test_two_partitions_keep_order_and_lose_nothing(kafka, db, make_topic, run_kjb, start_kjb,
                                                     kjb_services_env, tmp_path):
    topic, group = make_topic(partitions=2), unique_name("dlq_parts")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group,
                       dlq_topic_config(topic, "raw", "dlq_event.avsc", "p"))
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    corpus = raw_cases("p_pick")
    ts = int(time.time() * 1000) - 60_000
    # Partition 0 runs through the corpus forwards, partition 1 backwards,
    # each 1.5 times (75 records a partition, several 50-record batches);
    # records alternate between the partitions as they are produced.
    lanes: list[list[Src]] = []
    for p in (0, 1):
        order_ = corpus if p == 0 else corpus[::-1]
        cs = order_ + order_[: len(corpus) // 2]
        ids = [10_000 * (p + 1) + n for n in range(len(cs) + 1)]
        lanes.append(interleave(cs, [(avrokit.body(V1, event(n)), event(n)) for n in ids], p,
                                ts + 100_000 * p))
    produce(kafka, topic, [s for pair in zip(*lanes) for s in pair])
    counts = {p: len(lanes[p]) for p in (0, 1)}

    t0 = time.time()
    proc = start_kjb(["run", "--role", "consumer"], cfg, env=kjb_services_env)
    committed = GroupOffsets(kafka, group, {topic: 2})
    want = {(topic, p): n for p, n in counts.items()}
    try:
        wait_for(lambda: committed() == want, timeout=120, interval=0.5,
                 message=lambda: f"offsets {want} committed, have {committed()}\n{proc.log()[-6000:]}")
    finally:
        committed.close()
    t1 = time.time()
    assert proc.stop() == 0

    bad = {p: [s for s in lanes[p] if s.case] for p in (0, 1)}
    dead = kafka.consume(f"{topic}.dlq", timeout=30)
    assert len(dead) == sum(len(b) for b in bad.values())
    for p in (0, 1):
        # In the DLQ, each source partition's dead letters keep their order.
        mine = [d for d in dead if d.header("__connect.errors.partition") == str(p)]
        assert [int(d.header("__connect.errors.offset")) for d in mine] == [s.offset for s in bad[p]]
        for d, s in zip(mine, bad[p]):
            check_dead_letter(d, s, topic, group, t0, t1)

    # Every offset of both partitions is accounted for exactly once.
    jobs = jobs_of(db)
    for p in (0, 1):
        job_offsets = {j[2] for j in jobs if j[1] == p}
        dead_offsets = {s.offset for s in bad[p]}
        assert not job_offsets & dead_offsets
        assert job_offsets | dead_offsets == set(range(counts[p]))
        for s in lanes[p]:
            if not s.case:
                check_good_jobs(jobs, topic, "p", s, V1)
    assert len(jobs) == 2 * sum(1 for lane in lanes for s in lane if not s.case)
    assert kafka.end_offsets(topic) == counts
