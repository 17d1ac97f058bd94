"""What the agent's PostgreSQL role may do (reported by ``GET /discover``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).parent / "sql"


@functools.cache
def _query() -> str:
    return (SQL_DIR / "role_privileges.sql").read_text()


def privileges(conn: Any) -> dict[str, Any]:
    """``{"role", "superuser", "pg_monitor", "pg_maintain", "can_read_statistics"}``.

    ``pg_monitor`` and ``pg_maintain`` are memberships whose privileges the role
    uses (inherited, or the role itself); ``pg_maintain`` is false before
    PostgreSQL 17, which has no such role. ``can_read_statistics``: the role
    reads every table's column statistics (``pg_statistic``), so bloat is
    estimated for every table, not only those it may SELECT.
    """
    with conn.cursor() as cur:
        cur.execute(_query())
        names = [d.name for d in cur.description]
        row = cur.fetchone()
    return dict(zip(names, row))
