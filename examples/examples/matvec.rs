//! A dense matrix-vector product `y = A·x`, A 4096 × 4096: each worker
//! its own rows of `A` and `y` (`&a` read, `&mut y` written) and all of `x`
//! (`whole(&x)`, read only), five times over.
//!
//! Every `y[i]` is one dot product of row `i` with `x`, in a fixed order,
//! so the parallel result equals the serial one bit for bit. The same job
//! on rayon threads of the same number gives a like-for-like time.
//!
//! Run: `cargo run --release --example matvec`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ndarray::{Array1, ArrayView1};
use shmpar::{Backend, BackendKind, Pool, SharedArray, whole};
use shmpar_kernels::workloads::{fill_noise, matvec_rows};

const EXAMPLE: &str = "matvec";
const N: usize = 4096;
const RUNS: usize = 5;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `Err` naming the first entry where `got` differs from `expected`.
fn check(backend: &str, got: ArrayView1<'_, f64>, expected: &Array1<f64>) -> Result<(), String> {
    match got
        .iter()
        .zip(expected)
        .position(|(g, e)| g.to_bits() != e.to_bits())
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "A·x on {backend}: y[{i}] = {}, but the serial product gives {}",
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
    // The pool first: it forks, which is safe only while this process has
    // one thread; the rayon threads come after it.
    let pool = Pool::builder().workers(workers).build()?;
    let threads = Backend::new(BackendKind::Threads, workers)?;

    let mut a = SharedArray::<f64, _>::create((N, N))?;
    let mut x = SharedArray::<f64, _>::create(N)?;
    fill_noise(a.view_mut(), 1, 0);
    fill_noise(x.view_mut(), 2, 0);
    let mut y = SharedArray::<f64, _>::create(N)?;

    let mut expected = Array1::zeros(N);
    let t = Instant::now();
    matvec_rows(a.view(), x.view(), expected.view_mut())?;
    let serial = t.elapsed();

    // The backends take turns, each product from a `y` of NaN and checked,
    // so that a noisy machine slows both alike.
    let (mut processes, mut on_threads) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        y.view_mut().fill(f64::NAN);
        let t = Instant::now();
        pool.run((&a, &mut y, whole(&x)), (), |_ctx, (a, y, x), _| {
            matvec_rows(a, x.into_view(), y).expect("A, x and y agree in shape");
        })?;
        processes.push(t.elapsed());
        check("the processes", y.view(), &expected)?;

        y.view_mut().fill(f64::NAN);
        let t = Instant::now();
        threads.run((&a, &mut y, whole(&x)), (), |_ctx, (a, y, x), _| {
            matvec_rows(a, x.into_view(), y).expect("A, x and y agree in shape");
        })?;
        on_threads.push(t.elapsed());
        check("the threads", y.view(), &expected)?;
    }

    // The first product on the processes includes the workers mapping `A`
    // and faulting its pages in; the median leaves it out.
    let first = processes[0];
    let (processes, on_threads) = (median(processes), median(on_threads));
    println!(
        "y = A·x, A {N}×{N} f64 ({} MiB), {workers} workers, {RUNS} products each, taking turns",
        (N * N * size_of::<f64>()) >> 20
    );
    println!("  processes {processes:>10.2?} median (first {first:.2?})");
    println!("  threads   {on_threads:>10.2?} median");
    println!("  serial    {serial:>10.2?} (one product)");
    println!(
        "  processes / threads: {:.3}",
        processes.as_secs_f64() / on_threads.as_secs_f64()
    );
    println!(
        "ok: {RUNS} products on {workers} worker processes and on {workers} threads equal the serial product bit for bit"
    );
    Ok(())
}
