"""Logs end to end: real kjb commands against the real PostgreSQL, with a
password in the conninfo, SASL credentials for a broker that does not
answer (so librdkafka logs errors) and an admin token in the environment.
No secret may show in anything kjb writes or serves; --log-format json
makes every line a JSON object with ts, level and msg; a bad format is a
usage error."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kjbtest import TEXT_LINE, check_lines, free_port, request, wait_for

PG_PASSWORD = "s3cr3t-pg"
SASL_PASSWORD = "s3cr3t-sasl"
KEY_PASSWORD = "s3cr3t-sslkey"
ADMIN_TOKEN = "tok-s3cr3t-admin"
SECRETS = (PG_PASSWORD, SASL_PASSWORD, KEY_PASSWORD, ADMIN_TOKEN)


# Nothing listens on port 1: librdkafka logs its connection failures.
KAFKA = f"""
kafka = {{ brokers = "127.0.0.1:1"; group = "logs";
  properties = [ "security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN",
                 "sasl.username=kjb", "sasl.password={SASL_PASSWORD}",
                 "ssl.key.password={KEY_PASSWORD}", "reconnect.backoff.ms=100",
                 "debug=conf,broker" ]; }};"""


def write_config(path: Path, port: int = 0) -> Path:
    path.write_text(f"""{KAFKA}
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{port}"; }};
executor = {{ poll_interval = "200ms"; heartbeat = "500ms"; lease = "8s"; shutdown_timeout = "5s"; }};
topics = ( {{ topic = "logs"; format = "raw"; schema = "order_created.avsc"; jobs = ( {{ kind = "hello"; }} ); }} );
handlers = ( {{ kind = "hello"; type = "log"; concurrency = 2; }} );
""")
    return path


def env_for(conninfo: str) -> dict[str, str]:
    # An empty KJB_HTTP_LISTEN leaves the file's address in force.
    return {"KJB_POSTGRES_CONNINFO": conninfo, "KJB_ADMIN_TOKEN": ADMIN_TOKEN, "KJB_HTTP_LISTEN": ""}


def with_password(db) -> str:
    # The test cluster trusts loopback: the password is sent, if asked
    # for, and ignored.
    return f"{db} password={PG_PASSWORD}"


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}:\n{text[-4000:]}"


# ---- command line ---------------------------------------------------------


@pytest.mark.parametrize("args, bad", [
    (["--log-format", "xml"], "xml"),
    (["--log-format", "JSON"], "JSON"),
    (["--log-format", ""], ""),
    (["--log-level", "loud"], "loud"),
])
def test_bad_log_options_are_usage_errors(run_kjb, tmp_path, args, bad):
    cfg = write_config(tmp_path / "kjb.cfg")
    res = run_kjb(["migrate", *args], cfg, env=env_for(f"host=127.0.0.1 port=1 password={PG_PASSWORD}"))
    assert res.returncode == 2, res.stderr
    first = res.stderr.splitlines()[0]
    assert first.startswith("kjb: migrate: ") and f'"{bad}"' in first, res.stderr
    assert ("format" if "--log-format" in args else "level") in first, res.stderr
    assert res.stdout == ""
    assert_no_secret(res.stdout + res.stderr, "output")


def test_bad_log_format_is_named_beside_a_good_level(run_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg")
    res = run_kjb(["migrate", "--log-level", "debug", "--log-format", "xml"], cfg,
                  env=env_for("host=127.0.0.1 port=1"))
    assert res.returncode == 2
    assert res.stderr.splitlines()[0] == 'kjb: migrate: bad log format "xml"', res.stderr


# ---- migrate --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_migrate_logs_hide_the_conninfo_password(db, run_kjb, tmp_path, fmt):
    cfg = write_config(tmp_path / "kjb.cfg")
    env = env_for(with_password(db))
    seen = []
    # The second run finds the schema in place: the server's "already
    # exists, skipping" notices come through the notice receiver.
    for _ in range(2):
        res = run_kjb(["migrate", "--log-level", "debug", "--log-format", fmt], cfg, env=env)
        assert res.returncode == 0, res.stderr
        assert_no_secret(res.stdout + res.stderr, f"migrate --log-format {fmt}")
        seen += check_lines(res.stderr, fmt, "migrate stderr")
    assert db.scalar("SELECT count(*) FROM kjb.schema_migrations") >= 1
    notices = [ln for ln in seen if ln["msg"].startswith("postgres: ")]
    assert notices, seen
    assert all(ln["level"] == "debug" and "already exists" in ln["msg"] for ln in notices), notices
    assert all("\n" not in ln["msg"] for ln in notices), notices


@pytest.mark.parametrize("conninfo", [
    f"host=127.0.0.1 port=1 connect_timeout=2 password={PG_PASSWORD}",
    f"host=127.0.0.1 port=1 connect_timeout=2 password='{PG_PASSWORD}'",
    f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:1/kjb?connect_timeout=2",
    f"host=127.0.0.1 port=1 password={PG_PASSWORD} no_such_option=1",
])
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_connection_errors_hide_the_password(run_kjb, tmp_path, conninfo, fmt):
    cfg = write_config(tmp_path / "kjb.cfg")
    res = run_kjb(["migrate", "--log-level", "debug", "--log-format", fmt], cfg, env=env_for(conninfo))
    assert res.returncode == 1, res.stderr
    assert "kjb: migrate: could not connect to postgresql: " in res.stderr
    assert_no_secret(res.stdout + res.stderr, "output")


# ---- check-config -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_check_config_shows_no_secret(run_kjb, tmp_path, fmt):
    cfg = write_config(tmp_path / "kjb.cfg")
    res = run_kjb(["check-config", "--log-level", "debug", "--log-format", fmt], cfg,
                  env=env_for(f"host=127.0.0.1 port=1 password={PG_PASSWORD}"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{cfg}: ok\n"), res.stdout
    assert_no_secret(res.stdout + res.stderr, "check-config")


def test_config_errors_do_not_quote_a_property_that_may_be_a_secret(run_kjb, tmp_path):
    # The '=' forgotten: the entry is reported by its place, not its text.
    cfg = tmp_path / "kjb.cfg"
    cfg.write_text(write_config(tmp_path / "good.cfg").read_text().replace(
        f'"sasl.password={SASL_PASSWORD}"', f'"sasl.password {SASL_PASSWORD}"'))
    res = run_kjb(["check-config"], cfg, env=env_for("host=127.0.0.1 port=1"))
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.startswith(f"kjb: check-config: {cfg}:") and line.endswith(
        ': kafka.properties[3]: expected "key=value", got no "="'), line
    assert_no_secret(res.stdout + res.stderr, "check-config")


# ---- run ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_run_hides_secrets_in_logs_and_http(db, run_kjb, start_kjb, tmp_path, fmt):
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port)
    env = env_for(with_password(db))
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    proc = start_kjb(["run", "--log-level", "debug", "--log-format", fmt], cfg, env=env)

    def answering():
        try:
            return request(port, "/healthz")
        except OSError:
            return None

    wait_for(answering, timeout=60, message=lambda: f"/healthz to answer\n{proc.log()[-3000:]}")
    # librdkafka has tried the broker and said so, through kjb's logger.
    wait_for(lambda: "kafka: " in proc.log() and "127.0.0.1:1" in proc.log(), timeout=60,
             message=lambda: f"librdkafka's connection errors\n{proc.log()[-3000:]}")

    for path in ("/metrics", "/healthz", "/readyz", "/startupz", "/", "/api/stats", "/api/jobs", "/api/dlq"):
        status, body = request(port, path)
        assert status != 404, path
        assert_no_secret(body, f"GET {path} ({status})")
    # Admin requests carrying the token, a wrong one and one in the wrong
    # scheme: whatever the answer, no token comes back or reaches the log.
    status, body = request(port, "/api/jobs/1/retry", "POST", {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status not in (401, 403), (status, body)
    assert_no_secret(body, f"POST /api/jobs/1/retry ({status})")
    status, body = request(port, "/api/jobs/1/cancel", "POST", {"Authorization": f"Bearer {ADMIN_TOKEN}-x"})
    assert status == 403, (status, body)
    assert_no_secret(body, f"POST /api/jobs/1/cancel, wrong token ({status})")
    status, body = request(port, "/api/replay", "POST", {"Authorization": f"Basic {ADMIN_TOKEN}"})
    assert status == 401, (status, body)
    assert_no_secret(body, f"POST /api/replay, Basic ({status})")

    assert proc.stop() == 0, proc.log()[-3000:]
    # The first line is the command KjbProcess records.
    log = proc.log().split("\n", 1)[1]
    assert_no_secret(log, f"kjb run --log-format {fmt}")
    lines = check_lines(log, fmt, "kjb run output")
    kafka = [ln for ln in lines if ln["msg"].startswith("kafka: ")]
    assert any(ln["level"] in ("error", "warn") for ln in kafka), kafka[:20]
    # librdkafka's own configuration dump (debug=conf) went through too.
    assert any(ln["level"] == "debug" for ln in kafka), kafka[:20]
