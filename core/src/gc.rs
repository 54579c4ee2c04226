//! Finding shmpar segments in `/dev/shm`, and removing those whose creator
//! died: what `shmpar ls` and `shmpar gc` do, and what each pool does at
//! start.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::segment::{self, Location};
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
    /// The creator's pid (0 when unknown).
    pub creator_pid: i32,
    /// Whether the creator runs (pid *and* start time match).
    pub alive: bool,
    /// `ready`, `initializing`, `corrupt: REASON`, or `unsupported: layout
    /// version N` (left by a shmpar that wrote another layout).
    pub state: String,
    /// Whether its creator chose to keep it after exiting
    /// (`SegmentOptions::persist`): gc leaves such segments alone unless
    /// asked to include them.
    pub persistent: bool,
}

/// Segments younger than this are never taken for orphans while their
/// header is incomplete: their creator may still be writing it.
const INIT_GRACE: Duration = Duration::from_secs(60);

/// Lists every shmpar segment in `/dev/shm`, sorted by name.
pub fn list() -> Vec<SegmentInfo> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut out: Vec<SegmentInfo> = dir
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| info(&name))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What `/dev/shm/NAME` is, if it is a shmpar segment.
pub fn info(name: &str) -> Option<SegmentInfo> {
    let location = Location::Shm(name.to_owned());
    let bytes = std::fs::metadata(Path::new("/dev/shm").join(name)).ok()?.len();
    let creator = segment::peek_creator(&location);
    let mut info = SegmentInfo {
        name: name.to_owned(),
        dtype: None,
        shape: Vec::new(),
        bytes,
        creator_pid: creator.map_or(0, |c| c.pid),
        alive: creator.is_some_and(|c| c.is_alive()),
        state: String::new(),
        persistent: false,
    };
    match segment::peek(&location) {
        Ok(layout) => {
            info.dtype = Some(layout.dtype.name().to_owned());
            info.shape = layout.shape;
            info.persistent = layout.persistent;
            info.state = "ready".into();
        }
        Err(CoreError::Initializing { .. }) if creator.is_some() || name.starts_with(DEFAULT_PREFIX) => {
            info.state = "initializing".into();
        }
        Err(CoreError::UnsupportedVersion { found, .. }) if creator.is_some() => {
            info.state = format!("unsupported: layout version {found}");
        }
        Err(CoreError::NotShmpar { .. } | CoreError::Initializing { .. } | CoreError::NotFound { .. }) => {
            return None;
        }
        Err(e) if creator.is_some() => info.state = format!("corrupt: {e}"),
        Err(_) => return None,
    }
    Some(info)
}

/// The (device, inode) of `/dev/shm/NAME`.
fn identity(name: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(Path::new("/dev/shm").join(name)).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether `info` is an orphan: its creator is dead, or it never finished
/// initializing and its creator is gone (or unknown and it is old).
fn is_orphan(info: &SegmentInfo, include_persistent: bool) -> bool {
    if info.alive || (info.persistent && !include_persistent) {
        return false;
    }
    if info.state == "ready" || info.state.starts_with("corrupt") || info.state.starts_with("unsupported") {
        return info.creator_pid != 0;
    }
    // Initializing: a header without a creator is a creator that died
    // between creating the name and writing the header, or one still
    // writing; only age tells them apart.
    let age = std::fs::metadata(Path::new("/dev/shm").join(&info.name))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    info.creator_pid != 0 || age > INIT_GRACE
}

/// Removes every orphaned shmpar segment (or, with `dry_run`, only lists
/// them). Never removes a segment whose creator is alive, nor one its
/// creator persisted; the creator's liveness is checked again right before
/// each removal, and a segment another `gc` removed first is simply skipped.
pub fn collect(dry_run: bool) -> Vec<SegmentInfo> {
    collect_with(dry_run, false)
}

/// Like [`collect`]; with `include_persistent`, persisted segments whose
/// creator is dead are removed too.
pub fn collect_with(dry_run: bool, include_persistent: bool) -> Vec<SegmentInfo> {
    let mut removed = Vec::new();
    for info in list() {
        if !is_orphan(&info, include_persistent) {
            continue;
        }
        if dry_run {
            removed.push(info);
            continue;
        }
        // Re-read right before removing: the name may have been reused by
        // a live creator since `list` looked. Note the object's identity
        // first and remove only that object, so a creator that takes the
        // name between this check and the removal keeps its segment.
        let Some(identity) = identity(&info.name) else {
            continue;
        };
        let Some(fresh) = self::info(&info.name) else {
            continue;
        };
        if !is_orphan(&fresh, include_persistent) {
            continue;
        }
        if let Ok(true) = segment::unlink_if(&Location::Shm(fresh.name.clone()), identity) {
            removed.push(fresh);
        }
    }
    removed
}
