"""The OpenAPI document: the core's part, the maintenance fragment, the merge."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from temboardagent import openapi
from temboardagent.plugins import PluginError
from temboardagent.plugins.maintenance import openapi as maintenance
from temboardagent.plugins.maintenance import paths
from temboardagent.plugins.maintenance.operation_routes import HISTORY_LIMIT, HISTORY_MAX_LIMIT
from temboardagent.plugins.maintenance.operations import KINDS
from temboardagent.plugins.maintenance.statements import parse_mode
from temboardagent.tasks import STATUSES
from temboardagent.web.app import bottle_path

CORE_PATHS = {"/login", "/logout", "/profile", "/discover", "/openapi.json"}


@pytest.fixture(scope="module")
def doc():
    return openapi.document({"maintenance": maintenance.fragment()})


def _operations(doc):
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield method, path, op


def _refs(value):
    if isinstance(value, dict):
        if "$ref" in value:
            yield value["$ref"]
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_document_is_json_and_every_reference_resolves(doc):
    assert json.loads(json.dumps(doc)) == doc  # no tuples nor other non-JSON values
    schemas = doc["components"]["schemas"]
    refs = set(_refs(doc))
    assert refs, "no $ref at all"
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


def test_operations_are_well_formed(doc):
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    for method, path, op in _operations(doc):
        assert method in ("get", "post", "delete")
        in_path = [p["name"] for p in op["parameters"] if p["in"] == "path"]
        assert in_path == re.findall(r"\{(\w+)\}", path), path
        assert "200" in op["responses"] and "500" in op["responses"], path
        if path not in ("/login", "/openapi.json"):
            assert op["security"], path
        tags = op["tags"]
        assert tags == (["core"] if path in CORE_PATHS else ["maintenance"]), path
        for link in op["responses"]["200"].get("links", {}).values():
            assert link["operationId"] in ids


def test_the_plugin_documents_its_own_constants(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["Operation"]["properties"]["status"]["enum"] == list(STATUSES)
    kinds = schemas["Activity"]["properties"]["operation"]["properties"]["kind"]["enum"]
    assert kinds == list(KINDS)
    for kind in KINDS:
        assert paths.operation(kind) in doc["paths"]
        history = doc["paths"][paths.history(kind)]["get"]
        limit = next(p for p in history["parameters"] if p["name"] == "limit")["schema"]
        assert (limit["default"], limit["maximum"]) == (HISTORY_LIMIT, HISTORY_MAX_LIMIT)
    modes = schemas["VacuumRequest"]["properties"]["mode"]["enum"]
    assert len(modes) == len(set(modes)) == 1 + 3 + 6 + 6 + 1  # "", permutations, null
    for mode in modes:
        parse_mode(mode)  # every documented mode is accepted


def test_operation_id_parameter_matches_the_routing_pattern(doc):
    for kind in KINDS:
        for op in doc["paths"][paths.operation(kind)].values():
            param = next(p for p in op["parameters"] if p["name"] == "operation")
            assert param["schema"]["pattern"] == "^" + paths.PATTERNS["operation"] + "$"


def test_no_plugin_no_plugin_path():
    doc = openapi.document({})
    assert set(doc["paths"]) == CORE_PATHS
    assert set(doc["components"]["schemas"]) == {
        "Error", "Credentials", "Session", "Logout", "Profile", "Discover"
    }  # fmt: skip
    assert "plugin" not in doc["info"]["description"]
    assert not any("maintenance" in op["tags"] for _, _, op in _operations(doc))


def test_description_names_the_loaded_plugins(doc):
    assert "agent with its maintenance plugin." in doc["info"]["description"]
    two = openapi.document({"a": {}, "b": {}})
    assert "agent with its a, b plugins." in two["info"]["description"]


def test_each_document_is_a_copy():
    fragment = maintenance.fragment()
    first = openapi.document({"maintenance": fragment})
    first["paths"]["/login"]["post"]["summary"] = "changed"
    first["components"]["securitySchemes"]["key"]["name"] = "changed"
    first["paths"][paths.BASE]["get"]["parameters"].clear()
    second = openapi.document({"maintenance": fragment})
    assert second["paths"]["/login"]["post"]["summary"] == "Open a session"
    assert second["components"]["securitySchemes"]["key"]["name"] == "key"
    assert second["paths"][paths.BASE]["get"]["parameters"]


def _fragment(path="/x", method="get", schema="X"):
    op = openapi.operation(method, path, "x", openapi.ref(schema), tag="x")
    return openapi.fragment([op], {schema: {"type": "object"}})


@pytest.mark.parametrize(
    "fragments, message",
    [
        ({"a": _fragment(), "b": _fragment(schema="Y")}, "Plugin b: GET /x is already documented"),
        ({"a": _fragment(), "b": _fragment(path="/y")}, "Plugin b: OpenAPI schema X is already"),
        ({"a": _fragment(path="/login", method="post")}, "Plugin a: POST /login is already"),
        ({"a": _fragment(schema="Error")}, "Plugin a: OpenAPI schema Error is already"),
        ({"a": {"info": {}}}, "Plugin a: OpenAPI fragment has more than paths and schemas"),
        ({"a": {"components": {"securitySchemes": {}}}}, "more than paths and schemas"),
    ],
)
def test_clash_fails_the_load(fragments, message):
    with pytest.raises(PluginError, match=re.escape(message)):
        openapi.document(fragments)


def test_same_method_and_path_twice_in_a_fragment():
    op = openapi.operation("GET", "/x", "x", {"type": "object"}, tag="x")
    with pytest.raises(ValueError, match="GET /x is documented twice"):
        openapi.fragment([op, op], {})


def test_core_does_not_load_the_plugin():
    code = (
        "import sys, temboardagent.openapi, temboardagent.web.core_routes\n"
        "print([m for m in sys.modules if m.startswith('temboardagent.plugins.')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "path, patterns, rule",
    [
        ("/maintenance", None, "/maintenance"),
        ("/maintenance/{dbname}/schema/{schema}", None, "/maintenance/<dbname>/schema/<schema>"),
        (
            "/maintenance/vacuum/{operation}",
            {"operation": "[0-9a-f]{8}", "unused": "x"},
            "/maintenance/vacuum/<operation:re:[0-9a-f]{8}>",
        ),
    ],
)
def test_bottle_path(path, patterns, rule):
    assert bottle_path(path, patterns) == rule


@pytest.mark.parametrize("path", ["/a/<b>", "/a/:b", "/a/{b}/{b}", "/a/{b", "/a/{b-c}"])
def test_bottle_path_refuses_other_forms(path):
    with pytest.raises(ValueError):
        bottle_path(path)
