//! Faults: workers killed at random moments, kernels that panic, abort or
//! segfault, a worker killed while the others wait at the barrier, and a
//! coordinator killed or interrupted while a job runs.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::{ArrayViewMut1, Ix1};
use serde::{Deserialize, Serialize};
use shmpar::core::chunk::chunk_range;
use shmpar::{Cause, Ctx, Error, Pool, PoolHealth, SegmentOptions, Serde, SharedArray, Start};

use crate::common::{
    Rng, Tally, become_subreaper, children_of, describe_status, getpid, mono_ns, prefix, reap_exited,
    running, segments_of, wait_child, wait_until,
};
use crate::{Args, pool_pids};

/// What a faulty kernel does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Nothing: a healthy job.
    None,
    /// The victim SIGKILLs itself.
    Kill,
    /// The victim panics.
    Panic,
    /// The victim calls `std::process::abort()`.
    Abort,
    /// The victim reads a page it may not read: a real segmentation fault.
    Segv,
    /// The victim raises SIGSEGV with `libc::raise`. Rust's runtime
    /// installs a SIGSEGV handler (to report stack overflows) that, for a
    /// fault outside a guard page, restores the default action and
    /// returns: a *raised* signal is then swallowed once. So the kernel
    /// raises it twice; the second is fatal.
    RaiseSegv,
}

/// A job's fault plan, sent as the kernel's parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    fault: Fault,
    victim: usize,
    phase: u64,
    phases: u64,
    /// Busy time of every worker in every phase.
    work_us: u64,
    /// Extra busy time of the victim before the fault.
    spin_us: u64,
    /// Array whose element 0 receives the CLOCK_MONOTONIC time of the fault.
    stamp: String,
}

fn busy(us: u64) {
    let end = Instant::now() + Duration::from_micros(us);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

fn stamp_now(name: &str) {
    if let Ok(mut stamp) = SharedArray::<u64, Ix1>::attach(name) {
        if let Some(x) = stamp.view_mut().get_mut(0) {
            *x = mono_ns();
        }
    }
}

fn inject(ctx: &Ctx<'_>, plan: &Plan) {
    stamp_now(&plan.stamp);
    match plan.fault {
        Fault::None => {}
        // SAFETY: signalling ourselves; kill has no memory arguments.
        Fault::Kill => unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        },
        Fault::Panic => panic!("injected panic in rank {}", ctx.rank()),
        Fault::Abort => std::process::abort(),
        Fault::Segv => read_forbidden_page(),
        // SAFETY: raise has no memory arguments.
        Fault::RaiseSegv => unsafe {
            libc::raise(libc::SIGSEGV);
            libc::raise(libc::SIGSEGV);
        },
    }
}

/// Maps a page with no access and reads it: SIGSEGV, as a wild pointer would.
fn read_forbidden_page() {
    // SAFETY: an anonymous mapping of one page; no memory of ours is touched.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page != libc::MAP_FAILED {
        // SAFETY: the pointer is to a live mapping of ours; the read traps
        // (PROT_NONE), which is the point: the kernel kills the process.
        unsafe { std::ptr::read_volatile(page.cast::<u8>()) };
    }
}

/// Every worker adds 1 to its rows in each phase; phases end at a barrier;
/// the victim faults in its phase.
fn fault_kernel(ctx: &Ctx<'_>, mut chunk: ArrayViewMut1<'_, u64>, plan: &Plan) {
    for phase in 0..plan.phases {
        chunk.mapv_inplace(|x| x + 1);
        busy(plan.work_us);
        if ctx.rank() == plan.victim && phase == plan.phase {
            busy(plan.spin_us);
            inject(ctx, plan);
        }
        ctx.barrier();
    }
}

/// [`fault_kernel`] on the persistent workers (of either start): the plan
/// travels as the parameters.
fn fault_job(ctx: &Ctx, chunk: ArrayViewMut1<u64>, Serde(plan): &Serde<Plan>) {
    fault_kernel(ctx, chunk, plan);
}
shmpar::register_kernel!(fault_job: fn(&Ctx, ArrayViewMut1<u64>, &Serde<Plan>));

fn fill_u64(_ctx: &Ctx, mut chunk: ArrayViewMut1<u64>, value: &u64) {
    chunk.fill(*value);
}
shmpar::register_kernel!(fill_u64: fn(&Ctx, ArrayViewMut1<u64>, &u64));

/// Adds 1 to its rows every millisecond for `ms` milliseconds: a job that
/// outlasts the kill that ends it.
fn hold_kernel(ctx: &Ctx, mut chunk: ArrayViewMut1<u64>, ms: &u64) {
    for _ in 0..*ms {
        chunk.mapv_inplace(|x| x + 1);
        std::thread::sleep(Duration::from_millis(1));
        if ctx.rank() == usize::MAX {
            ctx.barrier();
        }
    }
}
shmpar::register_kernel!(hold_kernel: fn(&Ctx, ArrayViewMut1<u64>, &u64));

/// The array whose element 0 receives the moment of the fault. Nothing in
/// the coordinator holds it while a job runs: a process holds one handle
/// per segment, and a forked worker inherits the coordinator's record of
/// its handles, so a forked one-job worker (a capturing kernel) or a
/// replacement worker could not attach an array the coordinator holds
/// (`AlreadyOpen`). It is kept by name and removed when this drops.
struct Stamp {
    name: String,
}

impl Stamp {
    fn create(name: &str) -> Result<Stamp, String> {
        let options = SegmentOptions::new().name(name).persist(true);
        SharedArray::<u64, Ix1>::create_with(&options, 1).map_err(|e| format!("stamp: {e}"))?;
        Ok(Stamp {
            name: name.to_owned(),
        })
    }

    /// The stamped moment, 0 if none.
    fn read(&self) -> Result<u64, String> {
        let stamp =
            SharedArray::<u64, Ix1>::attach(&self.name).map_err(|e| format!("read the stamp: {e}"))?;
        Ok(stamp.view()[0])
    }
}

impl Drop for Stamp {
    fn drop(&mut self) {
        if let Ok(mut segment) = shmpar::Segment::open(&self.name) {
            let _ = segment.unlink();
        }
    }
}

fn expected_cause(fault: Fault) -> fn(&Cause) -> bool {
    match fault {
        Fault::Kill => |c| *c == Cause::Signaled(libc::SIGKILL),
        Fault::Abort => |c| *c == Cause::Signaled(libc::SIGABRT),
        Fault::Segv | Fault::RaiseSegv => |c| *c == Cause::Signaled(libc::SIGSEGV),
        Fault::Panic => |c| matches!(c, Cause::Panicked(m) if m.contains("injected panic")),
        Fault::None => |_| false,
    }
}

/// Checks a job's error against the plan; returns the health it reported.
fn check_failure(
    result: shmpar::Result<()>,
    plan: &Plan,
    rows: usize,
    workers: usize,
    capturing: bool,
) -> Result<PoolHealth, String> {
    match result {
        Err(Error::WorkerFailed {
            rank,
            rows: failed_rows,
            cause,
            health,
        }) => {
            if rank != plan.victim {
                return Err(format!(
                    "error names worker {rank}, the victim was {} ({cause})",
                    plan.victim
                ));
            }
            if failed_rows != chunk_range(rows, workers, rank) {
                return Err(format!(
                    "error names rows {failed_rows:?}, rank {rank} had {:?}",
                    chunk_range(rows, workers, rank)
                ));
            }
            if !expected_cause(plan.fault)(&cause) {
                return Err(format!("{:?} gave cause {cause:?}", plan.fault));
            }
            let process_died = !matches!(plan.fault, Fault::Panic) && !capturing;
            let health_ok = match health {
                PoolHealth::Healthy => !process_died,
                PoolHealth::Replaced | PoolHealth::Broken => process_died,
                _ => false,
            };
            if !health_ok {
                return Err(format!(
                    "{:?} (capturing: {capturing}) left the pool {health:?}",
                    plan.fault
                ));
            }
            Ok(health)
        }
        Err(other) => Err(format!(
            "expected WorkerFailed for rank {}, got {other}",
            plan.victim
        )),
        Ok(()) => Err(format!(
            "the job succeeded although rank {} had {:?}",
            plan.victim, plan.fault
        )),
    }
}

/// After a failure: the pool runs a healthy job with the right result (or,
/// if it said it is broken, refuses with `PoolBroken`).
fn check_recovery(
    pool: &Pool,
    health: PoolHealth,
    data: &mut SharedArray<u64, Ix1>,
    probe: &SharedArray<u8, Ix1>,
) -> Result<(), String> {
    let result = pool.run(&mut *data, 7u64, fill_u64);
    if health == PoolHealth::Broken {
        return match result {
            Err(Error::PoolBroken { .. }) => Ok(()),
            other => Err(format!("a broken pool ran a job: {other:?}")),
        };
    }
    result.map_err(|e| format!("the job after the failure failed: {e}"))?;
    if data.view().iter().any(|&x| x != 7) {
        return Err("the job after the failure computed a wrong result".into());
    }
    let pids = pool_pids(pool, probe).map_err(|e| format!("pid job after the failure: {e}"))?;
    let children = children_of(getpid());
    if pids.iter().any(|p| !children.contains(p)) || pids.len() != pool.workers() {
        return Err(format!(
            "workers after recovery {pids:?} are not our children {children:?}"
        ));
    }
    Ok(())
}

struct Setup {
    pool: Pool,
    probe: SharedArray<u8, Ix1>,
    data: SharedArray<u64, Ix1>,
    stamp: Stamp,
    pids: Vec<i32>,
}

fn setup(prefix: &str, workers: usize, rows: usize, start: Start) -> Result<Setup, String> {
    let pool = Pool::builder()
        .workers(workers)
        .start(start)
        .build()
        .map_err(|e| format!("build: {e}"))?;
    let name = |s: &str| SegmentOptions::new().name(&format!("{prefix}{s}"));
    let probe = SharedArray::create_with(&name("probe"), 64).map_err(|e| e.to_string())?;
    let data = SharedArray::create_with(&name("data"), rows).map_err(|e| e.to_string())?;
    let stamp = Stamp::create(&format!("{prefix}stamp"))?;
    let pids = pool_pids(&pool, &probe).map_err(|e| format!("pid job: {e}"))?;
    Ok(Setup {
        pool,
        probe,
        data,
        stamp,
        pids,
    })
}

/// One fault trial; returns the error latency in ms when one was measured.
fn fault_trial(
    prefix: &str,
    plan: &mut Plan,
    workers: usize,
    rows: usize,
    start: Start,
    capturing: bool,
    external_delay_us: Option<u64>,
) -> Result<Option<f64>, String> {
    let mut s = setup(prefix, workers, rows, start)?;
    plan.stamp = s.stamp.name.clone();
    let mut killer = match external_delay_us {
        Some(delay) => Some(
            Command::new("/proc/self/exe")
                .args([
                    "killer",
                    "--pid",
                    &s.pids[plan.victim].to_string(),
                    "--delay-us",
                    &delay.to_string(),
                    "--stamp",
                    &plan.stamp,
                ])
                .spawn()
                .map_err(|e| format!("spawn killer: {e}"))?,
        ),
        None => None,
    };
    let started = Instant::now();
    let result = if capturing {
        let captured = plan.clone();
        s.pool.run_forked(&mut s.data, (), move |ctx, chunk, _: &()| {
            fault_kernel(ctx, chunk, &captured)
        })
    } else {
        s.pool.run(&mut s.data, Serde(plan.clone()), fault_job)
    };
    let returned = mono_ns();
    let took = started.elapsed();
    if took > Duration::from_secs(5) {
        return Err(format!("HANG: the job took {took:?}"));
    }
    if let Some(k) = killer.as_mut() {
        let _ = k.wait();
    }
    let stamp = s.stamp.read()?;
    let latency = (stamp != 0 && returned >= stamp).then(|| (returned - stamp) as f64 / 1e6);
    let (result, latency) = match (&result, external_delay_us) {
        // The kill came after the job: the next job must report it.
        (Ok(()), Some(_)) => {
            if s.data.view().iter().any(|&x| x != plan.phases) {
                return Err("a job that succeeded left wrong values".into());
            }
            (s.pool.run(&mut s.data, 1u64, fill_u64), None)
        }
        _ => (result, latency),
    };
    let health = check_failure(result, plan, rows, workers, capturing)?;
    check_recovery(&s.pool, health, &mut s.data, &s.probe)?;
    if health == PoolHealth::Replaced && !capturing {
        let now = pool_pids(&s.pool, &s.probe).map_err(|e| e.to_string())?;
        if now[plan.victim] == s.pids[plan.victim] {
            return Err("the dead worker's pid is still listed".into());
        }
    }
    drop(s);
    let stray = children_of(getpid());
    if !stray.is_empty() {
        return Err(format!("processes outlived the pool: {stray:?}"));
    }
    Ok(latency)
}

fn trials_loop(
    tally: &mut Tally,
    prefix: &str,
    trials: u64,
    mut next: impl FnMut(u64) -> (String, Result<Option<f64>, String>),
) {
    let mut slow = 0;
    let mut measured = 0;
    for t in 0..trials {
        let (label, outcome) = next(t);
        let outcome = outcome.map(|lat| {
            if let Some(ms) = lat {
                tally.latency(ms);
                measured += 1;
                if ms > 1000.0 {
                    slow += 1;
                }
            }
        });
        let outcome = outcome.and_then(|()| tally.after_trial(prefix));
        tally.trial(&label, outcome);
    }
    tally.extra("over_1s", slow);
    tally.extra("latencies_measured", measured);
}

fn start_for(t: u64, args: &Args) -> Start {
    match args.get("start") {
        Some("spawn") => Start::Spawn,
        Some("fork") => Start::Fork,
        _ if t % 4 == 3 => Start::Spawn,
        _ => Start::Fork,
    }
}

/// Issue 6.1: SIGKILL of a random worker at a random moment of a
/// multi-phase job, half from inside (the victim kills itself at a random
/// point of a random phase), half from another process after a random delay.
pub fn worker_death(args: &Args) -> Tally {
    let trials = args.num("trials", 20);
    let mut rng = Rng::new(args.num("seed", 1));
    let prefix = prefix("worker-death");
    let mut tally = Tally::new("worker-death");
    let mut external = 0;
    trials_loop(&mut tally, &prefix, trials, |t| {
        let workers = 2 + rng.below(3) as usize;
        let rows = 1000 + rng.below(50_000) as usize;
        let start = start_for(t, args);
        let mut plan = Plan {
            fault: Fault::Kill,
            victim: rng.below(workers as u64) as usize,
            phase: rng.below(4),
            phases: 4,
            work_us: 300,
            spin_us: rng.below(600),
            stamp: String::new(),
        };
        let outside = t % 2 == 1;
        let delay = outside.then(|| rng.below(3000));
        if outside {
            external += 1;
            plan.phase = u64::MAX;
        }
        let label = format!(
            "{start:?} workers={workers} rows={rows} victim={} phase={} external_delay_us={delay:?}",
            plan.victim, plan.phase as i64
        );
        (
            label,
            fault_trial(&prefix, &mut plan, workers, rows, start, false, delay),
        )
    });
    tally.extra("external_kills", external);
    tally
}

/// Issue 6.2: a panic, abort() and a raised SIGSEGV inside a kernel, on
/// persistent workers and on per-job workers (capturing kernels).
pub fn kernel_fault(args: &Args) -> Tally {
    let trials = args.num("trials", 20);
    let mut rng = Rng::new(args.num("seed", 2));
    let prefix = prefix("kernel-fault");
    let mut tally = Tally::new("kernel-fault");
    let faults = [Fault::Panic, Fault::Abort, Fault::Segv, Fault::RaiseSegv];
    trials_loop(&mut tally, &prefix, trials, |t| {
        let fault = faults[(t % 4) as usize];
        let capturing = (t / 4) % 3 == 2;
        let start = if capturing {
            Start::Fork
        } else {
            start_for(t / 4, args)
        };
        let workers = 2 + rng.below(3) as usize;
        let rows = 1000 + rng.below(20_000) as usize;
        let mut plan = Plan {
            fault,
            victim: rng.below(workers as u64) as usize,
            phase: rng.below(3),
            phases: 3,
            work_us: 100,
            spin_us: rng.below(300),
            stamp: String::new(),
        };
        let label = format!(
            "{fault:?} {start:?} capturing={capturing} workers={workers} victim={} phase={}",
            plan.victim, plan.phase
        );
        (
            label,
            fault_trial(&prefix, &mut plan, workers, rows, start, capturing, None),
        )
    });
    tally
}

/// Issue 3 §9: a worker killed while the others wait at the barrier: they
/// are released and the job returns.
pub fn barrier_release(args: &Args) -> Tally {
    let trials = args.num("trials", 5);
    let mut rng = Rng::new(args.num("seed", 3));
    let prefix = prefix("barrier-release");
    let mut tally = Tally::new("barrier-release");
    trials_loop(&mut tally, &prefix, trials, |t| {
        let workers = 3;
        let start = start_for(t, args);
        let mut plan = Plan {
            fault: Fault::Kill,
            victim: rng.below(workers as u64) as usize,
            phase: 0,
            phases: 2,
            work_us: 0,
            spin_us: 30_000,
            stamp: String::new(),
        };
        let label = format!("{start:?} victim={}", plan.victim);
        (
            label,
            fault_trial(&prefix, &mut plan, workers, 3000, start, false, None),
        )
    });
    tally
}

/// Helper process: sleeps, stamps the time, SIGKILLs a pid.
pub fn killer(args: &Args) -> ! {
    std::thread::sleep(Duration::from_micros(args.num("delay-us", 0)));
    if let Some(stamp) = args.get("stamp") {
        stamp_now(stamp);
    }
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(args.num("pid", 0) as i32, libc::SIGKILL) };
    std::process::exit(0)
}

/// Helper process: a coordinator that starts a pool, prints its workers'
/// pids, and runs a job that lasts until it is killed (at most 20 s).
pub fn hold_job(args: &Args) -> ! {
    let prefix = args.get("prefix").unwrap_or("shmpar_rt_hold_").to_owned();
    let start = if args.get("start") == Some("spawn") {
        Start::Spawn
    } else {
        Start::Fork
    };
    let run = || -> shmpar::Result<()> {
        let pool = Pool::builder().workers(3).start(start).build()?;
        let probe =
            SharedArray::<u8, Ix1>::create_with(&SegmentOptions::new().name(&format!("{prefix}probe")), 64)?;
        let mut data = SharedArray::<u64, Ix1>::create_with(
            &SegmentOptions::new().name(&format!("{prefix}data")),
            30_000,
        )?;
        let pids = pool_pids(&pool, &probe)?;
        let list: Vec<String> = pids.iter().map(i32::to_string).collect();
        println!("ready workers={}", list.join(","));
        use std::io::Write;
        let _ = std::io::stdout().flush();
        pool.run(&mut data, 20_000u64, hold_kernel)
    };
    match run() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("hold-job: {e}");
            std::process::exit(3)
        }
    }
}

/// Starts `hold-job`; returns the child and its workers' pids once it is
/// inside its job.
fn start_holder(
    prefix: &str,
    start: Start,
    own_group: bool,
) -> Result<(std::process::Child, Vec<i32>), String> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args([
        "hold-job",
        "--prefix",
        prefix,
        "--start",
        if start == Start::Spawn { "spawn" } else { "fork" },
    ])
    .stdout(Stdio::piped());
    if own_group {
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn hold-job: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut poll = libc::pollfd {
        fd: stdout.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
    if ready != 1 {
        let _ = child.kill();
        let _ = child.wait();
        return Err("HANG: hold-job did not report ready within 10 s".into());
    }
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let pids: Vec<i32> = line
        .trim()
        .strip_prefix("ready workers=")
        .map(|l| l.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    if pids.len() != 3 {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("hold-job said {line:?}"));
    }
    Ok((child, pids))
}

/// Issue 6.3: SIGKILL of the coordinator during a job: its workers exit
/// within a second, and `gc::collect` removes its segments.
pub fn coordinator_death(args: &Args) -> Tally {
    become_subreaper();
    let trials = args.num("trials", 3);
    let mut rng = Rng::new(args.num("seed", 4));
    let mut tally = Tally::new("coordinator-death");
    let mut orphans = 0;
    let mut worst_exit_ms = 0f64;
    for t in 0..trials {
        let prefix = format!("{}{t}_", prefix("coordinator-death"));
        let start = start_for(t, args);
        let outcome = (|| -> Result<(), String> {
            let (mut child, pids) = start_holder(&prefix, start, false)?;
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
            let cpid = child.id() as i32;
            let _ = child.kill();
            let _ = child.wait();
            let gone = wait_until(Duration::from_secs(5), || {
                reap_exited();
                pids.iter().all(|&p| !running(p))
            });
            reap_exited();
            let Some(gone) = gone else {
                for &p in &pids {
                    // SAFETY: kill has no memory arguments.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                return Err(format!(
                    "HANG: workers {pids:?} still run 5 s after their coordinator died"
                ));
            };
            worst_exit_ms = worst_exit_ms.max(gone.as_secs_f64() * 1e3);
            let left = segments_of(&prefix, cpid);
            orphans += left.len();
            if left.len() < 3 {
                return Err(format!(
                    "expected the control, probe and data segments before gc, found {left:?}"
                ));
            }
            shmpar::gc::collect(false);
            let after = segments_of(&prefix, cpid);
            if !after.is_empty() {
                return Err(format!("gc left {after:?}"));
            }
            Ok(())
        })();
        let label = format!("{start:?}");
        let outcome = outcome.and_then(|()| tally.after_trial(&prefix));
        tally.trial(&label, outcome);
    }
    tally.extra("orphans_collected", orphans);
    tally.extra("max_worker_exit_ms", format!("{worst_exit_ms:.1}"));
    tally
}

/// Issue 6.3: SIGINT to the coordinator's process group (Ctrl-C) and
/// SIGTERM to the coordinator alone, during a job: it exits by the signal
/// (or 128 + signal), its workers exit, and nothing of it is left in
/// /dev/shm, without any gc.
pub fn signals(args: &Args) -> Tally {
    become_subreaper();
    let trials = args.num("trials", 2);
    let mut rng = Rng::new(args.num("seed", 5));
    let mut tally = Tally::new("signals");
    for t in 0..trials {
        let prefix = format!("{}{t}_", prefix("signals"));
        let (signal, group) = if t % 2 == 0 {
            (libc::SIGINT, true)
        } else {
            (libc::SIGTERM, false)
        };
        let start = start_for(t / 2, args);
        let outcome = (|| -> Result<(), String> {
            let (child, pids) = start_holder(&prefix, start, true)?;
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
            let cpid = child.id() as i32;
            let target = if group { -cpid } else { cpid };
            // SAFETY: kill has no memory arguments.
            unsafe { libc::kill(target, signal) };
            let status = wait_child(cpid, Duration::from_secs(5));
            let gone = wait_until(Duration::from_secs(5), || {
                reap_exited();
                pids.iter().all(|&p| !running(p))
            });
            reap_exited();
            let left = segments_of(&prefix, cpid);
            // Leave nothing behind even when the check fails.
            shmpar::gc::collect(false);
            let Some(status) = status else {
                return Err("HANG: the coordinator ignored the signal for 5 s".into());
            };
            let by_signal = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == signal;
            let by_code = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 128 + signal;
            if !(by_signal || by_code) {
                return Err(format!("the coordinator ended with {}", describe_status(status)));
            }
            if gone.is_none() {
                return Err(format!("HANG: workers {pids:?} survive the signal"));
            }
            if !left.is_empty() {
                return Err(format!(
                    "the coordinator left {left:?} in /dev/shm after {}",
                    describe_status(status)
                ));
            }
            Ok(())
        })();
        let label = format!(
            "{} to the {}, {start:?}",
            if signal == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            },
            if group { "process group" } else { "coordinator" }
        );
        let outcome = outcome.and_then(|()| tally.after_trial(&prefix));
        tally.trial(&label, outcome);
    }
    tally
}
