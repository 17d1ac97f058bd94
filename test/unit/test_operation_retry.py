"""OperationRunner's lock retries with a fake PostgreSQL: attempts, messages, per relation."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timezone

import psycopg2.errors
import pytest
from psycopg2 import sql

from temboardagent.plugins.maintenance import runner as runner_module
from temboardagent.plugins.maintenance.operations import make_target
from temboardagent.plugins.maintenance.runner import OperationError, OperationRunner
from temboardagent.plugins.maintenance.settings import MaintenanceSettings
from temboardagent.plugins.maintenance.sql import load_sql
from temboardagent.plugins.maintenance.statements import render_statement
from temboardagent.tasks import Task

UTC = timezone.utc


class Backend:
    """Answers the runner's queries; ``locked`` relations always time out on their lock."""

    def __init__(self, relations=(), locked=(), holders=()):
        self.relations = list(relations)
        self.locked = set(locked)
        self.holders = list(holders)
        self.executed = []
        self.params = []
        self.connects = []


class Cursor:
    def __init__(self, backend):
        self.backend = backend
        self.rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        backend = self.backend
        if query == load_sql("backend_pid"):
            self.rows = [(7,)]
        elif query == load_sql("database_relations"):
            self.rows = backend.relations
        elif query == load_sql("lock_holders"):
            backend.params.append(params)
            self.rows = [r for r in backend.holders if r[1] == params["table"]] or (
                backend.holders if params["table"] is None else []
            )
        elif query == load_sql("set_statement_timeout"):
            backend.params.append(params)
        elif isinstance(query, str):  # e.g. english_messages
            self.rows = []
        else:
            text = query.as_string(None)
            backend.executed.append(text)
            if any(name in text for name in backend.locked):
                raise psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout")

    def fetchone(self):
        return self.rows[0]

    def fetchall(self):
        return list(self.rows)


class Conn:
    def __init__(self, backend):
        self.backend = backend

    def cursor(self):
        return Cursor(self.backend)


class Ctx:
    def __init__(self, backend):
        self.backend = backend

    @contextmanager
    def connect(self, dbname=None, **kwargs):
        self.backend.connects.append(kwargs)
        yield Conn(self.backend)


class TaskCtx:
    def __init__(self, task):
        self.task = task
        self.cancel_requested = threading.Event()
        self.attempts = []
        self.output = None

    def set_pid(self, pid):
        pass

    def set_output(self, text):
        self.output = text

    def set_attempts(self, attempts):
        self.attempts.append(attempts)


@pytest.fixture(autouse=True)
def plain_identifiers(monkeypatch):
    """Render identifiers without a connection (sql.Identifier needs one)."""
    monkeypatch.setattr(sql.Composed, "as_string", lambda self, ctx: render_statement(self))


def task(target, worker="maintenance.vacuum", options=None):
    now = datetime.now(UTC)
    return Task(
        id="abcd0123",
        worker=worker,
        target=target,
        options={"mode": "full"} if options is None else options,
        start=now,
        status="doing",
        created=now,
    )


def runner(backend, lock_wait=0, lock_timeout=250):
    settings = MaintenanceSettings(
        operation_lock_wait=lock_wait, operation_lock_timeout=lock_timeout
    )
    return OperationRunner(Ctx(backend), settings)


def test_lock_timeout_on_the_worker_connection():
    backend = Backend()
    tctx = TaskCtx(task(make_target("db", "s", "t")))
    assert runner(backend).run(tctx) == 'VACUUM (FULL) "s"."t"'
    assert backend.connects[0]["lock_timeout"] == 250
    assert tctx.attempts == [1]


def test_concurrent_reindex_has_no_lock_timeout():
    backend = Backend()
    target = make_target("db", "s", None, "i", "t")
    tctx = TaskCtx(task(target, "maintenance.reindex", {"concurrently": True}))
    assert runner(backend).run(tctx) == 'REINDEX INDEX CONCURRENTLY "s"."i"'
    assert backend.connects[0]["lock_timeout"] == 0


def test_lock_never_came_names_relation_and_pids():
    backend = Backend(locked={'"s"."t"'}, holders=[("s", "t", [11, 12], False)])
    tctx = TaskCtx(task(make_target("db", "s", "t")))
    with pytest.raises(OperationError) as info:
        runner(backend).run(tctx)
    assert str(info.value) == (
        'Lock not available within 0 s (1 attempt); held by: "s"."t" (pids 11, 12).'
    )
    params = backend.params[-1]
    assert (params["schema"], params["table"]) == ("s", "t")
    assert "AccessShareLock" in params["table_modes"]  # VACUUM FULL conflicts with readers


def test_index_target_looks_at_its_table():
    backend = Backend(locked={"REINDEX"})
    target = make_target("db", "s", None, "i", "t")
    with pytest.raises(OperationError, match="its holders have ended since"):
        runner(backend).run(TaskCtx(task(target, "maintenance.reindex", {})))
    assert backend.params[-1]["table"] == "t"


def test_database_vacuum_runs_per_relation_and_names_skipped():
    backend = Backend(
        relations=[("public", "a"), ("public", "busy"), ("public", "z")],
        locked={'"busy"'},
        holders=[("public", "busy", [99], False)],
    )
    tctx = TaskCtx(task(make_target("db"), options={"mode": "analyze"}))
    with pytest.raises(OperationError) as info:
        runner(backend).run(tctx)
    # One statement for the batch; its lock did not come: each relation on its own.
    assert backend.executed == [
        'VACUUM (ANALYZE) "public"."a", "public"."busy", "public"."z"',
        'VACUUM (ANALYZE) "public"."a"',
        'VACUUM (ANALYZE) "public"."busy"',
        'VACUUM (ANALYZE) "public"."z"',
    ]
    assert tctx.output == "VACUUM (ANALYZE)"
    assert str(info.value) == (
        "Skipped 1 relation(s) whose lock never came within 0 s (1 attempt): "
        '"public"."busy" (pid 99).'
    )


def test_timeout_sets_statement_timeout():
    backend = Backend()
    tctx = TaskCtx(task(make_target("db", "s", "t"), options={"mode": "", "timeout": 30}))
    runner(backend).run(tctx)
    ms = int(backend.params[0]["ms"])
    assert 0 < ms <= 30000


def test_relations_are_batched(monkeypatch):
    monkeypatch.setattr(runner_module, "RELATIONS_PER_STATEMENT", 2)
    backend = Backend(relations=[("s", "a"), ("s", "b"), ("s", "c")])
    tctx = TaskCtx(task(make_target("db"), worker="maintenance.analyze", options={}))
    assert runner(backend).run(tctx) == "ANALYZE"
    assert backend.executed == ['ANALYZE "s"."a", "s"."b"', 'ANALYZE "s"."c"']


def test_vanished_relation_is_skipped(monkeypatch):
    # A table dropped after the list was read fails its batch; alone it is skipped,
    # as PostgreSQL's database-wide VACUUM skips it.
    backend = Backend(relations=[("s", "a"), ("s", "gone"), ("s", "c")])
    original = Cursor.execute

    def execute(self, query, params=None):
        if isinstance(query, sql.Composable) and '"gone"' in query.as_string(None):
            self.backend.executed.append(query.as_string(None))
            raise psycopg2.errors.UndefinedTable('relation "s.gone" does not exist')
        return original(self, query, params)

    monkeypatch.setattr(Cursor, "execute", execute)
    tctx = TaskCtx(task(make_target("db"), options={"mode": ""}))
    assert runner(backend).run(tctx) == "VACUUM"
    assert backend.executed[1:] == ['VACUUM "s"."a"', 'VACUUM "s"."gone"', 'VACUUM "s"."c"']
