"""The dead-letter workbench over HTTP (docs/http-api.md), against a real
Kafka and PostgreSQL: GET /api/dead-letters with every filter and paging,
GET /api/dead-letters/{id}, POST /api/dead-letters/ignore and /replay with
dry runs and for real, GET /api/audit, and the named admin tokens
(http.admin_tokens) whose names become the actors of the audit trail.

The module fixture `world` dead-letters a known set of bad records with one
`kjb run`, then serves the API from a second one whose configuration knows
the schema id some of them were written with, as an operator would after
fixing it: those can be replayed, the others still fail. Lists and records
are compared with what `kjb dlq ls|show --json` and `kjb audit ls --json`
print for the same rows."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import avrokit
from kjbtest import (Database, Kjb, KjbProcess, caught_up, drop_db, free_port, make_db, order, request,
                     stop_checked, unique_name, wait_for)

ORDER = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
TOKENS = {"admin": "api-dl-admin-5e1f", "ops": "api-dl-ops-77c2", "ci": "api-dl-ci-0b9d"}
# The environment of the serving kjb: "gone" is configured, its variable unset.
TOKEN_ENV = {"KJB_T_ADMIN": TOKENS["admin"], "KJB_T_OPS": TOKENS["ops"], "KJB_T_CI": TOKENS["ci"]}
HTTP = """http = { admin_token_env = "KJB_T_ADMIN";
  admin_tokens = ( { name = "ops"; env = "KJB_T_OPS"; }, { name = "ci"; env = "KJB_T_CI"; },
                   { name = "gone"; env = "KJB_T_GONE"; } ); };"""


@dataclass
class Bad:
    partition: int
    key: bytes | None
    value: bytes
    reason: str
    offset: int = -1


def bad_records() -> list[Bad]:
    unknown = lambda i: b"\x00\x00\x00\x00\x09" + avrokit.body(ORDER, order(i))  # noqa: E731
    return [
        Bad(0, b"k-a", b"\x07junk", "BAD_MAGIC"),
        Bad(0, b"k-u1", unknown(901), "UNKNOWN_SCHEMA_ID"),
        Bad(1, b"k-b", b"\x01\x02\x03\x04\x05", "BAD_MAGIC"),
        Bad(1, b"k-u2", unknown(902), "UNKNOWN_SCHEMA_ID"),
        Bad(0, None, b"", "SHORT_HEADER"),
        Bad(1, b"k-a", b"\x07junk2", "BAD_MAGIC"),
    ]


def write_config(path: Path, group: str, topic: str, fixed: bool) -> Path:
    """One mapped topic; with fixed, schema id 9 is known (and the admin
    tokens are configured)."""
    schemas = avrokit.schema_dir(path.parent / "schemas")
    extra_id = ', { id = 9; file = "order_created.avsc"; }' if fixed else ""
    path.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{group}"; }};
postgres = {{ conninfo = "set-by-env"; }};
{HTTP if fixed else ""}
schemas = {{ dir = "{schemas}"; ids = ( {{ id = 1; file = "order_created.avsc"; }}{extra_id} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
topics = ( {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "job_a"; }} ); }} );
""")
    return path


@dataclass
class World:
    kjb: Kjb
    db: Database
    topic: str
    dlq: str
    bad: list[Bad]
    port: int
    proc: KjbProcess
    ids: list[int] = field(default_factory=list)  # in the order of bad


@pytest.fixture(scope="module")
def world(kafka, pg, kjb_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api_dead_letters")
    db = make_db(pg, "api_dl")
    group = unique_name("apidl")
    topic = kafka.create_topic(unique_name("apidl_src"), 2)
    dlq = kafka.create_topic(f"{topic}.dlq", 2)
    port = free_port()
    env = {"KJB_KAFKA_BROKERS": kafka.bootstrap, "KJB_POSTGRES_CONNINFO": str(db),
           "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"}
    first = Kjb(kjb_bin, write_config(tmp / "first.cfg", group, topic, fixed=False), env)
    first.ok("migrate")

    bad = bad_records()
    good = 0
    producer = kafka.producer(**{"enable.idempotence": True, "acks": "all"})
    delivered: dict[int, tuple[int, int]] = {}
    for i, b in enumerate(bad):
        producer.produce(topic, value=avrokit.confluent(ORDER, order(100 + good), 1), partition=b.partition)
        good += 1
        producer.produce(topic, value=b.value, key=b.key, partition=b.partition,
                         on_delivery=lambda err, msg, i=i: delivered.__setitem__(i, (msg.partition(), msg.offset())))
    assert producer.flush(30) == 0
    for i, b in enumerate(bad):
        b.offset = delivered[i][1]

    proc = first.start(tmp / "first.log", "--role", "consumer")
    try:
        wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.dead_letters") == len(bad)
                 and db.scalar("SELECT count(*) FROM kjb.jobs") == good and caught_up(kafka, group, topic),
                 timeout=240, interval=0.5,
                 message=lambda: f"{len(bad)} rows and {good} jobs\n{proc.log()[-4000:]}")
    finally:
        stop_checked(proc)

    # Fixed: the API's kjb knows schema id 9 and has its admin tokens.
    kjb = Kjb(kjb_bin, write_config(tmp / "kjb.cfg", group, topic, fixed=True), {**env, **TOKEN_ENV})
    proc = kjb.start(tmp / "kjb.log", "--role", "consumer")
    w = World(kjb, db, topic, dlq, bad, port, proc)
    try:
        wait_for(lambda: _ready(port), timeout=60, message=lambda: proc.log()[-3000:])
        coords = {(r[1], r[2]): r[0] for r in db.query(
            "SELECT id, source_partition, source_offset FROM kjb.dead_letters")}
        w.ids = [coords[(b.partition, b.offset)] for b in bad]
        yield w
    finally:
        if proc.alive():
            stop_checked(proc)
        drop_db(pg, db)


def _ready(port: int) -> bool:
    try:
        return request(port, "/readyz")[0] == 200
    except OSError:
        return False


def api(w: World, path: str, method: str = "GET", token: str | None = None, body=None) -> tuple[int, object]:
    """(status, parsed JSON) of one request; body is JSON-encoded unless bytes."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    status, text = request(w.port, path, method, headers, body=body)
    return status, json.loads(text)


def listed(w: World, query: str = "") -> list[int]:
    status, page = api(w, "/api/dead-letters" + query)
    assert status == 200, page
    return [r["id"] for r in page["dead_letters"]]


def ids_where(w: World, pred) -> list[int]:
    return sorted(i for i, b in zip(w.ids, w.bad) if pred(b))


def audit_rows(w: World) -> list[tuple]:
    return w.db.query("SELECT actor, action, params, result FROM kjb.audit ORDER BY id")


# --------------------------------------------------------------------------
# Reading


def test_list_is_what_dlq_ls_prints(world):
    w = world
    status, page = api(w, "/api/dead-letters")
    assert status == 200
    assert page == {"dead_letters": w.kjb.json("dlq", "ls", "--limit", "1000"), "next_after_id": None}
    assert [r["id"] for r in page["dead_letters"]] == sorted(w.ids)
    assert {r["status"] for r in page["dead_letters"]} == {"dead"}


def test_list_filters(world):
    w = world
    all_ids = sorted(w.ids)
    a, b = all_ids[1], all_ids[4]
    assert listed(w, f"?id={b}&id={a}") == [a, b]
    assert listed(w, f"?id={max(all_ids) + 1000}") == []
    assert listed(w, f"?dlq_topic={w.dlq}") == all_ids
    assert listed(w, f"?dlq-topic={w.dlq}x") == []
    assert listed(w, f"?source_topic={w.topic}") == all_ids
    assert listed(w, f"?source-topic={w.dlq}") == []
    magic = ids_where(w, lambda x: x.reason == "BAD_MAGIC")
    assert len(magic) == 3
    assert listed(w, "?reason=BAD_MAGIC") == magic
    assert listed(w, "?reason=kjb.BAD_MAGIC") == magic
    ka = ids_where(w, lambda x: x.key == b"k-a")
    assert len(ka) == 2 and listed(w, "?key=k-a") == ka
    assert listed(w, "?key=k-u1&reason=UNKNOWN_SCHEMA_ID") == ids_where(w, lambda x: x.key == b"k-u1")
    assert listed(w, "?key=k-a&reason=UNKNOWN_SCHEMA_ID") == []
    assert listed(w, "?status=dead") == all_ids
    assert listed(w, "?status=ignored") == []

    # Times: two rows moved into the past; since is inclusive, until not.
    x, y = all_ids[0], all_ids[1]
    saved = w.db.query("SELECT id, dead_lettered_at FROM kjb.dead_letters WHERE id IN (%s, %s)", x, y)
    try:
        w.db.query("UPDATE kjb.dead_letters SET dead_lettered_at = %s WHERE id = %s",
                   dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), x)
        w.db.query("UPDATE kjb.dead_letters SET dead_lettered_at = %s WHERE id = %s",
                   dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc), y)
        assert listed(w, "?until=2026-01-01T12:00:00Z") == [x]
        assert listed(w, "?since=2026-01-01T12:00:00Z&until=2026-01-02T12:00:00Z") == [y]
        assert listed(w, "?since=2026-01-02T01:00:00%2B01:00&until=2026-01-02T00:00:01Z") == [y]
        assert listed(w, "?since=1h") == all_ids[2:]
        assert listed(w, "?since=3650d&until=1h") == [x, y]
    finally:
        for rid, at in saved:
            w.db.query("UPDATE kjb.dead_letters SET dead_lettered_at = %s WHERE id = %s", at, rid)


def test_list_paging(world):
    w = world
    all_ids = sorted(w.ids)
    seen, after, pages = [], None, 0
    while True:
        status, page = api(w, "/api/dead-letters?limit=2" + (f"&after_id={after}" if after else ""))
        assert status == 200
        ids = [r["id"] for r in page["dead_letters"]]
        assert 1 <= len(ids) <= 2
        seen += ids
        pages += 1
        after = page["next_after_id"]
        if after is None:
            break
        assert after == ids[-1]
    assert seen == all_ids and pages == 3
    # A page that ends exactly at the last row says there is no next one.
    status, page = api(w, f"/api/dead-letters?limit={len(all_ids)}")
    assert page["next_after_id"] is None and len(page["dead_letters"]) == len(all_ids)
    status, page = api(w, f"/api/dead-letters?limit={len(all_ids) - 1}")
    assert page["next_after_id"] == all_ids[-2]
    assert listed(w, f"?after_id={all_ids[-1]}") == []
    assert listed(w, f"?reason=BAD_MAGIC&limit=1&after_id={all_ids[0]}") == \
        [i for i in ids_where(w, lambda x: x.reason == "BAD_MAGIC") if i > all_ids[0]][:1]


def test_list_refuses_bad_parameters(world):
    w = world
    limit = "limit must be a number from 1 to 1000"
    for query, why in [
            ("limit=0", limit), ("limit=1001", limit), ("limit=01", limit), ("limit=x", limit),
            ("limit=%2B5", limit), ("limit=1&limit=2", "limit given twice"),
            ("after_id=-1", "after_id must be a dead letter's id"),
            ("after_id=1x", "after_id must be a dead letter's id"),
            ("reasons=BAD_MAGIC", 'unknown parameter "reasons"'),
            ("id=0", 'bad id "0" (expected an integer from 1 to 9223372036854775807)'),
            ("id=abc", 'bad id "abc" (expected an integer from 1 to 9223372036854775807)'),
            ("status=gone", 'bad status "gone" (expected dead, replayed, failing or ignored)'),
            ("reason=A&reason=B", "reason given twice"),
            ("reason=", "reason must not be empty"),
            ("since=yesterday", 'bad since "yesterday": expected an RFC 3339 time such as '
                                "2026-11-21T10:00:00Z or a duration back from now such as 2h, 30m or 7d"),
            ("since=1h&until=2h", "since must be before until"),
            ("key=%ff", 'parameter "key" is not valid UTF-8')]:
        assert api(w, "/api/dead-letters?" + query) == (400, {"error": why}), query


def test_show_is_what_dlq_show_prints(world):
    w = world
    for rid in w.ids:
        status, shown = api(w, f"/api/dead-letters/{rid}")
        assert status == 200
        assert shown == w.kjb.json("dlq", "show", str(rid))
    unknown = w.ids[w.bad.index(next(b for b in w.bad if b.reason == "UNKNOWN_SCHEMA_ID"))]
    shown = api(w, f"/api/dead-letters/{unknown}")[1]
    # This kjb knows schema id 9: the value decodes now.
    assert shown["reason"] == "UNKNOWN_SCHEMA_ID" and shown["record_error"] is None
    assert shown["decode_error"] is None and shown["decoded"]["order_id"] == 901
    magic = w.ids[0]
    shown = api(w, f"/api/dead-letters/{magic}")[1]
    assert shown["failing_byte"] == 0 and shown["record"]["value"] == {"base64": "B2p1bms="}
    assert shown["decode_error"].startswith("kjb.BAD_MAGIC: byte 0: bad magic byte 0x07")
    assert api(w, "/api/dead-letters/999999999") == (404, {"error": "no dead letter 999999999"})
    for bad in ("0", "01", "x", "9223372036854775808"):
        assert api(w, f"/api/dead-letters/{bad}") == (400, {"error": "bad dead letter id"}), bad
    assert api(w, "/api/dead-letters/ignore")[0] == 405


def test_audit_is_what_audit_ls_prints(world):
    w = world
    # Something to list: a job cancelled and retried through the API.
    job = w.db.scalar("SELECT id FROM kjb.jobs ORDER BY id LIMIT 1")
    assert api(w, f"/api/jobs/{job}/cancel", "POST", TOKENS["ci"])[0] == 200
    assert api(w, f"/api/jobs/{job}/retry", "POST", TOKENS["admin"])[0] == 200
    status, body = api(w, "/api/audit")
    assert status == 200
    assert body == {"audit": w.kjb.json("audit", "ls")}
    assert [(a["actor"], a["action"], a["params"]) for a in body["audit"][:2]] == [
        ("admin", "jobs.retry", {"id": job}), ("ci", "jobs.cancel", {"id": job})]
    status, one = api(w, "/api/audit?limit=1")
    assert one == {"audit": body["audit"][:1]}
    for bad in ("0", "1001", "x"):
        assert api(w, f"/api/audit?limit={bad}") == (400, {"error": "limit must be a number from 1 to 1000"})


# --------------------------------------------------------------------------
# Admin actions: tokens


def test_tokens(world):
    w = world
    body = {"filter": {"reason": "BAD_MAGIC"}, "dry_run": True}
    before = audit_rows(w)
    for path in ("/api/dead-letters/ignore", "/api/dead-letters/replay"):
        status, answer = api(w, path, "POST", None, body)
        assert (status, answer) == (401, {"error": "missing bearer token"}), path
        for wrong in ("wrong", TOKENS["ops"] + "x", TOKENS["ops"][:-1], ""):
            assert api(w, path, "POST", wrong, body) == (403, {"error": "wrong token"}), (path, wrong)
    # "gone" is configured but its variable is unset: no value opens it, and
    # the log names the variable.
    assert "admin token \"gone\" disabled: the environment variable KJB_T_GONE is unset or empty" in w.proc.log()
    assert api(w, "/api/dead-letters/ignore", "POST", "gone", body)[0] == 403
    # Each configured token works, and dry runs write nothing.
    for name, token in TOKENS.items():
        status, answer = api(w, "/api/dead-letters/ignore", "POST", token, body)
        assert (status, answer) == (200, {"matched": 3, "ignored": 3, "dry_run": True}), name
    assert audit_rows(w) == before
    for token in TOKENS.values():
        assert token not in w.proc.log()
    status, stats = api(w, "/api/stats")
    assert stats["admin_enabled"] is True


def test_selection_is_checked(world):
    w = world
    tok = TOKENS["ops"]
    for path in ("/api/dead-letters/ignore", "/api/dead-letters/replay"):
        for body, why in [
                (b"", "the body is not valid JSON: '[' or '{' expected near end of file at byte 0"),
                (b"{", "the body is not valid JSON: string or '}' expected near end of file at byte 1"),
                (b"[]", "the body must be a JSON object"),
                (b"{}", 'no dead letters selected: give a filter or ids (to select every one, say so '
                        'with a filter such as {"status": "dead"})'),
                ({"filter": {}, "ids": [], "dry_run": False},
                 'no dead letters selected: give a filter or ids (to select every one, say so '
                 'with a filter such as {"status": "dead"})'),
                ({"filter": {"reasons": "X"}}, 'unknown filter "reasons"'),
                ({"filter": {"reason": 5}}, "filter reason must be a string"),
                ({"filter": {"id": "5"}}, "filter id must be an integer or an array of them"),
                ({"filter": "BAD_MAGIC"}, "filter must be an object"),
                ({"ids": "1"}, "ids must be an array of integers"),
                ({"ids": [1, "2"]}, "ids must be an array of integers"),
                ({"ids": [0]}, 'bad id "0" (expected an integer from 1 to 9223372036854775807)'),
                ({"ids": [1], "dry_run": "yes"}, "dry_run must be true or false"),
                ({"ids": [1], "dryRun": True}, 'unknown field "dryRun" (expected filter, ids and dry_run)'),
                ({"filter": {"status": "gone"}}, 'bad status "gone" (expected dead, replayed, failing or ignored)'),
                ({"filter": {"since": "1h", "until": "2h"}}, "since must be before until")]:
            assert api(w, path, "POST", tok, body) == (400, {"error": why}), (path, body)
        assert api(w, path, "POST", tok, b"x" * 70000) == (413, {"error": "request body too large"})
    assert api(w, "/api/dead-letters/replay", "GET")[0] == 405
    assert {r[0] for r in w.db.query("SELECT status FROM kjb.dead_letters")} == {"dead"}


# --------------------------------------------------------------------------
# Admin actions: ignore and replay


def statuses(w: World) -> dict[int, str]:
    return dict(w.db.query("SELECT id, status FROM kjb.dead_letters"))


def test_ignore(world):
    w = world
    w.db.query("DELETE FROM kjb.audit")
    short = ids_where(w, lambda x: x.reason == "SHORT_HEADER")
    magic_p0 = ids_where(w, lambda x: x.reason == "BAD_MAGIC" and x.partition == 0)
    assert len(short) == 1 and len(magic_p0) == 1
    before = statuses(w)
    body = {"filter": {"reason": "SHORT_HEADER"}, "ids": magic_p0, "dry_run": True}
    # Filter and ids together: both must hold, so this selects nothing...
    assert api(w, "/api/dead-letters/ignore", "POST", TOKENS["ops"], body) == (
        200, {"matched": 0, "ignored": 0, "dry_run": True})
    # ... and ids alone select exactly them.
    body = {"ids": short + magic_p0, "dry_run": True}
    assert api(w, "/api/dead-letters/ignore", "POST", TOKENS["ops"], body) == (
        200, {"matched": 2, "ignored": 2, "dry_run": True})
    assert statuses(w) == before and audit_rows(w) == []

    body["dry_run"] = False
    assert api(w, "/api/dead-letters/ignore", "POST", TOKENS["ops"], body) == (
        200, {"matched": 2, "ignored": 2, "dry_run": False})
    after = statuses(w)
    assert {i for i, s in after.items() if s == "ignored"} == set(short + magic_p0)
    assert all(after[i] == before[i] for i in after if i not in short + magic_p0)
    # Again: matched, already ignored.
    assert api(w, "/api/dead-letters/ignore", "POST", TOKENS["ci"], {"filter": {"id": short}}) == (
        200, {"matched": 1, "ignored": 0, "dry_run": False})
    assert audit_rows(w) == [
        ("ops", "dlq.ignore", {"filter": {"id": short + magic_p0}},
         {"matched": 2, "ignored": 2, "ids": sorted(short + magic_p0)}),
        ("ci", "dlq.ignore", {"filter": {"id": short}}, {"matched": 1, "ignored": 0, "ids": []}),
    ]
    assert listed(w, "?status=ignored") == sorted(short + magic_p0)


def replay_status(w: World):
    return api(w, "/api/stats")[1]["replay"]


def test_replay_dry_run(world):
    w = world
    w.db.query("DELETE FROM kjb.audit")
    jobs = w.db.scalar("SELECT count(*) FROM kjb.jobs")
    before = w.db.query("SELECT id, status, replays FROM kjb.dead_letters ORDER BY id")
    status, st = api(w, "/api/dead-letters/replay", "POST", TOKENS["ci"],
                     {"filter": {"status": "dead"}, "dry_run": True})
    assert status == 200, st
    unknown = ids_where(w, lambda x: x.reason == "UNKNOWN_SCHEMA_ID")
    live_magic = ids_where(w, lambda x: x.reason == "BAD_MAGIC" and x.partition == 1)
    assert st["dry_run"] is True
    assert (st["selected"], st["replayed"], st["still_failing"], st["already_present"]) == (
        len(unknown) + len(live_magic), len(unknown), len(live_magic), 0)
    by = {r["reason"]: r for r in st["by_reason"]}
    assert set(by) == {"UNKNOWN_SCHEMA_ID", "BAD_MAGIC"}
    assert (by["UNKNOWN_SCHEMA_ID"]["records"], by["UNKNOWN_SCHEMA_ID"]["replayed"],
            by["UNKNOWN_SCHEMA_ID"]["still_failing"], by["UNKNOWN_SCHEMA_ID"]["jobs"]) == (2, 2, 0, {"job_a": 2})
    assert (by["BAD_MAGIC"]["records"], by["BAD_MAGIC"]["replayed"], by["BAD_MAGIC"]["still_failing"],
            by["BAD_MAGIC"]["jobs"]) == (2, 0, 2, {})
    # Nothing written: no jobs, rows as they were, no audit row.
    assert w.db.scalar("SELECT count(*) FROM kjb.jobs") == jobs
    assert w.db.query("SELECT id, status, replays FROM kjb.dead_letters ORDER BY id") == before
    assert audit_rows(w) == []
    assert replay_status(w) is None


def test_replay(world):
    w = world
    w.db.query("DELETE FROM kjb.audit")
    unknown = ids_where(w, lambda x: x.reason == "UNKNOWN_SCHEMA_ID")
    coords = [(w.topic, b.partition, b.offset) for b in w.bad if b.reason == "UNKNOWN_SCHEMA_ID"]
    status, started = api(w, "/api/dead-letters/replay", "POST", TOKENS["ops"],
                          {"filter": {"reason": "UNKNOWN_SCHEMA_ID"}})
    assert status == 202, started
    assert started["started"] is True
    r = started["replay"]
    assert r["actor"] == "ops" and r["dry_run"] is False and r["topic"] is None
    assert r["filter"] == {"reason": "UNKNOWN_SCHEMA_ID"}

    def done():
        st = replay_status(w)
        return st if st and not st["running"] else None

    st = wait_for(done, timeout=120, message=lambda: f"the replay to end: {replay_status(w)}\n{w.proc.log()[-3000:]}")
    assert st["error"] is None, st
    assert (st["selected"], st["replayed"], st["still_failing"], st["already_present"]) == (2, 2, 0, 0)
    assert [(b["reason"], b["replayed"], b["jobs"]) for b in st["by_reason"]] == [
        ("UNKNOWN_SCHEMA_ID", 2, {"job_a": 2})]
    assert st["finished_at"] is not None
    # The jobs, at the original coordinates, with the values now decoded.
    jobs = w.db.query("SELECT kind, source_topic, source_partition, source_offset, args -> 'order_id'"
                      " FROM kjb.jobs WHERE source_offset = ANY(%s) AND source_topic = %s ORDER BY 4",
                      [c[2] for c in coords], w.topic)
    assert sorted((j[1], j[2], j[3]) for j in jobs) == sorted(coords)
    assert {j[0] for j in jobs} == {"job_a"} and sorted(j[4] for j in jobs) == [901, 902]
    rows = w.db.query("SELECT id, status, replays, last_replayed_at IS NOT NULL FROM kjb.dead_letters"
                      " WHERE id = ANY(%s) ORDER BY id", unknown)
    assert rows == [(i, "replayed", 1, True) for i in unknown]
    audit = audit_rows(w)
    assert [(a[0], a[1]) for a in audit] == [("ops", "replay")]
    assert audit[0][3]["replayed"] == 2
    assert listed(w, "?status=replayed") == unknown

    # One replay at a time; a new one replaces the finished one in /api/stats.
    status, again = api(w, "/api/dead-letters/replay", "POST", TOKENS["admin"], {"ids": unknown})
    assert status == 202 and again["replay"]["actor"] == "admin"
    st = wait_for(done, timeout=120, message="the second replay to end")
    assert (st["replayed"], st["already_present"]) == (0, 2)
