"""Operation identity: kinds, worker names, ids, targets and conflict keys (no HTTP).

An operation is a task of the agent's task manager (``temboardagent.tasks``):

- worker ``maintenance.<kind>``;
- target ``{"dbname", "schema", "table", "index"}`` (``None`` where absent), plus
  ``"index_table"`` for an index reindex: the index's table, resolved when the
  operation is scheduled, so a table's own operations and the reindex of its
  indexes never run at the same time (see :func:`conflict_keys`);
- options ``{"mode": "<canonical mode>"}`` for VACUUM, ``{}`` otherwise, plus
  the extension options the client asked for (see :mod:`.statements`).

Requests are parsed and replies shaped in :mod:`.payloads`; operations run in
:mod:`.runner`.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from ...tasks import Task

KINDS = ("vacuum", "analyze", "reindex")
WORKER_PREFIX = "maintenance."


def worker_name(kind: str) -> str:
    """``vacuum`` -> ``maintenance.vacuum``."""
    if kind not in KINDS:
        raise ValueError(f"unknown operation kind: {kind!r}")
    return WORKER_PREFIX + kind


def kind_of(worker: str) -> str | None:
    """``maintenance.vacuum`` -> ``vacuum``; None for a worker not ours."""
    if worker.startswith(WORKER_PREFIX) and worker[len(WORKER_PREFIX) :] in KINDS:
        return worker[len(WORKER_PREFIX) :]
    return None


def operation_id(
    kind: str,
    dbname: str,
    schema: str | None = None,
    table: str | None = None,
    index: str | None = None,
    datetime_text: str = "",
) -> str:
    """Upstream's id: md5 of ``"<db>:<schema>:<table><index>:<datetime>:<kind>"``.

    Missing parts are empty strings. It reproduces the spec's example ids, e.g.
    ``postgres:public:country:2019-03-23T11:28:00Z:vacuum`` -> ``9ce6426b``. The
    task manager falls back to a random id when this one is already used.
    """
    raw = f"{dbname}:{schema or ''}:{table or ''}{index or ''}:{datetime_text}:{kind}"
    return hashlib.md5(raw.encode("utf-8")).hexdigest()[:8]


# Targets and conflicts


def make_target(
    dbname: str,
    schema: str | None = None,
    table: str | None = None,
    index: str | None = None,
    index_table: str | None = None,
) -> dict[str, Any]:
    """The task target; ``index_table`` only for an index reindex."""
    target: dict[str, Any] = {
        "dbname": dbname,
        "schema": schema,
        "table": table,
        "index": index,
    }
    if index is not None:
        target["index_table"] = index_table
    return target


def conflict_keys(task: Task) -> list[tuple[str, ...]]:
    """Database scope -> ``(db,)``; table -> ``(db, s, t)``; index -> ``(db, s, <its table>)``.

    Keys conflict when one is a prefix of the other, so a database-wide operation
    excludes every operation of that database.
    """
    target = task.target
    dbname = target["dbname"]
    schema = target.get("schema")
    if target.get("index") is not None:
        return [(dbname, schema, target.get("index_table") or "")]
    if target.get("table") is not None:
        return [(dbname, schema, target["table"])]
    return [(dbname,)]


def reindex_blockers_params(target: Mapping[str, Any]) -> dict[str, Any]:
    """Bound parameters of ``reindex_blockers`` for a task target."""
    index = target.get("index")
    table = target.get("table") if index is None else None
    return {
        "database": index is None and table is None,
        "schema": target.get("schema"),
        "table": table,
        "index": index,
    }


def pending_filter(
    dbname: str | None = None, schema: str | None = None, table: str | None = None
) -> dict[str, Any]:
    """Target filter of a /scheduled list (only the given fields)."""
    target: dict[str, Any] = {}
    for key, value in (("dbname", dbname), ("schema", schema), ("table", table)):
        if value is not None:
            target[key] = value
    return target
