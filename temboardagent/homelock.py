"""One agent per home: an exclusive ``flock`` on ``<home>/agent.lock``.

The agent takes the lock before it opens any SQLite file or touches
PostgreSQL, so a second agent started on the same home (an admin's mistake, a
unit restarted while the old process still runs, two clusters left on the
default home) stops at once instead of recovering the first one's live tasks.
The lock dies with the process (kill -9 included): no stale lock to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import ConfigError

LOCK_NAME = "agent.lock"


class HomeInUse(ConfigError):
    """Another process holds the home's lock."""

    def __init__(self, home: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"home {home} is in use by another agent ({holder})")
        self.home = home
        self.pid = pid


class HomeLock:
    """The held lock; :meth:`release` (or process exit) frees it."""

    def __init__(self, home: Path, fd: int) -> None:
        self.home = home
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    def __del__(self) -> None:  # pragma: no cover - safety net
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_home(home: Path) -> HomeLock:
    """Lock ``home`` for this process and write our pid in the lock file.

    Raises :class:`HomeInUse` (a ConfigError: one line on stderr, exit 1) when
    another process holds it, ConfigError when the file cannot be opened.
    """
    home = Path(home)
    path = home / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(f"temboard.home: cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise HomeInUse(home, pid) from None
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"temboard.home: cannot lock {path}: {exc.strerror}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return HomeLock(home, fd)
