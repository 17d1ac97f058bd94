"""Pure parts of the maintenance read side: SQL loading, pg_size_pretty."""

from __future__ import annotations

import re

import pytest

from temboardagent.plugins.maintenance import catalog
from temboardagent.plugins.maintenance.sql import load_sql

# values printed by PostgreSQL 15's pg_size_pretty(bigint)
PRETTY = {
    0: "0 bytes",
    1: "1 bytes",
    8192: "8192 bytes",
    10239: "10239 bytes",
    10240: "10 kB",
    10751: "10 kB",
    10752: "11 kB",
    20970495: "20 MB",
    20446207: "19 MB",
    10485247: "10239 kB",
    20970496: "20 MB",
    335872: "328 kB",
    7788007: "7605 kB",
    8492519: "8293 kB",
    (1 << 40) * 21: "21 TB",
    (1 << 50) * 5: "5120 TB",
    (1 << 50) * 20: "20 PB",
    -10240: "-10 kB",
}


@pytest.mark.parametrize("value,expected", sorted(PRETTY.items()))
def test_size_pretty(value, expected):
    assert catalog.size_pretty(value) == expected
    assert catalog.size_pretty(float(value)) == expected


def test_size_pretty_none():
    assert catalog.size_pretty(None) is None


@pytest.mark.parametrize(
    "name", ["relations", "database", "schema_context", "table_context", "database_context"]
)
@pytest.mark.parametrize("stats", ["pg_statistic", "pg_stats"])
def test_includes_resolved(name, stats):
    text = load_sql(name, stats)
    assert "/*@" not in text
    # only psycopg2 named placeholders use "%"
    assert not re.search(r"%(?!\(\w+\)s)", text)
    if name in ("relations", "database"):
        assert ("pg_catalog.pg_stats " in text) is (stats == "pg_stats")
        assert ("pg_catalog.pg_statistic " in text) is (stats == "pg_statistic")


def test_main_sql_settings_per_version_and_variant():
    pg15 = catalog._main_sql("relations", True, 150000)
    assert pg15.startswith("SET LOCAL jit = off;\n--")
    assert "MATERIALIZED" not in pg15  # only the pg_stats variant uses it
    assert catalog._main_sql("relations", True, 100000).startswith("--")
    unprivileged = catalog._main_sql("relations", False, 150000)
    assert "SET LOCAL enable_nestloop = off;" in unprivileged
    assert "ps AS MATERIALIZED (" in unprivileged
    assert "ps AS  (" in catalog._main_sql("relations", False, 110000)
    single = catalog._main_sql("relations", False, 150000, single=True)
    assert "enable_nestloop" not in single
    assert pg15 is catalog._main_sql("relations", True, 150000)  # cached
