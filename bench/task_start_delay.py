"""Delay between a task's requested start and the moment its worker runs.

Starts a TaskManager on a throwaway SQLite file with a no-op worker,
schedules 10 tasks 0.3 s in the future and 10 immediate ones, and prints the
median and max delay of each group, plus the cost of schedule() itself
(a committed, fsynced insert). Figures only, no asserts.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temboardagent.tasks import TaskContext, TaskManager  # noqa: E402

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

    print(f"{'group':<18} {'tasks':>5} {'median ms':>10} {'max ms':>8}")
    for name, tasks in groups.items():
        delays = [(ran[t.id] - t.start).total_seconds() * 1000 for t in tasks if t.id in ran]
        missing = len(tasks) - len(delays)
        print(
            f"{name:<18} {len(delays):>5} {statistics.median(delays):>10.2f} "
            f"{max(delays):>8.2f}" + (f"  ({missing} never ran)" if missing else "")
        )
    print(
        f"{'schedule() call':<18} {len(schedule_ms):>5} "
        f"{statistics.median(schedule_ms):>10.2f} {max(schedule_ms):>8.2f}"
    )


if __name__ == "__main__":
    main()
