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
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psycopg2
import requests
import urllib3

from bench.common import rss_kib
from temboardagent.embedded import EmbeddedCluster
from temboardagent.plugins.maintenance import catalog
from test.func.agentproc import AgentProcess

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
