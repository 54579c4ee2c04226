"""The Python worker process of a shmpar.Pool: ``sys.executable -c`` runs
a few lines that restore the parent's ``sys.path`` and call ``main``.

The worker asks to die with its parent, ignores SIGINT (Ctrl-C reaches the
parent, which stops the pool), prepares itself as multiprocessing's spawn
start does (the parent's sys.path, working directory and main module, as
``__mp_main__``, so functions defined in the user's script unpickle), says
it is ready, and then runs jobs until its job pipe reaches end of file.

A job names the function (pickled by reference), the array and the
worker's rows. The worker attaches the array by name (once: mappings are
kept while the array's name still names the same object), calls
``func(ctx, chunk)`` with ``chunk`` a NumPy view of its rows, and sends back
the pickled result, or the exception. Nothing else is copied.
"""

import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback

from . import _shmpar, _wire
from ._pool import Context, _Aborted


# How often an idle worker looks for arrays whose names are gone.
IDLE_EVICT_SECONDS = 0.5
# How often a worker checks that its parent lives.
WATCH_SECONDS = 0.5


def _prepare(data):
    from multiprocessing import spawn

    spawn.prepare(data)


class _Arrays:
    """The arrays this worker has attached, by name, while their name still
    names the same object (device, inode)."""

    def __init__(self):
        self._by_name = {}

    def get(self, name, identity):
        entry = self._by_name.get(name)
        if entry is not None and entry[0] == identity:
            return entry[1]
        self._by_name.pop(name, None)
        array = _shmpar.SharedArray.attach(name)
        if tuple(array._identity) != tuple(identity):
            raise _shmpar.Error(
                f"array {name} was replaced by another object of the same name while the job was posted"
            )
        self._by_name[name] = (identity, array)
        return array

    def evict(self, keep):
        """Drops the mappings of arrays whose name is gone (or names
        another object now), so their memory can be freed."""
        for name, (identity, _) in list(self._by_name.items()):
            if name == keep:
                continue
            try:
                st = os.stat("/dev/shm/" + name)
                alive = (st.st_dev, st.st_ino) == tuple(identity)
            except OSError:
                alive = False
            if not alive:
                del self._by_name[name]


def _error_message(exc):
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        payload = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)
    except Exception:
        payload = None
    return ("error", payload, f"{type(exc).__name__}: {exc}", tb)


def _run_job(job, arrays, controls, functions):
    _, func_bytes, name, identity, rank, workers, start, end, control_name, path = job
    # The parent's sys.path now (it may have grown since this worker
    # started): the function's module is looked up there.
    if sys.path != path:
        sys.path[:] = path
    control = controls.get(control_name)
    if control is None:
        controls.clear()
        control = controls[control_name] = _shmpar._Control.attach(control_name)
    try:
        func = functions.get(func_bytes)
        if func is None:
            functions.clear()
            try:
                func = functions[func_bytes] = pickle.loads(func_bytes)
            except (AttributeError, ImportError) as exc:
                raise _shmpar.Error(
                    f"this worker cannot load the function by name ({exc}): map_chunks needs a "
                    "function defined with def at the top level of a module that a new Python "
                    "process can import (not inside `if __name__ == \"__main__\":`, not in a "
                    "`python -c` or stdin program)"
                ) from exc
        arrays.evict(keep=name)
        # No prefault (MADV_POPULATE_READ) of the rows, unlike the Rust
        # workers: NumPy's first pass maps them by read faults that map 16
        # pages each, and measured over 400 MB a worker, the seed's
        # expression ran 10 ms faster cold and 35 ms faster warm without.
        array = arrays.get(name, identity)
        whole = array.array
        ctx = Context(rank, workers, range(start, end), whole, control)
        result = func(ctx, whole[start:end])
        del ctx, whole
        try:
            return ("ok", pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:
            raise _shmpar.Error(
                f"the result of {getattr(func, '__qualname__', func)!r} cannot be pickled: {exc}"
            ) from exc
    except _Aborted:
        return ("aborted",)
    except BaseException as exc:
        # Release the other workers of the job from the barrier: this one
        # will never arrive there again.
        control.poison()
        return _error_message(exc)


def _watch_parent(parent):
    """The parent-death signal is SIGTERM (so shmpar's handler can remove
    arrays a function created here); a function that ignores or handles
    SIGTERM would keep this worker alive without its parent. This thread
    ends it with SIGKILL a moment after the parent is gone."""
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    time.sleep(WATCH_SECONDS)  # SIGTERM's turn first
    os.kill(os.getpid(), signal.SIGKILL)


def main(job_fd, result_fd, parent):
    _shmpar._die_with_parent(parent)
    threading.Thread(target=_watch_parent, args=(parent,), name="shmpar-parent-watch", daemon=True).start()
    message = _wire.recv(job_fd)
    if message is None:
        return
    try:
        # Importing the main module runs its top level: without a
        # `__main__` guard that would create arrays and pools here.
        _shmpar._set_bootstrapping(True)
        try:
            _prepare(message[1])
        finally:
            _shmpar._set_bootstrapping(False)
    except BaseException:
        _wire.send(result_fd, ("failed", traceback.format_exc()))
        return
    _wire.send(result_fd, ("ready", os.getpid()))
    arrays, controls, functions = _Arrays(), {}, {}
    # poll, not select: the descriptor may be numbered past 1024.
    idle = select.poll()
    idle.register(job_fd, select.POLLIN)
    while True:
        # While idle, let go of arrays whose names are gone, so their
        # memory is freed when the user drops them, not at the next job.
        while not idle.poll(IDLE_EVICT_SECONDS * 1000):
            arrays.evict(keep=None)
        job = _wire.recv(job_fd)
        if job is None or job[0] != "job":
            return
        reply = _run_job(job, arrays, controls, functions)
        try:
            _wire.send(result_fd, reply)
        except BrokenPipeError:
            return
