"""Attach NumPy to a shmpar array, as docs/segment-layout.md describes.

    from shmpar_numpy import attach, attach_array, open_file
    with attach("shmpar_abc...") as arr:   # a numpy.ndarray over the shared data
        arr *= 2                           # the Rust side sees the change
    arr = attach_array("shmpar_abc...")    # the same, without a block
    arr = open_file("/data/a.shm")         # a numpy.memmap of a file-backed array

Layout version 2 puts the elements at byte 0 and the header in the last
4096 bytes, so once shape and dtype are known a plain
np.ndarray(shape, dtype=dtype, buffer=shm.buf) is the whole array; this
module only reads them from the header and checks it. Only the standard
library and NumPy are needed. The segment is never unlinked by Python:
shmpar's creator owns its lifecycle.
"""

import contextlib
import mmap
import os
import stat
import struct

import numpy as np

MAGIC = b"SHMPAR\0\0"
LAYOUT_VERSION = 2
HEADER_PAGE = 4096
STATE_READY = 1
FLAG_LITTLE_ENDIAN = 1
DTYPES = {1: "<f4", 2: "<f8", 3: "|i1", 4: "<i2", 5: "<i4", 6: "<i8",
          7: "|u1", 8: "<u2", 9: "<u4", 10: "<u8"}


def parse_header(size, tail, head):
    """Returns (dtype, shape) of a segment of `size` bytes, checking its
    header: `tail` holds the segment's last 4096 bytes, `head` its first 12
    (only looked at to recognize a version 1 segment). The data starts at 0."""
    if size == 0:
        raise ValueError("segment is still initializing (size 0)")
    base = size - HEADER_PAGE
    if size % HEADER_PAGE or tail[:8] != MAGIC:
        if head[:8] == MAGIC and len(head) >= 12 and struct.unpack_from("<I", head, 8)[0] == 1:
            raise ValueError("segment has layout version 1; this reader knows "
                             f"{LAYOUT_VERSION}: recreate it with a current shmpar")
        raise ValueError("not a shmpar segment (no header in its last 4096 bytes)")
    version, state, code, elem_size, ndim, flags = struct.unpack_from("<6I", tail, 8)
    if version != LAYOUT_VERSION:
        raise ValueError(f"layout version {version}, this reader knows {LAYOUT_VERSION}")
    if state != STATE_READY:
        raise ValueError("segment is still initializing")
    if code not in DTYPES or not 0 <= ndim <= 8 or not flags & FLAG_LITTLE_ENDIAN:
        raise ValueError("corrupt header")
    data_offset, data_len, total_len, header_offset = struct.unpack_from("<4Q", tail, 32)
    shape = tuple(int(s) for s in struct.unpack_from("<8Q", tail, 64)[:ndim])
    dtype = np.dtype(DTYPES[code])
    count = 1
    for s in shape:
        count *= s
    if dtype.itemsize != elem_size or data_len != count * elem_size:
        raise ValueError("corrupt header")
    if data_offset != 0 or total_len != size or header_offset != base or data_len > base:
        raise ValueError("truncated or corrupt segment")
    return dtype, shape


def read_header(buf):
    """Returns (dtype, shape) of the segment whose bytes are `buf` (such as
    SharedMemory(name).buf), checking the header in its last 4096 bytes."""
    return parse_header(len(buf), bytes(buf[-HEADER_PAGE:]), bytes(buf[:12]))


def attach_array(name):
    """Returns a numpy.ndarray over the shmpar array `name` (no copy). The
    array's base is the mapping, so the mapping lives exactly as long as the
    array or any view of it: nothing to close, nothing to crash. No
    resource tracker is involved (CPython's would unlink the segment when
    this process exits, gh-82300)."""
    path = os.path.join("/dev/shm", name)
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"invalid segment name {name!r}")
    # O_NOFOLLOW | O_NONBLOCK: never follow a symlink or block on a FIFO
    # someone named like a segment; refuse anything but a regular file.
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name} is not a regular file")
        size = st.st_size
        if size < HEADER_PAGE:
            parse_header(size, b"", os.pread(fd, 12, 0))
        mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    dtype, shape = read_header(memoryview(mapping))
    return np.ndarray(shape, dtype=dtype, buffer=mapping)


@contextlib.contextmanager
def attach(name):
    """Yields a numpy.ndarray over the shmpar array `name` (no copy). A view
    kept after the block stays valid: the mapping belongs to the array."""
    yield attach_array(name)


def open_file(path, mode="r+"):
    """Returns a numpy.memmap over the file-backed shmpar array at `path`
    (shmpar's SegmentOptions::file): the elements are the file's first bytes."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        f.seek(max(size - HEADER_PAGE, 0))
        tail = f.read(HEADER_PAGE)
    dtype, shape = parse_header(size, tail, head)
    return np.memmap(path, dtype=dtype, mode=mode, shape=shape)
