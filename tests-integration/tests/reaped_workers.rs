//! A pool whose workers' exit statuses go to someone else: the program
//! ignores SIGCHLD (children then reap themselves, a setting that `exec`
//! passes on), or calls `waitpid(-1, ..)` itself. A worker that dies must
//! still fail the job with a typed error within the pool's polling time,
//! never hang it, and be replaced.
//!
//! One single-threaded process (`harness = false`): the pool forks its
//! workers, and replacing one needs a single-threaded coordinator.

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmpar::{Cause, Error, Pool, SharedArray};

use common::children;

fn check(what: &str, result: Result<(), String>) -> bool {
    match result {
        Ok(()) => {
            println!("test {what} ... ok");
            true
        }
        Err(e) => {
            println!("test {what} ... FAILED: {e}");
            false
        }
    }
}

fn vanished(got: shmpar::Result<()>, started: Instant) -> Result<(), String> {
    let took = started.elapsed();
    match got {
        Err(Error::WorkerFailed {
            cause: Cause::Vanished,
            ..
        }) if took < Duration::from_secs(5) => Ok(()),
        other => Err(format!("{other:?} after {took:?}")),
    }
}

fn main() -> ExitCode {
    let pool = match Pool::builder().workers(2).build() {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("reaped_workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut a = SharedArray::<f64, _>::create(10).expect("an array");
    let mut ok = true;

    // SAFETY: setting a signal's disposition to SIG_IGN installs no code.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let started = Instant::now();
    let got = pool.run(&mut a, (), |ctx, _rows, _| {
        if ctx.rank() == 1 {
            std::process::abort();
        }
    });
    ok &= check(
        "a worker that dies while SIGCHLD is ignored fails the job",
        vanished(got, started),
    );
    ok &= check(
        "the pool replaced it",
        pool.run(&mut a, (), |_, mut rows, _| rows.fill(1.0))
            .map_err(|e| e.to_string()),
    );
    // SAFETY: as above, back to the default.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };

    // A worker killed between jobs and reaped by the program itself.
    let victim = children().first().copied().unwrap_or(0);
    if victim > 0 {
        // SAFETY: kill and waitpid take no memory arguments we do not own.
        unsafe {
            libc::kill(victim, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(-1, &mut status, 0);
        }
    }
    let started = Instant::now();
    let got = pool.run(&mut a, (), |_, mut rows, _| rows.fill(2.0));
    ok &= check(
        "a worker the program reaped itself fails the next job",
        if victim > 0 {
            vanished(got, started)
        } else {
            Err("no worker found".into())
        },
    );
    ok &= check(
        "and the pool works after it",
        pool.run(&mut a, (), |_, mut rows, _| rows.fill(3.0))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                if a.view().iter().all(|&x| x == 3.0) {
                    Ok(())
                } else {
                    Err(format!("{}", a.view()))
                }
            }),
    );
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
