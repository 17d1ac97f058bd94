"""The OpenAPI 3.1 description of the whole API, served at ``GET /openapi.json``.

Written declaratively (not derived from the route table) so that a test can
compare the two: every registered route must be documented and vice versa.
"""

from __future__ import annotations

import copy
import itertools
from functools import lru_cache
from typing import Any

from . import __version__
from .plugins.maintenance.versions import MIN_VERSION, TABLE_STATS_COLUMNS, major

KINDS = ("vacuum", "analyze", "reindex")
OP_ID = {"type": "string", "pattern": "^[0-9a-f]{8}$", "example": "229cc880"}
DATETIME = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
    "example": "2019-03-22T12:24:39Z",
}
STATUSES = ["todo", "queued", "doing", "done", "failed", "canceled", "aborted"]

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
    "maximum": 2147483,
    "description": (
        "extension: time limit in seconds (integer or decimal); past it the statement is "
        "cancelled and the operation fails with 'timed out after N s'"
    ),
}
#: every mode a VACUUM accepts: comma-joined options without repetition, any order
VACUUM_MODES = [""] + [
    ",".join(combo)
    for size in (1, 2, 3)
    for combo in itertools.permutations(("full", "freeze", "analyze"), size)
]
#: ``status`` filter of a history: one status or several, comma-joined
STATUS_FILTER = "^(?:{0})(?:,(?:{0}))*$".format("|".join(STATUSES))


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema_type: str, **extra: Any) -> dict:
    return {"type": [schema_type, "null"], **extra}


def _obj(props: dict, required: list[str] | None = None, extra: bool = True) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = sorted(props) if required is None else required
    if not extra:
        schema["additionalProperties"] = False
    return schema


NUM = _nullable("number")
INT = _nullable("integer")
STR = _nullable("string")
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
    "status": {"type": "string", "enum": STATUSES},
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
ADVICE_RULES = [
    "wraparound", "vacuum", "analyze", "table_bloat", "index_bloat", "invalid_index",
    "unused_index", "duplicate_index",
]  # fmt: skip
ADVICE_ITEM = {
    "rule": {"type": "string", "enum": ADVICE_RULES},
    "severity": {"type": "string", "enum": ["critical", "warning", "info"]},
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
        "maxItems": 100,
        "description": (
            "extension: messages PostgreSQL sent while the operation ran (first 100, each cut "
            'to 1000 characters), e.g. \'WARNING:  skipping "t" --- only table or database owner '
            "can vacuum it'"
        ),
    },
    "skipped": {
        "type": "array",
        "maxItems": 1000,
        "items": _obj({"relation": {"type": "string"}, "reason": {"type": "string"}}),
        "description": (
            "extension: relations PostgreSQL skipped (schema.name when the name is unique in "
            "the database) with its message. A single table or index skipped fails the "
            "operation; a database-wide one fails only when a relation the role may process "
            "was skipped (lock not available), not for those it may not process"
        ),
    },
    "skipped_count": {
        "type": "integer",
        "description": "extension: number of skipped relations (skipped keeps the first 1000)",
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": {"type": "string"},
            "id": {**OP_ID, "description": "the pending duplicate (409 of a POST)"},
            "retry_after": {"type": "number", "description": "seconds (429)"},
        },
        required=["error"],
        extra=False,
    ),
    "Credentials": _obj(
        {
            "username": {"type": "string", "minLength": 1, "maxLength": 1024},
            "password": {"type": "string", "minLength": 1, "maxLength": 1024},
        }
    ),
    "Session": _obj({"session": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}, extra=False),
    "Logout": _obj({"logout": {"const": True}}, extra=False),
    "Profile": _obj({"username": STR}, extra=False),
    "Discover": _obj(
        {
            "hostname": {"type": "string"},
            "cpu": INT,
            "memory_size": {"type": "integer"},
            "pg_port": {"type": "integer"},
            "pg_version": {"type": "string"},
            "pg_version_summary": {"type": "string"},
            "pg_data": STR,
            "pg_block_size": {"type": "integer"},
            "plugins": {"type": "array", "items": {"type": "string"}},
            "privileges": _obj(
                {
                    "role": {"type": "string", "description": "the agent's PostgreSQL role"},
                    "superuser": {"type": "boolean"},
                    "pg_monitor": {"type": "boolean", "description": "uses pg_monitor's rights"},
                    "pg_maintain": {
                        "type": "boolean",
                        "description": "uses pg_maintain's rights (PostgreSQL 17+)",
                    },
                    "can_read_statistics": {
                        "type": "boolean",
                        "description": (
                            "reads every table's column statistics (pg_statistic); otherwise "
                            "bloat is estimated only for tables the role may SELECT"
                        ),
                    },
                },
            ),
        }
    ),
    "Instance": _obj(
        {
            "databases": {
                "type": "array",
                "items": _ref("DatabaseSummary"),
                "description": "The databases that are not templates.",
            },
            "instance": _obj({"total_bytes": NUM, "total_size": STR}),
        }
    ),
    "DatabaseSummary": _obj(
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
    "Database": _obj(
        {
            "schemas": {"type": "array", "items": _ref("SchemaSummary")},
            "total_bytes": NUM,
            "total_size": STR,
        }
    ),
    "SchemaSummary": _obj({"name": {"type": "string"}, **SIZE_FIELDS}),
    "Schema": _obj(
        {
            "indexes": {"type": "array", "items": _ref("Index")},
            "size": STR,
            "tables": {"type": "array", "items": _ref("TableSummary")},
            "total_bytes": NUM,
        }
    ),
    "Index": _obj(INDEX_FIELDS),
    "TableSummary": _obj(TABLE_FIELDS),
    "Table": _obj(
        {
            **{name: schema for name, schema in TABLE_FIELDS.items() if name != "n_indexes"},
            **_table_stat_fields(),
            "fillfactor": {"type": "integer"},
            "indexes": {"type": "array", "items": _ref("Index")},
        }
    ),
    "VacuumRequest": {
        "type": "object",
        "properties": {
            "mode": {
                "type": ["string", "null"],
                "enum": VACUUM_MODES + [None],
                "description": "comma-joined subset of full, freeze, analyze; empty or null: plain",
                "example": "full,analyze",
            },
            "datetime": DATETIME_INPUT,
            "skip_locked": _nullable("boolean", description="extension, PostgreSQL >= 12"),
            "index_cleanup": {
                "type": ["string", "null"],
                "enum": ["auto", "on", "off", None],
                "description": "extension, PostgreSQL >= 12 (auto: >= 14)",
            },
            "truncate": _nullable("boolean", description="extension, PostgreSQL >= 12"),
            "parallel": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": 1024,
                "description": "extension, PostgreSQL >= 13, not with mode full",
            },
            "process_toast": _nullable("boolean", description="extension, PostgreSQL >= 14"),
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
    "OperationId": _obj({"id": OP_ID}, extra=False),
    "AdviceItem": _obj(ADVICE_ITEM),
    "Advice": _obj(
        {
            "advice": {"type": "array", "items": _ref("AdviceItem")},
            "generated": DATETIME,
            "unreachable": {
                "type": "array",
                "description": "extension: databases whose advice could not be read",
                "items": _obj({"dbname": {"type": "string"}, "error": {"type": "string"}}),
            },
        }
    ),
    "ScheduledOperation": {
        **_obj(
            {
                **LIST_ITEM,
                "status": {
                    "type": "string",
                    "enum": STATUSES,
                    "description": "todo, queued or doing while pending; done, failed, "
                    "canceled or aborted for an operation finished in the last "
                    "[maintenance] finished_visible seconds (default 12), listed so "
                    "that polling clients see it end",
                },
            }
        ),
        "description": "Pending and running operations, and those finished in the last "
        "finished_visible seconds, ordered by datetime",
    },
    "Activity": _obj(
        ACTIVITY_ITEM, required=sorted(name for name in ACTIVITY_ITEM if name != "wraparound")
    ),
    "Operation": _obj(HISTORY_ITEM),
    "Canceled": _obj({"response": {"const": "ok"}}, extra=False),
}

ERROR_TEXT = {
    "400": "Invalid JSON body.",
    "401": "Invalid session, key or credentials.",
    "403": (
        'The agent\'s PostgreSQL role may not do this, e.g. role "x" may not VACUUM public.t '
        "(owner: y), or may not connect to the database."
    ),
    "404": "Unknown route or object.",
    "405": "Method not allowed.",
    "406": (
        "Malformed header or parameter, e.g. Parameter 'X-Session' is malformed.; or an "
        "option the server lacks: Parameter 'parallel' is not supported by PostgreSQL 12."
    ),
    "409": (
        "Conflict: duplicate pending operation, operation already finished, or REINDEX "
        "CONCURRENTLY of indexes that cannot be rebuilt concurrently."
    ),
    "413": "Request body too large.",
    "429": "Too many failed logins or invalid keys from this address; retry later.",
    "500": "Internal error.",
    "503": "PostgreSQL is unreachable or canceled the query.",
    "504": "A read took longer than [maintenance] statement_timeout; PostgreSQL canceled it.",
}

SESSION_HEADER = {
    "name": "X-Session",
    "in": "header",
    "required": False,
    "description": "Session id from POST /login",
    "schema": {"type": "string"},
}
KEY_QUERY = {
    "name": "key",
    "in": "query",
    "required": False,
    "description": "Agent's shared key (read-only routes)",
    "schema": {"type": "string"},
}
KEY_HEADER = {
    "name": "X-TemBoard-Agent-Key",
    "in": "header",
    "required": False,
    "description": "Agent's shared key (read-only routes)",
    "schema": {"type": "string"},
}
PARAM_TEXT = {
    "dbname": "Database name, percent-encoded (``/`` as ``%2F``)",
    "schema": "Schema name, percent-encoded (``/`` as ``%2F``)",
    "table": "Table name, percent-encoded (``/`` as ``%2F``)",
    "index": "Index name, percent-encoded (``/`` as ``%2F``)",
    "operation": "Operation id",
}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _error(code: str) -> dict:
    return {"description": ERROR_TEXT[code], "content": _json(_ref("Error"))}


def _operation(
    method: str,
    path: str,
    summary: str,
    reply: dict,
    *,
    auth: str = "session",
    errors: tuple[str, ...] = (),
    body: dict | None = None,
    parameters: list[dict] | None = None,
    tag: str = "maintenance",
    links: dict | None = None,
    body_required: bool = False,
) -> tuple[str, str, dict]:
    params: list[dict] = []
    for name in _path_params(path):
        param = {
            "name": name,
            "in": "path",
            "required": True,
            "description": PARAM_TEXT[name],
            "schema": OP_ID if name == "operation" else {"type": "string", "minLength": 1},
        }
        params.append(param)
    security: list[dict] = []
    codes = set(errors) | {"500"}
    if auth in ("session", "key"):
        # Session-only routes answer 406 without X-Session; key routes accept the key instead.
        params.append(dict(SESSION_HEADER, required=auth == "session"))
        security.append({"session": []})
        codes |= {"401", "406"}
    if auth == "key":
        codes |= {"429"}  # invalid keys are throttled per address
        params += [KEY_QUERY, KEY_HEADER]
        security += [{"key": []}, {"keyHeader": []}]
    if body is not None:
        codes |= {"400", "413"}
    params += parameters or []
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "operationId": _operation_id(method, path),
        "parameters": params,
        "security": security,
        "responses": {"200": {"description": "OK", "content": _json(reply)}}
        | {code: _error(code) for code in sorted(codes)},
    }
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": _json(body)}
    if links:
        op["responses"]["200"]["links"] = links
    return method.lower(), path, op


def _operation_id(method: str, path: str) -> str:
    return method.lower() + path.replace("/", "_").replace("{", "").replace("}", "")


def _links_to_operation(kind: str) -> dict:
    """OpenAPI links from the reply of a POST to the operation it created."""
    path = f"/maintenance/{kind}/{{operation}}"
    return {
        name: {
            "operationId": _operation_id(method, path),
            "parameters": {"operation": "$response.body#/id"},
        }
        for name, method in (("GetOperation", "GET"), ("CancelOperation", "DELETE"))
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def operations() -> list[tuple[str, str, dict]]:
    """Every (method, path, operation object) of the API."""
    ops = [
        _operation(
            "POST", "/login", "Open a session", _ref("Session"), auth="public",
            errors=("401", "406", "429"), body=_ref("Credentials"), tag="core", body_required=True,
        ),
        _operation("GET", "/logout", "Close the session", _ref("Logout"), tag="core"),
        _operation("GET", "/profile", "Who is logged in", _ref("Profile"), tag="core"),
        _operation(
            "GET", "/discover", "Host and PostgreSQL facts", _ref("Discover"), auth="key",
            errors=("503",), tag="core",
        ),
        _operation(
            "GET", "/openapi.json", "This document", {"type": "object"}, auth="public", tag="core"
        ),
    ]  # fmt: skip
    db = "/maintenance/{dbname}"
    schema = db + "/schema/{schema}"
    table = schema + "/table/{table}"
    index = schema + "/index/{index}"
    read_errors = ("403", "404", "409", "503", "504")
    ops += [
        _operation("GET", "/maintenance", "Instance and databases sizes", _ref("Instance"),
                   auth="key", errors=("503", "504")),
        _operation("GET", db, "One database: schemas sizes", _ref("Database"), auth="key",
                   errors=read_errors),
        _operation("GET", schema, "One schema: tables and indexes", _ref("Schema"), auth="key",
                   errors=read_errors),
        _operation("GET", table, "One table: statistics, sizes, indexes", _ref("Table"),
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
            "GET", "/maintenance/activity",
            "Every maintenance command running in the instance (autovacuum, other sessions, "
            "the agent's operations)",
            {"type": "array", "items": _ref("Activity")}, auth="key", errors=("503",),
        )
    )  # fmt: skip
    ops += [
        _operation("GET", "/maintenance/advice",
                   "What needs maintenance now in every database, most severe first",
                   _ref("Advice"), auth="key", errors=("503",)),
        _operation("GET", db + "/advice", "What needs maintenance now in one database",
                   _ref("Advice"), auth="key", errors=read_errors),
    ]  # fmt: skip
    scheduled = {"type": "array", "items": _ref("ScheduledOperation")}
    post_errors = ("403", "404", "406", "409", "503", "504")
    list_errors = ("404", "503", "504")
    history_params = [
        {"name": "db", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "only this database"},
        {"name": "status", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": STATUS_FILTER},
         "description": "only these statuses (comma-joined)"},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
        {"name": "offset", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "default": 0}},
    ]  # fmt: skip
    for kind in KINDS:
        label = kind.upper()
        request = _ref(
            {"vacuum": "VacuumRequest", "reindex": "ReindexRequest"}.get(kind, "OperationRequest")
        )
        links = _links_to_operation(kind)
        ops += [
            _operation("GET", f"/maintenance/{kind}/scheduled",
                       f"Pending, running and just finished {label} operations", scheduled,
                       auth="key"),
            _operation("GET", f"/maintenance/{kind}/history", f"{label} operations, newest first",
                       {"type": "array", "items": _ref("Operation")}, auth="key",
                       errors=("406",), parameters=history_params),
            _operation("GET", f"/maintenance/{kind}/{{operation}}", f"One {label} operation",
                       _ref("Operation"), auth="key", errors=("404",)),
            _operation("DELETE", f"/maintenance/{kind}/{{operation}}",
                       f"Cancel a {label} operation", _ref("Canceled"), errors=("404", "409")),
            _operation("POST", f"{db}/{kind}", f"{label} the database, now or later",
                       _ref("OperationId"), errors=post_errors, body=request, links=links),
            _operation("POST", f"{table}/{kind}", f"{label} the table, now or later",
                       _ref("OperationId"), errors=post_errors, body=request, links=links),
            _operation("GET", f"{db}/{kind}/scheduled", f"{label} operations of the database",
                       scheduled, auth="key", errors=list_errors),
            _operation("GET", f"{table}/{kind}/scheduled",
                       f"{label} operations of the table"
                       + (" (reindex: the schema's list)" if kind == "reindex" else ""),
                       scheduled, auth="key", errors=list_errors),
        ]  # fmt: skip
    ops += [
        _operation("POST", f"{index}/reindex", "REINDEX the index, now or later",
                   _ref("OperationId"), errors=post_errors, body=_ref("ReindexRequest"),
                   links=_links_to_operation("reindex")),
        _operation("GET", f"{schema}/reindex/scheduled", "REINDEX operations of the schema",
                   scheduled, auth="key", errors=list_errors),
        _operation("GET", schema + "/{index}/table/{table}/reindex/scheduled",
                   "Alias of the schema's REINDEX list (spec path)", scheduled, auth="key",
                   errors=list_errors),
    ]  # fmt: skip
    return ops


@lru_cache(maxsize=1)
def _document() -> dict:
    paths: dict[str, dict] = {}
    for method, path, op in operations():
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "temboard-agent",
            "version": __version__,
            "description": (
                "PostgreSQL remote control agent with its maintenance plugin. Every reply is "
                'JSON; errors are {"error": "..."}. GET routes accept a session (X-Session) '
                "or the agent's key; POST and DELETE need a session. Replies of 1 kB or more "
                "are gzipped when Accept-Encoding allows it; large lists are streamed (chunked)."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "header", "name": "X-Session"},
                "key": {"type": "apiKey", "in": "query", "name": "key"},
                "keyHeader": {"type": "apiKey", "in": "header", "name": "X-TemBoard-Agent-Key"},
            },
        },
    }


def document() -> dict:
    """A copy of the OpenAPI document."""
    return copy.deepcopy(_document())
