//! Supervision: starting workers and waiting for their check-in, waiting
//! for a job while watching for dead or stranded workers, turning reports
//! into results or a failure, replacing the dead, and stopping.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shmpar_core::Segment;
use shmpar_core::chunk::chunk_range;
use shmpar_core::segment::Location;

use crate::dispatch::status;
use crate::error::{Cause, Error, PoolHealth, Result};
use crate::job::Schedule;
use crate::pool::control::{self, Identity, JobDesc, SPIN};
use crate::pool::launch::{self, Start, check_fork};
use crate::sys::{self, Exit};

/// How long a failed job waits for the surviving workers to notice before
/// it kills them.
const GRACE: Duration = Duration::from_millis(250);

/// How long a new worker may take to start serving.
const CHECK_IN: Duration = Duration::from_secs(30);

/// How long a fork pool waits for other threads to end before it replaces
/// workers (a cancelling thread that has just done its work).
const THREADS_SETTLE: Duration = Duration::from_millis(250);

/// How often a waiting coordinator checks that its workers are alive.
const TICK: Duration = Duration::from_millis(10);

/// The coordinator's state of a pool.
pub(crate) struct Inner {
    pub(crate) control: Segment,
    pub(crate) pids: Vec<i32>,
    pub(crate) start: Start,
    pub(crate) allow_threads: bool,
    pub(crate) broken: Option<String>,
    /// Arrays the workers may have mapped, to tell them when one is gone.
    pub(crate) sent: HashMap<Identity, Location>,
    pub(crate) desc: Box<JobDesc>,
    /// Every job's deadline, if any.
    pub(crate) job_timeout: Option<Duration>,
    /// Set by a [`crate::Canceller`] to end the job in progress.
    pub(crate) cancel: Arc<AtomicBool>,
}

/// How the workers of one job ended.
pub(crate) struct Outcome {
    /// Per rank: a process exit observed while waiting.
    exits: Vec<Option<Exit>>,
    /// A failure the coordinator diagnosed itself, reported before any
    /// worker's (their reports are only the consequences).
    diagnosis: Option<(usize, Cause)>,
    /// The job ran out of time or was cancelled: how long it had run, the
    /// ranks that had not finished, and whether it was a cancellation.
    stopped: Option<(Duration, Vec<usize>, bool)>,
}

impl Inner {
    /// Starts worker `rank` as a persistent worker.
    pub(crate) fn launch(&self, rank: usize) -> Result<i32> {
        let control = self.view().control();
        // The worker writes its pid here once it serves: its check-in.
        control.workers[rank].pid.store(0, Ordering::Relaxed);
        let seen = control.post.load();
        match self.start {
            Start::Fork => {
                check_fork(self.allow_threads)?;
                // SAFETY: single-threaded (checked above) or vouched for
                // (`allow_threads`).
                unsafe { launch::fork_worker(self.control.location(), rank, seen) }
            }
            Start::Spawn => launch::spawn_worker(self.control.location(), rank, seen),
        }
    }

    /// Waits until every worker reported, or died; kills stragglers a grace
    /// period after the first failure.
    pub(crate) fn wait_job(&mut self, n: usize, transient: &[i32]) -> Outcome {
        let view = self.view();
        let control = view.control();
        let pids: Vec<i32> = if transient.is_empty() {
            self.pids.clone()
        } else {
            transient.to_vec()
        };
        let status = |r: usize| control.workers[r].status.load(Ordering::Acquire);
        let mut exits: Vec<Option<Exit>> = vec![None; n];
        let mut failed_at: Option<Instant> = None;
        let mut diagnosis = None;
        let mut stopped = None;
        let started = Instant::now();
        let mut seen = control.done.load();
        loop {
            // A worker is settled once it reported, or once its process ended.
            let settled = (0..n)
                .filter(|&r| exits[r].is_some() || status(r) != status::PENDING)
                .count();
            if settled == n {
                break;
            }
            let cancelled = self.cancel.swap(false, Ordering::Relaxed);
            let late = self.job_timeout.is_some_and(|t| started.elapsed() > t);
            if stopped.is_none() && (cancelled || late) {
                // Kill whoever has not finished: a stopped process, an
                // endless loop, a worker waiting at the barrier for one of
                // those. The others then see the barrier poisoned.
                let unfinished: Vec<usize> = (0..n)
                    .filter(|&r| exits[r].is_none() && status(r) == status::PENDING)
                    .collect();
                self.control.barrier().poison();
                for &rank in &unfinished {
                    sys::kill(pids[rank], libc::SIGKILL);
                    exits[rank] = Some(sys::reap(pids[rank], Duration::from_secs(1)));
                }
                stopped = Some((started.elapsed(), unfinished, cancelled));
                continue;
            }
            if failed_at.is_none() && (0..n).any(|r| matches!(status(r), status::PANICKED | status::FAILED)) {
                failed_at = Some(Instant::now());
            }
            if failed_at.is_some_and(|t| t.elapsed() > GRACE) {
                for rank in 0..n {
                    if exits[rank].is_none() && status(rank) == status::PENDING {
                        sys::kill(pids[rank], libc::SIGKILL);
                        exits[rank] = Some(sys::reap(pids[rank], Duration::from_secs(1)));
                    }
                }
                continue;
            }
            if let Some(now) = control.done.wait_change(seen, SPIN, Some(TICK)) {
                seen = now;
                continue;
            }
            for rank in 0..n {
                if exits[rank].is_none() {
                    if let Ok(Some(exit)) = sys::try_wait(pids[rank]) {
                        exits[rank] = Some(exit);
                        // Whoever waits at the barrier for the dead worker
                        // must not wait forever.
                        self.control.barrier().poison();
                        failed_at.get_or_insert_with(Instant::now);
                    }
                }
            }
            if diagnosis.is_none() {
                diagnosis = self.stranded_at_barrier(n, &exits);
            }
        }
        Outcome {
            exits,
            diagnosis,
            stopped,
        }
    }

    /// Whether the job can never end because its kernel called the barrier
    /// a different number of times on different workers: every worker still
    /// running waits at the barrier, and one that finished will never come.
    /// If so, poisons the barrier (the waiters unwind) and names the worker
    /// that finished early.
    fn stranded_at_barrier(&self, n: usize, exits: &[Option<Exit>]) -> Option<(usize, Cause)> {
        let view = self.view();
        let control = view.control();
        let status = |r: usize| control.workers[r].status.load(Ordering::Acquire);
        let pending = (0..n)
            .filter(|&r| exits[r].is_none() && status(r) == status::PENDING)
            .count();
        let finished = (0..n).find(|&r| status(r) == status::OK)?;
        let barrier = self.control.barrier();
        if pending == 0 || barrier.arrived() as usize != pending {
            return None;
        }
        barrier.poison();
        Some((
            finished,
            Cause::Failed(format!(
                "this worker finished the job while {pending} other worker(s) waited at the barrier for it; \
                 every worker must call Ctx::barrier the same number of times"
            )),
        ))
    }

    /// Turns the workers' reports into partials (in chunk order) or the
    /// first failure, and replaces dead workers.
    pub(crate) fn finish(
        &mut self,
        outcome: Outcome,
        rows: usize,
        n: usize,
        persistent: bool,
    ) -> Result<Vec<Vec<u8>>> {
        let view = self.view();
        let control = view.control();
        let mut partials = Vec::with_capacity(n);
        let mut first: Option<(usize, Cause)> = None;
        let mut aborted: Option<usize> = None;
        for rank in 0..n {
            let code = control.workers[rank].status.load(Ordering::Acquire);
            // SAFETY: the acquire load above saw this worker's report (or
            // the worker is dead), so its slot writes are visible and over.
            let slot = || unsafe { view.read_slot(rank) }.bytes();
            let text = || match slot() {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => e,
            };
            let cause = match (code, outcome.exits[rank]) {
                (status::OK, _) => match slot().map(|bytes| control::decode_partials(&bytes)) {
                    Ok(Some(mine)) => {
                        partials.extend(mine);
                        continue;
                    }
                    Ok(None) => Cause::Failed("the worker's results are corrupt".into()),
                    Err(e) => Cause::Failed(e),
                },
                (status::PANICKED, _) => Cause::Panicked(text()),
                (status::FAILED, _) => Cause::Failed(text()),
                (_, Some(Exit::Code(code))) => Cause::Exited(code),
                (_, Some(Exit::Signal(sig))) => Cause::Signaled(sig),
                (_, Some(Exit::Vanished)) => Cause::Vanished,
                _ => {
                    aborted.get_or_insert(rank);
                    continue;
                }
            };
            first.get_or_insert((rank, cause));
        }
        let dead: Vec<usize> = (0..n).filter(|&r| outcome.exits[r].is_some()).collect();
        // Dead one-job workers leave the persistent ones untouched.
        let health = if persistent && !dead.is_empty() {
            self.replace(&dead)
        } else {
            PoolHealth::Healthy
        };
        if let Some((elapsed, unfinished, cancelled)) = outcome.stopped {
            return Err(Error::JobTimeout {
                elapsed,
                unfinished,
                cancelled,
                health,
            });
        }
        let failure = outcome
            .diagnosis
            .or(first)
            .or_else(|| aborted.map(|r| (r, Cause::Aborted)));
        match failure {
            None => {
                partials.sort_by_key(|(chunk, _)| *chunk);
                Ok(partials.into_iter().map(|(_, bytes)| bytes).collect())
            }
            Some((rank, cause)) => Err(Error::WorkerFailed {
                rank,
                rows: self.failed_rows(rank, rows, n),
                cause,
                health,
            }),
        }
    }

    /// The rows worker `rank` was working on: its chunk of the job's
    /// schedule (the chunk it last claimed, under a dynamic or guided one).
    fn failed_rows(&self, rank: usize, rows: usize, n: usize) -> std::ops::Range<usize> {
        let desc = &*self.desc;
        let Some(schedule) = Schedule::decode(desc.schedule, desc.schedule_rows) else {
            return chunk_range(rows, n, rank);
        };
        let chunk = self.view().control().workers[rank].chunk.load(Ordering::Relaxed) as usize;
        schedule
            .plan(rows, n, desc.row_align as usize)
            .chunks
            .get(chunk)
            .cloned()
            .unwrap_or_else(|| chunk_range(rows, n, rank))
    }

    /// Starts new workers for the dead ranks.
    fn replace(&mut self, dead: &[usize]) -> PoolHealth {
        if self.start == Start::Fork && !self.allow_threads {
            // A thread that just cancelled the job is usually on its way
            // out: give it a moment before the fork check refuses.
            let deadline = Instant::now() + THREADS_SETTLE;
            while sys::thread_count() != Some(1) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for &rank in dead {
            match self.launch(rank) {
                Ok(pid) => self.pids[rank] = pid,
                Err(e) => {
                    self.broken = Some(format!("worker {rank} died and could not be replaced: {e}"));
                    return PoolHealth::Broken;
                }
            }
        }
        if let Err(e) = self.await_check_in(dead) {
            self.broken = Some(format!("a replacement worker did not start: {e}"));
            return PoolHealth::Broken;
        }
        PoolHealth::Replaced
    }

    /// Waits until each of `ranks` has checked in (written its pid in its
    /// status line, which a worker does once it serves), so a worker that
    /// cannot start is an error of the pool's start, not a failed job later.
    /// A spawned worker that exits first is a program whose `main` does not
    /// begin with `shmpar::init()`.
    pub(crate) fn await_check_in(&mut self, ranks: &[usize]) -> Result<()> {
        let deadline = Instant::now() + CHECK_IN;
        for &rank in ranks {
            let pid = self.pids[rank];
            while self.view().control().workers[rank].pid.load(Ordering::Acquire) == 0 {
                let exited = match sys::try_wait(pid) {
                    Ok(Some(exit)) => Some(format!("{exit:?}")),
                    Ok(None) => None,
                    Err(e) => Some(e.to_string()),
                };
                if let Some(how) = exited {
                    return Err(match self.start {
                        Start::Spawn => Error::SpawnMismatch {
                            reason: format!(
                                "worker {rank} ended ({how}) before it served: does main begin with shmpar::init()?"
                            ),
                        },
                        Start::Fork => Error::Start(std::io::Error::other(format!(
                            "worker {rank} ended ({how}) before it served"
                        ))),
                    });
                }
                if Instant::now() > deadline {
                    return Err(Error::Start(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("worker {rank} did not start within {CHECK_IN:?}"),
                    )));
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        Ok(())
    }

    /// Stops every worker and reaps it.
    pub(crate) fn stop_all(&mut self) {
        let view = self.view();
        let control = view.control();
        control.shutdown.store(1);
        control.post.post();
        for pid in self.pids.drain(..) {
            sys::reap(pid, Duration::from_secs(1));
        }
    }
}
