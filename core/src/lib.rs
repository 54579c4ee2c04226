//! # shmpar-core
//!
//! Typed n-dimensional arrays in named POSIX shared memory (or a
//! memory-mapped file), with a self-describing header that other processes
//! and languages can read, a crash-safe lifecycle, and a barrier and a lock
//! that live inside the segment.
//!
//! This crate knows nothing of worker processes or kernels: the `shmpar`
//! crate builds the runtime on top of it.

pub mod element;
pub mod error;
pub mod sync;

pub use element::{DType, Element};
pub use error::{Error, Result};
