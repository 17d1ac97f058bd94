"""SQL on a throwaway cluster, for tests, benchmarks and dev tools."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.sql

from temboardagent.embedded import EmbeddedCluster


def run_sql(
    on: EmbeddedCluster | psycopg2.extensions.connection,
    query: Any,
    params: Any = None,
    dbname: str = "postgres",
    *,
    user: str | None = None,
) -> list[tuple]:
    """Run ``query`` with bound ``params``; its rows ([] when it returns none).

    On a cluster: a new autocommit connection to ``dbname`` as its superuser, or as
    ``user``, closed afterwards. On an open connection: there, in whatever
    transaction it is (``dbname`` and ``user`` do not apply).
    """
    if not isinstance(on, EmbeddedCluster):
        if dbname != "postgres" or user is not None:
            raise TypeError("run_sql on a connection takes no dbname nor user")
        with on.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    conn = psycopg2.connect(on.dsn(dbname), **({} if user is None else {"user": user}))
    conn.autocommit = True
    try:
        return run_sql(conn, query, params)
    finally:
        conn.close()


def create_database(
    pg: EmbeddedCluster, name: str, setup: Any = None, *, replace: bool = False
) -> None:
    """CREATE DATABASE ``name`` (dropped first with ``replace``), then run ``setup`` in it."""
    ident = psycopg2.sql.Identifier(name)
    if replace:
        run_sql(pg, psycopg2.sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
    run_sql(pg, psycopg2.sql.SQL("CREATE DATABASE {}").format(ident))
    if setup:
        run_sql(pg, setup, dbname=name)
