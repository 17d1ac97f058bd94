"""The ``[maintenance]`` configuration section."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Mapping

from ...errors import ConfigError

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


#: PostgreSQL's timeouts are int milliseconds
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class MaintenanceSettings:
    """Limits that keep the plugin's reads from hurting production, and advice thresholds.

    Every option is a non-negative integer; :data:`MINIMUMS` raises the floor of some.
    """

    statement_timeout: int = 30000  # ms, for read queries
    lock_timeout: int = 500  # ms, for read queries touching relations
    parallel_databases: int = 4  # concurrent per-database queries of GET /maintenance
    heavy_pages: int = 8  # heavy pages served at once (half the HTTP threads); others wait
    # seconds a finished operation stays in the /scheduled lists, so clients that
    # poll them (the temboard UI, every 5 s) see it end and refresh their page
    finished_visible: int = 12
    #: ms an operation statement waits for a lock before it gives up and retries later
    operation_lock_timeout: int = 2000
    #: s an operation may spend in total waiting for locks (attempts and pauses)
    operation_lock_wait: int = 900
    # GET .../advice thresholds (see README, "Advice")
    advice_table_bloat_percent: int = 30
    advice_table_bloat_bytes: int = 100 * MIB
    advice_index_bloat_percent: int = 30
    advice_index_bloat_bytes: int = 10 * MIB
    advice_unused_index_days: int = 7  # 0: no minimum age of the statistics
    advice_wraparound_warning: int = 50  # % of autovacuum_(multixact_)freeze_max_age
    advice_wraparound_critical: int = 80

    @classmethod
    def from_section(cls, section: Mapping[str, str]) -> MaintenanceSettings:
        known = {f.name for f in fields(cls)}
        values = {}
        for name in sorted(known & set(section)):
            raw = section[name]
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"maintenance.{name}: {raw!r} is not an integer") from None
            if value < MINIMUMS.get(name, 0) or value > MAXIMUMS.get(name, 2**62):
                raise ConfigError(f"maintenance.{name}: {raw!r} is out of range")
            values[name] = value
        for name in sorted(set(section) - known):
            logger.warning("Ignoring unknown option maintenance.%s.", name)
        return cls(**values)


#: operation_lock_timeout 0 would wait forever
MINIMUMS = {"parallel_databases": 1, "heavy_pages": 1, "operation_lock_timeout": 1}
MAXIMUMS = {
    "finished_visible": 3600,  # lists stay short: they are not a history
    "operation_lock_timeout": INT_MAX,
    "operation_lock_wait": INT_MAX,
    "advice_table_bloat_percent": 100,
    "advice_index_bloat_percent": 100,
    "advice_wraparound_warning": 100,
    "advice_wraparound_critical": 100,
}
