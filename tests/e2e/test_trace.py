"""W3C trace context from Kafka to the handler: a record's traceparent and
tracestate headers go into its jobs' meta; each attempt is a child span
of that trace (same trace id and flags, a span id of its own) that the
http handler sends as headers, exec gets as TRACEPARENT/TRACESTATE and a
plugin reads from the job (the example plugin names the trace in its
errors). Records without a valid traceparent pass none on."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import avrokit
from kjbtest import free_port, order, unique_name, wait_for, write_ingest_config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TP = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
TS = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
V1 = avrokit.PRODUCT_SCHEMAS / "order_created.avsc"


class Hook:
    """Records the trace headers of each POST, by its args' order_id."""

    def __init__(self):
        self.seen: dict[int, list[tuple[str | None, str | None]]] = {}
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                args = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.seen.setdefault(args["order_id"], []).append(
                    (self.headers.get("traceparent"), self.headers.get("tracestate")))
                # The first attempt of order 1 fails: its retry is a span of its own.
                status = 503 if args["order_id"] == 1 and len(outer.seen[1]) == 1 else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_trace_context_reaches_every_handler(kafka, db, make_topic, run_kjb, start_kjb, kjb_services_env,
                                             tmp_path, kjb_bin):
    env = kjb_services_env
    hook = Hook()
    plugin = kjb_bin.parent / "libkjb_example_handler.so"
    seen_env = tmp_path / "env.txt"
    topic = make_topic()
    cfg = write_ingest_config(tmp_path / "kjb.cfg", unique_name("trace"), f"""
  {{ topic = "{topic}"; schema = "order_created.avsc";
     jobs = ( {{ kind = "hook"; args = [ "order_id" ]; }}, {{ kind = "sh"; args = [ "order_id" ]; }},
              {{ kind = "plug"; args = [ "order_id" ]; }} ); }}""")
    retry = 'retry = { base = "100ms"; max = "100ms"; jitter = "none"; max_attempts = 2; };'
    cfg.write_text(cfg.read_text() + f"""
executor = {{ poll_interval = "100ms"; }};
handlers = (
  {{ kind = "hook"; type = "http"; url = "{hook.url}"; {retry} }},
  {{ kind = "sh"; type = "exec";
     command = [ "/bin/sh", "-c", "cat >/dev/null; echo \\"$KJB_JOB_ID|$TRACEPARENT|$TRACESTATE\\" >> {seen_env}" ]; }},
  {{ kind = "plug"; type = "plugin"; plugin = "{plugin}"; {retry} }}
);
""")
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    schema = avrokit.load(V1)
    # Order 1 carries the trace; order 2 a malformed one; order 3 none.
    kafka.produce(topic, [avrokit.confluent(schema, order(1), 1)],
                  headers=[("traceparent", TP.encode()), ("tracestate", TS.encode())])
    kafka.produce(topic, [avrokit.confluent(schema, order(2), 1)],
                  headers=[("traceparent", TP.upper().encode()), ("tracestate", TS.encode())])
    kafka.produce(topic, [avrokit.confluent(schema, order(3), 1)])
    # The plugin fails jobs whose args say so: make order 1's plugin job do that.
    proc = start_kjb(["run"], cfg, env={**env, "TRACEPARENT": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state IN ('completed', 'discarded')") == 9,
             timeout=120, message=lambda: proc.log()[-3000:])

    metas = {r[0]: r[1] for r in db.query(
        "SELECT (args->>'order_id')::int, meta FROM kjb.jobs WHERE kind = 'hook'")}
    assert (metas[1]["traceparent"], metas[1]["tracestate"]) == (TP, TS)
    assert metas[1]["headers"]["traceparent"] == TP  # the headers stay as they were
    assert "traceparent" not in metas[2] and "tracestate" not in metas[2]
    assert "traceparent" not in metas[3]

    # http: two attempts of order 1, each a child span of the record's.
    spans = hook.seen[1]
    assert len(spans) == 2, hook.seen
    for tp, ts in spans:
        assert tp.startswith(f"00-{TRACE_ID}-") and tp.endswith("-01") and ts == TS, spans
        assert tp != TP
    assert spans[0][0] != spans[1][0]
    assert hook.seen[2] == [(None, None)] and hook.seen[3] == [(None, None)]

    # exec: the attempt's trace in its environment, kjb's own TRACEPARENT not.
    by_job = {}
    for line in seen_env.read_text().splitlines():
        jid, tp, ts = line.split("|")
        by_job[int(jid)] = (tp, ts)
    sh = {r[0]: r[1] for r in db.query("SELECT (args->>'order_id')::int, id FROM kjb.jobs WHERE kind = 'sh'")}
    tp, ts = by_job[sh[1]]
    assert tp.startswith(f"00-{TRACE_ID}-") and tp != TP and ts == TS
    assert by_job[sh[2]] == ("", "") and by_job[sh[3]] == ("", "")

    # plugin: the example names the trace in its error (order_id alone
    # completes, so make one fail: insert a job that asks to).
    db.query("INSERT INTO kjb.jobs (kind, args, meta, max_attempts) VALUES"
             " ('plug', '{\"order_id\": 9, \"fail\":\"transient\"}', %s, 1)", json.dumps({"traceparent": TP}))
    wait_for(lambda: db.scalar("SELECT state::text FROM kjb.jobs WHERE kind = 'plug' AND args->>'order_id' = '9'")
             == "discarded", timeout=60, message=lambda: proc.log()[-3000:])
    errors = db.scalar("SELECT errors FROM kjb.jobs WHERE kind = 'plug' AND args->>'order_id' = '9'")
    assert errors[0]["error"].endswith(f"(trace {TRACE_ID})"), errors
    assert db.scalar("SELECT count(*) FROM kjb.jobs WHERE kind = 'plug' AND state = 'completed'") == 3
    assert proc.stop() == 0


class Collector:
    """An OTLP/HTTP receiver (JSON): keeps every span it is sent; answers
    `status` (200 by default)."""

    def __init__(self):
        self.spans: list[dict] = []
        self.requests = 0
        self.status = 200
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/json"
                outer.requests += 1
                if outer.status == 200:
                    for rs in body["resourceSpans"]:
                        service = {a["key"]: a["value"]["stringValue"] for a in rs["resource"]["attributes"]}
                        for ss in rs["scopeSpans"]:
                            for s in ss["spans"]:
                                s["service"] = service["service.name"]
                                s["attrs"] = {a["key"]: a["value"].get("stringValue", a["value"].get("intValue"))
                                              for a in s["attributes"]}
                                outer.spans.append(s)
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_spans_are_exported_with_their_parent_links(kafka, db, make_topic, run_kjb, start_kjb,
                                                    kjb_services_env, tmp_path):
    env = kjb_services_env
    hook, collector = Hook(), Collector()
    topic = make_topic()
    cfg = write_ingest_config(tmp_path / "kjb.cfg", unique_name("otlp"), f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "hook"; args = [ "order_id" ]; }} ); }}""")
    cfg.write_text(cfg.read_text() + f"""
executor = {{ poll_interval = "100ms"; }};
tracing = {{ otlp_endpoint = "{collector.url}/"; service_name = "kjb-e2e"; sample_ratio = 1.0; }};
handlers = ( {{ kind = "hook"; type = "http"; url = "{hook.url}";
               retry = {{ base = "100ms"; max = "100ms"; jitter = "none"; }}; }} );
""")
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    schema = avrokit.load(V1)
    unsampled = f"00-{'a' * 32}-{'b' * 16}-00"
    kafka.produce(topic, [avrokit.confluent(schema, order(1), 1)],
                  headers=[("traceparent", TP.encode()), ("tracestate", TS.encode())])
    kafka.produce(topic, [avrokit.confluent(schema, order(2), 1)])  # starts a trace of its own
    kafka.produce(topic, [avrokit.confluent(schema, order(3), 1)], headers=[("traceparent", unsampled.encode())])
    kafka.produce(topic, [b"\x07junk"], headers=[("traceparent", TP.encode())])  # a dead letter
    proc = start_kjb(["run"], cfg, env=env)
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 3,
             timeout=120, message=lambda: proc.log()[-3000:])
    # Order 1 fails once at the hook: two attempts. Spans: 4 ingest, 3 + 1 attempts, minus
    # the unsampled record's 2.
    wait_for(lambda: len(collector.spans) >= 5, timeout=30, message=lambda: str(collector.spans))
    assert proc.stop() == 0
    spans = collector.spans
    assert {s["service"] for s in spans} == {"kjb-e2e"}
    ingest = {s["attrs"]["messaging.kafka.offset"]: s for s in spans if s["name"] == "kjb ingest"}
    attempts = [s for s in spans if s["name"] == "kjb attempt"]
    assert sorted(int(o) for o in ingest) == [0, 1, 3], spans  # not the unsampled record
    first, second, junk = ingest["0"], ingest["1"], ingest["3"]
    # Order 1: the record's span is the ingest span's parent.
    assert (first["traceId"], first["parentSpanId"]) == (TRACE_ID, "00f067aa0ba902b7")
    assert first["status"] == {"code": 1} and first["attrs"]["kjb.outcome"] == "jobs"
    assert first["attrs"]["messaging.destination.name"] == topic
    # Order 2: a root of its own.
    assert "parentSpanId" not in second and second["traceId"] != TRACE_ID
    # The junk record: dead-lettered, an error span in the record's trace.
    assert junk["traceId"] == TRACE_ID and junk["status"]["code"] == 2
    assert junk["attrs"]["kjb.outcome"] == "dead_letter"
    # Attempts: children of their record's ingest span, with the job's coordinates.
    by_parent: dict[str, list[dict]] = {}
    for a in attempts:
        by_parent.setdefault(a["parentSpanId"], []).append(a)
    assert sorted(by_parent) == sorted([first["spanId"], second["spanId"]]), attempts
    one = sorted(by_parent[first["spanId"]], key=lambda a: int(a["attrs"]["kjb.attempt"]))
    assert [a["attrs"]["kjb.outcome"] for a in one] == ["transient", "ok"]
    assert [a["status"]["code"] for a in one] == [2, 1]
    assert all(a["traceId"] == TRACE_ID and a["attrs"]["kjb.source.topic"] == topic
               and a["attrs"]["kjb.source.offset"] == "0" and a["attrs"]["kjb.kind"] == "hook" for a in one)
    # What the hook was sent is the attempt's own span.
    assert [tp for tp, _ in hook.seen[1]] == [f"00-{TRACE_ID}-{a['spanId']}-01" for a in one]
    assert [a["traceId"] for a in by_parent[second["spanId"]]] == [second["traceId"]]
    # The job's meta continues the ingest span, and keeps the record's own header.
    meta = db.scalar("SELECT meta FROM kjb.jobs WHERE args->>'order_id' = '1'")
    assert meta["traceparent"] == f"00-{TRACE_ID}-{first['spanId']}-01" and meta["tracestate"] == TS
    assert meta["headers"]["traceparent"] == TP
    # The unsampled record passes its context on, and exports nothing.
    assert db.scalar("SELECT meta->>'traceparent' FROM kjb.jobs WHERE args->>'order_id' = '3'") == unsampled
    for s in spans:
        assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) > 1_700_000_000 * 10**9


def test_a_collector_that_refuses_spans_slows_nothing(kafka, db, make_topic, run_kjb, start_kjb,
                                                     kjb_services_env, tmp_path, kjb_bin):
    env = kjb_services_env
    collector = Collector()
    collector.status = 503
    topic = make_topic()
    cfg = write_ingest_config(tmp_path / "kjb.cfg", unique_name("otlpdown"), f"""
  {{ topic = "{topic}"; schema = "order_created.avsc"; jobs = ( {{ kind = "note"; }} ); }}""")
    cfg.write_text(cfg.read_text() + f"""
executor = {{ poll_interval = "100ms"; }};
tracing = {{ otlp_endpoint = "{collector.url}"; }};
handlers = ( {{ kind = "note"; type = "log"; }} );
""")
    assert run_kjb(["migrate"], cfg, env=env).returncode == 0
    schema = avrokit.load(V1)
    kafka.produce(topic, [avrokit.confluent(schema, order(i), 1) for i in range(50)],
                  headers=[("traceparent", TP.encode())])
    port = free_port()
    proc = start_kjb(["run"], cfg, env={**env, "KJB_HTTP_LISTEN": f"127.0.0.1:{port}"})
    wait_for(lambda: db.scalar("SELECT count(*) FROM kjb.jobs WHERE state = 'completed'") == 50,
             timeout=120, message=lambda: proc.log()[-3000:])
    wait_for(lambda: collector.requests > 0, timeout=30, message="an export attempt")

    def dropped() -> float:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith('kjb_otlp_spans_dropped_total{reason="export_failed"}'))

    wait_for(lambda: dropped() >= 100, timeout=30, message="100 spans counted as dropped")
    assert proc.stop() == 0
    assert "tracing: http://" in proc.log() and "answered 503" in proc.log()


def test_tracing_config_errors(run_kjb, tmp_path):
    for body, message in [
        ('otlp_endpoint = "ftp://x";', 'tracing.otlp_endpoint: expected an http:// or https:// URL, got "ftp://x"'),
        ('otlp_endpoint = "http://127.0.0.1:4318"; sample_ratio = 1.5;',
         "tracing.sample_ratio: must be greater than 0 and at most 1, got 1.5"),
        ('otlp_endpoint = "http://127.0.0.1:4318"; colour = "red";', 'unknown key "colour" in tracing'),
    ]:
        cfg = write_ingest_config(tmp_path / "kjb.cfg", "g", '{ topic = "t"; schema = "order_created.avsc"; }')
        text = cfg.read_text()
        cfg.write_text(text + f"tracing = {{ {body} }};\n")
        line = text.count("\n") + 1
        res = run_kjb(["check-config"], cfg)
        assert (res.returncode, res.stderr) == (2, f"kjb: check-config: {cfg}:{line}: {message}\n")
