"""Shared helpers of the benchmark scripts: a throwaway cluster, an agent, load generators."""

from __future__ import annotations

import http.client
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from devsupport.agentproc import AgentProcess
from temboardagent.embedded import free_port, make_self_signed_cert, throwaway_cluster


@contextmanager
def cluster_and_agent(plugins: str = '["maintenance"]', extra_conf: str = "") -> Iterator:
    """A fresh cluster and a started, logged-in agent (logging at INFO)."""
    base = Path(tempfile.mkdtemp(prefix="tbagent-bench-"))
    base.chmod(0o755)
    try:
        with throwaway_cluster(base / "pg") as pg:
            agent = AgentProcess(
                base / "agent", pg, extra_conf=extra_conf, plugins=plugins, log_level="INFO"
            )
            try:
                agent.start()
                agent.login()
                yield pg, agent
            finally:
                agent.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def bare_server(threads: int = 16) -> Iterator[int]:
    """A started :mod:`bench.bare_server` process (the agent's HTTP stack alone); its port."""
    base = Path(tempfile.mkdtemp(prefix="tbagent-bare-"))
    cert, key = base / "bare.pem", base / "bare.key"
    make_self_signed_cert(cert, key)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_server", "--port", str(port),
         "--cert", str(cert), "--key", str(key), "--threads", str(threads)],
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("bare server did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wrk_rps(url: str, headers: dict, connections: int, seconds: int = 5) -> float | None:
    """Requests/s measured by wrk (keep-alive), or None when wrk is not installed."""
    if shutil.which("wrk") is None:
        return None
    cmd = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def python_rps(host: str, port: int, path: str, headers: dict, clients: int, seconds: float = 5):
    """Requests/s with http.client keep-alive connections in threads (fallback to wrk)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        conn = http.client.HTTPSConnection(host, port, context=ctx)
        while time.monotonic() < stop:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"status {resp.status}")
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def latencies(fn, n: int) -> tuple[float, float]:
    """Median and p95 (ms) of ``n`` calls of ``fn``."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]
