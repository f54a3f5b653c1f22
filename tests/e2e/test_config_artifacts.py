"""The monitoring artifacts kjb ships in config/: the Prometheus alert rules
(config/alerts.yml, with their unit tests in config/alerts.test.yml) pass
promtool, the Grafana dashboard (config/grafana-dashboard.json) is well
formed and its queries are valid PromQL, and every metric the dashboard and
the rules query is one that a real `kjb run` exports at /metrics, with the
type and labels DESIGN.md promises. That exposition must also pass
`promtool check metrics`."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import avrokit
from kjbtest import REPO, free_port, order, unique_name, wait_for

CONFIG = REPO / "config"
DASHBOARD = CONFIG / "grafana-dashboard.json"
ALERTS = CONFIG / "alerts.yml"
ALERT_TESTS = CONFIG / "alerts.test.yml"

# DESIGN.md, "Observability and operations" and "Dead-letter workbench":
# name -> (type, label names).
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    name: (kind, frozenset(labels))
    for name, kind, labels in [
        ("kjb_records_consumed_total", "counter", {"topic"}),
        ("kjb_records_dead_lettered_total", "counter", {"topic", "reason"}),
        ("kjb_jobs_inserted_total", "counter", {"kind"}),
        ("kjb_jobs_finished_total", "counter", {"kind", "outcome"}),
        ("kjb_job_duration_seconds", "histogram", {"kind"}),
        ("kjb_job_queue_latency_seconds", "histogram", {"kind"}),
        ("kjb_jobs", "gauge", {"kind", "state"}),
        ("kjb_consumer_lag", "gauge", {"topic", "partition"}),
        ("kjb_rate_limit_tokens", "gauge", {"kind"}),
        ("kjb_breaker_open", "gauge", {"kind"}),
        ("kjb_replay_records_total", "counter", {"topic", "outcome"}),
        ("kjb_build_info", "gauge", {"version"}),
        ("kjb_dead_letters", "gauge", {"dlq_topic", "reason", "status"}),
    ]
}

# Metric names in a PromQL expression: ours and the standard process ones.
# Label names and values never start that way in our queries, and a name
# cannot be preceded by a name character or a quote.
METRIC_RE = re.compile(r"(?<![\w:\"'])((?:kjb|process)_[A-Za-z0-9_:]*)")
# Grafana's variables, replaced to make a query plain PromQL.
GRAFANA_VAR_RE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
GRAFANA_INTERVALS = {"__rate_interval", "__interval", "__range"}


def promtool() -> str:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).is_file():
        pytest.fail("promtool not found: install Debian's prometheus package (scripts/deps.sh)",
                    pytrace=False)
    return path


def run_promtool(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], input=input, capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)


def metric_names(expr: str) -> set[str]:
    return set(METRIC_RE.findall(expr))


# --------------------------------------------------------------------------
# The artifacts themselves


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dash: dict) -> list[dict]:
    """Every panel, including those inside collapsed rows."""
    out = []
    for panel in dash.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    out = []
    for panel in all_panels(dash):
        for target in panel.get("targets", []):
            out.append((f"panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}",
                        target.get("expr", "")))
    for var in dash["templating"]["list"]:
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((f"variable {var['name']}", query))
    return out


def alert_exprs() -> list[str]:
    """The `expr` of every rule in alerts.yml, read without a YAML library
    (the venv has none): plain `expr: ...` or a block scalar `expr: |`.
    The test checks the count against promtool's, so none can slip by."""
    exprs = []
    lines = ALERTS.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:- )?expr:\s*(.*?)\s*$", lines[i])
        i += 1
        if not m:
            continue
        indent, rest = len(m.group(1)), m.group(2)
        if rest and rest[0] in "|>":
            body = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i].strip())
                i += 1
            exprs.append("\n".join(body).strip())
        else:
            exprs.append(rest.strip("'\""))
    return exprs


def test_alert_rules_pass_promtool_check():
    res = run_promtool("check", "rules", str(ALERTS))
    assert res.returncode == 0, f"promtool check rules {ALERTS}:\n{res.stdout}{res.stderr}"
    found = re.search(r"SUCCESS: (\d+) rules found", res.stdout)
    assert found, res.stdout
    exprs = alert_exprs()
    assert len(exprs) == int(found.group(1)), (exprs, res.stdout)
    assert all(exprs), exprs


def test_alert_rule_unit_tests_pass():
    res = run_promtool("test", "rules", str(ALERT_TESTS))
    assert res.returncode == 0, f"promtool test rules {ALERT_TESTS}:\n{res.stdout}{res.stderr}"


def test_alert_rules_cover_what_operators_need():
    text = ALERTS.read_text()
    alerts = re.findall(r"^\s*- alert:\s*(\S+)", text, re.M)
    assert len(alerts) == len(set(alerts)), alerts
    for name in ("KjbConsumerLagGrowing", "KjbDeadLetterRateHigh", "KjbJobsDiscarded", "KjbBreakerOpen",
                 "KjbInstanceDown", "KjbAbsent"):
        assert name in alerts, name
    # promtool test rules proves that each of them fires somewhere.
    tested = set(re.findall(r"alertname:\s*(\S+)", ALERT_TESTS.read_text()))
    assert set(alerts) <= tested, f"alerts without a unit test: {sorted(set(alerts) - tested)}"


def test_dashboard_is_well_formed():
    dash = dashboard()
    assert 36 <= dash["schemaVersion"] <= 41
    assert dash["title"] and dash["uid"]
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, v["name"]

    panels = all_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        what = f"panel {p.get('id')} {p.get('title')!r}"
        assert p.get("title"), f"{what} has no title"
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, what
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{what} overlaps {cells[(x, y)]}"
                cells[(x, y)] = what
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, what
        assert p.get("targets"), f"{what} has no targets"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"{what}: duplicate refIds {refs}"
        for t in p["targets"]:
            assert t.get("expr", "").strip(), f"{what} target {t.get('refId')} has no expr"
            assert t["datasource"] == p["datasource"], what
            assert "legendFormat" in t, f"{what} target {t['refId']} has no legend"
        assert p["fieldConfig"]["defaults"].get("unit"), f"{what} has no unit"

    # Every metric of the contract is on the dashboard.
    used = set().union(*(metric_names(q) for _, q in dashboard_queries(dash)))
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert set(CONTRACT) <= used, f"not on the dashboard: {sorted(set(CONTRACT) - used)}"


def test_dashboard_shows_the_dead_letter_index():
    """kjb_dead_letters (one series per DLQ topic, reason and status,
    counted from the table every instance shares): the dead letters still
    waiting, stacked by reason, and a table of all of them by status.
    Both take the maximum over instances before summing, so that two
    instances do not count each row twice."""
    panels = all_panels(dashboard())
    using = {p["title"]: p for p in panels if any("kjb_dead_letters" in t.get("expr", "") for t in p.get("targets", []))}

    waiting = [p for p in using.values() if p["type"] == "timeseries"]
    assert len(waiting) == 1, sorted(using)
    [p] = waiting
    [t] = p["targets"]
    expr = re.sub(r"\s+", "", t["expr"])
    assert expr.startswith("sumby(reason)(maxby(dlq_topic,reason,status)(kjb_dead_letters{"), t["expr"]
    assert 'status="dead"' in expr, t["expr"]
    assert "{{reason}}" in t["legendFormat"], t
    assert p["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal", p["title"]

    tables = [p for p in using.values() if p["type"] == "table"]
    assert len(tables) == 1, sorted(using)
    [p] = tables
    [t] = p["targets"]
    expr = re.sub(r"\s+", "", t["expr"])
    assert expr.startswith("sumby(status)(maxby(dlq_topic,reason,status)(kjb_dead_letters{"), t["expr"]
    assert "status=" not in expr, t["expr"]
    assert t.get("instant") is True and t.get("format") == "table", t
    requires = {r["id"] for r in dashboard()["__requires"] if r["type"] == "panel"}
    assert {p["type"] for p in panels if p["type"] != "row"} <= requires, requires


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool has no expression checker, but it parses every rule of a
    rules file: each query becomes a recording rule, Grafana's variables
    replaced by what they expand to."""

    def plain(query: str) -> str:
        return GRAFANA_VAR_RE.sub(lambda m: "5m" if (m.group(1) or m.group(2)) in GRAFANA_INTERVALS
                                  else ".*", query)

    rules = []
    for n, (where, query) in enumerate(dashboard_queries(dashboard())):
        # label_values() is Grafana's, not PromQL: check its selector.
        lv = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", query)
        rules.append({"record": f"kjb_dashboard:query_{n}", "expr": plain(lv.group(1) if lv else query),
                      "labels": {"where": where}})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}, indent=1))
    res = run_promtool("check", "rules", str(path))
    assert res.returncode == 0, f"invalid PromQL in {DASHBOARD}:\n{res.stdout}{res.stderr}\n{path.read_text()}"


# --------------------------------------------------------------------------
# Against a real kjb


def request(port: int, path: str, method: str = "GET", body: bytes | None = None,
            token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body,
                                 headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def accepted_names(families: dict) -> dict[str, str]:
    """Every name a query may use for the exported families -> its family.
    The parser names a counter family without _total; a histogram's
    series are _bucket, _sum and _count."""
    out = {}
    for name, fam in families.items():
        out[name] = name
        if fam.type == "counter":
            out[name + "_total"] = name
        elif fam.type in ("histogram", "gaugehistogram"):
            for suffix in ("_bucket", "_sum", "_count"):
                out[name + suffix] = name
        elif fam.type == "summary":
            for suffix in ("_sum", "_count"):
                out[name + suffix] = name
    return out


def contract_problems(families: dict) -> list[str]:
    """How the exposition differs from DESIGN.md's list (type, labels)."""
    problems = []
    by_sample = accepted_names(families)
    for name, (kind, labels) in CONTRACT.items():
        fam = families.get(by_sample.get(name, ""))
        if fam is None:
            continue  # reported as missing elsewhere
        if fam.type != kind:
            problems.append(f"{name}: type {fam.type}, DESIGN.md says {kind}")
        for s in fam.samples:
            have = frozenset(s.labels) - {"le"}
            if have != labels:
                problems.append(f"{name}: sample {s.name}{s.labels} has labels {sorted(have)}, "
                                f"DESIGN.md says {sorted(labels)}")
                break
    return problems


GOOD, BAD = 4, 3


def write_config(path: Path, group: str, topic: str, port: int) -> Path:
    schemas = avrokit.schema_dir(path.parent / "schemas")
    path.write_text(f"""
kafka = {{ brokers = "set-by-env"; group = "{group}"; }};
postgres = {{ conninfo = "set-by-env"; }};
http = {{ listen = "127.0.0.1:{port}"; }};
schemas = {{ dir = "{schemas}"; ids = ( {{ id = 1; file = "order_created.avsc"; }} ); }};
ingest = {{ batch_size = 50; batch_timeout = "50ms"; }};
executor = {{ poll_interval = "200ms"; heartbeat = "500ms"; lease = "8s"; shutdown_timeout = "5s"; }};
topics = ( {{ topic = "{topic}"; schema = "order_created.avsc";
              jobs = ( {{ kind = "greet"; }}, {{ kind = "refuse"; args = [ "order_id" ]; }} ); }} );
handlers = (
  {{ kind = "greet"; type = "log"; concurrency = 2;
     rate_limit = {{ rate = 100.0; burst = 10; }};
     breaker = {{ failure_ratio = 0.5; min_calls = 20; open_for = "30s"; }}; }},
  {{ kind = "refuse"; type = "exec"; command = [ "/bin/false" ]; retry = {{ max_attempts = 1; }}; }}
);
""")
    return path


def test_real_exposition_has_every_queried_metric(kafka, db, make_topic, run_kjb, start_kjb,
                                                  kjb_services_env, tmp_path):
    """Runs kjb with both roles through every path that creates metrics:
    good records become jobs that complete ("greet", log handler, with a
    rate limit and a breaker) or are discarded ("refuse", an exec handler
    that exits 1); malformed records are dead-lettered; the dead letters
    are replayed through the admin API. Then /metrics must carry every
    metric the dashboard and the alert rules query, as DESIGN.md defines
    them, and pass `promtool check metrics`."""
    port = free_port()
    topic = make_topic()
    cfg = write_config(tmp_path / "kjb.cfg", unique_name("artifacts"), topic, port)
    token = "artifacts-admin-token"
    env = {**kjb_services_env, "KJB_HTTP_LISTEN": "", "KJB_ADMIN_TOKEN": token}
    res = run_kjb(["migrate"], cfg, env=env)
    assert res.returncode == 0, res.stderr

    schema = avrokit.load(avrokit.PRODUCT_SCHEMAS / "order_created.avsc")
    bad = [b"\x07junk", b"\x00\x00\x00\x00\x01", b"\x00\x00\x00\x00\x09" + avrokit.body(schema, order(99))]
    assert len(bad) == BAD
    kafka.produce(topic, [avrokit.confluent(schema, order(i), 1) for i in range(GOOD)] + bad)
    proc = start_kjb(["run"], cfg, env=env)

    def metrics() -> str:
        status, body = request(port, "/metrics")
        assert status == 200, body
        return body

    def value(body: str, line_start: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(line_start))

    def settled() -> bool:
        finals = db.scalar("SELECT count(*) FROM kjb.jobs WHERE state IN ('completed', 'discarded')")
        if finals != 2 * GOOD:
            return False
        body = metrics()
        return (value(body, "kjb_records_consumed_total{") == GOOD + BAD
                and value(body, "kjb_records_dead_lettered_total{") == BAD
                and value(body, 'kjb_jobs_finished_total{kind="greet",outcome="completed"}') == GOOD
                and value(body, 'kjb_jobs_finished_total{kind="refuse",outcome="discarded"}') == GOOD)

    wait_for(settled, timeout=300, interval=0.5,
             message=lambda: f"{2 * GOOD} finished jobs and {BAD} dead letters; jobs "
                             f"{db.query('SELECT kind, state::text, count(*) FROM kjb.jobs GROUP BY 1, 2')}\n"
                             f"{proc.log()[-4000:]}")

    def replay_done() -> dict | None:
        st, stats = request(port, "/api/stats")
        replay = json.loads(stats).get("replay") if st == 200 else None
        return replay if replay and not replay["running"] else None

    # The dead letters go through the admin replay (they still fail: that
    # is an outcome too). A replay that fails outright, such as a Kafka
    # timeout on a loaded machine, is tried again.
    notes = []
    for _ in range(3):
        status, body = request(port, "/api/replay", "POST", b"{}", token)
        if status != 202:
            notes.append(f"POST /api/replay answered {status} {body.strip()[:200]}")
            break
        replay = wait_for(replay_done, timeout=120, interval=0.5,
                          message=lambda: f"the replay to finish: {request(port, '/api/stats')}\n"
                                          f"{proc.log()[-4000:]}")
        if not replay["error"]:
            break
        notes.append(f"the replay failed: {replay['error']}")
    if notes:
        notes.append("so kjb_replay_records_total may be missing for that reason")

    dash = dashboard()
    wanted: dict[str, list[str]] = {}
    for where, query in dashboard_queries(dash):
        for name in metric_names(query):
            wanted.setdefault(name, []).append(f"dashboard {where}")
    for expr in alert_exprs():
        for name in metric_names(expr):
            wanted.setdefault(name, []).append("alerts.yml")

    def missing(body: str) -> list[str]:
        families = {f.name: f for f in text_string_to_metric_families(body)}
        return sorted(set(wanted) - set(accepted_names(families)))

    # Gauges such as kjb_jobs are refreshed every few seconds: give them
    # time to appear before reporting them missing.
    try:
        wait_for(lambda: not missing(metrics()), timeout=30, interval=1, message="every queried metric")
    except AssertionError:
        pass
    body = metrics()
    families = {f.name: f for f in text_string_to_metric_families(body)}

    problems = []
    gone = missing(body)
    if gone:
        problems.append("queried but not exported by kjb at /metrics:\n" + "\n".join(
            f"  {name}  (used by {', '.join(sorted(set(wanted[name])))})" for name in gone))
    undocumented = sorted(set(CONTRACT) - set(accepted_names(families)))
    if undocumented:
        problems.append(f"in DESIGN.md but not exported: {', '.join(undocumented)}")
    problems += contract_problems(families)
    check = run_promtool("check", "metrics", input=body)
    if check.returncode != 0:
        problems.append(f"promtool check metrics exited {check.returncode}:\n{check.stdout}{check.stderr}")
    assert not problems, "\n\n".join(problems + notes) + f"\n\n/metrics was:\n{body}"
    assert proc.stop() == 0
