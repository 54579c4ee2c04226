//! One kernel, three backends: worker processes, rayon threads, or serial,
//! all with the same chunking, so results and timings compare like with like.

use std::any::Any;
use std::fmt;
use std::str::FromStr;

use ndarray::{Dimension, RemoveAxis};
use shmpar_core::{Element, SharedArray};

use crate::error::{Error, Result};
use crate::job::args::{self, ArgRef};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::panic::{AssertUnwindSafe, catch_unwind};

use shmpar_core::chunk::chunk_range;

use crate::error::{Cause, PoolHealth};
use crate::job::{Aborted, Args, Ctx, Kind, LocalMeet, Meet, Schedule, Share, StepFn, panic_message};
use crate::pool::{Pool, PoolBuilder};
use crate::sys;
use crate::transfer::Transfer;

/// Where a kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// Worker processes of a [`Pool`], over shared memory.
    Processes,
    /// Threads of a rayon pool of the same size, over the same memory.
    Threads,
    /// One chunk at a time, taking turns at barriers.
    Serial,
}

impl BackendKind {
    /// Every backend, in the order tables show them.
    pub const ALL: [BackendKind; 3] = [BackendKind::Processes, BackendKind::Threads, BackendKind::Serial];

    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Processes => "processes",
            BackendKind::Threads => "threads",
            BackendKind::Serial => "serial",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        BackendKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown backend {s:?}; expected one of processes, threads, serial"))
    }
}

enum Engine {
    Processes(Box<Pool>),
    Threads(rayon::ThreadPool),
    Serial,
}

/// Runs kernels on one backend with `workers` chunks.
///
/// Every backend splits arrays into the same `workers` chunks
/// ([`shmpar_core::chunk::chunk_range`]) and combines partial results in
/// chunk order, so a reduction gives bit-identical results on all three.
/// The serial backend runs one chunk at a time: with several workers each
/// rank gets a thread of its own, and the ranks take turns, handing over
/// at [`Ctx::barrier`], so multi-phase kernels mean the same as on the
/// others. Failures are the same typed errors on every backend: a
/// panicking kernel is [`Error::WorkerFailed`] with [`Cause::Panicked`],
/// never a panic in the caller.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), shmpar::Error> {
/// use shmpar::{Backend, BackendKind, SharedArray};
/// let mut a = SharedArray::from_array(&ndarray::Array1::from_iter((0..1000).map(f64::from)))?;
/// let mut sums = Vec::new();
/// for kind in BackendKind::ALL {
///     let backend = Backend::new(kind, 2)?;
///     backend.for_each_chunk_with(&mut a, 2.0, |_ctx, mut chunk, k| chunk *= *k)?;
///     sums.push(backend.map_reduce_with(&a, (), |_ctx, chunk, _| chunk.sum(), |x, y| x + y)?);
/// }
/// assert_eq!(sums, [999_000.0, 1_998_000.0, 3_996_000.0]);
/// # Ok(()) }
/// ```
pub struct Backend {
    kind: BackendKind,
    workers: usize,
    engine: Engine,
    /// The process's thread count before the threads backend started its
    /// rayon threads: dropping it waits for them to be gone, so a pool
    /// built right after may fork.
    threads_before: Option<usize>,
    /// The largest encoded parameters a job takes, as on the process
    /// backend (`PoolBuilder::param_bytes`).
    param_bytes: usize,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Engine::Threads(threads) = std::mem::replace(&mut self.engine, Engine::Serial) {
            // Dropping the rayon pool tells its threads to exit; they do
            // on their own, soon.
            drop(threads);
            sys::await_thread_count(self.threads_before);
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("kind", &self.kind)
            .field("workers", &self.workers)
            .finish()
    }
}

impl Backend {
    /// A backend of `kind` with `workers` chunks (processes or threads).
    ///
    /// # Errors
    /// [`Error::InvalidWorkers`] for 0 workers, and what
    /// [`PoolBuilder::build`] returns for processes.
    pub fn new(kind: BackendKind, workers: usize) -> Result<Backend> {
        Self::with_pool_builder(kind, workers, Pool::builder())
    }

    /// Like [`new`](Self::new), with a pool builder for the process backend.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_pool_builder(kind: BackendKind, workers: usize, builder: PoolBuilder) -> Result<Backend> {
        if workers == 0 || workers > crate::MAX_POOL_WORKERS {
            return Err(Error::InvalidWorkers {
                requested: workers,
                max: crate::MAX_POOL_WORKERS,
            });
        }
        let threads_before = sys::thread_count();
        let param_bytes = builder.param_bytes;
        let engine = match kind {
            BackendKind::Processes => Engine::Processes(Box::new(builder.workers(workers).build()?)),
            BackendKind::Threads => Engine::Threads(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(workers)
                    .build()
                    .map_err(|e| Error::Start(std::io::Error::other(e)))?,
            ),
            BackendKind::Serial => Engine::Serial,
        };
        Ok(Backend {
            kind,
            workers,
            engine,
            threads_before,
            param_bytes,
        })
    }

    /// The backend's kind.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// Number of chunks (workers).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The process pool, for the process backend.
    pub fn pool(&self) -> Option<&Pool> {
        match &self.engine {
            Engine::Processes(pool) => Some(pool),
            _ => None,
        }
    }

    /// Runs `f(ctx, views, params)` on each chunk; see [`Pool::run`].
    ///
    /// # Errors
    /// As [`Pool::run`] on processes; [`Error::Mismatch`] for arguments
    /// that cannot form a job on the others.
    pub fn run<A: Args, P: Transfer>(
        &self,
        args: A,
        params: P,
        f: <A::Kind as Kind>::RunFn<P>,
    ) -> Result<()> {
        match &self.engine {
            Engine::Processes(pool) => pool.run(args, params, f),
            _ => {
                let params = self.carried(&params)?;
                self.local::<A, ()>(&args, |ctx, views| A::Kind::call_run(f, ctx, views, &params))
                    .map(drop)
            }
        }
    }

    /// [`run`](Self::run) under its older name.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn for_each_chunk_with<A: Args, P: Transfer>(
        &self,
        args: A,
        params: P,
        f: <A::Kind as Kind>::RunFn<P>,
    ) -> Result<()> {
        self.run(args, params, f)
    }

    /// Runs `f` on each chunk in place; see [`Pool::for_each_chunk`].
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn for_each_chunk<A: Args>(&self, args: A, f: <A::Kind as Kind>::PlainRunFn) -> Result<()> {
        match &self.engine {
            Engine::Processes(pool) => pool.for_each_chunk(args, f),
            _ => self
                .local::<A, ()>(&args, |_, views| A::Kind::call_plain_run(f, views))
                .map(drop),
        }
    }

    /// Map-reduce over the chunks, combined in chunk order; see
    /// [`Pool::map_reduce`].
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn map_reduce<A: Args, R: Transfer>(
        &self,
        args: A,
        map: <A::Kind as Kind>::PlainMapFn<R>,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R> {
        match &self.engine {
            Engine::Processes(pool) => pool.map_reduce(args, map, combine),
            _ => fold(
                carried_all(self.local::<A, R>(&args, |_, views| A::Kind::call_plain_map(map, views))?)?,
                combine,
            ),
        }
    }

    /// [`map_reduce`](Self::map_reduce) with the context and parameters;
    /// see [`Pool::map_reduce_with`].
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn map_reduce_with<A: Args, P: Transfer, R: Transfer>(
        &self,
        args: A,
        params: P,
        map: <A::Kind as Kind>::MapFn<P, R>,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R> {
        match &self.engine {
            Engine::Processes(pool) => pool.map_reduce_with(args, params, map, combine),
            _ => {
                let params = self.carried(&params)?;
                fold(
                    carried_all(
                        self.local::<A, R>(&args, |ctx, views| A::Kind::call_map(map, ctx, views, &params))?,
                    )?,
                    combine,
                )
            }
        }
    }

    /// The double-buffer pattern; see [`Pool::double_buffer`].
    ///
    /// # Errors
    /// As [`Pool::double_buffer`].
    pub fn double_buffer<T, D, P>(
        &self,
        a: &mut SharedArray<T, D>,
        b: &mut SharedArray<T, D>,
        steps: usize,
        params: P,
        f: StepFn<T, D, P>,
    ) -> Result<()>
    where
        T: Element,
        D: Dimension + RemoveAxis + 'static,
        P: Transfer,
    {
        if let Engine::Processes(pool) = &self.engine {
            return pool.double_buffer(a, b, steps, params, f);
        }
        crate::job::check_buffers(a, b)?;
        let params = self.carried(&params)?;
        let arrays: [&dyn Any; 2] = [&*a, &*b];
        let rows = a.rows();
        let align = crate::job::row_align([a.segment(), b.segment()], rows);
        self.each_share(rows, align, &arrays, Schedule::Static, |share| {
            // SAFETY: one share per rank of `self.workers` (`each_share`),
            // two different segments (checked above), and `a` and `b` are
            // borrowed mutably for the whole job.
            unsafe { share.steps(steps, &params, f) }
        })
        .map(drop)
    }

    /// `params` as the workers of a pool get them: encoded (refused past
    /// `param_bytes`, as on processes) and decoded again, so a value that
    /// does not survive its encoding fails, or changes, alike on every
    /// backend.
    fn carried<P: Transfer>(&self, params: &P) -> Result<P> {
        let mut bytes = Vec::new();
        params.encode(&mut bytes)?;
        if bytes.len() > self.param_bytes {
            return Err(Error::TooLarge {
                what: "the encoded parameter block",
                size: bytes.len(),
                max: self.param_bytes,
                setting: "PoolBuilder::param_bytes",
            });
        }
        P::decode(&bytes)
    }

    /// Runs `call` on every chunk of `args` on the threads or serially;
    /// returns the results in chunk order.
    fn local<A: Args, O: Send>(
        &self,
        args: &A,
        call: impl for<'a> Fn(&'a Ctx<'_>, <A::Kind as Kind>::Views<'a>) -> O + Sync,
    ) -> Result<Vec<O>> {
        let mut described: Vec<ArgRef<'_>> = Vec::new();
        args.describe(&mut described);
        let schedule = args.schedule();
        let rows = args::check(&described, schedule)?;
        let arrays: Vec<&dyn Any> = described.iter().map(|a| a.array).collect();
        let align = crate::job::row_align(described.iter().filter(|a| a.split).map(|a| a.segment), rows);
        let out = self.each_share(rows, align, &arrays, schedule, |share| {
            // SAFETY: one share per rank of `self.workers` (`each_share`),
            // and `args` holds the borrows of the arrays for the whole job.
            unsafe { share.run::<A::Kind, O>(&call) }
        })?;
        let mut out: Vec<(u32, O)> = out.into_iter().flatten().collect();
        out.sort_by_key(|(chunk, _)| *chunk);
        Ok(out.into_iter().map(|(_, o)| o).collect())
    }

    /// Runs `body` once per rank: on the rayon threads, all at once, or
    /// on the serial backend one rank at a time (each on a thread of its
    /// own when there are several, handing over at barriers); results in
    /// rank order. `align` is the job's row-alignment unit
    /// (`job::row_align`).
    ///
    /// Failures come back as on the process backend: a panicking kernel
    /// as [`Error::WorkerFailed`] with [`Cause::Panicked`] (the others
    /// leave the barrier and the job reports the first failure), a worker
    /// that finished while the others waited at a barrier as
    /// [`Cause::Failed`] naming it.
    fn each_share<O: Send>(
        &self,
        rows: usize,
        align: usize,
        arrays: &[&dyn Any],
        schedule: Schedule,
        body: impl Fn(&Share<'_>) -> std::result::Result<O, String> + Sync,
    ) -> Result<Vec<O>> {
        let n = self.workers;
        let plan = schedule.plan(rows, n, align);
        let next = AtomicUsize::new(0);
        // The chunk each rank runs now, for the rows of a failure.
        let current: Vec<AtomicUsize> = (0..n).map(AtomicUsize::new).collect();
        let serial = matches!(self.engine, Engine::Serial);
        let meet = LocalMeet::new(n, serial);
        let arrays = SyncArrays(arrays);
        let one = |rank: usize| -> Ran<O> {
            let claim = || {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                current[rank].store(chunk, Ordering::Relaxed);
                chunk
            };
            meet.start();
            let share = Share {
                rank,
                workers: n,
                rows,
                arrays: arrays.get(),
                meet: Meet::Local(&meet),
                plan: &plan,
                claim: &claim,
            };
            let ran = match catch_unwind(AssertUnwindSafe(|| body(&share))) {
                Ok(Ok(value)) => Ran::Done(value),
                Ok(Err(reason)) => Ran::Refused(reason),
                Err(payload) if payload.is::<Aborted>() => Ran::Aborted,
                Err(payload) => Ran::Panicked(panic_message(&*payload)),
            };
            meet.finish(rank, !matches!(ran, Ran::Done(_)));
            ran
        };
        let ran: Vec<Ran<O>> = match &self.engine {
            Engine::Threads(threads) => threads.broadcast(|b| one(b.index())),
            _ if n == 1 => vec![one(0)],
            _ => {
                // One thread per rank, taking turns; the process has its
                // own thread count back (a later fork checks it) before this
                // returns.
                let before = sys::thread_count();
                let ran = std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..n).map(|rank| scope.spawn(move || one(rank))).collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Ran::Panicked("the rank's thread panicked".into()))
                        })
                        .collect()
                });
                sys::await_thread_count(before);
                ran
            }
        };
        let failed_rows = |rank: usize| {
            let chunk = current[rank].load(Ordering::Relaxed);
            plan.chunks
                .get(chunk)
                .cloned()
                .unwrap_or_else(|| chunk_range(rows, n, rank))
        };
        let mut out = Vec::with_capacity(n);
        let mut first: Option<(usize, Cause)> = None;
        for (rank, ran) in ran.into_iter().enumerate() {
            match ran {
                Ran::Done(value) => out.push(value),
                Ran::Refused(reason) => return Err(Error::Mismatch { reason }),
                Ran::Panicked(message) => {
                    first.get_or_insert((rank, Cause::Panicked(message)));
                }
                Ran::Aborted => {}
            }
        }
        if first.is_none() {
            if let Some(rank) = meet.finished_early() {
                first = Some((
                    rank,
                    Cause::Failed(format!(
                        "this worker finished the job while the other {} waited at the barrier for it; \
                         every worker must call Ctx::barrier the same number of times",
                        n - 1
                    )),
                ));
            }
        }
        match first {
            Some((rank, cause)) => Err(Error::WorkerFailed {
                rank,
                rows: failed_rows(rank),
                cause,
                health: PoolHealth::Healthy,
            }),
            None if out.len() == n => Ok(out),
            None => Err(Error::Mismatch {
                reason: "a worker left the job without a result".into(),
            }),
        }
    }
}

/// How one rank's share of a local job ended.
enum Ran<O> {
    /// The kernel returned.
    Done(O),
    /// The arguments could not be made into views (a mismatch).
    Refused(String),
    /// The kernel panicked: the message.
    Panicked(String),
    /// The rank left the barrier because another failed.
    Aborted,
}

/// The job's arrays, shared with the threads of one job.
struct SyncArrays<'a>(&'a [&'a dyn Any]);

impl<'a> SyncArrays<'a> {
    fn get(&self) -> &'a [&'a dyn Any] {
        self.0
    }
}

// SAFETY: the arrays are `SharedArray`s (which are `Sync`: a mapping and
// plain data), shared read-only as `&dyn Any`; the threads make views of
// disjoint rows from them (`Share::run`).
unsafe impl Sync for SyncArrays<'_> {}

/// Partial results as a pool's coordinator gets them: each encoded by its
/// worker and decoded (see [`Backend::carried`]).
fn carried_all<R: Transfer>(partials: Vec<R>) -> Result<Vec<R>> {
    partials
        .into_iter()
        .map(|r| {
            let mut bytes = Vec::new();
            r.encode(&mut bytes)?;
            R::decode(&bytes)
        })
        .collect()
}

fn fold<R>(partials: Vec<R>, combine: impl FnMut(R, R) -> R) -> Result<R> {
    let mut partials = partials.into_iter();
    let first = partials.next().ok_or_else(|| Error::PoolBroken {
        reason: "no partial results".into(),
    })?;
    Ok(partials.fold(first, combine))
}
