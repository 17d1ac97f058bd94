"""Existence checks of operation targets (database, schema, table, index).

Names are only ever bound parameters; a missing object raises NotFound naming it.
Checks use short-lived pooled connections with the plugin's read timeouts.
"""

from __future__ import annotations

from typing import Any

from ...errors import Conflict, NotFound
from .. import PluginContext
from .limits import read_connection
from .settings import MaintenanceSettings
from .sql import load_sql


def _connect(ctx: PluginContext, settings: MaintenanceSettings, dbname: str | None) -> Any:
    return read_connection(ctx, settings, dbname)


def _fetchone(
    ctx: PluginContext,
    settings: MaintenanceSettings,
    dbname: str | None,
    query: str,
    params: dict[str, Any],
) -> tuple | None:
    try:
        with _connect(ctx, settings, dbname) as conn, conn.cursor() as cur:
            cur.execute(load_sql(query), params)
            return cur.fetchone()
    except ValueError:  # e.g. a NUL character: no such name can exist
        return None


#: PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes)
MAX_NAME_BYTES = 63


def can_exist(name: str) -> bool:
    """False for names no PostgreSQL object can have: a NUL, or over 63 bytes.

    Without this, a bound 64-byte name compared to a ``name`` column would match
    the object whose name is its truncation.
    """
    return "\x00" not in name and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES


def check_database(ctx: PluginContext, settings: MaintenanceSettings, dbname: str) -> None:
    """NotFound unless ``dbname`` exists; Conflict if it refuses connections."""
    if not can_exist(dbname):
        raise NotFound(f"Database '{dbname}' not found.")
    row = _fetchone(ctx, settings, None, "op_database", {"dbname": dbname})
    if row is None:
        raise NotFound(f"Database '{dbname}' not found.")
    if not row[0]:
        raise Conflict(f"Database '{dbname}' does not accept connections.")


def _schema_missing(schema: str) -> NotFound:
    return NotFound(f"Schema '{schema}' not found.")


def check_schema(
    ctx: PluginContext, settings: MaintenanceSettings, dbname: str, schema: str
) -> None:
    """NotFound unless the database and ``schema`` exist."""
    check_database(ctx, settings, dbname)
    if not can_exist(schema):
        raise _schema_missing(schema)
    if _fetchone(ctx, settings, dbname, "op_schema", {"schema": schema}) is None:
        raise _schema_missing(schema)


def check_table(
    ctx: PluginContext,
    settings: MaintenanceSettings,
    dbname: str,
    schema: str,
    table: str,
) -> None:
    """NotFound unless the database, schema and table (or matview) exist."""
    check_database(ctx, settings, dbname)
    if not can_exist(schema):
        raise _schema_missing(schema)
    if not can_exist(table):
        raise NotFound(f"Table '{schema}.{table}' not found.")
    row = _fetchone(ctx, settings, dbname, "op_table", {"schema": schema, "table": table})
    if row is None:
        raise _schema_missing(schema)
    if row[1] is None:
        raise NotFound(f"Table '{schema}.{table}' not found.")


def resolve_index(
    ctx: PluginContext,
    settings: MaintenanceSettings,
    dbname: str,
    schema: str,
    index: str,
) -> str:
    """Name of the table of index ``schema.index``; NotFound if anything is missing."""
    check_database(ctx, settings, dbname)
    if not can_exist(schema):
        raise _schema_missing(schema)
    if not can_exist(index):
        raise NotFound(f"Index '{schema}.{index}' not found.")
    row = _fetchone(ctx, settings, dbname, "op_index", {"schema": schema, "index": index})
    if row is None:
        raise _schema_missing(schema)
    if row[1] is None:
        raise NotFound(f"Index '{schema}.{index}' not found.")
    return row[2]


def server_version(ctx: PluginContext, settings: MaintenanceSettings) -> int:
    """``server_version_num`` of the instance (e.g. 150004)."""
    with _connect(ctx, settings, None) as conn:
        return conn.server_version


def reindex_blockers(
    ctx: PluginContext, settings: MaintenanceSettings, dbname: str, params: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """Indexes of a target that REINDEX CONCURRENTLY cannot rebuild: (schema, index, reason)."""
    with _connect(ctx, settings, dbname) as conn, conn.cursor() as cur:
        cur.execute(load_sql("reindex_blockers"), params)
        return cur.fetchall()
