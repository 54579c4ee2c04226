//! An argument every worker may write, one at a time, under a lock: the
//! `multiprocessing.Lock` counterpart, with the data it guards.

use std::any::Any;
use std::ops::{Deref, DerefMut, Range};

use ndarray::{ArrayViewMut, Dimension};
use shmpar_core::sync::LockGuard;
use shmpar_core::{Element, SharedArray};

use crate::error::{Error, Result};
use crate::job::Ctx;
use crate::job::args::{
    ArgRef, Args, Kind, Opener, ViewsKind, describe_one, kernel_types, next_array, opener, sealed,
};

/// An argument written by every worker under a lock: see [`locked`].
#[derive(Debug)]
pub struct Locked<'x, T: Element, D: Dimension>(&'x mut SharedArray<T, D>);

/// Passes `array` to every worker of a job behind a lock: a kernel reaches
/// the data only through [`LockedView::with_lock`] (or
/// [`LockedView::lock`]'s guard), so workers update it one at a time, in
/// any order. The lock is the array's own robust in-segment lock: if a
/// worker dies holding it, the next taker gets it and is told
/// ([`LockedGuard::previous_owner_died`]).
///
/// ```
/// # fn main() -> Result<(), shmpar::Error> {
/// use shmpar::{Pool, SharedArray, locked};
/// let pool = Pool::builder().workers(2).build()?;
/// let data = SharedArray::from_array(&ndarray::Array1::from_iter(0..1000u64))?;
/// let mut total = SharedArray::<u64, _>::create(1)?;
/// pool.run((&data, locked(&mut total)), (), |_ctx, (rows, total), _| {
///     let mine: u64 = rows.sum();
///     total.with_lock(|mut t| t[0] += mine);
/// })?;
/// assert_eq!(total.view()[0], 999 * 1000 / 2);
/// # Ok(()) }
/// ```
pub fn locked<T: Element, D: Dimension>(array: &mut SharedArray<T, D>) -> Locked<'_, T, D> {
    Locked(array)
}

/// Marker kind: a whole array behind its lock.
pub struct LockedOf<T, D>(std::marker::PhantomData<fn() -> (T, D)>);

/// What a kernel gets for a [`locked`] argument: the array, reachable only
/// under its lock.
pub struct LockedView<'a, T: Element, D: Dimension> {
    array: &'a SharedArray<T, D>,
}

impl<T: Element, D: Dimension> std::fmt::Debug for LockedView<'_, T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedView")
            .field("array", &self.array.name())
            .finish()
    }
}

/// The lock of a [`locked`] argument, held: dereferences to a mutable view
/// of the whole array. Dropping it unlocks.
pub struct LockedGuard<'g, T, D: Dimension> {
    view: ArrayViewMut<'g, T, D>,
    guard: LockGuard<'g>,
}

impl<'a, T: Element, D: Dimension> LockedView<'a, T, D> {
    /// Takes the lock, waiting while another worker holds it.
    ///
    /// # Errors
    /// [`Error::Core`] with `WouldDeadlock` if this thread already holds it
    /// (a second guard at once would alias the first).
    pub fn lock(&self) -> Result<LockedGuard<'_, T, D>> {
        let guard = self.array.segment().lock().lock().map_err(Error::Core)?;
        // SAFETY: every view of this array during the job is made here,
        // under its lock (the job takes each array once, and a locked
        // argument is reachable only through this type), and the lock is
        // held until the guard, which owns the view, drops.
        let view = unsafe { self.array.view_mut_unchecked() };
        Ok(LockedGuard { view, guard })
    }

    /// Runs `f` on the array while holding its lock.
    ///
    /// # Panics
    /// If this thread already holds the lock (see [`lock`](Self::lock)):
    /// the job then fails with that message.
    pub fn with_lock<R>(&self, f: impl FnOnce(ArrayViewMut<'_, T, D>) -> R) -> R {
        let mut guard = match self.lock() {
            Ok(guard) => guard,
            Err(e) => panic!("cannot take the lock of {}: {e}", self.array.name()),
        };
        f(guard.view.view_mut())
    }
}

impl<T, D: Dimension> LockedGuard<'_, T, D> {
    /// Whether the lock was taken over from a worker that died holding it:
    /// the data may be half-updated.
    pub fn previous_owner_died(&self) -> bool {
        self.guard.previous_owner_died()
    }
}

impl<'g, T, D: Dimension> Deref for LockedGuard<'g, T, D> {
    type Target = ArrayViewMut<'g, T, D>;

    fn deref(&self) -> &ArrayViewMut<'g, T, D> {
        &self.view
    }
}

impl<'g, T, D: Dimension> DerefMut for LockedGuard<'g, T, D> {
    fn deref_mut(&mut self) -> &mut ArrayViewMut<'g, T, D> {
        &mut self.view
    }
}

impl<T, D> sealed::Sealed for LockedOf<T, D> {}

impl<T: Element, D: Dimension + 'static> Kind for LockedOf<T, D> {
    kernel_types!('a, LockedView<'a, T, D>);

    fn openers(out: &mut Vec<Opener>) {
        out.push(opener::<T, D>());
    }

    unsafe fn views<'a>(
        arrays: &mut std::slice::Iter<'_, &'a dyn Any>,
        _rows: Range<usize>,
    ) -> std::result::Result<LockedView<'a, T, D>, String> {
        Ok(LockedView {
            array: next_array::<T, D>(arrays)?,
        })
    }
}

impl<T: Element, D: Dimension + 'static> Args for Locked<'_, T, D> {
    type Kind = LockedOf<T, D>;

    fn describe<'s>(&'s self, out: &mut Vec<ArgRef<'s>>) {
        out.push(describe_one(&*self.0, false));
    }
}

impl<'a, T: Element, D: Dimension + 'static> ViewsKind for LockedView<'a, T, D> {
    type Kind = LockedOf<T, D>;
}
