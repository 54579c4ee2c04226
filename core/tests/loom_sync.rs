//! Loom models of the in-segment barrier (central and combining tree), lock
//! and event word, and of the pool's post/done job cycle built on the event
//! word.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmpar-core --test loom_sync --release`.
//!
//! The futex is emulated without spurious wake-ups and timed waits never
//! time out (see `core/src/sync/futex.rs`), so a lost wake-up is reported by
//! loom as a deadlock. Data written before a barrier, inside the lock or
//! before a post lives in loom `UnsafeCell`s, so missing happens-before edges
//! are reported as data races.
#![cfg(loom)]

use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::thread;
use shmpar_core::Error;
use shmpar_core::sync::{Barrier, BarrierState, BarrierTree, Event, LockState, ShmLock, SpinPolicy};

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

/// How a model's participants count their arrivals.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// The head's counter (a handle without a tree).
    Central,
    /// A tree of this many leaves (inner nodes have two children under
    /// loom); participants pass their ranks when `ranked`, else they all
    /// start at leaf 0 (loom has no CPU number) and probe.
    Tree { leaves: u32, ranked: bool },
}

/// A barrier's state and tree, shared by a model's threads.
struct Shared {
    state: BarrierState,
    tree: BarrierTree,
    layout: Layout,
}

impl Shared {
    /// A barrier for `parties`, set up as `layout` says.
    fn new(parties: u32, layout: Layout) -> Arc<Self> {
        let shared = Arc::new(Self {
            state: BarrierState::new(),
            tree: BarrierTree::new(),
            layout,
        });
        let barrier = shared.handle(0, SpinPolicy::Never);
        match layout {
            Layout::Central => barrier.reset(parties).unwrap(),
            Layout::Tree { leaves, .. } => barrier.reset_with_leaves(parties, leaves).unwrap(),
        }
        shared
    }

    /// Participant `rank`'s handle.
    fn handle(&self, rank: u32, policy: SpinPolicy) -> Barrier<'_> {
        let barrier = Barrier::with_spin(&self.state, policy);
        match self.layout {
            Layout::Central => barrier,
            Layout::Tree { ranked: true, .. } => barrier.with_tree(&self.tree).with_rank(rank),
            Layout::Tree { ranked: false, .. } => barrier.with_tree(&self.tree),
        }
    }
}

/// `threads` participants pass `generations` generations. Each writes its
/// slot before every wait and reads every slot after it (a data race unless
/// the barrier orders them), and the leaders are counted per generation.
fn barrier_generations(threads: usize, generations: usize, policy: SpinPolicy, layout: Layout) {
    let shared = Shared::new(threads as u32, layout);
    let slots = Arc::new(Slots::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|me| {
            let shared = Arc::clone(&shared);
            let slots = Arc::clone(&slots);
            thread::spawn(move || {
                let barrier = shared.handle(me as u32, policy);
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
    assert!(!shared.handle(0, SpinPolicy::Never).is_poisoned());
}

#[test]
fn barrier_two_threads_two_generations() {
    checker(Some(4)).check(|| barrier_generations(2, 2, SpinPolicy::Never, Layout::Central));
}

#[test]
fn barrier_two_threads_with_a_spin() {
    checker(Some(4)).check(|| barrier_generations(2, 1, SpinPolicy::Fixed(1), Layout::Central));
}

#[test]
fn barrier_three_threads() {
    checker(Some(2)).check(|| barrier_generations(3, 1, SpinPolicy::Never, Layout::Central));
}

/// Two leaves of one and the root: each participant fills its leaf and
/// climbs; one sleeps on the root's word, and the leader releases it and
/// its own leaf. Over two generations (four waits), so the counts' tags
/// and the nodes' generations roll over.
#[test]
fn tree_two_threads_two_generations() {
    let layout = Layout::Tree {
        leaves: 2,
        ranked: true,
    };
    checker(Some(4)).check(move || barrier_generations(2, 2, SpinPolicy::Never, layout));
}

/// Both participants start at leaf 0: one of them finds it full and moves
/// on, taking its increment back or having it wiped by the filler.
#[test]
fn tree_two_threads_probing() {
    let layout = Layout::Tree {
        leaves: 2,
        ranked: false,
    };
    checker(Some(3)).check(move || barrier_generations(2, 1, SpinPolicy::Never, layout));
}

/// One leaf that is the root: the waiter sleeps on a node word, released by
/// the leader.
#[test]
fn tree_two_threads_one_leaf() {
    let layout = Layout::Tree {
        leaves: 1,
        ranked: true,
    };
    checker(Some(3)).check(move || barrier_generations(2, 2, SpinPolicy::Never, layout));
}

/// A spinning waiter in a tree (one spin: a yield and one more look).
#[test]
fn tree_two_threads_with_a_spin() {
    let layout = Layout::Tree {
        leaves: 2,
        ranked: true,
    };
    checker(Some(3)).check(move || barrier_generations(2, 1, SpinPolicy::Fixed(1), layout));
}

/// Three leaves, two inner nodes, the root: three levels, so a sleeper at
/// an inner node is woken by a participant that was itself woken, and data
/// passes through two climbs.
#[test]
fn tree_three_threads_three_levels() {
    let layout = Layout::Tree {
        leaves: 3,
        ranked: true,
    };
    checker(Some(2)).check(move || barrier_generations(3, 1, SpinPolicy::Never, layout));
}

/// Two leaves over three participants (one leaf of two, one of one): a
/// sleeper at a leaf, and a climber that sleeps at the root.
#[test]
fn tree_three_threads_shared_leaf() {
    let layout = Layout::Tree {
        leaves: 2,
        ranked: true,
    };
    checker(Some(2)).check(move || barrier_generations(3, 1, SpinPolicy::Never, layout));
}

/// Two waiters sleep (or are about to) while a third participant poisons:
/// both are released with an error, and a later wait fails at once.
fn poison_releases(layout: Layout) {
    let shared = Shared::new(3, layout);
    let waiters: Vec<_> = (0..2)
        .map(|rank| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || shared.handle(rank, SpinPolicy::Never).wait())
        })
        .collect();
    let barrier = shared.handle(2, SpinPolicy::Adaptive);
    barrier.poison();
    for waiter in waiters {
        assert!(matches!(waiter.join().unwrap(), Err(Error::BarrierPoisoned)));
    }
    assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
}

#[test]
fn poison_releases_every_waiter() {
    checker(Some(4)).check(|| poison_releases(Layout::Central));
}

/// In a tree of two leaves over three: one waiter at the leaf of two, one
/// that may climb to the root (when it arrives second at that leaf).
#[test]
fn poison_releases_every_waiter_in_a_tree() {
    let layout = Layout::Tree {
        leaves: 2,
        ranked: true,
    };
    checker(Some(3)).check(move || poison_releases(layout));
}

/// A zero timeout in the model times out as soon as the waiter would sleep.
/// Either the generation completed for both, or neither passed.
fn timeout_and_completion(layout: Layout) {
    let shared = Shared::new(2, layout);
    let other = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || shared.handle(1, SpinPolicy::Never).wait())
    };
    let mine = shared.handle(0, SpinPolicy::Never).wait_timeout(Duration::ZERO);
    let theirs = other.join().unwrap();
    match (&mine, &theirs) {
        (Ok(a), Ok(b)) => assert!(a.is_leader() != b.is_leader()),
        (Err(Error::Timeout { .. }), Err(Error::BarrierPoisoned)) => {}
        _ => panic!("inconsistent outcomes: {mine:?} and {theirs:?}"),
    }
}

#[test]
fn a_timeout_and_a_completion_agree() {
    checker(None).check(|| timeout_and_completion(Layout::Central));
}

/// The same in a tree: the timed-out waiter sleeps on the root's word, the
/// completion is decided on `epoch`, and the poison must reach the node.
#[test]
fn a_timeout_and_a_completion_agree_in_a_tree() {
    let layout = Layout::Tree {
        leaves: 2,
        ranked: true,
    };
    checker(None).check(move || timeout_and_completion(layout));
}

/// A participant times out while another sleeps in the tree (at the leaf
/// they share, or at the root when it climbed) and a third never comes: the
/// timeout's poison must reach the sleeper's node.
#[test]
fn a_timeout_releases_a_sleeper_in_a_tree() {
    let layout = Layout::Tree {
        leaves: 2,
        ranked: true,
    };
    checker(Some(3)).check(move || {
        let shared = Shared::new(3, layout);
        let patient = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || shared.handle(0, SpinPolicy::Never).wait())
        };
        let impatient = shared.handle(1, SpinPolicy::Never).wait_timeout(Duration::ZERO);
        assert!(matches!(impatient, Err(Error::Timeout { .. })), "{impatient:?}");
        assert!(matches!(patient.join().unwrap(), Err(Error::BarrierPoisoned)));
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

/// A waiter that goes straight to sleep (`spin` zero) and a poster that
/// publishes a value: the waiter is always woken (no lost wake-up, whether
/// the poster sees it registered or it sees the post) and reads the value
/// without a race. Exhaustive.
#[test]
fn event_wakes_a_sleeping_waiter() {
    checker(None).check(|| {
        let event = Arc::new(Event::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let waiter = {
            let event = Arc::clone(&event);
            let data = Arc::clone(&data);
            thread::spawn(move || {
                assert_eq!(event.wait_change(0, Duration::ZERO, None), Some(1));
                // SAFETY: written before the post we observed (loom checks it).
                data.with(|p| unsafe { *p })
            })
        };
        // SAFETY: the waiter reads `data` only after observing the post below.
        data.with_mut(|p| unsafe { *p = 42 });
        assert_eq!(event.post(), 1);
        assert_eq!(waiter.join().unwrap(), 42);
    });
}

/// One post wakes two waiters, one sleeping at once and one that spins
/// first (under loom: a yield and one more look).
#[test]
fn event_one_post_wakes_every_waiter() {
    checker(Some(3)).check(|| {
        let event = Arc::new(Event::new());
        let waiters: Vec<_> = [Duration::ZERO, Duration::from_micros(50)]
            .into_iter()
            .map(|spin| {
                let event = Arc::clone(&event);
                thread::spawn(move || event.wait_change(0, spin, None))
            })
            .collect();
        event.post();
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), Some(1));
        }
    });
}

/// A worker's status word: `PENDING` while idle or running, else the number
/// of the job it finished (the pool's status codes, made job-specific so a
/// stale status cannot pass for a fresh one).
const PENDING: u32 = 0;

/// The pool's control segment, reduced to what the post/done protocol
/// touches (`runtime/src/pool/README.md`).
struct Control {
    /// Job sequence number, incremented by the coordinator to post a job.
    post: Event,
    /// Workers that finished the current job: the coordinator's wake-up.
    done: Event,
    /// Non-zero: workers exit at the next post.
    shutdown: Event,
    /// Per worker: `PENDING`, or the job it finished.
    status: Vec<AtomicU32>,
    /// The job descriptor: written by the coordinator only while every
    /// worker is idle, published by the increment of `post`.
    job: UnsafeCell<u32>,
    /// Per worker: its result slot, written only by that worker between
    /// reading a post and storing its status.
    slots: Vec<UnsafeCell<u32>>,
}

impl Control {
    /// A zero-filled control block for `workers` workers.
    fn new(workers: usize) -> Self {
        Self {
            post: Event::new(),
            done: Event::new(),
            shutdown: Event::new(),
            status: (0..workers).map(|_| AtomicU32::new(PENDING)).collect(),
            job: UnsafeCell::new(0),
            slots: (0..workers).map(|_| UnsafeCell::new(0)).collect(),
        }
    }
}

/// What worker `rank` writes in its slot for `job`.
fn result_of(job: u32, rank: usize) -> u32 {
    job * 10 + rank as u32
}

/// A persistent worker: wait for a post, read the descriptor, write the
/// slot, store the status (Release), count itself done and wake the
/// coordinator; exit at shutdown. Returns how many jobs it ran.
fn serve(control: &Control, rank: usize, mut seen: u32, spin: Duration) -> u32 {
    let mut jobs = 0;
    loop {
        // No tick: only a change of the word returns.
        seen = control.post.wait_change(seen, spin, None).unwrap();
        if control.shutdown.load() != 0 {
            return jobs;
        }
        // SAFETY: the coordinator wrote the descriptor before the post we
        // observed (Acquire) and does not write it again before it has
        // acquired our status store below (loom checks both edges).
        let job = control.job.with(|p| unsafe { *p });
        // SAFETY: only this worker writes this slot, and the coordinator
        // touches it only after acquiring our status store below.
        control.slots[rank].with_mut(|p| unsafe { *p = result_of(job, rank) });
        control.status[rank].store(job, Ordering::Release);
        control.done.post();
        jobs += 1;
    }
}

/// The coordinator's side of one job, as the pool does it: prepare while
/// every worker is idle, post, then wait until every worker's status leaves
/// `PENDING`, sleeping on `done` in between; then check every status and
/// slot.
///
/// Completion is decided by the statuses, not by the `done` count, which
/// only wakes the coordinator. So the slot reads below are ordered only by
/// each worker's Release store of its status and the Acquire load that saw
/// it: the edge the model must check (waiting for `done` to reach the worker
/// count first would add a second edge and hide a missing one). A worker may
/// still be about to count itself done for this job when the next job resets
/// `done`; that late increment only causes a spare wake-up.
fn run_job(control: &Control, job: u32, spin: Duration) {
    // The pool's `prepare`: reset the done count and the statuses, write
    // the descriptor. (Slots are not cleared: the coordinator reads a slot
    // only after its worker's report for this job.)
    control.done.store(0);
    for status in &control.status {
        status.store(PENDING, Ordering::Relaxed);
    }
    // SAFETY: every worker is idle: each read the descriptor before its
    // status store, which the previous job's wait acquired, and none reads
    // it again until the post below.
    control.job.with_mut(|p| unsafe { *p = job });
    control.post.post();
    // The pool waits with a tick to look for dead workers in between; the
    // emulated futex never times out, so `None` cannot come, but it is
    // handled as the pool handles it.
    let mut seen = control.done.load();
    while control
        .status
        .iter()
        .any(|s| s.load(Ordering::Acquire) == PENDING)
    {
        seen = control
            .done
            .wait_change(seen, spin, Some(Duration::from_millis(10)))
            .unwrap_or(seen);
    }
    for (rank, status) in control.status.iter().enumerate() {
        assert_eq!(status.load(Ordering::Acquire), job, "worker {rank}'s status");
        // SAFETY: an Acquire load read this worker's Release store of its
        // status for this job, which follows its slot write.
        let result = control.slots[rank].with(|p| unsafe { *p });
        assert_eq!(result, result_of(job, rank), "worker {rank}'s slot");
    }
}

/// The pool's post/done cycle: a coordinator and `workers` workers, `jobs`
/// jobs and a shutdown. Loom checks that no post or done wake-up is lost (a
/// lost one deadlocks), that the descriptor and the slots are never accessed
/// by two sides without a happens-before edge, and that the coordinator sees
/// every worker's status and slot for the job it posted.
fn pool_cycle(workers: usize, jobs: u32, worker_spin: Duration, coordinator_spin: Duration) {
    let control = Arc::new(Control::new(workers));
    // A launched worker starts from the post count the coordinator read
    // before starting it.
    let seen = control.post.load();
    let handles: Vec<_> = (0..workers)
        .map(|rank| {
            let control = Arc::clone(&control);
            thread::spawn(move || serve(&control, rank, seen, worker_spin))
        })
        .collect();
    for job in 1..=jobs {
        run_job(&control, job, coordinator_spin);
    }
    control.shutdown.store(1);
    control.post.post();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), jobs);
    }
}

/// How long the pool's waiters spin before sleeping (its `SPIN`); under
/// loom a non-zero spin is one yield and one more look.
const SPIN: Duration = Duration::from_micros(50);

// Three threads over two jobs are affordable only with one preemption; the
// two smaller models below let loom go deeper into the same protocol.

#[test]
fn pool_two_workers_two_jobs() {
    // Workers that sleep at once make every post go through the futex.
    checker(Some(1)).check(|| pool_cycle(2, 2, Duration::ZERO, SPIN));
}

#[test]
fn pool_two_workers_one_job() {
    checker(Some(2)).check(|| pool_cycle(2, 1, Duration::ZERO, SPIN));
}

#[test]
fn pool_one_worker_two_jobs() {
    checker(Some(4)).check(|| pool_cycle(1, 2, SPIN, SPIN));
}
