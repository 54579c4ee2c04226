//! How a value crosses between processes, as kernel parameters (coordinator
//! to workers) or as a partial result (a worker to the coordinator): plain
//! data as its bytes, tuples field by field, anything else through serde.
//!
//! Plain data is [`bytemuck::Pod`]: its derive refuses a struct with
//! padding at compile time, so "no uninitialized bytes, every bit pattern
//! valid" is checked by a vetted library, not by a size assertion.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A plain-data type that travels as its bytes: any [`bytemuck::Pod`] type
/// that opts in with one safe line.
///
/// Numbers, arrays of plain data and the partials of `shmpar-kernels`'
/// reductions are plain already. For a struct of your own, derive
/// `bytemuck::Pod` (which refuses padding at compile time) and opt in:
///
/// ```
/// #[repr(C)]
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// struct Stats {
///     sum: f64,
///     count: u64,
/// }
/// impl shmpar::Plain for Stats {}
/// ```
///
/// A padded struct does not compile as plain data:
///
/// ```compile_fail
/// #[repr(C)]
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// struct Padded {
///     x: f64,
///     y: f64,
///     tag: u32, // 4 bytes of padding follow: the derive refuses it
/// }
/// ```
pub trait Plain: bytemuck::Pod + Send + Sync {}

macro_rules! plain {
    ($($t:ty),*) => {$( impl Plain for $t {} )*};
}
plain!(
    f32, f64, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

impl<T: Plain, const N: usize> Plain for [T; N] where [T; N]: bytemuck::Pod {}

plain!(
    shmpar_kernels::reduce::SumPartial,
    shmpar_kernels::reduce::MeanPartial,
    shmpar_kernels::reduce::ExtremaPartial,
    shmpar_kernels::reduce::MomentsPartial,
    shmpar_kernels::reduce::NormPartial,
    shmpar_kernels::workloads::KmeansPartial,
    shmpar_kernels::workloads::MandelbrotParams
);

/// A value that can travel between the coordinator and its workers: kernel
/// parameters, and the partial results of a reduction.
///
/// Implemented for every [`Plain`] type (copied as bytes), for tuples of up
/// to eight `Transfer` values, for `()`, and for [`Serde`] wrappers of any
/// serde type.
///
/// ```
/// use shmpar::Transfer;
/// let mut bytes = Vec::new();
/// (2.5f64, 7u64, [1u32; 4]).encode(&mut bytes)?;
/// assert_eq!(<(f64, u64, [u32; 4])>::decode(&bytes)?, (2.5, 7, [1; 4]));
/// # Ok::<(), shmpar::Error>(())
/// ```
pub trait Transfer: Sized + Send + Sync + 'static {
    /// Appends the value's bytes to `out`.
    ///
    /// # Errors
    /// [`Error::Codec`] if serialization fails.
    fn encode(&self, out: &mut Vec<u8>) -> Result<()>;

    /// Rebuilds a value from exactly the bytes [`encode`](Self::encode) wrote.
    ///
    /// # Errors
    /// [`Error::Codec`] if the bytes are not a value of this type.
    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut rest = bytes;
        let value = Self::decode_prefix(&mut rest)?;
        if !rest.is_empty() {
            return Err(Error::Codec {
                what: std::any::type_name::<Self>(),
                reason: format!("{} bytes left over", rest.len()),
            });
        }
        Ok(value)
    }

    /// Rebuilds a value from the front of `bytes` and advances past it.
    /// Tuples decode their fields with it.
    ///
    /// # Errors
    /// [`Error::Codec`] if the bytes are not a value of this type.
    fn decode_prefix(bytes: &mut &[u8]) -> Result<Self>;
}

impl<T: Plain> Transfer for T {
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(bytemuck::bytes_of(self));
        Ok(())
    }

    fn decode_prefix(bytes: &mut &[u8]) -> Result<Self> {
        let size = size_of::<T>();
        if bytes.len() < size {
            return Err(Error::Codec {
                what: std::any::type_name::<T>(),
                reason: format!("{} bytes, expected {size}", bytes.len()),
            });
        }
        let (head, rest) = bytes.split_at(size);
        *bytes = rest;
        Ok(bytemuck::pod_read_unaligned(head))
    }
}

/// Wraps any serde type so it can travel as a partial result or parameter
/// (encoded with postcard).
///
/// ```
/// use shmpar::{Serde, Transfer};
/// let mut bytes = Vec::new();
/// Serde(vec![String::from("a"), String::from("b")]).encode(&mut bytes)?;
/// assert_eq!(Serde::<Vec<String>>::decode(&bytes)?.0, ["a", "b"]);
/// # Ok::<(), shmpar::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Serde<T>(pub T);

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Transfer for Serde<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let bytes = postcard::to_stdvec(&self.0).map_err(|e| Error::Codec {
            what: std::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
        // A length prefix, so a serde value can sit inside a tuple.
        (bytes.len() as u64).encode(out)?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn decode_prefix(bytes: &mut &[u8]) -> Result<Self> {
        let len = u64::decode_prefix(bytes)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= bytes.len())
            .ok_or_else(|| Error::Codec {
                what: std::any::type_name::<T>(),
                reason: format!("a length of {len} bytes, but {} remain", bytes.len()),
            })?;
        let (head, rest) = bytes.split_at(len);
        *bytes = rest;
        postcard::from_bytes(head).map(Serde).map_err(|e| Error::Codec {
            what: std::any::type_name::<T>(),
            reason: e.to_string(),
        })
    }
}

impl Transfer for () {
    fn encode(&self, _out: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }

    fn decode_prefix(_bytes: &mut &[u8]) -> Result<Self> {
        Ok(())
    }
}

macro_rules! tuple_transfer {
    ($($name:ident)+) => {
        impl<$($name: Transfer),+> Transfer for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
                let ($($name,)+) = self;
                $( $name.encode(out)?; )+
                Ok(())
            }

            fn decode_prefix(bytes: &mut &[u8]) -> Result<Self> {
                Ok(($($name::decode_prefix(bytes)?,)+))
            }
        }
    };
}
tuple_transfer!(A);
tuple_transfer!(A B);
tuple_transfer!(A B C);
tuple_transfer!(A B C D);
tuple_transfer!(A B C D E);
tuple_transfer!(A B C D E F);
tuple_transfer!(A B C D E F G);
tuple_transfer!(A B C D E F G H);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Transfer + PartialEq + std::fmt::Debug>(value: T) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes).unwrap();
        assert_eq!(T::decode(&bytes).unwrap(), value);
    }

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    struct Centroid {
        sum: [f64; 3],
        count: u64,
    }
    impl Plain for Centroid {}

    #[test]
    fn values_survive_the_trip() {
        round_trip(f64::NAN.to_bits());
        round_trip((-0.0f64).to_bits());
        round_trip([1.5f64, f64::INFINITY]);
        round_trip([7u8; 128]);
        round_trip(42u8);
        round_trip((2.5f64, 9u64));
        round_trip((1u8, (2u16, [3u32; 5]), -4i64));
        round_trip(Centroid {
            sum: [1.0, 2.0, 3.0],
            count: 3,
        });
        round_trip(
            [Centroid {
                sum: [0.5; 3],
                count: 1,
            }; 16],
        );
        round_trip(Serde((
            String::from("partial"),
            vec![1u64, 2, 3],
            f64::NEG_INFINITY,
        )));
        round_trip((Serde(vec![String::from("x")]), 3.0f32));
        round_trip(());
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(matches!(f64::decode(&[0u8; 4]), Err(Error::Codec { .. })));
        assert!(matches!(f64::decode(&[0u8; 9]), Err(Error::Codec { .. })));
        assert!(matches!(
            <(f64, u32)>::decode(&[0u8; 11]),
            Err(Error::Codec { .. })
        ));
        assert!(matches!(
            Serde::<Vec<u64>>::decode(&[0xff; 3]),
            Err(Error::Codec { .. })
        ));
        assert!(matches!(
            Serde::<Vec<u64>>::decode(&[200, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(Error::Codec { .. })
        ));
    }
}
