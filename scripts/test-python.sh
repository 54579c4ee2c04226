#!/usr/bin/env bash
# The Python package's tests: builds `shmpar` from python/ into .venv (as
# `pip install ./python` does on any machine: maturin comes from PyPI as the
# build backend, pyo3 and numpy from crates.io) and runs python/tests/ with
# pytest, in a private /dev/shm so the suite's "nothing left behind" checks
# see only its own segments. Called by scripts/test.sh; runs on its own too.
set -euo pipefail
cd "$(dirname "$0")/.."

py="$(scripts/setup-python.sh)"   # .venv with NumPy
"$py" -m pip install --quiet --disable-pip-version-check 'pytest>=7'
echo "test-python: building and installing ./python"
"$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python

# A /dev/shm of our own (a private mount namespace), unless the caller made
# one already (scripts/test.sh does) or namespaces are not allowed here.
if [ -z "${SHMPAR_TEST_PRIVATE_SHM:-}" ] && unshare -m true 2>/dev/null; then
    size="$(df -B1 --output=size /dev/shm | tail -1 | tr -d ' ')"
    exec env SHMPAR_TEST_PRIVATE_SHM=1 unshare -m sh -c \
        "mount -t tmpfs -o size=$size,mode=1777 tmpfs /dev/shm && exec \"\$0\" -m pytest -q python/tests" "$py"
fi
exec "$py" -m pytest -q python/tests
