//! How a value crosses between processes through a result slot or the job
//! parameters: plain numbers as their bytes, anything else through serde.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A plain-old-data value: copied as its bytes, no serialization.
///
/// # Safety
/// - the type has no padding, no pointers, no destructor;
/// - every bit pattern is a valid value.
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive number: no padding, valid for every bit pattern.
        unsafe impl Pod for $t {}
    )*};
}
pod!(
    f32, f64, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

// SAFETY: an array of padding-free, any-bit-pattern elements is itself
// padding-free (arrays have no padding between elements) and any-bit-pattern.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The mergeable partials of `shmpar-kernels`' reductions travel as their
/// bytes too, so `pool.map_reduce(&a, |c| Mean.partial(c), |x, y| Mean.combine(x, y))`
/// needs no serialization.
macro_rules! pod_partial {
    ($($t:ty => $words:expr),* $(,)?) => {$(
        // SAFETY: a `#[repr(C)]` struct of `$words` 8-byte `f64`/`u64`
        // fields (checked below: a size of exactly 8 bytes per field means
        // no padding), so it has no pointers and every bit pattern is valid.
        unsafe impl Pod for $t {}
        const _: () = assert!(size_of::<$t>() == 8 * $words && align_of::<$t>() == 8);
    )*};
}
pod_partial!(
    shmpar_kernels::reduce::SumPartial => 2,
    shmpar_kernels::reduce::MeanPartial => 3,
    shmpar_kernels::reduce::ExtremaPartial => 3,
    shmpar_kernels::reduce::MomentsPartial => 3,
    shmpar_kernels::reduce::NormPartial => 2,
);

/// A value that can travel from a worker to the coordinator (a reduction's
/// partial result) or from the coordinator to the workers (parameters).
///
/// Implemented for every [`Pod`] type, copied as bytes, and for [`Serde`]
/// wrappers of any serde type.
pub trait Transfer: Sized + Send + 'static {
    /// Appends the value's bytes to `out`.
    ///
    /// # Errors
    /// [`Error::Codec`] if serialization fails.
    fn encode(&self, out: &mut Vec<u8>) -> Result<()>;

    /// Rebuilds a value from `bytes`.
    ///
    /// # Errors
    /// [`Error::Codec`] if the bytes are not a value of this type.
    fn decode(bytes: &[u8]) -> Result<Self>;
}

impl<T: Pod> Transfer for T {
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.resize(start + size_of::<T>(), 0);
        // SAFETY: `out[start..]` has room for one `T`; the write is
        // unaligned-safe; `T: Pod` has no padding, so every byte written is
        // initialized.
        unsafe { std::ptr::write_unaligned(out.as_mut_ptr().add(start).cast::<T>(), *self) };
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != size_of::<T>() {
            return Err(Error::Codec {
                what: "a plain value",
                reason: format!("{} bytes, expected {}", bytes.len(), size_of::<T>()),
            });
        }
        // SAFETY: `bytes` holds exactly `size_of::<T>()` bytes and every bit
        // pattern is a valid `T` (`Pod`).
        Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
    }
}

/// Wraps any serde type so it can travel as a partial result or parameter.
///
/// # Examples
/// ```
/// use shmpar::Serde;
/// let histogram = Serde(vec![0u64; 16]);
/// # let _ = histogram;
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Serde<T>(pub T);

impl<T: Serialize + DeserializeOwned + Send + 'static> Transfer for Serde<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let bytes = postcard::to_stdvec(&self.0).map_err(|e| Error::Codec {
            what: std::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        postcard::from_bytes(bytes).map(Serde).map_err(|e| Error::Codec {
            what: std::any::type_name::<T>(),
            reason: e.to_string(),
        })
    }
}

impl Transfer for () {
    fn encode(&self, _out: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }

    fn decode(_bytes: &[u8]) -> Result<Self> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Transfer + PartialEq + std::fmt::Debug>(value: T) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes).unwrap();
        assert_eq!(T::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn values_survive_the_trip() {
        round_trip(f64::NAN.to_bits());
        round_trip((-0.0f64).to_bits());
        round_trip([1.5f64, f64::INFINITY]);
        round_trip(42u8);
        round_trip(Serde((
            String::from("partial"),
            vec![1u64, 2, 3],
            f64::NEG_INFINITY,
        )));
        round_trip(());
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(matches!(f64::decode(&[0u8; 4]), Err(Error::Codec { .. })));
        assert!(matches!(
            Serde::<Vec<u64>>::decode(&[0xff; 3]),
            Err(Error::Codec { .. })
        ));
    }
}
