//! Segments: an array's data from byte 0 and a header page at the end, in
//! a named shared-memory object or a memory-mapped file, with a lifecycle
//! that cleans up after itself. The byte layout is in [`crate::header`].
//!
//! Every handle holds the segment's liveness lock (see [`crate::liveness`])
//! for as long as it lives, through its mapping; the creator takes it
//! right after `shm_open(O_CREAT | O_EXCL)`, before reserving any space, so
//! `gc` never mistakes a segment under construction for an orphan.

mod create;
mod huge;
mod options;
mod peek;
mod place;
mod registry;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::element::DType;
use crate::error::{Error, Result};
use crate::header::{
    self, BARRIER_OFFSET, BARRIER_TREE_OFFSET, FLAGS_OFFSET, LIVENESS_LOCK_OFFSET, LOCK_OFFSET, Layout,
    STATE_OFFSET,
};
use crate::liveness::ProcessId;
use crate::name;
use crate::os::{self, Mapping};
use crate::sync::{Barrier, BarrierState, BarrierTree, LockState, ShmLock};
pub use huge::{HugePageSupport, HugePages, probe as probe_huge_pages};
pub use options::SegmentOptions;
pub(crate) use peek::open_for_reading;
pub use peek::{Peek, liveness, peek, peek_creator, peek_data};
use place::Place;
pub use place::unlink_if;
pub(crate) use place::{SHM_DIR, remove_at};
use registry::Registration;
pub use registry::forget_inherited as forget_inherited_handles;

/// Where a segment lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A POSIX shared-memory object, `/dev/shm/NAME` on Linux. The name is
    /// kept without its leading `/`.
    Shm(String),
    /// A memory-mapped file, for arrays that must persist or outgrow `/dev/shm`.
    File(PathBuf),
}

impl Location {
    /// A shared-memory location, its name validated.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an empty name, one with `/` or NUL inside,
    /// `.` or `..`, or one longer than 255 bytes.
    pub fn shm(name: &str) -> Result<Location> {
        name::validate(name).map(Location::Shm)
    }

    /// The name (without `/`) or the path, as text for messages.
    pub fn display_name(&self) -> String {
        match self {
            Location::Shm(name) => name.clone(),
            Location::File(path) => path.display().to_string(),
        }
    }

    /// The directory whose file system holds the segment.
    fn filesystem(&self) -> PathBuf {
        match self {
            Location::Shm(_) => PathBuf::from(place::SHM_DIR),
            Location::File(path) => match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }

    /// The object's path, for reading it without `shm_open`.
    fn path(&self) -> Result<PathBuf> {
        match self {
            Location::Shm(bare) => Ok(PathBuf::from(place::SHM_DIR).join(name::validate(bare)?)),
            Location::File(path) => Ok(path.clone()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_name())
    }
}

/// A mapped segment: the array's data, then the header page with the
/// barrier and the lock.
///
/// The creating handle removes the segment's name when it drops, unless
/// told to [`persist`](SegmentOptions::persist), and only in the process
/// that created it (a forked child's copy never does); handles that
/// attached only unmap. The mapping stays valid in every process that has
/// it until that process drops its handle, even after the name is removed.
///
/// Every handle holds the segment's liveness lock while it lives, so `gc`
/// leaves the segment alone (see [`crate::liveness`]). The lock is held by
/// the mapping, not by a descriptor: a handle keeps no file descriptor
/// open. A forked child inherits the mapping and with it keeps the segment
/// in use until it exits.
///
/// # Safety
/// One process holds at most one handle per segment: [`create`](Self::create)
/// and every `open*` record the object's (device, inode) in a process-wide
/// registry, and opening an object this process already has open fails
/// with [`Error::AlreadyOpen`]. So within a process the borrow checker sees
/// every view of the segment's bytes, and `&`/`&mut` mean what they say.
/// [`open_unchecked`](Self::open_unchecked) skips the registry; its caller
/// takes over that guarantee.
///
/// # Concurrency
/// Other processes may read and write the same bytes at the same time: the
/// type system of one process cannot see them. shmpar's runtime never lets
/// another process touch bytes that a `&mut` view covers: each worker gets
/// disjoint rows, and phases are separated by the in-segment barrier
/// (release/acquire), so every access is race free. Code that writes shared
/// bytes from another process outside such a protocol makes a data race
/// that no type can rule out; that is why raw access is `unsafe`
/// ([`SharedArray::view_mut_unchecked`](crate::SharedArray::view_mut_unchecked),
/// [`open_unchecked`](Self::open_unchecked)). Such a race gives torn
/// values, never invalid ones: every [`Element`](crate::Element) is valid
/// for every bit pattern, and the header is validated once, on a copy.
pub struct Segment {
    mapping: Mapping,
    location: Location,
    layout: Layout,
    /// (device, inode) of the object, so drop never removes a namesake
    /// created by someone else after ours was unlinked.
    identity: (u64, u64),
    unlink_on_drop: bool,
    /// The process that created the segment (0 for an attached handle):
    /// only there does drop remove the name.
    owner_pid: i32,
    /// Our slot in the signal-cleanup registry, while we own the name.
    cleanup_slot: Option<usize>,
    /// Our entry in the one-handle-per-process registry (`None` for
    /// [`Segment::open_unchecked`]).
    _registration: Option<Registration>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("location", &self.location)
            .field("layout", &self.layout)
            .field("unlink_on_drop", &self.unlink_on_drop)
            .finish()
    }
}

fn open_error(location: &Location, op: &'static str, source: io::Error) -> Error {
    let name = location.display_name();
    match source.raw_os_error() {
        // O_NOFOLLOW met a symbolic link.
        Some(libc::ELOOP) => {
            return Error::NotRegularFile {
                name,
                kind: "symbolic link",
            };
        }
        Some(libc::EISDIR) => {
            return Error::NotRegularFile {
                name,
                kind: "directory",
            };
        }
        // A socket, or a device without a driver.
        Some(libc::ENXIO) => {
            return Error::NotRegularFile {
                name,
                kind: "socket or device",
            };
        }
        _ => {}
    }
    match source.kind() {
        io::ErrorKind::NotFound => Error::NotFound { name },
        io::ErrorKind::AlreadyExists => Error::AlreadyExists { name },
        io::ErrorKind::PermissionDenied => Error::PermissionDenied { name, source },
        _ => Error::Io { op, name, source },
    }
}

/// The error of a failed open of an existing object: what the name is, if
/// it is not a regular file (glibc's `shm_open` reports a directory as
/// `EINVAL`, `O_NOFOLLOW` a link as `ELOOP`, a socket fails with `ENXIO`),
/// else as [`open_error`] says.
fn open_existing_error(location: &Location, source: io::Error) -> Error {
    let not_regular = location
        .path()
        .ok()
        .and_then(|path| os::stat_path(&path).ok())
        .filter(|stat| !stat.regular);
    match not_regular {
        Some(stat) => Error::NotRegularFile {
            name: location.display_name(),
            kind: stat.kind,
        },
        None => open_error(location, "open", source),
    }
}

/// `fstat` of an opened object; anything but a regular file is refused.
fn stat_object(file: &File, location: &Location) -> Result<os::ObjectStat> {
    let stat = os::stat(file).map_err(|e| open_error(location, "fstat", e))?;
    if !stat.regular {
        return Err(Error::NotRegularFile {
            name: location.display_name(),
            kind: stat.kind,
        });
    }
    Ok(stat)
}

/// How long a new handle waits for the liveness lock while a collector
/// holds the segment's write lock (a collector holds it for two system
/// calls; only a hostile holder could keep it longer).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes the shared liveness lock on the byte at `offset` of `file`,
/// waiting (up to [`LOCK_WAIT`]) while a collector holds the write lock.
/// For a file-backed segment a file system without locks is no error (gc
/// only collects in `/dev/shm`); for a shared-memory segment it is, since
/// gc would take the segment for an orphan.
fn take_liveness_lock(file: &File, offset: u64, location: &Location) -> Result<()> {
    let started = Instant::now();
    loop {
        match os::try_lock_shared(file, offset) {
            Ok(true) => return Ok(()),
            Ok(false) if started.elapsed() < LOCK_WAIT => std::thread::sleep(Duration::from_millis(1)),
            Ok(false) => {
                return Err(Error::Io {
                    op: "take the liveness lock (another process holds a write lock on the segment)",
                    name: location.display_name(),
                    source: io::Error::from_raw_os_error(libc::EWOULDBLOCK),
                });
            }
            Err(_) if matches!(location, Location::File(_)) => return Ok(()),
            Err(source) => {
                return Err(Error::Io {
                    op: "take the liveness lock (fcntl F_OFD_SETLK)",
                    name: location.display_name(),
                    source,
                });
            }
        }
    }
}

/// The liveness lock's offset in a segment of `layout`.
fn lock_offset(layout: &Layout) -> u64 {
    (layout.header_offset + LIVENESS_LOCK_OFFSET) as u64
}

fn register(identity: (u64, u64), location: &Location) -> Result<Registration> {
    registry::register(identity).ok_or_else(|| Error::AlreadyOpen {
        name: location.display_name(),
    })
}

impl Segment {
    /// Attaches to the shared-memory segment `name` and validates its header.
    ///
    /// # Errors
    /// [`Error::AlreadyOpen`] if this process already has a handle of the
    /// segment (pass a reference to that one instead); [`Error::NotFound`],
    /// [`Error::PermissionDenied`], [`Error::InvalidName`]; and every header
    /// error: [`Error::NotShmpar`], [`Error::UnsupportedVersion`],
    /// [`Error::Initializing`], [`Error::Truncated`], [`Error::CorruptHeader`].
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), shmpar_core::Error> {
    /// use shmpar_core::{DType, Error, Segment, SegmentOptions};
    /// let options = SegmentOptions::new().persist(true);
    /// let name = Segment::create(&options, DType::F64, &[10, 3])?.name();
    /// // The creating handle is gone (and kept the name): attach again.
    /// let mut segment = Segment::open(&name)?;
    /// assert_eq!(segment.shape(), &[10, 3]);
    /// // One handle per segment per process.
    /// assert!(matches!(Segment::open(&name), Err(Error::AlreadyOpen { .. })));
    /// segment.unlink()?;
    /// # Ok(()) }
    /// ```
    pub fn open(name: &str) -> Result<Segment> {
        Self::open_location(&Location::shm(name)?)
    }

    /// Attaches to the file-backed segment at `path`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_file(path: impl AsRef<Path>) -> Result<Segment> {
        Self::open_location(&Location::File(path.as_ref().to_path_buf()))
    }

    /// Attaches to the segment at `location`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_location(location: &Location) -> Result<Segment> {
        Self::attach(location, true)
    }

    /// Attaches to the segment at `location` without recording the handle
    /// in the one-handle-per-process registry and without checking for
    /// another handle of it: for code that hands out disjoint parts of one
    /// segment itself, as the runtime's workers do (each takes its own rows
    /// of an array its parent process may also hold a handle of).
    ///
    /// # Errors
    /// As [`open`](Self::open), except [`Error::AlreadyOpen`].
    ///
    /// # Safety
    /// - While the returned handle lives, no `&mut` view (or `&mut` slice)
    ///   made through it may coexist with any other view of the same bytes
    ///   made through another handle of the segment in this process, and
    ///   no `&mut` view made through another handle may coexist with a view
    ///   of the same bytes made through this one.
    /// - Views of *disjoint* bytes through different handles are fine, as
    ///   are shared (`&`) views of the same bytes through several handles.
    pub unsafe fn open_unchecked(location: &Location) -> Result<Segment> {
        Self::attach(location, false)
    }

    fn attach(location: &Location, checked: bool) -> Result<Segment> {
        let name = location.display_name();
        let file = match location {
            Location::Shm(bare) => os::shm_open_existing(&name::to_c(&name::validate(bare)?)),
            Location::File(path) => os::file_open(path),
        }
        .map_err(|e| open_existing_error(location, e))?;
        let stat = stat_object(&file, location)?;
        let registration = if checked {
            Some(register(stat.identity, location)?)
        } else {
            None
        };
        // Validated on a copy read with `pread`, before anything is mapped.
        let layout = header::read_layout(&file, stat.size, &name)?;
        take_liveness_lock(&file, lock_offset(&layout), location)?;
        // A collector that held the write lock while we waited for ours
        // has removed the name: the segment is an orphan.
        if Place::of(location)?.names(stat.identity) == Some(false) {
            return Err(Error::NotFound { name });
        }
        let mapping = Mapping::map(&file, layout.total_len).map_err(|e| open_error(location, "mmap", e))?;
        // The mapping holds the liveness lock from here on (see `create_with`).
        drop(file);
        let segment = Segment {
            mapping,
            location: location.clone(),
            layout,
            identity: stat.identity,
            unlink_on_drop: false,
            owner_pid: 0,
            cleanup_slot: None,
            _registration: registration,
        };
        // Acquire pairs with the creator's release store of READY, so the
        // data it wrote before publishing is visible through this mapping.
        // The copy said READY; only a rewritten object says otherwise now.
        if segment.state_word().load(Ordering::Acquire) != header::STATE_READY {
            return Err(Error::CorruptHeader {
                name,
                reason: "the state word changed while attaching".into(),
            });
        }
        Ok(segment)
    }

    /// Where the segment lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The segment's name (shared memory) or path (file), as text.
    pub fn name(&self) -> String {
        self.location.display_name()
    }

    /// The validated layout read from (or written to) the header.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.layout.dtype
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        &self.layout.shape
    }

    /// The page size the segment is made of, as its header records it:
    /// 4096, or the huge page size when it was created with
    /// [`SegmentOptions::huge_pages`] and got them.
    pub fn page_size(&self) -> usize {
        self.layout.page_size
    }

    /// Who created the segment.
    pub fn creator(&self) -> ProcessId {
        self.layout.creator
    }

    /// The (device, inode) pair of the object behind the segment: two
    /// handles with the same identity map the same memory, and a segment
    /// unlinked and recreated under the same name gets a new identity.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Whether dropping this handle removes the segment's name.
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_on_drop
    }

    /// Keep the segment's name when this handle drops.
    pub fn persist(&mut self) {
        self.unlink_on_drop = false;
        self.forget_cleanup();
        self.flags_word()
            .fetch_or(header::FLAG_PERSISTENT, Ordering::Relaxed);
        self.layout.persistent = true;
    }

    fn forget_cleanup(&mut self) {
        if let Some(index) = self.cleanup_slot.take() {
            cleanup::unregister(index);
        }
    }

    /// Removes the segment's name now, if it still names this segment's
    /// object (see [`unlink_if`]). Mappings, this one included, stay
    /// valid; new attaches fail with [`Error::NotFound`].
    ///
    /// # Errors
    /// [`Error::NotFound`] if the name is already gone (or names another
    /// object now), [`Error::Io`] otherwise.
    pub fn unlink(&mut self) -> Result<()> {
        self.unlink_on_drop = false;
        let result = match place::unlink_if(&self.location, self.identity) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::NotFound { name: self.name() }),
            Err(e) => Err(e),
        };
        self.forget_cleanup();
        result
    }

    /// Base of the data: `layout().data_len` bytes at offset 0 of the
    /// mapping, page aligned.
    pub fn data_ptr(&self) -> *mut u8 {
        self.mapping.ptr()
    }

    /// Populates the page tables for the data, so the first pass over it
    /// does not pay a page fault per 4 KiB page (`MADV_POPULATE_READ`,
    /// which on shared memory maps the pages writable, many per fault).
    /// Best effort: on kernels without it (before 5.14) it returns the
    /// error and changes nothing.
    ///
    /// # Errors
    /// [`Error::Io`] when the kernel refuses.
    pub fn prefault(&self) -> Result<()> {
        self.prefault_range(0, self.layout.data_len)
    }

    /// Like [`prefault`](Self::prefault), for `len` bytes of the data from
    /// byte `offset` (clamped to the data).
    ///
    /// # Errors
    /// [`Error::Io`] when the kernel refuses.
    pub fn prefault_range(&self, offset: usize, len: usize) -> Result<()> {
        let offset = offset.min(self.layout.data_len);
        let len = len.min(self.layout.data_len - offset);
        self.mapping
            .populate(offset, len, false)
            .map_err(|source| Error::Io {
                op: "madvise(MADV_POPULATE_READ)",
                name: self.name(),
                source,
            })
    }

    /// The header page inside the mapping.
    fn header_page(&self) -> *mut u8 {
        debug_assert!(self.layout.header_offset + header::HEADER_PAGE_SIZE <= self.mapping.len());
        // The layout was validated against the mapping's size, so the
        // header page lies inside it; wrapping_add keeps this safe code.
        self.mapping.ptr().wrapping_add(self.layout.header_offset)
    }

    fn header_word(&self, offset: usize) -> &AtomicU32 {
        let word = self.header_page().wrapping_add(offset).cast::<u32>();
        // SAFETY:
        // - `word` is a 4-byte aligned word inside the header page (the
        //   page is page aligned; STATE_OFFSET and FLAGS_OFFSET are
        //   multiples of 4), inside the mapping, which lives as long as
        //   `self`;
        // - this word is only ever accessed atomically once the segment is
        //   published (the creator's plain write happens before its release
        //   store, in this same handle).
        unsafe { AtomicU32::from_ptr(word) }
    }

    fn state_word(&self) -> &AtomicU32 {
        self.header_word(STATE_OFFSET)
    }

    fn flags_word(&self) -> &AtomicU32 {
        self.header_word(FLAGS_OFFSET)
    }

    /// The barrier in this segment: a central counter up to four parties,
    /// a combining tree beyond (see `core/src/sync/README.md`). A worker
    /// that knows its rank passes it with [`Barrier::with_rank`].
    pub fn barrier(&self) -> Barrier<'_> {
        let state = self
            .header_page()
            .wrapping_add(BARRIER_OFFSET)
            .cast::<BarrierState>();
        let tree = self
            .header_page()
            .wrapping_add(BARRIER_TREE_OFFSET)
            .cast::<BarrierTree>();
        // SAFETY: the barrier's 64-byte aligned line and its tree's lines lie
        // inside the header page of the mapping, which lives as long as the
        // borrow of `self`; they are made only of atomics, zero-valid, and
        // never written non-atomically after creation.
        let (state, tree) = unsafe { (&*state, &*tree) };
        Barrier::new(state).with_tree(tree)
    }

    /// The process-shared lock in this segment.
    pub fn lock(&self) -> ShmLock<'_> {
        let state = self.header_page().wrapping_add(LOCK_OFFSET).cast::<LockState>();
        // SAFETY: as in `barrier`, for the lock's line.
        ShmLock::new(unsafe { &*state })
    }
}

/// Whether this process holds a checked handle of the object `identity`
/// (device, inode; see [`Segment::identity`]) now: one made by
/// [`Segment::create`] or a `Segment::open*` other than
/// [`Segment::open_unchecked`], not yet dropped. For the runtime's workers,
/// to tell which cached unchecked handles their process also holds.
pub fn is_open(identity: (u64, u64)) -> bool {
    registry::is_registered(identity)
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Remove the name only in the process that created it (a forked
        // child's copy of the handle must not), and only if it still names
        // the object we created: if ours was unlinked and someone created a
        // namesake, leave theirs be. Unlink before leaving the cleanup
        // registry, so a signal arriving in between still finds the name.
        if self.unlink_on_drop && self.owner_pid == os::getpid() {
            let _ = place::unlink_if(&self.location, self.identity);
        }
        self.forget_cleanup();
    }
}
