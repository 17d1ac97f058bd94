"""Live progress of running operations, and every maintenance command of the instance.

PostgreSQL reports what a maintenance command is doing in its progress views
(``pg_stat_progress_vacuum``, ``_cluster`` for VACUUM FULL and CLUSTER,
``_create_index`` for CREATE INDEX and REINDEX, ``_analyze`` from 13).
``sql/progress_*.sql`` map each view to the same columns: the phase, the
counters that phase advances (``done``, ``total``, ``unit``; ``total`` null
when the view has none), and the relation. Lock waits come from
``pg_stat_activity.wait_event_type`` and ``pg_blocking_pids``.

Nothing is guessed: a figure PostgreSQL does not give (a phase without a
counter, a version without the view, a backend between two relations) is
``null``.
"""

from __future__ import annotations

import functools
import logging
import re
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Callable, Iterable

import psycopg2
import psycopg2.errors

from ...errors import HTTPError
from ...tasks import Task
from ...tasks.model import utcnow
from .operations import kind_of
from .payloads import format_datetime
from .sql import load_sql

logger = logging.getLogger(__name__)

#: ``connect(dbname=None, **options)`` -> context manager yielding a connection
Connect = Callable[..., AbstractContextManager]
#: ``relations(task_id)`` -> (done, total) relations of a database-wide operation run
#: relation by relation, None otherwise
Relations = Callable[[str], "tuple[int, int] | None"]
#: progress views by the first PostgreSQL version that has them
VIEWS = (
    (120000, "progress_vacuum"),
    (120000, "progress_cluster"),
    (120000, "progress_create_index"),
    (130000, "progress_analyze"),
)
#: databases whose relation names one activity request resolves at most
MAX_NAME_LOOKUPS = 8
#: "autovacuum: VACUUM ANALYZE public.t (to prevent wraparound)"
_AUTOVACUUM = re.compile(
    r"autovacuum: (?P<command>VACUUM ANALYZE|VACUUM|ANALYZE|BRIN summarize) (?P<relation>.+?)"
    r"(?P<wraparound> \(to prevent wraparound\))?$",
    re.S,
)
_COMMAND = re.compile(
    r"\s*(vacuum|analy[sz]e|reindex|cluster|create\s+(?:unique\s+)?index)\b", re.I | re.ASCII
)

_PREPARED = "temboard_agent_progress"
#: sent in one message: SET LOCAL lasts for its implicit transaction
_EXECUTE = (
    "SET LOCAL plan_cache_mode = force_generic_plan;"
    f" EXECUTE {_PREPARED} (%(pids)s::pg_catalog.int4[])"
)


@functools.cache
def query(name: str, version: int) -> str:
    """``sql/<name>.sql`` with ``{views}`` replaced by the server's progress views."""
    views = "\nUNION ALL\n".join(
        load_sql(view).strip().rstrip(";") for since, view in VIEWS if version >= since
    )
    return load_sql(name).replace("{views}", views)


def _major(conn: Any) -> int:
    return conn.server_version // 10000 * 10000


def percent(done: int | None, total: int | None) -> float | None:
    """``done`` out of ``total`` in percent (one decimal); None without a total."""
    if done is None or not total:
        return None
    return round(100.0 * done / total, 1)


def backends(conn: Any, pids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Progress rows of these backends (one query), keyed by pid; absent when gone.

    Planning the union of the progress views costs far more than running it,
    so the query is prepared once per connection and run with a generic plan.
    """
    pids = sorted(set(pids))
    if not pids:
        return {}
    with conn.cursor() as cur:
        try:
            cur.execute(_EXECUTE, {"pids": pids})
        except psycopg2.errors.InvalidSqlStatementName:  # not prepared on this connection
            text = query("progress", _major(conn)).replace("%(pids)s::pg_catalog.int4[]", "$1")
            cur.execute(f"PREPARE {_PREPARED} (pg_catalog.int4[]) AS {text}")
            cur.execute(_EXECUTE, {"pids": pids})
        names = [d.name for d in cur.description]
        return {row[0]: dict(zip(names, row)) for row in cur.fetchall()}


def relation_names(conn: Any, oids: Iterable[int]) -> dict[int, str]:
    """``schema.name`` of relations of the connected database, by OID."""
    oids = sorted(set(oids))
    if not oids:
        return {}
    with conn.cursor() as cur:
        cur.execute(load_sql("relation_names"), {"oids": oids})
        return {oid: f"{schema}.{name}" for oid, schema, name in cur.fetchall()}


def _target_relation(task: Task) -> str | None:
    """``schema.table`` or ``schema.index`` of a single-relation operation."""
    target = task.target
    name = target.get("index") or target.get("table")
    return f"{target.get('schema')}.{name}" if name is not None else None


def operation_progress(
    task: Task,
    backend: dict[str, Any] | None,
    relation: str | None = None,
    now: datetime | None = None,
    relations: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The ``progress`` object of a running operation.

    ``backend`` is its row from :func:`backends` (None when its backend is not
    known or gone: lock and counter fields are then null); ``relation`` the
    name of the relation a database-wide operation is processing, and
    ``relations`` how many of its relations are done, out of how many.
    """
    now = now or utcnow()
    single = _target_relation(task)
    phase = done = total = unit = None
    waiting = blocked = None
    if backend is not None:
        waiting = bool(backend["waiting_for_lock"])
        blocked = sorted(backend["blocked_by"] or [])
        if backend["phase"] is not None:
            phase, done, total, unit = (backend[k] for k in ("phase", "done", "total", "unit"))
    elapsed = None
    if task.started is not None:
        elapsed = round(max((now - task.started).total_seconds(), 0.0), 1)
    return {
        "phase": phase,
        "relation": single if single is not None else (relation if phase else None),
        "done": done,
        "total": total,
        "unit": unit,
        "percent": percent(done, total),
        # counted by the runner, which runs database-wide VACUUM and ANALYZE
        # relation by relation; PostgreSQL itself does not count them
        "relations_done": relations[0] if relations and single is None else None,
        "relations_total": relations[1] if relations and single is None else None,
        "elapsed": elapsed,
        "waiting_for_lock": waiting,
        "blocked_by": blocked,
    }


class ProgressReader:
    """Reads progress for the operation lists: one query per list, whatever its length."""

    def __init__(self, connect: Connect, relations: Relations | None = None) -> None:
        self.connect = connect
        self.relations = relations

    def for_tasks(self, tasks: Iterable[Task]) -> dict[str, dict[str, Any]]:
        """``progress`` of each running task, by task id (other tasks absent).

        PostgreSQL unreachable: the objects are still given, with the fields
        that need it null, so the lists keep answering.
        """
        doing = [task for task in tasks if task.status == "doing"]
        if not doing:
            return {}
        rows: dict[int, dict[str, Any]] = {}
        names: dict[tuple[str, int], str] = {}
        try:
            with self.connect() as conn:
                rows = backends(conn, [t.pid for t in doing if t.pid is not None])
            names = self._database_wide_names(doing, rows)
        except (HTTPError, psycopg2.Error) as exc:
            logger.warning("Cannot read the progress of running operations: %s", exc)
        now = utcnow()
        result = {}
        for task in doing:
            row = rows.get(task.pid) if task.pid is not None else None
            relation = None
            if row is not None and row["relid"] is not None:
                relation = names.get((task.target["dbname"], row["relid"]))
            counts = self.relations(task.id) if self.relations is not None else None
            result[task.id] = operation_progress(task, row, relation, now, counts)
        return result

    def _database_wide_names(
        self, doing: list[Task], rows: dict[int, dict[str, Any]]
    ) -> dict[tuple[str, int], str]:
        """Names of the relations database-wide operations are processing."""
        wanted: dict[str, set[int]] = {}
        for task in doing:
            row = rows.get(task.pid) if task.pid is not None else None
            if _target_relation(task) is None and row is not None and row["relid"] is not None:
                wanted.setdefault(task.target["dbname"], set()).add(row["relid"])
        names: dict[tuple[str, int], str] = {}
        for dbname, oids in list(wanted.items())[:MAX_NAME_LOOKUPS]:
            try:
                with self.connect(dbname, pooled=False) as conn:
                    for oid, name in relation_names(conn, oids).items():
                        names[(dbname, oid)] = name
            except (HTTPError, psycopg2.Error) as exc:
                logger.debug("Cannot name relations of database %s: %s", dbname, exc)
        return names


def _command_of(row: dict[str, Any]) -> tuple[str | None, str | None, bool, bool | None]:
    """(command, relation from the query text, autovacuum, wraparound) of an activity row."""
    query = row["query"] or ""
    if row["backend_type"] == "autovacuum worker":
        match = _AUTOVACUUM.match(query)
        if match is None:
            return row["command"], None, True, False
        command = row["command"] or match["command"].upper()
        return command, match["relation"], True, match["wraparound"] is not None
    if row["command"] is not None:
        return row["command"], None, False, None
    match = _COMMAND.match(query)
    command = re.sub(r"\s+", " ", match.group(1).upper()) if match else None
    if command == "ANALYSE":
        command = "ANALYZE"
    return command, None, False, None


def activity(connect: Connect, running: Iterable[Task]) -> list[dict[str, Any]]:
    """``GET /maintenance/activity``: every maintenance command running now.

    ``running`` are the agent's own ``doing`` operations, matched by backend
    pid. Relation names come from each database's catalog (at most
    :data:`MAX_NAME_LOOKUPS` databases per call), else from the text
    autovacuum shows, else null.
    """
    ours = {task.pid: task for task in running if task.pid is not None}
    with connect() as conn:
        current_db = conn.get_dsn_parameters().get("dbname")
        with conn.cursor() as cur:
            cur.execute(query("activity", _major(conn)))
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, row)) for row in cur.fetchall()]
        wanted: dict[str, set[int]] = {}
        for row in rows:
            if row["relid"] is not None and row["datname"] is not None:
                wanted.setdefault(row["datname"], set()).add(row["relid"])
        relations: dict[tuple[str, int], str] = {}
        if current_db in wanted:
            for oid, name in relation_names(conn, wanted.pop(current_db)).items():
                relations[(current_db, oid)] = name
    for dbname, oids in list(wanted.items())[:MAX_NAME_LOOKUPS]:
        try:
            with connect(dbname, pooled=False) as conn:
                for oid, name in relation_names(conn, oids).items():
                    relations[(dbname, oid)] = name
        except (HTTPError, psycopg2.Error) as exc:
            logger.debug("Cannot name relations of database %s: %s", dbname, exc)

    items = []
    for row in rows:
        command, text_relation, autovacuum, wraparound = _command_of(row)
        relation = relations.get((row["datname"], row["relid"])) or text_relation
        task = ours.get(row["pid"])
        item = {
            "pid": row["pid"],
            "datname": row["datname"],
            "relation": relation,
            "command": command,
            "phase": row["phase"],
            "done": row["done"],
            "total": row["total"],
            "unit": row["unit"],
            "percent": percent(row["done"], row["total"]),
            "started": format_datetime(row["started"]) if row["started"] else None,
            "duration": round(row["duration"], 1) if row["duration"] is not None else None,
            "autovacuum": autovacuum,
            "waiting_for_lock": bool(row["waiting_for_lock"]),
            "blocked_by": sorted(row["blocked_by"] or []),
            "operation": (
                {"id": task.id, "kind": kind_of(task.worker)} if task is not None else None
            ),
        }
        if autovacuum:
            item["wraparound"] = wraparound
        items.append(item)
    return items
