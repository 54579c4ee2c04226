//! The element types the kernels accept.

use std::fmt::{Debug, Display};
use std::ops::{Add, Div, Mul, Neg, Sub};

pub(crate) mod sealed {
    /// Seals [`Float`](super::Float) and carries the per-type SIMD hooks,
    /// which are reachable only inside this crate.
    pub trait Sealed: Sized {
        /// Loads four elements at `p`, widened to `f64`.
        ///
        /// # Safety
        ///
        /// - The CPU must support AVX2.
        /// - `p` must be valid for reading four elements.
        #[cfg(target_arch = "x86_64")]
        unsafe fn load4(p: *const Self) -> std::arch::x86_64::__m256d;

        /// `(min, max, has_nan)` of `xs` with AVX2.
        ///
        /// # Safety
        ///
        /// - The CPU must support AVX2.
        #[cfg(target_arch = "x86_64")]
        unsafe fn extrema_avx2(xs: &[Self]) -> (Self, Self, bool);
    }

    macro_rules! sealed {
        ($t:ident, $load:ident, $extrema:ident) => {
            impl Sealed for $t {
                #[cfg(target_arch = "x86_64")]
                #[inline(always)]
                unsafe fn load4(p: *const Self) -> std::arch::x86_64::__m256d {
                    // SAFETY: forwarded from this function's contract.
                    unsafe { crate::simd::avx2::$load(p) }
                }

                #[cfg(target_arch = "x86_64")]
                #[inline]
                unsafe fn extrema_avx2(xs: &[Self]) -> (Self, Self, bool) {
                    // SAFETY: forwarded from this function's contract.
                    let e = unsafe { crate::simd::avx2::$extrema(xs) };
                    (e.min, e.max, e.nan)
                }
            }
        };
    }
    sealed!(f32, load4_f32, extrema_f32);
    sealed!(f64, load4_f64, extrema_f64);
}

/// An IEEE 754 binary floating-point element: `f32` or `f64`.
///
/// The trait is sealed: the SIMD kernels are written and checked for exactly
/// these two types, so no other crate can implement it.
///
/// Reductions accumulate in `f64` whatever the element type, so their
/// partials have one layout for both (see [`crate::reduce`]); `to_f64` is
/// exact for both types.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::Float;
///
/// fn half<T: Float>(x: T) -> T {
///     x * T::from_f64(0.5)
/// }
/// assert_eq!(half(3.0_f32), 1.5);
/// assert_eq!(half(3.0_f64).to_f64(), 1.5);
/// ```
pub trait Float:
    sealed::Sealed
    + Copy
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + PartialEq
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// `2`, used by the stencils.
    const TWO: Self;
    /// `4`, used by the 2-D stencil.
    const FOUR: Self;
    /// A quiet NaN.
    const NAN: Self;
    /// `+inf`.
    const INFINITY: Self;
    /// `-inf`.
    const NEG_INFINITY: Self;
    /// The type's name, `"f32"` or `"f64"`.
    const NAME: &'static str;

    /// Absolute value (clears the sign bit, so `abs(-0.0) == +0.0` and
    /// `abs(NaN)` is a NaN).
    fn abs(self) -> Self;
    /// Correctly rounded square root; negative inputs give NaN.
    fn sqrt(self) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm; `ln(0) == -inf`, negative inputs give NaN.
    fn ln(self) -> Self;
    /// Whether `self` is a NaN.
    fn is_nan(self) -> bool;
    /// Exact widening (or identity) conversion to `f64`.
    fn to_f64(self) -> f64;
    /// Conversion from `f64`, rounding to nearest for `f32`.
    fn from_f64(x: f64) -> Self;
}

macro_rules! impl_float {
    ($t:ident) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const TWO: Self = 2.0;
            const FOUR: Self = 4.0;
            const NAN: Self = $t::NAN;
            const INFINITY: Self = $t::INFINITY;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            const NAME: &'static str = stringify!($t);

            #[inline(always)]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $t::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            #[inline(always)]
            #[allow(clippy::cast_possible_truncation)] // rounding to f32 is the documented intent
            fn from_f64(x: f64) -> Self {
                x as $t
            }
        }
    };
}

impl_float!(f32);
impl_float!(f64);
