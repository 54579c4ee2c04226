//! The coordinator's half of the posting protocol: describe a job in the
//! control segment, post it, and turn the workers' reports into results.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use shmpar_core::Segment;
use shmpar_core::segment::Location;

use crate::dispatch::{self, Input, Output, Shape, status};
use crate::error::{Error, Result};
use crate::job::Schedule;
use crate::job::args::{self, Args};
use crate::pool::control::{ArrayRef, ControlView, EVICT_MAX, Identity, KEY_MAX, SIG_MAX, how};
use crate::pool::launch::{self, Start, check_fork};
use crate::pool::supervise::Inner;
use crate::transfer::Transfer;

/// How the workers get the job's kernel.
pub(crate) enum Via<'j> {
    /// A kernel of shape `S` on the persistent workers: its runner and
    /// address, and (for spawned workers) the registered name.
    Persistent {
        runner: usize,
        kernel: usize,
        signature: &'static str,
    },
    /// A closure that one-job workers forked for this job inherit.
    Inherited(&'j (dyn Fn(&Input<'_>) -> Output + Sync)),
}

impl Via<'_> {
    pub(crate) fn persistent<S: Shape>(f: S::Fn) -> Via<'static> {
        Via::Persistent {
            runner: dispatch::runner::<S> as dispatch::Runner as usize,
            kernel: S::address(f),
            signature: std::any::type_name::<S>(),
        }
    }
}

/// A job ready to post.
pub(crate) struct Job<'j> {
    pub(crate) via: Via<'j>,
    pub(crate) params: Vec<u8>,
    pub(crate) steps: u64,
}

/// Encodes `params`.
pub(crate) fn encode<P: Transfer>(params: &P) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    params.encode(&mut bytes)?;
    Ok(bytes)
}

impl Inner {
    /// Posts `job` over `args` and waits for it; returns every partial
    /// result in chunk order.
    pub(crate) fn submit<A: Args>(&mut self, args: &A, job: Job<'_>, workers: usize) -> Result<Vec<Vec<u8>>> {
        if let Some(reason) = &self.broken {
            return Err(Error::PoolBroken {
                reason: reason.clone(),
            });
        }
        let mut described = Vec::new();
        args.describe(&mut described);
        let schedule = args.schedule();
        let rows = args::check(&described, schedule)?;
        let segments: Vec<(&Segment, bool)> = described.iter().map(|a| (a.segment, a.split)).collect();
        let transient = matches!(job.via, Via::Inherited(_));
        if transient {
            if self.start == Start::Spawn {
                return Err(Error::CapturingKernel);
            }
            check_fork(self.allow_threads)?;
        }
        self.prepare(&segments, &job, rows, workers, schedule)?;
        let transient_pids = match job.via {
            Via::Inherited(body) => {
                // SAFETY: checked single-threaded (or vouched for) above.
                unsafe { launch::fork_transient(self.control.location(), workers, body)? }
            }
            Via::Persistent { .. } => {
                self.view().control().post.post();
                Vec::new()
            }
        };
        let outcome = self.wait_job(workers, &transient_pids);
        for &pid in &transient_pids {
            crate::sys::reap(pid, std::time::Duration::from_secs(1));
        }
        self.finish(outcome, rows, workers, !transient)
    }

    /// Has the workers drop their mappings of arrays the coordinator no
    /// longer holds, now rather than with the next job; posts nothing if
    /// there are none.
    pub(crate) fn release_unused(&mut self, workers: usize) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(Error::PoolBroken {
                reason: reason.clone(),
            });
        }
        // At most EVICT_MAX a post: as many posts as it takes.
        while self.release_some(workers)? {}
        Ok(())
    }

    /// One eviction-only post; whether there was anything to release.
    fn release_some(&mut self, workers: usize) -> Result<bool> {
        let desc = &mut *self.desc;
        let nevict = evictions(&mut self.sent, &[], &mut desc.evict);
        if nevict == 0 {
            return Ok(false);
        }
        desc.nevict = nevict;
        desc.how = how::EVICT;
        desc.workers = workers as u32;
        desc.narrays = 0;
        desc.rows = 0;
        desc.params_len = 0;
        self.publish(workers);
        self.view().control().post.post();
        let outcome = self.wait_job(workers, &[]);
        self.finish(outcome, 0, workers, true).map(|_| true)
    }

    /// Writes the job descriptor and parameters and resets the per-job
    /// words. No worker reads them now: the previous job ended only once
    /// the coordinator had acquired every worker's non-PENDING status (the
    /// worker's last access to the descriptor comes before its release
    /// store of that status) or reaped the worker.
    fn prepare(
        &mut self,
        arrays: &[(&Segment, bool)],
        job: &Job<'_>,
        rows: usize,
        n: usize,
        schedule: Schedule,
    ) -> Result<()> {
        if self.control.barrier().is_poisoned() {
            self.control.barrier().reset(n as u32)?;
        }
        let view =
            ControlView::new(&self.control).expect("the pool created its control segment with these sizes");
        if job.params.len() > view.param_capacity() {
            return Err(Error::TooLarge {
                what: "the encoded parameter block",
                size: job.params.len(),
                max: view.param_capacity(),
                setting: "PoolBuilder::param_bytes",
            });
        }
        let desc = &mut *self.desc;
        match job.via {
            Via::Persistent {
                runner,
                kernel,
                signature,
            } => match self.start {
                Start::Fork => {
                    desc.how = how::POINTER;
                    desc.runner = runner as u64;
                    desc.kernel = kernel as u64;
                }
                Start::Spawn => {
                    let entry = dispatch::by_address(kernel, signature).ok_or(Error::UnregisteredKernel {
                        signature: signature.to_owned(),
                    })?;
                    if entry.name.len() > KEY_MAX || signature.len() > SIG_MAX {
                        return Err(Error::Mismatch {
                            reason: format!(
                                "the kernel name {} or its signature is too long to post",
                                entry.name
                            ),
                        });
                    }
                    desc.how = how::NAME;
                    desc.key_len = entry.name.len() as u32;
                    desc.key[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
                    desc.sig_len = signature.len() as u32;
                    desc.sig[..signature.len()].copy_from_slice(signature.as_bytes());
                }
            },
            Via::Inherited(_) => desc.how = how::INHERITED,
        }
        desc.workers = n as u32;
        (desc.schedule, desc.schedule_rows) = schedule.encode();
        desc.steps = job.steps;
        desc.rows = rows as u64;
        let split = arrays
            .iter()
            .filter(|(_, split)| *split)
            .map(|(segment, _)| *segment);
        desc.row_align = crate::job::row_align(split, rows) as u64;
        desc.narrays = arrays.len() as u32;
        let mut current = Vec::with_capacity(arrays.len());
        for (slot, (segment, split)) in desc.arrays.iter_mut().zip(arrays) {
            let identity = Identity::of(segment);
            *slot = ArrayRef::new(segment.location(), identity, *split).ok_or_else(|| Error::Mismatch {
                reason: format!("the array name {} is too long to send to workers", segment.name()),
            })?;
            current.push(identity);
            self.sent.insert(identity, segment.location().clone());
        }
        desc.nevict = evictions(&mut self.sent, &current, &mut desc.evict);
        desc.params_len = job.params.len() as u64;
        // SAFETY: the coordinator, while every worker is idle.
        unsafe { view.write_params(&job.params) };
        self.publish(n);
        Ok(())
    }

    /// Resets the per-job words of `n` workers and writes the descriptor;
    /// the next increment of `post` publishes them. Only while every
    /// worker is idle (see `prepare`).
    fn publish(&self, n: usize) {
        let view = self.view();
        let control = view.control();
        control.done.store(0);
        control.next_chunk.0.store(0, Ordering::Relaxed);
        for line in &control.workers[..n] {
            line.status.store(status::PENDING, Ordering::Relaxed);
        }
        // SAFETY: no worker reads the descriptor now (all are idle, waiting
        // for the next increment of `post`, which publishes this write).
        unsafe { control.job.get().write(*self.desc) };
    }

    pub(crate) fn view(&self) -> ControlView<'_> {
        ControlView::new(&self.control).expect("the pool created its control segment with these sizes")
    }
}

/// Picks arrays the workers may have mapped that the coordinator no longer
/// holds (its handle dropped: the array is gone, or persisted and let go),
/// at most [`EVICT_MAX`], so the workers drop their mappings and the memory
/// is released by the end of this job.
fn evictions(
    sent: &mut HashMap<Identity, Location>,
    current: &[Identity],
    out: &mut [Identity; EVICT_MAX],
) -> u32 {
    let gone: Vec<Identity> = sent
        .keys()
        .filter(|id| !current.contains(id) && !shmpar_core::segment::is_open((id.dev, id.ino)))
        .copied()
        .take(EVICT_MAX)
        .collect();
    for (slot, id) in out.iter_mut().zip(&gone) {
        sent.remove(id);
        *slot = *id;
    }
    gone.len() as u32
}

/// Combines partial results in chunk order.
pub(crate) fn combine<R: Transfer>(partials: Vec<Vec<u8>>, mut combine: impl FnMut(R, R) -> R) -> Result<R> {
    let mut result: Option<R> = None;
    for bytes in partials {
        let partial = R::decode(&bytes)?;
        result = Some(match result {
            None => partial,
            Some(acc) => combine(acc, partial),
        });
    }
    result.ok_or_else(|| Error::PoolBroken {
        reason: "a job returned no partial results".into(),
    })
}
