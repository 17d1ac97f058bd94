"""Statements of maintenance operations and validation of their options.

Pure logic, no HTTP: a bad option raises :class:`OptionError` (a ValueError)
whose text is the client-facing message; the request layer turns it into a 406.

Options stored on a task (``task.options``), all optional:

- ``mode`` (VACUUM only): canonical comma-joined subset of ``full,freeze,analyze``;
- ``skip_locked``, ``truncate``, ``process_toast`` (bool), ``index_cleanup``
  (``"auto"``, ``"on"``, ``"off"``), ``parallel`` (0-1024): VACUUM only;
- ``concurrently`` (bool): REINDEX only;
- ``timeout`` (seconds, > 0): any operation.

A key is present only when the client sent it (not null), so the options of a
request of the temboard UI (``mode`` and ``datetime`` only) stay ``{"mode": ...}``
and duplicate detection (which compares the options JSON) is unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from psycopg2 import sql

#: VACUUM modes in the order PostgreSQL documents them
VACUUM_MODES = ("full", "freeze", "analyze")
INDEX_CLEANUP_VALUES = ("auto", "on", "off")
#: PostgreSQL's MAX_PARALLEL_WORKER_LIMIT
MAX_PARALLEL = 1024
#: statement_timeout is an int of milliseconds
MAX_TIMEOUT = 2147483
#: options each kind accepts besides ``mode`` (other keys of a body are ignored)
KIND_OPTIONS = {
    "vacuum": ("skip_locked", "index_cleanup", "truncate", "parallel", "process_toast", "timeout"),
    "analyze": ("timeout",),
    "reindex": ("concurrently", "timeout"),
}
#: first server_version_num supporting an option
MIN_VERSION = {
    "skip_locked": 120000,
    "index_cleanup": 120000,
    "truncate": 120000,
    "parallel": 130000,
    "process_toast": 140000,
    "concurrently": 120000,
}
INDEX_CLEANUP_AUTO_VERSION = 140000


class OptionError(ValueError):
    """A bad operation option; ``str()`` is the client-facing message."""

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"Parameter '{name}' is malformed.")
        self.name = name


def major_version(server_version: int) -> str:
    """``150004`` -> ``"15"``; ``90624`` -> ``"9.6"``."""
    if server_version >= 100000:
        return str(server_version // 10000)
    return f"{server_version // 10000}.{server_version // 100 % 100}"


def parse_mode(value: Any) -> str:
    """A VACUUM ``mode`` in canonical order; ``""`` for None or ``""``."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise OptionError("mode")
    parts = value.split(",")
    if len(set(parts)) != len(parts) or not set(parts) <= set(VACUUM_MODES):
        raise OptionError("mode")
    return ",".join(opt for opt in VACUUM_MODES if opt in parts)


def _parse_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(name)
    return value


def _parse_parallel(value: Any) -> int:
    """0-1024; an integral JSON number such as ``2.0`` is JSON Schema's integer 2."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PARALLEL:
        raise OptionError("parallel")
    return value


def _parse_index_cleanup(value: Any) -> str:
    if not isinstance(value, str) or value not in INDEX_CLEANUP_VALUES:
        raise OptionError("index_cleanup")
    return value


def parse_timeout(value: Any) -> int | float:
    """Seconds, an integer or a number, > 0 and at most :data:`MAX_TIMEOUT`.

    An integral float is kept as an int, so ``60`` and ``60.0`` are the same.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError("timeout")
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT or value * 1000 < 1:
        raise OptionError("timeout")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_PARSERS = {
    "skip_locked": lambda v: _parse_bool("skip_locked", v),
    "truncate": lambda v: _parse_bool("truncate", v),
    "process_toast": lambda v: _parse_bool("process_toast", v),
    "concurrently": lambda v: _parse_bool("concurrently", v),
    "index_cleanup": _parse_index_cleanup,
    "parallel": _parse_parallel,
    "timeout": parse_timeout,
}


def parse_options(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The task options of a request body (keys of other kinds are ignored).

    ``mode`` is always present for VACUUM (as before); other options only when
    sent and not null. Raises OptionError for a malformed value or a forbidden
    combination (PARALLEL with FULL).
    """
    if kind not in KIND_OPTIONS:
        raise ValueError(f"unknown operation kind: {kind!r}")
    options: dict[str, Any] = {}
    if kind == "vacuum":
        options["mode"] = parse_mode(body.get("mode"))
    for name in KIND_OPTIONS[kind]:
        value = body.get(name)
        if value is not None:
            options[name] = _PARSERS[name](value)
    if "parallel" in options and "full" in options.get("mode", "").split(","):
        raise OptionError("parallel", "Parameter 'parallel' cannot be used with mode 'full'.")
    return options


def extension_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """What was asked besides ``mode``: the ``options`` field of list items."""
    return {name: value for name, value in options.items() if name != "mode"}


def needs_server_check(options: Mapping[str, Any]) -> bool:
    """True when an option depends on the server version."""
    return any(name in MIN_VERSION for name in options)


def check_supported(options: Mapping[str, Any], server_version: int) -> None:
    """OptionError ``Parameter 'X' is not supported by PostgreSQL N.`` if too old."""
    major = major_version(server_version)
    for name in options:
        minimum = MIN_VERSION.get(name)
        if minimum is not None and server_version < minimum:
            raise OptionError(name, f"Parameter '{name}' is not supported by PostgreSQL {major}.")
    if options.get("index_cleanup") == "auto" and server_version < INDEX_CLEANUP_AUTO_VERSION:
        raise OptionError(
            "index_cleanup",
            f"Parameter 'index_cleanup' value 'auto' is not supported by PostgreSQL {major}.",
        )


# Statements


def qualified(schema: str, name: str) -> sql.Composed:
    """``"schema"."name"``."""
    return sql.Composed([sql.Identifier(schema), sql.SQL("."), sql.Identifier(name)])


def _flag(keyword: str, value: bool) -> sql.SQL:
    return sql.SQL(keyword if value else f"{keyword} FALSE")


def vacuum_flags(options: Mapping[str, Any]) -> list[sql.Composable]:
    """The parenthesized option list of a VACUUM, in PostgreSQL's documented order."""
    mode = parse_mode(options.get("mode"))
    flags: list[sql.Composable] = [sql.SQL(opt.upper()) for opt in mode.split(",") if opt]
    if "skip_locked" in options:
        flags.append(_flag("SKIP_LOCKED", options["skip_locked"]))
    if "index_cleanup" in options:
        value = _parse_index_cleanup(options["index_cleanup"])  # one of three keywords
        flags.append(sql.SQL("INDEX_CLEANUP " + value.upper()))
    if "process_toast" in options:
        flags.append(_flag("PROCESS_TOAST", options["process_toast"]))
    if "truncate" in options:
        flags.append(_flag("TRUNCATE", options["truncate"]))
    if "parallel" in options:
        # An int validated again here: never a string in the statement.
        workers = sql.Literal(_parse_parallel(options["parallel"]))
        flags.append(sql.Composed([sql.SQL("PARALLEL "), workers]))
    return flags


def build_statement(
    kind: str,
    target: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
) -> sql.Composed:
    """The statement of an operation, identifiers quoted with ``sql.Identifier``.

    ``target`` has ``dbname``, ``schema``, ``table`` and ``index`` (None where
    absent). Raises OptionError for bad options, ValueError for a bad kind.
    """
    options = options or {}
    schema, table, index = target.get("schema"), target.get("table"), target.get("index")
    relation = qualified(schema, table) if table is not None else None
    if kind == "vacuum":
        parts: list[sql.Composable] = [sql.SQL("VACUUM")]
        flags = vacuum_flags(options)
        if flags:
            parts += [sql.SQL(" ("), sql.SQL(", ").join(flags), sql.SQL(")")]
        if relation is not None:
            parts += [sql.SQL(" "), relation]
        return sql.Composed(parts)
    if kind == "analyze":
        if relation is None:
            return sql.Composed([sql.SQL("ANALYZE")])
        return sql.Composed([sql.SQL("ANALYZE "), relation])
    if kind == "reindex":
        concurrently = sql.SQL("CONCURRENTLY ") if options.get("concurrently") else sql.SQL("")
        if index is not None:
            return sql.Composed([sql.SQL("REINDEX INDEX "), concurrently, qualified(schema, index)])
        if relation is not None:
            return sql.Composed([sql.SQL("REINDEX TABLE "), concurrently, relation])
        return sql.Composed(
            [sql.SQL("REINDEX DATABASE "), concurrently, sql.Identifier(target["dbname"])]
        )
    raise ValueError(f"unknown operation kind: {kind!r}")


def build_relations_statement(
    kind: str, options: Mapping[str, Any], relations: Sequence[tuple[str, str]]
) -> sql.Composed:
    """One VACUUM or ANALYZE of several ``(schema, table)`` relations (PostgreSQL >= 11)."""
    if kind not in ("vacuum", "analyze") or not relations:
        raise ValueError(f"no relation list for {kind!r}")
    head = build_statement(kind, {"schema": None, "table": None, "index": None}, options)
    names = sql.SQL(", ").join(qualified(schema, table) for schema, table in relations)
    return sql.Composed([head, sql.SQL(" "), names])


def quote_ident(name: str) -> str:
    """PostgreSQL identifier quoting, as ``sql.Identifier`` renders it."""
    return '"' + name.replace('"', '""') + '"'


def render_statement(statement: sql.Composable) -> str:
    """Text of a statement built by :func:`build_statement`, without a connection.

    Used to show the statement of an operation that has not run yet; a run
    operation shows the text rendered by the server connection.
    """
    if isinstance(statement, sql.Composed):
        return "".join(render_statement(part) for part in statement.seq)
    if isinstance(statement, sql.Identifier):
        return ".".join(quote_ident(s) for s in statement.strings)
    if isinstance(statement, sql.SQL):
        return statement.string
    if isinstance(statement, sql.Literal) and type(statement.wrapped) is int:
        return str(statement.wrapped)
    raise TypeError(f"cannot render {type(statement).__name__}")


def runs_per_relation(kind: str, target: Mapping[str, Any]) -> bool:
    """Database-wide VACUUM and ANALYZE run relation by relation."""
    return kind in ("vacuum", "analyze") and target.get("table") is None


def uses_lock_timeout(kind: str, options: Mapping[str, Any]) -> bool:
    """False for REINDEX CONCURRENTLY.

    Its locks (SHARE UPDATE EXCLUSIVE, then waits for older transactions) never
    block reads or writes, and a lock timeout after its first phase would leave
    an invalid ``_ccnew`` index behind. Bound it with ``timeout`` instead.
    """
    return not (kind == "reindex" and options.get("concurrently"))


def format_seconds(value: float) -> str:
    """``60`` -> ``"60"``, ``1.5`` -> ``"1.5"``."""
    return f"{value:g}" if isinstance(value, float) else str(value)
