//! Reading ahead the records of a slow SQLite audit page.
//!
//! A target's records lie scattered over the audit log (a user is acted on now and then, among
//! everything else), so on a log larger than memory each one is a random read from the disk.
//! SQLite reads one page at a time per statement, and the disk serves several reads at once much
//! faster than one after the other. So when a target's page has not finished after
//! [`READ_AHEAD_AFTER`] (a warm page takes well under that), a background task reads the page's
//! keys from the target rows and touches the page's later records on other connections, from the
//! page's end back, while the page's own statement works from its start; the statement then finds
//! those records in the operating system's cache. The task changes no result: the page is still
//! the statement's, and a failed read-ahead is logged and forgotten.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyward_core::audit_query::AuditFilter;
use keyward_core::ids::ObjectId;
use tokio::sync::Semaphore;

use crate::AuditCursor;
use crate::audit_json;
use crate::error::{StoreError, db};
use crate::sql::{Arg, Sql};

/// How long a target's page may take before its later records are read ahead. Tokio's timers
/// have millisecond resolution, so this is the shortest wait there is.
pub(crate) const READ_AHEAD_AFTER: Duration = Duration::from_millis(1);

/// Statements reading ahead at once. At most one read-ahead runs at a time per store, so it never
/// holds more than this many of the pool's connections (eight, shared with writers).
const READ_AHEAD_STATEMENTS: usize = 3;

/// Whether a page is worth reading ahead: a target's records, with at most a time range besides.
/// Its keys come from the target rows alone. An initiator's records, or a day's, were written
/// together and lie together.
pub(crate) fn worth_reading_ahead(filter: &AuditFilter) -> bool {
    let targets = AuditFilter {
        target_id: filter.target_id.clone(),
        target_upn: filter.target_upn.clone(),
        ..AuditFilter::default()
    };
    let rest = AuditFilter { from: None, until: None, ..filter.clone() };
    rest == targets && (targets.target_id.is_some() != targets.target_upn.is_some())
}

/// Reads ahead a SQLite store's slow audit pages (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct ReadAhead {
    pool: sqlx::SqlitePool,
    after: Duration,
    /// One read-ahead at a time.
    running: Arc<Semaphore>,
    /// Records read ahead so far.
    records_read: Arc<AtomicU64>,
}

impl ReadAhead {
    pub(crate) fn new(pool: sqlx::SqlitePool) -> ReadAhead {
        ReadAhead {
            pool,
            after: READ_AHEAD_AFTER,
            running: Arc::new(Semaphore::new(1)),
            records_read: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same, reading ahead after `after` instead (tests force it with zero).
    #[cfg(test)]
    pub(crate) fn after(self, after: Duration) -> ReadAhead {
        ReadAhead { after, ..self }
    }

    #[cfg(test)]
    pub(crate) fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }

    /// Runs `page`, the statement for one page of `tenant`'s audit records, and starts reading
    /// ahead if it has not finished after a while. `keys` selects the page's keys from the
    /// target rows alone (`PageColumns::Keys`).
    pub(crate) async fn page<T>(
        &self,
        page: impl Future<Output = Result<T, sqlx::Error>>,
        keys: Sql,
        tenant: &ObjectId,
        is_ascending: bool,
    ) -> Result<T, sqlx::Error> {
        let mut page = std::pin::pin!(page);
        if let Ok(done) = tokio::time::timeout(self.after, &mut page).await {
            return done;
        }
        self.start(keys, tenant, is_ascending);
        page.await
    }

    /// Starts reading ahead in the background, unless a read-ahead is already running.
    pub(crate) fn start(
        &self,
        keys: Sql,
        tenant: &ObjectId,
        is_ascending: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let permit = Arc::clone(&self.running).try_acquire_owned().ok()?;
        let (pool, records_read, tenant) = (self.pool.clone(), Arc::clone(&self.records_read), tenant.to_string());
        Some(tokio::spawn(async move {
            match read(&pool, keys, &tenant, is_ascending).await {
                Ok(records) => {
                    records_read.fetch_add(records, Ordering::Relaxed);
                    tracing::debug!(records, "read audit records ahead");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading audit records ahead failed; the page was read without it")
                }
            }
            drop(permit);
        }))
    }
}

/// Reads the page's keys, then touches `tenant`'s records among the later ones, a part per
/// statement, the parts at once. Returns how many records were read.
async fn read(pool: &sqlx::SqlitePool, keys: Sql, tenant: &str, is_ascending: bool) -> Result<u64, StoreError> {
    let text = format!(
        "SELECT group_concat(page.seq || char(31) || page.activity_date_time, char(30)) FROM ({}) page",
        keys.text
    );
    let mut query = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(text));
    for arg in keys.args {
        query = match arg {
            Arg::Text(it) => query.bind(it),
            Arg::MaybeText(it) => query.bind(it),
            Arg::Int(it) => query.bind(it),
            Arg::Bool(it) => query.bind(it),
        };
    }
    let packed = query.fetch_one(pool).await.map_err(db)?;
    let keys = audit_json::keys(packed.as_deref().unwrap_or_default(), is_ascending)?;
    // Finding the row and checking its tenant reads the page the record is on.
    let reads = parts(&keys).into_iter().map(|seqs| {
        let seqs: Vec<String> = seqs.iter().map(i64::to_string).collect();
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM audit_records WHERE tenant_id = $1 AND seq IN (SELECT value FROM json_each($2))",
        )
        .bind(tenant)
        .bind(format!("[{}]", seqs.join(",")))
        .fetch_one(pool)
    });
    let counts = futures_util::future::try_join_all(reads).await.map_err(db)?;
    Ok(counts.iter().map(|it| u64::try_from(*it).unwrap_or_default()).sum())
}

/// The keys each read-ahead statement takes: the page split in `READ_AHEAD_STATEMENTS + 1`
/// parts, the last ones, from the end back (the page's own statement reads the first part).
/// None for a page too short to split.
fn parts(keys: &[AuditCursor]) -> Vec<Vec<i64>> {
    if keys.len() <= READ_AHEAD_STATEMENTS {
        return Vec::new();
    }
    let part = keys.len().div_ceil(READ_AHEAD_STATEMENTS + 1);
    keys.rchunks(part).take(READ_AHEAD_STATEMENTS).map(|it| it.iter().map(|key| key.seq).collect()).collect()
}

#[cfg(test)]
mod tests {
    use keyward_core::audit::{Activity, AuditContext, AuditRecord, Initiator, TargetResource};
    use keyward_core::directory::{Domain, Tenant};
    use time::OffsetDateTime;

    use super::*;
    use crate::Store;
    use crate::backend::SqliteStore;

    const HOME: &str = "0be9c1a2-0000-4000-8000-0000000000c1";
    const OTHER: &str = "0be9c1a2-0000-4000-8000-0000000000c3";
    const TARGET: &str = "0be9c1a2-0000-4000-8000-0000000000c2";

    fn key(seq: i64) -> AuditCursor {
        AuditCursor { activity_date_time: format!("2026-01-01T00:00:{seq:02}Z"), seq }
    }

    #[test]
    fn the_later_parts_of_a_page_are_read_from_its_end_back() {
        let page: Vec<AuditCursor> = (1..=10).map(key).collect();
        assert_eq!(parts(&page), [vec![8, 9, 10], vec![5, 6, 7], vec![2, 3, 4]]);
        let fifty: Vec<AuditCursor> = (1..=50).map(key).collect();
        let split = parts(&fifty);
        assert_eq!(split.len(), 3);
        assert_eq!(split[0], (38..=50).collect::<Vec<_>>(), "the last part first");
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), 39, "the first 11 are the statement's own");
        assert!(parts(&page[..3]).is_empty(), "three records are not worth it");
        assert_eq!(parts(&page[..4]), [vec![4], vec![3], vec![2]]);
    }

    #[test]
    fn only_a_targets_pages_are_read_ahead() {
        let target = AuditFilter { target_id: Some(TARGET.into()), ..AuditFilter::default() };
        let by_upn = AuditFilter { target_upn: Some("a@b.test".into()), ..AuditFilter::default() };
        let in_a_day = AuditFilter {
            from: Some(OffsetDateTime::UNIX_EPOCH),
            until: Some(OffsetDateTime::now_utc()),
            ..target.clone()
        };
        let initiator = AuditFilter { initiator_user_id: Some(TARGET.into()), ..AuditFilter::default() };
        let both = AuditFilter { initiator_user_id: Some(TARGET.into()), ..target.clone() };
        assert!(worth_reading_ahead(&target) && worth_reading_ahead(&by_upn) && worth_reading_ahead(&in_a_day));
        assert!(!worth_reading_ahead(&initiator), "an initiator's records lie together");
        assert!(!worth_reading_ahead(&both), "the keys would not be the page's");
        assert!(!worth_reading_ahead(&AuditFilter { target_upn: by_upn.target_upn, ..target }));
        assert!(!worth_reading_ahead(&AuditFilter::default()));
    }

    fn record(tenant: &str, n: usize) -> AuditRecord {
        let context = AuditContext {
            tenant_id: ObjectId::parse(tenant).expect("id"),
            correlation_id: format!("3f1c6a52-1d8e-4b47-9d0e-{n:012}"),
            at: OffsetDateTime::UNIX_EPOCH + Duration::from_secs(n as u64),
            initiated_by: Initiator::App { app_id: "t".into(), display_name: "T".into(), service_principal_id: None },
        };
        let target = TargetResource {
            id: ObjectId::parse(TARGET).expect("id"),
            display_name: None,
            kind: "User",
            user_principal_name: None,
            modified_properties: Vec::new(),
        };
        context.success(format!("Directory_{n:03}"), Activity::UpdateUser, vec![target])
    }

    /// A SQLite database in a file of its own (an in-memory one is one database per connection)
    /// whose two tenants share `TARGET`: records 0..60, every third one `HOME`'s.
    async fn shared_target() -> (SqliteStore, std::path::PathBuf) {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
        let path = std::env::temp_dir().join(format!("keyward-read-ahead-{}-{nanos}.db", std::process::id()));
        let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.expect("open");
        let store = store.with_read_ahead_after(Duration::ZERO);
        let mut tx = store.write().await.expect("tx");
        for id in [HOME, OTHER] {
            tx.insert_tenant(&Tenant {
                id: ObjectId::parse(id).expect("id"),
                display_name: id.into(),
                created: OffsetDateTime::UNIX_EPOCH,
                domains: vec![Domain { name: format!("t{}.test", &id[34..]), is_default: true, is_initial: true }],
            })
            .await
            .expect("tenant");
        }
        for n in 0..60 {
            tx.insert_audits(&[record(if n % 3 == 0 { HOME } else { OTHER }, n)]).await.expect("record");
        }
        tx.commit().await.expect("commit");
        (store, path)
    }

    async fn remove(store: SqliteStore, path: &std::path::Path) {
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    fn by_target() -> AuditFilter {
        AuditFilter { target_id: Some(TARGET.into()), ..AuditFilter::default() }
    }

    #[tokio::test]
    async fn reading_ahead_touches_only_the_tenants_later_records() {
        let (store, path) = shared_target().await;
        let read_ahead = store.read_ahead().expect("SQLite reads ahead");
        let home = ObjectId::parse(HOME).expect("id");
        // The target rows' newest 20 are records 40..60 of both tenants; the last three quarters
        // (15 of them, records 40..55) hold five of HOME's.
        let keys =
            crate::backend::audit_page_sql(&home, &by_target(), None, false, 20, crate::backend::PageColumns::Keys);
        let before = read_ahead.records_read();
        read_ahead.start(keys, &home, false).expect("nothing else running").await.expect("task");
        assert_eq!(read_ahead.records_read() - before, 5);
        remove(store, &path).await;
    }

    #[tokio::test]
    async fn pages_read_ahead_are_the_pages_read_without() {
        let (store, path) = shared_target().await;
        let read_ahead = store.read_ahead().expect("SQLite reads ahead");
        let before = read_ahead.records_read();
        for (tenant, expected) in [(HOME, 20), (OTHER, 40)] {
            let tenant = ObjectId::parse(tenant).expect("id");
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = store.query_audit(&tenant, &by_target(), after.as_ref(), false, 7).await.expect("page");
                assert!(page.iter().all(|(_, it)| it.tenant_id == tenant), "only the tenant's own records");
                seen.extend(page.iter().map(|(_, it)| it.id.clone()));
                match page.last() {
                    Some((cursor, _)) if page.len() == 7 => after = Some(cursor.clone()),
                    _ => break,
                }
            }
            let mut sorted = seen.clone();
            sorted.sort_by(|a, b| b.cmp(a));
            sorted.dedup();
            assert_eq!(seen, sorted, "newest first, none twice");
            assert_eq!(seen.len(), expected, "every one of the tenant's records");
        }
        // Forced to read ahead at once, some read-aheads ran (one at a time, so not all).
        let _ = read_ahead.running.acquire().await.expect("the last read-ahead finishes");
        assert!(read_ahead.records_read() > before);
        remove(store, &path).await;
    }

    #[tokio::test]
    async fn a_failed_read_ahead_leaves_the_page_alone() {
        let (store, path) = shared_target().await;
        let read_ahead = store.read_ahead().expect("SQLite reads ahead");
        let home = ObjectId::parse(HOME).expect("id");
        let broken = || Sql::new("SELECT seq, activity_date_time FROM no_such_table");
        let slow_page = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, sqlx::Error>(7)
        };
        assert_eq!(read_ahead.page(slow_page, broken(), &home, false).await.expect("the page is read"), 7);
        let failing_page = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err::<u8, _>(sqlx::Error::RowNotFound)
        };
        let failed = read_ahead.page(failing_page, broken(), &home, false).await;
        assert!(matches!(failed, Err(sqlx::Error::RowNotFound)), "the page's own error is kept");
        let _ = read_ahead.running.acquire().await.expect("the read-ahead finishes");
        assert_eq!(read_ahead.records_read(), 0);
        assert!(read(&read_ahead.pool, broken(), HOME, false).await.is_err());
        remove(store, &path).await;
    }
}
