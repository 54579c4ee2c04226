//! Segments across real processes: create, attach by name from another
//! process, lifecycle, and every way an attach can fail.
#![cfg(not(loom))]

mod common;

use common::{assert_gone, exists, helper, poke, unique};
use ndarray::{Ix1, Ix2, IxDyn, arr2};
use shmpar_core::header::{HEADER_SIZE, LAYOUT_VERSION};
use shmpar_core::{DType, Error, Segment, SegmentOptions, SharedArray};

fn create_named(name: &str, shape: (usize, usize)) -> SharedArray<f64, Ix2> {
    SharedArray::create_with(&SegmentOptions::new().name(name), shape).expect("create")
}

#[test]
fn a_second_process_attaches_by_name_and_its_writes_are_seen() {
    let name = unique("exec_fill");
    let a = create_named(&name, (100, 3));
    assert_eq!(helper(&["attach-fill", &name, "2.5"]), (0, "filled".into()));
    assert!(a.view().iter().all(|&x| x == 2.5));
    assert_eq!(a.view().sum(), 750.0);
    drop(a);
    assert_gone(&name);
}

#[test]
fn default_names_are_random_short_and_cleaned_up() {
    let a = SharedArray::<f32, _>::create(10).unwrap();
    let b = SharedArray::<f32, _>::create(10).unwrap();
    let (na, nb) = (a.name(), b.name());
    assert_ne!(na, nb);
    assert!(na.starts_with("shmpar_") && na.len() < 31);
    assert!(exists(&na) && exists(&nb));
    drop((a, b));
    assert_gone(&na);
    assert_gone(&nb);
}

#[test]
fn from_array_copies_in_and_an_attacher_sees_the_same_values() {
    let name = unique("from_array");
    let src = arr2(&[[1.0f64, 2.0], [3.0, 4.0], [5.0, 6.0]]);
    let a = SharedArray::from_array_with(&SegmentOptions::new().name(&name), &src).unwrap();
    let b = SharedArray::<f64, Ix2>::attach_with_shape(&name, (3, 2)).unwrap();
    assert_eq!(b.view(), src.view());
    assert!(!b.segment().unlinks_on_drop());
    drop(b);
    assert!(exists(&name), "an attacher's drop must not unlink");
    drop(a);
    assert_gone(&name);
}

#[test]
fn an_existing_name_is_never_reused_or_clobbered() {
    let name = unique("exists");
    let mut a = create_named(&name, (4, 1));
    a.view_mut().fill(7.0);
    match SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&name), 8) {
        Err(Error::AlreadyExists { name: n }) => assert_eq!(n, name),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let again = SharedArray::<f64, Ix2>::attach(&name).unwrap();
    assert!(again.view().iter().all(|&x| x == 7.0), "the original was touched");
    drop((a, again));
    assert_gone(&name);
}

#[test]
fn bad_names_are_rejected_and_leave_nothing() {
    let long = "x".repeat(300);
    for bad in ["", "a/b", "..", "a\0b", long.as_str()] {
        match SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(bad), 4) {
            Err(Error::InvalidName { .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
        assert!(matches!(Segment::open(bad), Err(Error::InvalidName { .. })));
    }
    assert!(!exists("a"), "no part of a bad name may be created");
}

#[test]
fn attach_errors_are_typed() {
    let missing = unique("missing");
    assert!(matches!(
        SharedArray::<f64, Ix1>::attach(&missing),
        Err(Error::NotFound { .. })
    ));

    let name = unique("mismatch");
    let a = create_named(&name, (5, 4));
    match SharedArray::<f32, Ix2>::attach(&name) {
        Err(Error::DTypeMismatch { expected, found, .. }) => {
            assert_eq!((expected, found), (DType::F32, DType::F64));
        }
        other => panic!("{other:?}"),
    }
    match SharedArray::<f64, Ix1>::attach(&name) {
        Err(Error::RankMismatch {
            expected: 1,
            found: 2,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match SharedArray::<f64, Ix2>::attach_with_shape(&name, (4, 5)) {
        Err(Error::ShapeMismatch { expected, found, .. }) => {
            assert_eq!((expected, found), (vec![4, 5], vec![5, 4]));
        }
        other => panic!("{other:?}"),
    }
    let dynamic = SharedArray::<f64, IxDyn>::attach(&name).unwrap();
    assert_eq!(dynamic.shape(), &[5, 4]);
    // The same checks from another process.
    assert_eq!(
        helper(&["attach-as", &name, "f32", "2"]).1.split(' ').next(),
        Some("DTypeMismatch")
    );
    assert_eq!(
        helper(&["attach-as", &name, "f64", "3"]).1.split(' ').next(),
        Some("RankMismatch")
    );
    assert_eq!(helper(&["attach-as", &name, "f64", "2"]).1, "ok");
    drop((a, dynamic));
    assert_gone(&name);
}

/// Creates a persisted 10×3 f64 segment, drops the handle, applies
/// `forge`, and returns what an attach says.
fn attach_after(test: &str, forge: impl FnOnce(&str)) -> Result<(), Error> {
    let name = unique(test);
    drop(
        SharedArray::<f64, Ix2>::create_with(&SegmentOptions::new().name(&name).persist(true), (10, 3))
            .unwrap(),
    );
    forge(&name);
    let result = SharedArray::<f64, Ix2>::attach(&name).map(drop);
    std::fs::remove_file(format!("/dev/shm/{name}")).unwrap();
    result
}

#[test]
fn forged_and_corrupt_headers_are_typed_errors() {
    assert!(matches!(
        attach_after("magic", |n| poke(n, 0, b"NOTSHMPA")),
        Err(Error::NotShmpar { .. })
    ));
    assert!(matches!(
        attach_after("version", |n| poke(n, 8, &(LAYOUT_VERSION + 1).to_ne_bytes())),
        Err(Error::UnsupportedVersion { found, .. }) if found == LAYOUT_VERSION + 1
    ));
    assert!(matches!(
        attach_after("state", |n| poke(n, 12, &0u32.to_ne_bytes())),
        Err(Error::Initializing { .. })
    ));
    assert!(matches!(
        attach_after("state9", |n| poke(n, 12, &9u32.to_ne_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    // A shape that claims more data than the segment holds, consistently
    // forged (data_len and total_len agree), must be caught by the size check.
    assert!(matches!(
        attach_after("bigshape", |n| {
            poke(n, 64, &(1u64 << 40).to_ne_bytes());
            poke(n, 40, &((1u64 << 40) * 3 * 8).to_ne_bytes());
            poke(n, 48, &(20480 + (1u64 << 40) * 3 * 8).to_ne_bytes());
        }),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        attach_after("shape", |n| poke(n, 64, &11u64.to_ne_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("dtype", |n| poke(n, 16, &77u32.to_ne_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("ndim", |n| poke(n, 24, &200u32.to_ne_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("offset", |n| poke(n, 32, &100u64.to_ne_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("truncated", |n| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{n}"))
                .unwrap();
            f.set_len(20480 + 100).unwrap();
        }),
        Err(Error::Truncated {
            size: 20580,
            needed: 20720,
            ..
        })
    ));
    assert!(matches!(
        attach_after("tiny", |n| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{n}"))
                .unwrap();
            f.set_len((HEADER_SIZE - 1) as u64).unwrap();
        }),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        attach_after("empty", |n| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{n}"))
                .unwrap();
            f.set_len(0).unwrap();
        }),
        Err(Error::Initializing { .. })
    ));
}

#[test]
fn a_foreign_segment_is_not_shmpar() {
    let name = unique("foreign");
    std::fs::write(format!("/dev/shm/{name}"), vec![0x41u8; 4096]).unwrap();
    assert!(matches!(Segment::open(&name), Err(Error::NotShmpar { .. })));
    std::fs::write(format!("/dev/shm/{name}"), b"abc").unwrap();
    assert!(matches!(Segment::open(&name), Err(Error::NotShmpar { .. })));
    std::fs::remove_file(format!("/dev/shm/{name}")).unwrap();
}

#[test]
fn persist_unlink_and_namesakes() {
    let name = unique("persist");
    let a =
        SharedArray::<u8, Ix1>::create_with(&SegmentOptions::new().name(&name).persist(true), 10).unwrap();
    drop(a);
    assert!(exists(&name), "persist keeps the segment");
    let mut b = SharedArray::<u8, Ix1>::attach(&name).unwrap();
    b.segment_mut().unlink().unwrap();
    assert!(!exists(&name));
    b.view_mut().fill(3); // the mapping outlives the name
    assert!(matches!(b.segment_mut().unlink(), Err(Error::NotFound { .. })));
    drop(b);

    // Drop must not remove a namesake created after ours was unlinked.
    let name = unique("namesake");
    let mut ours = SharedArray::<u8, Ix1>::create_with(&SegmentOptions::new().name(&name), 10).unwrap();
    std::fs::remove_file(format!("/dev/shm/{name}")).unwrap();
    let theirs = SharedArray::<u8, Ix1>::create_with(&SegmentOptions::new().name(&name), 10).unwrap();
    ours.view_mut().fill(1);
    drop(ours);
    assert!(
        exists(&name),
        "dropping our handle removed someone else's segment"
    );
    drop(theirs);
    assert_gone(&name);
}

#[test]
fn file_backing_has_the_same_header_and_lifecycle() {
    let dir = std::env::temp_dir().join(format!("shmpar_t_files_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("array.shm");
    let a = SharedArray::<f64, Ix2>::create_with(&SegmentOptions::new().file(&path), (8, 8)).unwrap();
    assert_eq!(
        helper(&["attach-file-fill", path.to_str().unwrap(), "4"]),
        (0, "filled".into())
    );
    assert_eq!(a.view().sum(), 256.0);
    assert!(matches!(
        SharedArray::<f64, Ix2>::create_with(&SegmentOptions::new().file(&path), (1, 1)),
        Err(Error::AlreadyExists { .. })
    ));
    drop(a);
    assert!(!path.exists(), "the creating handle removes its file");

    let kept =
        SharedArray::<i64, Ix1>::create_with(&SegmentOptions::new().file(&path).persist(true), 3).unwrap();
    drop(kept);
    assert_eq!(SharedArray::<i64, Ix1>::attach_file(&path).unwrap().len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chunks_are_disjoint_cover_every_row_and_handle_uneven_lengths() {
    let mut a = SharedArray::<u32, Ix2>::create((11, 2)).unwrap();
    let chunks = a.chunks_mut(4).unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.nrows()).collect::<Vec<_>>(),
        vec![3, 3, 3, 2]
    );
    for (i, mut c) in chunks.into_iter().enumerate() {
        c.fill(i as u32 + 1);
    }
    let rows: Vec<u32> = a.view().rows().into_iter().map(|r| r[0]).collect();
    assert_eq!(rows, vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]);
    assert!(matches!(a.chunks_mut(0), Err(Error::InvalidChunks { .. })));
    assert_eq!(
        a.chunks_mut(20)
            .unwrap()
            .iter()
            .filter(|c| c.nrows() == 0)
            .count(),
        9
    );
}

#[test]
fn result_slots_carry_partials_between_processes() {
    let name = unique("slots");
    let a =
        SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&name).slots(4, 128), 1).unwrap();
    let seg = a.segment();
    assert_eq!((seg.slot_count(), seg.slot_capacity()), (4, 120));
    assert_eq!(seg.read_slot(0).unwrap(), None);
    seg.write_slot(3, b"partial").unwrap();
    let other = Segment::open(&name).unwrap();
    assert_eq!(other.read_slot(3).unwrap().as_deref(), Some(&b"partial"[..]));
    assert!(matches!(seg.write_slot(4, b"x"), Err(Error::Slot { .. })));
    assert!(matches!(seg.write_slot(0, &[0u8; 121]), Err(Error::Slot { .. })));
    other.clear_slot(3).unwrap();
    assert_eq!(seg.read_slot(3).unwrap(), None);
    drop((a, other));
    assert_gone(&name);
}

#[test]
fn bad_shapes_and_options_are_rejected_without_leaving_anything() {
    let name = unique("badshape");
    assert!(matches!(
        SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&name), usize::MAX / 4),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        SharedArray::<f64, IxDyn>::create_with(&SegmentOptions::new().name(&name), IxDyn(&[1; 9])),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&name).slots(1, 10), 1),
        Err(Error::InvalidOption { .. })
    ));
    assert_gone(&name);
}

/// Runs `script` as root in a private mount namespace (so a small tmpfs can
/// be mounted over `/dev/shm` without touching the real one). Returns None
/// where that is not allowed.
fn in_private_mount_ns(script: &str) -> Option<String> {
    let out = std::process::Command::new("unshare")
        .args(["--mount", "sh", "-c", script])
        .env("HELPER", env!("CARGO_BIN_EXE_shmpar-core-helper"))
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if stdout.contains("MOUNTED") {
        Some(stdout)
    } else {
        None
    }
}

#[test]
fn a_full_dev_shm_is_an_error_not_sigbus() {
    // 10^6 f64 need 8 MB; the tmpfs holds 1 MiB.
    let script = r#"mount -t tmpfs -o size=1m tmpfs /dev/shm && echo MOUNTED &&
        "$HELPER" create shmpar_t_nospace 1000000; echo "exit=$?"; echo "left=[$(ls -A /dev/shm)]""#;
    let Some(out) = in_private_mount_ns(script) else {
        if unsafe_is_root() {
            panic!("as root, unshare --mount must work for this test");
        }
        eprintln!("skipped: needs root for a private mount namespace");
        return;
    };
    assert!(out.contains("NoSpace not enough space for segment shmpar_t_nospace: it needs 7.6 MiB but /dev/shm has 1.0 MiB free"), "{out}");
    assert!(out.contains("exit=2"), "{out}");
    assert!(
        out.contains("left=[]"),
        "a partial segment was left behind: {out}"
    );
}

#[test]
fn a_full_file_system_is_an_error_for_file_backing_too() {
    let script = r#"d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && echo MOUNTED &&
        "$HELPER" create-file "$d/a.shm" 1000000; echo "exit=$?"; echo "left=[$(ls -A "$d")]""#;
    let Some(out) = in_private_mount_ns(script) else {
        assert!(
            !unsafe_is_root(),
            "as root, unshare --mount must work for this test"
        );
        return;
    };
    assert!(out.contains("NoSpace"), "{out}");
    assert!(out.contains("exit=2") && out.contains("left=[]"), "{out}");
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn persistence_is_recorded_in_the_header_for_gc() {
    use shmpar_core::segment::{Location, peek};
    let kept = unique("flag_kept");
    drop(SharedArray::<f32, Ix1>::create_with(&SegmentOptions::new().name(&kept).persist(true), 4).unwrap());
    assert!(peek(&Location::Shm(kept.clone())).unwrap().persistent);
    std::fs::remove_file(format!("/dev/shm/{kept}")).unwrap();

    let later = unique("flag_later");
    let mut a = SharedArray::<f32, Ix1>::create_with(&SegmentOptions::new().name(&later), 4).unwrap();
    assert!(!peek(&Location::Shm(later.clone())).unwrap().persistent);
    a.segment_mut().persist();
    assert!(peek(&Location::Shm(later.clone())).unwrap().persistent);
    assert!(
        SharedArray::<f32, Ix1>::attach(&later)
            .unwrap()
            .segment()
            .layout()
            .persistent
    );
    drop(a);
    assert!(exists(&later));
    std::fs::remove_file(format!("/dev/shm/{later}")).unwrap();
}
