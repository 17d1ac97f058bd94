"""The users file: ``username:hash`` lines."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from pathlib import Path

from ..errors import ConfigError
from .passwords import DUMMY_HASH, verify_password

logger = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[a-zA-Z0-9._@+-]{1,64}$")


def parse_users(text: str, source: str = "users") -> dict[str, str]:
    users: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        username, sep, hashed = line.partition(":")
        if not sep or not username or not hashed:
            raise ConfigError(f"temboard.users: {source}:{lineno}: expected username:hash")
        users[username] = hashed
    return users


class UsersFile:
    """Users loaded from a file; :meth:`reload` on SIGHUP."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"temboard.users: cannot read {self.path}: {exc.strerror}") from None
        users = parse_users(text, str(self.path))
        with self._lock:
            self._users = users
        logger.info("Loaded %d user(s) from %s.", len(users), self.path)

    def authenticate(self, username: str, password: str) -> bool:
        with self._lock:
            stored = self._users.get(username)
        if stored is None:
            verify_password(username, password, DUMMY_HASH)
            return False
        return verify_password(username, password, stored)


def set_user(path: Path, username: str, hashed: str) -> bool:
    """Add or replace ``username`` in the file atomically; True when it was added."""
    if not USERNAME_RE.match(username):
        raise ValueError(f"invalid username {username!r}")
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    added = True
    out = []
    for line in lines:
        if line.strip().partition(":")[0] == username:
            if added:
                out.append(f"{username}:{hashed}")
            added = False
        else:
            out.append(line)
    if added:
        out.append(f"{username}:{hashed}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users.")
    with os.fdopen(fd, "w", encoding="utf-8") as fo:
        fo.write("\n".join(out) + "\n")
    if path.exists():
        st = path.stat()
        os.chmod(tmp, st.st_mode & 0o777)
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            pass
    else:
        os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    return added
