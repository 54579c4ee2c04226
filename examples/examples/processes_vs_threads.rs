//! The same kernels on worker processes, rayon threads and one thread, with
//! the same chunking, printed as a table. (`shmpar compare` is the full
//! version of this, with more kernels, JSON and a chart.)
//!
//! Process backends are created first: a pool forks its workers, and a
//! process must not fork once rayon has started threads.
//!
//! Run: `cargo run --release --example processes_vs_threads`

use std::time::{Duration, Instant};

use shmpar::{Backend, BackendKind, SharedArray};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() -> Result<(), shmpar::Error> {
    shmpar::init();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // In BackendKind::ALL order: processes, threads, serial.
    let backends = BackendKind::ALL
        .into_iter()
        .map(|kind| Backend::new(kind, workers))
        .collect::<Result<Vec<_>, _>>()?;

    let n = 10_000_000;
    let mut a = SharedArray::<f64, _>::create(n)?;
    println!("{n} f64, {workers} workers, median of 5 runs\n");
    println!(
        "{:<10} {:>14} {:>14}  sum (value)",
        "backend", "sqrt_abs time", "sum time"
    );
    let mut sums = Vec::new();
    for backend in &backends {
        let (mut maps, mut reduces, mut sum) = (Vec::new(), Vec::new(), 0.0);
        for _ in 0..5 {
            // Reset to -i, in parallel, then time the two kernels.
            backend.for_each_chunk_with(&mut a, (), |ctx, mut chunk, _| {
                let first = ctx.rows().start;
                chunk
                    .iter_mut()
                    .enumerate()
                    .for_each(|(k, x)| *x = -((first + k) as f64));
            })?;
            let t = Instant::now();
            backend.for_each_chunk_with(&mut a, (), |_ctx, chunk, _| shmpar_kernels::sqrt_abs(chunk))?;
            maps.push(t.elapsed());
            let t = Instant::now();
            sum =
                backend.map_reduce_with(&a, (), |_ctx, chunk, _| shmpar_kernels::sum(chunk), |x, y| x + y)?;
            reduces.push(t.elapsed());
        }
        println!(
            "{:<10} {:>14?} {:>14?}  {sum}",
            backend.kind().name(),
            median(maps),
            median(reduces)
        );
        sums.push(sum);
    }
    // Same chunks, combined in the same order: bit-identical on every backend.
    assert!(
        sums.windows(2).all(|w| w[0] == w[1]),
        "the backends disagree: {sums:?}"
    );
    let exact: f64 = (0..n).map(|i| (i as f64).sqrt()).sum();
    assert!(
        (sums[0] - exact).abs() <= 1e-9 * exact,
        "sum {} is not {exact}",
        sums[0]
    );
    println!("\nok: identical sums on every backend");
    Ok(())
}
