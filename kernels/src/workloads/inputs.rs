//! Deterministic inputs: a counter-based pseudo-random sequence, so any
//! chunk of an array can be filled on its own and the whole comes out the
//! same as if it were filled at once.

use ndarray::{ArrayViewMut, Dimension};

/// The SplitMix64 finalizer: a bijection of `u64` whose outputs pass
/// statistical tests even for consecutive inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 pseudo-random bits for element `index` of the sequence `seed`.
pub(crate) fn bits_at(seed: u64, index: u64) -> u64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    mix(mix(seed).wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// Element `index` of the pseudo-random sequence `seed`: a value in
/// `[-1, 1)` with 53 random bits, the same on every machine.
///
/// The value depends only on `(seed, index)`, so chunks of an array can be
/// generated independently (see [`fill_noise`]).
///
/// ```
/// use shmpar_kernels::workloads::noise_at;
/// let x = noise_at(7, 123);
/// assert!((-1.0..1.0).contains(&x));
/// assert_eq!(x, noise_at(7, 123));
/// assert_ne!(x, noise_at(8, 123));
/// ```
pub fn noise_at(seed: u64, index: u64) -> f64 {
    (bits_at(seed, index) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// Fills `out` with the sequence `seed` from element `first` on, in
/// logical (row-major) order: element `p` of `out` gets
/// `noise_at(seed, first + p)`.
///
/// To fill rows `r..` of a row-major array as a chunk, pass
/// `first = r * row_len`: the chunks then hold exactly what one call over
/// the whole array writes.
///
/// ```
/// use ndarray::{Array2, s};
/// use shmpar_kernels::workloads::fill_noise;
/// let mut whole = Array2::zeros((4, 3));
/// fill_noise(whole.view_mut(), 5, 0);
/// let mut chunked = Array2::zeros((4, 3));
/// fill_noise(chunked.slice_mut(s![..1, ..]), 5, 0);
/// fill_noise(chunked.slice_mut(s![1.., ..]), 5, 3);
/// assert_eq!(whole, chunked);
/// ```
pub fn fill_noise<D: Dimension>(mut out: ArrayViewMut<'_, f64, D>, seed: u64, first: u64) {
    for (p, x) in out.iter_mut().enumerate() {
        *x = noise_at(seed, first.wrapping_add(p as u64));
    }
}
