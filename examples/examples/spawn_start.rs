//! A pool whose workers are spawned (a fresh `exec` of this program), not
//! forked: for programs that run threads before the pool starts, where
//! forking is unsafe. A spawned worker has its own address space, so it
//! finds kernels by name in a registry built at compile time: name each
//! kernel as a `fn` item and register it with `shmpar::register_kernel!`.
//!
//! Run: `cargo run --release --example spawn_start`

use ndarray::{ArrayView1, ArrayViewMut1};
use shmpar::{Ctx, Error, Pool, SharedArray, Start};

fn scale(_ctx: &Ctx, mut chunk: ArrayViewMut1<f64>, k: &f64) {
    chunk *= *k;
}

fn sum(chunk: ArrayView1<f64>) -> f64 {
    chunk.sum()
}

shmpar::register_kernel!(scale: fn(&Ctx, ArrayViewMut1<f64>, &f64));
shmpar::register_kernel!(sum: fn(ArrayView1<f64>) -> f64);

fn main() -> Result<(), Error> {
    shmpar::init(); // a spawned worker serves jobs from here and never returns
    // A thread before the pool: a fork-start pool would refuse to fork now.
    let background = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)));
    let pool = Pool::builder().workers(2).start(Start::Spawn).build()?;
    let mut a = SharedArray::from_array(&ndarray::Array1::from_elem(1_000_000, 1.0f64))?;
    pool.run(&mut a, 3.0, scale)?;
    let total = pool.map_reduce(&a, sum, |x, y| x + y)?;
    assert_eq!(total, 3_000_000.0, "the spawned workers computed a wrong sum");

    // A closure is not in the registry: a spawn pool says so, typed.
    match pool.for_each_chunk(&mut a, |mut chunk| chunk.fill(0.0)) {
        Err(Error::UnregisteredKernel { .. }) => {}
        other => panic!("an unregistered kernel on a spawn pool gave {other:?}"),
    }
    background.join().expect("background thread");
    println!("ok: spawned workers ran the registered kernels (sum {total})");
    Ok(())
}
