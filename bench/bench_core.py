"""Core figures, each beside the same client against the agent's bare HTTP stack
(:mod:`bench.bare_server`: cheroot + TLS answering at once), with ratios:

1. requests/s of a trivial authenticated GET (/profile) over keep-alive HTTPS;
2. time to answer a fresh-connection GET while N clients trickle one byte a second
   (fewer and more than the 16 HTTP threads); the agent cuts such clients off after
   socket_timeout (10 s), which bounds the stall when they outnumber its threads;
3. idle RSS.

Usage: .venv/bin/python -m bench.bench_core [--seconds 5] [--trickle 8,40]
Uses wrk when installed (apt-get install wrk), else a Python keep-alive client.
Task start delays: .venv/bin/python -m bench.task_start_delay
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import time

from bench.common import bare_server, cluster_and_agent, python_rps, rss_kib, wrk_rps
from devsupport.slowclients import trickling_clients


def _rps(port: int, headers: dict, clients: int, seconds: int) -> tuple[float, str]:
    rps = wrk_rps(f"https://127.0.0.1:{port}/profile", headers, clients, seconds)
    if rps is not None:
        return rps, "wrk"
    return python_rps("127.0.0.1", port, "/profile", headers, clients, seconds), "python"


def _client_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _fresh_get(port: int, headers: dict, timeout: float = 60) -> float:
    """Seconds to answer a GET /profile on a new connection."""
    started = time.perf_counter()
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=_client_ctx(), timeout=timeout)
    conn.request("GET", "/profile", headers=headers)
    conn.getresponse().read()
    conn.close()
    return time.perf_counter() - started


def _with_tricklers(port: int, headers: dict, count: int) -> float:
    """Worst of 3 fresh GETs while ``count`` clients trickle (half of them inside TLS,
    half in the TLS handshake), once all are connected."""
    with trickling_clients(port, count):
        return max(_fresh_get(port, headers) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--trickle", default="8,40", help="trickling client counts")
    args = parser.parse_args()
    trickle = [0] + [int(n) for n in args.trickle.split(",") if n]
    with cluster_and_agent() as (_pg, agent), bare_server() as bare_port:
        time.sleep(1)
        pid = agent.proc.pid
        idle = rss_kib(pid)
        headers = {"X-Session": agent.session_id}
        rows = []
        for clients in (1, 8):
            agent_rps, tool = _rps(agent.port, headers, clients, args.seconds)
            bare_rps, _ = _rps(bare_port, headers, clients, args.seconds)
            rows.append((clients, agent_rps, bare_rps, tool))
        loaded = rss_kib(pid)
        stalls = []
        for count in trickle:
            stalls.append(
                (count, _with_tricklers(agent.port, headers, count),
                 _with_tricklers(bare_port, headers, count))
            )  # fmt: skip
    print(f"agent idle RSS after start-up: {idle / 1024:.1f} MiB; after load: "
          f"{loaded / 1024:.1f} MiB")  # fmt: skip
    print("\n1. GET /profile, X-Session, keep-alive HTTPS")
    print(f"{'clients':>8} {'agent req/s':>12} {'bare req/s':>11} {'agent/bare':>11}  tool")
    for clients, agent_rps, bare_rps, tool in rows:
        print(f"{clients:>8} {agent_rps:>12.0f} {bare_rps:>11.0f} "
              f"{agent_rps / bare_rps:>11.2f}  {tool}")  # fmt: skip
    print("\n2. Worst of 3 fresh-connection GETs while N clients trickle 1 byte/s")
    base_agent, base_bare = stalls[0][1], stalls[0][2]
    print(f"{'N':>4} {'agent ms':>9} {'x N=0':>7} {'bare ms':>8} {'x N=0':>7} {'agent/bare':>11}")
    for count, agent_s, bare_s in stalls:
        print(
            f"{count:>4} {agent_s * 1000:>9.0f} {agent_s / base_agent:>7.1f} "
            f"{bare_s * 1000:>8.0f} {bare_s / base_bare:>7.1f} {agent_s / bare_s:>11.2f}"
        )


if __name__ == "__main__":
    main()
