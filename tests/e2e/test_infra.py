"""The test infrastructure itself: the broker, Kafka's tools and the
database that every other e2e test relies on answer for real."""

from __future__ import annotations

import time

from kjbtest import wait_for


def test_kafka_produce_and_consume(kafka, make_topic):
    topic = make_topic(partitions=2)
    kafka.produce(topic, [b"first", b"\x00\x01binary", "third"], key=b"k1",
                  headers=[("kjb.test", b"yes"), ("kjb.test", b"again")])

    records = kafka.consume(topic, count=3)

    assert sorted(r.value for r in records) == [b"\x00\x01binary", b"first", b"third"]
    assert {r.key for r in records} == {b"k1"}
    assert len({r.partition for r in records}) == 1  # one key, one partition
    assert [r.offset for r in records] == [0, 1, 2]
    assert records[0].headers == [("kjb.test", b"yes"), ("kjb.test", b"again")]
    assert records[0].header("kjb.test") == "again"
    assert abs(records[0].timestamp / 1000 - time.time()) < 300
    assert sum(kafka.end_offsets(topic).values()) == 3


def test_kafka_auto_creates_topics(kafka):
    topic = f"auto_{time.monotonic_ns()}"
    kafka.produce(topic, [b"hello"])
    assert [r.value for r in kafka.consume(topic)] == [b"hello"]
    assert kafka.partitions(topic) == [0]


def test_kafka_consumer_group_tool_resets_offsets(kafka, make_topic):
    topic = make_topic(partitions=1)
    kafka.produce(topic, [b"a", b"b", b"c"])
    group = f"{topic}_group"
    consumer = kafka.consumer(group=group)
    consumer.subscribe([topic])
    seen = []
    wait_for(lambda: (m := consumer.poll(0.5)) is not None and not m.error() and seen.append(m) or len(seen) == 3,
             timeout=30, message="three records through a consumer group")
    consumer.commit(asynchronous=False)
    consumer.close()
    assert kafka.committed(group, topic) == {0: 3}

    result = kafka.consumer_groups("--group", group, "--topic", topic,
                                   "--reset-offsets", "--to-earliest", "--execute")
    assert result.returncode == 0, result.stderr

    assert kafka.committed(group, topic) == {0: 0}
    described = kafka.consumer_groups("--describe", "--group", group)
    assert described.returncode == 0, described.stderr
    assert topic in described.stdout


def test_postgres_answers(pg, db):
    assert db.scalar("SELECT 1") == 1
    assert db.scalar("SELECT current_database()") == db.name
    with pg.connect() as conn:
        assert conn.execute("SELECT current_database(), current_user").fetchone() == ("kjb", "postgres")


def test_each_test_gets_its_own_database(db):
    db.query("CREATE TABLE mine (x int)")
    db.query("INSERT INTO mine VALUES (%s), (%s)", 1, 2)
    assert db.scalar("SELECT sum(x) FROM mine") == 3
    assert db.cluster.connect().execute("SELECT to_regclass('public.mine')").fetchone() == (None,)
