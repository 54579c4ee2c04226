//! What the command asks the operating system: free space in `/dev/shm`
//! (through `shmpar_core::os`, which owns the `statvfs` call) and the
//! memory available (`/proc/meminfo`, which nothing else in shmpar reads).
//! The one place in this crate that talks to the OS about the machine.

use std::path::Path;

/// Bytes an unprivileged writer may still use in `/dev/shm`; `None` when
/// that cannot be read.
pub(crate) fn shm_free_bytes() -> Option<u64> {
    shmpar_core::os::free_bytes(Path::new("/dev/shm")).ok()
}

/// `MemAvailable` from `/proc/meminfo`, in bytes; `None` when that cannot
/// be read.
pub(crate) fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_field(&text, "MemAvailable")
}

/// The value of `field` in `/proc/meminfo`'s text, in bytes (the file
/// gives kB, which are KiB).
fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.split(':').next() == Some(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_are_read_in_bytes() {
        let text = "MemTotal:       16318808 kB\nMemFree:  1000 kB\nMemAvailable:   2 kB\n";
        assert_eq!(meminfo_field(text, "MemAvailable"), Some(2048));
        assert_eq!(meminfo_field(text, "MemTotal"), Some(16_318_808 * 1024));
        assert_eq!(meminfo_field(text, "Mem"), None);
        assert_eq!(meminfo_field("MemAvailable: lots kB", "MemAvailable"), None);
    }
}
