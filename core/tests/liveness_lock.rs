//! The liveness lock of every handle (issue 10 §1), the one-handle registry
//! query the runtime uses for eviction (§7), and read-only inspection
//! without mapping (§6), in one process.
#![cfg(not(loom))]

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use shmpar_core::segment::{self, Location, Peek};
use shmpar_core::{DType, Error, Liveness, Segment, SegmentOptions, SharedArray};

fn unique(test: &str) -> String {
    format!("shmpar_t_core_{test}_{}", std::process::id())
}

fn liveness(name: &str) -> Liveness {
    segment::liveness(&Location::Shm(name.to_owned()))
}

/// Whether a descriptor of this process refers to `/dev/shm/NAME`.
fn has_descriptor_of(name: &str) -> bool {
    let target = Path::new("/dev/shm").join(name);
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|link| link == target)
}

#[test]
fn every_handle_holds_the_lock_through_its_mapping_not_a_descriptor() {
    let name = unique("lock");
    let options = SegmentOptions::new().name(&name).persist(true);
    let created = Segment::create(&options, DType::F64, &[100]).unwrap();
    assert_eq!(liveness(&name), Liveness::InUse);
    assert!(!has_descriptor_of(&name), "a handle keeps a descriptor open");
    drop(created);
    assert_eq!(
        liveness(&name),
        Liveness::Unused,
        "the creator's lock outlived it"
    );
    let mut attached = Segment::open(&name).unwrap();
    assert_eq!(liveness(&name), Liveness::InUse);
    assert!(!has_descriptor_of(&name));
    // SAFETY: no view is made through this second handle.
    let unchecked = unsafe { Segment::open_unchecked(&Location::Shm(name.clone())) }.unwrap();
    attached.unlink().unwrap();
    drop(attached);
    // The unchecked handle holds it too (a name is not needed for that).
    drop(unchecked);
}

#[test]
fn is_open_tracks_checked_handles_only() {
    let name = unique("is_open");
    let options = SegmentOptions::new().name(&name).persist(true);
    let created = Segment::create(&options, DType::U8, &[10]).unwrap();
    let identity = created.identity();
    assert!(segment::is_open(identity));
    drop(created);
    assert!(!segment::is_open(identity));
    // SAFETY: no view is made through this handle.
    let mut unchecked = unsafe { Segment::open_unchecked(&Location::Shm(name.clone())) }.unwrap();
    assert!(!segment::is_open(identity), "an unchecked handle is not recorded");
    let checked = Segment::open(&name).unwrap();
    assert!(segment::is_open(identity));
    drop(checked);
    assert!(!segment::is_open(identity));
    unchecked.unlink().unwrap();
}

/// Takes an exclusive lock on the whole object, as `gc` does before it
/// removes an orphan.
fn write_lock(file: &std::fs::File) {
    // SAFETY: `flock` is plain integers, for which zero is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `lock` is a valid flock for the call; the fd is open.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    assert_eq!(rc, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
}

/// An attacher that opens a segment while a collector holds its write lock
/// waits for the lock, then finds the name removed and says `NotFound`,
/// instead of attaching to an orphan nobody can find.
#[test]
fn an_attacher_waits_out_a_collector_and_finds_the_name_gone() {
    let name = unique("gc_wait");
    let options = SegmentOptions::new().name(&name).persist(true);
    drop(Segment::create(&options, DType::F32, &[4]).unwrap());
    let path = Path::new("/dev/shm").join(&name);
    let collector = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    write_lock(&collector);
    let n = name.clone();
    let attacher = std::thread::spawn(move || Segment::open(&n).map(drop));
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_file(&path).unwrap();
    drop(collector);
    match attacher.join().unwrap() {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn peek_reads_header_and_data_with_pread_and_survives_a_shrink() {
    let name = unique("peek_data");
    let source = ndarray::Array1::from_iter((0..2000).map(f64::from));
    let options = SegmentOptions::new().name(&name);
    let array = SharedArray::from_array_with(&options, &source).unwrap();
    let location = Location::Shm(name.clone());
    let (layout, bytes) = segment::peek_data(&location, 24).unwrap();
    assert_eq!(layout.shape, [2000]);
    assert_eq!(bytes.len(), 24);
    assert_eq!(f64::from_le_bytes(bytes[16..24].try_into().unwrap()), 2.0);
    let (_, all) = segment::peek_data(&location, usize::MAX).unwrap();
    assert_eq!(all.len(), 16000, "capped at the data, not the object");
    let peek = Peek::open(&location).unwrap();
    assert!(peek.liveness().in_use());
    let mut buf = [0u8; 8];
    assert_eq!(peek.read_data(15992, &mut buf).unwrap(), 8);
    assert_eq!(f64::from_le_bytes(buf), 1999.0);
    assert_eq!(peek.read_data(16000, &mut buf).unwrap(), 0);
    // The owner cuts the object under the reader: an error, never SIGBUS.
    std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new("/dev/shm").join(&name))
        .unwrap()
        .set_len(4096)
        .unwrap();
    match peek.read_data(8000, &mut buf) {
        Err(Error::Truncated { size: 4096, .. }) => {}
        other => panic!("expected Truncated, got {other:?}"),
    }
    drop(peek);
    drop(array);
    assert!(!Path::new("/dev/shm").join(&name).exists());
}

#[test]
fn a_file_backed_segment_in_a_symlinked_directory_is_refused() {
    let base = std::env::temp_dir().join(unique("linkdir"));
    std::fs::create_dir_all(base.join("real")).unwrap();
    std::os::unix::fs::symlink("real", base.join("link")).unwrap();
    let options = SegmentOptions::new().file(base.join("link").join("a.shm"));
    match Segment::create(&options, DType::U8, &[8]) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("symbolic link"), "{e}"),
        other => panic!("expected an error naming the symbolic link, got {other:?}"),
    }
    assert!(!base.join("real").join("a.shm").exists());
    // The same file through the real directory works, and a link to the
    // file itself is refused on attach.
    let path = base.join("real").join("a.shm");
    let array = SharedArray::<u8, ndarray::Ix1>::create_with(&SegmentOptions::new().file(&path), 8).unwrap();
    std::os::unix::fs::symlink(&path, base.join("b.shm")).unwrap();
    match Segment::open_file(base.join("b.shm")) {
        Err(Error::NotRegularFile {
            kind: "symbolic link",
            ..
        }) => {}
        other => panic!("expected NotRegularFile, got {other:?}"),
    }
    drop(array);
    assert!(!path.exists());
    std::fs::remove_dir_all(&base).unwrap();
}
