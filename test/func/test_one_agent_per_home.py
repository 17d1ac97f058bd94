"""Two real agent processes: one agent per home, bind before recovery, and tasks
never run on a cluster other than the one they were scheduled for."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys

import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql
from temboardagent.tasks.model import to_us, utcnow

from .helpers import wait_for

DB = "homedb"


@pytest.fixture(scope="module")
def db(pg):
    run_sql(pg, f"DROP DATABASE IF EXISTS {DB}")
    run_sql(pg, f"CREATE DATABASE {DB}")
    for table in ("busy", "busy2", "plain"):
        run_sql(
            pg,
            f"CREATE TABLE public.{table} (id int PRIMARY KEY);"
            f" INSERT INTO public.{table} SELECT pg_catalog.generate_series(1, 100)",
            dbname=DB,
        )
    yield DB


@pytest.fixture
def agents(pg, tmp_path):
    started: list[AgentProcess] = []

    def make(name: str) -> AgentProcess:
        tmp_path.chmod(0o755)
        proc = AgentProcess(tmp_path / name, pg)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


def _op(agent: AgentProcess, op_id: str) -> dict:
    resp = agent.get(f"/maintenance/vacuum/{op_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _vacuum_full(agent: AgentProcess, table: str) -> str:
    resp = agent.post(
        f"/maintenance/{DB}/schema/public/table/{table}/vacuum", json={"mode": "full"}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def _backend(pg, statement: str) -> int | None:
    rows = run_sql(
        pg,
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = %s",
        (statement,),
    )
    return rows[0][0] if rows else None


def _rows(home) -> list[tuple]:
    conn = sqlite3.connect(home / "tasks.sqlite")
    try:
        return conn.execute("SELECT * FROM tasks ORDER BY id").fetchall()
    finally:
        conn.close()


def _run_agent(conf, timeout: float = 60) -> subprocess.CompletedProcess:
    """Start ``temboard-agent -c conf`` expecting it to exit on its own."""
    return subprocess.run(
        [sys.executable, "-m", "temboardagent", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_second_agent_on_the_same_home_exits_and_leaves_the_first_alone(pg, db, agents, locker):
    first = agents("first")
    first.start()
    first.login()
    lock = locker("busy")
    op_id = _vacuum_full(first, "busy")
    statement = 'VACUUM (FULL) "public"."busy"'
    backend = wait_for(lambda: _backend(pg, statement), message="VACUUM backend")
    assert _op(first, op_id)["status"] == "doing"

    # Same configuration file: same home (and same port).
    second = _run_agent(first.conf)
    assert second.returncode != 0
    assert second.stderr.splitlines() == [
        f"temboard-agent: error: home {first.home} is in use by another agent "
        f"(pid {first.proc.pid})"
    ]
    assert second.stdout == ""
    # The first agent's running task is untouched: still doing, same backend.
    assert _op(first, op_id)["status"] == "doing"
    assert _backend(pg, statement) == backend
    assert (first.home / "agent.lock").read_text().strip() == str(first.proc.pid)
    lock.rollback()
    item = wait_for(
        lambda: (i := _op(first, op_id))["status"] not in ("todo", "queued", "doing") and i,
        message="VACUUM to finish",
    )
    assert item["status"] == "done", item


def test_agent_that_cannot_listen_changes_nothing(pg, db, agents, locker):
    """A task left doing by a killed agent stays doing (and its backend runs on)
    when a new agent on that home fails to bind; the next good start recovers it."""
    agent = agents("crashed")
    agent.start()
    agent.login()
    locker("busy2")
    op_id = _vacuum_full(agent, "busy2")
    statement = 'VACUUM (FULL) "public"."busy2"'
    backend = wait_for(lambda: _backend(pg, statement), message="VACUUM backend")
    agent.kill9()
    before = _rows(agent.home)
    assert [row[5] for row in before if row[0] == op_id] == ["doing"]

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        agent.port = taken.getsockname()[1]
        agent.url = f"https://127.0.0.1:{agent.port}"
        agent.write_config()
        result = _run_agent(agent.conf)
    finally:
        taken.close()
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"temboard-agent: error: cannot listen on 127.0.0.1:{agent.port}: Address already in use"
    ]
    # No recovery ran: same rows, the orphan backend was not canceled.
    assert _rows(agent.home) == before
    assert _backend(pg, statement) == backend

    # A start that listens recovers: aborted, orphan backend canceled.
    agent.start()
    agent.login()
    item = _op(agent, op_id)
    assert item["status"] == "aborted", item
    wait_for(lambda: _backend(pg, statement) is None, message="orphan backend canceled")


def _vacuum_count(pg) -> int:
    query = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'plain'"
    return run_sql(pg, query, dbname=DB)[0][0]


def _system_identifier(pg) -> str:
    return str(run_sql(pg, "SELECT system_identifier FROM pg_control_system()")[0][0])


def test_task_for_another_cluster_is_aborted_and_never_runs(pg, db, agents):
    agent = agents("moved")
    agent.start()
    agent.login()
    resp = agent.post(
        f"/maintenance/{DB}/schema/public/table/plain/vacuum",
        json={"datetime": "2100-01-01T00:00:00Z"},
    )
    assert resp.status_code == 200, resp.text
    op_id = resp.json()["id"]
    ours = _system_identifier(pg)
    other = "7000000000000000042"
    assert other != ours
    agent.stop()

    conn = sqlite3.connect(agent.home / "tasks.sqlite")
    with conn:
        (recorded,) = conn.execute(
            "SELECT system_identifier FROM tasks WHERE id = ?", (op_id,)
        ).fetchone()
        assert recorded == ours  # recorded when scheduled
        # As if this home's task had been scheduled on another cluster, and due now.
        conn.execute(
            "UPDATE tasks SET system_identifier = ?, start = ? WHERE id = ?",
            (other, to_us(utcnow()), op_id),
        )
    conn.close()
    vacuums = _vacuum_count(pg)

    agent.start()
    agent.login()
    item = wait_for(
        lambda: (i := _op(agent, op_id))["status"] not in ("todo", "queued", "doing") and i,
        message="task to finish",
    )
    assert item["status"] == "aborted", item
    assert other in item["error"] and ours in item["error"], item["error"]
    # Never ran: no statement recorded, no backend pid, VACUUM count unchanged.
    conn = sqlite3.connect(agent.home / "tasks.sqlite")
    output, pid = conn.execute("SELECT output, pid FROM tasks WHERE id = ?", (op_id,)).fetchone()
    conn.close()
    assert (output, pid) == (None, None)

    # A task scheduled now, on this cluster, runs.
    resp = agent.post(f"/maintenance/{DB}/schema/public/table/plain/vacuum", json={})
    assert resp.status_code == 200, resp.text
    new_id = resp.json()["id"]
    item = wait_for(
        lambda: (i := _op(agent, new_id))["status"] not in ("todo", "queued", "doing") and i,
        message="task to finish",
    )
    assert item["status"] == "done", item
    # Only that one VACUUM reached the table (the aborted one ran before it, if at all).
    count = wait_for(lambda: (c := _vacuum_count(pg)) > vacuums and c, message="VACUUM counted")
    assert count == vacuums + 1
