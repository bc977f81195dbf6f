//! The store's own error type; driver errors are mapped here and never leave the crate.

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness or reference constraint refused the change.
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// A value the database cannot hold as text: a NUL character, which PostgreSQL refuses
    /// (SQLSTATE 22021); it came from the request (a key in a path, a decoded page token).
    #[error("text holds a NUL character")]
    InvalidText,
    /// Anything else: connection, I/O, corrupt data. The message is for logs.
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        db(err)
    }
}

pub(crate) fn db(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(inner) if inner.is_unique_violation() || inner.is_foreign_key_violation() => {
            StoreError::Conflict { constraint: inner.constraint().unwrap_or("unique").to_owned() }
        }
        sqlx::Error::Database(inner) if inner.code().as_deref() == Some("22021") => StoreError::InvalidText,
        other => StoreError::Other(other.to_string()),
    }
}
