"""The ``[maintenance]`` configuration section."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from ...errors import ConfigError

logger = logging.getLogger(__name__)

OPTIONS = ("statement_timeout", "lock_timeout", "parallel_databases", "finished_visible")
#: finished operations listed at most this long (lists stay short, not a history)
MAX_FINISHED_VISIBLE = 3600


@dataclass(frozen=True)
class MaintenanceSettings:
    """Limits that keep the plugin's reads from hurting production."""

    statement_timeout: int = 30000  # ms, for read queries
    lock_timeout: int = 500  # ms, for read queries touching relations
    parallel_databases: int = 4  # concurrent per-database queries of GET /maintenance
    # seconds a finished operation stays in the /scheduled lists, so clients that
    # poll them (the temboard UI, every 5 s) see it end and refresh their page
    finished_visible: int = 12

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
            too_big = name == "finished_visible" and value > MAX_FINISHED_VISIBLE
            if value < (1 if name == "parallel_databases" else 0) or too_big:
                raise ConfigError(f"maintenance.{name}: {raw!r} is out of range")
            values[name] = value
        unknown = set(section) - set(OPTIONS)
        for name in sorted(unknown):
            logger.warning("Ignoring unknown option maintenance.%s.", name)
        return cls(**values)
