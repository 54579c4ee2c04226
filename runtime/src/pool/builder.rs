//! [`PoolBuilder`]: how many workers, how they start, how much room for
//! parameters and partial results.

use crate::error::Result;
use crate::pool::control::{DEFAULT_PARAM_BYTES, DEFAULT_PARTIAL_BYTES, MIN_PARTIAL_BYTES};
use crate::pool::{Pool, Start};

/// Builds a [`Pool`].
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    pub(crate) workers: Option<usize>,
    pub(crate) start: Start,
    pub(crate) allow_threads: bool,
    pub(crate) partial_bytes: usize,
    pub(crate) param_bytes: usize,
    pub(crate) job_timeout: Option<std::time::Duration>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: None,
            start: Start::Fork,
            allow_threads: false,
            partial_bytes: DEFAULT_PARTIAL_BYTES,
            param_bytes: DEFAULT_PARAM_BYTES,
            job_timeout: None,
        }
    }
}

/// The largest parameter or partial-result area a pool may reserve.
pub(crate) const MAX_AREA: usize = 1 << 30;

impl PoolBuilder {
    /// Number of worker processes (default: the CPUs this process may use).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// How workers start (default [`Start::Fork`]).
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// Room for one worker's encoded partial results of a reduction, in
    /// the pool's control segment, in bytes (default
    /// [`DEFAULT_PARTIAL_BYTES`]). Under a dynamic or guided schedule a
    /// worker returns one partial per chunk it ran, each with 8 bytes of
    /// framing. Results that do not fit travel through a temporary segment
    /// the worker creates (and the coordinator removes once it has read
    /// them), so this is a performance setting, not a limit. Values below
    /// [`MIN_PARTIAL_BYTES`] are raised to it: a slot must hold a spill
    /// segment's name or a failure message.
    ///
    /// ```
    /// # fn main() -> Result<(), shmpar::Error> {
    /// use shmpar::{Pool, Schedule, SharedArray};
    /// let pool = Pool::builder().workers(2).partial_bytes(512).build()?;
    /// let a = SharedArray::from_array(&ndarray::Array1::from_elem(10_000, 1.0f64))?;
    /// // 10,000 one-row chunks: 16 bytes of partial each, far more than 512.
    /// let sum = pool.map_reduce(Schedule::Dynamic { rows: 1 }.on(&a), |c| c.sum(), |x, y| x + y)?;
    /// assert_eq!(sum, 10_000.0);
    /// # Ok(()) }
    /// ```
    pub fn partial_bytes(mut self, bytes: usize) -> Self {
        self.partial_bytes = bytes.max(MIN_PARTIAL_BYTES);
        self
    }

    /// Room for a job's encoded parameters, in bytes (default
    /// [`DEFAULT_PARAM_BYTES`]). Larger parameters are refused with
    /// [`Error::TooLarge`](crate::Error::TooLarge) naming this setting.
    pub fn param_bytes(mut self, bytes: usize) -> Self {
        self.param_bytes = bytes;
        self
    }

    /// A deadline for every job (default: none). A job still running after
    /// `timeout` ends with [`Error::JobTimeout`](crate::Error::JobTimeout)(crate::Error::JobTimeout)
    /// naming the workers that had not finished; those are killed and
    /// replaced, so a stopped worker, an endless loop or a lock held across
    /// a barrier cannot hang the coordinator. See also
    /// [`Pool::canceller`](crate::Pool::canceller).
    pub fn job_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.job_timeout = Some(timeout);
        self
    }

    /// Lets the pool fork although the process runs other threads.
    ///
    /// # Safety
    /// - While the pool forks (at start, when it replaces a worker, and for
    ///   each [`Pool::run_forked`] job), no other thread of this process
    ///   may hold a lock that the worker or the kernel will take in the
    ///   child: such a lock stays held forever there. glibc's `malloc` is
    ///   made fork-safe by glibc itself; `stdout`/`stderr` locks, `Mutex`es
    ///   of your own, and other allocators may not be.
    pub unsafe fn allow_threads(mut self) -> Self {
        self.allow_threads = true;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`Error::InvalidWorkers`](crate::Error::InvalidWorkers), [`Error::ForkWithThreads`](crate::Error::ForkWithThreads),
    /// [`Error::Start`](crate::Error::Start), [`Error::SpawnMismatch`](crate::Error::SpawnMismatch), [`Error::TooLarge`](crate::Error::TooLarge) for
    /// areas over 1 GiB, and segment errors for the control segment.
    pub fn build(self) -> Result<Pool> {
        Pool::start(self)
    }
}
