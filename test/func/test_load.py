"""200 concurrent clients for 30 s against a private agent: only 200 and the
documented 409 (duplicate operation), and a flat memory footprint.

Throughput and latency are figures of ``bench/bench_load.py`` (side by side with
a bare server), not assertions. About 45 s.
"""

from __future__ import annotations

import shutil

import pytest

from bench.bench_load import prepare, run_load
from bench.common import rss_kib
from devsupport.agentproc import AgentProcess
from temboardagent.embedded import throwaway_cluster

from .helpers import HANG

CLIENTS = 200
SECONDS = 30
#: RSS growth allowed over the run, after a warm-up at the same concurrency
MAX_GROWTH_KIB = 16 * 1024


@pytest.fixture
def loaded_agent(tmp_path):
    tmp_path.chmod(0o755)
    with throwaway_cluster(tmp_path / "pg") as pg:
        agent = AgentProcess(tmp_path / "agent", pg, log_level="INFO")
        # 200 clients for 16 threads: on a loaded machine a new client may wait longer
        # than the default socket_timeout (10 s) for its TLS handshake and be cut off
        # like a trickling one (test_security tests that cut-off). Here it only
        # catches a hang.
        dropin = agent.conf.with_name(agent.conf.name + ".d")
        dropin.mkdir(parents=True)
        (dropin / "timeout.conf").write_text(f"[temboard]\nsocket_timeout = {int(HANG)}\n")
        try:
            prepare(pg)
            agent.start()
            agent.login()
            yield agent
        finally:
            agent.stop()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_200_clients_30_seconds(loaded_agent):
    agent = loaded_agent
    pid = agent.proc.pid
    idle = rss_kib(pid)
    warm = run_load(agent.port, agent.session_id, CLIENTS, 5)
    before = rss_kib(pid)
    run = run_load(agent.port, agent.session_id, CLIENTS, SECONDS)
    after = rss_kib(pid)
    print(
        f"\n{CLIENTS} clients, {SECONDS}s: {run['requests']} requests, {run['rps']:.0f} req/s, "
        f"p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms, max {run['max_ms']:.0f} ms, "
        f"statuses {run['statuses']}, {run['reconnects']} resent on a new connection "
        f"(stale keep-alive); RSS idle {idle / 1024:.1f} MiB, "
        f"before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB"
    )
    for result in (warm, run):
        assert result["error_count"] == 0, result["errors"]
        assert set(result["statuses"]) <= {200, 409}
    assert run["statuses"].get(200, 0) > run["requests"] / 2  # served, not only refused
    assert after - before < MAX_GROWTH_KIB, (before, after)
    assert agent.proc.poll() is None
    log = agent.logfile.read_text(errors="replace")
    assert "Traceback" not in log
