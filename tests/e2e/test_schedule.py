"""Schedules: `schedules = ( { name; kind; cron; timezone; args; } )` inserts
one job per tick across every running instance (never two, never none
while any instance runs); a restart within a tick loses nothing, and after
a long outage only the latest missed tick is caught up, once.

The processes run with KJB_SCHEDULE_SECONDS=1, the test-only granularity
under which the cron's first field counts seconds, so that "*/2 * * * *"
ticks every two seconds. They run as executors, which need no Kafka."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from kjbtest import error_line, free_port, sample, scrape, wait_for
from test_executor import migrated

SECONDS = {"KJB_SCHEDULE_SECONDS": "1"}


def write_config(path, schedules: str, **extra: str):
    path.write_text(f"""
kafka = {{ brokers = "127.0.0.1:1"; group = "sched"; }};
postgres = {{ conninfo = "set-by-env"; }};
executor = {{ poll_interval = "200ms"; heartbeat = "500ms"; lease = "3s"; }};
topics = ( {{ topic = "unused"; format = "raw"; schema = "order_created.avsc"; jobs = ( {{ kind = "unused"; }} ); }} );
handlers = ( {{ kind = "unused"; type = "log"; }} );
schedules = ( {schedules} );
""")
    return path


def ticks(db, kind: str = "tick") -> list[tuple[datetime, bool, str]]:
    """(tick, catch_up, unique_key) of every job of kind, by tick."""
    rows = db.query("SELECT meta->>'tick', (meta->>'catch_up')::boolean, unique_key FROM kjb.jobs"
                    " WHERE kind = %s ORDER BY meta->>'tick'", kind)
    return [(datetime.fromisoformat(t.replace("Z", "+00:00")), c, k) for t, c, k in rows]


def assert_every_tick_once(rows, period: int) -> None:
    """One job per tick, none missing between the first and the last."""
    at = [r[0] for r in rows]
    assert len(at) == len(set(at)), f"duplicate ticks: {at}"
    gaps = [(a, b) for a, b in zip(at, at[1:]) if b - a != timedelta(seconds=period)]
    assert not gaps, f"ticks not {period} s apart: {gaps}"


def start_cluster(start_kjb, cfg, env, n: int, first: int = 0):
    ports = [free_port() for _ in range(n)]
    procs = [start_kjb(["run", "--role", "executor"], cfg, name=f"kjb{first + i}",
                       env={**env, **SECONDS, "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"})
             for i, port in enumerate(ports)]
    return procs, ports


def test_three_instances_insert_each_tick_once(db, run_kjb, start_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", """
  { name = "every2"; kind = "tick"; cron = "*/2 * * * *"; timezone = "Europe/Paris";
    args = "{\\"scope\\": \\"all\\"}"; }""")
    env = migrated(run_kjb, cfg, db)
    procs, ports = start_cluster(start_kjb, cfg, env, 3)
    logs = lambda: "\n".join(p.log()[-3000:] for p in procs)  # noqa: E731
    # A new schedule does not catch up the tick before it first ran: the
    # first job is of a tick that came while the instances ran.
    wait_for(lambda: len(ticks(db)) >= 5, timeout=60, message=logs)
    time.sleep(1)
    for p in procs:
        assert p.stop() == 0, p.log()
    rows = ticks(db)
    assert_every_tick_once(rows, 2)
    # An instance whose first check comes just after a tick, before the
    # others', catches that tick up: only possible while they all start.
    assert not any(catch_up for _, catch_up, _ in rows[2:]), rows
    assert all(t.second % 2 == 0 and t.microsecond == 0 for t, _, _ in rows)
    assert [k for _, _, k in rows] == [f"schedule:every2:{t:%Y-%m-%dT%H:%M:%SZ}" for t, _, _ in rows]
    job = db.query("SELECT args, meta, queue, max_attempts, state::text FROM kjb.jobs WHERE kind = 'tick'"
                   " ORDER BY id LIMIT 1")[0]
    assert job[0] == {"scope": "all"}
    assert job[1]["schedule"] == "every2" and job[1]["timezone"] == "Europe/Paris"
    assert job[1]["inserted_by"] in {r[0] for r in db.query("SELECT DISTINCT meta->>'inserted_by' FROM kjb.jobs")}
    assert job[2:] == ("default", 20, "available")
    last = db.query("SELECT last_tick, inserted_by FROM kjb.schedules WHERE name = 'every2'")[0]
    assert last[0] == rows[-1][0]

    # All down for several ticks, then one instance: one catch-up job for
    # the latest missed tick, not one per missed tick.
    time.sleep(7)
    [proc], [port] = start_cluster(start_kjb, cfg, env, 1, first=3)
    wait_for(lambda: len(ticks(db)) >= len(rows) + 3, timeout=60, message=proc.log)
    after = ticks(db)[len(rows):]
    assert after[0][1] is True, after  # the catch-up
    # Down for more than 7 s: two ticks or more were missed, and only the
    # latest has a job.
    assert after[0][0] - rows[-1][0] >= timedelta(seconds=6), (rows[-1], after[0])
    assert [c for _, c, _ in after[1:]] == [False] * (len(after) - 1), after
    assert_every_tick_once(after, 2)
    samples = scrape(port)
    assert sample(samples, "kjb_schedule_ticks_total", schedule="every2") >= 3
    assert sample(samples, "kjb_schedule_last_tick_seconds", schedule="every2") >= after[-1][0].timestamp()
    assert proc.stop() == 0


def test_restarts_within_a_tick_lose_no_tick(db, run_kjb, start_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", """
  { name = "every4"; kind = "tick"; cron = "*/4 * * * *"; }""")
    env = migrated(run_kjb, cfg, db)
    procs, _ = start_cluster(start_kjb, cfg, env, 3)
    wait_for(lambda: len(ticks(db)) >= 2, timeout=60, message=lambda: procs[0].log())
    # Crash and restart the instances one after the other, and once all of
    # them together, each time for less than a tick's period (all down for
    # longer would let two ticks pass, and only the latest is caught up).
    n = 3
    for round in range(4):
        victims = procs if round == 2 else [procs[round % 3]]
        if round == 2:
            # All of them go 0.4 s before a tick (PostgreSQL runs on this
            # host's clock) and come back after it: the tick is caught up.
            time.sleep((3.6 - time.time() % 4) % 4)
        for p in victims:
            p.kill()
        time.sleep(1.0 if round == 2 else 2.5)
        for p in victims:
            [new], _ = start_cluster(start_kjb, cfg, env, 1, first=n)
            procs[procs.index(p)] = new
            n += 1
        time.sleep(1.5)
    count = len(ticks(db))
    wait_for(lambda: len(ticks(db)) >= count + 2, timeout=60, message=lambda: procs[0].log())
    for p in procs:
        assert p.stop() == 0, p.log()
    rows = ticks(db)
    assert_every_tick_once(rows, 4)
    assert len(rows) >= 5
    # The instances killed at a tick's time may have left it to a restarted
    # one: caught up, in order.
    assert db.scalar("SELECT last_tick FROM kjb.schedules WHERE name = 'every4'") == rows[-1][0]
    assert [c for _, c, _ in rows].count(True) >= 1, rows


def test_misfire_grace_skips_a_tick_found_too_late(db, run_kjb, start_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", """
  { name = "every2"; kind = "tick"; cron = "*/2 * * * *"; misfire_grace = "500ms"; }""")
    env = migrated(run_kjb, cfg, db)
    [proc], _ = start_cluster(start_kjb, cfg, env, 1)
    wait_for(lambda: len(ticks(db)) >= 2, timeout=60, message=proc.log)
    assert proc.stop() == 0
    before = ticks(db)
    time.sleep(5)
    # Started at least a second after the latest tick most of the time;
    # whenever it is more than 500 ms late, it is skipped: never a catch-up
    # older than the grace.
    [proc], _ = start_cluster(start_kjb, cfg, env, 1, first=1)
    wait_for(lambda: len(ticks(db)) >= len(before) + 2, timeout=60, message=proc.log)
    assert proc.stop() == 0
    after = ticks(db)[len(before):]
    for t, catch_up, _ in after:
        if catch_up:
            created = db.scalar("SELECT created_at FROM kjb.jobs WHERE meta->>'tick' = %s",
                                f"{t:%Y-%m-%dT%H:%M:%SZ}")
            assert created - t <= timedelta(seconds=0.6), (t, created)
    assert_every_tick_once(after, 2)


def test_bad_cron_is_a_config_error_with_file_and_line(run_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", """
  { name = "bad"; kind = "tick";
    cron = "0 3 * * mon-sun"; }""")
    res = run_kjb(["run", "--role", "executor"], cfg, env={"KJB_POSTGRES_CONNINFO": "host=127.0.0.1 port=1"})
    assert res.returncode == 2
    assert error_line(res.stderr) == (f"kjb: run: {cfg}:9: schedules[0].cron: field 5 (day-of-week):"
                                      " range 1-0 goes backwards (ranges do not wrap)"), res.stderr
    res = run_kjb(["check-config"], cfg)
    assert res.returncode == 2
    assert f"{cfg}:9: schedules[0].cron:" in res.stderr


def test_unknown_time_zone_stops_run_with_file_and_line(db, run_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", """
  { name = "ok"; kind = "tick"; cron = "@daily"; timezone = "Europe/Paris"; },
  { name = "bad"; kind = "tick"; cron = "@daily";
    timezone = "Mars/Olympus_Mons"; }""")
    env = migrated(run_kjb, cfg, db)
    res = run_kjb(["run", "--role", "executor"], cfg, env=env)
    assert res.returncode == 2, res.stderr
    assert (f"kjb: run: {cfg}:9: schedules[1].timezone: unknown time zone \"Mars/Olympus_Mons\""
            " (PostgreSQL's pg_timezone_names has no such name)") in res.stderr, res.stderr
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == 0


def test_check_config_prints_the_schedules_and_their_next_tick(run_kjb, tmp_path):
    cfg = write_config(tmp_path / "kjb.cfg", """
  { name = "nightly"; kind = "report"; cron = "0 3 * * *"; timezone = "Europe/Paris"; },
  { name = "yearly"; kind = "report"; queue = "slow"; cron = "@yearly"; }""")
    res = run_kjb(["check-config"], cfg)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("schedule ")]
    year = datetime.utcnow().year + 1
    assert lines[0].startswith('schedule nightly: kind report, queue default, cron "0 3 * * *" in Europe/Paris,'
                               ' next tick 20') and lines[0].endswith(" 03:00:00"), lines
    assert lines[1] == (f'schedule yearly: kind report, queue slow, cron "@yearly" in UTC, next tick {year}-01-01 00:00:00')


def test_postgresql_resolves_gaps_and_repeated_hours_as_documented(db):
    """schedule.c reads a tick's wall-clock time back in its zone with this
    expression; kjb.cfg.5 documents what it gives around daylight saving
    changes: 02:30 in the spring gap is 03:30 summer time, 02:00 in the gap
    and 03:00 after it are one instant, and 02:30 in the repeated autumn
    hour is its second occurrence."""
    def instant(wall: str) -> str:
        return db.scalar(
            "SELECT to_char((to_timestamp(extract(epoch FROM %s::timestamp)::bigint) AT TIME ZONE 'UTC')"
            " AT TIME ZONE 'Europe/Paris' AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')", wall)
    assert instant("2026-03-29 02:30") == "2026-03-29 01:30"  # 03:30 CEST
    assert instant("2026-03-29 02:00") == instant("2026-03-29 03:00") == "2026-03-29 01:00"
    assert instant("2026-10-25 02:30") == "2026-10-25 01:30"  # 02:30 CET, the second time
    assert instant("2026-10-25 01:30") == "2026-10-24 23:30"  # 01:30 CEST
