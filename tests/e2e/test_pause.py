"""Pause and resume: `kjb jobs pause --kind K | --queue Q` stops every
executor of the cluster from starting those jobs (they stay available,
other kinds keep running), `kjb jobs resume` lets them run; both are
audited, listed by `kjb jobs ls`, shown by /api/stats and the kjb_paused
gauge."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from kjbtest import free_port, wait_for
from test_executor import insert_jobs, migrated, states, write_config

HANDLERS = """
  { kind = "mail"; type = "log"; concurrency = 4; },
  { kind = "fraud"; type = "log"; concurrency = 4; }"""


def stats(port: int) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/api/stats", timeout=10) as r:
        return json.loads(r.read())


def paused_gauge(port: int, kind: str) -> float | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f'kjb_paused{{kind="{kind}"}} '):
                return float(line.split()[-1])
    return None


def test_pause_holds_a_kind_across_the_cluster_until_resumed(db, run_kjb, start_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", HANDLERS)
    env = migrated(run_kjb, cfg, db)
    res = run_kjb(["jobs", "pause", "--kind", "mail", "--actor", "ops:ann"], cfg, env=env)
    assert (res.returncode, res.stdout) == (0, "paused kind mail\n"), res.stderr
    res = run_kjb(["jobs", "pause", "--kind", "mail"], cfg, env=env)
    assert res.returncode == 0
    assert res.stdout.startswith("kind mail is paused already (since 20") and res.stdout.endswith(" by ops:ann)\n")

    ports = [free_port(), free_port()]
    procs = [start_kjb(["run", "--role", "executor"], cfg, name=f"exec{i}",
                       env={**env, "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"}) for i, port in enumerate(ports)]
    port = ports[0]
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.nodes") == 2, timeout=60,
             message=lambda: "\n".join(p.log()[-2000:] for p in procs))
    insert_jobs(db, "mail", 20)
    insert_jobs(db, "fraud", 20)
    # The other kind runs; the paused one stays available, on both nodes.
    wait_for(lambda: states(db, "fraud").get("completed") == 20, timeout=60, message=lambda: str(states(db, "fraud")))
    time.sleep(2)  # ten polls of each executor
    assert states(db, "mail") == {"available": 20}
    listing = run_kjb(["jobs", "ls", "--kind", "mail"], cfg, env=env).stdout.splitlines()
    assert listing[-1].startswith("paused: kind mail since 20") and listing[-1].endswith(" by ops:ann"), listing
    wait_for(lambda: paused_gauge(port, "mail") == 1.0, timeout=30, message="kjb_paused{kind=mail} 1")
    assert paused_gauge(port, "fraud") == 0.0
    paused = wait_for(lambda: stats(port)["paused"], timeout=30, message="/api/stats paused")
    assert [(p["kind"], p["by"]) for p in paused] == [("mail", "ops:ann")], paused

    res = run_kjb(["jobs", "resume", "--kind", "mail", "--actor", "ops:ben"], cfg, env=env)
    assert res.returncode == 0
    assert res.stdout.startswith("resumed kind mail (paused since 20") and res.stdout.endswith(" by ops:ann)\n")
    wait_for(lambda: states(db, "mail").get("completed") == 20, timeout=60, message=lambda: str(states(db, "mail")))
    assert {r[0] for r in db.query("SELECT attempted_by FROM kjb.jobs")} == \
        {r[0] for r in db.query("SELECT name FROM kjb.nodes")}  # both nodes took part
    res = run_kjb(["jobs", "resume", "--kind", "mail"], cfg, env=env)
    assert (res.returncode, res.stdout) == (0, "kind mail is not paused\n")
    wait_for(lambda: paused_gauge(port, "mail") == 0.0, timeout=30, message="kjb_paused{kind=mail} 0")
    assert "paused:" not in run_kjb(["jobs", "ls"], cfg, env=env).stdout
    audit = db.query("SELECT actor, action, params, result FROM kjb.audit ORDER BY id")
    user = audit[1][0]
    assert user.startswith("cli:")
    assert audit == [
        ("ops:ann", "jobs.pause", {"kind": "mail"}, {"outcome": "done"}),
        (user, "jobs.pause", {"kind": "mail"}, {"outcome": "already_paused"}),
        ("ops:ben", "jobs.resume", {"kind": "mail"}, {"outcome": "done"}),
        (user, "jobs.resume", {"kind": "mail"}, {"outcome": "not_paused"}),
    ]
    for p in procs:
        assert p.stop() == 0


def post(port: int, path: str, token: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=b"",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_pause_and_resume_through_the_api(db, run_kjb, start_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", HANDLERS)
    env = migrated(run_kjb, cfg, db)
    port, token = free_port(), "tok-pause"
    proc = start_kjb(["run", "--role", "executor"], cfg,
                     env={**env, "KJB_HTTP_LISTEN": f"127.0.0.1:{port}", "KJB_ADMIN_TOKEN": token})
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.nodes") == 1, timeout=60, message=lambda: proc.log())
    assert post(port, "/api/kinds/mail/pause", None)[0] == 401
    assert post(port, "/api/kinds/mail/pause", "wrong")[0] == 403
    assert db.scalar("SELECT count(*) FROM kjb.pauses") == 0
    status, body = post(port, "/api/kinds/mail/pause", token)
    assert (status, body["kind"], body["paused"], body["changed"]) == (200, "mail", True, True), body
    status, body = post(port, "/api/kinds/mail/pause", token)
    assert (status, body["changed"], body["by"]) == (200, False, "admin"), body
    insert_jobs(db, "mail", 5)
    insert_jobs(db, "fraud", 5)
    wait_for(lambda: states(db, "fraud").get("completed") == 5, timeout=60, message=lambda: str(states(db, "fraud")))
    time.sleep(1)
    assert states(db, "mail") == {"available": 5}
    status, body = post(port, "/api/queues/bulk/pause", token)
    assert (status, body["queue"], body["changed"]) == (200, "bulk", True), body
    status, body = post(port, "/api/kinds/mail/resume", token)
    assert (status, body["paused"], body["changed"], body["by"]) == (200, False, True, "admin"), body
    wait_for(lambda: states(db, "mail").get("completed") == 5, timeout=60, message=lambda: str(states(db, "mail")))
    assert post(port, "/api/queues/bulk/resume", token)[1]["changed"] is True
    assert post(port, "/api/kinds//pause", token)[0] == 404
    assert post(port, "/api/kinds/mail/stop", token)[0] == 404
    assert [tuple(r) for r in db.query("SELECT actor, action, params->>'kind', params->>'queue', result->>'outcome'"
                                       " FROM kjb.audit ORDER BY id")] == [
        ("admin", "jobs.pause", "mail", None, "done"),
        ("admin", "jobs.pause", "mail", None, "already_paused"),
        ("admin", "jobs.pause", None, "bulk", "done"),
        ("admin", "jobs.resume", "mail", None, "done"),
        ("admin", "jobs.resume", None, "bulk", "done"),
    ]
    assert proc.stop() == 0


def test_pause_by_queue(db, run_kjb, start_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", HANDLERS)
    env = migrated(run_kjb, cfg, db)
    assert run_kjb(["jobs", "pause", "--queue", "bulk"], cfg, env=env).stdout == "paused queue bulk\n"
    db.query("INSERT INTO kjb.jobs (kind, queue, args) SELECT 'mail', CASE WHEN g % 2 = 0 THEN 'bulk'"
             " ELSE 'default' END, '{}' FROM generate_series(1, 20) g")
    proc = start_kjb(["run", "--role", "executor"], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE queue = 'default' AND state = 'completed'") == 10,
             timeout=60, message=lambda: proc.log()[-2000:])
    time.sleep(1.5)
    assert db.query("SELECT state::text, count(*) FROM kjb.jobs WHERE queue = 'bulk' GROUP BY 1") == [("available", 10)]
    assert run_kjb(["jobs", "resume", "--queue", "bulk"], cfg, env=env).stdout.startswith("resumed queue bulk")
    wait_for(lambda: states(db, "mail").get("completed") == 20, timeout=60, message=lambda: str(states(db, "mail")))
    assert proc.stop() == 0


def test_usage_errors(db, run_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", HANDLERS)
    env = migrated(run_kjb, cfg, db)
    for args, message in [
        (["jobs", "pause"], "kjb: jobs pause: give one of --kind and --queue"),
        (["jobs", "resume", "--kind", "a", "--queue", "b"], "kjb: jobs resume: give one of --kind and --queue"),
        (["jobs", "pause", "--state", "available", "--kind", "a"], "kjb: jobs pause: --state does not apply here"),
        (["jobs", "ls", "--queue", "q"], "kjb: jobs ls: --queue does not apply here"),
    ]:
        res = run_kjb(args, cfg, env=env)
        assert (res.returncode, res.stderr.strip()) == (2, message), (args, res.stderr)
    assert db.scalar("SELECT count(*) FROM kjb.pauses") == 0
