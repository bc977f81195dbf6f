//! The device authorization grant: codes, the verification page's approval, redemption.

use crate::{App, AppError, RequestMeta, random_token, sha256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::directory::{Tenant, User};
use keyward_core::oauth::DeviceCodeStatus;
use keyward_core::oauth::{self, codes};
use keyward_core::signin::Amr;
use keyward_store::{DeviceCode, Grant};
use std::collections::HashMap;
use time::OffsetDateTime;

use super::{
    Client, DEVICE_INTERVAL, DEVICE_LIFETIME, DeviceAuthorization, OAuthError, SignInSubject, TokenResponse,
    scope_string,
};

impl App {
    /// `POST /{tenant}/oauth2/v2.0/devicecode` (RFC 8628).
    pub async fn device_authorization(
        &self,
        tenant_key: &str,
        params: &HashMap<String, String>,
    ) -> Result<DeviceAuthorization, OAuthError> {
        let tenant = self.oauth_tenant(tenant_key).await?;
        let client_id =
            params.get("client_id").filter(|it| !it.is_empty()).ok_or_else(|| OAuthError::missing("client_id"))?;
        let Some(client) = self.client(&tenant, client_id).await? else {
            let (code, text) = self.missing_client(&tenant, client_id).await?;
            return Err(OAuthError::new(400, "unauthorized_client", code, text));
        };
        if !client.is_fallback_public {
            return Err(OAuthError::new(
                400,
                "unauthorized_client",
                codes::PUBLIC_CLIENT,
                "The device code flow needs a public client: set isFallbackPublicClient on the application.",
            ));
        }
        let scopes = self.requested_scopes_of(params.get("scope").map(String::as_str).unwrap_or("openid"))?;
        let now = self.now();
        let device_code = random_token()?;
        let mut random = [0_u8; 8];
        aws_lc_rs::rand::fill(&mut random)
            .map_err(|_| AppError::Unexpected(anyhow::anyhow!("random generator failed")))?;
        let user_code = oauth::user_code(&random);
        let record = DeviceCode {
            device_sha256: sha256(device_code.as_bytes()),
            user_code: user_code.clone(),
            tenant_id: tenant.id.clone(),
            client_id: client.client_id.clone(),
            scope: scope_string(&scopes),
            created: now,
            expires_at: now + DEVICE_LIFETIME,
            interval_seconds: DEVICE_INTERVAL,
            last_poll_at: None,
            status: DeviceCodeStatus::Pending,
            user_id: None,
            auth_time: None,
            amr: Amr::default(),
            pass_expires_at: None,
        };
        let mut tx = self.write().await?;
        tx.insert_device_code(&record).await?;
        tx.commit().await?;
        let verification_uri = format!("{}/{}/devicelogin", self.inner.config.public_url, tenant.id);
        Ok(DeviceAuthorization {
            message: format!(
                "To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."
            ),
            device_code,
            user_code,
            verification_uri,
            expires_in: DEVICE_LIFETIME.whole_seconds(),
            interval: DEVICE_INTERVAL,
        })
    }

    pub(super) async fn redeem_device(
        &self,
        tenant: &Tenant,
        client: &Client,
        is_authenticated: bool,
        params: &HashMap<String, String>,
        subject: &mut Option<SignInSubject>,
    ) -> Result<TokenResponse, OAuthError> {
        Self::require_client_auth(is_authenticated, client.is_fallback_public)?;
        let code =
            params.get("device_code").filter(|it| !it.is_empty()).ok_or_else(|| OAuthError::missing("device_code"))?;
        let now = self.now();
        let hash = sha256(code.as_bytes());
        let record = self.read_short().await?.get_device_code(&hash).await?;
        let mut record = record
            .filter(|it| it.tenant_id == tenant.id && it.client_id == client.client_id)
            .ok_or_else(|| OAuthError::invalid_grant(codes::GRANT_INVALID, "The provided device code is invalid."))?;
        if record.expires_at <= now {
            return Err(OAuthError::new(
                400,
                "expired_token",
                codes::DEVICE_CODE_EXPIRED,
                "The device code has expired. Start a new sign-in.",
            ));
        }
        if record.status != DeviceCodeStatus::Pending {
            // Decided by a user: its completion is a sign-in (polling while pending is not).
            *subject = Some(SignInSubject {
                user_id: record.user_id.clone(),
                upn: String::new(),
                method: "Previously satisfied",
                amr: record.amr.clone(),
                protocol: "deviceCode",
                incoming_token: "none",
            });
        }
        match record.status {
            DeviceCodeStatus::Denied => {
                return Err(OAuthError::new(
                    400,
                    "access_denied",
                    codes::ACCESS_DENIED,
                    "The user declined the sign-in.",
                ));
            }
            DeviceCodeStatus::Redeemed => {
                return Err(OAuthError::invalid_grant(codes::CODE_REDEEMED, "The device code was already redeemed."));
            }
            DeviceCodeStatus::Pending => {
                let too_fast =
                    record.last_poll_at.is_some_and(|at| (now - at).whole_seconds() < record.interval_seconds);
                record.last_poll_at = Some(now);
                let mut tx = self.write().await?;
                // Only a still-pending code is touched: an approval that landed meanwhile stays.
                let still_pending = tx.update_device_code(&record, DeviceCodeStatus::Pending).await?;
                tx.commit().await?;
                return Err(if too_fast && still_pending {
                    OAuthError::new(
                        400,
                        "slow_down",
                        codes::AUTHORIZATION_PENDING,
                        "Polling too fast: wait the interval between requests.",
                    )
                } else {
                    OAuthError::new(
                        400,
                        "authorization_pending",
                        codes::AUTHORIZATION_PENDING,
                        "The user has not yet finished authenticating.",
                    )
                });
            }
            DeviceCodeStatus::Approved => (),
        }
        let mut tx = self.write().await?;
        if !tx.redeem_device_code(&hash).await? {
            return Err(OAuthError::invalid_grant(codes::CODE_REDEEMED, "The device code was already redeemed."));
        }
        tx.commit().await?;
        let (Some(user_id), Some(auth_time)) = (record.user_id.clone(), record.auth_time) else {
            return Err(OAuthError::invalid_grant(codes::GRANT_INVALID, "The device code has no user."));
        };
        let grant = Grant {
            tenant_id: tenant.id.clone(),
            client_id: client.client_id.clone(),
            user_id,
            scope: record.scope.clone(),
            auth_time,
            amr: record.amr.clone(),
            pass_expires_at: record.pass_expires_at,
        };
        let scopes = self.scopes_of(&record.scope)?;
        let family = URL_SAFE_NO_PAD.encode(&hash);
        let family = super::token::Family { id: &family, client_authenticated: is_authenticated };
        self.issue_for_grant(tenant, client, &grant, &scopes, None, family, params).await
    }

    /// The device-code verification page: approves `user_code` for the signed-in user of the
    /// session (or declines it). Returns the client's display name.
    pub async fn approve_device_code(
        &self,
        tenant_key: &str,
        session_cookie: &str,
        user_code: &str,
        approve: bool,
        meta: RequestMeta,
    ) -> Result<String, AppError> {
        let tenant = self.find_tenant(tenant_key).await?.ok_or_else(|| AppError::NotFound(tenant_key.to_owned()))?;
        let (user, session) = self
            .signed_in_session(&tenant, session_cookie)
            .await?
            .ok_or_else(|| AppError::Unauthenticated("Your session has ended. Sign in again."))?;
        if self.mfa_missing(&tenant, &user, &session.methods).await? {
            return Err(AppError::Unauthenticated("Sign in again with multi-factor authentication."));
        }
        let now = self.now();
        // Wrong codes count toward the code lockout here exactly as on the entry step.
        let Some(mut record) = self.pending_device_code(&tenant, &user, user_code, now).await? else {
            return Err(AppError::BadRequest("That code is not valid or has expired. Check the code on your device, or start the sign-in there again.".into()));
        };
        let client = self
            .client(&tenant, &record.client_id)
            .await?
            .ok_or_else(|| AppError::BadRequest("The application of this code no longer exists.".into()))?;
        let scopes = self.scopes_of(&record.scope).map_err(|err| AppError::BadRequest(err.description))?;
        if approve {
            // Refused before anything changes when only an administrator could grant what is asked.
            self.device_consent(&tenant, &client, &user, &scopes).await?;
        }
        record.status = if approve { DeviceCodeStatus::Approved } else { DeviceCodeStatus::Denied };
        record.user_id = Some(user.id.clone());
        record.auth_time = session.authenticated_at;
        record.amr = session.methods.clone();
        record.pass_expires_at = session.pass_expires_at;
        let mut tx = self.write().await?;
        if !tx.update_device_code(&record, DeviceCodeStatus::Pending).await? {
            return Err(AppError::BadRequest(
                "That code was already used. Start the sign-in on your device again.".into(),
            ));
        }
        tx.commit().await?;
        if approve {
            // The confirmation page listed the permissions: approving is consenting to them.
            self.consent_by_device_approval(&tenant, &client, &user, &scopes, meta).await?;
        }
        Ok(client.display_name)
    }

    /// The client named by a pending user code, for the confirmation page. Wrong codes count
    /// toward the signed-in user's code lockout (like wrong one-time codes), so the page cannot
    /// be used to guess pending codes; a locked user is told when to try again.
    pub async fn device_code_client(
        &self,
        tenant_key: &str,
        session_cookie: &str,
        user_code: &str,
    ) -> Result<Option<(String, Vec<(String, &'static str)>)>, AppError> {
        let Some(tenant) = self.find_tenant(tenant_key).await? else { return Ok(None) };
        let (user, session) = self
            .signed_in_session(&tenant, session_cookie)
            .await?
            .ok_or(AppError::Unauthenticated("Your session has ended. Sign in again."))?;
        if self.mfa_missing(&tenant, &user, &session.methods).await? {
            return Err(AppError::Unauthenticated("Sign in again with multi-factor authentication."));
        }
        let Some(record) = self.pending_device_code(&tenant, &user, user_code, self.now()).await? else {
            return Ok(None);
        };
        let Some(client) = self.client(&tenant, &record.client_id).await? else { return Ok(None) };
        let scopes = self.scopes_of(&record.scope).map_err(|err| AppError::BadRequest(err.description))?;
        let to_consent = self.device_consent(&tenant, &client, &user, &scopes).await?;
        let described = to_consent.into_iter().map(|it| {
            let text = keyward_core::consent::describe(&it);
            (it, text)
        });
        Ok(Some((client.display_name, described.collect())))
    }

    /// The pending device code a signed-in user typed, on the entry and the confirmation step
    /// alike: refused while the user's code lockout holds, and a wrong code counts toward it.
    pub(super) async fn pending_device_code(
        &self,
        tenant: &Tenant,
        user: &User,
        user_code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<keyward_store::DeviceCode>, AppError> {
        // The lockout's check and a wrong code's count under the user's sign-in state lock, in one
        // transaction: guesses sent at once, on one node or several, cannot all pass the check
        // before any is counted.
        let mut tx = self.write().await?;
        let (policy, _) = tx.sign_in_policy(&tenant.id).await?;
        let mut state = tx.lock_user_sign_in_state(&user.id).await?;
        if let Some(until) = state.code.locked_at(now) {
            return Err(AppError::BadRequest(format!(
                "Too many wrong codes. Try again after {}.",
                crate::signin::clock(until)
            )));
        }
        let code = oauth::normalize_user_code(user_code);
        let record = tx.find_device_code(&code).await?;
        let record = record
            .filter(|it| it.tenant_id == tenant.id && it.status == DeviceCodeStatus::Pending && it.expires_at > now);
        if record.is_none() {
            crate::signin::count_code_failure(&mut state, &policy, now);
            tx.set_user_sign_in_state(&user.id, &state).await?;
        }
        tx.commit().await?;
        Ok(record)
    }
}
