//! Signal-safe creation (issue 10 §2): SIGINT or SIGTERM at any moment of
//! a plain program's life (no pool: the threads and serial backends, or no
//! backend at all) while it creates, fills and drops large arrays, leaves
//! nothing in `/dev/shm`, without any gc.
//!
//! The helper creates and drops 16 MiB arrays in a loop, alternately
//! zero-filled (`create`) and copied in (`from_array`); each trial kills it
//! after a random delay, so the signal lands in `shm_open`, in the space
//! reservation, in the fill, in the drop, or between them.
#![cfg(not(loom))]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{HELPER, Rng, names_with_prefix, within};

/// Trials; `SHMPAR_SIGNAL_TRIALS` overrides.
const TRIALS: usize = 200;

/// 2 Mi f64 = 16 MiB per array.
const ELEMENTS: &str = "2097152";

#[test]
fn a_signal_during_creation_leaves_nothing_behind() {
    let trials = std::env::var("SHMPAR_SIGNAL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TRIALS);
    let mut rng = Rng::from_clock("a_signal_during_creation_leaves_nothing_behind");
    let mut failures = Vec::new();
    let mut ignored = 0;
    for trial in 0..trials {
        let prefix = format!("shmpar_t_sigcreate_{}_{trial}_", std::process::id());
        let signal = if trial % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        let mut child = Command::new(HELPER)
            .args(["create-loop", &prefix, ELEMENTS])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the helper");
        let stdout = child.stdout.take().expect("piped");
        let (line, stdout) = within(Duration::from_secs(20), "the helper's first line", move || {
            let mut line = String::new();
            let mut stdout = BufReader::new(stdout);
            let _ = stdout.read_line(&mut line);
            (line, stdout)
        });
        assert_eq!(line.trim(), "looping", "trial {trial}");
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        // SAFETY: kill takes no memory arguments; the pid is our child's.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = within(Duration::from_secs(20), "the helper's death", move || {
            let status = child.wait();
            drop(stdout);
            status
        })
        .expect("wait for the helper");
        if status.signal() != Some(signal) {
            // The signal was ignored where the helper was started (a
            // disposition it inherited): shmpar leaves that alone.
            ignored += 1;
        }
        let left = names_with_prefix(&prefix);
        if !left.is_empty() {
            failures.push(format!("trial {trial} ({status}): left {left:?}"));
            for name in left {
                let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
            }
        }
    }
    println!(
        "signal during creation: trials={trials} failures={} not_killed_by_the_signal={ignored}",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        ignored, 0,
        "the helper did not die of the signal in {ignored} trials"
    );
}

/// A file-backed array (a hugetlbfs or `huge=` tmpfs file, any
/// `SegmentOptions::file`) is removed too when SIGINT or SIGTERM stops its
/// creator: the handler unlinks it relative to its directory's descriptor.
#[test]
fn a_signal_removes_a_file_backed_array_too() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let dir = std::env::temp_dir().join(format!("shmpar_t_sigfile_{}_{signal}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("array");
        let path_text = path.to_str().expect("a UTF-8 path").to_owned();
        let mut child = Command::new(HELPER)
            .args(["create-file-hold", &path_text])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the helper");
        let stdout = child.stdout.take().expect("piped");
        let line = within(Duration::from_secs(20), "the helper's ready line", move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        });
        assert!(line.starts_with("ready"), "{line:?}");
        assert!(path.exists(), "the array's file exists while it is held");
        // SAFETY: kill takes no memory arguments; the pid is our child's.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = within(Duration::from_secs(20), "the helper's death", move || {
            child.wait()
        });
        assert_eq!(status.expect("wait").signal(), Some(signal));
        let left = path.exists();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!left, "signal {signal} left {path_text} behind");
    }
}
