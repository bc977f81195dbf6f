//! Identifiers.

use std::fmt;

/// A directory object id: a GUID in its canonical lowercase 8-4-4-4-12 form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(String);

impl ObjectId {
    /// Parses a GUID in any letter case; returns `None` for anything else.
    pub fn parse(raw: &str) -> Option<ObjectId> {
        if is_guid(raw) { Some(ObjectId(raw.to_ascii_lowercase())) } else { None }
    }

    /// The GUID with these 16 bytes, in the order a UUID prints them.
    pub fn from_bytes(bytes: [u8; 16]) -> ObjectId {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ObjectId(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
    }

    /// The canonical lowercase form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `raw` is a GUID in 8-4-4-4-12 hexadecimal form.
pub fn is_guid(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.len() != 36 {
        return false;
    }
    bytes.iter().enumerate().all(|(idx, b)| match idx {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guids_in_any_case_to_lowercase() {
        let id = ObjectId::parse("62E90394-69F5-4237-9190-012177145E10");
        assert_eq!(id.map(|it| it.to_string()).as_deref(), Some("62e90394-69f5-4237-9190-012177145e10"));
        assert!(ObjectId::parse("62e90394-69f5-4237-9190-012177145e1").is_none());
        assert!(ObjectId::parse("62e90394x69f5-4237-9190-012177145e10").is_none());
        assert!(ObjectId::parse("admin@contoso.com").is_none());
        let bytes = [0x62, 0xe9, 0x03, 0x94, 0x69, 0xf5, 0x42, 0x37, 0x91, 0x90, 0x01, 0x21, 0x77, 0x14, 0x5e, 0x10];
        assert_eq!(ObjectId::from_bytes(bytes).as_str(), "62e90394-69f5-4237-9190-012177145e10");
    }
}
