//! The runtime across real processes (issue 3 §9) and the fast subset of
//! the fault, load and bad-input suite (issue 6). Each test execs the
//! single-threaded `shmpar-testdriver` (a fork-start pool refuses to fork
//! in this multithreaded harness) with small counts, under a time limit,
//! and asserts that every trial passed: right error, no leaked segment, no
//! zombie, no hang. `scripts/reliability.sh` runs the full counts.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the driver; returns its summary line. Fails the test on a hang,
/// a failed trial, or a summary that reports leaks, zombies or hangs.
fn driver(args: &[&str], limit: Duration) -> String {
    driver_output(args, limit).0
}

/// As [`driver`]; returns the summary line and everything the driver
/// printed on stdout.
fn driver_output(args: &[&str], limit: Duration) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmpar-testdriver"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start shmpar-testdriver");
    let pgid = child.id() as i32;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the driver") {
            break Some(status);
        }
        if started.elapsed() > limit {
            // SAFETY: kill has no memory arguments; the group is the driver's own.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    let fails: Vec<&str> = err.lines().filter(|l| l.starts_with("FAIL")).collect();
    let summary = out
        .lines()
        .find(|l| l.starts_with(&format!("scenario={}", args[0])))
        .unwrap_or_default()
        .to_owned();
    println!("{out}");
    let Some(status) = status else {
        panic!("HANG: shmpar-testdriver {args:?} ran past {limit:?}\n{out}\n{err}");
    };
    assert!(
        status.success(),
        "shmpar-testdriver {args:?} failed ({status}):\n{summary}\n{}\nstderr tail:\n{}",
        fails.join("\n"),
        err.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for zero in ["leaks=0", "zombies=0", "hangs=0"] {
        assert!(summary.contains(zero), "{summary}");
    }
    (summary, out)
}

fn field(summary: &str, key: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or(0)
}

const LIMIT: Duration = Duration::from_secs(120);

/// Every check of the functional scenario, with the unregistered closure,
/// the kernel that starts another shmpar program, and the job over three
/// arrays; the fork start adds the refusal to fork with threads.
#[test]
fn every_feature_with_fork_start() {
    let s = driver(&["functional", "--start", "fork"], LIMIT);
    assert!(field(&s, "trials") >= 15, "{s}");
}

/// Issue 10.8 and 10.6: a stopped worker, an endless loop and a lock held
/// across a barrier end in `JobTimeout` naming the unfinished workers,
/// which are replaced; a cancel from another thread; a forked child's
/// copies of a pool and an array, dropped, leave the parent's alone.
#[test]
fn jobs_past_their_deadline_end_with_the_unfinished_workers_named() {
    let s = driver(&["deadline", "--trials", "2"], LIMIT);
    assert!(field(&s, "trials") >= 11, "{s}");
    let s = driver(&["deadline", "--start", "spawn", "--trials", "2"], LIMIT);
    assert!(field(&s, "trials") >= 9, "{s}");
}

#[test]
fn every_feature_with_spawn_start() {
    let s = driver(&["functional", "--start", "spawn"], LIMIT);
    assert!(field(&s, "trials") >= 14, "{s}");
}

#[test]
fn a_worker_killed_at_a_random_moment_is_reported_and_replaced() {
    let s = driver(&["worker-death", "--trials", "30"], LIMIT);
    assert_eq!(field(&s, "ok"), 30, "{s}");
}

#[test]
fn kernel_panic_abort_and_segfault_are_reported() {
    let s = driver(&["kernel-fault", "--trials", "24"], LIMIT);
    assert_eq!(field(&s, "ok"), 24, "{s}");
}

#[test]
fn a_worker_killed_while_others_wait_at_the_barrier_releases_them() {
    driver(&["barrier-release", "--trials", "4"], LIMIT);
}

#[test]
fn workers_of_a_killed_coordinator_exit_and_gc_removes_its_segments() {
    driver(&["coordinator-death", "--trials", "4"], LIMIT);
}

#[test]
fn sigint_and_sigterm_leave_nothing_behind() {
    driver(&["signals", "--trials", "4"], LIMIT);
}

/// One test: both run helpers as the unprivileged user `nobody`, whose
/// process count the RLIMIT_NPROC case relies on. The small /dev/shm and
/// RLIMIT_NPROC cases need `unshare` and `setpriv` to work here, and are
/// skipped (named in `skipped=`) where they cannot; the RLIMIT_NOFILE and
/// RLIMIT_AS cases need nothing, so they must have run and passed: each
/// asserts its typed error (EMFILE, ENOMEM; a fork pool's fail-closed
/// `ForkWithThreads`), the values of the jobs that follow, and that no
/// segment, process or descriptor is left.
#[test]
fn resource_limits_and_other_users_get_clear_errors() {
    let (summary, out) = driver_output(&["exhaustion"], LIMIT);
    assert_eq!(field(&summary, "trials"), 4, "{summary}");
    assert_eq!(field(&summary, "ok"), 4, "{summary}");
    for case in ["nofile", "as"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("case={case} ok "))),
            "the {case} case did not report ok:\n{out}"
        );
        let skipped = summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("skipped="))
            .unwrap_or_default();
        assert!(
            !skipped.split(',').any(|s| s.starts_with(&format!("{case}("))),
            "{summary}"
        );
    }
    driver(&["permissions"], LIMIT);
}

#[test]
fn gc_in_a_loop_never_removes_a_live_segment() {
    driver(&["gc-race", "--seconds", "2"], LIMIT);
}

#[test]
fn several_coordinators_on_an_oversubscribed_machine_complete_every_job() {
    let s = driver(&["load", "--coordinators", "3", "--seconds", "2"], LIMIT);
    assert!(field(&s, "trials") > 0, "{s}");
}

#[test]
fn a_kernel_that_skips_a_barrier_on_one_worker_fails_instead_of_hanging() {
    driver(&["unequal-barriers", "--trials", "6"], LIMIT);
}

#[test]
fn a_spawn_pool_in_a_program_without_init_fails_at_start() {
    driver(&["spawn-without-init"], LIMIT);
}

#[test]
fn forged_and_foreign_segments_give_typed_errors() {
    driver(&["hostile", "--trials", "300"], LIMIT);
}
