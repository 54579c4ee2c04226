//! One explicit step of heat diffusion, for chunks of rows.
//!
//! The double-buffer pattern the runtime runs, per step:
//!
//! 1. every worker calls [`heat_step_1d`] / [`heat_step_2d`] with the whole
//!    current buffer as `src` (it reads its neighbours' boundary rows) and
//!    **only its own rows** of the next buffer as `dst`, so writers never
//!    overlap and nobody writes what anybody reads;
//! 2. a barrier: nobody may read the next buffer before all have written it;
//! 3. every worker swaps the roles of the two buffers.
//!
//! Boundaries are fixed (Dirichlet): the first and last element (1-D), or
//! the outer ring of cells (2-D), are copied unchanged. The scheme is
//! stable for `alpha <= 1/2` in 1-D and `alpha <= 1/4` in 2-D; larger
//! values are accepted and blow up, as the mathematics says they should.
//! Chunked steps give results bit-identical to [`heat_serial_1d`] /
//! [`heat_serial_2d`], since every cell is computed by the same expression.
//!
//! ```
//! use ndarray::{Array1, s};
//! use shmpar_kernels::stencil::{heat_serial_1d, heat_step_1d};
//!
//! # fn main() -> Result<(), shmpar_kernels::Error> {
//! let n = 10;
//! let mut cur = Array1::from_shape_fn(n, |i| if i == n / 2 { 1.0_f64 } else { 0.0 });
//! let mut next = cur.clone();
//! let mut reference = cur.clone();
//! let chunks = [0..3, 3..4, 4..10]; // three workers, uneven rows
//! for _step in 0..5 {
//!     for rows in chunks.clone() {
//!         let dst = next.slice_mut(s![rows.clone()]);
//!         heat_step_1d(cur.view(), dst, rows, 0.25)?;
//!     }
//!     // (barrier)
//!     std::mem::swap(&mut cur, &mut next);
//! }
//! heat_serial_1d(reference.view_mut(), 5, 0.25);
//! assert_eq!(cur, reference);
//! # Ok(())
//! # }
//! ```

use std::ops::Range;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

use crate::error::{Error, Result, shape_mismatch};
use crate::float::Float;
use crate::simd::multiversion;

multiversion! {
    /// `d[j] = s[j+1] + alpha (s[j] - 2 s[j+1] + s[j+2])`, needs `s.len() >= d.len() + 2`.
    fn heat_row_1d<T: Float>(d: &mut [T], s: &[T], alpha: T) {
        let n = d.len().min(s.len().saturating_sub(2));
        let (d, s) = (&mut d[..n], &s[..n + 2]);
        for j in 0..n {
            d[j] = s[j + 1] + alpha * (s[j] - T::TWO * s[j + 1] + s[j + 2]);
        }
    }
}

multiversion! {
    /// The 5-point update of the interior cells `1..=d.len()` of row `mid`.
    fn heat_row_2d<T: Float>(d: &mut [T], up: &[T], mid: &[T], down: &[T], alpha: T) {
        let n = d
            .len()
            .min(up.len().saturating_sub(2))
            .min(mid.len().saturating_sub(2))
            .min(down.len().saturating_sub(2));
        let (d, up, mid, down) = (&mut d[..n], &up[..n + 2], &mid[..n + 2], &down[..n + 2]);
        for j in 0..n {
            d[j] = cell_2d(up[j + 1], mid[j], mid[j + 1], mid[j + 2], down[j + 1], alpha);
        }
    }
}

/// The 1-D update of one interior cell.
#[inline(always)]
fn cell_1d<T: Float>(left: T, c: T, right: T, alpha: T) -> T {
    c + alpha * (left - T::TWO * c + right)
}

/// The 2-D update of one interior cell; the one expression every path uses.
#[inline(always)]
fn cell_2d<T: Float>(up: T, left: T, c: T, right: T, down: T, alpha: T) -> T {
    c + alpha * (up + down + left + right - T::FOUR * c)
}

fn check_rows(kernel: &'static str, rows: &Range<usize>, len: usize) -> Result<()> {
    if rows.start > rows.end || rows.end > len {
        return Err(Error::RowsOutOfBounds {
            kernel,
            rows: rows.clone(),
            len,
        });
    }
    Ok(())
}

/// One step of 1-D explicit heat diffusion for the cells `rows` of `src`:
/// `dst[i - rows.start] = src[i] + alpha · (src[i-1] - 2 src[i] + src[i+1])`,
/// with `src[0]` and `src[n-1]` copied unchanged.
///
/// `src` is the whole current array; `dst` is the caller's chunk of the
/// next array: exactly `rows.len()` cells, the ones at `rows`.
///
/// # Errors
///
/// [`Error::RowsOutOfBounds`] if `rows` is not within `0..src.len()`;
/// [`Error::ShapeMismatch`] if `dst.len() != rows.len()`. Nothing is
/// written then.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let src = array![0.0_f64, 0.0, 1.0, 0.0, 0.0];
/// let mut dst = array![9.0_f64, 9.0];
/// shmpar_kernels::stencil::heat_step_1d(src.view(), dst.view_mut(), 1..3, 0.5)?;
/// assert_eq!(dst, array![0.5, 0.0]);
/// # Ok(())
/// # }
/// ```
pub fn heat_step_1d<T: Float>(
    src: ArrayView1<'_, T>,
    mut dst: ArrayViewMut1<'_, T>,
    rows: Range<usize>,
    alpha: T,
) -> Result<()> {
    let n = src.len();
    check_rows("heat_step_1d", &rows, n)?;
    if dst.len() != rows.len() {
        return Err(shape_mismatch("heat_step_1d", "dst", &[rows.len()], dst.shape()));
    }
    let start = rows.start;
    // Interior cells of this chunk: 1..n-1 intersected with rows.
    let lo = rows.start.max(1);
    let hi = rows.end.min(n.saturating_sub(1)).max(lo);
    for i in rows.clone().filter(|&i| i < lo || i >= hi) {
        dst[i - start] = src[i];
    }
    if lo >= hi {
        return Ok(());
    }
    if let (Some(s), Some(d)) = (src.as_slice(), dst.as_slice_mut()) {
        heat_row_1d(&mut d[lo - start..hi - start], &s[lo - 1..=hi], alpha);
    } else {
        for i in lo..hi {
            dst[i - start] = cell_1d(src[i - 1], src[i], src[i + 1], alpha);
        }
    }
    Ok(())
}

/// One step of 2-D explicit heat diffusion (5-point stencil) for the rows
/// `rows` of `src`:
/// `dst = c + alpha · (up + down + left + right - 4c)` on interior cells,
/// with the outer ring of cells copied unchanged.
///
/// `src` is the whole current `(nrows, ncols)` array; `dst` is the
/// caller's chunk of the next array, shape `(rows.len(), ncols)`.
///
/// # Errors
///
/// [`Error::RowsOutOfBounds`] if `rows` is not within `0..nrows`;
/// [`Error::ShapeMismatch`] if `dst` is not `(rows.len(), ncols)`. Nothing
/// is written then.
///
/// # Examples
///
/// ```
/// use ndarray::{Array2, s};
/// use shmpar_kernels::stencil::heat_step_2d;
///
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let mut src = Array2::<f64>::zeros((5, 5));
/// src[[2, 2]] = 1.0;
/// let mut dst = Array2::<f64>::zeros((5, 5));
/// heat_step_2d(src.view(), dst.slice_mut(s![..2, ..]), 0..2, 0.25)?;
/// heat_step_2d(src.view(), dst.slice_mut(s![2.., ..]), 2..5, 0.25)?;
/// assert_eq!(dst[[2, 2]], 0.0);
/// assert_eq!(dst[[1, 2]], 0.25);
/// # Ok(())
/// # }
/// ```
pub fn heat_step_2d<T: Float>(
    src: ArrayView2<'_, T>,
    mut dst: ArrayViewMut2<'_, T>,
    rows: Range<usize>,
    alpha: T,
) -> Result<()> {
    let (nrows, ncols) = src.dim();
    check_rows("heat_step_2d", &rows, nrows)?;
    if dst.dim() != (rows.len(), ncols) {
        return Err(shape_mismatch(
            "heat_step_2d",
            "dst",
            &[rows.len(), ncols],
            dst.shape(),
        ));
    }
    for (k, mut out) in dst.axis_iter_mut(Axis(0)).enumerate() {
        let i = rows.start + k;
        let here = src.row(i);
        if i == 0 || i + 1 == nrows || ncols < 3 {
            out.assign(&here);
            continue;
        }
        let (up, down) = (src.row(i - 1), src.row(i + 1));
        out[0] = here[0];
        out[ncols - 1] = here[ncols - 1];
        match (
            up.as_slice(),
            here.as_slice(),
            down.as_slice(),
            out.as_slice_mut(),
        ) {
            (Some(u), Some(m), Some(d), Some(o)) => {
                heat_row_2d(&mut o[1..ncols - 1], u, m, d, alpha);
            }
            _ => {
                for j in 1..ncols - 1 {
                    out[j] = cell_2d(up[j], here[j - 1], here[j], here[j + 1], down[j], alpha);
                }
            }
        }
    }
    Ok(())
}

/// The serial reference: `steps` steps of [`heat_step_1d`] over the whole
/// array, double-buffered, leaving the result in `u`.
///
/// # Examples
///
/// ```
/// use ndarray::array;
///
/// let mut u = array![0.0_f64, 0.0, 1.0, 0.0, 0.0];
/// shmpar_kernels::stencil::heat_serial_1d(u.view_mut(), 1, 0.5);
/// assert_eq!(u, array![0.0, 0.5, 0.0, 0.5, 0.0]);
/// ```
pub fn heat_serial_1d<T: Float>(mut u: ArrayViewMut1<'_, T>, steps: usize, alpha: T) {
    let n = u.len();
    let mut cur = u.to_owned();
    let mut next = cur.clone();
    for _ in 0..steps {
        // The full range always matches: the step cannot fail.
        if heat_step_1d(cur.view(), next.view_mut(), 0..n, alpha).is_err() {
            return;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    u.assign(&cur);
}

/// The serial reference: `steps` steps of [`heat_step_2d`] over the whole
/// array, double-buffered, leaving the result in `u`.
///
/// # Examples
///
/// ```
/// use ndarray::Array2;
///
/// let mut u = Array2::<f32>::zeros((4, 4));
/// u[[1, 1]] = 1.0;
/// shmpar_kernels::stencil::heat_serial_2d(u.view_mut(), 1, 0.25);
/// assert_eq!(u[[1, 1]], 0.0);
/// assert_eq!(u[[1, 2]], 0.25);
/// assert_eq!(u[[0, 1]], 0.0); // boundary: fixed
/// ```
pub fn heat_serial_2d<T: Float>(mut u: ArrayViewMut2<'_, T>, steps: usize, alpha: T) {
    let nrows = u.nrows();
    let mut cur = u.to_owned();
    let mut next = cur.clone();
    for _ in 0..steps {
        if heat_step_2d(cur.view(), next.view_mut(), 0..nrows, alpha).is_err() {
            return;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    u.assign(&cur);
}
