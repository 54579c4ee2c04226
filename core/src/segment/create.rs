//! Creating a segment: a fresh object, locked, named, its space reserved
//! (with huge pages where asked for), its header written and published.
//! The order, and the races it closes, are in `README.md` beside this file.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::cleanup;
use crate::element::DType;
use crate::error::{Error, Result};
use crate::header::{self, Header, Layout};
use crate::name;
use crate::os::{self, Mapping};
use crate::signals;

use super::huge::{self, Placement};
use super::place::{self, Place, SHM_DIR};
use super::registry::Registration;
use super::{
    HugePages, Location, Segment, SegmentOptions, lock_offset, open_error, register, take_liveness_lock,
};

/// A new object with its space reserved and mapped, its name owned by the
/// guard: a segment but for its header and data.
struct Reserved {
    mapping: Mapping,
    guard: CreationGuard,
    layout: Layout,
    registration: Registration,
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

/// How often creation starts over after a collector took the new object
/// between its creation and the lock (each time needs a collector that saw
/// a random name within microseconds of its creation).
const CREATE_ATTEMPTS: usize = 8;

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
            mapping.populate(0, layout.total_len, true).map_err(|source| {
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
        // A relative path is made absolute now: the handle, its drop and
        // the signal handler must find this file after a `chdir`.
        let absolute;
        let location = match location {
            Location::File(path) if path.is_relative() => {
                let cwd = std::env::current_dir()
                    .map_err(|e| open_error(location, "find the working directory for", e))?;
                absolute = Location::File(cwd.join(path));
                &absolute
            }
            other => other,
        };
        let place = Place::of(location)?;
        let (file, cleanup_slot, identity) = {
            // A signal between the creation and the registration would
            // find the file unregistered: defer the cleanup signals.
            let _deferred = signals::defer();
            let dir = place.open_dir().map_err(|e| open_error(location, "create", e))?;
            let file = os::create_at(&dir, place.name()).map_err(|e| open_error(location, "create", e))?;
            let identity = match os::stat(&file) {
                Ok(stat) => stat.identity,
                Err(e) => {
                    let _ = os::unlink_at(&dir, place.name());
                    return Err(open_error(location, "fstat", e));
                }
            };
            drop(dir);
            let slot = match location {
                Location::File(path) => path
                    .parent()
                    .and_then(|parent| cleanup::register_file(parent, place.name(), identity)),
                Location::Shm(_) => None,
            };
            (file, slot, identity)
        };
        let guard = CreationGuard {
            location: location.clone(),
            identity,
            cleanup_slot,
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
}
