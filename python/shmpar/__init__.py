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


def _keep_off_the_resource_tracker():
    """multiprocessing.shared_memory registers every segment it opens with
    the resource tracker, which unlinks those still registered when the
    process (or, for multiprocessing's children, the program) ends, and
    warns of "leaked shared_memory objects" (CPython gh-82300). The seed
    article's child code, ``SharedMemory(name=NAME)``, would so remove a
    shmpar array that its creator still uses. In this process and the
    children it forks or spawns (which import the main module, and so this
    package), the tracker is not told of shmpar segments: only their
    creator removes them. Other segments are tracked as before."""
    try:
        from multiprocessing import resource_tracker
    except ImportError:
        return
    register, unregister = resource_tracker.register, resource_tracker.unregister
    if getattr(register, "_shmpar", False):
        return
    skipped = set()

    def register_but_shmpar(name, rtype):
        if rtype == "shared_memory" and _shmpar._is_shmpar_segment(name):
            skipped.add(name)
            return None
        return register(name, rtype)

    def unregister_but_shmpar(name, rtype):
        if rtype == "shared_memory" and name in skipped:
            skipped.discard(name)
            return None
        return unregister(name, rtype)

    register_but_shmpar._shmpar = True
    resource_tracker.register = register_but_shmpar
    resource_tracker.unregister = unregister_but_shmpar


_keep_off_the_resource_tracker()
