//! Element types that may live in a shared segment.

use std::fmt;

/// The element type of a shared array, as recorded in the segment header.
///
/// The numeric code of each variant is part of the segment layout
/// (`docs/segment-layout.md`) and never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// `f32`, code 1.
    F32,
    /// `f64`, code 2.
    F64,
    /// `i8`, code 3.
    I8,
    /// `i16`, code 4.
    I16,
    /// `i32`, code 5.
    I32,
    /// `i64`, code 6.
    I64,
    /// `u8`, code 7.
    U8,
    /// `u16`, code 8.
    U16,
    /// `u32`, code 9.
    U32,
    /// `u64`, code 10.
    U64,
}

impl DType {
    /// Every element type, in code order.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
    ];

    /// The code stored in the header.
    pub const fn code(self) -> u32 {
        match self {
            DType::F32 => 1,
            DType::F64 => 2,
            DType::I8 => 3,
            DType::I16 => 4,
            DType::I32 => 5,
            DType::I64 => 6,
            DType::U8 => 7,
            DType::U16 => 8,
            DType::U32 => 9,
            DType::U64 => 10,
        }
    }

    /// The type for a header code, if the code is known.
    pub fn from_code(code: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.code() == code)
    }

    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// The Rust name of the type: `"f64"`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
        }
    }

    /// The NumPy type string for little-endian data: `"<f8"`.
    pub const fn numpy_str(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::F64 => "<f8",
            DType::I8 => "|i1",
            DType::I16 => "<i2",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
            DType::U8 => "|u1",
            DType::U16 => "<u2",
            DType::U32 => "<u4",
            DType::U64 => "<u8",
        }
    }

    /// Parses a Rust type name (`"f64"`), as the command line takes it.
    pub fn parse(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A plain numeric type that can live in shared memory and be read by other
/// processes and languages.
///
/// # Safety
///
/// Implementing this trait promises that the type:
/// - is `Copy`, has no padding, no pointers and no destructor;
/// - is valid for every bit pattern, so bytes written by any process (or a
///   hostile one) are a valid value;
/// - has exactly the size and alignment of [`Element::DTYPE`].
///
/// shmpar implements it for `f32`, `f64`, `i8`–`i64` and `u8`–`u64`; nothing
/// else should.
pub unsafe trait Element: Copy + Send + Sync + Default + PartialEq + fmt::Debug + 'static {
    /// The type's code in the header.
    const DTYPE: DType;
}

macro_rules! impl_element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        // SAFETY: a primitive number: no padding, no pointers, every bit
        // pattern valid, size and alignment equal to `DType::$d.size()`
        // (checked below at compile time).
        unsafe impl Element for $t {
            const DTYPE: DType = DType::$d;
        }
        const _: () = assert!(
            std::mem::size_of::<$t>() == DType::$d.size()
                && std::mem::align_of::<$t>() <= DType::$d.size()
        );
    )*};
}

impl_element!(
    f32 => F32, f64 => F64,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    u8 => U8, u16 => U16, u32 => U32, u64 => U64,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for d in DType::ALL {
            assert_eq!(DType::from_code(d.code()), Some(d));
            assert_eq!(DType::parse(d.name()), Some(d));
        }
        assert_eq!(DType::from_code(0), None);
        assert_eq!(DType::from_code(11), None);
        assert_eq!(DType::parse("f16"), None);
    }
}
