//! Order statistics and moments: `Min`, `Max`, `MinMax`, `Variance`, `Std`.

use ndarray::{ArrayView, Dimension};
use serde::{Deserialize, Serialize};

use super::{Reduction, UnaryReduction, for_each_block};
use crate::float::Float;
use crate::simd::{self, Deviation, Plain};

/// Partial of [`Min`], [`Max`] and [`MinMax`].
///
/// Once a NaN is seen, `min` and `max` are both NaN and stay NaN.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ExtremaPartial {
    /// Smallest element (`+inf` when `count == 0`, NaN after a NaN).
    pub min: f64,
    /// Largest element (`-inf` when `count == 0`, NaN after a NaN).
    pub max: f64,
    /// Number of elements seen.
    pub count: u64,
}

impl ExtremaPartial {
    /// The partial of no elements.
    pub const EMPTY: ExtremaPartial = ExtremaPartial {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        count: 0,
    };

    fn of<T: Float, D: Dimension>(chunk: &ArrayView<'_, T, D>) -> ExtremaPartial {
        let mut acc = ExtremaPartial::EMPTY;
        for_each_block(chunk, |xs| {
            let e = simd::extrema_slice(xs);
            let p = if e.nan {
                ExtremaPartial {
                    min: f64::NAN,
                    max: f64::NAN,
                    count: xs.len() as u64,
                }
            } else {
                ExtremaPartial {
                    min: e.min.to_f64(),
                    max: e.max.to_f64(),
                    count: xs.len() as u64,
                }
            };
            acc = acc.merge(p);
        });
        acc
    }

    fn merge(self, other: ExtremaPartial) -> ExtremaPartial {
        // NaN-propagating, unlike f64::min / f64::max.
        let pick = |a: f64, b: f64, b_wins: bool| {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else if b_wins {
                b
            } else {
                a
            }
        };
        ExtremaPartial {
            min: pick(self.min, other.min, other.min < self.min),
            max: pick(self.max, other.max, other.max > self.max),
            count: self.count + other.count,
        }
    }
}

macro_rules! extrema_reduction {
    ($(#[$doc:meta])* $name:ident, $output:ty, |$p:ident| $finish:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl Reduction for $name {
            type Partial = ExtremaPartial;
            type Output = $output;

            fn identity(&self) -> ExtremaPartial {
                ExtremaPartial::EMPTY
            }
            fn combine(&self, a: ExtremaPartial, b: ExtremaPartial) -> ExtremaPartial {
                a.merge(b)
            }
            fn finish(&self, $p: ExtremaPartial) -> $output {
                if $p.count == 0 { None } else { Some($finish) }
            }
        }

        impl<T: Float> UnaryReduction<T> for $name {
            fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> ExtremaPartial {
                ExtremaPartial::of(&chunk)
            }
        }
    };
}

extrema_reduction!(
    /// The smallest element: NaN if any element is NaN (as `np.min`),
    /// `None` for no elements.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpar_kernels::reduce::{Min, UnaryReduction};
    /// use ndarray::array;
    ///
    /// assert_eq!(Min.reduce(array![2.0_f64, f64::NEG_INFINITY].view()), Some(f64::NEG_INFINITY));
    /// assert!(Min.reduce(array![2.0_f64, f64::NAN].view()).unwrap().is_nan());
    /// assert_eq!(Min.reduce(ndarray::Array1::<f64>::zeros(0).view()), None);
    /// ```
    Min,
    Option<f64>,
    |p| p.min
);
extrema_reduction!(
    /// The largest element: NaN if any element is NaN (as `np.max`),
    /// `None` for no elements.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpar_kernels::reduce::{Max, UnaryReduction};
    /// use ndarray::array;
    ///
    /// assert_eq!(Max.reduce(array![2.0_f32, 7.5].view()), Some(7.5));
    /// ```
    Max,
    Option<f64>,
    |p| p.max
);
extrema_reduction!(
    /// `(min, max)` in one pass, with the NaN rules of [`Min`] and [`Max`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpar_kernels::reduce::{MinMax, UnaryReduction};
    /// use ndarray::array;
    ///
    /// assert_eq!(MinMax.reduce(array![[2.0_f64, -1.0], [9.0, 0.0]].view()), Some((-1.0, 9.0)));
    /// ```
    MinMax,
    Option<(f64, f64)>,
    |p| (p.min, p.max)
);

/// Partial of [`Variance`] and [`Std`]: count, mean and sum of squared
/// deviations from the mean (`M2`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable,
)]
pub struct MomentsPartial {
    /// Number of elements.
    pub count: u64,
    /// Their mean (0 when `count == 0`).
    pub mean: f64,
    /// `Σ (x - mean)²`.
    pub m2: f64,
}

impl MomentsPartial {
    /// Chan, Golub and LeVeque's pairwise update: exact in exact
    /// arithmetic and numerically stable, whatever the chunk sizes.
    #[allow(clippy::cast_precision_loss)] // counts above 2^53 lose nothing that matters here
    fn merge(self, other: MomentsPartial) -> MomentsPartial {
        if self.count == 0 {
            return other;
        }
        if other.count == 0 {
            return self;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        MomentsPartial {
            count: self.count + other.count,
            mean: self.mean + delta * (nb / n),
            m2: self.m2 + other.m2 + delta * delta * (na * (nb / n)),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn of<T: Float, D: Dimension>(chunk: &ArrayView<'_, T, D>) -> MomentsPartial {
        let count = chunk.len() as u64;
        if count == 0 {
            return MomentsPartial::default();
        }
        // Two passes over the chunk (mean, then squared deviations) instead
        // of Welford's one: both passes are pairwise and vectorized, while
        // Welford divides per element in a serial dependency chain; and the
        // two-pass result is the more accurate of the two.
        let mut sum = super::SumPartial::ZERO;
        for_each_block(chunk, |xs| {
            sum = sum.merge(super::SumPartial::of(simd::sum_terms(xs, Plain)))
        });
        let mean = sum.value() / count as f64;
        let mut m2 = super::SumPartial::ZERO;
        for_each_block(chunk, |xs| {
            m2 = m2.merge(super::SumPartial::of(simd::sum_terms(xs, Deviation(mean))));
        });
        MomentsPartial {
            count,
            mean,
            m2: m2.value(),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn variance(self, ddof: u64) -> f64 {
        if self.count <= ddof {
            f64::NAN
        } else {
            self.m2 / (self.count - ddof) as f64
        }
    }
}

/// The variance `Σ (x - mean)² / (n - ddof)`; NaN when `n <= ddof`.
///
/// Inside a chunk: two pairwise passes (mean, then squared deviations);
/// across chunks: the parallel merge of Chan et al. Any infinity makes the
/// result NaN (`inf - inf`), as in NumPy.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::reduce::{Reduction, UnaryReduction, Variance};
/// use ndarray::array;
///
/// let a = array![1e9_f64 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0];
/// let sample = Variance { ddof: 1 };
/// let p = [sample.partial(a.slice(ndarray::s![..1])), sample.partial(a.slice(ndarray::s![1..]))];
/// assert_eq!(sample.finish(sample.combine_all(p)), 30.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variance {
    /// Delta degrees of freedom: 0 for the population variance, 1 for the
    /// unbiased sample variance.
    pub ddof: u64,
}

impl Reduction for Variance {
    type Partial = MomentsPartial;
    type Output = f64;

    fn identity(&self) -> MomentsPartial {
        MomentsPartial::default()
    }
    fn combine(&self, a: MomentsPartial, b: MomentsPartial) -> MomentsPartial {
        a.merge(b)
    }
    fn finish(&self, p: MomentsPartial) -> f64 {
        p.variance(self.ddof)
    }
}

impl<T: Float> UnaryReduction<T> for Variance {
    fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> MomentsPartial {
        MomentsPartial::of(&chunk)
    }
}

/// The standard deviation, `sqrt` of [`Variance`] with the same `ddof`.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::reduce::{Std, UnaryReduction};
/// use ndarray::array;
///
/// assert_eq!(Std { ddof: 0 }.reduce(array![1.0_f32, 3.0].view()), 1.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Std {
    /// Delta degrees of freedom, as in [`Variance`].
    pub ddof: u64,
}

impl Reduction for Std {
    type Partial = MomentsPartial;
    type Output = f64;

    fn identity(&self) -> MomentsPartial {
        MomentsPartial::default()
    }
    fn combine(&self, a: MomentsPartial, b: MomentsPartial) -> MomentsPartial {
        a.merge(b)
    }
    fn finish(&self, p: MomentsPartial) -> f64 {
        p.variance(self.ddof).sqrt()
    }
}

impl<T: Float> UnaryReduction<T> for Std {
    fn partial<D: Dimension>(&self, chunk: ArrayView<'_, T, D>) -> MomentsPartial {
        MomentsPartial::of(&chunk)
    }
}
