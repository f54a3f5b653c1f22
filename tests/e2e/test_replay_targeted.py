"""Targeted replay: `kjb replay` with the dead-letter filters fetches
exactly the records the index selects from their DLQ coordinates, never
the rest; --dry-run counts per reason what would become jobs (of which
kinds) and what would still fail; --rate paces it; every replay records
its outcome in kjb.dead_letters (status, replays, last_replayed_at,
last_error) and in kjb.audit. The offset-reset mode records its outcomes
in the index too."""

from __future__ import annotations

import json
import re
import time

import avrokit
from kjbtest import order, unique_name, wait_for, write_ingest_config

V1 = avrokit.PRODUCT_SCHEMAS / "order_created.avsc"
UNKNOWN, JUNK = 6, 2


def summary(res) -> str:
    return res.stdout.strip().splitlines()[-1]


def setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path):
    """UNKNOWN records under schema id 9 (the first config lacks it, the
    fixed one has it; keys k0..k5) and JUNK with a bad magic byte, which no
    config reads; kjb dead-letters all of them and indexes them. Returns
    (topic, dlq, fixed config)."""
    schema = avrokit.load(V1)
    topic, group = make_topic(), unique_name("target")
    mapping = f"""
  {{ topic = "{topic}"; schema = "order_created.avsc";
     jobs = ( {{ kind = "t1"; }}, {{ kind = "t2"; args = [ "order_id" ]; }} ); }}"""
    broken = write_ingest_config(tmp_path / "broken.cfg", group, mapping)
    fixed = tmp_path / "fixed.cfg"
    fixed.write_text(broken.read_text().replace(
        '{ id = 7; file = "everything.avsc"; }',
        '{ id = 7; file = "everything.avsc"; }, { id = 9; file = "order_created.avsc"; }'))
    assert run_kjb(["migrate"], broken, env=env).returncode == 0
    for i in range(UNKNOWN):
        kafka.produce(topic, [avrokit.confluent(schema, order(100 + i), 9)], key=f"k{i}".encode())
    kafka.produce(topic, [b"\x07junk"] * JUNK, key=b"junk")
    proc = start_kjb(["run"], broken, env=env, name="ingest")
    dlq = f"{topic}.dlq"
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.dead_letters WHERE source_topic = %s", topic)
             == UNKNOWN + JUNK, timeout=240, message="indexed dead letters")
    assert proc.stop() == 0
    return topic, dlq, fixed


def index(db, topic: str) -> dict[int, dict]:
    """The index rows of topic's dead letters by source offset."""
    rows = db.query("SELECT source_offset, id, status, replays, last_replayed_at, last_error, reason"
                    " FROM kjb.dead_letters WHERE source_topic = %s", topic)
    return {r[0]: {"id": r[1], "status": r[2], "replays": r[3], "at": r[4], "error": r[5],
                   "reason": r[6]} for r in rows}


def jobs_of(db, topic: str) -> list[tuple[int, str]]:
    return [tuple(r) for r in db.query(
        "SELECT source_offset, kind FROM kjb.jobs WHERE source_topic = %s ORDER BY 1, 2", topic)]


def test_replay_by_id_touches_only_the_chosen_records(kafka, db, make_topic, run_kjb, start_kjb,
                                                      kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path)
    before = index(db, topic)
    chosen = [1, 4]
    res = run_kjb(["replay", "--id", str(before[1]["id"]), "--id", str(before[4]["id"]),
                   "--actor", "ops:alice"], fixed, env=env)
    assert res.returncode == 0, res.stderr
    assert summary(res) == "replayed 2, still failing 0, already present 0"
    assert "UNKNOWN_SCHEMA_ID: 2 records: 2 became jobs (2 t1, 2 t2), 0 already present, " \
           "0 still failing" in res.stdout
    assert jobs_of(db, topic) == [(o, k) for o in chosen for k in ("t1", "t2")]
    after = index(db, topic)
    for off, row in after.items():
        if off in chosen:
            assert (row["status"], row["replays"], row["error"]) == ("replayed", 1, None)
            assert row["at"] is not None
        else:
            assert (row["status"], row["replays"], row["at"]) == ("dead", 0, None), (off, row)
    actor, params, result = db.query(
        "SELECT actor, params, result FROM kjb.audit WHERE action = 'replay' ORDER BY id DESC LIMIT 1")[0]
    assert actor == "ops:alice"
    assert params == {"filter": {"id": [before[1]["id"], before[4]["id"]]}, "rate": 0}
    assert (result["selected"], result["replayed"], result["still_failing"]) == (2, 2, 0)

    # Again: the jobs exist, nothing is inserted, and the rows count it.
    res = run_kjb(["replay", "--id", str(before[1]["id"])], fixed, env=env)
    assert summary(res) == "replayed 0, still failing 0, already present 1", res.stdout
    assert len(jobs_of(db, topic)) == 4
    assert index(db, topic)[1]["replays"] == 2


def test_dry_run_counts_per_reason_and_writes_nothing(kafka, db, make_topic, run_kjb, start_kjb,
                                                      kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path)
    before = index(db, topic)
    audits = db.scalar("SELECT count(*) FROM kjb.audit")
    res = run_kjb(["replay", "--source-topic", topic, "--dry-run"], fixed, env=env)
    assert res.returncode == 1, res.stderr  # the junk would still fail
    lines = res.stdout.strip().splitlines()
    assert lines == [
        f"dry run: UNKNOWN_SCHEMA_ID: {UNKNOWN} records: {UNKNOWN} would become jobs "
        f"({UNKNOWN} t1, {UNKNOWN} t2), 0 already present, 0 would still fail",
        f"dry run: BAD_MAGIC: {JUNK} records: 0 would become jobs, 0 already present, "
        f"{JUNK} would still fail",
        f"dry run: replayed {UNKNOWN}, still failing {JUNK}, already present 0"], res.stdout
    assert jobs_of(db, topic) == []
    assert index(db, topic) == before
    assert db.scalar("SELECT count(*) FROM kjb.audit") == audits

    # With the broken configuration, everything would still fail.
    res = run_kjb(["replay", "--reason", "UNKNOWN_SCHEMA_ID", "--source-topic", topic, "--dry-run"],
                  tmp_path / "broken.cfg", env=env)
    assert summary(res) == f"dry run: replayed 0, still failing {UNKNOWN}, already present 0"


def test_still_failing_and_missing_records_are_recorded(kafka, db, make_topic, run_kjb, start_kjb,
                                                        kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path)
    # A row whose DLQ record does not exist (the partition ends before it).
    db.query("INSERT INTO kjb.dead_letters (dlq_topic, dlq_partition, dlq_offset, source_topic,"
               " source_partition, source_offset, reason, dead_lettered_at, value_size)"
               " VALUES (%s, 0, 100000, %s, 0, 5000, 'UNKNOWN_SCHEMA_ID', now(), 1)", dlq, topic)
    res = run_kjb(["replay", "--source-topic", topic], fixed, env=env)
    assert res.returncode == 1
    assert summary(res) == f"replayed {UNKNOWN}, still failing {JUNK + 1}, already present 0", res.stdout
    rows = index(db, topic)
    junk = [r for r in rows.values() if r["reason"] == "BAD_MAGIC"]
    assert len(junk) == JUNK
    for r in junk:
        assert (r["status"], r["replays"]) == ("failing", 1) and "kjb.BAD_MAGIC" in r["error"], r
    missing = rows[5000]
    assert missing["status"] == "failing"
    prefix = "no record at @100000: the partition ends at offset "
    assert missing["error"].startswith(prefix), missing
    assert 0 < int(missing["error"][len(prefix):]) < 100000, missing
    assert len([r for r in rows.values() if r["status"] == "replayed"]) == UNKNOWN

    # Ignored rows stay out of a replay by reason, but not out of one by status.
    assert run_kjb(["dlq", "ignore", "--reason", "BAD_MAGIC"], fixed, env=env).returncode == 0
    res = run_kjb(["replay", "--reason", "BAD_MAGIC", "--dry-run"], fixed, env=env)
    assert summary(res) == "dry run: replayed 0, still failing 0, already present 0", res.stdout
    res = run_kjb(["replay", "--status", "ignored", "--dry-run"], fixed, env=env)
    assert summary(res) == f"dry run: replayed 0, still failing {JUNK}, already present 0", res.stdout


def test_rate_paces_the_replay(kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path)
    start = time.monotonic()
    res = run_kjb(["replay", "--reason", "UNKNOWN_SCHEMA_ID", "--source-topic", topic, "--rate", "2"],
                  fixed, env={**env, "KJB_PROGRESS_INTERVAL_MS": "400"})
    took = time.monotonic() - start
    assert summary(res) == f"replayed {UNKNOWN}, still failing 0, already present 0", res.stdout
    # Six records at two a second: the last goes 2.5 s after the first.
    assert took >= (UNKNOWN - 1) / 2, took
    # Progress, off a terminal: plain lines of done/total, then the end.
    progress = [line for line in res.stderr.splitlines() if line.startswith("replay: ")]
    assert len(progress) >= 3, res.stderr
    done = [int(re.match(rf"replay: (\d)/{UNKNOWN} records \((\d+)%\)", line)[1]) for line in progress]
    assert done == sorted(done) and done[-1] == UNKNOWN, progress
    assert re.fullmatch(rf"replay: {UNKNOWN}/{UNKNOWN} records \(100%\) in \ds, \d\.\d/s", progress[-1]), progress
    params = db.query("SELECT params FROM kjb.audit WHERE action = 'replay' ORDER BY id DESC LIMIT 1")[0][0]
    assert params == {"filter": {"reason": "UNKNOWN_SCHEMA_ID", "source_topic": topic}, "rate": 2.0}, params


def test_offset_reset_mode_records_outcomes_in_the_index(kafka, db, make_topic, run_kjb, start_kjb,
                                                         kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path)
    res = run_kjb(["replay", "--topic", dlq], fixed, env=env)
    assert summary(res) == f"replayed {UNKNOWN}, still failing {JUNK}, already present 0", res.stdout
    statuses = sorted((r["reason"], r["status"], r["replays"]) for r in index(db, topic).values())
    assert statuses == sorted([("BAD_MAGIC", "failing", 1)] * JUNK +
                              [("UNKNOWN_SCHEMA_ID", "replayed", 1)] * UNKNOWN)


def test_targets_spread_over_partitions_are_read_side_by_side(kafka, db, make_topic, run_kjb,
                                                             kjb_services_env, tmp_path):
    """A DLQ of three partitions, written by a plain producer with the
    Connect headers: the selected records lie far apart in p0 (each a
    seek), close together in p1 (read on), and in p2 one lies before the
    log start (deleted) and one past the end. The replay reads the three
    partitions at once; exactly the selected records become jobs, and
    the missing ones fail with why."""
    from confluent_kafka import TopicPartition

    env = kjb_services_env
    source, dlq = unique_name("spread"), make_topic(partitions=3)
    cfg = write_ingest_config(tmp_path / "kjb.cfg", unique_name("spread"), f"""
  {{ topic = "{source}"; schema = "order_created.avsc"; dlq = "{dlq}"; jobs = ( {{ kind = "s1"; }} ); }}""")
    cfg.write_text(cfg.read_text().replace(
        '{ id = 7; file = "everything.avsc"; }',
        '{ id = 7; file = "everything.avsc"; }, { id = 9; file = "order_created.avsc"; }'))
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    schema = avrokit.load(V1)
    # Per partition: how many records, and which are UNKNOWN_SCHEMA_ID.
    layout = {0: (900, {0, 400, 899}), 1: (40, {3, 6, 9, 12}), 2: (6, {1, 4})}
    producer = kafka.producer(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5})
    source_offset = {}
    for p, (count, chosen) in layout.items():
        for o in range(count):
            src = 1000 * p + o
            source_offset[(p, o)] = src
            if o in chosen:
                value, cls = avrokit.confluent(schema, order(src), 9), "kjb.UNKNOWN_SCHEMA_ID"
            else:
                value, cls = b"\x00\x00\x00\x00\x01\x02", "kjb.TRUNCATED"
            headers = [("__connect.errors.topic", source.encode()),
                       ("__connect.errors.partition", b"0"),
                       ("__connect.errors.offset", str(src).encode()),
                       ("__connect.errors.stage", b"VALUE_CONVERTER"),
                       ("__connect.errors.exception.class.name", cls.encode()),
                       ("__connect.errors.exception.message", b"m")]
            producer.produce(dlq, value, key=str(src).encode(), headers=headers, partition=p)
        producer.poll(0)
    assert producer.flush(30) == 0
    res = run_kjb(["dlq", "reindex", "--topic", dlq], cfg, env=env)
    assert res.returncode == 0, res.stderr
    assert "946 records (0 not dead letters); 946 rows added" in res.stdout, res.stdout
    # p2's first two records go, as retention would delete them; and a
    # row points past p2's end.
    admin = kafka.admin()
    for f in admin.delete_records([TopicPartition(dlq, 2, 2)]).values():
        f.result(60)
    db.query("INSERT INTO kjb.dead_letters (dlq_topic, dlq_partition, dlq_offset, source_topic,"
             " source_partition, source_offset, reason, dead_lettered_at, value_size)"
             " VALUES (%s, 2, 50, %s, 0, 9999, 'UNKNOWN_SCHEMA_ID', now(), 1)", dlq, source)

    # Every record of the topic, dry: the partitions' records come in
    # any order, the tallies are in the order of the DLQ coordinates.
    res = run_kjb(["replay", "--dlq-topic", dlq, "--dry-run"], cfg, env=env)
    assert res.stdout.strip().splitlines() == [
        "dry run: UNKNOWN_SCHEMA_ID: 10 records: 8 would become jobs (8 s1), 0 already present, "
        "2 would still fail",
        "dry run: TRUNCATED: 937 records: 0 would become jobs, 0 already present, 937 would still fail",
        "dry run: replayed 8, still failing 939, already present 0"], res.stdout
    assert jobs_of(db, source) == []

    res = run_kjb(["replay", "--reason", "UNKNOWN_SCHEMA_ID", "--dlq-topic", dlq], cfg, env=env)
    assert res.returncode == 1, res.stderr  # two still fail
    assert summary(res) == "replayed 8, still failing 2, already present 0", res.stdout
    want = sorted(source_offset[(p, o)] for p, (_, chosen) in layout.items() for o in chosen
                  if (p, o) != (2, 1))
    assert [o for o, _ in jobs_of(db, source)] == want
    got = {(r[0], r[1]): (r[2], r[3]) for r in db.query(
        "SELECT dlq_partition, dlq_offset, status, last_error FROM kjb.dead_letters"
        " WHERE dlq_topic = %s AND reason = 'UNKNOWN_SCHEMA_ID'", dlq)}
    assert got[(2, 1)] == ("failing", "no record at @1: the log starts at offset 2 (deleted by retention)")
    assert got[(2, 50)] == ("failing", "no record at @50: the partition ends at offset 6")
    assert {k: v for k, v in got.items() if k not in ((2, 1), (2, 50))} == \
        {(p, o): ("replayed", None) for p, (_, chosen) in layout.items() for o in chosen if (p, o) != (2, 1)}
    others = db.query("SELECT DISTINCT status FROM kjb.dead_letters WHERE dlq_topic = %s AND reason <> "
                      "'UNKNOWN_SCHEMA_ID'", dlq)
    assert others == [("dead",)]


def test_usage_errors(run_kjb, tmp_path):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", '{ topic = "t"; schema = "order_created.avsc"; }')
    for args, message in [
        (["replay"], "kjb: replay: --topic or a filter is required"),
        (["replay", "--reason", "X", "--topic", "t.dlq"], "kjb: replay: --topic does not apply to a replay by filter"),
        (["replay", "--reason", "X", "--reset-offsets", "to-earliest"],
         "kjb: replay: --reset-offsets does not apply to a replay by filter"),
        (["replay", "--reason", "X", "--follow"], "kjb: replay: --follow does not apply to a replay by filter"),
        (["replay", "--reason", "X", "--rate", "0"], 'kjb: replay: bad --rate "0" (expected records per second, more than 0)'),
        (["replay", "--reason", "X", "--rate", "fast"], 'kjb: replay: bad --rate "fast" (expected records per second, more than 0)'),
        (["replay", "--status", "gone"], 'kjb: replay: bad --status "gone" (expected dead, replayed, failing or ignored)'),
        (["replay", "--reason", "X", "extra"], 'kjb: replay: unexpected argument "extra"'),
    ]:
        res = run_kjb(args, cfg)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.strip().splitlines()[0] == message, (args, res.stderr)
        assert res.stdout == ""


FIXED_VALUE = {"order_id": 5, "customer": {"id": 1, "email": "e@x.example", "name": "E"}, "amount": "12.50",
               "currency": "GBP", "items": [{"sku": "S", "quantity": 1, "price": 2.5}],
               "created_at": "2026-11-21T10:00:00.123Z", "note": None, "tags": {}}


def test_edit_replays_one_record_with_a_corrected_value(kafka, db, make_topic, run_kjb, start_kjb,
                                                        kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path)
    rows = index(db, topic)
    off = min(o for o, r in rows.items() if r["reason"] == "BAD_MAGIC")
    did = rows[off]["id"]
    value = tmp_path / "fixed.json"
    value.write_text(json.dumps(FIXED_VALUE))

    res = run_kjb(["dlq", "edit", str(did), "--json", str(value), "--dry-run"], fixed, env=env)
    assert res.returncode == 0, res.stderr
    whole = json.dumps(FIXED_VALUE, separators=(",", ":"))  # t1 has no args list: the whole record
    assert res.stdout.splitlines() == [f"dry run: t1 {whole}", 'dry run: t2 {"order_id":5}',
                                       f"dry run: dead letter {did} would become 2 jobs (2 new)"], res.stdout
    assert jobs_of(db, topic) == [] and index(db, topic) == rows

    res = run_kjb(["dlq", "edit", str(did), "--json", str(value), "--actor", "ops:bob"], fixed, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"t1 {whole}", 't2 {"order_id":5}', f"dead letter {did} became 2 jobs (2 new)"]
    # The jobs of the original record: its coordinates, key and headers.
    got = db.query("SELECT kind, source_offset, args, meta FROM kjb.jobs WHERE source_topic = %s ORDER BY kind",
                   topic)
    assert [(g[0], g[1], g[2]) for g in got] == [("t1", off, FIXED_VALUE), ("t2", off, {"order_id": 5})]
    assert got[0][3]["key"] == "junk" and got[0][3]["offset"] == off
    row = db.query("SELECT status, replays, edited, last_error FROM kjb.dead_letters WHERE id = %s", did)[0]
    assert row == ("replayed", 1, True, None)
    assert db.query("SELECT actor, params, result FROM kjb.audit WHERE action = 'dlq.edit'") == [
        ("ops:bob", {"id": did, "value": FIXED_VALUE}, {"jobs": 2, "inserted": 2})]
    # The DLQ keeps the original bytes.
    assert [r.value for r in kafka.consume(dlq) if r.offset == db.scalar(
        "SELECT dlq_offset FROM kjb.dead_letters WHERE id = %s", did)] == [b"\x07junk"]

    # Again: the jobs exist, nothing new.
    res = run_kjb(["dlq", "edit", str(did), "--json", str(value)], fixed, env=env)
    assert res.stdout.splitlines() == [f"t1 {whole} (exists already)", 't2 {"order_id":5} (exists already)',
                                       f"dead letter {did} became 2 jobs (0 new)"], res.stdout
    assert len(jobs_of(db, topic)) == 2


def test_edit_errors(kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path)
    rows = index(db, topic)
    did = next(r["id"] for r in rows.values() if r["reason"] == "BAD_MAGIC")
    bad_json, wrong = tmp_path / "bad.json", tmp_path / "wrong.json"
    bad_json.write_text('{"order_id": ')
    wrong.write_text(json.dumps({**FIXED_VALUE, "order_id": "five"}))
    for args, code, message in [
        ([str(did), "--json", str(bad_json)], 1,
         f"kjb: dlq edit: {bad_json}: not JSON: "),
        ([str(did), "--json", str(wrong)], 1,
         f'kjb: dlq edit: {wrong}: does not fit the reader schema of "{topic}": '),
        (["999999", "--json", str(wrong)], 1, "kjb: dlq edit: no dead letter 999999"),
        ([str(did)], 2, "kjb: dlq edit: --json is required"),
        ([str(did), "--json", str(tmp_path / "none.json")], 2,
         f"kjb: dlq edit: --json {tmp_path / 'none.json'}: No such file or directory"),
        (["x", "--json", str(wrong)], 2, 'kjb: dlq edit: bad dead letter id "x"'),
        (["--json", str(wrong)], 2, "kjb: dlq edit: expected a dead letter id"),
    ]:
        res = run_kjb(["dlq", "edit", *args], fixed, env=env)
        assert res.returncode == code, (args, res.stderr)
        assert res.stderr.startswith(message), (args, res.stderr)
        assert res.stdout == ""
    assert jobs_of(db, topic) == [] and index(db, topic) == rows
    assert db.scalar("SELECT count(*) FROM kjb.audit WHERE action = 'dlq.edit'") == 0
