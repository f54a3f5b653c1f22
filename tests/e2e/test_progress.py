"""Progress of long commands (`kjb produce`, `kjb dlq reindex`) on stderr:
on a terminal one line rewritten in place with done/total, the rate and
the ETA, ended by a final line; elsewhere plain lines now and then (every
KJB_PROGRESS_INTERVAL_MS here, 5 s by default), and nothing at all for a
short run."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from kjbtest import kjb_argv, kjb_env, run_on_terminal, unique_name, write_ingest_config

NUM = r"\d{1,3}(?:,\d{3})*"
RATE = rf"(?:{NUM}|\d\.\d)/s"
DURATION = r"(?:\d+s|\d+m\d\ds|\d+h\d\dm)"
# While it runs: "produce: 4,210/10,000 records (42%), 1,830/s, ETA 3s";
# the rate once it can be told, the ETA once the rate is not 0.
UPDATE = re.compile(rf"(?P<what>\w+): (?P<done>{NUM})(?:/(?P<total>{NUM}) records \((?P<pct>\d+)%\)| records)"
                    rf"(?:, (?P<rate>{RATE})(?:, ETA (?P<eta>{DURATION}))?)?")
# At the end: "produce: 10,000/10,000 records (100%) in 5s, 1,930/s".
FINAL = re.compile(rf"(?P<what>\w+): (?P<done>{NUM})(?:/(?P<total>{NUM}) records \((?P<pct>\d+)%\)| records)"
                   rf" in (?:<1s|{DURATION}, {RATE})")

# Enough records that the commands run for a good part of a second even
# on a fast machine: several updates of the line.
MANY = 30000
# Reading a dead letter costs less than producing a record.
DLQ_SIZE = 60000
# A log line (a retried request, say) may come between two updates.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:debug|info |warn |error) [^\n]*\n")


def number(text: str) -> int:
    return int(text.replace(",", ""))


def check_update(m: re.Match, what: str, total: int | None) -> int:
    """An update's numbers agree with each other; returns done."""
    assert m["what"] == what, m[0]
    done = number(m["done"])
    if total is None:
        assert m["total"] is None and m["eta"] is None, m[0]
    else:
        assert number(m["total"]) == total, m[0]
        assert int(m["pct"]) == min(100, done * 100 // total), m[0]
    return done


def terminal_lines(stderr: str, what: str, total: int | None, seconds: float) -> tuple[list[re.Match], str, str]:
    """Splits what a command wrote to a terminal into its updates (each
    "\\r<line>\\033[K", done never going back), its final line
    ("\\r<line>\\033[K\\n") and what followed; checks each. Log lines
    are left out."""
    stderr = LOG_LINE.sub("", stderr)
    end = stderr.index("\x1b[K\n")
    drawn, rest = stderr[:end], stderr[end + 4:]
    assert drawn.startswith("\r"), repr(stderr[:200])
    *updates, final = drawn[1:].split("\r")
    matches, last = [], 0
    for u in updates:
        assert u.endswith("\x1b[K"), repr(u)
        m = UPDATE.fullmatch(u[:-3])
        assert m, repr(u)
        done = check_update(m, what, total)
        assert done >= last, updates
        last = done
        matches.append(m)
    # At most five a second.
    assert len(updates) <= seconds * 5 + 1, (len(updates), seconds)
    return matches, final, rest


def plain_lines(stderr: str, what: str) -> tuple[list[re.Match], list[re.Match]]:
    """The plain progress lines of what among stderr's lines: updates and
    final lines. No line is rewritten in place."""
    assert "\r" not in stderr and "\x1b" not in stderr, repr(stderr[:300])
    updates, finals = [], []
    for line in stderr.splitlines():
        if not line.startswith(f"{what}: "):
            continue
        m = FINAL.fullmatch(line)
        if m:
            finals.append(m)
            continue
        m = UPDATE.fullmatch(line)
        assert m, repr(line)
        updates.append(m)
    return updates, finals


# --------------------------------------------------------------------------
# produce

GOOD = {"order_id": 5, "customer": {"id": 1, "email": "e@x.example", "name": "E"}, "amount": "12.50",
        "currency": "GBP", "items": [{"sku": "S", "quantity": 1, "price": 2.5}],
        "created_at": "2026-11-21T10:00:00.123Z", "note": None, "tags": {}}


def events(path: Path, n: int) -> Path:
    """n JSON lines of order_created, and a blank line that is no record."""
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({**GOOD, "order_id": i}) + "\n")
            if i == n // 2:
                f.write("\n")
    return path


@pytest.fixture
def produce_setup(kafka, make_topic, tmp_path):
    topic = make_topic()
    cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "k"; }} ); }}""")
    return topic, cfg, {"KJB_KAFKA_BROKERS": kafka.bootstrap}


def summary(topic: str, n: int) -> str:
    return f'kjb: produce: {n} records produced to "{topic}", 0 bad lines, 0 undelivered'


def test_produce_on_a_terminal(produce_setup, kjb_bin, kafka, tmp_path):
    topic, cfg, env = produce_setup
    res = run_on_terminal(kjb_bin, ["produce", "--topic", topic], cfg, env=env,
                          stdin=events(tmp_path / "events.jsonl", MANY))
    assert res.returncode == 0, res.stderr
    updates, final, rest = terminal_lines(res.stderr, "produce", MANY, res.seconds)
    assert updates, repr(res.stderr)
    # A line with everything: done of the total, the rate and the ETA.
    full = [m for m in updates if m["rate"] and m["eta"]]
    assert full, [m[0] for m in updates]
    assert FINAL.fullmatch(final), repr(final)
    assert final.startswith(f"produce: 30,000/30,000 records (100%) in "), repr(final)
    # Then the summary, on a line of its own.
    assert [ln for ln in rest.splitlines() if ln.startswith("kjb: ")] == [summary(topic, MANY)]
    assert sum(kafka.record_counts(topic).values()) == MANY


def test_produce_elsewhere(produce_setup, run_kjb, kjb_bin, tmp_path):
    topic, cfg, env = produce_setup
    # A short run adds nothing to stderr.
    res = run_kjb(["produce", "--topic", topic], cfg, env=env,
                  input="".join(json.dumps({**GOOD, "order_id": i}) + "\n" for i in range(3)))
    assert res.returncode == 0, res.stderr
    assert plain_lines(res.stderr, "produce") == ([], [])
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("kjb: ")] == [summary(topic, 3)]

    # A long one (long against the interval) writes plain lines, then a
    # final line, then the summary.
    path = events(tmp_path / "events.jsonl", MANY)
    with path.open("rb") as fin:
        res = subprocess.run(kjb_argv(kjb_bin, ["produce", "--topic", topic], cfg), stdin=fin,
                             capture_output=True, text=True, timeout=120,
                             env=kjb_env({**env, "KJB_PROGRESS_INTERVAL_MS": "50"}))
    assert res.returncode == 0, res.stderr
    updates, finals = plain_lines(res.stderr, "produce")
    assert updates, res.stderr
    last = 0
    for m in updates:
        done = check_update(m, "produce", MANY)
        assert done >= last
        last = done
    assert [m[0].split(" in ")[0] for m in finals] == ["produce: 30,000/30,000 records (100%)"]
    lines = res.stderr.splitlines()
    assert lines.index(finals[0][0]) > lines.index(updates[-1][0])
    assert lines.index(finals[0][0]) < lines.index(summary(topic, MANY))


def test_produce_from_a_pipe_has_no_total(produce_setup, kjb_bin):
    """Lines coming through a pipe cannot be counted first: no total, no
    percentage, no ETA."""
    topic, cfg, env = produce_setup
    proc = subprocess.Popen(kjb_argv(kjb_bin, ["produce", "--topic", topic], cfg), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=kjb_env({**env, "KJB_PROGRESS_INTERVAL_MS": "100"}))
    for batch in range(5):
        proc.stdin.write("".join(json.dumps({**GOOD, "order_id": batch * 100 + i}) + "\n" for i in range(100)))
        proc.stdin.flush()
        time.sleep(0.3)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    updates, finals = plain_lines(err, "produce")
    assert updates, err
    for m in updates:
        check_update(m, "produce", None)
    assert [m[0].split(" in ")[0] for m in finals] == ["produce: 500 records"]


# --------------------------------------------------------------------------
# dlq reindex

def connect_headers(offset: int) -> list[tuple[str, bytes]]:
    return [("__connect.errors.topic", b"s"), ("__connect.errors.partition", b"0"),
            ("__connect.errors.offset", str(offset).encode()),
            ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
            ("__connect.errors.exception.message", b"no JSON")]


def dead_letters(kafka, dlq: str, n: int) -> None:
    """n dead letters, as Kafka Connect writes them, over the partitions."""
    errors: list = []
    producer = kafka.producer(**{"enable.idempotence": True, "acks": "all", "linger.ms": 50})
    for i in range(n):
        producer.produce(dlq, value=b"{bad", headers=connect_headers(i), partition=i % 2,
                         on_delivery=lambda err, msg: err and errors.append(err))
        if i % 10000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors


@pytest.fixture
def reindex_setup(kafka, db, make_topic, run_kjb, kjb_services_env, tmp_path):
    """A DLQ of DLQ_SIZE dead letters over two partitions, and a record without
    the headers (read and skipped all the same)."""
    dlq = make_topic(partitions=2)
    cfg = write_ingest_config(tmp_path / "kjb.cfg", unique_name("progress"), f"""
  {{ topic = "{unique_name('unused')}"; schema = "order_created.avsc"; jobs = ( {{ kind = "k"; }} ); }}""")
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    dead_letters(kafka, dlq, DLQ_SIZE - 1)
    kafka.produce(dlq, [b"plain"], partition=0)
    assert sum(kafka.record_counts(dlq).values()) == DLQ_SIZE
    return dlq, cfg, kjb_services_env


def reindexed(dlq: str, records: int = DLQ_SIZE, added: int = DLQ_SIZE - 1) -> str:
    return (f'reindexed "{dlq}": {records} records (1 not dead letters); {added} rows added, 0 updated, '
            "0 unchanged, 0 removed (no committed record), 0 kept before the log start\n")


def test_reindex_on_a_terminal(reindex_setup, kjb_bin):
    dlq, cfg, env = reindex_setup
    res = run_on_terminal(kjb_bin, ["dlq", "reindex", "--topic", dlq], cfg, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == reindexed(dlq)
    updates, final, rest = terminal_lines(res.stderr, "reindex", DLQ_SIZE, res.seconds)
    assert [m for m in updates if m["rate"] and m["eta"]], repr(res.stderr)
    assert FINAL.fullmatch(final) and final.startswith("reindex: 60,000/60,000 records (100%) in "), repr(final)
    assert rest == ""


def test_reindex_elsewhere(reindex_setup, kafka, make_topic, run_kjb):
    dlq, cfg, env = reindex_setup
    # By default a plain line comes every 5 s: none in a short run.
    small = make_topic(partitions=2)
    dead_letters(kafka, small, 2)
    kafka.produce(small, [b"plain"], partition=0)
    res = run_kjb(["dlq", "reindex", "--topic", small], cfg, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == reindexed(small, 3, 2)
    assert LOG_LINE.sub("", res.stderr) == ""

    res = run_kjb(["dlq", "reindex", "--topic", dlq], cfg, env={**env, "KJB_PROGRESS_INTERVAL_MS": "20"})
    assert res.returncode == 0, res.stderr
    assert res.stdout == reindexed(dlq)
    updates, finals = plain_lines(res.stderr, "reindex")
    assert updates, res.stderr
    last = 0
    for m in updates:
        done = check_update(m, "reindex", DLQ_SIZE)
        assert done >= last
        last = done
    assert [m[0].split(" in ")[0] for m in finals] == ["reindex: 60,000/60,000 records (100%)"]
    assert res.stderr.endswith(finals[0][0] + "\n")
