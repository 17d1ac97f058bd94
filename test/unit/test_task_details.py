"""Task details (a JSON object per task) and the migration of older task lists."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from temboardagent.tasks.model import to_us
from temboardagent.tasks.store import TaskStore, dump_json

V1_SCHEMA = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, worker TEXT NOT NULL, target TEXT NOT NULL, options TEXT NOT NULL,
    start INTEGER NOT NULL, status TEXT NOT NULL, created INTEGER NOT NULL, started INTEGER,
    finished INTEGER, pid INTEGER, output TEXT, error TEXT
)
"""


def test_a_version_1_task_list_gains_details(tmp_path):
    path = tmp_path / "tasks.db"
    now = to_us(datetime(2030, 1, 1, tzinfo=timezone.utc))
    conn = sqlite3.connect(path)
    conn.execute(V1_SCHEMA)
    conn.execute(
        "INSERT INTO tasks VALUES ('0123abcd', 'w', '{}', '{}', ?, 'done', ?, ?, ?, 1, 'x', NULL)",
        (now, now, now, now),
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()

    store = TaskStore(path)
    try:
        task = store.get("0123abcd")
        assert task.status == "done" and task.output == "x" and task.details is None
        columns = [row[1] for row in store._conn().execute("PRAGMA table_info(tasks)")]
        assert columns[-2:] == ["details", "system_identifier"]
    finally:
        store.close()
    # Opening it again changes nothing.
    TaskStore(path).close()


def test_details_are_recorded_while_doing(tmp_path):
    store = TaskStore(tmp_path / "tasks.db")
    try:
        now = to_us(datetime.now(timezone.utc))
        task = store.insert(
            worker="w", target=dump_json({"a": 1}), options="{}", start_us=now, created_us=now
        )
        store.set_details(task.id, {"notices": ["WARNING:  x"]})
        assert store.get(task.id).details is None  # only a running task records details
        assert store.claim(task.id, now)
        store.set_details(task.id, {"notices": ["WARNING:  x"], "skipped": []})
        assert store.finish(task.id, "failed", now, None, "x")
        assert store.get(task.id).details == {"notices": ["WARNING:  x"], "skipped": []}
        assert store.list(workers=["w"])[0].details == {"notices": ["WARNING:  x"], "skipped": []}
    finally:
        store.close()
