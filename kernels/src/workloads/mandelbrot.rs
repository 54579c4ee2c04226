//! Escape-time counts of the Mandelbrot set: rows of very uneven cost.

use ndarray::ArrayViewMut2;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, shape_mismatch};

/// The image to compute: which rectangle of the complex plane, at what
/// resolution, with how many iterations at most.
///
/// Pixel `(row, col)` is the point at its centre,
/// `re = re_min + (col + 0.5) · (re_max - re_min) / width` and
/// `im = im_max - (row + 0.5) · (im_max - im_min) / height` (row 0 at the
/// top), each computed the same way in every chunk.
///
/// Plain data (`#[repr(C)]`, [`bytemuck::Pod`], no padding), so a runtime
/// can pass it to its workers as bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MandelbrotParams {
    /// Real part of the left edge.
    pub re_min: f64,
    /// Real part of the right edge.
    pub re_max: f64,
    /// Imaginary part of the bottom edge.
    pub im_min: f64,
    /// Imaginary part of the top edge.
    pub im_max: f64,
    /// Pixels per row (columns of the image).
    pub width: u64,
    /// Rows of the whole image.
    pub height: u64,
    /// Iterations before a point counts as inside the set (at most `u32::MAX`).
    pub max_iter: u64,
}

impl MandelbrotParams {
    /// The classic view, `[-2, 0.5] × [-1.25, 1.25]`. Its costly rows are
    /// the middle ones, around the real axis; the image is symmetric about
    /// it, so two equal halves cost the same.
    pub fn classic(width: usize, height: usize, max_iter: u32) -> MandelbrotParams {
        MandelbrotParams {
            re_min: -2.0,
            re_max: 0.5,
            im_min: -1.25,
            im_max: 1.25,
            width: width as u64,
            height: height as u64,
            max_iter: u64::from(max_iter),
        }
    }

    /// The upper half of the classic view, `[-2, 0.5] × [0, 1.25]`: rows
    /// get costlier towards the bottom (the real axis), where most of the
    /// set lies, so an even split of the rows among workers is far from an
    /// even split of the work.
    pub fn upper_half(width: usize, height: usize, max_iter: u32) -> MandelbrotParams {
        MandelbrotParams {
            im_min: 0.0,
            ..MandelbrotParams::classic(width, height, max_iter)
        }
    }

    fn check(&self, first_row: usize, rows: usize, cols: usize) -> Result<(usize, u32)> {
        let invalid = |reason: String| Error::InvalidParameter {
            kernel: "mandelbrot_rows",
            reason,
        };
        let plane_ok = [self.re_min, self.re_max, self.im_min, self.im_max]
            .iter()
            .all(|x| x.is_finite())
            && self.re_min < self.re_max
            && self.im_min < self.im_max;
        if !plane_ok {
            return Err(invalid(format!(
                "the rectangle [{}, {}] × [{}, {}] must be finite and not empty",
                self.re_min, self.re_max, self.im_min, self.im_max
            )));
        }
        let max_iter = u32::try_from(self.max_iter)
            .map_err(|_| invalid(format!("max_iter {} does not fit the u32 counts", self.max_iter)))?;
        if self.width != cols as u64 {
            return Err(shape_mismatch(
                "mandelbrot_rows",
                "rows",
                &[rows, self.width as usize],
                &[rows, cols],
            ));
        }
        let height = usize::try_from(self.height).unwrap_or(usize::MAX);
        if first_row > height || rows > height - first_row {
            return Err(Error::RowsOutOfBounds {
                kernel: "mandelbrot_rows",
                rows: first_row..first_row.saturating_add(rows),
                len: height,
            });
        }
        Ok((height, max_iter))
    }
}

/// The number of iterations of `z ← z² + c` from `z = 0` before `|z| > 2`,
/// or `max_iter` if that does not happen.
#[inline(always)]
fn escape_time(cx: f64, cy: f64, max_iter: u32) -> u32 {
    let (mut x, mut y) = (0.0_f64, 0.0_f64);
    let mut i = 0;
    while i < max_iter {
        let (x2, y2) = (x * x, y * y);
        if x2 + y2 > 4.0 {
            break;
        }
        y = 2.0 * x * y + cy;
        x = x2 - y2 + cx;
        i += 1;
    }
    i
}

/// Escape-time counts for rows `first_row..first_row + rows.nrows()` of
/// the image `params` describes, written into `rows` (`width` columns).
///
/// A pixel inside the set costs `max_iter` iterations, one far outside a
/// handful, so rows through the set cost orders of magnitude more than
/// rows beside it: the workload for dynamic scheduling. Each count depends
/// only on its pixel, so any split of the rows gives the same image.
///
/// # Errors
///
/// [`Error::InvalidParameter`] for an empty or non-finite rectangle or a
/// `max_iter` above `u32::MAX`; [`Error::ShapeMismatch`] if `rows` does not
/// have `width` columns; [`Error::RowsOutOfBounds`] if the rows run past
/// `height`. Nothing is written then.
///
/// # Examples
///
/// ```
/// use ndarray::Array2;
/// use shmpar_kernels::workloads::{MandelbrotParams, mandelbrot_rows};
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let params = MandelbrotParams::classic(5, 5, 100);
/// let mut image = Array2::zeros((5, 5));
/// mandelbrot_rows(0, image.view_mut(), &params)?;
/// assert_eq!(image[[2, 3]], 100); // c = -0.25, inside the set: never escapes
/// assert_eq!(image[[0, 0]], 1); // c = -1.75 + 1i: gone after one step
/// # Ok(())
/// # }
/// ```
pub fn mandelbrot_rows(
    first_row: usize,
    mut rows: ArrayViewMut2<'_, u32>,
    params: &MandelbrotParams,
) -> Result<()> {
    let (n, cols) = rows.dim();
    let (height, max_iter) = params.check(first_row, n, cols)?;
    let dx = (params.re_max - params.re_min) / cols as f64;
    let dy = (params.im_max - params.im_min) / height as f64;
    for (i, mut row) in rows.rows_mut().into_iter().enumerate() {
        let cy = params.im_max - ((first_row + i) as f64 + 0.5) * dy;
        for (j, count) in row.iter_mut().enumerate() {
            let cx = params.re_min + (j as f64 + 0.5) * dx;
            *count = escape_time(cx, cy, max_iter);
        }
    }
    Ok(())
}
