//! The worker side: a process that waits for jobs in the control block,
//! runs them on its chunk, and reports.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use std::ops::Range;

use ndarray::{Dimension, RemoveAxis};
use shmpar_core::chunk::chunk_range;
use shmpar_core::{Barrier, Element, Segment, SharedArray};

use crate::job::{Aborted, Entry};
use crate::pool::control::{self, ArrayRef, Control, Identity, JobDesc, status};
use crate::sys;

/// Why a worker did not finish a job, as it reports it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: u32,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn failed(message: String) -> Failure {
        Failure {
            status: status::FAILED,
            message,
        }
    }
}

/// An attached array and the rows of it a worker owns.
pub(crate) type Chunk<T, D> = (Rc<SharedArray<T, D>>, Range<usize>);

/// What a worker process holds: its rank, the control segment, and the
/// arrays it has attached (kept mapped across jobs, so a second job on the
/// same array pays no attach and no page faults).
pub(crate) struct WorkerEnv {
    pub(crate) rank: usize,
    control: Segment,
    cache: RefCell<HashMap<Identity, Rc<dyn Any>>>,
}

impl WorkerEnv {
    pub(crate) fn new(rank: usize, control: Segment) -> WorkerEnv {
        WorkerEnv {
            rank,
            control,
            cache: RefCell::new(HashMap::new()),
        }
    }

    pub(crate) fn control(&self) -> &Control {
        control_of(&self.control)
    }

    /// The barrier that separates a job's phases.
    pub(crate) fn barrier(&self) -> Barrier<'_> {
        self.control.barrier()
    }

    /// The array `r` names, attached once and then kept, and the rows this
    /// worker owns in a job of `workers`. On the first attach the worker
    /// maps its rows' pages up front: one system call instead of a page
    /// fault per 4 KiB, and all workers do it in parallel.
    pub(crate) fn chunk_of<T: Element, D: Dimension + RemoveAxis + 'static>(
        &self,
        r: &ArrayRef,
        workers: usize,
    ) -> Result<Chunk<T, D>, Failure> {
        if let Some(cached) = self.cache.borrow().get(&r.identity) {
            if let Ok(array) = Rc::clone(cached).downcast::<SharedArray<T, D>>() {
                let rows = chunk_range(array.rows(), workers, self.rank);
                return Ok((array, rows));
            }
        }
        let location = r
            .location()
            .ok_or_else(|| Failure::failed("corrupt array name in the job".into()))?;
        let array =
            SharedArray::<T, D>::attach_location(&location).map_err(|e| Failure::failed(e.to_string()))?;
        let (dev, ino) = array.segment().identity();
        if (Identity { dev, ino }) != r.identity {
            return Err(Failure::failed(format!(
                "{location} was replaced by another segment of the same name"
            )));
        }
        let rows = chunk_range(array.rows(), workers, self.rank);
        // Best effort: without it the first pass faults the pages in.
        let _ = array.prefault_rows(rows.clone());
        let array = Rc::new(array);
        self.cache.borrow_mut().insert(r.identity, array.clone());
        Ok((array, rows))
    }

    fn evict(&self, desc: &JobDesc) {
        let mut cache = self.cache.borrow_mut();
        for identity in &desc.evict[..(desc.nevict as usize).min(desc.evict.len())] {
            cache.remove(identity);
        }
    }
}

/// The control block in a control segment's data.
pub(crate) fn control_of(segment: &Segment) -> &Control {
    debug_assert!(segment.layout().data_len >= size_of::<Control>());
    // SAFETY: the control segment's data is at least `size_of::<Control>()`
    // bytes (checked when the pool created or a worker attached it), page
    // aligned, lives as long as `segment`, and all-zero bytes are a valid
    // `Control`. Every field written after creation is an atomic, or the
    // job descriptor, which is only written while no worker reads it.
    unsafe { &*segment.data_ptr().cast::<Control>() }
}

/// The runtime's anchor: job entry points travel as offsets from this
/// function's address, which stay valid in a forked child (same addresses)
/// and in a spawned one (same executable, shifted by ASLR as a whole).
#[inline(never)]
pub(crate) fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

/// The entry point at `offset` from the anchor.
///
/// # Safety
/// `offset` must come from [`entry_offset`] in a process running the same
/// executable.
pub(crate) unsafe fn entry_at(offset: i64) -> Entry {
    let address = (anchor() as i64).wrapping_add(offset) as usize;
    // SAFETY: by the caller's promise `address` is the address of an
    // `Entry` function in this executable.
    unsafe { std::mem::transmute::<usize, Entry>(address) }
}

/// The offset of `entry` from the anchor.
pub(crate) fn entry_offset(entry: Entry) -> i64 {
    (entry as usize as i64).wrapping_sub(anchor() as i64)
}

/// Runs one job and reports it: status, slot, `done` count.
fn run_one(env: &WorkerEnv, desc: &JobDesc, run: impl FnOnce() -> crate::job::Outcome) {
    let control = env.control();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(run));
    let (code, payload) = match outcome {
        Ok(Ok(bytes)) => (status::OK, bytes),
        Ok(Err(failure)) => {
            env.barrier().poison();
            (failure.status, failure.message.into_bytes())
        }
        Err(payload) if payload.is::<Aborted>() => (status::ABORTED, Vec::new()),
        Err(payload) => {
            env.barrier().poison();
            (status::PANICKED, panic_message(&payload).into_bytes())
        }
    };
    let (code, payload) = match env.control.write_slot(env.rank, &payload) {
        Ok(()) => (code, payload),
        Err(e) => {
            env.barrier().poison();
            let msg = e.to_string().into_bytes();
            let _ = env
                .control
                .write_slot(env.rank, &msg[..msg.len().min(env.control.slot_capacity())]);
            (status::FAILED, msg)
        }
    };
    drop(payload);
    control.workers[env.rank].status.store(code, Ordering::Release);
    control.done.word.fetch_add(1, Ordering::AcqRel);
    control::wake_all(&control.done);
    let _ = desc;
}

fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// A persistent worker's life: wait for a post, run it, report; exit on
/// shutdown. Never returns.
pub(crate) fn serve(env: WorkerEnv, mut seen: u32) -> ! {
    let control = env.control();
    control.workers[env.rank]
        .pid
        // Release: the coordinator's check-in wait acquires it.
        .store(sys::getpid() as u32, Ordering::Release);
    loop {
        let Some(now) = control::wait_change(&control.post, seen, control::SPIN, None) else {
            continue;
        };
        seen = now;
        if control.shutdown.word.load(Ordering::Acquire) != 0 {
            sys::exit_now(0);
        }
        // SAFETY: the coordinator wrote the descriptor before its release
        // increment of `post`, which our acquire load observed, and does not
        // write it again until every worker has reported `done`.
        let desc: &JobDesc = unsafe { &*control.job.get() };
        env.evict(desc);
        // SAFETY: the coordinator runs the same executable and computed the
        // offset with `entry_offset` from an `entry::<J>` instance.
        let entry = unsafe { entry_at(desc.entry) };
        // SAFETY: `entry` is an `entry::<J>` for a zero-sized `J` (the pool
        // posts only those to persistent workers).
        run_one(&env, desc, || unsafe { entry(&env, desc) });
    }
}

/// A one-job worker forked to run a kernel that captures variables: it
/// runs `job` from its copy of the coordinator's memory and exits.
pub(crate) fn run_once(env: WorkerEnv, job: &dyn crate::job::JobKind) -> ! {
    let control = env.control();
    control.workers[env.rank]
        .pid
        .store(sys::getpid() as u32, Ordering::Relaxed);
    // SAFETY: written by the coordinator before the fork.
    let desc: &JobDesc = unsafe { &*control.job.get() };
    run_one(&env, desc, || job.run(&env, desc));
    sys::exit_now(0)
}
