//! Delta queries on users and groups (`GET /users/delta`, `/groups/delta`): which query options a
//! round takes, and when a delta token is too old to continue from.
//!
//! A round first lists every object (the initial round) and ends with a delta token; the next
//! round lists what changed since. What changed is read from the audit log, which records every
//! change to a user or group in the change's own transaction, in the tenant's chain order: a
//! token holds the chain number up to which changes were reported.

use crate::odata::{CmpOp, Expr, Literal, parse_filter};
use crate::query::{QueryError, RawQuery};

/// How long a delta token can be continued from, as Graph's tokens for directory objects.
pub const TOKEN_LIFETIME_SECONDS: i64 = 7 * 24 * 3600;

/// How far another node's clock may be ahead: a token issued later than this is refused.
pub const CLOCK_SKEW_SECONDS: i64 = 300;

/// How many objects an initial page lists.
pub const PAGE_SIZE: usize = 100;

/// How many audit records a page of changes reads.
pub const CHANGES_READ: usize = 500;

/// The most ids a `$filter` may track.
pub const MAX_TRACKED_IDS: usize = 50;

/// Why a delta token cannot be continued from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Issued more than [`TOKEN_LIFETIME_SECONDS`] ago.
    TooOld,
    /// Retention removed audit records the round would have to read.
    CutByRetention,
}

/// Whether a token issued at `issued` (unix time; tokens are MACed, so this is the server's own
/// clock, perhaps another node's) that continues after chain number
/// `after_index` can still be used at `now`, when retention last cut the chain at `cut_index`.
pub fn expiry(issued: i64, after_index: i64, now: i64, cut_index: i64) -> Option<Expiry> {
    if now.saturating_sub(issued) > TOKEN_LIFETIME_SECONDS || issued.saturating_sub(now) > CLOCK_SKEW_SECONDS {
        Some(Expiry::TooOld)
    } else if after_index < cut_index {
        Some(Expiry::CutByRetention)
    } else {
        None
    }
}

/// Checks a delta request's options: `$select` (checked by the caller against the resource),
/// `$filter` only as `id eq '…'` joined with `or` (at most 50); `$top`, `$orderby`, `$expand`,
/// `$search`, `$count` and `$skip` are refused, as Graph refuses them on delta. Returns the ids a
/// `$filter` tracks, lowercased.
pub fn tracked_ids(raw: &RawQuery) -> Result<Option<Vec<String>>, QueryError> {
    for (name, is_present) in [
        ("$top", raw.top.is_some()),
        ("$orderby", raw.orderby.is_some()),
        ("$expand", raw.expand.is_some()),
        ("$search", raw.search.is_some()),
        ("$count", raw.count.is_some()),
        ("$skip", raw.has_skip),
    ] {
        if is_present {
            return Err(QueryError::Unsupported(format!("The query option '{name}' is not supported with delta.")));
        }
    }
    let Some(filter) = raw.filter.as_deref() else { return Ok(None) };
    let expr = parse_filter(filter).map_err(|err| QueryError::BadRequest(format!("Invalid filter clause: {err}")))?;
    let mut ids = Vec::new();
    let mut pending = vec![&expr];
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::Or(left, right) => pending.extend([right.as_ref(), left.as_ref()]),
            Expr::Compare { path, op: CmpOp::Eq, value: Literal::String(id) | Literal::Guid(id) }
                if path.to_string().eq_ignore_ascii_case("id") =>
            {
                ids.push(id.to_lowercase());
            }
            _ => {
                return Err(QueryError::Unsupported("Delta takes $filter=id eq '…' only, joined with 'or'.".into()));
            }
        }
    }
    if ids.len() > MAX_TRACKED_IDS {
        return Err(QueryError::Unsupported(format!("Delta tracks at most {MAX_TRACKED_IDS} ids in $filter.")));
    }
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_with_age_and_retention() {
        assert_eq!(expiry(0, 10, TOKEN_LIFETIME_SECONDS, 0), None);
        assert_eq!(expiry(0, 10, TOKEN_LIFETIME_SECONDS + 1, 0), Some(Expiry::TooOld));
        assert_eq!(expiry(0, 10, 5, 11), Some(Expiry::CutByRetention));
        assert_eq!(expiry(0, 10, 5, 10), None, "records after the cut are all there");
        assert_eq!(expiry(i64::MIN, 10, i64::MAX, 0), Some(Expiry::TooOld), "no overflow");
        assert_eq!(expiry(1000, 10, 1000 - CLOCK_SKEW_SECONDS - 1, 0), Some(Expiry::TooOld), "from the future");
    }

    #[test]
    fn only_ids_may_be_filtered() {
        let raw = |filter: &str| RawQuery { filter: Some(filter.into()), ..RawQuery::default() };
        assert_eq!(tracked_ids(&raw("id eq 'A' or id eq 'b'")), Ok(Some(vec!["a".to_owned(), "b".to_owned()])));
        assert!(tracked_ids(&raw("displayName eq 'x'")).is_err());
        assert!(tracked_ids(&raw("id eq 'a' and id eq 'b'")).is_err());
        let many = (0..51).map(|n| format!("id eq '{n}'")).collect::<Vec<_>>().join(" or ");
        assert!(tracked_ids(&raw(&many)).is_err());
        assert!(tracked_ids(&RawQuery { top: Some("5".into()), ..RawQuery::default() }).is_err());
        assert_eq!(tracked_ids(&RawQuery::default()), Ok(None));
    }
}
