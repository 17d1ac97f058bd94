"""The ``[maintenance]`` configuration section."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from ...errors import ConfigError

logger = logging.getLogger(__name__)

INTEGERS = ("statement_timeout", "lock_timeout", "parallel_databases", "heavy_pages")
AT_LEAST_ONE = ("parallel_databases", "heavy_pages")


@dataclass(frozen=True)
class MaintenanceSettings:
    """Limits that keep the plugin's reads from hurting production."""

    statement_timeout: int = 30000  # ms, for read queries
    lock_timeout: int = 500  # ms, for read queries touching relations
    parallel_databases: int = 4  # concurrent per-database queries of GET /maintenance
    heavy_pages: int = 2  # instance, database and schema pages served at once; others wait

    @classmethod
    def from_section(cls, section: Mapping[str, str]) -> MaintenanceSettings:
        values = {}
        for name in INTEGERS:
            if name not in section:
                continue
            raw = section[name]
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"maintenance.{name}: {raw!r} is not an integer") from None
            if value < (1 if name in AT_LEAST_ONE else 0):
                raise ConfigError(f"maintenance.{name}: {raw!r} is out of range")
            values[name] = value
        unknown = set(section) - set(INTEGERS)
        for name in sorted(unknown):
            logger.warning("Ignoring unknown option maintenance.%s.", name)
        return cls(**values)
