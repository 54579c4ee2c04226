//! One handle per segment per process: safe code cannot hold a `&mut` view
//! through one handle and a `&` view of the same bytes through another.
//!
//! The case this guards against: two `SharedArray::attach` calls of one
//! name gave two handles over the same memory, so `a.view()` and
//! `b.view_mut()` could live at once, and a release build returned a stale
//! value (the compiler assumed `noalias`). Run it in release mode too:
//! `cargo test --release -p shmpar-core --test aliasing`.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};

use ndarray::{Ix1, Ix2};
use shmpar_core::segment::Location;
use shmpar_core::{DType, Error, Segment, SegmentOptions, SharedArray};

fn unique(test: &str) -> String {
    format!("shmpar_t_alias_{test}_{}", std::process::id())
}

/// Fails if `/dev/shm/NAME` is still there, removing it first so one
/// failure does not leak into the next run.
#[track_caller]
fn assert_gone(name: &str) {
    let path = Path::new("/dev/shm").join(name);
    if path.exists() {
        let _ = std::fs::remove_file(&path);
        panic!("segment {name} was left behind in /dev/shm");
    }
}

/// A persisted segment with no live handle in this process.
fn persisted(name: &str) {
    let options = SegmentOptions::new().name(name).persist(true);
    drop(SharedArray::<f64, Ix1>::create_with(&options, 8).expect("create"));
}

#[test]
fn attaching_twice_by_name_is_refused_until_the_first_handle_drops() {
    let name = unique("twice");
    persisted(&name);
    let mut first = SharedArray::<f64, Ix1>::attach(&name).expect("first attach");
    match SharedArray::<f64, Ix1>::attach(&name) {
        Err(Error::AlreadyOpen { name: n }) => assert_eq!(n, name),
        other => panic!("expected AlreadyOpen, got {other:?}"),
    }
    // Every way of opening the same object is the same refusal.
    assert!(matches!(Segment::open(&name), Err(Error::AlreadyOpen { .. })));
    assert!(matches!(
        Segment::open_location(&Location::shm(&name).unwrap()),
        Err(Error::AlreadyOpen { .. })
    ));
    assert!(matches!(
        SharedArray::<f64, Ix1>::attach(&format!("/{name}")),
        Err(Error::AlreadyOpen { .. })
    ));
    let message = SharedArray::<f64, Ix1>::attach(&name).unwrap_err().to_string();
    assert!(
        message.contains("one handle per segment") && message.contains("reference"),
        "{message}"
    );

    // The one handle works, and a refusal did not disturb it.
    first.view_mut().fill(3.0);
    first.segment_mut().unlink().expect("unlink");
    drop(first);
    assert_gone(&name);
}

#[test]
fn attaching_after_the_first_handle_dropped_works() {
    let name = unique("after");
    persisted(&name);
    let first = SharedArray::<f64, Ix1>::attach(&name).expect("first attach");
    drop(first);
    let mut second = SharedArray::<f64, Ix1>::attach(&name).expect("attach after drop");
    second.view_mut()[0] = 1.5;
    drop(second);
    let mut third = SharedArray::<f64, Ix1>::attach(&name).expect("and again");
    assert_eq!(third.view()[0], 1.5);
    third.segment_mut().unlink().unwrap();
    drop(third);
    assert_gone(&name);
}

#[test]
fn attaching_what_this_process_created_is_refused() {
    let name = unique("created");
    let created = SharedArray::<f64, Ix2>::create_with(&SegmentOptions::new().name(&name), (4, 2)).unwrap();
    assert!(matches!(
        SharedArray::<f64, Ix2>::attach(&name),
        Err(Error::AlreadyOpen { .. })
    ));
    // The check comes before the type checks: the handle is the problem,
    // not the element type.
    assert!(matches!(
        SharedArray::<f32, Ix1>::attach(&name),
        Err(Error::AlreadyOpen { .. })
    ));
    // From an array too.
    let copied = SharedArray::from_array(&ndarray::arr1(&[1u8, 2, 3])).unwrap();
    assert!(matches!(
        SharedArray::<u8, Ix1>::attach(&copied.name()),
        Err(Error::AlreadyOpen { .. })
    ));
    drop((created, copied));
    assert_gone(&name);
}

#[test]
fn file_backed_segments_are_one_handle_per_process_too() {
    let dir = std::env::temp_dir().join(unique("files"));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("a.shm");
    let created = SharedArray::<i32, Ix1>::create_with(&SegmentOptions::new().file(&path), 5).unwrap();
    assert!(matches!(
        SharedArray::<i32, Ix1>::attach_file(&path),
        Err(Error::AlreadyOpen { .. })
    ));
    // Another path to the same file is the same object.
    let link = dir.join("link.shm");
    std::fs::hard_link(&path, &link).unwrap();
    assert!(matches!(
        Segment::open_file(&link),
        Err(Error::AlreadyOpen { .. })
    ));
    drop(created);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unchecked_open_coexists_with_the_checked_handle() {
    let name = unique("unchecked");
    let mut owner = SharedArray::<u32, Ix1>::create_with(&SegmentOptions::new().name(&name), 8).unwrap();
    owner.view_mut().fill(7);
    let location = Location::shm(&name).unwrap();
    // SAFETY: the views made below are shared (`&`) views only, through
    // both handles, and no `&mut` view of `owner` is made while `worker` lives.
    let segment = unsafe { Segment::open_unchecked(&location) }.expect("unchecked open");
    assert_eq!(segment.dtype(), DType::U32);
    assert_eq!(segment.identity(), owner.segment().identity());
    let worker = SharedArray::<u32, Ix1>::from_segment(segment).unwrap();
    assert_eq!(worker.view().sum(), 56);
    assert_eq!(owner.view().sum(), 56);
    // Unchecked handles are not recorded: the checked one is still the only
    // one the registry knows, and dropping the unchecked one changes nothing.
    drop(worker);
    assert!(matches!(
        SharedArray::<u32, Ix1>::attach(&name),
        Err(Error::AlreadyOpen { .. })
    ));
    drop(owner);
    assert_gone(&name);
}

/// The reported miscompile, now impossible to write: with one handle, a
/// write through `view_mut` is seen by the next `view`.
#[test]
fn a_write_through_the_one_handle_is_read_back() {
    let name = unique("readback");
    let mut a = SharedArray::<u64, Ix1>::create_with(&SegmentOptions::new().name(&name), 4).unwrap();
    for round in 1..=1000u64 {
        let before = a.view()[2];
        a.view_mut()[2] = round;
        assert_eq!(a.view()[2], round, "after {before}");
    }
    drop(a);
    assert_gone(&name);
}
