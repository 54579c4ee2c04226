//! How the ranks of a job meet when they run in this process: on the
//! threads backend (all at once) or the serial backend (one at a time).
//!
//! [`LocalMeet`] is the barrier of such a job, with what the processes'
//! in-segment barrier gives a pool: a rank that fails *poisons* it, so the
//! ranks waiting there unwind instead of waiting forever, and a rank that
//! finishes its kernel while the others wait at a barrier (unequal barrier
//! calls) poisons it too and is named. On the serial backend the ranks
//! take turns: one runs until it reaches a barrier or finishes, then the
//! next; a barrier opens when every rank has reached it. So a multi-phase
//! kernel (sweep, barrier, residual) sees every rank's writes of the phase
//! before, exactly as on processes and threads.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The meeting point of one local job's ranks.
pub(crate) struct LocalMeet {
    parties: usize,
    /// Serial: at most one rank runs at a time (the turn).
    one_at_a_time: bool,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Ranks waiting at the barrier of this generation.
    arrived: usize,
    /// Barriers opened so far.
    generation: u64,
    /// Ranks whose kernel returned or failed.
    finished: usize,
    /// The first rank whose kernel returned normally.
    first_finished: Option<usize>,
    /// A rank failed, or the barrier can never open: waiters unwind.
    poisoned: bool,
    /// The rank that finished while the others waited at a barrier.
    early: Option<usize>,
    /// Serial: whether a rank holds the turn.
    running: bool,
}

impl LocalMeet {
    /// The meeting point of `parties` ranks; `one_at_a_time` for the
    /// serial backend.
    pub(crate) fn new(parties: usize, one_at_a_time: bool) -> LocalMeet {
        LocalMeet {
            parties,
            one_at_a_time,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the state consistent before anything
        // that could panic, so a poisoned lock still guards a valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'g>(&self, state: MutexGuard<'g, State>) -> MutexGuard<'g, State> {
        self.changed.wait(state).unwrap_or_else(PoisonError::into_inner)
    }

    /// Serial: waits for the turn.
    fn take_turn<'g>(&self, mut state: MutexGuard<'g, State>) -> MutexGuard<'g, State> {
        if self.one_at_a_time {
            while state.running {
                state = self.wait(state);
            }
            state.running = true;
        }
        state
    }

    /// Called by each rank before its kernel runs.
    pub(crate) fn start(&self) {
        drop(self.take_turn(self.lock()));
    }

    /// The barrier: returns once every rank has arrived (`false`), or when
    /// the barrier is poisoned (`true`): a rank failed, or one finished
    /// while the others waited.
    pub(crate) fn barrier(&self) -> bool {
        let mut state = self.lock();
        if state.poisoned {
            return true;
        }
        state.arrived += 1;
        if state.arrived + state.finished == self.parties {
            if state.finished > 0 {
                state.poisoned = true;
                state.early = state.first_finished;
            } else {
                state.arrived = 0;
                state.generation += 1;
            }
            self.changed.notify_all();
            // The last to arrive keeps the turn.
            return state.poisoned;
        }
        let generation = state.generation;
        if self.one_at_a_time {
            state.running = false;
            self.changed.notify_all();
        }
        while state.generation == generation && !state.poisoned {
            state = self.wait(state);
        }
        let state = self.take_turn(state);
        state.poisoned
    }

    /// Called by each rank when its kernel has returned (`failed` false)
    /// or failed: panicked, or left the barrier because it was poisoned.
    pub(crate) fn finish(&self, rank: usize, failed: bool) {
        let mut state = self.lock();
        state.finished += 1;
        if failed {
            state.poisoned = true;
        } else {
            state.first_finished.get_or_insert(rank);
            if !state.poisoned && state.arrived > 0 && state.arrived + state.finished == self.parties {
                state.poisoned = true;
                state.early = state.first_finished;
            }
        }
        state.running = false;
        self.changed.notify_all();
    }

    /// The rank that finished its kernel while the others waited for it at
    /// a barrier, if that is what poisoned the barrier.
    pub(crate) fn finished_early(&self) -> Option<usize> {
        self.lock().early
    }
}

#[cfg(test)]
mod tests {
    use super::LocalMeet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn serial_ranks_take_turns_and_meet_at_every_barrier() {
        let meet = LocalMeet::new(3, true);
        let running = AtomicUsize::new(0);
        let log = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for rank in 0..3 {
                let (meet, running, log) = (&meet, &running, &log);
                s.spawn(move || {
                    meet.start();
                    for phase in 0..4 {
                        assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "one rank at a time");
                        log.lock().unwrap().push(phase);
                        running.fetch_sub(1, Ordering::SeqCst);
                        assert!(!meet.barrier());
                    }
                    meet.finish(rank, false);
                });
            }
        });
        // Every rank ends a phase before any rank starts the next.
        let log = log.into_inner().unwrap();
        assert_eq!(log, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    }

    #[test]
    fn a_failed_rank_releases_the_waiters() {
        for one_at_a_time in [false, true] {
            let meet = LocalMeet::new(2, one_at_a_time);
            std::thread::scope(|s| {
                s.spawn(|| {
                    meet.start();
                    let poisoned = meet.barrier();
                    meet.finish(0, poisoned);
                    assert!(poisoned);
                });
                s.spawn(|| {
                    meet.start();
                    meet.finish(1, true);
                });
            });
            assert_eq!(meet.finished_early(), None);
        }
    }

    #[test]
    fn a_rank_that_finishes_while_others_wait_is_named() {
        for one_at_a_time in [false, true] {
            let meet = LocalMeet::new(3, one_at_a_time);
            std::thread::scope(|s| {
                for rank in 0..3 {
                    let meet = &meet;
                    s.spawn(move || {
                        meet.start();
                        let poisoned = rank != 2 && meet.barrier();
                        meet.finish(rank, poisoned);
                    });
                }
            });
            assert_eq!(meet.finished_early(), Some(2));
        }
    }
}
