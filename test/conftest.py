"""Suite-wide settings: a private temporary directory per run, no silent skip in CI,
and a run leaves the work tree clean (no new untracked file)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

#: tests that may skip in CI (their behaviour is covered by another test that always runs)
MAY_SKIP = "may_skip"
ROOT = Path(__file__).resolve().parents[1]


def _untracked() -> set[str] | None:
    """Untracked, not ignored paths of the work tree (None outside a git work tree)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return {line[3:] for line in result.stdout.splitlines() if line.startswith("?? ")}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MAY_SKIP}: a skip of this test is not a failure in CI (CI=true)"
    )
    if config.option.basetemp is None:
        # pytest's default, /tmp/pytest-of-<user>/pytest-<n>, keeps the last 3 runs
        # of a user: concurrent runs (CI jobs, several work trees) delete each
        # other's PostgreSQL clusters. A directory of our own per run instead.
        config.option.basetemp = tempfile.mkdtemp(prefix="tbagent-pytest-")
        config._tbagent_basetemp = Path(config.option.basetemp)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._tbagent_untracked = _untracked()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = getattr(session.config, "_tbagent_untracked", None)
    after = _untracked()
    if before is not None and after is not None and after - before:
        new = ", ".join(sorted(after - before)[:10])
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(f"the test run left untracked files in the work tree: {new}", red=True)
        session.exitstatus = exitstatus = pytest.ExitCode.TESTS_FAILED
    basetemp = getattr(session.config, "_tbagent_basetemp", None)
    if basetemp is not None and exitstatus == 0:
        shutil.rmtree(basetemp, ignore_errors=True)  # kept after a failure, to look into


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI, a skipped test fails: a missing tool (browser, schemathesis, Python
    version) must be installed there, not hidden behind an 's' in the summary."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and _in_ci()) or hasattr(report, "wasxfail"):
        return
    if item.get_closest_marker(MAY_SKIP) is not None:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped in CI (CI={os.environ['CI']}), which must run it: {reason}"
