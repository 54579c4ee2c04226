//! Proof that the layout is real: a Python process with NumPy attaches to a
//! shmpar array by name with `multiprocessing.shared_memory`, with nothing
//! but the seed article's two lines (`np.ndarray(shape, dtype=dtype,
//! buffer=shm.buf)`: the data starts at byte 0) or through
//! `python/shmpar_numpy.py`, which reads shape and dtype from the header as
//! `docs/segment-layout.md` describes; `np.memmap` opens a file-backed
//! array directly. Python's writes are seen here, and the segment survives
//! the Python process's exit (its resource tracker must not unlink it).
//!
//! These tests need a Python with NumPy, so they are `#[ignore]`d: plain
//! `cargo test --workspace` passes on a fresh clone. `scripts/test.sh`
//! installs one and runs them with `-- --ignored` and `SHMPAR_PYTHON` set;
//! by hand: `SHMPAR_PYTHON=$(scripts/setup-python.sh) cargo test -p
//! shmpar-tests-integration --test numpy_interop -- --ignored`.
#![cfg(not(loom))]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{assert_gone, exists, unique};
use ndarray::{Array1, Array2, Ix1};
use shmpar_core::{SegmentOptions, SharedArray};

fn python() -> PathBuf {
    let from_env = std::env::var_os("SHMPAR_PYTHON").map(PathBuf::from);
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    from_env.or_else(|| venv.exists().then_some(venv)).expect(
        "this test needs a Python with NumPy: run scripts/test.sh (it installs one) or set SHMPAR_PYTHON",
    )
}

fn python_dir() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../python")
        .to_str()
        .expect("a UTF-8 path")
        .to_owned()
}

/// Runs `script` with `args` (as `sys.argv[1..]`); fails the test unless it
/// succeeds without a word on stderr (a resource-tracker warning included).
fn run_python(script: &str, args: &[&str]) -> Output {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python failed: {}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.is_empty(), "python warned (resource tracker?): {stderr}");
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const SCRIPT: &str = r#"
import sys
sys.path.insert(0, sys.argv[2])
from shmpar_numpy import attach
with attach(sys.argv[1]) as a:
    print(a.dtype.str, a.shape, float(a.sum()))
    a *= 2
    a[0, 0] = -1
"#;

#[test]
#[ignore = "needs Python with NumPy: scripts/test.sh runs it"]
fn numpy_attaches_by_name_and_its_writes_are_seen() {
    let name = unique("numpy");
    let source = Array2::from_shape_fn((1000, 3), |(i, j)| (i * 3 + j) as f64);
    let a = SharedArray::from_array_with(&SegmentOptions::new().name(&name), &source).unwrap();
    let out = run_python(SCRIPT, &[&name, &python_dir()]);
    assert_eq!(stdout(&out), format!("<f8 (1000, 3) {:?}", source.sum()));
    let expected = source.mapv(|x| 2.0 * x);
    assert_eq!(a.view()[[0, 0]], -1.0);
    assert_eq!(
        a.view().as_slice().unwrap()[1..],
        expected.as_slice().unwrap()[1..]
    );
    assert!(exists(&name), "Python's exit must not unlink the segment");
    assert_eq!(a.view()[[999, 2]], 2.0 * 2999.0);
    drop(a);
    assert_gone(&name);
}

#[test]
#[ignore = "needs Python with NumPy: scripts/test.sh runs it"]
fn numpy_reads_every_dtype_and_rank() {
    let name = unique("numpy_i16");
    let a = SharedArray::from_array_with(
        &SegmentOptions::new().name(&name),
        &ndarray::Array3::<i16>::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as i16),
    )
    .unwrap();
    let script = r#"
import sys
sys.path.insert(0, sys.argv[2])
from shmpar_numpy import attach
with attach(sys.argv[1]) as a:
    print(a.dtype.str, a.shape, int(a[1, 2, 3]))
"#;
    let out = run_python(script, &[&name, &python_dir()]);
    assert_eq!(stdout(&out), "<i2 (2, 3, 4) 123");
    drop(a);
    assert_gone(&name);
}

/// The seed article's child, verbatim but for the resource-tracker line
/// every attacher needs (see `docs/segment-layout.md`): shape and dtype
/// known in advance, no header read, no offset. It must see exactly the
/// elements, and its writes must land in them.
#[test]
#[ignore = "needs Python with NumPy: scripts/test.sh runs it"]
fn the_seed_articles_child_code_sees_exactly_the_elements() {
    let name = unique("numpy_seed");
    let source = Array2::from_shape_fn((1000, 3), |(i, j)| (i * 3 + j) as f64 + 0.5);
    let a = SharedArray::from_array_with(&SegmentOptions::new().name(&name), &source).unwrap();
    let script = r#"
import sys
import numpy as np
from multiprocessing import shared_memory, resource_tracker
NAME = sys.argv[1]
shape = (1000, 3)
dtype = np.float64

shm = shared_memory.SharedMemory(name=NAME)
arr = np.ndarray(shape, dtype=dtype, buffer=shm.buf)
resource_tracker.unregister(shm._name, "shared_memory")  # shmpar owns the segment

expected = np.arange(3000, dtype=np.float64).reshape(shape) + 0.5
print(bool(np.array_equal(arr, expected)), arr.shape, arr.dtype.str, float(arr[-1, -1]))
arr[:, 1] = -arr[:, 1]
del arr
shm.close()
"#;
    let out = run_python(script, &[&name]);
    assert_eq!(stdout(&out), "True (1000, 3) <f8 2999.5");
    for ((i, j), &x) in a.view().indexed_iter() {
        let want = if j == 1 { -source[[i, j]] } else { source[[i, j]] };
        assert_eq!(x, want, "element [{i}, {j}]");
    }
    assert!(exists(&name), "Python's exit must not unlink the segment");
    drop(a);
    assert_gone(&name);
}

/// A file-backed array is a file NumPy maps directly: `np.memmap(path,
/// dtype, shape=shape)`, and `shmpar_numpy.open_file` reads the shape and
/// dtype from the header for it.
#[test]
#[ignore = "needs Python with NumPy: scripts/test.sh runs it"]
fn numpy_memmaps_a_file_backed_array() {
    let dir = std::env::temp_dir().join(unique("numpy_files"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.shm");
    let source = Array1::from_shape_fn(5000, |i| i as u32 * 7);
    let created =
        SharedArray::from_array_with(&SegmentOptions::new().file(&path).persist(true), &source).unwrap();
    drop(created);
    let script = r#"
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from shmpar_numpy import open_file
plain = np.memmap(sys.argv[1], dtype=np.uint32, shape=(5000,))
print(bool(np.array_equal(plain, np.arange(5000, dtype=np.uint32) * 7)), end=" ")
del plain
arr = open_file(sys.argv[1])
print(arr.dtype.str, arr.shape, int(arr[4999]))
arr[0] = 12345
arr.flush()
del arr
"#;
    let out = run_python(script, &[path.to_str().unwrap(), &python_dir()]);
    assert_eq!(stdout(&out), "True <u4 (5000,) 34993");
    let a = SharedArray::<u32, Ix1>::attach_file(&path).unwrap();
    assert_eq!(a.view()[0], 12345);
    assert_eq!(a.view()[4999], 34993);
    drop(a);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The reference reader refuses what is not a ready version 2 segment.
#[test]
#[ignore = "needs Python with NumPy: scripts/test.sh runs it"]
fn the_reference_reader_refuses_a_version_1_segment() {
    let name = unique("numpy_v1");
    let mut v1 = vec![0u8; 20480 + 8];
    v1[..8].copy_from_slice(&shmpar_core::header::MAGIC);
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(format!("/dev/shm/{name}"), &v1).unwrap();
    let script = r#"
import sys
sys.path.insert(0, sys.argv[2])
from shmpar_numpy import attach
try:
    with attach(sys.argv[1]) as a:
        print("attached")
except ValueError as e:
    print("refused:", e)
"#;
    let out = run_python(script, &[&name, &python_dir()]);
    std::fs::remove_file(format!("/dev/shm/{name}")).unwrap();
    assert!(
        stdout(&out).starts_with("refused: segment has layout version 1"),
        "{}",
        stdout(&out)
    );
}

/// Issue 10.9: a NumPy view kept after `shmpar_numpy.attach()`'s block
/// stays valid (the mapping is the array's base, nothing closes it), even
/// after the creator unlinked the segment; before, Python segfaulted.
#[test]
#[ignore = "needs Python with NumPy: scripts/test.sh runs it"]
fn a_numpy_view_outlives_the_attach_block() {
    let name = unique("numpy_view");
    let a = SharedArray::from_array_with(
        &SegmentOptions::new().name(&name),
        &Array1::from_iter((0..1000).map(f64::from)),
    )
    .unwrap();
    let script = r#"
import gc, sys, time
sys.path.insert(0, sys.argv[2])
from shmpar_numpy import attach
with attach(sys.argv[1]) as a:
    kept = a[10:20]
del a
gc.collect()
print(float(kept.sum()))
sys.stdout.flush()
sys.stdin.readline()          # the creator unlinks the segment meanwhile
gc.collect()
print(float(kept.sum()))
"#;
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .args([name.as_str(), python_dir().as_str()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).expect("first line");
    assert_eq!(first.trim(), "145.0");
    drop(a);
    assert_gone(&name);
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\n")
        .expect("write");
    let mut second = String::new();
    std::io::BufRead::read_line(&mut out, &mut second).expect("second line");
    let status = child.wait().expect("wait");
    assert!(status.success(), "python ended with {status}");
    assert_eq!(second.trim(), "145.0");
}
