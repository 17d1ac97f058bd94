"""The real temboard UI 7.11 in front of this agent, driven by headless Chromium.

Starts a throwaway PostgreSQL cluster with a fixture database, this agent (as the
functional tests start it), and the unmodified temboard UI 7.11 from its own
virtualenv (HTTPS, its repository database on the same cluster, admin/admin). A
:class:`Browser` drives Debian's Chromium through chromedriver (selenium), so the UI's
own JavaScript makes every agent call. Used by the end-to-end tests (``test/e2e``) and
by ``dev/ui_e2e.py`` (manual modes).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import psycopg2
import requests

from devsupport.agentproc import AgentProcess
from devsupport.sql import create_database, run_sql
from temboardagent.embedded import EmbeddedCluster, free_port, make_self_signed_cert

UI_VERSION = "7.11"
# temboard 7.11 declares open-ended requirements, but it needs libraries of its era: its
# HTTPS server uses a Tornado internal gone in 6.3 (IOStream._verify_cert); with
# SQLAlchemy 2.1 its postgresql:// URLs want psycopg 3; and it needs a PostgreSQL driver
# it does not declare.
UI_REQUIREMENTS = (
    f"temboard=={UI_VERSION}",
    "tornado<6.3",
    "sqlalchemy<1.4",
    "alembic<1.5",
    "psycopg2-binary",
)
UI_ADMIN = ("admin", "admin")  # created by temboard's own schema migration
DB = "e2e_shop"
SCHEMA = "sales"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1600",
)

FIXTURE_SQL = f"""
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.orders (id serial PRIMARY KEY, customer_id int, amount numeric, note text);
CREATE INDEX orders_customer_idx ON {SCHEMA}.orders (customer_id);
INSERT INTO {SCHEMA}.orders (customer_id, amount, note)
    SELECT i % 100, i, repeat('x', 60) FROM generate_series(1, 30000) i;
DELETE FROM {SCHEMA}.orders WHERE id % 3 = 0;
CREATE TABLE {SCHEMA}.customers (id int PRIMARY KEY, name text);
INSERT INTO {SCHEMA}.customers SELECT i, 'customer ' || i FROM generate_series(1, 100) i;
-- an index whose IMMUTABLE function changed behaviour: its REINDEX fails in PostgreSQL
CREATE FUNCTION {SCHEMA}.coupon_key(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
CREATE TABLE {SCHEMA}.coupons (id int, label text);
INSERT INTO {SCHEMA}.coupons SELECT i, 'coupon ' || i FROM generate_series(1, 50) i;
CREATE UNIQUE INDEX coupons_key_idx ON {SCHEMA}.coupons ({SCHEMA}.coupon_key(id));
CREATE OR REPLACE FUNCTION {SCHEMA}.coupon_key(int) RETURNS int LANGUAGE sql IMMUTABLE
    AS 'SELECT 1';
-- stable figures: no autovacuum on the tables the tests read
ALTER TABLE {SCHEMA}.orders SET (autovacuum_enabled = off);
ALTER TABLE {SCHEMA}.customers SET (autovacuum_enabled = off);
ALTER TABLE {SCHEMA}.coupons SET (autovacuum_enabled = off);
CREATE TABLE public.events (id bigserial PRIMARY KEY, payload text);
INSERT INTO public.events (payload) SELECT md5(i::text) FROM generate_series(1, 1000) i;
"""


class MissingPrerequisite(RuntimeError):
    """Something the end-to-end run needs is not installed (see dev/setup.sh)."""


# Prerequisites


def ui_venv_dir() -> Path:
    """The UI's virtualenv: $TEMBOARD_UI_VENV, else a cache outside the work tree."""
    env = os.environ.get("TEMBOARD_UI_VENV")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "temboard-agent" / f"ui-venv-{UI_VERSION}"


def _stamp(venv: Path) -> Path:
    return venv / ".temboard-agent-e2e"


def ui_venv_ready(venv: Path) -> bool:
    """True when ``venv`` holds exactly the pinned requirements."""
    stamp = _stamp(venv)
    return (
        (venv / "bin" / "temboard").exists()
        and stamp.exists()
        and stamp.read_text() == "\n".join(UI_REQUIREMENTS) + "\n"
    )


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
    raise MissingPrerequisite(f"temboard {UI_VERSION} needs Python 3.11; none found")


def ensure_ui_venv(venv: Path) -> None:
    """Create the UI's virtualenv with its pinned requirements (from PyPI) when needed."""
    if ui_venv_ready(venv):
        return
    if not (venv / "bin" / "python").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([find_python311(), "-m", "venv", str(venv)], check=True)
    out = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", *UI_REQUIREMENTS],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise MissingPrerequisite(f"cannot install temboard {UI_VERSION}:\n{out.stderr[-2000:]}")
    _stamp(venv).write_text("\n".join(UI_REQUIREMENTS) + "\n")


def check_browser() -> None:
    """Chromium, its driver and selenium are installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        raise MissingPrerequisite(
            f"missing {', '.join(missing)} (apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise MissingPrerequisite("selenium is not installed (pip install -e '.[test]')") from None


# Processes


def _stop_group(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """Stop a process started in its own session, with everything it started."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class UIProcess:
    """The temboard UI 7.11 with its repository database on ``pg``."""

    def __init__(self, home: Path, venv: Path, pg: EmbeddedCluster, agent_ca: Path) -> None:
        self.home = home
        self.venv = venv
        self.pg = pg
        self.agent_ca = agent_ca
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = home / "temboard.log"
        self.proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.home / "temboard.conf"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "TEMBOARD_"))}
        env.update(HOME=str(self.home), PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        return env

    def setup(self) -> None:
        """Configuration, certificate, and the repository as temboard's scripts make it."""
        (self.home / "var").mkdir(parents=True, exist_ok=True)
        make_self_signed_cert(self.home / "ui.pem", self.home / "ui.key")
        self.conf.write_text(
            f"""[temboard]
address = 127.0.0.1
port = {self.port}
ssl_cert_file = {self.home / "ui.pem"}
ssl_key_file = {self.home / "ui.key"}
ssl_ca_cert_file = {self.agent_ca}
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
level = INFO
"""
        )
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
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError("temboard-migratedb upgrade failed:\n" + out.stdout + out.stderr)

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log, "ab") as logfo:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "temboard"), "-c", str(self.conf)],
                stdout=logfo,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.home,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("temboard UI exited:\n" + self.log.read_text()[-3000:])
            try:
                requests.get(self.url + "/login", verify=str(self.home / "ui.pem"), timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("temboard UI did not start in time:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        _stop_group(self.proc)
        self.proc = None


def make_fixture(pg: EmbeddedCluster) -> None:
    """The ``e2e_shop`` database the pages show."""
    create_database(pg, DB, FIXTURE_SQL)
    run_sql(pg, "ANALYZE", dbname=DB)


class Stack:
    """PostgreSQL + this agent + the temboard UI, stopped in reverse order."""

    def __init__(self, workdir: Path, venv: Path, agent_conf: str = "") -> None:
        self.workdir = workdir
        self.pg = EmbeddedCluster(workdir / "pg")
        self.agent = AgentProcess(workdir / "agent", self.pg, extra_conf=agent_conf)
        self.ui = UIProcess(workdir / "ui", venv, self.pg, self.agent.home / "server.pem")

    def start(self) -> None:
        try:
            self.pg.init()
            self.pg.start()
            make_fixture(self.pg)
            self.agent.start()
            self.ui.setup()
            self.ui.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for step in (self.ui.stop, self.agent.stop, self.pg.stop):
            with contextlib.suppress(Exception):
                step()

    def sql(self, query: str, params: Any = None, dbname: str = DB) -> list[tuple]:
        """Run ``query`` as superuser in autocommit; its rows if any."""
        return run_sql(self.pg, query, params, dbname)

    def api(self, path: str) -> Any:
        """GET ``path`` from the agent directly (with the key), as JSON."""
        resp = self.agent.anon.get(
            self.agent.url + path, headers={"X-TemBoard-Agent-Key": self.agent.key}, timeout=30
        )
        resp.raise_for_status()
        return resp.json()

    # UI URLs

    @property
    def server(self) -> str:
        return f"{self.ui.url}/server/127.0.0.1/{self.agent.port}"

    def page(self, database: str | None = None, schema: str | None = None, table: str = "") -> str:
        """URL of a maintenance page (instance, database, schema or table)."""
        url = f"{self.server}/maintenance"
        if database is not None:
            url += "/" + quote(database)
        if schema is not None:
            url += "/schema/" + quote(schema)
        if table:
            url += "/table/" + quote(table)
        return url


@contextlib.contextmanager
def running_stack(
    workdir: Path | None = None, venv: Path | None = None, agent_conf: str = ""
) -> Iterator[Stack]:
    """A started :class:`Stack` in ``workdir`` (a new temporary one by default)."""
    venv = venv or ui_venv_dir()
    ensure_ui_venv(venv)
    own = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="tb-ui-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)  # the cluster runs as postgres when we are root
    stack = Stack(workdir, venv, agent_conf)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


# Browser

#: installed before any page script: alert()/confirm() are recorded instead of blocking
DIALOG_HOOK = """
window.__dialogs = [];
window.alert = function (msg) { window.__dialogs.push(String(msg)); };
window.confirm = function (msg) { window.__dialogs.push(String(msg)); return false; };
"""


class Browser:
    """Headless Chromium through chromedriver, each started in its own process group."""

    def __init__(self, profile_dir: Path, shots_dir: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        check_browser()
        self.shots_dir = shots_dir
        shots_dir.mkdir(parents=True, exist_ok=True)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
            opts.add_argument(flag)
        opts.accept_insecure_certs = True  # the UI's self-signed certificate
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = Service(
            CHROMEDRIVER,
            log_output=str(profile_dir.parent / "chromedriver.log"),
            popen_kw={"start_new_session": True},
        )
        self.driver = webdriver.Chrome(service=self.service, options=opts)
        try:
            self.driver.set_page_load_timeout(60)
            self.driver.execute_cdp_cmd(
                "Page.addScriptToEvaluateOnNewDocument", {"source": DIALOG_HOOK}
            )
        except BaseException:
            self.quit()
            raise

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()
        _stop_group(getattr(self.service, "process", None), grace=5.0)

    # Pages

    def get(self, url: str) -> None:
        self.driver.get(url)

    def wait(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
        """Poll ``predicate`` until it returns a true value; fail with the page's text."""
        deadline = time.monotonic() + timeout
        last_exc: Exception | None = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except Exception as exc:  # element not there yet, stale, ...
                last_exc = exc
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what or predicate}"
                    + (f" (last error: {last_exc!r})" if last_exc else "")
                    + f"\npage {self.driver.current_url}:\n{self.text()[:1500]}"
                )
            time.sleep(0.1)

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def visible(self, selector: str):
        """The first displayed element matching ``selector``, or None."""
        return next((el for el in self.css(selector) if el.is_displayed()), None)

    def click(self, selector: str, timeout: float = 60.0) -> None:
        """Click the first displayed element matching ``selector`` once it is there
        and nothing covers it (a dialog fading out, a backdrop)."""

        def clicked() -> bool:
            el = self.visible(selector)
            if el is None:
                return False
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
            el.click()  # ElementClickInterceptedException: retried by wait()
            return True

        self.wait(clicked, timeout, f"{selector} to be clickable")

    def fill(self, selector: str, text: str, timeout: float = 60.0) -> None:
        """Type ``text`` into the input ``selector`` until it holds exactly that (keys
        typed while a dialog still opens can go astray on a loaded machine)."""

        def typed() -> bool:
            el = self.one(selector)
            if el.get_attribute("value") == text:
                return True
            el.clear()
            el.send_keys(text)
            return el.get_attribute("value") == text

        self.wait(typed, timeout, f"{selector} to hold {text!r}")

    def wait_dialog_shown(self, selector: str, timeout: float = 60.0) -> None:
        """The Bootstrap dialog ``selector`` is open and done fading in (Bootstrap
        ignores a dismiss while a dialog is still opening)."""
        self.wait(
            lambda: self.driver.execute_script(
                "var m = $(arguments[0]).data('bs.modal');"
                "return !!m && m._isShown && !m._isTransitioning;",
                selector,
            ),
            timeout,
            f"the dialog {selector}",
        )

    def wait_dialogs_closed(self, timeout: float = 60.0) -> None:
        """No Bootstrap dialog shown or fading, no backdrop left."""
        self.wait(
            lambda: (
                not self.css(".modal.show, .modal-backdrop")
                and not any(el.is_displayed() for el in self.css(".modal"))
            ),
            timeout,
            "the dialog to close",
        )

    def text(self, selector: str = "body") -> str:
        try:
            return self.one(selector).text
        except Exception:
            return ""

    def wait_text(self, needle: str, selector: str = "body", timeout: float = 60.0) -> str:
        return self.wait(
            lambda: (t := self.text(selector)) and needle in t and t,
            timeout,
            f"{needle!r} in {selector}",
        )

    def wait_loaded(self, timeout: float = 60.0) -> None:
        """The page's Vue app has its data (its loading ring is gone)."""
        self.wait(
            lambda: self.driver.execute_script(
                "var app = document.getElementById('app');"
                "return document.readyState === 'complete' && !!app && !!app.__vue__"
                " && app.__vue__.loading === false;"
            ),
            timeout,
            "the page's data",
        )

    def vue(self, expression: str) -> Any:
        """Evaluate ``expression`` with ``vm`` bound to the page's Vue instance."""
        return self.driver.execute_script(
            "var vm = document.getElementById('app').__vue__; return " + expression + ";"
        )

    def dialogs(self) -> list[str]:
        """alert()/confirm() messages shown since the page loaded (then forgotten)."""
        return self.driver.execute_script(
            "var d = window.__dialogs || []; window.__dialogs = []; return d;"
        )

    def console_errors(self) -> list[str]:
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE" and "favicon" not in entry["message"]
        ]

    def screenshot(self, name: str) -> Path:
        path = self.shots_dir / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


# UI flows (what a user clicks)


def ui_login(browser: Browser, stack: Stack, user: tuple[str, str] = UI_ADMIN) -> None:
    """Log in to the temboard UI with its own login form."""
    browser.get(stack.ui.url + "/login")
    browser.wait(lambda: browser.visible("#inputUsername"), what="the login form")
    browser.fill("#inputUsername", user[0])
    browser.fill("#inputPassword", user[1])
    browser.click("form button[type=submit]")
    browser.wait(lambda: "/login" not in browser.driver.current_url, what="the UI login")


def register_agent(browser: Browser, stack: Stack, group: str = "default") -> None:
    """Settings > Instances > New instance: address, port, key, group; Save."""
    browser.get(stack.ui.url + "/settings/instances")
    browser.click("#buttonLoadAddInstanceForm")
    browser.wait_dialog_shown("#InstanceModal")
    browser.wait(lambda: browser.visible("#inputNewAgentAddress"), what="the new instance form")
    browser.fill("#inputNewAgentAddress", "127.0.0.1")
    browser.fill("#inputNewAgentPort", str(stack.agent.port))
    browser.fill("#inputAgentKey", stack.agent.key)
    # the bootstrap-multiselect widget of the group list: pick one as a click would
    browser.driver.execute_script("$('#selectGroups').multiselect('select', arguments[0]);", group)
    browser.click("#submitFormAddInstance")


def agent_login(browser: Browser, stack: Stack, password: str, then: str | None = None) -> None:
    """The UI's agent login form, coming from ``then`` (the page to open afterwards)."""
    url = f"{stack.server}/login"
    if then:
        url += "?redirect_to=" + quote(then, safe="")
    browser.get(url)
    browser.wait(lambda: browser.visible("#inputPassword"), what="the agent login form")
    browser.fill("#inputUsername", stack.agent.username)
    browser.fill("#inputPassword", password)
    browser.click("form button[type=submit]")
