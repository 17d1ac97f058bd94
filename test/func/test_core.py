"""The agent core over real HTTPS: auth, sessions, errors, headers, plugins, server."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time

import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql

from .helpers import HANG, legacy_tls_client, permissive_tls_server, tls_handshake

SESSION_RE = r"^[0-9a-f]{64}$"


def test_login_profile_logout(agent):
    anon = agent.anon
    resp = anon.post(
        agent.url + "/login", json={"username": agent.username, "password": agent.password}
    )
    assert resp.status_code == 200
    session = resp.json()["session"]
    assert len(session) == 64 and session == session.lower()
    int(session, 16)
    headers = {"X-Session": session}
    resp = anon.get(agent.url + "/profile", headers=headers)
    assert resp.status_code == 200
    assert resp.json() == {"username": agent.username}
    resp = anon.get(agent.url + "/logout", headers=headers)
    assert resp.json() == {"logout": True}
    resp = anon.get(agent.url + "/profile", headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"error": "Invalid session."}


def test_several_sessions_per_user(agent):
    first = agent.anon.post(
        agent.url + "/login", json={"username": agent.username, "password": agent.password}
    ).json()["session"]
    second = agent.anon.post(
        agent.url + "/login", json={"username": agent.username, "password": agent.password}
    ).json()["session"]
    assert first != second
    for session in (first, second):
        resp = agent.anon.get(agent.url + "/profile", headers={"X-Session": session})
        assert resp.status_code == 200


def test_login_errors(agent):
    url = agent.url + "/login"
    resp = agent.anon.post(url, json={"username": "nobody", "password": "whatever"})
    assert resp.status_code == 401
    assert resp.json() == {"error": "Invalid username/password."}
    resp = agent.anon.post(url, json={"username": 42, "password": "x"})
    assert resp.status_code == 406
    assert resp.json() == {"error": "Parameter 'username' is malformed."}
    resp = agent.anon.post(url, json={"username": "alice"})
    assert resp.status_code == 406
    assert resp.json() == {"error": "Parameter 'password' is malformed."}
    resp = agent.anon.post(url, data="{not json")
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "application/json"
    assert "error" in resp.json()


def test_form_labelled_json_body(agent):
    """The temboard UI sends JSON labelled application/x-www-form-urlencoded."""
    body = json.dumps({"username": agent.username, "password": agent.password})
    resp = agent.anon.post(
        agent.url + "/login",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200, resp.text


def test_session_header_errors(agent):
    url = agent.url + "/profile"
    resp = agent.anon.get(url)
    assert resp.status_code == 406
    assert resp.json() == {"error": "Parameter 'X-Session' is malformed."}
    resp = agent.anon.get(url, headers={"X-Session": "not-hex"})
    assert resp.status_code == 406
    resp = agent.anon.get(url, headers={"X-Session": "0" * 64})
    assert resp.status_code == 401
    assert resp.json() == {"error": "Invalid session."}


def test_key_on_read_only_routes_only(agent):
    resp = agent.anon.get(agent.url + "/discover", params={"key": agent.key})
    assert resp.status_code == 200, resp.text
    resp = agent.anon.get(agent.url + "/discover", headers={"X-TemBoard-Agent-Key": agent.key})
    assert resp.status_code == 200
    resp = agent.anon.get(agent.url + "/discover", params={"key": "wrong-key-value"})
    assert resp.status_code == 401
    # /profile and /logout are session-only
    resp = agent.anon.get(agent.url + "/profile", params={"key": agent.key})
    assert resp.status_code == 406
    # a POST is judged by its session, never by the key
    resp = agent.anon.post(
        agent.url + "/maintenance/postgres/analyze",
        params={"key": agent.key},
        headers={"X-Session": "0" * 64, "X-TemBoard-Agent-Key": agent.key},
        json={},
    )
    assert resp.status_code == 401


def test_discover(agent, pg):
    resp = agent.get("/discover")
    assert resp.status_code == 200
    data = resp.json()
    assert set(data) == {
        "hostname", "cpu", "memory_size", "pg_port", "pg_version",
        "pg_version_summary", "pg_data", "pg_block_size", "plugins", "privileges",
    }  # fmt: skip
    version = int(run_sql(pg, "SHOW server_version_num")[0][0])
    assert data["privileges"] == {
        "role": "postgres", "superuser": True, "pg_monitor": True,
        "pg_maintain": version >= 170000, "can_read_statistics": True,
    }  # fmt: skip
    assert data["hostname"] == "test.example"
    assert data["pg_port"] == pg.port
    (version,) = run_sql(pg, "SHOW server_version")[0]  # the TEMBOARD_TEST_PG version
    assert data["pg_version_summary"] == f"PostgreSQL {version}"
    assert data["pg_block_size"] == 8192
    assert data["pg_data"] == str(pg.datadir)
    assert data["plugins"] == ["maintenance"]
    assert isinstance(data["cpu"], int) and isinstance(data["memory_size"], int)


def test_uniform_errors_and_headers(agent):
    resp = agent.get("/no/such/route")
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"error": "Not found."}
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Server"].startswith("temboard-agent/")
    assert " Python/3." in resp.headers["Server"]
    resp = agent.delete("/profile")
    assert resp.status_code == 405
    assert resp.json() == {"error": "Method not allowed."}


def test_body_too_large(agent):
    resp = agent.anon.post(agent.url + "/login", data=b"{" + b" " * (1024 * 1024 + 10) + b"}")
    assert resp.status_code == 413
    assert resp.json() == {"error": "Request body is too large."}


def test_preflight(agent):
    resp = agent.anon.options(agent.url + "/maintenance/postgres/vacuum")
    assert resp.status_code == 200
    assert "X-Session" in resp.headers["Access-Control-Allow-Headers"]
    assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
def test_tls_1_2_minimum(agent, tmp_path, version):
    """The server itself refuses TLS 1.0 and 1.1, offered by a client that can speak them."""
    client = legacy_tls_client(version)
    # Control: the same client completes a handshake with a server that allows it
    # (so the refusal below is not the local OpenSSL declining to offer the version).
    with permissive_tls_server(tmp_path) as port:
        assert tls_handshake(client, port) == version.name.replace("_", ".")
    with pytest.raises(ssl.SSLError) as info:
        tls_handshake(client, agent.port)
    # The server's alert, not a client-side refusal.
    assert "alert protocol version" in str(info.value).lower(), info.value


def test_idle_connection_does_not_block(agent):
    """A client that connects and sends nothing must not stall other clients."""
    idle = [socket.create_connection(("127.0.0.1", agent.port)) for _ in range(3)]
    try:
        # Answered while they stay connected (the timeout only catches a hang).
        fresh = agent.new_session()
        resp = fresh.get(
            agent.url + "/profile", headers={"X-Session": agent.session_id}, timeout=HANG
        )
        assert resp.status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_plain_http_refused(agent):
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as sock:
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.recv(100)
    assert not reply.startswith(b"HTTP/1.1 200")


def test_no_secret_in_logs(agent):
    agent.anon.get(agent.url + "/discover", params={"key": agent.key})
    agent.anon.post(
        agent.url + "/login", json={"username": agent.username, "password": agent.password}
    )
    log = agent.logfile.read_text()
    assert agent.key not in log
    assert agent.password not in log
    assert agent.session_id not in log
    assert "GET /discover 200" in log


@pytest.fixture
def private_agent(pg, tmp_path):
    """An agent of its own, for tests that restart or reconfigure it."""
    tmp_path.chmod(0o755)
    procs = []

    def make(**kw) -> AgentProcess:
        proc = AgentProcess(tmp_path / f"agent{len(procs)}", pg, **kw)
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.stop()


def test_session_survives_restart(private_agent):
    proc = private_agent()
    proc.start()
    session = proc.login()
    proc.restart()
    resp = proc.new_session().get(proc.url + "/profile", headers={"X-Session": session})
    assert resp.status_code == 200
    assert resp.json() == {"username": proc.username}


def test_session_expiry(private_agent):
    proc = private_agent(extra_conf="")
    proc.write_config()
    text = proc.conf.read_text().replace("[postgresql]", "session_expiry = 3\n\n[postgresql]")
    proc.start()
    proc.stop()
    proc.conf.write_text(text)
    proc.write_config = lambda: None  # keep the edited file
    proc.start()
    session = proc.login()
    started = time.monotonic()
    # Sliding: activity every second keeps it alive past the 3 s expiry (a 2 s
    # margin per step for a loaded machine).
    while time.monotonic() - started < 4:
        time.sleep(1)
        assert proc.get("/profile").status_code == 200
    time.sleep(3.5)  # idle for longer than the expiry
    resp = proc.get("/profile")
    assert resp.status_code == 401
    assert session


def test_legacy_password_hash(private_agent):
    """A users file of upstream temboard-agent (its sample line, password ``alice``)."""
    proc = private_agent()
    proc.home.mkdir(parents=True)
    (proc.home / "users").write_text(
        "alice:Xm4iJH8aQmXRvrsLy/fNbQU23K6/FlEVRhhPZKO2aHvYVGzCft+u7RXQ9Z48IyVtnS+n47UM3QUM4is0BVTPOA==\n"
    )
    proc.start()
    resp = proc.anon.post(proc.url + "/login", json={"username": "alice", "password": "alice"})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["session"]) == 64
    resp = proc.anon.post(proc.url + "/login", json={"username": "alice", "password": "wrong"})
    assert resp.status_code == 401


def test_throttling(private_agent):
    proc = private_agent()
    proc.start()
    statuses = []
    for _ in range(12):
        resp = proc.anon.post(
            proc.url + "/login", json={"username": proc.username, "password": "bad"}
        )
        statuses.append(resp.status_code)
    assert statuses[:5] == [401] * 5
    assert 429 in statuses
    resp = proc.anon.post(
        proc.url + "/login", json={"username": proc.username, "password": proc.password}
    )
    if resp.status_code == 429:
        wait = resp.json()["retry_after"]
        assert wait <= 10
        time.sleep(wait + 0.1)
        resp = proc.anon.post(
            proc.url + "/login", json={"username": proc.username, "password": proc.password}
        )
    assert resp.status_code == 200


def test_missing_plugin(private_agent):
    proc = private_agent(plugins='["nope"]')
    proc.write_config()
    result = subprocess.run(
        [sys.executable, "-m", "temboardagent", "-c", str(proc.conf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Missing plugin: nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_value(private_agent):
    proc = private_agent()
    proc.write_config()
    text = proc.conf.read_text().replace(f"port = {proc.port}", "port = lots")
    proc.conf.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "temboardagent", "-c", str(proc.conf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "temboard-agent: error: temboard.port: 'lots' is not an integer"
    ]


def test_version():
    result = subprocess.run(
        [sys.executable, "-m", "temboardagent", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("temboard-agent ")


def test_server_level_errors_are_json(agent):
    """Errors cheroot answers itself (oversized headers, bad request line) are JSON too."""
    ctx = ssl.create_default_context(cafile=str(agent.home / "server.pem"))
    ctx.check_hostname = False
    cases = [
        (b"GET /profile HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", b" 413 "),
        (b"BLAH\r\n\r\n", b" 400 "),
    ]
    for request, status in cases:
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(request)
                reply = b""
                while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert status in head.split(b"\r\n")[0], head
        assert b"Content-Type: application/json" in head
        assert "error" in json.loads(body)
