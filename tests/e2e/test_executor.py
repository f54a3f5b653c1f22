"""Executors end to end: `kjb run --role executor` against the real
PostgreSQL, running jobs inserted into kjb.jobs with the http handler
against a local HTTP server that fails on purpose, and with exec and the
example plugin. Assertions are on rows (state, attempt, errors,
scheduled_at) and on the requests the server saw, with their times."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest

from kjbtest import REPO, wait_for

Policy = Callable[[int, int, int], tuple[int, dict[str, str], float]]


class Downstream:
    """An HTTP server on 127.0.0.1 that answers each POST by `policy(job_id,
    attempt, n)` -> (status, headers, delay seconds), n counting requests
    for that job from 1, and records (job id, attempt, start, end, body)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                start = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                job = int(self.headers["X-Kjb-Job-Id"])
                attempt = int(self.headers["X-Kjb-Attempt"])
                with outer.lock:
                    n = 1 + sum(1 for r in outer.requests if r["job"] == job)
                    rec = {"job": job, "attempt": attempt, "start": start, "end": None,
                           "body": body, "key": self.headers.get("Idempotency-Key")}
                    outer.requests.append(rec)
                status, headers, delay = outer.policy(job, attempt, n)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"no" if status >= 300 else b"ok")
                except OSError:
                    pass
                rec["end"] = time.monotonic()

        # Executors open many connections at once; the default backlog of 5
        # would refuse some.
        ThreadingHTTPServer.request_queue_size = 128
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, job: int) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["job"] == job]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def downstream():
    servers: list[Downstream] = []

    def make(policy: Policy) -> Downstream:
        s = Downstream(policy)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


# Sleeps on this kind of machine (a virtual machine on a busy host) can
# overshoot by a second: leases are generous so that a live node is never
# taken for dead, and rate tests measure long windows.
EXECUTOR = {"poll_interval": "200ms", "heartbeat": "500ms", "lease": "8s", "shutdown_timeout": "5s"}


def write_config(path: Path, handlers: str, **executor: str) -> Path:
    settings = " ".join(f'{k} = {json.dumps(v) if isinstance(v, str) else v};'
                        for k, v in {**EXECUTOR, **executor}.items())
    path.write_text(f"""
kafka = {{ brokers = "127.0.0.1:1"; group = "exec"; }};
postgres = {{ conninfo = "set-by-env"; }};
executor = {{ {settings} }};
topics = ( {{ topic = "unused"; schema = "order_created.avsc"; jobs = ( {{ kind = "unused"; }} ); }} );
handlers = ( {handlers} );
""")
    return path


def insert_jobs(db, kind: str, n: int, max_attempts: int = 20, args: str = "jsonb_build_object('i', g)") -> list[int]:
    rows = db.query(f"INSERT INTO kjb.jobs (kind, args, max_attempts) SELECT %s, {args}, %s"
                    " FROM generate_series(1, %s) g RETURNING id", kind, max_attempts, n)
    return sorted(r[0] for r in rows)


def job(db, jid: int) -> dict:
    row = db.query("SELECT state::text, attempt, max_attempts, errors, attempted_by,"
                   " extract(epoch FROM scheduled_at - now()) FROM kjb.jobs WHERE id = %s", jid)[0]
    return dict(zip(("state", "attempt", "max_attempts", "errors", "attempted_by", "due_in"), row))


def states(db, kind: str) -> dict[str, int]:
    return dict(db.query("SELECT state::text, count(*) FROM kjb.jobs WHERE kind = %s GROUP BY 1", kind))


def migrated(run_kjb, cfg, db) -> dict[str, str]:
    env = {"KJB_POSTGRES_CONNINFO": str(db)}
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr
    return env


def test_transient_failures_retry_with_backoff_and_record_each_error(db, run_kjb, start_kjb, downstream,
                                                                     tmp_path):
    # Fails twice with 503, then succeeds.
    ds = downstream(lambda job, attempt, n: (503, {}, 0) if n <= 2 else (200, {}, 0))
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "hook"; type = "http"; url = "{ds.url}"; timeout = "5s";
     retry = {{ base = "400ms"; max = "10s"; jitter = "none"; }}; }}""")
    env = migrated(run_kjb, cfg, db)
    [jid] = insert_jobs(db, "hook", 1, args="'{\"order_id\": 42, \"note\": \"Zoë\"}'::jsonb")
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: job(db, jid)["state"] == "completed", timeout=60, message=lambda: proc.log())
    j = job(db, jid)
    assert j["attempt"] == 3
    assert [(e["attempt"], e["transient"]) for e in j["errors"]] == [(1, True), (2, True)]
    assert all(e["error"].startswith("http 503") for e in j["errors"]), j["errors"]
    reqs = ds.of(jid)
    assert [r["attempt"] for r in reqs] == [1, 2, 3]
    # Exponential backoff without jitter: 0.4 s, then 0.8 s, plus the
    # time to notice (polling every 0.2 s) on a machine that may be busy.
    gaps = [b["start"] - a["start"] for a, b in zip(reqs, reqs[1:])]
    assert 0.4 <= gaps[0] < 0.4 + 5, gaps
    assert 0.8 <= gaps[1] < 0.8 + 5, gaps
    assert json.loads(reqs[0]["body"]) == {"order_id": 42, "note": "Zoë"}
    assert reqs[0]["key"] == f"kjb-{jid}"
    assert proc.stop() == 0


def test_retry_after_wins_over_backoff(db, run_kjb, start_kjb, downstream, tmp_path):
    ds = downstream(lambda job, attempt, n: (429, {"Retry-After": "2"}, 0) if n == 1 else (200, {}, 0))
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "hook"; type = "http"; url = "{ds.url}";
     retry = {{ base = "50ms"; max = "10s"; jitter = "none"; }}; }}""")
    env = migrated(run_kjb, cfg, db)
    [jid] = insert_jobs(db, "hook", 1)
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: job(db, jid)["state"] == "completed", timeout=60, message=lambda: proc.log())
    # Scheduled by the hint, not by the 50 ms backoff: 2 s after the
    # failure was recorded (both in the same statement; completing the
    # retry leaves scheduled_at as it was).
    delay = db.scalar("SELECT extract(epoch FROM scheduled_at - (errors->0->>'at')::timestamptz)"
                      " FROM kjb.jobs WHERE id = %s", jid)
    assert float(delay) == 2.0, delay
    reqs = ds.of(jid)
    assert len(reqs) == 2 and reqs[1]["start"] - reqs[0]["start"] >= 2.0
    assert job(db, jid)["errors"][0]["error"].startswith("http 429")
    assert proc.stop() == 0


def test_permanent_failure_and_exhausted_attempts_discard(db, run_kjb, start_kjb, downstream, tmp_path):
    gone = downstream(lambda job, attempt, n: (404, {}, 0))
    down = downstream(lambda job, attempt, n: (500, {}, 0))
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "gone"; type = "http"; url = "{gone.url}"; }},
  {{ kind = "down"; type = "http"; url = "{down.url}";
     retry = {{ base = "100ms"; max = "200ms"; jitter = "none"; }}; }}""")
    env = migrated(run_kjb, cfg, db)
    [g] = insert_jobs(db, "gone", 1)
    [d] = insert_jobs(db, "down", 1, max_attempts=3)
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: job(db, g)["state"] == "discarded" and job(db, d)["state"] == "discarded",
             timeout=60, message=lambda: f"{job(db, g)} {job(db, d)}\n{proc.log()}")
    jg, jd = job(db, g), job(db, d)
    # A 404 is never retried.
    assert jg["attempt"] == 1 and len(gone.of(g)) == 1
    assert [(e["attempt"], e["transient"]) for e in jg["errors"]] == [(1, False)]
    assert jg["errors"][0]["error"].startswith("http 404")
    # A 500 is retried until max_attempts, each failure recorded.
    assert jd["attempt"] == 3 and len(down.of(d)) == 3
    assert [(e["attempt"], e["transient"]) for e in jd["errors"]] == [(1, True), (2, True), (3, True)]
    finished = db.scalar("SELECT count(*) FROM kjb.jobs WHERE finished_at IS NOT NULL")
    assert finished == 2
    assert proc.stop() == 0


def test_exec_and_plugin_handlers(db, run_kjb, start_kjb, tmp_path, kjb_bin):
    plugin = kjb_bin.parent / "libkjb_example_handler.so"
    assert plugin.is_file(), f"{plugin} was not built"
    out = tmp_path / "seen.jsonl"
    script = tmp_path / "handler.py"
    script.write_text(
        "import json, os, sys\n"
        "args = json.load(sys.stdin)\n"
        f"open({str(out)!r}, 'a').write(json.dumps([os.environ['KJB_JOB_ID'], args]) + '\\n')\n"
        "sys.exit(args.get('exit', 0))\n")
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "run"; type = "exec"; command = [ "/usr/bin/python3", "{script}" ];
     retry = {{ base = "100ms"; max = "100ms"; jitter = "none"; }}; }},
  {{ kind = "check"; type = "plugin"; plugin = "{plugin}"; }}""")
    env = migrated(run_kjb, cfg, db)
    ok = insert_jobs(db, "run", 2, args="jsonb_build_object('i', g)")
    [tmp] = insert_jobs(db, "run", 1, max_attempts=2, args="'{\"exit\": 75}'::jsonb")
    [perm] = insert_jobs(db, "run", 1, args="'{\"exit\": 3}'::jsonb")
    [good] = insert_jobs(db, "check", 1, args="'{\"order_id\": 1}'::jsonb")
    [bad] = insert_jobs(db, "check", 1, args="'{\"x\": 1}'::jsonb")
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    final = ("completed", "discarded")
    wait_for(lambda: all(job(db, j)["state"] in final for j in ok + [tmp, perm, good, bad]), timeout=60,
             message=lambda: proc.log())
    assert [job(db, j)["state"] for j in ok] == ["completed", "completed"]
    assert job(db, tmp)["state"] == "discarded" and job(db, tmp)["attempt"] == 2
    assert [e["transient"] for e in job(db, tmp)["errors"]] == [True, True]
    assert job(db, perm)["attempt"] == 1 and job(db, perm)["errors"][0]["transient"] is False
    assert "exited 3" in job(db, perm)["errors"][0]["error"]
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(int(i) for i, a in seen if "i" in a) == ok
    assert job(db, good)["state"] == "completed"
    assert job(db, bad)["state"] == "discarded" and job(db, bad)["errors"][0]["transient"] is False
    assert proc.stop() == 0


def test_exec_never_uses_a_shell(db, run_kjb, start_kjb, tmp_path):
    """Shell syntax in the program's path, in its configured arguments, in
    the kind and in the job's args is never interpreted: the program gets
    its argv as configured and the args JSON on stdin byte for byte, and
    none of the commands hidden in them runs."""
    marks = tmp_path / "marks"
    marks.mkdir()
    canary = tmp_path / "canary"
    canary.write_text("still here")

    def touch(n: int) -> str:
        return f"touch {marks / f'm{n}'}"

    out = tmp_path / "seen.json"
    program = tmp_path / "handlers dir $(x)" / "run me; now `y`.py"
    program.parent.mkdir()
    program.write_text(
        "#!/usr/bin/python3\n"
        "import json, os, sys\n"
        "data = sys.stdin.buffer.read()\n"
        f"open({str(out)!r}, 'w').write(json.dumps({{'argv': sys.argv, 'stdin': data.hex(),"
        " 'kind': os.environ['KJB_JOB_KIND']}))\n")
    program.chmod(0o755)
    argv = [f"$({touch(1)})", f"; {touch(2)}", f"`{touch(3)}`", f"| {touch(4)}", f"&& {touch(5)}",
            f"\n{touch(6)}", "*", "'\"", f"; rm -f {canary}"]
    kind = f"run $({touch(7)}); {touch(8)}"
    command = ", ".join(json.dumps(a) for a in [str(program), *argv])
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = {json.dumps(kind)}; type = "exec"; command = [ {command} ]; }}""")
    env = migrated(run_kjb, cfg, db)
    args = {"cmd": f"$({touch(9)})", "semi": f"; {touch(10)}; rm -f {canary}", "tick": f"`{touch(11)}`",
            "pipe": f"| {touch(12)}", "nl": f"x\n{touch(13)}", "quotes": "'\"\\", "zoë": "✓"}
    [jid] = db.query("INSERT INTO kjb.jobs (kind, args) VALUES (%s, %s::jsonb) RETURNING id",
                     kind, json.dumps(args))[0]
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: job(db, jid)["state"] == "completed", timeout=60, message=lambda: proc.log()[-3000:])
    assert proc.stop() == 0
    seen = json.loads(out.read_text())
    assert seen["argv"] == [str(program), *argv]
    stored = db.scalar("SELECT args::text FROM kjb.jobs WHERE id = %s", jid)
    assert bytes.fromhex(seen["stdin"]) == stored.encode()
    assert json.loads(bytes.fromhex(seen["stdin"])) == args
    assert seen["kind"] == kind
    assert list(marks.iterdir()) == []
    assert canary.read_text() == "still here"


# Buckets hold this many seconds of tokens, so that a stall of the whole
# machine (this kind of virtual machine freezes for a second or two now
# and then) loses none; the window is long so that a stall at either end
# moves the measure by a few percent at most.
BURST_SECONDS = 5
WINDOW_SECONDS = 30


def rate_of(starts: list[float], burst: int) -> float:
    """The rate the bucket allowed: it starts full (`burst` jobs at once)
    and refills from the first start, so every job past the burst took one
    refilled token."""
    starts = sorted(starts)
    return (len(starts) - burst) / (starts[-1] - starts[0])


def claim_times(db, kind: str) -> list[float]:
    """When each job of kind was claimed (attempted_at, the database's
    clock), in seconds."""
    return [r[0] for r in db.query("SELECT extract(epoch FROM attempted_at)::float8 FROM kjb.jobs"
                                   " WHERE kind = %s AND attempted_at IS NOT NULL", kind)]


# The rate tests run the log handler, so that what is measured is the
# limiter and not an HTTP server in this test process.
def test_local_rate_limit_holds(db, run_kjb, start_kjb, tmp_path):
    burst = BURST_SECONDS * 20
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "slow"; type = "log"; concurrency = 32;
     rate_limit = {{ rate = 20.0; burst = {burst}; scope = "local"; }}; }}""")
    env = migrated(run_kjb, cfg, db)
    n = burst + 20 * WINDOW_SECONDS
    insert_jobs(db, "slow", n)
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: states(db, "slow").get("completed") == n, timeout=WINDOW_SECONDS + 90,
             message=lambda: proc.log()[-3000:])
    rate = rate_of(claim_times(db, "slow"), burst)
    print(f"local rate limit 20/s: measured {rate:.2f}/s over {n - burst} jobs past the burst")
    assert 18 <= rate <= 22, rate  # within ±10 %
    assert proc.stop() == 0


def test_cluster_rate_limit_holds_across_three_processes(db, run_kjb, start_kjb, tmp_path):
    burst = BURST_SECONDS * 30
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "shared"; type = "log"; concurrency = 32;
     rate_limit = {{ rate = 30.0; burst = {burst}; scope = "cluster"; }}; }}""")
    env = migrated(run_kjb, cfg, db)
    procs = [start_kjb(["run", "--role", "executor"], cfg, env=env, name=f"exec{i}") for i in range(3)]
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.nodes") == 3, timeout=60,
             message=lambda: "\n".join(p.log() for p in procs))
    n = burst + 30 * WINDOW_SECONDS
    insert_jobs(db, "shared", n)
    wait_for(lambda: states(db, "shared").get("completed") == n, timeout=WINDOW_SECONDS + 90,
             message=lambda: str(states(db, "shared")))
    rate = rate_of(claim_times(db, "shared"), burst)
    nodes = db.query("SELECT attempted_by, count(*) FROM kjb.jobs GROUP BY 1")
    print(f"cluster rate limit 30/s over 3 processes: measured {rate:.2f}/s; jobs per node {nodes}")
    assert len(nodes) == 3, nodes  # all three took part
    assert 27 <= rate <= 33, rate  # within ±10 %
    for p in procs:
        assert p.stop() == 0


def test_breaker_opens_probes_and_closes(db, run_kjb, start_kjb, downstream, tmp_path):
    healthy = threading.Event()
    ds = downstream(lambda job, attempt, n: (200, {}, 0) if healthy.is_set() else (503, {}, 0))
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "fragile"; type = "http"; url = "{ds.url}"; concurrency = 1;
     retry = {{ base = "50ms"; max = "50ms"; jitter = "none"; }};
     breaker = {{ failure_ratio = 0.5; min_calls = 4; open_for = "2s"; }}; }}""")
    env = migrated(run_kjb, cfg, db)
    insert_jobs(db, "fragile", 20)
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    # Four failures fill the window and open the breaker.
    wait_for(lambda: len(ds.requests) >= 4, timeout=60, message=lambda: proc.log())
    time.sleep(1.0)
    opened = len(ds.requests)
    assert opened == 4, f"{opened} calls, expected the breaker to stop at 4"
    # open_for passes: exactly one probe, which fails and reopens it.
    wait_for(lambda: len(ds.requests) == 5, timeout=10, message=lambda: proc.log())
    gap = ds.requests[4]["start"] - ds.requests[3]["start"]
    assert gap >= 1.9, gap
    time.sleep(1.0)
    assert len(ds.requests) == 5
    # The downstream recovers; the next probe closes it and work resumes.
    healthy.set()
    wait_for(lambda: states(db, "fragile").get("completed") == 20, timeout=60,
             message=lambda: f"{states(db, 'fragile')}\n{proc.log()}")
    assert "breaker of \"fragile\" is open" in proc.log()
    assert "breaker of \"fragile\" is closed" in proc.log()
    assert proc.stop() == 0


def test_sigkill_mid_job_is_rescued_and_completed_by_another_node(db, run_kjb, start_kjb, downstream,
                                                                   tmp_path):
    # The first attempt hangs; later ones succeed at once.
    ds = downstream(lambda job, attempt, n: (200, {}, 30 if attempt == 1 else 0))
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "hook"; type = "http"; url = "{ds.url}"; timeout = "60s"; }}""")
    env = migrated(run_kjb, cfg, db)
    [jid] = insert_jobs(db, "hook", 1)
    a = start_kjb(["run", "--role", "executor"], cfg, env=env, name="a")
    wait_for(lambda: job(db, jid)["state"] == "running", timeout=60, message=lambda: a.log())
    node_a = job(db, jid)["attempted_by"]
    a.kill()
    b = start_kjb(["run", "--role", "executor"], cfg, env=env, name="b")
    wait_for(lambda: job(db, jid)["state"] == "completed", timeout=60, message=lambda: b.log())
    j = job(db, jid)
    assert j["attempt"] == 2 and j["attempted_by"] != node_a
    assert [(e["attempt"], e["transient"]) for e in j["errors"]] == [(1, True)]
    assert node_a in j["errors"][0]["error"] and "heartbeat" in j["errors"][0]["error"]
    assert "rescued 1 running job" in b.log()
    assert b.stop() == 0


def test_running_rows_a_live_node_does_not_hold_are_given_back(db, run_kjb, start_kjb, downstream,
                                                                tmp_path):
    # A row running under a live node that is not in its hands (its claim's
    # answer or its recorded outcome was lost with the database) must not
    # stay running forever; a job the node does hold must not be touched.
    ds = downstream(lambda job, attempt, n: (200, {}, 6 if n == 1 else 0))
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "hook"; type = "http"; url = "{ds.url}"; timeout = "60s"; }}""", lease="3s")
    env = migrated(run_kjb, cfg, db)
    [held] = insert_jobs(db, "hook", 1)
    k = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: ds.of(held), timeout=60, message=lambda: k.log())
    node = job(db, held)["attempted_by"]
    [lost] = db.query("INSERT INTO kjb.jobs (kind, args, state, attempt, attempted_at, attempted_by)"
                      " VALUES ('hook', '{}', 'running', 1, now(), %s) RETURNING id", node)[0]
    wait_for(lambda: job(db, lost)["state"] == "completed", timeout=60, message=lambda: k.log())
    j = job(db, lost)
    assert j["attempt"] == 2 and j["attempted_by"] == node
    assert [(e["attempt"], e["transient"]) for e in j["errors"]] == [(1, True)]
    assert "no longer held the job" in j["errors"][0]["error"]
    # The held job was running all along, untouched, and finishes once.
    assert [r["attempt"] for r in ds.of(held)] == [1]
    wait_for(lambda: job(db, held)["state"] == "completed", timeout=60, message=lambda: k.log())
    assert job(db, held)["attempt"] == 1 and job(db, held)["errors"] == []
    assert "gave back 1 job(s)" in k.log()
    assert k.stop() == 0


def test_concurrent_executors_never_run_a_job_twice_at_once(db, run_kjb, start_kjb, downstream, tmp_path):
    ds = downstream(lambda job, attempt, n: (200, {}, 0.01))
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "once"; type = "http"; url = "{ds.url}"; concurrency = 6; }}""", claim_batch=5)
    env = migrated(run_kjb, cfg, db)
    ids = insert_jobs(db, "once", 600)
    procs = [start_kjb(["run", "--role", "executor"], cfg, env=env, name=f"exec{i}") for i in range(3)]
    wait_for(lambda: states(db, "once").get("completed") == 600, timeout=120,
             message=lambda: str(states(db, "once")))
    for p in procs:
        assert p.stop() == 0
    per_job: dict[int, list[dict]] = {}
    for r in ds.requests:
        per_job.setdefault(r["job"], []).append(r)
    assert sorted(per_job) == ids
    # Never twice at the same time ...
    for j, rs in per_job.items():
        spans = sorted((r["start"], r["end"]) for r in rs)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (j, spans)
    # Nothing failed, so each job ran exactly once.
    twice = {j: len(rs) for j, rs in per_job.items() if len(rs) != 1}
    assert not twice, twice
    nodes = db.query("SELECT attempted_by, count(*) FROM kjb.jobs GROUP BY 1")
    print(f"600 jobs over 3 executors: {nodes}")
    assert len(nodes) == 3
    assert db.scalar("SELECT max(attempt) FROM kjb.jobs") == 1


def test_graceful_shutdown_puts_unfinished_jobs_back(db, run_kjb, start_kjb, downstream, tmp_path):
    ds = downstream(lambda job, attempt, n: (200, {}, 0.5 if job % 2 else 20))
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "hook"; type = "http"; url = "{ds.url}"; timeout = "60s"; concurrency = 4; }}""",
                       shutdown_timeout="2s")
    env = migrated(run_kjb, cfg, db)
    ids = insert_jobs(db, "hook", 4)
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: len(ds.requests) == 4, timeout=60, message=lambda: proc.log())
    t = time.monotonic()
    assert proc.stop() == 0
    took = time.monotonic() - t
    # The quick ones finished; the slow ones were cancelled after the
    # timeout and are available again, their attempt not counted.
    assert took < 15, took
    for jid in ids:
        j = job(db, jid)
        if jid % 2:
            assert (j["state"], j["attempt"]) == ("completed", 1), (jid, j)
        else:
            assert (j["state"], j["attempt"]) == ("available", 0), (jid, j)
    assert db.scalar("SELECT count(*) FROM kjb.nodes") == 0
    log = proc.log()
    assert "put 2 unfinished job(s) back to available" in log, log


def test_role_executor_without_handlers_is_a_config_error(db, run_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", "")
    res = run_kjb(["run", "--role", "executor"], cfg, env={"KJB_POSTGRES_CONNINFO": str(db)})
    assert res.returncode == 2
    assert res.stderr.strip() == f"kjb: run: {cfg}: no handlers: an executor needs at least one"


def test_bad_plugin_is_a_config_error(db, run_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", f"""
  {{ kind = "p"; type = "plugin"; plugin = "{tmp_path}/missing.so"; }}""")
    res = run_kjb(["run", "--role", "executor"], cfg, env={"KJB_POSTGRES_CONNINFO": str(db)})
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f'kjb: run: plugin "{tmp_path}/missing.so": '), res.stderr


assert REPO.is_dir()


def test_retention_prunes_old_finished_jobs_inside_the_service(db, run_kjb, start_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", '{ kind = "k"; type = "log"; }',
                       retention="1h", prune_interval="500ms")
    env = migrated(run_kjb, cfg, db)
    db.query("INSERT INTO kjb.jobs (kind, state, finished_at) VALUES"
             " ('old', 'completed', now() - interval '2 hours'),"
             " ('old', 'discarded', now() - interval '2 hours'),"
             " ('old', 'cancelled', now() - interval '3 hours'),"
             " ('recent', 'completed', now() - interval '10 minutes'),"
             " ('pending', 'retryable', NULL) RETURNING id")
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE kind = 'old'") == 0, timeout=60,
             message=lambda: proc.log())
    assert sorted(r[0] for r in db.query("SELECT kind FROM kjb.jobs")) == ["pending", "recent"]
    assert "pruned 3 finished job(s)" in proc.log()
    assert proc.stop() == 0


def test_retention_prunes_a_backlog_batch_by_batch_beside_the_work(db, run_kjb, start_kjb, tmp_path):
    """25,000 expired jobs are three batches of KJB_JOBS_BATCH (10,000),
    each followed by a pause as long as it took, not the prune_interval of
    an hour: the whole backlog goes in one run, and the jobs waiting
    meanwhile run."""
    cfg = write_config(tmp_path / "kjb.cfg", '{ kind = "k"; type = "log"; }',
                       retention="1h", prune_interval="1h")
    env = migrated(run_kjb, cfg, db)
    db.query("INSERT INTO kjb.jobs (kind, state, attempt, finished_at)"
             " SELECT 'old', 'completed', 1, now() - interval '2 hours' FROM generate_series(1, 25000)")
    db.query("INSERT INTO kjb.jobs (kind, args) SELECT 'k', jsonb_build_object('i', g)"
             " FROM generate_series(1, 50) g")
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: "pruned 25000 finished job(s) older than the retention in 3 batch(es)" in proc.log(),
             timeout=60, message=lambda: proc.log())
    assert db.scalar("SELECT count(*) FROM kjb.jobs WHERE kind = 'old'") == 0
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE kind = 'k' AND state = 'completed'") == 50,
             timeout=30, message=lambda: proc.log())
    assert proc.stop() == 0


def test_runnable_jobs_wake_executors_and_claims_notify_nobody(db, run_kjb, start_kjb, tmp_path):
    """With polling an hour apart only notifications start jobs: one per
    kind for inserted jobs, and one when an operator's update makes a job
    runnable again. Claiming and finishing jobs, most of the updates, send
    none."""
    cfg = write_config(tmp_path / "kjb.cfg", '{ kind = "k"; type = "log"; concurrency = 4; }',
                       poll_interval="1h")
    env = migrated(run_kjb, cfg, db)
    listener = db.connect()
    listener.execute("LISTEN kjb_jobs")
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.nodes") == 1, timeout=30, message=lambda: proc.log())

    def notified(seconds: float) -> list[str]:
        return [n.payload for n in listener.notifies(timeout=seconds)]

    ids = insert_jobs(db, "k", 5)
    wait_for(lambda: states(db, "k") == {"completed": 5}, timeout=30, message=lambda: proc.log())
    assert notified(1.0) == ["k"]

    db.query("UPDATE kjb.jobs SET state = 'available', scheduled_at = now(), finished_at = NULL"
             " WHERE id = ANY(%s)", ids[:2])
    wait_for(lambda: states(db, "k") == {"completed": 5}
             and db.scalar("SELECT sum(attempt) FROM kjb.jobs") == 7, timeout=30, message=lambda: proc.log())
    assert notified(1.0) == ["k"]
    # A retry due later notifies nobody now.
    db.query("UPDATE kjb.jobs SET state = 'retryable', scheduled_at = now() + interval '1 hour'"
             " WHERE id = %s", ids[2])
    assert notified(1.0) == []
    listener.close()
    assert proc.stop() == 0
