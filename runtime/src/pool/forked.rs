//! Jobs of kernels that capture variables: one-job workers forked for the
//! job inherit the closure, as it is at the call.

use crate::dispatch::{MapShape, RunShape};
use crate::error::Result;
use crate::job::{Args, Ctx, Kind};
use crate::pool::Pool;
use crate::pool::post::{self, Job, Via};
use crate::transfer::Transfer;

impl Pool {
    /// Like [`run`](Self::run), for a kernel that captures variables: each
    /// job forks one-job workers that inherit the closure and what it
    /// captured, as they were at the call. Slower than the persistent
    /// workers (a fork per worker per job); fork pools only. Pass the arrays
    /// the kernel works on as `args`: a forked worker's memory holds copies
    /// of the coordinator's handles, so attaching one of those arrays by
    /// name inside the kernel is refused (`AlreadyOpen`), as it would be in
    /// the coordinator.
    ///
    /// ```
    /// # fn main() -> Result<(), shmpar::Error> {
    /// let pool = shmpar::Pool::builder().workers(2).build()?;
    /// let mut a = shmpar::SharedArray::<f64, _>::create(8)?;
    /// let table = vec![1.0, 2.0, 3.0]; // a capture
    /// pool.run_forked(&mut a, (), |_ctx, mut chunk, _| chunk.fill(table.iter().sum()))?;
    /// assert!(a.view().iter().all(|&x| x == 6.0));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::CapturingKernel`](crate::Error::CapturingKernel) on a spawn pool,
    /// [`Error::ForkWithThreads`](crate::Error::ForkWithThreads), and as [`run`](Self::run).
    pub fn run_forked<A, P, F>(&self, args: A, params: P, f: F) -> Result<()>
    where
        A: Args,
        P: Transfer,
        F: Fn(&Ctx<'_>, <A::Kind as Kind>::Views<'_>, &P) + Sync,
    {
        let body = |input: &crate::dispatch::Input<'_>| -> crate::dispatch::Output {
            RunShape::<A::Kind, P>::run_with(input, |ctx, views, p| f(ctx, views, p))
        };
        let job = Job {
            via: Via::Inherited(&body),
            params: post::encode(&params)?,
            steps: 1,
        };
        self.submit(&args, job).map(drop)
    }

    /// [`map_reduce_with`](Self::map_reduce_with) for a map that captures
    /// variables, on one-job forked workers as [`run_forked`](Self::run_forked).
    ///
    /// # Errors
    /// As [`run_forked`](Self::run_forked).
    pub fn map_reduce_forked<A, P, R, M>(
        &self,
        args: A,
        params: P,
        map: M,
        combine: impl FnMut(R, R) -> R,
    ) -> Result<R>
    where
        A: Args,
        P: Transfer,
        R: Transfer,
        M: Fn(&Ctx<'_>, <A::Kind as Kind>::Views<'_>, &P) -> R + Sync,
    {
        let body = |input: &crate::dispatch::Input<'_>| -> crate::dispatch::Output {
            MapShape::<A::Kind, P, R>::run_with(input, |ctx, views, p| map(ctx, views, p))
        };
        let job = Job {
            via: Via::Inherited(&body),
            params: post::encode(&params)?,
            steps: 1,
        };
        post::combine(self.submit(&args, job)?, combine)
    }
}
