"""Maintenance read side: catalog functions on a real PostgreSQL, then over HTTPS."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from urllib.parse import quote

import psycopg2
import psycopg2.errors
import pytest

from devsupport.sql import run_sql
from temboardagent.errors import NotFound
from temboardagent.plugins.maintenance import catalog, lookup, versions

from .helpers import HANG, drop_database, finishes, settle_stats, wait_for

DB = "mread_db"
CLOSED_DB = "mread_closed"
READER = "mread_reader"
ODD_SCHEMA = "Sch ema"
ODD_TABLE = 'My "odd" Table'
ODD_INDEX = "Odd Index ü"
UNICODE_TABLE = "tablé_ü"
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d(:\d\d)?$")

SETUP = """
CREATE TABLE public.city (id int PRIMARY KEY, name text NOT NULL, countrycode char(3),
                          population int);
INSERT INTO public.city
SELECT g, 'city ' || g, 'C' || (g % 100), CASE WHEN g % 7 > 0 THEN g * 10 END
FROM generate_series(1, 4000) g;
CREATE TABLE public.country (code char(3) PRIMARY KEY, name text);
INSERT INTO public.country SELECT 'C' || g, repeat('x', g % 50) FROM generate_series(1, 99) g;
CREATE TABLE public.toasty (id int PRIMARY KEY, body text);
ALTER TABLE public.toasty ALTER body SET STORAGE EXTERNAL;
INSERT INTO public.toasty SELECT g, repeat(md5(g::text), 200) FROM generate_series(1, 50) g;

CREATE SCHEMA s1;
CREATE SCHEMA s2;
CREATE TABLE s1.same (id int, v text);
CREATE INDEX same_idx ON s1.same (id);
CREATE TABLE s2.same (id int, v text);
CREATE INDEX same_idx ON s2.same (id);
INSERT INTO s1.same SELECT g, 'x' FROM generate_series(1, 10) g;
INSERT INTO s2.same SELECT g, md5(g::text) FROM generate_series(1, 20000) g;

CREATE SCHEMA kinds;
CREATE TABLE kinds.docs (id int NOT NULL, name text, tags int[], pos point,
                         flag bool, created timestamptz);
INSERT INTO kinds.docs
SELECT g, 'Name ' || g, ARRAY[g % 10, g % 7], point(g, g), g % 3 = 0,
       '2024-01-01'::timestamptz + g * interval '1 minute'
FROM generate_series(1, 3000) g;
CREATE INDEX docs_btree ON kinds.docs (id);
CREATE INDEX docs_hash ON kinds.docs USING hash (name);
CREATE INDEX docs_gin ON kinds.docs USING gin (tags);
CREATE INDEX docs_gist ON kinds.docs USING gist (pos);
CREATE INDEX docs_brin ON kinds.docs USING brin (created);
CREATE INDEX docs_expr ON kinds.docs (lower(name));
CREATE INDEX docs_partial ON kinds.docs (id) WHERE flag;
CREATE UNIQUE INDEX docs_multi ON kinds.docs (id, name) INCLUDE (flag);
CREATE TABLE kinds.parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE kinds.parted_1 PARTITION OF kinds.parted FOR VALUES FROM (0) TO (1000);
CREATE TABLE kinds.parted_2 PARTITION OF kinds.parted FOR VALUES FROM (1000) TO (2000);
INSERT INTO kinds.parted SELECT g, 'p' FROM generate_series(0, 1999) g;
CREATE MATERIALIZED VIEW kinds.mat AS SELECT id, name FROM kinds.docs;
CREATE INDEX mat_id ON kinds.mat (id);
CREATE VIEW kinds.a_view AS SELECT 1 AS one;
CREATE TABLE kinds.fill (id int) WITH (fillfactor = 70);
INSERT INTO kinds.fill SELECT generate_series(1, 100);

CREATE SCHEMA "Sch ema";
CREATE TABLE "Sch ema"."My ""odd"" Table" ("Id" int PRIMARY KEY, "Name" text);
CREATE INDEX "Odd Index ü" ON "Sch ema"."My ""odd"" Table" ("Name");
INSERT INTO "Sch ema"."My ""odd"" Table" SELECT g, 'n' || g FROM generate_series(1, 100) g;
CREATE TABLE "Sch ema"."tablé_ü" (id int);
CREATE SCHEMA vide;
"""

# Set up after VACUUM ANALYZE: never analyzed, autovacuum off.
NEVER = """
CREATE TABLE kinds.never (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
INSERT INTO kinds.never SELECT g, 'v' FROM generate_series(1, 500) g;
"""

# Key -> JSON type of the spec's examples (None: null in the example).
SPEC_DATABASE_ENTRY = {
    "datname": str,
    "indexes_bloat_bytes": float,
    "indexes_bloat_size": str,
    "indexes_bytes": float,
    "indexes_size": str,
    "n_indexes": float,
    "n_tables": float,
    "tables_bloat_bytes": float,
    "tables_bloat_size": str,
    "tables_bytes": float,
    "tables_size": str,
    "toast_bytes": float,
    "toast_size": str,
    "total_bytes": int,
    "total_size": str,
}
SPEC_INSTANCE = {"total_bytes": float, "total_size": str}
SPEC_SCHEMA_ENTRY = {
    "indexes_bloat_bytes": float,
    "indexes_bloat_size": str,
    "indexes_bytes": int,
    "indexes_size": str,
    "n_indexes": int,
    "n_tables": int,
    "name": str,
    "tables_bloat_bytes": float,
    "tables_bloat_size": str,
    "tables_bytes": int,
    "tables_size": str,
    "toast_bytes": float,
    "toast_size": str,
    "total_bytes": int,
    "total_size": str,
}
SPEC_DATABASE = {"schemas": list, "total_bytes": int, "total_size": str}
SPEC_INDEX = {
    "bloat_bytes": float,
    "bloat_size": str,
    "def": str,
    "idx_tup_fetch": int,
    "idx_tup_read": int,
    "indexrelname": str,
    "indisunique": bool,
    "name": str,
    "number_of_columns": int,
    "scans": int,
    "tablename": str,
    "tablespace": None,
    "total_bytes": int,
    "total_size": str,
    "type": str,
}
SPEC_SCHEMA_TABLE = {
    "bloat_bytes": float,
    "bloat_size": str,
    "index_bloat_bytes": float,
    "index_bloat_size": str,
    "index_bytes": int,
    "index_size": str,
    "n_indexes": int,
    "name": str,
    "row_estimate": float,
    "table_bytes": int,
    "table_size": str,
    "toast_bytes": int,
    "toast_size": str,
    "total_bytes": int,
    "total_size": str,
}
SPEC_SCHEMA = {"indexes": list, "size": str, "tables": list, "total_bytes": int}
SPEC_TABLE = {
    "analyze_count": int,
    "autoanalyze_count": int,
    "autovacuum_count": int,
    "bloat_bytes": float,
    "bloat_size": str,
    "fillfactor": int,
    "idx_scan": int,
    "idx_tup_fetch": int,
    "index_bloat_bytes": float,
    "index_bloat_size": str,
    "index_bytes": int,
    "index_size": str,
    "indexes": list,
    "last_analyze": str,
    "last_autoanalyze": str,
    "last_autovacuum": None,
    "last_vacuum": None,
    "n_dead_tup": int,
    "n_live_tup": int,
    "n_mod_since_analyze": int,
    "n_tup_del": int,
    "n_tup_hot_upd": int,
    "n_tup_ins": int,
    "n_tup_upd": int,
    "name": str,
    "relid": str,
    "relname": str,
    "row_estimate": float,
    "schemaname": str,
    "seq_scan": int,
    "seq_tup_read": int,
    "table_bytes": int,
    "table_size": str,
    "toast_bytes": int,
    "toast_size": str,
    "total_bytes": int,
    "total_size": str,
    "vacuum_count": int,
}
#: fields added to the spec (documented extensions)
ADDED = {"locked", "bloat_method"}
TIMESTAMPS = {"last_analyze", "last_autoanalyze", "last_autovacuum", "last_vacuum"}


def check_types(item: dict, spec: dict, added: set = ADDED, nullable: set = frozenset()):
    """Same keys as the spec (plus ``added``), each of the spec's JSON type.

    A key null in the spec example may be null or a string; ``nullable`` keys
    may be null.
    """
    assert set(item) == set(spec) | added, set(item) ^ (set(spec) | added)
    for key, expected in spec.items():
        value = item[key]
        if expected is object:  # any type
            continue
        if key in TIMESTAMPS:
            assert value is None or TIMESTAMP_RE.match(value), (key, value)
        elif expected is None:
            assert value is None or type(value) is str, (key, value)
        elif value is None:
            assert key in nullable, f"{key} is null"
        else:
            assert type(value) is expected, (key, value, expected)
    for key in added:
        if key == "bloat_method":
            assert item[key] in ("estimate", "pgstattuple"), item[key]
        else:
            assert type(item[key]) is bool


def without_reason(entry: dict) -> dict:
    """A GET /maintenance entry without its ``reason`` extension (null or a text)."""
    assert entry["reason"] is None or type(entry["reason"]) is str, entry
    return {k: v for k, v in entry.items() if k != "reason"}


def connect(pg, dbname: str = DB, user: str | None = None, **options):
    """An autocommit connection; ``options``: settings such as lock_timeout."""
    kwargs = {"dbname": dbname}
    if user:
        kwargs["user"] = user
    if options:
        kwargs["options"] = " ".join(f"-c {k}={v}" for k, v in options.items())
    conn = psycopg2.connect(pg.dsn("postgres"), **kwargs)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def db(pg):
    admin = connect(pg, "postgres")
    for name in (DB, CLOSED_DB):
        drop_database(pg, name)
        run_sql(admin, f'CREATE DATABASE "{name}"')
    run_sql(admin, f'ALTER DATABASE "{CLOSED_DB}" ALLOW_CONNECTIONS false')
    run_sql(admin, f"DROP ROLE IF EXISTS {READER}")
    run_sql(admin, f"CREATE ROLE {READER} LOGIN")
    conn = connect(pg)
    with conn.cursor() as cur:
        cur.execute(SETUP)
        cur.execute("VACUUM ANALYZE")
        cur.execute(NEVER)
        cur.execute(f"GRANT USAGE ON SCHEMA s1, s2 TO {READER}")
        cur.execute(f"GRANT SELECT ON s1.same TO {READER}")
    conn.close()  # PostgreSQL < 15: a backend sends its last statistics when it exits
    conn = connect(pg)
    settle_stats(conn)  # ... and the collector has them (the rows and the ANALYZE)
    conn.close()
    yield DB
    for name in (DB, CLOSED_DB):
        drop_database(pg, name)
    run_sql(admin, f"DROP ROLE IF EXISTS {READER}")
    admin.close()


@pytest.fixture
def conn(pg, db):
    """The agent's kind of connection: autocommit, read timeouts."""
    conn = connect(pg, db, statement_timeout=10000, lock_timeout=500)
    yield conn
    conn.close()


@pytest.fixture
def other(pg, db):
    """Factory of extra connections (lock holders), closed after the test."""
    conns = []

    def make():
        c = connect(pg, db)
        conns.append(c)
        return c

    yield make
    for c in conns:
        c.close()


def by_name(items: list[dict]) -> dict[str, dict]:
    names = [i["name"] for i in items]
    assert len(names) == len(set(names)), names
    return {i["name"]: i for i in items}


def direct_tables(conn, schema: str) -> dict[str, dict]:
    rows = run_sql(
        conn,
        """
        SELECT c.relname, pg_total_relation_size(c.oid), pg_indexes_size(c.oid),
               coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
               c.reltuples,
               (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)
        FROM pg_class c
        WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'm', 'p')
        """,
        (quote_ident(conn, schema),),
    )
    return {
        name: {
            "total_bytes": total,
            "index_bytes": indexes,
            "toast_bytes": toast,
            "table_bytes": total - indexes - toast,
            "row_estimate": reltuples,
            "n_indexes": n,
        }
        for name, total, indexes, toast, reltuples, n in rows
    }


def direct_indexes(conn, schema: str) -> dict[str, dict]:
    rows = run_sql(
        conn,
        """
        SELECT ic.relname, t.relname, pg_total_relation_size(ic.oid), am.amname,
               i.indisunique, i.indnatts, pg_get_indexdef(ic.oid)
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_am am ON am.oid = ic.relam
        WHERE t.relnamespace = %s::regnamespace AND t.relkind IN ('r', 'm', 'p')
        """,
        (quote_ident(conn, schema),),
    )
    return {
        name: {
            "tablename": table,
            "total_bytes": size,
            "type": amname,
            "indisunique": unique,
            "number_of_columns": natts,
            "def": indexdef,
        }
        for name, table, size, amname, unique, natts, indexdef in rows
    }


def quote_ident(conn, name: str) -> str:
    return run_sql(conn, "SELECT quote_ident(%s)", (name,))[0][0]


def pretty(conn, value) -> str | None:
    if value is None:
        return None
    return run_sql(conn, "SELECT pg_size_pretty(%s::bigint)", (int(value),))[0][0]


# --- catalog functions on a connection -------------------------------------


def test_size_pretty_matches_postgres(conn):
    values = [0, 1, 8191, 10239, 10240, 10751, 10752, 20479, 20480, 1 << 20, 123456789]
    values += [(1 << 30) * 3 + 7, (1 << 40) * 21, (1 << 50) * 5, -10240, -20481]
    values += [int(1.7**e) for e in range(10, 75, 3)]
    rows = run_sql(conn, "SELECT v, pg_size_pretty(v) FROM unnest(%s::bigint[]) v", (values,))
    for value, expected in rows:
        assert catalog.size_pretty(value, conn.server_version) == expected, value
    assert catalog.size_pretty(None) is None
    assert catalog.size_pretty(335872.0) == "328 kB"


def test_database_page_shape_and_values(conn):
    result = catalog.database(conn)
    check_types(result, SPEC_DATABASE, added=set())
    schemas = by_name(result["schemas"])
    assert {"public", "pg_catalog", "information_schema", "s1", "kinds", ODD_SCHEMA} <= set(schemas)
    assert not any(name.startswith(("pg_toast", "pg_temp")) for name in schemas)
    for name in ("public", "pg_catalog", "s2"):
        check_types(schemas[name], SPEC_SCHEMA_ENTRY, added=set())
    # an empty schema: integer sums 0, sizes and bloat null
    check_types(
        schemas["vide"],
        SPEC_SCHEMA_ENTRY,
        added=set(),
        nullable={k for k in SPEC_SCHEMA_ENTRY if k.endswith(("_size", "bloat_bytes"))},
    )
    vide = schemas["vide"]
    assert (vide["n_tables"], vide["n_indexes"], vide["total_bytes"]) == (0, 0, 0)
    assert vide["toast_bytes"] == 0.0 and vide["tables_bloat_bytes"] is None
    assert vide["total_size"] is None and vide["indexes_size"] is None
    # information_schema: tables but no index
    info = schemas["information_schema"]
    assert info["n_indexes"] == 0 and info["indexes_bytes"] == 0
    assert info["indexes_size"] is None and info["indexes_bloat_bytes"] is None

    for name in ("public", "s1", "s2", "kinds", ODD_SCHEMA):
        entry = schemas[name]
        tables = direct_tables(conn, name)
        assert entry["n_tables"] == len(tables)
        assert entry["n_indexes"] == sum(t["n_indexes"] for t in tables.values())
        assert entry["total_bytes"] == sum(t["total_bytes"] for t in tables.values())
        assert entry["tables_bytes"] == sum(t["table_bytes"] for t in tables.values())
        assert entry["indexes_bytes"] == sum(t["index_bytes"] for t in tables.values())
        assert entry["toast_bytes"] == sum(t["toast_bytes"] for t in tables.values())
        for key in ("total", "tables", "indexes", "tables_bloat", "indexes_bloat"):
            assert entry[f"{key}_size"] == pretty(conn, entry[f"{key}_bytes"]), key
    db_size = run_sql(conn, "SELECT pg_database_size(current_database())")[0][0]
    assert abs(result["total_bytes"] - db_size) < 0.05 * db_size
    assert result["total_size"] == catalog.size_pretty(result["total_bytes"])


def test_schema_page_shape_and_values(conn):
    result = catalog.schema(conn, "public")
    check_types(result, SPEC_SCHEMA, added=set())
    tables = by_name(result["tables"])
    assert set(tables) == {"city", "country", "toasty"}
    direct = direct_tables(conn, "public")
    for name, table in tables.items():
        check_types(table, SPEC_SCHEMA_TABLE)
        assert table["locked"] is False
        for key, value in direct[name].items():
            assert table[key] == value, (name, key)
        for key in ("total", "table", "index", "toast", "bloat", "index_bloat"):
            assert table[f"{key}_size"] == pretty(conn, table[f"{key}_bytes"]), key
    assert tables["toasty"]["toast_bytes"] > 50 * 6000  # its TOAST table holds data
    assert tables["city"]["toast_bytes"] == 8192  # an empty TOAST table: its index
    assert result["total_bytes"] == sum(t["total_bytes"] for t in direct.values())
    assert result["size"] == pretty(conn, result["total_bytes"])

    indexes = by_name(result["indexes"])
    assert set(indexes) == {"city_pkey", "country_pkey", "toasty_pkey"}
    direct = direct_indexes(conn, "public")
    for name, index in indexes.items():
        check_types(index, SPEC_INDEX)
        assert index["indexrelname"] == name
        for key, value in direct[name].items():
            assert index[key] == value, (name, key)
        assert index["total_size"] == pretty(conn, index["total_bytes"])
        assert index["bloat_size"] == pretty(conn, index["bloat_bytes"])
    # tables sorted by name, indexes by table then name
    assert [t["name"] for t in result["tables"]] == sorted(tables)
    keys = [(i["tablename"], i["name"]) for i in result["indexes"]]
    assert keys == sorted(keys)


def test_table_page_shape_and_values(conn):
    run_sql(conn, "SELECT count(*) FROM public.country")  # a seq scan
    result = catalog.table(conn, "public", "country")
    spec = dict(SPEC_TABLE)
    for column in versions.TABLE_STATS_COLUMNS:  # documented extensions (test_versions.py)
        spec.setdefault(column.name, object)
    check_types(
        result,
        spec,
        nullable={"last_autoanalyze"},  # autovacuum may not have run
    )
    relid, reltuples = run_sql(
        conn, "SELECT oid, reltuples FROM pg_class WHERE oid = 'public.country'::regclass"
    )[0]
    assert result["relid"] == str(relid)
    assert (result["name"], result["relname"], result["schemaname"]) == (
        "country", "country", "public",
    )  # fmt: skip
    assert result["row_estimate"] == reltuples == 99.0
    assert result["n_live_tup"] >= 99 and result["seq_scan"] >= 1
    assert result["fillfactor"] == 100
    assert result["locked"] is False
    assert "n_indexes" not in result
    for key, value in direct_tables(conn, "public")["country"].items():
        if key != "n_indexes":
            assert result[key] == value, key
    (index,) = result["indexes"]
    check_types(index, SPEC_INDEX)
    assert index["name"] == "country_pkey" and index["tablename"] == "country"
    # timestamps are PostgreSQL text, as ::text renders them
    (text,) = run_sql(
        conn, "SELECT last_analyze::text FROM pg_stat_all_tables WHERE relid = %s", (relid,)
    )[0]
    assert result["last_analyze"] == text
    assert catalog.table(conn, "kinds", "fill")["fillfactor"] == 70


def test_same_names_in_two_schemas(conn):
    one, two = catalog.schema(conn, "s1"), catalog.schema(conn, "s2")
    for name, result in (("s1", one), ("s2", two)):
        (table,) = result["tables"]
        (index,) = result["indexes"]
        assert table["name"] == "same" and index["name"] == "same_idx"
        direct = direct_tables(conn, name)["same"]
        assert table["total_bytes"] == direct["total_bytes"]
        assert table["index_bytes"] == index["total_bytes"] == direct["index_bytes"]
        assert table["row_estimate"] == direct["row_estimate"]
        assert table["n_indexes"] == 1
        assert index["def"] == f"CREATE INDEX same_idx ON {name}.same USING btree (id)"
    assert one["tables"][0]["row_estimate"] == 10.0
    assert two["tables"][0]["row_estimate"] == 20000.0
    assert one["indexes"][0]["total_bytes"] < two["indexes"][0]["total_bytes"]
    page = catalog.table(conn, "s2", "same")
    assert page["n_live_tup"] >= 20000
    assert [i["total_bytes"] for i in page["indexes"]] == [two["indexes"][0]["total_bytes"]]


def test_every_index_kind(conn):
    result = catalog.schema(conn, "kinds")
    indexes = by_name(result["indexes"])
    direct = direct_indexes(conn, "kinds")
    assert set(indexes) == set(direct)
    expected_types = {
        "docs_btree": "btree",
        "docs_hash": "hash",
        "docs_gin": "gin",
        "docs_gist": "gist",
        "docs_brin": "brin",
        "docs_expr": "btree",
        "docs_partial": "btree",
        "docs_multi": "btree",
        "mat_id": "btree",
        "parted_pkey": "btree",
        "parted_1_pkey": "btree",
        "parted_2_pkey": "btree",
        "never_pkey": "btree",
    }
    assert {name: indexes[name]["type"] for name in expected_types} == expected_types
    for name, index in indexes.items():
        for key, value in direct[name].items():
            assert index[key] == value, (name, key)
        if name in ("docs_hash", "docs_gin", "docs_gist", "docs_brin"):
            assert index["bloat_bytes"] is None and index["bloat_size"] is None, name
        elif name in ("parted_pkey", "never_pkey"):  # no storage / no statistics
            assert index["bloat_bytes"] is None, name
        else:
            assert type(index["bloat_bytes"]) is float, name
            assert index["bloat_bytes"] >= 0
    assert indexes["docs_multi"]["number_of_columns"] == 3
    assert indexes["docs_multi"]["indisunique"] is True
    assert indexes["docs_partial"]["def"].endswith("WHERE flag")
    assert indexes["parted_pkey"]["total_bytes"] == 0

    tables = by_name(result["tables"])
    assert "a_view" not in tables
    assert {"docs", "parted", "parted_1", "parted_2", "mat", "fill", "never"} == set(tables)
    docs = tables["docs"]
    assert docs["n_indexes"] == 8
    btree = [indexes[n]["bloat_bytes"] for n in indexes if indexes[n]["tablename"] == "docs"]
    assert docs["index_bloat_bytes"] == sum(b for b in btree if b is not None)
    # partitioned table: no storage of its own, no estimate
    parted = tables["parted"]
    assert (parted["total_bytes"], parted["table_bytes"], parted["index_bytes"]) == (0, 0, 0)
    assert parted["bloat_bytes"] is None and parted["n_indexes"] == 1
    assert tables["parted_1"]["table_bytes"] > 0
    # materialized view listed as a table, with an estimate
    assert tables["mat"]["table_bytes"] > 0 and type(tables["mat"]["bloat_bytes"]) is float
    # never analyzed: listed, bloat null
    never = tables["never"]
    assert never["bloat_bytes"] is None and never["bloat_size"] is None
    assert never["index_bloat_bytes"] is None
    assert never["row_estimate"] == -1.0 and never["table_bytes"] > 0
    for name in ("docs", "parted_1", "fill"):
        assert type(tables[name]["bloat_bytes"]) is float


def test_odd_names(conn):
    result = catalog.schema(conn, ODD_SCHEMA)
    tables = by_name(result["tables"])
    assert set(tables) == {ODD_TABLE, UNICODE_TABLE}
    (index,) = [i for i in result["indexes"] if i["name"] == ODD_INDEX]
    assert index["tablename"] == ODD_TABLE
    assert index["def"] == (
        'CREATE INDEX "Odd Index ü" ON "Sch ema"."My ""odd"" Table" USING btree ("Name")'
    )
    page = catalog.table(conn, ODD_SCHEMA, ODD_TABLE)
    assert page["name"] == page["relname"] == ODD_TABLE
    assert page["schemaname"] == ODD_SCHEMA
    assert page["n_live_tup"] >= 100
    assert {i["name"] for i in page["indexes"]} == {ODD_INDEX, f"{ODD_TABLE}_pkey"}
    assert catalog.table(conn, ODD_SCHEMA, UNICODE_TABLE)["name"] == UNICODE_TABLE
    assert ODD_SCHEMA in by_name(catalog.database(conn)["schemas"])


def test_not_found(conn):
    with pytest.raises(NotFound) as info:
        catalog.schema(conn, "nope")
    assert info.value.message == "Schema 'nope' not found."
    assert info.value.status == 404
    with pytest.raises(NotFound) as info:
        catalog.table(conn, "nope", "city")
    assert info.value.message == "Schema 'nope' not found."
    with pytest.raises(NotFound) as info:
        catalog.table(conn, "public", "nope")
    assert info.value.message == "Table 'public.nope' not found."
    long_name = "m" * 63
    run_sql(conn, "CREATE SCHEMA IF NOT EXISTS longnames")
    run_sql(conn, f"CREATE TABLE IF NOT EXISTS longnames.{long_name} (id int)")
    assert catalog.table(conn, "longnames", long_name)["name"] == long_name
    with pytest.raises(NotFound) as info:  # not the truncated name's table
        catalog.table(conn, "longnames", long_name + "m")
    assert info.value.message == f"Table 'longnames.{long_name}m' not found."
    with pytest.raises(NotFound):
        catalog.schema(conn, "public" + "x" * 60)
    with pytest.raises(NotFound) as info:
        lookup.is_template(conn, DB + "x" * 60)
    assert lookup.is_template(conn, DB) is False
    assert lookup.is_template(conn, "template1") is True
    for call in (
        lambda: catalog.schema(conn, "x\x00y"),
        lambda: catalog.table(conn, "public", "x\x00y"),
        lambda: catalog.table(conn, "x\x00y", "t"),
        lambda: lookup.is_template(conn, "x\x00y"),
    ):
        with pytest.raises(NotFound):  # NUL: no such name, not a 500
            call()
    for schema, name in (("kinds", "a_view"), ("public", "city_pkey"), ("s1", "CITY")):
        with pytest.raises(NotFound):
            catalog.table(conn, schema, name)
    with pytest.raises(NotFound):  # case matters: no folding of quoted names
        catalog.schema(conn, "Public")


def locked_figures(conn, schema: str, table: str) -> dict:
    """What pg_class says of a locked table: relpages times the block size."""
    (row,) = run_sql(
        conn,
        """
        SELECT c.relpages::int8 * current_setting('block_size')::int8,
               (SELECT sum(ic.relpages)::int8 * current_setting('block_size')::int8
                FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                WHERE i.indrelid = c.oid)
        FROM pg_class c WHERE c.oid = %s::regclass
        """,
        (f"{quote_ident(conn, schema)}.{quote_ident(conn, table)}",),
    )
    return {"table_bytes": row[0], "index_bytes": row[1] or 0}


@pytest.mark.parametrize(
    "statement",
    [
        "LOCK TABLE public.city IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE public.city ADD COLUMN extra int",
        "REINDEX INDEX public.city_pkey",
    ],
)
def test_locked_table_does_not_block(conn, other, statement):
    holder = other()
    run_sql(holder, "BEGIN")
    run_sql(holder, statement)
    try:
        # Reads skip the locked objects instead of queueing behind the lock:
        # they return while it is held (the deadline only catches a hang).
        result, database, page = finishes(
            lambda: (
                catalog.schema(conn, "public"),
                catalog.database(conn),
                catalog.table(conn, "public", "city"),
            ),
            message="reads while the table is locked",
        )
    finally:
        run_sql(holder, "ROLLBACK")
    tables = by_name(result["tables"])
    assert tables["city"]["locked"] is True
    assert tables["country"]["locked"] is False
    assert by_name(result["indexes"])["city_pkey"]["locked"] is True
    assert by_name(result["indexes"])["country_pkey"]["locked"] is False
    assert by_name(result["indexes"])["city_pkey"]["def"] is None  # needs the table lock
    assert by_name(result["indexes"])["country_pkey"]["def"].startswith("CREATE UNIQUE")
    figures = locked_figures(conn, "public", "city")
    assert tables["city"]["table_bytes"] == figures["table_bytes"]
    assert tables["city"]["index_bytes"] == figures["index_bytes"]
    assert page["locked"] is True and page["table_bytes"] == figures["table_bytes"]
    assert by_name(database["schemas"])["public"]["n_tables"] == 3
    # once released, exact figures again
    assert catalog.schema(conn, "public")["tables"][0]["locked"] is False


def test_awaited_lock_does_not_block(conn, other):
    """An AccessExclusiveLock request queued behind a reader blocks new readers."""
    reader, waiter = other(), other()
    run_sql(reader, "BEGIN")
    run_sql(reader, "SELECT count(*) FROM public.country")
    waiter_pid = run_sql(waiter, "SELECT pg_backend_pid()")[0][0]

    def lock():
        try:
            run_sql(waiter, "BEGIN")
            run_sql(waiter, "LOCK TABLE public.country IN ACCESS EXCLUSIVE MODE")
            run_sql(waiter, "ROLLBACK")
        except psycopg2.Error:
            pass

    thread = threading.Thread(target=lock)
    thread.start()
    try:
        wait_for(
            lambda: run_sql(
                conn, "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", (waiter_pid,)
            ),
            message="the LOCK to queue",
        )
        result = finishes(
            lambda: catalog.schema(conn, "public"), message="a read behind the queued LOCK"
        )
    finally:
        run_sql(reader, "ROLLBACK")
        thread.join(HANG)
    assert by_name(result["tables"])["country"]["locked"] is True


def test_lock_taken_between_queries_is_retried(conn, other):
    """A lock taken after the lookup of locks: lock_timeout, then one retry."""
    holder = other()
    main_sql = catalog._main_sql
    calls = []

    def lock_then_query(*args):
        if not calls:
            run_sql(holder, "BEGIN")
            run_sql(holder, "LOCK TABLE s2.same IN ACCESS EXCLUSIVE MODE")
        calls.append(args)
        return main_sql(*args)

    catalog._main_sql = lock_then_query
    try:
        result = finishes(lambda: catalog.schema(conn, "s2"), message="the retried read")
    finally:
        catalog._main_sql = main_sql
        run_sql(holder, "ROLLBACK")
    assert len(calls) == 2  # the first attempt hit lock_timeout, the retry skipped the lock
    assert result["tables"][0]["locked"] is True


def create_bloat_table(conn, name: str) -> None:
    run_sql(conn, f"DROP TABLE IF EXISTS public.{name}")
    run_sql(
        conn,
        f"CREATE TABLE public.{name} (id int PRIMARY KEY, v text)"
        " WITH (autovacuum_enabled = false)",
    )
    run_sql(
        conn, f"INSERT INTO public.{name} SELECT g, md5(g::text) FROM generate_series(1, 50000) g"
    )


def test_bloat_estimates(conn):
    create_bloat_table(conn, "bloated")
    run_sql(conn, "DELETE FROM public.bloated WHERE id % 20 <> 0")
    run_sql(conn, "ANALYZE public.bloated")
    before = catalog.table(conn, "public", "bloated")
    run_sql(conn, "VACUUM FULL public.bloated")
    run_sql(conn, "ANALYZE public.bloated")
    after = catalog.table(conn, "public", "bloated")
    run_sql(conn, "DROP TABLE public.bloated")
    assert before["row_estimate"] == after["row_estimate"] == 2500.0
    # most of the table is dead: the estimate says so, and not after VACUUM FULL
    assert before["bloat_bytes"] > 0.8 * before["table_bytes"]
    assert after["bloat_bytes"] < before["bloat_bytes"]
    assert after["bloat_bytes"] <= 0.2 * after["table_bytes"]
    assert before["index_bloat_bytes"] > 0.5 * before["index_bytes"]
    assert after["index_bloat_bytes"] < before["index_bloat_bytes"]
    (index,) = before["indexes"]
    assert index["bloat_bytes"] == before["index_bloat_bytes"]


def test_fresh_table_has_little_bloat(conn):
    create_bloat_table(conn, "fresh")
    run_sql(conn, "VACUUM ANALYZE public.fresh")
    result = catalog.table(conn, "public", "fresh")
    run_sql(conn, "DROP TABLE public.fresh")
    assert result["bloat_bytes"] <= 0.1 * result["table_bytes"]
    assert result["index_bloat_bytes"] <= 0.2 * result["index_bytes"]


def test_unprivileged_role_reads_pg_stats(pg, conn):
    reader = connect(pg, DB, user=READER)
    try:
        assert (
            run_sql(reader, "SELECT has_table_privilege('pg_statistic', 'SELECT')")[0][0] is False
        )
        s1 = catalog.schema(reader, "s1")
        s2 = catalog.schema(reader, "s2")
        page = catalog.table(reader, "s1", "same")
    finally:
        reader.close()
    full = catalog.schema(conn, "s1")
    # readable table: same estimates as from pg_statistic
    assert s1["tables"][0]["bloat_bytes"] == full["tables"][0]["bloat_bytes"] is not None
    assert s1["indexes"][0]["bloat_bytes"] == full["indexes"][0]["bloat_bytes"] is not None
    assert page["bloat_bytes"] == full["tables"][0]["bloat_bytes"]
    # unreadable table: sizes, no estimate
    assert s2["tables"][0]["bloat_bytes"] is None
    assert s2["tables"][0]["total_bytes"] == catalog.schema(conn, "s2")["tables"][0]["total_bytes"]


@contextmanager
def _connect_factory_ctx(pg, dbname, user=None, pooled=True):
    c = connect(pg, dbname or "postgres", user=user, statement_timeout=10000, lock_timeout=500)
    try:
        yield c
    finally:
        c.close()


def test_instance(pg, db):
    result = catalog.instance(lambda name, **kw: _connect_factory_ctx(pg, name, **kw), 4)
    assert set(result) == {"databases", "instance"}
    check_types(result["instance"], SPEC_INSTANCE, added=set())
    entries = {e["datname"]: e for e in result["databases"]}
    admin = connect(pg, "postgres")
    try:
        names = {
            n for (n,) in run_sql(admin, "SELECT datname FROM pg_database WHERE NOT datistemplate")
        }
        sizes = dict(run_sql(admin, "SELECT datname, pg_database_size(oid) FROM pg_database"))
    finally:
        admin.close()
    assert set(entries) == names
    assert [e["datname"] for e in result["databases"]] == sorted(entries)
    check_types(without_reason(entries[DB]), SPEC_DATABASE_ENTRY, added=set())
    check_types(without_reason(entries["postgres"]), SPEC_DATABASE_ENTRY, added=set(), nullable={
        "indexes_bloat_bytes", "indexes_bloat_size", "tables_bloat_bytes", "tables_bloat_size",
    })  # fmt: skip
    # not accepting connections: its size, no figures
    for name in (CLOSED_DB,):
        assert entries[name]["reason"] == catalog.NOT_CONNECTABLE
        entry = without_reason(entries[name])
        assert set(entry) == set(SPEC_DATABASE_ENTRY)
        assert entry["total_bytes"] == sizes[name]
        assert entry["total_size"] == catalog.size_pretty(sizes[name])
        assert all(
            v is None for k, v in entry.items() if k not in ("datname", "total_bytes", "total_size")
        )
    # figures of a database = sums over its schemas
    with _connect_factory_ctx(pg, DB) as c:
        schemas = catalog.database(c)["schemas"]
    mine = entries[DB]
    assert mine["n_tables"] == float(sum(s["n_tables"] for s in schemas))
    assert mine["tables_bytes"] == float(sum(s["tables_bytes"] for s in schemas))
    assert mine["tables_size"] == catalog.size_pretty(mine["tables_bytes"])
    assert mine["total_bytes"] == sizes[DB]
    total = sum(e["total_bytes"] for e in result["databases"])
    assert result["instance"]["total_bytes"] == float(total)


def test_instance_survives_refused_database(pg, db):
    """A database the role may not connect to gets null figures."""
    admin = connect(pg, "postgres")
    run_sql(admin, f'REVOKE CONNECT ON DATABASE "{DB}" FROM PUBLIC')
    try:
        result = catalog.instance(
            lambda name, **kw: _connect_factory_ctx(pg, name, READER, **kw), 2
        )
    finally:
        run_sql(admin, f'GRANT CONNECT ON DATABASE "{DB}" TO PUBLIC')
        admin.close()
    entries = {e["datname"]: e for e in result["databases"]}
    assert entries[DB]["n_tables"] is None and entries[DB]["total_bytes"] is None
    assert "permission denied for database" in entries[DB]["reason"]
    assert type(entries["postgres"]["n_tables"]) is float


# --- over HTTPS through the agent -------------------------------------------


def path(*parts: str) -> str:
    return "/maintenance" + "".join("/" + quote(p, safe="") for p in parts)


def test_http_pages(agent, db):
    resp = agent.get(path())
    assert resp.status_code == 200, resp.text
    data = resp.json()
    entries = {e["datname"]: e for e in data["databases"]}
    check_types(without_reason(entries[DB]), SPEC_DATABASE_ENTRY, added=set())
    check_types(data["instance"], SPEC_INSTANCE, added=set())
    assert "template0" not in entries and "template1" not in entries  # as upstream

    resp = agent.get(path(DB))
    assert resp.status_code == 200, resp.text
    check_types(resp.json(), SPEC_DATABASE, added=set())
    for entry in resp.json()["schemas"]:
        if entry["name"] == "public":
            check_types(entry, SPEC_SCHEMA_ENTRY, added=set())

    resp = agent.get(path(DB, "schema", "public"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    schema = resp.json()
    check_types(schema, SPEC_SCHEMA, added=set())
    for table in schema["tables"]:
        check_types(table, SPEC_SCHEMA_TABLE)
    for index in schema["indexes"]:
        check_types(index, SPEC_INDEX)
    # floats stay floats in JSON text, as in the spec
    assert re.search(r'"row_estimate":4000\.0', resp.text)

    resp = agent.get(path(DB, "schema", "public", "table", "city"))
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert page["name"] == "city" and page["n_live_tup"] >= 4000
    assert isinstance(page["relid"], str) and TIMESTAMP_RE.match(page["last_analyze"])


def test_http_odd_names(agent, db):
    resp = agent.get(path(DB, "schema", ODD_SCHEMA))
    assert resp.status_code == 200, resp.text
    assert {t["name"] for t in resp.json()["tables"]} == {ODD_TABLE, UNICODE_TABLE}
    for table in (ODD_TABLE, UNICODE_TABLE):
        resp = agent.get(path(DB, "schema", ODD_SCHEMA, "table", table))
        assert resp.status_code == 200, resp.text
        assert resp.json()["name"] == table


def test_http_no_connection_left_on_templates(agent, pg, db):
    """CREATE DATABASE fails while a session is connected to its template."""
    assert agent.get(path()).status_code == 200
    assert agent.get(path("template1")).status_code == 200
    assert agent.get(path("template1", "schema", "public")).status_code == 200
    assert agent.get(path("template0")).status_code == 409  # not accepting connections
    admin = connect(pg, "postgres")
    try:
        rows = run_sql(
            admin,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname IN ('template0', 'template1') AND pid <> pg_backend_pid()",
        )
        assert rows == [(0,)]
        assert run_sql(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (DB,))
    finally:
        admin.close()


def test_http_odd_database_name(agent, pg, db):
    name = 'mread "Odd" DB é'
    admin = connect(pg, "postgres")
    run_sql(admin, 'CREATE DATABASE "mread ""Odd"" DB é"')
    try:
        odd = connect(pg, name)
        run_sql(odd, 'CREATE TABLE "T" (id int PRIMARY KEY)')
        odd.close()
        resp = agent.get(path(name))
        assert resp.status_code == 200, resp.text
        assert "public" in by_name(resp.json()["schemas"])
        resp = agent.get(path(name, "schema", "public", "table", "T"))
        assert resp.status_code == 200, resp.text
        assert resp.json()["indexes"][0]["name"] == "T_pkey"
        entries = {e["datname"]: e for e in agent.get(path()).json()["databases"]}
        assert entries[name]["n_tables"] >= 1.0
    finally:
        drop_database(pg, 'mread "Odd" DB é')
        admin.close()


def test_http_not_found(agent, db):
    cases = {
        path("nope_db"): "Database 'nope_db' not found.",
        path("nope_db", "schema", "public"): "Database 'nope_db' not found.",
        path(DB, "schema", "nope"): "Schema 'nope' not found.",
        path(DB, "schema", "nope", "table", "city"): "Schema 'nope' not found.",
        path(DB, "schema", "public", "table", "nope"): "Table 'public.nope' not found.",
        path(DB, "schema", ODD_SCHEMA, "table", "x y"): f"Table '{ODD_SCHEMA}.x y' not found.",
        path("x\x00y"): "Database 'x\x00y' not found.",
        path(DB, "schema", "x\x00y"): "Schema 'x\x00y' not found.",
        path(DB, "schema", "public", "table", "t" * 64): f"Table 'public.{'t' * 64}' not found.",
    }
    for url, message in cases.items():
        resp = agent.get(url)
        assert resp.status_code == 404, (url, resp.text)
        assert resp.json() == {"error": message}


def test_http_auth(agent, db):
    url = agent.url + path(DB, "schema", "s1")
    assert agent.anon.get(url).status_code in (401, 406)  # no credentials: core's choice
    resp = agent.anon.get(url, params={"key": agent.key})
    assert resp.status_code == 200, resp.text
    resp = agent.anon.get(url, headers={"X-TemBoard-Agent-Key": agent.key})
    assert resp.status_code == 200, resp.text
    assert agent.anon.get(url, params={"key": "wrong"}).status_code == 401


def test_http_locked_table(agent, pg, db, other):
    holder = other()
    run_sql(holder, "BEGIN")
    run_sql(holder, "LOCK TABLE public.city IN ACCESS EXCLUSIVE MODE")
    try:
        # Answered while the lock is held (the client timeout only catches a hang).
        resp = agent.get(path(DB, "schema", "public"), timeout=HANG)
        db_resp = agent.get(path(DB), timeout=HANG)
        instance_resp = agent.get(path(), timeout=HANG)
    finally:
        run_sql(holder, "ROLLBACK")
    assert resp.status_code == 200, resp.text
    assert db_resp.status_code == 200 and instance_resp.status_code == 200
    assert by_name(resp.json()["tables"])["city"]["locked"] is True
