//! Reductions with per-chunk partials and an associative combine.
//!
//! A reduction is split the way the runtime runs it: each worker computes a
//! [`partial`](UnaryReduction::partial) of its chunk, the coordinator
//! [`combine`](Reduction::combine)s the partials in rank order starting from
//! the [`identity`](Reduction::identity), and [`finish`](Reduction::finish)es
//! the result. Combining in a fixed order makes the result deterministic for
//! a given chunking; the whole-array value and the chunked value agree to a
//! few ulps (exactly, for `Min`, `Max`, `MinMax` and `Histogram`).
//!
//! ```
//! use ndarray::{Array1, s};
//! use shmpar_kernels::reduce::{Reduction, Sum, UnaryReduction};
//!
//! let a = Array1::from_iter((0..1000).map(f64::from));
//! // Three "workers" with chunks of uneven length:
//! let partials = [s![..100], s![100..650], s![650..]]
//!     .map(|rows| Sum.partial(a.slice(rows)));
//! let total = Sum.finish(Sum.combine_all(partials));
//! assert_eq!(total, 499_500.0);
//! ```
//!
//! # Accumulation
//!
//! Every reduction accumulates in `f64`, for `f32` input too (exactly
//! widened), so the partials have one layout whatever the element type.
//! Sums are pairwise over blocks of 256 in 16 lanes (see [`crate::simd`]):
//! relative error `O(eps · log n)`, at least as good as NumPy's pairwise
//! sum, and far better for `f32`. Partials of sums carry a compensation
//! term, so combining many chunks adds no error of its own to speak of.
//!
//! # Partials in shared memory
//!
//! All partials are `serde`-serializable. Those of fixed size are also
//! `#[repr(C)]`, `Copy` and implement [`PlainPartial`], which encodes them
//! into a fixed-size byte slot without `unsafe`; [`HistogramPartial`] holds
//! a `Vec` and goes through serde.
//!
//! # NaN, infinities and empty chunks
//!
//! | reduction | NaN in input | ±inf in input | empty input |
//! |---|---|---|---|
//! | [`Sum`], [`Dot`] | NaN | ±inf (NaN if both signs) | `0.0` |
//! | [`Mean`] | NaN | ±inf (NaN if both signs) | NaN |
//! | [`Variance`], [`Std`] | NaN | NaN | NaN (also when `n <= ddof`) |
//! | [`Min`], [`Max`], [`MinMax`] | NaN (as `np.min`) | compared normally | `None` |
//! | [`Norm`] | NaN | `+inf` | `0.0` |
//! | [`Histogram`] | counted in `nan`, not binned | counted in `below` / `above` | all counts 0 |
//!
//! An empty chunk always yields the identity partial, so a worker with no
//! rows changes nothing. The sign of a zero result is unspecified.

mod bytes;
mod histogram;
mod stats;
mod sum;

pub use bytes::PlainPartial;
pub use histogram::{Histogram, HistogramOutput, HistogramPartial};
pub use stats::{ExtremaPartial, Max, Min, MinMax, MomentsPartial, Std, Variance};
pub use sum::{Dot, Mean, MeanPartial, Norm, NormPartial, Sum, SumPartial};

use std::fmt::Debug;

use ndarray::{ArrayView, Dimension};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::float::Float;

/// The merge side of a reduction: an identity, an associative combine and
/// a finishing step. Independent of the element type.
pub trait Reduction {
    /// What one chunk contributes.
    type Partial: Clone + Send + Sync + Debug + PartialEq + Serialize + DeserializeOwned + 'static;
    /// The final result.
    type Output;

    /// The partial of an empty chunk: `combine(identity(), p) == p`.
    fn identity(&self) -> Self::Partial;

    /// Merges the partials of two adjacent chunks, `a` before `b`.
    ///
    /// Associative up to rounding (exactly for the order-free reductions);
    /// combining in rank order gives a deterministic result.
    fn combine(&self, a: Self::Partial, b: Self::Partial) -> Self::Partial;

    /// Turns the combined partial into the result.
    fn finish(&self, partial: Self::Partial) -> Self::Output;

    /// Combines `partials` in iteration order, starting from the identity.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpar_kernels::reduce::{Max, Reduction, UnaryReduction};
    /// use ndarray::array;
    ///
    /// let p = [array![1.0, 5.0], array![], array![3.0]].map(|c| Max.partial(c.view()));
    /// assert_eq!(Max.finish(Max.combine_all(p)), Some(5.0));
    /// ```
    fn combine_all<I>(&self, partials: I) -> Self::Partial
    where
        I: IntoIterator<Item = Self::Partial>,
    {
        partials
            .into_iter()
            .fold(self.identity(), |acc, p| self.combine(acc, p))
    }
}

/// A reduction over the elements of one array.
pub trait UnaryReduction<T: Float>: Reduction {
    /// The partial of one chunk (of any shape and memory layout).
    fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> Self::Partial;

    /// The reduction of a whole array: `finish(partial(a))`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpar_kernels::reduce::{Mean, UnaryReduction};
    /// use ndarray::array;
    ///
    /// assert_eq!(Mean.reduce(array![[1.0_f32, 2.0], [3.0, 6.0]].view()), 3.0);
    /// ```
    fn reduce<D: Dimension>(&self, a: ArrayView<'_, T, D>) -> Self::Output {
        self.finish(self.partial(a))
    }
}

/// A reduction over the element pairs of two arrays of the same shape.
pub trait BinaryReduction<T: Float>: Reduction {
    /// The partial of one pair of chunks.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the shapes differ.
    fn partial<D: Dimension>(&self, x: ArrayView<'_, T, D>, y: ArrayView<'_, T, D>) -> Result<Self::Partial>;

    /// The reduction of two whole arrays.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the shapes differ.
    fn reduce<D: Dimension>(&self, x: ArrayView<'_, T, D>, y: ArrayView<'_, T, D>) -> Result<Self::Output> {
        Ok(self.finish(self.partial(x, y)?))
    }
}

/// Elements gathered per block when a view is not contiguous.
const GATHER: usize = 4096;

/// Calls `f` on the elements of `a` in contiguous pieces: the whole memory
/// if `a` is contiguous (in any order), else blocks of [`GATHER`] copied out
/// in logical order.
pub(crate) fn for_each_block<T: Float, D: Dimension>(a: &ArrayView<'_, T, D>, mut f: impl FnMut(&[T])) {
    if let Some(xs) = a.as_slice_memory_order() {
        f(xs);
        return;
    }
    let mut buf = [T::ZERO; GATHER];
    let mut n = 0;
    for &x in a {
        buf[n] = x;
        n += 1;
        if n == GATHER {
            f(&buf);
            n = 0;
        }
    }
    if n > 0 {
        f(&buf[..n]);
    }
}

/// Sums the elements of `a` in `f64`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// assert_eq!(shmpar_kernels::sum(array![[1.0_f32, 2.0], [3.0, 4.0]].view()), 10.0);
/// ```
pub fn sum<T: Float, D: Dimension>(a: ArrayView<'_, T, D>) -> f64 {
    Sum.reduce(a)
}

/// The arithmetic mean; NaN for an empty array.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// assert_eq!(shmpar_kernels::mean(array![1.0_f64, 2.0, 6.0].view()), 3.0);
/// assert!(shmpar_kernels::mean(ndarray::Array1::<f64>::zeros(0).view()).is_nan());
/// ```
pub fn mean<T: Float, D: Dimension>(a: ArrayView<'_, T, D>) -> f64 {
    Mean.reduce(a)
}

/// The smallest element; NaN if any element is NaN; `None` if empty.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// assert_eq!(shmpar_kernels::min(array![3.0_f32, -1.0, 2.0].view()), Some(-1.0));
/// ```
pub fn min<T: Float, D: Dimension>(a: ArrayView<'_, T, D>) -> Option<T> {
    Min.reduce(a).map(T::from_f64)
}

/// The largest element; NaN if any element is NaN; `None` if empty.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// assert_eq!(shmpar_kernels::max(array![3.0_f32, -1.0, 2.0].view()), Some(3.0));
/// ```
pub fn max<T: Float, D: Dimension>(a: ArrayView<'_, T, D>) -> Option<T> {
    Max.reduce(a).map(T::from_f64)
}

/// The variance with `ddof` delta degrees of freedom (`0`: population,
/// `1`: sample); NaN if there are at most `ddof` elements.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// let a = array![2.0_f64, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
/// assert_eq!(shmpar_kernels::var(a.view(), 0), 4.0);
/// ```
pub fn var<T: Float, D: Dimension>(a: ArrayView<'_, T, D>, ddof: u64) -> f64 {
    Variance { ddof }.reduce(a)
}

/// The standard deviation, `sqrt(var(a, ddof))`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// let a = array![2.0_f64, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
/// assert_eq!(shmpar_kernels::std(a.view(), 0), 2.0);
/// ```
pub fn std<T: Float, D: Dimension>(a: ArrayView<'_, T, D>, ddof: u64) -> f64 {
    Std { ddof }.reduce(a)
}

/// The dot product `Σ x·y`, accumulated in `f64`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if the shapes differ.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let d = shmpar_kernels::dot(array![1.0_f64, 2.0].view(), array![3.0, 4.0].view())?;
/// assert_eq!(d, 11.0);
/// # Ok(())
/// # }
/// ```
pub fn dot<T: Float, D: Dimension>(x: ArrayView<'_, T, D>, y: ArrayView<'_, T, D>) -> Result<f64> {
    Dot.reduce(x, y)
}

/// The Euclidean norm `sqrt(Σ x²)`, without spurious overflow or underflow.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// assert_eq!(shmpar_kernels::norm(array![3.0_f64, 4.0].view()), 5.0);
/// let big = shmpar_kernels::norm(array![3e200_f64, 4e200].view()); // no overflow
/// assert!((big - 5e200).abs() <= 5e200 * 1e-15);
/// ```
pub fn norm<T: Float, D: Dimension>(a: ArrayView<'_, T, D>) -> f64 {
    Norm.reduce(a)
}

/// Counts of the elements in `bins` equal-width bins over `[lo, hi]`.
///
/// # Errors
///
/// [`Error::InvalidParameter`](crate::Error::InvalidParameter) for bad
/// bounds or bin counts; see [`Histogram::new`].
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let h = shmpar_kernels::histogram(array![0.1_f64, 0.6, 0.7, 2.0].view(), 0.0, 1.0, 2)?;
/// assert_eq!(h.counts, vec![1, 2]);
/// assert_eq!(h.above, 1);
/// # Ok(())
/// # }
/// ```
pub fn histogram<T: Float, D: Dimension>(
    a: ArrayView<'_, T, D>,
    lo: f64,
    hi: f64,
    bins: usize,
) -> Result<HistogramOutput> {
    Ok(Histogram::new(lo, hi, bins)?.reduce(a))
}
