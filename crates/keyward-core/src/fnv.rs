//! FNV-1a, an unkeyed hash for the small maps every request looks something up in by a short
//! key: the route words, a statement's column names, the kept tenants, callers and users, the
//! signing keys, the metrics' routes. SipHash, the standard maps' default, costs such a lookup several times what the key's
//! bytes do (its set-up and finish). FNV takes a few instructions a byte, so a long key (a token's
//! 86-byte signature) gains nothing from it.
//!
//! Unkeyed, it is fit only for a map whose keys a caller cannot choose in bulk: an attacker who
//! could insert many keys of their choosing could pick keys that share a hash and make each
//! lookup slow. Each map that uses it says why its keys cannot be chosen so.

use std::hash::{BuildHasher, Hasher};

/// Builds [`FnvHasher`]s: `HashMap<K, V, Fnv>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fnv;

impl BuildHasher for Fnv {
    type Hasher = FnvHasher;

    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

/// FNV-1a over 64 bits.
#[derive(Debug, Clone, Copy)]
pub struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_equal_keys_hash_alike() {
        let hash = |bytes: &[u8]| {
            let mut hasher = Fnv.build_hasher();
            hasher.write(bytes);
            hasher.finish()
        };
        // FNV-1a's published test vectors.
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
        // A `String` key is found by a `&str` lookup.
        let map: std::collections::HashMap<String, u8, Fnv> = [("users".to_owned(), 1)].into_iter().collect();
        assert_eq!(map.get("users"), Some(&1));
        assert_eq!(map.get("Users"), None);
    }
}
