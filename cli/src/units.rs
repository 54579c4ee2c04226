//! Numbers in and out: lengths like `2e7`, byte sizes and durations for people.

/// Parses an element count: `20000000`, `20_000_000`, `2e7` or `2.5e6`.
/// Zero, negative, fractional and non-numbers are refused here; sizes
/// beyond memory are refused later, with the memory figures at hand.
pub(crate) fn parse_len(text: &str) -> Result<usize, String> {
    let clean: String = text.trim().chars().filter(|&c| c != '_').collect();
    let len = if let Ok(n) = clean.parse::<u128>() {
        n
    } else {
        let x: f64 = clean
            .parse()
            .map_err(|_| format!("{text:?} is not a number of elements"))?;
        if !x.is_finite() || x < 0.0 {
            return Err(format!("{text:?} is not a number of elements"));
        }
        if x.fract() != 0.0 {
            return Err(format!("{text:?} is not a whole number of elements"));
        }
        if x >= 1e30 {
            return Err(format!("{text} elements is absurdly many"));
        }
        // Checked finite, whole and below 1e30 just above: the conversion is exact.
        x as u128
    };
    if len == 0 {
        return Err("the length must be at least 1 element".into());
    }
    usize::try_from(len).map_err(|_| format!("{text} elements is more than this machine can address"))
}

/// Parses `--timeout SECS`: a positive number of seconds, `0.25` or `10`.
pub(crate) fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("the timeout must be more than 0 seconds, got {text}"));
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| format!("{text} seconds is too long a timeout"))
}

/// `160.0 MB`-style sizes (powers of 1000, as GB/s figures are).
pub(crate) fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1000.0 && unit + 1 < units.len() {
        x /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", units[unit])
    }
}

/// A duration in seconds, with a unit that keeps 3-4 significant digits.
pub(crate) fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Median of a non-empty list (mean of the two middle values for even lengths).
pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_parse_in_every_spelling() {
        assert_eq!(parse_len("20000000"), Ok(20_000_000));
        assert_eq!(parse_len("20_000_000"), Ok(20_000_000));
        assert_eq!(parse_len("2e7"), Ok(20_000_000));
        assert_eq!(parse_len("2.5E6"), Ok(2_500_000));
        for bad in ["0", "-3", "1.5", "abc", "", "1e40", "inf", "NaN"] {
            assert!(parse_len(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_timeout("0.25"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(parse_timeout("10"), Ok(std::time::Duration::from_secs(10)));
        for bad in ["0", "-1", "abc", "", "NaN", "inf", "1e30"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(160_000_000), "160.0 MB");
        assert_eq!(seconds(0.0301), "30.10 ms");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
