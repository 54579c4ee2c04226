//! Every process-level system call of the runtime: fork, wait, signals,
//! parent-death signals, and what the runtime needs to know about the
//! calling process.

use std::io;
use std::time::Duration;

/// A child process's end, as `waitpid` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Gone, its status collected by someone else (SIGCHLD ignored, or a
    /// `waitpid(-1, ..)` elsewhere in the program).
    Vanished,
}

/// Forks. Returns 0 in the child and the child's pid in the parent.
///
/// # Safety
/// - In a process with more than one thread, the child may only call
///   async-signal-safe functions until it execs or exits: another thread
///   may have held a lock at the moment of the fork, and that lock stays
///   held forever in the child. The pool checks the thread count first.
pub(crate) unsafe fn fork() -> io::Result<i32> {
    // SAFETY: the caller upholds the post-fork discipline above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    }
}

/// In a freshly forked child: die with SIGKILL when the parent dies, and
/// die at once if it already has (the fork and the prctl race).
/// Async-signal-safe.
pub(crate) fn die_with_parent(parent: i32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid are async-signal-safe
    // system calls with no memory arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(70);
        }
    }
}

/// Ends the calling process at once, running no destructors and no atexit
/// handlers (a forked child must not flush the parent's stdio buffers).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and always sound to call.
    unsafe { libc::_exit(code) }
}

/// Reaps `pid` if it has exited; `None` while it runs. A child that is
/// no longer ours to wait for (`ECHILD`: it ended and someone else
/// collected its status) is [`Exit::Vanished`].
pub(crate) fn try_wait(pid: i32) -> io::Result<Option<Exit>> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match rc {
        0 => Ok(None),
        r if r == pid => Ok(Some(decode(status))),
        _ => {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ECHILD) {
                Ok(Some(Exit::Vanished))
            } else {
                Err(e)
            }
        }
    }
}

/// Reaps `pid`, waiting up to `grace` for it to exit, then SIGKILLs it and
/// reaps it. Never leaves a zombie.
pub(crate) fn reap(pid: i32, grace: Duration) -> Exit {
    let deadline = std::time::Instant::now() + grace;
    loop {
        match try_wait(pid) {
            Ok(Some(exit)) => return exit,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Ok(None) => {
                kill(pid, libc::SIGKILL);
                let mut status = 0;
                // SAFETY: `status` is a valid out-pointer; blocking is fine,
                // SIGKILL cannot be caught.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                return decode(status);
            }
            // Not ours to wait for any more.
            Err(_) => return Exit::Vanished,
        }
    }
}

fn decode(status: i32) -> Exit {
    if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Signal(0)
    }
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub(crate) fn kill(pid: i32, signal: i32) {
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid, signal) };
}

/// The calling process's id.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// How many threads the calling process runs; `None` when `/proc` cannot
/// tell (callers must then assume "more than one").
pub(crate) fn thread_count() -> Option<usize> {
    shmpar_core::os::thread_count()
}

/// Waits (at most 100 ms) until this process runs no more threads than
/// `before`: threads that were joined may still be counted for a moment
/// after `join` returns, and a fork check right after must not see them.
pub(crate) fn await_thread_count(before: Option<usize>) {
    let Some(before) = before else { return };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
    while thread_count().is_some_and(|n| n > before) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

/// (device, inode) of the executable this process runs.
pub(crate) fn exe_identity() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/exe")?;
    Ok((meta.dev(), meta.ino()))
}

/// The name of a signal, for messages: `SIGKILL`.
pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// Number of CPUs this process may run on.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
