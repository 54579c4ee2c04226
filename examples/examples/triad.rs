//! The STREAM triad, `a = b + s·c`, over three shared arrays of 10⁷ `f64`:
//! one job with three arguments, each worker its own rows of all three
//! (`&mut a` written, `&b` and `&c` read), `s` passed as a parameter.
//!
//! The same job then runs on rayon threads of the same number, over the
//! same memory, for a like-for-like time. Both results must equal the plain
//! serial loop bit for bit.
//!
//! Run: `cargo run --release --example triad`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ndarray::{Array1, ArrayView1};
use shmpar::{Backend, BackendKind, Pool, SharedArray};
use shmpar_kernels::workloads::{fill_noise, triad};

const EXAMPLE: &str = "triad";
const N: usize = 10_000_000;
const S: f64 = 3.0;
const RUNS: usize = 20;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `Err` naming the first element where `got` differs from `expected`.
fn check(backend: &str, got: ArrayView1<'_, f64>, expected: &Array1<f64>) -> Result<(), String> {
    match got
        .iter()
        .zip(expected)
        .position(|(g, e)| g.to_bits() != e.to_bits())
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "triad on {backend}: a[{i}] = {}, but the serial loop gives {}",
            got[i], expected[i]
        )),
    }
}

fn main() -> ExitCode {
    shmpar::init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{EXAMPLE} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The example; every array and the pool are gone (and `/dev/shm` clean)
/// by the time it returns, error or not.
fn run() -> Result<(), Box<dyn std::error::Error>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(shmpar::MAX_POOL_WORKERS);
    // The pool first: it forks its workers, which is safe only while this
    // process has one thread, so the rayon threads come after it.
    let pool = Pool::builder().workers(workers).build()?;
    let threads = Backend::new(BackendKind::Threads, workers)?;

    let mut b = SharedArray::<f64, _>::create(N)?;
    let mut c = SharedArray::<f64, _>::create(N)?;
    fill_noise(b.view_mut(), 1, 0);
    fill_noise(c.view_mut(), 2, 0);
    let mut a = SharedArray::<f64, _>::create(N)?;

    let t = Instant::now();
    let (bv, cv) = (b.view(), c.view());
    let expected = Array1::from_shape_fn(N, |i| bv[i] + S * cv[i]);
    let serial = t.elapsed();

    // Each backend on its own, from an array of NaN, must give the serial bits.
    a.view_mut().fill(f64::NAN);
    pool.run((&mut a, &b, &c), S, |_ctx, (a, b, c), &s| {
        triad(a, b, c, s).expect("a, b and c share their rows");
    })?;
    check("the processes", a.view(), &expected)?;
    a.view_mut().fill(f64::NAN);
    threads.run((&mut a, &b, &c), S, |_ctx, (a, b, c), &s| {
        triad(a, b, c, s).expect("a, b and c share their rows");
    })?;
    check("the threads", a.view(), &expected)?;

    // Timed runs, the two backends taking turns so that a noisy machine
    // slows both alike; the runs above were the warm-up (the workers have
    // mapped the arrays and faulted their pages in).
    let (mut processes, mut on_threads) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        pool.run((&mut a, &b, &c), S, |_ctx, (a, b, c), &s| {
            triad(a, b, c, s).expect("a, b and c share their rows");
        })?;
        processes.push(t.elapsed());
        let t = Instant::now();
        threads.run((&mut a, &b, &c), S, |_ctx, (a, b, c), &s| {
            triad(a, b, c, s).expect("a, b and c share their rows");
        })?;
        on_threads.push(t.elapsed());
    }
    check("the processes and threads in turn", a.view(), &expected)?;

    let (processes, on_threads) = (median(processes), median(on_threads));
    let gb_per_s = |t: Duration| (3 * N * size_of::<f64>()) as f64 / t.as_secs_f64() / 1e9;
    println!(
        "triad a = b + {S}·c, {N} f64 per array, {workers} workers, median of {RUNS} runs each, taking turns, after a warm-up"
    );
    println!(
        "  processes {processes:>10.2?} ({:.1} GB/s)\n  threads   {on_threads:>10.2?} ({:.1} GB/s)\n  serial loop {serial:>8.2?} (one run, allocating)",
        gb_per_s(processes),
        gb_per_s(on_threads)
    );
    println!(
        "  processes / threads: {:.3}",
        processes.as_secs_f64() / on_threads.as_secs_f64()
    );
    println!(
        "ok: triad on {workers} worker processes and on {workers} threads equals the serial loop bit for bit"
    );
    Ok(())
}
