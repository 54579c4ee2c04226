//! The barrier (central and combining tree) and the lock across real
//! processes.
//!
//! The states live in an anonymous `MAP_SHARED` mapping inherited over
//! `fork`, so the futexes are shared across address spaces exactly as in a
//! segment. A child of this multi-threaded test process only runs the closure
//! it is given, which sticks to async-signal-safe work (atomics, futexes,
//! `clock_gettime`, `open`/`read` of `/proc`), and leaves with `_exit`.
//! Children arm `alarm` so a bug kills them instead of hanging, and the
//! parent reaps every child by a deadline, killing stragglers; nothing here
//! leaves a zombie behind, even when an assertion fails.
#![cfg(not(loom))]

use std::cell::UnsafeCell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmpar_core::Error;
use shmpar_core::sync::{Barrier, BarrierState, BarrierTree, LockState, ShmLock, SpinPolicy};

/// Seconds after which a child that should long be done kills itself.
const CHILD_ALARM_SECS: u32 = 60;
/// How long the parent waits for its children before killing them.
const REAP_DEADLINE: Duration = Duration::from_secs(90);
/// A timeout generous enough that only a bug can reach it.
const GENEROUS: Duration = Duration::from_secs(30);

/// A zero-filled anonymous shared mapping holding one `T`.
struct SharedMapping<T> {
    ptr: *mut T,
}

impl<T> SharedMapping<T> {
    /// # Safety
    ///
    /// * All-zero bytes must be a valid `T` (here: atomics, `UnsafeCell`s of
    ///   integers, and the sync states, which are zero-valid by contract).
    unsafe fn zeroed() -> Self {
        let len = std::mem::size_of::<T>();
        assert!(std::mem::align_of::<T>() <= 4096);
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap failed");
        Self { ptr: ptr.cast() }
    }

    fn get(&self) -> &T {
        // SAFETY: the mapping is page-aligned, `size_of::<T>()` long,
        // zero-filled (a valid `T` per `zeroed`'s contract), shared only
        // through `&T`, and lives as long as `self`.
        unsafe { &*self.ptr }
    }
}

impl<T> Drop for SharedMapping<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from mmap with this length and is unmapped once;
        // no reference from `get` outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), std::mem::size_of::<T>()) };
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
    /// Still running at the deadline, so killed by the parent.
    Straggler,
}

/// Children of one test; dropping it kills and reaps whatever is left, so
/// a failed assertion in the parent leaves no zombie and no orphan.
struct Children {
    pids: Vec<libc::pid_t>,
}

impl Children {
    fn new() -> Self {
        Self { pids: Vec::new() }
    }

    /// Forks a child that runs `body` and exits with its return value (101
    /// if it panicked).
    fn spawn(&mut self, body: impl FnOnce() -> i32) -> libc::pid_t {
        // SAFETY: the child runs only `body`, which by this file's rule does
        // async-signal-safe work, then `_exit`s without running destructors
        // or returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: alarm only arms a timer; the default SIGALRM action
            // terminates the child if it is still running then.
            unsafe { libc::alarm(CHILD_ALARM_SECS) };
            let code = std::panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(101);
            // SAFETY: _exit ends the child at once; nothing is left to run.
            unsafe { libc::_exit(code) };
        }
        self.pids.push(pid);
        pid
    }

    /// Waits for `pid` (one of ours) until `deadline`, then kills it.
    fn reap(&mut self, pid: libc::pid_t, deadline: Instant) -> Exit {
        let index = self.pids.iter().position(|&p| p == pid).expect("not our child");
        let exit = reap_one(pid, deadline);
        self.pids.swap_remove(index);
        exit
    }

    /// Reaps every remaining child, in spawn order.
    fn reap_all(&mut self) -> Vec<Exit> {
        let deadline = Instant::now() + REAP_DEADLINE;
        let pids = std::mem::take(&mut self.pids);
        pids.into_iter().map(|pid| reap_one(pid, deadline)).collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: `pid` is our unreaped child, so it cannot be reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for pid in std::mem::take(&mut self.pids) {
            reap_one(pid, Instant::now());
        }
    }
}

/// Polls `waitpid(pid)` until `deadline`; past it, SIGKILLs and reaps.
fn reap_one(pid: libc::pid_t, deadline: Instant) -> Exit {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; `pid` is our child.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if ret == pid {
            break;
        }
        assert!(ret == 0, "waitpid failed");
        if Instant::now() >= deadline {
            // SAFETY: `pid` is our unreaped child. The blocking waitpid then
            // returns promptly: SIGKILL cannot be caught.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Exit::Straggler;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    }
}

/// Spins (politely) until `condition` holds; false if it never did.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + GENEROUS;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

const MAX_ROUNDS: usize = 20_000;

/// Per-round arrival and leader counters next to the barrier.
#[repr(C)]
struct BarrierArena {
    barrier: BarrierState,
    tree: BarrierTree,
    arrivals: [AtomicU32; MAX_ROUNDS],
    leaders: [AtomicU32; MAX_ROUNDS],
    started: AtomicU32,
}

fn barrier_arena() -> SharedMapping<BarrierArena> {
    // SAFETY: BarrierArena is atomics, a BarrierState and a BarrierTree:
    // all zero-valid.
    unsafe { SharedMapping::zeroed() }
}

/// How the participants of a test hold their handles.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// No tree: the central counter.
    Central,
    /// The tree, each participant with its rank.
    Ranked,
    /// The tree, each participant starting from its CPU.
    Unranked,
}

impl BarrierArena {
    /// Participant `rank`'s handle.
    fn handle(&self, kind: Kind, policy: SpinPolicy, rank: u32) -> Barrier<'_> {
        let barrier = Barrier::with_spin(&self.barrier, policy);
        match kind {
            Kind::Central => barrier,
            Kind::Ranked => barrier.with_tree(&self.tree).with_rank(rank),
            Kind::Unranked => barrier.with_tree(&self.tree),
        }
    }
}

// Exit codes of barrier children.
const OK: i32 = 0;
const WAIT_FAILED: i32 = 2;
const PASSED_EARLY: i32 = 3;
const NOT_POISONED: i32 = 4;
const NO_TIMEOUT: i32 = 5;

/// `processes` processes pass `rounds` generations; each increments the
/// round's arrival counter before waiting and, after, checks that everybody
/// arrived (a barrier that lets anyone through early fails this).
fn barrier_rounds(processes: u32, rounds: usize, policy: SpinPolicy, kind: Kind) {
    assert!(rounds <= MAX_ROUNDS);
    let arena = barrier_arena();
    let shared = arena.get();
    // Made before forking: the adaptive policy asks std for the CPU count.
    let barrier = shared.handle(kind, policy, 0);
    barrier.reset(processes).unwrap();
    let mut children = Children::new();
    for rank in 0..processes {
        children.spawn(|| {
            let barrier = shared.handle(kind, policy, rank);
            for round in 0..rounds {
                shared.arrivals[round].fetch_add(1, Ordering::Relaxed);
                match barrier.wait_timeout(GENEROUS) {
                    Ok(result) if result.is_leader() => {
                        shared.leaders[round].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => return WAIT_FAILED,
                }
                // Relaxed on purpose: the barrier itself must order this.
                if shared.arrivals[round].load(Ordering::Relaxed) != processes {
                    return PASSED_EARLY;
                }
            }
            OK
        });
    }
    let exits = children.reap_all();
    assert!(exits.iter().all(|&e| e == Exit::Code(OK)), "{exits:?}");
    for round in 0..rounds {
        assert_eq!(shared.leaders[round].load(Ordering::Relaxed), 1, "round {round}");
    }
    assert!(!barrier.is_poisoned());
}

#[test]
fn barrier_holds_two_processes_together() {
    barrier_rounds(2, 20_000, SpinPolicy::Adaptive, Kind::Central);
}

#[test]
fn barrier_holds_four_processes_together() {
    barrier_rounds(4, 10_000, SpinPolicy::Adaptive, Kind::Central);
}

#[test]
fn barrier_holds_eight_processes_together() {
    barrier_rounds(8, 5_000, SpinPolicy::Adaptive, Kind::Central);
}

#[test]
fn barrier_holds_processes_together_when_only_sleeping() {
    barrier_rounds(3, 5_000, SpinPolicy::Never, Kind::Central);
}

#[test]
fn a_tree_holds_ranked_processes_together() {
    barrier_rounds(8, 5_000, SpinPolicy::Adaptive, Kind::Ranked);
}

#[test]
fn a_tree_holds_unranked_processes_together() {
    barrier_rounds(6, 5_000, SpinPolicy::Adaptive, Kind::Unranked);
}

#[test]
fn a_tree_holds_sixteen_processes_together() {
    barrier_rounds(16, 2_000, SpinPolicy::Adaptive, Kind::Ranked);
}

#[test]
fn a_tree_of_sleepers_wakes_every_process() {
    // 21 processes: six leaves, two inner nodes and the root.
    barrier_rounds(21, 1_000, SpinPolicy::Never, Kind::Ranked);
}

/// `parties - 1` processes block at the barrier; the parent poisons it.
fn poison_releases_blocked_processes(parties: u32, kind: Kind) {
    let arena = barrier_arena();
    let shared = arena.get();
    let barrier = shared.handle(kind, SpinPolicy::Adaptive, 0);
    barrier.reset(parties).unwrap();
    let mut children = Children::new();
    for rank in 1..parties {
        children.spawn(|| {
            shared.started.fetch_add(1, Ordering::Relaxed);
            match shared.handle(kind, SpinPolicy::Adaptive, rank).wait() {
                Err(Error::BarrierPoisoned) => OK,
                Ok(_) => NOT_POISONED,
                Err(_) => WAIT_FAILED,
            }
        });
    }
    assert!(eventually(
        || shared.started.load(Ordering::Relaxed) == parties - 1
    ));
    // The runtime's diagnosis waits for every live participant to arrive.
    assert!(eventually(|| barrier.arrived() == parties - 1));
    barrier.poison();
    let exits = children.reap_all();
    assert_eq!(exits, vec![Exit::Code(OK); parties as usize - 1]);
    assert!(barrier.is_poisoned());
    assert!(matches!(barrier.wait(), Err(Error::BarrierPoisoned)));
}

#[test]
fn poison_releases_every_blocked_process() {
    poison_releases_blocked_processes(4, Kind::Central);
}

#[test]
fn poison_releases_every_blocked_process_in_a_tree() {
    poison_releases_blocked_processes(12, Kind::Ranked);
}

/// One of `parties` is killed before it arrives; one participant waits with
/// a timeout, the others without.
fn a_killed_participant_is_timed_out(parties: u32, kind: Kind) {
    let arena = barrier_arena();
    let shared = arena.get();
    let barrier = shared.handle(kind, SpinPolicy::Adaptive, 0);
    barrier.reset(parties).unwrap();
    let mut children = Children::new();
    let doomed = children.spawn(|| {
        // Never arrives: it is killed first.
        loop {
            // SAFETY: pause only sleeps until a signal.
            unsafe { libc::pause() };
        }
    });
    let impatient = children.spawn(|| {
        match shared
            .handle(kind, SpinPolicy::Adaptive, 1)
            .wait_timeout(Duration::from_millis(200))
        {
            Err(Error::Timeout { .. }) => OK,
            Err(Error::BarrierPoisoned) => NO_TIMEOUT,
            _ => WAIT_FAILED,
        }
    });
    let patient: Vec<_> = (2..parties)
        .map(|rank| {
            children.spawn(|| match shared.handle(kind, SpinPolicy::Adaptive, rank).wait() {
                Err(Error::BarrierPoisoned) => OK,
                Ok(_) => NOT_POISONED,
                Err(_) => WAIT_FAILED,
            })
        })
        .collect();
    // SAFETY: `doomed` is our unreaped child.
    unsafe { libc::kill(doomed, libc::SIGKILL) };
    let deadline = Instant::now() + REAP_DEADLINE;
    assert_eq!(children.reap(doomed, deadline), Exit::Signal(libc::SIGKILL));
    assert_eq!(children.reap(impatient, deadline), Exit::Code(OK));
    for pid in patient {
        assert_eq!(children.reap(pid, deadline), Exit::Code(OK));
    }
    assert!(barrier.is_poisoned());
}

#[test]
fn a_killed_participant_makes_a_timed_wait_fail_and_poison_the_rest() {
    a_killed_participant_is_timed_out(3, Kind::Central);
}

#[test]
fn a_killed_participant_makes_a_timed_wait_in_a_tree_poison_the_rest() {
    a_killed_participant_is_timed_out(9, Kind::Ranked);
}

#[test]
fn the_coordinator_poisons_when_it_reaps_a_dead_participant() {
    let arena = barrier_arena();
    let shared = arena.get();
    let barrier = Barrier::new(&shared.barrier);
    barrier.reset(3).unwrap();
    let mut children = Children::new();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            children.spawn(|| match barrier.wait() {
                Err(Error::BarrierPoisoned) => OK,
                Ok(_) => NOT_POISONED,
                Err(_) => WAIT_FAILED,
            })
        })
        .collect();
    // SAFETY: _exit ends the child at once.
    let crashing = children.spawn(|| unsafe { libc::_exit(9) });
    let deadline = Instant::now() + REAP_DEADLINE;
    assert_eq!(children.reap(crashing, deadline), Exit::Code(9));
    // What a coordinator does on reaping a worker that died mid-phase.
    barrier.poison();
    for waiter in waiters {
        assert_eq!(children.reap(waiter, deadline), Exit::Code(OK));
    }
}

/// The lock and a plain, non-atomic counter it protects.
#[repr(C)]
struct LockArena {
    lock: LockState,
    counter: UnsafeCell<u64>,
    held: AtomicU32,
}

// SAFETY: `counter` is only touched under `lock`, or by the parent after
// every child has been reaped.
unsafe impl Sync for LockArena {}

fn lock_arena() -> SharedMapping<LockArena> {
    // SAFETY: LockArena is a LockState, an integer cell and an atomic: all
    // zero-valid.
    unsafe { SharedMapping::zeroed() }
}

// Exit codes of lock children.
const LOCK_FAILED: i32 = 2;
const SAW_A_DEATH: i32 = 3;

#[test]
fn lock_excludes_four_processes() {
    const PROCESSES: u64 = 4;
    const ROUNDS: u64 = 20_000;
    let arena = lock_arena();
    let shared = arena.get();
    let mut children = Children::new();
    for _ in 0..PROCESSES {
        children.spawn(|| {
            let lock = ShmLock::new(&shared.lock);
            for _ in 0..ROUNDS {
                let Ok(guard) = lock.lock_timeout(GENEROUS) else {
                    return LOCK_FAILED;
                };
                if guard.previous_owner_died() {
                    return SAW_A_DEATH;
                }
                // SAFETY: the lock is held; volatile keeps the increment a
                // real read and write that a broken lock would interleave.
                unsafe {
                    let p = shared.counter.get();
                    p.write_volatile(p.read_volatile() + 1);
                }
            }
            OK
        });
    }
    let exits = children.reap_all();
    assert_eq!(exits, vec![Exit::Code(OK); PROCESSES as usize]);
    // SAFETY: every child has been reaped; nobody else touches the counter.
    assert_eq!(unsafe { *shared.counter.get() }, PROCESSES * ROUNDS);
    assert!(ShmLock::new(&shared.lock).try_lock().unwrap().is_some());
}

/// Forks a child that takes the lock and then either sleeps until killed
/// (`exit_code == None`) or `_exit`s holding it.
fn spawn_holder(children: &mut Children, shared: &LockArena, exit_code: Option<i32>) -> i32 {
    children.spawn(|| {
        let Ok(guard) = ShmLock::new(&shared.lock).lock_timeout(GENEROUS) else {
            return LOCK_FAILED;
        };
        // Dying without unlocking: the guard is never dropped.
        std::mem::forget(guard);
        shared.held.store(1, Ordering::Release);
        match exit_code {
            // SAFETY: _exit ends the child at once.
            Some(code) => unsafe { libc::_exit(code) },
            None => loop {
                // SAFETY: pause only sleeps until a signal.
                unsafe { libc::pause() };
            },
        }
    })
}

#[test]
fn a_holder_killed_but_not_yet_reaped_is_recovered_from() {
    let arena = lock_arena();
    let shared = arena.get();
    let mut children = Children::new();
    let holder = spawn_holder(&mut children, shared, None);
    assert!(eventually(|| shared.held.load(Ordering::Acquire) == 1));
    let lock = ShmLock::new(&shared.lock);
    assert!(
        lock.try_lock().unwrap().is_none(),
        "the live holder lost the lock"
    );
    // SAFETY: `holder` is our unreaped child.
    unsafe { libc::kill(holder, libc::SIGKILL) };
    // The holder is a zombie until reaped: it must count as dead already.
    let guard = lock.lock_timeout(GENEROUS).unwrap();
    assert!(guard.previous_owner_died());
    drop(guard);
    let deadline = Instant::now() + REAP_DEADLINE;
    assert_eq!(children.reap(holder, deadline), Exit::Signal(libc::SIGKILL));
    assert!(!lock.lock().unwrap().previous_owner_died());
}

#[test]
fn a_holder_that_exited_and_was_reaped_is_recovered_from() {
    let arena = lock_arena();
    let shared = arena.get();
    let mut children = Children::new();
    let holder = spawn_holder(&mut children, shared, Some(0));
    let deadline = Instant::now() + REAP_DEADLINE;
    assert_eq!(children.reap(holder, deadline), Exit::Code(0));
    assert_eq!(shared.held.load(Ordering::Acquire), 1);
    let lock = ShmLock::new(&shared.lock);
    let guard = lock.lock_timeout(GENEROUS).unwrap();
    assert!(guard.previous_owner_died());
}

#[test]
fn a_waiting_process_takes_over_from_a_holder_that_dies() {
    let arena = lock_arena();
    let shared = arena.get();
    let mut children = Children::new();
    let holder = spawn_holder(&mut children, shared, None);
    assert!(eventually(|| shared.held.load(Ordering::Acquire) == 1));
    // A second process blocks in lock() behind the live holder.
    let waiter = children.spawn(|| match ShmLock::new(&shared.lock).lock_timeout(GENEROUS) {
        Ok(guard) if guard.previous_owner_died() => OK,
        Ok(_) => 1,
        Err(_) => LOCK_FAILED,
    });
    // SAFETY: `holder` is our unreaped child.
    unsafe { libc::kill(holder, libc::SIGKILL) };
    let deadline = Instant::now() + REAP_DEADLINE;
    assert_eq!(children.reap(holder, deadline), Exit::Signal(libc::SIGKILL));
    assert_eq!(children.reap(waiter, deadline), Exit::Code(OK));
}
