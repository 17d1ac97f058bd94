"""Agents running as roles without superuser, on a real cluster.

- ``lp_monitor``: only in ``pg_monitor``: every read works; operations on
  tables it does not own are refused (403) before they are scheduled; one
  whose permission disappears before it runs ends ``failed`` with
  PostgreSQL's warning, never ``done``.
- ``lp_owner``: owns some tables: its operations on them run; a
  database-wide VACUUM or ANALYZE lists the other relations as skipped and
  ends ``done``.
- ``lp_maintainer``: in ``pg_maintain`` (PostgreSQL 17+ only): runs every
  operation on relations it does not own.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql

from .helpers import drop_database

DB = "lp"
CLOSED = "lp_closed"  # no CONNECT for PUBLIC
MONITOR = "lp_monitor"
OWNER = "lp_owner"
MAINTAINER = "lp_maintainer"
ROLES = (MONITOR, OWNER, MAINTAINER)
FINISHED = ("done", "failed", "canceled", "aborted")

SETUP = f"""
CREATE TABLE public.mine (id int PRIMARY KEY, label text);
INSERT INTO public.mine SELECT i, md5(i::text) FROM generate_series(1, 2000) AS i;
ALTER TABLE public.mine OWNER TO {OWNER};
CREATE TABLE public.theirs (id int PRIMARY KEY, label text);
INSERT INTO public.theirs SELECT i, md5(i::text) FROM generate_series(1, 2000) AS i;
CREATE TABLE public.lent (id int PRIMARY KEY);
CREATE TABLE public.parts (id int) PARTITION BY RANGE (id);
CREATE TABLE public.parts_1 PARTITION OF public.parts FOR VALUES FROM (0) TO (10);
ALTER TABLE public.parts OWNER TO {OWNER};
GRANT CREATE ON SCHEMA public TO {OWNER};
ANALYZE;
"""


def server_version(pg) -> int:
    return int(run_sql(pg, "SHOW server_version_num")[0][0])


@pytest.fixture(scope="module")
def cluster(pg):
    """Roles and databases of this module (dropped at the end)."""
    version = server_version(pg)
    for name in (DB, CLOSED):
        drop_database(pg, name)
    for role in ROLES:
        run_sql(pg, f"DROP ROLE IF EXISTS {role}")
    run_sql(pg, f"CREATE ROLE {MONITOR} LOGIN IN ROLE pg_monitor")
    run_sql(pg, f"CREATE ROLE {OWNER} LOGIN IN ROLE pg_monitor")
    if version >= 170000:
        run_sql(pg, f"CREATE ROLE {MAINTAINER} LOGIN IN ROLE pg_monitor, pg_maintain")
    for name in (DB, CLOSED):
        run_sql(pg, f"CREATE DATABASE {name}")
    run_sql(pg, f"REVOKE CONNECT ON DATABASE {CLOSED} FROM PUBLIC")
    run_sql(pg, SETUP, dbname=DB)
    yield pg
    for name in (DB, CLOSED):
        drop_database(pg, name)
    for role in ROLES:
        run_sql(pg, f"DROP ROLE IF EXISTS {role}")


def role_agent(pg, workdir, role: str) -> AgentProcess:
    """An agent connecting as ``role`` (set in a ``.conf.d`` file)."""
    proc = AgentProcess(workdir / f"agent-{role}", pg, log_level="INFO")
    confd = proc.home / "temboard-agent.conf.d"
    confd.mkdir(parents=True, exist_ok=True)
    (confd / "role.conf").write_text(f"[postgresql]\nuser = {role}\n")
    proc.start()
    proc.login()
    return proc


@pytest.fixture(scope="module")
def monitor(cluster, workdir):
    proc = role_agent(cluster, workdir, MONITOR)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def owner(cluster, workdir):
    proc = role_agent(cluster, workdir, OWNER)
    yield proc
    proc.stop()


def later(seconds: int) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule(agent: AgentProcess, path: str, body: dict | None = None) -> tuple[str, str]:
    resp = agent.post(path, json=body or {})
    assert resp.status_code == 200, resp.text
    return path.rsplit("/", 1)[1], resp.json()["id"]


def wait_finished(agent: AgentProcess, kind: str, op_id: str, timeout: float = 90) -> dict:
    """Poll the operation until it is finished (the deadline only catches a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        item = agent.get(f"/maintenance/{kind}/{op_id}").json()
        if item["status"] in FINISHED:
            return item
        assert time.monotonic() < deadline, item
        time.sleep(0.1)


def run_op(agent: AgentProcess, path: str, body: dict | None = None) -> dict:
    kind, op_id = schedule(agent, path, body)
    return wait_finished(agent, kind, op_id)


def stat(pg, table: str, column: str) -> int:
    rows = run_sql(
        pg,
        f"SELECT {column} FROM pg_stat_user_tables WHERE relid = %s::regclass",
        (table,),
        dbname=DB,
    )
    return rows[0][0]


# What the agent reports of its role


def test_discover_reports_the_role_privileges(monitor, agent, cluster):
    privileges = monitor.get("/discover").json()["privileges"]
    assert privileges == {
        "role": MONITOR,
        "superuser": False,
        "pg_monitor": True,
        "pg_maintain": False,
        "can_read_statistics": False,
    }
    privileges = agent.get("/discover", params={"key": agent.key}).json()["privileges"]
    assert privileges["superuser"] is True and privileges["can_read_statistics"] is True


# Reads


def test_reads_are_complete_for_pg_monitor(monitor, agent, cluster):
    paths = [
        f"/maintenance/{DB}",
        f"/maintenance/{DB}/schema/public",
        f"/maintenance/{DB}/schema/public/table/theirs",
    ]
    for path in paths:
        mine, reference = monitor.get(path), agent.get(path)
        assert mine.status_code == 200, (path, mine.text)
        assert reference.status_code == 200
    # Sizes and statistics are the superuser's; the bloat of a table whose
    # statistics the role cannot read is null, never a wrong figure.
    table = monitor.get(paths[2]).json()
    reference = agent.get(paths[2]).json()
    for name in ("total_bytes", "table_bytes", "index_bytes", "toast_bytes", "n_live_tup"):
        assert table[name] == reference[name], name
    assert reference["bloat_bytes"] is not None
    assert table["bloat_bytes"] is None
    assert [i["total_bytes"] for i in table["indexes"]] == [
        i["total_bytes"] for i in reference["indexes"]
    ]
    schema = monitor.get(paths[1]).json()
    assert schema["total_bytes"] == agent.get(paths[1]).json()["total_bytes"]


def test_every_read_route_answers_pg_monitor(monitor, cluster):
    table = f"/maintenance/{DB}/schema/public/table/theirs"
    paths = [
        "/discover",
        "/profile",
        "/maintenance",
        "/maintenance/activity",
        "/maintenance/advice",
        f"/maintenance/{DB}/advice",
        f"/maintenance/{DB}",
        f"/maintenance/{DB}/schema/public",
        table,
        f"/maintenance/{DB}/schema/public/reindex/scheduled",
    ]
    for kind in ("vacuum", "analyze", "reindex"):
        paths += [
            f"/maintenance/{kind}/scheduled",
            f"/maintenance/{kind}/history",
            f"/maintenance/{DB}/{kind}/scheduled",
            f"{table}/{kind}/scheduled",
        ]
    for path in paths:
        resp = monitor.get(path)
        assert resp.status_code == 200, (path, resp.text)


def test_bloat_estimate_with_select_on_the_table(monitor, agent, cluster):
    path = f"/maintenance/{DB}/schema/public/table/mine"
    run_sql(cluster, f"GRANT SELECT ON public.mine TO {MONITOR}", dbname=DB)
    try:
        table = monitor.get(path).json()
    finally:
        run_sql(cluster, f"REVOKE SELECT ON public.mine FROM {MONITOR}", dbname=DB)
    reference = agent.get(path).json()
    assert table["bloat_bytes"] is not None
    assert table["bloat_bytes"] == reference["bloat_bytes"]
    assert [i["bloat_bytes"] for i in table["indexes"]] == [
        i["bloat_bytes"] for i in reference["indexes"]
    ]


def test_instance_lists_a_database_refusing_the_role(monitor, cluster):
    resp = monitor.get("/maintenance")
    assert resp.status_code == 200, resp.text
    databases = {d["datname"]: d for d in resp.json()["databases"]}
    closed = databases[CLOSED]
    assert closed["n_tables"] is None and closed["tables_bytes"] is None
    assert 'permission denied for database "lp_closed"' in closed["reason"]
    assert closed["total_bytes"] is not None  # pg_monitor reads database sizes
    assert databases[DB]["reason"] is None and databases[DB]["n_tables"] >= 3
    # The database itself answers 403, not 503.
    resp = monitor.get(f"/maintenance/{CLOSED}")
    assert resp.status_code == 403, resp.text
    assert "permission denied for database" in resp.json()["error"]


# Refused before scheduling


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (f"/maintenance/{DB}/schema/public/table/theirs/vacuum", "VACUUM public.theirs"),
        (f"/maintenance/{DB}/schema/public/table/theirs/analyze", "ANALYZE public.theirs"),
        (f"/maintenance/{DB}/schema/public/table/theirs/reindex", "REINDEX public.theirs"),
        (
            f"/maintenance/{DB}/schema/public/index/theirs_pkey/reindex",
            "REINDEX public.theirs_pkey",
        ),
        (f"/maintenance/{DB}/reindex", f"REINDEX database {DB}"),
    ],
)
def test_operation_the_role_may_not_run_is_refused(monitor, path, error):
    kind = path.rsplit("/", 1)[1]
    before = monitor.get(f"/maintenance/{kind}/history").json()
    resp = monitor.post(path, json={"mode": "analyze"} if kind == "vacuum" else {})
    assert resp.status_code == 403, resp.text
    assert resp.json() == {"error": f'role "{MONITOR}" may not {error} (owner: postgres)'}
    assert monitor.get(f"/maintenance/{kind}/history").json() == before


def test_partition_the_role_may_not_process_is_refused(owner):
    resp = owner.post(f"/maintenance/{DB}/schema/public/table/parts/vacuum", json={})
    assert resp.status_code == 403, resp.text
    assert resp.json() == {
        "error": f'role "{OWNER}" may not VACUUM public.parts_1 (owner: postgres)'
    }


def test_database_the_role_may_not_connect_to_is_refused(monitor):
    resp = monitor.post(f"/maintenance/{CLOSED}/vacuum", json={})
    assert resp.status_code == 403, resp.text
    assert resp.json() == {"error": f'role "{MONITOR}" may not connect to database {CLOSED}'}


# Permission lost between scheduling and running


@pytest.mark.parametrize("kind", ["vacuum", "analyze"])
def test_permission_lost_before_running_fails(monitor, cluster, kind):
    run_sql(cluster, f"ALTER TABLE public.lent OWNER TO {MONITOR}", dbname=DB)
    try:
        counter = f"{kind}_count"
        before = stat(cluster, "public.lent", counter)
        path = f"/maintenance/{DB}/schema/public/table/lent/{kind}"
        _, op_id = schedule(monitor, path, {"datetime": later(4)})
    finally:
        run_sql(cluster, "ALTER TABLE public.lent OWNER TO postgres", dbname=DB)
    item = wait_finished(monitor, kind, op_id)
    assert item["status"] == "failed", item
    # PostgreSQL 12-15: skipping "lent" --- only table or database owner can vacuum it
    # PostgreSQL 16+: permission denied to vacuum "lent", skipping it
    assert '"lent"' in item["error"] and "skipping" in item["error"], item
    assert any(item["error"] in notice for notice in item["notices"]), item
    assert item["notices"][0].startswith("WARNING:")
    assert item["skipped"] == [{"relation": "public.lent", "reason": item["error"]}]
    assert item["skipped_count"] == 1
    assert stat(cluster, "public.lent", counter) == before


# A role owning some tables


@pytest.mark.parametrize("kind", ["vacuum", "analyze", "reindex"])
def test_operations_on_owned_tables_run(owner, cluster, kind):
    counter = {"vacuum": "vacuum_count", "analyze": "analyze_count"}.get(kind)
    before = stat(cluster, "public.mine", counter) if counter else None
    item = run_op(owner, f"/maintenance/{DB}/schema/public/table/mine/{kind}")
    assert item["status"] == "done", item
    assert item["notices"] == [] and item["skipped"] == [] and item["skipped_count"] == 0
    if counter:
        deadline = time.monotonic() + 30
        while stat(cluster, "public.mine", counter) == before:  # statistics are flushed late
            assert time.monotonic() < deadline
            time.sleep(0.2)
    item = run_op(owner, f"/maintenance/{DB}/schema/public/index/mine_pkey/reindex")
    assert item["status"] == "done", item


@pytest.mark.parametrize("kind", ["vacuum", "analyze"])
def test_database_wide_operation_lists_what_it_skipped(owner, kind):
    item = run_op(owner, f"/maintenance/{DB}/{kind}")
    assert item["status"] == "done", item
    skipped = {entry["relation"]: entry["reason"] for entry in item["skipped"]}
    assert "public.theirs" in skipped and "public.parts_1" in skipped
    assert "public.mine" not in skipped and "public.parts" not in skipped
    assert '"theirs"' in skipped["public.theirs"]
    assert item["skipped_count"] == len(item["skipped"])
    assert len(item["notices"]) == min(100, item["skipped_count"])


# SKIP_LOCKED as superuser (the option comes with issue 12)


@pytest.fixture
def locked(agent, cluster):
    """``public.locked`` held in ACCESS EXCLUSIVE mode by an open transaction."""
    schema = agent.get("/openapi.json").json()["components"]["schemas"]["VacuumRequest"]
    if "skip_locked" not in schema["properties"]:
        pytest.skip("this agent has no skip_locked option (issue 12); outcome is unit-tested")
    run_sql(cluster, "CREATE TABLE IF NOT EXISTS public.locked (id int)", dbname=DB)
    conn = psycopg2.connect(cluster.dsn(DB))
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE public.locked IN ACCESS EXCLUSIVE MODE")
        yield "public.locked"
    finally:
        conn.rollback()
        conn.close()


def test_skip_locked_table_vacuum_fails_with_the_warning(agent, locked):
    item = run_op(
        agent, f"/maintenance/{DB}/schema/public/table/locked/vacuum", {"skip_locked": True}
    )
    assert item["status"] == "failed", item
    assert item["error"] == 'skipping vacuum of "locked" --- lock not available'
    assert item["skipped"] == [{"relation": "public.locked", "reason": item["error"]}]
    assert any(item["error"] in notice for notice in item["notices"])


def test_skip_locked_database_vacuum_fails_when_it_skipped_a_table(agent, locked):
    item = run_op(agent, f"/maintenance/{DB}/vacuum", {"skip_locked": True})
    assert item["status"] == "failed", item
    assert 'skipping vacuum of "locked" --- lock not available' in item["error"]
    assert {
        "relation": "public.locked",
        "reason": 'skipping vacuum of "locked" --- lock not available',
    } in item["skipped"]


# PostgreSQL 17+: pg_maintain


@pytest.fixture(scope="module")
def maintainer(cluster, workdir):
    if server_version(cluster) < 170000:
        pytest.skip("pg_maintain and the MAINTAIN privilege need PostgreSQL 17 or later")
    proc = role_agent(cluster, workdir, MAINTAINER)
    yield proc
    proc.stop()


@pytest.mark.may_skip  # a version skip: the version matrix runs it on 17 and 18
def test_pg_maintain_runs_every_operation(maintainer):
    privileges = maintainer.get("/discover").json()["privileges"]
    assert privileges["pg_maintain"] is True and privileges["superuser"] is False
    table = f"/maintenance/{DB}/schema/public/table/theirs"
    for path in (
        f"{table}/vacuum",
        f"{table}/analyze",
        f"{table}/reindex",
        f"/maintenance/{DB}/schema/public/index/theirs_pkey/reindex",
        f"/maintenance/{DB}/schema/public/table/parts/vacuum",
    ):
        item = run_op(maintainer, path)
        assert item["status"] == "done", item
        assert item["skipped"] == [], item
    item = run_op(maintainer, f"/maintenance/{DB}/vacuum")
    assert item["status"] == "done" and item["skipped"] == [], item
    # REINDEX DATABASE stays the database owner's.
    resp = maintainer.post(f"/maintenance/{DB}/reindex", json={})
    assert resp.status_code == 403, resp.text
