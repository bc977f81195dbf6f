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
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keyward_app::{AppError, OAuthError};
use serde_json::json;
use std::net::SocketAddr;

pub(crate) type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

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

/// The provider's routes, relative to the root.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery::discovery))
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::jwks))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize::authorize).post(authorize::authorize_post))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(token::devicecode))
        .route("/{tenant}/oauth2/v2.0/logout", get(session::logout).post(session::logout_post))
        .route("/{tenant}/oauth2/v2.0/revoke", post(token::revoke))
        .route("/{tenant}/oauth2/v2.0/consent", post(authorize::consent_post))
        .route("/{tenant}/devicelogin", get(device::devicelogin).post(device::devicelogin_post))
        .route("/oidc/userinfo", get(session::userinfo).post(session::userinfo))
}
