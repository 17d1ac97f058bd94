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
from . import advice, catalog, exact, paths
from .limits import HeavyPages, read_connection
from .operations import KINDS, worker_name
from .settings import MaintenanceSettings


class ReadRoutes:
    """Handlers bound to the plugin context and settings."""

    def __init__(self, ctx: PluginContext, settings: MaintenanceSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.heavy = HeavyPages(settings.heavy_pages)

    def connect(self, dbname: str | None = None, pooled: bool = True) -> Any:
        return read_connection(self.ctx, self.settings, dbname, pooled)

    @contextmanager
    def database(self, dbname: str) -> Iterator[Any]:
        """A connection to ``dbname``, not kept in the pool for a template."""
        with self.connect() as conn:
            template = catalog.is_template(conn, dbname)
        opened = False
        try:
            with self.connect(dbname, pooled=not template) as conn:
                opened = True
                yield conn
        except NotFound:
            if opened:
                raise
            raise NotFound(f"Database '{dbname}' not found.") from None

    def get_instance(self, request: Request) -> dict:
        with self.heavy.slot("GET /maintenance"):
            default = self.ctx.agent_config.postgresql.dbname
            return catalog.instance(self.connect, self.settings.parallel_databases, default)

    def get_database(self, request: Request, dbname: str) -> JSONObject:
        def members() -> Iterator[tuple[str, Any]]:
            with self.heavy.slot("GET /maintenance/<db>") as computed:
                with self.database(dbname) as conn:
                    yield from catalog.database_page(conn, computed)

        return JSONObject(members())

    def get_schema(self, request: Request, dbname: str, schema: str) -> JSONObject:
        def members() -> Iterator[tuple[str, Any]]:
            with self.heavy.slot("GET /maintenance/<db>/schema/<s>") as computed:
                with self.database(dbname) as conn:
                    yield from catalog.schema_page(conn, schema, computed)

        return JSONObject(members())

    def get_table(self, request: Request, dbname: str, schema: str, table: str) -> dict:
        mode = request.query.get("bloat", "estimate")
        if mode not in ("estimate", "exact"):
            raise malformed("bloat")
        with self.database(dbname) as conn:
            result = catalog.table(conn, schema, table)
            if mode == "exact":
                exact.measure(conn, dbname, int(result["relid"]), result)
            return result

    def pending_tasks(self) -> list:
        return self.ctx.tasks.list(workers=[worker_name(kind) for kind in KINDS], statuses=PENDING)

    def get_instance_advice(self, request: Request) -> dict:
        with self.heavy.slot("GET /maintenance/advice"):
            items, failed = advice.instance_advice(self.connect, self.settings)
        result = advice.reply(items, self.pending_tasks())
        result["unreachable"] = failed
        return result

    def get_database_advice(self, request: Request, dbname: str) -> dict:
        with self.heavy.slot("GET /maintenance/<db>/advice"), self.database(dbname) as conn:
            items = advice.database_advice(conn, dbname, self.settings)
        result = advice.reply(items, self.pending_tasks())
        result["unreachable"] = []
        return result


def register(ctx: PluginContext, settings: MaintenanceSettings) -> None:
    """Register GET /maintenance, /maintenance/{dbname}, .../schema/{schema}, .../table/{table}."""
    handlers = ReadRoutes(ctx, settings)
    # (method, path, handler, key_ok); dynamic paths are matched in this order
    routes = [
        ("GET", paths.ADVICE, handlers.get_instance_advice, True),
        ("GET", paths.DATABASE_ADVICE, handlers.get_database_advice, True),
        ("GET", paths.BASE, handlers.get_instance, True),
        ("GET", paths.DATABASE, handlers.get_database, True),
        ("GET", paths.SCHEMA, handlers.get_schema, True),
        ("GET", paths.TABLE, handlers.get_table, True),
    ]
    for method, path, handler, key_ok in routes:
        ctx.add_route(method, path, handler, key_ok=key_ok, patterns=paths.PATTERNS)
