//! What `/proc` and `statvfs` say: proportional set sizes, child processes,
//! free space in `/dev/shm`, thread counts.

use std::path::Path;

/// The proportional set size of process `pid` in bytes, from
/// `/proc/PID/smaps_rollup` (pages shared by k processes count 1/k to each,
/// so the PSS of all processes that share an array adds up to its size once).
pub fn pss_bytes(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The children of this process's main thread (the pool forks its workers
/// from the thread that builds it), from `/proc/self/task/PID/children`.
pub fn children() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/self/task/{me}/children"))
        .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// Bytes available to an unprivileged writer in the file system of `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` is plain old data, valid when zeroed.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Minor and major page faults of this process so far (`getrusage`).
pub fn page_faults() -> (u64, u64) {
    // SAFETY: `rusage` is plain old data, valid when zeroed.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_minflt as u64, ru.ru_majflt as u64)
}

/// Minor page faults of process `pid` so far (field 10 of `/proc/PID/stat`).
pub fn minor_faults_of(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields start after its closing paren.
    let rest = &text[text.rfind(')')? + 2..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
