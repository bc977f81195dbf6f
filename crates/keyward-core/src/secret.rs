//! A secret string (its `Debug` never shows the value), and how secrets are compared.

use std::fmt;

use subtle::ConstantTimeEq;

/// Whether two byte strings are equal, in time that depends on their lengths only (not on where
/// they first differ): the one comparison of secrets, hashes, codes and CSRF tokens.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A password or other secret; `Debug` prints `[REDACTED]`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used (hashing, comparing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_never_shows_the_value() {
        let secret = super::Secret::new("hunter2-but-longer");
        assert_eq!(format!("{secret:?}"), "[REDACTED]");
        assert_eq!(secret.expose(), "hunter2-but-longer");
    }

    #[test]
    fn equal_only_for_the_same_bytes_and_length() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(super::constant_time_eq(b"", b""));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
        assert!(!super::constant_time_eq(b"abc", b""));
    }
}
