"""Finished operations stay in the /scheduled lists for ``finished_visible`` seconds.

A client that polls a list (the temboard UI, every 5 s) must see an operation end,
whatever its final status, in every scope's list; then it leaves the lists.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql

DB = "fv_db"
TABLE = "fv_items"
INDEX = "fv_items_v"
PENDING = ("todo", "queued", "doing")
FINISHED = ("done", "failed", "canceled", "aborted")
BASE = f"/maintenance/{DB}"
TABLE_PATH = f"{BASE}/schema/public/table/{TABLE}"
INDEX_PATH = f"{BASE}/schema/public/index/{INDEX}"

#: every list an operation on TABLE (or its index) shows in, per kind
LISTS = {
    "vacuum": [
        "/maintenance/vacuum/scheduled",
        f"{BASE}/vacuum/scheduled",
        f"{TABLE_PATH}/vacuum/scheduled",
    ],
    "analyze": [
        "/maintenance/analyze/scheduled",
        f"{BASE}/analyze/scheduled",
        f"{TABLE_PATH}/analyze/scheduled",
    ],
    "reindex": [
        "/maintenance/reindex/scheduled",
        f"{BASE}/reindex/scheduled",
        f"{BASE}/schema/public/reindex/scheduled",
        f"{TABLE_PATH}/reindex/scheduled",
        f"{BASE}/schema/public/{INDEX}/table/{TABLE}/reindex/scheduled",
    ],
}


def at(seconds: float) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return (when.replace(microsecond=0) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule(agent: AgentProcess, path: str, **body) -> str:
    resp = agent.post(path, json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def wait_status(agent: AgentProcess, kind: str, op_id: str, statuses, timeout: float = 30.0):
    """The operation's item (GET /maintenance/<kind>/<id>) once in ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        item = agent.get(f"/maintenance/{kind}/{op_id}").json()
        if item["status"] in statuses:
            return item
        assert time.monotonic() < deadline, f"{op_id} still {item['status']}"
        time.sleep(0.02)


def listed(agent: AgentProcess, path: str) -> list[dict]:
    resp = agent.get(path)
    assert resp.status_code == 200, (path, resp.text)
    items = resp.json()
    dts = [item["datetime"] for item in items]
    assert dts == sorted(dts), f"{path} not ordered by datetime: {items}"
    return items


def status_in(agent: AgentProcess, path: str, op_id: str) -> list[str]:
    return [i["status"] for i in listed(agent, path) if i["id"] == op_id]


def _make_db(pg) -> None:
    run_sql(pg, f"DROP DATABASE IF EXISTS {DB}")
    run_sql(pg, f"CREATE DATABASE {DB}")
    run_sql(
        pg,
        f"CREATE TABLE {TABLE} (id int PRIMARY KEY, v text);"
        f" CREATE INDEX {INDEX} ON {TABLE} (v);"
        f" INSERT INTO {TABLE} SELECT g, md5(g::text) FROM generate_series(1, 500) g;",
        dbname=DB,
    )


@pytest.fixture(scope="module")
def fv_agent(pg, workdir):
    """An agent with the default ``finished_visible`` (12 s)."""
    _make_db(pg)
    proc = AgentProcess(workdir / "fv-agent", pg)
    proc.start()
    proc.login()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def short_agent(pg, workdir):
    """An agent whose lists forget finished operations after 2 s."""
    proc = AgentProcess(
        workdir / "fv-short-agent", pg, extra_conf="[maintenance]\nfinished_visible = 2\n"
    )
    proc.start()
    proc.login()
    yield proc
    proc.stop()


@pytest.mark.parametrize(
    "kind, path",
    [
        ("vacuum", f"{TABLE_PATH}/vacuum"),
        ("analyze", f"{TABLE_PATH}/analyze"),
        ("reindex", f"{INDEX_PATH}/reindex"),
    ],
)
def test_done_operation_listed_in_every_scope(fv_agent, kind, path):
    later = schedule(fv_agent, path, datetime=at(3600))
    try:
        op_id = schedule(fv_agent, path)
        item = wait_status(fv_agent, kind, op_id, FINISHED)
        assert item["status"] == "done", item
        for list_path in LISTS[kind]:
            items = {i["id"]: i for i in listed(fv_agent, list_path)}
            assert items.get(op_id, {}).get("status") == "done", (list_path, items)
            # the pending one as before, after the finished one (datetime order)
            assert items[later]["status"] == "todo"
            order = list(items)
            assert order.index(op_id) < order.index(later), (list_path, order)
            assert set(items[op_id]) == set(items[later])
    finally:
        fv_agent.delete(f"/maintenance/{kind}/{later}")


def test_failed_operation_listed_with_its_status(fv_agent, pg):
    run_sql(pg, "CREATE TABLE fv_doomed (id int)", dbname=DB)
    path = f"{BASE}/schema/public/table/fv_doomed"
    op_id = schedule(fv_agent, f"{path}/analyze", datetime=at(1))
    run_sql(pg, "DROP TABLE fv_doomed", dbname=DB)
    item = wait_status(fv_agent, "analyze", op_id, FINISHED)
    assert item["status"] == "failed" and "does not exist" in item["error"], item
    assert status_in(fv_agent, "/maintenance/analyze/scheduled", op_id) == ["failed"]
    assert status_in(fv_agent, f"{BASE}/analyze/scheduled", op_id) == ["failed"]


def test_canceled_operation_listed_with_its_status(fv_agent):
    op_id = schedule(fv_agent, f"{TABLE_PATH}/vacuum", mode="full", datetime=at(3600))
    assert status_in(fv_agent, f"{TABLE_PATH}/vacuum/scheduled", op_id) == ["todo"]
    assert fv_agent.delete(f"/maintenance/vacuum/{op_id}").status_code == 200
    for list_path in LISTS["vacuum"]:
        assert status_in(fv_agent, list_path, op_id) == ["canceled"], list_path


def test_finished_operation_is_not_a_duplicate(fv_agent):
    """409 only for a pending twin: a listed, finished one may be scheduled again."""
    past = "2020-01-01T00:00:00Z"
    first = schedule(fv_agent, f"{TABLE_PATH}/analyze", datetime=past)
    wait_status(fv_agent, "analyze", first, FINISHED)
    assert status_in(fv_agent, f"{TABLE_PATH}/analyze/scheduled", first) == ["done"]
    resp = fv_agent.post(f"{TABLE_PATH}/analyze", json={"datetime": past})
    assert resp.status_code == 200, resp.text
    again = resp.json()["id"]
    assert again != first
    wait_status(fv_agent, "analyze", again, FINISHED)
    # while a pending twin is still a conflict
    when = at(3600)
    pending = schedule(fv_agent, f"{TABLE_PATH}/analyze", datetime=when)
    try:
        resp = fv_agent.post(f"{TABLE_PATH}/analyze", json={"datetime": when})
        assert resp.status_code == 409 and resp.json()["id"] == pending, resp.text
    finally:
        fv_agent.delete(f"/maintenance/analyze/{pending}")


def test_history_and_item_unchanged(fv_agent):
    op_id = schedule(fv_agent, f"{TABLE_PATH}/analyze")
    item = wait_status(fv_agent, "analyze", op_id, FINISHED)
    assert "finished" in item and "sql" in item
    history = fv_agent.get("/maintenance/analyze/history", params={"limit": 1000}).json()
    assert op_id in [i["id"] for i in history]
    # list items keep the same fields, finished or not (progress is null once finished)
    (listed_item,) = [i for i in listed(fv_agent, f"{BASE}/analyze/scheduled") if i["id"] == op_id]
    assert listed_item["progress"] is None
    assert set(listed_item) == {
        "id",
        "dbname",
        "schema",
        "table",
        "index",
        "mode",
        "options",
        "datetime",
        "status",
        "progress",
    }


def test_finished_operations_leave_the_lists(short_agent, pg):
    """After ``finished_visible`` seconds a finished operation is gone from every list."""
    done = schedule(short_agent, f"{TABLE_PATH}/vacuum")
    canceled = schedule(short_agent, f"{TABLE_PATH}/vacuum", mode="freeze", datetime=at(3600))
    assert short_agent.delete(f"/maintenance/vacuum/{canceled}").status_code == 200
    assert wait_status(short_agent, "vacuum", done, FINISHED)["status"] == "done"
    deadline = time.monotonic() + 30
    while True:
        seen = {
            path: {i["id"] for i in listed(short_agent, path)} & {done, canceled}
            for path in LISTS["vacuum"]
        }
        if not any(seen.values()):
            break
        assert time.monotonic() < deadline, f"still listed: {seen}"
        time.sleep(0.2)
    # still in the history
    history = short_agent.get("/maintenance/vacuum/history", params={"limit": 1000}).json()
    statuses = {i["id"]: i["status"] for i in history}
    assert statuses[done] == "done" and statuses[canceled] == "canceled"


def test_finished_visible_zero_lists_pending_only(pg, workdir):
    proc = AgentProcess(
        workdir / "fv-zero-agent", pg, extra_conf="[maintenance]\nfinished_visible = 0\n"
    )
    proc.start()
    try:
        proc.login()
        op_id = schedule(proc, f"{TABLE_PATH}/analyze")
        assert wait_status(proc, "analyze", op_id, FINISHED)["status"] == "done"
        assert status_in(proc, f"{TABLE_PATH}/analyze/scheduled", op_id) == []
    finally:
        proc.stop()


@pytest.mark.parametrize("value", ["-1", "3601", "soon"])
def test_bad_finished_visible_refused(pg, workdir, value):
    proc = AgentProcess(
        workdir / f"fv-bad-agent-{value}",
        pg,
        extra_conf=f"[maintenance]\nfinished_visible = {value}\n",
    )
    with pytest.raises(RuntimeError, match="finished_visible"):
        proc.start()
    proc.stop()
