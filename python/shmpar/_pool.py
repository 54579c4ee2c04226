"""shmpar.Pool: worker processes that run kernels on shared arrays in place.

Two kinds of workers, each started on first use and kept until the pool
closes:

* **Rust kernels** (``run``, ``reduce``) run on shmpar's Rust pool, which
  forks its workers. Forking is only sound in a single-threaded process,
  and a process that imported NumPy usually is not (OpenBLAS and MKL start
  threads at import), so the Rust pool lives in a *kernel server*: a fresh
  interpreter started with ``sys.executable -c`` that imports the extension
  and nothing that starts threads. The Rust pool checks that it is
  single-threaded before each fork and refuses otherwise.
* **Python functions** (``map_chunks``) run in persistent Python workers,
  each a fresh interpreter (``sys.executable -c``, as multiprocessing's
  spawn start) that attaches the arrays by name. Nothing of the user's
  process is inherited, so threads there are harmless.

Both are started by fork+exec from ``subprocess``, which is safe in a
multithreaded process. Every worker dies with this process
(``PR_SET_PDEATHSIG``; use a pool from the thread that created it, since
Linux sends that signal when the creating *thread* exits).
"""

import operator
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import weakref

from . import _shmpar, _wire
from ._shmpar import Error, WorkerFailed

# The most workers a pool may have (the Rust pool's limit).
MAX_WORKERS = 64
# After a worker fails, how long the others of the job may take to notice
# before they are killed (and replaced at the next job).
GRACE_SECONDS = 1.0
# How long a new Python worker may take to import NumPy and the main module.
START_SECONDS = 120.0
# How long a worker stopped with SIGTERM has to die before SIGKILL.
KILL_GRACE_SECONDS = 0.2
# How often a waiting pool looks for dead or stranded workers.
TICK_SECONDS = 0.05

# The kernel server imports the extension alone, as a top-level module from
# the package's directory (argv[1]): no site, no package __init__, no json or
# signal module (SIGINT is ignored from Rust). Python starts in ~6 ms; with
# those imports it took ~25.
_SERVER_BOOT = (
    "import sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import _shmpar\n"
    "_shmpar._serve_kernels(*map(int, sys.argv[2:]))\n"
)

# A Python worker: this process's sys.path comes as the arguments after
# the three numbers (argv can hold any path; no json to import).
_WORKER_BOOT = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "sys.path[:] = sys.argv[4:]\n"
    "from shmpar._worker import main\n"
    "main(*map(int, sys.argv[1:4]))\n"
)


class _Aborted(Error):
    """Raised by ctx.barrier() when another worker of the job failed."""


class _RemoteTraceback(Exception):
    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return "\n\nThe traceback in the worker:\n\n" + self.tb


class Context:
    """What a ``map_chunks`` function gets besides its chunk.

    * ``rank``: this worker's index, 0 to ``workers - 1``;
    * ``workers``: how many workers run the job;
    * ``rows``: the ``range`` of rows (axis 0) of the chunk;
    * ``array``: a view of the whole array (write only your own rows; read
      others' after a barrier);
    * ``barrier()``: waits until every worker of the job has called it as
      often; returns True in exactly one of them per phase.
    """

    __slots__ = ("rank", "workers", "rows", "array", "_control")

    def __init__(self, rank, workers, rows, array, control):
        self.rank = rank
        self.workers = workers
        self.rows = rows
        self.array = array
        self._control = control

    def barrier(self):
        """Waits at the pool's in-segment barrier (a shared futex, with the
        GIL released) until every worker of the job arrives; returns True in
        the last to arrive. Every worker must call it the same number of
        times. Raises an error if another worker failed meanwhile."""
        try:
            return self._control.wait()
        except Error as exc:
            raise _Aborted(str(exc)) from None

    def __repr__(self):
        return f"Context(rank={self.rank}, workers={self.workers}, rows={self.rows!r})"


def _popen(boot, fds, args, flags):
    return subprocess.Popen(
        [sys.executable, *flags, "-c", boot, *map(str, args)],
        pass_fds=fds,
        stdin=subprocess.DEVNULL,
    )


class _Spawner:
    """A thread that lives as long as the process and starts the pools'
    processes for the other threads.

    Every worker asks Linux to kill it when its parent dies
    (``PR_SET_PDEATHSIG``), and Linux counts the parent as dead when the
    *thread* that started the worker exits. The main thread lives as long
    as the process, so it starts its processes itself; any other thread
    hands the start to this one, so a pool keeps its workers whichever
    thread used it first and whenever that thread ends."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = None

    def start(self, boot, fds, args, flags):
        if threading.current_thread() is threading.main_thread():
            return _popen(boot, fds, args, flags)
        import queue

        with self.lock:
            if self.requests is None:
                self.requests = queue.SimpleQueue()
                threading.Thread(target=self._serve, name="shmpar-spawner", daemon=True).start()
        done = threading.Event()
        outcome = []
        self.requests.put((boot, fds, args, flags, done, outcome))
        done.wait()
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value

    def _serve(self):
        while True:
            boot, fds, args, flags, done, outcome = self.requests.get()
            try:
                outcome.append(("ok", _popen(boot, fds, args, flags)))
            except BaseException as exc:
                outcome.append(("error", exc))
            done.set()


_SPAWNER = _Spawner()


def _spawn(boot, fds, args, flags=()):
    """Starts ``sys.executable [flags] -c boot args`` with the pipe ends
    ``fds``, from a thread that lives as long as the process."""
    return _SPAWNER.start(boot, fds, args, flags)


def _readable(fds, timeout):
    """Those of ``fds`` that are readable (or at end of file) within
    ``timeout`` seconds: poll, which takes descriptors of any number
    (select stops at 1024)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(timeout * 1000)]


def _how_it_ended(returncode):
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"it was killed by {name}"
    return f"it exited with code {returncode}"


def _children(pid):
    """The pids of `pid`'s children (empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def _running(pids):
    """Those of `pids` that still run (exited ones, zombies included, hold
    no memory and no lock any more)."""
    running = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[-1].split()[0] != "Z":
                    running.append(pid)
        except OSError:
            pass
    return running


def _stop(proc, timeout):
    """Waits up to ``timeout`` seconds for ``proc`` to exit, then kills it;
    returns whether it had to be killed."""
    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return True


class _Worker:
    """A persistent Python worker: its process and its two pipes."""

    def __init__(self, rank):
        job_r, job_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            # The interpreter's flags (-O, -W, -X ...), as multiprocessing's
            # spawn start passes them to its children.
            flags = tuple(subprocess._args_from_interpreter_flags())
            self.proc = _spawn(
                _WORKER_BOOT, (job_r, result_w), (job_r, result_w, os.getpid(), *sys.path), flags
            )
        except BaseException:
            for fd in (job_r, job_w, result_r, result_w):
                os.close(fd)
            raise
        os.close(job_r)
        os.close(result_w)
        self.rank = rank
        self.job_fd = job_w
        self.result_fd = result_r
        self.ready = False

    def prepare(self, preparation):
        """Sends what multiprocessing's spawn start sends a child: sys.path,
        the working directory, the main module to import as __mp_main__."""
        try:
            _wire.send(self.job_fd, ("prepare", preparation))
        except BrokenPipeError:
            pass  # it died at once: its check-in reports it

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout):
        # Forget each descriptor before closing it: an interruption between
        # the two must not leave a closed number to close again later
        # (another file may have it by then).
        fd, self.job_fd = self.job_fd, None
        if fd is not None:
            os.close(fd)
        _stop(self.proc, timeout)
        fd, self.result_fd = self.result_fd, None
        if fd is not None:
            os.close(fd)

    def kill(self):
        """Stops the worker now: SIGTERM (shmpar's handler in the worker
        removes any array a function created there, then it dies), then
        SIGKILL if it still runs after a moment."""
        try:
            self.proc.terminate()
            self.proc.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        except OSError:
            pass
        try:
            self.proc.kill()
        except OSError:
            pass
        self.stop(0)


def _refuse_at_main_top_level():
    """In a Python worker importing the program's main module: raises if
    the caller runs at the top level of that module itself (code a
    `__main__` guard would have kept from running again), not in a library
    it imports."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            if frame.f_globals.get("__name__") == "__mp_main__":
                raise Error(_shmpar._bootstrapping())
            return
        frame = frame.f_back


def _refuse_while_bootstrapping():
    """No worker starts workers while it imports the program's main module
    (a library that runs jobs at import would start them without end)."""
    message = _shmpar._bootstrapping()
    if message is not None:
        raise Error(
            "a shmpar.Pool worker is importing the main module of the program, and code run by that "
            "import (the module itself or a library it imports) starts pool workers: start them "
            'only from code under `if __name__ == "__main__":`'
        )


class _PoolState:
    """Everything a pool owns, so a finalizer can release it without the pool."""

    def __init__(self, workers):
        self.workers = workers
        self.owner = os.getpid()
        self.closed = False
        self.server = None  # subprocess.Popen of the kernel server
        self.client = None  # _shmpar._KernelClient
        self.python = [None] * workers  # _Worker per rank
        self.control = None  # _shmpar._Control
        # One map_chunks job at a time (the kernel client has its own lock).
        self.jobs = threading.Lock()
        self.server_lock = threading.Lock()

    # ---- the kernel server ----

    def kernels(self):
        self.check()
        # One server, however many threads ask at once.
        with self.server_lock:
            self.check()  # closed meanwhile
            if self.client is None or self.client.closed:
                self.stop_server()
                self.start_server()
            return self.client

    def start_server(self):
        _refuse_while_bootstrapping()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            # -I -S: isolated (no PYTHON* variables, no user site), no
            # site import; the server runs nothing but the extension.
            here = os.path.dirname(os.path.abspath(_shmpar.__file__))
            server = _spawn(
                _SERVER_BOOT,
                (req_r, rep_w),
                (here, req_r, rep_w, self.workers, os.getpid()),
                ("-I", "-S"),
            )
        except BaseException:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            raise
        os.close(req_r)
        os.close(rep_w)
        try:
            client = _shmpar._KernelClient(req_w, rep_r, server.pid)
        except BaseException:
            os.close(req_w)
            os.close(rep_r)
            server.kill()
            server.wait()
            raise
        self.server, self.client = server, client
        try:
            client.wait_ready()
        except BaseException:
            self.stop_server()
            raise

    def stop_server(self, timeout=5.0):
        client, server = self.client, self.server
        if client is not None:
            client.close()  # waits for another thread's request to end
        self.client = self.server = None
        if server is not None:
            workers = _children(server.pid)
            killed = _stop(server, timeout)
            if killed or server.returncode != 0:
                # It could not remove its pool's control segment itself.
                # Its workers die with it (parent-death signal); until they
                # have, they hold the segment, and gc leaves held segments
                # alone.
                deadline = time.monotonic() + 5.0
                while _running(workers) and time.monotonic() < deadline:
                    time.sleep(0.005)
                _shmpar._remove_orphans_of(server.pid)

    def after_kernel_call(self, client):
        """After a kernel call on ``client`` raised: a server that died, or
        whose reply we stopped waiting for (Ctrl-C), is stopped and
        replaced next time (unless another thread replaced it already)."""
        with self.server_lock:
            if self.client is client and client.closed:
                # Its job, if any, is abandoned: no need to let it finish.
                self.stop_server(timeout=0)

    # ---- the Python workers ----

    def ensure_python_workers(self):
        _refuse_while_bootstrapping()
        started = []
        try:
            for rank, worker in enumerate(self.python):
                if worker is None or not worker.alive():
                    if worker is not None:
                        worker.stop(0)
                    self.python[rank] = None
                    self.python[rank] = _Worker(rank)
                    started.append(self.python[rank])
            if started:
                # Every worker is on its way before this process spends
                # time on the preparation (the first use imports
                # multiprocessing.spawn).
                from multiprocessing import spawn

                for worker in started:
                    preparation = spawn.get_preparation_data(f"shmpar-worker-{worker.rank}")
                    if "authkey" in preparation:
                        preparation["authkey"] = bytes(preparation["authkey"])
                    worker.prepare(preparation)
            if self.control is None:
                self.control = _shmpar._Control.create()
            if started:
                self.await_check_in(started)
        except BaseException:
            # Interrupted (Ctrl-C) or failed anywhere in the start: a worker
            # that is not ready, or whose check-in was not read, would take
            # a job for its preparation or its check-in for a result. Stop
            # every worker started here; the next job starts new ones.
            for worker in started:
                worker.kill()
            raise

    def await_check_in(self, started):
        deadline = time.monotonic() + START_SECONDS
        waiting = {w.result_fd: w for w in started}
        while waiting:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                for w in waiting.values():
                    w.kill()
                raise Error(f"{len(waiting)} Python worker(s) did not start within {START_SECONDS:.0f} s")
            for fd in _readable(list(waiting), min(timeout, 1.0)):
                worker = waiting.pop(fd)
                message = _wire.recv(fd)
                if message is not None and message[0] == "ready":
                    worker.ready = True
                    continue
                worker.kill()
                for other in waiting.values():
                    other.kill()
                if message is not None and message[0] == "failed":
                    raise Error(f"Python worker {worker.rank} could not prepare itself:\n{message[1]}")
                raise Error(
                    f"Python worker {worker.rank} (pid {worker.pid}) failed to start: "
                    f"{_how_it_ended(worker.proc.returncode)} (its error output says why)"
                )

    def map_chunks(self, func, array):
        with self.jobs:
            return self.map_chunks_locked(func, array)

    def map_chunks_locked(self, func, array):
        self.check()
        if not isinstance(array, _shmpar.SharedArray):
            raise TypeError(f"map_chunks needs a shmpar.SharedArray, not {type(array).__name__}")
        if array.ndim == 0:
            raise Error("a 0-dimensional array has no rows to split among workers")
        if not callable(func):
            raise TypeError(f"map_chunks calls func(ctx, chunk) in each worker; {func!r} is not callable")
        try:
            st = os.stat("/dev/shm/" + array.name)
            present = (st.st_dev, st.st_ino) == tuple(array._identity)
        except OSError:
            present = False
        if not present:
            raise Error(
                f"the array {array.name} was unlinked (or its name now names another object): "
                "workers attach arrays by name, so map_chunks needs an array whose name is still there"
            )
        try:
            func_bytes = pickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise Error(
                f"map_chunks sends the function to the workers by name, and {func!r} cannot be: "
                "use a function defined with def at the top level of a module (not a lambda, "
                f"a nested function or a bound method of an unpicklable object): {exc}"
            ) from exc
        self.ensure_python_workers()
        n = self.workers
        control = self.control
        control.reset(n)
        rows = array.shape[0]
        identity = tuple(array._identity)
        chunks = [_shmpar.chunk_range(rows, n, rank) for rank in range(n)]
        posted = []
        path = list(map(str, sys.path))
        try:
            for rank, worker in enumerate(self.python):
                start, end = chunks[rank]
                try:
                    _wire.send(
                        worker.job_fd,
                        ("job", func_bytes, array.name, identity, rank, n, start, end, control.name, path),
                    )
                    posted.append(worker)
                except BrokenPipeError:
                    posted.append(worker)  # its end of file reports the death
        except BaseException:
            # Interrupted while posting: the workers that got the job would
            # answer it at the next one. Stop them (replaced next time).
            control.poison()
            for worker in posted:
                worker.kill()
            raise
        return self.collect(posted, chunks)

    def collect(self, workers, chunks):
        control = self.control
        pending = {w.result_fd: w for w in workers}
        results = [None] * len(workers)
        finished = set()
        failure = None  # (rank, exception to raise)
        failed_at = None
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLIN)

        def settle(worker, message):
            nonlocal failure, failed_at
            del pending[worker.result_fd]
            poller.unregister(worker.result_fd)
            if message is not None and message[0] == "ok":
                results[worker.rank] = message[1]
                finished.add(worker.rank)
                return
            if message is not None and message[0] == "aborted":
                return
            control.poison()
            if failed_at is None:
                failed_at = time.monotonic()
            if failure is not None:
                if message is None:
                    worker.kill()
                return
            if message is None:
                worker.kill()
                start, end = chunks[worker.rank]
                failure = WorkerFailed(
                    f"worker {worker.rank} (pid {worker.pid}, rows {start}..{end}) died: "
                    f"{_how_it_ended(worker.proc.returncode)}; the pool starts a new worker "
                    "for the next job"
                )
            else:
                failure = _remote_exception(worker.rank, message)

        try:
            while pending:
                for fd, _ in poller.poll(TICK_SECONDS * 1000):
                    worker = pending.get(fd)
                    if worker is not None:
                        settle(worker, _wire.recv(fd))
                for worker in list(pending.values()):
                    if not worker.alive():
                        # A message it sent before it ended is read; else
                        # its exit says enough (its end of file may be late
                        # if a child of it holds the pipe).
                        readable = _readable([worker.result_fd], 0)
                        settle(worker, _wire.recv(worker.result_fd) if readable else None)
                if failure is not None and pending and time.monotonic() - failed_at > GRACE_SECONDS:
                    for worker in list(pending.values()):
                        settle(worker, ("aborted",))  # before kill() forgets its pipe
                        worker.kill()
                if failure is None and finished and pending and control.arrived() == len(pending):
                    # Every unfinished worker waits at the barrier for one
                    # that already returned: that phase can never complete.
                    control.poison()
                    failed_at = time.monotonic()
                    waiting = sorted(w.rank for w in pending.values())
                    failure = Error(
                        f"worker(s) {sorted(finished)} returned while worker(s) {waiting} wait at "
                        "ctx.barrier(): every worker must call ctx.barrier() the same number of times"
                    )
        except BaseException:
            # Interrupted (Ctrl-C): stop whatever still runs; the pool
            # replaces those workers at the next job.
            control.poison()
            for worker in pending.values():
                worker.kill()
            raise
        if failure is not None:
            raise failure
        return [pickle.loads(payload) for payload in results]

    # ---- both ----

    def forget_in_child(self):
        """In a forked child: closes this copy of the pool's pipes (the
        child cannot use the pool: ``check`` refuses a forked copy)."""
        for worker in self.python:
            if worker is None:
                continue
            for name in ("job_fd", "result_fd"):
                fd = getattr(worker, name)
                if fd is not None:
                    setattr(worker, name, None)
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        if self.client is not None:
            self.client._close_in_child()

    def check(self):
        if self.closed:
            raise Error("the pool is closed")
        if os.getpid() != self.owner:
            raise Error("this pool belongs to the process that created it, not to a forked copy of it")

    def close(self, wait=True):
        """Stops and reaps every worker. Waits for a job another thread
        runs on the pool to end (``wait``; the finalizer at interpreter
        exit stops such a job's workers instead); new ones are refused from
        the start. Idempotent, and if interrupted (Ctrl-C) a later call
        finishes."""
        if os.getpid() != self.owner:
            return
        self.closed = True
        if not self.jobs.acquire(blocking=wait):
            # At interpreter exit, with a job still running in a daemon
            # thread: stop the workers now rather than wait for it.
            for w in self.python:
                if w is not None:
                    w.kill()
            self.jobs.acquire()
        try:
            with self.server_lock:
                self._release()
        finally:
            self.jobs.release()

    def _release(self):
        for w in self.python:
            if w is not None and w.job_fd is not None:
                fd, w.job_fd = w.job_fd, None
                os.close(fd)  # end of file: the worker exits
        self.stop_server()
        for rank, w in enumerate(self.python):
            if w is not None:
                w.stop(2.0)
                self.python[rank] = None
        if self.control is not None:
            self.control.unlink()
            self.control = None

def _remote_exception(rank, message):
    _, payload, summary, tb = message
    exc = None
    if payload is not None:
        try:
            exc = pickle.loads(payload)
        except Exception:
            exc = None
    if isinstance(exc, Exception):
        exc.__cause__ = _RemoteTraceback(tb)
        return exc
    if exc is not None or summary.split(":")[0] in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
        # SystemExit, KeyboardInterrupt, ...: raised here they would end or
        # interrupt this program, which did neither.
        return WorkerFailed(
            f"worker {rank}'s function raised {summary} (a worker cannot end the program that "
            f"runs the pool); the worker goes on serving\n\nThe traceback in the worker:\n\n{tb}"
        )
    return Error(f"worker {rank} raised {summary}\n\nThe traceback in the worker:\n\n{tb}")


# Every open pool of this process, so that a child forked from it (by
# os.fork or multiprocessing) can close its copies of their pipes: the
# workers and the kernel server see end of file when this process closes
# its own, however long the child lives.
_POOLS = weakref.WeakSet()


def _forget_pools_in_child():
    for state in list(_POOLS):
        state.forget_in_child()
    # The helper thread does not exist in the child: start afresh.
    global _SPAWNER
    _SPAWNER = _Spawner()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


class Pool:
    """Worker processes that run kernels on shmpar arrays in place.

    ``shmpar.Pool(workers=N)`` (default: the CPUs this process may use) is a
    context manager; ``close()`` (or leaving the ``with`` block) stops and
    reaps every worker. Workers start on first use and stay for later jobs:

    * ``run(spec, array)`` runs a Rust kernel of the catalog in place on
      ``array`` (float32 or float64): ``"sqrt_abs"``, ``"scale:2"``,
      ``"offset:1"``, ``"clamp:0:1"``, ``"fill:3"``, ``"sqrt"``, ``"abs"``,
      ``"exp"``, ``"ln"``;
    * ``reduce(spec, array)`` returns a reduction's value: ``"sum"``,
      ``"mean"``, ``"min"``, ``"max"``, ``"min_max"`` (a tuple),
      ``"var:DDOF"``, ``"std:DDOF"``, ``"norm"``, ``"histogram:LO:HI:BINS"``
      (a dict); both release the GIL while they wait;
    * ``map_chunks(func, array)`` calls ``func(ctx, chunk)`` in each Python
      worker, ``chunk`` a NumPy view of its rows (axis 0), and returns the
      results in rank order. ``func`` must be picklable by name (a ``def``
      at the top level of a module); see ``Context`` for ``ctx``.

    A worker that dies raises ``shmpar.WorkerFailed`` (within a second or
    so); the pool replaces it and stays usable. An exception raised by
    ``func`` is raised again here, with the worker's traceback as its cause.
    """

    def __init__(self, workers=None):
        if workers is None:
            workers = len(os.sched_getaffinity(0))
        if isinstance(workers, bool):
            raise TypeError("workers must be an int, not bool")
        try:
            workers = operator.index(workers)  # int, numpy integers
        except TypeError:
            raise TypeError(f"workers must be an int, not {type(workers).__name__}") from None
        if not 1 <= workers <= MAX_WORKERS:
            raise Error(f"a pool has 1 to {MAX_WORKERS} workers, not {workers}")
        if _shmpar._bootstrapping() is not None:
            _refuse_at_main_top_level()
        self._state = _PoolState(workers)
        _POOLS.add(self._state)
        self._finalizer = weakref.finalize(self, self._state.close, False)

    @property
    def workers(self):
        """Number of workers of each kind."""
        return self._state.workers

    def _kernel_call(self, call):
        for attempt in (1, 2):
            client = self._state.kernels()
            try:
                return call(client)
            except _shmpar._ServerStopped:
                # Closed before this request: by close() (then say so), or
                # after another thread's request was interrupted (then a
                # new server takes it, once).
                if self._state.closed:
                    raise Error("the pool is closed") from None
                if attempt == 2:
                    raise WorkerFailed("the kernel server was stopped twice in a row") from None
            except BaseException:
                self._state.after_kernel_call(client)
                if self._state.closed:
                    raise Error("the pool was closed while the kernel ran") from None
                raise

    def run(self, spec, array):
        """Runs the catalog's elementwise kernel ``spec`` in place on
        ``array``, split by rows among the workers."""
        self._kernel_call(lambda client: client.run(spec, array))

    def reduce(self, spec, array):
        """Returns the catalog reduction ``spec`` of ``array``."""
        return self._kernel_call(lambda client: client.reduce(spec, array))

    def map_chunks(self, func, array):
        """Returns ``[func(ctx, chunk) for each worker]``, computed in the
        workers, in rank order."""
        return self._state.map_chunks(func, array)

    def close(self):
        """Stops and reaps every worker (after a job another thread runs on
        the pool). Idempotent."""
        self._state.close()
        self._finalizer.detach()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self._state.closed else "open"
        return f"Pool(workers={self.workers}, {state})"
