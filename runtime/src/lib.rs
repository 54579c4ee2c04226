//! # shmpar
//!
//! Parallel compute over n-dimensional arrays in shared memory.

pub use shmpar_core as core;
