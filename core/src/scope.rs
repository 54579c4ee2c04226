//! [`Scope`]: owns every segment created through it and removes them all
//! when it ends, panic included: the counterpart of Python's
//! `SharedMemoryManager`.

use std::sync::Mutex;

use crate::segment::{self, Location};
use crate::{Element, SegmentOptions, SharedArray};
use ndarray::{ArrayBase, Data, Dimension, IntoDimension};

use crate::error::Result;

/// A guard that removes every segment created through it when it drops,
/// even ones that were persisted or whose handles were leaked.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), shmpar_core::Error> {
/// let name;
/// {
///     let scope = shmpar_core::Scope::new();
///     let a = scope.create::<f64, _>(1000)?;
///     name = a.name();
///     std::mem::forget(a); // even a leaked handle is cleaned up
/// }
/// assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct Scope {
    owned: Mutex<Vec<(Location, (u64, u64))>>,
}

impl Scope {
    /// An empty scope.
    pub fn new() -> Scope {
        Scope::default()
    }

    fn own<T: Element, D: Dimension>(&self, array: &SharedArray<T, D>) {
        let entry = (array.segment().location().clone(), array.segment().identity());
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    /// Creates a zero-filled array owned by this scope.
    ///
    /// # Errors
    /// As [`SharedArray::create`].
    pub fn create<T: Element, D: Dimension>(
        &self,
        shape: impl IntoDimension<Dim = D>,
    ) -> Result<SharedArray<T, D>> {
        self.create_with(&SegmentOptions::new(), shape)
    }

    /// Creates a zero-filled array owned by this scope, as `options` say.
    ///
    /// # Errors
    /// As [`SharedArray::create_with`].
    pub fn create_with<T: Element, D: Dimension>(
        &self,
        options: &SegmentOptions,
        shape: impl IntoDimension<Dim = D>,
    ) -> Result<SharedArray<T, D>> {
        let array = SharedArray::create_with(options, shape)?;
        self.own(&array);
        Ok(array)
    }

    /// Creates an array holding a copy of `source`, owned by this scope.
    ///
    /// # Errors
    /// As [`SharedArray::from_array`].
    pub fn from_array<T: Element, D: Dimension, S: Data<Elem = T>>(
        &self,
        source: &ArrayBase<S, D>,
    ) -> Result<SharedArray<T, D>> {
        let array = SharedArray::from_array(source)?;
        self.own(&array);
        Ok(array)
    }

    /// Makes this scope responsible for removing an existing array's segment.
    pub fn adopt<T: Element, D: Dimension>(&self, array: &SharedArray<T, D>) {
        self.own(array);
    }

    /// Number of segments the scope owns.
    pub fn len(&self) -> usize {
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the scope owns no segment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let owned = std::mem::take(self.owned.get_mut().unwrap_or_else(|p| p.into_inner()));
        for (location, identity) in owned {
            // Only our object: a namesake created since is left alone.
            let _ = segment::unlink_if(&location, identity);
        }
    }
}
