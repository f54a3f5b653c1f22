"""The dashboard's dead-letter explorer end to end, in headless Chromium.

A real `kjb run` dead-letters records of two reasons into a real Kafka and
PostgreSQL: confluent records of a schema id the configuration does not
know yet (UNKNOWN_SCHEMA_ID), and records cut off inside a string
(TRUNCATED, inside a varint); a key is markup and one is not UTF-8. kjb then restarts with
that schema id configured, so that the first reason has become replayable.
In the page: filter by reason and page through the results, open records
(the reason, the hex dump with the failing byte marked, the decode with
the current configuration), select rows of both reasons and replay them
(the dry run's counts per reason first; refused without the token, with
nothing changed in PostgreSQL; then done), ignore everything a filter
matches the same way, and find both actions in the audit list with their
actor. Nothing from the server may turn into markup.

Screenshots: build/artifacts/dashboard-dlq.png (the whole page at the end)
and dashboard-dlq-record.png (the explorer with a record and a dry run)."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import avrokit
from kjbtest import REPO, free_port, order, unique_name, wait_for

TOKEN_ENV = "KJB_DASHBOARD_DLQ_TOKEN"  # http.admin_token_env of the config below
TOKEN = "dlx-" + unique_name("token")
ACTOR = "admin"  # the name of the token http.admin_token_env names
SLOW = 90  # the page polls every 2-5 s; a loaded machine stalls Chromium
ARTIFACTS = REPO / "build" / "artifacts"
ORDER = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
N_UNKNOWN, N_TRUNCATED, N_GOOD = 12, 3, 4
MARKUP_KEY = '<img src=x onerror="window.__xss=1">&amp;<b>k</b>'
BINARY_KEY = b"\xff\xfe\x00k"


def write_config(path: Path, group: str, topic: str, port: int, ids: tuple[int, ...]) -> Path:
    schemas = avrokit.schema_dir(path.parent / "schemas")
    known = ", ".join(f'{{ id = {i}; file = "order_created.avsc"; }}' for i in ids)
    path.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{group}"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{port}"; admin_token_env = "{TOKEN_ENV}"; }};
schemas = {{ dir = "{schemas}"; ids = ( {known} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
executor = {{ poll_interval = "200ms"; heartbeat = "500ms"; lease = "8s"; shutdown_timeout = "5s"; }};
topics = ( {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "note"; }} ); }} );
handlers = ( {{ kind = "note"; type = "log"; concurrency = 2; }} );
""")
    return path


def api(port: int, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict | None]:
    """(status, JSON body or None) of GET path, or of a POST of body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers,
                                 method="POST" if body is not None else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def unknown_schema(i: int) -> bytes:
    """A record of order_created framed with schema id 2, which the first
    configuration does not know."""
    return b"\x00\x00\x00\x00\x02" + avrokit.body(ORDER, order(i))


def truncated(i: int) -> bytes:
    """A record of order_created (id 1) cut off inside created_at, a long:
    3 of its 6 varint bytes are there (bytes 47 to 49, for i from 64 to
    8191, whose order_id takes two bytes)."""
    whole = avrokit.confluent(ORDER, order(i), 1)
    assert 64 <= i < 8192 and len(whole) == 55, (i, whole.hex())
    return whole[:50]


def dead_letters(db, where: str = "TRUE", *params) -> list[dict]:
    cols = ("id", "reason", "status", "replays", "key", "message")
    return [dict(zip(cols, r)) for r in db.query(
        f"SELECT id, reason, status, replays, key, message FROM kjb.dead_letters WHERE {where} ORDER BY id", *params)]


def statuses(db) -> dict[int, str]:
    return {r["id"]: r["status"] for r in dead_letters(db)}


def note_jobs(db) -> int:
    return db.scalar("SELECT count(*) FROM kjb.jobs WHERE kind = 'note'")


def test_dead_letter_explorer(kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, browser, tmp_path):
    topic, group, port = make_topic(), unique_name("dlx"), free_port()
    dlq = f"{topic}.dlq"
    env = {**kjb_services_env, "KJB_HTTP_LISTEN": "", TOKEN_ENV: TOKEN}
    first = write_config(tmp_path / "first.cfg", group, topic, port, ids=(1,))
    res = run_kjb(["migrate"], first, env=env)
    assert res.returncode == 0, res.stderr

    # ---- the dead letters: written by the consumer as it meets them.
    keyed = [(f"cust-{i}".encode(), unknown_schema(i)) for i in range(N_UNKNOWN)]
    keyed[1] = (MARKUP_KEY.encode(), keyed[1][1])
    keyed[2] = (BINARY_KEY, keyed[2][1])
    keyed += [(f"trunc-{i}".encode(), truncated(100 + i)) for i in range(N_TRUNCATED)]
    keyed += [(f"good-{i}".encode(), avrokit.confluent(ORDER, order(200 + i), 1)) for i in range(N_GOOD)]
    producer = kafka.producer(**{"enable.idempotence": True, "acks": "all"})
    for key, value in keyed:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    proc = start_kjb(["run", "--role", "all"], first, env=env, name="first")
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.dead_letters") == N_UNKNOWN + N_TRUNCATED
             and note_jobs(db) == N_GOOD, timeout=180,
             message=lambda: f"the dead letters: {dead_letters(db)}\n{proc.log()[-3000:]}")
    assert proc.stop() == 0
    rows = dead_letters(db)
    unknown = [r["id"] for r in rows if r["reason"] == "UNKNOWN_SCHEMA_ID"]
    cut = [r["id"] for r in rows if r["reason"] == "TRUNCATED"]
    assert (len(unknown), len(cut)) == (N_UNKNOWN, N_TRUNCATED), [(r["reason"], r["message"]) for r in rows[N_UNKNOWN:]]
    assert {r["status"] for r in rows} == {"dead"}
    markup_id = next(r["id"] for r in rows if bytes(r["key"]) == MARKUP_KEY.encode())
    binary_id = next(r["id"] for r in rows if bytes(r["key"]) == BINARY_KEY)

    # ---- schema id 2 is known now: those dead letters would become jobs.
    second = write_config(tmp_path / "second.cfg", group, topic, port, ids=(1, 2))
    proc = start_kjb(["run", "--role", "all"], second, env=env, name="second")

    def ready():
        try:
            return api(port, "/readyz")[0] == 200
        except OSError:
            return False

    wait_for(ready, timeout=180, message=lambda: f"/readyz\n{proc.log()[-3000:]}")
    status, body = api(port, "/api/dead-letters?limit=1")
    assert status == 200 and body and "dead_letters" in body, f"GET /api/dead-letters: {status} {body}"

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(SLOW * 1000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Refused 401 answers are logged as failed loads; anything else (a
    # Content-Security-Policy violation, a script error) is a bug.
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
            and errors.append(m.text))
    page.on("dialog", lambda d: errors.append(f"a dialog opened: {d.message}"))
    shot = tmp_path / "dashboard-dlq.png"
    passed = False

    def listed() -> list[int]:
        return [int(x) for x in page.eval_on_selector_all('[data-testid="dlx-body"] tr[data-id]',
                                                          "rs => rs.map(r => r.dataset.id)")]

    def search(**fields: str) -> None:
        """Fills the filter form (reason=..., limit=...) and searches; waits
        until the rows are those of the new search."""
        for name, value in fields.items():
            sel = f'[data-testid="dlx-{name.replace("_", "-")}"]'
            if name in ("status", "limit"):
                page.select_option(sel, value)
            else:
                page.fill(sel, value)
        def searches() -> int:
            return int(page.get_attribute('[data-testid="dlx-body"]', "data-searches") or 0)

        n = searches()
        page.click('[data-testid="dlx-search"]')
        wait_for(lambda: searches() > n, timeout=SLOW, message=f"the results of {fields}")

    def preview(kind: str) -> dict:
        """The dry run on screen: {reason: {column: text}}, "" the totals."""
        box = page.locator('[data-testid="dlx-preview"]')
        wait_for(lambda: box.get_attribute("data-state") in ("ready", "error"), timeout=SLOW,
                 message=f"the dry run of {kind}")
        assert box.get_attribute("data-state") == "ready", box.inner_text()
        assert box.get_attribute("data-action") == kind
        out = {}
        for tr in box.locator("tr[data-reason]").all():
            out[tr.get_attribute("data-reason")] = {
                td.get_attribute("data-col"): td.inner_text() for td in tr.locator("td[data-col]").all()}
        return out

    def action_result(before: str | None = None) -> tuple[bool, str]:
        sel = '[data-testid="dlx-action-result"]'

        def done():
            ok, text = page.get_attribute(sel, "data-ok"), page.inner_text(sel)
            return (ok, text) if ok is not None and text != before else None

        ok, text = wait_for(done, timeout=SLOW, message="the action's result")
        return ok == "true", text

    try:
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded", timeout=180_000)
        # The explorer lists every dead letter at first, oldest first.
        wait_for(lambda: listed() == [r["id"] for r in rows], timeout=SLOW,
                 message=lambda: f"the first listing: {listed()}")

        # ---- filter by reason, and page.
        search(reason="UNKNOWN_SCHEMA_ID", limit="10")
        assert listed() == unknown[:10]
        assert page.locator('[data-testid="dlx-body"] tr[data-id]:not([data-reason="UNKNOWN_SCHEMA_ID"])').count() == 0
        assert page.inner_text('[data-testid="dlx-count"]') == "rows 1\u201310"
        assert page.is_disabled('[data-testid="dlx-prev"]')
        page.click('[data-testid="dlx-next"]')
        wait_for(lambda: listed() == unknown[10:], timeout=SLOW, message=lambda: f"page 2: {listed()}")
        assert page.inner_text('[data-testid="dlx-count"]') == f"rows 11\u2013{N_UNKNOWN} of {N_UNKNOWN}"
        assert page.is_disabled('[data-testid="dlx-next"]')
        page.click('[data-testid="dlx-prev"]')
        wait_for(lambda: listed() == unknown[:10], timeout=SLOW, message=lambda: f"page 1 again: {listed()}")
        search(reason="UNKNOWN_SCHEMA_ID", status="ignored")
        assert listed() == [] and "nothing matches" in page.inner_text('[data-testid="dlx-count"]')
        search(reason="", status="", since="not-a-time")
        wait_for(lambda: page.get_attribute('[data-testid="dlx-result"]', "data-ok") == "false", timeout=SLOW,
                 message="the refused filter")
        assert "since" in page.inner_text('[data-testid="dlx-result"]').lower()

        # ---- keys are text: markup stays markup-free, other bytes are hex.
        search(since="", limit="25")
        assert listed() == [r["id"] for r in rows]
        assert page.inner_text(f'tr[data-id="{markup_id}"] td:nth-child(5)') == MARKUP_KEY
        assert page.inner_text(f'tr[data-id="{binary_id}"] td:nth-child(5)').endswith("ff fe 00 6b")
        assert page.locator('[data-testid="dlx"] img').count() == 0
        assert page.eval_on_selector(f'tr[data-id="{markup_id}"] td:nth-child(5)',
                                     "td => td.querySelectorAll('*').length") == 1  # the span around the text

        # ---- a truncated record: its reason, and the failing byte marked.
        search(reason="TRUNCATED")
        assert listed() == cut
        rid = cut[0]
        status, shown = api(port, f"/api/dead-letters/{rid}")
        assert status == 200 and shown["record"], (status, shown)
        value = base64.b64decode(shown["record"]["value"]["base64"])
        assert value == truncated(100)
        mark = shown["failing_byte"]
        assert isinstance(mark, int) and 0 <= mark < len(value), shown
        page.click(f'tr[data-id="{rid}"] td.msg')
        record = page.locator('[data-testid="dlx-record"]')
        wait_for(lambda: record.get_attribute("data-state") == "shown" and record.get_attribute("data-id") == str(rid),
                 timeout=SLOW, message=lambda: f"the record view: {record.inner_text()}")
        assert page.inner_text('[data-testid="dlx-record-reason"]') == "TRUNCATED"
        assert page.inner_text('[data-testid="dlx-record-message"]') == shown["message"]
        assert "truncated" in shown["message"]
        assert page.inner_text('[data-testid="dlx-record-failing-byte"]') == str(mark)
        marked = page.locator('[data-testid="dlx-hex"] [data-testid="hex-failing-byte"]')
        assert marked.count() == 1
        assert marked.get_attribute("data-byte") == str(mark)
        assert marked.inner_text() == f"{value[mark]:02x}"
        # On the highlighted line of the dump that starts at its offset.
        line = page.locator('[data-testid="dlx-hex"] div.hl')
        assert line.count() == 1 and line.get_attribute("data-offset") == str(mark - mark % 16)
        assert marked.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(220, 38, 38)"
        headers = record.locator("tr[data-header]")
        classes = [tr.inner_text() for tr in headers.all()
                   if tr.get_attribute("data-header") == "__connect.errors.exception.class.name"]
        assert classes and classes[0].split()[-1] == "kjb.TRUNCATED", classes
        assert page.locator('[data-testid="dlx-record-decode-error"]').count() == 1  # still fails
        # The fields decoded before the failure: everything up to created_at.
        partial = shown["partial"]
        assert partial["order_id"] == 100 and partial["items"][0]["sku"] == "A-1" and "created_at" not in partial, shown
        assert json.loads(page.inner_text('[data-testid="dlx-record-partial"]')) == partial
        at = shown["partial_at"]
        assert at and at["field"] == "created_at", shown
        assert page.inner_text('[data-testid="dlx-record-partial-at"]') == f"(stopped at created_at, byte {at['byte']})"
        page.locator('[data-testid="dlx"]').screenshot(path=str(tmp_path / "dashboard-dlq-record.png"))

        # ---- an unknown-schema record decodes with today's configuration.
        search(reason="")
        page.click(f'tr[data-id="{unknown[0]}"] td.msg')
        wait_for(lambda: record.get_attribute("data-state") == "shown" and record.get_attribute("data-id") == str(unknown[0]),
                 timeout=SLOW, message=lambda: f"the record view: {record.inner_text()}")
        assert page.inner_text('[data-testid="dlx-record-reason"]') == "UNKNOWN_SCHEMA_ID"
        assert json.loads(page.inner_text('[data-testid="dlx-record-decoded"]'))["order_id"] == 0

        # ---- replay a selection of both reasons: the dry run first.
        chosen = unknown[:3] + cut[:2]
        for i in chosen:
            page.check(f'[data-testid="dlx-pick-{i}"]')
        assert page.get_attribute('[data-testid="dlx-selected"]', "data-value") == str(len(chosen))
        page.fill('[data-testid="token-input"]', TOKEN)
        jobs_before, before = note_jobs(db), statuses(db)
        page.click('[data-testid="dlx-replay-selected"]')
        counts = preview("replay")
        assert counts["UNKNOWN_SCHEMA_ID"] == {"records": "3", "replayed": "3", "already_present": "0",
                                               "still_failing": "0"}, counts
        assert counts["TRUNCATED"] == {"records": "2", "replayed": "0", "already_present": "0",
                                       "still_failing": "2"}, counts
        assert counts[""] == {"records": "5", "replayed": "3", "already_present": "0", "still_failing": "2"}, counts
        kinds = page.locator('[data-testid="dlx-preview"] tr[data-reason="UNKNOWN_SCHEMA_ID"] [data-kind]')
        assert kinds.count() == 1 and kinds.get_attribute("data-kind") == "note" and kinds.inner_text().endswith("3")
        assert (note_jobs(db), statuses(db)) == (jobs_before, before)  # a dry run writes nothing
        page.locator('[data-testid="dlx"]').screenshot(path=str(tmp_path / "dashboard-dlq-preview.png"))

        # Confirmed without the token: refused, nothing changed.
        page.click("#token-clear")
        page.click('[data-testid="dlx-confirm"]')
        ok, text = action_result()
        assert not ok and "401" in text and "admin token" in text, text
        assert (note_jobs(db), statuses(db)) == (jobs_before, before)
        page.fill('[data-testid="token-input"]', TOKEN)
        page.click('[data-testid="dlx-confirm"]')
        ok, text = action_result(before=text)
        assert ok and "replay started" in text, text
        wait_for(lambda: note_jobs(db) == jobs_before + 3, timeout=120,
                 message=lambda: f"the replayed jobs: {note_jobs(db)}\n{proc.log()[-3000:]}")
        wait_for(lambda: all(statuses(db)[i] == "replayed" for i in unknown[:3])
                 and all(statuses(db)[i] == "failing" for i in cut[:2]), timeout=120,
                 message=lambda: f"statuses after the replay: {statuses(db)}")
        wait_for(lambda: "finished" in page.inner_text('[data-testid="dlx-action-result"]'), timeout=SLOW,
                 message=lambda: f"the replay's end on the page: {page.inner_text('[data-testid=dlx-action-result]')}")
        assert {i: s for i, s in statuses(db).items() if i not in chosen} == {i: "dead" for i in before if i not in chosen}
        # The list shows the new statuses.
        wait_for(lambda: page.get_attribute(f'tr[data-id="{unknown[0]}"]', "data-status") == "replayed", timeout=SLOW,
                 message="the replayed status in the list")
        page.click('[data-testid="dlx-cancel"]')

        # ---- ignore everything a filter matches: dry run, refused, done.
        search(reason="TRUNCATED")
        assert listed() == cut
        page.click('[data-testid="dlx-ignore-filter"]')
        counts = preview("ignore")
        assert counts["TRUNCATED"] == {"records": "3", "ignored": "3", "kept": "0"}, counts
        assert counts[""] == {"records": "3", "ignored": "3", "kept": "0"}, counts
        before = statuses(db)
        page.click("#token-clear")
        page.click('[data-testid="dlx-confirm"]')
        ok, text = action_result()
        assert not ok and "401" in text, text
        assert statuses(db) == before
        page.fill('[data-testid="token-input"]', TOKEN)
        page.click('[data-testid="dlx-confirm"]')
        ok, text = action_result(before=text)
        assert ok and "3 dead letters marked ignored" in text, text
        after = statuses(db)
        assert {i: after[i] for i in cut} == {i: "ignored" for i in cut}, after
        assert {i: s for i, s in after.items() if i not in cut} == {i: s for i, s in before.items() if i not in cut}
        wait_for(lambda: {page.get_attribute(f'tr[data-id="{i}"]', "data-status") for i in cut} == {"ignored"},
                 timeout=SLOW, message="the ignored statuses in the list")

        # ---- the audit list, newest first: the ignore, then the replay.
        audit = page.locator('[data-testid="audit-body"] tr[data-audit-id]')

        def audited():
            got = [(tr.get_attribute("data-action"), tr.get_attribute("data-actor")) for tr in audit.all()]
            return got if len(got) >= 2 and got[0] == ("dlq.ignore", ACTOR) and ("replay", ACTOR) in got else None

        wait_for(audited, timeout=SLOW, message=lambda: f"the audit rows: {audit.all_inner_texts()}")
        ids = [int(tr.get_attribute("data-audit-id")) for tr in audit.all()]
        assert ids == sorted(ids, reverse=True)
        assert db.scalar("SELECT actor FROM kjb.audit WHERE action = 'dlq.ignore'") == ACTOR

        # Nothing from the server became markup, and the page raised nothing.
        assert page.evaluate("() => window.__xss") is None
        assert not page.locator('[data-testid="banner"]').is_visible()
        assert errors == []
        passed = True
    finally:
        # Kept whether or not the test passed; a failure to take it only
        # fails a test that passed otherwise.
        try:
            page.screenshot(path=str(shot), full_page=True, timeout=60_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for name in ("dashboard-dlq.png", "dashboard-dlq-record.png", "dashboard-dlq-preview.png"):
                if (tmp_path / name).exists():
                    shutil.copy(tmp_path / name, ARTIFACTS / name)
            print(f"screenshots in {tmp_path} and {ARTIFACTS}")
        except Exception as exc:  # noqa: BLE001
            if passed:
                raise
            print(f"could not take the screenshots: {exc}")
        finally:
            page.close()
    assert proc.stop() == 0
