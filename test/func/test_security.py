"""Security properties of a live agent: authentication on every route, login
throttling, hostile names, size limits, slow clients, TLS, secrets in logs.

A private cluster and agents (the brute-force test locks the loopback address
out of /login for a few seconds; hostile names need objects of their own).
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from devsupport.agentproc import AgentProcess
from devsupport.slowclients import trickling_clients
from devsupport.sql import run_sql
from temboardagent.embedded import throwaway_cluster

from .helpers import HANG, drop_database, route_table, wait_for

LATER = {"datetime": "2100-01-01T00:00:00Z"}  # far enough never to run
SESSIONS: list[str] = []  # every session id handed out in this module
AGENTS: list[AgentProcess] = []  # every agent started in this module


def _start(agent: AgentProcess) -> AgentProcess:
    AGENTS.append(agent)
    agent.start()
    return agent


def _login(agent: AgentProcess) -> str:
    session = agent.login()
    SESSIONS.append(session)
    return session


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A cluster with database ``sec`` (table ``sentinel``) and a logged-in agent."""
    base = tmp_path_factory.mktemp("security")
    base.chmod(0o755)
    agent = None
    with throwaway_cluster(base / "pg") as pg:
        try:
            run_sql(pg, "CREATE DATABASE sec", dbname="postgres")
            run_sql(
                pg,
                "CREATE TABLE public.sentinel (id int PRIMARY KEY);"
                "INSERT INTO public.sentinel VALUES (1); ANALYZE public.sentinel",
                dbname="sec",
            )
            agent = _start(AgentProcess(base / "agent", pg))
            _login(agent)
            ops = {}
            for kind in ("vacuum", "analyze", "reindex"):
                resp = agent.post(f"/maintenance/sec/{kind}", json=LATER)
                assert resp.status_code == 200, resp.text
                ops[kind] = resp.json()["id"]
            yield SimpleNamespace(pg=pg, agent=agent, base=base, ops=ops)
        finally:
            if agent is not None:
                agent.stop()


def _params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


def _kind_of(path: str) -> str:
    for kind in ("vacuum", "analyze", "reindex"):
        if f"/{kind}" in path:
            return kind
    return "vacuum"


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: quote(values[m.group(1)], safe=""), path)


def _valid_values(env, path: str) -> dict[str, str]:
    return {
        "dbname": "sec",
        "schema": "public",
        "table": "sentinel",
        "index": "sentinel_pkey",
        "operation": env.ops[_kind_of(path)],
    }


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Client:
    """Requests sent as they are (no URL normalisation) over one keep-alive connection."""

    def __init__(self, agent, timeout: float = 10) -> None:
        self.agent = agent
        self.timeout = timeout
        self.conn: http.client.HTTPSConnection | None = None

    def __call__(self, method: str, path: str, headers=None, body: bytes = b""):
        """(status, body) of one request."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.agent.port, context=_tls_context(), timeout=self.timeout
                )
            try:
                self.conn.request(method, path, body=body or None, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if resp.will_close:
                self.conn.close()
                self.conn = None
            return resp.status, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _raw(agent, method: str, path: str, headers=None, body: bytes = b"", timeout: float = 10):
    """One request on a connection of its own: (status, body)."""
    client = _Client(agent, timeout)
    try:
        return client(method, path, headers, body)
    finally:
        client.close()


# Authentication on every route


def test_every_route_needs_credentials(env, tmp_path):
    """Walk the route table: 401/406 without (valid) credentials; the key only
    opens GET routes marked key_ok; a session opens everything."""
    agent = env.agent
    routes = route_table(tmp_path)
    public = {(r.method, r.path) for r in routes if r.public}
    assert public == {("POST", "/login"), ("GET", "/openapi.json")}
    assert all(r.method == "GET" for r in routes if r.key_ok), "key accepted on a write route"
    session = {"X-Session": agent.session_id}
    key_header = {"X-TemBoard-Agent-Key": agent.key}
    raw = _Client(agent)
    checked = 0
    for route in routes:
        if route.public or route.path == "/logout":
            continue
        path = _fill(route.path, _valid_values(env, route.path))
        body = b'{"datetime": "2100-01-01T00:00:00Z"}' if route.method == "POST" else b""
        cases = [
            ({}, (406,)),
            ({"X-Session": "0" * 64}, (401,)),
            ({"X-Session": "not-a-session"}, (406,)),
            ({"X-TemBoard-Agent-Key": "wrong-key"}, (401, 406)),
        ]
        for headers, expected in cases:
            status, reply = raw(route.method, path, headers, body)
            assert status in expected, (route, headers, status, reply)
            assert b'"error"' in reply
        # The key, in the header and in the query string.
        for headers, suffix in ((key_header, ""), ({}, "?key=" + quote(agent.key))):
            status, reply = raw(route.method, path + suffix, headers, body)
            if route.key_ok:
                assert status == 200, (route, status, reply)
            else:
                assert status in (401, 406), (route, status, reply)
        # A valid session reaches the handler (DELETE last: it cancels).
        if route.method != "DELETE":
            status, reply = raw(route.method, path, session, body)
            assert status == 200 or (route.method == "POST" and status == 409), (route, reply)
        checked += 1
    assert checked >= 30
    for kind, op in env.ops.items():
        status, reply = raw("DELETE", f"/maintenance/{kind}/{op}", session)
        assert status == 200, reply
    # /logout without credentials, last since it ends the session when given one.
    assert _raw(agent, "GET", "/logout")[0] == 406
    assert _raw(agent, "GET", "/logout?key=" + quote(agent.key))[0] == 406


def test_key_never_opens_writes(env):
    agent = env.agent
    for method, path in (
        ("POST", "/maintenance/sec/vacuum"),
        ("POST", "/maintenance/sec/schema/public/table/sentinel/analyze"),
        ("DELETE", "/maintenance/vacuum/" + env.ops["vacuum"]),
    ):
        for headers, query in (
            ({"X-TemBoard-Agent-Key": agent.key}, ""),
            ({}, "?key=" + quote(agent.key)),
            ({"X-TemBoard-Agent-Key": agent.key, "X-Session": "0" * 64}, ""),
        ):
            status, reply = _raw(agent, method, path + query, headers, b"{}")
            assert status in (401, 406), (method, path, headers, status, reply)


# Login throttling


def test_brute_force_is_throttled(env):
    agent = _start(AgentProcess(env.base / "bruteforce", env.pg))
    url = agent.url + "/login"
    statuses = []
    for i in range(50):
        resp = agent.anon.post(url, json={"username": agent.username, "password": f"wrong-{i}"})
        statuses.append(resp.status_code)
        if resp.status_code != 401:
            assert resp.status_code == 429, resp.text
            assert 0 < resp.json()["retry_after"] <= 10
    assert statuses[:5] == [401] * 5
    assert statuses.count(429) >= 30, statuses
    # Refused while locked out, even with the right password; accepted once the
    # announced retry_after has passed (the lockout ends, it does not slide on 429s).
    resp = agent.anon.post(url, json={"username": agent.username, "password": agent.password})
    retries = 0
    while resp.status_code == 429:
        retry_after = resp.json()["retry_after"]
        assert 0 < retry_after <= 10, resp.text
        retries += 1
        assert retries <= 3, "still locked out after waiting retry_after three times"
        time.sleep(retry_after)
        resp = agent.anon.post(url, json={"username": agent.username, "password": agent.password})
    assert resp.status_code == 200, resp.text
    SESSIONS.append(resp.json()["session"])
    print(f"\nbrute force: {statuses.count(401)} x 401, {statuses.count(429)} x 429")
    agent.stop()


# Hostile names

HOSTILE = [
    "x'y",
    'x"y',
    "x;y",
    "x\\y",
    "x'; DROP TABLE public.sentinel; --",
    '"; DROP TABLE public.sentinel; --',
    "a" * 64,
    "b" * 300,
    "..",
    "a/b",  # sent as a%2Fb
    "x\ny",
    "sentine_",  # a LIKE pattern would match the sentinel
    "%",
    "*",
    "é'\"",
]
NUL = "x\x00y"


def _pending_count(agent) -> int:
    return sum(
        1
        for k in ("vacuum", "analyze", "reindex")
        for item in agent.get(f"/maintenance/{k}/scheduled").json()
        if item["status"] in ("todo", "queued", "doing")
    )


def test_hostile_names_in_every_path_parameter(env, tmp_path):
    agent = env.agent
    _login(agent)
    session = {"X-Session": agent.session_id}
    raw = _Client(agent)
    pending = _pending_count(agent)
    tables = run_sql(env.pg, "SELECT count(*) FROM pg_class", dbname="sec")
    seen = {}
    sent = 0
    for route in route_table(tmp_path):
        for param in _params(route.path):
            for name in HOSTILE + [NUL]:
                values = _valid_values(env, route.path)
                values[param] = name
                path = _fill(route.path, values)
                body = b'{"datetime": "2100-01-01T00:00:00Z"}' if route.method == "POST" else b""
                status, reply = raw(route.method, path, session, body)
                sent += 1
                seen[status] = seen.get(status, 0) + 1
                ignored = route.path.endswith("/{index}/table/{table}/reindex/scheduled") and (
                    param == "index"
                )  # the spec's alias path ignores its index
                allowed = (200, 404, 406) if ignored else (404, 406)
                assert status in allowed, (route.method, path, status, reply)
                assert reply.startswith(b'{"error"') or status == 200
    print(f"\nhostile names: {sent} requests, statuses {seen}")
    assert run_sql(env.pg, "SELECT id FROM public.sentinel", dbname="sec") == [(1,)]
    assert run_sql(env.pg, "SELECT count(*) FROM pg_class", dbname="sec") == tables
    assert _pending_count(agent) == pending, "a hostile name scheduled an operation"
    log = (env.pg.basedir / "postgresql.log").read_text(errors="replace")
    assert "syntax error" not in log


def test_quoted_identifiers(env):
    """Objects whose names look like SQL are read and maintained as themselves."""
    agent = env.agent
    _login(agent)
    schema = 's"; DROP TABLE public.sentinel; --'
    table = "t'; DELETE FROM public.sentinel; --\\"
    index = 'i"x;'
    long_table = "l" * 63
    run_sql(
        env.pg,
        "CREATE SCHEMA {s}; CREATE TABLE {s}.{t} (id int); CREATE INDEX {i} ON {s}.{t} (id);"
        "CREATE TABLE public.{lt} (id int)".format(
            s=_ident(schema), t=_ident(table), i=_ident(index), lt=_ident(long_table)
        ),
        dbname="sec",
    )
    base = f"/maintenance/sec/schema/{quote(schema, safe='')}"
    resp = agent.get(base)
    assert resp.status_code == 200, resp.text
    assert [t["name"] for t in resp.json()["tables"]] == [table]
    assert [i["name"] for i in resp.json()["indexes"]] == [index]
    resp = agent.get(f"{base}/table/{quote(table, safe='')}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == table
    resp = agent.get(f"/maintenance/sec/schema/public/table/{long_table}")
    assert resp.status_code == 200, resp.text
    ids = []
    for path in (
        f"{base}/table/{quote(table, safe='')}/vacuum",
        f"{base}/table/{quote(table, safe='')}/analyze",
        f"{base}/index/{quote(index, safe='')}/reindex",
        f"/maintenance/sec/schema/public/table/{long_table}/vacuum",
    ):
        resp = agent.post(path, json={"mode": "full,analyze"} if "vacuum" in path else {})
        assert resp.status_code == 200, (path, resp.text)
        ids.append((path.rsplit("/", 1)[1], resp.json()["id"]))
    for kind, op in ids:
        deadline = time.monotonic() + HANG
        while True:
            item = agent.get(f"/maintenance/{kind}/{op}").json()
            if item["status"] not in ("todo", "queued", "doing"):
                break
            assert time.monotonic() < deadline, item
            time.sleep(0.1)
        assert item["status"] == "done", item
    assert run_sql(env.pg, "SELECT id FROM public.sentinel", dbname="sec") == [(1,)]


def test_name_over_63_bytes_is_not_its_truncation(env):
    """PostgreSQL truncates identifiers to 63 bytes, so a bound name compared
    to pg_class.relname (type name) matches the truncated table: the
    operation is scheduled under a name that no object has (lists, duplicate
    and conflict detection then disagree with the table's own operations)."""
    agent = env.agent
    run_sql(env.pg, "CREATE TABLE IF NOT EXISTS public.{} (id int)".format("m" * 63), dbname="sec")
    for path in (
        f"/maintenance/sec/schema/public/table/{'m' * 64}",
        f"/maintenance/sec/schema/public/table/{'m' * 64}/vacuum/scheduled",
    ):
        resp = agent.get(path)
        assert resp.status_code == 404, (path, resp.status_code)
    resp = agent.post(f"/maintenance/sec/schema/public/table/{'m' * 64}/analyze", json=LATER)
    if resp.status_code == 200:
        agent.delete("/maintenance/analyze/" + resp.json()["id"])
    assert resp.status_code == 404


def test_name_limit_is_counted_in_the_database_encoding(env):
    """63 bytes in the database's encoding, not in UTF-8: in a LATIN1 database a
    table of 40 "é" (40 bytes there, 80 in UTF-8) exists for reads and writes."""
    agent = env.agent
    _login(agent)
    table = "é" * 40
    run_sql(
        env.pg,
        "CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    try:
        run_sql(env.pg, f"CREATE TABLE public.{_ident(table)} (id int)", dbname="latin1")
        path = f"/maintenance/latin1/schema/public/table/{quote(table, safe='')}"
        assert agent.get(path).status_code == 200
        assert agent.get(path + "/analyze/scheduled").status_code == 200
        resp = agent.post(path + "/analyze", json=LATER)
        assert resp.status_code == 200, resp.text
        assert agent.delete("/maintenance/analyze/" + resp.json()["id"]).status_code == 200
        too_long = f"/maintenance/latin1/schema/public/table/{quote(table + 'é' * 24, safe='')}"
        assert agent.get(too_long).status_code == 404
        assert agent.post(too_long + "/analyze", json=LATER).status_code == 404
    finally:
        drop_database(env.pg, "latin1")


def test_newline_in_a_name_never_ends_a_sql_comment(env):
    """Regression: comments of ``sql/*.sql`` named their parameters (``%(relname)s``),
    which psycopg2 fills in there too: an existing object whose name holds a newline
    ended the comment, and the rest of its name ran as SQL, as the agent's role."""
    agent = env.agent
    _login(agent)
    injected = ";BEGIN READ WRITE;CREATE TABLE public.inj();COMMIT;--"  # < 63 bytes
    table = "x\n" + injected
    dbname = "d\n" + injected
    run_sql(env.pg, f"CREATE TABLE public.{_ident(table)} (id int)", dbname="sec")
    run_sql(env.pg, f"CREATE DATABASE {_ident(dbname)}", dbname="postgres")
    try:
        for path in (
            f"/maintenance/sec/schema/public/table/{quote(table, safe='')}/analyze",
            f"/maintenance/{quote(dbname, safe='')}/analyze",
        ):
            resp = agent.post(path, json=LATER)
            assert resp.status_code == 200, (path, resp.text)
            assert agent.delete("/maintenance/analyze/" + resp.json()["id"]).status_code == 200
        for db in ("sec", "postgres"):
            query = "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'inj'"
            assert run_sql(env.pg, query, dbname=db) == [(0,)]
    finally:
        drop_database(env.pg, dbname)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_nul_in_read_routes(env):
    """Regression: a NUL in a name on the read routes was a 500."""
    agent = env.agent
    for path in (
        "/maintenance/x%00y",
        "/maintenance/sec/schema/x%00y",
        "/maintenance/sec/schema/public/table/x%00y",
    ):
        resp = agent.get(path)
        assert resp.status_code == 404, (path, resp.status_code, resp.text)


def test_history_offset_overflow(env):
    resp = env.agent.get("/maintenance/vacuum/history", params={"offset": str(2**63)})
    assert resp.status_code == 406, resp.text


def test_delete_on_list_routes_is_405(env):
    for path in ("/maintenance/vacuum/history", "/maintenance/analyze/scheduled"):
        resp = env.agent.delete(path)
        assert resp.status_code == 405, (path, resp.status_code, resp.text)


def test_database_name_with_newline_is_404(env):
    """Regression: libpq's error then spans two lines; it was a 503."""
    for path in ("/maintenance/a%0Ab", "/maintenance/a%0Ab/vacuum/scheduled"):
        resp = env.agent.get(path)
        assert resp.status_code == 404, (path, resp.text)


def test_no_log_injection(env):
    """A newline in a path does not forge an access log line."""
    forged = "1999-01-01 00:00:00,000 temboard-agent[1]: [temboardagent.access] INFO: forged"
    resp = env.agent.get("/maintenance/vacuum/" + quote("x\n" + forged, safe=""))
    assert resp.status_code == 404
    # The log is written by a thread: wait for the line logging that request.
    lines = wait_for(
        lambda: [
            line
            for line in env.agent.logfile.read_text(errors="replace").splitlines()
            if "forged" in line
        ],
        message="the request in the log",
    )
    assert not [line for line in lines if line.startswith("1999-01-01")]


# Sizes and slow clients


def test_body_over_limit(env):
    agent = env.agent
    path = agent.url + "/maintenance/sec/vacuum"
    resp = agent.post(path.replace(agent.url, ""), data=b" " * (1024 * 1024 + 1))
    assert resp.status_code == 413
    assert resp.json() == {"error": "Request body is too large."}

    def chunks():
        for _ in range(17):
            yield b" " * 65536

    resp = agent.http.post(path, data=chunks(), timeout=30)
    assert resp.status_code == 413, resp.text
    # Regression: any chunked body was a 500 (bottle de-chunked it a second time).
    resp = agent.http.post(path, data=iter([b'{"datetime": ', b'"2100-01-03T00:00:00Z"}']))
    assert resp.status_code == 200, resp.text
    agent.delete("/maintenance/vacuum/" + resp.json()["id"])
    # Exactly at the limit is fine.
    padding = 1024 * 1024 - len('{"datetime": "2100-01-02T00:00:00Z", "x": ""}')
    body = '{"datetime": "2100-01-02T00:00:00Z", "x": "%s"}' % ("p" * padding)
    resp = agent.post("/maintenance/sec/vacuum", data=body.encode())
    assert resp.status_code == 200, resp.text
    agent.delete("/maintenance/vacuum/" + resp.json()["id"])


def _answered(agent) -> None:
    """A normal request gets its answer (the deadline only catches a stall)."""
    status, _ = _raw(agent, "GET", "/profile", {"X-Session": agent.session_id}, timeout=HANG)
    assert status == 200


def test_header_flood(env):
    agent = env.agent
    _login(agent)
    replies = []
    sent = threading.Barrier(21)

    def flood(kind: str) -> None:
        head = b"GET /profile HTTP/1.1\r\nHost: x\r\n"
        if kind == "many":
            head += b"".join(b"X-H%d: v\r\n" % i for i in range(10000))
        else:
            head += b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n"
        with socket.create_connection(("127.0.0.1", agent.port), timeout=HANG) as raw:
            with _tls_context().wrap_socket(raw) as tls:
                try:
                    sent.wait(HANG)
                    tls.sendall(head + b"\r\n")
                except (OSError, threading.BrokenBarrierError):
                    pass  # the server may close before reading it all
                try:
                    replies.append(tls.recv(100))
                except OSError:
                    replies.append(b"")

    threads = [
        threading.Thread(target=flood, args=("many" if i % 2 else "big",)) for i in range(20)
    ]
    for thread in threads:
        thread.start()
    sent.wait(HANG)  # all 20 connected, flooding now
    for _ in range(3):
        _answered(agent)
    for thread in threads:
        thread.join(HANG)
    assert len(replies) == 20
    for reply in replies:
        assert reply == b"" or reply.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), reply


def _answered_while_trickling(env, count: int) -> None:
    """``count`` clients trickle one byte a second (half in TLS, half in the TLS
    handshake); once all are connected, a normal request is still answered."""
    with trickling_clients(env.agent.port, count, timeout=HANG):
        for _ in range(3):
            _answered(env.agent)


def test_a_few_slow_clients_do_not_stall_others(env):
    """Fewer trickling clients than HTTP threads: others are served (how fast:
    bench/bench_core.py)."""
    _answered_while_trickling(env, 8)


def test_many_slow_clients_do_not_stall_others(env):
    """More trickling clients than HTTP threads: others are still served, at worst
    once the trickling ones are cut off after socket_timeout (the delay is a
    figure of bench/bench_core.py, not a test)."""
    _answered_while_trickling(env, 40)


def test_trickling_client_is_cut_off(env):
    """A client sending one byte a second loses its connection (after socket_timeout),
    long before its request could end."""
    agent = env.agent
    raw = socket.create_connection(("127.0.0.1", agent.port), timeout=HANG)
    sock = _tls_context().wrap_socket(raw)
    cut_off = False
    try:
        # Never ends its headers: only the server can end this (HANG bytes, HANG s).
        for byte in b"GET /profile HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * int(HANG):
            sock.send(bytes([byte]))
            time.sleep(1)
    except OSError:
        cut_off = True
    finally:
        sock.close()
    assert cut_off, "the server kept a trickling client for over a minute"


# TLS


def test_tls_1_2_and_1_3_accepted(env):
    """Modern versions work (the refusal of TLS 1.0/1.1: test_core.test_tls_1_2_minimum)."""
    agent = env.agent
    for version in ("TLSv1_2", "TLSv1_3"):
        ctx = _tls_context()
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
        with socket.create_connection(("127.0.0.1", agent.port), timeout=HANG) as raw:
            with ctx.wrap_socket(raw) as tls:
                assert tls.version() == version.replace("_", ".")


def test_world_readable_key_warns(env):
    agent = AgentProcess(env.base / "keyperm", env.pg)
    agent.write_config()
    (agent.home / "server.key").chmod(0o644)
    _start(agent)
    agent.stop()
    log = agent.logfile.read_text()
    assert "world-readable" in log
    assert str(agent.home / "server.key") in log
    assert "world-readable" not in env.agent.logfile.read_text()


def test_no_secret_in_logs(env):
    """Last test of the module: every agent's logs, after everything above."""
    assert SESSIONS and AGENTS
    for agent in AGENTS:
        for path in (agent.logfile, agent.home / "stderr.log"):
            if not path.exists():
                continue
            text = path.read_text(errors="replace")
            assert agent.password not in text, path
            assert agent.key not in text, path
            for session in SESSIONS:
                assert session not in text, path
