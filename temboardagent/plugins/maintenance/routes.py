"""HTTP handlers of the maintenance read side (sizes, bloat, statistics).

Each handler opens a read-only connection to the database of the path (read
``statement_timeout`` and ``lock_timeout`` from the ``[maintenance]`` section,
``search_path`` pinned to pg_catalog; not pooled for a template, whose
connected sessions make ``CREATE DATABASE`` fail) and returns what one
:mod:`.catalog` function builds. All accept the
shared key.

The database and schema pages are streamed: the handler returns a
:class:`~temboardagent.jsonstream.JSONObject` whose generator takes a
heavy-page slot, connects and reads rows only when the web layer encodes the
reply, and releases all three once the reply is sent or dropped.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from ...errors import NotFound, malformed
from ...jsonstream import JSONObject
from ...tasks import PENDING
from .. import PluginContext, Request
from . import advice, catalog, exact, lookup
from .limits import HeavyPages, read_connection
from .operations import KINDS, worker_name
from .settings import MaintenanceSettings


def register(ctx: PluginContext, settings: MaintenanceSettings) -> None:
    """Register GET /maintenance, /maintenance/<db>, .../schema/<s>, .../table/<t>."""
    heavy = HeavyPages(settings.heavy_pages)

    def connect(dbname: str | None = None, pooled: bool = True) -> Any:
        return read_connection(ctx, settings, dbname, pooled)

    @contextmanager
    def database(dbname: str) -> Iterator[Any]:
        """A connection to ``dbname``, not kept in the pool for a template."""
        with connect() as conn:
            template = lookup.is_template(conn, dbname)
        opened = False
        try:
            with connect(dbname, pooled=not template) as conn:
                opened = True
                yield conn
        except NotFound:
            if opened:
                raise
            raise NotFound(f"Database '{dbname}' not found.") from None

    def get_instance(request: Request) -> dict:
        with heavy.slot("GET /maintenance"):
            default = ctx.agent_config.postgresql.dbname
            return catalog.instance(connect, settings.parallel_databases, default)

    def get_database(request: Request, dbname: str) -> JSONObject:
        def members() -> Iterator[tuple[str, Any]]:
            with heavy.slot("GET /maintenance/<db>") as computed, database(dbname) as conn:
                yield from catalog.database_page(conn, computed)

        return JSONObject(members())

    def get_schema(request: Request, dbname: str, schema: str) -> JSONObject:
        def members() -> Iterator[tuple[str, Any]]:
            with heavy.slot("GET /maintenance/<db>/schema/<s>") as computed:
                with database(dbname) as conn:
                    yield from catalog.schema_page(conn, schema, computed)

        return JSONObject(members())

    def get_table(request: Request, dbname: str, schema: str, table: str) -> dict:
        mode = request.query.get("bloat", "estimate")
        if mode not in ("estimate", "exact"):
            raise malformed("bloat")
        with database(dbname) as conn:
            result = catalog.table(conn, schema, table)
            if mode == "exact":
                exact.measure(conn, dbname, int(result["relid"]), result)
            return result

    def pending_tasks() -> list:
        return ctx.tasks.list(workers=[worker_name(kind) for kind in KINDS], statuses=PENDING)

    def get_instance_advice(request: Request) -> dict:
        with heavy.slot("GET /maintenance/advice"):
            items, failed = advice.instance_advice(connect, settings)
        result = advice.reply(items, pending_tasks())
        result["unreachable"] = failed
        return result

    def get_database_advice(request: Request, dbname: str) -> dict:
        with heavy.slot("GET /maintenance/<db>/advice"), database(dbname) as conn:
            items = advice.database_advice(conn, dbname, settings)
        result = advice.reply(items, pending_tasks())
        result["unreachable"] = []
        return result

    base = "/maintenance"
    ctx.add_route("GET", f"{base}/advice", get_instance_advice, key_ok=True)
    ctx.add_route("GET", f"{base}/<dbname>/advice", get_database_advice, key_ok=True)
    ctx.add_route("GET", base, get_instance, key_ok=True)
    ctx.add_route("GET", f"{base}/<dbname>", get_database, key_ok=True)
    ctx.add_route("GET", f"{base}/<dbname>/schema/<schema>", get_schema, key_ok=True)
    ctx.add_route("GET", f"{base}/<dbname>/schema/<schema>/table/<table>", get_table, key_ok=True)
