"""``temboard-agent --demo``: the agent on a throwaway local PostgreSQL cluster.

Creates (once) in DIR: a PostgreSQL cluster, a self-signed certificate, a users
file with a demo user and a configuration file; prints the URL and credentials,
then serves. The cluster is stopped when the agent stops.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Callable

from .auth.passwords import hash_password
from .embedded import EmbeddedCluster, free_port, make_self_signed_cert

DEMO_USER = "admin"


def prepare_demo(directory: Path, port: int = 2345) -> tuple[Path, EmbeddedCluster, str]:
    """Create the demo files and start the cluster; return (config, cluster, password)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    cluster = EmbeddedCluster(directory / "pg", port=_saved_port(directory) or free_port())
    cluster.init()
    (directory / "pg.port").write_text(str(cluster.port))
    cluster.start()
    if not (directory / "server.pem").exists():
        make_self_signed_cert(directory / "server.pem", directory / "server.key")
    password_file = directory / "password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12) + "\n")
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    (directory / "users").write_text(f"{DEMO_USER}:{hash_password(password)}\n")
    key = secrets.token_hex(16)
    config = directory / "temboard-agent.conf"
    config.write_text(
        f"""# Demo configuration written by temboard-agent --demo
[temboard]
port = {port}
address = 127.0.0.1
users = users
plugins = ["maintenance"]
ssl_cert_file = server.pem
ssl_key_file = server.key
key = {key}
home = home

[postgresql]
host = {cluster.socket_dir}
port = {cluster.port}
user = postgres
dbname = postgres
instance = demo

[logging]
method = stderr
level = INFO
"""
    )
    return config, cluster, password


def _saved_port(directory: Path) -> int:
    try:
        return int((directory / "pg.port").read_text())
    except (OSError, ValueError):
        return 0


def run_demo(directory: Path, overrides: dict, serve: Callable[[Path, dict], int]) -> int:
    """Prepare the demo in ``directory`` and ``serve(config_path, overrides)`` it."""
    port = int(overrides.get(("temboard", "port"), 2345))
    config, cluster, password = prepare_demo(directory, port)
    print(
        f"\ntemboard-agent demo\n"
        f"  URL:       https://127.0.0.1:{port}/  (self-signed certificate)\n"
        f"  login:     {DEMO_USER} / {password}\n"
        f"  config:    {config}\n"
        f"  PostgreSQL: {cluster.dsn()}\n"
        f"  try: curl -k -X POST https://127.0.0.1:{port}/login "
        f'-d \'{{"username": "{DEMO_USER}", "password": "{password}"}}\'\n',
        file=sys.stderr,
        flush=True,
    )
    try:
        return serve(config, overrides)
    finally:
        cluster.stop()
