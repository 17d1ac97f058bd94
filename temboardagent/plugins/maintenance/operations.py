"""VACUUM / ANALYZE / REINDEX: input parsing, statement builders, task workers.

An operation is a task of the agent's task manager (``temboardagent.tasks``):

- worker ``maintenance.<kind>``;
- target ``{"dbname", "schema", "table", "index"}`` (``None`` where absent), plus
  ``"index_table"`` for an index reindex: the index's table, resolved when the
  operation is scheduled, so a table's own operations and the reindex of its
  indexes never run at the same time (see :func:`conflict_keys`);
- options ``{"mode": "<canonical mode>"}`` for VACUUM, ``{}`` otherwise.

Execution: the worker opens a dedicated connection (not pooled, not read-only,
no statement timeout, closed when the operation ends) to the target database,
stores the exact statement text as the task's output, records its backend pid,
then runs the statement in autocommit. Failures keep PostgreSQL's message as
the task error. The notices PostgreSQL sends are kept on the task (``details``)
and an operation that skipped what it had to process fails (see
:mod:`.outcome`). If PostgreSQL is unreachable when an operation is due, the
operation fails at once (``PostgreSQL is unavailable.``): it is not retried
later, so a maintenance window is never silently shifted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

import psycopg2
from psycopg2 import sql

from ...cluster import check_cluster
from ...errors import BadRequest, HTTPError, malformed
from .. import PluginContext
from . import outcome, privileges
from .catalog import load_sql

if TYPE_CHECKING:  # pragma: no cover
    from ...tasks import Task, TaskContext

logger = logging.getLogger(__name__)

KINDS = ("vacuum", "analyze", "reindex")
WORKER_PREFIX = "maintenance."
#: VACUUM options in the order PostgreSQL documents them
VACUUM_OPTIONS = ("full", "freeze", "analyze")
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", re.ASCII)
_ID_RE = re.compile(r"[0-9a-f]{8}")

#: how the cancel hook retries pg_cancel_backend while our statement runs
CANCEL_INTERVAL = 0.05  # seconds
CANCEL_DEADLINE = 2.0  # seconds


def worker_name(kind: str) -> str:
    """``vacuum`` -> ``maintenance.vacuum``."""
    if kind not in KINDS:
        raise ValueError(f"unknown operation kind: {kind!r}")
    return WORKER_PREFIX + kind


def kind_of(worker: str) -> str | None:
    """``maintenance.vacuum`` -> ``vacuum``; None for a worker not ours."""
    if worker.startswith(WORKER_PREFIX) and worker[len(WORKER_PREFIX) :] in KINDS:
        return worker[len(WORKER_PREFIX) :]
    return None


# Input parsing


def parse_mode(value: Any) -> str:
    """Validate a VACUUM ``mode`` and return it in canonical order.

    Any comma-joined subset of ``full``, ``freeze``, ``analyze`` without
    duplicates, in any order; ``""`` or a missing/``null`` mode is a plain VACUUM.
    Raises NotAcceptable ``Parameter 'mode' is malformed.`` otherwise.
    """
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise malformed("mode")
    parts = value.split(",")
    if len(set(parts)) != len(parts) or not set(parts) <= set(VACUUM_OPTIONS):
        raise malformed("mode")
    return ",".join(opt for opt in VACUUM_OPTIONS if opt in parts)


def format_datetime(value: datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` (seconds truncated)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    # isoformat() is a little faster than strftime() (history pages).
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def format_optional(value: datetime | None) -> str | None:
    return None if value is None else format_datetime(value)


def parse_datetime(value: Any, now: datetime | None = None) -> tuple[datetime, str]:
    """Return the requested start (tz-aware UTC) and its canonical text.

    ``None`` (absent) means now, with the text of the current second. A time in
    the past is kept as is: the task is due at once, so it runs now. Raises
    NotAcceptable ``Parameter 'datetime' is malformed.`` for anything but an
    existing UTC time written ``YYYY-MM-DDTHH:MM:SSZ``.
    """
    if value is None:
        now = now or datetime.now(timezone.utc)
        return now, format_datetime(now)
    if not isinstance(value, str) or not _DATETIME_RE.fullmatch(value):
        raise malformed("datetime")
    try:
        parsed = datetime.strptime(value, DATETIME_FORMAT)
    except ValueError:  # e.g. 2030-02-30T00:00:00Z
        raise malformed("datetime") from None
    return parsed.replace(tzinfo=timezone.utc), value


def parse_body(body: Any) -> Mapping[str, Any]:
    """The JSON body of a POST, which must be an object (``{}`` when empty)."""
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body


def is_operation_id(value: str) -> bool:
    """True for 8 lowercase hexadecimal digits."""
    return bool(_ID_RE.fullmatch(value))


def operation_id(
    kind: str,
    dbname: str,
    schema: str | None = None,
    table: str | None = None,
    index: str | None = None,
    datetime_text: str = "",
) -> str:
    """Upstream's id: md5 of ``"<db>:<schema>:<table><index>:<datetime>:<kind>"``.

    Missing parts are empty strings. It reproduces the spec's example ids, e.g.
    ``postgres:public:country:2019-03-23T11:28:00Z:vacuum`` -> ``9ce6426b``. The
    task manager falls back to a random id when this one is already used.
    """
    raw = f"{dbname}:{schema or ''}:{table or ''}{index or ''}:{datetime_text}:{kind}"
    return hashlib.md5(raw.encode("utf-8")).hexdigest()[:8]


# Targets and conflicts


def make_target(
    dbname: str,
    schema: str | None = None,
    table: str | None = None,
    index: str | None = None,
    index_table: str | None = None,
) -> dict[str, Any]:
    """The task target; ``index_table`` only for an index reindex."""
    target: dict[str, Any] = {
        "dbname": dbname,
        "schema": schema,
        "table": table,
        "index": index,
    }
    if index is not None:
        target["index_table"] = index_table
    return target


def conflict_keys(task: Task) -> list[tuple[str, ...]]:
    """Database scope -> ``(db,)``; table -> ``(db, s, t)``; index -> ``(db, s, <its table>)``.

    Keys conflict when one is a prefix of the other, so a database-wide operation
    excludes every operation of that database.
    """
    target = task.target
    dbname = target["dbname"]
    schema = target.get("schema")
    if target.get("index") is not None:
        return [(dbname, schema, target.get("index_table") or "")]
    if target.get("table") is not None:
        return [(dbname, schema, target["table"])]
    return [(dbname,)]


# Statements


def build_statement(
    kind: str, target: Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> sql.Composed:
    """The statement of an operation, identifiers quoted with ``sql.Identifier``."""
    schema, table, index = target.get("schema"), target.get("table"), target.get("index")
    relation = (
        sql.Composed([sql.Identifier(schema), sql.SQL("."), sql.Identifier(table)])
        if table is not None
        else None
    )
    if kind == "vacuum":
        mode = parse_mode((options or {}).get("mode"))
        parts: list[sql.Composable] = [sql.SQL("VACUUM")]
        if mode:
            flags = ", ".join(opt.upper() for opt in mode.split(","))
            parts.append(sql.SQL(f" ({flags})"))
        if relation is not None:
            parts += [sql.SQL(" "), relation]
        return sql.Composed(parts)
    if kind == "analyze":
        if relation is None:
            return sql.Composed([sql.SQL("ANALYZE")])
        return sql.Composed([sql.SQL("ANALYZE "), relation])
    if kind == "reindex":
        if index is not None:
            return sql.Composed(
                [
                    sql.SQL("REINDEX INDEX "),
                    sql.Identifier(schema),
                    sql.SQL("."),
                    sql.Identifier(index),
                ]
            )
        if relation is not None:
            return sql.Composed([sql.SQL("REINDEX TABLE "), relation])
        return sql.Composed([sql.SQL("REINDEX DATABASE "), sql.Identifier(target["dbname"])])
    raise ValueError(f"unknown operation kind: {kind!r}")


def quote_ident(name: str) -> str:
    """PostgreSQL identifier quoting, as ``sql.Identifier`` renders it."""
    return '"' + name.replace('"', '""') + '"'


def render_statement(statement: sql.Composable) -> str:
    """Text of a statement built by :func:`build_statement`, without a connection.

    Used to show the statement of an operation that has not run yet; a run
    operation shows the text rendered by the server connection.
    """
    if isinstance(statement, sql.Composed):
        return "".join(render_statement(part) for part in statement.seq)
    if isinstance(statement, sql.Identifier):
        return ".".join(quote_ident(s) for s in statement.strings)
    if isinstance(statement, sql.SQL):
        return statement.string
    raise TypeError(f"cannot render {type(statement).__name__}")


# Shaping


def list_item(task: Task) -> dict[str, Any]:
    """A /scheduled list item, exactly the spec's fields."""
    kind = kind_of(task.worker)
    target = task.target
    return {
        "id": task.id,
        "dbname": target.get("dbname"),
        "schema": target.get("schema"),
        "table": target.get("table"),
        "index": target.get("index"),
        "mode": task.options.get("mode", "") if kind == "vacuum" else None,
        "datetime": format_datetime(task.start),
        "status": task.status,
    }


def history_item(task: Task) -> dict[str, Any]:
    """A list item plus ``sql``, ``created``, ``started``, ``finished``, ``duration``, ``error``."""
    item = list_item(task)
    text = task.output
    if text is None:
        try:
            text = render_statement(
                build_statement(kind_of(task.worker) or "", task.target, task.options)
            )
        except (ValueError, TypeError, KeyError, HTTPError):
            text = None
    duration = None
    if task.started is not None and task.finished is not None:
        duration = round((task.finished - task.started).total_seconds(), 6)
    details = task.details or {}
    item.update(
        sql=text,
        created=format_optional(task.created),
        started=format_optional(task.started),
        finished=format_optional(task.finished),
        duration=duration,
        error=task.error if task.status in ("failed", "aborted") else None,
        notices=details.get("notices", []),
        skipped=details.get("skipped", []),
        skipped_count=details.get("skipped_count", 0),
    )
    return item


# Workers


class OperationError(Exception):
    """An operation failed; ``str()`` is the text kept in the task's ``error``."""


class OperationCanceled(OperationError):
    """Cancel was requested before the statement started."""


def postgres_message(exc: Exception) -> str:
    """The primary PostgreSQL message of a psycopg2 error (no ``ERROR:`` prefix)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return primary
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class _Running:
    """In-process state of one running operation, shared by the worker and the cancel hook."""

    pid: int | None = None
    executing: bool = False
    canceled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)


class OperationRunner:
    """``run`` and ``cancel`` callables of the three maintenance workers."""

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()

    def run(self, tctx: TaskContext) -> str:
        """Run the task's statement; return its text (kept as the task output)."""
        task = tctx.task
        kind = kind_of(task.worker)
        if kind is None:
            raise OperationError(f"unknown worker {task.worker}")
        state = _Running()
        with self._lock:
            self._running[task.id] = state
        try:
            return self._run(tctx, kind, state)
        finally:
            state.done.set()
            with self._lock:
                self._running.pop(task.id, None)

    def _run(self, tctx: TaskContext, kind: str, state: _Running) -> str:
        task = tctx.task
        statement = build_statement(kind, task.target, task.options)
        try:
            with self.ctx.connect(
                task.target["dbname"], pooled=False, read_only=False, statement_timeout=0
            ) as conn:
                check_cluster(conn, task)  # TaskAborted on another cluster: never run
                return self._execute(tctx, conn, statement, state)
        except HTTPError as exc:  # PostgreSQL down, database dropped...
            raise OperationError(exc.message) from exc
        except psycopg2.Error as exc:
            raise OperationError(postgres_message(exc)) from exc

    @staticmethod
    def _execute(tctx: TaskContext, conn: Any, statement: sql.Composed, state: _Running) -> str:
        text = statement.as_string(conn)
        tctx.set_output(text)
        with conn.cursor() as cur:
            cur.execute(load_sql("op_messages"))
            cur.execute(load_sql("op_backend_pid"))
            pid = cur.fetchone()[0]
            tctx.set_pid(pid)
            with state.lock:
                state.pid = pid
                if state.canceled or tctx.cancel_requested.is_set():
                    raise OperationCanceled("Canceled before start.")
                state.executing = True
            collector = conn.notices = outcome.NoticeCollector()
            logger.info("Running %s (task %s).", text, tctx.task.id)
            try:
                cur.execute(statement)
            finally:
                with state.lock:
                    state.executing = False
                record_notices(tctx, conn, collector)
        error = outcome_error(conn, tctx.task, collector)
        if error is not None:
            raise OperationError(error)
        return text

    def cancel(self, task: Task) -> None:
        """Stop a running operation: pg_cancel_backend until its statement ends.

        Retries every 50 ms for up to 2 s while our statement still runs (a
        cancel sent just before the statement reaches the server is lost).
        """
        with self._lock:
            state = self._running.get(task.id)
        if state is None:
            return  # run() not entered yet: it checks cancel_requested before executing
        with state.lock:
            state.canceled = True
            pid = state.pid
        if pid is None:
            return  # the worker sees the flag before it executes anything
        deadline = time.monotonic() + CANCEL_DEADLINE
        try:
            with self.ctx.connect(statement_timeout=5000) as conn, conn.cursor() as cur:
                while time.monotonic() < deadline:
                    with state.lock:
                        running = state.executing
                    if not running:
                        return
                    cur.execute(load_sql("op_cancel_backend"), {"pid": pid})
                    if cur.fetchone() is None:  # backend gone
                        return
                    if state.done.wait(CANCEL_INTERVAL):
                        return
            logger.warning("Backend %s still runs task %s after cancel.", pid, task.id)
        except (HTTPError, psycopg2.Error) as exc:
            logger.error("Could not cancel task %s: %s", task.id, exc)

    def recover(self, tasks: list[Task]) -> None:
        """Recover hook: operations left ``doing`` by a previous agent process.

        The task manager calls it at start (after the home is locked and the
        port bound) before it marks them ``aborted``; their backends may still
        be running (or waiting for a lock). PostgreSQL may be slow or down: the
        cancel runs in a thread of its own so the start-up does not wait.
        """
        orphans = [task for task in tasks if task.pid is not None and task.output]
        if orphans:
            threading.Thread(
                target=self.cancel_orphans,
                args=(orphans,),
                name="maintenance-orphans",
                daemon=True,
            ).start()

    def cancel_orphans(self, orphans: list[Task]) -> int:
        """Cancel the backends of orphan operations (best effort).

        A backend is canceled only while it runs exactly the task's statement
        over a connection of the agent (same application_name).
        """
        count = 0
        if not orphans:
            return count
        try:
            with self.ctx.connect(statement_timeout=5000) as conn, conn.cursor() as cur:
                for task in orphans:
                    cur.execute(
                        load_sql("op_cancel_orphan"), {"pid": task.pid, "query": task.output}
                    )
                    if cur.fetchone() is not None:
                        count += 1
                        logger.warning(
                            "Canceled backend %s still running task %s of a previous agent.",
                            task.pid,
                            task.id,
                        )
        except (HTTPError, psycopg2.Error) as exc:
            logger.error("Could not cancel backends of interrupted operations: %s", exc)
        return count


def is_single(target: Mapping[str, Any]) -> bool:
    """True for an operation on one table or index, False for a whole database."""
    return target.get("table") is not None or target.get("index") is not None


def outcome_error(conn: Any, task: Task, collector: outcome.NoticeCollector) -> str | None:
    """The error of an operation PostgreSQL ran without error (None: done).

    Messages not in English cannot be read: for one relation, the role's
    privileges are then checked here, so a translated permission warning
    still fails the operation.
    """
    single = is_single(task.target)
    denied = None
    if single and collector.first_foreign is not None:
        try:
            denied = privileges.target_denial(conn, kind_of(task.worker) or "", task.target)
        except psycopg2.Error as exc:
            logger.warning("Task %s: cannot check privileges: %s", task.id, exc)
    return outcome.verdict(collector, single, denied)


def record_notices(tctx: TaskContext, conn: Any, collector: outcome.NoticeCollector) -> None:
    """Keep PostgreSQL's notices and skipped relations on the task (best effort)."""
    task_id = tctx.task.id
    for notice in collector.notices[:5]:
        # e.g. WARNING: skipping "t" --- only table or database owner can vacuum it
        logger.warning("Task %s: %s", task_id, notice)
    if collector.notices_count > 5:
        logger.warning(
            "Task %s: %d messages from PostgreSQL, %d skipped relation(s).",
            task_id,
            collector.notices_count,
            collector.skipped_count,
        )

    def qualify(names: list[str]) -> dict[str, str]:
        try:
            with conn.cursor() as cur:
                cur.execute(load_sql("op_skipped_relations"), {"names": names})
                return {relname: f"{nspname}.{relname}" for relname, nspname in cur.fetchall()}
        except psycopg2.Error as exc:  # connection lost, canceled...
            logger.debug("Task %s: cannot qualify skipped relations: %s", task_id, exc)
            return {}

    try:
        tctx.set_details(outcome.details(collector, qualify))
    except Exception:  # never hide the statement's own error
        logger.exception("Task %s: failed to record PostgreSQL's notices.", task_id)


def register_workers(ctx: PluginContext) -> OperationRunner:
    """Register the maintenance.vacuum, maintenance.analyze and maintenance.reindex workers."""
    runner = OperationRunner(ctx)
    for kind in KINDS:
        ctx.add_worker(
            worker_name(kind),
            runner.run,
            conflict_keys=conflict_keys,
            cancel=runner.cancel,
            recover=runner.recover,
        )
    return runner


def pending_filter(
    dbname: str | None = None, schema: str | None = None, table: str | None = None
) -> dict[str, Any]:
    """Target filter of a /scheduled list (only the given fields)."""
    target: dict[str, Any] = {}
    for key, value in (("dbname", dbname), ("schema", schema), ("table", table)):
        if value is not None:
            target[key] = value
    return target
