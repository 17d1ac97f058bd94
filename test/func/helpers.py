"""Helpers shared by functional tests: SQL on a cluster, the agent's route table."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import psycopg2

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


def run_sql(
    pg: EmbeddedCluster, query: str, params: Any = None, dbname: str = "postgres"
) -> list[tuple]:
    """Run ``query`` as superuser in autocommit; rows when it returns any."""
    conn = psycopg2.connect(pg.dsn(dbname))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def route_table(tmp_path: Path) -> list[RouteInfo]:
    """The routes an agent with the maintenance plugin registers (built, not served)."""
    make_self_signed_cert(tmp_path / "c.pem", tmp_path / "k.pem")
    (tmp_path / "users").write_text("")
    conf = tmp_path / "a.conf"
    conf.write_text(
        "[temboard]\nusers = users\nssl_cert_file = c.pem\nssl_key_file = k.pem\n"
        'home = home\nplugins = ["maintenance"]\nport = 1\n'
    )
    agent = Agent(load_config(conf, environ={}))
    try:
        return list(agent.web.routes)
    finally:
        agent.tasks.close()
        agent.sessions.close()
