//! Liveness that the kernel holds (issue 10 §1, §5): a segment is in use
//! while a process holds its open-file-description lock, whatever PID or
//! time namespace that process lives in and whether or not anyone can read
//! `/proc`; a dead holder's segment is collected at once, with or without
//! a header; a forked child never removes its parent's segment.
//!
//! Tests that need a namespace run the helper under `unshare` (util-linux,
//! as root); where that is not possible they print `SKIPPED` and why.
#![cfg(not(loom))]

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{HELPER, assert_gone, exists, helper, unique, unshare_works, within};
use ndarray::Ix1;
use shmpar_core::segment::{self, Location};
use shmpar_core::{Liveness, SegmentOptions, SharedArray, gc};

const LIMIT: Duration = Duration::from_secs(20);

/// A helper that created a segment and holds it until released.
struct Holder {
    child: Option<Child>,
    /// Kept open, so the holder's last line does not meet a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Holder {
    /// Runs `WRAPPER... HELPER create-hold NAME` and waits for its `ready`.
    fn start(wrapper: &[&str], name: &str) -> Holder {
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.extend([HELPER, "create-hold", name]);
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {argv:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (line, stdout) = within(LIMIT, "the holder's ready line", move || {
            let mut line = String::new();
            let mut stdout = BufReader::new(stdout);
            let _ = stdout.read_line(&mut line);
            (line, stdout)
        });
        if !line.starts_with("ready") {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{argv:?} said {line:?}");
        }
        Holder {
            child: Some(child),
            _stdout: stdout,
        }
    }

    /// Closes its stdin: it drops its array (removing it) and exits.
    fn release(mut self) {
        let mut child = self.child.take().expect("running");
        drop(child.stdin.take());
        let status = within(LIMIT, "the holder's exit", move || child.wait());
        assert!(status.expect("wait").success());
    }

    /// SIGKILLs it: no destructor runs.
    fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill the holder");
        child.wait().expect("reap the holder");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn removed_by_host_gc(name: &str) -> bool {
    gc::collect(false).iter().any(|s| s.name == name) || !exists(name)
}

fn removed_by_helper_gc(name: &str) -> bool {
    let (code, line) = helper(&["collect"]);
    assert_eq!(code, 0, "{line}");
    line.split_whitespace().any(|n| n == name) || !exists(name)
}

/// A coordinator in its own PID namespace (a container sharing `/dev/shm`
/// with the host) is pid 1 there; the host's pid 1 is another process, so
/// a pid-based gc on the host took its live segment for an orphan.
#[test]
fn a_creator_in_a_pid_namespace_keeps_its_segment_through_a_host_gc() {
    let ns = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
    if !unshare_works(
        &ns[1..4],
        "a_creator_in_a_pid_namespace_keeps_its_segment_through_a_host_gc",
    ) {
        return;
    }
    let name = unique("pidns");
    let holder = Holder::start(&ns, &name);
    let info = gc::info(&name).expect("the host lists it");
    assert_eq!(info.creator_pid, 1, "the namespace did not renumber the creator");
    assert!(info.alive, "{info:?}");
    assert_eq!(segment::liveness(&Location::Shm(name.clone())), Liveness::InUse);
    assert!(!removed_by_host_gc(&name), "a host gc removed a live segment");
    assert!(
        !removed_by_helper_gc(&name),
        "another host process's gc removed it"
    );
    holder.release();
    assert_gone(&name);
}

/// A coordinator in its own time namespace records a start time shifted by
/// the namespace's boot-time offset, which the host's `/proc` never shows.
#[test]
fn a_creator_in_a_time_namespace_keeps_its_segment_through_a_host_gc() {
    let ns = [
        "unshare",
        "--time",
        "--boottime",
        "100000",
        "--fork",
        "--kill-child",
    ];
    if !unshare_works(
        &ns[1..5],
        "a_creator_in_a_time_namespace_keeps_its_segment_through_a_host_gc",
    ) {
        return;
    }
    let name = unique("timens");
    let holder = Holder::start(&ns, &name);
    let creator = segment::peek_creator(&Location::Shm(name.clone())).expect("a header");
    let host_view = shmpar_core::os::ProcStat::of(creator.pid).expect("the creator runs");
    assert_ne!(
        host_view.start_time, creator.start_time,
        "the time namespace did not shift the recorded start time"
    );
    assert!(gc::info(&name).expect("listed").alive);
    assert!(!removed_by_host_gc(&name), "a host gc removed a live segment");
    holder.release();
    assert_gone(&name);
}

/// Runs `script` in a private mount namespace whose `/proc` is an empty
/// tmpfs (a chroot or sandbox without `/proc`); `None` where that cannot
/// be set up (then the caller skips).
fn without_proc(test: &str, script: &str) -> Option<String> {
    if !unshare_works(&["--mount"], test) {
        return None;
    }
    let full = format!("mount -t tmpfs none /proc && test ! -e /proc/self/stat && echo NOPROC && {script}");
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &full])
        .env("HELPER", HELPER)
        .output()
        .expect("run unshare");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !text.contains("NOPROC") {
        eprintln!(
            "SKIPPED {test}: cannot hide /proc in a mount namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(text)
}

/// Without `/proc` every creator looked dead, so a pool start (which
/// collects) deleted its own process's arrays; and a collector without
/// `/proc` deleted everyone's. gc no longer reads `/proc` for segments that
/// carry the lock.
#[test]
fn gc_needs_no_proc_and_keeps_live_segments_without_it() {
    let test = "gc_needs_no_proc_and_keeps_live_segments_without_it";
    let own = unique("noproc_own");
    let Some(out) = without_proc(test, &format!("\"$HELPER\" create-collect {own}")) else {
        return;
    };
    assert!(
        out.contains("kept"),
        "a process without /proc collected its own live array: {out}"
    );
    assert_gone(&own);

    let ours = unique("noproc_host");
    let array = SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&ours), 8).unwrap();
    let out = without_proc(test, "\"$HELPER\" collect").expect("worked a moment ago");
    assert!(
        !out.split_whitespace().any(|n| n == ours) && exists(&ours),
        "a collector without /proc removed a live array: {out}"
    );
    drop(array);
    assert_gone(&ours);
}

/// SIGKILL runs no destructor; the kernel drops the lock with the process,
/// and the next gc takes the segment.
#[test]
fn a_killed_creators_segment_is_collected() {
    let name = unique("killed");
    let holder = Holder::start(&[], &name);
    assert!(gc::info(&name).expect("listed").alive);
    assert!(!removed_by_host_gc(&name), "removed while its creator lives");
    holder.kill();
    // Another test's gc may take it first; either way it must be unheld now.
    if let Some(info) = gc::info(&name) {
        assert!(!info.alive, "{info:?}");
        assert_eq!(segment::liveness(&Location::Shm(name.clone())), Liveness::Unused);
    }
    assert!(removed_by_host_gc(&name));
    assert_gone(&name);
}

/// Attachers hold the lock too: a segment whose creator died stays while a
/// process still uses it, and goes with the last user.
#[test]
fn an_attacher_keeps_a_segment_whose_creator_died() {
    let name = unique("attached");
    let holder = Holder::start(&[], &name);
    let attached = SharedArray::<f64, Ix1>::attach(&name).expect("attach");
    holder.kill();
    assert!(gc::info(&name).expect("listed").alive);
    assert!(!removed_by_host_gc(&name), "removed while attached");
    assert_eq!(attached.view().sum(), 0.0);
    drop(attached);
    assert!(removed_by_host_gc(&name));
    assert_gone(&name);
}

/// Takes a shared open-file-description lock on byte `offset` of `file`,
/// as a creator does before it reserves any space.
fn read_lock(file: &std::fs::File, offset: i64) {
    // SAFETY: `flock` is plain integers, for which zero is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_RDLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = offset;
    lock.l_len = 1;
    // SAFETY: `lock` is a valid flock for the call; the fd is open.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    assert_eq!(rc, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
}

/// A creator that dies between `shm_open` and writing its header leaves an
/// empty or all-zero `shmpar_*` object. gc took those only after 60 s;
/// now it takes them at once unless a process holds their lock (as a
/// creator does from the moment it made the name).
#[test]
fn an_object_without_a_header_is_collected_unless_its_lock_is_held() {
    let empty = unique("hdrless_empty");
    let zeros = unique("hdrless_zeros");
    let locked = unique("hdrless_locked");
    std::fs::write(format!("/dev/shm/{empty}"), b"").unwrap();
    std::fs::write(format!("/dev/shm/{zeros}"), vec![0u8; 8192]).unwrap();
    std::fs::write(format!("/dev/shm/{locked}"), b"").unwrap();
    let holder = std::fs::File::open(format!("/dev/shm/{locked}")).unwrap();
    // Beyond the end of the empty object, where the header will be.
    read_lock(&holder, 4096 + 144);
    assert_eq!(gc::info(&empty).expect("listed").state, "initializing");
    assert!(removed_by_host_gc(&empty), "an unheld empty object was kept");
    assert!(
        removed_by_host_gc(&zeros),
        "an unheld zero-filled object was kept"
    );
    assert!(gc::info(&locked).expect("listed").alive);
    assert!(
        !removed_by_host_gc(&locked),
        "an object under construction was removed"
    );
    drop(holder);
    assert!(removed_by_host_gc(&locked));
    for name in [empty, zeros, locked] {
        assert_gone(&name);
    }
}

/// Resources know their owner: a forked child that drops its copy of the
/// parent's array and runs the signal cleanup (its inherited registry)
/// leaves the parent's array alone.
#[test]
fn a_forked_childs_drop_and_signal_cleanup_leave_the_parents_array() {
    let name = unique("forkdrop");
    assert_eq!(helper(&["fork-drop", &name]), (0, "kept".into()));
    assert_gone(&name);
}
