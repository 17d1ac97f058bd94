"""Objects whose names contain ``/``, ``%``, ``+``, spaces and quotes are
reachable through every route (each path segment is decoded exactly once)."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from devsupport.sql import run_sql

DB = "slash/db%+ \"q'"
SCHEMA = "s/1 %2F +\"q'"
TABLE = "t/a%25b+c d\"'"
INDEX = "i/x %41+y\"'"
DECOY = "t%2Fa%25b+c d\"'"  # what a double decoding (or none) would look for
LATER = {"datetime": "2100-01-01T00:00:00Z"}


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def seg(name: str) -> str:
    return quote(name, safe="")


@pytest.fixture(scope="module")
def names(pg):
    run_sql(pg, f"DROP DATABASE IF EXISTS {q(DB)}")
    run_sql(pg, f"CREATE DATABASE {q(DB)}")
    run_sql(
        pg,
        f"CREATE SCHEMA {q(SCHEMA)};"
        f" CREATE TABLE {q(SCHEMA)}.{q(TABLE)} (id int);"
        f" INSERT INTO {q(SCHEMA)}.{q(TABLE)} SELECT pg_catalog.generate_series(1, 100);"
        f" CREATE INDEX {q(INDEX)} ON {q(SCHEMA)}.{q(TABLE)} (id);"
        f" ANALYZE {q(SCHEMA)}.{q(TABLE)}",
        dbname=DB,
    )
    yield
    run_sql(pg, f"DROP DATABASE IF EXISTS {q(DB)} WITH (FORCE)")


def _finished(agent, kind: str, op_id: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        item = agent.get(f"/maintenance/{kind}/{op_id}").json()
        if item["status"] not in ("todo", "queued", "doing"):
            return item
        assert time.monotonic() < deadline, item
        time.sleep(0.05)


def test_pages_of_odd_names(agent, names):
    db, schema, table = seg(DB), seg(SCHEMA), seg(TABLE)
    resp = agent.get(f"/maintenance/{db}")
    assert resp.status_code == 200, resp.text
    assert SCHEMA in [s["name"] for s in resp.json()["schemas"]]
    resp = agent.get(f"/maintenance/{db}/schema/{schema}")
    assert resp.status_code == 200, resp.text
    assert [t["name"] for t in resp.json()["tables"]] == [TABLE]
    resp = agent.get(f"/maintenance/{db}/schema/{schema}/table/{table}")
    assert resp.status_code == 200, resp.text
    assert [i["name"] for i in resp.json()["indexes"]] == [INDEX]
    # The key works the same way (query string beside an encoded path).
    resp = agent.anon.get(f"{agent.url}/maintenance/{db}/schema/{schema}?key={agent.key}")
    assert resp.status_code == 200, resp.text
    # Decoded exactly once: the encoded form of the name is another (absent) table.
    resp = agent.get(f"/maintenance/{db}/schema/{schema}/table/{seg(DECOY)}")
    assert resp.status_code == 404, resp.text


def test_operations_and_lists_of_odd_names(agent, names):
    db, schema, table, index = seg(DB), seg(SCHEMA), seg(TABLE), seg(INDEX)
    table_path = f"/maintenance/{db}/schema/{schema}/table/{table}"
    resp = agent.post(f"{table_path}/vacuum", json={})
    assert resp.status_code == 200, resp.text
    item = _finished(agent, "vacuum", resp.json()["id"])
    assert item["status"] == "done", item
    assert item["table"] == TABLE and item["schema"] == SCHEMA and item["dbname"] == DB

    resp = agent.post(f"/maintenance/{db}/schema/{schema}/index/{index}/reindex", json={})
    assert resp.status_code == 200, resp.text
    item = _finished(agent, "reindex", resp.json()["id"])
    assert item["status"] == "done", item
    assert item["index"] == INDEX

    # Scheduled lists at each level see pending operations of these objects.
    vacuum = agent.post(f"{table_path}/vacuum", json=LATER).json()["id"]
    analyze = agent.post(f"{table_path}/analyze", json=LATER).json()["id"]
    reindex = agent.post(f"/maintenance/{db}/schema/{schema}/index/{index}/reindex", json=LATER)
    reindex = reindex.json()["id"]
    try:
        for path, expected in (
            (f"{table_path}/vacuum/scheduled", vacuum),
            (f"{table_path}/analyze/scheduled", analyze),
            (f"/maintenance/{db}/vacuum/scheduled", vacuum),
            (f"/maintenance/{db}/schema/{schema}/reindex/scheduled", reindex),
            (f"{table_path}/reindex/scheduled", reindex),
        ):
            resp = agent.get(path)
            assert resp.status_code == 200, (path, resp.text)
            assert expected in [i["id"] for i in resp.json()], (path, resp.json())
    finally:
        for kind, op_id in (("vacuum", vacuum), ("analyze", analyze), ("reindex", reindex)):
            agent.delete(f"/maintenance/{kind}/{op_id}")


def test_invalid_utf8_in_a_name_is_a_400(agent):
    resp = agent.get("/maintenance/%FF")
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"error": "Invalid path: not UTF-8."}
