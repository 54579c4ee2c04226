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
