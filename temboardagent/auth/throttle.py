"""Throttling of failed logins and invalid keys.

Rules (README, "Security"):

- Per (username, client address): 5 free failures, then each failure locks
  that pair out for 0.5 s, 1 s, 2 s... up to 10 s. The right password works
  again at most 10 s after the last failure. Another address is not affected:
  an attacker cannot lock the real user out from elsewhere.
- Per client address, all usernames: 20 free failures, then the same growing
  lockout (one address spraying usernames).
- Globally: password checks are bounded to ``GLOBAL_RATE`` per second (token
  bucket of ``GLOBAL_BURST``), which bounds a distributed guess rate and the
  CPU spent hashing passwords. Beyond it, attempts get 429 with a wait of at
  most 1 / GLOBAL_RATE s: a slowdown, never a lockout. A (username, address)
  pair that logged in successfully within ``KNOWN_GOOD_TTL`` (e.g. the
  temboard UI's server) bypasses the global bound and the per-address rule;
  only failures of that very pair can slow it down.
- Invalid shared keys: per address, 10 free failures then the same growing
  lockout, during which key attempts from that address get 429 without being
  checked (sessions are not affected); the right key resets the address.

Every table is bounded (``MAX_RECORDS``; entries older than ``FORGET_AFTER``
go first, then the oldest) and keys are bounded in length.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

FREE_FAILURES = 5  # per (username, address), before any lockout
ADDRESS_FREE_FAILURES = 20  # per address, all usernames
KEY_FREE_FAILURES = 10  # invalid shared keys per address
MAX_LOCKOUT = 10.0  # seconds; so the right password works again within this delay
FORGET_AFTER = 900.0  # seconds without failure reset a counter
MAX_RECORDS = 10_000  # entries per table
MAX_NAME_LENGTH = 64  # usernames are 1-64 characters (users file)
MAX_ADDRESS_LENGTH = 64  # IPv6 with zone fits
GLOBAL_RATE = 10.0  # failed logins per second, all clients
GLOBAL_BURST = 50.0
KNOWN_GOOD_TTL = 30 * 86400.0  # seconds a successful (username, address) stays trusted
MAX_KNOWN_GOOD = 1_000

Clock = Callable[[], float]


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class FailureTable:
    """Failure counters per key with a growing lockout, bounded in size."""

    def __init__(
        self,
        free_failures: int,
        *,
        max_lockout: float = MAX_LOCKOUT,
        max_records: int = MAX_RECORDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.max_lockout = max_lockout
        self.max_records = max_records
        self._clock = clock
        # Least recently failed first (move_to_end on each failure).
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._records)

    def retry_after(self, *keys: str) -> float:
        """Seconds until all ``keys`` are allowed again (0 = now)."""
        now = self._clock()
        with self._lock:
            waits = [r.locked_until - now for k in keys if (r := self._records.get(k)) is not None]
        return max([0.0, *waits])

    def failure(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                rec = self._records.get(key)
                if rec is None or now - rec.last_failure > FORGET_AFTER:
                    rec = _Record()
                self._records[key] = rec
                self._records.move_to_end(key)
                rec.failures += 1
                rec.last_failure = now
                extra = rec.failures - self.free_failures
                if extra >= 0:
                    rec.locked_until = now + min(0.5 * 2 ** min(extra, 16), self.max_lockout)
            self._bound(now)

    def success(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def _bound(self, now: float) -> None:
        records = self._records
        while records:  # forgotten entries first (oldest failures are in front)
            key, rec = next(iter(records.items()))
            if now - rec.last_failure <= FORGET_AFTER:
                break
            del records[key]
        while len(records) > self.max_records:
            records.popitem(last=False)


def _pair(username: str, address: str) -> str:
    return f"{address[:MAX_ADDRESS_LENGTH]} {username[:MAX_NAME_LENGTH]}"


class LoginThrottle:
    """Decides whether a login attempt may check a password (see module doc)."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        global_rate: float = GLOBAL_RATE,
        global_burst: float = GLOBAL_BURST,
        max_records: int = MAX_RECORDS,
    ) -> None:
        self._clock = clock
        self.pairs = FailureTable(FREE_FAILURES, max_records=max_records, clock=clock)
        self.addresses = FailureTable(ADDRESS_FREE_FAILURES, max_records=max_records, clock=clock)
        self.global_rate = global_rate
        self.global_burst = global_burst
        self._tokens = global_burst
        self._refilled = clock()
        self._known_good: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        # Called with self._lock held.
        elapsed = max(now - self._refilled, 0.0)
        self._tokens = min(self.global_burst, self._tokens + elapsed * self.global_rate)
        self._refilled = now

    def _is_known_good(self, pair: str, now: float) -> bool:
        # Called with self._lock held.
        seen = self._known_good.get(pair)
        if seen is None:
            return False
        if now - seen > KNOWN_GOOD_TTL:
            del self._known_good[pair]
            return False
        return True

    def admit(self, username: str, address: str) -> float:
        """0 when this attempt may check its password now (taking one token of
        the global bound unless the pair is known good), else seconds to wait."""
        pair = _pair(username, address)
        now = self._clock()
        with self._lock:
            known = self._is_known_good(pair, now)
        wait = self.pairs.retry_after(pair)
        if known or wait > 0:
            return wait
        wait = self.addresses.retry_after(address[:MAX_ADDRESS_LENGTH])
        if wait > 0:
            return wait
        with self._lock:
            self._refill(now)
            if self._tokens < 1.0:
                return (1.0 - self._tokens) / self.global_rate
            self._tokens -= 1.0
        return 0.0

    def failure(self, username: str, address: str) -> None:
        self.pairs.failure(_pair(username, address))
        self.addresses.failure(address[:MAX_ADDRESS_LENGTH])

    def success(self, username: str, address: str) -> None:
        pair = _pair(username, address)
        now = self._clock()
        self.pairs.success(pair)
        with self._lock:
            self._known_good[pair] = now
            self._known_good.move_to_end(pair)
            while len(self._known_good) > MAX_KNOWN_GOOD:
                self._known_good.popitem(last=False)


class KeyThrottle:
    """Invalid shared keys, per client address."""

    def __init__(self, clock: Clock = time.monotonic, *, max_records: int = MAX_RECORDS) -> None:
        self.table = FailureTable(KEY_FREE_FAILURES, max_records=max_records, clock=clock)

    def retry_after(self, address: str) -> float:
        return self.table.retry_after(address[:MAX_ADDRESS_LENGTH])

    def failure(self, address: str) -> None:
        self.table.failure(address[:MAX_ADDRESS_LENGTH])

    def success(self, address: str) -> None:
        self.table.success(address[:MAX_ADDRESS_LENGTH])
