"""The real temboard web UI 7.11 drives this agent's maintenance pages end to end.

Runs ``dev/ui_e2e.py`` (see ``dev/ui-e2e.md``): it installs temboard 7.11 from PyPI
in its own virtualenv the first time, starts PostgreSQL, the agent and the UI, and
checks every maintenance call the UI's pages make.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="temboard 7.11 needs Python 3.11")
def test_temboard_ui_maintenance_pages():
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev" / "ui_e2e.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, tail
    assert "0 failed" in result.stdout.splitlines()[-1], tail
