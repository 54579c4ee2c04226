//! The self-describing header, in the last 4 KiB of every segment (layout
//! version 2).
//!
//! A segment is the array's data from byte 0, zero-padded to a multiple of
//! 4096, then one *header page* of [`HEADER_PAGE_SIZE`] bytes. The header
//! page always starts at `object size - 4096`, so a reader finds it from
//! `fstat` alone, and so a variant that rounds the whole object up to a
//! huge page (recorded in [`Header::page_size`]) still ends with it. Data
//! at offset 0 is what lets NumPy attach with nothing but
//! `np.ndarray(shape, dtype, buffer=shm.buf)` or `np.memmap(path, ...)`.
//!
//! `docs/segment-layout.md` describes these bytes for readers in other
//! languages; the tests at the bottom of this file pin every offset that
//! document gives, so the two cannot drift apart.
//!
//! A header is trusted only after `read_layout` has copied it out of the
//! object (`pread`, so nothing is mapped before it is checked) and
//! validated every field against the real size of the object, with checked
//! arithmetic: a corrupt or forged header yields a typed error, never an
//! out-of-bounds view. Fields are copied once, so a writer changing them
//! afterwards cannot change what this process already checked.

use std::io;
use std::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};

use crate::element::DType;
use crate::error::{Error, Result};
use crate::liveness::ProcessId;
use crate::sync::{BarrierState, BarrierTree, LockState};

/// The first eight bytes of every header.
pub const MAGIC: [u8; 8] = *b"SHMPAR\0\0";

/// The layout version this build writes and reads.
pub const LAYOUT_VERSION: u32 = 2;

/// The one earlier version: its header sat at offset 0, before the data.
/// Recognized only to say so.
const LEGACY_VERSION: u32 = 1;

/// The largest number of axes an array may have.
pub const MAX_RANK: usize = 8;

/// Size of [`Header`], the plain fields at the start of the header page.
pub const HEADER_SIZE: usize = 256;

/// Size of the header page that ends every segment.
pub const HEADER_PAGE_SIZE: usize = 4096;

/// The data is padded to a multiple of this, and every segment's size is
/// one: 4 KiB, the smallest page.
pub const PAGE_SIZE: usize = 4096;

/// The largest [`Header::page_size`] a reader accepts (1 GiB huge pages).
pub const MAX_PAGE_SIZE: usize = 1 << 30;

/// Value of the state word while the creator is still writing.
pub const STATE_INITIALIZING: u32 = 0;
/// Value of the state word once the segment may be used.
pub const STATE_READY: u32 = 1;

/// Bit 0 of `flags`: the data is little-endian.
pub const FLAG_LITTLE_ENDIAN: u32 = 1;
/// Bit 1 of `flags`: the creator chose to keep the segment after it exits,
/// so `shmpar gc` leaves it alone although its creator is dead.
pub const FLAG_PERSISTENT: u32 = 2;
/// Bit 2 of `flags`: the segment follows the liveness-lock protocol: every
/// process that holds it open (its creator from before the space is
/// reserved, and every attacher) keeps an open-file-description read lock
/// on the byte at [`LIVENESS_LOCK_OFFSET`] of the header page, and `gc`
/// decides whether it is in use by that lock alone. A segment without this
/// bit (left by an older shmpar) is also taken as in use while a process
/// with its creator's pid and start time runs.
pub const FLAG_LIVENESS_LOCK: u32 = 4;

/// Offset, from the start of the header page, of the byte on which every
/// holder of a segment keeps a shared open-file-description lock
/// (`fcntl(F_OFD_SETLK)`, `F_RDLCK`, one byte): the first byte of
/// [`Header::reserved_liveness`]. The lock is the record, not the byte,
/// which stays 0. Because the lock belongs to the kernel's open file
/// description, it vanishes when the holder dies however it dies, and it
/// means the same in every PID and time namespace, with or without `/proc`.
pub const LIVENESS_LOCK_OFFSET: usize = offset_of!(Header, reserved_liveness);

/// The plain fields of the header: the first [`HEADER_SIZE`] bytes of the
/// header page, which starts at `object size - HEADER_PAGE_SIZE`.
///
/// Plain integers only, so that reading a header is
/// [`bytemuck::pod_read_unaligned`] on its bytes, and the derive refuses
/// any padding at compile time. In a mapped segment `state` and `flags`
/// are accessed atomically (`AtomicU32::from_ptr`): the creator publishes
/// `state` with release ordering, and `flags` may change after creation.
/// See `docs/segment-layout.md`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`STATE_INITIALIZING`] until the creator has written everything,
    /// then [`STATE_READY`] (stored with release ordering).
    pub state: u32,
    /// [`DType::code`].
    pub dtype: u32,
    /// Bytes per element.
    pub elem_size: u32,
    /// Number of axes, at most [`MAX_RANK`].
    pub ndim: u32,
    /// [`FLAG_LITTLE_ENDIAN`], [`FLAG_PERSISTENT`], [`FLAG_LIVENESS_LOCK`]
    /// and reserved bits (0).
    pub flags: u32,
    /// Byte offset of the data: always 0.
    pub data_offset: u64,
    /// Bytes of data: product of the shape times `elem_size`.
    pub data_len: u64,
    /// Bytes in the whole object.
    pub total_len: u64,
    /// Byte offset of the header page: `total_len - HEADER_PAGE_SIZE`.
    pub header_offset: u64,
    /// Extent of each axis, C order; entries past `ndim` are 0.
    pub shape: [u64; MAX_RANK],
    /// Process id of the creator, as its own PID namespace numbers it: for
    /// display only (liveness is the lock at [`LIVENESS_LOCK_OFFSET`]).
    pub creator_pid: i32,
    /// The page size the object is made of: 4096, or a huge page size
    /// (then `total_len` is a multiple of it).
    pub page_size: u32,
    /// The creator's start time in clock ticks since boot, as its own time
    /// namespace counts them (0 when `/proc` was unreadable): for display.
    pub creator_start_time: u64,
    /// Reserved (0). Its first byte is the liveness lock byte
    /// ([`LIVENESS_LOCK_OFFSET`]): holders lock it, nobody writes it.
    pub reserved_liveness: [u64; 8],
    /// Reserved (0).
    pub reserved: [u64; 6],
}

/// The whole header page: the plain header, then the barrier's and the
/// lock's cache lines (64-byte aligned), then reserved bytes.
///
/// Only its layout is used: the plain part is read as a copied [`Header`],
/// the sync lines through references to their atomic states alone.
#[repr(C, align(64))]
pub(crate) struct HeaderPage {
    pub(crate) header: Header,
    pub(crate) barrier: BarrierState,
    pub(crate) lock: LockState,
    /// The barrier's combining tree (used beyond four parties).
    pub(crate) barrier_tree: BarrierTree,
    _reserved: [u8; HEADER_PAGE_SIZE - HEADER_SIZE - 128 - size_of::<BarrierTree>()],
}

/// Offset of the barrier's line from the start of the header.
pub(crate) const BARRIER_OFFSET: usize = offset_of!(HeaderPage, barrier);
/// Offset of the lock's line from the start of the header.
pub(crate) const LOCK_OFFSET: usize = offset_of!(HeaderPage, lock);
/// Offset of the barrier's combining tree from the start of the header.
pub(crate) const BARRIER_TREE_OFFSET: usize = offset_of!(HeaderPage, barrier_tree);
/// Offset of the state word from the start of the header.
pub(crate) const STATE_OFFSET: usize = offset_of!(Header, state);
/// Offset of the flags word from the start of the header.
pub(crate) const FLAGS_OFFSET: usize = offset_of!(Header, flags);

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(size_of::<HeaderPage>() == HEADER_PAGE_SIZE);
const _: () = assert!(BARRIER_OFFSET.is_multiple_of(64) && BARRIER_OFFSET >= HEADER_SIZE);
const _: () = assert!(LOCK_OFFSET.is_multiple_of(64) && LOCK_OFFSET >= BARRIER_OFFSET + 64);
const _: () = assert!(BARRIER_TREE_OFFSET == 384 && size_of::<BarrierTree>() == 1344);
const _: () = assert!(STATE_OFFSET.is_multiple_of(4) && FLAGS_OFFSET.is_multiple_of(4));
const _: () = assert!(HEADER_PAGE_SIZE == PAGE_SIZE);

/// One scalar field of the header: its name, byte offset and width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name `docs/segment-layout.md` gives it (`shape[i]` per axis).
    pub name: &'static str,
    /// Byte offset from the start of the *header*, which lies at
    /// `object size - HEADER_PAGE_SIZE` (not from the start of the object).
    pub offset: usize,
    /// Width in bytes (4 or 8), little-endian.
    pub size: usize,
}

const fn field(name: &'static str, offset: usize, size: usize) -> Field {
    Field { name, offset, size }
}

/// Every scalar field after the magic, in order: the table of
/// `docs/segment-layout.md`, for readers in other languages and for tools
/// that check or forge headers. Offsets are relative to the start of the
/// header (`object size - HEADER_PAGE_SIZE`). A unit test holds it to
/// [`Header`].
pub const FIELDS: [Field; 21] = [
    field("layout_version", 8, 4),
    field("state", 12, 4),
    field("dtype", 16, 4),
    field("elem_size", 20, 4),
    field("ndim", 24, 4),
    field("flags", 28, 4),
    field("data_offset", 32, 8),
    field("data_len", 40, 8),
    field("total_len", 48, 8),
    field("header_offset", 56, 8),
    field("shape[0]", 64, 8),
    field("shape[1]", 72, 8),
    field("shape[2]", 80, 8),
    field("shape[3]", 88, 8),
    field("shape[4]", 96, 8),
    field("shape[5]", 104, 8),
    field("shape[6]", 112, 8),
    field("shape[7]", 120, 8),
    field("creator_pid", 128, 4),
    field("page_size", 132, 4),
    field("creator_start_time", 136, 8),
];

/// The validated description of a segment, copied out of its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The element type.
    pub dtype: DType,
    /// The array's shape, C order.
    pub shape: Vec<usize>,
    /// Byte offset of the data: always 0 in layout version 2.
    pub data_offset: usize,
    /// Bytes of data.
    pub data_len: usize,
    /// Byte offset of the header page: `total_len - HEADER_PAGE_SIZE`.
    pub header_offset: usize,
    /// Bytes in the whole segment.
    pub total_len: usize,
    /// The page size the segment is made of (4096 unless huge pages).
    pub page_size: usize,
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
    /// Plans the layout of a new segment: the data from 0, padded to a
    /// multiple of [`PAGE_SIZE`], then the header page.
    ///
    /// # Errors
    /// [`Error::InvalidShape`] when the shape has too many axes or its byte
    /// size overflows.
    pub fn plan(dtype: DType, shape: &[usize]) -> Result<Layout> {
        Self::plan_paged(dtype, shape, PAGE_SIZE)
    }

    /// Plans the layout of a new segment made of pages of `page_size`
    /// bytes: the data from 0, zero padding, and the header page in the
    /// last 4096 bytes of an object whose size is a multiple of
    /// `page_size` (so every reader finds the header as it always does, and
    /// on a `huge=within_size` tmpfs every page lies within the file's size).
    /// With [`PAGE_SIZE`] this is [`plan`](Self::plan).
    ///
    /// ```
    /// use shmpar_core::{DType, header::Layout};
    /// let layout = Layout::plan_paged(DType::F64, &[1000], 2 << 20)?;
    /// assert_eq!((layout.total_len, layout.header_offset), (2 << 20, (2 << 20) - 4096));
    /// assert_eq!(layout.page_size, 2 << 20);
    /// # Ok::<(), shmpar_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidShape`] as [`plan`](Self::plan) (and when rounding
    /// up to `page_size` overflows); [`Error::InvalidOption`] when
    /// `page_size` is not a power of two from [`PAGE_SIZE`] to
    /// [`MAX_PAGE_SIZE`].
    pub fn plan_paged(dtype: DType, shape: &[usize], page_size: usize) -> Result<Layout> {
        if !page_size.is_power_of_two() || !(PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(Error::InvalidOption {
                option: "page_size",
                reason: format!(
                    "{page_size} bytes; a page size is a power of two from {PAGE_SIZE} to {MAX_PAGE_SIZE}"
                ),
            });
        }
        if shape.len() > MAX_RANK {
            return Err(Error::InvalidShape {
                shape: shape.to_vec(),
                reason: format!("{} axes, at most {MAX_RANK} are supported", shape.len()),
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
        let total_len = round_up(data_len, PAGE_SIZE)
            .and_then(|padded| padded.checked_add(HEADER_PAGE_SIZE))
            .and_then(|end| round_up(end, page_size))
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or_else(too_large)?;
        let header_offset = total_len - HEADER_PAGE_SIZE;
        Ok(Layout {
            dtype,
            shape: shape.to_vec(),
            data_offset: 0,
            data_len,
            header_offset,
            total_len,
            page_size,
            creator: ProcessId::current(),
            persistent: false,
        })
    }

    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.data_len / self.dtype.size()
    }

    /// The header that describes this layout, its state still
    /// [`STATE_INITIALIZING`]: the creator writes it, fills the data, then
    /// publishes [`STATE_READY`] with release ordering.
    pub fn header(&self) -> Header {
        let mut shape = [0u64; MAX_RANK];
        for (dst, &src) in shape.iter_mut().zip(&self.shape) {
            *dst = src as u64;
        }
        let endian = if cfg!(target_endian = "little") {
            FLAG_LITTLE_ENDIAN
        } else {
            0
        };
        let persistent = if self.persistent { FLAG_PERSISTENT } else { 0 };
        let flags = endian | persistent | FLAG_LIVENESS_LOCK;
        Header {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            state: STATE_INITIALIZING,
            dtype: self.dtype.code(),
            elem_size: self.dtype.size() as u32,
            ndim: self.shape.len() as u32,
            flags,
            data_offset: self.data_offset as u64,
            data_len: self.data_len as u64,
            total_len: self.total_len as u64,
            header_offset: self.header_offset as u64,
            shape,
            creator_pid: self.creator.pid,
            page_size: self.page_size as u32,
            creator_start_time: self.creator.start_time,
            reserved_liveness: [0; 8],
            reserved: [0; 6],
        }
    }
}

/// An object whose bytes can be read at an offset: a descriptor (`pread`)
/// or, in tests, a byte slice.
pub(crate) trait ReadAt {
    /// Reads into `buf` from `offset`; fewer bytes only at the object's end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut filled = 0;
        while filled < buf.len() {
            match FileExt::read_at(self, &mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// The header at `offset`, zero-filled where the object ends before it.
fn header_at(object: &(impl ReadAt + ?Sized), offset: u64, name: &str) -> Result<Header> {
    let mut bytes = [0u8; HEADER_SIZE];
    object.read_at(offset, &mut bytes).map_err(|source| Error::Io {
        op: "read the header",
        name: name.into(),
        source,
    })?;
    Ok(bytemuck::pod_read_unaligned(&bytes))
}

/// The header in the last page of an object of `size` bytes, whatever its
/// state, if that page starts with [`MAGIC`].
pub(crate) fn find_header(object: &(impl ReadAt + ?Sized), size: u64, name: &str) -> Option<Header> {
    let page = HEADER_PAGE_SIZE as u64;
    if size == 0 || !size.is_multiple_of(page) {
        return None;
    }
    header_at(object, size - page, name)
        .ok()
        .filter(|h| h.magic == MAGIC)
}

/// What the header of an object says about who holds it, whatever its
/// state: the creator (for display, and for segments without the lock
/// protocol) and whether the segment follows the liveness-lock protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The creator as its header records it.
    pub(crate) creator: ProcessId,
    /// [`FLAG_LIVENESS_LOCK`] is set: the lock alone decides liveness.
    pub(crate) locks: bool,
}

/// The [`Record`] in the header of an object of `size` bytes, whatever
/// its state: from a version 2 header, or from a version 1 header at
/// offset 0 (whose `creator_pid` and `creator_start_time` were at 136 and
/// 144, and which knew no lock), so that segments left by an older shmpar
/// can be collected too.
pub(crate) fn find_record(object: &(impl ReadAt + ?Sized), size: u64, name: &str) -> Option<Record> {
    if let Some(header) = find_header(object, size, name) {
        return Some(Record {
            creator: ProcessId {
                pid: header.creator_pid,
                start_time: header.creator_start_time,
            },
            locks: header.flags & FLAG_LIVENESS_LOCK != 0,
        });
    }
    let mut legacy = [0u8; 152];
    if object.read_at(0, &mut legacy).ok()? < legacy.len()
        || legacy[..8] != MAGIC
        || legacy[8..12] != LEGACY_VERSION.to_le_bytes()
    {
        return None;
    }
    Some(Record {
        creator: ProcessId {
            pid: i32::from_le_bytes(legacy[136..140].try_into().ok()?),
            start_time: u64::from_le_bytes(legacy[144..152].try_into().ok()?),
        },
        locks: false,
    })
}

/// The creator recorded in the header of an object of `size` bytes,
/// whatever its state (see [`find_record`]).
pub(crate) fn find_creator(object: &(impl ReadAt + ?Sized), size: u64, name: &str) -> Option<ProcessId> {
    find_record(object, size, name).map(|record| record.creator)
}

/// Reads and validates the header of an object of `size` bytes (its
/// `fstat` size).
///
/// # Errors
/// A typed error for each way the object can be wrong:
/// - [`Error::Initializing`]: size 0, an all-zero header page (the creator
///   has reserved the space but not written the header yet), or state 0;
/// - [`Error::UnsupportedVersion`]: another version's header, version 1's
///   included (its header was at offset 0);
/// - [`Error::Truncated`]: the object was cut inside its header page, or
///   is shorter than its header says;
/// - [`Error::CorruptHeader`]: fields that contradict each other or the size;
/// - [`Error::NotShmpar`]: no shmpar header where one would be;
/// - [`Error::Io`]: the bytes could not be read.
pub(crate) fn read_layout(object: &(impl ReadAt + ?Sized), size: u64, name: &str) -> Result<Layout> {
    // shm_open(O_CREAT) and the space reservation are two steps: a
    // zero-sized object is one whose creator has not got further.
    if size == 0 {
        return Err(Error::Initializing { name: name.into() });
    }
    let page = HEADER_PAGE_SIZE as u64;
    let last = if size.is_multiple_of(page) {
        let header = header_at(object, size - page, name)?;
        if header.magic == MAGIC {
            return check(&header, size, name);
        }
        Some(header)
    } else {
        None
    };
    // No header where version 2 puts it. Version 1 put it at offset 0.
    let legacy = header_at(object, 0, name)?;
    if legacy.magic == MAGIC && legacy.layout_version == LEGACY_VERSION {
        return Err(Error::UnsupportedVersion {
            name: name.into(),
            found: LEGACY_VERSION,
            supported: LAYOUT_VERSION,
        });
    }
    if last == Some(Header::zeroed()) {
        // The reservation zero-fills the object; the creator writes the
        // header right after. (A creator that died here leaves this
        // behind: gc removes it, as no process holds its lock.)
        return Err(Error::Initializing { name: name.into() });
    }
    // Version 2 objects are a whole number of pages; one that is not, with
    // a header at its last page boundary, was cut inside its header page.
    if !size.is_multiple_of(page) {
        let boundary = size - size % page;
        if header_at(object, boundary, name)?.magic == MAGIC {
            return Err(Error::Truncated {
                name: name.into(),
                size,
                needed: boundary + page,
            });
        }
    }
    Err(Error::NotShmpar { name: name.into() })
}

/// Checks a header found at `size - HEADER_PAGE_SIZE`: version, state, then
/// every field.
fn check(header: &Header, size: u64, name: &str) -> Result<Layout> {
    if header.layout_version != LAYOUT_VERSION {
        return Err(Error::UnsupportedVersion {
            name: name.into(),
            found: header.layout_version,
            supported: LAYOUT_VERSION,
        });
    }
    match header.state {
        STATE_READY => {}
        STATE_INITIALIZING => return Err(Error::Initializing { name: name.into() }),
        other => return Err(corrupt(name, format!("unknown state word {other}"))),
    }
    header.validate(size, name)
}

fn corrupt(name: &str, reason: String) -> Error {
    Error::CorruptHeader {
        name: name.into(),
        reason,
    }
}

impl Header {
    /// Checks every field against the others and against the real `size`
    /// of the object. Pure arithmetic on copied values, with overflow
    /// checked everywhere, so any input gives a `Layout` or an error.
    /// The magic, version and state are [`check`]'s business.
    fn validate(&self, size: u64, name: &str) -> Result<Layout> {
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
        if self.data_offset != 0 {
            return Err(corrupt(
                name,
                format!(
                    "data offset {}; layout version {LAYOUT_VERSION} puts the data at 0",
                    self.data_offset
                ),
            ));
        }
        let page_size = self.page_size as usize;
        if !page_size.is_power_of_two() || !(PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(corrupt(
                name,
                format!(
                    "page size {page_size}; it must be a power of two from {PAGE_SIZE} to {MAX_PAGE_SIZE}"
                ),
            ));
        }
        let total_len = usize::try_from(self.total_len)
            .ok()
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or_else(|| corrupt(name, format!("total length {} overflows", self.total_len)))?;
        if !total_len.is_multiple_of(page_size) || total_len < HEADER_PAGE_SIZE {
            return Err(corrupt(
                name,
                format!("total length {total_len} is not a positive multiple of the page size {page_size}"),
            ));
        }
        let header_offset = total_len - HEADER_PAGE_SIZE;
        if self.header_offset != header_offset as u64 {
            return Err(corrupt(
                name,
                format!(
                    "header offset {} is not total length - {HEADER_PAGE_SIZE} ({header_offset})",
                    self.header_offset
                ),
            ));
        }
        if data_len > header_offset {
            return Err(corrupt(
                name,
                format!("{data_len} bytes of data overlap the header at {header_offset}"),
            ));
        }
        // The header was found at `size - HEADER_PAGE_SIZE`; it must say so.
        match (total_len as u64).cmp(&size) {
            std::cmp::Ordering::Greater => {
                return Err(Error::Truncated {
                    name: name.into(),
                    size,
                    needed: total_len as u64,
                });
            }
            std::cmp::Ordering::Less => {
                return Err(corrupt(
                    name,
                    format!("the object is {size} bytes but its header says {total_len}"),
                ));
            }
            std::cmp::Ordering::Equal => {}
        }
        Ok(Layout {
            dtype,
            shape,
            data_offset: 0,
            data_len,
            header_offset,
            total_len,
            page_size,
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

    /// The offsets `docs/segment-layout.md` documents, relative to the
    /// start of the header.
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
        assert_eq!(offset_of!(Header, header_offset), 56);
        assert_eq!(offset_of!(Header, shape), 64);
        assert_eq!(offset_of!(Header, creator_pid), 128);
        assert_eq!(offset_of!(Header, page_size), 132);
        assert_eq!(offset_of!(Header, creator_start_time), 136);
        assert_eq!(offset_of!(Header, reserved_liveness), 144);
        assert_eq!(LIVENESS_LOCK_OFFSET, 144);
        assert_eq!(offset_of!(Header, reserved), 208);
        assert_eq!(size_of::<Header>(), 256);
        assert_eq!(offset_of!(HeaderPage, barrier), 256);
        assert_eq!(offset_of!(HeaderPage, lock), 320);
        assert_eq!(size_of::<HeaderPage>(), 4096);
        for f in FIELDS {
            let (offset, size) = match f.name {
                "layout_version" => (offset_of!(Header, layout_version), 4),
                "state" => (offset_of!(Header, state), 4),
                "dtype" => (offset_of!(Header, dtype), 4),
                "elem_size" => (offset_of!(Header, elem_size), 4),
                "ndim" => (offset_of!(Header, ndim), 4),
                "flags" => (offset_of!(Header, flags), 4),
                "data_offset" => (offset_of!(Header, data_offset), 8),
                "data_len" => (offset_of!(Header, data_len), 8),
                "total_len" => (offset_of!(Header, total_len), 8),
                "header_offset" => (offset_of!(Header, header_offset), 8),
                "creator_pid" => (offset_of!(Header, creator_pid), 4),
                "page_size" => (offset_of!(Header, page_size), 4),
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

    /// The bytes of a ready segment of `layout`: data (zero) then header.
    fn object(layout: &Layout) -> Vec<u8> {
        let mut bytes = vec![0u8; layout.total_len];
        let mut header = layout.header();
        header.state = STATE_READY;
        bytes[layout.header_offset..][..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        bytes
    }

    fn good() -> (Header, u64) {
        let layout = Layout::plan(DType::F64, &[10, 3]).unwrap();
        let mut header = layout.header();
        header.state = STATE_READY;
        (header, layout.total_len as u64)
    }

    #[test]
    fn plan_puts_the_data_at_zero_and_the_header_in_the_last_page() {
        let layout = Layout::plan(DType::F32, &[1000]).unwrap();
        assert_eq!(layout.data_offset, 0);
        assert_eq!(layout.data_len, 4000);
        assert_eq!(layout.header_offset, 4096);
        assert_eq!(layout.total_len, 8192);
        let page = Layout::plan(DType::U8, &[4096]).unwrap();
        assert_eq!((page.header_offset, page.total_len), (4096, 8192));
        let scalar = Layout::plan(DType::U8, &[]).unwrap();
        assert_eq!(scalar.data_len, 1, "a 0-d array holds one element");
        assert_eq!(scalar.total_len, 8192);
        let empty = Layout::plan(DType::F64, &[0, 5]).unwrap();
        assert_eq!(
            (empty.data_len, empty.header_offset, empty.total_len),
            (0, 0, 4096)
        );
    }

    #[test]
    fn a_planned_header_reads_back_as_its_layout() {
        for (dtype, shape) in [
            (DType::F64, &[10usize, 3][..]),
            (DType::U8, &[]),
            (DType::I16, &[0, 5]),
            (DType::U64, &[2, 3, 4, 5, 1, 1, 1, 2]),
        ] {
            let layout = Layout::plan(dtype, shape).unwrap();
            let bytes = object(&layout);
            assert_eq!(read_layout(&bytes[..], bytes.len() as u64, "t").unwrap(), layout);
            assert_eq!(
                find_record(&bytes[..], bytes.len() as u64, "t"),
                Some(Record {
                    creator: layout.creator,
                    locks: true,
                })
            );
            assert_ne!(layout.header().flags & FLAG_LIVENESS_LOCK, 0);
        }
    }

    #[test]
    fn an_empty_axis_does_not_hide_a_huge_one() {
        assert_eq!(data_bytes(&[0, 5], DType::F64), Some(0));
        assert_eq!(data_bytes(&[3, 5], DType::F64), Some(120));
        assert_eq!(data_bytes(&[0, usize::MAX], DType::F64), None);
        assert_eq!(data_bytes(&[0, isize::MAX as usize / 8 + 1], DType::F64), None);
        assert!(matches!(
            Layout::plan(DType::F32, &[0, usize::MAX]),
            Err(Error::InvalidShape { .. })
        ));
        let (mut header, size) = good();
        header.shape[0] = 0;
        header.shape[1] = u64::MAX;
        header.data_len = 0;
        assert!(matches!(
            header.validate(size, "t"),
            Err(Error::CorruptHeader { .. })
        ));
    }

    #[test]
    fn plan_rejects_bad_shapes() {
        assert!(matches!(
            Layout::plan(DType::F64, &[1; 9]),
            Err(Error::InvalidShape { .. })
        ));
        assert!(matches!(
            Layout::plan(DType::F64, &[usize::MAX, 2]),
            Err(Error::InvalidShape { .. })
        ));
        assert!(matches!(
            Layout::plan(DType::F64, &[usize::MAX / 8]),
            Err(Error::InvalidShape { .. })
        ));
        assert!(matches!(
            Layout::plan(DType::U8, &[isize::MAX as usize - 100]),
            Err(Error::InvalidShape { .. })
        ));
    }

    #[test]
    fn a_consistent_header_validates() {
        let (header, size) = good();
        let layout = header.validate(size, "t").unwrap();
        assert_eq!(layout.shape, vec![10, 3]);
        assert_eq!(layout.dtype, DType::F64);
        assert_eq!(layout.creator, ProcessId::current());
    }

    #[test]
    fn a_paged_plan_rounds_the_object_and_keeps_the_header_last() {
        const HUGE: usize = 2 << 20;
        for (shape, total) in [
            (&[1000usize][..], HUGE),
            (&[0][..], HUGE),
            // 2 MiB of data and the header page: two huge pages.
            (&[HUGE / 8][..], 2 * HUGE),
            (&[HUGE / 8 - 512][..], HUGE),
            (&[HUGE / 8 - 511][..], 2 * HUGE),
        ] {
            let layout = Layout::plan_paged(DType::F64, shape, HUGE).unwrap();
            assert_eq!(layout.total_len, total, "{shape:?}");
            assert_eq!(layout.header_offset, total - HEADER_PAGE_SIZE);
            assert!(layout.data_len <= layout.header_offset);
            let bytes = object(&layout);
            assert_eq!(read_layout(&bytes[..], bytes.len() as u64, "t").unwrap(), layout);
        }
        assert_eq!(
            Layout::plan_paged(DType::F32, &[1000], PAGE_SIZE).unwrap(),
            Layout::plan(DType::F32, &[1000]).unwrap()
        );
        let one_gib = Layout::plan_paged(DType::U8, &[1], MAX_PAGE_SIZE).unwrap();
        assert_eq!(one_gib.total_len, MAX_PAGE_SIZE);
        for bad in [0, 2048, 12288, MAX_PAGE_SIZE * 2] {
            assert!(matches!(
                Layout::plan_paged(DType::F64, &[1], bad),
                Err(Error::InvalidOption { .. })
            ));
        }
        assert!(matches!(
            Layout::plan_paged(DType::U8, &[isize::MAX as usize - HUGE], HUGE),
            Err(Error::InvalidShape { .. })
        ));
    }

    #[test]
    fn a_huge_page_variant_validates() {
        // What a huge-page segment writes: the total rounded up to
        // 2 MiB, the header still in the last 4 KiB.
        let (mut header, _) = good();
        let total = 2u64 << 20;
        header.page_size = 2 << 20;
        header.total_len = total;
        header.header_offset = total - HEADER_PAGE_SIZE as u64;
        let layout = header.validate(total, "t").unwrap();
        assert_eq!(
            (layout.page_size, layout.header_offset),
            (2 << 20, (2 << 20) - 4096)
        );
    }

    #[test]
    fn each_inconsistency_is_a_typed_error() {
        let (base, size) = good();
        type Forge = Box<dyn Fn(&mut Header)>;
        let cases: Vec<(&str, Forge)> = vec![
            ("dtype", Box::new(|h| h.dtype = 99)),
            ("elem size", Box::new(|h| h.elem_size = 4)),
            ("ndim", Box::new(|h| h.ndim = 9)),
            ("shape tail", Box::new(|h| h.shape[5] = 1)),
            ("shape vs len", Box::new(|h| h.shape[0] = 11)),
            ("overflow", Box::new(|h| h.shape[0] = u64::MAX)),
            ("data len", Box::new(|h| h.data_len = 8)),
            ("data offset", Box::new(|h| h.data_offset = 4096)),
            ("page size 0", Box::new(|h| h.page_size = 0)),
            ("page size odd", Box::new(|h| h.page_size = 12288)),
            ("page size small", Box::new(|h| h.page_size = 2048)),
            ("page size huge", Box::new(|h| h.page_size = 1 << 31)),
            ("total", Box::new(|h| h.total_len += 1)),
            ("total small", Box::new(|h| h.total_len = 0)),
            ("total overflow", Box::new(|h| h.total_len = u64::MAX)),
            ("header offset", Box::new(|h| h.header_offset = 0)),
            (
                "object larger",
                Box::new(|h| {
                    h.total_len -= 4096;
                    h.header_offset -= 4096;
                }),
            ),
            (
                "data over header",
                Box::new(|h| {
                    h.shape[0] = 1000;
                    h.data_len = 24000;
                }),
            ),
            ("endianness", Box::new(|h| h.flags = 0)),
        ];
        for (what, mutate) in cases {
            let mut header = base;
            mutate(&mut header);
            match header.validate(size, "t") {
                Err(Error::CorruptHeader { .. }) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
        let mut claims_more = base;
        claims_more.total_len += 4096;
        claims_more.header_offset += 4096;
        assert!(matches!(
            claims_more.validate(size, "t"),
            Err(Error::Truncated {
                size: 8192,
                needed: 12288,
                ..
            })
        ));
    }

    #[test]
    fn objects_without_a_version_2_header_get_typed_errors() {
        let layout = Layout::plan(DType::F64, &[10, 3]).unwrap();
        let ready = object(&layout);
        let read = |bytes: &[u8]| read_layout(bytes, bytes.len() as u64, "t");

        assert!(matches!(read(&[]), Err(Error::Initializing { .. })));
        assert!(matches!(read(&[0; 8192]), Err(Error::Initializing { .. })));
        assert!(matches!(read(&[0x41; 8192]), Err(Error::NotShmpar { .. })));
        assert!(matches!(read(b"abc"), Err(Error::NotShmpar { .. })));

        let mut initializing = ready.clone();
        initializing[4096 + STATE_OFFSET] = 0;
        assert!(matches!(read(&initializing), Err(Error::Initializing { .. })));
        let mut unknown_state = ready.clone();
        unknown_state[4096 + STATE_OFFSET] = 9;
        assert!(matches!(read(&unknown_state), Err(Error::CorruptHeader { .. })));
        let mut future = ready.clone();
        future[4096 + 8] = 3;
        assert!(matches!(
            read(&future),
            Err(Error::UnsupportedVersion {
                found: 3,
                supported: 2,
                ..
            })
        ));

        // Cut inside the header page: the header is still at the last page
        // boundary, so this is a truncation, not a foreign object.
        assert!(matches!(
            read(&ready[..8192 - 100]),
            Err(Error::Truncated {
                size: 8092,
                needed: 8192,
                ..
            })
        ));
        // Cut below the header page: nothing says it was ever shmpar's.
        assert!(matches!(read(&ready[..4095]), Err(Error::NotShmpar { .. })));
        // Grown by a page: the last page is not a header.
        let mut grown = ready.clone();
        grown.resize(12288, 0x41);
        assert!(matches!(read(&grown), Err(Error::NotShmpar { .. })));
    }

    #[test]
    fn a_version_1_segment_says_so() {
        // Version 1: a 512-byte header at offset 0, 64 result slots of 256
        // bytes, the data from 20480.
        for data_len in [240usize, 4096] {
            let mut v1 = vec![0u8; 20480 + data_len];
            v1[..8].copy_from_slice(&MAGIC);
            v1[8..12].copy_from_slice(&1u32.to_le_bytes());
            v1[12..16].copy_from_slice(&STATE_READY.to_le_bytes());
            v1[136..140].copy_from_slice(&77i32.to_le_bytes());
            v1[144..152].copy_from_slice(&99u64.to_le_bytes());
            assert_eq!(
                find_record(&v1[..], v1.len() as u64, "old"),
                Some(Record {
                    creator: ProcessId {
                        pid: 77,
                        start_time: 99
                    },
                    locks: false,
                })
            );
            match read_layout(&v1[..], v1.len() as u64, "old") {
                Err(
                    e @ Error::UnsupportedVersion {
                        found: 1,
                        supported: 2,
                        ..
                    },
                ) => {
                    assert_eq!(
                        e.to_string(),
                        "segment old has layout version 1; this build of shmpar reads version 2"
                    );
                }
                other => panic!("{data_len}: {other:?}"),
            }
        }
    }
}
