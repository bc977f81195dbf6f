//! Reads on the calling thread (SQLite only): the statements every API request runs (the caller
//! and their roles, the user asked for) through rusqlite on a connection of this node's own,
//! instead of through the pool.
//!
//! sqlx runs each SQLite statement on a worker thread per connection and hands the statement and
//! every row across threads; for a read by primary key that hand-off (thread wake-ups, channel
//! waits, the connection's check on its way back to the pool) cost about ten times what SQLite
//! itself spent (docs/performance.md). A point read takes microseconds, so running it on the
//! request's thread holds that thread no longer than the hand-off did.
//!
//! What a read sees is unchanged: each statement is its own snapshot of what has committed, in
//! WAL mode readers never wait for the writer, and the connections are `query_only`. If SQLite
//! answers busy (a reader can, briefly, while another connection recovers the WAL index), the
//! read is not retried here, where a wait would hold the thread: the caller asks the pool, which
//! waits without holding one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use keyward_core::directory::User;
use keyward_core::ids::ObjectId;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use time::OffsetDateTime;

use super::{Columns, USER_BY_ID, USER_BY_UPN, UserAndRoles, UserRolesValues, roles, user_from};
use crate::error::StoreError;
use crate::sql::fmt_ts;

/// Idle connections kept; more are opened while requests overlap and closed when they are done.
const IDLE: usize = 8;

/// A small pool of read-only rusqlite connections to the store's database file.
pub(crate) struct DirectReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for DirectReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectReads").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Why a direct read gave no answer.
enum Failure {
    /// The database was busy: ask the pool.
    Busy,
    Store(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Failure {
        match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Failure::Busy,
            _ => Failure::Store(StoreError::Other(err.to_string())),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Failure {
        Failure::Store(err)
    }
}

/// A rusqlite row whose columns are found by name through a map made once per statement text:
/// rusqlite finds a name by comparing it with every column's, which for a user's fifty columns
/// cost more than running the statement.
struct Indexed<'a> {
    row: &'a rusqlite::Row<'a>,
    columns: &'a HashMap<String, usize>,
}

impl Indexed<'_> {
    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> Result<T, StoreError> {
        let idx = *self.columns.get(column).ok_or_else(|| StoreError::Other(format!("no column {column}")))?;
        self.row.get(idx).map_err(|err| StoreError::Other(format!("column {column}: {err}")))
    }
}

impl Columns for Indexed<'_> {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.get(column)
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        self.get(column)
    }
}

/// The columns of `statement` by name, made once per statement text in `map`.
fn columns(
    map: &'static OnceLock<HashMap<String, usize>>,
    statement: &rusqlite::Statement<'_>,
) -> &'static HashMap<String, usize> {
    map.get_or_init(|| {
        statement.column_names().into_iter().enumerate().map(|(idx, name)| (name.to_owned(), idx)).collect()
    })
}

/// The columns of `USER_AND_ROLES`, `USER_BY_ID` and `USER_BY_UPN`, one map per statement.
static USER_AND_ROLES_COLUMNS: OnceLock<HashMap<String, usize>> = OnceLock::new();
static USER_BY_ID_COLUMNS: OnceLock<HashMap<String, usize>> = OnceLock::new();
static USER_BY_UPN_COLUMNS: OnceLock<HashMap<String, usize>> = OnceLock::new();

impl DirectReads {
    /// Direct reads of the database file at `path`, which the pool has opened (and migrated).
    pub(crate) fn new(path: PathBuf) -> DirectReads {
        DirectReads { path, idle: Mutex::new(Vec::new()) }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        // Opened read-write (a read-only connection cannot create the WAL index if it is
        // missing) and made unable to write by `query_only`.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // rusqlite waits 5 s for a busy database by default; here a wait would hold the thread.
        conn.busy_timeout(Duration::ZERO)?;
        conn.pragma_update(None, "query_only", true)?;
        // A point read touches a few pages; the operating system caches the file too.
        conn.pragma_update(None, "cache_size", -2048)?;
        conn.set_prepared_statement_cache_capacity(8);
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one). `None`: the database was busy and the
    /// caller should ask the pool.
    fn run<T>(&self, read: impl FnOnce(&Connection) -> Result<T, Failure>) -> Result<Option<T>, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => match self.open() {
                Ok(conn) => conn,
                Err(err) => return answer(Err(err.into())),
            },
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < IDLE {
            idle.push(conn);
        }
        answer(result)
    }

    /// `USER_AND_ROLES`: the user `id`, the role assignments that apply to them at `now`, and
    /// whether they have multi-valued properties (not read here). `Ok(None)`: ask the pool.
    pub(crate) fn user_and_roles(
        &self,
        tenant: &ObjectId,
        id: &ObjectId,
        now: OffsetDateTime,
    ) -> Result<Option<Option<UserRolesValues>>, StoreError> {
        self.run(|conn| {
            let mut statement = conn.prepare_cached(&roles::USER_AND_ROLES)?;
            let columns = columns(&USER_AND_ROLES_COLUMNS, &statement);
            let now = fmt_ts(now);
            let mut rows = statement.query(rusqlite::named_params! {
                "$1": tenant.as_str(), "$2": id.as_str(), "$3": true, "$4": now,
            })?;
            let mut folded = UserAndRoles::default();
            while let Some(row) = rows.next()? {
                folded.push(&Indexed { row, columns })?;
            }
            Ok(folded.finish())
        })
    }

    /// One user by id, or by user principal name if `key` is not an id (lowercased by the
    /// caller), and whether they have multi-valued properties (not read here). `Ok(None)`: ask
    /// the pool.
    pub(crate) fn find_user(
        &self,
        tenant: &ObjectId,
        key: &str,
        by_id: bool,
    ) -> Result<Option<Option<(User, bool)>>, StoreError> {
        self.run(|conn| {
            let (sql, map) =
                if by_id { (&*USER_BY_ID, &USER_BY_ID_COLUMNS) } else { (&*USER_BY_UPN, &USER_BY_UPN_COLUMNS) };
            let mut statement = conn.prepare_cached(sql)?;
            let columns = columns(map, &statement);
            let mut rows = statement.query(rusqlite::named_params! { "$1": tenant.as_str(), "$2": key })?;
            match rows.next()? {
                Some(row) => {
                    let row = Indexed { row, columns };
                    Ok(Some((user_from(&row)?, row.flag("has_values")?)))
                }
                None => Ok(None),
            }
        })
    }
}

fn answer<T>(result: Result<T, Failure>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Failure::Busy) => Ok(None),
        Err(Failure::Store(err)) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path no other test uses.
    fn unique(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |it| it.as_nanos());
        std::env::temp_dir().join(format!("keyward-direct-{name}-{}-{nanos}.db", std::process::id()))
    }

    fn database() -> PathBuf {
        let path = unique("db");
        let conn = Connection::open(&path).expect("create");
        conn.pragma_update(None, "journal_mode", "wal").expect("wal");
        conn.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('a');").expect("table");
        path
    }

    #[test]
    fn direct_connections_read_but_cannot_write() {
        let path = database();
        let reads = DirectReads::new(path.clone());
        let read = reads.run(|conn| Ok(conn.query_row("SELECT v FROM t", [], |row| row.get::<_, String>(0))?));
        assert_eq!(read, Ok(Some("a".to_owned())));
        let write = reads.run(|conn| Ok(conn.execute("DELETE FROM t", [])?));
        assert!(matches!(write, Err(StoreError::Other(_))), "a direct connection wrote: {write:?}");
        let kept = Connection::open(&path).expect("open").query_row("SELECT count(*) FROM t", [], |row| row.get(0));
        assert_eq!(kept, Ok(1_i64));
        assert_eq!(reads.idle.lock().expect("idle").len(), 1, "the connection went back to the idle list");
        drop(reads);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn a_busy_database_sends_the_read_to_the_pool() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert_eq!(answer::<()>(Err(busy.into())), Ok(None));
        let corrupt = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), None);
        assert!(matches!(answer::<()>(Err(corrupt.into())), Err(StoreError::Other(_))));
    }

    #[test]
    fn a_missing_database_is_an_error_not_a_new_file() {
        let path = unique("missing");
        let reads = DirectReads::new(path.clone());
        assert!(reads.run(|_| Ok(())).is_err());
        assert!(!path.exists(), "opening created the file");
    }
}
