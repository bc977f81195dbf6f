//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP), the software OATH method.
//!
//! Keyward's codes are six digits, SHA-1, thirty-second steps, as every authenticator app expects.
//! Verification accepts the step before and after the current one (clock drift), compares in
//! constant time, and refuses a step at or before the last one the method accepted, so a code is
//! good once.

use sha1::{Digest, Sha1};

/// Seconds per time step.
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;

/// HMAC-SHA-1 (RFC 2104).
fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut block_key = [0_u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block_key.map(|it| it ^ byte);
    let inner = Sha1::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha1::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The HOTP value of `counter` with `digits` digits (RFC 4226 §5.3).
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let mac = hmac_sha1(secret, &counter.to_be_bytes());
    let offset = usize::from(mac[19] & 0x0f);
    let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    binary % 10_u32.pow(digits)
}

/// The time step that contains `unix_seconds`.
pub fn step_at(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP_SECONDS)
}

/// The code for a time step, zero-padded.
pub fn code_at_step(secret: &[u8], step: i64) -> String {
    let counter = u64::try_from(step).unwrap_or(0);
    format!("{:0width$}", hotp(secret, counter, DIGITS), width = DIGITS as usize)
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    /// Not six digits, or no step in the window matches.
    Wrong,
    /// The code matches a step this method already accepted (a replay).
    AlreadyUsed,
}

/// Checks `code` at `unix_seconds` against the steps now-1, now and now+1, and returns the step
/// it matched. `last_used_step` is the newest step this method accepted before (0 for none); a
/// match at or before it is a replay. Every candidate is compared, in constant time.
pub fn verify(secret: &[u8], code: &str, unix_seconds: i64, last_used_step: i64) -> Result<i64, CodeError> {
    let code: String = code.chars().filter(|it| !it.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|it| it.is_ascii_digit()) {
        return Err(CodeError::Wrong);
    }
    let now = step_at(unix_seconds);
    let mut matched = None;
    for step in [now - 1, now, now + 1] {
        let expected = code_at_step(secret, step);
        if crate::secret::constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            matched = Some(step);
        }
    }
    match matched {
        Some(step) if step <= last_used_step => Err(CodeError::AlreadyUsed),
        Some(step) => Ok(step),
        None => Err(CodeError::Wrong),
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, as `otpauth://` URIs carry secrets.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut res = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0_u32, 0_u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            res.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        res.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    res
}

/// Decodes base32 (case-insensitive, spaces and padding ignored); `None` for other characters.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut res = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0_u32, 0_u32);
    for ch in text.chars().filter(|it| !it.is_whitespace() && *it != '=') {
        let value = BASE32.iter().position(|it| char::from(*it) == ch.to_ascii_uppercase())?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            res.push((buffer >> bits) as u8);
        }
    }
    Some(res)
}

/// The `otpauth://totp/…` URI authenticator apps read from the QR code (Google's Key URI format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let label = format!("{}:{}", percent_encode(issuer), percent_encode(account));
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        base32_encode(secret),
        percent_encode(issuer)
    )
}

fn percent_encode(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'@') {
            res.push(char::from(byte));
        } else {
            res.push_str(&format!("%{byte:02X}"));
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (eight digits, the RFC's 20-byte ASCII seed).
    #[test]
    fn rfc_6238_test_vectors() {
        let seed = b"12345678901234567890";
        for (time, expected) in [
            (59_i64, 94_287_082_u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            let counter = u64::try_from(step_at(time)).expect("positive");
            assert_eq!(hotp(seed, counter, 8), expected, "T={time}");
        }
    }

    /// RFC 4226 Appendix D.
    #[test]
    fn rfc_4226_hotp_vectors() {
        let expected = [755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871, 520_489];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), want);
        }
    }

    #[test]
    fn verification_accepts_one_step_of_drift_and_refuses_replays() {
        let secret = b"keyward test secret!";
        let now = 1_800_000_015;
        let step = step_at(now);
        for drift in [-1, 0, 1] {
            assert_eq!(verify(secret, &code_at_step(secret, step + drift), now, 0), Ok(step + drift));
        }
        assert_eq!(verify(secret, &code_at_step(secret, step - 2), now, 0), Err(CodeError::Wrong));
        assert_eq!(verify(secret, &code_at_step(secret, step + 2), now, 0), Err(CodeError::Wrong));
        assert_eq!(verify(secret, &code_at_step(secret, step), now, step), Err(CodeError::AlreadyUsed));
        assert_eq!(verify(secret, &code_at_step(secret, step - 1), now, step), Err(CodeError::AlreadyUsed));
        assert_eq!(verify(secret, &code_at_step(secret, step + 1), now, step), Ok(step + 1));
        assert_eq!(verify(secret, "12345", now, 0), Err(CodeError::Wrong));
        assert_eq!(verify(secret, "abcdef", now, 0), Err(CodeError::Wrong));
        let spaced = code_at_step(secret, step);
        assert_eq!(verify(secret, &format!("{} {}", &spaced[..3], &spaced[3..]), now, 0), Ok(step));
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_encode(b"f"), "MY");
        assert_eq!(base32_decode("mzxw 6ytb oi======").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(base32_decode("MZ1"), None);
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(base32_decode(&base32_encode(&bytes)), Some(bytes));
    }

    #[test]
    fn otpauth_uris_name_issuer_account_and_parameters() {
        let uri = otpauth_uri("Keyward", "adele@contoso.com", b"12345678901234567890");
        assert_eq!(
            uri,
            "otpauth://totp/Keyward:adele@contoso.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Keyward\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert!(otpauth_uri("Key ward", "a b", b"x").starts_with("otpauth://totp/Key%20ward:a%20b?"));
    }
}
