//! A parallel mean: each worker sums its chunk and returns `(sum, count)`
//! through its result slot in shared memory; the coordinator combines the
//! partials in chunk order, so the result is deterministic.
//!
//! Run: `cargo run --release --example mean_chunks`

use ndarray::Array1;
use shmpar::{Pool, SharedArray};

fn main() -> Result<(), shmpar::Error> {
    shmpar::init();
    let pool = Pool::new()?;
    let n = 10_000_000usize;
    let a = SharedArray::from_array(&Array1::from_iter((0..n).map(|i| (i % 1000) as f64)))?;

    // The partial is a plain `[f64; 2]`, copied as bytes into the slot.
    let [sum, count] = pool.map_reduce(
        &a,
        |chunk| [shmpar_kernels::sum(chunk.view()), chunk.len() as f64],
        |x, y| [x[0] + y[0], x[1] + y[1]],
    )?;
    let mean = sum / count;

    // Every block of 1000 elements holds 0..999, whose mean is 499.5.
    let serial = shmpar_kernels::mean(a.view());
    println!("parallel mean over {} workers: {mean}", pool.workers());
    println!("serial mean:                    {serial}");
    assert_eq!(count as usize, n, "the chunks must cover every element once");
    assert!((mean - 499.5).abs() < 1e-9, "parallel mean {mean} is not 499.5");
    assert!(
        (mean - serial).abs() <= 1e-12 * serial.abs(),
        "parallel and serial means differ"
    );
    println!("ok");
    Ok(())
}
