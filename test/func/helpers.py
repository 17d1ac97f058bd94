"""Helpers shared by functional tests: waits, the agent's route table, TLS clients."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.sql

from temboardagent.agent import Agent
from temboardagent.config import load_config
from temboardagent.embedded import EmbeddedCluster, make_self_signed_cert
from temboardagent.web.app import RouteInfo

T = TypeVar("T")

#: Deadlines in functional tests only catch a hang: they are far above any
#: normal duration, even on a loaded 2-core machine.
HANG = 60.0


def wait_for(predicate: Callable[[], T], timeout: float = HANG, message: str = "condition") -> T:
    """Poll ``predicate`` until it returns a true value (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout ({timeout:.0f} s) waiting for {message}")
        time.sleep(0.02)


def finishes(call: Callable[[], T], timeout: float = HANG, message: str = "call") -> T:
    """``call()``'s result, run in a thread; fails if it has not returned after ``timeout`` s
    (a hang, e.g. a read queued behind a lock), without blocking the test forever."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"{message} did not return within {timeout:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@contextmanager
def built_agent(tmp_path: Path, plugins: str = '["maintenance"]') -> Iterator[Agent]:
    """An agent built (plugins loaded, routes registered), not served."""
    make_self_signed_cert(tmp_path / "c.pem", tmp_path / "k.pem")
    (tmp_path / "users").write_text("")
    conf = tmp_path / "a.conf"
    conf.write_text(
        "[temboard]\nusers = users\nssl_cert_file = c.pem\nssl_key_file = k.pem\n"
        f"home = home\nplugins = {plugins}\nport = 1\n"
    )
    agent = Agent(load_config(conf, environ={}))
    try:
        yield agent
    finally:
        agent.tasks.close()
        agent.sessions.close()
        agent.home_lock.release()


def route_table(tmp_path: Path) -> list[RouteInfo]:
    """The routes an agent with the maintenance plugin registers (built, not served)."""
    with built_agent(tmp_path) as agent:
        return list(agent.web.routes)


def drop_database(pg: EmbeddedCluster, name: str) -> None:
    """DROP DATABASE IF EXISTS ``name`` even with sessions connected, on every version.

    ``DROP DATABASE ... WITH (FORCE)`` only exists from PostgreSQL 13: refuse new
    sessions, end the current ones, then drop.
    """
    ident = psycopg2.sql.Identifier(name)
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                return
            cur.execute(psycopg2.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident))
            for _ in range(100):
                cur.execute(
                    "SELECT pg_catalog.pg_terminate_backend(pid)"
                    " FROM pg_catalog.pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()",
                    (name,),
                )
                try:
                    cur.execute(psycopg2.sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
                    return
                except psycopg2.errors.ObjectInUse:
                    time.sleep(0.1)  # a terminated backend is still exiting
            cur.execute(psycopg2.sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
    finally:
        conn.close()


def settle_stats(conn: Any, timeout: float = 30.0) -> None:
    """Make the next ``pg_stat_*`` read of ``conn`` see every statistic reported so far.

    From PostgreSQL 15 statistics live in shared memory: nothing to wait for.
    Before, a collector process receives them asynchronously and a backend reads
    a snapshot file up to 500 ms old: wait for a snapshot written after now.
    """
    if conn.server_version >= 150000:
        return
    with conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.clock_timestamp()")
        (start,) = cur.fetchone()
        deadline = time.monotonic() + timeout
        while True:
            cur.execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
            cur.execute("SELECT pg_catalog.pg_stat_get_snapshot_timestamp()")
            (written,) = cur.fetchone()
            cur.execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
            if written is not None and written > start:
                return
            if time.monotonic() > deadline:
                raise AssertionError("the statistics collector did not answer")
            time.sleep(0.05)


def legacy_tls_client(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client context that offers ``version`` and nothing else, certificate unchecked.

    OpenSSL 3 refuses to offer TLS 1.0/1.1 at its default security level: level 0
    lets the client offer them, so that a refusal can only come from the server.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_handshake(ctx: ssl.SSLContext, port: int) -> str:
    """The protocol version negotiated with 127.0.0.1:``port`` (ssl.SSLError if refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.version()


@contextmanager
def permissive_tls_server(directory: Path) -> Iterator[int]:
    """A bare TLS server accepting TLS 1.0 and up, one handshake per connection: the
    control showing that a client context really offers an old version. Yields its port."""
    make_self_signed_cert(directory / "control.pem", directory / "control.key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(directory / "control.pem", directory / "control.key")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.settimeout(HANG)
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(HANG)
        listener.close()
