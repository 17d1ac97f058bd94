"""Statement composition, option validation and the lock retry loop (pure logic)."""

from __future__ import annotations

import threading

import psycopg2.errors
import pytest

from temboardagent.errors import ConfigError
from temboardagent.plugins.maintenance.lockwait import (
    Canceled,
    LockRetry,
    LockWaitExpired,
    Step,
    TimedOut,
    conflicting_modes,
    describe_holders,
    pauses,
)
from temboardagent.plugins.maintenance.operations import make_target
from temboardagent.plugins.maintenance.settings import MaintenanceSettings
from temboardagent.plugins.maintenance.statements import (
    OptionError,
    build_relations_statement,
    build_statement,
    check_supported,
    extension_options,
    parse_options,
    render_statement,
    runs_per_relation,
    uses_lock_timeout,
)

TABLE = make_target("db", "s", "t")


def text(kind, target, options):
    return render_statement(build_statement(kind, target, options))


# Composition


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"mode": ""}, 'VACUUM "s"."t"'),
        (
            {"mode": "freeze", "skip_locked": True, "index_cleanup": "off", "parallel": 2},
            'VACUUM (FREEZE, SKIP_LOCKED, INDEX_CLEANUP OFF, PARALLEL 2) "s"."t"',
        ),
        (
            {"mode": "full,analyze", "skip_locked": False, "truncate": True},
            'VACUUM (FULL, ANALYZE, SKIP_LOCKED FALSE, TRUNCATE) "s"."t"',
        ),
        (
            {"index_cleanup": "auto", "process_toast": False, "truncate": False, "parallel": 0},
            'VACUUM (INDEX_CLEANUP AUTO, PROCESS_TOAST FALSE, TRUNCATE FALSE, PARALLEL 0) "s"."t"',
        ),
        ({"mode": "analyze", "timeout": 60}, 'VACUUM (ANALYZE) "s"."t"'),
    ],
)
def test_vacuum_statement(options, expected):
    assert text("vacuum", TABLE, options) == expected


def test_database_vacuum_statement():
    assert text("vacuum", make_target("db"), {"mode": "", "skip_locked": True}) == (
        "VACUUM (SKIP_LOCKED)"
    )


@pytest.mark.parametrize(
    "target, expected",
    [
        (make_target("db", "s", None, "i", "t"), 'REINDEX INDEX CONCURRENTLY "s"."i"'),
        (make_target("db", "s", "t"), 'REINDEX TABLE CONCURRENTLY "s"."t"'),
        (make_target('d"b'), 'REINDEX DATABASE CONCURRENTLY "d""b"'),
    ],
)
def test_reindex_concurrently_statement(target, expected):
    assert text("reindex", target, {"concurrently": True}) == expected
    assert text("reindex", target, {"concurrently": False}) == expected.replace("CONCURRENTLY ", "")


def test_statement_rejects_bad_stored_options():
    # A task list edited by hand cannot smuggle text into a statement.
    with pytest.raises(OptionError):
        build_statement("vacuum", TABLE, {"parallel": "2); DROP TABLE t; --"})
    with pytest.raises(OptionError):
        build_statement("vacuum", TABLE, {"index_cleanup": "off) x"})


# Parsing


def test_parse_options_ui_request_unchanged():
    assert parse_options("vacuum", {"mode": "analyze,full", "datetime": "x"}) == {
        "mode": "full,analyze"
    }
    assert parse_options("vacuum", {}) == {"mode": ""}
    assert parse_options("analyze", {"mode": "full"}) == {}
    assert parse_options("reindex", {}) == {}


def test_parse_options_keeps_what_was_asked():
    body = {
        "mode": "freeze",
        "skip_locked": False,
        "index_cleanup": "on",
        "truncate": True,
        "parallel": 4,
        "process_toast": True,
        "timeout": 90.0,
        "concurrently": True,  # not a VACUUM option: ignored
    }
    options = parse_options("vacuum", body)
    assert options == {**{k: v for k, v in body.items() if k != "concurrently"}, "timeout": 90}
    assert isinstance(options["timeout"], int)
    assert extension_options(options) == {k: v for k, v in options.items() if k != "mode"}
    assert parse_options("reindex", {"concurrently": True, "timeout": 1.5}) == {
        "concurrently": True,
        "timeout": 1.5,
    }
    # null means absent
    assert parse_options("vacuum", {"skip_locked": None, "timeout": None}) == {"mode": ""}


@pytest.mark.parametrize(
    "kind, body, name",
    [
        ("vacuum", {"skip_locked": 0}, "skip_locked"),
        ("vacuum", {"truncate": "true"}, "truncate"),
        ("vacuum", {"process_toast": []}, "process_toast"),
        ("vacuum", {"index_cleanup": "Off"}, "index_cleanup"),
        ("vacuum", {"parallel": 1025}, "parallel"),
        ("vacuum", {"parallel": 2.5}, "parallel"),
        ("vacuum", {"parallel": False}, "parallel"),
        ("vacuum", {"timeout": float("nan")}, "timeout"),
        ("vacuum", {"timeout": float("inf")}, "timeout"),
        ("analyze", {"timeout": 0}, "timeout"),
        ("analyze", {"timeout": 0.0001}, "timeout"),
        ("analyze", {"timeout": 2147484}, "timeout"),
        ("reindex", {"concurrently": 1}, "concurrently"),
        ("vacuum", {"mode": "verbose"}, "mode"),
    ],
)
def test_parse_options_malformed(kind, body, name):
    with pytest.raises(OptionError) as info:
        parse_options(kind, body)
    assert str(info.value) == f"Parameter '{name}' is malformed."
    assert info.value.name == name


def test_integral_parallel_number_is_an_integer():
    options = parse_options("vacuum", {"parallel": 489.0})
    assert options["parallel"] == 489 and isinstance(options["parallel"], int)


def test_parallel_not_with_full():
    with pytest.raises(OptionError, match="cannot be used with mode 'full'"):
        parse_options("vacuum", {"mode": "full,analyze", "parallel": 0})


@pytest.mark.parametrize(
    "options, version, message",
    [
        ({"parallel": 2}, 120000, "Parameter 'parallel' is not supported by PostgreSQL 12."),
        ({"process_toast": True}, 130010, "Parameter 'process_toast' is not supported by "
         "PostgreSQL 13."),
        ({"index_cleanup": "auto"}, 130010, "Parameter 'index_cleanup' value 'auto' is not "
         "supported by PostgreSQL 13."),
        ({"skip_locked": True}, 110000, "Parameter 'skip_locked' is not supported by "
         "PostgreSQL 11."),
        ({"concurrently": True}, 90624, "Parameter 'concurrently' is not supported by "
         "PostgreSQL 9.6."),
    ],
)  # fmt: skip
def test_check_supported(options, version, message):
    with pytest.raises(OptionError) as info:
        check_supported(options, version)
    assert str(info.value) == message


def test_check_supported_ok():
    check_supported({"index_cleanup": "off", "skip_locked": True, "truncate": False}, 120000)
    check_supported({"parallel": 2}, 130000)
    check_supported({"index_cleanup": "auto", "process_toast": False}, 140000)
    check_supported({"mode": "full", "timeout": 5}, 90600)


def test_execution_shape():
    assert runs_per_relation("vacuum", make_target("db"))
    assert runs_per_relation("analyze", make_target("db"))
    assert not runs_per_relation("reindex", make_target("db"))
    assert not runs_per_relation("vacuum", TABLE)
    assert uses_lock_timeout("vacuum", {"mode": "full"})
    assert uses_lock_timeout("reindex", {})
    assert not uses_lock_timeout("reindex", {"concurrently": True})


def test_settings():
    settings = MaintenanceSettings.from_section({})
    assert (settings.operation_lock_timeout, settings.operation_lock_wait) == (2000, 900)
    settings = MaintenanceSettings.from_section(
        {"operation_lock_timeout": "100", "operation_lock_wait": "0"}
    )
    assert (settings.operation_lock_timeout, settings.operation_lock_wait) == (100, 0)
    for value in ("0", "-1", "x", str(2**31)):
        with pytest.raises(ConfigError):
            MaintenanceSettings.from_section({"operation_lock_timeout": value})


# Lock retry loop, with a fake clock


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeCancel(threading.Event):
    """An Event whose wait() advances the fake clock instead of sleeping."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.waits = []

    def wait(self, timeout=None):
        if self.is_set():
            return True
        self.waits.append(timeout)
        self.clock.now += timeout
        return False


def locked(clock, seconds=0.3):
    def fail(step, time_left):
        clock.now += seconds
        raise psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout")

    return fail


def test_pauses_grow_and_cap():
    gen = pauses()
    assert [next(gen) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_retry_until_the_lock_comes():
    clock = FakeClock()
    cancel = FakeCancel(clock)
    outcomes = [True, True, False]  # locked twice, then it runs
    seen = []

    def execute(step, time_left):
        clock.now += 0.3
        if outcomes.pop(0):
            raise psycopg2.errors.LockNotAvailable("lock timeout")

    retry = LockRetry(lock_wait=900, cancel=cancel, on_attempt=seen.append, clock=clock)
    assert retry.run([Step("S")], execute) == 3
    assert seen == [1, 2, 3]
    assert cancel.waits == [1, 2]


def test_lock_wait_expires():
    clock = FakeClock()
    cancel = FakeCancel(clock)
    retry = LockRetry(lock_wait=10, cancel=cancel, clock=clock)
    with pytest.raises(LockWaitExpired) as info:
        retry.run([Step("S")], locked(clock))
    # waited 0.3+1+0.3+2+0.3+4+0.3, then a pause cut to what is left (1.8), a last attempt
    assert cancel.waits == [1, 2, 4, pytest.approx(1.8)]
    assert info.value.attempts == 5
    assert info.value.waited >= 10


def test_per_relation_passes_only_retry_what_failed():
    clock = FakeClock()
    cancel = FakeCancel(clock)
    runs = []
    busy_until = {"b": 2}  # "b" is locked during its first two passes

    def execute(step, time_left):
        runs.append(step.table)
        if busy_until.get(step.table, 0) > 0:
            busy_until[step.table] -= 1
            raise psycopg2.errors.LockNotAvailable("lock timeout")

    steps = [Step(f"S {t}", "public", t) for t in ("a", "b", "c")]
    retry = LockRetry(lock_wait=900, cancel=cancel, clock=clock)
    assert retry.run(steps, execute) == 3
    assert runs == ["a", "b", "c", "b", "b"]


def test_skipped_relations_are_reported():
    clock = FakeClock()
    steps = [Step("S a", "public", "a"), Step("S b", "public", "b")]
    retry = LockRetry(lock_wait=3, cancel=FakeCancel(clock), clock=clock)
    with pytest.raises(LockWaitExpired) as info:
        retry.run(steps, locked(clock))
    assert [step.relation for step in info.value.steps] == ['"public"."a"', '"public"."b"']


def test_cancel_ends_a_long_pause_at_once():
    # A real Event and a pause of 1000 s: only the cancel can end it (else the
    # test hangs until pytest's timeout).
    cancel = threading.Event()
    attempted = threading.Event()

    def execute(step, time_left):
        attempted.set()
        raise psycopg2.errors.LockNotAvailable("lock timeout")

    retry = LockRetry(lock_wait=10_000, cancel=cancel, first_pause=1000, max_pause=1000)
    outcome = {}

    def run():
        try:
            retry.run([Step("S")], execute)
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    assert attempted.wait(10)
    cancel.set()
    thread.join(60)
    assert not thread.is_alive()
    assert isinstance(outcome["error"], Canceled)


def test_timeout_bounds_statements_and_pauses():
    clock = FakeClock()
    cancel = FakeCancel(clock)
    time_lefts = []

    def execute(step, time_left):
        time_lefts.append(time_left)
        clock.now += 0.3
        raise psycopg2.errors.LockNotAvailable("lock timeout")

    retry = LockRetry(lock_wait=900, cancel=cancel, timeout=2.5, clock=clock)
    with pytest.raises(TimedOut, match=r"^timed out after 2.5 s$"):
        retry.run([Step("S")], execute)
    assert time_lefts == [2500, 1200]  # statement_timeout = what is left
    assert cancel.waits == [1, pytest.approx(0.9)]  # the last pause ends at the deadline


def test_statement_timeout_is_a_timeout():
    clock = FakeClock()

    def execute(step, time_left):
        clock.now += time_left / 1000
        raise psycopg2.errors.QueryCanceled("canceling statement due to statement timeout")

    retry = LockRetry(lock_wait=900, cancel=FakeCancel(clock), timeout=60, clock=clock)
    with pytest.raises(TimedOut, match=r"^timed out after 60 s$"):
        retry.run([Step("S")], execute)


def test_user_cancel_is_not_a_timeout():
    clock = FakeClock()
    cancel = FakeCancel(clock)

    def execute(step, time_left):
        cancel.set()
        raise psycopg2.errors.QueryCanceled("canceling statement due to user request")

    retry = LockRetry(lock_wait=900, cancel=cancel, timeout=60, clock=clock)
    with pytest.raises(psycopg2.errors.QueryCanceled):
        retry.run([Step("S")], execute)


# Messages


def test_conflicting_modes():
    full = conflicting_modes("vacuum", {"mode": "full"})
    assert len(full["table_modes"]) == 8 and full["index_modes"] == full["table_modes"]
    plain = conflicting_modes("vacuum", {"mode": "analyze"})
    assert "RowExclusiveLock" not in plain["table_modes"]
    assert "ShareUpdateExclusiveLock" in plain["table_modes"]
    reindex = conflicting_modes("reindex", {})
    assert "RowExclusiveLock" in reindex["table_modes"]
    assert "AccessShareLock" not in reindex["table_modes"]
    assert "AccessShareLock" in reindex["index_modes"]


def test_describe_holders():
    rows = [("public", "t", [12, 34], False), ("s", 'o"dd', None, True), ("s", "u", [5], True)]
    assert describe_holders(rows) == (
        '"public"."t" (pids 12, 34), "s"."o""dd" (a prepared transaction), '
        '"s"."u" (pid 5 and a prepared transaction)'
    )


def test_batch_split_when_its_lock_does_not_come():
    clock = FakeClock()
    runs = []
    busy = {"b"}

    def execute(step, time_left):
        names = [p.table for p in step.parts] or [step.table]
        runs.append(names)
        if busy & set(names):
            raise psycopg2.errors.LockNotAvailable("lock timeout")

    parts = tuple(Step(f"S {t}", "public", t) for t in ("a", "b", "c"))
    steps = [Step("S a, b, c", parts=parts), Step("S d", "public", "d")]
    retry = LockRetry(lock_wait=3, cancel=FakeCancel(clock), clock=clock)
    with pytest.raises(LockWaitExpired) as info:
        retry.run(steps, execute)
    # The batch failed: its relations ran one by one in the same pass, before "d".
    assert runs[:5] == [["a", "b", "c"], ["a"], ["b"], ["c"], ["d"]]
    assert all(names == ["b"] for names in runs[5:])
    assert [step.table for step in info.value.steps] == ["b"]


def test_relations_statement():
    statement = build_relations_statement(
        "vacuum", {"mode": "analyze", "skip_locked": True}, [("s", "a"), ("p", 'q"r')]
    )
    assert render_statement(statement) == 'VACUUM (ANALYZE, SKIP_LOCKED) "s"."a", "p"."q""r"'
    assert render_statement(build_relations_statement("analyze", {}, [("s", "a")])) == (
        'ANALYZE "s"."a"'
    )
    with pytest.raises(ValueError):
        build_relations_statement("reindex", {}, [("s", "a")])


def test_statement_timeout_a_little_early_is_still_a_timeout():
    # The server's timer fires on its own clock: a hair before our deadline.
    clock = FakeClock()

    def execute(step, time_left):
        clock.now += time_left / 1000 - 0.002
        raise psycopg2.errors.QueryCanceled("canceling statement due to statement timeout")

    retry = LockRetry(lock_wait=900, cancel=FakeCancel(clock), timeout=0.5, clock=clock)
    with pytest.raises(TimedOut, match=r"^timed out after 0.5 s$"):
        retry.run([Step("S")], execute)


def test_early_cancel_by_someone_else_is_not_a_timeout():
    clock = FakeClock()

    def execute(step, time_left):
        clock.now += 1
        raise psycopg2.errors.QueryCanceled("canceling statement due to user request")

    retry = LockRetry(lock_wait=900, cancel=FakeCancel(clock), timeout=60, clock=clock)
    with pytest.raises(psycopg2.errors.QueryCanceled):
        retry.run([Step("S")], execute)
