//! The process-shared barrier: a generation word that releases everybody,
//! arrivals counted centrally (four participants or fewer) or in a
//! combining tree (`tree.rs`), spin then sleep on shared futexes, poisoning.
//!
//! # Protocol and memory ordering
//!
//! (The design note `../README.md` tells the same story at more length.)
//!
//! * An arriver loads `epoch` (Acquire) to learn the generation `g`. It
//!   cannot read a stale generation: `g` cannot advance without its own
//!   arrival. It then counts itself: in the head's `count` (central), or in
//!   a leaf of the tree, climbing to the parent when it fills the leaf, and
//!   so on (`tree.rs`). Every count is changed by AcqRel read-modify-writes.
//! * The arriver that completes the count (of the head, or of the tree's
//!   root) is the leader. Its RMW read the end of a chain of AcqRel RMWs
//!   through which every arriver passed, so every arriver's earlier writes
//!   happen-before it. It CASes `epoch` from `g` to `g + 1` (AcqRel), which
//!   also clears the sleepers bit; the CAS fails only if the poison bit was
//!   set, and then the generation never completes.
//! * Waiters spin on `epoch` (Acquire) until it leaves generation `g`.
//!   Reading the leader's CAS makes everything before every arrival visible
//!   (the barrier's guarantee).
//! * Then they sleep: central waiters on `epoch`, tree waiters on the word
//!   of the node where they stopped climbing. A sleeper sets the word's
//!   sleepers bit with a CAS and sleeps with that exact value expected; the
//!   writer that releases the word (the leader's CAS on `epoch`; for a node,
//!   the CAS of the participant that climbed from it, once released itself)
//!   either precedes that CAS, which then fails and re-reads, or sees the bit
//!   and issues `FUTEX_WAKE`. The kernel checks the value and queues the
//!   waiter atomically with respect to the wake, so no wake-up is lost, and
//!   when nobody sleeps nobody makes a system call.
//! * Poisoning sets bit 31 of `epoch` (an RMW, so it is ordered against the
//!   leader's CAS in `epoch`'s modification order), then of every node word,
//!   and wakes everyone. Completion and poisoning of a generation are
//!   therefore mutually exclusive, decided by `epoch`: a waiter that sees the
//!   generation change returns `Ok`, one that sees the poison bit with the
//!   generation unchanged returns an error.

mod tree;

#[cfg(all(test, not(loom)))]
mod tests;

use std::time::{Duration, Instant};

use super::BarrierState;
use super::atomic::Ordering;
use super::futex::{self, WaitOutcome};
use crate::error::{Error, Result};
use tree::Shape;
pub use tree::{BarrierNode, BarrierTree};

/// The largest participant count a [`Barrier`] accepts.
pub const MAX_PARTIES: u32 = 1 << 16;

/// Bits 0..=29 of `epoch` and of a node word: the generation number (wraps
/// at 2^30).
const GENERATION_MASK: u32 = (1 << 30) - 1;
/// Bit 30 of `epoch` and of a node word: some waiter may sleep in
/// `FUTEX_WAIT` on this word.
const SLEEPERS: u32 = 1 << 30;
/// Bit 31 of `epoch`: the barrier is poisoned (of a node word: the poison
/// has reached this node's sleepers).
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

/// The generation after `generation`.
fn next_generation(generation: u32) -> u32 {
    generation.wrapping_add(1) & GENERATION_MASK
}

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

/// A barrier for processes, over a [`BarrierState`] and, for more than four
/// participants, a [`BarrierTree`], which usually live in a shared segment.
///
/// Every participant makes its own handle over the same state; the handle
/// only borrows the state and holds the spin policy and the participant's
/// rank, if it has one.
///
/// Without a tree (a handle from [`new`](Self::new) or
/// [`with_spin`](Self::with_spin) alone) every arrival increments one
/// counter: fine for a few participants, but at 16 cores the counter's cache
/// line becomes the bottleneck. With one ([`with_tree`](Self::with_tree)),
/// [`reset`](Self::reset) sets larger barriers up as a combining tree of
/// four-way nodes, each on its own cache line, and waiters that sleep are
/// woken by a tree of wake-ups instead of all by the last arriver. All the
/// handles of one barrier must agree: either all carry the same tree, or
/// none does (a handle without the tree cannot take part in a barrier set up
/// with one; its `wait` poisons the barrier).
///
/// A participant that dies without arriving would leave the others waiting
/// forever: somebody who learns of the death (typically the coordinator,
/// which reaps its workers) must call [`poison`](Self::poison), or the
/// participants must use [`wait_timeout`](Self::wait_timeout).
///
/// # Examples
///
/// ```
/// use shmpar_core::sync::{Barrier, BarrierState, BarrierTree};
///
/// # fn main() -> shmpar_core::Result<()> {
/// let state = BarrierState::new();
/// let tree = BarrierTree::new();
/// Barrier::new(&state).with_tree(&tree).reset(6)?;
/// let leaders = std::thread::scope(|s| {
///     let workers: Vec<_> = (0..6)
///         .map(|rank| {
///             let (state, tree) = (&state, &tree);
///             s.spawn(move || Barrier::new(state).with_tree(tree).with_rank(rank).wait())
///         })
///         .collect();
///     workers.into_iter().map(|w| w.join().unwrap()).filter(|r| r.as_ref().unwrap().is_leader()).count()
/// });
/// assert_eq!(leaders, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Barrier<'a> {
    state: &'a BarrierState,
    /// The tree's node lines; empty for a handle without a tree.
    nodes: &'a [BarrierNode],
    policy: SpinPolicy,
    /// CPUs available to this process, for [`SpinPolicy::Adaptive`].
    cpus: u32,
    /// Where this participant looks for a leaf first: its rank, if known.
    rank: Option<u32>,
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
        Self {
            state,
            nodes: &[],
            policy,
            cpus,
            rank: None,
        }
    }

    /// This handle, counting arrivals in `tree` when the barrier has more
    /// than four participants.
    ///
    /// Every handle of the barrier must carry the same tree (the tree that
    /// lies beside the state in the same segment), the one that
    /// [`reset`](Self::reset)s it included.
    #[must_use]
    pub fn with_tree(self, tree: &'a BarrierTree) -> Self {
        Self {
            nodes: &tree.nodes,
            ..self
        }
    }

    /// This handle, for the participant of rank `rank` (`0..parties`).
    ///
    /// The rank is a hint: participants that wait with distinct ranks each go
    /// straight to a place of their own in the tree, next to their
    /// neighbours' ranks. Without one, a participant starts from the CPU it
    /// runs on, and looks further when that place is taken, which costs a
    /// few cache misses. A wrong or repeated rank costs the same, never
    /// correctness. A barrier without a tree ignores it.
    #[must_use]
    pub fn with_rank(self, rank: u32) -> Self {
        Self {
            rank: Some(rank),
            ..self
        }
    }

    /// The spin policy of this handle.
    pub fn spin_policy(&self) -> SpinPolicy {
        self.policy
    }

    /// Sets up the barrier for `parties` participants and clears any poison.
    ///
    /// With a tree and more than four parties, the arrivals are counted in
    /// the tree (four participants per leaf, or more when the tree has too
    /// few lines for that); otherwise in the state's one line.
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
        check_parties(parties)?;
        self.reset_to(parties, Shape::choose(parties, self.nodes.len()));
        Ok(())
    }

    /// Like [`reset`](Self::reset), with a tree of `leaves` leaves (0: the
    /// central counter) even where `reset` would choose another shape, so
    /// that models with two or three threads exercise the tree.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParties`] for an impossible count, or a tree that this
    /// handle's lines cannot hold.
    #[cfg(loom)]
    pub fn reset_with_leaves(&self, parties: u32, leaves: u32) -> Result<()> {
        check_parties(parties)?;
        let shape = match leaves {
            0 => None,
            _ => Some(
                Shape::new(parties, leaves, self.nodes.len()).ok_or(Error::InvalidParties {
                    parties,
                    max: MAX_PARTIES,
                })?,
            ),
        };
        self.reset_to(parties, shape);
        Ok(())
    }

    fn reset_to(&self, parties: u32, shape: Option<Shape>) {
        let epoch = &self.state.epoch;
        let next = next_generation(epoch.load(Ordering::Relaxed));
        if let Some(shape) = shape {
            for node in &self.nodes[..shape.lines()] {
                node.reset(next);
            }
        }
        self.state.parties.store(parties, Ordering::Relaxed);
        self.state
            .leaves
            .store(shape.map_or(0, Shape::leaves), Ordering::Relaxed);
        self.state.count.store(0, Ordering::Relaxed);
        // Release: whoever reads this epoch sees everything stored above.
        // The generation moves on so a (misused) waiter cannot miss the reset.
        let old = epoch.swap(next, Ordering::AcqRel);
        if old & SLEEPERS != 0 {
            futex::wake(epoch, u32::MAX);
        }
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
    ///
    /// A handle without the tree reads 0 for a barrier set up with one.
    pub fn arrived(&self) -> u32 {
        let state = self.state;
        let generation = state.epoch.load(Ordering::Acquire) & GENERATION_MASK;
        match self.shape() {
            Ok(None) => state.count.load(Ordering::Acquire),
            Ok(Some(shape)) => shape.arrived(self.nodes, generation),
            Err(()) => 0,
        }
    }

    /// Waits until all participants have called `wait` in this generation.
    ///
    /// Everything a participant wrote before its `wait` is visible to every
    /// participant after theirs returns.
    ///
    /// # Errors
    ///
    /// * [`Error::BarrierPoisoned`] when the barrier is or becomes poisoned
    ///   before this generation completes (at once if it already is), and
    ///   when more participants arrive in one generation than it was set up
    ///   for, or this handle lacks the tree the barrier was set up with
    ///   (then this call poisons it).
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
    /// Only async-signal-safe operations are involved (atomic operations and
    /// futex wakes), so a signal handler or a forked child may call it. A
    /// handle without the tree cannot reach the tree's sleepers: poison a
    /// barrier set up with a tree through a handle that carries it.
    pub fn poison(&self) {
        self.state.epoch.fetch_or(POISONED, Ordering::AcqRel);
        // Always wake: a waiter that set the sleepers bit before our fetch_or
        // must not be left behind, and poisoning is rare.
        futex::wake(&self.state.epoch, u32::MAX);
        self.poison_tree();
    }

    /// Whether the barrier is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.state.epoch.load(Ordering::Acquire) & POISONED != 0
    }

    /// The recorded tree, if any: `Err` when this handle cannot follow it
    /// (no tree, too few lines, or a corrupt shape).
    fn shape(&self) -> Result<Option<Shape>, ()> {
        let leaves = self.state.leaves.load(Ordering::Relaxed);
        if leaves == 0 {
            return Ok(None);
        }
        let parties = self.state.parties.load(Ordering::Relaxed);
        Shape::new(parties, leaves, self.nodes.len()).map(Some).ok_or(())
    }

    /// Passes the poison on to the tree's sleepers (after `epoch` has it).
    fn poison_tree(&self) {
        if self.state.leaves.load(Ordering::Relaxed) == 0 {
            return;
        }
        // A shape this handle cannot follow: poison every line it has.
        let lines = match self.shape() {
            Ok(Some(shape)) => shape.lines(),
            _ => self.nodes.len(),
        };
        for node in &self.nodes[..lines] {
            node.poison();
        }
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
        check_parties(parties)?;
        let leaves = state.leaves.load(Ordering::Relaxed);
        if leaves != 0 {
            return self.wait_in_tree(generation, parties, leaves, deadline);
        }
        let arrived = state.count.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        if arrived == parties {
            // Happens-before the next generation's increments through the
            // epoch CAS (Release) and the waiters' epoch loads (Acquire).
            state.count.store(0, Ordering::Relaxed);
            self.open_next(generation)?;
            return Ok(BarrierWaitResult { leader: true });
        }
        if arrived > parties {
            // More callers than parties: the barrier cannot mean anything.
            self.poison();
            return Err(Error::BarrierPoisoned);
        }
        self.await_generation(generation, parties, deadline, None)
    }

    /// The leader's part: move `epoch` to the next generation, unless
    /// poisoned, and wake whoever sleeps on it.
    fn open_next(&self, generation: u32) -> Result<()> {
        let epoch = &self.state.epoch;
        let next = next_generation(generation);
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
        Ok(())
    }

    /// A non-leader's part: spin on `epoch`, then sleep (on `epoch`, or on
    /// `node`'s word in a tree), until the generation changes.
    fn await_generation(
        &self,
        generation: u32,
        parties: u32,
        deadline: Option<(Instant, Duration)>,
        node: Option<&BarrierNode>,
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
            let (word, seen) = match node {
                None => (epoch, current),
                Some(node) => {
                    let seen = node.word.load(Ordering::Acquire);
                    if seen & GENERATION_MASK == next_generation(generation) {
                        // Released: the generation completed.
                        return Ok(BarrierWaitResult { leader: false });
                    }
                    if seen & POISONED != 0 {
                        // The poisoner marked `epoch` before this word, and
                        // our Acquire load of its mark makes that visible: a
                        // generation that completed first shows as changed.
                        let now = epoch.load(Ordering::Acquire);
                        if now & GENERATION_MASK != generation {
                            return Ok(BarrierWaitResult { leader: false });
                        }
                        if now & POISONED != 0 {
                            return Err(Error::BarrierPoisoned);
                        }
                        // Marked by something other than a poisoner: a
                        // foreign write. Sleep on it all the same.
                    }
                    (&node.word, seen)
                }
            };
            let expected = seen | SLEEPERS;
            if seen != expected
                && word
                    .compare_exchange(seen, expected, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            match futex::wait(word, expected, timeout) {
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
                    self.poison_tree();
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

/// `Ok` for a participant count a barrier can be set up for.
fn check_parties(parties: u32) -> Result<()> {
    if parties == 0 || parties > MAX_PARTIES {
        return Err(Error::InvalidParties {
            parties,
            max: MAX_PARTIES,
        });
    }
    Ok(())
}
