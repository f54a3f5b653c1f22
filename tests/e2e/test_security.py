"""Security end to end, against the session's real servers with their TLS
sides (scripts/kafka.sh with KJB_KAFKA_TLS_DIR, scripts/pg.sh with
KJB_PG_TLS_DIR, certificates from a CA the session makes):

- Kafka over SSL and SASL_SSL through kafka.properties alone: records
  become jobs, a bad record a DLQ record, offsets are committed, `kjb
  produce` works; with SCRAM-SHA-256 and SCRAM-SHA-512 `kjb replay` and
  `kjb dlq peek` too; a wrong password, a user the broker does not know
  or an untrusted broker certificate ends `kjb produce`, `kjb replay` and
  `kjb dlq peek` within seconds with one `kjb: ...` line saying why, and
  leaves `kjb run` retrying with librdkafka's reason in its log and a 503
  from /readyz;
- PostgreSQL with sslmode=verify-full: migrate and run work, a wrong CA, a
  host name the certificate does not carry, a wrong password and a
  connection without TLS fail with a one-line `kjb: migrate: ...` error;
- no secret (SASL and PostgreSQL passwords, right or wrong, the admin
  token) in any log line, command output or HTTP answer;
- the HTTP server listens on 127.0.0.1 only unless told otherwise;
- user-controlled names (kinds, queues, topics, unique keys, the schema)
  that look like SQL round-trip exactly.

The exec handler's "no shell" guarantee is in test_executor.py."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import socket
import subprocess
import time
import urllib.parse
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import avrokit
from kjbtest import (KafkaTLS, PostgresTLS, REPO, check_lines, error_line, free_port, request, unique_name,
                     wait_for)

ORDER = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
MIGRATIONS = len(list((REPO / "schemas" / "sql").glob("*.sql")))
EXECUTOR = 'executor = { poll_interval = "200ms"; heartbeat = "500ms"; lease = "8s"; shutdown_timeout = "5s"; };'


# ---- helpers ----------------------------------------------------------------


def cfg_str(s: str) -> str:
    """s as a libconfig string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, *, brokers: str, group: str, topics: str, properties: list[str] = (),
                 handlers: str = "", extra: str = "", schema: str | None = None) -> Path:
    props = ", ".join(cfg_str(p) for p in properties)
    pg_schema = f" schema = {cfg_str(schema)};" if schema else ""
    path.write_text(f"""
kafka = {{ brokers = {cfg_str(brokers)}; group = {cfg_str(group)}; properties = [ {props} ]; }};
postgres = {{ conninfo = "set-by-env";{pg_schema} }};
schemas = {{ dir = "{REPO / 'schemas' / 'avro'}"; ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
{EXECUTOR}
topics = ( {topics} );
{f"handlers = ( {handlers} );" if handlers else ""}
{extra}
""")
    return path


def orders_topic(topic: str, kind: str) -> str:
    return (f'{{ topic = {cfg_str(topic)}; schema = "order_created.avsc";'
            f' jobs = ( {{ kind = {cfg_str(kind)}; unique_key = "o-${{order_id}}"; }} ); }}')


def order_line(i: int, name: str = "Ada") -> str:
    """An order_created record as `kjb produce` reads it."""
    return json.dumps({"order_id": i, "customer": {"id": 7, "email": f"c{i}@example.org", "name": name},
                       "amount": "19.99", "currency": "EUR",
                       "items": [{"sku": "A-1", "quantity": 2, "price": 9.995}],
                       "created_at": "2026-11-21T10:00:00.123Z", "note": None, "tags": {}})


def order(i: int) -> dict:
    """An order_created record for fastavro."""
    return {"order_id": i, "customer": {"id": 7, "email": "ada@example.com", "name": "Ada"},
            "amount": Decimal("19.99"), "currency": "EUR", "items": [], "created_at": 1763719200000 + i,
            "note": None, "tags": {}}


def ssl_props(tls: KafkaTLS, ca: Path | None = None) -> list[str]:
    return ["security.protocol=ssl", f"ssl.ca.location={ca or tls.ca}"]


def sasl_props(tls: KafkaTLS, mechanism: str = "PLAIN", password: str | None = None,
               user: str | None = None) -> list[str]:
    return ["security.protocol=sasl_ssl", f"ssl.ca.location={tls.ca}", f"sasl.mechanisms={mechanism}",
            f"sasl.username={user or tls.user}", f"sasl.password={tls.password if password is None else password}"]


def need_kafka_tls(kafka) -> KafkaTLS:
    assert kafka.tls is not None, "the session broker has no TLS listeners (KJB_KAFKA_TLS_DIR, scripts/kafka.sh)"
    return kafka.tls


def need_pg_tls(pg) -> PostgresTLS:
    assert pg.tls is not None, "the session's PostgreSQL has no TLS role (KJB_PG_TLS_DIR, scripts/pg.sh)"
    return pg.tls


def grant_tls_role(db, tls: PostgresTLS) -> None:
    """Lets the TLS role create kjb's schema in the test's database."""
    with db.cluster.connect("postgres") as conn:
        conn.execute(f'GRANT CREATE, CONNECT, TEMPORARY ON DATABASE "{db.name}" TO {tls.user}')


def produce_raw(conf: dict[str, str], topic: str, value: bytes, key: bytes, headers: list) -> None:
    """Produces one record with confluent_kafka (its own librdkafka)."""
    from confluent_kafka import Producer

    errors: list = []
    p = Producer({**conf, "linger.ms": 0, "enable.idempotence": True, "acks": "all"})
    p.produce(topic, value=value, key=key, headers=headers, on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(60) == 0 and not errors, f"produce to {topic}: {errors}"


def summary(stderr: str) -> str:
    """kjb's last own line (librdkafka may log after it, while closing)."""
    return [ln for ln in stderr.splitlines() if ln.startswith("kjb: ")][-1]


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]


def probe(port: int, path: str) -> tuple[int, dict] | None:
    try:
        status, body = request(port, path)
    except OSError:
        return None
    return status, json.loads(body)


_TCP_STATES = {"01": "ESTABLISHED", "0A": "LISTEN"}


def _addr(hexaddr: str) -> tuple[str, int]:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four host-order 32-bit words
        ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return ip, int(port, 16)


def tcp_sockets(pid: int) -> list[dict]:
    """The TCP sockets process `pid` holds, from /proc: family, state,
    local and remote (ip, port)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", str(Path(fd).readlink()))
        except OSError:
            continue
        if m:
            inodes.add(int(m.group(1)))
    out = []
    for family in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{family}").read_text().splitlines()[1:]:
            f = line.split()
            if int(f[9]) in inodes:
                out.append({"family": family, "state": _TCP_STATES.get(f[3], f[3]),
                            "local": _addr(f[1]), "remote": _addr(f[2])})
    return out


def broker_ports(pid: int) -> set[int]:
    """The remote ports of the established connections of `pid`."""
    return {s["remote"][1] for s in tcp_sockets(pid) if s["state"] == "ESTABLISHED"}


def dead_letters(kafka, topic: str, n: int) -> list:
    """The n records of `topic`'s DLQ, once there (kjb creates the topic
    with its first record)."""
    dlq = f"{topic}.dlq"
    wait_for(lambda: sum(kafka.end_offsets(dlq).values()) >= n, timeout=60, message=f"{n} records in {dlq}")
    return kafka.consume(dlq, count=n, timeout=30)


def port_of(hostport: str) -> int:
    return int(hostport.rsplit(":", 1)[1])


# ---- Kafka over TLS -----------------------------------------------------------


def test_consumer_and_produce_over_ssl(kafka, db, make_topic, run_kjb, start_kjb, tmp_path):
    tls = need_kafka_tls(kafka)
    topic, group = make_topic(), unique_name("ssl")
    cfg = write_config(tmp_path / "kjb.cfg", brokers=tls.ssl, group=group, properties=ssl_props(tls),
                       topics=orders_topic(topic, "over_ssl"))
    env = {"KJB_POSTGRES_CONNINFO": str(db)}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0

    res = run_kjb(["produce", "--topic", topic, "--key", "order_id"], cfg, env=env,
                  input="".join(order_line(i) + "\n" for i in range(5)))
    assert res.returncode == 0, res.stderr
    assert summary(res.stderr) == f'kjb: produce: 5 records produced to "{topic}", 0 bad lines, 0 undelivered'
    # A record that is not Avro, over the same listener.
    produce_raw(tls.client_conf(), topic, b"\x07not avro", b"bad-key", [("trace", b"t-1")])

    proc = start_kjb(["run", "--role", "consumer"], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 5, timeout=120,
             message=lambda: f"5 jobs\n{proc.log()[-3000:]}")
    [dead] = dead_letters(kafka, topic, 1)
    # Every connection kjb holds to the broker is to the SSL listener.
    assert broker_ports(proc.pid) & {port_of(kafka.bootstrap), port_of(tls.sasl_ssl)} == set()
    assert port_of(tls.ssl) in broker_ports(proc.pid), tcp_sockets(proc.pid)
    assert proc.stop() == 0, proc.log()[-3000:]

    rows = db.query("SELECT source_offset, kind, unique_key, args->>'order_id', args->'customer'->>'name'"
                    " FROM kjb.jobs ORDER BY source_offset")
    assert rows == [(i, "over_ssl", f"o-{i}", str(i), "Ada") for i in range(5)]
    assert (dead.key, dead.value) == (b"bad-key", b"\x07not avro")
    assert dead.header("trace") == "t-1"
    assert dead.header("__connect.errors.topic") == topic
    assert (dead.header("__connect.errors.partition"), dead.header("__connect.errors.offset")) == ("0", "5")
    assert dead.header("__connect.errors.stage") == "VALUE_CONVERTER"
    assert dead.header("__connect.errors.exception.class.name") == "kjb.BAD_MAGIC"
    assert dead.header("kjb.consumer.group") == group
    assert kafka.committed(group, topic) == {0: 6}


def test_consumer_and_produce_over_sasl_ssl_plain(kafka, db, make_topic, run_kjb, start_kjb, tmp_path):
    tls = need_kafka_tls(kafka)
    topic, group = make_topic(), unique_name("sasl")
    cfg = write_config(tmp_path / "kjb.cfg", brokers=tls.sasl_ssl, group=group, properties=sasl_props(tls),
                       topics=orders_topic(topic, "over_sasl"))
    env = {"KJB_POSTGRES_CONNINFO": str(db)}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    res = run_kjb(["produce", "--topic", topic], cfg, env=env, input="".join(order_line(i) + "\n" for i in range(4)))
    assert res.returncode == 0, res.stderr
    produce_raw(tls.client_conf("PLAIN"), topic, b"\x00\x00\x00\x00\x09" + b"\x02", b"k", [])

    proc = start_kjb(["run", "--role", "consumer"], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 4, timeout=120,
             message=lambda: f"4 jobs\n{proc.log()[-3000:]}")
    [dead] = dead_letters(kafka, topic, 1)
    assert broker_ports(proc.pid) & {port_of(kafka.bootstrap), port_of(tls.ssl)} == set()
    assert port_of(tls.sasl_ssl) in broker_ports(proc.pid), tcp_sockets(proc.pid)
    assert proc.stop() == 0, proc.log()[-3000:]
    assert db.query("SELECT source_offset, unique_key FROM kjb.jobs ORDER BY 1") == [(i, f"o-{i}") for i in range(4)]
    assert dead.header("__connect.errors.exception.class.name") == "kjb.UNKNOWN_SCHEMA_ID"
    assert kafka.committed(group, topic) == {0: 5}
    assert tls.password not in proc.log()


ONE_SCHEMA_ID = '{ id = 1; file = "order_created.avsc"; }'


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_scram_produce_run_peek_replay(kafka, db, make_topic, run_kjb, start_kjb, tmp_path, mechanism):
    """Every command that talks to Kafka, over SASL_SSL with SCRAM. This
    needs librdkafka 2.6.1 or later: older ones send a proof Kafka 4
    rejects (librdkafka#4895), as Debian 12's 2.0.2 does."""
    tls = need_kafka_tls(kafka)
    topic, group = make_topic(), unique_name("scram")
    dlq = f"{topic}.dlq"
    cfg = write_config(tmp_path / "kjb.cfg", brokers=tls.sasl_ssl, group=group,
                       properties=sasl_props(tls, mechanism), topics=orders_topic(topic, "over_scram"))
    # Schema id 9 is unknown to kjb.cfg, whose consumer dead-letters its
    # records, and known to fixed.cfg, whose replay makes them jobs.
    fixed = tmp_path / "fixed.cfg"
    assert ONE_SCHEMA_ID in cfg.read_text()
    fixed.write_text(cfg.read_text().replace(
        ONE_SCHEMA_ID, ONE_SCHEMA_ID + ', { id = 9; file = "order_created.avsc"; }'))
    env = {"KJB_POSTGRES_CONNINFO": str(db)}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    outputs = []

    res = run_kjb(["produce", "--topic", topic, "--key", "order_id"], cfg, env=env,
                  input="".join(order_line(i) + "\n" for i in range(4)))
    outputs.append(res.stdout + res.stderr)
    assert res.returncode == 0, res.stderr
    assert summary(res.stderr) == f'kjb: produce: 4 records produced to "{topic}", 0 bad lines, 0 undelivered'
    res = run_kjb(["produce", "--topic", topic, "--key", "order_id", "--schema-id", "9"], cfg, env=env,
                  input=order_line(4) + "\n")
    outputs.append(res.stdout + res.stderr)
    assert res.returncode == 0, res.stderr
    assert kafka.end_offsets(topic) == {0: 5}

    # The consumer, and the transactional producer of the dead letter.
    proc = start_kjb(["run", "--role", "consumer"], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == 4, timeout=120,
             message=lambda: f"4 jobs\n{proc.log()[-3000:]}")
    [dead] = dead_letters(kafka, topic, 1)
    wait_for(lambda: kafka.committed(group, topic) == {0: 5}, timeout=60,
             message=lambda: f"offset 5 committed, not {kafka.committed(group, topic)}")
    assert broker_ports(proc.pid) & {port_of(kafka.bootstrap), port_of(tls.ssl)} == set()
    assert port_of(tls.sasl_ssl) in broker_ports(proc.pid), tcp_sockets(proc.pid)
    assert proc.stop() == 0, proc.log()[-3000:]
    outputs.append(proc.log())
    assert db.query("SELECT source_offset, kind, unique_key FROM kjb.jobs ORDER BY 1") == \
        [(i, "over_scram", f"o-{i}") for i in range(4)]
    assert dead.key == b"4"
    assert (dead.header("__connect.errors.topic"), dead.header("__connect.errors.offset")) == (topic, "4")
    assert dead.header("__connect.errors.exception.class.name") == "kjb.UNKNOWN_SCHEMA_ID"
    assert dead.header("kjb.consumer.group") == group
    # Written in a transaction: a read_committed reader sees it, and its
    # commit marker takes the next offset.
    assert kafka.record_counts(dlq) == {0: 1}
    assert kafka.end_offsets(dlq)[0] >= dead.offset + 2

    res = run_kjb(["dlq", "peek", "--topic", dlq, "--json"], cfg, env=env)
    outputs.append(res.stdout + res.stderr)
    assert res.returncode == 0, res.stderr
    [rec] = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert (rec["topic"], rec["partition"], rec["offset"], rec["key"]) == (dlq, 0, dead.offset, "4")
    assert rec["headers"]["__connect.errors.exception.class.name"] == "kjb.UNKNOWN_SCHEMA_ID"
    assert rec["headers"]["__connect.errors.offset"] == "4"

    res = run_kjb(["replay", "--topic", dlq], fixed, env=env)
    outputs.append(res.stdout + res.stderr)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "replayed 1, still failing 0, already present 0", res.stdout
    assert db.query("SELECT source_offset, kind, unique_key FROM kjb.jobs ORDER BY 1") == \
        [(i, "over_scram", f"o-{i}") for i in range(5)]
    assert kafka.committed(f"{group}.replay", dlq) == {0: dead.offset + 1}
    for out in outputs:
        assert tls.password not in out


# Each failure: the listener, kafka.properties but the broker list, and
# what librdkafka says about it (in kjb's log, and in the one error line
# of the commands that run once). Secrets, right and wrong, are filled in.
KAFKA_FAILURES = {
    "wrong_password": ("sasl", lambda tls, wrong: sasl_props(tls, password=wrong),
                       "SASL authentication error: Authentication failed: Invalid username or password"),
    "scram_sha_256_wrong_password": (
        "sasl", lambda tls, wrong: sasl_props(tls, "SCRAM-SHA-256", password=wrong),
        "SASL authentication error: Authentication failed during authentication due to invalid credentials"
        " with SASL mechanism SCRAM-SHA-256"),
    "scram_sha_512_unknown_user": (
        "sasl", lambda tls, wrong: sasl_props(tls, "SCRAM-SHA-512", user="nobody-" + wrong),
        "SASL authentication error: Authentication failed during authentication due to invalid credentials"
        " with SASL mechanism SCRAM-SHA-512"),
    "untrusted_ca": ("ssl", lambda tls, wrong: ssl_props(tls, ca=tls.other_ca), "certificate verify failed"),
}


@pytest.mark.parametrize("case", sorted(KAFKA_FAILURES))
def test_kafka_authentication_failures_are_clear(kafka, db, make_topic, run_kjb, start_kjb, tmp_path, case):
    tls = need_kafka_tls(kafka)
    listener, make_props, reason = KAFKA_FAILURES[case]
    wrong = "wrong-" + secrets.token_hex(8)
    props = make_props(tls, wrong)
    topic, group, port = make_topic(), unique_name(case), free_port()
    brokers = tls.sasl_ssl if listener == "sasl" else tls.ssl
    cfg = write_config(tmp_path / "kjb.cfg", brokers=brokers, group=group, properties=props,
                       topics=orders_topic(topic, case))
    # `kjb produce` stops at the refused login or handshake, long before
    # its record would time out. (Not for `kjb run`: its dead-letter
    # producer wants message.timeout.ms below its 10 s transaction timeout.)
    produce_cfg = write_config(tmp_path / "produce.cfg", brokers=brokers, group=group,
                               properties=props + ["message.timeout.ms=60000"], topics=orders_topic(topic, case))
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    outputs = []

    # Each ends within seconds, at the first refusal, not at a timeout:
    # produce's is a minute away (message.timeout.ms); replay's, dlq peek's
    # and dlq reindex's, 10 s, would end with "could not connect to Kafka
    # within 10 s".
    for cmd, args, config, stdin in [
            ("produce", ["produce", "--topic", topic], produce_cfg, order_line(1) + "\n"),
            ("replay", ["replay", "--topic", f"{topic}.dlq"], cfg, None),
            ("dlq peek", ["dlq", "peek", "--topic", f"{topic}.dlq"], cfg, None),
            ("dlq reindex", ["dlq", "reindex", "--topic", f"{topic}.dlq"], cfg, None)]:
        started = time.monotonic()
        res = run_kjb(args, config, env=env, input=stdin, timeout=90)
        elapsed = time.monotonic() - started
        outputs.append(res.stdout + res.stderr)
        assert res.returncode == 1, res.stderr
        line = error_line(res.stderr)
        assert line.startswith(f"kjb: {cmd}: could not connect to Kafka: ") and reason in line, line
        assert elapsed < 15, f"kjb {cmd} took {elapsed:.1f}s to fail\n{res.stderr}"
        assert res.stdout == ""
    assert kafka.end_offsets(topic) == {0: 0}

    # The service keeps trying, and says why it is not ready.
    kafka.produce(topic, [avrokit.confluent(ORDER, order(1), 1)])
    proc = start_kjb(["run", "--role", "consumer"], cfg, env=env)
    wait_for(lambda: reason in proc.log(), timeout=60, message=lambda: f"{reason!r} in the log\n{proc.log()[-3000:]}")
    not_ready = (503, {"status": "not ready", "reason": "kafka not connected"})
    wait_for(lambda: probe(port, "/readyz") == not_ready, timeout=60,
             message=lambda: f"/readyz to say {not_ready}, not {probe(port, '/readyz')}")
    assert probe(port, "/startupz")[0] == 503
    assert proc.stop() == 0, proc.log()[-3000:]
    outputs.append(proc.log())
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == 0
    assert all(offset < 0 for offset in kafka.committed(group, topic).values())
    for out in outputs:
        assert wrong not in out and tls.password not in out


# ---- PostgreSQL over TLS ------------------------------------------------------


def test_postgres_verify_full_migrate_and_run(kafka, pg, db, make_topic, run_kjb, start_kjb, tmp_path):
    tls = need_pg_tls(pg)
    grant_tls_role(db, tls)
    topic = make_topic()
    cfg = write_config(tmp_path / "kjb.cfg", brokers=kafka.bootstrap, group=unique_name("pgtls"),
                       topics=orders_topic(topic, "pg_tls"),
                       handlers='{ kind = "pg_tls"; type = "log"; }')
    env = {"KJB_POSTGRES_CONNINFO": tls.conninfo(db.name)}
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f'applied {MIGRATIONS} migrations; schema "kjb" is current'
    assert db.scalar("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'kjb'") == tls.user

    kafka.produce(topic, [avrokit.confluent(ORDER, order(i), 1) for i in range(6)])
    proc = start_kjb(["run"], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 6, timeout=120,
             message=lambda: f"6 completed jobs\n{proc.log()[-3000:]}")
    # Every session kjb holds is the TLS role's, encrypted.
    sessions = db.query("SELECT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                        " WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'",
                        db.name)
    assert sessions and all(row == (tls.user, True) for row in sessions), sessions
    assert proc.stop() == 0, proc.log()[-3000:]
    assert tls.password not in proc.log()


def _pg_failures(tls: PostgresTLS, dbname: str) -> dict[str, tuple[str, str]]:
    return {
        "untrusted_ca": (tls.conninfo(dbname, ca=tls.other_ca), "SSL error: certificate verify failed"),
        "host_mismatch": (tls.conninfo(dbname, host="127.0.0.1"),
                          'server certificate for "localhost" (and 1 other name) does not match host name "127.0.0.1"'),
        "wrong_password": (tls.conninfo(dbname, password="wrong-" + secrets.token_hex(8)),
                           f'FATAL:  password authentication failed for user "{tls.user}"'),
        "no_tls": (tls.conninfo(dbname, host="127.0.0.1", sslmode="disable"),
                   f'FATAL:  pg_hba.conf rejects connection for host "127.0.0.1", user "{tls.user}", '
                   f'database "{dbname}", no encryption'),
    }


@pytest.mark.parametrize("case", ["untrusted_ca", "host_mismatch", "wrong_password", "no_tls"])
def test_postgres_tls_failures_are_one_line_errors(pg, db, run_kjb, tmp_path, case):
    tls = need_pg_tls(pg)
    grant_tls_role(db, tls)
    conninfo, reason = _pg_failures(tls, db.name)[case]
    cfg = write_config(tmp_path / "kjb.cfg", brokers="127.0.0.1:1", group="g", topics=orders_topic("t", "k"))
    res = run_kjb(["migrate"], cfg, env={"KJB_POSTGRES_CONNINFO": conninfo})
    assert res.returncode == 1, res.stderr
    line = one_line(res.stderr)
    assert line == (f'kjb: migrate: could not connect to postgresql: connection to server at "127.0.0.1", '
                    f"port {tls.port} failed: {reason}"), line
    assert res.stdout == ""
    password = re.search(r"password=(\S+)", conninfo).group(1)
    assert password not in res.stderr
    assert db.scalar("SELECT to_regclass('kjb.jobs')") is None


# ---- secrets -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_in_logs_or_http_with_real_credentials(kafka, pg, db, make_topic, run_kjb, start_kjb, tmp_path,
                                                         fmt):
    """Real SASL_SSL and verify-full PostgreSQL logins, their failures, and
    every endpoint: none of the secrets shows anywhere. test_logs.py does
    the same against servers that never answer."""
    ktls, ptls = need_kafka_tls(kafka), need_pg_tls(pg)
    grant_tls_role(db, ptls)
    token = "tok-" + secrets.token_hex(12)
    wrong_sasl, wrong_pg = "wrong-" + secrets.token_hex(8), "wrong-" + secrets.token_hex(8)
    hidden = (ktls.password, ptls.password, token, wrong_sasl, wrong_pg)
    topic, group, port = make_topic(), unique_name("secrets"), free_port()
    common = dict(brokers=ktls.sasl_ssl, group=group, topics=orders_topic(topic, "secret_job"),
                  handlers='{ kind = "secret_job"; type = "log"; }',
                  extra=f'http = {{ listen = "127.0.0.1:{port}"; }};')
    debug = ["debug=security,broker,conf"]
    cfg = write_config(tmp_path / "kjb.cfg", properties=sasl_props(ktls) + debug, **common)
    bad_cfg = write_config(tmp_path / "bad.cfg", properties=sasl_props(ktls, password=wrong_sasl) + debug, **common)
    env = {"KJB_POSTGRES_CONNINFO": ptls.conninfo(db.name), "KJB_ADMIN_TOKEN": token, "KJB_HTTP_LISTEN": ""}
    log_opts = ["--log-level", "debug", "--log-format", fmt]
    seen: dict[str, str] = {}

    res = run_kjb(["check-config", *log_opts], cfg, env=env)
    assert res.returncode == 0, res.stderr
    seen["check-config"] = res.stdout + res.stderr
    res = run_kjb(["migrate", *log_opts], cfg, env=env)
    assert res.returncode == 0, res.stderr
    seen["migrate"] = res.stdout + res.stderr
    res = run_kjb(["produce", "--topic", topic, *log_opts], cfg, env=env,
                  input="".join(order_line(i) + "\n" for i in range(3)))
    assert res.returncode == 0, res.stderr
    seen["produce"] = res.stdout + res.stderr
    produce_raw(ktls.client_conf("PLAIN"), topic, b"\x01junk", b"k", [])

    proc = start_kjb(["run", *log_opts], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 3, timeout=120,
             message=lambda: f"3 completed jobs\n{proc.log()[-3000:]}")
    wait_for(lambda: probe(port, "/readyz") == (200, {"status": "ok"}), timeout=60,
             message=lambda: f"/readyz {probe(port, '/readyz')}")
    job = db.scalar("SELECT min(id) FROM kjb.jobs")
    wait_for(lambda: json.loads(request(port, "/api/dlq")[1]), timeout=30, message="the DLQ record in /api/dlq")
    for path in ("/metrics", "/healthz", "/readyz", "/startupz", "/", "/api/stats", "/api/jobs", "/api/dlq",
                 f"/api/jobs/{job}"):
        status, body = request(port, path)
        # A probe may flap to 503 on a slow metadata answer; the rest is 200.
        assert status == 200 or (status == 503 and path.endswith("z")), (path, status, body[:500])
        seen[f"GET {path}"] = body
    # The right token gets past authorisation (a completed job is in the
    # wrong state to retry); wrong and missing ones do not.
    status, body = request(port, f"/api/jobs/{job}/retry", "POST", {"Authorization": f"Bearer {token}"})
    assert status not in (401, 403), (status, body)
    seen["POST right token"] = body
    status, body = request(port, f"/api/jobs/{job}/retry", "POST", {"Authorization": f"Bearer {token}x"})
    assert status == 403 and "wrong token" in body, (status, body)
    seen["POST wrong token"] = body
    status, body = request(port, f"/api/jobs/{job}/cancel", "POST", {"Authorization": f"Basic {token}"})
    assert status == 401, (status, body)
    seen["POST basic"] = body
    assert proc.stop() == 0, proc.log()[-3000:]
    seen["run"] = proc.log().split("\n", 1)[1]
    check_lines(seen["run"], fmt, "kjb run output")
    # librdkafka's debug output went through kjb's logger.
    assert "kafka: " in seen["run"] and "SASL" in seen["run"], seen["run"][-3000:]

    # Failing logins log too.
    res = run_kjb(["migrate", *log_opts], cfg, env={**env, "KJB_POSTGRES_CONNINFO": ptls.conninfo(db.name, password=wrong_pg)})
    assert res.returncode == 1 and "password authentication failed" in res.stderr, res.stderr
    seen["migrate, wrong password"] = res.stdout + res.stderr
    bad = start_kjb(["run", "--role", "consumer", *log_opts], bad_cfg, env=env, name="bad")
    wait_for(lambda: "Invalid username or password" in bad.log(), timeout=60,
             message=lambda: f"the SASL failure in the log\n{bad.log()[-3000:]}")
    assert wait_for(lambda: probe(port, "/readyz"), timeout=30)[0] == 503
    seen["GET /readyz, wrong password"] = request(port, "/readyz")[1]
    seen["GET /api/stats, wrong password"] = request(port, "/api/stats")[1]
    assert bad.stop() == 0
    seen["run, wrong password"] = bad.log().split("\n", 1)[1]

    for where, text in seen.items():
        for secret in hidden:
            assert secret not in text, f"{secret!r} in {where}:\n{text[-4000:]}"


# ---- HTTP bind address -----------------------------------------------------------


def _machine_addresses() -> list[str]:
    """The machine's IPv4 and IPv6 addresses that are not loopback."""
    res = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True)
    out = []
    for m in re.finditer(r"\binet6? ([0-9a-f:.]+)/", res.stdout):
        ip = ipaddress.ip_address(m.group(1))
        if not ip.is_loopback and not ip.is_link_local:
            out.append(str(ip))
    return out


def test_http_listens_on_loopback_by_default(db, run_kjb, start_kjb, tmp_path):
    # No http section, and KJB_HTTP_LISTEN empty: the built-in default.
    cfg = write_config(tmp_path / "kjb.cfg", brokers="127.0.0.1:1", group="g", topics=orders_topic("t", "idle"),
                       handlers='{ kind = "idle"; type = "log"; }')
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": ""}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0

    def port_free() -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 9464))
                return True
            except OSError:
                return False

    # Another kjb on this machine may hold the default port for a while.
    wait_for(port_free, timeout=120, message="127.0.0.1:9464 to be free")
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: probe(9464, "/healthz") == (200, {"status": "ok"}), timeout=60,
             message=lambda: f"/healthz on 127.0.0.1:9464\n{proc.log()[-3000:]}")
    listening = [(s["family"], s["local"]) for s in tcp_sockets(proc.pid) if s["state"] == "LISTEN"]
    assert listening == [("tcp", ("127.0.0.1", 9464))], listening
    ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    mine = [ln.split() for ln in ss.splitlines() if f"pid={proc.pid}," in ln]
    assert [f[3] for f in mine] == ["127.0.0.1:9464"], ss
    addresses = _machine_addresses()
    print(f"non-loopback addresses: {addresses or 'none'}")
    for addr in addresses:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((addr, 9464), timeout=5).close()
    assert proc.stop() == 0


# ---- SQL with hostile names ------------------------------------------------------

HOSTILE_KIND = "o'k\"; DROP TABLE jobs; --"
HOSTILE_QUEUE = "q'); DELETE FROM jobs; --"
HOSTILE_KEY = "u'${order_id}\"; SELECT pg_sleep(10); --"
# COPY's text format gives \N, \. and tabs meanings of their own.
HOSTILE_NAME = "Robert'); DROP TABLE jobs; --\t\\N\n\\.\r$1 %s"
SCHEMA = "Kjb_Sec"


def test_hostile_names_round_trip(kafka, db, make_topic, run_kjb, start_kjb, tmp_path):
    topic = make_topic(name=f"sec.hostile-topic_{secrets.token_hex(4)}")
    assert "." in topic and "-" in topic and "_" in topic
    group, port = unique_name("hostile"), free_port()
    cfg = write_config(
        tmp_path / "kjb.cfg", brokers=kafka.bootstrap, group=group,
        topics=(f'{{ topic = {cfg_str(topic)}; schema = "order_created.avsc"; jobs = ('
                f' {{ kind = {cfg_str(HOSTILE_KIND)}; queue = {cfg_str(HOSTILE_QUEUE)};'
                f' unique_key = {cfg_str(HOSTILE_KEY)}; }} ); }}'),
        handlers=f"{{ kind = {cfg_str(HOSTILE_KIND)}; type = \"log\"; }}", schema=SCHEMA)
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"}
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f'applied {MIGRATIONS} migrations; schema "{SCHEMA}" is current'
    assert db.query("SELECT nspname FROM pg_namespace WHERE lower(nspname) LIKE 'kjb%' ORDER BY 1") == [(SCHEMA,)]

    names = [HOSTILE_NAME, "plain"]
    kafka.produce(topic, [avrokit.confluent(ORDER, {**order(i), "customer": {
        "id": 7, "email": "e@x.example", "name": names[i % 2]}}, 1) for i in range(4)])
    kafka.produce(topic, [b"\x05bad"])
    proc = start_kjb(["run"], cfg, env=env)
    jobs = f'"{SCHEMA}".jobs'
    wait_for(lambda: db.scalar(f"SELECT count(*) FROM {jobs} WHERE state = 'completed'") == 4, timeout=120,
             message=lambda: f"4 completed jobs\n{proc.log()[-3000:]}")
    [dead] = dead_letters(kafka, topic, 1)
    assert dead.header("__connect.errors.topic") == topic and dead.header("__connect.errors.offset") == "4"

    rows = db.query(f"SELECT source_topic, source_offset, kind, queue, unique_key, args->'customer'->>'name'"
                    f" FROM {jobs} ORDER BY source_offset")
    assert rows == [(topic, i, HOSTILE_KIND, HOSTILE_QUEUE, HOSTILE_KEY.replace("${order_id}", str(i)),
                     names[i % 2]) for i in range(4)]

    # The API and the CLI filter on the kind as a value.
    status, body = request(port, "/api/jobs?kind=" + urllib.parse.quote(HOSTILE_KIND, safe=""))
    assert status == 200, body
    listed = json.loads(body)
    listed = listed["jobs"] if isinstance(listed, dict) else listed
    assert sorted(j["kind"] for j in listed) == [HOSTILE_KIND] * 4 and {j["queue"] for j in listed} == {HOSTILE_QUEUE}
    status, body = request(port, "/metrics")
    assert status == 200
    inserted = {s.labels["kind"]: s.value for fam in text_string_to_metric_families(body)
                for s in fam.samples if s.name == "kjb_jobs_inserted_total"}
    assert inserted == {HOSTILE_KIND: 4}, inserted
    assert proc.stop() == 0, proc.log()[-3000:]

    res = run_kjb(["jobs", "ls", "--kind", HOSTILE_KIND, "--json"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    assert sorted((j["kind"], j["queue"], j["state"]) for j in json.loads(res.stdout)) == \
        [(HOSTILE_KIND, HOSTILE_QUEUE, "completed")] * 4
    assert db.scalar(f"SELECT count(*) FROM {jobs}") == 4
    assert kafka.committed(group, topic) == {0: 5}
