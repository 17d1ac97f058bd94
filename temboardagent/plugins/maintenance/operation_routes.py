"""HTTP handlers of the maintenance write side (operations, lists, cancel, history).

Choices the spec leaves open:

- ``datetime`` in the past: the operation is due at once, so it runs now; the
  list and history keep the requested time.
- A malformed operation id in ``DELETE /maintenance/<kind>/<id>`` or
  ``GET /maintenance/<kind>/<id>`` is answered 404 like an unknown id.
- Scoped ``/scheduled`` lists check that the database, schema and table exist
  (404 otherwise); the instance-wide lists and the history need no PostgreSQL.
- ``mode`` of a plain VACUUM is ``""`` in lists; ``null`` for ANALYZE and REINDEX.
  ``mode`` is validated and shown in canonical order (``full,freeze,analyze``),
  so ``analyze,full`` duplicates a pending ``full,analyze``.
- Duplicate = same kind, target, options (mode and extension options) and
  requested time while still pending: 409 ``{"error", "id"}``. Immediate
  operations carry the current time to the microsecond, so they are never
  duplicates (they queue behind each other).
- The target must exist when the operation is scheduled (404 naming the missing
  database, schema, table or index); PostgreSQL down at that moment -> 503.
- The agent's role must be allowed to run it (403 otherwise, see ``privileges``).
- Lists also show operations finished in the last ``finished_visible`` seconds
  (done, failed, canceled, aborted); duplicates are only looked for among
  pending ones.
- Cancel of a finished operation (done, failed, canceled, aborted) -> 409.
- Extension options (``skip_locked``... ``concurrently``, ``timeout``): a bad
  value -> 406 ``Parameter 'X' is malformed.``, an option the server's version
  lacks -> 406 ``Parameter 'X' is not supported by PostgreSQL N.``; keys that
  are not options of the kind are ignored (as ``mode`` of ANALYZE always was).
- REINDEX CONCURRENTLY of an index or table that has indexes PostgreSQL cannot
  rebuild concurrently (system catalogs, exclusion constraints) -> 409 naming them.
- History: ``GET /maintenance/<kind>/history?db=&status=a,b&limit=&offset=``,
  newest first (``limit`` 1-1000, default 100); ``GET /maintenance/<kind>/<id>``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from ...errors import Conflict, NotFound, malformed
from ...jsonstream import JSONArray
from ...tasks import PENDING, STATUSES, TaskExists, TaskFinished, TaskNotFound
from .. import PluginContext, Request
from . import lookup, paths, privileges, progress
from .limits import read_connection
from .operations import (
    KINDS,
    make_target,
    operation_id,
    pending_filter,
    reindex_blockers_params,
    worker_name,
)
from .payloads import (
    check_supported,
    history_item,
    list_item,
    parse_body,
    parse_datetime,
    parse_options,
)
from .settings import MaintenanceSettings
from .statements import needs_server_check, quote_ident

HISTORY_LIMIT = 100
HISTORY_MAX_LIMIT = 1000
MAX_OFFSET = 2**63 - 1  # SQLite's integer range


class OperationRoutes:
    """Handlers bound to the plugin context and settings."""

    def __init__(
        self,
        ctx: PluginContext,
        settings: MaintenanceSettings,
        relations: progress.Relations | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.progress = progress.ProgressReader(self._read_connection, relations)

    def _read_connection(self, dbname: str | None = None, pooled: bool = True) -> Any:
        return read_connection(self.ctx, self.settings, dbname, pooled)

    def _with_progress(self, tasks: list[Any], items: list[dict[str, Any]]) -> list[dict]:
        """Add ``progress`` to each item: an object while running, else null."""
        running = self.progress.for_tasks(tasks)
        for task, item in zip(tasks, items):
            item["progress"] = running.get(task.id)
        return items

    # POST

    def schedule(
        self,
        kind: str,
        request: Request,
        dbname: str,
        schema: str | None = None,
        table: str | None = None,
        index: str | None = None,
    ) -> dict[str, str]:
        """Validate, check the target exists, persist the task; reply its id."""
        body = parse_body(request.body)
        options = parse_options(kind, body)
        start, start_text = parse_datetime(body.get("datetime"))
        index_table = None
        if index is not None:
            index_table = lookup.resolve_index(self.ctx, self.settings, dbname, schema, index)
        elif table is not None:
            lookup.check_table(self.ctx, self.settings, dbname, schema, table)
        else:
            lookup.check_database(self.ctx, self.settings, dbname)
        target = make_target(dbname, schema, table, index, index_table)
        if needs_server_check(options):
            check_supported(options, lookup.server_version(self.ctx, self.settings))
        if kind == "reindex" and options.get("concurrently") and (table or index) is not None:
            self._check_concurrent_reindex(target)
        privileges.check(self.ctx, self.settings, kind, target)
        try:
            task = self.ctx.tasks.schedule(
                worker_name(kind),
                target,
                options,
                start,
                preferred_id=operation_id(kind, dbname, schema, table, index, start_text),
            )
        except TaskExists as exc:
            raise Conflict(
                f"The same {kind} is already scheduled at {start_text}.",
                id=exc.task_id,
            ) from None
        return {"id": task.id}

    def _check_concurrent_reindex(self, target: dict[str, Any]) -> None:
        """409 when the index or table has indexes PostgreSQL cannot rebuild concurrently."""
        params = reindex_blockers_params(target)
        rows = lookup.reindex_blockers(self.ctx, self.settings, target["dbname"], params)
        if rows:
            names = ", ".join(
                f"{quote_ident(schema)}.{quote_ident(index)} ({reason})"
                for schema, index, reason in rows
            )
            raise Conflict(f"Cannot reindex concurrently: {names}.")

    # GET lists

    def scheduled(
        self,
        kind: str,
        request: Request,
        dbname: str | None = None,
        schema: str | None = None,
        table: str | None = None,
    ) -> list[dict[str, Any]]:
        """Pending, running and just finished operations ordered by datetime."""
        if table is not None:
            lookup.check_table(self.ctx, self.settings, dbname, schema, table)
        elif schema is not None:
            lookup.check_schema(self.ctx, self.settings, dbname, schema)
        elif dbname is not None:
            lookup.check_database(self.ctx, self.settings, dbname)
        return self.pending(kind, dbname, schema, table)

    def pending(
        self,
        kind: str,
        dbname: str | None = None,
        schema: str | None = None,
        table: str | None = None,
    ) -> list[dict[str, Any]]:
        """The list without existence checks.

        Operations finished in the last ``finished_visible`` seconds stay
        listed with their final status: a client polling the list sees them
        end (the temboard UI refreshes its page when a list changes).
        """
        visible = self.settings.finished_visible
        since = datetime.now(timezone.utc) - timedelta(seconds=visible) if visible else None
        tasks = self.ctx.tasks.list(
            workers=[worker_name(kind)],
            statuses=PENDING,
            finished_since=since,
            target=pending_filter(dbname, schema, table),
            order="start",
        )
        return self._with_progress(tasks, [list_item(task) for task in tasks])

    # History

    def history(self, kind: str, request: Request) -> JSONArray:
        """Operations of ``kind``, newest first; filters ``db``, ``status``.

        At most ``limit`` tasks are read; their JSON is streamed.
        """
        query = request.query
        limit = _int_param(query, "limit", HISTORY_LIMIT, 1, HISTORY_MAX_LIMIT)
        offset = _int_param(query, "offset", 0, 0, MAX_OFFSET)
        statuses = None
        if "status" in query:
            statuses = query["status"].split(",")
            if not all(status in STATUSES for status in statuses):
                raise malformed("status")
        dbname = query.get("db")
        tasks = self.ctx.tasks.list(
            workers=[worker_name(kind)],
            statuses=statuses,
            target=pending_filter(dbname) if dbname else None,
            order="-created",
            limit=limit,
            offset=offset,
        )
        running = self.progress.for_tasks(tasks)
        return JSONArray({**history_item(task), "progress": running.get(task.id)} for task in tasks)

    def _get(self, kind: str, operation: str) -> Any:
        task = self.ctx.tasks.get(operation)  # routed only when 8 hex digits
        if task is None or task.worker != worker_name(kind):
            raise NotFound(f"Operation '{operation}' not found.")
        return task

    def one(self, kind: str, request: Request, operation: str) -> dict[str, Any]:
        """One operation, history fields."""
        task = self._get(kind, operation)
        return self._with_progress([task], [history_item(task)])[0]

    # Activity

    def activity(self, request: Request) -> list[dict[str, Any]]:
        """Every maintenance command running in the instance, ours or not."""
        running = self.ctx.tasks.list(
            workers=[worker_name(kind) for kind in KINDS], statuses=["doing"]
        )
        return progress.activity(self._read_connection, running)

    def reindex_table_list(
        self, request: Request, dbname: str, schema: str, table: str, **_: str
    ) -> Any:
        """A table's REINDEX list is the schema's (spec: "does not filter on table"),
        under the spec's path and the one the UI builds."""
        lookup.check_table(self.ctx, self.settings, dbname, schema, table)
        return self.pending("reindex", dbname, schema)

    # DELETE

    def cancel(self, kind: str, request: Request, operation: str) -> dict[str, str]:
        """Cancel a pending or running operation; 409 once it is finished."""
        self._get(kind, operation)
        try:
            self.ctx.tasks.cancel(operation)
        except TaskNotFound:
            raise NotFound(f"Operation '{operation}' not found.") from None
        except TaskFinished as exc:
            raise Conflict(f"Operation '{operation}' is already {exc.task.status}.") from None
        return {"response": "ok"}


def _int_param(query: Any, name: str, default: int, minimum: int, maximum: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise malformed(name)
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise malformed(name)
    return value


def register(
    ctx: PluginContext,
    settings: MaintenanceSettings,
    relations: progress.Relations | None = None,
) -> None:
    """Register POST operations, /scheduled lists, DELETE cancel and history.

    ``relations(task_id)`` gives the relations a running database-wide
    operation has done, out of how many (the runner's own count).
    """
    handlers = OperationRoutes(ctx, settings, relations)
    db, schema, table, index = paths.DATABASE, paths.SCHEMA, paths.TABLE, paths.INDEX
    # (method, path, handler, key_ok); dynamic paths are matched in this order
    routes: list[tuple[str, str, Any, bool]] = [("GET", paths.ACTIVITY, handlers.activity, True)]
    for kind in KINDS:
        routes += [
            ("GET", paths.scheduled(paths.BASE, kind), partial(handlers.scheduled, kind), True),
            ("GET", paths.history(kind), partial(handlers.history, kind), True),
        ]
    for kind in KINDS:
        schedule = partial(handlers.schedule, kind)
        scheduled = partial(handlers.scheduled, kind)
        routes += [
            ("GET", paths.operation(kind), partial(handlers.one, kind), True),
            ("DELETE", paths.operation(kind), partial(handlers.cancel, kind), False),
            ("POST", paths.action(db, kind), schedule, False),
            ("POST", paths.action(table, kind), schedule, False),
            ("GET", paths.scheduled(db, kind), scheduled, True),
        ]
        if kind != "reindex":
            routes.append(("GET", paths.scheduled(table, kind), scheduled, True))
    reindex_list = partial(handlers.scheduled, "reindex")
    routes += [
        ("POST", paths.action(index, "reindex"), partial(handlers.schedule, "reindex"), False),
        ("GET", paths.scheduled(schema, "reindex"), reindex_list, True),
        ("GET", paths.scheduled(table, "reindex"), handlers.reindex_table_list, True),
        ("GET", paths.REINDEX_TABLE_ALIAS, handlers.reindex_table_list, True),
    ]
    for method, path, handler, key_ok in routes:
        ctx.add_route(method, path, handler, key_ok=key_ok, patterns=paths.PATTERNS)
