//! [`Ctx`]: what a kernel knows about where it runs.

use std::ops::Range;

/// Unwind payload of a worker that left a phase because the barrier was
/// poisoned by another worker's failure; the worker reports "aborted".
pub(crate) struct Aborted;

/// The message of a kernel's panic, from its payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// How the workers of one job meet between phases.
#[derive(Clone, Copy)]
pub(crate) enum Meet<'a> {
    /// Worker processes: the barrier in the control segment.
    Processes(&'a shmpar_core::Barrier<'a>),
    /// The ranks of a job on the threads or serial backend.
    Local(&'a super::local::LocalMeet),
    /// The ranks of an MPI job: a barrier across every rank.
    #[cfg(feature = "mpi")]
    Mpi(&'a crate::mpi::Rendezvous),
}

/// What a kernel knows about where it runs: its rank, the number of
/// workers, the rows (axis 0) of the split it owns, and the barrier that
/// separates phases.
pub struct Ctx<'a> {
    pub(crate) rank: usize,
    pub(crate) workers: usize,
    pub(crate) rows: Range<usize>,
    pub(crate) step: usize,
    pub(crate) chunk: usize,
    /// Whether chunks are claimed (dynamic, guided): then workers run
    /// different numbers of chunks and may not meet at a barrier.
    pub(crate) claimed: bool,
    pub(crate) meet: Meet<'a>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("rank", &self.rank)
            .field("workers", &self.workers)
            .field("rows", &self.rows)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(rank: usize, workers: usize, rows: Range<usize>, meet: Meet<'a>) -> Ctx<'a> {
        Ctx {
            rank,
            workers,
            rows,
            step: 0,
            chunk: rank,
            claimed: false,
            meet,
        }
    }

    /// This worker's rank, `0..workers()`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of workers in the job.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The rows (axis 0) of the job's split arrays that this call owns:
    /// its views of split arguments are exactly these rows.
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// The index of the chunk this call runs: the worker's rank under
    /// [`Schedule::Static`](crate::Schedule::Static), the claimed chunk's
    /// index under the others. Partial results combine in this order.
    pub fn chunk(&self) -> usize {
        self.chunk
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
    ///
    /// # Panics
    /// Under a schedule other than [`Schedule::Static`](crate::Schedule::Static),
    /// where workers run different numbers of chunks and could never all
    /// meet: the job then fails with this message instead of hanging.
    pub fn barrier(&self) {
        assert!(
            !self.claimed,
            "Ctx::barrier needs Schedule::Static: under a dynamic or guided schedule workers run \
             different numbers of chunks and cannot all meet at a barrier"
        );
        let poisoned = match self.meet {
            Meet::Processes(barrier) => barrier.wait().is_err(),
            Meet::Local(meet) => meet.barrier(),
            #[cfg(feature = "mpi")]
            Meet::Mpi(rendezvous) => {
                rendezvous.wait();
                false
            }
        };
        if poisoned {
            std::panic::resume_unwind(Box::new(Aborted));
        }
    }
}
