//! The worker side: a process that waits for jobs in the control segment,
//! runs its share of each, and reports.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use ndarray::Ix1;
use shmpar_core::{Barrier, Segment, SharedArray};

use crate::dispatch::{self, Failure, Input, Output, Runner, status};
use crate::job::args::Opener;
use crate::job::panic_message;
use crate::job::{Aborted, Meet, Schedule};
use crate::pool::control::{ControlView, Identity, JobDesc, SPIN, how};
use crate::sys;

/// What a worker process holds: its rank, the control segment, and the
/// arrays it has attached (kept mapped across jobs, so a second job on the
/// same array pays no attach and no page faults).
pub(crate) struct WorkerEnv {
    pub(crate) rank: usize,
    control: Segment,
    cache: RefCell<HashMap<Identity, Rc<dyn Any>>>,
    /// Results of the last job too large for this worker's slot: the
    /// coordinator copies them out; the next job drops (and so unlinks) them.
    spill: RefCell<Option<SharedArray<u8, Ix1>>>,
}

/// A job a one-job worker runs from its copy of the coordinator's memory.
pub(crate) type Inherited<'j> = &'j (dyn Fn(&Input<'_>) -> Output + Sync);

impl WorkerEnv {
    /// The worker of `rank` over the control segment at `location`.
    pub(crate) fn attach(rank: usize, location: &shmpar_core::Location) -> Result<WorkerEnv, String> {
        // SAFETY: the worker hands out no view of the control segment's
        // data; it reaches it only through `ControlView`, whose areas follow
        // the posting protocol (see `control.rs`).
        let control = unsafe { Segment::open_unchecked(location) }.map_err(|e| e.to_string())?;
        ControlView::new(&control).ok_or("the control segment does not hold its areas")?;
        Ok(WorkerEnv {
            rank,
            control,
            cache: RefCell::new(HashMap::new()),
            spill: RefCell::new(None),
        })
    }

    fn view(&self) -> ControlView<'_> {
        // Checked in `attach`; the recorded sizes never change.
        ControlView::new(&self.control).expect("the control segment was checked at attach")
    }

    fn barrier(&self) -> Barrier<'_> {
        // The rank places this worker at its own leaf of the barrier's tree.
        self.control.barrier().with_rank(self.rank as u32)
    }

    /// The job's arrays, opened as `openers` say: from the cache when this
    /// worker has them, else attached now, with this worker's rows (or the
    /// whole array, for a whole argument) mapped up front — one system call
    /// instead of a page fault per 4 KiB, all workers in parallel.
    fn fetch(&self, desc: &JobDesc, openers: &[Opener]) -> Result<Vec<Rc<dyn Any>>, String> {
        let refs = desc.arrays();
        if refs.len() != openers.len() {
            return Err(format!(
                "the job names {} arrays, the kernel takes {}",
                refs.len(),
                openers.len()
            ));
        }
        let mut out = Vec::with_capacity(refs.len());
        for (r, opener) in refs.iter().zip(openers) {
            let cached = self.cache.borrow().get(&r.identity).cloned();
            if let Some(array) = cached.filter(|a| Any::type_id(&**a) == (opener.type_id)()) {
                out.push(array);
                continue;
            }
            let location = r
                .location()
                .ok_or_else(|| String::from("corrupt array name in the job"))?;
            let segment = open_job_array(&location)?;
            if Identity::of(&segment) != r.identity {
                return Err(format!(
                    "{location} was replaced by another segment of the same name"
                ));
            }
            let rows = segment.shape().first().copied().unwrap_or(1);
            let row_bytes = segment.layout().data_len.checked_div(rows).unwrap_or(0);
            let mine = if r.split != 0 {
                let workers = desc.workers as usize;
                let plan = Schedule::Static.plan(rows, workers, desc.row_align as usize);
                plan.chunks.get(self.rank).cloned().unwrap_or(0..0)
            } else {
                0..rows
            };
            // Best effort: without it the first pass faults the pages in.
            let _ = segment.prefault_range(mine.start * row_bytes, mine.len() * row_bytes);
            let array = (opener.open)(segment).map_err(|e| e.to_string())?;
            self.cache.borrow_mut().insert(r.identity, array.clone());
            out.push(array);
        }
        Ok(out)
    }

    /// Puts results too large for the slot into a segment of their own;
    /// returns its name, or why that failed.
    fn spill(&self, payload: &[u8]) -> Result<String, String> {
        let array =
            SharedArray::from_array(&ndarray::ArrayView1::from(payload)).map_err(|e| e.to_string())?;
        let name = array.name();
        *self.spill.borrow_mut() = Some(array);
        Ok(name)
    }

    fn evict(&self, desc: &JobDesc) {
        // The coordinator has read the last job's spilled results.
        self.spill.borrow_mut().take();
        let mut cache = self.cache.borrow_mut();
        for identity in desc.evicted() {
            cache.remove(identity);
        }
    }

    /// Runs this worker's share of the posted job with `runner`.
    fn run(&self, desc: &JobDesc, run: impl FnOnce(&Input<'_>) -> Output) -> Output {
        let barrier = self.barrier();
        let view = self.view();
        let fetch = |openers: &[Opener]| self.fetch(desc, openers);
        let schedule = Schedule::decode(desc.schedule, desc.schedule_rows)
            .ok_or_else(|| Failure::failed("corrupt schedule in the job"))?;
        let plan = schedule.plan(desc.rows as usize, desc.workers as usize, desc.row_align as usize);
        let counter = &view.control().next_chunk.0;
        let line = &view.control().workers[self.rank];
        line.chunk.store(self.rank as u32, Ordering::Relaxed);
        // Relaxed: the claim only has to be unique; the data a chunk reads
        // was published by the post, and its results by each worker's report.
        let claim = || {
            let chunk = counter.fetch_add(1, Ordering::Relaxed);
            line.chunk.store(chunk, Ordering::Relaxed);
            chunk as usize
        };
        let input = Input {
            rank: self.rank,
            workers: desc.workers as usize,
            rows: desc.rows as usize,
            steps: desc.steps as usize,
            // SAFETY: between the post we acquired and our report; the
            // coordinator writes parameters only while every worker is idle.
            params: unsafe { view.params(desc.params_len) },
            fetch: &fetch,
            meet: Meet::Processes(&barrier),
            plan: &plan,
            claim: &claim,
        };
        run(&input)
    }
}

/// Attaches a job's array in this worker with a recorded handle, so that a
/// kernel attaching the same array by name gets `AlreadyOpen` instead of a
/// second, aliasing handle. A forked worker may have inherited the record
/// from the coordinator (whose handle is a copy in the worker's memory that
/// the worker never uses); then the worker's own handle is unrecorded, and
/// the record it inherited still refuses a kernel's attach.
fn open_job_array(location: &shmpar_core::Location) -> Result<Segment, String> {
    match Segment::open_location(location) {
        Ok(segment) => Ok(segment),
        Err(shmpar_core::Error::AlreadyOpen { .. }) => {
            // SAFETY: the worker builds views only through the job's kinds,
            // which give concurrent workers disjoint rows to write; the
            // coordinator does not touch the arrays while the job runs; and
            // the inherited record keeps kernels from attaching another
            // handle.
            unsafe { Segment::open_unchecked(location) }.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The runner and kernel a posted descriptor names.
fn resolve(desc: &JobDesc) -> Result<(Runner, usize), Failure> {
    match desc.how {
        how::POINTER => {
            // SAFETY: a persistent worker is a fork of the coordinator, so
            // its image is the coordinator's at the same addresses, and the
            // coordinator posted `runner::<S>` and a kernel of shape `S`.
            let runner = unsafe { std::mem::transmute::<usize, Runner>(desc.runner as usize) };
            Ok((runner, desc.kernel as usize))
        }
        how::NAME => {
            let name = std::str::from_utf8(desc.key()).map_err(|_| Failure::failed("corrupt kernel name"))?;
            let sig =
                std::str::from_utf8(desc.sig()).map_err(|_| Failure::failed("corrupt kernel signature"))?;
            let entry = dispatch::by_name(name, sig).map_err(Failure::failed)?;
            Ok((entry.runner, entry.kernel))
        }
        other => Err(Failure::failed(format!("unknown dispatch code {other}"))),
    }
}

/// Runs one job and reports it: slot, status, `done` count.
fn report(env: &WorkerEnv, run: impl FnOnce() -> Output) {
    let view = env.view();
    let control = view.control();
    let (code, payload) = match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(partials)) => (status::OK, crate::pool::control::encode_partials(&partials)),
        Ok(Err(failure)) => {
            env.barrier().poison();
            (failure.status, failure.message.into_bytes())
        }
        Err(payload) if payload.is::<Aborted>() => (status::ABORTED, Vec::new()),
        Err(payload) => {
            env.barrier().poison();
            (status::PANICKED, panic_message(&*payload).into_bytes())
        }
    };
    // SAFETY: this worker is slot `rank`'s only writer and has not
    // reported yet.
    let inline = unsafe { view.write_slot(env.rank, &payload, false) };
    let capacity = view.slot_capacity();
    let written = match inline {
        Ok(()) => Ok(()),
        // Results: into a segment of their own, named in the slot.
        Err(len) if code == status::OK => match env.spill(&payload) {
            Ok(name) => {
                // SAFETY: as above.
                unsafe { view.write_slot(env.rank, name.as_bytes(), true) }.map_err(|_| {
                    format!(
                        "worker {} spilled {len} bytes of results to {name}, whose name does not fit \
                         in its {capacity}-byte slot",
                        env.rank
                    )
                })
            }
            Err(e) => Err(format!(
                "worker {} produced {len} bytes of results, more than the {capacity} bytes its slot \
                 holds (PoolBuilder::partial_bytes), and could not put them in a shared-memory \
                 segment of their own: {e}",
                env.rank
            )),
        },
        // A message (panic, failure) longer than the slot: its beginning.
        Err(_) => {
            // SAFETY: as above.
            let _ = unsafe { view.write_slot(env.rank, truncated(&payload, capacity), false) };
            Ok(())
        }
    };
    let code = match written {
        Ok(()) => code,
        Err(message) => {
            env.barrier().poison();
            // SAFETY: as above.
            let _ = unsafe { view.write_slot(env.rank, truncated(message.as_bytes(), capacity), false) };
            status::FAILED
        }
    };
    // Release: the coordinator acquires the status before it reads the slot.
    control.workers[env.rank].status.store(code, Ordering::Release);
    control.done.post();
}

/// A persistent worker's life: wait for a post, run it, report; exit on
/// shutdown. Never returns.
pub(crate) fn serve(env: WorkerEnv, mut seen: u32) -> ! {
    let view = env.view();
    let control = view.control();
    control.workers[env.rank]
        .pid
        // Release: the coordinator's check-in wait acquires it.
        .store(sys::getpid() as u32, Ordering::Release);
    loop {
        let Some(now) = control.post.wait_change(seen, SPIN, None) else {
            continue;
        };
        seen = now;
        if control.shutdown.load() != 0 {
            sys::exit_now(0);
        }
        // SAFETY: the coordinator wrote the descriptor before its release
        // increment of `post`, which our acquire load observed, and writes
        // it again only after it has acquired every worker's non-PENDING
        // status for this job (our release store in `report`, after which we
        // no longer read it) or reaped the worker.
        let desc: &JobDesc = unsafe { &*control.job.get() };
        env.evict(desc);
        if desc.how == how::EVICT {
            report(&env, || Ok(Vec::new()));
            continue;
        }
        report(&env, || {
            let (runner, kernel) = resolve(desc)?;
            // SAFETY: `resolve` found the runner and kernel in this image:
            // posted addresses (same image after fork) or the registry.
            env.run(desc, |input| unsafe { runner(input, kernel) })
        });
    }
}

/// A one-job worker forked to run a kernel that captures variables: it
/// runs `job` from its copy of the coordinator's memory and exits.
pub(crate) fn run_once(env: WorkerEnv, job: Inherited<'_>) -> ! {
    let control = env.view().control();
    control.workers[env.rank]
        .pid
        .store(sys::getpid() as u32, Ordering::Relaxed);
    // SAFETY: written by the coordinator before the fork.
    let desc: &JobDesc = unsafe { &*control.job.get() };
    report(&env, || env.run(desc, job));
    sys::exit_now(0)
}

/// The longest prefix of `bytes` that fits in `capacity` bytes and ends on
/// a UTF-8 character boundary where `bytes` is text.
fn truncated(bytes: &[u8], capacity: usize) -> &[u8] {
    if bytes.len() <= capacity {
        return bytes;
    }
    let mut end = capacity;
    while end > 0 && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &bytes[..end]
}
