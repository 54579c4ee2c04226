"""Messages between a pool and its Python workers: an 8-byte little-endian
length, then a pickle, over a pipe. Only small things travel this way (the
function, by reference; the chunk's coordinates; the results): arrays
travel by name."""

import os
import pickle
import struct

_LENGTH = struct.Struct("<Q")


def send(fd, message):
    """Writes one message; raises BrokenPipeError if the reader is gone."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd, count):
    chunks = []
    while count:
        chunk = os.read(fd, min(count, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def recv(fd):
    """Reads one message; returns None at end of file (the writer exited),
    also in the middle of a message (it died while writing)."""
    header = _read_exact(fd, _LENGTH.size)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    body = _read_exact(fd, length)
    if body is None:
        return None
    return pickle.loads(body)
