//! A registry of the shared-memory names this process created, which a
//! signal handler may unlink: so Ctrl-C or SIGTERM leaves nothing behind
//! in `/dev/shm` even though destructors do not run.
//!
//! The registry is a fixed array of slots in static memory, so that
//! [`unlink_registered`] allocates nothing, takes no lock and calls only
//! async-signal-safe functions. Each slot moves FREE → WRITING → READY under
//! a compare-and-swap and back to FREE when the segment is dropped or
//! unlinked. File-backed segments (a hugetlbfs or `huge=` tmpfs file, any
//! `SegmentOptions::file`) are registered with their directory's absolute
//! path, their name in it and their identity: the handler opens the
//! directory (never following a symbolic link in its last component) and
//! removes the name relative to it, only while it still names the
//! segment's object (`fstatat`, then `unlinkat`). No descriptor is held
//! between signals. Segments beyond [`CAPACITY`] at once, and paths longer
//! than a slot holds, are not registered (their owners still remove them
//! on drop).
//!
//! A name is registered right after `shm_open(O_CREAT | O_EXCL)` made it,
//! with the cleanup signals deferred in between (`Segment::create`), so a
//! signal at any point of a creation finds the name here.
//!
//! Resources know their owner: each slot records the pid of the process
//! that registered it, and [`unlink_registered`] only unlinks the names of
//! the calling process. A forked child inherits a copy of the registry
//! (and of the signal handler); whether or not it calls
//! [`forget_registered`], a signal in the child never unlinks its parent's
//! segments.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Most shared-memory names registered at once.
pub const CAPACITY: usize = 256;

/// Longest name or path registered (with a shm name's leading `/`, or a
/// file's directory and name, and their NULs).
const NAME_BYTES: usize = 512;

/// What a slot names: a shared-memory object (`shm_unlink`) or a file
/// (`unlink`).
const SHM: u32 = 0;
const FILE: u32 = 1;

const FREE: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;

struct Slot {
    state: AtomicU32,
    /// [`SHM`] or [`FILE`], written with the name.
    kind: AtomicU32,
    /// For a file: where its name starts in `name` (after the directory
    /// and its NUL), and the object's (device, inode).
    name_at: AtomicU32,
    dev: AtomicU64,
    ino: AtomicU64,
    /// The process that registered the name: only it may unlink it.
    owner: AtomicI32,
    name: UnsafeCell<[u8; NAME_BYTES]>,
}

// SAFETY: `name` is written only by the thread that moved `state` from FREE
// to WRITING, and read only while `state` is READY (acquire), so no two
// threads access it in conflicting ways through this protocol.
unsafe impl Sync for Slot {}

static SLOTS: [Slot; CAPACITY] = [const {
    Slot {
        state: AtomicU32::new(FREE),
        kind: AtomicU32::new(SHM),
        name_at: AtomicU32::new(0),
        dev: AtomicU64::new(0),
        ino: AtomicU64::new(0),
        owner: AtomicI32::new(0),
        name: UnsafeCell::new([0; NAME_BYTES]),
    }
}; CAPACITY];

/// Registers `/bare`; returns the slot index, or `None` when the registry
/// is full or the name too long.
pub(crate) fn register(bare: &str) -> Option<usize> {
    let mut name = Vec::with_capacity(bare.len() + 1);
    name.push(b'/');
    name.extend_from_slice(bare.as_bytes());
    register_bytes(&name, SHM, |_| {})
}

/// Registers the file `name` in the directory `dir` (an absolute path),
/// the object `identity`; `None` when the registry is full or the path too
/// long.
pub(crate) fn register_file(
    dir: &std::path::Path,
    name: &std::ffi::OsStr,
    identity: (u64, u64),
) -> Option<usize> {
    use std::os::unix::ffi::OsStrExt;
    let (dir, name) = (dir.as_os_str().as_bytes(), name.as_bytes());
    if !dir.starts_with(b"/") || dir.contains(&0) || name.contains(&0) {
        return None;
    }
    let mut bytes = Vec::with_capacity(dir.len() + name.len() + 1);
    bytes.extend_from_slice(dir);
    bytes.push(0);
    bytes.extend_from_slice(name);
    let name_at = (dir.len() + 1) as u32;
    register_bytes(&bytes, FILE, |slot| {
        slot.name_at.store(name_at, Ordering::Relaxed);
        slot.dev.store(identity.0, Ordering::Relaxed);
        slot.ino.store(identity.1, Ordering::Relaxed);
    })
}

fn register_bytes(bytes: &[u8], kind: u32, extra: impl FnOnce(&Slot)) -> Option<usize> {
    if bytes.len() + 1 > NAME_BYTES {
        return None;
    }
    for (index, slot) in SLOTS.iter().enumerate() {
        if slot
            .state
            .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: we own the slot (WRITING) until the release store below.
            let name = unsafe { &mut *slot.name.get() };
            name[..bytes.len()].copy_from_slice(bytes);
            name[bytes.len()] = 0;
            slot.kind.store(kind, Ordering::Relaxed);
            extra(slot);
            slot.owner.store(crate::os::getpid(), Ordering::Relaxed);
            // Release publishes the name, kind and owner with the state.
            slot.state.store(READY, Ordering::Release);
            return Some(index);
        }
    }
    None
}

/// Frees slot `index` (the segment was dropped, unlinked or persisted).
pub(crate) fn unregister(index: usize) {
    if let Some(slot) = SLOTS.get(index) {
        slot.state.store(FREE, Ordering::Release);
    }
}

/// Unlinks every name the calling process registered (never one that a
/// parent registered before forking it). Async-signal-safe: it only reads
/// static memory and calls `getpid`, `shm_unlink`, `open`, `fstatat`,
/// `unlinkat` and `close`. For signal handlers;
/// a normal program never needs it.
pub fn unlink_registered() {
    let me = crate::os::getpid();
    for slot in &SLOTS {
        if slot.state.load(Ordering::Acquire) == READY && slot.owner.load(Ordering::Relaxed) == me {
            // SAFETY: READY means the name was completely written and
            // NUL-terminated before the release store we acquired; and the
            // buffer's last byte is only ever written as 0, so the string
            // ends inside the buffer whatever else happens to the slot.
            unsafe {
                if slot.kind.load(Ordering::Relaxed) == FILE {
                    let identity = (slot.dev.load(Ordering::Relaxed), slot.ino.load(Ordering::Relaxed));
                    let base = slot.name.get().cast::<u8>();
                    let at = (slot.name_at.load(Ordering::Relaxed) as usize).min(NAME_BYTES - 1);
                    crate::os::unlink_in_dir_if_raw(base, base.add(at), identity);
                } else {
                    crate::os::shm_unlink_raw(slot.name.get().cast::<u8>());
                }
            }
        }
    }
}

/// Forgets every registered name without unlinking: for a forked child,
/// whose copy of the registry names its parent's segments (which
/// [`unlink_registered`] already leaves alone; this also frees the slots
/// for the child's own segments). Async-signal-safe.
pub fn forget_registered() {
    for slot in &SLOTS {
        slot.state.store(FREE, Ordering::Relaxed);
    }
}

/// Number of names registered now (by this process or, in a forked child
/// that did not [`forget_registered`], by its parent).
pub fn registered() -> usize {
    SLOTS
        .iter()
        .filter(|s| s.state.load(Ordering::Relaxed) == READY)
        .count()
}
