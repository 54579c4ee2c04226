//! A dense matrix-vector product `y = A·x`, by rows.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1};

use crate::error::{Result, shape_mismatch};

/// `y = A·x` for one chunk of rows: `y_rows[i] = A_rows[i, :] · x`, with
/// `x` the whole vector.
///
/// Each `y[i]` is [`dot`](crate::dot)`(A[i, :], x)`, the crate's pairwise
/// dot product (accurate to `O(eps · log n)`, vectorized), a function of
/// row `i` and `x` alone: any split of the rows gives the same bits as one
/// call over the whole matrix.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) if `x` is not as
/// long as a row of `a_rows`, or `y_rows` not as long as `a_rows` has rows;
/// nothing is written then.
///
/// # Examples
///
/// ```
/// use ndarray::{array, Array1};
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let a = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
/// let mut y = Array1::zeros(3);
/// shmpar_kernels::workloads::matvec_rows(a.view(), array![1.0, -1.0].view(), y.view_mut())?;
/// assert_eq!(y, array![-1.0, -1.0, -1.0]);
/// # Ok(())
/// # }
/// ```
pub fn matvec_rows(
    a_rows: ArrayView2<'_, f64>,
    x: ArrayView1<'_, f64>,
    mut y_rows: ArrayViewMut1<'_, f64>,
) -> Result<()> {
    let (rows, cols) = a_rows.dim();
    if x.len() != cols {
        return Err(shape_mismatch("matvec_rows", "x", &[cols], x.shape()));
    }
    if y_rows.len() != rows {
        return Err(shape_mismatch("matvec_rows", "y_rows", &[rows], y_rows.shape()));
    }
    for (row, y) in a_rows.rows().into_iter().zip(y_rows.iter_mut()) {
        *y = crate::reduce::dot(row, x)?;
    }
    Ok(())
}
