//! Process-shared synchronization that lives inside a segment: a barrier,
//! a robust lock and an event word, all built on *shared* futexes.
//!
//! Each state struct is made of whole cache lines, `#[repr(C)]`, of `u32`
//! atomics and reserved padding only, so its layout is part of the segment
//! format (`docs/segment-layout.md`) or of the format that embeds it. All-zero
//! bytes are a valid fresh state of every one, because a segment is created
//! zero-filled. The protocols, their memory orderings and the byte layout are
//! described in this module's design note, `core/src/sync/README.md`.
//!
//! * [`Barrier`] is a handle over a [`BarrierState`] (one line) and,
//!   optionally, a [`BarrierTree`] (the lines of a combining tree, for more
//!   than four participants): every participant process calls
//!   [`Barrier::wait`] once per phase.
//! * [`ShmLock`] is a handle over a [`LockState`]: a mutual-exclusion lock
//!   that tells the next locker when its previous owner died holding it.
//! * [`Event`] is a word that posters change and waiters wait to see change
//!   (spin, then sleep; no system call when nobody sleeps): the pool's job
//!   posting and completion signals (`runtime/src/pool/README.md`).
//!
//! Under `--cfg loom` the atomics are loom's and the futex is emulated with a
//! loom mutex and condition variable, so the protocols are model-checked
//! (`core/tests/loom_sync.rs`).

mod barrier;
mod event;
mod futex;
mod lock;

pub use barrier::{Barrier, BarrierNode, BarrierTree, BarrierWaitResult, MAX_PARTIES, SpinPolicy};
pub use event::Event;
/// The shared futex, for protocols of other crates that live in a segment
/// ([`Event`] covers the common one, waiting for a word to change). Never
/// `FUTEX_PRIVATE_FLAG`.
pub use futex::{WaitOutcome, wait as futex_wait, wake as futex_wake};
pub use lock::{LockGuard, ShmLock};

/// The atomics shim: std's atomics normally, loom's under `cfg(loom)`.
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicU32, Ordering, fence};
}

use atomic::AtomicU32;

/// One busy-wait step: the CPU's pause hint, or a loom yield under loom.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::hint::spin_loop();
}

/// The CPU this thread runs on now (0 if the kernel cannot say; always 0
/// under loom): where a barrier participant without a rank starts looking
/// for its leaf. With rseq (glibc 2.35 and later) it is one load from
/// thread-local memory, otherwise the vDSO `getcpu`: no lock, no
/// allocation, so a forked child may call it.
#[inline]
pub(crate) fn current_cpu() -> u32 {
    #[cfg(not(loom))]
    {
        // SAFETY: sched_getcpu has no preconditions; it returns -1 on error.
        let cpu = unsafe { libc::sched_getcpu() };
        u32::try_from(cpu).unwrap_or(0)
    }
    #[cfg(loom)]
    0
}

/// Gives the CPU to another runnable thread or process, if any: a spinner
/// that never yields can hold the core that the participant it waits for
/// needs (the machine may be loaded by others, whatever the CPU count says).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// The barrier's head: one cache line.
///
/// It holds the generation (whose change releases everybody), the poison
/// bit and the set-up; with four participants or fewer (or without a
/// [`BarrierTree`]) also the arrival count, which makes it a central
/// barrier. Larger barriers count arrivals in a [`BarrierTree`] instead.
///
/// All-zero bytes are a valid state (no parties set yet); a coordinator calls
/// [`Barrier::reset`] once before participants use it.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct BarrierState {
    /// Futex word. Bits 0..=29: generation (wraps); bit 30: somebody sleeps
    /// in `FUTEX_WAIT` on this word; bit 31: poisoned.
    pub(crate) epoch: AtomicU32,
    /// Central barrier: participants that have arrived in the current
    /// generation. Unused (0) when the tree counts.
    pub(crate) count: AtomicU32,
    /// Participants needed to complete a generation (0: not set up yet).
    pub(crate) parties: AtomicU32,
    /// Leaves of the combining tree in use; 0: a central barrier.
    pub(crate) leaves: AtomicU32,
    _reserved: [u32; 12],
}

/// The lock's words in shared memory: one cache line.
///
/// All-zero bytes are a valid state (unlocked, never owned).
#[repr(C, align(64))]
#[derive(Debug)]
pub struct LockState {
    /// Futex word. 0: unlocked; else bits 0..=29 hold the owner's thread id
    /// and bit 31 says some locker may sleep in `FUTEX_WAIT`.
    pub(crate) word: AtomicU32,
    /// The owner's thread id, published *after* `owner_start_*` (so a reader
    /// that sees its own view of `word` here may trust the start time).
    pub(crate) owner_tid: AtomicU32,
    /// Low half of the owner thread's start time (clock ticks since boot,
    /// `/proc/<tid>/stat` field 22): the guard against thread id reuse.
    pub(crate) owner_start_lo: AtomicU32,
    /// High half of the owner thread's start time.
    pub(crate) owner_start_hi: AtomicU32,
    _reserved: [u32; 12],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BarrierState>() == 64);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<BarrierState>() == 64);
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<LockState>() == 64);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<LockState>() == 64);

impl BarrierState {
    /// A fresh state, identical to all-zero bytes: no parties set up yet.
    ///
    /// States inside a segment are not built with this (the segment is
    /// zero-filled); it is for barriers in ordinary memory and for tests.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            epoch: AtomicU32::new(0),
            count: AtomicU32::new(0),
            parties: AtomicU32::new(0),
            leaves: AtomicU32::new(0),
            _reserved: [0; 12],
        }
    }

    /// A fresh state, identical to all-zero bytes: no parties set up yet.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            epoch: AtomicU32::new(0),
            count: AtomicU32::new(0),
            parties: AtomicU32::new(0),
            leaves: AtomicU32::new(0),
            _reserved: [0; 12],
        }
    }
}

impl Default for BarrierState {
    fn default() -> Self {
        Self::new()
    }
}

impl LockState {
    /// A fresh, unlocked state, identical to all-zero bytes.
    ///
    /// States inside a segment are not built with this (the segment is
    /// zero-filled); it is for locks in ordinary memory and for tests.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            owner_tid: AtomicU32::new(0),
            owner_start_lo: AtomicU32::new(0),
            owner_start_hi: AtomicU32::new(0),
            _reserved: [0; 12],
        }
    }

    /// A fresh, unlocked state, identical to all-zero bytes.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            owner_tid: AtomicU32::new(0),
            owner_start_lo: AtomicU32::new(0),
            owner_start_hi: AtomicU32::new(0),
            _reserved: [0; 12],
        }
    }
}

impl Default for LockState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// The offsets `core/src/sync/README.md` and `docs/segment-layout.md`
    /// document.
    #[test]
    fn layouts_match_the_design_note() {
        assert_eq!(offset_of!(BarrierState, epoch), 0);
        assert_eq!(offset_of!(BarrierState, count), 4);
        assert_eq!(offset_of!(BarrierState, parties), 8);
        assert_eq!(offset_of!(BarrierState, leaves), 12);
        assert_eq!(std::mem::size_of::<BarrierTree>(), 1344);
        assert_eq!(std::mem::size_of::<BarrierNode>(), 64);
        assert_eq!(offset_of!(LockState, word), 0);
        assert_eq!(offset_of!(LockState, owner_tid), 4);
        assert_eq!(offset_of!(LockState, owner_start_lo), 8);
        assert_eq!(offset_of!(LockState, owner_start_hi), 12);
    }

    #[test]
    fn new_states_are_all_zero_bytes() {
        let barrier = BarrierState::new();
        let tree = BarrierTree::new();
        let lock = LockState::new();
        // SAFETY: the structs are whole 64-byte lines of initialized u32
        // atomics and u32 padding (no padding bytes), so reading them as
        // bytes is sound.
        let (b, t, l) = unsafe {
            (
                std::slice::from_raw_parts((&raw const barrier).cast::<u8>(), 64),
                std::slice::from_raw_parts((&raw const tree).cast::<u8>(), 64 * BarrierTree::NODES),
                std::slice::from_raw_parts((&raw const lock).cast::<u8>(), 64),
            )
        };
        assert!(b.iter().all(|&x| x == 0));
        assert!(t.iter().all(|&x| x == 0));
        assert!(l.iter().all(|&x| x == 0));
    }
}
