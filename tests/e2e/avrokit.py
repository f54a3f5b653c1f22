"""Independent Avro tooling for the end-to-end tests: encoding with fastavro
in kjb's three framings, and the natural-JSON rendering DESIGN.md defines,
written from the spec so that kjb's decoder is checked against it rather
than against itself."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import shutil
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

REPO = Path(__file__).resolve().parents[2]
E2E_SCHEMAS = Path(__file__).resolve().parent / "schemas"
PRODUCT_SCHEMAS = REPO / "schemas" / "avro"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def schema_dir(dest: Path) -> Path:
    """A schemas.dir for a test: the product's schemas plus the e2e ones."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in (PRODUCT_SCHEMAS, E2E_SCHEMAS):
        for f in src.glob("*.avsc"):
            shutil.copy(f, dest / f.name)
    return dest


def load(path: Path | str) -> dict:
    return fastavro.parse_schema(json.loads(Path(path).read_text()))


def body(schema: dict, datum: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, datum)
    return buf.getvalue()


def confluent(schema: dict, datum: dict, schema_id: int) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body(schema, datum)


def single_object(schema: dict, datum: dict) -> bytes:
    # fastavro gives the fingerprint as hex of its little-endian bytes,
    # which is the order single-object encoding writes them in.
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    return b"\xc3\x01" + fp + body(schema, datum)


def _rfc3339(t: dt.datetime, digits: int, zone: str = "Z") -> str:
    frac = f"{t.microsecond:06d}"[:digits]
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + frac + zone


def _time(us: int, digits: int) -> str:
    s, frac = divmod(us, 1_000_000)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." + f"{frac:06d}"[:digits]


def _float(x: float) -> Any:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _decimal(d: Decimal, scale: int) -> str:
    return format(d.quantize(Decimal(1).scaleb(-scale)), "f")


def natural(schema: Any, value: Any, named: dict | None = None) -> Any:
    """The natural JSON of `value` (a datum as given to fastavro, with
    logical types as their underlying numbers or Decimal) under `schema`
    (as returned by fastavro.parse_schema)."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in named:
            return natural(named[schema], value, named)
        t, logical = schema, None
        schema = {"type": t}
    elif isinstance(schema, list):
        branch = _pick_branch(schema, value, named)
        return natural(branch, value, named)
    else:
        t, logical = schema["type"], schema.get("logicalType")
        if "name" in schema and t in ("record", "enum", "fixed"):
            named[schema["name"]] = schema
    if t in ("float", "double"):
        return _float(value)
    if t == "null":
        return None
    if t == "boolean":
        return bool(value)
    if t in ("int", "long"):
        if logical == "timestamp-millis":
            return _rfc3339(EPOCH + dt.timedelta(milliseconds=value), 3)
        if logical == "timestamp-micros":
            return _rfc3339(EPOCH + dt.timedelta(microseconds=value), 6)
        if logical == "date":
            return (dt.date(1970, 1, 1) + dt.timedelta(days=value)).isoformat()
        if logical == "time-millis":
            return _time(value * 1000, 3)
        if logical == "time-micros":
            return _time(value, 6)
        return value
    if t == "string":
        return str(value)
    if t in ("bytes", "fixed"):
        if logical == "decimal":
            return _decimal(value, schema.get("scale", 0))
        return base64.b64encode(value).decode()
    if t == "enum":
        return value
    if t == "array":
        return [natural(schema["items"], v, named) for v in value]
    if t == "map":
        return {k: natural(schema["values"], v, named) for k, v in value.items()}
    if t == "record":
        return {f["name"]: natural(f["type"], value.get(f["name"], f.get("default")), named)
                for f in schema["fields"]}
    raise ValueError(f"unhandled type {t}")


def _pick_branch(branches: list, value: Any, named: dict) -> Any:
    # Our test data is unambiguous: None -> null, str -> string or enum
    # (enum when it is one of the enum's symbols and no string branch
    # precedes), int -> long, dict -> record.
    for b in branches:
        t = b if isinstance(b, str) else b.get("type")
        resolved = named.get(t, b) if isinstance(b, str) else b
        rt = resolved if isinstance(resolved, str) else resolved["type"]
        if value is None and rt == "null":
            return b
        if isinstance(value, bool):
            if rt == "boolean":
                return b
            continue
        if isinstance(value, int) and rt in ("int", "long"):
            return b
        if isinstance(value, str) and rt == "string":
            return b
        if isinstance(value, str) and rt == "enum" and value in resolved["symbols"]:
            return b
        if isinstance(value, dict) and rt == "record":
            return b
    raise ValueError(f"no branch of {branches} for {value!r}")


def assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """Field-by-field comparison that names the path of the first
    difference; floats compare to float32 precision."""
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        assert math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-30), f"{path}: {actual!r} != {expected!r}"
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        assert set(actual) == set(expected), f"{path}: keys {sorted(actual)} != {sorted(expected)}"
        for k in expected:
            assert_same(actual[k], expected[k], f"{path}.{k}")
        return
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{path}[{i}]")
        return
    assert actual == expected and type(actual) is type(expected), f"{path}: {actual!r} != {expected!r}"
