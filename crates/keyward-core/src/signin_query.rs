//! The query options of `GET /auditLogs/signIns`: `$filter` on `userId`, `userPrincipalName`,
//! `createdDateTime` and `status/errorCode`, joined with `and`, newest first, paged with
//! `$skiptoken`.

use time::OffsetDateTime;

use crate::audit_query::{TextMatch, log_filter, lowered, set, time_bound, unsupported_clause};
use crate::odata::{CmpOp, Expr, Literal, StrFunc};
use crate::query::{QueryError, RawQuery, parse_top};

/// The filters of a sign-in query; every present filter must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignInFilter {
    pub from: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Lowercased.
    pub user_id: Option<String>,
    /// Lowercased.
    pub user_principal_name: Option<TextMatch>,
    pub error_code: Option<i64>,
    /// `status/errorCode eq 0` (`Some(true)`) or `ne 0` (`Some(false)`): succeeded or failed.
    pub is_success: Option<bool>,
    pub app_id: Option<String>,
}

/// A validated sign-in query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInQuery {
    pub filter: SignInFilter,
    pub top: usize,
    pub skiptoken: Option<String>,
}

fn unsupported(property: &str) -> QueryError {
    unsupported_clause(property, "SignIn")
}

fn text(value: &Literal, property: &str) -> Result<String, QueryError> {
    lowered(value, property, "SignIn")
}

fn clause(filter: &mut SignInFilter, expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::And(left, right) => {
            clause(filter, left)?;
            clause(filter, right)
        }
        Expr::Compare { path, op, value } => {
            let property = path.to_string();
            match (property.to_ascii_lowercase().as_str(), op, value) {
                ("createddatetime", op, Literal::DateTime(at)) if *op != CmpOp::Ne => {
                    time_bound(&mut filter.from, &mut filter.until, *op, *at, &property)
                }
                ("userid", CmpOp::Eq, _) => set(&mut filter.user_id, text(value, &property)?, &property),
                ("userprincipalname", CmpOp::Eq, _) => {
                    set(&mut filter.user_principal_name, TextMatch::Equals(text(value, &property)?), &property)
                }
                ("appid", CmpOp::Eq, _) => set(&mut filter.app_id, text(value, &property)?, &property),
                ("status/errorcode", CmpOp::Eq, Literal::Int(code)) => set(&mut filter.error_code, *code, &property),
                ("status/errorcode", CmpOp::Ne, Literal::Int(0)) => set(&mut filter.is_success, false, &property),
                _ => Err(unsupported(&property)),
            }
        }
        Expr::Func { func: StrFunc::StartsWith, path, value }
            if path.to_string().eq_ignore_ascii_case("userPrincipalName") =>
        {
            let prefix = TextMatch::StartsWith(text(value, "userPrincipalName")?);
            set(&mut filter.user_principal_name, prefix, "userPrincipalName")
        }
        Expr::Or(..) => Err(QueryError::Unsupported("Sign-in log filters combine with 'and' only.".into())),
        other => Err(unsupported(&format!("{other}"))),
    }
}

/// Validates the query options of a sign-in log request.
pub fn plan(raw: &RawQuery) -> Result<SignInQuery, QueryError> {
    let expr = log_filter(raw, "signIns")?;
    if raw.orderby.is_some() {
        return Err(QueryError::Unsupported("The query option '$orderby' is not supported on signIns.".into()));
    }
    let mut filter = SignInFilter::default();
    if let Some(expr) = expr {
        clause(&mut filter, &expr)?;
    }
    Ok(SignInQuery { filter, top: parse_top(raw.top.as_deref())?, skiptoken: raw.skiptoken.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(filter: &str) -> RawQuery {
        RawQuery { filter: Some(filter.into()), ..RawQuery::default() }
    }

    #[test]
    fn documented_filters_plan() {
        let query = plan(&raw("userId eq 'AB5C1E6A-0000-4000-8000-000000000001' and status/errorCode eq 50126 and \
             createdDateTime ge 2026-01-01T00:00:00Z and createdDateTime lt 2026-02-01T00:00:00Z"))
        .expect("plans");
        assert_eq!(query.filter.user_id.as_deref(), Some("ab5c1e6a-0000-4000-8000-000000000001"));
        assert_eq!(query.filter.error_code, Some(50126));
        assert!(query.filter.from.is_some() && query.filter.until.is_some());
        let upn = plan(&raw("startswith(userPrincipalName,'Adele')")).expect("plans");
        assert_eq!(upn.filter.user_principal_name, Some(TextMatch::StartsWith("adele".into())));
        assert_eq!(plan(&raw("status/errorCode ne 0")).expect("plans").filter.is_success, Some(false));
    }

    #[test]
    fn other_filters_are_refused() {
        for bad in ["ipAddress eq '1.2.3.4'", "userId eq 'a' or userId eq 'b'", "status/errorCode eq '0'"] {
            assert!(matches!(plan(&raw(bad)), Err(QueryError::Unsupported(_))), "{bad}");
        }
        assert!(matches!(plan(&raw("userId eq")), Err(QueryError::BadRequest(_))));
    }
}
