"""Version differences of the maintenance plugin that need no server."""

from __future__ import annotations

import re

import pytest

from temboardagent.plugins.maintenance import catalog, openapi, versions

# pg_size_pretty(bigint) as printed by PostgreSQL 14 and 15 (run side by side)
PRETTY_14_15 = {
    (1 << 40) * 21: ("21 TB", "21 TB"),
    (1 << 50) * 5: ("5120 TB", "5120 TB"),
    (1 << 50) * 12 + 7: ("12288 TB", "12 PB"),
    13533947780937494: ("12309 TB", "12 PB"),
    (1 << 62): ("4194304 TB", "4096 PB"),
    -10241: ("-10 kB", "-10 kB"),
    -10752: ("-11 kB", "-11 kB"),
}


@pytest.mark.parametrize("value,expected", sorted(PRETTY_14_15.items()))
def test_size_pretty_units_follow_the_server(value, expected):
    assert catalog.size_pretty(value, 140023) == expected[0]
    assert catalog.size_pretty(value, 120022) == expected[0]
    assert catalog.size_pretty(value, 150000) == expected[1]
    assert catalog.size_pretty(value, 180004) == expected[1]


def test_table_stats_columns_unique_and_documented():
    names = [c.name for c in versions.TABLE_STATS_COLUMNS]
    assert len(names) == len(set(names))
    table = openapi.SCHEMAS["Table"]
    for column in versions.TABLE_STATS_COLUMNS:
        schema = table["properties"][column.name]
        assert column.name in table["required"]
        if column.since > versions.MIN_VERSION:
            assert "null" in schema["type"]
            assert f"null before PostgreSQL {column.since // 10000}" in schema["description"]


def test_missing_columns_are_typed_nulls():
    old = versions.table_stats_columns(120000)
    assert "NULL::pg_catalog.int8 AS n_ins_since_vacuum" in old
    assert old.count("NULL::pg_catalog.") == sum(
        c.since > 120000 for c in versions.TABLE_STATS_COLUMNS
    )
    assert "NULL" not in versions.table_stats_columns(180000)
    assert "{columns}" not in catalog.table_stats_query(130000)


def test_column_names_need_no_quoting():
    for column in versions.TABLE_STATS_COLUMNS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", column.name), column
        assert re.fullmatch(r"[a-z0-9]+", column.sql_type), column
