//! `/{tenant}/devicelogin`: the device-code verification page.

use askama::Template;

use super::{redirect, server_error, session_cookie};
use crate::AppState;
use crate::pages::{Message, Tone, html, meta};
use axum::Form;
use axum::extract::{Path, Query as RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keyward_app::{AppError, url_encode};
use std::collections::HashMap;

/// `GET /{tenant}/devicelogin`: the device-code verification page (needs a signed-in session).
pub(super) async fn devicelogin(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(params): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // Locations are built from the tenant's id, never from the path as given (a percent-encoded
    // `/` or `\` in it would make `//evil.example` of them).
    let Ok(Some(tenant_row)) = state.app.find_tenant(&tenant).await else {
        return html(StatusCode::NOT_FOUND, &Message::error("Enter code", "No such tenant."));
    };
    let tenant = tenant_row.id.to_string();
    let Some(cookie) = session_cookie(&state, &headers).map(str::to_owned) else {
        return sign_in_first(&tenant);
    };
    match state.app.signed_in(&tenant_row, &cookie).await {
        Ok(true) => (),
        Ok(false) => return sign_in_first(&tenant),
        Err(err) => return server_error(err),
    }
    let csrf = keyward_app::csrf_token(&cookie);
    let action = format!("/{tenant}/devicelogin");
    let code = params.get("user_code").map(String::as_str).unwrap_or("");
    html(StatusCode::OK, &code_page(&action, &csrf, code, None))
}

/// Sends the browser to sign in, and back to the device-code page (`tenant` is a tenant id).
fn sign_in_first(tenant: &str) -> Response {
    // A fresh sign-in (`prompt=login`): the session may count but lack the MFA the user now needs.
    redirect(&format!("/{tenant}/login?prompt=login&return_to={}", url_encode(&format!("/{tenant}/devicelogin"))))
}

/// The code-entry page (`templates/device_code.html`).
#[derive(Debug, Template)]
#[template(path = "device_code.html")]
struct CodePage<'a> {
    title: &'static str,
    action: &'a str,
    csrf: &'a str,
    code: &'a str,
    error: Option<&'a str>,
}

fn code_page<'a>(action: &'a str, csrf: &'a str, code: &'a str, error: Option<&'a str>) -> CodePage<'a> {
    CodePage { title: "Enter code", action, csrf, code, error }
}

/// The confirmation page (`templates/device_confirm.html`): which application, what it may do.
#[derive(Debug, Template)]
#[template(path = "device_confirm.html")]
struct ConfirmPage<'a> {
    title: &'static str,
    action: &'a str,
    csrf: &'a str,
    code: &'a str,
    client: &'a str,
    permissions: &'a [(String, &'static str)],
}

/// `POST /{tenant}/devicelogin`: `step=device_code` shows the confirmation; `step=device_confirm`
/// (with `decision=approve|deny`) records it.
pub(super) async fn devicelogin_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let Ok(Some(tenant_row)) = state.app.find_tenant(&tenant).await else {
        return html(StatusCode::NOT_FOUND, &Message::error("Enter code", "No such tenant."));
    };
    let tenant = tenant_row.id.to_string();
    let Some(cookie) = session_cookie(&state, &headers).map(str::to_owned) else {
        return sign_in_first(&tenant);
    };
    let csrf = keyward_app::csrf_token(&cookie);
    let presented = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !keyward_core::secret::constant_time_eq(csrf.as_bytes(), presented.as_bytes()) {
        return html(
            StatusCode::BAD_REQUEST,
            &Message::error("Enter code", "This form did not come from this page. Reload it and try again."),
        );
    }
    let action = format!("/{tenant}/devicelogin");
    let code = fields.get("user_code").map(String::as_str).unwrap_or("").trim().to_owned();
    match fields.get("step").map(String::as_str) {
        Some("device_code") => match state.app.device_code_client(&tenant, &cookie, &code).await {
            Ok(Some((client, permissions))) => html(
                StatusCode::OK,
                &ConfirmPage {
                    title: "Are you trying to sign in?",
                    action: &action,
                    csrf: &csrf,
                    code: &code,
                    client: &client,
                    permissions: &permissions,
                },
            ),
            Ok(None) => html(
                StatusCode::OK,
                &code_page(
                    &action,
                    &csrf,
                    &code,
                    Some(
                        "That code is not valid or has expired. Check the code on your device, or start the sign-in there again.",
                    ),
                ),
            ),
            Err(AppError::BadRequest(message)) => {
                html(StatusCode::OK, &code_page(&action, &csrf, &code, Some(&message)))
            }
            Err(AppError::Unauthenticated(_)) => sign_in_first(&tenant),
            Err(err) => server_error(err),
        },
        Some("device_confirm") => {
            let approve = fields.get("decision").map(String::as_str) == Some("approve");
            match state.app.approve_device_code(&tenant, &cookie, &code, approve, meta(&headers, None)).await {
                Ok(client) if approve => {
                    let text = format!("You have signed in to {client} on your device. You may now close this window.");
                    html(StatusCode::OK, &Message::new(Tone::Done, "You're signed in", &text))
                }
                Ok(_) => html(
                    StatusCode::OK,
                    &Message::new(
                        Tone::Done,
                        "Sign-in cancelled",
                        "You declined the sign-in. You may close this window.",
                    ),
                ),
                Err(AppError::BadRequest(message)) => {
                    html(StatusCode::OK, &code_page(&action, &csrf, &code, Some(&message)))
                }
                Err(AppError::Unauthenticated(_)) => sign_in_first(&tenant),
                Err(err) => server_error(err),
            }
        }
        _ => html(StatusCode::OK, &code_page(&action, &csrf, &code, None)),
    }
}
