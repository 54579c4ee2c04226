//! Fuzzing the header validator with forged segments (issue 6, item 7):
//! real headers (layout version 2: the header page is the object's last
//! 4096 bytes) with fields set to hostile values, bits flipped, the object
//! truncated or extended, and headers of random bytes behind a valid magic.
//! Every attach (`Segment::open`, `SharedArray::from_segment`) and every
//! `segment::peek` must return a typed error or a layout inside the object,
//! and a successful attach must let every element be read.
//!
//! The case count comes from `SHMPAR_FUZZ_CASES` (default 2,000 per test;
//! `scripts/reliability.sh` runs a million).
#![cfg(not(loom))]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use ndarray::IxDyn;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shmpar_core::header::{FIELDS, Field, HEADER_PAGE_SIZE, HEADER_SIZE};
use shmpar_core::segment::{self, Location};
use shmpar_core::{DType, Element, Segment, SegmentOptions, SharedArray};

fn cases() -> u32 {
    std::env::var("SHMPAR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

fn path(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name)
}

/// The bytes of real segments of several dtypes and shapes.
fn models(tag: &str) -> Vec<Vec<u8>> {
    let specs: [(DType, &[usize]); 7] = [
        (DType::F64, &[100, 3]),
        (DType::U8, &[7]),
        (DType::I16, &[]),
        (DType::F32, &[0, 5]),
        (DType::U64, &[2, 3, 4, 5]),
        (DType::I8, &[5000]),
        (DType::U8, &[4096]),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, (dtype, shape))| {
            let name = format!("shmpar_t_fuzzmodel_{tag}_{i}_{}", std::process::id());
            let seg = Segment::create(&SegmentOptions::new().name(&name), *dtype, shape)
                .expect("create a model segment");
            let bytes = std::fs::read(path(&name)).expect("read the model");
            drop(seg);
            bytes
        })
        .collect()
}

fn read_all<T: Element>(segment: Segment) -> Result<(), TestCaseError> {
    let a = SharedArray::<T, IxDyn>::from_segment(segment)
        .map_err(|e| TestCaseError::fail(format!("from_segment after a valid open: {e}")))?;
    let mut n = 0usize;
    for x in a.view().iter() {
        std::hint::black_box(x);
        n += 1;
    }
    prop_assert_eq!(n, a.len());
    Ok(())
}

/// Writes `bytes` as `/dev/shm/NAME`, attaches every way, removes it.
fn check_forgery(name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = std::fs::remove_file(path(name));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path(name))
        .expect("write the forgery");
    f.write_all(bytes).expect("write the forgery");
    drop(f);
    let location = Location::Shm(name.to_owned());
    let peeked = segment::peek(&location);
    let _ = segment::peek_creator(&location);
    let opened = Segment::open(name);
    // A forgery naming a dead creator is an orphan, which a gc running
    // concurrently (other tests, any pool start) may remove: then there is
    // nothing left to compare.
    let gone = |e: Option<&shmpar_core::Error>| matches!(e, Some(shmpar_core::Error::NotFound { .. }));
    if gone(opened.as_ref().err()) || gone(peeked.as_ref().err()) {
        let _ = std::fs::remove_file(path(name));
        return Ok(());
    }
    let result = match opened {
        Ok(seg) => {
            let layout = seg.layout().clone();
            prop_assert!(
                layout.total_len <= bytes.len(),
                "layout {layout:?} beyond {} bytes",
                bytes.len()
            );
            prop_assert!(layout.data_offset + layout.data_len <= bytes.len());
            match &peeked {
                Ok(p) => prop_assert_eq!(p, &layout),
                Err(e) => prop_assert!(false, "open accepted {layout:?}, peek refused: {e}"),
            }
            match seg.dtype() {
                DType::F32 => read_all::<f32>(seg),
                DType::F64 => read_all::<f64>(seg),
                DType::I8 => read_all::<i8>(seg),
                DType::I16 => read_all::<i16>(seg),
                DType::I32 => read_all::<i32>(seg),
                DType::I64 => read_all::<i64>(seg),
                DType::U8 => read_all::<u8>(seg),
                DType::U16 => read_all::<u16>(seg),
                DType::U32 => read_all::<u32>(seg),
                DType::U64 => read_all::<u64>(seg),
                _ => Ok(()),
            }
        }
        Err(e) => {
            // Every error renders, and peek must not accept what open refused.
            let _ = e.to_string();
            if let Ok(layout) = &peeked {
                prop_assert!(false, "peek accepted {layout:?}, open refused: {e}");
            }
            Ok(())
        }
    };
    let _ = std::fs::remove_file(path(name));
    result
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Field(usize, u64),
    Delta(usize, i64),
    Flip(usize, u8),
    Resize(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let value = prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(63),
        Just(64),
        Just(512),
        Just(4095),
        Just(4096),
        Just(u32::MAX as u64),
        Just(u64::MAX),
        Just(1u64 << 40),
        Just(i64::MAX as u64),
        any::<u64>(),
    ];
    let size = prop_oneof![
        0..200_000usize,
        // Whole pages and a page plus or minus a little, where the header's
        // position and the truncation check are most interesting.
        (0..50usize).prop_map(|pages| pages * HEADER_PAGE_SIZE),
        (1..50usize, -300i64..300)
            .prop_map(|(pages, d)| (pages * HEADER_PAGE_SIZE).saturating_add_signed(d as isize)),
    ];
    prop_oneof![
        (0..FIELDS.len(), value).prop_map(|(f, v)| Mutation::Field(f, v)),
        (0..FIELDS.len(), -70i64..70).prop_map(|(f, d)| Mutation::Delta(f, d)),
        (0..HEADER_PAGE_SIZE, 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        size.prop_map(Mutation::Resize),
    ]
}

/// Where a reader looks for the header of `bytes`: its last whole page.
fn header_base(bytes: &[u8]) -> Option<usize> {
    (bytes.len() / HEADER_PAGE_SIZE)
        .checked_sub(1)
        .map(|pages| pages * HEADER_PAGE_SIZE)
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let field = |bytes: &[u8], base: usize, f: usize| {
        let Field { offset, size, .. } = FIELDS[f];
        let mut word = [0u8; 8];
        word[..size].copy_from_slice(&bytes[base + offset..base + offset + size]);
        u64::from_le_bytes(word)
    };
    let set = |bytes: &mut Vec<u8>, base: usize, f: usize, v: u64| {
        let Field { offset, size, .. } = FIELDS[f];
        bytes[base + offset..base + offset + size].copy_from_slice(&v.to_le_bytes()[..size]);
    };
    let base = header_base(bytes);
    match (*m, base) {
        (Mutation::Field(f, v), Some(base)) => set(bytes, base, f, v),
        (Mutation::Delta(f, d), Some(base)) => {
            let v = field(bytes, base, f).wrapping_add(d as u64);
            set(bytes, base, f, v);
        }
        (Mutation::Flip(i, b), Some(base)) => bytes[base + i] ^= 1 << b,
        (Mutation::Resize(len), _) => bytes.resize(len, 0xA5),
        _ => {}
    }
}

#[test]
fn forged_headers_never_give_an_out_of_bounds_view() {
    let models = models("mut");
    let name = format!("shmpar_t_fuzz_mut_{}", std::process::id());
    let strategy = (0..models.len(), proptest::collection::vec(mutation(), 1..4));
    let result = runner().run(&strategy, |(model, mutations)| {
        let mut bytes = models[model].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_forgery(&name, &bytes)
    });
    let _ = std::fs::remove_file(path(&name));
    result.unwrap();
    println!(
        "scenario=fuzz-forged-headers trials={} ok={} leaks=0 zombies=0 hangs=0",
        cases(),
        cases()
    );
}

#[test]
fn random_headers_behind_a_valid_magic_give_typed_errors() {
    let name = format!("shmpar_t_fuzz_rand_{}", std::process::id());
    let strategy = (
        proptest::collection::vec(any::<u8>(), HEADER_SIZE - 8),
        0usize..3,
        any::<bool>(),
        any::<bool>(),
        0usize..18,
    );
    let result = runner().run(&strategy, |(head, dtype_fix, ready, sizes_fix, data_pages)| {
        let mut bytes = vec![0u8; data_pages * HEADER_PAGE_SIZE];
        let base = bytes.len();
        let total = (base + HEADER_PAGE_SIZE) as u64;
        bytes.extend_from_slice(b"SHMPAR\0\0");
        bytes.extend_from_slice(&head);
        bytes.resize(base + HEADER_PAGE_SIZE, 0);
        let mut put =
            |offset: usize, value: &[u8]| bytes[base + offset..][..value.len()].copy_from_slice(value);
        // Steer some cases past the first checks, so the deep ones run.
        put(8, &2u32.to_le_bytes());
        if ready {
            put(12, &1u32.to_le_bytes());
        }
        if dtype_fix > 0 {
            put(16, &(dtype_fix as u32).to_le_bytes());
            put(20, &(4 * dtype_fix as u32).to_le_bytes());
            put(28, &1u32.to_le_bytes());
        }
        if sizes_fix {
            put(32, &0u64.to_le_bytes());
            put(48, &total.to_le_bytes());
            put(56, &(total - HEADER_PAGE_SIZE as u64).to_le_bytes());
            put(132, &(HEADER_PAGE_SIZE as u32).to_le_bytes());
        }
        check_forgery(&name, &bytes)
    });
    let _ = std::fs::remove_file(path(&name));
    result.unwrap();
    println!(
        "scenario=fuzz-random-headers trials={} ok={} leaks=0 zombies=0 hangs=0",
        cases(),
        cases()
    );
}

/// Found by the fuzz test above: a header whose shape has a zero-length
/// axis and one longer than `isize::MAX` (`[0, u64::MAX]`) passes
/// validation (0 elements, 0 bytes) but `view()` then panics inside
/// ndarray ("ShapeError/Overflow: arithmetic overflow",
/// `impl_raw_views.rs:82`): ndarray requires every axis, and the product
/// of the *non-zero* axis lengths, to fit in `isize`. The validator must refuse such shapes with a typed error.
#[test]
fn a_zero_length_axis_beside_a_huge_axis_is_refused_not_a_panic() {
    let name = format!("shmpar_t_fuzz_zeroaxis_{}", std::process::id());
    let seg = Segment::create(&SegmentOptions::new().name(&name), DType::F32, &[0, 5]).expect("create");
    let mut bytes = std::fs::read(path(&name)).expect("read");
    drop(seg);
    let shape1 = bytes.len() - HEADER_PAGE_SIZE + 72;
    bytes[shape1..shape1 + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let forged = format!("{name}_forged");
    std::fs::write(path(&forged), &bytes).expect("write");
    let result = std::panic::catch_unwind(|| {
        let a = SharedArray::<f32, IxDyn>::attach(&forged);
        a.map(|a| a.view().len())
    });
    let _ = std::fs::remove_file(path(&forged));
    match result {
        Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("the forged shape [0, u64::MAX] was accepted (view of {n} elements)"),
        Err(_) => panic!("attaching or viewing the forged shape [0, u64::MAX] panicked"),
    }
}
