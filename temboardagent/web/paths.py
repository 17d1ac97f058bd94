"""Request paths: segments percent-decoded exactly once, so names may contain ``/``.

cheroot decodes ``PATH_INFO`` but keeps ``%2F`` encoded (a decoded ``/`` would
split a segment), so ``.../table/a%2Fb`` reached the route as ``a%2Fb``. The
router instead works on the raw request path (``REQUEST_URI``): each segment is
decoded once and re-encoded canonically (every byte but ``A-Z a-z 0-9 _ . - ~``
as ``%XX``), so no segment contains ``/`` and static parts (``maintenance``,
``schema``...) stay plain; route parameters are then decoded once more by
:func:`decode_param`. ``%2F`` is ``/``, ``%25`` is ``%``, ``+`` stays ``+``.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes, urlsplit

from ..errors import BadRequest


def routing_path(environ: dict) -> str:
    """The canonical path to route on (ASCII)."""
    uri = environ.get("REQUEST_URI")
    if not uri:
        # No raw path (not cheroot): PATH_INFO, already decoded once.
        raw = environ.get("PATH_INFO", "").encode("latin-1")
        return "/".join(quote(segment, safe="") for segment in raw.split(b"/"))
    path = uri.partition("?")[0].partition("#")[0]
    if not path.startswith("/"):  # absolute form: https://host:port/path
        path = urlsplit(path).path or "/"
    # WSGI strings carry the request's bytes as latin-1.
    return "/".join(
        quote(unquote_to_bytes(segment.encode("latin-1")), safe="") for segment in path.split("/")
    )


def decode_param(value: str) -> str:
    """A route parameter matched on :func:`routing_path`, decoded to text."""
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Invalid path: not UTF-8.") from None
