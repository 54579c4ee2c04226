"""shmpar: NumPy arrays in named shared memory, and worker processes that
run kernels on them in place.

    import shmpar
    with shmpar.Scope() as scope:
        a = scope.create(10_000_000, "float64")
        a.array[:] = data                       # a NumPy view, no copy
        with shmpar.Pool(workers=4) as pool:
            pool.run("sqrt_abs", a)             # Rust kernels, in place
            mean = pool.reduce("mean", a)
            parts = pool.map_chunks(f, a)       # f(ctx, chunk) in Python workers

Another process attaches by name: ``shmpar.SharedArray.attach(a.name)``, or
with nothing but the standard library and NumPy,
``np.ndarray(shape, dtype, buffer=SharedMemory(name=a.name).buf)``: the
data starts at byte 0 of the segment. See docs/python.md.

Importing this package starts no thread and does not import NumPy (the
kernel server process relies on that; NumPy is imported when an array is
first made or viewed).
"""

import atexit as _atexit
import os as _os

from . import _shmpar
from ._shmpar import Error, Scope, SharedArray, WorkerFailed, gc, ls
from ._pool import Context, Pool

__version__ = _shmpar.__version__

__all__ = [
    "Context",
    "Error",
    "Pool",
    "Scope",
    "SharedArray",
    "WorkerFailed",
    "gc",
    "ls",
]

# Arrays this process created are removed when it exits, even those still
# referenced then (interpreter shutdown does not promise to free every
# object). A child made by os.fork owns none of its parent's arrays.
_atexit.register(_shmpar._cleanup_now)
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_shmpar._forget_owned)
