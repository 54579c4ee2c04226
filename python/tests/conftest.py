"""Shared fixtures: every test must leave /dev/shm as it found it.

scripts/test-python.sh runs the suite in a private mount namespace with a
/dev/shm of its own, so the check below sees only what these tests made; run
directly on a machine where other programs create shmpar segments at the
same time, it could blame a test for theirs.
"""

import os
import subprocess
import sys

import pytest


def shm_names():
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("shmpar")}
    except FileNotFoundError:
        return set()


@pytest.fixture(autouse=True, scope="session")
def session_leaves_dev_shm_clean():
    """Module-scoped pools end after the last test's own check: this one
    runs after them."""
    before = shm_names()
    yield
    left = shm_names() - before
    assert not left, f"the tests left segments in /dev/shm: {sorted(left)}"


@pytest.fixture(autouse=True)
def leaves_dev_shm_clean():
    before = shm_names()
    yield
    import gc

    gc.collect()
    left = shm_names() - before
    assert not left, f"the test left segments in /dev/shm: {sorted(left)}"


def run_python(code, *args, check=True, timeout=60):
    """Runs `code` in a fresh interpreter of this venv; returns stdout."""
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"child failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out
