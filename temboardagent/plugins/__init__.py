"""Plugin API and loader.

A plugin is a class registered in the entry-point group ``temboardagent.plugins``.
The agent instantiates it with a :class:`PluginContext` and calls :meth:`Plugin.load`;
everything a plugin may touch of the agent goes through that context.

A plugin registers its routes and task workers in :meth:`Plugin.load`, before the
agent starts serving and running tasks; :meth:`PluginContext.add_route` and
:meth:`PluginContext.add_worker` raise RuntimeError once it has started.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

from ..tasks import ConflictKey

if TYPE_CHECKING:  # pragma: no cover
    from ..config import AgentConfig
    from ..tasks import Task, TaskContext

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "temboardagent.plugins"


@dataclass(frozen=True)
class Request:
    """What a route handler sees of an HTTP request (no web framework object)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any = field(default_factory=dict)  # parsed JSON; {} for an empty body
    username: str | None = None  # None when authenticated by the shared key
    remote_addr: str = ""


#: ``handler(request, **path_params) -> JSON-serialisable value``; raise
#: :class:`temboardagent.errors.HTTPError` subclasses for client errors.
RouteHandler = Callable[..., Any]


class PluginTasks(Protocol):
    """The agent's task list as seen by a plugin (see :class:`temboardagent.tasks.TaskManager`).

    Thread-safe; tasks are persisted before these calls return. Workers are
    registered with :meth:`PluginContext.add_worker`, never here.
    """

    def schedule(
        self,
        worker: str,
        target: Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        start: datetime | None = None,
        *,
        preferred_id: str | None = None,
    ) -> Task:
        """Persist a new ``todo`` task for ``worker`` (``start`` None: now).

        Raises UnknownWorker, TaskExists for a pending duplicate, ValueError.
        """

    def get(self, task_id: str) -> Task | None:
        """The task with this id, or None."""

    def list(
        self,
        *,
        workers: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        finished_since: datetime | None = None,
        target: Mapping[str, Any] | None = None,
        order: str = "start",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]:
        """Tasks filtered by worker names, statuses and target fields."""

    def cancel(self, task_id: str) -> Task:
        """Cancel a task (a running one through its worker's ``cancel`` hook).

        Raises TaskNotFound, TaskFinished.
        """


class PluginContext(Protocol):
    """The agent as seen by a plugin, during and after :meth:`Plugin.load`."""

    name: str
    #: the plugin's own INI section, raw strings (empty mapping when absent)
    config: Mapping[str, str]
    agent_config: AgentConfig
    tasks: PluginTasks

    def add_route(
        self,
        method: str,
        path: str,
        handler: RouteHandler,
        *,
        key_ok: bool = False,
        patterns: Mapping[str, str] | None = None,
    ) -> None:
        """Register ``handler`` for ``method`` and ``path``, written as in OpenAPI.

        ``/maintenance/{dbname}/schema/{schema}`` calls ``handler(request,
        dbname=..., schema=...)``, each parameter one percent-decoded path
        segment. ``patterns`` gives a parameter a regular expression the whole
        segment must match, else the path is not this route (it may be
        another's). Dynamic routes are tried in registration order.

        Every route needs a valid session; ``key_ok`` routes (read-only GETs) also
        accept the shared key (``?key=`` or ``X-TemBoard-Agent-Key``). Each
        route is documented in the plugin's :meth:`Plugin.openapi` fragment.
        Only in :meth:`Plugin.load`: raises RuntimeError once the agent has started.
        """

    def add_worker(
        self,
        name: str,
        run: Callable[[TaskContext], str | None],
        *,
        conflict_keys: Callable[[Task], Iterable[ConflictKey]],
        cancel: Callable[[Task], None] | None = None,
        recover: Callable[[list[Task]], None] | None = None,
    ) -> None:
        """Register a task worker by name; see :mod:`temboardagent.tasks`.

        ``recover`` is called when the agent starts with the worker's tasks left
        ``doing`` by a previous process (crash, kill -9), before they are marked
        ``aborted``; it must not block (start a thread for slow work). Only in
        :meth:`Plugin.load`: raises RuntimeError once the agent has started (the
        recovery at start must know every worker).
        """

    def connect(
        self,
        dbname: str | None = None,
        *,
        pooled: bool = True,
        read_only: bool = True,
        statement_timeout: int | None = None,
        lock_timeout: int | None = None,
    ) -> AbstractContextManager[Any]:
        """A psycopg2 connection (autocommit) to ``dbname`` as a context manager.

        ``search_path`` is always ``pg_catalog, pg_temp``; transactions are
        read-only unless ``read_only=False`` (VACUUM, ANALYZE, REINDEX).
        Timeouts are in milliseconds, set at connection time. ``pooled=False`` for
        long-running work (maintenance operations) that should not hold a pool slot.

        Raises :class:`temboardagent.errors.ServiceUnavailable` when PostgreSQL is
        unreachable and :class:`temboardagent.errors.NotFound` for an unknown
        database.
        """


class Plugin:
    """Base class of plugins; subclasses override :meth:`load`."""

    name: str = ""

    def __init__(self, context: PluginContext) -> None:
        self.context = context

    def load(self) -> None:  # pragma: no cover - overridden
        """Register routes and workers."""

    def openapi(self) -> dict:
        """The plugin's part of the OpenAPI document served at ``/openapi.json``.

        Called once, after :meth:`load`: a partial document with only
        ``paths`` and ``components.schemas``, built with the helpers of
        :mod:`temboardagent.openapi` (:func:`~temboardagent.openapi.fragment`).
        A path, method or schema name the core or another plugin already
        documents fails the agent's start. The default documents nothing.
        """
        return {}

    def unload(self) -> None:
        """Release resources at agent stop."""


class PluginError(Exception):
    """A plugin could not be found or loaded; ``str()`` names the plugin."""


def find_plugin_class(name: str) -> type[Plugin]:
    """Return the plugin class registered under ``name``."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise PluginError(f"Missing plugin: {name}")
    try:
        cls = matches[0].load()
    except Exception as exc:
        raise PluginError(f"Plugin {name} failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginError(f"Plugin {name} is not a temboardagent Plugin class")
    return cls


def load_plugins(
    names: Iterable[str], make_context: Callable[[str], PluginContext]
) -> dict[str, Plugin]:
    """Instantiate and load each named plugin, in order."""
    loaded: dict[str, Plugin] = {}
    for name in names:
        cls = find_plugin_class(name)
        try:
            plugin = cls(make_context(name))
            plugin.load()
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"Plugin {name} failed to load: {exc}") from exc
        logger.info("Loaded plugin %s.", name)
        loaded[name] = plugin
    return loaded
