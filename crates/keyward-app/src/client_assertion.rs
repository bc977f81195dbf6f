//! `private_key_jwt` client authentication (RFC 7523): a JWT the application signs with the key
//! of a certificate registered in its `keyCredentials`. The certificate is found by the header's
//! `x5t` (SHA-1 thumbprint, as MSAL sends), `x5t#S256` or `kid`; the signature is checked with
//! the certificate's public key; `iss` and `sub` must be the client id, `aud` the token endpoint,
//! and the assertion must be within its lifetime.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm};
use serde_json::Value;

/// How far clocks may disagree.
const SKEW: i64 = 300;
/// The longest an assertion may be valid ahead (MSAL signs ten minutes).
const MAX_LIFETIME: i64 = 3600;

/// The SHA-1 thumbprint of a DER certificate, as uppercase hex (Entra's `customKeyIdentifier`).
pub(crate) fn thumbprint(der: &[u8]) -> String {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref().iter().map(|it| format!("{it:02X}")).collect()
}

/// Whether `der` is a certificate webpki can read.
pub(crate) fn is_certificate(der: &[u8]) -> bool {
    let der = CertificateDer::from(der);
    webpki::EndEntityCert::try_from(&der).is_ok()
}

/// Converts a JWS ECDSA signature (r || s, 32 bytes each) to ASN.1 DER.
fn ecdsa_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let integer = |bytes: &[u8]| {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|it| *it == 0).collect();
        let mut body = if trimmed.first().is_some_and(|it| it & 0x80 != 0) { vec![0] } else { Vec::new() };
        body.extend(if trimmed.is_empty() { vec![0] } else { trimmed });
        let mut res = vec![0x02, body.len() as u8];
        res.extend(body);
        res
    };
    let (r, s) = raw.split_at(32);
    let mut body = integer(r);
    body.extend(integer(s));
    let mut res = vec![0x30, body.len() as u8];
    res.extend(body);
    Some(res)
}

fn decode_json(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| "the assertion is not base64url".to_owned())?;
    serde_json::from_slice(&bytes).map_err(|_| "the assertion is not JSON".to_owned())
}

/// Verifies a client assertion; `certificates` are the application's registered DER
/// certificates, `audiences` the token endpoint URLs the assertion may name.
pub(crate) fn verify(
    assertion: &str,
    client_id: &str,
    audiences: &[String],
    certificates: &[Vec<u8>],
    now: i64,
) -> Result<Verified, String> {
    let mut parts = assertion.split('.');
    let (Some(head), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the client assertion is not a signed JWT".into());
    };
    let header = decode_json(head)?;
    let claims = decode_json(body)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| "the signature is not base64url".to_owned())?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let (algorithm, signature): (&dyn SignatureVerificationAlgorithm, Vec<u8>) = match alg {
        "RS256" => (webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256, signature),
        "PS256" => (webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY, signature),
        "ES256" => (webpki::aws_lc_rs::ECDSA_P256_SHA256, ecdsa_der(&signature).ok_or("bad ES256 signature")?),
        other => {
            return Err(format!(
                "the client assertion's algorithm '{other}' is not supported (use RS256, PS256 or ES256)"
            ));
        }
    };
    // Some clients (MSAL Python) pad their base64url thumbprints.
    let x5t = header.get("x5t").and_then(Value::as_str).map(|it| it.trim_end_matches('='));
    let x5t_s256 = header.get("x5t#S256").and_then(Value::as_str).map(|it| it.trim_end_matches('='));
    let kid = header.get("kid").and_then(Value::as_str);
    let certificate = certificates
        .iter()
        .find(|der| {
            let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der);
            let sha256 = digest::digest(&digest::SHA256, der);
            x5t.is_some_and(|it| it == URL_SAFE_NO_PAD.encode(sha1.as_ref()))
                || x5t_s256.is_some_and(|it| it == URL_SAFE_NO_PAD.encode(sha256.as_ref()))
                || kid.is_some_and(|it| it.eq_ignore_ascii_case(&thumbprint(der)))
        })
        .ok_or("no certificate registered for the application matches the assertion's x5t or kid")?;
    let der = CertificateDer::from(certificate.as_slice());
    let cert =
        webpki::EndEntityCert::try_from(&der).map_err(|_| "a registered certificate cannot be read".to_owned())?;
    let signed = &assertion[..head.len() + 1 + body.len()];
    cert.verify_signature(algorithm, signed.as_bytes(), &signature)
        .map_err(|_| "the client assertion's signature is invalid".to_owned())?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err("the client assertion's iss and sub must be the client id".into());
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(it)) => audiences.iter().any(|aud| aud == it),
        Some(Value::Array(list)) => {
            list.iter().filter_map(Value::as_str).any(|it| audiences.iter().any(|aud| aud == it))
        }
        _ => false,
    };
    if !aud_ok {
        return Err("the client assertion's aud must be the token endpoint".into());
    }
    // NumericDate may carry a fraction (MSAL Python sends floats).
    let seconds = |name: &str| claims.get(name).and_then(Value::as_f64).map(|it| it as i64);
    let exp = seconds("exp").ok_or("the client assertion has no exp")?;
    if exp + SKEW < now {
        return Err("the client assertion has expired".into());
    }
    // A leaked assertion must not stay good for long: at most an hour ahead.
    if exp > now + MAX_LIFETIME {
        return Err("the client assertion's exp is more than an hour away".into());
    }
    if seconds("nbf").is_some_and(|nbf| nbf - SKEW > now) {
        return Err("the client assertion is not valid yet".into());
    }
    // Single use: the caller records the jti until the assertion expires.
    let jti = text("jti").filter(|it| !it.is_empty() && it.len() <= 256).ok_or("the client assertion has no jti")?;
    Ok(Verified { jti: jti.to_owned(), exp: exp + SKEW })
}

/// What a verified assertion says that its single use depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    pub jti: String,
    /// The last second (skew included) at which the assertion is accepted.
    pub exp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_become_der() {
        let mut raw = [0_u8; 64];
        raw[0] = 0x80;
        raw[63] = 1;
        let der = ecdsa_der(&raw).expect("der");
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00], "a high bit gets a leading zero");
        assert!(der.ends_with(&[0x02, 0x01, 0x01]), "leading zeros are trimmed: {der:?}");
        assert!(ecdsa_der(&[0; 10]).is_none());
    }

    #[test]
    fn garbage_assertions_are_refused() {
        assert!(verify("a.b", "c", &[], &[], 0).is_err());
        assert!(verify("e30.e30.AA", "c", &[], &[], 0).is_err());
    }
}
