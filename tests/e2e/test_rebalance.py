"""Cooperative rebalancing, proven: three `kjb run` consumers in one group
ingest a 12-partition topic while records keep arriving; a fourth joins,
then leaves with SIGTERM. The nodes' own counters
(kjb_partitions_assigned_total, kjb_partitions_revoked_total,
kjb_partitions_lost_total, kjb_rebalances_total) show that the protocol is
COOPERATIVE and that only the partitions that change hands are revoked:
on the join each old member gives up just its share for the newcomer
(never everything, as the eager protocol would), on the leave the
survivors give up nothing. At the end every produced record is exactly
its two jobs or exactly one dead letter."""

from __future__ import annotations

import collections
import threading
import time

import avrokit
from kjbtest import free_port, order, owned_partitions, sample, scrape, unique_name, wait_for, write_ingest_config

PARTITIONS = 12
RATE = 100.0  # records per second, over all partitions
BAD_EVERY = 7  # every seventh record is malformed (7 and 12 coprime: on every partition)


class Feed:
    """Produces good and malformed records at RATE, round robin over the
    partitions, until stopped; `ledger` maps each acknowledged (partition,
    offset) to ("good", order_id) or ("bad", error code)."""

    def __init__(self, kafka, topic: str) -> None:
        self.topic = topic
        self.schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
        self.producer = kafka.producer(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5})
        self.ledger: dict[tuple[int, int], tuple[str, object]] = {}
        self.failed: list[str] = []
        self.produced = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def record(self, i: int) -> tuple[bytes, tuple[str, object]]:
        good = avrokit.confluent(self.schema, order(i), 1)
        if i % BAD_EVERY != BAD_EVERY - 1:
            return good, ("good", i)
        kind = (i // BAD_EVERY) % 3
        if kind == 0:
            return b"\x07" + good[1:], ("bad", "kjb.BAD_MAGIC")
        if kind == 1:  # the framing and one byte of the first varint
            return good[:6], ("bad", "kjb.TRUNCATED")
        return b"\x00\x00\x00\x00\x09" + good[5:], ("bad", "kjb.UNKNOWN_SCHEMA_ID")

    def _run(self) -> None:
        t0, i = time.monotonic(), 0
        while not self.stopping.is_set():
            due = t0 + i / RATE
            now = time.monotonic()
            if now < due:
                self.producer.poll(min(due - now, 0.1))
                continue
            value, what = self.record(i)

            def delivered(err, msg, what=what):
                with self.lock:
                    if err:
                        self.failed.append(str(err))
                    else:
                        self.ledger[(msg.partition(), msg.offset())] = what

            self.producer.produce(self.topic, value, key=str(i).encode(), partition=i % PARTITIONS,
                                  on_delivery=delivered)
            self.produced = i = i + 1
            self.producer.poll(0)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        self.stopping.set()
        self.thread.join()
        left = self.producer.flush(60)
        assert left == 0, f"{left} records not acknowledged by the broker"
        assert not self.failed, f"deliveries failed: {self.failed[:5]}"
        assert len(self.ledger) == self.produced

    def ends(self) -> dict[int, int]:
        with self.lock:
            ends = {p: 0 for p in range(PARTITIONS)}
            for p, o in self.ledger:
                ends[p] = max(ends[p], o + 1)
            return ends


def test_cooperative_join_and_leave_revoke_only_what_moves(kafka, db, make_topic, run_kjb, start_kjb,
                                                           kjb_services_env, tmp_path):
    topic, group = make_topic(partitions=PARTITIONS), unique_name("coop")
    dlq = make_topic(partitions=3, name=f"{topic}.dlq")
    cfg = write_ingest_config(tmp_path / "kjb.cfg", group, f"""
  {{ topic = "{topic}"; schema = "order_created.avsc";
     jobs = ( {{ kind = "confirm"; unique_key = "${{order_id}}"; }},
              {{ kind = "audit"; args = [ "order_id" ]; }} ); }}""")
    assert run_kjb(["migrate"], cfg, env=kjb_services_env).returncode == 0

    ports: dict[str, int] = {}
    procs = {}

    def start(name: str) -> None:
        ports[name] = free_port()
        env = {**kjb_services_env, "KJB_HTTP_LISTEN": f"127.0.0.1:{ports[name]}"}
        procs[name] = start_kjb(["run", "--role", "consumer"], cfg, env=env, name=name)

    def counters(names) -> dict[str, dict[str, float]]:
        out = {}
        for name in names:
            s = scrape(ports[name])
            out[name] = {
                "owned": owned_partitions(s, topic),
                "assigned": sample(s, "kjb_partitions_assigned_total", topic=topic),
                "revoked": sample(s, "kjb_partitions_revoked_total", topic=topic),
                "lost": sample(s, "kjb_partitions_lost_total", topic=topic),
                "protocols": {dict(labels)["protocol"]: v for (n, labels), v in s.items()
                              if n == "kjb_rebalances_total"},
            }
        return out

    def logs() -> str:
        return "\n".join(f"--- {n}\n{p.log()[-3000:]}" for n, p in procs.items())

    def settled(names, owned: list[int]) -> dict[str, dict[str, float]] | None:
        """The counters once the group holds `owned` partitions per node
        (sorted) and two scrapes a second apart agree: the rebalance is over."""
        try:
            first = counters(names)
            if sorted(c["owned"] for c in first.values()) != owned:
                return None
            time.sleep(1)
            second = counters(names)
        except OSError:
            return None  # a node not serving yet
        return second if second == first else None

    def delta(after, before, name, key) -> float:
        return after[name][key] - before[name][key]

    feed = Feed(kafka, topic)
    try:
        # Three members share the twelve partitions, four each.
        for name in ("a", "b", "c"):
            start(name)
        old = ("a", "b", "c")
        before = wait_for(lambda: settled(old, [4, 4, 4]), timeout=180, interval=0.5,
                          message=lambda: f"three members with 4 partitions each\n{logs()}")
        feed.start()
        wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs") > 0, timeout=60,
                 message=lambda: f"ingest under way\n{logs()}")

        # A fourth joins: it gets 3 partitions, one from each old member;
        # the old members revoke that one and keep consuming the others.
        start("d")
        joined = wait_for(lambda: settled(old + ("d",), [3, 3, 3, 3]), timeout=120, interval=0.5,
                          message=lambda: f"four members with 3 partitions each\n{logs()}")
        join_revoked = {n: delta(joined, before, n, "revoked") for n in old}
        join_assigned = {n: delta(joined, before, n, "assigned") for n in old}
        print(f"join: old members revoked {join_revoked}, were assigned {join_assigned}; "
              f"the new one was assigned {joined['d']['assigned']:.0f}")
        for n in old:
            assert join_revoked[n] == before[n]["owned"] - joined[n]["owned"] == 1, (n, joined, before)
            assert join_assigned[n] == 0, (n, joined, before)
        assert sum(join_revoked.values()) == joined["d"]["assigned"] == 3
        assert joined["d"]["revoked"] == 0

        # It leaves gracefully: its 3 partitions go one to each survivor,
        # which revoke nothing.
        time.sleep(3)  # under load for a while with four members
        assert procs["d"].stop() == 0, procs["d"].log()[-3000:]
        left = wait_for(lambda: settled(old, [4, 4, 4]), timeout=120, interval=0.5,
                        message=lambda: f"three members with 4 partitions each again\n{logs()}")
        leave_revoked = {n: delta(left, joined, n, "revoked") for n in old}
        leave_assigned = {n: delta(left, joined, n, "assigned") for n in old}
        print(f"leave: survivors revoked {leave_revoked}, were assigned {leave_assigned}")
        assert leave_revoked == {n: 0 for n in old}, (left, joined)
        assert leave_assigned == {n: 1 for n in old}, (left, joined)

        # The protocol was COOPERATIVE throughout, and nothing was lost.
        for n, c in left.items():
            assert set(c["protocols"]) == {"COOPERATIVE"} and c["protocols"]["COOPERATIVE"] >= 1, (n, c)
            assert c["lost"] == 0, (n, c)
        assert joined["d"]["protocols"].keys() == {"COOPERATIVE"} and joined["d"]["lost"] == 0
        time.sleep(3)
        feed.finish()
    finally:
        feed.stopping.set()
        if feed.thread.is_alive():
            feed.thread.join(timeout=10)

    # Settle: the group commits every record; then the books.
    ends = feed.ends()
    good = sum(1 for what, _ in feed.ledger.values() if what == "good")
    bad = len(feed.ledger) - good
    wait_for(lambda: kafka.committed(group, topic) == ends, timeout=180, interval=0.5,
             message=lambda: f"offsets {ends} committed, have {kafka.committed(group, topic)}\n{logs()}")
    for n in old:
        assert procs[n].stop() == 0, procs[n].log()[-3000:]

    jobs = collections.defaultdict(list)
    for p, o, kind in db.query("SELECT source_partition, source_offset, kind FROM kjb.jobs "
                               "WHERE source_topic = %s", topic):
        jobs[(p, o)].append(kind)
    letters = kafka.consume(dlq, timeout=60)
    dead = collections.Counter((int(r.header("__connect.errors.partition")),
                                int(r.header("__connect.errors.offset"))) for r in letters)
    codes = {(int(r.header("__connect.errors.partition")), int(r.header("__connect.errors.offset"))):
             r.header("__connect.errors.exception.class.name") for r in letters}
    wrong = []
    for coords, (what, detail) in sorted(feed.ledger.items()):
        got = sorted(jobs.get(coords, []))
        if what == "good" and (got != ["audit", "confirm"] or dead[coords]):
            wrong.append((coords, what, detail, got, dead[coords]))
        if what == "bad" and (got or dead[coords] != 1 or codes[coords] != detail):
            wrong.append((coords, what, detail, got, dead[coords], codes.get(coords)))
    strays = sorted((set(jobs) | set(dead)) - set(feed.ledger))
    print(f"{len(feed.ledger)} records ({good} good, {bad} malformed) over {PARTITIONS} partitions; "
          f"{sum(len(k) for k in jobs.values())} jobs, {len(letters)} dead letters")
    assert not wrong, f"{len(wrong)} records without exactly their outcome, e.g. {wrong[:5]}"
    assert not strays, f"outcomes for records never produced: {strays[:5]}"
    assert len(letters) == bad and bad > 0
    # The unique keys agree: one confirm job per order, none twice.
    assert db.query("SELECT count(*), count(DISTINCT unique_key) FROM kjb.jobs WHERE kind = 'confirm'") \
        == [(good, good)]
    assert db.scalar("SELECT count(*) FROM kjb.jobs") == 2 * good
