"""Task manager: recover hooks, TaskAborted, cluster identity, schema upgrade,
and "canceled"/"aborted" only for interrupted runs."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from temboardagent.tasks import CRASH_REASON, FINISHED, TaskAborted, TaskManager
from temboardagent.tasks.model import to_us, utcnow
from temboardagent.tasks.store import SCHEMA_VERSION, TaskStore


def wait_for(predicate, timeout: float = 10.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout waiting for {message}")
        time.sleep(0.005)


@pytest.fixture
def managers():
    made: list[TaskManager] = []
    yield made
    for tm in made:
        tm.close()


def _doing_row(path, worker: str, dbname: str, pid: int = 42) -> str:
    """A task left ``doing`` by a previous process (as after kill -9)."""
    store = TaskStore(path)
    task = store.insert(
        worker=worker,
        target=f'{{"dbname":"{dbname}"}}',
        options="{}",
        start_us=to_us(utcnow()),
        created_us=to_us(utcnow()),
    )
    assert store.claim(task.id, to_us(utcnow()))
    store.set_pid(task.id, pid)
    store.close()
    return task.id


def test_recover_hook_sees_doing_tasks_before_they_are_aborted(tmp_path, managers):
    path = tmp_path / "tasks.db"
    first = _doing_row(path, "a", "db1")
    second = _doing_row(path, "b", "db2")
    other = _doing_row(path, "c", "db3")
    seen: list[list[tuple[str, str]]] = []

    def recover(tasks):
        # Still doing while the hook runs.
        seen.append([(t.id, tm.get(t.id).status) for t in tasks])

    tm = TaskManager(path, workers=1)
    managers.append(tm)
    tm.register_worker("a", lambda ctx: None, conflict_keys=lambda t: [], recover=recover)
    tm.register_worker("b", lambda ctx: None, conflict_keys=lambda t: [], recover=recover)
    tm.register_worker("c", lambda ctx: None, conflict_keys=lambda t: [])
    assert seen == []  # registration alone recovers nothing
    tm.start()
    # One call for the hook shared by workers a and b; worker c has no hook.
    assert len(seen) == 1
    assert sorted(seen[0]) == sorted([(first, "doing"), (second, "doing")])
    for task_id in (first, second, other):
        task = tm.get(task_id)
        assert (task.status, task.error) == ("aborted", CRASH_REASON)


def test_failing_recover_hook_does_not_stop_the_start(tmp_path, managers):
    path = tmp_path / "tasks.db"
    task_id = _doing_row(path, "a", "db1")

    def recover(tasks):
        raise RuntimeError("boom")

    tm = TaskManager(path, workers=1)
    managers.append(tm)
    tm.register_worker("a", lambda ctx: "ran", conflict_keys=lambda t: [], recover=recover)
    tm.start()
    assert tm.get(task_id).status == "aborted"
    new = tm.schedule("a", {"dbname": "x"})
    wait_for(lambda: tm.get(new.id).status == "done")


def test_task_aborted_from_a_worker(tmp_path, managers):
    tm = TaskManager(tmp_path / "tasks.db", workers=1)
    managers.append(tm)

    def run(ctx):
        raise TaskAborted("Not run: another cluster.")

    tm.register_worker("w", run, conflict_keys=lambda t: [])
    tm.start()
    task = tm.schedule("w", {"dbname": "x"})
    wait_for(lambda: tm.get(task.id).status in FINISHED)
    final = tm.get(task.id)
    assert (final.status, final.error) == ("aborted", "Not run: another cluster.")


def test_identity_recorded_on_each_task(tmp_path, managers):
    identities = iter(["7000000000000000001", None])
    tm = TaskManager(tmp_path / "tasks.db", workers=1, identity=lambda: next(identities))
    managers.append(tm)
    tm.register_worker("w", lambda ctx: None, conflict_keys=lambda t: [])
    first = tm.schedule("w", {"dbname": "x"})
    second = tm.schedule("w", {"dbname": "y"})
    assert first.system_identifier == "7000000000000000001"
    assert tm.get(first.id).system_identifier == "7000000000000000001"
    assert tm.get(second.id).system_identifier is None


def test_identity_error_means_no_check(tmp_path, managers):
    def identity():
        raise OSError("PostgreSQL is down")

    tm = TaskManager(tmp_path / "tasks.db", workers=1, identity=identity)
    managers.append(tm)
    tm.register_worker("w", lambda ctx: None, conflict_keys=lambda t: [])
    assert tm.schedule("w", {"dbname": "x"}).system_identifier is None


V1_SCHEMA = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, worker TEXT NOT NULL, target TEXT NOT NULL,
    options TEXT NOT NULL, start INTEGER NOT NULL, status TEXT NOT NULL,
    created INTEGER NOT NULL, started INTEGER, finished INTEGER, pid INTEGER,
    output TEXT, error TEXT
);
INSERT INTO tasks (id, worker, target, options, start, status, created)
VALUES ('0000abcd', 'w', '{"dbname":"x"}', '{}', 1, 'todo', 1);
PRAGMA user_version = 1;
"""


def test_schema_upgrade_from_version_1(tmp_path, managers):
    path = tmp_path / "tasks.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.close()
    ran = threading.Event()
    tm = TaskManager(path, workers=1, identity=lambda: "123")
    managers.append(tm)
    tm.register_worker("w", lambda ctx: ran.set(), conflict_keys=lambda t: [])
    old = tm.get("0000abcd")
    assert old.status == "todo" and old.system_identifier is None
    assert tm.schedule("w", {"dbname": "y"}).system_identifier == "123"
    tm.start()
    wait_for(lambda: tm.get("0000abcd").status == "done")
    assert ran.is_set()
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 2


class _Gate:
    """run() waits on an event, then returns (never looks at cancel_requested)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, ctx):
        self.started.set()
        assert self.release.wait(10)
        return "work done"


def test_run_completing_after_a_cancel_is_done(tmp_path, managers):
    """Deterministic: the cancel is requested (and its hook called) while the run
    is in progress, the run then completes: ``done``, not ``canceled``."""
    gate = _Gate()
    cancels = []
    tm = TaskManager(tmp_path / "tasks.db", workers=1)
    managers.append(tm)
    tm.register_worker("w", gate.run, conflict_keys=lambda t: [], cancel=cancels.append)
    tm.start()
    task = tm.schedule("w", {"dbname": "x"})
    assert gate.started.wait(10)
    assert tm.cancel(task.id).status == "doing"
    assert [t.id for t in cancels] == [task.id]
    gate.release.set()
    wait_for(lambda: tm.get(task.id).status in FINISHED)
    final = tm.get(task.id)
    assert (final.status, final.output, final.error) == ("done", "work done", None)


def test_run_completing_during_stop_is_done(tmp_path, managers):
    """A run that completes after the stop asked it to end did the work: ``done``."""
    gate = _Gate()
    tm = TaskManager(tmp_path / "tasks.db", workers=1)
    managers.append(tm)

    def cancel(task):
        gate.release.set()  # the statement ends normally just as the cancel arrives

    tm.register_worker("w", gate.run, conflict_keys=lambda t: [], cancel=cancel)
    tm.start()
    task = tm.schedule("w", {"dbname": "x"})
    assert gate.started.wait(10)
    tm.stop(grace=0)
    assert tm.get(task.id).status == "done"
