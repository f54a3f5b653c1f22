"""Crash safety: kjb run is SIGKILLed again and again while it ingests a
large topic; after a final clean run every source offset is exactly its
jobs (both fan-out kinds), none missing, none twice."""

from __future__ import annotations

import random
import time

import avrokit
from kjbtest import order, unique_name, wait_for, write_ingest_config

RECORDS = 40_000
PARTITIONS = 4
KILLS = 5


def test_sigkill_while_ingesting_loses_and_duplicates_nothing(kafka, db, make_topic, run_kjb, start_kjb,
                                                            kjb_services_env, tmp_path):
    schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    topic, group = make_topic(partitions=PARTITIONS), unique_name("crash")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc";
     jobs = ( {{ kind = "confirm"; unique_key = "${{order_id}}"; }},
              {{ kind = "audit"; args = [ "order_id", "customer.email" ]; }} ); }}""")
    # A killed member holds its partitions until its session times out;
    # keep that short so the test spends its time ingesting.
    text = cfg.read_text().replace(
        f'group = "{group}";',
        f'group = "{group}"; properties = [ "session.timeout.ms=10000", "heartbeat.interval.ms=1000" ];')
    # Batches of 1,000 (not the suite's 50): each batch ends in a
    # synchronous commit, and 800 of those on a loaded machine took longer
    # than the test's patience; 40 batches still give the kills plenty of
    # places to land mid-ingest.
    text = text.replace("batch_size = 50;", "batch_size = 1000;")
    cfg.write_text(text)
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0
    values = [avrokit.confluent(schema, order(i), 1) for i in range(RECORDS)]
    for p in range(PARTITIONS):
        kafka.produce(topic, values[p::PARTITIONS], partition=p)
    ends = kafka.end_offsets(topic)
    assert sum(ends.values()) == RECORDS

    count = lambda: db.scalar("SELECT count(*) FROM kjb.jobs")  # noqa: E731
    rnd = random.Random(7)
    kills_mid_ingest = []
    for k in range(KILLS):
        before = count()
        if before >= 2 * RECORDS:
            break
        proc = start_kjb(["run"], cfg, env=kjb_services_env, name=f"killed-{k}")
        # Wait until this instance is making progress, then kill it at a
        # random moment within its batches.
        wait_for(lambda: count() > before, timeout=240, message=lambda: f"progress after restart {k}\n{proc.log()}")
        time.sleep(rnd.uniform(0.05, 0.6))
        proc.kill()
        after = count()
        if after < 2 * RECORDS:
            kills_mid_ingest.append(after)
    assert len(kills_mid_ingest) >= 3, f"only {len(kills_mid_ingest)} kills landed mid-ingest: {kills_mid_ingest}"

    final = start_kjb(["run"], cfg, env=kjb_services_env, name="final")
    # Generous: on a loaded machine a commit has been seen to take a second.
    wait_for(lambda: count() == 2 * RECORDS, timeout=420,
             message=lambda: f"{2 * RECORDS} jobs, have {count()}\n{final.log()}")
    wait_for(lambda: kafka.committed(group, topic) == ends, timeout=240, message="offsets committed to the end")
    assert final.stop() == 0

    # Exactly once: each kind holds every (partition, offset) once.
    for kind in ("confirm", "audit"):
        rows = db.query("SELECT source_partition, source_offset FROM kjb.jobs WHERE kind = %s", kind)
        assert len(rows) == RECORDS
        assert set(rows) == {(p, o) for p, end in ends.items() for o in range(end)}
    # And each record's two jobs describe the same order.
    mismatched = db.scalar(
        "SELECT count(*) FROM kjb.jobs c JOIN kjb.jobs a USING (source_partition, source_offset)"
        " WHERE c.kind = 'confirm' AND a.kind = 'audit'"
        " AND (c.args->'order_id') IS DISTINCT FROM (a.args->'order_id')")
    assert mismatched == 0
    print(f"kills mid-ingest at job counts {kills_mid_ingest}")
