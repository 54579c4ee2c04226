"""SharedArray: create, attach across processes, the seed article's child
code on a shmpar array, views that outlive their array, errors."""

import gc
import subprocess
import os
import sys
from multiprocessing import shared_memory

import numpy as np
import pytest

import shmpar
from conftest import run_python


def test_create_has_dtype_shape_and_a_zero_copy_writable_view():
    a = shmpar.SharedArray.create((1000, 3), np.float32)
    assert a.shape == (1000, 3)
    assert a.dtype == np.float32
    assert a.ndim == 2 and a.size == 3000 and a.nbytes == 12000 and len(a) == 1000
    v = a.array
    assert isinstance(v, np.ndarray) and v.flags.writeable and v.base is a
    assert v.shape == (1000, 3) and v.dtype == np.float32 and not v.any()
    v[10, 2] = 7.5
    assert a.array[10, 2] == 7.5  # another view, the same memory
    assert np.asarray(a)[10, 2] == 7.5
    assert os.path.exists("/dev/shm/" + a.name)
    name = a.name
    del a, v
    gc.collect()
    assert not os.path.exists("/dev/shm/" + name)  # the creator's object owned it


@pytest.mark.parametrize(
    "dtype", ["float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
)
def test_every_element_type_round_trips(dtype):
    a = shmpar.SharedArray.create(5, dtype)
    assert a.dtype == np.dtype(dtype)
    a.array[:] = np.arange(5).astype(dtype)
    assert a.array.tolist() == list(range(5))


def test_another_process_attaches_by_name_and_writes_in_place():
    a = shmpar.SharedArray.create((4, 5), "int64")
    a.array[:] = np.arange(20).reshape(4, 5)
    out = run_python(
        "import sys, shmpar\n"
        "b = shmpar.SharedArray.attach(sys.argv[1])\n"
        "print(b.shape, b.dtype, int(b.array.sum()))\n"
        "b.array[3, :] = -1\n",
        a.name,
    )
    assert out.stdout.split() == ["(4,", "5)", "int64", "190"]
    assert a.array[3].tolist() == [-1] * 5 and a.array[2, 4] == 14
    # The child's attach did not remove the segment when it exited.
    assert os.path.exists("/dev/shm/" + a.name)


# The seed article's child code, verbatim, with the shape and name of a
# shmpar array, run as a program of its own that never imports shmpar. The
# one line after it takes the segment off the resource tracker's list:
# in a process that never imported shmpar, the tracker would unlink the
# segment when the process exits (CPython gh-82300; `track=False` from
# 3.13). Children of a program that imports shmpar need no such line (the
# next test).
SEED_CHILD = """
import sys
from multiprocessing import shared_memory
import numpy as np

shm = shared_memory.SharedMemory(name=sys.argv[1])
shared_array = np.ndarray((1_000_000,), dtype=np.float64, buffer=shm.buf)

# Read/write directly — no copy, no deserialization
result = shared_array.mean()

from multiprocessing import resource_tracker; resource_tracker.unregister(shm._name, "shared_memory")
print(repr(float(result)), repr(float(shared_array[123_456])))
"""


def test_the_seed_articles_child_code_reads_a_shmpar_array_exactly():
    a = shmpar.SharedArray.create(1_000_000, np.float64)
    data = np.random.default_rng(0).standard_normal(1_000_000)
    a.array[:] = data
    out = run_python(SEED_CHILD, a.name)
    mean, element = map(float, out.stdout.split())
    assert mean == float(data.mean())
    assert element == data[123_456]
    assert "leaked" not in out.stderr
    assert os.path.exists("/dev/shm/" + a.name)


# The seed article's program with its array made by shmpar: its worker is
# the article's, verbatim (no resource-tracker line), started by
# multiprocessing with fork and with spawn.
SEED_PROGRAM = """
import os, sys
from multiprocessing import shared_memory
import multiprocessing as mp
import numpy as np
import shmpar


def worker(shm_name, shape, dtype, start, end):
    shm = shared_memory.SharedMemory(name=shm_name)
    arr = np.ndarray(shape, dtype=dtype, buffer=shm.buf)

    # Process a slice in-place
    arr[start:end] = np.sqrt(np.abs(arr[start:end]))

    shm.close()


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    with shmpar.Scope() as scope:
        a = scope.create(100_000, "float64")
        data = np.random.default_rng(1).standard_normal(100_000)
        a.array[:] = data
        processes = [
            ctx.Process(target=worker, args=(a.name, a.shape, a.dtype, i * 50_000, (i + 1) * 50_000))
            for i in range(2)
        ]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        print([p.exitcode for p in processes], np.array_equal(a.array, np.sqrt(np.abs(data))),
              os.path.exists("/dev/shm/" + a.name))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_seed_articles_worker_processes_a_shmpar_array_in_place(tmp_path, method):
    program = tmp_path / "seed_program.py"
    program.write_text(SEED_PROGRAM)
    out = subprocess.run(
        [sys.executable, str(program), method], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    # Both workers ran, the array holds their results, the resource tracker
    # neither removed the array nor warned of leaks when the program ended.
    assert out.stdout.split("\n")[0] == "[0, 0] True True"
    assert "leaked" not in out.stderr and "No such file" not in out.stderr, out.stderr


def test_a_view_outlives_its_array_and_its_name():
    v = shmpar.SharedArray.create((100, 10), "float64").array
    gc.collect()
    v[:] = 3.0  # the object is only reachable through the view's base: no crash
    assert v.sum() == 3000.0
    name = v.base.name
    v.base.unlink()
    assert not os.path.exists("/dev/shm/" + name)
    v *= 2  # the mapping outlives the name
    assert v.sum() == 6000.0
    w = v[10:20]  # a view of a view
    del v
    gc.collect()
    assert w.sum() == 600.0


def test_an_attached_view_outlives_its_object():
    a = shmpar.SharedArray.create(10, "uint8")
    out = run_python(
        "import gc, sys, shmpar\n"
        "v = shmpar.SharedArray.attach(sys.argv[1]).array\n"
        "gc.collect()\n"
        "v[:] = 9\n"
        "print(int(v.sum()))\n",
        a.name,
    )
    assert out.stdout.strip() == "90"
    assert a.array.sum() == 90


def test_attach_errors_raise_shmpar_error_with_the_rust_message():
    with pytest.raises(shmpar.Error, match="does not exist"):
        shmpar.SharedArray.attach("shmpar_no_such_segment_here")
    with pytest.raises(shmpar.Error, match="invalid segment name"):
        shmpar.SharedArray.attach("a/b")
    shm = shared_memory.SharedMemory(create=True, size=8192)
    shm.buf[:] = b"x" * 8192  # all zeros would read as a segment still being initialized
    try:
        with pytest.raises(shmpar.Error, match="not a shmpar segment"):
            shmpar.SharedArray.attach(shm.name)
    finally:
        shm.close()
        shm.unlink()
    a = shmpar.SharedArray.create(3)
    with pytest.raises(shmpar.Error, match="already open in this process"):
        shmpar.SharedArray.attach(a.name)
    assert issubclass(shmpar.WorkerFailed, shmpar.Error)


def test_bad_arguments_to_create():
    with pytest.raises(shmpar.Error, match="little-endian float32"):
        shmpar.SharedArray.create(3, np.complex128)
    with pytest.raises(shmpar.Error, match="little-endian"):
        shmpar.SharedArray.create(3, ">f8")
    with pytest.raises(shmpar.Error, match="must not be negative"):
        shmpar.SharedArray.create((3, -1))
    with pytest.raises(TypeError):
        shmpar.SharedArray.create("abc")


def test_unlink_twice_says_the_name_is_gone():
    a = shmpar.SharedArray.create(3)
    a.unlink()
    with pytest.raises(shmpar.Error, match="does not exist"):
        a.unlink()


def test_a_full_dev_shm_raises_a_python_exception():
    """In a private mount namespace with a 1 MiB /dev/shm, an 8 MiB array
    is refused with a message, never a SIGBUS."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) on this machine")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.decode().strip()}")
    code = (
        "import shmpar\n"
        "try:\n"
        "    shmpar.SharedArray.create(1 << 20, 'float64')\n"
        "except shmpar.Error as e:\n"
        "    print(type(e).__name__, e)\n"
        "import os; print('left', [n for n in os.listdir('/dev/shm')])\n"
    )
    out = subprocess.run(
        [
            "unshare", "-m", "sh", "-c",
            'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" -c "$1"',
            sys.executable, code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Error not enough space for segment" in out.stdout, out.stdout
    assert "needs 8.0 MiB" in out.stdout and "/dev/shm has" in out.stdout
    assert "left []" in out.stdout


def test_attach_checks_an_expected_dtype_and_shape():
    with shmpar.Scope() as scope:
        a = scope.create((4, 3), "float32")
        code = (
            "import shmpar, sys\n"
            "n = sys.argv[1]\n"
            "print(shmpar.SharedArray.attach(n, dtype='float32', shape=(4, 3)).shape)\n"
            "for kw in (dict(dtype='float64'), dict(shape=12)):\n"
            "    try:\n"
            "        shmpar.SharedArray.attach(n, **kw)\n"
            "    except shmpar.Error as e:\n"
            "        print('refused:', e)\n"
        )
        out = run_python(code, a.name).stdout.splitlines()
        assert out[0] == "(4, 3)"
        assert out[1].startswith("refused:") and "float32" in out[1] and "float64" in out[1]
        assert out[2].startswith("refused:") and "[4, 3]" in out[2]


@pytest.mark.parametrize("shape", ["3", 1.5, [2, 1.5], b"x", None])
def test_a_shape_that_is_not_ints_is_a_type_error_that_says_so(shape):
    with pytest.raises(TypeError, match="a shape is an int or a sequence of ints"):
        shmpar.SharedArray.create(shape)


def test_an_axis_too_large_for_any_machine_is_refused():
    with pytest.raises(shmpar.Error, match="far too large"):
        shmpar.SharedArray.create(10**30)


def test_a_scope_left_in_a_forked_child_removes_nothing_of_the_parents():
    with shmpar.Scope() as scope:
        a = scope.create(10)
        child = os.fork()
        if child == 0:
            scope.close()  # what leaving the `with` block in the child does
            os._exit(0)
        os.waitpid(child, 0)
        assert os.path.exists("/dev/shm/" + a.name)
    assert not os.path.exists("/dev/shm/" + a.name)
