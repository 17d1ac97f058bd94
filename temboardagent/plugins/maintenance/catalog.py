"""Read side of the maintenance plugin: sizes, bloat estimates and statistics.

Each page runs one small *context* query (``sql/<object>_context.sql``: OIDs
of the named objects, looked up with :mod:`.lookup`'s queries and guards, which
statistics the role may read, the locked relations) and one main query from
``sql/``, filtered to what the page shows in its innermost part; rows are
shaped into the JSON of ``spec/maintenance-api.rst`` with no further lookup.

Decisions (documented for users in the README, "Sizes, bloat and statistics"):

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
  null when no member has an estimate. ``row_estimate`` is ``reltuples``,
  -1 when unknown on every version (``sql/reltuples.sql``, ``versions.py``).
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
- **Streaming**: the database and schema pages (and each database of
  GET /maintenance) read their main query from a cursor PostgreSQL keeps
  after a short transaction (:class:`HeldRows`), :data:`ROW_BATCH` rows at a
  time, and yield their members as the web layer encodes them: the agent
  never holds a whole result. The schema page reads the rows twice (tables,
  then indexes) and gives its totals after the tables.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable, Iterator

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from ...errors import HTTPError
from ...jsonstream import JSONArray, JSONObject, materialize
from . import lookup, versions
from .sql import load_sql

logger = logging.getLogger(__name__)

#: ``connect(dbname, pooled=True)`` -> context manager yielding an autocommit
#: connection; ``pooled=False`` closes it after use.
Connect = Callable[..., AbstractContextManager]

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


def size_pretty(size: int | float | None, version: int = 150000) -> str | None:
    """``pg_size_pretty`` of a server of ``version`` in Python, None for None."""
    if size is None:
        return None
    return versions.pg_size_pretty(int(size), version)


@functools.cache
def table_stats_query(version: int) -> str:
    """``sql/table_stats.sql`` for a server: the same columns on every version."""
    return load_sql("table_stats").replace("{columns}", versions.table_stats_columns(version))


def _stats_variant(privileged: bool) -> str:
    return "pg_statistic" if privileged else "pg_stats"


#: the cursor of a streamed main query (one at a time per connection)
HELD_CURSOR = "temboard_agent_rows"
#: rows fetched per round trip from :data:`HELD_CURSOR`
ROW_BATCH = 1000


@functools.cache
def _main_sql(
    name: str, privileged: bool, version: int, single: bool = False, held: bool = False
) -> str:
    """A main query for a server version, with planner settings of its own.

    Catalog row estimates are poor for these queries, so their cost often
    passes ``jit_above_cost``: compiling then takes seconds for a query of
    milliseconds, hence no JIT. Through ``pg_stats`` (not ``privileged``), a
    whole schema or database (not ``single`` table) is read with hash joins
    only: the view's estimates invite nested loops that rescan thousands of
    rows per row. Sent with the query in one simple-protocol message, each
    ``SET LOCAL`` only lasts for its implicit transaction.

    ``held``: the query fills the cursor :data:`HELD_CURSOR` instead, for
    :class:`HeldRows`: in one message, a transaction runs it to its end
    (``MOVE``: under ``statement_timeout`` and ``lock_timeout``, planned as a
    plain query with ``cursor_tuple_fraction`` 1), then commits, which keeps
    the result (in ``work_mem``, then a temporary file) and releases the
    snapshot, whatever the client's reading pace. ``SCROLL`` lets the result
    be read again and makes keeping it a copy, not a second run.
    """
    text = load_sql(name, _stats_variant(privileged), version >= 120000)
    settings = []
    if version >= 110000:
        settings.append("SET LOCAL jit = off;\n")
    if not privileged and not single:
        settings.append("SET LOCAL enable_nestloop = off;\n")
    if not held:
        return "".join(settings) + text
    return (
        "BEGIN;\n"
        + "".join(settings)
        + "SET LOCAL cursor_tuple_fraction = 1;\n"
        + f"DECLARE {HELD_CURSOR} SCROLL CURSOR WITH HOLD FOR\n"
        + text.rstrip().rstrip(";")
        + f"\n;\nMOVE FORWARD ALL IN {HELD_CURSOR};\nCOMMIT;\n"
        + f"MOVE ABSOLUTE 0 IN {HELD_CURSOR}"
    )


def _execute_main(cur: Any, name: str, privileged: bool, params: dict, held: bool = False) -> None:
    version = cur.connection.server_version // 10000 * 10000  # major: few variants
    single = params.get("relid") is not None
    cur.execute(_main_sql(name, privileged, version, single, held), params)


class HeldRows:
    """The rows of a main query that PostgreSQL holds, read in batches.

    The agent never holds more than :data:`ROW_BATCH` rows of a page: a whole
    schema of 100,000 tables is not buffered by libpq as a plain query's
    result would be. ``names`` are the column names, known once the first
    batch is read; :meth:`rewind` starts over.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.names: list[str] = []

    def __iter__(self) -> Iterator[tuple]:
        with self.conn.cursor() as cur:
            while True:
                cur.execute(f"FETCH FORWARD {ROW_BATCH} FROM {HELD_CURSOR}")
                self.names = [d.name for d in cur.description]
                rows = cur.fetchall()
                if not rows:
                    return
                yield from rows
                del rows

    def rewind(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"MOVE ABSOLUTE 0 IN {HELD_CURSOR}")


def _release_held(conn: Any) -> None:
    """End the transaction of a failed main query and close its cursor."""
    if conn.closed:
        return
    with conn.cursor() as cur:
        if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            # our BEGIN on an autocommit connection: conn.rollback() would do nothing
            cur.execute("ROLLBACK")  # drops a cursor declared in the transaction
        cur.execute("CLOSE ALL")


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


@contextmanager
def _held_with_locks(
    conn: Any,
    context: str,
    params: dict,
    main: str,
    main_params: Callable[[dict], dict],
    computed: Callable[[], None] | None = None,
) -> Iterator[tuple[dict | None, HeldRows | None]]:
    """Run ``context`` then main query ``main`` into a held cursor; yield both.

    As :func:`_with_locks`: a lock taken between the two makes the main query
    fail on ``lock_timeout`` (before any row is read) and it is retried once.
    No context row (unknown object): ``(None, None)``. ``computed`` is called
    once PostgreSQL holds the rows, before they are read.
    """
    for attempt in (1, 2):
        with conn.cursor() as cur:
            cur.execute(load_sql(context), params)
            row = cur.fetchone()
            names = [d.name for d in cur.description]
        if row is None:
            yield None, None
            return
        ctx = dict(zip(names, row))
        try:
            with conn.cursor() as cur:
                _execute_main(cur, main, ctx["privileged"], main_params(ctx), held=True)
        except psycopg2.Error as exc:
            _release_held(conn)
            if attempt == 2 or not isinstance(exc, psycopg2.errors.LockNotAvailable):
                raise
            logger.debug("Relation locked during %s query, retrying.", context)
            continue
        if computed is not None:
            computed()
        try:
            yield ctx, HeldRows(conn)
        finally:
            _release_held(conn)
        return


def _relations(conn: Any, nsp: int, relid: int | None, ctx: dict) -> tuple[list[dict], list[dict]]:
    """Tables and indexes of schema ``nsp`` (or of table ``relid`` only)."""
    with conn.cursor() as cur:
        params = {"nsp": nsp, "relid": relid, "locked": ctx["locked"]}
        _execute_main(cur, "relations", ctx["privileged"], params)
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
    split, tcols, icols = _columns(names)
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


def schema_page(
    conn: Any, schema_name: str, computed: Callable[[], None] | None = None
) -> Iterator[tuple[str, Any]]:
    """``GET /maintenance/<db>/schema/<schema>`` as streamed members.

    The rows (one per table and index, ordered by table) are read twice from
    the held result: tables (then the schema's totals), then indexes.
    ``computed``: called once PostgreSQL holds the rows.
    """
    lookup.check_name("Schema", schema_name)
    params = {"schema": schema_name}

    def main_params(ctx: dict) -> dict:
        return {"nsp": ctx["nsp"], "relid": None, "locked": ctx["locked"]}

    held = _held_with_locks(conn, "schema_context", params, "relations", main_params, computed)
    with held as (ctx, rows):
        if ctx is None or rows is None:
            raise lookup.not_found("Schema", schema_name)
        totals = {"bytes": 0, "tables": 0}
        yield "tables", JSONArray(_schema_tables(rows, totals))
        yield (
            "size",
            size_pretty(totals["bytes"], conn.server_version) if totals["tables"] else None,
        )
        yield "total_bytes", totals["bytes"]
        rows.rewind()
        yield "indexes", JSONArray(_schema_indexes(rows))


def _columns(names: list[str]) -> tuple[int, list[str], list[str]]:
    """Where the index columns start in a relations row; table and index column names."""
    split = names.index("indexrelid")
    return split, names[1:split], names[split + 1 :]


def _schema_tables(rows: HeldRows, totals: dict[str, int]) -> Iterator[dict]:
    last = None
    split = 0
    tcols: list[str] = []
    for row in rows:
        if not tcols:
            split, tcols, _ = _columns(rows.names)
        if row[0] != last:
            last = row[0]
            table = dict(zip(tcols, row[1:split]))
            totals["bytes"] += table["total_bytes"]
            totals["tables"] += 1
            yield table


def _schema_indexes(rows: HeldRows) -> Iterator[dict]:
    split = 0
    icols: list[str] = []
    for row in rows:
        if not icols:
            split, _, icols = _columns(rows.names)
        if row[split] is not None:
            yield dict(zip(icols, row[split + 1 :]))


def schema(conn: Any, schema_name: str) -> dict[str, Any]:
    """The schema page as a dict (tests and in-process callers)."""
    return materialize(JSONObject(schema_page(conn, schema_name)))


def table(conn: Any, schema_name: str, table_name: str) -> dict[str, Any]:
    """``GET .../schema/<schema>/table/<table>``: statistics, sizes, indexes."""

    def main(ctx: dict | None) -> dict[str, Any]:
        if ctx is None:
            raise lookup.not_found("Schema", schema_name)
        if ctx["relid"] is None:
            raise lookup.not_found("Table", f"{schema_name}.{table_name}")
        tables, indexes = _relations(conn, ctx["nsp"], ctx["relid"], ctx)
        if not tables:  # dropped between the two queries
            raise lookup.not_found("Table", f"{schema_name}.{table_name}")
        with conn.cursor() as cur:
            for caster in _TEXT_TYPES:
                psycopg2.extensions.register_type(caster, cur)
            query = table_stats_query(conn.server_version)
            cur.execute(query, {"relid": ctx["relid"]})
            stats = cur.fetchone()
            names = [d.name for d in cur.description]
        if stats is None:
            raise lookup.not_found("Table", f"{schema_name}.{table_name}")
        result = dict(zip(names, stats))
        info = tables[0]
        info.pop("n_indexes")
        result.update(info)
        result["indexes"] = indexes
        return result

    lookup.check_name("Schema", schema_name)
    lookup.check_name("Table", table_name, f"{schema_name}.{table_name}")
    params = {"schema": schema_name, "table": table_name}
    return _with_locks(conn, "table_context", params, main)


@contextmanager
def _schemas(
    conn: Any, computed: Callable[[], None] | None = None
) -> Iterator[tuple[Iterator[dict], int]]:
    """Per-schema rows of the current database (streamed), and the database size."""

    def main_params(ctx: dict) -> dict:
        return {"relid": None, "locked": ctx["locked"]}

    held = _held_with_locks(conn, "database_context", {}, "database", main_params, computed)
    with held as (ctx, rows):
        assert ctx is not None and rows is not None  # database_context always has a row
        yield (dict(zip(rows.names, row)) for row in rows), ctx["total_bytes"]


def database_page(
    conn: Any, computed: Callable[[], None] | None = None
) -> Iterator[tuple[str, Any]]:
    """``GET /maintenance/<db>`` as streamed members: per-schema figures.

    ``computed``: called once PostgreSQL holds the rows.
    """
    with _schemas(conn, computed) as (schemas, total):
        yield "schemas", JSONArray(schemas)
        yield "total_bytes", total
        yield "total_size", size_pretty(total, conn.server_version)


def database(conn: Any) -> dict[str, Any]:
    """The database page as a dict (tests and in-process callers)."""
    return materialize(JSONObject(database_page(conn)))


def database_summary(conn: Any) -> dict[str, Any]:
    """Figures of the connected database, summed over its schemas (floats).

    Sums are taken as rows arrive, in the same order as a sum over a list.
    """
    counted = ("n_indexes", "n_tables", "tables_bytes", "indexes_bytes", "toast_bytes")
    optional = ("tables_bloat_bytes", "indexes_bloat_bytes")
    sums: dict[str, Any] = dict.fromkeys(counted, 0)
    sums.update(dict.fromkeys(optional))
    with _schemas(conn) as (schemas, _):
        for schema_row in schemas:
            for name in counted:
                sums[name] += schema_row[name]
            for name in optional:
                if schema_row[name] is not None:
                    sums[name] = (sums[name] or 0) + schema_row[name]
    figures = {name: None if sums[name] is None else float(sums[name]) for name in sums}
    for name in ("tables", "indexes", "toast", "tables_bloat", "indexes_bloat"):
        figures[f"{name}_size"] = size_pretty(figures[f"{name}_bytes"], conn.server_version)
    return figures


def _sum(values: list) -> float | None:
    """Sum of the non-null values as a float; None when all are null."""
    present = [v for v in values if v is not None]
    return float(sum(present)) if present else None


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
        version = conn.server_version

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
        entry["total_size"] = size_pretty(total, version)
        entries.append(dict(sorted(entry.items())))
    total = _sum([e["total_bytes"] for e in entries])
    return {
        "databases": entries,
        "instance": {"total_bytes": total, "total_size": size_pretty(total, version)},
    }
