"""Fixtures for the end-to-end tests: a real Kafka broker and a real
PostgreSQL, started once per session by scripts/kafka.sh and scripts/pg.sh,
and the kjb binary under test (KJB_BIN).

Session:  kafka, pg, kjb_bin (kafka.tls and pg.tls: their TLS sides),
          oidc (an OAuth token server; the broker gets an OAUTHBEARER
          listener that trusts it, kafka.oauth, when a test asks for oidc)
          browser (headless Chromium through Playwright, for the dashboard)
Per test: db (a fresh database), make_topic, run_kjb, start_kjb, kjb_services_env

The services are started side by side as soon as the collected tests show
they are needed, and always stopped: by fixture teardown, by an atexit and
SIGTERM/SIGHUP handler, and by a watchdog process should pytest be killed
outright. Before they start, the session makes a throwaway CA and server
certificates (kjbtest.make_test_pki) so that the broker also serves SSL
and SASL_SSL, and PostgreSQL TLS. KJB_E2E_KEEP=1 leaves them running (and
databases in place) for debugging; their directories are printed at the
end.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kjbtest import (  # noqa: E402
    REPO,
    SCRIPTS,
    Database,
    Kafka,
    KjbProcess,
    Pki,
    Postgres,
    Service,
    TokenServer,
    kjb_argv,
    kjb_env,
    make_test_pki,
    sanitizer_report,
    SANITIZER_EXIT,
    unique_name,
)

KEEP = os.environ.get("KJB_E2E_KEEP") == "1"
_SERVICE_FIXTURES = {"kafka": ("kafka",), "pg": ("pg",), "db": ("pg",), "oidc": ("oidc", "kafka")}


class _Services:
    """The session's services, by name, launched at most once each."""

    def __init__(self) -> None:
        self.base: Path | None = None
        self.pki: Pki | None = None
        self.services: dict[str, Service] = {}
        self.needed: set[str] = set()
        # The token server lives on a thread of this process: it goes with
        # it, however the run ends.
        self.oidc: TokenServer | None = None

    def get(self, name: str) -> Service:
        if name not in self.services:
            assert self.base is not None, "services used before the session started"
            if self.pki is None:
                self.pki = make_test_pki(self.base / "tls")
            if name == "kafka":
                script, env = SCRIPTS / "kafka.sh", {"KJB_KAFKA_TLS_DIR": str(self.pki.kafka)}
                if "oidc" in self.needed:
                    # The broker fetches the keys as it starts.
                    self.oidc = TokenServer().start()
                    env.update(KJB_KAFKA_OAUTH_JWKS_URL=self.oidc.jwks_url, KJB_KAFKA_OAUTH_ISSUER=self.oidc.issuer,
                               KJB_KAFKA_OAUTH_AUDIENCE=self.oidc.audience)
            else:
                script, env = SCRIPTS / "pg.sh", {"KJB_PG_TLS_DIR": str(self.pki.pg)}
            self.services[name] = Service(name, script, self.base / name, env=env)
        service = self.services[name]
        service.launch()
        return service

    def stop_all(self) -> None:
        if KEEP:
            return
        for service in reversed(list(self.services.values())):
            try:
                service.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"kjb e2e: stopping {service.name}: {exc}", file=sys.stderr)
            # Kafka's data goes; its logs stay with pytest's temp dirs.
            if service.name == "kafka":
                shutil.rmtree(service.dir / "data", ignore_errors=True)
        if self.oidc is not None:
            self.oidc.stop()


_SERVICES = _Services()
_PROCS: list[KjbProcess] = []


def _cleanup() -> None:
    for proc in _PROCS:
        try:
            proc.stop(timeout=10)
        except Exception:  # noqa: BLE001
            pass
    _SERVICES.stop_all()


atexit.register(_cleanup)


def _on_signal(signum: int, frame: Any) -> None:
    # Turn SIGTERM/SIGHUP into an interrupt so that pytest tears down the
    # fixtures; a second signal leaves the rest to atexit.
    signal.signal(signum, signal.SIG_DFL)
    raise KeyboardInterrupt(f"signal {signum}")


for _sig in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(_sig) in (signal.SIG_DFL, None):
        signal.signal(_sig, _on_signal)


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        for fixture in getattr(item, "fixturenames", ()):
            _SERVICES.needed.update(_SERVICE_FIXTURES.get(fixture, ()))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = []
    for service in _SERVICES.services.values():
        if service.ready_after is not None:
            state = "ready" if service.ok else "FAILED"
            lines.append(f"{service.name} {state} after {service.ready_after:.1f}s ({service.dir})")
    if lines:
        terminalreporter.write_line("kjb e2e services: " + "; ".join(lines))
    if KEEP and _SERVICES.services:
        terminalreporter.write_line("KJB_E2E_KEEP=1: services left running; stop them with")
        for service in _SERVICES.services.values():
            terminalreporter.write_line(f"  {service.script} stop {service.dir}")


@pytest.fixture(scope="session", autouse=True)
def _services(tmp_path_factory: pytest.TempPathFactory):
    """Starts every service the collected tests need, in parallel."""
    _SERVICES.base = tmp_path_factory.mktemp("services")
    for name in ("kafka", "pg"):  # Kafka, the slow one, first
        if name in _SERVICES.needed:
            _SERVICES.get(name)
    yield _SERVICES
    for proc in _PROCS:
        if proc.alive():
            proc.stop(timeout=10)
    _SERVICES.stop_all()


def _ready(name: str) -> Service:
    service = _SERVICES.get(name)
    try:
        service.wait()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return service


@pytest.fixture(scope="session")
def kafka(_services: _Services) -> Kafka:
    """The session's single-node Kafka (KRaft); `.bootstrap` is host:port,
    `.tls` its SSL and SASL_SSL listeners (kjbtest.KafkaTLS)."""
    return Kafka(_ready("kafka"), _SERVICES.pki)


@pytest.fixture(scope="session")
def oidc(kafka: Kafka) -> TokenServer:
    """The session's OAuth token server (tokenserver.TokenServer): register
    clients with `.add_client()`; the broker's OAUTHBEARER listener
    (`kafka.oauth`) takes the tokens it issues."""
    if _SERVICES.oidc is None or kafka.oauth is None:
        pytest.fail("the broker has no OAUTHBEARER listener (KJB_KAFKA_OAUTH_JWKS_URL, scripts/kafka.sh)",
                    pytrace=False)
    return _SERVICES.oidc


@pytest.fixture(scope="session")
def pg(_services: _Services) -> Postgres:
    """The session's PostgreSQL; `.conninfo` names database kjb,
    `.connect(dbname)` opens a psycopg connection (autocommit); `.tls` is
    its TLS side (kjbtest.PostgresTLS)."""
    return Postgres(_ready("pg"), _SERVICES.pki)


@pytest.fixture
def db(pg: Postgres, request: pytest.FixtureRequest):
    """A fresh database for this test: a str (its conninfo) with `.name`,
    `.connect()`, `.query(sql, *params)` and `.scalar(sql, *params)`."""
    name = unique_name(request.node.name, maxlen=63)  # test_..._1a2b3c4d
    with pg.connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield Database(pg, name)
    if KEEP:
        return
    # kjb processes of this test still holding connections go first.
    for proc in _PROCS:
        if proc.alive():
            proc.stop()
    with pg.connect("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_topic(kafka: Kafka, request: pytest.FixtureRequest):
    """make_topic(partitions=1, name=None, config=None) -> a new topic,
    named after the test unless `name` is given, with leaders ready."""

    def make(partitions: int = 1, name: str | None = None, config: dict[str, str] | None = None) -> str:
        return kafka.create_topic(name or unique_name(request.node.name), partitions, config)

    return make


@pytest.fixture(scope="session")
def kjb_bin() -> Path:
    """The kjb binary under test: $KJB_BIN, else build/asan/kjb, else
    build/release/kjb (relative paths are from the repository root)."""
    candidates = [os.environ["KJB_BIN"]] if os.environ.get("KJB_BIN") else ["build/asan/kjb", "build/release/kjb"]
    for candidate in candidates:
        path = Path(candidate)
        path = path if path.is_absolute() else REPO / path
        if path.is_file() and os.access(path, os.X_OK):
            return path
    pytest.fail(f"kjb binary not found (tried {', '.join(candidates)}); build it or set KJB_BIN", pytrace=False)


@pytest.fixture
def kjb_services_env(kafka: Kafka, db: Database) -> dict[str, str]:
    """Environment overrides pointing kjb at this session's Kafka and this
    test's database: pass as env= to run_kjb / start_kjb."""
    return {"KJB_KAFKA_BROKERS": kafka.bootstrap, "KJB_POSTGRES_CONNINFO": str(db)}


@pytest.fixture
def run_kjb(kjb_bin: Path):
    """run_kjb(args, config_path=None, env=None, timeout=60, input=None)
    runs `kjb ARGS -c CONFIG` to completion and returns the CompletedProcess
    (text stdout/stderr). `env` adds to the environment. Fails the test on
    a sanitizer report; the exit code is the caller's to check."""

    def run(
        args: Sequence[str],
        config_path: Path | str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        input: str | bytes | None = None,
    ) -> subprocess.CompletedProcess:
        argv = kjb_argv(kjb_bin, args, config_path)
        try:
            result = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=not isinstance(input, bytes),
                env=kjb_env(env),
                cwd=REPO,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{' '.join(argv)} did not finish in {timeout:.0f}s\n{exc.stderr or ''}", pytrace=False)
        err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode(errors="replace")
        report = sanitizer_report(err)
        if report or result.returncode == SANITIZER_EXIT:
            pytest.fail(f"sanitizer report from {' '.join(argv)}:\n{report or err}", pytrace=False)
        return result

    return run


@pytest.fixture
def start_kjb(kjb_bin: Path, tmp_path: Path):
    """start_kjb(args=("run",), config_path=None, env=None, name="kjb")
    starts kjb in the background with its output in tmp_path/NAME.log and
    returns a KjbProcess (.stop(), .kill(), .alive(), .log(), .log_path).
    At teardown each still running is sent SIGTERM, then SIGKILL; a hung
    shutdown or a sanitizer report fails the test."""
    mine: list[KjbProcess] = []

    def start(
        args: Sequence[str] = ("run",),
        config_path: Path | str | None = None,
        env: dict[str, str] | None = None,
        name: str = "kjb",
    ) -> KjbProcess:
        log_path = tmp_path / f"{name}.log"
        n = 1
        while log_path.exists():
            n += 1
            log_path = tmp_path / f"{name}-{n}.log"
        proc = KjbProcess(kjb_argv(kjb_bin, args, config_path), kjb_env(env), log_path, REPO)
        mine.append(proc)
        _PROCS.append(proc)
        return proc

    yield start
    problems = []
    for proc in mine:
        proc.stop()
        problems.extend(proc.problems())
        _PROCS.remove(proc)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


CHROMIUM = os.environ.get("KJB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium ($KJB_CHROMIUM, else Debian's /usr/bin/chromium)
    through Playwright; fails (never skips) when it cannot start."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is not installed ({exc}); scripts/deps.sh installs it", pytrace=False)
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
    except Exception as exc:  # noqa: BLE001 - reported as the failure
        pw.stop()
        pytest.fail(f"could not start Chromium ({CHROMIUM}): {exc}", pytrace=False)
    yield b
    b.close()
    pw.stop()
