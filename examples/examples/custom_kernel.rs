//! Your own kernel, with parameters, two ways:
//!
//! 1. a closure that *captures* its parameters: easy, and correct, but a
//!    capturing closure only exists in this process, so every call forks
//!    fresh workers that inherit it (about a millisecond per call);
//! 2. a closure that captures nothing, with the parameters passed to a
//!    `*_with` method: they travel as bytes to the persistent workers
//!    (microseconds per call), and the kernel also works with `Start::Spawn`.
//!
//! Run: `cargo run --release --example custom_kernel`

use std::time::Instant;

use ndarray::Array1;
use serde::{Deserialize, Serialize};
use shmpar::{Pool, Serde, SharedArray};

/// Parameters of any serde type travel inside `Serde(..)`.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct SoftClip {
    lo: f64,
    hi: f64,
    gain: f64,
}

fn soft_clip(x: f64, p: &SoftClip) -> f64 {
    (x * p.gain).clamp(p.lo, p.hi)
}

fn main() -> Result<(), shmpar::Error> {
    shmpar::init();
    let pool = Pool::builder().workers(2).build()?;
    let input = Array1::from_iter((0..1_000_000).map(|i| (i as f64).sin()));
    let p = SoftClip {
        lo: -0.5,
        hi: 0.75,
        gain: 1.5,
    };

    // 1. Captured: `p` is inside the closure; each call forks workers for it.
    let mut a = SharedArray::from_array(&input)?;
    let t = Instant::now();
    pool.for_each_chunk(&mut a, move |mut chunk| chunk.mapv_inplace(|x| soft_clip(x, &p)))?;
    println!(
        "captured parameters:      {:?} (workers forked for this call)",
        t.elapsed()
    );

    // 2. Passed as parameters: the closure is zero-sized, the persistent
    //    workers run it. Plain numbers need no `Serde`; these two calls
    //    cancel out, and let the workers map `b` before the timed call.
    let mut b = SharedArray::from_array(&input)?;
    pool.for_each_chunk_with(&mut b, 2.0f64, |_ctx, mut chunk, k| chunk *= *k)?;
    pool.for_each_chunk_with(&mut b, 0.5f64, |_ctx, mut chunk, k| chunk *= *k)?;
    let t = Instant::now();
    pool.for_each_chunk_with(&mut b, Serde(p), |_ctx, mut chunk, p| {
        chunk.mapv_inplace(|x| soft_clip(x, &p.0))
    })?;
    println!("parameters via `_with`:   {:?} (persistent workers)", t.elapsed());

    let expected = input.mapv(|x| soft_clip(x, &p));
    assert!(
        a.view() == expected.view(),
        "the capturing kernel gave a wrong result"
    );
    assert!(
        b.view() == expected.view(),
        "the parameterized kernel gave a wrong result"
    );
    println!("ok: both ways give the serial result");
    Ok(())
}
