"""The ``[maintenance]`` configuration section."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from ...errors import ConfigError

logger = logging.getLogger(__name__)


OPTIONS = (
    "statement_timeout",
    "lock_timeout",
    "parallel_databases",
    "operation_lock_timeout",
    "operation_lock_wait",
)
#: options that must be at least 1 (a zero lock_timeout would wait forever)
POSITIVE = ("parallel_databases", "operation_lock_timeout")


INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class MaintenanceSettings:
    """Limits that keep the plugin's reads from hurting production."""

    statement_timeout: int = 30000  # ms, for read queries
    lock_timeout: int = 500  # ms, for read queries touching relations
    parallel_databases: int = 4  # concurrent per-database queries of GET /maintenance
    #: ms an operation statement waits for a lock before it gives up and retries later
    operation_lock_timeout: int = 2000
    #: s an operation may spend in total waiting for locks (attempts and pauses)
    operation_lock_wait: int = 900

    @classmethod
    def from_section(cls, section: Mapping[str, str]) -> MaintenanceSettings:
        values = {}
        for name in OPTIONS:
            if name not in section:
                continue
            raw = section[name]
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"maintenance.{name}: {raw!r} is not an integer") from None
            if not (1 if name in POSITIVE else 0) <= value <= INT_MAX:
                raise ConfigError(f"maintenance.{name}: {raw!r} is out of range")
            values[name] = value
        unknown = set(section) - set(OPTIONS)
        for name in sorted(unknown):
            logger.warning("Ignoring unknown option maintenance.%s.", name)
        return cls(**values)
