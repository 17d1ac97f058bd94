"""PostgreSQL connections: pinned settings, a small bounded pool, errors mapped for the API.

Every connection sets ``search_path = pg_catalog, pg_temp`` at connect time
(startup options override ``ALTER DATABASE/ROLE ... SET``), so objects that
users create in their schemas are never chosen by the agent's SQL, which runs
as a superuser. Read connections also run read-only.

Pool: idle connections are kept per (database, settings), at most
``max_idle`` in all (least recently used closed first), and each is closed
``idle_timeout`` seconds after its last use by a reaper thread. Connections to
template databases are never kept: ``CREATE DATABASE`` fails while another
session is connected to its template.
"""

from __future__ import annotations

import logging
import re
import select
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from .errors import (
    Conflict,
    Forbidden,
    GatewayTimeout,
    HTTPError,
    NotFound,
    ServiceUnavailable,
)

logger = logging.getLogger(__name__)

#: a pooled connection idle for longer than this is checked before reuse
REVALIDATE_AFTER = 2.0
MAX_IDLE_PER_KEY = 4
#: pinned on every connection: no user schema is ever searched
SEARCH_PATH = "pg_catalog,pg_temp"

_IS_TEMPLATE = (
    "SELECT d.datistemplate FROM pg_catalog.pg_database d"
    " WHERE d.datname = pg_catalog.current_database()"
)


_MISSING_DB = re.compile(r'database "(.*)" does not exist', re.S)  # names may hold newlines
_REFUSING_DB = re.compile(r'database "(.*)" is not currently accepting connections')
_DENIED_DB = re.compile(r'permission denied for database "(.*)"')


def is_statement_timeout(exc: Exception) -> bool:
    """A query canceled by ``statement_timeout`` (SQLSTATE 57014, English message).

    The same SQLSTATE covers ``pg_cancel_backend`` and shutdowns: only the
    message tells them apart (callers that know the timeout may also compare
    the time spent, for servers whose ``lc_messages`` is not English).
    """
    return isinstance(exc, psycopg2.errors.QueryCanceled) and "statement timeout" in (
        getattr(exc, "pgerror", None) or str(exc)
    )


def map_postgres_error(exc: Exception) -> HTTPError:
    """Translate a psycopg2 error into an API error (no server details leak)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, psycopg2.errors.QueryCanceled):
        if is_statement_timeout(exc):
            return GatewayTimeout("PostgreSQL canceled the query on its statement_timeout.")
        return ServiceUnavailable("PostgreSQL canceled the query.")
    if isinstance(exc, psycopg2.errors.LockNotAvailable):
        return Conflict("Object is locked by another session.")
    if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        return HTTPError(f"PostgreSQL refused: {message}", status=403)
    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        text = str(exc)
        missing = _MISSING_DB.search(text)
        if missing:
            return NotFound(f"Database '{missing.group(1)}' not found.")
        refusing = _REFUSING_DB.search(text)
        if refusing:
            return Conflict(f"Database '{refusing.group(1)}' does not accept connections.")
        denied = _DENIED_DB.search(text)
        if denied:  # no CONNECT privilege
            return Forbidden(f"PostgreSQL refused: {denied.group(0)}")
        return ServiceUnavailable("PostgreSQL is unavailable.")
    return HTTPError("Internal error.", status=500)


class _Connection(psycopg2.extensions.connection):
    """A psycopg2 connection that knows whether the pool may keep it."""

    poolable = True


@dataclass
class _Idle:
    key: tuple
    conn: Any
    since: float  # time.monotonic() of its return to the pool


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # pragma: no cover - closing a broken socket
        logger.debug("Error while closing a PostgreSQL connection.", exc_info=True)


def _has_input(conn: Any) -> bool:
    """Whether an idle connection received anything: the server closed it, mostly."""
    try:
        poller = select.poll()  # no FD_SETSIZE limit, unlike select()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg2.Error):
        return True


class Postgres:
    """Connection factory for one PostgreSQL instance, with a bounded idle pool."""

    def __init__(
        self,
        host: str | None,
        port: int,
        user: str,
        password: str | None,
        dbname: str,
        application_name: str = "temboard-agent",
        connect_timeout: int = 5,
        idle_timeout: float = 10.0,
        max_idle: int = 8,
    ) -> None:
        self.params: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": user,
            "dbname": dbname,
            "application_name": application_name,
            "connect_timeout": connect_timeout,
        }
        if password:
            self.params["password"] = password
        self.default_dbname = dbname
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self._idle: list[_Idle] = []  # oldest return first
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._reaper: threading.Thread | None = None

    def _open(self, dbname: str, options: str, pooled: bool) -> Any:
        params = dict(self.params, dbname=dbname, options=options)
        try:
            conn = psycopg2.connect(connection_factory=_Connection, **params)
        except psycopg2.Error as exc:
            raise map_postgres_error(exc) from exc
        try:
            conn.autocommit = True
            if pooled:
                with conn.cursor() as cur:
                    cur.execute(_IS_TEMPLATE)
                    conn.poolable = not cur.fetchone()[0]
        except psycopg2.errors.QueryCanceled:
            # already the statement timeout: the caller, who knows it, says so
            _close_quietly(conn)
            raise
        except psycopg2.Error as exc:
            _close_quietly(conn)
            raise map_postgres_error(exc) from exc
        return conn

    @staticmethod
    def _options(read_only: bool, statement_timeout: int | None, lock_timeout: int | None) -> str:
        """Startup options: they override database and role defaults (``ALTER ... SET``)."""
        parts = [f"-c search_path={SEARCH_PATH}"]
        if read_only:
            parts.append("-c default_transaction_read_only=on")
        if statement_timeout is not None:
            parts.append(f"-c statement_timeout={int(statement_timeout)}")
        if lock_timeout is not None:
            parts.append(f"-c lock_timeout={int(lock_timeout)}")
        return " ".join(parts)

    def _checkout(self, key: tuple) -> Any | None:
        while True:
            with self._lock:
                for i in range(len(self._idle) - 1, -1, -1):  # most recent first
                    if self._idle[i].key == key:
                        entry = self._idle.pop(i)
                        break
                else:
                    return None
            conn = entry.conn
            if conn.closed or _has_input(conn):  # e.g. terminated by the server
                _close_quietly(conn)
                continue
            if time.monotonic() - entry.since > REVALIDATE_AFTER:
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                except psycopg2.Error:
                    _close_quietly(conn)
                    continue
            return conn

    def _checkin(self, key: tuple, conn: Any) -> None:
        if conn.closed:
            return
        if not getattr(conn, "poolable", False) or self.max_idle < 1 or self.idle_timeout <= 0:
            _close_quietly(conn)
            return
        status = conn.info.transaction_status
        if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            try:
                if conn.autocommit:  # a BEGIN sent as SQL: rollback() would do nothing
                    with conn.cursor() as cur:
                        cur.execute("ROLLBACK")
                else:
                    conn.rollback()
            except psycopg2.Error:
                _close_quietly(conn)
                return
        with self._lock:
            if self._closed:
                evicted = [conn]
            else:
                self._idle.append(_Idle(key, conn, time.monotonic()))
                evicted = self._evict_over_caps(key)
                self._start_reaper()
                self._changed.notify()
        for extra in evicted:
            _close_quietly(extra)

    def _evict_over_caps(self, key: tuple) -> list[Any]:
        """Drop the least recently used idle connections over the caps (lock held)."""
        evicted = []
        same_key = [i for i, entry in enumerate(self._idle) if entry.key == key]
        if len(same_key) > MAX_IDLE_PER_KEY:
            evicted.append(self._idle.pop(same_key[0]).conn)
        while len(self._idle) > self.max_idle:
            evicted.append(self._idle.pop(0).conn)
        return evicted

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(
                target=self._reap, name="postgres-pool-reaper", daemon=True
            )
            self._reaper.start()

    def _reap(self) -> None:
        """Close idle connections ``idle_timeout`` seconds after their last use."""
        while True:
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                expired = 0
                while (
                    expired < len(self._idle)
                    and now - self._idle[expired].since >= self.idle_timeout
                ):
                    expired += 1
                stale = [entry.conn for entry in self._idle[:expired]]
                del self._idle[:expired]
                if not stale:
                    wait = self._idle[0].since + self.idle_timeout - now if self._idle else None
                    self._changed.wait(wait)
                    continue
            for conn in stale:
                _close_quietly(conn)

    @contextmanager
    def connect(
        self,
        dbname: str | None = None,
        *,
        pooled: bool = True,
        read_only: bool = True,
        statement_timeout: int | None = None,
        lock_timeout: int | None = None,
    ) -> Iterator[Any]:
        """Yield an autocommit connection to ``dbname`` (default: the configured one).

        ``search_path`` is pinned to ``pg_catalog, pg_temp``; ``read_only``
        (the default) makes every transaction read-only: pass ``False`` only to
        write or maintain (VACUUM, ANALYZE, REINDEX). Timeouts are in
        milliseconds. Settings are startup options, which override database
        and role defaults. A pooled connection goes back to the pool unless an
        error broke it or its database is a template.
        """
        dbname = dbname or self.default_dbname
        options = self._options(read_only, statement_timeout, lock_timeout)
        key = (dbname, options)
        conn = self._checkout(key) if pooled else None
        if conn is None:
            conn = self._open(dbname, options, pooled)
        broken = True
        try:
            yield conn
            broken = False
        except psycopg2.errors.QueryCanceled:  # a timeout: the connection is fine
            broken = conn.closed != 0
            raise
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self.close_idle()  # likely a server restart: drop every idle connection
            raise
        except psycopg2.Error:
            broken = False
            raise
        finally:
            if pooled and not broken:
                self._checkin(key, conn)
            else:
                _close_quietly(conn)

    def idle_connections(self) -> int:
        """How many connections the pool keeps idle now."""
        with self._lock:
            return len(self._idle)

    def close_idle(self) -> None:
        """Close every idle connection (the pool stays usable)."""
        with self._lock:
            stale = [entry.conn for entry in self._idle]
            self._idle.clear()
        for conn in stale:
            _close_quietly(conn)

    def close(self) -> None:
        """Stop the reaper and close idle connections; later ones are not kept."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
            reaper = self._reaper
        if reaper is not None:
            reaper.join(5)
        self.close_idle()

    def server_info(self) -> dict[str, Any]:
        """Version, data directory, port and block size of the instance."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pg_catalog.current_setting('server_version_num')::integer,"
                " pg_catalog.version(), pg_catalog.current_setting('server_version'),"
                " pg_catalog.current_setting('data_directory', true),"
                " pg_catalog.current_setting('port')::integer,"
                " pg_catalog.current_setting('block_size')::integer"
            )
            num, full, short, datadir, port, block_size = cur.fetchone()
        return {
            "version_num": num,
            "version": full,
            "version_summary": f"PostgreSQL {short}",
            "data_directory": datadir,
            "port": port,
            "block_size": block_size,
        }
