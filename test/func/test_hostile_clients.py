"""Hostile clients against a real agent: huge bodies, login and key guessing from
one address while the real user works from another."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time

import pytest

from devsupport.agentproc import AgentProcess

ATTACKER = "127.0.0.2"  # Linux routes all of 127/8 to loopback
USER = "127.0.0.1"
BOGUS_SESSION = "0" * 64


@pytest.fixture
def agent(pg, tmp_path):
    tmp_path.chmod(0o755)
    proc = AgentProcess(tmp_path / "agent", pg, log_level="INFO")
    proc.start()
    yield proc
    proc.stop()


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _request(
    agent: AgentProcess, method: str, path: str, source: str, body=None, headers=None
) -> tuple[int, dict]:
    """One request from ``source`` (an address of the client's socket)."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", agent.port, context=_tls(), timeout=30, source_address=(source, 0)
    )
    try:
        data = None if body is None else json.dumps(body)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def _login(agent: AgentProcess, source: str, password: str) -> tuple[int, dict]:
    body = {"username": agent.username, "password": password}
    return _request(agent, "POST", "/login", source, body)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}")


class PeakRSS:
    """Peak RSS of a process over a block: the kernel's high-water mark reset at
    entry (``clear_refs``), and RSS sampled every few ms as a fallback."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _status_kib(self.pid, "VmRSS"))

    def __enter__(self) -> PeakRSS:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as clear:
                clear.write("5")  # reset VmHWM to the current RSS
            self._hwm = True
        except OSError:
            self._hwm = False
        self.before = _status_kib(self.pid, "VmRSS")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._hwm:
            self.peak = max(self.peak, _status_kib(self.pid, "VmHWM"))


def _stream_huge_body(
    agent: AgentProcess, path: str, length: int, total: int, budget: float
) -> int | None:
    """Send ``Content-Length: <length>`` then up to ``total`` bytes for at most
    ``budget`` seconds; the reply's status, or None when the agent closed first."""
    raw = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
    sock = _tls().wrap_socket(raw)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Session: {BOGUS_SESSION}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    chunk = b" " * (1024 * 1024)
    sent = 0
    deadline = time.monotonic() + budget
    try:
        sock.sendall(head.encode())
        while sent < total and time.monotonic() < deadline:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the agent closed the connection
    try:
        sock.settimeout(10)
        reply = sock.recv(65536)
    except OSError:
        reply = b""
    finally:
        sock.close()
    if not reply:
        return None
    return int(reply.split(b" ", 2)[1])


@pytest.mark.parametrize("length", [300 * 1024 * 1024, 4_000_000_000])
def test_unauthenticated_huge_body_costs_no_memory(agent, length):
    """Regression: cheroot read a refused body in one piece before replying 401
    (a 300 MB Content-Length cost 300 MB; 4 GB failed the allocation)."""
    agent.login()
    assert agent.get("/profile").status_code == 200  # warm up the server threads
    with PeakRSS(agent.proc.pid) as rss:
        statuses = [
            _stream_huge_body(agent, path, length, total=300 * 1024 * 1024, budget=60)
            for path in ("/maintenance/postgres/vacuum", "/login", "/nowhere")
        ]
    print(f"\nRSS before {rss.before} KiB, peak {rss.peak} KiB; replies {statuses}")
    assert rss.peak - rss.before < 20 * 1024, (rss.before, rss.peak)
    assert all(status in (413, 401, None) for status in statuses), statuses
    assert agent.get("/profile").status_code == 200  # still serving


def test_body_over_the_bound_is_a_json_413(agent):
    conn = http.client.HTTPSConnection("127.0.0.1", agent.port, context=_tls(), timeout=30)
    try:
        conn.putrequest("POST", "/login")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(1024 * 1024 + 1))
        conn.endheaders()  # the body is never sent: the agent answers at once
        resp = conn.getresponse()
        assert resp.status == 413
        assert resp.getheader("Content-Type") == "application/json"
        assert resp.getheader("Server", "").startswith("temboard-agent/")
        assert resp.getheader("Access-Control-Allow-Origin") == "*"
        assert resp.getheader("Connection") == "close"
        assert json.loads(resp.read()) == {"error": "Request body is too large."}
    finally:
        conn.close()


def test_attacker_address_cannot_lock_out_the_real_user(agent):
    stop = threading.Event()
    attacker: list[int] = []

    def attack() -> None:
        i = 0
        while not stop.is_set():
            status, _ = _login(agent, ATTACKER, f"wrong-{i}")
            attacker.append(status)
            i += 1

    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    try:
        # Wait until the attacker is locked out, then log in again and again.
        deadline = time.monotonic() + 60
        while attacker.count(429) < 5:
            assert time.monotonic() < deadline, attacker
            time.sleep(0.05)
        for _ in range(10):
            status, reply = _login(agent, USER, agent.password)
            assert status == 200, reply
            status, reply = _request(
                agent, "GET", "/profile", USER, headers={"X-Session": reply["session"]}
            )
            assert (status, reply) == (200, {"username": agent.username})
    finally:
        stop.set()
        thread.join(30)
    assert attacker[:5] == [401] * 5
    assert set(attacker) <= {401, 429}


def test_wrong_keys_are_throttled_per_address(agent):
    path = "/discover"
    conn = http.client.HTTPSConnection(  # keep-alive: requests far apart from lockout times
        "127.0.0.1", agent.port, context=_tls(), timeout=30, source_address=(ATTACKER, 0)
    )

    def attempt(key: str) -> tuple[int, dict]:
        conn.request("GET", path, headers={"X-TemBoard-Agent-Key": key})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())

    try:
        statuses = []
        wait = 0.0
        while wait < 4:  # until a lockout long enough to test during it
            status, reply = attempt("guess")
            statuses.append(status)
            if status == 429:
                wait = reply["retry_after"]
                if wait < 4:
                    time.sleep(wait)
            else:
                assert (status, reply) == (401, {"error": "Invalid key."})
        assert statuses[:10] == [401] * 10
        # Locked out: even the right key from that address waits.
        status, reply = attempt(agent.key)
        assert status == 429, reply
        assert 0 < reply["retry_after"] <= 10
    finally:
        conn.close()
    # Another address with the key, and a session from the attacker's address, work.
    status, reply = _request(agent, "GET", f"{path}?key={agent.key}", USER)
    assert status == 200, reply
    status, login = _login(agent, ATTACKER, agent.password)
    assert status == 200, login
    status, reply = _request(agent, "GET", path, ATTACKER, headers={"X-Session": login["session"]})
    assert status == 200, reply


def test_bad_chunked_body_is_a_400(agent):
    agent.login()
    raw = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
    with _tls().wrap_socket(raw) as sock:
        sock.sendall(
            b"POST /maintenance/postgres/vacuum HTTP/1.1\r\nHost: x\r\n"
            + f"X-Session: {agent.session_id}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), reply
    assert json.loads(body) == {"error": "Invalid chunked body."}
