//! Whether a segment is in use, and who created it.
//!
//! A segment is in use while some process holds it open. shmpar asks the
//! kernel, not `/proc`: every handle of a segment (its creator's from before
//! the space is reserved, every attacher's) holds a shared
//! open-file-description lock on one byte of the header page
//! ([`LIVENESS_LOCK_OFFSET`](crate::header::LIVENESS_LOCK_OFFSET)), and a
//! collector asks with `F_OFD_GETLK` whether any lock is held. The kernel
//! drops the lock when the last reference to the open file description
//! goes, however the holder dies (SIGKILL included), and a lock means the
//! same in every PID namespace, every time namespace, and without `/proc`.
//! A pid and a start time mean none of that: a PID namespace renumbers the
//! pid, a time namespace shifts the start time, and without `/proc` neither
//! can be read.
//!
//! The lock is held by the handle's mapping, which keeps the open file
//! description alive after its descriptor is closed: a handle costs no
//! descriptor. A forked child inherits the mapping, so it keeps the
//! segment "in use" while it lives, even after its copy of the handle is
//! dropped; shmpar's workers die with their coordinator, so that delays
//! collection by nothing that matters.
//!
//! Fail closed: a probe that fails for another reason than "no lock" says
//! [`Liveness::Unknown`], which counts as in use.
//!
//! [`ProcessId`] (pid and start time) stays in the header for display, and
//! to judge the segments of an older shmpar that took no lock.

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::os::{self, ProcStat};

/// Whether a segment is in use, as the kernel's locks say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// A process holds a lock on the segment: a live handle of it exists.
    InUse,
    /// No process holds a lock on it: no shmpar handle of it exists.
    Unused,
    /// The probe failed (the object could not be opened or asked): treat
    /// it as in use.
    Unknown,
}

impl Liveness {
    /// Whether the segment must be taken as in use: [`InUse`](Self::InUse)
    /// or [`Unknown`](Self::Unknown) (fail closed).
    pub fn in_use(self) -> bool {
        self != Liveness::Unused
    }

    /// Asks the kernel whether any process holds a lock on the open object
    /// `file` (a read-only descriptor suffices).
    pub(crate) fn of(file: &std::fs::File) -> Liveness {
        match os::any_lock_held(file) {
            Ok(true) => Liveness::InUse,
            Ok(false) => Liveness::Unused,
            Err(_) => Liveness::Unknown,
        }
    }
}

/// A process, identified so that pid reuse cannot fool a liveness check:
/// its pid *and* its start time. Both as the process's own namespaces see
/// them: shown to people, never trusted across namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The process id.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22);
    /// 0 when unknown.
    pub start_time: u64,
}

impl ProcessId {
    /// The calling process (start time 0 when `/proc` cannot be read).
    /// The start time is read once per process (a forked child reads its
    /// own), since every segment's header records it.
    pub fn current() -> ProcessId {
        static PID: AtomicI32 = AtomicI32::new(0);
        static START: AtomicU64 = AtomicU64::new(0);
        let pid = os::getpid();
        // START is stored before PID (release) and loaded after it
        // (acquire): a reader that sees this pid sees its start time.
        if PID.load(Ordering::Acquire) == pid {
            return ProcessId {
                pid,
                start_time: START.load(Ordering::Relaxed),
            };
        }
        let start_time = ProcStat::current().map_or(0, |stat| stat.start_time);
        if start_time != 0 {
            START.store(start_time, Ordering::Relaxed);
            PID.store(pid, Ordering::Release);
        }
        ProcessId { pid, start_time }
    }

    /// Whether a process with this pid and start time runs, as this
    /// process's namespaces and `/proc` see it: for display, and for
    /// segments of an older shmpar that took no liveness lock. A pid from
    /// another PID namespace, or a start time from another time namespace,
    /// says nothing here; use [`segment::liveness`](crate::segment::liveness)
    /// to ask whether a segment is in use.
    ///
    /// A process with the same pid but a different start time is another
    /// process, so this says `false`. A zombie (exited, not yet reaped)
    /// counts as alive until it is reaped. When `/proc` cannot be read for
    /// another reason than "no such process", this fails closed: it cannot
    /// tell, so it says `true`.
    pub fn is_alive(&self) -> bool {
        match ProcStat::of(self.pid) {
            Ok(stat) => self.start_time == 0 || stat.start_time == self.start_time,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_a_forged_start_time_is_not() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
        let gone = ProcessId {
            pid: i32::MAX,
            start_time: 1,
        };
        assert!(!gone.is_alive());
        let nonsense = ProcessId {
            pid: -5,
            start_time: 1,
        };
        assert!(!nonsense.is_alive());
    }

    #[test]
    fn only_unused_is_not_in_use() {
        assert!(Liveness::InUse.in_use());
        assert!(Liveness::Unknown.in_use());
        assert!(!Liveness::Unused.in_use());
    }
}
