"""Pool: the catalog's Rust kernels against NumPy, Python kernels with the
in-segment barrier, failures, and nothing left behind."""

import gc
import os
import subprocess
import sys
import signal
import time

import numpy as np
import pytest

import shmpar


def rank(ctx, chunk):
    return ctx.rank


@pytest.fixture(scope="module")
def pool():
    """One pool for the tests that do not break it, both kinds of workers
    started before the first test (so their segments predate every test's
    check of /dev/shm; the session's check sees them go)."""
    with shmpar.Pool(workers=2) as pool, shmpar.Scope() as scope:
        warm = scope.create(2)
        pool.run("fill:0", warm)
        assert pool.map_chunks(rank, warm) == [0, 1]
        scope.close()
        yield pool


def pids_alive(pids):
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].split()[0] != "Z":
                    alive.append(pid)
        except FileNotFoundError:
            pass
    return alive


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def descendants():
    out, todo = [], [os.getpid()]
    while todo:
        for child in children_of(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


# ---- Rust kernels ----

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "spec, reference",
    [
        ("sqrt_abs", lambda x: np.sqrt(np.abs(x))),
        ("abs", np.abs),
        ("scale:2.5", lambda x: x * 2.5),
        ("offset:-1", lambda x: x - 1),
        ("clamp:-0.5:0.5", lambda x: np.clip(x, -0.5, 0.5)),
        ("fill:3", lambda x: np.full_like(x, 3)),
        ("exp", np.exp),
    ],
)
def test_rust_elementwise_kernels_match_numpy(pool, dtype, spec, reference):
    data = np.random.default_rng(2).standard_normal((1001, 7)).astype(dtype)
    with shmpar.Scope() as scope:
        a = scope.create(data.shape, dtype)
        a.array[:] = data
        pool.run(spec, a)
        np.testing.assert_allclose(a.array, reference(data).astype(dtype), rtol=2e-7 if dtype == "float64" else 2e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rust_reductions_match_numpy(pool, dtype):
    data = np.random.default_rng(3).standard_normal(100_003).astype(dtype)
    x = data.astype(np.float64)
    with shmpar.Scope() as scope:
        a = scope.create(data.shape, dtype)
        a.array[:] = data
        close = lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-9)
        close(pool.reduce("sum", a), x.sum())
        close(pool.reduce("mean", a), x.mean())
        close(pool.reduce("var:1", a), x.var(ddof=1))
        close(pool.reduce("std", a), x.std())
        close(pool.reduce("norm", a), np.linalg.norm(x))
        assert pool.reduce("min", a) == x.min() and pool.reduce("max", a) == x.max()
        assert pool.reduce("min_max", a) == (x.min(), x.max())
        h = pool.reduce("histogram:-1:1:8", a)
        counts, edges = np.histogram(x[(x >= -1) & (x <= 1)], bins=8, range=(-1, 1))
        assert h["counts"] == counts.tolist() and h["edges"] == edges.tolist()
        assert h["below"] == int((x < -1).sum()) and h["above"] == int((x > 1).sum())


def test_rust_kernels_on_a_multidimensional_array_split_by_rows(pool):
    with shmpar.Scope() as scope:
        a = scope.create((3, 4, 5), "float64")  # fewer rows than... 3 rows, 2 workers
        a.array[:] = -4.0
        pool.run("sqrt_abs", a)
        assert (a.array == 2.0).all()
        assert pool.reduce("sum", a) == 120.0


def test_kernel_refusals_say_why(pool):
    with shmpar.Scope() as scope:
        ints = scope.create(10, "int32")
        floats = scope.create(10, "float64")
        with pytest.raises(shmpar.Error, match="float32 and float64"):
            pool.run("sqrt", ints)
        with pytest.raises(shmpar.Error, match="sqrt_abs"):  # lists the valid names
            pool.run("cube", floats)
        with pytest.raises(shmpar.Error, match="is a reduction: use Pool.reduce"):
            pool.run("mean", floats)
        with pytest.raises(shmpar.Error, match="is an elementwise kernel: use Pool.run"):
            pool.reduce("sqrt", floats)
        with pytest.raises(shmpar.Error, match="lo <= hi"):
            pool.run("clamp:1:0", floats)
        zero_d = scope.create((), "float64")
        with pytest.raises(shmpar.Error, match="0-dimensional"):
            pool.reduce("sum", zero_d)
        assert pool.reduce("sum", floats) == 0.0  # the pool still works


def test_the_kernel_server_is_single_threaded_and_never_imports_numpy(pool):
    with shmpar.Scope() as scope:
        pool.run("fill:1", scope.create(4))
    server = pool._state.server.pid
    assert len(os.listdir(f"/proc/{server}/task")) == 1
    with open(f"/proc/{server}/maps") as f:
        assert "numpy" not in f.read()


def test_the_kernel_server_and_its_workers_leave_ctrl_c_to_the_user_process(pool):
    # A Ctrl-C at the terminal signals the whole process group; the server
    # and the Rust workers ignore SIGINT and are stopped by this process.
    with shmpar.Scope() as scope:
        pool.run("fill:1", scope.create(4))
    server = pool._state.server.pid
    for pid in [server, *children_of(server)]:
        with open(f"/proc/{pid}/status") as f:
            ignored = int(f.read().split("SigIgn:")[1].split()[0], 16)
        assert ignored & (1 << (signal.SIGINT - 1)), pid


# ---- Python kernels ----

def two_phases(ctx, chunk):
    # Phase 1: each worker writes its own rows.
    chunk[:] = ctx.rank + 1
    ctx.barrier()
    # Phase 2: everyone reads every row, the others' included.
    return float(ctx.array.sum()), ctx.rank, (ctx.rows.start, ctx.rows.stop), ctx.workers


def test_map_chunks_runs_python_with_a_barrier_and_returns_results_in_rank_order(pool):
    with shmpar.Scope() as scope:
        a = scope.create((10, 3), "float64")
        results = pool.map_chunks(two_phases, a)
        assert a.array[:5].tolist() == [[1.0] * 3] * 5 and a.array[5:].tolist() == [[2.0] * 3] * 5
        assert results == [(45.0, 0, (0, 5), 2), (45.0, 1, (5, 10), 2)]


def seed_kernel(ctx, chunk):
    chunk[:] = np.sqrt(np.abs(chunk))
    return float(chunk.sum()), chunk.shape[0]


def test_map_chunks_is_in_place_and_zero_copy(pool):
    data = np.random.default_rng(4).standard_normal(100_001)
    with shmpar.Scope() as scope:
        a = scope.create(data.shape, "float64")
        a.array[:] = data
        results = pool.map_chunks(seed_kernel, a)
        assert np.array_equal(a.array, np.sqrt(np.abs(data)))
        assert sum(n for _, n in results) == 100_001
        assert abs(sum(s for s, _ in results) - np.sqrt(np.abs(data)).sum()) < 1e-6
        # The same workers serve the next array too.
        b = scope.create(10, "float32")
        assert [n for _, n in pool.map_chunks(seed_kernel, b)] == [5, 5]


def leader_count(ctx, chunk):
    leaders = 0
    for _ in range(100):
        leaders += bool(ctx.barrier())
    return leaders


def test_exactly_one_leader_per_phase(pool):
    with shmpar.Scope() as scope:
        assert sum(pool.map_chunks(leader_count, scope.create(4))) == 100


def raises_on_rank_1(ctx, chunk):
    if ctx.rank == 1:
        raise ValueError(f"bad chunk {ctx.rows}")
    ctx.barrier()  # released with an error: rank 1 never comes
    return "unreachable"


def test_an_exception_in_a_worker_is_raised_again_with_its_traceback(pool):
    with shmpar.Scope() as scope:
        a = scope.create(10)
        start = time.monotonic()
        with pytest.raises(ValueError, match="bad chunk range\\(5, 10\\)") as info:
            pool.map_chunks(raises_on_rank_1, a)
        assert time.monotonic() - start < 10
        assert "raises_on_rank_1" in str(info.value.__cause__)
        assert pool.map_chunks(seed_kernel, a) == [(0.0, 5), (0.0, 5)]  # still usable


def uneven_barriers(ctx, chunk):
    if ctx.rank == 0:
        ctx.barrier()
    return ctx.rank


def test_unequal_barrier_calls_are_reported_not_hung(pool):
    with shmpar.Scope() as scope:
        with pytest.raises(shmpar.Error, match="same number of times"):
            pool.map_chunks(uneven_barriers, scope.create(4))


def test_a_function_that_cannot_travel_by_name_is_refused(pool):
    with shmpar.Scope() as scope:
        with pytest.raises(shmpar.Error, match="top level of a module"):
            pool.map_chunks(lambda ctx, chunk: 0, scope.create(4))


def kill_rank_1(ctx, chunk):
    if ctx.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    ctx.barrier()
    return ctx.rank


def test_a_killed_python_worker_raises_worker_failed_and_leaves_nothing():
    before = set(descendants())
    with shmpar.Scope() as scope:
        a = scope.create(100)
        with shmpar.Pool(workers=2) as pool:
            assert pool.map_chunks(rank, a) == [0, 1]
            workers = set(descendants()) - before
            start = time.monotonic()
            with pytest.raises(shmpar.WorkerFailed, match="worker 1 .* died: it was killed by SIGKILL"):
                pool.map_chunks(kill_rank_1, a)
            assert time.monotonic() - start < 5
            assert pool.map_chunks(rank, a) == [0, 1]  # replaced
            workers |= set(descendants()) - before
        assert pids_alive(workers) == []


def test_a_killed_kernel_server_raises_worker_failed_and_is_replaced():
    before = set(descendants())
    with shmpar.Scope() as scope:
        a = scope.create(1000)
        with shmpar.Pool(workers=2) as pool:
            pool.run("fill:2", a)
            server = pool._state.server.pid
            rust_workers = children_of(server)
            assert len(rust_workers) == 2
            os.kill(server, signal.SIGKILL)
            time.sleep(0.2)
            with pytest.raises(shmpar.WorkerFailed, match="kernel server .* died"):
                pool.reduce("sum", a)
            assert pool.reduce("sum", a) == 2000.0  # a new server
            spawned = set(descendants()) - before
        assert pids_alive(spawned | {server, *rust_workers}) == []


def test_a_killed_rust_worker_is_reported_or_replaced():
    with shmpar.Scope() as scope:
        a = scope.create(100_000)
        with shmpar.Pool(workers=2) as pool:
            pool.run("fill:1", a)
            victim = children_of(pool._state.server.pid)[1]
            os.kill(victim, signal.SIGKILL)
            time.sleep(0.1)
            try:
                pool.run("scale:2", a)  # the pool may notice the death first
            except shmpar.WorkerFailed as e:
                # The job was cut short: the other worker's rows are done.
                assert "killed by SIGKILL" in str(e)
            pool.run("fill:3", a)
            assert pool.reduce("sum", a) == 300_000
            assert victim not in children_of(pool._state.server.pid)


def test_a_closed_pool_refuses_work_and_close_is_idempotent():
    pool = shmpar.Pool(workers=1)
    pool.close()
    pool.close()
    with shmpar.Scope() as scope:
        with pytest.raises(shmpar.Error, match="closed"):
            pool.run("sqrt", scope.create(3))
    with pytest.raises(shmpar.Error, match="1 to 64 workers"):
        shmpar.Pool(workers=0)


def test_an_unclosed_pool_is_stopped_when_collected():
    import gc

    before = set(descendants())
    with shmpar.Scope() as scope:
        pool = shmpar.Pool(workers=2)
        pool.run("fill:1", scope.create(10))
        spawned = set(descendants()) - before
        assert spawned
        del pool
        gc.collect()
        deadline = time.monotonic() + 10
        while pids_alive(spawned) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids_alive(spawned) == []


INTERRUPTED = """
import os, signal, sys, threading, time
import shmpar

def sleepy(ctx, chunk):
    time.sleep(30)

if __name__ == "__main__":
    with shmpar.Scope() as scope, shmpar.Pool(workers=2) as pool:
        a = scope.create(2_000_000)
        for job in ("map_chunks", "run"):
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            start = time.monotonic()
            try:
                if job == "map_chunks":
                    pool.map_chunks(sleepy, a)
                else:
                    while True:
                        pool.run("offset:1", a)
            except KeyboardInterrupt:
                print(job, "interrupted after", round(time.monotonic() - start, 1), flush=True)
        pool.run("fill:2", a)
        print("sum", pool.reduce("sum", a), flush=True)
"""


def test_ctrl_c_interrupts_a_job_and_the_pool_recovers(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("map_chunks interrupted after") and float(lines[0].split()[-1]) < 5
    assert lines[1].startswith("run interrupted after") and float(lines[1].split()[-1]) < 5
    assert lines[2] == "sum 4000000.0"


# ---- misuse and interruptions (an adversarial review's findings) ----

def read_first(ctx, chunk):
    return float(ctx.array[0])


def assert_each_job_sees_its_own_data(pool, a):
    """No answer left over from an earlier job is taken for a later one."""
    for i in range(1, 4):
        a.array[0] = i
        assert pool.map_chunks(read_first, a) == [float(i), float(i)]


def exit_zero(ctx, chunk):
    import sys

    sys.exit(0)


def test_an_interrupted_worker_start_leaves_no_stale_result(monkeypatch):
    # Ctrl-C while the workers start: their check-in must not be read later
    # as a job's result.
    with shmpar.Scope() as scope, shmpar.Pool(workers=2) as pool:
        a = scope.create(100)
        real = shmpar._pool._PoolState.await_check_in

        def interrupted(self, started):
            raise KeyboardInterrupt

        monkeypatch.setattr(shmpar._pool._PoolState, "await_check_in", interrupted)
        with pytest.raises(KeyboardInterrupt):
            pool.map_chunks(read_first, a)
        monkeypatch.setattr(shmpar._pool._PoolState, "await_check_in", real)
        assert_each_job_sees_its_own_data(pool, a)


def test_sys_exit_in_a_worker_is_a_worker_failure_not_the_callers_exit(pool):
    with shmpar.Scope() as scope:
        a = scope.create(10)
        with pytest.raises(shmpar.WorkerFailed, match="SystemExit"):
            pool.map_chunks(exit_zero, a)
        assert pool.map_chunks(rank, a) == [0, 1]


def test_a_pool_outlives_the_thread_that_first_used_it():
    import threading

    with shmpar.Scope() as scope, shmpar.Pool(workers=2) as pool:
        a = scope.create(1000)
        a.array[:] = 1.0
        first = threading.Thread(target=lambda: (pool.reduce("sum", a), pool.map_chunks(rank, a)))
        first.start()
        first.join()
        time.sleep(0.2)  # a parent-death signal would have landed by now
        assert pool.reduce("sum", a) == 1000.0
        assert pool.map_chunks(rank, a) == [0, 1]


def test_close_is_quick_while_a_forked_child_lives():
    with shmpar.Scope() as scope:
        pool = shmpar.Pool(workers=2)
        a = scope.create(100)
        pool.reduce("sum", a)
        pool.map_chunks(rank, a)
        child = os.fork()
        if child == 0:
            time.sleep(10)
            os._exit(0)
        try:
            start = time.monotonic()
            pool.close()
            took = time.monotonic() - start
        finally:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        # The child closed its copies of the pool's pipes at the fork, so
        # the workers saw end of file at once instead of being waited out.
        assert took < 2.0, took


def test_sigterm_leaves_nothing_behind_kernel_server_included(tmp_path):
    script = tmp_path / "terminated.py"
    script.write_text(
        "import os, signal, shmpar\n"
        "a = shmpar.SharedArray.create(10)\n"
        "p = shmpar.Pool(2)\n"
        "p.reduce('sum', a)\n"
        "print(p._state.server.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    before = set(os.listdir("/dev/shm"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGTERM, out.stderr
    server = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (pids_alive([server]) or set(os.listdir("/dev/shm")) - before):
        time.sleep(0.05)
    assert pids_alive([server]) == []
    assert set(os.listdir("/dev/shm")) - before == set()


def test_a_script_without_a_main_guard_gets_an_error_that_says_so(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import shmpar\n"
        "def f(ctx, chunk):\n"
        "    return ctx.rank\n"
        "with shmpar.Scope() as s, shmpar.Pool(2) as p:\n"
        "    print(p.map_chunks(f, s.create(10)))\n"
    )
    before = set(os.listdir("/dev/shm"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0
    assert '__name__ == "__main__"' in out.stderr, out.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(os.listdir("/dev/shm")) - before:
        time.sleep(0.05)
    assert set(os.listdir("/dev/shm")) - before == set()


# ---- a second review's findings ----

def slow_histogram_and_sums(pool, a, errors):
    try:
        for _ in range(3):
            pool.reduce("histogram:0:1:2000000", a)
    except BaseException as exc:  # pragma: no cover - reported below
        errors.append(exc)


def test_two_threads_calling_rust_kernels_on_one_pool_take_turns():
    import faulthandler
    import threading

    with shmpar.Scope() as scope, shmpar.Pool(workers=2) as pool:
        a = scope.create(200_000)
        a.array[:] = 0.5
        errors = []
        other = threading.Thread(target=slow_histogram_and_sums, args=(pool, a, errors))
        faulthandler.dump_traceback_later(60, exit=True)  # a deadlock ends the run, loudly
        try:
            other.start()
            for _ in range(20):
                assert pool.reduce("sum", a) == 100_000.0
            other.join()
        finally:
            faulthandler.cancel_dump_traceback_later()
        assert errors == []


def test_an_interrupted_post_leaves_no_stale_result(monkeypatch):
    with shmpar.Scope() as scope, shmpar.Pool(workers=2) as pool:
        a = scope.create(100)
        pool.map_chunks(read_first, a)  # workers up
        real = shmpar._pool._wire.send
        sent = []

        def interrupted_after_one(fd, message):
            if message[0] == "job" and len(sent) == 1:
                raise KeyboardInterrupt
            sent.append(fd)
            return real(fd, message)

        monkeypatch.setattr(shmpar._pool._wire, "send", interrupted_after_one)
        with pytest.raises(KeyboardInterrupt):
            pool.map_chunks(rank, a)
        monkeypatch.setattr(shmpar._pool._wire, "send", real)
        assert_each_job_sees_its_own_data(pool, a)


def test_a_failed_worker_start_leaves_the_next_job_right(monkeypatch):
    with shmpar.Scope() as scope, shmpar.Pool(workers=3) as pool:
        a = scope.create(100)
        real = shmpar._pool._Worker.prepare
        calls = []

        def fails_on_the_second(self, preparation):
            calls.append(self.rank)
            if len(calls) == 2:
                raise OSError(24, "Too many open files")
            return real(self, preparation)

        monkeypatch.setattr(shmpar._pool._Worker, "prepare", fails_on_the_second)
        with pytest.raises(OSError):
            pool.map_chunks(rank, a)
        monkeypatch.setattr(shmpar._pool._Worker, "prepare", real)
        assert pool.map_chunks(rank, a) == [0, 1, 2]
        assert pool.map_chunks(rank, a) == [0, 1, 2]


def statvfs_free():
    st = os.statvfs("/dev/shm")
    return st.f_bavail * st.f_frsize


def test_an_idle_pool_lets_go_of_a_dropped_array():
    with shmpar.Pool(workers=2) as pool:
        a = shmpar.SharedArray.create(4_000_000)  # 32 MB
        pool.run("fill:1", a)
        assert pool.map_chunks(rank, a) == [0, 1]
        before = statvfs_free()
        a.unlink()
        del a
        gc.collect()
        deadline = time.monotonic() + 5
        while statvfs_free() < before + 30_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Both kinds of workers dropped their mappings while the pool idled.
        assert statvfs_free() >= before + 30_000_000


def create_and_wait(ctx, chunk):
    keep = shmpar.SharedArray.create(10)
    create_and_wait.keep = keep
    time.sleep(30)


def test_arrays_a_function_created_go_when_its_worker_is_stopped(tmp_path):
    script = tmp_path / "stopper.py"
    script.write_text(
        "import os, signal, threading, time, shmpar\n"
        "def create_and_wait(ctx, chunk):\n"
        "    create_and_wait.keep = shmpar.SharedArray.create(10)\n"
        "    time.sleep(30)\n"
        "if __name__ == '__main__':\n"
        "    with shmpar.Scope() as s, shmpar.Pool(2) as p:\n"
        "        a = s.create(10)\n"
        "        threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "        try:\n"
        "            p.map_chunks(create_and_wait, a)\n"
        "        except KeyboardInterrupt:\n"
        "            print('interrupted', flush=True)\n"
    )
    before = set(os.listdir("/dev/shm"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "interrupted" in out.stdout, out.stderr
    deadline = time.monotonic() + 5
    while set(os.listdir("/dev/shm")) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(os.listdir("/dev/shm")) - before == set()


def optimize_level(ctx, chunk):
    return sys.flags.optimize


def test_workers_get_the_interpreters_flags(tmp_path):
    script = tmp_path / "flags.py"
    script.write_text(
        "import sys, shmpar\n"
        "def level(ctx, chunk):\n"
        "    return sys.flags.optimize\n"
        "if __name__ == '__main__':\n"
        "    with shmpar.Scope() as s, shmpar.Pool(2) as p:\n"
        "        print(p.map_chunks(level, s.create(10)))\n"
    )
    out = subprocess.run([sys.executable, "-O", str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "[1, 1]", out.stderr


def test_what_workers_cannot_load_is_a_clear_error(tmp_path, pool):
    with shmpar.Scope() as scope:
        with pytest.raises(TypeError, match="not callable"):
            pool.map_chunks(42, scope.create(10))
    script = tmp_path / "in_main.py"
    script.write_text(
        "import shmpar\n"
        "if __name__ == '__main__':\n"
        "    def f(ctx, chunk):\n"
        "        return 1\n"
        "    with shmpar.Scope() as s, shmpar.Pool(2) as p:\n"
        "        p.map_chunks(f, s.create(10))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0
    assert "top level of a module" in out.stderr, out.stderr


def test_a_module_found_through_a_later_sys_path_entry_loads(tmp_path, pool):
    (tmp_path / "late_module.py").write_text("def h(ctx, chunk):\n    return 'late'\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import late_module

        with shmpar.Scope() as scope:
            assert pool.map_chunks(late_module.h, scope.create(10)) == ["late", "late"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("late_module", None)


def test_map_chunks_on_an_unlinked_array_is_always_an_error(pool):
    with shmpar.Scope() as scope:
        a = scope.create(10)
        assert pool.map_chunks(rank, a) == [0, 1]  # warm workers map it
        a.unlink()
        with pytest.raises(shmpar.Error, match="unlinked"):
            pool.map_chunks(rank, a)


def test_concurrent_first_use_starts_one_kernel_server():
    import threading

    def all_children():
        # Children of every thread (processes started for other threads
        # come from the package's helper thread).
        kids = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    kids += [int(p) for p in f.read().split()]
            except OSError:
                pass
        return kids

    def kernel_servers():
        found = set()
        for child in pids_alive(all_children()):
            try:
                with open(f"/proc/{child}/cmdline") as f:
                    if "_serve_kernels" in f.read():
                        found.add(child)
            except OSError:
                pass
        return found

    before = kernel_servers()
    with shmpar.Scope() as scope, shmpar.Pool(workers=2) as pool:
        a = scope.create(1000)
        barrier = threading.Barrier(3)

        def use():
            barrier.wait()
            pool.reduce("sum", a)

        threads = [threading.Thread(target=use) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(kernel_servers() - before) == 1


# ---- a third review's findings ----

def rust_workers(pool):
    return children_of(pool._state.server.pid)


def test_rust_workers_keep_a_live_array_mapped_while_the_pool_idles():
    with shmpar.Scope() as scope, shmpar.Pool(workers=2) as pool:
        a = scope.create(100_000)
        pool.reduce("sum", a)
        time.sleep(1.2)  # past the idle release
        for worker in rust_workers(pool):
            with open(f"/proc/{worker}/maps") as f:
                assert a.name in f.read(), "a live array was let go while idle"


def spin_map(ctx, chunk):
    return ctx.rank


def test_close_from_another_thread_while_jobs_run_is_clean():
    import threading

    for kind in ("map_chunks", "reduce"):
        with shmpar.Scope() as scope:
            pool = shmpar.Pool(workers=2)
            a = scope.create(1000)
            errors = []

            def loop():
                try:
                    while True:
                        if kind == "map_chunks":
                            pool.map_chunks(spin_map, a)
                        else:
                            pool.reduce("sum", a)
                except shmpar.Error as exc:
                    if "closed" not in str(exc):
                        errors.append(exc)
                except BaseException as exc:  # AttributeError, TypeError, OSError: the bug
                    errors.append(exc)

            user = threading.Thread(target=loop)
            user.start()
            time.sleep(0.3)
            pool.close()
            user.join(timeout=30)
            assert not user.is_alive()
            assert errors == [], errors
            workers = [w for w in pool._state.python if w is not None]
            assert workers == [] and pool._state.server is None


def test_ctrl_c_while_waiting_for_another_threads_kernel_call(tmp_path):
    # The server's workers are stopped, so thread B's reduce hangs; the
    # main thread's reduce waits for B's turn and must still answer Ctrl-C;
    # a call queued behind an interrupted one gets a new server.
    script = tmp_path / "turns.py"
    script.write_text(
        "import os, signal, threading, time, shmpar\n"
        "with shmpar.Scope() as s, shmpar.Pool(2) as p:\n"
        "    a = s.create(1000); a.array[:] = 1.0\n"
        "    p.reduce('sum', a)\n"
        "    srv = p._state.server.pid\n"
        "    kids = open(f'/proc/{srv}/task/{srv}/children').read().split()\n"
        "    for k in kids: os.kill(int(k), signal.SIGSTOP)\n"
        "    out = {}\n"
        "    def b():\n"
        "        out['b'] = p.reduce('sum', a)\n"
        "    t = threading.Thread(target=b); t.start(); time.sleep(0.3)\n"
        "    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "    start = time.monotonic()\n"
        "    try:\n"
        "        p.reduce('sum', a)\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted after', round(time.monotonic() - start, 1), flush=True)\n"
        "    for k in kids: os.kill(int(k), signal.SIGCONT)\n"
        "    t.join(); print('b', out.get('b'), flush=True)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert lines and lines[0].startswith("interrupted after"), (out.stdout, out.stderr)
    assert float(lines[0].split()[-1]) < 2.0
    assert lines[1] == "b 1000.0", (out.stdout, out.stderr)


def test_a_worker_that_ignores_sigterm_still_dies_with_its_parent(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(
        "import os, signal, time, shmpar\n"
        "def stubborn(ctx, chunk):\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    os.write(1, f'{os.getpid()}\\n'.encode())  # one write: the two workers' lines never mix\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    with shmpar.Scope() as s, shmpar.Pool(2) as p:\n"
        "        p.map_chunks(stubborn, s.create(10))\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(proc.stdout.readline()), int(proc.stdout.readline())]
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while pids_alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_alive(workers) == []
    shmpar.gc()  # the SIGKILLed parent's own arrays are orphans now


def test_a_library_may_create_arrays_when_imported_by_a_guarded_program(tmp_path):
    (tmp_path / "lib_with_table.py").write_text("import shmpar\nTABLE = shmpar.SharedArray.create(16)\n")
    script = tmp_path / "guarded.py"
    script.write_text(
        "import shmpar, lib_with_table\n"
        "def f(ctx, chunk):\n"
        "    return ctx.rank\n"
        "if __name__ == '__main__':\n"
        "    with shmpar.Scope() as s, shmpar.Pool(2) as p:\n"
        "        print(p.map_chunks(f, s.create(10)))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "[0, 1]", out.stderr


@pytest.mark.parametrize("shape", [True, (True, 2), {3: 1}, iter([2, 2])])
def test_shapes_numpy_refuses_are_refused(shape):
    with pytest.raises(TypeError):
        shmpar.SharedArray.create(shape)


# ---- a fourth review's findings ----

def test_run_and_reduce_never_touch_an_array_that_took_an_unlinked_ones_name(pool):
    with shmpar.Scope() as scope:
        a = scope.create(1000)
        a.array[:] = 4.0
        assert pool.reduce("sum", a) == 4000.0
        name = a.name
        a.unlink()
        # Another array takes the name.
        b = scope.create((10, 3), "float32")
        b.array[:] = 9
        os.rename("/dev/shm/" + b.name, "/dev/shm/" + name)
        try:
            with pytest.raises(shmpar.Error, match="unlinked"):
                pool.reduce("sum", a)
            with pytest.raises(shmpar.Error, match="unlinked"):
                pool.run("fill:7", a)
            assert float(b.array.sum()) == 270.0  # untouched
        finally:
            os.unlink("/dev/shm/" + name)


def test_a_library_that_runs_jobs_at_import_cannot_start_workers_without_end(tmp_path):
    (tmp_path / "eager_lib.py").write_text(
        "import shmpar\n"
        "def f(ctx, chunk):\n"
        "    return ctx.rank\n"
        "with shmpar.Scope() as s, shmpar.Pool(2) as p:\n"
        "    RESULT = p.map_chunks(f, s.create(10))\n"
    )
    script = tmp_path / "main.py"
    script.write_text(
        "import eager_lib\n"
        "if __name__ == '__main__':\n"
        "    print(eager_lib.RESULT)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0
    assert "starts pool workers" in out.stderr, out.stderr


def test_map_chunks_works_with_descriptors_numbered_past_1024(pool):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("cannot open 1100 descriptors here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        with shmpar.Scope() as scope, shmpar.Pool(workers=2) as fresh:
            assert fresh.map_chunks(rank, scope.create(10)) == [0, 1]
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_exit_does_not_wait_for_a_job_in_a_daemon_thread(tmp_path):
    script = tmp_path / "daemon_job.py"
    script.write_text(
        "import threading, time, shmpar\n"
        "def slow(ctx, chunk):\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    s = shmpar.Scope(); a = s.create(10)\n"
        "    p = shmpar.Pool(2)\n"
        "    p.map_chunks(lambda_free := None or (lambda *x: None), a) if False else None\n"
        "    threading.Thread(target=p.map_chunks, args=(slow, a), daemon=True).start()\n"
        "    time.sleep(2)\n"
        "    print('exiting', flush=True)\n"
    )
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "exiting" in out.stdout, out.stderr
    assert time.monotonic() - start < 15


def test_a_histogram_too_large_to_return_is_refused_up_front(pool):
    with shmpar.Scope() as scope:
        with pytest.raises(shmpar.Error, match="at most"):
            pool.reduce("histogram:0:1:40000000", scope.create(10))
        assert pool.reduce("sum", scope.create(10)) == 0.0


# ---- a fifth review's findings ----

def fail_one_while_the_other_works(ctx, chunk):
    if ctx.rank == 1:
        raise ValueError("boom in rank 1")
    time.sleep(3)


def test_a_failure_while_another_worker_is_busy_is_raised_as_itself(pool):
    with shmpar.Scope() as scope:
        with pytest.raises(ValueError, match="boom in rank 1"):
            pool.map_chunks(fail_one_while_the_other_works, scope.create(10))
        assert pool.map_chunks(rank, scope.create(10)) == [0, 1]


def test_a_forked_child_attaches_its_parents_array_by_name(tmp_path):
    script = tmp_path / "forked.py"
    script.write_text(
        "import multiprocessing as mp, shmpar\n"
        "def child(name):\n"
        "    shmpar.SharedArray.attach(name).array[:] = 7\n"
        "if __name__ == '__main__':\n"
        "    with shmpar.Scope() as s:\n"
        "        a = s.create(4)\n"
        "        p = mp.get_context('fork').Process(target=child, args=(a.name,))\n"
        "        p.start(); p.join()\n"
        "        print(p.exitcode, a.array.tolist())\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "0 [7.0, 7.0, 7.0, 7.0]", out.stderr


def test_worker_counts_may_be_numpy_integers():
    with shmpar.Pool(workers=np.int64(2)) as pool:
        assert pool.workers == 2
    with pytest.raises(TypeError):
        shmpar.Pool(workers=True)


def test_a_reduction_with_a_bad_parameter_given_to_run_says_it_is_a_reduction(pool):
    with shmpar.Scope() as scope:
        with pytest.raises(shmpar.Error, match='"var" is a reduction'):
            pool.run("var:-1", scope.create(10))
