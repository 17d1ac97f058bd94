"""A throwaway local PostgreSQL cluster (initdb + pg_ctl) for demos and tests.

As root, the cluster runs as the ``postgres`` OS user: ``initdb`` refuses root.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from psycopg2.extensions import make_dsn

#: Environment variable choosing the PostgreSQL of throwaway clusters (tests, benchmarks,
#: demo): a major version (``13``) or a bindir. Unset: the distribution's (``pg_config``).
VERSION_ENV = "TEMBOARD_TEST_PG"


def binaries_cache() -> Path:
    """Where ``dev/pg-binaries.sh`` unpacks PostgreSQL builds, one folder per npm version."""
    if os.environ.get("TEMBOARD_PG_CACHE"):
        return Path(os.environ["TEMBOARD_PG_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/temboard-agent/postgresql")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "temboard-agent" / "postgresql"


def _has_server(path: Path) -> bool:
    return (path / "initdb").exists() and (path / "pg_ctl").exists()


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def _pg_config_bindir() -> Path | None:
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(out) if out and _has_server(Path(out)) else None


def _bindir_major(bindir: Path) -> str:
    """Major version of the binaries in ``bindir`` ("15"), from ``initdb --version``."""
    out = subprocess.run(
        [str(bindir / "initdb"), "--version"], capture_output=True, text=True
    ).stdout
    match = re.search(r"\) (\d+)", out)
    return match.group(1) if match else ""


def find_bindir(version: str | None = None) -> Path:
    """Folder of the PostgreSQL server binaries (initdb, pg_ctl, postgres).

    ``version`` (default: ``$TEMBOARD_TEST_PG``) is a major version or a bindir. A major
    is looked up in ``pg_config --bindir``, ``/usr/lib/postgresql/<major>/bin``, then the
    cache filled by ``dev/pg-binaries.sh <major>`` (newest build of that major). Without
    one, the distribution's binaries are used.
    """
    if version is None:
        version = os.environ.get(VERSION_ENV, "").strip()
    if version and not version.isdigit():
        path = Path(version)
        if _has_server(path):
            return path
        raise RuntimeError(f"{VERSION_ENV}={version}: no initdb and pg_ctl in that folder")
    if version:
        configured = _pg_config_bindir()
        if configured and _bindir_major(configured) == version:
            return configured
        candidates = [Path(f"/usr/lib/postgresql/{version}/bin")]
        builds = sorted(
            binaries_cache().glob(f"{version}.*/bin"),
            key=lambda p: _version_key(p.parent.name),
            reverse=True,
        )
        candidates += [b for b in builds if (b.parent / ".complete").exists()]
        for path in candidates:
            if _has_server(path):
                return path
        raise RuntimeError(
            f"PostgreSQL {version} binaries not found: run dev/pg-binaries.sh {version}"
        )
    candidates = [p for p in [_pg_config_bindir()] if p]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for path in candidates:
        if _has_server(path):
            return path
    raise RuntimeError("PostgreSQL server binaries not found (pg_config --bindir has no initdb)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmbeddedCluster:
    """A cluster in ``basedir``, listening on 127.0.0.1:``port`` and a socket in ``basedir``."""

    basedir: Path
    port: int = 0
    user: str = "postgres"  # the superuser role

    def __post_init__(self) -> None:
        self.basedir = Path(self.basedir).resolve()
        self.bindir = find_bindir()
        if not self.port:
            self.port = self._configured_port() or free_port()
        self.os_user = "postgres" if os.geteuid() == 0 else None

    @property
    def datadir(self) -> Path:
        return self.basedir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.basedir

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--"] + cmd
        return subprocess.run(cmd, check=check, capture_output=True, text=True, cwd="/")

    def init(self) -> None:
        """Run initdb (once) with trust authentication for local connections."""
        self.basedir.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            info = pwd.getpwnam(self.os_user)
            os.chown(self.basedir, info.pw_uid, info.pw_gid)
            # runuser needs to traverse the parents of basedir
            for parent in list(self.basedir.parents)[:-1]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        if (self.datadir / "PG_VERSION").exists():
            return
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.datadir),
            "-U", self.user,
            "--auth=trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nmax_connections = 300\nshared_buffers = 128MB\n"
                "track_counts = on\n"
            )

    def start(self) -> None:
        if self.is_running():
            return
        self.set_port(self.port)
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.datadir),
            "-l", str(self.basedir / "postgresql.log"),
            "-w", "-t", "60",
            "start",
        )  # fmt: skip

    def _configured_port(self) -> int:
        try:
            lines = (self.datadir / "postgresql.auto.conf").read_text().splitlines()
        except OSError:
            return 0
        # set_port writes `port = 5433`; ALTER SYSTEM writes `port = '5433'`.
        ports = [ln.split("=", 1)[1].strip().strip("'") for ln in lines if ln.startswith("port ")]
        return int(ports[-1]) if ports and ports[-1].isdigit() else 0

    def set_port(self, port: int) -> None:
        conf = self.datadir / "postgresql.auto.conf"
        lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("port ")]
        lines.append(f"port = {port}")
        conf.write_text("\n".join(lines) + "\n")
        self.port = port

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w",
            "stop", check=False,
        )  # fmt: skip

    def is_running(self) -> bool:
        result = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status", check=False
        )
        return result.returncode == 0

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.basedir, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string; every value quoted, so any database name works."""
        return make_dsn(host=str(self.socket_dir), port=self.port, user=self.user, dbname=dbname)


def make_self_signed_cert(cert: Path, key: Path, hostname: str = "localhost") -> None:
    """Write a self-signed certificate and its key (mode 0600) with openssl."""
    cert.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-days", "365", "-subj", f"/CN={hostname}",
            "-addext", f"subjectAltName=DNS:{hostname},IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    os.chmod(key, 0o600)


@contextmanager
def throwaway_cluster(basedir: Path) -> Iterator[EmbeddedCluster]:
    """A started cluster in ``basedir``, destroyed (files included) on exit."""
    cluster = EmbeddedCluster(basedir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
