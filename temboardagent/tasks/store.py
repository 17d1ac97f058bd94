"""SQLite persistence of tasks.

One connection per thread (WAL lets readers run while a writer commits),
``synchronous=FULL`` so an acknowledged row survives a power loss. Writers of
this process take turns on a lock; ``busy_timeout`` covers other processes.
Times are stored as integer microseconds since the epoch (UTC): exact
equality for duplicate detection and correct ordering.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .model import FINISHED, ID_RE, PENDING, STATUSES, Task, TaskExists, from_us

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id       TEXT PRIMARY KEY,
    worker   TEXT NOT NULL,
    target   TEXT NOT NULL,   -- JSON object
    options  TEXT NOT NULL,   -- JSON object
    start    INTEGER NOT NULL,  -- microseconds since epoch, UTC
    status   TEXT NOT NULL,
    created  INTEGER NOT NULL,
    started  INTEGER,
    finished INTEGER,
    pid      INTEGER,
    output   TEXT,
    error    TEXT
);
-- scheduler (due todo, next start), duplicate check and pending lists: these
-- stay cheap however long the history is.
CREATE INDEX IF NOT EXISTS tasks_status_worker_start
    ON tasks (status, worker, start, created);
-- per-worker lists and history
CREATE INDEX IF NOT EXISTS tasks_worker_created ON tasks (worker, created);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created);
-- retention purge
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished)
    WHERE finished IS NOT NULL;
"""

#: columns added after the first release: (name, SQL type), added at start-up when missing
ADDED_COLUMNS = (
    ("details", "TEXT"),  # JSON object reported by the worker
    ("system_identifier", "TEXT"),  # PostgreSQL cluster the task is for (NULL: no check)
)

COLUMNS = (
    "id, worker, target, options, start, status, created, started, finished, pid, output, error"
    ", details, system_identifier"
)

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ORDERS = {
    "start": "start ASC, created ASC, id ASC",
    "-created": "created DESC, id DESC",
}


def dump_json(value: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys, compact) so equal objects compare equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def _row_to_task(row: Sequence[Any]) -> Task:
    return Task(
        id=row[0],
        worker=row[1],
        target=json.loads(row[2]),
        options=json.loads(row[3]),
        start=from_us(row[4]),
        status=row[5],
        created=from_us(row[6]),
        started=from_us(row[7]),
        finished=from_us(row[8]),
        pid=row[9],
        output=row[10],
        error=row[11],
        details=None if row[12] is None else json.loads(row[12]),
        system_identifier=row[13],
    )


class TaskStore:
    """The ``tasks`` table in an SQLite file, usable from any thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._conns_lock = threading.Lock()
        # Writers of this process queue on this lock rather than in SQLite's
        # busy handler, which sleeps by steps of milliseconds.
        self._write_lock = threading.RLock()
        self._generation = 0
        try:
            self._initialise()
        except (sqlite3.Error, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"temboard.home: task list {self.path}: {reason}") from None

    def _initialise(self) -> None:
        if not self.path.exists():
            # Create the file private to the agent user.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        mode = self._conn().execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            logger.warning("SQLite refused WAL mode for %s (%s).", self.path, mode)
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            self._add_missing_columns(conn)
            # Written at every start, so an unwritable file stops the start here
            # (a newer agent's file keeps its version).
            conn.execute(f"PRAGMA user_version={max(version, SCHEMA_VERSION)}")

    @staticmethod
    def _add_missing_columns(conn: sqlite3.Connection) -> None:
        """Migrate a task list of an older agent: add the columns it lacks (NULL)."""
        present = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
        for name, sql_type in ADDED_COLUMNS:
            if name not in present:
                conn.execute(f"ALTER TABLE tasks ADD COLUMN {name} {sql_type}")

    # Connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # autocommit; explicit BEGIN IMMEDIATE
            check_same_thread=False,  # only so close() may run elsewhere
        )
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=FULL")
        # One connection per thread (up to the HTTP pool size): keep each cache small.
        conn.execute("PRAGMA cache_size=-1024")
        return conn

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            local.conn = None
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = self._connect()
            local.conn = conn
            local.generation = self._generation
            with self._conns_lock:
                for thread, other in list(self._conns.items()):
                    if not thread.is_alive():
                        other.close()
                        del self._conns[thread]
                self._conns[threading.current_thread()] = conn
        return conn

    def close(self) -> None:
        """Close every connection; a later call reopens one per thread."""
        with self._conns_lock:
            self._generation += 1
            for conn in self._conns.values():
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover
                    pass
            self._conns.clear()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once, so read-then-write is atomic.

        Nested use on the same thread joins the outer transaction.
        """
        with self._write_lock:
            conn = self._conn()
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement, return the changed row count."""
        with self._write_lock:
            return self._conn().execute(sql, params).rowcount

    # Reads

    def get(self, task_id: str) -> Task | None:
        row = (
            self._conn().execute(f"SELECT {COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        )
        return None if row is None else _row_to_task(row)

    def list(
        self,
        *,
        workers: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        finished_since_us: int | None = None,
        target: Mapping[str, Any] | None = None,
        order: str = "start",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]:
        """Tasks matching every filter given.

        With ``finished_since_us``, a task matches the status filter when its
        status is one of ``statuses`` or it finished at or after that time
        (each side served by an index: SQLite unions the two lookups).
        """
        where: list[str] = []
        params: list[Any] = []
        if workers is not None:
            workers = [workers] if isinstance(workers, str) else list(workers)
            if not workers:
                return []
            # With finished_since_us, "+" keeps SQLite off the (worker, created)
            # index, which would walk the worker's whole history: the two
            # branches of the status filter are the selective indexes then.
            plus = "+" if finished_since_us is not None else ""
            where.append(f"{plus}worker IN {_in(workers)}")
            params.extend(workers)
        if statuses is not None:
            statuses = [statuses] if isinstance(statuses, str) else list(statuses)
            unknown = set(statuses) - set(STATUSES)
            if unknown:
                raise ValueError(f"unknown task status: {', '.join(sorted(unknown))}")
        status_terms: list[str] = []
        if statuses:
            status_terms.append(f"status IN {_in(statuses)}")
            params.extend(statuses)
        if finished_since_us is not None:
            status_terms.append("finished >= ?")
            params.append(int(finished_since_us))
        if status_terms:
            where.append("(" + " OR ".join(status_terms) + ")")
        elif statuses is not None:
            return []
        for key, value in (target or {}).items():
            if not _KEY_RE.match(key):
                raise ValueError(f"invalid target field: {key!r}")
            path = f"$.{key}"
            if value is None:
                where.append("json_type(target, ?) = 'null'")
                params.append(path)
            elif isinstance(value, (str, int, float)):
                # json_extract returns SQL values; JSON true/false are 1/0.
                where.append("json_extract(target, ?) = ?")
                params.extend([path, int(value) if isinstance(value, bool) else value])
            else:
                raise ValueError(f"unsupported target filter value for {key!r}")
        if order not in _ORDERS:
            raise ValueError(f"invalid order: {order!r}")
        sql = f"SELECT {COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {_ORDERS[order]} LIMIT ? OFFSET ?"
        params.extend([-1 if limit is None else int(limit), int(offset)])
        return [_row_to_task(row) for row in self._conn().execute(sql, params)]

    def queued(self) -> list[Task]:
        """Queued tasks, FIFO by start then created (fetched at once: callers
        update rows while walking the list)."""
        cursor = self._conn().execute(
            f"SELECT {COLUMNS} FROM tasks WHERE status = 'queued' ORDER BY start, created, id"
        )
        return [_row_to_task(row) for row in cursor.fetchall()]

    def next_start(self, after_us: int | None, workers: Sequence[str]) -> int | None:
        """Earliest start of a todo task of ``workers`` (later than ``after_us``)."""
        if not workers:
            return None
        sql = f"SELECT MIN(start) FROM tasks WHERE status = 'todo' AND worker IN {_in(workers)}"
        params: list[Any] = list(workers)
        if after_us is not None:
            sql += " AND start > ?"
            params.append(after_us)
        return self._conn().execute(sql, params).fetchone()[0]

    # Writes

    def insert(
        self,
        *,
        worker: str,
        target: str,
        options: str,
        start_us: int,
        created_us: int,
        preferred_id: str | None = None,
        system_identifier: str | None = None,
    ) -> Task:
        """Insert a todo task; TaskExists if an identical one is pending.

        ``target`` and ``options`` are canonical JSON (see :func:`dump_json`).
        """
        with self.transaction() as conn:
            row = conn.execute(
                f"SELECT id FROM tasks WHERE status IN {_in(PENDING)} AND start = ? "
                "AND worker = ? AND target = ? AND options = ? LIMIT 1",
                (*PENDING, start_us, worker, target, options),
            ).fetchone()
            if row is not None:
                raise TaskExists(row[0])
            task_id = preferred_id
            while task_id is None or self._id_taken(conn, task_id):
                task_id = secrets.token_hex(4)
            conn.execute(
                "INSERT INTO tasks (id, worker, target, options, start, status, "
                "created, system_identifier) VALUES (?, ?, ?, ?, ?, 'todo', ?, ?)",
                (task_id, worker, target, options, start_us, created_us, system_identifier),
            )
        return Task(
            id=task_id,
            worker=worker,
            target=json.loads(target),
            options=json.loads(options),
            start=from_us(start_us),
            status="todo",
            created=from_us(created_us),
            system_identifier=system_identifier,
        )

    @staticmethod
    def _id_taken(conn: sqlite3.Connection, task_id: str) -> bool:
        if not ID_RE.match(task_id):
            raise ValueError(f"invalid task id: {task_id!r}")
        sql = "SELECT 1 FROM tasks WHERE id = ?"
        return conn.execute(sql, (task_id,)).fetchone() is not None

    def recover(self, now_us: int, reason: str) -> tuple[int, int]:
        """After a stop or crash: doing -> aborted, queued -> todo."""
        with self.transaction() as conn:
            aborted = conn.execute(
                "UPDATE tasks SET status = 'aborted', finished = ?, error = ? "
                "WHERE status = 'doing'",
                (now_us, reason),
            ).rowcount
            requeued = conn.execute(
                "UPDATE tasks SET status = 'todo' WHERE status = 'queued'"
            ).rowcount
        return aborted, requeued

    def requeue(self) -> int:
        """queued -> todo (nobody will pick them until the next start)."""
        return self._execute("UPDATE tasks SET status = 'todo' WHERE status = 'queued'")

    def mark_due(self, now_us: int, workers: Sequence[str]) -> int:
        """todo -> queued for due tasks of ``workers``."""
        if not workers:
            return 0
        return self._execute(
            "UPDATE tasks SET status = 'queued' WHERE status = 'todo' AND start <= ? "
            f"AND worker IN {_in(workers)}",
            (now_us, *workers),
        )

    def claim(self, task_id: str, now_us: int) -> bool:
        """todo/queued -> doing, unless it changed meanwhile (e.g. canceled)."""
        return (
            self._execute(
                "UPDATE tasks SET status = 'doing', started = ? "
                "WHERE id = ? AND status IN ('todo', 'queued')",
                (now_us, task_id),
            )
            == 1
        )

    def cancel_pending(self, task_id: str, now_us: int) -> bool:
        """todo/queued -> canceled, unless it is running or finished."""
        return (
            self._execute(
                "UPDATE tasks SET status = 'canceled', finished = ? "
                "WHERE id = ? AND status IN ('todo', 'queued')",
                (now_us, task_id),
            )
            == 1
        )

    def fail_pending(self, task_id: str, now_us: int, error: str) -> bool:
        """todo/queued -> failed without running (e.g. conflict_keys raised)."""
        return (
            self._execute(
                "UPDATE tasks SET status = 'failed', finished = ?, error = ? "
                "WHERE id = ? AND status IN ('todo', 'queued')",
                (now_us, error, task_id),
            )
            == 1
        )

    def set_pid(self, task_id: str, pid: int | None) -> None:
        self._execute("UPDATE tasks SET pid = ? WHERE id = ? AND status = 'doing'", (pid, task_id))

    def set_output(self, task_id: str, output: str | None) -> None:
        self._execute(
            "UPDATE tasks SET output = ? WHERE id = ? AND status = 'doing'",
            (output, task_id),
        )

    def set_details(self, task_id: str, details: Mapping[str, Any] | None) -> None:
        self._execute(
            "UPDATE tasks SET details = ? WHERE id = ? AND status = 'doing'",
            (None if details is None else dump_json(details), task_id),
        )

    def finish(
        self,
        task_id: str,
        status: str,
        now_us: int,
        output: str | None = None,
        error: str | None = None,
    ) -> bool:
        """doing -> a finished status; output None keeps the one already set."""
        assert status in FINISHED
        return (
            self._execute(
                "UPDATE tasks SET status = ?, finished = ?, "
                "output = COALESCE(?, output), error = ? "
                "WHERE id = ? AND status = 'doing'",
                (status, now_us, output, error, task_id),
            )
            == 1
        )

    def purge(self, before_us: int) -> int:
        """Delete tasks finished before ``before_us``."""
        # Only finished rows have a finished time.
        return self._execute("DELETE FROM tasks WHERE finished < ?", (before_us,))
