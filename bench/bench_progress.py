"""Cost of ``progress`` in the operation lists, side by side in one run.

Usage: .venv/bin/python -m bench.bench_progress [--ops 4] [--n 200]

Builds N VACUUM FULL operations that wait for a lock another session holds
(so they stay ``doing``: their progress is read from PostgreSQL on every list
request), and N operations scheduled far ahead (``todo``: no progress to read).
Prints p50/p95 of ``GET /maintenance/vacuum/scheduled`` in both cases, for the
same list length, and the difference, which the issue bounds at 2 ms.
"""

from __future__ import annotations

import argparse
import time

import psycopg2

from bench.common import cluster_and_agent, latencies
from devsupport.sql import create_database

DB = "bench_progress"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ops", type=int, default=4, help="running operations (<= 4, the default workers)"
    )
    parser.add_argument("--n", type=int, default=200, help="requests per measurement")
    args = parser.parse_args()
    with cluster_and_agent(extra_conf="") as (pg, agent):
        tables = [f"t{i}" for i in range(args.ops)]
        setup = "".join(f"CREATE TABLE {t} (i int); INSERT INTO {t} VALUES (1);" for t in tables)
        create_database(pg, DB, setup)
        holder = psycopg2.connect(pg.dsn(DB))
        with holder.cursor() as cur:
            cur.execute(
                "BEGIN; " + "; ".join(f"LOCK TABLE {t} IN ACCESS SHARE MODE" for t in tables)
            )
        url = "/maintenance/vacuum/scheduled"

        def get() -> list:
            resp = agent.get(url)
            resp.raise_for_status()
            return resp.json()

        future = [
            agent.post(
                f"/maintenance/{DB}/schema/public/table/{t}/vacuum",
                json={"mode": "full", "datetime": "2999-01-01T00:00:00Z"},
            ).json()["id"]
            for t in tables
        ]
        latencies(get, 20)  # warm up
        todo_p50, todo_p95 = latencies(get, args.n)
        for op_id in future:
            agent.delete(f"/maintenance/vacuum/{op_id}")
        running = [
            agent.post(
                f"/maintenance/{DB}/schema/public/table/{t}/vacuum", json={"mode": "full"}
            ).json()["id"]
            for t in tables
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            items = [i for i in get() if i["id"] in running]
            if len(items) == len(running) and all(
                i["progress"] and i["progress"]["waiting_for_lock"] for i in items
            ):
                break
            time.sleep(0.05)
        latencies(get, 20)
        doing_p50, doing_p95 = latencies(get, args.n)
        holder.rollback()
        holder.close()
    print(f"GET {url} with {args.ops} operations, {args.n} requests each")
    print(f"  todo  (no progress to read): p50 {todo_p50:6.2f} ms  p95 {todo_p95:6.2f} ms")
    print(f"  doing (progress read)      : p50 {doing_p50:6.2f} ms  p95 {doing_p95:6.2f} ms")
    print(
        f"  progress costs p50 {doing_p50 - todo_p50:+.2f} ms (ratio {doing_p50 / todo_p50:.2f}),"
        f" p95 {doing_p95 - todo_p95:+.2f} ms; bound: 2 ms"
    )


if __name__ == "__main__":
    main()
