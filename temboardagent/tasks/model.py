"""Task records, states, time helpers and exceptions of the task manager."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

PENDING = ("todo", "queued", "doing")
FINISHED = ("done", "failed", "canceled", "aborted")
STATUSES = PENDING + FINISHED

#: a task id: 8 lowercase hexadecimal digits (routes and the OpenAPI document use it too)
ID_PATTERN = "[0-9a-f]{8}"
ID_RE = re.compile(ID_PATTERN + r"\Z")

UTC = timezone.utc  # datetime.UTC needs Python 3.11
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def utcnow() -> datetime:
    """Current time, tz-aware UTC."""
    return datetime.now(UTC)


def as_utc(dt: datetime) -> datetime:
    """Return ``dt`` in UTC; a naive datetime is taken as UTC already."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def to_us(dt: datetime) -> int:
    """Datetime -> integer microseconds since the epoch (exact, ordered)."""
    return (as_utc(dt) - EPOCH) // _US


def from_us(value: int | None) -> datetime | None:
    """Integer microseconds since the epoch -> tz-aware UTC datetime."""
    if value is None:
        return None
    return EPOCH + timedelta(microseconds=value)


@dataclass(frozen=True)
class Task:
    """One row of the task list, as of the moment it was read."""

    id: str
    worker: str
    target: dict[str, Any]
    options: dict[str, Any]
    start: datetime
    status: str
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    pid: int | None = None
    output: str | None = None
    error: str | None = None
    #: what the worker reported besides its output (JSON object), e.g. notices
    details: dict[str, Any] | None = None
    #: PostgreSQL system identifier of the cluster the task was scheduled for
    #: (None: unknown, no check)
    system_identifier: str | None = None
    attempts: int | None = None  # statement runs so far (lock retries), None before the first

    @property
    def pending(self) -> bool:
        """True while the task is todo, queued or doing."""
        return self.status in PENDING


class TaskError(Exception):
    """Base class of task manager errors."""


class TaskExists(TaskError):
    """A pending task with the same worker, target, options and start exists."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} is already scheduled")
        self.task_id = task_id


class TaskNotFound(TaskError):
    """No task has this id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class TaskFinished(TaskError):
    """The task is already finished (cannot be canceled)."""

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task.id} is already {task.status}")
        self.task = task


class TaskAborted(Exception):
    """Raised by a worker's run() to end its task ``aborted`` without running it
    (e.g. the connected cluster is not the one the task was scheduled for);
    ``str()`` is the task's error."""
