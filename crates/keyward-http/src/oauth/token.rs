//! `/{tenant}/oauth2/v2.0/token`, `devicecode` and `revoke`.

use super::{OAuthParams, Peer, oauth_error};
use crate::AppState;
use crate::pages::meta;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use keyward_app::{ClientAuth, OAuthError, Surface};
use keyward_core::secret::Secret;

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: form-urlencoded id and secret).
fn basic_auth(headers: &HeaderMap) -> Result<ClientAuth, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|it| it.to_str().ok()) else {
        return Ok(ClientAuth::default());
    };
    let Some((scheme, encoded)) = value.split_once(' ') else { return Ok(ClientAuth::default()) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(ClientAuth::default());
    }
    let bad = || OAuthError {
        status: 401,
        error: "invalid_client",
        description: "AADSTS7000215: The Authorization header is not valid Basic credentials.".into(),
        codes: vec![7_000_215],
        retry_after: None,
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let decode = |it: &str| {
        form_urlencoded::parse(format!("x={it}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Ok(ClientAuth { client_id: Some(decode(id)), secret: Some(Secret::new(decode(secret))) })
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(super) async fn token(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    params: OAuthParams,
) -> Response {
    let auth = match basic_auth(&headers) {
        Ok(it) => it,
        Err(err) => return oauth_error(&err),
    };
    if let Some(name) = params.repeated.first() {
        return oauth_error(&OAuthError::repeated(name));
    }
    let meta = meta(&headers, peer.map(|it| it.0.0));
    if let Err(err) = state.app.throttle(Surface::Token, meta.ip_address.as_deref(), None) {
        return oauth_error(&OAuthError::from(err));
    }
    match state.app.token(&tenant, &params.map, auth, &meta).await {
        Ok(response) => {
            let mut response = Json(response).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(err) => super::oauth_error_in(&err, &meta.correlation_id),
    }
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub(super) async fn devicecode(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Peer,
    params: OAuthParams,
) -> Response {
    if let Some(name) = params.repeated.first() {
        return oauth_error(&OAuthError::repeated(name));
    }
    let address = peer.map(|it| it.0.0.ip().to_string());
    if let Err(err) = state.app.throttle(Surface::DeviceCode, address.as_deref(), None) {
        return oauth_error(&OAuthError::from(err));
    }
    match state.app.device_authorization(&tenant, &params.map).await {
        Ok(response) => Json(response).into_response(),
        Err(err) => oauth_error(&err),
    }
}

/// `POST /{tenant}/oauth2/v2.0/revoke` (RFC 7009): 200 for any token once the client is known
/// (and authenticated, if confidential); an unknown or foreign token changes nothing.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Response {
    let auth = match basic_auth(&headers) {
        Ok(it) => it,
        Err(err) => return oauth_error(&err),
    };
    if let Some(name) = params.repeated.first() {
        return oauth_error(&OAuthError::repeated(name));
    }
    match state.app.revoke_token(&tenant, &params.map, auth).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => oauth_error(&err),
    }
}
