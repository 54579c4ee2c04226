//! Process-shared synchronization that lives inside a segment: a barrier
//! and a robust lock, both built on *shared* futexes.
//!
//! Each state struct is exactly one cache line, `#[repr(C)]`, so its layout
//! is part of the segment format (`docs/segment-layout.md`).

#[cfg(not(loom))]
use std::sync::atomic::AtomicU32;

#[cfg(loom)]
use loom::sync::atomic::AtomicU32;

/// The barrier's words in shared memory: one cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct BarrierState {
    /// Generation counter and futex word; its top bit marks the barrier poisoned.
    pub(crate) epoch: AtomicU32,
    /// Participants that have arrived in the current generation.
    pub(crate) count: AtomicU32,
    /// Participants needed to complete a generation.
    pub(crate) parties: AtomicU32,
    /// Participants sleeping in the kernel (so the last arriver skips the wake syscall when none sleep).
    pub(crate) sleepers: AtomicU32,
    _reserved: [u32; 12],
}

/// The lock's words in shared memory: one cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct LockState {
    /// Futex word: 0 when free, else the owner's thread id with flag bits.
    pub(crate) word: AtomicU32,
    /// Low half of the owner's process start time (pid reuse guard).
    pub(crate) owner_start_lo: AtomicU32,
    /// High half of the owner's process start time.
    pub(crate) owner_start_hi: AtomicU32,
    _reserved: [u32; 13],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BarrierState>() == 64);
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<LockState>() == 64);
