//! `/{tenant}/oauth2/v2.0/authorize` and its consent step.

use super::{OAuthParams, Peer, redirect, server_error, session_cookie};
use crate::AppState;
use crate::pages::{Message, html, meta};
use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use keyward_app::{AppError, AuthorizeOutcome, AuthorizeRequest, ResponseMode, url_encode};
use std::collections::HashMap;

/// `GET /{tenant}/oauth2/v2.0/authorize`.
pub(super) async fn authorize(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let params = OAuthParams::parse(uri.query().unwrap_or("").as_bytes());
    let path_and_query = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |it| it.as_str().to_owned());
    run_authorize(&state, &tenant, params, path_and_query, &headers).await
}

/// `POST /{tenant}/oauth2/v2.0/authorize` (form-encoded parameters, OIDC Core §3.1.2.1).
pub(super) async fn authorize_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Response {
    let query: Vec<String> = params.map.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect();
    let path_and_query = format!("/{tenant}/oauth2/v2.0/authorize?{}", query.join("&"));
    run_authorize(&state, &tenant, params, path_and_query, &headers).await
}

async fn run_authorize(
    state: &AppState,
    tenant: &str,
    params: OAuthParams,
    path_and_query: String,
    headers: &HeaderMap,
) -> Response {
    let request = AuthorizeRequest { params: params.map, path_and_query, repeated: params.repeated };
    match state.app.authorize(tenant, &request, session_cookie(state, headers)).await {
        Ok(AuthorizeOutcome::ErrorPage(message)) => html(
            StatusCode::BAD_REQUEST,
            &Message::alert("Sorry, but we're having trouble signing you in", &message)
                .with_hint("Tell the application's owner; the request cannot be sent back to it."),
        ),
        Ok(AuthorizeOutcome::SignIn { location }) => redirect(&location),
        Ok(AuthorizeOutcome::Consent(request)) => {
            let csrf = session_cookie(state, headers).map(keyward_app::csrf_token).unwrap_or_default();
            consent_page(tenant, &csrf, &request)
        }
        Ok(AuthorizeOutcome::Respond { redirect_uri, mode: ResponseMode::Query, params }) => {
            let query: Vec<String> =
                params.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect();
            let separator = if redirect_uri.contains('?') { '&' } else { '?' };
            redirect(&format!("{redirect_uri}{separator}{}", query.join("&")))
        }
        Ok(AuthorizeOutcome::Respond { redirect_uri, mode: ResponseMode::FormPost, params }) => {
            form_post(&redirect_uri, &params)
        }
        Err(err) => {
            tracing::error!(error = ?err, "authorize failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Message::error("Sign in", "Something went wrong on our side. Try again in a moment."),
            )
        }
    }
}

/// The consent page (`templates/consent.html`): what the application asks for, and Accept /
/// Cancel.
#[derive(Debug, Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    title: &'static str,
    action: String,
    csrf: &'a str,
    request: &'a keyward_app::ConsentRequest,
    /// The permissions' names, space-separated, as the answer carries them.
    permissions: String,
}

fn consent_page(tenant: &str, csrf: &str, request: &keyward_app::ConsentRequest) -> Response {
    let names: Vec<&str> = request.permissions.iter().map(|(name, _)| name.as_str()).collect();
    let page = ConsentPage {
        title: "Permissions requested",
        action: format!("/{tenant}/oauth2/v2.0/consent"),
        csrf,
        request,
        permissions: names.join(" "),
    };
    html(StatusCode::OK, &page)
}

/// `POST /{tenant}/oauth2/v2.0/consent`: the consent page's answer; back to the authorization
/// request (which then issues the code, or answers `access_denied` after Cancel).
pub(super) async fn consent_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let Some(cookie) = session_cookie(&state, &headers).map(str::to_owned) else {
        return redirect(&format!("/{tenant}/login"));
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let csrf = keyward_app::csrf_token(&cookie);
    if !keyward_core::secret::constant_time_eq(csrf.as_bytes(), field("csrf").as_bytes()) {
        return html(
            StatusCode::BAD_REQUEST,
            &Message::error(
                "Permissions requested",
                "This form did not come from this page. Go back to the application and sign in again.",
            ),
        );
    }
    let return_to = field("return_to");
    if !return_to.starts_with('/') || return_to.starts_with("//") || !return_to.contains("/oauth2/v2.0/authorize?") {
        return html(
            StatusCode::BAD_REQUEST,
            &Message::error("Permissions requested", "The consent request is invalid."),
        );
    }
    let meta = meta(&headers, peer.map(|it| it.0.0));
    let answer = state
        .app
        .answer_consent(
            &tenant,
            &cookie,
            field("client_id"),
            field("permissions"),
            return_to,
            field("token"),
            field("decision") == "accept",
            field("for_organization") == "true",
            meta,
        )
        .await;
    match answer {
        Ok(location) => redirect(&location),
        Err(AppError::Unauthenticated(_)) => redirect(&format!("/{tenant}/login")),
        Err(err @ (AppError::BadRequest(_) | AppError::Forbidden { .. } | AppError::NotFound(_))) => {
            html(StatusCode::BAD_REQUEST, &Message::alert("Permissions requested", &err.to_string()))
        }
        Err(err) => server_error(err),
    }
}

/// The `form_post` response mode (`templates/form_post.html`): a form that posts itself (one
/// inline script, allowed by its hash), with a button for browsers without JavaScript.
#[derive(Debug, Template)]
#[template(path = "form_post.html")]
struct FormPost<'a> {
    redirect_uri: &'a str,
    params: &'a [(String, String)],
    script: &'static str,
}

/// The page's only script.
const FORM_POST_SCRIPT: &str = "document.forms[0].submit()";
/// SHA-256 of `FORM_POST_SCRIPT`, base64 (the Content-Security-Policy allows exactly this script).
const FORM_POST_SCRIPT_HASH: &str = "ePniVEkSivX/c7XWBGafqh8tSpiRrKiqYeqbG7N1TOE=";

fn form_post(redirect_uri: &str, params: &[(String, String)]) -> Response {
    let page = FormPost { redirect_uri, params, script: FORM_POST_SCRIPT };
    let mut response = html(StatusCode::OK, &page);
    // The post to the client carries its `Origin`, as before this page had a referrer policy.
    response.headers_mut().remove(header::REFERRER_POLICY);
    if let Ok(value) = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'sha256-{FORM_POST_SCRIPT_HASH}'; form-action *; frame-ancestors 'none'"
    )) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}
