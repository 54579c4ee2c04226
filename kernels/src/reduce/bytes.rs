//! Fixed-size byte encoding of the plain-data partials.

use super::{ExtremaPartial, MeanPartial, MomentsPartial, NormPartial, SumPartial};
use crate::error::{Error, Result};

/// A partial of fixed size that round-trips through `SIZE` bytes, for the
/// runtime's per-worker result slots in shared memory.
///
/// The encoding is the `#[repr(C)]` field order in native byte order, so a
/// slot written by one process of a machine is read by another of the same
/// machine; it is not a portable file format (use serde for that). It is
/// written without `unsafe`: no padding, alignment or bit-validity question
/// arises.
///
/// # Examples
///
/// ```
/// use shmpar_kernels::reduce::{MomentsPartial, PlainPartial};
///
/// # fn main() -> Result<(), shmpar_kernels::Error> {
/// let p = MomentsPartial { count: 3, mean: 1.5, m2: 0.25 };
/// let mut slot = [0_u8; MomentsPartial::SIZE];
/// p.write_bytes(&mut slot)?;
/// assert_eq!(MomentsPartial::read_bytes(&slot)?, p);
/// # Ok(())
/// # }
/// ```
pub trait PlainPartial: Copy {
    /// Encoded size in bytes (equal to `size_of::<Self>()`).
    const SIZE: usize;

    /// Writes `self` into the first `SIZE` bytes of `out`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] if `out` is shorter than `SIZE`.
    fn write_bytes(&self, out: &mut [u8]) -> Result<()>;

    /// Reads a partial from the first `SIZE` bytes of `bytes`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] if `bytes` is shorter than `SIZE`.
    fn read_bytes(bytes: &[u8]) -> Result<Self>;
}

fn too_short(len: usize, size: usize) -> Error {
    Error::InvalidParameter {
        kernel: "partial encoding",
        reason: format!("a slot of {len} bytes cannot hold a partial of {size} bytes"),
    }
}

/// Every field is 8 bytes (`f64` or `u64`), so field `i` is at `8 i`.
macro_rules! plain_partial {
    ($t:ident { $($field:ident: $ft:ident),* $(,)? }) => {
        impl PlainPartial for $t {
            const SIZE: usize = 8 * [$(stringify!($field)),*].len();

            fn write_bytes(&self, out: &mut [u8]) -> Result<()> {
                let len = out.len();
                let out = out.get_mut(..Self::SIZE).ok_or(too_short(len, Self::SIZE))?;
                let mut slots = out.chunks_exact_mut(8);
                $(
                    if let Some(slot) = slots.next() {
                        slot.copy_from_slice(&self.$field.to_ne_bytes());
                    }
                )*
                Ok(())
            }

            fn read_bytes(bytes: &[u8]) -> Result<Self> {
                let bytes = bytes.get(..Self::SIZE).ok_or(too_short(bytes.len(), Self::SIZE))?;
                let mut words = bytes
                    .chunks_exact(8)
                    .map(|w| <[u8; 8]>::try_from(w).unwrap_or_default());
                Ok($t {
                    $($field: $ft::from_ne_bytes(words.next().unwrap_or_default()),)*
                })
            }
        }

        const _: () = assert!(<$t as PlainPartial>::SIZE == size_of::<$t>());
    };
}

plain_partial!(SumPartial {
    sum: f64,
    compensation: f64
});
plain_partial!(MeanPartial {
    sum: f64,
    compensation: f64,
    count: u64
});
plain_partial!(ExtremaPartial {
    min: f64,
    max: f64,
    count: u64
});
plain_partial!(MomentsPartial {
    count: u64,
    mean: f64,
    m2: f64
});
plain_partial!(NormPartial { scale: f64, ssq: f64 });
