//! `/{tenant}/devicelogin`: the device-code verification page.

use super::{redirect, server_error, session_cookie};
use crate::AppState;
use crate::pages::{esc, form, html_response, meta, page};
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
        return html_response(StatusCode::NOT_FOUND, &page("Enter code", "<p class=\"error\">No such tenant.</p>"));
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
    html_response(StatusCode::OK, &code_page(&action, &csrf, code, None))
}

/// Sends the browser to sign in, and back to the device-code page (`tenant` is a tenant id).
fn sign_in_first(tenant: &str) -> Response {
    // A fresh sign-in (`prompt=login`): the session may count but lack the MFA the user now needs.
    redirect(&format!("/{tenant}/login?prompt=login&return_to={}", url_encode(&format!("/{tenant}/devicelogin"))))
}

fn code_page(action: &str, csrf: &str, code: &str, error: Option<&str>) -> String {
    let error = error.map(|it| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(it))).unwrap_or_default();
    page(
        "Enter code",
        &format!(
            "<p>Enter the code displayed on your app or device.</p>{error}{}",
            form(
                action,
                csrf,
                "device_code",
                &format!(
                    "<label for=\"user_code\">Code</label><input type=\"text\" id=\"user_code\" name=\"user_code\" \
                     autocomplete=\"off\" autocapitalize=\"characters\" value=\"{}\" required autofocus>",
                    esc(code)
                ),
                "Next"
            )
        ),
    )
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
        return html_response(StatusCode::NOT_FOUND, &page("Enter code", "<p class=\"error\">No such tenant.</p>"));
    };
    let tenant = tenant_row.id.to_string();
    let Some(cookie) = session_cookie(&state, &headers).map(str::to_owned) else {
        return sign_in_first(&tenant);
    };
    let csrf = keyward_app::csrf_token(&cookie);
    let presented = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !keyward_core::totp::constant_time_eq(csrf.as_bytes(), presented.as_bytes()) {
        return html_response(
            StatusCode::BAD_REQUEST,
            &page(
                "Enter code",
                "<p class=\"error\">This form did not come from this page. Reload it and try again.</p>",
            ),
        );
    }
    let action = format!("/{tenant}/devicelogin");
    let code = fields.get("user_code").map(String::as_str).unwrap_or("").trim().to_owned();
    match fields.get("step").map(String::as_str) {
        Some("device_code") => match state.app.device_code_client(&tenant, &cookie, &code).await {
            Ok(Some((client, permissions))) => html_response(
                StatusCode::OK,
                &page(
                    "Are you trying to sign in?",
                    &format!(
                        "<p>{} wants to sign you in. Only continue if you started this on a device you trust and the code came from it.</p>{}{}{}",
                        esc(&client),
                        if permissions.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "<p>Continuing also lets it:</p><ul id=\"permissions\">{}</ul>",
                                permissions
                                    .iter()
                                    .map(|(name, text)| format!(
                                        "<li><strong>{}</strong> <code>{}</code></li>",
                                        esc(text),
                                        esc(name)
                                    ))
                                    .collect::<String>()
                            )
                        },
                        form(
                            &action,
                            &csrf,
                            "device_confirm",
                            &format!(
                                "<input type=\"hidden\" name=\"user_code\" value=\"{}\"><input type=\"hidden\" name=\"decision\" value=\"approve\">",
                                esc(&code)
                            ),
                            "Continue"
                        ),
                        form(
                            &action,
                            &csrf,
                            "device_confirm",
                            &format!(
                                "<input type=\"hidden\" name=\"user_code\" value=\"{}\"><input type=\"hidden\" name=\"decision\" value=\"deny\">",
                                esc(&code)
                            ),
                            "Cancel"
                        ),
                    ),
                ),
            ),
            Ok(None) => html_response(
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
                html_response(StatusCode::OK, &code_page(&action, &csrf, &code, Some(&message)))
            }
            Err(AppError::Unauthenticated(_)) => sign_in_first(&tenant),
            Err(err) => server_error(err),
        },
        Some("device_confirm") => {
            let approve = fields.get("decision").map(String::as_str) == Some("approve");
            match state.app.approve_device_code(&tenant, &cookie, &code, approve, meta(&headers, None)).await {
                Ok(client) if approve => html_response(
                    StatusCode::OK,
                    &page(
                        "You're signed in",
                        &format!(
                            "<p id=\"device-done\">You have signed in to {} on your device. You may now close this window.</p>",
                            esc(&client)
                        ),
                    ),
                ),
                Ok(_) => html_response(
                    StatusCode::OK,
                    &page(
                        "Sign-in cancelled",
                        "<p id=\"device-done\">You declined the sign-in. You may close this window.</p>",
                    ),
                ),
                Err(AppError::BadRequest(message)) => {
                    html_response(StatusCode::OK, &code_page(&action, &csrf, &code, Some(&message)))
                }
                Err(AppError::Unauthenticated(_)) => sign_in_first(&tenant),
                Err(err) => server_error(err),
            }
        }
        _ => html_response(StatusCode::OK, &code_page(&action, &csrf, &code, None)),
    }
}
