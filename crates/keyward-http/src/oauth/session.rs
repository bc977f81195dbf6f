//! `/{tenant}/oauth2/v2.0/logout` and `/oidc/userinfo`.

use super::{OAuthParams, redirect, server_error, session_cookie};
use crate::AppState;
use crate::pages::{Message, Tone, cookie_names, html};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_app::{AppError, url_encode};
use serde_json::json;
use std::collections::HashMap;

/// `GET /{tenant}/oauth2/v2.0/logout`: ends the browser session; goes to
/// `post_logout_redirect_uri` only if it is registered for the client (`client_id` or the
/// `id_token_hint`'s audience).
pub(super) async fn logout(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let params = OAuthParams::parse(uri.query().unwrap_or("").as_bytes());
    run_logout(&state, &tenant, &params, &headers).await
}

pub(super) async fn logout_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Response {
    run_logout(&state, &tenant, &params, &headers).await
}

async fn run_logout(state: &AppState, tenant: &str, params: &OAuthParams, headers: &HeaderMap) -> Response {
    // A parameter sent twice (RFC 6749 §3.1) leaves no return address to trust: the session
    // still ends, and the answer is the signed-out page.
    let ambiguous = !params.repeated.is_empty();
    let params: &HashMap<String, String> = &params.map;
    // OpenID Connect RP-Initiated Logout §2: a `client_id` beside an `id_token_hint` must be the
    // token's audience; when they disagree, no client's return address is trusted.
    let hinted = params.get("id_token_hint").and_then(|it| state.app.id_token_audience(it));
    let client_id = match (params.get("client_id"), hinted) {
        (Some(named), Some(audience)) if !named.eq_ignore_ascii_case(&audience) => None,
        (Some(named), _) => Some(named.clone()),
        (None, audience) => audience,
    };
    // Without a target no client's address is looked at (`App::logout`).
    let target = params.get("post_logout_redirect_uri").map(String::as_str).filter(|_| !ambiguous);
    let result = state.app.logout(tenant, session_cookie(state, headers), client_id.as_deref(), target).await;
    let (session_name, _, secure) = cookie_names(state);
    let clear =
        format!("{session_name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}", if secure { "; Secure" } else { "" });
    let mut response = match result {
        Ok(Some(target)) => {
            let location = match params.get("state") {
                Some(value) => {
                    format!("{target}{}state={}", if target.contains('?') { '&' } else { '?' }, url_encode(value))
                }
                None => target,
            };
            redirect(&location)
        }
        Ok(None) => html(
            StatusCode::OK,
            &Message::new(
                Tone::Plain,
                "You signed out",
                "You signed out of your account. It's a good idea to close all browser windows.",
            ),
        ),
        Err(AppError::NotFound(_)) => html(StatusCode::NOT_FOUND, &Message::error("Sign out", "No such tenant.")),
        Err(err) => return server_error(err),
    };
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /oidc/userinfo` with a bearer token.
pub(super) async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|it| it.to_str().ok()).and_then(|it| {
        it.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, token)| token)
    });
    let meta = keyward_app::RequestMeta {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ip_address: None,
        user_agent: None,
    };
    match state.app.authenticate(bearer, meta).await {
        Ok(caller) => match caller.user() {
            Some(user) => {
                let mut claims = json!({
                    "sub": user.id.as_str(),
                    "oid": user.id.as_str(),
                    "tid": caller.tenant.id.as_str(),
                    "name": user.display_name,
                    "preferred_username": user.user_principal_name,
                    "email": user.mail,
                    "given_name": user.given_name,
                    "family_name": user.surname,
                });
                // OpenID Connect Core 5.3.2: a claim without a value is left out, not null.
                if let Some(fields) = claims.as_object_mut() {
                    fields.retain(|_, value| !value.is_null());
                }
                Json(claims).into_response()
            }
            None => bearer_error("invalid_token", "userinfo needs a token issued to a user"),
        },
        Err(_) => bearer_error("invalid_token", "The access token is missing, invalid or expired"),
    }
}

fn bearer_error(error: &str, description: &str) -> Response {
    let mut response =
        (StatusCode::UNAUTHORIZED, Json(json!({"error": error, "error_description": description}))).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer error=\"{error}\", error_description=\"{description}\""))
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
