"""W3C trace context from Kafka to the handler: a record's traceparent and
tracestate headers go into its jobs' meta; each attempt is a child span
of that trace (same trace id and flags, a span id of its own) that the
http handler sends as headers, exec gets as TRACEPARENT/TRACESTATE and a
plugin reads from the job (the example plugin names the trace in its
errors). Records without a valid traceparent pass none on."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import avrokit
from kjbtest import order, unique_name, wait_for, write_ingest_config

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
