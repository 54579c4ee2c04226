//! The segment lifecycle from Python: `shmpar.ls()`, `shmpar.gc()` and
//! `shmpar.Scope`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use shmpar_core::DType;
use shmpar_core::gc::{SegmentInfo, collect, list};
use shmpar_core::segment::{self, Location};

use crate::array::{SharedArray, numpy_name};

/// One segment as a dict: `name`, `dtype` (a NumPy name such as
/// `"float64"`, or None while initializing or when unreadable), `shape`
/// (a tuple), `bytes`, `creator_pid` (0 if unknown), `alive` (whether a
/// process holds it: its creator or an attacher, or it cannot be told),
/// `persistent`, and `state` (`"ready"`, `"initializing"`, `"corrupt:
/// ..."`, `"unsupported: layout version N"`).
fn info_dict<'py>(py: Python<'py>, info: &SegmentInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("name", &info.name)?;
    let dtype = info.dtype.as_deref().and_then(DType::parse).map(numpy_name);
    dict.set_item("dtype", dtype)?;
    dict.set_item("shape", PyTuple::new(py, &info.shape)?)?;
    dict.set_item("bytes", info.bytes)?;
    dict.set_item("creator_pid", info.creator_pid)?;
    dict.set_item("alive", info.alive)?;
    dict.set_item("persistent", info.persistent)?;
    dict.set_item("state", &info.state)?;
    Ok(dict)
}

/// Every shmpar segment in `/dev/shm`, sorted by name, as a list of dicts
/// with `name`, `dtype`, `shape`, `bytes`, `creator_pid`, `alive`,
/// `persistent` and `state`: what `shmpar ls` prints.
#[pyfunction]
pub(crate) fn ls(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let list = py.detach(list);
    list.iter().map(|info| info_dict(py, info)).collect()
}

/// Removes every shmpar segment that no process holds (never one that its
/// creator or an attacher holds, nor one its creator persisted on purpose)
/// and returns them as `ls` describes them; with `dry_run=True` only lists
/// them. What `shmpar gc` does.
#[pyfunction]
#[pyo3(signature = (dry_run = false))]
pub(crate) fn gc(py: Python<'_>, dry_run: bool) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let removed = py.detach(|| collect(dry_run));
    removed.iter().map(|info| info_dict(py, info)).collect()
}

/// Removes the segments that process `pid` created and that nobody holds
/// any more: after the package had to kill one of its own helper processes
/// (its pool's control segment). Returns how many it removed.
#[pyfunction]
pub(crate) fn _remove_orphans_of(py: Python<'_>, pid: i32) -> usize {
    py.detach(|| {
        list()
            .into_iter()
            .filter(|info| info.creator_pid == pid && !info.alive)
            .filter(|info| {
                let path = Path::new("/dev/shm").join(&info.name);
                let Ok(meta) = std::fs::metadata(path) else {
                    return false;
                };
                let location = Location::Shm(info.name.clone());
                matches!(segment::unlink_if(&location, (meta.dev(), meta.ino())), Ok(true))
            })
            .count()
    })
}

/// The counterpart of `multiprocessing.managers.SharedMemoryManager`: a
/// context manager that removes every array created through it (or
/// `adopt`ed) when it exits, exception or not, or when `close()` is called.
/// Views that still exist stay valid; only the names go.
///
/// ```python
/// with shmpar.Scope() as scope:
///     a = scope.create((1000, 3), "float64")
///     ...
/// # a's segment is gone from /dev/shm here
/// ```
#[pyclass(frozen, module = "shmpar", name = "Scope")]
pub(crate) struct Scope {
    owned: Mutex<Vec<(Location, (u64, u64))>>,
    /// The process that made the scope: a forked copy of it (a child that
    /// leaves the `with` block too) removes nothing of its parent's.
    owner: i32,
}

impl Scope {
    fn owned(&self) -> std::sync::MutexGuard<'_, Vec<(Location, (u64, u64))>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl Scope {
    /// An empty scope.
    #[new]
    fn new() -> Scope {
        Scope {
            owned: Mutex::new(Vec::new()),
            owner: std::process::id() as i32,
        }
    }

    /// Creates a zero-filled array, as `SharedArray.create`, that this
    /// scope removes when it exits.
    #[pyo3(signature = (shape, dtype = None))]
    fn create(
        &self,
        py: Python<'_>,
        shape: &Bound<'_, PyAny>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SharedArray> {
        let array = SharedArray::new_array(py, shape, dtype)?;
        self.owned().push(array.ownership());
        Ok(array)
    }

    /// Makes this scope remove `array`'s segment when it exits.
    fn adopt(&self, array: &SharedArray) {
        self.owned().push(array.ownership());
    }

    /// Removes every segment the scope owns now (only the objects it
    /// created: a namesake made since is left alone). Idempotent; in a
    /// forked copy of the process that made the scope, does nothing.
    fn close(&self) {
        if std::process::id() as i32 != self.owner {
            return;
        }
        let owned = std::mem::take(&mut *self.owned());
        for (location, identity) in owned {
            let _ = segment::unlink_if(&location, identity);
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Removes the arrays; never swallows the exception that ended the
    /// `with` block.
    fn __exit__(
        &self,
        _kind: Option<&Bound<'_, PyAny>>,
        _value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        self.close();
        false
    }

    /// Number of segments the scope owns.
    fn __len__(&self) -> usize {
        self.owned().len()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.close();
    }
}
