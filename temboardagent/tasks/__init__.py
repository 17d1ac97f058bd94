"""Durable task list: SQLite persistence, scheduler thread, worker pool."""

from __future__ import annotations

from .manager import (
    CRASH_REASON,
    SHUTDOWN_REASON,
    ConflictKey,
    TaskContext,
    TaskFacade,
    TaskManager,
    UnknownWorker,
    WorkerSpec,
    conflicts,
)
from .model import (
    FINISHED,
    ID_PATTERN,
    PENDING,
    STATUSES,
    Task,
    TaskAborted,
    TaskError,
    TaskExists,
    TaskFinished,
    TaskNotFound,
)

__all__ = [
    "CRASH_REASON",
    "ConflictKey",
    "FINISHED",
    "ID_PATTERN",
    "PENDING",
    "SHUTDOWN_REASON",
    "STATUSES",
    "Task",
    "TaskAborted",
    "TaskContext",
    "TaskError",
    "TaskExists",
    "TaskFacade",
    "TaskFinished",
    "TaskManager",
    "TaskNotFound",
    "UnknownWorker",
    "WorkerSpec",
    "conflicts",
]
