"""PostgreSQL connections: a small per-database pool, errors mapped for the API."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from .errors import Conflict, GatewayTimeout, HTTPError, NotFound, ServiceUnavailable

logger = logging.getLogger(__name__)

#: a pooled connection idle for longer than this is checked before reuse
REVALIDATE_AFTER = 2.0
MAX_IDLE_PER_KEY = 4


_MISSING_DB = re.compile(r'database "(.*)" does not exist', re.S)  # names may hold newlines
_REFUSING_DB = re.compile(r'database "(.*)" is not currently accepting connections')


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
        return ServiceUnavailable("PostgreSQL is unavailable.")
    return HTTPError("Internal error.", status=500)


class Postgres:
    """Connection factory for one PostgreSQL instance."""

    def __init__(
        self,
        host: str | None,
        port: int,
        user: str,
        password: str | None,
        dbname: str,
        application_name: str = "temboard-agent",
        connect_timeout: int = 5,
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
        self._idle: dict[tuple, list[tuple[float, Any]]] = defaultdict(list)
        self._lock = threading.Lock()

    def _open(self, dbname: str, options: str) -> Any:
        params = dict(self.params, dbname=dbname)
        if options:
            params["options"] = options
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.Error as exc:
            raise map_postgres_error(exc) from exc
        conn.autocommit = True
        return conn

    @staticmethod
    def _options(statement_timeout: int | None, lock_timeout: int | None) -> str:
        parts = []
        if statement_timeout is not None:
            parts.append(f"-c statement_timeout={int(statement_timeout)}")
        if lock_timeout is not None:
            parts.append(f"-c lock_timeout={int(lock_timeout)}")
        return " ".join(parts)

    def _checkout(self, key: tuple) -> Any | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                since, conn = idle.pop()
            if conn.closed:
                continue
            if time.monotonic() - since > REVALIDATE_AFTER:
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                except psycopg2.Error:
                    conn.close()
                    continue
            return conn

    def _checkin(self, key: tuple, conn: Any) -> None:
        if conn.closed:
            return
        status = conn.info.transaction_status
        if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            try:
                conn.rollback()
            except psycopg2.Error:
                conn.close()
                return
        with self._lock:
            idle = self._idle[key]
            if len(idle) < MAX_IDLE_PER_KEY:
                idle.append((time.monotonic(), conn))
                return
        conn.close()

    @contextmanager
    def connect(
        self,
        dbname: str | None = None,
        *,
        pooled: bool = True,
        statement_timeout: int | None = None,
        lock_timeout: int | None = None,
    ) -> Iterator[Any]:
        """Yield an autocommit connection to ``dbname`` (default: the configured one).

        Timeouts are in milliseconds and set at connection time. A pooled
        connection goes back to the pool unless an error broke it.
        """
        dbname = dbname or self.default_dbname
        options = self._options(statement_timeout, lock_timeout)
        key = (dbname, options)
        conn = self._checkout(key) if pooled else None
        if conn is None:
            conn = self._open(dbname, options)
        broken = True
        try:
            yield conn
            broken = False
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
                conn.close()

    def close_idle(self) -> None:
        with self._lock:
            pools = list(self._idle.values())
            self._idle.clear()
        for idle in pools:
            for _, conn in idle:
                conn.close()

    def server_info(self) -> dict[str, Any]:
        """Version, data directory, port and block size of the instance."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT current_setting('server_version_num')::int,"
                " version(), current_setting('server_version'),"
                " current_setting('data_directory', true),"
                " current_setting('port')::int,"
                " current_setting('block_size')::int"
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
