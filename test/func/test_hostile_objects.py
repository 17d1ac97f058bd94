"""Objects planted by a database owner never run as the agent's superuser.

The agent connects as a superuser. ``mallory`` owns database ``appdb`` and is
not a superuser; she plants operators, functions and views that shadow what
the agent's SQL uses, each of them trying ``ALTER ROLE mallory SUPERUSER``
when a superuser runs it. After every read (instance, database, schema and
table pages, with the read-only key) and every operation (VACUUM, ANALYZE,
REINDEX, cancel, orphan recovery), mallory must still not be a superuser and
the pages must show what they showed before the objects were planted.

A private cluster: the tests change the ``postgres`` database's settings.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import psycopg2
import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql
from temboardagent.embedded import throwaway_cluster
from temboardagent.postgres import Postgres

from .helpers import drop_database, settle_stats

MALLORY = "mallory"
APPDB = "appdb"
SCOPES = ("instance", "database", "schema", "table")
PATHS = {
    "instance": "/maintenance",
    "database": f"/maintenance/{APPDB}",
    "schema": f"/maintenance/{APPDB}/schema/public",
    "table": f"/maintenance/{APPDB}/schema/public/table/bait",
}
FINISHED = ("done", "failed", "canceled", "aborted")

#: plpgsql statements run first by every planted function
ESCALATE = (
    "IF pg_catalog.current_setting('is_superuser') = 'on' THEN"
    " EXECUTE 'ALTER ROLE mallory SUPERUSER'; END IF;"
)


def trap(signature: str, returns: str, body: str) -> str:
    """``CREATE FUNCTION public.<signature>`` that escalates, then runs ``body``."""
    return (
        f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS $$"
        f" BEGIN {ESCALATE} {body} END $$;"
    )


#: the exact attack of the issue
PWN_GE = trap("pwn(real, int)", "bool", "RETURN $1 >= $2::real;") + (
    "CREATE OPERATOR public.>= (LEFTARG = real, RIGHTARG = int, FUNCTION = public.pwn);"
)

#: operators pg_catalog lacks (real with integer): exact matches from public
OPERATORS = {
    "-(int,real)": trap("pwn_minus(int, real)", "float8", "RETURN $1::float8 - $2::float8;")
    + "CREATE OPERATOR public.- (LEFTARG = int, RIGHTARG = real, FUNCTION = public.pwn_minus);",
    "/(real,int)": trap("pwn_div(real, int)", "float8", "RETURN $1::float8 / $2::float8;")
    + "CREATE OPERATOR public./ (LEFTARG = real, RIGHTARG = int, FUNCTION = public.pwn_div);",
    "=(real,int)": trap("pwn_eq(real, int)", "bool", "RETURN $1 = $2::real;")
    + "CREATE OPERATOR public.= (LEFTARG = real, RIGHTARG = int, FUNCTION = public.pwn_eq);",
}

#: functions that beat pg_catalog's polymorphic ones, even on the default search_path
FUNCTIONS = {
    "array_to_string(text[],text)": trap(
        "array_to_string(text[], text)", "text", "RETURN pg_catalog.array_to_string($1, $2);"
    ),
    "unnest(smallint[])": trap(
        "unnest(smallint[])", "SETOF smallint", "RETURN QUERY SELECT pg_catalog.unnest($1);"
    ),
}

#: with ``search_path = public, pg_catalog``: look-alikes of pg_catalog's objects
LOOKALIKES = (
    trap("esc()", "bool", "RETURN true;")
    + trap("ceil(float8)", "float8", "RETURN pg_catalog.ceil($1);")
    + trap("floor(float8)", "float8", "RETURN pg_catalog.floor($1);")
    + trap("ceil(numeric)", "numeric", "RETURN pg_catalog.ceil($1);")
    + trap("floor(numeric)", "numeric", "RETURN pg_catalog.floor($1);")
    + trap("mod(int, int)", "int", "RETURN pg_catalog.mod($1, $2);")
    + trap("pg_backend_pid()", "int", "RETURN pg_catalog.pg_backend_pid();")
    + trap("current_setting(text)", "text", "RETURN pg_catalog.current_setting($1);")
    + trap("pg_cancel_backend(int)", "bool", "RETURN pg_catalog.pg_cancel_backend($1);")
    + trap("version()", "text", "RETURN pg_catalog.version();")
    + trap("has_table_privilege(text, text)", "bool",
           "RETURN pg_catalog.has_table_privilege($1, $2);")
    + "".join(
        f"CREATE VIEW public.{name} AS SELECT {columns} FROM pg_catalog.{name}"
        " WHERE public.esc();"
        for name, columns in (
            ("pg_namespace", "*"), ("pg_class", "*"), ("pg_index", "*"),
            ("pg_database", "*"), ("pg_stat_activity", "*"), ("pg_am", "*"),
            ("pg_locks", "*"), ("pg_stat_all_tables", "*"), ("pg_tablespace", "*"),
            # without their anyarray columns, which a view cannot have
            ("pg_attribute", "attrelid, attname, attnum, attisdropped"),
            ("pg_statistic", "starelid, staattnum, stainherit, stanullfrac, stawidth"),
            ("pg_stats", "schemaname, tablename, attname, inherited, null_frac, avg_width"),
        )
    )
)  # fmt: skip

SEARCH_PATH = "public, pg_catalog"


# Helpers


def is_superuser(pg) -> bool:
    rows = run_sql(pg, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (MALLORY,))
    return rows[0][0]


def read(agent: AgentProcess, scope: str) -> dict:
    """The page of ``scope`` with the read-only key (no session)."""
    resp = agent.anon.get(
        agent.url + PATHS[scope], headers={"X-TemBoard-Agent-Key": agent.key}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def comparable(scope: str, page: dict) -> Any:
    """What must not change when objects are planted.

    A database's size and its ``pg_catalog`` schema's figures grow with the
    planted objects' catalog rows: the instance page keeps each database's
    name and counts, the database page its user schemas; the schema and table
    pages stay whole.
    """
    if scope == "instance":
        keep = ("datname", "n_tables", "n_indexes")
        return [{k: entry[k] for k in keep} for entry in page["databases"]]
    if scope == "database":
        return [s for s in page["schemas"] if s["name"] not in ("pg_catalog", "information_schema")]
    return page


def check_reads(pg, agent: AgentProcess, before: dict[str, Any]) -> None:
    for scope in SCOPES:
        page = read(agent, scope)
        assert not is_superuser(pg), f"mallory became superuser through the {scope} page"
        assert comparable(scope, page) == before[scope], f"the {scope} page changed"


def wait_op(agent: AgentProcess, kind: str, op_id: str, statuses=FINISHED) -> dict:
    deadline = time.monotonic() + 60
    while True:
        resp = agent.get(f"/maintenance/{kind}/{op_id}")
        assert resp.status_code == 200, resp.text
        item = resp.json()
        if item["status"] in statuses:
            return item
        assert time.monotonic() < deadline, f"operation {op_id} still {item['status']}"
        time.sleep(0.05)


def run_op(agent: AgentProcess, path: str, kind: str, **body) -> dict:
    resp = agent.post(f"{path}/{kind}", json=body)
    assert resp.status_code == 200, resp.text
    return wait_op(agent, kind, resp.json()["id"])


def wait_for(predicate: Callable[[], Any], message: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timeout waiting for {message}"
        time.sleep(0.05)


def running_vacuum(pg) -> list[tuple]:
    return run_sql(
        pg,
        "SELECT pid FROM pg_catalog.pg_stat_activity"
        " WHERE application_name = 'temboard-agent' AND state = 'active'"
        ' AND query = \'VACUUM (FULL) "public"."bait"\'',
    )


# Fixtures


@pytest.fixture(scope="module")
def hpg(workdir):
    with throwaway_cluster(workdir / "hostile-pg") as cluster:
        # no autovacuum: the statistics of the pages stay as the test left them
        run_sql(cluster, "ALTER SYSTEM SET autovacuum = off")
        run_sql(cluster, "SELECT pg_catalog.pg_reload_conf()")
        yield cluster


@pytest.fixture(scope="module")
def hagent(hpg, workdir):
    proc = AgentProcess(workdir / "hostile-agent", hpg)
    proc.start()
    proc.login()
    yield proc
    proc.stop()


def _reset(pg) -> None:
    run_sql(pg, "ALTER DATABASE postgres RESET search_path")
    drop_database(pg, APPDB)
    if run_sql(pg, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (MALLORY,)):
        run_sql(pg, f"DROP OWNED BY {MALLORY} CASCADE")
        run_sql(pg, f"DROP ROLE {MALLORY}")


@pytest.fixture
def appdb(hpg, hagent) -> dict[str, Any]:
    """``appdb`` owned by mallory with table ``bait``; the pages before any trap."""
    _reset(hpg)
    run_sql(hpg, f"CREATE ROLE {MALLORY} LOGIN NOSUPERUSER")
    run_sql(hpg, f"CREATE DATABASE {APPDB} OWNER {MALLORY}")
    # as in every database created before PostgreSQL 15: public writable by all
    run_sql(hpg, f"GRANT CREATE ON SCHEMA public TO {MALLORY}")
    run_sql(
        hpg,
        "CREATE TABLE public.bait (i int, t text);"
        " INSERT INTO public.bait SELECT g, 'x' || g FROM generate_series(1, 100) g;"
        " CREATE INDEX bait_i ON public.bait (i);"
        " ANALYZE public.bait;",
        dbname=APPDB,
        user=MALLORY,
    )
    conn = psycopg2.connect(hpg.dsn(APPDB))
    try:
        settle_stats(conn)  # PostgreSQL < 15: the collector has mallory's rows and ANALYZE
    finally:
        conn.close()
    before = {scope: comparable(scope, read(hagent, scope)) for scope in SCOPES}
    assert not is_superuser(hpg)
    yield before
    _reset(hpg)


# Reads


@pytest.mark.parametrize("scope", SCOPES)
def test_exact_attack_at_each_read_scope(hpg, hagent, appdb, scope):
    """The issue's attack: ``public.>=(real, int)``, read-only key, default settings."""
    run_sql(hpg, PWN_GE, dbname=APPDB, user=MALLORY)
    page = read(hagent, scope)
    assert not is_superuser(hpg)
    assert comparable(scope, page) == appdb[scope]


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_real_integer_operators(hpg, hagent, appdb, operator):
    run_sql(hpg, OPERATORS[operator], dbname=APPDB, user=MALLORY)
    check_reads(hpg, hagent, appdb)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_functions_beating_polymorphic_ones(hpg, hagent, appdb, function):
    run_sql(hpg, FUNCTIONS[function], dbname=APPDB, user=MALLORY)
    check_reads(hpg, hagent, appdb)


def test_every_trap_at_once(hpg, hagent, appdb):
    run_sql(
        hpg,
        PWN_GE + "".join(OPERATORS.values()) + "".join(FUNCTIONS.values()),
        dbname=APPDB,
        user=MALLORY,
    )
    check_reads(hpg, hagent, appdb)


# Database-level search_path: reads, target checks and operation workers


def plant_lookalikes(pg) -> None:
    """Look-alikes in appdb, which mallory puts first on its search_path."""
    run_sql(
        pg,
        LOOKALIKES + f"ALTER DATABASE {APPDB} SET search_path = {SEARCH_PATH};",
        dbname=APPDB,
        user=MALLORY,
    )


def test_lookalikes_on_database_search_path_reads(hpg, hagent, appdb):
    plant_lookalikes(hpg)
    check_reads(hpg, hagent, appdb)


@pytest.mark.parametrize(
    "kind, path",
    [
        ("vacuum", PATHS["table"]),
        ("analyze", PATHS["table"]),
        ("reindex", PATHS["table"]),
        ("reindex", f"/maintenance/{APPDB}/schema/public/index/bait_i"),
        ("vacuum", PATHS["database"]),
        ("analyze", PATHS["database"]),
        ("reindex", PATHS["database"]),
    ],
)
def test_lookalikes_on_database_search_path_operations(hpg, hagent, appdb, kind, path):
    plant_lookalikes(hpg)
    item = run_op(hagent, path, kind)
    assert not is_superuser(hpg), f"mallory became superuser through {kind} of {path}"
    assert item["status"] == "done", item


def test_operation_with_every_trap(hpg, hagent, appdb):
    run_sql(
        hpg,
        PWN_GE + "".join(OPERATORS.values()) + "".join(FUNCTIONS.values()),
        dbname=APPDB,
        user=MALLORY,
    )
    for kind in ("vacuum", "analyze", "reindex"):
        assert run_op(hagent, PATHS["table"], kind)["status"] == "done"
    assert not is_superuser(hpg)


@pytest.mark.parametrize(
    "kind, path, body",
    [
        ("vacuum", PATHS["table"], {"mode": "full,analyze"}),
        ("analyze", PATHS["database"], {}),
        ("reindex", PATHS["table"], {}),
        ("reindex", PATHS["database"], {}),
    ],
)
def test_index_expression_runs_as_its_owner(hpg, hagent, appdb, kind, path, body):
    """PostgreSQL runs index expressions of maintenance as the table owner.

    The agent relies on it (CVE-2022-1552, fixed in the minor releases of
    May 2022): a VACUUM FULL, ANALYZE or REINDEX of mallory's table never runs
    her function as a superuser. (An index function must be immutable, so it
    could not run ALTER ROLE anyway: it fails the operation instead.)
    """
    run_sql(
        hpg,
        "CREATE FUNCTION public.idx_trap(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$"
        " BEGIN IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r"
        "           WHERE r.rolname = CURRENT_USER) THEN"
        " RAISE EXCEPTION 'idx_trap ran as %', CURRENT_USER; END IF; RETURN $1; END $$;"
        "CREATE INDEX bait_trap ON public.bait (public.idx_trap(i));",
        dbname=APPDB,
        user=MALLORY,
    )
    item = run_op(hagent, path, kind, **body)
    assert item["status"] == "done", item["error"]
    assert not is_superuser(hpg)


# The agent's default database: lookups, cancel, orphan recovery


def plant_in_default_database(pg) -> None:
    """Look-alikes in ``postgres``, whose search_path a DBA set to public first."""
    run_sql(pg, LOOKALIKES, dbname="postgres", user=MALLORY)
    run_sql(pg, f"ALTER DATABASE postgres SET search_path = {SEARCH_PATH}")


def test_default_database_lookalikes_reads(hpg, hagent, appdb):
    plant_in_default_database(hpg)
    check_reads(hpg, hagent, appdb)
    assert hagent.get("/discover").status_code == 200
    assert not is_superuser(hpg)


def test_default_database_lookalikes_cancel(hpg, hagent, appdb):
    plant_in_default_database(hpg)
    plant_lookalikes(hpg)
    blocker = psycopg2.connect(hpg.dsn(APPDB))
    try:
        with blocker.cursor() as cur:  # the VACUUM FULL waits for this lock
            cur.execute("LOCK TABLE public.bait IN ACCESS SHARE MODE")
        resp = hagent.post(PATHS["table"] + "/vacuum", json={"mode": "full"})
        assert resp.status_code == 200, resp.text
        op_id = resp.json()["id"]
        wait_for(lambda: running_vacuum(hpg), "the VACUUM FULL backend")
        assert hagent.delete(f"/maintenance/vacuum/{op_id}").status_code == 200
        item = wait_op(hagent, "vacuum", op_id)
        assert item["status"] == "canceled", item
        assert not running_vacuum(hpg)
    finally:
        blocker.rollback()
        blocker.close()
    assert not is_superuser(hpg)


def test_default_database_lookalikes_orphan_recovery(hpg, appdb, workdir):
    """A restarted agent cancels its predecessor's backend through hardened SQL."""
    plant_in_default_database(hpg)
    plant_lookalikes(hpg)
    agent = AgentProcess(workdir / "hostile-orphans", hpg)
    agent.start()
    agent.login()
    blocker = psycopg2.connect(hpg.dsn(APPDB))
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE public.bait IN ACCESS SHARE MODE")
        resp = agent.post(PATHS["table"] + "/vacuum", json={"mode": "full"})
        assert resp.status_code == 200, resp.text
        op_id = resp.json()["id"]
        wait_for(lambda: running_vacuum(hpg), "the VACUUM FULL backend")
        agent.kill9()
        agent.start()
        agent.login()
        wait_for(lambda: not running_vacuum(hpg), "the orphan backend to be canceled")
        assert agent.get(f"/maintenance/vacuum/{op_id}").json()["status"] == "aborted"
    finally:
        blocker.rollback()
        blocker.close()
        agent.stop()
    assert not is_superuser(hpg)


# Connection settings, whatever the database and role defaults


@pytest.mark.parametrize("read_only", [True, False])
def test_connections_pin_search_path(hpg, appdb, read_only):
    plant_lookalikes(hpg)
    run_sql(hpg, f"ALTER ROLE postgres IN DATABASE {APPDB} SET search_path = public")
    run_sql(hpg, f"ALTER ROLE postgres IN DATABASE {APPDB} SET default_transaction_read_only = off")
    postgres = Postgres(hpg.socket_dir, hpg.port, "postgres", None, "postgres")
    try:
        for pooled in (True, False):
            with postgres.connect(APPDB, pooled=pooled, read_only=read_only) as conn:
                with conn.cursor() as cur:
                    cur.execute("SHOW search_path")
                    assert cur.fetchone()[0].replace(" ", "") == "pg_catalog,pg_temp"
                    cur.execute("SHOW default_transaction_read_only")
                    assert cur.fetchone()[0] == ("on" if read_only else "off")
    finally:
        postgres.close()
        run_sql(hpg, f"ALTER ROLE postgres IN DATABASE {APPDB} RESET ALL")
    assert not is_superuser(hpg)


def test_read_connection_refuses_writes(hpg, appdb):
    postgres = Postgres(hpg.socket_dir, hpg.port, "postgres", None, "postgres")
    try:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            with postgres.connect(APPDB) as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE public.written (i int)")
        with postgres.connect(APPDB, read_only=False) as conn, conn.cursor() as cur:
            cur.execute("VACUUM public.bait")
    finally:
        postgres.close()


# Every operator of the agent's SQL is an exact match of pg_catalog's

TRAP_TYPES = (
    "smallint", "integer", "bigint", "real", "double precision", "numeric",
    "pg_catalog.oid", "pg_catalog.name", "pg_catalog.text", 'pg_catalog."char"', "boolean",
)  # fmt: skip
TRAP_OPERATORS = ("=", "<>", "<", ">", "<=", ">=", "+", "-", "*", "/", "~", "!~")
#: parameters of every query, as the agent binds them
PARAMS = {
    "schema": "pg_catalog", "table": "pg_class", "index": "pg_class_oid_index",
    "dbname": "postgres", "nsp": 11, "locked": [1259], "pid": 1, "query": "VACUUM",
    "pids": [1], "oids": [1259], "privileged": True,
    "relname": "pg_class", "partitions": True, "maintain": False, "names": ["pg_class"],
    # operations (lock retries, REINDEX CONCURRENTLY, time limits)
    "table_modes": ["ShareLock"], "index_modes": ["AccessExclusiveLock"], "database": False,
    "ms": "1000",
}  # fmt: skip


def plant_operator_traps(pg, dbname: str) -> int:
    """In ``public``: each operator for each pair of types pg_catalog lacks.

    Such an operator would be an exact match, chosen over pg_catalog's even
    on the default search_path, wherever a query mixes types.
    """
    conn = psycopg2.connect(pg.dsn(dbname))
    conn.autocommit = True
    statements = []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT o.oprname, o.oprleft::pg_catalog.regtype::pg_catalog.text,"
            " o.oprright::pg_catalog.regtype::pg_catalog.text FROM pg_catalog.pg_operator o"
        )
        existing = set(cur.fetchall())
        for left in TRAP_TYPES:
            for right in TRAP_TYPES:
                cur.execute(
                    "SELECT %s::pg_catalog.regtype::pg_catalog.text,"
                    " %s::pg_catalog.regtype::pg_catalog.text",
                    (left, right),
                )
                names = cur.fetchone()
                statements.append(
                    f"CREATE FUNCTION public.trap({left}, {right}) RETURNS boolean"
                    " LANGUAGE sql AS 'SELECT NULL::boolean';"
                )
                for op in TRAP_OPERATORS:
                    if (op, *names) not in existing:
                        statements.append(
                            f"CREATE OPERATOR public.{op} (LEFTARG = {left},"
                            f" RIGHTARG = {right}, FUNCTION = public.trap);"
                        )
        cur.execute("".join(statements))
    conn.close()
    return sum(s.startswith("CREATE OPERATOR") for s in statements)


def hpg_version(pg) -> int:
    conn = psycopg2.connect(pg.dsn())
    try:
        return conn.server_version
    finally:
        conn.close()


def test_every_operator_is_an_exact_pg_catalog_match(hpg, appdb):
    """Each query, made a view, depends on no object of ``public``."""
    from temboardagent.plugins.maintenance import progress
    from temboardagent.plugins.maintenance.catalog import table_stats_query
    from temboardagent.plugins.maintenance.sql import SQL_DIR, load_sql

    assert plant_operator_traps(hpg, APPDB) > 1000
    fragments = {"cfg", "locked", "estimates", "stats_pg_statistic", "stats_pg_stats"}
    fragments |= {view for _, view in progress.VIEWS}  # parts of progress and activity
    fragments |= {"reltuples"}  # an expression of the "tbl" CTEs
    version = hpg_version(hpg)
    texts = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        if path.stem in ("progress", "activity"):  # the server's progress views filled in
            texts[path.stem] = progress.query(path.stem, version)
        elif path.stem == "table_stats":  # the server's columns filled in
            texts[path.stem] = table_stats_query(version)
        elif path.stem not in fragments:
            for stats in ("pg_statistic", "pg_stats"):
                texts[f"{path.stem} ({stats})"] = load_sql(path.stem, stats)
    conn = psycopg2.connect(hpg.dsn(APPDB))  # default search_path: "$user", public
    try:
        with conn.cursor() as cur:
            for name, text in texts.items():
                for relid in (None, 1259):
                    query = cur.mogrify(text, dict(PARAMS, relid=relid)).decode()
                    # a subquery: relations.sql has two columns named "name"
                    cur.execute(f"CREATE TEMPORARY VIEW checked AS SELECT 1 FROM ({query}) AS q")
                    cur.execute(
                        "SELECT d.refclassid::pg_catalog.regclass::pg_catalog.text,"
                        " pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)"
                        " FROM pg_catalog.pg_depend d"
                        " JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid"
                        " WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass"
                        " AND r.ev_class = 'checked'::pg_catalog.regclass"
                        " AND d.refobjid >= 16384::pg_catalog.oid"  # not a built-in object
                        " AND d.refobjid <> 'checked'::pg_catalog.regclass"
                    )
                    assert cur.fetchall() == [], f"{name} uses objects of users"
                    cur.execute("DROP VIEW checked")
    finally:
        conn.rollback()
        conn.close()
