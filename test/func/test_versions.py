"""The same fields and meanings on every supported PostgreSQL version (12 to 18).

Run against another version with ``TEMBOARD_TEST_PG=13`` (see README); the CI
matrix (``dev/run-version-matrix.sh``) runs this file on each one.
"""

from __future__ import annotations

import psycopg2
import pytest

from devsupport.sql import run_sql
from temboardagent.plugins.maintenance import catalog, openapi, versions

from .helpers import drop_database, settle_stats

DB = "versions_db"

SETUP = """
CREATE TABLE public.never (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
INSERT INTO public.never SELECT g, 'v' FROM generate_series(1, 500) g;
CREATE TABLE public.never_empty (id int) WITH (autovacuum_enabled = false);
CREATE TABLE public.analyzed_empty (id int) WITH (autovacuum_enabled = false);
ANALYZE public.analyzed_empty;
CREATE TABLE public.filled_since (id int, v text) WITH (autovacuum_enabled = false);
VACUUM public.filled_since;
INSERT INTO public.filled_since SELECT g, 'v' FROM generate_series(1, 500) g;
CREATE TABLE public.analyzed (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
INSERT INTO public.analyzed SELECT g, 'v' FROM generate_series(1, 500) g;
ANALYZE public.analyzed;
"""


@pytest.fixture(scope="module")
def db(pg):
    drop_database(pg, DB)
    run_sql(pg, f"CREATE DATABASE {DB}")
    for statement in SETUP.strip().split(";\n"):  # VACUUM: one per transaction
        run_sql(pg, statement, dbname=DB)
    yield DB
    drop_database(pg, DB)


@pytest.fixture
def conn(pg, db):
    conn = psycopg2.connect(pg.dsn(db))
    conn.autocommit = True
    settle_stats(conn)  # the VACUUM and ANALYZE of SETUP are recorded
    yield conn
    conn.close()


def table_page_fields() -> set[str]:
    """The table page's fields, as the OpenAPI document describes them."""
    return set(openapi.SCHEMAS["Table"]["properties"])


def test_table_page_has_the_documented_fields(agent, db, conn):
    resp = agent.get(f"/maintenance/{db}/schema/public/table/analyzed")
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert set(page) == table_page_fields()
    version = conn.server_version
    with conn.cursor() as cur:
        cur.execute(
            "SELECT attname FROM pg_catalog.pg_attribute"
            " WHERE attrelid = 'pg_catalog.pg_stat_all_tables'::pg_catalog.regclass"
            " AND attnum > 0"
        )
        server_columns = {name for (name,) in cur.fetchall()}
    for column in versions.TABLE_STATS_COLUMNS:
        assert (column.name in server_columns) == (version >= column.since), column
        if version < column.since:
            assert page[column.name] is None, column.name
    # every column of this server's pg_stat_all_tables is documented and shown
    assert server_columns <= {c.name for c in versions.TABLE_STATS_COLUMNS}
    assert page["n_tup_ins"] == 500 and page["analyze_count"] == 1
    if version >= 130000:
        assert page["n_ins_since_vacuum"] == 500
    if version >= 180000:
        assert type(page["total_analyze_time"]) is float


def test_table_page_key_order_is_stable(conn):
    page = catalog.table(conn, "public", "never")
    names = [c.name for c in versions.TABLE_STATS_COLUMNS]
    assert [k for k in page if k in names] == names


def test_never_analyzed_table_has_no_estimate(agent, db, conn):
    """No statistics, no estimate: -1 and a null bloat, on every version."""
    page = catalog.table(conn, "public", "never")
    assert page["table_bytes"] > 0
    assert page["row_estimate"] == -1.0
    assert page["bloat_bytes"] is None and page["bloat_size"] is None
    resp = agent.get(f"/maintenance/{db}/schema/public")
    assert resp.status_code == 200, resp.text
    tables = {t["name"]: t for t in resp.json()["tables"]}
    assert tables["never"]["row_estimate"] == -1.0
    assert tables["never"]["bloat_bytes"] is None
    # no rows at all: nothing is expected, so nothing is bloat (every version)
    assert tables["never_empty"]["row_estimate"] == -1.0
    assert tables["never_empty"]["bloat_bytes"] == 0.0


def test_analyzed_tables_keep_their_estimate(conn):
    tables = {t["name"]: t for t in catalog.schema(conn, "public")["tables"]}
    # analyzed while empty: 0 rows known, nothing expected, no bloat
    assert tables["analyzed_empty"]["row_estimate"] == 0.0
    assert tables["analyzed_empty"]["bloat_bytes"] == 0.0
    # vacuumed while empty, filled since: PostgreSQL still says 0 rows, and
    # without column statistics there is no estimate
    assert tables["filled_since"]["row_estimate"] == 0.0
    assert tables["filled_since"]["bloat_bytes"] is None
    assert tables["analyzed"]["row_estimate"] == 500.0
    assert type(tables["analyzed"]["bloat_bytes"]) is float


def test_database_sums_skip_unknown_estimates(conn):
    (public,) = [s for s in catalog.database(conn)["schemas"] if s["name"] == "public"]
    tables = catalog.schema(conn, "public")["tables"]
    known = [t["bloat_bytes"] for t in tables if t["bloat_bytes"] is not None]
    assert public["tables_bloat_bytes"] == sum(known)


def test_sizes_read_as_the_server_prints_them(conn):
    values = [0, 10240, 20971520, (1 << 40) * 21, (1 << 50) * 5, (1 << 50) * 12 + 7, -20481]
    with conn.cursor() as cur:
        cur.execute(
            "SELECT v, pg_catalog.pg_size_pretty(v) FROM pg_catalog.unnest(%s::bigint[]) v",
            (values,),
        )
        rows = cur.fetchall()
    for value, expected in rows:
        assert catalog.size_pretty(value, conn.server_version) == expected, value
    # the database page's Python-made total reads as SQL's
    page = catalog.database(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.pg_size_pretty(%s::bigint)", (page["total_bytes"],))
        assert page["total_size"] == cur.fetchone()[0]


def test_discover_reports_the_version(agent, conn):
    resp = agent.get("/discover")
    assert resp.status_code == 200, resp.text
    with conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.version(), pg_catalog.current_setting('server_version')")
        full, short = cur.fetchone()
    assert resp.json()["pg_version"] == full
    assert resp.json()["pg_version_summary"] == f"PostgreSQL {short}"
