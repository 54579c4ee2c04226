//! The few process-level system calls this crate makes itself; everything
//! about segments goes through `shmpar-core`.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

/// Asks for `signal` when the parent dies, and exits at once if the parent
/// is not `parent` any more (it died before the request took effect).
///
/// Linux sends the signal when the *thread* that started this process
/// exits; the package starts its processes from a thread that lives as
/// long as the process (see `shmpar/_pool.py`).
pub(crate) fn die_with_parent(parent: i32, signal: libc::c_int) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid take no memory
    // arguments; _exit is always sound.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
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
