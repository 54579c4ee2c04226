//! # shmpar-kernels
//!
//! Tight, vectorizable kernels over [`ndarray`] views, for `f32` and `f64`
//! ([`Float`]). The crate knows nothing of processes or shared memory: the
//! `shmpar` runtime hands each worker a chunk of rows (axis 0) and calls
//! these functions on it.
//!
//! * [Elementwise](crate::elementwise), in place: [`sqrt`], [`abs`],
//!   [`sqrt_abs`], [`exp`], [`ln`], [`scale`], [`offset`], [`clamp`],
//!   [`fill`], and [`axpy`] over two arrays.
//! * [Reductions](crate::reduce) split into per-chunk partials and an
//!   associative combine: [`sum`], [`mean`], [`min`], [`max`], [`var`],
//!   [`std()`], [`dot`], [`norm`], [`histogram`].
//! * A [`stencil`]: one step of 1-D and 2-D heat diffusion
//!   for a chunk of rows, double-buffered.
//! * A [`catalog`] of the kernels by name (`sqrt_abs`, `scale:2`, `mean`,
//!   `var:1`, ...), for the `shmpar` command and the Python package.
//! * [`workloads`]: the bodies of whole programs over several arrays
//!   (STREAM triad, matrix-vector product, k-means, Mandelbrot rows of
//!   uneven cost), shared by the examples and `shmpar compare`.
//!
//! The hot loops are compiled for the SSE2 baseline and for AVX2 and
//! chosen at run time ([`simd`]), so no `-C target-cpu=native` is needed;
//! both give bit-identical results.
//!
//! ```
//! use ndarray::Array2;
//!
//! let mut a = Array2::from_shape_fn((4, 1000), |(i, j)| (i * 1000 + j) as f64 - 2000.0);
//! shmpar_kernels::sqrt_abs(a.view_mut());
//! let total = shmpar_kernels::sum(a.view());
//! assert!(total > 0.0);
//! ```
//!
//! # NaN and infinities
//!
//! Kernels follow IEEE 754 arithmetic and never report errors for special
//! values: elementwise kernels map NaN to NaN (see [`elementwise`]), sums
//! propagate NaN and infinities, `min`/`max` return NaN if any element is
//! NaN (as NumPy), and histograms count NaNs apart. The full table is in
//! [`reduce`].

pub mod catalog;
pub mod elementwise;
mod error;
mod float;
pub mod reduce;
pub mod simd;
pub mod stencil;
pub mod workloads;

pub use elementwise::{abs, axpy, clamp, exp, fill, ln, offset, scale, sqrt, sqrt_abs};
pub use error::{Error, Result};
pub use float::Float;
pub use reduce::{dot, histogram, max, mean, min, norm, std, sum, var};
