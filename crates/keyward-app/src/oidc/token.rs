//! The token endpoint's grants (authorization code, refresh token, client credentials, device
//! code, password), client authentication, token signing and revocation.

use crate::tokens::UserAccess;
use crate::{App, AppError, RequestMeta, random_token, sha256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::directory::{RoleAssignment, Tenant, User};
use keyward_core::oauth::{self, FIRST_PARTY_CLIENT_ID, RefreshVerdict, Scopes, codes};
use keyward_core::secret::Secret;
use keyward_core::secret::constant_time_eq;
use keyward_core::signin::{self, FirstFactor, NextStep};
use keyward_core::signin::{Amr, AuthMethodRef};
use keyward_store::{Grant, RefreshToken};
use std::collections::HashMap;
use time::OffsetDateTime;

use super::{
    Client, ClientAuth, IdClaims, OAuthError, REFRESH_LIFETIME, SignInSubject, TokenResponse, declares_cae,
    not_consented, scope_string,
};

impl App {
    /// `POST /{tenant}/oauth2/v2.0/token`.
    pub async fn token(
        &self,
        tenant_key: &str,
        params: &HashMap<String, String>,
        auth: ClientAuth,
        meta: &RequestMeta,
    ) -> Result<TokenResponse, OAuthError> {
        let tenant = self.oauth_tenant(tenant_key).await?;
        let param = |name: &str| params.get(name).map(String::as_str).filter(|it| !it.is_empty());
        // The grant type is looked for first, as Entra does: a body that is not a form (JSON, say)
        // is answered with this.
        let Some(grant_type) = param("grant_type") else {
            return Err(OAuthError::missing("grant_type"));
        };
        declares_cae(params)?;
        // The credential the client presented, as the sign-in log's `clientCredentialType`.
        let presented = if param("client_assertion").is_some() {
            "clientAssertion"
        } else if auth.secret.is_some() || param("client_secret").is_some() {
            "clientSecret"
        } else {
            "none"
        };
        // A client-credentials grant with a client secret runs first on this node's kept copy of
        // its client, and stands only if its sign-in log entry commits under an unchanged version
        // of the tenant's clients; otherwise it runs again below, on a fresh read.
        if grant_type == "client_credentials"
            && presented == "clientSecret"
            && let Some(answer) = self.kept_client_credentials(&tenant, params, &auth, meta).await
        {
            return answer;
        }
        let claimed_id = auth.client_id.clone().or_else(|| param("client_id").map(str::to_owned));
        let (client, is_authenticated) = match self.authenticate_client(&tenant, tenant_key, params, auth).await {
            Ok(it) => it,
            Err(err) => {
                // An application's failed sign-in (a wrong secret, a disabled application) is
                // logged like Entra's.
                if grant_type == "client_credentials"
                    && let Some(id) = claimed_id
                    && let Ok(Some(client)) = self.logged_client(&tenant, &id).await
                {
                    self.log_app_sign_in(&tenant, &client, presented, Err(&err), meta).await;
                }
                return Err(err);
            }
        };
        let credential = if is_authenticated { presented } else { "none" };
        // The user a grant signs in, once the grant knows it: every such attempt goes to the
        // sign-in log (non-interactive, with this client's names).
        let mut subject = None;
        let result = match grant_type {
            "authorization_code" => self.redeem_code(&tenant, &client, is_authenticated, params).await,
            "refresh_token" => self.redeem_refresh(&tenant, &client, is_authenticated, params, &mut subject).await,
            "client_credentials" => self.client_credentials(&tenant, &client, is_authenticated, params).await,
            "urn:ietf:params:oauth:grant-type:device_code" => {
                self.redeem_device(&tenant, &client, is_authenticated, params, &mut subject).await
            }
            "password" => self.password_grant(&tenant, &client, is_authenticated, params, &mut subject).await,
            other => {
                return Err(OAuthError::new(
                    400,
                    "unsupported_grant_type",
                    codes::UNSUPPORTED_GRANT,
                    format!("The grant type '{other}' is not supported."),
                ));
            }
        };
        if let Some(subject) = subject {
            // The answer stands whether or not its log entry could be written (a token already
            // issued, a code already spent): a failure is logged here instead.
            if let Err(err) = self.log_token_sign_in(&tenant, &client, subject, credential, &result, meta).await {
                tracing::error!(error = ?err, "cannot write the sign-in log entry of a token request");
            }
        } else if grant_type == "client_credentials" {
            self.log_app_sign_in(&tenant, &client, credential, result.as_ref().map(|_| ()), meta).await;
        }
        result
    }

    /// A client-credentials grant with a client secret, made on this node's kept copy of the
    /// client without reading the version of the tenant's clients (`App::kept_client`): its
    /// answer, or `None` when it must be made again on a fresh read.
    ///
    /// Its sign-in log entry is written only if that version, read in the log's write
    /// transaction, is still the one the copy was read under, and the answer stands only then.
    /// Every change to an application, its secrets, its principal or the principal's roles gives
    /// the tenant's clients a new version in its own transaction, so a removed secret, a deleted
    /// principal or a removed role counts at the next grant on every node, as when every grant
    /// read the whole client: the grant is made again on a fresh read, and that one is logged. A
    /// client this node does not keep, or anything the copy cannot decide alone (a `client_id`
    /// twice, a principal gone or disabled), is made again the same way. An entry that could not
    /// be written leaves the answer standing, as on the fresh path, if the version is unchanged.
    async fn kept_client_credentials(
        &self,
        tenant: &Tenant,
        params: &HashMap<String, String>,
        auth: &ClientAuth,
        meta: &RequestMeta,
    ) -> Option<Result<TokenResponse, OAuthError>> {
        let client_id = client_id_of(auth, params).ok()?;
        if client_id == FIRST_PARTY_CLIENT_ID {
            return None;
        }
        // A secret sent twice is refused on the fresh path, which says so.
        let secret = secret_of(auth, params).ok()??;
        let (client, version) = self.kept_client(tenant, client_id).await.ok()??;
        let principal = client.service_principal.as_ref()?;
        let result = match self.check_client_secret(&client, &secret).await {
            Ok(()) => self.client_credentials(tenant, &client, true, params).await,
            Err(err) => Err(err),
        };
        let record = signin::SignInRecord {
            service_principal_id: Some(principal.id.to_string()),
            ..token_record(tenant, &client, "clientSecret", result.as_ref().map(|_| ()), meta, self.now())
        };
        match self.write_sign_in_under(record, version).await {
            Ok(true) => Some(result),
            Ok(false) => None,
            // Perhaps written, perhaps not (a commit whose answer was lost): making the grant
            // again could log it twice. The version read now decides, as a fresh read would.
            Err(err) => {
                tracing::error!(error = ?err, "cannot write the sign-in log entry of an application's sign-in");
                let now = self.inner.store.client_version(&tenant.id).await.ok()?;
                (now == version).then_some(result)
            }
        }
    }

    /// Writes the sign-in log entry of an application's own sign-in (the client-credentials
    /// grant), when the client has a service principal; a failure to write it is only logged.
    async fn log_app_sign_in(
        &self,
        tenant: &Tenant,
        client: &Client,
        credential: &str,
        result: Result<(), &OAuthError>,
        meta: &RequestMeta,
    ) {
        let Some(principal) = &client.service_principal else { return };
        let record = signin::SignInRecord {
            service_principal_id: Some(principal.id.to_string()),
            ..token_record(tenant, client, credential, result, meta, self.now())
        };
        if let Err(err) = self.write_sign_in(record).await {
            tracing::error!(error = ?err, "cannot write the sign-in log entry of an application's sign-in");
        }
    }

    /// Identifies the client of a token-endpoint request (`client_id` in the body or HTTP Basic)
    /// and checks its credential if it sent one (a secret, or a `private_key_jwt` assertion):
    /// the client and whether it authenticated.
    pub(super) async fn authenticate_client(
        &self,
        tenant: &Tenant,
        tenant_key: &str,
        params: &HashMap<String, String>,
        auth: ClientAuth,
    ) -> Result<(Client, bool), OAuthError> {
        let param = |name: &str| params.get(name).map(String::as_str).filter(|it| !it.is_empty());
        let client_id = client_id_of(&auth, params)?;
        let Some(client) = self.client(tenant, client_id).await? else {
            let (code, text) = self.missing_client(tenant, client_id).await?;
            return Err(OAuthError::new(400, "unauthorized_client", code, text));
        };
        let secret = secret_of(&auth, params)?;
        let is_authenticated = match (&secret, param("client_assertion")) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::invalid_request(
                    codes::MISSING_PARAMETER,
                    "Send either a client secret or a client assertion, not both.",
                ));
            }
            (Some(secret), None) => {
                self.check_client_secret(&client, secret).await?;
                true
            }
            (None, Some(assertion)) => {
                if param("client_assertion_type") != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
                    return Err(OAuthError::invalid_request(
                        codes::INVALID_CLIENT_ASSERTION,
                        "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                    ));
                }
                self.check_client_assertion(tenant, tenant_key, &client, assertion).await?;
                true
            }
            (None, None) => false,
        };
        Ok((client, is_authenticated))
    }

    /// Writes the sign-in log entry of a grant that signed a user in, or failed to.
    pub(super) async fn log_token_sign_in(
        &self,
        tenant: &Tenant,
        client: &Client,
        subject: SignInSubject,
        credential: &str,
        result: &Result<TokenResponse, OAuthError>,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.now();
        let result = result.as_ref().map(|_| ());
        let user = match &subject.user_id {
            Some(id) => self.read_short().await?.get_user(&tenant.id, id).await?,
            None => None,
        };
        let base = token_record(tenant, client, credential, result, meta, now);
        let outcome = if base.error_code == 0 { "Token issued" } else { "Token refused" };
        let record = signin::SignInRecord {
            user_id: user.as_ref().map(|it| it.id.clone()),
            user_principal_name: user.as_ref().map_or(subject.upn, |it| it.user_principal_name.clone()),
            user_display_name: user.as_ref().map(|it| it.display_name.clone()),
            is_multi_factor: subject.amr.is_multi_factor(),
            details: vec![signin::AuthenticationDetail {
                at: now,
                method: subject.method.into(),
                succeeded: base.error_code == 0,
                result_detail: outcome.into(),
            }],
            protocol: subject.protocol.into(),
            incoming_token: subject.incoming_token.into(),
            ..base
        };
        self.write_sign_in(record).await
    }

    pub(super) async fn check_client_secret(&self, client: &Client, secret: &Secret) -> Result<(), OAuthError> {
        let wrong = || {
            OAuthError::invalid_client(
                codes::INVALID_CLIENT_SECRET,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    client.client_id
                ),
            )
        };
        let now = self.now();
        let presented = sha256(secret.expose().as_bytes());
        let matches = client
            .credentials
            .iter()
            .filter(|it| it.start <= now && now < it.end)
            .any(|it| it.secret.as_ref().is_some_and(|(hash, _)| constant_time_eq(hash, &presented)));
        if matches { Ok(()) } else { Err(wrong()) }
    }

    pub(super) async fn check_client_assertion(
        &self,
        tenant: &Tenant,
        tenant_key: &str,
        client: &Client,
        assertion: &str,
    ) -> Result<(), OAuthError> {
        let refuse = |why: String| {
            OAuthError::invalid_client(
                codes::INVALID_CLIENT_ASSERTION,
                format!("Client assertion failed signature validation or its claims are wrong: {why}."),
            )
        };
        let now = self.now();
        let certificates: Vec<Vec<u8>> = client
            .credentials
            .iter()
            .filter(|it| it.start <= now && now < it.end)
            .filter_map(|it| it.certificate.as_ref().map(|(der, _)| der.clone()))
            .collect();
        let base = &self.inner.config.public_url;
        let audiences = vec![
            format!("{base}/{}/oauth2/v2.0/token", tenant.id),
            format!("{base}/{tenant_key}/oauth2/v2.0/token"),
            self.issuer(&tenant.id),
        ];
        let verified = crate::client_assertion::verify(
            assertion,
            &client.client_id,
            &audiences,
            &certificates,
            now.unix_timestamp(),
        )
        .map_err(refuse)?;
        let expires_at = OffsetDateTime::from_unix_timestamp(verified.exp).unwrap_or(now);
        let mut tx = self.write().await?;
        let first_use = tx.use_client_assertion(&client.client_id, &verified.jti, expires_at, now).await?;
        tx.commit().await?;
        if !first_use {
            return Err(refuse("the client assertion was used before (its jti is single-use)".into()));
        }
        Ok(())
    }

    /// A public client may redeem without a secret; a confidential one may not.
    /// Refuses an unauthenticated client unless the grant is a public client's: `is_public_grant`
    /// says so for the grant at hand (a code sent to a native redirect URI, a refresh token of an
    /// application without credentials, the first-party client, or `isFallbackPublicClient` for
    /// the device-code, password and refresh grants; never a code sent to a web redirect URI, nor
    /// a refresh token whose family was granted to the client authenticated).
    pub(super) fn require_client_auth(is_authenticated: bool, is_public_grant: bool) -> Result<(), OAuthError> {
        if is_authenticated || is_public_grant {
            Ok(())
        } else {
            Err(OAuthError::invalid_client(
                codes::PUBLIC_CLIENT,
                "The request body must contain the 'client_secret' or 'client_assertion' parameter: this application is confidential.",
            ))
        }
    }

    pub(super) async fn redeem_code(
        &self,
        tenant: &Tenant,
        client: &Client,
        is_authenticated: bool,
        params: &HashMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        let param = |name: &str| params.get(name).map(String::as_str).filter(|it| !it.is_empty());
        let code = param("code").ok_or_else(|| OAuthError::missing("code"))?;
        let now = self.now();
        let hash = sha256(code.as_bytes());
        let record = self.read_short().await?.get_auth_code(&hash).await?;
        let invalid = || {
            OAuthError::invalid_grant(
                codes::GRANT_INVALID,
                "The provided authorization code or refresh token has expired due to inactivity or is invalid. Send a new interactive authorization request.",
            )
        };
        let record = record.filter(|it| it.grant.tenant_id == tenant.id).ok_or_else(invalid)?;
        if record.grant.client_id != client.client_id {
            return Err(invalid());
        }
        let redirect = param("redirect_uri").unwrap_or("");
        if redirect != record.redirect_uri {
            return Err(OAuthError::invalid_grant(
                codes::REDIRECT_URI_MISMATCH,
                "The redirect_uri does not match the one the authorization code was issued to.",
            ));
        }
        let is_public_redirect = client.redirect(&record.redirect_uri) == Some(true);
        Self::require_client_auth(is_authenticated, is_public_redirect)?;
        match (&record.code_challenge, param("code_verifier")) {
            (Some(challenge), Some(verifier)) => {
                let method = record.code_challenge_method.as_deref().unwrap_or("plain");
                if !oauth::pkce_matches(method, challenge, verifier) {
                    return Err(OAuthError::invalid_grant(
                        codes::PKCE_MISMATCH,
                        "The code_verifier does not match the code_challenge supplied in the authorization request.",
                    ));
                }
            }
            (Some(_), None) => {
                return Err(OAuthError::invalid_request(
                    codes::PKCE_MISMATCH,
                    oauth::missing_parameter("code_verifier"),
                ));
            }
            // RFC 9700 section 2.1.1: a verifier for a code issued without a challenge is refused
            // (a code whose challenge was stripped, injected into another's session).
            (None, Some(_)) => {
                return Err(OAuthError::invalid_grant(
                    codes::PKCE_MISMATCH,
                    "The code_verifier was sent for an authorization code requested without a code_challenge.",
                ));
            }
            (None, None) => (),
        }
        if record.expires_at <= now {
            return Err(invalid());
        }
        let family = URL_SAFE_NO_PAD.encode(&hash);
        let mut tx = self.write().await?;
        if record.used_at.is_some() || !tx.use_auth_code(&hash, now).await? {
            // RFC 6749 §4.1.2: a code redeemed twice revokes what it granted, what the first
            // redemption has yet to store included: a revoked token of the family that nobody
            // holds makes the family revoked for it (`issue_for_grant` looks under the family's
            // lock, which `is_refresh_family_revoked` takes here too).
            if !tx.is_refresh_family_revoked(&family).await? {
                let marker = RefreshToken {
                    token_sha256: sha256(random_token()?.as_bytes()),
                    family_id: family.clone(),
                    grant: record.grant.clone(),
                    issued_at: now,
                    expires_at: now + REFRESH_LIFETIME,
                    rotated_at: Some(now),
                    revoked_at: Some(now),
                    client_authenticated: is_authenticated,
                };
                tx.insert_refresh_token(&marker).await?;
            }
            tx.revoke_refresh_family(&family, now).await?;
            tx.commit().await?;
            return Err(OAuthError::invalid_grant(
                codes::CODE_REDEEMED,
                "The provided value for the 'code' parameter is not valid. The code has already been redeemed.",
            ));
        }
        tx.commit().await?;
        let scopes = self.scopes_of(&record.grant.scope)?;
        let family = Family { id: &family, client_authenticated: is_authenticated };
        self.issue_for_grant(tenant, client, &record.grant, &scopes, record.nonce.as_deref(), family, params).await
    }

    pub(super) async fn redeem_refresh(
        &self,
        tenant: &Tenant,
        client: &Client,
        is_authenticated: bool,
        params: &HashMap<String, String>,
        subject: &mut Option<SignInSubject>,
    ) -> Result<TokenResponse, OAuthError> {
        let token = params
            .get("refresh_token")
            .map(String::as_str)
            .filter(|it| !it.is_empty())
            .ok_or_else(|| OAuthError::missing("refresh_token"))?;
        let now = self.now();
        let hash = sha256(token.as_bytes());
        let mut tx = self.read_short().await?;
        let record = tx.get_refresh_token(&hash).await?;
        let invalid = || {
            OAuthError::invalid_grant(
                codes::GRANT_INVALID,
                "The provided authorization code or refresh token has expired due to inactivity or is invalid.",
            )
        };
        let record = record
            .filter(|it| it.grant.tenant_id == tenant.id && it.grant.client_id == client.client_id)
            .ok_or_else(invalid)?;
        *subject = Some(SignInSubject {
            user_id: Some(record.grant.user_id.clone()),
            upn: String::new(),
            method: "Previously satisfied",
            amr: record.grant.amr.clone(),
            protocol: "none",
            incoming_token: "refreshToken",
        });
        // A family granted to an authenticated client stays confidential: neither deleting the
        // application's every credential (after a leak, say) nor `isFallbackPublicClient` lets
        // its refresh tokens be redeemed without one.
        Self::require_client_auth(is_authenticated, !record.client_authenticated && self.is_public_client(client))?;
        let user = tx.get_user(&tenant.id, &record.grant.user_id).await?;
        drop(tx);
        let revoked = || {
            OAuthError::invalid_grant(
                codes::GRANT_REVOKED,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password, or their sessions were revoked.",
            )
        };
        let user = user.ok_or_else(revoked)?;
        if !user.account_enabled {
            return Err(OAuthError::invalid_grant(codes::ACCOUNT_DISABLED, "The user account is disabled."));
        }
        if record.grant.pass_expires_at.is_some_and(|end| end <= now) {
            return Err(revoked());
        }
        let verdict = oauth::refresh_verdict(
            record.rotated_at.is_some(),
            record.revoked_at.is_some(),
            record.issued_at,
            record.expires_at,
            user.sign_in_sessions_valid_from,
            now,
        );
        match verdict {
            RefreshVerdict::Valid => (),
            RefreshVerdict::Expired => return Err(invalid()),
            RefreshVerdict::Revoked => return Err(revoked()),
            RefreshVerdict::Reused => {
                let mut tx = self.write().await?;
                tx.revoke_refresh_family(&record.family_id, now).await?;
                tx.commit().await?;
                tracing::warn!(client = %client.client_id, user = %user.id, "a rotated refresh token was replayed; its family is revoked");
                return Err(revoked());
            }
        }
        // The scope is checked before the token is spent: a bad scope must not cost the client
        // its refresh token. As in Entra, a refresh token serves any permission the client holds
        // for the user (consent decides, below), for the access token only: the refresh token
        // keeps the grant's scope.
        let mut scopes = self.scopes_of(&record.grant.scope)?;
        if let Some(asked) = params.get("scope").filter(|it| !it.trim().is_empty()) {
            // Parsed as a stored scope: a client may send back the scope a token response named,
            // which holds `.default` beside what it stood for.
            let asked = self.scopes_of(asked)?;
            scopes.openid &= asked.openid || !asked.has_api();
            if asked.has_api() {
                (scopes.api, scopes.spelled, scopes.default) = (asked.api, asked.spelled, asked.default);
            }
        }
        scopes.offline_access = true;
        // So is everything else the grant needs now (consent, MFA, the account): a refusal must
        // not spend the token either, nor count its retry as a replay.
        self.grant_holds(tenant, client, &record.grant, &scopes).await?;
        let mut tx = self.write().await?;
        if !tx.rotate_refresh_token(&hash, now).await? {
            tx.revoke_refresh_family(&record.family_id, now).await?;
            tx.commit().await?;
            return Err(revoked());
        }
        tx.commit().await?;
        let family =
            Family { id: &record.family_id, client_authenticated: record.client_authenticated || is_authenticated };
        self.issue_for_grant(tenant, client, &record.grant, &scopes, None, family, params).await
    }

    pub(super) async fn client_credentials(
        &self,
        tenant: &Tenant,
        client: &Client,
        is_authenticated: bool,
        params: &HashMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        if !is_authenticated {
            return Err(OAuthError::invalid_client(
                codes::PUBLIC_CLIENT,
                "The client credentials grant needs the application's client secret.",
            ));
        }
        let scope = params.get("scope").map(String::as_str).unwrap_or("");
        let resource = scope.trim().strip_suffix("/.default");
        let is_api = resource.is_some_and(|it| it == oauth::GRAPH_RESOURCE || it == self.inner.config.public_url);
        if scope.split_whitespace().count() != 1 || !is_api {
            return Err(OAuthError::new(
                400,
                "invalid_scope",
                codes::INVALID_SCOPE,
                format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope requested must be '{}/.default' for the client credentials flow.",
                    oauth::GRAPH_RESOURCE
                ),
            ));
        }
        // `client` finds a registered application only with its enabled service principal, so
        // only the first-party `keyward-cli` has none.
        let principal = client
            .service_principal
            .as_ref()
            .ok_or_else(|| OAuthError::invalid_client(codes::UNKNOWN_CLIENT, "Unknown application."))?;
        let access_token = self.sign_app_access_token(tenant, principal, &client.principal_roles).await?;
        let lifetime = self.inner.config.access_token_lifetime.whole_seconds();
        Ok(TokenResponse {
            token_type: "Bearer",
            scope: format!("{}/.default", oauth::GRAPH_RESOURCE),
            expires_in: lifetime,
            ext_expires_in: lifetime,
            access_token,
            refresh_token: None,
            id_token: None,
            client_info: None,
        })
    }

    /// What every token from a grant needs now, checked before anything is spent: the user
    /// exists and is enabled, their sessions were not revoked since, the pass it was obtained with
    /// is still held, consent still covers the scopes, and MFA was met if it is needed now.
    /// Returns the user, the role assignments that apply to them now (read with the user, in one
    /// statement) and the scopes with `.default` resolved.
    pub(super) async fn grant_holds(
        &self,
        tenant: &Tenant,
        client: &Client,
        grant: &Grant,
        scopes: &Scopes,
    ) -> Result<(User, Vec<RoleAssignment>, Scopes), OAuthError> {
        let (user, roles) = self
            .inner
            .store
            .get_user_and_roles(&tenant.id, &grant.user_id, self.now())
            .await?
            .ok_or_else(|| OAuthError::invalid_grant(codes::GRANT_REVOKED, "The user no longer exists."))?;
        let user = std::sync::Arc::unwrap_or_clone(user);
        if !user.account_enabled {
            return Err(OAuthError::invalid_grant(codes::ACCOUNT_DISABLED, "The user account is disabled."));
        }
        if grant.auth_time < user.sign_in_sessions_valid_from {
            return Err(OAuthError::invalid_grant(
                codes::GRANT_REVOKED,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
            ));
        }
        if !self.pass_still_held(&user.id, grant.pass_expires_at).await? {
            return Err(OAuthError::invalid_grant(
                codes::GRANT_REVOKED,
                "The provided grant has been revoked: the Temporary Access Pass it was obtained with was deleted.",
            ));
        }
        // `.default` is read once; consent is then checked for exactly what the token will hold.
        let scopes = self.resolve_default(tenant, client, &user, scopes).await?;
        // Consent holds on every path: a grant removed since stops new tokens at once.
        if !self.missing_consent(tenant, client, &user, &scopes).await?.is_empty() {
            return Err(OAuthError::invalid_grant(codes::CONSENT_REQUIRED, not_consented(client)));
        }
        // MFA holds on every path: a grant obtained without MFA by a user who must now use it
        // (a privileged role assigned since, per-user MFA turned on, the policy changed) is refused.
        if self.mfa_missing(tenant, &user, &grant.amr).await? {
            return Err(OAuthError::invalid_grant(
                codes::MFA_REQUIRED,
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access this resource.",
            ));
        }
        Ok((user, roles, scopes))
    }

    /// Issues the access token, and the id token and refresh token the scopes ask for.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn issue_for_grant(
        &self,
        tenant: &Tenant,
        client: &Client,
        grant: &Grant,
        scopes: &Scopes,
        nonce: Option<&str>,
        family: Family<'_>,
        params: &HashMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let (user, roles, resolved) = self.grant_holds(tenant, client, grant, scopes).await?;
        let scopes = &resolved;
        let amr: Vec<String> = grant.amr.values();
        let api: Vec<String> = if scopes.has_api() { scopes.api.clone() } else { vec!["User.Read".to_owned()] };
        let access = UserAccess {
            client_id: &client.client_id,
            scp: &api,
            amr: &amr,
            pass_expires_at: grant.pass_expires_at,
            auth_time: Some(grant.auth_time),
            is_cae_capable: declares_cae(params)?,
        };
        let access_token = self.sign_user_access_token_holding(tenant, &user, &roles, &access).await?;
        let mut lifetime = self.inner.config.access_token_lifetime.whole_seconds();
        if let Some(end) = grant.pass_expires_at {
            lifetime = lifetime.min((end - now).whole_seconds().max(0));
        }
        let id_token = if scopes.openid {
            Some(self.sign_id_token(tenant, client, &user, grant, scopes, nonce, &amr)?)
        } else {
            None
        };
        let refresh_token = if scopes.offline_access {
            let token = random_token()?;
            let mut expires_at = now + REFRESH_LIFETIME;
            if let Some(end) = grant.pass_expires_at {
                expires_at = expires_at.min(end);
            }
            let record = RefreshToken {
                token_sha256: sha256(token.as_bytes()),
                family_id: family.id.to_owned(),
                grant: grant.clone(),
                issued_at: now,
                expires_at,
                rotated_at: None,
                revoked_at: None,
                client_authenticated: family.client_authenticated,
            };
            let mut tx = self.write().await?;
            // A replay (of the code, or of the refresh token this one replaces) may have revoked
            // the family since the code or token was spent. The check takes the family's lock,
            // as a revocation does, until this token has committed: a revocation either came
            // first and is seen here, or comes after and sees this token.
            if tx.is_refresh_family_revoked(family.id).await? {
                return Err(OAuthError::invalid_grant(
                    codes::GRANT_REVOKED,
                    "The provided grant has been revoked: a refresh token or authorization code was used twice.",
                ));
            }
            tx.insert_refresh_token(&record).await?;
            tx.commit().await?;
            Some(token)
        } else {
            None
        };
        let client_info = params
            .get("client_info")
            .filter(|it| it.as_str() == "1")
            .map(|_| URL_SAFE_NO_PAD.encode(format!("{{\"uid\":\"{}\",\"utid\":\"{}\"}}", user.id, tenant.id)));
        Ok(TokenResponse {
            token_type: "Bearer",
            scope: if scopes.has_api() {
                scopes.granted()
            } else {
                Scopes { api: api.clone(), ..scopes.clone() }.granted()
            },
            expires_in: lifetime,
            ext_expires_in: lifetime,
            access_token,
            refresh_token,
            id_token,
            client_info,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn sign_id_token(
        &self,
        tenant: &Tenant,
        client: &Client,
        user: &User,
        grant: &Grant,
        scopes: &Scopes,
        nonce: Option<&str>,
        amr: &[String],
    ) -> Result<String, AppError> {
        let now = self.now().unix_timestamp();
        let claims = IdClaims {
            iss: self.issuer(&tenant.id),
            sub: user.id.to_string(),
            aud: client.client_id.clone(),
            exp: now + self.inner.config.access_token_lifetime.whole_seconds(),
            iat: now,
            nbf: now,
            auth_time: grant.auth_time.unix_timestamp(),
            nonce: nonce.map(str::to_owned),
            oid: user.id.to_string(),
            tid: tenant.id.to_string(),
            ver: "2.0",
            name: scopes.profile.then(|| user.display_name.clone()),
            preferred_username: scopes.profile.then(|| user.user_principal_name.clone()),
            email: if scopes.email { user.mail.clone() } else { None },
            amr: amr.to_vec(),
            acr: if amr.iter().any(|it| it == "mfa") { "mfa" } else { "pwd" },
        };
        let json = serde_json::to_vec(&claims).map_err(|err| AppError::Unexpected(err.into()))?;
        self.inner.keys.sign(&json)
    }

    /// The resource-owner password grant, only when `KEYWARD_ALLOW_PASSWORD_GRANT=true`; a user
    /// who must use MFA gets `invalid_grant` with 50076, as Entra answers.
    pub(super) async fn password_grant(
        &self,
        tenant: &Tenant,
        client: &Client,
        is_authenticated: bool,
        params: &HashMap<String, String>,
        subject: &mut Option<SignInSubject>,
    ) -> Result<TokenResponse, OAuthError> {
        if !self.inner.config.allow_password_grant {
            return Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                codes::PASSWORD_GRANT_DISABLED,
                "The password grant is turned off on this server (KEYWARD_ALLOW_PASSWORD_GRANT).",
            ));
        }
        Self::require_client_auth(is_authenticated, client.is_fallback_public)?;
        let locked = || {
            OAuthError::invalid_grant(
                codes::ACCOUNT_LOCKED,
                "The account is locked: it was used to sign in too many times with a wrong password.",
            )
        };
        let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
            return Err(OAuthError::invalid_request(
                codes::MISSING_PARAMETER,
                "The request body must contain the 'username' and 'password' parameters.",
            ));
        };
        self.throttle(crate::Surface::Token, None, Some(username))?;
        let now = self.now();
        // Counted before the password is checked, as on the sign-in pages (see
        // `signin::Lockout::reserve`): a locked account gets no token whatever the password.
        let mut tx = self.write().await?;
        let user = tx.find_user_by_upn(&tenant.id, username).await?;
        *subject = Some(SignInSubject {
            user_id: user.as_ref().map(|it| it.id.clone()),
            upn: username.clone(),
            method: "Password",
            amr: Amr::of(&[AuthMethodRef::Password]),
            protocol: "ropc",
            incoming_token: "none",
        });
        let (policy, _) = tx.sign_in_policy(&tenant.id).await?;
        let (hash, reservation) = match &user {
            Some(user) => match crate::signin::reserve_attempt(&mut *tx, &user.id, &policy, now).await? {
                Ok(reservation) => (tx.get_password_hash(&user.id).await?, Some(reservation)),
                Err(_) => return Err(locked()),
            },
            None => (None, None),
        };
        tx.commit().await?;
        let is_ok = self.inner.hasher.verify(password, hash.as_deref()).await?;
        let wrong = || {
            OAuthError::invalid_grant(
                codes::INVALID_CREDENTIALS,
                "Error validating credentials due to invalid username or password.",
            )
        };
        let (Some(user), Some(reservation)) = (user.filter(|_| is_ok), reservation) else {
            return Err(wrong());
        };
        let mut tx = self.write().await?;
        if !crate::signin::settle_success(&mut *tx, &user.id, &reservation, now).await? {
            // Locked by a concurrent attempt meanwhile: the same answer as a wrong password.
            return Err(wrong());
        }
        tx.commit().await?;
        if !user.account_enabled {
            return Err(OAuthError::invalid_grant(codes::ACCOUNT_DISABLED, "The user account is disabled."));
        }
        if user.force_change_password_next_sign_in {
            return Err(OAuthError::invalid_grant(
                keyward_core::signin::codes::PASSWORD_EXPIRED.into(),
                "The password must be changed before it can be used: sign in through the browser to set a new one.",
            ));
        }
        let facts = self.mfa_facts(tenant, &user, &policy).await?;
        if signin::after_first_factor(FirstFactor::Password, facts.requirement, facts.has_method, false)
            != (NextStep::Done { mfa: signin::MfaDone::NotRequired })
        {
            return Err(OAuthError::invalid_grant(
                codes::MFA_REQUIRED,
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access this resource.",
            ));
        }
        let scopes = self.requested_scopes_of(params.get("scope").map(String::as_str).unwrap_or("openid"))?;
        let grant = Grant {
            tenant_id: tenant.id.clone(),
            client_id: client.client_id.clone(),
            user_id: user.id.clone(),
            scope: scope_string(&scopes),
            auth_time: now,
            amr: Amr::of(&[AuthMethodRef::Password]),
            pass_expires_at: None,
        };
        let family = uuid::Uuid::new_v4().to_string();
        let family = Family { id: &family, client_authenticated: is_authenticated };
        self.issue_for_grant(tenant, client, &grant, &scopes, None, family, params).await
    }

    /// RFC 7009 revocation: a refresh token revokes its whole family. The client identifies
    /// itself, and a confidential client authenticates as at the token endpoint (§2.1); a token
    /// issued to another client, or unknown, is left alone and answered the same way.
    pub async fn revoke_token(
        &self,
        tenant_key: &str,
        params: &HashMap<String, String>,
        auth: ClientAuth,
    ) -> Result<(), OAuthError> {
        let tenant = self.oauth_tenant(tenant_key).await?;
        let (client, is_authenticated) = self.authenticate_client(&tenant, tenant_key, params, auth).await?;
        Self::require_client_auth(is_authenticated, self.is_public_client(&client))?;
        let Some(token) = params.get("token").filter(|it| !it.is_empty()) else {
            return Err(OAuthError::missing("token"));
        };
        let now = self.now();
        let mut tx = self.write().await?;
        if let Some(record) = tx.get_refresh_token(&sha256(token.as_bytes())).await?
            && record.grant.tenant_id == tenant.id
            && record.grant.client_id == client.client_id
        {
            // A family granted to an authenticated client is that client's, whatever the
            // application's settings now say (as at redemption): without its credential it is
            // left alone, and answered as an unknown token is.
            if is_authenticated || !record.client_authenticated {
                tx.revoke_refresh_family(&record.family_id, now).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The refresh-token family a grant's tokens join, and whether the client authenticated when
/// it was granted (each redemption must then authenticate too).
#[derive(Debug, Clone, Copy)]
pub(super) struct Family<'a> {
    pub id: &'a str,
    pub client_authenticated: bool,
}

/// The client a token-endpoint request names, in its body or with HTTP Basic (both: the same).
fn client_id_of<'a>(auth: &'a ClientAuth, params: &'a HashMap<String, String>) -> Result<&'a str, OAuthError> {
    let form = params.get("client_id").map(String::as_str).filter(|it| !it.is_empty());
    match (auth.client_id.as_deref(), form) {
        (Some(basic), Some(form)) if basic != form => Err(OAuthError::invalid_client(
            codes::UNKNOWN_CLIENT,
            "The client_id in the body and in the Authorization header differ.",
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(OAuthError::missing("client_id")),
    }
}

/// The client secret a token-endpoint request presents, with HTTP Basic or in its body. Both is
/// refused, whether or not they are the same: a client uses one authentication method a request
/// (RFC 6749 §2.3), and a server that took one of two different secrets would let a request
/// pass on the one it chose. An empty secret, either way, counts as none (RFC 6749 §2.3.1).
fn secret_of(auth: &ClientAuth, params: &HashMap<String, String>) -> Result<Option<Secret>, OAuthError> {
    let form = params.get("client_secret").filter(|it| !it.is_empty());
    match (auth.secret.as_ref().filter(|it| !it.expose().is_empty()), form) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            codes::AMBIGUOUS_REQUEST,
            "Request is ambiguous: the client secret is sent both in the Authorization header and as 'client_secret' in the body. Send it one way only.",
        )),
        (Some(basic), None) => Ok(Some(basic.clone())),
        (None, form) => Ok(form.map(|it| Secret::new(it.clone()))),
    }
}

/// A token request's sign-in log entry as every grant writes it: non-interactive, from `client`,
/// with the error code (0, or the first of Entra's codes) and the failure reason (Entra's text for
/// the code, or the error's description); no user yet, and no protocol or incoming token. The
/// caller fills in who signed in, and how.
fn token_record(
    tenant: &Tenant,
    client: &Client,
    credential: &str,
    result: Result<(), &OAuthError>,
    meta: &RequestMeta,
    now: OffsetDateTime,
) -> signin::SignInRecord {
    let code = match result {
        Ok(()) => 0,
        Err(err) => err.codes.first().copied().and_then(|it| i32::try_from(it).ok()).unwrap_or(-1),
    };
    signin::SignInRecord {
        id: crate::sign_in_log::entry_id(),
        tenant_id: tenant.id.clone(),
        created: now,
        user_id: None,
        user_principal_name: String::new(),
        user_display_name: None,
        app_id: client.client_id.clone(),
        app_display_name: client.display_name.clone(),
        ip_address: meta.ip_address.clone(),
        correlation_id: meta.correlation_id.clone(),
        error_code: code,
        failure_reason: signin::failure_reason(code)
            .map(str::to_owned)
            .or_else(|| result.err().map(|err| err.description.clone())),
        is_multi_factor: false,
        requirement_policies: Vec::new(),
        details: Vec::new(),
        client_app_used: signin::CLIENT_APP_DESKTOP.into(),
        is_interactive: false,
        service_principal_id: None,
        protocol: "none".into(),
        client_credential: credential.into(),
        incoming_token: "none".into(),
        user_agent: meta.user_agent.clone(),
    }
}
