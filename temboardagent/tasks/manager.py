"""TaskManager: durable task list, one scheduler thread, a bounded worker pool.

The scheduler sleeps until the next due task or until woken (new task,
cancel, end of a task), marks due tasks ``queued``, then hands eligible ones
to the pool: a free worker and no conflict with a running task nor with an
older queued task (so conflicting operations run in FIFO order and a
database-wide task is not starved by a stream of table tasks).

Every state change is a conditional UPDATE in SQLite, so a task canceled while
the scheduler picks it never runs, and a late worker never overwrites an
``aborted`` row.

A run that returns normally is ``done`` even if a cancel (or the agent's stop)
was requested meanwhile: the work was done. A run that raises is ``canceled``
(``aborted`` at shutdown) when a cancel was requested, ``failed`` otherwise;
:class:`TaskAborted` makes it ``aborted`` whatever happened.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .model import (
    FINISHED,
    ID_RE,
    Task,
    TaskAborted,
    TaskFinished,
    TaskNotFound,
    as_utc,
    from_us,
    to_us,
    utcnow,
)
from .store import TaskStore, dump_json

logger = logging.getLogger(__name__)

CRASH_REASON = "interrupted: the agent stopped while the task was running"
SHUTDOWN_REASON = "interrupted: agent shutdown"
PURGE_INTERVAL = 300.0  # seconds between two retention purges
MAX_SLEEP = 60.0  # upper bound of a scheduler sleep (clock jumps, other writers)
CANCEL_WAIT = 1.0  # seconds stop() waits after calling cancel hooks
FINISH_ATTEMPTS = 3  # tries to record the end of a task

#: Conflict keys are tuples; two keys conflict when one is a prefix of the other,
#: e.g. ``("db",)`` conflicts with ``("db", "public", "t")``.
ConflictKey = tuple
RunFunc = Callable[["TaskContext"], "str | None"]
ConflictKeysFunc = Callable[[Task], Iterable[ConflictKey]]
CancelFunc = Callable[[Task], None]
RecoverFunc = Callable[[list[Task]], None]
IdentityFunc = Callable[[], "str | None"]


class UnknownWorker(ValueError, KeyError):
    """schedule() of a worker name nobody registered."""

    def __str__(self) -> str:
        return ValueError.__str__(self)


def error_text(exc: BaseException) -> str:
    """Text stored as a task error: str(exc), else the exception class name."""
    return str(exc).rstrip() or type(exc).__name__


def conflicts(a: Iterable[ConflictKey], b: Iterable[ConflictKey]) -> bool:
    """True when a key of ``a`` is a prefix of (or equal to) a key of ``b``,
    or the other way round."""
    b = list(b)
    for ka in a:
        for kb in b:
            n = min(len(ka), len(kb))
            if ka[:n] == kb[:n]:
                return True
    return False


class TaskContext:
    """What a worker's run() receives: the task, a cancel flag, and setters."""

    def __init__(self, task: Task, store: TaskStore) -> None:
        self.task = task
        self.cancel_requested = threading.Event()
        #: set with cancel_requested when the agent stops: the task ends aborted
        self.shutdown = False
        self._store = store

    def set_pid(self, pid: int | None) -> None:
        """Record the PostgreSQL backend pid on the row (committed)."""
        self._store.set_pid(self.task.id, pid)
        self.task = replace(self.task, pid=pid)

    def set_attempts(self, attempts: int) -> None:
        """Record how many times the task ran its statement so far (committed)."""
        self._store.set_attempts(self.task.id, attempts)
        self.task = replace(self.task, attempts=attempts)

    def set_output(self, text: str | None) -> None:
        """Record output text (e.g. the SQL statement) on the row (committed)."""
        self._store.set_output(self.task.id, text)
        self.task = replace(self.task, output=text)

    def set_details(self, details: Mapping[str, Any] | None) -> None:
        """Record a JSON object on the row (committed), e.g. PostgreSQL's notices."""
        self._store.set_details(self.task.id, details)
        self.task = replace(self.task, details=None if details is None else dict(details))


@dataclass(frozen=True)
class WorkerSpec:
    """A registered worker: how to run, serialise and cancel its tasks."""

    name: str
    run: RunFunc
    conflict_keys: ConflictKeysFunc
    cancel: CancelFunc | None = None
    #: called by start() with this worker's tasks still ``doing`` from a previous
    #: process, before they are marked ``aborted`` (e.g. to cancel their backends)
    recover: RecoverFunc | None = None


@dataclass
class _Running:
    spec: WorkerSpec
    ctx: TaskContext
    keys: list[ConflictKey]


class TaskManager:
    """Schedule, list, run and cancel tasks persisted in an SQLite file.

    schedule/get/list/cancel are thread-safe and work whether the manager is
    started or not; only a started manager runs tasks. Run one started
    manager per file.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        workers: int = 4,
        retention: timedelta = timedelta(days=7),
        identity: IdentityFunc | None = None,
    ) -> None:
        """``identity`` returns the PostgreSQL system identifier recorded on each
        new task (None when unknown); see :class:`TaskAborted`."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.path = Path(path)
        self.size = workers
        self.retention = retention
        self.identity = identity
        self.store = TaskStore(self.path)
        self._workers: dict[str, WorkerSpec] = {}
        self._lock = threading.Lock()
        # Notified each time a running task ends.
        self._ended = threading.Condition(self._lock)
        self._running: dict[str, _Running] = {}
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._queue: queue.SimpleQueue[_Running | None] | None = None
        self._last_purge: float | None = None
        self._unknown_logged: set[str] = set()

    # Registration

    def register_worker(
        self,
        name: str,
        run: RunFunc,
        *,
        conflict_keys: ConflictKeysFunc,
        cancel: CancelFunc | None = None,
        recover: RecoverFunc | None = None,
    ) -> None:
        """Register the callables behind tasks of worker ``name``.

        Only before :meth:`start` (its recovery must see every worker): raises
        RuntimeError afterwards, ValueError for a name already registered.
        """
        if self.started:
            raise RuntimeError(
                f"task worker {name!r} registered after the task manager started:"
                " register workers in Plugin.load()"
            )
        if name in self._workers:
            raise ValueError(f"task worker {name!r} is already registered")
        self._workers = {
            **self._workers,
            name: WorkerSpec(name, run, conflict_keys, cancel, recover),
        }
        self.wake()

    @property
    def worker_names(self) -> list[str]:
        return sorted(self._workers)

    # Life cycle

    @property
    def started(self) -> bool:
        return self._scheduler is not None

    def start(self) -> None:
        """Recover from the previous run, then start the scheduler and the pool."""
        if self._scheduler is not None:
            raise RuntimeError("task manager already started")
        self._recover_hooks()
        aborted, requeued = self.store.recover(to_us(utcnow()), CRASH_REASON)
        if aborted:
            logger.warning("Aborted %d task(s) interrupted by the previous agent stop.", aborted)
        if requeued:
            logger.info("Requeued %d task(s) queued before the previous agent stop.", requeued)
        try:
            self.purge()
        except Exception:
            logger.exception("Failed to purge old tasks.")
        self._stopping.clear()
        self._queue = q = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, args=(q,), name=f"tasks-worker-{i}", daemon=True)
            for i in range(self.size)
        ]
        for thread in self._threads:
            thread.start()
        self._scheduler = threading.Thread(target=self._loop, name="tasks-scheduler", daemon=True)
        self._scheduler.start()
        logger.debug("Task manager started with %d workers.", self.size)

    def _recover_hooks(self) -> None:
        """Hand tasks left ``doing`` by a previous process to their worker's
        recover hook (one call per distinct hook), before they become aborted."""
        groups: dict[RecoverFunc, list[Task]] = {}
        for task in self.store.list(statuses=["doing"]):
            spec = self._workers.get(task.worker)
            if spec is not None and spec.recover is not None:
                groups.setdefault(spec.recover, []).append(task)
        for hook, tasks in groups.items():
            try:
                hook(tasks)
            except Exception:
                logger.exception("Recovery of %d interrupted task(s) failed.", len(tasks))

    def stop(self, grace: float = 5.0) -> None:
        """Stop dispatching, let running tasks end for up to ``grace`` seconds,
        then cancel them, and mark those still running ``aborted``."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        self._stopping.set()
        self._wakeup.set()
        scheduler.join()

        deadline = time.monotonic() + grace
        with self._lock:
            self._wait_idle(deadline)
            left = list(self._running.values())
            for entry in left:
                entry.ctx.shutdown = True
                entry.ctx.cancel_requested.set()
        if left:
            logger.warning("Canceling %d task(s) still running at shutdown.", len(left))
            for entry in left:
                self._call_cancel(entry)
            with self._lock:
                self._wait_idle(time.monotonic() + CANCEL_WAIT)
                left = list(self._running.values())
                now_us = to_us(utcnow())
                for entry in left:
                    task_id = entry.ctx.task.id
                    logger.error("Task %s did not stop in time, marking aborted.", task_id)
                    try:
                        self.store.finish(task_id, "aborted", now_us, None, SHUTDOWN_REASON)
                    except Exception:
                        logger.exception("Failed to mark task %s aborted.", task_id)
                self._running.clear()
        try:
            self.store.requeue()
        except Exception:
            logger.exception("Failed to requeue queued tasks.")

        q = self._queue
        for _ in self._threads:
            q.put(None)
        for thread in self._threads:
            # Stuck threads are daemons: do not hang the shutdown on them.
            thread.join(timeout=0.5)
        self._threads = []
        self._queue = None
        self._scheduler = None
        logger.debug("Task manager stopped.")

    def close(self) -> None:
        """stop() then close the SQLite connections."""
        self.stop()
        self.store.close()

    def _wait_idle(self, deadline: float) -> None:
        # Called with self._lock held.
        while self._running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._ended.wait(remaining)

    def wake(self) -> None:
        """Make the scheduler look at the task list now."""
        self._wakeup.set()

    # Public operations

    def schedule(
        self,
        worker: str,
        target: Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        start: datetime | None = None,
        *,
        preferred_id: str | None = None,
    ) -> Task:
        """Persist a new ``todo`` task (committed before returning).

        ``start`` None means now; a naive datetime is taken as UTC. Raises
        UnknownWorker (a ValueError and KeyError), TaskExists for a pending
        duplicate, ValueError for a malformed ``preferred_id``.
        """
        if worker not in self._workers:
            raise UnknownWorker(f"unknown task worker: {worker}")
        if not isinstance(target, Mapping):
            raise TypeError("task target must be a mapping")
        if options is not None and not isinstance(options, Mapping):
            raise TypeError("task options must be a mapping")
        if preferred_id is not None and not ID_RE.match(preferred_id):
            raise ValueError(f"invalid task id: {preferred_id!r}")
        identifier = self._identify()
        now = utcnow()
        start = now if start is None else as_utc(start)
        task = self.store.insert(
            worker=worker,
            target=dump_json(target),
            options=dump_json(options or {}),
            start_us=to_us(start),
            created_us=to_us(now),
            preferred_id=preferred_id,
            system_identifier=identifier,
        )
        logger.info(
            "Scheduled task %s %s %s %s at %s.",
            task.id,
            worker,
            dump_json(task.target),
            dump_json(task.options),
            task.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self._wakeup.set()
        return task

    def _identify(self) -> str | None:
        if self.identity is None:
            return None
        try:
            return self.identity()
        except Exception as exc:
            logger.warning("Cannot read the PostgreSQL system identifier: %s", exc)
            return None

    def get(self, task_id: str) -> Task | None:
        """The task with this id, or None."""
        return self.store.get(task_id)

    def list(
        self,
        *,
        workers: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        finished_since: datetime | None = None,
        target: Mapping[str, Any] | None = None,
        order: str = "start",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]:
        """Tasks filtered by worker names, statuses and target fields.

        ``finished_since`` widens the status filter to tasks finished at or
        after that time. ``target`` maps target fields to values (equality;
        None matches JSON null). ``order`` is "start" (start, then created) or
        "-created".
        """
        return self.store.list(
            workers=workers,
            statuses=statuses,
            finished_since_us=None if finished_since is None else to_us(finished_since),
            target=target,
            order=order,
            limit=limit,
            offset=offset,
        )

    def cancel(self, task_id: str) -> Task:
        """Cancel a task: todo/queued at once, doing via its worker's cancel.

        Returns the task as of the call (a running one is still ``doing``; it
        ends ``canceled`` when its run() returns). Raises TaskNotFound,
        TaskFinished; an error of the worker's cancel hook propagates.
        """
        while True:
            if self.store.cancel_pending(task_id, to_us(utcnow())):
                self._wakeup.set()
                task = self.store.get(task_id)
                if task is None:  # pragma: no cover (purged meanwhile)
                    raise TaskNotFound(task_id)
                logger.info("Canceled task %s %s.", task_id, task.worker)
                return task
            with self._lock:
                # Claiming a task and registering it as running happen under
                # this lock: a doing row here is in self._running (or ended).
                task = self.store.get(task_id)
                if task is None:
                    raise TaskNotFound(task_id)
                if task.status in FINISHED:
                    raise TaskFinished(task)
                if task.status != "doing":
                    continue  # requeued meanwhile, cancel it as pending
                entry = self._running.get(task_id)
                if entry is not None:
                    entry.ctx.cancel_requested.set()
            if entry is None:
                logger.warning("Task %s is doing but not run by this process.", task_id)
                return task
            logger.info("Canceling running task %s %s.", task_id, task.worker)
            if entry.spec.cancel is not None:
                entry.spec.cancel(task)
            return task

    def purge(self, now: datetime | None = None) -> int:
        """Delete tasks finished more than ``retention`` before ``now``."""
        self._last_purge = time.monotonic()
        now = utcnow() if now is None else as_utc(now)
        count = self.store.purge(to_us(now - self.retention))
        if count:
            logger.info("Purged %d finished task(s) older than %s.", count, self.retention)
        return count

    # Scheduler

    def _loop(self) -> None:
        errors = 0
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                timeout = self._tick()
                errors = 0
            except Exception:
                errors += 1
                logger.exception("Task scheduler error.")
                timeout = min(2.0**errors, 30.0)
            self._wakeup.wait(timeout)

    def _tick(self) -> float:
        """One scheduling pass; returns seconds to sleep until the next one."""
        if self._last_purge is None or time.monotonic() - self._last_purge >= PURGE_INTERVAL:
            try:
                self.purge()
            except Exception:
                logger.exception("Failed to purge old tasks.")
        names = self.worker_names
        now_us = to_us(utcnow())
        for entry in self._dispatch(now_us, names):
            delay = (entry.ctx.task.started - entry.ctx.task.start).total_seconds()
            logger.info(
                "Starting task %s %s (%.3fs after its start time).",
                entry.ctx.task.id,
                entry.spec.name,
                delay,
            )
            self._queue.put(entry)
        timeout = MAX_SLEEP
        if self._last_purge is not None:
            timeout = min(timeout, self._last_purge + PURGE_INTERVAL - time.monotonic())
        next_us = self.store.next_start(now_us, names)
        if next_us is not None:
            timeout = min(timeout, (next_us - to_us(utcnow())) / 1e6)
        return max(timeout, 0.0005)

    def _dispatch(self, now_us: int, names: list[str]) -> list[_Running]:
        """Mark due tasks queued and claim eligible ones for free workers, FIFO.

        One SQLite transaction (one fsync) for the whole pass. Runs under
        self._lock so that cancel() sees a claimed task as running.
        """
        claimed: list[tuple[Task, WorkerSpec, list[ConflictKey]]] = []
        with self._lock:
            if self._stopping.is_set():
                return []
            free = self.size - len(self._running)
            reserved = [entry.keys for entry in self._running.values()]
            with self.store.transaction():
                self.store.mark_due(now_us, names)
                if free > 0:
                    queued = self.store.queued()
                else:
                    queued = []
                started_us = to_us(utcnow())
                for task in queued:
                    spec = self._workers.get(task.worker)
                    if spec is None:
                        if task.id not in self._unknown_logged:
                            self._unknown_logged.add(task.id)
                            logger.warning(
                                "Task %s waits for unknown worker %s.", task.id, task.worker
                            )
                        continue
                    try:
                        keys = [tuple(key) for key in spec.conflict_keys(task)]
                    except Exception as exc:
                        logger.exception("Failed to compute conflict keys of task %s.", task.id)
                        error = f"conflict keys: {error_text(exc)}"
                        self.store.fail_pending(task.id, started_us, error)
                        continue
                    blocked = any(conflicts(keys, other) for other in reserved)
                    reserved.append(keys)
                    if blocked:
                        continue
                    if self.store.claim(task.id, started_us):
                        claimed.append((task, spec, keys))
                        if len(claimed) >= free:
                            break
            # Committed: register as running before cancel() may look.
            started = from_us(started_us)
            entries = []
            for task, spec, keys in claimed:
                doing = replace(task, status="doing", started=started)
                entry = _Running(spec, TaskContext(doing, self.store), keys)
                self._running[task.id] = entry
                entries.append(entry)
        return entries

    # Workers

    def _work(self, q: queue.SimpleQueue[_Running | None]) -> None:
        while True:
            entry = q.get()
            if entry is None:
                return
            try:
                self._execute(entry)
            except BaseException:  # never let a pool thread die
                logger.exception("Task worker error.")

    def _execute(self, entry: _Running) -> None:
        ctx = entry.ctx
        task = ctx.task
        status, output, error = "done", None, None
        t0 = time.monotonic()
        try:
            result = entry.spec.run(ctx)
            if result is not None:
                output = str(result)
        except TaskAborted as exc:
            status, error = "aborted", error_text(exc)
        except BaseException as exc:  # recorded as the task error
            status, error = "failed", error_text(exc)
        finally:
            status = self._finish(entry, status, output, error)
        log = logger.info if status == "done" else logger.warning
        log(
            "Task %s %s %s in %.3fs%s",
            task.id,
            task.worker,
            status,
            time.monotonic() - t0,
            f": {error}" if error else ".",
        )

    def _finish(self, entry: _Running, status: str, output: str | None, error: str | None) -> str:
        task_id = entry.ctx.task.id
        with self._lock:
            # Only an interrupted run (it raised) ends canceled/aborted: a run
            # that completed despite a late cancel did the work.
            if status == "failed" and entry.ctx.shutdown:
                status, error = "aborted", SHUTDOWN_REASON
            elif status == "failed" and entry.ctx.cancel_requested.is_set():
                status = "canceled"
            try:
                for attempt in range(FINISH_ATTEMPTS):
                    try:
                        self.store.finish(task_id, status, to_us(utcnow()), output, error)
                        break
                    except Exception:
                        logger.exception("Failed to record end of task %s.", task_id)
                        if attempt + 1 < FINISH_ATTEMPTS:
                            time.sleep(0.2)
            finally:
                if self._running.get(task_id) is entry:
                    del self._running[task_id]
                self._ended.notify_all()
        self._wakeup.set()
        return status

    def _call_cancel(self, entry: _Running) -> None:
        if entry.spec.cancel is None:
            return
        task_id = entry.ctx.task.id
        try:
            entry.spec.cancel(self.store.get(task_id) or entry.ctx.task)
        except Exception:
            logger.exception("Failed to cancel task %s.", task_id)


class TaskFacade:
    """A :class:`TaskManager`'s schedule, get, list and cancel, and nothing else.

    What plugins get as ``PluginContext.tasks``: they never start or stop the
    manager, register workers behind the agent's back, or reach the store.
    """

    __slots__ = ("schedule", "get", "list", "cancel")

    def __init__(self, manager: TaskManager) -> None:
        self.schedule = manager.schedule
        self.get = manager.get
        self.list = manager.list
        self.cancel = manager.cancel
