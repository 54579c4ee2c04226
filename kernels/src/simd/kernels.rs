//! The slice loops behind the public kernels, each compiled per [`SimdLevel`](super::SimdLevel).
//!
//! # Summation scheme
//!
//! The sums (`sum`, sum of squares, squared deviations, dot) are pairwise
//! sums in the style of NumPy, made iterative so the whole loop inlines into
//! the AVX2 wrapper:
//!
//! * the input is cut into blocks of [`BLOCK`] = 256 elements;
//! * a block is summed in [`LANES`] = 16 independent `f64` accumulators
//!   (lane `j` takes elements `j, j + 16, …`: 16 additions per lane), which
//!   are then folded as a balanced tree (`8 + 8`, `4 + 4`, …); the up to 15
//!   elements left over at the block's end are added one by one;
//! * block sums are merged as a binary counter (block `k` is merged
//!   `trailing_zeros(k)` times with the stack), which is exactly a
//!   pairwise tree over the blocks, and the stack is folded at the end.
//!
//! Every element thus takes part in at most `16 + 4 + 15 + 2·log2(n / 256)`
//! roundings, so the error bound is `O(eps · log n)` like NumPy's (whose
//! base case is 128 elements in 8 lanes: the same 16 additions per lane).
//! `f32` input is accumulated in `f64`, which is far more accurate than
//! NumPy's `f32` sum.

use super::multiversion;
use crate::float::Float;

/// Accumulator lanes of the reductions.
pub(crate) const LANES: usize = 16;
/// Base block of the pairwise sum.
pub(crate) const BLOCK: usize = 256;

multiversion! {
    /// `x = sqrt(x)`.
    pub(crate) fn sqrt_slice<T: Float>(xs: &mut [T]) {
        for x in xs.iter_mut() {
            *x = x.sqrt();
        }
    }
}

multiversion! {
    /// `x = |x|`.
    pub(crate) fn abs_slice<T: Float>(xs: &mut [T]) {
        for x in xs.iter_mut() {
            *x = x.abs();
        }
    }
}

multiversion! {
    /// `x = sqrt(|x|)` in one pass.
    pub(crate) fn sqrt_abs_slice<T: Float>(xs: &mut [T]) {
        for x in xs.iter_mut() {
            *x = x.abs().sqrt();
        }
    }
}

multiversion! {
    /// `x = k * x`.
    pub(crate) fn scale_slice<T: Float>(xs: &mut [T], k: T) {
        for x in xs.iter_mut() {
            *x = k * *x;
        }
    }
}

multiversion! {
    /// `x = x + k`.
    pub(crate) fn offset_slice<T: Float>(xs: &mut [T], k: T) {
        for x in xs.iter_mut() {
            *x = *x + k;
        }
    }
}

multiversion! {
    /// `y = a * x + y` (two roundings, no FMA). Stops at the shorter slice.
    pub(crate) fn axpy_slice<T: Float>(a: T, xs: &[T], ys: &mut [T]) {
        for (y, &x) in ys.iter_mut().zip(xs) {
            *y = a * x + *y;
        }
    }
}

multiversion! {
    /// `x = lo if x < lo, hi if x > hi, else x` (NaN stays NaN).
    pub(crate) fn clamp_slice<T: Float>(xs: &mut [T], lo: T, hi: T) {
        for x in xs.iter_mut() {
            let v = *x;
            let v = if v < lo { lo } else { v };
            *x = if v > hi { hi } else { v };
        }
    }
}

/// `x = e^x`. Not multiversioned: the loop calls libm, which does not vectorize.
pub(crate) fn exp_slice<T: Float>(xs: &mut [T]) {
    for x in xs.iter_mut() {
        *x = x.exp();
    }
}

/// `x = ln x`. Not multiversioned, as [`exp_slice`].
pub(crate) fn ln_slice<T: Float>(xs: &mut [T]) {
    for x in xs.iter_mut() {
        *x = x.ln();
    }
}

/// The per-element term of a pairwise sum: `scalar` in the portable loop,
/// `vector` (four lanes, the same IEEE operations) in the AVX2 loop.
pub(crate) trait Term: Copy {
    /// The term for one element, already widened to `f64`.
    fn scalar(&self, x: f64) -> f64;
    /// The term for four elements.
    ///
    /// # Safety
    ///
    /// - The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn vector(&self, v: std::arch::x86_64::__m256d) -> std::arch::x86_64::__m256d;
}

/// `x`.
#[derive(Clone, Copy)]
pub(crate) struct Plain;
/// `x * x`.
#[derive(Clone, Copy)]
pub(crate) struct Square;
/// `(x - mean)^2`.
#[derive(Clone, Copy)]
pub(crate) struct Deviation(pub(crate) f64);
/// `(x / scale)^2`.
#[derive(Clone, Copy)]
pub(crate) struct Scaled(pub(crate) f64);

macro_rules! term {
    ($t:ty, |$s:ident, $x:ident| $scalar:expr, |$v:ident| $vector:expr) => {
        impl Term for $t {
            #[inline(always)]
            fn scalar(&self, $x: f64) -> f64 {
                let $s = self;
                $scalar
            }
            #[cfg(target_arch = "x86_64")]
            #[inline]
            #[target_feature(enable = "avx2")]
            unsafe fn vector(&self, $v: std::arch::x86_64::__m256d) -> std::arch::x86_64::__m256d {
                let $s = self;
                $vector
            }
        }
    };
}
term!(Plain, |_s, x| x, |v| super::avx2::plain(v));
term!(Square, |_s, x| x * x, |v| super::avx2::square(v));
term!(
    Deviation,
    |s, x| {
        let d = x - s.0;
        d * d
    },
    |v| super::avx2::deviation(v, s.0)
);
term!(
    Scaled,
    |s, x| {
        let d = x / s.0;
        d * d
    },
    |v| super::avx2::scaled(v, s.0)
);

/// Folds the lanes as a balanced tree: `acc[j] += acc[j + w]` for
/// `w = 8, 4, 2, 1`.
#[inline(always)]
fn fold_lanes(mut acc: [f64; LANES]) -> f64 {
    let mut w = LANES / 2;
    while w > 0 {
        for j in 0..w {
            acc[j] += acc[j + w];
        }
        w /= 2;
    }
    acc[0]
}

/// Sum of `term(x)` over one block (at most [`BLOCK`] elements), in lanes.
///
/// Accumulators start at `-0.0`, the exact additive identity of IEEE
/// arithmetic (`-0.0 + x == x` for every `x`, including `-0.0`).
#[inline(always)]
fn block_sum<T: Float, M: Term>(xs: &[T], term: &M) -> f64 {
    let mut acc = [-0.0_f64; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            acc[j] += term.scalar(c[j].to_f64());
        }
    }
    let mut s = fold_lanes(acc);
    for &x in chunks.remainder() {
        s += term.scalar(x.to_f64());
    }
    s
}

/// Sum of `x * y` over one block of each slice (equal lengths).
#[inline(always)]
fn block_dot<T: Float>(xs: &[T], ys: &[T]) -> f64 {
    let mut acc = [-0.0_f64; LANES];
    let mut cx = xs.chunks_exact(LANES);
    let mut cy = ys.chunks_exact(LANES);
    for (a, b) in (&mut cx).zip(&mut cy) {
        for j in 0..LANES {
            acc[j] += a[j].to_f64() * b[j].to_f64();
        }
    }
    let mut s = fold_lanes(acc);
    for (&a, &b) in cx.remainder().iter().zip(cy.remainder()) {
        s += a.to_f64() * b.to_f64();
    }
    s
}

/// Pairwise merge of block sums, as a binary counter (see the module docs).
#[inline(always)]
fn cascade(blocks: impl Iterator<Item = f64>) -> f64 {
    // Depth never exceeds the bit count of the block counter, 64.
    let mut stack = [0.0_f64; 64];
    let mut depth = 0_usize;
    let mut count = 0_u64;
    for mut s in blocks {
        count += 1;
        for _ in 0..count.trailing_zeros() {
            depth -= 1;
            s += stack[depth]; // IEEE addition commutes: same bits as stack + s
        }
        stack[depth] = s;
        depth += 1;
    }
    let mut total = -0.0_f64;
    while depth > 0 {
        depth -= 1;
        total += stack[depth];
    }
    total
}

/// Pairwise sum of `term(x)`, accumulated in `f64`.
pub(crate) fn sum_terms<T: Float, M: Term>(xs: &[T], term: M) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd_level() == super::SimdLevel::Avx2 {
            // SAFETY: the level is `Avx2` only when AVX2 and FMA were detected.
            return cascade(
                xs.chunks(BLOCK)
                    .map(|b| unsafe { super::avx2::block_sum(b, &term) }),
            );
        }
    }
    cascade(xs.chunks(BLOCK).map(|b| block_sum(b, &term)))
}

/// Pairwise dot product, accumulated in `f64`. Stops at the shorter slice.
pub(crate) fn dot_slice<T: Float>(xs: &[T], ys: &[T]) -> f64 {
    let n = xs.len().min(ys.len());
    let (xs, ys) = (&xs[..n], &ys[..n]);
    let pairs = xs.chunks(BLOCK).zip(ys.chunks(BLOCK));
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd_level() == super::SimdLevel::Avx2 {
            // SAFETY: the level is `Avx2` only when AVX2 and FMA were detected.
            return cascade(pairs.map(|(a, b)| unsafe { super::avx2::block_dot(a, b) }));
        }
    }
    cascade(pairs.map(|(a, b)| block_dot(a, b)))
}

/// Smallest and largest element of a slice, and whether it holds a NaN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Extrema<T> {
    /// `+inf` for an empty slice.
    pub(crate) min: T,
    /// `-inf` for an empty slice.
    pub(crate) max: T,
    /// Whether any element is NaN (`min` and `max` skip NaNs).
    pub(crate) nan: bool,
}

impl<T: Float> Extrema<T> {
    /// Takes `lo` and `hi` into account (NaNs are skipped, not flagged).
    #[inline(always)]
    pub(crate) fn absorb(&mut self, lo: T, hi: T) {
        self.min = if lo < self.min { lo } else { self.min };
        self.max = if hi > self.max { hi } else { self.max };
    }
}

/// Min, max and NaN flag in one pass.
///
/// The result is exact whatever the order of comparisons, except that
/// which of `-0.0` and `+0.0` wins a tie is unspecified.
pub(crate) fn extrema_slice<T: Float>(xs: &[T]) -> Extrema<T> {
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd_level() == super::SimdLevel::Avx2 {
            // SAFETY: the level is `Avx2` only when AVX2 was detected.
            let (min, max, nan) = unsafe { T::extrema_avx2(xs) };
            return Extrema { min, max, nan };
        }
    }
    // Independent lanes break the compare-select dependency chain; the
    // SSE2 baseline then runs several chains at once.
    const L: usize = 8;
    let mut lo = [T::INFINITY; L];
    let mut hi = [T::NEG_INFINITY; L];
    let mut nan = [false; L];
    let mut chunks = xs.chunks_exact(L);
    for c in &mut chunks {
        for j in 0..L {
            let x = c[j];
            lo[j] = if x < lo[j] { x } else { lo[j] };
            hi[j] = if x > hi[j] { x } else { hi[j] };
            nan[j] |= x.is_nan();
        }
    }
    let mut out = Extrema {
        min: T::INFINITY,
        max: T::NEG_INFINITY,
        nan: nan.contains(&true),
    };
    for j in 0..L {
        out.absorb(lo[j], hi[j]);
    }
    for &x in chunks.remainder() {
        out.absorb(x, x);
        out.nan |= x.is_nan();
    }
    out
}
