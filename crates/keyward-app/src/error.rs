//! The app layer's error type. The HTTP layer maps each variant to a response once.

use keyward_core::query::QueryError;
use keyward_store::StoreError;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No bearer token, or one Keyward did not sign, or an expired one. The message is Graph's.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A token that continuous access evaluation no longer accepts (sessions revoked, account
    /// disabled, its pass deleted), held by a client that declared the `cp1` capability: it gets
    /// a claims challenge (`claims`, a JSON claims request) to sign in again at `authorization_uri`.
    #[error("{message}")]
    ClaimsChallenge { message: &'static str, claims: String, authorization_uri: String },
    /// The decision function refused; `rule` names the rule, `message` is Entra's text for it.
    #[error("{message}")]
    Forbidden { rule: &'static str, message: String },
    /// The object does not exist (or is not visible). Carries the id as the client named it.
    #[error("Resource '{0}' does not exist or one of its queried reference-property objects are not present.")]
    NotFound(String),
    /// The request is invalid; the message tells the client what to change.
    #[error("{0}")]
    BadRequest(String),
    /// Too many requests from one address or against one account: retry after this many seconds.
    #[error("Too many requests. Try again in {retry_after} seconds.")]
    TooManyRequests { retry_after: u64 },
    /// The server is at capacity (the password hasher's queue is full): retry after this many seconds.
    #[error("The server is busy. Try again in {retry_after} seconds.")]
    Overloaded { retry_after: u64 },
    /// The object exists already (Graph answers 409).
    #[error("{0}")]
    Conflict(String),
    /// A delta token too old to continue from, or whose changes retention removed: start a new
    /// round (Graph's `syncStateNotFound`).
    #[error(
        "The delta token has expired or the changes after it were removed by retention: start a new round without a token."
    )]
    SyncStateNotFound,
    /// A request Graph refuses with its own error code (`400`), for example
    /// `RoleAssignmentRequestPolicyValidationFailed`.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
    /// A query option combination Graph does not support.
    #[error("{0}")]
    UnsupportedQuery(String),
    /// Dual control held the change for a second administrator: nothing ran yet (the API answers
    /// `202 Accepted` with the request).
    #[error("The change needs a second administrator's approval: it is held as request {}.", .0.request.id)]
    HeldForApproval(Box<crate::dual_control::Held>),
    /// Anything unexpected; logged in full, shown as a generic error.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> AppError {
        match err {
            StoreError::InvalidText => {
                AppError::BadRequest("The request holds a NUL character, which no value may contain.".into())
            }
            other => AppError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

impl From<QueryError> for AppError {
    fn from(err: QueryError) -> AppError {
        match err {
            QueryError::BadRequest(message) => AppError::BadRequest(message),
            QueryError::Unsupported(message) => AppError::UnsupportedQuery(message),
        }
    }
}
