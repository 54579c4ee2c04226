//! One handle per segment per process.
//!
//! Two handles of one object in one process would let safe code hold a
//! `&mut` view through one and a `&` view through the other over the same
//! bytes: undefined behaviour that the optimizer exploits (a release build
//! returned a stale value through `noalias`). So every checked open and
//! every create records the object's (device, inode) here, and a second one
//! while the first lives fails with [`Error::AlreadyOpen`](crate::Error).
//! [`Registration`] removes the entry when its handle drops.
//!
//! Fork: a child inherits the parent's entries, which is right, because
//! its memory holds copies of the parent's handles (dropping such a copy
//! removes its entry in the child only). A child of a multithreaded parent
//! could inherit the mutex locked, but such a child may only make
//! async-signal-safe calls until `exec`, and opening a segment (`shm_open`,
//! `mmap`, allocation) is not one of them: the registry adds no constraint
//! the fork rule does not already impose. Handles from
//! `Segment::open_unchecked` are not recorded at all.

use std::sync::{Mutex, MutexGuard};

/// (device, inode) of every object with a recorded handle in this process.
/// A handful of entries at most: a linear scan is the fastest lookup.
static LIVE: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<(u64, u64)>> {
    // A panic cannot leave the list half-changed (push and swap_remove
    // either happen or not), so a poisoned lock is still a valid list.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The record of one live handle; dropping it removes the record.
#[derive(Debug)]
pub(crate) struct Registration {
    identity: (u64, u64),
}

/// Records a handle of the object `identity`, or returns `None` if this
/// process already has one.
pub(crate) fn register(identity: (u64, u64)) -> Option<Registration> {
    let mut live = live();
    if live.contains(&identity) {
        return None;
    }
    live.push(identity);
    Some(Registration { identity })
}

/// Whether a handle of the object `identity` is recorded now.
pub(crate) fn is_registered(identity: (u64, u64)) -> bool {
    live().contains(&identity)
}

/// Forgets every recorded handle: for a child forked from a process that
/// held handles, which will not use its copies of them (a language runtime
/// whose forked children attach arrays afresh by name, such as Python's
/// `multiprocessing` with the fork start).
///
/// # Safety
/// After this, a new handle of an object whose inherited handle still
/// exists in this process may be made; building Rust references through
/// both (a `&mut` view through one and any view through the other) would
/// alias. The caller promises that the inherited handles are never used to
/// make views again. (Dropping one later removes the record of a new
/// handle of the same object, if there is one.) Does nothing if another
/// thread held the registry's lock at the fork: that lock stays held in
/// the child, and waiting for it would never end.
pub unsafe fn forget_inherited() {
    match LIVE.try_lock() {
        Ok(mut live) => live.clear(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clear(),
        Err(std::sync::TryLockError::WouldBlock) => {}
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = live();
        if let Some(index) = live.iter().position(|&id| id == self.identity) {
            live.swap_remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_registration_per_identity_until_it_drops() {
        // Identities no real object has (device u64::MAX), so tests that
        // open real segments concurrently do not interfere.
        let a = register((u64::MAX, 1)).expect("first");
        assert!(is_registered((u64::MAX, 1)));
        assert!(register((u64::MAX, 1)).is_none());
        let b = register((u64::MAX, 2)).expect("another object");
        drop(a);
        assert!(!is_registered((u64::MAX, 1)));
        let again = register((u64::MAX, 1)).expect("after the first dropped");
        drop((b, again));
        assert!(register((u64::MAX, 2)).is_some());
    }
}
