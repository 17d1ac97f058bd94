"""Run a real agent process (tests, benchmarks, dev tools)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from temboardagent.embedded import EmbeddedCluster, free_port, make_self_signed_cert

USERNAME = "alice"
PASSWORD = "S3cret-pass!"
KEY = "test-key-0123456789"


class AgentProcess:
    """An agent started with ``python -m temboardagent -c <conf>``."""

    def __init__(
        self,
        home: Path,
        pg: EmbeddedCluster,
        extra_conf: str = "",
        plugins: str = '["maintenance"]',
        log_level: str = "DEBUG",
    ) -> None:
        self.home = Path(home)
        self.pg = pg
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.key = KEY
        self.username = USERNAME
        self.password = PASSWORD
        self.extra_conf = extra_conf
        self.plugins = plugins
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None
        self.anon = self.new_session()
        self.http = self.new_session()
        self.session_id: str | None = None

    def new_session(self) -> requests.Session:
        """A requests session verifying the agent's self-signed certificate."""
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = str(self.home / "server.pem")
        return session

    @property
    def conf(self) -> Path:
        return self.home / "temboard-agent.conf"

    @property
    def logfile(self) -> Path:
        return self.home / "agent.log"

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.home / "server.pem").exists():
            make_self_signed_cert(self.home / "server.pem", self.home / "server.key")
        users = self.home / "users"
        if not users.exists():
            from temboardagent.auth.passwords import hash_password

            users.write_text(f"{USERNAME}:{hash_password(PASSWORD)}\n")
        self.conf.write_text(
            f"""[temboard]
port = {self.port}
address = 127.0.0.1
users = users
plugins = {self.plugins}
ssl_cert_file = server.pem
ssl_key_file = server.key
key = {KEY}
home = {self.home}
hostname = test.example

[postgresql]
host = {self.pg.socket_dir}
port = {self.pg.port}
user = postgres
dbname = postgres
instance = test

[logging]
method = file
destination = {self.logfile}
level = {self.log_level}
{self.extra_conf}
"""
        )

    def start(self, timeout: float = 20.0) -> None:
        self.write_config()
        self.stderr = open(self.home / "stderr.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "temboardagent", "-c", str(self.conf)],
            stdout=self.stderr,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "agent exited: " + (self.home / "stderr.log").read_text()[-2000:]
                )
            try:
                self.anon.get(self.url + "/openapi.json", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("agent did not start in time")

    def login(self) -> str:
        resp = self.anon.post(
            self.url + "/login",
            json={"username": USERNAME, "password": PASSWORD},
            timeout=10,
        )
        resp.raise_for_status()
        self.session_id = resp.json()["session"]
        self.http.headers["X-Session"] = self.session_id
        return self.session_id

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        self.stderr.close()
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.http.request(method, self.url + path, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)
