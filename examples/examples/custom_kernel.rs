//! Your own kernel, with parameters, two ways:
//!
//! 1. a closure that captures nothing, with the parameters passed to
//!    `Pool::run`: they travel as bytes to the persistent workers
//!    (microseconds per call); a plain-data struct (bytemuck's derive, which
//!    refuses padding) needs no serialization;
//! 2. a closure that *captures* its parameters, through `Pool::run_forked`:
//!    easy, and correct, but a capturing closure only exists in this
//!    process, so every call forks fresh workers that inherit it (about a
//!    millisecond per call).
//!
//! Run: `cargo run --release --example custom_kernel`

use std::time::Instant;

use ndarray::Array1;
use shmpar::{Pool, SharedArray};

/// Plain data: `#[repr(C)]`, no padding (checked by the derive), and one
/// line to let it travel as bytes. (Any serde type travels inside
/// `shmpar::Serde(..)` instead.)
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftClip {
    lo: f64,
    hi: f64,
    gain: f64,
}

impl shmpar::Plain for SoftClip {}

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

    // 1. Passed as parameters: the kernel captures nothing, the persistent
    //    workers run it. These two calls cancel out, and let the workers
    //    map `b` before the timed call.
    let mut b = SharedArray::from_array(&input)?;
    pool.run(&mut b, 2.0f64, |_ctx, mut chunk, k| chunk *= *k)?;
    pool.run(&mut b, 0.5f64, |_ctx, mut chunk, k| chunk *= *k)?;
    let t = Instant::now();
    pool.run(&mut b, p, |_ctx, mut chunk, p| {
        chunk.mapv_inplace(|x| soft_clip(x, p))
    })?;
    println!(
        "parameters via `run`:        {:?} (persistent workers)",
        t.elapsed()
    );

    // 2. Captured: `p` is inside the closure; each call forks workers for it.
    let mut a = SharedArray::from_array(&input)?;
    let t = Instant::now();
    pool.run_forked(&mut a, (), move |_ctx, mut chunk, _| {
        chunk.mapv_inplace(|x| soft_clip(x, &p))
    })?;
    println!(
        "captured via `run_forked`:   {:?} (workers forked for this call)",
        t.elapsed()
    );

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
