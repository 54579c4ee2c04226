//! Jobs across the ranks: each rank runs the kernel once, on its own rows,
//! as worker *r* of a pool of *n* workers does under the static schedule.

use std::any::Any;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{Axis, Dimension, RemoveAxis};
use shmpar_core::Element;

use super::args::{self, DistArg, DistArgs, DistKind};
use super::array::DistArray;
use super::{World, comm, halo};
use crate::error::{Error, Result};
use crate::job::{Ctx, Kind, Meet, StepFn};
use crate::transfer::Transfer;

impl World {
    /// Runs `f(ctx, views, params)` on every rank, each with its own rows
    /// of the split arguments and the whole of the [`whole`](super::whole)
    /// ones, in place: [`Pool::run`](crate::Pool::run) across the ranks.
    /// Collective: every rank calls it with the same arguments and
    /// parameters (parameters are not sent; each rank passes its own).
    ///
    /// A kernel that panics ends the whole MPI job (`MPI_Abort`, status
    /// 101): the other ranks may be waiting for this one in a barrier.
    ///
    /// Kernels are the pool's `fn` pointers, so code written for one runs on
    /// the other; a capturing closure does not compile here either (pass
    /// the value as `params`):
    ///
    /// ```compile_fail
    /// # fn main() -> Result<(), shmpar::Error> {
    /// use shmpar::mpi::{DistArray, World};
    /// let world = World::init()?;
    /// let mut a = DistArray::<f64, _>::create(&world, 8)?;
    /// let k = 2.0;
    /// world.for_each_chunk(&mut a, |mut rows| rows *= k)?; // captures `k`
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Mismatch`] for arguments that cannot form a job (split
    /// arrays with different row counts, an array twice, an array of
    /// another world); every rank gets the same answer.
    pub fn run<A: DistArgs, P: Transfer>(
        &self,
        args: A,
        params: P,
        f: <A::Kind as Kind>::RunFn<P>,
    ) -> Result<()> {
        self.job(&args, |ctx, views| A::Kind::call_run(f, ctx, views, &params))
    }

    /// [`run`](Self::run) without context or parameters:
    /// [`Pool::for_each_chunk`](crate::Pool::for_each_chunk) across the ranks.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn for_each_chunk<A: DistArgs>(&self, args: A, f: <A::Kind as Kind>::PlainRunFn) -> Result<()> {
        self.job(&args, |_, views| A::Kind::call_plain_run(f, views))
    }

    /// Map-reduce across the ranks: each rank maps its rows to a partial
    /// result, the partials are gathered as bytes on every rank
    /// (`MPI_Allgatherv`) and combined there in rank order, so every rank
    /// returns the same value, bit for bit the value
    /// [`Pool::map_reduce`](crate::Pool::map_reduce) gives with as many
    /// workers as ranks.
    ///
    /// # Errors
    /// As [`run`](Self::run); [`Error::Codec`] if a partial does not
    /// decode; [`Error::TooLarge`] if the partials pass 2 GiB together.
    pub fn map_reduce<A: DistArgs, R: Transfer>(
        &self,
        args: A,
        map: <A::Kind as Kind>::PlainMapFn<R>,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R> {
        let partial = self.job(&args, |_, views| A::Kind::call_plain_map(map, views))?;
        self.combine(&partial, combine)
    }

    /// [`map_reduce`](Self::map_reduce) with the rank's [`Ctx`] and
    /// parameters: [`Pool::map_reduce_with`](crate::Pool::map_reduce_with)
    /// across the ranks.
    ///
    /// # Errors
    /// As [`map_reduce`](Self::map_reduce).
    pub fn map_reduce_with<A: DistArgs, P: Transfer, R: Transfer>(
        &self,
        args: A,
        params: P,
        map: <A::Kind as Kind>::MapFn<P, R>,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R> {
        let partial = self.job(&args, |ctx, views| A::Kind::call_map(map, ctx, views, &params))?;
        self.combine(&partial, combine)
    }

    /// The double-buffer pattern across the ranks, for stencils:
    /// [`Pool::double_buffer`](crate::Pool::double_buffer), with the ghost
    /// rows exchanged between nodes before each step.
    ///
    /// In each step every rank's kernel gets `src`, its *window* of the
    /// current array (its own rows and up to `halo` rows on either side,
    /// fewer at the array's edges), `dst`, its own rows of the next array,
    /// and a context whose [`rows`](Ctx::rows) are its own rows *in the
    /// window*. A stencil of radius up to `halo` written for the pool, which
    /// indexes `src` by `ctx.rows()` and treats the array's first and last
    /// rows as its boundary, cannot tell the window from the whole array,
    /// so it runs unchanged and gives the same bits. (The global row
    /// numbers are `a.own_rows()`.)
    ///
    /// Before each step, the ranks at the edge of a node exchange `halo`
    /// boundary rows with the neighbouring nodes (`MPI_Sendrecv`); inside a
    /// node the ranks read each other's rows in the node's segment. A
    /// barrier across every rank ends each step. Step 0 reads `a` and writes
    /// `b`: after an even number of steps the result is in `a`.
    ///
    /// # Errors
    /// [`Error::Mismatch`] if the arrays differ in shape or halo, have no
    /// ghost rows (`halo` 0: create them with
    /// [`DistArray::create_with_halo`]), or are one array.
    pub fn double_buffer<T, D, P>(
        &self,
        a: &mut DistArray<T, D>,
        b: &mut DistArray<T, D>,
        steps: usize,
        params: P,
        f: StepFn<T, D, P>,
    ) -> Result<()>
    where
        T: Element,
        D: Dimension + RemoveAxis + 'static,
        P: Transfer,
    {
        let mismatch = |reason: String| Err(Error::Mismatch { reason });
        if a.shape() != b.shape() {
            return mismatch(format!("shapes {:?} and {:?} differ", a.shape(), b.shape()));
        }
        if a.halo() != b.halo() {
            return mismatch(format!("halos {} and {} differ", a.halo(), b.halo()));
        }
        if a.halo() == 0 {
            return mismatch(
                "a double buffer reads its neighbours' rows: create both arrays with DistArray::create_with_halo"
                    .into(),
            );
        }
        if a.ranks() != self.size {
            return mismatch(format!(
                "the arrays were made for {} ranks, the job has {}",
                a.ranks(),
                self.size
            ));
        }
        let plan = halo::Plan::new(self, a);
        let own = a.own_rows();
        let window = plan.window(&own);
        let ctx_rows = own.start - window.start..own.end - window.start;
        // Every rank has written its rows (since the last collective call)
        // before anyone reads them through a window.
        self.barrier();
        for step in 0..steps {
            let (src, dst) = if step % 2 == 0 {
                (&mut *a, &mut *b)
            } else {
                (&mut *b, &mut *a)
            };
            plan.exchange(self, src);
            if plan.ghosts_shared {
                self.barrier();
            }
            let src_view = src
                .local_array()
                .view()
                .slice_axis_move(Axis(0), src.local_rows(window.clone()).into());
            let dst_rows = dst.local_rows(own.clone());
            // SAFETY: in this step every rank reads its window of `src` and
            // writes only its own rows of `dst`, another segment (two
            // `&mut` borrows); nobody writes `src`, whose ghost rows were
            // written before the barrier that orders them for the ranks
            // that read them. The barrier below ends the step before the
            // roles swap, so reads and writes of one array never overlap.
            let dst_view = unsafe { dst.local_array().rows_mut_unchecked(dst_rows) }?;
            let mut ctx = Ctx::new(
                self.rank,
                self.size,
                ctx_rows.clone(),
                Meet::Mpi(&self.rendezvous),
            );
            ctx.step = step;
            if catch_unwind(AssertUnwindSafe(|| f(&ctx, src_view, dst_view, &params))).is_err() {
                self.abort_after_panic();
            }
            self.barrier();
        }
        Ok(())
    }

    /// Runs `call` on this rank's share of `args`; returns what it returned.
    fn job<A: DistArgs, O>(
        &self,
        args: &A,
        call: impl for<'a> Fn(&'a Ctx<'_>, <A::Kind as Kind>::Views<'a>) -> O,
    ) -> Result<O> {
        let mut described: Vec<DistArg<'_>> = Vec::new();
        args.describe(&mut described);
        let rows = args::check(&described, self.size)?;
        // Whole distributed arguments: a copy per node, for this job.
        let mut gathered: Vec<Option<Box<dyn Any>>> = Vec::with_capacity(described.len());
        for arg in &described {
            gathered.push(match arg.gather {
                Some(gather) => Some(gather(self, arg.source)?),
                None => None,
            });
        }
        let locals: Vec<(&dyn Any, Range<usize>)> = described
            .iter()
            .zip(&gathered)
            .map(|(arg, copy)| (copy.as_deref().unwrap_or(arg.local), arg.view_rows.clone()))
            .collect();
        let ctx = Ctx::new(
            self.rank,
            self.size,
            self.own_rows(rows, self.rank),
            Meet::Mpi(&self.rendezvous),
        );
        // SAFETY: every rank runs this once, on its own rows of the split
        // arguments (disjoint across the ranks); the whole arguments are
        // node copies nobody writes; `args` holds the borrows of the arrays
        // in this process for the whole call.
        match catch_unwind(AssertUnwindSafe(|| unsafe {
            call_on::<A::Kind, O>(&locals, &ctx, &call)
        })) {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(reason)) => Err(Error::Mismatch { reason }),
            Err(_) => self.abort_after_panic(),
        }
    }

    /// Gathers every rank's partial and folds them in rank order.
    fn combine<R: Transfer>(&self, partial: &R, mut combine: impl FnMut(R, R) -> R) -> Result<R> {
        let mut bytes = Vec::new();
        partial.encode(&mut bytes)?;
        let mut all = comm::all_gather(&self.comm, &bytes)?.into_iter();
        let first = R::decode(&all.next().unwrap_or_default())?;
        all.try_fold(first, |acc, bytes| Ok(combine(acc, R::decode(&bytes)?)))
    }
}

/// Builds `K`'s views and calls `call` with them and `ctx`, under one
/// lifetime (the kernel types tie the views' lifetime to the context's).
///
/// # Safety
/// As [`DistKind::local_views`].
unsafe fn call_on<'s, K: DistKind, O>(
    locals: &'s [(&'s dyn Any, Range<usize>)],
    ctx: &'s Ctx<'_>,
    call: &impl Fn(&'s Ctx<'_>, K::Views<'s>) -> O,
) -> Result<O, String> {
    // SAFETY: forwarded from the caller.
    let views = unsafe { K::local_views(&mut locals.iter())? };
    Ok(call(ctx, views))
}
