"""Live progress of running operations and GET /maintenance/activity, on a real cluster.

Operations are made to last with cost-based vacuum delay on a dedicated
database (``ALTER DATABASE ... SET vacuum_cost_delay``), or by a lock another
session holds. Every wait polls for a state with a deadline that only catches
a hang.
"""

from __future__ import annotations

import threading

import psycopg2
import pytest

from devsupport.sql import run_sql

from .helpers import HANG, drop_database, wait_for

DB = "progress_db"
DEADLINE = HANG


@pytest.fixture(scope="module")
def db(pg):
    run_sql(pg, f"DROP DATABASE IF EXISTS {DB}")
    run_sql(pg, f"CREATE DATABASE {DB}")
    # Slow every VACUUM of this database down: 100 ms sleep per page or so.
    run_sql(pg, f"ALTER DATABASE {DB} SET vacuum_cost_delay = 100")
    run_sql(pg, f"ALTER DATABASE {DB} SET vacuum_cost_limit = 1")
    for table in ("slow", "locked", "outside", "auto"):
        run_sql(
            pg,
            f"CREATE TABLE {table} (id int, filler text) WITH (autovacuum_enabled = false);"
            f" INSERT INTO {table} SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g;"
            f" DELETE FROM {table} WHERE id % 2 = 0",
            dbname=DB,
        )
    yield DB
    drop_database(pg, DB)  # DROP DATABASE ... WITH (FORCE) needs 13


def item_of(agent, kind: str, op_id: str) -> dict:
    resp = agent.get(f"/maintenance/{kind}/{op_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def cancel_and_wait(agent, kind: str, op_id: str) -> dict:
    agent.delete(f"/maintenance/{kind}/{op_id}")
    return wait_for(
        lambda: (
            (i := item_of(agent, kind, op_id))["status"] not in ("todo", "queued", "doing") and i
        ),
        message=f"end of {op_id}",
    )


def test_running_vacuum_reports_moving_counters(agent, db):
    path = f"/maintenance/{db}/schema/public/table/slow/vacuum"
    resp = agent.post(path, json={})
    assert resp.status_code == 200, resp.text
    op_id = resp.json()["id"]
    try:

        def scanning():
            item = item_of(agent, "vacuum", op_id)
            progress = item["progress"]
            if progress and progress["phase"] == "scanning heap" and progress["done"]:
                return item
            return None

        first = wait_for(scanning, message="scanning heap with counters")["progress"]
        assert first["relation"] == "public.slow"
        assert first["unit"] == "blocks"
        assert first["total"] > 0
        assert 0 <= first["percent"] <= 100
        assert first["relations_done"] is None and first["relations_total"] is None
        assert first["waiting_for_lock"] is False and first["blocked_by"] == []
        assert first["elapsed"] >= 0

        # The counter moves while the operation runs.
        wait_for(
            lambda: (
                (p := item_of(agent, "vacuum", op_id)["progress"]) is not None
                and p["phase"] == "scanning heap"
                and p["done"] > first["done"]
            ),
            message="heap_blks_scanned to grow",
        )

        # Every list that shows the operation carries the same object.
        for url in (
            "/maintenance/vacuum/scheduled",
            f"/maintenance/{db}/vacuum/scheduled",
            f"/maintenance/{db}/schema/public/table/slow/vacuum/scheduled",
        ):
            items = [i for i in agent.get(url).json() if i["id"] == op_id]
            assert len(items) == 1, url
            assert items[0]["status"] == "doing"
            assert items[0]["progress"]["relation"] == "public.slow"
        history = agent.get("/maintenance/vacuum/history").json()
        assert [i["progress"] for i in history if i["id"] == op_id][0] is not None
    finally:
        final = cancel_and_wait(agent, "vacuum", op_id)
    assert final["status"] == "canceled"
    assert final["progress"] is None


def test_pending_operations_have_null_progress(agent, db):
    resp = agent.post(
        f"/maintenance/{db}/schema/public/table/slow/analyze",
        json={"datetime": "2999-01-01T00:00:00Z"},
    )
    op_id = resp.json()["id"]
    try:
        items = agent.get(f"/maintenance/{db}/analyze/scheduled").json()
        assert [i["progress"] for i in items if i["id"] == op_id] == [None]
        assert item_of(agent, "analyze", op_id)["progress"] is None
    finally:
        agent.delete(f"/maintenance/analyze/{op_id}")


def test_vacuum_full_waiting_for_a_lock_names_the_blocker(agent, db, pg):
    holder = psycopg2.connect(pg.dsn(db))
    try:
        with holder.cursor() as cur:
            cur.execute("BEGIN; LOCK TABLE locked IN ACCESS SHARE MODE")
            cur.execute("SELECT pg_backend_pid()")
            holder_pid = cur.fetchone()[0]
        resp = agent.post(
            f"/maintenance/{db}/schema/public/table/locked/vacuum", json={"mode": "full"}
        )
        op_id = resp.json()["id"]
        try:
            progress = wait_for(
                lambda: (
                    (p := item_of(agent, "vacuum", op_id)["progress"]) is not None
                    and p["waiting_for_lock"]
                    and p
                ),
                message="the VACUUM FULL to wait for its lock",
            )
            assert progress["blocked_by"] == [holder_pid]
            assert progress["relation"] == "public.locked"
        finally:
            cancel_and_wait(agent, "vacuum", op_id)
    finally:
        holder.close()


def activity(agent) -> list[dict]:
    resp = agent.anon.get(agent.url + "/maintenance/activity", params={"key": agent.key})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_activity_needs_credentials(agent):
    assert agent.anon.get(agent.url + "/maintenance/activity").status_code in (401, 406)


def test_activity_lists_outside_vacuum_autovacuum_and_our_operation(agent, db, pg):
    # A VACUUM started from another session, outside the agent.
    outside = psycopg2.connect(pg.dsn(db))
    outside.autocommit = True
    with outside.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        outside_pid = cur.fetchone()[0]

    def run_outside():
        try:
            with outside.cursor() as cur:
                cur.execute("VACUUM outside")
        except psycopg2.Error:
            pass  # canceled at the end of the test

    thread = threading.Thread(target=run_outside, daemon=True)
    thread.start()

    # An autovacuum worker on a table with thresholds at zero, slowed down.
    run_sql(
        pg,
        "ALTER TABLE auto SET (autovacuum_enabled = true, autovacuum_vacuum_threshold = 0,"
        " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100,"
        " autovacuum_vacuum_cost_limit = 1)",
        dbname=db,
    )
    run_sql(pg, "ALTER SYSTEM SET autovacuum_naptime = 1")
    run_sql(pg, "SELECT pg_reload_conf()")

    # One of the agent's own operations.
    op_id = agent.post(f"/maintenance/{db}/schema/public/table/slow/vacuum", json={}).json()["id"]
    try:

        def seen():
            items = activity(agent)
            by_pid = {i["pid"]: i for i in items}
            mine = [i for i in items if i["operation"] and i["operation"]["id"] == op_id]
            autos = [i for i in items if i["autovacuum"] and i["relation"] == "public.auto"]
            if outside_pid in by_pid and mine and autos:
                return by_pid[outside_pid], mine[0], autos[0]
            return None

        outside_item, mine, auto = wait_for(seen, message="the three commands in activity")
        assert outside_item["operation"] is None
        assert outside_item["command"] == "VACUUM"
        assert outside_item["datname"] == db
        assert outside_item["relation"] == "public.outside"
        assert outside_item["autovacuum"] is False
        assert outside_item["duration"] >= 0
        assert outside_item["started"].endswith("Z")

        assert mine["operation"] == {"id": op_id, "kind": "vacuum"}
        assert mine["relation"] == "public.slow"

        assert auto["operation"] is None
        assert auto["wraparound"] is False
        assert auto["command"].startswith("VACUUM")
        assert auto["datname"] == db
    finally:
        run_sql(pg, "ALTER SYSTEM RESET autovacuum_naptime")
        run_sql(pg, "SELECT pg_reload_conf()")
        run_sql(pg, "ALTER TABLE auto SET (autovacuum_enabled = false)", dbname=db)
        run_sql(
            pg,
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND (pid = %s OR backend_type = 'autovacuum worker')",
            (db, outside_pid),
        )
        thread.join(DEADLINE)
        outside.close()
        cancel_and_wait(agent, "vacuum", op_id)


def test_database_wide_vacuum_counts_its_relations(agent, db):
    op_id = agent.post(f"/maintenance/{db}/vacuum", json={}).json()["id"]
    try:
        progress = wait_for(
            lambda: (
                (p := item_of(agent, "vacuum", op_id)["progress"]) is not None
                and p["relations_total"]
                and p
            ),
            message="a relation count",
        )
        # the four test tables and the catalogs, as PostgreSQL's own VACUUM visits them
        assert progress["relations_total"] >= 4
        assert 0 <= progress["relations_done"] <= progress["relations_total"]
    finally:
        cancel_and_wait(agent, "vacuum", op_id)
