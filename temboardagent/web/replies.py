"""Reply bodies: plain or streamed JSON, gzipped when the client accepts it.

A handler's result is either a plain value, encoded at once, or a
:class:`~temboardagent.jsonstream.JSONStream`, encoded while it is iterated.
A stream is *primed* first: encoded until :data:`CHUNK_SIZE` bytes are ready
or it ends, so the errors that come before any data (unknown object,
PostgreSQL unreachable, statement timeout...) still become JSON error replies
with their status; a stream that ends within that first chunk is sent like a
plain reply, with a ``Content-Length``. Otherwise the first chunk goes out and
the rest follows chunk by chunk (HTTP/1.1 chunked transfer): an error then can
no longer change the status, so it is logged and the connection is closed
without the final chunk, and the client sees a truncated reply, never a
complete-looking one.

Replies of at least :data:`GZIP_MIN_SIZE` bytes are gzipped (streamed through
one ``zlib`` compressor) when ``Accept-Encoding`` allows gzip.
"""

from __future__ import annotations

import errno
import logging
import zlib
from typing import Any, Iterable, Iterator

import psycopg2

from ..errors import HTTPError
from ..jsonstream import JSONStream, dump_json, encode

logger = logging.getLogger(__name__)

GZIP_MIN_SIZE = 1024
GZIP_LEVEL = 6
CHUNK_SIZE = 64 * 1024
VARY = ("Vary", "Accept-Encoding")
GZIP_ENCODING = ("Content-Encoding", "gzip")

Headers = list[tuple[str, str]]


class ReplyAborted(ConnectionAbortedError):
    """Raised to the WSGI server to drop a connection whose reply failed midway.

    cheroot closes the connection quietly on ECONNABORTED, without sending
    the terminating chunk.
    """

    def __init__(self) -> None:
        super().__init__(errno.ECONNABORTED, "reply aborted")


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (``q`` > 0, or ``*``)."""
    if not accept_encoding:
        return False
    gzip_q = star_q = None
    for part in accept_encoding.split(","):
        coding, *params = part.split(";")
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            gzip_q = quality
        elif coding == "*":
            star_q = quality
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _compressor() -> Any:
    return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)


def plain_reply(body: bytes, gzip_ok: bool) -> tuple[Headers, bytes]:
    """Headers and body of an encoded reply, gzipped if allowed and big enough."""
    headers = [VARY]
    if gzip_ok and len(body) >= GZIP_MIN_SIZE:
        compressor = _compressor()
        body = compressor.compress(body) + compressor.flush()
        headers.append(GZIP_ENCODING)
    headers.append(("Content-Length", str(len(body))))
    return headers, body


def reply(result: Any, gzip_ok: bool, label: str) -> tuple[Headers, bytes | Iterable[bytes]]:
    """Headers and body of a handler's ``result`` (a plain value or a stream).

    Errors while priming a stream propagate (the stream is closed); ``label``
    names the request in the log of a reply aborted later.
    """
    if not isinstance(result, JSONStream):
        return plain_reply(dump_json(result), gzip_ok)
    pieces = encode(result)
    try:
        first = _take(pieces, CHUNK_SIZE)
        if len(first) < CHUNK_SIZE:  # the whole reply
            pieces.close()
            return plain_reply(first, gzip_ok)
        compressor = _compressor() if gzip_ok else None
        head = compressor.compress(first) if compressor else first  # gzip header at least
    except BaseException:
        pieces.close()
        raise
    headers = [VARY] + ([GZIP_ENCODING] if compressor else [])
    return headers, StreamedBody(head, pieces, compressor, label)


def _take(pieces: Iterator[bytes], size: int) -> bytes:
    """At least ``size`` bytes of ``pieces`` joined, or all that is left."""
    parts = []
    length = 0
    for piece in pieces:
        parts.append(piece)
        length += len(piece)
        if length >= size:
            break
    return b"".join(parts)


class StreamedBody:
    """The WSGI body of a streamed reply: ``head`` then the rest of ``pieces``."""

    def __init__(self, head: bytes, pieces: Iterator[bytes], compressor: Any, label: str) -> None:
        self.head = head
        self.pieces = pieces
        self.compressor = compressor
        self.label = label

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        try:
            while True:
                chunk = _take(self.pieces, CHUNK_SIZE)
                if not chunk:
                    break
                if self.compressor is not None:
                    chunk = self.compressor.compress(chunk)
                if chunk:
                    yield chunk
            if self.compressor is not None:
                yield self.compressor.flush()
        except (HTTPError, psycopg2.Error) as exc:
            logger.warning("Reply to %s aborted midway: %s", self.label, str(exc).strip())
            raise ReplyAborted() from None
        except Exception:
            logger.exception("Reply to %s aborted midway.", self.label)
            raise ReplyAborted() from None

    def close(self) -> None:
        self.pieces.close()
