#!/usr/bin/env python3
"""End-to-end check: the real temboard web UI 7.11 drives this agent's maintenance plugin.

Starts a throwaway PostgreSQL cluster, this agent (as the functional tests do), the real
temboard UI 7.11 (from its own virtualenv, HTTPS, its repository database on the same
cluster), registers the agent in the UI like an admin would, logs in to the agent through
the UI, then walks the maintenance pages through the UI's own HTTP endpoints: the HTML
pages and every ``/proxy/<agent>/...`` call their JavaScript makes, with the same methods,
headers and bodies as a browser. Each UI answer is checked for success and for the data
the pages read. Optionally loads the pages in headless Chromium and saves screenshots.

What the UI sends to the agent is recorded (a ``sitecustomize`` in the UI process wraps
``urllib``'s HTTP handler and logs each exchange; nothing else in the UI is changed), so a
failed check prints the exact agent request and answer.

Run with the project's virtualenv:  .venv/bin/python dev/ui_e2e.py   (see dev/ui-e2e.md)
Exit status: 0 all checks passed, 1 some check failed, 2 set-up failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
import requests  # noqa: E402
import urllib3  # noqa: E402

from temboardagent.embedded import EmbeddedCluster, free_port, make_self_signed_cert  # noqa: E402
from test.func.agentproc import AgentProcess  # noqa: E402

urllib3.disable_warnings()

UI_VERSION = "7.11"
# temboard 7.11 declares open-ended requirements, but it needs libraries of its era: its
# HTTPS server uses a Tornado internal gone in 6.3 (IOStream._verify_cert); with SQLAlchemy
# 2.1 its postgresql:// URLs want psycopg 3; and it needs a PostgreSQL driver it does not
# declare.
UI_REQUIREMENTS = [
    f"temboard=={UI_VERSION}",
    "tornado<6.3",
    "sqlalchemy<1.4",
    "alembic<1.5",
    "psycopg2-binary",
]
DEFAULT_UI_VENV = Path("/tmp/temboard-ui-venv")
UI_ADMIN = ("admin", "admin")  # created by temboard's own schema migration
DB = "e2e_shop"
SCHEMA = "sales"
HEX8 = re.compile(r"^[0-9a-f]{8}$")

CAPTURE_SITECUSTOMIZE = r'''
"""Injected by dev/ui_e2e.py: log every HTTP exchange of the temboard UI with the agent."""
import io, json, os, threading, time
_path = os.environ.get("TBE2E_CAPTURE")
if _path:
    import urllib.request
    import urllib.response

    _lock = threading.Lock()
    _orig = urllib.request.AbstractHTTPHandler.do_open

    def _write(rec):
        with _lock, open(_path, "a") as fo:
            fo.write(json.dumps(rec) + "\n")

    def do_open(self, http_class, req, **kw):
        rec = {
            "t": time.time(),
            "method": req.get_method(),
            "url": req.full_url,
            "headers": dict(req.header_items()),
            "body": req.data.decode("utf-8", "replace") if req.data else None,
        }
        try:
            resp = _orig(self, http_class, req, **kw)
        except Exception as exc:
            rec["error"] = repr(exc)
            _write(rec)
            raise
        body = resp.read()
        rec["status"] = resp.status
        rec["response_headers"] = dict(resp.getheaders())
        rec["response"] = body.decode("utf-8", "replace")
        _write(rec)
        new = urllib.response.addinfourl(io.BytesIO(body), resp.headers, req.full_url, resp.status)
        new.msg = resp.reason
        return new

    urllib.request.AbstractHTTPHandler.do_open = do_open
'''


# --------------------------------------------------------------------------- results


@dataclass
class Exchange:
    """One UI call and the agent exchanges the UI made while serving it."""

    method: str
    path: str
    body: Any
    status: int
    response: str
    agent: list[dict] = field(default_factory=list)


@dataclass
class Result:
    name: str
    ok: bool
    expected: str
    got: str = ""
    exchange: Exchange | None = None


class Report:
    def __init__(self, verbose: bool) -> None:
        self.results: list[Result] = []
        self.verbose = verbose

    def add(self, name: str, ok: bool, expected: str, got: str = "", ex: Exchange | None = None):
        self.results.append(Result(name, ok, expected, got, ex))
        mark = "PASS" if ok else "FAIL"
        print(
            f"[{mark}] {name}" + ("" if ok else f"\n       expected: {expected}\n       got: {got}")
        )
        if not ok and ex is not None:
            print(indent(format_exchange(ex), 7))
        sys.stdout.flush()
        return ok

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        passed = len(self.results) - len(self.failed)
        return f"{passed} passed, {len(self.failed)} failed"


def indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())


def shorten(text: str, limit: int = 600) -> str:
    text = text if isinstance(text, str) else json.dumps(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def format_exchange(ex: Exchange) -> str:
    lines = [
        f"UI request : {ex.method} {ex.path}"
        + (f"  body={json.dumps(ex.body)}" if ex.body is not None else "")
    ]
    lines.append(f"UI answer  : {ex.status} {shorten(ex.response)}")
    for rec in ex.agent:
        url = re.sub(r"key=[^&]*", "key=<key>", rec["url"])
        hdrs = {
            k: ("<session>" if k.lower() == "x-session" else "<key>" if "key" in k.lower() else v)
            for k, v in rec["headers"].items()
        }
        lines.append(f"agent got  : {rec['method']} {url}")
        lines.append(f"             headers={json.dumps(hdrs)}")
        if rec.get("body") is not None:
            lines.append(f"             body={rec['body']}")
        if "error" in rec:
            lines.append(f"agent said : (no HTTP answer) {rec['error']}")
        else:
            lines.append(f"agent said : {rec['status']} {shorten(rec['response'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- processes


def find_python311() -> str:
    for cand in ("python3.11", "python3"):
        path = shutil.which(cand)
        if not path:
            continue
        out = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        )
        if out.stdout.strip() == "(3, 11)":
            return path
    raise SystemExit("temboard 7.11 needs Python 3.11 (python3.11 or python3); none found")


def ensure_ui_venv(venv: Path) -> None:
    """Create the UI's virtualenv with temboard 7.11 from PyPI when missing."""
    stamp = venv / ".tb-e2e-installed"
    wanted = " ".join(UI_REQUIREMENTS) + "\n"
    if (venv / "bin" / "temboard").exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    if not (venv / "bin" / "temboard").exists():
        print(f"# creating {venv} with temboard {UI_VERSION} ...", flush=True)
        subprocess.run([find_python311(), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *UI_REQUIREMENTS], check=True)
    stamp.write_text(wanted)


class UIProcess:
    """The temboard UI 7.11 with its repository database on ``pg``."""

    def __init__(self, home: Path, venv: Path, pg: EmbeddedCluster, agent_ca: Path | None) -> None:
        self.home = home
        self.venv = venv
        self.pg = pg
        self.agent_ca = agent_ca
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.capture = home / "agent-exchanges.jsonl"
        self.log = home / "temboard.log"
        self.proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.home / "temboard.conf"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "TEMBOARD_"))}
        env.update(
            PYTHONPATH=str(self.home / "capture"),
            TBE2E_CAPTURE=str(self.capture),
            HOME=str(self.home),
            PYTHONUNBUFFERED="1",
        )
        return env

    def setup(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "capture").mkdir(exist_ok=True)
        (self.home / "capture" / "sitecustomize.py").write_text(CAPTURE_SITECUSTOMIZE)
        (self.home / "var").mkdir(exist_ok=True)
        make_self_signed_cert(self.home / "ui.pem", self.home / "ui.key")
        self.conf.write_text(
            f"""[temboard]
address = 127.0.0.1
port = {self.port}
ssl_cert_file = {self.home / "ui.pem"}
ssl_key_file = {self.home / "ui.key"}
{f"ssl_ca_cert_file = {self.agent_ca}" if self.agent_ca else ""}
cookie_secret = {secrets.token_hex(32)}
home = {self.home / "var"}
plugins = ["maintenance"]

[repository]
host = {self.pg.socket_dir}
port = {self.pg.port}
user = temboard
password = temboard
dbname = temboard

[logging]
method = stderr
level = DEBUG
"""
        )
        # Repository: role + database as temboard's create_repository.sh does, then the
        # UI's own migration tool creates the schema (and the admin/admin user).
        conn = psycopg2.connect(self.pg.dsn())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE ROLE temboard LOGIN PASSWORD 'temboard'")
            cur.execute("CREATE DATABASE temboard OWNER temboard")
        conn.close()
        out = subprocess.run(
            [str(self.venv / "bin" / "temboard-migratedb"), "-c", str(self.conf), "upgrade"],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.home,
        )
        if out.returncode != 0:
            raise RuntimeError("temboard-migratedb upgrade failed:\n" + out.stdout + out.stderr)

    def start(self, timeout: float = 60.0) -> None:
        self.logfo = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "temboard"), "-c", str(self.conf)],
            stdout=self.logfo,
            stderr=subprocess.STDOUT,
            env=self.env(),
            cwd=self.home,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("temboard UI exited:\n" + self.log.read_text()[-3000:])
            try:
                requests.get(self.url + "/login", verify=False, timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("temboard UI did not start in time:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# --------------------------------------------------------------------------- UI client


class UIClient:
    """Speaks to the UI like the browser pages do; records what the UI sent the agent."""

    def __init__(self, ui: UIProcess, agent: AgentProcess) -> None:
        self.ui = ui
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = str(ui.home / "ui.pem")
        self.agent_prefix = f"127.0.0.1/{agent.port}"
        self.xsession: str | None = None  # what the pages embed as `var xsession`

    def _agent_records(self, offset: int) -> list[dict]:
        if not self.ui.capture.exists():
            return []
        with open(self.ui.capture) as fo:
            fo.seek(offset)
            return [json.loads(line) for line in fo if line.strip()]

    def _offset(self) -> int:
        return self.ui.capture.stat().st_size if self.ui.capture.exists() else 0

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        form: dict | None = None,
        headers: dict | None = None,
        ajax: bool = True,
    ) -> tuple[requests.Response, Exchange]:
        hdrs = dict(headers or {})
        kw: dict[str, Any] = {"timeout": 60, "allow_redirects": False}
        if ajax:
            # jQuery.ajax({contentType: "application/json"}) on every page call
            hdrs.setdefault("Content-Type", "application/json")
            hdrs.setdefault("X-Requested-With", "XMLHttpRequest")
            if body is not None:
                kw["data"] = json.dumps(body)
        elif form is not None:
            kw["data"] = form
        offset = self._offset()
        resp = self.http.request(method, self.ui.url + path, headers=hdrs, **kw)
        time.sleep(0.05)  # the capture line is written before the UI answers; be safe
        ex = Exchange(
            method,
            path,
            body if ajax else form,
            resp.status_code,
            resp.text,
            self._agent_records(offset),
        )
        return resp, ex

    def proxy(self, method: str, path: str, body: Any = None, session_header: bool = False):
        """A page's $.ajax call to /proxy/<agent address>/<agent port><path>."""
        headers = {}
        if session_header:
            # beforeSend: xhr.setRequestHeader('X-Session', xsession)
            headers["X-Session"] = self.xsession or "null"
        return self.call(method, f"/proxy/{self.agent_prefix}{path}", body, headers=headers)

    def page(self, path: str):
        return self.call("GET", f"/server/{self.agent_prefix}{path}", ajax=False)


def json_of(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


# --------------------------------------------------------------------------- fixture


FIXTURE_SQL = f"""
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.orders (id serial PRIMARY KEY, customer_id int, amount numeric, note text);
CREATE INDEX orders_customer_idx ON {SCHEMA}.orders (customer_id);
INSERT INTO {SCHEMA}.orders (customer_id, amount, note)
    SELECT i % 100, i, repeat('x', 60) FROM generate_series(1, 30000) i;
DELETE FROM {SCHEMA}.orders WHERE id % 3 = 0;
CREATE TABLE {SCHEMA}.customers (id int PRIMARY KEY, name text);
INSERT INTO {SCHEMA}.customers SELECT i, 'customer ' || i FROM generate_series(1, 100) i;
CREATE TABLE {SCHEMA}."LineItems" (id int PRIMARY KEY, order_id int, qty int);
CREATE INDEX "LineItems_order_idx" ON {SCHEMA}."LineItems" (order_id);
INSERT INTO {SCHEMA}."LineItems" SELECT i, i % 1000, 1 FROM generate_series(1, 2000) i;
CREATE TABLE {SCHEMA}."Commandes été" (id int PRIMARY KEY, label text);
INSERT INTO {SCHEMA}."Commandes été" SELECT i, 'x' FROM generate_series(1, 500) i;
CREATE TABLE public.events (id bigserial PRIMARY KEY, payload text);
INSERT INTO public.events (payload) SELECT md5(i::text) FROM generate_series(1, 1000) i;
"""


def make_fixture(pg: EmbeddedCluster) -> None:
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB}")
    conn.close()
    conn = psycopg2.connect(pg.dsn(DB))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(FIXTURE_SQL)
        cur.execute("ANALYZE")
    conn.close()


# --------------------------------------------------------------------------- checks


DATABASE_ITEM_FIELDS = [  # index.html + temboard.maintenance.js
    "datname",
    "total_bytes",
    "total_size",
    "n_tables",
    "tables_bytes",
    "tables_size",
    "tables_bloat_bytes",
    "n_indexes",
    "indexes_bytes",
    "indexes_size",
    "indexes_bloat_bytes",
    "toast_bytes",
    "toast_size",
]
SCHEMA_ITEM_FIELDS = [  # database.html + temboard.maintenance.database.js
    "name",
    "total_bytes",
    "total_size",
    "n_tables",
    "tables_bytes",
    "tables_size",
    "tables_bloat_bytes",
    "tables_bloat_size",
    "n_indexes",
    "indexes_bytes",
    "indexes_size",
    "indexes_bloat_bytes",
    "indexes_bloat_size",
    "toast_bytes",
    "toast_size",
]
TABLE_ITEM_FIELDS = [  # schema.html + temboard.maintenance.schema.js
    "name",
    "total_bytes",
    "total_size",
    "table_bytes",
    "table_size",
    "bloat_bytes",
    "bloat_size",
    "n_indexes",
    "index_bytes",
    "index_size",
    "index_bloat_bytes",
    "index_bloat_size",
    "toast_bytes",
    "toast_size",
]
INDEX_ITEM_FIELDS = [  # schema.html / table.html
    "name",
    "type",
    "tablename",
    "tablespace",
    "total_bytes",
    "total_size",
    "bloat_bytes",
    "scans",
    "def",
]
TABLE_FIELDS = [  # table.html + temboard.maintenance.table.js
    "name",
    "total_size",
    "row_estimate",
    "n_dead_tup",
    "n_live_tup",
    "table_size",
    "table_bytes",
    "bloat_bytes",
    "bloat_size",
    "index_size",
    "index_bytes",
    "index_bloat_bytes",
    "index_bloat_size",
    "toast_size",
    "fillfactor",
    "last_analyze",
    "last_autoanalyze",
    "n_mod_since_analyze",
    "analyze_count",
    "autoanalyze_count",
    "last_vacuum",
    "last_autovacuum",
    "vacuum_count",
    "autovacuum_count",
    "indexes",
]
SCHEDULED_FIELDS = ["id", "status", "datetime", "dbname", "schema", "table", "index", "mode"]


def missing(obj: Any, fields: list[str]) -> list[str]:
    if not isinstance(obj, dict):
        return fields
    return [f for f in fields if f not in obj]


class E2E:
    def __init__(self, report: Report, ui: UIClient) -> None:
        self.r = report
        self.ui = ui
        self.base = f"/maintenance/{DB}"
        self.schema = f"{self.base}/schema/{SCHEMA}"
        self.table = f"{self.schema}/table/orders"

    # -- helpers ------------------------------------------------------------------

    def expect_json(self, name: str, resp, ex, status: int = 200) -> Any:
        data = json_of(resp)
        ok = resp.status_code == status and data is not None
        self.r.add(
            name,
            ok,
            f"HTTP {status} with a JSON body",
            f"HTTP {resp.status_code} {shorten(resp.text, 300)}",
            ex,
        )
        return data if ok else None

    def get(self, name: str, path: str, session_header: bool = False) -> Any:
        resp, ex = self.ui.proxy("GET", path, session_header=session_header)
        return self.expect_json(name, resp, ex), ex

    def fields(self, name: str, obj: Any, fields: list[str], ex: Exchange) -> None:
        miss = missing(obj, fields)
        self.r.add(name, not miss, f"fields {fields}", f"missing {miss} in {shorten(obj, 300)}", ex)

    def page(self, name: str, path: str, must_contain: list[str]) -> str | None:
        resp, ex = self.ui.page(path)
        ok = resp.status_code == 200 and all(s in resp.text for s in must_contain)
        self.r.add(
            name,
            ok,
            f"HTTP 200 HTML containing {must_contain}",
            f"HTTP {resp.status_code} {shorten(resp.text, 400)}",
            ex,
        )
        return resp.text if ok else None

    def page_xsession(self, html: str | None, name: str) -> None:
        m = re.search(r"var xsession = (.*?);", html or "")
        value = json.loads(m.group(1)) if m else None
        self.r.add(
            name,
            bool(value),
            'page embeds the agent session (var xsession = "...")',
            m.group(0) if m else "no `var xsession` in page",
        )
        if value:
            self.ui.xsession = value

    def launch(self, name: str, path: str, body: dict) -> str | None:
        resp, ex = self.ui.proxy("POST", path, body, session_header=True)
        data = json_of(resp)
        op_id = data.get("id") if isinstance(data, dict) else None
        ok = resp.status_code == 200 and isinstance(op_id, str) and bool(HEX8.match(op_id))
        self.r.add(
            name,
            ok,
            'HTTP 200 {"id": "<8 hex chars>"}',
            f"HTTP {resp.status_code} {shorten(resp.text, 300)}",
            ex,
        )
        return op_id if ok else None

    def scheduled(self, path: str, session_header: bool = False) -> tuple[list | None, Exchange]:
        resp, ex = self.ui.proxy("GET", path, session_header=session_header)
        data = json_of(resp)
        return (data if resp.status_code == 200 and isinstance(data, list) else None), ex

    def find(self, items: list | None, op_id: str | None) -> dict | None:
        for item in items or []:
            if isinstance(item, dict) and item.get("id") == op_id:
                return item
        return None

    def wait_done(
        self,
        name: str,
        path: str,
        op_id: str | None,
        session_header: bool,
        effect: Callable[[], tuple[bool, str]] | None = None,
        timeout: float = 90.0,
    ) -> None:
        """The page polls its list every 5 s until the operation leaves it."""
        if op_id is None:
            self.r.add(name, False, "operation launched", "no operation id (launch failed)")
            return
        deadline = time.monotonic() + timeout
        last = ""
        ex = None
        while time.monotonic() < deadline:
            items, ex = self.scheduled(path, session_header)
            item = self.find(items, op_id)
            if items is not None and (item is None or item.get("status") in ("done",)):
                if effect is None:
                    self.r.add(name, True, "")
                    return
                ok, got = effect()
                if ok:
                    self.r.add(name, True, "")
                    return
                last = f"operation left the list but its effect is not visible: {got}"
            else:
                last = f"list={shorten(items if items is not None else ex.response, 300)}"
            time.sleep(1)
        self.r.add(
            name,
            False,
            "operation finishes and leaves the scheduled list (page polls it)",
            last,
            ex,
        )

    def check_item(
        self, name: str, lists: list[tuple[str, bool]], op_id: str | None, expect: dict
    ) -> None:
        """The scheduled operation shows in each list the pages read, status todo."""
        for path, session_header in lists:
            items, ex = self.scheduled(path, session_header)
            item = self.find(items, op_id)
            problems = []
            if items is None:
                problems.append(f"list not returned: HTTP {ex.status} {shorten(ex.response, 200)}")
            elif op_id is None:
                problems.append("no operation id (launch failed)")
            elif item is None:
                problems.append(f"{op_id} not in list {shorten(items, 300)}")
            else:
                miss = missing(item, SCHEDULED_FIELDS)
                if miss:
                    problems.append(f"missing fields {miss}")
                for key, want in {"status": "todo", **expect}.items():
                    have = item.get(key)
                    if key == "mode" and isinstance(have, str) and isinstance(want, str):
                        same = sorted(have.split(",")) == sorted(want.split(","))
                    else:
                        same = have == want
                    if not same:
                        problems.append(f"{key}={have!r}, expected {want!r}")
            self.r.add(
                f"{name} listed by GET {path}",
                not problems,
                f"item {{id: {op_id}, status: 'todo', {expect}}}",
                "; ".join(problems),
                ex,
            )

    def cancel(
        self, name: str, kind: str, op_id: str | None, list_path: str, session_header: bool
    ) -> None:
        if op_id is None:
            self.r.add(name, False, "operation launched", "no operation id (launch failed)")
            return
        resp, ex = self.ui.proxy("DELETE", f"/maintenance/{kind}/{op_id}", session_header=True)
        self.expect_json(f"{name}: DELETE answered", resp, ex)
        items, ex2 = self.scheduled(list_path, session_header)
        item = self.find(items, op_id)
        ok = items is not None and (item is None or item.get("status") != "todo")
        self.r.add(
            f"{name}: page's list no longer offers Cancel (not 'todo')",
            ok,
            "item gone from the list or status 'canceled'",
            f"item={item}" if items is not None else f"HTTP {ex2.status} {ex2.response}",
            ex2,
        )

    # -- scenario -----------------------------------------------------------------

    def login_and_register(self, agent: AgentProcess) -> bool:
        ui = self.ui
        resp, ex = ui.call(
            "POST", "/json/login", {"username": UI_ADMIN[0], "password": UI_ADMIN[1]}
        )
        if not self.r.add(
            "UI: admin logs in (POST /json/login)",
            resp.status_code == 200 and "temboard" in ui.http.cookies,
            "HTTP 200 and the temboard cookie",
            f"HTTP {resp.status_code} {resp.text}",
            ex,
        ):
            return False

        # Settings > Instances > Add: discover, then save with the discovered data.
        resp, ex = ui.call(
            "GET",
            f"/json/discover/instance/127.0.0.1/{agent.port}",
            headers={"X-TemBoard-Agent-Key": agent.key},
        )
        disco = self.expect_json(
            "UI: discover the agent (GET /json/discover/instance/...)", resp, ex
        )
        if disco is None:
            return False
        self.fields(
            "UI: discover data has what the add-instance form saves",
            disco,
            [
                "hostname",
                "cpu",
                "memory_size",
                "pg_data",
                "pg_port",
                "pg_version",
                "pg_version_summary",
                "plugins",
            ],
            ex,
        )
        self.r.add(
            "UI: discover lists the maintenance plugin",
            "maintenance" in (disco.get("plugins") or []),
            "'maintenance' in plugins",
            str(disco.get("plugins")),
            ex,
        )
        body = {
            "new_agent_address": "127.0.0.1",
            "new_agent_port": str(agent.port),
            "agent_key": agent.key,
            "groups": ["default"],
            "plugins": ["maintenance"],
            "notify": False,
            "comment": "ui e2e",
        }
        for key in (
            "hostname",
            "cpu",
            "memory_size",
            "pg_data",
            "pg_port",
            "pg_version",
            "pg_version_summary",
        ):
            body[key] = disco.get(key)
        resp, ex = ui.call("POST", "/json/settings/instance", body)
        if (
            self.expect_json("UI: register the instance (POST /json/settings/instance)", resp, ex)
            is None
        ):
            return False
        resp, ex = ui.call("GET", f"/json/settings/instance/127.0.0.1/{agent.port}")
        inst = self.expect_json("UI: instance settings read back", resp, ex)
        if inst:
            self.r.add(
                "UI: instance stored with maintenance enabled and discovered data",
                inst.get("enabled_plugins") == ["maintenance"]
                and inst.get("hostname") == disco.get("hostname")
                and inst.get("pg_port") == disco.get("pg_port"),
                "enabled_plugins ['maintenance'], hostname/pg_port from discover",
                shorten(inst, 400),
                ex,
            )

        # Agent login form of the UI (/server/<addr>/<port>/login).
        self.page("UI: agent login form", "/login", ["password"])
        resp, ex = ui.call(
            "POST",
            f"/server/{ui.agent_prefix}/login",
            form={"username": agent.username, "password": agent.password},
            ajax=False,
        )
        cookie = f"temboard_127.0.0.1_{agent.port}"
        ok = resp.status_code == 302 and cookie in ui.http.cookies
        self.r.add(
            "UI: log in to the agent through the UI (POST /server/.../login)",
            ok,
            f"302 redirect and the {cookie} cookie (agent session)",
            f"HTTP {resp.status_code} {shorten(resp.text, 300)}",
            ex,
        )
        if ok:
            sent = [rec for rec in ex.agent if rec["url"].split("?")[0].endswith("/login")]
            if sent:
                ct = {k.lower(): v for k, v in sent[0]["headers"].items()}.get("content-type")
                print(f"       (UI posted the agent /login with Content-Type: {ct})")
        return ok

    def read_pages(self) -> None:
        # Instance overview
        html = self.page(
            "Overview page (GET /server/.../maintenance)",
            "/maintenance",
            ["apiUrl", "/maintenance"],
        )
        data, ex = self.get("Overview data (GET /proxy/.../maintenance)", "/maintenance")
        if data is not None:
            inst = data.get("instance") if isinstance(data, dict) else None
            self.fields("Overview: instance sizes", inst, ["total_bytes", "total_size"], ex)
            dbs = data.get("databases") if isinstance(data, dict) else None
            shop = next(
                (d for d in dbs or [] if isinstance(d, dict) and d.get("datname") == DB), None
            )
            self.r.add(
                f"Overview: lists database {DB}",
                shop is not None,
                f"databases[] item with datname={DB}",
                shorten(dbs, 300),
                ex,
            )
            if shop:
                self.fields("Overview: database row fields", shop, DATABASE_ITEM_FIELDS, ex)
                # counts include the catalog's tables, as upstream's did
                self.r.add(
                    "Overview: database row counts and sizes",
                    (shop.get("n_tables") or 0) >= 5
                    and (shop.get("n_indexes") or 0) >= 7
                    and (shop.get("total_bytes") or 0) > 1_000_000
                    and bool(shop.get("total_size")),
                    "n_tables >= 5, n_indexes >= 7, total_bytes > 1 MB, total_size text",
                    shorten(shop, 400),
                    ex,
                )
        del html

        # Database page
        html = self.page(
            f"Database page (GET /server/.../maintenance/{DB})",
            f"/maintenance/{DB}",
            [f"maintenance/{DB}"],
        )
        self.page_xsession(html, "Database page: has the agent session for its buttons")
        data, ex = self.get(f"Database data (GET /proxy/...{self.base})", self.base)
        if data is not None:
            self.fields(
                "Database: top-level fields", data, ["schemas", "total_bytes", "total_size"], ex
            )
            schemas = data.get("schemas") or []
            sales = next(
                (s for s in schemas if isinstance(s, dict) and s.get("name") == SCHEMA), None
            )
            self.r.add(
                f"Database: lists schema {SCHEMA}",
                sales is not None,
                f"schemas[] item name={SCHEMA}",
                shorten(schemas, 300),
                ex,
            )
            if sales:
                self.fields("Database: schema row fields", sales, SCHEMA_ITEM_FIELDS, ex)
                self.r.add(
                    "Database: schema row counts and sizes",
                    sales.get("n_tables") == 4
                    and sales.get("n_indexes") == 6
                    and (sales.get("tables_bytes") or 0) > 1_000_000,
                    "n_tables 4, n_indexes 6, tables_bytes > 1 MB",
                    shorten(sales, 400),
                    ex,
                )
        for kind, hdr in (("vacuum", False), ("analyze", False), ("reindex", True)):
            items, ex = self.scheduled(f"{self.base}/{kind}/scheduled", hdr)
            self.r.add(
                f"Database: GET /proxy/...{self.base}/{kind}/scheduled is a list",
                items is not None,
                "HTTP 200 JSON list",
                f"HTTP {ex.status} {shorten(ex.response)}",
                ex,
            )

        # Schema page
        html = self.page("Schema page", f"/maintenance/{DB}/schema/{SCHEMA}", ["schemaApiUrl"])
        self.page_xsession(html, "Schema page: has the agent session for its buttons")
        data, ex = self.get(f"Schema data (GET /proxy/...{self.schema})", self.schema)
        if data is not None:
            self.fields(
                "Schema: top-level fields", data, ["tables", "indexes", "size", "total_bytes"], ex
            )
            tables = {t.get("name"): t for t in data.get("tables") or [] if isinstance(t, dict)}
            indexes = {i.get("name"): i for i in data.get("indexes") or [] if isinstance(i, dict)}
            want = {"orders", "customers", "LineItems", "Commandes été"}
            self.r.add(
                "Schema: lists its 4 tables",
                set(tables) == want,
                str(sorted(want)),
                str(sorted(tables)),
                ex,
            )
            want = {
                "orders_pkey",
                "orders_customer_idx",
                "customers_pkey",
                "LineItems_pkey",
                "LineItems_order_idx",
                "Commandes été_pkey",
            }
            self.r.add(
                "Schema: lists its 6 indexes",
                set(indexes) == want,
                str(sorted(want)),
                str(sorted(indexes)),
                ex,
            )
            if "orders" in tables:
                self.fields("Schema: table row fields", tables["orders"], TABLE_ITEM_FIELDS, ex)
                self.r.add(
                    "Schema: orders has 2 indexes and a heap > 1 MB",
                    tables["orders"].get("n_indexes") == 2
                    and (tables["orders"].get("table_bytes") or 0) > 1_000_000,
                    "n_indexes 2, table_bytes > 1 MB",
                    shorten(tables["orders"], 400),
                    ex,
                )
            if "orders_customer_idx" in indexes:
                idx = indexes["orders_customer_idx"]
                self.fields("Schema: index row fields", idx, INDEX_ITEM_FIELDS, ex)
                self.r.add(
                    "Schema: index links to its table (tablename) and has its definition",
                    idx.get("tablename") == "orders" and "CREATE INDEX" in str(idx.get("def")),
                    "tablename 'orders', def 'CREATE INDEX ...'",
                    shorten(idx, 300),
                    ex,
                )
        items, ex = self.scheduled(f"{self.schema}/reindex/scheduled", True)
        self.r.add(
            f"Schema: GET /proxy/...{self.schema}/reindex/scheduled is a list",
            items is not None,
            "HTTP 200 JSON list",
            f"HTTP {ex.status} {shorten(ex.response)}",
            ex,
        )

        # Table page
        html = self.page(
            "Table page", f"/maintenance/{DB}/schema/{SCHEMA}/table/orders", ["schemaApiUrl"]
        )
        self.page_xsession(html, "Table page: has the agent session for its buttons")
        data, ex = self.get(f"Table data (GET /proxy/...{self.table})", self.table)
        if data is not None:
            self.fields("Table: fields the page reads", data, TABLE_FIELDS, ex)
            idx = {i.get("name"): i for i in data.get("indexes") or [] if isinstance(i, dict)}
            self.r.add(
                "Table: lists its 2 indexes",
                set(idx) == {"orders_pkey", "orders_customer_idx"},
                "orders_pkey, orders_customer_idx",
                str(sorted(idx)),
                ex,
            )
            for i in idx.values():
                self.fields(f"Table: index {i.get('name')} fields", i, INDEX_ITEM_FIELDS, ex)
            self.r.add(
                "Table: live tuples and size",
                (data.get("n_live_tup") or 0) > 0
                and (data.get("table_bytes") or 0) > 1_000_000
                and bool(data.get("total_size"))
                and (data.get("row_estimate") or 0) > 0,
                "n_live_tup > 0, row_estimate > 0, table_bytes > 1 MB",
                shorten(
                    {
                        k: data.get(k)
                        for k in (
                            "n_live_tup",
                            "n_dead_tup",
                            "row_estimate",
                            "table_bytes",
                            "total_size",
                        )
                    }
                ),
                ex,
            )
        for kind, hdr in (("vacuum", False), ("analyze", False), ("reindex", True)):
            items, ex = self.scheduled(f"{self.table}/{kind}/scheduled", hdr)
            self.r.add(
                f"Table: GET /proxy/...{self.table}/{kind}/scheduled is a list",
                items is not None,
                "HTTP 200 JSON list",
                f"HTTP {ex.status} {shorten(ex.response)}",
                ex,
            )

        # A mixed-case table name (the browser percent-encodes nothing here; the UI re-quotes).
        data, ex = self.get(
            'Table data of a mixed-case table ("LineItems")', f"{self.schema}/table/LineItems"
        )
        if data is not None:
            self.r.add(
                "Mixed-case table: right table returned",
                data.get("name") == "LineItems" and len(data.get("indexes") or []) == 2,
                "name 'LineItems' with 2 indexes",
                shorten(data, 300),
                ex,
            )

        # A name with a space and non-ASCII letters: the browser percent-encodes it (UTF-8),
        # the UI decodes it and quotes it again towards the agent.
        odd = "Commandes été"
        html = self.page(
            'Table page of "Commandes été"',
            f"/maintenance/{DB}/schema/{SCHEMA}/table/{quote(odd)}",
            ["schemaApiUrl"],
        )
        data, ex = self.get(
            'Table data of "Commandes été" (space, non-ASCII)', f"{self.schema}/table/{quote(odd)}"
        )
        if data is not None:
            self.r.add(
                '"Commandes été": right table returned',
                data.get("name") == odd and len(data.get("indexes") or []) == 1,
                f"name {odd!r} with 1 index",
                shorten(data, 300),
                ex,
            )
        op = self.launch(
            '"Commandes été": VACUUM now (table page)',
            f"{self.schema}/table/{quote(odd)}/vacuum",
            {},
        )
        self.wait_done(
            '"Commandes été": VACUUM runs and leaves the table\'s list',
            f"{self.schema}/table/{quote(odd)}/vacuum/scheduled",
            op,
            False,
        )

        # Errors reach the page as JSON {"error": ...} (the pages alert xhr.responseJSON.error)
        resp, ex = self.ui.proxy("GET", f"{self.schema}/table/no_such_table")
        data = json_of(resp)
        self.r.add(
            "Unknown table: UI relays an error status with a JSON error message",
            resp.status_code >= 400 and isinstance(data, dict) and bool(data.get("error")),
            'HTTP 4xx with {"error": "..."}',
            f"HTTP {resp.status_code} {shorten(resp.text)}",
            ex,
        )

    def table_stat(
        self, key: str, before: Any, table: str | None = None
    ) -> Callable[[], tuple[bool, str]]:
        def effect() -> tuple[bool, str]:
            resp, _ = self.ui.proxy("GET", table or self.table)
            data = json_of(resp) or {}
            return data.get(key) not in (
                None,
                before,
            ), f"{key}={data.get(key)!r} (before {before!r})"

        return effect

    def operations_now(self) -> None:
        resp, _ = self.ui.proxy("GET", self.table)
        before = json_of(resp) or {}

        # Table page: VACUUM (mode ANALYZE ticked), Now
        op = self.launch(
            "Table VACUUM now, mode analyze (POST .../table/orders/vacuum)",
            f"{self.table}/vacuum",
            {"mode": "analyze"},
        )
        self.wait_done(
            "Table VACUUM now: runs and leaves the table's vacuum list; last_vacuum set",
            f"{self.table}/vacuum/scheduled",
            op,
            False,
            self.table_stat("last_vacuum", before.get("last_vacuum")),
        )

        # Table page of customers: VACUUM with all three modes ticked, Now
        customers = f"{self.schema}/table/customers"
        resp, _ = self.ui.proxy("GET", customers)
        before = json_of(resp) or {}
        op = self.launch(
            "Table VACUUM now, mode analyze,full,freeze (POST .../table/customers/vacuum)",
            f"{customers}/vacuum",
            {"mode": "analyze,full,freeze"},
        )
        self.wait_done(
            "Table VACUUM (ANALYZE, FULL, FREEZE) now: runs; analyze_count grows",
            f"{customers}/vacuum/scheduled",
            op,
            False,
            self.table_stat("analyze_count", before.get("analyze_count"), customers),
        )

        # Table page: ANALYZE, Now
        resp, _ = self.ui.proxy("GET", self.table)
        before = json_of(resp) or {}
        op = self.launch(
            "Table ANALYZE now (POST .../table/orders/analyze)", f"{self.table}/analyze", {}
        )
        self.wait_done(
            "Table ANALYZE now: runs; analyze_count grows",
            f"{self.table}/analyze/scheduled",
            op,
            False,
            self.table_stat("analyze_count", before.get("analyze_count")),
        )

        # Table page: REINDEX of the table, and of one index, Now
        op = self.launch(
            "Table REINDEX now (POST .../schema/sales/table/orders/reindex)",
            f"{self.schema}/table/orders/reindex",
            {},
        )
        self.wait_done(
            "Table REINDEX now: runs and leaves the table's reindex list",
            f"{self.table}/reindex/scheduled",
            op,
            True,
        )
        op = self.launch(
            "Index REINDEX now (POST .../schema/sales/index/orders_customer_idx/reindex)",
            f"{self.schema}/index/orders_customer_idx/reindex",
            {},
        )
        self.wait_done(
            "Index REINDEX now: runs and leaves the schema's reindex list",
            f"{self.schema}/reindex/scheduled",
            op,
            True,
        )

        # Database page: VACUUM / ANALYZE / REINDEX, Now
        op = self.launch(f"Database VACUUM now (POST .../{DB}/vacuum)", f"{self.base}/vacuum", {})
        self.wait_done(
            "Database VACUUM now: runs and leaves the database's vacuum list",
            f"{self.base}/vacuum/scheduled",
            op,
            False,
        )
        op = self.launch(
            f"Database ANALYZE now (POST .../{DB}/analyze)", f"{self.base}/analyze", {}
        )
        self.wait_done(
            "Database ANALYZE now: runs and leaves the database's analyze list",
            f"{self.base}/analyze/scheduled",
            op,
            False,
        )
        op = self.launch(
            f"Database REINDEX now (POST .../{DB}/reindex)", f"{self.base}/reindex", {}
        )
        self.wait_done(
            "Database REINDEX now: runs and leaves the database's reindex list",
            f"{self.base}/reindex/scheduled",
            op,
            True,
        )

    def operations_scheduled(self) -> None:
        # What the hidden datetime input holds: moment().utc().format('YYYY-MM-DDTHH:mm:ss[Z]')
        when = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        when2 = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        none = {"schema": None, "table": None, "index": None}
        dbv, dba, dbr = (f"{self.base}/{k}/scheduled" for k in ("vacuum", "analyze", "reindex"))
        tv, ta, tr = (f"{self.table}/{k}/scheduled" for k in ("vacuum", "analyze", "reindex"))
        sr = f"{self.schema}/reindex/scheduled"

        # Database page, VACUUM modal: ANALYZE + FULL ticked (checkbox order), Scheduled
        db_vac = self.launch(
            "Database VACUUM scheduled, mode analyze,full",
            f"{self.base}/vacuum",
            {"mode": "analyze,full", "datetime": when},
        )
        self.check_item(
            "Scheduled database VACUUM",
            [(dbv, False)],
            db_vac,
            {"datetime": when, "dbname": DB, "mode": "analyze,full", **none},
        )
        db_an = self.launch(
            "Database ANALYZE scheduled", f"{self.base}/analyze", {"datetime": when}
        )
        self.check_item(
            "Scheduled database ANALYZE",
            [(dba, False)],
            db_an,
            {"datetime": when, "dbname": DB, **none},
        )
        db_re = self.launch(
            "Database REINDEX scheduled", f"{self.base}/reindex", {"datetime": when}
        )
        self.check_item(
            "Scheduled database REINDEX",
            [(dbr, True)],
            db_re,
            {"datetime": when, "dbname": DB, "mode": None, **none},
        )

        # Table page: VACUUM FREEZE, ANALYZE, REINDEX table, REINDEX index — scheduled
        t = {"dbname": DB, "schema": SCHEMA, "table": "orders", "index": None}
        t_vac = self.launch(
            "Table VACUUM scheduled, mode freeze",
            f"{self.table}/vacuum",
            {"mode": "freeze", "datetime": when},
        )
        # the database page's list shows table operations too (schema.table links)
        self.check_item(
            "Scheduled table VACUUM",
            [(tv, False), (dbv, False)],
            t_vac,
            {"datetime": when, "mode": "freeze", **t},
        )
        t_an = self.launch("Table ANALYZE scheduled", f"{self.table}/analyze", {"datetime": when})
        self.check_item(
            "Scheduled table ANALYZE", [(ta, False), (dba, False)], t_an, {"datetime": when, **t}
        )
        t_re = self.launch(
            "Table REINDEX scheduled", f"{self.schema}/table/orders/reindex", {"datetime": when}
        )
        self.check_item(
            "Scheduled table REINDEX", [(tr, True), (dbr, True)], t_re, {"datetime": when, **t}
        )
        i_re = self.launch(
            "Index REINDEX scheduled (from the schema page)",
            f"{self.schema}/index/orders_customer_idx/reindex",
            {"datetime": when2},
        )
        # schema page matches scheduledReindex.index == index.name; table page does the same
        # with the list of /table/orders/reindex/scheduled (upstream: the schema's list).
        self.check_item(
            "Scheduled index REINDEX",
            [(sr, True), (tr, True), (dbr, True)],
            i_re,
            {
                "datetime": when2,
                "dbname": DB,
                "schema": SCHEMA,
                "index": "orders_customer_idx",
                "table": None,
            },
        )
        # (No page reads the instance-wide /maintenance/<kind>/scheduled lists, and the UI
        # cannot proxy them: its DELETE-only /maintenance/(vacuum|analyze|reindex)/.* route
        # answers 405 to a GET before the generic GET route is tried.)
        all3 = self.launch(
            "Table VACUUM scheduled, all three modes ticked",
            f"{self.table}/vacuum",
            {"mode": "analyze,full,freeze", "datetime": when2},
        )
        self.check_item(
            "Scheduled VACUUM (ANALYZE, FULL, FREEZE)",
            [(tv, False)],
            all3,
            {"datetime": when2, "mode": "analyze,full,freeze", **t},
        )

        # Cancel buttons
        self.cancel(
            "Cancel scheduled database VACUUM (database page)", "vacuum", db_vac, dbv, False
        )
        self.cancel("Cancel scheduled table ANALYZE (table page)", "analyze", t_an, ta, False)
        self.cancel("Cancel scheduled index REINDEX (schema page)", "reindex", i_re, sr, True)
        self.cancel(
            "Cancel scheduled database REINDEX (database page)", "reindex", db_re, dbr, True
        )
        self.cancel(
            "Cancel scheduled VACUUM (ANALYZE, FULL, FREEZE) (table page)",
            "vacuum",
            all3,
            tv,
            False,
        )
        # Untouched ones still wait
        for name, path, op, hdr in (
            ("table VACUUM", tv, t_vac, False),
            ("database ANALYZE", dba, db_an, False),
            ("table REINDEX", tr, t_re, True),
        ):
            items, ex = self.scheduled(path, hdr)
            item = self.find(items, op)
            self.r.add(
                f"Cancel touched only its operation: {name} still todo",
                bool(item) and item.get("status") == "todo",
                "status todo",
                str(item),
                ex,
            )
        # Clean-up of the rest through the UI too
        for kind, op in (("vacuum", t_vac), ("analyze", db_an), ("reindex", t_re)):
            if op:
                self.ui.proxy("DELETE", f"/maintenance/{kind}/{op}", session_header=True)

    def operation_errors(self) -> None:
        # The pages alert xhr.responseJSON.error: agent refusals must come back as JSON errors.
        resp, ex = self.ui.proxy(
            "POST", f"{self.table}/vacuum", {"mode": "sideways"}, session_header=True
        )
        data = json_of(resp)
        self.r.add(
            "Bad vacuum mode: UI relays a 4xx with a JSON error message",
            400 <= resp.status_code < 500 and isinstance(data, dict) and bool(data.get("error")),
            'HTTP 4xx {"error": "..."}',
            f"HTTP {resp.status_code} {shorten(resp.text)}",
            ex,
        )
        resp, ex = self.ui.proxy("DELETE", "/maintenance/vacuum/00000000", session_header=True)
        data = json_of(resp)
        self.r.add(
            "Cancel of an unknown id: UI relays a 4xx with a JSON error message",
            400 <= resp.status_code < 500 and isinstance(data, dict) and bool(data.get("error")),
            'HTTP 4xx {"error": "..."}',
            f"HTTP {resp.status_code} {shorten(resp.text)}",
            ex,
        )

    def operation_edge_cases(self) -> None:
        # "Scheduled" ticked but the picker left at its default: moment() taken when the page
        # loaded, so by the time Apply is clicked the datetime is in the past.
        past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=2)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        op = self.launch(
            'ANALYZE "Scheduled" at the picker\'s default time (2 min in the past)',
            f"{self.table}/analyze",
            {"datetime": past},
        )
        self.wait_done(
            "ANALYZE with a past datetime runs at once and leaves the list",
            f"{self.table}/analyze/scheduled",
            op,
            False,
        )

        # Apply clicked twice for the same scheduled operation.
        when = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        first = self.launch(
            "Duplicate: first table ANALYZE scheduled", f"{self.table}/analyze", {"datetime": when}
        )
        resp, ex = self.ui.proxy(
            "POST", f"{self.table}/analyze", {"datetime": when}, session_header=True
        )
        data = json_of(resp)
        ok = (
            resp.status_code == 200
            and isinstance(data, dict)
            and bool(HEX8.match(str(data.get("id"))))
        )
        ok = ok or (
            400 <= resp.status_code < 500 and isinstance(data, dict) and bool(data.get("error"))
        )
        self.r.add(
            "Duplicate: second identical ANALYZE gets an id or a JSON error the page can alert",
            ok,
            "200 {id} or 4xx {error}",
            f"HTTP {resp.status_code} {shorten(resp.text)}",
            ex,
        )
        print(
            f"       (duplicate answered through the UI: HTTP {resp.status_code} "
            f"{shorten(resp.text, 200)})"
        )
        for op in {first, (data or {}).get("id") if resp.status_code == 200 else None} - {None}:
            self.ui.proxy("DELETE", f"/maintenance/analyze/{op}", session_header=True)

    def agent_restart(self, agent: AgentProcess) -> None:
        """The agent restarts: the UI's agent session and the scheduled operations survive."""
        when = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=4)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        op = self.launch(
            "Before restart: table VACUUM scheduled",
            f"{self.table}/vacuum",
            {"mode": "analyze", "datetime": when},
        )
        agent.restart()
        resp, ex = self.ui.page(f"/maintenance/{DB}/schema/{SCHEMA}/table/orders")
        self.page_xsession(
            resp.text if resp.status_code == 200 else "",
            "After agent restart: the UI's agent session is still valid",
        )
        self.check_item(
            "After agent restart: scheduled VACUUM",
            [(f"{self.table}/vacuum/scheduled", False)],
            op,
            {
                "datetime": when,
                "mode": "analyze",
                "dbname": DB,
                "schema": SCHEMA,
                "table": "orders",
                "index": None,
            },
        )
        self.cancel(
            "After agent restart: Cancel it (table page)",
            "vacuum",
            op,
            f"{self.table}/vacuum/scheduled",
            False,
        )

    def session_loss(self, agent: AgentProcess) -> None:
        """The agent session ends (logout elsewhere, expiry): the user logs in again."""
        ui = self.ui
        stale = ui.xsession
        resp = agent.anon.get(agent.url + "/logout", headers={"X-Session": stale or ""}, timeout=10)
        if not self.r.add(
            "Agent session ended (GET /logout on the agent)",
            resp.status_code == 200,
            "HTTP 200",
            f"HTTP {resp.status_code} {resp.text}",
        ):
            return
        # The page asks the agent for /profile; on 401 it renders with `xsession = null`, so
        # its buttons ask the user to log in (checkSession) instead of failing.
        resp, ex = ui.page(f"/maintenance/{DB}")
        m = re.search(r"var xsession = (.*?);", resp.text)
        self.r.add(
            "Stale agent session: database page renders with xsession null (buttons ask to log in)",
            resp.status_code == 200
            and m is not None
            and m.group(1) == "null"
            and any(
                rec["url"].split("?")[0].endswith("/profile") and rec.get("status") == 401
                for rec in ex.agent
            ),
            "HTTP 200, agent /profile answered 401, `var xsession = null;`",
            f"HTTP {resp.status_code} {m.group(0) if m else 'no xsession'}",
            ex,
        )
        # Read calls carry ?key= too: data loads read-only (as upstream) or 401 (JS offers login).
        resp, ex = ui.proxy("GET", self.base)
        self.r.add(
            "Stale agent session: page data call answers 200 via the key, or 401",
            resp.status_code in (200, 401),
            "HTTP 200 or 401",
            f"HTTP {resp.status_code} {shorten(resp.text)}",
            ex,
        )
        print(f"       (read call with a stale session and the key: HTTP {resp.status_code})")
        resp, ex = ui.proxy("POST", f"{self.table}/analyze", {}, session_header=True)
        self.r.add(
            "Stale agent session: an operation button gets 401 (JS then offers to log in)",
            resp.status_code == 401,
            "HTTP 401",
            f"HTTP {resp.status_code} {shorten(resp.text)}",
            ex,
        )
        # Log in again through the UI form: the UI still sends the stale X-Session with /login.
        resp, ex = ui.call(
            "POST",
            f"/server/{ui.agent_prefix}/login",
            form={"username": agent.username, "password": agent.password},
            ajax=False,
        )
        sent_stale = any("X-session" in rec["headers"] for rec in ex.agent)
        self.r.add(
            "Re-login through the UI with the stale agent session cookie"
            + (" (the UI sent it along)" if sent_stale else ""),
            resp.status_code == 302,
            "302 redirect with a new agent session",
            f"HTTP {resp.status_code} {shorten(resp.text, 300)}",
            ex,
        )
        resp, ex = ui.page(f"/maintenance/{DB}")
        self.page_xsession(
            resp.text if resp.status_code == 200 else "", "After re-login: page has a new session"
        )
        self.r.add(
            "After re-login: new session differs from the stale one",
            ui.xsession != stale,
            "a new session id",
            "same session id",
        )
        resp, ex = ui.proxy("GET", self.base)
        self.expect_json("After re-login: database data loads again", resp, ex)

    def agent_requests_shape(self) -> None:
        """What every proxied request looked like on the wire (from the capture)."""
        recs = [
            json.loads(line) for line in self.ui.ui.capture.read_text().splitlines() if line.strip()
        ]
        maint = [r for r in recs if "/maintenance" in r["url"]]
        bad = [
            r
            for r in maint
            if "key=" not in r["url"]
            or "X-temboard-agent-key" not in r["headers"]
            or "X-session" not in r["headers"]
        ]
        self.r.add(
            "Every maintenance request from the UI had ?key=, X-TemBoard-Agent-Key and X-Session",
            bool(maint) and not bad,
            "all of them",
            f"{len(bad)} of {len(maint)} lacked one",
        )
        posts = [r for r in maint if r["method"] == "POST"]
        cts = sorted({r["headers"].get("Content-type", "") for r in posts})
        print(f"       (the UI's POST bodies to the agent were labelled Content-Type: {cts})")


# --------------------------------------------------------------------------- screenshots


def screenshots(ui: UIProcess, agent: AgentProcess, outdir: Path, report: Report) -> None:
    """Load the maintenance pages in headless Chromium (selenium in the UI venv)."""
    chromedriver = shutil.which("chromedriver")
    chromium = shutil.which("chromium")
    if not chromedriver or not chromium:
        print(
            "# screenshots skipped: chromium / chromedriver not installed "
            "(apt-get install -y chromium chromium-driver)"
        )
        return
    py = ui.venv / "bin" / "python"
    if subprocess.run([str(py), "-c", "import selenium"], capture_output=True).returncode != 0:
        subprocess.run([str(ui.venv / "bin" / "pip"), "install", "-q", "selenium"], check=True)
    outdir.mkdir(parents=True, exist_ok=True)
    script = ui.home / "shots.py"
    script.write_text(SHOTS_SCRIPT)
    out = subprocess.run(
        [
            str(py),
            str(script),
            ui.url,
            f"127.0.0.1/{agent.port}",
            agent.username,
            agent.password,
            str(outdir),
            chromium,
            chromedriver,
            DB,
            SCHEMA,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(out.stdout, end="")
    if out.returncode != 0:
        print(out.stderr[-3000:])
    for line in out.stdout.splitlines():
        m = re.match(r"^SHOT (PASS|FAIL) (.*?)(?: :: (.*))?$", line)
        if m:
            report.add(
                f"Browser: {m.group(2)}",
                m.group(1) == "PASS",
                "rendered with data",
                m.group(3) or "",
            )
    if out.returncode != 0:
        report.add("Browser: screenshot run", False, "completed", out.stderr[-500:])


SHOTS_SCRIPT = r"""
import sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ui, agent, user, password, outdir, chromium, driver_path, db, schema = sys.argv[1:]
opts = webdriver.ChromeOptions()
opts.binary_location = chromium
for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--ignore-certificate-errors", "--window-size=1400,1400"):
    opts.add_argument(flag)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
drv = webdriver.Chrome(service=Service(driver_path), options=opts)
drv.set_page_load_timeout(60)
alerts = []

def settle(seconds=4.0):
    end = time.time() + seconds
    while time.time() < end:
        try:
            a = drv.switch_to.alert
            alerts.append(a.text)
            a.accept()
        except Exception:
            pass
        time.sleep(0.25)

def console_errors():
    out = []
    for entry in drv.get_log("browser"):
        if entry["level"] == "SEVERE" and "favicon" not in entry["message"]:
            out.append(entry["message"][:300])
    return out

def result(name, ok, detail=""):
    print(f"SHOT {'PASS' if ok else 'FAIL'} {name}" + (f" :: {detail}" if detail else ""))

def shot(name, url, needles):
    drv.get(ui + url)
    settle()
    path = f"{outdir}/{name}.png"
    drv.save_screenshot(path)
    text = drv.find_element(By.TAG_NAME, "body").text
    miss = [n for n in needles if n not in text]
    errs = console_errors()
    detail = (f"missing {miss} " if miss else "") + (f"alerts {alerts} " if alerts else "") \
        + (f"console errors {errs}" if errs else "")
    result(f"{name} page shows {needles} ({path})", not miss and not alerts and not errs, detail)
    alerts.clear()
    return text

def click(css):
    el = drv.find_element(By.CSS_SELECTOR, css)
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    time.sleep(0.3)
    el.click()

base = f"/server/{agent}/maintenance"
try:
    drv.get(ui + "/login")
    drv.find_element(By.NAME, "username").send_keys("admin")
    drv.find_element(By.NAME, "password").send_keys("admin")
    click("form button[type=submit]")
    settle(2)
    drv.get(ui + f"/server/{agent}/login")
    drv.find_element(By.NAME, "username").send_keys(user)
    drv.find_element(By.NAME, "password").send_keys(password)
    click("form button[type=submit]")
    settle(2)
    console_errors()  # drop the login pages' noise (no dashboard plugin in this UI)
    shot("1-overview", base, [db, "Databases"])
    shot("2-database", f"{base}/{db}", [schema, "Schemas", "scheduled vacuums"])
    shot("3-schema", f"{base}/{db}/schema/{schema}",
         ["orders", "orders_customer_idx", "Commandes été"])
    shot("4-table", f"{base}/{db}/schema/{schema}/table/orders",
         ["orders_customer_idx", "scheduled analyzes", "rows"])

    # Database page: open the scheduled lists
    drv.get(ui + f"{base}/{db}")
    settle()
    for link in drv.find_elements(By.CSS_SELECTOR, "a[data-toggle=collapse]"):
        link.click()
        time.sleep(0.5)
    time.sleep(1)
    drv.save_screenshot(f"{outdir}/5-database-scheduled-open.png")
    text = drv.find_element(By.TAG_NAME, "body").text
    result("database page: scheduled list open with a Cancel button", "Cancel" in text,
           "" if "Cancel" in text else repr(text[:400]))

    # Table page, by hand: VACUUM modal, tick ANALYZE, Scheduled, pick tomorrow, Apply
    drv.get(ui + f"{base}/{db}/schema/{schema}/table/customers")
    settle()
    console_errors()
    click("button[data-target='#vacuumModal']")
    time.sleep(1)
    click("#vacuumModeAnalyze")
    click("#vacuumScheduled")
    # the date picker's callback sets vacuumScheduledTime; do the same
    drv.execute_script(
        "document.getElementById('app').__vue__.vacuumScheduledTime = moment().add(1, 'days');")
    time.sleep(0.5)
    click("#vacuumModal .modal-footer .btn-primary")
    settle(3)
    click("a[href='#collapseScheduledVacuums']")
    time.sleep(1)
    drv.save_screenshot(f"{outdir}/6-table-vacuum-scheduled.png")
    box = drv.find_element(By.ID, "collapseScheduledVacuums").text
    ok = "VACUUM (ANALYZE)" in box and "customers" in box and "Cancel" in box and not alerts
    result("table page: Apply on a scheduled VACUUM (ANALYZE) lists it with Cancel", ok,
           f"list {box!r} alerts {alerts}")
    alerts.clear()
    # Cancel it
    drv.find_element(By.CSS_SELECTOR, "#collapseScheduledVacuums button").click()
    settle(3)
    drv.save_screenshot(f"{outdir}/7-table-vacuum-canceled.png")
    left = drv.find_elements(By.CSS_SELECTOR, "#collapseScheduledVacuums button")
    body = drv.find_element(By.TAG_NAME, "body").text
    ok = not left and not alerts
    result("table page: Cancel removes the scheduled VACUUM", ok,
           f"buttons left {len(left)} alerts {alerts} body {body[:200]!r}")
    alerts.clear()

    # Table page: REINDEX of one index, Now (button in the indexes table)
    click("table.table-query button[data-target='#reindexModal']")
    time.sleep(1)
    click("#reindexModal .modal-footer .btn-primary")
    settle(3)
    errs = console_errors()
    result("table page: Reindex (index, Now) accepted without error", not alerts and not errs,
           f"alerts {alerts} console {errs}")
    alerts.clear()
finally:
    drv.quit()
"""


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ui-venv",
        type=Path,
        default=DEFAULT_UI_VENV,
        help=f"virtualenv of temboard {UI_VERSION} (created when missing; default %(default)s)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where to put clusters, configs and logs (default: a new /tmp dir)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir and leave nothing running"
    )
    parser.add_argument(
        "--screenshots",
        type=Path,
        nargs="?",
        const=Path("/tmp/ui-shots"),
        help="also load the pages in headless Chromium and save PNGs (default dir /tmp/ui-shots)",
    )
    parser.add_argument(
        "--agent-tls",
        choices=["verified", "unverified"],
        default="verified",
        help="UI -> agent TLS: 'verified' sets temboard's ssl_ca_cert_file to the agent's "
        "certificate; 'unverified' leaves it unset (temboard's auto_configure.sh default)",
    )
    parser.add_argument(
        "--agent-plugins",
        default='["maintenance"]',
        metavar="JSON",
        help="the agent's [temboard] plugins (default %(default)s); '[]' is a negative "
        "control: the check must then fail",
    )
    parser.add_argument("--report-json", type=Path, help="write the results as JSON there")
    parser.add_argument(
        "--hold", action="store_true", help="after the checks, keep everything running until Ctrl-C"
    )
    args = parser.parse_args()

    # SIGTERM (and SIGINT, even when started in the background) -> clean stop below.
    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    ensure_ui_venv(args.ui_venv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tb-ui-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    print(f"# work dir: {workdir}", flush=True)

    report = Report(verbose=True)
    pg = EmbeddedCluster(workdir / "pg")
    agent = AgentProcess(workdir / "agent", pg, plugins=args.agent_plugins)
    ui = UIProcess(
        workdir / "ui",
        args.ui_venv,
        pg,
        agent.home / "server.pem" if args.agent_tls == "verified" else None,
    )
    code = 2
    try:
        pg.init()
        pg.start()
        make_fixture(pg)
        agent.start()
        ui.setup()
        ui.start()
        print(f"# PostgreSQL :{pg.port}  agent {agent.url}  UI {ui.url}", flush=True)
        client = UIClient(ui, agent)
        e2e = E2E(report, client)
        if e2e.login_and_register(agent):
            e2e.read_pages()
            e2e.operations_now()
            e2e.operations_scheduled()
            e2e.operation_errors()
            e2e.operation_edge_cases()
            e2e.agent_restart(agent)
            e2e.session_loss(agent)
            e2e.agent_requests_shape()
            if args.screenshots:
                # leave a scheduled op of each kind for the pages to show
                when = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=5)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                client.proxy(
                    "POST", f"{e2e.base}/vacuum", {"mode": "analyze", "datetime": when}, True
                )
                client.proxy("POST", f"{e2e.table}/analyze", {"datetime": when}, True)
                client.proxy(
                    "POST",
                    f"{e2e.schema}/index/orders_customer_idx/reindex",
                    {"datetime": when},
                    True,
                )
                screenshots(ui, agent, args.screenshots, report)
        code = 1 if report.failed else 0
        if args.hold:
            print(
                f"# holding: UI {ui.url} (admin/admin), agent {agent.url}; Ctrl-C to stop",
                flush=True,
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    except KeyboardInterrupt:
        print("# interrupted", flush=True)
        code = 2
    except Exception:
        traceback.print_exc()
        report.add("set-up", False, "processes started", "exception (see above)")
        code = 2
    finally:
        ui.stop()
        agent.stop()
        pg.stop()
        if args.report_json:
            args.report_json.write_text(
                json.dumps(
                    [
                        {
                            "name": r.name,
                            "ok": r.ok,
                            "expected": r.expected,
                            "got": r.got,
                            "exchange": r.exchange.__dict__ if r.exchange else None,
                        }
                        for r in report.results
                    ],
                    indent=2,
                )
            )
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(
                f"# kept {workdir} "
                "(logs: agent/agent.log, ui/temboard.log, ui/agent-exchanges.jsonl)"
            )
    print()
    if report.failed:
        print("Failed checks:")
        for r in report.failed:
            print(f"  - {r.name}")
    print(f"ui-e2e: {report.summary()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
