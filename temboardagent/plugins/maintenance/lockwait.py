"""Lock discipline of operations: give up a lock quickly, retry later, obey a time limit.

Every statement runs with a short ``lock_timeout`` (``[maintenance]
operation_lock_timeout``), so it never stays queued in front of the
application's queries. A statement that could not get its lock
(``LockNotAvailable``) is tried again after a pause growing 1 s, 2 s, 4 s... up
to 30 s, until the time spent waiting for locks (failed attempts plus pauses)
reaches ``operation_lock_wait``. A database-wide operation is a list of steps,
one per relation: a pass runs every step once, the next pass only the steps
whose lock did not come.

An operation ``timeout`` bounds everything: each statement runs with the time
left as its ``statement_timeout``, and pauses end at the deadline. A cancel
request ends a pause at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import psycopg2.errors

from .statements import format_seconds, quote_ident

FIRST_PAUSE = 1.0  # seconds
MAX_PAUSE = 30.0  # seconds
#: a statement canceled this close to the operation's deadline timed out
TIMEOUT_SLACK = 0.1  # seconds


def pauses(first: float = FIRST_PAUSE, maximum: float = MAX_PAUSE) -> Iterator[float]:
    """1, 2, 4, 8, 16, 30, 30... seconds."""
    pause = first
    while True:
        yield min(pause, maximum)
        pause *= 2


@dataclass(frozen=True)
class Step:
    """One statement of an operation; ``schema.table`` when it processes one relation
    of a database-wide operation.

    A batch (one statement over several relations) has its ``parts``: when its lock
    does not come, or a relation vanished, the parts run one by one at once, so a
    busy relation holds back no other.
    """

    statement: Any  # psycopg2.sql.Composable
    schema: str | None = None
    table: str | None = None
    parts: tuple[Step, ...] = ()

    @property
    def relation(self) -> str | None:
        """``"schema"."table"`` of a per-relation step."""
        if self.table is None:
            return None
        return f"{quote_ident(self.schema)}.{quote_ident(self.table)}"


class LockWaitExpired(Exception):
    """Some steps never got their lock within ``operation_lock_wait``."""

    def __init__(self, steps: Sequence[Step], attempts: int, waited: float) -> None:
        super().__init__(f"lock not available after {attempts} attempts")
        self.steps = list(steps)
        self.attempts = attempts
        self.waited = waited


class TimedOut(Exception):
    """The operation's ``timeout`` passed; ``str()`` is the task error."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"timed out after {format_seconds(timeout)} s")
        self.timeout = timeout


class Canceled(Exception):
    """A cancel was requested while the operation waited between attempts."""


#: ``execute(step, statement_timeout_ms)``: run one statement (None: no time limit)
Execute = Callable[[Step, "int | None"], None]


@dataclass
class LockRetry:
    """The retry loop of one operation."""

    lock_wait: float  # seconds
    cancel: threading.Event
    on_attempt: Callable[[int], None] = lambda attempt: None
    timeout: float | None = None  # seconds, from ``started``
    started: float | None = None  # clock() at the operation's start
    clock: Callable[[], float] = time.monotonic
    first_pause: float = FIRST_PAUSE
    max_pause: float = MAX_PAUSE

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()
        self.deadline = None if self.timeout is None else self.started + self.timeout

    def _time_left_ms(self) -> int | None:
        """Milliseconds left before the deadline (at least 1); TimedOut when none."""
        if self.deadline is None:
            return None
        left = self.deadline - self.clock()
        if left <= 0:
            raise TimedOut(self.timeout)
        return max(1, math.ceil(left * 1000 - 1e-6))

    def run(self, steps: Sequence[Step], execute: Execute) -> int:
        """Run every step; return the number of passes (attempts).

        Raises LockWaitExpired, TimedOut, Canceled, or the error of a step.
        """
        pending = list(steps)
        waited = 0.0
        attempts = 0
        next_pause = pauses(self.first_pause, self.max_pause)
        while True:
            attempts += 1
            self.on_attempt(attempts)
            failed: list[Step] = []
            queue = deque(pending)
            while queue:
                step = queue.popleft()
                if self.cancel.is_set():
                    raise Canceled("Canceled while waiting for a lock.")
                time_left = self._time_left_ms()
                t0 = self.clock()
                try:
                    execute(step, time_left)
                except psycopg2.errors.LockNotAvailable:
                    waited += self.clock() - t0
                    if step.parts:
                        queue.extendleft(reversed(step.parts))
                    else:
                        failed.append(step)
                except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
                    if not step.parts:
                        raise
                    queue.extendleft(reversed(step.parts))  # which one vanished?
                except psycopg2.errors.QueryCanceled:
                    # statement_timeout or a pg_cancel_backend: same SQLSTATE, and the
                    # message is translated. The server's timer and our clock differ
                    # by a little: a cancel this close to the deadline is the timeout.
                    if (
                        self.deadline is not None
                        and not self.cancel.is_set()
                        and self.clock() >= self.deadline - TIMEOUT_SLACK
                    ):
                        raise TimedOut(self.timeout) from None
                    raise
            pending = failed
            if not pending:
                return attempts
            if waited >= self.lock_wait:
                raise LockWaitExpired(pending, attempts, waited)
            pause = min(next(next_pause), self.lock_wait - waited)
            if self.deadline is not None:
                pause = min(pause, max(0.0, self.deadline - self.clock()))
            if self.cancel.wait(pause):
                raise Canceled("Canceled while waiting for a lock.")
            waited += pause
            self._time_left_ms()  # TimedOut if the pause reached the deadline


# What conflicts with an operation's locks (for the message naming who held them)

ALL_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
#: modes that conflict with a requested mode (PostgreSQL's lock conflict table)
CONFLICTS = {
    "RowExclusiveLock": ALL_MODES[4:],
    "ShareUpdateExclusiveLock": ALL_MODES[3:],
    "ShareLock": (ALL_MODES[2], ALL_MODES[3], *ALL_MODES[5:]),
    "AccessExclusiveLock": ALL_MODES,
}


def requested_modes(kind: str, options: dict) -> tuple[str, str]:
    """The lock modes an operation takes on tables and on their indexes."""
    if kind == "vacuum" and "full" in options.get("mode", "").split(","):
        return "AccessExclusiveLock", "AccessExclusiveLock"
    if kind == "reindex":
        if options.get("concurrently"):
            return "ShareUpdateExclusiveLock", "ShareUpdateExclusiveLock"
        return "ShareLock", "AccessExclusiveLock"
    return "ShareUpdateExclusiveLock", "RowExclusiveLock"


def conflicting_modes(kind: str, options: dict) -> dict[str, list[str]]:
    """Bound parameters ``table_modes`` and ``index_modes`` of ``lock_holders``."""
    table, index = requested_modes(kind, options)
    return {"table_modes": list(CONFLICTS[table]), "index_modes": list(CONFLICTS[index])}


def describe_holders(rows: Sequence[tuple]) -> str:
    """``"public"."t" (pids 12, 34), "public"."u" (a prepared transaction)``."""
    parts = []
    for schema, name, pids, prepared in rows:
        holders = []
        if pids:
            label = "pid" if len(pids) == 1 else "pids"
            holders.append(f"{label} {', '.join(str(pid) for pid in pids)}")
        if prepared:
            holders.append("a prepared transaction")
        parts.append(f"{quote_ident(schema)}.{quote_ident(name)} ({' and '.join(holders)})")
    return ", ".join(parts)
