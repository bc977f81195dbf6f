//! Reading the audit log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::audit::AuditRecord;
use keyward_core::audit_query::AuditQuery;
use keyward_core::authz::{Target, actions};
use keyward_store::AuditCursor;

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
