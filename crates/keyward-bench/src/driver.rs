//! `sqlite-driver`: what the SQLite driver costs per statement, the measurement behind the choice
//! of how the SQLite store runs its statements (docs/performance.md, "The SQLite driver").
//!
//! The same statements on the same database file (WAL, `synchronous = FULL`, as the store opens
//! it), one at a time from one task of this multi-threaded runtime, as a single writer runs them:
//! through sqlx, which runs each statement on the connection's own worker thread and hands the
//! statement and its rows across threads, as the store does; and through rusqlite on the task's own
//! thread, as the store's direct reads (`backend/direct.rs`) do. Three shapes:
//!
//! - a bare commit: `BEGIN IMMEDIATE`, one `INSERT`, `COMMIT` (the `write` workload's limit);
//! - a write transaction of 15 statements (10 point reads, a `DELETE`, 4 `INSERT`s) and its
//!   commit, about the size of an audited change;
//! - 10 point reads outside a transaction, no commit.
//!
//! No target of its own: each line's "limit" is rusqlite's rate, its ratio sqlx's share of it.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use keyward_testkit::Backend;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::report::{Line, percent, thousands};

/// Rows in the table the point reads read.
const ROWS: i64 = 10_000;
/// Point reads per transaction and per read-only operation.
const READS: i64 = 10;
/// Operations per measurement.
const OPS: i64 = 3_000;

/// What is measured: a bare commit, a 15-statement write transaction, 10 point reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    BareCommit,
    Transaction,
    Reads,
}

impl Shape {
    const ALL: [Shape; 3] = [Shape::BareCommit, Shape::Transaction, Shape::Reads];

    fn describe(self) -> &'static str {
        match self {
            Shape::BareCommit => "a bare commit (BEGIN IMMEDIATE, one INSERT, COMMIT)",
            Shape::Transaction => {
                "a write transaction of 15 statements (10 point reads, a DELETE, 4 INSERTs) and its commit"
            }
            Shape::Reads => "10 point reads, no transaction",
        }
    }
}

fn key(op: i64, read: i64) -> i64 {
    (op * 7 + read) % ROWS
}

pub async fn run() -> anyhow::Result<Vec<Line>> {
    let (url, _dir) = keyward_testkit::fresh_url(Backend::Sqlite);
    let path = url.strip_prefix("sqlite://").context("a SQLite URL")?.to_owned();
    let path = Path::new(&path);
    {
        let db = open_direct(path)?;
        db.execute_batch(concat!(
            "CREATE TABLE point (id INTEGER PRIMARY KEY, value TEXT NOT NULL);",
            "CREATE TABLE entry (id INTEGER PRIMARY KEY, value TEXT NOT NULL);"
        ))?;
        let tx = db.unchecked_transaction()?;
        for id in 0..ROWS {
            tx.execute("INSERT INTO point (id, value) VALUES (?1, ?2)", rusqlite::params![id, format!("value {id}")])?;
        }
        tx.commit()?;
    }
    let mut sqlx_conn = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await?;
    let direct = open_direct(path)?;
    // Best of two rounds, the drivers taking turns within each.
    let mut best = [(0.0_f64, 0.0_f64); 3];
    for round in 0..2 {
        for (n, shape) in Shape::ALL.into_iter().enumerate() {
            let through_sqlx = timed(run_sqlx(&mut sqlx_conn, shape)).await?;
            let through_rusqlite = timed(run_direct(&direct, shape)).await?;
            eprintln!(
                "sqlite-driver, round {round}: {}: sqlx {through_sqlx:.0}/s, rusqlite {through_rusqlite:.0}/s",
                shape.describe()
            );
            best[n] = (best[n].0.max(through_sqlx), best[n].1.max(through_rusqlite));
        }
    }
    sqlx_conn.close().await?;
    Ok(Shape::ALL
        .into_iter()
        .zip(best)
        .map(|(shape, (through_sqlx, through_rusqlite))| Line {
            workload: format!("sqlite-driver: {}, one task", shape.describe()),
            figure: format!("sqlx {}/s ({:.0} µs each)", thousands(through_sqlx), 1e6 / through_sqlx),
            limit: format!(
                "rusqlite on the task's thread {}/s ({:.0} µs each)",
                thousands(through_rusqlite),
                1e6 / through_rusqlite
            ),
            ratio: percent(through_sqlx, through_rusqlite),
            target: "none: the measurement behind the SQLite driver's use".into(),
            met: None,
        })
        .collect())
}

/// Operations a second: `OPS` operations of `work`.
async fn timed(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<f64> {
    let started = Instant::now();
    work.await?;
    Ok(OPS as f64 / started.elapsed().as_secs_f64())
}

fn open_direct(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path)?;
    db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")?;
    Ok(db)
}

async fn run_sqlx(conn: &mut sqlx::SqliteConnection, shape: Shape) -> anyhow::Result<()> {
    async fn read(conn: &mut sqlx::SqliteConnection, op: i64, read: i64) -> anyhow::Result<()> {
        let (value,): (String,) =
            sqlx::query_as("SELECT value FROM point WHERE id = $1").bind(key(op, read)).fetch_one(conn).await?;
        std::hint::black_box(value);
        Ok(())
    }
    async fn insert(conn: &mut sqlx::SqliteConnection, op: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO entry (value) VALUES ($1)").bind(format!("entry {op}")).execute(conn).await?;
        Ok(())
    }
    for op in 0..OPS {
        match shape {
            Shape::BareCommit => {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                insert(&mut tx, op).await?;
                tx.commit().await?;
            }
            Shape::Transaction => {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                for n in 0..READS {
                    read(&mut tx, op, n).await?;
                }
                sqlx::query("DELETE FROM entry WHERE id = $1").bind(op).execute(&mut *tx).await?;
                for _ in 0..4 {
                    insert(&mut tx, op).await?;
                }
                tx.commit().await?;
            }
            Shape::Reads => {
                for n in 0..READS {
                    read(conn, op, n).await?;
                }
            }
        }
    }
    Ok(())
}

/// rusqlite on this task's thread; the task yields after each operation, as a request's task
/// would give the thread back between its steps.
async fn run_direct(db: &rusqlite::Connection, shape: Shape) -> anyhow::Result<()> {
    let read = |op: i64, read: i64| -> anyhow::Result<()> {
        let value: String =
            db.prepare_cached("SELECT value FROM point WHERE id = ?1")?.query_row([key(op, read)], |row| row.get(0))?;
        std::hint::black_box(value);
        Ok(())
    };
    let insert = |op: i64| -> anyhow::Result<()> {
        db.prepare_cached("INSERT INTO entry (value) VALUES (?1)")?.execute([format!("entry {op}")])?;
        Ok(())
    };
    for op in 0..OPS {
        match shape {
            Shape::BareCommit => {
                db.execute_batch("BEGIN IMMEDIATE")?;
                insert(op)?;
                db.execute_batch("COMMIT")?;
            }
            Shape::Transaction => {
                db.execute_batch("BEGIN IMMEDIATE")?;
                for n in 0..READS {
                    read(op, n)?;
                }
                db.prepare_cached("DELETE FROM entry WHERE id = ?1")?.execute([op])?;
                for _ in 0..4 {
                    insert(op)?;
                }
                db.execute_batch("COMMIT")?;
            }
            Shape::Reads => {
                for n in 0..READS {
                    read(op, n)?;
                }
            }
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}
