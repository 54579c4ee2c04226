//! Equal-width histograms.

use ndarray::{ArrayView, Dimension};
use serde::{Deserialize, Serialize};

use super::{Reduction, UnaryReduction};
use crate::error::{Error, Result};
use crate::float::Float;

/// The most bins a [`Histogram`] may have (2^26, 512 MiB of counts).
pub const MAX_BINS: usize = 1 << 26;

/// Counts of elements in `bins` equal-width bins over `[lo, hi]`.
///
/// Bin `i` holds the `x` with `edges[i] <= x < edges[i + 1]`, where
/// `edges[i] = lo + (hi - lo) · (i / bins)` and `edges[bins] = hi`; the
/// last bin also holds `x == hi` (as `np.histogram`). Elements below `lo`
/// (including `-inf`) are counted in `below`, above `hi` (including `+inf`)
/// in `above`, and NaNs in `nan`; none of them lands in a bin.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::reduce::{Histogram, Reduction, UnaryReduction};
/// use ndarray::array;
///
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let h = Histogram::new(0.0, 4.0, 4)?;
/// let a = array![0.0_f64, 1.0, 1.5, 4.0, -1.0, f64::NAN, f64::INFINITY];
/// let p = [h.partial(a.slice(ndarray::s![..3])), h.partial(a.slice(ndarray::s![3..]))];
/// let out = h.finish(h.combine_all(p));
/// assert_eq!(out.counts, vec![1, 2, 0, 1]);
/// assert_eq!((out.below, out.above, out.nan), (1, 1, 1));
/// assert_eq!(out.edges, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    lo: f64,
    hi: f64,
    edges: Vec<f64>,
    /// `bins / (hi - lo)`: the first guess of a bin index.
    inv_width: f64,
}

impl Histogram {
    /// A histogram of `bins` bins over `[lo, hi]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] unless `lo` and `hi` are finite with
    /// `lo < hi` and `hi - lo` finite, and `1 <= bins <= MAX_BINS`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpar_kernels::reduce::Histogram;
    ///
    /// assert!(Histogram::new(0.0, 1.0, 10).is_ok());
    /// assert!(Histogram::new(1.0, 1.0, 10).is_err());
    /// assert!(Histogram::new(0.0, 1.0, 0).is_err());
    /// ```
    #[allow(clippy::cast_precision_loss)] // bins <= 2^26 is exact in f64
    pub fn new(lo: f64, hi: f64, bins: usize) -> Result<Histogram> {
        let invalid = |reason: String| Error::InvalidParameter {
            kernel: "histogram",
            reason,
        };
        if !(lo.is_finite() && hi.is_finite() && lo < hi && (hi - lo).is_finite()) {
            return Err(invalid(format!(
                "the range must be finite with lo < hi, got lo = {lo}, hi = {hi}"
            )));
        }
        if bins == 0 || bins > MAX_BINS {
            return Err(invalid(format!("bins must be in 1..={MAX_BINS}, got {bins}")));
        }
        let width = hi - lo;
        let mut edges: Vec<f64> = (0..bins).map(|i| lo + width * (i as f64 / bins as f64)).collect();
        edges.push(hi);
        Ok(Histogram {
            lo,
            hi,
            edges,
            inv_width: bins as f64 / width,
        })
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.edges.len() - 1
    }

    /// The `bins + 1` bin edges, `lo` first and `hi` last.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// The bin of an `x` in `[lo, hi]`: a guess from the width, corrected
    /// against the edges so the result never disagrees with them.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // x >= lo, so the guess is >= 0
    fn bin(&self, x: f64) -> usize {
        let last = self.bins() - 1;
        let mut i = (((x - self.lo) * self.inv_width) as usize).min(last);
        while i > 0 && x < self.edges[i] {
            i -= 1;
        }
        while i < last && x >= self.edges[i + 1] {
            i += 1;
        }
        i
    }

    fn empty(&self) -> HistogramPartial {
        HistogramPartial {
            counts: vec![0; self.bins()],
            below: 0,
            above: 0,
            nan: 0,
        }
    }
}

/// Partial of [`Histogram`]: not `Copy` (the counts are a `Vec`), so it
/// travels between processes through serde rather than a fixed-size slot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramPartial {
    /// Count per bin.
    pub counts: Vec<u64>,
    /// Elements below `lo`, `-inf` included.
    pub below: u64,
    /// Elements above `hi`, `+inf` included.
    pub above: u64,
    /// NaN elements.
    pub nan: u64,
}

/// The result of a [`Histogram`]: its edges and the counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramOutput {
    /// The `bins + 1` edges.
    pub edges: Vec<f64>,
    /// Count per bin.
    pub counts: Vec<u64>,
    /// Elements below `lo`, `-inf` included.
    pub below: u64,
    /// Elements above `hi`, `+inf` included.
    pub above: u64,
    /// NaN elements.
    pub nan: u64,
}

impl Reduction for Histogram {
    type Partial = HistogramPartial;
    type Output = HistogramOutput;

    fn identity(&self) -> HistogramPartial {
        self.empty()
    }

    /// Adds the counts. A partial with a different number of bins (which
    /// this histogram cannot have produced) is read as if padded with zeros
    /// or cut to this histogram's bins.
    fn combine(&self, a: HistogramPartial, b: HistogramPartial) -> HistogramPartial {
        let mut out = a;
        out.counts.resize(self.bins(), 0);
        for (c, &d) in out.counts.iter_mut().zip(&b.counts) {
            *c += d;
        }
        out.below += b.below;
        out.above += b.above;
        out.nan += b.nan;
        out
    }

    fn finish(&self, p: HistogramPartial) -> HistogramOutput {
        let mut counts = p.counts;
        counts.resize(self.bins(), 0);
        HistogramOutput {
            edges: self.edges.clone(),
            counts,
            below: p.below,
            above: p.above,
            nan: p.nan,
        }
    }
}

impl<T: Float> UnaryReduction<T> for Histogram {
    fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> HistogramPartial {
        let mut p = self.empty();
        let mut count = |x: T| {
            let x = x.to_f64();
            if x.is_nan() {
                p.nan += 1;
            } else if x < self.lo {
                p.below += 1;
            } else if x > self.hi {
                p.above += 1;
            } else {
                p.counts[self.bin(x)] += 1;
            }
        };
        match chunk.as_slice_memory_order() {
            Some(xs) => xs.iter().for_each(|&x| count(x)),
            None => chunk.iter().for_each(|&x| count(x)),
        }
        p
    }
}
