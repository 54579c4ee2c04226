//! Barrier groups for latency measurements: `parties` participants that
//! meet at a barrier over and over, the caller being one of them.
//!
//! Process groups fork their other participants once, when the group
//! starts (so a group must start while the process is single-threaded:
//! before criterion, rayon or any other thread), and keep them until the
//! group drops. A round is: everybody meets once to learn the round's
//! iteration count from shared memory, then meets `iters` times; the caller
//! times the `iters` meetings. The per-phase latency is that time over
//! `iters`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmpar_core::sync::{Barrier, BarrierState, SpinPolicy};
use shmpar_core::{DType, Segment, SegmentOptions};

/// The command word's value that ends the participants.
const STOP: u64 = u64::MAX;

/// Which process-shared barrier a [`ProcessGroup`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessBarrier {
    /// The barrier in a shmpar segment's header, with its default adaptive
    /// spin (what `Ctx::barrier` uses).
    Segment,
    /// The same barrier code with [`SpinPolicy::Never`]: a pure futex
    /// barrier that sleeps at once.
    Futex,
    /// A `pthread_barrier_t` with `PTHREAD_PROCESS_SHARED` in a `MAP_SHARED`
    /// mapping (glibc's implementation: futex based, no spinning).
    Pthread,
}

impl ProcessBarrier {
    /// Every kind, in table order.
    pub const ALL: [ProcessBarrier; 3] = [
        ProcessBarrier::Segment,
        ProcessBarrier::Futex,
        ProcessBarrier::Pthread,
    ];

    /// The name tables and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            ProcessBarrier::Segment => "shmpar",
            ProcessBarrier::Futex => "futex",
            ProcessBarrier::Pthread => "pthread",
        }
    }

    /// The kind called `name`.
    pub fn parse(name: &str) -> Option<ProcessBarrier> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The words the participants share, in one anonymous `MAP_SHARED` page.
#[repr(C, align(64))]
struct Shared {
    state: BarrierState,
    command: AtomicU64,
    _pad: [u64; 7],
    pthread: libc::pthread_barrier_t,
}

/// A handle that waits at the group's barrier.
#[derive(Clone, Copy)]
enum Waiter<'a> {
    Shmpar(Barrier<'a>),
    Pthread(*mut libc::pthread_barrier_t),
}

impl Waiter<'_> {
    fn wait(&self) -> bool {
        match self {
            Waiter::Shmpar(b) => b.wait().is_ok(),
            Waiter::Pthread(b) => {
                // SAFETY: `b` points at a process-shared barrier initialized
                // for the group's parties, in a mapping that outlives the group.
                let rc = unsafe { libc::pthread_barrier_wait(*b) };
                rc == 0 || rc == libc::PTHREAD_BARRIER_SERIAL_THREAD
            }
        }
    }
}

/// `parties` participants, `parties - 1` of them forked processes.
pub struct ProcessGroup {
    kind: ProcessBarrier,
    parties: usize,
    shared: *mut Shared,
    segment: Option<Segment>,
    pids: Vec<i32>,
}

impl ProcessGroup {
    /// Forks the participants.
    ///
    /// # Errors
    /// When the process has other threads (forking then is unsafe), or a
    /// system call fails.
    pub fn start(kind: ProcessBarrier, parties: usize) -> std::io::Result<ProcessGroup> {
        let threads = crate::procfs::thread_count();
        if threads > 1 {
            return Err(std::io::Error::other(format!(
                "a process group must start in a single-threaded process; this one has {threads} threads"
            )));
        }
        let parties = parties.max(1);
        let len = size_of::<Shared>().next_multiple_of(4096);
        // SAFETY: a fresh anonymous shared mapping; no existing memory changes.
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
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let shared = ptr.cast::<Shared>();
        let mut group = ProcessGroup {
            kind,
            parties,
            shared,
            segment: None,
            pids: Vec::new(),
        };
        if kind == ProcessBarrier::Segment {
            let segment =
                Segment::create(&SegmentOptions::new(), DType::F64, &[1]).map_err(std::io::Error::other)?;
            segment
                .barrier()
                .reset(parties as u32)
                .map_err(std::io::Error::other)?;
            group.segment = Some(segment);
        } else if kind == ProcessBarrier::Futex {
            Barrier::new(group.state())
                .reset(parties as u32)
                .map_err(std::io::Error::other)?;
        } else {
            // SAFETY: the attribute and the barrier live in memory we own
            // (the attribute on the stack, the barrier in the mapping);
            // PTHREAD_PROCESS_SHARED is what a barrier in MAP_SHARED memory
            // used by several processes needs.
            unsafe {
                let mut attr: libc::pthread_barrierattr_t = std::mem::zeroed();
                libc::pthread_barrierattr_init(&mut attr);
                libc::pthread_barrierattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
                let rc = libc::pthread_barrier_init(&raw mut (*shared).pthread, &attr, parties as u32);
                libc::pthread_barrierattr_destroy(&mut attr);
                if rc != 0 {
                    return Err(std::io::Error::from_raw_os_error(rc));
                }
            }
        }
        let waiter = group.waiter();
        let parent = std::process::id() as i32;
        let mut pids = Vec::with_capacity(parties - 1);
        for _ in 1..parties {
            // SAFETY: the process is single-threaded (checked above), so the
            // child may do anything; it only uses the barrier, atomics and
            // `_exit`, all async-signal-safe, and never returns.
            let pid = unsafe { libc::fork() };
            match pid {
                -1 => {
                    let e = std::io::Error::last_os_error();
                    for &pid in &pids {
                        // SAFETY: killing and reaping our own children.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                            libc::waitpid(pid, std::ptr::null_mut(), 0);
                        }
                    }
                    return Err(e);
                }
                0 => group.serve(waiter, parent),
                pid => pids.push(pid),
            }
        }
        group.pids = pids;
        Ok(group)
    }

    fn state(&self) -> &BarrierState {
        // SAFETY: `shared` points at a live, page-aligned mapping at least
        // `size_of::<Shared>()` long; a zero-filled BarrierState is valid
        // (documented by shmpar-core), and only its atomics are written.
        unsafe { &(*self.shared).state }
    }

    fn command(&self) -> &AtomicU64 {
        // SAFETY: as in `state`; all-zero is a valid atomic.
        unsafe { &(*self.shared).command }
    }

    fn waiter(&self) -> Waiter<'_> {
        match self.kind {
            ProcessBarrier::Segment => match &self.segment {
                Some(segment) => Waiter::Shmpar(segment.barrier()),
                None => Waiter::Shmpar(Barrier::new(self.state())),
            },
            ProcessBarrier::Futex => Waiter::Shmpar(Barrier::with_spin(self.state(), SpinPolicy::Never)),
            // SAFETY: a field address inside the live mapping.
            ProcessBarrier::Pthread => Waiter::Pthread(unsafe { &raw mut (*self.shared).pthread }),
        }
    }

    /// A forked participant's life.
    fn serve(&self, waiter: Waiter<'_>, parent: i32) -> ! {
        // SAFETY: async-signal-safe system calls.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(0);
            }
        }
        loop {
            if !waiter.wait() {
                // SAFETY: ends this child without running the parent's destructors.
                unsafe { libc::_exit(1) }
            }
            let iters = self.command().load(Ordering::Acquire);
            if iters == STOP {
                // SAFETY: as above.
                unsafe { libc::_exit(0) }
            }
            for _ in 0..iters {
                waiter.wait();
            }
        }
    }

    /// Number of participants.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// One round: the time of `iters` meetings.
    pub fn round(&self, iters: u64) -> Duration {
        let waiter = self.waiter();
        self.command().store(iters, Ordering::Release);
        waiter.wait();
        let t = Instant::now();
        for _ in 0..iters {
            waiter.wait();
        }
        t.elapsed()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.pids.is_empty() {
            self.command().store(STOP, Ordering::Release);
            self.waiter().wait();
        }
        for &pid in &self.pids {
            let mut status = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        // SAFETY: unmapping the page mapped in `start`; nobody uses it now
        // (the children have exited).
        unsafe { libc::munmap(self.shared.cast(), size_of::<Shared>().next_multiple_of(4096)) };
    }
}

/// `parties` participants, `parties - 1` of them threads meeting at a
/// [`std::sync::Barrier`].
pub struct ThreadGroup {
    inner: Arc<(std::sync::Barrier, AtomicU64)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ThreadGroup {
    /// Starts the threads.
    pub fn start(parties: usize) -> ThreadGroup {
        let parties = parties.max(1);
        let inner = Arc::new((std::sync::Barrier::new(parties), AtomicU64::new(0)));
        let threads = (1..parties)
            .map(|_| {
                let inner = Arc::clone(&inner);
                std::thread::spawn(move || {
                    loop {
                        inner.0.wait();
                        let iters = inner.1.load(Ordering::Acquire);
                        if iters == STOP {
                            return;
                        }
                        for _ in 0..iters {
                            inner.0.wait();
                        }
                    }
                })
            })
            .collect();
        ThreadGroup { inner, threads }
    }

    /// One round: the time of `iters` meetings.
    pub fn round(&self, iters: u64) -> Duration {
        self.inner.1.store(iters, Ordering::Release);
        self.inner.0.wait();
        let t = Instant::now();
        for _ in 0..iters {
            self.inner.0.wait();
        }
        t.elapsed()
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        self.inner.1.store(STOP, Ordering::Release);
        self.inner.0.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Median per-phase latency in µs over `rounds` rounds of `iters` meetings.
pub fn median_phase_us(
    mut round: impl FnMut(u64) -> Duration,
    rounds: usize,
    iters: u64,
) -> crate::stats::Summary {
    round(iters.div_ceil(10).max(1));
    let samples: Vec<f64> = (0..rounds.max(1))
        .map(|_| round(iters).as_secs_f64() * 1e6 / iters as f64)
        .collect();
    crate::stats::Summary::of(&samples)
}
