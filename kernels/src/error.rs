//! The crate's error type.

use std::ops::Range;

/// What a kernel call can get wrong. Every variant is a caller mistake that
/// the kernel detected before touching any data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two arrays that must have the same shape do not.
    #[error("{kernel}: {what} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The kernel that was called.
        kernel: &'static str,
        /// Which argument is wrong.
        what: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
    },
    /// A stencil was asked for rows that the source array does not have.
    #[error("{kernel}: rows {rows:?} are not within the {len} rows of the source array")]
    RowsOutOfBounds {
        /// The kernel that was called.
        kernel: &'static str,
        /// The rows asked for.
        rows: Range<usize>,
        /// Number of rows of the source.
        len: usize,
    },
    /// A kernel parameter is out of its domain.
    #[error("{kernel}: {reason}")]
    InvalidParameter {
        /// The kernel that was called.
        kernel: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
    /// A kernel name that the catalog does not know.
    #[error("unknown {kind} kernel {name:?}; valid names: {}", valid.join(", "))]
    UnknownKernel {
        /// `"elementwise"` or `"reduction"`.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The names the catalog knows.
        valid: &'static [&'static str],
    },
    /// A partial of one reduction was given to another.
    #[error("partial of a {found} reduction given to a {expected} reduction")]
    PartialMismatch {
        /// The reduction that received the partial.
        expected: &'static str,
        /// The reduction that produced it.
        found: &'static str,
    },
    /// A SIMD level was requested that this CPU does not support.
    #[error("SIMD level {requested:?} requested, but this CPU supports at most {supported:?}")]
    UnsupportedSimdLevel {
        /// The level asked for.
        requested: crate::simd::SimdLevel,
        /// The best level the CPU supports.
        supported: crate::simd::SimdLevel,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn shape_mismatch(
    kernel: &'static str,
    what: &'static str,
    expected: &[usize],
    found: &[usize],
) -> Error {
    Error::ShapeMismatch {
        kernel,
        what,
        expected: expected.to_vec(),
        found: found.to_vec(),
    }
}
