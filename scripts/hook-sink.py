#!/usr/bin/env python3
"""A stand-in webhook for the demo: the `send_confirmation` jobs of
config/example.cfg POST their args to http://127.0.0.1:8080/hook.

It logs one line per request and answers 200, except that the first attempt
of every fifth order gets a 503 with Retry-After: 2, so that the demo shows
kjb retrying. Standard library only.

    scripts/hook-sink.py [--port 8080]
"""

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen: set = set()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            args = json.loads(body)
        except ValueError:
            args = None
        order = args.get("order_id") if isinstance(args, dict) else None
        first = order not in seen
        seen.add(order)
        if isinstance(order, int) and order % 5 == 0 and first:
            status = 503
        else:
            status = 200
        print(f"{time.strftime('%H:%M:%S')} POST {self.path} order_id={order} -> {status}", flush=True)
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "2")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}\n' if status == 200 else b'{"ok": false, "error": "try again"}\n')

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - base class name
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    opts = parser.parse_args()
    server = ThreadingHTTPServer((opts.host, opts.port), Hook)
    print(f"hook sink listening on http://{opts.host}:{opts.port}/hook", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
