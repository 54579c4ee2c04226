//! Loom models of the in-segment barrier and lock.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmpar-core --test loom_sync --release`.
//!
//! The futex is emulated without spurious wake-ups and timed waits never
//! time out (see `core/src/sync/futex.rs`), so a lost wake-up is reported by
//! loom as a deadlock. Data written before a barrier or inside the lock lives
//! in loom `UnsafeCell`s, so missing happens-before edges are reported as
//! data races.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use shmpar_core::Error;
use shmpar_core::sync::{Barrier, BarrierState, LockState, ShmLock, SpinPolicy};

/// A model checker with a preemption bound (`None`: exhaustive), chosen per
/// model so the whole file stays within about a minute on two cores.
fn checker(preemptions: Option<usize>) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemptions;
    builder
}

/// Per-thread slots written before a barrier and read by others after it.
struct Slots(Vec<UnsafeCell<usize>>);

impl Slots {
    fn new(n: usize) -> Self {
        Self((0..n).map(|_| UnsafeCell::new(0)).collect())
    }
}

/// `threads` participants pass `generations` generations. Each writes its
/// slot before every wait and reads every slot after it (a data race unless
/// the barrier orders them), and the leaders are counted per generation.
fn barrier_generations(threads: usize, generations: usize, policy: SpinPolicy) {
    let state = Arc::new(BarrierState::new());
    Barrier::new(&state).reset(threads as u32).unwrap();
    let slots = Arc::new(Slots::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|me| {
            let state = Arc::clone(&state);
            let slots = Arc::clone(&slots);
            thread::spawn(move || {
                let barrier = Barrier::with_spin(&state, policy);
                let mut leader_of = Vec::new();
                for generation in 0..generations {
                    slots.0[me].with_mut(|p| {
                        // SAFETY: only thread `me` writes slot `me`, and only
                        // between barriers, when nobody reads it.
                        unsafe { *p = generation + 1 }
                    });
                    leader_of.push(barrier.wait().unwrap().is_leader());
                    for slot in &slots.0 {
                        // SAFETY: after the barrier every writer is done with
                        // this generation (loom checks it).
                        let seen = slot.with(|p| unsafe { *p });
                        assert_eq!(seen, generation + 1);
                    }
                    // Nobody may write the next generation before everybody
                    // has read this one.
                    barrier.wait().unwrap();
                }
                leader_of
            })
        })
        .collect();
    let per_thread: Vec<Vec<bool>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for generation in 0..generations {
        let leaders = per_thread.iter().filter(|l| l[generation]).count();
        assert_eq!(leaders, 1, "generation {generation} had {leaders} leaders");
    }
}

#[test]
fn barrier_two_threads_two_generations() {
    checker(Some(4)).check(|| barrier_generations(2, 2, SpinPolicy::Never));
}

#[test]
fn barrier_two_threads_with_a_spin() {
    checker(Some(4)).check(|| barrier_generations(2, 1, SpinPolicy::Fixed(1)));
}

#[test]
fn barrier_three_threads() {
    checker(Some(2)).check(|| barrier_generations(3, 1, SpinPolicy::Never));
}

#[test]
fn poison_releases_every_waiter() {
    checker(Some(4)).check(|| {
        let state = Arc::new(BarrierState::new());
        Barrier::new(&state).reset(3).unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let state = Arc::clone(&state);
                thread::spawn(move || Barrier::with_spin(&state, SpinPolicy::Never).wait())
            })
            .collect();
        let barrier = Barrier::new(&state);
        barrier.poison();
        for waiter in waiters {
            assert!(matches!(waiter.join().unwrap(), Err(Error::BarrierPoisoned)));
        }
        assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
    });
}

#[test]
fn a_timeout_and_a_completion_agree() {
    // A zero timeout in the model times out as soon as the waiter would
    // sleep. Either the generation completed for both, or neither passed.
    checker(None).check(|| {
        let state = Arc::new(BarrierState::new());
        Barrier::new(&state).reset(2).unwrap();
        let other = {
            let state = Arc::clone(&state);
            thread::spawn(move || Barrier::with_spin(&state, SpinPolicy::Never).wait())
        };
        let mine = Barrier::with_spin(&state, SpinPolicy::Never).wait_timeout(std::time::Duration::ZERO);
        let theirs = other.join().unwrap();
        match (&mine, &theirs) {
            (Ok(a), Ok(b)) => assert!(a.is_leader() != b.is_leader()),
            (Err(Error::Timeout { .. }), Err(Error::BarrierPoisoned)) => {}
            _ => panic!("inconsistent outcomes: {mine:?} and {theirs:?}"),
        }
    });
}

/// `threads` threads each take the lock `rounds` times and increment a
/// plain counter; sleepers must always be woken (else loom deadlocks).
fn lock_counter(threads: usize, rounds: usize) {
    let state = Arc::new(LockState::new());
    let counter = Arc::new(UnsafeCell::new(0usize));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let state = Arc::clone(&state);
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                let lock = ShmLock::new(&state);
                for _ in 0..rounds {
                    let guard = lock.lock().unwrap();
                    assert!(!guard.previous_owner_died());
                    // SAFETY: the lock is held (loom reports a race otherwise).
                    counter.with_mut(|p| unsafe { *p += 1 });
                    drop(guard);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    // SAFETY: every thread has been joined.
    assert_eq!(counter.with(|p| unsafe { *p }), threads * rounds);
    assert!(ShmLock::new(&state).try_lock().unwrap().is_some());
}

#[test]
fn lock_excludes_and_wakes_two_threads() {
    checker(Some(4)).check(|| lock_counter(2, 2));
}

#[test]
fn lock_excludes_and_wakes_three_threads() {
    checker(Some(2)).check(|| lock_counter(3, 1));
}
