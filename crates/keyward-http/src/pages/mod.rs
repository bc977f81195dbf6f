//! The HTML pages: the sign-in pages, the account page and the admin portal, and what every page
//! shares
//! (cookies, security headers, the layout).

mod portal;
mod report;
mod signin;
mod verify_call;

use askama::Template;

use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keyward_app::RequestMeta;
use std::net::SocketAddr;

pub(crate) fn cookie_names(state: &AppState) -> (&'static str, &'static str, bool) {
    if state.app.config().public_url.starts_with("https://") {
        ("__Host-keyward-session", "__Host-keyward-device", true)
    } else {
        ("keyward-session", "keyward-device", false)
    }
}

pub(crate) fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|it| it.to_str().ok())
        .flat_map(|it| it.split(';'))
        .filter_map(|it| it.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|it| !it.is_empty() && it.len() <= 128)
}

pub(crate) fn meta(headers: &HeaderMap, peer: Option<SocketAddr>) -> RequestMeta {
    let correlation_id = headers
        .get("client-request-id")
        .and_then(|it| it.to_str().ok())
        .and_then(|it| uuid::Uuid::parse_str(it).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .to_string();
    RequestMeta {
        correlation_id,
        ip_address: peer.map(|it| crate::context::ip_text(it.ip())),
        user_agent: user_agent(headers),
    }
}

/// The request's `User-Agent`, cut to what the sign-in log keeps.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<String> {
    let agent = headers.get(axum::http::header::USER_AGENT)?.to_str().ok()?.trim();
    (!agent.is_empty()).then(|| agent.chars().take(keyward_core::signin::USER_AGENT_MAX).collect())
}

/// Renders a page and sends it with its security headers.
pub(crate) fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => html_response(status, body),
        Err(err) => {
            tracing::error!(error = %err, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "This page could not be shown. Tell your administrator.\n")
                .into_response()
        }
    }
}

/// A rendered page with its security headers. The Content-Security-Policy has no `form-action`:
/// browsers apply it to the whole redirect chain after a form, and the sign-in's last redirect
/// goes to the application's redirect URI.
fn html_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// How a message page shows its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    /// Something is wrong and nothing can be done on this page.
    Error,
    /// Something is wrong, announced to screen readers.
    Alert,
    /// A flow finished (`id="device-done"`).
    Done,
    /// Plain information.
    Plain,
}

/// A page of one message (`templates/message.html`), with an optional second paragraph and link.
#[derive(Debug, Template)]
#[template(path = "message.html")]
pub(crate) struct Message<'a> {
    title: &'a str,
    text: &'a str,
    tone: Tone,
    hint: Option<&'a str>,
    link: Option<(&'a str, &'a str)>,
}

impl<'a> Message<'a> {
    pub(crate) fn new(tone: Tone, title: &'a str, text: &'a str) -> Message<'a> {
        Message { title, text, tone, hint: None, link: None }
    }

    pub(crate) fn error(title: &'a str, text: &'a str) -> Message<'a> {
        Message::new(Tone::Error, title, text)
    }

    pub(crate) fn alert(title: &'a str, text: &'a str) -> Message<'a> {
        Message::new(Tone::Alert, title, text)
    }

    pub(crate) fn with_hint(self, hint: &'a str) -> Message<'a> {
        Message { hint: Some(hint), ..self }
    }

    pub(crate) fn with_link(self, href: &'a str, label: &'a str) -> Message<'a> {
        Message { link: Some((href, label)), ..self }
    }
}

/// The QR code of `text` as an inline SVG (no external assets).
pub(crate) fn qr_svg(text: &str) -> String {
    let Ok(code) = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium) else {
        return String::new();
    };
    let size = code.size();
    let border = 4;
    let dimension = size + border * 2;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if code.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"qr\" role=\"img\" aria-label=\"QR code for your authenticator app\" \
         viewBox=\"0 0 {dimension} {dimension}\" width=\"220\" height=\"220\" shape-rendering=\"crispEdges\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    )
}

/// The pages' routes, relative to the root.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/assets/keyward.css", get(stylesheet))
        .route("/assets/keyward.js", get(script))
        .route("/assets/passkey.js", get(passkey_script))
        .route("/{tenant}/login", get(signin::page_get).post(signin::page_post))
        .route("/{tenant}/report-activity", get(report::page).post(report::submit))
        .route("/{tenant}/verify-call", get(verify_call::page).post(verify_call::submit))
        .route("/{tenant}/admin", get(portal::home))
        .route("/{tenant}/admin/users", get(portal::users))
        .route("/{tenant}/admin/users/new", get(portal::new_user).post(portal::create_user))
        .route("/{tenant}/admin/users/{id}", get(portal::user).post(portal::user_action))
        .route("/{tenant}/admin/users/{id}/edit", get(portal::edit_user).post(portal::save_user))
        .route("/{tenant}/admin/users/{id}/confirm", get(portal::confirm))
        .route("/{tenant}/admin/mfa", get(portal::mfa).post(portal::mfa_apply))
        .route("/{tenant}/admin/mfa/confirm", get(portal::mfa_confirm))
        .route("/{tenant}/admin/settings", get(portal::settings).post(portal::settings_save))
        .route("/{tenant}/admin/my-roles", get(portal::my_roles).post(portal::my_roles_action))
        .route("/{tenant}/admin/roles", get(portal::roles))
        .route("/{tenant}/admin/roles/new", get(portal::new_role).post(portal::create_role))
        .route("/{tenant}/admin/roles/{id}/edit", get(portal::edit_role).post(portal::save_role))
        .route("/{tenant}/admin/audit", get(portal::audit))
        .route("/{tenant}/admin/audit/{id}", get(portal::audit_record))
        .route("/{tenant}/admin/reports", get(portal::reports))
        .route("/{tenant}/admin/sign-ins", get(portal::sign_ins))
        .route("/{tenant}/admin/notifications", get(portal::notifications))
        .route("/{tenant}/admin/approvals", get(portal::approvals).post(portal::approvals_action))
        .route("/{tenant}/admin/bulk", get(portal::bulk).post(portal::bulk_start))
        .route("/{tenant}/admin/sign-ins/{id}", get(portal::sign_in))
        .route("/{tenant}/admin/groups", get(portal::groups))
        .route("/{tenant}/admin/groups/{id}", get(portal::group).post(portal::group_action))
        .route("/{tenant}/admin/groups/{id}/remove", get(portal::group_remove_confirm))
        .route("/{tenant}/admin/units", get(portal::units))
        .route("/{tenant}/admin/units/{id}", get(portal::unit).post(portal::unit_action))
        .route("/{tenant}/admin/units/{id}/remove", get(portal::unit_remove_confirm))
        .route("/{tenant}/admin/roles/{id}", get(portal::role).post(portal::role_action))
        .route("/{tenant}/admin/roles/{id}/remove", get(portal::role_remove_confirm))
}

/// `GET /assets/keyward.css`: the one stylesheet of every page (the pages' Content-Security-Policy
/// allows no inline style).
async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/keyward.css"),
    )
        .into_response()
}

/// `GET /assets/keyward.js`: the portal's one script (search as you type, copy buttons); every
/// page works without it.
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/keyward.js"),
    )
        .into_response()
}

/// `GET /assets/passkey.js`: the passkey ceremonies of the sign-in and account pages.
async fn passkey_script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/passkey.js"),
    )
        .into_response()
}

/// `GET /`: the admin portal for a signed-in administrator, otherwise the sign-in page of this
/// server's tenant (which shows a signed-in user the account page).
async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.app.home_tenant().await {
        Ok(Some(tenant)) => {
            let key = tenant
                .domains
                .iter()
                .find(|it| it.is_default)
                .map_or_else(|| tenant.id.to_string(), |it| it.name.clone());
            // A signed-in administrator (with MFA) lands in the admin portal; everyone else on the
            // sign-in page, which shows a signed-in user their own security info.
            let cookie = read_cookie(&headers, cookie_names(&state).0);
            let meta = meta(&headers, None);
            // `/` is not portal activity (any site can send a browser here).
            let location = match state.app.portal_access(&key, cookie, meta, false).await {
                Ok(keyward_app::PortalAccess::Administrator(_)) => format!("/{key}/admin/users"),
                _ => format!("/{key}/login"),
            };
            (StatusCode::FOUND, [(header::LOCATION, location), (header::CACHE_CONTROL, "no-store".to_owned())])
                .into_response()
        }
        Ok(None) => crate::not_found().await,
        Err(err) => {
            tracing::error!(error = ?err, "cannot read the tenant");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
