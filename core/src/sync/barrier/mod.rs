//! The process-shared barrier: epoch + count in a [`BarrierState`], spin
//! then sleep on the shared futex of the epoch, poisoning.
//!
//! # Protocol and memory ordering
//!
//! (The design note `README.md` beside this file tells the same story at
//! more length.)
//!
//! * An arriver loads `epoch` (Acquire) to learn the generation `g`, then
//!   increments `count` (AcqRel). It cannot read a stale generation: `g`
//!   cannot advance without its own arrival.
//! * The arriver that brings `count` to `parties` is the leader. Its AcqRel
//!   increment reads the end of a chain of AcqRel increments, so every
//!   arriver's earlier writes happen-before it. It stores `count = 0`
//!   (Relaxed), then CASes `epoch` from `g` to `g + 1` (AcqRel), which also
//!   clears the sleepers bit; the CAS fails only if the poison bit was set, and
//!   then the generation never completes.
//! * Waiters spin, then sleep, until `epoch` (Acquire) differs from `g`.
//!   Reading the leader's CAS makes everything before every arrival visible
//!   (the barrier's guarantee) and also the `count = 0` reset, so next-generation
//!   increments start from zero.
//! * Before sleeping a waiter sets the sleepers bit with a CAS and sleeps with
//!   that exact value as the futex's expected value. The leader's CAS either
//!   precedes the waiter's (which then fails and re-reads) or sees the bit and
//!   issues `FUTEX_WAKE`; the kernel checks the value and queues the waiter
//!   atomically with respect to the wake. No wake-up can be lost, and when
//!   nobody sleeps the leader makes no system call.
//! * Poisoning sets bit 31 (an RMW, so it is ordered against the leader's CAS
//!   in `epoch`'s modification order) and always wakes everyone. Generation
//!   completion and poisoning of a generation are therefore mutually
//!   exclusive: a waiter that sees the generation change returns `Ok`, one that
//!   sees the poison bit with the generation unchanged returns an error.

use std::time::{Duration, Instant};

use super::BarrierState;
use super::atomic::Ordering;
use super::futex::{self, WaitOutcome};
use crate::error::{Error, Result};

/// The largest participant count a [`Barrier`] accepts.
pub const MAX_PARTIES: u32 = 1 << 16;

/// Bits 0..=29 of `epoch`: the generation number (wraps at 2^30).
const GENERATION_MASK: u32 = (1 << 30) - 1;
/// Bit 30 of `epoch`: some waiter may sleep in `FUTEX_WAIT` on `epoch`.
const SLEEPERS: u32 = 1 << 30;
/// Bit 31 of `epoch`: the barrier is poisoned.
const POISONED: u32 = 1 << 31;

/// Spin iterations before sleeping when every participant can have a core.
const ADAPTIVE_SPIN: u32 = 2048;
/// A spinning waiter yields the CPU once every this many iterations, so a
/// participant that has not arrived because it waits for a core (the
/// machine is loaded by others) gets one at once.
const YIELD_EVERY: u32 = 64;
/// Spin iterations before sleeping when participants outnumber cores: spinning
/// would only steal the core of a participant that has not arrived yet.
const OVERSUBSCRIBED_SPIN: u32 = 16;

/// CPUs available to this process, asked once: the standard library reads
/// cgroup files to answer, which would cost tens of microseconds per handle.
fn available_cpus() -> u32 {
    #[cfg(not(loom))]
    {
        static CPUS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        *CPUS.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        })
    }
    #[cfg(loom)]
    {
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
    }
}

/// How long a [`Barrier`] waiter busy-waits before it sleeps in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpinPolicy {
    /// Spin a few microseconds when there are at least as many CPUs (as
    /// [`std::thread::available_parallelism`] reports them, which honours CPU
    /// affinity and cgroup quotas) as parties, and hardly at all otherwise.
    #[default]
    Adaptive,
    /// Spin this many iterations (each one a [`std::hint::spin_loop`] and a
    /// load) before sleeping.
    Fixed(u32),
    /// Sleep at once: a pure futex barrier.
    Never,
}

/// The outcome of a successful [`Barrier::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
}

impl BarrierWaitResult {
    /// Whether this participant was the one that completed the generation
    /// (the last to arrive). Exactly one participant per generation is the
    /// leader, as with [`std::sync::BarrierWaitResult::is_leader`].
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

/// A barrier for processes, over a [`BarrierState`] that usually lives in a
/// shared segment.
///
/// Every participant makes its own handle over the same state; the handle
/// only borrows the state and holds the spin policy.
///
/// A participant that dies without arriving would leave the others waiting
/// forever: somebody who learns of the death (typically the coordinator,
/// which reaps its workers) must call [`poison`](Self::poison), or the
/// participants must use [`wait_timeout`](Self::wait_timeout).
///
/// # Examples
///
/// ```
/// use shmpar_core::sync::{Barrier, BarrierState};
///
/// # fn main() -> shmpar_core::Result<()> {
/// let state = BarrierState::new();
/// let barrier = Barrier::new(&state);
/// barrier.reset(2)?;
/// std::thread::scope(|s| {
///     let other = s.spawn(|| Barrier::new(&state).wait());
///     let mine = barrier.wait();
///     let theirs = other.join().unwrap();
///     assert!(mine.unwrap().is_leader() != theirs.unwrap().is_leader());
/// });
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Barrier<'a> {
    state: &'a BarrierState,
    policy: SpinPolicy,
    /// CPUs available to this process, for [`SpinPolicy::Adaptive`].
    cpus: u32,
}

impl<'a> Barrier<'a> {
    /// A handle over `state` with the default, adaptive spin policy.
    ///
    /// The first adaptive handle of a process asks the standard library how
    /// many CPUs are available (cached afterwards), which may read files and
    /// allocate: in a child forked from a multi-threaded process, make one
    /// adaptive handle before forking (or use [`with_spin`](Self::with_spin)
    /// with a non-adaptive policy).
    pub fn new(state: &'a BarrierState) -> Self {
        Self::with_spin(state, SpinPolicy::Adaptive)
    }

    /// A handle over `state` with the given spin policy.
    pub fn with_spin(state: &'a BarrierState, policy: SpinPolicy) -> Self {
        let cpus = match policy {
            SpinPolicy::Adaptive => available_cpus(),
            SpinPolicy::Fixed(_) | SpinPolicy::Never => 1,
        };
        Self { state, policy, cpus }
    }

    /// The spin policy of this handle.
    pub fn spin_policy(&self) -> SpinPolicy {
        self.policy
    }

    /// Sets up the barrier for `parties` participants and clears any poison.
    ///
    /// Call it once before the participants start (a fresh, zero-filled
    /// state has no parties) and only while nobody waits: resetting under a
    /// waiter cannot be made safe, because the waiter's generation is lost.
    /// (Such a waiter is released with `Ok` rather than left hanging.) The
    /// participants must learn of the reset through some synchronization of
    /// their own, such as being started after it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParties`] unless `1 <= parties <= MAX_PARTIES`.
    pub fn reset(&self, parties: u32) -> Result<()> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::InvalidParties {
                parties,
                max: MAX_PARTIES,
            });
        }
        self.state.parties.store(parties, Ordering::Relaxed);
        self.state.count.store(0, Ordering::Relaxed);
        // Release: whoever reads this epoch sees the parties and count above.
        // The generation moves on so a (misused) waiter cannot miss the reset.
        let old = self.state.epoch.load(Ordering::Relaxed);
        let old = self
            .state
            .epoch
            .swap(old.wrapping_add(1) & GENERATION_MASK, Ordering::AcqRel);
        if old & SLEEPERS != 0 {
            futex::wake(&self.state.epoch, u32::MAX);
        }
        Ok(())
    }

    /// The number of participants set by the last [`reset`](Self::reset)
    /// (0 if it was never set up).
    pub fn parties(&self) -> u32 {
        self.state.parties.load(Ordering::Acquire)
    }

    /// How many participants are waiting in the current generation: a
    /// snapshot, for a supervisor that knows who else can still arrive
    /// (the runtime poisons a barrier whose missing participants have
    /// finished their work and will never arrive).
    pub fn arrived(&self) -> u32 {
        self.state.count.load(Ordering::Acquire)
    }

    /// Waits until all participants have called `wait` in this generation.
    ///
    /// Everything a participant wrote before its `wait` is visible to every
    /// participant after theirs returns.
    ///
    /// # Errors
    ///
    /// * [`Error::BarrierPoisoned`] when the barrier is or becomes poisoned
    ///   before this generation completes (at once if it already is).
    /// * [`Error::InvalidParties`] when the barrier was never
    ///   [`reset`](Self::reset).
    /// * [`Error::Futex`] if the futex system call fails, which cannot happen
    ///   on a supported kernel.
    pub fn wait(&self) -> Result<BarrierWaitResult> {
        self.wait_until(None)
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout`.
    ///
    /// On timeout the barrier becomes poisoned: this participant has already
    /// been counted in a generation that can no longer complete correctly,
    /// so every other waiter is released with [`Error::BarrierPoisoned`] and
    /// the barrier must be [`reset`](Self::reset) before reuse. If the
    /// generation completes at the same moment, the completion wins and this
    /// returns `Ok`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the time ran out (and this call poisoned the
    /// barrier); otherwise as for [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult> {
        let deadline = Instant::now().checked_add(timeout);
        match deadline {
            Some(deadline) => self.wait_until(Some((deadline, timeout))),
            // Too far in the future to represent: as good as no timeout.
            None => self.wait_until(None),
        }
    }

    /// Poisons the barrier: every current waiter wakes at once with
    /// [`Error::BarrierPoisoned`], and later waits fail at once, until the
    /// next [`reset`](Self::reset).
    ///
    /// Only async-signal-safe operations are involved (an atomic operation
    /// and a futex wake), so a signal handler or a forked child may call it.
    pub fn poison(&self) {
        self.state.epoch.fetch_or(POISONED, Ordering::AcqRel);
        // Always wake: a waiter that set the sleepers bit before our fetch_or
        // must not be left behind, and poisoning is rare.
        futex::wake(&self.state.epoch, u32::MAX);
    }

    /// Whether the barrier is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.state.epoch.load(Ordering::Acquire) & POISONED != 0
    }

    fn spin_budget(&self, parties: u32) -> u32 {
        match self.policy {
            // Every spin is a scheduling point to loom: keep models small.
            SpinPolicy::Adaptive if cfg!(loom) => 0,
            SpinPolicy::Adaptive if parties <= self.cpus => ADAPTIVE_SPIN,
            SpinPolicy::Adaptive => OVERSUBSCRIBED_SPIN,
            SpinPolicy::Fixed(n) => n,
            SpinPolicy::Never => 0,
        }
    }

    fn wait_until(&self, deadline: Option<(Instant, Duration)>) -> Result<BarrierWaitResult> {
        let state = self.state;
        let start = state.epoch.load(Ordering::Acquire);
        if start & POISONED != 0 {
            return Err(Error::BarrierPoisoned);
        }
        let generation = start & GENERATION_MASK;
        let parties = state.parties.load(Ordering::Relaxed);
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::InvalidParties {
                parties,
                max: MAX_PARTIES,
            });
        }
        let arrived = state.count.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        if arrived == parties {
            return self.complete(generation);
        }
        if arrived > parties {
            // More callers than parties: the barrier cannot mean anything.
            self.poison();
            return Err(Error::BarrierPoisoned);
        }
        self.await_generation(generation, parties, deadline)
    }

    /// The leader's part: open the next generation unless poisoned.
    fn complete(&self, generation: u32) -> Result<BarrierWaitResult> {
        let epoch = &self.state.epoch;
        // Happens-before the next generation's increments through the epoch
        // CAS (Release) and the waiters' epoch loads (Acquire).
        self.state.count.store(0, Ordering::Relaxed);
        let next = generation.wrapping_add(1) & GENERATION_MASK;
        let mut current = epoch.load(Ordering::Relaxed);
        loop {
            if current & POISONED != 0 {
                return Err(Error::BarrierPoisoned);
            }
            debug_assert_eq!(current & GENERATION_MASK, generation);
            // Only a waiter setting SLEEPERS or a poisoner can race with us.
            match epoch.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if current & SLEEPERS != 0 {
            futex::wake(epoch, u32::MAX);
        }
        Ok(BarrierWaitResult { leader: true })
    }

    /// A non-leader's part: spin, then sleep, until the generation changes.
    fn await_generation(
        &self,
        generation: u32,
        parties: u32,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<BarrierWaitResult> {
        let epoch = &self.state.epoch;
        let mut spins = self.spin_budget(parties);
        loop {
            let current = epoch.load(Ordering::Acquire);
            if current & GENERATION_MASK != generation {
                return Ok(BarrierWaitResult { leader: false });
            }
            if current & POISONED != 0 {
                return Err(Error::BarrierPoisoned);
            }
            if spins > 0 {
                spins -= 1;
                if spins.is_multiple_of(YIELD_EVERY) {
                    super::yield_now();
                } else {
                    super::spin_loop();
                }
                continue;
            }
            let timeout = match deadline {
                None => None,
                Some((at, _)) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return self.time_out(current, deadline);
                    }
                    Some(left)
                }
            };
            let expected = current | SLEEPERS;
            if current != expected
                && epoch
                    .compare_exchange(current, expected, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            match futex::wait(epoch, expected, timeout) {
                // Every outcome means "look again"; on timeout the next
                // iteration finds no time left and takes the timeout path.
                Ok(
                    WaitOutcome::Woken
                    | WaitOutcome::ValueChanged
                    | WaitOutcome::Interrupted
                    | WaitOutcome::TimedOut,
                ) => {}
                Err(source) => {
                    return Err(Error::Futex {
                        op: "futex wait on the barrier",
                        source,
                    });
                }
            }
        }
    }

    /// Gives up on `generation` (whose epoch was last seen as `current`):
    /// poison it, unless it completed or was poisoned meanwhile.
    fn time_out(&self, mut current: u32, deadline: Option<(Instant, Duration)>) -> Result<BarrierWaitResult> {
        let after = deadline.map_or(Duration::ZERO, |(_, timeout)| timeout);
        let generation = current & GENERATION_MASK;
        let epoch = &self.state.epoch;
        loop {
            if current & GENERATION_MASK != generation {
                return Ok(BarrierWaitResult { leader: false });
            }
            if current & POISONED != 0 {
                return Err(Error::BarrierPoisoned);
            }
            match epoch.compare_exchange(current, current | POISONED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    futex::wake(epoch, u32::MAX);
                    return Err(Error::Timeout {
                        op: "barrier wait",
                        after,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// Reads `epoch` for tests in this crate.
#[cfg(all(test, not(loom)))]
fn generation_of(state: &BarrierState) -> u32 {
    state.epoch.load(Ordering::Acquire) & GENERATION_MASK
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_fresh_barrier_has_no_parties() {
        let state = BarrierState::new();
        let barrier = Barrier::new(&state);
        assert_eq!(barrier.parties(), 0);
        assert!(matches!(
            barrier.wait(),
            Err(Error::InvalidParties { parties: 0, .. })
        ));
    }

    #[test]
    fn reset_rejects_impossible_counts() {
        let state = BarrierState::new();
        let barrier = Barrier::new(&state);
        assert!(matches!(
            barrier.reset(0),
            Err(Error::InvalidParties {
                parties: 0,
                max: MAX_PARTIES
            })
        ));
        assert!(barrier.reset(MAX_PARTIES + 1).is_err());
        barrier.reset(MAX_PARTIES).unwrap();
        assert_eq!(barrier.parties(), MAX_PARTIES);
    }

    #[test]
    fn a_single_party_leads_every_generation() {
        let state = BarrierState::new();
        let barrier = Barrier::new(&state);
        barrier.reset(1).unwrap();
        let before = generation_of(&state);
        for _ in 0..10 {
            assert!(barrier.wait().unwrap().is_leader());
        }
        assert_eq!(generation_of(&state), before + 10);
    }

    fn run_rounds(threads: u32, rounds: usize, policy: SpinPolicy) {
        let state = BarrierState::new();
        Barrier::new(&state).reset(threads).unwrap();
        let arrivals: Vec<AtomicUsize> = (0..rounds).map(|_| AtomicUsize::new(0)).collect();
        let leaders: Vec<AtomicUsize> = (0..rounds).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let barrier = Barrier::with_spin(&state, policy);
                    for round in 0..rounds {
                        arrivals[round].fetch_add(1, Ordering::Relaxed);
                        let result = barrier.wait_timeout(Duration::from_secs(60)).unwrap();
                        if result.is_leader() {
                            leaders[round].fetch_add(1, Ordering::Relaxed);
                        }
                        // Relaxed on purpose: the barrier must provide the ordering.
                        assert_eq!(arrivals[round].load(Ordering::Relaxed), threads as usize);
                    }
                });
            }
        });
        for leader_count in &leaders {
            assert_eq!(leader_count.load(Ordering::Relaxed), 1);
        }
    }

    #[test]
    fn nobody_passes_early_and_one_leader_per_generation() {
        run_rounds(4, 500, SpinPolicy::Adaptive);
    }

    #[test]
    fn sleeping_only_barrier_works() {
        run_rounds(3, 300, SpinPolicy::Never);
    }

    #[test]
    fn oversubscribed_spinning_barrier_works() {
        run_rounds(6, 200, SpinPolicy::Fixed(50));
    }

    #[test]
    fn the_generation_wraps_without_poisoning() {
        let state = BarrierState::new();
        Barrier::new(&state).reset(2).unwrap();
        state.epoch.store(GENERATION_MASK - 2, Ordering::Relaxed);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let barrier = Barrier::with_spin(&state, SpinPolicy::Never);
                    for _ in 0..6 {
                        barrier.wait().unwrap();
                    }
                });
            }
        });
        assert_eq!(generation_of(&state), 3);
        assert!(!Barrier::new(&state).is_poisoned());
    }

    #[test]
    fn poison_releases_every_waiter_and_later_waits_fail_fast() {
        let state = BarrierState::new();
        let barrier = Barrier::new(&state);
        barrier.reset(4).unwrap();
        let started = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        started.fetch_add(1, Ordering::Relaxed);
                        Barrier::with_spin(&state, SpinPolicy::Never).wait()
                    })
                })
                .collect();
            while started.load(Ordering::Relaxed) < 3 {
                std::thread::yield_now();
            }
            barrier.poison();
            for waiter in waiters {
                assert!(matches!(waiter.join().unwrap(), Err(Error::BarrierPoisoned)));
            }
        });
        assert!(barrier.is_poisoned());
        assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
        barrier.reset(1).unwrap();
        assert!(!barrier.is_poisoned());
        assert!(barrier.wait().unwrap().is_leader());
    }

    #[test]
    fn a_timeout_poisons_the_barrier() {
        let state = BarrierState::new();
        let barrier = Barrier::with_spin(&state, SpinPolicy::Fixed(10));
        barrier.reset(2).unwrap();
        match barrier.wait_timeout(Duration::from_millis(20)) {
            Err(Error::Timeout { op, after }) => {
                assert_eq!(op, "barrier wait");
                assert_eq!(after, Duration::from_millis(20));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(barrier.is_poisoned());
        assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
    }

    #[test]
    fn a_timeout_releases_the_other_waiters_with_poison() {
        let state = BarrierState::new();
        Barrier::new(&state).reset(3).unwrap();
        std::thread::scope(|s| {
            let patient = s.spawn(|| Barrier::with_spin(&state, SpinPolicy::Never).wait());
            let impatient = s.spawn(|| {
                Barrier::with_spin(&state, SpinPolicy::Never).wait_timeout(Duration::from_millis(30))
            });
            assert!(matches!(impatient.join().unwrap(), Err(Error::Timeout { .. })));
            assert!(matches!(patient.join().unwrap(), Err(Error::BarrierPoisoned)));
        });
    }

    #[test]
    fn too_many_callers_poison_instead_of_corrupting() {
        let state = BarrierState::new();
        let barrier = Barrier::new(&state);
        barrier.reset(2).unwrap();
        // Two extra arrivals in one generation: impossible with 2 parties
        // calling once each, so the barrier must refuse.
        state.count.store(2, Ordering::Relaxed);
        assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
        assert!(barrier.is_poisoned());
    }
}
