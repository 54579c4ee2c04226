//! How worker processes start: forked from the coordinator, or spawned as
//! a new process running the same executable, which turns into a worker in
//! [`init`].

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use shmpar_core::Location;

use crate::error::{Error, Result};
use crate::pool::worker::{self, Inherited, WorkerEnv};
use crate::sys;

/// How worker processes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Start {
    /// `fork()` the coordinator (the default on Linux): workers are copies
    /// of it, so kernels reach them as `fn` pointers, and
    /// [`Pool::run_forked`](crate::Pool::run_forked) may even run capturing
    /// closures. Needs a single-threaded coordinator at the moment of the
    /// fork.
    #[default]
    Fork,
    /// Re-execute the current program (which must call [`init`] at the top
    /// of `main`): for programs in which forking is unsafe. Kernels must be
    /// registered with [`register_kernel!`](crate::register_kernel), since
    /// a new process has its own addresses.
    Spawn,
}

/// Whether forking now is allowed: only in a single-threaded process, or
/// one whose threads the user vouched for. A thread count that cannot be
/// read counts as "not single-threaded".
pub(crate) fn check_fork(allow_threads: bool) -> Result<()> {
    if allow_threads {
        return Ok(());
    }
    match sys::thread_count() {
        Some(1) => Ok(()),
        Some(threads) => Err(Error::ForkWithThreads {
            threads: Some(threads),
        }),
        None => Err(Error::ForkWithThreads { threads: None }),
    }
}

/// The environment variable that tells a spawned process it is a worker.
pub(crate) const WORKER_ENV: &str = "SHMPAR_WORKER";

/// Forks a persistent worker of `rank`; returns its pid.
///
/// # Safety
/// - The process is single-threaded, or the caller vouched (through
///   `PoolBuilder::allow_threads`) that no other thread holds a lock the
///   child will take. The child only attaches the control segment (an
///   `open`, an `fstat`, an `mmap`, small allocations) before it serves.
pub(crate) unsafe fn fork_worker(control: &Location, rank: usize, seen: u32) -> Result<i32> {
    let parent = sys::getpid();
    // SAFETY: the caller's promise above.
    match unsafe { sys::fork() }.map_err(Error::Start)? {
        0 => {
            sys::die_with_parent(parent);
            shmpar_core::signals::reset_in_child();
            match WorkerEnv::attach(rank, control) {
                Ok(env) => worker::serve(env, seen),
                Err(_) => sys::exit_now(71),
            }
        }
        pid => Ok(pid),
    }
}

/// Forks one one-job worker per rank, each running `job` from its copy of
/// this process's memory; returns their pids.
///
/// # Safety
/// As [`fork_worker`].
pub(crate) unsafe fn fork_transient(
    control: &Location,
    workers: usize,
    job: Inherited<'_>,
) -> Result<Vec<i32>> {
    let parent = sys::getpid();
    let mut pids = Vec::with_capacity(workers);
    for rank in 0..workers {
        // SAFETY: the caller's promise.
        match unsafe { sys::fork() } {
            Ok(0) => {
                sys::die_with_parent(parent);
                shmpar_core::signals::reset_in_child();
                match WorkerEnv::attach(rank, control) {
                    Ok(env) => worker::run_once(env, job),
                    Err(_) => sys::exit_now(71),
                }
            }
            Ok(pid) => pids.push(pid),
            Err(e) => {
                for &pid in &pids {
                    sys::kill(pid, libc::SIGKILL);
                    sys::reap(pid, std::time::Duration::ZERO);
                }
                return Err(Error::Start(e));
            }
        }
    }
    Ok(pids)
}

/// Turns this process into a pool worker if a pool spawned it, and returns
/// at once otherwise. Call it first thing in `main` of any program that
/// uses [`Start::Spawn`](crate::Start::Spawn), before any other thread
/// starts:
///
/// ```no_run
/// fn main() {
///     shmpar::init();
///     // ... the program, which may create a pool with Start::Spawn
/// }
/// ```
///
/// A spawned worker never returns from `init`: it serves jobs until its
/// pool stops it, then exits. It removes the worker marker from its
/// environment first, so a program that a kernel starts is an ordinary
/// program (it may build a pool of its own), never a worker.
#[allow(clippy::needless_doctest_main)] // the example is about `main`
pub fn init() {
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    // SAFETY: `init` runs first in `main`, before the program starts any
    // thread (its documented contract), so nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(WORKER_ENV) };
    let spec = spec.to_string_lossy().into_owned();
    let Some(spec) = Spec::parse(&spec) else {
        eprintln!("shmpar worker: malformed {WORKER_ENV}={spec:?}");
        sys::exit_now(72);
    };
    sys::die_with_parent(spec.parent);
    match sys::exe_identity() {
        Ok(me) if me == spec.exe => {}
        Ok(_) => {
            eprintln!("shmpar worker: this executable is not the coordinator's; exiting");
            sys::exit_now(72);
        }
        Err(e) => {
            eprintln!("shmpar worker: cannot identify this executable ({e}); exiting");
            sys::exit_now(72);
        }
    }
    let Ok(control) = Location::shm(&spec.control) else {
        eprintln!("shmpar worker: bad control segment name");
        sys::exit_now(72);
    };
    match WorkerEnv::attach(spec.rank, &control) {
        Ok(env) => worker::serve(env, spec.seen),
        Err(e) => {
            eprintln!("shmpar worker: cannot attach the pool's control segment: {e}");
            sys::exit_now(71);
        }
    }
}

/// What a spawned worker is told in [`WORKER_ENV`].
#[derive(Debug, PartialEq)]
struct Spec {
    control: String,
    rank: usize,
    seen: u32,
    parent: i32,
    /// (device, inode) of the coordinator's executable.
    exe: (u64, u64),
}

impl Spec {
    fn render(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.control, self.rank, self.seen, self.parent, self.exe.0, self.exe.1
        )
    }

    fn parse(spec: &str) -> Option<Spec> {
        let mut parts = spec.split(' ');
        let spec = Spec {
            control: parts.next()?.to_owned(),
            rank: parts.next()?.parse().ok()?,
            seen: parts.next()?.parse().ok()?,
            parent: parts.next()?.parse().ok()?,
            exe: (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?),
        };
        parts.next().is_none().then_some(spec)
    }
}

/// Starts worker `rank` by re-executing this program.
pub(crate) fn spawn_worker(control: &Location, rank: usize, seen: u32) -> Result<i32> {
    let Location::Shm(control) = control else {
        return Err(Error::Start(std::io::Error::other(
            "a control segment is always shared memory",
        )));
    };
    let parent = sys::getpid();
    let spec = Spec {
        control: control.clone(),
        rank,
        seen,
        parent,
        exe: sys::exe_identity().map_err(Error::Start)?,
    };
    // `/proc/self/exe` is the image this process runs, even if the file on
    // disk has been replaced since it started; the worker checks that it
    // runs that same file (device and inode).
    let mut command = Command::new("/proc/self/exe");
    command.env(WORKER_ENV, spec.render()).stdin(Stdio::null());
    // SAFETY: the closure only makes async-signal-safe system calls
    // (prctl, getppid, _exit), as a pre-exec hook must.
    unsafe {
        command.pre_exec(move || {
            sys::die_with_parent(parent);
            Ok(())
        });
    }
    let child = command.spawn().map_err(Error::Start)?;
    Ok(child.id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_strictly() {
        let spec = Spec {
            control: "ctl".into(),
            rank: 3,
            seen: 7,
            parent: 100,
            exe: (42, 4242),
        };
        assert_eq!(Spec::parse(&spec.render()), Some(spec));
        assert_eq!(Spec::parse("ctl 3 7 100 1"), None);
        assert_eq!(Spec::parse("ctl x 7 100 1 2"), None);
        assert_eq!(Spec::parse("ctl 3 7 100 1 2 extra"), None);
    }
}
