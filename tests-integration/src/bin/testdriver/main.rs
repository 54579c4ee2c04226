//! A single-threaded coordinator for the runtime's integration tests and
//! its reliability suite (issue 6). A fork-start pool refuses to fork in
//! a multithreaded process such as the test harness, so the tests exec
//! this program: `shmpar-testdriver SCENARIO [--trials N] [--seconds S]`.
//! Each scenario prints one summary line,
//! `scenario=NAME trials=N ok=N leaks=0 zombies=0 hangs=0 ...`, and
//! `FAIL ...` lines for failed trials; it exits 0 only if every trial passed.

mod common;
mod deadlines;
mod faults;
mod functional;
mod hostile;
mod load;
mod nested;
mod resources;
mod several_arrays;

use std::collections::HashMap;

use ndarray::{ArrayView1, Ix1};
use shmpar::{Ctx, Pool, Serde, SharedArray};

/// `--key value` arguments after the scenario name.
pub(crate) struct Args {
    values: HashMap<String, String>,
    positional: Vec<String>,
}

impl Args {
    fn parse(raw: &[String]) -> Args {
        let mut values = HashMap::new();
        let mut positional = Vec::new();
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            match arg.strip_prefix("--") {
                Some(key) => {
                    values.insert(key.to_owned(), it.next().cloned().unwrap_or_default());
                }
                None => positional.push(arg.clone()),
            }
        }
        Args { values, positional }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub(crate) fn num(&self, key: &str, default: u64) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    pub(crate) fn positional(&self, i: usize) -> &str {
        self.positional.get(i).map_or("", String::as_str)
    }
}

/// One worker's `(rank, pid)`.
fn worker_pid(ctx: &Ctx, _chunk: ArrayView1<u8>, _: &()) -> Serde<Vec<(usize, i32)>> {
    Serde(vec![(ctx.rank(), std::process::id() as i32)])
}
shmpar::register_kernel!(worker_pid: fn(&Ctx, ArrayView1<u8>, &()) -> Serde<Vec<(usize, i32)>>);

/// The pid of each worker of `pool`, by rank (a job that reports them).
pub(crate) fn pool_pids(pool: &Pool, probe: &SharedArray<u8, Ix1>) -> shmpar::Result<Vec<i32>> {
    let mut pairs = pool
        .map_reduce_with(probe, (), worker_pid, |Serde(mut x), Serde(y)| {
            x.extend(y);
            Serde(x)
        })?
        .0;
    pairs.sort();
    Ok(pairs.into_iter().map(|(_, pid)| pid).collect())
}

/// Set by `spawn-without-init` so that its spawned workers skip `init()`.
const SKIP_INIT: &str = "SHMPAR_TESTDRIVER_SKIP_INIT";

/// A spawn-start pool in a program whose `main` does not begin with
/// `shmpar::init()`: its workers run `main` again instead of serving. The
/// pool must say so when it starts (`SpawnMismatch`), promptly, leaving no
/// process and no segment behind.
fn spawn_without_init() -> common::Tally {
    let mut tally = common::Tally::new("spawn-without-init");
    // The spawned workers get no arguments, so, lacking `init()`, they run
    // `main` again, print the usage and exit: what a real program would do.
    // SAFETY: this process is single-threaded (the driver never starts a
    // thread before this point), so nothing reads the environment concurrently.
    unsafe { std::env::set_var(SKIP_INIT, "1") };
    let start = std::time::Instant::now();
    let result = Pool::builder().workers(2).start(shmpar::Start::Spawn).build();
    let elapsed = start.elapsed();
    // SAFETY: as above.
    unsafe { std::env::remove_var(SKIP_INIT) };
    let outcome = match result {
        Err(shmpar::Error::SpawnMismatch { reason }) if reason.contains("shmpar::init()") => Ok(()),
        other => Err(format!(
            "expected SpawnMismatch naming shmpar::init(), got {other:?}"
        )),
    };
    tally.trial("pool start refused", outcome);
    tally.latency(elapsed.as_secs_f64() * 1e3);
    let leftovers = tally.after_trial("shmpar_t_no_such_prefix");
    tally.trial("nothing left behind", leftovers);
    tally
}

/// A kernel that calls the barrier on some workers and not on others (a
/// user bug): the workers at the barrier can never be released by their
/// peers, so the coordinator must see it, poison the barrier and fail the
/// job naming the worker that finished early, not wait forever.
fn unequal_barriers(args: &Args) -> common::Tally {
    let mut tally = common::Tally::new("unequal-barriers");
    let trials = args.num("trials", 20);
    let pool = match Pool::builder().workers(3).build() {
        Ok(pool) => pool,
        Err(e) => {
            tally.trial("pool start", Err(e.to_string()));
            return tally;
        }
    };
    let mut a = match SharedArray::<u32, Ix1>::create(300) {
        Ok(a) => a,
        Err(e) => {
            tally.trial("create", Err(e.to_string()));
            return tally;
        }
    };
    for trial in 0..trials {
        let early = (trial % 3) as usize;
        let start = std::time::Instant::now();
        let result = pool.for_each_chunk_with(&mut a, early as u64, |ctx, _chunk, early| {
            if ctx.rank() != *early as usize {
                ctx.barrier();
            }
        });
        let elapsed = start.elapsed();
        let outcome = match result {
            Err(shmpar::Error::WorkerFailed {
                rank,
                cause: shmpar::Cause::Failed(msg),
                health: shmpar::PoolHealth::Healthy,
                ..
            }) if rank == early && msg.contains("same number of times") => Ok(()),
            other => Err(format!(
                "expected worker {early} to be named for unequal barriers, got {other:?}"
            )),
        };
        tally.trial("job fails, naming the early worker", outcome);
        tally.latency(elapsed.as_secs_f64() * 1e3);
        let next = pool.for_each_chunk(&mut a, |mut c| c.fill(7));
        let next = match next {
            Ok(()) if a.view().iter().all(|&x| x == 7) => Ok(()),
            other => Err(format!("the next job: {other:?}")),
        };
        tally.trial("the next job works", next);
    }
    drop((pool, a));
    let leftovers = tally.after_trial("shmpar_t_no_such_prefix");
    tally.trial("nothing left behind", leftovers);
    tally
}

const USAGE: &str = "usage: shmpar-testdriver SCENARIO [--trials N] [--seconds S] [--seed N]
scenarios: functional [--start fork|spawn], deadline [--start fork|spawn], worker-death, kernel-fault, barrier-release,
coordinator-death, signals, exhaustion, gc-race, load [--coordinators K], hostile, permissions,
spawn-without-init, unequal-barriers";

fn main() {
    // `spawn-without-init` plays a program that forgot `shmpar::init()`:
    // its spawned workers inherit this variable and skip the call.
    if std::env::var_os(SKIP_INIT).is_none() {
        shmpar::init();
    }
    // Expected panics (injected into kernels) print one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = raw.first().cloned() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let args = Args::parse(&raw[1..]);
    let tally = match scenario.as_str() {
        "functional" => functional::run(&args),
        "deadline" => deadlines::run(&args),
        "worker-death" => faults::worker_death(&args),
        "kernel-fault" => faults::kernel_fault(&args),
        "barrier-release" => faults::barrier_release(&args),
        "coordinator-death" => faults::coordinator_death(&args),
        "signals" => faults::signals(&args),
        "exhaustion" => resources::exhaustion(&args),
        "permissions" => resources::permissions(&args),
        "gc-race" => load::gc_race(&args),
        "load" => load::load(&args),
        "hostile" => hostile::run(&args),
        "spawn-without-init" => spawn_without_init(),
        "unequal-barriers" => unequal_barriers(&args),
        // Helpers the scenarios exec as other processes.
        "hold-job" => faults::hold_job(&args),
        "killer" => faults::killer(&args),
        "exhaust-case" => resources::exhaust_case(&args),
        "perm-probe" => resources::perm_probe(&args),
        "gc-loop" => load::gc_loop(&args),
        "load-one" => load::load_one(&args),
        "nested-pool" => nested::nested_pool(),
        _ => {
            eprintln!("unknown scenario {scenario}\n{USAGE}");
            std::process::exit(2);
        }
    };
    println!("{}", tally.summary());
    std::process::exit(if tally.all_ok() { 0 } else { 1 });
}
