//! Files from other users are hostile (issue 10 §3, §4; CERT POS35-C).
//!
//! Anyone can put a FIFO or a symbolic link named `shmpar_*` in `/dev/shm`,
//! or swap one in for a regular file between `readdir` and `open`: opening
//! a segment, peeking at one, listing and collecting must return at once,
//! refuse what is not a regular file with a typed error, and never remove
//! it. And a directory swapped for a symbolic link while a file-backed
//! array drops must not redirect the drop's removal to another file.
//!
//! Every call that could hang runs under a time limit ([`within`]).
#![cfg(not(loom))]

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Rng, unique, within};
use ndarray::Ix1;
use shmpar_core::segment::{self, Location};
use shmpar_core::{Error, Segment, SegmentOptions, SharedArray, gc};

const LIMIT: Duration = Duration::from_secs(10);

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn mkfifo(path: &Path) {
    // SAFETY: `c(path)` is a NUL-terminated string that lives for the call.
    let rc = unsafe { libc::mkfifo(c(path).as_ptr(), 0o666) };
    assert_eq!(rc, 0, "mkfifo {path:?}: {}", std::io::Error::last_os_error());
}

/// Atomically exchanges the names `a` and `b` (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> bool {
    // SAFETY: both strings are NUL-terminated and live for the call.
    unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c(a).as_ptr(),
            libc::AT_FDCWD,
            c(b).as_ptr(),
            libc::RENAME_EXCHANGE,
        ) == 0
    }
}

fn shm(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name)
}

#[track_caller]
fn assert_not_regular(result: Result<(), Error>, kind: &str, what: &str) {
    match result {
        Err(Error::NotRegularFile { kind: k, .. }) if k == kind => {}
        other => panic!("{what}: expected NotRegularFile {{ kind: {kind:?} }}, got {other:?}"),
    }
}

/// Every way of looking at a name, each under a time limit: what each says.
fn every_look(name: &str, kind: &'static str) {
    let n = name.to_owned();
    let loc = Location::Shm(n.clone());
    let path = shm(name);
    let (l, p) = (loc.clone(), path.clone());
    let results = within(LIMIT, "open/peek of a non-regular file", move || {
        vec![
            ("Segment::open", Segment::open(&n).map(drop)),
            ("Segment::open_file", Segment::open_file(&p).map(drop)),
            (
                "SharedArray::attach",
                SharedArray::<f64, Ix1>::attach(&n).map(drop),
            ),
            ("segment::peek", segment::peek(&l).map(drop)),
            ("segment::peek_data", segment::peek_data(&l, 64).map(drop)),
            ("Peek::open", segment::Peek::open(&l).map(drop)),
        ]
    });
    for (what, result) in results {
        assert_not_regular(result, kind, what);
    }
    let (n, l) = (name.to_owned(), loc.clone());
    let (creator, liveness, info) = within(LIMIT, "peek_creator/liveness/info", move || {
        (segment::peek_creator(&l), segment::liveness(&l), gc::info(&n))
    });
    assert_eq!(creator, None);
    assert!(liveness.in_use(), "cannot tell must mean in use");
    assert_eq!(info, None, "a {kind} was described as a segment");
    let n = name.to_owned();
    let listed = within(LIMIT, "gc::list", move || gc::list().iter().any(|s| s.name == n));
    assert!(!listed, "gc::list listed a {kind}");
    let n = name.to_owned();
    let removed = within(LIMIT, "gc::collect", move || {
        gc::collect_with(false, true).iter().any(|s| s.name == n)
    });
    assert!(!removed, "gc::collect removed a {kind}");
    assert!(
        path.symlink_metadata().is_ok(),
        "the {kind} {name} is gone: gc removed what is not ours"
    );
    let n = name.to_owned();
    let created = within(LIMIT, "create over the name", move || {
        SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&n), 4).map(drop)
    });
    assert!(matches!(created, Err(Error::AlreadyExists { .. })), "{created:?}");
}

#[test]
fn a_fifo_or_a_symlink_named_like_a_segment_is_refused_at_once() {
    let fifo = unique("hostile_fifo");
    let link = unique("hostile_link");
    let dangling = unique("hostile_dangling");
    mkfifo(&shm(&fifo));
    std::os::unix::fs::symlink(shm(&fifo), shm(&link)).unwrap();
    std::os::unix::fs::symlink("/nonexistent/shmpar", shm(&dangling)).unwrap();
    every_look(&fifo, "FIFO");
    every_look(&link, "symbolic link");
    every_look(&dangling, "symbolic link");
    for name in [fifo, link, dangling] {
        std::fs::remove_file(shm(&name)).unwrap();
    }
}

#[test]
fn a_directory_or_a_socket_named_like_a_segment_is_refused() {
    let dir = unique("hostile_dir");
    let sock = unique("hostile_sock");
    std::fs::create_dir(shm(&dir)).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(shm(&sock)).unwrap();
    every_look(&dir, "directory");
    // `open` of a socket fails with ENXIO before any fstat.
    let n = sock.clone();
    let opened = within(LIMIT, "open of a socket", move || Segment::open(&n).map(drop));
    assert!(matches!(opened, Err(Error::NotRegularFile { .. })), "{opened:?}");
    let n = sock.clone();
    assert_eq!(within(LIMIT, "gc::info of a socket", move || gc::info(&n)), None);
    drop(listener);
    std::fs::remove_dir(shm(&dir)).unwrap();
    std::fs::remove_file(shm(&sock)).unwrap();
}

/// Trials of each swap race; `SHMPAR_SWAP_TRIALS` overrides.
const SWAP_TRIALS: usize = 300;

fn swap_trials() -> usize {
    std::env::var("SHMPAR_SWAP_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SWAP_TRIALS)
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_fifo())
}

/// Swaps `target` and `other` (atomically, `RENAME_EXCHANGE`) as fast as it
/// can until `stop`; where the regular file went missing (gc took it),
/// `replant` puts one back. Returns the number of swaps.
fn swapper(
    stop: Arc<AtomicBool>,
    target: PathBuf,
    other: PathBuf,
    replant: impl Fn() + Send + 'static,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut swaps = 0;
        while !stop.load(Ordering::Relaxed) {
            if exchange(&target, &other) {
                swaps += 1;
            } else if target.symlink_metadata().is_err() {
                replant();
            }
        }
        swaps
    })
}

/// Runs list, info, collect, open and peek on `name`, `trials` times, each
/// trial under the time limit; returns how many collections removed it.
fn look_and_collect(name: &str, trials: usize) -> usize {
    let mut removed = 0;
    for trial in 0..trials {
        let n = name.to_owned();
        removed += within(
            LIMIT,
            &format!("trial {trial} of list/info/collect/open/peek"),
            move || {
                let _ = gc::list();
                let _ = gc::info(&n);
                let removed = gc::collect(false).iter().filter(|s| s.name == n).count();
                match Segment::open(&n) {
                    Err(
                        Error::NotRegularFile { .. }
                        | Error::Initializing { .. }
                        | Error::NotFound { .. }
                        | Error::AlreadyOpen { .. },
                    ) => {}
                    other => panic!("trial {trial}: open said {other:?}"),
                }
                let _ = segment::peek(&Location::Shm(n.clone()));
                removed
            },
        );
    }
    removed
}

/// A user swaps a live segment (held by this process) and a FIFO back and
/// forth under one name while `gc::list`, `gc::info`, `gc::collect`,
/// `Segment::open` and `peek` run on it: every trial returns within the
/// limit, neither the FIFO nor the segment is ever removed.
#[test]
fn swapping_a_live_segment_for_a_fifo_never_hangs_and_removes_nothing() {
    let trials = swap_trials();
    let name = unique("hostile_swap_live");
    // The side name does not start with `shmpar_`: gc ignores it.
    let side = format!("t_hostile_swap_live_side_{}", std::process::id());
    let (target, other) = (shm(&name), shm(&side));
    mkfifo(&other);
    let array = SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&name), 1024).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = swapper(stop.clone(), target.clone(), other.clone(), || {});
    let removed = look_and_collect(&name, trials);
    stop.store(true, Ordering::Relaxed);
    let swaps = swaps.join().unwrap();
    if is_fifo(&target) {
        assert!(exchange(&target, &other));
    }
    let fifo_kept = is_fifo(&other);
    let segment_kept = target.symlink_metadata().is_ok();
    drop(array);
    let _ = std::fs::remove_file(&other);
    println!("fifo swap race (live segment): trials={trials} swaps={swaps} removed={removed}");
    assert_eq!(removed, 0, "gc removed a held segment or the FIFO");
    assert!(fifo_kept, "the FIFO is gone");
    assert!(segment_kept, "the segment is gone");
    assert!(swaps > 0, "the swapper never swapped");
    common::assert_gone(&name);
}

/// The same with an orphan (an unheld, header-less `shmpar_*` file, which
/// gc removes) instead of a live segment, so gc's removal path runs while
/// the name changes under it: every trial returns within the limit.
///
/// gc checks the name's identity (`fstatat`) and removes it (`unlinkat`)
/// relative to one directory descriptor, but no system call does both at
/// once: an owner that exchanges its *own* two entries between those calls
/// can get its FIFO removed instead of its orphan. Only the owner of both
/// entries (or root) can exchange them in sticky `/dev/shm`, so nobody
/// else's file is ever at risk; the count is printed, not asserted.
#[test]
fn swapping_an_orphan_for_a_fifo_never_hangs_collection() {
    let trials = swap_trials();
    let name = unique("hostile_swap_orphan");
    let side = format!("t_hostile_swap_orphan_side_{}", std::process::id());
    let (target, other) = (shm(&name), shm(&side));
    mkfifo(&other);
    std::fs::write(&target, vec![0u8; 8192]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let plant = target.clone();
    let swaps = swapper(stop.clone(), target.clone(), other.clone(), move || {
        let _ = std::fs::write(&plant, vec![0u8; 8192]);
    });
    let removed = look_and_collect(&name, trials);
    stop.store(true, Ordering::Relaxed);
    let swaps = swaps.join().unwrap();
    let fifo_lost = !is_fifo(&target) && !is_fifo(&other);
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_file(&other);
    println!(
        "fifo swap race (orphan): trials={trials} swaps={swaps} orphans_removed={removed} \
         owner_swapped_own_fifo_into_the_window={fifo_lost}"
    );
    assert!(swaps > 0, "the swapper never swapped");
}

/// Trials of the directory-swap race; `SHMPAR_DIRSWAP_TRIALS` overrides.
const DIRSWAP_TRIALS: usize = 256;

/// A file-backed array at `BASE/d/a.shm`; while it drops, another thread
/// swaps the directory `BASE/d` with a symbolic link to `BASE/other`, which
/// holds a namesake `a.shm` (someone else's file), back and forth. A drop
/// that re-resolved the path between its identity check and its unlink
/// deleted the other file (53 of 256 trials in the report); the
/// other file must survive every trial.
#[test]
fn a_directory_swapped_for_a_symlink_never_redirects_a_drop() {
    let trials = std::env::var("SHMPAR_DIRSWAP_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DIRSWAP_TRIALS);
    let mut rng = Rng::from_clock("a_directory_swapped_for_a_symlink_never_redirects_a_drop");
    let base = std::env::temp_dir().join(format!("shmpar_t_dirswap_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (dir, link, other) = (base.join("d"), base.join("link"), base.join("other"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::os::unix::fs::symlink("other", &link).unwrap();
    let precious = other.join("a.shm");
    std::fs::write(&precious, b"someone else's file").unwrap();
    let ours = dir.join("a.shm");
    let (mut removed_by_drop, mut left_by_drop, mut lost) = (0, 0, Vec::new());
    for trial in 0..trials {
        // `d` is the real directory again before each creation.
        if dir.symlink_metadata().unwrap().file_type().is_symlink() {
            assert!(exchange(&dir, &link));
        }
        let array = SharedArray::<u8, Ix1>::create_with(&SegmentOptions::new().file(&ours), 64).unwrap();
        let identity = array.segment().identity();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, dir, link) = (stop.clone(), dir.clone(), link.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    exchange(&dir, &link);
                }
            })
        };
        std::thread::sleep(Duration::from_micros(rng.below(200)));
        drop(array);
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        if dir.symlink_metadata().unwrap().file_type().is_symlink() {
            assert!(exchange(&dir, &link));
        }
        if std::fs::read(&precious).ok().as_deref() != Some(&b"someone else's file"[..]) {
            lost.push(trial);
            std::fs::write(&precious, b"someone else's file").unwrap();
        }
        // The drop met the symbolic link and refused: ours is still there.
        match ours.symlink_metadata() {
            Ok(meta) => {
                use std::os::unix::fs::MetadataExt;
                assert_eq!((meta.dev(), meta.ino()), identity, "trial {trial}");
                left_by_drop += 1;
                std::fs::remove_file(&ours).unwrap();
            }
            Err(_) => removed_by_drop += 1,
        }
    }
    std::fs::remove_dir_all(&base).unwrap();
    println!(
        "directory swap race: trials={trials} other_file_lost={} removed_by_drop={removed_by_drop} \
         refused_through_symlink={left_by_drop}",
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "the drop deleted someone else's file in trials {lost:?}"
    );
}
