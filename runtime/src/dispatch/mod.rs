//! How a kernel reaches a worker process: by a function pointer in a forked
//! worker, by a registered name in a spawned one. See `README.md` beside
//! this file for the design and why it is sound.
//!
//! A kernel that runs on persistent workers is a plain `fn` pointer (a
//! closure that captures nothing coerces to one), so a worker never needs a
//! value it was not handed: the type system says "captures nothing".
//! Each job *shape* (a run, a map, a double-buffer step, with or without
//! context) has a generic runner that decodes the parameters, attaches the
//! arrays, builds the views and calls the kernel.

mod registry;

use std::any::Any;
use std::rc::Rc;

use ndarray::{Dimension, RemoveAxis};
use shmpar_core::Element;

use crate::job::args::Opener;
use crate::job::{Ctx, Kind, Meet, Plan, RowsOf, Share, StepFn};
use crate::transfer::Transfer;

pub use registry::{Entry, Registration};
pub(crate) use registry::{by_address, by_name};

/// A worker's report codes.
pub(crate) mod status {
    /// Idle, or still running the current job.
    pub(crate) const PENDING: u32 = 0;
    /// Finished the job.
    pub(crate) const OK: u32 = 1;
    /// The kernel panicked; the message is in the worker's slot.
    pub(crate) const PANICKED: u32 = 2;
    /// The job failed in the worker (an attach, a decode); message in the slot.
    pub(crate) const FAILED: u32 = 3;
    /// Gave up because the barrier was poisoned by someone else's failure.
    pub(crate) const ABORTED: u32 = 4;
}

/// Why a worker did not finish a job, as it reports it.
#[doc(hidden)]
#[derive(Debug)]
pub struct Failure {
    pub(crate) status: u32,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn failed(message: impl Into<String>) -> Failure {
        Failure {
            status: status::FAILED,
            message: message.into(),
        }
    }
}

/// A worker's result: its encoded partial results tagged with their chunk
/// index (none for jobs without a result), or why it failed.
pub(crate) type Output = Result<Vec<(u32, Vec<u8>)>, Failure>;

/// How a worker attaches (or takes from its cache) the job's arrays, each
/// opened as the given opener says.
pub(crate) type Fetch<'e> = &'e dyn Fn(&[Opener]) -> Result<Vec<Rc<dyn Any>>, String>;

/// How a worker claims the next chunk of a dynamic or guided schedule.
pub(crate) type Claim<'e> = &'e (dyn Fn() -> usize + Sync);

/// What a runner gets from the worker that runs it.
#[doc(hidden)]
pub struct Input<'e> {
    pub(crate) rank: usize,
    pub(crate) workers: usize,
    pub(crate) rows: usize,
    pub(crate) steps: usize,
    pub(crate) params: &'e [u8],
    pub(crate) fetch: Fetch<'e>,
    pub(crate) meet: Meet<'e>,
    pub(crate) plan: &'e Plan,
    pub(crate) claim: Claim<'e>,
}

impl Input<'_> {
    fn params<P: Transfer>(&self) -> Result<P, Failure> {
        P::decode(self.params).map_err(|e| Failure::failed(format!("kernel parameters: {e}")))
    }

    fn arrays<K: Kind>(&self) -> Result<Vec<Rc<dyn Any>>, Failure> {
        let mut openers = Vec::new();
        K::openers(&mut openers);
        (self.fetch)(&openers).map_err(Failure::failed)
    }

    /// Runs `call` on this worker's share of the job's arrays.
    fn share<K: Kind, O>(
        &self,
        call: impl for<'a> Fn(&'a Ctx<'_>, K::Views<'a>) -> O,
    ) -> Result<Vec<(u32, O)>, Failure> {
        let arrays = self.arrays::<K>()?;
        let refs: Vec<&dyn Any> = arrays.iter().map(|a| &**a).collect();
        let share = Share {
            rank: self.rank,
            workers: self.workers,
            rows: self.rows,
            arrays: &refs,
            meet: self.meet,
            plan: self.plan,
            claim: self.claim,
        };
        // SAFETY: the pool gives each concurrent worker a distinct rank of
        // the same worker count, and the coordinator holds the job's
        // borrows of the arrays until every worker has reported.
        unsafe { share.run::<K, O>(call) }.map_err(Failure::failed)
    }
}

fn encode_all<R: Transfer>(partials: Vec<(u32, R)>) -> Output {
    partials
        .into_iter()
        .map(|(chunk, partial)| {
            let mut bytes = Vec::new();
            partial
                .encode(&mut bytes)
                .map_err(|e| Failure::failed(e.to_string()))?;
            Ok((chunk, bytes))
        })
        .collect()
}

/// The shape of a job: the type of its kernel and how a worker runs it.
/// The registry keys kernels by the shape's type name.
#[doc(hidden)]
pub trait Shape: 'static {
    /// The kernel's `fn` pointer type.
    type Fn: Copy + Send + Sync + 'static;

    /// The kernel's address in this process.
    fn address(f: Self::Fn) -> usize;

    /// The kernel at `address`.
    ///
    /// # Safety
    /// - `address` is [`address`](Self::address) of a kernel of this shape,
    ///   taken in this process or in one running the same image at the same
    ///   addresses (a forked copy of it).
    unsafe fn from_address(address: usize) -> Self::Fn;

    /// Runs this worker's share of the job.
    fn run(input: &Input<'_>, f: Self::Fn) -> Output;
}

/// The signature of every runner: the job's input and the kernel's address.
pub(crate) type Runner = unsafe fn(&Input<'_>, usize) -> Output;

/// The runner of shape `S`.
///
/// # Safety
/// As [`Shape::from_address`] for `kernel`.
pub(crate) unsafe fn runner<S: Shape>(input: &Input<'_>, kernel: usize) -> Output {
    // SAFETY: forwarded from the caller.
    let f = unsafe { S::from_address(kernel) };
    S::run(input, f)
}

/// Marks the types a shape stands for without owning values of them.
type Types<T> = std::marker::PhantomData<fn() -> T>;

/// `pool.run(args, params, f)`.
#[doc(hidden)]
pub struct RunShape<K, P>(Types<(K, P)>);
/// `pool.map_reduce_with(args, params, map, combine)`.
#[doc(hidden)]
pub struct MapShape<K, P, R>(Types<(K, P, R)>);
/// `pool.for_each_chunk(args, f)`.
#[doc(hidden)]
pub struct PlainRunShape<K>(Types<K>);
/// `pool.map_reduce(args, map, combine)`.
#[doc(hidden)]
pub struct PlainMapShape<K, R>(Types<(K, R)>);
/// `pool.double_buffer(a, b, steps, params, f)`.
#[doc(hidden)]
pub struct StepShape<K, P>(Types<(K, P)>);

macro_rules! fn_address {
    () => {
        fn address(f: Self::Fn) -> usize {
            crate::job::args::address(f)
        }

        unsafe fn from_address(address: usize) -> Self::Fn {
            // SAFETY: forwarded from the caller; `Self::Fn` is a kind's
            // kernel type.
            unsafe { crate::job::args::from_address(address) }
        }
    };
}

impl<K: Kind, P: Transfer> RunShape<K, P> {
    /// Runs this worker's share with `f`, a kernel or a closure.
    pub(crate) fn run_with(input: &Input<'_>, f: impl Fn(&Ctx<'_>, K::Views<'_>, &P)) -> Output {
        let params: P = input.params()?;
        input.share::<K, ()>(|ctx, views| f(ctx, views, &params))?;
        Ok(Vec::new())
    }
}

impl<K: Kind, P: Transfer> Shape for RunShape<K, P> {
    type Fn = K::RunFn<P>;
    fn_address!();

    fn run(input: &Input<'_>, f: Self::Fn) -> Output {
        Self::run_with(input, |ctx, views, params| K::call_run(f, ctx, views, params))
    }
}

impl<K: Kind, P: Transfer, R: Transfer> MapShape<K, P, R> {
    /// Runs this worker's share with `f`, a kernel or a closure.
    pub(crate) fn run_with(input: &Input<'_>, f: impl Fn(&Ctx<'_>, K::Views<'_>, &P) -> R) -> Output {
        let params: P = input.params()?;
        encode_all(input.share::<K, R>(|ctx, views| f(ctx, views, &params))?)
    }
}

impl<K: Kind, P: Transfer, R: Transfer> Shape for MapShape<K, P, R> {
    type Fn = K::MapFn<P, R>;
    fn_address!();

    fn run(input: &Input<'_>, f: Self::Fn) -> Output {
        Self::run_with(input, |ctx, views, params| K::call_map(f, ctx, views, params))
    }
}

impl<K: Kind> Shape for PlainRunShape<K> {
    type Fn = K::PlainRunFn;
    fn_address!();

    fn run(input: &Input<'_>, f: Self::Fn) -> Output {
        input.share::<K, ()>(|_, views| K::call_plain_run(f, views))?;
        Ok(Vec::new())
    }
}

impl<K: Kind, R: Transfer> Shape for PlainMapShape<K, R> {
    type Fn = K::PlainMapFn<R>;
    fn_address!();

    fn run(input: &Input<'_>, f: Self::Fn) -> Output {
        encode_all(input.share::<K, R>(|_, views| K::call_plain_map(f, views))?)
    }
}

impl<T, D, P> Shape for StepShape<RowsOf<T, D>, P>
where
    T: Element,
    D: Dimension + RemoveAxis + 'static,
    P: Transfer,
{
    type Fn = StepFn<T, D, P>;

    fn address(f: Self::Fn) -> usize {
        f as usize
    }

    unsafe fn from_address(address: usize) -> Self::Fn {
        // SAFETY: by the caller's promise, `address` is a kernel of exactly
        // this `fn` pointer type in this image.
        unsafe { std::mem::transmute::<usize, StepFn<T, D, P>>(address) }
    }

    fn run(input: &Input<'_>, f: Self::Fn) -> Output {
        let params: P = input.params()?;
        let arrays = input.arrays::<(RowsOf<T, D>, RowsOf<T, D>)>()?;
        let refs: Vec<&dyn Any> = arrays.iter().map(|a| &**a).collect();
        let share = Share {
            rank: input.rank,
            workers: input.workers,
            rows: input.rows,
            arrays: &refs,
            meet: input.meet,
            plan: input.plan,
            claim: input.claim,
        };
        // SAFETY: distinct ranks of one worker count (the pool's posting),
        // two different segments (checked by the coordinator before it
        // posted), untouched by the coordinator while the job runs.
        unsafe { share.steps(input.steps, &params, f) }.map_err(Failure::failed)?;
        Ok(Vec::new())
    }
}

/// Registers named kernels so that [`Start::Spawn`](crate::Start::Spawn)
/// workers, which are new processes running this executable, can find them.
///
/// A forked worker receives a kernel as its `fn` pointer; a spawned worker
/// has its own address space, so it looks the kernel up by name in a
/// registry built at compile time (with the `inventory` crate). Name a
/// kernel `fn` item and repeat its type, which the compiler checks:
///
/// ```no_run
/// use ndarray::{ArrayView1, ArrayViewMut1};
/// use shmpar::{Ctx, Pool, SharedArray, Start};
///
/// fn scale(_ctx: &Ctx, mut chunk: ArrayViewMut1<f64>, k: &f64) {
///     chunk *= *k;
/// }
/// fn sum(chunk: ArrayView1<f64>) -> f64 {
///     chunk.sum()
/// }
/// shmpar::register_kernel!(scale: fn(&Ctx, ArrayViewMut1<f64>, &f64));
/// shmpar::register_kernel!(sum: fn(ArrayView1<f64>) -> f64);
///
/// fn main() -> Result<(), shmpar::Error> {
///     shmpar::init(); // a spawned worker serves jobs from here
///     let pool = Pool::builder().workers(2).start(Start::Spawn).build()?;
///     let mut a = SharedArray::<f64, _>::create(1000)?;
///     a.view_mut().fill(1.0);
///     pool.run(&mut a, 3.0, scale)?;
///     assert_eq!(pool.map_reduce(&a, sum, |x, y| x + y)?, 3000.0);
///     Ok(())
/// }
/// ```
///
/// The shapes it accepts are those of the pool's methods:
/// `fn(&Ctx, VIEWS, &P)` ([`Pool::run`](crate::Pool::run)),
/// `fn(&Ctx, VIEWS, &P) -> R` ([`Pool::map_reduce_with`](crate::Pool::map_reduce_with)),
/// `fn(VIEWS)` ([`Pool::for_each_chunk`](crate::Pool::for_each_chunk)),
/// `fn(VIEWS) -> R` ([`Pool::map_reduce`](crate::Pool::map_reduce)) and
/// `fn(&Ctx, ArrayView, ArrayViewMut, &P)` ([`Pool::double_buffer`](crate::Pool::double_buffer)),
/// where `VIEWS` is what the job's arguments give: `ArrayView`,
/// `ArrayViewMut`, [`WholeView`](crate::WholeView), or a tuple of them.
#[macro_export]
macro_rules! register_kernel {
    ($f:path : fn($c:ty, $v:ty, &$p:ty $(,)?) -> $r:ty) => {
        $crate::register_kernel!(@entry $f, $crate::dispatch::MapShape<<$v as $crate::job::ViewsKind>::Kind, $p, $r>);
    };
    ($f:path : fn($c:ty, $v:ty, &$p:ty $(,)?)) => {
        $crate::register_kernel!(@entry $f, $crate::dispatch::RunShape<<$v as $crate::job::ViewsKind>::Kind, $p>);
    };
    ($f:path : fn($v:ty $(,)?) -> $r:ty) => {
        $crate::register_kernel!(@entry $f, $crate::dispatch::PlainMapShape<<$v as $crate::job::ViewsKind>::Kind, $r>);
    };
    ($f:path : fn($v:ty $(,)?)) => {
        $crate::register_kernel!(@entry $f, $crate::dispatch::PlainRunShape<<$v as $crate::job::ViewsKind>::Kind>);
    };
    ($f:path : fn($c:ty, $s:ty, $d:ty, &$p:ty $(,)?)) => {
        $crate::register_kernel!(@entry $f, $crate::dispatch::StepShape<<$s as $crate::job::ViewsKind>::Kind, $p>);
    };
    (@entry $f:path, $shape:ty) => {
        const _: () = {
            fn entry() -> $crate::dispatch::Entry {
                $crate::dispatch::Entry::new::<$shape>(concat!(module_path!(), "::", stringify!($f)), $f)
            }
            $crate::__private::inventory::submit! { $crate::dispatch::Registration(entry) }
        };
    };
}
