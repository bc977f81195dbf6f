//! Browser sessions as the provider sees them: whether one counts, its MFA, logout.

use crate::{App, AppError, sha256};
use keyward_core::directory::{Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::signin::Amr;
use keyward_core::signin::{self};
use time::{Duration, OffsetDateTime};

impl App {
    /// Whether a user who signed in with methods `amr` lacks the MFA they must
    /// now use.
    pub(crate) async fn mfa_missing(&self, tenant: &Tenant, user: &User, amr: &Amr) -> Result<bool, AppError> {
        if amr.is_multi_factor() {
            return Ok(false);
        }
        let mut tx = self.read_short().await?;
        let (policy, _) = tx.sign_in_policy(&tenant.id).await?;
        Ok(crate::signin::mfa_requirement_in(&mut *tx, tenant, user, &policy).await?.is_some())
    }

    /// Whether a session or token obtained with a Temporary Access Pass ending at `pass_end` may
    /// still be used: only while that pass exists (deleting it ends what it opened). Credentials
    /// not obtained with a pass (`None`) are not affected. Compared to the second, as tokens
    /// carry the end.
    pub(crate) async fn pass_still_held(
        &self,
        user: &ObjectId,
        pass_end: Option<OffsetDateTime>,
    ) -> Result<bool, AppError> {
        let Some(end) = pass_end else { return Ok(true) };
        let pass = self.read_short().await?.get_temporary_access_pass(user).await?;
        Ok(pass.is_some_and(|it| {
            (it.start + Duration::minutes(it.lifetime_minutes)).unix_timestamp() == end.unix_timestamp()
        }))
    }

    /// The signed-in user of a browser session, if it still counts.
    pub(crate) async fn signed_in_session(
        &self,
        tenant: &Tenant,
        cookie: &str,
    ) -> Result<Option<(User, keyward_store::BrowserSession)>, AppError> {
        let now = self.now();
        let mut tx = self.read_short().await?;
        let Some(session) = tx.get_browser_session(&sha256(cookie.as_bytes())).await? else { return Ok(None) };
        if session.tenant_id != tenant.id || session.stage != crate::Stage::Done {
            return Ok(None);
        }
        let (Some(user_id), Some(authenticated_at)) = (&session.user_id, session.authenticated_at) else {
            return Ok(None);
        };
        let Some(user) = tx.get_user(&tenant.id, user_id).await? else { return Ok(None) };
        let facts = signin::SessionFacts {
            authenticated_at,
            expires_at: session.expires_at,
            pass_expires_at: session.pass_expires_at,
        };
        if signin::session_valid(&facts, user.sign_in_sessions_valid_from, user.account_enabled, now).is_err() {
            return Ok(None);
        }
        drop(tx);
        // A session that used the admin portal ends after the portal's idle timeout, everywhere
        // (the authorization endpoint and device approval too, not only the portal's pages).
        if let Some(seen) = session.portal_seen_at
            && now - seen.max(authenticated_at) > self.inner.config.portal_idle_timeout
        {
            let mut tx = self.write().await?;
            tx.delete_browser_session(&session.id_sha256).await?;
            tx.commit().await?;
            return Ok(None);
        }
        if !self.pass_still_held(&user.id, session.pass_expires_at).await? {
            return Ok(None);
        }
        Ok(Some((user, session)))
    }

    /// Whether the browser session named by `cookie` is signed in and still counts.
    pub async fn signed_in(&self, tenant: &Tenant, cookie: &str) -> Result<bool, AppError> {
        Ok(self.signed_in_session(tenant, cookie).await?.is_some())
    }

    /// RP-initiated logout: ends the browser session and returns where to send the user (the
    /// `post_logout_redirect_uri` only if it is one of the client's redirect URIs).
    pub async fn logout(
        &self,
        tenant_key: &str,
        session_cookie: Option<&str>,
        client_id: Option<&str>,
        post_logout_redirect_uri: Option<&str>,
    ) -> Result<Option<String>, AppError> {
        let Some(tenant) = self.find_tenant(tenant_key).await? else {
            return Err(AppError::NotFound(tenant_key.to_owned()));
        };
        if let Some(cookie) = session_cookie {
            let mut tx = self.write().await?;
            tx.delete_browser_session(&sha256(cookie.as_bytes())).await?;
            tx.commit().await?;
        }
        let (Some(client_id), Some(target)) = (client_id, post_logout_redirect_uri) else { return Ok(None) };
        let Some(client) = self.client(&tenant, client_id).await? else { return Ok(None) };
        Ok(client.redirect(target).map(|_| target.to_owned()))
    }

    /// The client id (`aud`) of an id token this server signed, for logout's `id_token_hint`.
    pub fn id_token_audience(&self, id_token: &str) -> Option<String> {
        let claims = self.inner.keys.verify(id_token).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&claims).ok()?;
        value.get("aud")?.as_str().map(str::to_owned)
    }
}
