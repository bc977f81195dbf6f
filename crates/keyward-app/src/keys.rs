//! Token signing keys: ES256 key pairs generated on first start, sealed with the node's
//! key-encryption key before they reach the database, published as a JWKS, rotated without
//! breaking tokens signed by older keys until those keys are retired.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::audit_chain::{self, ChainHash};
use keyward_store::SigningKey;
use time::OffsetDateTime;

use crate::error::AppError;

/// A public key as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: String,
    pub x: String,
    pub y: String,
}

/// Why a token did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    Malformed,
    UnknownKey,
    BadSignature,
}

struct KeyState {
    signing: Option<(String, EcdsaKeyPair)>,
    /// By key id; the keys are this service's own, so FNV (`keyward_core::fnv`) hashes their ids.
    verifying: HashMap<String, Vec<u8>, keyward_core::fnv::Fnv>,
    published: Vec<PublicJwk>,
    loaded_at: Option<Instant>,
}

/// The signing keys of this deployment, cached from the store.
pub struct KeyRing {
    kek: LessSafeKey,
    /// MACs audit retention checkpoints; derived from the key-encryption key, so only a holder of
    /// that key (a Keyward node) can move a checkpoint.
    checkpoint_mac: Option<hmac::Key>,
    /// MACs Temporary Access Passes before they are stored: a pass is short (8 characters of 62,
    /// about 48 bits), so a plain hash read from the database could be reversed by trying every
    /// pass; without the key-encryption key it cannot.
    pass_mac: Option<hmac::Key>,
    rng: SystemRandom,
    state: RwLock<KeyState>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

fn unexpected(what: &str) -> AppError {
    AppError::Unexpected(anyhow::anyhow!("{what}"))
}

impl KeyRing {
    /// A key ring sealing private keys with `master_key` (AES-256-GCM).
    pub fn new(master_key: &[u8; 32]) -> Result<KeyRing, AppError> {
        let unbound = UnboundKey::new(&AES_256_GCM, master_key).map_err(|_| unexpected("invalid master key"))?;
        let master = hmac::Key::new(hmac::HMAC_SHA256, master_key);
        let derived = hmac::sign(&master, b"keyward audit checkpoint key v1");
        let pass = hmac::sign(&master, b"keyward temporary access pass key v1");
        Ok(KeyRing {
            kek: LessSafeKey::new(unbound),
            checkpoint_mac: Some(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())),
            pass_mac: Some(hmac::Key::new(hmac::HMAC_SHA256, pass.as_ref())),
            rng: SystemRandom::new(),
            state: RwLock::new(KeyState {
                signing: None,
                verifying: HashMap::default(),
                published: Vec::new(),
                loaded_at: None,
            }),
        })
    }

    /// A key ring for maintenance commands run without the key-encryption key: it seals, signs
    /// and checks nothing (checkpoint checks answer `None`).
    pub fn without_master_key() -> Result<KeyRing, AppError> {
        Ok(KeyRing { checkpoint_mac: None, pass_mac: None, ..KeyRing::new(&[0; 32])? })
    }

    /// Whether this key ring holds the key-encryption key (so it can sign and check checkpoints).
    pub fn has_master_key(&self) -> bool {
        self.checkpoint_mac.is_some()
    }

    /// The MAC of an audit checkpoint message, as lower-case hex.
    pub fn sign_checkpoint(&self, message: &[u8]) -> Result<String, AppError> {
        let key = self.checkpoint_mac.as_ref().ok_or_else(|| unexpected("no key-encryption key to sign with"))?;
        let tag: ChainHash =
            hmac::sign(key, message).as_ref().try_into().map_err(|_| unexpected("HMAC-SHA256 is 32 bytes"))?;
        Ok(audit_chain::to_hex(&tag))
    }

    /// Whether `signature` is this node's MAC of `message` (compared in constant time); `None`
    /// without the key-encryption key.
    pub fn verify_checkpoint(&self, message: &[u8], signature: &str) -> Option<bool> {
        let key = self.checkpoint_mac.as_ref()?;
        let tag = audit_chain::from_hex(&signature.to_ascii_lowercase());
        Some(tag.is_some_and(|tag| hmac::verify(key, message, &tag).is_ok()))
    }

    /// What is stored of a Temporary Access Pass: its HMAC-SHA256 under a key derived from the
    /// key-encryption key.
    pub fn pass_hash(&self, pass: &str) -> Result<Vec<u8>, AppError> {
        let key = self.pass_mac.as_ref().ok_or_else(|| unexpected("no key-encryption key to keep a pass with"))?;
        Ok(hmac::sign(key, pass.as_bytes()).as_ref().to_vec())
    }

    /// Whether `pass` is the one `stored` was made from (in constant time). A pass stored by an
    /// earlier version as its plain SHA-256 still counts, until it expires (30 days at most).
    pub fn pass_matches(&self, pass: &str, stored: &[u8]) -> bool {
        let keyed = self.pass_mac.as_ref().is_some_and(|key| hmac::verify(key, pass.as_bytes(), stored).is_ok());
        keyed
            || keyward_core::secret::constant_time_eq(digest::digest(&digest::SHA256, pass.as_bytes()).as_ref(), stored)
    }

    /// Seals a secret (a TOTP seed) with the key-encryption key, bound to `context` (the owner's
    /// id): nonce, then ciphertext and tag.
    pub fn seal_secret(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AppError> {
        let mut nonce = [0_u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| unexpected("random generator failed"))?;
        let mut sealed = plaintext.to_vec();
        self.kek
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut sealed)
            .map_err(|_| unexpected("sealing failed"))?;
        let mut res = nonce.to_vec();
        res.extend_from_slice(&sealed);
        Ok(res)
    }

    /// Opens a secret sealed by [`KeyRing::seal_secret`] with the same `context`.
    pub fn open_secret(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AppError> {
        if sealed.len() <= NONCE_LEN {
            return Err(unexpected("sealed secret is truncated"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unexpected("bad nonce"))?;
        let mut buffer = body.to_vec();
        let plain = self
            .kek
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .map_err(|_| unexpected("cannot open a sealed secret: wrong key-encryption key or changed data"))?;
        Ok(plain.to_vec())
    }

    /// Generates a new key pair, sealed and ready to store; it signs once activated.
    pub fn generate(&self, now: OffsetDateTime) -> Result<SigningKey, AppError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.rng)
            .map_err(|_| unexpected("key generation failed"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| unexpected("generated key does not parse"))?;
        let public_key = pair.public_key().as_ref().to_vec();
        let thumb = digest::digest(&digest::SHA256, &public_key);
        let kid = URL_SAFE_NO_PAD.encode(&thumb.as_ref()[..16]);
        let mut nonce = [0_u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| unexpected("random generator failed"))?;
        let mut sealed = pkcs8.as_ref().to_vec();
        self.kek
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(kid.as_bytes()), &mut sealed)
            .map_err(|_| unexpected("sealing failed"))?;
        let mut sealed_private_key = nonce.to_vec();
        sealed_private_key.extend_from_slice(&sealed);
        Ok(SigningKey {
            kid,
            algorithm: "ES256".into(),
            sealed_private_key,
            public_key,
            created: now,
            activated: Some(now),
            retired: None,
        })
    }

    /// Replaces the cache with the keys from the store. The newest activated, unretired key signs;
    /// every unretired key verifies and is published.
    pub fn load(&self, keys: &[SigningKey]) -> Result<(), AppError> {
        let mut verifying = HashMap::default();
        let mut published = Vec::new();
        let mut signing = None;
        for key in keys.iter().filter(|it| it.retired.is_none()) {
            let Some(point) = key.public_key.strip_prefix(&[4]) else { return Err(unexpected("corrupt public key")) };
            if point.len() != 64 {
                return Err(unexpected("corrupt public key"));
            }
            published.push(PublicJwk {
                kid: key.kid.clone(),
                x: URL_SAFE_NO_PAD.encode(&point[..32]),
                y: URL_SAFE_NO_PAD.encode(&point[32..]),
            });
            verifying.insert(key.kid.clone(), key.public_key.clone());
            if key.activated.is_some() {
                signing = Some(key);
            }
        }
        let signing = match signing {
            Some(key) => Some((key.kid.clone(), self.unseal(key)?)),
            None => None,
        };
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = KeyState { signing, verifying, published, loaded_at: Some(Instant::now()) };
        Ok(())
    }

    fn unseal(&self, key: &SigningKey) -> Result<EcdsaKeyPair, AppError> {
        let wrong_key = || {
            unexpected(
                "cannot unseal the token signing key: the key-encryption key (keyward.key in the data directory, or \
                 KEYWARD_MASTER_KEY) is not the one the database was created with",
            )
        };
        if key.sealed_private_key.len() <= NONCE_LEN {
            return Err(wrong_key());
        }
        let (nonce, sealed) = key.sealed_private_key.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong_key())?;
        let mut buffer = sealed.to_vec();
        let pkcs8 =
            self.kek.open_in_place(nonce, Aad::from(key.kid.as_bytes()), &mut buffer).map_err(|_| wrong_key())?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| wrong_key())
    }

    /// Whether the cache is older than `age` (or was never loaded).
    pub fn is_stale(&self, age: Duration) -> bool {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.loaded_at.is_none_or(|it| it.elapsed() > age)
    }

    /// Signs a JWT with the active key: `header.claims.signature`, ES256.
    pub fn sign(&self, claims_json: &[u8]) -> Result<String, AppError> {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((kid, pair)) = &state.signing else { return Err(unexpected("no active signing key")) };
        let header = format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT"}}"#);
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims_json));
        let signature = pair.sign(&self.rng, token.as_bytes()).map_err(|_| unexpected("signing failed"))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// Verifies a JWT's ES256 signature against a published key and returns its claims bytes.
    pub fn verify(&self, token: &str) -> Result<Vec<u8>, VerifyError> {
        self.verify_signed(token).map(|(_, claims)| claims)
    }

    /// Verifies a JWT's ES256 signature against a published key and returns the key's id and
    /// the claims bytes. Always checks the signature: callers that remember verified tokens
    /// (`tokens::VerifiedTokens`) ask [`KeyRing::verifies`] whether the key still counts.
    pub fn verify_signed(&self, token: &str) -> Result<(String, Vec<u8>), VerifyError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed);
        };
        // What is signed: the header, the dot and the claims, as sent.
        let signed_len = header.len() + 1 + claims.len();
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| VerifyError::Malformed)?;
        let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| VerifyError::Malformed)?;
        if header.get("alg").and_then(|it| it.as_str()) != Some("ES256") {
            return Err(VerifyError::BadSignature);
        }
        let kid = header.get("kid").and_then(|it| it.as_str()).ok_or(VerifyError::Malformed)?;
        let public_key = {
            let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.verifying.get(kid).cloned().ok_or(VerifyError::UnknownKey)?
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| VerifyError::Malformed)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
            .verify(&token.as_bytes()[..signed_len], &signature)
            .map_err(|_| VerifyError::BadSignature)?;
        let claims = URL_SAFE_NO_PAD.decode(claims).map_err(|_| VerifyError::Malformed)?;
        Ok((kid.to_owned(), claims))
    }

    /// Whether the key `kid` still verifies tokens (loaded and not retired).
    pub fn verifies(&self, kid: &str) -> bool {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner).verifying.contains_key(kid)
    }

    /// The published keys (every unretired key).
    pub fn public_keys(&self) -> Vec<PublicJwk> {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.published.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_keys_keep_verifying_until_retired_and_tampering_fails() {
        let ring = KeyRing::new(&[7; 32]).expect("ring");
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut first = ring.generate(now).expect("key");
        ring.load(std::slice::from_ref(&first)).expect("load");
        let old_token = ring.sign(br#"{"sub":"a"}"#).expect("sign");
        assert_eq!(ring.verify(&old_token), Ok(br#"{"sub":"a"}"#.to_vec()));

        let second = ring.generate(now + time::Duration::seconds(1)).expect("key");
        ring.load(&[first.clone(), second.clone()]).expect("load");
        let new_token = ring.sign(b"{}").expect("sign");
        assert!(
            new_token
                .contains(&URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{}","typ":"JWT"}}"#, second.kid)))
        );
        assert!(ring.verify(&old_token).is_ok(), "old key still verifies after rotation");
        assert_eq!(ring.public_keys().len(), 2);

        first.retired = Some(now);
        let (first_kid, second_kid) = (first.kid.clone(), second.kid.clone());
        ring.load(&[first, second]).expect("load");
        assert_eq!(ring.verify(&old_token), Err(VerifyError::UnknownKey));
        assert!(!ring.verifies(&first_kid), "a retired key no longer counts");
        assert!(ring.verify(&new_token).is_ok());

        let mut tampered = new_token.clone();
        tampered.insert(new_token.find('.').expect("dot") + 2, 'x');
        assert!(ring.verify(&tampered).is_err());
        assert!(ring.verify(&new_token).is_ok());
        assert!(ring.verifies(&second_kid));
        let mut forged = new_token.into_bytes();
        let at = forged.len() - 10;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert_eq!(ring.verify(&forged), Err(VerifyError::BadSignature), "a changed signature fails");
        assert_eq!(ring.verify("a.b"), Err(VerifyError::Malformed));
    }

    #[test]
    fn a_different_master_key_cannot_unseal() {
        let ring = KeyRing::new(&[7; 32]).expect("ring");
        let key = ring.generate(OffsetDateTime::UNIX_EPOCH).expect("key");
        let other = KeyRing::new(&[8; 32]).expect("ring");
        let err = other.load(&[key]).expect_err("must not unseal");
        assert!(err.to_string().contains("key-encryption key"), "{err}");
    }
}
