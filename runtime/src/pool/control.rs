//! The pool's control segment: a small shmpar segment of bytes shared by the
//! coordinator and its workers. `README.md` beside this file describes the
//! protocol; this file is its memory layout:
//!
//! ```text
//! | Control (events, status lines, job descriptor) | parameters | slot 0 | slot 1 | ... |
//! ```
//!
//! Parameters are written only by the coordinator while every worker is
//! idle; slot `r` only by worker `r` while it runs a job, and read by the
//! coordinator only after it acquired that worker's status.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};

use shmpar_core::Segment;
use shmpar_core::segment::Location;

pub(crate) use shmpar_core::sync::Event;

/// Most workers a pool may have.
pub const MAX_WORKERS: usize = 1024;
/// Most arrays one job may take (the largest tuple of arguments).
pub(crate) const MAX_ARRAYS: usize = crate::job::args::MAX_ARRAYS;
/// Longest array name or path a job can carry.
pub(crate) const NAME_MAX: usize = 1024;
/// Longest registered kernel name.
pub(crate) const KEY_MAX: usize = 512;
/// Longest kernel signature (the shape's type name).
pub(crate) const SIG_MAX: usize = 4096;
/// Most cached mappings one job can tell workers to drop.
pub(crate) const EVICT_MAX: usize = 256;
/// Default room for a job's encoded parameters.
pub const DEFAULT_PARAM_BYTES: usize = 64 * 1024;
/// Default room for a worker's encoded partial results.
pub const DEFAULT_PARTIAL_BYTES: usize = 64 * 1024;
/// The smallest slot [`PoolBuilder::partial_bytes`](crate::PoolBuilder::partial_bytes)
/// gives: room for the name of a spill segment and a failure message.
pub const MIN_PARTIAL_BYTES: usize = 512;

const ALIGN: usize = 64;

/// How long a waiter spins before it sleeps in the kernel. Long enough to
/// catch back-to-back jobs without a system call, short enough not to burn
/// a core that an oversubscribed machine needs.
pub(crate) const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Identifies an array's shared object, so a cached mapping of a segment
/// that was unlinked and recreated under the same name is never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct Identity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl Identity {
    pub(crate) fn of(segment: &Segment) -> Identity {
        let (dev, ino) = segment.identity();
        Identity { dev, ino }
    }
}

/// One array a job names.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ArrayRef {
    /// 0: shared memory name, 1: file path.
    pub(crate) kind: u32,
    pub(crate) len: u32,
    /// Whether the job splits this array's rows among the workers.
    pub(crate) split: u32,
    pub(crate) identity: Identity,
    pub(crate) name: [u8; NAME_MAX],
}

impl ArrayRef {
    pub(crate) const EMPTY: ArrayRef = ArrayRef {
        kind: 0,
        len: 0,
        split: 0,
        identity: Identity { dev: 0, ino: 0 },
        name: [0; NAME_MAX],
    };

    pub(crate) fn new(location: &Location, identity: Identity, split: bool) -> Option<ArrayRef> {
        use std::os::unix::ffi::OsStrExt;
        let (kind, bytes) = match location {
            Location::Shm(name) => (0, name.as_bytes()),
            Location::File(path) => (1, path.as_os_str().as_bytes()),
        };
        if bytes.len() > NAME_MAX {
            return None;
        }
        let mut r = ArrayRef::EMPTY;
        r.kind = kind;
        r.len = bytes.len() as u32;
        r.split = u32::from(split);
        r.identity = identity;
        r.name[..bytes.len()].copy_from_slice(bytes);
        Some(r)
    }

    /// The location, or `None` for a corrupt entry.
    pub(crate) fn location(&self) -> Option<Location> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = self.name.get(..self.len as usize)?;
        match self.kind {
            0 => std::str::from_utf8(bytes)
                .ok()
                .map(|s| Location::Shm(s.to_owned())),
            1 => Some(Location::File(std::ffi::OsStr::from_bytes(bytes).into())),
            _ => None,
        }
    }
}

/// How a worker finds the job's kernel.
pub(crate) mod how {
    /// `runner` and `kernel` are addresses in the coordinator's image, which
    /// a forked worker shares.
    pub(crate) const POINTER: u32 = 0;
    /// `key` and `sig` name a registered kernel (spawned workers).
    pub(crate) const NAME: u32 = 1;
    /// A one-job worker forked for this job runs the closure it inherited.
    pub(crate) const INHERITED: u32 = 2;
    /// No kernel: the workers drop the mappings the descriptor evicts and
    /// report (`Pool::release_unused`).
    pub(crate) const EVICT: u32 = 3;
}

/// What the coordinator posts: written only while every worker is idle,
/// published by the release increment of `Control::post`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct JobDesc {
    pub(crate) how: u32,
    pub(crate) workers: u32,
    pub(crate) runner: u64,
    pub(crate) kernel: u64,
    pub(crate) rows: u64,
    pub(crate) steps: u64,
    pub(crate) key_len: u32,
    pub(crate) sig_len: u32,
    pub(crate) key: [u8; KEY_MAX],
    pub(crate) sig: [u8; SIG_MAX],
    pub(crate) narrays: u32,
    pub(crate) nevict: u32,
    /// [`crate::Schedule`] as (kind, rows per chunk).
    pub(crate) schedule: u32,
    pub(crate) schedule_rows: u64,
    pub(crate) arrays: [ArrayRef; MAX_ARRAYS],
    pub(crate) evict: [Identity; EVICT_MAX],
    pub(crate) params_len: u64,
    /// Static chunk boundaries fall on multiples of this many rows where
    /// that keeps the balance (`job::row_align`; 0 or 1: none).
    pub(crate) row_align: u64,
}

impl JobDesc {
    pub(crate) fn zeroed() -> JobDesc {
        JobDesc {
            how: 0,
            workers: 0,
            runner: 0,
            kernel: 0,
            rows: 0,
            steps: 0,
            key_len: 0,
            sig_len: 0,
            key: [0; KEY_MAX],
            sig: [0; SIG_MAX],
            narrays: 0,
            nevict: 0,
            schedule: 0,
            schedule_rows: 0,
            arrays: [ArrayRef::EMPTY; MAX_ARRAYS],
            evict: [Identity::default(); EVICT_MAX],
            params_len: 0,
            row_align: 0,
        }
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key[..(self.key_len as usize).min(KEY_MAX)]
    }

    pub(crate) fn sig(&self) -> &[u8] {
        &self.sig[..(self.sig_len as usize).min(SIG_MAX)]
    }

    pub(crate) fn arrays(&self) -> &[ArrayRef] {
        &self.arrays[..(self.narrays as usize).min(MAX_ARRAYS)]
    }

    pub(crate) fn evicted(&self) -> &[Identity] {
        &self.evict[..(self.nevict as usize).min(EVICT_MAX)]
    }
}

/// One worker's status line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct WorkerLine {
    /// A [`crate::dispatch::status`] code.
    pub(crate) status: AtomicU32,
    /// The worker's pid once it serves: its check-in.
    pub(crate) pid: AtomicU32,
    /// The chunk the worker runs now (its rank under a static schedule),
    /// so a failure names the rows it was working on.
    pub(crate) chunk: AtomicU32,
}

/// A counter on a cache line of its own.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) AtomicU32);

/// The control block at the start of the control segment's data.
#[repr(C)]
pub(crate) struct Control {
    /// Job sequence number: the coordinator increments it to post a job.
    pub(crate) post: Event,
    /// Workers that finished the current job.
    pub(crate) done: Event,
    /// Non-zero: workers exit at the next post.
    pub(crate) shutdown: Event,
    /// The next chunk to claim under a dynamic or guided schedule; reset
    /// by the coordinator with each job.
    pub(crate) next_chunk: Counter,
    /// Sizes of the areas after the block, written before any worker starts.
    pub(crate) param_bytes: AtomicU32,
    pub(crate) slot_bytes: AtomicU32,
    pub(crate) slots: AtomicU32,
    pub(crate) workers: [WorkerLine; MAX_WORKERS],
    pub(crate) job: UnsafeCell<JobDesc>,
}

// SAFETY: `Control` lives in shared memory and is used through `&Control`
// by one thread of each process; every field but `job` is atomic, and `job`
// is written only while no worker reads it (the posting protocol).
unsafe impl Sync for Control {}

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Bytes of the control segment's data for these sizes.
pub(crate) fn data_len(workers: usize, param_bytes: usize, slot_bytes: usize) -> Option<usize> {
    let slots = workers.checked_mul(round_up(slot_bytes.checked_add(8)?))?;
    round_up(size_of::<Control>())
        .checked_add(round_up(param_bytes))?
        .checked_add(slots)
}

/// A view of a control segment: the block and its areas, with sizes
/// checked against the segment once.
pub(crate) struct ControlView<'s> {
    segment: &'s Segment,
    param_bytes: usize,
    slot_bytes: usize,
    slots: usize,
}

impl<'s> ControlView<'s> {
    /// Checks the sizes recorded in the block against the segment.
    pub(crate) fn new(segment: &'s Segment) -> Option<ControlView<'s>> {
        if segment.layout().data_len < size_of::<Control>() {
            return None;
        }
        let view = ControlView {
            segment,
            param_bytes: 0,
            slot_bytes: 0,
            slots: 0,
        };
        let control = view.control();
        let param_bytes = control.param_bytes.load(Ordering::Acquire) as usize;
        let slot_bytes = control.slot_bytes.load(Ordering::Acquire) as usize;
        let slots = control.slots.load(Ordering::Acquire) as usize;
        let needed = data_len(slots, param_bytes, slot_bytes)?;
        (needed <= segment.layout().data_len && slots <= MAX_WORKERS).then_some(ControlView {
            segment,
            param_bytes,
            slot_bytes,
            slots,
        })
    }

    pub(crate) fn control(&self) -> &'s Control {
        // SAFETY: the data is at least `size_of::<Control>()` bytes (checked
        // at creation and in `new`), page aligned, lives as long as the
        // segment, and all-zero bytes are a valid `Control`. Every field
        // written after creation is atomic, or the job descriptor, which the
        // posting protocol writes only while no worker reads it.
        unsafe { &*self.segment.data_ptr().cast::<Control>() }
    }

    pub(crate) fn param_capacity(&self) -> usize {
        self.param_bytes
    }

    pub(crate) fn slot_capacity(&self) -> usize {
        self.slot_bytes
    }

    fn params_ptr(&self) -> *mut u8 {
        // SAFETY: the parameter area follows the block inside the data
        // (`data_len` checked in `new`).
        unsafe { self.segment.data_ptr().add(round_up(size_of::<Control>())) }
    }

    fn slot_ptr(&self, rank: usize) -> Option<*mut u8> {
        (rank < self.slots).then(|| {
            let offset = round_up(size_of::<Control>())
                + round_up(self.param_bytes)
                + rank * round_up(self.slot_bytes + 8);
            // SAFETY: slot `rank < slots` lies inside the data (`new`).
            unsafe { self.segment.data_ptr().add(offset) }
        })
    }

    /// Writes the job's parameters.
    ///
    /// # Safety
    /// - Only the coordinator calls it, while every worker is idle.
    pub(crate) unsafe fn write_params(&self, bytes: &[u8]) -> bool {
        if bytes.len() > self.param_bytes {
            return false;
        }
        // SAFETY: in bounds (checked); no worker reads the area now.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.params_ptr(), bytes.len()) };
        true
    }

    /// The job's parameters.
    ///
    /// # Safety
    /// - Called by a worker between acquiring a post and reporting done,
    ///   while the coordinator does not write them.
    pub(crate) unsafe fn params(&self, len: u64) -> &'s [u8] {
        let len = (len as usize).min(self.param_bytes);
        // SAFETY: in bounds; not written while the job runs.
        unsafe { std::slice::from_raw_parts(self.params_ptr(), len) }
    }

    /// Publishes `bytes` in worker `rank`'s slot (`spilled`: they are the
    /// name of a segment that holds the results instead); `Err(len)` if
    /// they do not fit.
    ///
    /// # Safety
    /// - Only worker `rank` calls it, during a job, before its release
    ///   store of its status.
    pub(crate) unsafe fn write_slot(&self, rank: usize, bytes: &[u8], spilled: bool) -> Result<(), usize> {
        let Some(slot) = self.slot_ptr(rank) else {
            return Err(bytes.len());
        };
        if bytes.len() > self.slot_bytes {
            return Err(bytes.len());
        }
        let word = bytes.len() as u64 | if spilled { SPILLED } else { 0 };
        // SAFETY: the slot is `8 + slot_bytes` bytes inside the data, 64-byte
        // aligned; its one writer is this worker (caller's promise).
        unsafe {
            slot.cast::<u64>().write(word);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), slot.add(8), bytes.len());
        }
        Ok(())
    }

    /// Worker `rank`'s slot.
    ///
    /// # Safety
    /// - Called by the coordinator after an acquire load of the worker's
    ///   status saw the worker report this job.
    pub(crate) unsafe fn read_slot(&self, rank: usize) -> Slot {
        let Some(slot) = self.slot_ptr(rank) else {
            return Slot::Inline(Vec::new());
        };
        // SAFETY: in bounds; the worker's writes happened before its status
        // store, which the caller acquired; the worker writes nothing more.
        let (word, bytes) = unsafe {
            let word = slot.cast::<u64>().read();
            let len = ((word & !SPILLED) as usize).min(self.slot_bytes);
            (word, std::slice::from_raw_parts(slot.add(8), len).to_vec())
        };
        if word & SPILLED != 0 {
            Slot::Spilled(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            Slot::Inline(bytes)
        }
    }
}

/// The length word's flag for a slot that names a spill segment.
const SPILLED: u64 = 1 << 63;

/// What a worker's slot holds.
pub(crate) enum Slot {
    /// The bytes themselves.
    Inline(Vec<u8>),
    /// The name of a segment the worker created for results too large for
    /// its slot; it removes the segment when the next job starts.
    Spilled(String),
}

impl Slot {
    /// The bytes, reading a spill segment if there is one.
    pub(crate) fn bytes(self) -> Result<Vec<u8>, String> {
        match self {
            Slot::Inline(bytes) => Ok(bytes),
            Slot::Spilled(name) => {
                let mut array = shmpar_core::SharedArray::<u8, ndarray::Ix1>::attach(&name)
                    .map_err(|e| format!("cannot read the results the worker spilled to {name}: {e}"))?;
                let bytes = array.view().to_vec();
                // Read once: the name can go now, whatever becomes of the
                // worker (a worker that exits, is killed or runs no further
                // job would otherwise leave it behind). The worker's own
                // handle keeps its mapping until its next job.
                let _ = array.segment_mut().unlink();
                Ok(bytes)
            }
        }
    }
}

/// Encodes a worker's partial results: `(chunk, bytes)` records.
pub(crate) fn encode_partials(partials: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (chunk, bytes) in partials {
        out.extend_from_slice(&chunk.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Decodes what [`encode_partials`] wrote; `None` if it is malformed.
pub(crate) fn decode_partials(mut bytes: &[u8]) -> Option<Vec<(u32, Vec<u8>)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let chunk = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        let len = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
        out.push((chunk, bytes.get(8..8 + len)?.to_vec()));
        bytes = &bytes[8 + len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_round_trip() {
        let partials = vec![(3u32, vec![1u8, 2, 3]), (0, vec![]), (7, vec![9; 100])];
        assert_eq!(decode_partials(&encode_partials(&partials)), Some(partials));
        assert_eq!(decode_partials(&[1, 0, 0, 0, 5, 0, 0, 0, 1]), None);
    }
}
