"""Who is calling: a session (``X-Session``) or, on read-only routes, the shared key."""

from __future__ import annotations

import hmac
import math

from ..errors import TooManyRequests, Unauthorized, malformed
from .sessions import SESSION_RE, SessionStore
from .throttle import KeyThrottle

KEY_USER = None  # the username seen by handlers for key-authenticated calls


class Gate:
    """Applies the agent's authentication rules to one request."""

    def __init__(
        self, sessions: SessionStore, key: str | None, key_throttle: KeyThrottle | None = None
    ) -> None:
        self.sessions = sessions
        self._key = key.encode("utf-8") if key else None
        self.key_throttle = key_throttle or KeyThrottle()

    def key_matches(self, key: str | None) -> bool:
        if key is None or self._key is None:
            return False
        return hmac.compare_digest(key.encode("utf-8", "surrogateescape"), self._key)

    def _key_accepted(self, key: str, address: str) -> bool:
        """Check a key sent by ``address``: wrong ones count against it (429 while
        it is locked out, whatever key it sends)."""
        wait = self.key_throttle.retry_after(address)
        if wait > 0:
            wait = math.ceil(wait * 10) / 10  # never "retry in 0.0 s"
            raise TooManyRequests(
                f"Too many invalid keys, retry in {wait:.1f} seconds.", retry_after=wait
            )
        if self.key_matches(key):
            self.key_throttle.success(address)
            return True
        self.key_throttle.failure(address)
        return False

    def check(
        self, session_id: str | None, key: str | None, key_ok: bool, address: str = ""
    ) -> str | None:
        """Return the username (None for the key) or raise 401/406/429.

        A valid session always wins. On ``key_ok`` routes a valid key is accepted
        when the session is missing, malformed or unknown; elsewhere the key is
        ignored (never enough for POST/DELETE). Invalid keys are throttled per
        client ``address``.
        """
        if session_id is not None and SESSION_RE.match(session_id):
            username = self.sessions.validate(session_id)
            if username is not None:
                return username
            if key_ok and key is not None and self._key_accepted(key, address):
                return KEY_USER
            raise Unauthorized("Invalid session.")
        if key_ok and key is not None:
            if self._key_accepted(key, address):
                return KEY_USER
            if session_id is None:
                raise Unauthorized("Invalid key.")
        raise malformed("X-Session")
