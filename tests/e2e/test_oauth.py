"""SASL/OAUTHBEARER with OIDC end to end. kjb's librdkafka clients fetch
access tokens from a token endpoint with the client-credentials grant
(`sasl.oauthbearer.method=oidc`; the endpoint is tokenserver.TokenServer,
on a thread of this process), and the broker's OAUTHBEARER listener
(scripts/kafka.sh with KJB_KAFKA_OAUTH_JWKS_URL) checks every token with
Kafka's own OAuthBearerValidatorCallbackHandler: signature against the
server's JWKS, issuer, audience, expiry without clock skew; a session ends
when its token does, unless the client re-authenticated.

- produce, run (jobs, and a dead letter through the transactional DLQ
  producer), dlq peek and replay work over it;
- with tokens that live 15 s, `kjb run` keeps consuming and dead-lettering
  across several lifetimes on the tokens it refreshes, loses the broker
  once the server stops issuing them and the last one expired, and comes
  back when it issues them again;
- a wrong client secret fails with librdkafka's reason and exit code 1
  (produce, dlq peek), or a 503 from /readyz (run), without a secret in
  any output."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import avrokit
from kjbtest import REPO, answers, error_line, free_port, oidc_properties, order, unique_name, wait_for

ORDER = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
LIFETIME = 15  # seconds, for the refresh test's tokens


def cfg_str(s: str) -> str:
    """s as a libconfig string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, *, brokers: str, group: str, topic: str, properties: list[str],
                 schema_ids: tuple[int, ...] = (1,)) -> Path:
    """One topic of order_created records (under each of `schema_ids`), one
    job per record with unique key o-<order_id>."""
    props = ", ".join(cfg_str(p) for p in properties)
    ids = ", ".join(f'{{ id = {i}; file = "order_created.avsc"; }}' for i in schema_ids)
    path.write_text(f"""
kafka = {{ brokers = {cfg_str(brokers)}; group = {cfg_str(group)}; properties = [ {props} ]; }};
postgres = {{ conninfo = "set-by-env"; }};
schemas = {{ dir = "{REPO / 'schemas' / 'avro'}"; ids = ( {ids} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
topics = ( {{ topic = {cfg_str(topic)}; schema = "order_created.avsc";
             jobs = ( {{ kind = "oauth"; unique_key = "o-${{order_id}}"; }} ); }} );
""")
    return path


def order_lines(ids) -> str:
    """order_created records as `kjb produce` reads them."""
    return "".join(json.dumps({"order_id": i, "customer": {"id": 7, "email": f"c{i}@example.org", "name": "Ada"},
                               "amount": "19.99", "currency": "EUR", "items": [],
                               "created_at": "2026-11-21T10:00:00.123Z", "note": None, "tags": {}}) + "\n"
                   for i in ids)


def records(ids, schema_id: int = 1) -> list[bytes]:
    return [avrokit.confluent(ORDER, order(i), schema_id) for i in ids]


def summary(stderr: str) -> str:
    """kjb's last own line (librdkafka may log after it, while closing)."""
    return [ln for ln in stderr.splitlines() if ln.startswith("kjb: ")][-1]


def jobs(db) -> list[tuple[int, str]]:
    return db.query("SELECT source_offset, unique_key FROM kjb.jobs ORDER BY source_offset")


def test_produce_run_peek_and_replay_over_oidc(kafka, oidc, db, make_topic, run_kjb, start_kjb, tmp_path):
    client = oidc.add_client(unique_name("kjb"), secrets.token_hex(16))
    topic, group = make_topic(), unique_name("oidc")
    dlq = f"{topic}.dlq"
    # librdkafka's debug output too shows neither the secret nor a token.
    props = oidc_properties(oidc, client) + ["debug=security,conf"]
    common = dict(brokers=kafka.oauth, group=group, topic=topic, properties=props)
    cfg = write_config(tmp_path / "kjb.cfg", **common)
    fixed = write_config(tmp_path / "fixed.cfg", schema_ids=(1, 9), **common)
    env = {"KJB_POSTGRES_CONNINFO": str(db)}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0

    res = run_kjb(["produce", "--topic", topic, "--log-level", "debug"], cfg, env=env, input=order_lines(range(4)))
    assert res.returncode == 0, res.stderr
    assert "SASL OAUTHBEARER authentication successful" in res.stderr
    outputs = res.stdout + res.stderr
    assert summary(res.stderr) == f'kjb: produce: 4 records produced to "{topic}", 0 bad lines, 0 undelivered'
    assert len(oidc.issued(client.id)) == 1
    # Schema id 9 is only in the fixed configuration: a dead letter first.
    kafka.produce(topic, records([100], schema_id=9), key=b"late")

    proc = start_kjb(["run", "--role", "consumer", "--log-level", "debug"], cfg, env=env)
    wait_for(lambda: len(jobs(db)) == 4, timeout=90, message=lambda: f"4 jobs\n{proc.log()[-3000:]}")
    wait_for(lambda: kafka.record_counts(dlq) == {0: 1}, timeout=90,
             message=lambda: f"a dead letter in {dlq}\n{proc.log()[-3000:]}")
    wait_for(lambda: kafka.committed(group, topic) == {0: 5}, timeout=30, message="offset 5 committed")
    assert proc.stop() == 0, proc.log()[-3000:]
    assert jobs(db) == [(i, f"o-{i}") for i in range(4)]
    # Its consumer and its dead-letter producer logged in with tokens of their own.
    assert len(oidc.issued(client.id)) >= 3

    res = run_kjb(["dlq", "peek", "--topic", dlq, "--json"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    outputs += res.stdout + res.stderr
    [dead] = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert (dead["topic"], dead["key"]) == (dlq, "late")
    assert dead["headers"]["__connect.errors.exception.class.name"] == "kjb.UNKNOWN_SCHEMA_ID"
    assert dead["headers"]["__connect.errors.offset"] == "4"
    assert dead["headers"]["kjb.consumer.group"] == group

    res = run_kjb(["replay", "--topic", dlq], fixed, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "replayed 1, still failing 0, already present 0"
    assert jobs(db) == [(i, f"o-{i}") for i in range(4)] + [(4, "o-100")]
    assert kafka.committed(f"{group}.replay", dlq)[0] > 0
    assert len(oidc.issued(client.id)) >= 5
    assert all(t.scope == "kafka" for t in oidc.issued(client.id))
    outputs += proc.log() + res.stdout + res.stderr
    assert "sasl.oauthbearer.client.secret = ***" in outputs
    for secret in [client.secret, *(t.token for t in oidc.issued(client.id))]:
        assert secret not in outputs


def test_tokens_are_refreshed_through_a_long_run(kafka, oidc, db, make_topic, run_kjb, start_kjb, tmp_path):
    client = oidc.add_client(unique_name("short"), secrets.token_hex(16), lifetime=LIFETIME)
    topic, group, port = make_topic(), unique_name("refresh"), free_port()
    cfg = write_config(tmp_path / "kjb.cfg", brokers=kafka.oauth, group=group, topic=topic,
                       properties=oidc_properties(oidc, client))
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0

    proc = start_kjb(["run", "--role", "consumer"], cfg, env=env)
    started = time.time()
    kafka.produce(topic, records(range(3)))
    wait_for(lambda: len(jobs(db)) == 3, timeout=60, message=lambda: f"3 jobs\n{proc.log()[-3000:]}")
    first = oidc.issued(client.id)
    assert first, "kjb run got no token"

    # Past the expiry of the tokens it started with and of the ones after.
    time.sleep(max(0.0, max(t.exp for t in first) + LIFETIME + 1 - time.time()))
    kafka.produce(topic, records(range(3, 6)) + [b"\x07not avro"])
    wait_for(lambda: len(jobs(db)) == 6, timeout=60, message=lambda: f"6 jobs\n{proc.log()[-3000:]}")
    wait_for(lambda: kafka.record_counts(f"{topic}.dlq") == {0: 1}, timeout=60,
             message=lambda: f"a dead letter\n{proc.log()[-3000:]}")
    wait_for(lambda: kafka.committed(group, topic) == {0: 7}, timeout=30, message="offset 7 committed")
    tokens = oidc.issued(client.id)
    elapsed = time.time() - started
    # Each of its two clients (consumer, dead-letter producer) held a live
    # token all along.
    assert len(tokens) >= 2 * int(elapsed // LIFETIME), (len(tokens), elapsed)
    assert len([t for t in tokens if t.at > min(t.exp for t in first)]) >= 2

    # The broker holds it to its tokens: once the server issues none, kjb
    # loses the broker when its last token expires, not before; when the
    # server issues them again, records flow again.
    oidc.revoke(client.id)
    not_ready = (503, {"status": "not ready", "reason": "kafka not connected"})
    lost = []

    def lost_for_good():
        """Not ready in three answers over a second: one metadata request
        that times out on a loaded machine is a blip (seen once in CI,
        with 4 s of the token's life left), not the broker lost."""
        t = time.time()
        for _ in range(3):
            if answers(port, "/readyz") != not_ready:
                return False
            time.sleep(0.5)
        lost.append(t)
        return True
    wait_for(lost_for_good, timeout=LIFETIME + 30,
             message=lambda: f"/readyz to say {not_ready}, not {answers(port, '/readyz')}\n{proc.log()[-3000:]}")
    # Readiness asks the consumer. Its last token and the producer's are
    # the two latest to expire (each client's tokens expire in the order
    # they were issued); the consumer's may be either, so the later of
    # the two can outlive the consumer's by up to a refresh interval.
    # Expiries are whole seconds.
    last_two = sorted(t.exp for t in oidc.issued(client.id))[-2:]
    assert lost[0] > last_two[0] - 1, (lost[0], last_two)
    assert oidc.refused(client.id) >= 1
    kafka.produce(topic, records([6]))
    time.sleep(3)
    assert len(jobs(db)) == 6, "a record became a job without a valid token"
    oidc.add_client(client.id, client.secret, lifetime=LIFETIME)
    wait_for(lambda: len(jobs(db)) == 7, timeout=60, message=lambda: f"the 7th job\n{proc.log()[-3000:]}")
    wait_for(lambda: (answers(port, "/readyz") or (0,))[0] == 200, timeout=30, message="/readyz to say 200")
    assert proc.stop() == 0, proc.log()[-3000:]
    assert jobs(db) == [(i, f"o-{i}") for i in range(6)] + [(7, "o-6")]
    print(f"refresh: {len(tokens)} tokens of {LIFETIME} s in the first {elapsed:.0f} s of `kjb run`,"
          f" {len(oidc.issued(client.id))} in {time.time() - started:.0f} s, {oidc.refused(client.id)} refused")
    assert client.secret not in proc.log()


def test_wrong_client_secret_fails_clearly(kafka, oidc, db, make_topic, run_kjb, start_kjb, tmp_path):
    client = oidc.add_client(unique_name("denied"), secrets.token_hex(16))
    wrong = "wrong-" + secrets.token_hex(8)
    topic, group, port = make_topic(), unique_name("denied"), free_port()
    props = oidc_properties(oidc, client, secret=wrong)
    cfg = write_config(tmp_path / "kjb.cfg", brokers=kafka.oauth, group=group, topic=topic, properties=props)
    # The one-shot commands stop at the refused token, long before a
    # record would time out (a minute here) or their 10 s connect wait.
    produce_cfg = write_config(tmp_path / "produce.cfg", brokers=kafka.oauth, group=group, topic=topic,
                               properties=props + ["message.timeout.ms=60000"])
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    reason = f'Failed to retrieve OIDC token from "{oidc.token_url}"'
    refused = 'Failed to acquire SASL OAUTHBEARER token: {"error": "invalid_client"'

    outputs = ""
    for cmd, args, config, stdin in [
            ("produce", ["produce", "--topic", topic], produce_cfg, order_lines([1])),
            ("replay", ["replay", "--topic", f"{topic}.dlq"], cfg, None),
            ("dlq peek", ["dlq", "peek", "--topic", topic], cfg, None)]:
        started = time.monotonic()
        res = run_kjb(args, config, env=env, input=stdin, timeout=90)
        elapsed = time.monotonic() - started
        outputs += res.stdout + res.stderr
        assert res.returncode == 1, res.stderr
        line = error_line(res.stderr)
        assert line.startswith(f"kjb: {cmd}: could not connect to Kafka: ") and refused in line, line
        assert any(reason in ln and "401" in ln for ln in res.stderr.splitlines() if " error kafka: " in ln), \
            res.stderr
        assert elapsed < 15, f"kjb {cmd} took {elapsed:.1f}s to fail\n{res.stderr}"
    assert kafka.end_offsets(topic) == {0: 0}

    kafka.produce(topic, records([1]))
    proc = start_kjb(["run", "--role", "consumer"], cfg, env=env)
    wait_for(lambda: reason in proc.log(), timeout=60, message=lambda: f"{reason!r} in the log\n{proc.log()[-3000:]}")
    not_ready = (503, {"status": "not ready", "reason": "kafka not connected"})
    wait_for(lambda: answers(port, "/readyz") == not_ready, timeout=60,
             message=lambda: f"/readyz to say {not_ready}, not {answers(port, '/readyz')}")
    assert proc.stop() == 0, proc.log()[-3000:]
    assert jobs(db) == []
    assert kafka.end_offsets(topic) == {0: 1}
    assert oidc.issued(client.id) == [] and oidc.refused(client.id) >= 3
    assert wrong not in outputs + proc.log() and client.secret not in outputs + proc.log()
