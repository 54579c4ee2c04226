//! Arrays of an MPI job: [`DistArray`], split by rows across the ranks, and
//! [`Replicated`], whole on every node. Each lives in one shmpar segment
//! per node, created by the node's leader and attached by its other ranks.

use std::ops::Range;

use ndarray::{Array, ArrayBase, ArrayView, ArrayViewMut, Axis, Data, Dimension, IntoDimension, RemoveAxis};
use shmpar_core::{Element, MAX_NAME_LEN, Segment, SharedArray};

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::World;
use super::comm::{self, tag};
use crate::error::{Error, Result};

/// An array block-distributed along axis 0 across the ranks of a [`World`].
///
/// Rank *r* of *n* owns the rows `chunk_range(rows, n, r)`
/// ([`shmpar_core::chunk::chunk_range`]), the rows worker *r* of a pool of
/// *n* workers gets. The ranks of a node keep their rows in one shmpar
/// segment, created by the node's leader (its first rank) and attached by
/// the others: one copy per node, named like any shmpar array (listed by
/// `shmpar ls`, attachable from NumPy, removed by `shmpar gc` if its
/// creator dies). Besides the node's rows the segment holds up to `halo`
/// *ghost rows* on either side, copies of the neighbouring nodes' rows for
/// stencils ([`World::double_buffer`]).
///
/// Every constructor is collective: every rank calls it, with the same
/// shape, and gets its handle of the same array.
///
/// A rank reads and writes its own rows ([`local`](Self::local),
/// [`local_mut`](Self::local_mut)) and runs jobs on them
/// ([`World::run`]); the other rows it sees only through the collective
/// calls that synchronize with their owners ([`gather`](Self::gather),
/// [`allgather`](Self::allgather), [`whole`](super::whole) arguments, the
/// double buffer's window).
pub struct DistArray<T: Element, D: Dimension> {
    dim: D,
    halo: usize,
    rank: usize,
    ranks: usize,
    /// Global rows owned by this rank.
    own: Range<usize>,
    /// Global rows owned by this rank's node.
    node_rows: Range<usize>,
    /// Global rows held by the node's segment: the node's rows and its
    /// ghost rows.
    stored: Range<usize>,
    /// The node's segment: `stored.len()` rows.
    local: SharedArray<T, D>,
}

impl<T: Element, D: Dimension> std::fmt::Debug for DistArray<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistArray")
            .field("shape", &self.dim.slice())
            .field("halo", &self.halo)
            .field("rank", &self.rank)
            .field("own_rows", &self.own)
            .field("segment", &self.local.name())
            .finish()
    }
}

/// An array held whole on every node: one shmpar segment per node, written
/// once when it is made and read only after, so every rank may read all of
/// it. Made by [`broadcast`](Self::broadcast) from rank 0 or by
/// [`DistArray::allgather`].
pub struct Replicated<T: Element, D: Dimension> {
    array: SharedArray<T, D>,
    rank: usize,
    ranks: usize,
}

impl<T: Element, D: Dimension> std::fmt::Debug for Replicated<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicated")
            .field("shape", &self.array.shape())
            .field("segment", &self.array.name())
            .finish()
    }
}

fn mismatch(reason: impl Into<String>) -> Error {
    Error::Mismatch {
        reason: reason.into(),
    }
}

/// Creates the node's segment for an array of `local` shape: the leader
/// creates it, runs `prepare` on it, and broadcasts its name over the
/// node's communicator; the others attach. Collective over `comm`; every
/// rank gets the same verdict.
pub(crate) fn node_segment<T: Element, D: Dimension>(
    comm: &SimpleCommunicator,
    node: &SimpleCommunicator,
    local: &D,
    prepare: impl FnOnce(&SharedArray<T, D>) -> Result<()>,
) -> Result<SharedArray<T, D>> {
    // The name travels as a length (2 bytes, 0: the leader failed) and its bytes.
    let mut message = [0u8; 2 + MAX_NAME_LEN];
    let mut mine: Result<Option<SharedArray<T, D>>> = Ok(None);
    if node.rank() == 0 {
        mine = SharedArray::<T, D>::create(local.clone())
            .map_err(Error::from)
            .and_then(|array| prepare(&array).map(|()| Some(array)));
        if let Ok(Some(array)) = &mine {
            let name = array.name();
            message[..2].copy_from_slice(&(name.len() as u16).to_le_bytes());
            message[2..2 + name.len()].copy_from_slice(name.as_bytes());
        }
    }
    comm::broadcast(node, 0, &mut message);
    let result: Result<SharedArray<T, D>> = match mine {
        Ok(Some(array)) => Ok(array),
        Err(e) => Err(e),
        Ok(None) => {
            let len = u16::from_le_bytes([message[0], message[1]]) as usize;
            match std::str::from_utf8(&message[2..2 + len.min(MAX_NAME_LEN)]) {
                _ if len == 0 => Err(comm::failed_elsewhere(
                    comm.rank() as usize - node.rank() as usize,
                    "create its node's segment",
                )),
                Ok(name) => SharedArray::<T, D>::attach_with_shape(name, local.clone()).map_err(Error::from),
                Err(_) => Err(mismatch("the node leader sent a segment name that is not UTF-8")),
            }
        }
    };
    match comm::first_failure(comm, result.is_ok()) {
        None => result,
        Some(rank) => Err(result
            .err()
            .unwrap_or_else(|| comm::failed_elsewhere(rank, "create or attach its node's segment"))),
    }
}

/// [`node_segment`] over the world's communicators, with nothing to prepare.
fn world_segment<T: Element, D: Dimension>(world: &World, local: &D) -> Result<SharedArray<T, D>> {
    node_segment(&world.comm, &world.node, local, |_| Ok(()))
}

/// Rank 0's shape, on every rank; `None` on rank 0 means it passed no
/// array. Collective.
fn broadcast_shape<D: Dimension>(world: &World, shape: Option<&[usize]>) -> Result<D> {
    let ndim = comm::broadcast_u64(&world.comm, 0, shape.map_or(u64::MAX, |s| s.len() as u64));
    if ndim == u64::MAX {
        return Err(mismatch(
            "rank 0 passed no array to distribute; it must pass Some(array)",
        ));
    }
    let mut dims = vec![0u64; ndim as usize];
    if let Some(shape) = shape {
        dims.iter_mut().zip(shape).for_each(|(d, &s)| *d = s as u64);
    }
    comm::broadcast(&world.comm, 0, comm::as_bytes_mut(&mut dims));
    if D::NDIM.is_some_and(|n| n != dims.len()) {
        return Err(mismatch(format!(
            "rank 0's array has {} axes, this rank's type has {:?}",
            dims.len(),
            D::NDIM
        )));
    }
    let mut dim = D::zeros(dims.len());
    dim.slice_mut()
        .iter_mut()
        .zip(&dims)
        .for_each(|(d, &s)| *d = s as usize);
    Ok(dim)
}

/// Checks that every rank passed the shape rank 0 passed. Collective.
fn check_same_shape(world: &World, dim: &[usize]) -> Result<()> {
    let root = broadcast_shape::<ndarray::IxDyn>(world, Some(dim))?;
    match comm::first_failure(&world.comm, root.slice() == dim) {
        None => Ok(()),
        Some(rank) => Err(mismatch(format!(
            "every rank must pass the same shape; rank {rank} passed another than rank 0's {:?}",
            root.slice()
        ))),
    }
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> DistArray<T, D> {
    /// Creates a zero-filled distributed array of `shape`. Collective.
    ///
    /// # Errors
    /// [`Error::Mismatch`] for a 0-dimensional shape or if the ranks pass
    /// different shapes; the segment errors of [`SharedArray::create`]
    /// (as [`Error::Core`] on the rank that met them, as
    /// [`Error::Mpi`] naming that rank on the others).
    pub fn create<Sh: IntoDimension<Dim = D>>(world: &World, shape: Sh) -> Result<Self> {
        Self::create_with_halo(world, shape, 0)
    }

    /// Creates a zero-filled distributed array of `shape` whose node
    /// segments hold `halo` ghost rows beyond the node's rows on either
    /// side: what a stencil of radius `halo` needs in
    /// [`World::double_buffer`]. Collective.
    ///
    /// # Errors
    /// As [`create`](Self::create); [`Error::Mismatch`] if a node owns
    /// fewer than `halo` rows in a job of several nodes (its neighbours'
    /// ghost rows would come from further away).
    pub fn create_with_halo<Sh: IntoDimension<Dim = D>>(
        world: &World,
        shape: Sh,
        halo: usize,
    ) -> Result<Self> {
        let dim = shape.into_dimension();
        check_same_shape(world, dim.slice())?;
        Self::create_checked(world, dim, halo)
    }

    fn create_checked(world: &World, dim: D, halo: usize) -> Result<Self> {
        let Some(&rows) = dim.slice().first() else {
            return Err(mismatch("a distributed array needs at least one axis to split"));
        };
        if world.nodes() > 1 && halo > 0 {
            if let Some(node) = (0..world.nodes()).find(|&n| world.node_rows(rows, n).len() < halo) {
                return Err(mismatch(format!(
                    "node {node} owns {} of the {rows} rows, fewer than the halo of {halo}: use fewer ranks or a \
                     larger array",
                    world.node_rows(rows, node).len()
                )));
            }
        }
        let own = world.own_rows(rows, world.rank);
        let node_rows = world.node_rows(rows, world.node());
        let stored = if halo == 0 {
            node_rows.clone()
        } else {
            node_rows.start.saturating_sub(halo)..(node_rows.end + halo).min(rows)
        };
        let mut local_dim = dim.clone();
        local_dim.slice_mut()[0] = stored.len();
        let local = world_segment::<T, D>(world, &local_dim)?;
        let array = DistArray {
            dim,
            halo,
            rank: world.rank,
            ranks: world.size,
            own,
            node_rows,
            stored,
            local,
        };
        // Best effort: map this rank's pages now, not at the first job.
        let _ = array.local.prefault_rows(array.local_rows(array.own.clone()));
        Ok(array)
    }

    /// Distributes `source` from rank 0: every rank gets its rows. Rank 0
    /// passes `Some(array)`, the others `None` (what they pass is ignored).
    /// Collective.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if rank 0 passes `None`, and as
    /// [`create`](Self::create).
    pub fn scatter<S: Data<Elem = T>>(world: &World, source: Option<&ArrayBase<S, D>>) -> Result<Self> {
        Self::scatter_with_halo(world, source, 0)
    }

    /// [`scatter`](Self::scatter) into an array with `halo` ghost rows
    /// ([`create_with_halo`](Self::create_with_halo)). Collective.
    ///
    /// # Errors
    /// As [`scatter`](Self::scatter) and
    /// [`create_with_halo`](Self::create_with_halo).
    pub fn scatter_with_halo<S: Data<Elem = T>>(
        world: &World,
        source: Option<&ArrayBase<S, D>>,
        halo: usize,
    ) -> Result<Self> {
        let source = if world.rank == 0 { source } else { None };
        let dim = broadcast_shape::<D>(world, source.map(|s| s.shape()))?;
        let mut array = Self::create_checked(world, dim, halo)?;
        if let Some(source) = source {
            for node in 0..world.nodes() {
                let part = source.slice_axis(Axis(0), world.node_rows(array.rows(), node).into());
                if node == 0 {
                    let rows = array.local_rows(array.node_rows.clone());
                    array
                        .local
                        .view_mut()
                        .slice_axis_mut(Axis(0), rows.into())
                        .assign(&part);
                } else {
                    let part = part.as_standard_layout();
                    let elements = part.as_slice().expect("a standard-layout array is one slice");
                    comm::send(
                        &world.comm,
                        world.node_ranks(node).start,
                        tag::SCATTER,
                        comm::as_bytes(elements),
                    );
                }
            }
        } else if world.is_leader() {
            let rows = array.local_rows(array.node_rows.clone());
            let mut view = array.local.view_mut();
            let mut mine = view.slice_axis_mut(Axis(0), rows.into());
            let elements = mine
                .as_slice_mut()
                .expect("rows of a C-order array are one slice");
            comm::receive(&world.comm, 0, tag::SCATTER, comm::as_bytes_mut(elements));
        }
        // The node's other ranks read their rows only after the leader wrote them.
        world.barrier();
        Ok(array)
    }

    /// Collects the array on rank 0: `Some(array)` there, `None` on the
    /// other ranks. Collective.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for checks every rank agrees on.
    pub fn gather(&self, world: &World) -> Result<Option<Array<T, D>>> {
        let mut out = (world.rank == 0).then(|| Array::from_elem(self.dim.clone(), T::default()));
        self.gather_into(world, out.as_mut().map(|a| a.view_mut()));
        Ok(out)
    }

    /// Collects the array whole on every node: a [`Replicated`] copy (one
    /// per node). Collective.
    ///
    /// # Errors
    /// The segment errors of [`Replicated::broadcast`].
    pub fn allgather(&self, world: &World) -> Result<Replicated<T, D>> {
        let mut copy = Replicated::create(world, self.dim.clone())?;
        self.gather_into(world, (world.rank == 0).then(|| copy.array.view_mut()));
        copy.spread(world);
        Ok(copy)
    }

    /// Copies every node's rows into `out` on rank 0 (`Some` there only).
    fn gather_into(&self, world: &World, out: Option<ArrayViewMut<'_, T, D>>) {
        // Every rank has finished writing its rows before the leader reads them.
        world.barrier();
        if let Some(mut out) = out {
            for node in 0..world.nodes() {
                let rows = world.node_rows(self.rows(), node);
                let mut part = out.slice_axis_mut(Axis(0), rows.clone().into());
                if node == 0 {
                    part.assign(
                        &self
                            .local
                            .view()
                            .slice_axis(Axis(0), self.local_rows(rows).into()),
                    );
                } else {
                    let elements = part
                        .as_slice_mut()
                        .expect("rows of a new C-order array are one slice");
                    comm::receive(
                        &world.comm,
                        world.node_ranks(node).start,
                        tag::GATHER,
                        comm::as_bytes_mut(elements),
                    );
                }
            }
        } else if world.is_leader() {
            let rows = self.local_rows(self.node_rows.clone());
            let view = self.local.view();
            let mine = view.slice_axis(Axis(0), rows.into());
            let elements = mine.as_slice().expect("rows of a C-order array are one slice");
            comm::send(&world.comm, 0, tag::GATHER, comm::as_bytes(elements));
        }
        // The leader has read the node's rows before their owners write again.
        world.barrier();
    }
}

impl<T: Element, D: Dimension> DistArray<T, D> {
    /// The global shape.
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// Number of elements of the whole array.
    pub fn len(&self) -> usize {
        self.dim.size()
    }

    /// Whether the whole array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows (axis 0) of the whole array.
    pub fn rows(&self) -> usize {
        self.dim.slice()[0]
    }

    /// The ghost rows kept on either side of a node's rows.
    pub fn halo(&self) -> usize {
        self.halo
    }

    /// The global rows this rank owns.
    pub fn own_rows(&self) -> Range<usize> {
        self.own.clone()
    }

    /// The global rows this rank's node owns (its ranks' rows together).
    pub fn node_rows(&self) -> Range<usize> {
        self.node_rows.clone()
    }

    /// The global rows the node's segment holds: the node's rows and its
    /// ghost rows. Row `i` of the segment is global row `stored_rows().start + i`.
    pub fn stored_rows(&self) -> Range<usize> {
        self.stored.clone()
    }

    /// The node's segment (its name, for `shmpar inspect` or NumPy).
    pub fn segment(&self) -> &Segment {
        self.local.segment()
    }

    /// The name of the node's segment.
    pub fn name(&self) -> String {
        self.local.name()
    }

    /// This rank's rows, read only.
    pub fn local(&self) -> ArrayView<'_, T, D>
    where
        D: RemoveAxis,
    {
        self.local
            .view()
            .slice_axis_move(Axis(0), self.local_rows(self.own.clone()).into())
    }

    /// This rank's rows, mutable.
    pub fn local_mut(&mut self) -> ArrayViewMut<'_, T, D>
    where
        D: RemoveAxis,
    {
        let rows = self.local_rows(self.own.clone());
        // SAFETY: these rows belong to this rank: no other rank writes or
        // reads them outside a collective call that synchronizes with this
        // one, and `&mut self` excludes every other view in this process.
        unsafe { self.local.rows_mut_unchecked(rows) }.expect("own rows lie within the node's segment")
    }

    /// `global` rows in the node segment's coordinates.
    pub(crate) fn local_rows(&self, global: Range<usize>) -> Range<usize> {
        global.start - self.stored.start..global.end - self.stored.start
    }

    pub(crate) fn local_array(&self) -> &SharedArray<T, D> {
        &self.local
    }

    pub(crate) fn ranks(&self) -> usize {
        self.ranks
    }
}

impl<T: Element, D: Dimension + 'static> Replicated<T, D> {
    /// Creates the per-node copies, zero-filled. Collective.
    fn create(world: &World, dim: D) -> Result<Self> {
        Ok(Replicated {
            array: world_segment::<T, D>(world, &dim)?,
            rank: world.rank,
            ranks: world.size,
        })
    }

    /// Sends rank 0's copy to every node leader, then lets the node's
    /// ranks read it.
    fn spread(&mut self, world: &World) {
        if let Some(leaders) = &world.leaders {
            let mut view = self.array.view_mut();
            let elements = view.as_slice_mut().expect("a SharedArray is in C order");
            comm::broadcast(leaders, 0, comm::as_bytes_mut(elements));
        }
        world.barrier();
    }

    /// Copies `source` from rank 0 to every node. Rank 0 passes
    /// `Some(array)`, the others `None` (what they pass is ignored).
    /// Collective.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if rank 0 passes `None`; the segment errors of
    /// [`SharedArray::create`] as [`DistArray::create`] reports them.
    pub fn broadcast<S: Data<Elem = T>>(world: &World, source: Option<&ArrayBase<S, D>>) -> Result<Self> {
        let source = if world.rank == 0 { source } else { None };
        let dim = broadcast_shape::<D>(world, source.map(|s| s.shape()))?;
        let mut copy = Self::create(world, dim)?;
        if let Some(source) = source {
            copy.array.view_mut().assign(source);
        }
        copy.spread(world);
        Ok(copy)
    }

    /// The whole array (this node's copy).
    pub fn view(&self) -> ArrayView<'_, T, D> {
        self.array.view()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// Rows along axis 0.
    pub fn rows(&self) -> usize {
        self.array.rows()
    }

    /// The rows this rank owns when the array is passed split (`&r`).
    pub fn own_rows(&self) -> Range<usize> {
        shmpar_core::chunk::chunk_range(self.rows(), self.ranks, self.rank)
    }

    /// This node's segment.
    pub fn segment(&self) -> &Segment {
        self.array.segment()
    }

    /// The name of this node's segment.
    pub fn name(&self) -> String {
        self.array.name()
    }

    pub(crate) fn local_array(&self) -> &SharedArray<T, D> {
        &self.array
    }

    pub(crate) fn into_local_array(self) -> SharedArray<T, D> {
        self.array
    }

    pub(crate) fn ranks(&self) -> usize {
        self.ranks
    }
}
