"""The runner of maintenance operations: execution, cancel, orphan recovery.

The worker opens a dedicated connection (not pooled, not read-only, no
statement timeout, ``lock_timeout`` = ``operation_lock_timeout``, closed when
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

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from ...cluster import check_cluster
from ...errors import HTTPError
from .. import PluginContext
from . import outcome, privileges
from .lockwait import (
    Canceled,
    LockRetry,
    LockWaitExpired,
    Step,
    TimedOut,
    conflicting_modes,
    describe_holders,
)
from .operations import KINDS, conflict_keys, kind_of, reindex_blockers_params, worker_name
from .settings import MaintenanceSettings
from .sql import load_sql
from .statements import (
    OptionError,
    build_relations_statement,
    build_statement,
    quote_ident,
    runs_per_relation,
    uses_lock_timeout,
)

if TYPE_CHECKING:  # pragma: no cover
    from ...tasks import Task, TaskContext

logger = logging.getLogger(__name__)

#: relations of a database-wide VACUUM or ANALYZE per statement (each is still
#: processed in its own transaction; the statement's fixed costs, such as VACUUM's
#: update of datfrozenxid, are paid once per batch)
RELATIONS_PER_STATEMENT = 50

#: how the cancel hook retries pg_cancel_backend while our statement runs
CANCEL_INTERVAL = 0.05  # seconds
CANCEL_DEADLINE = 2.0  # seconds


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
            tctx.set_attempts(attempt)

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
