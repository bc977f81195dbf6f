//! Reading the audit log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::audit::{Activity, AuditRecord, TargetResource};
use keyward_core::audit_chain::{
    ChainBreak, ChainPosition, ChainVerifier, Checkpoint, checkpoint_message, retention_cut, retention_message,
};
use keyward_core::audit_query::{AuditFilter, AuditQuery};
use keyward_core::authz::{Target, actions};
use keyward_core::directory::PropertyChange;
use keyward_core::ids::ObjectId;
use keyward_store::AuditCursor;
use time::OffsetDateTime;

use crate::roles::ItemPage;
use crate::{App, AppError, Caller, require};

fn encode(cursor: &AuditCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("a1\n{}\n{}", cursor.seq, cursor.activity_date_time))
}

fn decode(token: &str) -> Result<AuditCursor, AppError> {
    let invalid = || {
        AppError::BadRequest("The $skiptoken is invalid. Page with the @odata.nextLink exactly as returned, or start again from the first page.".into())
    };
    let text =
        String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| invalid())?).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '\n');
    match (parts.next(), parts.next().and_then(|it| it.parse::<i64>().ok()), parts.next()) {
        (Some("a1"), Some(seq), Some(at)) if !at.is_empty() => {
            Ok(AuditCursor { activity_date_time: at.to_owned(), seq })
        }
        _ => Err(invalid()),
    }
}

impl App {
    /// `GET /auditLogs/directoryAudits` — `microsoft.directory/auditLogs/allProperties/read`.
    pub async fn list_audit(&self, caller: &Caller, query: &AuditQuery) -> Result<ItemPage<AuditRecord>, AppError> {
        require(caller, actions::AUDIT_LOGS_READ, Target::Tenant)?;
        let after = query.skiptoken.as_deref().map(decode).transpose()?;
        let store = &self.inner.store;
        let mut rows = store
            .query_audit(&caller.tenant.id, &query.filter, after.as_ref(), query.is_ascending, query.top + 1)
            .await?;
        let has_more = rows.len() > query.top;
        rows.truncate(query.top);
        let skiptoken = if has_more { rows.last().map(|(cursor, _)| encode(cursor)) } else { None };
        Ok(ItemPage { items: rows.into_iter().map(|(_, record)| record).collect(), skiptoken })
    }

    /// `GET /auditLogs/directoryAudits/{id}`.
    pub async fn get_audit(&self, caller: &Caller, id: &str) -> Result<AuditRecord, AppError> {
        require(caller, actions::AUDIT_LOGS_READ, Target::Tenant)?;
        self.inner.store.get_audit(&caller.tenant.id, id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))
    }
}

/// Records read per transaction while exporting.
const EXPORT_PAGE: usize = 1000;

impl App {
    /// Every tenant's records with `since <= activityDateTime <= until`, oldest first, handed to
    /// `sink` one at a time (`keyward audit export`); returns how many were exported. Reads a page
    /// per statement, so an export of millions of records neither holds a snapshot open nor
    /// buffers them.
    pub async fn export_audit(
        &self,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        sink: &mut (dyn FnMut(&AuditRecord) -> std::io::Result<()> + Send),
    ) -> Result<u64, AppError> {
        let filter = AuditFilter { from: since, until, ..AuditFilter::default() };
        let tenants = self.read().await?.audit_chain_tenants().await?;
        let mut count = 0;
        for (tenant, _) in tenants {
            let Some(tenant) = ObjectId::parse(&tenant) else { continue };
            let mut after = None;
            loop {
                let page = self.inner.store.query_audit(&tenant, &filter, after.as_ref(), true, EXPORT_PAGE).await?;
                for (_, record) in &page {
                    sink(record).map_err(|err| {
                        AppError::Unexpected(anyhow::Error::new(err).context("cannot write the export"))
                    })?;
                    count += 1;
                }
                if page.len() < EXPORT_PAGE {
                    break;
                }
                after = page.into_iter().last().map(|(cursor, _)| cursor);
            }
        }
        Ok(count)
    }
}

const NEEDS_MASTER_KEY: &str = "Retention checkpoints are signed with the key-encryption key: run with the \
     server's --data-dir (for keyward.key) or set KEYWARD_MASTER_KEY.";

/// Records removed per transaction by retention.
const RETENTION_BATCH: u64 = 5000;

/// Audit retention bounds, in days.
pub const RETENTION_DAYS: std::ops::RangeInclusive<i64> = 1..=3650;

impl App {
    /// Every tenant's id, oldest first (for maintenance commands).
    pub async fn list_tenant_ids(&self) -> Result<Vec<String>, AppError> {
        Ok(self.read().await?.list_tenants().await?.into_iter().map(|it| it.id.to_string()).collect())
    }

    /// The tenant's audit retention in days (default 30, as Entra P1).
    pub async fn audit_retention_days(&self, tenant: &str) -> Result<i64, AppError> {
        Ok(self.read().await?.audit_retention(tenant).await?.0)
    }

    /// Sets the tenant's audit retention (`keyward audit retention --days`), with a MAC under the
    /// key-encryption key so that only a Keyward node can change it.
    pub async fn set_audit_retention_days(&self, tenant: &str, days: i64) -> Result<(), AppError> {
        if !RETENTION_DAYS.contains(&days) {
            return Err(AppError::BadRequest(format!(
                "The audit retention must be between {} and {} days.",
                RETENTION_DAYS.start(),
                RETENTION_DAYS.end()
            )));
        }
        if !self.inner.keys.has_master_key() {
            return Err(AppError::BadRequest(NEEDS_MASTER_KEY.into()));
        }
        let tenant_id =
            ObjectId::parse(tenant).ok_or_else(|| AppError::BadRequest(format!("'{tenant}' is not a tenant id.")))?;
        let mac = self.inner.keys.sign_checkpoint(&retention_message(tenant, days))?;
        let mut tx = self.write().await?;
        let (old, stored_mac) = tx.audit_retention(tenant).await?;
        // The same value again changes nothing, unless the stored one lost its MAC (changed in
        // the database): setting it again is how an operator repairs that.
        if old == days && self.trusted_retention(tenant, old, &stored_mac).is_ok() {
            return Ok(());
        }
        tx.set_audit_retention(tenant, days, &mac).await?;
        // The change is itself audited, in the same transaction: a shorter retention removes
        // records, and the log must say who shortened it and when.
        let audit = crate::setup::operator_audit(&tenant_id, self.now());
        let target = TargetResource {
            id: tenant_id,
            display_name: Some("Audit log retention".into()),
            kind: "Policy",
            user_principal_name: None,
            modified_properties: vec![PropertyChange::new("RetentionDays", old.to_string(), days.to_string())],
        };
        let mut entry =
            audit.success(crate::audit_id(&audit.correlation_id), Activity::UpdateAuditRetention, vec![target]);
        entry
            .additional_details
            .push(("Operator".into(), "Set by `keyward audit retention` with access to the server's data".into()));
        crate::commit_audited(tx, [entry]).await
    }

    /// The tenant's retention, refusing a setting changed outside Keyward.
    pub(crate) fn trusted_retention(&self, tenant: &str, days: i64, mac: &str) -> Result<i64, AppError> {
        let is_default = days == keyward_store::DEFAULT_AUDIT_RETENTION_DAYS && mac.is_empty();
        if is_default || self.inner.keys.verify_checkpoint(&retention_message(tenant, days), mac) == Some(true) {
            Ok(days)
        } else {
            Err(AppError::Unexpected(anyhow::anyhow!(
                "audit retention for tenant {tenant} stopped: its retention setting ({days} days) was changed \
                 outside Keyward; set it again with `keyward audit retention --days N`"
            )))
        }
    }

    /// Removes every tenant's records older than its retention, a batch per transaction, moving
    /// the tenant's signed checkpoint with each batch so the rest of the chain still verifies.
    /// Records are verified before they are removed: a tampered stretch is left in place and
    /// reported, never signed over. Returns the number of records removed.
    pub async fn apply_audit_retention(&self) -> Result<u64, AppError> {
        let tenants = self.read().await?.audit_chain_tenants().await?;
        let mut removed = 0;
        let mut failures = Vec::new();
        // One tenant's failure (a tampered chain, say) must not stop retention for the others.
        for (tenant, _) in tenants {
            let mut last = None;
            loop {
                match self.retention_batch(&tenant, &mut last).await {
                    Ok(0) => break,
                    Ok(batch) => removed += batch,
                    Err(err) => {
                        tracing::error!(tenant, error = %err, "audit retention failed for this tenant");
                        failures.push(err.to_string());
                        break;
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(removed)
        } else {
            Err(AppError::Unexpected(anyhow::anyhow!(
                "audit retention removed {removed} records but failed for {} tenant(s): {}",
                failures.len(),
                failures.join("; ")
            )))
        }
    }

    /// Removes one batch of `tenant`'s expired records; `last` is the pass's cut, found once.
    async fn retention_batch(&self, tenant: &str, last: &mut Option<u64>) -> Result<u64, AppError> {
        let now = self.now();
        let mut tx = self.write_long().await?;
        let checkpoint = tx.lock_audit_checkpoint(tenant).await?;
        let start = self.trusted_start(tenant, &checkpoint).map_err(|err| {
            AppError::Unexpected(anyhow::anyhow!("audit retention for tenant {tenant} stopped: {err}"))
        })?;
        let (days, mac) = tx.audit_retention(tenant).await?;
        let days = self.trusted_retention(tenant, days, &mac)?;
        let cutoff = now - time::Duration::days(days);
        let after = i64::try_from(start.index).unwrap_or(i64::MAX);
        let cut = match *last {
            Some(it) => it,
            None => {
                let Some(head) = tx.audit_chain_head(tenant).await? else { return Ok(0) };
                let first_kept =
                    tx.first_audit_since(tenant, after, cutoff).await?.and_then(|it| u64::try_from(it).ok());
                let cut = retention_cut(start.index, first_kept, head.index).unwrap_or(start.index);
                *last = Some(cut);
                cut
            }
        };
        if cut <= start.index {
            return Ok(0);
        }
        let through = cut.min(start.index + RETENTION_BATCH);
        let count = usize::try_from(through - start.index).unwrap_or(usize::MAX);
        let rows = tx.audit_chain_page(tenant, after, count).await?;
        let mut verifier = ChainVerifier::new(tenant, start);
        for row in &rows {
            verifier.check(&row.link()).map_err(|err| {
                AppError::Unexpected(anyhow::anyhow!(
                    "audit retention for tenant {tenant} stopped: {err}; run `keyward audit verify`"
                ))
            })?;
        }
        let position = verifier.position();
        if position.index != through {
            return Err(AppError::Unexpected(anyhow::anyhow!(
                "audit retention for tenant {tenant} stopped: records before #{through} are missing; run `keyward audit verify`"
            )));
        }
        let cut_before = cutoff.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let signature = self.inner.keys.sign_checkpoint(&checkpoint_message(tenant, &position, &cut_before))?;
        let removed = tx.delete_audit_range(tenant, after, i64::try_from(through).unwrap_or(i64::MAX)).await?;
        tx.set_audit_checkpoint(tenant, &Checkpoint { position, cut_before, signature }).await?;
        tx.commit().await?;
        tracing::info!(tenant, removed, through, "audit retention removed records older than {days} days");
        Ok(removed)
    }

    /// The hourly maintenance: runs [`App::apply_audit_retention`] and refreshes the query
    /// planner's statistics, now and then every `every`, logging failures, until the returned task
    /// is aborted.
    pub fn spawn_audit_retention(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        crate::spawn_every(every, move || {
            let app = app.clone();
            async move {
                let started = std::time::Instant::now();
                if let Err(err) = app.apply_audit_retention().await {
                    tracing::error!(error = %err, "audit retention failed; it retries at the next run");
                }
                if let Err(err) = app.apply_sign_in_retention().await {
                    tracing::error!(error = %err, "sign-in log retention failed; it retries at the next run");
                }
                match app.purge_expired_deleted_items().await {
                    Ok(0) => (),
                    Ok(n) => tracing::info!(objects = n, "removed users and groups deleted more than 30 days ago"),
                    Err(err) => tracing::warn!(error = %err, "removing expired deleted items failed"),
                }
                match app.delete_expired_sessions().await {
                    Ok(0) => (),
                    Ok(n) => tracing::info!(sessions = n, "deleted expired browser sessions"),
                    Err(err) => tracing::warn!(error = %err, "deleting expired browser sessions failed"),
                }
                if let Err(err) = app.inner.store.optimize().await {
                    tracing::warn!(error = %err, "refreshing the query planner's statistics failed");
                }
                tracing::info!(millis = started.elapsed().as_millis() as u64, "maintenance finished");
            }
        })
    }
}

/// Records read per transaction while verifying.
const VERIFY_PAGE: usize = 2000;

/// The outcome of verifying one tenant's audit chain.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub tenant: String,
    /// Records verified before the end or the first break.
    pub records: u64,
    /// Where the verified chain ends: compare it with a copy kept elsewhere to detect a rewrite of
    /// the whole tail together with its head.
    pub position: ChainPosition,
    pub outcome: Result<(), ChainBreak>,
}

impl App {
    /// Verifies every tenant's audit hash chain (`keyward audit verify`), calling `progress` with
    /// the tenant and the records verified so far after each page.
    pub async fn verify_audit_chains(
        &self,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<Vec<ChainReport>, AppError> {
        let tenants = self.read().await?.audit_chain_tenants().await?;
        let mut reports = Vec::with_capacity(tenants.len());
        for (tenant, _) in tenants {
            let mut attempts = 0;
            let report = loop {
                let before = self.read().await?.audit_checkpoint(&tenant).await?;
                let report = self.verify_audit_chain(&tenant, progress).await?;
                attempts += 1;
                // Retention may have cut the chain while it was read; a gap is only real if the
                // checkpoint did not move meanwhile.
                let is_gap = matches!(report.outcome, Err(ChainBreak::Removed { .. }));
                if !is_gap || attempts == 3 || self.read().await?.audit_checkpoint(&tenant).await? == before {
                    break report;
                }
            };
            reports.push(report);
        }
        Ok(reports)
    }

    /// Where verification starts: the chain's start, or the retention checkpoint if its MAC holds.
    fn trusted_start(&self, tenant: &str, checkpoint: &Checkpoint) -> Result<ChainPosition, ChainBreak> {
        if checkpoint.is_start() {
            return Ok(ChainPosition::START);
        }
        let message = checkpoint_message(tenant, &checkpoint.position, &checkpoint.cut_before);
        match self.inner.keys.verify_checkpoint(&message, &checkpoint.signature) {
            Some(true) => Ok(checkpoint.position),
            Some(false) => Err(ChainBreak::Checkpoint {
                detail: format!(
                    "its signature (at #{}) does not verify: it was moved or forged",
                    checkpoint.position.index
                ),
            }),
            None => Err(ChainBreak::Checkpoint {
                detail: "its signature cannot be checked without the key-encryption key: run on a node's \
                         --data-dir (keyward.key) or set KEYWARD_MASTER_KEY"
                    .into(),
            }),
        }
    }

    async fn verify_audit_chain(
        &self,
        tenant: &str,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<ChainReport, AppError> {
        let checkpoint = self.read().await?.audit_checkpoint(tenant).await?;
        if !checkpoint.is_start() && !self.inner.keys.has_master_key() {
            return Err(AppError::BadRequest(NEEDS_MASTER_KEY.into()));
        }
        let start = match self.trusted_start(tenant, &checkpoint) {
            Ok(it) => it,
            Err(err) => {
                let position = checkpoint.position;
                return Ok(ChainReport { tenant: tenant.to_owned(), records: 0, position, outcome: Err(err) });
            }
        };
        let mut verifier = ChainVerifier::new(tenant, start);
        // Read from the lowest number, not from the checkpoint: a record slipped in at or below the
        // checkpoint (or with a negative number) would otherwise be served yet never checked.
        let mut after = i64::MIN;
        let mut has_progressed = true;
        let outcome = loop {
            let page = self.read().await?.audit_chain_page(tenant, after, VERIFY_PAGE).await?;
            if page.is_empty() {
                // The head is read after the records, and writers move it in the transaction that
                // adds a record, so it covers every record read. If it is further on, records were
                // committed meanwhile: read them before judging.
                let head = self.read().await?.audit_chain_head(tenant).await?;
                if has_progressed && head.is_some_and(|it| it.index > verifier.position().index) {
                    has_progressed = false;
                    continue;
                }
                let (records, position) = (verifier.count(), verifier.position());
                let mut outcome = verifier.finish(head).map(|_| ());
                if outcome.is_ok()
                    && let Some(seq) = self.read().await?.audit_stray_row(tenant).await?
                {
                    outcome = Err(ChainBreak::StrayRow { seq });
                }
                return Ok(ChainReport { tenant: tenant.to_owned(), records, position, outcome });
            }
            has_progressed = true;
            let mut broken = None;
            for row in &page {
                if let Err(err) = verifier.check(&row.link()) {
                    broken = Some(err);
                    break;
                }
                after = row.chain_index;
            }
            if let Some(err) = broken {
                break Err(err);
            }
            progress(tenant, verifier.count());
        };
        Ok(ChainReport { tenant: tenant.to_owned(), records: verifier.count(), position: verifier.position(), outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptokens_round_trip_and_reject_garbage() {
        let cursor = AuditCursor { activity_date_time: "2026-01-01T00:00:00.000000Z".into(), seq: 42 };
        assert_eq!(decode(&encode(&cursor)).ok(), Some(cursor));
        for bad in ["", "!!", &URL_SAFE_NO_PAD.encode("a1\nx\n2026"), &URL_SAFE_NO_PAD.encode("1\n1\n2026")] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
