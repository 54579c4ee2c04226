//! Looking at segments without attaching: the header and the data read
//! with `pread` from a read-only descriptor, never mapped, so the owner of
//! a foreign segment cannot kill the reader with SIGBUS by shrinking it,
//! and nothing the reader does changes the segment.

use std::fs::File;

use crate::error::{Error, Result};
use crate::header::{self, Layout, ReadAt};
use crate::liveness::{Liveness, ProcessId};
use crate::os;

use super::{Location, open_existing_error, stat_object};

/// Opens the object at `location` read-only, refusing symbolic links,
/// without blocking, and anything but a regular file; returns it and what
/// `fstat` says of it.
pub(crate) fn open_for_reading(location: &Location) -> Result<(File, os::ObjectStat)> {
    let file = os::open_readonly(&location.path()?).map_err(|e| open_existing_error(location, e))?;
    let stat = stat_object(&file, location)?;
    Ok((file, stat))
}

/// Reads and validates the header of the segment at `location` without
/// mapping it and without write access (`pread` of its last page): what
/// `shmpar ls` and `shmpar gc` use to look at segments they do not own.
///
/// # Errors
/// As [`Segment::open`](super::Segment::open), except
/// [`Error::AlreadyOpen`]: peeking records no handle. A FIFO, a symbolic
/// link or any other non-regular file is [`Error::NotRegularFile`], at
/// once: it is never waited on or followed.
pub fn peek(location: &Location) -> Result<Layout> {
    let (file, stat) = open_for_reading(location)?;
    header::read_layout(&file, stat.size, &location.display_name())
}

/// The creator recorded in a segment's header, whatever state it is in, if
/// the object carries a shmpar header (of this layout version or of version
/// 1): for showing who made a segment, also one whose creator died while
/// initializing, or one an older shmpar left behind. `None` for anything
/// that is not a regular file.
pub fn peek_creator(location: &Location) -> Option<ProcessId> {
    let (file, stat) = open_for_reading(location).ok()?;
    header::find_creator(&file, stat.size, &location.display_name())
}

/// Whether the segment at `location` is in use: whether some process holds
/// a lock on it, as every handle of a segment does (see
/// [`crate::liveness`]). [`Liveness::Unknown`] when the object cannot be
/// opened or asked (it belongs to another user, it is not a regular
/// file, ...), which counts as in use.
pub fn liveness(location: &Location) -> Liveness {
    match open_for_reading(location) {
        Ok((file, _)) => Liveness::of(&file),
        Err(_) => Liveness::Unknown,
    }
}

/// A read-only look at a segment: its validated header, whether it is in
/// use, and its data read with `pread` on request. It holds a read-only
/// descriptor and no mapping, so a segment that shrinks or changes under it
/// yields an error or new bytes, never SIGBUS, and holding it does not
/// count as using the segment.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), shmpar_core::Error> {
/// use shmpar_core::segment::{self, Peek};
/// let a = shmpar_core::SharedArray::from_array(&ndarray::arr1(&[1.5f64, 2.5]))?;
/// let peek = Peek::open(a.segment().location())?;
/// assert_eq!(peek.layout().shape, [2]);
/// assert!(peek.liveness().in_use()); // `a` holds it
/// let mut bytes = [0u8; 8];
/// assert_eq!(peek.read_data(8, &mut bytes)?, 8);
/// assert_eq!(f64::from_le_bytes(bytes), 2.5);
/// // Or the first bytes at once:
/// assert_eq!(segment::peek_data(a.segment().location(), 1 << 20)?.1.len(), 16);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Peek {
    file: File,
    location: Location,
    layout: Layout,
}

impl Peek {
    /// Opens the segment at `location` read-only (never following a
    /// symbolic link, never waiting on a FIFO) and validates its header.
    ///
    /// # Errors
    /// As [`peek`].
    pub fn open(location: &Location) -> Result<Peek> {
        let (file, stat) = open_for_reading(location)?;
        let layout = header::read_layout(&file, stat.size, &location.display_name())?;
        Ok(Peek {
            file,
            location: location.clone(),
            layout,
        })
    }

    /// The layout the header described when it was opened.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the segment is in use now (see [`liveness`]).
    pub fn liveness(&self) -> Liveness {
        Liveness::of(&self.file)
    }

    /// Reads data bytes from byte `offset` of the data into `buf`, as many
    /// as fit and as the data holds past `offset`; returns how many (0 at
    /// or past the end of the data).
    ///
    /// # Errors
    /// [`Error::Truncated`] when the object has shrunk below what its
    /// header said (its owner cut it meanwhile); [`Error::Io`] when the
    /// read fails.
    pub fn read_data(&self, offset: usize, buf: &mut [u8]) -> Result<usize> {
        let available = self.layout.data_len.saturating_sub(offset);
        let want = buf.len().min(available);
        if want == 0 {
            return Ok(0);
        }
        let got = self
            .file
            .read_at(offset as u64, &mut buf[..want])
            .map_err(|source| Error::Io {
                op: "read the data",
                name: self.location.display_name(),
                source,
            })?;
        if got < want {
            let size = os::stat(&self.file).map_or(0, |stat| stat.size);
            return Err(Error::Truncated {
                name: self.location.display_name(),
                size,
                needed: self.layout.total_len as u64,
            });
        }
        Ok(got)
    }
}

/// The validated header of the segment at `location` and the first
/// `max_bytes` bytes of its data (fewer if the data is shorter), read with
/// `pread` only: for tools such as `shmpar inspect` that look at segments
/// other users own, which must not map them (the owner could shrink the
/// object and kill the reader with SIGBUS). For more than fits in memory at
/// once, use [`Peek::read_data`] in a loop.
///
/// # Errors
/// As [`Peek::open`] and [`Peek::read_data`].
pub fn peek_data(location: &Location, max_bytes: usize) -> Result<(Layout, Vec<u8>)> {
    let peek = Peek::open(location)?;
    let mut data = vec![0u8; max_bytes.min(peek.layout.data_len)];
    let got = peek.read_data(0, &mut data)?;
    data.truncate(got);
    Ok((peek.layout, data))
}
