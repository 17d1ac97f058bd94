"""Login and key throttling rules, session purge, path decoding (no server)."""

from __future__ import annotations

import sqlite3

import pytest

from temboardagent.auth import throttle as throttle_module
from temboardagent.auth.gate import Gate
from temboardagent.auth.sessions import PURGE_EVERY, SessionStore
from temboardagent.auth.throttle import (
    ADDRESS_FREE_FAILURES,
    FREE_FAILURES,
    KEY_FREE_FAILURES,
    MAX_LOCKOUT,
    FailureTable,
    LoginThrottle,
)
from temboardagent.errors import BadRequest, TooManyRequests, Unauthorized
from temboardagent.web.paths import decode_param, routing_path


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(throttle: LoginThrottle, user: str, addr: str, times: int) -> None:
    for _ in range(times):
        assert throttle.admit(user, addr) == 0
        throttle.failure(user, addr)


def test_attacker_address_does_not_lock_out_another_address():
    clock = Clock()
    throttle = LoginThrottle(clock)
    _fail(throttle, "alice", "10.0.0.66", FREE_FAILURES)
    refused = 0
    for _ in range(1000):  # the attacker fails whenever it is let in
        if throttle.admit("alice", "10.0.0.66") > 0:
            refused += 1
        else:
            throttle.failure("alice", "10.0.0.66")
        assert throttle.admit("alice", "10.0.0.1") == 0  # the real user never waits
        throttle.success("alice", "10.0.0.1")
        clock.now += 0.05
    assert refused > 900


def test_lockout_is_bounded_and_success_resets_the_pair():
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(30):
        clock.now += throttle.admit("bob", "a") + 0.001
        throttle.failure("bob", "a")
    assert 0 < throttle.admit("bob", "a") <= MAX_LOCKOUT
    clock.now += MAX_LOCKOUT
    assert throttle.admit("bob", "a") == 0
    throttle.success("bob", "a")
    assert throttle.admit("bob", "a") == 0


def test_one_address_spraying_usernames_is_locked_out():
    clock = Clock()
    throttle = LoginThrottle(clock)
    for i in range(ADDRESS_FREE_FAILURES):
        assert throttle.admit(f"user{i}", "10.0.0.66") == 0
        throttle.failure(f"user{i}", "10.0.0.66")
    assert throttle.admit("fresh-name", "10.0.0.66") > 0
    assert throttle.admit("fresh-name", "10.0.0.1") == 0


def test_global_bound_slows_everyone_but_known_good_pairs():
    clock = Clock()
    throttle = LoginThrottle(clock, global_rate=10.0, global_burst=20.0)
    throttle.success("ui", "192.0.2.10")  # the UI server logged in once
    # A distributed attack: every attempt from a new address.
    admitted = 0
    for i in range(100):
        if throttle.admit("ui", f"10.1.{i // 256}.{i % 256}") == 0:
            admitted += 1
            throttle.failure("ui", f"10.1.{i // 256}.{i % 256}")
    assert admitted == 20  # the burst, then the bucket is empty (no time passed)
    wait = throttle.admit("ui", "10.9.9.9")
    assert 0 < wait <= 1 / 10.0  # a slowdown, not a lockout
    assert throttle.admit("ui", "192.0.2.10") == 0  # the known-good pair goes through
    clock.now += wait
    assert throttle.admit("ui", "10.9.9.9") == 0  # refilled: admitted


def test_known_good_pair_expires():
    clock = Clock()
    throttle = LoginThrottle(clock, global_rate=1.0, global_burst=1.0)
    throttle.success("ui", "192.0.2.10")
    assert throttle.admit("x", "10.0.0.1") == 0  # takes the only token
    assert throttle.admit("ui", "192.0.2.10") == 0
    clock.now += throttle_module.KNOWN_GOOD_TTL + 1
    assert throttle.admit("x", "10.0.0.1") == 0  # refilled, token taken again
    assert throttle.admit("ui", "192.0.2.10") > 0  # no longer known good


def test_tables_and_keys_are_bounded():
    clock = Clock()
    throttle = LoginThrottle(clock, max_records=100, global_burst=1e9, global_rate=1e9)
    for i in range(1000):
        throttle.failure("u" * 5000 + str(i), f"10.2.{i // 256}.{i % 256}")
    assert len(throttle.pairs) == 100
    assert len(throttle.addresses) == 100
    assert max(len(key) for key in throttle.pairs._records) <= 64 + 1 + 64
    table = FailureTable(1, max_records=10, clock=clock)
    for i in range(10):
        table.failure(f"old{i}")
    clock.now += throttle_module.FORGET_AFTER + 1
    table.failure("new")
    assert len(table) == 1  # forgotten entries are dropped first


def test_wrong_keys_are_throttled_per_address(tmp_path):
    gate = Gate(SessionStore(tmp_path / "s.sqlite"), "the-shared-key")
    for _ in range(KEY_FREE_FAILURES):
        with pytest.raises(Unauthorized):
            gate.check(None, "guess", key_ok=True, address="10.0.0.66")
    with pytest.raises(TooManyRequests) as caught:
        gate.check(None, "the-shared-key", key_ok=True, address="10.0.0.66")
    assert 0 < caught.value.extra["retry_after"] <= MAX_LOCKOUT
    # Another address, and sessions from the locked address, still work.
    assert gate.check(None, "the-shared-key", key_ok=True, address="10.0.0.1") is None
    sid = gate.sessions.create("alice")
    assert gate.check(sid, None, key_ok=True, address="10.0.0.66") == "alice"
    # The right key, once the lockout is over, resets the address's count.
    gate.key_throttle.table._records.clear()
    for _ in range(KEY_FREE_FAILURES - 1):
        with pytest.raises(Unauthorized):
            gate.check(None, "guess", key_ok=True, address="10.0.0.7")
    assert gate.check(None, "the-shared-key", key_ok=True, address="10.0.0.7") is None
    with pytest.raises(Unauthorized):  # counted from zero again: no lockout yet
        gate.check(None, "guess", key_ok=True, address="10.0.0.7")
    assert gate.check(None, "the-shared-key", key_ok=True, address="10.0.0.7") is None


def test_expired_sessions_are_purged_without_a_call_to_purge(tmp_path):
    clock = Clock()
    path = tmp_path / "s.sqlite"
    store = SessionStore(path, expiry=100, clock=clock)
    stale = [store.create("alice") for _ in range(50)]
    clock.now += 50
    live = store.create("bob")
    clock.now += 60  # stale ones expired; bob's has 40 s left
    assert len(store) == 51
    clock.now = max(clock.now, 1000 + PURGE_EVERY)
    assert store.validate(live) == "bob"  # any validation triggers the periodic purge
    assert len(store) == 1
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM sessions").fetchone()[0]
    assert rows == 1
    assert store.validate(stale[0]) is None
    store.close()


def test_purge_keeps_a_live_session_whose_row_lags(tmp_path):
    """A session extended in memory only must survive a purge (and a restart)."""
    clock = Clock()
    path = tmp_path / "s.sqlite"
    store = SessionStore(path, expiry=100, clock=clock)
    sid = store.create("alice")
    clock.now += 90
    assert store.validate(sid) == "alice"  # expiry slides to 1190, row still 1100
    clock.now += 20  # 1110: past the row's expiry, not the session's
    assert store.purge() == 0
    store._db.close()  # simulate a crash: no close() flush
    reopened = SessionStore(path, expiry=100, clock=clock)
    assert reopened.validate(sid) == "alice"


@pytest.mark.parametrize(
    "uri, path, params",
    [
        ("/maintenance/a%2Fb", "/maintenance/a%2Fb", ["a/b"]),
        ("/maintenance/a%252Fb", "/maintenance/a%252Fb", ["a%2Fb"]),
        ("/maintenance/a+b?key=x", "/maintenance/a%2Bb", ["a+b"]),
        ("/maintenance/a%20b%22c%27", "/maintenance/a%20b%22c%27", ["a b\"c'"]),
        ("/maint%65nance/x", "/maintenance/x", ["x"]),
        ("/maintenance/%C3%A9", "/maintenance/%C3%A9", ["é"]),
        ("https://h:1/maintenance/a%2Fb", "/maintenance/a%2Fb", ["a/b"]),
    ],
)
def test_routing_path_decodes_each_segment_once(uri, path, params):
    assert routing_path({"REQUEST_URI": uri, "PATH_INFO": "ignored"}) == path
    assert [decode_param(seg) for seg in path.split("/")[2:]] == params


def test_routing_path_raw_non_ascii_and_invalid_utf8():
    # Raw UTF-8 bytes in the request line arrive as latin-1 text (WSGI).
    raw = "/maintenance/é".encode().decode("latin-1")
    assert routing_path({"REQUEST_URI": raw}) == "/maintenance/%C3%A9"
    with pytest.raises(BadRequest):
        decode_param(routing_path({"REQUEST_URI": "/maintenance/%FF"}).split("/")[2])
    assert routing_path({"PATH_INFO": "/maintenance/a b"}) == "/maintenance/a%20b"
