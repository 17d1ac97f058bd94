"""Advice rules that need no database: duplicates, pending operations, order."""

from __future__ import annotations

from datetime import datetime, timezone

from temboardagent.plugins.maintenance.advice import (
    apply_pending,
    count_text,
    duplicate_rules,
    sort_items,
)
from temboardagent.plugins.maintenance.settings import MaintenanceSettings
from temboardagent.tasks import Task

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def index(name, keys, unique=False, constraint=False, am="btree", pred=None, includes=()):
    columns = list(keys) + list(includes)
    return {
        "schema": "s", "table_name": "t", "name": name, "amname": am, "indisvalid": True,
        "indisunique": unique, "constraint_backed": constraint, "predicate": pred,
        "key_columns": columns, "indnkeyatts": len(keys), "indnatts": len(columns),
        "opclasses": [1] * len(columns), "collations": [0] * len(columns),
        "options": [0] * len(columns), "size_bytes": 8192,
    }  # fmt: skip


def names(items):
    return sorted(i["index"] for i in items)


def test_exact_pair_gives_one_item_on_the_index_that_may_go():
    items = duplicate_rules(
        "db", [index("pk", ["a"], unique=True, constraint=True), index("x", ["a"])]
    )
    assert names(items) == ["x"]
    assert "pk" in items[0]["reason"] and "x" in items[0]["reason"]


def test_prefix_never_names_a_unique_index_redundant():
    assert duplicate_rules("db", [index("u", ["a"], unique=True), index("ab", ["a", "b"])]) == []
    items = duplicate_rules("db", [index("a", ["a"]), index("ab", ["a", "b"])])
    assert names(items) == ["a"] and "ab" in items[0]["reason"]


def test_different_predicate_method_or_includes_are_not_duplicates():
    assert duplicate_rules("db", [index("a", ["a"]), index("b", ["a"], pred="a > 0")]) == []
    assert duplicate_rules("db", [index("a", ["a"]), index("b", ["a"], am="hash")]) == []
    assert duplicate_rules("db", [index("a", ["a"], includes=["c"]), index("ab", ["a", "b"])]) == []


def item(rule, severity, table="t", action=True):
    return {
        "rule": rule, "severity": severity, "dbname": "db", "schema": "s", "table": table,
        "index": None, "pending": None,
        "action": {"method": "POST", "path": f"/maintenance/db/schema/s/table/{table}/vacuum",
                   "body": {}} if action else None,
    }  # fmt: skip


def test_pending_operation_of_the_same_kind_and_target_replaces_the_action():
    task = Task(
        id="deadbeef", worker="maintenance.vacuum", status="todo", start=NOW, created=NOW,
        target={"dbname": "db", "schema": "s", "table": "t", "index": None}, options={},
    )  # fmt: skip
    other = item("vacuum", "warning", table="u")
    mine = item("vacuum", "warning")
    apply_pending([mine, other], [task])
    assert mine["pending"] == "deadbeef" and mine["action"] is None
    assert other["pending"] is None and other["action"] is not None


def test_most_severe_first():
    ordered = sort_items(
        [item("analyze", "info"), item("wraparound", "critical"), item("vacuum", "warning")]
    )
    assert [i["severity"] for i in ordered] == ["critical", "warning", "info"]


def test_counts_read_like_a_dba_writes_them():
    assert count_text(1_620_000_000) == "1.62 billion"
    assert count_text(85012) == "85,012"


def test_thresholds_are_settings():
    settings = MaintenanceSettings.from_section({"advice_table_bloat_percent": "40"})
    assert settings.advice_table_bloat_percent == 40
    assert settings.advice_unused_index_days == 7
