"""What a plugin gets of the agent: a narrow task API, registration only while loading."""

from __future__ import annotations

import inspect

import pytest

from temboardagent.agent import AgentPluginContext
from temboardagent.plugins import PluginTasks
from temboardagent.tasks import TaskFacade, TaskManager
from test.func.helpers import built_agent


def noop(ctx) -> None:
    return None


@pytest.fixture
def manager(tmp_path):
    tm = TaskManager(tmp_path / "tasks.sqlite", workers=1)
    yield tm
    tm.close()


@pytest.fixture
def agent(tmp_path):
    """An agent built without plugins, not serving."""
    with built_agent(tmp_path, plugins="[]") as agent:
        yield agent


def test_facade_has_only_schedule_get_list_cancel(manager):
    manager.register_worker("w", noop, conflict_keys=lambda task: [])
    facade = TaskFacade(manager)
    public = {name for name in dir(facade) if not name.startswith("_")}
    assert public == {"schedule", "get", "list", "cancel"}
    with pytest.raises(AttributeError):
        facade.store = manager.store  # type: ignore[attr-defined]
    task = facade.schedule("w", {"dbname": "db"})
    assert facade.get(task.id) == task
    assert facade.list(workers=["w"]) == [task]
    assert facade.cancel(task.id).id == task.id
    assert facade.get(task.id).status == "canceled"


@pytest.mark.parametrize("method", ["schedule", "get", "list", "cancel"])
def test_protocol_matches_the_task_manager(method):
    def shape(func):
        return [
            (p.name, p.kind, p.default, p.annotation)
            for p in inspect.signature(func).parameters.values()
        ]

    expected = shape(getattr(TaskManager, method))
    assert shape(getattr(PluginTasks, method)) == expected
    assert inspect.signature(getattr(PluginTasks, method)).return_annotation == (
        inspect.signature(getattr(TaskManager, method)).return_annotation
    )


def test_workers_register_before_start_only(manager):
    manager.register_worker("early", noop, conflict_keys=lambda task: [])
    manager.start()
    with pytest.raises(RuntimeError, match="'late' registered after the task manager started"):
        manager.register_worker("late", noop, conflict_keys=lambda task: [])
    assert manager.worker_names == ["early"]


def test_plugin_context_is_narrow_and_closes_at_start(agent):
    ctx = AgentPluginContext(agent, "demo")
    assert isinstance(ctx.tasks, TaskFacade)
    assert not hasattr(ctx, "agent")
    ctx.add_worker("demo.early", noop, conflict_keys=lambda task: [])
    ctx.add_route("GET", "/demo/early", lambda request: {})
    agent.tasks.start()
    with pytest.raises(RuntimeError, match="plugin demo: task worker demo.late after the agent"):
        ctx.add_worker("demo.late", noop, conflict_keys=lambda task: [])
    with pytest.raises(RuntimeError, match="plugin demo: route GET /demo/late after the agent"):
        ctx.add_route("GET", "/demo/late", lambda request: {})
    assert agent.tasks.worker_names == ["demo.early"]
    assert [r.path for r in agent.web.routes if r.path.startswith("/demo")] == ["/demo/early"]
