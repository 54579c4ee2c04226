//! The process pool: a coordinator and persistent worker processes that run
//! kernels over chunks of shared arrays, in place.
//!
//! `README.md` beside this file describes the protocol between them. The
//! files split by concern: this one is the public API, `post.rs` describes
//! and posts a job, `supervise.rs` starts, watches and replaces workers,
//! `worker.rs` is the worker's loop, `launch.rs` how a worker process
//! starts, `control.rs` the control segment's layout.

mod builder;
mod control;
mod forked;
mod launch;
mod post;
mod supervise;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ndarray::{Dimension, RemoveAxis};
use shmpar_core::{DType, Element, Segment, SegmentOptions, SharedArray};

use crate::dispatch::{MapShape, PlainMapShape, PlainRunShape, RunShape, StepShape};
use crate::error::{Error, Result};
use crate::job::{self, Args, Kind, RowsOf, StepFn};
use crate::transfer::Transfer;
use control::{ControlView, JobDesc, MAX_WORKERS};
use post::{Job, Via};
use supervise::Inner;

use builder::MAX_AREA;
pub use control::{
    DEFAULT_PARAM_BYTES, DEFAULT_PARTIAL_BYTES, MAX_WORKERS as MAX_POOL_WORKERS, MIN_PARTIAL_BYTES,
};

pub use builder::PoolBuilder;
pub use launch::{Start, init};

/// A pool of worker processes over shared memory.
///
/// Workers start once and stay: they keep their mappings of the arrays they
/// have worked on, so a job on arrays they know costs a few microseconds
/// of dispatch. Dropping the pool stops and reaps them.
///
/// Kernels are `fn` pointers: write them as closures that capture nothing
/// (they coerce) or as `fn` items, and pass values through the `params`
/// argument, which travels to the workers as bytes ([`Transfer`]). A
/// capturing closure does not compile here:
///
/// ```compile_fail
/// # fn main() -> Result<(), shmpar::Error> {
/// let pool = shmpar::Pool::builder().workers(2).build()?;
/// let mut a = shmpar::SharedArray::<f64, _>::create(8)?;
/// let k = 2.0;
/// pool.for_each_chunk(&mut a, |mut chunk| chunk *= k)?; // captures `k`
/// # Ok(()) }
/// ```
///
/// pass `k` as a parameter instead ([`Pool::run`]), or use
/// [`Pool::run_forked`], which forks workers that inherit the closure.
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
    /// The process that started the workers: only it may stop them.
    owner: i32,
    cancel: Arc<AtomicBool>,
}

/// Cancels a pool's job in progress from another thread: see
/// [`Pool::canceller`].
#[derive(Clone, Debug)]
pub struct Canceller(Arc<AtomicBool>);

impl Canceller {
    /// Ends the job the pool is running now: within about 10 ms its call
    /// returns [`Error::JobTimeout`] with `cancelled: true`, the workers
    /// that had not finished are killed and replaced. Has no effect while
    /// no job runs.
    ///
    /// Replacing a worker of a [`Start::Fork`] pool forks, which needs a
    /// single-threaded process: the pool waits briefly for other threads
    /// (such as the one that cancelled) to end, and reports
    /// [`PoolHealth::Broken`](crate::PoolHealth::Broken) if they do not.
    /// Programs that keep threads running cancel on [`Start::Spawn`] pools.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

fn check_area(what: &'static str, size: usize, setting: &'static str) -> Result<()> {
    if size > MAX_AREA {
        return Err(Error::TooLarge {
            what,
            size,
            max: MAX_AREA,
            setting,
        });
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
        if std::env::var_os(launch::WORKER_ENV).is_some() {
            return Err(Error::SpawnMismatch {
                reason:
                    "this process was spawned as a worker but did not call shmpar::init() at the top of main"
                        .into(),
            });
        }
        let workers = builder.workers.unwrap_or_else(crate::sys::cpus);
        if workers == 0 || workers > MAX_WORKERS {
            return Err(Error::InvalidWorkers {
                requested: workers,
                max: MAX_WORKERS,
            });
        }
        check_area(
            "the partial-result area",
            builder.partial_bytes,
            "PoolBuilder::partial_bytes",
        )?;
        check_area(
            "the parameter area",
            builder.param_bytes,
            "PoolBuilder::param_bytes",
        )?;
        if builder.start == Start::Fork {
            launch::check_fork(builder.allow_threads)?;
        }
        shmpar_core::signals::install();
        // Orphans of coordinators that died are removed at the next start.
        let _ = shmpar_core::gc::collect(false);
        let len = control::data_len(workers, builder.param_bytes, builder.partial_bytes).ok_or(
            Error::TooLarge {
                what: "the control segment",
                size: usize::MAX,
                max: MAX_AREA,
                setting: "PoolBuilder::partial_bytes",
            },
        )?;
        // Bounded as a whole, too: workers × partial area can be large.
        check_area(
            "the control segment (workers × partial area)",
            len,
            "PoolBuilder::partial_bytes",
        )?;
        let control = Segment::create(&SegmentOptions::new(), DType::U8, &[len])?;
        {
            // SAFETY: the segment is new and ours alone; its data is at least
            // a `Control`, all zeros, which is a valid one.
            let block = unsafe { &*control.data_ptr().cast::<control::Control>() };
            use std::sync::atomic::Ordering::Release;
            block.param_bytes.store(builder.param_bytes as u32, Release);
            block.slot_bytes.store(builder.partial_bytes as u32, Release);
            block.slots.store(workers as u32, Release);
        }
        if ControlView::new(&control).is_none() {
            return Err(Error::PoolBroken {
                reason: "the control segment does not hold its areas".into(),
            });
        }
        control.barrier().reset(workers as u32)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let mut inner = Inner {
            job_timeout: builder.job_timeout,
            cancel: cancel.clone(),
            control,
            pids: Vec::with_capacity(workers),
            start: builder.start,
            allow_threads: builder.allow_threads,
            broken: None,
            sent: HashMap::new(),
            desc: Box::new(JobDesc::zeroed()),
        };
        for rank in 0..workers {
            match inner.launch(rank) {
                Ok(pid) => inner.pids.push(pid),
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
            owner: crate::sys::getpid(),
            cancel,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn submit<A: Args>(&self, args: &A, job: Job<'_>) -> Result<Vec<Vec<u8>>> {
        if crate::sys::getpid() != self.owner {
            return Err(Error::PoolBroken {
                reason: "this pool belongs to the process that built it, not to a forked copy of it".into(),
            });
        }
        let mut inner = self.lock();
        // A cancel requested while no job ran applies to none.
        self.cancel.store(false, Ordering::Relaxed);
        inner.submit(args, job, self.workers)
    }

    /// Makes the workers drop, now, their mappings of arrays this process
    /// has let go (dropped, or persisted and dropped), so the memory of an
    /// unlinked array is freed at once. Without it that happens by the end
    /// of the pool's next job; call it while a pool idles and memory is
    /// tight (a small `/dev/shm`, as in containers). Posts nothing when
    /// there is nothing to drop.
    ///
    /// ```
    /// # fn main() -> Result<(), shmpar::Error> {
    /// use shmpar::{Pool, SharedArray};
    /// let pool = Pool::builder().workers(2).build()?;
    /// let a = SharedArray::from_array(&ndarray::Array1::from_elem(1 << 20, 1.0f64))?;
    /// assert_eq!(pool.map_reduce(&a, |c| c.sum(), |x, y| x + y)?, (1 << 20) as f64);
    /// drop(a); // the name is gone; the workers still map the 8 MiB
    /// pool.release_unused()?; // now they do not
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As a job's, if a worker died meanwhile; [`Error::PoolBroken`] for a
    /// broken pool.
    pub fn release_unused(&self) -> Result<()> {
        if crate::sys::getpid() != self.owner {
            return Err(Error::PoolBroken {
                reason: "this pool belongs to the process that built it, not to a forked copy of it".into(),
            });
        }
        let mut inner = self.lock();
        // A cancel requested while no job ran applies to none.
        self.cancel.store(false, Ordering::Relaxed);
        inner.release_unused(self.workers)
    }

    /// A handle that cancels this pool's job in progress from another
    /// thread.
    ///
    /// ```
    /// # fn main() -> Result<(), shmpar::Error> {
    /// use shmpar::{Error, Pool, SharedArray};
    /// let pool = Pool::builder().workers(2).build()?;
    /// let canceller = pool.canceller();
    /// let mut a = SharedArray::<u64, _>::create(2)?;
    /// let stopper = std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(100));
    ///     canceller.cancel();
    /// });
    /// // A kernel that never ends.
    /// let result = pool.for_each_chunk(&mut a, |mut x| loop { x[0] = x[0].wrapping_add(1) });
    /// assert!(matches!(result, Err(Error::JobTimeout { cancelled: true, .. })));
    /// stopper.join().unwrap();
    /// pool.for_each_chunk(&mut a, |mut x| x.fill(7))?; // the pool replaced its workers
    /// assert_eq!(a.view().to_vec(), [7, 7]);
    /// # Ok(()) }
    /// ```
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Runs `f(ctx, views, params)` on every worker, each with its own rows
    /// of the split arguments and the whole of the [`whole`](crate::whole)
    /// ones, in place. `args` is `&a`, `&mut a`, `whole(&a)` or a tuple of
    /// them (see [`job::args`]); `params` travel to the workers as bytes.
    ///
    /// ```
    /// # fn main() -> Result<(), shmpar::Error> {
    /// use shmpar::{Pool, SharedArray};
    /// let pool = Pool::builder().workers(2).build()?;
    /// let b = SharedArray::from_array(&ndarray::Array1::from_elem(1000, 1.0f64))?;
    /// let c = SharedArray::from_array(&ndarray::Array1::from_elem(1000, 2.0f64))?;
    /// let mut a = SharedArray::<f64, _>::create(1000)?;
    /// // The STREAM triad, a = b + s·c, over three arrays.
    /// pool.run((&mut a, &b, &c), 3.0, |_ctx, (mut a, b, c), s| {
    ///     a.assign(&(&b + &(&c * *s)));
    /// })?;
    /// assert!(a.view().iter().all(|&x| x == 7.0));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::WorkerFailed`] if a worker panics or dies;
    /// [`Error::Mismatch`] for arguments that cannot form a job (split
    /// arrays with different row counts, an array twice);
    /// [`Error::TooLarge`] for parameters over
    /// [`PoolBuilder::param_bytes`]; [`Error::UnregisteredKernel`] on a
    /// spawn pool for a kernel not registered with
    /// [`register_kernel!`](crate::register_kernel).
    pub fn run<A: Args, P: Transfer>(
        &self,
        args: A,
        params: P,
        f: <A::Kind as Kind>::RunFn<P>,
    ) -> Result<()> {
        let job = Job {
            via: Via::persistent::<RunShape<A::Kind, P>>(f),
            params: post::encode(&params)?,
            steps: 1,
        };
        self.submit(&args, job).map(drop)
    }

    /// [`run`](Self::run) under its older name, for one array or several.
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

    /// Runs `f` on each worker's chunk of `args` (contiguous rows along
    /// axis 0, balanced), in place: the seed's one-array pattern.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn for_each_chunk<A: Args>(&self, args: A, f: <A::Kind as Kind>::PlainRunFn) -> Result<()> {
        let job = Job {
            via: Via::persistent::<PlainRunShape<A::Kind>>(f),
            params: Vec::new(),
            steps: 1,
        };
        self.submit(&args, job).map(drop)
    }

    /// Map-reduce: each worker maps its chunk to a partial result, and the
    /// coordinator combines the partials in chunk order, so the result is
    /// deterministic for a given worker count and identical on every
    /// [`Backend`](crate::Backend).
    ///
    /// # Errors
    /// As [`run`](Self::run); a partial larger than
    /// [`PoolBuilder::partial_bytes`] fails the job with a message naming
    /// that setting.
    pub fn map_reduce<A: Args, R: Transfer>(
        &self,
        args: A,
        map: <A::Kind as Kind>::PlainMapFn<R>,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R> {
        let job = Job {
            via: Via::persistent::<PlainMapShape<A::Kind, R>>(map),
            params: Vec::new(),
            steps: 1,
        };
        post::combine(self.submit(&args, job)?, combine)
    }

    /// [`map_reduce`](Self::map_reduce) with the worker's [`Ctx`](crate::Ctx) and
    /// parameters, over one array or several.
    ///
    /// # Errors
    /// As [`map_reduce`](Self::map_reduce).
    pub fn map_reduce_with<A: Args, P: Transfer, R: Transfer>(
        &self,
        args: A,
        params: P,
        map: <A::Kind as Kind>::MapFn<P, R>,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R> {
        let job = Job {
            via: Via::persistent::<MapShape<A::Kind, P, R>>(map),
            params: post::encode(&params)?,
            steps: 1,
        };
        post::combine(self.submit(&args, job)?, combine)
    }

    /// The double-buffer pattern, race free without unsafe code: for each of
    /// `steps` steps, every worker reads the whole source array and writes
    /// its own rows of the destination; a barrier ends the step and the
    /// arrays swap roles. Step 0 reads `a` and writes `b`, so after an even
    /// number of steps the latest values are in `a`, after an odd number in `b`.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the arrays' shapes differ, and as
    /// [`run`](Self::run).
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
        job::check_buffers(a, b)?;
        let job = Job {
            via: Via::persistent::<StepShape<RowsOf<T, D>, P>>(f),
            params: post::encode(&params)?,
            steps: steps as u64,
        };
        self.submit(&(&*a, &*b), job).map(drop)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A forked copy of the coordinator (a child that returned into code
        // dropping its copy of the pool) must not stop the parent's workers.
        if crate::sys::getpid() == self.owner {
            self.lock().stop_all();
        }
    }
}
