//! How a job's rows are divided among its workers.

use std::ops::Range;

use shmpar_core::chunk::chunk_range;

use crate::job::args::{ArgRef, Args};

/// How a job's rows (axis 0 of its split arguments) are divided among the
/// workers.
///
/// Results never depend on the schedule or on which worker ran what: a
/// reduction's partial results are combined in *chunk* order, and the
/// chunks are a pure function of the schedule, the row count and the
/// worker count, so every backend and every run gives the same bits as the
/// serial backend with the same schedule.
///
/// ```
/// # fn main() -> Result<(), shmpar::Error> {
/// use shmpar::{Pool, Schedule, SharedArray};
/// let pool = Pool::builder().workers(2).build()?;
/// let mut a = SharedArray::<u64, _>::create(1000)?;
/// // Rows whose cost grows with their index: hand them out 16 at a time.
/// pool.run(Schedule::Dynamic { rows: 16 }.on(&mut a), (), |ctx, mut rows, _| {
///     for (k, x) in rows.iter_mut().enumerate() {
///         let i = (ctx.rows().start + k) as u64;
///         *x = (0..i).sum(); // cost grows with i
///     }
/// })?;
/// assert_eq!(a.view()[999], 999 * 998 / 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Schedule {
    /// One contiguous chunk per worker, balanced to within one row (the
    /// default). The only schedule under which a kernel may call
    /// [`Ctx::barrier`](crate::Ctx::barrier): every worker runs exactly
    /// one chunk.
    #[default]
    Static,
    /// Chunks of `rows` rows, claimed one at a time by whichever worker is
    /// free (through an atomic counter in the pool's control segment): for
    /// rows of uneven cost.
    Dynamic {
        /// Rows per chunk (at least 1).
        rows: usize,
    },
    /// Chunks that start large and shrink (each a share of the rows not
    /// yet handed out, never below one row), claimed like `Dynamic`: fewer
    /// claims than `Dynamic` for the same balance.
    Guided,
}

impl Schedule {
    /// Runs a job's arguments under this schedule: pass the result where
    /// the arguments go (`pool.run(Schedule::Guided.on(&mut a), ..)`).
    pub fn on<A: Args>(self, args: A) -> Scheduled<A> {
        Scheduled { schedule: self, args }
    }

    /// The chunks of `rows` rows among `workers`, in order.
    pub(crate) fn plan(self, rows: usize, workers: usize) -> Plan {
        let chunks = match self {
            Schedule::Static => (0..workers).map(|rank| chunk_range(rows, workers, rank)).collect(),
            Schedule::Dynamic { rows: size } => {
                let size = size.max(1);
                (0..rows.div_ceil(size))
                    .map(|i| i * size..((i + 1) * size).min(rows))
                    .collect()
            }
            Schedule::Guided => {
                let mut chunks = Vec::new();
                let mut start = 0;
                let share = 2 * workers.max(1);
                while start < rows {
                    let size = (rows - start).div_ceil(share).max(1);
                    chunks.push(start..start + size);
                    start += size;
                }
                chunks
            }
        };
        Plan {
            chunks,
            claimed: !matches!(self, Schedule::Static),
        }
    }

    /// The schedule as two words for the job descriptor.
    pub(crate) fn encode(self) -> (u32, u64) {
        match self {
            Schedule::Static => (0, 0),
            Schedule::Dynamic { rows } => (1, rows as u64),
            Schedule::Guided => (2, 0),
        }
    }

    /// The schedule from the job descriptor's two words.
    pub(crate) fn decode(kind: u32, rows: u64) -> Option<Schedule> {
        match kind {
            0 => Some(Schedule::Static),
            1 => Some(Schedule::Dynamic { rows: rows as usize }),
            2 => Some(Schedule::Guided),
            _ => None,
        }
    }
}

/// A job's chunks: which rows each covers, and whether workers claim them
/// (dynamic, guided) or each takes the chunk of its rank (static).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) chunks: Vec<Range<usize>>,
    pub(crate) claimed: bool,
}

/// Arguments with a schedule: see [`Schedule::on`].
#[derive(Debug)]
pub struct Scheduled<A> {
    schedule: Schedule,
    args: A,
}

impl<A: Args> Args for Scheduled<A> {
    type Kind = A::Kind;

    fn describe<'s>(&'s self, out: &mut Vec<ArgRef<'s>>) {
        self.args.describe(out);
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(plan: &Plan, rows: usize) -> bool {
        let mut next = 0;
        for c in &plan.chunks {
            if c.start != next || c.end < c.start {
                return false;
            }
            next = c.end;
        }
        next == rows
    }

    #[test]
    fn every_schedule_covers_every_row_once_in_order() {
        for rows in [0, 1, 7, 100, 1001] {
            for workers in [1, 2, 3, 16] {
                for s in [
                    Schedule::Static,
                    Schedule::Dynamic { rows: 1 },
                    Schedule::Dynamic { rows: 16 },
                    Schedule::Dynamic { rows: 0 },
                    Schedule::Guided,
                ] {
                    let plan = s.plan(rows, workers);
                    if s == Schedule::Static {
                        assert_eq!(plan.chunks.len(), workers);
                    }
                    assert!(covers(&plan, rows), "{s:?} {rows} {workers}: {:?}", plan.chunks);
                }
            }
        }
    }

    #[test]
    fn guided_chunks_shrink() {
        let plan = Schedule::Guided.plan(1000, 2);
        let sizes: Vec<usize> = plan.chunks.iter().map(|c| c.len()).collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert_eq!(sizes[0], 250);
        assert_eq!(*sizes.last().unwrap(), 1);
    }

    #[test]
    fn schedules_survive_the_descriptor() {
        for s in [Schedule::Static, Schedule::Dynamic { rows: 42 }, Schedule::Guided] {
            let (kind, rows) = s.encode();
            assert_eq!(Schedule::decode(kind, rows), Some(s));
        }
        assert_eq!(Schedule::decode(9, 0), None);
    }
}
