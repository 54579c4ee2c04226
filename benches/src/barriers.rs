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

use crate::os::{self, PthreadBarrier, SharedPages};

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
    pthread: PthreadBarrier,
}

/// A handle that waits at the group's barrier.
#[derive(Clone, Copy)]
enum Waiter<'a> {
    Shmpar(Barrier<'a>),
    Pthread(&'a PthreadBarrier),
}

impl Waiter<'_> {
    fn wait(&self) -> bool {
        match self {
            Waiter::Shmpar(b) => b.wait().is_ok(),
            Waiter::Pthread(b) => b.wait(),
        }
    }
}

/// `parties` participants, `parties - 1` of them forked processes.
pub struct ProcessGroup {
    kind: ProcessBarrier,
    parties: usize,
    segment: Option<Segment>,
    pids: Vec<i32>,
    /// Holds a [`Shared`]; declared last, so it is unmapped after the
    /// participants were stopped (in `drop`) and the segment dropped.
    pages: SharedPages,
}

impl ProcessGroup {
    /// Forks the participants.
    ///
    /// # Errors
    /// When the process has other threads (forking then is unsafe), or a
    /// system call fails.
    pub fn start(kind: ProcessBarrier, parties: usize) -> std::io::Result<ProcessGroup> {
        // Fail closed: a thread count that cannot be read may hide threads.
        match shmpar_core::os::thread_count() {
            Some(1) => {}
            threads => {
                return Err(std::io::Error::other(format!(
                    "a process group must start in a single-threaded process; this one has {}",
                    threads.map_or_else(
                        || "an unknown number of threads".to_owned(),
                        |n| format!("{n} threads")
                    )
                )));
            }
        }
        let parties = parties.max(1);
        let mut group = ProcessGroup {
            kind,
            parties,
            segment: None,
            pids: Vec::new(),
            pages: SharedPages::new(size_of::<Shared>())?,
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
            // SAFETY: the field lies in the group's pages, which stay mapped
            // as long as the group, and nobody waits on it yet.
            unsafe { PthreadBarrier::init(&raw mut (*group.shared()).pthread, parties as u32)? };
        }
        let waiter = group.waiter();
        let parent = std::process::id() as i32;
        let mut pids = Vec::with_capacity(parties - 1);
        for _ in 1..parties {
            // SAFETY: the process is single-threaded (checked above), so the
            // child may do anything; it only uses the barrier, atomics and
            // `_exit`, all async-signal-safe, and never returns.
            match unsafe { os::fork() } {
                Err(e) => {
                    for &pid in &pids {
                        os::kill_and_reap(pid);
                    }
                    return Err(e);
                }
                Ok(0) => group.serve(waiter, parent),
                Ok(pid) => pids.push(pid),
            }
        }
        group.pids = pids;
        Ok(group)
    }

    fn shared(&self) -> *mut Shared {
        self.pages.as_ptr().cast::<Shared>()
    }

    fn state(&self) -> &BarrierState {
        // SAFETY: the pages are a live, page-aligned mapping at least
        // `size_of::<Shared>()` long; a zero-filled BarrierState is valid
        // (documented by shmpar-core), and only its atomics are written.
        unsafe { &(*self.shared()).state }
    }

    fn command(&self) -> &AtomicU64 {
        // SAFETY: as in `state`; all-zero is a valid atomic.
        unsafe { &(*self.shared()).command }
    }

    fn waiter(&self) -> Waiter<'_> {
        match self.kind {
            ProcessBarrier::Segment => match &self.segment {
                Some(segment) => Waiter::Shmpar(segment.barrier()),
                None => Waiter::Shmpar(Barrier::new(self.state())),
            },
            ProcessBarrier::Futex => Waiter::Shmpar(Barrier::with_spin(self.state(), SpinPolicy::Never)),
            // SAFETY: inside the live pages; `start` set the barrier up for
            // pthread groups before any waiter was made.
            ProcessBarrier::Pthread => Waiter::Pthread(unsafe { &(*self.shared()).pthread }),
        }
    }

    /// A forked participant's life.
    fn serve(&self, waiter: Waiter<'_>, parent: i32) -> ! {
        os::die_with_parent(parent);
        loop {
            if !waiter.wait() {
                os::exit_now(1);
            }
            let iters = self.command().load(Ordering::Acquire);
            if iters == STOP {
                os::exit_now(0);
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
            os::reap(pid);
        }
        // The pages are unmapped after this, when the fields drop.
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
