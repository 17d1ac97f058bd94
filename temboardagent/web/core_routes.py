"""Core routes: /login, /logout, /profile, /discover, /openapi.json."""

from __future__ import annotations

import copy
import math
import os
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from .. import role
from ..errors import TooManyRequests, Unauthorized, malformed
from ..plugins import Request

if TYPE_CHECKING:  # pragma: no cover
    from ..auth.sessions import SessionStore
    from ..auth.throttle import LoginThrottle
    from ..auth.users import UsersFile
    from ..config import AgentConfig
    from ..plugins import Plugin
    from ..postgres import Postgres
    from .app import WebApp

MAX_CREDENTIAL_LENGTH = 1024


class CoreServices(Protocol):
    """What the core routes use of the agent (:class:`temboardagent.agent.Agent`)."""

    config: AgentConfig
    web: WebApp
    users: UsersFile
    sessions: SessionStore
    throttle: LoginThrottle
    postgres: Postgres
    #: loaded plugins by name (filled after the core routes are registered)
    plugins: Mapping[str, Plugin]
    #: the document served at /openapi.json (built after the plugins loaded)
    openapi_document: dict


def _credential(body: Any, name: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value or len(value) > MAX_CREDENTIAL_LENGTH:
        raise malformed(name)
    return value


def register(agent: CoreServices) -> None:
    """Add the core routes to ``agent.web``."""
    web = agent.web

    def login(request: Request) -> dict:
        username = _credential(request.body, "username")
        password = _credential(request.body, "password")
        address = request.remote_addr
        wait = agent.throttle.admit(username, address)
        if wait > 0:
            wait = math.ceil(wait * 10) / 10  # never "retry in 0.0 s"
            raise TooManyRequests(
                f"Too many failed logins, retry in {wait:.1f} seconds.",
                retry_after=wait,
            )
        if not agent.users.authenticate(username, password):
            agent.throttle.failure(username, address)
            raise Unauthorized("Invalid username/password.")
        agent.throttle.success(username, address)
        return {"session": agent.sessions.create(username)}

    def logout(request: Request) -> dict:
        agent.sessions.delete(request.headers["X-Session"])
        return {"logout": True}

    def profile(request: Request) -> dict:
        return {"username": request.username}

    def discover(request: Request) -> dict:
        info = agent.postgres.server_info()
        with agent.postgres.connect() as conn:
            privileges = role.privileges(conn)
        return {
            "hostname": agent.config.temboard.hostname,
            "cpu": os.cpu_count(),
            "memory_size": _memory_size(),
            "pg_port": info["port"],
            "pg_version": info["version"],
            "pg_version_summary": info["version_summary"],
            "pg_data": info["data_directory"],
            "pg_block_size": info["block_size"],
            "plugins": list(agent.plugins),
            "privileges": privileges,
        }

    def openapi_json(request: Request) -> dict:
        return copy.deepcopy(agent.openapi_document)

    web.add_route("POST", "/login", login, public=True)
    web.add_route("GET", "/logout", logout)
    web.add_route("GET", "/profile", profile)
    web.add_route("GET", "/discover", discover, key_ok=True)
    web.add_route("GET", "/openapi.json", openapi_json, public=True)


def _memory_size() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
