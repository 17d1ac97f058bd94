"""Who is calling: a session (``X-Session``) or, on read-only routes, the shared key."""

from __future__ import annotations

import hmac

from ..errors import Unauthorized, malformed
from .sessions import SESSION_RE, SessionStore

KEY_USER = None  # the username seen by handlers for key-authenticated calls


class Gate:
    """Applies the agent's authentication rules to one request."""

    def __init__(self, sessions: SessionStore, key: str | None) -> None:
        self.sessions = sessions
        self._key = key.encode("utf-8") if key else None

    def key_matches(self, key: str | None) -> bool:
        if key is None or self._key is None:
            return False
        return hmac.compare_digest(key.encode("utf-8", "surrogateescape"), self._key)

    def check(self, session_id: str | None, key: str | None, key_ok: bool) -> str | None:
        """Return the username (None for the key) or raise 401/406.

        A valid session always wins. On ``key_ok`` routes a valid key is accepted
        when the session is missing, malformed or unknown; elsewhere the key is
        ignored (never enough for POST/DELETE).
        """
        if session_id is not None and SESSION_RE.match(session_id):
            username = self.sessions.validate(session_id)
            if username is not None:
                return username
            if key_ok and self.key_matches(key):
                return KEY_USER
            raise Unauthorized("Invalid session.")
        if key_ok and key is not None:
            if self.key_matches(key):
                return KEY_USER
            if session_id is None:
                raise Unauthorized("Invalid key.")
        raise malformed("X-Session")
