#!/usr/bin/env bash
# Creates .venv with NumPy for the interop tests (a Python process attaching
# to shmpar arrays by name). Idempotent; prints the interpreter's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
    echo "setup-python: no $py on PATH; installing python3 with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >&2
fi
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv" >&2 || {
        echo "setup-python: python3 -m venv failed; installing python3-venv" >&2
        apt-get update -qq && apt-get install -y -qq python3-venv >&2
        "$py" -m venv "$venv" >&2
    }
fi
if ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'numpy>=1.24' >&2
fi
echo "$venv/bin/python"
