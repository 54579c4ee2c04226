//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::ops::Range;

/// Splits `0..n` into `k` contiguous ranges of uneven lengths (some empty
/// when `k > n`), the way a runtime might hand out rows.
pub fn uneven_chunks(n: usize, k: usize) -> Vec<Range<usize>> {
    let mut cuts: Vec<usize> = (1..k).map(|i| (i * i * n) / (k * k)).collect();
    cuts.insert(0, 0);
    cuts.push(n);
    cuts.windows(2).map(|w| w[0]..w[1]).collect()
}

/// A deterministic pseudo-random sequence in [-1, 1) (xorshift64*).
pub fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Exact-ish reference sum: Neumaier in f64 over the values in order.
pub fn neumaier(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0_f64, 0.0_f64);
    for x in xs {
        let t = s + x;
        c += if s.abs() >= x.abs() {
            (s - t) + x
        } else {
            (x - t) + s
        };
        s = t;
    }
    s + c
}

/// Naive left-to-right sum: the error bound to beat is pairwise, this is the baseline.
pub fn naive(xs: impl IntoIterator<Item = f64>) -> f64 {
    xs.into_iter().fold(0.0, |a, x| a + x)
}
