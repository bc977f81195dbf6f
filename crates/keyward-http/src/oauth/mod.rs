//! The OpenID Connect provider's endpoints (Entra-shaped paths, listed in `docs/guide/oidc.md`):
//! discovery and keys, authorize and consent, token, device authorization and its verification
//! page, userinfo, logout, revocation.

mod authorize;
mod device;
mod discovery;
mod session;
mod token;

use crate::AppState;
use crate::pages::{cookie_names, read_cookie};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keyward_app::{AppError, OAuthError};
use serde_json::json;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;

pub(crate) type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// An OAuth request's parameters, from its query or its form body. RFC 6749 §3.1: a parameter
/// sent without a value counts as not sent, and none may be sent more than once; the
/// single-valued parameters (`oauth::SINGLE_VALUED`) sent twice with values are kept in
/// `repeated`, in the order they came, for the endpoint to refuse. Any other parameter keeps
/// its first value.
#[derive(Default)]
pub(crate) struct OAuthParams {
    pub(crate) map: HashMap<String, String>,
    pub(crate) repeated: Vec<String>,
}

/// The names only: the values hold secrets (`client_secret`, `password`, codes, tokens).
impl std::fmt::Debug for OAuthParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthParams")
            .field("names", &self.map.keys().collect::<Vec<_>>())
            .field("repeated", &self.repeated)
            .finish()
    }
}

impl OAuthParams {
    /// Reads `application/x-www-form-urlencoded` text (a query or a body), keeping each
    /// parameter's first value.
    pub(crate) fn parse(input: &[u8]) -> OAuthParams {
        let mut params = OAuthParams::default();
        for (name, value) in form_urlencoded::parse(input) {
            match params.map.entry(name.into_owned()) {
                Entry::Vacant(entry) => {
                    entry.insert(value.into_owned());
                }
                Entry::Occupied(mut entry) if entry.get().is_empty() => {
                    entry.insert(value.into_owned());
                }
                Entry::Occupied(entry) => {
                    let name = entry.key();
                    if !value.is_empty()
                        && keyward_core::oauth::SINGLE_VALUED.contains(&name.as_str())
                        && !params.repeated.contains(name)
                    {
                        params.repeated.push(name.clone());
                    }
                }
            }
        }
        params
    }
}

/// A form body's parameters. A body not declared `application/x-www-form-urlencoded` (JSON,
/// say) carries none, as at Entra, whose answer then names the first parameter it misses
/// (AADSTS900144) in the endpoint's own error form.
impl<S: Send + Sync> FromRequest<S> for OAuthParams {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<OAuthParams, Response> {
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|it| it.to_str().ok())
            .and_then(|it| it.split(';').next())
            .is_some_and(|it| it.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !is_form {
            return Ok(OAuthParams::default());
        }
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        Ok(OAuthParams::parse(&body))
    }
}

pub(crate) fn unknown_tenant(key: &str) -> OAuthError {
    OAuthError {
        status: 400,
        error: "invalid_tenant",
        description: format!("AADSTS90002: Tenant '{key}' not found. Check the tenant id or domain name."),
        codes: vec![90002],
        retry_after: None,
    }
}

pub(crate) fn server_error(err: AppError) -> Response {
    if matches!(err, AppError::TooManyRequests { .. } | AppError::Overloaded { .. }) {
        return oauth_error(&OAuthError::from(err));
    }
    tracing::error!(error = ?err, "OpenID Connect endpoint failed");
    oauth_error(&OAuthError {
        status: 500,
        error: "server_error",
        description: "The server failed; try again.".into(),
        codes: Vec::new(),
        retry_after: None,
    })
}

/// An error in RFC 6749 form with Entra's extra fields.
pub(crate) fn oauth_error(err: &OAuthError) -> Response {
    oauth_error_in(err, &uuid::Uuid::new_v4().to_string())
}

/// The same, with the request's `correlation_id`: the client's `client-request-id` when it sent
/// one, the id its sign-in log entry carries too.
pub(crate) fn oauth_error_in(err: &OAuthError, correlation_id: &str) -> Response {
    let now = time::OffsetDateTime::now_utc();
    let timestamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let trace = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "error": err.error,
        "error_description": err.description,
        "error_codes": err.codes,
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation_id,
    });
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if err.status == 401 {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"keyward\""));
    }
    if let Some(seconds) = err.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub(crate) fn session_cookie<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    read_cookie(headers, cookie_names(state).0)
}

pub(crate) fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The provider's routes a browser visits (discovery and keys too), relative to the root, whose
/// errors are pages or text.
pub fn browser_routes() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery::discovery))
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::jwks))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize::authorize).post(authorize::authorize_post))
        .route("/{tenant}/oauth2/v2.0/logout", get(session::logout).post(session::logout_post))
        .route("/{tenant}/oauth2/v2.0/consent", post(authorize::consent_post))
        .route("/{tenant}/devicelogin", get(device::devicelogin).post(device::devicelogin_post))
}

/// The provider's routes an application calls, relative to the root, whose errors are RFC 6749's
/// JSON with Entra's fields.
pub fn client_routes() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(token::devicecode))
        .route("/{tenant}/oauth2/v2.0/revoke", post(token::revoke))
        .route("/oidc/userinfo", get(session::userinfo).post(session::userinfo))
}

#[cfg(test)]
mod tests {
    use super::OAuthParams;

    #[test]
    fn a_parameter_sent_twice_is_named_and_its_first_value_kept() {
        let params = OAuthParams::parse(b"grant_type=a&scope=x&grant%5Ftype=b&scope=y&grant_type=c");
        assert_eq!(params.map["grant_type"], "a");
        assert_eq!(params.repeated, ["grant_type", "scope"], "names compared decoded, each named once, in order");
        let params = OAuthParams::parse(b"a=1&b=2&c=%20+3");
        assert_eq!(params.map["c"], "  3");
        assert!(params.repeated.is_empty());
    }

    #[test]
    fn only_single_valued_parameters_count_as_repeated() {
        // RFC 8707's `resource` may repeat; a parameter no endpoint reads is ignored.
        let params = OAuthParams::parse(b"resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb&x-extra=1&x-extra=2&=a&=b");
        assert!(params.repeated.is_empty(), "{params:?}");
        assert_eq!(params.map["resource"], "https://a");
    }

    #[test]
    fn a_parameter_without_a_value_counts_as_not_sent() {
        for input in [&b"scope=&scope=x"[..], b"scope=x&scope=", b"scope&scope=x&&"] {
            let params = OAuthParams::parse(input);
            assert_eq!(params.map["scope"], "x", "{input:?}");
            assert!(params.repeated.is_empty(), "{input:?}");
        }
        let params = OAuthParams::parse(b"state=&state=");
        assert_eq!(params.map["state"], "");
        assert!(params.repeated.is_empty());
    }

    #[test]
    fn the_debug_form_shows_no_values() {
        let params = OAuthParams::parse(b"client_secret=hunter2&client_secret=hunter3");
        let shown = format!("{params:?}");
        assert!(shown.contains("client_secret") && !shown.contains("hunter"), "{shown}");
    }
}
