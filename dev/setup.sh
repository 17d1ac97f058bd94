#!/usr/bin/env bash
# Install what the agent and its tests need on a fresh Debian machine:
# PostgreSQL 15 server binaries, openssl, and a virtualenv in .venv with the project;
# for the end-to-end tests (test/e2e): Chromium and its driver, and the temboard UI 7.11
# in its own virtualenv (cached outside the work tree, see devsupport/ui_harness.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

have_pg() {
    local bindir
    bindir=$(pg_config --bindir 2>/dev/null) && [ -x "$bindir/initdb" ] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
have_pg || missing+=(postgresql-15 libpq-dev)
# psycopg2 is built from source against the system's libpq: pg_config, a C compiler
# and the Python headers
command -v pg_config >/dev/null || missing+=(libpq-dev)
command -v gcc >/dev/null || missing+=(gcc)
python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || missing+=(python3-dev)
command -v openssl >/dev/null || missing+=(openssl)
command -v runuser >/dev/null || missing+=(util-linux)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "Missing system packages: ${missing[*]} (install them as root)" >&2
        exit 1
    fi
    echo "Installing ${missing[*]} ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/pip install -q -e '.[test]'
    touch "$stamp"
fi

# The temboard UI 7.11 for test/e2e (needs Python 3.11 and PyPI the first time); a
# failure only stops the set-up in CI, where the e2e tests must run.
.venv/bin/python - <<'PY'
import os
import sys

from devsupport.ui_harness import MissingPrerequisite, ensure_ui_venv, ui_venv_dir

try:
    ensure_ui_venv(ui_venv_dir())
except MissingPrerequisite as exc:
    print(f"temboard UI for the e2e tests: {exc}", file=sys.stderr)
    sys.exit(1 if os.environ.get("CI", "").lower() in ("1", "true", "yes") else 0)
PY
