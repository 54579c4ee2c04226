//! The measurements, each run in a child process of its own (`harness
//! config ...`, `harness barrier ...`, `harness dispatch ...`), so that
//! every process pool is built while its process is still single-threaded,
//! and every cold measurement really starts cold.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ndarray::Ix1;
use shmpar::{Backend, BackendKind, Pool, SharedArray, whole};
use shmpar_benches::bandwidth::{self, Lane};
use shmpar_benches::barriers::{ProcessBarrier, ProcessGroup, ThreadGroup, median_phase_us};
use shmpar_benches::os;
use shmpar_benches::stats::{Summary, time_ms};
use shmpar_core::Scope;
use shmpar_kernels::Float;

use crate::results::{BarrierRow, Config, DispatchRow, Pss, SegmentRow};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// One timed operation of the warm phase.
type Op<'a, T> = Box<dyn FnMut(&mut SharedArray<T, Ix1>) -> Res<()> + 'a>;

/// Sum of the minor faults of `pids`.
fn faults(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|&p| shmpar_core::os::ProcStat::of(p).ok())
        .map(|stat| stat.minor_faults)
        .sum()
}

fn sqrt_job<T: Float + shmpar::Element>(b: &Backend, a: &mut SharedArray<T, Ix1>) -> Res<()> {
    b.run(a, (), |_ctx, chunk, _| shmpar_kernels::sqrt_abs(chunk))?;
    Ok(())
}

fn mean_job<T: Float + shmpar::Element>(b: &Backend, a: &SharedArray<T, Ix1>) -> Res<f64> {
    let sum = b.map_reduce_with(a, (), |_ctx, chunk, _| shmpar_kernels::sum(chunk), |x, y| x + y)?;
    Ok(sum / a.len() as f64)
}

/// One configuration: cold then warm, for every backend, on one array.
pub fn config<T: Float + shmpar::Element + Lane>(len: usize, workers: usize, repeat: usize) -> Res<Config> {
    let mut a = SharedArray::<T, Ix1>::create(len)?;
    shmpar_benches::fill_signed(a.view_mut().as_slice_mut().ok_or("array not contiguous")?);
    let mut out = Config {
        len,
        workers,
        dtype: a.segment().dtype().name().to_owned(),
        elem_bytes: size_of::<T>(),
        repeat,
        ..Config::default()
    };

    // Cold, processes first: the pool must fork before any thread exists.
    let (procs, build) = time_ms(|| Backend::new(BackendKind::Processes, workers));
    let procs = procs?;
    let pids = os::children();
    let before = faults(&pids);
    let (r, sqrt) = time_ms(|| sqrt_job(&procs, &mut a));
    r?;
    let mid = faults(&pids);
    let (m, mean) = time_ms(|| mean_job(&procs, &a));
    m?;
    out.worker_first_job_faults = mid.saturating_sub(before);
    out.processes.cold_build_ms = build;
    out.processes.cold_sqrt_ms = sqrt;
    out.processes.cold_mean_ms = mean;
    let before = faults(&pids);
    sqrt_job(&procs, &mut a)?;
    out.worker_second_job_faults = faults(&pids).saturating_sub(before);

    let pause = || std::thread::sleep(Duration::from_millis(20));
    pause();
    let (threads, build) = time_ms(|| Backend::new(BackendKind::Threads, workers));
    let threads = threads?;
    let (r, sqrt) = time_ms(|| sqrt_job(&threads, &mut a));
    r?;
    let (m, mean) = time_ms(|| mean_job(&threads, &a));
    m?;
    out.threads.cold_build_ms = build;
    out.threads.cold_sqrt_ms = sqrt;
    out.threads.cold_mean_ms = mean;

    let serial = Backend::new(BackendKind::Serial, workers)?;
    pause();
    let (r, sqrt) = time_ms(|| sqrt_job(&serial, &mut a));
    r?;
    let (m, mean) = time_ms(|| mean_job(&serial, &a));
    m?;
    out.serial.cold_sqrt_ms = sqrt;
    out.serial.cold_mean_ms = mean;

    pause();
    let slice = a.view_mut().into_slice().ok_or("array not contiguous")?;
    let ((), rw) = time_ms(|| bandwidth::rw_pass(slice, workers));
    let (_, read) = time_ms(|| black_box(bandwidth::read_pass(slice, workers)));
    out.bound.cold_sqrt_ms = rw;
    out.bound.cold_mean_ms = read;

    // Warm. Large arrays: the backends take turns, so drifts of a shared
    // machine hit all alike, with a pause before each job so the previous
    // backend's spinning workers (pool workers spin 50 µs, rayon's threads
    // yield for a while) have gone to sleep; each round starts with the
    // next backend, so none always runs first (or always after the same
    // one). Small arrays: each backend runs its repeats back to back after
    // a pause (a pause before each job would measure wake-ups instead of
    // jobs).
    let interleave = len >= 1_000_000;
    let settle = || std::thread::sleep(Duration::from_millis(if interleave { 2 } else { 10 }));
    let mut samples = vec![Vec::new(); 8];
    let mut ops: Vec<Op<'_, T>> = Vec::new();
    for b in [&procs, &threads, &serial] {
        ops.push(Box::new(move |a| sqrt_job(b, a)));
        ops.push(Box::new(move |a| mean_job(b, a).map(drop)));
    }
    ops.push(Box::new(move |a| {
        bandwidth::rw_pass(a.view_mut().into_slice().ok_or("array not contiguous")?, workers);
        Ok(())
    }));
    ops.push(Box::new(move |a| {
        black_box(bandwidth::read_pass(
            a.view().to_slice().ok_or("array not contiguous")?,
            workers,
        ));
        Ok(())
    }));
    let timed = |op: &mut Op<'_, T>, a: &mut SharedArray<T, Ix1>| -> Res<f64> {
        let t = Instant::now();
        op(a)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let backends = ops.len() / 2;
    if interleave {
        for round in 0..repeat.max(1) {
            // Backend pairs (sqrt, then mean) rotate: round r starts with
            // backend r mod 4.
            for k in 0..backends {
                let b = (round + k) % backends;
                for i in [2 * b, 2 * b + 1] {
                    settle();
                    samples[i].push(timed(&mut ops[i], &mut a)?);
                }
            }
        }
    } else {
        for (i, op) in ops.iter_mut().enumerate() {
            settle();
            for _ in 0..repeat.max(1) {
                samples[i].push(timed(op, &mut a)?);
            }
        }
    }
    drop(ops);
    for (i, t) in [
        &mut out.processes,
        &mut out.threads,
        &mut out.serial,
        &mut out.bound,
    ]
    .into_iter()
    .enumerate()
    {
        t.warm_sqrt_ms = Summary::of(&samples[2 * i]);
        t.warm_mean_ms = Summary::of(&samples[2 * i + 1]);
    }
    // Paired ratios: sample k of every op comes from the same round (or,
    // for small arrays, the same position in each backend's run).
    let paired = |x: &[f64], y: &[f64]| Summary::of(&x.iter().zip(y).map(|(x, y)| x / y).collect::<Vec<_>>());
    out.sqrt_vs_threads = paired(&samples[0], &samples[2]);
    out.mean_vs_threads = paired(&samples[1], &samples[3]);
    out.sqrt_vs_bound = paired(&samples[0], &samples[6]);
    out.mean_vs_bound = paired(&samples[1], &samples[7]);
    // The same data through every backend: the means must agree bit for bit.
    out.means = [
        mean_job(&procs, &a)?,
        mean_job(&threads, &a)?,
        mean_job(&serial, &a)?,
    ];

    out.pss = Some(pss_during_jobs(&procs, &mut a, &pids)?);
    Ok(out)
}

/// The largest total PSS of this process and its workers while the workers
/// run sqrt jobs (sampled by a thread every millisecond).
fn pss_during_jobs<T: Float + shmpar::Element>(
    procs: &Backend,
    a: &mut SharedArray<T, Ix1>,
    pids: &[i32],
) -> Res<Pss> {
    let me = std::process::id() as i32;
    let running = AtomicBool::new(true);
    let array_bytes = (a.len() * size_of::<T>()) as u64;
    let best = std::thread::scope(|s| -> Res<Pss> {
        let sampler = s.spawn(|| {
            let mut best = Pss::default();
            let mut samples = 0;
            loop {
                let coordinator = os::pss_bytes(me).unwrap_or(0);
                let workers: Vec<u64> = pids.iter().map(|&p| os::pss_bytes(p).unwrap_or(0)).collect();
                let total = coordinator + workers.iter().sum::<u64>();
                samples += 1;
                if total > best.total_bytes {
                    best = Pss {
                        array_bytes,
                        total_bytes: total,
                        coordinator_bytes: coordinator,
                        worker_bytes: workers,
                        samples: 0,
                    };
                }
                if !running.load(Ordering::Relaxed) {
                    best.samples = samples;
                    return best;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let t = Instant::now();
        let mut r = Ok(());
        while r.is_ok() && (t.elapsed() < Duration::from_millis(100) || t.elapsed().is_zero()) {
            r = sqrt_job(procs, a);
        }
        running.store(false, Ordering::Relaxed);
        let best = sampler.join().map_err(|_| "the PSS sampler panicked")?;
        r.map(|()| best)
    })?;
    Ok(best)
}

/// The dispatch rows' names: the report's targets look them up by these.
pub const DISPATCH_ONE: &str = "pool: run(&mut a) (persistent workers)";
pub const DISPATCH_THREE: &str = "pool: run((&mut a, &b, whole(&c))) (persistent workers)";

/// Per-job latency of the dispatch paths, on 1,000-element arrays: one
/// array, and three (`&mut a` and `&b` split by rows, `whole(&c)` read
/// whole by every worker).
pub fn dispatch(workers: usize, jobs: usize) -> Res<Vec<DispatchRow>> {
    let mut rows = Vec::new();
    let mut push = |name: &str, samples: Vec<f64>| {
        rows.push(DispatchRow {
            name: name.to_owned(),
            us: Summary::of(&samples),
        })
    };
    let pool = Pool::builder().workers(workers).build()?;
    let mut a = SharedArray::<f64, Ix1>::create(1000)?;
    let b = SharedArray::<f64, Ix1>::create(1000)?;
    let c = SharedArray::<f64, Ix1>::create(1000)?;
    let time_jobs = |n: usize, f: &mut dyn FnMut() -> Res<()>| -> Res<Vec<f64>> {
        for _ in 0..n.div_ceil(10) {
            f()?;
        }
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f().map(|()| t.elapsed().as_secs_f64() * 1e6)
            })
            .collect()
    };
    let s = time_jobs(jobs, &mut || {
        pool.run(&mut a, 1.0, |_ctx, mut a, k| a[0] += *k)?;
        Ok(())
    })?;
    push(DISPATCH_ONE, s);
    let s = time_jobs(jobs, &mut || {
        pool.run((&mut a, &b, whole(&c)), 1.0, |_ctx, (mut a, b, c), k| {
            a[0] += b[0] * *k + c[999]
        })?;
        Ok(())
    })?;
    push(DISPATCH_THREE, s);
    let s = time_jobs(jobs, &mut || {
        black_box(pool.map_reduce_with(&a, (), |_ctx, a, _| a[0], |x, y| x + y)?);
        Ok(())
    })?;
    push("pool: map_reduce_with(&a) (persistent workers)", s);
    let k = black_box(1.0);
    let s = time_jobs((jobs / 40).max(5), &mut || {
        pool.run_forked(&mut a, (), move |_, mut a, _| a[0] += k)?;
        Ok(())
    })?;
    push("pool: run_forked, a capturing closure (a fork per job)", s);

    let rayon_pool = rayon::ThreadPoolBuilder::new().num_threads(workers).build()?;
    let s = time_jobs(jobs, &mut || {
        rayon_pool.broadcast(|b| black_box(b.index()));
        Ok(())
    })?;
    push("rayon: ThreadPool::broadcast", s);
    let s = time_jobs(jobs, &mut || {
        rayon_pool.install(|| black_box(0));
        Ok(())
    })?;
    push("rayon: ThreadPool::install", s);
    let threads = Backend::new(BackendKind::Threads, workers)?;
    let s = time_jobs(jobs, &mut || {
        threads.run(&mut a, 1.0, |_ctx, mut a, k| a[0] += *k)?;
        Ok(())
    })?;
    push("Backend threads: run(&mut a)", s);
    let s = time_jobs(jobs, &mut || {
        threads.run((&mut a, &b, whole(&c)), 1.0, |_ctx, (mut a, b, c), k| {
            a[0] += b[0] * *k + c[999]
        })?;
        Ok(())
    })?;
    push("Backend threads: run((&mut a, &b, whole(&c)))", s);
    let serial = Backend::new(BackendKind::Serial, workers)?;
    let s = time_jobs(jobs, &mut || {
        serial.run(&mut a, 1.0, |_ctx, mut a, k| a[0] += *k)?;
        Ok(())
    })?;
    push("Backend serial: run(&mut a)", s);
    Ok(rows)
}

/// Per-phase latency of one barrier kind (`shmpar`, `futex`, `pthread`,
/// `threads`).
pub fn barrier(kind: &str, parties: usize, rounds: usize, iters: u64) -> Res<BarrierRow> {
    let phase_us = if kind == "threads" {
        let group = ThreadGroup::start(parties);
        median_phase_us(|n| group.round(n), rounds, iters)
    } else {
        let k = ProcessBarrier::parse(kind).ok_or_else(|| format!("unknown barrier kind {kind}"))?;
        let group = ProcessGroup::start(k, parties)?;
        median_phase_us(|n| group.round(n), rounds, iters)
    };
    Ok(BarrierRow {
        kind: kind.to_owned(),
        parties,
        phase_us,
    })
}

/// Create, attach and prefault times of segments of `sizes` bytes; sizes
/// that do not fit in `/dev/shm` (with 256 MiB to spare) are skipped.
pub fn segments(sizes: &[u64], reps: usize) -> Res<Vec<SegmentRow>> {
    let mut rows = Vec::new();
    for &bytes in sizes {
        let free = shmpar_core::os::free_bytes(std::path::Path::new("/dev/shm")).unwrap_or(0);
        if free < bytes + (256 << 20) {
            rows.push(SegmentRow {
                bytes,
                skipped: Some(format!("/dev/shm has {} MiB free", free >> 20)),
                ..SegmentRow::default()
            });
            continue;
        }
        let len = (bytes / 8) as usize;
        let creates = if bytes >= 1 << 30 { 2 } else { reps.clamp(1, 5) };
        let mut create = Vec::new();
        let mut attach = Vec::new();
        let mut prefault = Vec::new();
        for i in 0..creates {
            // The scope removes the segment however this ends.
            let scope = Scope::new();
            let (a, ms) = time_ms(|| scope.create::<f64, Ix1>(len));
            let mut a = a?;
            create.push(ms);
            let name = a.name();
            // A process holds one handle per segment: keep the name and let
            // go of the creating handle, so that attach makes the only one.
            a.segment_mut().persist();
            drop(a);
            for _ in 0..reps.max(1) {
                let t = Instant::now();
                let b = SharedArray::<f64, Ix1>::attach(&name)?;
                attach.push(t.elapsed().as_secs_f64() * 1e6);
                drop(black_box(b));
            }
            if i == 0 {
                let b = SharedArray::<f64, Ix1>::attach(&name)?;
                let (r, ms) = time_ms(|| b.segment().prefault());
                r?;
                prefault.push(ms);
            }
        }
        rows.push(SegmentRow {
            bytes,
            create_ms: Summary::of(&create),
            attach_us: Summary::of(&attach),
            prefault_ms: Summary::of(&prefault),
            skipped: None,
        });
    }
    Ok(rows)
}
