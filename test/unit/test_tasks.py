"""Task manager: real SQLite files, real threads, fake workers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from temboardagent.tasks import (
    CRASH_REASON,
    FINISHED,
    PENDING,
    SHUTDOWN_REASON,
    Task,
    TaskContext,
    TaskExists,
    TaskFinished,
    TaskManager,
    TaskNotFound,
    UnknownWorker,
    conflicts,
)
from temboardagent.tasks.manager import MAX_SLEEP

UTC = timezone.utc  # datetime.UTC needs Python 3.11
ROOT = Path(__file__).resolve().parents[2]


def now() -> datetime:
    return datetime.now(UTC)


#: deadline that only catches a hang, even on a loaded machine
HANG = 60.0


def wait_for(predicate, timeout: float = HANG, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout waiting for {message}")
        time.sleep(0.005)


class Fake:
    """A fake worker: each task blocks on a named gate (options["gate"])
    until released or canceled, and records what happened."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, datetime] = {}
        self.ended: dict[str, datetime] = {}
        self.order: list[str] = []
        self.cancels: list[Task] = []

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        self.gate(name).set()

    def run(self, ctx: TaskContext) -> str | None:
        task = ctx.task
        with self.lock:
            self.started[task.id] = now()
            self.order.append(task.id)
        try:
            ctx.set_pid(4242)
            opts = task.options
            if opts.get("set_output"):
                ctx.set_output(opts["set_output"])
            if "gate" in opts:
                gate = self.gate(opts["gate"])
                obey = opts.get("obey", True)
                while not gate.wait(0.005):
                    if obey and ctx.cancel_requested.is_set():
                        raise RuntimeError("canceling statement due to user request\n")
            if "fail" in opts:
                raise RuntimeError(opts["fail"])
            return opts.get("output")
        finally:
            with self.lock:
                self.ended[task.id] = now()

    def cancel(self, task: Task) -> None:
        with self.lock:
            self.cancels.append(task)
        if task.options.get("release_on_cancel"):
            self.release(task.options["gate"])

    @staticmethod
    def conflict_keys(task: Task) -> list[tuple]:
        t = task.target
        if t.get("table") is None:
            return [(t["dbname"],)]
        return [(t["dbname"], t.get("schema"), t["table"])]


@pytest.fixture
def fake():
    fake = Fake()
    yield fake
    for gate in list(fake.gates.values()):
        gate.set()  # never leave a worker thread blocked


@pytest.fixture
def make(tmp_path, fake):
    managers: list[TaskManager] = []

    def make(workers: int = 4, start: bool = True, **kw) -> TaskManager:
        tm = TaskManager(tmp_path / "tasks.db", workers=workers, **kw)
        tm.register_worker("fake", fake.run, conflict_keys=fake.conflict_keys, cancel=fake.cancel)
        managers.append(tm)
        if start:
            tm.start()
        return tm

    yield make
    for gate in list(fake.gates.values()):
        gate.set()
    for tm in managers:
        tm.close()


def T(dbname: str = "db", schema: str | None = None, table: str | None = None):
    return {"dbname": dbname, "schema": schema, "table": table, "index": None}


def status(tm: TaskManager, task_id: str) -> str:
    return tm.get(task_id).status


# Pure helpers


def test_conflicts_prefix_rule():
    assert conflicts([("db",)], [("db", "s", "t")])
    assert conflicts([("db", "s", "t")], [("db",)])
    assert conflicts([("db", "s", "t")], [("db", "s", "t")])
    assert not conflicts([("db", "s", "t")], [("db", "s", "u")])
    assert not conflicts([("db",)], [("other", "s", "t")])
    assert conflicts([()], [("anything",)])
    assert not conflicts([], [("db",)])


# Schedule, get, list


def test_schedule_get_list(make):
    tm = make(start=False)
    base = now() + timedelta(hours=1)
    a = tm.schedule("fake", T("db1", "s", "t"), {"mode": "full"}, base + timedelta(2))
    b = tm.schedule("fake", T("db1"), {}, base)
    c = tm.schedule("fake", T("db2", "s", "t"), {"mode": "analyze"}, base)
    assert a.status == "todo" and len(a.id) == 8 and int(a.id, 16) >= 0
    assert a.start.tzinfo is not None and a.created.tzinfo is not None
    assert tm.get(a.id) == a
    assert tm.get("ffffffff") is None
    assert tm.get("not an id") is None

    assert [t.id for t in tm.list()] == [b.id, c.id, a.id]  # start, then created
    assert [t.id for t in tm.list(order="-created")] == [c.id, b.id, a.id]
    assert [t.id for t in tm.list(limit=2, offset=1)] == [c.id, a.id]
    assert [t.id for t in tm.list(target={"dbname": "db1"})] == [b.id, a.id]
    assert [t.id for t in tm.list(target={"dbname": "db1", "table": None})] == [b.id]
    assert [t.id for t in tm.list(target={"table": "t", "schema": "s"})] == [
        c.id,
        a.id,
    ]
    assert [t.id for t in tm.list(target={"nokey": None})] == []
    assert [t.id for t in tm.list(statuses=PENDING)] == [b.id, c.id, a.id]
    assert tm.list(statuses=FINISHED) == []
    assert tm.list(workers=["other"]) == []
    assert len(tm.list(workers=["fake"], statuses=["todo"])) == 3
    with pytest.raises(ValueError):
        tm.list(statuses=["bogus"])
    with pytest.raises(ValueError):
        tm.list(order="created")
    with pytest.raises(ValueError):
        tm.list(target={"x') OR 1=1 --": 1})


def test_schedule_validation(make):
    tm = make(start=False)
    with pytest.raises(ValueError):
        tm.schedule("nope", T(), {})
    with pytest.raises(KeyError):
        tm.schedule("nope", T(), {})
    with pytest.raises(UnknownWorker, match="unknown task worker: nope"):
        tm.schedule("nope", T(), {})
    with pytest.raises(ValueError):
        tm.schedule("fake", T(), {}, preferred_id="XYZ")
    with pytest.raises(ValueError):
        tm.register_worker("fake", print, conflict_keys=list)


def test_naive_start_is_utc(make):
    tm = make(start=False)
    naive = datetime(2100, 1, 2, 3, 4, 5)
    task = tm.schedule("fake", T(), {}, naive)
    assert task.start == naive.replace(tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    task = tm.schedule("fake", T(), {}, datetime(2100, 1, 2, 4, 4, 6, tzinfo=paris))
    assert task.start == datetime(2100, 1, 2, 3, 4, 6, tzinfo=UTC)


def test_row_persisted(make, tmp_path):
    tm = make(start=False)
    start = now() + timedelta(hours=1)
    task = tm.schedule("fake", T("db", "s", "t"), {"mode": "full"}, start)
    other = TaskManager(tmp_path / "tasks.db")
    try:
        assert other.get(task.id) == task
        assert other.list() == [task]
    finally:
        other.close()
    con = sqlite3.connect(tmp_path / "tasks.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    row = con.execute("SELECT worker, status FROM tasks WHERE id = ?", (task.id,))
    assert row.fetchone() == ("fake", "todo")
    con.close()


def test_duplicate(make, fake):
    tm = make()
    start = now() + timedelta(hours=1)
    a = tm.schedule("fake", {"dbname": "db", "x": 1}, {"a": 1, "b": 2}, start)
    with pytest.raises(TaskExists) as exc:
        # Key order does not matter.
        tm.schedule("fake", {"x": 1, "dbname": "db"}, {"b": 2, "a": 1}, start)
    assert exc.value.task_id == a.id
    # Different options, start or target: not a duplicate.
    tm.schedule("fake", {"dbname": "db", "x": 1}, {"a": 1}, start)
    tm.schedule("fake", {"dbname": "db", "x": 1}, {"a": 1, "b": 2}, start + timedelta(1))
    tm.schedule("fake", {"dbname": "db", "x": 2}, {"a": 1, "b": 2}, start)
    # A finished task is not a duplicate.
    tm.cancel(a.id)
    b = tm.schedule("fake", {"dbname": "db", "x": 1}, {"a": 1, "b": 2}, start)
    assert b.id != a.id


def test_duplicate_race(make):
    tm = make(start=False)
    start = now() + timedelta(hours=1)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def schedule():
        barrier.wait()
        try:
            results.append(tm.schedule("fake", T(), {"m": 1}, start))
        except TaskExists as e:
            results.append(e)

    threads = [threading.Thread(target=schedule) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tasks = [r for r in results if isinstance(r, Task)]
    assert len(tasks) == 1
    assert all(r.task_id == tasks[0].id for r in results if isinstance(r, TaskExists))


def test_preferred_id(make):
    tm = make(start=False)
    start = now() + timedelta(hours=1)
    a = tm.schedule("fake", T(), {}, start, preferred_id="0badcafe")
    assert a.id == "0badcafe"
    b = tm.schedule("fake", T(), {}, start + timedelta(1), preferred_id="0badcafe")
    assert b.id != "0badcafe" and len(b.id) == 8
    tm.cancel(a.id)  # any status counts as taken
    c = tm.schedule("fake", T(), {}, start + timedelta(2), preferred_id="0badcafe")
    assert c.id not in ("0badcafe", b.id)


# Running


def test_immediate_task_runs(make, fake):
    tm = make()
    task = tm.schedule("fake", T(), {"output": "VACUUM db"})
    wait_for(lambda: status(tm, task.id) == "done")
    done = tm.get(task.id)
    assert done.output == "VACUUM db"
    assert done.pid == 4242
    assert done.error is None
    assert done.start <= done.started <= done.finished


def test_output_set_by_context_is_kept(make, fake):
    tm = make()
    task = tm.schedule("fake", T(), {"set_output": "ANALYZE t"})
    wait_for(lambda: status(tm, task.id) == "done")
    assert tm.get(task.id).output == "ANALYZE t"


def test_future_task_runs_on_time(make, fake):
    tm = make()
    start = now() + timedelta(seconds=0.6)
    task = tm.schedule("fake", T(), {}, start)
    wait_for(lambda: status(tm, task.id) == "done")
    assert fake.started[task.id] >= start  # not before its time (how soon after: bench)


def test_earlier_task_scheduled_later_wakes_scheduler(make, fake):
    tm = make()
    later = tm.schedule("fake", T("a"), {}, now() + timedelta(hours=1))
    time.sleep(0.05)  # scheduler now sleeps until MAX_SLEEP / later's start
    soon = tm.schedule("fake", T("b"), {}, now() + timedelta(seconds=0.2))
    # Not after MAX_SLEEP or an hour: the deadline is far below both.
    wait_for(lambda: status(tm, soon.id) == "done", timeout=min(HANG, MAX_SLEEP / 2))
    assert status(tm, later.id) == "todo"


def test_failing_worker(make, fake):
    tm = make()
    a = tm.schedule("fake", T("a"), {"fail": "relation does not exist  \n"})
    b = tm.schedule("fake", T("b"), {"fail": ""})
    wait_for(lambda: status(tm, a.id) == "failed" and status(tm, b.id) == "failed")
    assert tm.get(a.id).error == "relation does not exist"
    assert tm.get(b.id).error == "RuntimeError"
    assert tm.get(a.id).finished is not None


def test_system_exit_does_not_kill_pool(make):
    tm = make(workers=1, start=False)

    def bad(ctx):
        raise SystemExit(3)

    tm.register_worker("bad", bad, conflict_keys=lambda t: [])
    tm.start()
    a = tm.schedule("bad", {}, {})
    wait_for(lambda: status(tm, a.id) == "failed")
    assert tm.get(a.id).error == "3"
    b = tm.schedule("fake", T(), {})
    wait_for(lambda: status(tm, b.id) == "done")


def test_conflict_keys_error_fails_task_not_scheduler(make):
    tm = make(start=False)

    def keys(task):
        raise LookupError("no dbname")

    tm.register_worker("badkeys", lambda ctx: None, conflict_keys=keys)
    tm.start()
    a = tm.schedule("badkeys", {}, {})
    wait_for(lambda: status(tm, a.id) == "failed")
    assert tm.get(a.id).error == "conflict keys: no dbname"
    b = tm.schedule("fake", T(), {})
    wait_for(lambda: status(tm, b.id) == "done")


def test_scheduler_survives_db_error(make, fake, monkeypatch, caplog):
    tm = make()
    real = tm.store.mark_due
    calls = []

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real(*args)

    monkeypatch.setattr(tm.store, "mark_due", flaky)
    a = tm.schedule("fake", T("a"), {})
    wait_for(lambda: calls, message="a scheduler pass")
    b = tm.schedule("fake", T("b"), {})  # wakes the scheduler again
    wait_for(lambda: status(tm, a.id) == status(tm, b.id) == "done")
    assert "Task scheduler error." in caplog.text


def test_worker_survives_db_error(make, fake, monkeypatch, caplog):
    tm = make(workers=1)
    real = tm.store.finish
    broken = {"a"}

    def finish(task_id, *args):
        if tm.get(task_id).target["dbname"] in broken:
            raise sqlite3.OperationalError("database or disk is full")
        return real(task_id, *args)

    monkeypatch.setattr(tm.store, "finish", finish)
    a = tm.schedule("fake", T("a"), {})
    b = tm.schedule("fake", T("b"), {})
    wait_for(lambda: status(tm, b.id) == "done")
    assert status(tm, a.id) == "doing"  # aborted at the next start
    assert "Failed to record end of task" in caplog.text


def test_conflicting_tasks_serialised_others_overlap(make, fake):
    tm = make(workers=4)
    a = tm.schedule("fake", T("db", "s", "t"), {"gate": "a"})
    wait_for(lambda: a.id in fake.started)
    b = tm.schedule("fake", T("db", "s", "t"), {"gate": "b"})
    c = tm.schedule("fake", T("db", "s", "u"), {"gate": "c"})
    wait_for(lambda: c.id in fake.started)  # runs beside a
    wait_for(lambda: status(tm, b.id) == "queued")
    assert b.id not in fake.started
    assert status(tm, a.id) == status(tm, c.id) == "doing"
    fake.release("a")
    wait_for(lambda: b.id in fake.started)
    assert fake.started[b.id] >= fake.ended[a.id]
    fake.release("b")
    fake.release("c")
    wait_for(lambda: all(status(tm, t.id) == "done" for t in (a, b, c)))
    assert fake.started[c.id] < fake.ended[a.id]  # overlapped


def test_prefix_conflict(make, fake):
    tm = make(workers=4)
    dbwide = tm.schedule("fake", T("db"), {"gate": "db"})
    wait_for(lambda: dbwide.id in fake.started)
    table = tm.schedule("fake", T("db", "s", "t"), {"gate": "t"})
    other = tm.schedule("fake", T("other", "s", "t"), {"gate": "o"})
    wait_for(lambda: other.id in fake.started)
    wait_for(lambda: status(tm, table.id) == "queued")
    assert table.id not in fake.started
    fake.release("db")
    wait_for(lambda: table.id in fake.started)
    assert fake.started[table.id] >= fake.ended[dbwide.id]


def test_older_queued_task_keeps_its_turn(make, fake):
    """A table task queued after a blocked db-wide task waits for it (FIFO
    among conflicting tasks, no starvation of db-wide operations)."""
    tm = make(workers=4)
    t1 = tm.schedule("fake", T("db", "s", "t1"), {"gate": "t1"})
    wait_for(lambda: t1.id in fake.started)
    dbwide = tm.schedule("fake", T("db"), {"gate": "db"})
    wait_for(lambda: status(tm, dbwide.id) == "queued")
    t2 = tm.schedule("fake", T("db", "s", "t2"), {})
    wait_for(lambda: status(tm, t2.id) == "queued")
    assert status(tm, dbwide.id) == "queued"
    fake.release("t1")
    wait_for(lambda: dbwide.id in fake.started)
    assert status(tm, t2.id) == "queued"
    fake.release("db")
    wait_for(lambda: status(tm, t2.id) == "done")
    assert fake.started[t2.id] >= fake.ended[dbwide.id]


def test_pool_bound_and_fifo(make, fake):
    tm = make(workers=2)
    a = tm.schedule("fake", T("a"), {"gate": "a"})
    b = tm.schedule("fake", T("b"), {"gate": "b"})
    wait_for(lambda: a.id in fake.started and b.id in fake.started)
    c = tm.schedule("fake", T("c"), {})
    d = tm.schedule("fake", T("d"), {}, now() - timedelta(seconds=10))
    wait_for(lambda: status(tm, c.id) == status(tm, d.id) == "queued")
    assert len(tm.list(statuses=["doing"])) == 2
    fake.release("a")
    wait_for(lambda: status(tm, c.id) == status(tm, d.id) == "done")
    assert fake.order.index(d.id) < fake.order.index(c.id)  # earlier start first
    fake.release("b")


def test_many_threads_schedule_concurrently(make, fake):
    tm = make(workers=4)
    errors: list[BaseException] = []
    ids: list[str] = []

    def client(n):
        try:
            for i in range(25):
                ids.append(tm.schedule("fake", T(f"db{n}", "s", f"t{i}"), {}).id)
                tm.list(statuses=PENDING)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 200
    wait_for(lambda: not tm.list(statuses=PENDING))
    assert len(tm.list(statuses=["done"])) == 200


# Cancel


def test_cancel_todo_never_runs(make, fake):
    tm = make()
    when = now() + timedelta(seconds=0.3)
    task = tm.schedule("fake", T(), {}, when)
    canceled = tm.cancel(task.id)
    assert canceled.status == "canceled"
    assert canceled.finished is not None
    # A witness on the same target due at the same time: once it ran, the
    # scheduler went past that time (and would have run the canceled one first).
    witness = tm.schedule("fake", T(), {}, when)
    wait_for(lambda: status(tm, witness.id) == "done")
    assert task.id not in fake.started
    assert status(tm, task.id) == "canceled"
    with pytest.raises(TaskFinished) as exc:
        tm.cancel(task.id)
    assert exc.value.task.status == "canceled"


def test_cancel_unknown(make):
    tm = make()
    with pytest.raises(TaskNotFound):
        tm.cancel("deadbeef")


def test_cancel_queued(make, fake):
    tm = make(workers=1)
    a = tm.schedule("fake", T("a"), {"gate": "a"})
    wait_for(lambda: a.id in fake.started)
    b = tm.schedule("fake", T("b"), {})
    wait_for(lambda: status(tm, b.id) == "queued")
    assert tm.cancel(b.id).status == "canceled"
    witness = tm.schedule("fake", T("b"), {})  # behind b in the queue
    fake.release("a")
    wait_for(lambda: status(tm, witness.id) == "done")
    assert b.id not in fake.started
    assert status(tm, b.id) == "canceled"


def test_cancel_running(make, fake):
    tm = make()
    task = tm.schedule("fake", T(), {"gate": "g"})
    wait_for(lambda: tm.get(task.id).pid == 4242)
    returned = tm.cancel(task.id)
    assert returned.status == "doing"
    assert [t.pid for t in fake.cancels] == [4242]
    wait_for(lambda: status(tm, task.id) == "canceled")
    final = tm.get(task.id)
    assert final.error == "canceling statement due to user request"
    assert final.finished is not None
    with pytest.raises(TaskFinished):
        tm.cancel(task.id)


def test_cancel_running_that_completes_anyway_is_done(make, fake):
    """A cancel that did not interrupt the run (it returned normally) records
    ``done``: the work was done."""
    tm = make()
    opts = {"gate": "g", "obey": False, "release_on_cancel": True, "output": "did it"}
    task = tm.schedule("fake", T(), opts)
    wait_for(lambda: task.id in fake.started)
    tm.cancel(task.id)
    assert [t.id for t in fake.cancels] == [task.id]  # the cancel hook was called
    wait_for(lambda: status(tm, task.id) in FINISHED)
    final = tm.get(task.id)
    assert (final.status, final.output, final.error) == ("done", "did it", None)


def test_cancel_that_interrupts_the_run_is_canceled(make, fake):
    tm = make()
    task = tm.schedule("fake", T(), {"gate": "g2"})
    wait_for(lambda: task.id in fake.started)
    tm.cancel(task.id)
    wait_for(lambda: status(tm, task.id) in FINISHED)
    assert status(tm, task.id) == "canceled"


def test_cancel_race_with_scheduler(make, fake):
    """Tasks canceled while becoming due never run."""
    tm = make(workers=4)
    tasks = [tm.schedule("fake", T(f"d{i}"), {}, now() + timedelta(seconds=0.1)) for i in range(40)]
    time.sleep(0.09)
    canceled = set()
    for task in tasks:
        try:
            if tm.cancel(task.id).status == "canceled":
                canceled.add(task.id)
        except TaskFinished:
            pass
    wait_for(lambda: not tm.list(statuses=PENDING))
    for task in tasks:
        if task.id in canceled:
            assert task.id not in fake.started


# Recovery, stop, retention

CRASHER = """
import sys, threading, time
from temboardagent.tasks import TaskManager
gate = threading.Event()
def run(ctx):
    ctx.set_pid(99)
    gate.wait()
tm = TaskManager(sys.argv[1], workers=1)
tm.register_worker("fake", run, conflict_keys=lambda t: [(t.target["dbname"],)])
tm.start()
a = tm.schedule("fake", {"dbname": "db"}, {"n": 1})
b = tm.schedule("fake", {"dbname": "db"}, {"n": 2})
while tm.get(a.id).status != "doing" or tm.get(b.id).status != "queued":
    time.sleep(0.01)
print(a.id, b.id, flush=True)
time.sleep(60)
"""


def test_recovery_after_crash(make, fake, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CRASHER), str(tmp_path / "tasks.db")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        a_id, b_id = proc.stdout.readline().split()
    finally:
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait()
        proc.stdout.close()
    tm = make(start=False)
    assert status(tm, a_id) == "doing"
    assert status(tm, b_id) == "queued"
    tm.start()
    a = tm.get(a_id)
    assert a.status == "aborted"
    assert a.error == CRASH_REASON
    assert a.finished is not None and a.pid == 99
    wait_for(lambda: status(tm, b_id) == "done")
    assert b_id in fake.started


def test_stop_with_grace(make, fake):
    tm = make(workers=4)
    quick = tm.schedule("fake", T("q"), {"gate": "q"})
    obeys = tm.schedule("fake", T("o"), {"gate": "o"})
    stuck = tm.schedule("fake", T("s"), {"gate": "s", "obey": False})
    wait_for(lambda: all(t.id in fake.started for t in (quick, obeys, stuck)))
    blocked = tm.schedule("fake", T("q"), {})  # conflicts with quick
    later = tm.schedule("fake", T("l"), {}, now() + timedelta(hours=1))
    wait_for(lambda: status(tm, blocked.id) == "queued")
    threading.Timer(0.1, fake.release, ("q",)).start()
    workers = list(tm._threads)
    # stop() returns although a worker ignores the cancel (the thread is left behind).
    stopper = threading.Thread(target=tm.stop, kwargs={"grace": 0.5})
    stopper.start()
    stopper.join(HANG)
    assert not stopper.is_alive(), "stop() waits for a worker that ignores cancel"
    assert not tm.started
    assert status(tm, quick.id) == "done"
    # Interrupted by the shutdown, not by a user: aborted with the reason.
    o = tm.get(obeys.id)
    assert o.status == "aborted"
    assert o.error == SHUTDOWN_REASON
    s = tm.get(stuck.id)
    assert s.status == "aborted"
    assert s.error == SHUTDOWN_REASON
    assert {t.id for t in fake.cancels} == {obeys.id, stuck.id}
    # The blocked task was not started after stop and waits for the next start.
    assert blocked.id not in fake.started
    assert status(tm, blocked.id) == "todo"
    assert status(tm, later.id) == "todo"
    # The stuck worker ending later does not overwrite the aborted row.
    fake.release("s")
    wait_for(lambda: stuck.id in fake.ended)
    wait_for(
        lambda: not any(thread.is_alive() for thread in workers),
        message="the stuck worker to record its end and exit",
    )
    assert status(tm, stuck.id) == "aborted"
    # Scheduling still persists; a new start runs the pending tasks.
    tm.start()
    wait_for(lambda: status(tm, blocked.id) == "done")
    assert status(tm, later.id) == "todo"


def test_retention_purge(make, fake):
    tm = make(retention=timedelta(days=7))
    done = tm.schedule("fake", T("a"), {})
    wait_for(lambda: status(tm, done.id) == "done")
    canceled = tm.schedule("fake", T("b"), {}, now() + timedelta(hours=1))
    tm.cancel(canceled.id)
    pending = tm.schedule("fake", T("c"), {}, now() + timedelta(hours=2))
    finished = tm.get(done.id).finished
    assert tm.purge(now=finished + timedelta(days=6)) == 0
    assert tm.purge(now=now() + timedelta(days=7, seconds=1)) == 2
    assert tm.get(done.id) is None and tm.get(canceled.id) is None
    assert tm.get(pending.id).status == "todo"
    assert tm.purge(now=now() + timedelta(days=365)) == 0


def test_list_pending_fast_with_large_history(make, tmp_path):
    tm = make(start=False)
    pending = tm.schedule("fake", T("db", "s", "t"), {}, now() + timedelta(hours=1))
    con = sqlite3.connect(tmp_path / "tasks.db")
    rows = (
        (
            f"{i:08x}",
            "fake",
            '{"dbname":"db","index":null,"schema":"s","table":"t"}',
            "{}",
            i,
            "done",
            i,
            i,
            i,
        )
        for i in range(1, 100_001)
    )
    with con:
        con.executemany(
            "INSERT INTO tasks (id, worker, target, options, start, status, created, "
            "started, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    con.close()
    # The pending list must be served by an index, not by a scan of the history:
    # capture the statement list() runs and ask SQLite for its plan.
    statements: list[str] = []
    tm.store._conn().set_trace_callback(statements.append)
    listed = tm.list(workers=["fake"], statuses=PENDING, target={"dbname": "db", "table": "t"})
    tm.store._conn().set_trace_callback(None)
    assert [t.id for t in listed] == [pending.id]
    (query,) = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    con = sqlite3.connect(tmp_path / "tasks.db")
    plan = " / ".join(row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + query))
    con.close()
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    assert "SCAN tasks" not in plan.replace("SCAN tasks USING", ""), plan
    assert len(tm.list(order="-created", limit=10)) == 10
