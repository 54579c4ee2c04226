//! Hand-written AVX2 loops for the reductions.
//!
//! LLVM vectorizes the elementwise loops with `ymm` registers by itself, but
//! for the 16-lane reductions its SLP vectorizer settles for 128-bit
//! registers, which halves the in-cache throughput. These loops use the
//! intrinsics directly, with exactly the lane layout of the portable code in
//! [`super::kernels`]: lane `j` lives in register `j / 4`, element `j % 4`,
//! and every lane sees the same IEEE operations in the same order, so both
//! produce the same bits.

use std::arch::x86_64::{
    __m128d, __m256, __m256d, _CMP_UNORD_Q, _mm_add_sd, _mm_cvtsd_f64, _mm_loadu_ps, _mm_unpackhi_pd,
    _mm256_add_pd, _mm256_castpd256_pd128, _mm256_cmp_pd, _mm256_cmp_ps, _mm256_cvtps_pd, _mm256_div_pd,
    _mm256_extractf128_pd, _mm256_loadu_pd, _mm256_loadu_ps, _mm256_max_pd, _mm256_max_ps, _mm256_min_pd,
    _mm256_min_ps, _mm256_movemask_pd, _mm256_movemask_ps, _mm256_mul_pd, _mm256_or_pd, _mm256_or_ps,
    _mm256_set1_pd, _mm256_set1_ps, _mm256_setzero_pd, _mm256_setzero_ps, _mm256_storeu_pd, _mm256_storeu_ps,
    _mm256_sub_pd,
};

use super::kernels::{Extrema, LANES, Term};
use crate::float::Float;

/// Loads four elements at `p`, widened to `f64`.
///
/// # Safety
///
/// - The CPU must support AVX2.
/// - `p` must be valid for reading four `f64`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn load4_f64(p: *const f64) -> __m256d {
    // SAFETY: the caller guarantees four readable elements; `loadu` has no
    // alignment requirement.
    unsafe { _mm256_loadu_pd(p) }
}

/// Loads four `f32` at `p`, widened (exactly) to `f64`.
///
/// # Safety
///
/// - The CPU must support AVX2.
/// - `p` must be valid for reading four `f32`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn load4_f32(p: *const f32) -> __m256d {
    // SAFETY: the caller guarantees four readable elements; `loadu` has no
    // alignment requirement.
    unsafe { _mm256_cvtps_pd(_mm_loadu_ps(p)) }
}

/// Folds four accumulators holding lanes 0–15 the way `fold_lanes` does:
/// `w = 8`: (0 += 2, 1 += 3); `w = 4`: 0 += 1; `w = 2`: low half + high
/// half; `w = 1`: lane 0 + lane 1.
#[inline]
#[target_feature(enable = "avx2")]
fn fold(acc: [__m256d; 4]) -> f64 {
    let a0 = _mm256_add_pd(acc[0], acc[2]);
    let a1 = _mm256_add_pd(acc[1], acc[3]);
    let a = _mm256_add_pd(a0, a1);
    let lo: __m128d = _mm256_castpd256_pd128(a);
    let hi: __m128d = _mm256_extractf128_pd::<1>(a);
    let pair = std::arch::x86_64::_mm_add_pd(lo, hi);
    _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)))
}

/// AVX2 version of `block_sum`: sum of `term(x)` over at most one block.
///
/// # Safety
///
/// - The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn block_sum<T: Float, M: Term>(xs: &[T], term: &M) -> f64 {
    let mut acc = [_mm256_set1_pd(-0.0); 4];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        let p = c.as_ptr();
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: `c` holds 16 elements, so `p + 4k .. p + 4k + 4` is in
            // bounds for k < 4; AVX2 is enabled on this function.
            let v = unsafe { T::load4(p.add(4 * k)) };
            // SAFETY: AVX2 is enabled on this function.
            *a = _mm256_add_pd(*a, unsafe { term.vector(v) });
        }
    }
    let mut s = fold(acc);
    for &x in chunks.remainder() {
        s += term.scalar(x.to_f64());
    }
    s
}

/// AVX2 version of `block_dot`.
///
/// # Safety
///
/// - The CPU must support AVX2 and FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn block_dot<T: Float>(xs: &[T], ys: &[T]) -> f64 {
    let mut acc = [_mm256_set1_pd(-0.0); 4];
    let mut cx = xs.chunks_exact(LANES);
    let mut cy = ys.chunks_exact(LANES);
    for (a, b) in (&mut cx).zip(&mut cy) {
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        for (k, s) in acc.iter_mut().enumerate() {
            // SAFETY: `a` and `b` hold 16 elements each, so offsets 4k..4k+4
            // are in bounds for k < 4; AVX2 is enabled on this function.
            let (va, vb) = unsafe { (T::load4(pa.add(4 * k)), T::load4(pb.add(4 * k))) };
            // No FMA: the portable loop rounds the product, then the sum.
            *s = _mm256_add_pd(*s, _mm256_mul_pd(va, vb));
        }
    }
    let mut s = fold(acc);
    for (&a, &b) in cx.remainder().iter().zip(cy.remainder()) {
        s += a.to_f64() * b.to_f64();
    }
    s
}

/// `x` itself.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn plain(v: __m256d) -> __m256d {
    v
}

/// `x * x`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn square(v: __m256d) -> __m256d {
    _mm256_mul_pd(v, v)
}

/// `(x - m)^2`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn deviation(v: __m256d, m: f64) -> __m256d {
    let d = _mm256_sub_pd(v, _mm256_set1_pd(m));
    _mm256_mul_pd(d, d)
}

/// `(x / s)^2`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn scaled(v: __m256d, s: f64) -> __m256d {
    let d = _mm256_div_pd(v, _mm256_set1_pd(s));
    _mm256_mul_pd(d, d)
}

/// Min, max and NaN flag of `f64`s, with `vminpd`/`vmaxpd`.
///
/// `vminpd(x, lo)` returns `lo` when the comparison `x < lo` is false
/// (NaN, equal values), which is the portable loop's
/// `if x < lo { x } else { lo }`.
///
/// # Safety
///
/// - The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn extrema_f64(xs: &[f64]) -> Extrema<f64> {
    let mut lo = [_mm256_set1_pd(f64::INFINITY); 4];
    let mut hi = [_mm256_set1_pd(f64::NEG_INFINITY); 4];
    let mut nan = _mm256_setzero_pd();
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        let p = c.as_ptr();
        for k in 0..4 {
            // SAFETY: `c` holds 16 elements; offsets 4k..4k+4 are in bounds.
            let x = unsafe { _mm256_loadu_pd(p.add(4 * k)) };
            lo[k] = _mm256_min_pd(x, lo[k]);
            hi[k] = _mm256_max_pd(x, hi[k]);
            nan = _mm256_or_pd(nan, _mm256_cmp_pd::<_CMP_UNORD_Q>(x, x));
        }
    }
    let mut out = Extrema {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        nan: _mm256_movemask_pd(nan) != 0,
    };
    let (mut l, mut h) = ([0.0; 4], [0.0; 4]);
    for k in 0..4 {
        // SAFETY: `l` and `h` are arrays of four f64.
        unsafe {
            _mm256_storeu_pd(l.as_mut_ptr(), lo[k]);
            _mm256_storeu_pd(h.as_mut_ptr(), hi[k]);
        }
        for j in 0..4 {
            out.absorb(l[j], h[j]);
        }
    }
    for &x in chunks.remainder() {
        out.absorb(x, x);
        out.nan |= x.is_nan();
    }
    out
}

/// Min, max and NaN flag of `f32`s, as [`extrema_f64`] with 8 lanes per register.
///
/// # Safety
///
/// - The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn extrema_f32(xs: &[f32]) -> Extrema<f32> {
    let mut lo: [__m256; 2] = [_mm256_set1_ps(f32::INFINITY); 2];
    let mut hi: [__m256; 2] = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
    let mut nan = _mm256_setzero_ps();
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        let p = c.as_ptr();
        for k in 0..2 {
            // SAFETY: `c` holds 16 elements; offsets 8k..8k+8 are in bounds.
            let x = unsafe { _mm256_loadu_ps(p.add(8 * k)) };
            lo[k] = _mm256_min_ps(x, lo[k]);
            hi[k] = _mm256_max_ps(x, hi[k]);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
        }
    }
    let mut out = Extrema {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        nan: _mm256_movemask_ps(nan) != 0,
    };
    let (mut l, mut h) = ([0.0_f32; 8], [0.0_f32; 8]);
    for k in 0..2 {
        // SAFETY: `l` and `h` are arrays of eight f32.
        unsafe {
            _mm256_storeu_ps(l.as_mut_ptr(), lo[k]);
            _mm256_storeu_ps(h.as_mut_ptr(), hi[k]);
        }
        for j in 0..8 {
            out.absorb(l[j], h[j]);
        }
    }
    for &x in chunks.remainder() {
        out.absorb(x, x);
        out.nan |= x.is_nan();
    }
    out
}
