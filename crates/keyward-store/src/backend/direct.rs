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
//! What a read sees is unchanged: each statement is its own snapshot of what has committed
//! (the caller and the user `GET /users/{id}` names share one, `user_and_roles_and_user`;
//! callers and users kept while nothing commits, `kept_users`, are what that snapshot holds), in
//! WAL mode readers never wait for the writer, and the connections are `query_only`. If SQLite
//! answers busy (a reader can, briefly, while another connection recovers the WAL index), the
//! read is not retried here, where a wait would hold the thread: the caller asks the pool, which
//! waits without holding one.
//!
//! The same connections serve the read transactions a caller declares short
//! (`Store::read_short`: a sign-in step's or the token endpoint's few point reads), through
//! `lite`'s query API. `begin` takes the transaction's snapshot at once, so none of its
//! statements can find the database busy; if the snapshot cannot be taken, or no connection is
//! idle, the transaction is begun on the pool instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use keyward_core::directory::User;
use keyward_core::fnv::Fnv;
use keyward_core::ids::ObjectId;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use time::OffsetDateTime;

use super::client_cache::{CLIENT_CHANGES_AT, CLIENT_VERSION};
use super::kept_users::KeptUsers;
use super::{
    APPLICATION_BY_APP_ID, CREDENTIALS_OF, Columns, SERVICE_PRINCIPAL_BY_APP_ID, USER_BY_ID, USER_BY_UPN, UserAndRoles,
    UserRolesValues, assignment_from, credential_from, lite, oauth, roles, service_principal_from, user_from,
};
use crate::error::StoreError;
use crate::sql::{fmt_ts, parse_ts};

/// Idle connections kept; more are opened while requests overlap and closed when they are done.
const IDLE: usize = 8;

/// How long a connection serves before it is closed and another opened: a bound on how long
/// anything a connection holds (its page cache, its view of which file is the database) lasts.
const MAX_AGE: Duration = Duration::from_secs(60);

/// How long after a failed open the next is tried; meanwhile the pool answers.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A small pool of read-only rusqlite connections to the store's database file.
///
/// Connections are opened (which reads the schema) on a thread of their own, never on the
/// caller's: a read that finds no idle connection is answered by the pool while one opens.
pub(crate) struct DirectReads {
    path: PathBuf,
    /// The database file's identity when the store opened it: a connection opened after the file
    /// was replaced (a restore under a running server) would read another database than the
    /// pool writes, so it is not used.
    identity: Option<FileIdentity>,
    state: Mutex<State>,
    /// An open is under way (one at a time).
    opening: AtomicBool,
}

#[derive(Default)]
struct State {
    idle: Vec<Kept>,
    closed: bool,
    /// When an open last failed; none is tried again before `RETRY_AFTER`.
    failed_at: Option<Instant>,
    /// The database file was replaced: no connection is opened again (the pool answers).
    replaced: bool,
}

struct Kept {
    conn: lite::Conn,
    opened: Instant,
}

/// Why no connection was opened.
enum Unopened {
    /// Another file is at the path now.
    Replaced,
    Failed(String),
}

/// Clears the open-under-way flag when dropped.
struct Opening<'a>(&'a AtomicBool);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A file's device and inode (unix); elsewhere files are not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileIdentity(u64, u64);

impl FileIdentity {
    #[cfg(unix)]
    pub(super) fn of(path: &std::path::Path) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|it| FileIdentity(it.dev(), it.ino()))
    }

    #[cfg(not(unix))]
    pub(super) fn of(_path: &std::path::Path) -> Option<FileIdentity> {
        None
    }
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
        if lite::is_busy(&err) { Failure::Busy } else { Failure::Store(StoreError::Other(err.to_string())) }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Failure {
        Failure::Store(err)
    }
}

/// A statement's columns: their names in order, and each name's position. Hashed with FNV-1a
/// (`keyward_core::fnv`): the names are the statement's own, short, and never chosen by a caller,
/// and SipHash took several percent of an API read.
struct ColumnMap {
    names: Vec<String>,
    positions: HashMap<String, usize, Fnv>,
}

/// A rusqlite row whose columns are found by name through a map made once per statement text:
/// rusqlite finds a name by comparing it with every column's, which for a user's fifty columns
/// cost more than running the statement. The decoders read most columns in the statement's
/// order, so the column after the last one read is tried first, and the map only when that is
/// not the one named.
struct Indexed<'a> {
    row: &'a rusqlite::Row<'a>,
    columns: &'a ColumnMap,
    next: std::cell::Cell<usize>,
}

impl<'a> Indexed<'a> {
    fn new(row: &'a rusqlite::Row<'a>, columns: &'a ColumnMap) -> Indexed<'a> {
        Indexed { row, columns, next: std::cell::Cell::new(0) }
    }

    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> Result<T, StoreError> {
        let guess = self.next.get();
        let idx = if self.columns.names.get(guess).is_some_and(|it| it == column) {
            guess
        } else {
            *self.columns.positions.get(column).ok_or_else(|| StoreError::Other(format!("no column {column}")))?
        };
        self.next.set(idx + 1);
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

    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(column)
    }
}

/// The columns of `statement` by name, made once per statement text in `map`.
fn columns(map: &'static OnceLock<ColumnMap>, statement: &rusqlite::Statement<'_>) -> &'static ColumnMap {
    map.get_or_init(|| {
        let names: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
        // `Indexed` tries the next column first: with two columns of one name it could answer
        // the first where the map answers the last.
        debug_assert!(
            names.iter().enumerate().all(|(idx, name)| !names[..idx].contains(name)),
            "a statement read by name repeats a column name: {names:?}"
        );
        let positions = names.iter().enumerate().map(|(idx, name)| (name.clone(), idx)).collect();
        ColumnMap { names, positions }
    })
}

/// The columns of `USER_AND_ROLES`, `USER_BY_ID` and `USER_BY_UPN`, one map per statement, and of
/// `Store::find_client`'s four.
static USER_AND_ROLES_COLUMNS: OnceLock<ColumnMap> = OnceLock::new();
static APPLICATION_COLUMNS: OnceLock<ColumnMap> = OnceLock::new();
static SERVICE_PRINCIPAL_COLUMNS: OnceLock<ColumnMap> = OnceLock::new();
static CREDENTIAL_COLUMNS: OnceLock<ColumnMap> = OnceLock::new();
static ASSIGNMENT_COLUMNS: OnceLock<ColumnMap> = OnceLock::new();
static USER_BY_ID_COLUMNS: OnceLock<ColumnMap> = OnceLock::new();
static USER_BY_UPN_COLUMNS: OnceLock<ColumnMap> = OnceLock::new();

impl DirectReads {
    /// Direct reads of the database file at `path`, which the pool has opened (and migrated); the
    /// first connections open in the background.
    pub(crate) fn new(path: PathBuf) -> Arc<DirectReads> {
        let identity = FileIdentity::of(&path);
        let reads = Arc::new(DirectReads { path, identity, state: Mutex::default(), opening: AtomicBool::new(false) });
        reads.open_in_background(Vec::new());
        reads
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the idle connections; later reads are left to the pool.
    pub(crate) fn close(&self) {
        let idle = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        drop(idle);
    }

    fn open(&self) -> Result<Connection, Unopened> {
        // Opened read-write (a read-only connection cannot create the WAL index if it is
        // missing) and made unable to write by `query_only`. Never created: the pool made it.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| Unopened::Failed(err.to_string()))?;
        if FileIdentity::of(&self.path) != self.identity {
            return Err(Unopened::Replaced);
        }
        let configured: rusqlite::Result<()> = (|| {
            // rusqlite waits 5 s for a busy database by default; here a wait would hold the thread.
            conn.busy_timeout(Duration::ZERO)?;
            conn.pragma_update(None, "query_only", true)?;
            // A point read touches a few pages; the operating system caches the file too.
            conn.pragma_update(None, "cache_size", -2048)?;
            // Reads the schema now rather than at the first statement.
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            Ok(())
        })();
        configured.map_err(|err| Unopened::Failed(err.to_string()))?;
        // The read transactions' statements too (`begin`): a sign-in's are a few dozen.
        conn.set_prepared_statement_cache_capacity(lite::STATEMENT_CACHE);
        Ok(conn)
    }

    /// Closes `stale` and opens one connection on a thread of its own, unless an open is under
    /// way, the reads are closed, or an open failed a moment ago.
    fn open_in_background(self: &Arc<Self>, stale: Vec<Kept>) {
        {
            let state = self.state();
            let failed_recently = state.failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER);
            if state.closed || state.replaced || failed_recently || self.opening.swap(true, Ordering::AcqRel) {
                return;
            }
        }
        let reads = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("keyward-sqlite-open".into()).spawn(move || {
            // Another open may start once this one ends, however it ends (a panic included).
            let _opening = Opening(&reads.opening);
            drop(stale);
            let opened = reads.open();
            let mut state = reads.state();
            match opened {
                Ok(conn) if !state.closed && state.idle.len() < IDLE => {
                    state.idle.push(Kept { conn: lite::Conn::query_only(conn), opened: Instant::now() });
                }
                Ok(_) => {}
                Err(Unopened::Replaced) => {
                    tracing::warn!(path = %reads.path.display(), "the database file was replaced after the server opened it; reads go through the pool from now on; restart the server");
                    state.replaced = true;
                }
                Err(Unopened::Failed(err)) => {
                    tracing::warn!(path = %reads.path.display(), error = %err, "direct SQLite reads: cannot open a connection; the pool answers instead");
                    state.failed_at = Some(Instant::now());
                }
            }
        });
        if spawned.is_err() {
            self.opening.store(false, Ordering::Release);
        }
    }

    /// An idle connection, if one is ready; opens one more in the background when none was, and
    /// a fresh one for each that aged out, so as many are kept as the reads use.
    fn take(self: &Arc<Self>) -> Option<Kept> {
        let mut stale = Vec::new();
        let kept = {
            let mut state = self.state();
            let mut found = None;
            while let Some(kept) = state.idle.pop() {
                if kept.opened.elapsed() < MAX_AGE {
                    found = Some(kept);
                    break;
                }
                stale.push(kept);
            }
            found
        };
        if kept.is_none() || !stale.is_empty() {
            self.open_in_background(stale);
        }
        kept
    }

    /// Gives back a connection opened at `opened`. One left inside a transaction (a rollback
    /// that failed) would keep answering from its old snapshot: it is closed instead.
    pub(super) fn put_back(&self, conn: lite::Conn, opened: Instant) {
        let mut state = self.state();
        if !state.closed && state.idle.len() < IDLE && conn.db().is_autocommit() {
            state.idle.push(Kept { conn, opened });
        }
    }

    /// Runs `read` on an idle connection. `None`: no connection was ready or the database was
    /// busy, and the caller should ask the pool.
    fn run<T>(self: &Arc<Self>, read: impl FnOnce(&Connection) -> Result<T, Failure>) -> Result<Option<T>, StoreError> {
        self.run_on(|conn| read(conn.db()))
    }

    /// [`run`](Self::run) with the connection's kept users (`kept_users`), the only way to them:
    /// `hits` answers from the entries alone if it can, at the data version read just before;
    /// otherwise `read` runs in a read transaction, at the data version that transaction sees.
    ///
    /// Most requests find all they need kept, and the version is then read on its own: a read
    /// transaction's `BEGIN` and `COMMIT` would agree the version with nothing else read. The
    /// entries hold what a statement would have read at that version, so a change committed
    /// before it counts, as it does in the transaction. When something is not kept, the version
    /// is read again in the transaction: a commit between the two is seen there.
    fn run_kept<T>(
        self: &Arc<Self>,
        hits: impl FnOnce(&KeptUsers) -> Option<T>,
        read: impl FnOnce(&Connection, &mut KeptUsers) -> Result<T, Failure>,
    ) -> Result<Option<T>, StoreError> {
        self.run_on(|conn| match conn.db_and_kept() {
            Some((db, kept)) => {
                kept.at(data_version(db)?);
                if let Some(found) = hits(kept) {
                    return Ok(found);
                }
                in_read_transaction(db, |db| {
                    kept.at(data_version(db)?);
                    read(db, kept)
                })
            }
            // Every direct connection is opened `query_only` and keeps its reads.
            None => Err(Failure::Store(StoreError::Other("a direct connection without its kept users".into()))),
        })
    }

    /// Runs `read` on an idle connection and gives it back. `None`: as [`run`](Self::run).
    fn run_on<T>(
        self: &Arc<Self>,
        read: impl FnOnce(&mut lite::Conn) -> Result<T, Failure>,
    ) -> Result<Option<T>, StoreError> {
        let Some(mut kept) = self.take() else { return Ok(None) };
        let result = read(&mut kept.conn);
        self.put_back(kept.conn, kept.opened);
        answer(result)
    }

    /// Begins a read transaction on an idle connection, its snapshot taken now (`BEGIN` alone
    /// takes none until the first statement): every statement after it reads that snapshot and
    /// none can find the database busy. `None`: no connection was ready, or the database was
    /// busy or failed, and the caller should begin one on the pool (which waits without holding
    /// the thread, and reports a failure itself).
    pub(crate) fn begin(self: &Arc<Self>) -> Option<lite::Open> {
        let kept = self.take()?;
        // Dropped, `open` rolls back whatever began and gives the connection back.
        let open = lite::Open::new(kept.conn, lite::Home::Reads(Arc::clone(self), kept.opened));
        let db = open.db();
        let began = db
            .execute_batch("BEGIN")
            .and_then(|()| db.prepare_cached("PRAGMA schema_version").and_then(|mut it| it.query_row([], |_| Ok(()))));
        match began {
            Ok(()) => Some(open),
            Err(err) => {
                if !lite::is_busy(&err) {
                    tracing::warn!(error = %err, "direct SQLite read transaction: cannot begin one; the pool answers instead");
                }
                None
            }
        }
    }

    /// `USER_AND_ROLES_SPLIT`: the user `id`, the role assignments that apply to them at `now`, and
    /// whether they have multi-valued properties (not read here). `Ok(None)`: ask the pool.
    pub(crate) fn user_and_roles(
        self: &Arc<Self>,
        tenant: &ObjectId,
        id: &ObjectId,
        now: OffsetDateTime,
    ) -> Result<Option<Option<UserRolesValues>>, StoreError> {
        self.run_kept(
            |kept| kept.caller(tenant, id, now).map(Some),
            |conn, kept| caller_in(conn, kept, tenant, id, now),
        )
    }

    /// One user by id, or by user principal name if `key` is not an id (lowercased by the
    /// caller), and whether they have multi-valued properties (not read here). `Ok(None)`: ask
    /// the pool.
    pub(crate) fn find_user(
        self: &Arc<Self>,
        tenant: &ObjectId,
        key: &str,
        by_id: bool,
    ) -> Result<Option<Option<FoundUser>>, StoreError> {
        self.run_kept(
            |kept| kept.user(tenant, key, by_id).map(Some),
            |conn, kept| kept_user_in(conn, kept, tenant, key, by_id),
        )
    }

    /// [`user_and_roles`](Self::user_and_roles), then [`find_user`](Self::find_user) for `key`
    /// if the user `id` was found, in one read transaction: one snapshot, and SQLite's read lock
    /// (two `fcntl` calls) taken once. `Ok(None)`: ask the pool.
    pub(crate) fn user_and_roles_and_user(
        self: &Arc<Self>,
        tenant: &ObjectId,
        id: &ObjectId,
        now: OffsetDateTime,
        key: &str,
        by_id: bool,
    ) -> Result<Option<Option<CallerAndUser>>, StoreError> {
        self.run_kept(
            |kept| Some(Some((kept.caller(tenant, id, now)?, Some(kept.user(tenant, key, by_id)?)))),
            |conn, kept| {
                let Some(caller) = caller_in(conn, kept, tenant, id, now)? else { return Ok(None) };
                Ok(Some((caller, kept_user_in(conn, kept, tenant, key, by_id)?)))
            },
        )
    }
}

/// A caller with their roles, and the user they asked for if there is one, each with whether
/// they have multi-valued properties (not read here).
type CallerAndUser = (UserRolesValues, Option<FoundUser>);

/// A user, shared with the connection's kept entries, and whether they have multi-valued
/// properties (not read here).
type FoundUser = (Arc<User>, bool);

/// Runs `read` in a read transaction on `conn`, its `BEGIN` and `COMMIT` cached statements
/// (rusqlite's `Transaction` prepares them again each time). A transaction left open because
/// its `ROLLBACK` failed is not kept (`put_back`).
fn in_read_transaction<T>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> Result<T, Failure>,
) -> Result<T, Failure> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = read(conn);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn.prepare_cached(end).and_then(|mut it| it.execute([]));
    let value = result?;
    ended?;
    Ok(value)
}

/// The database's data version: in the read transaction under way on `conn`, or now if none is
/// (`kept_users`).
fn data_version(conn: &Connection) -> Result<i64, Failure> {
    Ok(conn.prepare_cached("PRAGMA data_version")?.query_row([], |row| row.get(0))?)
}

/// The caller `id` with the role assignments that apply at `now`: kept, or read (and kept until
/// their roles next change, if worth it). In the read transaction whose data version `kept` is
/// at.
fn caller_in(
    conn: &Connection,
    kept: &mut KeptUsers,
    tenant: &ObjectId,
    id: &ObjectId,
    now: OffsetDateTime,
) -> Result<Option<UserRolesValues>, Failure> {
    if let Some(found) = kept.caller(tenant, id, now) {
        return Ok(Some(found));
    }
    let Some(found) = user_and_roles_in(conn, tenant, id, now)? else { return Ok(None) };
    if !kept.worth_keeping(id) {
        return Ok(Some(found));
    }
    // A time that does not read as one leaves the caller unkept (read at every request), not the
    // request refused.
    if let Ok(until) = next_role_change(conn, tenant, id, now)?.as_deref().map(parse_ts).transpose() {
        kept.keep_caller(tenant, id, now, until, &found);
    }
    Ok(Some(found))
}

/// `CLIENT_CHANGES_AT`: when the role assignments that apply to `principal` next change after
/// `now`, as stored (`None`: never).
fn next_role_change(
    conn: &Connection,
    tenant: &ObjectId,
    principal: &ObjectId,
    now: OffsetDateTime,
) -> Result<Option<String>, Failure> {
    let params = rusqlite::named_params! {
        "$1": tenant.as_str(), "$2": principal.as_str(), "$3": true, "$4": fmt_ts(now),
    };
    Ok(conn.prepare_cached(CLIENT_CHANGES_AT)?.query_row(params, |row| row.get(0))?)
}

/// [`user_in`]: kept, or read and kept. In the read transaction whose data version `kept` is at.
fn kept_user_in(
    conn: &Connection,
    kept: &mut KeptUsers,
    tenant: &ObjectId,
    key: &str,
    by_id: bool,
) -> Result<Option<FoundUser>, Failure> {
    if let Some(found) = kept.user(tenant, key, by_id) {
        return Ok(Some(found));
    }
    let found = user_in(conn, tenant, key, by_id)?;
    if let Some(found) = &found {
        kept.keep_user(tenant, key, by_id, found);
    }
    Ok(found)
}

fn user_and_roles_in(
    conn: &Connection,
    tenant: &ObjectId,
    id: &ObjectId,
    now: OffsetDateTime,
) -> Result<Option<UserRolesValues>, Failure> {
    let mut statement = conn.prepare_cached(&roles::USER_AND_ROLES_SPLIT)?;
    let columns = columns(&USER_AND_ROLES_COLUMNS, &statement);
    let now = fmt_ts(now);
    let mut rows = statement.query(rusqlite::named_params! {
        "$1": tenant.as_str(), "$2": id.as_str(), "$3": true, "$4": now,
    })?;
    let mut folded = UserAndRoles::default();
    while let Some(row) = rows.next()? {
        folded.push(&Indexed::new(row, columns))?;
    }
    Ok(folded.finish())
}

fn user_in(conn: &Connection, tenant: &ObjectId, key: &str, by_id: bool) -> Result<Option<FoundUser>, Failure> {
    let (sql, map) = if by_id { (&*USER_BY_ID, &USER_BY_ID_COLUMNS) } else { (&*USER_BY_UPN, &USER_BY_UPN_COLUMNS) };
    let params = rusqlite::named_params! { "$1": tenant.as_str(), "$2": key };
    let decode = |row: &Indexed<'_>| Ok((Arc::new(user_from(row)?), row.flag("has_values")?));
    Ok(decoded(conn, sql, map, params, decode)?.pop())
}

impl DirectReads {
    /// The version of the tenant's clients (see `client_cache`). `Ok(None)`: ask the pool.
    pub(crate) fn client_version(self: &Arc<Self>, tenant: &ObjectId) -> Result<Option<i64>, StoreError> {
        self.run(|conn| {
            let mut statement = conn.prepare_cached(CLIENT_VERSION)?;
            let params = rusqlite::named_params! { "$1": tenant.as_str() };
            let version = statement.query_row(params, |row| row.get::<_, i64>(0)).optional()?;
            Ok(version.unwrap_or(0))
        })
    }

    /// `Store::find_client`'s four statements in one read transaction (one snapshot), `app_id`
    /// lowercased by the caller, and when the role assignments that apply to its principal next
    /// change (see `client_cache`). `Ok(None)`: ask the pool.
    pub(crate) fn client(
        self: &Arc<Self>,
        tenant: &ObjectId,
        app_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Option<ClientRead>>, StoreError> {
        self.run(|conn| in_read_transaction(conn, |conn| client_in(conn, tenant, app_id, now)))
    }
}

/// A client as read, and when the role assignments that apply to its principal next change.
type ClientRead = (crate::ClientRecord, Option<OffsetDateTime>);

fn client_in(
    conn: &Connection,
    tenant: &ObjectId,
    app_id: &str,
    now: OffsetDateTime,
) -> Result<Option<ClientRead>, Failure> {
    let by_key = rusqlite::named_params! { "$1": tenant.as_str(), "$2": app_id };
    let decode = |row: &Indexed<'_>| oauth::application_from(row);
    let Some(application) = decoded(conn, &APPLICATION_BY_APP_ID, &APPLICATION_COLUMNS, by_key, decode)?.pop() else {
        return Ok(None);
    };
    let decode = |row: &Indexed<'_>| service_principal_from(row);
    let service_principal =
        decoded(conn, &SERVICE_PRINCIPAL_BY_APP_ID, &SERVICE_PRINCIPAL_COLUMNS, by_key, decode)?.pop();
    let of_application = rusqlite::named_params! { "$1": application.id.as_str() };
    let decode = |row: &Indexed<'_>| credential_from(row);
    let credentials = decoded(conn, CREDENTIALS_OF, &CREDENTIAL_COLUMNS, of_application, decode)?;
    let (principal_roles, until) = match &service_principal {
        Some(principal) => {
            let at = fmt_ts(now);
            let params = rusqlite::named_params! {
                "$1": tenant.as_str(), "$2": principal.id.as_str(), "$3": true, "$4": at,
            };
            let roles = decoded(conn, roles::ASSIGNMENTS_FOR, &ASSIGNMENT_COLUMNS, params, |row: &Indexed<'_>| {
                assignment_from(row, &super::ASSIGNMENT)
            })?;
            let until = next_role_change(conn, tenant, &principal.id, now)?;
            (roles, until.as_deref().map(parse_ts).transpose()?)
        }
        None => (Vec::new(), None),
    };
    Ok(Some((crate::ClientRecord { application, service_principal, credentials, principal_roles }, until)))
}

/// Every row `sql` finds with `params`, decoded by column name (`map`: the statement's columns).
fn decoded<T>(
    conn: &Connection,
    sql: &str,
    map: &'static OnceLock<ColumnMap>,
    params: &[(&str, &dyn rusqlite::ToSql)],
    decode: impl Fn(&Indexed<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, Failure> {
    let mut statement = conn.prepare_cached(sql)?;
    let names = columns(map, &statement);
    let mut rows = statement.query(params)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(decode(&Indexed::new(row, names))?);
    }
    Ok(found)
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

    fn remove(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// Waits for the background open to settle.
    fn settled(reads: &DirectReads) -> usize {
        for _ in 0..500 {
            if !reads.opening.load(Ordering::Acquire) {
                return reads.state().idle.len();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the background open did not finish");
    }

    /// A database and its direct reads, their first connection open.
    fn ready() -> (PathBuf, Arc<DirectReads>) {
        let path = database();
        let reads = DirectReads::new(path.clone());
        assert_eq!(settled(&reads), 1, "a connection opened ahead of the first read");
        (path, reads)
    }

    fn read_v(reads: &Arc<DirectReads>) -> Result<Option<String>, StoreError> {
        reads.run(|conn| Ok(conn.query_row("SELECT v FROM t", [], |row| row.get::<_, String>(0))?))
    }

    #[test]
    fn columns_are_found_by_name_in_any_order() {
        static MAP: OnceLock<ColumnMap> = OnceLock::new();
        let conn = Connection::open_in_memory().expect("open");
        let read = |names: &'static [&'static str]| {
            decoded(&conn, "SELECT 'x' AS a, 'y' AS b, 'z' AS c", &MAP, &[], |row: &Indexed<'_>| {
                names.iter().map(|name| row.text(name).map(Option::unwrap_or_default)).collect::<Result<Vec<_>, _>>()
            })
            .map_err(|err| match err {
                Failure::Busy => StoreError::Other("busy".into()),
                Failure::Store(err) => err,
            })
        };
        // In the statement's order, out of it, the same column twice, and after the last.
        assert_eq!(read(&["a", "b", "c"]), Ok(vec![vec!["x".into(), "y".into(), "z".into()]]));
        assert_eq!(read(&["c", "a", "a", "b", "b", "c"]).map(|rows| rows.concat().concat()), Ok("zxxyyz".to_owned()));
        assert!(read(&["c", "d"]).is_err(), "an unknown column after the last one");
    }

    #[test]
    fn a_read_transaction_ends_whatever_its_read_does() {
        let (path, reads) = ready();
        let read = |fail: bool| {
            reads.run(|conn| {
                in_read_transaction(conn, |conn| {
                    let v = conn.query_row("SELECT v FROM t", [], |row| row.get::<_, String>(0))?;
                    if fail { Err(Failure::Store(StoreError::Other("failed".into()))) } else { Ok(v) }
                })
            })
        };
        assert_eq!(read(false), Ok(Some("a".to_owned())));
        assert_eq!(reads.state().idle.len(), 1, "kept after its commit");
        assert!(matches!(read(true), Err(StoreError::Other(_))));
        assert_eq!(reads.state().idle.len(), 1, "kept after its rollback, not left in the transaction");
        assert!(reads.state().idle.iter().all(|it| it.conn.db().is_autocommit()));
        remove(&path);
    }

    #[test]
    fn a_connection_left_in_a_transaction_is_not_kept() {
        let (path, reads) = ready();
        let left = reads.run(|conn| {
            conn.execute_batch("BEGIN")?;
            conn.query_row("SELECT v FROM t", [], |row| row.get::<_, String>(0))?;
            Err::<(), _>(Failure::Store(StoreError::Other("failed inside the transaction".into())))
        });
        assert!(matches!(left, Err(StoreError::Other(_))), "{left:?}");
        assert_eq!(reads.state().idle.len(), 0, "the connection was closed, not kept");
        assert_eq!(read_v(&reads), Ok(None), "the next read goes to the pool while one opens");
        assert_eq!(settled(&reads), 1);
        assert_eq!(read_v(&reads), Ok(Some("a".to_owned())));
        remove(&path);
    }

    #[test]
    fn direct_connections_read_but_cannot_write() {
        let (path, reads) = ready();
        assert_eq!(read_v(&reads), Ok(Some("a".to_owned())));
        let write = reads.run(|conn| Ok(conn.execute("DELETE FROM t", [])?));
        assert!(matches!(write, Err(StoreError::Other(_))), "a direct connection wrote: {write:?}");
        let kept = Connection::open(&path).expect("open").query_row("SELECT count(*) FROM t", [], |row| row.get(0));
        assert_eq!(kept, Ok(1_i64));
        assert_eq!(settled(&reads), 1, "the connection went back to the idle list");
        reads.close();
        assert_eq!(reads.state().idle.len(), 0, "closing kept a connection");
        assert_eq!(read_v(&reads), Ok(None), "a closed reader left the read to the pool");
        assert_eq!(settled(&reads), 0, "a closed reader opened a connection");
        remove(&path);
    }

    #[test]
    fn a_read_without_an_idle_connection_goes_to_the_pool_while_one_opens() {
        let (path, reads) = ready();
        let first = reads.state().idle.pop().expect("opened ahead");
        assert_eq!(read_v(&reads), Ok(None), "no idle connection: the pool answers");
        assert_eq!(settled(&reads), 1, "one opened for the next read");
        assert_eq!(read_v(&reads), Ok(Some("a".to_owned())));
        drop(first);
        remove(&path);
    }

    #[test]
    fn an_aged_connection_is_replaced() {
        let (path, reads) = ready();
        let old = Instant::now().checked_sub(MAX_AGE + Duration::from_secs(1)).expect("clock");
        reads.state().idle[0].opened = old;
        assert_eq!(read_v(&reads), Ok(None), "the aged connection was used");
        assert_eq!(settled(&reads), 1);
        assert!(reads.state().idle[0].opened > old, "the aged connection was kept");
        assert_eq!(read_v(&reads), Ok(Some("a".to_owned())));
        remove(&path);
    }

    #[test]
    fn a_replaced_database_file_is_not_read() {
        let (path, reads) = ready();
        reads.state().idle.clear();
        // A restore under the running server: another file at the same path.
        let other = database();
        std::fs::rename(&other, &path).expect("replace");
        assert_eq!(read_v(&reads), Ok(None));
        assert_eq!(settled(&reads), 0, "a connection to the replacement was kept");
        assert!(reads.state().replaced, "the replacement was not noted");
        assert_eq!(read_v(&reads), Ok(None));
        assert_eq!(settled(&reads), 0, "a replaced file was opened again");
        remove(&path);
        remove(&other);
    }

    #[test]
    fn a_busy_database_sends_the_read_to_the_pool() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert_eq!(answer::<()>(Err(busy.into())), Ok(None));
        let corrupt = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), None);
        assert!(matches!(answer::<()>(Err(corrupt.into())), Err(StoreError::Other(_))));
    }

    #[test]
    fn a_missing_database_leaves_reads_to_the_pool_and_is_not_created() {
        let path = unique("missing");
        let reads = DirectReads::new(path.clone());
        assert_eq!(settled(&reads), 0);
        assert_eq!(reads.run(|_| Ok(())), Ok(None));
        assert!(reads.state().failed_at.is_some(), "the failed open was not noted");
        assert!(!path.exists(), "opening created the file");
    }

    /// `t`'s value, read inside `open`'s transaction.
    async fn v_in(open: &mut lite::Open) -> Result<String, StoreError> {
        lite::query_scalar::<String>("SELECT v FROM t").fetch_one(open).await
    }

    #[tokio::test]
    async fn a_read_transaction_reads_the_snapshot_taken_as_it_began() {
        let (path, reads) = ready();
        let mut open = reads.begin().expect("an idle connection");
        // Committed after `begin` but before the transaction's first statement.
        let other = Connection::open(&path).expect("open");
        other.execute("UPDATE t SET v = 'b'", []).expect("update");
        assert_eq!(v_in(&mut open).await, Ok("a".to_owned()), "the snapshot was not taken at begin");
        other.execute("UPDATE t SET v = 'c'", []).expect("update");
        assert_eq!(v_in(&mut open).await, Ok("a".to_owned()), "the snapshot moved");
        assert_eq!(reads.state().idle.len(), 0, "the connection is in use");
        drop(open);
        assert_eq!(reads.state().idle.len(), 1, "the dropped transaction's connection went back");
        let mut open = reads.begin().expect("the connection again");
        assert_eq!(v_in(&mut open).await, Ok("c".to_owned()));
        open.commit(None).await.expect("commit a read transaction");
        assert_eq!(reads.state().idle.len(), 1, "the committed transaction's connection went back");
        remove(&path);
    }

    #[tokio::test]
    async fn a_read_transaction_cannot_write() {
        let (path, reads) = ready();
        let mut open = reads.begin().expect("an idle connection");
        let write = lite::query("DELETE FROM t").execute(&mut open).await;
        assert!(write.is_err(), "a read transaction wrote");
        drop(open);
        let kept = Connection::open(&path).expect("open").query_row("SELECT count(*) FROM t", [], |row| row.get(0));
        assert_eq!(kept, Ok(1_i64));
        assert_eq!(reads.state().idle.len(), 1);
        remove(&path);
    }

    #[tokio::test]
    async fn a_read_transaction_that_cannot_begin_is_left_to_the_pool() {
        let (path, reads) = ready();
        // `BEGIN` fails on a connection inside a transaction (which `put_back` never keeps; here
        // the stand-in for a failure).
        let kept = reads.state().idle.pop().expect("opened ahead");
        kept.conn.db().execute_batch("BEGIN").expect("begin");
        reads.state().idle.push(kept);
        assert!(reads.begin().is_none(), "a failed begin handed out a transaction");
        let kept = reads.state().idle.pop().expect("the connection went back");
        assert!(kept.conn.db().is_autocommit(), "the connection was left inside a transaction");
        reads.state().idle.push(kept);
        let mut open = reads.begin().expect("the connection again");
        assert_eq!(v_in(&mut open).await, Ok("a".to_owned()));
        drop(open);
        remove(&path);
    }

    /// A user to keep (the kept entries' own type).
    fn kept_user(tenant: &ObjectId) -> FoundUser {
        use keyward_core::directory::{Domain, Tenant, UserDraft, new_user};
        let tenant = Tenant {
            id: tenant.clone(),
            display_name: "Contoso".into(),
            created: OffsetDateTime::UNIX_EPOCH,
            domains: vec![Domain { name: "contoso.test".into(), is_default: true, is_initial: true }],
        };
        let draft = UserDraft {
            user_principal_name: Some("adele@contoso.test".into()),
            display_name: Some("Adele Vance".into()),
            mail_nickname: Some("adele".into()),
            account_enabled: Some(true),
            password: Some(keyward_core::secret::Secret::new("correct horse battery")),
            ..UserDraft::default()
        };
        let id = ObjectId::parse("00000000-0000-0000-0000-000000000001").expect("guid");
        (Arc::new(new_user(&tenant, id, draft, OffsetDateTime::UNIX_EPOCH).expect("valid").user), false)
    }

    /// When everything is kept, the data version is read on its own, with no read transaction;
    /// a commit by another connection since still empties the entries before they are used.
    #[test]
    fn kept_entries_answer_alone_only_while_nothing_commits() {
        let (path, reads) = ready();
        let tenant = ObjectId::parse("00000000-0000-0000-0000-0000000000aa").expect("guid");
        let found = kept_user(&tenant);
        // Read (the stand-in for a statement) and kept.
        let kept = reads.run_kept(
            |_| None,
            |_, kept| {
                kept.keep_user(&tenant, "adele", false, &found);
                Ok("read")
            },
        );
        assert_eq!(kept, Ok(Some("read")));
        let lookup = || {
            reads.run_kept(
                |kept| kept.user(&tenant, "adele", false).map(|_| "kept"),
                |conn, _| {
                    assert!(!conn.is_autocommit(), "a miss reads in a read transaction");
                    Ok("read again")
                },
            )
        };
        assert_eq!(lookup(), Ok(Some("kept")), "nothing committed: the entry answers");
        assert_eq!(lookup(), Ok(Some("kept")));
        let idle = reads.state().idle.pop().expect("the connection went back");
        assert!(idle.conn.db().is_autocommit(), "the hit left no transaction open");
        reads.state().idle.push(idle);
        // Another connection (in this process or another) commits.
        Connection::open(&path).expect("open").execute("UPDATE t SET v = 'b'", []).expect("update");
        assert_eq!(lookup(), Ok(Some("read again")), "a commit since: the kept entry was used");
        remove(&path);
    }

    #[test]
    fn no_read_transaction_without_an_idle_connection_or_once_closed() {
        let (path, reads) = ready();
        let first = reads.state().idle.pop().expect("opened ahead");
        assert!(reads.begin().is_none(), "no idle connection: the pool answers");
        assert_eq!(settled(&reads), 1, "one opened for the next transaction");
        drop(first);
        reads.close();
        assert!(reads.begin().is_none(), "a closed reader began a transaction");
        remove(&path);
    }
}
