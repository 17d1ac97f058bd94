"""Maintenance read side: latency of the four GETs beside the plugin's own SQL.

Usage: .venv/bin/python -m bench.bench_read [--tables 2000,10000[,50000]] [--repeat 9]
       [--small-dbs 20] [--parallel 4]
       [--pg-dsn DSN --agent-url URL --key KEY]   (an existing instance and agent)

Builds one database per table count (N tables, each with a primary key, 3 rows,
analyzed) and ``--small-dbs`` small databases, in a throwaway cluster with a started
agent unless ``--pg-dsn``/``--agent-url`` are given (databases are then created there,
reused when already built). For each GET it prints median and p95 over keep-alive
HTTPS, beside the lower bound: the same queries of the plugin run directly through
psycopg2 on a warm connection (rows fetched, no shaping); ``catalog`` is the plugin's
function called in-process (SQL + shaping, no HTTP/JSON). For ``GET /maintenance``
the lower bound is the listing plus the slowest database (they run concurrently).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import psycopg2
import requests
import urllib3

from temboardagent.plugins.maintenance import catalog
from temboardagent.plugins.maintenance.sql import load_sql

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

BATCH = 500  # tables per transaction while building (bounds the lock table use)
SMALL_TABLES = 20


def connect(dsn: str, dbname: str) -> Any:
    conn = psycopg2.connect(dsn, dbname=dbname)
    conn.autocommit = True
    return conn


def build_database(dsn: str, dbname: str, tables: int) -> None:
    """Create ``dbname`` with ``tables`` tables t_<i> (PK, 3 rows), analyzed; reuse it."""
    admin = connect(dsn, "postgres")
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{dbname}"')
    admin.close()
    conn = connect(dsn, dbname)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind = 'r' AND relname LIKE 't\\_%'"
        )
        existing = cur.fetchone()[0]
        if existing == tables:
            conn.close()
            return
        started = time.monotonic()
        for first in range(existing, tables, BATCH):
            last = min(first + BATCH, tables) - 1
            cur.execute(
                f"""DO $$ BEGIN FOR i IN {first}..{last} LOOP EXECUTE format(
                'CREATE TABLE public.t_%s (id int PRIMARY KEY, v text);'
                'INSERT INTO public.t_%s SELECT g, md5(g::text) FROM generate_series(1, 3) g',
                i, i); END LOOP; END $$"""
            )
        cur.execute("ANALYZE")
    conn.close()
    print(f"  built {dbname}: {tables} tables in {time.monotonic() - started:.1f} s", flush=True)


class Timer:
    """Interleaved samples of several callables (fair under a noisy machine)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = fn()
        self.samples.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return result

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def p95(self, name: str) -> float:
        values = sorted(self.samples[name])
        return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


class Lower:
    """The plugin's queries on warm connections, rows fetched, no shaping."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conns: dict[str, Any] = {}

    def conn(self, dbname: str) -> Any:
        if dbname not in self.conns:
            self.conns[dbname] = connect(self.dsn, dbname)
        return self.conns[dbname]

    def _run(self, dbname: str, context: str, params: dict, main: str, extra: Callable) -> dict:
        with self.conn(dbname).cursor() as cur:
            cur.execute(load_sql(context), params)
            row = cur.fetchone()
            ctx = dict(zip([d.name for d in cur.description], row))
            params = {**extra(ctx), "locked": ctx["locked"]}
            catalog._execute_main(cur, main, ctx["privileged"], params)
            cur.fetchall()
        return ctx

    def database(self, dbname: str) -> None:
        self._run(dbname, "database_context", {}, "database", lambda ctx: {"relid": None})

    def schema(self, dbname: str, schema: str) -> None:
        self._run(
            dbname,
            "schema_context",
            {"schema": schema},
            "relations",
            lambda ctx: {"nsp": ctx["nsp"], "relid": None},
        )

    def table(self, dbname: str, schema: str, table: str) -> None:
        ctx = self._run(
            dbname,
            "table_context",
            {"schema": schema, "table": table},
            "relations",
            lambda ctx: {"nsp": ctx["nsp"], "relid": ctx["relid"]},
        )
        with self.conn(dbname).cursor() as cur:
            cur.execute(load_sql("table_stats"), {"relid": ctx["relid"]})
            cur.fetchall()

    def instance(self, databases: list[str]) -> tuple[float, float]:
        """Listing + every database sequentially: (slowest database ms, sum ms)."""
        started = time.perf_counter()
        with self.conn("postgres").cursor() as cur:
            cur.execute(load_sql("databases"))
            cur.fetchall()
        listing = (time.perf_counter() - started) * 1000
        times = []
        for dbname in databases:
            started = time.perf_counter()
            self.database(dbname)
            times.append((time.perf_counter() - started) * 1000)
        return listing + max(times), listing + sum(times)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


@contextmanager
def catalog_connect(dsn: str) -> Iterator[Callable]:
    """A connect(dbname) factory for catalog.instance, with warm connections."""
    pool: dict[str, Any] = {}

    @contextmanager
    def connect_db(dbname: str | None, pooled: bool = True) -> Iterator[Any]:
        name = dbname or "postgres"
        if name not in pool:
            pool[name] = connect(dsn, name)
        yield pool[name]

    try:
        yield connect_db
    finally:
        for conn in pool.values():
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="2000,10000", help="comma-separated table counts")
    parser.add_argument("--repeat", type=int, default=9, help="samples per GET")
    parser.add_argument("--small-dbs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=4, help="maintenance.parallel_databases")
    parser.add_argument("--pg-dsn", help="libpq DSN of an existing instance (superuser)")
    parser.add_argument("--agent-url", help="URL of a running agent on that instance")
    parser.add_argument("--key", help="the agent's key (with --agent-url)")
    args = parser.parse_args()
    counts = [int(n) for n in args.tables.split(",") if n]

    if args.pg_dsn and args.agent_url:
        setup = nullcontext((None, None))
    else:
        from bench.common import cluster_and_agent

        extra = f"\n[maintenance]\nparallel_databases = {args.parallel}\n"
        setup = cluster_and_agent(extra_conf=extra)

    with setup as (pg, agent):
        dsn = args.pg_dsn or pg.dsn("postgres")
        http = requests.Session()
        http.verify = False
        if agent is not None:
            base = agent.url
            http.headers["X-Session"] = agent.session_id
        else:
            base = args.agent_url.rstrip("/")
            http.headers["X-TemBoard-Agent-Key"] = args.key
        print("building catalogs...", flush=True)
        for n in counts:
            build_database(dsn, f"bench_read_{n}", n)
        small = [f"bench_read_small_{i:02d}" for i in range(args.small_dbs)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda name: build_database(dsn, name, SMALL_TABLES), small))
        report(args, counts, dsn, base, http)


def report(args: argparse.Namespace, counts: list[int], dsn: str, base: str, http) -> None:
    lower = Lower(dsn)
    timer = Timer()
    sizes: dict[str, int] = {}

    def get(path: str) -> None:
        resp = http.get(base + path, timeout=120, verify=False)
        resp.raise_for_status()
        sizes[path] = len(resp.content)

    admin = connect(dsn, "postgres")
    with admin.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")
        connectable = [name for (name,) in cur.fetchall()]
    admin.close()

    pages = []
    for n in counts:
        db = f"bench_read_{n}"
        conn = lower.conn(db)
        pages += [
            (f"schema, {n} tables", f"/maintenance/{db}/schema/public",
             lambda db=db: lower.schema(db, "public"),
             lambda conn=conn: catalog.schema(conn, "public")),
            (f"database, {n} tables", f"/maintenance/{db}",
             lambda db=db: lower.database(db),
             lambda conn=conn: catalog.database(conn)),
            (f"table, {n}-table db", f"/maintenance/{db}/schema/public/table/t_{n // 2}",
             lambda db=db, n=n: lower.table(db, "public", f"t_{n // 2}"),
             lambda conn=conn, n=n: catalog.table(conn, "public", f"t_{n // 2}")),
        ]  # fmt: skip
    slowest: list[float] = []
    sequential: list[float] = []

    def instance_lower() -> None:
        worst, total = lower.instance(connectable)
        slowest.append(worst)
        sequential.append(total)

    with catalog_connect(dsn) as factory:
        pages.append(
            (f"instance, {len(connectable)} dbs", "/maintenance", instance_lower,
             lambda: catalog.instance(factory, args.parallel)),
        )  # fmt: skip
        print("measuring...", flush=True)
        for label, path, sql, inproc in pages:
            for _ in range(2):  # warm the agent's and our connections
                get(path)
                sql()
                inproc()
            for _ in range(args.repeat):
                timer.run(label + "/agent", lambda path=path: get(path))
                timer.run(label + "/sql", sql)
                timer.run(label + "/catalog", inproc)
    lower.close()

    header = (
        f"{'GET':<26} {'agent med':>9} {'p95':>7} {'catalog':>8} {'SQL med':>8} "
        f"{'p95':>7} {'ratio':>6} {'reply':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for label, path, _, _ in pages:
        agent_med = timer.median(label + "/agent")
        if path == "/maintenance":
            sql_med = statistics.median(slowest)
            sql_p95 = sorted(slowest)[min(len(slowest) - 1, int(0.95 * len(slowest)))]
        else:
            sql_med, sql_p95 = timer.median(label + "/sql"), timer.p95(label + "/sql")
        print(
            f"{label:<26} {agent_med:>9.1f} {timer.p95(label + '/agent'):>7.1f} "
            f"{timer.median(label + '/catalog'):>8.1f} {sql_med:>8.1f} {sql_p95:>7.1f} "
            f"{agent_med / sql_med:>6.2f} {sizes[path] / 1024:>8.0f}K"
        )
    print()
    print("times in ms; agent: HTTPS GET (keep-alive, reply read); catalog: plugin function")
    print("in-process; SQL: the plugin's queries via psycopg2, rows fetched; ratio agent/SQL.")
    print(
        f"instance: SQL = listing + slowest database; all databases one after the other: "
        f"{statistics.median(sequential):.1f} ms (median); parallel_databases={args.parallel}."
    )


if __name__ == "__main__":
    main()
