"""Request parsing and reply shaping of the operation routes.

A body that is not a JSON object is a 400, a bad value a 406 ``Parameter 'X'
is malformed.`` (or ``... is not supported by PostgreSQL N.``):
:mod:`.statements` validates options with plain
:class:`~.statements.OptionError`, translated here into the HTTP error.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

from ...errors import BadRequest, NotAcceptable, malformed
from . import statements
from .operations import kind_of
from .statements import OptionError, build_statement, extension_options, render_statement

if TYPE_CHECKING:  # pragma: no cover
    from ...tasks import Task

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", re.ASCII)


# Input parsing


def parse_body(body: Any) -> Mapping[str, Any]:
    """The JSON body of a POST, which must be an object (``{}`` when empty)."""
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body


def parse_mode(value: Any) -> str:
    """Validate a VACUUM ``mode`` and return it in canonical order.

    Any comma-joined subset of ``full``, ``freeze``, ``analyze`` without
    duplicates, in any order; ``""`` or a missing/``null`` mode is a plain VACUUM.
    Raises NotAcceptable ``Parameter 'mode' is malformed.`` otherwise.
    """
    try:
        return statements.parse_mode(value)
    except OptionError as exc:
        raise NotAcceptable(str(exc)) from None


def parse_options(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The task options of a POST body; NotAcceptable (406) for a bad value.

    Keys that are not options of ``kind`` are ignored, as they always were.
    """
    try:
        return statements.parse_options(kind, body)
    except OptionError as exc:
        raise NotAcceptable(str(exc)) from None


def check_supported(options: Mapping[str, Any], server_version: int) -> None:
    """NotAcceptable ``Parameter 'X' is not supported by PostgreSQL N.``"""
    try:
        statements.check_supported(options, server_version)
    except OptionError as exc:
        raise NotAcceptable(str(exc)) from None


def parse_datetime(value: Any, now: datetime | None = None) -> tuple[datetime, str]:
    """Return the requested start (tz-aware UTC) and its canonical text.

    ``None`` (absent) means now, with the text of the current second. A time in
    the past is kept as is: the task is due at once, so it runs now. Raises
    NotAcceptable ``Parameter 'datetime' is malformed.`` for anything but an
    existing UTC time written ``YYYY-MM-DDTHH:MM:SSZ``.
    """
    if value is None:
        now = now or datetime.now(timezone.utc)
        return now, format_datetime(now)
    if not isinstance(value, str) or not _DATETIME_RE.fullmatch(value):
        raise malformed("datetime")
    try:
        parsed = datetime.strptime(value, DATETIME_FORMAT)
    except ValueError:  # e.g. 2030-02-30T00:00:00Z
        raise malformed("datetime") from None
    return parsed.replace(tzinfo=timezone.utc), value


# Shaping


def format_datetime(value: datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` (seconds truncated)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    # isoformat() is a little faster than strftime() (history pages).
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def format_optional(value: datetime | None) -> str | None:
    return None if value is None else format_datetime(value)


def list_item(task: Task) -> dict[str, Any]:
    """A /scheduled list item: the spec's fields and ``options`` (extension)."""
    kind = kind_of(task.worker)
    target = task.target
    return {
        "id": task.id,
        "dbname": target.get("dbname"),
        "schema": target.get("schema"),
        "table": target.get("table"),
        "index": target.get("index"),
        "mode": task.options.get("mode", "") if kind == "vacuum" else None,
        "datetime": format_datetime(task.start),
        "status": task.status,
        "options": extension_options(task.options),
    }


def history_item(task: Task) -> dict[str, Any]:
    """A list item plus ``sql``, ``created``, ``started``, ``finished``, ``duration``,
    ``error`` and ``attempts`` (extension)."""
    item = list_item(task)
    text = task.output
    if text is None:
        try:
            text = render_statement(
                build_statement(kind_of(task.worker) or "", task.target, task.options)
            )
        except (ValueError, TypeError, KeyError):
            text = None
    duration = None
    if task.started is not None and task.finished is not None:
        duration = round((task.finished - task.started).total_seconds(), 6)
    details = task.details or {}
    item.update(
        sql=text,
        created=format_optional(task.created),
        started=format_optional(task.started),
        finished=format_optional(task.finished),
        duration=duration,
        error=task.error if task.status in ("failed", "aborted") else None,
        attempts=task.attempts,
        notices=details.get("notices", []),
        skipped=details.get("skipped", []),
        skipped_count=details.get("skipped_count", 0),
    )
    return item
