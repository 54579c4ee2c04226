//! Shared code of the shmpar benchmarks: the criterion benches in
//! `benches/benches/` and the comparison harness (`src/bin/harness/`) use the
//! same bandwidth-bound passes, barrier groups and `/proc` readers, so both
//! measure the same thing. Every system call of the package is in [`os`].
//!
//! `docs/benchmarks.md` (written by the harness) explains every measurement.

pub mod bandwidth;
pub mod barriers;
pub mod load;
pub mod os;
pub mod stats;

/// Fills `xs` with a deterministic mix of positive and negative values (no
/// zeros, no subnormals), so `sqrt(abs(x))` does real work on every element.
pub fn fill_signed<T: shmpar_kernels::Float>(xs: &mut [T]) {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for x in xs {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let unit = ((state >> 11) as f64) / ((1u64 << 53) as f64);
        *x = T::from_f64((unit - 0.5) * 8.0 + if unit < 0.5 { -0.25 } else { 0.25 });
    }
}
