"""Connection pool: what keeping idle connections saves, side by side with no pool.

Usage: .venv/bin/python -m bench.bench_pool [--dbs 8] [--repeat 30]

One throwaway cluster with ``--dbs`` small databases and two agents: one with the
default pool (``pool_idle_timeout = 10``, ``pool_max_idle = 8``), one that keeps no
idle connection (``pool_max_idle = 0``). For each page it prints the median and p95
latency of both agents over keep-alive HTTPS, requests alternated between them, and
the ratio. ``GET /maintenance`` never pools its per-database connections (a scan
must not block ``DROP DATABASE``): its figures show what that costs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql
from temboardagent.embedded import throwaway_cluster


def _agent(home: Path, pg, options: str) -> AgentProcess:
    agent = AgentProcess(home, pg, log_level="WARNING")
    confd = home / "temboard-agent.conf.d"
    confd.mkdir(parents=True)
    (confd / "pool.conf").write_text("[postgresql]\n" + options)
    agent.start()
    agent.login()
    return agent


def _timed(agent: AgentProcess, path: str) -> float:
    start = time.perf_counter()
    resp = agent.get(path)
    elapsed = time.perf_counter() - start
    resp.raise_for_status()
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dbs", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="tbagent-bench-pool-"))
    base.chmod(0o755)
    try:
        with throwaway_cluster(base / "pg") as pg:
            names = [f"pool_db{i}" for i in range(args.dbs)]
            for name in names:
                run_sql(pg, f"CREATE DATABASE {name}")
                run_sql(
                    pg,
                    "CREATE TABLE t (id int PRIMARY KEY, v text);"
                    " INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g; ANALYZE t",
                    dbname=name,
                )
            pooled = _agent(base / "pooled", pg, "pool_idle_timeout = 10\npool_max_idle = 8\n")
            unpooled = _agent(base / "unpooled", pg, "pool_max_idle = 0\n")
            try:
                pages = {
                    "GET /maintenance/<db>": f"/maintenance/{names[0]}",
                    "GET .../schema/public": f"/maintenance/{names[0]}/schema/public",
                    "GET .../table/t": f"/maintenance/{names[0]}/schema/public/table/t",
                    f"GET /maintenance ({args.dbs + 1} dbs)": "/maintenance",
                }
                print(f"{'page':32} {'pooled ms':>16} {'no pool ms':>16} {'ratio':>7}")
                print(f"{'':32} {'median   p95':>16} {'median   p95':>16}")
                for label, path in pages.items():
                    for agent in (pooled, unpooled):  # warm-up
                        _timed(agent, path)
                    times: dict[str, list[float]] = {"pooled": [], "unpooled": []}
                    for _ in range(args.repeat):
                        times["pooled"].append(_timed(pooled, path))
                        times["unpooled"].append(_timed(unpooled, path))
                    row = []
                    for key in ("pooled", "unpooled"):
                        values = sorted(times[key])
                        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
                        row.append((statistics.median(values), p95))
                    ratio = row[1][0] / row[0][0]
                    print(
                        f"{label:32} {row[0][0]:7.1f} {row[0][1]:7.1f}"
                        f" {row[1][0]:7.1f} {row[1][1]:7.1f} {ratio:6.2f}x"
                    )
            finally:
                pooled.stop()
                unpooled.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
