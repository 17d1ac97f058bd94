"""Bloat estimates against what a rewrite gives back, and the pgstattuple exact mode.

The truth of a table is its size (main fork + TOAST main fork) minus the size
of a copy of its rows (what VACUUM FULL leaves); of an index, its size minus
the same definition built on that copy (what REINDEX leaves). Estimates must
be within 5 points of bloat percentage of it (bench/bloat_accuracy.py prints
the figures for more scenarios).
"""

from __future__ import annotations

import time

import psycopg2
import pytest

from devsupport.sql import run_sql

from .helpers import drop_database

DB = "bloat_db"
NOEXT = "bloat_noext"
ROWS = 20000
GOAL = 5.0  # points of bloat percentage


@pytest.fixture(scope="module")
def db(pg):
    for name in (DB, NOEXT):
        run_sql(pg, f"DROP DATABASE IF EXISTS {name}")
        run_sql(pg, f"CREATE DATABASE {name}")
    conn = psycopg2.connect(pg.dsn(DB))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION pgstattuple")
        build(cur)
    conn.close()  # a backend's exit sends its statistics
    time.sleep(0.5)
    yield DB
    for name in (DB, NOEXT):
        drop_database(pg, name)


def settle(cur) -> None:
    """Let this session's table counters reach shared memory before maintenance.

    A backend sends them at most once a second; in production DML and
    maintenance come from different sessions, seconds apart.
    """
    cur.execute("SELECT pg_sleep(1.1)")


def build(cur) -> None:
    off = " WITH (autovacuum_enabled = false)"
    cur.execute(f"CREATE TABLE fresh (id int PRIMARY KEY, v text){off}")
    cur.execute(f"INSERT INTO fresh SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    # half the rows updated since the last ANALYZE: stale relpages and reltuples
    cur.execute(f"CREATE TABLE stale (id int PRIMARY KEY, v text){off}")
    cur.execute(f"INSERT INTO stale SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    # columns whose order needs alignment padding
    cur.execute(
        "CREATE TABLE mixed (a int, b smallint, c bigint, d bool, e timestamptz,"
        f" f smallint, g bigint){off}"
    )
    cur.execute(
        f"INSERT INTO mixed SELECT g, 1, g, true, now(), 2, g FROM generate_series(1, {ROWS}) g"
    )
    # btree on a nullable int with 0.1% nulls, half deleted
    cur.execute(f"CREATE TABLE nullidx (id int, k int){off}")
    cur.execute(
        "INSERT INTO nullidx SELECT g, CASE WHEN g % 1000 = 0 THEN NULL ELSE g END"
        f" FROM generate_series(1, {ROWS}) g"
    )
    cur.execute("CREATE INDEX nullidx_k ON nullidx (k)")
    cur.execute("DELETE FROM nullidx WHERE id % 2 = 0")
    settle(cur)
    cur.execute("ANALYZE fresh, stale, mixed")
    cur.execute("VACUUM ANALYZE nullidx")
    cur.execute("UPDATE stale SET v = md5(v) WHERE id % 2 = 0")


def main_size(cur, relation: str) -> int:
    cur.execute(
        "SELECT pg_relation_size(c.oid)"
        " + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0)"
        " FROM pg_class c WHERE c.oid = %s::regclass",
        (relation,),
    )
    return cur.fetchone()[0]


def truth(pg, table: str) -> tuple[float, dict[str, float]]:
    """True bloat percentages of the table and of each index (rewrite on a copy)."""
    conn = psycopg2.connect(pg.dsn(DB))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            copy = f"copy_{table}"
            cur.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING DEFAULTS)")
            cur.execute(f"INSERT INTO {copy} SELECT * FROM {table}")
            size = main_size(cur, table)
            table_pct = 100.0 * (size - main_size(cur, copy)) / size
            cur.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid), pg_relation_size(i.indexrelid)"
                " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = %s::regclass",
                (table,),
            )
            indexes = {}
            for name, definition, isize in cur.fetchall():
                cur.execute(
                    f"CREATE INDEX copy_{name} ON {copy}"
                    + definition[definition.index(" USING ") :]
                )
                indexes[name] = 100.0 * (isize - main_size(cur, f"copy_{name}")) / isize
            cur.execute(f"DROP TABLE {copy}")
            return table_pct, indexes
    finally:
        conn.close()


def page(agent, table: str, **params) -> dict:
    resp = agent.get(f"/maintenance/{DB}/schema/public/table/{table}", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def estimate_pct(pg, item: dict, relation: str) -> float:
    conn = psycopg2.connect(pg.dsn(DB))
    try:
        with conn.cursor() as cur:
            return 100.0 * item["bloat_bytes"] / main_size(cur, relation)
    finally:
        conn.close()


@pytest.mark.parametrize("table", ["fresh", "stale", "mixed", "nullidx"])
def test_estimates_are_within_five_points_of_a_rewrite(agent, db, pg, table):
    result = page(agent, table)
    true_table, true_indexes = truth(pg, table)
    assert result["bloat_method"] == "estimate"
    assert abs(estimate_pct(pg, result, table) - true_table) <= GOAL, (
        result["bloat_bytes"],
        true_table,
    )
    for index in result["indexes"]:
        assert index["bloat_method"] == "estimate"
        est = estimate_pct(pg, index, index["name"])
        assert abs(est - true_indexes[index["name"]]) <= GOAL, (index, true_indexes)


def test_fresh_objects_show_no_bloat(agent, db, pg):
    result = page(agent, "fresh")
    assert estimate_pct(pg, result, "fresh") <= GOAL
    assert estimate_pct(pg, result["indexes"][0], "fresh_pkey") <= GOAL


def test_stale_statistics_still_see_the_bloat(agent, db, pg):
    """A third of the heap and half the primary key come back on a rewrite."""
    result = page(agent, "stale")
    assert estimate_pct(pg, result, "stale") >= 25
    assert estimate_pct(pg, result["indexes"][0], "stale_pkey") >= 40


def test_exact_mode_is_pgstattuple(agent, db, pg):
    result = page(agent, "nullidx", bloat="exact")
    assert result["bloat_method"] == "pgstattuple"
    rows = run_sql(
        pg,
        "SELECT approx_free_space + dead_tuple_len FROM pgstattuple_approx('nullidx')",
        dbname=DB,
    )
    assert result["bloat_bytes"] == float(rows[0][0])
    index = result["indexes"][0]
    assert index["bloat_method"] == "pgstattuple"
    leaves, density, empty, deleted = run_sql(
        pg,
        "SELECT leaf_pages, avg_leaf_density, empty_pages, deleted_pages"
        " FROM pgstatindex('nullidx_k')",
        dbname=DB,
    )[0]
    expected = (leaves * (100.0 - density) / 100.0 + empty + deleted) * 8192
    assert index["bloat_bytes"] == pytest.approx(expected)
    assert result["index_bloat_bytes"] == pytest.approx(expected)
    # the estimate of the same table stays what it was
    assert page(agent, "nullidx")["bloat_method"] == "estimate"


def test_exact_mode_needs_the_extension(agent, db, pg):
    run_sql(pg, "CREATE TABLE t (i int)", dbname=NOEXT)
    resp = agent.get(f"/maintenance/{NOEXT}/schema/public/table/t", params={"bloat": "exact"})
    assert resp.status_code == 409
    assert resp.json() == {"error": f'pgstattuple is not installed in database "{NOEXT}"'}
    resp = agent.get(f"/maintenance/{NOEXT}/schema/public/table/t", params={"bloat": "wild"})
    assert resp.status_code == 406
    assert resp.json() == {"error": "Parameter 'bloat' is malformed."}
