//! Kernels by name, for command-line tools.
//!
//! A kernel is named by a *spec*: its name, optionally followed by
//! `:`-separated parameters, e.g. `sqrt`, `scale:0.5`, `clamp:-1:1`,
//! `var:1`, `histogram:0:1:100`. Parameters left out take the defaults
//! listed in [`Elementwise::NAMES`] and [`BuiltinReduction::NAMES`].
//!
//! ```
//! use ndarray::{Array1, s};
//! use shmpar_kernels::catalog::{BuiltinReduction, Elementwise};
//! use shmpar_kernels::reduce::{Reduction, UnaryReduction};
//!
//! # fn main() -> Result<(), shmpar_kernels::Error> {
//! let mut a = Array1::from_iter((0..100).map(|i| f64::from(i) - 50.0));
//! let kernel: Elementwise = "sqrt_abs".parse()?;
//! kernel.apply(a.view_mut())?;
//!
//! let mean: BuiltinReduction = "mean".parse()?;
//! let partials = [mean.partial(a.slice(s![..30])), mean.partial(a.slice(s![30..]))];
//! let value = mean.finish(mean.combine_all(partials))?;
//! assert!(value.close_to(&mean.reference(a.view()), 1e-12));
//!
//! assert!("cube".parse::<Elementwise>().is_err()); // lists the valid names
//! # Ok(())
//! # }
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use ndarray::{ArrayView, ArrayViewMut, Dimension};
use serde::{Deserialize, Serialize};

use crate::Float;
use crate::reduce::{
    ExtremaPartial, Histogram, HistogramOutput, HistogramPartial, Max, Mean, MeanPartial, Min, MinMax,
    MomentsPartial, Norm, NormPartial, Reduction, Std, Sum, SumPartial, UnaryReduction, Variance,
};
use crate::{Error, Result};

/// Splits `name:p1:p2` and parses the parameters as `f64`.
fn split_spec(kind: &'static str, spec: &str, valid: &'static [&'static str]) -> Result<(String, Vec<f64>)> {
    let mut parts = spec.trim().split(':');
    let name = parts.next().unwrap_or_default().to_ascii_lowercase();
    let params = parts
        .map(|p| {
            p.trim().parse::<f64>().map_err(|_| Error::InvalidParameter {
                kernel: kind,
                reason: format!("parameter {p:?} of {spec:?} is not a number"),
            })
        })
        .collect::<Result<Vec<f64>>>()?;
    if !valid.contains(&name.as_str()) {
        return Err(Error::UnknownKernel { kind, name, valid });
    }
    Ok((name, params))
}

/// Parameter `i`, or `default` if absent.
fn param(params: &[f64], i: usize, default: f64) -> f64 {
    params.get(i).copied().unwrap_or(default)
}

fn check_arity(spec: &str, params: &[f64], max: usize) -> Result<()> {
    if params.len() > max {
        return Err(Error::InvalidParameter {
            kernel: "catalog",
            reason: format!("{spec:?} takes at most {max} parameter(s), got {}", params.len()),
        });
    }
    Ok(())
}

/// An in-place elementwise kernel from the catalog.
///
/// Axpy is not here: it takes two arrays (see [`crate::axpy`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Elementwise {
    /// [`crate::sqrt`].
    Sqrt,
    /// [`crate::abs`].
    Abs,
    /// [`crate::sqrt_abs`].
    SqrtAbs,
    /// [`crate::exp`].
    Exp,
    /// [`crate::ln`].
    Ln,
    /// [`crate::scale`] by the factor.
    Scale(f64),
    /// [`crate::offset`] by the amount.
    Offset(f64),
    /// [`crate::clamp`] to `[lo, hi]`.
    Clamp {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// [`crate::fill`] with the value.
    Fill(f64),
}

impl Elementwise {
    /// The kernel names, in catalog order. Defaults: `scale:2`,
    /// `offset:1`, `clamp:0:1`, `fill:0`.
    pub const NAMES: &'static [&'static str] = &[
        "sqrt", "abs", "sqrt_abs", "exp", "ln", "scale", "offset", "clamp", "fill",
    ];

    /// The kernel's name (without parameters).
    pub fn name(&self) -> &'static str {
        match self {
            Elementwise::Sqrt => "sqrt",
            Elementwise::Abs => "abs",
            Elementwise::SqrtAbs => "sqrt_abs",
            Elementwise::Exp => "exp",
            Elementwise::Ln => "ln",
            Elementwise::Scale(_) => "scale",
            Elementwise::Offset(_) => "offset",
            Elementwise::Clamp { .. } => "clamp",
            Elementwise::Fill(_) => "fill",
        }
    }

    /// Runs the kernel in place on `a`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] for a clamp with `lo > hi` or a NaN bound.
    pub fn apply<T: Float, D: Dimension>(&self, a: ArrayViewMut<'_, T, D>) -> Result<()> {
        match *self {
            Elementwise::Sqrt => crate::sqrt(a),
            Elementwise::Abs => crate::abs(a),
            Elementwise::SqrtAbs => crate::sqrt_abs(a),
            Elementwise::Exp => crate::exp(a),
            Elementwise::Ln => crate::ln(a),
            Elementwise::Scale(k) => crate::scale(a, T::from_f64(k)),
            Elementwise::Offset(k) => crate::offset(a, T::from_f64(k)),
            Elementwise::Clamp { lo, hi } => crate::clamp(a, T::from_f64(lo), T::from_f64(hi))?,
            Elementwise::Fill(v) => crate::fill(a, T::from_f64(v)),
        }
        Ok(())
    }

    /// The kernel on one element: the serial reference to verify against
    /// (the vectorized kernels give exactly these values).
    pub fn scalar<T: Float>(&self, x: T) -> T {
        match *self {
            Elementwise::Sqrt => x.sqrt(),
            Elementwise::Abs => x.abs(),
            Elementwise::SqrtAbs => x.abs().sqrt(),
            Elementwise::Exp => x.exp(),
            Elementwise::Ln => x.ln(),
            Elementwise::Scale(k) => T::from_f64(k) * x,
            Elementwise::Offset(k) => x + T::from_f64(k),
            Elementwise::Clamp { lo, hi } => {
                let (lo, hi) = (T::from_f64(lo), T::from_f64(hi));
                let x = if x < lo { lo } else { x };
                if x > hi { hi } else { x }
            }
            Elementwise::Fill(v) => T::from_f64(v),
        }
    }

    /// Applies [`scalar`](Self::scalar) element by element: the
    /// straightforward serial reference of [`apply`](Self::apply).
    pub fn apply_reference<T: Float, D: Dimension>(&self, mut a: ArrayViewMut<'_, T, D>) {
        a.map_inplace(|x| *x = self.scalar(*x));
    }
}

impl FromStr for Elementwise {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Elementwise> {
        let (name, p) = split_spec("elementwise", spec, Elementwise::NAMES)?;
        let (kernel, arity) = match name.as_str() {
            "sqrt" => (Elementwise::Sqrt, 0),
            "abs" => (Elementwise::Abs, 0),
            "sqrt_abs" => (Elementwise::SqrtAbs, 0),
            "exp" => (Elementwise::Exp, 0),
            "ln" => (Elementwise::Ln, 0),
            "scale" => (Elementwise::Scale(param(&p, 0, 2.0)), 1),
            "offset" => (Elementwise::Offset(param(&p, 0, 1.0)), 1),
            "clamp" => {
                let (lo, hi) = (param(&p, 0, 0.0), param(&p, 1, 1.0));
                if !matches!(lo.partial_cmp(&hi), Some(Ordering::Less | Ordering::Equal)) {
                    return Err(Error::InvalidParameter {
                        kernel: "clamp",
                        reason: format!("the bounds must satisfy lo <= hi, got {lo} and {hi}"),
                    });
                }
                (Elementwise::Clamp { lo, hi }, 2)
            }
            _ => (Elementwise::Fill(param(&p, 0, 0.0)), 1),
        };
        check_arity(spec, &p, arity)?;
        Ok(kernel)
    }
}

impl fmt::Display for Elementwise {
    /// The spec that parses back to `self`, e.g. `clamp:0:1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Elementwise::Scale(k) | Elementwise::Offset(k) | Elementwise::Fill(k) => {
                write!(f, "{}:{k}", self.name())
            }
            Elementwise::Clamp { lo, hi } => write!(f, "clamp:{lo}:{hi}"),
            _ => f.write_str(self.name()),
        }
    }
}

/// A single-array reduction from the catalog.
///
/// It implements [`Reduction`] and [`UnaryReduction`] with the type-erased
/// [`AnyPartial`], so one code path can run any of them.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BuiltinReduction {
    /// [`Sum`].
    Sum,
    /// [`Mean`].
    Mean,
    /// [`Min`].
    Min,
    /// [`Max`].
    Max,
    /// [`MinMax`].
    MinMax,
    /// [`Variance`].
    Var {
        /// Delta degrees of freedom.
        ddof: u64,
    },
    /// [`Std`].
    Std {
        /// Delta degrees of freedom.
        ddof: u64,
    },
    /// [`Norm`].
    Norm,
    /// [`Histogram`].
    Histogram(Histogram),
}

/// The partial of any [`BuiltinReduction`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AnyPartial {
    /// Of [`BuiltinReduction::Sum`].
    Sum(SumPartial),
    /// Of [`BuiltinReduction::Mean`].
    Mean(MeanPartial),
    /// Of [`BuiltinReduction::Min`], [`Max`](BuiltinReduction::Max) and
    /// [`MinMax`](BuiltinReduction::MinMax).
    Extrema(ExtremaPartial),
    /// Of [`BuiltinReduction::Var`] and [`Std`](BuiltinReduction::Std).
    Moments(MomentsPartial),
    /// Of [`BuiltinReduction::Norm`].
    Norm(NormPartial),
    /// Of [`BuiltinReduction::Histogram`].
    Histogram(HistogramPartial),
    /// The result of combining partials of different reductions; it
    /// absorbs everything and [`finish`](Reduction::finish) reports it.
    Mismatch,
}

impl AnyPartial {
    /// The kind of partial, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyPartial::Sum(_) => "sum",
            AnyPartial::Mean(_) => "mean",
            AnyPartial::Extrema(_) => "min/max",
            AnyPartial::Moments(_) => "var/std",
            AnyPartial::Norm(_) => "norm",
            AnyPartial::Histogram(_) => "histogram",
            AnyPartial::Mismatch => "mismatched",
        }
    }
}

/// The result of a [`BuiltinReduction`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReductionValue {
    /// One number (sum, mean, min, max, var, std, norm).
    Scalar(f64),
    /// `(min, max)`.
    Pair(f64, f64),
    /// A histogram.
    Histogram(HistogramOutput),
    /// Min, max or min-max of no elements.
    Empty,
}

impl ReductionValue {
    /// Whether `self` matches `reference` to relative tolerance `rtol`
    /// (NaN matches NaN, infinities must be equal, histograms exactly).
    pub fn close_to(&self, reference: &ReductionValue, rtol: f64) -> bool {
        let close = |a: f64, b: f64| {
            (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= rtol * a.abs().max(b.abs())
        };
        match (self, reference) {
            (ReductionValue::Scalar(a), ReductionValue::Scalar(b)) => close(*a, *b),
            (ReductionValue::Pair(a, b), ReductionValue::Pair(c, d)) => close(*a, *c) && close(*b, *d),
            (a, b) => a == b,
        }
    }
}

/// Bins a histogram shows in full; a longer one shows its first and last
/// [`SHOWN_BINS`]` / 2` bins and its totals, unless formatted with `{:#}`.
pub const SHOWN_BINS: usize = 16;

/// A histogram's counts as `[c0, c1, ...]`: all of them, or the first and
/// last `SHOWN_BINS / 2` around how many were left out.
fn write_counts(f: &mut fmt::Formatter<'_>, counts: &[u64], all: bool) -> fmt::Result {
    let join = |part: &[u64]| part.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    if all || counts.len() <= SHOWN_BINS {
        return write!(f, "[{}]", join(counts));
    }
    let half = SHOWN_BINS / 2;
    let (head, tail) = (&counts[..half], &counts[counts.len() - half..]);
    write!(
        f,
        "[{}, ... {} more ..., {}]",
        join(head),
        counts.len() - SHOWN_BINS,
        join(tail)
    )
}

/// Histograms of more than [`SHOWN_BINS`] bins are summarized (their first
/// and last bins, the number of bins and of counted elements); the
/// alternate form, `{:#}`, lists every bin.
impl fmt::Display for ReductionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReductionValue::Scalar(x) => write!(f, "{x}"),
            ReductionValue::Pair(a, b) => write!(f, "({a}, {b})"),
            ReductionValue::Histogram(h) => {
                write_counts(f, &h.counts, f.alternate())?;
                if h.counts.len() > SHOWN_BINS {
                    write!(
                        f,
                        " ({} bins, {} counted; ",
                        h.counts.len(),
                        h.counts.iter().sum::<u64>()
                    )?;
                } else {
                    f.write_str(" (")?;
                }
                write!(f, "below {}, above {}, nan {})", h.below, h.above, h.nan)
            }
            ReductionValue::Empty => f.write_str("empty"),
        }
    }
}

impl BuiltinReduction {
    /// The reduction names, in catalog order. Defaults: `var:0`, `std:0`
    /// (population), `histogram:0:1:10` (`lo:hi:bins`).
    pub const NAMES: &'static [&'static str] = &[
        "sum",
        "mean",
        "min",
        "max",
        "min_max",
        "var",
        "std",
        "norm",
        "histogram",
    ];

    /// The reduction's name (without parameters).
    pub fn name(&self) -> &'static str {
        match self {
            BuiltinReduction::Sum => "sum",
            BuiltinReduction::Mean => "mean",
            BuiltinReduction::Min => "min",
            BuiltinReduction::Max => "max",
            BuiltinReduction::MinMax => "min_max",
            BuiltinReduction::Var { .. } => "var",
            BuiltinReduction::Std { .. } => "std",
            BuiltinReduction::Norm => "norm",
            BuiltinReduction::Histogram(_) => "histogram",
        }
    }

    /// A straightforward serial computation of the same value, to verify
    /// the chunked one against: one loop in logical order with a
    /// compensated (Neumaier) sum, NaN-propagating comparisons, a binary
    /// search over the histogram edges.
    pub fn reference<T: Float, D: Dimension>(&self, a: ArrayView<'_, T, D>) -> ReductionValue {
        let xs = || a.iter().map(|x| x.to_f64());
        let sum_of = |f: &dyn Fn(f64) -> f64| {
            xs().fold(SumPartial::ZERO, |s, x| s.merge(SumPartial::of(f(x))))
                .value()
        };
        #[allow(clippy::cast_precision_loss)]
        let n = a.len() as f64;
        let var = |ddof: u64| {
            if a.len() as u64 <= ddof {
                return f64::NAN;
            }
            let m = sum_of(&|x| x) / n;
            #[allow(clippy::cast_precision_loss)]
            let v = sum_of(&|x| (x - m) * (x - m)) / (n - ddof as f64);
            v
        };
        let extrema = || {
            xs().fold(ExtremaPartial::EMPTY, |p, x| ExtremaPartial {
                min: if p.min.is_nan() || x.is_nan() {
                    f64::NAN
                } else {
                    p.min.min(x)
                },
                max: if p.max.is_nan() || x.is_nan() {
                    f64::NAN
                } else {
                    p.max.max(x)
                },
                count: p.count + 1,
            })
        };
        let scalar_or_empty = |p: ExtremaPartial, v: f64| {
            if p.count == 0 {
                ReductionValue::Empty
            } else {
                ReductionValue::Scalar(v)
            }
        };
        match self {
            BuiltinReduction::Sum => ReductionValue::Scalar(sum_of(&|x| x)),
            BuiltinReduction::Mean => ReductionValue::Scalar(sum_of(&|x| x) / n),
            BuiltinReduction::Min => {
                let p = extrema();
                scalar_or_empty(p, p.min)
            }
            BuiltinReduction::Max => {
                let p = extrema();
                scalar_or_empty(p, p.max)
            }
            BuiltinReduction::MinMax => {
                let p = extrema();
                if p.count == 0 {
                    ReductionValue::Empty
                } else {
                    ReductionValue::Pair(p.min, p.max)
                }
            }
            BuiltinReduction::Var { ddof } => ReductionValue::Scalar(var(*ddof)),
            BuiltinReduction::Std { ddof } => ReductionValue::Scalar(var(*ddof).sqrt()),
            BuiltinReduction::Norm => {
                let ssq = sum_of(&|x| x * x);
                ReductionValue::Scalar(if ssq.is_finite() && ssq >= 1e-250 || ssq.is_nan() {
                    ssq.sqrt()
                } else {
                    xs().fold(0.0, f64::hypot)
                })
            }
            BuiltinReduction::Histogram(h) => {
                let edges = h.edges();
                let bins = h.bins();
                let mut out = HistogramOutput {
                    edges: edges.to_vec(),
                    counts: vec![0; bins],
                    below: 0,
                    above: 0,
                    nan: 0,
                };
                for x in xs() {
                    if x.is_nan() {
                        out.nan += 1;
                    } else if x < edges[0] {
                        out.below += 1;
                    } else if x > edges[bins] {
                        out.above += 1;
                    } else {
                        // Number of edges <= x, minus one; x == hi goes to the last bin.
                        let i = edges.partition_point(|&e| e <= x) - 1;
                        out.counts[i.min(bins - 1)] += 1;
                    }
                }
                ReductionValue::Histogram(out)
            }
        }
    }
}

impl FromStr for BuiltinReduction {
    type Err = Error;

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked integral and in range
    fn from_str(spec: &str) -> Result<BuiltinReduction> {
        let (name, p) = split_spec("reduction", spec, BuiltinReduction::NAMES)?;
        let integer = |x: f64, what: &str| {
            if x >= 0.0 && x.fract() == 0.0 && x <= 9.0e15 {
                Ok(x as u64)
            } else {
                Err(Error::InvalidParameter {
                    kernel: "catalog",
                    reason: format!("{what} must be a non-negative integer, got {x}"),
                })
            }
        };
        let (r, arity) = match name.as_str() {
            "sum" => (BuiltinReduction::Sum, 0),
            "mean" => (BuiltinReduction::Mean, 0),
            "min" => (BuiltinReduction::Min, 0),
            "max" => (BuiltinReduction::Max, 0),
            "min_max" => (BuiltinReduction::MinMax, 0),
            "var" => (
                BuiltinReduction::Var {
                    ddof: integer(param(&p, 0, 0.0), "ddof")?,
                },
                1,
            ),
            "std" => (
                BuiltinReduction::Std {
                    ddof: integer(param(&p, 0, 0.0), "ddof")?,
                },
                1,
            ),
            "norm" => (BuiltinReduction::Norm, 0),
            _ => {
                let bins = integer(param(&p, 2, 10.0), "bins")?;
                let bins = usize::try_from(bins).unwrap_or(usize::MAX);
                let h = Histogram::new(param(&p, 0, 0.0), param(&p, 1, 1.0), bins)?;
                (BuiltinReduction::Histogram(h), 3)
            }
        };
        check_arity(spec, &p, arity)?;
        Ok(r)
    }
}

impl fmt::Display for BuiltinReduction {
    /// The spec that parses back to `self`, e.g. `histogram:0:1:10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuiltinReduction::Var { ddof } | BuiltinReduction::Std { ddof } => {
                write!(f, "{}:{ddof}", self.name())
            }
            BuiltinReduction::Histogram(h) => {
                let e = h.edges();
                write!(f, "histogram:{}:{}:{}", e[0], e[h.bins()], h.bins())
            }
            _ => f.write_str(self.name()),
        }
    }
}

impl Reduction for BuiltinReduction {
    type Partial = AnyPartial;
    /// `Err(Error::PartialMismatch)` if partials of another reduction were combined in.
    type Output = Result<ReductionValue>;

    fn identity(&self) -> AnyPartial {
        match self {
            BuiltinReduction::Sum => AnyPartial::Sum(Sum.identity()),
            BuiltinReduction::Mean => AnyPartial::Mean(Mean.identity()),
            BuiltinReduction::Min | BuiltinReduction::Max | BuiltinReduction::MinMax => {
                AnyPartial::Extrema(Min.identity())
            }
            BuiltinReduction::Var { ddof } | BuiltinReduction::Std { ddof } => {
                AnyPartial::Moments(Variance { ddof: *ddof }.identity())
            }
            BuiltinReduction::Norm => AnyPartial::Norm(Norm.identity()),
            BuiltinReduction::Histogram(h) => AnyPartial::Histogram(h.identity()),
        }
    }

    fn combine(&self, a: AnyPartial, b: AnyPartial) -> AnyPartial {
        match (self, a, b) {
            (BuiltinReduction::Sum, AnyPartial::Sum(a), AnyPartial::Sum(b)) => {
                AnyPartial::Sum(Sum.combine(a, b))
            }
            (BuiltinReduction::Mean, AnyPartial::Mean(a), AnyPartial::Mean(b)) => {
                AnyPartial::Mean(Mean.combine(a, b))
            }
            (
                BuiltinReduction::Min | BuiltinReduction::Max | BuiltinReduction::MinMax,
                AnyPartial::Extrema(a),
                AnyPartial::Extrema(b),
            ) => AnyPartial::Extrema(MinMax.combine(a, b)),
            (
                BuiltinReduction::Var { .. } | BuiltinReduction::Std { .. },
                AnyPartial::Moments(a),
                AnyPartial::Moments(b),
            ) => AnyPartial::Moments(Variance::default().combine(a, b)),
            (BuiltinReduction::Norm, AnyPartial::Norm(a), AnyPartial::Norm(b)) => {
                AnyPartial::Norm(Norm.combine(a, b))
            }
            (BuiltinReduction::Histogram(h), AnyPartial::Histogram(a), AnyPartial::Histogram(b)) => {
                AnyPartial::Histogram(h.combine(a, b))
            }
            _ => AnyPartial::Mismatch,
        }
    }

    fn finish(&self, p: AnyPartial) -> Result<ReductionValue> {
        let extrema = |v: Option<f64>| v.map_or(ReductionValue::Empty, ReductionValue::Scalar);
        Ok(match (self, p) {
            (BuiltinReduction::Sum, AnyPartial::Sum(p)) => ReductionValue::Scalar(Sum.finish(p)),
            (BuiltinReduction::Mean, AnyPartial::Mean(p)) => ReductionValue::Scalar(Mean.finish(p)),
            (BuiltinReduction::Min, AnyPartial::Extrema(p)) => extrema(Min.finish(p)),
            (BuiltinReduction::Max, AnyPartial::Extrema(p)) => extrema(Max.finish(p)),
            (BuiltinReduction::MinMax, AnyPartial::Extrema(p)) => MinMax
                .finish(p)
                .map_or(ReductionValue::Empty, |(lo, hi)| ReductionValue::Pair(lo, hi)),
            (BuiltinReduction::Var { ddof }, AnyPartial::Moments(p)) => {
                ReductionValue::Scalar(Variance { ddof: *ddof }.finish(p))
            }
            (BuiltinReduction::Std { ddof }, AnyPartial::Moments(p)) => {
                ReductionValue::Scalar(Std { ddof: *ddof }.finish(p))
            }
            (BuiltinReduction::Norm, AnyPartial::Norm(p)) => ReductionValue::Scalar(Norm.finish(p)),
            (BuiltinReduction::Histogram(h), AnyPartial::Histogram(p)) => {
                ReductionValue::Histogram(h.finish(p))
            }
            (r, p) => {
                return Err(Error::PartialMismatch {
                    expected: r.name(),
                    found: p.kind(),
                });
            }
        })
    }
}

impl<T: Float> UnaryReduction<T> for BuiltinReduction {
    fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> AnyPartial {
        match self {
            BuiltinReduction::Sum => AnyPartial::Sum(Sum.partial(chunk)),
            BuiltinReduction::Mean => AnyPartial::Mean(Mean.partial(chunk)),
            BuiltinReduction::Min | BuiltinReduction::Max | BuiltinReduction::MinMax => {
                AnyPartial::Extrema(MinMax.partial(chunk))
            }
            BuiltinReduction::Var { .. } | BuiltinReduction::Std { .. } => {
                AnyPartial::Moments(Variance::default().partial(chunk))
            }
            BuiltinReduction::Norm => AnyPartial::Norm(Norm.partial(chunk)),
            BuiltinReduction::Histogram(h) => AnyPartial::Histogram(h.partial(chunk)),
        }
    }
}
