//! The arguments of an MPI job: the pool's argument kinds
//! ([`crate::job::args`]) over distributed and replicated arrays.
//!
//! An argument's [`Kind`] is the one the pool gives the same borrow of a
//! [`SharedArray`](crate::SharedArray), so a kernel's type, and the kernel,
//! are the same on both:
//!
//! | argument | kind | the kernel gets |
//! |---|---|---|
//! | `&mut a` ([`DistArray`]) | [`RowsMutOf`] | its own rows, mutable |
//! | `&a` ([`DistArray`], [`Replicated`]) | [`RowsOf`] | its own rows |
//! | [`whole(&r)`](whole) ([`Replicated`]) | [`WholeOf`] | the node's copy |
//! | [`whole(&a)`](whole) ([`DistArray`]) | [`WholeOf`] | a copy gathered for the job |

use std::any::Any;
use std::ops::Range;

use ndarray::{Dimension, RemoveAxis};
use shmpar_core::{Element, Segment, SharedArray};

use super::World;
use super::array::{DistArray, Replicated};
use crate::error::Result;
use crate::job::{Kind, RowsMutOf, RowsOf, WholeOf};

/// Makes a node-local copy of a distributed argument for one job
/// (collective): the copy's [`SharedArray`], boxed.
pub(crate) type Gather = fn(&World, &dyn Any) -> Result<Box<dyn Any>>;

/// One argument of an MPI job, as the job sees it on this rank.
#[doc(hidden)]
pub struct DistArg<'s> {
    /// The array the caller passed ([`DistArray`] or [`Replicated`]).
    pub(crate) source: &'s dyn Any,
    /// The node's [`SharedArray`] behind it.
    pub(crate) local: &'s dyn Any,
    pub(crate) segment: &'s Segment,
    /// Whether the argument is split by rows (or whole).
    pub(crate) split: bool,
    /// Rows of the whole array.
    pub(crate) rows: usize,
    /// The rows of `local` the kernel sees.
    pub(crate) view_rows: Range<usize>,
    /// The number of ranks the array was made for.
    pub(crate) ranks: usize,
    /// For a whole distributed array: how to gather it.
    pub(crate) gather: Option<Gather>,
}

/// The pool's argument kinds that MPI jobs can build: every leaf kind and
/// tuples of them.
pub trait DistKind: Kind {
    /// Builds the views from each argument's node array and rows.
    ///
    /// # Safety
    /// As [`Kind::views`]: no view made elsewhere in this process overlaps
    /// a mutable view made here, and no other rank writes the rows a view
    /// covers while it lives (each rank writes its own rows only; whole
    /// arguments are never written).
    #[doc(hidden)]
    unsafe fn local_views<'a>(
        locals: &mut std::slice::Iter<'_, (&'a dyn Any, Range<usize>)>,
    ) -> Result<Self::Views<'a>, String>;
}

macro_rules! leaf_kind {
    ($($kind:ident),+) => {$(
        impl<T: Element, D: Dimension + RemoveAxis + 'static> DistKind for $kind<T, D> {
            unsafe fn local_views<'a>(
                locals: &mut std::slice::Iter<'_, (&'a dyn Any, Range<usize>)>,
            ) -> Result<Self::Views<'a>, String> {
                let (array, rows) = locals
                    .next()
                    .ok_or_else(|| String::from("the job has fewer arrays than the kernel takes"))?;
                // SAFETY: forwarded from the caller; the array is the node's
                // SharedArray of this argument and `rows` the rows it sees.
                unsafe { <Self as Kind>::views(&mut std::slice::from_ref(array).iter(), rows.clone()) }
            }
        }
    )+};
}
leaf_kind!(RowsOf, RowsMutOf, WholeOf);

/// The arguments of an MPI job: `&a`, `&mut a`, [`whole(&a)`](whole), or a
/// tuple of up to six of those, over [`DistArray`]s and [`Replicated`]s.
/// See the [module](super) docs.
pub trait DistArgs {
    /// The kind of the same arguments on the pool: the kernel's type.
    type Kind: DistKind;

    /// Appends each argument's description, in order.
    #[doc(hidden)]
    fn describe<'s>(&'s self, out: &mut Vec<DistArg<'s>>);
}

/// An argument read whole by every rank: see [`whole`].
#[derive(Debug)]
pub struct Whole<'x, S>(&'x S);

/// What [`whole`] takes: a [`Replicated`] array (read in place) or a
/// [`DistArray`] (gathered for the job).
pub trait WholeSource: sealed::Sealed {}
impl<T: Element, D: Dimension> WholeSource for DistArray<T, D> {}
impl<T: Element, D: Dimension> WholeSource for Replicated<T, D> {}

mod sealed {
    pub trait Sealed {}
    impl<T: shmpar_core::Element, D: ndarray::Dimension> Sealed for super::DistArray<T, D> {}
    impl<T: shmpar_core::Element, D: ndarray::Dimension> Sealed for super::Replicated<T, D> {}
}

/// Passes an array whole (read only) to every rank of a job, as
/// [`shmpar::whole`](crate::whole) does on the pool: a [`Replicated`]
/// array is read in place from the node's copy; a [`DistArray`] is gathered
/// into a copy per node for the job (an `MPI_Bcast` of the whole array
/// between nodes: gather once with [`DistArray::allgather`] to reuse it).
pub fn whole<S: WholeSource>(array: &S) -> Whole<'_, S> {
    Whole(array)
}

fn gather<T: Element, D: Dimension + RemoveAxis + 'static>(
    world: &World,
    source: &dyn Any,
) -> Result<Box<dyn Any>> {
    let array = source
        .downcast_ref::<DistArray<T, D>>()
        .ok_or_else(|| crate::Error::Mismatch {
            reason: "a whole argument is not the DistArray it was described as".into(),
        })?;
    Ok(Box::new(array.allgather(world)?.into_local_array()))
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> DistArgs for &DistArray<T, D> {
    type Kind = RowsOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<DistArg<'s>>) {
        out.push(split_arg(*self));
    }
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> DistArgs for &mut DistArray<T, D> {
    type Kind = RowsMutOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<DistArg<'s>>) {
        out.push(split_arg(&**self));
    }
}

fn split_arg<T: Element, D: Dimension + RemoveAxis + 'static>(array: &DistArray<T, D>) -> DistArg<'_> {
    DistArg {
        source: array,
        local: array.local_array(),
        segment: array.segment(),
        split: true,
        rows: array.rows(),
        view_rows: array.local_rows(array.own_rows()),
        ranks: array.ranks(),
        gather: None,
    }
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> DistArgs for &Replicated<T, D> {
    type Kind = RowsOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<DistArg<'s>>) {
        out.push(DistArg {
            source: *self,
            local: self.local_array(),
            segment: self.segment(),
            split: true,
            rows: self.rows(),
            view_rows: self.own_rows(),
            ranks: self.ranks(),
            gather: None,
        });
    }
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> DistArgs for Whole<'_, DistArray<T, D>> {
    type Kind = WholeOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<DistArg<'s>>) {
        out.push(DistArg {
            gather: Some(gather::<T, D>),
            split: false,
            view_rows: 0..self.0.rows(),
            ..split_arg(self.0)
        });
    }
}

impl<T: Element, D: Dimension + RemoveAxis + 'static> DistArgs for Whole<'_, Replicated<T, D>> {
    type Kind = WholeOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<DistArg<'s>>) {
        let array: &SharedArray<T, D> = self.0.local_array();
        out.push(DistArg {
            source: self.0,
            local: array,
            segment: array.segment(),
            split: false,
            rows: array.rows(),
            view_rows: 0..array.rows(),
            ranks: self.0.ranks(),
            gather: None,
        });
    }
}

macro_rules! tuple_args {
    ($($name:ident)+) => {
        impl<$($name: DistKind),+> DistKind for ($($name,)+) {
            unsafe fn local_views<'a>(
                locals: &mut std::slice::Iter<'_, (&'a dyn Any, Range<usize>)>,
            ) -> Result<Self::Views<'a>, String> {
                // SAFETY: forwarded from the caller, argument by argument.
                Ok(($( unsafe { $name::local_views(locals)? },)+))
            }
        }

        impl<$($name: DistArgs),+> DistArgs for ($($name,)+) {
            type Kind = ($($name::Kind,)+);

            #[allow(non_snake_case)]
            fn describe<'s>(&'s self, out: &mut Vec<DistArg<'s>>) {
                let ($($name,)+) = self;
                $( $name.describe(out); )+
            }
        }
    };
}
tuple_args!(A);
tuple_args!(A B);
tuple_args!(A B C);
tuple_args!(A B C E);
tuple_args!(A B C E F);
tuple_args!(A B C E F G);

/// The rows every split argument shares, after checking the arguments as
/// the pool does (at least one split argument, equal rows, no segment
/// twice), and that every array belongs to a world of this size. Every
/// rank passes the same arguments, so every rank gets the same answer.
pub(crate) fn check(args: &[DistArg<'_>], ranks: usize) -> Result<usize> {
    let mismatch = |reason: String| crate::Error::Mismatch { reason };
    let mut rows = None;
    for (i, arg) in args.iter().enumerate() {
        if arg.ranks != ranks {
            return Err(mismatch(format!(
                "{} was made for {} ranks, the job has {ranks}",
                arg.segment.name(),
                arg.ranks
            )));
        }
        if args[..i]
            .iter()
            .any(|a| a.segment.identity() == arg.segment.identity())
        {
            return Err(mismatch(format!(
                "the array {} is passed twice; a job takes each array once",
                arg.segment.name()
            )));
        }
        if !arg.split {
            continue;
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
        mismatch("a job needs at least one split argument (`&a` or `&mut a`) to divide among ranks".into())
    })
}
