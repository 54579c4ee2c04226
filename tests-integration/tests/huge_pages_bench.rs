//! What huge pages buy (issue 14's bar): the cold first job of sqrt over
//! 4e7 `f64` at 2 workers, and create + first touch of 1 GiB, with
//! `HugePages::On` on a tmpfs mounted `huge=within_size` against the
//! default 4 KiB pages of a plain tmpfs, alternating over several rounds
//! in one run. A measurement, not a check, so it is `#[ignore]`d; run it
//! as root (it mounts both tmpfs in a mount namespace of its own):
//!
//! ```text
//! cargo test --release -p shmpar-tests-integration --test huge_pages_bench -- --ignored --nocapture
//! ```
//!
//! `SHMPAR_HUGE_ROUNDS` (default 7), `SHMPAR_HUGE_LEN` (default 4e7) and
//! `SHMPAR_HUGE_WORKERS` (default 2) change the run. A cold first job is:
//! the array created and filled by the coordinator, a fresh pool started,
//! then the first `for_each_chunk(sqrt)` timed, in which each worker
//! attaches, populates its rows' page tables and computes. The binary
//! holds this one test because the pool forks (see the `SAFETY` comment).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ndarray::{ArrayViewMut1, Ix1};
use shmpar::{Backend, BackendKind, Pool, SharedArray};
use shmpar_core::{HugePages, SegmentOptions};

const INNER: &str = "SHMPAR_HUGE_BENCH_DIR";

fn tell(line: &str) {
    let _ = writeln!(std::io::stderr(), "huge_pages_bench: {line}");
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(default, |v| v as usize)
}

#[test]
#[ignore = "a measurement, not a check: run it by hand (see the module docs)"]
fn cold_first_job_with_and_without_huge_pages() {
    match std::env::var_os(INNER) {
        Some(dir) => measure(&PathBuf::from(dir)),
        None => outside(),
    }
}

fn outside() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        tell("SKIPPED: mounting the tmpfs needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("shmpar-huge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // /dev/shm: a plain tmpfs (4 KiB pages); DIR: huge=within_size.
    let script = "mount -t tmpfs -o size=4g,mode=1777 shmpar-bench /dev/shm \
                  && mount -t tmpfs -o size=4g,huge=within_size shmpar-bench \"$SHMPAR_HUGE_BENCH_DIR\" \
                  && exec \"$0\" \"$@\"";
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cold_first_job_with_and_without_huge_pages",
            "--ignored",
            "--nocapture",
        ])
        .env(INNER, &dir)
        .status();
    let _ = std::fs::remove_dir(&dir);
    match status {
        Ok(status) => assert!(status.success(), "the namespaced run failed: {status}"),
        Err(e) => tell(&format!("SKIPPED: `unshare` cannot be run ({e})")),
    }
}

fn sqrt(mut rows: ArrayViewMut1<'_, f64>) {
    rows.mapv_inplace(f64::sqrt);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Sample {
    cold: f64,
    warm: f64,
    threads: f64,
    create_touch: f64,
}

fn one(options: &SegmentOptions, len: usize, workers: usize, expect_page: usize) -> Sample {
    let mut a = SharedArray::<f64, Ix1>::create_with(options, len).unwrap();
    assert_eq!(a.segment().page_size(), expect_page);
    a.view_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, x)| *x = i as f64);
    // SAFETY: this binary holds one test, so besides this thread there is
    // only the harness's main thread, blocked waiting for this test to end,
    // and, after the first round, the rayon threads of a dropped threads
    // backend, idle or exiting: none holds a lock that a worker or a
    // kernel takes in the child.
    let pool = unsafe { Pool::builder().workers(workers).allow_threads() }
        .build()
        .unwrap();
    let t = Instant::now();
    pool.for_each_chunk(&mut a, sqrt).unwrap();
    let cold = ms(t.elapsed());
    let t = Instant::now();
    pool.for_each_chunk(&mut a, sqrt).unwrap();
    let warm = ms(t.elapsed());
    assert_eq!(a.view()[len - 1], ((len - 1) as f64).sqrt().sqrt());
    drop(pool);
    // The same first job on rayon threads, which share the coordinator's
    // page tables (it filled the array): what a cold process start is
    // measured against.
    let threads = Backend::new(BackendKind::Threads, workers).unwrap();
    let t = Instant::now();
    threads.for_each_chunk(&mut a, sqrt).unwrap();
    let threads_cold = ms(t.elapsed());
    drop(threads);
    drop(a);

    let t = Instant::now();
    let mut g = SharedArray::<u8, Ix1>::create_with(options, 1 << 30).unwrap();
    let bytes = g.view_mut().into_slice().unwrap();
    for i in (0..bytes.len()).step_by(4096) {
        bytes[i] = 1;
    }
    let create_touch = ms(t.elapsed());
    assert_eq!(g.segment().page_size(), expect_page);
    drop(g);
    Sample {
        cold,
        warm,
        threads: threads_cold,
        create_touch,
    }
}

fn measure(huge: &Path) {
    let rounds = env_or("SHMPAR_HUGE_ROUNDS", 7);
    let len = env_or("SHMPAR_HUGE_LEN", 40_000_000);
    let workers = env_or("SHMPAR_HUGE_WORKERS", 2);
    let page: usize = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let off = SegmentOptions::new();
    let on = SegmentOptions::new().huge_pages(HugePages::On).huge_dir(huge);
    println!(
        "sqrt over {len} f64 at {workers} workers, {rounds} rounds; off: /dev/shm (4 KiB), on: huge=within_size"
    );
    println!("load average before: {}", loadavg());
    println!("round  mode  cold-ms  warm-ms  threads-cold-ms  create+touch-1GiB-ms");
    let (mut offs, mut ons) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which runs first, so drift favours neither.
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for huge in order {
            let s = if huge {
                one(&on, len, workers, page)
            } else {
                one(&off, len, workers, 4096)
            };
            let mode = if huge { "on" } else { "off" };
            println!(
                "{round:5}  {mode:4}  {:7.1}  {:7.1}  {:15.1}  {:8.1}",
                s.cold, s.warm, s.threads, s.create_touch
            );
            if huge { ons.push(s) } else { offs.push(s) }
        }
    }
    let med = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let (cold_off, cold_on) = (med(&offs, |s| s.cold), med(&ons, |s| s.cold));
    let (warm_off, warm_on) = (med(&offs, |s| s.warm), med(&ons, |s| s.warm));
    let (ct_off, ct_on) = (med(&offs, |s| s.create_touch), med(&ons, |s| s.create_touch));
    println!(
        "median cold first job: off {cold_off:.1} ms, on {cold_on:.1} ms: {:.2}x",
        cold_off / cold_on
    );
    println!(
        "median warm job:       off {warm_off:.1} ms, on {warm_on:.1} ms: {:.2}x",
        warm_off / warm_on
    );
    println!(
        "median create+touch 1 GiB: off {ct_off:.1} ms, on {ct_on:.1} ms: {:.2}x",
        ct_off / ct_on
    );
    let (thr_off, thr_on) = (med(&offs, |s| s.threads), med(&ons, |s| s.threads));
    println!("median first job on threads: off {thr_off:.1} ms, on {thr_on:.1} ms");
    println!(
        "median cold processes / threads: off {:.2}x, on {:.2}x",
        cold_off / thr_off,
        cold_on / thr_on
    );
    println!("load average after: {}", loadavg());
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}
