"""SQL on a throwaway cluster, for tests, benchmarks and dev tools."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions

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
