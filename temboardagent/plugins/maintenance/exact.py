"""Exact bloat of one table and its btree indexes, measured with pgstattuple.

``GET .../table/<t>?bloat=exact`` reads the relations instead of estimating:

- table: ``approx_free_space + dead_tuple_len`` of ``pgstattuple_approx`` on
  the table and on its TOAST table (it reads the pages the visibility map
  does not mark all-visible, and estimates the others from the free space map);
- btree index: free space of its leaf pages (``100 - avg_leaf_density``
  percent of them) plus its empty and deleted pages, from ``pgstatindex``,
  which reads the whole index.

These are what is free or dead now, not what a rewrite would give back:
fillfactor's reserved space and TOAST chunk slack count as free, the line
pointers of removed rows and dead index entries do not. Each runs under the
read ``statement_timeout``. Other index types keep their estimate (null).
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from ...errors import Conflict
from .catalog import size_pretty
from .sql import load_sql

METHOD = "pgstattuple"


def _function(schema: str, name: str) -> sql.Composed:
    """``"schema".name``: the extension's function, whatever the search_path."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.SQL(name))


def table_bloat(cur: Any, schema: str, relid: int) -> float:
    query = sql.SQL(
        "SELECT (s.approx_free_space + s.dead_tuple_len)::pg_catalog.float8"
        " FROM {}(%s::pg_catalog.oid::pg_catalog.regclass) s"
    ).format(_function(schema, "pgstattuple_approx"))
    cur.execute(query, (relid,))
    return cur.fetchone()[0]


def index_bloat(cur: Any, schema: str, indexrelid: int, block_size: int) -> float:
    query = sql.SQL(
        "SELECT s.leaf_pages, s.avg_leaf_density, s.empty_pages, s.deleted_pages"
        " FROM {}(%s::pg_catalog.oid::pg_catalog.regclass) s"
    ).format(_function(schema, "pgstatindex"))
    cur.execute(query, (indexrelid,))
    leaves, density, empty, deleted = cur.fetchone()
    free_leaf = 0.0 if density != density else leaves * (100.0 - density) / 100.0  # NaN: empty
    return float((free_leaf + empty + deleted) * block_size)


def measure(conn: Any, dbname: str, relid: int, result: dict[str, Any]) -> None:
    """Replace the table page's estimates by pgstattuple's figures (in place).

    409 when the extension is not installed in the database.
    """
    with conn.cursor() as cur:
        cur.execute(load_sql("pgstattuple"), {"relid": relid})
        row = cur.fetchone()
        if row is None:
            raise Conflict(f'pgstattuple is not installed in database "{dbname}"')
        schema, toast, btrees, names = row
        if result.get("locked"):
            return  # it would wait for the lock: the estimates stay, said so
        cur.execute("SELECT pg_catalog.current_setting('block_size')::pg_catalog.int8")
        block_size = cur.fetchone()[0]
        bloat = table_bloat(cur, schema, relid)
        if toast:
            bloat += table_bloat(cur, schema, toast)
        measured = {
            name: index_bloat(cur, schema, oid, block_size) for oid, name in zip(btrees, names)
        }
    result.update(bloat_bytes=bloat, bloat_size=size_pretty(bloat), bloat_method=METHOD)
    for index in result["indexes"]:
        if index["name"] in measured:
            value = measured[index["name"]]
            index.update(bloat_bytes=value, bloat_size=size_pretty(value), bloat_method=METHOD)
    values = [i["bloat_bytes"] for i in result["indexes"] if i["bloat_bytes"] is not None]
    total = float(sum(values)) if values else None
    result.update(index_bloat_bytes=total, index_bloat_size=size_pretty(total))
