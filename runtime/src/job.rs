//! What a worker runs: the context a kernel sees, and the job kinds (one
//! array, a reduction, a double buffer) with their entry points.

use std::marker::PhantomData;
use std::ops::Range;

use ndarray::{ArrayView, ArrayViewMut, Dimension, RemoveAxis};
use shmpar_core::{Element, SharedArray};

use crate::partial::Transfer;
use crate::pool::control::JobDesc;
use crate::pool::worker::{Failure, WorkerEnv};

/// Unwind payload of a worker that left a phase because the barrier was
/// poisoned by another worker's failure; the worker reports "aborted".
pub(crate) struct Aborted;

/// How the workers of one job meet between phases.
#[derive(Clone, Copy)]
pub(crate) enum Meet<'a> {
    /// Worker processes: the barrier in the control segment.
    Processes(&'a shmpar_core::Barrier<'a>),
    /// Threads: a barrier shared by the job's threads.
    Threads(&'a std::sync::Barrier),
    /// A single worker: nothing to wait for.
    Alone,
}

/// What a kernel knows about where it runs: its rank, the number of
/// workers, the rows (axis 0) it owns, and the barrier that separates
/// phases.
pub struct Ctx<'a> {
    pub(crate) rank: usize,
    pub(crate) workers: usize,
    pub(crate) rows: Range<usize>,
    pub(crate) step: usize,
    pub(crate) meet: Meet<'a>,
}

impl Ctx<'_> {
    /// This worker's rank, `0..workers()`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of workers in the job.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The rows (axis 0) of the array this worker owns.
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// The current step of a multi-step job (0 for single-step jobs).
    pub fn step(&self) -> usize {
        self.step
    }

    /// Waits until every worker of the job has reached this point: the end
    /// of one phase and the start of the next. Writes made before the
    /// barrier are visible to every worker after it.
    ///
    /// If another worker failed (panicked, died), the barrier is poisoned:
    /// this call then unwinds out of the kernel, and the job reports the
    /// other worker's failure. Every worker must call `barrier` the same
    /// number of times.
    pub fn barrier(&self) {
        let poisoned = match self.meet {
            Meet::Processes(barrier) => barrier.wait().is_err(),
            Meet::Threads(barrier) => {
                barrier.wait();
                false
            }
            Meet::Alone => false,
        };
        if poisoned {
            std::panic::resume_unwind(Box::new(Aborted));
        }
    }
}

/// A job's code, run by each worker for its own chunk. Implemented by the
/// job kinds below, which hold the user's closures.
pub(crate) trait JobKind: Sync {
    /// Runs this worker's part: reads the arrays named in `desc`, computes,
    /// returns the encoded partial result (empty for jobs without one).
    fn run(&self, env: &WorkerEnv, desc: &JobDesc) -> Outcome;
}

/// Entry point of a job whose kind captures nothing (a zero-sized type):
/// the worker can build it from nothing, so persistent workers forked
/// before the job was known can run it.
///
/// # Safety
/// - `J` must be zero-sized (the pool checks before it posts the entry);
/// - a zero-sized closure holds no data, so conjuring one is the same as
///   having the one the coordinator passed. (A closure capturing a
///   zero-sized value whose *type* carries a safety invariant, such as a
///   proof token, would also be conjured; such kernels must not be used.)
pub(crate) unsafe fn entry<J: JobKind>(env: &WorkerEnv, desc: &JobDesc) -> Outcome {
    debug_assert_eq!(size_of::<J>(), 0);
    // SAFETY: `J` is zero-sized (caller's promise), so reading one from a
    // dangling, well-aligned pointer reads no memory.
    let job: J = unsafe { std::ptr::NonNull::<J>::dangling().read() };
    let out = job.run(env, desc);
    std::mem::forget(job);
    out
}

/// The signature of [`entry`] instances.
pub(crate) type Entry = unsafe fn(&WorkerEnv, &JobDesc) -> Outcome;

/// What a worker's part of a job gives: its encoded partial result (empty
/// for jobs without one), or why it failed.
pub(crate) type Outcome = Result<Vec<u8>, Failure>;

fn decode_params<P: Transfer>(desc: &JobDesc) -> Result<P, Failure> {
    P::decode(desc.params()).map_err(|e| Failure::failed(format!("kernel parameters: {e}")))
}

/// Marks the types a job kind works with, without owning values of them
/// (so a job kind stays `Sync` and zero-sized when its closure is).
pub(crate) type Types<T> = PhantomData<fn() -> T>;

/// Runs `body` with this worker's context and its own rows of the job's
/// first array: the part every single-array job kind shares.
fn with_own_rows<T, D, R>(
    env: &WorkerEnv,
    desc: &JobDesc,
    body: impl FnOnce(&Ctx<'_>, ArrayViewMut<'_, T, D>) -> R,
) -> Result<R, Failure>
where
    T: Element,
    D: Dimension + RemoveAxis + 'static,
{
    let workers = desc.workers as usize;
    let (array, rows) = env.chunk_of::<T, D>(&desc.arrays[0], workers)?;
    // SAFETY: each rank gets a disjoint row range of the same split
    // (`chunk_range`), and the coordinator touches no array while a job
    // runs; so no other view accesses these rows concurrently.
    let chunk =
        unsafe { array.rows_mut_unchecked(rows.clone()) }.map_err(|e| Failure::failed(e.to_string()))?;
    let barrier = env.barrier();
    let ctx = Ctx {
        rank: env.rank,
        workers,
        rows,
        step: 0,
        meet: Meet::Processes(&barrier),
    };
    Ok(body(&ctx, chunk))
}

/// `for_each_chunk`: `f(ctx, own rows mutably, params)`.
pub(crate) struct ForEach<T, D, P, F> {
    pub(crate) f: F,
    pub(crate) _types: Types<(T, D, P)>,
}

impl<T, D, P, F> JobKind for ForEach<T, D, P, F>
where
    T: Element,
    D: Dimension + RemoveAxis + 'static,
    P: Transfer,
    F: Fn(&Ctx<'_>, ArrayViewMut<'_, T, D>, &P) + Sync,
{
    fn run(&self, env: &WorkerEnv, desc: &JobDesc) -> Outcome {
        let params: P = decode_params(desc)?;
        with_own_rows::<T, D, _>(env, desc, |ctx, chunk| (self.f)(ctx, chunk, &params))?;
        Ok(Vec::new())
    }
}

/// `map_reduce`: `map(ctx, own rows, params) -> R`, encoded into the slot.
pub(crate) struct MapChunks<T, D, P, R, M> {
    pub(crate) map: M,
    pub(crate) _types: Types<(T, D, P, R)>,
}

impl<T, D, P, R, M> JobKind for MapChunks<T, D, P, R, M>
where
    T: Element,
    D: Dimension + RemoveAxis + 'static,
    P: Transfer,
    R: Transfer,
    M: Fn(&Ctx<'_>, ArrayView<'_, T, D>, &P) -> R + Sync,
{
    fn run(&self, env: &WorkerEnv, desc: &JobDesc) -> Outcome {
        let params: P = decode_params(desc)?;
        let partial =
            with_own_rows::<T, D, _>(env, desc, |ctx, chunk| (self.map)(ctx, chunk.view(), &params))?;
        let mut bytes = Vec::new();
        partial
            .encode(&mut bytes)
            .map_err(|e| Failure::failed(e.to_string()))?;
        Ok(bytes)
    }
}

/// `double_buffer`: for each step, `f(ctx, whole source, own rows of the
/// destination, params)`, a barrier, and the two arrays swap roles.
pub(crate) struct DoubleBuffer<T, D, P, F> {
    pub(crate) f: F,
    pub(crate) _types: Types<(T, D, P)>,
}

impl<T, D, P, F> JobKind for DoubleBuffer<T, D, P, F>
where
    T: Element,
    D: Dimension + RemoveAxis + 'static,
    P: Transfer,
    F: Fn(&Ctx<'_>, ArrayView<'_, T, D>, ArrayViewMut<'_, T, D>, &P) + Sync,
{
    fn run(&self, env: &WorkerEnv, desc: &JobDesc) -> Outcome {
        let params: P = decode_params(desc)?;
        let workers = desc.workers as usize;
        let (a, rows) = env.chunk_of::<T, D>(&desc.arrays[0], workers)?;
        let (b, _) = env.chunk_of::<T, D>(&desc.arrays[1], workers)?;
        let barrier = env.barrier();
        for step in 0..desc.steps as usize {
            let (src, dst) = if step % 2 == 0 { (&a, &b) } else { (&b, &a) };
            // SAFETY: in this phase every worker reads all of `src` and
            // writes only its own rows of `dst`, a different array; nobody
            // writes `src`. The barrier below ends the phase before the
            // roles swap, so reads and writes of one array never overlap.
            let dst_rows = unsafe { dst.rows_mut_unchecked(rows.clone()) }
                .map_err(|e| Failure::failed(e.to_string()))?;
            let src_view = src.view();
            let ctx = Ctx {
                rank: env.rank,
                workers,
                rows: rows.clone(),
                step,
                meet: Meet::Processes(&barrier),
            };
            (self.f)(&ctx, src_view, dst_rows, &params);
            ctx.barrier();
        }
        Ok(Vec::new())
    }
}

/// Checks that two arrays can serve as the two buffers of a double-buffer
/// job: the same shape, and two different segments. Two handles of one
/// segment would make the source and the destination alias, a data race
/// the borrow checker cannot see.
pub(crate) fn check_buffers<T: Element, D: Dimension>(
    a: &SharedArray<T, D>,
    b: &SharedArray<T, D>,
) -> crate::Result<()> {
    if a.shape() != b.shape() {
        return Err(crate::Error::Mismatch {
            reason: format!("shapes {:?} and {:?} differ", a.shape(), b.shape()),
        });
    }
    if a.segment().identity() == b.segment().identity() {
        return Err(crate::Error::Mismatch {
            reason: format!(
                "both buffers are the segment {}; double buffering needs two arrays",
                a.name()
            ),
        });
    }
    Ok(())
}
