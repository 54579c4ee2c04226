//! The futex system calls, and their loom emulation.
//!
//! Every futex here is a *shared* futex: the operations never carry
//! `FUTEX_PRIVATE_FLAG`, because waiter and waker are usually different
//! processes that map the same page at different addresses, and a private
//! futex is keyed by (address space, virtual address) instead of the
//! underlying page.
//!
//! Under `cfg(loom)` the kernel is replaced by a table of waiters behind a
//! loom `Mutex`, with one `Condvar`: `wait` compares the word and enqueues
//! itself under the mutex (as the kernel does under its hash-bucket lock), and
//! `wake` marks exactly the requested number of waiters on that word as woken.
//! The emulation has no spurious wake-ups and a timed wait never times out
//! (except a zero timeout, which times out at once after the comparison), so a
//! lost wake-up in a protocol shows up as a loom deadlock instead of being
//! papered over by a timeout.

use std::io;
use std::time::Duration;

use super::atomic::AtomicU32;

/// How a [`wait`] returned. Every outcome means "look at the word again".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken by a [`wake`] (or, outside loom, possibly spuriously).
    Woken,
    /// The word did not hold the expected value (`EAGAIN`).
    ValueChanged,
    /// A signal handler ran (`EINTR`); never under loom.
    #[cfg_attr(loom, allow(dead_code))]
    Interrupted,
    /// The relative timeout elapsed (`ETIMEDOUT`).
    TimedOut,
}

#[cfg(not(loom))]
pub use real::{wait, wake};

#[cfg(loom)]
pub use emulated::{wait, wake};

#[cfg(not(loom))]
mod real {
    use super::*;

    /// Sleeps while `*word == expected`, for at most `timeout` (forever when
    /// `None`), on the shared futex of `word`.
    ///
    /// # Errors
    ///
    /// Only for failures that cannot happen with a valid, aligned word
    /// (`EFAULT`, `EINVAL`, `ENOSYS`); the caller reports them.
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
        let timespec = timeout.map(|t| libc::timespec {
            tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
            // Always below 1e9, so it fits every c_long (32-bit ones too).
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let timespec_ptr = timespec
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY:
        // - `word.as_ptr()` is a valid, 4-aligned u32 for the duration of the
        //   call (it is borrowed); the kernel only reads it.
        // - `timespec_ptr` is null or points to `timespec`, alive until return.
        // - FUTEX_WAIT without FUTEX_PRIVATE_FLAG ignores uaddr2 and val3.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                timespec_ptr,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        if ret == 0 {
            return Ok(WaitOutcome::Woken);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => Ok(WaitOutcome::ValueChanged),
            Some(libc::EINTR) => Ok(WaitOutcome::Interrupted),
            Some(libc::ETIMEDOUT) => Ok(WaitOutcome::TimedOut),
            _ => Err(err),
        }
    }

    /// Wakes up to `count` sleepers of the shared futex of `word` and returns
    /// how many were woken.
    pub fn wake(word: &AtomicU32, count: u32) -> usize {
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        // SAFETY:
        // - `word.as_ptr()` is a valid, 4-aligned u32 (borrowed); FUTEX_WAKE
        //   does not even read it, it only hashes its page and offset.
        // - FUTEX_WAKE ignores the timeout, uaddr2 and val3 arguments.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                count,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        // FUTEX_WAKE can only fail for a bad address or operation, which a
        // borrowed AtomicU32 rules out; nobody was woken in that case.
        usize::try_from(ret).unwrap_or(0)
    }
}

#[cfg(loom)]
mod emulated {
    use super::*;
    use crate::sync::atomic::Ordering;
    use loom::sync::{Condvar, Mutex};

    struct Waiter {
        addr: usize,
        ticket: u64,
        woken: bool,
    }

    #[derive(Default)]
    struct Table {
        waiters: Vec<Waiter>,
        next_ticket: u64,
    }

    loom::lazy_static! {
        static ref KERNEL: (Mutex<Table>, Condvar) = (Mutex::new(Table::default()), Condvar::new());
    }

    /// Loom model of `FUTEX_WAIT` (see the module docs).
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<WaitOutcome> {
        let (mutex, condvar) = &*KERNEL;
        let mut table = mutex.lock().unwrap_or_else(|e| e.into_inner());
        // The kernel reads the word under the bucket lock with full ordering.
        if word.load(Ordering::SeqCst) != expected {
            return Ok(WaitOutcome::ValueChanged);
        }
        if timeout == Some(Duration::ZERO) {
            return Ok(WaitOutcome::TimedOut);
        }
        let addr = std::ptr::from_ref(word) as usize;
        let ticket = table.next_ticket;
        table.next_ticket += 1;
        table.waiters.push(Waiter {
            addr,
            ticket,
            woken: false,
        });
        loop {
            table = condvar.wait(table).unwrap_or_else(|e| e.into_inner());
            if let Some(pos) = table.waiters.iter().position(|w| w.ticket == ticket && w.woken) {
                table.waiters.remove(pos);
                return Ok(WaitOutcome::Woken);
            }
        }
    }

    /// Loom model of `FUTEX_WAKE`: wakes exactly `count` waiters on `word`.
    pub fn wake(word: &AtomicU32, count: u32) -> usize {
        let (mutex, condvar) = &*KERNEL;
        let mut table = mutex.lock().unwrap_or_else(|e| e.into_inner());
        let addr = std::ptr::from_ref(word) as usize;
        let mut woken = 0usize;
        for waiter in table.waiters.iter_mut().filter(|w| w.addr == addr && !w.woken) {
            if woken == count as usize {
                break;
            }
            waiter.woken = true;
            woken += 1;
        }
        if woken > 0 {
            condvar.notify_all();
        }
        woken
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn wait_on_a_changed_word_returns_at_once() {
        let word = AtomicU32::new(1);
        assert_eq!(wait(&word, 0, None).unwrap(), WaitOutcome::ValueChanged);
    }

    #[test]
    fn wait_times_out() {
        let word = AtomicU32::new(7);
        let got = wait(&word, 7, Some(Duration::from_millis(1))).unwrap();
        // A spurious wake-up is allowed by the futex contract; a mismatch is not.
        assert!(matches!(got, WaitOutcome::TimedOut | WaitOutcome::Woken));
    }

    #[test]
    fn wake_releases_a_sleeper() {
        let word = AtomicU32::new(0);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                while word.load(Ordering::Acquire) == 0 {
                    wait(&word, 0, None).unwrap();
                }
            });
            word.store(1, Ordering::Release);
            wake(&word, u32::MAX);
            sleeper.join().unwrap();
        });
    }
}
