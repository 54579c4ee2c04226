//! `shmpar.SharedArray`: an n-dimensional array in a named shared-memory
//! segment, seen from Python as a writable NumPy view with no copy.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{ArrayView, IxDyn};
use numpy::{PyArray, PyArrayDescr, PyArrayDescrMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PySequence, PyString, PyTuple};
use shmpar_core::{DType, Segment, SegmentOptions};

use crate::errors::{self, Error};

/// Set in a pool's Python worker while it imports the main module of the
/// program it serves (as `__mp_main__`): code that runs then, outside an
/// `if __name__ == "__main__":` guard, must not create arrays (they would
/// be orphans of a worker that is stopped at once).
pub(crate) static BOOTSTRAPPING: AtomicBool = AtomicBool::new(false);

/// What creating an array (or a pool) while bootstrapping says.
pub(crate) const BOOTSTRAP_MESSAGE: &str = "a shmpar.Pool worker is importing the main module of the program, and that \
     module creates arrays or pools at the top level: put the program's main code under \
     `if __name__ == \"__main__\":` (as multiprocessing's spawn start method also requires)";

/// The NumPy name of an element type: `"float64"`.
pub(crate) fn numpy_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::I8 => "int8",
        DType::I16 => "int16",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::U8 => "uint8",
        DType::U16 => "uint16",
        DType::U32 => "uint32",
        DType::U64 => "uint64",
        _ => "unknown",
    }
}

/// Runs `$body` with `$t` bound to the Rust type of `$dtype`; an element
/// type this build does not know is a `shmpar.Error`.
macro_rules! with_element {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::F64 => {
                type $t = f64;
                $body
            }
            DType::I8 => {
                type $t = i8;
                $body
            }
            DType::I16 => {
                type $t = i16;
                $body
            }
            DType::I32 => {
                type $t = i32;
                $body
            }
            DType::I64 => {
                type $t = i64;
                $body
            }
            DType::U8 => {
                type $t = u8;
                $body
            }
            DType::U16 => {
                type $t = u16;
                $body
            }
            DType::U32 => {
                type $t = u32;
                $body
            }
            DType::U64 => {
                type $t = u64;
                $body
            }
            other => {
                return Err(Error::new_err(format!(
                    "element type {other} is not supported by this build"
                )))
            }
        }
    };
}

/// The element type that a NumPy dtype-like (`np.float64`, `"f8"`,
/// `"<f8"`, `float`, a `numpy.dtype`) names; float64 when `None`.
pub(crate) fn dtype_of(py: Python<'_>, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<DType> {
    let Some(dtype) = dtype else {
        return Ok(DType::F64);
    };
    let descr = PyArrayDescr::new(py, dtype)?;
    for candidate in DType::ALL {
        let matches = with_element!(candidate, T => descr.is_equiv_to(&numpy::dtype::<T>(py)));
        if matches {
            return Ok(candidate);
        }
    }
    Err(Error::new_err(format!(
        "shmpar arrays hold little-endian float32, float64, int8, int16, int32, int64, uint8, \
         uint16, uint32 or uint64 elements, not {}",
        descr.str()?
    )))
}

/// A shape from an int or a sequence of ints.
fn shape_of(shape: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    let describe = || shape.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into());
    let wrong = || {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "a shape is an int or a sequence of ints (the axis lengths), not {} {}",
            shape.get_type().name().map(|n| n.to_string()).unwrap_or_default(),
            describe()
        ))
    };
    if shape.is_instance_of::<PyString>() || shape.is_instance_of::<PyBytes>() {
        return Err(wrong());
    }
    let axis = |item: &Bound<'_, PyAny>| -> PyResult<i64> {
        if item.is_instance_of::<PyBool>() {
            return Err(wrong());
        }
        match item.extract::<i64>() {
            Ok(n) => Ok(n),
            Err(_) if item.is_instance_of::<PyInt>() => Err(Error::new_err(format!(
                "invalid shape {}: an axis length of {item} is far too large",
                describe()
            ))),
            Err(_) => Err(wrong()),
        }
    };
    let axes: Vec<i64> = if shape.is_instance_of::<PyInt>() || shape.extract::<i64>().is_ok() {
        vec![axis(shape)?]
    } else {
        // A sequence (list, tuple, array), as NumPy takes: not a mapping,
        // a set or a one-shot iterator.
        if shape.cast::<PySequence>().is_err() {
            return Err(wrong());
        }
        let Ok(items) = shape.try_iter() else {
            return Err(wrong());
        };
        let mut axes = Vec::new();
        for item in items {
            axes.push(axis(&item?)?);
        }
        axes
    };
    axes.iter()
        .map(|&n| {
            usize::try_from(n).map_err(|_| {
                Error::new_err(format!(
                    "invalid shape {axes:?}: axis lengths must not be negative"
                ))
            })
        })
        .collect()
}

/// A typed n-dimensional array in a named POSIX shared-memory segment
/// (`/dev/shm/NAME`): the data starts at byte 0 and a header page at the
/// end records the dtype and shape, so any process attaches by name alone.
///
/// `create` makes a new zero-filled array; the process that created it
/// owns it, and the segment is removed when that process's object (and
/// every NumPy view of it) is gone, when the process exits or is stopped
/// by SIGTERM, or at `unlink()`. `attach` maps an existing array; dropping
/// an attached object only unmaps it. `array` is a writable NumPy view of
/// the whole array with no copy; the view keeps the mapping alive, so it
/// stays valid even after the object and the name are gone.
///
/// A process holds one handle per segment: attaching an array that this
/// process already holds (or created) raises `shmpar.Error`; pass the
/// existing object around instead.
#[pyclass(frozen, module = "shmpar", name = "SharedArray")]
pub(crate) struct SharedArray {
    segment: Mutex<Segment>,
    /// Address of the data: byte 0 of the mapping, which stays where it is
    /// for as long as `segment` lives, and `segment` lives as long as this
    /// object.
    data: usize,
    dtype: DType,
    shape: Vec<usize>,
    name: String,
    identity: (u64, u64),
    location: shmpar_core::Location,
}

impl SharedArray {
    fn from_segment(segment: Segment) -> SharedArray {
        SharedArray {
            data: segment.data_ptr() as usize,
            dtype: segment.dtype(),
            shape: segment.shape().to_vec(),
            name: segment.name(),
            identity: segment.identity(),
            location: segment.location().clone(),
            segment: Mutex::new(segment),
        }
    }

    /// Creates a new array (what `SharedArray.create` and `Scope.create` do).
    pub(crate) fn new_array(
        py: Python<'_>,
        shape: &Bound<'_, PyAny>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SharedArray> {
        if BOOTSTRAPPING.load(Ordering::Relaxed) {
            // Refused only at the top level of the main module itself (what
            // a `__main__` guard keeps from running again), not in a
            // library that module imports.
            py.import("shmpar._pool")?
                .getattr("_refuse_at_main_top_level")?
                .call0()?;
        }
        let shape = shape_of(shape)?;
        let dtype = dtype_of(py, dtype)?;
        // A process stopped by SIGTERM or SIGHUP removes what it created
        // (SIGINT is Python's KeyboardInterrupt, which unwinds normally).
        shmpar_core::signals::install();
        // Reserving the space zero-fills it: hundreds of milliseconds for
        // a large array, during which other Python threads may run.
        let segment = py
            .detach(|| Segment::create(&SegmentOptions::new(), dtype, &shape))
            .map_err(errors::core)?;
        Ok(SharedArray::from_segment(segment))
    }

    /// The segment's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The element type.
    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub(crate) fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The segment's (device, inode).
    pub(crate) fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Where the segment lives and which object it is, for a scope.
    pub(crate) fn ownership(&self) -> (shmpar_core::Location, (u64, u64)) {
        (self.location.clone(), self.identity)
    }
}

#[pymethods]
impl SharedArray {
    /// Creates a zero-filled array of `shape` (an int or a tuple of ints)
    /// and `dtype` (anything `numpy.dtype` accepts; default float64) in a
    /// new shared-memory segment with an unguessable name.
    ///
    /// Raises `shmpar.Error` when `/dev/shm` cannot hold it, saying how
    /// much it needs and how much is free.
    #[staticmethod]
    #[pyo3(signature = (shape, dtype = None))]
    fn create(
        py: Python<'_>,
        shape: &Bound<'_, PyAny>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SharedArray> {
        SharedArray::new_array(py, shape, dtype)
    }

    /// Attaches to the shmpar array `name` (created by this package, by
    /// Rust, or by the `shmpar` command), reading its dtype and shape from
    /// its header.
    ///
    /// With `dtype` and/or `shape`, also checks that the array has them.
    ///
    /// Raises `shmpar.Error` if there is no such segment, if it is not a
    /// shmpar array, if it does not have the expected dtype or shape, or if
    /// this process already holds it.
    #[staticmethod]
    #[pyo3(signature = (name, dtype = None, shape = None))]
    fn attach(
        py: Python<'_>,
        name: &str,
        dtype: Option<&Bound<'_, PyAny>>,
        shape: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SharedArray> {
        let expected_dtype = dtype.map(|d| dtype_of(py, Some(d))).transpose()?;
        let expected_shape = shape.map(shape_of).transpose()?;
        let segment = py.detach(|| Segment::open(name)).map_err(errors::core)?;
        if let Some(want) = expected_dtype {
            if segment.dtype() != want {
                return Err(Error::new_err(format!(
                    "{name} holds {} elements, not the expected {}",
                    numpy_name(segment.dtype()),
                    numpy_name(want)
                )));
            }
        }
        if let Some(want) = expected_shape {
            if segment.shape() != want.as_slice() {
                return Err(Error::new_err(format!(
                    "{name} has shape {:?}, not the expected {:?}",
                    segment.shape(),
                    want
                )));
            }
        }
        Ok(SharedArray::from_segment(segment))
    }

    /// The segment's name, by which other processes attach.
    #[getter(name)]
    fn py_name(&self) -> &str {
        &self.name
    }

    /// The shape, a tuple of ints.
    #[getter(shape)]
    fn py_shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    /// The element type, a `numpy.dtype`.
    #[getter(dtype)]
    fn py_dtype<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDescr>> {
        Ok(with_element!(self.dtype, T => numpy::dtype::<T>(py)))
    }

    /// Number of axes.
    #[getter]
    fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    #[getter]
    fn size(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data.
    #[getter]
    fn nbytes(&self) -> usize {
        self.size() * self.dtype.size()
    }

    /// A writable NumPy view of the whole array, with no copy. Every access
    /// returns a new view of the same memory; its `base` is this object, so
    /// the mapping lives as long as any view does.
    #[getter]
    fn array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let dim = IxDyn(&this.shape);
        Ok(with_element!(this.dtype, T => {
            // SAFETY:
            // - `data` is byte 0 of the mapping, page aligned (so aligned
            //   for `T`), and the mapping holds `size()` elements of `T`
            //   from there: the header was validated against the object's
            //   size at create or attach;
            // - every bit pattern is a valid `T` (plain numbers only);
            // - the view only carries the pointer, shape and strides to
            //   NumPy below; Rust never reads or writes through it.
            let view = unsafe { ArrayView::<T, IxDyn>::from_shape_ptr(dim, this.data as *const T) };
            // SAFETY: the container is this object, which owns the segment
            // and so the mapping; the mapping is never moved or unmapped
            // while the object lives (`unlink` only removes the name), and
            // NumPy keeps the container alive as the array's base. NumPy
            // views alias freely, as NumPy arrays do; no Rust reference to
            // the data exists in this process.
            let array = unsafe { PyArray::<T, IxDyn>::borrow_from_array(&view, slf.clone().into_any()) };
            array.into_any()
        }))
    }

    /// Lets `numpy.asarray(a)` and NumPy functions take the array directly.
    #[pyo3(signature = (dtype = None, copy = None))]
    fn __array__<'py>(
        slf: &Bound<'py, Self>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut array = Self::array(slf)?;
        if let Some(dtype) = dtype {
            array = array.call_method1("astype", (dtype,))?;
        } else if copy == Some(true) {
            array = array.call_method0("copy")?;
        }
        Ok(array)
    }

    /// Removes the segment's name now: no process can attach any more.
    /// Mappings, this one and its views included, stay valid until they
    /// are dropped. Raises `shmpar.Error` if the name is already gone.
    fn unlink(&self) -> PyResult<()> {
        let mut segment = self.segment.lock().unwrap_or_else(|p| p.into_inner());
        segment.unlink().map_err(errors::core)
    }

    /// Rows along axis 0.
    fn __len__(&self) -> PyResult<usize> {
        self.shape
            .first()
            .copied()
            .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("len() of a 0-dimensional array"))
    }

    fn __repr__(&self) -> String {
        let shape = match self.shape.as_slice() {
            [n] => format!("({n},)"),
            axes => format!(
                "({})",
                axes.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "SharedArray(name={:?}, shape={shape}, dtype={})",
            self.name,
            numpy_name(self.dtype)
        )
    }

    /// (device, inode) of the segment: two objects with the same identity
    /// map the same memory. For the package's workers.
    #[getter]
    fn _identity(&self) -> (u64, u64) {
        self.identity
    }
}
