"""Streamed JSON encoding, reply bodies and gzip, heavy-page slots, timeout mapping."""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time

import psycopg2.errors
import pytest

from temboardagent.errors import NotFound
from temboardagent.jsonstream import (
    ITEM_BATCH,
    JSONArray,
    JSONObject,
    dump_json,
    encode,
    materialize,
)
from temboardagent.plugins.maintenance.limits import HeavyPages
from temboardagent.plugins.maintenance.settings import MaintenanceSettings
from temboardagent.postgres import map_postgres_error
from temboardagent.web.replies import (
    CHUNK_SIZE,
    GZIP_MIN_SIZE,
    ReplyAborted,
    StreamedBody,
    accepts_gzip,
    reply,
)


def plain(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randrange(-(2**70), 2**70)
    if kind == 2:
        return rng.choice([0.1, -1e300, 1.5, float(rng.random())])
    if kind in (3, 4):
        return "".join(rng.choice('aé"\\\n\u2028€\U0001f600/') for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        longest = 600 if depth == 0 else 5  # long enough for several item batches
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(longest))]
    return {f"k{i}\u00e9": random_value(rng, depth + 1) for i in range(rng.randrange(5))}


def streamed(value, rng: random.Random):
    """``value`` with some lists and dicts turned into streams (generators)."""
    if isinstance(value, list) and rng.random() < 0.6:
        return JSONArray(streamed(item, rng) for item in value)
    if isinstance(value, dict) and rng.random() < 0.6:
        return JSONObject((key, streamed(item, rng)) for key, item in value.items())
    return value


def test_stream_encoding_is_the_plain_encoding():
    rng = random.Random(18)
    for _ in range(200):
        value = random_value(rng)
        assert b"".join(encode(streamed(value, rng))) == plain(value) == dump_json(value)
    assert b"".join(encode(JSONArray(iter([])))) == b"[]"
    assert b"".join(encode(JSONObject(iter([])))) == b"{}"
    nested = JSONArray([1, JSONArray([]), JSONObject([("a", JSONArray(range(600)))]), 2])
    assert b"".join(encode(nested)) == plain([1, [], {"a": list(range(600))}, 2])
    assert materialize(JSONObject([("a", JSONArray([1]))])) == {"a": [1]}


def test_stream_closes_inner_iterables_first():
    closed = []

    def rows():
        try:
            yield from range(1000)
        finally:
            closed.append("rows")

    def members():
        try:
            yield "rows", JSONArray(rows())
            yield "after", 1
        finally:
            closed.append("members")

    pieces = encode(JSONObject(members()))
    assert [next(pieces) for _ in range(4)][-1].startswith(b"0,1,2")  # inside the array
    pieces.close()
    assert closed == ["rows", "members"]


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("gzip, deflate", True),
        ("deflate, GZIP;q=0.5", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, *;q=1", False),
        ("identity", False),
        ("br, deflate", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=bad", False),
    ],
)
def test_accepts_gzip(header, expected):
    assert accepts_gzip(header) is expected


def test_plain_value_reply():
    headers, body = reply({"a": "x" * 10}, True, "GET /x")
    assert body == plain({"a": "x" * 10})  # under the threshold: not compressed
    assert ("Content-Length", str(len(body))) in headers
    assert ("Vary", "Accept-Encoding") in headers
    big = {"a": "x" * GZIP_MIN_SIZE}
    headers, body = reply(big, True, "GET /x")
    assert ("Content-Encoding", "gzip") in headers
    assert gzip.decompress(body) == plain(big)
    headers, body = reply(big, False, "GET /x")
    assert body == plain(big)


def test_small_stream_is_a_plain_reply():
    headers, body = reply(JSONArray(iter(range(10))), True, "GET /x")
    assert body == b"[0,1,2,3,4,5,6,7,8,9]"
    assert ("Content-Length", str(len(body))) in headers


@pytest.mark.parametrize("gzip_ok", [False, True])
def test_big_stream_reply(gzip_ok):
    items = [{"n": i, "text": "é" * (i % 50)} for i in range(20000)]
    headers, body = reply(JSONArray(iter(items)), gzip_ok, "GET /x")
    assert isinstance(body, StreamedBody)
    assert not any(name == "Content-Length" for name, _ in headers)
    assert (("Content-Encoding", "gzip") in headers) is gzip_ok
    data = b"".join(body)
    assert len(data) > (0 if gzip_ok else CHUNK_SIZE)
    assert (gzip.decompress(data) if gzip_ok else data) == plain(items)


def test_errors_before_the_first_chunk_propagate_and_close():
    closed = []

    def members():
        try:
            yield "a", 1
            raise NotFound("Schema 'x' not found.")
        finally:
            closed.append(True)

    with pytest.raises(NotFound):
        reply(JSONObject(members()), False, "GET /x")
    assert closed == [True]


def test_error_after_the_first_chunk_aborts_the_connection(caplog):
    def items():
        yield from ["x" * 1000] * (2 * ITEM_BATCH)  # the first batch passes CHUNK_SIZE
        raise psycopg2.errors.AdminShutdown("terminating connection")

    headers, body = reply(JSONArray(items()), True, "GET /x")
    chunks = iter(body)
    assert next(chunks)  # the head
    with caplog.at_level(logging.WARNING), pytest.raises(ReplyAborted) as raised:
        list(chunks)
    assert raised.value.errno == 103  # ECONNABORTED: cheroot drops the connection quietly
    assert "GET /x aborted midway: terminating connection" in caplog.text
    body.close()


def test_heavy_pages_wait_for_a_slot(caplog):
    trims = []
    events: list[str] = []
    heavy = HeavyPages(1, trim=lambda: trims.append(1))
    entered = threading.Event()
    release = threading.Event()

    def first():
        with heavy.slot("first"):
            entered.set()
            release.wait(30)
            events.append("first out")

    def second():
        with heavy.slot("second"):
            events.append("second in")

    caplog.set_level(logging.DEBUG, logger="temboardagent.plugins.maintenance.limits")
    one = threading.Thread(target=first)
    one.start()
    assert entered.wait(30)
    two = threading.Thread(target=second)
    two.start()
    deadline = time.monotonic() + 30
    while "second waits for one of 1 heavy-page slots" not in caplog.text:
        assert time.monotonic() < deadline, "the second page did not queue"
        time.sleep(0.01)
    release.set()
    one.join(30)
    two.join(30)
    assert events == ["first out", "second in"]
    assert trims == [1, 1]


def test_heavy_page_slot_given_back_early():
    heavy = HeavyPages(1, trim=lambda: None)
    with heavy.slot("first") as computed:
        computed()
        computed()  # idempotent
        with heavy.slot("second"):  # would block without the early release
            pass
    with heavy.slot("third"), pytest.raises(AssertionError):
        assert heavy._slots.acquire(blocking=False)  # one slot, held


def test_heavy_pages_setting():
    assert MaintenanceSettings.from_section({}).heavy_pages == 8
    assert MaintenanceSettings.from_section({"heavy_pages": "5"}).heavy_pages == 5
    with pytest.raises(Exception, match="heavy_pages"):
        MaintenanceSettings.from_section({"heavy_pages": "0"})


def test_statement_timeout_is_not_an_unreachable_server():
    timeout = psycopg2.errors.QueryCanceled("canceling statement due to statement timeout\n")
    assert map_postgres_error(timeout).status == 504
    canceled = psycopg2.errors.QueryCanceled("canceling statement due to user request\n")
    assert map_postgres_error(canceled).status == 503
