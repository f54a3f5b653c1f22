"""Broker faults on the dead-letter path, against librdkafka's mock cluster:
tests/fault/fault_dlq.c (built next to kjb as `fault_dlq`) runs kjb's
ingest in-process while DLQ writes fail (A: injected Produce errors, B: the
DLQ's broker down, then every broker) and checks that no source offset is
committed past a bad record before its dead letter is acknowledged, and
that afterwards every good record is one job in this test's database and
every bad one is one DLQ record, with the committed offsets at the end of
each partition and never moving back (C: a commit answered late, then a
restart, must not dead-letter anything twice; H: the health probe asking
the consumer while it stops and after must not hang the stop).

Kafka here is the mock inside the binary; PostgreSQL is the real one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kjbtest import REPO, SANITIZER_EXIT, kjb_env, sanitizer_report

SUMMARY = re.compile(
    r"^scenario (?P<name>[AB]) \(.*?\): (?P<records>\d+) records \((?P<good>\d+) good, (?P<bad>\d+) bad\)"
    r".*recovered \(committed == end\) (?P<recovery>[\d.]+) s after .*"
    r"DLQ (?P<dlq>\d+) records, jobs (?P<jobs>\d+).*: ok$",
    re.M,
)


def test_dlq_writes_failing_commit_nothing_early_and_lose_nothing(db, kjb_bin: Path):
    binary = kjb_bin.parent / "fault_dlq"
    if not (binary.is_file() and binary.stat().st_mode & 0o111):
        pytest.fail(f"{binary} not found: build the fault_dlq target (BUILD_TESTING) next to {kjb_bin.name}",
                    pytrace=False)
    argv = [str(binary), str(db), str(REPO)]
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=kjb_env({"KJB_SOURCE_DIR": str(REPO)}),
            cwd=REPO,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = [s.decode(errors="replace") if isinstance(s, bytes) else s or "" for s in (exc.stdout, exc.stderr)]
        pytest.fail(f"{binary.name} did not finish in 600 s\n{out[0]}\n{out[1][-6000:]}", pytrace=False)

    report = sanitizer_report(result.stderr)
    if report or result.returncode == SANITIZER_EXIT:
        pytest.fail(f"sanitizer report from {binary.name}:\n{report or result.stderr[-8000:]}", pytrace=False)
    failures = "\n".join(line for line in result.stderr.splitlines() if line.startswith("fault_dlq: FAIL:"))
    assert result.returncode == 0, (
        f"{binary.name} exited {result.returncode}\n{failures}\n--- stdout\n{result.stdout}"
        f"\n--- stderr (last 6000 chars)\n{result.stderr[-6000:]}"
    )

    summaries = {m["name"]: m for m in SUMMARY.finditer(result.stdout)}
    assert set(summaries) == {"A", "B"}, f"expected scenarios A and B in the summary:\n{result.stdout}"
    for name, m in summaries.items():
        assert int(m["bad"]) > 0 and int(m["good"]) > 0, m.group(0)
        assert int(m["dlq"]) == int(m["bad"]), m.group(0)
        assert int(m["jobs"]) == int(m["good"]), m.group(0)
        print(f"scenario {name}: recovered {float(m['recovery']):.2f} s after the last fault")
    closed = re.search(r"^scenario H \(.*stopped in ([\d.]+) s with (\d+) health questions.*: ok$",
                       result.stdout, re.M)
    assert closed and int(closed.group(2)) > 0, f"expected scenario H in the summary:\n{result.stdout}"
    print(closed.group(0))
    late_commit = re.search(r"^scenario C \(.*: ok$", result.stdout, re.M)
    assert late_commit, f"expected scenario C in the summary:\n{result.stdout}"
    assert "all scenarios passed" in result.stdout
    # The binary worked on this test's database: the last scenario's jobs
    # are there, one per good record.
    jobs = int(re.search(r"jobs (\d+): ok$", late_commit.group(0)).group(1))
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == jobs
    assert db.scalar("SELECT count(DISTINCT (source_partition, source_offset)) FROM kjb.jobs") == jobs
