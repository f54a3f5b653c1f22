"""Helpers for the end-to-end tests: handles on the throwaway Kafka and
PostgreSQL that scripts/kafka.sh and scripts/pg.sh start, and on kjb
processes. conftest.py turns them into fixtures; tests import the plain
helpers (wait_for, Record, free_port, get, order, write_ingest_config, ...)
from here, never from each other."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import tty
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pytest

import avrokit
from tokenserver import Client, TokenServer

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"

# Spawned kjb processes run under these unless the caller's environment
# already sets them. exitcode=86 tells a sanitizer failure from kjb's own
# exit codes (0, 1, 2).
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "LSAN_OPTIONS": f"suppressions={REPO / 'tests' / 'lsan.supp'}",
    # A ThreadSanitizer build (build/tsan) reports races and exits 86 too.
    "TSAN_OPTIONS": f"exitcode=86:second_deadlock_stack=1:suppressions={REPO / 'tests' / 'tsan' / 'tsan.supp'}",
    # `kjb run` serves HTTP on http.listen, 127.0.0.1:9464 unless told
    # otherwise: tests run several at once, so each takes a free port.
    "KJB_HTTP_LISTEN": "127.0.0.1:0",
}
SANITIZER_EXIT = 86
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "WARNING: ThreadSanitizer",
    ": runtime error: ",
)

# Subcommands that take a second word: `kjb jobs ls`, `kjb dlq peek`, `kjb audit ls`.
_TWO_WORD_COMMANDS = {"jobs", "dlq", "audit"}


def sanitizer_report(text: str) -> str | None:
    """The sanitizer report in a process's output, or None."""
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            start = text.rfind("\n", 0, max(0, i - 200)) + 1
            return text[start : start + 8000]
    return None


def kjb_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a kjb process: ours, sanitizer options, `extra`."""
    env = dict(os.environ)
    for key, value in SANITIZER_ENV.items():
        env.setdefault(key, value)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def kjb_argv(binary: Path, args: Sequence[str], config: Path | str | None) -> list[str]:
    """`kjb <command words> -c CONFIG <rest>`: -c goes right after the
    subcommand so that it parses whether or not kjb permutes options."""
    args = [str(a) for a in args]
    if config is None:
        return [str(binary), *args]
    words = 2 if args and args[0] in _TWO_WORD_COMMANDS and len(args) > 1 else 1
    words = min(words, len(args))
    return [str(binary), *args[:words], "-c", str(config), *args[words:]]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> Any:
    """Poll `predicate` until it returns something truthy and return that;
    raise AssertionError naming `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported below
            last_exc = exc
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def unique_name(hint: str = "t", maxlen: int = 60) -> str:
    """A name unique to this run, safe as a Kafka topic, group or SQL name."""
    slug = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_") or "t"
    suffix = uuid.uuid4().hex[:8]
    return f"{slug[: maxlen - len(suffix) - 1]}_{suffix}"


# --------------------------------------------------------------------------
# Test PKI


@dataclass
class Pki:
    """A throwaway certificate authority and what it signed, made with the
    openssl CLI. `kafka` and `pg` are directories holding ca.pem,
    server.pem (the server's certificate, then the CA's) and server.key
    (PKCS#8, unencrypted), the layout scripts/kafka.sh (KJB_KAFKA_TLS_DIR)
    and scripts/pg.sh (KJB_PG_TLS_DIR) read. The broker's certificate names
    localhost and 127.0.0.1; PostgreSQL's names localhost only, so that
    `host=127.0.0.1 sslmode=verify-full` is a name mismatch. `other_ca` is
    a second CA that signed nothing: trusting it alone must fail."""

    dir: Path
    ca: Path
    other_ca: Path
    kafka: Path
    pg: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    try:
        res = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                             timeout=60, check=False)
    except FileNotFoundError:
        raise RuntimeError("openssl not found (run scripts/deps.sh)") from None
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{res.stderr}")


def _make_ca(dir: Path, name: str) -> tuple[Path, Path]:
    key, cert = dir / f"{name}.key", dir / f"{name}.pem"
    _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", f"/O=kjb tests/CN=kjb test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=dir)
    return key, cert


def _make_server(dir: Path, ca_key: Path, ca_cert: Path, sans: str) -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "ext.cnf").write_text(
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = {sans}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid,issuer\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/O=kjb tests/CN=localhost", cwd=dir)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", ca_cert, "-CAkey", ca_key, "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-days", "30", "-extfile", "ext.cnf",
             "-out", "leaf.pem", cwd=dir)
    (dir / "server.pem").write_bytes((dir / "leaf.pem").read_bytes() + ca_cert.read_bytes())
    (dir / "ca.pem").write_bytes(ca_cert.read_bytes())
    (dir / "server.key").chmod(0o600)
    for f in ("server.csr", "leaf.pem", "ext.cnf"):
        (dir / f).unlink()
    return dir


def make_test_pki(dir: Path) -> Pki:
    """Makes the CA, the two server certificates and the unrelated CA in
    `dir`; raises RuntimeError with openssl's output if it cannot."""
    dir = dir.resolve()
    dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _make_ca(dir, "ca")
    other_key, other_ca = _make_ca(dir, "other-ca")
    other_key.unlink()
    kafka = _make_server(dir / "kafka", ca_key, ca, "DNS:localhost,IP:127.0.0.1")
    pg = _make_server(dir / "pg", ca_key, ca, "DNS:localhost")
    return Pki(dir=dir, ca=ca, other_ca=other_ca, kafka=kafka, pg=pg)


# --------------------------------------------------------------------------
# Services


class Service:
    """A service started by one of our scripts into `dir`: launched without
    waiting (so that Kafka and PostgreSQL start side by side), then waited
    for. A watchdog process stops it if pytest dies without tearing down."""

    # Longer than the scripts' own start limits (kafka.sh 240 s, pg.sh
    # 180 s), so that their error, with the log tail, is what gets reported;
    # a JVM on a loaded 2-core machine has been seen to need over 150 s.
    def __init__(self, name: str, script: Path, dir: Path, timeout: float = 300.0,
                 env: dict[str, str] | None = None):
        self.name = name
        self.script = script
        self.dir = Path(dir)
        self.timeout = timeout
        # Added to the script's environment (e.g. KJB_KAFKA_TLS_DIR), on
        # every start.
        self.env = dict(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_after: float | None = None
        self.output = ""
        self.ok: bool | None = None
        self.stopped = False
        # Set by a failing test: stop the service but keep its data.
        self.keep_data = False
        self._waiter: threading.Thread | None = None

    def launch(self) -> None:
        if self.proc is not None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        # Its own session: a Ctrl-C meant for pytest must not cut a start
        # script short and leave half a service behind.
        # Test servers need no durability: PostgreSQL without fsync keeps a
        # slow shared disk from stalling every commit.
        env = {**os.environ, "KJB_PG_FAST": os.environ.get("KJB_PG_FAST", "1"), **self.env}
        self.proc = subprocess.Popen(
            [str(self.script), "start", str(self.dir)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._waiter = threading.Thread(target=self._collect, name=f"start-{self.name}", daemon=True)
        self._waiter.start()
        if os.environ.get("KJB_E2E_KEEP") != "1":
            # Once pytest is gone, let the start script finish, then stop.
            stop = shlex.join([str(self.script), "stop", str(self.dir)])
            watch = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                     f"while kill -0 {self.proc.pid} 2>/dev/null; do sleep 0.5; done; {stop}")
            self.watchdog = subprocess.Popen(
                ["bash", "-c", watch],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _collect(self) -> None:
        assert self.proc is not None
        try:
            self.output, _ = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.output = (self.proc.communicate()[0] or "") + f"\n(no answer in {self.timeout:.0f}s)"
        self.ready_after = time.monotonic() - self.started_at
        self.ok = self.proc.returncode == 0

    def wait(self) -> None:
        """Wait until started; raise RuntimeError with the script's output
        (which holds the log tail) if it did not."""
        self.launch()
        assert self._waiter is not None
        self._waiter.join()
        if not self.ok:
            raise RuntimeError(f"{self.script.name} start {self.dir} failed:\n{self.output}")

    def stop(self) -> None:
        if self.stopped or self.proc is None:
            return
        self.stopped = True
        # Stopping halfway through a start leaves debris: let it finish
        # (the scripts have their own time limits), and only then stop.
        if self._waiter is not None:
            self._waiter.join(timeout=self.timeout)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        res = subprocess.run(
            [str(self.script), "stop", str(self.dir)],
            env={**os.environ, "KJB_PG_KEEP": "1" if self.keep_data else "0"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if self.keep_data else subprocess.DEVNULL,
            text=True,
            timeout=120,
            check=False,
        )
        if self.keep_data:
            print(f"\n{self.name}: data kept in {self.dir}\n{res.stderr or ''}")
        if self.watchdog is not None and self.watchdog.poll() is None:
            self.watchdog.kill()
            self.watchdog.wait()


@dataclass
class Record:
    """A consumed Kafka record; headers keep their order and duplicates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int | None = None

    def header(self, name: str) -> str | None:
        """The last header called `name`, decoded as UTF-8, or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return None if value is None else value.decode("utf-8", "replace")
        return None


@dataclass
class KafkaTLS:
    """The broker's TLS listeners (scripts/kafka.sh, KJB_KAFKA_TLS_DIR):
    `ssl` and `sasl_ssl` are host:port, `ca` the CA that signed the
    broker's certificate, `other_ca` one that did not; `user` and
    `password` log in over SASL_SSL with PLAIN (or SCRAM-SHA-256)."""

    ssl: str
    sasl_ssl: str
    ca: Path
    other_ca: Path
    user: str
    password: str

    def client_conf(self, mechanism: str | None = None) -> dict[str, str]:
        """confluent_kafka settings for the SSL listener, or (with a SASL
        mechanism) for the SASL_SSL one."""
        if mechanism is None:
            return {"bootstrap.servers": self.ssl, "security.protocol": "ssl", "ssl.ca.location": str(self.ca)}
        return {"bootstrap.servers": self.sasl_ssl, "security.protocol": "sasl_ssl",
                "ssl.ca.location": str(self.ca), "sasl.mechanisms": mechanism,
                "sasl.username": self.user, "sasl.password": self.password}


def oidc_properties(server: TokenServer, client: Client, secret: str | None = None,
                    scope: str = "kafka") -> list[str]:
    """kafka.properties for SASL/OAUTHBEARER with librdkafka's OIDC client
    credentials flow against `server`, as `client` (with `secret` instead
    of the client's own, to fail), for the broker's OAUTHBEARER listener."""
    return ["security.protocol=sasl_plaintext", "sasl.mechanisms=OAUTHBEARER", "sasl.oauthbearer.method=oidc",
            f"sasl.oauthbearer.client.id={client.id}",
            f"sasl.oauthbearer.client.secret={client.secret if secret is None else secret}",
            f"sasl.oauthbearer.token.endpoint.url={server.token_url}", f"sasl.oauthbearer.scope={scope}"]


class Kafka:
    """The session's broker: `.bootstrap` plus client helpers; `.tls`
    (KafkaTLS) when it was started with TLS listeners, else None; `.oauth`
    the host:port of its OAUTHBEARER listener when it has one (started
    with KJB_KAFKA_OAUTH_JWKS_URL), else None."""

    def __init__(self, service: Service, pki: Pki | None = None):
        self.service = service
        self.dir = service.dir
        self.bootstrap = (service.dir / "bootstrap").read_text().strip()
        self.tls: KafkaTLS | None = None
        oauth = service.dir / "bootstrap.oauth"
        self.oauth: str | None = oauth.read_text().strip() if oauth.is_file() else None
        if pki is not None and (service.dir / "bootstrap.ssl").is_file():
            read = lambda name: (service.dir / name).read_text().strip()  # noqa: E731
            self.tls = KafkaTLS(ssl=read("bootstrap.ssl"), sasl_ssl=read("bootstrap.sasl_ssl"),
                                ca=pki.kafka / "ca.pem", other_ca=pki.other_ca,
                                user=read("sasl.user"), password=read("sasl.password"))

    def __repr__(self) -> str:
        return f"Kafka({self.bootstrap})"

    def admin(self):
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap})

    def producer(self, **conf: Any):
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0, **conf})

    def consumer(self, group: str | None = None, **conf: Any):
        from confluent_kafka import Consumer

        return Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": group or unique_name("reader"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                **conf,
            }
        )

    def create_topic(self, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        """Create `name` and wait until every partition has a leader."""
        from confluent_kafka.admin import NewTopic

        admin = self.admin()
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=60,
        )
        # A broker sharing two cores with everything else has been seen to
        # take over a minute to answer (clean-clone CI beside other work).
        futures[name].result(timeout=180)

        def ready() -> bool:
            md = admin.list_topics(name, timeout=5).topics.get(name)
            return bool(
                md is not None
                and md.error is None
                and len(md.partitions) == partitions
                and all(p.leader >= 0 for p in md.partitions.values())
            )

        wait_for(ready, timeout=30, message=f"topic {name} to have leaders")
        return name

    def partitions(self, topic: str) -> list[int]:
        md = self.admin().list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            raise RuntimeError(f"topic {topic}: {md.error}")
        return sorted(md.partitions)

    def produce(
        self,
        topic: str,
        values: Iterable[bytes | str | None],
        key: bytes | str | None = None,
        headers: list[tuple[str, bytes | str]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Produce each value (as one record) and wait for the acks."""
        errors: list[Any] = []
        producer = self.producer(**{"enable.idempotence": True, "acks": "all"})
        for value in values:
            kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers,
                                      "on_delivery": lambda err, msg: err and errors.append(err)}
            if partition is not None:
                kwargs["partition"] = partition
            producer.produce(topic, **kwargs)
        remaining = producer.flush(30)
        if remaining or errors:
            raise RuntimeError(f"produce to {topic}: {remaining} undelivered, errors {errors}")

    def end_offsets(self, topic: str) -> dict[int, int]:
        """The high watermark of each partition."""
        from confluent_kafka import TopicPartition

        consumer = self.consumer()
        try:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in self.partitions(topic)
            }
        finally:
            consumer.close()

    def record_counts(self, topic: str) -> dict[int, int]:
        """The committed records of each partition, as a read_committed
        reader sees them. Unlike end_offsets this does not count the
        markers of Kafka transactions (kjb writes dead letters in them)."""
        counts = {p: 0 for p in self.partitions(topic)}
        for r in self.consume(topic):
            counts[r.partition] += 1
        return counts

    def consume(self, topic: str, count: int | None = None, timeout: float = 15.0) -> list[Record]:
        """Records of `topic` from the beginning, without a consumer group
        commit: the first `count`, or (count None) everything up to the end
        offsets as of the call. Waits at most `timeout` seconds for them."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        ends = self.end_offsets(topic) if count is None else None
        consumer = self.consumer()
        records: list[Record] = []
        try:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions(topic)])
            done = {p for p, end in (ends or {}).items() if end == 0}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if count is not None and len(records) >= count:
                    break
                if ends is not None and done >= set(ends):
                    break
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        if ends is not None and msg.offset() >= ends[msg.partition()]:
                            done.add(msg.partition())
                        continue
                    raise RuntimeError(f"consume {topic}: {msg.error()}")
                ts_type, ts = msg.timestamp()
                records.append(
                    Record(
                        topic=msg.topic(),
                        partition=msg.partition(),
                        offset=msg.offset(),
                        key=msg.key(),
                        value=msg.value(),
                        headers=list(msg.headers() or []),
                        timestamp=ts if ts_type else None,
                    )
                )
                if ends is not None and msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        finally:
            consumer.close()
        if count is not None and len(records) < count:
            raise AssertionError(f"topic {topic}: wanted {count} records, got {len(records)} in {timeout:.0f}s")
        return sorted(records, key=lambda r: (r.partition, r.offset))

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offset per partition (negative when none)."""
        from confluent_kafka import TopicPartition

        consumer = self.consumer(group=group)
        try:
            tps = consumer.committed([TopicPartition(topic, p) for p in self.partitions(topic)], timeout=10)
            return {tp.partition: tp.offset for tp in tps}
        finally:
            consumer.close()

    def consumer_groups(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run Kafka's own kafka-consumer-groups tool against this broker."""
        argv = [
            str(SCRIPTS / "kafka.sh"), "tool",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server", self.bootstrap, *args,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class PostgresTLS:
    """The cluster's TLS side (scripts/pg.sh, KJB_PG_TLS_DIR): `user` may
    only log in over TLS, with `password`; the server's certificate names
    localhost only and is signed by `ca`; `other_ca` signed nothing."""

    port: int
    user: str
    password: str
    ca: Path
    other_ca: Path

    def conninfo(self, dbname: str, host: str = "localhost", ca: Path | None = None,
                 password: str | None = None, sslmode: str = "verify-full") -> str:
        """A conninfo for `user` over TLS. With host "localhost" the
        address is pinned to 127.0.0.1 (hostaddr), where the server
        listens; the certificate is checked against `host`."""
        addr = " hostaddr=127.0.0.1" if host == "localhost" else ""
        return (f"host={host}{addr} port={self.port} dbname={dbname} user={self.user}"
                f" password={self.password if password is None else password}"
                f" sslmode={sslmode} sslrootcert={ca or self.ca} connect_timeout=10")


class Postgres:
    """The session's PostgreSQL cluster; `.conninfo` names database kjb;
    `.tls` (PostgresTLS) when it was started with TLS, else None."""

    def __init__(self, service: Service, pki: Pki | None = None):
        self.service = service
        self.dir = service.dir
        self.conninfo = (service.dir / "conninfo").read_text().strip()
        self.port = int((service.dir / "port").read_text())
        self.tls: PostgresTLS | None = None
        if pki is not None and (service.dir / "tls_user").is_file():
            self.tls = PostgresTLS(port=self.port, user=(service.dir / "tls_user").read_text().strip(),
                                   password=(service.dir / "tls_password").read_text().strip(),
                                   ca=pki.pg / "ca.pem", other_ca=pki.other_ca)

    def __repr__(self) -> str:
        return f"Postgres({self.conninfo})"

    def conninfo_for(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def connect(self, dbname: str = "kjb", autocommit: bool = True):
        import psycopg

        return psycopg.connect(self.conninfo_for(dbname), autocommit=autocommit, connect_timeout=10)


class Database(str):
    """A per-test database. It *is* its conninfo string (pass it wherever a
    conninfo goes) and has helpers to look inside."""

    name: str
    cluster: Postgres

    def __new__(cls, cluster: Postgres, name: str) -> "Database":
        self = super().__new__(cls, cluster.conninfo_for(name))
        self.name = name
        self.cluster = cluster
        return self

    @property
    def conninfo(self) -> str:
        return str(self)

    def connect(self, autocommit: bool = True):
        return self.cluster.connect(self.name, autocommit=autocommit)

    def query(self, sql: str, *params: Any) -> list[tuple]:
        """Run one statement and return its rows ([] when it has none)."""
        with self.connect() as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql: str, *params: Any) -> Any:
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None


# --------------------------------------------------------------------------
# kjb processes


class KjbProcess:
    """A background kjb with its output in `log_path`."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path):
        self.argv = argv
        self.log_path = log_path
        self.killed_hard = False
        self.stop_timed_out = False
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self._log.write(f"$ {shlex.join(argv)}\n".encode())
        self._log.flush()
        prefix: list[str] = []
        # If pytest itself is killed, the kernel kills kjb too.
        if _have_setpriv():
            prefix = ["setpriv", "--pdeathsig", "KILL", "--"]
        self.proc = subprocess.Popen(
            prefix + argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self) -> int:
        """SIGKILL, as a crash would: no sanitizer check applies."""
        if self.alive():
            self.killed_hard = True
            self.proc.kill()
        return self.proc.wait()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the graceful drain; SIGKILL after `timeout`
        seconds (recorded in `stop_timed_out`). Returns the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop_timed_out = True
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def problems(self) -> list[str]:
        """What teardown reports: sanitizer output, a hung shutdown."""
        out = []
        if self.stop_timed_out:
            out.append(f"kjb (pid {self.pid}) ignored SIGTERM and was killed; log {self.log_path}")
        if not self.killed_hard:
            report = sanitizer_report(self.log())
            if report or self.proc.returncode == SANITIZER_EXIT:
                out.append(f"sanitizer report from kjb (pid {self.pid}), log {self.log_path}:\n{report or ''}")
        return out


_SETPRIV: bool | None = None


def _have_setpriv() -> bool:
    global _SETPRIV
    if _SETPRIV is None:
        try:
            help_text = subprocess.run(["setpriv", "--help"], capture_output=True, text=True).stdout
            _SETPRIV = "--pdeathsig" in help_text
        except OSError:
            _SETPRIV = False
    return _SETPRIV


# ---- shared by the test files (they import this module, never each other) ----

# A log line in the text format: timestamp, padded level, message.
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info |warn |error) ")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, method: str = "GET", timeout: float = 10) -> tuple[int, str, str]:
    """(status, content type, body) of one request."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"{}" if method in ("POST", "PUT") else None)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def answers(port: int, path: str):
    """The probe's (status, json) once the server answers, else None."""
    try:
        status, _, body = get(port, path)
    except OSError:
        return None
    return status, json.loads(body)


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """The samples of the kjb serving HTTP on `port`, from /metrics:
    {(sample name, frozenset of label pairs): value}. Counters keep their
    _total. Fails the test unless /metrics answers 200."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = get(port, "/metrics")
    assert status == 200, f"/metrics on port {port} answered {status}: {body[:500]}"
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def sample(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """One sample's value out of scrape()'s result, 0 when absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def owned_partitions(samples: dict[tuple[str, frozenset], float], topic: str) -> int:
    """How many partitions of `topic` the scraped kjb owns now: those
    assigned to it minus those it gave up."""
    return int(sample(samples, "kjb_partitions_assigned_total", topic=topic)
               - sample(samples, "kjb_partitions_revoked_total", topic=topic))


def request(port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, str]:
    """(status, body) of one request; a POST sends `body`, else {}."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {},
                                 data=body if body is not None else (b"{}" if method == "POST" else None))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def check_lines(text: str, fmt: str, where: str) -> list[dict]:
    """Every line is a log line in `fmt`; returns the JSON objects (json)
    or {"level", "msg"} dicts (text)."""
    lines = []
    for line in text.splitlines():
        if fmt == "json":
            try:
                obj = json.loads(line)
            except ValueError:
                pytest.fail(f"{where}: not a JSON line: {line!r}", pytrace=False)
            assert isinstance(obj, dict) and set(obj) == {"ts", "level", "msg"}, f"{where}: {line!r}"
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["ts"]), line
            assert obj["level"] in ("debug", "info", "warn", "error"), line
            lines.append(obj)
        else:
            m = TEXT_LINE.match(line)
            assert m, f"{where}: not a text log line: {line!r}"
            lines.append({"level": m.group(1).strip(), "msg": line[m.end():]})
    return lines


def error_line(stderr: str) -> str:
    """The one line of a failed command's stderr that is not a log line
    in the text format: kjb's `kjb: <command>: <why>`. Fails unless there
    is exactly one."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not TEXT_LINE.match(ln)]
    assert len(lines) == 1, f"expected one line besides the log, got {lines}"
    return lines[0]


# ---- records and configuration for ingest tests ----

def everything(i: int) -> dict:
    """Record i of the kitchen-sink schema: cycles through edge values."""
    return {
        "id": i,
        "flag": i % 2 == 0,
        "small": [-(2**31), 0, 2**31 - 1][i % 3],
        "big": [-(2**63), 2**63 - 1, 42][i % 3],
        "ratio": [1.5, float("nan"), float("inf"), float("-inf"), 0.1][i % 5],
        "score": [3.141592653589793, float("nan"), float("-inf"), 1e308, -2.5e-310][i % 5],
        "name": ["plain", 'Zoë 👋 "quoted" \\ back\nline\ttab', ""][i % 3],
        "blob": [b"\x00\xff\xfe", b"", b"hello"][i % 3],
        "nothing": None,
        "color": ["RED", "GREEN", "BLUE"][i % 3],
        "hash": bytes([i % 256, 2, 3, 4]),
        "tags": [[], ["a"], ["x", "y", "z"]][i % 3],
        "attrs": [{}, {"k": 1}, {"a": -5, "b": 2**40}][i % 3],
        "choice": [None, "text", 12345, -(2**40)][i % 4],
        "customer": {"email": f"c{i}@example.org", "address": [None, {"city": "Zürich"}][i % 2]},
        "ts_ms": [0, 1763719200123, -1, 253402300799999][i % 4],
        "ts_us": [0, 1763719200123456, -1][i % 3],
        "day": [0, 20413, -1, 2932896][i % 4],
        "t_ms": [0, 86399999, 3600000][i % 3],
        "t_us": [0, 86399999999, 1][i % 3],
        "amount": [Decimal("0.0000"), Decimal("-1234.5678"), Decimal("12345678901234567890.1234")][i % 3],
        "fixed_amount": [Decimal("0.05"), Decimal("-0.05"), Decimal("9999999999999999.99")][i % 3],
        "uid": str(uuid.UUID(int=i * 7919 + 1)),
    }


def order(i: int, channel: str | None = None) -> dict:
    d = {
        "order_id": i, "customer": {"id": 7, "email": "ada@example.com", "name": "Ada"},
        "amount": Decimal("19.99"), "currency": "EUR",
        "items": [{"sku": "A-1", "quantity": 2, "price": 9.995}],
        "created_at": 1763719200000 + i, "note": None, "tags": {},
    }
    if channel is not None:
        d["channel"] = channel
    return d


def write_ingest_config(path: Path, group: str, topics: str, registry: str | None = None) -> Path:
    schemas = avrokit.schema_dir(path.parent / "schemas")
    registry_cfg = f'schema_registry = {{ url = "{registry}"; timeout = "1s"; }};' if registry else ""
    path.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{group}"; }};
postgres = {{ conninfo = "set-by-env"; }};
{registry_cfg}
schemas = {{ dir = "{schemas}";
  ids = ( {{ id = 7; file = "everything.avsc"; }},
          {{ id = 1; file = "order_created.avsc"; }},
          {{ id = 2; file = "order_created_v2.avsc"; }} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
topics = ( {topics} );
""")
    return path


# --------------------------------------------------------------------------
# Running kjb outside the function-scoped fixtures (module-scoped worlds)


class Kjb:
    """`kjb` commands against one configuration, checked for sanitizer
    reports; the exit code is the caller's to check."""

    def __init__(self, binary: Path, cfg: Path, env: dict[str, str]):
        self.binary, self.cfg, self.env = binary, cfg, env

    def __call__(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        argv = kjb_argv(self.binary, list(args), self.cfg)
        res = subprocess.run(argv, capture_output=True, text=True, env=kjb_env(self.env), cwd=REPO,
                             timeout=timeout, check=False)
        report = sanitizer_report(res.stderr)
        if report or res.returncode == SANITIZER_EXIT:
            pytest.fail(f"sanitizer report from {' '.join(argv)}:\n{report or res.stderr}", pytrace=False)
        return res

    def ok(self, *args: str) -> str:
        res = self(*args)
        assert res.returncode == 0, f"kjb {' '.join(args)} exited {res.returncode}:\n{res.stderr}"
        return res.stdout

    def json(self, *args: str):
        return json.loads(self.ok(*args, "--json"))

    def start(self, log: Path, *args: str) -> KjbProcess:
        return KjbProcess(kjb_argv(self.binary, ["run", *args], self.cfg), kjb_env(self.env), log, REPO)


def stop_checked(proc: KjbProcess) -> None:
    """Stops proc gracefully and fails on a sanitizer report or a hang."""
    status = proc.stop()
    problems = proc.problems()
    assert not problems, "\n".join(problems)
    assert status == 0, f"kjb run exited {status}\n{proc.log()[-3000:]}"


def make_db(pg, hint: str) -> Database:
    name = unique_name(hint, maxlen=63)
    with pg.connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return Database(pg, name)


def drop_db(pg, db: Database) -> None:
    if os.environ.get("KJB_E2E_KEEP") == "1":
        return
    with pg.connect("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


def caught_up(kafka, group: str, topic: str) -> bool:
    """Whether the group's offsets reached the end of every partition (an
    empty partition has none committed)."""
    committed = kafka.committed(group, topic)
    return all(committed[p] == end for p, end in kafka.end_offsets(topic).items() if end > 0)


# ---- commands on a terminal ----

@dataclass
class TerminalRun:
    returncode: int
    stdout: str
    stderr: str  # what kjb wrote to the terminal, byte for byte
    seconds: float  # how long it ran


def run_on_terminal(binary: Path, args: Sequence[str], config: Path | str | None,
                    env: dict[str, str] | None = None, stdin: Path | None = None,
                    timeout: float = 120.0) -> TerminalRun:
    """Runs `kjb ARGS -c CONFIG` to completion with stderr on a pseudo-
    terminal (in raw mode, so that no newline becomes "\\r\\n") and stdin
    from the file `stdin` (else /dev/null), stdout to a pipe. Fails the
    test on a sanitizer report or when it does not finish in time."""
    master, slave = os.openpty()
    tty.setraw(slave)
    argv = kjb_argv(binary, args, config)
    chunks: list[bytes] = []

    def drain() -> None:
        # Read as it comes: a terminal's buffer is small, and a full one
        # would stall kjb. EIO once the last writer has gone.
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        with open(stdin or os.devnull, "rb") as fin:
            proc = subprocess.Popen(argv, stdin=fin, stdout=subprocess.PIPE, stderr=slave,
                                    env=kjb_env(env), cwd=REPO)
        os.close(slave)
        slave = -1
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{' '.join(argv)} did not finish in {timeout:.0f}s", pytrace=False)
        seconds = time.monotonic() - started
        reader.join(10)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    report = sanitizer_report(err)
    if report or proc.returncode == SANITIZER_EXIT:
        pytest.fail(f"sanitizer report from {' '.join(argv)}:\n{report or err}", pytrace=False)
    return TerminalRun(proc.returncode, out.decode(errors="replace"), err, seconds)
