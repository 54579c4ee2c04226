//! The exceptions: `shmpar.Error`, the base of every shmpar exception, and
//! `shmpar.WorkerFailed`. Each carries the Rust error's message, which says
//! what went wrong in words a user can act on.

use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::PyException;

create_exception!(
    shmpar,
    Error,
    PyException,
    "A shmpar failure, with the Rust library's message: the base class of every shmpar exception."
);

create_exception!(
    shmpar,
    WorkerFailed,
    Error,
    "A worker process died (killed, crashed) or its kernel failed, so the job did not finish."
);

create_exception!(
    shmpar,
    ServerStopped,
    Error,
    "Internal: the kernel server's pipes were closed before this request (by `close`, or after \
     another thread's request was interrupted); the pool starts a new server and tries again."
);

/// A core error as `shmpar.Error`.
pub(crate) fn core(error: shmpar_core::Error) -> PyErr {
    Error::new_err(error.to_string())
}
