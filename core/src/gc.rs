//! Finding shmpar segments in `/dev/shm`, and removing those nobody holds:
//! what `shmpar ls` and `shmpar gc` do, and what each pool does at start.
//!
//! # Liveness
//! A segment is in use while a process holds its liveness lock (see
//! [`crate::liveness`]): every handle does, the creator's from before the
//! segment has any size. `gc` asks the kernel (`F_OFD_GETLK`), never
//! `/proc`, so a creator in another PID or time namespace, or a collector
//! without `/proc`, cannot make a live segment look dead. A probe that
//! fails counts as "in use". Segments of an older shmpar, which took no
//! lock (no [`FLAG_LIVENESS_LOCK`](crate::header::FLAG_LIVENESS_LOCK)),
//! also count as in use while their creator's pid and start time match a
//! running process.
//!
//! # Removal
//! To remove an orphan, `gc` opens it read-write and takes an exclusive
//! lock on the whole object (`F_OFD_SETLK`, `F_WRLCK`), which fails while
//! any handle holds its shared lock; while gc holds it, no new handle can
//! take one (creators and attachers wait, then find the name gone and start
//! over or report [`NotFound`](crate::Error::NotFound)). Holding it, gc
//! reads the header again, checks that the name still is that object
//! (`fstatat` relative to a descriptor of `/dev/shm`) and `unlinkat`s it.
//!
//! # Hostile entries
//! Anyone may put a FIFO, a symbolic link, a socket or a directory named
//! `shmpar_*` in `/dev/shm`. Every candidate is opened with `O_NOFOLLOW |
//! O_NONBLOCK | O_CLOEXEC` and `fstat`ed on the descriptor; anything but a
//! regular file is skipped: never listed, never waited on, never removed.

use std::fs::File;

use crate::header::{self, Record};
use crate::liveness::Liveness;
use crate::os::{self, ObjectStat};
use crate::segment::{self, Location, SHM_DIR};
use crate::{DEFAULT_PREFIX, Error as CoreError};
use serde::Serialize;

/// A segment in `/dev/shm` that carries the shmpar header.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: String,
    /// Element type (`None` while initializing or when the header is corrupt).
    pub dtype: Option<String>,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// The segment's size in bytes.
    pub bytes: u64,
    /// The creator's pid as its own PID namespace numbers it (0 when
    /// unknown): for display only.
    pub creator_pid: i32,
    /// Whether the segment is in use: a process holds a handle of it (its
    /// liveness lock is held), or that cannot be told (fail closed), or,
    /// for a segment of an older shmpar that took no lock, a process with
    /// its creator's pid and start time runs. `gc` removes only segments
    /// for which this is `false`.
    pub alive: bool,
    /// `ready`, `initializing`, `corrupt: REASON`, or `unsupported: layout
    /// version N` (left by a shmpar that wrote another layout).
    pub state: String,
    /// Whether its creator chose to keep it after exiting
    /// (`SegmentOptions::persist`): gc leaves such segments alone unless
    /// asked to include them.
    pub persistent: bool,
    /// The page size its header records: 4096, or a huge page size
    /// (`SegmentOptions::huge_pages`). `None` unless the header is ready
    /// and valid.
    pub page_size: Option<usize>,
}

/// Lists every shmpar segment in `/dev/shm`, sorted by name. Entries that
/// are not regular files (FIFOs, symbolic links, ...) are skipped.
pub fn list() -> Vec<SegmentInfo> {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<SegmentInfo> = dir
        .filter_map(|entry| entry.ok())
        // The entry's own type (not followed): a cheap first filter. The
        // `fstat` after opening decides, since the entry may change.
        .filter(|entry| entry.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| info(&name))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What `/dev/shm/NAME` is, if it is a shmpar segment: `None` for a name
/// that does not exist, is not a regular file, cannot be read, or holds no
/// shmpar header. Opening it never blocks and never follows a link.
pub fn info(name: &str) -> Option<SegmentInfo> {
    let location = Location::shm(name).ok()?;
    let (file, stat) = segment::open_for_reading(&location).ok()?;
    describe(name, &file, stat, Liveness::of(&file))
}

/// The [`SegmentInfo`] of the open object `file`, with its liveness as
/// probed by the caller; everything read from this one descriptor.
fn describe(name: &str, file: &File, stat: ObjectStat, liveness: Liveness) -> Option<SegmentInfo> {
    let record = header::find_record(file, stat.size, name);
    let mut info = SegmentInfo {
        name: name.to_owned(),
        dtype: None,
        shape: Vec::new(),
        bytes: stat.size,
        creator_pid: record.map_or(0, |r| r.creator.pid),
        alive: in_use(liveness, record),
        state: String::new(),
        persistent: false,
        page_size: None,
    };
    match header::read_layout(file, stat.size, name) {
        Ok(layout) => {
            info.dtype = Some(layout.dtype.name().to_owned());
            info.shape = layout.shape;
            info.persistent = layout.persistent;
            info.page_size = Some(layout.page_size);
            info.state = "ready".into();
        }
        Err(CoreError::Initializing { .. }) if record.is_some() || name.starts_with(DEFAULT_PREFIX) => {
            info.state = "initializing".into();
        }
        Err(CoreError::UnsupportedVersion { found, .. }) if record.is_some() => {
            info.state = format!("unsupported: layout version {found}");
        }
        Err(CoreError::NotShmpar { .. } | CoreError::Initializing { .. } | CoreError::NotFound { .. }) => {
            return None;
        }
        Err(e) if record.is_some() => info.state = format!("corrupt: {e}"),
        Err(_) => return None,
    }
    Some(info)
}

/// In use: the lock says so or cannot tell; or, for a segment that follows
/// no lock protocol (an older shmpar's), its creator may still run.
fn in_use(liveness: Liveness, record: Option<Record>) -> bool {
    liveness.in_use() || record.is_some_and(|r| !r.locks && r.creator.is_alive())
}

/// Whether `info` is an orphan: nobody holds it, and it is not a segment
/// its creator persisted (unless those are included). That covers ready
/// segments, corrupt ones, other layout versions, and objects whose creator
/// died before writing a header (an empty or all-zero object): a creator
/// holds the lock from before it reserves any space.
fn is_orphan(info: &SegmentInfo, include_persistent: bool) -> bool {
    !info.alive && (include_persistent || !info.persistent)
}

/// Removes every orphaned shmpar segment (or, with `dry_run`, only lists
/// them). Never removes a segment that a process holds (its creator or an
/// attacher, in any namespace), nor one its creator persisted, nor
/// anything that is not a regular file; each removal happens under an
/// exclusive lock that no holder can have, and a segment another `gc`
/// removed first is simply skipped.
pub fn collect(dry_run: bool) -> Vec<SegmentInfo> {
    collect_with(dry_run, false)
}

/// Like [`collect`]; with `include_persistent`, persisted segments that
/// nobody holds are removed too.
pub fn collect_with(dry_run: bool, include_persistent: bool) -> Vec<SegmentInfo> {
    let orphans = list()
        .into_iter()
        .filter(|info| is_orphan(info, include_persistent));
    if dry_run {
        return orphans.collect();
    }
    let Ok(dir) = os::open_dir(std::path::Path::new(SHM_DIR), false) else {
        return Vec::new();
    };
    orphans
        .filter_map(|info| take(&dir, &info.name, include_persistent))
        .collect()
}

/// Removes the orphan `name` if it still is one, under an exclusive lock;
/// returns what it removed.
fn take(dir: &std::os::fd::OwnedFd, name: &str, include_persistent: bool) -> Option<SegmentInfo> {
    let file = os::open_at(dir, name.as_ref(), true).ok()?;
    let stat = os::stat(&file).ok().filter(|stat| stat.regular)?;
    // Fails while any handle holds its shared lock; while we hold it, no
    // new handle can take one. Released when `file` drops.
    if !os::try_lock_exclusive(&file).ok()? {
        return None;
    }
    let fresh = describe(name, &file, stat, Liveness::Unused)?;
    if !is_orphan(&fresh, include_persistent) {
        return None;
    }
    match segment::remove_at(dir, name.as_ref(), stat.identity) {
        Ok(true) => Some(fresh),
        _ => None,
    }
}
