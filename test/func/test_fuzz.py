"""Schemathesis fuzzing of a live agent against its own /openapi.json.

A private cluster and agent: fuzzing schedules and cancels real operations
(VACUUM FULL, REINDEX...) and fails logins, which must not disturb the shared
``agent`` nor lock out its address. The cluster is tiny, so whatever runs is
quick. Two runs, each with a fixed seed and no example database:

- authenticated (``X-Session``), every check but the few listed below; path
  parameters are drawn half of the time from names that exist, and operation
  ids are followed through the document's links (stateful phase);
- unauthenticated (no coverage phase: refusals come before parameters are
  looked at): every reply must be a documented refusal; on top of
  schemathesis' checks, no protected operation may answer 2xx.

No cache (``[cache] enabled = false``): nothing is written outside tmp_path.

Checks left out, by design: ``ignored_auth`` (it wants 401/403 without
credentials, the spec answers 406 ``Parameter 'X-Session' is malformed.``;
test_security walks the route table instead) and ``use_after_free`` (a DELETE
cancels an operation, which stays readable in the history).
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devsupport.agentproc import AgentProcess
from devsupport.sql import run_sql
from temboardagent.embedded import throwaway_cluster

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = 1
# Sized for the suite's budget on a 2-core machine (each case costs the client,
# the agent and PostgreSQL some CPU): the coverage phase walks every parameter's
# boundaries anyway; the fuzzing phase adds this many random cases per operation.
AUTH_EXAMPLES = 30  # per operation and phase
ANON_EXAMPLES = 15
RUN_TIMEOUT = 300  # seconds, a whole schemathesis run

pytestmark = pytest.mark.skipif(
    not SCHEMATHESIS.exists(), reason="schemathesis is not installed (pip install -e '.[test]')"
)


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


@pytest.fixture(scope="module")
def fuzz_agent(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    base.chmod(0o755)
    agent = None
    with throwaway_cluster(base / "pg") as pg:
        try:
            run_sql(pg, "CREATE DATABASE fuzz")
            run_sql(
                pg,
                dbname="fuzz",
                query="CREATE TABLE public.t (id int PRIMARY KEY, v text);"
                "INSERT INTO public.t SELECT g, md5(g::text) FROM generate_series(1, 200) g;"
                "ANALYZE public.t",
            )
            agent = AgentProcess(base / "agent", pg, log_level="INFO")
            agent.start()
            agent.login()
            # Operations whose ids the fuzzer may use: pending far in the future,
            # and one finished.
            ids = []
            for kind in ("vacuum", "analyze", "reindex"):
                resp = agent.post(
                    f"/maintenance/fuzz/{kind}", json={"datetime": "2100-01-01T00:00:00Z"}
                )
                assert resp.status_code == 200, resp.text
                ids.append(resp.json()["id"])
            resp = agent.post("/maintenance/fuzz/schema/public/table/t/analyze", json={})
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["id"])
            agent.op_ids = ids
            yield agent
        finally:
            if agent is not None:
                agent.stop()
    shutil.rmtree(base, ignore_errors=True)


def _config(agent: AgentProcess, path: Path) -> Path:
    path.write_text(
        f"""
[dictionaries.dbname]
values = ["fuzz", "nope"]
[dictionaries.schema]
values = ["public", "pg_catalog", "nope"]
[dictionaries.table]
values = ["t", "pg_class", "nope"]
[dictionaries.index]
values = ["t_pkey", "pg_class_oid_index"]
[dictionaries.operation]
values = {_toml_list(agent.op_ids + ["00000000"])}

[parameters]
"path.dbname" = {{ dictionary = "dbname", probability = 0.5 }}
"path.schema" = {{ dictionary = "schema", probability = 0.5 }}
"path.table" = {{ dictionary = "table", probability = 0.5 }}
"path.index" = {{ dictionary = "index", probability = 0.5 }}
"path.operation" = {{ dictionary = "operation", probability = 0.5 }}

# No cache of crashes and replays: a run is reproducible (fixed seed) and writes
# nothing outside its temporary directory.
[cache]
enabled = false

[checks.ignored_auth]
enabled = false
[checks.use_after_free]
enabled = false
"""
    )
    return path


def _schemathesis(agent: AgentProcess, workdir: Path, name: str, *args: str) -> dict:
    """Run schemathesis; returns the exit code, its output and the interactions."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = _config(agent, workdir / "schemathesis.toml")
    reports = workdir / f"reports-{name}"
    cmd = [
        str(SCHEMATHESIS), "--config-file", str(config), "run", agent.url + "/openapi.json",
        "--tls-verify", str(agent.home / "server.pem"),
        "--seed", str(SEED),
        "--generation-database", "none",
        "--request-timeout", "10",
        "--no-color",
        "--report", "ndjson", "--report-dir", str(reports),
        *args,
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    (workdir / f"{name}.txt").write_text(output)
    match = re.search(r"(\d+) generated", output)
    generated = int(match.group(1)) if match else 0
    interactions = []
    for report in reports.glob("*.ndjson"):
        for line in report.read_text().splitlines():
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if not finished:
                continue
            label = finished["recorder"]["label"]
            for interaction in finished["recorder"].get("interactions", {}).values():
                response = interaction.get("response") or {}
                request = interaction["request"]
                path = urlsplit(request["uri"]).path
                interactions.append((label, request["method"], path, response.get("status_code")))
    print(
        f"\nschemathesis {name}: exit {result.returncode}, {generated} test cases generated, "
        f"{len(interactions)} requests recorded, {elapsed:.1f}s"
    )
    return {
        "code": result.returncode,
        "output": output,
        "generated": generated,
        "interactions": interactions,
    }


def _failure_text(output: str) -> str:
    start = output.find("FAILURES")
    return output[start - 40 :][:8000] if start >= 0 else output[-8000:]


def test_fuzz_authenticated(fuzz_agent, tmp_path):
    run = _schemathesis(
        fuzz_agent, tmp_path, "authenticated",
        "--max-examples", str(AUTH_EXAMPLES),
        "--header", f"X-Session: {fuzz_agent.session_id}",
        # /logout would end the session the whole run relies on.
        "--exclude-path", "/logout",
    )  # fmt: skip
    assert run["code"] == 0, _failure_text(run["output"])
    assert run["generated"] >= 1000
    # The session held: most operations reached their handler and succeeded.
    succeeded = {
        label for label, method, _, status in run["interactions"]
        if status is not None and 200 <= status < 300 and method != "OPTIONS"
    }  # fmt: skip
    assert len(succeeded) >= 25, sorted(succeeded)
    log = fuzz_agent.logfile.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 500 :][:3000]
    for secret in (fuzz_agent.session_id, fuzz_agent.password, fuzz_agent.key):
        assert secret not in log


def test_fuzz_unauthenticated(fuzz_agent, tmp_path):
    run = _schemathesis(
        fuzz_agent, tmp_path, "unauthenticated",
        "--max-examples", str(ANON_EXAMPLES),
        # Every protected route refuses before it looks at its parameters: the
        # boundary values of the coverage phase add nothing the others do not.
        "--phases", "examples,fuzzing,stateful",
        # Without credentials every protected route refuses, valid input or not.
        "--exclude-checks", "positive_data_acceptance",
    )  # fmt: skip
    assert run["code"] == 0, _failure_text(run["output"])
    assert run["generated"] >= 500
    statuses = collections.Counter()
    for label, method, path, status in run["interactions"]:
        assert status is not None, f"no reply: {label} {method} {path}"
        if path in ("/login", "/openapi.json") or method == "OPTIONS":
            continue
        statuses[status] += 1
        assert not 200 <= status < 300, f"{method} {path} answered {status} without credentials"
    print(f"statuses of protected routes without credentials: {dict(statuses)}")
    # 429: random keys from one address end up throttled (refused unchecked).
    refused = statuses[401] + statuses[406] + statuses[429]
    assert refused > 0.8 * sum(statuses.values())
