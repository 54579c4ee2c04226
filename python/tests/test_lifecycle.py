"""Scope, ls and gc: the segment lifecycle."""

import os
import signal

import pytest

import shmpar
from conftest import run_python


def test_scope_removes_its_arrays_on_exit():
    with shmpar.Scope() as scope:
        a = scope.create((10, 2), "float32")
        b = scope.create(5, "int32")
        names = [a.name, b.name]
        assert len(scope) == 2
        assert all(os.path.exists("/dev/shm/" + n) for n in names)
        view = a.array
    assert not any(os.path.exists("/dev/shm/" + n) for n in names)
    view[:] = 1  # views stay valid
    assert view.sum() == 20


def test_scope_removes_its_arrays_when_the_block_raises():
    with pytest.raises(ZeroDivisionError):
        with shmpar.Scope() as scope:
            a = scope.create(100)
            name = a.name
            1 / 0
    assert not os.path.exists("/dev/shm/" + name)


def test_scope_adopts_and_closes_idempotently():
    scope = shmpar.Scope()
    a = shmpar.SharedArray.create(4)
    scope.adopt(a)
    scope.close()
    assert not os.path.exists("/dev/shm/" + a.name)
    scope.close()


def test_ls_describes_arrays_and_gc_removes_a_killed_creators_orphan():
    out = run_python(
        "import os, signal, shmpar\n"
        "a = shmpar.SharedArray.create((3, 4), 'int16')\n"
        "print(a.name, os.getpid(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n",
        check=False,
    )
    assert out.returncode == -signal.SIGKILL
    name, pid = out.stdout.split()
    mine = shmpar.SharedArray.create(7, "uint8")
    listed = {s["name"]: s for s in shmpar.ls()}
    orphan = listed[name]
    assert orphan["alive"] is False and orphan["creator_pid"] == int(pid)
    assert orphan["dtype"] == "int16" and orphan["shape"] == (3, 4) and orphan["state"] == "ready"
    ours = listed[mine.name]
    assert ours["alive"] is True and ours["creator_pid"] == os.getpid() and ours["shape"] == (7,)
    assert name in [s["name"] for s in shmpar.gc(dry_run=True)]
    assert os.path.exists("/dev/shm/" + name)
    removed = [s["name"] for s in shmpar.gc()]
    assert name in removed and mine.name not in removed
    assert not os.path.exists("/dev/shm/" + name)
    assert os.path.exists("/dev/shm/" + mine.name)


def test_a_process_that_exits_with_arrays_still_referenced_removes_them():
    out = run_python(
        "import shmpar\n"
        "keep = [shmpar.SharedArray.create(10) for _ in range(3)]\n"
        "cycle = {}; cycle['self'] = cycle; cycle['a'] = shmpar.SharedArray.create(3)\n"
        "print(' '.join([a.name for a in keep] + [cycle['a'].name]))\n"
    )
    for name in out.stdout.split():
        assert not os.path.exists("/dev/shm/" + name)


def test_sigterm_removes_the_creators_arrays():
    out = run_python(
        "import os, signal, shmpar\n"
        "a = shmpar.SharedArray.create(10)\n"
        "print(a.name, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n",
        check=False,
    )
    assert out.returncode == -signal.SIGTERM
    assert not os.path.exists("/dev/shm/" + out.stdout.strip())


def test_a_forked_child_does_not_remove_its_parents_arrays():
    import atexit

    a = shmpar.SharedArray.create(10)
    pid = os.fork()
    if pid == 0:
        try:
            a.array[0] = 5
            atexit._run_exitfuncs()  # what the child's exit would run
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert os.path.exists("/dev/shm/" + a.name)
    assert a.array[0] == 5
