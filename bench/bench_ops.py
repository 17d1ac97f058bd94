"""Maintenance operations: start delays, list latency during VACUUM FULL, list throughput.

Usage: .venv/bin/python -m bench.bench_ops [--size-mb 500] [--seconds 5] [--ops 10]

Prints (no asserts):
1. delay between an operation's requested time and its start, for immediate and
   scheduled operations: seen by a client polling ``GET /maintenance/<kind>/<id>``
   every 5 ms, and as logged by the task manager ("Starting task ... after its
   start time"); upstream temboard-agent 7.11 was ~1.0 s (immediate) and ~1.4 s
   (scheduled) late;
   beside it, the whole cost of an immediate ANALYZE through the agent (POST to
   ``done``) against the same ANALYZE run by psycopg2 on a warm connection;
2. p50/p95 of the /scheduled lists while a VACUUM FULL of a ~size-mb table runs,
   beside the same lists idle (ratio busy/idle);
3. requests/s of ``GET /maintenance/vacuum/scheduled`` over keep-alive HTTPS with
   1 and 8 clients (wrk when installed, and Python threads each with a
   ``requests.Session``), with 0, 1,000 and 100,000 finished operations in the
   task history (upstream: ~490 and ~450 req/s), beside the same Python clients
   against the agent's bare HTTP stack (``bench.bare_server``; ratio agent/bare).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sqlite3
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg2
import requests
import urllib3

from bench.common import bare_server, cluster_and_agent, wrk_rps
from devsupport.sql import create_database

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

UTC = timezone.utc
PENDING = ("todo", "queued")
DB = "bench"


def fmt(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def stats(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values):8.1f} ms   max {values[-1]:8.1f} ms"


def logged_delays(agent, ids: list[str]) -> dict[str, float]:
    """Task manager's own start delay (s) of each task id, from the agent log."""
    pattern = re.compile(r"Starting task (\w{8}) \S+ \((-?[\d.]+)s after its start time\)")
    found = {}
    text = agent.logfile.read_text(errors="replace")
    for match in pattern.finditer(text):
        if match.group(1) in ids:
            found[match.group(1)] = float(match.group(2))
    return found


def poll_start(agent, kind: str, ids: list[str], timeout: float = 60.0) -> dict[str, float]:
    """Epoch time at which each operation was first seen out of todo/queued (5 ms polling)."""
    seen: dict[str, float] = {}
    session = agent.new_session()
    session.headers["X-Session"] = agent.session_id
    deadline = time.monotonic() + timeout
    while len(seen) < len(ids) and time.monotonic() < deadline:
        for op_id in ids:
            if op_id in seen:
                continue
            status = session.get(f"{agent.url}/maintenance/{kind}/{op_id}").json()["status"]
            if status not in PENDING:
                seen[op_id] = time.time()
        time.sleep(0.005)
    return seen


def poll_end(agent, kind: str, op_id: str, timeout: float = 60.0) -> float:
    """Epoch time at which the operation was first seen finished (5 ms polling)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = agent.get(f"/maintenance/{kind}/{op_id}").json()
        if item["status"] not in PENDING + ("doing",):
            return time.time()
        time.sleep(0.005)
    raise RuntimeError(f"{op_id} did not finish")


def bench_delays(agent, pg, n: int) -> None:
    print(f"\n1. Start delay of {n} ANALYZE operations on small tables")
    # Immediate: requested time = when the reply arrived.
    immediate, ids, whole = [], [], []
    for i in range(n):
        sent = time.time()
        resp = agent.post(f"/maintenance/{DB}/schema/public/table/d{i}/analyze", json={})
        replied = time.time()
        op_id = resp.json()["id"]
        ids.append(op_id)
        seen = poll_start(agent, "analyze", [op_id])[op_id]
        immediate.append((seen - replied) * 1000)
        whole.append((poll_end(agent, "analyze", op_id) - sent) * 1000)
    logged_now = [v * 1000 for v in logged_delays(agent, ids).values()]
    # Reference: the same statements on a warm connection.
    conn = psycopg2.connect(pg.dsn(DB))
    conn.autocommit = True
    raw = []
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        for i in range(n):
            t = time.perf_counter()
            cur.execute(f'ANALYZE "public"."d{i}"')
            raw.append((time.perf_counter() - t) * 1000)
    conn.close()

    # Scheduled: one per second, starting 2-3 s from now.
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    wanted = {}
    for i in range(n):
        when = base + timedelta(seconds=i)
        resp = agent.post(
            f"/maintenance/{DB}/schema/public/table/d{i}/analyze", json={"datetime": fmt(when)}
        )
        wanted[resp.json()["id"]] = when.timestamp()
    seen = poll_start(agent, "analyze", list(wanted), timeout=n + 30)
    scheduled = [(seen[i] - wanted[i]) * 1000 for i in wanted if i in seen]
    logged_later = [v * 1000 for v in logged_delays(agent, list(wanted)).values()]

    print(f"   {'':34} {'client-observed (5 ms polling)':>36}   task manager log")
    print(f"   immediate (from reply)             {stats(immediate)}   {stats(logged_now)}")
    print(f"   scheduled (from datetime)          {stats(scheduled)}   {stats(logged_later)}")
    print("   upstream 7.11: immediate ~1000 ms, scheduled ~1400 ms late")
    ratio = statistics.median(whole) / statistics.median(raw)
    print(f"   immediate ANALYZE, POST to seen done  {stats(whole)}")
    print(f"   same ANALYZE, psycopg2 warm conn      {stats(raw)}   agent/SQL {ratio:.1f}")


def make_big_table(pg, size_mb: int) -> int:
    conn = psycopg2.connect(pg.dsn(DB))
    conn.autocommit = True
    rows = max(1000, size_mb * 1024 * 1024 // 270)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS big")
        cur.execute("CREATE TABLE big (id bigint, v text)")
        cur.execute(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 7) FROM generate_series(1, %s) g",
            (rows,),
        )
        cur.execute("CREATE INDEX big_id ON big (id)")
        cur.execute("SELECT pg_relation_size('big')")
        size = cur.fetchone()[0]
    conn.close()
    return size


def bench_during_vacuum(agent, pg, size_mb: int, n: int = 200) -> None:
    t0 = time.monotonic()
    size = make_big_table(pg, size_mb)
    print(
        f"\n2. List latency while VACUUM FULL rewrites a {size / 2**20:.0f} MB table"
        f" (created in {time.monotonic() - t0:.0f} s), {n} sequential requests each"
    )
    session = agent.new_session()
    session.headers["X-Session"] = agent.session_id
    paths = {
        "/maintenance/vacuum/scheduled": f"{agent.url}/maintenance/vacuum/scheduled",
        f"/maintenance/{DB}/vacuum/scheduled": f"{agent.url}/maintenance/{DB}/vacuum/scheduled",
        ".../table/big/vacuum/scheduled": (
            f"{agent.url}/maintenance/{DB}/schema/public/table/big/vacuum/scheduled"
        ),
    }

    def measure() -> dict[str, tuple[float, float]]:
        """p50/p95 (ms) per path, requests interleaved so all run in the same window."""
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(n):
            for name, url in paths.items():
                t = time.perf_counter()
                resp = session.get(url)
                times[name].append((time.perf_counter() - t) * 1000)
                if resp.status_code != 200:
                    raise RuntimeError(resp.text)
        result = {}
        for name, values in times.items():
            values.sort()
            result[name] = (statistics.median(values), values[int(len(values) * 0.95) - 1])
        return result

    idle = measure()
    op_id = agent.post(
        f"/maintenance/{DB}/schema/public/table/big/vacuum", json={"mode": "full"}
    ).json()["id"]
    started = time.monotonic()
    while session.get(f"{agent.url}/maintenance/vacuum/{op_id}").json()["status"] != "doing":
        time.sleep(0.005)
    busy = measure()
    still = session.get(f"{agent.url}/maintenance/vacuum/{op_id}").json()["status"]
    while True:
        item = session.get(f"{agent.url}/maintenance/vacuum/{op_id}").json()
        if item["status"] not in ("todo", "queued", "doing"):
            break
        time.sleep(0.05)
    print(
        f"   {'path':38} {'idle p50/p95 ms':>18} {'during VACUUM FULL p50/p95 ms':>32}"
        f" {'busy/idle p50/p95':>18}"
    )
    for name in paths:
        (i50, i95), (b50, b95) = idle[name], busy[name]
        print(
            f"   {name:38} {i50:8.1f} {i95:8.1f} {b50:15.1f} {b95:15.1f}"
            f" {b50 / i50:8.2f} {b95 / i95:8.2f}"
        )
    print(
        f"   VACUUM FULL {item['status']} in {time.monotonic() - started:.1f} s"
        f" (still running at the end of the measurement: {still == 'doing'})"
    )


def requests_rps(agent, url: str, clients: int, seconds: float, bare: bool = False) -> float:
    counts = [0] * clients
    stop = time.monotonic() + seconds
    errors = []

    def loop(i: int) -> None:
        if bare:
            s = requests.Session()
            s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
            s.verify = False
        else:
            s = agent.new_session()
        s.headers["X-Session"] = agent.session_id
        while time.monotonic() < stop:
            resp = s.get(url)
            if resp.status_code != 200:
                errors.append(resp.status_code)
                return
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"errors: {errors[:5]}")
    return sum(counts) / seconds


def add_history(agent, rows: int) -> None:
    """Insert finished vacuum rows into the agent's task file (agent stopped)."""
    agent.stop()
    conn = sqlite3.connect(agent.home / "tasks.sqlite")
    now_us = int(time.time() * 1e6)
    existing = {row[0] for row in conn.execute("SELECT id FROM tasks")}
    batch = []
    for i in range(rows):
        op_id = secrets.token_hex(4)
        while op_id in existing:
            op_id = secrets.token_hex(4)
        existing.add(op_id)
        target = {"dbname": DB, "schema": "public", "table": f"d{i % 10}", "index": None}
        created = now_us - (rows - i) * 1000
        batch.append(
            (
                op_id,
                "maintenance.vacuum",
                json.dumps(target, sort_keys=True, separators=(",", ":")),
                '{"mode":"analyze"}',
                created,
                "done",
                created,
                created + 100,
                created + 900,
                1234,
                f'VACUUM (ANALYZE) "public"."d{i % 10}"',
                None,
            )
        )
    with conn:
        conn.executemany("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    conn.close()
    agent.start()
    agent.login()


def bench_throughput(agent, seconds: int, bare_port: int) -> None:
    print(
        f"\n3. GET /maintenance/vacuum/scheduled, keep-alive HTTPS, {seconds} s per figure"
        " (3 pending operations listed)"
    )
    for i in range(3):
        agent.post(
            f"/maintenance/{DB}/schema/public/table/d{i}/vacuum",
            json={"datetime": "2099-01-01T00:00:00Z"},
        )
    url = agent.url + "/maintenance/vacuum/scheduled"
    history_url = agent.url + "/maintenance/vacuum/history"
    bare_url = f"https://127.0.0.1:{bare_port}/maintenance/vacuum/scheduled"
    print(
        f"   {'history rows':>12} {'clients':>8} {'wrk req/s':>10} {'requests req/s':>15}"
        f" {'history wrk req/s':>18} {'bare requests req/s':>20} {'agent/bare':>11}"
    )
    total = 0
    for rows in (0, 1000, 100_000):
        if rows > total:
            add_history(agent, rows - total)
            total = rows
        headers = {"X-Session": agent.session_id}
        for clients in (1, 8):
            wrk = wrk_rps(url, headers, clients, seconds)
            hist = wrk_rps(history_url, headers, clients, seconds)
            py = requests_rps(agent, url, clients, seconds)
            bare = requests_rps(agent, bare_url, clients, seconds, bare=True)
            wrk_text = f"{wrk:10.0f}" if wrk is not None else f"{'n/a':>10}"
            hist_text = f"{hist:18.0f}" if hist is not None else f"{'n/a':>18}"
            print(
                f"   {rows:>12} {clients:>8} {wrk_text} {py:15.0f} {hist_text}"
                f" {bare:20.0f} {py / bare:11.2f}"
            )
    print("   upstream 7.11: ~490 req/s (1 client), ~450 req/s (8 clients); target >= 1,500")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="size of the VACUUM FULL table")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each rps figure")
    parser.add_argument("--ops", type=int, default=10, help="operations per delay figure")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: 1,2,3")
    args = parser.parse_args()
    skip = set(args.skip.split(",")) - {""}
    with cluster_and_agent() as (pg, agent):
        setup = "".join(
            f"CREATE TABLE d{i} (id int PRIMARY KEY);"
            f" INSERT INTO d{i} SELECT generate_series(1, 1000);"
            for i in range(max(args.ops, 10))
        )
        create_database(pg, DB, setup)
        print(f"CPUs: {__import__('os').cpu_count()} (client, agent and PostgreSQL share them)")
        if "1" not in skip:
            bench_delays(agent, pg, args.ops)
        if "2" not in skip:
            bench_during_vacuum(agent, pg, args.size_mb)
        if "3" not in skip:
            with bare_server() as bare_port:
                bench_throughput(agent, args.seconds, bare_port)


if __name__ == "__main__":
    main()
