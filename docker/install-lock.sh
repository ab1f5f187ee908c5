#!/usr/bin/env bash
# Install a hashed lock into a venv exactly as locked, whatever pip the venv's Python bundled and whatever
# newer releases the package index serves (docs/install.md says why):
#
#   docker/install-lock.sh PYTHON LOCK [pip options...]
#
# The lock is fully resolved (uv pip compile --universal --generate-hashes): every package it needs, and
# every package reached through an extra, is a line of it. So pip installs its lines with --no-deps and never
# resolves anything itself; pip 22-23's resolver would otherwise pick the newest release for a dependency
# reached through an extra (weasyprint -> fonttools[woff]) and then refuse it as unpinned. `pip check`
# afterwards proves the installed set is consistent: a lock that misses a dependency fails here, by name.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 PYTHON LOCK [pip options...]" >&2; exit 2; }
python=$1 lock=$2; shift 2
[ -f "$lock" ] || { echo "install-lock.sh: no lock file at $lock" >&2; exit 2; }
"$python" -m pip install --disable-pip-version-check --no-input --quiet \
    --no-deps --require-hashes -r "$lock" "$@"
"$python" -m pip check --disable-pip-version-check >/dev/null || {
    "$python" -m pip check --disable-pip-version-check >&2 || true
    echo "install-lock.sh: $lock is not complete for this Python (pip check above): recompile it with uv pip compile" >&2
    exit 1
}
