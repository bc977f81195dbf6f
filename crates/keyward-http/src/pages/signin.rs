//! `/{tenant}/login`: the sign-in pages, the account page and its forms.

use askama::Template;

use super::{Message, cookie_names, html, meta, qr_svg, read_cookie};
use crate::AppState;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query as RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_app::{AppError, CreationOptions, PasskeyRequest, SignInForm, SignInPage, SignInView, Stage, Surface};
use keyward_core::secret::Secret;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;

pub(super) async fn page_get(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery<HashMap<String, String>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let (session_name, _, _) = cookie_names(&state);
    // `prompt=login` (from the authorization endpoint) starts a fresh sign-in even when a session
    // exists; the new session's cookie replaces the old one.
    let cookie =
        read_cookie(&headers, session_name).filter(|_| query.get("prompt").map(String::as_str) != Some("login"));
    let return_to = query.get("return_to").map(String::as_str);
    let meta = meta(&headers, peer.map(|it| it.0.0));
    if let Err(err) = state.app.throttle(Surface::SignInPages, meta.ip_address.as_deref(), None) {
        return respond(&state, &tenant, Err(err), None);
    }
    let result = state.app.sign_in_view(&tenant, cookie, return_to, meta).await;
    respond(&state, &tenant, result, query.get("login_hint").map(String::as_str))
}

pub(super) async fn page_post(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (session_name, device_name, _) = cookie_names(&state);
    let cookie = read_cookie(&headers, session_name);
    let device = read_cookie(&headers, device_name);
    let mut form = SignInForm::default();
    for (name, value) in fields {
        match name.as_str() {
            "step" => form.step = value,
            "csrf" => form.csrf = value,
            "username" => form.username = Some(value),
            "password" => form.password = Some(Secret::new(value)),
            "code" => form.code = Some(value),
            "remember" => form.remember = value == "on" || value == "true",
            "new_password" => form.new_password = Some(Secret::new(value)),
            "confirm_password" => form.confirm_password = Some(Secret::new(value)),
            "return_to" => form.return_to = Some(value),
            "method" => form.method = Some(value),
            "phone_type" => form.phone_type = Some(value),
            "value" => form.value = Some(value),
            "confirmed" => form.confirmed = value == "yes",
            "skip" => form.skip = value == "yes",
            "credential" => form.credential = Some(value),
            _ => (),
        }
    }
    let meta = meta(&headers, peer.map(|it| it.0.0));
    if let Err(err) = state.app.throttle(Surface::SignInPages, meta.ip_address.as_deref(), None) {
        return respond(&state, &tenant, Err(err), None);
    }
    let result = state.app.sign_in_submit(&tenant, cookie, device, form, meta).await;
    respond(&state, &tenant, result, None)
}

/// Turns a view into the response; `login_hint` (from the authorization request) fills the user
/// name field.
fn respond(state: &AppState, tenant: &str, result: Result<SignInView, AppError>, login_hint: Option<&str>) -> Response {
    let (session_name, device_name, secure) = cookie_names(state);
    let secure_attr = if secure { "; Secure" } else { "" };
    let view = match result {
        Ok(view) => view,
        Err(AppError::NotFound(_)) => {
            let text = format!("No tenant '{tenant}' exists here. Check the sign-in address.");
            return html(StatusCode::NOT_FOUND, &Message::error("Sign in", &text));
        }
        Err(AppError::BadRequest(message)) => {
            let start = format!("/{tenant}/login");
            return html(
                StatusCode::BAD_REQUEST,
                &Message::alert("Sign in", &message).with_link(&start, "Start again"),
            );
        }
        Err(err @ (AppError::TooManyRequests { retry_after } | AppError::Overloaded { retry_after })) => {
            let status = if matches!(err, AppError::TooManyRequests { .. }) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut response = html(status, &Message::alert("Sign in", &err.to_string()));
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
        Err(err) => {
            tracing::error!(error = ?err, "sign-in page failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Message::error(
                    "Sign in",
                    "Something went wrong on our side. Try again in a moment; if it keeps happening, tell your administrator.",
                ),
            );
        }
    };
    let mut response = match (&view.redirect, &view.page) {
        (Some(target), _) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(target) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        (None, Some(page_kind)) => {
            let action = format!("/{}/login", view.tenant_id);
            html(
                StatusCode::OK,
                &SignInTemplate::new(page_kind, &action, &view.csrf, login_hint, view.pending_return_to.as_deref()),
            )
        }
        (None, None) => StatusCode::NO_CONTENT.into_response(),
    };
    let headers = response.headers_mut();
    if let Some(value) = &view.set_session {
        let cookie = format!("{session_name}={value}; Path=/; HttpOnly; SameSite=Lax{secure_attr}");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if view.clear_session {
        let cookie = format!("{session_name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure_attr}");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if let Some((value, days)) = &view.set_device {
        let cookie =
            format!("{device_name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure_attr}", days * 86_400);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// One sign-in page (`templates/signin.html`): the step the sign-in is at, the form's target and
/// CSRF token, and what the authorization request carried (`login_hint`, where to return).
#[derive(Debug, Template)]
#[template(path = "signin.html")]
struct SignInTemplate<'a> {
    title: &'static str,
    page: &'a SignInPage,
    action: &'a str,
    csrf: &'a str,
    login_hint: &'a str,
    return_to: Option<&'a str>,
    /// The QR code of the authenticator-app address, as inline SVG.
    qr: String,
    /// The page's WebAuthn options as JSON (`navigator.credentials.get` or `create`), when it
    /// offers a passkey.
    passkey_options: Option<String>,
}

impl<'a> SignInTemplate<'a> {
    fn new(
        page: &'a SignInPage,
        action: &'a str,
        csrf: &'a str,
        login_hint: Option<&'a str>,
        return_to: Option<&'a str>,
    ) -> SignInTemplate<'a> {
        let title = match page {
            SignInPage::Username { .. } => "Sign in",
            SignInPage::Password { .. } => "Enter password",
            SignInPage::ChangePassword { .. } => "Update your password",
            SignInPage::Mfa { .. } => "Enter code",
            SignInPage::MoreInfo { .. } => "More information required",
            SignInPage::Campaign { .. } => "Keep your account secure",
            SignInPage::RegisterTotp { .. } => "Set up your authenticator app",
            SignInPage::RegisterPasskey { .. } => "Create a passkey",
            SignInPage::Account { .. } => "My account",
            SignInPage::ConfirmDelete { .. } => "Delete a method",
        };
        let qr = match page {
            SignInPage::RegisterTotp { uri, .. } => qr_svg(uri),
            _ => String::new(),
        };
        let passkey_options = match page {
            SignInPage::Username { passkey: Some(request), .. }
            | SignInPage::Password { passkey: Some(request), .. }
            | SignInPage::Mfa { passkey: Some(request), .. } => Some(request_json(request).to_string()),
            SignInPage::RegisterPasskey { options: Some(options), .. } => Some(creation_json(options).to_string()),
            _ => None,
        };
        SignInTemplate {
            title,
            page,
            action,
            csrf,
            login_hint: login_hint.unwrap_or_default(),
            return_to,
            qr,
            passkey_options,
        }
    }
}

/// `PublicKeyCredentialRequestOptionsJSON`: the user must be verified.
fn request_json(request: &PasskeyRequest) -> Value {
    json!({
        "challenge": request.challenge,
        "rpId": request.rp_id,
        "timeout": request.timeout_ms,
        "userVerification": "required",
        "allowCredentials": request.allow.iter().map(|id| json!({"type": "public-key", "id": id})).collect::<Vec<_>>(),
    })
}

/// `PublicKeyCredentialCreationOptionsJSON` as Graph's `creationOptions` has it, except that a
/// discoverable credential is preferred rather than required (a security key without room
/// still registers, as a second factor).
fn creation_json(options: &CreationOptions) -> Value {
    let mut value = crate::graph::passkeys::public_key_creation_json(options);
    value["authenticatorSelection"] =
        json!({"residentKey": "preferred", "requireResidentKey": false, "userVerification": "required"});
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_are_inline_svg() {
        let svg = qr_svg("otpauth://totp/Keyward:a@b?secret=ABC");
        assert!(svg.starts_with("<svg") && svg.contains("<path d=\"M"), "{svg}");
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; keyward-session=abc; keyward-sessionx=zzz"));
        assert_eq!(read_cookie(&headers, "keyward-session"), Some("abc"));
        assert_eq!(read_cookie(&headers, "b"), None);
    }

    #[test]
    fn pages_escape_messages_and_carry_autocomplete_tokens() {
        let page = SignInPage::Username { error: Some("<bad>".into()), passkey: None };
        let html =
            SignInTemplate::new(&page, "/t/login", "tok", Some("a\"b"), Some("/x?a&b")).render().expect("renders");
        assert!(html.contains("value=\"a&#34;b\""), "{html}");
        assert!(
            html.contains("autocomplete=\"username\"") && html.contains("&#60;bad&#62;") && !html.contains("<bad>")
        );
        assert!(html.contains("name=\"csrf\" value=\"tok\""));
        assert!(html.contains("name=\"return_to\" value=\"/x?a&#38;b\""), "{html}");
    }
}
