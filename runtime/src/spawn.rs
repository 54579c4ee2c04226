//! The spawn start method: workers are new processes running this same
//! executable, which turn into workers in [`init`].

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use shmpar_core::Segment;

use crate::error::{Error, Result};
use crate::pool::WORKER_ENV;
use crate::pool::worker::{self, WorkerEnv};
use crate::sys;

/// Turns this process into a pool worker if a pool spawned it, and returns
/// at once otherwise. Call it first thing in `main` of any program that
/// uses [`Start::Spawn`](crate::Start::Spawn):
///
/// ```no_run
/// fn main() {
///     shmpar::init();
///     // ... the program, which may create a pool with Start::Spawn
/// }
/// ```
///
/// A spawned worker never returns from `init`: it serves jobs until its
/// pool stops it, then exits.
#[allow(clippy::needless_doctest_main)] // the example is about `main`
pub fn init() {
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    let spec = spec.to_string_lossy().into_owned();
    match parse(&spec) {
        Some((control, rank, seen, parent, probe)) => {
            sys::die_with_parent(parent);
            if probe != probe_offset() {
                eprintln!("shmpar worker: this executable differs from the coordinator's; exiting");
                sys::exit_now(72);
            }
            let control = match Segment::open(&control) {
                Ok(control) => control,
                Err(e) => {
                    eprintln!("shmpar worker: cannot attach the pool's control segment: {e}");
                    sys::exit_now(71);
                }
            };
            worker::serve(WorkerEnv::new(rank, control), seen)
        }
        None => {
            eprintln!("shmpar worker: malformed {WORKER_ENV}={spec:?}");
            sys::exit_now(72);
        }
    }
}

fn parse(spec: &str) -> Option<(String, usize, u32, i32, i64)> {
    let mut parts = spec.split(' ');
    let control = parts.next()?.to_owned();
    let rank = parts.next()?.parse().ok()?;
    let seen = parts.next()?.parse().ok()?;
    let parent = parts.next()?.parse().ok()?;
    let probe = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some((control, rank, seen, parent, probe))
}

/// A function whose offset from the anchor identifies this build: a worker
/// whose offset differs runs another executable, and its entry offsets
/// would point at the wrong code.
#[inline(never)]
fn probe() -> Result<()> {
    Ok(())
}

fn probe_offset() -> i64 {
    (probe as fn() -> Result<()> as usize as i64).wrapping_sub(worker::anchor() as i64)
}

/// Starts worker `rank` by re-executing this program.
pub(crate) fn launch(control: &str, rank: usize, seen: u32) -> Result<i32> {
    let parent = sys::getpid();
    let spec = format!("{control} {rank} {seen} {parent} {}", probe_offset());
    // `/proc/self/exe` is the image this process runs, even if the file on
    // disk has been replaced since it started.
    let mut command = Command::new("/proc/self/exe");
    command.env(WORKER_ENV, spec).stdin(Stdio::null());
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
        assert_eq!(parse("ctl 3 7 100 -42"), Some(("ctl".into(), 3, 7, 100, -42)));
        assert_eq!(parse("ctl 3 7 100"), None);
        assert_eq!(parse("ctl x 7 100 1"), None);
        assert_eq!(parse("ctl 3 7 100 1 extra"), None);
    }
}
