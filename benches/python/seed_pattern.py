"""The Python seed pattern, timed: NumPy + multiprocessing.shared_memory +
one Process per chunk (the article in /work/shared/seed), then a mean.

Each repeat is exactly what a user of the pattern runs: start one Process per
chunk, each attaching to the segment by name and doing
``arr[start:end] = np.sqrt(np.abs(arr[start:end]))`` in place, join them, then
``shared.mean()`` in the parent. Repeat 0 runs in a fresh interpreter: it is
the cold run. The array set-up (random data copied into the segment) is not
timed, as the shmpar side does not time its array creation either.

Prints one JSON object on stdout. Used by the shmpar comparison harness.
"""

import argparse
import json
import statistics
import time
from multiprocessing import shared_memory
import multiprocessing as mp

import numpy as np


def worker(shm_name, shape, dtype, start, end):
    shm = shared_memory.SharedMemory(name=shm_name)
    arr = np.ndarray(shape, dtype=dtype, buffer=shm.buf)

    # Process a slice in-place
    arr[start:end] = np.sqrt(np.abs(arr[start:end]))

    shm.close()


def noop():
    pass


def run_once(ctx, shm, shape, dtype, n_workers):
    """One run of the pattern: (seconds in Process start..join, seconds in the mean, mean)."""
    t0 = time.perf_counter()
    n = shape[0]
    chunk_size = n // n_workers
    processes = []
    for i in range(n_workers):
        start = i * chunk_size
        end = start + chunk_size if i < n_workers - 1 else n
        p = ctx.Process(target=worker, args=(shm.name, shape, dtype, start, end))
        p.start()
        processes.append(p)
    for p in processes:
        p.join()
    t1 = time.perf_counter()
    shared = np.ndarray(shape, dtype=dtype, buffer=shm.buf)
    mean = float(shared.mean())
    t2 = time.perf_counter()
    for p in processes:
        if p.exitcode != 0:
            raise SystemExit(f"a worker exited with {p.exitcode}")
    return t1 - t0, t2 - t1, mean


def startup(ctx, n_workers):
    """Seconds to start and join n_workers processes that do nothing."""
    t0 = time.perf_counter()
    ps = [ctx.Process(target=noop) for _ in range(n_workers)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--len", type=int, default=10_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--method", choices=["fork", "spawn", "forkserver"], default="fork")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dtype", default="float64")
    args = ap.parse_args()
    ctx = mp.get_context(args.method)
    dtype = np.dtype(args.dtype)

    data = np.random.default_rng(0).standard_normal(args.len).astype(dtype)
    shm = shared_memory.SharedMemory(create=True, size=data.nbytes)
    try:
        shared = np.ndarray(data.shape, dtype=data.dtype, buffer=shm.buf)
        shared[:] = data  # Copy data into shared memory (one-time cost)
        del data
        runs = [run_once(ctx, shm, shared.shape, shared.dtype, args.workers) for _ in range(max(1, args.repeat))]
        starts = [startup(ctx, args.workers) for _ in range(3)]
        del shared
    finally:
        shm.close()
        shm.unlink()
    ms = lambda s: s * 1e3
    out = {
        "method": args.method,
        "workers": args.workers,
        "len": args.len,
        "dtype": dtype.name,
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "numpy": np.__version__,
        "total_ms": [ms(a + b) for a, b, _ in runs],
        "processes_ms": [ms(a) for a, _, _ in runs],
        "mean_ms": [ms(b) for _, b, _ in runs],
        "startup_ms": statistics.median(ms(s) for s in starts),
        "mean": runs[-1][2],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
