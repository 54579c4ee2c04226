//! Segments across real processes: create, attach by name from another
//! process, lifecycle, and every way an attach can fail.
#![cfg(not(loom))]

mod common;

use common::{assert_gone, exists, helper, poke, poke_header, set_len, size_of_segment, unique};
use ndarray::{Ix1, Ix2, IxDyn, arr2};
use shmpar_core::header::{HEADER_PAGE_SIZE, LAYOUT_VERSION, MAGIC};
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
    assert_eq!(helper(&["attach-print", &name]), (0, "1 2 3 4 5 6".into()));
    assert!(exists(&name), "an attacher's exit must not unlink");
    // In this process, the creating handle is the one handle.
    assert!(matches!(
        SharedArray::<f64, Ix2>::attach_with_shape(&name, (3, 2)),
        Err(Error::AlreadyOpen { .. })
    ));
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
    assert_eq!(
        helper(&["attach-print", &name]),
        (0, "7 7 7 7".into()),
        "the original was touched"
    );
    drop(a);
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
    // Persisted and its handle dropped, so this process can attach too.
    drop(
        SharedArray::<f64, Ix2>::create_with(&SegmentOptions::new().name(&name).persist(true), (5, 4))
            .unwrap(),
    );
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
    // Another process holds its own handle; a second one inside it is refused.
    assert_eq!(helper(&["attach-twice", &name]).1, "AlreadyOpen");
    let mut dynamic = dynamic;
    dynamic.segment_mut().unlink().unwrap();
    drop(dynamic);
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

/// The 10×3 f64 segments above: 240 bytes of data padded to one page,
/// then the header page.
const SEGMENT_LEN: u64 = 8192;

#[test]
fn forged_and_corrupt_headers_are_typed_errors() {
    assert_eq!(HEADER_PAGE_SIZE as u64 * 2, SEGMENT_LEN);
    assert!(matches!(
        attach_after("magic", |n| poke_header(n, 0, b"NOTSHMPA")),
        Err(Error::NotShmpar { .. })
    ));
    assert!(matches!(
        attach_after("version", |n| poke_header(n, 8, &(LAYOUT_VERSION + 1).to_le_bytes())),
        Err(Error::UnsupportedVersion { found, supported, .. })
            if found == LAYOUT_VERSION + 1 && supported == LAYOUT_VERSION
    ));
    assert!(matches!(
        attach_after("state", |n| poke_header(n, 12, &0u32.to_le_bytes())),
        Err(Error::Initializing { .. })
    ));
    assert!(matches!(
        attach_after("state9", |n| poke_header(n, 12, &9u32.to_le_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    // A shape that claims more data than the segment holds, consistently
    // forged (data_len, total_len and header_offset agree), must be caught
    // by the size check.
    let data_len = (1u64 << 40) * 3 * 8;
    let total = data_len + HEADER_PAGE_SIZE as u64;
    assert!(matches!(
        attach_after("bigshape", |n| {
            poke_header(n, 64, &(1u64 << 40).to_le_bytes());
            poke_header(n, 40, &data_len.to_le_bytes());
            poke_header(n, 48, &total.to_le_bytes());
            poke_header(n, 56, &(total - HEADER_PAGE_SIZE as u64).to_le_bytes());
        }),
        Err(Error::Truncated { size: SEGMENT_LEN, needed, .. }) if needed == total
    ));
    assert!(matches!(
        attach_after("shape", |n| poke_header(n, 64, &11u64.to_le_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("dtype", |n| poke_header(n, 16, &77u32.to_le_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("ndim", |n| poke_header(n, 24, &200u32.to_le_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("offset", |n| poke_header(n, 32, &4096u64.to_le_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("headeroffset", |n| poke_header(n, 56, &0u64.to_le_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    assert!(matches!(
        attach_after("pagesize", |n| poke_header(n, 132, &1000u32.to_le_bytes())),
        Err(Error::CorruptHeader { .. })
    ));
    // Cut inside the header page: the header still starts at the last page
    // boundary, so the reader can tell a truncation.
    assert!(matches!(
        attach_after("truncated", |n| set_len(n, SEGMENT_LEN - 100)),
        Err(Error::Truncated {
            size: 8092,
            needed: SEGMENT_LEN,
            ..
        })
    ));
    // Cut below the header page: nothing left says it was shmpar's.
    assert!(matches!(
        attach_after("tiny", |n| set_len(n, HEADER_PAGE_SIZE as u64 - 1)),
        Err(Error::NotShmpar { .. })
    ));
    // Grown by a page of other bytes: the last page is no header.
    assert!(matches!(
        attach_after("grown", |n| poke(n, SEGMENT_LEN, &[0xA5; HEADER_PAGE_SIZE])),
        Err(Error::NotShmpar { .. })
    ));
    assert!(matches!(
        attach_after("empty", |n| set_len(n, 0)),
        Err(Error::Initializing { .. })
    ));
    // Space reserved, header not yet written: what an attacher racing the
    // creator sees.
    assert!(matches!(
        attach_after("zeroed", |n| poke_header(n, 0, &[0; HEADER_PAGE_SIZE])),
        Err(Error::Initializing { .. })
    ));
}

/// A segment of layout version 1 (header at offset 0, result slots, data
/// from 20480) is refused with a clear error, by attach and by peek alike.
#[test]
fn a_version_1_segment_is_unsupported_not_foreign() {
    use shmpar_core::segment::{Location, peek};
    let name = unique("v1");
    let mut v1 = vec![0u8; 20480 + 240];
    v1[..8].copy_from_slice(&MAGIC);
    v1[8..12].copy_from_slice(&1u32.to_le_bytes()); // layout_version
    v1[12..16].copy_from_slice(&1u32.to_le_bytes()); // state: ready
    v1[16..20].copy_from_slice(&DType::F64.code().to_le_bytes());
    v1[136..140].copy_from_slice(&i32::MAX.to_le_bytes()); // creator_pid: no such process
    std::fs::write(format!("/dev/shm/{name}"), &v1).unwrap();
    let attached = SharedArray::<f64, Ix2>::attach(&name);
    let peeked = peek(&Location::Shm(name.clone()));
    // `shmpar ls` shows it, and gc may take it: its creator is dead.
    let info = shmpar_core::gc::info(&name);
    // A pool starting elsewhere may have collected it already.
    let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    let info = info.expect("listed");
    assert_eq!(info.state, "unsupported: layout version 1");
    assert_eq!((info.creator_pid, info.alive), (i32::MAX, false));
    for result in [attached.map(drop), peeked.map(drop)] {
        match result {
            Err(
                e @ Error::UnsupportedVersion {
                    found: 1,
                    supported: 2,
                    ..
                },
            ) => assert!(e.to_string().contains("layout version 1"), "{e}"),
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
    }
}

/// Layout version 2: the elements from byte 0 (what NumPy's
/// `np.ndarray(shape, dtype, buffer=shm.buf)` and `np.memmap` read), zero
/// padding to a page, and the header in the last 4096 bytes.
#[test]
fn the_data_starts_at_byte_0_and_the_header_ends_the_object() {
    let name = unique("layout");
    let src = arr2(&[[1.5f64, -2.0, 3.25], [4.0, 5.0, 6.0]]);
    let a = SharedArray::from_array_with(&SegmentOptions::new().name(&name), &src).unwrap();
    let bytes = std::fs::read(format!("/dev/shm/{name}")).unwrap();
    assert_eq!(bytes.len() as u64, size_of_segment(&name));
    assert_eq!(bytes.len(), 2 * HEADER_PAGE_SIZE);
    let elements: Vec<f64> = bytes[..48]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(elements, src.iter().copied().collect::<Vec<_>>());
    assert!(
        bytes[48..HEADER_PAGE_SIZE].iter().all(|&b| b == 0),
        "padding is zero"
    );
    let header = &bytes[HEADER_PAGE_SIZE..];
    assert_eq!(header[..8], MAGIC);
    let word = |offset: usize| u64::from_le_bytes(header[offset..offset + 8].try_into().unwrap());
    assert_eq!(
        u32::from_le_bytes(header[8..12].try_into().unwrap()),
        LAYOUT_VERSION
    );
    assert_eq!(word(32), 0, "data_offset");
    assert_eq!(word(40), 48, "data_len");
    assert_eq!(word(48), bytes.len() as u64, "total_len");
    assert_eq!(word(56), HEADER_PAGE_SIZE as u64, "header_offset");
    assert_eq!((word(64), word(72), word(80)), (2, 3, 0), "shape");
    assert_eq!(a.segment().layout().data_offset, 0);
    drop(a);
    assert_gone(&name);
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
fn bad_shapes_are_rejected_without_leaving_anything() {
    let name = unique("badshape");
    assert!(matches!(
        SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(&name), usize::MAX / 4),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        SharedArray::<f64, IxDyn>::create_with(&SegmentOptions::new().name(&name), IxDyn(&[1; 9])),
        Err(Error::InvalidShape { .. })
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
    assert!(a.segment().layout().persistent);
    drop(a);
    assert!(
        SharedArray::<f32, Ix1>::attach(&later)
            .unwrap()
            .segment()
            .layout()
            .persistent
    );
    assert!(exists(&later));
    std::fs::remove_file(format!("/dev/shm/{later}")).unwrap();
}
