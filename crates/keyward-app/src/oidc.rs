//! The OpenID Connect provider: clients, the authorization endpoint (code with PKCE), the token
//! endpoint (authorization code, refresh with rotation and reuse detection, client credentials,
//! device code, and the resource-owner password grant when allowed), device authorization,
//! userinfo, logout and revocation.
//!
//! Every decision is the core's (`keyward_core::oauth`, `keyward_core::signin`); this module
//! sequences load, decide and persist. Codes, refresh tokens, device codes and client secrets
//! are random and stored as SHA-256 only.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::directory::{ServicePrincipal, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::oauth::{self, FIRST_PARTY_CLIENT_ID, RefreshVerdict, Scopes, codes};
use keyward_core::secret::Secret;
use keyward_core::signin::{self, FirstFactor, NextStep};
use keyward_store::{Application, AuthCode, DeviceCode, Grant, RefreshToken};
use serde::Serialize;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::consent::ConsentCheck;
use crate::tokens::UserAccess;
use crate::{App, AppError, RequestMeta, random_token, sha256};

/// Authorization codes live ten minutes, as in Entra.
const CODE_LIFETIME: Duration = Duration::minutes(10);
/// Refresh tokens live ninety days (Entra's sliding window), rotated on every use.
const REFRESH_LIFETIME: Duration = Duration::days(90);
/// Device codes live fifteen minutes; clients poll every five seconds.
const DEVICE_LIFETIME: Duration = Duration::minutes(15);
const DEVICE_INTERVAL: i64 = 5;

/// An OAuth error in RFC 6749 form plus Entra's `error_codes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    pub codes: Vec<i64>,
    /// Seconds to wait, for `429` and `503` answers (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, code: i64, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: format!("AADSTS{code}: {}", description.into()),
            codes: vec![code],
            retry_after: None,
        }
    }

    fn invalid_request(code: i64, description: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_request", code, description)
    }

    fn invalid_grant(code: i64, description: impl Into<String>) -> OAuthError {
        OAuthError::new(400, "invalid_grant", code, description)
    }

    fn invalid_client(code: i64, description: impl Into<String>) -> OAuthError {
        OAuthError::new(401, "invalid_client", code, description)
    }
}

impl From<AppError> for OAuthError {
    fn from(err: AppError) -> OAuthError {
        match err {
            AppError::TooManyRequests { retry_after } => {
                return OAuthError {
                    retry_after: Some(retry_after),
                    ..OAuthError::new(
                        429,
                        "temporarily_unavailable",
                        codes::THROTTLED,
                        format!(
                            "Too many requests from this address or for this account. Try again in {retry_after} seconds."
                        ),
                    )
                };
            }
            AppError::Overloaded { retry_after } => {
                return OAuthError {
                    retry_after: Some(retry_after),
                    ..OAuthError::new(
                        503,
                        "temporarily_unavailable",
                        codes::THROTTLED,
                        format!("The server is busy. Try again in {retry_after} seconds."),
                    )
                };
            }
            _ => (),
        }
        tracing::error!(error = ?err, "token endpoint failed");
        OAuthError {
            status: 500,
            error: "server_error",
            description: "The server failed; try again.".into(),
            codes: Vec::new(),
            retry_after: None,
        }
    }
}

impl From<keyward_store::StoreError> for OAuthError {
    fn from(err: keyward_store::StoreError) -> OAuthError {
        OAuthError::from(AppError::from(err))
    }
}

/// Who a user grant is signing in, as far as it got: for the sign-in log.
#[derive(Debug)]
struct SignInSubject {
    user_id: Option<ObjectId>,
    /// The name the client sent (the password grant), for unknown users.
    upn: String,
    /// The authentication method the log names.
    method: &'static str,
    /// The grant's `amr`.
    amr: String,
}

/// A client as the provider sees it.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub display_name: String,
    /// The application's registration (`None` for the first-party `keyward-cli`).
    pub application: Option<Application>,
    /// The application's service principal, enabled (`None` for `keyward-cli`).
    pub service_principal: Option<ServicePrincipal>,
    pub public_redirect_uris: Vec<String>,
    pub web_redirect_uris: Vec<String>,
    /// May ask for tokens without a secret (device code, refresh, password).
    pub is_fallback_public: bool,
}

impl Client {
    fn first_party() -> Client {
        Client {
            client_id: FIRST_PARTY_CLIENT_ID.into(),
            display_name: "Keyward command line".into(),
            application: None,
            service_principal: None,
            public_redirect_uris: vec!["http://localhost".into(), "http://127.0.0.1".into(), "http://[::1]".into()],
            web_redirect_uris: Vec::new(),
            is_fallback_public: true,
        }
    }

    /// Whether `redirect_uri` is registered, and whether it is a public (native) one.
    fn redirect(&self, redirect_uri: &str) -> Option<bool> {
        if oauth::redirect_uri_matches(&self.web_redirect_uris, redirect_uri, false) {
            Some(false)
        } else if oauth::redirect_uri_matches(&self.public_redirect_uris, redirect_uri, true) {
            Some(true)
        } else {
            None
        }
    }
}

/// The parameters of an authorization request.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    pub params: HashMap<String, String>,
    /// The request's own path and query, to come back to after signing in.
    pub path_and_query: String,
}

impl AuthorizeRequest {
    fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str).filter(|it| !it.is_empty())
    }
}

/// How the authorization response travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    FormPost,
}

/// What the authorization endpoint answers.
#[derive(Debug, Clone)]
pub enum AuthorizeOutcome {
    /// An error shown to the user: the redirect URI could not be trusted.
    ErrorPage(String),
    /// The user must sign in first; the location brings them back here.
    SignIn { location: String },
    /// The response for the client, sent to its redirect URI.
    Respond { redirect_uri: String, mode: ResponseMode, params: Vec<(String, String)> },
    /// The signed-in user must consent to the application first.
    Consent(crate::consent::ConsentRequest),
}

/// A successful token response (RFC 6749 §5.1 plus Entra's and MSAL's fields).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub token_type: &'static str,
    pub scope: String,
    pub expires_in: i64,
    pub ext_expires_in: i64,
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_info: Option<String>,
}

/// A device authorization response (RFC 8628 §3.2).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: i64,
    pub interval: i64,
    pub message: String,
}

/// Claims of an id token.
#[derive(Debug, Clone, Serialize)]
struct IdClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    oid: String,
    tid: String,
    ver: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    amr: Vec<String>,
    acr: &'static str,
}

/// Client authentication presented at the token endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    pub client_id: Option<String>,
    pub secret: Option<Secret>,
}

impl App {
    /// The tenant named by an id or verified domain, or Entra's `invalid_tenant` error.
    async fn oauth_tenant(&self, key: &str) -> Result<Tenant, OAuthError> {
        self.find_tenant(key).await?.ok_or_else(|| {
            OAuthError::new(
                400,
                "invalid_tenant",
                codes::UNKNOWN_TENANT,
                format!("Tenant '{key}' not found. Check the tenant id or domain name."),
            )
        })
    }

    /// The client with this id in the tenant: `keyward-cli`, or a registered application.
    pub(crate) async fn client(&self, tenant: &Tenant, client_id: &str) -> Result<Option<Client>, AppError> {
        if client_id == FIRST_PARTY_CLIENT_ID {
            return Ok(Some(Client::first_party()));
        }
        let mut tx = self.read().await?;
        let Some(app) = tx.find_application(&tenant.id, client_id).await? else { return Ok(None) };
        // An application whose service principal is gone or disabled signs nobody in (Entra's
        // way to block an application in a tenant).
        let Some(principal) = tx.find_service_principal(&tenant.id, &app.app_id).await?.filter(|it| it.account_enabled)
        else {
            return Ok(None);
        };
        Ok(Some(Client {
            service_principal: Some(principal),
            client_id: app.app_id.clone(),
            display_name: app.display_name.clone(),
            public_redirect_uris: app.public_redirect_uris.clone(),
            web_redirect_uris: app.web_redirect_uris.clone(),
            is_fallback_public: app.is_fallback_public_client,
            application: Some(app),
        }))
    }

    /// The `kw_after` marker: the time a sign-in was asked for, with a MAC binding it to the client.
    fn after_marker(&self, at: i64, client_id: &str) -> Result<String, AppError> {
        let mac = self.inner.keys.sign_checkpoint(format!("keyward authorize after v1:{at}:{client_id}").as_bytes())?;
        Ok(format!("{at}.{mac}"))
    }

    fn parse_after_marker(&self, raw: &str, client_id: &str) -> Option<i64> {
        let (at, mac) = raw.split_once('.')?;
        let at: i64 = at.parse().ok()?;
        let message = format!("keyward authorize after v1:{at}:{client_id}");
        (self.inner.keys.verify_checkpoint(message.as_bytes(), mac) == Some(true)).then_some(at)
    }

    /// Parses a requested scope, as the token endpoint reports a bad one.
    fn scopes_of(&self, scope: &str) -> Result<Scopes, OAuthError> {
        oauth::parse_scope(scope, &self.inner.config.public_url)
            .map_err(|err| OAuthError::new(400, "invalid_scope", codes::INVALID_SCOPE, err.0))
    }

    /// `GET /{tenant}/oauth2/v2.0/authorize`.
    pub async fn authorize(
        &self,
        tenant_key: &str,
        request: &AuthorizeRequest,
        session_cookie: Option<&str>,
    ) -> Result<AuthorizeOutcome, AppError> {
        let Some(tenant) = self.find_tenant(tenant_key).await? else {
            return Ok(AuthorizeOutcome::ErrorPage(format!(
                "AADSTS90002: Tenant '{tenant_key}' not found. Check the sign-in address your application uses."
            )));
        };
        let Some(client_id) = request.get("client_id") else {
            return Ok(AuthorizeOutcome::ErrorPage(
                "AADSTS900144: The request body must contain the 'client_id' parameter.".into(),
            ));
        };
        let Some(client) = self.client(&tenant, client_id).await? else {
            return Ok(AuthorizeOutcome::ErrorPage(format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory. Ask the \
                 application's owner to register it in this tenant."
            )));
        };
        let Some(redirect_uri) = request.get("redirect_uri") else {
            return Ok(AuthorizeOutcome::ErrorPage(
                "AADSTS900144: The request must contain the 'redirect_uri' parameter.".into(),
            ));
        };
        let Some(is_public) = client.redirect(redirect_uri) else {
            return Ok(AuthorizeOutcome::ErrorPage(format!(
                "AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect \
                 URIs configured for the application '{client_id}'."
            )));
        };
        let mode = match request.get("response_mode") {
            None | Some("query") => ResponseMode::Query,
            Some("form_post") => ResponseMode::FormPost,
            Some(_) => ResponseMode::Query,
        };
        let issuer = self.issuer(&tenant.id);
        let fail = |error: &str, code: i64, description: &str| {
            let mut params = vec![
                ("error".to_owned(), error.to_owned()),
                ("error_description".to_owned(), format!("AADSTS{code}: {description}")),
                ("error_codes".to_owned(), format!("[{code}]")),
            ];
            if let Some(state) = request.get("state") {
                params.push(("state".into(), state.to_owned()));
            }
            params.push(("iss".into(), issuer.clone()));
            Ok(AuthorizeOutcome::Respond { redirect_uri: redirect_uri.to_owned(), mode, params })
        };
        if request.get("response_mode").is_some_and(|it| it != "query" && it != "form_post") {
            return fail("invalid_request", codes::MISSING_PARAMETER, "response_mode must be 'query' or 'form_post'.");
        }
        if request.get("response_type") != Some("code") {
            return fail(
                "unsupported_response_type",
                codes::MISSING_PARAMETER,
                "The provided value for the input parameter 'response_type' is not allowed: use 'code'.",
            );
        }
        let scopes = match oauth::parse_scope(request.get("scope").unwrap_or("openid"), &self.inner.config.public_url) {
            Ok(it) => it,
            Err(err) => return fail("invalid_scope", codes::INVALID_SCOPE, &err.0),
        };
        let challenge = request.get("code_challenge");
        let method = request.get("code_challenge_method").unwrap_or("plain");
        if challenge.is_some() && !matches!(method, "S256" | "plain") {
            return fail("invalid_request", codes::PKCE_REQUIRED, "code_challenge_method must be 'S256'.");
        }
        if is_public && (challenge.is_none() || method != "S256") {
            return fail(
                "invalid_request",
                codes::PKCE_REQUIRED,
                "Proof Key for Code Exchange is required for public clients: send code_challenge with \
                 code_challenge_method=S256.",
            );
        }
        let max_age = match request.get("max_age").map(str::parse::<i64>) {
            None => None,
            Some(Ok(it)) if it >= 0 => Some(it),
            Some(_) => {
                return fail("invalid_request", codes::MISSING_PARAMETER, "max_age must be a number of seconds.");
            }
        };
        let prompt = request.get("prompt").unwrap_or("");
        if !matches!(prompt, "" | "login" | "none" | "select_account" | "consent") {
            return fail(
                "invalid_request",
                codes::MISSING_PARAMETER,
                "prompt must be login, none, select_account or consent.",
            );
        }
        // `kw_after`: the time this request sent the user to sign in (prompt=login, max_age);
        // a sign-in at or after it satisfies them.
        // It carries this server's MAC, so a client cannot hand in a marker of its own to skip a
        // fresh sign-in.
        let signed_in_after = request.get("kw_after").and_then(|it| self.parse_after_marker(it, client_id));
        let now = self.now();
        let session = match session_cookie {
            Some(cookie) => self.signed_in_session(&tenant, cookie).await?,
            None => None,
        };
        let fresh_enough = |auth_time: OffsetDateTime| {
            let after_ok = signed_in_after.is_none_or(|after| auth_time.unix_timestamp() >= after);
            let login_ok = prompt != "login" && prompt != "select_account" || signed_in_after.is_some() && after_ok;
            let age_ok = max_age.is_none_or(|max| (now - auth_time).whole_seconds() <= max)
                || after_ok && signed_in_after.is_some();
            login_ok && age_ok
        };
        let has_session = session.is_some();
        let mut usable = session.filter(|(_, session)| session.authenticated_at.is_some_and(fresh_enough));
        // Step-up: a session signed in without MFA is not reused for a user who must now use it;
        // the user signs in again and meets the second factor.
        let mut needs_mfa = false;
        if let Some((user, session)) = &usable
            && self.mfa_missing(&tenant, user, &session.methods).await?
        {
            needs_mfa = true;
            usable = None;
        }
        let Some((user, session)) = usable else {
            if prompt == "none" && needs_mfa {
                return fail(
                    "interaction_required",
                    codes::MFA_REQUIRED,
                    "The user must use multi-factor authentication, which a silent request cannot ask for.",
                );
            }
            if prompt == "none" {
                return fail("login_required", 50058, "A silent sign-in request was sent but no user is signed in.");
            }
            let back = format!(
                "{}&kw_after={}",
                strip_param(&request.path_and_query, "kw_after"),
                self.after_marker(now.unix_timestamp(), client_id)?
            );
            let mut location = format!("/{}/login?return_to={}", tenant.id, url_encode(&back));
            if has_session {
                // Signed in, but not recently enough (prompt=login, max_age): sign in again.
                location.push_str("&prompt=login");
            }
            if let Some(hint) = request.get("login_hint") {
                location.push_str(&format!("&login_hint={}", url_encode(hint)));
            }
            return Ok(AuthorizeOutcome::SignIn { location });
        };
        // Consent: no code for permissions nobody granted this client for this user.
        if request.get("kw_consent") == Some("denied") {
            return fail("access_denied", codes::ACCESS_DENIED, "The user declined to consent to access the app.");
        }
        let return_to = strip_param(&request.path_and_query, "kw_consent");
        match self.consent_check(&tenant, &client, &user, &scopes, prompt == "consent", &return_to).await? {
            ConsentCheck::Granted => (),
            ConsentCheck::Ask(consent) if prompt != "none" => return Ok(AuthorizeOutcome::Consent(consent)),
            ConsentCheck::AdminRequired if prompt != "none" => {
                return Ok(AuthorizeOutcome::ErrorPage(format!(
                    "AADSTS90094: {} needs permission to access resources in your organization that only an admin \
                     can grant. Ask an admin to grant permission to this app before you can use it.",
                    client.display_name
                )));
            }
            ConsentCheck::Ask(_) | ConsentCheck::AdminRequired => {
                return fail("consent_required", codes::CONSENT_REQUIRED, &not_consented(&client));
            }
        }
        let code = random_token()?;
        let auth_time = session.authenticated_at.unwrap_or(now);
        let record = AuthCode {
            code_sha256: sha256(code.as_bytes()),
            grant: Grant {
                tenant_id: tenant.id.clone(),
                client_id: client.client_id.clone(),
                user_id: user.id.clone(),
                scope: scope_string(&scopes),
                auth_time,
                amr: session.methods.clone(),
                pass_expires_at: session.pass_expires_at,
            },
            redirect_uri: redirect_uri.to_owned(),
            nonce: request.get("nonce").map(str::to_owned),
            code_challenge: challenge.map(str::to_owned),
            code_challenge_method: challenge.map(|_| method.to_owned()),
            created: now,
            expires_at: now + CODE_LIFETIME,
            used_at: None,
        };
        let mut tx = self.write().await?;
        tx.insert_auth_code(&record).await?;
        tx.commit().await?;
        let mut params = vec![("code".to_owned(), code)];
        if let Some(state) = request.get("state") {
            params.push(("state".into(), state.to_owned()));
        }
        params.push(("iss".into(), issuer));
        Ok(AuthorizeOutcome::Respond { redirect_uri: redirect_uri.to_owned(), mode, params })
    }

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
        let (client, is_authenticated) = self.authenticate_client(&tenant, tenant_key, params, auth).await?;
        let grant_type = param("grant_type").unwrap_or("");
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
            "" => {
                return Err(OAuthError::invalid_request(
                    codes::MISSING_PARAMETER,
                    "The request body must contain the 'grant_type' parameter.",
                ));
            }
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
            if let Err(err) = self.log_token_sign_in(&tenant, &client, subject, &result, meta).await {
                tracing::error!(error = ?err, "cannot write the sign-in log entry of a token request");
            }
        }
        result
    }

    /// Identifies the client of a token-endpoint request (`client_id` in the body or HTTP Basic)
    /// and checks its credential if it sent one (a secret, or a `private_key_jwt` assertion):
    /// the client and whether it authenticated.
    async fn authenticate_client(
        &self,
        tenant: &Tenant,
        tenant_key: &str,
        params: &HashMap<String, String>,
        auth: ClientAuth,
    ) -> Result<(Client, bool), OAuthError> {
        let param = |name: &str| params.get(name).map(String::as_str).filter(|it| !it.is_empty());
        let client_id = match (auth.client_id.as_deref(), param("client_id")) {
            (Some(basic), Some(form)) if basic != form => {
                return Err(OAuthError::invalid_client(
                    codes::UNKNOWN_CLIENT,
                    "The client_id in the body and in the Authorization header differ.",
                ));
            }
            (Some(id), _) | (None, Some(id)) => id.to_owned(),
            (None, None) => {
                return Err(OAuthError::invalid_request(
                    codes::MISSING_PARAMETER,
                    "The request body must contain the 'client_id' parameter.",
                ));
            }
        };
        let client = self.client(tenant, &client_id).await?.ok_or_else(|| {
            OAuthError::new(
                400,
                "unauthorized_client",
                codes::UNKNOWN_CLIENT,
                format!("Application with identifier '{client_id}' was not found in the directory '{}'.", tenant.id),
            )
        })?;
        let secret = auth.secret.or_else(|| param("client_secret").map(|it| Secret::new(it.to_owned())));
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
    async fn log_token_sign_in(
        &self,
        tenant: &Tenant,
        client: &Client,
        subject: SignInSubject,
        result: &Result<TokenResponse, OAuthError>,
        meta: &RequestMeta,
    ) -> Result<(), AppError> {
        let now = self.now();
        let code = match result {
            Ok(_) => 0,
            Err(err) => err.codes.first().copied().and_then(|it| i32::try_from(it).ok()).unwrap_or(-1),
        };
        let user = match &subject.user_id {
            Some(id) => self.read().await?.get_user(&tenant.id, id).await?,
            None => None,
        };
        let outcome = if code == 0 { "Token issued" } else { "Token refused" };
        let record = signin::SignInRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant.id.clone(),
            created: now,
            user_id: user.as_ref().map(|it| it.id.clone()),
            user_principal_name: user.as_ref().map_or(subject.upn, |it| it.user_principal_name.clone()),
            user_display_name: user.as_ref().map(|it| it.display_name.clone()),
            app_id: client.client_id.clone(),
            app_display_name: client.display_name.clone(),
            ip_address: meta.ip_address.clone(),
            correlation_id: meta.correlation_id.clone(),
            error_code: code,
            failure_reason: signin::failure_reason(code).map(str::to_owned).or_else(|| match result {
                Err(err) => Some(err.description.clone()),
                Ok(_) => None,
            }),
            is_multi_factor: subject.amr.split_whitespace().any(|it| it == "mfa"),
            requirement_policies: Vec::new(),
            details: vec![signin::AuthenticationDetail {
                at: now,
                method: subject.method.into(),
                succeeded: code == 0,
                result_detail: outcome.into(),
            }],
            client_app_used: signin::CLIENT_APP_DESKTOP.into(),
            is_interactive: false,
        };
        let mut tx = self.write().await?;
        tx.insert_sign_in(&record).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn check_client_secret(&self, client: &Client, secret: &Secret) -> Result<(), OAuthError> {
        let wrong = || {
            OAuthError::invalid_client(
                codes::INVALID_CLIENT_SECRET,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    client.client_id
                ),
            )
        };
        let Some(app) = &client.application else { return Err(wrong()) };
        let now = self.now();
        let presented = sha256(secret.expose().as_bytes());
        let credentials = self.read().await?.list_app_credentials(&app.id).await?;
        let matches = credentials.iter().filter(|it| it.start <= now && now < it.end).any(|it| {
            it.secret.as_ref().is_some_and(|(hash, _)| bool::from(hash.as_slice().ct_eq(presented.as_slice())))
        });
        if matches { Ok(()) } else { Err(wrong()) }
    }

    async fn check_client_assertion(
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
        let Some(app) = &client.application else { return Err(refuse("the client has no certificates".into())) };
        let now = self.now();
        let certificates: Vec<Vec<u8>> = self
            .read()
            .await?
            .list_app_credentials(&app.id)
            .await?
            .into_iter()
            .filter(|it| it.start <= now && now < it.end)
            .filter_map(|it| it.certificate.map(|(der, _)| der))
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
    /// the device-code, password and refresh grants; never a code sent to a web redirect URI).
    fn require_client_auth(is_authenticated: bool, is_public_grant: bool) -> Result<(), OAuthError> {
        if is_authenticated || is_public_grant {
            Ok(())
        } else {
            Err(OAuthError::invalid_client(
                codes::PUBLIC_CLIENT,
                "The request body must contain the 'client_secret' or 'client_assertion' parameter: this application is confidential.",
            ))
        }
    }

    async fn redeem_code(
        &self,
        tenant: &Tenant,
        client: &Client,
        is_authenticated: bool,
        params: &HashMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        let param = |name: &str| params.get(name).map(String::as_str).filter(|it| !it.is_empty());
        let code = param("code").ok_or_else(|| {
            OAuthError::invalid_request(codes::MISSING_PARAMETER, "The request body must contain the 'code' parameter.")
        })?;
        let now = self.now();
        let hash = sha256(code.as_bytes());
        let record = self.read().await?.get_auth_code(&hash).await?;
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
                    "The request body must contain the 'code_verifier' parameter.",
                ));
            }
            (None, _) => (),
        }
        if record.expires_at <= now {
            return Err(invalid());
        }
        let family = URL_SAFE_NO_PAD.encode(&hash);
        let mut tx = self.write().await?;
        if record.used_at.is_some() || !tx.use_auth_code(&hash, now).await? {
            // RFC 6749 §4.1.2: a code redeemed twice revokes what it granted.
            tx.revoke_refresh_family(&family, now).await?;
            tx.commit().await?;
            return Err(OAuthError::invalid_grant(
                codes::CODE_REDEEMED,
                "The provided value for the 'code' parameter is not valid. The code has already been redeemed.",
            ));
        }
        tx.commit().await?;
        let scopes = self.scopes_of(&record.grant.scope)?;
        self.issue_for_grant(tenant, client, &record.grant, &scopes, record.nonce.as_deref(), &family, params).await
    }

    async fn redeem_refresh(
        &self,
        tenant: &Tenant,
        client: &Client,
        is_authenticated: bool,
        params: &HashMap<String, String>,
        subject: &mut Option<SignInSubject>,
    ) -> Result<TokenResponse, OAuthError> {
        let token = params.get("refresh_token").map(String::as_str).filter(|it| !it.is_empty()).ok_or_else(|| {
            OAuthError::invalid_request(
                codes::MISSING_PARAMETER,
                "The request body must contain the 'refresh_token' parameter.",
            )
        })?;
        let now = self.now();
        let hash = sha256(token.as_bytes());
        let mut tx = self.read().await?;
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
        });
        Self::require_client_auth(is_authenticated, self.is_public_client(client).await?)?;
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
        // its refresh token. A narrower scope may be asked for the access token; the refresh
        // token keeps the grant's whole scope.
        let mut scopes = self.scopes_of(&record.grant.scope)?;
        if let Some(asked) = params.get("scope").filter(|it| !it.trim().is_empty()) {
            let asked = self.scopes_of(asked)?;
            scopes.api.retain(|it| asked.api.contains(it) || asked.api.is_empty());
            scopes.openid &= asked.openid || !asked.has_api();
        }
        scopes.offline_access = true;
        let mut tx = self.write().await?;
        if !tx.rotate_refresh_token(&hash, now).await? {
            tx.revoke_refresh_family(&record.family_id, now).await?;
            tx.commit().await?;
            return Err(revoked());
        }
        tx.commit().await?;
        self.issue_for_grant(tenant, client, &record.grant, &scopes, None, &record.family_id, params).await
    }

    async fn client_credentials(
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
        let access_token = self.sign_app_access_token(tenant, principal).await?;
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

    /// Issues the access token, and the id token and refresh token the scopes ask for.
    #[allow(clippy::too_many_arguments)]
    async fn issue_for_grant(
        &self,
        tenant: &Tenant,
        client: &Client,
        grant: &Grant,
        scopes: &Scopes,
        nonce: Option<&str>,
        family: &str,
        params: &HashMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let user = self
            .read()
            .await?
            .get_user(&tenant.id, &grant.user_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant(codes::GRANT_REVOKED, "The user no longer exists."))?;
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
        // Consent holds on every path: a grant removed since stops new tokens at once.
        if !self.missing_consent(tenant, client, &user, scopes).await?.is_empty() {
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
        let amr: Vec<String> = grant.amr.split_whitespace().map(str::to_owned).collect();
        let api: Vec<String> = if scopes.has_api() { scopes.api.clone() } else { vec!["User.Read".to_owned()] };
        let access = UserAccess {
            client_id: &client.client_id,
            scp: &api,
            amr: &amr,
            pass_expires_at: grant.pass_expires_at,
            auth_time: Some(grant.auth_time),
        };
        let access_token = self.sign_user_access_token(tenant, &user, &access).await?;
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
                family_id: family.to_owned(),
                grant: grant.clone(),
                issued_at: now,
                expires_at,
                rotated_at: None,
                revoked_at: None,
            };
            let mut tx = self.write().await?;
            tx.insert_refresh_token(&record).await?;
            // A replay may have revoked the family between the rotation and this insert: the new
            // token joins the revocation.
            if tx.is_refresh_family_revoked(family).await? {
                tx.revoke_refresh_family(family, now).await?;
                tx.commit().await?;
                return Err(OAuthError::invalid_grant(
                    codes::GRANT_REVOKED,
                    "The provided grant has been revoked: a refresh token was used twice.",
                ));
            }
            tx.commit().await?;
            Some(token)
        } else {
            None
        };
        let client_info = params
            .get("client_info")
            .filter(|it| it.as_str() == "1")
            .map(|_| URL_SAFE_NO_PAD.encode(format!("{{\"uid\":\"{}\",\"utid\":\"{}\"}}", user.id, tenant.id)));
        let resource = oauth::GRAPH_RESOURCE;
        Ok(TokenResponse {
            token_type: "Bearer",
            scope: if scopes.has_api() {
                scopes.granted(resource)
            } else {
                Scopes { api: api.clone(), ..scopes.clone() }.granted(resource)
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
    fn sign_id_token(
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

    /// `POST /{tenant}/oauth2/v2.0/devicecode` (RFC 8628).
    pub async fn device_authorization(
        &self,
        tenant_key: &str,
        params: &HashMap<String, String>,
    ) -> Result<DeviceAuthorization, OAuthError> {
        let tenant = self.oauth_tenant(tenant_key).await?;
        let client_id = params.get("client_id").filter(|it| !it.is_empty()).ok_or_else(|| {
            OAuthError::invalid_request(
                codes::MISSING_PARAMETER,
                "The request body must contain the 'client_id' parameter.",
            )
        })?;
        let client = self.client(&tenant, client_id).await?.ok_or_else(|| {
            OAuthError::new(
                400,
                "unauthorized_client",
                codes::UNKNOWN_CLIENT,
                format!("Application with identifier '{client_id}' was not found in the directory."),
            )
        })?;
        if !client.is_fallback_public {
            return Err(OAuthError::new(
                400,
                "unauthorized_client",
                codes::PUBLIC_CLIENT,
                "The device code flow needs a public client: set isFallbackPublicClient on the application.",
            ));
        }
        let scopes = self.scopes_of(params.get("scope").map(String::as_str).unwrap_or("openid"))?;
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
            status: "pending".into(),
            user_id: None,
            auth_time: None,
            amr: String::new(),
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

    async fn redeem_device(
        &self,
        tenant: &Tenant,
        client: &Client,
        is_authenticated: bool,
        params: &HashMap<String, String>,
        subject: &mut Option<SignInSubject>,
    ) -> Result<TokenResponse, OAuthError> {
        Self::require_client_auth(is_authenticated, client.is_fallback_public)?;
        let code = params.get("device_code").filter(|it| !it.is_empty()).ok_or_else(|| {
            OAuthError::invalid_request(
                codes::MISSING_PARAMETER,
                "The request body must contain the 'device_code' parameter.",
            )
        })?;
        let now = self.now();
        let hash = sha256(code.as_bytes());
        let record = self.read().await?.get_device_code(&hash).await?;
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
        if record.status != "pending" {
            // Decided by a user: its completion is a sign-in (polling while pending is not).
            *subject = Some(SignInSubject {
                user_id: record.user_id.clone(),
                upn: String::new(),
                method: "Previously satisfied",
                amr: record.amr.clone(),
            });
        }
        match record.status.as_str() {
            "denied" => {
                return Err(OAuthError::new(
                    400,
                    "access_denied",
                    codes::ACCESS_DENIED,
                    "The user declined the sign-in.",
                ));
            }
            "redeemed" => {
                return Err(OAuthError::invalid_grant(codes::CODE_REDEEMED, "The device code was already redeemed."));
            }
            "pending" => {
                let too_fast =
                    record.last_poll_at.is_some_and(|at| (now - at).whole_seconds() < record.interval_seconds);
                record.last_poll_at = Some(now);
                let mut tx = self.write().await?;
                // Only a still-pending code is touched: an approval that landed meanwhile stays.
                let still_pending = tx.update_device_code(&record, "pending").await?;
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
            _ => (),
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
        self.issue_for_grant(tenant, client, &grant, &scopes, None, &family, params).await
    }

    /// The resource-owner password grant, only when `KEYWARD_ALLOW_PASSWORD_GRANT=true`; a user
    /// who must use MFA gets `invalid_grant` with 50076, as Entra answers.
    async fn password_grant(
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
            amr: "pwd".into(),
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
        let (requirement, has_method, _) = self.mfa_facts(tenant, &user, &policy).await?;
        if signin::after_first_factor(FirstFactor::Password, requirement, has_method, false)
            != (NextStep::Done { mfa: signin::MfaDone::NotRequired })
        {
            return Err(OAuthError::invalid_grant(
                codes::MFA_REQUIRED,
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access this resource.",
            ));
        }
        let scopes = self.scopes_of(params.get("scope").map(String::as_str).unwrap_or("openid"))?;
        let grant = Grant {
            tenant_id: tenant.id.clone(),
            client_id: client.client_id.clone(),
            user_id: user.id.clone(),
            scope: scope_string(&scopes),
            auth_time: now,
            amr: "pwd".into(),
            pass_expires_at: None,
        };
        let family = uuid::Uuid::new_v4().to_string();
        self.issue_for_grant(tenant, client, &grant, &scopes, None, &family, params).await
    }

    /// Whether a user who signed in with methods `amr` (space-separated) lacks the MFA they must
    /// now use.
    pub(crate) async fn mfa_missing(&self, tenant: &Tenant, user: &User, amr: &str) -> Result<bool, AppError> {
        if amr.split_whitespace().any(|it| it == "mfa") {
            return Ok(false);
        }
        let mut tx = self.read().await?;
        let (policy, _) = tx.sign_in_policy(&tenant.id).await?;
        let (requirement, _, _) = crate::signin::mfa_facts_in(&mut *tx, tenant, user, &policy).await?;
        Ok(requirement.is_some())
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
        let pass = self.read().await?.get_temporary_access_pass(user).await?;
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
        let mut tx = self.read().await?;
        let Some(session) = tx.get_browser_session(&sha256(cookie.as_bytes())).await? else { return Ok(None) };
        if session.tenant_id != tenant.id || session.stage != crate::Stage::Done.as_str() {
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
        if !self.pass_still_held(&user.id, session.pass_expires_at).await? {
            return Ok(None);
        }
        Ok(Some((user, session)))
    }

    /// Whether the browser session named by `cookie` is signed in and still counts.
    pub async fn signed_in(&self, tenant: &Tenant, cookie: &str) -> Result<bool, AppError> {
        Ok(self.signed_in_session(tenant, cookie).await?.is_some())
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
        record.status = if approve { "approved" } else { "denied" }.into();
        record.user_id = Some(user.id.clone());
        record.auth_time = session.authenticated_at;
        record.amr = session.methods.clone();
        record.pass_expires_at = session.pass_expires_at;
        let mut tx = self.write().await?;
        if !tx.update_device_code(&record, "pending").await? {
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
    async fn pending_device_code(
        &self,
        tenant: &Tenant,
        user: &User,
        user_code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<keyward_store::DeviceCode>, AppError> {
        let mut tx = self.read().await?;
        let (policy, _) = tx.sign_in_policy(&tenant.id).await?;
        if let Some(until) = tx.user_sign_in_state(&user.id).await?.code.locked_at(now) {
            return Err(AppError::BadRequest(format!(
                "Too many wrong codes. Try again after {}.",
                crate::signin::clock(until)
            )));
        }
        let code = oauth::normalize_user_code(user_code);
        let record = tx.find_device_code(&code).await?;
        drop(tx);
        let record = record.filter(|it| it.tenant_id == tenant.id && it.status == "pending" && it.expires_at > now);
        if record.is_none() {
            self.count_code_failure(&user.id, &policy, now).await?;
        }
        Ok(record)
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
        Self::require_client_auth(is_authenticated, self.is_public_client(&client).await?)?;
        let Some(token) = params.get("token").filter(|it| !it.is_empty()) else {
            return Err(OAuthError::invalid_request(
                codes::MISSING_PARAMETER,
                "The request body must contain the 'token' parameter.",
            ));
        };
        let now = self.now();
        let mut tx = self.write().await?;
        if let Some(record) = tx.get_refresh_token(&sha256(token.as_bytes())).await?
            && record.grant.tenant_id == tenant.id
            && record.grant.client_id == client.client_id
        {
            tx.revoke_refresh_family(&record.family_id, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether a client may use the token endpoint without a credential: the first-party client,
    /// an application marked `isFallbackPublicClient`, or one without credentials.
    async fn is_public_client(&self, client: &Client) -> Result<bool, AppError> {
        Ok(match &client.application {
            None => true,
            Some(app) => {
                client.is_fallback_public || self.read().await?.list_app_credentials(&app.id).await?.is_empty()
            }
        })
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

fn scope_string(scopes: &Scopes) -> String {
    let mut parts: Vec<String> = scopes.api.clone();
    for (flag, name) in [
        (scopes.openid, "openid"),
        (scopes.profile, "profile"),
        (scopes.email, "email"),
        (scopes.offline_access, "offline_access"),
    ] {
        if flag {
            parts.push(name.to_owned());
        }
    }
    parts.join(" ")
}

/// Percent-encodes a query value.
pub fn url_encode(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            res.push(char::from(byte));
        } else {
            res.push_str(&format!("%{byte:02X}"));
        }
    }
    res
}

/// The path and query without the parameter `name`.
/// Entra's AADSTS65001 text.
fn not_consented(client: &Client) -> String {
    format!(
        "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an \
         interactive authorization request for this user and resource.",
        client.client_id, client.display_name
    )
}

fn strip_param(path_and_query: &str, name: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else { return path_and_query.to_owned() };
    let kept: Vec<&str> = query.split('&').filter(|it| it.split('=').next() != Some(name)).collect();
    if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_drop_the_marker_parameter() {
        assert_eq!(
            strip_param("/t/oauth2/v2.0/authorize?a=1&kw_after=5&b=2", "kw_after"),
            "/t/oauth2/v2.0/authorize?a=1&b=2"
        );
        assert_eq!(strip_param("/t/x?kw_after=5", "kw_after"), "/t/x");
        assert_eq!(url_encode("/a?b=c&d"), "%2Fa%3Fb%3Dc%26d");
    }
}
