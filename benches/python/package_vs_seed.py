"""The seed article's program written with the shmpar Python package,
against the seed's own pattern (benches/python/seed_pattern.py), cold.

The program: an array of --len float64 in shared memory, sqrt(|x|) in place
by --workers processes, then the mean. Each measurement runs in a fresh
interpreter and is that interpreter's first run ("cold"): for the package,
from ``shmpar.Pool(...)`` to the mean, so the workers' start is included, as
the seed's Process start and join are; the array's set-up (random data
copied in) is not timed on either side. A second run in the same
interpreter is shown too (the seed starts its processes again; the pool
keeps its workers).

  * seed fork / seed spawn: seed_pattern.py --repeat 1, its cold total;
  * shmpar, Rust kernels: ``pool.run("sqrt_abs", a)`` then
    ``pool.reduce("mean", a)``;
  * shmpar, Python kernels: ``pool.map_chunks(f, a)`` with ``f`` doing the
    seed's own expression ``chunk[:] = np.sqrt(np.abs(chunk))`` and
    returning its chunk's sum (the mean is the sum of the partial sums over
    the length); a second row does it with in-place ufuncs (``out=``);
  * barrier: ``ctx.barrier()`` in a map_chunks function, --rounds rounds of
    --iters phases at 2 processes, against multiprocessing.Barrier
    (benches/python/barrier.py) in the same run.

Prints a table (and the raw numbers as JSON with --json); with --repeat R
every program runs R times, interleaved, and the table shows the median.
Runs in a private /dev/shm where ``unshare -m`` is allowed. Needs the package
installed (``pip install ./python``, or scripts/test-python.sh).

    .venv/bin/python benches/python/package_vs_seed.py --len 100000000
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import shmpar

HERE = os.path.dirname(os.path.abspath(__file__))


def seed_expression(ctx, chunk):
    chunk[:] = np.sqrt(np.abs(chunk))
    return float(chunk.sum())


def in_place(ctx, chunk):
    np.abs(chunk, out=chunk)
    np.sqrt(chunk, out=chunk)
    return float(chunk.sum())


def barrier_phases(ctx, chunk, rounds, iters):
    """Per-phase µs of each round of `iters` barriers (after one warm-up round)."""
    for _ in range(iters):
        ctx.barrier()
    per_phase = []
    for _ in range(rounds):
        ctx.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            ctx.barrier()
        per_phase.append((time.perf_counter() - t0) * 1e6 / iters)
    return per_phase


def case(name, n, workers, rounds, iters):
    """One measurement, in this (fresh) interpreter: the cold run (the
    pool's first job, its workers' start included) and a second one (the
    same pool again, on the array as the first left it, as the seed's
    repeats do)."""
    data = np.random.default_rng(0).standard_normal(n)
    with shmpar.Scope() as scope:
        a = scope.create(data.shape, data.dtype)
        a.array[:] = data  # one-time copy in, not timed (as in the seed)
        del data  # as the seed does
        times, means = [], []
        t0 = time.perf_counter()
        with shmpar.Pool(workers=workers) as pool:
            for _ in range(2):
                if name == "rust":
                    pool.run("sqrt_abs", a)
                    mean = pool.reduce("mean", a)
                elif name == "python":
                    mean = sum(pool.map_chunks(seed_expression, a)) / n
                elif name == "python_inplace":
                    mean = sum(pool.map_chunks(in_place, a)) / n
                elif name == "barrier":
                    f = functools.partial(barrier_phases, rounds=rounds, iters=iters)
                    per_rank = pool.map_chunks(f, a)
                    return {"phase_us": per_rank[0], "phase_us_rank1": per_rank[1]}
                else:
                    raise SystemExit(f"unknown case {name}")
                times.append((time.perf_counter() - t0) * 1e3)
                means.append(mean)
                t0 = time.perf_counter()
    return {"total_ms": times[0], "warm_ms": times[1], "mean": means[0]}


def _can_unshare():
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


def child(args_list):
    out = subprocess.run(
        [sys.executable, *args_list], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args_list)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--len", type=int, default=100_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=1, help="cold runs of each program, interleaved")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(case(args.case, args.len, args.workers, args.rounds, args.iters)))
        return

    me = os.path.abspath(__file__)
    if not os.environ.get("SHMPAR_BENCH_PRIVATE_SHM") and _can_unshare():
        # A /dev/shm of our own (a private mount namespace, as the tests
        # use): other programs' `shmpar gc` cannot touch our segments, and
        # nothing is left in the real /dev/shm.
        size = max(4 * args.len * 8, 1 << 30)
        os.environ["SHMPAR_BENCH_PRIVATE_SHM"] = "1"
        script = f'mount -t tmpfs -o size={size},mode=1777 tmpfs /dev/shm && exec "$0" "$@"'
        os.execvp("unshare", ["unshare", "-m", "sh", "-c", script, sys.executable, me, *sys.argv[1:]])
    common = ["--len", str(args.len), "--workers", str(args.workers)]
    seed = os.path.join(HERE, "seed_pattern.py")
    r = {k: [] for k in ("seed_fork", "seed_spawn", "rust", "python", "python_inplace")}
    for i in range(args.repeat):
        for method in ("fork", "spawn"):
            print(f"[{i + 1}/{args.repeat}] seed pattern, {method} ...", file=sys.stderr)
            r[f"seed_{method}"].append(child([seed, *common, "--method", method, "--repeat", "2"]))
        for name in ("rust", "python", "python_inplace"):
            print(f"[{i + 1}/{args.repeat}] shmpar {name} ...", file=sys.stderr)
            r[name].append(child([me, *common, "--case", name]))
    print("barriers ...", file=sys.stderr)
    barrier_args = ["--rounds", str(args.rounds), "--iters", str(args.iters)]
    r["barrier"] = child([me, "--len", "1000", "--workers", "2", "--case", "barrier", *barrier_args])
    r["mp_barrier"] = child([os.path.join(HERE, "barrier.py"), "--parties", "2", *barrier_args])
    r["load_after"] = os.getloadavg()[0]
    r["cpus"] = len(os.sched_getaffinity(0))
    if args.json:
        print(json.dumps(r, indent=1))

    def cold(key):
        runs = r[key]
        ms = [x["total_ms"][0] if key.startswith("seed") else x["total_ms"] for x in runs]
        # The seed's JSON has the mean of its last (2nd) run only.
        mean = runs[-1]["mean"] if not key.startswith("seed") else None
        return statistics.median(ms), min(ms), max(ms), mean

    def warm(key):
        runs = r[key]
        return statistics.median(x["total_ms"][1] if key.startswith("seed") else x["warm_ms"] for x in runs)

    fork = cold("seed_fork")[0]
    spawn = cold("seed_spawn")[0]
    rows = [
        ("seed pattern, fork (Process per chunk)", "seed_fork"),
        ("seed pattern, spawn", "seed_spawn"),
        ("shmpar Pool, Rust kernels: run + reduce", "rust"),
        ("shmpar Pool, map_chunks (seed's expression)", "python"),
        ("shmpar Pool, map_chunks (in-place ufuncs)", "python_inplace"),
    ]
    where = "private /dev/shm" if os.environ.get("SHMPAR_BENCH_PRIVATE_SHM") else "real /dev/shm"
    print(f"\n{args.len:.0e} float64 ({args.len * 8 / 1e6:.0f} MB), sqrt(|x|) in place then the mean, "
          f"{args.workers} workers, cold (fresh interpreter, workers' start included), "
          f"median of {args.repeat} run(s); {r['cpus']} CPUs, load average {os.getloadavg()[0]:.1f}, {where}\n")
    print(f"{'program':<46} {'cold ms':>9} {'(min-max)':>15} {'fork/this':>10} {'spawn/this':>11} {'2nd run ms':>11}  mean")
    for label, key in rows:
        ms, lo, hi, mean = cold(key)
        span = f"({lo:.0f}-{hi:.0f})"
        print(f"{label:<46} {ms:9.1f} {span:>15} {fork / ms:9.2f}x {spawn / ms:10.2f}x {warm(key):11.1f}  {'' if mean is None else f'{mean:.12f}'}")
    print("(2nd run: the same program again in the same interpreter; the seed pattern starts its processes")
    print(" again, shmpar's pool keeps them. The bars are on the cold run.)")
    ours = statistics.median(r["barrier"]["phase_us"])
    theirs = statistics.median(r["mp_barrier"]["phase_us"])
    print(f"\nbarrier, 2 processes, µs per phase (median of {args.rounds} rounds of {args.iters}):")
    print(f"  ctx.barrier() (shmpar, from Python)   {ours:8.2f}   rounds {[round(x, 2) for x in r['barrier']['phase_us']]}")
    print(f"  multiprocessing.Barrier               {theirs:8.2f}   rounds {[round(x, 1) for x in r['mp_barrier']['phase_us']]}")
    print("\nbars (issue 13): Rust kernels >= 2.5x the fork pattern and >= 5x spawn; map_chunks at least")
    print("as fast as the fork pattern; ctx.barrier() <= 5 µs per phase at 2 processes.")
    rust = cold("rust")[0]
    python, python_inplace = cold("python")[0], cold("python_inplace")[0]
    checks = [
        ("Rust kernels vs fork >= 2.5x", fork / rust >= 2.5, f"{fork / rust:.2f}x"),
        ("Rust kernels vs spawn >= 5x", spawn / rust >= 5, f"{spawn / rust:.2f}x"),
        ("map_chunks (seed's expression) <= fork", python <= fork, f"{fork / python:.2f}x"),
        ("map_chunks (in-place) <= fork", python_inplace <= fork, f"{fork / python_inplace:.2f}x"),
        ("ctx.barrier() <= 5 µs", ours <= 5.0, f"{ours:.2f} µs"),
    ]
    for label, ok, value in checks:
        print(f"  {'met ' if ok else 'MISSED'}  {label}: {value}")


if __name__ == "__main__":
    main()
