"""`kjb jobs`: listing, showing, retrying, cancelling and pruning job rows
in a real PostgreSQL. Jobs are inserted with SQL in the states under test;
the assertions are on the rows afterwards, on stdout and on exit codes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from psycopg.types.json import Jsonb
from kjbtest import write_ingest_config


COLUMNS = ["id", "kind", "queue", "priority", "state", "args", "meta", "attempt", "max_attempts",
           "scheduled_at", "attempted_at", "finished_at", "created_at", "attempted_by", "errors",
           "unique_key", "source_topic", "source_partition", "source_offset",
           "ordering_key"]

NOW = datetime.now(timezone.utc)
LONG_AGO = NOW - timedelta(days=10)


@pytest.fixture
def jobs(run_kjb, db, tmp_path):
    """jobs(*args) runs `kjb jobs ARGS` against a migrated database."""
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", """
  { topic = "t"; schema = "order_created.avsc"; jobs = ( { kind = "k"; } ); }""")
    env = {"KJB_POSTGRES_CONNINFO": str(db)}
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr

    def run(*args: str):
        return run_kjb(["jobs", *args], cfg, env=env)

    return run


def insert(db, kind: str = "k", state: str = "available", **cols) -> int:
    """Inserts one job (dicts and lists as jsonb) and returns its id."""
    cols = {"kind": kind, "state": state, **cols}
    values = [Jsonb(v) if isinstance(v, (dict, list)) else v for v in cols.values()]
    return db.scalar(f"INSERT INTO kjb.jobs ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
                     " RETURNING id", *values)


def row(db, job_id: int) -> dict:
    rows = db.query(f"SELECT {', '.join(COLUMNS[:4])}, state::text, {', '.join(COLUMNS[5:])}"
                    " FROM kjb.jobs WHERE id = %s", job_id)
    assert len(rows) == 1, f"job {job_id}: {rows}"
    return dict(zip(COLUMNS, rows[0]))


def db_now(db) -> datetime:
    return db.scalar("SELECT now()")


def failed(attempt: int, error: str) -> dict:
    return {"attempt": attempt, "at": "2026-11-20T10:00:00Z", "error": error, "transient": True}


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]


def table(stdout: str) -> list[list[str]]:
    """The text table's rows (header first), split on runs of blanks."""
    return [ln.split() for ln in stdout.splitlines()]


# ---- ls -----------------------------------------------------------------


def test_ls_shows_newest_first_and_filters(jobs, db):
    a1 = insert(db, "alpha", "available")
    b1 = insert(db, "beta", "discarded", attempt=3, max_attempts=3, finished_at=LONG_AGO,
                errors=[failed(1, "first"), failed(2, "second"), failed(3, "boom:\nconnection refused " + "x" * 80)])
    a2 = insert(db, "alpha", "discarded", attempt=1, max_attempts=1, finished_at=LONG_AGO, queue="risk")
    b2 = insert(db, "beta", "completed", attempt=1, finished_at=LONG_AGO)
    a3 = insert(db, "alpha", "running", attempt=2, max_attempts=5)

    res = jobs("ls")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    rows = table(res.stdout)
    assert rows[0] == ["ID", "KIND", "QUEUE", "STATE", "ATTEMPT", "SCHEDULED_AT", "ERROR"]
    assert [int(r[0]) for r in rows[1:]] == [a3, b2, a2, b1, a1]
    # Columns are aligned: every row's state starts where the header's does.
    col = lines[0].index("STATE")
    assert all(ln[col:].split()[0] in ("running", "completed", "discarded", "available") for ln in lines[1:])
    by_id = {int(r[0]): r for r in rows[1:]}
    assert by_id[a3][1:5] == ["alpha", "default", "running", "2/5"]
    assert by_id[a2][1:5] == ["alpha", "risk", "discarded", "1/1"]
    assert by_id[a1][5].endswith("Z") and len(by_id[a1][5]) == 20  # 2026-11-21T10:00:00Z
    assert len(by_id[a1]) == 6  # no error yet
    assert not any(ln.endswith(" ") for ln in lines)
    # The last error only, on one line and shortened.
    b1_line = next(ln for ln in lines if ln.split()[0] == str(b1))
    error = b1_line[lines[0].index("ERROR"):]
    assert error.startswith("boom: connection refused xxx") and error.endswith("...")
    assert len(error) == 60

    res = jobs("ls", "--state", "discarded")
    assert res.returncode == 0, res.stderr
    assert [int(r[0]) for r in table(res.stdout)[1:]] == [a2, b1]

    res = jobs("ls", "--kind", "alpha")
    assert [int(r[0]) for r in table(res.stdout)[1:]] == [a3, a2, a1]

    res = jobs("ls", "--kind", "beta", "--state", "completed")
    assert [int(r[0]) for r in table(res.stdout)[1:]] == [b2]

    res = jobs("ls", "--limit", "2")
    assert [int(r[0]) for r in table(res.stdout)[1:]] == [a3, b2]

    res = jobs("ls", "--kind", "nobody")
    assert res.returncode == 0 and table(res.stdout) == [rows[0]]


def test_ls_limit_defaults_to_50(jobs, db):
    db.query("INSERT INTO kjb.jobs (kind) SELECT 'bulk' FROM generate_series(1, 60)")
    res = jobs("ls")
    assert res.returncode == 0, res.stderr
    ids = [int(r[0]) for r in table(res.stdout)[1:]]
    assert ids == list(range(60, 10, -1))


def test_ls_json_has_every_column_as_json(jobs, db):
    errs = [failed(1, "timeout")]
    j1 = insert(db, "send", "retryable", args={"order_id": 5, "to": ["a@x.example"], "big": 2**70},
                meta={"topic": "orders", "partition": 2, "offset": 41, "headers": {"h": "v"}},
                attempt=1, max_attempts=4, errors=errs, attempted_by="node-1", attempted_at=LONG_AGO,
                unique_key="order-5", source_topic="orders", source_partition=2, source_offset=41)
    j2 = insert(db, "other", "available")

    res = jobs("ls", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert isinstance(doc, list) and [o["id"] for o in doc] == [j2, j1]
    for obj in doc:
        assert list(obj) == COLUMNS
    o = doc[1]
    # Beyond 64 bits, jansson reads integers as doubles: still an object.
    assert o["args"] == {"order_id": 5.0, "to": ["a@x.example"], "big": float(2**70)}
    assert o["meta"] == {"topic": "orders", "partition": 2, "offset": 41, "headers": {"h": "v"}}
    assert o["errors"] == errs
    assert (o["kind"], o["queue"], o["priority"], o["state"]) == ("send", "default", 0, "retryable")
    assert (o["attempt"], o["max_attempts"], o["attempted_by"], o["unique_key"]) == (1, 4, "node-1", "order-5")
    assert (o["source_topic"], o["source_partition"], o["source_offset"]) == ("orders", 2, 41)
    assert o["finished_at"] is None and doc[0]["attempted_by"] is None and doc[0]["source_offset"] is None
    assert datetime.fromisoformat(o["attempted_at"]) == LONG_AGO
    assert o["created_at"].endswith("Z")
    assert doc[0]["args"] == {} and doc[0]["errors"] == []

    res = jobs("ls", "--json", "--state", "completed")
    assert res.returncode == 0 and json.loads(res.stdout) == []


def test_ls_usage_errors(jobs):
    res = jobs("ls", "--state", "sleeping")
    assert res.returncode == 2
    assert one_line(res.stderr).startswith('kjb: jobs ls: unknown state "sleeping" (expected available, ')
    res = jobs("ls", "--limit", "0")
    assert res.returncode == 2 and 'bad --limit "0"' in res.stderr
    res = jobs("ls", "--older-than", "1d")
    assert res.returncode == 2 and "--older-than does not apply" in res.stderr
    res = jobs("ls", "42")
    assert res.returncode == 2 and 'unexpected argument "42"' in res.stderr
    res = jobs("frobnicate")
    assert res.returncode == 2 and 'unknown subcommand "frobnicate"' in res.stderr


# ---- show ---------------------------------------------------------------


def test_show_text_json_and_unknown_id(jobs, db):
    j = insert(db, "send", "discarded", args={"order_id": 5, "lines": [1, 2]}, meta={"topic": "orders"},
               attempt=2, max_attempts=2, finished_at=LONG_AGO, errors=[failed(1, "e1"), failed(2, "e2")])

    res = jobs("show", str(j))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    fields = {ln.split()[0]: ln.split(None, 1)[1] if len(ln.split()) > 1 else "" for ln in out.splitlines()
              if ln and not ln[0].isspace()}
    assert list(fields) == COLUMNS
    assert fields["id"] == str(j) and fields["kind"] == "send" and fields["state"] == "discarded"
    assert fields["attempt"] == "2" and fields["max_attempts"] == "2"
    assert fields["attempted_by"] == "-" and fields["unique_key"] == "-"
    assert datetime.fromisoformat(fields["finished_at"]) == LONG_AGO
    # args pretty-printed over several lines, continuation lines indented.
    args_at = out.index("args")
    args_text = out[args_at + len("args"):out.index("\nmeta")]
    assert json.loads(args_text) == {"order_id": 5, "lines": [1, 2]}
    assert args_text.count("\n") >= 3
    errors_text = out[out.index("\nerrors") + len("\nerrors"):out.index("\nunique_key")]
    assert [e["error"] for e in json.loads(errors_text)] == ["e1", "e2"]

    res = jobs("show", str(j), "--json")
    assert res.returncode == 0, res.stderr
    obj = json.loads(res.stdout)
    assert list(obj) == COLUMNS
    assert obj["id"] == j and obj["args"] == {"order_id": 5, "lines": [1, 2]}
    assert obj["meta"] == {"topic": "orders"} and len(obj["errors"]) == 2
    listed = json.loads(jobs("ls", "--json").stdout)
    assert listed == [obj]

    res = jobs("show", str(j + 1000))
    assert res.returncode == 1 and res.stdout == ""
    assert one_line(res.stderr) == f"kjb: jobs show: no job {j + 1000}"

    res = jobs("show")
    assert res.returncode == 2 and "expected a job id" in res.stderr
    res = jobs("show", "-5")
    assert res.returncode == 2
    res = jobs("show", "12x")
    assert res.returncode == 2 and 'bad job id "12x"' in res.stderr


# ---- retry --------------------------------------------------------------


def test_retry_by_id_gives_an_exhausted_job_one_more_attempt(jobs, db):
    errs = [failed(1, "e1"), failed(2, "e2"), failed(3, "e3")]
    j = insert(db, "send", "discarded", attempt=3, max_attempts=3, finished_at=LONG_AGO,
               scheduled_at=LONG_AGO, attempted_at=LONG_AGO, errors=errs)
    r = insert(db, "send", "retryable", attempt=1, max_attempts=5, scheduled_at=NOW + timedelta(hours=1))
    other = insert(db, "send", "discarded", attempt=3, max_attempts=3, finished_at=LONG_AGO)

    before = db_now(db)
    res = jobs("retry", str(j))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "retried 1 job\n"
    after = row(db, j)
    assert after["state"] == "available"
    assert (after["attempt"], after["max_attempts"]) == (3, 4)
    assert after["finished_at"] is None
    assert before - timedelta(seconds=1) <= after["scheduled_at"] <= db_now(db)
    assert after["errors"] == errs and after["attempted_at"] == LONG_AGO

    # Attempts left: max_attempts stays; a later scheduled_at becomes now.
    res = jobs("retry", str(r))
    assert res.returncode == 0 and res.stdout == "retried 1 job\n"
    after = row(db, r)
    assert (after["state"], after["attempt"], after["max_attempts"]) == ("available", 1, 5)
    assert after["scheduled_at"] <= db_now(db)

    assert row(db, other)["state"] == "discarded"


def test_retry_by_state_touches_only_that_state_and_kind(jobs, db):
    a = [insert(db, "alpha", "discarded", attempt=2, max_attempts=2, finished_at=LONG_AGO) for _ in range(3)]
    b = [insert(db, "beta", "discarded", attempt=2, max_attempts=2, finished_at=LONG_AGO) for _ in range(2)]
    a_cancelled = insert(db, "alpha", "cancelled", attempt=0, max_attempts=20, finished_at=LONG_AGO)
    a_completed = insert(db, "alpha", "completed", attempt=1, finished_at=LONG_AGO)

    res = jobs("retry", "--state", "discarded", "--kind", "alpha")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "retried 3 jobs\n"
    for j in a:
        after = row(db, j)
        assert (after["state"], after["attempt"], after["max_attempts"], after["finished_at"]) == (
            "available", 2, 3, None)
    for j in b:
        assert row(db, j)["state"] == "discarded"
    assert row(db, a_cancelled)["state"] == "cancelled"
    assert row(db, a_completed)["state"] == "completed"

    res = jobs("retry", "--state", "discarded", "--kind", "alpha")
    assert res.returncode == 0 and res.stdout == "retried 0 jobs\n"

    res = jobs("retry", "--state", "cancelled")
    assert res.returncode == 0 and res.stdout == "retried 1 job\n"
    after = row(db, a_cancelled)
    assert (after["state"], after["max_attempts"]) == ("available", 20)

    res = jobs("retry", "--state", "discarded")
    assert res.returncode == 0 and res.stdout == "retried 2 jobs\n"
    assert {row(db, j)["state"] for j in b} == {"available"}
    assert row(db, a_completed)["state"] == "completed"


def test_retry_by_state_walks_past_one_batch(jobs, db):
    db.query("INSERT INTO kjb.jobs (kind, state, attempt, max_attempts, finished_at)"
             " SELECT 'bulk', 'discarded', 1, 1, now() - interval '1 day' FROM generate_series(1, 10050)")
    res = jobs("retry", "--state", "discarded", "--kind", "bulk")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "retried 10050 jobs\n"
    assert db.query("SELECT state::text, max_attempts, count(*) FROM kjb.jobs GROUP BY 1, 2") == [
        ("available", 2, 10050)]


def test_retry_refuses_running_completed_and_bad_requests(jobs, db):
    running = insert(db, "k", "running", attempt=1, attempted_by="node-1", attempted_at=NOW)
    completed = insert(db, "k", "completed", attempt=1, finished_at=LONG_AGO)
    before = {j: row(db, j) for j in (running, completed)}

    res = jobs("retry", str(running))
    assert res.returncode == 1 and res.stdout == ""
    assert one_line(res.stderr) == f"kjb: jobs retry: cannot retry job {running}: it is running"
    res = jobs("retry", str(completed))
    assert res.returncode == 1
    assert one_line(res.stderr) == f"kjb: jobs retry: cannot retry job {completed}: it is completed"
    assert {j: row(db, j) for j in (running, completed)} == before

    res = jobs("retry", str(completed + 1000))
    assert res.returncode == 1 and one_line(res.stderr) == f"kjb: jobs retry: no job {completed + 1000}"

    for state in ("completed", "running", "available"):
        res = jobs("retry", "--state", state)
        assert res.returncode == 2, (state, res.stderr)
        assert f"cannot retry {state} jobs (only discarded, cancelled or retryable)" in res.stderr
    res = jobs("retry", "--state", "bogus")
    assert res.returncode == 2 and 'unknown state "bogus"' in res.stderr
    res = jobs("retry")
    assert res.returncode == 2 and "expected a job id or --state" in res.stderr
    res = jobs("retry", str(running), "--state", "discarded")
    assert res.returncode == 2 and "unexpected argument" in res.stderr
    res = jobs("retry", str(running), "--kind", "k")
    assert res.returncode == 2 and "--kind needs --state" in res.stderr
    assert {j: row(db, j) for j in (running, completed)} == before


# ---- cancel -------------------------------------------------------------


def test_cancel_available_running_and_final(jobs, db):
    available = insert(db, "k", "available")
    running = insert(db, "k", "running", attempt=1, attempted_by="node-1", attempted_at=NOW)
    scheduled = insert(db, "k", "scheduled", scheduled_at=NOW + timedelta(days=1))
    completed = insert(db, "k", "completed", attempt=1, finished_at=LONG_AGO)
    discarded = insert(db, "k", "discarded", attempt=1, max_attempts=1, finished_at=LONG_AGO)

    for j in (available, running, scheduled):
        before = db_now(db)
        res = jobs("cancel", str(j))
        assert res.returncode == 0, res.stderr
        assert res.stdout == f"cancelled job {j}\n"
        after = row(db, j)
        assert after["state"] == "cancelled"
        assert before - timedelta(seconds=1) <= after["finished_at"] <= db_now(db)
    assert row(db, running)["attempted_by"] == "node-1"

    for j, state in ((completed, "completed"), (discarded, "discarded"), (available, "cancelled")):
        before = row(db, j)
        res = jobs("cancel", str(j))
        assert res.returncode == 1 and res.stdout == ""
        assert one_line(res.stderr) == f"kjb: jobs cancel: cannot cancel job {j}: it is already {state}"
        assert row(db, j) == before

    res = jobs("cancel", str(discarded + 1000))
    assert res.returncode == 1 and one_line(res.stderr) == f"kjb: jobs cancel: no job {discarded + 1000}"


# ---- prune --------------------------------------------------------------


def test_prune_deletes_exactly_the_old_final_jobs(jobs, db):
    old = NOW - timedelta(days=3)
    recent = NOW - timedelta(hours=1)
    gone = [insert(db, "k", "completed", attempt=1, finished_at=old),
            insert(db, "k", "discarded", attempt=1, max_attempts=1, finished_at=old),
            insert(db, "other", "cancelled", finished_at=old)]
    kept = [insert(db, "k", "completed", attempt=1, finished_at=recent),
            insert(db, "k", "cancelled", finished_at=recent),
            insert(db, "k", "running", attempt=1, attempted_at=old, scheduled_at=old, created_at=old),
            insert(db, "k", "available", scheduled_at=old, created_at=old),
            # Not final, whatever finished_at says (a retried row keeps none).
            insert(db, "k", "retryable", attempt=1, finished_at=old),
            insert(db, "k", "scheduled", finished_at=old)]

    res = jobs("prune", "--older-than", "1d")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "pruned 3 jobs\n"
    assert sorted(r[0] for r in db.query("SELECT id FROM kjb.jobs")) == sorted(kept)

    res = jobs("prune", "--older-than", "1d")
    assert res.returncode == 0 and res.stdout == "pruned 0 jobs\n"

    res = jobs("prune", "--older-than", "30m")
    assert res.returncode == 0 and res.stdout == "pruned 2 jobs\n"
    assert sorted(r[0] for r in db.query("SELECT id FROM kjb.jobs")) == sorted(kept[2:])


def test_prune_walks_past_one_batch(jobs, db):
    db.query("INSERT INTO kjb.jobs (kind, state, finished_at)"
             " SELECT 'bulk', 'completed', now() - interval '2 days' FROM generate_series(1, 20500)")
    keep = insert(db, "bulk", "completed", finished_at=NOW)
    res = jobs("prune", "--older-than", "1d")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "pruned 20500 jobs\n"
    assert [r[0] for r in db.query("SELECT id FROM kjb.jobs")] == [keep]


@pytest.mark.parametrize("args, message", [
    (["--older-than", "soon"], 'bad --older-than "soon" (expected a duration such as 30s, 12h or 7d)'),
    (["--older-than", "-1d"], 'bad --older-than "-1d"'),
    (["--older-than", "7"], 'bad --older-than "7"'),
    ([], "--older-than is required"),
    (["--older-than", "1d", "--state", "completed"], "--state does not apply here"),
])
def test_prune_usage_errors(jobs, db, args, message):
    j = insert(db, "k", "completed", finished_at=LONG_AGO)
    res = jobs("prune", *args)
    assert res.returncode == 2
    assert res.stderr.splitlines()[0].startswith(f"kjb: jobs prune: {message}")
    assert res.stdout == ""
    assert db.scalar("SELECT count(*) FROM kjb.jobs WHERE id = %s", j) == 1


# ---- common -------------------------------------------------------------


def test_help_and_unreachable_database(run_kjb, tmp_path):
    res = run_kjb(["jobs", "--help"])
    assert res.returncode == 0 and res.stdout.startswith("usage: kjb jobs ls ")
    for sub in ("ls", "show", "retry", "cancel", "prune"):
        res = run_kjb(["jobs", sub, "--help"])
        assert res.returncode == 0 and res.stdout.startswith(f"usage: kjb jobs {sub}"), sub
    res = run_kjb(["jobs"])
    assert res.returncode == 2 and "expected a subcommand" in res.stderr

    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", """
  { topic = "t"; schema = "order_created.avsc"; jobs = ( { kind = "k"; } ); }""")
    env = {"KJB_POSTGRES_CONNINFO": "host=127.0.0.1 port=1 connect_timeout=2"}
    for args in (["ls"], ["show", "1"], ["retry", "1"], ["cancel", "1"], ["prune", "--older-than", "1d"]):
        res = run_kjb(["jobs", *args], cfg, env=env)
        assert res.returncode == 1, (args, res.stderr)
        assert one_line(res.stderr).startswith(f"kjb: jobs {args[0]}: could not connect to postgresql: ")
        assert res.stdout == ""
