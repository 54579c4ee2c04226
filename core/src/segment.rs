//! Segments: a header, result slots and data in a named shared-memory
//! object or a memory-mapped file, with a lifecycle that cleans up after
//! itself.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cleanup;
use crate::element::DType;
use crate::error::{Error, Result};
use crate::header::{self, Header, Layout, SLOT_HEADER, STATE_READY};
use crate::liveness::ProcessId;
use crate::name;
use crate::sync::{Barrier, ShmLock};
use crate::sys::{self, Mapping};

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
            Location::Shm(_) => PathBuf::from("/dev/shm"),
            Location::File(path) => match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_name())
    }
}

/// How to create a segment: where, with how many result slots, and whether
/// it outlives its creator.
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    location: Option<Location>,
    name_error: Option<BadName>,
    slot_count: u32,
    slot_size: u32,
    persist: bool,
}

/// A deferred name error (the builder methods do not return `Result`).
#[derive(Clone, Debug)]
struct BadName {
    name: String,
    reason: &'static str,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            location: None,
            name_error: None,
            slot_count: header::DEFAULT_SLOT_COUNT,
            slot_size: header::DEFAULT_SLOT_SIZE,
            persist: false,
        }
    }
}

impl SegmentOptions {
    /// Defaults: an unguessable shared-memory name, 64 result slots of 256
    /// bytes, unlinked when the creating handle drops.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use this shared-memory name instead of a random one. An invalid name
    /// is reported by the create call.
    pub fn name(mut self, name: &str) -> Self {
        match name::validate(name) {
            Ok(bare) => {
                self.location = Some(Location::Shm(bare));
                self.name_error = None;
            }
            Err(Error::InvalidName { name, reason }) => self.name_error = Some(BadName { name, reason }),
            Err(_) => unreachable!("validate only returns InvalidName"),
        }
        self
    }

    /// Back the segment with a memory-mapped file at `path` (created; it must
    /// not exist) instead of shared memory.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.location = Some(Location::File(path.into()));
        self.name_error = None;
        self
    }

    /// Number of result slots and bytes per slot (a multiple of 64; each
    /// slot holds `size - 8` bytes of payload).
    pub fn slots(mut self, count: u32, size: u32) -> Self {
        self.slot_count = count;
        self.slot_size = size;
        self
    }

    /// Keep the segment when the creating handle drops (default: unlink it).
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }
}

/// A mapped segment: header, result slots and data.
///
/// The creating handle removes the segment's name when it drops, unless
/// told to [`persist`](SegmentOptions::persist); handles that attached only
/// unmap. The mapping stays valid in every process that has it until that
/// process drops its handle, even after the name is removed.
pub struct Segment {
    mapping: Mapping,
    location: Location,
    layout: Layout,
    /// (device, inode) of the object, so drop never removes a namesake
    /// created by someone else after ours was unlinked.
    identity: (u64, u64),
    unlink_on_drop: bool,
    /// Our slot in the signal-cleanup registry, while we own the name.
    registered: Option<usize>,
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

/// An open object, shm or file, as one descriptor type.
enum Handle {
    Shm(OwnedFd),
    File(std::fs::File),
}

impl std::os::fd::AsRawFd for Handle {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Handle::Shm(fd) => fd.as_raw_fd(),
            Handle::File(file) => file.as_raw_fd(),
        }
    }
}

/// Removes a half-created object's name unless disarmed: whatever fails
/// during creation leaves nothing behind.
struct CreationGuard<'a> {
    location: &'a Location,
    armed: bool,
}

impl Drop for CreationGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = remove_name(self.location);
        }
    }
}

fn remove_name(location: &Location) -> io::Result<()> {
    match location {
        Location::Shm(bare) => sys::shm_unlink(&name::to_c(bare)),
        Location::File(path) => std::fs::remove_file(path),
    }
}

fn open_error(location: &Location, op: &'static str, source: io::Error) -> Error {
    let name = location.display_name();
    match source.kind() {
        io::ErrorKind::NotFound => Error::NotFound { name },
        io::ErrorKind::AlreadyExists => Error::AlreadyExists { name },
        io::ErrorKind::PermissionDenied => Error::PermissionDenied { name, source },
        _ => Error::Io { op, name, source },
    }
}

impl Segment {
    /// Creates a segment for an array of `dtype` and `shape`, zero-filled,
    /// and marks it ready.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the name is taken, [`Error::InvalidName`],
    /// [`Error::InvalidShape`] or [`Error::InvalidOption`] for bad
    /// arguments, [`Error::NoSpace`] when the file system cannot hold it.
    /// Nothing is left behind on error.
    pub fn create(options: &SegmentOptions, dtype: DType, shape: &[usize]) -> Result<Segment> {
        Self::create_with(options, dtype, shape, |_| Ok(()))
    }

    /// Like [`create`](Self::create), but runs `fill` on the data bytes
    /// before the segment is marked ready, so no attacher sees them
    /// half-written.
    pub(crate) fn create_with(
        options: &SegmentOptions,
        dtype: DType,
        shape: &[usize],
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Segment> {
        if let Some(e) = &options.name_error {
            return Err(Error::InvalidName {
                name: e.name.clone(),
                reason: e.reason,
            });
        }
        let mut layout = Layout::plan(dtype, shape, options.slot_count, options.slot_size)?;
        layout.persistent = options.persist;
        let location = match &options.location {
            Some(location) => location.clone(),
            None => Location::Shm(name::random()?),
        };
        let handle = match &location {
            Location::Shm(bare) => sys::shm_create(&name::to_c(bare)).map(Handle::Shm),
            Location::File(path) => sys::file_create(path).map(Handle::File),
        }
        .map_err(|e| open_error(&location, "create", e))?;
        let mut guard = CreationGuard {
            location: &location,
            armed: true,
        };
        sys::reserve(&handle, layout.total_len as u64).map_err(|source| match source.raw_os_error() {
            Some(libc::ENOSPC | libc::ENOMEM | libc::EDQUOT | libc::EFBIG) => {
                let fs = location.filesystem();
                Error::NoSpace {
                    name: location.display_name(),
                    requested: layout.total_len as u64,
                    available: sys::free_bytes(&fs).unwrap_or(0),
                    where_: fs.display().to_string(),
                    source,
                }
            }
            _ => Error::Io {
                op: "reserve space",
                name: location.display_name(),
                source,
            },
        })?;
        let (_, identity) = sys::stat(&handle).map_err(|e| open_error(&location, "fstat", e))?;
        let mapping =
            Mapping::map(&handle, layout.total_len).map_err(|e| open_error(&location, "mmap", e))?;
        drop(handle);
        // SAFETY: the mapping is `total_len` bytes, page aligned, freshly
        // created and zero-filled; nobody else uses it while the state word
        // is still INITIALIZING (zero).
        unsafe { layout.write(mapping.ptr().cast::<Header>()) };
        {
            // SAFETY: the data range lies inside the mapping (planned by
            // `Layout::plan`), and no other reference to it exists yet.
            let data = unsafe {
                std::slice::from_raw_parts_mut(mapping.ptr().add(layout.data_offset), layout.data_len)
            };
            fill(data)?;
        }
        // SAFETY: the header is mapped and aligned. Release publishes every
        // write above to an attacher that loads the state with Acquire.
        unsafe {
            (*mapping.ptr().cast::<Header>())
                .state
                .store(STATE_READY, Ordering::Release)
        };
        guard.armed = false;
        drop(guard);
        let registered = match &location {
            Location::Shm(bare) if !options.persist => cleanup::register(bare),
            _ => None,
        };
        Ok(Segment {
            mapping,
            unlink_on_drop: !options.persist,
            registered,
            identity,
            location,
            layout,
        })
    }

    /// Attaches to the shared-memory segment `name` and validates its header.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::PermissionDenied`], [`Error::InvalidName`],
    /// and every header error of [`Layout`]: [`Error::NotShmpar`],
    /// [`Error::UnsupportedVersion`], [`Error::Initializing`],
    /// [`Error::Truncated`], [`Error::CorruptHeader`].
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
        let handle = match location {
            Location::Shm(bare) => {
                sys::shm_open_existing(&name::to_c(&name::validate(bare)?)).map(Handle::Shm)
            }
            Location::File(path) => sys::file_open(path).map(Handle::File),
        }
        .map_err(|e| open_error(location, "open", e))?;
        let (size, identity) = sys::stat(&handle).map_err(|e| open_error(location, "fstat", e))?;
        let size = usize::try_from(size).map_err(|_| Error::CorruptHeader {
            name: location.display_name(),
            reason: "the object is larger than the address space".into(),
        })?;
        let name = location.display_name();
        if size == 0 {
            return Err(Error::Initializing { name });
        }
        let mapping = Mapping::map(&handle, size).map_err(|e| open_error(location, "mmap", e))?;
        drop(handle);
        // SAFETY: the mapping covers `size` readable bytes and lives until
        // the end of this function at least.
        let layout = unsafe { Layout::read(mapping.ptr(), mapping.len(), mapping.len(), &name)? };
        Ok(Segment {
            mapping,
            location: location.clone(),
            layout,
            identity,
            unlink_on_drop: false,
            registered: None,
        })
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
        self.forget_registration();
        self.header()
            .flags
            .fetch_or(header::FLAG_PERSISTENT, Ordering::Relaxed);
        self.layout.persistent = true;
    }

    fn forget_registration(&mut self) {
        if let Some(index) = self.registered.take() {
            cleanup::unregister(index);
        }
    }

    /// Removes the segment's name now. Mappings, this one included, stay
    /// valid; new attaches fail with [`Error::NotFound`].
    ///
    /// # Errors
    /// [`Error::NotFound`] if the name is already gone, [`Error::Io`] otherwise.
    pub fn unlink(&mut self) -> Result<()> {
        self.unlink_on_drop = false;
        let result = remove_name(&self.location).map_err(|e| open_error(&self.location, "unlink", e));
        self.forget_registration();
        result
    }

    /// Base of the data: `layout().data_len` bytes, page aligned.
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: the layout was validated against the mapping's size, so
        // the offset lies inside it.
        unsafe { self.mapping.ptr().add(self.layout.data_offset) }
    }

    /// Populates the page tables for the data, so the first pass over it
    /// does not pay a page fault per 4 KiB page. Best effort: on kernels
    /// without `MADV_POPULATE_WRITE` it returns the error and changes nothing.
    ///
    /// # Errors
    /// [`Error::Io`] when the kernel refuses.
    pub fn prefault(&self) -> Result<()> {
        self.mapping
            .populate(self.layout.data_offset, self.layout.data_len)
            .map_err(|source| Error::Io {
                op: "madvise(MADV_POPULATE_WRITE)",
                name: self.name(),
                source,
            })
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
            .populate(self.layout.data_offset + offset, len)
            .map_err(|source| Error::Io {
                op: "madvise(MADV_POPULATE_WRITE)",
                name: self.name(),
                source,
            })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a validated, aligned header and
        // lives as long as `self`. Only its atomic words are ever written
        // after creation.
        unsafe { &*self.mapping.ptr().cast::<Header>() }
    }

    /// The barrier in this segment.
    pub fn barrier(&self) -> Barrier<'_> {
        Barrier::new(&self.header().barrier)
    }

    /// The process-shared lock in this segment.
    pub fn lock(&self) -> ShmLock<'_> {
        ShmLock::new(&self.header().lock)
    }

    /// Number of result slots.
    pub fn slot_count(&self) -> usize {
        self.layout.slot_count
    }

    /// Payload bytes one result slot holds.
    pub fn slot_capacity(&self) -> usize {
        self.layout.slot_size.saturating_sub(SLOT_HEADER)
    }

    fn slot_base(&self, index: usize) -> Result<*mut u8> {
        if index >= self.layout.slot_count {
            return Err(Error::Slot {
                reason: format!(
                    "slot {index} does not exist; the segment has {}",
                    self.layout.slot_count
                ),
            });
        }
        // SAFETY: validated layout: slot `index` lies inside the mapping.
        Ok(unsafe {
            self.mapping
                .ptr()
                .add(self.layout.slots_offset + index * self.layout.slot_size)
        })
    }

    fn slot_word(&self, base: *mut u8) -> &AtomicU32 {
        // SAFETY: `base` is a 64-byte aligned slot start inside the mapping,
        // which lives as long as `self`.
        unsafe { AtomicU32::from_ptr(base.cast::<u32>()) }
    }

    /// Publishes `payload` in result slot `index`.
    ///
    /// Each slot has one writer at a time by contract (worker `i` writes
    /// slot `i`); readers see either the previous payload or the new one in
    /// full: the length word is stored with release ordering after the bytes.
    ///
    /// # Errors
    /// [`Error::Slot`] if the slot does not exist or the payload is larger
    /// than [`slot_capacity`](Self::slot_capacity).
    pub fn write_slot(&self, index: usize, payload: &[u8]) -> Result<()> {
        let base = self.slot_base(index)?;
        if payload.len() > self.slot_capacity() {
            return Err(Error::Slot {
                reason: format!(
                    "a partial result of {} bytes does not fit in a slot of {} bytes (raise the slot size)",
                    payload.len(),
                    self.slot_capacity()
                ),
            });
        }
        let word = self.slot_word(base);
        word.store(0, Ordering::Relaxed);
        // SAFETY: the payload area `base + 8 .. base + 8 + capacity` lies
        // inside the mapping and, by the one-writer contract, nobody else
        // writes it now; readers only read it after acquiring a non-zero length.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(SLOT_HEADER), payload.len()) };
        word.store(payload.len() as u32 + 1, Ordering::Release);
        Ok(())
    }

    /// Reads result slot `index`: `None` if it is empty.
    ///
    /// # Errors
    /// [`Error::Slot`] if the slot does not exist or holds a length larger
    /// than a slot (a corrupt or hostile writer).
    pub fn read_slot(&self, index: usize) -> Result<Option<Vec<u8>>> {
        let base = self.slot_base(index)?;
        let len = match self.slot_word(base).load(Ordering::Acquire) {
            0 => return Ok(None),
            n => (n - 1) as usize,
        };
        if len > self.slot_capacity() {
            return Err(Error::Slot {
                reason: format!("slot {index} claims {len} bytes, more than its capacity"),
            });
        }
        let mut out = vec![0u8; len];
        // SAFETY: `len` is within the slot's payload area, inside the
        // mapping; acquire ordering above makes the writer's bytes visible.
        unsafe { std::ptr::copy_nonoverlapping(base.add(SLOT_HEADER), out.as_mut_ptr(), len) };
        Ok(Some(out))
    }

    /// Empties result slot `index`.
    ///
    /// # Errors
    /// [`Error::Slot`] if the slot does not exist.
    pub fn clear_slot(&self, index: usize) -> Result<()> {
        let base = self.slot_base(index)?;
        self.slot_word(base).store(0, Ordering::Release);
        Ok(())
    }
}

/// Reads and validates the header of the segment at `location` without
/// mapping it and without write access: what `shmpar ls` and `shmpar gc`
/// use to look at segments they do not own.
///
/// # Errors
/// As [`Segment::open`].
pub fn peek(location: &Location) -> Result<Layout> {
    let (bytes, size) = read_head(location)?;
    let size = usize::try_from(size).map_err(|_| Error::CorruptHeader {
        name: location.display_name(),
        reason: "the object is larger than the address space".into(),
    })?;
    // SAFETY: `bytes` is `HEADER_SIZE` readable bytes aligned as a `Header`
    // (zero past the object's end), which covers `min(size, HEADER_SIZE)`.
    unsafe {
        Layout::read(
            bytes.0.as_ptr(),
            header::HEADER_SIZE,
            size,
            &location.display_name(),
        )
    }
}

/// The creator recorded in a segment's header, if the segment starts with
/// the shmpar magic, whatever state it is in: for finding the orphans of
/// creators that died while initializing.
pub fn peek_creator(location: &Location) -> Option<ProcessId> {
    let (bytes, size) = read_head(location).ok()?;
    if size < header::HEADER_SIZE as u64 {
        return None;
    }
    let header = bytes.header();
    (header.magic == header::MAGIC).then_some(ProcessId {
        pid: header.creator_pid,
        start_time: header.creator_start_time,
    })
}

/// A header's bytes, aligned as a [`Header`].
#[repr(C, align(64))]
pub(crate) struct HeadBuf([u8; header::HEADER_SIZE]);

impl HeadBuf {
    fn header(&self) -> &Header {
        // SAFETY: `HeadBuf` has the size and alignment of `Header`, and
        // every byte pattern is valid for `Header`'s integer, atomic and
        // array fields.
        unsafe { &*(self as *const HeadBuf).cast::<Header>() }
    }
}

/// The first `HEADER_SIZE` bytes of the object (zero-padded) and its size.
fn read_head(location: &Location) -> Result<(Box<HeadBuf>, u64)> {
    use std::os::unix::fs::FileExt;
    let path = match location {
        Location::Shm(bare) => PathBuf::from("/dev/shm").join(name::validate(bare)?),
        Location::File(path) => path.clone(),
    };
    let file = std::fs::File::open(&path).map_err(|e| open_error(location, "open", e))?;
    let size = file
        .metadata()
        .map_err(|e| open_error(location, "fstat", e))?
        .len();
    let mut head = Box::new(HeadBuf([0; header::HEADER_SIZE]));
    let mut filled = 0;
    while filled < header::HEADER_SIZE {
        match file.read_at(&mut head.0[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_error(location, "read", e)),
        }
    }
    Ok((head, size))
}

/// Removes the name at `location` if it still names the object with
/// `identity` (from [`Segment::identity`]); returns whether it did.
/// A namesake created after the original was removed is left alone.
///
/// # Errors
/// [`Error::Io`] if the removal itself fails.
pub fn unlink_if(location: &Location, identity: (u64, u64)) -> Result<bool> {
    let current = match location {
        Location::Shm(bare) => {
            sys::shm_open_existing(&name::to_c(&name::validate(bare)?)).and_then(|fd| sys::stat(&fd))
        }
        Location::File(path) => sys::file_open(path).and_then(|f| sys::stat(&f)),
    };
    match current {
        Ok((_, id)) if id == identity => match remove_name(location) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(open_error(location, "unlink", e)),
        },
        _ => Ok(false),
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Remove the name only if it still names the object we created: if
        // ours was unlinked and someone created a namesake, leave theirs be.
        // Unlink before leaving the registry, so a signal arriving in
        // between still finds the name.
        if self.unlink_on_drop {
            let _ = unlink_if(&self.location, self.identity);
        }
        self.forget_registration();
    }
}
