"""The OpenAPI document matches the routes the agent really registers."""

from __future__ import annotations

import pytest

from devsupport.agentproc import AgentProcess

from .helpers import built_agent


@pytest.mark.parametrize("plugins", ['["maintenance"]', "[]"])
def test_every_route_documented_and_no_phantom(tmp_path, plugins):
    with built_agent(tmp_path, plugins) as agent:
        registered = {(route.method.lower(), route.path) for route in agent.web.routes}
        doc = agent.openapi_document
    documented = {(method, path) for path, methods in doc["paths"].items() for method in methods}
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


def test_no_plugin_documents_only_the_core(pg, tmp_path):
    tmp_path.chmod(0o755)
    proc = AgentProcess(tmp_path / "agent", pg, plugins="[]")
    try:
        proc.start()
        doc = proc.anon.get(proc.url + "/openapi.json").json()
        assert set(doc["paths"]) == {"/login", "/logout", "/profile", "/discover", "/openapi.json"}
        assert set(doc["components"]["schemas"]) == {
            "Error", "Credentials", "Session", "Logout", "Profile", "Discover"
        }  # fmt: skip
        assert "maintenance" not in doc["info"]["description"]
        proc.login()
        assert proc.get("/maintenance").status_code == 404
    finally:
        proc.stop()
