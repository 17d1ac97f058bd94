"""The OpenAPI document matches the routes the agent really registers."""

from __future__ import annotations

import re

from temboardagent import openapi

from .helpers import route_table


def _registered_routes(tmp_path) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", route.path))
        for route in route_table(tmp_path)
    }


def test_every_route_documented_and_no_phantom(tmp_path):
    registered = _registered_routes(tmp_path)
    documented = {(method, path) for method, path, _ in openapi.operations()}
    assert registered - documented == set(), "routes missing from openapi"
    assert documented - registered == set(), "documented routes that do not exist"


def test_served_document(agent):
    resp = agent.anon.get(agent.url + "/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"] == "3.1.0"
    assert "/maintenance/{dbname}/schema/{schema}/table/{table}" in doc["paths"]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            assert "200" in op["responses"], (method, path)
            if path not in ("/login", "/openapi.json"):
                assert op["security"], (method, path)
