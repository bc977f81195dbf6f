//! `/{tenant}/oauth2/v2.0/authorize` and its consent step.

use super::{Peer, redirect, server_error, session_cookie};
use crate::AppState;
use crate::pages::{esc, form, html_response, meta, page};
use axum::Form;
use axum::extract::{Path, Query as RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use keyward_app::{AppError, AuthorizeOutcome, AuthorizeRequest, ResponseMode, url_encode};
use std::collections::HashMap;

/// `GET /{tenant}/oauth2/v2.0/authorize`.
pub(super) async fn authorize(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path_and_query = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |it| it.as_str().to_owned());
    run_authorize(&state, &tenant, params, path_and_query, &headers).await
}

/// `POST /{tenant}/oauth2/v2.0/authorize` (form-encoded parameters, OIDC Core §3.1.2.1).
pub(super) async fn authorize_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect();
    let path_and_query = format!("/{tenant}/oauth2/v2.0/authorize?{}", query.join("&"));
    run_authorize(&state, &tenant, params, path_and_query, &headers).await
}

async fn run_authorize(
    state: &AppState,
    tenant: &str,
    params: HashMap<String, String>,
    path_and_query: String,
    headers: &HeaderMap,
) -> Response {
    let request = AuthorizeRequest { params, path_and_query };
    match state.app.authorize(tenant, &request, session_cookie(state, headers)).await {
        Ok(AuthorizeOutcome::ErrorPage(message)) => html_response(
            StatusCode::BAD_REQUEST,
            &page(
                "Sorry, but we're having trouble signing you in",
                &format!(
                    "<p class=\"error\" role=\"alert\">{}</p><p>Tell the application's owner; the request cannot be sent back to it.</p>",
                    esc(&message)
                ),
            ),
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
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &page("Sign in", "<p class=\"error\">Something went wrong on our side. Try again in a moment.</p>"),
            )
        }
    }
}

/// The consent page: what the application asks for, and Accept / Cancel.
fn consent_page(tenant: &str, csrf: &str, request: &keyward_app::ConsentRequest) -> Response {
    let action = format!("/{tenant}/oauth2/v2.0/consent");
    let items: String = request
        .permissions
        .iter()
        .map(|(name, text)| format!("<li><strong>{}</strong> <code>{}</code></li>", esc(text), esc(name)))
        .collect();
    let names: Vec<&str> = request.permissions.iter().map(|(name, _)| name.as_str()).collect();
    let hidden = |decision: &str| {
        format!(
            "<input type=\"hidden\" name=\"client_id\" value=\"{}\"><input type=\"hidden\" name=\"permissions\" \
             value=\"{}\"><input type=\"hidden\" name=\"return_to\" value=\"{}\"><input type=\"hidden\" \
             name=\"token\" value=\"{}\"><input type=\"hidden\" name=\"decision\" value=\"{decision}\">",
            esc(&request.client_id),
            esc(&names.join(" ")),
            esc(&request.return_to),
            esc(&request.token)
        )
    };
    let organization = if request.may_consent_for_organization {
        "<p><input type=\"checkbox\" id=\"for_organization\" name=\"for_organization\" value=\"true\"> \
         <label for=\"for_organization\">Consent on behalf of your organization</label></p>"
    } else {
        ""
    };
    html_response(
        StatusCode::OK,
        &page(
            "Permissions requested",
            &format!(
                "<p><strong>{}</strong> (application id <code>{}</code>) wants to:</p><ul id=\"permissions\">{items}</ul>\
                 <p>Accept only if you trust this application. An administrator can remove its access later.</p>{}{}",
                esc(&request.client_name),
                esc(&request.client_id),
                form(&action, csrf, "consent", &format!("{}{organization}", hidden("accept")), "Accept"),
                form(&action, csrf, "consent", &hidden("cancel"), "Cancel"),
            ),
        ),
    )
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
    if !keyward_core::totp::constant_time_eq(csrf.as_bytes(), field("csrf").as_bytes()) {
        return html_response(
            StatusCode::BAD_REQUEST,
            &page(
                "Permissions requested",
                "<p class=\"error\">This form did not come from this page. Go back to the application and sign in again.</p>",
            ),
        );
    }
    let return_to = field("return_to");
    if !return_to.starts_with('/') || return_to.starts_with("//") || !return_to.contains("/oauth2/v2.0/authorize?") {
        return html_response(
            StatusCode::BAD_REQUEST,
            &page("Permissions requested", "<p class=\"error\">The consent request is invalid.</p>"),
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
        Err(err @ (AppError::BadRequest(_) | AppError::Forbidden { .. } | AppError::NotFound(_))) => html_response(
            StatusCode::BAD_REQUEST,
            &page("Permissions requested", &format!("<p class=\"error\" role=\"alert\">{}</p>", esc(&err.to_string()))),
        ),
        Err(err) => server_error(err),
    }
}

/// The `form_post` response mode: a form that posts itself (one inline script, allowed by its
/// hash), with a button for browsers without JavaScript.
fn form_post(redirect_uri: &str, params: &[(String, String)]) -> Response {
    const SCRIPT: &str = "document.forms[0].submit()";
    /// SHA-256 of `SCRIPT`, base64 (the Content-Security-Policy allows exactly this script).
    const SCRIPT_HASH: &str = "ePniVEkSivX/c7XWBGafqh8tSpiRrKiqYeqbG7N1TOE=";
    let inputs: String = params
        .iter()
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(name), esc(value)))
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Working…</title></head><body>\
         <form method=\"post\" action=\"{}\">{inputs}<noscript><p>Your browser runs no scripts: continue by hand.</p>\
         <button type=\"submit\">Continue</button></noscript></form><script>{SCRIPT}</script></body></html>",
        esc(redirect_uri)
    );
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'sha256-{SCRIPT_HASH}'; form-action *; frame-ancestors 'none'"
    )) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}
