//! The STREAM triad, `a = b + s·c`: three arrays, one pass, memory-bound.

use ndarray::{ArrayView1, ArrayViewMut1, Zip};

use crate::error::{Result, shape_mismatch};
use crate::float::Float;
use crate::simd::multiversion;

multiversion! {
    /// `a = b + s * c` (two roundings, no FMA). Stops at the shortest slice.
    fn triad_slice<T: Float>(a: &mut [T], b: &[T], c: &[T], s: T) {
        let n = a.len().min(b.len()).min(c.len());
        let (a, b, c) = (&mut a[..n], &b[..n], &c[..n]);
        for i in 0..n {
            a[i] = b[i] + s * c[i];
        }
    }
}

/// The STREAM triad on one chunk: `a[i] = b[i] + s * c[i]`, with `b` and
/// `c` the same rows of the other two arrays.
///
/// Each element is `b + s·c` rounded twice (no fused multiply-add), so the
/// result equals the plain loop's bit for bit, whatever the chunking and
/// the CPU.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `b` or `c` is
/// not as long as `a_rows`; nothing is written then.
///
/// # Examples
///
/// ```
/// use ndarray::array;
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let mut a = array![0.0, 0.0, 0.0];
/// shmpar_kernels::workloads::triad(a.view_mut(), array![1.0, 2.0, 3.0].view(), array![1.0, 1.0, 2.0].view(), 0.5)?;
/// assert_eq!(a, array![1.5, 2.5, 4.0]);
/// # Ok(())
/// # }
/// ```
pub fn triad(
    mut a_rows: ArrayViewMut1<'_, f64>,
    b: ArrayView1<'_, f64>,
    c: ArrayView1<'_, f64>,
    s: f64,
) -> Result<()> {
    for (what, other) in [("b", &b), ("c", &c)] {
        if other.len() != a_rows.len() {
            return Err(shape_mismatch("triad", what, a_rows.shape(), other.shape()));
        }
    }
    if let (Some(a), Some(b), Some(c)) = (a_rows.as_slice_mut(), b.as_slice(), c.as_slice()) {
        triad_slice(a, b, c, s);
        return Ok(());
    }
    Zip::from(&mut a_rows)
        .and(&b)
        .and(&c)
        .for_each(|a, &b, &c| *a = b + s * c);
    Ok(())
}
