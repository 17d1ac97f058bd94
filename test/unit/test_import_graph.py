"""The package's modules import each other without cycles (TYPE_CHECKING imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import temboardagent

PACKAGE = Path(temboardagent.__file__).parent


def module_name(path: Path) -> str:
    parts = ["temboardagent", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, wherever the import statement is."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                # ``from pkg import mod`` imports the module pkg.mod, else names of pkg
                sub = f"{origin}.{alias.name}"
                found.add(sub if sub in known else origin)
    return {module for module in found if module in known and module != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_resolves_relative_and_type_checking_imports():
    graph = import_graph()
    assert "temboardagent.tasks" in graph["temboardagent.plugins"]  # ConflictKey
    assert "temboardagent.config" in graph["temboardagent.plugins"]  # under TYPE_CHECKING
    assert "temboardagent.web.core_routes" in graph["temboardagent.agent"]
    assert "temboardagent.tasks.manager" in graph["temboardagent.tasks"]


def test_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None
