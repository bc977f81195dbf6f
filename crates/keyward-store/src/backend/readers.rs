//! PostgreSQL connections for the single-statement reads every request makes (the caller with
//! their roles, a user by id or sign-in name), kept beside sqlx's pool.
//!
//! sqlx checks each pooled connection with a round trip to the server as it goes back to the
//! pool, in a task of its own, and that check cannot be turned off: a statement run on the pool
//! cost two round trips and a task. A reader is handed back only once its statement has
//! finished, so it is never left halfway through a statement and needs no check; one whose
//! statement failed, or whose request went away mid-statement, is closed instead. Like the pool's
//! connections, one unused for a while is checked before it is used
//! ([`super::CHECK_CONNECTIONS_IDLE_FOR`]), so a connection the server dropped meanwhile (a
//! restart, an idle timeout) is replaced rather than failing a request.
//!
//! What a read sees is unchanged: each statement runs outside a transaction, a snapshot of what
//! has committed.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::StoreError;

/// Readers open at once, per node; a request beyond them waits for one.
const READERS: usize = 8;

#[derive(Debug)]
pub(crate) struct Readers {
    options: Arc<PgConnectOptions>,
    permits: Arc<Semaphore>,
    /// Connections not in use, the last one handed back at the end, with when it was.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
}

/// A connection in use; [`Reader::done`] hands it back, dropping it closes it.
pub(crate) struct Reader<'a> {
    pub(crate) conn: PgConnection,
    readers: &'a Readers,
    _permit: OwnedSemaphorePermit,
}

impl Readers {
    pub(crate) fn new(options: Arc<PgConnectOptions>) -> Readers {
        Readers { options, permits: Arc::new(Semaphore::new(READERS)), idle: Mutex::new(Vec::new()) }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection: the one handed back last (its statements are the likeliest to be
    /// prepared), checked first if it sat unused a while, or a new one.
    pub(crate) async fn take(&self) -> Result<Reader<'_>, StoreError> {
        let permit =
            self.permits.clone().acquire_owned().await.map_err(|_| StoreError::from(sqlx::Error::PoolClosed))?;
        loop {
            let last = self.idle().pop();
            let Some((mut conn, since)) = last else { break };
            if since.elapsed() < super::CHECK_CONNECTIONS_IDLE_FOR || conn.ping().await.is_ok() {
                return Ok(Reader { conn, readers: self, _permit: permit });
            }
        }
        let conn = self.options.connect().await?;
        Ok(Reader { conn, readers: self, _permit: permit })
    }

    /// Closes the idle connections; later asks fail as a closed pool's do.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for (conn, _) in idle {
            let _ = conn.close().await;
        }
    }
}

impl Reader<'_> {
    /// Hands the connection back once its statement has finished.
    pub(crate) fn done(self) {
        if !self.readers.permits.is_closed() {
            self.readers.idle().push((self.conn, Instant::now()));
        }
    }
}
