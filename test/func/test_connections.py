"""The agent leaves no connection behind: DROP DATABASE and CREATE DATABASE work.

Scans (``GET /maintenance``) and template pages keep no connection; browsed
databases are released after ``[postgresql] pool_idle_timeout`` seconds even
without further traffic; the idle pool is capped, least recently used first.
Waits poll a state with a generous deadline that only catches a hang.
"""

from __future__ import annotations

import psycopg2
import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql
from temboardagent.postgres import Postgres

from .helpers import drop_database, wait_for


def create_db(pg, name: str) -> None:
    drop_database(pg, name)
    run_sql(pg, f'CREATE DATABASE "{name}"')
    run_sql(
        pg,
        "CREATE TABLE t (id int PRIMARY KEY, v text);"
        " INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g; ANALYZE t;",
        dbname=name,
    )


def agent_backends(pg, dbname: str) -> int:
    rows = run_sql(
        pg,
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity"
        " WHERE application_name = 'temboard-agent' AND datname = %s",
        (dbname,),
    )
    return rows[0][0]


def all_agent_backends(pg) -> dict[str, int]:
    rows = run_sql(
        pg,
        "SELECT datname, pg_catalog.count(*) FROM pg_catalog.pg_stat_activity"
        " WHERE application_name = 'temboard-agent' GROUP BY datname",
    )
    return dict(rows)


def browse(agent: AgentProcess, dbname: str) -> None:
    for path in ("", "/schema/public", "/schema/public/table/t"):
        resp = agent.get(f"/maintenance/{dbname}{path}")
        assert resp.status_code == 200, resp.text


def try_sql(pg, query: str) -> bool:
    try:
        run_sql(pg, query)
    except psycopg2.errors.ObjectInUse:
        return False
    return True


@pytest.fixture
def own_agent(pg, workdir, request):
    """``own_agent(postgresql_options)``: a private agent on the shared cluster."""
    agents: list[AgentProcess] = []

    def make(options: str) -> AgentProcess:
        home = workdir / f"conn-{request.node.name}-{len(agents)}"
        agent = AgentProcess(home, pg)
        confd = home / "temboard-agent.conf.d"  # read after the main file
        confd.mkdir(parents=True)
        (confd / "pool.conf").write_text("[postgresql]\n" + options)
        agents.append(agent)
        agent.start()
        agent.login()
        return agent

    yield make
    for agent in agents:
        agent.stop()


def test_scan_keeps_no_connection(pg, agent):
    """GET /maintenance, then DROP DATABASE of a visited database succeeds at once."""
    create_db(pg, "conn_scanned")
    resp = agent.get("/maintenance")
    assert resp.status_code == 200, resp.text
    entry = {e["datname"]: e for e in resp.json()["databases"]}["conn_scanned"]
    assert entry["n_tables"] is not None  # it was visited
    run_sql(pg, "DROP DATABASE conn_scanned")  # no "being accessed by other users"


def test_template_pages_keep_no_connection(pg, agent):
    """After browsing template1, CREATE DATABASE succeeds at once."""
    for path in ("/maintenance/template1", "/maintenance/template1/schema/public"):
        resp = agent.get(path)
        assert resp.status_code == 200, resp.text
    # a target check on template1 (404: no such table) connects to it too
    resp = agent.post("/maintenance/template1/schema/public/table/nothing/analyze", json={})
    assert resp.status_code == 404, resp.text
    run_sql(pg, "DROP DATABASE IF EXISTS conn_created")
    run_sql(pg, "CREATE DATABASE conn_created")  # template1 has no other session
    run_sql(pg, "DROP DATABASE conn_created")


def test_browsed_database_released_after_idle_timeout(pg, own_agent):
    agent = own_agent("pool_idle_timeout = 1\n")
    create_db(pg, "conn_browsed")
    browse(agent, "conn_browsed")
    assert agent_backends(pg, "conn_browsed") >= 1  # pooled, without further traffic...
    # ... closed by the agent itself within pool_idle_timeout
    wait_for(lambda: try_sql(pg, "DROP DATABASE conn_browsed"), message="DROP DATABASE to succeed")


def test_idle_pool_is_capped(pg, own_agent):
    agent = own_agent("pool_idle_timeout = 600\npool_max_idle = 2\n")
    names = [f"conn_cap{i}" for i in range(4)]
    for name in names:
        create_db(pg, name)
    for name in names:
        browse(agent, name)
    # the two least recently used databases lost their idle connections
    wait_for(
        lambda: sum(all_agent_backends(pg).get(n, 0) for n in names[:2]) == 0,
        message="the least recently used connections to close",
    )
    kept = all_agent_backends(pg)
    assert sum(kept.get(n, 0) for n in names) <= 2
    assert kept.get(names[3], 0) == 1
    for name in names:
        drop_database(pg, name)


def test_operation_connection_closed_when_it_ends(pg, agent):
    create_db(pg, "conn_ops")
    resp = agent.post("/maintenance/conn_ops/vacuum", json={})
    assert resp.status_code == 200, resp.text
    op_id = resp.json()["id"]
    wait_for(
        lambda: agent.get(f"/maintenance/vacuum/{op_id}").json()["status"] == "done",
        message="the VACUUM to finish",
    )
    # the worker's connection is gone (the target check's may stay pooled)
    worker = (
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity"
        " WHERE application_name = 'temboard-agent' AND datname = 'conn_ops'"
        " AND query LIKE 'VACUUM%%'"
    )
    wait_for(lambda: run_sql(pg, worker) == [(0,)], message="the worker's connection to close")
    drop_database(pg, "conn_ops")


# The pool itself, on the real cluster


@pytest.fixture
def pool(pg):
    pools: list[Postgres] = []

    def make(**kw) -> Postgres:
        postgres = Postgres(
            pg.socket_dir, pg.port, "postgres", None, "postgres",
            application_name="conn-pool-test", **kw,
        )  # fmt: skip
        pools.append(postgres)
        return postgres

    yield make
    for postgres in pools:
        postgres.close()


def pool_backends(pg) -> dict[str, int]:
    rows = run_sql(
        pg,
        "SELECT datname, pg_catalog.count(*) FROM pg_catalog.pg_stat_activity"
        " WHERE application_name = 'conn-pool-test' GROUP BY datname",
    )
    return dict(rows)


def test_pool_idle_timeout_without_traffic(pg, pool):
    create_db(pg, "conn_pool")
    postgres = pool(idle_timeout=0.5)
    with postgres.connect("conn_pool") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert postgres.idle_connections() == 1
    wait_for(lambda: postgres.idle_connections() == 0, message="the reaper")
    wait_for(lambda: "conn_pool" not in pool_backends(pg), message="the backend to exit")
    run_sql(pg, "DROP DATABASE conn_pool")


def test_pool_lru_cap_and_reuse(pg, pool):
    names = ["conn_lru0", "conn_lru1", "conn_lru2"]
    for name in names:
        create_db(pg, name)
    postgres = pool(idle_timeout=600, max_idle=2)
    pids = {}
    for name in names:
        with postgres.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_catalog.pg_backend_pid()")
            pids[name] = cur.fetchone()[0]
    assert postgres.idle_connections() == 2
    wait_for(lambda: "conn_lru0" not in pool_backends(pg), message="the LRU connection to close")
    with postgres.connect("conn_lru2") as conn, conn.cursor() as cur:  # reused
        cur.execute("SELECT pg_catalog.pg_backend_pid()")
        assert cur.fetchone()[0] == pids["conn_lru2"]
    # a connection terminated by the server is not handed out
    run_sql(pg, "SELECT pg_catalog.pg_terminate_backend(%s)", (pids["conn_lru1"],))
    wait_for(lambda: "conn_lru1" not in pool_backends(pg), message="the backend to exit")
    with postgres.connect("conn_lru1") as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.pg_backend_pid()")
        assert cur.fetchone()[0] != pids["conn_lru1"]
    postgres.close()
    assert postgres.idle_connections() == 0
    assert postgres._reaper is not None and not postgres._reaper.is_alive()  # stopped
    for name in names:
        drop_database(pg, name)


def test_pool_never_keeps_templates(pg, pool):
    postgres = pool()
    with postgres.connect("template1") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert postgres.idle_connections() == 0
    run_sql(pg, "CREATE DATABASE conn_from_template")
    run_sql(pg, "DROP DATABASE conn_from_template")
