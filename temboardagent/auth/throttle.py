"""Login throttling: repeated failures by username or address get locked out briefly."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

FREE_FAILURES = 5  # failures allowed before any lockout
MAX_LOCKOUT = 10.0  # seconds; so the right password works again within this delay
FORGET_AFTER = 900.0  # seconds without failure reset the counter


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Tracks failures per key (``user:<name>``, ``addr:<ip>``)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login attempt is allowed for all ``keys`` (0 = now)."""
        now = self._clock()
        with self._lock:
            waits = [r.locked_until - now for k in keys if (r := self._records.get(k)) is not None]
        return max([0.0] + waits)

    def failure(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                rec = self._records.get(key)
                if rec is None or now - rec.last_failure > FORGET_AFTER:
                    rec = self._records[key] = _Record()
                rec.failures += 1
                rec.last_failure = now
                extra = rec.failures - FREE_FAILURES
                if extra >= 0:
                    rec.locked_until = now + min(0.5 * 2**extra, MAX_LOCKOUT)
            if len(self._records) > 10000:
                self._prune(now)

    def success(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if now - r.last_failure > FORGET_AFTER]:
            del self._records[key]
