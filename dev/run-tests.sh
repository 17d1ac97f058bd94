#!/usr/bin/env bash
# Set up (see dev/setup.sh), lint, then run the whole test suite on the default
# PostgreSQL (the distribution's, 15 on Debian 12) and the maintenance tests on
# every other supported version (12 to 18, dev/run-version-matrix.sh), and print
# one line per version with its pass count.
#
# Extra arguments go to pytest and only run on one version, e.g.
#   dev/run-tests.sh -k login -x
#   TEMBOARD_TEST_PG=13 dev/run-tests.sh          # the whole suite on PostgreSQL 13 only
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
.venv/bin/ruff check temboardagent test bench
if [[ ${TEMBOARD_TEST_PG:-} =~ ^[0-9]+$ ]]; then
    bash dev/pg-binaries.sh "$TEMBOARD_TEST_PG" >/dev/null
fi
if [ $# -gt 0 ] || [ -n "${TEMBOARD_TEST_PG:-}" ]; then
    exec .venv/bin/pytest --timeout=300 --durations=20 "$@"
fi

report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
status=0
.venv/bin/python -c 'from temboardagent.embedded import find_bindir; print(find_bindir())' |
    { read -r bindir; "$bindir/postgres" --version; } |
    sed -E 's/^[^)]*\) ([0-9.]+).*/\1/' >"$report/default.version"
.venv/bin/pytest --timeout=300 --durations=20 --junitxml="$report/default.xml" || status=$?
echo "$status" >"$report/default.rc"
bash dev/run-version-matrix.sh --report-dir "$report" || status=1
exit "$status"
