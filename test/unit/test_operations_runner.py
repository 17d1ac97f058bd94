"""OperationRunner with a fake PostgreSQL: cancel races, error texts, connections."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from temboardagent.errors import ServiceUnavailable
from temboardagent.plugins.maintenance import runner as runner_module
from temboardagent.plugins.maintenance.operations import make_target
from temboardagent.plugins.maintenance.runner import (
    OperationCanceled,
    OperationError,
    OperationRunner,
)
from temboardagent.plugins.maintenance.sql import load_sql
from temboardagent.tasks import Task

UTC = timezone.utc
PID = 4242


#: deadline that only catches a hang, even on a loaded machine
HANG = 60.0


class FakeServer:
    """One backend: a statement 'arrives' ``latency`` s after execute() is called
    and once ``arrive_after_cancels`` cancels were sent (or ``hold`` is set, when
    given), then runs until canceled or ``duration`` elapses. A cancel only hits
    a statement that has arrived (like pg_cancel_backend)."""

    def __init__(
        self,
        latency: float = 0.0,
        duration: float = 30.0,
        arrive_after_cancels: int = 0,
        hold: threading.Event | None = None,
    ) -> None:
        self.latency = latency
        self.duration = duration
        self.arrive_after_cancels = arrive_after_cancels
        self.hold = hold
        self.arrived = threading.Event()
        self.cancel_hit = threading.Event()
        self.cancels = 0
        self.executed: list[str] = []
        self.alive = True
        self.connects: list[dict] = []


class FakeCursor:
    def __init__(self, server: FakeServer, role: str) -> None:
        self.server = server
        self.role = role
        self._row = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query, params=None):
        server = self.server
        if query == load_sql("backend_pid"):
            self._row = (PID,)
            return
        if query == load_sql("english_messages"):
            return
        if query == load_sql("cancel_backend"):
            assert params == {"pid": PID}
            server.cancels += 1
            if server.arrived.is_set():
                server.cancel_hit.set()
            self._row = (True,) if server.alive else None
            return
        text = query.as_string(None) if isinstance(query, sql.Composable) else query
        server.executed.append(text)
        time.sleep(server.latency)
        deadline = time.monotonic() + HANG
        while server.cancels < server.arrive_after_cancels and time.monotonic() < deadline:
            time.sleep(0.005)
        if server.hold is not None:
            server.hold.wait(HANG)
        server.arrived.set()
        if server.cancel_hit.wait(server.duration):
            raise psycopg2.errors.QueryCanceled("canceling statement due to user request\n")

    def fetchone(self):
        return self._row


class FakeConn:
    def __init__(self, server: FakeServer, role: str) -> None:
        self.server = server
        self.role = role

    def cursor(self):
        return FakeCursor(self.server, self.role)


class FakeCtx:
    def __init__(self, server: FakeServer, fail_connect: Exception | None = None) -> None:
        self.server = server
        self.fail_connect = fail_connect

    @contextmanager
    def connect(self, dbname=None, **kwargs):
        self.server.connects.append(dict(kwargs, dbname=dbname))
        if self.fail_connect is not None and dbname is not None:
            raise self.fail_connect
        yield FakeConn(self.server, "worker" if dbname else "hook")


class FakeTaskContext:
    def __init__(self, task: Task) -> None:
        self.task = task
        self.cancel_requested = threading.Event()
        self.pid = None
        self.output = None
        self.pid_set = threading.Event()

    def set_pid(self, pid):
        self.pid = pid
        self.pid_set.set()

    def set_output(self, text):
        self.output = text

    def set_attempts(self, attempts):
        self.attempts = attempts

    def set_details(self, details):
        self.details = details


def make_task(**kw) -> Task:
    now = datetime.now(UTC)
    fields = dict(
        id="abcd0123",
        worker="maintenance.vacuum",
        target=make_target("db", "s", "t"),
        options={"mode": "full"},
        start=now,
        status="doing",
        created=now,
    )
    fields.update(kw)
    return Task(**fields)


@pytest.fixture(autouse=True)
def plain_statements(monkeypatch):
    """sql.Identifier needs a real connection to render; use plain SQL here."""
    monkeypatch.setattr(
        runner_module,
        "build_statement",
        lambda kind, target, options=None: sql.SQL(f"{kind.upper()} {target['table'] or ''}"),
    )


def run_in_thread(runner, tctx):
    outcome = {}

    def target():
        try:
            outcome["result"] = runner.run(tctx)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def test_run_ok():
    server = FakeServer(duration=0.01)
    runner = OperationRunner(FakeCtx(server))
    tctx = FakeTaskContext(make_task())
    assert runner.run(tctx) == "VACUUM t"
    assert tctx.output == "VACUUM t" and tctx.pid == PID
    worker_connect = server.connects[0]
    assert worker_connect == {
        "dbname": "db",
        "pooled": False,
        "read_only": False,
        "statement_timeout": 0,
        "lock_timeout": 2000,  # operation_lock_timeout's default
    }
    assert runner._running == {}


def test_cancel_requested_before_execute_never_runs():
    server = FakeServer()
    runner = OperationRunner(FakeCtx(server))
    tctx = FakeTaskContext(make_task())
    tctx.cancel_requested.set()
    with pytest.raises(OperationCanceled):
        runner.run(tctx)
    assert server.executed == []


def test_cancel_hook_before_pid_flags_the_worker():
    server = FakeServer()
    runner = OperationRunner(FakeCtx(server))
    task = make_task()
    # The worker registered its state but has no pid yet: simulate by hand.
    state = runner_module._Running()
    runner._running[task.id] = state
    runner.cancel(task)
    assert state.canceled and server.cancels == 0


def test_cancel_retries_until_the_statement_is_hit(monkeypatch):
    # The statement reaches the server only after the first pg_cancel_backend
    # (which is lost): a later one stops it.
    monkeypatch.setattr(runner_module, "CANCEL_DEADLINE", HANG)
    server = FakeServer(arrive_after_cancels=1)
    runner = OperationRunner(FakeCtx(server))
    tctx = FakeTaskContext(make_task())
    thread, outcome = run_in_thread(runner, tctx)
    assert tctx.pid_set.wait(HANG)
    tctx.cancel_requested.set()
    runner.cancel(tctx.task)
    thread.join(HANG)
    assert not thread.is_alive()
    assert server.cancels >= 2
    error = outcome["error"]
    assert isinstance(error, OperationError)
    assert str(error) == "canceling statement due to user request"


def test_cancel_stops_when_backend_is_gone():
    server = FakeServer(latency=0.0, duration=0.5)
    server.alive = False
    runner = OperationRunner(FakeCtx(server))
    tctx = FakeTaskContext(make_task())
    thread, _ = run_in_thread(runner, tctx)
    assert server.arrived.wait(HANG)
    runner.cancel(tctx.task)
    assert server.cancels == 1  # no retry once the backend is gone
    thread.join(HANG)


def test_cancel_gives_up_after_deadline(monkeypatch, caplog):
    monkeypatch.setattr(runner_module, "CANCEL_DEADLINE", 0.3)
    hold = threading.Event()
    server = FakeServer(hold=hold)  # the statement never arrives while cancel() runs
    runner = OperationRunner(FakeCtx(server))
    tctx = FakeTaskContext(make_task())
    thread, _ = run_in_thread(runner, tctx)
    assert tctx.pid_set.wait(HANG)
    canceler = threading.Thread(target=runner.cancel, args=(tctx.task,))
    canceler.start()
    canceler.join(HANG)
    assert not canceler.is_alive(), "cancel() did not give up"
    assert server.cancels >= 1 and not server.cancel_hit.is_set()
    assert "still runs task" in caplog.text  # gave up, and said so
    hold.set()
    server.cancel_hit.set()
    thread.join(HANG)


def test_postgres_unavailable_fails_with_clear_error():
    server = FakeServer()
    runner = OperationRunner(FakeCtx(server, ServiceUnavailable("PostgreSQL is unavailable.")))
    with pytest.raises(OperationError, match="^PostgreSQL is unavailable.$"):
        runner.run(FakeTaskContext(make_task()))
    assert runner._running == {}


def test_postgres_error_text():
    class Boom(FakeCtx):
        @contextmanager
        def connect(self, dbname=None, **kwargs):
            raise psycopg2.OperationalError('FATAL:  database "db" does not exist\n')
            yield  # pragma: no cover

    runner = OperationRunner(Boom(FakeServer()))
    with pytest.raises(OperationError) as info:
        runner.run(FakeTaskContext(make_task()))
    assert str(info.value) == 'FATAL:  database "db" does not exist'
