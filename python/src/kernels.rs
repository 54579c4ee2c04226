//! The catalog's Rust kernels (`sqrt_abs`, `scale:2`, `mean`, `var:1`, ...)
//! on a shmpar `Pool`, for Python.
//!
//! # Why a server process
//!
//! The Rust pool forks its workers, and forking is only sound in a
//! single-threaded process (a lock another thread holds at the fork stays
//! held in the child forever). A Python process that imported NumPy is
//! usually not single-threaded: OpenBLAS and MKL start their thread pools
//! at import. So the pool does not live in the user's process. The package
//! starts a *kernel server*: a fresh interpreter (`sys.executable -c`, an
//! exec, so nothing of the user's process is inherited) that imports this
//! extension and nothing that starts threads (no NumPy), and calls
//! [`_serve_kernels`]. That process builds the Rust pool with the fork
//! start; the pool checks, through `/proc/self/task`, that it really is
//! single-threaded, and refuses otherwise (fail closed), so no
//! `allow_threads` promise is needed anywhere. Its forked workers run only
//! Rust code (the pool's worker loop) and never return into Python.
//!
//! # Protocol
//!
//! Two pipes, one per direction, each message a little-endian `u32` length
//! and a postcard-encoded [`Request`] or [`Reply`]. The server answers
//! [`Reply::Ready`] (or [`Reply::Failed`]) once its pool runs, then one
//! reply per request, in order. The client waits for a reply with the GIL
//! released, polling every [`TICK`] for Python signals (Ctrl-C). End of
//! file on the reply pipe means the server died: `shmpar.WorkerFailed`.
//! End of file on the request pipe (the client closed it, or the user's
//! process died) makes the server drop its pool, which stops and reaps its
//! workers, and exit. The server also dies with its parent
//! (`PR_SET_PDEATHSIG`), and the pool's workers die with the server.
//!
//! Arrays travel by name: the server attaches each job's array (an
//! `open`, an `fstat`, a `pread` of the header and an `mmap`) and drops its
//! handle after the job; the pool's workers keep their mappings until the
//! array's name is gone (the pool's eviction).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ndarray::{ArrayView, ArrayViewMut, IxDyn};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shmpar::{Ctx, DType, Pool, Segment, Serde, SharedArray};
use shmpar_kernels::catalog::{AnyPartial, BuiltinReduction, Elementwise, ReductionValue};
use shmpar_kernels::reduce::{Reduction, UnaryReduction};

use crate::array::{SharedArray as PySharedArray, numpy_name};
use crate::errors::{Error, WorkerFailed};
use crate::os;

/// How often a waiting client looks for Python signals (Ctrl-C).
const TICK: Duration = Duration::from_millis(100);

/// Largest message either side accepts (a histogram of a million bins is
/// ~10 MB).
const MAX_MESSAGE: u32 = 256 << 20;

/// What the client asks of the server.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Run an elementwise catalog kernel in place on the array `name`.
    Run {
        /// The kernel's spec, e.g. `scale:2`.
        spec: String,
        /// The array's segment name.
        name: String,
    },
    /// Reduce the array `name` with a catalog reduction.
    Reduce {
        /// The reduction's spec, e.g. `var:1`.
        spec: String,
        /// The array's segment name.
        name: String,
    },
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The pool runs: the server takes requests.
    Ready,
    /// A `Run` finished.
    Done,
    /// A `Reduce` finished with this value.
    Value(ReductionValue),
    /// The request failed; `worker` says whether a worker did not finish
    /// (`shmpar.WorkerFailed`) rather than the request being refused.
    Failed {
        /// A worker failed.
        worker: bool,
        /// The Rust error's message.
        message: String,
    },
}

fn write_message<T: Serialize>(out: &mut File, message: &T) -> io::Result<()> {
    let body = postcard::to_stdvec(message).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    out.write_all(&frame)
}

/// The next message, or `None` at end of file before its first byte.
fn read_message<T: DeserializeOwned>(input: &mut File) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_MESSAGE {
        return Err(io::Error::other(format!("a message of {len} bytes is too long")));
    }
    let mut body = vec![0u8; len as usize];
    input.read_exact(&mut body)?;
    postcard::from_bytes(&body).map(Some).map_err(io::Error::other)
}

// ---- the server ----

/// A worker's partial result of a reduction, or why the reduction spec did
/// not parse there.
type Partial = Serde<Result<AnyPartial, String>>;

/// Kernels of one float type: named `fn` items, which the fork-started
/// pool posts to its workers as pointers.
macro_rules! float_kernels {
    ($t:ty, $apply:ident, $partial:ident) => {
        fn $apply(_ctx: &Ctx<'_>, rows: ArrayViewMut<'_, $t, IxDyn>, kernel: &Serde<Elementwise>) {
            // The only failure of `apply` is a clamp with lo > hi, which the
            // spec parser refused before the job was posted.
            let _ = kernel.0.apply(rows);
        }
        fn $partial(_ctx: &Ctx<'_>, rows: ArrayView<'_, $t, IxDyn>, spec: &Serde<String>) -> Partial {
            Serde(
                spec.0
                    .parse::<BuiltinReduction>()
                    .map(|r| r.partial(rows))
                    .map_err(|e| e.to_string()),
            )
        }
    };
}
float_kernels!(f32, apply_f32, partial_f32);
float_kernels!(f64, apply_f64, partial_f64);

/// Why a request failed.
enum Failure {
    /// Refused: a bad spec, dtype or array.
    Refused(String),
    /// A worker did not finish.
    Worker(String),
}

impl From<shmpar::Error> for Failure {
    fn from(e: shmpar::Error) -> Failure {
        match e {
            shmpar::Error::WorkerFailed { .. } | shmpar::Error::JobTimeout { .. } => {
                Failure::Worker(e.to_string())
            }
            _ => Failure::Refused(e.to_string()),
        }
    }
}

impl From<shmpar_core::Error> for Failure {
    fn from(e: shmpar_core::Error) -> Failure {
        Failure::Refused(e.to_string())
    }
}

fn not_float(dtype: DType) -> Failure {
    Failure::Refused(format!(
        "the catalog's kernels run on float32 and float64 arrays; this array holds {}",
        numpy_name(dtype)
    ))
}

/// Refuses a 0-dimensional array: there are no rows to split.
fn check_rows(shape: &[usize]) -> Result<(), String> {
    if shape.is_empty() {
        return Err("a 0-dimensional array has no rows to split among workers".into());
    }
    Ok(())
}

fn run_kernel(pool: &Pool, spec: &str, name: &str) -> Result<(), Failure> {
    let kernel: Elementwise = spec
        .parse()
        .map_err(|e: shmpar_kernels::Error| Failure::Refused(e.to_string()))?;
    let segment = Segment::open(name)?;
    check_rows(segment.shape()).map_err(Failure::Refused)?;
    match segment.dtype() {
        DType::F32 => {
            let mut a = SharedArray::<f32, IxDyn>::from_segment(segment)?;
            pool.run(&mut a, Serde(kernel), apply_f32)?;
        }
        DType::F64 => {
            let mut a = SharedArray::<f64, IxDyn>::from_segment(segment)?;
            pool.run(&mut a, Serde(kernel), apply_f64)?;
        }
        other => return Err(not_float(other)),
    }
    Ok(())
}

fn reduce_array(pool: &Pool, spec: &str, name: &str) -> Result<ReductionValue, Failure> {
    let reduction: BuiltinReduction = spec
        .parse()
        .map_err(|e: shmpar_kernels::Error| Failure::Refused(e.to_string()))?;
    let segment = Segment::open(name)?;
    check_rows(segment.shape()).map_err(Failure::Refused)?;
    let combine = |x: Partial, y: Partial| {
        Serde(match (x.0, y.0) {
            (Ok(x), Ok(y)) => Ok(reduction.combine(x, y)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    };
    // The spec travels as text and is parsed again in each worker.
    let params = Serde(reduction.to_string());
    let partial = match segment.dtype() {
        DType::F32 => {
            let a = SharedArray::<f32, IxDyn>::from_segment(segment)?;
            pool.map_reduce_with(&a, params, partial_f32, combine)?
        }
        DType::F64 => {
            let a = SharedArray::<f64, IxDyn>::from_segment(segment)?;
            pool.map_reduce_with(&a, params, partial_f64, combine)?
        }
        other => return Err(not_float(other)),
    };
    let partial = partial.0.map_err(Failure::Refused)?;
    reduction
        .finish(partial)
        .map_err(|e| Failure::Refused(e.to_string()))
}

fn answer(pool: &Pool, request: Request) -> Reply {
    let outcome = match request {
        Request::Run { spec, name } => run_kernel(pool, &spec, &name).map(|()| Reply::Done),
        Request::Reduce { spec, name } => reduce_array(pool, &spec, &name).map(Reply::Value),
    };
    outcome.unwrap_or_else(|failure| match failure {
        Failure::Refused(message) => Reply::Failed {
            worker: false,
            message,
        },
        Failure::Worker(message) => Reply::Failed {
            worker: true,
            message,
        },
    })
}

/// How long the kernel server idles before its workers let go of arrays
/// it no longer holds.
const IDLE_RELEASE: Duration = Duration::from_millis(500);

fn serve(input: &mut File, output: &mut File, workers: usize) -> io::Result<()> {
    // Fork start: this process is a fresh interpreter that started no
    // thread; `build` checks that and refuses otherwise.
    let pool = match Pool::builder().workers(workers).build() {
        Ok(pool) => pool,
        Err(e) => {
            let reply = Reply::Failed {
                worker: false,
                message: format!("the kernel server could not start its pool: {e}"),
            };
            return write_message(output, &reply);
        }
    };
    if write_message(output, &Reply::Ready).is_err() {
        // The client stopped waiting before the pool ran.
        return Ok(());
    }
    loop {
        // While idle, the workers let go of arrays the server no longer
        // holds (each job's array is dropped after the job), so a user's
        // dropped array frees its memory now, not at the next job.
        while !os::wait_readable(input.as_raw_fd(), IDLE_RELEASE)? {
            let _ = pool.release_unused();
        }
        let Some(request) = read_message::<Request>(input)? else {
            break;
        };
        if write_message(output, &answer(&pool, request)).is_err() {
            // The client stopped waiting (Ctrl-C) and closed its end.
            break;
        }
    }
    // End of file: the client is gone. Dropping the pool stops and reaps
    // its workers and removes its control segment.
    drop(pool);
    Ok(())
}

/// The body of the kernel server process (see the module docs): serves
/// requests from descriptor `fd_in`, answers on `fd_out`, with a pool of
/// `workers` worker processes, until `fd_in` reaches end of file. Dies with
/// `parent`.
#[pyfunction]
pub(crate) fn _serve_kernels(
    py: Python<'_>,
    fd_in: i32,
    fd_out: i32,
    workers: usize,
    parent: i32,
) -> PyResult<()> {
    // SIGTERM, not SIGKILL: shmpar's handler (installed when the pool
    // creates its control segment) removes that segment, then the server
    // dies of the signal and its workers with it.
    os::die_with_parent(parent, libc::SIGTERM);
    os::ignore_interrupts();
    let mut input =
        os::adopt_fd(fd_in).map_err(|e| Error::new_err(format!("kernel server: request pipe: {e}")))?;
    let mut output =
        os::adopt_fd(fd_out).map_err(|e| Error::new_err(format!("kernel server: reply pipe: {e}")))?;
    match py.detach(|| serve(&mut input, &mut output, workers)) {
        // The client went away (closed its pipes, was interrupted, died):
        // nothing to report to anyone.
        Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof) => Ok(()),
        other => other.map_err(|e| Error::new_err(format!("kernel server: {e}"))),
    }
}

// ---- the client ----

/// Checks a spec against the catalog: `kind` is `"run"` (elementwise) or
/// `"reduce"`. Raises `shmpar.Error` with the catalog's message (which
/// lists the valid names) for an unknown or malformed spec.
#[pyfunction]
pub(crate) fn check_spec(kind: &str, spec: &str) -> PyResult<()> {
    let (this, other) = match kind {
        "run" => (
            spec.parse::<Elementwise>().err(),
            spec.parse::<BuiltinReduction>().is_ok(),
        ),
        "reduce" => (
            spec.parse::<BuiltinReduction>().err(),
            spec.parse::<Elementwise>().is_ok(),
        ),
        _ => return Err(Error::new_err(format!("unknown kernel kind {kind:?}"))),
    };
    match this {
        None => Ok(()),
        Some(_) if other && kind == "run" => Err(Error::new_err(format!(
            "{spec:?} is a reduction: use Pool.reduce({spec:?}, array)"
        ))),
        Some(_) if other => Err(Error::new_err(format!(
            "{spec:?} is an elementwise kernel: use Pool.run({spec:?}, array)"
        ))),
        Some(e) => Err(Error::new_err(e.to_string())),
    }
}

/// Why an exchange with the server did not bring a reply.
enum Lost {
    /// The pipes were closed earlier, or the server died now.
    Gone(String),
    /// A Python signal handler raised (Ctrl-C): the request was abandoned.
    Interrupted(PyErr),
}

/// The user process's end of the kernel server's pipes (internal to the
/// package: `shmpar.Pool` starts the server and hands the pipes over).
#[pyclass(frozen, module = "shmpar._shmpar", name = "_KernelClient")]
pub(crate) struct KernelClient {
    /// (to the server, from the server); `None` once closed or broken.
    /// Held for a whole request, with the GIL released: never lock it
    /// while holding the GIL (the request takes the GIL to check for
    /// signals, and the two would wait for each other).
    pipes: Mutex<Option<(File, File)>>,
    /// Set once the pipes are closed or broken: readable without the lock.
    closed: AtomicBool,
    pid: i32,
}

impl KernelClient {
    /// Sends `request` (if any) and waits for the reply with the GIL
    /// released, checking for Python signals every tick. A lost server or
    /// an interrupted wait closes the pipes: the client is then broken.
    fn exchange(&self, py: Python<'_>, request: Option<&Request>) -> Result<Reply, Lost> {
        py.detach(|| {
            let mut pipes = self.pipes.lock().unwrap_or_else(|p| p.into_inner());
            let Some((to, from)) = pipes.as_mut() else {
                return Err(Lost::Gone("the kernel server was stopped".into()));
            };
            let died = |what: &str| {
                Lost::Gone(format!(
                    "the kernel server (pid {}) died {what}; the pool starts a new one for the next job",
                    self.pid
                ))
            };
            if let Some(request) = request {
                if write_message(to, request).is_err() {
                    *pipes = None;
                    self.closed.store(true, Ordering::Relaxed);
                    return Err(died("before it took the job"));
                }
            }
            loop {
                match os::wait_readable(from.as_raw_fd(), TICK) {
                    Ok(true) => break,
                    Ok(false) => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            *pipes = None;
                            self.closed.store(true, Ordering::Relaxed);
                            return Err(Lost::Interrupted(e));
                        }
                    }
                    Err(_) => {
                        *pipes = None;
                        self.closed.store(true, Ordering::Relaxed);
                        return Err(died("(its pipe failed)"));
                    }
                }
            }
            match read_message::<Reply>(from) {
                Ok(Some(reply)) => Ok(reply),
                Ok(None) | Err(_) => {
                    *pipes = None;
                    self.closed.store(true, Ordering::Relaxed);
                    Err(died("while it ran the job"))
                }
            }
        })
    }

    fn request(&self, py: Python<'_>, request: Request) -> PyResult<Reply> {
        match self.exchange(py, Some(&request)) {
            Ok(Reply::Failed {
                worker: true,
                message,
            }) => Err(WorkerFailed::new_err(message)),
            Ok(Reply::Failed {
                worker: false,
                message,
            }) => Err(Error::new_err(message)),
            Ok(reply) => Ok(reply),
            Err(Lost::Gone(message)) => Err(WorkerFailed::new_err(message)),
            Err(Lost::Interrupted(e)) => Err(e),
        }
    }
}

/// Refuses what the server would refuse, before anything is sent.
fn check_array(array: &PySharedArray) -> PyResult<()> {
    if !matches!(array.dtype(), DType::F32 | DType::F64) {
        return Err(Error::new_err(format!(
            "the catalog's kernels run on float32 and float64 arrays; this array holds {}",
            numpy_name(array.dtype())
        )));
    }
    check_rows(array.shape()).map_err(Error::new_err)
}

fn value_to_python(py: Python<'_>, value: ReductionValue) -> PyResult<Py<PyAny>> {
    Ok(match value {
        ReductionValue::Scalar(x) => x.into_pyobject(py)?.into_any().unbind(),
        ReductionValue::Pair(lo, hi) => (lo, hi).into_pyobject(py)?.into_any().unbind(),
        ReductionValue::Histogram(h) => {
            let dict = PyDict::new(py);
            dict.set_item("edges", h.edges)?;
            dict.set_item("counts", h.counts)?;
            dict.set_item("below", h.below)?;
            dict.set_item("above", h.above)?;
            dict.set_item("nan", h.nan)?;
            dict.into_any().unbind()
        }
        _ => py.None(),
    })
}

#[pymethods]
impl KernelClient {
    /// Takes over the pipe ends `to_server` and `from_server` (the caller
    /// must not use or close them again) of the server process `pid`.
    #[new]
    fn new(to_server: i32, from_server: i32, pid: i32) -> PyResult<KernelClient> {
        let to = os::adopt_fd(to_server).map_err(|e| Error::new_err(e.to_string()))?;
        let from = os::adopt_fd(from_server).map_err(|e| Error::new_err(e.to_string()))?;
        Ok(KernelClient {
            pipes: Mutex::new(Some((to, from))),
            closed: AtomicBool::new(false),
            pid,
        })
    }

    /// Waits for the server to say that its pool runs; raises
    /// `shmpar.Error` with its reason if it could not start one.
    fn wait_ready(&self, py: Python<'_>) -> PyResult<()> {
        match self.exchange(py, None) {
            Ok(Reply::Ready) => Ok(()),
            Ok(Reply::Failed { message, .. }) => Err(Error::new_err(message)),
            Ok(other) => Err(Error::new_err(format!(
                "kernel server: unexpected reply {other:?}"
            ))),
            Err(Lost::Gone(_)) => Err(Error::new_err(format!(
                "the kernel server (pid {}) exited before its pool started (its error output says why)",
                self.pid
            ))),
            Err(Lost::Interrupted(e)) => Err(e),
        }
    }

    /// Runs the elementwise kernel `spec` in place on `array`.
    fn run(&self, py: Python<'_>, spec: &str, array: &PySharedArray) -> PyResult<()> {
        check_spec("run", spec)?;
        check_array(array)?;
        let request = Request::Run {
            spec: spec.to_owned(),
            name: array.name().to_owned(),
        };
        match self.request(py, request)? {
            Reply::Done => Ok(()),
            other => Err(Error::new_err(format!(
                "kernel server: unexpected reply {other:?}"
            ))),
        }
    }

    /// Reduces `array` with `spec`; returns a float, a `(min, max)` tuple,
    /// a histogram dict, or None (min/max of no elements).
    fn reduce(&self, py: Python<'_>, spec: &str, array: &PySharedArray) -> PyResult<Py<PyAny>> {
        check_spec("reduce", spec)?;
        check_array(array)?;
        let request = Request::Reduce {
            spec: spec.to_owned(),
            name: array.name().to_owned(),
        };
        match self.request(py, request)? {
            Reply::Value(value) => value_to_python(py, value),
            other => Err(Error::new_err(format!(
                "kernel server: unexpected reply {other:?}"
            ))),
        }
    }

    /// Whether the pipes are gone (closed, or the server died).
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The server's pid.
    #[getter]
    fn pid(&self) -> i32 {
        self.pid
    }

    /// Closes the pipes: the server stops its pool and exits. Waits (with
    /// the GIL released) for a request another thread is making to end.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Relaxed);
        py.detach(|| *self.pipes.lock().unwrap_or_else(|p| p.into_inner()) = None);
    }

    /// In a child forked from the client's process: closes this copy of
    /// the pipes, so the server still sees end of file when the parent
    /// closes its own. Gives up if the lock was held at the fork (by a
    /// thread that does not exist in the child).
    fn _close_in_child(&self) {
        self.closed.store(true, Ordering::Relaxed);
        if let Ok(mut pipes) = self.pipes.try_lock() {
            *pipes = None;
        }
    }
}

impl From<Lost> for PyErr {
    fn from(lost: Lost) -> PyErr {
        match lost {
            Lost::Gone(message) => WorkerFailed::new_err(message),
            Lost::Interrupted(e) => e,
        }
    }
}
