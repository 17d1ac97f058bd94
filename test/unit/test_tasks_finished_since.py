"""Task list filter "pending, or finished at or after a time" (the /scheduled lists)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from temboardagent.tasks import PENDING
from temboardagent.tasks.store import TaskStore

TARGET = '{"dbname":"db","index":null,"schema":"s","table":"t"}'
OTHER = '{"dbname":"other","index":null,"schema":"s","table":"t"}'


def insert(path: Path, rows: list[tuple]) -> None:
    """Rows of (id, worker, target, start, status, finished)."""
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO tasks (id, worker, target, options, start, status, created, finished) "
            "VALUES (?, ?, ?, '{}', ?, ?, ?, ?)",
            [(i, w, t, s, st, s, f) for i, w, t, s, st, f in rows],
        )
    con.close()


@pytest.fixture
def store(tmp_path):
    store = TaskStore(tmp_path / "tasks.db")
    yield store
    store.close()


def test_pending_or_recently_finished(store, tmp_path):
    insert(
        tmp_path / "tasks.db",
        [
            ("0000000a", "w", TARGET, 50, "todo", None),
            ("0000000b", "w", TARGET, 10, "doing", None),
            ("0000000c", "w", TARGET, 30, "done", 1000),  # finished exactly at `since`
            ("0000000d", "w", TARGET, 20, "failed", 1500),
            ("0000000e", "w", TARGET, 40, "canceled", 999),  # finished before `since`
            ("0000000f", "w", OTHER, 45, "done", 2000),  # other target
            ("00000010", "x", TARGET, 5, "aborted", 2000),  # other worker
            ("00000011", "w", TARGET, 60, "aborted", 3000),
        ],
    )
    listed = store.list(
        workers=["w"], statuses=PENDING, finished_since_us=1000, target={"dbname": "db"}
    )
    # ordered by start like the pending list
    assert [(t.id, t.status) for t in listed] == [
        ("0000000b", "doing"),
        ("0000000d", "failed"),
        ("0000000c", "done"),
        ("0000000a", "todo"),
        ("00000011", "aborted"),
    ]
    # without the new filter: pending only, as before
    assert [t.id for t in store.list(workers=["w"], statuses=PENDING)] == ["0000000b", "0000000a"]
    # finished only
    assert [t.id for t in store.list(workers=["w"], statuses=[], finished_since_us=2000)] == [
        "0000000f",
        "00000011",
    ]
    assert store.list(workers=["w"], statuses=[]) == []


def test_recently_finished_list_uses_indexes_not_history(store, tmp_path):
    """Served by the status and partial `finished` indexes, never by a walk of
    the worker's history (checked on SQLite's plan, not by timing)."""
    insert(
        tmp_path / "tasks.db",
        [(f"{i:08x}", "w", TARGET, i, "done", i) for i in range(1, 20_001)]
        + [("ffffffff", "w", TARGET, 30_000, "todo", None)],
    )
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    listed = store.list(
        workers=["w"],
        statuses=PENDING,
        finished_since_us=19_999,
        target={"dbname": "db", "schema": "s"},
    )
    store._conn().set_trace_callback(None)
    assert [t.id for t in listed] == [f"{19_999:08x}", f"{20_000:08x}", "ffffffff"]
    (query,) = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    con = sqlite3.connect(tmp_path / "tasks.db")
    plan = " / ".join(row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + query))
    con.close()
    assert "MULTI-INDEX OR" in plan, plan
    assert "USING INDEX tasks_status_worker_start" in plan, plan
    assert "USING INDEX tasks_finished" in plan, plan
    assert "tasks_worker_created" not in plan, plan
    assert "SCAN tasks" not in plan, plan
