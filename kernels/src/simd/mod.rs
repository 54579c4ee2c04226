//! Runtime CPU-feature dispatch for the hot slice loops.
//!
//! Every hot kernel is written once, as a plain generic slice loop marked
//! `#[inline(always)]`, and compiled twice on x86-64: as is (the SSE2
//! baseline every x86-64 CPU has) and inside a `#[target_feature(enable =
//! "avx2,fma")]` wrapper, where LLVM vectorizes the same loop with 256-bit
//! registers (`vsqrtpd ymm`, `vaddpd ymm`). The wrapper is chosen once per
//! call from a cached [`SimdLevel`], never per element. Other targets compile
//! only the plain loop.
//!
//! # Both levels give bit-identical results
//!
//! The loops are written so that vectorizing them never changes the order of
//! floating-point operations: reductions accumulate in explicit lane arrays
//! (element `i` of a block goes to lane `i % 16`), which LLVM maps onto
//! vector registers without reassociating, and no loop relies on fused
//! multiply-add (Rust never contracts `a * b + c` by itself). So a result
//! does not depend on the CPU it was computed on, or on the level chosen by
//! [`set_simd_level`]; the tests check this.
//!
//! AVX-512 is not used: enabling `avx512f` in `#[target_feature]` needs Rust
//! 1.89 while the workspace promises 1.87 (`rust-version` in Cargo.toml), and the kernels that matter are
//! memory-bound at the sizes where the runtime is worth using.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
mod kernels;

pub(crate) use kernels::*;

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

/// The instruction-set level the hot kernels run at.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::simd::{self, SimdLevel};
///
/// // The level chosen for this process: the best the CPU supports, unless
/// // lowered with `SHMPAR_SIMD=baseline` or `set_simd_level`.
/// let level = simd::simd_level();
/// assert!(level <= simd::detected_simd_level());
/// assert!(SimdLevel::Baseline <= level);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SimdLevel {
    /// The target's baseline: SSE2 on x86-64, whatever the target has elsewhere.
    Baseline,
    /// x86-64 with AVX2 and FMA (256-bit vectors).
    Avx2,
}

impl SimdLevel {
    /// The level's name, as `SHMPAR_SIMD` accepts it: `"baseline"` or `"avx2"`.
    pub const fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
        }
    }

    const fn code(self) -> u8 {
        match self {
            SimdLevel::Baseline => 1,
            SimdLevel::Avx2 => 2,
        }
    }
}

/// 0 = not chosen yet, otherwise [`SimdLevel::code`].
///
/// Relaxed ordering suffices: the byte is the whole message (no other memory
/// is published with it), and a thread that reads a stale 0 just detects
/// again and stores the same value.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The best level this CPU supports (detected once per call; cheap, as std
/// caches the CPUID results).
///
/// # Examples
///
/// ```
/// let best = shmpar_kernels::simd::detected_simd_level();
/// println!("kernels can run at {}", best.name());
/// ```
pub fn detected_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

/// The level the kernels run at in this process.
///
/// Chosen on first use: the [`detected_simd_level`], lowered to `baseline`
/// when the environment variable `SHMPAR_SIMD` is `baseline` (useful to
/// benchmark the fallback without rebuilding). Other values of `SHMPAR_SIMD`
/// are ignored, and it can never raise the level above what the CPU has.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::simd;
/// assert!(simd::simd_level() <= simd::detected_simd_level());
/// ```
#[inline]
pub fn simd_level() -> SimdLevel {
    match LEVEL.load(Ordering::Relaxed) {
        1 => SimdLevel::Baseline,
        2 => SimdLevel::Avx2,
        _ => {
            let mut level = detected_simd_level();
            if std::env::var_os("SHMPAR_SIMD").is_some_and(|v| v == "baseline") {
                level = SimdLevel::Baseline;
            }
            LEVEL.store(level.code(), Ordering::Relaxed);
            level
        }
    }
}

/// Sets the level for the rest of the process and returns the previous one.
///
/// Results do not depend on the level (see the [module docs](self)), so this
/// only changes speed; it exists to measure the baseline against the
/// dispatched kernels.
///
/// # Errors
///
/// [`Error::UnsupportedSimdLevel`] if `level` is above
/// [`detected_simd_level`]: running AVX2 code on a CPU without it would be
/// undefined behaviour, so the request is refused and nothing changes.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::simd::{self, SimdLevel};
///
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let previous = simd::set_simd_level(SimdLevel::Baseline)?;
/// assert_eq!(simd::simd_level(), SimdLevel::Baseline);
/// simd::set_simd_level(previous)?;
/// # Ok(())
/// # }
/// ```
pub fn set_simd_level(level: SimdLevel) -> Result<SimdLevel> {
    let supported = detected_simd_level();
    if level > supported {
        return Err(Error::UnsupportedSimdLevel {
            requested: level,
            supported,
        });
    }
    let previous = simd_level();
    LEVEL.store(level.code(), Ordering::Relaxed);
    Ok(previous)
}

/// Defines a slice kernel compiled for every [`SimdLevel`] with one dispatch
/// per call.
///
/// The body is written once in an `#[inline(always)]` function; on x86-64 a
/// `#[target_feature(enable = "avx2,fma")]` copy wraps it, so LLVM
/// re-vectorizes the inlined loop for AVX2.
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident<$T:ident: $bound:path>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name<$T: $bound>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<$T: $bound>($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                ///
                /// - The CPU must support AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<$T: $bound>($($arg: $ty),*) $(-> $ret)? {
                    body::<$T>($($arg),*)
                }

                if $crate::simd::simd_level() == $crate::simd::SimdLevel::Avx2 {
                    // SAFETY: `simd_level()` is `Avx2` only when
                    // `detected_simd_level()` found AVX2 and FMA on this CPU
                    // (`set_simd_level` refuses to go above it).
                    return unsafe { avx2::<$T>($($arg),*) };
                }
            }
            body::<$T>($($arg),*)
        }
    };
}
pub(crate) use multiversion;
