//! Ghost rows for stencils: before each step of a double buffer, the ranks
//! at the edges of a node swap `halo` boundary rows with the neighbouring
//! nodes (`MPI_Sendrecv`). Inside a node nothing moves: the ranks read each
//! other's rows in the node's segment.

use std::ops::Range;

use mpi::traits::*;
use ndarray::{Axis, Dimension, RemoveAxis};
use shmpar_core::Element;

use super::World;
use super::array::DistArray;
use super::comm::{self, tag};

/// Who this rank swaps ghost rows with, worked out once per double buffer
/// from facts every rank shares (the row count, the halo, the nodes).
pub(crate) struct Plan {
    halo: usize,
    rows: usize,
    node_rows: Range<usize>,
    /// The previous node's last rank, if this rank is its node's first and
    /// a node precedes it.
    below: Option<usize>,
    /// The next node's first rank, if this rank is its node's last and a
    /// node follows it.
    above: Option<usize>,
    /// Whether some rank's window reaches ghost rows that another rank of
    /// its node received (a rank with fewer rows than the halo at a node's
    /// edge): the step then waits for the exchange to finish everywhere.
    pub(crate) ghosts_shared: bool,
}

impl Plan {
    pub(crate) fn new<T: Element, D: Dimension>(world: &World, array: &DistArray<T, D>) -> Plan {
        let (rows, halo) = (array.rows(), array.halo());
        let node = world.node();
        let ranks = world.node_ranks(node);
        let below = (node > 0 && world.rank() == ranks.start).then(|| ranks.start - 1);
        let above = (node + 1 < world.nodes() && world.rank() == ranks.end - 1).then_some(ranks.end);
        let window = |own: Range<usize>| own.start.saturating_sub(halo)..(own.end + halo).min(rows);
        let ghosts_shared = (0..world.nodes()).any(|n| {
            let ranks = world.node_ranks(n);
            let node_rows = world.node_rows(rows, n);
            ranks.clone().any(|r| {
                let w = window(world.own_rows(rows, r));
                (r != ranks.start && w.start < node_rows.start)
                    || (r != ranks.end - 1 && w.end > node_rows.end)
            })
        });
        Plan {
            halo,
            rows,
            node_rows: array.node_rows(),
            below,
            above,
            ghosts_shared,
        }
    }

    /// The rows a rank owning `own` reads in a step: `halo` more on either
    /// side, clipped to the array.
    pub(crate) fn window(&self, own: &Range<usize>) -> Range<usize> {
        own.start.saturating_sub(self.halo)..(own.end + self.halo).min(self.rows)
    }

    /// Fills the ghost rows of `array` from the neighbouring nodes, and
    /// sends them theirs. Collective over the ranks at nodes' edges; the
    /// others return at once.
    pub(crate) fn exchange<T: Element, D: Dimension + RemoveAxis>(
        &self,
        world: &World,
        array: &mut DistArray<T, D>,
    ) {
        let (lo, hi, h) = (self.node_rows.start, self.node_rows.end, self.halo);
        // Rows moving up: the node's top rows to the next node's lower ghosts.
        let up = (
            self.above.map(|to| (to, hi - h..hi)),
            self.below.map(|from| (from, lo - h..lo)),
        );
        swap(world, array, up, tag::HALO_UP);
        // Rows moving down: the node's bottom rows to the previous node's upper ghosts.
        let down = (
            self.below.map(|to| (to, lo..lo + h)),
            self.above.map(|from| (from, hi..hi + h)),
        );
        swap(world, array, down, tag::HALO_DOWN);
    }
}

type Part = Option<(usize, Range<usize>)>;

/// Sends the global rows of `send` to its rank and receives the global
/// rows of `receive` from its rank, at once (`MPI_Sendrecv`) when there are
/// both, so a chain of nodes never deadlocks.
fn swap<T: Element, D: Dimension + RemoveAxis>(
    world: &World,
    array: &mut DistArray<T, D>,
    (send, receive): (Part, Part),
    tag: i32,
) {
    let local = array.local_array();
    let view = local.view();
    let outgoing = send.map(|(to, rows)| {
        let rows = array.local_rows(rows);
        (to, view.slice_axis(Axis(0), rows.into()))
    });
    let incoming = match receive {
        Some((from, rows)) => {
            let rows = array.local_rows(rows);
            // SAFETY: ghost rows are written by this rank only, here, and
            // read by nobody while the exchange runs: the ranks whose window
            // reaches them read them after this step's barrier (or this rank
            // alone, after this call). They are disjoint from the node rows
            // `outgoing` reads.
            let ghosts =
                unsafe { local.rows_mut_unchecked(rows) }.expect("ghost rows lie within the node's segment");
            Some((from, ghosts))
        }
        None => None,
    };
    match (outgoing, incoming) {
        (Some((to, rows)), Some((from, mut ghosts))) => {
            let send_bytes = comm::as_bytes(rows.as_slice().expect("rows of a C-order array are one slice"));
            let receive_bytes = comm::as_bytes_mut(
                ghosts
                    .as_slice_mut()
                    .expect("rows of a C-order array are one slice"),
            );
            let (to, from) = (
                world.comm.process_at_rank(to as i32),
                world.comm.process_at_rank(from as i32),
            );
            // Both sides cut the same number of rows into the same pieces.
            for (s, r) in comm::pieces(send_bytes.len()).zip(comm::pieces(receive_bytes.len())) {
                mpi::point_to_point::send_receive_into_with_tags(
                    &send_bytes[s],
                    &to,
                    tag,
                    &mut receive_bytes[r],
                    &from,
                    tag,
                );
            }
        }
        (Some((to, rows)), None) => {
            let bytes = comm::as_bytes(rows.as_slice().expect("rows of a C-order array are one slice"));
            comm::send(&world.comm, to, tag, bytes);
        }
        (None, Some((from, mut ghosts))) => {
            let bytes = comm::as_bytes_mut(
                ghosts
                    .as_slice_mut()
                    .expect("rows of a C-order array are one slice"),
            );
            comm::receive(&world.comm, from, tag, bytes);
        }
        (None, None) => {}
    }
}
