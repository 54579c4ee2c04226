//! Hostile input: bad names, segments written by other programs, and
//! forged headers. Every attach must give a typed error or a view whose
//! every element can be read.
//!
//! Layout version 2 keeps the header in the object's last 4 KiB
//! (`docs/segment-layout.md`), so forgeries poke [`FIELDS`] at offsets
//! from there, and foreign objects carry their fake header there.

use std::path::Path;
use std::process::Command;

use ndarray::{Ix1, IxDyn};
use shmpar::core::header::{FIELDS, Field, HEADER_PAGE_SIZE};
use shmpar::core::segment::{self, Location};
use shmpar::core::{Element, Error as CoreError};
use shmpar::{DType, Segment, SegmentOptions, SharedArray};

use crate::Args;
use crate::common::{Rng, Tally, prefix};

fn shm(name: &str) -> std::path::PathBuf {
    Path::new("/dev/shm").join(name)
}

/// Reads every element of the segment's array through a typed view.
fn read_all<T: Element>(segment: Segment) -> Result<u64, String> {
    let a = SharedArray::<T, IxDyn>::from_segment(segment).map_err(|e| format!("from_segment: {e}"))?;
    let mut count = 0u64;
    for x in a.view().iter() {
        std::hint::black_box(x);
        count += 1;
    }
    if count as usize != a.len() {
        return Err(format!("read {count} elements of {}", a.len()));
    }
    Ok(count)
}

fn read_any(segment: Segment) -> Result<u64, String> {
    match segment.dtype() {
        DType::F32 => read_all::<f32>(segment),
        DType::F64 => read_all::<f64>(segment),
        DType::I8 => read_all::<i8>(segment),
        DType::I16 => read_all::<i16>(segment),
        DType::I32 => read_all::<i32>(segment),
        DType::I64 => read_all::<i64>(segment),
        DType::U8 => read_all::<u8>(segment),
        DType::U16 => read_all::<u16>(segment),
        DType::U32 => read_all::<u32>(segment),
        DType::U64 => read_all::<u64>(segment),
        other => Err(format!("unknown dtype {other:?}")),
    }
}

/// Attaches to `name` (an object of `size` bytes) every way there is;
/// `Ok(true)` if it attached. An attach that succeeds must agree with
/// `peek` and read in bounds. (A forgery that names a dead creator is an
/// orphan: a concurrent gc may remove it at any moment, so the size comes
/// from the caller, not from the file system.)
fn attach_every_way(name: &str, size: usize) -> Result<bool, String> {
    let caught = std::panic::catch_unwind(|| -> Result<bool, String> {
        let peeked = segment::peek(&Location::Shm(name.to_owned()));
        let _ = segment::peek_creator(&Location::Shm(name.to_owned()));
        let _ = shmpar::gc::info(name);
        let _ = SharedArray::<f64, Ix1>::attach(name);
        match Segment::open(name) {
            Ok(seg) => {
                let layout = seg.layout().clone();
                if seg.layout().total_len > size {
                    return Err("a layout larger than the object was accepted".into());
                }
                match &peeked {
                    Ok(p) if *p == layout => {}
                    other => return Err(format!("open accepted {layout:?} but peek said {other:?}")),
                }
                read_any(seg)?;
                Ok(true)
            }
            Err(e) => {
                let _ = e.to_string();
                Ok(false)
            }
        }
    });
    caught.unwrap_or_else(|_| Err("attaching panicked".into()))
}

fn write_file(name: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm(name))
        .map_err(|e| format!("write {name}: {e}"))?;
    f.write_all(bytes).map_err(|e| e.to_string())
}

fn bad_names(prefix: &str) -> Result<(), String> {
    let long = "x".repeat(300);
    let bad = ["a/b", "..", ".", "", "a\0b", &long, "/", "//x", "../etc/passwd"];
    for name in bad {
        let invalid = |r: Result<(), CoreError>| matches!(r, Err(CoreError::InvalidName { .. }));
        let create = SharedArray::<f64, Ix1>::create_with(&SegmentOptions::new().name(name), 4).map(|_| ());
        let checks = [
            ("create", invalid(create)),
            ("open", invalid(Segment::open(name).map(|_| ()))),
            (
                "attach",
                invalid(SharedArray::<f64, Ix1>::attach(name).map(|_| ())),
            ),
            (
                "peek",
                invalid(segment::peek(&Location::Shm(name.to_owned())).map(|_| ())),
            ),
            ("Location::shm", invalid(Location::shm(name).map(|_| ()))),
        ];
        if let Some((what, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(format!("{what} of the name {name:?} was not rejected as invalid"));
        }
    }
    // 255 bytes is the limit, and is accepted.
    let max = format!("{prefix}{}", "y".repeat(255 - prefix.len()));
    let a = SharedArray::<u8, Ix1>::create_with(&SegmentOptions::new().name(&max), 10)
        .map_err(|e| format!("a 255-byte name: {e}"))?;
    drop(a);
    Ok(())
}

fn python() -> Option<String> {
    if let Ok(p) = std::env::var("SHMPAR_PYTHON") {
        return Some(p);
    }
    for p in [
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"),
        "python3",
    ] {
        if Command::new(p)
            .arg("-c")
            .arg("pass")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(p.to_owned());
        }
    }
    None
}

/// Segments made by other programs: raw files, and Python's
/// `multiprocessing.shared_memory`, some with a copied shmpar header.
fn foreign(prefix: &str, rng: &mut Rng) -> Result<String, String> {
    let real = Segment::create(
        &SegmentOptions::new().name(&format!("{prefix}model")),
        DType::F64,
        &[100, 3],
    )
    .map_err(|e| e.to_string())?;
    let model = std::fs::read(shm(&real.name())).map_err(|e| e.to_string())?;
    drop(real);
    // The model's header page: its last 4 KiB.
    let header = model.len() - HEADER_PAGE_SIZE;
    if header == 0 || model[header..header + 8] != *b"SHMPAR\0\0" {
        return Err(format!(
            "the model segment of {} bytes has no header in its last page",
            model.len()
        ));
    }
    let mut random = vec![0u8; 70_000];
    random.iter_mut().for_each(|b| *b = rng.next() as u8);
    // One page: its header page is the whole object.
    let mut magic_garbage = random[..4096].to_vec();
    magic_garbage[..8].copy_from_slice(b"SHMPAR\0\0");
    // Garbage data, then a page of garbage that starts with the magic.
    let mut magic_garbage_last_page = random[..12_288].to_vec();
    magic_garbage_last_page[8192..8200].copy_from_slice(b"SHMPAR\0\0");
    let mut header_first = model[header..].to_vec();
    header_first.extend_from_slice(&model[..header]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("tiny", random[..100].to_vec()),
        ("magic-only", b"SHMPAR\0\0".to_vec()),
        ("magic-garbage", magic_garbage),
        ("magic-garbage-last-page", magic_garbage_last_page),
        ("zeros", vec![0; 1 << 20]),
        // The header page cut short: no full page, no header.
        ("header-truncated", model[header..header + 300].to_vec()),
        // One byte short: the last 4 KiB start one byte into the data.
        ("one-byte-short", model[..model.len() - 1].to_vec()),
        // The header page alone, its data gone: it claims more bytes.
        ("header-only", model[header..].to_vec()),
        // A version-1 reader's layout: the header first, the data after.
        ("header-first", header_first),
        ("data-only", model[..header].to_vec()),
        ("intact-copy", model.clone()),
    ];
    let mut attached = Vec::new();
    for (what, bytes) in &cases {
        let name = format!("{prefix}raw_{what}");
        write_file(&name, bytes)?;
        let r = attach_every_way(&name, bytes.len());
        let _ = std::fs::remove_file(shm(&name));
        if r.map_err(|e| format!("{what}: {e}"))? {
            attached.push(*what);
        }
    }
    if attached != ["intact-copy"] {
        return Err(format!(
            "attached to {attached:?}; only the intact copy should attach"
        ));
    }
    // Python's shared_memory, as a NumPy user would create it.
    let Some(py) = python() else {
        return Ok("python=absent".into());
    };
    let script = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
name, size, at, head = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
shm = shared_memory.SharedMemory(name=name, create=True, size=size)
shm.buf[at:at + len(head)] = head
try:
    resource_tracker.unregister(shm._name, "shared_memory")
except Exception:
    pass
shm.close()
"#;
    // The model's header claiming a terabyte of data.
    let data_len = field_offset("data_len")?;
    let mut forged_header = model[header..header + 512].to_vec();
    forged_header[data_len..data_len + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    // (name, object size, where the bytes go, the bytes): every one but
    // the first puts a (fake) header where a reader looks, the last page.
    let pycases: Vec<(&str, usize, usize, Vec<u8>)> = vec![
        ("py-plain", 4096, 0, b"hello from python".to_vec()),
        ("py-magic", 8192, 4096, magic_bytes(&random[..600])),
        // The model's header (of an 8 KiB segment) in a 4 KiB object.
        ("py-copied-header", 4096, 0, model[header..header + 512].to_vec()),
        ("py-huge-claim", 8192, 4096, forged_header),
    ];
    for (what, size, at, head) in pycases {
        let name = format!("{prefix}{what}");
        let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
        let out = Command::new(&py)
            .args(["-c", script, &name, &size.to_string(), &at.to_string(), &hex])
            .output()
            .map_err(|e| format!("python: {e}"))?;
        if !out.status.success() {
            return Err(format!("python failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let r = attach_every_way(&name, size);
        let _ = std::fs::remove_file(shm(&name));
        if r.map_err(|e| format!("{what}: {e}"))? {
            return Err(format!("attached to the Python segment {what}"));
        }
    }
    Ok(format!("python={py}"))
}

/// The offset of the header field `name` from the start of the header.
fn field_offset(name: &str) -> Result<usize, String> {
    FIELDS
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.offset)
        .ok_or_else(|| format!("no header field {name} in FIELDS"))
}

fn magic_bytes(rest: &[u8]) -> Vec<u8> {
    let mut v = rest.to_vec();
    v[..8].copy_from_slice(b"SHMPAR\0\0");
    v
}

/// One random forgery of a real segment's bytes: header fields set to
/// interesting values, bits flipped in the header, the object resized (which
/// moves where a reader looks for the header).
fn forge(rng: &mut Rng, model: &[u8]) -> Vec<u8> {
    let mut bytes = model.to_vec();
    // The model's header, in its last page.
    let header = model.len().saturating_sub(HEADER_PAGE_SIZE);
    for _ in 0..1 + rng.below(3) {
        match rng.below(4) {
            0 | 1 if bytes.len() >= header + 512 => {
                let Field { offset, size, .. } = FIELDS[rng.below(FIELDS.len() as u64) as usize];
                let off = header + offset;
                let old = if size == 4 {
                    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default()) as u64
                } else {
                    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap_or_default())
                };
                let interesting = [
                    0,
                    1,
                    2,
                    8,
                    63,
                    64,
                    512,
                    4096,
                    4095,
                    old.wrapping_add(1),
                    old.wrapping_sub(1),
                    old.wrapping_mul(2),
                    old / 2,
                    u32::MAX as u64,
                    u64::MAX,
                    1 << 40,
                    rng.next(),
                ];
                let v = interesting[rng.below(interesting.len() as u64) as usize];
                bytes[off..off + size].copy_from_slice(&v.to_le_bytes()[..size]);
            }
            2 if bytes.len() > header => {
                let i = header + rng.below((bytes.len() - header).min(512) as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            _ => {
                let len = rng.below(model.len() as u64 + 8192) as usize;
                bytes.resize(len, rng.next() as u8);
            }
        }
    }
    bytes
}

/// Issue 6.7 (the process-level part; `core/tests/fuzz_header.rs` is the
/// proptest over millions of headers).
pub fn run(args: &Args) -> Tally {
    let trials = args.num("trials", 200);
    let mut rng = Rng::new(args.num("seed", 7));
    let prefix = prefix("hostile");
    let mut tally = Tally::new("hostile");
    let r = bad_names(&prefix).and_then(|()| tally.after_trial(&prefix));
    tally.trial("bad names", r);
    let r = foreign(&prefix, &mut rng).map(|detail| tally.extra("foreign", detail.replace(' ', "_")));
    let r = r.and_then(|()| tally.after_trial(&prefix));
    tally.trial("foreign segments", r);
    let mut attached = 0;
    let dtypes = DType::ALL;
    for t in 0..trials {
        let dtype = dtypes[rng.below(dtypes.len() as u64) as usize];
        let ndim = rng.below(4) as usize;
        let shape: Vec<usize> = (0..ndim).map(|_| rng.below(40) as usize).collect();
        let outcome = (|| -> Result<(), String> {
            let opts = SegmentOptions::new().name(&format!("{prefix}src"));
            let real = Segment::create(&opts, dtype, &shape)
                .map_err(|e| format!("model {dtype:?} {shape:?}: {e}"))?;
            let model = std::fs::read(shm(&real.name())).map_err(|e| e.to_string())?;
            drop(real);
            let forged = forge(&mut rng, &model);
            let name = format!("{prefix}forged");
            write_file(&name, &forged)?;
            let r = attach_every_way(&name, forged.len());
            let _ = std::fs::remove_file(shm(&name));
            if r? {
                attached += 1;
            }
            Ok(())
        })();
        let outcome = outcome.and_then(|()| {
            if t % 50 == 0 {
                tally.after_trial(&prefix)
            } else {
                Ok(())
            }
        });
        tally.trial(&format!("forgery {t}"), outcome);
    }
    let r = tally.after_trial(&prefix);
    tally.trial("nothing left", r);
    tally.extra("forgeries_attached", attached);
    tally
}
