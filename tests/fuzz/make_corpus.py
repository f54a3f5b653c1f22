#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets in tests/fuzz/ into
tests/fuzz/corpus/<target>/. Run after changing a schema, the topic list or
an input format, and commit the result:

    .venv/bin/python tests/fuzz/make_corpus.py            # every target
    .venv/bin/python tests/fuzz/make_corpus.py reset api  # only these

decode (fuzz_decode.c): valid records in each framing, encoded with
fastavro (independently of kjb's own encoder), and malformed ones made from
them. Each file is a topic selector byte (0 orders/confluent, 1 rich/raw,
2 orders.so/single-object, 3 rich.evolved/confluent) and the record value.

reset (fuzz_reset.c): an offset-reset spec, a NUL, and the watermarks,
committed offset, offset for the time and clock as five int64 words.

template (fuzz_template.c): a unique_key template, then NUL-separated args
paths; the record's numbers come from the input's last 8 bytes.

api (fuzz_api.c): a selector character (p path, q query string, b POST
/api/replay body, a Authorization header) and the bytes it takes.

File names say what the input is; malformed ones start with "bad-".
Existing files are replaced, other files in the directories are left alone
(regressions found by fuzzing live there too).
"""

from __future__ import annotations

import copy
import io
import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

ORDERS, RICH, ORDERS_SO, RICH_EVOLVED = 0, 1, 2, 3


def load_avro() -> None:
    """fastavro and the schemas, for the decode corpus only (the venv has
    fastavro; the other corpora need nothing beyond Python)."""
    global fastavro, fingerprint, to_parsing_canonical_form, V1, V2, RICH_S, OLD_S
    import fastavro
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    def schema(path: Path) -> dict:
        return fastavro.parse_schema(json.loads(path.read_text()))

    V1 = schema(REPO / "schemas/avro/order_created.avsc")
    V2 = schema(REPO / "schemas/avro/order_created_v2.avsc")
    RICH_S = schema(HERE / "schemas/fuzz_rich.avsc")
    OLD_S = schema(HERE / "schemas/fuzz_rich_old.avsc")


def body(s: dict, datum: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, s, datum)
    return buf.getvalue()


def confluent(schema_id: int, b: bytes) -> bytes:
    return b"\x00" + struct.pack(">i", schema_id) + b


def single_object(s: dict, b: bytes) -> bytes:
    # fastavro gives the fingerprint as hex of its little-endian bytes,
    # the order single-object framing writes them in.
    return b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(s), "CRC-64-AVRO")) + b


def zigzag(n: int) -> bytes:
    u = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = u & 0x7F
        u >>= 7
        if u:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def unscaled(n: int, size: int | None = None) -> bytes:
    """Big-endian two's complement, minimal or padded to size."""
    length = size or max(1, (n.bit_length() + 8) // 8)
    return n.to_bytes(length, "big", signed=True)


ORDER_V1 = {
    "order_id": 42,
    "customer": {"id": 7, "email": "a@b.example", "name": "Al"},
    "amount": unscaled(1999),
    "currency": "USD",
    "items": [{"sku": "X1", "quantity": 2, "price": 2.5}],
    "created_at": 1795255200123,
    "note": "hi",
    "tags": {"k": "v"},
}
ORDER_V1_MIN = {
    "order_id": -1,
    "customer": {"id": 0, "email": "", "name": "\u00e9\u4e2d\U0001f600"},
    "amount": unscaled(-5),
    "currency": "GBP",
    "items": [],
    "created_at": -62135596800000,
    "note": None,
    "tags": {},
}
ORDER_V1_MANY = {
    **ORDER_V1,
    "items": [{"sku": f"S{i}", "quantity": i, "price": i / 3} for i in range(5)],
    "tags": {f"t{i}": str(i) for i in range(4)},
    "amount": unscaled(10**11 - 1),
}
ORDER_V2 = {**ORDER_V1, "channel": "app"}


def customer(email: str, city: str | None = None) -> dict:
    return {"email": email, "address": None if city is None else {"city": city, "zip": "75001"}}


def tree(depth: int, fanout: int = 1) -> dict:
    node: dict = {"label": f"leaf{depth}", "children": [], "next": None}
    for d in range(depth):
        node = {"label": f"n{d}", "children": [copy.deepcopy(node) for _ in range(fanout)],
                "next": {"label": "side", "children": [], "next": None}}
    return node


RICH_FULL = {
    "id": 1,
    "flag": True,
    "small": -2147483648,
    "big": 9223372036854775807,
    "ratio": 1.5,
    "score": -0.1,
    "wide": 1e300,
    "name": "caf\u00e9",
    "blob": b"\x00\x01\xfe\xff",
    "nothing": None,
    "color": "GREEN",
    "hash": b"\xde\xad\xbe\xef",
    "tags": ["a", "", "\u00fc"],
    "attrs": {"n": None, "l": -3, "s": "x"},
    "choice": {"k": 2.5, "nan": float("nan")},
    "customer": customer("c@d.example", "Paris"),
    "ts_ms": 1795255200123,
    "ts_us": -1,
    "lts_ms": 253402300799999,
    "lts_us": 0,
    "day": 20778,
    "t_ms": 86399999,
    "t_us": 1,
    "amount": unscaled(-123456789012345678901234567890),
    "fixed_amount": unscaled(-1999, 8),
    "huge_amount": unscaled(-(7**600)),
    "uid": "123e4567-e89b-12d3-a456-426614174000",
    "span": struct.pack("<III", 1, 2, 3),
    "tree": tree(3, 2),
    "matrix": [[None, 1.0], [], [2.0, float("inf")]],
    "lookup": {"eu": {"fr": customer("f@r.example", "Lyon")}, "none": {}},
    "voids": [[None, None], []],
    "renamed": "r",
    "opt": 5,
    "was_union": 7,
    "added": {"a": 3, "b": ["y", "z"]},
    "added_bytes": b"",
    "added_ts": 0,
    "added_dec": unscaled(100),
    "added_enum": "RED",
    "added_map": {"m": b"abcd"},
    "added_union": None,
    "added_double": float("-inf"),
}
RICH_MIN = {
    **RICH_FULL,
    "flag": False,
    "small": 0,
    "big": 0,
    "ratio": 0.0,
    "score": 0.0,
    "wide": -0.0,
    "name": "",
    "blob": b"",
    "color": "RED",
    "tags": [],
    "attrs": {},
    "choice": None,
    "customer": customer(""),
    "amount": unscaled(0),
    "fixed_amount": unscaled(0, 8),
    "huge_amount": b"",
    "tree": tree(0),
    "matrix": [],
    "lookup": {},
    "voids": [],
    "opt": None,
    "added": {"a": 0, "b": []},
    "added_map": {},
    "added_union": "s",
}
RICH_BRANCHES = [
    {**RICH_MIN, "choice": "str"},
    {**RICH_MIN, "choice": -9},
    {**RICH_MIN, "choice": ("kjb.fuzz.Color", "BLUE")},
    {**RICH_MIN, "choice": b"\x00\x00\x00\x00"},
    {**RICH_MIN, "choice": [1, -1, 2147483647]},
]

OLD_FULL = {
    "id": 2,
    "flag": True,
    "small": 1,
    "big": -2147483648,
    "ratio": 16777217,
    "score": 3.25,
    "wide": 9007199254740993,
    "name": "n\u00e9".encode(),
    "blob": "b",
    "nothing": None,
    "color": "PURPLE",
    "hash": b"1234",
    "tags": [b"t1", b""],
    "attrs": {"x": 1, "y": -1},
    "choice": 12,
    "customer": {"email": "o@l.d", "phone": "+33",
                 "legacy": [{"k": {"x": 1.0, "y": b"abc", "e": "RED",
                                   "z": {"x": 2.0, "y": b"def", "e": "PURPLE", "z": None}}}, {}]},
    "ts_ms": 0,
    "ts_us": 1795255200123456,
    "lts_ms": -1,
    "lts_us": 1,
    "day": -719162,
    "t_ms": 0,
    "t_us": 86399,
    "amount": unscaled(10**29),
    "fixed_amount": unscaled(12345, 8),
    "huge_amount": "\u0001\u00ff",
    "uid": b"not-a-uuid",
    "span": bytes(12),
    "tree": tree(2, 1),
    "matrix": [[1, 2**40, 0.5]],
    "lookup": {"a": {"b": {"email": "e", "phone": None, "legacy": []}}},
    "voids": [[None]],
    "old_name": "renamed by alias",
    "opt": -7,
    "was_union": 2**62,
    "dropped": {"d1": None, "d2": ["GREEN", "PURPLE"], "d3": {"v": [None, None]}},
}
OLD_BRANCHES = [
    {**OLD_FULL, "choice": ("kjb.fuzz.Color", "PURPLE")},
    {**OLD_FULL, "choice": "s", "was_union": 3},
    {**OLD_FULL, "choice": None, "was_union": "unreadable as long"},
    {**OLD_FULL, "choice": 1.5},  # float: no reader branch
    {**OLD_FULL, "was_union": None},
]


def decode_corpus() -> dict[str, bytes]:
    load_avro()
    sys.setrecursionlimit(20000)
    files: dict[str, bytes] = {}
    v1 = body(V1, ORDER_V1)
    v2 = body(V2, ORDER_V2)
    rich = body(RICH_S, RICH_FULL)
    old = body(OLD_S, OLD_FULL)

    # Valid records, every framing and schema pair.
    files["orders-confluent-v1"] = bytes([ORDERS]) + confluent(1, v1)
    files["orders-confluent-v1-min"] = bytes([ORDERS]) + confluent(1, body(V1, ORDER_V1_MIN))
    files["orders-confluent-v1-many"] = bytes([ORDERS]) + confluent(1, body(V1, ORDER_V1_MANY))
    files["orders-confluent-v2"] = bytes([ORDERS]) + confluent(2, v2)
    files["orders-so-v1"] = bytes([ORDERS_SO]) + single_object(V1, v1)
    files["orders-so-v2"] = bytes([ORDERS_SO]) + single_object(V2, v2)
    files["orders-so-v1-min"] = bytes([ORDERS_SO]) + single_object(V1, body(V1, ORDER_V1_MIN))
    files["rich-raw-full"] = bytes([RICH]) + rich
    files["rich-raw-min"] = bytes([RICH]) + body(RICH_S, RICH_MIN)
    for i, d in enumerate(RICH_BRANCHES):
        files[f"rich-raw-branch{i}"] = bytes([RICH]) + body(RICH_S, d)
    files["rich-raw-deep-tree"] = bytes([RICH]) + body(RICH_S, {**RICH_MIN, "tree": tree(60)})
    files["rich-confluent-full"] = bytes([RICH_EVOLVED]) + confluent(3, rich)
    files["rich-confluent-old"] = bytes([RICH_EVOLVED]) + confluent(4, old)
    for i, d in enumerate(OLD_BRANCHES):
        files[f"rich-confluent-old-branch{i}"] = bytes([RICH_EVOLVED]) + confluent(4, body(OLD_S, d))
    files["rich-so-as-orders"] = bytes([ORDERS_SO]) + single_object(RICH_S, rich)
    files["rich-confluent-as-orders"] = bytes([ORDERS]) + confluent(3, rich)

    # Malformed: framing.
    files["bad-empty"] = bytes([ORDERS])
    files["bad-short-header"] = bytes([ORDERS]) + b"\x00\x00\x00\x01"
    files["bad-magic"] = bytes([ORDERS]) + b"\x07" + confluent(1, v1)[1:]
    files["bad-unknown-id"] = bytes([ORDERS]) + confluent(99, v1)
    files["bad-negative-id"] = bytes([RICH_EVOLVED]) + confluent(-1, rich)
    files["bad-so-magic"] = bytes([ORDERS_SO]) + b"\xc3\x02" + single_object(V1, v1)[2:]
    files["bad-so-fingerprint"] = bytes([ORDERS_SO]) + b"\xc3\x01" + bytes(8) + v1
    files["bad-so-short"] = bytes([ORDERS_SO]) + b"\xc3\x01\x00"
    # Malformed: truncated and trailing bytes.
    files["bad-truncated-v1"] = bytes([ORDERS]) + confluent(1, v1[: len(v1) // 2])
    files["bad-truncated-rich"] = bytes([RICH]) + rich[: len(rich) * 2 // 3]
    files["bad-trailing"] = bytes([ORDERS]) + confluent(2, v2 + b"\x00")
    # Malformed: lengths, counts, varints, indexes, text.
    files["bad-huge-length"] = bytes([ORDERS]) + confluent(1, b"\x54\x0e\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01")
    files["bad-negative-length"] = bytes([ORDERS]) + confluent(1, b"\x54\x0e\x03abc")
    files["bad-overlong-varint"] = bytes([RICH]) + b"\xff" * 11
    files["bad-varint-overflow"] = bytes([RICH]) + b"\xff" * 9 + b"\x02"
    files["bad-int-overflow"] = bytes([RICH]) + b"\x02\x01" + zigzag(2**31) + rich[7:]
    files["bad-boolean"] = bytes([RICH]) + b"\x02\x02" + rich[2:]
    # items: a block of -1 items whose byte size is wrong, then one of 2**40.
    head = v1[: v1.index(b"\x02\x04X1")]
    files["bad-block-size"] = bytes([ORDERS]) + confluent(1, head + zigzag(-1) + zigzag(3) + v1[len(head) + 1:])
    files["bad-block-count"] = bytes([ORDERS]) + confluent(1, head + zigzag(2**40) + b"\x00")
    files["bad-block-min"] = bytes([ORDERS]) + confluent(1, head + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
    files["bad-enum-index"] = bytes([ORDERS]) + confluent(1, v1.replace(b"\x07\xcf\x02", b"\x07\xcf\x08", 1))
    marker = body(V1, {**ORDER_V1, "customer": {"id": 7, "email": "MARKER", "name": "Al"}})
    files["bad-utf8"] = bytes([ORDERS]) + confluent(1, marker.replace(b"MARKER", b"MA\xed\xa0\x80R"))
    files["bad-utf8-overlong"] = bytes([ORDERS]) + confluent(1, marker.replace(b"MARKER", b"MA\xc0\xafER"))
    rich_m = body(RICH_S, {**RICH_MIN, "choice": "MARKER"})
    files["bad-union-index"] = bytes([RICH]) + rich_m.replace(zigzag(1) + b"\x0cMARKER", zigzag(7) + b"\x0cMARKER")
    files["bad-union-negative"] = bytes([RICH]) + rich_m.replace(zigzag(1) + b"\x0cMARKER", zigzag(-1) + b"\x0cMARKER")
    files["bad-map-key-utf8"] = bytes([RICH]) + body(RICH_S, {**RICH_MIN, "attrs": {"MARKER": 1}}).replace(b"MARKER", b"\xffARKER")
    # Malformed: values out of range for their logical types.
    files["bad-timestamp-range"] = bytes([RICH]) + body(RICH_S, {**RICH_MIN, "ts_ms": 2**62})
    files["bad-date-range"] = bytes([RICH]) + body(RICH_S, {**RICH_MIN, "day": -2**31})
    files["bad-time-range"] = bytes([RICH]) + body(RICH_S, {**RICH_MIN, "t_ms": 86400000})
    files["bad-decimal-long"] = bytes([RICH]) + body(RICH_S, {**RICH_MIN, "huge_amount": b"\x01" * 1100})
    # Malformed: too deep, and resolution failures on the data path.
    files["bad-deep-tree"] = bytes([RICH]) + body(RICH_S, {**RICH_MIN, "tree": tree(200)})

    # 100 nested arrays of 2^20 - 1 nulls each in 561 bytes, which ran
    # fuzz_decode out of memory (over 2 GB) before the cap on zero-byte
    # items held per record (tests/unit/test_decode.c has the case).
    rich_v = body(RICH_S, {**RICH_MIN, "voids": [], "renamed": "MARKER"})
    voids = zigzag(100) + (zigzag(2**20 - 1) + b"\x00") * 100 + b"\x00"
    files["bad-nested-null-arrays"] = bytes([RICH]) + rich_v.replace(b"\x00\x0cMARKER", voids + b"\x0cMARKER")
    return files


def words(*ws: int) -> bytes:
    return b"".join(struct.pack("<q", w) for w in ws)


I64_MAX, I64_MIN = 2**63 - 1, -(2**63)


def reset_corpus() -> dict[str, bytes]:
    """Specs as kafka-consumer-groups and the API take them, each with
    watermarks [10, 50], committed 30, nothing for the time and a clock in
    2027, unless the name says otherwise."""
    at = words(10, 50, 30, -1, 1800000000000)
    files = {
        "earliest": b"to-earliest\0" + at,
        "latest": b"to-latest\0" + at,
        "offset": b"to-offset:42\0" + at,
        "offset-max": b"to-offset:9223372036854775807\0" + at,
        "shift-back": b"shift-by:-5\0" + at,
        "shift-min-no-commit": b"shift-by:-9223372036854775808\0" + words(0, I64_MAX, -1, -1, 0),
        "shift-max-at-end": b"shift-by:9223372036854775807\0" + words(0, I64_MAX, I64_MAX - 1, -1, 0),
        "datetime": b"to-datetime:2026-11-21T10:00:00.000\0" + words(10, 50, 30, 40, 1800000000000),
        "datetime-zone-nanos": b"to-datetime:2026-11-21T05:30:00.123456789-04:30\0" + at,
        "datetime-year-0": b"to-datetime:0000-01-01T00:00:00+23:59\0" + at,
        "datetime-leap": b"to-datetime:2024-02-29T23:59:59Z\0" + at,
        "duration": b"by-duration:P1DT2H3M4.5S\0" + words(10, 50, 30, 12, 1800000000000),
        "duration-max": b"by-duration:PT9223372036854775.807S\0" + at,
        "bad-offset-leading-zero": b"to-offset:01",
        "bad-shift-plus": b"shift-by:+5",
        "bad-datetime-no-such-day": b"to-datetime:2026-02-29T00:00:00",
        "bad-datetime-zone": b"to-datetime:2026-11-21T10:00:00+24:00",
        "bad-duration-order": b"by-duration:PT1M1H",
        "bad-duration-too-long": b"by-duration:P106751991167DT7H12M55.808S",
        # Accepted before a fraction of zero counted as one (fuzz_reset).
        "bad-duration-fraction-on-days": b"by-duration:P0533.00D",
        "bad-name": b"TO-EARLIEST",
        "bad-long-utf8": b"to-offset:x" + "\u00e9".encode() * 60,
    }
    return files


def template_corpus() -> dict[str, bytes]:
    """Templates and args paths over fuzz_template.c's record: every kind
    of value, nesting, each error, and numbers chosen by the last 8
    bytes (the seeds that test numbers end with them)."""
    def nums(d: float) -> bytes:
        return struct.pack("<d", d)

    return {
        "order-id": b"order-${order_id}",
        "nested-with-args": b"${order_id}/${customer.email}\0order_id\0customer.email\0customer.address.city",
        "scalars": b"${flag}-${off}-${neg}:${customer.address.city}${customer.address.zip}",
        "text-and-controls": "${text}|${ctl}|caf\u00e9".encode(),
        "numbers-tenth": b"${d}:${f}:${i}\0d\0f\0i\0" + nums(0.1),
        "numbers-tiny": b"${d}:${f}\0" + nums(5e-324),
        "numbers-negative-zero": b"${d} ${f}\0" + nums(-0.0),
        "numbers-nan": b"${d} ${f}\0" + b"\x01\x00\x00\x00\x00\x00\xf8\x7f",
        "numbers-large": b"${d}\0" + nums(1.2345678901234567e300),
        "map-keys": "${map.a.b}${map.}${map.\u00fc}\0a.b\0\0\u00fc\0}\0${x}".encode(),
        "whole-record": b"static",
        "empty-key-and-dup": b"${dup}\0\0dup\0dup",
        "raw-invalid-utf8": b"${raw}\xff\xfe",
        "bad-null": b"${customer.note}",
        "bad-array": b"${customer.tags}",
        "bad-object": b"${customer}",
        "bad-missing": b"${customer.phone}\0customer.phone",
        "bad-through-scalar": b"${order_id.x}\0order_id.x",
        "bad-unterminated": b"a${order_id}b${order_id",
        "bad-empty-path": b"${}",
        "bad-nested-open": b"${a${order_id}}",
        # Refused as malformed when unique_key copied paths into 256 bytes.
        "long-path": b"${customer." + b"n" * 300 + b"}${order_id}\0customer." + b"n" * 300,
    }


def api_corpus() -> dict[str, bytes]:
    """Requests as fuzz_api.c takes them: p path, q query string, b
    POST /api/replay body, a Authorization header."""
    long_spec = "to-offset:x" + "\u00e9" * 60
    return {
        "path-job": b"p/api/jobs/42",
        "path-retry": b"p/api/jobs/9223372036854775807/retry",
        "path-replay": b"p/api/replay",
        "bad-path-leading-zero": b"p/api/jobs/0042/cancel",
        "bad-path-id-overflow": b"p/api/jobs/9223372036854775808",
        "bad-path-empty-id": b"p/api/jobs//retry",
        "query-jobs": b"qstate=running&kind=send_confirmation&limit=10&before=100",
        "query-repeated": b"qlimit=200&limit=5&flag&kind=a+b%2Bc",
        "query-utf8": b"q%C3%A9t%C3%A9=%E2%98%95&kind=%F0%9F%98%80",
        "bad-query-limit": b"qlimit=0",
        "bad-query-plus": b"qlimit=%2B5",
        "bad-query-state": b"qstate=sleeping",
        "bad-query-utf8": b"qkind=%ff",
        "bad-query-nul": b"qkind=a%00b",
        "bad-query-name-overlong": b"q%C0%AF=1",
        "body-empty": b"b",
        "body-full": b'b{"topic": "payments.failed", "reset_offsets": "by-duration:PT1H", "dry_run": true}',
        "body-nulls": b'b{"topic": null, "reset_offsets": "", "dry_run": null}',
        "body-long-spec": b'b{"reset_offsets": "to-datetime:2026-11-21T10:00:00.123456789+01:00"}',
        "bad-body-not-object": b"b[1]",
        "bad-body-json": b'b{"topic": "orders.dlq",',
        "bad-body-types": b'b{"topic": 5, "dry_run": "yes"}',
        "bad-body-topic": b'b{"topic": "orders"}',
        "bad-body-spec": ('b{"reset_offsets": "' + long_spec + '"}').encode(),
        "bad-body-nul": b'b{"topic": "orders.dlq\\u0000"}',
        "auth": b"aBearer s3cr3t-t0ken",
        "auth-case": b"abEARER s3cr3t-t0ken",
        "bad-auth-wrong": b"aBearer s3cr3t-t0ke",
        "bad-auth-basic": b"aBasic czNjcjN0",
        "bad-auth-nul": b"aBearer s3cr3t-t0ken\0",
    }


def write(name: str, files: dict[str, bytes]) -> None:
    out = HERE / "corpus" / name
    out.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        (out / fname).write_bytes(data)
    total = sum(len(v) for v in files.values())
    print(f"make_corpus: wrote {len(files)} files ({total} bytes) to {out.relative_to(REPO)}")


CORPORA = {"decode": decode_corpus, "reset": reset_corpus, "template": template_corpus,
           "api": api_corpus}


def main() -> int:
    names = sys.argv[1:] or list(CORPORA)
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        print(f"make_corpus: unknown target {unknown[0]} (known: {', '.join(CORPORA)})",
              file=sys.stderr)
        return 2
    for name in names:
        write(name, CORPORA[name]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
