"""Limits of the read side: read connections whose timeouts are said as such, heavy-page slots.

- A read canceled by the plugin's ``statement_timeout`` answers 504 with a
  message naming the timeout and the setting that raises it (a 503 would say
  PostgreSQL is unreachable).
- Heavy pages (instance, database and schema pages: their cost grows with the
  catalog) run at most ``heavy_pages`` at once; a request beyond waits for a
  slot, and only then connects, so its statement timeout does not run while
  it waits; the slot is given back once PostgreSQL has computed the page's
  rows, before they are sent. After a heavy page, the C allocator gives its free memory back to
  the system (glibc ``malloc_trim``), which it otherwise keeps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import psycopg2.errors

from ...errors import GatewayTimeout
from ...postgres import is_statement_timeout
from .. import PluginContext
from .settings import MaintenanceSettings

logger = logging.getLogger(__name__)


@contextmanager
def read_connection(
    ctx: PluginContext,
    settings: MaintenanceSettings,
    dbname: str | None = None,
    pooled: bool = True,
) -> Iterator[Any]:
    """A connection with the read timeouts; a statement timeout becomes a 504."""
    started = time.monotonic()
    try:
        with ctx.connect(
            dbname,
            pooled=pooled,
            statement_timeout=settings.statement_timeout,
            lock_timeout=settings.lock_timeout,
        ) as conn:
            yield conn
    except psycopg2.errors.QueryCanceled as exc:
        elapsed_ms = (time.monotonic() - started) * 1000
        limit = settings.statement_timeout
        if limit and (is_statement_timeout(exc) or elapsed_ms >= limit):
            raise GatewayTimeout(
                f"The read took longer than the statement timeout ({limit} ms) and PostgreSQL"
                " canceled it; raise [maintenance] statement_timeout to allow longer reads."
            ) from exc
        raise


class HeavyPages:
    """At most ``limit`` heavy pages at once; others wait for a slot (not refused)."""

    def __init__(self, limit: int, trim: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._trim = trim if trim is not None else release_free_memory

    @contextmanager
    def slot(self, label: str) -> Iterator[Callable[[], None]]:
        """Hold a slot; yield a function that gives it back early (idempotent).

        A page gives its slot back once PostgreSQL has computed its rows:
        sending them to a slow client then keeps nobody else waiting.
        """
        if not self._slots.acquire(blocking=False):
            logger.debug("%s waits for one of %d heavy-page slots.", label, self.limit)
            self._slots.acquire()
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                self._slots.release()

        try:
            yield release
        finally:
            release()
            self._trim()


def _malloc_trim() -> Callable[[], Any] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give the C allocator's free memory back to the system (glibc only)."""
    if _TRIM is not None:
        _TRIM()
