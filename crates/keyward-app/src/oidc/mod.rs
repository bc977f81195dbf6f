//! The OpenID Connect provider: clients, the authorization endpoint (code with PKCE), the token
//! endpoint (authorization code, refresh with rotation and reuse detection, client credentials,
//! device code, and the resource-owner password grant when allowed), device authorization,
//! userinfo, logout and revocation.
//!
//! Every decision is the core's (`keyward_core::oauth`, `keyward_core::signin`); this module
//! sequences load, decide and persist. Codes, refresh tokens, device codes and client secrets
//! are random and stored as SHA-256 only.

mod authorize;
mod device;
mod sessions;
mod token;

use crate::{App, AppError};
use keyward_core::directory::{ServicePrincipal, Tenant};
use keyward_core::ids::ObjectId;
use keyward_core::oauth::{self, FIRST_PARTY_CLIENT_ID, Scopes, codes};
use keyward_core::secret::Secret;
use keyward_core::signin::Amr;
use keyward_store::{AppCredential, Application};
use serde::Serialize;
use std::collections::HashMap;
use time::Duration;

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

    /// A request without the parameter `name`: `400 invalid_request`, AADSTS900144.
    pub(crate) fn missing(name: &str) -> OAuthError {
        OAuthError::invalid_request(codes::MISSING_PARAMETER, oauth::missing_parameter(name))
    }

    /// A request that sent the parameter `name` more than once: `400 invalid_request`,
    /// AADSTS90011.
    pub fn repeated(name: &str) -> OAuthError {
        OAuthError::invalid_request(codes::AMBIGUOUS_REQUEST, oauth::repeated_parameter(name))
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

/// Whether a token request's `claims` parameter declares continuous access evaluation (`cp1` in
/// `access_token.xms_cc.values`, in any case), as MSAL sends it for `client_capabilities`. A
/// `claims` that is not a JSON object is refused.
pub(crate) fn declares_cae(params: &HashMap<String, String>) -> Result<bool, OAuthError> {
    let Some(raw) = params.get("claims").filter(|it| !it.trim().is_empty()) else { return Ok(false) };
    let value =
        serde_json::from_str::<serde_json::Value>(raw).ok().filter(serde_json::Value::is_object).ok_or_else(|| {
            OAuthError::invalid_request(
                codes::INVALID_REQUEST,
                r#"The claims parameter must be a JSON object, like {"access_token":{"xms_cc":{"values":["cp1"]}}}."#,
            )
        })?;
    Ok(value["access_token"]["xms_cc"]["values"].as_array().is_some_and(|values| {
        values.iter().any(|it| it.as_str().is_some_and(|text| text.eq_ignore_ascii_case(oauth::CAE_CAPABILITY)))
    }))
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
    amr: Amr,
    /// The sign-in log's `authenticationProtocol`: `none`, `ropc` or `deviceCode`.
    protocol: &'static str,
    /// The sign-in log's `incomingTokenType`: `none` or `refreshToken`.
    incoming_token: &'static str,
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
    /// The application's secrets and certificates, read with it (none for `keyward-cli`). Read
    /// on the authorize and device paths too, which do not use them: a `Client` without them
    /// would look public to `is_public_client`, and the read is one indexed statement.
    pub credentials: Vec<AppCredential>,
    /// The service principal's role assignments that apply now, read with it (the client
    /// credentials grant's `wids`).
    pub principal_roles: Vec<keyward_store::RoleAssignment>,
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
            credentials: Vec::new(),
            principal_roles: Vec::new(),
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
    /// The single-valued parameters the request sent more than once, in the order they came:
    /// refused (RFC 6749 §3.1), on a page when one is `client_id` or `redirect_uri`, otherwise
    /// sent back to the client.
    pub repeated: Vec<String>,
}

impl AuthorizeRequest {
    fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str).filter(|it| !it.is_empty())
    }
}

pub use keyward_core::authorize::ResponseMode;

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

fn scope_string(scopes: &Scopes) -> String {
    scopes.stored()
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

/// A registered application as a client, or `None` when its service principal is gone or
/// disabled: that signs nobody in (Entra's way to block an application in a tenant).
fn registered_client(found: keyward_store::ClientRecord) -> Option<Client> {
    if !found.service_principal.as_ref().is_some_and(|it| it.account_enabled) {
        return None;
    }
    client_of(found)
}

/// A registered application with a service principal as a client, the principal enabled or not:
/// only to name an attempt in the sign-in log ([`App::logged_client`]), never to act as it.
fn client_of(found: keyward_store::ClientRecord) -> Option<Client> {
    let keyward_store::ClientRecord { application: app, service_principal, credentials, principal_roles } = found;
    let principal = service_principal?;
    Some(Client {
        credentials,
        principal_roles,
        service_principal: Some(principal),
        client_id: app.app_id.clone(),
        display_name: app.display_name.clone(),
        public_redirect_uris: app.public_redirect_uris.clone(),
        web_redirect_uris: app.web_redirect_uris.clone(),
        is_fallback_public: app.is_fallback_public_client,
        application: Some(app),
    })
}

/// Entra's AADSTS65001 text.
fn not_consented(client: &Client) -> String {
    format!(
        "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an \
         interactive authorization request for this user and resource.",
        client.client_id, client.display_name
    )
}

/// The path and query without the parameter `name`.
fn strip_param(path_and_query: &str, name: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else { return path_and_query.to_owned() };
    // Names compared decoded, as the parameters are read (`kw%5Fafter` is `kw_after`).
    let named = |pair: &str| form_urlencoded::parse(pair.as_bytes()).next().is_some_and(|(it, _)| it == name);
    let kept: Vec<&str> = query.split('&').filter(|it| !named(it)).collect();
    if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
}

impl App {
    /// The tenant named by an id or verified domain, or Entra's `invalid_tenant` error.
    pub(super) async fn oauth_tenant(&self, key: &str) -> Result<Tenant, OAuthError> {
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
        // One snapshot, on the request's thread on SQLite, kept by this node while the version of
        // the tenant's clients stays the same (`Store::find_client`).
        let found = self.inner.store.find_client(&tenant.id, client_id, self.now()).await?;
        Ok(found.and_then(registered_client))
    }

    /// The client a failed token request named, for its sign-in log entry: a registered
    /// application whose principal may be disabled (Entra logs those attempts, AADSTS7000112).
    pub(super) async fn logged_client(&self, tenant: &Tenant, client_id: &str) -> Result<Option<Client>, AppError> {
        let found = self.inner.store.find_client(&tenant.id, client_id, self.now()).await?;
        Ok(found.and_then(client_of))
    }

    /// Why [`Self::client`] found no client, for the error: Entra's AADSTS7000112 when the
    /// application's service principal is disabled in this tenant, AADSTS700016 otherwise. Read
    /// only on that error path.
    pub(super) async fn missing_client(&self, tenant: &Tenant, client_id: &str) -> Result<(i64, String), AppError> {
        let mut tx = self.read_short().await?;
        let disabled = tx.find_service_principal(&tenant.id, client_id).await?.filter(|it| !it.account_enabled);
        Ok(match disabled {
            Some(principal) => {
                (codes::CLIENT_DISABLED, format!("Application '{client_id}'({}) is disabled.", principal.display_name))
            }
            None => (
                codes::UNKNOWN_CLIENT,
                format!("Application with identifier '{client_id}' was not found in the directory '{}'.", tenant.id),
            ),
        })
    }

    /// A registered application as this node keeps it, without reading the version of the
    /// tenant's clients, and the version it was read under (`Store::kept_client`): to act on
    /// only once a write transaction has found the version unchanged (`App::write_sign_in_under`).
    pub(super) async fn kept_client(
        &self,
        tenant: &Tenant,
        client_id: &str,
    ) -> Result<Option<(Client, i64)>, AppError> {
        let found = self.inner.store.kept_client(&tenant.id, client_id, self.now()).await?;
        Ok(found.and_then(|(record, version)| Some((registered_client(record)?, version))))
    }

    /// The `kw_after` marker: the time a sign-in was asked for, with a MAC binding it to the
    /// request it was made for (client, redirect URI, PKCE challenge, nonce and state), so that it
    /// cannot be carried over to another request.
    pub(super) fn after_marker(&self, at: i64, request: &AuthorizeRequest) -> Result<String, AppError> {
        let mac = self.inner.keys.sign_checkpoint(after_message(at, request).as_bytes())?;
        Ok(format!("{at}.{mac}"))
    }

    /// The time in a `kw_after` marker made for this very request, while it is at most as old as
    /// a sign-in may take (`MARKER_LIFETIME`): an old marker, or one made for another request,
    /// would let a later sign-in of anyone in this browser stand in for the fresh one
    /// `prompt=login` or `max_age` asks for.
    pub(super) fn parse_after_marker(&self, raw: &str, request: &AuthorizeRequest, now: i64) -> Option<i64> {
        let (at, mac) = raw.split_once('.')?;
        let at: i64 = at.parse().ok()?;
        let recent = at <= now && now - at <= MARKER_LIFETIME.whole_seconds();
        (recent && self.inner.keys.verify_checkpoint(after_message(at, request).as_bytes(), mac) == Some(true))
            .then_some(at)
    }

    /// Parses a stored grant's scope, as the token endpoint reports a bad one.
    pub(super) fn scopes_of(&self, scope: &str) -> Result<Scopes, OAuthError> {
        oauth::parse_scope(scope, &self.inner.config.public_url)
            .map_err(|err| OAuthError::new(400, "invalid_scope", codes::INVALID_SCOPE, err.0))
    }

    /// Parses a scope a client sent (`.default` alone or permissions by name), as the token
    /// endpoint reports a bad one.
    pub(super) fn requested_scopes_of(&self, scope: &str) -> Result<Scopes, OAuthError> {
        oauth::parse_requested_scope(scope, &self.inner.config.public_url)
            .map_err(|err| OAuthError::new(400, "invalid_scope", codes::INVALID_SCOPE, err.0))
    }

    /// Whether a client may use the token endpoint without a credential: the first-party client,
    /// an application marked `isFallbackPublicClient`, or one without credentials.
    pub(super) fn is_public_client(&self, client: &Client) -> bool {
        client.application.is_none() || client.is_fallback_public || client.credentials.is_empty()
    }
}

/// How long a `kw_after` marker counts: a sign-in page's own lifetime.
const MARKER_LIFETIME: time::Duration = time::Duration::minutes(30);

/// What a `kw_after` marker's MAC covers: its time and the parameters that make the request its own.
fn after_message(at: i64, request: &AuthorizeRequest) -> String {
    let part = |name: &str| request.get(name).unwrap_or_default().replace('\n', " ");
    format!(
        "keyward authorize after v2:{at}\n{}\n{}\n{}\n{}\n{}",
        part("client_id"),
        part("redirect_uri"),
        part("code_challenge"),
        part("nonce"),
        part("state")
    )
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
        assert_eq!(strip_param("/t/x?kw%5Fafter=5&kw_after=6&kw_afterx=7", "kw_after"), "/t/x?kw_afterx=7");
        assert_eq!(url_encode("/a?b=c&d"), "%2Fa%3Fb%3Dc%26d");
    }
}
