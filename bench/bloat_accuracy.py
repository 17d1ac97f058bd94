"""Accuracy of the bloat estimates against what a rewrite really gives back.

Usage: .venv/bin/python -m bench.bloat_accuracy [--rows 40000] [--exact]

Builds scenarios on a throwaway cluster and compares, for each table and
index, the agent's ``bloat_bytes`` (GET .../table/<t>) with the truth:

- table: its size (main fork + TOAST main fork) minus the size of a copy of
  its rows made with the same settings (what VACUUM FULL would leave);
- index: its size minus the size of the same definition built fresh on that
  copy (what REINDEX would leave).

``pgstattuple`` / ``pgstatindex`` figures are printed beside them but are not
the truth: ``free_space + dead_tuple_len`` ignores the line pointers of
removed rows, counts fillfactor's reserved space and TOAST chunk slack as
bloat, and counts dead index entries as used. Prints one table and the mean
absolute error (in points of bloat percentage) for tables and btree indexes.
With ``--exact`` the agent's exact mode (``?bloat=exact``) is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import psycopg2

from bench.common import cluster_and_agent
from devsupport.sql import create_database

DB = "bloat_bench"


class SettlingCursor:
    """A cursor that lets DML statistics reach shared memory before maintenance.

    A backend sends its table counters at most once a second (else ten
    seconds later when idle); a VACUUM or ANALYZE of the same session that
    ran before them would be overwritten (n_live_tup counted twice). In
    production DML and maintenance come from different sessions seconds
    apart; here each scenario has its own session, closed once built.
    """

    def __init__(self, cur: Any) -> None:
        self.cur = cur
        self.dirty = False

    def execute(self, query: str, params: Any = None) -> None:
        maintenance = query.lstrip().upper().startswith(("VACUUM", "ANALYZE", "REINDEX"))
        if maintenance and self.dirty:  # the backend flushes once a second, when busy
            self.cur.execute("SELECT pg_sleep(1.1)")
        self.cur.execute(query, params)
        self.dirty = not maintenance

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cur, name)


@dataclass
class Scenario:
    name: str
    build: Callable[[Any, int], None]  # (cursor, rows)


def _table(cur: Any, name: str, columns: str, fill: str, rows: int, options: str = "") -> None:
    with_ = f" WITH ({options})" if options else ""
    cur.execute(f"CREATE TABLE {name} ({columns}){with_}")
    cur.execute(f"ALTER TABLE {name} SET (autovacuum_enabled = false)")
    cur.execute(f"INSERT INTO {name} SELECT {fill} FROM generate_series(1, {rows}) g")


def fresh(cur, rows):
    _table(cur, "fresh", "id int PRIMARY KEY, v text", "g, md5(g::text)", rows)
    cur.execute("ANALYZE fresh")


def stale(cur, rows):
    _table(cur, "stale", "id int PRIMARY KEY, v text", "g, md5(g::text)", rows)
    cur.execute("ANALYZE stale")
    cur.execute("UPDATE stale SET v = md5(v) WHERE id % 2 = 0")


def deleted(cur, rows):
    _table(cur, "deleted", "id int PRIMARY KEY, v text", "g, md5(g::text)", rows)
    cur.execute("DELETE FROM deleted WHERE id % 2 = 0")
    cur.execute("VACUUM ANALYZE deleted")


def hot(cur, rows):
    _table(cur, "hot", "id int PRIMARY KEY, n int", "g, 0", rows, "fillfactor = 80")
    cur.execute("ANALYZE hot")
    for _ in range(3):
        cur.execute("UPDATE hot SET n = n + 1 WHERE id % 3 = 0")


def fillfactor70(cur, rows):
    _table(cur, "ff70", "id int PRIMARY KEY, v text", "g, md5(g::text)", rows, "fillfactor = 70")
    cur.execute("ANALYZE ff70")


def toast(cur, rows):
    _table(
        cur,
        "wide",
        "id int PRIMARY KEY, doc text",
        "g, (SELECT string_agg(md5((g * 100 + k)::text), '') FROM generate_series(1, 80) k)",
        max(rows // 20, 100),
    )
    cur.execute("ANALYZE wide")


def nulls_few(cur, rows):
    _table(
        cur,
        "nulls_few",
        "id int, a int, b bigint, c text",
        "g, CASE WHEN g % 50 = 0 THEN NULL ELSE g END, g, md5(g::text)",
        rows,
    )
    cur.execute("ANALYZE nulls_few")


def nulls_many(cur, rows):
    _table(
        cur,
        "nulls_many",
        "id int, a int, b bigint, c text",
        "g, CASE WHEN g % 2 = 0 THEN NULL ELSE g END, CASE WHEN g % 3 = 0 THEN NULL ELSE g END,"
        " md5(g::text)",
        rows,
    )
    cur.execute("ANALYZE nulls_many")


def mixed_alignment(cur, rows):
    _table(
        cur,
        "mixed",
        "a int, b smallint, c bigint, d bool, e timestamptz, f smallint, g2 bigint",
        "g, 1, g, true, now(), 2, g",
        rows,
    )
    cur.execute("ANALYZE mixed")


def nullable_btree(cur, rows):
    _table(
        cur,
        "nullidx",
        "id int, k int",
        "g, CASE WHEN g % 1000 = 0 THEN NULL ELSE g END",
        rows,
    )
    cur.execute("CREATE INDEX nullidx_k ON nullidx (k)")
    cur.execute("DELETE FROM nullidx WHERE id % 2 = 0")
    cur.execute("VACUUM ANALYZE nullidx")


def text_btree(cur, rows):
    _table(cur, "texts", "id int, t text", "g, md5(g::text)", rows)
    cur.execute("CREATE INDEX texts_t ON texts (t)")
    cur.execute("ANALYZE texts")


def multicolumn(cur, rows):
    _table(cur, "multi", "a int, b text, c bigint", "g % 1000, md5(g::text), g", rows)
    cur.execute("CREATE INDEX multi_abc ON multi (a, b, c)")
    cur.execute("ANALYZE multi")


def partial_expression(cur, rows):
    _table(cur, "pe", "id int, t text, flag bool", "g, md5(g::text), g % 10 = 0", rows)
    cur.execute("CREATE INDEX pe_partial ON pe (id) WHERE flag")
    cur.execute("CREATE INDEX pe_expr ON pe (lower(t))")
    cur.execute("ANALYZE pe")


def after_vacuum_full(cur, rows):
    _table(cur, "vfull", "id int PRIMARY KEY, v text", "g, md5(g::text)", rows)
    cur.execute("DELETE FROM vfull WHERE id % 3 = 0")
    cur.execute("VACUUM FULL vfull")
    cur.execute("ANALYZE vfull")


def after_reindex(cur, rows):
    _table(cur, "reidx", "id int PRIMARY KEY, v text", "g, md5(g::text)", rows)
    cur.execute("DELETE FROM reidx WHERE id % 2 = 0")
    cur.execute("VACUUM reidx")
    cur.execute("REINDEX TABLE reidx")
    cur.execute("ANALYZE reidx")


SCENARIOS = [
    Scenario("freshly loaded", fresh),
    Scenario("half updated after ANALYZE", stale),
    Scenario("50% deleted, VACUUM", deleted),
    Scenario("HOT updates, no VACUUM", hot),
    Scenario("fillfactor 70", fillfactor70),
    Scenario("wide rows with TOAST", toast),
    Scenario("nullable, 2% nulls", nulls_few),
    Scenario("nullable, many nulls", nulls_many),
    Scenario("mixed alignment", mixed_alignment),
    Scenario("btree nullable int, half deleted", nullable_btree),
    Scenario("btree on text", text_btree),
    Scenario("multicolumn btree", multicolumn),
    Scenario("partial and expression", partial_expression),
    Scenario("after VACUUM FULL", after_vacuum_full),
    Scenario("after REINDEX", after_reindex),
]


def table_of(scenario: Scenario, cur: Any) -> list[str]:
    cur.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND relkind = 'r' AND relname NOT LIKE 'copy\\_%' ORDER BY oid"
    )
    return [row[0] for row in cur.fetchall()]


def main_size(cur: Any, table: str) -> int:
    """Main fork of the table plus main fork of its TOAST table."""
    cur.execute(
        "SELECT pg_relation_size(c.oid) + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0)"
        " FROM pg_class c WHERE c.oid = %s::regclass",
        (table,),
    )
    return cur.fetchone()[0]


def truth(cur: Any, table: str) -> tuple[int, dict[str, int]]:
    """Bytes a rewrite gives back: for the table, and for each of its indexes."""
    copy = f"copy_{table}"
    cur.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass", (table,))
    options = cur.fetchone()[0]
    with_ = f" WITH ({', '.join(options)})" if options else ""
    cur.execute(f"DROP TABLE IF EXISTS {copy}")
    cur.execute(
        f"CREATE TABLE {copy} (LIKE {table} INCLUDING DEFAULTS INCLUDING STORAGE"
        f" INCLUDING COMPRESSION){with_}"
    )
    cur.execute(f"INSERT INTO {copy} SELECT * FROM {table}")
    table_truth = main_size(cur, table) - main_size(cur, copy)
    cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid),"
        " pg_relation_size(i.indexrelid)"
        " FROM pg_index i WHERE i.indrelid = %s::regclass ORDER BY 1",
        (table,),
    )
    indexes = {}
    for name, definition, size in cur.fetchall():
        rest = definition[definition.index(" USING ") :]
        cur.execute(f"CREATE INDEX copy_{name} ON {copy}{rest}")
        cur.execute("SELECT pg_relation_size(%s::regclass)", (f"copy_{name}",))
        indexes[name] = size - cur.fetchone()[0]
    cur.execute(f"DROP TABLE {copy}")
    return table_truth, indexes


def pgstattuple_percent(cur: Any, name: str, index: bool) -> float | None:
    if index:
        cur.execute(
            "SELECT 100 - avg_leaf_density FROM pgstatindex(%s::regclass)"
            " WHERE (SELECT amname FROM pg_am a JOIN pg_class c ON c.relam = a.oid"
            "        WHERE c.oid = %s::regclass) = 'btree'",
            (name, name),
        )
    else:
        cur.execute(
            "SELECT (free_space + dead_tuple_len) * 100.0 / nullif(table_len, 0)"
            " FROM pgstattuple(%s::regclass)",
            (name,),
        )
    row = cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


def pct(part: float | None, whole: float) -> float | None:
    if part is None or not whole:
        return None
    return 100.0 * part / whole


def fmt(value: float | None) -> str:
    return "  null" if value is None else f"{value:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40000)
    parser.add_argument("--exact", action="store_true", help="also the agent's ?bloat=exact")
    args = parser.parse_args()
    results: list[tuple] = []
    with cluster_and_agent() as (pg, agent):
        create_database(pg, DB)
        conn = psycopg2.connect(pg.dsn(DB))
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION pgstattuple")
        built: list[tuple[Scenario, list[str]]] = []
        for scenario in SCENARIOS:
            before = set(table_of(scenario, cur))
            session = psycopg2.connect(pg.dsn(DB))  # its exit flushes its statistics
            session.autocommit = True
            scenario.build(SettlingCursor(session.cursor()), args.rows)
            session.close()
            built.append((scenario, [t for t in table_of(scenario, cur) if t not in before]))
        time.sleep(0.5)
        for scenario, tables in built:
            for table in tables:
                page = agent.get(f"/maintenance/{DB}/schema/public/table/{table}").json()
                exact = None
                if args.exact:
                    exact = agent.get(
                        f"/maintenance/{DB}/schema/public/table/{table}", params={"bloat": "exact"}
                    ).json()
                size = main_size(cur, table)
                table_truth, index_truths = truth(cur, table)
                results.append(
                    (
                        scenario.name, table, "table",
                        pct(table_truth, size), pct(page["bloat_bytes"], size),
                        pgstattuple_percent(cur, table, False),
                        pct(exact["bloat_bytes"], size) if exact else None,
                    )
                )  # fmt: skip
                for item in page["indexes"]:
                    name = item["name"]
                    cur.execute("SELECT pg_relation_size(%s::regclass)", (name,))
                    isize = cur.fetchone()[0]
                    exact_item = None
                    if exact:
                        exact_item = [i for i in exact["indexes"] if i["name"] == name][0]
                    results.append(
                        (
                            scenario.name, name, item["type"],
                            pct(index_truths[name], isize), pct(item["bloat_bytes"], isize),
                            pgstattuple_percent(cur, name, True),
                            pct(exact_item["bloat_bytes"], isize) if exact_item else None,
                        )
                    )  # fmt: skip
        conn.close()

    header = f"{'scenario':34} {'object':14} {'kind':6} {'true%':>6} {'est%':>6} {'err':>6}"
    header += f" {'pgstattuple%':>12}" + (f" {'exact%':>6}" if args.exact else "")
    print(header)
    errors: dict[str, list[float]] = {"table": [], "btree": []}
    worst = 0.0
    for name, obj, kind, true, est, stat, exact in results:
        err = None if true is None or est is None else est - true
        if err is not None and kind in errors:
            errors[kind].append(abs(err))
            worst = max(worst, abs(err))
        line = f"{name:34} {obj:14} {kind:6} {fmt(true)} {fmt(est)} {fmt(err)} {fmt(stat):>12}"
        if args.exact:
            line += f" {fmt(exact)}"
        print(line)
    for kind, values in errors.items():
        if values:
            print(
                f"mean absolute error, {kind}s: {statistics.mean(values):.2f} points"
                f" over {len(values)} objects (worst {max(values):.1f})"
            )
    print(f"worst error: {worst:.1f} points (goal: every object within 5, mean <= 2)")


if __name__ == "__main__":
    main()
