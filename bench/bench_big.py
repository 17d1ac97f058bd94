"""Big catalogs: one schema of N tables (100,000 by default) through the agent.

Usage: .venv/bin/python -m bench.bench_big [--tables 100000] [--cache DIR] [--build-only]
       [--repeat 3] [--concurrent 4] [--heavy-pages 2]

Not part of the default benchmark run: the 100,000-table fixture takes minutes
to build. It is built once in a cached cluster directory (``--cache``, default
``/var/tmp/tbagent-bench-big``) that later runs start again; a database
``big_<N>`` holds N tables ``public.t_<i>`` (primary key, 10 rows, analyzed),
so ``--tables 10000`` is a quick run on the same cluster.

For the schema, database and table pages it prints the agent's time beside the
raw SQL (the plugin's queries through psycopg2 on a warm connection, rows
fetched), the reply size plain and gzipped, and the agent's RSS: idle, peak
while one then ``--concurrent`` schema pages are served, and 10 s after.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psycopg2
import urllib3

from bench.common import rss_kib
from devsupport.agentproc import AgentProcess
from temboardagent.embedded import EmbeddedCluster
from temboardagent.plugins.maintenance import catalog
from temboardagent.plugins.maintenance.sql import load_sql

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

BATCH = 1000  # tables per transaction while building
ROWS = 10
DEFAULT_CACHE = Path("/var/tmp/tbagent-bench-big")


def connect(dsn: str, dbname: str) -> Any:
    conn = psycopg2.connect(dsn, dbname=dbname)
    conn.autocommit = True
    return conn


def start_cluster(cache: Path) -> EmbeddedCluster:
    """The cached cluster, created on first use, started."""
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    cluster = EmbeddedCluster(cache / "pg")
    cluster.init()
    cluster.start()
    return cluster


def build_database(dsn: str, tables: int) -> str:
    """``big_<tables>`` with ``tables`` tables (PK, 10 rows), analyzed; resumed if partial."""
    dbname = f"big_{tables}"
    admin = connect(dsn, "postgres")
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{dbname}"')
    admin.close()
    conn = connect(dsn, dbname)
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(substr(relname, 3)::int) + 1, 0) FROM pg_class"
                    " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
                    " AND relname ~ '^t_[0-9]+$'")  # fmt: skip
        existing = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NULL")
        unanalyzed = cur.fetchone()[0]
        if existing >= tables and not unanalyzed:
            conn.close()
            return dbname
        started = time.monotonic()
        for first in range(existing, tables, BATCH):
            last = min(first + BATCH, tables) - 1
            cur.execute(
                f"""DO $$ BEGIN FOR i IN {first}..{last} LOOP EXECUTE format(
                'CREATE TABLE public.t_%s (id int PRIMARY KEY, v text);'
                'INSERT INTO public.t_%s SELECT g, md5(g::text)'
                ' FROM generate_series(1, {ROWS}) g', i, i); END LOOP; END $$"""
            )
            if (last + 1) % 10000 == 0:
                print(f"  {dbname}: {last + 1} tables", flush=True)
        print(f"  {dbname}: analyzing", flush=True)
        cur.execute("ANALYZE")
    conn.close()
    print(f"  built {dbname} in {time.monotonic() - started:.0f} s", flush=True)
    return dbname


class RSSSampler:
    """Peak RSS of a process, sampled every 10 ms in a thread while active."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> RSSSampler:
        self.peak = rss_kib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))


def raw_sql(conn: Any, context: str, params: dict, main: str, extra: Callable) -> None:
    """The page's context and main queries through psycopg2, rows fetched (no shaping)."""
    with conn.cursor() as cur:
        cur.execute(load_sql(context), params)
        ctx = dict(zip([d.name for d in cur.description], cur.fetchone()))
        catalog._execute_main(cur, main, ctx["privileged"], {**extra(ctx), "locked": ctx["locked"]})
        cur.fetchall()
        if main == "relations" and ctx.get("relid") is not None:
            cur.execute(load_sql("table_stats"), {"relid": ctx["relid"]})
            cur.fetchall()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CPU:
    """CPU seconds spent by a set of processes around a call (robust to a loaded host)."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids

    def measure(self, fn: Callable[[], Any]) -> tuple[float, float, Any]:
        """(wall s, CPU s, result) of ``fn()``."""
        before = {pid: cpu_s(pid) for pid in self.pids()}
        started = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - started
        after = {pid: cpu_s(pid) for pid in self.pids()}
        spent = sum(after.get(pid, 0.0) - before.get(pid, 0.0) for pid in set(after) | set(before))
        return wall, spent, result


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def measure(args: argparse.Namespace, cluster: EmbeddedCluster, dbname: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="tbagent-bench-big-"))
    home.chmod(0o755)
    extra = f"\n[maintenance]\nheavy_pages = {args.heavy_pages}\nstatement_timeout = 600000\n"
    agent = AgentProcess(home / "agent", cluster, extra_conf=extra, log_level="INFO")
    agent.start()
    try:
        agent.login()
        report(args, cluster, dbname, agent)
    finally:
        agent.stop()
        shutil.rmtree(home, ignore_errors=True)


def report(args: argparse.Namespace, cluster: EmbeddedCluster, dbname: str, agent: Any) -> None:
    assert agent.proc is not None
    pid = agent.proc.pid
    http = agent.new_session()
    http.headers["X-Session"] = agent.session_id
    base = f"{agent.url}/maintenance/{dbname}"
    mid = f"t_{args.tables // 2}"
    pages = [
        ("schema", "/schema/public", "schema_context", {"schema": "public"}, "relations",
         lambda ctx: {"nsp": ctx["nsp"], "relid": None}),
        ("database", "", "database_context", {}, "database", lambda ctx: {"relid": None}),
        ("table", f"/schema/public/table/{mid}", "table_context",
         {"schema": "public", "table": mid}, "relations",
         lambda ctx: {"nsp": ctx["nsp"], "relid": ctx["relid"]}),
    ]  # fmt: skip
    conn = connect(cluster.dsn("postgres"), dbname)

    def get(path: str, encoding: str = "identity") -> tuple[int, int]:
        """Reply size on the wire and decoded."""
        resp = http.get(base + path, headers={"Accept-Encoding": encoding}, stream=True,
                        timeout=900)  # fmt: skip
        wire = resp.raw.read(decode_content=False)
        resp.raise_for_status()
        if resp.headers.get("Content-Encoding") == "gzip":
            return len(wire), len(gzip.decompress(wire))
        return len(wire), len(wire)

    get(pages[2][1])  # warm: connections, caches
    time.sleep(1)
    idle = rss_kib(pid)
    print(f"\n{dbname}: {args.tables} tables; agent idle RSS {mib(idle)} MiB", flush=True)

    # one schema page, plain: RSS peak, then 10 s later
    with RSSSampler(pid) as one:
        elapsed, (plain, _) = timed(lambda: get(pages[0][1]))
    time.sleep(10)
    after_one = rss_kib(pid)

    # sizes gzipped
    _, (zipped, unzipped) = timed(lambda: get(pages[0][1], "gzip"))
    assert unzipped == plain, (unzipped, plain)

    # times: agent beside raw SQL, interleaved; CPU of the agent and its backends
    # beside CPU of this client and its backend
    admin = connect(cluster.dsn("postgres"), "postgres")

    def agent_pids() -> list[int]:
        with admin.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                        ("temboard-agent",))  # fmt: skip
            return [pid] + [row[0] for row in cur.fetchall()]

    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    agent_cpu = CPU(agent_pids)
    raw_cpu = CPU(lambda: [os.getpid(), backend])
    samples: dict[str, list[float]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for _ in range(args.repeat):
        for name, path, context, params, main, extra in pages:
            wall, cpu, size = agent_cpu.measure(lambda path=path: get(path, "gzip"))
            samples.setdefault(name + "/agent", []).append(wall)
            samples.setdefault(name + "/agent cpu", []).append(cpu)
            sizes[name] = size
            wall, cpu, _ = raw_cpu.measure(
                lambda c=context, p=params, m=main, e=extra: raw_sql(conn, c, p, m, e)
            )
            samples.setdefault(name + "/sql", []).append(wall)
            samples.setdefault(name + "/sql cpu", []).append(cpu)
    admin.close()

    # concurrent schema pages
    results: list[Any] = []

    def fetch() -> None:
        try:
            results.append(get(pages[0][1]))
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(args.concurrent)]
    with RSSSampler(pid) as many:
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        concurrent_s = time.perf_counter() - started
    failures = [r for r in results if isinstance(r, Exception)]
    time.sleep(10)
    after_many = rss_kib(pid)
    conn.close()

    header = (
        f"{'page':<9} {'agent s':>8} {'raw SQL s':>9} {'ratio':>6} {'agent CPU':>9} "
        f"{'raw CPU':>8} {'ratio':>6} {'plain':>10} {'gzip':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, *_ in pages:
        med = {key: statistics.median(samples[f"{name}/{key}"])
               for key in ("agent", "sql", "agent cpu", "sql cpu")}  # fmt: skip
        wire, decoded = sizes[name]
        print(f"{name:<9} {med['agent']:>8.2f} {med['sql']:>9.2f} {med['agent'] / med['sql']:>6.2f}"
              f" {med['agent cpu']:>9.2f} {med['sql cpu']:>8.2f}"
              f" {med['agent cpu'] / max(med['sql cpu'], 0.01):>6.2f}"
              f" {decoded / 1000:>8.0f}kB {wire / 1000:>8.0f}kB")  # fmt: skip
    print(f"(medians of {args.repeat}, interleaved; agent: HTTPS GET with gzip, reply read;")
    print(" raw SQL: the page's queries via psycopg2 on a warm connection, rows fetched;")
    print(" CPU: seconds of the agent process and its PostgreSQL backends, resp. of this")
    print(" client and its backend: the fair comparison on a loaded host)")
    print()
    print(f"schema page plain: {plain / 1e6:.1f} MB, gzipped {zipped / 1e6:.2f} MB "
          f"({plain / zipped:.0f}x); first request {elapsed:.1f} s")  # fmt: skip
    print(f"{'RSS MiB':<26} {'idle':>5} {'peak':>5} {'+peak':>6} {'after 10 s':>10} {'+after':>7}")
    for label, peak, after in (
        ("1 schema page", one.peak, after_one),
        (f"{args.concurrent} concurrent schema pages", many.peak, after_many),
    ):
        print(f"{label:<26} {mib(idle):>5} {mib(peak):>5} {mib(peak - idle):>6} "
              f"{mib(after):>10} {mib(after - idle):>7}")  # fmt: skip
    print(f"{args.concurrent} concurrent: {concurrent_s:.1f} s in all, heavy_pages = "
          f"{args.heavy_pages}, failures: {failures or 'none'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=100000)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="samples per page")
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--heavy-pages", type=int, default=2, help="maintenance.heavy_pages")
    parser.add_argument("--keep-running", action="store_true", help="leave PostgreSQL up")
    args = parser.parse_args()

    cluster = start_cluster(args.cache)
    try:
        dsn = cluster.dsn("postgres")
        print(f"cluster {cluster.basedir} port {cluster.port}; building if needed...", flush=True)
        dbname = build_database(dsn, args.tables)
        if not args.build_only:
            measure(args, cluster, dbname)
    finally:
        if not args.keep_running:
            cluster.stop()


if __name__ == "__main__":
    main()
