//! Passkeys (FIDO2 / WebAuthn credentials): Graph's provisioning (`fido2Methods/creationOptions`
//! then `POST …/fido2Methods`), list and delete, under the rules of every other method (an
//! administrator's action on the target; oneself with MFA in the last ten minutes) and the
//! methods policy's `Fido2` configuration.
//!
//! The relying party is the public URL: its host is the RP ID and its origin the only origin
//! accepted. Challenges are random, single-use, live five minutes and are kept in the database,
//! so a ceremony started on one node finishes on another. The checks are the core's
//! (`keyward_core::webauthn`); signatures are verified here with aws-lc-rs.

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::audit::{Activity, TargetResource};
use keyward_core::directory::User;
use keyward_core::ids::ObjectId;
use keyward_core::webauthn::{self, Attestation, AttestationObject, ClientData, PublicKey, WebauthnError, aaguid_text};
use keyward_store::{Fido2Method, StoreError, Tx, WebauthnChallenge};
use time::{Duration, OffsetDateTime};

use crate::auth_methods::{Change, Who};
use crate::methods_policy::user_methods;
use crate::{App, AppError, Caller, new_id, sha256};

/// How long a registration challenge lasts (Graph's fixed five minutes).
const CHALLENGE_LIFETIME: Duration = Duration::minutes(5);
/// The most passkeys one user may have.
const MAX_PER_USER: usize = 20;
/// The longest passkey name.
const MAX_NAME: usize = 200;

/// A passkey as Graph shows it (`fido2AuthenticationMethod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyView {
    pub id: ObjectId,
    pub display_name: String,
    pub created: OffsetDateTime,
    pub aaguid: String,
    pub attestation_level: String,
    /// Backup eligible: a synced passkey; otherwise device-bound.
    pub is_synced: bool,
}

impl PasskeyView {
    pub(crate) fn of(method: &Fido2Method) -> PasskeyView {
        PasskeyView {
            id: method.id.clone(),
            display_name: method.display_name.clone(),
            created: method.created,
            aaguid: method.aaguid.clone(),
            attestation_level: method.attestation_level.clone(),
            is_synced: method.backup_eligible,
        }
    }
}

/// What `navigator.credentials.create` needs (Graph's `webauthnCredentialCreationOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationOptions {
    /// Base64URL without padding.
    pub challenge: String,
    pub expires: OffsetDateTime,
    pub rp_id: String,
    /// The user handle (the user's object id's 16 bytes), Base64URL.
    pub user_handle: String,
    pub user_name: String,
    pub display_name: String,
    /// The user's passkeys' credential ids, Base64URL: not to be registered twice.
    pub exclude: Vec<String>,
    /// `attestation`: `direct` while the methods policy enforces attestation, else `none`.
    pub attestation: &'static str,
}

/// A new passkey as `POST …/fido2Methods` carries it (`webauthnPublicKeyCredential`).
#[derive(Debug, Clone)]
pub struct NewPasskey {
    pub display_name: Option<String>,
    /// The credential id, Base64URL.
    pub credential_id: String,
    pub client_data_json: Vec<u8>,
    pub attestation_object: Vec<u8>,
}

fn refused(err: WebauthnError) -> AppError {
    AppError::BadRequest(format!("The passkey was not accepted: {}.", err.0))
}

/// Verifies `sig` over `message` with a credential's key.
pub(crate) fn verify_signature(key: &PublicKey, message: &[u8], sig: &[u8]) -> bool {
    match key {
        PublicKey::Es256(point) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point).verify(message, sig).is_ok()
        }
        PublicKey::Ed25519(raw) => UnparsedPublicKey::new(&signature::ED25519, raw).verify(message, sig).is_ok(),
        PublicKey::Rs256 { n, e } => RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
            .is_ok(),
    }
}

/// Reads `clientDataJSON`.
pub(crate) fn client_data(json: &[u8]) -> Result<ClientData, AppError> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|_| AppError::BadRequest("clientDataJSON is not Base64URL-encoded JSON.".into()))?;
    let text = |name: &str| value.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
    Ok(ClientData {
        kind: text("type").unwrap_or_default(),
        challenge: text("challenge").unwrap_or_default(),
        origin: text("origin").unwrap_or_default(),
        cross_origin: value.get("crossOrigin").and_then(serde_json::Value::as_bool).unwrap_or(false),
    })
}

impl App {
    /// The relying party: the public URL's host (the RP ID) and its origin as a browser
    /// serialises it (no user info, no default port). An address cannot be an RP ID: browsers
    /// refuse it, so passkeys need a public URL with a host name (`localhost` works).
    pub(crate) fn relying_party(&self) -> Result<(String, String), AppError> {
        relying_party(&self.config().public_url).ok_or_else(|| {
            AppError::BadRequest(
                "Passkeys need the server's public URL to name a host (like https://login.contoso.com or \
                 http://localhost:8443), not an address: set KEYWARD_PUBLIC_URL (or --public-url)."
                    .into(),
            )
        })
    }

    /// `GET …/fido2Methods/creationOptions`: a challenge for registering a passkey for `who`,
    /// allowed to whoever may register a method for them, while the methods policy lets them
    /// register passkeys. Audited as `Get passkey creation options`, as Entra does.
    pub async fn passkey_creation_options(&self, caller: &Caller, who: Who<'_>) -> Result<CreationOptions, AppError> {
        self.passkey_creation_options_lasting(caller, who, CHALLENGE_LIFETIME.whole_minutes()).await
    }

    /// Beta's `creationOptions(challengeTimeoutInMinutes=…)`: the same, with a challenge that
    /// lasts `minutes` (5 to 43,200, Graph's bounds), for a passkey provisioned later.
    pub async fn passkey_creation_options_lasting(
        &self,
        caller: &Caller,
        who: Who<'_>,
        minutes: i64,
    ) -> Result<CreationOptions, AppError> {
        if !(5..=43_200).contains(&minutes) {
            return Err(AppError::BadRequest(
                "challengeTimeoutInMinutes must be between 5 and 43200 (30 days).".into(),
            ));
        }
        let now = self.now();
        let (mut tx, user, _, _) = self.change_target(caller, who, Change::Register).await?;
        self.refuse_if_covered(&mut *tx, caller, &user, now).await?;
        let reset = keyward_core::caller_verification::Change::MfaReset;
        self.require_verified_caller(&mut *tx, caller, &user, reset, now).await?;
        let policy = tx.methods_policy(&caller.tenant.id).await?;
        if !user_methods(&mut *tx, &user.id, &policy).await?.fido2_registration {
            return Err(passkeys_off());
        }
        let record = caller.succeeded(now, Activity::GetPasskeyCreationOptions, vec![TargetResource::user(&user)]);
        tx.defer_audit(record);
        let options = self.creation_challenge(&mut *tx, &user, Duration::minutes(minutes)).await?;
        tx.commit().await?;
        Ok(options)
    }

    /// A registration challenge for `user`, kept in the database for `lifetime`, and the options
    /// around it.
    pub(crate) async fn creation_challenge(
        &self,
        tx: &mut dyn Tx,
        user: &User,
        lifetime: Duration,
    ) -> Result<CreationOptions, AppError> {
        let mut challenge = [0_u8; 32];
        aws_lc_rs::rand::fill(&mut challenge).map_err(|_| AppError::Unexpected(anyhow::anyhow!("random")))?;
        let expires = self.now() + lifetime;
        let stored = WebauthnChallenge {
            tenant_id: user.tenant_id.clone(),
            user_id: Some(user.id.clone()),
            purpose: "registration".into(),
            expires_at: expires,
        };
        tx.put_webauthn_challenge(&sha256(&challenge), &stored).await?;
        let exclude =
            tx.list_fido2_methods(&user.id).await?.iter().map(|it| URL_SAFE_NO_PAD.encode(&it.credential_id)).collect();
        let enforced = tx.methods_policy(&user.tenant_id).await?.fido2_attestation;
        Ok(CreationOptions {
            attestation: if enforced { "direct" } else { "none" },
            challenge: URL_SAFE_NO_PAD.encode(challenge),
            expires,
            rp_id: self.relying_party()?.0,
            user_handle: URL_SAFE_NO_PAD.encode(user_handle(user)?),
            user_name: user.user_principal_name.clone(),
            display_name: user.display_name.clone(),
            exclude,
        })
    }

    /// `POST …/fido2Methods`: verifies and stores a passkey made from a challenge of
    /// [`App::passkey_creation_options`] for the same user. The challenge is spent whatever the
    /// outcome. Audited as `Admin registered security info` or `User registered security info`.
    pub async fn register_passkey(
        &self,
        caller: &Caller,
        who: Who<'_>,
        new: NewPasskey,
    ) -> Result<PasskeyView, AppError> {
        let verified = self.verify_new_passkey(&caller.tenant.id, &new).await?;
        let (mut tx, user, activity, who) = self.change_target(caller, who, Change::Register).await?;
        self.refuse_if_covered(&mut *tx, caller, &user, self.now()).await?;
        let reset = keyward_core::caller_verification::Change::MfaReset;
        self.require_verified_caller(&mut *tx, caller, &user, reset, self.now()).await?;
        let method = match self.store_passkey(&mut *tx, &user, verified).await {
            Ok(method) => method,
            // A passkey the policy refuses (turned off, not attested, a blocked model, too
            // many) is recorded as a failed registration.
            Err(AppError::BadRequest(message)) => {
                drop(tx);
                self.record_failure(caller.audit(self.now()), activity, &user, &message).await?;
                return Err(AppError::BadRequest(message));
            }
            Err(err) => return Err(err),
        };
        if let Some(record) = device_record(&method, Activity::AddPasskeyDeviceBound, caller.audit(self.now()), &user) {
            tx.defer_audit(record);
        }
        self.commit_method_change(tx, caller, &user, activity, &Change::Register.reason(who, passkey_kind(&method)))
            .await?;
        Ok(PasskeyView::of(&method))
    }

    /// Verifies a new passkey made from a registration challenge of this tenant; the challenge
    /// is spent whatever the outcome, in its own transaction, so a failed attempt cannot be
    /// retried with it.
    pub(crate) async fn verify_new_passkey(
        &self,
        tenant: &ObjectId,
        new: &NewPasskey,
    ) -> Result<VerifiedPasskey, AppError> {
        let now = self.now();
        let display_name = new.display_name.as_deref().map(str::trim).filter(|it| !it.is_empty()).unwrap_or("Passkey");
        if display_name.chars().count() > MAX_NAME || display_name.chars().any(char::is_control) {
            return Err(AppError::BadRequest(format!("displayName must be at most {MAX_NAME} printable characters.")));
        }
        let data = client_data(&new.client_data_json)?;
        let (rp_id, origin) = self.relying_party()?;
        let challenge = URL_SAFE_NO_PAD
            .decode(&data.challenge)
            .map_err(|_| AppError::BadRequest("clientDataJSON.challenge is not Base64URL.".into()))?;
        let mut tx = self.write().await?;
        // Only a registration challenge: a spent sign-in challenge's row must stay, or a made-up
        // registration naming it would let a captured sign-in be replayed.
        let stored = tx.take_webauthn_challenge(&sha256(&challenge), "registration").await?;
        tx.commit().await?;
        webauthn::check_client_data(&data, "webauthn.create", &origin).map_err(refused)?;
        let stored = stored
            .filter(|it| it.purpose == "registration" && it.tenant_id == *tenant && it.expires_at > now)
            .ok_or_else(|| {
                AppError::BadRequest(
                    "The passkey's challenge is unknown, used or expired: get new creationOptions and create the \
                     passkey again before they expire."
                        .into(),
                )
            })?;
        let object = AttestationObject::parse(&new.attestation_object).map_err(refused)?;
        let credential = webauthn::check_registration(&object.auth_data, &rp_id).map_err(refused)?;
        if URL_SAFE_NO_PAD.encode(&credential.credential_id) != new.credential_id.trim_end_matches('=') {
            return Err(AppError::BadRequest(
                "publicKeyCredential.id is not the id of the credential in the attestation.".into(),
            ));
        }
        let signed = webauthn::signed_bytes(&object.auth_data_bytes, &new.client_data_json);
        let attestation_level = match &object.attestation {
            Attestation::None => "notAttested",
            Attestation::SelfSigned { alg, sig } => {
                if *alg != credential.public_key.algorithm() || !verify_signature(&credential.public_key, &signed, sig)
                {
                    return Err(refused(WebauthnError("the self-attestation signature does not verify".into())));
                }
                "notAttested"
            }
            Attestation::Certified { alg, sig, chain } => {
                let leaf = rustls_pki_types::CertificateDer::from(chain[0].as_slice());
                let cert = webpki::EndEntityCert::try_from(&leaf)
                    .map_err(|_| refused(WebauthnError("the attestation certificate cannot be read".into())))?;
                let algorithm: &dyn rustls_pki_types::SignatureVerificationAlgorithm = match alg {
                    -7 => webpki::aws_lc_rs::ECDSA_P256_SHA256,
                    -257 => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
                    -8 => webpki::aws_lc_rs::ED25519,
                    _ => return Err(refused(WebauthnError(format!("attestation algorithm {alg} is not supported")))),
                };
                cert.verify_signature(algorithm, &signed, sig)
                    .map_err(|_| refused(WebauthnError("the attestation signature does not verify".into())))?;
                // The certificate must vouch for the model the authenticator data names.
                let facts = webauthn::read_attestation_certificate(&chain[0]).map_err(refused)?;
                if facts.aaguid.is_some_and(|it| it != credential.aaguid) {
                    return Err(refused(WebauthnError(
                        "the attestation certificate is for another authenticator model (AAGUID)".into(),
                    )));
                }
                // Attested only by a certificate made for attestation (not a TLS, code-signing or
                // other general certificate that chains to a root in the bundle), naming its
                // model, whose chain reaches a root the administrator trusts.
                if facts.is_packed_attestation() && self.attestation_chain_trusted(&cert, &chain[1..], now) {
                    "attested"
                } else {
                    "notAttested"
                }
            }
        };
        Ok(VerifiedPasskey {
            challenge_user: stored.user_id,
            display_name: display_name.to_owned(),
            credential_id: credential.credential_id.clone(),
            cose_key: credential.cose_key.clone(),
            aaguid: aaguid_text(&credential.aaguid),
            sign_count: i64::from(object.auth_data.sign_count),
            backup_eligible: object.auth_data.flags.backup_eligible(),
            backed_up: object.auth_data.flags.backed_up(),
            attestation_level,
        })
    }

    /// Stores a verified passkey for `user` (the challenge's user), if the methods policy lets
    /// them register one and they have room for it.
    pub(crate) async fn store_passkey(
        &self,
        tx: &mut dyn Tx,
        user: &User,
        verified: VerifiedPasskey,
    ) -> Result<Fido2Method, AppError> {
        if verified.challenge_user.as_ref() != Some(&user.id) {
            return Err(AppError::BadRequest(
                "The passkey's challenge was issued for another user: get creationOptions for this user.".into(),
            ));
        }
        let policy = tx.methods_policy(&user.tenant_id).await?;
        if !user_methods(tx, &user.id, &policy).await?.fido2_registration {
            return Err(passkeys_off());
        }
        if policy.fido2_attestation && verified.attestation_level != "attested" {
            return Err(AppError::BadRequest(
                "The authentication methods policy requires an attested passkey: this authenticator sent no \
                 attestation, or one that does not chain to a FIDO root the administrator trusts. Use a security key \
                 from a certified maker, or ask your administrator."
                    .into(),
            ));
        }
        if !policy.fido2_keys.permits(&verified.aaguid) {
            return Err(AppError::BadRequest(format!(
                "The authentication methods policy does not allow this authenticator model (AAGUID {}): ask your \
                 administrator which passkeys are allowed.",
                verified.aaguid
            )));
        }
        if tx.list_fido2_methods(&user.id).await?.len() >= MAX_PER_USER {
            return Err(AppError::BadRequest(format!(
                "The user has {MAX_PER_USER} passkeys already, the most Keyward keeps: delete one first."
            )));
        }
        let method = Fido2Method {
            id: new_id(),
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
            display_name: verified.display_name,
            credential_id: verified.credential_id,
            cose_key: verified.cose_key,
            aaguid: verified.aaguid,
            sign_count: verified.sign_count,
            backup_eligible: verified.backup_eligible,
            backed_up: verified.backed_up,
            attestation_level: verified.attestation_level.into(),
            created: self.now(),
        };
        tx.insert_fido2_method(&method).await.map_err(|err| match err {
            StoreError::Conflict { .. } => AppError::BadRequest("This passkey is registered already.".into()),
            other => other.into(),
        })?;
        Ok(method)
    }

    /// `GET …/fido2Methods`, read like any method.
    pub async fn list_passkeys(&self, caller: &Caller, key: &str) -> Result<Vec<PasskeyView>, AppError> {
        let mut tx = self.read().await?;
        let user = self.methods_target(&mut *tx, caller, key).await?;
        Ok(tx.list_fido2_methods(&user.id).await?.iter().map(PasskeyView::of).collect())
    }

    /// `DELETE …/fido2Methods/{id}`: `authenticationMethods/delete` on the target, or oneself
    /// with recent MFA.
    pub async fn delete_passkey(&self, caller: &Caller, who: Who<'_>, id: &str) -> Result<(), AppError> {
        let method_id = ObjectId::parse(id).ok_or_else(|| AppError::NotFound(id.to_owned()))?;
        let (mut tx, user, activity, who) = self.change_target(caller, who, Change::Delete).await?;
        let found = tx.list_fido2_methods(&user.id).await?.into_iter().find(|it| it.id == method_id);
        let Some(method) = found else { return Err(AppError::NotFound(id.to_owned())) };
        let op = keyward_core::dual_control::Operation::DeleteMethod {
            kind: keyward_core::dual_control::MethodKind::Passkey,
            id: method_id.to_string(),
        };
        if let crate::dual_control::Gate::Hold(when) =
            self.dual_control_gate(&mut *tx, caller, &user, &op, self.now()).await?
        {
            let kept = crate::dual_control::Kept::Nothing;
            return Err(self.hold(tx, caller, &user, op, kept, when).await);
        }
        tx.delete_fido2_method(&user.id, &method_id).await?;
        if let Some(record) =
            device_record(&method, Activity::DeletePasskeyDeviceBound, caller.audit(self.now()), &user)
        {
            tx.defer_audit(record);
        }
        self.commit_method_change(tx, caller, &user, activity, &Change::Delete.reason(who, passkey_kind(&method))).await
    }
}

impl App {
    /// Commits a failed `activity` on `user`'s passkeys on its own (what was attempted is not).
    pub(crate) async fn record_failure(
        &self,
        audit: keyward_core::audit::AuditContext,
        activity: Activity,
        user: &User,
        reason: &str,
    ) -> Result<(), AppError> {
        let record =
            audit.failure(crate::audit_id(&audit.correlation_id), activity, vec![TargetResource::user(user)], reason);
        crate::commit_audited(self.write().await?, [record]).await
    }
}

/// Any extended key usage: FIDO attestation certificates need none in particular.
struct AnyKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyKeyUsage {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// Reads a PEM bundle of FIDO attestation roots (`KEYWARD_FIDO_ROOTS`): each certificate's DER.
/// Refuses a bundle without certificates or with one that cannot be a trust anchor.
pub fn read_fido_roots(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut roots = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let body = &rest[start + "-----BEGIN CERTIFICATE-----".len()..];
        let end = body.find("-----END CERTIFICATE-----").ok_or("a certificate has no END CERTIFICATE line")?;
        let text: String = body[..end].chars().filter(|it| !it.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| format!("certificate {} is not valid Base64", roots.len() + 1))?;
        webpki::anchor_from_trusted_cert(&rustls_pki_types::CertificateDer::from(der.as_slice()))
            .map_err(|err| format!("certificate {} cannot be a trust anchor: {err}", roots.len() + 1))?;
        roots.push(der);
        rest = &body[end..];
    }
    if roots.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into());
    }
    Ok(roots)
}

impl App {
    /// Whether an attestation certificate chains, through `intermediates`, to one of the
    /// administrator's FIDO roots, valid at `now`.
    fn attestation_chain_trusted(
        &self,
        leaf: &webpki::EndEntityCert<'_>,
        intermediates: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> bool {
        let roots: Vec<rustls_pki_types::CertificateDer<'_>> = self
            .config()
            .fido_attestation_roots
            .iter()
            .map(|it| rustls_pki_types::CertificateDer::from(it.as_slice()))
            .collect();
        let anchors: Vec<_> = roots.iter().filter_map(|it| webpki::anchor_from_trusted_cert(it).ok()).collect();
        if anchors.is_empty() {
            return false;
        }
        let intermediates: Vec<rustls_pki_types::CertificateDer<'_>> =
            intermediates.iter().map(|it| rustls_pki_types::CertificateDer::from(it.as_slice())).collect();
        let seconds = u64::try_from(now.unix_timestamp()).unwrap_or_default();
        let time = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
        leaf.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &intermediates, time, AnyKeyUsage, None, None)
            .is_ok()
    }
}

/// A new passkey that passed every check, not stored yet.
#[derive(Debug)]
pub(crate) struct VerifiedPasskey {
    /// The user the challenge was issued for.
    challenge_user: Option<ObjectId>,
    display_name: String,
    credential_id: Vec<u8>,
    cose_key: Vec<u8>,
    aaguid: String,
    sign_count: i64,
    backup_eligible: bool,
    backed_up: bool,
    attestation_level: &'static str,
}

/// "Passkey (synced)" or "Passkey (device-bound)", as audit reasons name them.
pub(crate) fn passkey_kind(method: &Fido2Method) -> &'static str {
    if method.backup_eligible { "Passkey (synced)" } else { "Passkey (device-bound)" }
}

/// The Device Registration Service's record of a device-bound passkey added or deleted (Entra
/// writes it besides the Authentication Methods service's); none for a synced passkey.
pub(crate) fn device_record(
    method: &Fido2Method,
    activity: Activity,
    audit: keyward_core::audit::AuditContext,
    user: &User,
) -> Option<keyward_core::audit::AuditRecord> {
    if method.backup_eligible {
        return None;
    }
    let mut record = audit.success(crate::audit_id(&audit.correlation_id), activity, vec![TargetResource::user(user)]);
    record.result_reason = format!("{} '{}'", passkey_kind(method), method.display_name);
    Some(record)
}

/// A user's WebAuthn user handle: their object id's 16 bytes.
pub(crate) fn user_handle(user: &User) -> Result<[u8; 16], AppError> {
    Ok(uuid::Uuid::parse_str(user.id.as_str())
        .map_err(|_| AppError::Unexpected(anyhow::anyhow!("a user id that is no UUID")))?
        .into_bytes())
}

/// The RP ID and origin of a public URL; `None` when its host is an address.
fn relying_party(public_url: &str) -> Option<(String, String)> {
    let (scheme, rest) = public_url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_ascii_lowercase();
    if authority.starts_with('[') {
        return None;
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host.to_owned(), Some(port.to_owned())),
        None => (authority.clone(), None),
    };
    if host.is_empty() || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let default_port = matches!((scheme.as_str(), port.as_deref()), ("https", Some("443")) | ("http", Some("80")));
    let origin = match port.filter(|_| !default_port) {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    Some((host, origin))
}

fn passkeys_off() -> AppError {
    AppError::BadRequest(
        "The authentication methods policy does not let this user register passkeys (the Fido2 configuration is \
         disabled, leaves the user out, or does not allow registration)."
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::relying_party;

    #[test]
    fn the_relying_party_is_the_public_urls_host_and_origin() {
        let rp = |url: &str| relying_party(url).map(|(id, origin)| format!("{id} {origin}"));
        assert_eq!(rp("https://Login.Contoso.test").as_deref(), Some("login.contoso.test https://login.contoso.test"));
        assert_eq!(
            rp("https://login.contoso.test:443/").as_deref(),
            Some("login.contoso.test https://login.contoso.test")
        );
        assert_eq!(rp("http://localhost:8080/x").as_deref(), Some("localhost http://localhost:8080"));
        assert_eq!(
            rp("https://user@login.contoso.test:8443").as_deref(),
            Some("login.contoso.test https://login.contoso.test:8443")
        );
        assert_eq!(rp("http://127.0.0.1:8080"), None, "an address");
        assert_eq!(rp("http://[::1]:8080"), None, "an address");
    }
}
