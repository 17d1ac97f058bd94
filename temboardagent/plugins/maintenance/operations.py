"""VACUUM / ANALYZE / REINDEX: input parsing, statement builders, task workers.

An operation is a task of the agent's task manager (``temboardagent.tasks``):

- worker ``maintenance.<kind>``;
- target ``{"dbname", "schema", "table", "index"}`` (``None`` where absent), plus
  ``"index_table"`` for an index reindex: the index's table, resolved when the
  operation is scheduled, so a table's own operations and the reindex of its
  indexes never run at the same time (see :func:`conflict_keys`);
- options ``{"mode": "<canonical mode>"}`` for VACUUM, ``{}`` otherwise, plus
  the extension options the client asked for (see :mod:`.statements`).

Execution: the worker opens a dedicated connection (not pooled, not read-only,
no statement timeout, ``lock_timeout`` = ``operation_lock_timeout``, closed when
the operation ends) to the target database, stores the exact statement text as
the task's output, records its backend pid, then runs the statement in
autocommit, retrying when its lock did not come (see :mod:`.lockwait`).
Database-wide VACUUM and ANALYZE run by batches of relations. Failures keep
PostgreSQL's message as the task error. The notices PostgreSQL sends are kept
on the task (``details``) and an operation that skipped what it had to process
fails (see :mod:`.outcome`). If PostgreSQL is unreachable when an operation is
due, the operation fails at once (``PostgreSQL is unavailable.``): it is not
retried later, so a maintenance window is never silently shifted.
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
import psycopg2.errors
from psycopg2 import sql

from ...cluster import check_cluster
from ...errors import BadRequest, HTTPError, NotAcceptable, malformed
from ...tasks.model import ID_RE
from .. import PluginContext
from . import outcome, privileges, statements
from .lockwait import (
    Canceled,
    LockRetry,
    LockWaitExpired,
    Step,
    TimedOut,
    conflicting_modes,
    describe_holders,
)
from .settings import MaintenanceSettings
from .sql import load_sql
from .statements import (
    OptionError,
    build_relations_statement,
    build_statement,
    extension_options,
    quote_ident,
    render_statement,
    runs_per_relation,
    uses_lock_timeout,
)

if TYPE_CHECKING:  # pragma: no cover
    from ...tasks import Task, TaskContext

logger = logging.getLogger(__name__)

KINDS = ("vacuum", "analyze", "reindex")
WORKER_PREFIX = "maintenance."
#: VACUUM options in the order PostgreSQL documents them
VACUUM_OPTIONS = statements.VACUUM_MODES
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", re.ASCII)

#: relations of a database-wide VACUUM or ANALYZE per statement (each is still
#: processed in its own transaction; the statement's fixed costs, such as VACUUM's
#: update of datfrozenxid, are paid once per batch)
RELATIONS_PER_STATEMENT = 50

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
    try:
        return statements.parse_mode(value)
    except OptionError as exc:
        raise NotAcceptable(str(exc)) from None


def parse_options(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The task options of a POST body; NotAcceptable (406) for a bad value.

    Keys that are not options of ``kind`` are ignored, as they always were.
    """
    try:
        return statements.parse_options(kind, body)
    except OptionError as exc:
        raise NotAcceptable(str(exc)) from None


def check_supported(options: Mapping[str, Any], server_version: int) -> None:
    """NotAcceptable ``Parameter 'X' is not supported by PostgreSQL N.``"""
    try:
        statements.check_supported(options, server_version)
    except OptionError as exc:
        raise NotAcceptable(str(exc)) from None


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
    return bool(ID_RE.match(value))


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


# Shaping


def list_item(task: Task) -> dict[str, Any]:
    """A /scheduled list item: the spec's fields and ``options`` (extension)."""
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
        "options": extension_options(task.options),
    }


def history_item(task: Task) -> dict[str, Any]:
    """A list item plus ``sql``, ``created``, ``started``, ``finished``, ``duration``,
    ``error`` and ``attempts`` (extension)."""
    item = list_item(task)
    text = task.output
    if text is None:
        try:
            text = render_statement(
                build_statement(kind_of(task.worker) or "", task.target, task.options)
            )
        except (ValueError, TypeError, KeyError):
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
        attempts=task.attempts,
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
    #: relations of a database-wide VACUUM or ANALYZE run relation by relation
    relations_total: int | None = None
    relations_done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)


class OperationRunner:
    """``run`` and ``cancel`` callables of the three maintenance workers."""

    def __init__(self, ctx: PluginContext, settings: MaintenanceSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or MaintenanceSettings()
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
        started = time.monotonic()
        try:
            statement = build_statement(kind, task.target, task.options)
        except OptionError as exc:  # a task list edited by hand or by an older agent
            raise OperationError(str(exc)) from exc
        lock_timeout = self.settings.operation_lock_timeout
        if not uses_lock_timeout(kind, task.options):
            lock_timeout = 0
        try:
            with self.ctx.connect(
                task.target["dbname"],
                pooled=False,
                read_only=False,
                statement_timeout=0,
                lock_timeout=lock_timeout,
            ) as conn:
                check_cluster(conn, task)  # TaskAborted on another cluster: never run
                return self._execute(tctx, conn, kind, statement, state, started)
        except HTTPError as exc:  # PostgreSQL down, database dropped...
            raise OperationError(exc.message) from exc
        except psycopg2.Error as exc:
            raise OperationError(postgres_message(exc)) from exc

    def _execute(
        self,
        tctx: TaskContext,
        conn: Any,
        kind: str,
        statement: sql.Composed,
        state: _Running,
        started: float,
    ) -> str:
        task = tctx.task
        text = statement.as_string(conn)
        tctx.set_output(text)
        with conn.cursor() as cur:
            cur.execute(load_sql("english_messages"))
            cur.execute(load_sql("backend_pid"))
            pid = cur.fetchone()[0]
            tctx.set_pid(pid)
            with state.lock:
                state.pid = pid
                if state.canceled or tctx.cancel_requested.is_set():
                    raise OperationCanceled("Canceled before start.")
            steps = self._steps(cur, kind, task, statement)
            if runs_per_relation(kind, task.target):
                state.relations_total = sum(len(step.parts) or 1 for step in steps)
            blockers = self._reindex_blockers(cur, kind, task)
            collector = conn.notices = outcome.NoticeCollector()
            logger.info("Running %s (task %s, %d statement(s)).", text, task.id, len(steps))
            try:
                self._run_with_lock_retry(tctx, cur, steps, state, started)
            except OperationCanceled:
                if is_concurrent_reindex(kind, task):
                    self._note_invalid_rebuilds(cur, task, "")
                raise
            except (OperationError, psycopg2.Error) as exc:
                if not is_concurrent_reindex(kind, task):
                    raise
                message = str(exc) if isinstance(exc, OperationError) else postgres_message(exc)
                raise OperationError(self._note_invalid_rebuilds(cur, task, message)) from exc
            finally:
                record_notices(tctx, conn, collector)
        if blockers:  # PostgreSQL skipped them (with a WARNING, maybe translated)
            raise OperationError(
                "Not rebuilt concurrently: "
                + ", ".join(f"{name} ({reason})" for name, reason in blockers)
                + "; rebuild them without concurrently."
            )
        error = outcome_error(conn, task, collector)
        if error is not None:
            raise OperationError(error)
        return text

    @staticmethod
    def _steps(cur: Any, kind: str, task: Task, statement: sql.Composed) -> list[Step]:
        """One step, or one per relation for a database-wide VACUUM or ANALYZE."""
        if not runs_per_relation(kind, task.target):
            return [Step(statement)]
        cur.execute(load_sql("database_relations"))
        relations = cur.fetchall()
        steps = []
        for start in range(0, len(relations), RELATIONS_PER_STATEMENT):
            batch = relations[start : start + RELATIONS_PER_STATEMENT]
            parts = tuple(
                Step(build_relations_statement(kind, task.options, [rel]), *rel) for rel in batch
            )
            if len(parts) == 1:
                steps.append(parts[0])
            else:
                statement = build_relations_statement(kind, task.options, batch)
                steps.append(Step(statement, parts=parts))
        return steps

    @staticmethod
    def _reindex_blockers(cur: Any, kind: str, task: Task) -> list[tuple[str, str]]:
        """Indexes a REINDEX CONCURRENTLY of a table or database will skip."""
        if not is_concurrent_reindex(kind, task):
            return []
        target = task.target
        if target.get("index") is not None:
            return []  # PostgreSQL's own error names it
        cur.execute(load_sql("reindex_blockers"), reindex_blockers_params(target))
        return [(f"{quote_ident(s)}.{quote_ident(i)}", reason) for s, i, reason in cur.fetchall()]

    @staticmethod
    def _note_invalid_rebuilds(cur: Any, task: Task, message: str) -> str:
        """``message``, plus the invalid indexes an interrupted REINDEX CONCURRENTLY left.

        PostgreSQL keeps them (``<index>_ccnew``): they slow down writes until
        dropped. They are named in the error (and the log), never dropped
        automatically.
        """
        target = task.target
        table = target.get("table") or target.get("index_table")
        params = {"schema": target.get("schema") if table else None, "table": table}
        try:
            cur.execute(load_sql("invalid_rebuilds"), params)
            rows = cur.fetchall()
        except psycopg2.Error:  # connection lost: nothing more to say
            return message
        if not rows:
            return message
        names = ", ".join(f"{quote_ident(s)}.{quote_ident(i)}" for s, i in rows)
        note = (
            f"invalid indexes left by the interrupted rebuild: {names}"
            " (drop them with DROP INDEX CONCURRENTLY)."
        )
        logger.warning("Task %s: %s", task.id, note)
        return f"{message}; {note}" if message else note

    def _run_with_lock_retry(
        self,
        tctx: TaskContext,
        cur: Any,
        steps: list[Step],
        state: _Running,
        started: float,
    ) -> None:
        """Run the steps with lock retries and the operation's time limit.

        Translates the outcomes of :class:`.lockwait.LockRetry` into
        OperationError texts kept as the task error.
        """
        task = tctx.task
        timeout = task.options.get("timeout")

        def record(attempt: int) -> None:
            if attempt > 1:
                logger.info("Task %s: lock not available, attempt %d.", task.id, attempt)
            set_attempts = getattr(tctx, "set_attempts", None)
            if set_attempts is not None:
                set_attempts(attempt)

        def execute(step: Step, time_left_ms: int | None) -> None:
            if time_left_ms is not None:
                cur.execute(load_sql("set_statement_timeout"), {"ms": str(time_left_ms)})
            with state.lock:
                if state.canceled or tctx.cancel_requested.is_set():
                    raise OperationCanceled("Canceled before start.")
                state.executing = True
            try:
                cur.execute(step.statement)
            except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
                if step.table is None:
                    raise
                # Dropped since the list was read: PostgreSQL's database-wide
                # command skips it too.
                logger.info("Task %s: %s is gone, skipped.", task.id, step.relation)
            finally:
                with state.lock:
                    state.executing = False
            if step.table is not None or step.parts:  # this statement's relations are done
                with state.lock:
                    state.relations_done += len(step.parts) or 1

        retry = LockRetry(
            lock_wait=self.settings.operation_lock_wait,
            cancel=tctx.cancel_requested,
            on_attempt=record,
            timeout=timeout,
            started=started,
        )
        try:
            retry.run(steps, execute)
        except TimedOut as exc:
            raise OperationError(str(exc)) from exc
        except Canceled as exc:
            raise OperationCanceled(str(exc)) from exc
        except LockWaitExpired as exc:
            raise OperationError(self._lock_message(cur, task, exc)) from exc

    def _lock_message(self, cur: Any, task: Task, exc: LockWaitExpired) -> str:
        """Which relations never got their lock, and who held them at the end."""
        kind = kind_of(task.worker) or ""
        modes = conflicting_modes(kind, task.options)
        target = task.target
        tries = f"{exc.attempts} attempt{'s' if exc.attempts > 1 else ''}"
        wait = f"within {self.settings.operation_lock_wait} s ({tries})"
        try:
            if exc.steps[0].relation is None:  # one statement on the target
                table = target.get("table") or target.get("index_table")
                schema = target.get("schema") if table is not None else None
                cur.execute(load_sql("lock_holders"), {**modes, "schema": schema, "table": table})
                rows = cur.fetchall()
                if not rows:
                    return f"Lock not available {wait}; its holders have ended since."
                return f"Lock not available {wait}; held by: {describe_holders(rows)}."
            names = []
            for step in exc.steps[:20]:
                params = {**modes, "schema": step.schema, "table": step.table}
                cur.execute(load_sql("lock_holders"), params)
                rows = cur.fetchall()
                names.append(describe_holders(rows) if rows else step.relation)
            more = len(exc.steps) - len(names)
            listed = ", ".join(names) + (f" and {more} more" if more > 0 else "")
            return f"Skipped {len(exc.steps)} relation(s) whose lock never came {wait}: {listed}."
        except psycopg2.Error:  # e.g. canceled meanwhile: still name what we know
            if exc.steps[0].relation is None:
                return f"Lock not available {wait}."
            return f"Skipped {len(exc.steps)} relation(s) whose lock never came {wait}."

    def relations(self, task_id: str) -> tuple[int, int] | None:
        """(done, total) relations of a running database-wide VACUUM or ANALYZE."""
        with self._lock:
            state = self._running.get(task_id)
        if state is None:
            return None
        with state.lock:
            if state.relations_total is None:
                return None
            return state.relations_done, state.relations_total

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
                    cur.execute(load_sql("cancel_backend"), {"pid": pid})
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
                        load_sql("cancel_orphan_backend"), {"pid": task.pid, "query": task.output}
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
                cur.execute(load_sql("relation_schemas"), {"names": names})
                return {relname: f"{nspname}.{relname}" for relname, nspname in cur.fetchall()}
        except psycopg2.Error as exc:  # connection lost, canceled...
            logger.debug("Task %s: cannot qualify skipped relations: %s", task_id, exc)
            return {}

    try:
        tctx.set_details(outcome.details(collector, qualify))
    except Exception:  # never hide the statement's own error
        logger.exception("Task %s: failed to record PostgreSQL's notices.", task_id)


def register_workers(
    ctx: PluginContext, settings: MaintenanceSettings | None = None
) -> OperationRunner:
    """Register the maintenance.vacuum, maintenance.analyze and maintenance.reindex workers."""
    runner = OperationRunner(ctx, settings)
    for kind in KINDS:
        ctx.add_worker(
            worker_name(kind),
            runner.run,
            conflict_keys=conflict_keys,
            cancel=runner.cancel,
            recover=runner.recover,
        )
    return runner


def is_concurrent_reindex(kind: str, task: Task) -> bool:
    """A REINDEX ... CONCURRENTLY operation."""
    return kind == "reindex" and bool(task.options.get("concurrently"))


def reindex_blockers_params(target: Mapping[str, Any]) -> dict[str, Any]:
    """Bound parameters of ``reindex_blockers`` for a task target."""
    index = target.get("index")
    table = target.get("table") if index is None else None
    return {
        "database": index is None and table is None,
        "schema": target.get("schema"),
        "table": table,
        "index": index,
    }


def pending_filter(
    dbname: str | None = None, schema: str | None = None, table: str | None = None
) -> dict[str, Any]:
    """Target filter of a /scheduled list (only the given fields)."""
    target: dict[str, Any] = {}
    for key, value in (("dbname", dbname), ("schema", schema), ("table", table)):
        if value is not None:
            target[key] = value
    return target
