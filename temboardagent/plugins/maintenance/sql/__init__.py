"""The maintenance plugin's SQL: one query per ``<subject>.sql`` file (see README.md)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

SQL_DIR = Path(__file__).parent

_INCLUDE = re.compile(r"/\*@(\w+)\*/")


@functools.cache
def load_sql(name: str, stats: str = "pg_statistic", materialized: bool = True) -> str:
    """Text of ``sql/<name>.sql``, with ``/*@part*/`` replaced by ``part.sql``.

    ``/*@stats*/`` includes ``stats_<stats>.sql``; ``/*@materialized*/`` is the
    ``MATERIALIZED`` keyword of PostgreSQL >= 12 (older ones always materialize
    CTEs). Loaded once per variant.
    """
    text = (SQL_DIR / f"{name}.sql").read_text()

    def include(match: re.Match) -> str:
        part = match.group(1)
        if part == "materialized":
            return "MATERIALIZED" if materialized else ""
        if part == "stats":
            part = f"stats_{stats}"
        return load_sql(part, stats, materialized).strip().rstrip(";")

    return _INCLUDE.sub(include, text)
