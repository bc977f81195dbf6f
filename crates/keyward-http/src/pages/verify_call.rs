//! "Verify a service-desk call" (`/{tenant}/verify-call`): the signed-in user sees the
//! verifications service-desk agents started for them, and types the code the agent reads out (or
//! says it is not their call). Needs a sign-in with a second factor in the last ten minutes; an
//! older session is sent to sign in again and comes back.

use std::collections::HashMap;
use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use keyward_app::caller_verification::VerificationView;
use keyward_app::{AppError, Caller, Surface};
use keyward_core::caller_verification::Status;

use super::{Message, Tone, cookie_names, html, meta, read_cookie};
use crate::AppState;

const TITLE: &str = "Verify a service-desk call";

#[derive(Debug, Template)]
#[template(path = "verify_call.html")]
struct VerifyPage<'a> {
    title: &'a str,
    action: String,
    csrf: String,
    /// Each waiting verification: id, agent, when it expires.
    pending: Vec<(String, String, String)>,
    notice: Option<&'a str>,
    error: Option<&'a str>,
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The signed-in user, or the page that sends them to sign in (and back).
async fn signed_in(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(Caller, String), Response> {
    let (session_name, _, _) = cookie_names(state);
    let cookie = read_cookie(headers, session_name);
    let meta = meta(headers, peer);
    if let Err(err) = state.app.throttle(Surface::SignInPages, meta.ip_address.as_deref(), None) {
        return Err(html(StatusCode::TOO_MANY_REQUESTS, &Message::alert(TITLE, &err.to_string())));
    }
    match state.app.browser_caller(tenant, cookie, meta).await {
        Ok(Ok(caller)) => Ok((caller, cookie.map(keyward_app::csrf_token).unwrap_or_default())),
        Ok(Err(tenant_id)) => Err(sign_in_again(&tenant_id.to_string())),
        Err(AppError::NotFound(_)) => Err(html(StatusCode::NOT_FOUND, &Message::error(TITLE, "No such tenant."))),
        Err(err) => {
            tracing::error!(error = ?err, "verify-call page failed");
            Err(html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Message::error(TITLE, "Something went wrong on our side. Try again in a moment."),
            ))
        }
    }
}

/// To sign in (again, with the second factor), then back to this page.
fn sign_in_again(tenant_id: &str) -> Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let back = format!("/{tenant_id}/verify-call");
    let location = format!("/{tenant_id}/login?prompt=login&return_to={}", urlencode(&back));
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn recent_mfa(caller: &Caller, now: time::OffsetDateTime) -> bool {
    caller.has_mfa_within(now, time::Duration::minutes(10))
}

async fn render(
    state: &AppState,
    caller: &Caller,
    csrf: String,
    notice: Option<&str>,
    error: Option<(StatusCode, &str)>,
) -> Response {
    let pending: Vec<VerificationView> = match state.app.pending_caller_verifications(caller).await {
        Ok(it) => it,
        Err(err) => {
            tracing::error!(error = ?err, "verify-call page failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Message::error(TITLE, "Something went wrong on our side."),
            );
        }
    };
    let page = VerifyPage {
        title: TITLE,
        action: format!("/{}/verify-call", caller.tenant.id),
        csrf,
        pending: pending
            .iter()
            .map(|it| (it.id.to_string(), it.agent_name.clone(), keyward_app::rfc3339(it.expires)))
            .collect(),
        notice,
        error: error.map(|it| it.1),
    };
    html(error.map_or(StatusCode::OK, |it| it.0), &page)
}

/// `GET /{tenant}/verify-call`.
pub(super) async fn page(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let (caller, csrf) = match signed_in(&state, &tenant, &headers, peer.map(|it| it.0.0)).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    if !recent_mfa(&caller, state.app.now()) {
        return step_up(&caller, state.app.now());
    }
    render(&state, &caller, csrf, None, None).await
}

/// A session without a recent second factor: to sign in again, unless it signed in just now
/// without one (the account asks for none at sign-in), which says what to do instead of looping.
fn step_up(caller: &Caller, now: time::OffsetDateTime) -> Response {
    let just_now = caller.authentication.as_ref().is_some_and(|(at, _)| now - *at <= time::Duration::minutes(10));
    if just_now {
        return html(
            StatusCode::FORBIDDEN,
            &Message::alert(
                TITLE,
                "Confirming a service-desk call needs a sign-in with your authenticator app or passkey, and your \
                 sign-in did not use one. If you have none, ask the agent to have your manager or another \
                 administrator vouch for you.",
            ),
        );
    }
    sign_in_again(caller.tenant.id.as_str())
}

/// `POST /{tenant}/verify-call` with `csrf`, `verification`, `code` and `answer` (`confirm` or
/// `deny`).
pub(super) async fn submit(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let (caller, csrf) = match signed_in(&state, &tenant, &headers, peer.map(|it| it.0.0)).await {
        Ok(it) => it,
        Err(response) => return response,
    };
    let presented = fields.get("csrf").map(String::as_str).unwrap_or_default();
    if csrf.is_empty() || !keyward_core::secret::constant_time_eq(presented.as_bytes(), csrf.as_bytes()) {
        return html(
            StatusCode::FORBIDDEN,
            &Message::new(Tone::Alert, TITLE, "This form expired: open the page again."),
        );
    }
    if !recent_mfa(&caller, state.app.now()) {
        return step_up(&caller, state.app.now());
    }
    let id = fields.get("verification").map(String::as_str).unwrap_or_default();
    let code = fields.get("code").map(String::as_str).unwrap_or_default();
    let accept = fields.get("answer").map(String::as_str) != Some("deny");
    match state.app.answer_caller_verification(&caller, id, code, accept).await {
        Ok(Status::Verified) => render(&state, &caller, csrf, Some("Done: the service desk can see that you confirmed the call."), None).await,
        Ok(Status::Failed) if !accept => render(&state, &caller, csrf, Some("Done: the service desk was told this was not your call."), None).await,
        Ok(Status::Failed) => render(&state, &caller, csrf, None, Some((StatusCode::BAD_REQUEST, "That code does not match, three times: the verification failed. If someone is calling in your name, tell your service desk on a number you already know."))).await,
        Ok(_) => render(&state, &caller, csrf, None, Some((StatusCode::BAD_REQUEST, "That code does not match the one the agent read out. Check it with them and try again."))).await,
        Err(AppError::NotFound(_) | AppError::Rejected { .. } | AppError::Conflict(_)) => render(&state, &caller, csrf, None, Some((StatusCode::BAD_REQUEST, "That verification is no longer waiting: ask the agent to start a new one."))).await,
        Err(AppError::Forbidden { message, .. }) => html(StatusCode::FORBIDDEN, &Message::alert(TITLE, &message)),
        Err(err) => {
            tracing::error!(error = ?err, "verify-call answer failed");
            html(StatusCode::INTERNAL_SERVER_ERROR, &Message::error(TITLE, "Something went wrong on our side. Try again in a moment."))
        }
    }
}
