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
