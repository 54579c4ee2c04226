"""Attach NumPy to a shmpar array by name, as docs/segment-layout.md describes.

    from shmpar_numpy import attach
    with attach("shmpar_abc...") as arr:   # a numpy.ndarray over the shared data
        arr *= 2                           # the Rust side sees the change

Only the standard library and NumPy are needed. The segment is never
unlinked by Python: shmpar's creator owns its lifecycle.
"""

import contextlib
import struct
import sys
from multiprocessing import shared_memory

import numpy as np

MAGIC = b"SHMPAR\0\0"
LAYOUT_VERSION = 1
STATE_READY = 1
DTYPES = {1: "<f4", 2: "<f8", 3: "|i1", 4: "<i2", 5: "<i4", 6: "<i8",
          7: "|u1", 8: "<u2", 9: "<u4", 10: "<u8"}


def read_header(buf):
    """Returns (dtype, shape, data_offset) after checking the header."""
    if bytes(buf[0:8]) != MAGIC:
        raise ValueError("not a shmpar segment")
    version, state, code, elem_size, ndim, flags = struct.unpack_from("<6I", buf, 8)
    if version != LAYOUT_VERSION:
        raise ValueError(f"layout version {version}, this reader knows {LAYOUT_VERSION}")
    if state != STATE_READY:
        raise ValueError("segment is still initializing")
    if code not in DTYPES or not 0 <= ndim <= 8:
        raise ValueError("corrupt header")
    data_offset, data_len, total_len, _slots = struct.unpack_from("<4Q", buf, 32)
    shape = struct.unpack_from("<8Q", buf, 64)[:ndim]
    dtype = np.dtype(DTYPES[code])
    if dtype.itemsize != elem_size or data_len != int(np.prod(shape, dtype=np.uint64)) * elem_size:
        raise ValueError("corrupt header")
    if data_offset % 4096 or data_offset + data_len > len(buf):
        raise ValueError("truncated or corrupt segment")
    return dtype, tuple(int(s) for s in shape), data_offset


def _open(name):
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, create=False, track=False)
    shm = shared_memory.SharedMemory(name=name, create=False)
    # Before 3.13 attaching registers the segment with the resource tracker,
    # which unlinks it when this process exits (CPython gh-82300). shmpar's
    # creator owns the segment, so take it off the tracker's list.
    from multiprocessing import resource_tracker
    resource_tracker.unregister(shm._name, "shared_memory")
    return shm


@contextlib.contextmanager
def attach(name):
    """Yields a numpy.ndarray over the shmpar array `name` (no copy)."""
    shm = _open(name)
    try:
        dtype, shape, offset = read_header(shm.buf)
        arr = np.ndarray(shape, dtype=dtype, buffer=shm.buf, offset=offset)
        try:
            yield arr
        finally:
            del arr
    finally:
        shm.close()
