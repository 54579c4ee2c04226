//! Issue 10.8: a job never hangs. A stopped worker, a kernel in an endless
//! loop and a lock held across a barrier each end with `Error::JobTimeout`
//! naming the workers that had not finished; those are killed and
//! replaced, the next job works, nothing leaks. A cancel from another
//! thread does the same, and a forked child's copy of a pool, dropped,
//! leaves the parent's workers alone (issue 10.6).

use std::time::{Duration, Instant};

use ndarray::{ArrayView1, ArrayViewMut1, Ix1};
use shmpar::job::LockedView;
use shmpar::{Ctx, Error, Pool, PoolHealth, SegmentOptions, SharedArray, Start, locked};

use crate::common::{self, Tally};
use crate::{Args, pool_pids};

type Check = Result<(), String>;

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

/// Rank `victim` never finishes; the others do.
fn spin_on(ctx: &Ctx, mut chunk: ArrayViewMut1<u64>, victim: &u64) {
    if ctx.rank() as u64 == *victim {
        loop {
            chunk[0] = std::hint::black_box(chunk[0].wrapping_add(1));
        }
    }
    chunk.fill(1);
}
shmpar::register_kernel!(spin_on: fn(&Ctx, ArrayViewMut1<u64>, &u64));

/// Rank 0 takes the lock and waits at the barrier; the others wait for the
/// lock before the barrier: nobody can go on.
fn lock_across_barrier(ctx: &Ctx, (_rows, shared): (ArrayView1<u64>, LockedView<u64, Ix1>), _: &()) {
    if ctx.rank() == 0 {
        let _guard = shared.lock().expect("lock");
        ctx.barrier();
    } else {
        std::thread::sleep(Duration::from_millis(20));
        shared.with_lock(|mut v| v[0] += 1);
        ctx.barrier();
    }
}
shmpar::register_kernel!(lock_across_barrier: fn(&Ctx, (ArrayView1<u64>, LockedView<u64, Ix1>), &()));

fn fill_seven(mut chunk: ArrayViewMut1<u64>) {
    chunk.fill(7);
}
shmpar::register_kernel!(fill_seven: fn(ArrayViewMut1<u64>));

/// The job's error must be a timeout naming exactly `expected` (in any
/// order), after about `timeout`, with the pool's workers replaced.
fn expect_timeout(
    result: shmpar::Result<()>,
    expected: &[usize],
    timeout: Duration,
    took: Duration,
) -> Check {
    match result {
        Err(Error::JobTimeout {
            mut unfinished,
            cancelled: false,
            health: PoolHealth::Replaced,
            elapsed,
        }) => {
            unfinished.sort_unstable();
            if unfinished != expected {
                return Err(format!("unfinished {unfinished:?}, expected {expected:?}"));
            }
            if elapsed < timeout || took > timeout + Duration::from_secs(3) {
                return Err(format!(
                    "timed out after {elapsed:?} (call took {took:?}), timeout {timeout:?}"
                ));
            }
            Ok(())
        }
        other => Err(format!("expected a timeout naming {expected:?}, got {other:?}")),
    }
}

/// The pool works after a failure: a job fills every element.
fn next_job_works(pool: &Pool, a: &mut SharedArray<u64, Ix1>) -> Check {
    pool.for_each_chunk(&mut *a, fill_seven).map_err(e)?;
    if a.view().iter().all(|&x| x == 7) {
        Ok(())
    } else {
        Err("the next job gave wrong values".into())
    }
}

fn endless_loop(pool: &Pool, prefix: &str, timeout: Duration, victim: usize) -> Check {
    let mut a = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "loop"), 64).map_err(e)?;
    let t = Instant::now();
    let result = pool.run(&mut a, victim as u64, spin_on);
    expect_timeout(result, &[victim], timeout, t.elapsed())?;
    next_job_works(pool, &mut a)
}

fn stopped_worker(pool: &Pool, prefix: &str, timeout: Duration, victim: usize) -> Check {
    let probe = SharedArray::<u8, Ix1>::create_with(&opts(prefix, "probe"), 64).map_err(e)?;
    let pids = pool_pids(pool, &probe).map_err(e)?;
    let mut a = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "stopped"), 64).map_err(e)?;
    // SAFETY: kill has no memory arguments; the pid is our worker's.
    unsafe { libc::kill(pids[victim], libc::SIGSTOP) };
    let t = Instant::now();
    let result = pool.for_each_chunk(&mut a, fill_seven);
    expect_timeout(result, &[victim], timeout, t.elapsed())?;
    if common::running(pids[victim]) {
        return Err(format!("the stopped worker {} still exists", pids[victim]));
    }
    next_job_works(pool, &mut a)
}

fn lock_held_across_barrier(pool: &Pool, prefix: &str, timeout: Duration) -> Check {
    let rows = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "rows"), 64).map_err(e)?;
    let mut shared = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "shared"), 1).map_err(e)?;
    let t = Instant::now();
    let result = pool.run((&rows, locked(&mut shared)), (), lock_across_barrier);
    let everyone: Vec<usize> = (0..pool.workers()).collect();
    expect_timeout(result, &everyone, timeout, t.elapsed())?;
    let mut a = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "after"), 64).map_err(e)?;
    next_job_works(pool, &mut a)
}

/// A thread cancels a job that would never end.
fn cancel_from_a_thread(pool: &Pool, prefix: &str) -> Check {
    let mut a = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "cancel"), 64).map_err(e)?;
    let canceller = pool.canceller();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        canceller.cancel();
    });
    let result = pool.run(&mut a, 0u64, spin_on);
    thread
        .join()
        .map_err(|_| "the cancelling thread panicked".to_string())?;
    match result {
        Err(Error::JobTimeout {
            unfinished,
            cancelled: true,
            health: PoolHealth::Replaced,
            ..
        }) if unfinished == [0] => {}
        other => return Err(format!("expected a cancellation naming worker 0, got {other:?}")),
    }
    next_job_works(pool, &mut a)
}

/// A forked child that drops its copy of the pool (and of an array) must
/// leave the parent's workers and array alone.
fn forked_child_drops_its_copies(pool: &Pool, prefix: &str) -> Check {
    let mut a = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "forkcopy"), 64).map_err(e)?;
    let probe = SharedArray::<u8, Ix1>::create_with(&opts(prefix, "forkprobe"), 64).map_err(e)?;
    let before = pool_pids(pool, &probe).map_err(e)?;
    // SAFETY: this driver is single-threaded here; the child only drops
    // values and exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // The child's copies: dropping them must not stop the parent's
        // workers or unlink the parent's arrays.
        // SAFETY: the child owns its copy of the parent's memory; these
        // bitwise copies stand for "the child's copies" of the pool and the
        // array, and the originals are never dropped here (the child
        // `_exit`s), so each copy is dropped exactly once.
        let copy_of_pool: Pool = unsafe { std::ptr::read(pool) };
        // SAFETY: as above.
        let copy_of_array: SharedArray<u64, Ix1> = unsafe { std::ptr::read(&a) };
        drop(copy_of_pool);
        drop(copy_of_array);
        // SAFETY: _exit is always sound.
        unsafe { libc::_exit(0) };
    }
    if common::wait_child(child, Duration::from_secs(10)) != Some(0) {
        return Err("the forked child did not exit cleanly".into());
    }
    let after = pool_pids(pool, &probe).map_err(e)?;
    if before != after {
        return Err(format!(
            "the child's drop changed the workers: {before:?} then {after:?}"
        ));
    }
    next_job_works(pool, &mut a)
}

fn opts(prefix: &str, what: &str) -> SegmentOptions {
    SegmentOptions::new().name(&format!("{prefix}{what}"))
}

/// `deadline [--trials N] [--start fork|spawn]`.
pub(crate) fn run(args: &Args) -> Tally {
    let start = if args.get("start") == Some("spawn") {
        Start::Spawn
    } else {
        Start::Fork
    };
    let label = if start == Start::Spawn { "spawn" } else { "fork" };
    let mut tally = Tally::new(&format!("deadline-{label}"));
    let prefix = common::prefix(&format!("deadline{label}"));
    let trials = args.num("trials", 3);
    let timeout = Duration::from_millis(300);
    let pool = match Pool::builder()
        .workers(2)
        .start(start)
        .job_timeout(timeout)
        .build()
    {
        Ok(pool) => pool,
        Err(err) => {
            tally.trial("build pool", Err(e(err)));
            return tally;
        }
    };
    for t in 0..trials {
        let victim = (t % 2) as usize;
        let outcome = endless_loop(&pool, &prefix, timeout, victim);
        tally.trial("endless loop", outcome);
        let outcome = stopped_worker(&pool, &prefix, timeout, 1 - victim);
        tally.trial("SIGSTOPped worker", outcome);
        let outcome = lock_held_across_barrier(&pool, &prefix, timeout);
        tally.trial("lock held across a barrier", outcome);
        // The pool (and its control segment) lives on: check this trial's
        // arrays only; the check after the pool drops covers everything.
        let left = common::segments_of(&prefix, -1);
        let outcome = if left.is_empty() {
            Ok(())
        } else {
            Err(format!("arrays left after the trial: {left:?}"))
        };
        tally.trial("the trial's arrays are gone", outcome);
    }
    // Cancellation and fork copies on fork pools: a spawn pool has no
    // thread rule to meet and no forked copies.
    if start == Start::Fork {
        let outcome = cancel_from_a_thread(&pool, &prefix);
        tally.trial("cancel from another thread", outcome);
        let outcome = forked_child_drops_its_copies(&pool, &prefix);
        tally.trial("a forked child drops its copies", outcome);
    }
    drop(pool);
    let leftovers = tally.after_trial(&prefix);
    tally.trial("nothing left behind", leftovers);
    tally
}
