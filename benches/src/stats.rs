//! Medians and spreads of repeated timings.

use serde::{Deserialize, Serialize};

/// The summary of repeated measurements of one quantity, in one unit.
///
/// The spread fields default to zero when read from a `results.json`
/// written before they existed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// The median.
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The first quartile (linear between order statistics, as NumPy's
    /// default `percentile`).
    #[serde(default)]
    pub p25: f64,
    /// The third quartile.
    #[serde(default)]
    pub p75: f64,
    /// The 90th percentile (nearest rank).
    pub p90: f64,
    /// The largest sample.
    #[serde(default)]
    pub max: f64,
    /// The lower end of the median's 95% confidence interval
    /// (distribution-free, from order statistics: see [`median_ci`]).
    #[serde(default)]
    pub ci_lo: f64,
    /// The upper end of the median's 95% confidence interval.
    #[serde(default)]
    pub ci_hi: f64,
    /// Number of samples.
    pub n: usize,
}

/// The 1-based ranks `(k, n + 1 - k)` of the order statistics that bound a
/// 95% confidence interval of the median of `n` samples, whatever their
/// distribution: the largest `k` with P(Binomial(n, 1/2) < k) ≤ 2.5%
/// (exact up to 1,000 samples, the normal approximation above). Below 6
/// samples no such `k` exists, and the interval is the whole range.
pub fn median_ci(n: usize) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let k = if n <= 1000 {
        // P(X <= j) summed exactly: 2^-1000 is still a normal f64.
        let mut below = 0.0; // P(X < k)
        let mut term = 0.5f64.powi(n as i32); // P(X = 0)
        let mut k = 0;
        for j in 0..=n {
            if below + term > 0.025 {
                break;
            }
            below += term;
            k = j + 1;
            term = term * (n - j) as f64 / (j + 1) as f64;
        }
        k
    } else {
        let k = (n as f64 / 2.0 - 1.96 * (n as f64).sqrt() / 2.0).floor();
        k.max(1.0) as usize
    };
    let k = k.max(1);
    (k, n + 1 - k)
}

/// The `q` quantile of sorted `s` (not empty), linear between order statistics.
fn quantile(s: &[f64], q: f64) -> f64 {
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

impl Summary {
    /// Summarizes `samples` (all zero for no samples). NaNs sort last.
    pub fn of(samples: &[f64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1;
        let (lo, hi) = median_ci(n);
        Summary {
            median: quantile(&s, 0.5),
            min: s[0],
            p25: quantile(&s, 0.25),
            p75: quantile(&s, 0.75),
            p90: s[rank],
            max: s[n - 1],
            ci_lo: s[lo - 1],
            ci_hi: s[hi - 1],
            n,
        }
    }

    /// The median's confidence interval, or the median twice for a summary
    /// without one (one sample, or read from an older `results.json`).
    pub fn ci(&self) -> (f64, f64) {
        if self.ci_lo == 0.0 && self.ci_hi == 0.0 {
            (self.median, self.median)
        } else {
            (self.ci_lo, self.ci_hi)
        }
    }

    /// A summary of one sample: no spread to speak of.
    pub fn one(x: f64) -> Summary {
        Summary::of(&[x])
    }

    /// The interquartile range relative to the median (0 for one sample).
    pub fn rel_iqr(&self) -> f64 {
        if self.median == 0.0 {
            return 0.0;
        }
        (self.p75 - self.p25) / self.median
    }

    /// Whether the quartiles were recorded (results from before they were
    /// have them at zero).
    pub fn has_spread(&self) -> bool {
        self.n > 1 && (self.p25 != 0.0 || self.p75 != 0.0)
    }

    /// `median (p25–p75)` with `digits` decimals; the median alone for one
    /// sample or a summary without quartiles.
    pub fn show(&self, digits: usize) -> String {
        if self.has_spread() {
            format!(
                "{:.d$} ({:.d$}–{:.d$})",
                self.median,
                self.p25,
                self.p75,
                d = digits
            )
        } else {
            format!("{:.d$}", self.median, d = digits)
        }
    }
}

/// Times `f`, in milliseconds.
pub fn time_ms<R>(f: impl FnOnce() -> R) -> (R, f64) {
    let t = std::time::Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Summary::of(&[]).n, 0);
        assert_eq!(
            Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]).p90,
            9.0
        );
    }

    #[test]
    fn confidence_interval_of_the_median() {
        // Published values of the distribution-free interval.
        assert_eq!(median_ci(5), (1, 5));
        assert_eq!(median_ci(6), (1, 6));
        assert_eq!(median_ci(11), (2, 10));
        assert_eq!(median_ci(25), (8, 18));
        assert_eq!(median_ci(50), (18, 33));
        assert_eq!(median_ci(51), (19, 33));
        assert_eq!(median_ci(1000).0, 469);
        let (k, _) = median_ci(4000);
        assert!((1938..=1939).contains(&k), "{k}");
        let s = Summary::of(&(1..=25).map(f64::from).collect::<Vec<_>>());
        assert_eq!(s.ci(), (8.0, 18.0));
        assert_eq!(Summary::one(3.0).ci(), (3.0, 3.0));
    }

    #[test]
    fn quartiles_and_extremes() {
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!((s.min, s.p25, s.median, s.p75, s.max), (1.0, 2.0, 3.0, 4.0, 5.0));
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.p25, s.p75), (1.75, 3.25));
        assert!((s.rel_iqr() - 1.5 / 2.5).abs() < 1e-12);
        assert_eq!(s.show(1), "2.5 (1.8–3.2)");
        assert_eq!(Summary::one(7.0).show(1), "7.0");
        assert!(!Summary::one(7.0).has_spread());
    }
}
