//! Proof that the layout is real: a Python process with NumPy attaches to a
//! shmpar array by name with `multiprocessing.shared_memory`, reads shape
//! and dtype from the header as `docs/segment-layout.md` describes, changes
//! the data, and this process sees the change. The segment survives the
//! Python process's exit (its resource tracker must not unlink it).
//!
//! Needs a Python with NumPy: `scripts/test.sh` installs one and passes it
//! in `SHMPAR_PYTHON`.
#![cfg(not(loom))]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{assert_gone, exists, unique};
use ndarray::{Array2, Ix2};
use shmpar_core::{SegmentOptions, SharedArray};

fn python() -> PathBuf {
    let from_env = std::env::var_os("SHMPAR_PYTHON").map(PathBuf::from);
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    from_env.or_else(|| venv.exists().then_some(venv)).expect(
        "this test needs a Python with NumPy: run scripts/test.sh (it installs one) or set SHMPAR_PYTHON",
    )
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
fn numpy_attaches_by_name_and_its_writes_are_seen() {
    let name = unique("numpy");
    let source = Array2::from_shape_fn((1000, 3), |(i, j)| (i * 3 + j) as f64);
    let a = SharedArray::from_array_with(&SegmentOptions::new().name(&name), &source).unwrap();
    let python_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../python");
    let out = Command::new(python())
        .args(["-c", SCRIPT, &name, python_dir.to_str().unwrap()])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("<f8 (1000, 3) {:?}", source.sum()));
    let expected = source.mapv(|x| 2.0 * x);
    assert_eq!(a.view()[[0, 0]], -1.0);
    assert_eq!(
        a.view().as_slice().unwrap()[1..],
        expected.as_slice().unwrap()[1..]
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "python warned (resource tracker?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(exists(&name), "Python's exit must not unlink the segment");
    let again = SharedArray::<f64, Ix2>::attach(&name).unwrap();
    assert_eq!(again.view()[[999, 2]], 2.0 * 2999.0);
    drop((a, again));
    assert_gone(&name);
}

#[test]
fn numpy_reads_every_dtype_and_rank() {
    let python_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../python");
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
    let out = Command::new(python())
        .args(["-c", script, &name, python_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "<i2 (2, 3, 4) 123",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(a);
    assert_gone(&name);
}
