//! The HTML pages: the sign-in pages and the account page, and what every page shares
//! (cookies, security headers, the layout).

mod signin;

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
    RequestMeta { correlation_id, ip_address: peer.map(|it| it.ip().to_string()) }
}

/// Sign-in pages with their security headers. The Content-Security-Policy has no `form-action`:
/// browsers apply it to the whole redirect chain after a form, and the sign-in's last redirect
/// goes to the application's redirect URI.
pub(crate) fn html_response(status: StatusCode, body: &str) -> Response {
    let mut response = (status, body.to_owned()).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// HTML-escapes text for element content and quoted attributes.
pub(crate) fn esc(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => res.push_str("&amp;"),
            '<' => res.push_str("&lt;"),
            '>' => res.push_str("&gt;"),
            '"' => res.push_str("&quot;"),
            '\'' => res.push_str("&#39;"),
            other => res.push(other),
        }
    }
    res
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f2f2f2;margin:0}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem 2.5rem;box-shadow:0 2px 6px rgba(0,0,0,.2)}\
h1{font-size:1.5rem;font-weight:600}label{display:block;margin:.8rem 0 .3rem}\
input[type=text],input[type=password],input[type=email]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
button{margin-top:1rem;padding:.5rem 1.5rem;font-size:1rem;background:#0067b8;color:#fff;border:0}\
.error{color:#a80000}.notice{color:#107c10}.secret{font-family:monospace;word-break:break-all}\
.user{color:#555}svg{display:block;margin:1rem auto}";

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>{} – Keyward</title><style>{STYLE}</style></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

pub(crate) fn message(error: &Option<String>) -> String {
    error
        .as_ref()
        .map(|it| format!("<p class=\"error\" id=\"error\" role=\"alert\">{}</p>", esc(it)))
        .unwrap_or_default()
}

pub(crate) fn form(action: &str, csrf: &str, step: &str, inner: &str, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"step\" value=\"{}\">{inner}<button type=\"submit\">{}</button></form>",
        esc(action),
        esc(csrf),
        esc(step),
        esc(button)
    )
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
    Router::new().route("/", get(home)).route("/{tenant}/login", get(signin::page_get).post(signin::page_post))
}

/// `GET /`: the sign-in page of this server's tenant (which shows a signed-in user the account
/// page), so the address the server prints leads somewhere.
async fn home(State(state): State<AppState>) -> Response {
    match state.app.home_tenant().await {
        Ok(Some(tenant)) => {
            let key = tenant
                .domains
                .iter()
                .find(|it| it.is_default)
                .map_or_else(|| tenant.id.to_string(), |it| it.name.clone());
            (
                StatusCode::FOUND,
                [(header::LOCATION, format!("/{key}/login")), (header::CACHE_CONTROL, "no-store".to_owned())],
            )
                .into_response()
        }
        Ok(None) => crate::not_found().await,
        Err(err) => {
            tracing::error!(error = ?err, "cannot read the tenant");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
