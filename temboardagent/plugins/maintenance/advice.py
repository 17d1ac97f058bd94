"""Advice: what needs maintenance now, why, and the request that does it.

One query per database (``sql/advice.sql``, which reuses the bloat estimates
of the schema pages) gives the facts; the rules here turn them into items:

- ``wraparound``: transaction ID or multixact age of a table (TOAST included)
  or of the database over ``advice_wraparound_warning`` / ``_critical`` percent
  of ``autovacuum_freeze_max_age`` (resp. the multixact one; per-table
  reloptions honoured, as autovacuum does) -> VACUUM FREEZE;
- ``vacuum``: dead tuples above the table's own autovacuum threshold ->
  VACUUM (ANALYZE);
- ``analyze``: a table with rows but no statistics, or modified beyond its
  autoanalyze threshold since its last ANALYZE -> ANALYZE;
- ``table_bloat`` / ``index_bloat``: estimated bloat over both thresholds ->
  VACUUM FULL / REINDEX (the locks they take are said in the reason);
- ``invalid_index``: an invalid index -> REINDEX;
- ``unused_index``: never scanned, not unique nor backing a constraint, with
  statistics old enough -> no action (dropping is the DBA's call);
- ``duplicate_index``: same definition as another index of the table, or a
  left prefix of another btree (unique indexes are never the redundant one)
  -> no action.

An operation of the agent pending or running for the same kind and target
replaces the action by its id (``pending``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import combinations
from typing import Any, Callable, Iterable
from urllib.parse import quote

import psycopg2

from ...errors import HTTPError
from ...tasks import PENDING, Task
from ...tasks.model import utcnow
from . import catalog
from .catalog import size_pretty
from .operations import kind_of
from .payloads import format_datetime
from .settings import MaintenanceSettings
from .sql import load_sql

logger = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning", "info")
RULES = (
    "wraparound", "vacuum", "analyze", "table_bloat", "index_bloat", "invalid_index",
    "unused_index", "duplicate_index",
)  # fmt: skip
#: schemas whose indexes are PostgreSQL's own: never advised to drop
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
#: schemas whose indexes PostgreSQL cannot rebuild concurrently
NO_CONCURRENT_REINDEX = ("pg_catalog", "pg_toast", "information_schema")


# Formatting


def count_text(value: float) -> str:
    """1620000000 -> '1.62 billion'; 85012 -> '85,012'."""
    for limit, name in ((1e9, "billion"), (1e6, "million")):
        if abs(value) >= limit:
            return f"{value / limit:.3g} {name}"
    return f"{int(value):,}"


def _path(dbname: str, *parts: str) -> str:
    return "/maintenance/" + "/".join(quote(p, safe="") for p in (dbname, *parts))


def _table_path(dbname: str, schema: str, table: str, kind: str) -> str:
    return _path(dbname, "schema", schema, "table", table) + f"/{kind}"


def _index_path(dbname: str, schema: str, index: str) -> str:
    return _path(dbname, "schema", schema, "index", index) + "/reindex"


def _action(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"method": "POST", "path": path, "body": body or {}}


def _item(
    rule: str,
    severity: str,
    dbname: str,
    reason: str,
    figures: dict[str, Any],
    action: dict[str, Any] | None,
    schema: str | None = None,
    table: str | None = None,
    index: str | None = None,
) -> dict[str, Any]:
    return {
        "rule": rule,
        "severity": severity,
        "dbname": dbname,
        "schema": schema,
        "table": table,
        "index": index,
        "reason": reason,
        "figures": figures,
        "action": action,
        "pending": None,
    }


def _severity(percent: float, settings: MaintenanceSettings) -> str | None:
    if percent >= settings.advice_wraparound_critical:
        return "critical"
    if percent >= settings.advice_wraparound_warning:
        return "warning"
    return None


# Rules


def _wraparound(
    dbname: str, facts: dict[str, Any], settings: MaintenanceSettings, what: str
) -> tuple[str | None, str, dict[str, Any]]:
    """Severity, reason and figures of the xid and multixact ages of ``facts``."""
    severities, reasons = [], []
    figures: dict[str, Any] = {}
    for age, limit, label, setting in (
        ("xid_age", "freeze_max_age", f"age({what}frozenxid)", "autovacuum_freeze_max_age"),
        (
            "mxid_age",
            "mxid_freeze_max_age",
            f"mxid_age({what}minmxid)",
            "autovacuum_multixact_freeze_max_age",
        ),
    ):
        if facts[age] is None or not facts[limit]:
            continue
        figures[age] = int(facts[age])
        figures[limit] = int(facts[limit])
        percent = 100.0 * facts[age] / facts[limit]
        severity = _severity(percent, settings)
        if severity is not None:
            severities.append(severity)
            reasons.append(
                f"{label} is {count_text(facts[age])}, {percent:.0f}% of {setting}"
                f" ({count_text(facts[limit])})"
            )
    if not severities:
        return None, "", figures
    severity = min(severities, key=SEVERITIES.index)
    reason = (
        "; ".join(reasons) + ": VACUUM FREEZE now, before autovacuum forces an anti-wraparound"
        " vacuum (and, at the limit, PostgreSQL stops assigning transaction IDs)"
    )
    return severity, reason, figures


def database_rules(
    dbname: str, facts: dict[str, Any], settings: MaintenanceSettings
) -> list[dict[str, Any]]:
    """Items about the database itself (its transaction ID age)."""
    severity, reason, figures = _wraparound(dbname, facts, settings, "dat")
    if severity is None:
        return []
    action = _action(_path(dbname) + "/vacuum", {"mode": "freeze"})
    return [_item("wraparound", severity, dbname, reason, figures, action)]


def table_rules(
    dbname: str, row: dict[str, Any], settings: MaintenanceSettings
) -> list[dict[str, Any]]:
    """Items about one table: wraparound, vacuum, analyze, table_bloat."""
    schema, table = row["schema"], row["name"]
    where = {"schema": schema, "table": table}
    items = []

    severity, reason, figures = _wraparound(dbname, row, settings, "rel")
    if severity is not None:
        action = _action(_table_path(dbname, schema, table, "vacuum"), {"mode": "freeze"})
        items.append(_item("wraparound", severity, dbname, reason, figures, action, **where))

    # pg_statistic churns with every ANALYZE and PostgreSQL never analyzes it:
    # autovacuum looks after it, advice about it would only be noise.
    churn = (schema, table) == ("pg_catalog", "pg_statistic")
    dead, limit = row["n_dead_tup"], row["vacuum_limit"]
    if dead and limit is not None and dead > limit and not churn:
        reason = (
            f"{count_text(dead)} dead tuples, above its autovacuum threshold of"
            f" {count_text(limit)} (autovacuum_vacuum_threshold + scale factor x rows):"
            " VACUUM makes their space reusable, ANALYZE refreshes the statistics"
        )
        figures = {"n_dead_tup": dead, "threshold": round(limit), "n_live_tup": row["n_live_tup"]}
        action = _action(_table_path(dbname, schema, table, "vacuum"), {"mode": "analyze"})
        items.append(_item("vacuum", "warning", dbname, reason, figures, action, **where))

    action = _action(_table_path(dbname, schema, table, "analyze"))
    if row["never_analyzed"]:
        reason = (
            f"never analyzed though it has rows (about {count_text(row['n_live_tup'] or 0)}):"
            " the planner guesses its statistics"
        )
        figures = {"n_live_tup": row["n_live_tup"]}
        items.append(_item("analyze", "warning", dbname, reason, figures, action, **where))
    elif (
        not churn
        and row["n_mod_since_analyze"]
        and row["analyze_limit"] is not None
        and row["n_mod_since_analyze"] > row["analyze_limit"]
    ):
        mods, limit = row["n_mod_since_analyze"], row["analyze_limit"]
        reason = (
            f"{count_text(mods)} rows modified since its last ANALYZE, above its autoanalyze"
            f" threshold of {count_text(limit)}: its statistics are stale"
        )
        figures = {"n_mod_since_analyze": mods, "threshold": round(limit)}
        items.append(_item("analyze", "info", dbname, reason, figures, action, **where))

    bloat, size = row["bloat_bytes"], row["size_bytes"]
    if bloat is not None and size:
        percent = 100.0 * bloat / size
        if (
            percent > settings.advice_table_bloat_percent
            and bloat > settings.advice_table_bloat_bytes
        ):
            reason = (
                f"estimated bloat {size_pretty(bloat)}, {percent:.0f}% of {size_pretty(size)}:"
                " VACUUM FULL rewrites the table and gives the space back, but it holds an"
                " ACCESS EXCLUSIVE lock for its whole duration (every query on the table"
                " waits) and needs room for a full copy: run it in a quiet window"
            )
            figures = {
                "bloat_bytes": bloat,
                "table_bytes": size,
                "bloat_percent": round(percent, 1),
            }
            action = _action(_table_path(dbname, schema, table, "vacuum"), {"mode": "full"})
            items.append(_item("table_bloat", "warning", dbname, reason, figures, action, **where))
    return items


def _concurrently(schema: str) -> bool:
    """REINDEX CONCURRENTLY where PostgreSQL can (12+, not system catalogs)."""
    return schema not in NO_CONCURRENT_REINDEX


def _reindex_action(dbname: str, schema: str, index: str) -> dict[str, Any]:
    body = {"concurrently": True} if _concurrently(schema) else {}
    return _action(_index_path(dbname, schema, index), body)


def _reindex_lock_note(schema: str) -> str:
    if _concurrently(schema):
        return (
            "REINDEX CONCURRENTLY rebuilds it without blocking reads or writes (it takes"
            " longer, and needs room for a second copy of the index meanwhile)"
        )
    return "REINDEX blocks writes to the table (and reads using the index) while it rebuilds"


def index_rules(
    dbname: str,
    row: dict[str, Any],
    settings: MaintenanceSettings,
    stats_days: float,
) -> list[dict[str, Any]]:
    """Items about one index: invalid_index, index_bloat, unused_index."""
    schema, index = row["schema"], row["name"]
    where = {"schema": schema, "table": row["table_name"], "index": index}
    size = row["size_bytes"] or 0
    if not row["indisvalid"]:
        reason = (
            "the index is invalid (typically a failed CREATE INDEX CONCURRENTLY): it is"
            " updated on every write but never used; " + _reindex_lock_note(schema)
        )
        action = _reindex_action(dbname, schema, index)
        figures = {"index_bytes": size}
        return [_item("invalid_index", "warning", dbname, reason, figures, action, **where)]
    items = []
    bloat = row["bloat_bytes"]
    if row["amname"] == "btree" and bloat is not None and size:
        percent = 100.0 * bloat / size
        if (
            percent > settings.advice_index_bloat_percent
            and bloat > settings.advice_index_bloat_bytes
        ):
            reason = (
                f"estimated bloat {size_pretty(bloat)}, {percent:.0f}% of {size_pretty(size)}:"
                " a rebuild gives the space back; " + _reindex_lock_note(schema)
            )
            figures = {
                "bloat_bytes": bloat,
                "index_bytes": size,
                "bloat_percent": round(percent, 1),
            }
            action = _reindex_action(dbname, schema, index)
            items.append(_item("index_bloat", "warning", dbname, reason, figures, action, **where))
    if (
        row["idx_scan"] == 0
        and not row["indisunique"]
        and not row["constraint_backed"]
        and schema not in SYSTEM_SCHEMAS
        and stats_days >= settings.advice_unused_index_days
    ):
        reason = (
            f"never scanned in {stats_days:.0f} day(s) of statistics, yet updated on every"
            f" write: consider dropping it (DROP INDEX CONCURRENTLY) to save"
            f" {size_pretty(size)}; check first that standbys and rare reports do not use it"
            " (scans on standbys are not counted here)"
        )
        figures = {"index_bytes": size, "idx_scan": 0, "stats_days": round(stats_days, 1)}
        items.append(_item("unused_index", "info", dbname, reason, figures, None, **where))
    return items


def _signature(row: dict[str, Any], width: int) -> tuple:
    """The first ``width`` key columns: definitions, operator classes, collations, options."""
    return tuple(
        (row["key_columns"][i], row["opclasses"][i], row["collations"][i], row["options"][i])
        for i in range(width)
    )


def _includes(row: dict[str, Any]) -> tuple:
    return tuple(row["key_columns"][row["indnkeyatts"] : row["indnatts"]])


def _keeps(row: dict[str, Any]) -> bool:
    """Whether an index must stay: unique or backing a constraint."""
    return bool(row["indisunique"] or row["constraint_backed"])


def duplicate_rules(dbname: str, indexes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``duplicate_index`` items among the valid indexes of each table."""
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in indexes:
        if row["indisvalid"] and row["key_columns"] is not None:
            by_table.setdefault((row["schema"], row["table_name"]), []).append(row)
    items = []
    for (schema, table), rows in sorted(by_table.items()):
        named: set[str] = set()  # one item per redundant index
        for a, b in combinations(sorted(rows, key=lambda r: r["name"]), 2):
            if a["amname"] != b["amname"] or a["predicate"] != b["predicate"]:
                continue
            exact = (
                a["indnkeyatts"] == b["indnkeyatts"]
                and _signature(a, a["indnkeyatts"]) == _signature(b, b["indnkeyatts"])
                and _includes(a) == _includes(b)
            )
            if exact:
                # the redundant one: not unique nor a constraint's if the other is
                redundant, other = (a, b) if _keeps(b) and not _keeps(a) else (b, a)
                reason = (
                    f"{other['name']} and {redundant['name']} have the same definition:"
                    f" consider dropping {redundant['name']} (DROP INDEX CONCURRENTLY) to save"
                    f" {size_pretty(redundant['size_bytes'] or 0)} and its cost on every write"
                )
            else:
                if a["amname"] != "btree":
                    continue
                short, long = sorted((a, b), key=lambda r: r["indnkeyatts"])
                width = short["indnkeyatts"]
                if (
                    width == long["indnkeyatts"]
                    or _keeps(short)
                    or _includes(short)
                    or _signature(short, width) != _signature(long, width)
                ):
                    continue
                redundant, other = short, long
                reason = (
                    f"its key is a left prefix of {other['name']}, which serves the same"
                    f" queries: consider dropping {redundant['name']} (DROP INDEX CONCURRENTLY)"
                    f" to save {size_pretty(redundant['size_bytes'] or 0)}"
                )
            if redundant["name"] in named:
                continue
            named.add(redundant["name"])
            figures = {
                "index_bytes": redundant["size_bytes"],
                "other_index_bytes": other["size_bytes"],
            }
            items.append(
                _item(
                    "duplicate_index",
                    "info",
                    dbname,
                    reason,
                    figures,
                    None,
                    schema=schema,
                    table=table,
                    index=redundant["name"],
                )  # fmt: skip
            )
    return items


# Reading


def database_advice(conn: Any, dbname: str, settings: MaintenanceSettings) -> list[dict[str, Any]]:
    """Every advice item of the connected database ``dbname`` (pending not applied)."""
    with conn.cursor() as cur:
        cur.execute(load_sql("advice_database"))
        names = [d.name for d in cur.description]
        facts = dict(zip(names, cur.fetchone()))

    def main(ctx: dict) -> list[dict[str, Any]]:
        with conn.cursor() as cur:
            params = {"relid": None, "locked": ctx["locked"], "privileged": ctx["privileged"]}
            catalog._execute_main(cur, "advice", ctx["privileged"], params)
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    rows = catalog._with_locks(conn, "database_context", {}, main)
    stats_days = (facts["now"] - facts["stats_since"]).total_seconds() / 86400
    items = database_rules(dbname, facts, settings)
    indexes = []
    for row in rows:
        if row["kind"] == "table":
            items += table_rules(dbname, row, settings)
        else:
            indexes.append(row)
            items += index_rules(dbname, row, settings, stats_days)
    items += duplicate_rules(dbname, indexes)
    return items


def _target_of(item: dict[str, Any]) -> tuple[str, tuple] | None:
    """(kind, target) of an item's action, as the agent's tasks record them."""
    action = item["action"]
    if action is None:
        return None
    kind = action["path"].rsplit("/", 1)[1]
    index = item["index"] if kind == "reindex" else None
    table = item["table"] if index is None else None
    schema = item["schema"] if (table or index) else None
    return kind, (item["dbname"], schema, table, index)


def apply_pending(items: list[dict[str, Any]], tasks: Iterable[Task]) -> None:
    """Replace an action by the id of a pending or running operation doing it."""
    pending: dict[tuple[str, tuple], str] = {}
    for task in tasks:
        if task.status not in PENDING:
            continue
        t = task.target
        key = (kind_of(task.worker), (t["dbname"], t.get("schema"), t.get("table"), t.get("index")))
        pending.setdefault(key, task.id)
    for item in items:
        key = _target_of(item)
        if key is not None and key in pending:
            item["pending"] = pending[key]
            item["action"] = None


def sort_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most severe first, then by rule, database, schema, table, index."""
    return sorted(
        items,
        key=lambda i: (
            SEVERITIES.index(i["severity"]),
            RULES.index(i["rule"]),
            i["dbname"],
            i["schema"] or "",
            i["table"] or "",
            i["index"] or "",
        ),
    )


def reply(
    items: list[dict[str, Any]], tasks: Iterable[Task], now: datetime | None = None
) -> dict[str, Any]:
    """The JSON reply: ``{"advice": [...], "generated": "<UTC>"}``."""
    apply_pending(items, tasks)
    return {"advice": sort_items(items), "generated": format_datetime(now or utcnow())}


def instance_advice(
    connect: Callable[..., Any], settings: MaintenanceSettings
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Advice of every connectable non-template database, and those that failed.

    Databases are read concurrently (``parallel_databases`` at once), each on
    a connection closed after use.
    """
    with connect(None) as conn, conn.cursor() as cur:
        cur.execute(load_sql("databases"))
        names = [d.name for d in cur.description]
        databases = [dict(zip(names, row)) for row in cur.fetchall()]
    wanted = [d["datname"] for d in databases if d["connectable"]]  # templates are not listed

    def one(dbname: str) -> tuple[str, list[dict[str, Any]] | None, str | None]:
        try:
            with connect(dbname, pooled=False) as conn:
                return dbname, database_advice(conn, dbname, settings), None
        except (HTTPError, psycopg2.Error) as exc:
            message = getattr(exc, "message", None) or str(exc).strip().splitlines()[0]
            logger.warning("Cannot read advice of database %s: %s", dbname, message)
            return dbname, None, message

    items: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    workers = max(1, min(settings.parallel_databases, len(wanted)))
    with ThreadPoolExecutor(workers, thread_name_prefix="maintenance-advice") as pool:
        for dbname, found, error in pool.map(one, wanted):
            if found is None:
                failed.append({"dbname": dbname, "error": error or "unavailable"})
            else:
                items += found
    return items, failed
