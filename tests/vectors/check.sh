#!/usr/bin/env bash
# check.sh -- runs check_vectors.py with a Python that has the `cryptography`
# package: the system's if it has it, else a venv under .cache/vectors-venv
# (ignored by git) made once and reused; pip installs from PyPI only there.
# Exit 2 (and a NOTE line) when no such Python can be had (offline).
# --probe: only make sure of that Python (0 or 2), check nothing.
set -u
cd "$(dirname "$0")/../.."
VENV=.cache/vectors-venv
if python3 -c 'import cryptography' 2>/dev/null; then
    PY=python3
elif "$VENV/bin/python" -c 'import cryptography' 2>/dev/null; then
    PY="$VENV/bin/python"
else
    mkdir -p .cache
    if python3 -m venv "$VENV" >/dev/null 2>&1 &&
       "$VENV/bin/pip" install --quiet 'cryptography>=42' >/dev/null 2>&1 &&
       "$VENV/bin/python" -c 'import cryptography' 2>/dev/null; then
        PY="$VENV/bin/python"
    else
        echo "NOTE test vectors not re-derived: no Python with the cryptography package (pip install failed)"
        exit 2
    fi
fi
[ "${1:-}" = --probe ] && exit 0
exec "$PY" tests/vectors/check_vectors.py
