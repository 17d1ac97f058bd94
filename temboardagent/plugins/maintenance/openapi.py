"""The maintenance plugin's OpenAPI fragment: its routes and their schemas.

Built from the plugin's own constants (kinds, VACUUM modes, limits) and paths
(:mod:`.paths`, shared with the route tables); merged into the agent's document
by :func:`temboardagent.openapi.document`.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

from ... import openapi as core
from ...tasks import STATUSES
from . import paths
from .advice import RULES, SEVERITIES
from .operation_routes import HISTORY_LIMIT, HISTORY_MAX_LIMIT, MAX_OFFSET
from .operations import KINDS
from .outcome import MAX_NOTICE_LENGTH, MAX_NOTICES, MAX_SKIPPED
from .settings import MaintenanceSettings
from .statements import INDEX_CLEANUP_VALUES, MAX_PARALLEL, MAX_TIMEOUT, VACUUM_MODES
from .versions import MIN_VERSION, TABLE_STATS_COLUMNS, major

TAG = "maintenance"
FINISHED_VISIBLE = MaintenanceSettings.finished_visible  # the default
OP_ID = core.TASK_ID
DATETIME = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
    "example": "2019-03-22T12:24:39Z",
}
# Exactly the datetimes a POST accepts: existing UTC dates of years 0001-9999,
# seconds 00-59 (an impossible date such as 2030-02-30 is a 406).
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_DAY = (
    "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
)
_TIME = "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z"
DATETIME_INPUT = {
    "type": ["string", "null"],
    "pattern": f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY}){_TIME}$",
    "example": "2019-03-22T12:24:39Z",
    "description": "UTC start time YYYY-MM-DDTHH:MM:SSZ; absent or null means now",
}
TIMEOUT_INPUT = {
    "type": ["number", "null"],
    "minimum": 0.001,
    "maximum": MAX_TIMEOUT,
    "description": (
        "extension: time limit in seconds (integer or decimal); past it the statement is "
        "cancelled and the operation fails with 'timed out after N s'"
    ),
}
#: every mode a VACUUM accepts: comma-joined options without repetition, any order
MODE_VALUES = [""] + [
    ",".join(combo)
    for size in range(1, len(VACUUM_MODES) + 1)
    for combo in itertools.permutations(VACUUM_MODES, size)
]
#: ``status`` filter of a history: one status or several, comma-joined
STATUS_FILTER = "^(?:{0})(?:,(?:{0}))*$".format("|".join(STATUSES))

NUM = core.nullable("number")
INT = core.nullable("integer")
STR = core.nullable("string")
SIZE_FIELDS = {
    "indexes_bloat_bytes": NUM,
    "indexes_bloat_size": STR,
    "indexes_bytes": NUM,
    "indexes_size": STR,
    "n_indexes": NUM,
    "n_tables": NUM,
    "tables_bloat_bytes": NUM,
    "tables_bloat_size": STR,
    "tables_bytes": NUM,
    "tables_size": STR,
    "toast_bytes": NUM,
    "toast_size": STR,
    "total_bytes": NUM,
    "total_size": STR,
}
LOCKED = {
    "type": "boolean",
    "description": (
        "extension: true when another session holds or awaits an ACCESS EXCLUSIVE lock on "
        "the table; sizes then come from pg_class.relpages"
    ),
}
BLOAT_METHOD = {
    "type": "string",
    "enum": ["estimate", "pgstattuple"],
    "description": (
        "extension: how bloat_bytes was obtained: the statistical estimate, or measured "
        "with the pgstattuple extension (table page with ?bloat=exact)"
    ),
}
INDEX_FIELDS = {
    "bloat_bytes": NUM,
    "bloat_method": BLOAT_METHOD,
    "bloat_size": STR,
    "def": {"type": ["string", "null"], "description": "null while the table is locked"},
    "idx_tup_fetch": INT,
    "idx_tup_read": INT,
    "indexrelname": {"type": "string"},
    "indisunique": {"type": "boolean"},
    "locked": LOCKED,
    "name": {"type": "string"},
    "number_of_columns": {"type": "integer"},
    "scans": INT,
    "tablename": {"type": "string"},
    "tablespace": STR,
    "total_bytes": INT,
    "total_size": STR,
    "type": {"type": "string"},
}
TABLE_FIELDS = {
    "bloat_bytes": NUM,
    "bloat_method": BLOAT_METHOD,
    "bloat_size": STR,
    "index_bloat_bytes": NUM,
    "index_bloat_size": STR,
    "index_bytes": INT,
    "index_size": STR,
    "n_indexes": {"type": "integer"},
    "locked": LOCKED,
    "name": {"type": "string"},
    "row_estimate": {
        **NUM,
        "description": "pg_class.reltuples; -1 when the table was never vacuumed nor "
        "analyzed (also on PostgreSQL 12 and 13, where reltuples is 0 then)",
    },
    "table_bytes": INT,
    "table_size": STR,
    "toast_bytes": INT,
    "toast_size": STR,
    "total_bytes": INT,
    "total_size": STR,
}


def _table_stat_fields() -> dict[str, dict]:
    """The table page's ``pg_stat_all_tables`` fields: the same on every version."""
    fields = {}
    for col in TABLE_STATS_COLUMNS:
        if col.sql_type in ("oid", "name"):
            schema: dict[str, Any] = {"type": "string"}
        elif col.sql_type == "timestamptz":
            schema = {**STR, "description": "PostgreSQL timestamptz text"}
        else:
            schema = dict(NUM if col.sql_type == "float8" else INT)
        notes = [col.description] if col.description else []
        if col.since > MIN_VERSION:
            notes.append(f"null before PostgreSQL {major(col.since)}")
        if notes:
            schema["description"] = "; ".join([schema.get("description", "")] + notes).lstrip("; ")
        fields[col.name] = schema
    return fields


LIST_ITEM = {
    "id": OP_ID,
    "dbname": {"type": "string"},
    "schema": STR,
    "table": STR,
    "index": STR,
    "mode": STR,
    "datetime": DATETIME,
    "status": {"type": "string", "enum": list(STATUSES)},
    "options": {
        "type": "object",
        "description": (
            "extension: the options asked besides mode (skip_locked, index_cleanup, truncate, "
            "parallel, process_toast, concurrently, timeout); {} for none"
        ),
    },
}
_COUNT = {"type": ["integer", "null"], "minimum": 0}
PROGRESS = {
    "type": ["object", "null"],
    "description": (
        "extension: null unless the operation is running (doing). Figures from PostgreSQL's "
        "progress views; a figure PostgreSQL does not give is null, never guessed"
    ),
    "properties": {
        "phase": {"type": ["string", "null"], "description": "PostgreSQL's own phase name"},
        "relation": {
            "type": ["string", "null"],
            "description": "schema.name of the relation being processed",
        },
        "done": {**_COUNT, "description": "counter the phase advances"},
        "total": {**_COUNT, "description": "its total; null when the phase has none"},
        "unit": {
            "type": ["string", "null"],
            "enum": ["blocks", "tuples", "indexes", "lockers", "tables", "statistics", None],
        },
        "percent": {"type": ["number", "null"], "minimum": 0},
        "relations_done": _COUNT,
        "relations_total": _COUNT,
        "elapsed": {"type": ["number", "null"], "description": "seconds since it started"},
        "waiting_for_lock": {
            "type": ["boolean", "null"],
            "description": "its backend waits for a lock; null when its backend is not known",
        },
        "blocked_by": {
            "type": ["array", "null"],
            "items": {"type": "integer"},
            "description": "pids of the sessions it waits for (pg_blocking_pids)",
        },
    },
    "required": [
        "phase", "relation", "done", "total", "unit", "percent", "relations_done",
        "relations_total", "elapsed", "waiting_for_lock", "blocked_by",
    ],
}  # fmt: skip
LIST_ITEM["progress"] = PROGRESS
ACTIVITY_ITEM = {
    "pid": {"type": "integer"},
    "datname": STR,
    "relation": STR,
    "command": {
        "type": ["string", "null"],
        "description": "VACUUM, VACUUM FULL, ANALYZE, CLUSTER, CREATE INDEX, REINDEX, ...",
    },
    "phase": STR,
    "done": _COUNT,
    "total": _COUNT,
    "unit": PROGRESS["properties"]["unit"],
    "percent": {"type": ["number", "null"], "minimum": 0},
    "started": {"type": ["string", "null"], "pattern": DATETIME["pattern"]},
    "duration": {"type": ["number", "null"], "description": "seconds"},
    "autovacuum": {"type": "boolean"},
    "wraparound": {
        "type": "boolean",
        "description": "only on autovacuum items: an autovacuum to prevent wraparound",
    },
    "waiting_for_lock": {"type": "boolean"},
    "blocked_by": {"type": "array", "items": {"type": "integer"}},
    "operation": {
        "type": ["object", "null"],
        "description": "the agent's operation when it is one, else null",
        "properties": {"id": OP_ID, "kind": {"type": "string", "enum": list(KINDS)}},
        "required": ["id", "kind"],
    },
}
ADVICE_ITEM = {
    "rule": {"type": "string", "enum": list(RULES)},
    "severity": {"type": "string", "enum": list(SEVERITIES)},
    "dbname": {"type": "string"},
    "schema": STR,
    "table": STR,
    "index": STR,
    "reason": {"type": "string", "description": "why, with the figures, and the risk"},
    "figures": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
    "action": {
        "type": ["object", "null"],
        "description": (
            "the request that does it, to send as is with a session; null when no operation "
            "of the agent is the answer, or when one is already pending (see pending)"
        ),
        "properties": {
            "method": {"const": "POST"},
            "path": {"type": "string"},
            "body": {"type": "object"},
        },
        "required": ["method", "path", "body"],
    },
    "pending": {
        "type": ["string", "null"],
        "pattern": OP_ID["pattern"],
        "description": "id of the agent's pending or running operation that does it",
    },
}
HISTORY_ITEM = {
    **LIST_ITEM,
    "attempts": {
        "type": ["integer", "null"],
        "description": (
            "extension: times the statement was tried (passes of a database-wide VACUUM or "
            "ANALYZE); more than 1 after lock retries; null before the first"
        ),
    },
    "sql": STR,
    "created": DATETIME,
    "started": {"type": ["string", "null"], "pattern": DATETIME["pattern"]},
    "finished": {"type": ["string", "null"], "pattern": DATETIME["pattern"]},
    "duration": NUM,
    "error": STR,
    "notices": {
        "type": "array",
        "items": {"type": "string"},
        "maxItems": MAX_NOTICES,
        "description": (
            f"extension: messages PostgreSQL sent while the operation ran (first {MAX_NOTICES}, "
            f'each cut to {MAX_NOTICE_LENGTH} characters), e.g. \'WARNING:  skipping "t" --- only '
            "table or database owner can vacuum it'"
        ),
    },
    "skipped": {
        "type": "array",
        "maxItems": MAX_SKIPPED,
        "items": core.obj({"relation": {"type": "string"}, "reason": {"type": "string"}}),
        "description": (
            "extension: relations PostgreSQL skipped (schema.name when the name is unique in "
            "the database) with its message. A single table or index skipped fails the "
            "operation; a database-wide one fails only when a relation the role may process "
            "was skipped (lock not available), not for those it may not process"
        ),
    },
    "skipped_count": {
        "type": "integer",
        "description": (
            f"extension: number of skipped relations (skipped keeps the first {MAX_SKIPPED})"
        ),
    },
}

SCHEMAS: dict[str, Any] = {
    "Instance": core.obj(
        {
            "databases": {
                "type": "array",
                "items": core.ref("DatabaseSummary"),
                "description": "The databases that are not templates.",
            },
            "instance": core.obj({"total_bytes": NUM, "total_size": STR}),
        }
    ),
    "DatabaseSummary": core.obj(
        {
            "datname": {"type": "string"},
            **SIZE_FIELDS,
            "reason": {
                "type": ["string", "null"],
                "description": (
                    "extension: why the figures are null (database closed to connections, "
                    "connection refused to the agent's role, unreachable); null otherwise"
                ),
            },
        }
    ),
    "Database": core.obj(
        {
            "schemas": {"type": "array", "items": core.ref("SchemaSummary")},
            "total_bytes": NUM,
            "total_size": STR,
        }
    ),
    "SchemaSummary": core.obj({"name": {"type": "string"}, **SIZE_FIELDS}),
    "Schema": core.obj(
        {
            "indexes": {"type": "array", "items": core.ref("Index")},
            "size": STR,
            "tables": {"type": "array", "items": core.ref("TableSummary")},
            "total_bytes": NUM,
        }
    ),
    "Index": core.obj(INDEX_FIELDS),
    "TableSummary": core.obj(TABLE_FIELDS),
    "Table": core.obj(
        {
            **{name: schema for name, schema in TABLE_FIELDS.items() if name != "n_indexes"},
            **_table_stat_fields(),
            "fillfactor": {"type": "integer"},
            "indexes": {"type": "array", "items": core.ref("Index")},
        }
    ),
    "VacuumRequest": {
        "type": "object",
        "properties": {
            "mode": {
                "type": ["string", "null"],
                "enum": MODE_VALUES + [None],
                "description": "comma-joined subset of full, freeze, analyze; empty or null: plain",
                "example": "full,analyze",
            },
            "datetime": DATETIME_INPUT,
            "skip_locked": core.nullable("boolean", description="extension, PostgreSQL >= 12"),
            "index_cleanup": {
                "type": ["string", "null"],
                "enum": [*INDEX_CLEANUP_VALUES, None],
                "description": "extension, PostgreSQL >= 12 (auto: >= 14)",
            },
            "truncate": core.nullable("boolean", description="extension, PostgreSQL >= 12"),
            "parallel": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": MAX_PARALLEL,
                "description": "extension, PostgreSQL >= 13, not with mode full",
            },
            "process_toast": core.nullable("boolean", description="extension, PostgreSQL >= 14"),
            "timeout": TIMEOUT_INPUT,
        },
        # PostgreSQL refuses PARALLEL with FULL (406)
        "not": {
            "required": ["mode", "parallel"],
            "properties": {
                "mode": {"type": "string", "pattern": "full"},
                "parallel": {"type": "integer"},
            },
        },
    },
    "OperationRequest": {
        "type": "object",
        "description": "ANALYZE takes no mode (ignored when sent)",
        "properties": {"datetime": DATETIME_INPUT, "timeout": TIMEOUT_INPUT},
    },
    "ReindexRequest": {
        "type": "object",
        "description": "REINDEX takes no mode (ignored when sent)",
        "properties": {
            "datetime": DATETIME_INPUT,
            "concurrently": {
                "type": ["boolean", "null"],
                "description": (
                    "extension, PostgreSQL >= 12: REINDEX ... CONCURRENTLY (writes go on); "
                    "409 when the index or table has indexes that cannot be rebuilt "
                    "concurrently (system catalogs, exclusion constraints)"
                ),
            },
            "timeout": TIMEOUT_INPUT,
        },
    },
    "OperationId": core.obj({"id": OP_ID}, extra=False),
    "AdviceItem": core.obj(ADVICE_ITEM),
    "Advice": core.obj(
        {
            "advice": {"type": "array", "items": core.ref("AdviceItem")},
            "generated": DATETIME,
            "unreachable": {
                "type": "array",
                "description": "extension: databases whose advice could not be read",
                "items": core.obj({"dbname": {"type": "string"}, "error": {"type": "string"}}),
            },
        }
    ),
    "ScheduledOperation": {
        **core.obj(
            {
                **LIST_ITEM,
                "status": {
                    "type": "string",
                    "enum": list(STATUSES),
                    "description": "todo, queued or doing while pending; done, failed, "
                    "canceled or aborted for an operation finished in the last "
                    f"[maintenance] finished_visible seconds (default {FINISHED_VISIBLE}), "
                    "listed so that polling clients see it end",
                },
            }
        ),
        "description": "Pending and running operations, and those finished in the last "
        "finished_visible seconds, ordered by datetime",
    },
    "Activity": core.obj(
        ACTIVITY_ITEM, required=sorted(name for name in ACTIVITY_ITEM if name != "wraparound")
    ),
    "Operation": core.obj(HISTORY_ITEM),
    "Canceled": core.obj({"response": {"const": "ok"}}, extra=False),
}

#: the core's error texts and the plugin's own statuses
ERROR_TEXT = {
    **core.ERROR_TEXT,
    "403": (
        'The agent\'s PostgreSQL role may not do this, e.g. role "x" may not VACUUM public.t '
        "(owner: y), or may not connect to the database."
    ),
    "409": (
        "Conflict: duplicate pending operation, operation already finished, or REINDEX "
        "CONCURRENTLY of indexes that cannot be rebuilt concurrently."
    ),
    "504": "A read took longer than [maintenance] statement_timeout; PostgreSQL canceled it.",
}
NAME = {"type": "string", "minLength": 1}
#: the path parameters of :mod:`.paths`
PATH_PARAMS = {
    "dbname": {"description": "Database name, percent-encoded (``/`` as ``%2F``)", "schema": NAME},
    "schema": {"description": "Schema name, percent-encoded (``/`` as ``%2F``)", "schema": NAME},
    "table": {"description": "Table name, percent-encoded (``/`` as ``%2F``)", "schema": NAME},
    "index": {"description": "Index name, percent-encoded (``/`` as ``%2F``)", "schema": NAME},
    "operation": {"description": "Operation id", "schema": OP_ID},
}
_operation = functools.partial(core.operation, tag=TAG, params=PATH_PARAMS, error_text=ERROR_TEXT)


def _links_to_operation(kind: str) -> dict:
    """OpenAPI links from the reply of a POST to the operation it created."""
    path = paths.operation(kind)
    return {
        name: {
            "operationId": core.operation_id(method, path),
            "parameters": {"operation": "$response.body#/id"},
        }
        for name, method in (("GetOperation", "GET"), ("CancelOperation", "DELETE"))
    }


def operations() -> list[core.Operation]:
    """Every (method, path, operation object) of the plugin."""
    db, schema, table, index = paths.DATABASE, paths.SCHEMA, paths.TABLE, paths.INDEX
    read_errors = ("403", "404", "409", "503", "504")
    ops = [
        _operation("GET", paths.BASE, "Instance and databases sizes", core.ref("Instance"),
                   auth="key", errors=("503", "504")),
        _operation("GET", db, "One database: schemas sizes", core.ref("Database"), auth="key",
                   errors=read_errors),
        _operation("GET", schema, "One schema: tables and indexes", core.ref("Schema"),
                   auth="key", errors=read_errors),
        _operation("GET", table, "One table: statistics, sizes, indexes", core.ref("Table"),
                   auth="key", errors=("404", "406", "409", "503"), parameters=[
                       {"name": "bloat", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["estimate", "exact"],
                                   "default": "estimate"},
                        "description": (
                            "exact: measure the table and its btree indexes with the "
                            "pgstattuple extension (reads them; 409 when it is not installed)")},
                   ]),
    ]  # fmt: skip
    ops.append(
        _operation(
            "GET", paths.ACTIVITY,
            "Every maintenance command running in the instance (autovacuum, other sessions, "
            "the agent's operations)",
            {"type": "array", "items": core.ref("Activity")}, auth="key", errors=("503",),
        )
    )  # fmt: skip
    ops += [
        _operation("GET", paths.ADVICE,
                   "What needs maintenance now in every database, most severe first",
                   core.ref("Advice"), auth="key", errors=("503",)),
        _operation("GET", paths.DATABASE_ADVICE, "What needs maintenance now in one database",
                   core.ref("Advice"), auth="key", errors=read_errors),
    ]  # fmt: skip
    scheduled = {"type": "array", "items": core.ref("ScheduledOperation")}
    post_errors = ("403", "404", "406", "409", "503", "504")
    list_errors = ("404", "503", "504")
    history_params = [
        {"name": "db", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "only this database"},
        {"name": "status", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": STATUS_FILTER},
         "description": "only these statuses (comma-joined)"},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": HISTORY_MAX_LIMIT,
                    "default": HISTORY_LIMIT}},
        {"name": "offset", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}},
    ]  # fmt: skip
    for kind in KINDS:
        label = kind.upper()
        request = core.ref(
            {"vacuum": "VacuumRequest", "reindex": "ReindexRequest"}.get(kind, "OperationRequest")
        )
        links = _links_to_operation(kind)
        ops += [
            _operation("GET", paths.scheduled(paths.BASE, kind),
                       f"Pending, running and just finished {label} operations", scheduled,
                       auth="key"),
            _operation("GET", paths.history(kind), f"{label} operations, newest first",
                       {"type": "array", "items": core.ref("Operation")}, auth="key",
                       errors=("406",), parameters=history_params),
            _operation("GET", paths.operation(kind), f"One {label} operation",
                       core.ref("Operation"), auth="key", errors=("404",)),
            _operation("DELETE", paths.operation(kind),
                       f"Cancel a {label} operation", core.ref("Canceled"), errors=("404", "409")),
            _operation("POST", paths.action(db, kind), f"{label} the database, now or later",
                       core.ref("OperationId"), errors=post_errors, body=request, links=links),
            _operation("POST", paths.action(table, kind), f"{label} the table, now or later",
                       core.ref("OperationId"), errors=post_errors, body=request, links=links),
            _operation("GET", paths.scheduled(db, kind), f"{label} operations of the database",
                       scheduled, auth="key", errors=list_errors),
            _operation("GET", paths.scheduled(table, kind),
                       f"{label} operations of the table"
                       + (" (reindex: the schema's list)" if kind == "reindex" else ""),
                       scheduled, auth="key", errors=list_errors),
        ]  # fmt: skip
    ops += [
        _operation("POST", paths.action(index, "reindex"), "REINDEX the index, now or later",
                   core.ref("OperationId"), errors=post_errors, body=core.ref("ReindexRequest"),
                   links=_links_to_operation("reindex")),
        _operation("GET", paths.scheduled(schema, "reindex"), "REINDEX operations of the schema",
                   scheduled, auth="key", errors=list_errors),
        _operation("GET", paths.REINDEX_TABLE_ALIAS,
                   "Alias of the schema's REINDEX list (spec path)", scheduled, auth="key",
                   errors=list_errors),
    ]  # fmt: skip
    return ops


def fragment() -> dict:
    """The plugin's part of the agent's OpenAPI document."""
    return core.fragment(operations(), SCHEMAS)
