"""Helpers shared by functional tests: SQL on a cluster, the agent's route table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.sql

from temboardagent.agent import Agent
from temboardagent.config import load_config
from temboardagent.embedded import EmbeddedCluster, make_self_signed_cert
from temboardagent.web.app import RouteInfo


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
