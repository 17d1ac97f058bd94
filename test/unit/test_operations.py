"""Pure logic of maintenance operations: parsing, ids, statements, shaping."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from temboardagent.errors import BadRequest, NotAcceptable
from temboardagent.plugins.maintenance.operations import (
    conflict_keys,
    kind_of,
    make_target,
    operation_id,
    worker_name,
)
from temboardagent.plugins.maintenance.paths import PATTERNS
from temboardagent.plugins.maintenance.payloads import (
    history_item,
    list_item,
    parse_body,
    parse_datetime,
    parse_mode,
)
from temboardagent.plugins.maintenance.runner import OperationRunner
from temboardagent.plugins.maintenance.statements import (
    OptionError,
    build_statement,
    render_statement,
)
from temboardagent.tasks import Task, conflicts
from temboardagent.tasks.model import ID_RE

UTC = timezone.utc


# mode


@pytest.mark.parametrize(
    "raw, expected",
    [
        (None, ""),
        ("", ""),
        ("full", "full"),
        ("freeze", "freeze"),
        ("analyze", "analyze"),
        ("full,analyze", "full,analyze"),
        ("analyze,full", "full,analyze"),
        ("analyze,freeze,full", "full,freeze,analyze"),
        ("freeze,analyze", "freeze,analyze"),
    ],
)
def test_parse_mode(raw, expected):
    assert parse_mode(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "FULL",
        "full,full",
        "full,",
        ",full",
        "full analyze",
        "full, analyze",
        "verbose",
        "full;DROP TABLE t",
        1,
        ["full"],
        {"full": True},
        True,
    ],
)
def test_parse_mode_malformed(raw):
    with pytest.raises(NotAcceptable) as info:
        parse_mode(raw)
    assert info.value.status == 406
    assert info.value.payload() == {"error": "Parameter 'mode' is malformed."}


# datetime


def test_parse_datetime():
    start, text = parse_datetime("2019-03-22T12:24:39Z")
    assert start == datetime(2019, 3, 22, 12, 24, 39, tzinfo=UTC)
    assert text == "2019-03-22T12:24:39Z"


def test_parse_datetime_now():
    now = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    start, text = parse_datetime(None, now=now)
    assert start == now
    assert text == "2024-02-29T23:59:59Z"
    start, text = parse_datetime(None)
    assert abs(start - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    "raw",
    [
        "2030-02-30T00:00:00Z",
        "2030-13-01T00:00:00Z",
        "2030-01-01T24:00:00Z",
        "2030-01-01T00:60:00Z",
        "2030-01-01 00:00:00Z",
        "2030-01-01T00:00:00",
        "2030-01-01T00:00:00+00:00",
        "2030-01-01T00:00:00.5Z",
        "2030-1-01T00:00:00Z",
        "２０３０-01-01T00:00:00Z",
        "2030-01-01T00:00:00Z\n",
        "",
        20300101,
        ["2030-01-01T00:00:00Z"],
        True,
    ],
)
def test_parse_datetime_malformed(raw):
    with pytest.raises(NotAcceptable) as info:
        parse_datetime(raw)
    assert info.value.payload() == {"error": "Parameter 'datetime' is malformed."}


def test_parse_body():
    assert parse_body({}) == {}
    assert parse_body({"mode": "full", "x": 1}) == {"mode": "full", "x": 1}
    for bad in (None, [], [1], "full", 3, True):
        with pytest.raises(BadRequest):
            parse_body(bad)


# ids


@pytest.mark.parametrize(
    "args, expected",
    [
        # POST .../table/country/vacuum, an immediate run at the reply's Date
        (("vacuum", "postgres", "public", "country", None, "2019-03-22T11:08:02Z"), "229cc880"),
        # /scheduled examples
        (("vacuum", "postgres", "public", "country", None, "2019-03-23T11:28:00Z"), "9ce6426b"),
        (("vacuum", "postgres", "public", "city", None, "2019-03-23T11:28:00Z"), "785b82c6"),
        (("analyze", "postgres", "public", "city", None, "2019-03-23T11:28:00Z"), "1045055e"),
        (
            ("reindex", "postgres", "public", None, "country_pkey", "2019-03-23T11:28:00Z"),
            "7f377004",
        ),
    ],
)
def test_operation_id_matches_spec_examples(args, expected):
    assert operation_id(*args) == expected


def test_operation_id_shape():
    """Ids match the pattern routes and the task manager accept, and nothing else does."""
    value = operation_id("vacuum", "db")
    assert ID_RE.match(value)
    assert re.fullmatch(PATTERNS["operation"], value)
    for bad in ("9CE6426B", "9ce6426", "9ce6426bb", "../../x", "9ce6426b\n"):
        assert not ID_RE.match(bad)
        assert not re.fullmatch(PATTERNS["operation"], bad)


def test_worker_names():
    assert worker_name("vacuum") == "maintenance.vacuum"
    assert kind_of("maintenance.reindex") == "reindex"
    assert kind_of("maintenance.other") is None
    assert kind_of("other.vacuum") is None
    with pytest.raises(ValueError):
        worker_name("cluster")


# conflicts


def _task(target, worker="maintenance.vacuum", options=None, **kw):
    now = datetime(2030, 1, 1, tzinfo=UTC)
    fields = dict(
        id="0123abcd",
        worker=worker,
        target=target,
        options=options if options is not None else {},
        start=now,
        status="todo",
        created=now,
    )
    fields.update(kw)
    return Task(**fields)


def test_conflict_keys():
    db = _task(make_target("db"))
    table = _task(make_target("db", "s", "t"))
    other_table = _task(make_target("db", "s", "u"))
    index = _task(make_target("db", "s", None, "t_pkey", "t"), worker="maintenance.reindex")
    other_db = _task(make_target("db2", "s", "t"))
    assert conflict_keys(db) == [("db",)]
    assert conflict_keys(table) == [("db", "s", "t")]
    assert conflict_keys(index) == [("db", "s", "t")]
    assert conflicts(conflict_keys(db), conflict_keys(table))
    assert conflicts(conflict_keys(index), conflict_keys(table))
    assert conflicts(conflict_keys(db), conflict_keys(index))
    assert not conflicts(conflict_keys(other_table), conflict_keys(table))
    assert not conflicts(conflict_keys(other_db), conflict_keys(table))
    assert not conflicts(conflict_keys(other_db), conflict_keys(db))


def test_make_target():
    assert make_target("db") == {"dbname": "db", "schema": None, "table": None, "index": None}
    assert make_target("db", "s", None, "i", "t") == {
        "dbname": "db",
        "schema": "s",
        "table": None,
        "index": "i",
        "index_table": "t",
    }


# statements


@pytest.mark.parametrize(
    "kind, target, options, expected",
    [
        ("vacuum", make_target("db"), {"mode": ""}, "VACUUM"),
        ("vacuum", make_target("db"), {"mode": "full,analyze"}, "VACUUM (FULL, ANALYZE)"),
        ("vacuum", make_target("db", "public", "t"), {"mode": ""}, 'VACUUM "public"."t"'),
        ("vacuum", make_target("db", "public", "t"), {}, 'VACUUM "public"."t"'),
        (
            "vacuum",
            make_target("db", "public", "t"),
            {"mode": "full,freeze,analyze"},
            'VACUUM (FULL, FREEZE, ANALYZE) "public"."t"',
        ),
        ("vacuum", make_target("db", "s", "t"), {"mode": "freeze"}, 'VACUUM (FREEZE) "s"."t"'),
        ("analyze", make_target("db"), {}, "ANALYZE"),
        (
            "analyze",
            make_target("db", "Mixed Case", 'Odd "Name"'),
            {},
            'ANALYZE "Mixed Case"."Odd ""Name"""',
        ),
        ("reindex", make_target("my db"), {}, 'REINDEX DATABASE "my db"'),
        ("reindex", make_target("db", "s", "t"), {}, 'REINDEX TABLE "s"."t"'),
        ("reindex", make_target("db", "s", None, "t_pkey", "t"), {}, 'REINDEX INDEX "s"."t_pkey"'),
        (
            "reindex",
            make_target("db", "s", None, 'x"; DROP TABLE t; --', "t"),
            {},
            'REINDEX INDEX "s"."x""; DROP TABLE t; --"',
        ),
    ],
)
def test_build_statement(kind, target, options, expected):
    assert render_statement(build_statement(kind, target, options)) == expected


def test_build_statement_rejects_bad_input():
    with pytest.raises(ValueError):
        build_statement("cluster", make_target("db"))
    # statement building raises plain errors; the request layer answers 406
    with pytest.raises(OptionError, match="^Parameter 'mode' is malformed.$"):
        build_statement("vacuum", make_target("db"), {"mode": "verbose"})


# shaping


def test_list_item():
    task = _task(
        make_target("postgres", "public", "country"),
        options={"mode": "full"},
        start=datetime(2019, 3, 23, 11, 28, 0, 123456, tzinfo=UTC),
        id="9ce6426b",
    )
    assert list_item(task) == {
        "datetime": "2019-03-23T11:28:00Z",
        "dbname": "postgres",
        "id": "9ce6426b",
        "index": None,
        "mode": "full",
        "schema": "public",
        "status": "todo",
        "table": "country",
        "options": {},
    }
    reindex = _task(
        make_target("postgres", "public", None, "country_pkey", "country"),
        worker="maintenance.reindex",
    )
    item = list_item(reindex)
    assert item["table"] is None and item["index"] == "country_pkey" and item["mode"] is None
    assert "index_table" not in item
    analyze = _task(make_target("postgres"), worker="maintenance.analyze")
    assert list_item(analyze)["mode"] is None


def test_history_item():
    t0 = datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)
    pending = _task(make_target("db", "s", "t"), options={"mode": "analyze"})
    item = history_item(pending)
    assert item["sql"] == 'VACUUM (ANALYZE) "s"."t"'
    assert item["created"] == "2030-01-01T00:00:00Z"
    assert item["started"] is None and item["finished"] is None
    assert item["duration"] is None and item["error"] is None

    failed = _task(
        make_target("db", "s", "t"),
        worker="maintenance.analyze",
        status="failed",
        started=t0 + timedelta(seconds=1),
        finished=t0 + timedelta(seconds=3, microseconds=500000),
        output='ANALYZE "s"."t"',
        error='relation "s.t" does not exist',
    )
    item = history_item(failed)
    assert item["sql"] == 'ANALYZE "s"."t"'
    assert item["duration"] == 2.5
    assert item["started"] == "2030-01-01T00:00:01Z"
    assert item["error"] == 'relation "s.t" does not exist'
    assert set(item) == {
        "id", "dbname", "schema", "table", "index", "mode", "datetime", "status",
        "sql", "created", "started", "finished", "duration", "error", "options", "attempts",
        "notices", "skipped", "skipped_count",
    }  # fmt: skip
    assert item["notices"] == [] and item["skipped"] == [] and item["skipped_count"] == 0

    canceled = _task(
        make_target("db"), status="canceled", error="canceling statement due to user request"
    )
    assert history_item(canceled)["error"] is None


# cancel hook without a running worker


class _FakeCtx:
    def __init__(self):
        self.connects = 0

    def connect(self, *args, **kwargs):  # pragma: no cover - must not be called
        self.connects += 1
        raise AssertionError("no connection expected")


class _FakeTaskContext:
    def __init__(self, task):
        self.task = task
        self.cancel_requested = threading.Event()


def test_cancel_unknown_task_without_pid_is_a_noop():
    ctx = _FakeCtx()
    runner = OperationRunner(ctx)
    runner.cancel(_task(make_target("db"), status="doing"))
    assert ctx.connects == 0
