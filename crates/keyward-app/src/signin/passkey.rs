//! Passkeys on the sign-in pages: signing in with one (passwordless, or as the second factor
//! after a password) and creating one (at the registration interrupt or from the account page).
//!
//! A sign-in challenge is not written when a page is shown: it is `{random}.{expiry}.{mac}`, the
//! MAC binding it to the tenant and the page's session cookie, so a flood of page loads writes
//! nothing. It is spent when an answer arrives by inserting its SHA-256 among the stored
//! challenges: a second answer with it (a replay, on any node) conflicts. A registration
//! challenge is stored like Graph's (`App::creation_challenge`): creating a passkey is an
//! explicit step of a signed-in (or interrupted) session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::audit::Activity;
use keyward_core::directory::User;
use keyward_core::ids::ObjectId;
use keyward_core::signin::{Amr, AuthMethodRef, Stage, codes};
use keyward_core::webauthn::{self, AuthenticatorData, PublicKey, decode_cbor};
use keyward_store::{Fido2Method, StoreError, WebauthnChallenge};
use time::{Duration, OffsetDateTime};

use super::{Flow, RECENT_MFA, SignInForm, SignInPage, SignInView, csrf_token, detail, unexpected};
use crate::passkeys::{NewPasskey, client_data, device_record, passkey_kind, user_handle, verify_signature};
use crate::{App, AppError, random_token, sha256};

/// How long a sign-in challenge lasts.
const CHALLENGE_LIFETIME: Duration = Duration::minutes(5);
/// How long a spent sign-in challenge is remembered past its expiry.
const SPENT_MARGIN: Duration = Duration::minutes(5);
/// The largest credential a form may carry (a passkey's answer is well under 4 KiB).
const MAX_CREDENTIAL: usize = 16 * 1024;

/// What `navigator.credentials.get` needs on a sign-in page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRequest {
    /// Base64URL without padding.
    pub challenge: String,
    pub rp_id: String,
    /// The credential ids (Base64URL) the user may answer with; empty for a sign-in that names no
    /// user (a discoverable credential chooses the account).
    pub allow: Vec<String>,
    pub timeout_ms: i64,
}

/// Why a passkey answer was refused: the sign-in log's reason, what the page says, and the
/// account when it is known.
struct Refusal {
    reason: &'static str,
    message: &'static str,
    user: Option<User>,
}

const DID_NOT_WORK: &str = "That passkey didn't work. Try again, or sign in another way.";

fn refusal(reason: &'static str, message: &'static str, user: Option<User>) -> Refusal {
    Refusal { reason, message, user }
}

/// A passkey's answer as `PublicKeyCredential.toJSON()` gives it (Base64URL fields).
struct Assertion {
    credential_id: Vec<u8>,
    client_data_json: Vec<u8>,
    authenticator_data: Vec<u8>,
    signature: Vec<u8>,
    user_handle: Option<Vec<u8>>,
}

fn b64(value: Option<&serde_json::Value>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value?.as_str()?.trim_end_matches('=')).ok()
}

fn parse_assertion(json: &str) -> Option<Assertion> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    if value.get("type").and_then(serde_json::Value::as_str) != Some("public-key") {
        return None;
    }
    let response = value.get("response")?;
    let user_handle = match response.get("userHandle") {
        None | Some(serde_json::Value::Null) => None,
        Some(it) if it.as_str() == Some("") => None,
        handle => Some(b64(handle)?),
    };
    Some(Assertion {
        credential_id: b64(value.get("rawId").or(value.get("id")))?,
        client_data_json: b64(response.get("clientDataJSON"))?,
        authenticator_data: b64(response.get("authenticatorData"))?,
        signature: b64(response.get("signature"))?,
        user_handle,
    })
}

/// A new credential as `PublicKeyCredential.toJSON()` gives it after `create`.
fn parse_new_credential(json: &str, name: Option<&str>) -> Option<NewPasskey> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    if value.get("type").and_then(serde_json::Value::as_str) != Some("public-key") {
        return None;
    }
    let response = value.get("response")?;
    Some(NewPasskey {
        display_name: name.map(str::to_owned),
        credential_id: value.get("id")?.as_str()?.to_owned(),
        client_data_json: b64(response.get("clientDataJSON"))?,
        attestation_object: b64(response.get("attestationObject"))?,
    })
}

/// What a passkey proves as `amr` values: `fido`, the key's kind, and multi-factor.
fn passkey_amr(method: &Fido2Method) -> [AuthMethodRef; 3] {
    let kind = if method.backup_eligible { AuthMethodRef::Swk } else { AuthMethodRef::Hwk };
    [AuthMethodRef::Fido, kind, AuthMethodRef::Mfa]
}

impl App {
    /// The challenge message a sign-in challenge's MAC covers.
    fn challenge_message(tenant: &ObjectId, cookie: &str, random: &str, expires: i64) -> String {
        format!("keyward passkey sign-in v1:{tenant}:{}:{random}:{expires}", csrf_token(cookie))
    }

    /// The options of a passkey sign-in on the page of the session named by `cookie`: for the
    /// passkeys in `allow` (the user's, as the second factor; credential ids in Base64URL), or for
    /// any discoverable one (`None`). `None` when passkeys cannot be used: the user has none they
    /// may use, the methods policy leaves them off, or the public URL names no host.
    pub(super) async fn passkey_request(
        &self,
        tenant: &ObjectId,
        cookie: &str,
        allow: Option<Vec<String>>,
    ) -> Result<Option<PasskeyRequest>, AppError> {
        let Ok((rp_id, _)) = self.relying_party() else { return Ok(None) };
        let allow = match allow {
            Some(allow) if allow.is_empty() => return Ok(None),
            Some(allow) => allow,
            None if !self.read_short().await?.methods_policy(tenant).await?.fido2.is_enabled => return Ok(None),
            None => Vec::new(),
        };
        let expires = (self.now() + CHALLENGE_LIFETIME).unix_timestamp();
        let random = random_token()?;
        let mac =
            self.inner.keys.sign_checkpoint(Self::challenge_message(tenant, cookie, &random, expires).as_bytes())?;
        Ok(Some(PasskeyRequest {
            challenge: URL_SAFE_NO_PAD.encode(format!("{random}.{expires}.{mac}")),
            rp_id,
            allow,
            timeout_ms: CHALLENGE_LIFETIME.whole_milliseconds() as i64,
        }))
    }

    /// Spends a sign-in challenge of this session: `false` when it is not one this server
    /// issued for the session, has expired, or was spent before (on any node).
    async fn spend_sign_in_challenge(&self, flow: &Flow, challenge: &str) -> Result<bool, AppError> {
        let now = self.now();
        let Some(bytes) = URL_SAFE_NO_PAD.decode(challenge).ok() else { return Ok(false) };
        let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(false) };
        let mut parts = text.splitn(3, '.');
        let (Some(random), Some(expires), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(false);
        };
        let Ok(expires) = expires.parse::<i64>() else { return Ok(false) };
        let message = Self::challenge_message(&flow.tenant.id, &flow.cookie, random, expires);
        if expires <= now.unix_timestamp() || self.inner.keys.verify_checkpoint(message.as_bytes(), mac) != Some(true) {
            return Ok(false);
        }
        let spent = WebauthnChallenge {
            tenant_id: flow.tenant.id.clone(),
            user_id: None,
            purpose: "spent".into(),
            // Kept past the challenge's own expiry, so a node whose clock lags the one that
            // sweeps expired rows still finds it spent.
            expires_at: OffsetDateTime::from_unix_timestamp(expires).unwrap_or(now + CHALLENGE_LIFETIME) + SPENT_MARGIN,
        };
        let mut tx = self.write().await?;
        match tx.put_webauthn_challenge(&sha256(&bytes), &spent).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Checks a passkey's answer against this session's challenge: the credential registered
    /// here (to `expected`, when the sign-in already names its user), the relying party, user
    /// presence and verification, the signature, the signature counter, and the methods policy.
    /// The counter is moved on under a guard, so two answers cannot both use one count.
    async fn check_passkey(
        &self,
        flow: &Flow,
        json: &str,
        expected: Option<&User>,
    ) -> Result<Result<(User, Fido2Method), Refusal>, AppError> {
        let now = self.now();
        let known = || expected.cloned();
        let Some(assertion) = Some(json).filter(|it| it.len() <= MAX_CREDENTIAL).and_then(parse_assertion) else {
            return Ok(Err(refusal("Invalid passkey response", DID_NOT_WORK, known())));
        };
        let (Ok(data), Ok((rp_id, origin))) = (client_data(&assertion.client_data_json), self.relying_party()) else {
            return Ok(Err(refusal("Invalid passkey response", DID_NOT_WORK, known())));
        };
        if !self.spend_sign_in_challenge(flow, &data.challenge).await? {
            let message = "The passkey request expired or was already used. Try again.";
            return Ok(Err(refusal("Passkey challenge unknown, expired or already used", message, known())));
        }
        // Everything the checks need, read at once; the verdicts still come in order below.
        let mut tx = self.read_short().await?;
        let method = tx.find_fido2_method(&assertion.credential_id).await?.filter(|it| it.tenant_id == flow.tenant.id);
        let user = match &method {
            Some(method) => tx.get_user(&flow.tenant.id, &method.user_id).await?,
            None => None,
        };
        let policy = tx.methods_policy(&flow.tenant.id).await?;
        let allowed = match &user {
            Some(user) => self.usable_methods(&mut *tx, &user.id, &policy).await?.fido2,
            None => false,
        };
        drop(tx);
        let (Some(method), Some(user)) = (method, user) else {
            let message = "This passkey isn't registered for an account here. Use another passkey, or sign in with \
                           your user name.";
            return Ok(Err(refusal("Passkey not registered", message, known())));
        };
        // Until the signature is checked, a refusal names only the user the sign-in already
        // named: credential ids are not secret, so anyone could otherwise write failures into
        // someone's sign-in log.
        if webauthn::check_client_data(&data, "webauthn.get", &origin).is_err() {
            let reason = "Passkey used on another site or for another ceremony";
            return Ok(Err(refusal(reason, DID_NOT_WORK, known())));
        }
        if expected.is_some_and(|it| it.id != user.id) {
            return Ok(Err(refusal("Passkey registered to another user", DID_NOT_WORK, known())));
        }
        // A sign-in that names no user learns it from the user handle, which must be there and
        // be the credential's user (WebAuthn §7.2, step 6).
        let handle_matches = match &assertion.user_handle {
            Some(handle) => user_handle(&user).is_ok_and(|it| it[..] == handle[..]),
            None => expected.is_some(),
        };
        if !handle_matches {
            return Ok(Err(refusal("Passkey user handle missing or not the credential's", DID_NOT_WORK, known())));
        }
        let Ok(auth) = AuthenticatorData::parse(&assertion.authenticator_data) else {
            return Ok(Err(refusal("Invalid passkey response", DID_NOT_WORK, known())));
        };
        if let Err(err) = webauthn::check_assertion(&auth, &rp_id) {
            tracing::info!(reason = %err.0, "passkey assertion refused");
            let message = "Your passkey must verify you (with a PIN, fingerprint or face) on this site. Try again.";
            return Ok(Err(refusal("Passkey check failed", message, known())));
        }
        // Backup eligibility is fixed when a credential is made: a change means another one.
        if auth.flags.backup_eligible() != method.backup_eligible {
            return Ok(Err(refusal("Passkey backup eligibility changed", DID_NOT_WORK, known())));
        }
        let key = decode_cbor(&method.cose_key)
            .and_then(|(cose, _)| PublicKey::from_cose(&cose))
            .map_err(|err| unexpected(&format!("a stored passkey's key does not read: {}", err.0)))?;
        let signed = webauthn::signed_bytes(&assertion.authenticator_data, &assertion.client_data_json);
        if !verify_signature(&key, &signed, &assertion.signature) {
            return Ok(Err(refusal("Invalid passkey signature", DID_NOT_WORK, known())));
        }
        let stored = u32::try_from(method.sign_count).unwrap_or(u32::MAX);
        if webauthn::counter_went_back(stored, auth.sign_count) {
            self.record_possible_clone(flow, &user, &method, now).await?;
            let message = "This passkey can't be used: it may have been copied. Sign in another way and tell your \
                           administrator.";
            return Ok(Err(refusal("Passkey signature counter went back: possibly cloned", message, Some(user))));
        }
        if !allowed {
            let message = "Your organization doesn't let you sign in with a passkey. Sign in another way.";
            return Ok(Err(refusal("Method disabled by the authentication methods policy", message, Some(user))));
        }
        if !policy.fido2_keys.permits(&method.aaguid) {
            let message = "Your organization no longer allows this kind of passkey. Sign in another way, then \
                           register a passkey your organization allows.";
            return Ok(Err(refusal("Passkey model blocked by the authentication methods policy", message, Some(user))));
        }
        let mut tx = self.write().await?;
        let moved = tx
            .use_fido2_method(&method.id, method.sign_count, i64::from(auth.sign_count), auth.flags.backed_up())
            .await?;
        tx.commit().await?;
        if !moved {
            return Ok(Err(refusal("Passkey used by another sign-in at the same time", DID_NOT_WORK, Some(user))));
        }
        Ok(Ok((user, method)))
    }

    /// Audits a passkey whose counter went back (`Passkey possibly cloned`, a failure).
    async fn record_possible_clone(
        &self,
        flow: &Flow,
        user: &User,
        method: &Fido2Method,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        let reason = format!(
            "{} '{}' answered with a signature counter that went back",
            passkey_kind(method),
            method.display_name
        );
        self.record_failure(self.self_audit(flow, user, now), Activity::PasskeyPossiblyCloned, user, &reason).await
    }

    /// "Sign in with a passkey" (the user-name or password page: no password needed) or the
    /// passkey as the second factor (the code page).
    pub(super) async fn submit_passkey(&self, flow: &mut Flow, form: &SignInForm) -> Result<SignInView, AppError> {
        let now = self.now();
        let second_factor = flow.session.stage == Stage::Mfa;
        let expected = if second_factor { Some(self.flow_user(flow).await?) } else { None };
        let json = form.credential.as_deref().unwrap_or_default();
        let (user, method) = match self.check_passkey(flow, json, expected.as_ref()).await? {
            Ok(found) => found,
            Err(refused) => {
                let code = if second_factor { codes::MFA_FAILED } else { codes::INVALID_CREDENTIALS };
                // The kind of passkey is not known when it was refused: Entra's family name.
                let failed = detail(now, "Passkey", false, refused.reason);
                self.log_sign_in(flow, refused.user.as_ref(), code, vec![failed]).await?;
                return self.render(flow, Some(refused.message.into())).await;
            }
        };
        if !user.account_enabled {
            let failed = detail(now, passkey_kind(&method), true, "Account disabled");
            self.log_sign_in(flow, Some(&user), codes::DISABLED, vec![failed]).await?;
            return self
                .render(flow, Some("Your account has been disabled. Contact your administrator to enable it.".into()))
                .await;
        }
        let mut details = Vec::new();
        if second_factor {
            details.push(detail(now, "Password", true, "Correct password"));
            for amr in passkey_amr(&method) {
                flow.session.methods.push(amr);
            }
        } else {
            // The passkey is the whole sign-in: nothing an earlier attempt in this flow left
            // (another user, a password, a pass and its expiry) carries over.
            flow.session.user_id = Some(user.id.clone());
            flow.session.username = Some(user.user_principal_name.clone());
            flow.session.methods = Amr::of(&passkey_amr(&method));
            flow.session.pass_expires_at = None;
        }
        details.push(detail(now, passkey_kind(&method), true, "MFA successfully completed"));
        flow.session.mfa_at = Some(now);
        self.finish(flow, &user, details).await
    }

    /// "Set up a passkey" (at the registration interrupt, or "Add a passkey" on the account
    /// page, already checked for a recent sign-in): a registration challenge and the page that
    /// creates the passkey.
    pub(super) async fn begin_passkey_registration(&self, flow: &mut Flow) -> Result<SignInView, AppError> {
        let user = self.flow_user(flow).await?;
        if flow.session.authenticated_at.is_none()
            && let Err(notice) = self.may_add_method(flow, &user).await?
        {
            return self.refuse_registration(flow, &user, notice).await;
        }
        if !self.user_methods(&flow.tenant.id, &user.id).await?.fido2_registration {
            return self.passkeys_not_allowed(flow, &user).await;
        }
        flow.session.stage = Stage::RegisterPasskey;
        self.save_session(&flow.session).await?;
        self.render(flow, None).await
    }

    /// The methods policy does not let the user add a passkey: back to the account page or the
    /// interrupt, saying so.
    async fn passkeys_not_allowed(&self, flow: &mut Flow, user: &User) -> Result<SignInView, AppError> {
        let notice = "Your organization's authentication methods policy does not let you add a passkey.";
        if flow.session.authenticated_at.is_some() {
            flow.session.stage = Stage::Done;
            self.save_session(&flow.session).await?;
            return self.account_page(flow, user, Some(notice.into())).await;
        }
        flow.session.stage = Stage::MoreInfo;
        self.save_session(&flow.session).await?;
        self.render(flow, Some(notice.into())).await
    }

    /// The passkey-creation page's options: a fresh registration challenge for the flow's user.
    pub(super) async fn register_passkey_page(
        &self,
        flow: &Flow,
        error: Option<String>,
    ) -> Result<SignInPage, AppError> {
        let user = self.flow_user(flow).await?;
        // A session left on this page must still have a recent proof to get a challenge.
        if let Err(notice) = self.may_add_method(flow, &user).await? {
            return Ok(SignInPage::RegisterPasskey {
                username: flow.session.username.clone().unwrap_or_default(),
                options: None,
                can_cancel: flow.session.authenticated_at.is_some(),
                error: Some(notice),
            });
        }
        let mut tx = self.write().await?;
        let options = self.creation_challenge(&mut *tx, &user, CHALLENGE_LIFETIME).await?;
        tx.commit().await?;
        Ok(SignInPage::RegisterPasskey {
            username: flow.session.username.clone().unwrap_or_default(),
            options: Some(options),
            can_cancel: flow.session.authenticated_at.is_some(),
            error,
        })
    }

    /// The new passkey from the creation page: verified like Graph's, stored, audited as the
    /// user's own `User registered security info`; at the interrupt it is the sign-in's MFA.
    pub(super) async fn submit_passkey_registration(
        &self,
        flow: &mut Flow,
        form: &SignInForm,
    ) -> Result<SignInView, AppError> {
        let user = self.flow_user(flow).await?;
        let signed_in = flow.session.authenticated_at.is_some();
        if form.step == "back" {
            // "Choose another method" at the interrupt (the account page has "Cancel").
            flow.session.stage = if signed_in { Stage::Done } else { Stage::MoreInfo };
            self.save_session(&flow.session).await?;
            return self.render(flow, None).await;
        }
        if let Err(notice) = self.may_add_method(flow, &user).await? {
            return self.refuse_registration(flow, &user, notice).await;
        }
        if !self.user_methods(&flow.tenant.id, &user.id).await?.fido2_registration {
            // Turned off for this user since the page was shown.
            return self.passkeys_not_allowed(flow, &user).await;
        }
        let json = form.credential.as_deref().unwrap_or_default();
        let name = form.value.as_deref();
        let Some(new) =
            Some(json).filter(|it| it.len() <= MAX_CREDENTIAL).and_then(|it| parse_new_credential(it, name))
        else {
            let message = "Your browser did not create the passkey. Try again, or use another method.";
            return self.render(flow, Some(message.into())).await;
        };
        let verified = match self.verify_new_passkey(&flow.tenant.id, &new).await {
            Ok(verified) => verified,
            Err(AppError::BadRequest(message)) => return self.render(flow, Some(message)).await,
            Err(err) => return Err(err),
        };
        let mut tx = self.write().await?;
        // Disabled, deleted or its sessions revoked since the page was shown: no passkey is added
        // (read for update: a revocation or a disable in flight holds the row, and is waited for).
        let fresh = tx.get_user_for_update(&flow.tenant.id, &user.id).await?;
        if let Some(code) = super::account_changed(fresh.as_ref(), flow) {
            return self.end_changed(tx, flow, fresh.as_ref(), code).await;
        }
        let method = match self.store_passkey(&mut *tx, &user, verified).await {
            Ok(method) => method,
            Err(AppError::BadRequest(message)) => {
                drop(tx);
                let audit = self.self_audit(flow, &user, self.now());
                self.record_failure(audit, Activity::UserRegisteredSecurityInfo, &user, &message).await?;
                return self.render(flow, Some(message)).await;
            }
            Err(err) => return Err(err),
        };
        let reason = format!("User registered {}", passkey_kind(&method));
        self.record_registration(&mut *tx, flow, &user, &reason).await?;
        let device = self.self_audit(flow, &user, self.now());
        if let Some(record) = device_record(&method, Activity::AddPasskeyDeviceBound, device, &user) {
            tx.insert_audit(&record).await?;
        }
        tx.commit().await?;
        let notice = format!("Your passkey '{}' is registered.", method.display_name);
        self.registered(flow, &user, &passkey_amr(&method), passkey_kind(&method), notice).await
    }

    /// Whether the flow may add a method now: MFA within the last ten minutes, or a pass this
    /// sign-in was opened with and still holds, when the user has a method, usable here or not
    /// (an app, a passkey, a phone; on the account page an e-mail address too); otherwise a
    /// recent sign-in (on the account page) or the password just checked (at the registration
    /// interrupt or the campaign's prompt). So a password alone plants no app or passkey beside
    /// a user's phone or methods the policy has turned off. A flow opened with a pass adds
    /// nothing once the pass is deleted or over. `Err` carries what to tell them.
    pub(super) async fn may_add_method(&self, flow: &Flow, user: &User) -> Result<Result<(), String>, AppError> {
        let now = self.now();
        if let Some(end) = flow.session.pass_expires_at
            && (end <= now || !self.pass_still_held(&user.id, Some(end)).await?)
        {
            return Ok(Err(
                "Your Temporary Access Pass has expired or was deleted. Sign in again to add a method.".into()
            ));
        }
        let before_sign_in = flow.session.authenticated_at.is_none();
        let mut tx = self.read_short().await?;
        let has_app = !tx.list_software_oath_methods(&user.id).await?.is_empty()
            || !tx.list_fido2_methods(&user.id).await?.is_empty();
        // Before the sign-in has finished an e-mail address does not count: it is no second
        // factor in Entra (re-registration keeps it), and the registration interrupt after
        // "Require re-register MFA" must still work with the password.
        let has_method = has_app
            || !tx.list_phone_methods(&user.id).await?.is_empty()
            || !before_sign_in && tx.get_email_method(&user.id).await?.is_some();
        drop(tx);
        // Adding a method needs a recent proof: MFA if the user has any method (a phone or, on
        // the account page, an e-mail address too: whoever adds an app may then change them),
        // otherwise a recent sign-in, so an old or stolen session, or a password alone, cannot
        // plant one. A flow opened with a pass (checked above to be still held) proves it for
        // as long as the pass lasts.
        let proof = match (has_method, before_sign_in) {
            (true, true) if flow.session.pass_expires_at.is_some() => Some(now),
            (true, _) => flow.session.mfa_at,
            (false, true) => Some(now),
            (false, false) => flow.session.authenticated_at,
        };
        if proof.is_some_and(|at| now - at <= RECENT_MFA) {
            return Ok(Ok(()));
        }
        Ok(Err(match (has_method, has_app && !before_sign_in) {
            (false, _) => "To add a method, sign out and sign in again first: this needs a sign-in within the last 10 \
                           minutes."
                .to_owned(),
            (true, true) => "To add a method, sign out and sign in with your authenticator app or passkey first: this \
                             needs multi-factor authentication within the last 10 minutes."
                .to_owned(),
            (true, false) => "To add a method, you need multi-factor authentication within the last 10 minutes, and \
                              you have no authenticator app or passkey to sign in with: ask your administrator for a \
                              Temporary Access Pass, then sign in with it."
                .to_owned(),
        }))
    }
}
