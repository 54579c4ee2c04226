//! [`PoolBuilder`]: how many workers, how they start, how much room for
//! parameters and partial results.

use crate::error::Result;
use crate::pool::control::{DEFAULT_PARAM_BYTES, DEFAULT_PARTIAL_BYTES};
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
    /// bytes (default [`DEFAULT_PARTIAL_BYTES`]). A larger partial fails
    /// the job with a message that names this setting.
    pub fn partial_bytes(mut self, bytes: usize) -> Self {
        self.partial_bytes = bytes;
        self
    }

    /// Room for a job's encoded parameters, in bytes (default
    /// [`DEFAULT_PARAM_BYTES`]). Larger parameters are refused with
    /// [`Error::TooLarge`] naming this setting.
    pub fn param_bytes(mut self, bytes: usize) -> Self {
        self.param_bytes = bytes;
        self
    }

    /// A deadline for every job (default: none). A job still running after
    /// `timeout` ends with [`Error::JobTimeout`](crate::Error::JobTimeout)
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
    /// [`Error::InvalidWorkers`], [`Error::ForkWithThreads`],
    /// [`Error::Start`], [`Error::SpawnMismatch`], [`Error::TooLarge`] for
    /// areas over 1 GiB, and segment errors for the control segment.
    pub fn build(self) -> Result<Pool> {
        Pool::start(self)
    }
}

