"""A task list written by an older agent (no ``attempts`` column) opens and gains it."""

from __future__ import annotations

import sqlite3

from temboardagent.tasks.store import TaskStore

OLD_SCHEMA = """
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, worker TEXT NOT NULL, target TEXT NOT NULL, options TEXT NOT NULL,
    start INTEGER NOT NULL, status TEXT NOT NULL, created INTEGER NOT NULL, started INTEGER,
    finished INTEGER, pid INTEGER, output TEXT, error TEXT
);
INSERT INTO tasks (id, worker, target, options, start, status, created, finished, output)
VALUES ('0123abcd', 'maintenance.vacuum', '{"dbname":"db"}', '{"mode":""}', 1, 'done', 1, 2,
        'VACUUM');
"""


def test_old_task_list_gains_attempts(tmp_path):
    path = tmp_path / "tasks.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.close()

    store = TaskStore(path)
    try:
        task = store.get("0123abcd")
        assert task.output == "VACUUM" and task.attempts is None
        new = store.insert(
            worker="maintenance.analyze",
            target='{"dbname":"db"}',
            options="{}",
            start_us=5,
            created_us=5,
        )
        assert store.claim(new.id, 6)
        store.set_attempts(new.id, 3)
        assert store.get(new.id).attempts == 3
    finally:
        store.close()
    # Opening again is a no-op.
    TaskStore(path).close()
