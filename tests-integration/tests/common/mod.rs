//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// A segment name unique to this test and process.
pub fn unique(test: &str) -> String {
    format!("shmpar_t_{test}_{}", std::process::id())
}

/// Whether `/dev/shm/NAME` exists.
pub fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Fails the test if `/dev/shm/NAME` is still there, removing it first so
/// one failure does not leak into the next run.
#[track_caller]
pub fn assert_gone(name: &str) {
    let path = Path::new("/dev/shm").join(name);
    if path.exists() {
        let _ = std::fs::remove_file(&path);
        panic!("segment {name} was left behind in /dev/shm");
    }
}

/// Runs the helper binary; returns (exit code, first line of stdout).
pub fn helper(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmpar-core-helper"))
        .args(args)
        .output()
        .expect("run the helper binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        stdout.lines().next().unwrap_or_default().to_owned(),
    )
}

/// Writes `bytes` at `offset` of `/dev/shm/NAME` (to forge or corrupt a header).
pub fn poke(name: &str, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new("/dev/shm").join(name))
        .expect("open segment file");
    file.write_all_at(bytes, offset).expect("write segment file");
}

/// Size of `/dev/shm/NAME` in bytes.
pub fn size_of_segment(name: &str) -> u64 {
    std::fs::metadata(Path::new("/dev/shm").join(name))
        .expect("stat segment file")
        .len()
}

/// Writes `bytes` at `offset` from the start of the header of
/// `/dev/shm/NAME`, which lies in its last 4096 bytes (layout version 2).
pub fn poke_header(name: &str, offset: u64, bytes: &[u8]) {
    let base = size_of_segment(name) - shmpar_core::header::HEADER_PAGE_SIZE as u64;
    poke(name, base + offset, bytes);
}

/// Sets the size of `/dev/shm/NAME` (to truncate or extend it).
pub fn set_len(name: &str, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new("/dev/shm").join(name))
        .expect("open segment file")
        .set_len(len)
        .expect("set the segment's size");
}

/// The helper binary's path.
pub const HELPER: &str = env!("CARGO_BIN_EXE_shmpar-core-helper");

/// Runs `f` on its own thread and returns its result, or panics with
/// "HANG: WHAT" if it has not returned within `limit` (the stuck thread is
/// left behind; the test has failed anyway).
#[track_caller]
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(_) => panic!("HANG: {what} did not return within {limit:?}"),
    }
}

/// Whether `unshare ARGS true` works here; if not, prints why the calling
/// test skips and returns `false`.
pub fn unshare_works(args: &[&str], test: &str) -> bool {
    let out = Command::new("unshare").args(args).arg("true").output();
    match out {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "SKIPPED {test}: `unshare {}` is not available here: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: cannot run unshare (util-linux): {e}");
            false
        }
    }
}

/// A small deterministic generator (xorshift64*), seeded per test, so a
/// failing trial can be replayed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// A seed from the clock, printed so a failure can be replayed.
    pub fn from_clock(test: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        println!("{test}: seed {seed}");
        Rng::new(seed)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Names in `/dev/shm` that start with `prefix`.
pub fn names_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The pids of this process's children (those its main thread started).
pub fn children() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
