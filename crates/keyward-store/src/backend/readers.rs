//! PostgreSQL connections for the single-statement reads every request makes (the caller with
//! their roles, a user by id or sign-in name), kept beside sqlx's pool.
//!
//! sqlx checks each pooled connection with a round trip to the server as it goes back to the
//! pool, in a task of its own, and that check cannot be turned off: a statement run on the pool
//! cost two round trips and a task. A reader is handed back only once its statement has
//! finished, so it is never left halfway through a statement and needs no check. One whose
//! statement failed, or whose request went away mid-statement, is checked in a task of its own
//! (which reads what is left of the statement's answer first), under its permit, and handed back
//! only if the check succeeds: a cancelled request costs no new connection. Like the pool's
//! connections, one unused for a while is checked before it is used
//! ([`super::CHECK_CONNECTIONS_IDLE_FOR`]); one used just before the server dropped it (a
//! restart, an administrator) fails its statement, which the caller runs again on a new
//! connection (see `read_all`). As for the pool, a request waits at most
//! [`super::WAIT_FOR_CONNECTION`] for a connection, and connections are replaced after
//! [`super::CONNECTION_LIFETIME`].
//!
//! What a read sees is unchanged: each statement runs outside a transaction, a snapshot of what
//! has committed.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use crate::error::StoreError;

/// Readers open at once, per node; a request beyond them waits for one.
const READERS: usize = 8;
/// How long the check of an idle connection may take before the connection is given up.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct Readers {
    options: Arc<PgConnectOptions>,
    permits: Arc<Semaphore>,
    /// Connections not in use, the last one handed back at the end; `None` once closed.
    idle: Mutex<Option<Vec<Idle>>>,
}

#[derive(Debug)]
struct Idle {
    conn: PgConnection,
    opened: Instant,
    since: Instant,
}

/// A connection in use; [`Reader::done`] hands it back, dropping it checks it first (see the
/// module's comment).
pub(crate) struct Reader {
    /// `None` only once handed back.
    conn: Option<PgConnection>,
    /// Opened or checked just now: a failure is not the server having dropped it meanwhile.
    pub(crate) checked: bool,
    opened: Instant,
    readers: Arc<Readers>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Readers {
    pub(crate) fn new(options: Arc<PgConnectOptions>) -> Readers {
        Readers { options, permits: Arc::new(Semaphore::new(READERS)), idle: Mutex::new(Some(Vec::new())) }
    }

    fn idle(&self) -> MutexGuard<'_, Option<Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection: the one handed back last (its statements are the likeliest to be
    /// prepared), checked first if it sat unused a while, or a new one. Waits at most
    /// [`super::WAIT_FOR_CONNECTION`].
    pub(crate) async fn take(self: &Arc<Self>) -> Result<Reader, StoreError> {
        timeout(super::WAIT_FOR_CONNECTION, self.take_unbounded())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut.into()))
    }

    async fn take_unbounded(self: &Arc<Self>) -> Result<Reader, StoreError> {
        let closed = || StoreError::from(sqlx::Error::PoolClosed);
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| closed())?;
        loop {
            let last = self.idle().as_mut().ok_or_else(closed)?.pop();
            let Some(Idle { mut conn, opened, since }) = last else { break };
            if opened.elapsed() >= super::CONNECTION_LIFETIME {
                let _ = timeout(CHECK_TIMEOUT, conn.close()).await;
                continue;
            }
            if since.elapsed() < super::CHECK_CONNECTIONS_IDLE_FOR {
                return Ok(self.reader(conn, false, opened, permit));
            }
            if let Ok(Ok(())) = timeout(CHECK_TIMEOUT, conn.ping()).await {
                return Ok(self.reader(conn, true, opened, permit));
            }
        }
        let conn = self.options.connect().await?;
        Ok(self.reader(conn, true, Instant::now(), permit))
    }

    fn reader(
        self: &Arc<Self>,
        conn: PgConnection,
        checked: bool,
        opened: Instant,
        permit: OwnedSemaphorePermit,
    ) -> Reader {
        Reader { conn: Some(conn), checked, opened, readers: Arc::clone(self), permit: Some(permit) }
    }

    fn hand_back(&self, conn: PgConnection, opened: Instant) {
        if let Some(idle) = self.idle().as_mut() {
            idle.push(Idle { conn, opened, since: Instant::now() });
        }
    }

    /// Closes the idle connections; later asks fail as a closed pool's do, and a connection in
    /// use is closed when its statement finishes.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = self.idle().take().unwrap_or_default();
        for it in idle {
            let _ = timeout(CHECK_TIMEOUT, it.conn.close()).await;
        }
    }
}

impl Reader {
    /// The connection, to run a statement on.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a reader holds its connection until handed back")
    }

    /// Hands the connection back once its statement has finished.
    pub(crate) fn done(mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.hand_back(conn, self.opened);
        }
    }

    /// Replaces the connection (one the server dropped) with a new one, under the same permit.
    pub(crate) async fn reconnect(&mut self) -> Result<(), StoreError> {
        let conn = timeout(super::WAIT_FOR_CONNECTION, self.readers.options.connect())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))?;
        self.conn = Some(conn);
        self.opened = Instant::now();
        self.checked = true;
        Ok(())
    }
}

impl Drop for Reader {
    /// A reader not handed back (its statement failed, or its request went away, perhaps halfway
    /// through the statement) is checked in a task of its own: sqlx reads what is left of the
    /// statement's answer before the check's round trip. It is handed back if the check succeeds
    /// within [`CHECK_TIMEOUT`], closed otherwise; the permit is held until then.
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let readers = Arc::clone(&self.readers);
        let (opened, permit) = (self.opened, self.permit.take());
        runtime.spawn(async move {
            if let Ok(Ok(())) = timeout(CHECK_TIMEOUT, conn.ping()).await {
                readers.hand_back(conn, opened);
            } else {
                let _ = timeout(CHECK_TIMEOUT, conn.close()).await;
            }
            drop(permit);
        });
    }
}

/// Whether a statement failed because the server had dropped its connection: the connection
/// itself failed, or the server said it is ending it (SQLSTATE class 08, connection exception,
/// or 57P, an operator ending it or the server shutting down or restarting).
pub(crate) fn dropped_by_server(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(inner) => {
            inner.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::dropped_by_server;

    #[test]
    fn only_a_lost_connection_is_read_again() {
        let io = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert!(dropped_by_server(&io));
        assert!(dropped_by_server(&sqlx::Error::Protocol("unexpected end".into())));
        assert!(!dropped_by_server(&sqlx::Error::RowNotFound));
        assert!(!dropped_by_server(&sqlx::Error::PoolTimedOut));
        assert!(!dropped_by_server(&sqlx::Error::ColumnNotFound("id".into())));
    }
}
