#!/usr/bin/env bash
# Set up (see dev/setup.sh), lint, then run the whole test suite.
# Extra arguments go to pytest, e.g. dev/run-tests.sh -k login -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
.venv/bin/ruff check temboardagent test bench
exec .venv/bin/pytest --timeout=300 --durations=20 "$@"
