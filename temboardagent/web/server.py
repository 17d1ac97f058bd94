"""Threaded HTTPS server (cheroot) with TLS >= 1.2 and a non-blocking TLS handshake."""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import stat
import time
from pathlib import Path
from typing import Callable

from cheroot import errors, wsgi
from cheroot import server as cheroot_server
from cheroot.makefile import StreamReader, StreamWriter
from cheroot.ssl.builtin import BuiltinSSLAdapter

from .app import DRAIN_LIMIT, SERVER_HEADER

logger = logging.getLogger(__name__)

KEEP_ALIVE_LIMIT = 512
BODY_TOO_LARGE = "Request body is too large."


class LazyHandshakeSSLAdapter(BuiltinSSLAdapter):
    """Defer the TLS handshake to the first read, in a worker thread.

    cheroot's stock adapter handshakes in its accept loop, so one client that
    connects and stays silent stalls every other client until the socket times
    out. Here the handshake happens on the first read, in a worker thread, within
    the connection's per-request read budget.
    """

    def __init__(self, *args, request_budget: float = 10.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.request_budget = request_budget
        self._guards: dict[int, _GuardedSocket] = {}

    def wrap(self, sock):  # type: ignore[override]
        tls = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return tls, {"wsgi.url_scheme": "https", "HTTPS": "on"}

    def makefile(self, sock, mode="r", bufsize=-1):  # type: ignore[override]
        # cheroot makes the reader, then the writer, of each connection.
        if "r" in mode:
            guard = _GuardedSocket(sock, self.request_budget)
            self._guards[id(sock)] = guard
            return StreamReader(guard, mode, bufsize)
        guard = self._guards.pop(id(sock), None) or _GuardedSocket(sock, self.request_budget)
        return StreamWriter(guard, mode, bufsize)


class _GuardedSocket:
    """Socket proxy: TLS handshake on the first read, and a read budget per request.

    The budget (handshake, request line, headers and body) starts with the first
    read after a reply; a client trickling bytes loses its connection once it is
    spent, instead of holding a worker thread for as long as it likes. Handshake
    failures become cheroot's FatalSSLAlert / NoSSLError, which close the
    connection quietly (or answer plain HTTP with a 400).
    """

    def __init__(self, sock: ssl.SSLSocket, budget: float) -> None:
        self._sock = sock
        self._budget = budget
        self._timeout = sock.gettimeout()
        self._handshaken = False
        self._deadline: float | None = None

    def __getattr__(self, name: str):
        return getattr(self._sock, name)

    def _arm(self) -> None:
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._budget
        remaining = self._deadline - now
        if remaining <= 0:
            raise socket.timeout("timed out")
        limit = remaining if self._timeout is None else min(remaining, self._timeout)
        self._sock.settimeout(limit)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        if not self._handshaken:
            try:
                self._sock.do_handshake()
            except ssl.SSLError as exc:
                if "http request" in str(exc):
                    raise errors.NoSSLError(*exc.args) from exc
                raise errors.FatalSSLAlert(*exc.args) from exc
            except OSError as exc:  # reset, timeout: the client went away
                raise errors.FatalSSLAlert(*exc.args) from exc
            self._handshaken = True
        return self._sock.recv_into(buffer, nbytes, flags)

    def send(self, data, flags: int = 0) -> int:
        if self._deadline is not None:  # replying: the next request gets a new budget
            self._deadline = None
            self._sock.settimeout(self._timeout)
        return self._sock.send(data, flags)


class JSONErrorRequest(cheroot_server.HTTPRequest):
    """cheroot's own error replies (bad request line, oversized headers, 408...) in JSON."""

    def simple_response(self, status, msg=""):  # type: ignore[override]
        status = str(status)
        close = status[:3] in {"413", "414"}
        if close and self.response_protocol != "HTTP/1.1":
            status = "400 Bad Request"  # HTTP/1.0 has neither 413 nor 414
        text = msg if isinstance(msg, str) and msg else status[4:] + "."
        refused_body = status[:3] == "413" and "entity" in text  # Content-Length over the bound
        if refused_body:
            text = BODY_TOO_LARGE
        body = json.dumps({"error": text}).encode("utf-8")
        headers = [
            f"{self.server.protocol} {status}",
            f"Content-Length: {len(body)}",
            "Content-Type: application/json",
            f"Server: {SERVER_HEADER}",
            "Access-Control-Allow-Origin: *",
        ]
        if close:
            self.close_connection = True
            headers.append("Connection: close")
        head = ("\r\n".join(headers) + "\r\n\r\n").encode("ISO-8859-1")
        try:
            self.conn.wfile.write(head + body)
        except OSError as ex:
            if ex.args[0] not in errors.socket_errors_to_ignore:
                raise
        if refused_body:
            self._discard_body()

    def _discard_body(self) -> None:
        """Read and drop up to DRAIN_LIMIT bytes of a refused body, 64 KiB at a
        time, before the connection closes: a client still sending it would
        otherwise get a reset instead of the 413. Bounded in bytes, and in time
        by the connection's read budget; nothing is kept."""
        try:
            remaining = min(int(self.inheaders.get(b"Content-Length", 0)), DRAIN_LIMIT)
            while remaining > 0:
                chunk = self.conn.rfile.read(min(remaining, 65536))
                if not chunk:
                    return
                remaining -= len(chunk)
        except (OSError, ValueError, errors.FatalSSLAlert, errors.NoSSLError):
            return


class JSONErrorConnection(cheroot_server.HTTPConnection):
    RequestHandlerClass = JSONErrorRequest


def check_key_permissions(path: Path) -> None:
    mode = os.stat(path).st_mode
    if mode & stat.S_IROTH:
        logger.warning("TLS private key %s is world-readable; chmod 600 it.", path)


def make_server(
    app: Callable,
    address: str,
    port: int,
    cert: Path,
    key: Path,
    ca: Path | None = None,
    threads: int = 16,
    timeout: int = 10,
    max_header_size: int = 64 * 1024,
    max_body_size: int = 1024 * 1024,
) -> wsgi.Server:
    """Build (not start) the cheroot server.

    Every request body is bounded to ``max_body_size`` by cheroot itself, before
    any route or credential check: a larger Content-Length gets a 413 and the
    connection is closed after dropping at most ``DRAIN_LIMIT`` bytes of the
    body in small reads (cheroot would otherwise read an unread body in one
    piece before the next request); a chunked body stops being read at the bound.
    """
    check_key_permissions(key)
    server = wsgi.Server(
        (address, port),
        app,
        numthreads=threads,
        timeout=timeout,
        shutdown_timeout=1,
        server_name="temboard-agent",
        accepted_queue_timeout=1,
    )
    server.max_request_header_size = max_header_size
    server.max_request_body_size = max_body_size
    # cheroot closes keep-alive connections beyond this many idle ones (default 10):
    # more clients would then pay a TLS handshake per request.
    server.keep_alive_conn_limit = KEEP_ALIVE_LIMIT
    server.ConnectionClass = JSONErrorConnection
    adapter = LazyHandshakeSSLAdapter(
        str(cert), str(key), str(ca) if ca else None, request_budget=timeout
    )
    adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
    server.ssl_adapter = adapter
    return server
