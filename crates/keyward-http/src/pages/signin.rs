//! `/{tenant}/login`: the sign-in pages, the account page and its forms.

use super::{cookie_names, esc, form, html_response, message, meta, page, qr_svg, read_cookie};
use crate::AppState;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query as RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyward_app::{AppError, SignInForm, SignInPage, SignInView, Stage, Surface};
use keyward_core::secret::Secret;
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
            return html_response(
                StatusCode::NOT_FOUND,
                &page(
                    "Sign in",
                    &format!(
                        "<p class=\"error\">No tenant '{}' exists here. Check the sign-in address.</p>",
                        esc(tenant)
                    ),
                ),
            );
        }
        Err(AppError::BadRequest(message)) => {
            return html_response(
                StatusCode::BAD_REQUEST,
                &page(
                    "Sign in",
                    &format!(
                        "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/{}/login\">Start again</a></p>",
                        esc(&message),
                        esc(tenant)
                    ),
                ),
            );
        }
        Err(err @ (AppError::TooManyRequests { retry_after } | AppError::Overloaded { retry_after })) => {
            let status = if matches!(err, AppError::TooManyRequests { .. }) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut response = html_response(
                status,
                &page("Sign in", &format!("<p class=\"error\" role=\"alert\">{}</p>", esc(&err.to_string()))),
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
        Err(err) => {
            tracing::error!(error = ?err, "sign-in page failed");
            return html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &page(
                    "Sign in",
                    "<p class=\"error\">Something went wrong on our side. Try again in a moment; if it keeps happening, tell your administrator.</p>",
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
            html_response(
                StatusCode::OK,
                &render(page_kind, &action, &view.csrf, login_hint, view.pending_return_to.as_deref()),
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

/// A "Cancel" button back to the account page, for steps a signed-in user started.
fn cancel(is_shown: bool, action: &str, csrf: &str) -> String {
    if is_shown { form(action, csrf, "cancel", "", "Cancel") } else { String::new() }
}

fn who(username: &str) -> String {
    format!("<p class=\"user\">{}</p>", esc(username))
}

/// Renders one page.
fn render(kind: &SignInPage, action: &str, csrf: &str, login_hint: Option<&str>, return_to: Option<&str>) -> String {
    match kind {
        SignInPage::Username { error } => page(
            "Sign in",
            &format!(
                "{}{}",
                message(error),
                form(
                    action,
                    csrf,
                    Stage::Username.as_str(),
                    &format!(
                        "<label for=\"username\">Sign-in name (user principal name, like adele@contoso.com)</label><input type=\"email\" id=\"username\" \
                         name=\"username\" autocomplete=\"username\" value=\"{}\" required autofocus>{}",
                        esc(login_hint.unwrap_or_default()),
                        return_to
                            .map(|it| format!("<input type=\"hidden\" name=\"return_to\" value=\"{}\">", esc(it)))
                            .unwrap_or_default()
                    ),
                    "Next"
                )
            ),
        ),
        SignInPage::Password { username, error } => page(
            "Enter password",
            &format!(
                "{}{}{}",
                who(username),
                message(error),
                form(
                    action,
                    csrf,
                    Stage::Password.as_str(),
                    &format!(
                        "<input type=\"hidden\" name=\"username\" value=\"{}\" autocomplete=\"username\">\
                         <label for=\"password\">Password or Temporary Access Pass</label><input type=\"password\" \
                         id=\"password\" name=\"password\" autocomplete=\"current-password\" required autofocus>",
                        esc(username)
                    ),
                    "Sign in"
                )
            ),
        ),
        SignInPage::ChangePassword { username, is_required, error } => page(
            "Update your password",
            &format!(
                "{}{}{}{}{}",
                who(username),
                if *is_required {
                    "<p>You need to update your password because this is the first time you are signing in, or \
                     because your password was reset.</p>"
                } else {
                    ""
                },
                message(error),
                form(
                    action,
                    csrf,
                    Stage::ChangePassword.as_str(),
                    &format!(
                        "<input type=\"hidden\" name=\"username\" value=\"{}\" autocomplete=\"username\">\
                         <label for=\"password\">Current password</label><input type=\"password\" id=\"password\" \
                         name=\"password\" autocomplete=\"current-password\" required>\
                         <label for=\"new_password\">New password</label><input type=\"password\" id=\"new_password\" \
                         name=\"new_password\" autocomplete=\"new-password\" minlength=\"8\" required>\
                         <label for=\"confirm_password\">Confirm new password</label><input type=\"password\" \
                         id=\"confirm_password\" name=\"confirm_password\" autocomplete=\"new-password\" minlength=\"8\" required>",
                        esc(username)
                    ),
                    "Update password"
                ),
                cancel(!*is_required, action, csrf)
            ),
        ),
        SignInPage::Mfa { username, remember_days, error } => {
            let remember = if *remember_days > 0 {
                format!(
                    "<label><input type=\"checkbox\" name=\"remember\" value=\"on\"> Don't ask again for {remember_days} days</label>"
                )
            } else {
                String::new()
            };
            page(
                "Enter code",
                &format!(
                    "{}<p>Enter the code displayed in your authenticator app.</p>{}{}",
                    who(username),
                    message(error),
                    form(
                        action,
                        csrf,
                        Stage::Mfa.as_str(),
                        &format!(
                            "<label for=\"code\">Code</label><input type=\"text\" id=\"code\" name=\"code\" \
                             autocomplete=\"one-time-code\" inputmode=\"numeric\" pattern=\"[0-9 ]*\" maxlength=\"8\" \
                             required autofocus>{remember}"
                        ),
                        "Verify"
                    )
                ),
            )
        }
        SignInPage::MoreInfo { username } => page(
            "More information required",
            &format!(
                "{}<p id=\"ProofUpDescription\">Your organization needs more information to keep your account secure</p>{}",
                who(username),
                form(action, csrf, Stage::MoreInfo.as_str(), "", "Next")
            ),
        ),
        SignInPage::RegisterTotp { username, secret, uri, can_cancel, error } => page(
            "Set up your authenticator app",
            &format!(
                "{}<p>Scan the QR code with your authenticator app, or enter the secret key by hand.</p>{}\
                 <p>Secret key: <span class=\"secret\" id=\"secret\">{}</span></p>\
                 <p>Or add this address: <span class=\"secret\" id=\"otpauth\">{}</span></p>{}{}{}",
                who(username),
                qr_svg(uri),
                esc(secret),
                esc(uri),
                message(error),
                form(
                    action,
                    csrf,
                    Stage::RegisterTotp.as_str(),
                    "<label for=\"code\">Enter the code the app shows</label><input type=\"text\" id=\"code\" \
                     name=\"code\" autocomplete=\"one-time-code\" inputmode=\"numeric\" pattern=\"[0-9 ]*\" \
                     maxlength=\"8\" required autofocus>",
                    "Next"
                ),
                cancel(*can_cancel, action, csrf)
            ),
        ),
        SignInPage::Account { display_name, user_principal_name, methods, notice } => {
            let items: String = methods.iter().map(|it| format!("<li>{}</li>", esc(it))).collect();
            let notice = notice
                .as_ref()
                .map(|it| format!("<p class=\"notice\" role=\"status\">{}</p>", esc(it)))
                .unwrap_or_default();
            page(
                "My account",
                &format!(
                    "<p id=\"signed-in\">Signed in as <strong>{}</strong> ({})</p>{notice}<h2>Security info</h2><ul>{items}</ul>{}{}{}",
                    esc(display_name),
                    esc(user_principal_name),
                    form(action, csrf, "add_totp", "", "Add authenticator app"),
                    form(action, csrf, "change_password", "", "Change password"),
                    form(action, csrf, "signout", "", "Sign out"),
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

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
        let html = render(
            &SignInPage::Username { error: Some("<bad>".into()) },
            "/t/login",
            "tok",
            Some("a\"b"),
            Some("/x?a&b"),
        );
        assert!(html.contains("value=\"a&quot;b\""), "{html}");
        assert!(html.contains("autocomplete=\"username\"") && html.contains("&lt;bad&gt;"));
        assert!(html.contains("name=\"csrf\" value=\"tok\""));
    }
}
