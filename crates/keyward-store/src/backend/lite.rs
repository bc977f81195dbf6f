//! SQLite's write transactions on the request's own thread, through rusqlite.
//!
//! sqlx runs each SQLite statement on a worker thread of its connection and hands the statement
//! and its rows across threads. For a write transaction of a dozen small statements, those
//! hand-offs cost more than the statements and the commit's `fsync` together:
//! `keyward-bench sqlite-driver` measured a 15-statement write transaction at 41–50% of
//! rusqlite's rate on this thread, and rusqlite's at 94% of a bare commit (docs/performance.md,
//! "The SQLite driver"). So `Store::write` on a SQLite file hands out a [`LiteTx`] on the store's
//! one write connection here instead of a transaction on sqlx's pool. Read transactions, which
//! can run long statements (a million users' `$count`), stay on sqlx's threads, except those a
//! caller declares short (`Store::read_short`: the sign-in and token paths' point reads), which
//! run here on a direct-read connection (`direct.rs`) and end as a write transaction does.
//!
//! The store's SQL is written once, against the small part of sqlx's query API that this module
//! offers too (`query`, `query_as`, `query_scalar`, `bind`, `persistent`, `execute`, `fetch_*`, and
//! rows' `try_get`): each store trait's macro is expanded for this module's types as it is for
//! sqlx's (`backend/mod.rs`, `lite_impl`), so the two cannot drift apart. Parameters are written
//! `$1`, `$2`… as for sqlx, which SQLite reads as named parameters; they are bound by their number.
//! Statements built at run time with many parameters write them `?1`, `?2`… on SQLite
//! (`Dialect::param`), which SQLite numbers itself: a statement without `$` is bound by index.
//!
//! What a transaction sees and guarantees is unchanged: it begins with `BEGIN IMMEDIATE` after
//! its turn at the store's `WriteGate`, so this node's writers still take turns in order; a
//! transaction dropped without commit (an error, a refusal, a request that went away) is rolled
//! back at once, before its turn passes on. The cost: each statement, and the commit's `fsync`,
//! runs on the thread that runs the transaction (the request's runtime thread; the sign-in log's
//! writer runs its batches on a blocking thread), which holds that thread for as long as it runs
//! (a few microseconds a statement, the `fsync` a few hundred). So what may run long stays off
//! it: waiting for another process's write lock (the `keyward` commands) sleeps between tries
//! instead of waiting in SQLite's busy handler; the checkpoint that copies the write-ahead log
//! into the database file, which SQLite would run inside the commit that took the log past 1,000
//! pages, runs on a blocking thread after that commit, before the next writer's turn
//! (`Writer::checkpoint`); and the writes that can run long statements (the maintenance's deletes,
//! deleting a user or a group, restoring or removing a deleted item for good, a bulk job's rows) go
//! through the pool (`Store::write_long`).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::{FromSql, ToSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{ErrorCode, OpenFlags};

use super::Columns;
use super::direct::{DirectReads, FileIdentity};
use crate::error::StoreError;

/// How long `BEGIN IMMEDIATE` waits for another process's write transaction (the pool's
/// `busy_timeout`, and the write gate's wait).
const WAIT_FOR_LOCK: Duration = Duration::from_secs(10);

/// Prepared statements kept per connection (sqlx's default).
pub(super) const STATEMENT_CACHE: usize = 100;

/// Statements whose columns are kept by name: twice the statement cache's size, since some
/// statements' text is made at run time (a list of any length); past that all are forgotten.
const COLUMN_MAPS: usize = 2 * STATEMENT_CACHE;

/// Pages in the write-ahead log after which a commit has it checkpointed (SQLite's own
/// `wal_autocheckpoint` default, which this connection's hook replaces).
const CHECKPOINT_AFTER_PAGES: i32 = 1000;

thread_local! {
    /// The pages in the write-ahead log after the last commit on this thread, set by SQLite's WAL
    /// hook, which runs inside the commit on the committing thread.
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|it| it.set(pages));
    Ok(())
}

/// SQL text that the caller vouches for (sqlx's name, for the same SQL to compile against both).
#[derive(Debug)]
pub(crate) struct AssertSqlSafe<T>(pub T);

/// What `query` accepts: a literal, or text built at run time and vouched for.
pub(crate) trait SqlSafeStr {
    fn into_sql(self) -> Cow<'static, str>;
}

impl SqlSafeStr for &'static str {
    fn into_sql(self) -> Cow<'static, str> {
        Cow::Borrowed(self)
    }
}

/// Text built at run time is moved, a static statement's borrowed: neither is copied.
impl<T: Into<Cow<'static, str>>> SqlSafeStr for AssertSqlSafe<T> {
    fn into_sql(self) -> Cow<'static, str> {
        self.0.into()
    }
}

/// A statement and its arguments, run by one of the `execute` or `fetch_*` methods.
#[derive(Debug)]
pub(crate) struct Query {
    sql: Cow<'static, str>,
    args: Vec<Value>,
    /// Kept in the connection's statement cache (sqlx's `persistent`, on by default).
    persistent: bool,
    /// An argument that could not be turned into a SQLite value, reported when run.
    unbindable: Option<String>,
}

pub(crate) fn query(sql: impl SqlSafeStr) -> Query {
    Query { sql: sql.into_sql(), args: Vec::new(), persistent: true, unbindable: None }
}

/// A statement whose rows decode into `O` (a tuple of columns).
#[derive(Debug)]
pub(crate) struct QueryAs<O>(Query, std::marker::PhantomData<fn() -> O>);

pub(crate) fn query_as<O: FromRow>(sql: impl SqlSafeStr) -> QueryAs<O> {
    QueryAs(query(sql), std::marker::PhantomData)
}

/// A statement whose rows' first column decodes into `O`.
#[derive(Debug)]
pub(crate) struct QueryScalar<O>(Query, std::marker::PhantomData<fn() -> O>);

pub(crate) fn query_scalar<O: FromSql>(sql: impl SqlSafeStr) -> QueryScalar<O> {
    QueryScalar(query(sql), std::marker::PhantomData)
}

/// What `execute` reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

impl Query {
    pub(crate) fn bind<T: ToSql>(mut self, value: T) -> Query {
        match value.to_sql() {
            Ok(ToSqlOutput::Borrowed(value)) => self.args.push(owned(value)),
            Ok(ToSqlOutput::Owned(value)) => self.args.push(value),
            Ok(_) => self.unbindable = Some(format!("argument ${}: unsupported kind of value", self.args.len() + 1)),
            Err(err) => self.unbindable = Some(format!("argument ${}: {err}", self.args.len() + 1)),
        }
        self
    }

    pub(crate) fn persistent(mut self, persistent: bool) -> Query {
        self.persistent = persistent;
        self
    }

    pub(crate) async fn execute(self, conn: &mut Conn) -> Result<Done, StoreError> {
        let rows_affected = conn.run(self, |_| false)?;
        Ok(Done { rows_affected })
    }

    pub(crate) async fn fetch_all(self, conn: &mut Conn) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        conn.run(self, |row| {
            rows.push(row);
            true
        })?;
        Ok(rows)
    }

    pub(crate) async fn fetch_optional(self, conn: &mut Conn) -> Result<Option<Row>, StoreError> {
        let mut first = None;
        conn.run(self, |row| {
            first = Some(row);
            false
        })?;
        Ok(first)
    }

    pub(crate) async fn fetch_one(self, conn: &mut Conn) -> Result<Row, StoreError> {
        self.fetch_optional(conn).await?.ok_or(StoreError::NotFound)
    }
}

impl<O: FromRow> QueryAs<O> {
    pub(crate) fn bind<T: ToSql>(self, value: T) -> QueryAs<O> {
        QueryAs(self.0.bind(value), self.1)
    }

    pub(crate) fn persistent(self, persistent: bool) -> QueryAs<O> {
        QueryAs(self.0.persistent(persistent), self.1)
    }

    pub(crate) async fn fetch_all(self, conn: &mut Conn) -> Result<Vec<O>, StoreError> {
        self.0.fetch_all(conn).await?.iter().map(O::from_row).collect()
    }

    pub(crate) async fn fetch_optional(self, conn: &mut Conn) -> Result<Option<O>, StoreError> {
        self.0.fetch_optional(conn).await?.as_ref().map(O::from_row).transpose()
    }

    pub(crate) async fn fetch_one(self, conn: &mut Conn) -> Result<O, StoreError> {
        O::from_row(&self.0.fetch_one(conn).await?)
    }
}

impl<O: FromSql> QueryScalar<O> {
    pub(crate) fn bind<T: ToSql>(self, value: T) -> QueryScalar<O> {
        QueryScalar(self.0.bind(value), self.1)
    }

    pub(crate) async fn fetch_all(self, conn: &mut Conn) -> Result<Vec<O>, StoreError> {
        self.0.fetch_all(conn).await?.iter().map(|row| row.try_get(0)).collect()
    }

    pub(crate) async fn fetch_optional(self, conn: &mut Conn) -> Result<Option<O>, StoreError> {
        self.0.fetch_optional(conn).await?.map(|row| row.try_get(0)).transpose()
    }

    pub(crate) async fn fetch_one(self, conn: &mut Conn) -> Result<O, StoreError> {
        self.0.fetch_one(conn).await?.try_get(0)
    }
}

/// A borrowed SQLite value, copied.
fn owned(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(it) => Value::Integer(it),
        ValueRef::Real(it) => Value::Real(it),
        ValueRef::Text(it) => Value::Text(String::from_utf8_lossy(it).into_owned()),
        ValueRef::Blob(it) => Value::Blob(it.to_vec()),
    }
}

/// A statement's column names and their positions, made once per statement text.
#[derive(Debug)]
pub(crate) struct ColumnMap {
    positions: HashMap<String, usize>,
}

/// One row, its values copied out of the statement.
#[derive(Debug)]
pub(crate) struct Row {
    values: Vec<Value>,
    columns: Arc<ColumnMap>,
}

/// A column by position or by name.
pub(crate) trait ColumnIndex: std::fmt::Display {
    fn position(&self, columns: &ColumnMap) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn position(&self, _: &ColumnMap) -> Option<usize> {
        Some(*self)
    }
}

impl ColumnIndex for &str {
    fn position(&self, columns: &ColumnMap) -> Option<usize> {
        columns.positions.get(*self).copied()
    }
}

impl Row {
    /// Column `index` decoded as `T` (sqlx's signature, so the same decoders compile against
    /// both).
    pub(crate) fn try_get<T: FromSql, I: ColumnIndex>(&self, index: I) -> Result<T, StoreError> {
        let value = index
            .position(&self.columns)
            .and_then(|at| self.values.get(at))
            .ok_or_else(|| StoreError::Other(format!("no column {index}")))?;
        T::column_result(ValueRef::from(value)).map_err(|err| StoreError::Other(format!("column {index}: {err}")))
    }
}

impl Columns for Row {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column)
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        self.try_get(column)
    }

    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // sqlx reads TEXT as bytes too; rusqlite only BLOB.
        match column.position(&self.columns).and_then(|at| self.values.get(at)) {
            Some(Value::Text(text)) => Ok(Some(text.clone().into_bytes())),
            _ => self.try_get(column),
        }
    }
}

/// A row decoded into a tuple of columns (`query_as`).
pub(crate) trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, StoreError>;
}

macro_rules! tuple_from_row {
    ($($name:ident $at:tt),+) => {
        impl<$($name: FromSql),+> FromRow for ($($name,)+) {
            fn from_row(row: &Row) -> Result<Self, StoreError> {
                Ok(($(row.try_get::<$name, usize>($at)?,)+))
            }
        }
    };
}

tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// A rusqlite error as the store reports it: as sqlx reports SQLite's, a uniqueness or
/// foreign-key violation is a conflict.
pub(crate) fn store_error(err: &rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, _) = err
        && matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                | rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
        )
    {
        return StoreError::Conflict { constraint: "unique".into() };
    }
    StoreError::Other(err.to_string())
}

/// SQLite answered that another connection holds a lock this statement needs.
pub(super) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(err.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// A connection: the store's write connection, or a direct-read connection (`direct.rs`).
pub(crate) struct Conn {
    db: rusqlite::Connection,
    /// Each cached statement's columns, by its text.
    columns: HashMap<Cow<'static, str>, Arc<ColumnMap>>,
    /// The callers and users read on it while nothing has committed (`kept_users`): only on a
    /// `query_only` connection (`Conn::query_only`), whose own commits cannot exist; on one that
    /// writes, its own commits would not change the data version the entries are kept under.
    kept: Option<Box<super::kept_users::KeptUsers>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("lite::Conn")
    }
}

impl Conn {
    /// `db`, with no column maps yet.
    pub(crate) fn new(db: rusqlite::Connection) -> Conn {
        Conn { db, columns: HashMap::new(), kept: None }
    }

    /// `db`, opened `query_only` by the caller, which keeps the callers and users read on it.
    pub(super) fn query_only(db: rusqlite::Connection) -> Conn {
        Conn { db, columns: HashMap::new(), kept: Some(Box::default()) }
    }

    /// The rusqlite connection, for statements outside this module's query API.
    pub(crate) fn db(&self) -> &rusqlite::Connection {
        &self.db
    }

    /// The rusqlite connection and the users read on it (`kept_users`); `None` for a connection
    /// that is not `query_only`.
    pub(super) fn db_and_kept(&mut self) -> Option<(&rusqlite::Connection, &mut super::kept_users::KeptUsers)> {
        Some((&self.db, self.kept.as_deref_mut()?))
    }

    /// Runs `query` to its end, giving `each` every row it returns until `each` answers
    /// `false`; answers how many rows it changed. A statement that writes (`INSERT … RETURNING`)
    /// always runs to its end, as sqlx runs it.
    fn run(&mut self, query: Query, mut each: impl FnMut(Row) -> bool) -> Result<u64, StoreError> {
        if let Some(problem) = query.unbindable {
            return Err(StoreError::Other(problem));
        }
        let Conn { db, columns, .. } = self;
        // SQLite ends a transaction itself after some errors (I/O, a full disk, no memory); the
        // statements after it would each commit on their own.
        if db.is_autocommit() {
            return Err(StoreError::Other(
                "the transaction was rolled back by SQLite after an error; try again".into(),
            ));
        }
        let mut cached;
        let mut uncached;
        let statement: &mut rusqlite::Statement<'_> = if query.persistent {
            cached = db.prepare_cached(&query.sql).map_err(|err| store_error(&err))?;
            &mut cached
        } else {
            uncached = db.prepare(&query.sql).map_err(|err| store_error(&err))?;
            &mut uncached
        };
        // Without `$` in its text, a statement's parameters are `?n` (SQLite gives `?n` the
        // index n) or plain `?` (numbered in order): bound by index, without looking a name up
        // (a search through every parameter's name in SQLite, for each one).
        let numbered = !query.sql.contains('$');
        for at in 1..=statement.parameter_count() {
            let name = if numbered { None } else { statement.parameter_name(at) };
            let number = match name {
                Some(name) => name
                    .strip_prefix('$')
                    .or_else(|| name.strip_prefix('?'))
                    .and_then(|it| it.parse::<usize>().ok())
                    .ok_or_else(|| StoreError::Other(format!("parameter {name}: only $1, $2… are bound")))?,
                None => at,
            };
            let value = query
                .args
                .get(number.wrapping_sub(1))
                .ok_or_else(|| StoreError::Other(format!("no argument for parameter ${number}")))?;
            statement.raw_bind_parameter(at, value).map_err(|err| store_error(&err))?;
        }
        let count = statement.column_count();
        if count == 0 {
            let changed = statement.raw_execute().map_err(|err| store_error(&err))?;
            return Ok(changed as u64);
        }
        let read_only = statement.readonly();
        let kept = if query.persistent { columns.get(&query.sql).cloned() } else { None };
        let map = match kept {
            Some(map) => map,
            None => {
                let map = Arc::new(ColumnMap {
                    positions: statement
                        .column_names()
                        .into_iter()
                        .enumerate()
                        .map(|(at, name)| (name.to_owned(), at))
                        .collect(),
                });
                if query.persistent {
                    if columns.len() >= COLUMN_MAPS {
                        columns.clear();
                    }
                    columns.insert(query.sql.clone(), Arc::clone(&map));
                }
                map
            }
        };
        let mut rows = statement.raw_query();
        let mut wanted = true;
        while let Some(row) = rows.next().map_err(|err| store_error(&err))? {
            if !wanted {
                continue;
            }
            let values = (0..count)
                .map(|at| row.get::<usize, Value>(at))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| store_error(&err))?;
            wanted = each(Row { values, columns: Arc::clone(&map) });
            if !wanted && read_only {
                break;
            }
        }
        drop(rows);
        Ok(if read_only { 0 } else { db.changes() })
    }
}

/// The store's one write connection, lent to one transaction at a time (the holder of the
/// `WriteGate`'s turn).
pub(crate) struct Writer {
    path: PathBuf,
    /// The database file's identity when the store opened it: once the file has been replaced
    /// (a restore under a running server), writes go back to the pool, as direct reads do.
    identity: Option<FileIdentity>,
    idle: Mutex<Option<Conn>>,
    /// The store has closed: a connection given back is closed.
    closed: AtomicBool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Writer {
    /// The write connection of the database file at `path`, which the pool has opened and
    /// migrated. Opened now, as the store opens (a failure here is tried again at the first
    /// write).
    pub(crate) fn new(path: PathBuf) -> Arc<Writer> {
        let identity = FileIdentity::of(&path);
        let conn = Self::open(&path, identity.as_ref())
            .inspect_err(|err| {
                tracing::warn!(error = %err, "opening the SQLite write connection failed; the first write tries again");
            })
            .ok()
            .flatten();
        Arc::new(Writer { path, identity, idle: Mutex::new(conn), closed: AtomicBool::new(false) })
    }

    /// A write connection to the file at `path`; `None` if it is another file than `identity`
    /// (replaced since the store opened it).
    fn open(path: &Path, identity: Option<&FileIdentity>) -> Result<Option<Conn>, StoreError> {
        let db = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| store_error(&err))?;
        if FileIdentity::of(path).as_ref() != identity {
            return Ok(None);
        }
        // The pool's settings (`SqliteStore::open`). The schema is read with rusqlite's busy
        // wait (rarely needed, once per connection); after that a busy database is waited for by
        // `begin`, not in SQLite's busy handler on this thread.
        db.execute_batch(concat!(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA cache_size = -16384; ",
            "SELECT count(*) FROM sqlite_schema; PRAGMA busy_timeout = 0;"
        ))
        .map_err(|err| store_error(&err))?;
        // Counts the log's pages at each commit instead of checkpointing inside it.
        db.wal_hook(Some(note_wal_pages));
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Some(Conn::new(db)))
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE`) on the write connection; the caller holds
    /// the write gate's turn. `None` when the database file was replaced since the store opened
    /// it, or the store has closed: the caller writes through the pool.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<Option<Open>, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        if FileIdentity::of(&self.path) != self.identity {
            drop(self.idle().take());
            return Ok(None);
        }
        let idle = self.idle().take();
        let conn = match idle {
            Some(conn) => conn,
            // Opened again (after a failed rollback, or a failed open at start) on a blocking
            // thread: opening reads the schema with SQLite's busy wait, up to 5 s.
            None => {
                let (path, identity) = (self.path.clone(), self.identity);
                let opened = tokio::task::spawn_blocking(move || Self::open(&path, identity.as_ref()))
                    .await
                    .map_err(|err| StoreError::Other(format!("opening the SQLite write connection: {err}")))??;
                match opened {
                    Some(conn) => conn,
                    None => return Ok(None),
                }
            }
        };
        // Dropped before its transaction has begun (an error, or the caller giving up during the
        // wait: a request gone away), `open` gives the connection back; a connection dropped here
        // would be closed, and the next writer would open another on its thread.
        let open = Open::new(conn, Home::Writer(Arc::clone(self)));
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match open.db.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(Some(open)),
                Err(err) if is_busy(&err) && started.elapsed() < WAIT_FOR_LOCK => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(err) => return Err(store_error(&err)),
            }
        }
    }

    fn put_back(&self, conn: Conn) {
        // Under the lock `close` takes, so a connection given back as the store closes is closed.
        let mut idle = self.idle();
        if !self.closed.load(Ordering::Acquire) {
            *idle = Some(conn);
        }
    }

    /// Closes the idle connection; a connection in use is closed when its transaction ends.
    pub(crate) fn close(&self) {
        let mut idle = self.idle();
        self.closed.store(true, Ordering::Release);
        drop(idle.take());
    }

    /// Checkpoints the write-ahead log (`PASSIVE`, as SQLite's automatic checkpoint does: it
    /// copies what no reader still needs and waits for no one) on a blocking thread, on the idle
    /// write connection. Called by the committed transaction while it still holds the write gate's
    /// turn, so the next writer finds the log copied and starts it again from the beginning (run
    /// beside the writers, it fell behind them and the log grew without end).
    pub(crate) async fn checkpoint(&self) {
        let Some(conn) = self.idle().take() else { return };
        let done = tokio::task::spawn_blocking(move || {
            let done = conn.db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            (conn, done)
        })
        .await;
        match done {
            Ok((conn, done)) => {
                if let Err(err) = done {
                    tracing::warn!(error = %err, "checkpointing the SQLite write-ahead log failed; the next commit tries again");
                }
                self.put_back(conn);
            }
            Err(err) => tracing::warn!(error = %err, "checkpointing the SQLite write-ahead log failed"),
        }
    }
}

/// Where a connection goes when its transaction has ended.
#[derive(Debug)]
pub(crate) enum Home {
    /// The store's write connection.
    Writer(Arc<Writer>),
    /// A direct-read connection (`DirectReads::begin`), opened at the instant given.
    Reads(Arc<DirectReads>, Instant),
}

/// An open transaction: a write transaction on the write connection, or a read transaction on a
/// direct-read connection. Dropped without `commit` or `rollback`, it is rolled back at once; one
/// dropped before its transaction began just gives the connection back.
#[derive(Debug)]
pub(crate) struct Open {
    conn: Option<Conn>,
    home: Home,
}

impl Open {
    /// `conn`, going back to `home` when its transaction ends (or when dropped before one
    /// begins).
    pub(crate) fn new(conn: Conn, home: Home) -> Open {
        Open { conn: Some(conn), home }
    }

    /// Commits; then, if the commit took the write-ahead log past [`CHECKPOINT_AFTER_PAGES`],
    /// checkpoints it ([`Writer::checkpoint`]). If the commit fails, the transaction is rolled
    /// back.
    pub(crate) async fn commit(mut self, turn: Option<super::WriteTurn>) -> Result<(), StoreError> {
        let conn = self.conn.take().expect("a transaction is ended once");
        WAL_PAGES.with(|it| it.set(0));
        let committed = conn.db.execute_batch("COMMIT");
        let due = committed.is_ok() && WAL_PAGES.with(Cell::get) >= CHECKPOINT_AFTER_PAGES;
        self.end(conn);
        if due && let Home::Writer(writer) = &self.home {
            // A task of its own holds the write gate's turn until the checkpoint is done and the
            // connection is back, even if the request that committed goes away meanwhile.
            let writer = Arc::clone(writer);
            let _ = tokio::spawn(async move {
                writer.checkpoint().await;
                drop(turn);
            })
            .await;
        }
        committed.map_err(|err| store_error(&err))
    }

    /// Rolls back; a transaction SQLite has rolled back already (after an error) has ended.
    pub(crate) fn rollback(mut self) -> Result<(), StoreError> {
        let conn = self.conn.take().expect("a transaction is ended once");
        let rolled_back = if conn.db.is_autocommit() { Ok(()) } else { conn.db.execute_batch("ROLLBACK") };
        self.end(conn);
        rolled_back.map_err(|err| store_error(&err))
    }

    /// Gives the connection back once it is out of its transaction; one that cannot leave it is
    /// closed (which rolls that back) and the next transaction opens another.
    fn end(&self, conn: Conn) {
        if !conn.db.is_autocommit() {
            let _ = conn.db.execute_batch("ROLLBACK");
        }
        if conn.db.is_autocommit() {
            match &self.home {
                Home::Writer(writer) => writer.put_back(conn),
                Home::Reads(reads, opened) => reads.put_back(conn, *opened),
            }
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.end(conn);
        }
    }
}

impl std::ops::Deref for Open {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("the transaction is open")
    }
}

impl std::ops::DerefMut for Open {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("the transaction is open")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::{Writer, query, query_as, query_scalar};
    use crate::error::StoreError;

    /// A fresh directory with a database file made as the store makes it (WAL), removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |it| it.as_nanos());
            let dir = std::env::temp_dir().join(format!("keyward-lite-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("scratch directory");
            let db = rusqlite::Connection::open(dir.join("keyward.db")).expect("database");
            db.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, flag BOOLEAN, data BLOB);")
                .expect("schema");
            Scratch(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("keyward.db")
        }

        /// A scratch database and a writer on it.
        fn with_writer(name: &str) -> (Scratch, std::sync::Arc<Writer>) {
            let scratch = Scratch::new(name);
            let writer = Writer::new(scratch.file());
            (scratch, writer)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A write transaction on `writer`'s connection.
    async fn begin(writer: &std::sync::Arc<Writer>) -> super::Open {
        writer.begin().await.expect("begin").expect("a plain file")
    }

    /// A write transaction that has inserted row `id` with 3,000 bytes of data (about two pages
    /// of the write-ahead log once committed).
    async fn begin_with_row(writer: &std::sync::Arc<Writer>, id: i64) -> super::Open {
        let mut tx = begin(writer).await;
        query("INSERT INTO t (id, data) VALUES ($1, $2)")
            .bind(id)
            .bind(vec![7_u8; 3000])
            .execute(&mut tx)
            .await
            .expect("insert");
        tx
    }

    /// Marks the idle write connection with something only it sees (a temporary table is the
    /// connection's own).
    fn mark(writer: &Writer) {
        let idle = writer.idle();
        let conn = idle.as_ref().expect("opened with the writer");
        conn.db.execute_batch("CREATE TEMP TABLE mark (x)").expect("mark");
    }

    /// The idle write connection is the one `mark` marked, out of any transaction.
    fn assert_marked_back(writer: &Writer, lost: &str) {
        let idle = writer.idle();
        let back = idle.as_ref().expect(lost);
        assert!(back.db.is_autocommit());
        back.db.query_row("SELECT count(*) FROM temp.mark", [], |_| Ok(())).expect("another connection came back");
    }

    fn other_connection(scratch: &Scratch) -> rusqlite::Connection {
        rusqlite::Connection::open(scratch.file()).expect("another connection")
    }

    #[tokio::test]
    async fn parameters_are_bound_by_their_number_and_values_keep_their_kind() {
        let scratch = Scratch::new("bind");
        let mut tx = begin(&Writer::new(scratch.file())).await;
        // Out of order and repeated, as the store's SQL uses them.
        let (second, first, again): (String, i64, String) =
            query_as("SELECT $2, $1, $2").bind(7_i64).bind("seven").fetch_one(&mut tx).await.expect("select");
        assert_eq!((second.as_str(), first, again.as_str()), ("seven", 7, "seven"));
        // `?n` (what statements built with many parameters use) is bound by its number too.
        let (second, first, again): (String, i64, String) =
            query_as("SELECT ?2, ?1, ?2").bind(8_i64).bind("eight").fetch_one(&mut tx).await.expect("select");
        assert_eq!((second.as_str(), first, again.as_str()), ("eight", 8, "eight"));
        query("INSERT INTO t (id, name, flag, data) VALUES ($1, $2, $3, $4)")
            .bind(1_i64)
            .bind(Some("one"))
            .bind(true)
            .bind(vec![0_u8, 1, 2])
            .execute(&mut tx)
            .await
            .expect("insert");
        query("INSERT INTO t (id, name, flag, data) VALUES ($1, $2, $3, $4)")
            .bind(2_i64)
            .bind(None::<String>)
            .bind(false)
            .bind(None::<Vec<u8>>)
            .execute(&mut tx)
            .await
            .expect("insert");
        let rows = query("SELECT id, name, flag, data FROM t ORDER BY id").fetch_all(&mut tx).await.expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].try_get::<Option<String>, _>("name").expect("name"), Some("one".to_owned()));
        assert!(rows[0].try_get::<bool, _>("flag").expect("flag"));
        assert_eq!(rows[0].try_get::<Vec<u8>, _>("data").expect("data"), vec![0, 1, 2]);
        assert_eq!(rows[1].try_get::<Option<String>, _>(1).expect("name"), None);
        assert!(!rows[1].try_get::<bool, _>("flag").expect("flag"));
        assert!(rows[1].try_get::<String, _>("name").is_err(), "NULL is not a String");
        assert!(rows[1].try_get::<i64, _>("missing").is_err(), "no such column");
        tx.commit(None).await.expect("commit");
    }

    #[tokio::test]
    async fn statements_report_rows_conflicts_and_missing_rows_as_the_store_does() {
        let scratch = Scratch::new("outcomes");
        let mut tx = begin(&Writer::new(scratch.file())).await;
        // A statement that returns rows, run by `execute`.
        let done = query("INSERT INTO t (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c') RETURNING id")
            .execute(&mut tx)
            .await
            .expect("insert");
        assert_eq!(done.rows_affected(), 3);
        let count: i64 = query_scalar("SELECT count(*) FROM t").fetch_one(&mut tx).await.expect("count");
        assert_eq!(count, 3);
        // Only the first row of a writing statement is wanted.
        let first: Option<i64> = query_scalar("DELETE FROM t WHERE id >= $1 RETURNING id")
            .bind(2_i64)
            .fetch_optional(&mut tx)
            .await
            .expect("delete");
        assert!(first.is_some());
        let left: i64 = query_scalar("SELECT count(*) FROM t").fetch_one(&mut tx).await.expect("count");
        assert_eq!(left, 1);
        let done = query("UPDATE t SET name = 'z' WHERE id = 99").execute(&mut tx).await.expect("update");
        assert_eq!(done.rows_affected(), 0);
        let none = query("SELECT id FROM t WHERE id = 99").fetch_one(&mut tx).await;
        assert_eq!(none.err(), Some(StoreError::NotFound));
        let duplicate = query("INSERT INTO t (id, name) VALUES (5, 'a')").execute(&mut tx).await;
        assert_eq!(duplicate.err(), Some(StoreError::Conflict { constraint: "unique".into() }));
        let primary = query("INSERT INTO t (id) VALUES (1)").execute(&mut tx).await;
        assert_eq!(primary.err(), Some(StoreError::Conflict { constraint: "unique".into() }));
        assert!(
            matches!(query("SELECT $1, $2").bind(1_i64).fetch_one(&mut tx).await, Err(StoreError::Other(_))),
            "a parameter without its argument is an error, not NULL"
        );
        tx.commit(None).await.expect("commit");
    }

    #[tokio::test]
    async fn a_dropped_transaction_is_rolled_back_and_the_connection_serves_the_next() {
        let (scratch, writer) = Scratch::with_writer("drop");
        let mut tx = begin(&writer).await;
        query("INSERT INTO t (id, name) VALUES (1, 'kept?')").execute(&mut tx).await.expect("insert");
        drop(tx);
        // The write lock is free at once: another connection can write without waiting.
        let other = other_connection(&scratch);
        other.busy_timeout(Duration::ZERO).expect("no waiting");
        other.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (id, name) VALUES (2, 'other'); COMMIT;").expect("free");
        let mut tx = begin(&writer).await;
        let names: Vec<String> = query_scalar("SELECT name FROM t ORDER BY id").fetch_all(&mut tx).await.expect("rows");
        assert_eq!(names, vec!["other".to_owned()], "the dropped insert was rolled back");
        tx.rollback().expect("rollback");
        let mut tx = begin(&writer).await;
        query("INSERT INTO t (id, name) VALUES (3, 'three')").execute(&mut tx).await.expect("insert");
        tx.commit(None).await.expect("commit");
        let count: i64 = other.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).expect("count");
        assert_eq!(count, 2, "the committed row is there for other connections, the rolled-back one is not");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn another_process_holding_the_write_lock_is_waited_for_without_holding_the_thread() {
        let (scratch, writer) = Scratch::with_writer("busy");
        let other = std::thread::spawn({
            let file = scratch.file();
            move || {
                let other = rusqlite::Connection::open(file).expect("another connection");
                other.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (id, name) VALUES (1, 'other');").expect("lock");
                std::thread::sleep(Duration::from_millis(300));
                other.execute_batch("COMMIT").expect("commit");
            }
        });
        // Let the other connection take the lock first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        // On this one-thread runtime, ticks run only while `begin` waits without holding the thread.
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticking = tokio::spawn({
            let ticks = std::sync::Arc::clone(&ticks);
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let mut tx = begin(&writer).await;
        assert!(started.elapsed() >= Duration::from_millis(150), "began while the other held the lock");
        let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(ticked >= 5, "the thread ran other tasks while waiting: {ticked} ticks");
        ticking.abort();
        let name: String = query_scalar("SELECT name FROM t WHERE id = 1").fetch_one(&mut tx).await.expect("read");
        assert_eq!(name, "other", "a write transaction sees what the other committed");
        tx.commit(None).await.expect("commit");
        other.join().expect("other");
    }

    #[tokio::test]
    async fn a_wait_for_the_lock_given_up_keeps_the_connection() {
        let (scratch, writer) = Scratch::with_writer("given-up");
        let other = rusqlite::Connection::open(scratch.file()).expect("another connection");
        other.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (id, name) VALUES (1, 'other');").expect("lock");
        mark(&writer);
        let waited = tokio::time::timeout(Duration::from_millis(30), writer.begin()).await;
        assert!(waited.is_err(), "began while the other held the lock");
        assert_marked_back(&writer, "the connection was closed when the wait was given up");
        other.execute_batch("COMMIT").expect("commit");
        let mut tx = begin(&writer).await;
        let name: String = query_scalar("SELECT name FROM t WHERE id = 1").fetch_one(&mut tx).await.expect("read");
        assert_eq!(name, "other");
        tx.commit(None).await.expect("commit");
    }

    #[tokio::test]
    async fn the_write_ahead_log_is_checkpointed_and_starts_again() {
        let (scratch, writer) = Scratch::with_writer("checkpoint");
        let wal = scratch.0.join("keyward.db-wal");
        // About two pages a commit: 6,000 pages, 24 MB, if the log were never checkpointed.
        for id in 0..3000_i64 {
            let tx = begin_with_row(&writer, id).await;
            tx.commit(None).await.expect("commit");
        }
        let wal_size = std::fs::metadata(&wal).map_or(0, |it| it.len());
        assert!(wal_size < 8 << 20, "the log was checkpointed and started again: {wal_size} bytes");
        let db_size = std::fs::metadata(scratch.file()).map_or(0, |it| it.len());
        assert!(db_size > 4 << 20, "the checkpoints copied the rows into the file: {db_size} bytes");
    }

    #[tokio::test]
    async fn a_commit_given_up_during_its_checkpoint_keeps_the_connection_and_the_turn() {
        let (_scratch, writer) = Scratch::with_writer("checkpoint-given-up");
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        mark(&writer);
        for id in 0..3000_i64 {
            let turn = std::sync::Arc::clone(&gate).acquire_owned().await.expect("turn");
            let tx = begin_with_row(&writer, id).await;
            // Given up at its first wait, as a request that went away: the COMMIT has run, and
            // only a checkpoint due after it makes the commit wait.
            if tokio::time::timeout(Duration::ZERO, tx.commit(Some(turn))).await.is_ok() {
                continue;
            }
            // The next writer's turn comes once the checkpoint is done and the connection is back.
            let _turn = std::sync::Arc::clone(&gate).acquire_owned().await.expect("turn");
            assert_marked_back(&writer, "the connection was lost with the request");
            return;
        }
        panic!("no checkpoint came due in 3,000 commits");
    }

    #[tokio::test]
    async fn a_transaction_sqlite_ended_after_an_error_runs_no_more_statements() {
        let (scratch, writer) = Scratch::with_writer("ended");
        let mut tx = begin(&writer).await;
        query("INSERT INTO t (id, name) VALUES (1, 'lost')").execute(&mut tx).await.expect("insert");
        // As SQLite does after an I/O error or a full disk.
        query("ROLLBACK").execute(&mut tx).await.expect("rolled back");
        let after = query("INSERT INTO t (id, name) VALUES (2, 'alone')").execute(&mut tx).await;
        assert!(matches!(after, Err(StoreError::Other(_))), "no statement runs on its own: {after:?}");
        tx.rollback().expect("a transaction already ended ends without error");
        let count: i64 =
            other_connection(&scratch).query_row("SELECT count(*) FROM t", [], |row| row.get(0)).expect("count");
        assert_eq!(count, 0);
        // TEXT read as bytes, as sqlx reads it.
        let mut tx = begin(&writer).await;
        let row = query("SELECT 'abc' AS data").fetch_one(&mut tx).await.expect("row");
        assert_eq!(super::Columns::bytes(&row, "data").expect("bytes"), Some(b"abc".to_vec()));
        tx.rollback().expect("rollback");
    }

    #[tokio::test]
    async fn a_closed_writer_hands_out_no_transaction_and_keeps_no_connection() {
        let (_scratch, writer) = Scratch::with_writer("closed");
        let tx = begin(&writer).await;
        writer.close();
        tx.commit(None).await.expect("the transaction in use still ends");
        assert!(writer.idle().is_none(), "the connection given back after close was closed");
        assert!(writer.begin().await.expect("begin").is_none(), "writes go to the pool, which reports the close");
    }

    #[tokio::test]
    async fn a_replaced_database_file_is_left_to_the_pool() {
        let (scratch, writer) = Scratch::with_writer("replaced");
        let tx = writer.begin().await.expect("begin");
        assert!(tx.is_some(), "the file the store opened");
        drop(tx);
        let copy = scratch.0.join("copy.db");
        std::fs::copy(scratch.file(), &copy).expect("copy");
        std::fs::rename(&copy, scratch.file()).expect("replace");
        assert!(writer.begin().await.expect("begin").is_none(), "another file under the same name");
    }
}
