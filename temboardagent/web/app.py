"""The WSGI application: bottle routing wrapped with JSON errors, auth, CORS and access log."""

from __future__ import annotations

import json
import logging
import platform
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import bottle
import psycopg2
from cheroot.errors import MaxSizeExceeded

from .. import __version__
from ..auth.gate import Gate
from ..errors import BadRequest, HTTPError, PayloadTooLarge
from ..jsonstream import dump_json
from ..plugins import Request, RouteHandler
from ..postgres import map_postgres_error
from .paths import decode_param, routing_path
from .replies import accepts_gzip, reply

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("temboardagent.access")

SERVER_HEADER = f"temboard-agent/{__version__} Python/{platform.python_version()}"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "X-Session, X-TemBoard-Agent-Key, Content-Type"
COMMON_HEADERS = [
    ("Server", SERVER_HEADER),
    ("Access-Control-Allow-Origin", "*"),
]
JSON_TYPE = ("Content-Type", "application/json")
DRAIN_LIMIT = 16 * 1024 * 1024  # larger refused bodies close the connection instead
STATUS_LINES = {code: f"{code} {bottle.HTTP_CODES.get(code, 'Error')}" for code in range(100, 600)}
_PARAM = re.compile(r"\{(\w+)\}")


def bottle_path(path: str, patterns: Mapping[str, str] | None = None) -> str:
    """``/a/{b}`` (OpenAPI's form) as bottle's rule ``/a/<b>``.

    A parameter named in ``patterns`` becomes ``<b:re:PATTERN>``: the whole
    segment must match it.
    """
    patterns = patterns or {}
    names = _PARAM.findall(path)
    if any(char in _PARAM.sub("", path) for char in "<>{}:"):
        raise ValueError(f"route path parameters must be written {{name}}: {path}")
    if len(set(names)) != len(names):
        raise ValueError(f"route path names a parameter twice: {path}")

    def rule(match: re.Match) -> str:
        name = match.group(1)
        return f"<{name}:re:{patterns[name]}>" if name in patterns else f"<{name}>"

    return _PARAM.sub(rule, path)


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str  # as registered: /maintenance/{dbname}
    key_ok: bool
    public: bool


def _error_body(exc: HTTPError) -> tuple[int, bytes]:
    return exc.status, dump_json(exc.payload())


class WebApp:
    """Routes registered by the core and plugins, served as a WSGI callable."""

    def __init__(self, gate: Gate, max_body_size: int) -> None:
        self.gate = gate
        self.max_body_size = max_body_size
        self.routes: list[RouteInfo] = []
        self.bottle = bottle.Bottle()
        self.bottle.config["catchall"] = False
        self.bottle.uninstall(True)  # no JSON/template plugins: handlers return bytes
        self.bottle.default_error_handler = self._bottle_error  # type: ignore[method-assign]

    # --- registration ----------------------------------------------------

    def add_route(
        self,
        method: str,
        path: str,
        handler: RouteHandler,
        *,
        key_ok: bool = False,
        public: bool = False,
        patterns: Mapping[str, str] | None = None,
    ) -> None:
        """Register ``handler``; ``public`` routes need no credentials at all.

        ``path`` and ``patterns`` as in :meth:`temboardagent.plugins.PluginContext.add_route`.
        """
        method = method.upper()
        if method not in ("GET", "POST", "DELETE"):
            raise ValueError(f"unsupported method {method}")
        rule = bottle_path(path, patterns)
        self.routes.append(RouteInfo(method, path, key_ok, public))
        self.bottle.route(rule, method, self._wrap(handler, key_ok, public))

    def _wrap(self, handler: RouteHandler, key_ok: bool, public: bool) -> Callable:
        def callback(**params: str) -> Any:
            req = bottle.request
            environ = req.environ
            headers: list[tuple[str, str]] = []
            try:
                params = {name: decode_param(value) for name, value in params.items()}
                username = None
                if not public:
                    username = self.gate.check(
                        environ.get("HTTP_X_SESSION"),
                        _key_of(environ, req),
                        key_ok,
                        environ.get("REMOTE_ADDR", ""),
                    )
                request = Request(
                    method=req.method,
                    path=req.path,
                    query=dict(req.query.decode().items()),
                    headers=req.headers,
                    body=self._read_body(req) if req.method != "GET" else {},
                    username=username,
                    remote_addr=environ.get("REMOTE_ADDR", ""),
                )
                environ["temboardagent.username"] = username
                result = handler(request, **params)
                gzip_ok = accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING"))
                headers, body = reply(result, gzip_ok, f"{req.method} {req.path!r}")
                status = 200
            except HTTPError as exc:
                status, body = _error_body(exc)
            except psycopg2.Error as exc:
                mapped = map_postgres_error(exc)
                if mapped.status >= 500 and mapped.status not in (503, 504):
                    logger.exception("Unexpected PostgreSQL error in %s.", req.path)
                else:
                    logger.warning("PostgreSQL error in %s: %s", req.path, str(exc).strip())
                status, body = _error_body(mapped)
            except Exception:
                logger.exception("Unhandled error in %s %s.", req.method, req.path)
                status, body = 500, dump_json({"error": "Internal error."})
            bottle.response.status = status
            bottle.response.content_type = "application/json"
            for name, value in headers:
                bottle.response.set_header(name, value)
            return body

        return callback

    def _read_body(self, req: bottle.BaseRequest) -> Any:
        length = req.content_length
        stream = req.environ["wsgi.input"]
        if length > self.max_body_size:
            _drain(stream, length)
            raise PayloadTooLarge("Request body is too large.")
        if length >= 0:
            raw = stream.read(length) if length else b""
        elif req.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            try:
                raw = stream.read(self.max_body_size + 1)  # cheroot already de-chunked it
            except (MaxSizeExceeded, OSError) as exc:
                # cheroot's own bound (max_request_body_size) raises either
                if not isinstance(exc, MaxSizeExceeded) and str(exc) != "Request Entity Too Large":
                    raise
                raw = None
            except ValueError:  # bad chunk size or framing
                bottle.response.set_header("Connection", "close")
                raise BadRequest("Invalid chunked body.") from None
            if raw is None or len(raw) > self.max_body_size:
                bottle.response.set_header("Connection", "close")  # rest of the body unread
                raise PayloadTooLarge("Request body is too large.")
        else:
            raw = b""
        if len(raw) > self.max_body_size:
            raise PayloadTooLarge("Request body is too large.")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("Invalid JSON body.") from None

    def _bottle_error(self, res: bottle.HTTPError) -> bytes:
        status = res.status_code
        if status == 404:
            message = "Not found."
        elif status == 405:
            message = "Method not allowed."
        elif status == 413:
            message = "Request body is too large."
        elif status < 500:
            message = res.body if isinstance(res.body, str) and res.body else "Bad request."
        else:
            if res.exception is not None:
                logger.error("Internal error: %r", res.exception)
            message = "Internal error."
        bottle.response.content_type = "application/json"
        return dump_json({"error": message})

    # --- WSGI -------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "")
        captured: dict[str, Any] = {}
        environ["PATH_INFO"] = routing_path(environ)

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            captured["status"] = status
            names = {name.lower() for name, _ in headers}
            headers.extend(h for h in COMMON_HEADERS if h[0].lower() not in names)
            return start_response(status, headers, exc_info)

        if method == "OPTIONS":
            result: Iterable[bytes] = self._preflight(start)
        else:
            try:
                result = self.bottle(environ, start)
            except Exception:
                logger.exception("Unhandled WSGI error.")
                body = dump_json({"error": "Internal error."})
                start(STATUS_LINES[500], [JSON_TYPE, ("Content-Length", str(len(body)))])
                result = [body]
        return _AccessLogged(
            result, lambda: self._log_access(environ, captured.get("status", "500"), started)
        )

    @staticmethod
    def _preflight(start: Callable) -> list[bytes]:
        start(
            STATUS_LINES[200],
            [
                JSON_TYPE,
                ("Content-Length", "2"),
                ("Access-Control-Allow-Methods", ALLOWED_METHODS),
                ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
                ("Access-Control-Max-Age", "600"),
            ],
        )
        return [b"{}"]

    @staticmethod
    def _log_access(environ: dict, status: str, started: float) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        # Never log the query string: it may carry the key.
        access_logger.info(
            "%s %s %s %s %.1fms user=%s",
            environ.get("REMOTE_ADDR", "-"),
            environ.get("REQUEST_METHOD", "-"),
            environ.get("PATH_INFO", "-").encode("unicode_escape").decode("ascii"),
            status.split(" ", 1)[0],
            (time.perf_counter() - started) * 1000,
            environ.get("temboardagent.username") or "-",
        )


class _AccessLogged:
    """A response body that writes the access log line once it is sent (or dropped)."""

    def __init__(self, body: Iterable[bytes], log: Callable[[], None]) -> None:
        self.body = body
        self.log = log

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.log()


def _drain(stream: Any, length: int) -> None:
    """Read and drop a refused body so the client gets the reply, not a reset."""
    if length > DRAIN_LIMIT:
        bottle.response.set_header("Connection", "close")
        return
    while length > 0:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            break
        length -= len(chunk)


def _key_of(environ: dict, req: bottle.BaseRequest) -> str | None:
    key = environ.get("HTTP_X_TEMBOARD_AGENT_KEY")
    if key is None and environ.get("QUERY_STRING"):
        key = req.query.get("key")
    return key
