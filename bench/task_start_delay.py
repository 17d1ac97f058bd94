"""Delay between a task's requested start and the moment its worker runs.

Starts a TaskManager on a throwaway SQLite file with a no-op worker,
schedules 10 tasks 0.3 s in the future and 10 immediate ones, and prints the
median and max delay of each group, plus the cost of schedule() itself
(a committed, fsynced insert). Side by side, with ratios: plain threading.Timer
wake-ups for the same requested times (the floor of any scheduler in this
process), and the same insert+commit through sqlite3 on a WAL file with
synchronous=FULL. Figures only, no asserts.

Usage: .venv/bin/python -m bench.task_start_delay
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from temboardagent.tasks import TaskContext, TaskManager

UTC = timezone.utc  # datetime.UTC needs Python 3.11
COUNT = 10
FUTURE = timedelta(seconds=0.3)


def main() -> None:
    ran: dict[str, datetime] = {}
    lock = threading.Lock()

    def noop(ctx: TaskContext) -> None:
        at = datetime.now(UTC)
        with lock:
            ran[ctx.task.id] = at

    with tempfile.TemporaryDirectory() as tmp:
        tm = TaskManager(Path(tmp) / "tasks.db", workers=4)
        tm.register_worker("noop", noop, conflict_keys=lambda task: [])
        tm.start()
        try:
            groups: dict[str, list] = {"future (+0.3 s)": [], "immediate": []}
            schedule_ms = []
            for i in range(COUNT):
                t0 = time.perf_counter()
                task = tm.schedule("noop", {"n": i}, {}, datetime.now(UTC) + FUTURE)
                schedule_ms.append((time.perf_counter() - t0) * 1000)
                groups["future (+0.3 s)"].append(task)
            for i in range(COUNT):
                t0 = time.perf_counter()
                task = tm.schedule("noop", {"n": COUNT + i}, {})
                schedule_ms.append((time.perf_counter() - t0) * 1000)
                groups["immediate"].append(task)
            everything = [t for tasks in groups.values() for t in tasks]
            deadline = time.monotonic() + 10
            while len(ran) < len(everything) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            tm.stop()
            tm.store.close()

    timer = timer_delays()
    insert = sqlite_insert_ms()
    print(f"{'group':<18} {'tasks':>5} {'median ms':>10} {'max ms':>8} {'reference median':>17} "
          f"{'ratio':>6}")  # fmt: skip
    for name, tasks in groups.items():
        delays = [(ran[t.id] - t.start).total_seconds() * 1000 for t in tasks if t.id in ran]
        missing = len(tasks) - len(delays)
        ref = statistics.median(timer[name])
        print(
            f"{name:<18} {len(delays):>5} {statistics.median(delays):>10.2f} "
            f"{max(delays):>8.2f} {ref:>17.2f} {statistics.median(delays) / ref:>6.1f}"
            + (f"  ({missing} never ran)" if missing else "")
        )
    ref = statistics.median(insert)
    print(
        f"{'schedule() call':<18} {len(schedule_ms):>5} "
        f"{statistics.median(schedule_ms):>10.2f} {max(schedule_ms):>8.2f} {ref:>17.2f} "
        f"{statistics.median(schedule_ms) / ref:>6.1f}"
    )
    print("references: threading.Timer wake-up delay; sqlite3 insert+commit (WAL, FULL)")


def timer_delays() -> dict[str, list[float]]:
    """Delay (ms) of threading.Timer callbacks asked for the same times as the tasks."""
    delays: dict[str, list[float]] = {"future (+0.3 s)": [], "immediate": []}
    lock = threading.Lock()
    timers = []

    def fire(group: str, wanted: float) -> None:
        with lock:
            delays[group].append((time.monotonic() - wanted) * 1000)

    for group, offset in (("future (+0.3 s)", FUTURE.total_seconds()), ("immediate", 0.0)):
        for _ in range(COUNT):
            wanted = time.monotonic() + offset
            timer = threading.Timer(offset, fire, (group, wanted))
            timer.start()
            timers.append(timer)
    for timer in timers:
        timer.join(10)
    return delays


def sqlite_insert_ms() -> list[float]:
    """Time (ms) of a committed insert into a WAL SQLite file, synchronous=FULL."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "ref.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, target TEXT, start INTEGER)")
        for i in range(2 * COUNT):
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, ?, ?)", (f"{i:08x}", '{"n": 1}', i))
            conn.execute("COMMIT")
            times.append((time.perf_counter() - t0) * 1000)
        conn.close()
    return times


if __name__ == "__main__":
    main()
