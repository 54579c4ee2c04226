//! A job's arguments: which arrays it works on and how each is seen.
//!
//! The coordinator passes a borrow of each array, and the borrow says what
//! the kernel may do with it:
//!
//! | argument | the kernel gets | kind |
//! |---|---|---|
//! | `&mut a` | its own rows of `a`, mutable ([`ArrayViewMut`]) | [`RowsMutOf`] |
//! | `&a` | its own rows of `a`, read only ([`ArrayView`]) | [`RowsOf`] |
//! | [`whole(&a)`](whole) | all of `a`, read only ([`WholeView`]) | [`WholeOf`] |
//!
//! and tuples of those, up to six. Every *split* argument (`&a`, `&mut a`)
//! shares the job's split of rows along axis 0, so they must have the same
//! number of rows. Rust's borrow rules then make races impossible in safe
//! code: an array borrowed `&mut` cannot also be passed whole or twice, and
//! since a process holds one handle per segment
//! ([`shmpar_core::Error::AlreadyOpen`]), two arguments can never be the
//! same memory under two names.

use std::any::{Any, TypeId};
use std::ops::{Deref, Range};
use std::rc::Rc;

use ndarray::{ArrayView, ArrayViewMut, Axis, Dimension, RemoveAxis};
use shmpar_core::{Element, Segment, SharedArray};

use crate::job::{Ctx, Schedule};

/// How a worker turns an attached segment into the typed array an argument
/// needs.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Opener {
    pub(crate) type_id: fn() -> TypeId,
    pub(crate) open: fn(Segment) -> Result<Rc<dyn Any>, shmpar_core::Error>,
}

pub(crate) fn opener<T: Element, D: Dimension + 'static>() -> Opener {
    Opener {
        type_id: TypeId::of::<SharedArray<T, D>>,
        open: |segment| Ok(Rc::new(SharedArray::<T, D>::from_segment(segment)?)),
    }
}

/// One argument as the coordinator describes it to the workers.
#[doc(hidden)]
pub struct ArgRef<'s> {
    pub(crate) segment: &'s Segment,
    pub(crate) array: &'s dyn Any,
    pub(crate) rows: usize,
    pub(crate) split: bool,
}

pub(crate) mod sealed {
    /// Only this crate's kinds: their kernel types are `fn` pointers.
    pub trait Sealed {}
}

/// What a job's arguments become inside a worker: the views a kernel gets,
/// and the `fn` pointer types of the kernels over them.
///
/// Implemented by the markers [`RowsOf`], [`RowsMutOf`], [`WholeOf`] and
/// tuples of them; you never implement it yourself. The kernel types are
/// associated types (not aliases over [`Kind::Views`]) so that the
/// compiler can check a named `fn` item against them as well as a closure.
pub trait Kind: sealed::Sealed + 'static {
    /// What the kernel receives for these arguments.
    type Views<'a>;
    /// `fn(&Ctx, views, &P)`: [`Pool::run`](crate::Pool::run).
    type RunFn<P: 'static>: Copy + Send + Sync + 'static;
    /// `fn(&Ctx, views, &P) -> R`: [`Pool::map_reduce_with`](crate::Pool::map_reduce_with).
    type MapFn<P: 'static, R: 'static>: Copy + Send + Sync + 'static;
    /// `fn(views)`: [`Pool::for_each_chunk`](crate::Pool::for_each_chunk).
    type PlainRunFn: Copy + Send + Sync + 'static;
    /// `fn(views) -> R`: [`Pool::map_reduce`](crate::Pool::map_reduce).
    type PlainMapFn<R: 'static>: Copy + Send + Sync + 'static;

    /// Calls a run kernel.
    #[doc(hidden)]
    fn call_run<P: 'static>(f: Self::RunFn<P>, ctx: &Ctx<'_>, views: Self::Views<'_>, params: &P);
    /// Calls a map kernel.
    #[doc(hidden)]
    fn call_map<P: 'static, R: 'static>(
        f: Self::MapFn<P, R>,
        ctx: &Ctx<'_>,
        views: Self::Views<'_>,
        params: &P,
    ) -> R;
    /// Calls a plain run kernel.
    #[doc(hidden)]
    fn call_plain_run(f: Self::PlainRunFn, views: Self::Views<'_>);
    /// Calls a plain map kernel.
    #[doc(hidden)]
    fn call_plain_map<R: 'static>(f: Self::PlainMapFn<R>, views: Self::Views<'_>) -> R;

    /// The opener of each array, in order.
    #[doc(hidden)]
    fn openers(out: &mut Vec<Opener>);

    /// Builds the views for `rows` from the job's arrays in this process.
    ///
    /// # Safety
    /// - `arrays` are the job's arrays in argument order, and no view made
    ///   from them elsewhere in this process overlaps a mutable view made
    ///   here (split rows of concurrent calls are disjoint; whole and
    ///   split-read arrays are never written by the job).
    #[doc(hidden)]
    unsafe fn views<'a>(
        arrays: &mut std::slice::Iter<'_, &'a dyn Any>,
        rows: Range<usize>,
    ) -> Result<Self::Views<'a>, String>;
}

/// The views and kernel types of a [`Kind`] whose views are `$views` (a
/// type over lifetime `$a`), and the calls through them: the same for
/// every kind, so written once.
macro_rules! kernel_types {
    ($a:lifetime, $views:ty) => {
        type Views<$a> = $views;
        type RunFn<P: 'static> = for<$a, 'b, 'c, 'p> fn(&'c Ctx<'b>, $views, &'p P);
        type MapFn<P: 'static, R: 'static> = for<$a, 'b, 'c, 'p> fn(&'c Ctx<'b>, $views, &'p P) -> R;
        type PlainRunFn = for<$a> fn($views);
        type PlainMapFn<R: 'static> = for<$a> fn($views) -> R;

        fn call_run<P: 'static>(f: Self::RunFn<P>, ctx: &Ctx<'_>, views: Self::Views<'_>, params: &P) {
            f(ctx, views, params)
        }
        fn call_map<P: 'static, R: 'static>(
            f: Self::MapFn<P, R>,
            ctx: &Ctx<'_>,
            views: Self::Views<'_>,
            params: &P,
        ) -> R {
            f(ctx, views, params)
        }
        fn call_plain_run(f: Self::PlainRunFn, views: Self::Views<'_>) {
            f(views)
        }
        fn call_plain_map<R: 'static>(f: Self::PlainMapFn<R>, views: Self::Views<'_>) -> R {
            f(views)
        }
    };
}
pub(crate) use kernel_types;

/// A kernel's address: every kernel type of a [`Kind`] is a `fn` pointer.
pub(crate) fn address<F: Copy + 'static>(f: F) -> usize {
    const { assert!(size_of::<F>() == size_of::<usize>()) };
    // SAFETY: `F` is one of a `Kind`'s kernel types (the trait is sealed and
    // each of its implementations defines them as `fn` pointers), whose
    // bits are the function's address, of the size of a `usize`.
    unsafe { std::mem::transmute_copy::<F, usize>(&f) }
}

/// The kernel at `address`.
///
/// # Safety
/// - `F` is one of a [`Kind`]'s kernel types, and `address` came from
///   [`address`] of a kernel of type `F` in this image at these addresses
///   (this process, or a fork of it).
pub(crate) unsafe fn from_address<F: Copy + 'static>(address: usize) -> F {
    const { assert!(size_of::<F>() == size_of::<usize>()) };
    // SAFETY: the caller's promise: the bits of a valid `F`.
    unsafe { std::mem::transmute_copy::<usize, F>(&address) }
}

/// The arguments of a job, as the coordinator passes them: `&a`, `&mut a`,
/// [`whole(&a)`](whole), or a tuple of those. See the [module](self) docs.
pub trait Args {
    /// What the arguments become in a worker.
    type Kind: Kind;

    /// Appends each argument's description, in order.
    #[doc(hidden)]
    fn describe<'s>(&'s self, out: &mut Vec<ArgRef<'s>>);

    /// How the job divides its rows: [`Schedule::Static`] unless the
    /// arguments come from [`Schedule::on`].
    fn schedule(&self) -> Schedule {
        Schedule::Static
    }
}

/// Maps the views a kernel is declared with back to their [`Kind`], so that
/// [`register_kernel!`](crate::register_kernel) can register a named kernel from its signature.
pub trait ViewsKind {
    /// The arguments' kind.
    type Kind: Kind;
}

/// Marker kind: the worker's own rows of an array, read only.
pub struct RowsOf<T, D>(std::marker::PhantomData<fn() -> (T, D)>);
/// Marker kind: the worker's own rows of an array, mutable.
pub struct RowsMutOf<T, D>(std::marker::PhantomData<fn() -> (T, D)>);
/// Marker kind: a whole array, read only.
pub struct WholeOf<T, D>(std::marker::PhantomData<fn() -> (T, D)>);

/// An argument read whole by every worker: see [`whole`].
#[derive(Clone, Copy, Debug)]
pub struct Whole<'x, T: Element, D: Dimension>(&'x SharedArray<T, D>);

/// Passes `array` whole (read only) to every worker of a job, instead of
/// each worker's own rows.
///
/// ```
/// # fn main() -> Result<(), shmpar::Error> {
/// use shmpar::{Pool, SharedArray, whole};
/// let pool = Pool::builder().workers(2).build()?;
/// let x = SharedArray::from_array(&ndarray::arr1(&[1.0f64, 2.0]))?;
/// let a = SharedArray::from_array(&ndarray::arr2(&[[1.0f64, 0.0], [0.0, 2.0], [1.0, 1.0]]))?;
/// let mut y = SharedArray::<f64, _>::create(3)?;
/// // y = A·x: each worker its rows of A and y, all of x.
/// pool.run((&a, &mut y, whole(&x)), (), |_ctx, (a, mut y, x), _| {
///     for (row, out) in a.rows().into_iter().zip(y.iter_mut()) {
///         *out = row.dot(&*x);
///     }
/// })?;
/// assert_eq!(y.view().to_vec(), [1.0, 4.0, 3.0]);
/// # Ok(()) }
/// ```
pub fn whole<T: Element, D: Dimension>(array: &SharedArray<T, D>) -> Whole<'_, T, D> {
    Whole(array)
}

/// A whole array, read only, as a kernel sees a [`whole`] argument. It
/// dereferences to an [`ArrayView`].
#[derive(Debug)]
pub struct WholeView<'a, T, D: Dimension>(ArrayView<'a, T, D>);

impl<'a, T, D: Dimension> WholeView<'a, T, D> {
    /// The view itself.
    pub fn into_view(self) -> ArrayView<'a, T, D> {
        self.0
    }
}

impl<'a, T, D: Dimension> Deref for WholeView<'a, T, D> {
    type Target = ArrayView<'a, T, D>;

    fn deref(&self) -> &ArrayView<'a, T, D> {
        &self.0
    }
}

pub(crate) fn next_array<'a, T: Element, D: Dimension + 'static>(
    arrays: &mut std::slice::Iter<'_, &'a dyn Any>,
) -> Result<&'a SharedArray<T, D>, String> {
    let any: &'a dyn Any = *arrays
        .next()
        .ok_or_else(|| String::from("the job has fewer arrays than the kernel takes"))?;
    any.downcast_ref::<SharedArray<T, D>>().ok_or_else(|| {
        format!(
            "an array of the job is not a SharedArray<{}, {}>",
            std::any::type_name::<T>(),
            std::any::type_name::<D>()
        )
    })
}

fn check_rows<T: Element, D: Dimension>(
    array: &SharedArray<T, D>,
    rows: &Range<usize>,
) -> Result<(), String> {
    if array.shape().is_empty() {
        return Err(format!(
            "{} is 0-dimensional and cannot be split into rows; pass it with whole()",
            array.name()
        ));
    }
    if rows.start > rows.end || rows.end > array.rows() {
        return Err(format!(
            "rows {rows:?} are outside the {} rows of {}",
            array.rows(),
            array.name()
        ));
    }
    Ok(())
}

impl<T, D> sealed::Sealed for RowsOf<T, D> {}
impl<T, D> sealed::Sealed for RowsMutOf<T, D> {}
impl<T, D> sealed::Sealed for WholeOf<T, D> {}

impl<T: Element, D: Dimension + RemoveAxis + 'static> Kind for RowsOf<T, D> {
    kernel_types!('a, ArrayView<'a, T, D>);

    fn openers(out: &mut Vec<Opener>) {
        out.push(opener::<T, D>());
    }

    unsafe fn views<'a>(
        arrays: &mut std::slice::Iter<'_, &'a dyn Any>,
        rows: Range<usize>,
    ) -> Result<ArrayView<'a, T, D>, String> {
        let array = next_array::<T, D>(arrays)?;
        check_rows(array, &rows)?;
        Ok(array.view().slice_axis_move(Axis(0), rows.into()))
    }
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> Kind for RowsMutOf<T, D> {
    kernel_types!('a, ArrayViewMut<'a, T, D>);

    fn openers(out: &mut Vec<Opener>) {
        out.push(opener::<T, D>());
    }

    unsafe fn views<'a>(
        arrays: &mut std::slice::Iter<'_, &'a dyn Any>,
        rows: Range<usize>,
    ) -> Result<ArrayViewMut<'a, T, D>, String> {
        let array = next_array::<T, D>(arrays)?;
        check_rows(array, &rows)?;
        // SAFETY: the caller guarantees that concurrent calls get disjoint
        // `rows` and that nothing else views this array during the job.
        unsafe { array.rows_mut_unchecked(rows) }.map_err(|e| e.to_string())
    }
}

impl<T: Element, D: Dimension + 'static> Kind for WholeOf<T, D> {
    kernel_types!('a, WholeView<'a, T, D>);

    fn openers(out: &mut Vec<Opener>) {
        out.push(opener::<T, D>());
    }

    unsafe fn views<'a>(
        arrays: &mut std::slice::Iter<'_, &'a dyn Any>,
        _rows: Range<usize>,
    ) -> Result<WholeView<'a, T, D>, String> {
        Ok(WholeView(next_array::<T, D>(arrays)?.view()))
    }
}

pub(crate) fn describe_one<'s, T: Element, D: Dimension + 'static>(
    array: &'s SharedArray<T, D>,
    split: bool,
) -> ArgRef<'s> {
    ArgRef {
        segment: array.segment(),
        array,
        rows: array.rows(),
        split,
    }
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> Args for &SharedArray<T, D> {
    type Kind = RowsOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<ArgRef<'s>>) {
        out.push(describe_one(*self, true));
    }
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> Args for &mut SharedArray<T, D> {
    type Kind = RowsMutOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<ArgRef<'s>>) {
        out.push(describe_one(&**self, true));
    }
}

impl<T: Element, D: Dimension + 'static> Args for Whole<'_, T, D> {
    type Kind = WholeOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<ArgRef<'s>>) {
        out.push(describe_one(self.0, false));
    }
}

impl<'a, T: Element, D: Dimension + RemoveAxis + 'static> ViewsKind for ArrayView<'a, T, D> {
    type Kind = RowsOf<T, D>;
}
impl<'a, T: Element, D: Dimension + RemoveAxis + 'static> ViewsKind for ArrayViewMut<'a, T, D> {
    type Kind = RowsMutOf<T, D>;
}
impl<'a, T: Element, D: Dimension + 'static> ViewsKind for WholeView<'a, T, D> {
    type Kind = WholeOf<T, D>;
}

macro_rules! tuple_args {
    ($($name:ident)+) => {
        impl<$($name: Kind),+> sealed::Sealed for ($($name,)+) {}

        impl<$($name: Kind),+> Kind for ($($name,)+) {
            kernel_types!('a, ($($name::Views<'a>,)+));

            fn openers(out: &mut Vec<Opener>) {
                $( $name::openers(out); )+
            }

            unsafe fn views<'a>(
                arrays: &mut std::slice::Iter<'_, &'a dyn Any>,
                rows: Range<usize>,
            ) -> Result<Self::Views<'a>, String> {
                // SAFETY: forwarded from the caller, argument by argument.
                Ok(($( unsafe { $name::views(arrays, rows.clone())? },)+))
            }
        }

        impl<$($name: Args),+> Args for ($($name,)+) {
            type Kind = ($($name::Kind,)+);

            #[allow(non_snake_case)]
            fn describe<'s>(&'s self, out: &mut Vec<ArgRef<'s>>) {
                let ($($name,)+) = self;
                $( $name.describe(out); )+
            }
        }

        impl<$($name: ViewsKind),+> ViewsKind for ($($name,)+) {
            type Kind = ($($name::Kind,)+);
        }
    };
}
tuple_args!(A);
tuple_args!(A B);
tuple_args!(A B C);
tuple_args!(A B C E);
tuple_args!(A B C E F);
tuple_args!(A B C E F G);

/// The most arrays one job takes, nested tuples counted out, on every
/// backend (a pool's control segment describes at most this many).
pub(crate) const MAX_ARRAYS: usize = 6;

/// The row count every split argument shares, after checking the
/// arguments: at least one split argument, equal row counts, no 0-dimensional
/// split argument, and no segment twice.
pub(crate) fn check(args: &[ArgRef<'_>], schedule: Schedule) -> crate::Result<usize> {
    let mismatch = |reason: String| crate::Error::Mismatch { reason };
    if schedule == (Schedule::Dynamic { rows: 0 }) {
        return Err(crate::Error::InvalidSchedule {
            reason: "Schedule::Dynamic needs chunks of at least one row".into(),
        });
    }
    if args.len() > MAX_ARRAYS {
        return Err(mismatch(format!(
            "a job takes at most {MAX_ARRAYS} arrays, and this one has {}",
            args.len()
        )));
    }
    let mut rows = None;
    for (i, arg) in args.iter().enumerate() {
        if args[..i]
            .iter()
            .any(|a| a.segment.identity() == arg.segment.identity())
        {
            return Err(mismatch(format!(
                "the segment {} is passed twice; a job takes each array once",
                arg.segment.name()
            )));
        }
        if !arg.split {
            continue;
        }
        if arg.segment.shape().is_empty() {
            return Err(mismatch(format!(
                "{} is 0-dimensional and cannot be split into rows; pass it with whole()",
                arg.segment.name()
            )));
        }
        match rows {
            None => rows = Some(arg.rows),
            Some(r) if r != arg.rows => {
                return Err(mismatch(format!(
                    "split arguments must have the same number of rows (axis 0): {} has {}, the first has {r}",
                    arg.segment.name(),
                    arg.rows
                )));
            }
            Some(_) => {}
        }
    }
    rows.ok_or_else(|| {
        mismatch("a job needs at least one split argument (`&a` or `&mut a`) to divide among workers".into())
    })
}
