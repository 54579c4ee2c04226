//! # shmpar
//!
//! Parallel compute over n-dimensional arrays in shared memory. A
//! coordinator creates arrays in named POSIX shared-memory segments; worker
//! processes attach to them by name and run kernels, written as plain Rust
//! closures, on chunks of rows *in place*: no pickling, no copy, the data
//! exists once.
//!
//! ```
//! fn main() -> Result<(), shmpar::Error> {
//!     shmpar::init(); // lets this program also serve as a spawned worker
//!     use shmpar::{Pool, SharedArray};
//!
//!     let pool = Pool::builder().workers(2).build()?; // default: one per CPU
//!     let mut a = SharedArray::<f64, _>::create(1_000_000)?;
//!     pool.for_each_chunk(&mut a, |mut chunk| chunk.fill(-4.0))?;
//!     pool.for_each_chunk(&mut a, |mut chunk| chunk.mapv_inplace(|x| x.abs().sqrt()))?;
//!     let sum = pool.map_reduce(&a, |chunk| chunk.sum(), |x, y| x + y)?;
//!     assert_eq!(sum / a.len() as f64, 2.0);
//!     Ok(())
//! }
//! ```
//!
//! Jobs take several arrays, each split by rows among the workers or read
//! whole ([`job::args`]); kernels get a [`Ctx`] with their rows and a
//! barrier between phases; reductions combine partial results in chunk
//! order, so results are the same on every [`Backend`] (processes, rayon
//! threads, serial).
//!
//! The [`guide`] explains the process model, fork versus spawn, phases,
//! reductions and failure handling. The workspace around this crate:
//!
//! - [`shmpar_core`] (re-exported as `shmpar::core`): the arrays,
//!   the segment format, the in-segment barrier and lock, and the
//!   segment lifecycle (cleanup on Ctrl-C, [`gc`], [`Scope`]);
//! - `shmpar-kernels`: vectorized kernels over ndarray views (maps,
//!   mergeable reductions, stencils) to call inside a kernel;
//! - `shmpar-cli`: the `shmpar` command (`ls`, `gc`, `inspect`, `run`,
//!   `compare`), run with `cargo run --release -p shmpar-cli --bin shmpar -- --help`.

#![allow(clippy::needless_doctest_main)] // the crate example is about `main`

mod backend;
pub mod dispatch;
pub mod error;
#[doc = include_str!("../../docs/runtime.md")]
pub mod guide {}
pub mod job;
#[cfg(feature = "mpi")]
pub mod mpi;
mod pool;
mod sys;
mod transfer;

#[doc(hidden)]
pub mod __private {
    pub use inventory;
}

pub use backend::{Backend, BackendKind};
pub use error::{Cause, Error, PoolHealth, Result};
pub use job::{Ctx, LockedGuard, LockedView, Schedule, WholeView, locked, whole};
pub use pool::{
    Canceller, DEFAULT_PARAM_BYTES, DEFAULT_PARTIAL_BYTES, MAX_POOL_WORKERS, MIN_PARTIAL_BYTES, Pool,
    PoolBuilder, Start, init,
};
pub use shmpar_core::{
    self as core, DType, Element, HugePages, Location, Scope, Segment, SegmentOptions, SharedArray,
    cleanup_now, gc,
};
pub use transfer::{Plain, Serde, Transfer};
