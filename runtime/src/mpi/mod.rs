//! The MPI backend: the pool's kernels across the ranks of an MPI job, on
//! one machine or many (cargo feature `mpi`, off by default).
//!
//! A [`World`] is the job: every rank creates one, at the start of `main`.
//! A [`DistArray`] is block-distributed along axis 0: rank *r* of *n* owns
//! the rows `chunk_range(rows, n, r)`, the very rows worker *r* of a pool of
//! *n* workers gets, so a reduction gives the same bits on both. Inside a
//! machine (a *node*) the ranks do not each hold a copy: the node's first
//! rank creates one shmpar segment with the node's rows, sends its name to
//! the others over the node's communicator (`MPI_Comm_split_type`,
//! `MPI_COMM_TYPE_SHARED`), and they attach to it. So `shmpar ls` lists it,
//! NumPy attaches to it by name, and `shmpar gc` removes it after a crash,
//! as for any array of the pool.
//!
//! Jobs take the pool's arguments and kernels, unchanged:
//!
//! | argument | the kernel gets |
//! |---|---|
//! | `&mut a` ([`DistArray`]) | its own rows of `a`, mutable |
//! | `&a` ([`DistArray`] or [`Replicated`]) | its own rows of `a`, read only |
//! | [`whole(&r)`](whole) ([`Replicated`]) | all of `r`: the node's copy |
//! | [`whole(&a)`](whole) ([`DistArray`]) | all of `a`, gathered for the job |
//!
//! [`Ctx::rank`](crate::Ctx::rank) and [`Ctx::workers`](crate::Ctx::workers)
//! are the rank and the size of the job, [`Ctx::barrier`](crate::Ctx::barrier)
//! waits for every rank, and [`World::map_reduce`] gathers every rank's
//! partial result as bytes ([`Transfer`](crate::Transfer)) and combines them
//! in rank order on every rank.
//!
//! ```no_run
//! use shmpar::mpi::{DistArray, World};
//!
//! fn main() -> Result<(), shmpar::Error> {
//!     let world = World::init()?;
//!     let mut a = DistArray::<f64, _>::create(&world, 10_000_000)?;
//!     world.run(&mut a, (), |ctx, mut rows, _| {
//!         for (k, x) in rows.iter_mut().enumerate() {
//!             *x = (ctx.rows().start + k) as f64 - 5e6; // global row numbers
//!         }
//!     })?;
//!     world.for_each_chunk(&mut a, |rows| shmpar_kernels::sqrt_abs(rows))?;
//!     let sum = world.map_reduce(&a, |rows| rows.sum(), |x, y| x + y)?;
//!     if world.rank() == 0 {
//!         println!("mean {}", sum / a.len() as f64);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Run it with `mpirun -n 4 ./program` or `srun -n 4 ./program`;
//! `docs/mpi.md` says how, and `README.md` beside this file gives the
//! design: the node segments, the ghost-row exchange, and what happens when
//! a rank fails.

mod args;
mod array;
mod comm;
mod halo;
mod job;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::thread::ThreadId;

use mpi::environment::Universe;
use mpi::topology::{Color, Communicator, SimpleCommunicator};
use mpi::traits::*;
use ndarray::Ix1;
use shmpar_core::SharedArray;

use crate::error::{Error, Result};

/// rsmpi, the MPI bindings shmpar uses: for a program's own MPI calls on
/// [`World::comm`] (`use shmpar::mpi::rsmpi::traits::*;`).
pub use ::mpi as rsmpi;
pub use args::{DistArg, DistArgs, DistKind, Whole, WholeSource, whole};
pub use array::{DistArray, Replicated};

/// The environment variable that caps the ranks per node (see
/// [`World::init`]).
pub const NODE_SIZE_VAR: &str = "SHMPAR_MPI_NODE_SIZE";

/// The exit status of a job aborted because a kernel panicked: Rust's own
/// status for a panic.
const PANIC_STATUS: i32 = 101;

/// The ranks of an MPI job, as shmpar sees them.
///
/// Ranks are numbered node by node: the ranks that share a node (as
/// `MPI_Comm_split_type` with `MPI_COMM_TYPE_SHARED` finds them) get
/// consecutive numbers, whatever order the launcher gave them, so the rows
/// of a node are one contiguous block and its segment one array. World rank
/// 0 stays rank 0. [`comm`](Self::comm) is the communicator in that order,
/// for a program's own MPI calls.
///
/// Create one `World`, on the thread that runs `main`, before anything else
/// uses MPI: it initializes MPI (`MPI_THREAD_FUNNELED`: shmpar calls MPI on
/// this thread only) and finalizes it when dropped. A panic that unwinds
/// past the `World` aborts the job (`MPI_Abort`) instead of finalizing: the
/// other ranks may wait in a collective call for this one, and
/// `MPI_Finalize` would wait for them.
pub struct World {
    rendezvous: Rendezvous,
    comm: SimpleCommunicator,
    node: SimpleCommunicator,
    /// The node leaders (node rank 0), in node order; `None` elsewhere.
    leaders: Option<SimpleCommunicator>,
    rank: usize,
    size: usize,
    node_index: usize,
    /// The first rank of each node, then `size`.
    node_starts: Vec<usize>,
    /// Finalizes MPI when dropped: declared last, so the communicators above
    /// are freed first.
    _universe: Universe,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("node", &self.node_index)
            .field("nodes", &self.nodes())
            .finish_non_exhaustive()
    }
}

fn start_error(reason: impl Into<String>) -> Error {
    Error::Mpi {
        reason: reason.into(),
    }
}

impl World {
    /// Initializes MPI and finds the job's nodes. Every rank calls it.
    ///
    /// The ranks that share memory (`MPI_Comm_split_type` with
    /// `MPI_COMM_TYPE_SHARED`) form a node. With [`NODE_SIZE_VAR`]
    /// (`SHMPAR_MPI_NODE_SIZE=k`, the same on every rank) a machine's ranks
    /// form nodes of at most `k` ranks instead, each with its own segments
    /// and ghost rows: to run the paths between nodes on one machine, or to
    /// keep one copy per socket.
    ///
    /// Also installs shmpar's cleanup handler for SIGINT, SIGTERM and SIGHUP
    /// (where their disposition is the default), so a rank the launcher
    /// stops with SIGTERM removes the segments it created.
    ///
    /// # Errors
    /// [`Error::Mpi`] if MPI is already initialized in this process (one
    /// `World` per process, and nothing else may initialize MPI), or if the
    /// MPI library numbers the ranks of a node in a way shmpar cannot use.
    /// Every rank gets the same answer.
    pub fn init() -> Result<World> {
        let (universe, _provided) =
            mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or_else(|| {
                start_error(
                    "MPI is already initialized in this process: create one shmpar::mpi::World, first",
                )
            })?;
        // Before the first segment: a rank that the launcher stops with
        // SIGTERM removes the segments it created.
        shmpar_core::signals::install();
        let world = universe.world();
        let world_rank = world.rank();
        // Number ranks node by node: key each rank by its node's lowest world
        // rank (ties keep the world order), so world rank 0 stays 0.
        let mut node_key = world_rank;
        world
            .split_shared(world_rank)
            .process_at_rank(0)
            .broadcast_into(&mut node_key);
        let comm = world
            .split_by_color_with_key(Color::with_value(0), node_key)
            .ok_or_else(|| start_error("MPI_Comm_split returned no communicator for a defined color"))?;
        let rank = comm.rank() as usize;
        let size = comm.size() as usize;
        let node = comm.split_shared(comm.rank());
        // Smaller nodes than the machine's, on request: to try the paths
        // between nodes on one machine, or to keep a segment per socket.
        let node = match std::env::var(NODE_SIZE_VAR).ok().map(|v| v.parse::<usize>()) {
            None => node,
            Some(Ok(ranks)) if ranks > 0 => node
                .split_by_color(Color::with_value((node.rank() as usize / ranks) as i32))
                .ok_or_else(|| start_error("MPI_Comm_split returned no communicator for a defined color"))?,
            Some(_) => {
                return Err(start_error(format!(
                    "{NODE_SIZE_VAR} must be a number of ranks, at least 1"
                )));
            }
        };
        let leader = node.rank() == 0;
        let leaders = comm.split_by_color(if leader {
            Color::with_value(0)
        } else {
            Color::undefined()
        });
        let node_size = node.size() as u32;
        let meeting = array::node_segment::<u8, Ix1>(&comm, &node, &Ix1(1), |array| {
            array.segment().barrier().reset(node_size).map_err(Error::from)
        })?;
        let several_nodes =
            comm::broadcast_u64(&comm, 0, leaders.as_ref().map_or(0, |l| l.size() as u64)) > 1;
        let rendezvous = Rendezvous {
            node: meeting,
            node_rank: node.rank() as u32,
            leaders: leaders.as_ref().filter(|_| several_nodes).map(|l| l.duplicate()),
            several_nodes,
            thread: std::thread::current().id(),
        };

        let mut first = rank as u64;
        node.process_at_rank(0).broadcast_into(&mut first);
        let mut firsts = vec![0u64; size];
        comm.all_gather_into(&first, &mut firsts[..]);
        // Every rank checks the same table, so all agree on the verdict.
        let mut node_starts: Vec<usize> = Vec::new();
        for (r, &f) in firsts.iter().enumerate() {
            let f = f as usize;
            if node_starts.last() != Some(&f) {
                if f != r {
                    return Err(start_error(format!(
                        "rank {r} belongs to the node that starts at rank {f}: the ranks of a node are not \
                         consecutive after MPI_Comm_split, which shmpar needs"
                    )));
                }
                node_starts.push(f);
            }
        }
        let node_index = node_starts.iter().rposition(|&f| f <= rank).unwrap_or(0);
        node_starts.push(size);
        if node.size() as usize != node_starts[node_index + 1] - node_starts[node_index] {
            return Err(start_error(
                "the node's communicator and the table of nodes disagree",
            ));
        }
        Ok(World {
            rendezvous,
            comm,
            node,
            leaders,
            rank,
            size,
            node_index,
            node_starts,
            _universe: universe,
        })
    }

    /// This rank, `0..size()`: the chunk of the job's rows it owns.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks in the job.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of nodes (machines, or shared-memory domains) in the job.
    pub fn nodes(&self) -> usize {
        self.node_starts.len() - 1
    }

    /// The index of this rank's node, `0..nodes()`.
    pub fn node(&self) -> usize {
        self.node_index
    }

    /// The ranks of node `node`: consecutive (none for `node >= nodes()`).
    pub fn node_ranks(&self, node: usize) -> Range<usize> {
        match (self.node_starts.get(node), self.node_starts.get(node + 1)) {
            (Some(&first), Some(&end)) => first..end,
            _ => self.size..self.size,
        }
    }

    /// Whether this rank leads its node: it creates the node's segments,
    /// and it talks to rank 0 for scatter and gather.
    pub fn is_leader(&self) -> bool {
        self.rank == self.node_starts[self.node_index]
    }

    /// The job's communicator, ranks numbered as shmpar numbers them, for
    /// the program's own MPI calls.
    pub fn comm(&self) -> &SimpleCommunicator {
        &self.comm
    }

    /// Waits until every rank has called `barrier`, as
    /// [`Ctx::barrier`](crate::Ctx::barrier) does in a kernel: the ranks of
    /// a node meet at shmpar's barrier in a segment of the node's, and the
    /// node leaders meet with `MPI_Barrier` in between. Writes to a node's
    /// segments made before it are visible to every rank of the node after
    /// it.
    pub fn barrier(&self) {
        self.rendezvous.wait();
    }

    /// Ends the whole job now with `status` (`MPI_Abort`): for a rank that
    /// cannot go on while the others may wait for it.
    pub fn abort(&self, status: i32) -> ! {
        self.comm.abort(status)
    }

    /// Ends the job after a kernel panicked on this rank (the panic hook has
    /// printed its message).
    ///
    /// Why a library ends the process here: the other ranks are in, or on
    /// their way to, a collective call with this rank (the job's barrier,
    /// the gathering of partial results), and MPI offers no way to call them
    /// off. The choice is between aborting the job and hanging it;
    /// `MPI_Abort` is what MPI itself does for its own errors
    /// (`MPI_ERRORS_ARE_FATAL`), and the launcher then stops every rank.
    fn abort_after_panic(&self) -> ! {
        eprintln!(
            "shmpar::mpi: a kernel panicked on rank {} of {}; aborting the MPI job, since the other ranks cannot be \
             told to stop waiting for this one",
            self.rank, self.size
        );
        self.comm.abort(PANIC_STATUS)
    }

    /// The rows rank `rank` owns of an array of `rows` rows.
    pub(crate) fn own_rows(&self, rows: usize, rank: usize) -> Range<usize> {
        shmpar_core::chunk::chunk_range(rows, self.size, rank)
    }

    /// The rows the ranks of node `node` own together.
    pub(crate) fn node_rows(&self, rows: usize, node: usize) -> Range<usize> {
        let ranks = self.node_ranks(node);
        self.own_rows(rows, ranks.start).start..self.own_rows(rows, ranks.end - 1).end
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "shmpar::mpi: rank {} is unwinding from a panic; aborting the MPI job instead of finalizing it",
                self.rank
            );
            self.comm.abort(PANIC_STATUS);
        }
    }
}

/// The barrier of an MPI job, which a kernel's [`Ctx`](crate::Ctx) reaches
/// too: the ranks of a node meet at the barrier in a small segment of the
/// node's (shmpar's in-segment barrier: spin, then the shared futex), and
/// when there are several nodes their leaders meet with `MPI_Barrier` in
/// between, on a communicator of their own (so a kernel's barriers never
/// match a collective call of shmpar's), before releasing their node.
pub(crate) struct Rendezvous {
    /// A one-byte array whose header holds the node's barrier.
    node: SharedArray<u8, Ix1>,
    /// This rank's place among the node's (a hint for the barrier's tree).
    node_rank: u32,
    /// The node leaders, on a leader of a job of several nodes.
    leaders: Option<SimpleCommunicator>,
    several_nodes: bool,
    /// The thread that initialized MPI: the only one that may call it.
    thread: ThreadId,
}

// SAFETY: the one method, `wait`, calls MPI only on the thread that
// initialized it (checked; MPI_THREAD_FUNNELED allows exactly that) and
// only reads the communicator handle, which nothing changes after
// creation; the node's barrier is made for any thread of any process. So
// sharing `&Rendezvous` with other threads (a kernel that runs rayon inside
// its chunk and hands it `&Ctx`) cannot make two threads call MPI.
unsafe impl Sync for Rendezvous {}

impl Rendezvous {
    /// Waits for every rank. Every write to a shared segment made before
    /// the call, by any rank of this node, is visible after it (the
    /// in-segment barrier's release/acquire); ranks on other nodes see
    /// nothing of this node's memory but what messages carry.
    ///
    /// # Panics
    /// On another thread than the one that created the [`World`].
    pub(crate) fn wait(&self) {
        assert!(
            std::thread::current().id() == self.thread,
            "an MPI job's barrier was called on another thread than the one that created the shmpar::mpi::World; \
             MPI is initialized for that thread only"
        );
        self.meet_node();
        if self.several_nodes {
            if let Some(leaders) = &self.leaders {
                leaders.barrier();
            }
            self.meet_node();
        }
    }

    fn meet_node(&self) {
        if let Err(e) = self.node.segment().barrier().with_rank(self.node_rank).wait() {
            // Nothing poisons this barrier: its line was overwritten. The
            // ranks cannot meet any more, so the job cannot go on.
            eprintln!(
                "shmpar::mpi: the node's barrier in {} failed ({e}); aborting the MPI job",
                self.node.name()
            );
            SimpleCommunicator::world().abort(PANIC_STATUS);
        }
    }
}
