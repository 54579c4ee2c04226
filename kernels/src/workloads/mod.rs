//! The per-chunk bodies of four small programs, shared by the runnable
//! examples and `shmpar compare`: the STREAM triad, a matrix-vector
//! product, k-means and the Mandelbrot set, plus deterministic inputs for
//! them.
//!
//! Each body works on one chunk of rows (axis 0), as a worker gets it, and
//! knows nothing of processes: the caller passes the chunk's views and,
//! where the body needs it, the index of the chunk's first row. Every body
//! computes each output element from its own row and the read-only inputs
//! alone, in a fixed order, so any split of the rows, run in any order,
//! gives the same bits as one call over all rows; the k-means partials are
//! the one exception, since their sums round differently when merged in a
//! different grouping (the labels and counts do not).
//!
//! | workload | body | rows of | read whole |
//! |---|---|---|---|
//! | triad `a = b + s·c` | [`triad`] | `a` (written), `b`, `c` | — |
//! | `y = A·x` | [`matvec_rows`] | `A`, `y` (written) | `x` |
//! | k-means | [`kmeans_assign`] → [`KmeansPartial::merge`] → [`kmeans_update`] | points, labels (written) | centroids |
//! | Mandelbrot | [`mandelbrot_rows`] | the image (written) | — |
//!
//! ```
//! use ndarray::{Array1, s};
//! use shmpar_kernels::workloads::{fill_noise, triad};
//!
//! # fn main() -> Result<(), shmpar_kernels::Error> {
//! let n = 1000;
//! let (mut b, mut c) = (Array1::zeros(n), Array1::zeros(n));
//! fill_noise(b.view_mut(), 1, 0);
//! fill_noise(c.view_mut(), 2, 0);
//! let mut a = Array1::zeros(n);
//! // Two "workers", each with its own rows of all three arrays.
//! for rows in [0..300, 300..n] {
//!     let r = s![rows];
//!     triad(a.slice_mut(r), b.slice(r), c.slice(r), 3.0)?;
//! }
//! assert_eq!(a, &b + &(&c * 3.0));
//! # Ok(())
//! # }
//! ```

mod inputs;
mod kmeans;
mod mandelbrot;
mod matvec;
mod triad;

pub use inputs::{fill_noise, noise_at};
pub use kmeans::{
    KMEANS_MAX_DIM, KMEANS_MAX_K, KmeansPartial, kmeans_assign, kmeans_init, kmeans_points, kmeans_update,
};
pub use mandelbrot::{MandelbrotParams, mandelbrot_rows};
pub use matvec::matvec_rows;
pub use triad::triad;
