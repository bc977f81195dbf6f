//! The sign-in log's entries that are written alone (an application's sign-in, a user's failed or
//! interrupted one), committed several to a transaction.
//!
//! Each such entry used to be a transaction of its own, so every grant waited for its own commit
//! (on SQLite a flush to disk, one writer at a time). Now one writer task per node takes every
//! entry waiting, writes them in one transaction and answers each caller after the commit: a
//! caller still returns only once its entry is durable, and under load many entries share one
//! flush. Nothing waits to fill a batch: an entry that finds the writer idle is written once the
//! requests running beside it have had their turn (`gather`), with no timer.
//!
//! An entry may come with the version of its tenant's clients that its grant relied on (a
//! client-credentials grant on this node's kept copy of its client, `App::kept_client`): the batch
//! reads that version in its transaction (on PostgreSQL, a batch of entries that name no user:
//! in the one statement that writes them, `Store::insert_app_sign_ins`) and writes such an entry
//! only if it is unchanged, and tells its caller which, so that a grant made on a client changed
//! since is made again.

use std::sync::{Arc, Mutex};

use keyward_core::ids::ObjectId;
use keyward_core::signin::SignInRecord;
use keyward_store::{Backend, Store, StoreError};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::{App, AppError};

/// The most entries one transaction writes.
const BATCH: usize = 256;

/// The most times the writer yields to gather entries before it writes a batch (`gather`).
const GATHER_ROUNDS: usize = 8;

/// On PostgreSQL, the batch the writer stops gathering at (`gather`): beyond it, a larger batch
/// saves the server less than the wait costs its entries.
const POSTGRES_GATHERED: usize = 8;
const _: () = assert!(POSTGRES_GATHERED > 1 && POSTGRES_GATHERED < BATCH);

/// Entries waiting at most; a writer that falls behind slows the requests that log instead of
/// queueing without end.
const WAITING: usize = 4096;

type Queue = mpsc::Sender<Entry>;

/// A record, the version of its tenant's clients it must be written under (if any), and its
/// caller.
type Entry = (SignInRecord, Option<i64>, Answer);

/// Whether the entry was written (`false`: its tenant's clients have a new version; nothing was
/// written).
type Answer = oneshot::Sender<Result<bool, Arc<StoreError>>>;

/// This node's writer of sign-in log entries, started at the first entry (on the runtime that
/// writes it), and again should it have stopped (a panic, or that runtime ended).
#[derive(Debug, Default)]
pub(crate) struct SignInLog {
    queue: Mutex<Option<Queue>>,
}

impl SignInLog {
    fn queue(&self, store: &Arc<dyn Store>) -> Queue {
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*queue {
            Some(running) if !running.is_closed() => running.clone(),
            _ => queue.insert(start(Arc::clone(store))).clone(),
        }
    }
}

impl App {
    /// Writes `record` to the sign-in log; returns once it has committed.
    pub(crate) async fn write_sign_in(&self, record: SignInRecord) -> Result<(), AppError> {
        self.send_sign_in(record, None).await.map(|_| ())
    }

    /// Writes `record` to the sign-in log if its tenant's clients still have version `version`
    /// when its transaction commits: whether it did, once it has committed.
    pub(crate) async fn write_sign_in_under(&self, record: SignInRecord, version: i64) -> Result<bool, AppError> {
        self.send_sign_in(record, Some(version)).await
    }

    async fn send_sign_in(&self, record: SignInRecord, version: Option<i64>) -> Result<bool, AppError> {
        let queue = self.inner.sign_in_log.queue(&self.inner.store);
        let (answer, answered) = oneshot::channel();
        let stopped = || AppError::Unexpected(anyhow::anyhow!("the sign-in log writer has stopped"));
        queue.send((record, version, answer)).await.map_err(|_| stopped())?;
        match answered.await.map_err(|_| stopped())? {
            Ok(written) => Ok(written),
            Err(err) => Err(AppError::Unexpected(anyhow::anyhow!("cannot write the sign-in log: {err}"))),
        }
    }
}

/// A new sign-in log entry's id: a GUID that grows with time (UUID version 7; one process's ids
/// in the order they were made). The log's `id` index then grows at its end: with random ids each
/// entry of a batch dirtied a page of its own there, a commit wrote about three times the pages
/// (client credentials on one core, SQLite: 17% -> 20% of the signing rate).
pub(crate) fn entry_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Starts the writer: it ends when the app (the queue's sender) is gone.
///
/// On SQLite each batch is written on a blocking thread: its statements and its commit's flush run
/// on the thread that runs them (`keyward_store`'s write connection), and the flush waits for the
/// disk. On a runtime worker that wait held up every request queued on the worker, and a server
/// with one core has one worker: the grants the batch answers, and the next batch's, waited with
/// it (client credentials on one core, SQLite: 3,069 and 3,338 grants a second with the batch on
/// a worker, 4,776 and 6,414 off it). A request's own write transaction still commits on its
/// worker: moving each of those (a sign-in commits nine times) to another thread cost more than
/// it freed.
fn start(store: Arc<dyn Store>) -> Queue {
    let (queue, mut waiting) = mpsc::channel::<Entry>(WAITING);
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while waiting.recv_many(&mut batch, BATCH).await > 0 {
            gather(&mut waiting, &mut batch, gathered(store.backend())).await;
            // PostgreSQL's statements and commit wait on the network without holding the thread.
            if store.backend() != Backend::Sqlite {
                write_batch(&*store, std::mem::take(&mut batch)).await;
                continue;
            }
            let taken = std::mem::take(&mut batch);
            let (store, runtime) = (Arc::clone(&store), Handle::current());
            // A batch that panicked has answered its callers with an error (their answers were
            // dropped); the writer goes on with the entries waiting.
            if let Err(err) = tokio::task::spawn_blocking(move || runtime.block_on(write_batch(&*store, taken))).await {
                tracing::error!(error = %err, "writing a batch of sign-in log entries failed");
            }
        }
    });
    queue
}

/// The batch the writer stops gathering at on `backend` (see `gather`).
fn gathered(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => BATCH,
        Backend::Postgres => POSTGRES_GATHERED,
    }
}

/// Adds to `batch` the entries that the requests running now are about to send: the writer
/// yields to them, up to [`GATHER_ROUNDS`] times, as long as the round before brought new entries
/// and the batch holds fewer than `enough`.
///
/// Entries arrive while a batch commits, so a busy writer finds a batch waiting; but the requests
/// that were halfway through their grant when it was taken would each have waited for the next
/// commit. A yield lets the tasks that are ready run to their next wait (for a grant that has
/// signed its token, its entry's answer), and the runtime take in new requests. An entry that finds
/// the writer idle still goes out after one round with nothing new: microseconds, no timer.
///
/// On SQLite (`enough` is the whole batch) each commit writes its pages and flushes them on the
/// server's own cores, so fewer, larger batches free them for grants. Client credentials on one
/// core (`wrk -c32` on the other): 15 entries a commit before, 25 with gathering (flushes counted
/// against responses); 20.5% of the signing rate before, 21.8% with it (11,961 and 12,785 grants a
/// second, the means of six alternating runs each on a noisy machine; 19.5–19.8% and 21.8–23.2% in
/// the trial runs before, two or eight rounds, stopping early or not, alike).
///
/// On PostgreSQL a batch is one statement, and sending it (the loopback's delivery and waking
/// PostgreSQL's backend) was 11% of the two nodes' processor time where they shared one core,
/// where about 2.8 entries went in a statement. Gathering up to the whole batch there made one
/// node slower (23.4% → 19.7% of the signing rate, seven alternating runs each; on 2026-12-07
/// 18,560 → 16,530 grants a second, the means of eight runs and of three), as each batch waited
/// for every request in progress while the statement's round trip alone already gathers several;
/// up to [`POSTGRES_GATHERED`] entries it leaves one node as it was (18,370 grants a second, the
/// mean of five alternating runs, within their spread) and makes two nodes 15% faster (13,500 →
/// 15,520 grants a second, 22.3% → 25.7% of the signing rate). At most one round instead: two
/// nodes +10%; at most two: two nodes +18%, one node -10%.
async fn gather(waiting: &mut mpsc::Receiver<Entry>, batch: &mut Vec<Entry>, enough: usize) {
    for _ in 0..GATHER_ROUNDS {
        if batch.len() >= enough.min(BATCH) {
            return;
        }
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < BATCH {
            match waiting.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            return;
        }
    }
}

/// Writes `batch` and answers each entry's caller.
async fn write_batch(store: &dyn Store, mut batch: Vec<Entry>) {
    // In the order of the users whose activity each entry updates (stable: one user's entries
    // keep theirs), so that two nodes' batches lock those rows in one order and cannot deadlock.
    batch.sort_by(|(a, ..), (b, ..)| a.user_id.cmp(&b.user_id));
    let entries: Vec<(&SignInRecord, Option<i64>)> =
        batch.iter().map(|(record, version, _)| (record, *version)).collect();
    match insert(store, &entries).await {
        Ok(written) => {
            for ((_, _, answer), written) in batch.into_iter().zip(written) {
                let _ = answer.send(Ok(written));
            }
        }
        // One entry the store refuses (a constraint) must not lose the others: each alone, then.
        Err(StoreError::Conflict { .. }) => {
            for (record, version, answer) in batch {
                let alone = insert(store, &[(&record, version)]).await;
                let _ = answer.send(alone.map(|it| it.first().copied().unwrap_or(false)).map_err(Arc::new));
            }
        }
        // The store itself failed (closed, locked, unreachable): every entry with it, rather
        // than each waiting for the same failure again.
        Err(err) => {
            let err = Arc::new(err);
            for (_, _, answer) in batch {
                let _ = answer.send(Err(Arc::clone(&err)));
            }
        }
    }
}

/// Writes the entries in one transaction (or one statement, `Store::insert_app_sign_ins`), those
/// with a version of their tenant's clients only if it is unchanged: which were written.
async fn insert(store: &dyn Store, entries: &[(&SignInRecord, Option<i64>)]) -> Result<Vec<bool>, StoreError> {
    // Applications' entries in one statement where the database has one (PostgreSQL).
    if let Some(written) = store.insert_app_sign_ins(entries).await? {
        return Ok(written);
    }
    let mut tx = store.write().await?;
    // The versions of the tenants whose entries need one (a batch has one tenant, or a few).
    let mut current: Vec<(&ObjectId, i64)> = Vec::new();
    for (record, version) in entries {
        if version.is_some() && !current.iter().any(|(tenant, _)| *tenant == &record.tenant_id) {
            match tx.client_version(&record.tenant_id).await {
                Ok(version) => current.push((&record.tenant_id, version)),
                Err(err) => {
                    let _ = tx.rollback().await;
                    return Err(err);
                }
            }
        }
    }
    let unchanged = |record: &SignInRecord, version: i64| {
        current.iter().any(|(tenant, now)| *tenant == &record.tenant_id && *now == version)
    };
    let written: Vec<bool> =
        entries.iter().map(|(record, version)| version.is_none_or(|version| unchanged(record, version))).collect();
    let records: Vec<&SignInRecord> =
        entries.iter().zip(&written).filter(|(_, written)| **written).map(|((record, _), _)| *record).collect();
    // The entries in one statement, then each user's activity.
    if !records.is_empty()
        && let Err(err) = tx.insert_sign_ins(&records).await
    {
        // Ended before the entries are tried one by one, which would otherwise meet it.
        let _ = tx.rollback().await;
        return Err(err);
    }
    tx.commit().await?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    //! The writer against a real SQLite store; the sign-in log's reads are the integration
    //! tests' (`sign_in_logs`).

    use super::*;
    use keyward_core::ids::ObjectId;

    fn record(n: usize, tenant: &ObjectId) -> SignInRecord {
        SignInRecord {
            correlation_id: format!("c{n}"),
            ..SignInRecord::browser(
                format!("batched-{n}"),
                tenant.clone(),
                time::OffsetDateTime::now_utc(),
                format!("user{n}@example.com"),
                ("app", "app"),
            )
        }
    }

    /// Entries sent together are all written; one the store refuses (a repeated id) fails alone.
    #[tokio::test]
    async fn entries_sent_together_commit_and_a_refused_one_fails_alone() {
        let store = keyward_store::open("sqlite::memory:").await.expect("store");
        let tenant = ObjectId::from_bytes([7; 16]);
        let queue = start(Arc::clone(&store));
        let mut answers = Vec::new();
        for n in 0..20 {
            let (answer, answered) = oneshot::channel();
            queue.send((record(n, &tenant), None, answer)).await.expect("send");
            answers.push(answered);
        }
        let (answer, repeated) = oneshot::channel();
        queue.send((record(3, &tenant), None, answer)).await.expect("send");
        for answered in answers {
            assert_eq!(answered.await.expect("answer").map_err(|it| it.to_string()), Ok(true));
        }
        assert!(repeated.await.expect("answer").is_err(), "a second entry with the same id was written");
        let mut tx = store.read().await.expect("tx");
        for n in 0..20 {
            let found = tx.get_sign_in(&tenant, &format!("batched-{n}")).await.expect("read");
            assert_eq!(found.map(|it| it.correlation_id), Some(format!("c{n}")));
        }
    }

    /// A writer that has stopped (its runtime ended, or it panicked) is started again.
    #[tokio::test]
    async fn a_stopped_writer_is_started_again() {
        let store = keyward_store::open("sqlite::memory:").await.expect("store");
        let log = SignInLog::default();
        let (stopped, gone) = mpsc::channel(1);
        drop(gone);
        *log.queue.lock().expect("queue") = Some(stopped);
        let queue = log.queue(&store);
        assert!(!queue.is_closed(), "the stopped writer was kept");
        let (answer, answered) = oneshot::channel();
        let tenant = ObjectId::from_bytes([8; 16]);
        queue.send((record(1, &tenant), None, answer)).await.expect("send");
        assert_eq!(answered.await.expect("answer").map_err(|it| it.to_string()), Ok(true));
    }

    /// An entry sent with the version of its tenant's clients that its grant relied on is written
    /// only while its tenant's clients have that version; the others of its batch are written
    /// either way, and so they are when the batch falls back to writing its entries one by one.
    /// (The test's runtime has one thread, so every entry is queued before the writer takes them:
    /// one batch.)
    #[tokio::test]
    async fn an_entry_under_a_replaced_client_version_is_not_written() {
        let store = keyward_store::open("sqlite::memory:").await.expect("store");
        let tenant = ObjectId::from_bytes([9; 16]);
        let other = ObjectId::from_bytes([10; 16]);
        let current = store.client_version(&tenant).await.expect("version");
        let other_current = store.client_version(&other).await.expect("version");
        for repeated in [false, true] {
            let queue = start(Arc::clone(&store));
            let base = if repeated { 10 } else { 0 };
            let mut answers = Vec::new();
            let sent = [
                (base + 1, &tenant, Some(current)),
                (base + 2, &tenant, Some(current - 1)),
                (base + 3, &tenant, None),
                (base + 4, &other, Some(other_current)),
                (base + 5, &other, Some(other_current + 1)),
            ];
            for (n, tenant, version) in sent {
                let (answer, answered) = oneshot::channel();
                queue.send((record(n, tenant), version, answer)).await.expect("send");
                answers.push(answered);
            }
            // An entry already written: the batch fails and its entries are written one by one.
            let (answer, conflict) = oneshot::channel();
            if repeated {
                queue.send((record(1, &tenant), None, answer)).await.expect("send");
            }
            let mut written = Vec::new();
            for answered in answers {
                written.push(answered.await.expect("answer").expect("no failure"));
            }
            assert_eq!(written, [true, false, true, true, false], "one by one: {repeated}");
            if repeated {
                assert!(conflict.await.expect("answer").is_err(), "the repeated entry was written");
            }
            let mut tx = store.read().await.expect("tx");
            for (n, tenant, expected) in
                [(1, &tenant, true), (2, &tenant, false), (3, &tenant, true), (4, &other, true), (5, &other, false)]
            {
                let found = tx.get_sign_in(tenant, &format!("batched-{}", base + n)).await.expect("read");
                assert_eq!(found.is_some(), expected, "entry {} ({repeated})", base + n);
            }
            // Ended here, not when dropped: a dropped transaction is rolled back in the
            // background, and until then its shared-cache read lock on `sign_ins` made the next
            // round's batch fail with "database table is locked".
            tx.rollback().await.expect("rollback");
        }
    }

    /// A request that sends `entry` after `yields` turns of its own (on the test's one thread, each
    /// a turn of every task ready).
    fn send_after_yields(queue: &Queue, entry: Entry, yields: usize) {
        let queue = queue.clone();
        tokio::spawn(async move {
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            queue.send(entry).await.expect("send");
        });
    }

    /// The writer takes into its batch the entries of requests that run beside it, and stops
    /// gathering once a round brings nothing or the batch is full.
    #[tokio::test]
    async fn the_writer_gathers_the_entries_of_requests_running_beside_it() {
        let tenant = ObjectId::from_bytes([9; 16]);
        let entry = |n: usize| (record(n, &tenant), None, oneshot::channel().0);
        let (queue, mut waiting) = mpsc::channel::<Entry>(WAITING);
        queue.send(entry(0)).await.expect("send");
        // Two requests about to send theirs (on this one-thread runtime, once the writer yields);
        // the second waits once more before it does.
        send_after_yields(&queue, entry(1), 0);
        send_after_yields(&queue, entry(2), 1);
        let mut batch = Vec::new();
        assert_eq!(waiting.recv_many(&mut batch, BATCH).await, 1);
        gather(&mut waiting, &mut batch, BATCH).await;
        let ids: Vec<&str> = batch.iter().map(|(record, ..)| record.id.as_str()).collect();
        assert_eq!(ids, ["batched-0", "batched-1", "batched-2"]);
        // A round that brings nothing ends the gathering: a request that sends only after a
        // wait of its own is left for the next batch.
        send_after_yields(&queue, entry(3), 1);
        gather(&mut waiting, &mut batch, BATCH).await;
        assert_eq!(batch.len(), 3);
        while waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(waiting.recv().await.map(|(record, ..)| record.id), Some("batched-3".to_owned()));

        // The batch fills up to its cap; the entries beyond it wait for the next.
        for n in 0..BATCH + 5 {
            queue.send(entry(n)).await.expect("send");
        }
        let mut full = Vec::new();
        assert_eq!(waiting.recv_many(&mut full, 10).await, 10);
        gather(&mut waiting, &mut full, BATCH).await;
        assert_eq!((full.len(), waiting.len()), (BATCH, 5));
    }

    /// On PostgreSQL the writer stops gathering once its batch holds enough entries: it takes
    /// what a round brought, but yields no more. On SQLite only a full batch is enough.
    #[tokio::test]
    async fn the_writer_stops_gathering_at_enough() {
        assert_eq!((gathered(Backend::Sqlite), gathered(Backend::Postgres)), (BATCH, POSTGRES_GATHERED));
        let tenant = ObjectId::from_bytes([9; 16]);
        let entry = |n: usize| (record(n, &tenant), None, oneshot::channel().0);
        let (queue, mut waiting) = mpsc::channel::<Entry>(WAITING);
        queue.send(entry(0)).await.expect("send");
        // Requests that send theirs after 0, 1, 2 and 3 yields of their own.
        for n in 1..=4 {
            send_after_yields(&queue, entry(n), n - 1);
        }
        let mut batch = Vec::new();
        assert_eq!(waiting.recv_many(&mut batch, BATCH).await, 1);
        gather(&mut waiting, &mut batch, 3).await;
        let ids: Vec<&str> = batch.iter().map(|(record, ..)| record.id.as_str()).collect();
        assert_eq!(ids, ["batched-0", "batched-1", "batched-2"]);
        // The others went on and sent theirs to the next batch.
        let mut next = Vec::new();
        while next.len() < 2 {
            tokio::task::yield_now().await;
            while let Ok(entry) = waiting.try_recv() {
                next.push(entry.0.id);
            }
        }
        assert_eq!(next, ["batched-3", "batched-4"]);
        // A batch that already holds enough goes out without a yield.
        let mut full: Vec<Entry> = (10..13).map(entry).collect();
        send_after_yields(&queue, entry(13), 0);
        gather(&mut waiting, &mut full, 3).await;
        assert_eq!(full.len(), 3);
    }
}
