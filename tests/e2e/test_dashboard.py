"""The dashboard (GET /) end to end, in headless Chromium: a real `kjb run
--role all` consumes good and malformed records from a real Kafka into a
real PostgreSQL and runs jobs with log and exec handlers; the page must
draw its charts from the live counters, show the figures /api/stats gives,
list the job kinds, the dead letters' reason and the discarded job, and
drive the admin API: Retry, Cancel and Replay are refused without the
token (the rows in PostgreSQL stay as they were) and done with it.

A full-page screenshot is kept as a test artifact in the test's temporary
directory and in build/artifacts/dashboard.png."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import avrokit
from kjbtest import REPO, free_port, order, unique_name, wait_for

TOKEN_ENV = "KJB_DASHBOARD_TOKEN"  # http.admin_token_env of the config below
TOKEN = "dash-" + unique_name("token")
N_GOOD, N_BAD = 30, 4
# Waits for the page: it polls every 2-5 s, and a loaded CI machine can
# stall Chromium for tens of seconds.
SLOW = 90
ARTIFACTS = REPO / "build" / "artifacts"


def write_config(path: Path, group: str, topic: str, port: int) -> Path:
    schemas = avrokit.schema_dir(path.parent / "schemas")
    # "brittle" fails transiently with one attempt allowed: discarded at
    # once, and its breaker opens for ten minutes, so that a retried job
    # stays available. "flaky" waits ten minutes between attempts: it
    # stays retryable, which can be cancelled.
    fail = '[ "/bin/sh", "-c", "cat >/dev/null; exit 75" ]'
    path.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{group}"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{port}"; admin_token_env = "{TOKEN_ENV}"; }};
schemas = {{ dir = "{schemas}"; ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
executor = {{ poll_interval = "200ms"; heartbeat = "500ms"; lease = "8s"; shutdown_timeout = "5s"; }};
topics = ( {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "note"; }} ); }} );
handlers = (
  {{ kind = "note"; type = "log"; concurrency = 4; rate_limit = {{ rate = 500.0; burst = 1000; }}; }},
  {{ kind = "brittle"; type = "exec"; command = {fail};
     breaker = {{ failure_ratio = 0.5; min_calls = 1; open_for = "10m"; }}; }},
  {{ kind = "flaky"; type = "exec"; command = {fail};
     retry = {{ base = "10m"; max = "10m"; jitter = "none"; }}; }}
);
""")
    return path


def api(port: int, path: str) -> tuple[int, dict | None]:
    """(status, JSON body) of GET path; the body is None when not JSON."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def stats(port: int) -> dict:
    status, body = api(port, "/api/stats")
    assert status == 200 and body is not None, (status, body)
    return body


def job_state(db, jid: int) -> str:
    return db.scalar("SELECT state::text FROM kjb.jobs WHERE id = %s", jid)


# Counts, in the canvas's own pixels, the opaque ones of each series
# colour (within a small distance, for anti-aliasing; shading below a line
# is translucent) and how far apart vertically they lie: a line that rose
# above zero spans more than its own width.
CANVAS_JS = """(id) => {
  const c = document.getElementById(id), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const cols = (c.dataset.colors || '').split(',').filter(Boolean)
    .map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
  const out = cols.map(() => ({n: 0, top: c.height, bottom: 0}));
  let painted = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (!d[i + 3]) continue;
    painted++;
    const y = Math.floor(i / 4 / c.width);
    cols.forEach((col, j) => {
      if (d[i + 3] > 200 && Math.abs(d[i] - col[0]) + Math.abs(d[i + 1] - col[1]) + Math.abs(d[i + 2] - col[2]) < 40) {
        const s = out[j]; s.n++; s.top = Math.min(s.top, y); s.bottom = Math.max(s.bottom, y);
      }
    });
  }
  return {painted, width: c.width, height: c.height, max: +c.dataset.max, points: +c.dataset.points, series: out};
}"""


def canvas(page, cid: str) -> dict:
    return page.evaluate(CANVAS_JS, cid)


def value(page, testid: str) -> float | None:
    """The raw number behind a live figure (its data-value)."""
    v = page.get_attribute(f'[data-testid="{testid}"]', "data-value")
    return None if v in (None, "", "null", "undefined") else float(v)


def result(page, testid: str, before: str | None = None) -> tuple[bool, str]:
    """(ok, text) of an action's inline result, once it has one (and it
    differs from `before`)."""
    sel = f'[data-testid="{testid}"]'

    def done():
        ok = page.get_attribute(sel, "data-ok")
        text = page.inner_text(sel)
        return (ok, text) if ok is not None and text != before else None

    ok, text = wait_for(done, timeout=SLOW, message=f"a result in {testid}")
    return ok == "true", text


def test_dashboard_shows_live_state_and_drives_the_admin_api(kafka, db, make_topic, run_kjb, start_kjb,
                                                            kjb_services_env, browser, tmp_path):
    topic, group, port = make_topic(), unique_name("dash"), free_port()
    cfg = write_config(tmp_path / "kjb.cfg", group, topic, port)
    env = {**kjb_services_env, "KJB_HTTP_LISTEN": "", TOKEN_ENV: TOKEN}
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    proc = start_kjb(["run", "--role", "all"], cfg, env=env)

    def ready():
        try:
            return api(port, "/readyz")[0] == 200
        except OSError:
            return False

    wait_for(ready, timeout=180, message=lambda: f"/readyz\n{proc.log()[-3000:]}")
    status, body = api(port, "/api/stats")
    assert status == 200, f"GET /api/stats answers {status} {body}: the JSON API is missing"
    assert api(port, "/")[0] == 200

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(SLOW * 1000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Refused 401/403 answers are logged as failed loads; anything else
    # (a Content-Security-Policy violation, a script error) is a bug.
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
            and errors.append(m.text))
    shot = tmp_path / "dashboard.png"
    passed = False
    try:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded", timeout=180_000)
        assert "kjb" in page.title()
        # The pill and the three probes as one render showed them. (Polled
        # from here: the page's Content-Security-Policy forbids the eval
        # behind page.wait_for_function.) Readiness asks a broker for
        # metadata each time, so on a loaded machine it may come and go.
        def health():
            return page.evaluate("""() => [document.querySelector('[data-testid=health]').textContent,
              ...['live', 'ready', 'started'].map((p) => {
                const e = document.querySelector(`[data-testid=probe-${p}]`);
                return e ? p + ':' + e.dataset.ok : p + ': none';
              })]""")

        wait_for(lambda: health() == ["HEALTHY", "live:true", "ready:true", "started:true"], timeout=120,
                 message=lambda: f"HEALTHY: {health()}; {stats(port)['health']}")
        s = stats(port)
        assert page.inner_text('[data-testid="version"]') == s["version"]
        assert page.inner_text('[data-testid="node"]') == s["node"]
        assert page.inner_text('[data-testid="admin"]') == "enabled"

        # Traffic starts once the page watches, so that its rates rise.
        schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
        good = [avrokit.confluent(schema, order(i), 1) for i in range(N_GOOD)]
        # Byte 0 is 0x01 instead of the confluent magic byte 0x00.
        bad = [b"\x01" + avrokit.confluent(schema, order(100 + i), 1)[1:] for i in range(N_BAD)]
        time.sleep(3)  # a poll or two before the traffic: the lines start at zero
        kafka.produce(topic, good[: N_GOOD // 2] + bad + good[N_GOOD // 2:])
        [brittle] = [r[0] for r in db.query(
            "INSERT INTO kjb.jobs (kind, args, max_attempts) VALUES ('brittle', '{\"n\": 1}', 1) RETURNING id")]
        [flaky] = [r[0] for r in db.query(
            "INSERT INTO kjb.jobs (kind, args, ordering_key) VALUES ('flaky', '{\"n\": 2}', 'cust-7')"
            " RETURNING id")]

        wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE kind = 'note' AND state = 'completed'")
                 == N_GOOD, timeout=180, message=lambda: proc.log()[-3000:])
        wait_for(lambda: job_state(db, brittle) == "discarded" and job_state(db, flaky) == "retryable",
                 timeout=60, message=lambda: f"{job_state(db, brittle)} {job_state(db, flaky)}\n{proc.log()[-3000:]}")
        wait_for(lambda: kafka.record_counts(f"{topic}.dlq") == {0: N_BAD}, timeout=60, message="the dead letters")

        # ---- live figures: the page's totals are the API's, and nonzero.
        def settled():
            s = stats(port)
            ing = s["ingest"]
            if ing["records_consumed"] != N_GOOD + N_BAD or ing["records_dead_lettered"] != N_BAD:
                return None
            page_fig = (value(page, "ingest-consumed-total"), value(page, "ingest-dead-total"),
                        value(page, "ingest-inserted-total"))
            api_fig = (ing["records_consumed"], ing["records_dead_lettered"], ing["jobs_inserted"])
            return s if page_fig == api_fig else None

        s = wait_for(settled, timeout=SLOW, message=lambda: f"page totals {stats(port)['ingest']}")
        assert s["ingest"]["jobs_inserted"] == N_GOOD
        note = next(k for k in s["kinds"] if k["kind"] == "note")
        assert note["finished"]["completed"] == N_GOOD
        assert sum(k["finished"]["completed"] for k in s["kinds"]) == N_GOOD
        wait_for(lambda: value(page, "jobs-completed-total") == N_GOOD, timeout=SLOW,
                 message=lambda: f"the completed total {value(page, 'jobs-completed-total')}")

        # ---- the charts: drawn, and their lines rose above zero.
        for cid, series in (("ingest-chart", 0), ("jobs-chart", 1), ("dlq-chart", 0)):
            def drawn(cid=cid, series=series):
                c = canvas(page, cid)
                line = c["series"][series] if len(c["series"]) > series else None
                ok = c["painted"] > 500 and c["max"] > 0 and line and line["n"] > 30 \
                    and line["bottom"] - line["top"] > 10
                return c if ok else None
            c = wait_for(drawn, timeout=SLOW, message=lambda cid=cid: f"{cid}: {canvas(page, cid)}")
            assert c["points"] >= 2, c
        reasons = {r["reason"]: r["count"] for r in s["dlq_reasons"]}
        assert sum(reasons.values()) == N_BAD, s["dlq_reasons"]
        [reason] = reasons  # every malformed record fails alike
        assert "MAGIC" in reason, reason

        # ---- jobs by state and kind, as counted by the server.
        def counted():
            s = stats(port)
            want = {(r["kind"], r["state"]): r["count"] for r in s["jobs_by_state"]}
            if want.get(("note", "completed")) != N_GOOD or want.get(("brittle", "discarded")) != 1:
                return None
            row = page.locator('[data-testid="jobs-by-state"] tr[data-kind="note"] td[data-state="completed"]')
            return row.count() == 1 and row.inner_text() == str(N_GOOD)
        wait_for(counted, timeout=SLOW, message=lambda: f"jobs by state: {stats(port)['jobs_by_state']}")
        for kind in ("note", "brittle", "flaky"):
            assert page.locator(f'[data-testid="jobs-by-state"] tr[data-kind="{kind}"]').count() == 1, kind
        assert page.inner_text('[data-testid="jobs-by-state"] tr[data-kind="brittle"] td[data-state="discarded"]') == "1"

        # ---- kinds: the breaker that opened, the limiter's bucket.
        wait_for(lambda: page.get_attribute('[data-testid="kinds"] tr[data-kind="brittle"] [data-breaker]',
                                            "data-breaker") == "open", timeout=SLOW, message="brittle's open breaker")
        assert page.get_attribute('[data-testid="kinds"] tr[data-kind="note"] [data-breaker]', "data-breaker") == "none"
        assert page.locator('[data-testid="kinds"] tr[data-kind="note"] [data-testid="tokens"]').count() == 1

        # ---- dead letters: the reason, in the list and the per-reason table.
        dlq = page.locator(f'[data-testid="dlq"] tr[data-reason="{reason}"]')
        wait_for(lambda: dlq.count() == N_BAD, timeout=SLOW, message=lambda: f"{dlq.count()} dead letters listed")
        assert reason in dlq.first.inner_text() and "magic" in dlq.first.inner_text().lower()
        assert page.locator(f'[data-testid="dlq-reasons"] tr[data-reason="{reason}"]').inner_text().split()[-1] == str(N_BAD)

        # ---- consumer lag, cluster nodes.
        lag = page.locator(f'[data-testid="lag"] tr[data-topic="{topic}"]')
        wait_for(lambda: lag.count() == 1, timeout=SLOW, message="the partition's lag row")
        node = page.locator(f'[data-testid="nodes"] tr[data-node="{s["node"]}"]')
        assert node.count() == 1 and "alive" in node.inner_text()

        # ---- Retry: refused without the token, wrong token, then done.
        retry = page.locator(f'[data-testid="retry-{brittle}"]')
        retry.wait_for(timeout=SLOW * 1000)
        assert page.locator(f'[data-testid="cancel-{brittle}"]').is_disabled()  # discarded is final
        assert "no error" not in page.locator(f'tr[data-job-id="{brittle}"]').inner_text()
        assert "exited 75" in page.locator(f'tr[data-job-id="{brittle}"]').inner_text()
        retry.click()
        ok, text = result(page, "jobs-action-result")
        assert not ok and "401" in text and "admin token" in text, text
        time.sleep(1)
        assert job_state(db, brittle) == "discarded"

        page.fill('[data-testid="token-input"]', "not-the-token")
        retry.click()
        ok, text = result(page, "jobs-action-result", before=text)
        assert not ok and "403" in text and "wrong" in text, text
        assert job_state(db, brittle) == "discarded"

        page.fill('[data-testid="token-input"]', TOKEN)
        retry.click()
        ok, text = result(page, "jobs-action-result", before=text)
        assert ok and "available" in text, text
        wait_for(lambda: job_state(db, brittle) == "available", timeout=30, message="the retried job")
        # Its breaker is open: nothing claims it meanwhile.
        time.sleep(1)
        assert job_state(db, brittle) == "available"
        wait_for(lambda: page.locator(f'tr[data-job-id="{brittle}"]').count() == 0, timeout=SLOW,
                 message="the retried job to leave the discarded list")

        # ---- Held ordering keys: the retryable job holds its key.
        held = page.locator('[data-testid="held-keys"]')
        wait_for(lambda: held.get_attribute("data-count") == "1", timeout=SLOW,
                 message=lambda: f"held keys on the page: {held.inner_text()!r}; {stats(port).get('held_keys')}")
        assert f"kind flaky, key cust-7 (job {flaky}, retryable since" in held.inner_text(), held.inner_text()

        # ---- Cancel, on the retryable job.
        page.select_option('[data-testid="jobs-state"]', "retryable")
        cancel = page.locator(f'[data-testid="cancel-{flaky}"]')
        cancel.wait_for(timeout=SLOW * 1000)
        page.click("#token-clear")
        assert page.input_value('[data-testid="token-input"]') == ""
        cancel.click()
        ok, text = result(page, "jobs-action-result", before=text)
        assert not ok and "401" in text, text
        time.sleep(1)
        assert job_state(db, flaky) == "retryable"
        page.fill('[data-testid="token-input"]', TOKEN)
        cancel.click()
        ok, text = result(page, "jobs-action-result", before=text)
        assert ok and "cancelled" in text, text
        wait_for(lambda: job_state(db, flaky) == "cancelled", timeout=30, message="the cancelled job")
        wait_for(lambda: held.get_attribute("data-count") == "0", timeout=SLOW, message="the key released")
        assert held.inner_text() == "no ordering key held"

        # ---- Pause and resume a kind: for the whole cluster, audited as "admin".
        paused = '[data-testid="kinds"] tr[data-kind="note"] [data-paused]'
        assert page.get_attribute(paused, "data-paused") == "false"
        page.click('[data-testid="pause-kind-note"]')
        ok, ptext = result(page, "kinds-action-result")
        assert ok and "kind note paused" in ptext, ptext
        assert db.query("SELECT kind, paused_by FROM kjb.pauses") == [("note", "admin")]
        wait_for(lambda: page.get_attribute(paused, "data-paused") == "true", timeout=SLOW,
                 message="the paused badge (stats count pauses every few seconds)")
        assert "paused" in page.locator('[data-testid="kinds"] tr[data-kind="note"]').inner_text()
        page.click('[data-testid="resume-kind-note"]')
        ok, ptext = result(page, "kinds-action-result", before=ptext)
        assert ok and "kind note resumed" in ptext, ptext
        assert db.scalar("SELECT count(*) FROM kjb.pauses") == 0
        wait_for(lambda: page.get_attribute(paused, "data-paused") == "false", timeout=SLOW,
                 message="the badge back to running")
        assert db.query("SELECT actor, action FROM kjb.audit WHERE action LIKE 'jobs.%%' AND action <> "
                        "'jobs.retry' AND action <> 'jobs.cancel' ORDER BY id") == [
            ("admin", "jobs.pause"), ("admin", "jobs.resume")]

        # ---- Replay: the default DLQ topic, refused without the token first.
        page.click("#token-clear")
        page.click('[data-testid="replay-button"]')
        ok, rtext = result(page, "replay-result")
        assert not ok and "401" in rtext, rtext
        assert stats(port)["replay"] is None
        page.fill('[data-testid="token-input"]', TOKEN)
        page.select_option('[data-testid="replay-reset"]', "to-earliest")
        page.click('[data-testid="replay-button"]')
        ok, rtext = result(page, "replay-result", before=rtext)
        assert ok and "accepted" in rtext and f"{topic}.dlq" in rtext, rtext
        rp = wait_for(lambda: (stats(port)["replay"] or {}).get("running") is False and stats(port)["replay"],
                      timeout=120, message=lambda: f"the replay to finish: {stats(port)['replay']}")
        assert rp["topic"] == f"{topic}.dlq" and rp["error"] is None, rp
        # The malformed records are still malformed.
        assert (rp["replayed"], rp["still_failing"]) == (0, N_BAD), rp
        wait_for(lambda: "finished" in page.inner_text('[data-testid="replay-status"]'), timeout=SLOW,
                 message="the replay's state on the page")

        # The connection banner stayed down, and the page raised nothing.
        assert not page.locator('[data-testid="banner"]').is_visible()
        assert errors == []
        passed = True
    finally:
        # Kept whether or not the test passed; a failure to take it only
        # fails a test that passed otherwise.
        try:
            page.screenshot(path=str(shot), full_page=True, timeout=60_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "dashboard.png")
            print(f"dashboard screenshot: {shot} and {ARTIFACTS / 'dashboard.png'}")
        except Exception as exc:  # noqa: BLE001
            if passed:
                raise
            print(f"could not take the dashboard screenshot: {exc}")
        finally:
            page.close()
    assert proc.stop() == 0
