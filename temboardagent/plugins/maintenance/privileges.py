"""May the agent's role run this operation? Checked before scheduling it.

PostgreSQL's own rules, per kind and version (``sql/*_privileges.sql``
reads the facts, :func:`denial` decides):

- VACUUM and ANALYZE of a table: the table's owner (before 17) or the
  MAINTAIN privilege (17+: owners, ``pg_maintain`` members, explicit GRANT),
  or the database owner for a non-shared relation; superusers always. The
  partitions of a partitioned table are checked too: PostgreSQL skips those
  the role may not process.
- REINDEX of a table or index: the table's owner (before 17) or MAINTAIN on
  the table (17+).
- REINDEX of a database: the database owner.
- VACUUM and ANALYZE of a database: any role that may connect; PostgreSQL
  skips the relations the role may not process, and the operation lists them.

A refusal is :class:`Forbidden` (403): ``role "x" may not VACUUM public.t
(owner: y)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ...errors import Forbidden
from .. import PluginContext
from .limits import read_connection
from .settings import MaintenanceSettings
from .sql import load_sql

#: first PostgreSQL version with the MAINTAIN privilege and pg_maintain
MAINTAIN_VERSION = 170000


@dataclass(frozen=True)
class RelationFacts:
    """One row of ``relation_privileges.sql``."""

    rolname: str
    rolsuper: bool
    database_owner: bool
    relation: str
    owner: str
    relisshared: bool
    privileged: bool


def relation_denial(kind: str, rows: Sequence[RelationFacts], shown: str) -> str | None:
    """Why the role may not run ``kind`` on the relations of ``rows`` (None: it may).

    ``rows`` start with the table itself, then its partitions; ``shown`` is the
    target as the user named it (an index for REINDEX INDEX).
    """
    verb = kind.upper()
    for i, row in enumerate(rows):
        if kind == "reindex":
            allowed = row.privileged
        else:
            allowed = row.privileged or (row.database_owner and not row.relisshared)
        if not allowed:
            name = shown if i == 0 else row.relation
            return f'role "{row.rolname}" may not {verb} {name} (owner: {row.owner})'
        if kind == "reindex":
            break  # PostgreSQL checks the table only
    return None


def database_denial(kind: str, dbname: str, row: dict[str, Any], whole: bool = True) -> str | None:
    """Why the role may not run ``kind`` in database ``dbname`` (None: it may).

    ``whole``: on the database itself, not on one of its relations.
    """
    role = row["rolname"]
    if not row["can_connect"]:
        return f'role "{role}" may not connect to database {dbname}'
    if whole and kind == "reindex" and not row["database_owner"]:
        return f'role "{role}" may not REINDEX database {dbname} (owner: {row["owner"]})'
    return None


def check(
    ctx: PluginContext,
    settings: MaintenanceSettings,
    kind: str,
    target: dict[str, Any],
) -> None:
    """Raise :class:`Forbidden` when the agent's role may not run ``kind`` on ``target``.

    ``target`` is an existing operation target (see ``operations.make_target``).
    """
    dbname = target["dbname"]
    with read_connection(ctx, settings, None) as conn, conn.cursor() as cur:
        cur.execute(load_sql("database_privileges"), {"dbname": dbname})
        names = [d.name for d in cur.description]
        row = cur.fetchone()
    if row is None:
        return  # dropped meanwhile: the operation will fail and say so
    whole = target.get("table") is None and target.get("index") is None
    reason = database_denial(kind, dbname, dict(zip(names, row)), whole)
    if reason is not None:
        raise Forbidden(reason)
    if whole:
        return
    with read_connection(ctx, settings, dbname) as conn:
        reason = target_denial(conn, kind, target)
    if reason is not None:
        raise Forbidden(reason)


def target_denial(conn: Any, kind: str, target: dict[str, Any]) -> str | None:
    """Why the role may not run ``kind`` on a table or index target (None: it may).

    ``conn`` is connected to the target's database. An unknown relation is
    not denied: the operation itself reports it missing.
    """
    schema = target["schema"]
    relname = target.get("index") or target["table"]
    with conn.cursor() as cur:
        params = {
            "schema": schema,
            "relname": relname,
            "partitions": kind != "reindex",
            "maintain": conn.server_version >= MAINTAIN_VERSION,
        }
        cur.execute(load_sql("relation_privileges"), params)
        rows = [RelationFacts(*row) for row in cur.fetchall()]
    return relation_denial(kind, rows, f"{schema}.{relname}")
