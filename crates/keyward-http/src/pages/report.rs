//! "This wasn't me" (`/{tenant}/report-activity`): the link in every notification about a change
//! to a user's security info. The link only shows a page: mail scanners open links, so acting
//! takes the page's button (a POST with the token). The token is in the query string, which the
//! request log leaves out, and the page sends no referrer.

use std::collections::HashMap;
use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keyward_app::{AppError, Reported, Surface};

use super::{Message, Tone, html, meta};
use crate::AppState;

const TITLE: &str = "Report a change you did not make";
const UNUSABLE: &str = "This link does not work: it was already used, it is older than 14 days, or it was copied \
    incompletely. If your account still looks wrong, call your service desk on a number you already know.";

#[derive(Debug, Template)]
#[template(path = "report_activity.html")]
struct ReportPage<'a> {
    title: &'a str,
    action: String,
    token: &'a str,
}

/// `GET /{tenant}/report-activity?token=…`: what the button does; nothing changes yet.
pub(super) async fn page(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let meta = meta(&headers, peer.map(|it| it.0.0));
    if let Err(err) = state.app.throttle(Surface::SignInPages, meta.ip_address.as_deref(), None) {
        return refused(err);
    }
    let fields: HashMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let token = fields.get("token").map(String::as_str).unwrap_or_default();
    if token.is_empty() || token.len() > 100 {
        return html(StatusCode::BAD_REQUEST, &Message::new(Tone::Error, TITLE, UNUSABLE));
    }
    let action = format!("/{}/report-activity", urlencode(&tenant));
    html(StatusCode::OK, &ReportPage { title: TITLE, action, token })
}

/// `POST /{tenant}/report-activity`: acts once (`App::report_suspicious_activity`).
pub(super) async fn submit(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let meta = meta(&headers, peer.map(|it| it.0.0));
    if let Err(err) = state.app.throttle(Surface::SignInPages, meta.ip_address.as_deref(), None) {
        return refused(err);
    }
    let token = fields.get("token").map(String::as_str).unwrap_or_default();
    match state.app.report_suspicious_activity(&tenant, token, &meta).await {
        Ok(Reported::Done { display_name, administrators_told }) => {
            let told = if administrators_told > 0 {
                "and your administrators have been told"
            } else {
                "but no administrator could be e-mailed: tell your service desk yourself"
            };
            let text = format!(
                "Thank you, {display_name}. You are signed out of every session and app, any Temporary Access Pass \
                 on your account is cancelled and your remembered devices are forgotten, {told}."
            );
            let hint = "Sign in again to check your security info. If you cannot sign in, call your service desk \
                        on a number you already know.";
            html(StatusCode::OK, &Message::new(Tone::Done, TITLE, &text).with_hint(hint))
        }
        Ok(Reported::Unusable) => html(StatusCode::BAD_REQUEST, &Message::new(Tone::Error, TITLE, UNUSABLE)),
        Err(err) => refused(err),
    }
}

fn refused(err: AppError) -> Response {
    match err {
        AppError::TooManyRequests { .. } | AppError::Overloaded { .. } => html(
            StatusCode::TOO_MANY_REQUESTS,
            &Message::new(Tone::Error, TITLE, "Too many requests from your network. Wait a minute and try again."),
        ),
        err => {
            tracing::error!(error = %err, "a \"This wasn't me\" report failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Message::new(Tone::Error, TITLE, "This could not be done now. Try again in a few minutes."),
            )
        }
    }
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
