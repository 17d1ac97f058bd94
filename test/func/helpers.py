"""Helpers shared by functional tests: SQL on a cluster, the agent's route table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2

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
