//! Sums: `Sum`, `Mean`, `Dot` and the L2 `Norm`.

use ndarray::{ArrayView, Dimension, Zip};
use serde::{Deserialize, Serialize};

use super::{BinaryReduction, Reduction, UnaryReduction, for_each_block};
use crate::error::{Result, shape_mismatch};
use crate::float::Float;
use crate::simd::{self, Plain, Scaled, Square};

/// A sum with a running compensation: the value is `sum + compensation`.
///
/// [`SumPartial::merge`] merges with Neumaier's two-sum, so the rounding
/// error of adding chunk sums is carried instead of lost.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable,
)]
pub struct SumPartial {
    /// The rounded sum.
    pub sum: f64,
    /// The rounding errors gathered so far (0 when `sum` is not finite).
    pub compensation: f64,
}

impl SumPartial {
    /// The empty sum.
    pub const ZERO: SumPartial = SumPartial {
        sum: 0.0,
        compensation: 0.0,
    };

    /// A partial holding exactly `value`.
    pub const fn of(value: f64) -> SumPartial {
        SumPartial {
            sum: value,
            compensation: 0.0,
        }
    }

    /// `self + other`, keeping the rounding error of the addition.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpar_kernels::reduce::SumPartial;
    ///
    /// let s = SumPartial::of(1e16).merge(SumPartial::of(1.0)).merge(SumPartial::of(-1e16));
    /// assert_eq!(s.value(), 1.0); // a plain f64 sum gives 0.0
    /// ```
    #[must_use]
    pub fn merge(self, other: SumPartial) -> SumPartial {
        let (a, b) = (self.sum, other.sum);
        let sum = a + b;
        let compensation = self.compensation + other.compensation;
        if !sum.is_finite() {
            // inf - inf in the two-sum would turn an overflow into NaN.
            return SumPartial {
                sum,
                compensation: 0.0,
            };
        }
        let err = if a.abs() >= b.abs() {
            (a - sum) + b
        } else {
            (b - sum) + a
        };
        SumPartial {
            sum,
            compensation: compensation + err,
        }
    }

    /// The compensated value, `sum + compensation` (`sum` if not finite).
    pub fn value(self) -> f64 {
        if self.sum.is_finite() {
            self.sum + self.compensation
        } else {
            self.sum
        }
    }
}

/// Pairwise sum of `term(x)` over a view of any layout.
fn sum_view<T: Float, D: Dimension, M: simd::Term>(a: &ArrayView<'_, T, D>, term: M) -> SumPartial {
    let mut acc = SumPartial::ZERO;
    for_each_block(a, |xs| acc = acc.merge(SumPartial::of(simd::sum_terms(xs, term))));
    acc
}

/// The sum of the elements, accumulated in `f64`.
///
/// Pairwise inside a chunk (see [`crate::simd`]), compensated across chunks.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::reduce::{Sum, UnaryReduction};
/// use ndarray::Array1;
///
/// let tenths = Array1::from_elem(10_000_000, 0.1_f64);
/// let s = Sum.reduce(tenths.view());
/// assert!((s - 1e6).abs() <= 1e6 * 1e-15);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum;

impl Reduction for Sum {
    type Partial = SumPartial;
    type Output = f64;

    fn identity(&self) -> SumPartial {
        SumPartial::ZERO
    }
    fn combine(&self, a: SumPartial, b: SumPartial) -> SumPartial {
        a.merge(b)
    }
    fn finish(&self, p: SumPartial) -> f64 {
        p.value()
    }
}

impl<T: Float> UnaryReduction<T> for Sum {
    fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> SumPartial {
        sum_view(&chunk, Plain)
    }
}

/// Partial of [`Mean`]: a compensated sum and an element count.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable,
)]
pub struct MeanPartial {
    /// The rounded sum.
    pub sum: f64,
    /// Its compensation, as in [`SumPartial`].
    pub compensation: f64,
    /// Number of elements.
    pub count: u64,
}

impl MeanPartial {
    fn sum(self) -> SumPartial {
        SumPartial {
            sum: self.sum,
            compensation: self.compensation,
        }
    }
}

/// The arithmetic mean: sum / count, NaN for no elements.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::reduce::{Mean, Reduction, UnaryReduction};
/// use ndarray::array;
///
/// let a = array![1.0_f64, 2.0, 3.0, 6.0];
/// let p = [Mean.partial(a.slice(ndarray::s![..1])), Mean.partial(a.slice(ndarray::s![1..]))];
/// assert_eq!(Mean.finish(Mean.combine_all(p)), 3.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mean;

impl Reduction for Mean {
    type Partial = MeanPartial;
    type Output = f64;

    fn identity(&self) -> MeanPartial {
        MeanPartial::default()
    }
    fn combine(&self, a: MeanPartial, b: MeanPartial) -> MeanPartial {
        let s = a.sum().merge(b.sum());
        MeanPartial {
            sum: s.sum,
            compensation: s.compensation,
            count: a.count + b.count,
        }
    }
    #[allow(clippy::cast_precision_loss)] // counts above 2^53 lose nothing that matters here
    fn finish(&self, p: MeanPartial) -> f64 {
        if p.count == 0 {
            f64::NAN
        } else {
            p.sum().value() / p.count as f64
        }
    }
}

impl<T: Float> UnaryReduction<T> for Mean {
    fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> MeanPartial {
        let s = sum_view(&chunk, Plain);
        MeanPartial {
            sum: s.sum,
            compensation: s.compensation,
            count: chunk.len() as u64,
        }
    }
}

/// The dot product `Σ x·y` of two arrays of the same shape, in `f64`.
///
/// Products and sums are rounded separately (no FMA), so the result does
/// not depend on the CPU.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::reduce::{BinaryReduction, Dot};
/// use ndarray::array;
///
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let x = array![[1.0_f64, 2.0], [3.0, 4.0]];
/// assert_eq!(Dot.reduce(x.view(), x.t())?, 1.0 + 6.0 + 6.0 + 16.0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dot;

impl Reduction for Dot {
    type Partial = SumPartial;
    type Output = f64;

    fn identity(&self) -> SumPartial {
        SumPartial::ZERO
    }
    fn combine(&self, a: SumPartial, b: SumPartial) -> SumPartial {
        a.merge(b)
    }
    fn finish(&self, p: SumPartial) -> f64 {
        p.value()
    }
}

impl<T: Float> BinaryReduction<T> for Dot {
    fn partial<D: Dimension>(&self, x: ArrayView<'_, T, D>, y: ArrayView<'_, T, D>) -> Result<SumPartial> {
        if x.shape() != y.shape() {
            return Err(shape_mismatch("dot", "y", x.shape(), y.shape()));
        }
        if x.strides() == y.strides() {
            if let (Some(xs), Some(ys)) = (x.as_slice_memory_order(), y.as_slice_memory_order()) {
                return Ok(SumPartial::of(simd::dot_slice(xs, ys)));
            }
        }
        const GATHER: usize = 2048;
        let (mut bx, mut by) = ([T::ZERO; GATHER], [T::ZERO; GATHER]);
        let mut n = 0;
        let mut acc = SumPartial::ZERO;
        Zip::from(&x).and(&y).for_each(|&a, &b| {
            bx[n] = a;
            by[n] = b;
            n += 1;
            if n == GATHER {
                acc = acc.merge(SumPartial::of(simd::dot_slice(&bx, &by)));
                n = 0;
            }
        });
        Ok(acc.merge(SumPartial::of(simd::dot_slice(&bx[..n], &by[..n]))))
    }
}

/// Partial of [`Norm`]: the norm is `scale · sqrt(ssq)`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable,
)]
pub struct NormPartial {
    /// A power-free scale factor (`1` when no scaling was needed, the
    /// largest magnitude otherwise; `0` for an all-zero chunk).
    pub scale: f64,
    /// Sum of the squares of the elements divided by `scale`.
    pub ssq: f64,
}

/// Below this sum of squares, underflowed squares might matter, so the
/// chunk is summed again scaled by its largest magnitude.
const NORM_TINY: f64 = 1e-250;

/// The Euclidean (L2) norm, without spurious overflow or underflow.
///
/// A chunk's sum of squares is computed directly (fast, vectorized); only if
/// it overflows or is so small that underflow could matter (`< 1e-250`) is
/// the chunk summed again with every element divided by its largest
/// magnitude, as LAPACK's `dnrm2` does. Partials merge by rescaling to the
/// larger scale. `f32` input never needs the second pass.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::reduce::{Norm, UnaryReduction};
/// use ndarray::array;
///
/// assert_eq!(Norm.reduce(array![3e-200_f64, 4e-200].view()), 5e-200);
/// assert_eq!(Norm.reduce(array![f64::INFINITY, 1.0].view()), f64::INFINITY);
/// assert!(Norm.reduce(array![f64::INFINITY, f64::NAN].view()).is_nan());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Norm;

impl Reduction for Norm {
    type Partial = NormPartial;
    type Output = f64;

    fn identity(&self) -> NormPartial {
        NormPartial { scale: 0.0, ssq: 0.0 }
    }
    fn combine(&self, a: NormPartial, b: NormPartial) -> NormPartial {
        if a.scale.is_nan() || a.ssq.is_nan() || b.scale.is_nan() || b.ssq.is_nan() {
            return NormPartial {
                scale: f64::NAN,
                ssq: f64::NAN,
            };
        }
        let (big, small) = if a.scale >= b.scale { (a, b) } else { (b, a) };
        if small.scale == 0.0 || small.ssq == 0.0 {
            return big;
        }
        if big.scale.is_infinite() {
            return NormPartial {
                scale: f64::INFINITY,
                ssq: 1.0,
            };
        }
        let r = small.scale / big.scale;
        NormPartial {
            scale: big.scale,
            ssq: big.ssq + small.ssq * r * r,
        }
    }
    fn finish(&self, p: NormPartial) -> f64 {
        if p.scale == 0.0 {
            // All zeros; also keeps 0 * inf from appearing.
            return if p.ssq.is_nan() { f64::NAN } else { 0.0 };
        }
        p.scale * p.ssq.sqrt()
    }
}

impl<T: Float> UnaryReduction<T> for Norm {
    fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> NormPartial {
        let ssq = sum_view(&chunk, Square).value();
        if ssq.is_nan() {
            return NormPartial {
                scale: f64::NAN,
                ssq: f64::NAN,
            };
        }
        if ssq.is_finite() && ssq >= NORM_TINY {
            return NormPartial { scale: 1.0, ssq };
        }
        // Overflowed, underflowed or all zero: rescale by the largest magnitude.
        let mut biggest = 0.0_f64;
        for_each_block(&chunk, |xs| {
            if xs.is_empty() {
                return;
            }
            let e = simd::extrema_slice(xs);
            biggest = biggest.max(e.min.to_f64().abs()).max(e.max.to_f64().abs());
        });
        if biggest == 0.0 {
            return NormPartial { scale: 0.0, ssq: 0.0 };
        }
        if biggest.is_infinite() {
            return NormPartial {
                scale: f64::INFINITY,
                ssq: 1.0,
            };
        }
        NormPartial {
            scale: biggest,
            ssq: sum_view(&chunk, Scaled(biggest)).value(),
        }
    }
}
