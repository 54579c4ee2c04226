//! The pool's control block: a small shmpar segment shared by the
//! coordinator and its workers. See `pool/README.md` for the protocol.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmpar_core::segment::Location;
use shmpar_core::sync::{WaitOutcome, futex_wait, futex_wake};

/// Most workers a pool may have.
pub const MAX_WORKERS: usize = 1024;
/// Most arrays one job may touch.
pub(crate) const MAX_ARRAYS: usize = 2;
/// Longest array name or path a job can carry.
pub(crate) const NAME_MAX: usize = 1024;
/// Most bytes of kernel parameters a job can carry.
pub const PARAMS_MAX: usize = 16 * 1024;
/// Most cached mappings one job can tell workers to drop.
pub(crate) const EVICT_MAX: usize = 16;

/// A word on a cache line of its own.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Line {
    pub(crate) word: AtomicU32,
    /// Processes sleeping in `FUTEX_WAIT` on `word`, so a poster whose
    /// waiters all spin skips the wake system call.
    pub(crate) sleepers: AtomicU32,
}

/// Identifies an array's shared object, so a cached mapping of a segment
/// that was unlinked and recreated under the same name is never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct Identity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// One array a job names.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ArrayRef {
    /// 0: shared memory name, 1: file path.
    pub(crate) kind: u32,
    pub(crate) len: u32,
    pub(crate) identity: Identity,
    pub(crate) name: [u8; NAME_MAX],
}

impl ArrayRef {
    pub(crate) const EMPTY: ArrayRef = ArrayRef {
        kind: 0,
        len: 0,
        identity: Identity { dev: 0, ino: 0 },
        name: [0; NAME_MAX],
    };

    pub(crate) fn new(location: &Location, identity: Identity) -> Option<ArrayRef> {
        use std::os::unix::ffi::OsStrExt;
        let (kind, bytes) = match location {
            Location::Shm(name) => (0, name.as_bytes()),
            Location::File(path) => (1, path.as_os_str().as_bytes()),
        };
        if bytes.len() > NAME_MAX {
            return None;
        }
        let mut r = ArrayRef::EMPTY;
        r.kind = kind;
        r.len = bytes.len() as u32;
        r.identity = identity;
        r.name[..bytes.len()].copy_from_slice(bytes);
        Some(r)
    }

    /// The location, or `None` for a corrupt entry.
    pub(crate) fn location(&self) -> Option<Location> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = self.name.get(..self.len as usize)?;
        match self.kind {
            0 => std::str::from_utf8(bytes)
                .ok()
                .map(|s| Location::Shm(s.to_owned())),
            1 => Some(Location::File(std::ffi::OsStr::from_bytes(bytes).into())),
            _ => None,
        }
    }
}

/// What the coordinator posts: written only while every worker is idle,
/// published by the release increment of `Control::post`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct JobDesc {
    /// The job's entry point, as an offset from the runtime's anchor function.
    pub(crate) entry: i64,
    pub(crate) workers: u32,
    pub(crate) narrays: u32,
    pub(crate) steps: u64,
    pub(crate) arrays: [ArrayRef; MAX_ARRAYS],
    pub(crate) nevict: u32,
    pub(crate) evict: [Identity; EVICT_MAX],
    pub(crate) params_len: u32,
    pub(crate) params: [u8; PARAMS_MAX],
}

impl JobDesc {
    pub(crate) fn params(&self) -> &[u8] {
        &self.params[..(self.params_len as usize).min(PARAMS_MAX)]
    }
}

/// A worker's outcome word values.
pub(crate) mod status {
    /// Idle, or still running the current job.
    pub(crate) const PENDING: u32 = 0;
    /// Finished the job.
    pub(crate) const OK: u32 = 1;
    /// The kernel panicked; the message is in the worker's slot.
    pub(crate) const PANICKED: u32 = 2;
    /// The job failed in the worker (an attach, a decode); message in the slot.
    pub(crate) const FAILED: u32 = 3;
    /// Gave up because the barrier was poisoned by someone else's failure.
    pub(crate) const ABORTED: u32 = 4;
}

/// One worker's status line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct WorkerLine {
    pub(crate) status: AtomicU32,
    pub(crate) pid: AtomicU32,
}

/// The control block at the start of the control segment's data.
#[repr(C)]
pub(crate) struct Control {
    /// Job sequence number: the coordinator increments it to post a job.
    pub(crate) post: Line,
    /// Workers that finished the current job.
    pub(crate) done: Line,
    /// Non-zero: workers exit at the next post.
    pub(crate) shutdown: Line,
    pub(crate) workers: [WorkerLine; MAX_WORKERS],
    pub(crate) job: std::cell::UnsafeCell<JobDesc>,
}

/// How long a waiter spins before it sleeps in the kernel. Long enough to
/// catch back-to-back jobs without a system call, short enough not to burn
/// a core that an oversubscribed machine needs.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// Waits until `line.word` differs from `seen` and returns the new value.
/// With a `tick`, returns `None` after each tick without a change, so the
/// caller can check on other processes.
pub(crate) fn wait_change(line: &Line, seen: u32, spin: Duration, tick: Option<Duration>) -> Option<u32> {
    let start = Instant::now();
    let mut i = 0u32;
    loop {
        let now = line.word.load(Ordering::Acquire);
        if now != seen {
            return Some(now);
        }
        i = i.wrapping_add(1);
        if i.is_multiple_of(16) {
            if start.elapsed() >= spin {
                break;
            }
            // A pool has one process more than it has workers (the
            // coordinator), so with a worker per core someone is always
            // runnable: yield, so a spinner never holds the core that the
            // process it waits for needs.
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        } else {
            std::hint::spin_loop();
        }
    }
    loop {
        // SeqCst on `sleepers` and the re-check pairs with `post_change`:
        // either we see the new value, or the poster sees us sleeping.
        line.sleepers.fetch_add(1, Ordering::SeqCst);
        let now = line.word.load(Ordering::SeqCst);
        let outcome = if now == seen {
            futex_wait(&line.word, seen, tick).ok()
        } else {
            None
        };
        line.sleepers.fetch_sub(1, Ordering::SeqCst);
        let now = line.word.load(Ordering::Acquire);
        if now != seen {
            return Some(now);
        }
        if outcome == Some(WaitOutcome::TimedOut) {
            return None;
        }
    }
}

/// Wakes every sleeper on `line` if there is one. Call after changing the
/// word with at least release ordering.
pub(crate) fn wake_all(line: &Line) {
    std::sync::atomic::fence(Ordering::SeqCst);
    if line.sleepers.load(Ordering::SeqCst) > 0 {
        futex_wake(&line.word, u32::MAX);
    }
}
