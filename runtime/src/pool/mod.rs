//! The process pool: a coordinator and persistent worker processes that run
//! closure kernels over chunks of shared arrays, in place.

pub(crate) mod control;
pub(crate) mod worker;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ndarray::{ArrayView, ArrayViewMut, Dimension, RemoveAxis};
use shmpar_core::chunk::chunk_range;
use shmpar_core::segment::Location;
use shmpar_core::{DType, Element, Segment, SegmentOptions, SharedArray};

use crate::error::{Cause, Error, PoolHealth, Result};
use crate::job::{self, Ctx, DoubleBuffer, ForEach, JobKind, MapChunks};
use crate::partial::Transfer;
use crate::sys::{self, Exit};
use control::{ArrayRef, Control, EVICT_MAX, Identity, JobDesc, MAX_WORKERS, PARAMS_MAX, status};
use worker::{WorkerEnv, control_of};

pub use control::{MAX_WORKERS as MAX_POOL_WORKERS, PARAMS_MAX as MAX_PARAMS_BYTES};

/// The environment variable that tells a spawned process it is a worker.
pub(crate) const WORKER_ENV: &str = "SHMPAR_WORKER";

/// How long a failed job waits for the surviving workers to notice before
/// it kills them.
const GRACE: Duration = Duration::from_millis(250);

/// How long a new worker may take to start serving.
const CHECK_IN: Duration = Duration::from_secs(30);

/// How often a waiting coordinator checks that its workers are alive.
const TICK: Duration = Duration::from_millis(10);

/// How worker processes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Start {
    /// `fork()` the coordinator (the default on Linux): workers are copies
    /// of it, so kernels may be any closure, capturing what they like.
    /// Needs a single-threaded coordinator at the moment of the fork.
    #[default]
    Fork,
    /// Re-execute the current program (which must call [`crate::init`] at
    /// the top of `main`): for programs in which forking is unsafe. Kernels
    /// must capture nothing; parameters travel in the `*_with` methods.
    Spawn,
}

/// Builds a [`Pool`].
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    workers: Option<usize>,
    start: Start,
    allow_threads: bool,
    partial_bytes: u32,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: None,
            start: Start::Fork,
            allow_threads: false,
            partial_bytes: 4096,
        }
    }
}

impl PoolBuilder {
    /// Number of worker processes (default: the CPUs this process may use).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// How workers start (default [`Start::Fork`]).
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// Largest partial result a worker may return, in bytes (default 4088).
    pub fn partial_bytes(mut self, bytes: u32) -> Self {
        self.partial_bytes = bytes.saturating_add(8).div_ceil(64).saturating_mul(64);
        self
    }

    /// Lets the pool fork although the process runs other threads.
    ///
    /// # Safety
    /// - While the pool forks (at start, when it replaces a worker, and for
    ///   each job of a capturing kernel), no other thread of this process
    ///   may hold a lock that the worker or the kernel will take in the
    ///   child: such a lock stays held forever there. glibc's `malloc` is
    ///   made fork-safe by glibc itself; `stdout`/`stderr` locks, `Mutex`es
    ///   of your own, and other allocators may not be.
    pub unsafe fn allow_threads(mut self) -> Self {
        self.allow_threads = true;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`Error::InvalidWorkers`], [`Error::ForkWithThreads`],
    /// [`Error::Start`], and segment errors for the control segment.
    pub fn build(self) -> Result<Pool> {
        Pool::start(self)
    }
}

struct Worker {
    pid: i32,
}

struct Inner {
    control: Segment,
    workers: Vec<Worker>,
    start: Start,
    allow_threads: bool,
    broken: Option<String>,
    /// Arrays the workers may have mapped, to tell them when one is gone.
    sent: HashMap<Identity, Location>,
    desc: Box<JobDesc>,
}

/// A pool of worker processes over shared memory.
///
/// Workers start once and stay: they keep their mappings of the arrays they
/// have worked on, so a job on an array they know costs a few microseconds
/// of dispatch. Dropping the pool stops and reaps them.
///
/// Use the pool from the thread that created it: Linux delivers the
/// parent-death signal that stops the workers when the *thread* that forked
/// them exits.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), shmpar::Error> {
/// use shmpar::{Pool, SharedArray};
/// let pool = Pool::builder().workers(2).build()?;
/// let mut a = SharedArray::from_array(&ndarray::Array1::from_vec(vec![-4.0f64, 9.0, -16.0, 25.0]))?;
/// pool.for_each_chunk(&mut a, |mut chunk| chunk.mapv_inplace(|x| x.abs().sqrt()))?;
/// assert_eq!(a.view().to_vec(), [2.0, 3.0, 4.0, 5.0]);
/// let sum = pool.map_reduce(&a, |chunk| chunk.sum(), |x, y| x + y)?;
/// assert_eq!(sum, 14.0);
/// # Ok(()) }
/// ```
pub struct Pool {
    inner: Mutex<Inner>,
    workers: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// Whether forking now is allowed.
fn check_fork(allow_threads: bool) -> Result<()> {
    let threads = sys::thread_count();
    if threads > 1 && !allow_threads {
        return Err(Error::ForkWithThreads { threads });
    }
    Ok(())
}

impl Pool {
    /// A pool with one worker per CPU, started by fork.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new() -> Result<Pool> {
        PoolBuilder::default().build()
    }

    /// A builder to choose the worker count and start method.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    fn start(builder: PoolBuilder) -> Result<Pool> {
        if std::env::var_os(WORKER_ENV).is_some() {
            return Err(Error::SpawnMismatch {
                reason:
                    "this process was spawned as a worker but did not call shmpar::init() at the top of main"
                        .into(),
            });
        }
        let workers = builder.workers.unwrap_or_else(sys::cpus);
        if workers == 0 || workers > MAX_WORKERS {
            return Err(Error::InvalidWorkers {
                requested: workers,
                max: MAX_WORKERS,
            });
        }
        if builder.start == Start::Fork {
            check_fork(builder.allow_threads)?;
        }
        shmpar_core::signals::install();
        // Orphans of coordinators that died are removed at the next start.
        let _ = shmpar_core::gc::collect(false);
        let control = Segment::create(
            &SegmentOptions::new().slots(workers as u32, builder.partial_bytes.max(64)),
            DType::U8,
            &[size_of::<Control>()],
        )?;
        control.barrier().reset(workers as u32)?;
        let mut inner = Inner {
            control,
            workers: Vec::with_capacity(workers),
            start: builder.start,
            allow_threads: builder.allow_threads,
            broken: None,
            sent: HashMap::new(),
            desc: Box::new(JobDesc::zeroed()),
        };
        for rank in 0..workers {
            match inner.launch(rank) {
                Ok(pid) => inner.workers.push(Worker { pid }),
                Err(e) => {
                    inner.stop_all();
                    return Err(e);
                }
            }
        }
        let ranks: Vec<usize> = (0..workers).collect();
        if let Err(e) = inner.await_check_in(&ranks) {
            inner.stop_all();
            return Err(e);
        }
        Ok(Pool {
            inner: Mutex::new(inner),
            workers,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on each worker's chunk of `array` (contiguous rows along
    /// axis 0, balanced), in place.
    ///
    /// A kernel that captures nothing runs on the persistent workers; one
    /// that captures variables runs on workers forked for this job, which
    /// see the captured values as they were at the call (see
    /// `docs/runtime.md`).
    ///
    /// # Errors
    /// [`Error::WorkerFailed`] if a worker panics or dies; see
    /// `docs/runtime.md` for the others.
    pub fn for_each_chunk<T, D, F>(&self, array: &mut SharedArray<T, D>, f: F) -> Result<()>
    where
        T: Element,
        D: Dimension + RemoveAxis + 'static,
        F: Fn(ArrayViewMut<'_, T, D>) + Sync,
    {
        self.for_each_chunk_with(array, (), move |_ctx, chunk, _: &()| f(chunk))
    }

    /// Like [`for_each_chunk`](Self::for_each_chunk), with the worker's
    /// [`Ctx`] (rank, rows, barrier between phases) and parameters that
    /// travel to the workers as bytes, so the kernel itself can capture
    /// nothing and stay on the persistent workers (and run under
    /// [`Start::Spawn`]).
    ///
    /// # Errors
    /// As [`for_each_chunk`](Self::for_each_chunk), and [`Error::TooLarge`]
    /// for parameters over [`MAX_PARAMS_BYTES`].
    pub fn for_each_chunk_with<T, D, P, F>(
        &self,
        array: &mut SharedArray<T, D>,
        params: P,
        f: F,
    ) -> Result<()>
    where
        T: Element,
        D: Dimension + RemoveAxis + 'static,
        P: Transfer + Sync,
        F: Fn(&Ctx<'_>, ArrayViewMut<'_, T, D>, &P) + Sync,
    {
        let job = ForEach::<T, D, P, F> {
            f,
            _types: std::marker::PhantomData,
        };
        let rows = array.rows();
        self.submit(&job, &[array.segment()], &params, 1, rows).map(drop)
    }

    /// Map-reduce: each worker maps its chunk to a partial result, and the
    /// coordinator combines the partials in rank order, so the result is
    /// deterministic for a given worker count.
    ///
    /// Partials travel through the result slots of the control segment:
    /// plain numbers as bytes, other types inside [`crate::Serde`].
    ///
    /// # Errors
    /// As [`for_each_chunk`](Self::for_each_chunk), and [`Error::Core`]
    /// with a slot error if a partial is larger than its slot
    /// ([`PoolBuilder::partial_bytes`]).
    pub fn map_reduce<T, D, R, M, C>(&self, array: &SharedArray<T, D>, map: M, combine: C) -> Result<R>
    where
        T: Element,
        D: Dimension + RemoveAxis + 'static,
        R: Transfer,
        M: Fn(ArrayView<'_, T, D>) -> R + Sync,
        C: FnMut(R, R) -> R,
    {
        self.map_reduce_with(array, (), move |_ctx, chunk, _: &()| map(chunk), combine)
    }

    /// [`map_reduce`](Self::map_reduce) with the worker's [`Ctx`] and
    /// parameters.
    ///
    /// # Errors
    /// As [`map_reduce`](Self::map_reduce).
    pub fn map_reduce_with<T, D, P, R, M, C>(
        &self,
        array: &SharedArray<T, D>,
        params: P,
        map: M,
        mut combine: C,
    ) -> Result<R>
    where
        T: Element,
        D: Dimension + RemoveAxis + 'static,
        P: Transfer + Sync,
        R: Transfer,
        M: Fn(&Ctx<'_>, ArrayView<'_, T, D>, &P) -> R + Sync,
        C: FnMut(R, R) -> R,
    {
        let job = MapChunks::<T, D, P, R, M> {
            map,
            _types: std::marker::PhantomData,
        };
        let partials = self.submit(&job, &[array.segment()], &params, 1, array.rows())?;
        let mut result: Option<R> = None;
        for bytes in partials {
            let partial = R::decode(&bytes)?;
            result = Some(match result {
                None => partial,
                Some(acc) => combine(acc, partial),
            });
        }
        result.ok_or_else(|| Error::PoolBroken {
            reason: "a job returned no partial results".into(),
        })
    }

    /// The double-buffer pattern, race free without unsafe code: for each of
    /// `steps` steps, every worker reads the whole source array and writes
    /// its own rows of the destination; a barrier ends the step and the
    /// arrays swap roles. Step 0 reads `a` and writes `b`, so after an even
    /// number of steps the latest values are in `a`, after an odd number in `b`.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the arrays' shapes differ or both are handles of
    /// one segment, and as
    /// [`for_each_chunk`](Self::for_each_chunk).
    pub fn double_buffer<T, D, P, F>(
        &self,
        a: &mut SharedArray<T, D>,
        b: &mut SharedArray<T, D>,
        steps: usize,
        params: P,
        f: F,
    ) -> Result<()>
    where
        T: Element,
        D: Dimension + RemoveAxis + 'static,
        P: Transfer + Sync,
        F: Fn(&Ctx<'_>, ArrayView<'_, T, D>, ArrayViewMut<'_, T, D>, &P) + Sync,
    {
        job::check_buffers(a, b)?;
        let job = DoubleBuffer::<T, D, P, F> {
            f,
            _types: std::marker::PhantomData,
        };
        let rows = a.rows();
        self.submit(&job, &[a.segment(), b.segment()], &params, steps as u64, rows)
            .map(drop)
    }

    /// Posts a job and waits for it; returns each worker's encoded partial.
    fn submit<J: JobKind, P: Transfer>(
        &self,
        job: &J,
        arrays: &[&Segment],
        params: &P,
        steps: u64,
        rows: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.broken {
            return Err(Error::PoolBroken {
                reason: reason.clone(),
            });
        }
        let persistent = size_of::<J>() == 0;
        if !persistent {
            if inner.start == Start::Spawn {
                return Err(Error::CapturingKernel);
            }
            check_fork(inner.allow_threads)?;
        }
        let mut encoded = Vec::new();
        params.encode(&mut encoded)?;
        if encoded.len() > PARAMS_MAX {
            return Err(Error::TooLarge {
                what: "the kernel parameters",
                size: encoded.len(),
                max: PARAMS_MAX,
            });
        }
        let n = self.workers;
        inner.prepare(
            arrays,
            &encoded,
            steps,
            n,
            persistent.then(|| worker::entry_offset(job::entry::<J>)),
        )?;
        let transient = if persistent {
            let control = control_of(&inner.control);
            control.post.word.fetch_add(1, Ordering::Release);
            control::wake_all(&control.post);
            Vec::new()
        } else {
            inner.fork_transient(job, n)?
        };
        let outcome = inner.wait_job(n, &transient);
        for &pid in &transient {
            sys::reap(pid, GRACE);
        }
        inner.finish(outcome, rows, n, persistent)
    }
}

impl JobDesc {
    fn zeroed() -> JobDesc {
        JobDesc {
            entry: 0,
            workers: 0,
            narrays: 0,
            steps: 0,
            arrays: [ArrayRef::EMPTY; control::MAX_ARRAYS],
            nevict: 0,
            evict: [Identity::default(); EVICT_MAX],
            params_len: 0,
            params: [0; PARAMS_MAX],
        }
    }
}

/// How the workers of one job ended.
struct Outcome {
    /// Per rank: a process exit observed while waiting.
    exits: Vec<Option<Exit>>,
    /// A failure the coordinator diagnosed itself, reported before any
    /// worker's (their reports are only the consequences).
    diagnosis: Option<(usize, Cause)>,
}

impl Inner {
    fn control(&self) -> &Control {
        control_of(&self.control)
    }

    /// Starts worker `rank` as a persistent worker.
    fn launch(&self, rank: usize) -> Result<i32> {
        // The worker writes its pid here once it serves: its check-in.
        self.control().workers[rank].pid.store(0, Ordering::Relaxed);
        let seen = self.control().post.word.load(Ordering::Acquire);
        match self.start {
            Start::Fork => {
                check_fork(self.allow_threads)?;
                let name = self.control.name();
                let parent = sys::getpid();
                // SAFETY: the process is single-threaded (checked above) or
                // the user vouched for its threads (`allow_threads`).
                match unsafe { sys::fork() }.map_err(Error::Start)? {
                    0 => {
                        sys::die_with_parent(parent);
                        shmpar_core::signals::reset_in_child();
                        let Ok(control) = Segment::open(&name) else {
                            sys::exit_now(71)
                        };
                        worker::serve(WorkerEnv::new(rank, control), seen)
                    }
                    pid => Ok(pid),
                }
            }
            Start::Spawn => crate::spawn::launch(&self.control.name(), rank, seen),
        }
    }

    /// Writes the job descriptor and resets the per-job words. Every
    /// worker is idle here: the previous job ended with all of them done.
    fn prepare(
        &mut self,
        arrays: &[&Segment],
        params: &[u8],
        steps: u64,
        n: usize,
        entry: Option<i64>,
    ) -> Result<()> {
        let control = control_of(&self.control);
        if self.control.barrier().is_poisoned() {
            self.control.barrier().reset(n as u32)?;
        }
        let desc = &mut *self.desc;
        desc.entry = entry.unwrap_or(0);
        desc.workers = n as u32;
        desc.steps = steps;
        desc.narrays = arrays.len() as u32;
        let mut current = Vec::with_capacity(arrays.len());
        for (slot, segment) in desc.arrays.iter_mut().zip(arrays) {
            let (dev, ino) = segment.identity();
            let identity = Identity { dev, ino };
            *slot = ArrayRef::new(segment.location(), identity).ok_or_else(|| Error::Mismatch {
                reason: format!("the array name {} is too long to send to workers", segment.name()),
            })?;
            current.push(identity);
            self.sent.insert(identity, segment.location().clone());
        }
        // Tell workers to drop mappings of arrays that no longer exist.
        desc.nevict = 0;
        let gone: Vec<Identity> = self
            .sent
            .iter()
            .filter(|(id, location)| !current.contains(id) && !still_exists(location, **id))
            .map(|(id, _)| *id)
            .take(EVICT_MAX)
            .collect();
        for id in gone {
            self.sent.remove(&id);
            desc.evict[desc.nevict as usize] = id;
            desc.nevict += 1;
        }
        desc.params_len = params.len() as u32;
        desc.params[..params.len()].copy_from_slice(params);
        control.done.word.store(0, Ordering::Relaxed);
        for line in &control.workers[..n] {
            line.status.store(status::PENDING, Ordering::Relaxed);
        }
        for rank in 0..n {
            self.control.clear_slot(rank)?;
        }
        // SAFETY: no worker reads the descriptor now (all are idle, waiting
        // for the next increment of `post`, which publishes this write).
        unsafe { control.job.get().write(*self.desc) };
        Ok(())
    }

    /// Forks one worker per rank for a kernel that captures variables.
    fn fork_transient<J: JobKind>(&self, job: &J, n: usize) -> Result<Vec<i32>> {
        let name = self.control.name();
        let parent = sys::getpid();
        let mut pids = Vec::with_capacity(n);
        for rank in 0..n {
            // SAFETY: checked single-threaded (or vouched for) by `submit`.
            match unsafe { sys::fork() } {
                Ok(0) => {
                    sys::die_with_parent(parent);
                    shmpar_core::signals::reset_in_child();
                    let Ok(control) = Segment::open(&name) else {
                        sys::exit_now(71)
                    };
                    worker::run_once(WorkerEnv::new(rank, control), job)
                }
                Ok(pid) => pids.push(pid),
                Err(e) => {
                    for &pid in &pids {
                        sys::kill(pid, libc::SIGKILL);
                        sys::reap(pid, Duration::ZERO);
                    }
                    return Err(Error::Start(e));
                }
            }
        }
        Ok(pids)
    }

    /// Waits until every worker reported, or died; kills stragglers a grace
    /// period after the first failure.
    fn wait_job(&mut self, n: usize, transient: &[i32]) -> Outcome {
        let control = control_of(&self.control);
        let pids: Vec<i32> = if transient.is_empty() {
            self.workers.iter().map(|w| w.pid).collect()
        } else {
            transient.to_vec()
        };
        let mut exits: Vec<Option<Exit>> = vec![None; n];
        let mut failed_at: Option<Instant> = None;
        let mut diagnosis = None;
        let mut seen = control.done.word.load(Ordering::Acquire);
        loop {
            // A worker is settled once it reported, or once its process ended.
            let settled = (0..n)
                .filter(|&r| {
                    exits[r].is_some() || control.workers[r].status.load(Ordering::Acquire) != status::PENDING
                })
                .count();
            if settled == n {
                break;
            }
            if failed_at.is_none()
                && control.workers[..n].iter().any(|w| {
                    let s = w.status.load(Ordering::Acquire);
                    s == status::PANICKED || s == status::FAILED
                })
            {
                failed_at = Some(Instant::now());
            }
            if let Some(t) = failed_at {
                if t.elapsed() > GRACE {
                    for rank in 0..n {
                        if exits[rank].is_none()
                            && control.workers[rank].status.load(Ordering::Acquire) == status::PENDING
                        {
                            sys::kill(pids[rank], libc::SIGKILL);
                            exits[rank] = Some(sys::reap(pids[rank], Duration::from_secs(1)));
                        }
                    }
                    continue;
                }
            }
            if let Some(now) = control::wait_change(&control.done, seen, control::SPIN, Some(TICK)) {
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
        Outcome { exits, diagnosis }
    }

    /// Whether the job can never end because its kernel called the barrier
    /// a different number of times on different workers: every worker still
    /// running waits at the barrier, and one that finished will never come.
    /// If so, poisons the barrier (the waiters unwind) and names the worker
    /// that finished early.
    fn stranded_at_barrier(&self, n: usize, exits: &[Option<Exit>]) -> Option<(usize, Cause)> {
        let control = control_of(&self.control);
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

    /// Turns the workers' reports into partials or the first failure, and
    /// replaces dead workers.
    fn finish(&mut self, outcome: Outcome, rows: usize, n: usize, persistent: bool) -> Result<Vec<Vec<u8>>> {
        let control = control_of(&self.control);
        let mut partials = Vec::with_capacity(n);
        let mut first: Option<(usize, Cause)> = None;
        let mut aborted: Option<usize> = None;
        for rank in 0..n {
            let code = control.workers[rank].status.load(Ordering::Acquire);
            let cause = match (code, outcome.exits[rank]) {
                (status::OK, _) => {
                    partials.push(self.control.read_slot(rank)?.unwrap_or_default());
                    continue;
                }
                (status::PANICKED, _) => Cause::Panicked(self.slot_text(rank)),
                (status::FAILED, _) => Cause::Failed(self.slot_text(rank)),
                (_, Some(Exit::Code(code))) => Cause::Exited(code),
                (_, Some(Exit::Signal(sig))) => Cause::Signaled(sig),
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
        let failure = outcome
            .diagnosis
            .or(first)
            .or_else(|| aborted.map(|r| (r, Cause::Aborted)));
        match failure {
            None => Ok(partials),
            Some((rank, cause)) => Err(Error::WorkerFailed {
                rank,
                rows: chunk_range(rows, n, rank),
                cause,
                health,
            }),
        }
    }

    fn slot_text(&self, rank: usize) -> String {
        match self.control.read_slot(rank) {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::from("(no message)"),
        }
    }

    /// Starts new workers for the dead ranks.
    fn replace(&mut self, dead: &[usize]) -> PoolHealth {
        for &rank in dead {
            match self.launch(rank) {
                Ok(pid) => self.workers[rank].pid = pid,
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
    fn await_check_in(&mut self, ranks: &[usize]) -> Result<()> {
        let deadline = Instant::now() + CHECK_IN;
        for &rank in ranks {
            let pid = self.workers[rank].pid;
            while self.control().workers[rank].pid.load(Ordering::Acquire) == 0 {
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
    fn stop_all(&mut self) {
        let control = control_of(&self.control);
        control.shutdown.word.store(1, Ordering::Release);
        control.post.word.fetch_add(1, Ordering::Release);
        control::wake_all(&control.post);
        for worker in self.workers.drain(..) {
            sys::reap(worker.pid, Duration::from_secs(1));
        }
    }
}

fn still_exists(location: &Location, id: Identity) -> bool {
    use std::os::unix::fs::MetadataExt;
    let path = match location {
        Location::Shm(name) => std::path::Path::new("/dev/shm").join(name),
        Location::File(path) => path.clone(),
    };
    std::fs::metadata(path)
        .map(|m| m.dev() == id.dev && m.ino() == id.ino)
        .unwrap_or(false)
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.lock().stop_all();
    }
}
