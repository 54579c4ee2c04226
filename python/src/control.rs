//! The control segment of a Python pool: a small shmpar segment whose
//! in-segment barrier (core's `Barrier`, on a shared futex) is what
//! `ctx.barrier()` waits at. The coordinator creates it and sets it up for
//! the job's workers before each job, while no worker waits; the workers
//! attach by name; a worker that fails, or the coordinator that sees a
//! worker die, poisons it, so nobody waits for a participant that will
//! never come.

use pyo3::prelude::*;
use shmpar_core::{DType, Segment, SegmentOptions};

use crate::errors::{self, Error};

/// The bytes of the control segment's data: unused, the barrier lives in
/// the header page.
const CONTROL_BYTES: usize = 64;

/// A pool's control segment (internal to the package).
#[pyclass(frozen, module = "shmpar._shmpar", name = "_Control")]
pub(crate) struct Control {
    segment: Segment,
}

#[pymethods]
impl Control {
    /// Creates a control segment; this process owns it.
    #[staticmethod]
    fn create() -> PyResult<Control> {
        let segment =
            Segment::create(&SegmentOptions::new(), DType::U8, &[CONTROL_BYTES]).map_err(errors::core)?;
        Ok(Control { segment })
    }

    /// Attaches to the control segment `name`.
    #[staticmethod]
    fn attach(name: &str) -> PyResult<Control> {
        Ok(Control {
            segment: Segment::open(name).map_err(errors::core)?,
        })
    }

    /// The segment's name.
    #[getter]
    fn name(&self) -> String {
        self.segment.name()
    }

    /// Sets the barrier up for `parties` participants and clears any
    /// poison. Only while nobody waits at it.
    fn reset(&self, parties: u32) -> PyResult<()> {
        self.segment.barrier().reset(parties).map_err(errors::core)
    }

    /// Releases every waiter with an error, now and until the next reset.
    fn poison(&self) {
        self.segment.barrier().poison();
    }

    /// Participants waiting in the current generation.
    fn arrived(&self) -> u32 {
        self.segment.barrier().arrived()
    }

    /// Waits until every participant has arrived, with the GIL released;
    /// returns True in exactly one participant per phase (the last to
    /// arrive). Raises `shmpar.Error` if the barrier is poisoned: another
    /// worker failed or died.
    fn wait(&self, py: Python<'_>) -> PyResult<bool> {
        match py.detach(|| self.segment.barrier().wait()) {
            Ok(result) => Ok(result.is_leader()),
            Err(shmpar_core::Error::BarrierPoisoned) => Err(Error::new_err(
                "ctx.barrier(): another worker of this job failed or died, so this phase can never complete",
            )),
            Err(e) => Err(errors::core(e)),
        }
    }

    /// Removes the segment's name (the owner's job at pool close; the
    /// mapping goes when the object does).
    fn unlink(&self) {
        let _ = shmpar_core::segment::unlink_if(self.segment.location(), self.segment.identity());
    }
}
