//! Graph's error envelope. Every error of the API becomes one of these, here and only here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use keyward_app::AppError;
use serde_json::json;

use crate::context::RequestIds;

/// A Graph error ready to render: status, code and message.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub ids: RequestIds,
    /// What the answer carries besides the envelope (boxed: errors travel in every handler's
    /// `Result`).
    pub attached: Option<Box<Attached>>,
    /// Seconds for `Retry-After` (throttling and overload).
    pub retry_after: Option<u32>,
}

/// What a [`GraphError`] carries besides the envelope.
#[derive(Debug, Clone)]
pub enum Attached {
    /// `WWW-Authenticate` for a 401: the invalid-token challenge, or a claims challenge.
    Challenge(String),
    /// Not an error: dual control held the change (`202` with the request).
    Held(Box<keyward_app::dual_control::Held>),
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>, ids: &RequestIds) -> GraphError {
        GraphError { status, code, message: message.into(), ids: ids.clone(), attached: None, retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>, ids: &RequestIds) -> GraphError {
        GraphError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message, ids)
    }

    /// A 500 that shows nothing of its cause and names the request the server's log has it under.
    pub fn unexpected(ids: &RequestIds) -> GraphError {
        GraphError::new(StatusCode::INTERNAL_SERVER_ERROR, "generalException", unexpected_message(ids), ids)
    }

    /// Maps an app error to Graph's code and status; unexpected errors are logged with their
    /// whole cause chain and shown without internals.
    pub fn from_app(err: AppError, ids: &RequestIds) -> GraphError {
        match err {
            AppError::Unauthenticated(message) => GraphError {
                attached: Some(Box::new(Attached::Challenge(
                    r#"Bearer realm="", error="invalid_token", client_id="00000003-0000-0000-c000-000000000000""#
                        .to_owned(),
                ))),
                ..GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message, ids)
            },
            // Entra's claims challenge: the claims request, base64-encoded, for MSAL to sign in with.
            AppError::ClaimsChallenge { message, claims, authorization_uri } => GraphError {
                attached: Some(Box::new(Attached::Challenge(format!(
                    r#"Bearer realm="", authorization_uri="{authorization_uri}", error="insufficient_claims", claims="{}""#,
                    base64::engine::general_purpose::STANDARD.encode(claims)
                )))),
                ..GraphError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message, ids)
            },
            AppError::Forbidden { .. } => {
                GraphError::new(StatusCode::FORBIDDEN, "Authorization_RequestDenied", err.to_string(), ids)
            }
            AppError::NotFound(_) => {
                GraphError::new(StatusCode::NOT_FOUND, "Request_ResourceNotFound", err.to_string(), ids)
            }
            AppError::BadRequest(message) => GraphError::bad_request(message, ids),
            AppError::Rejected { code, message } => GraphError::new(StatusCode::BAD_REQUEST, code, message, ids),
            AppError::SyncStateNotFound => GraphError::new(StatusCode::GONE, "syncStateNotFound", err.to_string(), ids),
            AppError::TooManyRequests { retry_after } => GraphError {
                retry_after: Some(u32::try_from(retry_after).unwrap_or(u32::MAX)),
                ..GraphError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", err.to_string(), ids)
            },
            AppError::Overloaded { retry_after } => GraphError {
                retry_after: Some(u32::try_from(retry_after).unwrap_or(u32::MAX)),
                ..GraphError::new(StatusCode::SERVICE_UNAVAILABLE, "serviceNotAvailable", err.to_string(), ids)
            },
            AppError::Conflict(message) => {
                GraphError::new(StatusCode::CONFLICT, "Request_MultipleObjectsWithSameKeyValue", message, ids)
            }
            AppError::HeldForApproval(held) => GraphError {
                attached: Some(Box::new(Attached::Held(held))),
                ..GraphError::new(StatusCode::ACCEPTED, "heldForApproval", "Held for approval", ids)
            },
            AppError::UnsupportedQuery(message) => {
                GraphError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message, ids)
            }
            AppError::Unexpected(inner) => {
                tracing::error!(request_id = %ids.request_id, error = ?inner, "unexpected error");
                GraphError::unexpected(ids)
            }
        }
    }
}

/// What a 500 says: retry, and the request id to give an administrator.
pub fn unexpected_message(ids: &RequestIds) -> String {
    format!(
        "An unexpected error occurred on the server. Retry the request; if it fails again, give request-id {} to your administrator, whose server log has the details.",
        ids.request_id
    )
}

/// An app error becomes the envelope of the request being served (`?` in a handler).
impl From<AppError> for GraphError {
    fn from(err: AppError) -> GraphError {
        GraphError::from_app(err, &crate::context::current_ids())
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        if let Some(Attached::Held(held)) = self.attached.as_deref() {
            let mut response =
                (StatusCode::ACCEPTED, crate::context::graph_json(crate::graph::service_desk::held_json(held)))
                    .into_response();
            let location = crate::graph::service_desk::location(held.request.id.as_str());
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            // It may carry a pass or a password.
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return response;
        }
        let date = time::OffsetDateTime::now_utc();
        let date = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            date.hour(),
            date.minute(),
            date.second()
        );
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": date,
                    "request-id": self.ids.request_id,
                    "client-request-id": self.ids.client_request_id,
                }
            }
        });
        let mut response = (self.status, crate::context::graph_json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        let challenge = match self.attached.as_deref() {
            Some(Attached::Challenge(it)) => HeaderValue::from_str(it).ok(),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
