//! In-place elementwise kernels: `x ← f(x)` over a view of any dimension.
//!
//! Each kernel dispatches once per call: a view whose elements are
//! contiguous in memory (any order) runs the tight slice loop, SIMD-dispatched
//! where it pays (see [`crate::simd`]); a view whose last axis is contiguous
//! (a column range of a row-major array) runs the slice loop per row; other
//! views fall back to `map_inplace`. All paths give the same results.
//!
//! # IEEE semantics
//!
//! The kernels are plain IEEE 754 arithmetic, with no error reporting:
//! `sqrt` of a negative number and `ln` of a negative number give NaN,
//! `ln(0) == -inf`, `exp` overflows to `+inf`, NaN inputs give NaN outputs
//! (`abs` and `sqrt_abs` included), and `sqrt(-0.0) == -0.0`.

use std::cmp::Ordering;

use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension, Zip};

use crate::error::{Error, Result, shape_mismatch};
use crate::float::Float;
use crate::simd;

/// Below this many elements per row, the per-row path costs more than it saves.
const MIN_ROW_FOR_SLICES: usize = 16;

/// Runs `kernel` on the contiguous pieces of `a`, or `scalar` per element.
fn apply<T: Float, D: Dimension>(
    mut a: ArrayViewMut<'_, T, D>,
    kernel: impl Fn(&mut [T]),
    scalar: impl Fn(T) -> T,
) {
    if let Some(xs) = a.as_slice_memory_order_mut() {
        kernel(xs);
        return;
    }
    if let Some(last) = a.ndim().checked_sub(1) {
        let axis = Axis(last);
        if a.stride_of(axis) == 1 && a.len_of(axis) >= MIN_ROW_FOR_SLICES {
            for mut row in a.lanes_mut(axis) {
                match row.as_slice_mut() {
                    Some(xs) => kernel(xs),
                    None => row.map_inplace(|x| *x = scalar(*x)),
                }
            }
            return;
        }
    }
    a.map_inplace(|x| *x = scalar(*x));
}

/// `x ← sqrt(x)` (correctly rounded; negative inputs give NaN).
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// let mut a = array![[4.0_f64, 9.0], [0.25, -1.0]];
/// shmpar_kernels::sqrt(a.view_mut());
/// assert_eq!(a.row(0).to_vec(), vec![2.0, 3.0]);
/// assert_eq!(a[[1, 0]], 0.5);
/// assert!(a[[1, 1]].is_nan());
/// ```
pub fn sqrt<T: Float, D: Dimension>(a: ArrayViewMut<'_, T, D>) {
    apply(a, simd::sqrt_slice, T::sqrt);
}

/// `x ← |x|`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// let mut a = array![-1.5_f32, 2.0, -0.0];
/// shmpar_kernels::abs(a.view_mut());
/// assert_eq!(a, array![1.5, 2.0, 0.0]);
/// ```
pub fn abs<T: Float, D: Dimension>(a: ArrayViewMut<'_, T, D>) {
    apply(a, simd::abs_slice, T::abs);
}

/// `x ← sqrt(|x|)`, fused in one pass over memory.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// let mut a = array![-16.0_f64, 9.0, 0.0];
/// shmpar_kernels::sqrt_abs(a.view_mut());
/// assert_eq!(a, array![4.0, 3.0, 0.0]);
/// ```
pub fn sqrt_abs<T: Float, D: Dimension>(a: ArrayViewMut<'_, T, D>) {
    apply(a, simd::sqrt_abs_slice, |x: T| x.abs().sqrt());
}

/// `x ← e^x` (overflows to `+inf`, `exp(-inf) == 0`).
///
/// This kernel calls the platform `exp` per element: it is not vectorized.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// let mut a = array![0.0_f64, f64::NEG_INFINITY];
/// shmpar_kernels::exp(a.view_mut());
/// assert_eq!(a, array![1.0, 0.0]);
/// ```
pub fn exp<T: Float, D: Dimension>(a: ArrayViewMut<'_, T, D>) {
    apply(a, simd::exp_slice, T::exp);
}

/// `x ← ln x` (`ln 0 == -inf`, negative inputs give NaN).
///
/// This kernel calls the platform `ln` per element: it is not vectorized.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// let mut a = array![1.0_f64, 0.0];
/// shmpar_kernels::ln(a.view_mut());
/// assert_eq!(a, array![0.0, f64::NEG_INFINITY]);
/// ```
pub fn ln<T: Float, D: Dimension>(a: ArrayViewMut<'_, T, D>) {
    apply(a, simd::ln_slice, T::ln);
}

/// `x ← k · x`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// let mut a = array![1.0_f64, -2.0];
/// shmpar_kernels::scale(a.view_mut(), 3.0);
/// assert_eq!(a, array![3.0, -6.0]);
/// ```
pub fn scale<T: Float, D: Dimension>(a: ArrayViewMut<'_, T, D>, k: T) {
    apply(a, |xs| simd::scale_slice(xs, k), |x| k * x);
}

/// `x ← x + k`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// let mut a = array![1.0_f64, -2.0];
/// shmpar_kernels::offset(a.view_mut(), 0.5);
/// assert_eq!(a, array![1.5, -1.5]);
/// ```
pub fn offset<T: Float, D: Dimension>(a: ArrayViewMut<'_, T, D>, k: T) {
    apply(a, |xs| simd::offset_slice(xs, k), |x| x + k);
}

/// `x ← lo if x < lo, hi if x > hi, else x`; NaN stays NaN (as `np.clip`).
///
/// # Errors
///
/// [`Error::InvalidParameter`] if `lo > hi` or either bound is NaN; the
/// array is left untouched.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let mut a = array![-5.0_f64, 0.5, 7.0, f64::NAN];
/// shmpar_kernels::clamp(a.view_mut(), 0.0, 1.0)?;
/// assert_eq!(a.slice(ndarray::s![..3]), array![0.0, 0.5, 1.0]);
/// assert!(a[3].is_nan());
/// assert!(shmpar_kernels::clamp(a.view_mut(), 1.0, 0.0).is_err());
/// # Ok(())
/// # }
/// ```
pub fn clamp<T: Float, D: Dimension>(a: ArrayViewMut<'_, T, D>, lo: T, hi: T) -> Result<()> {
    // Written so that a NaN bound fails the check.
    if !matches!(lo.partial_cmp(&hi), Some(Ordering::Less | Ordering::Equal)) {
        return Err(Error::InvalidParameter {
            kernel: "clamp",
            reason: format!("the bounds must satisfy lo <= hi and not be NaN, got lo = {lo}, hi = {hi}"),
        });
    }
    apply(
        a,
        |xs| simd::clamp_slice(xs, lo, hi),
        |x| {
            let x = if x < lo { lo } else { x };
            if x > hi { hi } else { x }
        },
    );
    Ok(())
}

/// `x ← v` for every element, for any cloneable element type.
///
/// # Examples
///
/// ```
/// use ndarray::Array2;
///
/// let mut a = Array2::<i32>::zeros((2, 3));
/// shmpar_kernels::fill(a.view_mut(), 7);
/// assert!(a.iter().all(|&x| x == 7));
/// ```
pub fn fill<T: Clone, D: Dimension>(mut a: ArrayViewMut<'_, T, D>, v: T) {
    a.fill(v);
}

/// `y ← alpha · x + y`, elementwise over two arrays of the same shape.
///
/// The product and the sum are rounded separately (no fused multiply-add),
/// so the result is the same on every CPU.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] if `x` and `y` differ in shape; `y` is left
/// untouched.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let x = array![1.0_f64, 2.0, 3.0];
/// let mut y = array![10.0_f64, 20.0, 30.0];
/// shmpar_kernels::axpy(2.0, x.view(), y.view_mut())?;
/// assert_eq!(y, array![12.0, 24.0, 36.0]);
/// # Ok(())
/// # }
/// ```
pub fn axpy<T: Float, D: Dimension>(
    alpha: T,
    x: ArrayView<'_, T, D>,
    mut y: ArrayViewMut<'_, T, D>,
) -> Result<()> {
    if x.shape() != y.shape() {
        return Err(shape_mismatch("axpy", "y", x.shape(), y.shape()));
    }
    // Memory order matches element order only if the strides agree.
    if x.strides() == y.strides() {
        if let (Some(xs), Some(ys)) = (x.as_slice_memory_order(), y.as_slice_memory_order_mut()) {
            simd::axpy_slice(alpha, xs, ys);
            return Ok(());
        }
    }
    Zip::from(&mut y).and(&x).for_each(|y, &x| *y = alpha * x + *y);
    Ok(())
}
