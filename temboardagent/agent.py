"""The agent: owns config, PostgreSQL access, users and sessions, tasks, plugins and the web app."""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, Callable, Iterable, Mapping

from . import __version__, openapi
from .auth.gate import Gate
from .auth.sessions import SessionStore
from .auth.throttle import LoginThrottle
from .auth.users import UsersFile
from .cluster import system_identifier
from .config import AgentConfig, load_config
from .homelock import lock_home
from .log import setup_logging
from .plugins import Plugin, RouteHandler, load_plugins
from .postgres import Postgres
from .tasks import ConflictKey, Task, TaskContext, TaskFacade, TaskManager
from .web import core_routes
from .web.app import WebApp
from .web.server import make_server

logger = logging.getLogger(__name__)


class AgentPluginContext:
    """What one plugin gets from the agent (see :class:`plugins.PluginContext`)."""

    def __init__(self, agent: Agent, name: str) -> None:
        self._agent = agent
        self.name = name
        self.config: Mapping[str, str] = agent.config.plugin_section(name)
        self.agent_config = agent.config
        self.tasks = TaskFacade(agent.tasks)

    def _loading(self, what: str) -> None:
        """Raise RuntimeError once the agent has started (routes and workers are fixed)."""
        if self._agent.tasks.started:
            raise RuntimeError(
                f"plugin {self.name}: {what} after the agent started; register it in load()"
            )

    def add_route(
        self,
        method: str,
        path: str,
        handler: RouteHandler,
        *,
        key_ok: bool = False,
        patterns: Mapping[str, str] | None = None,
    ) -> None:
        self._loading(f"route {method} {path}")
        self._agent.web.add_route(method, path, handler, key_ok=key_ok, patterns=patterns)

    def add_worker(
        self,
        name: str,
        run: Callable[[TaskContext], str | None],
        *,
        conflict_keys: Callable[[Task], Iterable[ConflictKey]],
        cancel: Callable[[Task], None] | None = None,
        recover: Callable[[list[Task]], None] | None = None,
    ) -> None:
        self._loading(f"task worker {name}")
        self._agent.tasks.register_worker(
            name, run, conflict_keys=conflict_keys, cancel=cancel, recover=recover
        )

    def connect(self, dbname: str | None = None, **kwargs: Any) -> AbstractContextManager:
        return self._agent.postgres.connect(dbname, **kwargs)


class Agent:
    """Build every component from the config; :meth:`serve` until SIGTERM."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        tb = config.temboard
        # First of all: nothing below may open the home's SQLite files or touch
        # PostgreSQL while another agent owns this home.
        self.home_lock = lock_home(tb.home)
        pg = config.postgresql
        self.postgres = Postgres(
            pg.host, pg.port, pg.user, pg.password, pg.dbname,
            application_name="temboard-agent",
            idle_timeout=pg.pool_idle_timeout, max_idle=pg.pool_max_idle,
        )  # fmt: skip
        self.users = UsersFile(tb.users)
        self.sessions = SessionStore(tb.home / "sessions.sqlite", tb.session_expiry)
        self.throttle = LoginThrottle()
        self.tasks = TaskManager(
            tb.home / "tasks.sqlite",
            workers=tb.workers,
            retention=timedelta(seconds=tb.task_retention),
            identity=self.system_identifier,
        )
        self.web = WebApp(Gate(self.sessions, tb.key), tb.max_body_size)
        core_routes.register(self)
        self.plugins: dict[str, Plugin] = load_plugins(
            tb.plugins, lambda name: AgentPluginContext(self, name)
        )
        #: served (a copy per request) at /openapi.json: the core's routes and the plugins'
        self.openapi_document = openapi.document(
            {name: plugin.openapi() for name, plugin in self.plugins.items()}
        )
        self.server = make_server(
            self.web,
            tb.address,
            tb.port,
            tb.ssl_cert_file,
            tb.ssl_key_file,
            tb.ssl_ca_cert_file,
            threads=tb.http_threads,
            timeout=tb.socket_timeout,
            max_body_size=tb.max_body_size,
        )
        self._stop = threading.Event()
        self._reload = threading.Event()

    def system_identifier(self) -> str | None:
        """The connected cluster's system identifier (recorded on each task)."""
        with self.postgres.connect() as conn:
            return system_identifier(conn)

    def reload(self) -> None:
        """SIGHUP: reload the users file and logging."""
        try:
            if self.config.path is not None:
                fresh = load_config(self.config.path, check_files=False)
                setup_logging(fresh.logging)
            self.users.reload()
            logger.info("Reloaded users and logging.")
        except Exception as exc:  # keep serving with the previous settings
            logger.error("Reload failed, keeping previous settings: %s", exc)

    def serve(self) -> None:
        """Listen, start tasks, serve HTTPS; block until SIGTERM/SIGINT, then stop.

        The port is bound before the task manager starts (recovery of the
        previous run, scheduler), so a start that cannot listen changes nothing.
        """
        self.server.prepare()
        try:
            self.tasks.start()
        except BaseException:
            self.server.stop()  # its thread pool would keep the process alive
            raise
        thread = threading.Thread(target=self.server.serve, name="https", daemon=True)
        thread.start()
        tb = self.config.temboard
        logger.info(
            "temboard-agent %s listening on https://%s:%d (plugins: %s).",
            __version__, tb.address, tb.port, ", ".join(self.plugins) or "none",
        )  # fmt: skip
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        try:
            while not self._stop.wait(0.5):
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                if not thread.is_alive():
                    logger.error("HTTPS server stopped unexpectedly.")
                    break
        finally:
            self.stop()

    def stop(self) -> None:
        logger.info("Stopping.")
        try:
            self.server.stop()
        except Exception:
            logger.exception("Error while stopping the HTTPS server.")
        self.tasks.stop()
        for plugin in self.plugins.values():
            try:
                plugin.unload()
            except Exception:
                logger.exception("Error while unloading plugin %s.", plugin.name)
        self.sessions.close()
        self.postgres.close()
        self.home_lock.release()
        logger.info("Stopped.")
