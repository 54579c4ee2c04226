//! # shmpar-python
//!
//! The extension module `shmpar._shmpar` behind the Python package
//! `shmpar` (`python/shmpar/`): NumPy arrays in named shared memory
//! (`array.rs`), the catalog's Rust kernels run by a pool of
//! worker processes (`kernels.rs`), the in-segment barrier that Python
//! workers meet at (`control.rs`), and the segment lifecycle (`ls`, `gc`,
//! `Scope`, in `segments.rs`). The Python half (`shmpar/_pool.py`,
//! `shmpar/_worker.py`) starts and supervises the processes; this crate
//! does everything that touches shared memory. `docs/python.md` is the
//! user's guide.
//!
//! Nothing here is used from Rust: the crate is a `cdylib` loaded by
//! Python, and its tests are the pytest suite in `python/tests/`.

mod array;
mod control;
mod errors;
mod kernels;
mod os;
mod segments;

use pyo3::prelude::*;

/// Splits `rows` rows into `parts` balanced chunks and returns chunk
/// `index` as `(start, end)`: the same split as the Rust pool's, so a
/// Python kernel and a Rust kernel on the same pool see the same rows.
#[pyfunction]
fn chunk_range(rows: usize, parts: usize, index: usize) -> PyResult<(usize, usize)> {
    if parts == 0 || index >= parts {
        return Err(errors::Error::new_err(format!(
            "chunk {index} of {parts} does not exist"
        )));
    }
    let range = shmpar_core::chunk::chunk_range(rows, parts, index);
    Ok((range.start, range.end))
}

/// Asks for SIGTERM when the parent process dies, and exits at once if it
/// already has: for a worker process, first thing. SIGTERM, so that
/// shmpar's handler removes any array a function created in the worker
/// before the worker dies (Python leaves SIGTERM at its default: death).
#[pyfunction]
fn _die_with_parent(parent: i32) {
    os::die_with_parent(parent, libc::SIGTERM);
}

/// Unlinks every shared-memory segment this process created and still
/// owns: the package registers it with `atexit`, so a program that ends
/// while arrays are still referenced leaves nothing in `/dev/shm`.
#[pyfunction]
fn _cleanup_now() {
    shmpar_core::cleanup_now();
}

/// In a child forked by `os.fork`: this process owns none of the segments
/// its parent created, so its `atexit` cleanup must not unlink them; and
/// it may attach its parent's arrays afresh by name (as `multiprocessing`
/// children with the fork start do).
#[pyfunction]
fn _forget_owned() {
    shmpar_core::cleanup::forget_registered();
    // SAFETY: in this package no Rust reference outlives a call: `.array`
    // views are NumPy arrays over the mapping, and the Rust kernels run in
    // the kernel server, never in a user's process; so a handle inherited
    // from the parent and a new one of the same object never alias Rust
    // references.
    unsafe { shmpar_core::segment::forget_inherited_handles() };
}

/// Marks this process (a pool's Python worker) as importing the main
/// module of the program it serves, or done with it: meanwhile creating an
/// array or a pool is an error that names the missing `__main__` guard.
#[pyfunction]
fn _set_bootstrapping(on: bool) {
    array::BOOTSTRAPPING.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process is a pool's Python worker importing the main
/// module (see `_set_bootstrapping`); the message to raise if so.
#[pyfunction]
fn _bootstrapping() -> Option<&'static str> {
    array::BOOTSTRAPPING
        .load(std::sync::atomic::Ordering::Relaxed)
        .then_some(array::BOOTSTRAP_MESSAGE)
}

/// Whether `name` (as `multiprocessing.shared_memory` spells it, with or
/// without its leading `/`) names a shmpar segment now: a regular file in
/// `/dev/shm` whose last page holds a shmpar header. Reads it with
/// `pread`, never maps it, never waits.
#[pyfunction]
fn _is_shmpar_segment(name: &str) -> bool {
    let name = name.strip_prefix('/').unwrap_or(name);
    shmpar_core::Location::shm(name)
        .ok()
        .is_some_and(|location| shmpar_core::segment::peek_creator(&location).is_some())
}

/// The module `shmpar._shmpar`.
#[pymodule]
fn _shmpar(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<errors::Error>())?;
    m.add("WorkerFailed", py.get_type::<errors::WorkerFailed>())?;
    m.add("_ServerStopped", py.get_type::<errors::ServerStopped>())?;
    m.add_class::<array::SharedArray>()?;
    m.add_class::<segments::Scope>()?;
    m.add_class::<control::Control>()?;
    m.add_class::<kernels::KernelClient>()?;
    m.add_function(wrap_pyfunction!(segments::ls, m)?)?;
    m.add_function(wrap_pyfunction!(segments::gc, m)?)?;
    m.add_function(wrap_pyfunction!(segments::_remove_orphans_of, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::_serve_kernels, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::check_spec, m)?)?;
    m.add_function(wrap_pyfunction!(chunk_range, m)?)?;
    m.add_function(wrap_pyfunction!(_die_with_parent, m)?)?;
    m.add_function(wrap_pyfunction!(_cleanup_now, m)?)?;
    m.add_function(wrap_pyfunction!(_forget_owned, m)?)?;
    m.add_function(wrap_pyfunction!(_set_bootstrapping, m)?)?;
    m.add_function(wrap_pyfunction!(_bootstrapping, m)?)?;
    m.add_function(wrap_pyfunction!(_is_shmpar_segment, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
