"""Threaded HTTPS server (cheroot) with TLS >= 1.2 and a non-blocking TLS handshake."""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path
from typing import Callable

from cheroot import errors, wsgi
from cheroot.makefile import StreamReader, StreamWriter
from cheroot.ssl.builtin import BuiltinSSLAdapter

logger = logging.getLogger(__name__)


class LazyHandshakeSSLAdapter(BuiltinSSLAdapter):
    """Defer the TLS handshake to the first read, in a worker thread.

    cheroot's stock adapter handshakes in its accept loop, so one client that
    connects and stays silent stalls every other client until the socket times
    out. Here a silent connection waits in cheroot's selector like an idle
    keep-alive connection, holding no thread.
    """

    def wrap(self, sock):  # type: ignore[override]
        tls = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return tls, {"wsgi.url_scheme": "https", "HTTPS": "on"}

    def makefile(self, sock, mode="r", bufsize=-1):  # type: ignore[override]
        if "r" in mode:
            return StreamReader(_HandshakeOnRead(sock), mode, bufsize)
        return StreamWriter(sock, mode, bufsize)


class _HandshakeOnRead:
    """Socket proxy completing the TLS handshake before the first read.

    Handshake failures become cheroot's FatalSSLAlert / NoSSLError, which close
    the connection quietly (or answer plain HTTP with a 400).
    """

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._handshaken = False

    def __getattr__(self, name: str):
        return getattr(self._sock, name)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
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
) -> wsgi.Server:
    """Build (not start) the cheroot server."""
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
    adapter = LazyHandshakeSSLAdapter(str(cert), str(key), str(ca) if ca else None)
    adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
    server.ssl_adapter = adapter
    return server
