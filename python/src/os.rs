//! The few process-level system calls this crate makes itself; everything
//! about segments goes through `shmpar-core`.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

/// Asks for SIGKILL when the parent dies, and exits at once if the parent
/// is not `parent` any more (it died before the request took effect).
///
/// Linux sends the signal when the *thread* that started this process
/// exits, so a pool is used from the thread that created it (as the Rust
/// pool is).
pub(crate) fn die_with_parent(parent: i32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid take no memory
    // arguments; _exit is always sound.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(70);
        }
    }
}

/// Ignores SIGINT in this process (and so in the processes it forks): a
/// Ctrl-C at the terminal reaches the whole foreground process group, and
/// the kernel server and its workers leave it to the user's process, which
/// stops them itself.
pub(crate) fn ignore_interrupts() {
    // SAFETY: signal(SIGINT, SIG_IGN) installs no handler code; Python's
    // own handler (which would run Python code) is replaced before this
    // process runs anything but Rust.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// Takes ownership of a pipe end that the Python side handed over.
///
/// Returns an error for a negative descriptor or one that is not open.
pub(crate) fn adopt_fd(fd: RawFd) -> io::Result<File> {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the descriptor is open (checked above), and the caller
    // passes its only owner's claim to us: the Python side never uses or
    // closes it again.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Waits up to `timeout` for `fd` to become readable (or to reach end of
/// file); `Ok(false)` on timeout or on an interrupting signal.
pub(crate) fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pollfd` is one valid, initialized pollfd for the call.
    let rc = unsafe { libc::poll(&mut pollfd, 1, millis) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(rc > 0)
}

/// Maps `len` bytes from `addr` into this process's page tables now, with
/// read faults (`MADV_POPULATE_READ`). On a shared-memory mapping a read
/// fault maps the pages around it too (fault-around) and maps them
/// writable (tmpfs needs no write tracking), so this costs a fraction of
/// `MADV_POPULATE_WRITE`, which faults page by page (measured: 46–80 ms
/// against 170 ms for 400 MB), and a later write pass takes no fault.
/// `addr` is rounded down to its page.
///
/// Returns an error where the kernel refuses (before Linux 5.14).
///
/// # Safety
/// - `addr..addr + len` lies inside one live mapping of this process.
///   Populating only fills page tables: it changes no memory contents, so
///   it cannot race with other accesses to the bytes.
pub(crate) unsafe fn populate_read(addr: usize, len: usize) -> io::Result<()> {
    const MADV_POPULATE_READ: libc::c_int = 22;
    // SAFETY: sysconf has no memory arguments.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = addr / page * page;
    let end = addr.saturating_add(len);
    if len == 0 || end <= start {
        return Ok(());
    }
    // SAFETY: `[start, end)` is inside the caller's mapping (rounding
    // `addr` down stays in its page, which the mapping covers since
    // mappings are page granular), and populating changes no contents.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_READ) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
