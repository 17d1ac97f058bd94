"""Shaping of progress objects and activity rows (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from temboardagent.plugins.maintenance.progress import _command_of, operation_progress, percent
from temboardagent.tasks import Task

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def task(**target) -> Task:
    full = {"dbname": "db", "schema": None, "table": None, "index": None, **target}
    return Task(
        id="0123abcd",
        worker="maintenance.vacuum",
        target=full,
        options={},
        start=NOW,
        status="doing",
        created=NOW,
        started=NOW - timedelta(seconds=12.34),
        pid=42,
    )


def backend(**fields):
    row = {
        "phase": None, "done": None, "total": None, "unit": None, "relid": None,
        "waiting_for_lock": False, "blocked_by": [],
    }  # fmt: skip
    row.update(fields)
    return row


def test_percent_needs_a_total():
    assert percent(1, 3) == 33.3
    assert percent(5, None) is None
    assert percent(5, 0) is None
    assert percent(None, 10) is None


def test_unknown_backend_gives_nulls_not_guesses():
    progress = operation_progress(task(schema="s", table="t"), None, now=NOW)
    assert progress == {
        "phase": None, "relation": "s.t", "done": None, "total": None, "unit": None,
        "percent": None, "relations_done": None, "relations_total": None, "elapsed": 12.3,
        "waiting_for_lock": None, "blocked_by": None,
    }  # fmt: skip


def test_counters_of_the_current_phase():
    row = backend(phase="scanning heap", done=50, total=200, unit="blocks", blocked_by=[9, 3])
    progress = operation_progress(task(schema="s", index="i"), row, now=NOW)
    assert progress["relation"] == "s.i"
    assert (progress["done"], progress["total"], progress["percent"]) == (50, 200, 25.0)
    assert progress["blocked_by"] == [3, 9]
    assert progress["waiting_for_lock"] is False


def test_database_wide_relation_only_while_a_phase_runs():
    idle = operation_progress(task(), backend(), relation="s.t", now=NOW)
    assert idle["relation"] is None and idle["phase"] is None
    busy = operation_progress(task(), backend(phase="scanning heap"), relation="s.t", now=NOW)
    assert busy["relation"] == "s.t"


def activity_row(query: str, backend_type: str = "client backend", command=None) -> dict:
    return {"query": query, "backend_type": backend_type, "command": command}


def test_autovacuum_text_gives_command_relation_and_wraparound():
    row = activity_row(
        "autovacuum: VACUUM ANALYZE public.my table (to prevent wraparound)",
        "autovacuum worker",
    )
    assert _command_of(row) == ("VACUUM ANALYZE", "public.my table", True, True)
    row = activity_row("autovacuum: ANALYZE s.t", "autovacuum worker")
    assert _command_of(row) == ("ANALYZE", "s.t", True, False)


def test_progress_view_command_wins_over_the_text():
    row = activity_row("vacuum full t", command="VACUUM FULL")
    assert _command_of(row) == ("VACUUM FULL", None, False, None)


def test_manual_commands_from_the_text():
    assert _command_of(activity_row("  analyse t"))[0] == "ANALYZE"
    assert _command_of(activity_row("CREATE UNIQUE  INDEX i ON t (a)"))[0] == "CREATE UNIQUE INDEX"
    assert _command_of(activity_row("SELECT 1"))[0] is None


def test_database_wide_relations_are_counted_by_the_runner():
    row = backend(phase="scanning heap")
    progress = operation_progress(task(), row, relation="s.t", now=NOW, relations=(50, 120))
    assert (progress["relations_done"], progress["relations_total"]) == (50, 120)
    # a single-relation operation has no relation count
    single = operation_progress(task(schema="s", table="t"), row, now=NOW, relations=(0, 1))
    assert single["relations_done"] is None and single["relations_total"] is None
