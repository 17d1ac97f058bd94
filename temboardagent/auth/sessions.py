"""Sessions: random 64-hex ids, stored hashed in SQLite, sliding expiry.

Lookups are served from memory; the SQLite file keeps sessions across agent
restarts. Expiry extensions are written lazily (at most every ``PERSIST_EVERY``
seconds per session), so an idle session may expire up to that much earlier
after a restart than before it. Expired sessions are purged from memory and
the file every ``PURGE_EVERY`` seconds (checked on each create/validate).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

SESSION_RE = re.compile(r"^[0-9a-f]{64}$")
PERSIST_EVERY = 60.0
PURGE_EVERY = 60.0  # seconds between two purges of expired sessions


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


@dataclass
class _Session:
    username: str
    expires: float
    persisted_expires: float


class SessionStore:
    """Create, validate (sliding) and delete sessions."""

    def __init__(self, path: Path, expiry: int = 3600, clock=time.time) -> None:
        self.expiry = expiry
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._last_purge = clock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS sessions ("
                " digest TEXT PRIMARY KEY, username TEXT NOT NULL, expires REAL NOT NULL)"
            )
            now = self._clock()
            self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
            rows = self._db.execute("SELECT digest, username, expires FROM sessions").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"temboard.home: session store {path}: {exc}") from None
        for digest, username, expires in rows:
            self._sessions[digest] = _Session(username, expires, expires)

    def create(self, username: str) -> str:
        session_id = secrets.token_hex(32)
        now = self._clock()
        expires = now + self.expiry
        digest = _digest(session_id)
        with self._lock:
            self._maybe_purge(now)
            self._db.execute(
                "INSERT INTO sessions (digest, username, expires) VALUES (?, ?, ?)",
                (digest, username, expires),
            )
            self._sessions[digest] = _Session(username, expires, expires)
        return session_id

    def validate(self, session_id: str) -> str | None:
        """Username of a live session (its expiry slides), else None."""
        digest = _digest(session_id)
        now = self._clock()
        with self._lock:
            self._maybe_purge(now)
            session = self._sessions.get(digest)
            if session is None:
                return None
            if session.expires <= now:
                del self._sessions[digest]
                self._db.execute("DELETE FROM sessions WHERE digest = ?", (digest,))
                return None
            session.expires = now + self.expiry
            if session.expires - session.persisted_expires >= PERSIST_EVERY:
                self._db.execute(
                    "UPDATE sessions SET expires = ? WHERE digest = ?",
                    (session.expires, digest),
                )
                session.persisted_expires = session.expires
            return session.username

    def delete(self, session_id: str) -> bool:
        digest = _digest(session_id)
        with self._lock:
            found = self._sessions.pop(digest, None) is not None
            self._db.execute("DELETE FROM sessions WHERE digest = ?", (digest,))
        return found

    def purge(self) -> int:
        """Forget expired sessions; returns how many."""
        now = self._clock()
        with self._lock:
            return self._purge(now)

    def __len__(self) -> int:
        return len(self._sessions)

    def _maybe_purge(self, now: float) -> None:
        # Called with self._lock held.
        if now - self._last_purge >= PURGE_EVERY:
            self._purge(now)

    def _purge(self, now: float) -> int:
        # Called with self._lock held.
        self._last_purge = now
        expired = [d for d, s in self._sessions.items() if s.expires <= now]
        for digest in expired:
            del self._sessions[digest]
        # A live session's row may lag its in-memory expiry: persist it first.
        live = [d for d, s in self._sessions.items() if s.persisted_expires <= now]
        for digest in live:
            session = self._sessions[digest]
            self._db.execute(
                "UPDATE sessions SET expires = ? WHERE digest = ?", (session.expires, digest)
            )
            session.persisted_expires = session.expires
        self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        return len(expired)

    def close(self) -> None:
        with self._lock:
            for digest, session in self._sessions.items():
                if session.expires != session.persisted_expires:
                    self._db.execute(
                        "UPDATE sessions SET expires = ? WHERE digest = ?",
                        (session.expires, digest),
                    )
            self._db.close()
