//! Reading the audit log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::audit::AuditRecord;
use keyward_core::audit_chain::{ChainBreak, ChainPosition, ChainVerifier};
use keyward_core::audit_query::{AuditFilter, AuditQuery};
use keyward_core::authz::{Target, actions};
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
        let mut tx = self.read().await?;
        let mut rows =
            tx.query_audit(&caller.tenant.id, &query.filter, after.as_ref(), query.is_ascending, query.top + 1).await?;
        let has_more = rows.len() > query.top;
        rows.truncate(query.top);
        let skiptoken = if has_more { rows.last().map(|(cursor, _)| encode(cursor)) } else { None };
        Ok(ItemPage { items: rows.into_iter().map(|(_, record)| record).collect(), skiptoken })
    }

    /// `GET /auditLogs/directoryAudits/{id}`.
    pub async fn get_audit(&self, caller: &Caller, id: &str) -> Result<AuditRecord, AppError> {
        require(caller, actions::AUDIT_LOGS_READ, Target::Tenant)?;
        let mut tx = self.read().await?;
        tx.get_audit(&caller.tenant.id, id).await?.ok_or_else(|| AppError::NotFound(id.to_owned()))
    }
}

/// Records read per transaction while exporting.
const EXPORT_PAGE: usize = 1000;

impl App {
    /// Every tenant's records with `since <= activityDateTime <= until`, oldest first, handed to
    /// `sink` one at a time (`keyward audit export`); returns how many were exported. Reads a page
    /// per transaction, so an export of millions of records neither holds a snapshot open nor
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
                let page = self.read().await?.query_audit(&tenant, &filter, after.as_ref(), true, EXPORT_PAGE).await?;
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
            reports.push(self.verify_audit_chain(&tenant, progress).await?);
        }
        Ok(reports)
    }

    async fn verify_audit_chain(
        &self,
        tenant: &str,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<ChainReport, AppError> {
        let mut verifier = ChainVerifier::new(tenant, ChainPosition::START);
        let mut after: i64 = 0;
        let mut has_progressed = true;
        let outcome = loop {
            let page = self.read().await?.audit_chain_page(tenant, after, VERIFY_PAGE).await?;
            if page.is_empty() {
                // The head is read after the records, and writers move it in the transaction that
                // adds a record, so it covers every record read. If it is further on, records were
                // committed meanwhile: read them before judging.
                let head = self
                    .read()
                    .await?
                    .audit_chain_tenants()
                    .await?
                    .into_iter()
                    .find(|(id, _)| id == tenant)
                    .and_then(|(_, head)| head);
                if has_progressed && head.is_some_and(|it| it.index > verifier.position().index) {
                    has_progressed = false;
                    continue;
                }
                let (records, position) = (verifier.count(), verifier.position());
                let outcome = verifier.finish(head).map(|_| ());
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
