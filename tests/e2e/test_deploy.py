"""The deployment artifacts: `cmake --install` of the build under test lays
out the binary, the man pages, the plugin header, the example config and
the systemd unit; the man pages render without warnings and cover every
command, option and config key; the installed unit passes systemd-analyze
and starts the installed kjb the way systemd would; the Kubernetes
manifests agree with kjb's endpoints and configuration, whose kjb.cfg
passes check-config; the Containerfile installs packages that exist in
Debian 13 (its package index, fetched once a week) and that cover every
library kjb links. Needs neither Kafka nor PostgreSQL."""

from __future__ import annotations

import json
import lzma
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from kjbtest import REPO, kjb_env

DEPLOY = REPO / "deploy"
MAN = REPO / "docs" / "man"
EXAMPLE_CFG = REPO / "config" / "example.cfg"
K8S = DEPLOY / "kubernetes"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"

DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SYSTEMD_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


def run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("timeout", 300)
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, **kw)


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: install Debian's {package} package (scripts/deps.sh)", pytrace=False)
    return path


def project_version() -> str:
    m = re.search(r"project\(kjb VERSION (\S+)", (REPO / "CMakeLists.txt").read_text())
    assert m, "no project(kjb VERSION ...) in CMakeLists.txt"
    return m.group(1)


def kjb_seconds(text: str) -> float:
    """A kjb duration ("30s", "250ms") in seconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h|d)", text)
    assert m, f"not a kjb duration: {text!r}"
    return float(m.group(1)) * DURATION_UNITS[m.group(2)]


def systemd_seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)\s*([a-z]*)", text):
        total += float(number) * SYSTEMD_UNITS[unit or "s"]
    return total


# --------------------------------------------------------------------------
# libconfig, as far as the tests need it


_SETTING = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=")
_CLOSER = re.compile(r"^[})\]]\s*[;,]?$")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_TOKEN = re.compile(r"([A-Za-z_]\w*)\s*=\s*([{(\[])?|([{(\[])|([})\]])")


def _code(raw: str) -> str:
    """A line's settings and brackets, strings blanked. Commented-out
    settings count (example.cfg documents optional keys that way), prose
    comments do not."""
    line = raw.strip()
    if line.startswith("#"):
        line = line.lstrip("#").strip()
        if not ((_SETTING.match(line) and re.search(r"[;,{(\[]$", line)) or _CLOSER.match(line)):
            return ""
    return _STRING.sub('""', line).split("#", 1)[0]


def cfg_keys(text: str) -> set[tuple[str, str]]:
    """(group path, key) of every setting: ("", "kafka"), ("kafka",
    "brokers"), ("handlers.retry", "base"); the elements of a list add
    nothing to the path."""
    pairs: set[tuple[str, str]] = set()
    stack: list[str | None] = []
    for raw in text.splitlines():
        for m in _TOKEN.finditer(_code(raw)):
            name, opens, anon, _close = m.groups()
            if name:
                pairs.add((".".join(n for n in stack if n), name))
                if opens:
                    stack.append(name)
            elif anon:
                stack.append(None)
            else:
                assert stack, f"unbalanced brackets at {raw!r}"
                stack.pop()
    assert not stack, f"unclosed groups: {stack}"
    return pairs


def cfg_string(text: str, key: str) -> str:
    """The value of the one uncommented `key = "..."` setting."""
    found = [m.group(1) for line in text.splitlines() if not line.lstrip().startswith("#")
             for m in re.finditer(rf'(?:^|[{{;\s]){key}\s*=\s*"([^"]*)"', line)]
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


# --------------------------------------------------------------------------
# `cmake --install`


@pytest.fixture(scope="module")
def build_dir(kjb_bin: Path) -> Path:
    """The CMake build directory of the binary under test."""
    d = kjb_bin.resolve().parent
    if not (d / "CMakeCache.txt").is_file():
        pytest.fail(f"{kjb_bin} is not in a CMake build directory (no {d / 'CMakeCache.txt'})", pytrace=False)
    return d


@pytest.fixture(scope="module")
def prefix(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cmake --install` of the build under test into a fresh prefix. The
    build directory is configured again first (what `cmake --build` does
    when CMakeLists.txt changed), so that its install rules are current;
    nothing is rebuilt."""
    out = tmp_path_factory.mktemp("prefix")
    res = run(["cmake", build_dir])
    assert res.returncode == 0, f"cmake {build_dir}:\n{res.stdout}{res.stderr}"
    res = run(["cmake", "--install", build_dir, "--prefix", out])
    assert res.returncode == 0, f"cmake --install {build_dir} --prefix {out}:\n{res.stdout}{res.stderr}"
    return out


def test_install_lays_out_the_package(prefix, kjb_bin):
    kjb = prefix / "bin" / "kjb"
    assert kjb.is_file() and os.access(kjb, os.X_OK), sorted(str(p) for p in prefix.rglob("*"))
    for installed, source in [
        (prefix / "share" / "man" / "man1" / "kjb.1", MAN / "kjb.1"),
        (prefix / "share" / "man" / "man5" / "kjb.cfg.5", MAN / "kjb.cfg.5"),
        (prefix / "include" / "kjb" / "handler.h", REPO / "include" / "kjb" / "handler.h"),
        (prefix / "share" / "doc" / "kjb" / "example.cfg", EXAMPLE_CFG),
    ]:
        assert installed.is_file(), f"{installed} not installed"
        assert installed.read_bytes() == source.read_bytes(), f"{installed} differs from {source}"
    assert (prefix / "lib" / "systemd" / "system" / "kjb.service").is_file()

    res = run([kjb, "version"], env=kjb_env())
    assert res.returncode == 0, res.stderr
    want = run([kjb_bin, "version"], env=kjb_env())
    assert res.stdout == want.stdout
    assert res.stdout.splitlines()[0] == f"kjb {project_version()}"

    # man finds both pages in the sections they were installed to.
    res = run([tool("man", "man-db"), "-M", prefix / "share" / "man", "-w", "kjb", "kjb.cfg"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(prefix / "share/man/man1/kjb.1"), str(prefix / "share/man/man5/kjb.cfg.5")]


# --------------------------------------------------------------------------
# Man pages


MAN_ENV = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}


FONT_MACRO = re.compile(r"^\.(?:[BI]R|R[BI]|BI|IB)\s+(.*)$")


def roff_text(path: Path) -> str:
    """A page's source with what splits words removed: `\\-\\-topic` reads
    --topic, `\\fBkjb\\fR` kjb, and `.BI KJB_ SECTION _ KEY` KJB_SECTION_KEY
    (alternating-font macros join their arguments)."""
    lines = []
    for line in path.read_text().splitlines():
        m = FONT_MACRO.match(line)
        if m:
            line = "".join(a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', m.group(1)))
        lines.append(line)
    text = re.sub(r"\\f[BIRP]|\\f\[\w*\]|\\&|\\:|\\%", "", "\n".join(lines))
    return text.replace("\\-", "-").replace("\\e", "\\").replace("\\(aq", "'").replace("\\(dq", '"')


@pytest.mark.parametrize("page", ["kjb.1", "kjb.cfg.5"])
def test_man_page_renders_without_warnings(prefix, page):
    path = prefix / "share" / "man" / ("man1" if page.endswith(".1") else "man5") / page
    res = run([tool("man", "man-db"), "--warnings", "-l", path], env=MAN_ENV)
    assert res.returncode == 0 and res.stderr == "", f"man --warnings -l {path}:\n{res.stderr}"
    name = page.rsplit(".", 1)[0]
    assert f"{name.upper()}(" in res.stdout.splitlines()[0], res.stdout[:300]
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert re.search(rf"^{heading}$", res.stdout, re.M), f"{page} has no {heading} section"
    # Every warning groff knows, not only man's default set.
    res = run([tool("groff", "groff-base"), "-ww", "-man", "-z", path], env=MAN_ENV)
    assert res.returncode == 0 and res.stderr == "", f"groff -ww -man {path}:\n{res.stderr}"
    th = re.search(r'^\.TH \S+ \d \S+ "kjb ([^"]+)"', path.read_text(), re.M)
    assert th and th.group(1) == project_version(), f"{page}: .TH names version {th and th.group(1)}"


def help_text(kjb_bin: Path, *words: str) -> str:
    res = run([kjb_bin, *words, "--help"], env=kjb_env())
    assert res.returncode == 0, f"kjb {' '.join(words)} --help: {res.stderr}"
    return res.stdout


def test_kjb_1_covers_every_command_and_option(kjb_bin):
    top = help_text(kjb_bin)
    commands = re.findall(r"^  ([a-z][a-z-]*)\s{2,}", top, re.M)
    assert {"run", "migrate", "check-config", "version", "jobs", "dlq"} <= set(commands), top
    invocations, helps = [], [top]
    for cmd in commands:
        text = help_text(kjb_bin, cmd)
        helps.append(text)
        subs = sorted(set(re.findall(rf"kjb {cmd} ([a-z]+)\b", text)))
        if cmd in ("jobs", "dlq"):
            assert subs, f"kjb {cmd} --help names no subcommand:\n{text}"
        if not subs:
            invocations.append(f"kjb {cmd}")
        for sub in subs:
            invocations.append(f"kjb {cmd} {sub}")
            helps.append(help_text(kjb_bin, cmd, sub))
    page = roff_text(MAN / "kjb.1")
    missing = [i for i in invocations if i not in page]
    assert not missing, f"kjb.1 does not mention {missing}"
    options = set()
    for text in helps:
        options |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
        options |= set(re.findall(r"^\s+(-[a-z]),", text, re.M))
    missing = sorted(o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", page))
    assert not missing, f"kjb.1 does not mention the options {missing}"
    for code in ("0", "1", "2"):
        assert re.search(rf"^\.B {code}$", page, re.M), f"kjb.1 does not list exit status {code}"
    for env in ("KJB_CONFIG", "KJB_ADMIN_TOKEN", "KJB_POSTGRES_CONNINFO"):
        assert env in page, env


GROUPED = ("jobs", "dlq", "audit")  # commands whose second word is a subcommand


def example_commands() -> list[tuple[str, list[str]]]:
    """Every kjb command line in the README's sh blocks and kjb.1's
    EXAMPLES, as (where, words from "kjb" on): continuation lines joined,
    comments and a path before kjb dropped."""
    found = []
    readme = (REPO / "README.md").read_text()
    blocks = [("README.md", b) for b in re.findall(r"^```sh\n(.*?)^```", readme, re.M | re.S)]
    examples = roff_text(MAN / "kjb.1").split("\n.SH EXAMPLES", 1)[1].split("\n.SH ", 1)[0]
    blocks += [("kjb.1 EXAMPLES", b) for b in re.findall(r"^\.EX\n(.*?)^\.EE", examples, re.M | re.S)]
    for where, block in blocks:
        for line in re.sub(r"\\\n", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            starts = [i for i, w in enumerate(words) if w == "kjb" or w.endswith("/kjb")]
            if starts and not words[0].startswith(("export", "KJB_")):
                found.append((where, ["kjb", *words[starts[0] + 1:]]))
    return found


def test_documented_examples_use_options_kjb_knows(kjb_bin):
    # The walk-throughs (After a bad deploy and the like) are what people
    # paste: an option renamed in the code must not live on there.
    checked = 0
    for where, words in example_commands():
        if len(words) < 2 or words[1].startswith("-"):
            continue
        cmd = words[1:3] if words[1] in GROUPED and len(words) > 2 else words[1:2]
        text = help_text(kjb_bin, *cmd)
        known = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
        known |= set(re.findall(r"^\s+(-[a-z]),", text, re.M))
        used = [w.split("=", 1)[0] for w in words if w.startswith("-") and w != "-"]
        unknown = [o for o in used if o not in known]
        assert not unknown, f"{where}: `{' '.join(words)}` uses {unknown}, which `kjb {' '.join(cmd)} --help` does not list"
        checked += 1
    assert checked >= 10, f"only {checked} example commands found: has the README's layout changed?"


def man_keys(path: Path) -> set[tuple[str, str]]:
    """(group path, key) documented in kjb.cfg.5: each group is a .SS named
    by its dotted path, each key a .TP whose tag is `.B key`; tags inside
    .RS (the handler types) are values, not keys."""
    pairs: set[tuple[str, str]] = set()
    section, subsection, depth, tag_next = "", None, 0, False
    for line in path.read_text().splitlines():
        if line.startswith(".SH "):
            section, subsection = line[4:].strip('" '), None
        elif line.startswith(".SS "):
            subsection = line[4:].strip('" ')
            if section == "SECTIONS" and "." not in subsection:
                pairs.add(("", subsection))
        elif line.startswith(".RS"):
            depth += 1
        elif line.startswith(".RE"):
            depth -= 1
        elif line.startswith(".TP"):
            tag_next = depth == 0 and section == "SECTIONS" and subsection is not None
            continue
        elif tag_next:
            m = re.fullmatch(r"\.B (\w+)", line)
            assert m, f"kjb.cfg.5: a key's .TP tag should be `.B key`, got {line!r} in {subsection}"
            pairs.add((subsection, m.group(1)))
        tag_next = False
    return pairs


def test_kjb_cfg_5_documents_every_key_of_example_cfg():
    example = cfg_keys(EXAMPLE_CFG.read_text())
    assert len(example) > 60 and ("handlers.retry", "jitter") in example and ("http", "tls_key") in example
    documented = man_keys(MAN / "kjb.cfg.5")
    fmt = lambda pairs: sorted(f"{g}.{k}" if g else k for g, k in pairs)  # noqa: E731
    assert not example - documented, f"in config/example.cfg, not in kjb.cfg.5: {fmt(example - documented)}"
    assert not documented - example, f"in kjb.cfg.5, not in config/example.cfg: {fmt(documented - example)}"
    page = roff_text(MAN / "kjb.cfg.5")
    # The environment rule and the duration syntax.
    assert "KJB_SECTION_KEY" in page and "KJB_POSTGRES_CONNINFO" in page
    durations = page[page.index(".SS Durations"):page.index(".SH ENVIRONMENT")]
    for unit in DURATION_UNITS:
        assert re.search(rf"(?<![\w.]){unit}\b", durations), f"duration unit {unit} not in kjb.cfg.5"


# --------------------------------------------------------------------------
# systemd


def unit_directives(path: Path) -> dict[str, list[str]]:
    """Section.Key -> values, in order (a key may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit(prefix) -> Path:
    return prefix / "lib" / "systemd" / "system" / "kjb.service"


def test_systemd_unit_passes_systemd_analyze(unit, prefix):
    analyze = tool("systemd-analyze", "systemd")
    # MANPATH: Documentation=man:kjb(1) is checked against the installed pages.
    env = {**os.environ, "MANPATH": str(prefix / "share" / "man")}
    res = run([analyze, "verify", unit], env=env)
    assert res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(), \
        f"systemd-analyze verify {unit}:\n{res.stdout}{res.stderr}\n{unit.read_text()}"
    # The sandbox, scored: 0 (locked down) to 10 (exposed); 2.0 at most.
    res = run([analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", unit], env=env)
    score = re.search(r"Overall exposure level for kjb\.service: ([0-9.]+)", res.stdout)
    assert res.returncode == 0 and score, f"systemd-analyze security {unit}:\n{res.stdout}{res.stderr}"
    assert float(score.group(1)) <= 2.0, res.stdout


def test_systemd_unit_starts_the_installed_kjb(unit, prefix):
    d = unit_directives(unit)
    kjb = str(prefix / "bin" / "kjb")
    etc = prefix / "etc" / "kjb"
    cfg = str(etc / "kjb.cfg")
    assert d["Service.Type"] == ["simple"]
    assert shlex.split(d["Service.ExecStart"][0]) == [kjb, "run", "-c", cfg]
    assert [shlex.split(v) for v in d["Service.ExecStartPre"]] == [[kjb, "migrate", "-c", cfg]]
    assert d["Service.EnvironmentFile"] == [f"-{etc}/kjb.env"]
    assert d["Service.WorkingDirectory"] == [str(etc)]

    sandbox = {
        "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "RestrictNamespaces": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "RestrictRealtime": "yes", "UMask": "0077",
        "KillSignal": "SIGTERM", "Restart": "on-failure",
    }
    wrong = {k: d.get(f"Service.{k}") for k, v in sandbox.items() if d.get(f"Service.{k}") != [v]}
    assert not wrong, f"unexpected settings in {unit}: {wrong}"
    assert set(d["Service.RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in d["Service.SystemCallFilter"]
    # /metrics reads /proc/stat, which ProcSubset=pid would hide.
    assert "Service.ProcSubset" not in d
    # The stop timeout outlasts the executors' drain (example.cfg's default).
    drain = kjb_seconds(cfg_string(EXAMPLE_CFG.read_text(), "shutdown_timeout"))
    assert systemd_seconds(d["Service.TimeoutStopSec"][0]) >= drain + 15, d["Service.TimeoutStopSec"]

    # Start the installed kjb as systemd would, in the unit's working
    # directory with its config file there (schemas relative to it), with
    # check-config in place of run: the command line, the config path and
    # the working directory all have to fit.
    shutil.copytree(REPO / "schemas" / "avro", etc / "schemas" / "avro")
    (etc / "kjb.cfg").write_text(EXAMPLE_CFG.read_text())
    argv = shlex.split(d["Service.ExecStart"][0])
    argv[1] = "check-config"
    res = run(argv, cwd=d["Service.WorkingDirectory"][0], env=kjb_env({"KJB_SCHEMAS_DIR": ""}))
    assert res.returncode == 0, f"{shlex.join(argv)} in {etc}: {res.stderr}"
    assert res.stdout.splitlines()[0] == f"{cfg}: ok"
    for line in d["Service.ExecStartPre"] + d["Service.ExecStart"]:
        argv = shlex.split(line)
        res = run([*argv, "--help"], env=kjb_env())
        assert res.returncode == 0 and res.stdout.startswith(f"usage: kjb {argv[1]}"), (line, res.stderr)


def elf_problems(path: str) -> list[str]:
    """Why path could not run under MemoryDenyWriteExecute=yes: an
    executable stack or text relocations (both need writable code)."""
    problems = []
    res = run([tool("readelf", "binutils"), "-lW", "-d", path])
    assert res.returncode == 0, res.stderr
    stack = re.search(r"GNU_STACK\s+(?:\S+\s+){5}(\S+)", res.stdout)
    if stack and "E" in stack.group(1):
        problems.append(f"{path}: executable stack ({stack.group(1)})")
    if "TEXTREL" in res.stdout:
        problems.append(f"{path}: text relocations")
    return problems


def test_kjb_its_libraries_and_plugins_allow_memory_deny_write_execute(prefix, build_dir):
    kjb = str(prefix / "bin" / "kjb")
    res = run(["ldd", kjb])
    assert res.returncode == 0, res.stderr
    libs = re.findall(r"=> (/\S+)", res.stdout)
    assert any("librdkafka" in lib for lib in libs), res.stdout
    plugin = build_dir / "libkjb_example_handler.so"
    assert plugin.is_file(), f"{plugin} not built"
    problems = [p for f in [kjb, *libs, str(plugin)] for p in elf_problems(f)]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# Kubernetes


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    """Every object of deploy/kubernetes/*.yaml, by "Kind/name"."""
    objects = {}
    files = sorted(K8S.glob("*.yaml"))
    assert [f.name for f in files] == ["kjb.yaml", "secret.yaml"], files
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc is None:
                continue
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{f}: {doc}"
            key = f"{doc['kind']}/{doc['metadata']['name']}"
            assert key not in objects, f"{key} twice"
            objects[key] = doc
    assert set(objects) == {"ConfigMap/kjb-config", "Secret/kjb-secrets", "Job/kjb-migrate-0-1-0",
                            "Deployment/kjb", "Service/kjb", "PodDisruptionBudget/kjb",
                            "NetworkPolicy/kjb"}, sorted(objects)
    return objects


def container(pod_spec: dict, name: str) -> dict:
    found = [c for c in pod_spec["containers"] if c["name"] == name]
    assert len(found) == 1, pod_spec["containers"]
    return found[0]


def port_number(c: dict, port) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    assert len(named) == 1, f"no container port named {port!r}: {c.get('ports')}"
    return named[0]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def mounted_config(k8s: dict, pod_spec: dict, c: dict) -> tuple[str, str]:
    """(mount path, ConfigMap name) of the container's config volume."""
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = [(m["mountPath"], volumes[m["name"]]["configMap"]["name"])
              for m in c["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert len(mounts) == 1, c["volumeMounts"]
    assert f"ConfigMap/{mounts[0][1]}" in k8s
    return mounts[0]


def test_kubernetes_deployment_probes_kjbs_endpoints(k8s):
    cfg = k8s["ConfigMap/kjb-config"]["data"]["kjb.cfg"]
    host, _, port = cfg_string(cfg, "listen").rpartition(":")
    assert host.strip("[]") not in ("127.0.0.1", "localhost", "::1"), \
        "http.listen must not be loopback in a pod: the kubelet probes the pod's address"
    port = int(port)
    dep = k8s["Deployment/kjb"]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    c = container(spec, "kjb")
    assert dep["spec"]["replicas"] == 3
    assert selects(dep["spec"]["selector"], pod["metadata"]["labels"])
    probes = {name: c[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {n: p["path"] for n, p in probes.items()} == {
        "startupProbe": "/startupz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for name, probe in probes.items():
        assert port_number(c, probe["port"]) == port, f"{name} probes port {probe['port']}, kjb listens on {port}"
        assert probe.get("scheme", "HTTP") == "HTTP"
    # kjb run waits for `kjb migrate`: the startup probe allows minutes.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}

    drain = kjb_seconds(cfg_string(cfg, "shutdown_timeout"))
    assert spec["terminationGracePeriodSeconds"] >= drain + 15

    # The config file that the container's command names is the ConfigMap's.
    mount, _ = mounted_config(k8s, spec, c)
    args = c["args"]
    assert args[:2] == ["run", "-c"] and Path(args[2]).parent == Path(mount)
    assert Path(args[2]).name in k8s["ConfigMap/kjb-config"]["data"]
    assert cfg_string(cfg, "dir") == mount, "schemas.dir should be where the ConfigMap is mounted"

    sc, psc = c["securityContext"], spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # The Service named kjb must not inject KJB_* variables.
    assert spec["enableServiceLinks"] is False

    svc = k8s["Service/kjb"]
    assert selects({"matchLabels": svc["spec"]["selector"]}, pod["metadata"]["labels"])
    assert [port_number(c, p["targetPort"]) for p in svc["spec"]["ports"]] == [port]
    pdb = k8s["PodDisruptionBudget/kjb"]
    assert selects(pdb["spec"]["selector"], pod["metadata"]["labels"])
    assert pdb["spec"]["maxUnavailable"] == 1
    netpol = k8s["NetworkPolicy/kjb"]
    assert selects(netpol["spec"]["podSelector"], pod["metadata"]["labels"])
    assert [port_number(c, p["port"]) for rule in netpol["spec"]["ingress"] for p in rule["ports"]] == [port]


def test_kubernetes_secret_is_what_kjb_reads(k8s):
    secret = k8s["Secret/kjb-secrets"]
    keys = set(secret["stringData"])
    cfg = k8s["ConfigMap/kjb-config"]["data"]["kjb.cfg"]
    assert keys == {"KJB_POSTGRES_CONNINFO", cfg_string(cfg, "admin_token_env")}
    job = k8s["Job/kjb-migrate-0-1-0"]
    for obj, name in ((k8s["Deployment/kjb"], "kjb"), (job, "migrate")):
        c = container(obj["spec"]["template"]["spec"], name)
        referenced = set()
        for source in c.get("envFrom", []):
            if source.get("secretRef", {}).get("name") == "kjb-secrets":
                referenced |= keys
        for var in c.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef", {})
            if ref.get("name") == "kjb-secrets" and ref.get("key") in keys:
                referenced.add(ref["key"])
        assert referenced == keys, f"{name} gets {sorted(referenced)} of the Secret's {sorted(keys)}"


def test_kubernetes_migrate_job_runs_the_same_release(k8s):
    dep = k8s["Deployment/kjb"]["spec"]["template"]["spec"]
    job = k8s["Job/kjb-migrate-0-1-0"]
    spec = job["spec"]["template"]["spec"]
    c = container(spec, "migrate")
    image = container(dep, "kjb")["image"]
    assert c["image"] == image and image.endswith(":" + project_version())
    assert job["metadata"]["name"].endswith(project_version().replace(".", "-"))
    mount, _ = mounted_config(k8s, spec, c)
    assert c["args"] == ["migrate", "-c", f"{mount}/kjb.cfg"]
    assert spec["restartPolicy"] == "OnFailure" and job["spec"]["backoffLimit"] > 0
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # The Job's pods are not the Deployment's (nor the Service's).
    deployment_selector = k8s["Deployment/kjb"]["spec"]["selector"]
    assert not selects(deployment_selector, job["spec"]["template"]["metadata"]["labels"])


def test_kubernetes_config_passes_check_config(k8s, run_kjb, tmp_path):
    """The ConfigMap's files, as they appear at the mount point (here a temp
    dir standing in for /etc/kjb), with the Secret's variables."""
    data = k8s["ConfigMap/kjb-config"]["data"]
    etc = tmp_path / "etc-kjb"
    etc.mkdir()
    for name, text in data.items():
        (etc / name).write_text(text)
        if name.endswith(".avsc"):
            # The schemas are the repository's own.
            assert json.loads(text) == json.loads((REPO / "schemas" / "avro" / name).read_text()), name
    secret_env = {k: str(v) for k, v in k8s["Secret/kjb-secrets"]["stringData"].items()}
    env = {**secret_env, "KJB_SCHEMAS_DIR": str(etc)}
    res = run_kjb(["check-config"], etc / "kjb.cfg", env=env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{etc / 'kjb.cfg'}: ok"
    assert any(ln.startswith("topic orders ") for ln in lines), res.stdout
    # conninfo is in no file: without the Secret, kjb says what is missing.
    res = run_kjb(["check-config"], etc / "kjb.cfg", env={**env, "KJB_POSTGRES_CONNINFO": ""})
    assert res.returncode == 2 and "KJB_POSTGRES_CONNINFO" in res.stderr, res.stderr


# --------------------------------------------------------------------------
# Container image


def containerfile_stages() -> list[list[str]]:
    """The instructions of each stage, continuation lines joined."""
    stages: list[list[str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = (pending + raw).strip(), ""
        if line.upper().startswith("FROM "):
            stages.append([])
        assert stages, f"instruction before FROM: {line}"
        stages[-1].append(line)
    return stages


def apt_packages(stage: list[str]) -> list[str]:
    pkgs = []
    for line in stage:
        for m in re.finditer(r"apt-get install ((?:[^&|;])+)", line):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def instruction(stage: list[str], name: str) -> str:
    found = [ln.split(None, 1)[1] for ln in stage if ln.split(None, 1)[0].upper() == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


# The image's distribution. Its package index is fetched from Debian's
# archive (deps.sh's KJB_DEBIAN_MIRROR) and kept in the cache for a week.
DEBIAN_SUITE = "trixie"
INDEX_MAX_AGE = 7 * 86400


@pytest.fixture(scope="module")
def debian_index() -> dict[str, dict[str, str]]:
    """Debian 13's main Packages index for this machine's architecture:
    package name -> its fields (Version, Source, Depends, Provides...)."""
    arch = run(["dpkg", "--print-architecture"]).stdout.strip() or "amd64"
    cache = Path(os.environ.get("KJB_CACHE_DIR") or Path.home() / ".cache" / "kjb")
    path = cache / f"debian-{DEBIAN_SUITE}-main-{arch}-Packages.xz"
    mirror = os.environ.get("KJB_DEBIAN_MIRROR", "https://deb.debian.org/debian")
    url = f"{mirror}/dists/{DEBIAN_SUITE}/main/binary-{arch}/Packages.xz"
    if not path.is_file() or time.time() - path.stat().st_mtime > INDEX_MAX_AGE:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        res = run(["curl", "-fsS", "--retry", "3", "-o", tmp, url], timeout=120)
        if res.returncode == 0:
            tmp.replace(path)
        elif not path.is_file():  # a stale index still names the packages
            pytest.fail(f"could not fetch {url}: {res.stderr.strip()}", pytrace=False)
    index: dict[str, dict[str, str]] = {}
    for stanza in lzma.decompress(path.read_bytes()).decode().split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.M))
        if "Package" in fields:
            index[fields["Package"]] = fields
    assert len(index) > 10000 and "librdkafka1" in index, f"{path} does not look like {url}"
    return index


def depends(fields: dict[str, str]) -> list[str]:
    """The packages that fields' Depends and Pre-Depends name (the first of
    alternatives, as apt takes them), without versions or :any."""
    names = []
    for key in ("Pre-Depends", "Depends"):
        for dep in filter(None, (d.strip() for d in fields.get(key, "").split(","))):
            names.append(re.match(r"[^\s(|:]+", dep).group(0))
    return names


def source_of(fields: dict[str, str]) -> str:
    return fields.get("Source", fields["Package"]).split()[0]


def test_containerfile_packages_exist_and_cover_kjbs_libraries(kjb_bin, debian_index):
    stages = containerfile_stages()
    assert len(stages) == 2, "a build stage and a runtime stage"
    build, runtime = stages
    assert re.fullmatch(rf"FROM \S*debian:{DEBIAN_SUITE} AS build", build[0]), build[0]
    assert re.fullmatch(rf"FROM \S*debian:{DEBIAN_SUITE}-slim", runtime[0]), runtime[0]
    build_pkgs, runtime_pkgs = apt_packages(build), apt_packages(runtime)
    assert "cmake" in build_pkgs and "librdkafka1" in runtime_pkgs
    assert not [p for p in runtime_pkgs if p.endswith("-dev")], runtime_pkgs

    # Debian 13 has every package the stages install, by that name.
    unknown = sorted(set(build_pkgs + runtime_pkgs) - set(debian_index))
    assert not unknown, f"not in Debian 13's package index: {unknown}"
    # The distribution's librdkafka is the one the image builds and runs
    # with: it has to be new enough (DESIGN.md, Platform).
    version = debian_index["librdkafka1"]["Version"]
    assert run(["dpkg", "--compare-versions", version, "ge", "2.6"]).returncode == 0, version

    # The build stage has the -dev packages that scripts/deps.sh names for
    # building (not the test ones), itself or through what it installs
    # (deps.sh's -dev packages for building librdkafka come with Debian
    # 13's librdkafka-dev).
    deps = re.search(r"^PACKAGES=\((.*?)^\)", (REPO / "scripts" / "deps.sh").read_text(), re.M | re.S)
    dev = {p for p in deps.group(1).split() if p.endswith("-dev")} - {"libcmocka-dev", "libclang-rt-14-dev"}
    installed, todo = set(), list(build_pkgs)
    while todo:
        name = todo.pop()
        if name not in installed and name in debian_index:
            installed.add(name)
            todo += depends(debian_index[name])
    assert dev <= installed, f"the build stage does not install {sorted(dev - installed)}"

    # Every library kjb links (glibc is in the base image; sanitizer
    # runtimes only in test builds) comes from a runtime package: the one
    # that a build-stage -dev package depends on in Debian 13, built from
    # the same source and named after the library (Debian's policy 8.1:
    # libcurl.so.4 is in libcurl4t64, libconfig.so.11 in libconfig11), so
    # that it is what the build links against there.
    res = run([tool("readelf", "binutils"), "-d", kjb_bin])
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", res.stdout)
    assert "librdkafka.so.1" in needed, res.stdout
    base = re.compile(r"^(libc|libm|libdl|libpthread|librt|ld-linux.*|lib[almt]san|libubsan)\.so")
    shipped: dict[str, str] = {}  # runtime package -> the -dev package that links it
    for pkg in build_pkgs:
        if pkg.endswith("-dev"):
            for dep in depends(debian_index[pkg]):
                if dep in debian_index and source_of(debian_index[dep]) == source_of(debian_index[pkg]):
                    shipped[dep] = pkg
    problems = []
    for lib in needed:
        if base.match(lib):
            continue
        stem = re.escape(lib.split(".so", 1)[0])
        candidates = sorted(p for p in shipped if re.fullmatch(rf"{stem}-?[0-9][0-9a-z.+-]*", p))
        if not candidates:
            problems.append(f"{lib}: no build-stage -dev package brings it")
        elif not set(candidates) & set(runtime_pkgs):
            problems.append(f"{lib}: the runtime stage lacks {' or '.join(candidates)} "
                            f"(from {shipped[candidates[0]]})")
    assert not problems, f"kjb links libraries the image would not have: {problems}"

    # How the image runs, and that the Deployment runs it alike.
    user = instruction(runtime, "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, "a numeric non-root USER, for runAsNonRoot"
    assert json.loads(instruction(runtime, "ENTRYPOINT")) == ["kjb"]
    cmd = json.loads(instruction(runtime, "CMD"))
    assert cmd == ["run", "-c", "/etc/kjb/kjb.cfg"]
    assert instruction(runtime, "EXPOSE") == "9464"
    docs = [d for d in yaml.safe_load_all((K8S / "kjb.yaml").read_text()) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert container(dep, "kjb")["args"] == cmd
    assert dep["securityContext"]["runAsUser"] == int(user)

    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var"} <= ignored and ("build" in ignored or "build*" in ignored), ignored
