//! The process-shared event word: a `u32` that posters change and waiters
//! wait to see change, spinning first and then sleeping on its shared futex.
//!
//! # Protocol and memory ordering
//!
//! (The design note `README.md` beside this file tells the same story at
//! more length.)
//!
//! * A poster changes `word` (an AcqRel increment, or a Release store), then
//!   issues a SeqCst fence and loads `sleepers`. Only if it is non-zero does it
//!   call `FUTEX_WAKE` for every sleeper: when every waiter is still spinning,
//!   a post is one atomic increment and a fence, no system call.
//! * A waiter first spins on `word` (Acquire), yielding the CPU every 16th
//!   iteration, until it changes or the spin time is over. Then it registers
//!   itself (`sleepers += 1`), issues a SeqCst fence, and re-checks `word`;
//!   only if the word still holds the value it saw does it `FUTEX_WAIT` on it
//!   with that value expected. Afterwards it unregisters (`sleepers -= 1`).
//! * No lost wake-up: this is the store-buffering (Dekker) pattern. The two
//!   SeqCst fences are totally ordered. If the poster's fence comes first,
//!   the waiter's re-check (after its own fence) must see the poster's change
//!   of `word`, and it does not sleep. If the waiter's fence comes first, the
//!   poster's load of `sleepers` (after its fence) must see the waiter's
//!   registration, so the poster wakes; the kernel compares the word and
//!   queues the waiter atomically with respect to `FUTEX_WAKE`, so a wake that
//!   comes before the waiter is queued makes its `FUTEX_WAIT` fail with
//!   `EAGAIN` instead. Release/Acquire alone cannot rule out both sides
//!   reading the old value of the *other* word; that is why the fences are
//!   SeqCst.
//! * The fences are `fence(SeqCst)` rather than SeqCst loads and RMWs because
//!   the fence rule is what the argument needs on both sides, and because loom
//!   models SeqCst fences exactly but treats SeqCst accesses as AcqRel (it
//!   would report a lost wake-up that cannot happen). On x86 the waiter's
//!   extra fence costs a few cycles on the path to a system call; the
//!   poster's is the one the pool always had.
//! * Data: the poster's writes before a post happen-before everything a waiter
//!   does after it observes the post's value (or a later one) with the
//!   Acquire loads of `word`. Increments are RMWs, so they continue one
//!   another's release sequences: observing the `n`-th increment also makes
//!   the writes before all `n - 1` earlier ones visible.

use std::time::Duration;
#[cfg(not(loom))]
use std::time::Instant;

use super::atomic::{AtomicU32, Ordering, fence};
use super::futex::{self, WaitOutcome};

/// A spinning waiter yields the CPU once every this many iterations, so a
/// spinner never holds the core that the process it waits for needs.
#[cfg_attr(loom, allow(dead_code))]
const YIELD_EVERY: u32 = 16;

/// A word that changes when something happens, for processes: the pool's
/// "job posted" and "worker done" signals.
///
/// Posters change the word with [`post`](Self::post) (an increment) or
/// [`store`](Self::store); waiters call [`wait_change`](Self::wait_change)
/// with the value they last saw. A waiter spins for a while, then sleeps on
/// the word's *shared* futex; a poster makes the wake-up system call only
/// when some waiter sleeps. Everything a poster wrote before changing the
/// word is visible to a waiter once it sees the new value (or a later one).
///
/// The event is one 64-byte cache line (its hot word never shares a line
/// with other data), `#[repr(C)]`, and all-zero bytes are a valid fresh
/// state (word 0, nobody sleeping), so it can be placed in a zero-filled
/// shared segment and used by every process that maps it, at any address.
///
/// Waiters compare for equality with the value they saw: an event that
/// returns to that value before a waiter looks (2^32 increments, or a
/// [`store`](Self::store) back) goes unnoticed. The pool's protocol never
/// does that; see `runtime/src/pool/README.md`.
///
/// Every operation is async-signal-safe (atomics, `clock_gettime`,
/// `sched_yield`, `futex`; no allocation, no lock), so a child forked from a
/// multi-threaded process may use it before `exec`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmpar_core::sync::Event;
///
/// let event = Event::new();
/// let seen = event.load();
/// std::thread::scope(|s| {
///     s.spawn(|| event.post());
///     // Spin up to 50 µs, then sleep until the post (no tick: no timeout).
///     let now = event.wait_change(seen, Duration::from_micros(50), None);
///     assert_eq!(now, Some(seen + 1));
/// });
/// // With a tick and nothing posted, the wait gives up after the tick.
/// assert_eq!(event.wait_change(event.load(), Duration::ZERO, Some(Duration::from_millis(1))), None);
/// ```
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Event {
    /// The futex word: a counter or a value that posters change.
    word: AtomicU32,
    /// Waiters registered to sleep (or about to sleep) in `FUTEX_WAIT` on
    /// `word`. A waiter killed while asleep stays counted; that only costs
    /// later posters a spare wake-up system call.
    sleepers: AtomicU32,
    _reserved: [u32; 14],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Event>() == 64);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<Event>() == 64);

impl Event {
    /// A fresh event, identical to all-zero bytes: word 0, nobody sleeping.
    ///
    /// Events inside a segment are not built with this (the segment is
    /// zero-filled); it is for events in ordinary memory and for tests.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            _reserved: [0; 14],
        }
    }

    /// A fresh event, identical to all-zero bytes: word 0, nobody sleeping.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            _reserved: [0; 14],
        }
    }

    /// The word's current value (Acquire: whatever was written before the
    /// post or store that produced it is visible afterwards).
    pub fn load(&self) -> u32 {
        self.word.load(Ordering::Acquire)
    }

    /// Adds one to the word (wrapping) and wakes every sleeping waiter, if
    /// any. Returns the new value.
    ///
    /// The increment is AcqRel: Release publishes the caller's earlier
    /// writes to whoever observes this value or a later one; Acquire lets
    /// the caller see what earlier posters published (the last of several
    /// workers to post knows the others have finished).
    pub fn post(&self) -> u32 {
        let new = self.word.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        self.wake_sleepers();
        new
    }

    /// Sets the word to `value` (Release) and wakes every sleeping waiter, if
    /// any: a reset (`store(0)`) or a flag (`store(1)`).
    ///
    /// A waiter that saw `value` before keeps waiting, and one that has not
    /// yet looked cannot tell the word ever held another value: store over a
    /// word that someone waits on only when the protocol rules that out (the
    /// pool resets its `done` counter only while nobody waits on it).
    pub fn store(&self, value: u32) {
        self.word.store(value, Ordering::Release);
        self.wake_sleepers();
    }

    /// The poster's half of the handshake: after changing `word`, wake the
    /// sleepers, making the system call only when there are some.
    fn wake_sleepers(&self) {
        // Pairs with the fence in `sleep_until_change`: either the waiter's
        // re-check sees our change of `word`, or we see its registration.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            futex::wake(&self.word, u32::MAX);
        }
    }

    /// Waits until the word differs from `seen`, and returns its new value
    /// (read with Acquire ordering, so what the poster wrote before
    /// changing it is visible).
    ///
    /// The waiter first spins for up to `spin` (`Duration::ZERO`: not at
    /// all), yielding the CPU every 16 iterations, then sleeps in the kernel.
    /// With a `tick`, a sleep lasts at most that long and `None` is returned
    /// when it ends without a change, so the caller can check on other things
    /// (the pool's coordinator looks for dead workers) and call again; with
    /// `None` it sleeps until the word changes.
    ///
    /// Signals and spurious wake-ups are absorbed (the sleep is restarted, for
    /// a full `tick`). A futex failure, which cannot happen for a valid
    /// event, degrades to polling: with a tick it returns `None` at once,
    /// without one it yields and looks again.
    pub fn wait_change(&self, seen: u32, spin: Duration, tick: Option<Duration>) -> Option<u32> {
        let now = self.word.load(Ordering::Acquire);
        if now != seen {
            return Some(now);
        }
        if let Some(now) = self.spin_until_change(seen, spin) {
            return Some(now);
        }
        self.sleep_until_change(seen, tick)
    }

    /// Spins on the word for up to `budget`; `None` if it did not change.
    #[cfg(not(loom))]
    fn spin_until_change(&self, seen: u32, budget: Duration) -> Option<u32> {
        if budget.is_zero() {
            return None;
        }
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let now = self.word.load(Ordering::Acquire);
            if now != seen {
                return Some(now);
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(YIELD_EVERY) {
                // Reading the clock every iteration would slow the spin.
                if start.elapsed() >= budget {
                    return None;
                }
                // A pool has one process more than it has workers (the
                // coordinator), so with a worker per core someone is always
                // runnable: yield, so the spinner never holds the core that
                // the process it waits for needs.
                super::yield_now();
            } else {
                super::spin_loop();
            }
        }
    }

    /// Loom does not model time: a non-zero budget is one yield and one more
    /// look, so models exercise the spin path without a state explosion.
    #[cfg(loom)]
    fn spin_until_change(&self, seen: u32, budget: Duration) -> Option<u32> {
        if budget.is_zero() {
            return None;
        }
        super::yield_now();
        let now = self.word.load(Ordering::Acquire);
        (now != seen).then_some(now)
    }

    /// The waiter's half of the handshake: register, re-check, sleep.
    fn sleep_until_change(&self, seen: u32, tick: Option<Duration>) -> Option<u32> {
        loop {
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            // Pairs with the fence in `wake_sleepers` (see the module docs):
            // a post we do not see below is one whose poster sees us.
            fence(Ordering::SeqCst);
            let outcome = if self.word.load(Ordering::Relaxed) == seen {
                futex::wait(&self.word, seen, tick)
            } else {
                Ok(WaitOutcome::ValueChanged)
            };
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            let now = self.word.load(Ordering::Acquire);
            if now != seen {
                return Some(now);
            }
            match outcome {
                Ok(WaitOutcome::TimedOut) => return None,
                Ok(WaitOutcome::Woken | WaitOutcome::ValueChanged | WaitOutcome::Interrupted) => {}
                Err(_) if tick.is_some() => return None,
                Err(_) => super::yield_now(),
            }
        }
    }
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::mem::offset_of;

    /// The offsets `core/src/sync/README.md` documents (and the pool's
    /// control segment relies on).
    #[test]
    fn layout_matches_the_design_note() {
        assert_eq!(offset_of!(Event, word), 0);
        assert_eq!(offset_of!(Event, sleepers), 4);
    }

    #[test]
    fn a_new_event_is_all_zero_bytes() {
        let event = Event::new();
        // SAFETY: `Event` is 64 bytes of initialized u32 atomics and u32
        // padding words (no padding bytes), so reading it as bytes is sound.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const event).cast::<u8>(), 64) };
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn post_counts_and_wraps() {
        let event = Event::new();
        assert_eq!(event.post(), 1);
        assert_eq!(event.post(), 2);
        assert_eq!(event.load(), 2);
        event.store(u32::MAX);
        assert_eq!(event.post(), 0);
        event.store(0);
        assert_eq!(event.load(), 0);
    }

    #[test]
    fn a_changed_word_returns_at_once() {
        let event = Event::new();
        event.post();
        assert_eq!(event.wait_change(0, Duration::ZERO, None), Some(1));
        assert_eq!(event.wait_change(0, Duration::from_secs(60), None), Some(1));
    }

    #[test]
    fn a_tick_without_change_returns_none_and_leaves_no_sleeper() {
        let event = Event::new();
        for spin in [Duration::ZERO, Duration::from_micros(20)] {
            assert_eq!(event.wait_change(0, spin, Some(Duration::from_millis(1))), None);
        }
        assert_eq!(event.sleepers.load(Ordering::Relaxed), 0);
    }

    /// Posts must wake sleepers (no spinning) and spinners alike, for many
    /// rounds; a lost wake-up would hang this test.
    fn ping_pong(spin: Duration) {
        const ROUNDS: u32 = 2000;
        let ping = Event::new();
        let pong = Event::new();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut seen = 0;
                for _ in 0..ROUNDS {
                    seen = ping.wait_change(seen, spin, None).unwrap();
                    pong.post();
                }
            });
            let mut seen = 0;
            for round in 1..=ROUNDS {
                assert_eq!(ping.post(), round);
                seen = pong.wait_change(seen, spin, None).unwrap();
                assert_eq!(seen, round);
            }
        });
        assert_eq!(ping.sleepers.load(Ordering::Relaxed), 0);
        assert_eq!(pong.sleepers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn sleeping_waiters_are_woken() {
        ping_pong(Duration::ZERO);
    }

    #[test]
    fn spinning_waiters_see_posts() {
        ping_pong(Duration::from_micros(50));
    }

    #[test]
    fn one_post_wakes_every_waiter() {
        let event = Event::new();
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..4)
                .map(|_| s.spawn(|| event.wait_change(0, Duration::ZERO, None)))
                .collect();
            // Give them time to sleep; correctness does not depend on it.
            std::thread::sleep(Duration::from_millis(5));
            event.post();
            for waiter in waiters {
                assert_eq!(waiter.join().unwrap(), Some(1));
            }
        });
    }

    #[test]
    fn a_waiter_with_a_tick_sees_a_later_post() {
        let event = Event::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let mut ticks = 0u32;
                loop {
                    match event.wait_change(0, Duration::ZERO, Some(Duration::from_micros(200))) {
                        Some(now) => return (now, ticks),
                        None => ticks += 1,
                    }
                }
            });
            std::thread::sleep(Duration::from_millis(2));
            event.post();
            let (now, _ticks) = waiter.join().unwrap();
            assert_eq!(now, 1);
        });
    }
}
