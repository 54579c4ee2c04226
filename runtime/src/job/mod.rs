//! Jobs: the arguments a kernel works on ([`args`]), the context it sees
//! ([`Ctx`]), and how one worker's share of a job runs, whatever executes
//! it (a worker process, a rayon thread, the serial loop).
//!
//! Layering: `job` knows nothing of processes. The pool's workers and the
//! threads and serial backends build a `Share` and call the functions
//! here, so every backend runs exactly the same code on the same chunks.

pub mod args;
mod ctx;
mod local;
mod locked;
mod schedule;

use std::any::Any;
use std::ops::Range;

use ndarray::{ArrayView, ArrayViewMut, Dimension, RemoveAxis};
use shmpar_core::chunk::chunk_range;
use shmpar_core::{Element, SharedArray};

pub use args::{Args, Kind, RowsMutOf, RowsOf, ViewsKind, Whole, WholeOf, WholeView, whole};
pub use ctx::Ctx;
pub(crate) use ctx::{Aborted, Meet, panic_message};
pub(crate) use local::LocalMeet;
pub use locked::{Locked, LockedGuard, LockedOf, LockedView, locked};
pub(crate) use schedule::{Plan, row_align};
pub use schedule::{Schedule, Scheduled};

/// A double-buffer step: `f(ctx, whole source, own rows of destination, params)`.
pub type StepFn<T, D, P> =
    for<'a, 'b, 'c, 'p> fn(&'c Ctx<'b>, ArrayView<'a, T, D>, ArrayViewMut<'a, T, D>, &'p P);

/// One worker's share of a job: who it is, the job's arrays in this
/// process (argument order), its chunks, and how it meets the others.
pub(crate) struct Share<'e> {
    pub(crate) rank: usize,
    pub(crate) workers: usize,
    /// Rows of the job's split, shared by every split argument.
    pub(crate) rows: usize,
    pub(crate) arrays: &'e [&'e dyn Any],
    pub(crate) meet: Meet<'e>,
    pub(crate) plan: &'e Plan,
    /// The next unclaimed chunk of a claimed plan (an atomic counter the
    /// job's workers share).
    pub(crate) claim: crate::dispatch::Claim<'e>,
}

impl<'e> Share<'e> {
    /// This worker's rows of a static split: its chunk of the plan, which
    /// may fall on whole pages (see [`Schedule::Static`]).
    pub(crate) fn own_rows(&self) -> Range<usize> {
        match self.plan.chunks.get(self.rank) {
            Some(rows) if !self.plan.claimed => rows.clone(),
            _ => chunk_range(self.rows, self.workers, self.rank),
        }
    }

    /// Runs `call` on this worker's chunks of the job's arguments, each
    /// with its context; returns what each call returned, tagged with its
    /// chunk index (the order in which partial results combine).
    ///
    /// # Safety
    /// - Every worker running this job concurrently has a distinct `rank`
    ///   of the same `workers` and shares the same `claim` counter (so no
    ///   chunk runs twice and split rows never overlap), and the arrays are
    ///   not otherwise accessed while the job runs.
    pub(crate) unsafe fn run<K: Kind, O>(
        &self,
        call: impl for<'a> Fn(&'a Ctx<'_>, K::Views<'a>) -> O,
    ) -> Result<Vec<(u32, O)>, String> {
        let mut out = Vec::new();
        let mut one = |chunk: usize| -> Result<(), String> {
            let rows = self.plan.chunks[chunk].clone();
            let mut ctx = Ctx::new(self.rank, self.workers, rows.clone(), self.meet);
            ctx.chunk = chunk;
            ctx.claimed = self.plan.claimed;
            // SAFETY: the caller's promise: disjoint rows, no other access.
            let value = unsafe { call_on::<K, O>(self.arrays, &ctx, rows, &call)? };
            out.push((chunk as u32, value));
            Ok(())
        };
        if self.plan.claimed {
            loop {
                let chunk = (self.claim)();
                if chunk >= self.plan.chunks.len() {
                    break;
                }
                one(chunk)?;
            }
        } else if self.rank < self.plan.chunks.len() {
            one(self.rank)?;
        }
        Ok(out)
    }

    /// Runs `steps` double-buffer steps: each reads all of one array and
    /// writes this worker's rows of the other, a barrier ends the step, and
    /// the arrays swap roles.
    ///
    /// # Safety
    /// As [`run`](Self::run); in addition the job's two arrays are
    /// different segments.
    pub(crate) unsafe fn steps<T, D, P>(
        &self,
        steps: usize,
        params: &P,
        f: StepFn<T, D, P>,
    ) -> Result<(), String>
    where
        T: Element,
        D: Dimension + RemoveAxis + 'static,
    {
        let array = |i: usize| {
            self.arrays
                .get(i)
                .and_then(|a| a.downcast_ref::<SharedArray<T, D>>())
                .ok_or_else(|| String::from("a double buffer needs two arrays of the kernel's type"))
        };
        let (a, b) = (array(0)?, array(1)?);
        let rows = self.own_rows();
        for step in 0..steps {
            let (src, dst) = if step % 2 == 0 { (a, b) } else { (b, a) };
            // SAFETY: in this step every worker reads all of `src` and
            // writes only its own rows of `dst`, a different segment; nobody
            // writes `src`. The barrier below ends the step before the roles
            // swap, so reads and writes of one array never overlap.
            let dst_rows = unsafe { dst.rows_mut_unchecked(rows.clone()) }.map_err(|e| e.to_string())?;
            let mut ctx = Ctx::new(self.rank, self.workers, rows.clone(), self.meet);
            ctx.step = step;
            f(&ctx, src.view(), dst_rows, params);
            ctx.barrier();
        }
        Ok(())
    }
}

/// Builds `K`'s views of `arrays` for `rows` and calls `call` with them and
/// `ctx`, all under one lifetime (the kernel types tie the views' lifetime
/// to the context's).
///
/// # Safety
/// As [`Kind::views`].
unsafe fn call_on<'s, K: Kind, O>(
    arrays: &'s [&'s dyn Any],
    ctx: &'s Ctx<'_>,
    rows: Range<usize>,
    call: &impl Fn(&'s Ctx<'_>, K::Views<'s>) -> O,
) -> Result<O, String> {
    // SAFETY: forwarded from the caller.
    let views = unsafe { K::views(&mut arrays.iter(), rows)? };
    Ok(call(ctx, views))
}

/// Checks that two arrays can serve as the two buffers of a double-buffer
/// job: the same shape, and two different segments.
pub(crate) fn check_buffers<T: Element, D: Dimension>(
    a: &SharedArray<T, D>,
    b: &SharedArray<T, D>,
) -> crate::Result<()> {
    if a.shape() != b.shape() {
        return Err(crate::Error::Mismatch {
            reason: format!("shapes {:?} and {:?} differ", a.shape(), b.shape()),
        });
    }
    if a.shape().is_empty() {
        return Err(crate::Error::Mismatch {
            reason: "a double buffer needs arrays with at least one axis".into(),
        });
    }
    if a.segment().identity() == b.segment().identity() {
        return Err(crate::Error::Mismatch {
            reason: format!(
                "both buffers are the segment {}; double buffering needs two arrays",
                a.name()
            ),
        });
    }
    Ok(())
}
