//! Bytes over MPI: arrays and partial results travel as bytes
//! (`MPI_BYTE`), in pieces that fit MPI's `int` counts.
//!
//! Every MPI call shmpar makes goes through this file or `halo.rs`, on the
//! thread that created the [`World`](super::World).

use std::ops::Range;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use shmpar_core::Element;

use crate::error::{Error, Result};

/// The largest message sent at once: MPI counts are `int`, and 1 GiB
/// pieces keep well inside them.
const PIECE: usize = 1 << 30;

/// Tags of shmpar's point-to-point messages (one communicator carries them
/// all, so each kind of message has its own).
pub(crate) mod tag {
    /// Rows from rank 0 to a node leader (scatter).
    pub(crate) const SCATTER: i32 = 0x5301;
    /// Rows from a node leader to rank 0 (gather).
    pub(crate) const GATHER: i32 = 0x5302;
    /// Ghost rows moving to higher rows.
    pub(crate) const HALO_UP: i32 = 0x5303;
    /// Ghost rows moving to lower rows.
    pub(crate) const HALO_DOWN: i32 = 0x5304;
}

/// `0..len` in pieces of at most [`PIECE`] bytes (none for 0 bytes).
pub(crate) fn pieces(len: usize) -> impl Iterator<Item = Range<usize>> {
    (0..len.div_ceil(PIECE)).map(move |i| i * PIECE..((i + 1) * PIECE).min(len))
}

/// The elements' bytes.
pub(crate) fn as_bytes<T: Element>(elements: &[T]) -> &[u8] {
    // SAFETY: `Element` types are plain numbers: no padding, so every byte
    // is initialized; `u8` has alignment 1; the length is the slice's size
    // in bytes, within the same allocation; the borrow is carried over.
    unsafe { std::slice::from_raw_parts(elements.as_ptr().cast::<u8>(), size_of_val(elements)) }
}

/// The elements' bytes, writable.
pub(crate) fn as_bytes_mut<T: Element>(elements: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; in addition every bit pattern is a valid
    // `T` (`Element`'s contract), so any bytes written leave valid elements,
    // and the exclusive borrow is carried over.
    unsafe { std::slice::from_raw_parts_mut(elements.as_mut_ptr().cast::<u8>(), size_of_val(elements)) }
}

/// Sends `bytes` to rank `to`, piece by piece.
pub(crate) fn send(comm: &SimpleCommunicator, to: usize, tag: i32, bytes: &[u8]) {
    let process = comm.process_at_rank(to as i32);
    for piece in pieces(bytes.len()) {
        process.send_with_tag(&bytes[piece], tag);
    }
}

/// Receives exactly `bytes.len()` bytes from rank `from`, piece by piece.
pub(crate) fn receive(comm: &SimpleCommunicator, from: usize, tag: i32, bytes: &mut [u8]) {
    let process = comm.process_at_rank(from as i32);
    for piece in pieces(bytes.len()) {
        process.receive_into_with_tag(&mut bytes[piece], tag);
    }
}

/// Broadcasts `bytes` from `root`, piece by piece: every rank passes a
/// buffer of the same length.
pub(crate) fn broadcast(comm: &SimpleCommunicator, root: usize, bytes: &mut [u8]) {
    let root = comm.process_at_rank(root as i32);
    for piece in pieces(bytes.len()) {
        root.broadcast_into(&mut bytes[piece]);
    }
}

/// Broadcasts a `u64` from `root`.
pub(crate) fn broadcast_u64(comm: &SimpleCommunicator, root: usize, value: u64) -> u64 {
    let mut value = value;
    comm.process_at_rank(root as i32).broadcast_into(&mut value);
    value
}

/// Every rank's `mine`, in rank order, on every rank (`MPI_Allgather` of
/// the lengths, then `MPI_Allgatherv` of the bytes).
///
/// # Errors
/// [`Error::TooLarge`] when the bytes of all ranks together pass MPI's
/// `int` count; every rank gets the same answer.
pub(crate) fn all_gather(comm: &SimpleCommunicator, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
    let size = comm.size() as usize;
    let mut lengths = vec![0u64; size];
    comm.all_gather_into(&(mine.len() as u64), &mut lengths[..]);
    let total: u64 = lengths.iter().sum();
    if total > i32::MAX as u64 || lengths.iter().any(|&l| l > i32::MAX as u64) {
        return Err(Error::TooLarge {
            what: "the partial results of all ranks together",
            size: total as usize,
            max: i32::MAX as usize,
            setting: "the size of the reduction's partial result (MPI counts are `int`)",
        });
    }
    let counts: Vec<i32> = lengths.iter().map(|&l| l as i32).collect();
    let displs: Vec<i32> = counts
        .iter()
        .scan(0i32, |at, &c| {
            let here = *at;
            *at += c;
            Some(here)
        })
        .collect();
    let mut all = vec![0u8; total as usize];
    {
        let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
        comm.all_gather_varcount_into(mine, &mut partition);
    }
    Ok(counts
        .iter()
        .zip(&displs)
        .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
        .collect())
}

/// Whether every rank says `ok`; if not, the lowest rank that did not.
/// Every rank gets the same answer, so a collective step that failed on one
/// rank fails on all instead of leaving the others waiting.
pub(crate) fn first_failure(comm: &SimpleCommunicator, ok: bool) -> Option<usize> {
    let mine = if ok { u64::MAX } else { comm.rank() as u64 };
    let mut lowest = u64::MAX;
    comm.all_reduce_into(&mine, &mut lowest, SystemOperation::min());
    (lowest != u64::MAX).then_some(lowest as usize)
}

/// The error of a collective step that failed on rank `rank` (not this
/// one), as every other rank reports it.
pub(crate) fn failed_elsewhere(rank: usize, what: &str) -> Error {
    Error::Mpi {
        reason: format!("rank {rank} could not {what}, so every rank stops here"),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn pieces_cover_the_bytes_in_order() {
        assert_eq!(pieces(0).count(), 0);
        assert_eq!(pieces(5).next(), Some(0..5));
        assert_eq!(pieces(5).count(), 1);
        let big: Vec<_> = pieces(2 * PIECE + 3).collect();
        assert_eq!(big, [0..PIECE, PIECE..2 * PIECE, 2 * PIECE..2 * PIECE + 3]);
    }

    #[test]
    fn elements_as_bytes() {
        let mut x = [1.0f64, -2.0];
        assert_eq!(as_bytes(&x).len(), 16);
        as_bytes_mut(&mut x)[..8].copy_from_slice(&3.5f64.to_ne_bytes());
        assert_eq!(x, [3.5, -2.0]);
    }
}
