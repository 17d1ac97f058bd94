"""Maintenance operations over HTTPS: VACUUM / ANALYZE / REINDEX, lists, cancel, history.

Real PostgreSQL, real agent. Operations run against dedicated databases
(``ops_db``, ``ops_db2``) so other test modules sharing the agent are unaffected.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import create_database
from temboardagent.plugins.maintenance.operations import make_target as mk
from temboardagent.plugins.maintenance.statements import build_statement, render_statement

from .helpers import HANG, settle_stats, wait_for

DB = "ops_db"
DB2 = "ops_db2"
ODD_SCHEMA = "Mixed Case"
ODD_TABLE = 'Odd "Name"'
ODD_INDEX = 'Odd "Name" idx'
FINISHED = ("done", "failed", "canceled", "aborted")
PENDING = ("todo", "queued", "doing")
# "progress", "options" and "attempts" are extensions
LIST_FIELDS = {
    "id", "dbname", "schema", "table", "index", "mode", "datetime", "status", "progress",
    "options",
}  # fmt: skip
HISTORY_FIELDS = LIST_FIELDS | {
    "sql", "created", "started", "finished", "duration", "error", "attempts",
}  # fmt: skip
HISTORY_FIELDS |= {"notices", "skipped", "skipped_count"}  # extensions


# Helpers


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def url_part(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def at(seconds: float) -> str:
    """UTC datetime text ``seconds`` from now (rounded up to the next second)."""
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def table_path(table: str, schema: str = "public", db: str = DB) -> str:
    return f"/maintenance/{url_part(db)}/schema/{url_part(schema)}/table/{url_part(table)}"


def index_path(index: str, schema: str = "public", db: str = DB) -> str:
    return f"/maintenance/{url_part(db)}/schema/{url_part(schema)}/index/{url_part(index)}"


def schedule(agent, path: str, **body) -> str:
    resp = agent.post(path, json=body)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert set(data) == {"id"}
    assert len(data["id"]) == 8 and int(data["id"], 16) >= 0
    return data["id"]


def op(agent, kind: str, op_id: str) -> dict:
    resp = agent.get(f"/maintenance/{kind}/{op_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_op(agent, kind: str, op_id: str, statuses=FINISHED, timeout: float = HANG) -> dict:
    """The operation once its status is one of ``statuses`` (the deadline only catches a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        item = op(agent, kind, op_id)
        if item["status"] in statuses:
            return item
        if time.monotonic() > deadline:
            raise AssertionError(f"operation {op_id} still {item['status']}: {item}")
        time.sleep(0.02)


def reaches(read, expected, message: str = "value", timeout: float = 30.0):
    """Poll ``read()`` until it returns ``expected``: PostgreSQL's statistics reach
    ``pg_stat_*`` when the operation's backend exits, a moment after it is done."""
    last = []

    def check() -> bool:
        last[:] = [read()]
        return last[0] == expected

    try:
        wait_for(check, timeout=timeout, message=message)
    except AssertionError:
        raise AssertionError(f"{message}: {last[0]!r}, expected {expected!r}") from None


def counters(conn, schema: str, table: str) -> tuple[int, int]:
    settle_stats(conn)  # PostgreSQL < 15: the collector is asynchronous
    with conn.cursor() as cur:
        cur.execute(
            "SELECT vacuum_count, analyze_count FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname = %s",
            (schema, table),
        )
        return cur.fetchone()


def filenode(conn, schema: str, name: str) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relfilenode FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (schema, name),
        )
        return cur.fetchone()[0]


def exists(conn, schema: str, name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (schema, name),
        )
        return cur.fetchone() is not None


def agent_backends(conn, prefix: str) -> list[tuple[int, str]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pid, state FROM pg_stat_activity"
            " WHERE application_name = 'temboard-agent' AND query LIKE %s",
            (prefix + "%",),
        )
        return cur.fetchall()


def cancel_all(agent, kind: str) -> None:
    for item in agent.get(f"/maintenance/{kind}/scheduled").json():
        agent.delete(f"/maintenance/{kind}/{item['id']}")


# Fixtures


def _create_db(pg, name: str) -> None:
    setup = "".join(
        f"CREATE TABLE {table} (id int PRIMARY KEY, v text);"
        f" INSERT INTO {table} SELECT g, md5(g::text) FROM generate_series(1, 2000) g;"
        f" CREATE INDEX {table}_v ON {table} (v);"
        f" DELETE FROM {table} WHERE id % 3 = 0;"
        for table in ("t1", "t2", "t3", "t4", "t5", "locked", "locked2")
    )
    setup += (
        f"CREATE SCHEMA {q(ODD_SCHEMA)};"
        f" CREATE TABLE {q(ODD_SCHEMA)}.{q(ODD_TABLE)} (id int, v text);"
        f" INSERT INTO {q(ODD_SCHEMA)}.{q(ODD_TABLE)}"
        " SELECT g, 'x' FROM generate_series(1, 500) g;"
        f" CREATE INDEX {q(ODD_INDEX)} ON {q(ODD_SCHEMA)}.{q(ODD_TABLE)} (id);"
    )
    create_database(pg, name, setup, replace=True)


@pytest.fixture(scope="module")
def ops(pg, agent):
    """The agent, with ``ops_db`` and ``ops_db2`` created."""
    _create_db(pg, DB)
    _create_db(pg, DB2)
    yield agent
    for kind in ("vacuum", "analyze", "reindex"):
        cancel_all(agent, kind)


# Statement text is what PostgreSQL's quoting gives


def test_render_statement_matches_psycopg2(pgconn):
    conn = pgconn()
    for kind, target, options in [
        ("vacuum", mk("d"), {"mode": "full,freeze,analyze"}),
        ("vacuum", mk("d", ODD_SCHEMA, ODD_TABLE), {"mode": "analyze"}),
        ("analyze", mk("d", "s", 'a"; DROP TABLE x; --'), {}),
        ("reindex", mk('my "db"'), {}),
        ("reindex", mk("d", ODD_SCHEMA, None, ODD_INDEX, ODD_TABLE), {}),
        ("reindex", mk("d", "sch", "tablé"), {}),
    ]:
        statement = build_statement(kind, target, options)
        assert render_statement(statement) == statement.as_string(conn)


# Every scope and mode really runs


@pytest.mark.parametrize(
    "mode, statement",
    [
        ("", 'VACUUM "public"."t1"'),
        ("freeze", 'VACUUM (FREEZE) "public"."t1"'),
        ("analyze", 'VACUUM (ANALYZE) "public"."t1"'),
        ("analyze,full", 'VACUUM (FULL, ANALYZE) "public"."t1"'),
        ("full", 'VACUUM (FULL) "public"."t1"'),
        ("freeze,analyze,full", 'VACUUM (FULL, FREEZE, ANALYZE) "public"."t1"'),
    ],
)
def test_table_vacuum(ops, pgconn, mode, statement):
    conn = pgconn(DB)
    vacuums, analyzes = counters(conn, "public", "t1")
    node = filenode(conn, "public", "t1")
    op_id = schedule(ops, table_path("t1") + "/vacuum", mode=mode)
    item = wait_op(ops, "vacuum", op_id)
    assert item["status"] == "done", item
    assert item["sql"] == statement
    assert item["error"] is None
    assert item["mode"] == ",".join(m for m in ("full", "freeze", "analyze") if m in mode)
    assert (item["dbname"], item["schema"], item["table"], item["index"]) == (
        DB,
        "public",
        "t1",
        None,
    )
    assert item["notices"] == [] and item["skipped"] == [] and item["skipped_count"] == 0
    assert set(item) == HISTORY_FIELDS
    assert isinstance(item["duration"], float)
    # VACUUM FULL rewrites the table (it does not count as a vacuum).
    expected = (vacuums + (0 if "full" in mode else 1), analyzes + (1 if "analyze" in mode else 0))
    reaches(lambda: counters(conn, "public", "t1"), expected, "vacuum/analyze counts of t1")
    if "full" in mode:
        assert filenode(conn, "public", "t1") != node
    else:
        assert filenode(conn, "public", "t1") == node


def relfrozenxid(conn, schema: str, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relfrozenxid::text::bigint FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        )
        return cur.fetchone()[0]


def unfrozen_row(conn, table: str) -> int:
    """Insert a row in ``public.table``; the id of the transaction that wrote it."""
    with conn.cursor() as cur:
        # One simple query: one implicit transaction, whose xid txid_current() gives.
        cur.execute(
            f"INSERT INTO public.{q(table)} SELECT max(id) + 1, 'new' FROM public.{q(table)};"
            " SELECT pg_catalog.txid_current()"
        )
        return cur.fetchone()[0]


@pytest.mark.parametrize(
    "mode, statement",
    [("", "VACUUM"), ("full", "VACUUM (FULL)"), ("freeze", "VACUUM (FREEZE)"),
     ("analyze", "VACUUM (ANALYZE)")],
)  # fmt: skip
def test_database_vacuum(ops, pgconn, mode, statement):
    """Database-wide VACUUM in each mode, checked in PostgreSQL's catalogs and statistics."""
    conn = pgconn(DB)
    tables = ("t1", "t2")
    before = {t: counters(conn, "public", t) for t in tables}
    nodes = {t: filenode(conn, "public", t) for t in tables}
    xid = unfrozen_row(conn, "t1")
    assert relfrozenxid(conn, "public", "t1") <= xid
    if mode:
        resp = ops.post(f"/maintenance/{DB}/vacuum", json={"mode": mode})
    else:
        resp = ops.post(f"/maintenance/{DB}/vacuum")  # no body at all
    assert resp.status_code == 200, resp.text
    item = wait_op(ops, "vacuum", resp.json()["id"])
    assert item["status"] == "done", item
    assert item["sql"] == statement and item["mode"] == mode
    assert (item["dbname"], item["schema"], item["table"], item["index"]) == (DB, None, None, None)
    for table, (vacuums, analyzes) in before.items():
        # VACUUM FULL rewrites each table (it does not count as a vacuum).
        expected = (vacuums + (mode != "full"), analyzes + (mode == "analyze"))
        reaches(lambda t=table: counters(conn, "public", t), expected, f"counts of {table}")
        rewritten = filenode(conn, "public", table) != nodes[table]
        assert rewritten == (mode == "full"), table
    if mode in ("freeze", "full"):  # every tuple frozen: the horizon passed our row
        assert relfrozenxid(conn, "public", "t1") > xid
    else:  # plain VACUUM leaves a recent tuple unfrozen
        assert relfrozenxid(conn, "public", "t1") <= xid


def test_analyze(ops, pgconn):
    conn = pgconn(DB)
    _, analyzes = counters(conn, "public", "t2")
    op_id = schedule(ops, table_path("t2") + "/analyze")
    item = wait_op(ops, "analyze", op_id)
    assert item["status"] == "done", item
    assert item["sql"] == 'ANALYZE "public"."t2"'
    assert item["mode"] is None
    reaches(lambda: counters(conn, "public", "t2")[1], analyzes + 1, "analyze count of t2")

    _, t3 = counters(conn, "public", "t3")
    op_id = schedule(ops, f"/maintenance/{DB}/analyze", mode="full")  # mode ignored
    item = wait_op(ops, "analyze", op_id)
    assert item["status"] == "done", item
    assert item["sql"] == "ANALYZE"
    reaches(lambda: counters(conn, "public", "t3")[1], t3 + 1, "analyze count of t3")


def test_reindex(ops, pgconn):
    conn = pgconn(DB)
    pkey, v_idx = filenode(conn, "public", "t2_pkey"), filenode(conn, "public", "t2_v")

    item = wait_op(ops, "reindex", schedule(ops, index_path("t2_pkey") + "/reindex"))
    assert item["status"] == "done", item
    assert item["sql"] == 'REINDEX INDEX "public"."t2_pkey"'
    assert (item["schema"], item["table"], item["index"]) == ("public", None, "t2_pkey")
    assert filenode(conn, "public", "t2_pkey") != pkey
    assert filenode(conn, "public", "t2_v") == v_idx

    pkey = filenode(conn, "public", "t2_pkey")
    item = wait_op(ops, "reindex", schedule(ops, table_path("t2") + "/reindex"))
    assert item["status"] == "done", item
    assert item["sql"] == 'REINDEX TABLE "public"."t2"'
    assert filenode(conn, "public", "t2_pkey") != pkey
    assert filenode(conn, "public", "t2_v") != v_idx

    t3 = filenode(conn, "public", "t3_pkey")
    item = wait_op(ops, "reindex", schedule(ops, f"/maintenance/{DB}/reindex"), timeout=120)
    assert item["status"] == "done", item
    assert item["sql"] == f'REINDEX DATABASE "{DB}"'
    assert filenode(conn, "public", "t3_pkey") != t3


def test_odd_names(ops, pgconn):
    conn = pgconn(DB)
    vacuums, analyzes = counters(conn, ODD_SCHEMA, ODD_TABLE)
    path = table_path(ODD_TABLE, ODD_SCHEMA)
    item = wait_op(ops, "vacuum", schedule(ops, path + "/vacuum", mode="analyze"))
    assert item["status"] == "done", item
    assert item["sql"] == 'VACUUM (ANALYZE) "Mixed Case"."Odd ""Name"""'
    assert (item["schema"], item["table"]) == (ODD_SCHEMA, ODD_TABLE)
    reaches(lambda: counters(conn, ODD_SCHEMA, ODD_TABLE), (vacuums + 1, analyzes + 1), "counts")

    item = wait_op(ops, "analyze", schedule(ops, path + "/analyze"))
    assert item["status"] == "done", item

    node = filenode(conn, ODD_SCHEMA, ODD_INDEX)
    item = wait_op(ops, "reindex", schedule(ops, index_path(ODD_INDEX, ODD_SCHEMA) + "/reindex"))
    assert item["status"] == "done", item
    assert item["sql"] == 'REINDEX INDEX "Mixed Case"."Odd ""Name"" idx"'
    assert filenode(conn, ODD_SCHEMA, ODD_INDEX) != node

    future = at(60)
    op_id = schedule(ops, path + "/vacuum", datetime=future)
    listed = ops.get(path + "/vacuum/scheduled").json()
    assert [i["id"] for i in listed if i["status"] in PENDING] == [op_id]
    assert ops.delete(f"/maintenance/vacuum/{op_id}").json() == {"response": "ok"}


@pytest.mark.parametrize(
    "name",
    [
        "t1; DROP TABLE t5",
        't1"; DROP TABLE t5; --',
        "t1' OR '1'='1",
        "t5\\",
        "pg_class",
    ],
)
def test_injection_through_names(ops, pgconn, name):
    conn = pgconn(DB)
    for path in (
        table_path(name) + "/vacuum",
        table_path(name) + "/analyze",
        table_path(name) + "/reindex",
        index_path(name) + "/reindex",
        table_path("t5", schema=name) + "/vacuum",
        table_path(name) + "/vacuum/scheduled",
    ):
        method = ops.get if path.endswith("scheduled") else ops.post
        resp = method(path)
        assert resp.status_code == 404, (path, resp.text)
        assert "error" in resp.json()
    resp = ops.post(f"/maintenance/{url_part(name)}/vacuum", json={})
    assert resp.status_code == 404, resp.text
    assert exists(conn, "public", "t5")


# Scheduling, lists, duplicates


def test_future_operation_listed_then_runs(ops, pgconn):
    conn = pgconn(DB)
    vacuums, _ = counters(conn, "public", "t3")
    when = at(2)
    op_id = schedule(ops, table_path("t3") + "/vacuum", mode="freeze", datetime=when)
    listed = ops.get("/maintenance/vacuum/scheduled").json()
    mine = [i for i in listed if i["id"] == op_id]
    assert mine == [
        {
            "id": op_id,
            "dbname": DB,
            "schema": "public",
            "table": "t3",
            "index": None,
            "mode": "freeze",
            "datetime": when,
            "status": "todo",
            "progress": None,
            "options": {},
        }
    ]
    pending = op(ops, "vacuum", op_id)
    assert pending["sql"] == 'VACUUM (FREEZE) "public"."t3"'
    assert pending["started"] is None and pending["duration"] is None
    item = wait_op(ops, "vacuum", op_id)
    assert item["status"] == "done", item
    started = datetime.strptime(item["started"], "%Y-%m-%dT%H:%M:%SZ")
    assert started >= datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ")
    reaches(lambda: counters(conn, "public", "t3")[0], vacuums + 1, "vacuum count of t3")
    listed = ops.get("/maintenance/vacuum/scheduled").json()
    # no longer pending (it stays listed "done" for finished_visible seconds)
    assert [i["status"] for i in listed if i["id"] == op_id] in ([], ["done"])


def test_future_analyze_and_reindex_run(ops, pgconn):
    conn = pgconn(DB)
    _, analyzes = counters(conn, "public", "t3")
    node = filenode(conn, "public", "t3_v")
    when = at(2)
    analyze = schedule(ops, table_path("t3") + "/analyze", datetime=when)
    reindex = schedule(ops, index_path("t3_v") + "/reindex", datetime=when)
    for kind, op_id in (("analyze", analyze), ("reindex", reindex)):
        listed = ops.get(f"/maintenance/{DB}/{kind}/scheduled").json()
        assert [(i["status"], i["datetime"]) for i in listed if i["id"] == op_id] == [
            ("todo", when)
        ]
    for kind, op_id in (("analyze", analyze), ("reindex", reindex)):
        item = wait_op(ops, kind, op_id)
        assert item["status"] == "done", item
        assert item["started"] >= when
    reaches(lambda: counters(conn, "public", "t3")[1], analyzes + 1, "analyze count of t3")
    assert filenode(conn, "public", "t3_v") != node


def test_past_datetime_runs_now(ops):
    past = "2020-01-01T00:00:00Z"
    op_id = schedule(ops, table_path("t3") + "/analyze", datetime=past)
    item = wait_op(ops, "analyze", op_id)
    assert item["status"] == "done"
    assert item["datetime"] == past


def test_immediate_operation_starts(ops):
    """An operation without datetime is due at once: it starts (how soon is
    measured by bench/task_start_delay.py)."""
    op_id = schedule(ops, table_path("t4") + "/analyze")
    wait_op(ops, "analyze", op_id, statuses=("doing",) + FINISHED)
    assert wait_op(ops, "analyze", op_id)["status"] == "done"


def test_lists_and_filters(ops):
    when = at(300)
    later = at(400)
    ids = {
        "v_t1": schedule(ops, table_path("t1") + "/vacuum", mode="full", datetime=when),
        "v_t2": schedule(ops, table_path("t2") + "/vacuum", datetime=later),
        "v_db": schedule(ops, f"/maintenance/{DB}/vacuum", datetime=when),
        "v_db2": schedule(ops, table_path("t1", db=DB2) + "/vacuum", datetime=when),
        "a_t1": schedule(ops, table_path("t1") + "/analyze", datetime=when),
        "a_db2": schedule(ops, f"/maintenance/{DB2}/analyze", datetime=when),
        "r_idx": schedule(ops, index_path("t1_pkey") + "/reindex", datetime=when),
        "r_t2": schedule(ops, table_path("t2") + "/reindex", datetime=when),
        "r_db": schedule(ops, f"/maintenance/{DB}/reindex", datetime=later),
        "r_odd": schedule(ops, table_path(ODD_TABLE, ODD_SCHEMA) + "/reindex", datetime=when),
    }
    try:

        def listed(path):
            resp = ops.get(path)
            assert resp.status_code == 200, (path, resp.text)
            items = resp.json()
            for item in items:
                assert set(item) == LIST_FIELDS
                assert isinstance(item["datetime"], str)
            dts = [i["datetime"] for i in items]
            assert dts == sorted(dts), "not ordered by datetime"
            # operations of earlier tests may still show as finished for a few seconds
            return {i["id"] for i in items if i["status"] in PENDING}

        ours = set(ids.values())
        assert listed("/maintenance/vacuum/scheduled") & ours == {
            ids["v_t1"],
            ids["v_t2"],
            ids["v_db"],
            ids["v_db2"],
        }
        assert listed(f"/maintenance/{DB}/vacuum/scheduled") == {
            ids["v_t1"],
            ids["v_t2"],
            ids["v_db"],
        }
        assert listed(f"/maintenance/{DB2}/vacuum/scheduled") == {ids["v_db2"]}
        assert listed(table_path("t1") + "/vacuum/scheduled") == {ids["v_t1"]}
        assert listed(table_path("t1", db=DB2) + "/vacuum/scheduled") == {ids["v_db2"]}
        assert listed(table_path("t3") + "/vacuum/scheduled") == set()

        assert listed("/maintenance/analyze/scheduled") & ours == {ids["a_t1"], ids["a_db2"]}
        assert listed(f"/maintenance/{DB}/analyze/scheduled") == {ids["a_t1"]}
        assert listed(table_path("t1") + "/analyze/scheduled") == {ids["a_t1"]}
        assert listed(f"/maintenance/{DB2}/analyze/scheduled") == {ids["a_db2"]}

        all_reindex = {ids["r_idx"], ids["r_t2"], ids["r_db"], ids["r_odd"]}
        assert listed("/maintenance/reindex/scheduled") & ours == all_reindex
        assert listed(f"/maintenance/{DB}/reindex/scheduled") == all_reindex
        public = {ids["r_idx"], ids["r_t2"]}
        assert listed(f"/maintenance/{DB}/schema/public/reindex/scheduled") == public
        assert listed(table_path("t1") + "/reindex/scheduled") == public  # spec: alias
        assert (
            listed(f"/maintenance/{DB}/schema/public/t1_pkey/table/t1/reindex/scheduled") == public
        )
        odd = f"/maintenance/{DB}/schema/{url_part(ODD_SCHEMA)}/reindex/scheduled"
        assert listed(odd) == {ids["r_odd"]}

        items = {i["id"]: i for i in ops.get(f"/maintenance/{DB}/reindex/scheduled").json()}
        assert items[ids["r_idx"]] == {
            "id": ids["r_idx"],
            "dbname": DB,
            "schema": "public",
            "table": None,
            "index": "t1_pkey",
            "mode": None,
            "datetime": when,
            "status": "todo",
            "progress": None,
            "options": {},
        }
        assert items[ids["r_db"]]["schema"] is None and items[ids["r_db"]]["datetime"] == later

        # Scoped lists 404 on unknown objects.
        for path in (
            "/maintenance/nodb/vacuum/scheduled",
            table_path("nope") + "/vacuum/scheduled",
            table_path("t1", schema="nope") + "/analyze/scheduled",
            f"/maintenance/{DB}/schema/nope/reindex/scheduled",
            table_path("nope") + "/reindex/scheduled",
        ):
            assert ops.get(path).status_code == 404, path
    finally:
        for name, op_id in ids.items():
            kind = {"v": "vacuum", "a": "analyze", "r": "reindex"}[name[0]]
            assert ops.delete(f"/maintenance/{kind}/{op_id}").status_code == 200


def test_duplicates(ops):
    when = at(300)
    path = table_path("t1") + "/vacuum"
    first = schedule(ops, path, mode="full,analyze", datetime=when)
    try:
        for mode in ("full,analyze", "analyze,full"):
            resp = ops.post(path, json={"mode": mode, "datetime": when})
            assert resp.status_code == 409, resp.text
            body = resp.json()
            assert body["id"] == first and body["error"]
        other = schedule(ops, path, mode="full", datetime=when)
        assert other != first
        ops.delete(f"/maintenance/vacuum/{other}")
        # Once canceled, the same operation can be scheduled again (new id).
        ops.delete(f"/maintenance/vacuum/{first}")
        again = schedule(ops, path, mode="full,analyze", datetime=when)
        assert again != first
        ops.delete(f"/maintenance/vacuum/{again}")

        for kind, target, body in (
            ("reindex", index_path("t1_pkey"), {}),
            ("analyze", table_path("t1"), {}),
            ("vacuum", f"/maintenance/{DB}", {"mode": "freeze"}),
            ("analyze", f"/maintenance/{DB}", {}),
            ("reindex", f"/maintenance/{DB}", {}),
        ):
            first = schedule(ops, f"{target}/{kind}", datetime=when, **body)
            resp = ops.post(f"{target}/{kind}", json=dict(body, datetime=when))
            assert resp.status_code == 409, (target, kind, resp.text)
            assert resp.json()["id"] == first and resp.json()["error"]
            # Another time is another operation.
            other = schedule(ops, f"{target}/{kind}", datetime=at(310), **body)
            assert other != first
            for op_id in (first, other):
                assert ops.delete(f"/maintenance/{kind}/{op_id}").status_code == 200
    finally:
        for kind in ("vacuum", "analyze", "reindex"):
            cancel_all(ops, kind)


def test_spec_id_formula(ops):
    when = "2099-03-23T11:28:00Z"
    # Same formula as the spec's examples (other database name, so other value).
    import hashlib

    op_id = schedule(ops, table_path("t1") + "/vacuum", mode="full", datetime=when)
    try:
        expected = hashlib.md5(f"{DB}:public:t1:{when}:vacuum".encode()).hexdigest()[:8]
        assert op_id == expected
    finally:
        ops.delete(f"/maintenance/vacuum/{op_id}")


# Cancel


def test_cancel_before_start(ops, pgconn):
    conn = pgconn(DB)
    vacuums, _ = counters(conn, "public", "t4")
    when = at(2)
    op_id = schedule(ops, table_path("t4") + "/vacuum", datetime=when)
    resp = ops.delete(f"/maintenance/vacuum/{op_id}")
    assert resp.status_code == 200 and resp.json() == {"response": "ok"}
    assert op(ops, "vacuum", op_id)["status"] == "canceled"
    assert op_id not in pending_ids(ops, "vacuum")
    # A witness due at the same time: once it ran, the scheduler went past that time.
    witness = schedule(ops, table_path("t4") + "/analyze", datetime=when)
    assert wait_op(ops, "analyze", witness)["status"] == "done"
    assert op(ops, "vacuum", op_id)["status"] == "canceled"
    assert op(ops, "vacuum", op_id)["started"] is None
    assert counters(conn, "public", "t4")[0] == vacuums
    resp = ops.delete(f"/maintenance/vacuum/{op_id}")
    assert resp.status_code == 409, resp.text
    assert "error" in resp.json()


def test_cancel_running(ops, pgconn, locker):
    conn = pgconn(DB)
    lock = locker("locked", "SHARE")
    node = filenode(conn, "public", "locked")
    op_id = schedule(ops, table_path("locked") + "/vacuum", mode="full")
    wait_op(ops, "vacuum", op_id, statuses=("doing",))
    backends = wait_for(
        lambda: agent_backends(conn, 'VACUUM (FULL) "public"."locked"'),
        message="the VACUUM FULL backend",
    )
    (pid, state), *_ = backends
    assert state == "active"
    resp = ops.delete(f"/maintenance/vacuum/{op_id}")
    assert resp.status_code == 200, resp.text
    item = wait_op(ops, "vacuum", op_id)
    assert item["status"] == "canceled", item
    assert item["error"] is None and item["sql"] == 'VACUUM (FULL) "public"."locked"'

    def gone():
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)
            )
            return cur.fetchone() is None

    wait_for(gone, message="backend to stop")
    lock.rollback()
    assert filenode(conn, "public", "locked") == node  # never ran
    assert ops.get("/maintenance/vacuum/scheduled").status_code == 200
    resp = ops.delete(f"/maintenance/vacuum/{op_id}")
    assert resp.status_code == 409


def pending_ids(agent, kind: str) -> list[str]:
    """Ids listed in ``/scheduled`` as still to run (finished ones may be listed too)."""
    listed = agent.get(f"/maintenance/{kind}/scheduled").json()
    return [i["id"] for i in listed if i["status"] not in FINISHED]


def test_cancel_queued(ops, pgconn, locker):
    """An operation queued behind a conflicting running one is canceled over HTTP."""
    conn = pgconn(DB)
    lock = locker("locked", "SHARE")
    _, analyzes = counters(conn, "public", "locked")
    running = schedule(ops, table_path("locked") + "/vacuum", mode="full")
    wait_op(ops, "vacuum", running, statuses=("doing",))
    queued = schedule(ops, table_path("locked") + "/analyze")
    assert wait_op(ops, "analyze", queued, statuses=("queued",) + FINISHED)["status"] == "queued"
    resp = ops.delete(f"/maintenance/analyze/{queued}")
    assert resp.status_code == 200 and resp.json() == {"response": "ok"}
    item = op(ops, "analyze", queued)
    assert (item["status"], item["started"], item["error"]) == ("canceled", None, None)
    assert item["finished"] is not None
    assert queued not in pending_ids(ops, "analyze")
    lock.rollback()
    assert wait_op(ops, "vacuum", running)["status"] == "done"
    # A witness on the same target queued after it: once done, the canceled one
    # would have run before it (first in, first out among conflicting operations).
    witness = schedule(ops, table_path("locked") + "/analyze")
    assert wait_op(ops, "analyze", witness)["status"] == "done"
    assert op(ops, "analyze", queued)["status"] == "canceled"
    assert op(ops, "analyze", queued)["started"] is None
    reaches(lambda: counters(conn, "public", "locked")[1], analyzes + 1, "analyze count")
    assert ops.delete(f"/maintenance/analyze/{queued}").status_code == 409


@pytest.mark.parametrize(
    "kind, target, statement",
    [
        ("analyze", table_path("locked2"), 'ANALYZE "public"."locked2"'),
        ("reindex", index_path("locked2_v"), 'REINDEX INDEX "public"."locked2_v"'),
    ],
)
def test_cancel_running_analyze_reindex(ops, pgconn, locker, kind, target, statement):
    """ANALYZE and REINDEX waiting for a lock run, from PostgreSQL's view: listed
    as ``doing``, then canceled over HTTP (their backend stops, nothing changed)."""
    conn = pgconn(DB)
    lock = locker("locked2", "EXCLUSIVE")  # both wait for it
    _, analyzes = counters(conn, "public", "locked2")
    node = filenode(conn, "public", "locked2_v")
    op_id = schedule(ops, f"{target}/{kind}")
    wait_op(ops, kind, op_id, statuses=("doing",))
    (pid, _), *_ = wait_for(lambda: agent_backends(conn, statement), message=statement)
    for list_path in (
        f"/maintenance/{kind}/scheduled",
        f"/maintenance/{DB}/{kind}/scheduled",
        f"{table_path('locked2')}/{kind}/scheduled",
    ):
        mine = [i for i in ops.get(list_path).json() if i["id"] == op_id]
        assert len(mine) == 1 and mine[0]["status"] == "doing", (list_path, mine)
        assert set(mine[0]) == LIST_FIELDS
    resp = ops.delete(f"/maintenance/{kind}/{op_id}")
    assert resp.status_code == 200 and resp.json() == {"response": "ok"}
    item = wait_op(ops, kind, op_id)
    assert item["status"] == "canceled", item
    assert item["sql"] == statement

    def gone():
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)
            )
            return cur.fetchone() is None

    wait_for(gone, message="the canceled backend to stop")
    lock.rollback()
    assert counters(conn, "public", "locked2")[1] == analyzes
    assert filenode(conn, "public", "locked2_v") == node
    assert ops.delete(f"/maintenance/{kind}/{op_id}").status_code == 409


def test_cancel_errors(ops):
    assert ops.delete("/maintenance/vacuum/00000000").status_code == 404
    assert ops.delete("/maintenance/vacuum/zzzzzzzz").status_code == 404
    assert ops.delete("/maintenance/vacuum/0123").status_code == 404
    assert ops.get("/maintenance/analyze/00000000").status_code == 404
    op_id = schedule(ops, table_path("t1") + "/analyze", datetime=at(300))
    try:
        # An id of another kind is unknown here.
        assert ops.delete(f"/maintenance/vacuum/{op_id}").status_code == 404
        assert ops.delete(f"/maintenance/reindex/{op_id}").status_code == 404
        assert ops.get(f"/maintenance/vacuum/{op_id}").status_code == 404
        assert op(ops, "analyze", op_id)["status"] == "todo"
    finally:
        assert ops.delete(f"/maintenance/analyze/{op_id}").status_code == 200


# Conflicts between operations


def test_conflicting_operations_are_serialised(ops, pgconn, locker):
    conn = pgconn(DB)
    lock = locker("locked2", "SHARE")
    first = schedule(ops, table_path("locked2") + "/vacuum", mode="full")
    wait_op(ops, "vacuum", first, statuses=("doing",))
    second = schedule(ops, table_path("locked2") + "/analyze")
    third = schedule(ops, index_path("locked2_pkey") + "/reindex")
    free = schedule(ops, table_path("t4") + "/analyze")
    assert wait_op(ops, "analyze", free)["status"] == "done"
    assert wait_op(ops, "analyze", second, statuses=("queued",) + FINISHED)["status"] == "queued"
    assert wait_op(ops, "reindex", third, statuses=("queued",) + FINISHED)["status"] == "queued"
    assert op(ops, "vacuum", first)["status"] == "doing"
    listed = ops.get(table_path("locked2") + "/analyze/scheduled").json()
    # (the canceled operations of test_cancel_queued may still be listed, finished)
    assert [(i["id"], i["status"]) for i in listed if i["status"] not in FINISHED] == [
        (second, "queued")
    ]
    lock.rollback()
    a = wait_op(ops, "vacuum", first)
    b = wait_op(ops, "analyze", second)
    c = wait_op(ops, "reindex", third)
    assert (a["status"], b["status"], c["status"]) == ("done", "done", "done")
    assert b["started"] >= a["finished"] and c["started"] >= a["finished"]
    assert exists(conn, "public", "locked2")


# Failures


def test_failing_operation(ops, pgconn):
    conn = pgconn(DB)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE doomed (id int)")
    op_id = schedule(ops, table_path("doomed") + "/vacuum", mode="analyze", datetime=at(1.5))
    with conn.cursor() as cur:
        cur.execute("DROP TABLE doomed")
    item = wait_op(ops, "vacuum", op_id)
    assert item["status"] == "failed", item
    assert "does not exist" in item["error"], item
    assert item["sql"] == 'VACUUM (ANALYZE) "public"."doomed"'
    assert item["finished"] is not None
    history = ops.get("/maintenance/vacuum/history", params={"status": "failed"}).json()
    assert op_id in [i["id"] for i in history]
    # The agent is fine.
    assert ops.get("/maintenance/vacuum/scheduled").status_code == 200


# Auth


def test_auth(ops):
    anon, url = ops.anon, ops.url
    path = table_path("t1")
    for list_path in (
        "/maintenance/vacuum/scheduled",
        f"/maintenance/{DB}/analyze/scheduled",
        path + "/vacuum/scheduled",
        "/maintenance/reindex/history",
    ):
        assert anon.get(url + list_path, params={"key": ops.key}).status_code == 200
        resp = anon.get(url + list_path, headers={"X-TemBoard-Agent-Key": ops.key})
        assert resp.status_code == 200
        assert anon.get(url + list_path).status_code in (401, 406)
        assert anon.get(url + list_path, params={"key": "wrong"}).status_code in (401, 406)

    for method, op_path in (
        ("POST", path + "/vacuum"),
        ("POST", f"/maintenance/{DB}/analyze"),
        ("POST", index_path("t1_pkey") + "/reindex"),
        ("DELETE", "/maintenance/vacuum/00000000"),
    ):
        for kw in (
            {"params": {"key": ops.key}},
            {"headers": {"X-TemBoard-Agent-Key": ops.key}},
            {},
            {"headers": {"X-Session": "0" * 64}},
        ):
            resp = anon.request(method, url + op_path, json={}, **kw)
            assert resp.status_code in (401, 406), (method, op_path, kw, resp.text)
    assert ops.get("/maintenance/vacuum/scheduled").status_code == 200


def test_ui_style_request(ops):
    """temboard UI 7.x: key + session everywhere, JSON labelled form-urlencoded."""
    headers = {
        "X-TemBoard-Agent-Key": ops.key,
        "X-Session": ops.session_id,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    when = at(300)
    resp = ops.anon.post(
        ops.url + table_path("t2") + "/vacuum",
        params={"key": ops.key},
        headers=headers,
        data=json.dumps({"mode": "full", "datetime": when}),
    )
    assert resp.status_code == 200, resp.text
    op_id = resp.json()["id"]
    resp = ops.anon.get(
        ops.url + table_path("t2") + "/vacuum/scheduled", params={"key": ops.key}, headers=headers
    )
    pending = [i for i in resp.json() if i["status"] in PENDING]
    assert [(i["id"], i["status"], i["datetime"], i["mode"]) for i in pending] == [
        (op_id, "todo", when, "full")
    ]
    resp = ops.anon.delete(
        ops.url + f"/maintenance/vacuum/{op_id}", params={"key": ops.key}, headers=headers
    )
    assert resp.status_code == 200 and resp.json() == {"response": "ok"}


# Input validation


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"mode": "fast"}, 406, "Parameter 'mode' is malformed."),
        ({"mode": "full,full"}, 406, "Parameter 'mode' is malformed."),
        ({"mode": 3}, 406, "Parameter 'mode' is malformed."),
        ({"datetime": "2030-02-30T00:00:00Z"}, 406, "Parameter 'datetime' is malformed."),
        ({"datetime": "2030-01-01 00:00:00"}, 406, "Parameter 'datetime' is malformed."),
        ({"datetime": 1893456000}, 406, "Parameter 'datetime' is malformed."),
        ({"datetime": None, "mode": None, "other": 1}, 200, None),
    ],
)
def test_vacuum_input(ops, body, status, message):
    resp = ops.post(table_path("t5") + "/vacuum", json=body)
    assert resp.status_code == status, resp.text
    if message:
        assert resp.json() == {"error": message}
    else:
        wait_op(ops, "vacuum", resp.json()["id"])


def test_bad_bodies(ops):
    path = ops.url + table_path("t5") + "/analyze"
    for data in ("{not json", '["x"]', '"full"', "3", "null"):
        resp = ops.http.post(path, data=data, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, (data, resp.text)
        assert "error" in resp.json()
    resp = ops.post(f"/maintenance/{DB}/reindex", json={"datetime": "tomorrow"})
    assert resp.status_code == 406
    assert resp.json() == {"error": "Parameter 'datetime' is malformed."}


def test_unknown_targets(ops):
    cases = {
        "/maintenance/no_such_db/vacuum": "no_such_db",
        "/maintenance/no_such_db/analyze": "no_such_db",
        "/maintenance/no_such_db/reindex": "no_such_db",
        table_path("t1", db="no_such_db") + "/vacuum": "no_such_db",
        table_path("t1", schema="no_such_schema") + "/vacuum": "no_such_schema",
        table_path("no_such_table") + "/analyze": "no_such_table",
        table_path("no_such_table") + "/reindex": "no_such_table",
        table_path("t1_pkey") + "/vacuum": "t1_pkey",  # an index is not a table
        index_path("no_such_index") + "/reindex": "no_such_index",
        index_path("t1") + "/reindex": "t1",  # a table is not an index
        index_path("t1_pkey", schema="no_such_schema") + "/reindex": "no_such_schema",
    }
    for path, name in cases.items():
        resp = ops.post(path, json={})
        assert resp.status_code == 404, (path, resp.text)
        assert name in resp.json()["error"], (path, resp.text)


# History


def test_history(ops):
    first = wait_op(ops, "analyze", schedule(ops, table_path("t5", db=DB2) + "/analyze"))
    second = wait_op(ops, "analyze", schedule(ops, f"/maintenance/{DB2}/analyze"))
    pending = schedule(ops, table_path("t5", db=DB2) + "/analyze", datetime=at(300))
    try:
        items = ops.get("/maintenance/analyze/history", params={"db": DB2}).json()
        ids = [i["id"] for i in items]
        assert ids[:3] == [pending, second["id"], first["id"]]  # newest first
        for item in items:
            assert set(item) == HISTORY_FIELDS
            assert item["dbname"] == DB2
        done = ops.get("/maintenance/analyze/history", params={"db": DB2, "status": "done"})
        assert pending not in [i["id"] for i in done.json()]
        todo = ops.get("/maintenance/analyze/history", params={"status": "todo,queued"}).json()
        assert pending in [i["id"] for i in todo]
        page = ops.get("/maintenance/analyze/history", params={"db": DB2, "limit": 1, "offset": 1})
        assert [i["id"] for i in page.json()] == [second["id"]]
        assert ops.get("/maintenance/analyze/history", params={"db": "none"}).json() == []
        vacuum_ids = [i["id"] for i in ops.get("/maintenance/vacuum/history").json()]
        assert first["id"] not in vacuum_ids
        assert len(ops.get("/maintenance/vacuum/history").json()) <= 100
        for params, name in (
            ({"limit": "0"}, "limit"),
            ({"limit": "1001"}, "limit"),
            ({"limit": "x"}, "limit"),
            ({"limit": "-1"}, "limit"),
            ({"offset": "-1"}, "offset"),
            ({"offset": "1.5"}, "offset"),
            ({"status": "finished"}, "status"),
        ):
            resp = ops.get("/maintenance/analyze/history", params=params)
            assert resp.status_code == 406, (params, resp.text)
            assert resp.json() == {"error": f"Parameter '{name}' is malformed."}
        assert ops.get("/maintenance/analyze/history", params={"limit": "1000"}).ok
    finally:
        ops.delete(f"/maintenance/analyze/{pending}")
    item = op(ops, "analyze", second["id"])
    assert item["sql"] == "ANALYZE" and item["status"] == "done"
    assert item["created"] <= item["started"] <= item["finished"]
    assert item["duration"] >= 0


def test_api_responsive_during_long_vacuum(ops, pgconn, locker):
    lock = locker("t5", "SHARE")
    op_id = schedule(ops, table_path("t5") + "/vacuum", mode="full")
    wait_op(ops, "vacuum", op_id, statuses=("doing",))
    # Answered while the operation runs (latency: bench/bench_ops.py).
    for _ in range(20):
        listed = ops.get("/maintenance/vacuum/scheduled").json()
        assert (op_id, "doing") in [(i["id"], i["status"]) for i in listed]
        assert ops.get(f"/maintenance/vacuum/{op_id}").json()["status"] == "doing"
        assert ops.get(f"/maintenance/{DB}/schema/public").status_code == 200
    lock.rollback()
    assert wait_op(ops, "vacuum", op_id)["status"] == "done"


# Restart and crash recovery (own agent process and task file)


@pytest.fixture
def own_agent(pg, workdir, request):
    proc = AgentProcess(workdir / f"agent-{request.node.name[:40]}", pg)
    proc.start()
    proc.login()
    yield proc
    proc.stop()


def _task_rows(proc) -> list[tuple]:
    conn = sqlite3.connect(proc.home / "tasks.sqlite")
    try:
        return conn.execute("SELECT id, status FROM tasks").fetchall()
    finally:
        conn.close()


def test_kill9_then_scheduled_operation_runs_once(ops, own_agent, pgconn):
    conn = pgconn(DB2)
    vacuums, _ = counters(conn, "public", "t2")
    when = at(3)
    op_id = schedule(own_agent, table_path("t2", db=DB2) + "/vacuum", datetime=when)
    own_agent.kill9()
    own_agent.start()
    own_agent.login()
    assert op(own_agent, "vacuum", op_id)["status"] in ("todo", "queued", "doing", "done")
    item = wait_op(own_agent, "vacuum", op_id)
    assert item["status"] == "done", item
    reaches(lambda: counters(conn, "public", "t2")[0], vacuums + 1, "vacuum count of t2")
    assert [row for row in _task_rows(own_agent) if row[0] == op_id] == [(op_id, "done")]
    # Restart again: nothing runs twice. A witness due now runs after any
    # leftover of the first one would have (same target: serialised).
    own_agent.restart()
    own_agent.login()
    witness = schedule(own_agent, table_path("t2", db=DB2) + "/analyze")
    assert wait_op(own_agent, "analyze", witness)["status"] == "done"
    assert counters(conn, "public", "t2")[0] == vacuums + 1
    assert op(own_agent, "vacuum", op_id)["status"] == "done"


def test_kill9_while_running_aborts(ops, own_agent, pgconn, locker):
    conn = pgconn(DB2)
    lock = locker("locked", "SHARE", db=DB2)
    node = filenode(conn, "public", "locked")
    op_id = schedule(own_agent, table_path("locked", db=DB2) + "/vacuum", mode="full")
    wait_op(own_agent, "vacuum", op_id, statuses=("doing",))
    (pid, _), *_ = wait_for(
        lambda: agent_backends(conn, 'VACUUM (FULL) "public"."locked"'), message="backend"
    )
    future = schedule(own_agent, table_path("t3", db=DB2) + "/analyze", datetime=at(300))
    own_agent.kill9()
    own_agent.start()
    own_agent.login()
    item = op(own_agent, "vacuum", op_id)
    assert item["status"] == "aborted", item
    assert item["error"]
    assert op(own_agent, "analyze", future)["status"] == "todo"
    assert own_agent.delete(f"/maintenance/analyze/{future}").status_code == 200
    assert own_agent.delete(f"/maintenance/vacuum/{op_id}").status_code == 409

    # The restarted agent cancels the orphan backend still waiting for the lock.
    def orphan_gone():
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)
            )
            return cur.fetchone() is None

    wait_for(orphan_gone, message="orphan backend to be canceled")
    lock.rollback()
    assert filenode(conn, "public", "locked") == node  # the aborted VACUUM FULL never ran
    listed = own_agent.get("/maintenance/vacuum/scheduled").json()
    assert [i for i in listed if i["status"] in PENDING] == []


def test_stop_while_running(ops, own_agent, pgconn, locker):
    """A clean stop cancels a running operation (its backend stops) and marks it aborted."""
    conn = pgconn(DB2)
    locker("locked2", "SHARE", db=DB2)
    op_id = schedule(own_agent, table_path("locked2", db=DB2) + "/vacuum", mode="full")
    wait_op(own_agent, "vacuum", op_id, statuses=("doing",))
    pids = wait_for(
        lambda: agent_backends(conn, 'VACUUM (FULL) "public"."locked2"'), message="backend"
    )
    own_agent.stop()
    own_agent.start()
    own_agent.login()
    item = op(own_agent, "vacuum", op_id)
    assert item["status"] == "aborted", item
    assert item["error"] == "interrupted: agent shutdown"
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pids[0][0],))
        assert cur.fetchone() is None
