"""multiprocessing.Barrier latency across processes: the parent and
parties-1 forked processes meet `rounds` times `iters + 1` times; the parent
times each round's `iters` meetings. Prints JSON (per-phase µs per round).
"""

import argparse
import json
import multiprocessing as mp
import time


def participant(barrier, rounds, iters):
    for _ in range(rounds):
        for _ in range(iters + 1):
            barrier.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parties", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=500)
    args = ap.parse_args()
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(args.parties)
    ps = [ctx.Process(target=participant, args=(barrier, args.rounds, args.iters)) for _ in range(args.parties - 1)]
    for p in ps:
        p.start()
    per_phase = []
    for _ in range(args.rounds):
        barrier.wait()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            barrier.wait()
        per_phase.append((time.perf_counter() - t0) * 1e6 / args.iters)
    for p in ps:
        p.join()
    print(json.dumps({"parties": args.parties, "phase_us": per_phase}))


if __name__ == "__main__":
    main()
