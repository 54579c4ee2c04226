//! The seed article's "parallel NumPy processing" pattern, in Rust: worker
//! processes each take a chunk of a shared array and compute
//! `sqrt(abs(x))` on it in place. No pickling, no copies: the data exists
//! once, in /dev/shm.
//!
//! ```text
//! Python (multiprocessing.shared_memory)        shmpar
//! shm = SharedMemory(create=True, size=...)     let mut a = SharedArray::from_array(&data)?;
//! Process(target=worker, args=(shm.name, ...))  let pool = Pool::new()?;
//! arr[s:e] = np.sqrt(np.abs(arr[s:e]))          pool.for_each_chunk(&mut a, |c| sqrt_abs(c))?;
//! p.join(); shm.close(); shm.unlink()           (dropping `a` and `pool` cleans up)
//! ```
//!
//! Run: `cargo run --release --example sqrt_chunks`

use ndarray::{Array1, s};
use shmpar::{Pool, SharedArray};

fn main() -> Result<(), shmpar::Error> {
    shmpar::init();
    // Start the workers first: a pool forks, and forking is only safe
    // while this process has a single thread.
    let pool = Pool::new()?;

    // data = np.random.randn(10_000_000): deterministic here, so the check is exact.
    let n = 10_000_000;
    let data = Array1::from_iter((0..n).map(|i| ((i * 7919) % 20_001) as f64 / 1000.0 - 10.0));
    let mut shared = SharedArray::from_array(&data)?; // the one copy in
    println!(
        "{} workers, array {} of {} f64 in /dev/shm",
        pool.workers(),
        shared.name(),
        shared.len()
    );

    // Each worker gets a contiguous chunk of rows, in place. The closure
    // captures nothing, so it runs on the pool's persistent workers.
    pool.for_each_chunk(&mut shared, |chunk| shmpar_kernels::sqrt_abs(chunk))?;

    let expected = data.mapv(|x: f64| x.abs().sqrt());
    assert!(
        shared.view() == expected.view(),
        "sqrt_abs on the workers differs from the serial result"
    );
    println!("first five: {}", shared.view().slice(s![..5]));
    println!("ok: every element equals sqrt(|x|) computed serially");
    Ok(())
}
