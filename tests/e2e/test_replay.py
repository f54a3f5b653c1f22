"""Replay end to end: dead letters that kjb itself produced are replayed
once the configuration is fixed; every reset spec (and the extreme ones,
from the CLI and the admin API), an external reset by Kafka's own tool,
dry runs, idempotence and --follow."""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
import urllib.error
import urllib.request

import avrokit
from kjbtest import free_port, order, unique_name, wait_for, write_ingest_config

V1 = avrokit.PRODUCT_SCHEMAS / "order_created.avsc"


def setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path, unknown=10, good=2):
    """Produces `good` records kjb can read and `unknown` written with schema
    id 9, which the first config lacks; runs kjb until the unknown ones are
    dead letters. Returns (topic, dlq, group, fixed config)."""
    schema = avrokit.load(V1)
    topic, group = make_topic(), unique_name("replay")
    mapping = f"""
  {{ topic = "{topic}"; schema = "order_created.avsc";
     jobs = ( {{ kind = "r1"; }}, {{ kind = "r2"; args = [ "order_id" ]; }} ); }}"""
    broken = write_ingest_config(tmp_path / "broken.cfg", group, mapping)
    fixed = tmp_path / "fixed.cfg"
    fixed.write_text(broken.read_text().replace('{ id = 7; file = "everything.avsc"; }',
                                                '{ id = 7; file = "everything.avsc"; }, { id = 9; file = "order_created.avsc"; }'))
    assert run_kjb(["migrate"], broken, env=env).returncode == 0
    values = [avrokit.confluent(schema, order(i), 1) for i in range(good)]
    values += [avrokit.confluent(schema, order(100 + i), 9) for i in range(unknown)]
    kafka.produce(topic, values, key=b"k", headers=[("trace", b"t1")])
    proc = start_kjb(["run"], broken, env=env, name="ingest")
    dlq = f"{topic}.dlq"
    wait_for(lambda: kafka.record_counts(dlq) == {0: unknown}, timeout=240, message=f"{unknown} dead letters")
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 2 * good, timeout=30, message="good jobs")
    assert proc.stop() == 0
    return topic, dlq, group, fixed


def summary(res) -> str:
    return res.stdout.strip().splitlines()[-1]


def dlq_offsets(kafka, dlq: str) -> list[int]:
    """Offsets of the dead letters in partition 0. kjb writes them in Kafka
    transactions, whose commit markers take offsets too: the records'
    offsets are not 0..N-1."""
    return [r.offset for r in kafka.consume(dlq)]


def test_replay_turns_fixed_records_into_jobs_once(kafka, db, make_topic, run_kjb, start_kjb,
                                                   kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, group, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path, unknown=5)
    # Add one record that no configuration fixes.
    kafka.produce(dlq, [b"\x07junk"], headers=[("__connect.errors.topic", topic.encode()),
                                               ("__connect.errors.partition", b"0"),
                                               ("__connect.errors.offset", b"999")])
    res = run_kjb(["replay", "--topic", dlq], fixed, env=env)
    assert summary(res) == "replayed 5, still failing 1, already present 0", res.stderr
    assert res.returncode == 1  # something still fails
    assert "still failing: " in res.stderr and "kjb.BAD_MAGIC" in res.stderr
    rows = db.query("SELECT kind, source_topic, source_partition, source_offset, meta, args"
                    " FROM kjb.jobs WHERE source_offset >= 2 ORDER BY source_offset, kind")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (k, topic, 0, o) for o in range(2, 7) for k in ("r1", "r2")]
    for r in rows:
        # The original coordinates and headers, not the dead letter's.
        assert r[4]["topic"] == topic and r[4]["offset"] == r[3]
        assert r[4]["headers"] == {"trace": "t1"} and r[4]["key"] == "k"
    assert rows[1][5] == {"order_id": 100}
    assert kafka.committed(f"{group}.replay", dlq) == {0: dlq_offsets(kafka, dlq)[-1] + 1}

    # Replaying the same records again creates nothing.
    res = run_kjb(["replay", "--topic", dlq, "--reset-offsets", "to-earliest"], fixed, env=env)
    assert summary(res) == "replayed 0, still failing 1, already present 5"
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == 14


def test_dry_run_counts_and_writes_nothing(kafka, db, make_topic, run_kjb, start_kjb,
                                           kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, group, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path, unknown=4)
    before = db.scalar("SELECT count(*) FROM kjb.jobs")
    res = run_kjb(["replay", "--topic", dlq, "--dry-run", "--reset-offsets", "to-earliest"], fixed, env=env)
    assert res.returncode == 0, res.stderr
    assert summary(res) == "dry run: replayed 4, still failing 0, already present 0"
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == before
    assert kafka.committed(f"{group}.replay", dlq)[0] < 0  # nothing committed, not even the reset
    # And the broken config still fails them, without writing either.
    res = run_kjb(["replay", "--topic", dlq, "--dry-run"], tmp_path / "broken.cfg", env=env)
    assert summary(res) == "dry run: replayed 0, still failing 4, already present 0"
    assert res.returncode == 1


def test_every_reset_spec(kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, group, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path, unknown=10)

    def dry(spec: str) -> str:
        res = run_kjb(["replay", "--topic", dlq, "--dry-run", "--reset-offsets", spec], fixed, env=env)
        assert res.returncode == 0, res.stderr
        return summary(res)

    assert dry("to-earliest") == "dry run: replayed 10, still failing 0, already present 0"
    assert dry("to-latest") == "dry run: replayed 0, still failing 0, already present 0"
    offsets = dlq_offsets(kafka, dlq)
    assert len(offsets) == 10
    assert dry(f"to-offset:{offsets[7]}") == "dry run: replayed 3, still failing 0, already present 0"
    assert dry("by-duration:PT1H") == "dry run: replayed 10, still failing 0, already present 0"
    assert dry("to-datetime:2000-01-01T00:00:00.000") == "dry run: replayed 10, still failing 0, already present 0"
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000")
    assert dry(f"to-datetime:{future}") == "dry run: replayed 0, still failing 0, already present 0"

    # A real replay of the first 6, then shifts relative to the commit.
    res = run_kjb(["replay", "--topic", dlq, "--limit", "6"], fixed, env=env)
    assert summary(res) == "replayed 6, still failing 0, already present 0"
    committed = offsets[5] + 1
    assert kafka.committed(f"{group}.replay", dlq) == {0: committed}
    for shift in (-2, 2):
        # From committed+shift: records before the commit are already present.
        start = committed + shift
        again = sum(start <= o < committed for o in offsets)
        new = sum(o >= max(start, committed) for o in offsets)
        assert dry(f"shift-by:{shift}") == \
            f"dry run: replayed {new}, still failing 0, already present {again}"

    # Time-based resets against dead letters written in two waves.
    time.sleep(1.5)
    boundary = dt.datetime.now(dt.timezone.utc)
    time.sleep(1.5)
    schema = avrokit.load(V1)
    kafka.produce(topic, [avrokit.confluent(schema, order(500 + i), 9) for i in range(3)])
    proc = start_kjb(["run"], tmp_path / "broken.cfg", env=env, name="wave2")
    wait_for(lambda: kafka.record_counts(dlq) == {0: 13}, timeout=240, message="13 dead letters")
    assert proc.stop() == 0
    stamp = boundary.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert dry(f"to-datetime:{stamp}") == "dry run: replayed 3, still failing 0, already present 0"
    ago = (dt.datetime.now(dt.timezone.utc) - boundary).total_seconds()
    assert dry(f"by-duration:PT{ago:.1f}S") == "dry run: replayed 3, still failing 0, already present 0"


def test_extreme_shifts_stop_at_the_ends(kafka, db, make_topic, run_kjb, start_kjb,
                                        kjb_services_env, tmp_path):
    """shift-by with the largest and smallest 64-bit numbers moves to the
    end and to the start of the partition, from the command line and from
    the admin API (the sum overflowed: the sanitizer build died and the
    release build replayed from the start); a duration reaching before
    1970 means from the start."""
    env = kjb_services_env
    topic, dlq, group, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path, unknown=4)

    def dry(spec: str) -> str:
        res = run_kjb(["replay", "--topic", dlq, "--dry-run", "--reset-offsets", spec], fixed, env=env)
        assert res.returncode == 0, res.stderr
        return summary(res)

    none = "dry run: replayed 0, still failing 0, already present 0"
    every = "dry run: replayed 4, still failing 0, already present 0"
    assert dry("shift-by:9223372036854775807") == none
    assert dry("shift-by:-9223372036854775808") == every
    assert dry("to-offset:9223372036854775807") == none
    assert dry("by-duration:P106751991167DT7H12M55.807S") == every
    assert dry("to-datetime:1900-01-01T00:00:00Z") == every

    port, token = free_port(), "tok-replay-e2e"
    proc = start_kjb(["run"], fixed, name="api",
                     env={**env, "KJB_HTTP_LISTEN": f"127.0.0.1:{port}", "KJB_ADMIN_TOKEN": token})

    def call(path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", method="POST" if body is not None else "GET",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=15) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        except OSError:
            return 0, {}

    wait_for(lambda: call("/api/stats")[0] == 200, timeout=60, message=proc.log)
    for spec, replayed in [("shift-by:9223372036854775807", 0), ("shift-by:-9223372036854775808", 4)]:
        status, answer = call("/api/replay", {"reset_offsets": spec, "dry_run": True})
        assert status == 202, answer
        done = wait_for(lambda: (call("/api/stats")[1].get("replay") or {}).get("running") is False
                        and call("/api/stats")[1]["replay"], timeout=120,
                        message=lambda: f"{call('/api/stats')[1].get('replay')}\n{proc.log()[-3000:]}")
        assert done["error"] is None and (done["replayed"], done["still_failing"]) == (replayed, 0), done
    status, answer = call("/api/replay", {"reset_offsets": "shift-by:99999999999999999999999", "dry_run": True})
    assert (status, answer) == (400, {"error": 'reset_offsets: bad reset spec "shift-by:99999999999999999999999": '
                                               "the shift must be an integer from -9223372036854775808 to "
                                               "9223372036854775807"})
    assert proc.stop() == 0, proc.log()[-3000:]
    # Dry runs: nothing was committed, not even the reset.
    assert kafka.committed(f"{group}.replay", dlq)[0] < 0


def test_replay_after_kafkas_own_reset_tool(kafka, db, make_topic, run_kjb, start_kjb,
                                            kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, group, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path, unknown=6)
    res = run_kjb(["replay", "--topic", dlq], fixed, env=env)
    assert summary(res) == "replayed 6, still failing 0, already present 0"
    jobs = db.scalar("SELECT count(*) FROM kjb.jobs")
    third = dlq_offsets(kafka, dlq)[2]
    res = kafka.consumer_groups("--group", f"{group}.replay", "--topic", dlq, "--reset-offsets",
                                "--to-offset", str(third), "--execute")
    assert res.returncode == 0, res.stderr
    assert kafka.committed(f"{group}.replay", dlq) == {0: third}
    res = run_kjb(["replay", "--topic", dlq], fixed, env=env)
    assert summary(res) == "replayed 0, still failing 0, already present 4"
    assert res.returncode == 0
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == jobs


def test_follow_keeps_replaying_until_stopped(kafka, db, make_topic, run_kjb, start_kjb,
                                              kjb_services_env, tmp_path):
    env = kjb_services_env
    topic, dlq, group, fixed = setup(kafka, db, make_topic, run_kjb, start_kjb, env, tmp_path, unknown=2)
    follower = start_kjb(["replay", "--topic", dlq, "--follow"], fixed, env=env, name="follow")
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 2 * 4, timeout=240, message="first replays")
    schema = avrokit.load(V1)
    kafka.produce(topic, [avrokit.confluent(schema, order(900), 9)])
    proc = start_kjb(["run"], tmp_path / "broken.cfg", env=env, name="more")
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 2 * 5, timeout=240,
             message=lambda: f"the new dead letter replayed\n{follower.log()}")
    assert proc.stop() == 0
    # Idle, the follower waits for no more records to finish the last
    # batch: its rows are marked and its offsets committed.
    end = {0: dlq_offsets(kafka, dlq)[-1] + 1}
    wait_for(lambda: kafka.committed(f"{group}.replay", dlq) == end, timeout=60,
             message=lambda: f"offsets {kafka.committed(f'{group}.replay', dlq)}, not {end}")
    assert db.query("SELECT status, replays FROM kjb.dead_letters WHERE dlq_topic = %s"
                    " ORDER BY dlq_offset", dlq) == [("replayed", 1)] * 3
    follower.signal(signal.SIGTERM)
    assert follower.wait(30) == 0
    assert "replayed 3, still failing 0, already present 0" in follower.log()


def test_dlq_peek_shows_reasons_as_text_and_json(kafka, db, make_topic, run_kjb, start_kjb,
                                                 kjb_services_env, tmp_path):
    import base64

    env = kjb_services_env
    schema = avrokit.load(V1)
    topic, group = make_topic(), unique_name("peek")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "p"; }} ); }}""")
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    good = avrokit.confluent(schema, order(1), 1)
    bad = [b"\x07" + good[1:], good[:-3], avrokit.confluent(schema, order(2), 9)]
    kafka.produce(topic, [good, *bad], key=b"k")
    proc = start_kjb(["run"], cfg, env=env)
    dlq = f"{topic}.dlq"
    wait_for(lambda: kafka.record_counts(dlq) == {0: 3}, timeout=240, message="3 dead letters")
    assert proc.stop() == 0

    res = run_kjb(["dlq", "peek", "--topic", dlq], cfg, env=env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 6
    assert lines[0].startswith(f"{dlq} [0] @0  from {topic} [0] @1  kjb.BAD_MAGIC  VALUE_CONVERTER  ")
    assert lines[1] == "  byte 0: bad magic byte 0x07, expected 0x00"
    assert " kjb.TRUNCATED " in lines[2] and lines[3].startswith("  avro body at byte 5: ")
    assert " kjb.UNKNOWN_SCHEMA_ID " in lines[4]

    res = run_kjb(["dlq", "peek", "--topic", dlq, "--json", "--code", "TRUNCATED"], cfg, env=env)
    records = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert len(records) == 1
    rec = records[0]
    assert (rec["topic"], rec["partition"], rec["offset"], rec["key"]) == (dlq, 0, 1, "k")
    assert base64.b64decode(rec["value"]["base64"]) == bad[1]
    assert rec["headers"]["__connect.errors.offset"] == "2"
    assert rec["headers"]["__connect.errors.exception.class.name"] == "kjb.TRUNCATED"
    assert rec["headers"]["kjb.consumer.group"] == group

    res = run_kjb(["dlq", "peek", "--topic", dlq, "--limit", "1", "--code", "kjb.UNKNOWN_SCHEMA_ID"], cfg, env=env)
    assert len(res.stdout.splitlines()) == 2 and "UNKNOWN_SCHEMA_ID" in res.stdout
    # Peeking commits nothing and changes nothing.
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == 1
    res = run_kjb(["dlq", "peek", "--topic", "no.such.topic.here"], cfg, env=env)
    assert res.returncode == 1 and res.stderr.startswith("kjb: dlq peek: ")
