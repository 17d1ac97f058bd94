"""JSON values produced piece by piece, for replies too big to hold in memory.

A route handler returns a :class:`JSONObject` or :class:`JSONArray` instead of
a dict or list when its reply grows with the catalog: members and items come
from iterables (generators reading rows as PostgreSQL sends them) and the web
layer writes the JSON text as it is encoded. Values nest: a member's value may
itself be a :class:`JSONArray` or :class:`JSONObject`. Each iterable is
consumed once, in order; a member is asked for only once the previous one is
fully encoded, so a generator may compute a total from the rows it already
gave.

:func:`encode` yields exactly the bytes of ``json.dumps(value,
separators=(",", ":"), ensure_ascii=False)`` for the materialized value, and
closes every iterable it opened, innermost first, when it ends or is closed
early (so a cursor is closed before the connection that owns it).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

#: ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, built once
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: plain items of a streamed array encoded by one call of the C encoder
ITEM_BATCH = 256


def dump_json(data: Any) -> bytes:
    """Compact UTF-8 JSON: the encoding of every reply."""
    return _ENCODER.encode(data).encode("utf-8")


class JSONStream:
    """Base of the streamed JSON values."""


class JSONArray(JSONStream):
    """A JSON array whose items come from ``items``, consumed once."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


class JSONObject(JSONStream):
    """A JSON object whose ``(key, value)`` members come from ``members``, consumed once."""

    def __init__(self, members: Iterable[tuple[str, Any]]) -> None:
        self.members = members


def encode(value: Any) -> Iterator[bytes]:
    """The JSON text of ``value`` in pieces (streamed values are iterated)."""
    if isinstance(value, JSONArray):
        yield from _encode_array(value)
    elif isinstance(value, JSONObject):
        yield from _encode_object(value)
    else:
        yield dump_json(value)


def _encode_array(array: JSONArray) -> Iterator[bytes]:
    """Plain items go by batches: ``[a,b]`` of a list is ``a,b`` between brackets."""
    items = iter(array.items)
    try:
        yield b"["
        first = True
        batch: list[Any] = []
        for item in items:
            if isinstance(item, JSONStream):
                if batch:
                    yield (b"" if first else b",") + dump_json(batch)[1:-1]
                    first, batch = False, []
                yield b"" if first else b","
                first = False
                yield from encode(item)
                continue
            batch.append(item)
            if len(batch) >= ITEM_BATCH:
                yield (b"" if first else b",") + dump_json(batch)[1:-1]
                first, batch = False, []
        if batch:
            yield (b"" if first else b",") + dump_json(batch)[1:-1]
        yield b"]"
    finally:
        _close(items)


def _encode_object(obj: JSONObject) -> Iterator[bytes]:
    members = iter(obj.members)
    try:
        yield b"{"
        first = True
        for key, value in members:
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
            yield (b"" if first else b",") + dump_json(key) + b":"
            first = False
            yield from encode(value)
        yield b"}"
    finally:
        _close(members)


def _close(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def materialize(value: Any) -> Any:
    """The plain dict/list of a streamed value (for tests and small callers)."""
    if isinstance(value, JSONArray):
        return [materialize(item) for item in value.items]
    if isinstance(value, JSONObject):
        return {key: materialize(item) for key, item in value.members}
    return value
