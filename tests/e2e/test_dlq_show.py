"""`kjb dlq show`: the fields decoded before the failure, on real dead
letters. Records of order_created (schema id 1) cut or damaged at known
places go through `kjb run`, which dead-letters them; `kjb dlq show ID`
and `--json` then show what their bytes hold up to the failure."""

from __future__ import annotations

import json

import avrokit
from kjbtest import order, unique_name, wait_for, write_ingest_config

ORDER = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")

# order(5)'s value ends with created_at (a 6-byte varint), note (union
# index 0: null) and tags (an empty map): 8 bytes.
FULL = avrokit.confluent(ORDER, order(5), 1)
CREATED_AT = len(FULL) - 8
NOTE = len(FULL) - 2
assert FULL[NOTE:] == b"\x00\x00"
BEFORE_CREATED_AT = {"order_id": 5, "customer": {"id": 7, "email": "ada@example.com", "name": "Ada"},
                     "amount": "19.99", "currency": "EUR",
                     "items": [{"sku": "A-1", "quantity": 2, "price": 9.995}]}


def damaged() -> dict[str, tuple[bytes, str, str, int, dict]]:
    """reason -> (value, failing field, message tail, failing byte, partial)."""
    name = avrokit.confluent(ORDER, dict(order(5), customer={"id": 7, "email": "ada@example.com", "name": "Adx"}), 1)
    bad_name = name.replace(b"Adx", b"Ad\xff")
    bad_at = bad_name.index(b"\xff")
    return {
        # Cut inside created_at's varint.
        "TRUNCATED": (FULL[:CREATED_AT + 4], "created_at",
                      f"truncated at byte {CREATED_AT - 5}: data ends inside a varint", CREATED_AT,
                      BEFORE_CREATED_AT),
        # note's union index 2 of a 2-branch union.
        "BAD_UNION_INDEX": (FULL[:NOTE] + b"\x04\x00", "note",
                            f"union index 2 at byte {NOTE - 5} is out of range (2 branches)", NOTE,
                            dict(BEFORE_CREATED_AT, created_at="2025-11-21T10:00:00.005Z")),
        # customer.name holds a byte that is not UTF-8.
        "INVALID_UTF8": (bad_name, "customer.name", f"invalid utf-8 at byte {bad_at - 5}", bad_at,
                         {"order_id": 5, "customer": {"id": 7, "email": "ada@example.com"}}),
    }


def test_show_decoded_before_the_failure(kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, tmp_path):
    src = make_topic()
    make_topic(name=f"{src}.dlq")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", unique_name("dlqshow"),
                              f'{{ topic = "{src}"; schema = "order_created.avsc"; jobs = ( {{ kind = "k"; }} ); }}')
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    cases = damaged()
    for value, *_ in cases.values():
        kafka.produce(src, [value])
    proc = start_kjb(("run", "--role", "consumer"), cfg, env=kjb_services_env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.dead_letters") == len(cases), timeout=120,
             message=lambda: proc.log()[-4000:])
    proc.stop()
    ids = dict((reason, rid) for rid, reason in db.query("SELECT id, reason FROM kjb.dead_letters"))
    assert set(ids) == set(cases)

    for reason, (value, field, tail, byte, partial) in cases.items():
        message = f'avro body at byte 5: field "{field}": {tail}'
        shown = run_kjb(["dlq", "show", str(ids[reason]), "--json"], cfg, env=kjb_services_env)
        assert shown.returncode == 0, shown.stderr
        got = json.loads(shown.stdout)
        assert (got["reason"], got["message"], got["decode_error"]) == (reason, message, f"kjb.{reason}: {message}")
        assert got["partial"] == partial, reason
        assert got["partial_at"] == {"field": field, "byte": byte}
        assert got["failing_byte"] == byte and got["failing_field"] == field

        text = run_kjb(["dlq", "show", str(ids[reason])], cfg, env=kjb_services_env)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        i = lines.index(f"decoded before the failure (at {field}, byte {byte}):")
        assert json.loads("\n".join(lines[i + 1:])) == partial, reason
