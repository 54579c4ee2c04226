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
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
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
use crate::errors::{Error, ServerStopped, WorkerFailed};
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
        /// The (device, inode) of the client's array: the name must still
        /// name that object.
        identity: (u64, u64),
    },
    /// Reduce the array `name` with a catalog reduction.
    Reduce {
        /// The reduction's spec, e.g. `var:1`.
        spec: String,
        /// The array's segment name.
        name: String,
        /// As for `Run`.
        identity: (u64, u64),
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

/// A job's array, as the server keeps it between jobs.
enum Cached {
    F32(SharedArray<f32, IxDyn>),
    F64(SharedArray<f64, IxDyn>),
}

/// The arrays the server has attached, by name, kept while the name still
/// names the same object: so the pool's workers keep their mappings (and
/// page tables) of an array between jobs, as for a Rust program that holds
/// its arrays, and let go of it once its name is gone (unlinked, dropped
/// by its creator), not at the next job on another array.
#[derive(Default)]
struct Arrays(std::collections::HashMap<String, ((u64, u64), Cached)>);

/// (device, inode) that `/dev/shm/NAME` names now, if anything.
fn named_identity(name: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(std::path::Path::new("/dev/shm").join(name)).ok()?;
    Some((meta.dev(), meta.ino()))
}

impl Arrays {
    /// The array `name`, attached once, if the name still names the
    /// client's object `identity` (else the client's array was unlinked,
    /// and another may have taken its name: never touch that one).
    fn get(&mut self, name: &str, identity: (u64, u64)) -> Result<&mut Cached, Failure> {
        if named_identity(name) != Some(identity) {
            return Err(Failure::Refused(format!(
                "the array {name} was unlinked (or its name now names another object): the kernel \
                 server attaches arrays by name, so run and reduce need an array whose name is still there"
            )));
        }
        let stale = match self.0.get(name) {
            Some((cached, _)) => *cached != identity,
            None => true,
        };
        if stale {
            self.0.remove(name);
            let segment = Segment::open(name)?;
            check_rows(segment.shape()).map_err(Failure::Refused)?;
            let identity = segment.identity();
            let cached = match segment.dtype() {
                DType::F32 => Cached::F32(SharedArray::from_segment(segment)?),
                DType::F64 => Cached::F64(SharedArray::from_segment(segment)?),
                other => return Err(not_float(other)),
            };
            self.0.insert(name.to_owned(), (identity, cached));
        }
        match self.0.get_mut(name) {
            Some((_, cached)) => Ok(cached),
            None => Err(Failure::Refused(format!("{name}: attached and lost at once"))),
        }
    }

    /// Drops the arrays whose names are gone or name other objects now.
    fn drop_gone(&mut self) {
        self.0
            .retain(|name, (identity, _)| named_identity(name) == Some(*identity));
    }
}

fn run_kernel(
    pool: &Pool,
    arrays: &mut Arrays,
    spec: &str,
    name: &str,
    identity: (u64, u64),
) -> Result<(), Failure> {
    let kernel: Elementwise = spec
        .parse()
        .map_err(|e: shmpar_kernels::Error| Failure::Refused(e.to_string()))?;
    match arrays.get(name, identity)? {
        Cached::F32(a) => pool.run(a, Serde(kernel), apply_f32)?,
        Cached::F64(a) => pool.run(a, Serde(kernel), apply_f64)?,
    }
    Ok(())
}

fn reduce_array(
    pool: &Pool,
    arrays: &mut Arrays,
    spec: &str,
    name: &str,
    identity: (u64, u64),
) -> Result<ReductionValue, Failure> {
    let reduction: BuiltinReduction = spec
        .parse()
        .map_err(|e: shmpar_kernels::Error| Failure::Refused(e.to_string()))?;
    let combine = |x: Partial, y: Partial| {
        Serde(match (x.0, y.0) {
            (Ok(x), Ok(y)) => Ok(reduction.combine(x, y)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        })
    };
    // The spec travels as text and is parsed again in each worker.
    let params = Serde(reduction.to_string());
    let partial = match arrays.get(name, identity)? {
        Cached::F32(a) => pool.map_reduce_with(&*a, params, partial_f32, combine)?,
        Cached::F64(a) => pool.map_reduce_with(&*a, params, partial_f64, combine)?,
    };
    let partial = partial.0.map_err(Failure::Refused)?;
    reduction
        .finish(partial)
        .map_err(|e| Failure::Refused(e.to_string()))
}

fn answer(pool: &Pool, arrays: &mut Arrays, request: Request) -> Reply {
    arrays.drop_gone();
    let outcome = match request {
        Request::Run { spec, name, identity } => {
            run_kernel(pool, arrays, &spec, &name, identity).map(|()| Reply::Done)
        }
        Request::Reduce { spec, name, identity } => {
            reduce_array(pool, arrays, &spec, &name, identity).map(Reply::Value)
        }
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
    let mut arrays = Arrays::default();
    loop {
        // While idle, the server drops the arrays whose names are gone and
        // the workers let go of them, so a user's dropped array frees its
        // memory now, not at the next job.
        while !os::wait_readable(input.as_raw_fd(), IDLE_RELEASE)? {
            arrays.drop_gone();
            let _ = pool.release_unused();
        }
        let Some(request) = read_message::<Request>(input)? else {
            break;
        };
        if write_message(output, &answer(&pool, &mut arrays, request)).is_err() {
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
    // The kernel's name alone tells its kind, whatever its parameters.
    let name = spec.split(':').next().unwrap_or(spec);
    let (this, other) = match kind {
        "run" => (
            spec.parse::<Elementwise>().err(),
            spec.parse::<BuiltinReduction>().is_ok()
                || (name.parse::<BuiltinReduction>().is_ok() && name.parse::<Elementwise>().is_err()),
        ),
        "reduce" => (
            spec.parse::<BuiltinReduction>().err(),
            spec.parse::<Elementwise>().is_ok()
                || (name.parse::<Elementwise>().is_ok() && name.parse::<BuiltinReduction>().is_err()),
        ),
        _ => return Err(Error::new_err(format!("unknown kernel kind {kind:?}"))),
    };
    if let Ok(BuiltinReduction::Histogram(h)) = spec.parse::<BuiltinReduction>() {
        if h.bins() > MAX_REPLY_BINS {
            return Err(Error::new_err(format!(
                "{spec:?} asks for {} bins; the package returns histograms of at most {MAX_REPLY_BINS} bins",
                h.bins()
            )));
        }
    }
    match this {
        None => Ok(()),
        Some(_) if other && kind == "run" => Err(Error::new_err(format!(
            "{name:?} is a reduction: use Pool.reduce({spec:?}, array)"
        ))),
        Some(_) if other => Err(Error::new_err(format!(
            "{name:?} is an elementwise kernel: use Pool.run({spec:?}, array)"
        ))),
        Some(e) => Err(Error::new_err(e.to_string())),
    }
}

/// The most histogram bins a reply carries (16 bytes a bin, within the
/// message limit with room to spare).
const MAX_REPLY_BINS: usize = 8 << 20;

/// Why an exchange with the server did not bring a reply.
enum Lost {
    /// The pipes were closed earlier (by `close`, or after another
    /// thread's request failed): a new server may serve the request.
    Stopped,
    /// The server died now.
    Gone(String),
    /// A Python signal handler raised (Ctrl-C): the request was abandoned.
    Interrupted(PyErr),
}

/// The user process's end of the kernel server's pipes (internal to the
/// package: `shmpar.Pool` starts the server and hands the pipes over).
///
/// The descriptors live in atomics, not behind the lock, so a child forked
/// while another thread holds the lock can still close its copies; the
/// lock only serializes requests (one at a time on the pipes) and is
/// waited for with the GIL released and Python signals checked, so
/// neither a second thread nor Ctrl-C waits on it blindly.
#[pyclass(frozen, module = "shmpar._shmpar", name = "_KernelClient")]
pub(crate) struct KernelClient {
    /// One request at a time.
    turn: Mutex<()>,
    /// To the server, from the server; -1 once closed or broken.
    to: AtomicI32,
    from: AtomicI32,
    pid: i32,
}

impl Drop for KernelClient {
    fn drop(&mut self) {
        self.shut();
    }
}

impl KernelClient {
    /// Closes both pipes (once; later calls find -1).
    fn shut(&self) {
        for fd in [&self.to, &self.from] {
            let fd = fd.swap(-1, Ordering::AcqRel);
            if fd >= 0 {
                // SAFETY: the client owned `fd` (the Python side handed it
                // over and never uses it again), and the swap above makes
                // this the only close.
                drop(unsafe { File::from_raw_fd(fd) });
            }
        }
    }

    /// Takes the request lock, checking for Python signals every tick
    /// while another thread holds it.
    fn take_turn(&self) -> Result<std::sync::MutexGuard<'_, ()>, PyErr> {
        loop {
            match self.turn.try_lock() {
                Ok(guard) => return Ok(guard),
                Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {
                    for _ in 0..TICK.as_millis() {
                        std::thread::sleep(Duration::from_millis(1));
                        if let Ok(guard) = self.turn.try_lock() {
                            return Ok(guard);
                        }
                    }
                    Python::attach(|py| py.check_signals())?;
                }
            }
        }
    }

    /// Sends `request` (if any) and waits for the reply with the GIL
    /// released, checking for Python signals every tick. A lost server or
    /// an interrupted wait closes the pipes: the client is then broken.
    fn exchange(&self, py: Python<'_>, request: Option<&Request>) -> Result<Reply, Lost> {
        py.detach(|| {
            let _turn = self.take_turn().map_err(Lost::Interrupted)?;
            let (to, from) = (self.to.load(Ordering::Acquire), self.from.load(Ordering::Acquire));
            if to < 0 || from < 0 {
                return Err(Lost::Stopped);
            }
            // SAFETY: both descriptors stay open while we hold the turn:
            // only `shut` closes them, and every caller of `shut` but the
            // forked child's `_close_in_child` and `Drop` (neither runs
            // while a request is in flight in this process) holds the turn.
            let (mut to, mut from) = unsafe {
                (
                    std::mem::ManuallyDrop::new(File::from_raw_fd(to)),
                    std::mem::ManuallyDrop::new(File::from_raw_fd(from)),
                )
            };
            let died = |what: &str| {
                self.shut();
                Lost::Gone(format!(
                    "the kernel server (pid {}) died {what}; the pool starts a new one for the next job",
                    self.pid
                ))
            };
            if let Some(request) = request {
                if write_message(&mut to, request).is_err() {
                    return Err(died("before it took the job"));
                }
            }
            loop {
                match os::wait_readable(from.as_raw_fd(), TICK) {
                    Ok(true) => break,
                    Ok(false) => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            self.shut();
                            return Err(Lost::Interrupted(e));
                        }
                    }
                    Err(_) => return Err(died("(its pipe failed)")),
                }
            }
            match read_message::<Reply>(&mut from) {
                Ok(Some(reply)) => Ok(reply),
                Ok(None) | Err(_) => Err(died("while it ran the job")),
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
            Err(Lost::Stopped) => Err(ServerStopped::new_err("the kernel server was stopped")),
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
        use std::os::fd::IntoRawFd;
        Ok(KernelClient {
            turn: Mutex::new(()),
            to: AtomicI32::new(to.into_raw_fd()),
            from: AtomicI32::new(from.into_raw_fd()),
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
            Err(Lost::Stopped) => Err(Error::new_err(
                "the pool was closed while its kernel server started",
            )),
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
            identity: array.identity(),
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
            identity: array.identity(),
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
        self.to.load(Ordering::Acquire) < 0
    }

    /// The server's pid.
    #[getter]
    fn pid(&self) -> i32 {
        self.pid
    }

    /// Closes the pipes: the server stops its pool and exits. Waits (with
    /// the GIL released, answering Ctrl-C) for a request another thread is
    /// making to end.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let _turn = self.take_turn()?;
            self.shut();
            Ok(())
        })
    }

    /// In a child forked from the client's process: closes this copy of
    /// the pipes, so the server still sees end of file when the parent
    /// closes its own, whatever thread held the request lock at the fork.
    fn _close_in_child(&self) {
        self.shut();
    }
}

impl From<Lost> for PyErr {
    fn from(lost: Lost) -> PyErr {
        match lost {
            Lost::Stopped => ServerStopped::new_err("the kernel server was stopped"),
            Lost::Gone(message) => WorkerFailed::new_err(message),
            Lost::Interrupted(e) => e,
        }
    }
}
