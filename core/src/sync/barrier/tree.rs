//! The combining tree: how a barrier with more than four participants
//! counts arrivals without making them all hammer one cache line, and wakes
//! its sleepers without making one process wake them all.
//!
//! # Shape
//!
//! The nodes lie in a [`BarrierTree`]'s lines, numbered bottom-up: the
//! `leaves` leaves first, then each level of inner nodes, the root last.
//! Participants are spread over the leaves (`parties / leaves` each, the
//! first `parties % leaves` leaves one more); an inner node has up to
//! [`FAN_IN`] children. The head records `parties` and `leaves`, and every
//! participant derives the rest, so all agree on the shape.
//!
//! # Arrival
//!
//! A node's `count` holds a generation tag in its high 15 bits (the
//! generation's low 15 bits) and an arrival count in its low 17. An arrival
//! is one `fetch_add`. The arrival that fills the node stores the next
//! generation's tag with a zero count, and climbs: it arrives at the parent,
//! and so on; the one that fills the root is the leader, and moves `epoch`
//! to the next generation. A count is thus always tagged with the current
//! generation or, once full, with the next one (which no arrival can reach
//! before the current generation completes, since that needs the filler to
//! climb).
//!
//! A participant starts at the leaf its rank (or its CPU) points to, and
//! moves on to the next leaf while the one it tries is full, so a wrong rank
//! costs time, never correctness; every leaf full means more arrivals than
//! parties. Its increment of a full leaf is wiped by the filler's store
//! (when the tag it read is still this generation's) or taken back by the
//! participant itself (when it is already the next one's), always before
//! the next generation can start. A count of 17 bits holds a leaf's
//! capacity plus every other participant's passing increment.
//!
//! # Release
//!
//! Waiters spin on `epoch`, which only the leader writes during a
//! generation, so the release is one cache-line broadcast. A waiter that
//! sleeps does so on the word of the node where it stopped climbing. The
//! word holds the generation the node was last released into (and the
//! sleepers and poison bits); each node is released by the participant that
//! filled it, once that participant is itself released, top-down along its
//! path. So sleepers are woken by a tree of `FUTEX_WAKE` calls, at most
//! `FAN_IN - 1` or a leaf's size minus one per call, instead of all by the
//! leader.

use super::super::atomic::{AtomicU32, Ordering};
use super::super::futex;
use super::{Barrier, BarrierWaitResult, POISONED, SLEEPERS, next_generation};
use crate::error::{Error, Result};

/// Children per inner node. Two under loom, so that models of two or three
/// threads can build trees of several levels.
pub(super) const FAN_IN: u32 = if cfg!(loom) { 2 } else { 4 };
/// Participants per leaf when [`Barrier::reset`] chooses the shape; a
/// barrier with at most this many participants needs no tree.
const LEAF_SIZE: u32 = 4;
/// The deepest tree a participant follows (four levels cover every shape
/// of a [`BarrierTree`] with four-way nodes).
const MAX_LEVELS: usize = 8;

/// Bits of a node's `count` that count arrivals; the bits above hold the tag.
const COUNT_BITS: u32 = 17;
/// The arrival count of a node's `count` word.
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;

/// One node of a [`BarrierTree`]: one cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct BarrierNode {
    /// Bits 17..=31: the generation (mod 2^15) whose arrivals bits 0..=16
    /// count. A count of another generation is stale: zero.
    pub(super) count: AtomicU32,
    /// Futex word. Bits 0..=29: the generation this node was last released
    /// into; bit 30: somebody sleeps in `FUTEX_WAIT` on it; bit 31: poisoned.
    pub(super) word: AtomicU32,
    _reserved: [u32; 14],
}

/// The lines of a barrier's combining tree, beside its [`BarrierState`]
/// (see [`Barrier::with_tree`]).
///
/// [`NODES`](Self::NODES) lines of 64 bytes: enough for four participants
/// per leaf and four-way nodes up to 64 participants; larger barriers get
/// larger leaves. All-zero bytes are a valid state: [`Barrier::reset`]
/// sets the lines up.
///
/// [`BarrierState`]: super::super::BarrierState
#[repr(C, align(64))]
#[derive(Debug)]
pub struct BarrierTree {
    pub(super) nodes: [BarrierNode; BarrierTree::NODES],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BarrierNode>() == 64);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<BarrierNode>() == 64);
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BarrierTree>() == 64 * BarrierTree::NODES);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<BarrierTree>() == 64);

impl BarrierNode {
    /// A fresh node, identical to all-zero bytes.
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            count: AtomicU32::new(0),
            word: AtomicU32::new(0),
            _reserved: [0; 14],
        }
    }

    /// A fresh node, identical to all-zero bytes.
    #[cfg(loom)]
    fn new() -> Self {
        Self {
            count: AtomicU32::new(0),
            word: AtomicU32::new(0),
            _reserved: [0; 14],
        }
    }

    /// Empties the node and releases it into `generation` (for
    /// [`Barrier::reset`]; published by its store of `epoch`).
    pub(super) fn reset(&self, generation: u32) {
        self.count.store(tag(generation), Ordering::Relaxed);
        let old = self.word.swap(generation, Ordering::Relaxed);
        if old & SLEEPERS != 0 {
            futex::wake(&self.word, u32::MAX);
        }
    }

    /// Marks the node poisoned and wakes its sleepers. Called after `epoch`
    /// was poisoned, so a sleeper that sees the mark (Acquire) also sees
    /// `epoch`'s poison, or the completion that won over it.
    pub(super) fn poison(&self) {
        let old = self.word.fetch_or(POISONED, Ordering::AcqRel);
        // A sleeper whose CAS of SLEEPERS came after ours failed and looks
        // again; one whose CAS came first is visible in `old`.
        if old & SLEEPERS != 0 {
            futex::wake(&self.word, u32::MAX);
        }
    }

    /// Releases the node into `generation` (keeping a poison mark: a later
    /// generation's poisoner may have been here first) and wakes its
    /// sleepers.
    ///
    /// Release: the releaser has seen the generation complete, so a sleeper
    /// that reads this word (Acquire) sees it complete too.
    fn release(&self, generation: u32) {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            let released = generation | (current & POISONED);
            match self
                .word
                .compare_exchange_weak(current, released, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if current & SLEEPERS != 0 {
            futex::wake(&self.word, u32::MAX);
        }
    }

    /// Counts one arrival of `generation` at a node that takes `capacity`
    /// participants per generation.
    ///
    /// One `fetch_add`, AcqRel: the arrival that fills the node reads the end
    /// of the chain of RMWs of everyone who arrived before it, so it (and
    /// whoever it passes that on to by climbing) sees everything they wrote
    /// before arriving. The filler then empties the count for the next
    /// generation (tagging it so): next-generation arrivals come after this
    /// generation completes, which needs the filler to climb first.
    ///
    /// A participant that finds the node full (it probed a leaf that others
    /// filled) has incremented it all the same. If the filler had not yet
    /// emptied it (the tag is this generation's), the filler's store wipes
    /// the increment; if it had (the next generation's tag), the
    /// participant takes its increment back, before it arrives anywhere
    /// else, so before the next generation can start.
    fn arrive(&self, generation: u32, capacity: u32) -> Arrival {
        let old = self.count.fetch_add(1, Ordering::AcqRel);
        let arrived = (old & COUNT_MASK) + 1;
        if old & !COUNT_MASK == tag(generation) {
            if arrived < capacity {
                Arrival::Counted
            } else if arrived == capacity {
                // A swap rather than a store: the same on a line this
                // participant holds exclusively, and loom 0.7 lets a plain
                // store slip between the read and the write of a concurrent
                // RMW (tokio-rs/loom#389), which no real execution does.
                self.count
                    .swap(tag(next_generation(generation)), Ordering::Relaxed);
                Arrival::Filled
            } else {
                Arrival::Full
            }
        } else {
            if old & !COUNT_MASK == tag(next_generation(generation)) {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
            // Otherwise a count of no generation near this one: a corrupt
            // state. Leave it; every leaf full ends in poison.
            Arrival::Full
        }
    }
}

/// What [`BarrierNode::arrive`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    /// Counted; others are still to come.
    Counted,
    /// Counted, and the node is complete: climb.
    Filled,
    /// The node was full; not counted.
    Full,
}

/// The tag of `generation` in a node's `count` (its low 15 bits, on top).
fn tag(generation: u32) -> u32 {
    generation << COUNT_BITS
}

/// The arrivals of `generation` at a node of `capacity` whose count reads
/// `count`: a count emptied for the next generation belongs to a node that
/// filled in this one.
fn arrivals(count: u32, generation: u32, capacity: u32) -> u32 {
    if count & !COUNT_MASK == tag(generation) {
        (count & COUNT_MASK).min(capacity)
    } else if count & !COUNT_MASK == tag(next_generation(generation)) {
        capacity
    } else {
        0
    }
}

impl BarrierTree {
    /// The number of node lines. (Six under loom: enough for the models'
    /// trees, fewer objects for loom to track.)
    pub const NODES: usize = if cfg!(loom) { 6 } else { 21 };

    /// A fresh tree, identical to all-zero bytes.
    ///
    /// Trees inside a segment are not built with this (the segment is
    /// zero-filled); it is for barriers in ordinary memory and for tests.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            nodes: [const { BarrierNode::new() }; Self::NODES],
        }
    }

    /// A fresh tree, identical to all-zero bytes.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            nodes: std::array::from_fn(|_| BarrierNode::new()),
        }
    }
}

impl Default for BarrierTree {
    fn default() -> Self {
        Self::new()
    }
}

/// The shape of a tree, derived from the head's `parties` and `leaves`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    parties: u32,
    leaves: u32,
    /// Node lines in use: every level's nodes.
    lines: u32,
}

impl Shape {
    /// The tree of `leaves` leaves over `parties` participants, if it is
    /// one that a handle with `available` lines can follow.
    pub(super) fn new(parties: u32, leaves: u32, available: usize) -> Option<Shape> {
        if leaves == 0 || leaves > parties {
            return None;
        }
        let (mut size, mut lines, mut levels) = (leaves, leaves, 1);
        while size > 1 {
            size = size.div_ceil(FAN_IN);
            lines += size;
            levels += 1;
        }
        (levels <= MAX_LEVELS && lines as usize <= available).then_some(Shape {
            parties,
            leaves,
            lines,
        })
    }

    /// The shape [`Barrier::reset`] gives `parties` participants with
    /// `available` lines: `None` (central) for a handful, else leaves of
    /// [`LEAF_SIZE`], or as many leaves as fit.
    pub(super) fn choose(parties: u32, available: usize) -> Option<Shape> {
        if parties <= LEAF_SIZE {
            return None;
        }
        let most = u32::try_from(available).unwrap_or(u32::MAX);
        (2..=parties.div_ceil(LEAF_SIZE).min(most))
            .rev()
            .find_map(|leaves| Shape::new(parties, leaves, available))
    }

    /// The number of leaves.
    pub(super) fn leaves(self) -> u32 {
        self.leaves
    }

    /// The number of node lines in use.
    pub(super) fn lines(self) -> usize {
        self.lines as usize
    }

    /// How many participants leaf `leaf` takes per generation.
    pub(super) fn leaf_capacity(self, leaf: u32) -> u32 {
        self.parties / self.leaves + u32::from(leaf < self.parties % self.leaves)
    }

    /// The leaf of the participant of rank `rank`: ranks fill the leaves in
    /// order, so distinct ranks `0..parties` fill every leaf exactly.
    pub(super) fn leaf_of(self, rank: u32) -> u32 {
        // A division less on the hot path for ranks (and CPUs) in range.
        let rank = if rank < self.parties {
            rank
        } else {
            rank % self.parties
        };
        let small = self.parties / self.leaves;
        let big_leaves = self.parties % self.leaves;
        let in_big = big_leaves * (small + 1);
        if rank < in_big {
            rank / (small + 1)
        } else {
            big_leaves + (rank - in_big) / small
        }
    }

    /// Participants counted at the leaves in `generation`: those waiting
    /// (or about to be released).
    pub(super) fn arrived(self, nodes: &[BarrierNode], generation: u32) -> u32 {
        (0..self.leaves)
            .map(|leaf| {
                let count = nodes[leaf as usize].count.load(Ordering::Acquire);
                arrivals(count, generation, self.leaf_capacity(leaf))
            })
            .sum()
    }
}

impl Barrier<'_> {
    /// Waits in generation `generation` of a barrier whose head records a
    /// tree of `leaves` leaves over `parties` participants.
    pub(super) fn wait_in_tree(
        &self,
        generation: u32,
        parties: u32,
        leaves: u32,
        deadline: Option<(std::time::Instant, std::time::Duration)>,
    ) -> Result<BarrierWaitResult> {
        let Some(shape) = Shape::new(parties, leaves, self.nodes.len()) else {
            // Set up with a tree this handle lacks, or a corrupt shape: this
            // participant cannot be counted, so the generation cannot
            // complete. Release everybody instead of hanging.
            self.poison();
            return Err(Error::BarrierPoisoned);
        };
        let nodes = &self.nodes[..shape.lines()];
        let first = shape.leaf_of(self.rank.unwrap_or_else(super::super::current_cpu));
        let mut leaf = first;
        let mut filled = loop {
            match nodes[leaf as usize].arrive(generation, shape.leaf_capacity(leaf)) {
                Arrival::Counted => break false,
                Arrival::Filled => break true,
                Arrival::Full => {}
            }
            leaf = if leaf + 1 == leaves { 0 } else { leaf + 1 };
            if leaf == first {
                // Every leaf is full: more callers than parties.
                self.poison();
                return Err(Error::BarrierPoisoned);
            }
        };
        // The nodes this participant filled, bottom-up: it releases them.
        let mut path = [0u32; MAX_LEVELS];
        let mut depth = 0;
        let (mut level_start, mut level_size, mut index) = (0, leaves, leaf);
        loop {
            let node = level_start + index;
            if !filled {
                let waited =
                    self.await_generation(generation, parties, deadline, Some(&nodes[node as usize]));
                if waited.is_ok() {
                    release(nodes, &path[..depth], generation);
                }
                return waited;
            }
            path[depth] = node;
            depth += 1;
            if level_size == 1 {
                // Filled the root: the leader.
                self.open_next(generation)?;
                release(nodes, &path[..depth], generation);
                return Ok(BarrierWaitResult { leader: true });
            }
            let parent = index / FAN_IN;
            let children = (level_size - parent * FAN_IN).min(FAN_IN);
            level_start += level_size;
            level_size = level_size.div_ceil(FAN_IN);
            index = parent;
            filled = match nodes[(level_start + index) as usize].arrive(generation, children) {
                Arrival::Counted => false,
                Arrival::Filled => true,
                Arrival::Full => {
                    // A full inner node: only a corrupt state does that.
                    self.poison();
                    return Err(Error::BarrierPoisoned);
                }
            };
        }
    }
}

/// Releases the nodes of `path` (bottom-up node numbers) into the
/// generation after `generation`, top-down: the higher a node, the more
/// sleepers may wait below it for the wake-ups that its waiters pass on.
fn release(nodes: &[BarrierNode], path: &[u32], generation: u32) {
    let next = next_generation(generation);
    for &node in path.iter().rev() {
        nodes[node as usize].release(next);
    }
}
