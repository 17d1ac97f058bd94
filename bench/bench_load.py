"""Load: many concurrent HTTPS clients hammer GETs and POSTs; req/s, statuses, agent RSS.

Usage: .venv/bin/python -m bench.bench_load [--clients 200] [--seconds 30]

Clients are threads of a few processes (so the client side is not one GIL),
each on its own keep-alive connection, looping over a mix of reads (sizes,
one table, /discover, lists, history) and POSTs scheduling ANALYZE far in
the future on a small set of (table, datetime) pairs: the first of each is a
200, the rest the documented 409 duplicate. Every reply other than 200 and
409, and every connection error, counts as an error. Loopback only, bounded
in time. Every client starts at a common start line and stops ``seconds`` later,
so requests/s is requests over that window.

Side by side: the same clients and mix against the agent's bare HTTP stack
(:mod:`bench.bare_server`), and the ratios agent/bare.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from devsupport.sql import create_database

TABLES = 10
DAYS = 5  # distinct future datetimes per table
DATABASE = "load"


def prepare(pg) -> None:
    """Database ``load`` with a few small tables (called once per cluster)."""
    setup = "".join(
        f"CREATE TABLE t{i} (id int PRIMARY KEY, v text);"
        f"INSERT INTO t{i} SELECT g, md5(g::text) FROM generate_series(1, 500) g;"
        f"ANALYZE t{i};"
        for i in range(TABLES)
    )
    create_database(pg, DATABASE, setup)


def _requests(rng: random.Random) -> tuple[str, str, bytes | None]:
    """One request of the mix: (method, path, body)."""
    roll = rng.random()
    table = f"t{rng.randrange(TABLES)}"
    if roll < 0.25:
        return "GET", f"/maintenance/{DATABASE}/schema/public", None
    if roll < 0.40:
        return "GET", f"/maintenance/{DATABASE}/schema/public/table/{table}", None
    if roll < 0.50:
        return "GET", "/discover", None
    if roll < 0.60:
        return "GET", "/maintenance/analyze/scheduled", None
    if roll < 0.70:
        return "GET", "/maintenance/analyze/history?limit=20", None
    if roll < 0.75:
        return "GET", "/profile", None
    day = rng.randrange(1, DAYS + 1)
    body = json.dumps({"datetime": f"2100-01-0{day}T00:00:00Z"}).encode()
    return "POST", f"/maintenance/{DATABASE}/schema/public/table/{table}/analyze", body


@dataclass
class Result:
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    reconnects: int = 0  # requests resent once on a new connection (stale keep-alive)
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0  # epoch seconds the last client started

    def merge(self, other: Result) -> None:
        self.started = max(self.started, other.started)
        self.statuses.update(other.statuses)
        self.errors += other.errors[: max(0, 20 - len(self.errors))]
        self.error_count += other.error_count
        self.reconnects += other.reconnects
        self.latencies += other.latencies

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def _send(conn, method: str, path: str, body: bytes | None, headers: dict):
    conn.request(method, path, body=body, headers=headers)
    return conn.getresponse()


def _client(
    port: int, session: str, start_at: float, stop_at: float, seed: int, result: Result, lock
) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    rng = random.Random(seed)
    local = Result()
    conn = None
    time.sleep(max(0.0, start_at - time.time()))
    with lock:
        result.started = max(result.started, time.time())
    while time.time() < stop_at:
        method, path, body = _requests(rng)
        headers = {"X-Session": session}
        if body is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            try:
                resp = _send(conn, method, path, body, headers)
            except (ConnectionError, ssl.SSLEOFError):
                if not reused:
                    raise
                # The server closed this idle keep-alive connection before reading the
                # request (its keep-alive limit): resend once on a new connection, as
                # HTTP clients do (RFC 9112, 9.3.1). Counted, not hidden.
                conn.close()
                local.reconnects += 1
                resp = _send(conn, method, path, body, headers)
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            local.error_count += 1
            if len(local.errors) < 5:
                local.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            if conn is not None:
                conn.close()
            conn = None
            continue
        local.latencies.append(time.perf_counter() - started)
        local.statuses[resp.status] += 1
        if resp.status not in (200, 409):
            local.error_count += 1
            if len(local.errors) < 5:
                local.errors.append(f"{method} {path}: {resp.status} {data[:200]!r}")
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with lock:
        result.merge(local)


def _process(args: tuple[int, str, int, float, float, int]) -> Result:
    """A client process: ``threads`` clients from ``start_at`` to ``stop_at`` (epoch s)."""
    port, session, threads, start_at, stop_at, seed = args
    result = Result()
    lock = threading.Lock()
    workers = [
        threading.Thread(
            target=_client,
            args=(port, session, start_at, stop_at, seed * 1000 + i, result, lock),
        )
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return result


def run_load(port: int, session: str, clients: int, seconds: float, processes: int = 2) -> dict:
    """Hammer the agent with ``clients`` concurrent clients for ``seconds``."""
    processes = max(1, min(processes, clients))
    per_process = [
        clients // processes + (1 if i < clients % processes else 0) for i in range(processes)
    ]
    # Spawned processes start slowly: a common start line 2 s ahead, and requests
    # are counted over [start_at, stop_at] only.
    start_at = time.time() + 2.0
    stop_at = start_at + seconds
    started = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        parts = pool.map(
            _process,
            [(port, session, n, start_at, stop_at, i) for i, n in enumerate(per_process)],
        )
    elapsed = time.monotonic() - started
    total = Result()
    for part in parts:
        total.merge(part)
    late = max(0.0, total.started - start_at)  # > 0: some client missed the start line
    latencies = sorted(total.latencies)

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else 0
        )

    return {
        "clients": clients,
        "seconds": seconds,
        "elapsed": elapsed,
        "late": late,
        "requests": total.requests,
        "rps": total.requests / seconds,  # every request was sent in [start_at, stop_at]
        "statuses": dict(total.statuses),
        "error_count": total.error_count,
        "reconnects": total.reconnects,
        "errors": total.errors,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else 0,
    }


def main() -> None:
    from bench.common import bare_server, cluster_and_agent, rss_kib

    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with cluster_and_agent() as (pg, agent):
        prepare(pg)
        pid = agent.proc.pid
        idle = rss_kib(pid)
        for clients, seconds in ((1, 5), (16, 5), (args.clients, 5)):  # warm-up included
            rows.append((run_load(agent.port, agent.session_id, clients, seconds, args.processes),
                         rss_kib(pid)))  # fmt: skip
        before = rss_kib(pid)
        main_run = run_load(
            agent.port, agent.session_id, args.clients, args.seconds, args.processes
        )
        after = rss_kib(pid)
        rows.append((main_run, after))
    with bare_server() as bare_port:
        bare = run_load(bare_port, "none", args.clients, args.seconds, args.processes)
    base = rows[0][0]["rps"] or 1
    print(f"agent RSS: idle {idle / 1024:.1f} MiB; before the {args.seconds:.0f}s run "
          f"{before / 1024:.1f} MiB; after it {after / 1024:.1f} MiB "
          f"({(after - before) / 1024:+.1f} MiB)")  # fmt: skip
    print(f"{'clients':>8} {'secs':>5} {'requests':>9} {'req/s':>7} {'x1':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'errors':>6} {'resent':>6} {'RSS MiB':>8}"
          "  statuses")  # fmt: skip
    for run, rss in rows:
        print(f"{run['clients']:>8} {run['seconds']:>5.0f} {run['requests']:>9} "
              f"{run['rps']:>7.0f} {run['rps'] / base:>6.1f} {run['p50_ms']:>7.1f} "
              f"{run['p99_ms']:>7.1f} {run['max_ms']:>7.0f} {run['error_count']:>6} "
              f"{run['reconnects']:>6} {rss / 1024:>8.1f}  {run['statuses']}")  # fmt: skip
    print(f"\nsame {args.clients} clients and mix, {args.seconds:.0f}s, against the bare "
          f"HTTP stack (bench.bare_server):")  # fmt: skip
    print(f"{'':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for name, run in (("agent", main_run), ("bare", bare)):
        print(f"{name:>8} {run['rps']:>7.0f} {run['p50_ms']:>7.1f} {run['p99_ms']:>7.1f} "
              f"{run['max_ms']:>7.0f}")  # fmt: skip
    print(f"{'agent/bare':>8} {main_run['rps'] / (bare['rps'] or 1):>7.2f} "
          f"{main_run['p50_ms'] / (bare['p50_ms'] or 1):>7.2f} "
          f"{main_run['p99_ms'] / (bare['p99_ms'] or 1):>7.2f} "
          f"{main_run['max_ms'] / (bare['max_ms'] or 1):>7.2f}")  # fmt: skip
    for run, _ in rows + [(bare, 0)]:
        if run["late"] > 0.5:
            print(f"note: {run['clients']} clients: the last one started {run['late']:.1f}s "
                  "late (fewer clients at first)")  # fmt: skip
        for error in run["errors"]:
            print("error:", error)


if __name__ == "__main__":
    main()
