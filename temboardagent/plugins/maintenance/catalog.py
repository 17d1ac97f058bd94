"""Read side of the maintenance plugin: sizes, bloat estimates and statistics.

Each page runs one small *context* query (OIDs of the named objects, which
statistics the role may read, the locked relations) and one main query from
``sql/``, filtered to what the page shows in its innermost part; rows are
shaped into the JSON of ``spec/maintenance-api.rst`` with no further lookup.

Decisions (to be documented for users):

- **What is a table**: ordinary tables, materialized views and partitioned
  tables (relkind ``r``, ``m``, ``p``). A partitioned table has no storage of
  its own: its sizes are 0 (its partitions are listed as tables of their own
  schema, so schema and database sums never count a byte twice) and its
  bloat is null. Views, foreign tables and sequences are not listed.
- **Sizes**: ``table_bytes`` is the heap with its free space and visibility
  map forks, ``toast_bytes`` is ``pg_total_relation_size(reltoastrelid)`` (0
  without TOAST table), ``index_bytes`` is ``pg_indexes_size`` and
  ``total_bytes = table_bytes + index_bytes + toast_bytes`` which is
  ``pg_total_relation_size``. An index's ``total_bytes`` is its
  ``pg_total_relation_size``.
- **Bloat**: ioguix's statistical estimates (see ``sql/estimates.sql``),
  for tables and btree indexes; null for other index types, partitioned
  objects and objects whose statistics are missing (never analyzed, or a
  column without statistics). A table analyzed while empty (``reltuples``
  0) needs no statistics: its expected size is 0.
- **Statistics source**: ``pg_statistic`` by OID when the role may read it
  (``has_table_privilege('pg_statistic', 'SELECT')``: superusers, or an
  explicit GRANT), else the ``pg_stats`` view, which only shows the columns
  the role may SELECT: other tables then get a null bloat estimate.
  Membership in ``pg_read_all_stats`` does not give access to
  ``pg_statistic``.
- **Locks**: the size functions take an AccessShareLock on each relation. A
  relation that another session holds *or awaits* in AccessExclusiveLock
  (``VACUUM FULL``, ``ALTER TABLE`` or ``LOCK TABLE`` in an open
  transaction...) is found in ``pg_locks`` first; the whole table (heap,
  TOAST, indexes) then gets its figures from ``pg_class.relpages`` times the
  block size and ``"locked": true`` (tables and indexes carry ``"locked"``,
  false otherwise); its indexes' ``def`` is null (``pg_get_indexdef`` opens the
  table). A lock taken between the two queries makes the main query fail on
  ``lock_timeout``: it is retried once with the new lock known. Bloat
  estimates need no lock and stay.
- **Null conventions**: a ``*_size`` is ``pg_size_pretty`` of its
  ``*_bytes``; in aggregates over nothing (a schema without table, index or
  TOAST table) the byte count is 0 and the ``*_size`` null, bloat sums are
  null when no member has an estimate. ``row_estimate`` is ``reltuples``
  (-1 when unknown, PostgreSQL >= 14).
- **GET /maintenance** lists the databases that are not templates (as
  upstream). Those the agent cannot connect to (``datallowconn`` false,
  invalid, connection refused, timeout) keep their ``total_bytes``
  (``pg_database_size``, null if the role may not read it) and have null
  figures otherwise, and a ``reason`` (null for the others): not accepting
  connections, or the error, e.g. ``PostgreSQL refused: permission denied for
  database "d"`` for a role without CONNECT. The instance ``total_bytes`` sums
  the listed databases.
  Databases are queried concurrently, at most ``parallel_databases`` at once,
  each over a connection closed after use (a scan keeps no connection that
  would make ``DROP DATABASE`` fail).
- **Hardening**: the SQL of ``sql/`` qualifies every function and relation
  with ``pg_catalog`` and types its literals so that each operator is an exact
  match of pg_catalog's; connections pin ``search_path`` and are read-only.
"""

from __future__ import annotations

import functools
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from ...errors import HTTPError, NotFound

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).parent / "sql"

#: ``connect(dbname, pooled=True)`` -> context manager yielding an autocommit
#: connection; ``pooled=False`` closes it after use.
Connect = Callable[..., AbstractContextManager]

_INCLUDE = re.compile(r"/\*@(\w+)\*/")

# PostgreSQL text for timestamptz and oid in the table page (spec: "relid" is
# a string, timestamps are PostgreSQL text like "2019-03-22 10:37:19.5+00").
_TEXT_TYPES = [
    psycopg2.extensions.new_type((oid,), f"TBTEXT{oid}", lambda value, cur: value)
    for oid in (26, 1184)  # oid, timestamptz
]

DATABASE_FIGURES = (
    "indexes_bloat_bytes",
    "indexes_bloat_size",
    "indexes_bytes",
    "indexes_size",
    "n_indexes",
    "n_tables",
    "tables_bloat_bytes",
    "tables_bloat_size",
    "tables_bytes",
    "tables_size",
    "toast_bytes",
    "toast_size",
)


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


#: pg_size_pretty's units: name, limit, half-rounded, bits (PostgreSQL >= 15)
_UNITS = (("bytes", 10 * 1024, False, 0),) + tuple(
    (name, 20 * 1024 - 1, True, bits)
    for name, bits in (("kB", 10), ("MB", 20), ("GB", 30), ("TB", 40), ("PB", 50))
)


def _c_div(value: int, divisor: int) -> int:
    """Integer division truncating toward zero, as C does."""
    quotient = abs(value) // divisor
    return quotient if value >= 0 else -quotient


def size_pretty(size: int | float | None) -> str | None:
    """``pg_size_pretty`` in Python (PostgreSQL >= 15 units), None for None."""
    if size is None:
        return None
    size = int(size)
    for i, (name, limit, rounded, bits) in enumerate(_UNITS):
        if i == len(_UNITS) - 1 or abs(size) < limit:
            if rounded:
                size = _c_div(size + (-1 if size < 0 else 1), 2)
            return f"{size} {name}"
        _, _, next_rounded, next_bits = _UNITS[i + 1]
        size = _c_div(size, 1 << (next_bits - bits - int(next_rounded) + int(rounded)))
    raise AssertionError("unreachable")  # pragma: no cover


def _stats_variant(privileged: bool) -> str:
    return "pg_statistic" if privileged else "pg_stats"


@functools.cache
def _main_sql(name: str, privileged: bool, version: int, single: bool = False) -> str:
    """A main query for a server version, with planner settings of its own.

    Catalog row estimates are poor for these queries, so their cost often
    passes ``jit_above_cost``: compiling then takes seconds for a query of
    milliseconds, hence no JIT. Through ``pg_stats`` (not ``privileged``), a
    whole schema or database (not ``single`` table) is read with hash joins
    only: the view's estimates invite nested loops that rescan thousands of
    rows per row. Sent with the query in one simple-protocol message, each
    ``SET LOCAL`` only lasts for its implicit transaction.
    """
    text = load_sql(name, _stats_variant(privileged), version >= 120000)
    settings = []
    if version >= 110000:
        settings.append("SET LOCAL jit = off;\n")
    if not privileged and not single:
        settings.append("SET LOCAL enable_nestloop = off;\n")
    return "".join(settings) + text


def _execute_main(cur: Any, name: str, privileged: bool, params: dict) -> None:
    version = cur.connection.server_version // 10000 * 10000  # major: few variants
    single = params.get("relid") is not None
    cur.execute(_main_sql(name, privileged, version, single), params)


def _check_name(kind: str, name: str, shown: str | None = None) -> None:
    """NotFound for a name no PostgreSQL object can have (NUL character)."""
    if "\x00" in name:
        raise NotFound(f"{kind} '{shown or name}' not found.")


def _with_locks(conn: Any, context: str, params: dict, main: Callable) -> Any:
    """Run ``context`` then ``main(context_row)``, retrying once on lock timeout.

    The context row gives the locked relations to ``main``; a lock taken
    between the two makes ``main`` fail on ``lock_timeout`` and the retry
    sees it.
    """
    for attempt in (1, 2):
        with conn.cursor() as cur:
            cur.execute(load_sql(context), params)
            row = cur.fetchone()
            if row is None:
                return main(None)
            ctx = dict(zip([d.name for d in cur.description], row))
        try:
            return main(ctx)
        except psycopg2.errors.LockNotAvailable:
            if attempt == 2:
                raise
            logger.debug("Relation locked during %s query, retrying.", context)


def _relations(conn: Any, nsp: int, relid: int | None, ctx: dict) -> tuple[list[dict], list[dict]]:
    """Tables and indexes of schema ``nsp`` (or of table ``relid`` only)."""
    with conn.cursor() as cur:
        params = {"nsp": nsp, "relid": relid, "locked": ctx["locked"]}
        _execute_main(cur, "relations", ctx["privileged"], params)
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
    split = names.index("indexrelid")
    tcols, icols = names[1:split], names[split + 1 :]
    tables: list[dict] = []
    indexes: list[dict] = []
    last = None
    for row in rows:
        if row[0] != last:
            last = row[0]
            tables.append(dict(zip(tcols, row[1:split])))
        if row[split] is not None:
            indexes.append(dict(zip(icols, row[split + 1 :])))
    return tables, indexes


def schema(conn: Any, schema_name: str) -> dict[str, Any]:
    """``GET /maintenance/<db>/schema/<schema>``: tables and indexes of a schema."""

    def main(ctx: dict | None) -> dict[str, Any]:
        if ctx is None:
            raise NotFound(f"Schema '{schema_name}' not found.")
        tables, indexes = _relations(conn, ctx["nsp"], None, ctx)
        total = sum(t["total_bytes"] for t in tables)
        return {
            "indexes": indexes,
            "size": size_pretty(total) if tables else None,
            "tables": tables,
            "total_bytes": total,
        }

    _check_name("Schema", schema_name)
    return _with_locks(conn, "context_schema", {"schema": schema_name}, main)


def table(conn: Any, schema_name: str, table_name: str) -> dict[str, Any]:
    """``GET .../schema/<schema>/table/<table>``: statistics, sizes, indexes."""

    def main(ctx: dict | None) -> dict[str, Any]:
        if ctx is None:
            raise NotFound(f"Schema '{schema_name}' not found.")
        if ctx["relid"] is None:
            raise NotFound(f"Table '{schema_name}.{table_name}' not found.")
        tables, indexes = _relations(conn, ctx["nsp"], ctx["relid"], ctx)
        if not tables:  # dropped between the two queries
            raise NotFound(f"Table '{schema_name}.{table_name}' not found.")
        with conn.cursor() as cur:
            for caster in _TEXT_TYPES:
                psycopg2.extensions.register_type(caster, cur)
            cur.execute(load_sql("table_stats"), {"relid": ctx["relid"]})
            stats = cur.fetchone()
            names = [d.name for d in cur.description]
        if stats is None:
            raise NotFound(f"Table '{schema_name}.{table_name}' not found.")
        result = dict(zip(names, stats))
        info = tables[0]
        info.pop("n_indexes")
        result.update(info)
        result["indexes"] = indexes
        return result

    _check_name("Schema", schema_name)
    _check_name("Table", table_name, f"{schema_name}.{table_name}")
    params = {"schema": schema_name, "table": table_name}
    return _with_locks(conn, "context_table", params, main)


def _schemas(conn: Any) -> tuple[list[dict], int]:
    """Per-schema rows of the current database, and the database size."""

    def main(ctx: dict) -> tuple[list[dict], int]:
        with conn.cursor() as cur:
            params = {"relid": None, "locked": ctx["locked"]}
            _execute_main(cur, "database", ctx["privileged"], params)
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, row)) for row in cur.fetchall()]
        return rows, ctx["total_bytes"]

    return _with_locks(conn, "context_database", {}, main)


def database(conn: Any) -> dict[str, Any]:
    """``GET /maintenance/<db>``: per-schema figures of the connected database."""
    schemas, total = _schemas(conn)
    return {"schemas": schemas, "total_bytes": total, "total_size": size_pretty(total)}


def _sum(values: list) -> float | None:
    """Sum of the non-null values as a float; None when all are null."""
    present = [v for v in values if v is not None]
    return float(sum(present)) if present else None


def database_summary(conn: Any) -> dict[str, Any]:
    """Figures of the connected database, summed over its schemas (floats)."""
    schemas, _ = _schemas(conn)
    figures: dict[str, Any] = {}
    for name in ("n_indexes", "n_tables", "tables_bytes", "indexes_bytes", "toast_bytes"):
        figures[name] = float(sum(s[name] for s in schemas))
    for name in ("tables_bloat_bytes", "indexes_bloat_bytes"):
        figures[name] = _sum([s[name] for s in schemas])
    for name in ("tables", "indexes", "toast", "tables_bloat", "indexes_bloat"):
        figures[f"{name}_size"] = size_pretty(figures[f"{name}_bytes"])
    return figures


def is_template(conn: Any, dbname: str) -> bool:
    """Whether ``dbname`` is a template; NotFound for an unknown database.

    Connections to a template are not kept in the pool: ``CREATE DATABASE``
    fails while another session is connected to its template.
    """
    _check_name("Database", dbname)
    with conn.cursor() as cur:
        cur.execute(load_sql("database_kind"), {"dbname": dbname})
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"Database '{dbname}' not found.")
    return bool(row[0])


#: ``reason`` of a database closed to connections (``datallowconn`` false, invalid)
NOT_CONNECTABLE = "The database does not accept connections."


def unreachable_reason(exc: Exception) -> str:
    """Why a database could not be read, for its ``reason`` in GET /maintenance."""
    if isinstance(exc, HTTPError):
        return exc.message
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return primary
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def instance(
    connect: Connect, parallel_databases: int = 4, default_dbname: str | None = None
) -> dict[str, Any]:
    """``GET /maintenance``: the databases but templates, and their total size.

    Databases are queried concurrently, at most ``parallel_databases`` at
    once, each over a connection closed after use but ``default_dbname``'s
    (the agent's own, pooled); one that cannot be reached gets null figures
    and a ``reason`` instead of failing the whole call.
    """
    with connect(None) as conn, conn.cursor() as cur:
        cur.execute(load_sql("databases"))
        databases = cur.fetchall()

    def summary(datname: str) -> dict[str, Any] | str:
        try:
            with connect(datname, pooled=datname == default_dbname) as conn:
                return database_summary(conn)
        except (HTTPError, psycopg2.Error) as exc:
            logger.warning("Cannot read database %s: %s", datname, exc)
            return unreachable_reason(exc)

    # largest first: the slowest database starts at once (longest job first)
    names = [
        name
        for name, connectable, size in sorted(databases, key=lambda d: -(d[2] or 0))
        if connectable
    ]
    workers = max(1, min(parallel_databases, len(names)))
    with ThreadPoolExecutor(workers, thread_name_prefix="maintenance-db") as pool:
        summaries = dict(zip(names, pool.map(summary, names)))

    entries = []
    for datname, _, total in databases:
        figures = summaries.get(datname, NOT_CONNECTABLE)
        reason = None
        if isinstance(figures, str):
            figures, reason = dict.fromkeys(DATABASE_FIGURES), figures
        entry = {"datname": datname, **figures, "reason": reason}
        entry["total_bytes"] = total
        entry["total_size"] = size_pretty(total)
        entries.append(dict(sorted(entry.items())))
    total = _sum([e["total_bytes"] for e in entries])
    return {
        "databases": entries,
        "instance": {"total_bytes": total, "total_size": size_pretty(total)},
    }
