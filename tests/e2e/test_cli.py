"""The command line: exit codes, one-line errors with file:line, migrate's
idempotence and locking, check-config's mapping, produce's bad lines, and
what a configuration may make kjb read, start or accept."""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import re
import zlib
from pathlib import Path

import fastavro
import pytest

import avrokit
from kjbtest import REPO, unique_name, wait_for, write_ingest_config

# schemas/sql, in the order kjb applies them.
MIGRATIONS = sorted(p.name for p in (REPO / "schemas" / "sql").glob("*.sql"))

EXAMPLE = REPO / "config" / "example.cfg"


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]


def test_check_config_prints_the_resolved_mapping(run_kjb):
    res = run_kjb(["check-config"], EXAMPLE)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{EXAMPLE}: ok"
    assert lines[1].startswith("topic orders (format confluent, schema order_created.avsc, fingerprint 0x")
    assert lines[1].endswith(", dlq orders.dlq)")
    assert lines[2] == ('  -> job send_confirmation: queue default, priority 0, max_attempts 20, handler http, '
                        'unique_key "${order_id}", args = whole record')
    assert lines[3] == ("  -> job fraud_check: queue risk, priority 1, max_attempts 20, handler log, "
                        'ordering_key "${customer.id}" (on_discard hold), args [order_id, customer.email]')
    assert lines[4].startswith('schedule nightly: kind report, queue default, cron "0 3 * * *" in Europe/Paris, '
                               "next tick 20"), lines


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace('group = "kjb";', 'group = "kjb";\n  brokerz = "x";'),
     ':{line}: unknown key "brokerz" in kafka (did you mean "brokers"?)'),
    (lambda t: t.replace('pool_size = 4;', 'pool_size = "four";'),
     ':{line}: postgres.pool_size: expected an integer, got a string'),
    (lambda t: t.replace('format = "confluent";', 'format = "protobuf";'),
     ':{line}: topics[0].format: invalid value "protobuf" (expected confluent, raw or single-object)'),
])
def test_config_errors_name_file_and_line(run_kjb, tmp_path, edit, expected):
    text = edit(EXAMPLE.read_text().replace('dir = "schemas/avro"', f'dir = "{REPO}/schemas/avro"'))
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    # The line is that of the edited setting.
    marker = {"brokerz": "brokerz", "pool_size": "pool_size", "protobuf": "protobuf"}
    key = next(k for k in marker if k in expected)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if marker[key] in ln and not ln.lstrip().startswith("#"))
    res = run_kjb(["check-config"], cfg)
    assert res.returncode == 2
    assert one_line(res.stderr) == f"kjb: check-config: {cfg}" + expected.format(line=line)


def test_check_config_rejects_a_path_the_schema_lacks(run_kjb, tmp_path):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", """
  { topic = "t"; schema = "order_created.avsc";
    jobs = ( { kind = "k";
               args = [ "order_id", "customer.phone" ]; } ); }""")
    line = next(i for i, ln in enumerate(cfg.read_text().splitlines(), 1) if 'kind = "k"' in ln)
    res = run_kjb(["check-config"], cfg)
    assert res.returncode == 2
    msg = one_line(res.stderr)
    assert msg.startswith(f'kjb: check-config: {cfg}:{line}: job "k": args: ')
    assert "customer.phone" in msg and "phone" in msg


def test_missing_config_file_is_a_usage_error(run_kjb, tmp_path):
    res = run_kjb(["check-config"], tmp_path / "nope.cfg")
    assert res.returncode == 2
    assert one_line(res.stderr).startswith(f"kjb: check-config: {tmp_path / 'nope.cfg'}: ")


def test_usage_errors_and_help(run_kjb):
    assert run_kjb(["bogus"]).returncode == 2
    res = run_kjb(["run", "--role", "sideways"], EXAMPLE)
    assert res.returncode == 2 and 'unknown role "sideways"' in res.stderr
    for cmd in ("run", "migrate", "check-config", "produce", "version"):
        res = run_kjb([cmd, "--help"])
        assert res.returncode == 0 and res.stdout.startswith(f"usage: kjb {cmd}")
    res = run_kjb(["version"])
    assert res.returncode == 0
    assert res.stdout.splitlines()[0].startswith("kjb ")
    assert any(ln.startswith("librdkafka ") for ln in res.stdout.splitlines())


def test_version_names_a_librdkafka_of_at_least_2_6(run_kjb):
    """DESIGN.md, Platform: Debian 12's 2.0.2 cannot log in with SCRAM to
    Kafka 4; `kjb version` prints the librdkafka in use, not the headers'."""
    res = run_kjb(["version"])
    assert res.returncode == 0, res.stderr
    found = re.search(r"^librdkafka (\d+)\.(\d+)\.(\d+)", res.stdout, re.M)
    assert found, res.stdout
    assert tuple(int(g) for g in found.groups()) >= (2, 6, 0), res.stdout


LIMIT = "(expected an integer from 1 to 9223372036854775807)"
SHIFT = "the shift must be an integer from -9223372036854775808 to 9223372036854775807"


@pytest.mark.parametrize("args, expected", [
    (["version", "--bogus"], 'kjb: version: unknown option "--bogus"'),
    (["version", "extra"], 'kjb: version: unexpected argument "extra"'),
    (["jobs", "ls", "--limit", "99999999999999999999"],
     f'kjb: jobs ls: bad --limit "99999999999999999999" {LIMIT}'),
    (["jobs", "ls", "--limit", "+1"], f'kjb: jobs ls: bad --limit "+1" {LIMIT}'),
    (["jobs", "ls", "--limit", " 1"], f'kjb: jobs ls: bad --limit " 1" {LIMIT}'),
    (["jobs", "ls", "--limit", "01"], f'kjb: jobs ls: bad --limit "01" {LIMIT}'),
    (["jobs", "ls", "--limit"], 'kjb: jobs ls: option "--limit" needs a value'),
    (["jobs", "ls", "--x"], 'kjb: jobs ls: unknown option "--x"'),
    (["jobs", "ls", "-z"], 'kjb: jobs ls: unknown option "-z"'),
    (["jobs", "ls", "--json=yes"], 'kjb: jobs ls: option "--json" takes no value'),
    (["jobs", "show", "01"], f'kjb: jobs show: bad job id "01" {LIMIT}'),
    (["jobs", "show", "+1"], f'kjb: jobs show: bad job id "+1" {LIMIT}'),
    (["jobs", "cancel", "9223372036854775808"], f'kjb: jobs cancel: bad job id "9223372036854775808" {LIMIT}'),
    (["dlq", "peek", "--topic", "t.dlq", "--limit", "1x"], f'kjb: dlq peek: bad --limit "1x" {LIMIT}'),
    (["replay", "--topic"], 'kjb: replay: option "--topic" needs a value'),
    (["replay", "--topic", "t.dlq", "--limit", "0"], f'kjb: replay: bad --limit "0" {LIMIT}'),
    (["replay", "--topic", "t.dlq", "--reset-offsets", "shift-by:99999999999999999999999"],
     f'kjb: replay: --reset-offsets: bad reset spec "shift-by:99999999999999999999999": {SHIFT}'),
    (["replay", "--topic", "t.dlq", "--reset-offsets", "to-datetime:2026-02-31T00:00:00"],
     'kjb: replay: --reset-offsets: bad reset spec "to-datetime:2026-02-31T00:00:00": no such date'),
    (["replay", "--topic", "t.dlq", "--reset-offsets", "by-duration:PnanD"],
     'kjb: replay: --reset-offsets: bad reset spec "by-duration:PnanD": '
     "expected an ISO 8601 duration PnDTnHnMn.nS"),
    (["produce", "--topic", "t", "--schema-id", "-1"],
     'kjb: produce: bad --schema-id "-1" (expected an integer from 0 to 2147483647)'),
    (["run", "--bogus"], 'kjb: run: unknown option "--bogus"'),
    (["run", "--role"], 'kjb: run: option "--role" needs a value'),
    (["migrate", "-x"], 'kjb: migrate: unknown option "-x"'),
    (["check-config", "--role", "all"], 'kjb: check-config: unknown option "--role"'),
    (["bogus"], 'kjb: unknown command "bogus" (expected run, migrate, check-config, produce, '
                "replay, dlq, jobs, audit or version)"),
])
def test_usage_errors_are_one_line_and_exit_2(run_kjb, args, expected):
    """Options and their values are checked strictly, before any file or
    server is touched; each error is one line that names kjb and the
    subcommand (getopt's own messages named the subcommand as the
    program, over two lines)."""
    res = run_kjb(args)
    assert res.returncode == 2, res.stderr
    assert one_line(res.stderr) == expected
    assert res.stdout == ""


def test_replay_refuses_what_is_no_dead_letter_topic(run_kjb, tmp_path):
    """The same rule as the API's: only a mapping's DLQ topic is replayed;
    the check comes before Kafka or PostgreSQL are asked anything."""
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", """
  { topic = "t"; schema = "order_created.avsc"; jobs = ( { kind = "k"; } ); }""")
    env = {"KJB_KAFKA_BROKERS": "127.0.0.1:1", "KJB_POSTGRES_CONNINFO": "host=127.0.0.1 port=1"}
    for topic in ("nope.dlq", "t"):
        res = run_kjb(["replay", "--topic", topic, "--dry-run"], cfg, env=env)
        assert res.returncode == 2, res.stderr
        assert one_line(res.stderr) == f'kjb: replay: "{topic}" is not the dead-letter topic of a mapping'


def test_unreachable_database_is_an_operational_error(run_kjb, tmp_path):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", """
  { topic = "t"; schema = "order_created.avsc"; jobs = ( { kind = "k"; } ); }""")
    res = run_kjb(["migrate"], cfg, env={"KJB_POSTGRES_CONNINFO": "host=127.0.0.1 port=1 connect_timeout=2 password=hunter2"})
    assert res.returncode == 1
    msg = one_line(res.stderr)
    assert msg.startswith("kjb: migrate: could not connect to postgresql: ")
    assert "hunter2" not in msg


def test_migrate_is_idempotent_and_reports_status(run_kjb, db, tmp_path):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", """
  { topic = "t"; schema = "order_created.avsc"; jobs = ( { kind = "k"; } ); }""")
    env = {"KJB_POSTGRES_CONNINFO": str(db)}
    assert MIGRATIONS[:3] == ["001_init.sql", "002_executors.sql", "003_dead_letters.sql"], MIGRATIONS
    res = run_kjb(["migrate", "--status"], cfg, env=env)
    assert res.returncode == 1 and res.stdout.splitlines() == [f"pending  {m}" for m in MIGRATIONS]
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0 and res.stdout == f'applied {len(MIGRATIONS)} migrations; schema "kjb" is current\n'
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0 and res.stdout == 'applied 0 migrations; schema "kjb" is current\n'
    res = run_kjb(["migrate", "--status"], cfg, env=env)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and len(lines) == len(MIGRATIONS), res.stdout
    for line, m in zip(lines, MIGRATIONS):
        assert line.startswith(f"applied  {m}  "), lines
    cols = {r[0] for r in db.query("SELECT column_name FROM information_schema.columns"
                                   " WHERE table_schema = 'kjb' AND table_name = 'jobs'")}
    assert cols == {"id", "kind", "queue", "priority", "state", "args", "meta", "attempt", "max_attempts",
                    "scheduled_at", "attempted_at", "finished_at", "created_at", "attempted_by", "errors",
                    "unique_key", "source_topic", "source_partition", "source_offset", "ordering_key"}


def test_concurrent_migrations_are_safe(run_kjb, db, tmp_path):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", """
  { topic = "t"; schema = "order_created.avsc"; jobs = ( { kind = "k"; } ); }""")
    env = {"KJB_POSTGRES_CONNINFO": str(db)}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run_kjb(["migrate"], cfg, env=env), range(4)))
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    applied = sorted(int(r.stdout.split()[1]) for r in results)
    # One of them applied every migration; the others waited and found
    # nothing left to do.
    assert applied == [0, 0, 0, len(MIGRATIONS)]
    assert db.scalar("SELECT count(*) FROM kjb.schema_migrations") == len(MIGRATIONS)
    # 009: room on each page for a job's claimed and finished versions.
    assert db.scalar("SELECT reloptions FROM pg_class WHERE oid = 'kjb.jobs'::regclass") == ["fillfactor=70"]


def test_produce_encodes_lines_and_reports_bad_ones(run_kjb, kafka, make_topic, tmp_path):
    topic = make_topic()
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "k"; }} ); }}""")
    good = {"order_id": 5, "customer": {"id": 1, "email": "e@x.example", "name": "E"}, "amount": "12.50",
            "currency": "GBP", "items": [{"sku": "S", "quantity": 1, "price": 2.5}],
            "created_at": "2026-11-21T10:00:00.123Z", "note": "hi", "tags": {"a": "b"}}
    lines = [json.dumps(good), "{not json", json.dumps({**good, "currency": "XYZ"}), "",
             json.dumps({**good, "order_id": 6})]
    res = run_kjb(["produce", "--topic", topic, "--key", "order_id"], cfg,
                  env={"KJB_KAFKA_BROKERS": kafka.bootstrap}, input="\n".join(lines) + "\n")
    assert res.returncode == 1
    # Only kjb's own error lines; librdkafka may log a retried warning.
    err = [line for line in res.stderr.splitlines() if line.startswith("kjb: ")]
    assert err[0].startswith("kjb: produce: line 2: invalid json at column ")
    assert err[1].startswith("kjb: produce: line 3: ") and "XYZ" in err[1]
    assert err[-1] == f'kjb: produce: 2 records produced to "{topic}", 2 bad lines, 0 undelivered'
    records = kafka.consume(topic, count=2)
    schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    assert [r.key for r in records] == [b"5", b"6"]
    for r, order_id in zip(records, (5, 6)):
        assert r.value[:5] == b"\x00\x00\x00\x00\x01"  # confluent framing, id 1
        datum = fastavro.schemaless_reader(io.BytesIO(r.value[5:]), schema)
        assert datum["order_id"] == order_id and datum["note"] == "hi"
        assert str(datum["amount"]) == "12.50" and datum["currency"] == "GBP"
        assert datum["created_at"].isoformat() == "2026-11-21T10:00:00.123000+00:00"


def test_produce_requires_a_configured_topic(run_kjb, tmp_path):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", """
  { topic = "t"; schema = "order_created.avsc"; jobs = ( { kind = "k"; } ); }""")
    res = run_kjb(["produce", "--topic", "elsewhere"], cfg, input="")
    assert res.returncode == 2
    assert 'topic "elsewhere" is not in the configuration' in res.stderr


# --------------------------------------------------------------------------
# kafka.properties: each goes only to the clients that read it


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's default partitioner, and
    librdkafka's "murmur2_random" for keyed records), as a signed int."""
    m = 0x5BD1E995
    h = (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    whole = len(data) // 4 * 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


def murmur2_partitions(keys: list[bytes], partitions: int) -> dict[bytes, int]:
    # Kafka's own test vectors, so that a wrong hash cannot pass unseen.
    assert [murmur2(b"21"), murmur2(b"foobar"), murmur2(b"abc")] == [-973932308, -790332482, 479470107]
    want = {k: (murmur2(k) & 0x7FFFFFFF) % partitions for k in keys}
    # librdkafka's default partitioner (CRC32) puts some elsewhere, so
    # that the partitions tell which one ran.
    assert sum(want[k] != zlib.crc32(k) % partitions for k in keys) >= len(keys) // 4
    return want


def test_kafka_properties_go_only_to_the_clients_that_read_them(kafka, db, make_topic, run_kjb, start_kjb,
                                                                kjb_services_env, tmp_path):
    """group.instance.id is a consumer property and partitioner a producer
    property (librdkafka's C/P column). Given both, `kjb produce` and the
    dead-letter producer of `kjb run` partition by murmur2, `kjb run`'s
    consumer joins its group as that static member, and no client warns
    that it ignores a property of the other kind (CONFWARN "... will be
    ignored by this producer instance")."""
    topic = make_topic(partitions=4)
    dlq = make_topic(partitions=4, name=f"{topic}.dlq")
    group, instance = unique_name("props"), unique_name("member")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "k"; }} ); }}""")
    cfg.write_text(cfg.read_text().replace(
        f'group = "{group}"; }};',
        f'group = "{group}";\n  properties = [ "group.instance.id={instance}", "partitioner=murmur2_random" ]; }};'))

    order = {"customer": {"id": 1, "email": "e@x.example", "name": "E"}, "amount": "12.50", "currency": "GBP",
             "items": [{"sku": "S", "quantity": 1, "price": 2.5}], "created_at": "2026-11-21T10:00:00.123Z",
             "note": None, "tags": {}}
    keys = [str(i).encode() for i in range(1, 17)]
    res = run_kjb(["produce", "--topic", topic, "--key", "order_id"], cfg, env=kjb_services_env,
                  input="".join(json.dumps({**order, "order_id": int(k)}) + "\n" for k in keys))
    assert res.returncode == 0, res.stderr
    assert "CONFWARN" not in res.stderr and "will be ignored" not in res.stderr, res.stderr
    produced = kafka.consume(topic, count=len(keys))
    assert {r.key: r.partition for r in produced} == murmur2_partitions(keys, 4)

    # Records that cannot be decoded, all on partition 0: the DLQ producer
    # partitions them by their keys.
    bad_keys = [f"bad-{i}".encode() for i in range(16)]
    producer = kafka.producer()
    for k in bad_keys:
        producer.produce(topic, value=b"\x07not avro", key=k, partition=0)
    assert producer.flush(30) == 0
    del producer

    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    proc = start_kjb(["run", "--role", "consumer"], cfg, env=kjb_services_env)

    admin = kafka.admin()  # alive until its futures are done

    def members() -> list[str | None]:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        return [m.group_instance_id for m in desc.members]

    assert wait_for(members, timeout=120, message=f"kjb in group {group}") == [instance]
    wait_for(lambda: sum(kafka.record_counts(dlq).values()) == len(bad_keys), timeout=240,
             message=f"{len(bad_keys)} dead letters")
    dead = kafka.consume(dlq, count=len(bad_keys))
    assert {r.key: r.partition for r in dead} == murmur2_partitions(bad_keys, 4)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == len(keys), timeout=60, message="the jobs")
    log = proc.log()
    assert "CONFWARN" not in log and "will be ignored" not in log, log

    # dlq peek is a consumer too.
    res = run_kjb(["dlq", "peek", "--topic", dlq, "--limit", "1"], cfg, env=kjb_services_env)
    assert res.returncode == 0, res.stderr
    assert "CONFWARN" not in res.stderr and "will be ignored" not in res.stderr, res.stderr


# --------------------------------------------------------------------------
# Hardening: what the configuration may make kjb read, start or accept

TOPIC = """
  { topic = "t"; schema = "order_created.avsc"; jobs = ( { kind = "k"; } ); }"""


def line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def append(path: Path, text: str) -> Path:
    path.write_text(path.read_text() + text)
    return path


def test_a_fifo_as_config_file_is_refused_at_once(run_kjb, tmp_path):
    fifo = tmp_path / "kjb.cfg"
    os.mkfifo(fifo)
    res = run_kjb(["check-config"], fifo, timeout=20)
    assert res.returncode == 2
    assert one_line(res.stderr) == f"kjb: check-config: {fifo}: not a regular file"


@pytest.mark.parametrize("make", ["fifo", "dev_zero"])
def test_schemas_dir_entries_must_be_regular_files(run_kjb, tmp_path, make):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", TOPIC)
    bad = tmp_path / "schemas" / "bad.avsc"
    if make == "fifo":
        os.mkfifo(bad)
    else:
        bad.symlink_to("/dev/zero")
    res = run_kjb(["check-config"], cfg, timeout=20)
    assert res.returncode == 2
    assert one_line(res.stderr) == f"kjb: check-config: {bad}: not a regular file"


@pytest.mark.parametrize("name, why", [
    ("/tmp", "Is a directory"),
    ("/dev/zero", "not a regular file"),
    ("pipe.cfg", "not a regular file"),
    ("missing.cfg", "No such file or directory"),
])
def test_includes_are_read_like_the_config_file(run_kjb, tmp_path, name, why):
    os.mkfifo(tmp_path / "pipe.cfg")
    cfg = append(write_ingest_config(tmp_path / "kjb.cfg", "g", TOPIC), f'@include "{name}"\n')
    line = line_of(cfg, "@include \"")
    for cmd in ("check-config", "run"):
        res = run_kjb([cmd], cfg, timeout=20)
        assert res.returncode == 2, res.stderr
        assert one_line(res.stderr) == f'kjb: {cmd}: {cfg}:{line}: @include "{name}": {why}'


def test_includes_still_work_and_report_their_own_lines(run_kjb, tmp_path):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", TOPIC)
    (tmp_path / "log.cfg").write_text('# logging\nlog = { level = "loud"; };\n')
    append(cfg, '@include "log.cfg"\nhandlers = ( { kind = "k"; type = "log"; } );\n')
    res = run_kjb(["check-config"], cfg)
    assert res.returncode == 2
    assert one_line(res.stderr) == (f'kjb: check-config: {tmp_path / "log.cfg"}:2: log.level: invalid '
                                    f'value "loud" (expected debug, info, warn or error)')
    (tmp_path / "log.cfg").write_text('# logging\nlog = { level = "warn"; };\n')
    res = run_kjb(["check-config"], cfg)
    assert res.returncode == 0, res.stderr
    assert "handler log" in res.stdout


def test_thread_counts_are_bounded_before_anything_starts(run_kjb, tmp_path):
    cfg = append(write_ingest_config(tmp_path / "kjb.cfg", "g", TOPIC),
                 'handlers = ( { kind = "k"; type = "log";\n  concurrency = 100000000; } );\n')
    line = line_of(cfg, "concurrency =")
    for cmd in ("check-config", "run"):
        res = run_kjb([cmd], cfg, timeout=20)
        assert res.returncode == 2, res.stderr
        assert one_line(res.stderr) == (f"kjb: {cmd}: {cfg}:{line}: handlers[0].concurrency: must be "
                                        f"between 1 and 1024, got 100000000")


@pytest.mark.parametrize("entry, why", [
    ('"fetch.max.byte=1048576"', '"fetch.max.byte": No such configuration property: "fetch.max.byte"'),
    ('"auto.offset.reset=soon"',
     '"auto.offset.reset": Invalid value "soon" for configuration property "auto.offset.reset"'),
    ('"acks=maybe"', '"acks": Invalid value for configuration property "request.required.acks"'),
    ('"fetch.max.bytes=-1"',
     '"fetch.max.bytes": Configuration property "fetch.max.bytes" value -1 is outside allowed range 0..2147483135'),
    ('"session.timeout.ms=45s"', '"session.timeout.ms": expected a number, got "45s"'),
], ids=["unknown_key", "bad_enum", "alias", "out_of_range", "unit"])
def test_kafka_properties_are_checked_with_the_config(run_kjb, tmp_path, entry, why):
    """librdkafka judges each entry as it would for a client, without a
    broker (the brokers named here do not exist)."""
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", TOPIC)
    cfg.write_text(cfg.read_text().replace(
        'group = "g"; };', f'group = "g";\n  properties = [ "client.id=kjb-test",\n    {entry} ]; }};'))
    line = line_of(cfg, entry)
    for cmd in ("check-config", "run"):
        res = run_kjb([cmd], cfg, env={"KJB_KAFKA_BROKERS": "127.0.0.1:1"}, timeout=20)
        assert res.returncode == 2, res.stderr
        assert one_line(res.stderr) == f"kjb: {cmd}: {cfg}:{line}: kafka.properties[1]: {why}"
    # Fixed, it passes.
    cfg.write_text(cfg.read_text().replace(entry, '"fetch.max.bytes=1048576"'))
    res = run_kjb(["check-config"], cfg)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("listen, why", [
    ("127.0.0.1:99999", 'invalid port in "127.0.0.1:99999" (expected 0 to 65535)'),
    ("127.0.0.1", 'expected host:port or [ipv6]:port, got "127.0.0.1"'),
    ("localhost:-1", 'invalid port in "localhost:-1" (expected 0 to 65535)'),
])
def test_listen_addresses_are_checked_with_the_config(run_kjb, tmp_path, listen, why):
    cfg = append(write_ingest_config(tmp_path / "kjb.cfg", "g", TOPIC), f'http = {{ listen = "{listen}"; }};\n')
    line = line_of(cfg, "listen =")
    for cmd in ("check-config", "run"):
        # The tests' environment sets KJB_HTTP_LISTEN; empty is unset.
        res = run_kjb([cmd], cfg, env={"KJB_HTTP_LISTEN": ""}, timeout=20)
        assert res.returncode == 2, res.stderr
        assert one_line(res.stderr) == f"kjb: {cmd}: {cfg}:{line}: http.listen: {why}"


@pytest.mark.parametrize("var, value, why", [
    ("KJB_HTTP_LISTEN", "garbage", 'expected host:port or [ipv6]:port, got "garbage"'),
    ("KJB_POSTGRES_POOL_SIZE", " 1", 'expected an integer, got " 1"'),
    ("KJB_POSTGRES_POOL_SIZE", "+1", 'expected an integer, got "+1"'),
    ("KJB_POSTGRES_POOL_SIZE", "01", 'expected an integer, got "01"'),
    ("KJB_POSTGRES_POOL_SIZE", "1x", 'expected an integer, got "1x"'),
])
def test_environment_overrides_are_strict_and_named(run_kjb, tmp_path, var, value, why):
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", TOPIC)
    for cmd in ("check-config", "run"):
        res = run_kjb([cmd], cfg, env={var: value}, timeout=20)
        assert res.returncode == 2, res.stderr
        assert one_line(res.stderr) == f"kjb: {cmd}: environment {var}: {why}"


def test_config_size_and_parse_time_are_bounded(run_kjb, tmp_path):
    """libconfig took seconds over a long string and minutes over a group of
    many settings; a megabyte of either must now be answered at once."""
    cfg = tmp_path / "kjb.cfg"
    head, tail = 'kafka = { brokers = "b"; group = "', '"; };\n'
    cfg.write_text(head + "g" * (4 << 20) + tail)
    res = run_kjb(["check-config"], cfg, timeout=20)
    assert res.returncode == 2
    assert one_line(res.stderr) == f"kjb: check-config: {cfg}: larger than 1 MiB"

    size = (1 << 20) - len(head) - len(tail)
    cfg.write_text(head + "g" * size + tail)
    res = run_kjb(["check-config"], cfg, timeout=20)
    assert res.returncode == 2
    assert one_line(res.stderr) == (f"kjb: check-config: {cfg}:1: kafka.group: must be at most 255 "
                                    f"bytes, got {size}")

    settings = "".join(f"a{i}=1;" for i in range(100000))
    cfg.write_text(f"x = {{\n{settings}\n}};\n")
    res = run_kjb(["check-config"], cfg, timeout=20)
    assert res.returncode == 2
    assert one_line(res.stderr) == f"kjb: check-config: {cfg}:2: more than 64 settings in one group"
