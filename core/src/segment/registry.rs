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
