//! # shmpar-core
//!
//! Typed n-dimensional arrays in named POSIX shared memory (or a
//! memory-mapped file), with a self-describing header that other processes
//! and languages can read, a crash-safe lifecycle, and a barrier and a lock
//! that live inside the segment.
//!
//! ```
//! # fn main() -> Result<(), shmpar_core::Error> {
//! use shmpar_core::SharedArray;
//! let mut a = SharedArray::from_array(&ndarray::arr1(&[1.0f64, -4.0, 9.0]))?;
//! // Another process attaches by name: SharedArray::<f64, ndarray::Ix1>::attach(&a.name())
//! a.view_mut().mapv_inplace(|x| x.abs().sqrt());
//! assert_eq!(a.view().to_vec(), [1.0, 2.0, 3.0]);
//! # Ok(()) } // dropping `a` unmaps and unlinks the segment
//! ```
//!
//! This crate knows nothing of worker processes or kernels: the `shmpar`
//! crate builds the runtime on top of it.

pub mod element;
pub mod error;
pub mod sync;

#[cfg(not(loom))]
mod array;
#[cfg(not(loom))]
pub mod chunk;
#[cfg(not(loom))]
pub mod cleanup;
#[cfg(not(loom))]
pub mod gc;
#[cfg(not(loom))]
pub mod header;
#[cfg(not(loom))]
pub mod liveness;
#[cfg(not(loom))]
mod name;
#[cfg(not(loom))]
pub mod os;
#[cfg(not(loom))]
mod scope;
#[cfg(not(loom))]
pub mod segment;
#[cfg(not(loom))]
pub mod signals;

#[cfg(not(loom))]
pub use array::SharedArray;
pub use element::{DType, Element};
pub use error::{Error, Result};
#[cfg(not(loom))]
pub use liveness::{Liveness, ProcessId};
#[cfg(not(loom))]
pub use name::{DEFAULT_PREFIX, MAX_NAME_LEN};
#[cfg(not(loom))]
pub use scope::Scope;
#[cfg(not(loom))]
pub use segment::{HugePages, Location, Segment, SegmentOptions};
#[cfg(not(loom))]
pub use signals::cleanup_now;
pub use sync::{Barrier, ShmLock};
