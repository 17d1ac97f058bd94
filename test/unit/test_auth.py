"""Password hashes, throttling, sessions and the gate, without a server."""

from __future__ import annotations

import pytest

from temboardagent.auth.gate import Gate
from temboardagent.auth.passwords import hash_password, legacy_hash, verify_password
from temboardagent.auth.sessions import SessionStore
from temboardagent.auth.throttle import MAX_LOCKOUT, FailureTable
from temboardagent.auth.users import UsersFile, parse_users, set_user
from temboardagent.errors import ConfigError, NotAcceptable, Unauthorized


def test_scrypt_hash_roundtrip():
    hashed = hash_password("s3cret")
    assert hashed.startswith("$scrypt$n=16384,r=8,p=1$")
    assert hashed != hash_password("s3cret")  # salted
    assert verify_password("anyone", "s3cret", hashed)
    assert not verify_password("anyone", "s3cret!", hashed)
    assert not verify_password("anyone", "s3cret", "$scrypt$garbage")


#: line of upstream temboard-agent's sample users file; the password is ``alice``
UPSTREAM_ALICE = (
    "alice:Xm4iJH8aQmXRvrsLy/fNbQU23K6/FlEVRhhPZKO2aHvYVGzCft+u7RXQ9Z48IyVtnS+n47UM3QUM4is0BVTPOA=="
)


def test_legacy_hash_known_value():
    """Upstream's own hash (not one made by our function) verifies."""
    username, stored = UPSTREAM_ALICE.split(":", 1)
    assert verify_password(username, "alice", stored)
    assert legacy_hash(username, "alice") == stored
    assert not verify_password(username, "alice!", stored)
    assert not verify_password("bob", "alice", stored)  # salted with the username


def test_upstream_users_file(tmp_path):
    path = tmp_path / "users"
    path.write_text(UPSTREAM_ALICE + "\n")
    users = UsersFile(path)
    assert users.authenticate("alice", "alice")
    assert not users.authenticate("alice", "Alice")


def test_users_file(tmp_path):
    path = tmp_path / "users"
    assert set_user(path, "alice", hash_password("pw-alice")) is True
    assert set_user(path, "bob", legacy_hash("bob", "pw-bob")) is True
    assert set_user(path, "alice", hash_password("new-alice")) is False
    users = UsersFile(path)
    assert users.authenticate("alice", "new-alice")
    assert not users.authenticate("alice", "pw-alice")
    assert users.authenticate("bob", "pw-bob")
    assert not users.authenticate("carol", "x")
    assert path.read_text().count("alice:") == 1
    with pytest.raises(ValueError):
        set_user(path, "bad:name", "x")


def test_users_file_errors():
    with pytest.raises(ConfigError, match="expected username:hash"):
        parse_users("just-a-name\n")


def test_throttle_grows_and_is_bounded():
    now = [1000.0]
    throttle = FailureTable(5, clock=lambda: now[0])
    for _ in range(5):
        assert throttle.retry_after("user:a") == 0
        throttle.failure("user:a")
    waits = []
    for _ in range(20):
        throttle.failure("user:a")
        waits.append(throttle.retry_after("user:a"))
    assert waits[0] > 0
    assert waits == sorted(waits)
    assert max(waits) == MAX_LOCKOUT
    now[0] += MAX_LOCKOUT + 0.01
    assert throttle.retry_after("user:a") == 0
    assert throttle.retry_after("user:b") == 0
    throttle.success("user:a")
    throttle.failure("user:a")
    assert throttle.retry_after("user:a") == 0


def test_sessions_sliding_expiry_and_persistence(tmp_path):
    now = [1000.0]
    store = SessionStore(tmp_path / "s.sqlite", expiry=100, clock=lambda: now[0])
    sid = store.create("alice")
    assert len(sid) == 64
    now[0] += 90
    assert store.validate(sid) == "alice"
    now[0] += 90  # 180 s after creation, 90 s after last use
    assert store.validate(sid) == "alice"
    store.close()
    reopened = SessionStore(tmp_path / "s.sqlite", expiry=100, clock=lambda: now[0])
    assert reopened.validate(sid) == "alice"
    now[0] += 101
    assert reopened.validate(sid) is None
    assert sid not in (tmp_path / "s.sqlite").read_bytes().decode("latin1")


def test_gate_rules(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite")
    gate = Gate(store, "the-shared-key")
    sid = store.create("alice")
    assert gate.check(sid, None, key_ok=False) == "alice"
    assert gate.check(sid, "wrong", key_ok=True) == "alice"
    assert gate.check(None, "the-shared-key", key_ok=True) is None
    with pytest.raises(NotAcceptable):
        gate.check(None, "the-shared-key", key_ok=False)
    with pytest.raises(Unauthorized):
        gate.check("0" * 64, "the-shared-key", key_ok=False)
    with pytest.raises(Unauthorized):
        gate.check(None, "bad", key_ok=True)
    with pytest.raises(NotAcceptable):
        gate.check("xyz", None, key_ok=True)
    assert gate.check("xyz", "the-shared-key", key_ok=True) is None
    no_key = Gate(store, None)
    with pytest.raises(Unauthorized):
        no_key.check(None, "", key_ok=True)
