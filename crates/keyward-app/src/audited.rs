//! What every audited use case shares: a refusal recorded before it is returned, and the change
//! committed together with its audit records.

use keyward_core::audit::{Activity, AuditRecord, TargetResource};
use keyward_core::authz::Target;
use keyward_store::Tx;

use crate::{App, AppError, Caller, require};

/// The tail of every audited change: its audit records and the notifications they call for go
/// into the change's own transaction, and all of it commits together (or none of it does).
pub(crate) async fn commit_audited(
    mut tx: Box<dyn Tx>,
    records: impl IntoIterator<Item = AuditRecord>,
) -> Result<(), AppError> {
    let records: Vec<AuditRecord> = records.into_iter().collect();
    // A change made for a bulk operation's user marks that user done, in this transaction.
    crate::bulk::finish_item_in(&mut *tx, &records, keyward_core::bulk::ItemState::Done, None).await?;
    record_all(&mut *tx, &records).await?;
    tx.commit().await?;
    Ok(())
}

/// Writes the audit records of one change and the notifications they call for
/// (`notifications::stage`), in the caller's transaction. The notifications come first: writing
/// an audit record takes the tenant's audit chain head, which on PostgreSQL holds back every
/// other audited change of the tenant until this one commits, so as little as possible should
/// run after it. Callers write the audit records last for the same reason.
pub(crate) async fn record_all(tx: &mut dyn Tx, records: &[AuditRecord]) -> Result<(), AppError> {
    crate::notifications::stage(tx, records).await?;
    for record in records {
        tx.insert_audit(record).await?;
    }
    Ok(())
}

/// A fresh audit record id in Entra's `Directory_<correlation>_<random>` form.
pub(crate) fn audit_id(correlation_id: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Directory_{correlation_id}_{}", &random[..12])
}

impl App {
    /// Asks the decision function before a change opens its transaction; a refusal is recorded as a
    /// failure of `activity`.
    pub(crate) async fn require_recorded(
        &self,
        caller: &Caller,
        action: &'static str,
        target: Target<'_>,
        activity: Activity,
        targets: impl FnOnce() -> Vec<TargetResource>,
    ) -> Result<(), AppError> {
        match require(caller, action, target) {
            Ok(()) => Ok(()),
            Err(err) => Err(self.refused(None, caller, activity, targets(), err).await),
        }
    }

    /// Records a refused attempt after dropping the caller's transaction (on SQLite it holds the
    /// write lock), and hands the refusal back.
    pub(crate) async fn refused(
        &self,
        tx: Option<Box<dyn Tx>>,
        caller: &Caller,
        activity: Activity,
        targets: Vec<TargetResource>,
        err: AppError,
    ) -> AppError {
        drop(tx);
        let AppError::Forbidden { message, rule } = &err else { return err };
        let now = self.now();
        let record = caller.audit(now).failure(audit_id(&caller.meta.correlation_id), activity, targets, message);
        let written = async {
            let mut tx = self.write().await?;
            if *rule == keyward_core::agent_limits::RULE {
                self.alert_agent_limit(&mut *tx, caller, message, now).await?;
            }
            commit_audited(tx, [record]).await?;
            Ok::<(), AppError>(())
        };
        if let Err(write_err) = written.await {
            tracing::error!(error = %write_err, "could not record a refused attempt in the audit log");
        }
        err
    }
}
