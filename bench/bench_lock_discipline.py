"""Lock discipline of operations: what a reader waits, and the cost of per-relation runs.

Usage: .venv/bin/python -m bench.bench_lock_discipline [--tables 200 1000] [--hold 6]

Prints (no asserts):
1. how long a reader's ``SELECT`` on a table waits while a VACUUM FULL of that table
   waits for its lock behind a transaction held ``--hold`` seconds: the VACUUM FULL run
   directly (no lock_timeout, as the agent did before) and run by the agent
   (``operation_lock_timeout`` 2000 ms, retries); worst of 5 readers each;
2. duration of a database-wide VACUUM (ANALYZE) of ``--tables`` small tables: one
   ``VACUUM (ANALYZE)`` statement in psycopg2, and the agent's operation, which runs one
   statement per relation; side by side with their ratio.
"""

from __future__ import annotations

import argparse
import threading
import time

import psycopg2

from bench.common import cluster_and_agent
from devsupport.sql import create_database

DB = "bench_locks"


def connect(pg, autocommit: bool = True):
    conn = psycopg2.connect(pg.dsn(DB))
    conn.autocommit = autocommit
    return conn


def wait_status(agent, op_id: str, statuses: tuple[str, ...], timeout: float = 600.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = agent.get(f"/maintenance/vacuum/{op_id}").json()
        if item["status"] in statuses:
            return item
        time.sleep(0.02)
    raise RuntimeError(f"operation {op_id} still {item['status']}")


def reader_waits(pg, start_vacuum, hold: float) -> float:
    """Worst wait (s) of 5 readers spread over ``hold`` seconds behind a waiting VACUUM FULL."""
    holder = connect(pg, autocommit=False)
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM hot")
    finish = start_vacuum()
    time.sleep(0.5)  # the VACUUM FULL is now waiting for its lock
    worst = 0.0
    waits: list[float] = []

    def read():
        conn = connect(pg)
        t0 = time.monotonic()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM hot")
        waits.append(time.monotonic() - t0)
        conn.close()

    threads = []
    for _ in range(5):
        thread = threading.Thread(target=read)
        thread.start()
        threads.append(thread)
        time.sleep(hold / 5)
    holder.commit()
    for thread in threads:
        thread.join()
    finish()
    holder.close()
    worst = max(waits)
    return worst


def bench_readers(pg, agent, hold: float) -> None:
    print(f"\n1. Reader wait behind a VACUUM FULL waiting {hold:.0f} s for its lock")

    def direct():
        conn = connect(pg)
        thread = threading.Thread(
            target=lambda: conn.cursor().execute("VACUUM (FULL) public.hot"), daemon=True
        )
        thread.start()
        return lambda: (thread.join(), conn.close())

    def through_agent():
        resp = agent.post(
            f"/maintenance/{DB}/schema/public/table/hot/vacuum", json={"mode": "full"}
        )
        op_id = resp.json()["id"]
        return lambda: wait_status(agent, op_id, ("done", "failed"))

    plain = reader_waits(pg, direct, hold)
    agent_wait = reader_waits(pg, through_agent, hold)
    print(f"   direct VACUUM FULL (no lock_timeout)  worst reader wait {plain:7.2f} s")
    print(f"   agent operation (lock_timeout 2 s)    worst reader wait {agent_wait:7.2f} s")
    print(f"   ratio direct/agent                    {plain / max(agent_wait, 1e-3):7.1f}")


def make_tables(pg, tables: int) -> None:
    """``tables`` fresh small tables (dropped and created again: same work for both runs)."""
    conn = connect(pg)
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS many CASCADE; CREATE SCHEMA many")
        for i in range(tables):
            cur.execute(
                f"CREATE TABLE many.t{i} (id int PRIMARY KEY, v text);"
                f" INSERT INTO many.t{i} SELECT g, 'x' FROM generate_series(1, 50) g"
            )
        cur.execute("CHECKPOINT")
    conn.close()


def bench_per_relation(pg, agent, tables: int) -> None:
    make_tables(pg, tables)
    conn = connect(pg)
    t0 = time.monotonic()
    with conn.cursor() as cur:
        cur.execute("VACUUM (ANALYZE)")
    single = time.monotonic() - t0
    conn.close()
    make_tables(pg, tables)
    t0 = time.monotonic()
    op_id = agent.post(f"/maintenance/{DB}/vacuum", json={"mode": "analyze"}).json()["id"]
    item = wait_status(agent, op_id, ("done", "failed"))
    through_agent = time.monotonic() - t0
    print(
        f"   {tables:6d} tables: one statement {single:7.2f} s   agent per relation "
        f"{through_agent:7.2f} s ({item['status']})   ratio {through_agent / single:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--hold", type=float, default=6.0)
    args = parser.parse_args()
    with cluster_and_agent() as (pg, agent):
        create_database(
            pg,
            DB,
            "CREATE TABLE hot (id int PRIMARY KEY, v text);"
            " INSERT INTO hot SELECT g, md5(g::text) FROM generate_series(1, 10000) g",
        )
        bench_readers(pg, agent, args.hold)
        print("\n2. Database-wide VACUUM (ANALYZE)")
        for tables in args.tables:
            bench_per_relation(pg, agent, tables)


if __name__ == "__main__":
    main()
