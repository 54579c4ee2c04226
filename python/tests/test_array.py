"""SharedArray: create, attach across processes, the seed article's child
code on a shmpar array, views that outlive their array, errors."""

import gc
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
# shmpar array; the one line after it takes the segment off the resource
# tracker's list, which would otherwise unlink it when the child exits
# (CPython gh-82300; what shmpar's own attach never needs).
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


def seed_worker(shm_name, shape, dtype, start, end):
    # The seed article's worker, verbatim (plus the tracker line, as above).
    shm = shared_memory.SharedMemory(name=shm_name)
    arr = np.ndarray(shape, dtype=dtype, buffer=shm.buf)

    # Process a slice in-place
    arr[start:end] = np.sqrt(np.abs(arr[start:end]))

    from multiprocessing import resource_tracker

    resource_tracker.unregister(shm._name, "shared_memory")
    del arr
    shm.close()


def test_the_seed_articles_worker_processes_a_shmpar_array_in_place():
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    a = shmpar.SharedArray.create(100_000, np.float64)
    data = np.random.default_rng(1).standard_normal(100_000)
    a.array[:] = data
    processes = [
        ctx.Process(target=seed_worker, args=(a.name, a.shape, a.dtype, i * 50_000, (i + 1) * 50_000))
        for i in range(2)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    assert [p.exitcode for p in processes] == [0, 0]
    assert np.array_equal(a.array, np.sqrt(np.abs(data)))


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
