//! Segments: an array's data from byte 0 and a header page at the end, in
//! a named shared-memory object or a memory-mapped file, with a lifecycle
//! that cleans up after itself. The byte layout is in [`crate::header`].
//!
//! Every handle holds the segment's liveness lock (see [`crate::liveness`])
//! for as long as it lives, through its mapping; the creator takes it
//! right after `shm_open(O_CREAT | O_EXCL)`, before reserving any space, so
//! `gc` never mistakes a segment under construction for an orphan.

mod huge;
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
    self, BARRIER_OFFSET, BARRIER_TREE_OFFSET, FLAGS_OFFSET, Header, LIVENESS_LOCK_OFFSET, LOCK_OFFSET,
    Layout, STATE_OFFSET,
};
use crate::liveness::ProcessId;
use crate::name;
use crate::os::{self, Mapping};
use crate::signals;
use crate::sync::{Barrier, BarrierState, BarrierTree, LockState, ShmLock};
use huge::Placement;
pub use huge::{HugePageSupport, HugePages, probe as probe_huge_pages};
pub(crate) use peek::open_for_reading;
pub use peek::{Peek, liveness, peek, peek_creator, peek_data};
use place::Place;
pub use place::unlink_if;
pub(crate) use place::{SHM_DIR, remove_at};
use registry::Registration;

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

/// How to create a segment: where, whether it outlives its creator, and
/// whether it is made of huge pages.
#[derive(Clone, Debug, Default)]
pub struct SegmentOptions {
    location: Option<Location>,
    name_error: Option<BadName>,
    persist: bool,
    huge_pages: HugePages,
    huge_dir: Option<PathBuf>,
}

/// A deferred name error (the builder methods do not return `Result`).
#[derive(Clone, Debug)]
struct BadName {
    name: String,
    reason: &'static str,
}

impl SegmentOptions {
    /// Defaults: an unguessable shared-memory name, unlinked when the
    /// creating handle drops.
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

    /// Keep the segment when the creating handle drops (default: unlink it).
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    /// Make the segment of huge pages ([`HugePages::Try`] or
    /// [`HugePages::On`]; default [`HugePages::Off`]), so that each process
    /// that maps it fills its page tables with one entry per huge page
    /// instead of one per 4 KiB, and the TLB covers 512 times more of it.
    ///
    /// The segment is then rounded up to a whole number of huge pages (the
    /// header stays in its last 4096 bytes, so every reader works as
    /// before), and its header records the page size
    /// ([`Layout::page_size`](crate::header::Layout::page_size)). Huge
    /// pages are looked for, in this order:
    ///
    /// 1. with [`file`](Self::file), in the file's directory only;
    /// 2. in the [`huge_dir`](Self::huge_dir), if one is set;
    /// 3. in `/dev/shm`, if it is a tmpfs mounted `huge=always`,
    ///    `huge=within_size` or `huge=advise` (then the segment is advised
    ///    `MADV_HUGEPAGE` and populated instead of reserved), or a hugetlbfs;
    /// 4. for a segment without a [`name`](Self::name), in a hugetlbfs
    ///    mount (such as `/dev/hugepages`) whose pool has enough free
    ///    pages; the segment is then the file `MOUNT/shmpar_...`.
    ///
    /// A segment placed in a directory (2 and 4) is file-backed: its
    /// [`location`](Segment::location) is [`Location::File`], other
    /// processes attach by that path ([`Segment::open_file`],
    /// [`Segment::open_location`]; a pool passes locations to its workers
    /// itself), and `shmpar ls`/`gc`, which look only in `/dev/shm`, do not
    /// see it. Its creating handle removes it when it drops, as any
    /// segment's; a process killed before that leaves the file behind.
    ///
    /// With [`HugePages::Try`], a segment that gets no huge pages (none
    /// offered, or the huge-page place is full) is created with 4 KiB
    /// pages where it would have been without this option. With
    /// [`HugePages::On`] it is [`Error::HugePagesUnavailable`] instead,
    /// which says what was found and what to configure. Space is reserved
    /// up front in every case, so a later page fault never fails (no
    /// SIGBUS). `docs/huge-pages.md` says how to enable huge pages and what
    /// they buy.
    ///
    /// ```
    /// # fn main() -> Result<(), shmpar_core::Error> {
    /// use shmpar_core::{DType, HugePages, Segment, SegmentOptions};
    /// let options = SegmentOptions::new().huge_pages(HugePages::Try);
    /// let segment = Segment::create(&options, DType::F64, &[1000])?;
    /// // 4096 without huge pages here, 2 MiB (on x86-64) with them.
    /// let page = segment.page_size();
    /// assert!(page.is_power_of_two() && segment.layout().total_len % page == 0);
    /// # Ok(()) }
    /// ```
    pub fn huge_pages(mut self, mode: HugePages) -> Self {
        self.huge_pages = mode;
        self
    }

    /// Look for huge pages in `dir` before `/dev/shm` (see
    /// [`huge_pages`](Self::huge_pages); without [`HugePages::Try`] or
    /// [`HugePages::On`] this changes nothing): a hugetlbfs mount, or a
    /// tmpfs mounted `huge=within_size`, when `/dev/shm` cannot be
    /// remounted. A segment placed there is the file `dir/NAME`, NAME
    /// being its [`name`](Self::name) or a random `shmpar_...` one, and is
    /// attached by that path, not by name.
    pub fn huge_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.huge_dir = Some(dir.into());
        self
    }
}

/// A new object with its space reserved and mapped, its name owned by the
/// guard: a segment but for its header and data.
struct Reserved {
    mapping: Mapping,
    guard: CreationGuard,
    layout: Layout,
    registration: Registration,
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

/// Removes a half-created object's name unless disarmed (only if the name
/// still is that object), and frees its cleanup slot: whatever fails during
/// creation leaves nothing behind.
struct CreationGuard {
    location: Location,
    identity: (u64, u64),
    cleanup_slot: Option<usize>,
    armed: bool,
}

impl CreationGuard {
    /// Hands the cleanup slot over to the finished segment.
    fn disarm(mut self) -> Option<usize> {
        self.armed = false;
        self.cleanup_slot.take()
    }
}

impl Drop for CreationGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = place::unlink_if(&self.location, self.identity);
        }
        // After the unlink: a signal arriving in between still finds the name.
        if let Some(index) = self.cleanup_slot.take() {
            cleanup::unregister(index);
        }
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

/// How often creation starts over after a collector took the new object
/// between its creation and the lock (each time needs a collector that saw
/// a random name within microseconds of its creation).
const CREATE_ATTEMPTS: usize = 8;

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
    /// Creates a segment for an array of `dtype` and `shape`, zero-filled,
    /// and marks it ready.
    ///
    /// The first creation in a process installs the signal cleanup handler
    /// ([`signals::install`]) for SIGINT, SIGTERM
    /// and SIGHUP where their disposition is still the default, so a plain
    /// program (no pool) interrupted at any moment, this creation included,
    /// leaves no shared-memory segment behind. The segment's liveness lock
    /// is taken before any space is reserved (see [`crate::liveness`]).
    /// The design note `core/src/segment/README.md` explains the order.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the name is taken, [`Error::InvalidName`]
    /// or [`Error::InvalidShape`] for bad arguments, [`Error::NoSpace`] when
    /// the file system cannot hold it, [`Error::Io`] when the liveness lock
    /// cannot be taken (a kernel without open-file-description locks, or a
    /// process that holds a write lock on the new object for seconds) or a
    /// file-backed segment's directory is a symbolic link;
    /// [`Error::HugePagesUnavailable`] when [`HugePages::On`] finds no huge
    /// pages (see [`SegmentOptions::huge_pages`]). Nothing is left behind on
    /// error.
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
        // Checks the shape before anything is created.
        let plain = Layout::plan(dtype, shape)?;
        // So a signal during this creation (or any later) removes the name.
        signals::install();
        let Reserved {
            mapping,
            guard,
            layout,
            registration,
        } = match options.huge_pages {
            HugePages::Off => {
                Self::reserve(options, &Placement::plain(options.location.clone()), dtype, shape)?
            }
            mode => Self::reserve_huge(options, mode, dtype, shape, plain.total_len)?,
        };
        let location = guard.location.clone();
        let identity = guard.identity;
        let header = mapping.ptr().wrapping_add(layout.header_offset);
        // SAFETY:
        // - the header page lies inside the mapping (`header_offset +
        //   HEADER_PAGE_SIZE == total_len`, the mapping's length) and is page
        //   aligned, so aligned for `Header`;
        // - nobody else uses the object yet: its state word stays
        //   INITIALIZING (a new object reads as zeros, however its space
        //   was reserved) until the release store below.
        unsafe { header.cast::<Header>().write(layout.header()) };
        {
            // SAFETY: the data range `0..data_len` lies inside the mapping
            // (planned by `Layout::plan_paged`, before the header page), and no
            // other reference to it exists yet.
            let data = unsafe { std::slice::from_raw_parts_mut(mapping.ptr(), layout.data_len) };
            fill(data)?;
        }
        let mut segment = Segment {
            mapping,
            unlink_on_drop: false,
            owner_pid: os::getpid(),
            cleanup_slot: None,
            identity,
            location,
            layout,
            _registration: Some(registration),
        };
        // Release publishes every write above to an attacher that loads the
        // state with acquire ordering.
        segment.state_word().store(header::STATE_READY, Ordering::Release);
        segment.unlink_on_drop = !options.persist;
        segment.cleanup_slot = guard.disarm();
        if options.persist {
            // Ready and meant to outlive us: no signal may remove it now.
            segment.forget_cleanup();
        }
        Ok(segment)
    }

    /// Places a segment that wants huge pages (see
    /// [`SegmentOptions::huge_pages`]) and reserves it; with
    /// [`HugePages::Try`], falls back to 4 KiB pages where it would have
    /// been without them when no place offers huge pages or the one that
    /// does cannot hold it. `bytes` is its size with 4 KiB pages.
    fn reserve_huge(
        options: &SegmentOptions,
        mode: HugePages,
        dtype: DType,
        shape: &[usize],
        bytes: usize,
    ) -> Result<Reserved> {
        let wanted_name = || {
            options
                .location
                .as_ref()
                .map_or_else(|| "a new segment".to_owned(), Location::display_name)
        };
        let attempt = match huge::place(options.location.as_ref(), options.huge_dir.as_deref(), bytes)? {
            Ok(placement) => Self::reserve(options, &placement, dtype, shape),
            Err(unavailable) => Err(unavailable.into_error(wanted_name())),
        };
        match attempt {
            // A name that is taken or invalid is taken or invalid anywhere.
            Err(e)
                if mode == HugePages::Try
                    && !matches!(e, Error::AlreadyExists { .. } | Error::InvalidName { .. }) =>
            {
                Self::reserve(options, &Placement::plain(options.location.clone()), dtype, shape)
            }
            other => other,
        }
    }

    /// Creates the object `placement` says, locks it, reserves its space
    /// and maps it.
    ///
    /// Space is reserved with `posix_fallocate`, except on a `huge=advise`
    /// tmpfs, where that would allocate 4 KiB pages for good: there the
    /// object is sized with `ftruncate`, mapped, advised `MADV_HUGEPAGE`
    /// and populated (`MADV_POPULATE_WRITE`), which allocates every page
    /// now, huge, or fails (`EFAULT` on a full tmpfs). Either way no later
    /// fault can fail for lack of space.
    fn reserve(
        options: &SegmentOptions,
        placement: &Placement,
        dtype: DType,
        shape: &[usize],
    ) -> Result<Reserved> {
        let mut layout = Layout::plan_paged(dtype, shape, placement.page_size)?;
        layout.persistent = options.persist;
        let (file, guard) = Self::create_object(placement.location.as_ref(), lock_offset(&layout))?;
        let location = guard.location.clone();
        let total = layout.total_len as u64;
        let no_space = |source: io::Error| {
            let fs = location.filesystem();
            Error::NoSpace {
                name: location.display_name(),
                requested: total,
                available: os::free_bytes(&fs).unwrap_or(0),
                where_: fs.display().to_string(),
                source,
            }
        };
        let mapping = if placement.populate {
            os::truncate(&file, total).map_err(|source| Error::Io {
                op: "set the size (ftruncate)",
                name: location.display_name(),
                source,
            })?;
            let mapping =
                Mapping::map(&file, layout.total_len).map_err(|e| open_error(&location, "mmap", e))?;
            mapping.advise_huge().map_err(|source| Error::Io {
                op: "madvise(MADV_HUGEPAGE)",
                name: location.display_name(),
                source,
            })?;
            mapping.populate(0, layout.total_len).map_err(|source| {
                // A full tmpfs fails the populate with EFAULT.
                if matches!(source.raw_os_error(), Some(libc::EFAULT)) || os::is_out_of_space(&source) {
                    no_space(source)
                } else {
                    Error::Io {
                        op: "allocate huge pages (madvise MADV_POPULATE_WRITE)",
                        name: location.display_name(),
                        source,
                    }
                }
            })?;
            mapping
        } else {
            os::reserve(&file, total).map_err(|source| match &placement.hugetlbfs {
                Some(dir) if os::is_out_of_space(&source) => huge::pool_short(
                    location.display_name(),
                    dir,
                    layout.page_size,
                    layout.total_len,
                    source,
                ),
                _ if os::is_out_of_space(&source) => no_space(source),
                _ => Error::Io {
                    op: "reserve space",
                    name: location.display_name(),
                    source,
                },
            })?;
            Mapping::map(&file, layout.total_len).map_err(|e| open_error(&location, "mmap", e))?
        };
        // A fresh object cannot have another handle here; this records ours.
        let registration = register(guard.identity, &location)?;
        // The mapping keeps the open file description, and with it the
        // liveness lock, for the handle's life: no descriptor is kept.
        drop(file);
        Ok(Reserved {
            mapping,
            guard,
            layout,
            registration,
        })
    }

    /// Creates the object at `location` (it must not exist; `None`: a
    /// shared-memory object with a random name), registers its name for
    /// signal cleanup, and takes its liveness lock; returns it with the
    /// guard that removes it again on failure.
    ///
    /// A shared-memory object is made under a fresh random name (one
    /// `shm_open(O_CREAT | O_EXCL)`, with the cleanup signals deferred
    /// until that name is in the registry), locked, and only then renamed
    /// to the name asked for, if any (`renameat2(RENAME_NOREPLACE)`, so an
    /// existing name is [`Error::AlreadyExists`] and is never touched).
    /// So a segment's name never names an unlocked object under
    /// construction: a collector that finds the fresh object before it is
    /// locked can only take the random name, which nobody else knows; the
    /// lock then waits for the collector and finds the name gone, and
    /// creation starts over with another random name.
    ///
    /// A file-backed segment is created directly (relative to a descriptor
    /// of its directory, which must not be a symbolic link); `gc` never
    /// looks at files.
    fn create_object(location: Option<&Location>, lock_offset: u64) -> Result<(File, CreationGuard)> {
        let wanted = match location {
            None => None,
            Some(Location::Shm(wanted)) => Some(name::validate(wanted)?),
            Some(location @ Location::File(_)) => return Self::create_file(location, lock_offset),
        };
        for _ in 0..CREATE_ATTEMPTS {
            let fresh = name::random()?;
            let temporary = Location::Shm(fresh.clone());
            let (file, cleanup_slot) = {
                let _deferred = signals::defer();
                let file = match os::shm_create(&name::to_c(&fresh)) {
                    Ok(file) => file,
                    // 100 random bits met another name: draw again.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(open_error(location.unwrap_or(&temporary), "create", e)),
                };
                (file, cleanup::register(&fresh))
            };
            let identity = match os::stat(&file) {
                Ok(stat) => stat.identity,
                Err(e) => {
                    // Without an identity the name cannot be removed
                    // safely; the signal slot still names it until here.
                    if let Some(index) = cleanup_slot {
                        cleanup::unregister(index);
                    }
                    return Err(open_error(&temporary, "fstat", e));
                }
            };
            let mut guard = CreationGuard {
                location: temporary.clone(),
                identity,
                cleanup_slot,
                armed: true,
            };
            take_liveness_lock(&file, lock_offset, location.unwrap_or(&temporary))?;
            // A collector may have taken the unlocked object before the lock.
            if Place::of(&temporary)?.names(identity) == Some(false) {
                continue;
            }
            if let Some(wanted) = &wanted {
                Self::rename_into_place(&fresh, wanted, &mut guard)?;
            }
            return Ok((file, guard));
        }
        Err(Error::Io {
            op: "create (collectors took the new object before it was locked, again and again)",
            name: location.map_or_else(|| "a new segment".into(), Location::display_name),
            source: io::Error::from_raw_os_error(libc::EAGAIN),
        })
    }

    /// [`create_object`](Self::create_object) for a file-backed segment.
    fn create_file(location: &Location, lock_offset: u64) -> Result<(File, CreationGuard)> {
        let place = Place::of(location)?;
        let file = place
            .open_dir()
            .and_then(|dir| os::create_at(&dir, place.name()))
            .map_err(|e| open_error(location, "create", e))?;
        let identity = os::stat(&file)
            .map_err(|e| open_error(location, "fstat", e))?
            .identity;
        let guard = CreationGuard {
            location: location.clone(),
            identity,
            cleanup_slot: None,
            armed: true,
        };
        take_liveness_lock(&file, lock_offset, location)?;
        Ok((file, guard))
    }

    /// Renames the locked object from its temporary name to `wanted`,
    /// unless `wanted` exists, and moves the guard and the signal-cleanup
    /// registration to the new name. The cleanup signals are deferred
    /// meanwhile, so in this thread no signal falls between the rename and
    /// the new registration; a signal handled by another thread right then
    /// leaves the segment without a holder once the process is gone, and
    /// `gc` takes it at once.
    fn rename_into_place(temporary: &str, wanted: &str, guard: &mut CreationGuard) -> Result<()> {
        let from = PathBuf::from(SHM_DIR).join(temporary);
        let to = PathBuf::from(SHM_DIR).join(wanted);
        let _deferred = signals::defer();
        os::rename_noreplace(&from, &to)
            .map_err(|e| open_error(&Location::Shm(wanted.to_owned()), "create", e))?;
        guard.location = Location::Shm(wanted.to_owned());
        if let Some(index) = guard.cleanup_slot.take() {
            cleanup::unregister(index);
        }
        guard.cleanup_slot = cleanup::register(wanted);
        Ok(())
    }

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
    /// does not pay a page fault per 4 KiB page. Best effort: on kernels
    /// without `MADV_POPULATE_WRITE` it returns the error and changes nothing.
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
        self.mapping.populate(offset, len).map_err(|source| Error::Io {
            op: "madvise(MADV_POPULATE_WRITE)",
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
