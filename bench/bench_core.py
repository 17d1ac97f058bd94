"""Core figures: requests/s of a trivial authenticated GET over keep-alive, idle RSS.

Usage: .venv/bin/python -m bench.bench_core [--seconds 5]
Uses wrk when installed (apt-get install wrk), else a Python keep-alive client.
Task start delays: .venv/bin/python bench/task_start_delay.py
"""

from __future__ import annotations

import argparse
import time

from bench.common import cluster_and_agent, python_rps, rss_kib, wrk_rps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with cluster_and_agent() as (_pg, agent):
        time.sleep(1)
        pid = agent.proc.pid
        idle = rss_kib(pid)
        headers = {"X-Session": agent.session_id}
        rows = []
        for clients in (1, 8):
            rps = wrk_rps(agent.url + "/profile", headers, clients, args.seconds)
            tool = "wrk"
            if rps is None:
                rps = python_rps(
                    "127.0.0.1", agent.port, "/profile", headers, clients, args.seconds
                )
                tool = "python"
            rows.append((clients, rps, tool))
        loaded = rss_kib(pid)
    print(f"idle RSS after start-up: {idle / 1024:.1f} MiB; after load: {loaded / 1024:.1f} MiB")
    print(f"{'clients':>8} {'req/s':>10}  tool   (GET /profile, X-Session, keep-alive HTTPS)")
    for clients, rps, tool in rows:
        print(f"{clients:>8} {rps:>10.0f}  {tool}")


if __name__ == "__main__":
    main()
