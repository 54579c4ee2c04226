//! The process-shared robust lock: a futex mutex whose word holds the
//! owner's thread id, so the next locker can tell when the owner died.
//!
//! # Protocol and memory ordering
//!
//! * `word` is 0 when free, else `owner_tid | WAITERS?`. Locking is a CAS
//!   from 0 (Acquire); unlocking is a CAS from `my_tid | bits` to 0 (Release),
//!   followed by `FUTEX_WAKE(1)` when `WAITERS` was set. Acquire/Release on
//!   the one word orders the protected data between owners.
//! * A contended locker sets `WAITERS` with a CAS and sleeps with that exact
//!   value expected, so an unlock that clears the word either precedes the
//!   CAS (which fails, and the locker re-reads) or sees the bit and wakes. A
//!   locker that has slept takes the lock *with* `WAITERS` set, because other
//!   sleepers may remain; the cost is at most one spare wake.
//! * Sleeps are bounded (2 ms, doubling to 64 ms). After each timeout the
//!   locker checks the owner: its thread id gone, a zombie, or running with a
//!   different start time than it published means the owner died, and the
//!   locker CASes the exact word it examined to its own id. The CAS makes the
//!   takeover exclusive and keeps a live owner from being displaced: the
//!   word cannot hold a dead thread's id and a live owner's at once.
//! * The owner publishes its start time like a seqlock: `owner_tid = 0`,
//!   Release fence, the two start words, then `owner_tid = tid` (Release). A
//!   checker reads `owner_tid` (Acquire), the start words, an Acquire fence,
//!   and `owner_tid` again; only if both reads name the word's owner does it
//!   trust the start time. Otherwise it only asks whether that thread exists.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::LockState;
use super::atomic::{Ordering, fence};
use super::futex::{self, WaitOutcome};
use crate::error::{Error, Result};

/// Bit 31 of the word: a locker may sleep in `FUTEX_WAIT` on it.
const WAITERS: u32 = 1 << 31;
/// Bits 0..=29 of the word: the owner's thread id (Linux ids are < 2^22).
const TID_MASK: u32 = (1 << 30) - 1;

/// Spin iterations before a contended locker sleeps.
const SPIN: u32 = if cfg!(loom) { 0 } else { 64 };
/// First sleep of a contended locker before it checks on the owner.
const FIRST_POLL: Duration = Duration::from_millis(2);
/// Longest sleep between two checks on the owner.
const LONGEST_POLL: Duration = Duration::from_millis(64);

/// A mutual-exclusion lock for processes, over a [`LockState`] that usually
/// lives in a shared segment: the counterpart of `multiprocessing.Lock`,
/// robust to its holder dying.
///
/// Ownership belongs to a *thread* (as with a pthread robust mutex): if the
/// owning thread exits or its process dies while holding the lock, the next
/// locker takes the lock over and learns it from
/// [`LockGuard::previous_owner_died`]. The data the lock protects may then
/// be half-updated; the new owner must repair or discard it.
///
/// Owners are identified by Linux thread ids, so every process using one lock
/// must live in the same PID namespace.
///
/// # Examples
///
/// ```
/// use shmpar_core::sync::{LockState, ShmLock};
///
/// # fn main() -> shmpar_core::Result<()> {
/// let state = LockState::new();
/// let lock = ShmLock::new(&state);
/// {
///     let guard = lock.lock()?;
///     assert!(!guard.previous_owner_died());
///     assert!(lock.try_lock()?.is_none());
/// }
/// assert!(lock.try_lock()?.is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ShmLock<'a> {
    state: &'a LockState,
}

/// Proof of holding a [`ShmLock`]; dropping it unlocks.
///
/// It cannot be sent to another thread: the lock belongs to the thread that
/// took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    state: &'a LockState,
    tid: u32,
    previous_owner_died: bool,
    /// Ownership is per thread: keep the guard `!Send`.
    _not_send: PhantomData<*const ()>,
}

impl<'a> ShmLock<'a> {
    /// A handle over `state`.
    pub fn new(state: &'a LockState) -> Self {
        Self { state }
    }

    /// Takes the lock, sleeping while another live thread holds it.
    ///
    /// If the holder died, the lock is taken over and the guard's
    /// [`previous_owner_died`](LockGuard::previous_owner_died) is `true`.
    ///
    /// # Errors
    ///
    /// [`Error::WouldDeadlock`] if the calling thread already holds the
    /// lock (waiting would never end); [`Error::Futex`] if the futex system
    /// call fails, which cannot happen on a supported kernel.
    pub fn lock(&self) -> Result<LockGuard<'a>> {
        self.lock_until(None)
    }

    /// Like [`lock`](Self::lock), but gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if a live owner still held the lock when the time
    /// ran out; otherwise as for [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'a>> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.lock_until(Some((deadline, timeout))),
            None => self.lock_until(None),
        }
    }

    /// Takes the lock if it is free or its holder died; never sleeps.
    ///
    /// Returns `Ok(None)` if a live thread, the calling one included, holds
    /// it. Checking on the holder reads `/proc`, so this is not free when the
    /// lock is held.
    ///
    /// # Errors
    ///
    /// None at present; the `Result` leaves room for system-call failures.
    pub fn try_lock(&self) -> Result<Option<LockGuard<'a>>> {
        let me = current_thread();
        let word = &self.state.word;
        match word.compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Ok(Some(self.acquired(me, false))),
            Err(current) if current & TID_MASK == me.tid => Ok(None),
            Err(current) => Ok(self.take_over_if_dead(me, current)),
        }
    }

    fn lock_until(&self, deadline: Option<(Instant, Duration)>) -> Result<LockGuard<'a>> {
        let me = current_thread();
        let word = &self.state.word;
        if word
            .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(self.acquired(me, false));
        }
        let mut spins = SPIN;
        let mut poll = FIRST_POLL;
        // Set once we have slept: others may sleep too, so take the lock
        // with WAITERS set and wake one of them at unlock.
        let mut waiters_flag = 0;
        let mut last_outcome = WaitOutcome::ValueChanged;
        loop {
            let current = word.load(Ordering::Relaxed);
            if current == 0 {
                match word.compare_exchange(0, me.tid | waiters_flag, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return Ok(self.acquired(me, false)),
                    Err(_) => continue,
                }
            }
            if current & TID_MASK == me.tid {
                return Err(Error::WouldDeadlock);
            }
            if spins > 0 {
                spins -= 1;
                super::spin_loop();
                continue;
            }
            let mut sleep = poll;
            if let Some((at, timeout)) = deadline {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    if last_outcome == WaitOutcome::Woken {
                        // We may have consumed the wake meant to hand the lock
                        // on: pass it to another sleeper.
                        futex::wake(word, 1);
                    }
                    return Err(Error::Timeout {
                        op: "lock",
                        after: timeout,
                    });
                }
                sleep = sleep.min(left);
            }
            let expected = current | WAITERS;
            if current != expected
                && word
                    .compare_exchange(current, expected, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            waiters_flag = WAITERS;
            last_outcome = futex::wait(word, expected, Some(sleep)).map_err(|source| Error::Futex {
                op: "futex wait on the lock",
                source,
            })?;
            if last_outcome == WaitOutcome::TimedOut {
                let current = word.load(Ordering::Relaxed);
                if current != 0 && current & TID_MASK != me.tid {
                    if let Some(guard) = self.take_over_if_dead(me, current) {
                        return Ok(guard);
                    }
                }
                poll = (poll * 2).min(LONGEST_POLL);
            }
        }
    }

    /// If the owner named by `current` (the word as just read) is dead, CAS
    /// the word from exactly `current` to ourselves.
    fn take_over_if_dead(&self, me: Identity, current: u32) -> Option<LockGuard<'a>> {
        let owner = current & TID_MASK;
        if owner == 0 || !owner_is_dead(self.state, owner) {
            return None;
        }
        // Keep WAITERS: other lockers may be asleep.
        self.state
            .word
            .compare_exchange(
                current,
                me.tid | (current & WAITERS),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| self.acquired(me, true))
    }

    /// Publishes the new owner's start time and makes the guard.
    fn acquired(&self, me: Identity, previous_owner_died: bool) -> LockGuard<'a> {
        let state = self.state;
        state.owner_tid.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        // Truncation intended: the start time is split across two words.
        state.owner_start_lo.store(me.start as u32, Ordering::Relaxed);
        state
            .owner_start_hi
            .store((me.start >> 32) as u32, Ordering::Relaxed);
        state.owner_tid.store(me.tid, Ordering::Release);
        LockGuard {
            state,
            tid: me.tid,
            previous_owner_died,
            _not_send: PhantomData,
        }
    }
}

impl LockGuard<'_> {
    /// Whether the lock was taken over from an owner that died holding it
    /// (pthread's `EOWNERDEAD`): the protected data may be inconsistent.
    pub fn previous_owner_died(&self) -> bool {
        self.previous_owner_died
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("tid", &self.tid)
            .field("previous_owner_died", &self.previous_owner_died)
            .finish()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let word = &self.state.word;
        let mut current = word.load(Ordering::Relaxed);
        loop {
            if current & TID_MASK != self.tid {
                // Taken over, so we were wrongly presumed dead: releasing
                // would unlock someone else's lock.
                return;
            }
            match word.compare_exchange_weak(current, 0, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if current & WAITERS != 0 {
            futex::wake(word, 1);
        }
    }
}

/// Who the calling thread is, as the lock records it.
#[derive(Clone, Copy, Debug)]
struct Identity {
    /// The thread id (never 0, fits `TID_MASK`).
    tid: u32,
    /// The thread's start time in clock ticks since boot (0 if unknown).
    start: u64,
}

/// The calling thread's identity, cached per thread and rechecked against
/// `gettid` on every call (a forked child inherits the cache but not the id).
#[cfg(not(loom))]
fn current_thread() -> Identity {
    thread_local! {
        static CACHED: Cell<(u32, u64)> = const { Cell::new((0, 0)) };
    }
    let tid = sys::gettid();
    let cached = CACHED.try_with(Cell::get).unwrap_or((0, 0));
    if cached.0 == tid {
        return Identity { tid, start: cached.1 };
    }
    let start = sys::read_stat(tid).map_or(0, |stat| stat.start_time);
    // Failing only during thread teardown, when the cache does not matter.
    let _ = CACHED.try_with(|c| c.set((tid, start)));
    Identity { tid, start }
}

/// Under loom a model thread gets a made-up id; start times are not modeled.
#[cfg(loom)]
fn current_thread() -> Identity {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    loom::thread_local! {
        static TID: Cell<u32> = Cell::new(
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % TID_MASK + 1,
        );
    }
    Identity {
        tid: TID.with(Cell::get),
        start: 0,
    }
}

/// Reads the start time `tid` published, if the publication is complete
/// and about `tid` (see the module docs).
fn published_start(state: &LockState, tid: u32) -> Option<u64> {
    if state.owner_tid.load(Ordering::Acquire) != tid {
        return None;
    }
    let lo = state.owner_start_lo.load(Ordering::Relaxed);
    let hi = state.owner_start_hi.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    if state.owner_tid.load(Ordering::Relaxed) != tid {
        return None;
    }
    let start = u64::from(lo) | (u64::from(hi) << 32);
    (start != 0).then_some(start)
}

/// Whether the thread `tid`, the lock's owner, has died.
///
/// Errs on the side of "alive": a wrong "dead" would break mutual exclusion,
/// a wrong "alive" only delays a locker (and `lock_timeout` bounds that).
#[cfg(not(loom))]
fn owner_is_dead(state: &LockState, tid: u32) -> bool {
    let published = published_start(state, tid);
    match sys::read_stat(tid) {
        Ok(stat) => {
            matches!(stat.state, b'Z' | b'X' | b'x')
                || published.is_some_and(|start| stat.start_time != 0 && start != stat.start_time)
        }
        // /proc may hide other users' processes (hidepid): ask the kernel.
        Err(libc::ENOENT | libc::ESRCH) => sys::thread_is_gone(tid),
        Err(_) => false,
    }
}

/// Liveness is not modeled under loom: every owner is alive.
#[cfg(loom)]
fn owner_is_dead(state: &LockState, tid: u32) -> bool {
    let _ = published_start(state, tid);
    false
}

/// What the lock reads of `/proc/<tid>/stat`.
#[cfg_attr(loom, allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    /// Field 3: the one-letter state (`R`, `S`, `Z`, ...).
    state: u8,
    /// Field 22: start time in clock ticks since boot.
    start_time: u64,
}

/// Parses `/proc/<tid>/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from
/// the *last* `)`.
#[cfg_attr(loom, allow(dead_code))]
fn parse_stat(contents: &[u8]) -> Option<Stat> {
    let close = contents.iter().rposition(|&b| b == b')')?;
    let mut fields = contents[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // Fields 4..=21 come between the state and the start time.
    let start = fields.nth(18)?;
    let start_time = std::str::from_utf8(start).ok()?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// The few system calls of the lock. Only async-signal-safe calls, no heap:
/// the lock must work in a child forked from a multi-threaded process.
#[cfg(not(loom))]
mod sys {
    use super::{Stat, parse_stat};

    /// The calling thread's id.
    pub(super) fn gettid() -> u32 {
        // SAFETY: gettid takes no arguments, cannot fail and touches no memory.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        u32::try_from(tid).unwrap_or(0) & super::TID_MASK
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Reads and parses `/proc/<tid>/stat`; `Err(errno)` if it cannot be read
    /// (`EINVAL` if it cannot be parsed).
    pub(super) fn read_stat(tid: u32) -> Result<Stat, i32> {
        // "/proc/" + at most 10 digits + "/stat" + NUL fits in 32 bytes.
        let mut path = [0u8; 32];
        let mut len = 0;
        for &b in b"/proc/" {
            path[len] = b;
            len += 1;
        }
        let mut digits = [0u8; 10];
        let mut n = tid;
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in digits[..count].iter().rev() {
            path[len] = d;
            len += 1;
        }
        for &b in b"/stat" {
            path[len] = b;
            len += 1;
        }
        // SAFETY: `path` is NUL-terminated (len <= 21 < 32, rest is zero)
        // and outlives the call.
        let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(errno());
        }
        let mut buf = [0u8; 1024];
        let mut filled = 0;
        let result = loop {
            // SAFETY: the pointer and length describe the unfilled tail of
            // `buf`, which is writable and outlives the call; `fd` is open.
            let n = unsafe { libc::read(fd, buf[filled..].as_mut_ptr().cast(), buf.len() - filled) };
            match n {
                0 => break Ok(filled),
                n if n > 0 => {
                    filled += n.unsigned_abs();
                    if filled == buf.len() {
                        break Ok(filled);
                    }
                }
                _ if errno() == libc::EINTR => {}
                _ => break Err(errno()),
            }
        };
        // SAFETY: `fd` was opened above and is closed exactly once.
        unsafe { libc::close(fd) };
        parse_stat(&buf[..result?]).ok_or(libc::EINVAL)
    }

    /// Whether the kernel knows no thread `tid` (`kill(tid, 0)` says `ESRCH`).
    pub(super) fn thread_is_gone(tid: u32) -> bool {
        let Ok(pid) = libc::pid_t::try_from(tid) else {
            return false;
        };
        // SAFETY: signal 0 sends nothing; it only checks that `pid` exists.
        let ret = unsafe { libc::kill(pid, 0) };
        ret == -1 && errno() == libc::ESRCH
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32 as StdAtomicU32;
    use std::sync::mpsc;

    #[test]
    fn parse_stat_counts_fields_from_the_last_parenthesis() {
        let line = b"1234 (we ird) (name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: b'S',
                start_time: 987_654
            })
        );
        assert_eq!(parse_stat(b"1234 (x) Z"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn the_calling_thread_is_alive_and_has_a_start_time() {
        let me = current_thread();
        assert_ne!(me.tid, 0);
        let stat = sys::read_stat(me.tid).unwrap();
        assert_eq!(stat.start_time, me.start);
        assert!(!matches!(stat.state, b'Z' | b'X'));
    }

    #[test]
    fn try_lock_fails_while_held_and_succeeds_after() {
        let state = LockState::new();
        let lock = ShmLock::new(&state);
        let guard = lock.try_lock().unwrap().unwrap();
        assert!(!guard.previous_owner_died());
        assert!(lock.try_lock().unwrap().is_none());
        drop(guard);
        assert!(lock.try_lock().unwrap().is_some());
        assert_eq!(state.word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn relocking_from_the_owner_thread_is_an_error_not_a_hang() {
        let state = LockState::new();
        let lock = ShmLock::new(&state);
        let _guard = lock.lock().unwrap();
        match lock.lock() {
            Err(Error::WouldDeadlock) => {}
            other => panic!("expected WouldDeadlock, got {other:?}"),
        }
    }

    #[test]
    fn threads_exclude_each_other() {
        const THREADS: u64 = 4;
        const ROUNDS: u64 = 2_000;
        let state = LockState::new();
        let total = std::cell::UnsafeCell::new(0u64);
        struct Shared<'a>(&'a std::cell::UnsafeCell<u64>);
        // SAFETY: every access to the cell happens under the lock under test.
        unsafe impl Sync for Shared<'_> {}
        let shared = Shared(&total);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    let shared = &shared;
                    let lock = ShmLock::new(&state);
                    for _ in 0..ROUNDS {
                        let guard = lock.lock_timeout(Duration::from_secs(60)).unwrap();
                        assert!(!guard.previous_owner_died());
                        // SAFETY: we hold the lock, so no other thread touches
                        // the cell; volatile keeps the read-modify-write real.
                        unsafe {
                            let p = shared.0.get();
                            p.write_volatile(p.read_volatile() + 1);
                        }
                    }
                });
            }
        });
        assert_eq!(total.into_inner(), THREADS * ROUNDS);
        assert_eq!(state.word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_live_holder_in_the_same_process_is_not_taken_over() {
        let state = Arc::new(LockState::new());
        let (locked_tx, locked_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                let _guard = ShmLock::new(&state).lock().unwrap();
                locked_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
        };
        locked_rx.recv().unwrap();
        let lock = ShmLock::new(&state);
        assert!(lock.try_lock().unwrap().is_none());
        // Long enough for several liveness checks (2 + 4 + 8 ms polls).
        assert!(matches!(
            lock.lock_timeout(Duration::from_millis(30)),
            Err(Error::Timeout { op: "lock", .. })
        ));
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        assert!(!lock.lock().unwrap().previous_owner_died());
    }

    #[test]
    fn a_thread_that_exits_holding_the_lock_is_recovered_from() {
        let state = Arc::new(LockState::new());
        let holder_tid = Arc::new(StdAtomicU32::new(0));
        {
            let state = Arc::clone(&state);
            let holder_tid = Arc::clone(&holder_tid);
            std::thread::spawn(move || {
                let guard = ShmLock::new(&state).lock().unwrap();
                holder_tid.store(current_thread().tid, Ordering::Relaxed);
                std::mem::forget(guard);
            })
            .join()
            .unwrap();
        }
        assert_eq!(
            state.word.load(Ordering::Relaxed),
            holder_tid.load(Ordering::Relaxed)
        );
        let lock = ShmLock::new(&state);
        let guard = lock.lock_timeout(Duration::from_secs(60)).unwrap();
        assert!(guard.previous_owner_died());
        drop(guard);
        let guard = lock.try_lock().unwrap().unwrap();
        assert!(!guard.previous_owner_died());
    }

    #[test]
    fn try_lock_recovers_from_a_dead_owner() {
        let state = LockState::new();
        let dead_tid = std::thread::spawn(|| current_thread().tid).join().unwrap();
        state.word.store(dead_tid, Ordering::Relaxed);
        let guard = ShmLock::new(&state).try_lock().unwrap().unwrap();
        assert!(guard.previous_owner_died());
    }

    #[test]
    fn a_reused_thread_id_is_told_apart_by_its_start_time() {
        // Pretend the owner is the (alive) calling thread, but published a
        // start time that is not this thread's: as after thread id reuse.
        let state = LockState::new();
        let me = current_thread();
        assert_ne!(me.start, 0);
        state.word.store(me.tid, Ordering::Relaxed);
        state.owner_start_lo.store(me.start as u32 ^ 1, Ordering::Relaxed);
        state
            .owner_start_hi
            .store((me.start >> 32) as u32, Ordering::Relaxed);
        state.owner_tid.store(me.tid, Ordering::Release);
        assert!(owner_is_dead(&state, me.tid));
        // With its true start time it is alive.
        state.owner_start_lo.store(me.start as u32, Ordering::Relaxed);
        assert!(!owner_is_dead(&state, me.tid));
        // With no publication for it, only existence counts: alive.
        state.owner_tid.store(0, Ordering::Release);
        assert!(!owner_is_dead(&state, me.tid));
    }

    #[test]
    fn a_timed_out_locker_leaves_the_lock_usable() {
        let state = LockState::new();
        let lock = ShmLock::new(&state);
        std::thread::scope(|s| {
            let guard = lock.lock().unwrap();
            s.spawn(|| {
                assert!(matches!(
                    ShmLock::new(&state).lock_timeout(Duration::from_millis(5)),
                    Err(Error::Timeout { .. })
                ));
            })
            .join()
            .unwrap();
            drop(guard);
        });
        // The waiter left WAITERS behind at most; the lock still works.
        assert!(!lock.lock().unwrap().previous_owner_died());
    }
}
