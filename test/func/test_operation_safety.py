"""Operations that never hurt production: lock_timeout and retries, REINDEX CONCURRENTLY,
VACUUM options, time limits. Real PostgreSQL, real agents.

No wall-clock assertions: tests assert states (a reader got through, the operation is
still doing, the writer kept inserting while the REINDEX ran) and poll for them with
generous deadlines that only catch a hang.
"""

from __future__ import annotations

import threading

import psycopg2
import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import create_database

from .test_maintenance_ops import (
    filenode,
    index_path,
    op,
    q,
    schedule,
    table_path,
    wait_for,
    wait_op,
)

DB = "safety_db"
BUSY_DB = "safety_busy_db"


SETUP = """
CREATE TABLE held (id int PRIMARY KEY, v text);
INSERT INTO held SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
CREATE TABLE opts (id int PRIMARY KEY, v text);
INSERT INTO opts SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
DELETE FROM opts WHERE id % 2 = 0;
CREATE TABLE written (id bigserial PRIMARY KEY, v text);
CREATE INDEX written_v ON written (v);
INSERT INTO written (v) SELECT md5(g::text) FROM generate_series(1, 20000) g;
CREATE TABLE booking (during int4range, EXCLUDE USING gist (during WITH &&));
CREATE TABLE slow (id int PRIMARY KEY);
"""
BUSY_SETUP = """
CREATE TABLE a_free (id int PRIMARY KEY);
INSERT INTO a_free SELECT generate_series(1, 100);
CREATE TABLE busy (id int PRIMARY KEY);
CREATE TABLE z_free (id int PRIMARY KEY);
INSERT INTO z_free SELECT generate_series(1, 100);
CREATE TABLE booking (during int4range, EXCLUDE USING gist (during WITH &&));
CREATE TABLE plain (id int PRIMARY KEY);
"""


@pytest.fixture(scope="module")
def dbs(pg):
    create_database(pg, DB, SETUP, replace=True)
    create_database(pg, BUSY_DB, BUSY_SETUP, replace=True)


def _start(workdir, pg, name: str, extra: str) -> AgentProcess:
    proc = AgentProcess(workdir / name, pg, extra_conf=extra, log_level="INFO")
    proc.start()
    proc.login()
    return proc


@pytest.fixture(scope="module")
def fast(pg, workdir, dbs):
    """An agent that gives up a lock after 300 ms and waits for locks 120 s at most."""
    proc = _start(
        workdir,
        pg,
        "agent-safety-fast",
        "[maintenance]\noperation_lock_timeout = 300\noperation_lock_wait = 120\n",
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def short(pg, workdir, dbs):
    """An agent whose operations wait for locks 3 s at most."""
    proc = _start(
        workdir,
        pg,
        "agent-safety-short",
        "[maintenance]\noperation_lock_timeout = 200\noperation_lock_wait = 3\n",
    )
    yield proc
    proc.stop()


@pytest.fixture
def session(pg):
    """``session(db)``: a non-autocommit connection rolled back at the end of the test."""
    conns = []

    def connect(db: str = DB):
        conn = psycopg2.connect(pg.dsn(db))
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        try:
            conn.rollback()
        finally:
            conn.close()


def backend_of(pgconn, db: str, prefix: str) -> tuple | None:
    with pgconn(db).cursor() as cur:
        cur.execute(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'temboard-agent' AND query LIKE %s",
            (db, prefix + "%"),
        )
        return cur.fetchone()


# 1. Lock discipline


def test_vacuum_full_never_queues_readers(fast, session, pg):
    holder = session()
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM held")  # ACCESS SHARE until commit
    node = filenode(psycopg2.connect(pg.dsn(DB)), "public", "held")

    op_id = schedule(fast, table_path("held", db=DB) + "/vacuum", mode="full")
    item = wait_for(
        lambda: (
            (i := op(fast, "vacuum", op_id))["status"] == "doing"
            and (i["attempts"] or 0) >= 2
            and i
        ),
        timeout=60,
        message="a second attempt",
    )
    assert item["sql"] == 'VACUUM (FULL) "public"."held"'

    # A third session reads the table: it gets through (today it would queue
    # forever behind the waiting ACCESS EXCLUSIVE request).
    reader = session()
    outcome = {}

    def read():
        try:
            with reader.cursor() as cur:
                cur.execute("SET statement_timeout = '120s'")
                cur.execute("SELECT count(*) FROM held")
                outcome["rows"] = cur.fetchone()[0]
            reader.rollback()
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    for _ in range(3):  # several reads, landing in attempts and in pauses
        thread = threading.Thread(target=read)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the reader is queued behind the VACUUM FULL"
        assert outcome == {"rows": 2000}, outcome
        outcome.clear()
    item = op(fast, "vacuum", op_id)
    assert item["status"] == "doing" and item["attempts"] >= 1, item

    holder.commit()
    item = wait_op(fast, "vacuum", op_id, timeout=120)
    assert item["status"] == "done", item
    assert item["attempts"] > 1 and item["error"] is None
    assert filenode(psycopg2.connect(pg.dsn(DB)), "public", "held") != node


def test_lock_wait_expires_naming_relation_and_holders(short, session):
    holder = session()
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM held")
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    op_id = schedule(short, table_path("held", db=DB) + "/vacuum", mode="full")
    item = wait_op(short, "vacuum", op_id, timeout=60)
    assert item["status"] == "failed", item
    assert item["attempts"] > 1
    assert '"public"."held"' in item["error"] and f"pid {pid}" in item["error"], item
    assert item["error"].startswith("Lock not available within 3 s"), item


def test_database_vacuum_skips_busy_relation(short, session, pgconn):
    holder = session(BUSY_DB)
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE busy IN SHARE UPDATE EXCLUSIVE MODE")
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]

    def vacuums(table):
        with pgconn(BUSY_DB).cursor() as cur:
            cur.execute("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = %s", (table,))
            return cur.fetchone()[0]

    before = {t: vacuums(t) for t in ("a_free", "z_free")}
    op_id = schedule(short, f"/maintenance/{BUSY_DB}/vacuum")
    item = wait_op(short, "vacuum", op_id, timeout=120)
    assert item["status"] == "failed", item
    assert item["sql"] == "VACUUM"
    assert item["error"].startswith("Skipped 1 relation(s) whose lock never came"), item
    assert f'"public"."busy" (pid {pid})' in item["error"], item
    # The relations before and after the busy one were processed.
    for table, count in before.items():
        wait_for(lambda t=table, c=count: vacuums(t) > c, message=f"{table} vacuumed")


def test_cancel_while_retrying(fast, session, pgconn):
    holder = session()
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM held")
    op_id = schedule(fast, table_path("held", db=DB) + "/vacuum", mode="full")
    wait_for(
        lambda: (op(fast, "vacuum", op_id)["attempts"] or 0) >= 2,
        timeout=60,
        message="a retry",
    )
    assert fast.delete(f"/maintenance/vacuum/{op_id}").status_code == 200
    item = wait_op(fast, "vacuum", op_id, timeout=60)
    assert item["status"] == "canceled", item
    wait_for(
        lambda: (
            backend_of(pgconn, DB, 'VACUUM (FULL) "public"."held"') is None
            or backend_of(pgconn, DB, 'VACUUM (FULL) "public"."held"')[1] != "active"
        ),
        message="no VACUUM FULL left running",
    )
    holder.rollback()
    assert op(fast, "vacuum", op_id)["status"] == "canceled"


# 2. REINDEX CONCURRENTLY


def test_reindex_concurrently_lets_writes_go_on(agent, dbs, session, pgconn):
    conn = pgconn(DB)
    node = filenode(conn, "public", "written_v")
    # An old snapshot makes the rebuild wait in its last phase: it is then
    # observably running while the writer works.
    old = session()
    old.set_session(isolation_level="REPEATABLE READ")
    with old.cursor() as cur:
        cur.execute("SELECT count(*) FROM slow")

    writer = pgconn(DB)
    inserted = []
    errors = []
    stop = threading.Event()

    def write():
        try:
            with writer.cursor() as cur:
                cur.execute("SET lock_timeout = '60s'")
                while not stop.is_set():
                    cur.execute("INSERT INTO written (v) VALUES ('w') RETURNING id")
                    inserted.append(cur.fetchone()[0])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        op_id = schedule(agent, table_path("written", db=DB) + "/reindex", concurrently=True)
        statement = 'REINDEX TABLE CONCURRENTLY "public"."written"'
        wait_for(
            lambda: (b := backend_of(pgconn, DB, statement)) and b[1] == "active",
            timeout=60,
            message="the REINDEX running",
        )
        count = len(inserted)
        wait_for(lambda: len(inserted) >= count + 50, timeout=60, message="inserts go on")
        backend = backend_of(pgconn, DB, statement)
        assert backend is not None and backend[1] == "active"  # still rebuilding meanwhile
        assert op(agent, "reindex", op_id)["status"] == "doing"
        old.rollback()
        item = wait_op(agent, "reindex", op_id, timeout=120)
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    assert item["status"] == "done", item
    assert item["sql"] == statement
    assert item["options"] == {"concurrently": True}
    assert filenode(conn, "public", "written_v") != node


def test_reindex_concurrently_timeout_names_invalid_leftover(agent, dbs, session, pgconn):
    # An old snapshot holds the rebuild in its last phase until the time limit.
    old = session()
    old.set_session(isolation_level="REPEATABLE READ")
    with old.cursor() as cur:
        cur.execute("SELECT count(*) FROM slow")
    op_id = schedule(agent, table_path("written", db=DB) + "/reindex", concurrently=True, timeout=3)
    item = wait_op(agent, "reindex", op_id, timeout=120)
    old.rollback()
    assert item["status"] == "failed", item
    assert item["error"].startswith("timed out after 3 s; invalid indexes left by the"), item
    with pgconn(DB).cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE NOT i.indisvalid AND c.relname LIKE 'written%ccnew%'"
        )
        leftovers = [row[0] for row in cur.fetchall()]
        assert leftovers and all(f'"public"."{name}"' in item["error"] for name in leftovers)
        for name in leftovers:
            cur.execute(f"DROP INDEX CONCURRENTLY {q(name)}")


@pytest.mark.parametrize(
    "path, name",
    [
        (
            index_path("pg_class_oid_index", "pg_catalog", db=DB),
            '"pg_catalog"."pg_class_oid_index"',
        ),
        (table_path("pg_class", "pg_catalog", db=DB), '"pg_catalog"."pg_class_oid_index"'),
        (table_path("booking", db=DB), '"public"."booking_during_excl"'),
        (index_path("booking_during_excl", db=DB), '"public"."booking_during_excl"'),
    ],
)
def test_reindex_concurrently_refused_at_scheduling(agent, dbs, path, name):
    resp = agent.post(path + "/reindex", json={"concurrently": True})
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"].startswith("Cannot reindex concurrently: ")
    assert name in resp.json()["error"]
    # Without concurrently it is accepted.
    resp = agent.post(
        path + "/reindex", json={"concurrently": False, "datetime": "2099-01-01T00:00:00Z"}
    )
    assert resp.status_code == 200, resp.text
    assert agent.delete(f"/maintenance/reindex/{resp.json()['id']}").status_code == 200


def test_database_reindex_concurrently_names_skipped_indexes(agent, dbs, pgconn):
    conn = pgconn(BUSY_DB)
    node = filenode(conn, "public", "plain_pkey")
    op_id = schedule(agent, f"/maintenance/{BUSY_DB}/reindex", concurrently=True)
    item = wait_op(agent, "reindex", op_id, timeout=120)
    assert item["status"] == "failed", item
    assert item["sql"] == f'REINDEX DATABASE CONCURRENTLY "{BUSY_DB}"'
    assert '"public"."booking_during_excl" (exclusion constraint)' in item["error"]
    assert filenode(conn, "public", "plain_pkey") != node  # the rest was rebuilt


# 3. VACUUM options


def server_version(pgconn) -> int:
    return pgconn().server_version


def test_vacuum_options(agent, dbs, pgconn):
    version = server_version(pgconn)
    body = {"mode": "freeze", "skip_locked": True, "index_cleanup": "off", "truncate": False}
    expected = "FREEZE, SKIP_LOCKED, INDEX_CLEANUP OFF"
    if version >= 140000:
        body["process_toast"] = False
        expected += ", PROCESS_TOAST FALSE"
    expected += ", TRUNCATE FALSE"
    if version >= 130000:
        body["parallel"] = 2
        expected += ", PARALLEL 2"
    op_id = schedule(agent, table_path("opts", db=DB) + "/vacuum", **body)
    item = wait_op(agent, "vacuum", op_id)
    assert item["status"] == "done", item
    assert item["sql"] == f'VACUUM ({expected}) "public"."opts"'
    assert item["mode"] == "freeze"
    assert item["options"] == {k: v for k, v in body.items() if k != "mode"}


@pytest.mark.parametrize(
    "body, minimum, message",
    [
        ({"parallel": 2}, 130000, "Parameter 'parallel' is not supported by PostgreSQL {}."),
        (
            {"process_toast": True},
            140000,
            "Parameter 'process_toast' is not supported by PostgreSQL {}.",
        ),
        (
            {"index_cleanup": "auto"},
            140000,
            "Parameter 'index_cleanup' value 'auto' is not supported by PostgreSQL {}.",
        ),
    ],
)
def test_options_newer_than_the_server(agent, dbs, pgconn, body, minimum, message):
    version = server_version(pgconn)
    resp = agent.post(table_path("opts", db=DB) + "/vacuum", json=body)
    if version >= minimum:
        assert resp.status_code == 200, resp.text
        assert wait_op(agent, "vacuum", resp.json()["id"])["status"] == "done"
    else:
        assert resp.status_code == 406, resp.text
        assert resp.json() == {"error": message.format(version // 10000)}


def test_options_take_part_in_duplicates(agent, dbs):
    path = table_path("opts", db=DB) + "/vacuum"
    when = "2099-01-01T00:00:00Z"
    ids = []
    try:
        ids.append(schedule(agent, path, mode="analyze", datetime=when))
        ids.append(schedule(agent, path, mode="analyze", datetime=when, skip_locked=True))
        ids.append(schedule(agent, path, mode="analyze", datetime=when, timeout=60))
        assert len(set(ids)) == 3
        resp = agent.post(path, json={"mode": "analyze", "datetime": when, "timeout": 60.0})
        assert resp.status_code == 409 and resp.json()["id"] == ids[2], resp.text
        listed = {i["id"]: i for i in agent.get(path + "/scheduled").json()}
        assert listed[ids[0]]["options"] == {}
        assert listed[ids[1]]["options"] == {"skip_locked": True}
        assert listed[ids[2]]["options"] == {"timeout": 60}
    finally:
        for op_id in ids:
            agent.delete(f"/maintenance/vacuum/{op_id}")


@pytest.mark.parametrize(
    "kind, body, message",
    [
        ("vacuum", {"skip_locked": "yes"}, "Parameter 'skip_locked' is malformed."),
        ("vacuum", {"skip_locked": 1}, "Parameter 'skip_locked' is malformed."),
        ("vacuum", {"index_cleanup": "OFF"}, "Parameter 'index_cleanup' is malformed."),
        ("vacuum", {"index_cleanup": False}, "Parameter 'index_cleanup' is malformed."),
        ("vacuum", {"truncate": "false"}, "Parameter 'truncate' is malformed."),
        ("vacuum", {"parallel": -1}, "Parameter 'parallel' is malformed."),
        ("vacuum", {"parallel": 1.5}, "Parameter 'parallel' is malformed."),
        ("vacuum", {"parallel": True}, "Parameter 'parallel' is malformed."),
        ("vacuum", {"parallel": 1025}, "Parameter 'parallel' is malformed."),
        ("vacuum", {"process_toast": None, "parallel": "2"}, "Parameter 'parallel' is malformed."),
        (
            "vacuum",
            {"mode": "full", "parallel": 2},
            "Parameter 'parallel' cannot be used with mode 'full'.",
        ),
        ("vacuum", {"timeout": 0}, "Parameter 'timeout' is malformed."),
        ("analyze", {"timeout": -5}, "Parameter 'timeout' is malformed."),
        ("analyze", {"timeout": "10"}, "Parameter 'timeout' is malformed."),
        ("reindex", {"timeout": True}, "Parameter 'timeout' is malformed."),
        ("reindex", {"concurrently": "true"}, "Parameter 'concurrently' is malformed."),
    ],
)
def test_malformed_options(agent, dbs, kind, body, message):
    resp = agent.post(table_path("opts", db=DB) + f"/{kind}", json=body)
    assert resp.status_code == 406, resp.text
    assert resp.json() == {"error": message}


def test_other_kinds_options_are_ignored(agent, dbs):
    # As "mode" of an ANALYZE always was: unknown keys change nothing.
    op_id = schedule(agent, table_path("opts", db=DB) + "/analyze", skip_locked="junk")
    item = wait_op(agent, "analyze", op_id)
    assert item["status"] == "done" and item["options"] == {}
    assert item["sql"] == 'ANALYZE "public"."opts"'


# 4. Time limit


def test_timeout_while_waiting_for_a_lock(fast, session):
    holder = session()
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM held")
    op_id = schedule(fast, table_path("held", db=DB) + "/vacuum", mode="full", timeout=2)
    item = wait_op(fast, "vacuum", op_id, timeout=60)
    assert item["status"] == "failed", item
    assert item["error"] == "timed out after 2 s"
    assert item["options"] == {"timeout": 2}


def test_timeout_cancels_the_statement(agent, session):
    # The shared agent waits 2 s for a lock: the 0.5 s limit cancels the statement itself.
    holder = session()
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM held")
    op_id = schedule(agent, table_path("held", db=DB) + "/vacuum", mode="full", timeout=0.5)
    item = wait_op(agent, "vacuum", op_id, timeout=60)
    assert item["status"] == "failed", item
    assert item["error"] == "timed out after 0.5 s"
    assert item["attempts"] == 1


def test_timeout_not_reached(agent, dbs):
    op_id = schedule(agent, table_path("opts", db=DB) + "/analyze", timeout=600)
    item = wait_op(agent, "analyze", op_id)
    assert item["status"] == "done" and item["attempts"] == 1, item
    assert item["options"] == {"timeout": 600}
