#!/usr/bin/env bash
# Set up (see dev/setup.sh), then run the agent.
# Without arguments: demo mode on a throwaway PostgreSQL cluster kept in ./demo,
# printing the URL and credentials. With arguments: passed to temboard-agent,
# e.g. dev/run-agent.sh -c /etc/temboard-agent/temboard-agent.conf
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
if [[ ${TEMBOARD_TEST_PG:-} =~ ^[0-9]+$ ]]; then  # the demo on another PostgreSQL version
    bash dev/pg-binaries.sh "$TEMBOARD_TEST_PG" >/dev/null
fi
if [ $# -eq 0 ]; then
    set -- --demo demo
fi
exec .venv/bin/temboard-agent "$@"
