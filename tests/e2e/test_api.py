"""The JSON API of `kjb run` end to end (docs/http-api.md), with
PostgreSQL only: /api/stats, /api/jobs with filters and paging, one job,
/api/dlq, and the admin actions with every status code they can answer:
disabled, 401, 403, 200, 404, 409, 413 and 400. Also HTTPS: TLS 1.2 and 1.3
are served, TLS 1.1 is refused, and a half-configured TLS section is a
configuration error with file:line."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kjbtest import free_port, wait_for

EXECUTOR = 'poll_interval = "200ms"; heartbeat = "500ms"; lease = "8s"; shutdown_timeout = "5s";'
TOKEN = "tok-e2e-4f1c9a"


def write_config(path: Path, port: int, http_extra: str = "") -> Path:
    # "hello" has a log handler; "flaky" exists only as rows the test
    # writes, so that its jobs stay where the test puts them.
    path.write_text(f"""
kafka = {{ brokers = "127.0.0.1:1"; group = "api"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{port}"; admin_token_env = "KJB_E2E_TOKEN"; {http_extra} }};
executor = {{ {EXECUTOR} }};
topics = ( {{ topic = "orders"; schema = "order_created.avsc"; jobs = ( {{ kind = "flaky"; }} ); }} );
handlers = ( {{ kind = "hello"; type = "log"; concurrency = 2;
               rate_limit = {{ rate = 50.0; burst = 10; scope = "local"; }};
               breaker = {{ failure_ratio = 0.5; min_calls = 10; open_for = "5s"; }}; }} );
""")
    return path


def request(port: int, path: str, method: str = "GET", token: str | None = None,
            body: bytes | None = None, scheme: str = "http",
            context: ssl.SSLContext | None = None) -> tuple[int, dict, object]:
    """(status, headers, parsed JSON body) of one request."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", method=method,
                                 data=body if body is not None else (b"" if method == "POST" else None),
                                 headers=headers)
    handlers: list = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=15) as r:
            raw = r.read().decode()
            return r.status, dict(r.headers), json.loads(raw) if "json" in r.headers.get("Content-Type", "") else raw
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read().decode())


@pytest.fixture
def service(db, run_kjb, start_kjb, tmp_path):
    """A migrated database and `kjb run --role executor` with the admin
    token set; yields (port, process)."""
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port)
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": "", "KJB_E2E_TOKEN": TOKEN}
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)

    def up():
        try:
            return request(port, "/readyz")[0] == 200
        except OSError:
            return False

    wait_for(up, timeout=30, message=lambda: proc.log())
    yield port, proc
    assert proc.stop() == 0, proc.log()
    assert TOKEN not in proc.log()


def insert(db, kind: str, state: str, n: int = 1, **cols) -> list[int]:
    extra = "".join(f", {k}" for k in cols)
    vals = "".join(", %s" for _ in cols)
    rows = db.query(
        f"INSERT INTO kjb.jobs (kind, state, args{extra})"
        f" SELECT %s, %s::kjb.job_state, jsonb_build_object('i', g){vals}"
        f" FROM generate_series(1, %s) g RETURNING id", kind, state, *cols.values(), n)
    return [r[0] for r in rows]


def test_stats_snapshot(db, service):
    port, proc = service
    n = 30
    insert(db, "hello", "available", n)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == n,
             timeout=60, message=lambda: proc.log()[-3000:])

    def counted():
        status, headers, s = request(port, "/api/stats")
        assert status == 200
        assert headers["Cache-Control"] == "no-store"
        by = {(r["kind"], r["state"]): r["count"] for r in s["jobs_by_state"]}
        kinds = {k["kind"]: k for k in s["kinds"]}
        done = by.get(("hello", "completed")) == n and kinds["hello"]["finished"]["completed"] == n
        return s if done else None

    # The counts refresh every few seconds in the background.
    s = wait_for(counted, timeout=30, message=lambda: json.dumps(request(port, "/api/stats")[2]))
    assert s["version"] and s["node"] and s["roles"] == "executor"
    assert s["health"] == {"live": True, "ready": True, "started": True, "reason": None}
    assert s["admin_enabled"] is True
    assert s["uptime_seconds"] > 0
    assert s["now"].endswith("Z") and s["jobs_counted_at"].endswith("Z")
    assert s["lag"] == [] and s["dlq_reasons"] == [] and s["replay"] is None
    assert s["topics"] == [{"topic": "orders", "consumed": 0, "dead_lettered": 0}]
    kinds = {k["kind"]: k for k in s["kinds"]}
    assert set(kinds) == {"hello", "flaky"}
    hello = kinds["hello"]
    assert hello["finished"] == {"completed": n, "retried": 0, "discarded": 0}
    assert hello["latency"]["count"] == n and 0 <= hello["latency"]["p50"] <= hello["latency"]["p99"]
    assert hello["duration"]["count"] == n and 0 <= hello["duration"]["p50"] <= hello["duration"]["p99"]
    assert hello["rate_limit"]["rate"] == 50.0 and hello["rate_limit"]["scope"] == "local"
    assert 0 <= hello["rate_limit"]["tokens"] <= 10
    assert hello["breaker"] == "closed"
    # A kind without a handler here: counts only, no executor state.
    assert kinds["flaky"]["breaker"] is None and kinds["flaky"]["rate_limit"] is None
    assert kinds["flaky"]["latency"] == {"count": 0, "p50": None, "p90": None, "p99": None}
    nodes = s["nodes"]
    assert len(nodes) == 1 and nodes[0]["name"] == s["node"] and nodes[0]["alive"] is True
    assert nodes[0]["pid"] == proc.pid and nodes[0]["roles"] == "executor"

    # The same figures in /metrics: gauges and histograms.
    body = request(port, "/metrics")[2]
    fam = {f.name: f for f in text_string_to_metric_families(body)}
    gauge = {(x.labels["kind"], x.labels["state"]): x.value for x in fam["kjb_jobs"].samples}
    assert gauge[("hello", "completed")] == n
    # Every state of every configured kind has a series, zeros included.
    assert gauge[("hello", "discarded")] == 0 and gauge[("flaky", "available")] == 0
    hist = fam["kjb_job_duration_seconds"]
    assert hist.type == "histogram"
    count = [x.value for x in hist.samples if x.name.endswith("_count") and x.labels == {"kind": "hello"}]
    assert count == [n]
    lat = [x for x in fam["kjb_job_queue_latency_seconds"].samples
           if x.name.endswith("_bucket") and x.labels.get("le") == "+Inf"]
    assert [x.value for x in lat] == [n]
    assert [x.value for x in fam["kjb_breaker_open"].samples] == [0]
    assert 0 <= fam["kjb_rate_limit_tokens"].samples[0].value <= 10


def test_jobs_listing_and_paging(db, service):
    port, _ = service
    ids = insert(db, "flaky", "discarded", 7,
                 errors=json.dumps([{"attempt": 1, "at": "2026-11-21T10:00:00Z", "error": "HTTP 500",
                                     "transient": True}]))
    other = insert(db, "flaky", "cancelled", 2)
    status, _, page = request(port, "/api/jobs?state=discarded&kind=flaky&limit=3")
    assert status == 200
    assert [j["id"] for j in page["jobs"]] == sorted(ids, reverse=True)[:3]
    assert page["next_before"] == page["jobs"][-1]["id"]
    job = page["jobs"][0]
    assert job["state"] == "discarded" and job["kind"] == "flaky" and job["source"] is None
    assert job["last_error"] == {"attempt": 1, "at": "2026-11-21T10:00:00Z", "error": "HTTP 500",
                                 "transient": True}
    seen = [j["id"] for j in page["jobs"]]
    while page["next_before"] is not None:
        status, _, page = request(port, f"/api/jobs?state=discarded&limit=3&before={page['next_before']}")
        assert status == 200
        seen += [j["id"] for j in page["jobs"]]
    assert seen == sorted(ids, reverse=True)
    status, _, page = request(port, "/api/jobs")
    assert [j["id"] for j in page["jobs"]][:2] == sorted(other, reverse=True)

    status, _, one = request(port, f"/api/jobs/{ids[0]}")
    assert status == 200 and one["id"] == ids[0] and one["args"] == {"i": 1}
    assert len(one["errors"]) == 1 and one["meta"] == {}
    assert request(port, "/api/jobs/999999999")[:3:2] == (404, {"error": "no job 999999999"})
    for bad, why in [("?state=nope", 'unknown state "nope"'),
                     ("?limit=0", "limit must be a number from 1 to 500"),
                     ("?limit=501", "limit must be a number from 1 to 500"),
                     ("?before=x", "before must be a job id")]:
        assert request(port, "/api/jobs" + bad)[:3:2] == (400, {"error": why}), bad
    assert request(port, "/api/jobs/abc")[:3:2] == (400, {"error": "bad job id"})

    status, _, dlq = request(port, "/api/dlq?limit=5")
    assert (status, dlq) == (200, {"dead_letters": [], "total": 0})
    assert request(port, "/api/dlq?limit=201")[0] == 400


def test_admin_actions(db, service):
    port, proc = service
    (discarded,) = insert(db, "flaky", "discarded", 1)
    (completed,) = insert(db, "flaky", "completed", 1)
    retry = f"/api/jobs/{discarded}/retry"

    status, headers, body = request(port, retry, "POST")
    assert status == 401 and body == {"error": "missing bearer token"}
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert request(port, retry, "POST", token="wrong")[:3:2] == (403, {"error": "wrong token"})
    assert request(port, retry, "POST", token=TOKEN[:-1])[0] == 403
    assert request(port, retry, "POST", token=TOKEN + "x")[0] == 403
    assert db.scalar("SELECT state::text FROM kjb.jobs WHERE id = %s", discarded) == "discarded"

    assert request(port, retry, "POST", token=TOKEN)[:3:2] == (200, {"id": discarded, "state": "available"})
    assert db.scalar("SELECT state::text FROM kjb.jobs WHERE id = %s", discarded) == "available"
    assert request(port, f"/api/jobs/{discarded}/cancel", "POST", token=TOKEN)[:3:2] == (
        200, {"id": discarded, "state": "cancelled"})
    assert db.scalar("SELECT state::text FROM kjb.jobs WHERE id = %s", discarded) == "cancelled"
    assert request(port, f"/api/jobs/{completed}/cancel", "POST", token=TOKEN)[:3:2] == (
        409, {"error": f"job {completed} is completed"})
    assert request(port, "/api/jobs/999999999/retry", "POST", token=TOKEN)[:3:2] == (
        404, {"error": "no job 999999999"})
    assert request(port, "/api/jobs/1/retry", "GET")[0] == 405

    # Replay: the body is checked before anything starts; a bad reset spec
    # is named with what is wrong with it.
    shift = "the shift must be an integer from -9223372036854775808 to 9223372036854775807"
    duration = "expected an ISO 8601 duration PnDTnHnMn.nS"
    for body, why in [(b"[1]", "the body must be a JSON object"),
                      (b'{"topic": "orders"}', '"orders" is not the dead-letter topic of a mapping'),
                      (b'{"topic": "nope.dlq"}', '"nope.dlq" is not the dead-letter topic of a mapping'),
                      (b'{"topic": 5}', "topic must be a string"),
                      (b'{"dry_run": "yes"}', "dry_run must be true or false"),
                      (b'{"reset_offsets": "sideways"}',
                       'reset_offsets: bad reset spec "sideways": expected to-earliest, to-latest, '
                       "to-offset:N, to-datetime:YYYY-MM-DDTHH:MM:SS.sss, shift-by:N or "
                       "by-duration:PnDTnHnMnS"),
                      (b'{"reset_offsets": "shift-by:99999999999999999999999", "dry_run": true}',
                       f'reset_offsets: bad reset spec "shift-by:99999999999999999999999": {shift}'),
                      (b'{"reset_offsets": "shift-by:+5", "dry_run": true}',
                       f'reset_offsets: bad reset spec "shift-by:+5": {shift}'),
                      (b'{"reset_offsets": "to-offset:999999999999999999999999999999"}',
                       'reset_offsets: bad reset spec "to-offset:999999999999999999999999999999": '
                       "the offset must be an integer from 0 to 9223372036854775807"),
                      (b'{"reset_offsets": "by-duration:P1e300D"}',
                       f'reset_offsets: bad reset spec "by-duration:P1e300D": {duration}'),
                      (b'{"reset_offsets": "by-duration:PnanD"}',
                       f'reset_offsets: bad reset spec "by-duration:PnanD": {duration}'),
                      (b'{"reset_offsets": "by-duration:PinfD"}',
                       f'reset_offsets: bad reset spec "by-duration:PinfD": {duration}'),
                      (b'{"reset_offsets": "by-duration:P999999999999D"}',
                       'reset_offsets: bad reset spec "by-duration:P999999999999D": '
                       "the duration is too long"),
                      (b'{"reset_offsets": "to-datetime:2026-02-31T00:00:00"}',
                       'reset_offsets: bad reset spec "to-datetime:2026-02-31T00:00:00": no such date')]:
        assert request(port, "/api/replay", "POST", token=TOKEN, body=body)[:3:2] == (
            400, {"error": why}), body
    assert request(port, "/api/stats")[2]["replay"] is None
    assert request(port, "/api/replay", "POST", token=TOKEN, body=b"x" * 70000)[:3:2] == (
        413, {"error": "request body too large"})
    assert "admin: job" in proc.log()


def raw_request(port: int, data: bytes) -> tuple[int, object]:
    """(status, parsed JSON body) of one request sent as these bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_bad_input_is_a_client_error(db, service):
    """Every parameter is checked before anything runs: text that is not
    UTF-8 or hides a NUL, integers with spaces, signs, leading zeros or too
    many digits, are 400 with what is wrong, never 404, 503 or a database
    error."""
    port, proc = service
    (job,) = insert(db, "flaky", "discarded", 1)
    limit = "limit must be a number from 1 to 500"
    for path, why in [
            ("/api/jobs?kind=%ff%fe", 'parameter "kind" is not valid UTF-8'),
            ("/api/jobs?state=%ff%fe", 'parameter "state" is not valid UTF-8'),
            ("/api/jobs?kind=a%00b", 'parameter "kind" contains a NUL byte'),
            ("/api/jobs?limit=1%00", 'parameter "limit" contains a NUL byte'),
            ("/api/jobs?%ff=1", "a parameter name is not valid UTF-8 text"),
            ("/api/jobs?state=d%C3%A9j%C3%A0", 'unknown state "d\u00e9j\u00e0"'),
            ("/api/jobs?limit=%201", limit),
            ("/api/jobs?limit=+1", limit),  # '+' is a space in a query
            ("/api/jobs?limit=%2B1", limit),
            ("/api/jobs?limit=01", limit),
            ("/api/jobs?limit=1x", limit),
            ("/api/jobs?limit=99999999999999999999", limit),
            ("/api/jobs?before=01", "before must be a job id"),
            ("/api/jobs?before=9223372036854775808", "before must be a job id"),
            ("/api/dlq?limit=%2B5", "limit must be a number from 1 to 200"),
            ("/api/jobs/%ff", "bad job id"),
            ("/api/jobs/" + "9" * 32, "bad job id"),
            ("/api/jobs/9223372036854775808", "bad job id"),
            ("/api/jobs/%201", "bad job id"),
            ("/api/jobs/%2B1", "bad job id"),
            ("/api/jobs/0", "bad job id"),
            (f"/api/jobs/0{job}", "bad job id"),
            (f"/api/jobs/{job}%00", "the path contains a NUL byte (%00)"),
            ("/healthz%00", "the path contains a NUL byte (%00)")]:
        assert request(port, path)[:3:2] == (400, {"error": why}), path
    assert request(port, "/api/jobs/9223372036854775807")[:3:2] == (
        404, {"error": "no job 9223372036854775807"})
    assert request(port, f"/api/jobs/{job}")[0] == 200
    # The same ids in the admin actions, which touch nothing then.
    for bad in (f"0{job}", "%2B1", "9" * 32, "%ff"):
        assert request(port, f"/api/jobs/{bad}/retry", "POST", token=TOKEN)[:3:2] == (
            400, {"error": "bad job id"}), bad
    assert request(port, f"/api/jobs/{job}%00/retry", "POST", token=TOKEN)[:3:2] == (
        400, {"error": "the path contains a NUL byte (%00)"})
    assert db.scalar("SELECT state::text FROM kjb.jobs WHERE id = %s", job) == "discarded"

    # A replay body that is not JSON says so, and where.
    for body, why in [
            (b'{"topic": "\xff"}', "unable to decode byte 0xff near '\"' at byte 11"),
            (b'{"topic": "a\\u0000b"}',
             "\\u0000 is not allowed without JSON_ALLOW_NUL near '\"a\\u0000b\"' at byte 20"),
            (b'{"dry_run": NaN}', "invalid token near 'NaN' at byte 15"),
            (b'{"dry_run": true', "'}' expected near end of file at byte 16")]:
        assert request(port, "/api/replay", "POST", token=TOKEN, body=body)[:3:2] == (
            400, {"error": "the body is not valid JSON: " + why}), body

    # Only the whole token opens the door: a prefix of it followed by a
    # NUL and the rest is another token.
    nul = f"POST /api/jobs/{job}/retry HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" \
          f"Connection: close\r\nAuthorization: Bearer {TOKEN[:-1]}\0{TOKEN[-1]}\r\n\r\n"
    assert raw_request(port, nul.encode()) == (403, {"error": "wrong token"})
    assert db.scalar("SELECT state::text FROM kjb.jobs WHERE id = %s", job) == "discarded"


def test_admin_disabled_without_token(db, run_kjb, start_kjb, tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port)
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": "", "KJB_E2E_TOKEN": ""}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: _answers(port), timeout=30, message=lambda: proc.log())
    (job,) = insert(db, "flaky", "discarded", 1)
    status, _, body = request(port, f"/api/jobs/{job}/retry", "POST", token="anything")
    assert status == 403 and body["error"].startswith("admin API disabled")
    assert request(port, "/api/stats")[2]["admin_enabled"] is False
    assert db.scalar("SELECT state::text FROM kjb.jobs WHERE id = %s", job) == "discarded"
    assert proc.stop() == 0


def _answers(port: int) -> bool:
    try:
        return request(port, "/healthz")[0] == 200
    except OSError:
        return False


def make_cert(dir: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificate"
    cert, key = dir / "cert.pem", dir / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_https(db, run_kjb, start_kjb, tmp_path):
    cert, key = make_cert(tmp_path)
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port, f'tls_cert = "{cert}"; tls_key = "{key}";')
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": "", "KJB_E2E_TOKEN": TOKEN}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    ctx = ssl.create_default_context(cafile=str(cert))

    def up():
        try:
            return request(port, "/healthz", scheme="https", context=ctx)[0] == 200
        except OSError:
            return False

    wait_for(up, timeout=30, message=lambda: proc.log())
    assert "https://127.0.0.1:" in proc.log()
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        c = ssl.create_default_context(cafile=str(cert))
        c.minimum_version = c.maximum_version = version
        status, _, body = request(port, "/api/stats", scheme="https", context=c)
        assert status == 200 and body["health"]["live"] is True, version
    # TLS 1.1 is refused by the server (the client allows it when asked).
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(cert))
    old.set_ciphers("ALL:@SECLEVEL=0")
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        request(port, "/healthz", scheme="https", context=old)
    # Plain HTTP to the HTTPS port gets no answer.
    with pytest.raises((OSError, urllib.error.URLError, http_client_errors())):
        request(port, "/healthz")
    assert proc.stop() == 0


def http_client_errors():
    import http.client
    return http.client.HTTPException


def test_tls_config_errors(db, run_kjb, tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "kjb.cfg", port, 'tls_cert = "/nonexistent/cert.pem";')
    env = {"KJB_POSTGRES_CONNINFO": str(db), "KJB_HTTP_LISTEN": ""}
    res = run_kjb(["check-config"], cfg, env=env)
    assert res.returncode == 2, res.stderr
    assert f"{cfg}:4: http: tls_cert and tls_key go together; tls_key is missing" in res.stderr
    cfg = write_config(tmp_path / "kjb2.cfg", port,
                       'tls_cert = "/nonexistent/cert.pem"; tls_key = "/nonexistent/key.pem";')
    res = run_kjb(["run", "--role", "executor"], cfg, env=env, timeout=30)
    assert res.returncode == 2, res.stderr
    assert 'http.tls_cert: cannot read "/nonexistent/cert.pem": No such file or directory' in res.stderr
