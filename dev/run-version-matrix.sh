#!/usr/bin/env bash
# Run the maintenance functional tests (read side, advice, operations with
# cancel and scheduling, progress, version differences, hardened SQL against
# planted objects) on other PostgreSQL versions, two at a time, then print one
# line per version with its pass count.
#
#   dev/run-version-matrix.sh                  # every supported major but the default one
#   dev/run-version-matrix.sh 12 17            # chosen majors
#   dev/run-version-matrix.sh --report-dir D   # also report the JUnit files already in D
#
# Binaries come from dev/pg-binaries.sh (cached). MATRIX_JOBS (default 2) versions run at
# once. Exits non-zero when any version has a failure or no result.
set -euo pipefail
cd "$(dirname "$0")/.."

SUPPORTED=(12 13 14 15 16 17 18)
# The maintenance tests, without the agent life-cycle ones (kill -9, stop while
# running) that do not depend on the PostgreSQL version and take the most time.
SELECTION=(
    test/func/test_versions.py
    test/func/test_maintenance_read.py
    test/func/test_maintenance_ops.py
    test/func/test_progress.py
    test/func/test_bloat.py
    test/func/test_advice.py
    test/func/test_hostile_objects.py
)
DESELECT="not kill9 and not stop_while_running"

report=""
if [ "${1:-}" = "--report-dir" ]; then
    report=$2
    shift 2
fi
if [ -z "$report" ]; then
    report=$(mktemp -d)
    trap 'rm -rf "$report"' EXIT
fi
mkdir -p "$report"

# Full version of the binaries in a bindir: "13.23".
full_version() {
    "$1/postgres" --version | sed -E 's/^[^)]*\) ([0-9.]+).*/\1/'
}

if [ $# -gt 0 ]; then
    majors=("$@")
else
    default=$(.venv/bin/python -c 'from temboardagent.embedded import find_bindir; print(find_bindir())')
    default_major=$(full_version "$default" | cut -d. -f1)
    majors=()
    for major in "${SUPPORTED[@]}"; do
        [ "$major" = "$default_major" ] || majors+=("$major")
    done
fi

# Fetch first (sequentially: one download at a time).
declare -A bindirs
for major in "${majors[@]}"; do
    bindirs[$major]=$(bash dev/pg-binaries.sh "$major")
done

run_one() {
    local major=$1 bindir=$2 rc=0
    full_version "$bindir" >"$report/pg$major.version"
    TEMBOARD_TEST_PG=$bindir timeout 600 .venv/bin/pytest --timeout=300 -q -p no:cacheprovider \
        --junitxml="$report/pg$major.xml" -k "$DESELECT" "${SELECTION[@]}" \
        >"$report/pg$major.log" 2>&1 || rc=$?
    echo "$rc" >"$report/pg$major.rc"
}

status=0
for major in "${majors[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "${MATRIX_JOBS:-2}" ]; do
        sleep 1
    done
    echo "PostgreSQL $major: running the maintenance tests ..." >&2
    run_one "$major" "${bindirs[$major]}" &
done
wait
for major in "${majors[@]}"; do
    if [ "$(cat "$report/pg$major.rc" 2>/dev/null)" != 0 ]; then
        status=1
        echo "--- PostgreSQL $major: failures (log: $report/pg$major.log) ---" >&2
        grep -E '^(FAILED|ERROR) |^E  ' "$report/pg$major.log" | head -40 >&2 || true
        tail -3 "$report/pg$major.log" >&2 || true
    fi
done

.venv/bin/python dev/version_report.py "$report" || status=1
exit $status
