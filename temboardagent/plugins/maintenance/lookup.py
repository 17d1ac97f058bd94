"""Does this database, schema, table or index exist? One guard, one set of queries.

Reads and writes look objects up with the same ``sql/named_*.sql`` queries (the
schema and table pages include them in their ``*_context.sql`` query) and the
same guards:

- names are only ever bound parameters;
- a name PostgreSQL would truncate to 63 bytes (``NAMEDATALEN - 1``) is not its
  truncation: each query also compares the name as text, in the database's own
  encoding;
- a NUL character, which no name can hold and libpq cannot send, is refused here
  (:func:`check_name`) before any query.

A missing object raises :class:`NotFound` naming it (:func:`not_found`).
Write-side checks (before an operation is scheduled, or a list is read) use
short-lived pooled connections with the read timeouts, as do the other facts
read before scheduling: the server version, the indexes REINDEX CONCURRENTLY
cannot rebuild.
"""

from __future__ import annotations

from typing import Any

from ...errors import Conflict, NotFound
from .. import PluginContext
from .limits import read_connection
from .settings import MaintenanceSettings
from .sql import load_sql


def not_found(kind: str, shown: str) -> NotFound:
    """``Schema 's' not found.``: ``kind`` is Database, Schema, Table or Index."""
    return NotFound(f"{kind} '{shown}' not found.")


def check_name(kind: str, name: str, shown: str | None = None) -> None:
    """NotFound for a name no PostgreSQL object can have (a NUL character)."""
    if "\x00" in name:
        raise not_found(kind, shown or name)


def _row(conn: Any, query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    with conn.cursor() as cur:
        cur.execute(load_sql(query), params)
        row = cur.fetchone()
        return None if row is None else dict(zip([d.name for d in cur.description], row))


def database(conn: Any, dbname: str) -> dict[str, Any]:
    """``datallowconn`` and ``datistemplate`` of ``dbname``; NotFound if unknown."""
    check_name("Database", dbname)
    row = _row(conn, "named_database", {"dbname": dbname})
    if row is None:
        raise not_found("Database", dbname)
    return row


def is_template(conn: Any, dbname: str) -> bool:
    """Whether ``dbname`` is a template; NotFound for an unknown database.

    Connections to a template are not kept in the pool: ``CREATE DATABASE``
    fails while another session is connected to its template.
    """
    return bool(database(conn, dbname)["datistemplate"])


def check_database(ctx: PluginContext, settings: MaintenanceSettings, dbname: str) -> None:
    """NotFound unless ``dbname`` exists; Conflict if it refuses connections."""
    check_name("Database", dbname)
    with read_connection(ctx, settings, None) as conn:
        row = database(conn, dbname)
    if not row["datallowconn"]:
        raise Conflict(f"Database '{dbname}' does not accept connections.")


def check_schema(
    ctx: PluginContext, settings: MaintenanceSettings, dbname: str, schema: str
) -> None:
    """NotFound unless the database and ``schema`` exist."""
    check_database(ctx, settings, dbname)
    check_name("Schema", schema)
    with read_connection(ctx, settings, dbname) as conn:
        row = _row(conn, "named_schema", {"schema": schema})
    if row is None:
        raise not_found("Schema", schema)


def check_table(
    ctx: PluginContext,
    settings: MaintenanceSettings,
    dbname: str,
    schema: str,
    table: str,
) -> None:
    """NotFound unless the database, schema and table (or matview) exist."""
    check_database(ctx, settings, dbname)
    check_name("Schema", schema)
    check_name("Table", table, f"{schema}.{table}")
    with read_connection(ctx, settings, dbname) as conn:
        row = _row(conn, "named_table", {"schema": schema, "table": table})
    if row is None:
        raise not_found("Schema", schema)
    if row["relid"] is None:
        raise not_found("Table", f"{schema}.{table}")


def resolve_index(
    ctx: PluginContext,
    settings: MaintenanceSettings,
    dbname: str,
    schema: str,
    index: str,
) -> str:
    """Name of the table of index ``schema.index``; NotFound if anything is missing."""
    check_database(ctx, settings, dbname)
    check_name("Schema", schema)
    check_name("Index", index, f"{schema}.{index}")
    with read_connection(ctx, settings, dbname) as conn:
        row = _row(conn, "named_index", {"schema": schema, "index": index})
    if row is None:
        raise not_found("Schema", schema)
    if row["indexrelid"] is None:
        raise not_found("Index", f"{schema}.{index}")
    return row["table_name"]


def server_version(ctx: PluginContext, settings: MaintenanceSettings) -> int:
    """``server_version_num`` of the instance (e.g. 150004)."""
    with read_connection(ctx, settings, None) as conn:
        return conn.server_version


def reindex_blockers(
    ctx: PluginContext, settings: MaintenanceSettings, dbname: str, params: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """Indexes of a target that REINDEX CONCURRENTLY cannot rebuild: (schema, index, reason)."""
    with read_connection(ctx, settings, dbname) as conn, conn.cursor() as cur:
        cur.execute(load_sql("reindex_blockers"), params)
        return cur.fetchall()
