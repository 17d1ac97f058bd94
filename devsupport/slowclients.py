"""Clients that trickle one byte a second, for tests and benchmarks of the HTTP server."""

from __future__ import annotations

import socket
import ssl
import threading
from contextlib import contextmanager
from typing import Iterator


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@contextmanager
def trickling_clients(port: int, count: int, timeout: float = 60) -> Iterator[None]:
    """``count`` clients send one byte a second to 127.0.0.1:``port`` (half inside TLS,
    half in the TLS handshake); enters once all are connected, stops them on exit.

    Raises :class:`TimeoutError` when they do not all connect within ``timeout``.
    """
    stop = threading.Event()
    connected = threading.Semaphore(0)

    def slow(tls_first: bool) -> None:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            sock = _client_context().wrap_socket(raw) if tls_first else raw
            data = b"GET /profile HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100
            if not tls_first:  # a TLS record header, then its content byte by byte
                data = bytes.fromhex("1603010200") + b"\x01" * 100
            sock.send(data[:1])
            connected.release()
            for byte in data[1:]:
                if stop.wait(1):
                    break
                sock.send(bytes([byte]))
            sock.close()
        except OSError:
            connected.release()

    threads = [threading.Thread(target=slow, args=(i % 2 == 0,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(count):
            if not connected.acquire(timeout=timeout):
                raise TimeoutError("the trickling clients did not connect")
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout)
