//! [`SharedArray`]: a typed n-dimensional array in a segment.

use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;

use ndarray::{ArrayBase, ArrayView, ArrayViewMut, Axis, Data, Dimension, IntoDimension, RemoveAxis};

use crate::chunk::chunk_range;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::segment::{Location, Segment, SegmentOptions};

/// A typed n-dimensional array (C order) in a shared segment.
///
/// Any process can attach to it by name and see the same elements; nothing
/// is copied between processes. The elements start at byte 0 of the
/// segment, so NumPy attaches with `np.ndarray(shape, dtype,
/// buffer=shm.buf)` (see `docs/segment-layout.md`).
///
/// Views borrow the array, so the borrow checker, not the user, keeps a
/// view from outliving its mapping:
///
/// ```compile_fail
/// use shmpar_core::SharedArray;
/// let view = {
///     let a = SharedArray::<f64, _>::create(4).unwrap();
///     a.view()
/// }; // `a` is dropped (and unmapped) here while `view` still borrows it
/// println!("{}", view[0]);
/// ```
///
/// two mutable views of one handle cannot both be alive (two mutable
/// chunks exist only from one split, which never overlaps):
///
/// ```compile_fail
/// use shmpar_core::SharedArray;
/// let mut a = SharedArray::<f64, _>::create(4).unwrap();
/// let first = a.view_mut();
/// let second = a.view_mut(); // a second mutable borrow
/// drop((first, second));
/// ```
///
/// and no shared view may be taken while a mutable one lives:
///
/// ```compile_fail
/// use shmpar_core::SharedArray;
/// let mut a = SharedArray::<f64, _>::create(4).unwrap();
/// let mut writer = a.view_mut();
/// let reader = a.view(); // shared borrow while the mutable one lives
/// writer[0] = 1.0;
/// println!("{}", reader[0]);
/// ```
///
/// # Safety
/// The borrow rules above would mean nothing if a second handle of the
/// same segment could exist in the process: `a.view()` and `b.view_mut()`
/// would alias. So a process holds one handle per segment: [`attach`],
/// [`create`] and every other constructor go through [`Segment::create`]
/// or [`Segment::open`], which record the object's (device, inode) and
/// refuse a second handle with [`Error::AlreadyOpen`] until the first
/// drops. Share one array by passing `&SharedArray` around.
/// [`Segment::open_unchecked`] (with [`from_segment`]) skips that check,
/// and its caller takes over the guarantee.
///
/// # Concurrency
/// Other processes may read and write the same elements concurrently; the
/// types of this process cannot see them. shmpar's runtime never lets
/// another process touch elements a `&mut` view covers: each worker gets
/// disjoint rows, and phases are separated by the in-segment barrier
/// (release/acquire), which makes every access race free. Code that
/// writes shared elements from another process outside such a protocol is
/// a data race the type system cannot see, which is why raw access is
/// `unsafe` ([`view_mut_unchecked`](Self::view_mut_unchecked),
/// [`rows_mut_unchecked`](Self::rows_mut_unchecked),
/// [`Segment::open_unchecked`]). Such a race gives torn values, never
/// invalid ones: every [`Element`] is valid for every bit pattern.
///
/// [`attach`]: Self::attach
/// [`create`]: Self::create
/// [`from_segment`]: Self::from_segment
pub struct SharedArray<T: Element, D: Dimension> {
    segment: Segment,
    dim: D,
    _elem: PhantomData<T>,
}

impl<T: Element, D: Dimension> std::fmt::Debug for SharedArray<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedArray")
            .field("name", &self.segment.name())
            .field("dtype", &T::DTYPE)
            .field("shape", &self.dim.slice())
            .finish()
    }
}

impl<T: Element, D: Dimension> SharedArray<T, D> {
    /// Creates a zero-filled array of `shape` in a new shared-memory
    /// segment with an unguessable name.
    ///
    /// # Errors
    /// As [`Segment::create`].
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), shmpar_core::Error> {
    /// use shmpar_core::SharedArray;
    /// let a = SharedArray::<f64, _>::create((1000, 3))?;
    /// assert_eq!(a.view().shape(), &[1000, 3]);
    /// assert_eq!(a.view().sum(), 0.0);
    /// # Ok(()) }
    /// ```
    pub fn create<Sh: IntoDimension<Dim = D>>(shape: Sh) -> Result<Self> {
        Self::create_with(&SegmentOptions::default(), shape)
    }

    /// Creates a zero-filled array of `shape` as `options` say.
    ///
    /// # Errors
    /// As [`Segment::create`].
    pub fn create_with<Sh: IntoDimension<Dim = D>>(options: &SegmentOptions, shape: Sh) -> Result<Self> {
        let dim = shape.into_dimension();
        let segment = Segment::create(options, T::DTYPE, dim.slice())?;
        Ok(SharedArray {
            segment,
            dim,
            _elem: PhantomData,
        })
    }

    /// Creates an array holding a copy of `source` (one copy in).
    ///
    /// # Errors
    /// As [`Segment::create`].
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), shmpar_core::Error> {
    /// use shmpar_core::SharedArray;
    /// let a = SharedArray::from_array(&ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]))?;
    /// assert_eq!(a.view()[[1, 0]], 3.0);
    /// # Ok(()) }
    /// ```
    pub fn from_array<S: Data<Elem = T>>(source: &ArrayBase<S, D>) -> Result<Self> {
        Self::from_array_with(&SegmentOptions::default(), source)
    }

    /// Creates an array holding a copy of `source`, as `options` say.
    ///
    /// # Errors
    /// As [`Segment::create`].
    pub fn from_array_with<S: Data<Elem = T>>(
        options: &SegmentOptions,
        source: &ArrayBase<S, D>,
    ) -> Result<Self> {
        let dim = source.raw_dim();
        let segment = Segment::create_with(options, T::DTYPE, dim.slice(), |bytes| {
            // SAFETY: `bytes` is the data area planned for exactly
            // `source.len()` elements of `T`, page aligned (so aligned for
            // `T`), and exclusively ours until the segment is published.
            let mut dst =
                unsafe { ArrayViewMut::from_shape_ptr(dim.clone(), bytes.as_mut_ptr().cast::<T>()) };
            dst.assign(source);
            Ok(())
        })?;
        Ok(SharedArray {
            segment,
            dim,
            _elem: PhantomData,
        })
    }

    /// Attaches to the shared-memory array `name`, checking that it holds
    /// `T` elements in `D::NDIM` axes.
    ///
    /// # Errors
    /// [`Error::AlreadyOpen`] when this process already holds a handle of
    /// the array (pass `&` to it instead), [`Error::DTypeMismatch`],
    /// [`Error::RankMismatch`], and everything [`Segment::open`] returns.
    pub fn attach(name: &str) -> Result<Self> {
        Self::from_segment(Segment::open(name)?)
    }

    /// Attaches to the file-backed array at `path`.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_segment(Segment::open_file(path)?)
    }

    /// Attaches to the array at `location`.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_location(location: &Location) -> Result<Self> {
        Self::from_segment(Segment::open_location(location)?)
    }

    /// Attaches to `name` and also checks the shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`], and everything [`attach`](Self::attach) returns.
    pub fn attach_with_shape<Sh: IntoDimension<Dim = D>>(name: &str, shape: Sh) -> Result<Self> {
        let array = Self::attach(name)?;
        let expected = shape.into_dimension();
        if expected.slice() != array.dim.slice() {
            return Err(Error::ShapeMismatch {
                name: array.segment.name(),
                expected: expected.slice().to_vec(),
                found: array.dim.slice().to_vec(),
            });
        }
        Ok(array)
    }

    /// Wraps an open segment, checking its element type and rank. A
    /// segment from [`Segment::open_unchecked`] keeps the promise its
    /// caller made there: this array is then one more handle of the same
    /// bytes, and the views it hands out must keep to that promise.
    ///
    /// # Errors
    /// [`Error::DTypeMismatch`], [`Error::RankMismatch`].
    pub fn from_segment(segment: Segment) -> Result<Self> {
        if segment.dtype() != T::DTYPE {
            return Err(Error::DTypeMismatch {
                name: segment.name(),
                expected: T::DTYPE,
                found: segment.dtype(),
            });
        }
        let shape = segment.shape();
        if let Some(ndim) = D::NDIM {
            if ndim != shape.len() {
                return Err(Error::RankMismatch {
                    name: segment.name(),
                    expected: ndim,
                    found: shape.len(),
                });
            }
        }
        let mut dim = D::zeros(shape.len());
        dim.slice_mut().copy_from_slice(shape);
        Ok(SharedArray {
            segment,
            dim,
            _elem: PhantomData,
        })
    }

    /// The segment behind the array.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Mutable access to the segment (to persist or unlink it).
    pub fn segment_mut(&mut self) -> &mut Segment {
        &mut self.segment
    }

    /// Gives up the typed wrapper.
    pub fn into_segment(self) -> Segment {
        self.segment
    }

    /// The segment's name (or file path), by which other processes attach.
    pub fn name(&self) -> String {
        self.segment.name()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.dim.slice()
    }

    /// The shape as an ndarray dimension.
    pub fn raw_dim(&self) -> D {
        self.dim.clone()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dim.size()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows along axis 0 (1 for a 0-dimensional array).
    pub fn rows(&self) -> usize {
        self.dim.slice().first().copied().unwrap_or(1)
    }

    fn ptr(&self) -> *mut T {
        let ptr = self.segment.data_ptr().cast::<T>();
        debug_assert!(ptr.is_aligned());
        debug_assert_eq!(self.segment.layout().data_len, self.len() * size_of::<T>());
        ptr
    }

    /// A read-only view of the whole array.
    pub fn view(&self) -> ArrayView<'_, T, D> {
        // SAFETY:
        // - the data is `len()` elements of `T`, validated against the
        //   mapping's size at create/attach, page aligned;
        // - every bit pattern is a valid `T` (`Element`'s contract);
        // - the view borrows `self`, so it cannot outlive the mapping.
        unsafe { ArrayView::from_shape_ptr(self.dim.clone(), self.ptr()) }
    }

    /// A mutable view of the whole array.
    pub fn view_mut(&mut self) -> ArrayViewMut<'_, T, D> {
        // SAFETY: as in `view`; `&mut self` makes this the only view in
        // this process.
        unsafe { ArrayViewMut::from_shape_ptr(self.dim.clone(), self.ptr()) }
    }

    /// A mutable view of the whole array through a shared reference.
    ///
    /// # Safety
    /// - No other view of the array may be used to access the same
    ///   elements while this one lives, in this process or another, unless
    ///   every such access is separated by a synchronizing operation (the
    ///   in-segment barrier, a lock, a release/acquire pair).
    pub unsafe fn view_mut_unchecked(&self) -> ArrayViewMut<'_, T, D> {
        // SAFETY: bounds and alignment as in `view`; exclusivity is the
        // caller's promise.
        unsafe { ArrayViewMut::from_shape_ptr(self.dim.clone(), self.ptr()) }
    }
}

impl<T: Element, D: Dimension + RemoveAxis> SharedArray<T, D> {
    /// Splits the array along axis 0 into `parts` disjoint mutable chunks
    /// of balanced length ([`chunk_range`]); together they cover every row
    /// exactly once. When `parts` exceeds the number of rows the last
    /// chunks are empty.
    ///
    /// # Errors
    /// [`Error::InvalidChunks`] when `parts` is 0.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), shmpar_core::Error> {
    /// use shmpar_core::SharedArray;
    /// let mut a = SharedArray::<u32, _>::create(10)?;
    /// for (i, mut chunk) in a.chunks_mut(3)?.into_iter().enumerate() {
    ///     chunk.fill(i as u32);
    /// }
    /// assert_eq!(a.view().to_vec(), [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
    /// # Ok(()) }
    /// ```
    pub fn chunks_mut(&mut self, parts: usize) -> Result<Vec<ArrayViewMut<'_, T, D>>> {
        if parts == 0 {
            return Err(Error::InvalidChunks {
                reason: "the number of chunks must be at least 1".into(),
            });
        }
        let rows = self.rows();
        let mut rest = self.view_mut();
        let mut chunks = Vec::with_capacity(parts);
        for index in 0..parts {
            let take = chunk_range(rows, parts, index).len();
            let (head, tail) = rest.split_at(Axis(0), take);
            chunks.push(head);
            rest = tail;
        }
        Ok(chunks)
    }

    /// Maps the pages of rows `rows` (axis 0) into this process now, so
    /// the first pass over them pays no page fault per 4 KiB page (on some
    /// virtual machines a fault costs 10 µs: 2 s for 800 MB). A worker calls
    /// it for its own chunk; best effort on kernels older than 5.14.
    ///
    /// # Errors
    /// [`Error::Io`] when the kernel refuses.
    pub fn prefault_rows(&self, rows: Range<usize>) -> Result<()> {
        let row_bytes = self.dim.slice().iter().skip(1).product::<usize>() * size_of::<T>();
        let start = rows.start.min(self.rows());
        let end = rows.end.clamp(start, self.rows());
        self.segment
            .prefault_range(start * row_bytes, (end - start) * row_bytes)
    }

    /// A mutable view of rows `rows` (axis 0) through a shared reference.
    ///
    /// # Errors
    /// [`Error::InvalidChunks`] if `rows` is not inside `0..self.rows()`.
    ///
    /// # Safety
    /// - No other view may access these rows while this one lives, in this
    ///   process or another, unless the accesses are separated by a
    ///   synchronizing operation (the barrier, the lock, release/acquire).
    pub unsafe fn rows_mut_unchecked(&self, rows: Range<usize>) -> Result<ArrayViewMut<'_, T, D>> {
        if rows.start > rows.end || rows.end > self.rows() {
            return Err(Error::InvalidChunks {
                reason: format!("rows {rows:?} are outside 0..{}", self.rows()),
            });
        }
        // SAFETY: exclusivity of these rows is the caller's promise; bounds
        // are as in `view`.
        let full = unsafe { self.view_mut_unchecked() };
        let (_, tail) = full.split_at(Axis(0), rows.start);
        let (mine, _) = tail.split_at(Axis(0), rows.len());
        Ok(mine)
    }
}
