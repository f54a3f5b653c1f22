"""Ordered execution per key: records produced to Kafka with an
ordering_key template become jobs that run one at a time per (kind, key),
in source order, across three executor processes, one of them killed
mid-run; a key waiting for a retry holds back only its own later jobs;
on_discard = "hold" keeps a discarded job's key blocked, "continue"
releases it. Assertions are on the handler's own log of its runs and on
job rows."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import avrokit
from kjbtest import free_port, order, sample, scrape, unique_name, wait_for

# An exec handler that logs each run as one JSON line (job id, attempt,
# start and end wall time, exit code) and exits with the code its rules
# give: FAIL_P is the chance of a transient failure (75); FAIL_IDS
# (order ids) fail on their first attempt with FAIL_CODE.
HANDLER = r"""
import json, os, random, sys, time
args = json.load(sys.stdin)
start = time.time()
time.sleep(random.uniform(0.005, 0.04))
code = 0
if args["order_id"] in json.loads(os.environ.get("FAIL_IDS", "[]")) and os.environ["KJB_JOB_ATTEMPT"] == "1":
    code = int(os.environ.get("FAIL_CODE", "75"))
elif random.random() < float(os.environ.get("FAIL_P", "0")):
    code = 75
line = json.dumps({"job": int(os.environ["KJB_JOB_ID"]), "attempt": int(os.environ["KJB_JOB_ATTEMPT"]),
                   "kind": os.environ["KJB_JOB_KIND"], "order_id": args["order_id"], "key": args["customer.id"],
                   "start": start, "end": time.time(), "code": code})
fd = os.open(os.environ["RUN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, (line + "\n").encode())
os.close(fd)
sys.exit(code)
"""

V1 = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")


def write_config(tmp_path: Path, topic: str, jobs: str, handlers: str, **executor: str) -> Path:
    schemas = avrokit.schema_dir(tmp_path / "schemas")
    settings = {"poll_interval": "200ms", "heartbeat": "500ms", "lease": "3s", "shutdown_timeout": "5s",
                "claim_batch": 8, **executor}
    text = " ".join(f"{k} = {json.dumps(v)};" for k, v in settings.items())
    path = tmp_path / "kjb.cfg"
    path.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{unique_name('order')}"; }};
postgres = {{ conninfo = "set-by-env"; }};
schemas = {{ dir = "{schemas}"; ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
executor = {{ {text} }};
topics = ( {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {jobs} ); }} );
handlers = ( {handlers} );
""")
    return path


def exec_handler(tmp_path: Path, kind: str, extra: str = "") -> str:
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    return (f'{{ kind = "{kind}"; type = "exec"; command = [ "{sys.executable}", "{script}" ];'
            f' timeout = "20s"; concurrency = 4; {extra} }}')


def produce_keyed(kafka, topic: str, keys: int, per_key: int, partitions: int) -> dict[int, list[int]]:
    """Produces per_key records for each key (customer.id), interleaved,
    key k to partition k % partitions; returns the order ids by key in
    production order."""
    by_part: dict[int, list[bytes]] = defaultdict(list)
    ids: dict[int, list[int]] = defaultdict(list)
    n = 0
    for _ in range(per_key):
        for k in range(keys):
            rec = order(n)
            rec["customer"] = {**rec["customer"], "id": k}
            by_part[k % partitions].append(avrokit.confluent(V1, rec, 1))
            ids[k].append(n)
            n += 1
    for p, values in by_part.items():
        kafka.produce(topic, values, partition=p)
    return ids


def runs(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def job_states(db, kind: str) -> dict[str, int]:
    return dict(db.query("SELECT state::text, count(*) FROM kjb.jobs WHERE kind = %s GROUP BY 1", kind))


def start_services(start_kjb, cfg: Path, env: dict[str, str], executors: int = 1):
    consumer = start_kjb(["run", "--role", "consumer"], cfg, name="consumer",
                         env={**env, "KJB_HTTP_LISTEN": f"127.0.0.1:{free_port()}"})
    ports = [free_port() for _ in range(executors)]
    procs = [start_kjb(["run", "--role", "executor"], cfg, name=f"exec{i}",
                       env={**env, "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"})
             for i, port in enumerate(ports)]
    return consumer, procs, ports


def check_order(all_runs: list[dict], coords: dict[int, tuple[int, int]]) -> None:
    """For every key: runs, by start time, never go back in source order,
    and no two runs of one key overlap."""
    by_key: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in all_runs:
        by_key[(r["kind"], r["key"])].append(r)
    for key, rs in by_key.items():
        rs.sort(key=lambda r: r["start"])
        for a, b in zip(rs, rs[1:]):
            assert coords[a["job"]] <= coords[b["job"]], \
                f"key {key}: job {b['job']} {coords[b['job']]} started after job {a['job']} {coords[a['job']]}"
            assert a["end"] <= b["start"], f"key {key}: runs overlap: {a} and {b}"


def test_keys_run_one_at_a_time_in_source_order_across_three_executors_and_a_kill(
        kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, tmp_path):
    topic = make_topic(partitions=3)
    log = tmp_path / "runs.jsonl"
    cfg = write_config(tmp_path, topic, '{ kind = "ord"; ordering_key = "c-${customer.id}";'
                       ' args = [ "order_id", "customer.id" ]; max_attempts = 100; }',
                       exec_handler(tmp_path, "ord", 'retry = { base = "50ms"; max = "300ms"; };'))
    env = {**kjb_services_env, "RUN_LOG": str(log), "FAIL_P": "0.2"}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    keys, per_key = 12, 30
    produce_keyed(kafka, topic, keys, per_key, 3)
    consumer, procs, _ = start_services(start_kjb, cfg, env, executors=3)
    total = keys * per_key
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") == total, timeout=120,
             message=lambda: consumer.log()[-2000:])
    assert db.scalar("SELECT count(*) FROM kjb.jobs WHERE ordering_key IS NULL") == 0
    assert db.scalar("SELECT count(DISTINCT ordering_key) FROM kjb.jobs") == keys

    # Kill one executor while it runs jobs: the rescue after its lease
    # must keep each key's order.
    wait_for(lambda: job_states(db, "ord").get("completed", 0) >= total // 4, timeout=180,
             message=lambda: str(job_states(db, "ord")))
    victim = procs[0]
    node = None
    while node is None:
        time.sleep(0.01)
        node = db.scalar("SELECT attempted_by FROM kjb.jobs WHERE state = 'running' LIMIT 1")
    pid = int(node.split("-")[-2])
    victim = next(p for p in procs if p.pid == pid)
    victim.kill()
    wait_for(lambda: job_states(db, "ord").get("completed", 0) == total, timeout=300,
             message=lambda: f"{job_states(db, 'ord')}\n" + "\n".join(p.log()[-1500:] for p in procs))
    rescued = db.scalar("SELECT count(*) FROM kjb.jobs WHERE errors::text LIKE '%%stopped heartbeating%%'")
    assert rescued >= 1, "the killed node's running job was not rescued"

    coords = {r[0]: (r[1], r[2]) for r in db.query(
        "SELECT id, source_partition, source_offset FROM kjb.jobs WHERE kind = 'ord'")}
    all_runs = runs(log)
    check_order(all_runs, coords)
    failed = sum(1 for r in all_runs if r["code"] != 0)
    assert failed > 0.1 * total, f"only {failed} transient failures"
    # Every job succeeded; a job whose run was cut short by the kill may
    # have succeeded twice (its outcome died with the node), no other.
    ok = defaultdict(int)
    for r in all_runs:
        if r["code"] == 0:
            ok[r["job"]] += 1
    assert set(ok) == set(coords)
    assert sum(n - 1 for n in ok.values()) <= rescued, (rescued, {j: n for j, n in ok.items() if n > 1})
    for p in procs:
        if p is not victim:
            assert p.stop() == 0
    assert consumer.stop() == 0


def test_a_key_waiting_for_retry_holds_only_its_own_later_jobs(
        kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, tmp_path):
    topic = make_topic(partitions=1)
    log = tmp_path / "runs.jsonl"
    cfg = write_config(tmp_path, topic, '{ kind = "ord"; ordering_key = "${customer.id}";'
                       ' args = [ "order_id", "customer.id" ]; }',
                       exec_handler(tmp_path, "ord", 'retry = { base = "1h"; max = "1h"; jitter = "none"; };'))
    ids = None
    env = {**kjb_services_env, "RUN_LOG": str(log)}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    # Key 1's third job fails once and waits an hour for its retry.
    ids = produce_keyed(kafka, topic, 4, 10, 1)
    stuck = ids[1][2]
    env["FAIL_IDS"] = json.dumps([stuck])
    consumer, procs, ports = start_services(start_kjb, cfg, env, executors=2)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 32, timeout=120,
             message=lambda: str(job_states(db, "ord")))
    time.sleep(1.5)  # several polls: nothing else of key 1 may start
    rows = db.query("SELECT args->>'order_id', state::text FROM kjb.jobs WHERE ordering_key = '1'"
                    " ORDER BY source_offset")
    assert [s for _, s in rows] == ["completed"] * 2 + ["retryable"] + ["available"] * 7, rows
    assert all(s == "completed" for (s,) in db.query(
        "SELECT state::text FROM kjb.jobs WHERE ordering_key <> '1'"))

    listing = run_kjb(["jobs", "ls", "--kind", "ord"], cfg, env=env).stdout.splitlines()
    assert listing[-1].startswith("held keys: 1 (oldest since 20"), listing[-3:]
    assert listing[-1].endswith(", kind ord key 1)"), listing[-1]

    # The operator retries it now: the key flows again, in order.
    [jid] = db.query("SELECT id FROM kjb.jobs WHERE state = 'retryable'")[0]
    assert run_kjb(["jobs", "retry", str(jid)], cfg, env=env).returncode == 0
    wait_for(lambda: job_states(db, "ord") == {"completed": 40}, timeout=120,
             message=lambda: str(job_states(db, "ord")))
    coords = {r[0]: (r[1], r[2]) for r in db.query("SELECT id, source_partition, source_offset FROM kjb.jobs")}
    check_order(runs(log), coords)
    assert "held keys" not in run_kjb(["jobs", "ls"], cfg, env=env).stdout
    for p in procs:
        assert p.stop() == 0
    assert consumer.stop() == 0


def test_on_discard_hold_keeps_the_key_blocked_and_continue_releases_it(
        kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env, tmp_path):
    topic = make_topic(partitions=1)
    log = tmp_path / "runs.jsonl"
    jobs = ", ".join(f'{{ kind = "{k}"; ordering_key = "${{customer.id}}"; args = [ "order_id", "customer.id" ]; }}'
                     for k in ("cont", "hold"))
    handlers = ", ".join([exec_handler(tmp_path, "cont"),
                          exec_handler(tmp_path, "hold", 'on_discard = "hold";')])
    cfg = write_config(tmp_path, topic, jobs, handlers)
    env = {**kjb_services_env, "RUN_LOG": str(log), "FAIL_CODE": "1"}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    ids = produce_keyed(kafka, topic, 3, 6, 1)
    bad = ids[0][1]  # key 0's second job fails permanently, in both kinds
    env["FAIL_IDS"] = json.dumps([bad])
    consumer, procs, ports = start_services(start_kjb, cfg, env, executors=2)
    wait_for(lambda: job_states(db, "cont") == {"completed": 17, "discarded": 1}, timeout=120,
             message=lambda: str(job_states(db, "cont")))
    wait_for(lambda: job_states(db, "hold").get("completed") == 13, timeout=60,
             message=lambda: str(job_states(db, "hold")))
    time.sleep(1.5)
    rows = db.query("SELECT state::text FROM kjb.jobs WHERE kind = 'hold' AND ordering_key = '0'"
                    " ORDER BY source_offset")
    assert [s for (s,) in rows] == ["completed", "discarded"] + ["available"] * 4, rows

    # Visible while held: /api/stats and the gauge, from the stats thread.
    def held():
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{ports[0]}/api/stats", timeout=10) as r:
            return json.loads(r.read()).get("held_keys")
    wait_for(lambda: (held() or {}).get("count") == 1, timeout=30, message=lambda: str(held()))
    oldest = held()["oldest"]
    assert (oldest["kind"], oldest["key"], oldest["state"]) == ("hold", "0", "discarded"), oldest
    assert oldest["since"].startswith("20") and oldest["job"] > 0
    samples = scrape(ports[0])
    assert sample(samples, "kjb_held_keys", kind="hold") == 1.0
    assert sample(samples, "kjb_held_keys", kind="cont") == 0.0
    # The key held by a discarded job is in kjb jobs ls too.
    listing = run_kjb(["jobs", "ls"], cfg, env=env).stdout.splitlines()
    assert listing[-1].startswith("held keys: 1 (oldest since 20") and listing[-1].endswith(", kind hold key 0)")

    # Cancelling the discarded job releases the key.
    [jid] = db.query("SELECT id FROM kjb.jobs WHERE kind = 'hold' AND state = 'discarded'")[0]
    assert run_kjb(["jobs", "cancel", str(jid)], cfg, env=env).returncode == 0
    wait_for(lambda: job_states(db, "hold") == {"completed": 17, "cancelled": 1}, timeout=120,
             message=lambda: str(job_states(db, "hold")))
    coords = {r[0]: (r[1], r[2]) for r in db.query("SELECT id, source_partition, source_offset FROM kjb.jobs")}
    check_order(runs(log), coords)
    wait_for(lambda: (held() or {}).get("count") == 0, timeout=30, message=lambda: str(held()))
    assert held()["oldest"] is None
    assert sample(scrape(ports[0]), "kjb_held_keys", kind="hold") == 0.0
    for p in procs:
        assert p.stop() == 0
    assert consumer.stop() == 0


def test_jobs_without_source_coordinates_run_by_id(db, run_kjb, start_kjb, kjb_services_env, tmp_path):
    # Jobs inserted by other means than a topic have no coordinates: a
    # key's jobs run in the order of their ids. Three keys interleaved
    # (key 1 has ids 1, 4, 7, ...), run side by side by two executors.
    log = tmp_path / "runs.jsonl"
    cfg = write_config(tmp_path, "unused", '{ kind = "ord"; ordering_key = "${customer.id}"; }',
                       exec_handler(tmp_path, "ord", 'retry = { base = "50ms"; max = "200ms"; };'))
    env = {**kjb_services_env, "RUN_LOG": str(log), "FAIL_P": "0.2"}
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    db.query("INSERT INTO kjb.jobs (kind, args, ordering_key)"
             " SELECT 'ord', jsonb_build_object('order_id', g, 'customer.id', g % 3), (g % 3)::text"
             " FROM generate_series(1, 60) g RETURNING id")
    procs = [start_kjb(["run", "--role", "executor"], cfg, name=f"exec{i}",
                       env={**env, "KJB_HTTP_LISTEN": f"127.0.0.1:{free_port()}"}) for i in range(2)]
    wait_for(lambda: job_states(db, "ord") == {"completed": 60}, timeout=120,
             message=lambda: str(job_states(db, "ord")))
    coords = {jid: (0, jid) for (jid,) in db.query("SELECT id FROM kjb.jobs")}
    all_runs = runs(log)
    check_order(all_runs, coords)
    assert {r["key"] for r in all_runs} == {0, 1, 2} and any(r["code"] for r in all_runs)
    for p in procs:
        assert p.stop() == 0
