//! How a job's rows are divided among its workers.

use std::ops::Range;

use shmpar_core::Segment;
use shmpar_core::chunk::chunk_range;
use shmpar_core::header::PAGE_SIZE;

use crate::job::args::{ArgRef, Args};

/// How a job's rows (axis 0 of its split arguments) are divided among the
/// workers.
///
/// Results never depend on the schedule or on which worker ran what: a
/// reduction's partial results are combined in *chunk* order, and the
/// chunks are a pure function of the schedule, the row count, the worker
/// count and the page size of the split arrays (see [`Static`](Self::Static)),
/// so every backend and every run gives the same bits as the serial
/// backend with the same schedule and arrays.
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
    ///
    /// When the split arrays are made of huge pages
    /// ([`SegmentOptions::huge_pages`](crate::SegmentOptions::huge_pages)),
    /// chunk boundaries fall on whole pages instead, so that no two workers
    /// share a page: each gets a whole number of pages, the last one the
    /// rest. That holds only while it keeps the longest chunk within 1/32
    /// of the balanced one (2 workers over 4e7 `f64` on 2 MiB pages: 0.4%
    /// longer); otherwise, as for small arrays, the split stays balanced
    /// to the row.
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

    /// The chunks of `rows` rows among `workers`, in order; under
    /// [`Static`](Self::Static), whole multiples of `align` rows where that
    /// keeps the balance (`align` from [`row_align`]; 0 and 1 mean none).
    pub(crate) fn plan(self, rows: usize, workers: usize, align: usize) -> Plan {
        let chunks = match self {
            Schedule::Static => static_chunks(rows, workers, align),
            // No rows: one empty chunk a worker, as under `Static`, so a
            // reduction over nothing gives the same result on any schedule.
            _ if rows == 0 => vec![0..0; workers.max(1)],
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

/// The static split of `rows` among `workers`, boundaries on multiples of
/// `align` rows unless that makes the longest chunk more than 1/32 longer
/// than the balanced split's.
fn static_chunks(rows: usize, workers: usize, align: usize) -> Vec<Range<usize>> {
    let balanced: Vec<Range<usize>> = (0..workers)
        .map(|rank| chunk_range(rows, workers, rank))
        .collect();
    if align <= 1 || workers <= 1 {
        return balanced;
    }
    // Whole units of `align` rows, balanced to within one unit; the rows
    // past the last whole unit go to the last chunk.
    let units = rows / align;
    let aligned: Vec<Range<usize>> = (0..workers)
        .map(|rank| {
            let mine = chunk_range(units, workers, rank);
            let end = if rank + 1 == workers {
                rows
            } else {
                mine.end * align
            };
            mine.start * align..end
        })
        .collect();
    let longest = |chunks: &[Range<usize>]| chunks.iter().map(Range::len).max().unwrap_or(0);
    let limit = longest(&balanced) + longest(&balanced) / 32;
    if longest(&aligned) <= limit {
        aligned
    } else {
        balanced
    }
}

/// The row-alignment unit of a job whose split arrays are `split`, with
/// `rows` rows: the fewest rows that cover a whole number of pages in every
/// one of them, for arrays made of pages larger than 4 KiB; 1 when none is,
/// or when no such number of rows is below `rows`.
pub(crate) fn row_align<'s>(split: impl IntoIterator<Item = &'s Segment>, rows: usize) -> usize {
    let mut align = 1usize;
    for segment in split {
        let layout = segment.layout();
        let page = layout.page_size;
        let array_rows = layout.shape.first().copied().unwrap_or(1);
        let row_bytes = layout.data_len.checked_div(array_rows).unwrap_or(0);
        if page <= PAGE_SIZE || row_bytes == 0 {
            continue;
        }
        // `k` rows end on a page boundary when k * row_bytes is a multiple
        // of the page: k a multiple of page / gcd(page, row_bytes).
        let unit = page / gcd(page, row_bytes);
        match (align / gcd(align, unit)).checked_mul(unit) {
            Some(lcm) if lcm < rows => align = lcm,
            _ => return 1,
        }
    }
    align
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
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
                    let plan = s.plan(rows, workers, 1);
                    if s == Schedule::Static || rows == 0 {
                        assert_eq!(plan.chunks.len(), workers);
                    }
                    assert!(covers(&plan, rows), "{s:?} {rows} {workers}: {:?}", plan.chunks);
                }
            }
        }
    }

    #[test]
    fn guided_chunks_shrink() {
        let plan = Schedule::Guided.plan(1000, 2, 1);
        let sizes: Vec<usize> = plan.chunks.iter().map(|c| c.len()).collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert_eq!(sizes[0], 250);
        assert_eq!(*sizes.last().unwrap(), 1);
    }

    #[test]
    fn static_chunks_fall_on_whole_pages_where_that_keeps_the_balance() {
        // 4e7 f64 on 2 MiB pages: 262,144 rows a page, 152.6 pages.
        let page_rows = 262_144;
        for (rows, workers) in [
            (40_000_000, 2),
            (100_000_000, 16),
            (100_000_000, 3),
            (12 * 262_144, 4),
        ] {
            let plan = Schedule::Static.plan(rows, workers, page_rows);
            assert!(covers(&plan, rows));
            assert_eq!(plan.chunks.len(), workers);
            for c in &plan.chunks[..workers - 1] {
                assert_eq!(c.end % page_rows, 0, "{rows} {workers}: {:?}", plan.chunks);
            }
            let longest = plan.chunks.iter().map(|c| c.len()).max().unwrap();
            let balanced = rows.div_ceil(workers);
            assert!(longest <= balanced + balanced / 32, "{rows} {workers}: {longest}");
        }
        assert_eq!(
            Schedule::Static.plan(40_000_000, 2, page_rows).chunks,
            [0..76 * page_rows, 76 * page_rows..40_000_000]
        );
        // Too few pages to go round evenly: balanced to the row, as without.
        for (rows, workers) in [
            (3 * page_rows / 2, 2),
            (100, 2),
            (40_000_000, 64),
            (5 * page_rows, 4),
        ] {
            assert_eq!(
                Schedule::Static.plan(rows, workers, page_rows),
                Schedule::Static.plan(rows, workers, 1),
                "{rows} {workers}"
            );
        }
        // Claimed schedules ignore the alignment.
        for s in [Schedule::Dynamic { rows: 7 }, Schedule::Guided] {
            assert_eq!(s.plan(40_000_000, 2, page_rows), s.plan(40_000_000, 2, 1));
        }
        for rows in [0, 1, 7, 1001, 3 * page_rows + 5] {
            for workers in [1, 2, 3, 16] {
                for align in [0, 1, 3, 64, page_rows] {
                    let plan = Schedule::Static.plan(rows, workers, align);
                    assert!(covers(&plan, rows), "{rows} {workers} {align}");
                    assert_eq!(plan.chunks.len(), workers);
                }
            }
        }
    }

    #[test]
    fn the_alignment_unit_covers_whole_pages() {
        assert_eq!(gcd(2 << 20, 24), 8);
        use shmpar_core::{DType, HugePages, Segment, SegmentOptions};
        // 4 KiB pages: no alignment, whatever the row.
        let plain = Segment::create(&SegmentOptions::new(), DType::F64, &[1000, 3]).unwrap();
        assert_eq!(row_align([&plain], 1000), 1);
        assert_eq!(row_align([], 1000), 1);
        // Huge pages, where this machine offers them (else the segment
        // falls back to 4 KiB and the unit is 1 as above).
        let options = SegmentOptions::new().huge_pages(HugePages::Try);
        let huge = Segment::create(&options, DType::F64, &[1 << 20, 3]).unwrap();
        if huge.page_size() == 2 << 20 {
            // Rows of 24 bytes: 2 MiB / gcd(2 MiB, 24) = 262,144 rows = 3 pages.
            assert_eq!(row_align([&huge], 1 << 20), 262_144);
            assert_eq!(row_align([&huge, &plain], 1 << 20), 262_144);
            assert_eq!(
                row_align([&huge], 262_144),
                1,
                "no whole unit below the row count"
            );
        }
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
