//! Segment names: validation of names users give, and unguessable defaults.

use std::ffi::CString;

use crate::error::{Error, Result};
use crate::os;

/// Prefix of every default name, so `ls /dev/shm` shows whose segments they are.
pub const DEFAULT_PREFIX: &str = "shmpar_";

/// Longest name accepted (Linux `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Characters of the random part: lowercase base32, safe in any file name.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Length of the random part: 20 characters, 100 bits.
const RANDOM_LEN: usize = 20;

/// Checks a user-given name and returns it without its optional leading `/`.
pub(crate) fn validate(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let reason = if bare.is_empty() {
        Some("it is empty")
    } else if bare.contains('/') {
        Some("it contains '/' (a segment name is a single path component)")
    } else if bare.contains('\0') {
        Some("it contains a NUL byte")
    } else if bare == "." || bare == ".." {
        Some("'.' and '..' are not names")
    } else if bare.len() > MAX_NAME_LEN {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(bare.to_owned()),
    }
}

/// A fresh unguessable name: `shmpar_` and 20 random base32 characters, 27
/// bytes, so `/name` fits the 31 bytes macOS allows.
pub(crate) fn random() -> Result<String> {
    let mut bytes = [0u8; RANDOM_LEN];
    os::random_bytes(&mut bytes).map_err(|source| Error::Io {
        op: "getrandom",
        name: "a new segment name".into(),
        source,
    })?;
    let mut name = String::with_capacity(DEFAULT_PREFIX.len() + RANDOM_LEN);
    name.push_str(DEFAULT_PREFIX);
    name.extend(bytes.iter().map(|b| ALPHABET[usize::from(b & 31)] as char));
    Ok(name)
}

/// The name as `shm_open` takes it: `/name`, NUL-terminated. `bare` must have
/// passed [`validate`].
pub(crate) fn to_c(bare: &str) -> CString {
    CString::new(format!("/{bare}")).expect("validated names hold no NUL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_strips_one_slash() {
        assert_eq!(validate("abc").unwrap(), "abc");
        assert_eq!(validate("/abc").unwrap(), "abc");
        assert_eq!(validate(&"x".repeat(255)).unwrap().len(), 255);
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        for bad in ["", "/", "a/b", "//a", "..", ".", "/..", "a\0b"] {
            match validate(bad) {
                Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        assert!(matches!(
            validate(&"x".repeat(300)),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn random_names_are_portable_and_distinct() {
        let a = random().unwrap();
        let b = random().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(DEFAULT_PREFIX));
        assert!(a.len() < 31, "/{a} is too long for macOS");
        assert_eq!(validate(&a).unwrap(), a);
    }
}
