//! Every system call of `shmpar-core` except the futex (which lives in
//! `sync/futex.rs` beside its loom emulation): shared-memory objects, files,
//! mappings, space reservation, randomness and process identity.
//!
//! Functions here return `io::Error`; callers turn them into typed
//! [`Error`](crate::Error)s that name the segment.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

/// Permission bits of every segment and file we create: owner only.
const MODE: libc::mode_t = 0o600;

/// Creates a new shared-memory object; fails with `EEXIST` if the name exists.
pub(crate) fn shm_create(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; the returned fd, if
    // any, is fresh and owned by nobody else.
    let fd = unsafe {
        libc::shm_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            MODE,
        )
    };
    owned_fd(fd)
}

/// Opens an existing shared-memory object for reading and writing.
pub(crate) fn shm_open_existing(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: as in `shm_create`.
    let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    owned_fd(fd)
}

/// Removes a shared-memory object's name.
pub(crate) fn shm_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a valid NUL-terminated string.
    if unsafe { libc::shm_unlink(name.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn owned_fd(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful open call, so it is a
    // valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a new file at `path`; fails with `EEXIST` if it exists.
pub(crate) fn file_create(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(MODE)
        .open(path)
}

/// Opens an existing file for reading and writing.
pub(crate) fn file_open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).open(path)
}

/// Reserves `len` bytes of backing store, so later page faults cannot fail
/// with SIGBUS for lack of space.
pub(crate) fn reserve(fd: &impl AsRawFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: plain system call on a descriptor we own.
        let rc = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) };
        match rc {
            0 => return Ok(()),
            libc::EINTR => continue,
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Size of the object behind `fd`, and its (device, inode) identity.
pub(crate) fn stat(fd: &impl AsRawFd) -> io::Result<(u64, (u64, u64))> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writes of one `stat`.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    Ok((st.st_size as u64, (st.st_dev, st.st_ino)))
}

/// Bytes available to an unprivileged writer on the file system at `path`.
pub(crate) fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is NUL-terminated and `st` is valid for writes of one `statvfs`.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// A shared, read-write mapping of a whole object, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an address range; sending it to another thread
// moves no thread-bound state. Accesses to its bytes are governed by the
// types built on top of it.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only hands out the base pointer and length; every read
// or write through them is the business of the types built on top.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared and read-write.
    pub(crate) fn map(fd: &impl AsRawFd, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: we ask the kernel for a fresh mapping anywhere; no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Populates the page tables of `[offset, offset + len)` for writing, so
    /// the first touch of each page costs no fault. Best effort: kernels
    /// older than 5.14 lack `MADV_POPULATE_WRITE` and this returns their error.
    pub(crate) fn populate(&self, offset: usize, len: usize) -> io::Result<()> {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        let page = page_size();
        let start = offset / page * page;
        let end = offset.saturating_add(len).min(self.len);
        if end <= start {
            return Ok(());
        }
        // SAFETY: `[start, end)` lies inside our mapping and `start` is page
        // aligned; populating changes no contents.
        let rc = unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                MADV_POPULATE_WRITE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and still own;
        // every borrow of it is tied to a borrow of this `Mapping`, so none
        // outlives it.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

/// Fills `buf` from the kernel's random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(())
}

/// The calling process's id.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` if no such process exists.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Parses field 22 out of a `/proc/PID/stat` line. The command name (field
/// 2) is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the `)` come fields 3, 4, ...; field 22 is the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_parses_odd_command_names() {
        let line = "1234 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_start_time("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_start_time_is_known_and_stable() {
        let me = getpid();
        let a = process_start_time(me).expect("own process has a start time");
        assert_eq!(process_start_time(me), Some(a));
        assert_eq!(process_start_time(-1), None);
    }
}
