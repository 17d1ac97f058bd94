"""Cost of a database's advice page against its schema pages, side by side in one run.

Usage: .venv/bin/python -m bench.bench_advice [--tables 10000] [--repeat 5]

Builds a database of N tables (primary key, 3 rows each, analyzed; as
bench_read does) and times ``GET /maintenance/<db>/advice`` against the sum of
``GET /maintenance/<db>/schema/<s>`` over the database's schemas (the same
estimates, read schema by schema). The issue bounds the ratio at 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.bench_read import build_database, connect
from bench.common import cluster_and_agent

DB = "bench_advice"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with cluster_and_agent() as (pg, agent):
        build_database(pg.dsn(), DB, args.tables)
        conn = connect(pg.dsn(), DB)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_t(oast|emp)' ORDER BY 1"
            )
            schemas = [row[0] for row in cur.fetchall()]
        conn.close()

        def get(path: str) -> None:
            resp = agent.get(path, timeout=600)
            resp.raise_for_status()

        def schema_pages() -> None:
            for schema in schemas:
                get(f"/maintenance/{DB}/schema/{schema}")

        def advice_page() -> None:
            get(f"/maintenance/{DB}/advice")

        advice_page(), schema_pages()  # warm up
        pages, advices = [], []
        for _ in range(args.repeat):  # interleaved: both see the same machine load
            pages.append(timed(schema_pages))
            advices.append(timed(advice_page))
    page, adv = statistics.median(pages), statistics.median(advices)
    print(f"database of {args.tables} tables, {len(schemas)} schemas, median of {args.repeat}")
    print(f"  sum of schema pages : {page * 1000:9.1f} ms")
    print(f"  advice page         : {adv * 1000:9.1f} ms")
    print(f"  ratio advice / schema pages: {adv / page:.2f} (bound 1.5)")


if __name__ == "__main__":
    main()
