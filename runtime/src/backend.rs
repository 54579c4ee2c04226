//! One kernel, three backends: worker processes, rayon threads, or serial,
//! all with the same chunking, so results and timings compare like with like.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension, RemoveAxis};
use shmpar_core::chunk::chunk_range;
use shmpar_core::{Element, SharedArray};

use crate::error::{Error, Result};
use crate::job::{Ctx, Meet};
use crate::partial::Transfer;
use crate::pool::{Pool, PoolBuilder};

/// Where a kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// Worker processes of a [`Pool`], over shared memory.
    Processes,
    /// Threads of a rayon pool of the same size, over the same memory.
    Threads,
    /// One thread, the chunks one after another.
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
/// The serial backend runs the chunks one after another; since a chunk
/// kernel only sees its own rows, that is indistinguishable from running
/// them at once, and [`Ctx::barrier`] is a no-op there.
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

    /// Runs `f` on each chunk in place; see [`Pool::for_each_chunk_with`].
    ///
    /// # Errors
    /// As [`Pool::for_each_chunk_with`] on processes; never on the others.
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
        let n = self.workers;
        match &self.engine {
            Engine::Processes(pool) => pool.for_each_chunk_with(array, params, f),
            Engine::Threads(threads) => {
                let rows = array.rows();
                on_threads(threads, array.chunks_mut(n)?, rows, 0, |ctx, chunk| {
                    f(ctx, chunk, &params)
                });
                Ok(())
            }
            Engine::Serial => {
                let rows = array.rows();
                for (rank, chunk) in array.chunks_mut(n)?.into_iter().enumerate() {
                    let ctx = serial_ctx(rank, n, rows);
                    f(&ctx, chunk, &params);
                }
                Ok(())
            }
        }
    }

    /// Map-reduce over the chunks, combined in chunk order; see
    /// [`Pool::map_reduce_with`].
    ///
    /// # Errors
    /// As [`Pool::map_reduce_with`] on processes; never on the others.
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
        let n = self.workers;
        let rows = array.rows();
        let view = array.view();
        let partials: Vec<R> = match &self.engine {
            Engine::Processes(pool) => return pool.map_reduce_with(array, params, map, combine),
            Engine::Threads(threads) => {
                let barrier = std::sync::Barrier::new(n);
                threads.broadcast(|b| {
                    let rank = b.index();
                    let range = chunk_range(rows, n, rank);
                    let chunk = view.slice_axis(Axis(0), (range.start..range.end).into());
                    let ctx = Ctx {
                        rank,
                        workers: n,
                        rows: range,
                        step: 0,
                        meet: Meet::Threads(&barrier),
                    };
                    map(&ctx, chunk, &params)
                })
            }
            Engine::Serial => (0..n)
                .map(|rank| {
                    let range = chunk_range(rows, n, rank);
                    let chunk = view.slice_axis(Axis(0), (range.start..range.end).into());
                    map(&serial_ctx(rank, n, rows), chunk, &params)
                })
                .collect(),
        };
        let mut partials = partials.into_iter();
        let first = partials.next().ok_or_else(|| Error::PoolBroken {
            reason: "no partial results".into(),
        })?;
        Ok(partials.fold(first, &mut combine))
    }

    /// The double-buffer pattern; see [`Pool::double_buffer`].
    ///
    /// # Errors
    /// As [`Pool::double_buffer`].
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
        if let Engine::Processes(pool) = &self.engine {
            return pool.double_buffer(a, b, steps, params, f);
        }
        crate::job::check_buffers(a, b)?;
        let n = self.workers;
        let rows = a.rows();
        for step in 0..steps {
            let (src, dst) = if step % 2 == 0 {
                (&*a, &mut *b)
            } else {
                (&*b, &mut *a)
            };
            let src = src.view();
            let chunks = dst.chunks_mut(n)?;
            match &self.engine {
                Engine::Threads(threads) => {
                    on_threads(threads, chunks, rows, step, |ctx, chunk| {
                        f(ctx, src.view(), chunk, &params)
                    });
                }
                _ => {
                    for (rank, chunk) in chunks.into_iter().enumerate() {
                        let mut ctx = serial_ctx(rank, n, rows);
                        ctx.step = step;
                        f(&ctx, src.view(), chunk, &params);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs `body` once on every thread of `threads` (as many as chunks), each
/// with its rank's chunk and a context whose barrier the threads share.
fn on_threads<T, D>(
    threads: &rayon::ThreadPool,
    chunks: Vec<ArrayViewMut<'_, T, D>>,
    rows: usize,
    step: usize,
    body: impl Fn(&Ctx<'_>, ArrayViewMut<'_, T, D>) + Sync,
) where
    T: Element,
    D: Dimension,
{
    let n = chunks.len();
    // Each thread takes its own chunk out of its slot exactly once.
    let slots: Vec<Mutex<Option<ArrayViewMut<'_, T, D>>>> =
        chunks.into_iter().map(|c| Mutex::new(Some(c))).collect();
    let barrier = std::sync::Barrier::new(n);
    threads.broadcast(|b| {
        let rank = b.index();
        let chunk = slots[rank].lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(chunk) = chunk {
            let ctx = Ctx {
                rank,
                workers: n,
                rows: chunk_range(rows, n, rank),
                step,
                meet: Meet::Threads(&barrier),
            };
            body(&ctx, chunk);
        }
    });
}

fn serial_ctx(rank: usize, workers: usize, rows: usize) -> Ctx<'static> {
    Ctx {
        rank,
        workers,
        rows: chunk_range(rows, workers, rank),
        step: 0,
        meet: Meet::Alone,
    }
}
