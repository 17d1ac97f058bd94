"""The maintenance plugin's paths, written once in OpenAPI's ``{name}`` form.

The route tables (:mod:`.routes`, :mod:`.operation_routes`) and the OpenAPI
fragment (:mod:`.openapi`) both use them.
"""

from __future__ import annotations

from ...tasks import ID_PATTERN

BASE = "/maintenance"
ADVICE = BASE + "/advice"
ACTIVITY = BASE + "/activity"
DATABASE = BASE + "/{dbname}"
DATABASE_ADVICE = DATABASE + "/advice"
SCHEMA = DATABASE + "/schema/{schema}"
TABLE = SCHEMA + "/table/{table}"
INDEX = SCHEMA + "/index/{index}"
#: the spec's path of a table's REINDEX list (the schema's list; the index is ignored)
REINDEX_TABLE_ALIAS = SCHEMA + "/{index}/table/{table}/reindex/scheduled"

#: what a path parameter must match to be routed: an operation id is 8 hex
#: digits, so other words (``history``, ``scheduled``) reach their own routes
PATTERNS = {"operation": ID_PATTERN}


def action(target: str, kind: str) -> str:
    """POST ``kind`` on ``target`` (:data:`DATABASE`, :data:`TABLE`, :data:`INDEX`)."""
    return f"{target}/{kind}"


def scheduled(target: str, kind: str) -> str:
    """The list of ``kind`` operations of ``target`` (:data:`BASE`: all of them)."""
    return f"{target}/{kind}/scheduled"


def history(kind: str) -> str:
    return f"{BASE}/{kind}/history"


def operation(kind: str) -> str:
    """One ``kind`` operation (GET) or its cancel (DELETE)."""
    return f"{BASE}/{kind}/{{operation}}"
