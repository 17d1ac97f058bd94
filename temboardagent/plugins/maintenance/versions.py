"""What differs between the supported PostgreSQL major versions (12 to 18), in one place.

The maintenance pages return the same keys with the same meaning on every version:

- **Table page statistics**: ``pg_stat_all_tables`` gains columns over versions
  (``n_ins_since_vacuum`` in 13; ``last_seq_scan``, ``last_idx_scan``,
  ``n_tup_newpage_upd`` in 16; four ``total_*_time`` in 18). The page lists
  :data:`TABLE_STATS_COLUMNS` on every version, ``null`` where the server has no
  such column (:func:`table_stats_columns`).
- **Row estimates**: before 14, ``pg_class.reltuples`` is 0 both for an empty
  table and for one never vacuumed nor analyzed; from 14 the latter is -1.
  ``sql/reltuples.sql`` reads 0 as -1 ("unknown") on 12 and 13 when the
  relation has no pages in ``pg_class`` and no VACUUM or ANALYZE was ever
  recorded for it, so that a never analyzed table has ``row_estimate`` -1 and
  a ``null`` bloat on every version.
- **pg_size_pretty**: the ``PB`` unit exists from 15; before, sizes stay in
  ``TB`` (``12309 TB`` instead of ``12 PB``). :func:`pg_size_pretty` follows the
  server's units, so sizes computed by the agent read as those of SQL.
- **Cumulative statistics** (``pg_stat_*``): before 15 a collector process
  receives them asynchronously, so a page may show counters up to about half a
  second old; from 15 they are in shared memory. The agent shows what the
  server shows.
- **Progress views**: ``pg_stat_progress_analyze`` only exists from 13; the
  progress module unions the views a server has (``progress.VIEWS``).
- Not differences for the agent: ``REINDEX ... CONCURRENTLY`` and
  ``MATERIALIZED`` CTEs exist from 12, JIT from 11; the ``public`` schema loses
  its CREATE privilege for PUBLIC in 15, which changes nothing for an agent that
  pins ``search_path`` and qualifies every name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

#: The oldest supported server (``server_version_num``).
MIN_VERSION = 120000


@dataclass(frozen=True)
class StatColumn:
    """A ``pg_stat_all_tables`` column of the table page."""

    name: str
    sql_type: str  # type of the column (and of its NULL on older servers)
    since: int  # first server_version_num that has it
    description: str = ""


def _col(name: str, sql_type: str = "int8", since: int = MIN_VERSION, doc: str = "") -> StatColumn:
    return StatColumn(name, sql_type, since, doc)


#: Columns of ``pg_stat_all_tables`` on the table page, in PostgreSQL 18's order.
TABLE_STATS_COLUMNS: tuple[StatColumn, ...] = (
    _col("relid", "oid", doc="table OID, as PostgreSQL text"),
    _col("schemaname", "name"),
    _col("relname", "name"),
    _col("seq_scan"),
    _col("last_seq_scan", "timestamptz", 160000),
    _col("seq_tup_read"),
    _col("idx_scan"),
    _col("last_idx_scan", "timestamptz", 160000),
    _col("idx_tup_fetch"),
    _col("n_tup_ins"),
    _col("n_tup_upd"),
    _col("n_tup_del"),
    _col("n_tup_hot_upd"),
    _col("n_tup_newpage_upd", since=160000),
    _col("n_live_tup"),
    _col("n_dead_tup"),
    _col("n_mod_since_analyze"),
    _col("n_ins_since_vacuum", since=130000),
    _col("last_vacuum", "timestamptz"),
    _col("last_autovacuum", "timestamptz"),
    _col("last_analyze", "timestamptz"),
    _col("last_autoanalyze", "timestamptz"),
    _col("vacuum_count"),
    _col("autovacuum_count"),
    _col("analyze_count"),
    _col("autoanalyze_count"),
    _col("total_vacuum_time", "float8", 180000, "milliseconds"),
    _col("total_autovacuum_time", "float8", 180000, "milliseconds"),
    _col("total_analyze_time", "float8", 180000, "milliseconds"),
    _col("total_autoanalyze_time", "float8", 180000, "milliseconds"),
)


def major(version: int) -> int:
    """Major version of a ``server_version_num``: 130023 -> 13."""
    return version // 10000


def table_stats_columns(version: int) -> str:
    """Select list of :data:`TABLE_STATS_COLUMNS` from ``pg_stat_all_tables s``.

    A column the server lacks is a NULL of the column's type. The names are
    the constants above (plain lowercase identifiers): no quoting needed.
    """
    items = []
    for col in TABLE_STATS_COLUMNS:
        value = f"s.{col.name}" if version >= col.since else f"NULL::pg_catalog.{col.sql_type}"
        items.append(f"{value} AS {col.name}")
    return ",\n       ".join(items)


class SizeUnit(NamedTuple):
    name: str
    limit: int  # values below it (in this unit) are printed in this unit
    rounded: bool  # half-rounded (one extra bit kept) or not
    bits: int  # log2 of the unit in bytes


_UNITS = (SizeUnit("bytes", 10 * 1024, False, 0),) + tuple(
    SizeUnit(name, 20 * 1024 - 1, True, bits)
    for name, bits in (("kB", 10), ("MB", 20), ("GB", 30), ("TB", 40), ("PB", 50))
)


def size_units(version: int) -> tuple[SizeUnit, ...]:
    """``pg_size_pretty``'s units on a server: up to PB from 15, TB before."""
    return _UNITS if version >= 150000 else _UNITS[:-1]


def _c_div(value: int, divisor: int) -> int:
    """Integer division truncating toward zero, as C does."""
    quotient = abs(value) // divisor
    return quotient if value >= 0 else -quotient


def pg_size_pretty(size: int, version: int) -> str:
    """``pg_size_pretty(bigint)`` of a server of ``version``, computed here.

    Divisions truncate toward zero and halves round away from zero; the
    largest unit is PB from 15, TB before (``size_units``).
    """
    units = size_units(version)
    for i, unit in enumerate(units):
        if i == len(units) - 1 or abs(size) < unit.limit:
            if unit.rounded:
                size = _c_div(size + (1 if size >= 0 else -1), 2)
            return f"{size} {unit.name}"
        following = units[i + 1]
        shift = following.bits - unit.bits - int(following.rounded) + int(unit.rounded)
        size = _c_div(size, 1 << shift)
    raise AssertionError("unreachable")  # pragma: no cover
