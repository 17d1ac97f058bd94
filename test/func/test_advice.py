"""GET /maintenance/advice and /maintenance/<db>/advice on a real cluster.

Each situation is built for real; each rule must fire with its severity, and
its action, posted exactly as given, must run and make the advice go away.
Statistics reach the cumulative statistics system asynchronously: every check
polls with a deadline that only catches a hang.
"""

from __future__ import annotations

import psycopg2
import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql

from .helpers import drop_database, wait_for

DB = "advice_db"
HEALTHY = "advice_healthy"
FINISHED = ("done", "failed", "canceled", "aborted")


@pytest.fixture(scope="module")
def strict(pg, workdir):
    """An agent with low bloat thresholds and no minimum age for unused indexes."""
    proc = AgentProcess(
        workdir / "agent-advice",
        pg,
        extra_conf=(
            "[maintenance]\nadvice_table_bloat_bytes = 65536\n"
            "advice_index_bloat_bytes = 65536\nadvice_unused_index_days = 0\n"
        ),
    )
    proc.start()
    proc.login()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def db(pg):
    run_sql(pg, f"DROP DATABASE IF EXISTS {DB}")
    run_sql(pg, f"CREATE DATABASE {DB}")
    yield DB
    drop_database(pg, DB)


def advice(agent, dbname: str = DB) -> list[dict]:
    resp = agent.get(f"/maintenance/{dbname}/advice")
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert set(data) == {"advice", "generated", "unreachable"}
    assert data["generated"].endswith("Z")
    return data["advice"]


def find(items: list[dict], rule: str, table: str | None = None, index: str | None = None):
    return [
        i
        for i in items
        if i["rule"] == rule
        and (table is None or i["table"] == table)
        and (index is None or i["index"] == index)
    ]


def wait_advice(agent, rule: str, table=None, index=None, dbname: str = DB) -> dict:
    found = wait_for(
        lambda: find(advice(agent, dbname), rule, table, index), message=f"{rule} advice"
    )
    assert len(found) == 1, found
    return found[0]


def run_action(agent, item: dict) -> dict:
    """POST the item's action exactly as given; wait for the operation to end."""
    action = item["action"]
    assert action["method"] == "POST"
    resp = agent.post(action["path"], json=action["body"])
    assert resp.status_code == 200, resp.text
    op_id = resp.json()["id"]
    kind = action["path"].rsplit("/", 1)[1]
    result = wait_for(
        lambda: (r := agent.get(f"/maintenance/{kind}/{op_id}").json())["status"] in FINISHED and r,
        message=f"operation {op_id}",
    )
    assert result["status"] == "done", result
    return result


def wait_gone(agent, rule: str, table=None, index=None) -> None:
    wait_for(
        lambda: not find(advice(agent), rule, table, index), message=f"{rule} advice to go away"
    )


def test_wraparound_on_a_table_with_a_lowered_freeze_max_age(agent, db, pg):
    run_sql(
        pg,
        "CREATE TABLE old_xids (i int) WITH (autovacuum_enabled = false,"
        " autovacuum_freeze_max_age = 100000); INSERT INTO old_xids VALUES (1)",
        dbname=DB,
    )
    # Consume 85,000 transaction IDs: one subtransaction with a write each.
    run_sql(pg, "CREATE TABLE burn (i int) WITH (autovacuum_enabled = false)", dbname=DB)
    run_sql(
        pg,
        "DO $$ BEGIN FOR i IN 1..85000 LOOP BEGIN INSERT INTO burn VALUES (i);"
        " EXCEPTION WHEN division_by_zero THEN NULL; END; END LOOP; END $$",
        dbname=DB,
    )
    item = wait_advice(agent, "wraparound", "old_xids")
    assert item["severity"] == "critical"
    assert item["figures"]["freeze_max_age"] == 100000
    assert item["figures"]["xid_age"] >= 85000
    assert "autovacuum_freeze_max_age" in item["reason"]
    assert item["action"]["body"] == {"mode": "freeze"}
    run_action(agent, item)
    wait_gone(agent, "wraparound", "old_xids")


def test_dead_tuples_above_the_tables_threshold(agent, db, pg):
    run_sql(
        pg,
        "CREATE TABLE dead (id int PRIMARY KEY) WITH (autovacuum_enabled = false);"
        " INSERT INTO dead SELECT generate_series(1, 10000); ANALYZE dead;"
        " DELETE FROM dead WHERE id % 2 = 0",
        dbname=DB,
    )
    item = wait_advice(agent, "vacuum", "dead")
    assert item["severity"] == "warning"
    assert item["figures"]["n_dead_tup"] == 5000
    assert item["figures"]["threshold"] == 2050  # 50 + 0.2 x 10,000
    assert item["action"] == {
        "method": "POST",
        "path": f"/maintenance/{DB}/schema/public/table/dead/vacuum",
        "body": {"mode": "analyze"},
    }
    run_action(agent, item)
    wait_gone(agent, "vacuum", "dead")


def test_never_analyzed_table_with_rows(agent, db, pg):
    run_sql(
        pg,
        "CREATE TABLE fresh_rows (i int) WITH (autovacuum_enabled = false);"
        " INSERT INTO fresh_rows SELECT generate_series(1, 1000)",
        dbname=DB,
    )
    item = wait_advice(agent, "analyze", "fresh_rows")
    assert item["severity"] == "warning"
    assert "never analyzed" in item["reason"]
    assert item["action"]["path"].endswith("/table/fresh_rows/analyze")
    run_action(agent, item)
    wait_gone(agent, "analyze", "fresh_rows")


def test_bloated_table_and_index(strict, db, pg):
    run_sql(
        pg,
        "CREATE TABLE bloated (id int, filler text) WITH (autovacuum_enabled = false);"
        " INSERT INTO bloated SELECT g, repeat('x', 100) FROM generate_series(1, 40000) g;"
        " CREATE INDEX bloated_id ON bloated (id);"
        " DELETE FROM bloated WHERE id % 4 <> 0",
        dbname=DB,
    )
    run_sql(pg, "VACUUM ANALYZE bloated", dbname=DB)
    table = wait_advice(strict, "table_bloat", "bloated")
    assert table["severity"] == "warning"
    assert table["figures"]["bloat_percent"] > 30
    assert "ACCESS EXCLUSIVE" in table["reason"]
    assert table["action"]["body"] == {"mode": "full"}
    index = wait_advice(strict, "index_bloat", index="bloated_id")
    assert index["table"] == "bloated"
    assert index["action"]["path"] == f"/maintenance/{DB}/schema/public/index/bloated_id/reindex"
    assert index["action"]["body"] == {"concurrently": True}
    assert "CONCURRENTLY" in index["reason"]

    before = run_sql(
        pg, "SELECT relfilenode FROM pg_class WHERE relname = 'bloated_id'", dbname=DB
    )[0][0]
    run_action(strict, index)
    after = run_sql(pg, "SELECT relfilenode FROM pg_class WHERE relname = 'bloated_id'", dbname=DB)[
        0
    ][0]
    assert before != after
    wait_gone(strict, "index_bloat", index="bloated_id")
    run_action(strict, table)
    run_sql(pg, "ANALYZE bloated", dbname=DB)
    wait_gone(strict, "table_bloat", "bloated")


def test_invalid_index_from_a_failed_create_index_concurrently(agent, db, pg):
    run_sql(
        pg,
        "CREATE TABLE cic (v int) WITH (autovacuum_enabled = false);"
        " INSERT INTO cic SELECT generate_series(1, 1000)",
        dbname=DB,
    )
    with pytest.raises(psycopg2.errors.DivisionByZero):
        run_sql(pg, "CREATE INDEX CONCURRENTLY cic_inverse ON cic ((1 / (v - 500)))", dbname=DB)
    item = wait_advice(agent, "invalid_index", index="cic_inverse")
    assert item["severity"] == "warning"
    assert item["table"] == "cic"
    assert "invalid" in item["reason"]
    run_sql(pg, "DELETE FROM cic WHERE v = 500", dbname=DB)  # the cause, fixed by the DBA
    run_action(agent, item)
    assert run_sql(
        pg, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'cic_inverse'::regclass", dbname=DB
    )[0][0]
    wait_gone(agent, "invalid_index", index="cic_inverse")


def test_unused_and_duplicate_indexes(strict, agent, db, pg):
    run_sql(
        pg,
        "CREATE TABLE dup (id int PRIMARY KEY, a int, b int);"
        " CREATE INDEX dup_a ON dup (a); CREATE INDEX dup_a_again ON dup (a);"
        " CREATE INDEX dup_ab ON dup (a, b); CREATE UNIQUE INDEX dup_a_unique ON dup (a, id)",
        dbname=DB,
    )
    items = wait_for(lambda: find(advice(strict), "unused_index", "dup") and advice(strict))
    unused = {i["index"] for i in find(items, "unused_index", "dup")}
    # unique ones (the primary key, dup_a_unique) are never advised to drop
    assert unused == {"dup_a", "dup_a_again", "dup_ab"}
    assert all(i["action"] is None and i["severity"] == "info" for i in find(items, "unused_index"))

    duplicates = {i["index"]: i for i in find(items, "duplicate_index", "dup")}
    # the exact pair gives one item naming both; the prefix one names the longer index
    assert set(duplicates) == {"dup_a", "dup_a_again"}
    assert "dup_a" in duplicates["dup_a_again"]["reason"]
    assert "same definition" in duplicates["dup_a_again"]["reason"]
    assert "left prefix of dup_a" in duplicates["dup_a"]["reason"]  # dup_ab or dup_a_unique
    assert all(i["action"] is None for i in duplicates.values())

    # with the default minimum age (7 days), fresh statistics give no unused advice
    assert not find(advice(agent), "unused_index", "dup")


def test_pending_operation_replaces_the_action(agent, db, pg):
    run_sql(
        pg,
        "CREATE TABLE waiting (i int) WITH (autovacuum_enabled = false);"
        " INSERT INTO waiting SELECT generate_series(1, 1000)",
        dbname=DB,
    )
    item = wait_advice(agent, "analyze", "waiting")
    resp = agent.post(item["action"]["path"], json={"datetime": "2999-01-01T00:00:00Z"})
    op_id = resp.json()["id"]
    try:
        item = find(advice(agent), "analyze", "waiting")[0]
        assert item["pending"] == op_id
        assert item["action"] is None
    finally:
        agent.delete(f"/maintenance/analyze/{op_id}")
    assert find(advice(agent), "analyze", "waiting")[0]["action"] is not None


def test_most_severe_first_and_instance_wide(agent, db, pg):
    items = advice(agent)
    ranks = [("critical", "warning", "info").index(i["severity"]) for i in items]
    assert ranks == sorted(ranks)
    everywhere = agent.get("/maintenance/advice", params={"key": agent.key})
    assert everywhere.status_code == 200
    data = everywhere.json()
    assert data["unreachable"] == []
    assert {i["dbname"] for i in data["advice"]} >= {DB}
    assert "template1" not in {i["dbname"] for i in data["advice"]}


def test_healthy_freshly_vacuumed_database_has_no_advice(agent, pg):
    run_sql(pg, f"DROP DATABASE IF EXISTS {HEALTHY}")
    run_sql(pg, f"CREATE DATABASE {HEALTHY}")
    try:
        run_sql(
            pg,
            "CREATE TABLE accounts (id int PRIMARY KEY, name text);"
            " INSERT INTO accounts SELECT g, 'n' || g FROM generate_series(1, 5000) g",
            dbname=HEALTHY,
        )
        # The INSERT's counts reach pg_stat when its backend exits, a moment after
        # the connection closed: a VACUUM ANALYZE before that would be undone.
        wait_for(
            lambda: (
                run_sql(
                    pg,
                    "SELECT n_tup_ins FROM pg_catalog.pg_stat_user_tables"
                    " WHERE relname = 'accounts'",
                    dbname=HEALTHY,
                )
                == [(5000,)]
            ),
            message="the INSERT in pg_stat_user_tables",
        )
        run_sql(pg, "VACUUM ANALYZE", dbname=HEALTHY)
        last = []

        def none_left() -> bool:
            last[:] = advice(agent, HEALTHY)
            return last == []

        try:
            wait_for(none_left, timeout=20, message="no advice")
        except AssertionError:
            raise AssertionError(last) from None
    finally:
        drop_database(pg, HEALTHY)


def test_errors(agent):
    resp = agent.get("/maintenance/no_such_db/advice")
    assert resp.status_code == 404
    assert "error" in resp.json()
    assert agent.anon.get(agent.url + "/maintenance/advice").status_code in (401, 406)
