//! What a spawn pool's registry of kernels means for a program: a kernel
//! that is not registered is refused, typed, without harming the pool; and
//! a worker is an ordinary process inside its kernel, one that may start
//! another shmpar program, which builds a pool of its own.
//!
//! The second is the promise of `shmpar::init()`: it removes the worker
//! marker (`SHMPAR_WORKER`) from a spawned worker's environment before it
//! serves, so a program the kernel starts does not inherit it. Had it
//! inherited it, that program's own `init()` would turn it into a worker of
//! the kernel's pool (it never returns from `init()`), and the sub-command
//! below would never print its summary.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::{ArrayView1, Ix1};
use shmpar::{Ctx, Error, Pool, Serde, SharedArray, Start};

use crate::common::Tally;
use crate::functional::{Check, e, fill_u32, opts};

/// The variable that marks a spawned process as a pool worker.
const WORKER_MARKER: &str = "SHMPAR_WORKER";

/// How long a kernel waits for the program it started.
const NESTED_LIMIT: Duration = Duration::from_secs(60);

/// An unregistered closure: a fork pool runs it (its workers share the
/// coordinator's code addresses); a spawn pool refuses it with
/// `UnregisteredKernel`, runs nothing, and works for the next job.
pub(crate) fn unregistered_closure(pool: &Pool, prefix: &str, start: Start) -> Check {
    let mut a = SharedArray::<u32, Ix1>::create_with(&opts(prefix, "unregistered"), 1001).map_err(e)?;
    let result = pool.for_each_chunk(&mut a, |mut chunk| chunk.fill(3));
    match (start, result) {
        (Start::Spawn, Err(Error::UnregisteredKernel { signature })) => {
            if !signature.contains("u32") {
                return Err(format!(
                    "the refusal names the signature {signature:?}, not the job's"
                ));
            }
            if a.view().iter().any(|&x| x != 0) {
                return Err("a refused closure still ran on some rows".into());
            }
        }
        (Start::Spawn, other) => {
            return Err(format!("an unregistered closure on a spawn pool gave {other:?}"));
        }
        (_, Ok(())) if a.view().iter().all(|&x| x == 3) => {}
        (_, other) => return Err(format!("a closure on a fork pool gave {other:?} or wrong values")),
    }
    // A reduction's closure is refused the same way.
    let sum = pool.map_reduce(
        &a,
        |chunk| chunk.iter().map(|&x| u64::from(x)).sum::<u64>(),
        |x, y| x + y,
    );
    match (start, sum) {
        (Start::Spawn, Err(Error::UnregisteredKernel { .. })) => {}
        (Start::Spawn, other) => return Err(format!("an unregistered map on a spawn pool gave {other:?}")),
        (_, Ok(3003)) => {}
        (_, other) => {
            return Err(format!(
                "a map closure on a fork pool gave {other:?}, expected 3003"
            ));
        }
    }
    // The pool is not hurt: a registered kernel runs.
    pool.run(&mut a, 11u32, fill_u32)
        .map_err(|err| format!("the job after the refusal: {err}"))?;
    if a.view().iter().any(|&x| x != 11) {
        return Err("the registered kernel after the refusal computed wrong values".into());
    }
    Ok(())
}

/// What one worker saw: its rank, whether the worker marker was in its
/// environment, and (rank 0 only) how the program it started ended.
type Report = (usize, bool, Option<Result<(), String>>);

/// Rank 0 starts this driver again as `nested-pool` and waits for it;
/// every worker reports whether its environment still holds the marker.
fn start_nested_program(ctx: &Ctx, _chunk: ArrayView1<u8>, _: &()) -> Serde<Vec<Report>> {
    let marker = std::env::var_os(WORKER_MARKER).is_some();
    let nested = (ctx.rank() == 0).then(run_nested_program);
    Serde(vec![(ctx.rank(), marker, nested)])
}
shmpar::register_kernel!(start_nested_program: fn(&Ctx, ArrayView1<u8>, &()) -> Serde<Vec<Report>>);

/// Runs `shmpar-testdriver nested-pool`; `Ok` if it exited 0 and printed
/// a summary in which every trial passed.
fn run_nested_program() -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .arg("nested-pool")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the nested program: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > NESTED_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("wait for the nested program: {e}")),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let summary = out
        .lines()
        .find(|l| l.starts_with("scenario=nested-pool "))
        .unwrap_or_default();
    let all_ok = summary.contains(" trials=2 ok=2 ") && summary.contains(" leaks=0 zombies=0 hangs=0");
    match status {
        Some(status) if status.success() && all_ok => Ok(()),
        Some(status) => Err(shorten(&format!(
            "the nested program ended with {status}, summary {summary:?}, stderr {:?}",
            err.lines().rev().take(3).collect::<Vec<_>>()
        ))),
        None => Err(format!(
            "HANG: the nested program ran past {NESTED_LIMIT:?} (did it become a worker?)"
        )),
    }
}

/// A message short enough for a worker's partial-result area.
fn shorten(msg: &str) -> String {
    msg.chars().take(600).collect()
}

/// A kernel of either start starts another shmpar program that builds its
/// own fork pool and runs jobs; no worker's environment holds the marker.
pub(crate) fn kernel_starts_a_shmpar_program(pool: &Pool, prefix: &str) -> Check {
    let probe = SharedArray::<u8, Ix1>::create_with(&opts(prefix, "nestedprobe"), 64).map_err(e)?;
    let Serde(mut reports) = pool
        .map_reduce_with(&probe, (), start_nested_program, |Serde(mut x), Serde(y)| {
            x.extend(y);
            Serde(x)
        })
        .map_err(e)?;
    reports.sort_by_key(|r| r.0);
    if reports.len() != pool.workers() {
        return Err(format!(
            "{} reports from {} workers",
            reports.len(),
            pool.workers()
        ));
    }
    let marked: Vec<usize> = reports.iter().filter(|r| r.1).map(|r| r.0).collect();
    if !marked.is_empty() {
        return Err(format!(
            "{WORKER_MARKER} is still in the environment of workers {marked:?}"
        ));
    }
    match &reports[0].2 {
        Some(Ok(())) => Ok(()),
        Some(Err(msg)) => Err(format!("rank 0's nested program: {msg}")),
        None => Err("rank 0 did not start the nested program".into()),
    }
}

/// Sub-command `nested-pool`: what a kernel starts. A plain program (its
/// `main` called `init()`, which returned): it builds its own fork pool,
/// runs a job and a reduction over an array of its own, and checks them.
pub fn nested_pool() -> Tally {
    let mut tally = Tally::new("nested-pool");
    let prefix = crate::common::prefix("nested-pool");
    let outcome = (|| -> Check {
        let pool = Pool::builder()
            .workers(2)
            .build()
            .map_err(|err| format!("pool: {err}"))?;
        let mut a = SharedArray::<f64, Ix1>::create_with(&opts(&prefix, "a"), 10_007).map_err(e)?;
        pool.run(&mut a, 0.5f64, crate::functional::fill_f64).map_err(e)?;
        let sum = pool
            .map_reduce(&a, crate::functional::sum_f64, |x, y| x + y)
            .map_err(e)?;
        if sum != 5003.5 {
            return Err(format!("the nested pool summed {sum}, expected 5003.5"));
        }
        Ok(())
    })();
    tally.trial("own pool: a job and a reduction", outcome);
    let after = tally.after_trial(&prefix);
    tally.trial("nothing left", after);
    tally
}
