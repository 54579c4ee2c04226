//! The one error type of `shmpar-core`.

use std::io;
use std::time::Duration;

use crate::element::DType;

/// Everything that can go wrong in `shmpar-core`.
///
/// Each variant says what happened in words a user can act on; where the
/// operating system reported the failure, its error is kept as the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A segment name the caller gave cannot be used.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A segment or file of that name already exists; it is never reused or clobbered.
    #[error(
        "segment {name} already exists; shmpar never takes over an existing name (pick another name, or attach to it)"
    )]
    AlreadyExists {
        /// The segment name or file path.
        name: String,
    },

    /// No segment or file of that name exists.
    #[error("segment {name} does not exist")]
    NotFound {
        /// The segment name or file path.
        name: String,
    },

    /// The caller may not open the segment (it belongs to another user).
    #[error(
        "permission denied opening segment {name}: it belongs to another user (segments are created with mode 0600)"
    )]
    PermissionDenied {
        /// The segment name or file path.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The file system holding the segment cannot hold it.
    #[error(
        "not enough space for segment {name}: it needs {} but {} has {} free",
        human_bytes(*requested),
        where_,
        human_bytes(*available)
    )]
    NoSpace {
        /// The segment name or file path.
        name: String,
        /// Bytes the segment needs.
        requested: u64,
        /// Bytes free on the file system when the reservation failed.
        available: u64,
        /// The file system (`/dev/shm` or the file's directory).
        where_: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Huge pages were required ([`HugePages::On`](crate::HugePages::On))
    /// and the system offers none where the segment may live, or not
    /// enough of them. Nothing was created. The message says what was
    /// found and what to configure.
    #[error("no huge pages for {}: {reason}. {remedy}", what_segment(.name))]
    HugePagesUnavailable {
        /// The segment name or file path (`a new segment` for a random name).
        name: String,
        /// What was found where huge pages were looked for.
        reason: String,
        /// What to configure to get them.
        remedy: String,
        /// The OS error, when a reservation failed (`ENOSPC` from a
        /// hugetlbfs without enough free pages).
        #[source]
        source: Option<io::Error>,
    },

    /// The requested shape is not usable (too large, too many axes, ...).
    #[error("invalid shape {shape:?}: {reason}")]
    InvalidShape {
        /// The shape as given.
        shape: Vec<usize>,
        /// Why it was rejected.
        reason: String,
    },

    /// An option passed to create a segment is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// The object has no shmpar header where one would be (its last 4096
    /// bytes).
    #[error("segment {name} is not a shmpar segment (no shmpar header in its last 4096 bytes)")]
    NotShmpar {
        /// The segment name or file path.
        name: String,
    },

    /// The name is not a regular file: a FIFO, a symbolic link, a
    /// directory, a device or a socket. Anyone can plant such a thing in
    /// `/dev/shm`; shmpar never follows, waits on or maps it.
    #[error(
        "{name} is a {kind}, not a regular file: shmpar only opens regular files \
         (never a symbolic link, FIFO, device, socket or directory)"
    )]
    NotRegularFile {
        /// The segment name or file path.
        name: String,
        /// What it is: "FIFO", "symbolic link", "directory", ...
        kind: &'static str,
    },

    /// The segment was written by a layout version this build does not know.
    #[error("segment {name} has layout version {found}; this build of shmpar reads version {supported}")]
    UnsupportedVersion {
        /// The segment name or file path.
        name: String,
        /// The version in the header.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },

    /// This process already holds a handle of the segment. One process
    /// holds one handle per segment, so that safe code cannot hold a `&mut`
    /// view through one handle and a `&` view of the same bytes through
    /// another.
    #[error(
        "segment {name} is already open in this process: a process holds one handle per segment \
         (so that a mutable view through one handle cannot alias a view through another); \
         pass a reference to the existing handle instead of attaching again"
    )]
    AlreadyOpen {
        /// The segment name or file path.
        name: String,
    },

    /// The creator has not finished initializing the segment yet.
    #[error("segment {name} is still being initialized by its creator; try again shortly")]
    Initializing {
        /// The segment name or file path.
        name: String,
    },

    /// The segment holds another element type than the one asked for.
    #[error("segment {name} holds {found} elements, not {expected}")]
    DTypeMismatch {
        /// The segment name or file path.
        name: String,
        /// The element type asked for.
        expected: DType,
        /// The element type in the header.
        found: DType,
    },

    /// The segment's array has another number of axes than the one asked for.
    #[error("segment {name} holds a {found}-dimensional array, not {expected}-dimensional")]
    RankMismatch {
        /// The segment name or file path.
        name: String,
        /// The rank asked for.
        expected: usize,
        /// The rank in the header.
        found: usize,
    },

    /// The segment's array has another shape than the one asked for.
    #[error("segment {name} holds an array of shape {found:?}, not {expected:?}")]
    ShapeMismatch {
        /// The segment name or file path.
        name: String,
        /// The shape asked for.
        expected: Vec<usize>,
        /// The shape in the header.
        found: Vec<usize>,
    },

    /// The segment is smaller than its header says it must be.
    #[error("segment {name} is truncated: it is {size} bytes but needs {needed}")]
    Truncated {
        /// The segment name or file path.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// The size its header requires.
        needed: u64,
    },

    /// The header is inconsistent: corrupt, or forged.
    #[error("segment {name} has a corrupt header: {reason}")]
    CorruptHeader {
        /// The segment name or file path.
        name: String,
        /// What is inconsistent.
        reason: String,
    },

    /// A request about chunks cannot be met.
    #[error("cannot split into chunks: {reason}")]
    InvalidChunks {
        /// Why.
        reason: String,
    },

    /// A participant of the barrier died or gave up, so the barrier can no
    /// longer complete; every waiter is released with this error.
    #[error("the barrier is poisoned: a participant died or gave up")]
    BarrierPoisoned,

    /// A barrier was set up for an impossible number of participants.
    #[error("invalid barrier participant count {parties}: it must be between 1 and {max}")]
    InvalidParties {
        /// The count asked for.
        parties: u32,
        /// The largest count supported.
        max: u32,
    },

    /// The calling thread already holds the lock it asked for: waiting would
    /// never end.
    #[error("this thread already holds the lock; locking it again would wait forever")]
    WouldDeadlock,

    /// A futex system call failed in a way a valid, aligned word cannot
    /// cause (`EFAULT`, `EINVAL`, `ENOSYS`): the kernel lacks futexes, or
    /// the word is not where it should be.
    #[error("{op} failed: {source}")]
    Futex {
        /// The operation.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A wait did not complete within its time limit.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        op: &'static str,
        /// The time limit.
        after: Duration,
    },

    /// Any other system call failed.
    #[error("{op} failed for {name}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The segment name or file path.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The `Result` of `shmpar-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a byte count for people: `800.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "segment NAME", or a path or "a new segment" as they are.
fn what_segment(name: &str) -> String {
    if name.starts_with('/') || name.starts_with("a new") {
        name.to_owned()
    } else {
        format!("segment {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_a_readable_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(800 * 1024 * 1024), "800.0 MiB");
    }

    #[test]
    fn no_space_message_says_needed_and_free() {
        let err = Error::NoSpace {
            name: "x".into(),
            requested: 800 << 20,
            available: 12 << 20,
            where_: "/dev/shm".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(
            err.to_string(),
            "not enough space for segment x: it needs 800.0 MiB but /dev/shm has 12.0 MiB free"
        );
    }
}
