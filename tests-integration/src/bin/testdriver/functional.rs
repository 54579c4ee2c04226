//! Issue 3 §9: every runtime feature, across real processes, with fork and
//! with spawn start.
//!
//! Every check runs on both starts, so its kernels are named `fn` items
//! registered with `shmpar::register_kernel!` (a spawned worker finds a
//! kernel by its registered name). Closures remain only where a fork pool
//! alone runs them: `run_forked`, and the unregistered-closure check.

use ndarray::{Array1, ArrayView1, ArrayViewMut1, ArrayViewMut2, Ix1, Ix2};
use shmpar::core::chunk::chunk_range;
use shmpar::{Ctx, Error, Pool, Scope, SegmentOptions, Serde, SharedArray, Start};
use shmpar_kernels::stencil::{heat_serial_1d, heat_step_1d};

use crate::common::{Tally, children_of, getpid};
use crate::{Args, pool_pids};

pub(crate) type Check = Result<(), String>;
type CheckFn<'a> = Box<dyn Fn() -> Check + 'a>;

pub(crate) fn opts(prefix: &str, what: &str) -> SegmentOptions {
    SegmentOptions::new().name(&format!("{prefix}{what}"))
}

pub(crate) fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

fn times_three_plus_one(mut chunk: ArrayViewMut1<u64>) {
    chunk.mapv_inplace(|x| x * 3 + 1);
}
shmpar::register_kernel!(times_three_plus_one: fn(ArrayViewMut1<u64>));

fn add_one_2d(mut chunk: ArrayViewMut2<f64>) {
    chunk.mapv_inplace(|x| x + 1.0);
}
shmpar::register_kernel!(add_one_2d: fn(ArrayViewMut2<f64>));

fn add_one(mut chunk: ArrayViewMut1<f64>) {
    chunk.mapv_inplace(|x| x + 1.0);
}
shmpar::register_kernel!(add_one: fn(ArrayViewMut1<f64>));

pub(crate) fn sum_f64(chunk: ArrayView1<f64>) -> f64 {
    chunk.sum()
}
shmpar::register_kernel!(sum_f64: fn(ArrayView1<f64>) -> f64);

fn wrapping_sum(chunk: ArrayView1<u64>) -> u64 {
    chunk.iter().fold(0u64, |s, &x| s.wrapping_add(x))
}
shmpar::register_kernel!(wrapping_sum: fn(ArrayView1<u64>) -> u64);

pub(crate) fn fill_f64(_ctx: &Ctx, mut chunk: ArrayViewMut1<f64>, value: &f64) {
    chunk.fill(*value);
}
shmpar::register_kernel!(fill_f64: fn(&Ctx, ArrayViewMut1<f64>, &f64));

/// A serde parameter: an operation's name and its operands.
fn apply_op(_ctx: &Ctx, mut chunk: ArrayViewMut1<f64>, Serde((op, v)): &Serde<(String, Vec<f64>)>) {
    if op == "scale" {
        chunk.mapv_inplace(|x| x * v[0] + v[1]);
    }
}
shmpar::register_kernel!(apply_op: fn(&Ctx, ArrayViewMut1<f64>, &Serde<(String, Vec<f64>)>));

/// Stamps the worker's rank on its rows, or -1 if the context disagrees
/// with the rows the worker got.
fn stamp_rank(ctx: &Ctx, mut chunk: ArrayViewMut1<f64>, _: &()) {
    let ok = chunk.len() == ctx.rows().len() && ctx.workers() > ctx.rank() && ctx.step() == 0;
    chunk.fill(if ok { ctx.rank() as f64 } else { -1.0 });
}
shmpar::register_kernel!(stamp_rank: fn(&Ctx, ArrayViewMut1<f64>, &()));

/// A serde partial: a histogram of the values (ranks) in `bins` bins.
fn rank_histogram(_ctx: &Ctx, chunk: ArrayView1<f64>, bins: &usize) -> Serde<Vec<u64>> {
    let mut h = vec![0u64; *bins];
    chunk.iter().for_each(|&x| h[(x as usize).min(bins - 1)] += 1);
    Serde(h)
}
shmpar::register_kernel!(rank_histogram: fn(&Ctx, ArrayView1<f64>, &usize) -> Serde<Vec<u64>>);

pub(crate) fn heat_step(ctx: &Ctx, src: ArrayView1<f64>, dst: ArrayViewMut1<f64>, alpha: &f64) {
    heat_step_1d(src, dst, ctx.rows(), *alpha).expect("heat step");
}
shmpar::register_kernel!(heat_step: fn(&Ctx, ArrayView1<f64>, ArrayViewMut1<f64>, &f64));

/// [`phase_kernel`] as a job: the board's name and the phase count travel
/// as parameters.
pub(crate) fn phases_job(
    ctx: &Ctx,
    _chunk: ArrayView1<u64>,
    Serde((board, phases)): &Serde<(String, u64)>,
) -> u64 {
    phase_kernel(ctx, board, *phases)
}
shmpar::register_kernel!(phases_job: fn(&Ctx, ArrayView1<u64>, &Serde<(String, u64)>) -> u64);

fn ignore_params(_ctx: &Ctx, _chunk: ArrayViewMut1<u8>, _: &Serde<Vec<u8>>) {}
shmpar::register_kernel!(ignore_params: fn(&Ctx, ArrayViewMut1<u8>, &Serde<Vec<u8>>));

/// A partial of 100 KB, over the default partial area (64 KiB).
fn huge_partial(_ctx: &Ctx, _chunk: ArrayView1<u8>, _: &()) -> Serde<Vec<u8>> {
    Serde(vec![1u8; 100_000])
}
shmpar::register_kernel!(huge_partial: fn(&Ctx, ArrayView1<u8>, &()) -> Serde<Vec<u8>>);

fn fill_nine(mut chunk: ArrayViewMut1<u8>) {
    chunk.fill(9);
}
shmpar::register_kernel!(fill_nine: fn(ArrayViewMut1<u8>));

pub(crate) fn fill_u32(_ctx: &Ctx, mut chunk: ArrayViewMut1<u32>, value: &u32) {
    chunk.fill(*value);
}
shmpar::register_kernel!(fill_u32: fn(&Ctx, ArrayViewMut1<u32>, &u32));

/// `for_each_chunk` changes every element in place exactly once.
fn each_element_once(pool: &Pool, prefix: &str) -> Check {
    let n = 1_000_003;
    let mut a = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "once"), n).map_err(e)?;
    a.view_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, x)| *x = i as u64);
    pool.for_each_chunk(&mut a, times_three_plus_one).map_err(e)?;
    if let Some((i, x)) = a.view().iter().enumerate().find(|&(i, &x)| x != i as u64 * 3 + 1) {
        return Err(format!("element {i} is {x}, expected {}", i as u64 * 3 + 1));
    }
    // Two dimensions, rows that do not divide evenly.
    let mut b = SharedArray::<f64, Ix2>::create_with(&opts(prefix, "once2d"), (1001, 7)).map_err(e)?;
    pool.for_each_chunk(&mut b, add_one_2d).map_err(e)?;
    if b.view().iter().any(|&x| x != 1.0) {
        return Err("a 2-D element was not incremented exactly once".into());
    }
    Ok(())
}

/// `map_reduce` equals the serial result, and repeated runs agree to the bit.
fn map_reduce_matches_serial(pool: &Pool, prefix: &str) -> Check {
    let n = 1_000_003;
    let source = Array1::from_shape_fn(n, |i| ((i as f64) * 0.618_033_988_7).sin() * 1e3);
    let a = SharedArray::from_array_with(&opts(prefix, "reduce"), &source).map_err(e)?;
    let w = pool.workers();
    let serial = (0..w)
        .map(|r| source.slice(ndarray::s![chunk_range(n, w, r)]).sum())
        .fold(None, |acc: Option<f64>, x| Some(acc.map_or(x, |acc| acc + x)))
        .unwrap_or(0.0);
    let first = pool.map_reduce(&a, sum_f64, |x, y| x + y).map_err(e)?;
    if first.to_bits() != serial.to_bits() {
        return Err(format!(
            "parallel sum {first} differs from the chunked serial sum {serial}"
        ));
    }
    for _ in 0..4 {
        let again = pool.map_reduce(&a, sum_f64, |x, y| x + y).map_err(e)?;
        if again.to_bits() != first.to_bits() {
            return Err(format!("sum not deterministic: {again} then {first}"));
        }
    }
    // An exact integer reduction equals the plain serial loop.
    let ints = SharedArray::from_array_with(
        &opts(prefix, "reduceint"),
        &Array1::from_shape_fn(n, |i| (i as u64).wrapping_mul(2_654_435_761)),
    )
    .map_err(e)?;
    let serial: u64 = ints.view().iter().fold(0u64, |s, &x| s.wrapping_add(x));
    let parallel = pool
        .map_reduce(&ints, wrapping_sum, u64::wrapping_add)
        .map_err(e)?;
    if parallel != serial {
        return Err(format!("integer sum {parallel} != serial {serial}"));
    }
    Ok(())
}

/// A capturing kernel runs (on per-job workers) and sees the captured values.
fn capturing_closure(pool: &Pool, prefix: &str, start: Start) -> Check {
    let mut a = SharedArray::<f64, Ix1>::create_with(&opts(prefix, "capture"), 10_007).map_err(e)?;
    let factor = 2.5;
    let table = [10.0, 20.0, 30.0];
    let result = pool.run_forked(&mut a, (), move |_ctx, mut chunk, _| {
        chunk.mapv_inplace(|x| x * factor + table[2]);
    });
    match (start, result) {
        (Start::Spawn, Err(Error::CapturingKernel)) => Ok(()),
        (Start::Spawn, other) => Err(format!("spawn pool with a capturing kernel gave {other:?}")),
        (_, Err(err)) => Err(e(err)),
        (_, Ok(())) if a.view().iter().all(|&x| x == 30.0) => Ok(()),
        (_, Ok(())) => Err("captured values were not seen".into()),
    }
}

/// Parameters through `*_with`: plain numbers and serde values; the context.
fn with_params(pool: &Pool, prefix: &str) -> Check {
    let n = 100_003;
    let mut a = SharedArray::<f64, Ix1>::create_with(&opts(prefix, "with"), n).map_err(e)?;
    pool.for_each_chunk_with(&mut a, 1.5f64, fill_f64).map_err(e)?;
    pool.for_each_chunk_with(
        &mut a,
        Serde((String::from("scale"), vec![2.0f64, -1.0])),
        apply_op,
    )
    .map_err(e)?;
    if a.view().iter().any(|&x| x != 2.0) {
        return Err("parameters did not reach the kernel".into());
    }
    // Each worker stamps its rank on its rows: they must be chunk_range's.
    let w = pool.workers();
    pool.for_each_chunk_with(&mut a, (), stamp_rank).map_err(e)?;
    for r in 0..w {
        if a.view()
            .slice(ndarray::s![chunk_range(n, w, r)])
            .iter()
            .any(|&x| x != r as f64)
        {
            return Err(format!("rank {r} did not own rows {:?}", chunk_range(n, w, r)));
        }
    }
    // A serde partial: a histogram of the ranks.
    let hist = pool
        .map_reduce_with(&a, 4usize, rank_histogram, |Serde(x), Serde(y)| {
            Serde(x.iter().zip(&y).map(|(a, b)| a + b).collect())
        })
        .map_err(e)?;
    let expected: Vec<u64> = (0..4)
        .map(|b| {
            (0..w)
                .filter(|&r| r.min(3) == b)
                .map(|r| chunk_range(n, w, r).len() as u64)
                .sum()
        })
        .collect();
    if hist.0 != expected {
        return Err(format!("histogram {:?}, expected {expected:?}", hist.0));
    }
    Ok(())
}

/// `double_buffer` heat steps equal the serial stencil bit for bit.
fn double_buffer_heat(pool: &Pool, prefix: &str) -> Check {
    let n = 10_007;
    let init = Array1::from_shape_fn(n, |i| if i % 1000 == 0 { 100.0 } else { (i % 7) as f64 });
    for steps in [1usize, 2, 7, 50] {
        let mut a =
            SharedArray::from_array_with(&opts(prefix, &format!("heata{steps}")), &init).map_err(e)?;
        let mut b =
            SharedArray::from_array_with(&opts(prefix, &format!("heatb{steps}")), &init).map_err(e)?;
        pool.double_buffer(&mut a, &mut b, steps, 0.25f64, heat_step)
            .map_err(e)?;
        let mut reference = init.clone();
        heat_serial_1d(reference.view_mut(), steps, 0.25);
        let result = if steps.is_multiple_of(2) {
            a.view()
        } else {
            b.view()
        };
        if result != reference.view() {
            return Err(format!("{steps} heat steps differ from heat_serial_1d"));
        }
    }
    Ok(())
}

/// A kernel of several phases separated by `ctx.barrier()`: in each phase
/// every worker writes its rows of a board, then reads everybody's rows.
fn multi_phase_barrier(pool: &Pool, prefix: &str) -> Check {
    let w = pool.workers();
    let n = 1009;
    let board = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "board"), n).map_err(e)?;
    let data = SharedArray::<u64, Ix1>::create_with(&opts(prefix, "phasedata"), n).map_err(e)?;
    let phases = 6u64;
    let bad = pool
        .map_reduce_with(&data, Serde((board.name(), phases)), phases_job, |x, y| x + y)
        .map_err(e)?;
    drop(board);
    if bad != 0 {
        return Err(format!(
            "{bad} stale or wrong board reads across {phases} phases of {w} workers"
        ));
    }
    Ok(())
}

/// One worker's phases: returns how many board entries it read wrong.
pub fn phase_kernel(ctx: &Ctx<'_>, board: &str, phases: u64) -> u64 {
    let Ok(mut board) = SharedArray::<u64, Ix1>::attach(board) else {
        return u64::MAX / 4;
    };
    let n = board.len();
    let mut bad = 0;
    for phase in 0..phases {
        let rows = chunk_range(n, ctx.workers(), ctx.rank());
        board
            .view_mut()
            .slice_mut(ndarray::s![rows])
            .fill(phase * 1000 + ctx.rank() as u64);
        ctx.barrier();
        for r in 0..ctx.workers() {
            let expect = phase * 1000 + r as u64;
            bad += board
                .view()
                .slice(ndarray::s![chunk_range(n, ctx.workers(), r)])
                .iter()
                .filter(|&&x| x != expect)
                .count() as u64;
        }
        ctx.barrier();
    }
    bad
}

/// Whether process `pid` maps the shared object `name`.
fn maps(pid: i32, name: &str) -> Result<bool, String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|err| format!("maps of {pid}: {err}"))?;
    Ok(maps
        .lines()
        .any(|line| line.ends_with(&format!("/dev/shm/{name}")) || line.contains(&format!("/{name} "))))
}

/// An array the coordinator let go of (persisted, so its name lives on) is
/// unmapped by every worker by the end of the next job; one it still holds
/// stays mapped (issue 10.9).
fn dropped_arrays_are_released(pool: &Pool, prefix: &str) -> Check {
    let probe = SharedArray::<u8, Ix1>::create_with(&opts(prefix, "evictprobe"), 64).map_err(e)?;
    let pids = pool_pids(pool, &probe).map_err(e)?;
    let gone_name = format!("{prefix}evictgone");
    let mut gone =
        SharedArray::<f64, Ix1>::create_with(&opts(prefix, "evictgone").persist(true), 100_000).map_err(e)?;
    let mut kept = SharedArray::<f64, Ix1>::create_with(&opts(prefix, "evictkept"), 100_000).map_err(e)?;
    // Whatever happens below, the persisted name is removed at the end.
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(&self.0));
        }
    }
    let _unlink = Unlink(gone_name.clone());
    pool.for_each_chunk(&mut gone, add_one).map_err(e)?;
    pool.for_each_chunk(&mut kept, add_one).map_err(e)?;
    for &pid in &pids {
        if !maps(pid, &gone_name)? {
            return Err(format!("worker {pid} did not map {gone_name} after a job on it"));
        }
    }
    drop(gone);
    // The next job, on another array: by its end the workers let go.
    pool_pids(pool, &probe).map_err(e)?;
    for &pid in &pids {
        if maps(pid, &gone_name)? {
            return Err(format!(
                "worker {pid} still maps {gone_name}, which the coordinator dropped a job ago"
            ));
        }
        if !maps(pid, &format!("{prefix}evictkept"))? {
            return Err(format!(
                "worker {pid} dropped the mapping of an array the coordinator still holds"
            ));
        }
    }
    drop(kept);
    Ok(())
}

/// Persistent workers are the same processes before and after other jobs;
/// a capturing kernel runs on other, short-lived processes.
fn persistent_workers(pool: &Pool, prefix: &str, start: Start) -> Check {
    let probe = SharedArray::<u8, Ix1>::create_with(&opts(prefix, "pids"), 64).map_err(e)?;
    let before = pool_pids(pool, &probe).map_err(e)?;
    let mut a = SharedArray::<f64, Ix1>::create_with(&opts(prefix, "between"), 1000).map_err(e)?;
    for _ in 0..5 {
        pool.for_each_chunk(&mut a, add_one).map_err(e)?;
    }
    let after = pool_pids(pool, &probe).map_err(e)?;
    if before != after {
        return Err(format!(
            "worker pids changed across jobs: {before:?} then {after:?}"
        ));
    }
    let me = getpid();
    if before.contains(&me) || before.len() != pool.workers() {
        return Err(format!(
            "worker pids {before:?} are not {} other processes",
            pool.workers()
        ));
    }
    let children = children_of(me);
    if before.iter().any(|p| !children.contains(p)) {
        return Err(format!(
            "workers {before:?} are not all children of the coordinator"
        ));
    }
    if start == Start::Fork {
        let offset = 0i32;
        let transient = pool
            .map_reduce_forked(
                &probe,
                (),
                move |ctx, _c, _: &()| Serde(vec![(ctx.rank(), std::process::id() as i32 + offset)]),
                |Serde(mut x), Serde(y)| {
                    x.extend(y);
                    Serde(x)
                },
            )
            .map_err(e)?;
        if transient.0.iter().any(|(_, p)| before.contains(p)) {
            return Err("a capturing kernel ran on a persistent worker".into());
        }
    }
    Ok(())
}

/// `Scope` removes what it owns, also when the code in it panics.
fn scope_cleanup(prefix: &str) -> Check {
    let names = [format!("{prefix}scope1"), format!("{prefix}scope2")];
    {
        let scope = Scope::new();
        let a = scope
            .create_with::<f64, _>(&SegmentOptions::new().name(&names[0]), 100)
            .map_err(e)?;
        let b = scope
            .create_with::<u8, _>(&SegmentOptions::new().name(&names[1]).persist(true), 100)
            .map_err(e)?;
        std::mem::forget(a);
        drop(b);
    }
    let panicked = std::panic::catch_unwind(|| {
        let scope = Scope::new();
        let _a = scope
            .create_with::<f64, _>(&SegmentOptions::new().name(&format!("{prefix}scope3")), 100)
            .expect("create");
        let kept = scope
            .create_with::<f64, _>(&SegmentOptions::new().name(&format!("{prefix}scope4")), 100)
            .expect("create");
        std::mem::forget(kept);
        panic!("expected panic inside a scope");
    });
    if panicked.is_ok() {
        return Err("the scope closure did not panic".into());
    }
    let left: Vec<String> = ["scope1", "scope2", "scope3", "scope4"]
        .iter()
        .map(|s| format!("{prefix}{s}"))
        .filter(|n| std::path::Path::new("/dev/shm").join(n).exists())
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("scope left {left:?}"))
    }
}

/// Argument errors: 0 workers, parameters over the pool's parameter area,
/// a partial result larger than its slot; the pool works after each.
fn bad_arguments(pool: &Pool, prefix: &str, start: Start) -> Check {
    match Pool::builder().workers(0).start(start).build() {
        Err(Error::InvalidWorkers { requested: 0, .. }) => {}
        other => return Err(format!("0 workers gave {other:?}")),
    }
    let mut a = SharedArray::<u8, Ix1>::create_with(&opts(prefix, "args"), 999).map_err(e)?;
    let too_many = shmpar::DEFAULT_PARAM_BYTES + 4000;
    match pool.for_each_chunk_with(&mut a, Serde(vec![7u8; too_many]), ignore_params) {
        Err(Error::TooLarge {
            size, max, setting, ..
        }) if size > max && max == shmpar::DEFAULT_PARAM_BYTES && setting == "PoolBuilder::param_bytes" => {}
        other => return Err(format!("{too_many} bytes of parameters gave {other:?}")),
    }
    // Partials larger than a worker's area travel through a spill segment
    // that the worker removes with the next job: the reduction succeeds.
    match pool.map_reduce_with(&a, (), huge_partial, |mut x: Serde<Vec<u8>>, y| {
        x.0.extend(y.0);
        x
    }) {
        Ok(Serde(all)) if all.len() == 100_000 * pool.workers() && all.iter().all(|&b| b == 1) => {}
        other => return Err(format!("a 100 KB partial gave {:?}", other.map(|x| x.0.len()))),
    }
    pool.for_each_chunk(&mut a, fill_nine).map_err(e)?;
    if a.view().iter().any(|&x| x != 9) {
        return Err("the pool did not work after argument errors".into());
    }
    Ok(())
}

/// A fork pool refuses to start in a multithreaded process; a spawn pool
/// starts there and works.
fn fork_with_threads(prefix: &str) -> Check {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    let fork = Pool::builder().workers(2).build();
    let spawn = Pool::builder().workers(2).start(Start::Spawn).build();
    let result = match (fork, spawn) {
        (Err(Error::ForkWithThreads { threads }), Ok(pool)) if threads.is_none_or(|n| n >= 2) => {
            let mut a = SharedArray::<u32, Ix1>::create_with(&opts(prefix, "threads"), 77).map_err(e)?;
            pool.run(&mut a, 5u32, fill_u32).map_err(e)?;
            if a.view().iter().all(|&x| x == 5) {
                Ok(())
            } else {
                Err("spawn pool job wrong".into())
            }
        }
        (fork, spawn) => Err(format!(
            "with 2 threads: fork pool gave {:?}, spawn pool gave {:?}",
            fork.map(|_| ()),
            spawn.map(|_| ())
        )),
    };
    drop(tx);
    let _ = thread.join();
    result
}

pub fn run(args: &Args) -> Tally {
    let start = if args.get("start") == Some("spawn") {
        Start::Spawn
    } else {
        Start::Fork
    };
    let label = if start == Start::Spawn { "spawn" } else { "fork" };
    let name = format!("functional-{label}");
    let prefix = crate::common::prefix(&name);
    let mut tally = Tally::new(&name);
    let pool = match Pool::builder().workers(3).start(start).build() {
        Ok(pool) => pool,
        Err(err) => {
            tally.trial("build pool", Err(e(err)));
            return tally;
        }
    };
    let checks: Vec<(&str, CheckFn<'_>)> = vec![
        (
            "for_each_chunk exactly once",
            Box::new(|| each_element_once(&pool, &prefix)),
        ),
        (
            "map_reduce equals serial",
            Box::new(|| map_reduce_matches_serial(&pool, &prefix)),
        ),
        (
            "capturing closure",
            Box::new(|| capturing_closure(&pool, &prefix, start)),
        ),
        ("_with params", Box::new(|| with_params(&pool, &prefix))),
        (
            "double_buffer heat",
            Box::new(|| double_buffer_heat(&pool, &prefix)),
        ),
        (
            "multi-phase barrier",
            Box::new(|| multi_phase_barrier(&pool, &prefix)),
        ),
        (
            "persistent workers",
            Box::new(|| persistent_workers(&pool, &prefix, start)),
        ),
        (
            "dropped arrays are released",
            Box::new(|| dropped_arrays_are_released(&pool, &prefix)),
        ),
        ("scope cleanup", Box::new(|| scope_cleanup(&prefix))),
        ("bad arguments", Box::new(|| bad_arguments(&pool, &prefix, start))),
        (
            "unregistered closure",
            Box::new(|| crate::nested::unregistered_closure(&pool, &prefix, start)),
        ),
        (
            "a kernel starts a shmpar program with its own pool",
            Box::new(|| crate::nested::kernel_starts_a_shmpar_program(&pool, &prefix)),
        ),
        (
            "three arrays of three types and shapes",
            Box::new(|| crate::several_arrays::three_arrays(&pool, &prefix)),
        ),
    ];
    for (label, check) in &checks {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .unwrap_or_else(|_| Err("the check panicked".into()));
        let outcome = outcome.and_then(|()| leftovers(&prefix));
        tally.trial(label, outcome);
    }
    drop(checks);
    drop(pool);
    let after = tally.after_trial(&prefix);
    tally.trial("pool drop leaves nothing", after);
    // Last: it starts a thread, after which this process may not fork.
    if start == Start::Fork {
        let outcome = fork_with_threads(&prefix).and_then(|()| tally.after_trial(&prefix));
        tally.trial("fork refused with threads, spawn works", outcome);
    }
    tally
}

/// Arrays of a check that outlived it.
fn leftovers(prefix: &str) -> Check {
    let left: Vec<String> = crate::common::leaked_segments(prefix)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("left behind: {left:?}"))
    }
}
