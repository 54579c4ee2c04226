//! The self-describing header at offset 0 of every segment.
//!
//! `docs/segment-layout.md` describes these bytes for readers in other
//! languages; the tests at the bottom of this file pin every offset that
//! document gives, so the two cannot drift apart.
//!
//! A header is trusted only after `Layout::read` has copied it out of the
//! mapping and validated every field against the real size of the segment:
//! a corrupt or forged header yields a typed error, never an out-of-bounds
//! view. Fields are copied once, so a writer changing them afterwards cannot
//! change what this process already checked.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::element::DType;
use crate::error::{Error, Result};
use crate::liveness::ProcessId;
use crate::sync::{BarrierState, LockState};

/// The first eight bytes of every shmpar segment.
pub const MAGIC: [u8; 8] = *b"SHMPAR\0\0";

/// The layout version this build writes and reads.
pub const LAYOUT_VERSION: u32 = 1;

/// The largest number of axes an array may have.
pub const MAX_RANK: usize = 8;

/// Size of the header in bytes; result slots start here.
pub const HEADER_SIZE: usize = 512;

/// Alignment of the data: a page, so other languages can map it directly.
pub const DATA_ALIGN: usize = 4096;

/// Size of a result slot's own header (its length word and a reserved word).
pub const SLOT_HEADER: usize = 8;

/// Value of the state word while the creator is still writing.
pub const STATE_INITIALIZING: u32 = 0;
/// Value of the state word once the segment may be used.
pub const STATE_READY: u32 = 1;

/// Bit 0 of `flags`: the data is little-endian.
pub const FLAG_LITTLE_ENDIAN: u32 = 1;
/// Bit 1 of `flags`: the creator chose to keep the segment after it exits,
/// so `shmpar gc` leaves it alone although its creator is dead.
pub const FLAG_PERSISTENT: u32 = 2;

/// Default number of result slots.
pub const DEFAULT_SLOT_COUNT: u32 = 64;
/// Default size of a result slot in bytes (including its 8-byte header).
pub const DEFAULT_SLOT_SIZE: u32 = 256;
/// Most result slots a segment may have.
pub const MAX_SLOT_COUNT: u32 = 4096;
/// Largest result slot in bytes.
pub const MAX_SLOT_SIZE: u32 = 1 << 20;

/// One scalar field of the header: its name, byte offset and width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name `docs/segment-layout.md` gives it (`shape[i]` per axis).
    pub name: &'static str,
    /// Byte offset from the start of the segment.
    pub offset: usize,
    /// Width in bytes (4 or 8), little-endian.
    pub size: usize,
}

const fn field(name: &'static str, offset: usize, size: usize) -> Field {
    Field { name, offset, size }
}

/// Every scalar field after the magic, in order: the table of
/// `docs/segment-layout.md`, for readers in other languages and for tools
/// that check or forge headers. A unit test holds it to [`Header`].
pub const FIELDS: [Field; 22] = [
    field("layout_version", 8, 4),
    field("state", 12, 4),
    field("dtype", 16, 4),
    field("elem_size", 20, 4),
    field("ndim", 24, 4),
    field("flags", 28, 4),
    field("data_offset", 32, 8),
    field("data_len", 40, 8),
    field("total_len", 48, 8),
    field("slots_offset", 56, 8),
    field("shape[0]", 64, 8),
    field("shape[1]", 72, 8),
    field("shape[2]", 80, 8),
    field("shape[3]", 88, 8),
    field("shape[4]", 96, 8),
    field("shape[5]", 104, 8),
    field("shape[6]", 112, 8),
    field("shape[7]", 120, 8),
    field("slot_size", 128, 4),
    field("slot_count", 132, 4),
    field("creator_pid", 136, 4),
    field("creator_start_time", 144, 8),
];

/// The header as it lies in memory. See `docs/segment-layout.md`.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Header {
    /// [`MAGIC`].
    pub(crate) magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub(crate) layout_version: u32,
    /// [`STATE_INITIALIZING`] until the creator has written everything,
    /// then [`STATE_READY`] (stored with release ordering).
    pub(crate) state: AtomicU32,
    /// [`DType::code`].
    pub(crate) dtype: u32,
    /// Bytes per element.
    pub(crate) elem_size: u32,
    /// Number of axes, at most [`MAX_RANK`].
    pub(crate) ndim: u32,
    /// [`FLAG_LITTLE_ENDIAN`], [`FLAG_PERSISTENT`] and reserved bits. The
    /// persistent bit may change after creation, so it is updated atomically.
    pub(crate) flags: AtomicU32,
    /// Byte offset of the data, a multiple of [`DATA_ALIGN`].
    pub(crate) data_offset: u64,
    /// Bytes of data: product of the shape times `elem_size`.
    pub(crate) data_len: u64,
    /// Bytes in the whole segment.
    pub(crate) total_len: u64,
    /// Byte offset of the first result slot.
    pub(crate) slots_offset: u64,
    /// Extent of each axis, C order; entries past `ndim` are 0.
    pub(crate) shape: [u64; MAX_RANK],
    /// Bytes per result slot, a multiple of 64.
    pub(crate) slot_size: u32,
    /// Number of result slots.
    pub(crate) slot_count: u32,
    /// Process id of the creator.
    pub(crate) creator_pid: i32,
    pub(crate) _reserved0: u32,
    /// The creator's start time in clock ticks since boot.
    pub(crate) creator_start_time: u64,
    pub(crate) _reserved1: [u64; 5],
    /// The barrier's cache line.
    pub(crate) barrier: BarrierState,
    /// The lock's cache line.
    pub(crate) lock: LockState,
    pub(crate) _reserved2: [u8; 192],
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, barrier) % 64 == 0);
const _: () = assert!(offset_of!(Header, lock) % 64 == 0);

/// The validated description of a segment, copied out of its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The element type.
    pub dtype: DType,
    /// The array's shape, C order.
    pub shape: Vec<usize>,
    /// Byte offset of the data.
    pub data_offset: usize,
    /// Bytes of data.
    pub data_len: usize,
    /// Bytes in the whole segment.
    pub total_len: usize,
    /// Byte offset of the first result slot.
    pub slots_offset: usize,
    /// Bytes per result slot.
    pub slot_size: usize,
    /// Number of result slots.
    pub slot_count: usize,
    /// Who created the segment.
    pub creator: ProcessId,
    /// Whether the creator chose to keep the segment after it exits.
    pub persistent: bool,
}

/// Bytes of data for `shape`, or `None` when a view of it cannot exist:
/// ndarray requires the product of the *non-zero* axis lengths (times the
/// element size) to fit in `isize`, even when another axis is zero and the
/// array holds no element. A forged shape `[0, u64::MAX]` must be refused
/// here, not panic when the view is built.
fn data_bytes(shape: &[usize], dtype: DType) -> Option<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&s| s != 0)
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))?
        .checked_mul(dtype.size())
        .filter(|&bytes| bytes <= isize::MAX as usize)?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

fn round_up(value: usize, align: usize) -> Option<usize> {
    value.checked_add(align - 1).map(|v| v / align * align)
}

impl Layout {
    /// Plans the layout of a new segment.
    ///
    /// # Errors
    /// [`Error::InvalidShape`] when the shape has too many axes or its byte
    /// size overflows, [`Error::InvalidOption`] for slot settings out of range.
    pub fn plan(dtype: DType, shape: &[usize], slot_count: u32, slot_size: u32) -> Result<Layout> {
        if shape.len() > MAX_RANK {
            return Err(Error::InvalidShape {
                shape: shape.to_vec(),
                reason: format!("{} axes, at most {MAX_RANK} are supported", shape.len()),
            });
        }
        if slot_count > MAX_SLOT_COUNT {
            return Err(Error::InvalidOption {
                option: "slot count",
                reason: format!("{slot_count} slots, at most {MAX_SLOT_COUNT}"),
            });
        }
        if !(64..=MAX_SLOT_SIZE).contains(&slot_size) || !slot_size.is_multiple_of(64) {
            return Err(Error::InvalidOption {
                option: "slot size",
                reason: format!(
                    "{slot_size} bytes; it must be a multiple of 64 between 64 and {MAX_SLOT_SIZE}"
                ),
            });
        }
        let too_large = || Error::InvalidShape {
            shape: shape.to_vec(),
            reason: format!(
                "{} elements of {} bytes overflow the address space",
                shape.iter().map(|&s| s as u128).product::<u128>(),
                dtype.size()
            ),
        };
        let data_len = data_bytes(shape, dtype).ok_or_else(too_large)?;
        let slots_len = slot_count as usize * slot_size as usize;
        let data_offset = round_up(HEADER_SIZE + slots_len, DATA_ALIGN).ok_or_else(too_large)?;
        let total_len = data_offset
            .checked_add(data_len)
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or_else(too_large)?;
        Ok(Layout {
            dtype,
            shape: shape.to_vec(),
            data_offset,
            data_len,
            total_len,
            slots_offset: HEADER_SIZE,
            slot_size: slot_size as usize,
            slot_count: slot_count as usize,
            creator: ProcessId::current(),
            persistent: false,
        })
    }

    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.data_len / self.dtype.size()
    }

    /// Writes every field but the state word into a zero-filled header.
    ///
    /// # Safety
    /// - `header` must point to [`HEADER_SIZE`] writable bytes at the start
    ///   of a mapping of at least `self.total_len` bytes;
    /// - no other process may use the segment yet (its state is still
    ///   [`STATE_INITIALIZING`]).
    pub(crate) unsafe fn write(&self, header: *mut Header) {
        let mut shape = [0u64; MAX_RANK];
        for (dst, &src) in shape.iter_mut().zip(&self.shape) {
            *dst = src as u64;
        }
        // SAFETY: the caller guarantees `header` is valid for writes and
        // unshared; the barrier, lock and state words stay zero, which is
        // their fresh state.
        unsafe {
            (&raw mut (*header).magic).write(MAGIC);
            (&raw mut (*header).layout_version).write(LAYOUT_VERSION);
            (&raw mut (*header).dtype).write(self.dtype.code());
            (&raw mut (*header).elem_size).write(self.dtype.size() as u32);
            (&raw mut (*header).ndim).write(self.shape.len() as u32);
            let endian = if cfg!(target_endian = "little") {
                FLAG_LITTLE_ENDIAN
            } else {
                0
            };
            let persistent = if self.persistent { FLAG_PERSISTENT } else { 0 };
            (&raw mut (*header).flags).write(AtomicU32::new(endian | persistent));
            (&raw mut (*header).data_offset).write(self.data_offset as u64);
            (&raw mut (*header).data_len).write(self.data_len as u64);
            (&raw mut (*header).total_len).write(self.total_len as u64);
            (&raw mut (*header).slots_offset).write(self.slots_offset as u64);
            (&raw mut (*header).shape).write(shape);
            (&raw mut (*header).slot_size).write(self.slot_size as u32);
            (&raw mut (*header).slot_count).write(self.slot_count as u32);
            (&raw mut (*header).creator_pid).write(self.creator.pid);
            (&raw mut (*header).creator_start_time).write(self.creator.start_time);
        }
    }

    /// Reads and validates the header at `base`, of an object of `size`
    /// bytes of which the first `readable` are at `base`.
    ///
    /// # Errors
    /// A typed error for each way the header can be wrong: [`Error::Truncated`],
    /// [`Error::NotShmpar`], [`Error::UnsupportedVersion`],
    /// [`Error::Initializing`] and [`Error::CorruptHeader`].
    ///
    /// # Safety
    /// `base` must point to `readable` readable bytes, aligned for
    /// [`Header`], that stay valid for the duration of the call; `readable`
    /// is at least `min(size, HEADER_SIZE)`.
    pub(crate) unsafe fn read(base: *const u8, readable: usize, size: usize, name: &str) -> Result<Layout> {
        debug_assert!(readable >= size.min(HEADER_SIZE));
        if size == 0 {
            // shm_open(O_CREAT) and the space reservation are two steps: a
            // zero-sized object is one whose creator has not got further.
            return Err(Error::Initializing { name: name.into() });
        }
        if size < HEADER_SIZE {
            // The magic may still tell a foreign object from a cut-off one.
            // SAFETY: at least one byte is readable; we read min(size, 8).
            let head = unsafe { std::slice::from_raw_parts(base, size.min(8)) };
            if head != &MAGIC[..head.len()] {
                return Err(Error::NotShmpar { name: name.into() });
            }
            return Err(Error::Truncated {
                name: name.into(),
                size: size as u64,
                needed: HEADER_SIZE as u64,
            });
        }
        let header = base.cast::<Header>();
        // SAFETY: `size >= HEADER_SIZE`, so the whole header is readable; the
        // mapping is page aligned, so `header` is aligned. Fields are read
        // with volatile loads because another process may write them.
        let magic = unsafe { (&raw const (*header).magic).read_volatile() };
        if magic != MAGIC {
            return Err(Error::NotShmpar { name: name.into() });
        }
        // SAFETY: as above.
        let version = unsafe { (&raw const (*header).layout_version).read_volatile() };
        if version != LAYOUT_VERSION {
            return Err(Error::UnsupportedVersion {
                name: name.into(),
                found: version,
                supported: LAYOUT_VERSION,
            });
        }
        // SAFETY: `state` is an aligned AtomicU32 inside the readable header.
        // Acquire pairs with the creator's release store, so every field it
        // wrote before publishing is visible below.
        let state = unsafe { (*header).state.load(Ordering::Acquire) };
        match state {
            STATE_READY => {}
            STATE_INITIALIZING => return Err(Error::Initializing { name: name.into() }),
            other => return Err(corrupt(name, format!("unknown state word {other}"))),
        }
        // SAFETY: the header is readable (checked above); volatile copies.
        let raw = unsafe {
            RawFields {
                dtype: (&raw const (*header).dtype).read_volatile(),
                elem_size: (&raw const (*header).elem_size).read_volatile(),
                ndim: (&raw const (*header).ndim).read_volatile(),
                flags: (*header).flags.load(Ordering::Relaxed),
                data_offset: (&raw const (*header).data_offset).read_volatile(),
                data_len: (&raw const (*header).data_len).read_volatile(),
                total_len: (&raw const (*header).total_len).read_volatile(),
                slots_offset: (&raw const (*header).slots_offset).read_volatile(),
                shape: (&raw const (*header).shape).read_volatile(),
                slot_size: (&raw const (*header).slot_size).read_volatile(),
                slot_count: (&raw const (*header).slot_count).read_volatile(),
                creator_pid: (&raw const (*header).creator_pid).read_volatile(),
                creator_start_time: (&raw const (*header).creator_start_time).read_volatile(),
            }
        };
        raw.validate(size, name)
    }
}

fn corrupt(name: &str, reason: String) -> Error {
    Error::CorruptHeader {
        name: name.into(),
        reason,
    }
}

/// The header's fields as copied out, before validation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawFields {
    pub(crate) dtype: u32,
    pub(crate) elem_size: u32,
    pub(crate) ndim: u32,
    pub(crate) flags: u32,
    pub(crate) data_offset: u64,
    pub(crate) data_len: u64,
    pub(crate) total_len: u64,
    pub(crate) slots_offset: u64,
    pub(crate) shape: [u64; MAX_RANK],
    pub(crate) slot_size: u32,
    pub(crate) slot_count: u32,
    pub(crate) creator_pid: i32,
    pub(crate) creator_start_time: u64,
}

impl RawFields {
    /// Checks every field against the others and against the real `size`
    /// of the segment. Pure arithmetic on copied values, with overflow
    /// checked everywhere, so any input gives a `Layout` or an error.
    pub(crate) fn validate(&self, size: usize, name: &str) -> Result<Layout> {
        let dtype = DType::from_code(self.dtype)
            .ok_or_else(|| corrupt(name, format!("unknown dtype code {}", self.dtype)))?;
        if self.elem_size as usize != dtype.size() {
            return Err(corrupt(
                name,
                format!(
                    "element size {} does not match dtype {dtype} ({} bytes)",
                    self.elem_size,
                    dtype.size()
                ),
            ));
        }
        let little = self.flags & FLAG_LITTLE_ENDIAN != 0;
        if little != cfg!(target_endian = "little") {
            return Err(corrupt(
                name,
                "data byte order differs from this machine's".into(),
            ));
        }
        let ndim = self.ndim as usize;
        if ndim > MAX_RANK {
            return Err(corrupt(name, format!("{ndim} axes, at most {MAX_RANK}")));
        }
        if self.shape[ndim..].iter().any(|&s| s != 0) {
            return Err(corrupt(name, "shape entries past ndim are not zero".into()));
        }
        let shape: Vec<usize> = self.shape[..ndim]
            .iter()
            .map(|&s| usize::try_from(s))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| corrupt(name, "an axis length does not fit in memory".into()))?;
        let data_len =
            data_bytes(&shape, dtype).ok_or_else(|| corrupt(name, format!("shape {shape:?} overflows")))?;
        if self.data_len != data_len as u64 {
            return Err(corrupt(
                name,
                format!(
                    "data length {} does not match shape {shape:?} of {dtype} ({data_len} bytes)",
                    self.data_len
                ),
            ));
        }
        let slot_size = self.slot_size as usize;
        let slot_count = self.slot_count as usize;
        if self.slot_count > MAX_SLOT_COUNT
            || (slot_count > 0
                && (slot_size < 64 || self.slot_size > MAX_SLOT_SIZE || !slot_size.is_multiple_of(64)))
        {
            return Err(corrupt(
                name,
                format!("{slot_count} result slots of {slot_size} bytes"),
            ));
        }
        let slots_offset =
            usize::try_from(self.slots_offset).map_err(|_| corrupt(name, "slots offset overflows".into()))?;
        let slots_end = slots_offset
            .checked_add(slot_count * slot_size)
            .ok_or_else(|| corrupt(name, "result slots overflow".into()))?;
        let data_offset =
            usize::try_from(self.data_offset).map_err(|_| corrupt(name, "data offset overflows".into()))?;
        if slots_offset < HEADER_SIZE || slots_offset % 64 != 0 || slots_end > data_offset {
            return Err(corrupt(
                name,
                format!(
                    "result slots at {slots_offset}..{slots_end} overlap the header or the data at {data_offset}"
                ),
            ));
        }
        if data_offset % DATA_ALIGN != 0 {
            return Err(corrupt(
                name,
                format!("data offset {data_offset} is not a multiple of {DATA_ALIGN}"),
            ));
        }
        let data_end = data_offset
            .checked_add(data_len)
            .filter(|&end| end <= isize::MAX as usize)
            .ok_or_else(|| corrupt(name, "data end overflows".into()))?;
        if self.total_len != data_end as u64 {
            return Err(corrupt(
                name,
                format!(
                    "total length {} is not data offset + data length ({data_end})",
                    self.total_len
                ),
            ));
        }
        if data_end > size {
            return Err(Error::Truncated {
                name: name.into(),
                size: size as u64,
                needed: data_end as u64,
            });
        }
        Ok(Layout {
            dtype,
            shape,
            data_offset,
            data_len,
            total_len: data_end,
            slots_offset,
            slot_size,
            slot_count,
            creator: ProcessId {
                pid: self.creator_pid,
                start_time: self.creator_start_time,
            },
            persistent: self.flags & FLAG_PERSISTENT != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets `docs/segment-layout.md` documents.
    #[test]
    fn offsets_match_the_layout_document() {
        assert_eq!(offset_of!(Header, magic), 0);
        assert_eq!(offset_of!(Header, layout_version), 8);
        assert_eq!(offset_of!(Header, state), 12);
        assert_eq!(offset_of!(Header, dtype), 16);
        assert_eq!(offset_of!(Header, elem_size), 20);
        assert_eq!(offset_of!(Header, ndim), 24);
        assert_eq!(offset_of!(Header, flags), 28);
        assert_eq!(offset_of!(Header, data_offset), 32);
        assert_eq!(offset_of!(Header, data_len), 40);
        assert_eq!(offset_of!(Header, total_len), 48);
        assert_eq!(offset_of!(Header, slots_offset), 56);
        assert_eq!(offset_of!(Header, shape), 64);
        assert_eq!(offset_of!(Header, slot_size), 128);
        assert_eq!(offset_of!(Header, slot_count), 132);
        assert_eq!(offset_of!(Header, creator_pid), 136);
        assert_eq!(offset_of!(Header, creator_start_time), 144);
        assert_eq!(offset_of!(Header, barrier), 192);
        assert_eq!(offset_of!(Header, lock), 256);
        assert_eq!(size_of::<Header>(), 512);
        for f in FIELDS {
            let (offset, size) = match f.name {
                "layout_version" => (offset_of!(Header, layout_version), 4),
                "state" => (offset_of!(Header, state), size_of::<AtomicU32>()),
                "dtype" => (offset_of!(Header, dtype), 4),
                "elem_size" => (offset_of!(Header, elem_size), 4),
                "ndim" => (offset_of!(Header, ndim), 4),
                "flags" => (offset_of!(Header, flags), size_of::<AtomicU32>()),
                "data_offset" => (offset_of!(Header, data_offset), 8),
                "data_len" => (offset_of!(Header, data_len), 8),
                "total_len" => (offset_of!(Header, total_len), 8),
                "slots_offset" => (offset_of!(Header, slots_offset), 8),
                "slot_size" => (offset_of!(Header, slot_size), 4),
                "slot_count" => (offset_of!(Header, slot_count), 4),
                "creator_pid" => (offset_of!(Header, creator_pid), 4),
                "creator_start_time" => (offset_of!(Header, creator_start_time), 8),
                shape => {
                    let axis: usize = shape["shape[".len()..shape.len() - 1].parse().unwrap();
                    (offset_of!(Header, shape) + 8 * axis, 8)
                }
            };
            assert_eq!((f.offset, f.size), (offset, size), "{}", f.name);
        }
        // The words inside the barrier and lock lines are pinned by
        // `sync::tests::layouts_match_the_design_note`.
    }

    fn good() -> (RawFields, usize) {
        let layout = Layout::plan(DType::F64, &[10, 3], 4, 128).unwrap();
        let mut shape = [0u64; MAX_RANK];
        shape[0] = 10;
        shape[1] = 3;
        let raw = RawFields {
            dtype: DType::F64.code(),
            elem_size: 8,
            ndim: 2,
            flags: FLAG_LITTLE_ENDIAN,
            data_offset: layout.data_offset as u64,
            data_len: 240,
            total_len: layout.total_len as u64,
            slots_offset: HEADER_SIZE as u64,
            shape,
            slot_size: 128,
            slot_count: 4,
            creator_pid: 1,
            creator_start_time: 2,
        };
        (raw, layout.total_len)
    }

    #[test]
    fn plan_places_page_aligned_data_after_the_slots() {
        let layout = Layout::plan(DType::F32, &[1000], 64, 256).unwrap();
        assert_eq!(layout.data_offset, 20480);
        assert_eq!(layout.data_len, 4000);
        assert_eq!(layout.total_len, 24480);
        let none = Layout::plan(DType::U8, &[], 0, 64).unwrap();
        assert_eq!(none.data_offset, 4096);
        assert_eq!(none.data_len, 1, "a 0-d array holds one element");
    }

    #[test]
    fn an_empty_axis_does_not_hide_a_huge_one() {
        assert_eq!(data_bytes(&[0, 5], DType::F64), Some(0));
        assert_eq!(data_bytes(&[3, 5], DType::F64), Some(120));
        assert_eq!(data_bytes(&[0, usize::MAX], DType::F64), None);
        assert_eq!(data_bytes(&[0, isize::MAX as usize / 8 + 1], DType::F64), None);
        assert!(matches!(
            Layout::plan(DType::F32, &[0, usize::MAX], 1, 64),
            Err(Error::InvalidShape { .. })
        ));
        let (mut raw, size) = good();
        raw.shape[0] = 0;
        raw.shape[1] = u64::MAX;
        raw.data_len = 0;
        assert!(matches!(
            raw.validate(size, "t"),
            Err(Error::CorruptHeader { .. })
        ));
    }

    #[test]
    fn plan_rejects_bad_shapes_and_slots() {
        assert!(matches!(
            Layout::plan(DType::F64, &[1; 9], 1, 64),
            Err(Error::InvalidShape { .. })
        ));
        assert!(matches!(
            Layout::plan(DType::F64, &[usize::MAX, 2], 1, 64),
            Err(Error::InvalidShape { .. })
        ));
        assert!(matches!(
            Layout::plan(DType::F64, &[usize::MAX / 8], 1, 64),
            Err(Error::InvalidShape { .. })
        ));
        assert!(matches!(
            Layout::plan(DType::F64, &[1], 1, 100),
            Err(Error::InvalidOption { .. })
        ));
        assert!(matches!(
            Layout::plan(DType::F64, &[1], MAX_SLOT_COUNT + 1, 64),
            Err(Error::InvalidOption { .. })
        ));
    }

    #[test]
    fn a_consistent_header_validates() {
        let (raw, size) = good();
        let layout = raw.validate(size, "t").unwrap();
        assert_eq!(layout.shape, vec![10, 3]);
        assert_eq!(layout.dtype, DType::F64);
        assert_eq!(
            layout.creator,
            ProcessId {
                pid: 1,
                start_time: 2
            }
        );
    }

    #[test]
    fn each_inconsistency_is_a_typed_error() {
        let (base, size) = good();
        type Forge = Box<dyn Fn(&mut RawFields)>;
        let cases: Vec<(&str, Forge)> = vec![
            ("dtype", Box::new(|r| r.dtype = 99)),
            ("elem size", Box::new(|r| r.elem_size = 4)),
            ("ndim", Box::new(|r| r.ndim = 9)),
            ("shape tail", Box::new(|r| r.shape[5] = 1)),
            ("shape vs len", Box::new(|r| r.shape[0] = 11)),
            ("overflow", Box::new(|r| r.shape[0] = u64::MAX)),
            ("data len", Box::new(|r| r.data_len = 8)),
            ("misaligned", Box::new(|r| r.data_offset += 8)),
            ("slots overlap data", Box::new(|r| r.slot_count = 1000)),
            ("slot size", Box::new(|r| r.slot_size = 65)),
            ("slots in header", Box::new(|r| r.slots_offset = 64)),
            ("total", Box::new(|r| r.total_len += 1)),
            ("endianness", Box::new(|r| r.flags = 0)),
        ];
        for (what, mutate) in cases {
            let mut raw = base;
            mutate(&mut raw);
            match raw.validate(size, "t") {
                Err(Error::CorruptHeader { .. }) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
        assert!(matches!(
            base.validate(size - 1, "t"),
            Err(Error::Truncated { .. })
        ));
    }
}
