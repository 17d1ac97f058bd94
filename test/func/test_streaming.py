"""Streamed replies, gzip, statement timeouts said as 504, heavy-page slots.

The streamed pages are compared with the plain encoding of the same data,
built the way the agent built it before streaming (whole result fetched,
then ``json.dumps``).
"""

from __future__ import annotations

import gzip
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg2
import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql
from temboardagent.jsonstream import dump_json
from temboardagent.plugins.maintenance import catalog
from temboardagent.plugins.maintenance.sql import load_sql
from temboardagent.web.replies import CHUNK_SIZE

DB = "streaming"
TABLES = 150  # ~1 kB of JSON each with its index: the page is streamed (> CHUNK_SIZE)
SCHEMAS = 250  # ~300 B each in the database page
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def streaming_db(pg):
    """A database whose schema and database pages exceed one reply chunk.

    Autovacuum is off and everything is vacuumed and analyzed once, so sizes
    and statistics stay put between the agent's read and the test's own.
    """
    run_sql(pg, f"DROP DATABASE IF EXISTS {DB}")
    run_sql(pg, f"CREATE DATABASE {DB}")
    run_sql(
        pg,
        f"""DO $$ BEGIN
        FOR i IN 1..{TABLES} LOOP EXECUTE format(
            'CREATE TABLE public.%I (id int PRIMARY KEY, v text)'
            ' WITH (autovacuum_enabled = false);'
            'INSERT INTO public.%I SELECT g, md5(g::text) FROM generate_series(1, 20) g',
            't_' || i || CASE WHEN i % 7 = 0 THEN ' "é€' ELSE '' END,
            't_' || i || CASE WHEN i % 7 = 0 THEN ' "é€' ELSE '' END);
        END LOOP;
        FOR i IN 1..{SCHEMAS} LOOP EXECUTE format('CREATE SCHEMA %I', 's_' || i); END LOOP;
        END $$""",
        dbname=DB,
    )
    for statement in (
        "CREATE TABLE public.no_index (v text) WITH (autovacuum_enabled = false)",
        "CREATE INDEX two_a ON public.t_1 (v)",
        "VACUUM ANALYZE",
    ):
        run_sql(pg, statement, dbname=DB)
    yield DB


def plain_schema(pg, dbname: str, schema: str) -> dict[str, Any]:
    """The schema page as the agent built it before streaming: rows fetched at once."""
    conn = psycopg2.connect(pg.dsn(dbname))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(load_sql("schema_context"), {"schema": schema})
            ctx = dict(zip([d.name for d in cur.description], cur.fetchone()))
        tables, indexes = catalog._relations(conn, ctx["nsp"], None, ctx)
        version = conn.server_version
    finally:
        conn.close()
    total = sum(t["total_bytes"] for t in tables)
    return {
        "indexes": indexes,
        "size": catalog.size_pretty(total, version) if tables else None,
        "tables": tables,
        "total_bytes": total,
    }


def plain_database(pg, dbname: str) -> dict[str, Any]:
    """The database page as the agent built it before streaming."""
    conn = psycopg2.connect(pg.dsn(dbname))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(load_sql("database_context"))
            ctx = dict(zip([d.name for d in cur.description], cur.fetchone()))
            params = {"relid": None, "locked": ctx["locked"]}
            catalog._execute_main(cur, "database", ctx["privileged"], params)
            names = [d.name for d in cur.description]
            schemas = [dict(zip(names, row)) for row in cur.fetchall()]
        version = conn.server_version
    finally:
        conn.close()
    total = ctx["total_bytes"]
    size = catalog.size_pretty(total, version)
    return {"schemas": schemas, "total_bytes": total, "total_size": size}


def assert_streamed(resp) -> None:
    assert resp.status_code == 200, resp.text
    assert "Content-Length" not in resp.headers
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert len(resp.content) > CHUNK_SIZE


def same_order(expected: dict, streamed: dict) -> dict:
    """``expected`` with its keys in the streamed reply's order (key order is free)."""
    assert set(expected) == set(streamed)
    return {key: expected[key] for key in streamed}


def test_streamed_schema_equals_plain_encoding(agent, pg, streaming_db):
    resp = agent.get(f"/maintenance/{streaming_db}/schema/public", headers=IDENTITY)
    assert_streamed(resp)
    streamed = json.loads(resp.content)
    expected = plain_schema(pg, streaming_db, "public")
    assert len(expected["tables"]) == TABLES + 1
    assert len(expected["indexes"]) == TABLES + 1
    # byte for byte the plain encoding of the same data, keys in the streamed order
    assert resp.content == dump_json(same_order(expected, streamed))


def test_streamed_database_equals_plain_encoding(agent, pg, streaming_db):
    resp = agent.get(f"/maintenance/{streaming_db}", headers=IDENTITY)
    assert_streamed(resp)
    streamed = json.loads(resp.content)
    expected = plain_database(pg, streaming_db)
    assert len(expected["schemas"]) >= SCHEMAS + 1
    assert resp.content == dump_json(same_order(expected, streamed))


def test_small_stream_is_sent_whole(agent, pg, streaming_db):
    """A streamed page that fits in one chunk gets a Content-Length, same JSON."""
    resp = agent.get(f"/maintenance/{streaming_db}/schema/s_1", headers=IDENTITY)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Length"] == str(len(resp.content))
    expected = plain_schema(pg, streaming_db, "s_1")
    assert resp.content == dump_json(same_order(expected, json.loads(resp.content)))
    assert expected["tables"] == [] and expected["size"] is None


def test_stream_errors_before_the_first_byte_are_json_errors(agent, streaming_db):
    resp = agent.get(f"/maintenance/{streaming_db}/schema/nope")
    assert resp.status_code == 404
    assert resp.json() == {"error": "Schema 'nope' not found."}
    resp = agent.get("/maintenance/no_such_db/schema/public")
    assert resp.status_code == 404
    assert resp.json() == {"error": "Database 'no_such_db' not found."}


def test_gzip_when_asked(agent, streaming_db):
    path = f"/maintenance/{streaming_db}/schema/public"
    plain = agent.get(path, headers=IDENTITY)
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"

    zipped = agent.get(path, headers={"Accept-Encoding": "gzip"}, stream=True)
    raw = zipped.raw.read(decode_content=False)
    assert zipped.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert len(raw) < len(plain.content) / 5
    assert gzip.decompress(raw) == plain.content

    # requests asks for gzip by default and decodes it transparently
    decoded = agent.get(path)
    assert decoded.headers["Content-Encoding"] == "gzip"
    assert decoded.content == plain.content


def test_gzip_of_plain_replies_and_refusals(agent, streaming_db):
    table = f"/maintenance/{streaming_db}/schema/public/table/t_1"
    resp = agent.get(table, headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200
    assert resp.headers["Content-Encoding"] == "gzip"  # a table page passes 1 kB
    assert resp.json() == agent.get(table, headers=IDENTITY).json()
    for refusal in ("gzip;q=0", "deflate, br", "*;q=0", "identity"):
        resp = agent.get(table, headers={"Accept-Encoding": refusal})
        assert "Content-Encoding" not in resp.headers, refusal
        assert resp.json()["name"] == "t_1"
    # a reply under the threshold is never compressed
    tiny = agent.get("/profile", headers={"Accept-Encoding": "gzip"})
    assert tiny.status_code == 200
    assert "Content-Encoding" not in tiny.headers


@pytest.fixture(scope="module")
def limited_agent(pg, workdir, streaming_db):
    """An agent with a tiny read statement_timeout and one heavy-page slot."""
    proc = AgentProcess(
        workdir / "agent-limited",
        pg,
        extra_conf="\n[maintenance]\nstatement_timeout = 1\nheavy_pages = 1\n",
    )
    proc.start()
    proc.login()
    yield proc
    proc.stop()


def test_statement_timeout_is_a_504(limited_agent, streaming_db):
    for path in (f"/maintenance/{streaming_db}/schema/public", f"/maintenance/{streaming_db}"):
        resp = limited_agent.get(path)
        assert resp.status_code == 504, (path, resp.text)
        error = resp.json()["error"]
        assert "statement timeout (1 ms)" in error
        assert "[maintenance] statement_timeout" in error
    assert limited_agent.get("/profile").status_code == 200
    log = limited_agent.logfile.read_text()
    assert "Unexpected PostgreSQL error" not in log
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def one_slot_agent(pg, workdir, streaming_db):
    proc = AgentProcess(
        workdir / "agent-one-slot", pg, extra_conf="\n[maintenance]\nheavy_pages = 1\n"
    )
    proc.start()
    proc.login()
    yield proc
    proc.stop()


def test_heavy_pages_beyond_the_limit_wait(one_slot_agent, streaming_db):
    """With one slot, concurrent heavy pages all succeed (they queue)."""
    paths = [f"/maintenance/{streaming_db}/schema/public"] * 3 + [f"/maintenance/{streaming_db}"]
    start = threading.Barrier(len(paths))

    def get(path: str):
        start.wait()
        return one_slot_agent.get(path, headers=IDENTITY, timeout=120)

    with ThreadPoolExecutor(len(paths)) as pool:
        replies = list(pool.map(get, paths))
    assert [r.status_code for r in replies] == [200] * len(paths), [r.text for r in replies]
    assert replies[0].content == replies[1].content == replies[2].content
    assert json.loads(replies[3].content)["schemas"]


def test_streamed_history_equals_plain_encoding(one_slot_agent, streaming_db):
    """Enough operations that the history passes one chunk (an agent of its own)."""
    agent = one_slot_agent
    target = f"/maintenance/{streaming_db}/schema/public/table/t_2/analyze"

    def schedule(i: int) -> str:
        body = {"datetime": f"2099-01-{1 + i // 24:02d}T{i % 24:02d}:00:00Z"}
        resp = agent.post(target, json=body)
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(schedule, range(300)))
    try:
        resp = agent.get("/maintenance/analyze/history?limit=1000", headers=IDENTITY)
        assert_streamed(resp)
        items = json.loads(resp.content)
        assert resp.content == dump_json(items)
        assert ids <= {item["id"] for item in items}
        zipped = agent.get("/maintenance/analyze/history?limit=1000")
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert zipped.content == resp.content
        one = agent.get(f"/maintenance/analyze/{items[0]['id']}").json()
        assert one == items[0]
    finally:
        for op in ids:
            agent.delete(f"/maintenance/analyze/{op}")
