"""The agent's HTTP stack without the agent: the reference of the benchmarks.

``make_server`` of the agent (cheroot, the same TLS adapter, threads and limits)
serving a WSGI app that reads the body and answers a small JSON object at once:
no session check, no routing, no SQL, no logging. Run it in a process of its own,
like the agent (``python -m bench.bare_server --port P --cert C --key K``), or
through :func:`bench.common.bare_server`.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from temboardagent.web.server import make_server

BODY = b'{"username": "alice"}'


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    server = make_server(app, "127.0.0.1", args.port, args.cert, args.key, threads=args.threads)
    server.error_log = lambda *args, **kwargs: None  # clients cut off: not worth a traceback
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    server.safe_start()


if __name__ == "__main__":
    main()
