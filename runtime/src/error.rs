//! The one error type of the `shmpar` runtime.

use std::fmt;
use std::ops::Range;

/// Why a worker did not finish its part of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The kernel panicked; the panic message.
    Panicked(String),
    /// The kernel returned an error; its message.
    Failed(String),
    /// The worker process exited with this code.
    Exited(i32),
    /// The worker process was killed by this signal.
    Signaled(i32),
    /// The job was abandoned because another worker failed first.
    Aborted,
    /// The worker process ended, and its exit status went to another
    /// reaper: the program ignores SIGCHLD (children then reap
    /// themselves), or something else waited for any child.
    Vanished,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Panicked(msg) => write!(f, "the kernel panicked: {msg}"),
            Cause::Failed(msg) => write!(f, "the kernel failed: {msg}"),
            Cause::Exited(code) => write!(f, "the worker process exited with code {code}"),
            Cause::Signaled(sig) => write!(
                f,
                "the worker process was killed by {}",
                crate::sys::signal_name(*sig)
            ),
            Cause::Aborted => f.write_str("the job was abandoned after another worker failed"),
            Cause::Vanished => f.write_str(
                "the worker process ended, and its exit status went to another reaper (does the \
                 program ignore SIGCHLD, or wait for any child?)",
            ),
        }
    }
}

/// What became of the pool after a worker failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolHealth {
    /// Every worker is alive and ready for the next job.
    Healthy,
    /// Dead workers were replaced by new ones; the pool is ready.
    Replaced,
    /// Dead workers could not be replaced; every later job fails with
    /// [`Error::PoolBroken`]. Create a new pool.
    Broken,
}

impl fmt::Display for PoolHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolHealth::Healthy => "the pool is healthy",
            PoolHealth::Replaced => "the failed workers were replaced and the pool is ready",
            PoolHealth::Broken => "the pool is broken and must be recreated",
        })
    }
}

/// Everything that can go wrong in the `shmpar` runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A shared-memory error from `shmpar-core`.
    #[error(transparent)]
    Core(#[from] shmpar_core::Error),

    /// A worker did not finish its chunk.
    #[error("worker {rank} (rows {rows:?}) failed: {cause}; {health}")]
    WorkerFailed {
        /// The worker's rank, 0-based.
        rank: usize,
        /// The rows (axis 0) it was working on.
        rows: Range<usize>,
        /// What happened.
        cause: Cause,
        /// What became of the pool.
        health: PoolHealth,
    },

    /// The job ran past its deadline ([`PoolBuilder::job_timeout`](crate::PoolBuilder::job_timeout))
    /// or was cancelled ([`Canceller::cancel`](crate::Canceller::cancel)):
    /// the workers that had not finished were killed and replaced.
    #[error(
        "the job {} after {elapsed:?}; worker(s) {unfinished:?} had not finished and were killed; {health}",
        if *cancelled { "was cancelled" } else { "timed out" }
    )]
    JobTimeout {
        /// How long the job had run.
        elapsed: std::time::Duration,
        /// Ranks of the workers that had not finished.
        unfinished: Vec<usize>,
        /// `true` for a cancellation, `false` for the deadline.
        cancelled: bool,
        /// What became of the pool.
        health: PoolHealth,
    },

    /// The pool lost workers it could not replace.
    #[error("the pool is broken ({reason}); create a new one")]
    PoolBroken {
        /// What broke it.
        reason: String,
    },

    /// Forking a multithreaded process is unsafe, so the pool refused.
    #[error(
        "{}, and forking a multithreaded process is unsafe \
         (a lock held by another thread stays held in the child). Start the pool before any \
         thread (rayon, tokio, ...), use `Start::Spawn`, or see `PoolBuilder::allow_threads`",
        match threads { Some(n) => format!("this process runs {n} threads"), None => String::from("the thread count of this process cannot be read (/proc/self/task), so it may run other threads") }
    )]
    ForkWithThreads {
        /// Threads in the process; `None` when they cannot be counted
        /// (no `/proc`), which counts as unsafe.
        threads: Option<usize>,
    },

    /// The kernel captures variables, which only a fork can carry.
    #[error(
        "a closure run on workers forked for the job (`Pool::run_forked`, `map_reduce_forked`) needs \
         a pool with `Start::Fork`; spawned workers cannot receive it: pass the values as \
         parameters to a registered kernel (`Pool::run`) or use `Start::Fork`"
    )]
    CapturingKernel,

    /// A spawn pool was given a kernel that is not registered, so its
    /// workers (new processes) cannot find it.
    #[error(
        "a spawn pool runs only registered kernels, and this {signature} is not one: name it as a \
         `fn` item and register it with shmpar::register_kernel!, or use `Start::Fork`"
    )]
    UnregisteredKernel {
        /// The kernel's shape (its signature).
        signature: String,
    },

    /// A worker count out of range.
    #[error("invalid worker count {requested}: it must be between 1 and {max}")]
    InvalidWorkers {
        /// The count asked for.
        requested: usize,
        /// The largest count supported.
        max: usize,
    },

    /// Kernel parameters or a partial result too large for the space the
    /// segment reserves for them.
    #[error("{what} is {size} bytes, more than the {max} bytes reserved for it (raise {setting})")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
        /// The setting that changes the limit.
        setting: &'static str,
    },

    /// A schedule that cannot divide the job's rows.
    #[error("invalid schedule: {reason}")]
    InvalidSchedule {
        /// What is wrong with it.
        reason: String,
    },

    /// Arrays passed to one job do not fit together.
    #[error("the arrays of this job do not match: {reason}")]
    Mismatch {
        /// How they differ.
        reason: String,
    },

    /// Serializing or deserializing parameters or a partial result failed.
    #[error("could not encode or decode {what}: {reason}")]
    Codec {
        /// What was being encoded.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },

    /// Starting a worker process failed.
    #[error("could not start a worker process: {0}")]
    Start(#[source] std::io::Error),

    /// A step that every rank of an MPI job takes together failed: MPI
    /// could not start as shmpar needs, or another rank failed the step
    /// (every rank returns this error, so none waits for the others).
    #[cfg(feature = "mpi")]
    #[error("MPI job: {reason}")]
    Mpi {
        /// What failed, and on which rank.
        reason: String,
    },

    /// A spawned worker was started from another executable than the
    /// coordinator's, or without `shmpar::init()`.
    #[error("spawned worker is not running the coordinator's executable: {reason}")]
    SpawnMismatch {
        /// What differs.
        reason: String,
    },
}

/// The `Result` of the `shmpar` runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;
